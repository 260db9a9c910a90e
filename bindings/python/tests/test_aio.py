"""asyncio: the consumer's node is driven only by loop.add_reader on its fd
(no timer polls it); the provider runs on a thread of its own."""

from __future__ import annotations

import asyncio
import threading
import time

import gwipc
import gwipc.aio

from helpers import TIMEOUT, TempDirTest

SVC = gwipc.ServiceID("test.aio", 1, 0, "one")

class AioTest(TempDirTest):
    def setUp(self) -> None:
        super().setUp()
        sock = self.path("aio.sock")
        self.provider = gwipc.Node.listen(sock, name="provider")
        self.addCleanup(self.provider.close)
        self.held: list[gwipc.Call] = []
        self.subscribed = threading.Event()
        self.offer = self.provider.offer(SVC, events=1, methods=1, on_call=self.on_call,
                                         on_subscription=lambda ev, on: on and self.subscribed.set())
        self.runner = threading.Thread(target=self.provider.run, kwargs={"timeout": 30})
        self.runner.start()
        self.addCleanup(self.runner.join, TIMEOUT)
        self.addCleanup(self.provider.stop)
        self.consumer = gwipc.Node.dial(sock, name="consumer")
        self.addCleanup(self.consumer.close)

    def on_call(self, call: gwipc.Call) -> bytes | None:
        if call.data == b"hold":
            self.held.append(call)
            return None
        return call.data.upper()

    def run_async(self, coro: object) -> object:
        return asyncio.run(asyncio.wait_for(coro, TIMEOUT))  # type: ignore[arg-type]


class Aio(AioTest):
    def test_call_timeout_fires_with_no_other_traffic(self) -> None:
        async def main() -> float:
            async with gwipc.aio.attach(self.consumer) as node:
                proxy = node.require(SVC)
                await gwipc.aio.wait_available(proxy, timeout=TIMEOUT)
                t0 = time.monotonic()
                with self.assertRaises(gwipc.TimeoutError):
                    await gwipc.aio.call(proxy, 0, b"hold", timeout=0.3)
                return time.monotonic() - t0
        elapsed = self.run_async(main())
        self.assertGreaterEqual(elapsed, 0.29)
        self.assertLess(elapsed, 2.0)

    def test_wait_available_times_out(self) -> None:
        async def main() -> None:
            async with gwipc.aio.attach(self.consumer) as node:
                proxy = node.require(gwipc.ServiceID("test.aio", 1, 0, "absent"))
                with self.assertRaises(gwipc.TimeoutError):
                    await gwipc.aio.wait_available(proxy, timeout=0.2)
        self.run_async(main())

    def test_callback_exception_is_reraised_when_the_context_exits(self) -> None:
        async def main() -> None:
            async with gwipc.aio.attach(self.consumer) as node:
                proxy = node.require(SVC, on_availability=lambda up: 1 / 0)
                await gwipc.aio.wait_available(proxy, timeout=TIMEOUT)
        with self.assertRaises(ZeroDivisionError):
            self.run_async(main())

    def test_awaited_call_and_cancellation(self) -> None:
        async def main() -> None:
            async with gwipc.aio.attach(self.consumer) as node:
                proxy = node.require(SVC)
                self.assertEqual(await gwipc.aio.call(proxy, 0, b"abc", timeout=TIMEOUT), b"ABC")
                task = asyncio.ensure_future(gwipc.aio.call(proxy, 0, b"hold", timeout=TIMEOUT))
                while not self.held:
                    await asyncio.sleep(0.01)
                task.cancel()
                with self.assertRaises(asyncio.CancelledError):
                    await task
        self.run_async(main())

    def test_bursts_of_events_all_arrive(self) -> None:
        n, burst = 2000, 16
        received = threading.Semaphore(0)

        def publisher() -> None:  # bursts no larger than a subscriber's share of the pool
            for i in range(n):
                self.offer.publish(0, b"%d" % i, wait=TIMEOUT)
                if i % burst == burst - 1:
                    for _ in range(burst):
                        if not received.acquire(timeout=TIMEOUT):
                            return

        async def main() -> list[int]:
            async with gwipc.aio.attach(self.consumer) as node:
                proxy = node.require(SVC)
                seqs: list[int] = []
                async with gwipc.aio.updates(proxy, 0, maxsize=n) as updates:
                    await asyncio.get_running_loop().run_in_executor(None, self.subscribed.wait, TIMEOUT)
                    t = threading.Thread(target=publisher)
                    t.start()
                    self.addCleanup(t.join, TIMEOUT)
                    async for u in updates:
                        seqs.append(u.seq)
                        received.release()
                        if len(seqs) == n:
                            break
                return seqs
        self.assertEqual(self.run_async(main()), list(range(1, n + 1)))


class Attach(AioTest):
    def test_exit_removes_the_reader_of_a_node_closed_inside(self) -> None:
        async def main() -> bool:
            fd = self.consumer.fileno()
            async with gwipc.aio.attach(self.consumer):
                self.consumer.close()
            return asyncio.get_running_loop().remove_reader(fd)  # False: nothing left to remove
        self.assertFalse(self.run_async(main()))
