"""A provider and a consumer node in this process, over a real socket and
shared memory: events, fields, methods, find, policy, commands, the loop."""

from __future__ import annotations

import gc
import itertools
import os
import threading
import time
import weakref

import gwipc
from gwipc import _lib

from helpers import TIMEOUT, TempDirTest, pair, pump

SVC = gwipc.ServiceID("test.local", 1, 0, "one")


HELD: list[gwipc.Call] = []


def echo(call: gwipc.Call) -> bytes | None:
    if call.data == b"hold":  # answered later (see on_cancel)
        HELD.append(call)
        return None
    if call.data == b"fail":
        call.fail(5, b"because")
        return None
    if call.data.startswith(b"sleep"):
        time.sleep(float(call.data[5:]))
    return call.data.upper()


def subscribed(test: TempDirTest) -> tuple[gwipc.Node, gwipc.Node, gwipc.Offer, gwipc.Proxy, list[bytes]]:
    """A pair with an offer of one event and a proxy subscribed to it,
    collecting copies of the payloads."""
    a, b = pair(test)
    offer = a.offer(SVC, events=1)
    proxy = b.require(SVC)
    got: list[bytes] = []
    proxy.subscribe(0, lambda s: got.append(s.tobytes()))
    pump(a, b, until=lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
    return a, b, offer, proxy, got


class Events(TempDirTest):
    def test_events_in_order_with_sequence_numbers(self) -> None:
        a, b = pair(self)
        offer = a.offer(SVC, events=1)
        proxy = b.require(SVC)
        got: list[tuple[int, bytes]] = []
        proxy.subscribe(0, lambda s: got.append((s.seq, bytes(s.data))))
        pump(a, b, until=lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
        for i in range(100):
            offer.publish(0, b"event %d" % i)
            if i % 10 == 9:  # a subscriber holds at most half the pool: let it consume
                pump(a, b, until=lambda: len(got) == i + 1)
        self.assertEqual(got, [(i + 1, b"event %d" % i) for i in range(100)])

    def test_publish_takes_any_buffer(self) -> None:
        a, b, offer, proxy, got = subscribed(self)
        for data in (bytearray(b"ba"), memoryview(b"xmvx")[1:3], b"", (b"abc" * 3)):
            offer.publish(0, data)
        pump(a, b, until=lambda: len(got) == 4)
        self.assertEqual(got, [b"ba", b"mv", b"", b"abcabcabc"])

    def test_field_initial_value_and_update_request(self) -> None:
        requested: list[int] = []
        a, b = pair(self)
        offer = a.offer(SVC, events=2, fields=[1], on_update_request=requested.append)
        proxy = b.require(SVC)
        got: list[tuple[bytes, bool]] = []
        proxy.subscribe(1, lambda s: got.append((s.tobytes(), s.requested)), initial_value=True)
        pump(a, b, until=lambda: requested == [1])  # nothing cached yet: the provider is asked
        offer.publish(1, b"20.0")
        pump(a, b, until=lambda: len(got) == 1)
        offer.publish(1, b"21.0")
        pump(a, b, until=lambda: len(got) == 2)
        proxy.request_update(1)
        pump(a, b, until=lambda: len(got) == 3)
        self.assertEqual(got, [(b"20.0", False), (b"21.0", False), (b"21.0", True)])

    def test_unsubscribe_stops_delivery(self) -> None:
        a, b = pair(self)
        offer = a.offer(SVC, events=1)
        proxy = b.require(SVC)
        got: list[int] = []
        proxy.subscribe(0, lambda s: got.append(s.seq))
        pump(a, b, until=lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
        offer.publish(0, b"1")
        pump(a, b, until=lambda: got == [1])
        proxy.unsubscribe(0)
        self.assertIsNone(proxy.subscription_state(0))
        offer.publish(0, b"2")
        offer.publish(0, b"3")
        deadline = time.monotonic() + 0.3
        pump(a, b, until=lambda: time.monotonic() > deadline)
        self.assertEqual(got, [1])

    def test_dropped_callback_still_works_then_unsubscribe_leaves_nothing(self) -> None:
        a, b = pair(self)
        offer = a.offer(SVC, events=1)
        counter = {"n": 0}

        def setup() -> tuple[gwipc.Proxy, weakref.ref]:
            proxy = b.require(SVC)

            def handler(s: gwipc.Sample) -> None:  # referenced by nothing but the proxy
                counter["n"] += 1
            proxy.subscribe(0, handler)
            return proxy, weakref.ref(handler)

        proxy, handler_ref = setup()
        gc.collect()
        pump(a, b, until=lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
        n = 10_000
        for i in range(n):
            offer.publish(0, b"x")
            if i % 16 == 15:
                pump(a, b, until=lambda: counter["n"] == i + 1)
        self.assertEqual(counter["n"], n)
        proxy.unsubscribe(0)
        offer.publish(0, b"late")
        deadline = time.monotonic() + 0.3
        pump(a, b, until=lambda: time.monotonic() > deadline)  # the destroy runs in a dispatch
        self.assertEqual(counter["n"], n)
        gc.collect()
        self.assertIsNone(handler_ref())
        self.assertEqual([h for h in _lib.registry.values() if getattr(h, "proxy", None) is proxy], [])

    def test_loan_is_written_in_place(self) -> None:
        a, b, offer, proxy, got = subscribed(self)
        with offer.loan(0) as loan:
            self.assertGreaterEqual(loan.capacity, 4096)
            loan.buffer[:5] = b"hello"
            loan.publish(5)
        with offer.loan(0) as loan:
            with loan.buffer as buf:
                buf[:3] = b"abc"
            loan.publish(3)
        with offer.loan(0) as loan:
            buf = loan.buffer
            buf[:2] = b"no"
            with self.assertRaises(BufferError):  # a live view: the slot is reused after publish
                loan.publish(2)
            del buf
            loan.publish(2)
            with self.assertRaises(gwipc.LoanDoneError):
                loan.publish(2)
        pump(a, b, until=lambda: len(got) == 3)
        self.assertEqual(got, [b"hello", b"abc", b"no"])

    def test_sample_view_is_read_only_and_dead_after_the_handler(self) -> None:
        a, b = pair(self)
        offer = a.offer(SVC, events=1)
        proxy = b.require(SVC)
        seen: list[gwipc.Sample] = []
        errors: list[BaseException] = []

        def handler(s: gwipc.Sample) -> None:
            seen.append(s)
            try:
                s.data[0] = 1  # type: ignore[index]
            except TypeError as exc:
                errors.append(exc)
        proxy.subscribe(0, handler)
        pump(a, b, until=lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
        offer.publish(0, b"ro")
        pump(a, b, until=lambda: len(seen) == 1)
        self.assertEqual(len(errors), 1)
        with self.assertRaises(gwipc.BadHandleError):
            seen[0].data  # noqa: B018 - released when the handler returned
        with self.assertRaises(gwipc.BadHandleError):
            seen[0].keep()

    def test_kept_sample_and_escaped_view_hold_the_slot_until_released(self) -> None:
        a, b = pair(self)
        offer = a.offer(SVC, events=1, geometry=gwipc.Geometry(64, 4), inline=False)
        proxy = b.require(SVC)
        kept: list[gwipc.Sample] = []
        views: list[memoryview] = []

        def handler(s: gwipc.Sample) -> None:
            if s.seq == 1:
                kept.append(s.keep())
            else:
                views.append(s.data[1:])  # escapes without keep(): kept for the view
        proxy.subscribe(0, handler)
        pump(a, b, until=lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
        offer.publish(0, b"first")
        offer.publish(0, b"second")
        pump(a, b, until=lambda: len(views) == 1)
        in_use = lambda: a.status()["offers"][0]["pool"]["in_use"]  # noqa: E731
        pump(a, b, until=lambda: in_use() == 2)
        self.assertEqual(bytes(kept[0].data), b"first")
        self.assertEqual(bytes(views[0]), b"econd")
        kept[0].release()
        kept[0].release()
        pump(a, b, until=lambda: in_use() == 1)
        views.clear()
        gc.collect()
        pump(a, b, until=lambda: in_use() == 0)

    def test_kept_inline_sample_is_a_copy_and_holds_no_slot(self) -> None:
        a, b = pair(self)
        offer = a.offer(SVC, events=1, geometry=gwipc.Geometry(64, 1))  # inline: the default
        proxy = b.require(SVC)
        kept: list[gwipc.Sample] = []
        seen: list[int] = []

        def handler(s: gwipc.Sample) -> None:
            seen.append(s.seq)
            if s.seq == 1:
                kept.append(s.keep())
        proxy.subscribe(0, handler)
        pump(a, b, until=lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
        for i in range(100):  # one slot, reused while the first sample is kept
            offer.publish(0, b"later" if i else b"first")  # the slot came back: the head passed it
            pump(a, b, until=lambda: len(seen) == i + 1)
        self.assertEqual(a.status()["offers"][0]["pool"]["in_use"], 0)
        self.assertEqual(bytes(kept[0].data), b"first")
        kept[0].release()


class Methods(TempDirTest):
    def setUp(self) -> None:
        super().setUp()
        self.a, self.b = pair(self)
        self.cancelled: list[int] = []
        self.offer = self.a.offer(SVC, events=1, methods=3, on_call=echo, on_cancel=self.on_cancel)
        self.proxy = self.b.require(SVC)
        self.runner = threading.Thread(target=self.a.run, kwargs={"timeout": 30})
        self.runner.start()
        self.addCleanup(self.runner.join, TIMEOUT)
        self.addCleanup(self.a.stop)

    def on_cancel(self, call: gwipc.Call) -> None:
        self.cancelled.append(call.method)
        self.assertTrue(call.cancelled)
        self.assertFalse(HELD.pop().reply(b"late"))  # dropped: the caller no longer waits

    def test_reply(self) -> None:
        self.assertEqual(self.proxy.call(0, b"hello", timeout=TIMEOUT), b"HELLO")
        self.assertEqual(self.proxy.call(0, bytearray(b"ba"), timeout=TIMEOUT), b"BA")
        self.assertEqual(self.proxy.call(0, timeout=TIMEOUT), b"")

    def test_application_error(self) -> None:
        with self.assertRaises(gwipc.AppError) as cm:
            self.proxy.call(0, b"fail", timeout=TIMEOUT)
        self.assertEqual((cm.exception.app_code, cm.exception.data), (5, b"because"))

    def test_handler_exception_fails_the_call_and_is_reraised_by_the_provider(self) -> None:
        self.a.stop()
        self.runner.join(TIMEOUT)
        self.offer.close()
        pump(self.a, self.b, until=lambda: not self.proxy.available)
        boom = RuntimeError("boom")

        def bad(call: gwipc.Call) -> None:
            raise boom
        self.a.offer(SVC, methods=1, on_call=bad)
        pump(self.a, self.b, until=lambda: self.proxy.available)
        pending = self.proxy.call_async(0, b"x")
        with self.assertRaises(RuntimeError) as cm:
            pump(self.a, self.b, until=pending.done)
        self.assertIs(cm.exception, boom)
        pump(self.a, self.b, until=pending.done)
        with self.assertRaises(gwipc.AppError) as app:
            pending.result(0)
        self.assertEqual(app.exception.app_code, gwipc.HANDLER_FAILED)

    def test_timeout_then_cancel_reaches_the_provider(self) -> None:
        t0 = time.monotonic()
        with self.assertRaises(gwipc.TimeoutError):
            self.proxy.call(0, b"sleep0.5", timeout=0.1)
        self.assertLess(time.monotonic() - t0, 0.45)
        self.assertIsInstance(gwipc.TimeoutError(), TimeoutError)

    def test_cancel(self) -> None:
        self.assertTrue(self.proxy.wait_available(TIMEOUT))
        pending = self.proxy.call_async(0, b"hold")
        wait = time.monotonic() + TIMEOUT
        while not HELD and time.monotonic() < wait:
            self.b.dispatch(0.05)
        self.assertTrue(pending.cancel())
        with self.assertRaises(gwipc.CancelledError):
            pending.result(TIMEOUT)
        self.assertFalse(pending.cancel())
        wait = time.monotonic() + TIMEOUT
        while not self.cancelled and time.monotonic() < wait:
            self.b.dispatch(0.05)
        self.assertEqual(self.cancelled, [0])

    def test_call_async_callback_and_fire_and_forget(self) -> None:
        self.assertTrue(self.proxy.wait_available(TIMEOUT))
        done: list[bytes] = []
        pending = self.proxy.call_async(0, b"cb", timeout=TIMEOUT, callback=lambda p: done.append(p.result()))
        self.assertEqual(pending.result(TIMEOUT), b"CB")
        self.assertEqual(done, [b"CB"])
        self.proxy.send(1, b"ignored")
        with self.assertRaises(gwipc.UnknownMethodError):
            self.proxy.call(7, timeout=TIMEOUT)

    def test_call_from_a_callback_is_a_deadlock_error(self) -> None:
        self.assertTrue(self.proxy.wait_available(TIMEOUT))
        results: list[BaseException] = []

        def in_callback() -> None:
            try:
                self.proxy.call(0, b"x", timeout=1)
            except gwipc.DeadlockError as exc:
                results.append(exc)
            try:
                self.b.dispatch(0)
            except gwipc.BusyError as exc:
                results.append(exc)
        self.b.call_soon(in_callback)
        self.b.dispatch(TIMEOUT)
        self.assertEqual([type(e) for e in results], [gwipc.DeadlockError, gwipc.BusyError])

    def test_other_threads_run_during_a_blocking_call(self) -> None:
        ticks = []
        stop = threading.Event()

        def ticker() -> None:
            while not stop.wait(0.01):
                ticks.append(time.monotonic())
        t = threading.Thread(target=ticker)
        t.start()
        try:
            self.assertEqual(self.proxy.call(0, b"sleep1", timeout=TIMEOUT), b"SLEEP1")
        finally:
            stop.set()
            t.join(TIMEOUT)
        self.assertGreaterEqual(len(ticks), 50)


class Departure(TempDirTest):
    def test_a_send_before_shutdown_is_delivered(self) -> None:
        a, b = pair(self)
        got: list[bytes] = []
        a.offer(SVC, methods=1, on_call=lambda c: (got.append(c.data), b"ok")[1])
        proxy = b.require(SVC)
        pump(a, b, until=lambda: proxy.available)
        first = proxy.call_async(0, b"first", timeout=TIMEOUT)
        pump(a, b, until=first.done)  # the shared-memory ring is in use from here
        self.assertEqual(first.result(0), b"ok")
        proxy.send(0, b"last words")
        b.shutdown(1.0)  # the listener does not dispatch meanwhile
        pump(a, until=lambda: len(got) == 2, timeout=2)
        self.assertEqual(got, [b"first", b"last words"])


class Callbacks(TempDirTest):
    def test_exception_in_a_callback_is_reraised_from_dispatch_once(self) -> None:
        a, b = pair(self)
        offer = a.offer(SVC, events=1)
        proxy = b.require(SVC)
        seqs: list[int] = []

        def handler(s: gwipc.Sample) -> None:
            seqs.append(s.seq)
            if s.seq == 2:
                raise ValueError("bad sample")
        proxy.subscribe(0, handler)
        pump(a, b, until=lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
        for i in range(3):
            offer.publish(0, b"x")
        with self.assertRaisesRegex(ValueError, "bad sample"):
            pump(a, b, until=lambda: len(seqs) == 3)
        pump(a, b, until=lambda: len(seqs) == 3)  # later samples still come, and it is not raised again
        self.assertEqual(seqs, [1, 2, 3])

    def test_callbacks_run_on_the_dispatching_thread(self) -> None:
        a, b = pair(self)
        offer = a.offer(SVC, events=1)
        threads: list[int] = []
        proxy = b.require(SVC, on_availability=lambda up: threads.append(threading.get_ident()))
        proxy.subscribe(0, lambda s: threads.append(threading.get_ident()))
        worker = threading.Thread(target=b.run, kwargs={"timeout": TIMEOUT})
        worker.start()
        try:
            pump(a, until=lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
            offer.publish(0, b"x")
            pump(a, until=lambda: len(threads) == 2)
        finally:
            b.stop()
            worker.join(TIMEOUT)
        self.assertFalse(worker.is_alive())
        self.assertEqual(set(threads), {worker.ident})


class Discovery(TempDirTest):
    def test_find_sees_instances_come_and_go(self) -> None:
        a, b = pair(self)
        events: list[gwipc.FindEvent] = []
        finder = b.find("test.local", 1, events.append)
        offer = a.offer(SVC, events=1)
        pump(a, b, until=lambda: len(events) == 1)
        offer.close()
        pump(a, b, until=lambda: len(events) == 2)
        self.assertEqual([(e.service.id, e.service.instance, e.available) for e in events],
                         [("test.local", "one", True), ("test.local", "one", False)])
        finder.close()
        finder.close()

    def test_status_and_commands_over_simple_ipc(self) -> None:
        status_path = self.path("status.sock")
        a, b = pair(self, status_path=status_path)
        a.handle_command("hello", lambda req: b"hi " + req)
        a.offer(SVC, events=1)
        st = a.status()
        self.assertEqual((st["name"], st["role"]), ("provider", "listener"))
        self.assertEqual(st["offers"][0]["service"], str(SVC))
        answers: dict[str, bytes] = {}
        t = threading.Thread(target=lambda: answers.update(
            ping=gwipc.query(status_path, "ping", timeout=TIMEOUT),
            hello=gwipc.query(status_path, b"hello world", timeout=TIMEOUT)))
        t.start()
        pump(a, b, until=lambda: not t.is_alive())
        self.assertEqual(answers, {"ping": b"pong", "hello": b"hi hello world"})
        with self.assertRaises(gwipc.SipcConnectError):
            gwipc.query(self.path("nothing.sock"), "ping", timeout=1)


class Policy(TempDirTest):
    def test_denied_call_and_subscription_map_to_exceptions(self) -> None:
        uid = os.getuid()
        rules = [gwipc.Rule(service="test.local", actions=gwipc.Action.CALL | gwipc.Action.SUBSCRIBE, uids=(uid,),
                            deny=True)]
        a, b = pair(self, rules=rules)
        a.offer(SVC, events=1, methods=1, on_call=echo)
        acks: list[tuple[int, int]] = []
        proxy = b.require(SVC, on_subscription=lambda ev, status: acks.append((ev, status)))
        proxy.subscribe(0, lambda s: None)
        pump(a, b, until=lambda: bool(acks))
        self.assertEqual(acks, [(0, 2)])  # 2: permission denied
        self.assertEqual(proxy.subscription_state(0), gwipc.SubscriptionState.REFUSED)
        pending = proxy.call_async(0, b"x", timeout=TIMEOUT)
        pump(a, b, until=pending.done)
        with self.assertRaises(gwipc.PermissionDeniedError) as cm:
            pending.result(0)
        self.assertIsInstance(cm.exception, PermissionError)

    def test_authorizer_refuses_with_a_reason_and_an_exception_refuses_too(self) -> None:
        seen: list[gwipc.PeerInfo] = []

        def authorize(peer: gwipc.PeerInfo) -> str | None:
            seen.append(peer)
            if peer.name == "intruder":
                return "go away"
            if peer.name == "buggy":
                raise KeyError("oops")
            return None
        sock = self.path("auth.sock")
        a = gwipc.Node.listen(sock, authorize=authorize)
        self.addCleanup(a.close)
        nodes = {}
        for name in ("friend", "intruder", "buggy"):
            nodes[name] = gwipc.Node.dial(sock, name=name)
            self.addCleanup(nodes[name].close)
        raised: list[BaseException] = []

        def refused() -> bool:
            last = nodes["intruder"].status()["dialler"].get("last_error", "")
            return bool(raised) and "go away" in last and len(a.status()["peers"]) == 1

        deadline = time.monotonic() + TIMEOUT
        while not refused():  # the refused diallers retry: the buggy authorizer raises each time
            self.assertLess(time.monotonic(), deadline)
            try:
                pump(a, *nodes.values(), until=refused)
            except KeyError as exc:
                raised.append(exc)
        self.assertEqual({p.name for p in seen}, set(nodes))
        self.assertEqual({p.pid for p in seen}, {os.getpid()})
        self.assertEqual([p["name"] for p in a.status()["peers"]], ["friend"])
        self.assertGreaterEqual(a.status()["counters"]["peers_rejected"], 2)


class Lifetime(TempDirTest):
    def test_close_is_idempotent_and_children_close_with_the_node(self) -> None:
        a, b = pair(self)
        offer = a.offer(SVC, events=1)
        a.close()
        a.close()
        self.assertTrue(offer.closed)
        with self.assertRaises(gwipc.ClosedError):
            offer.publish(0, b"x")
        with self.assertRaises(gwipc.ClosedError):
            a.dispatch(0)
        offer.close()

    def test_garbage_collected_in_any_order(self) -> None:
        names = ("node", "offer", "proxy", "sample", "loan")  # and the consumer's node, last
        for i, order in enumerate(itertools.permutations(names)):
            with self.subTest(order=order):
                sock = self.path(f"gc{i}.sock")
                objs: dict[str, object] = {}
                objs["node"] = a = gwipc.Node.listen(sock)
                b = gwipc.Node.dial(sock)
                objs["offer"] = offer = a.offer(SVC, events=1)
                objs["proxy"] = proxy = b.require(SVC)
                kept: list[gwipc.Sample] = []
                proxy.subscribe(0, lambda s: kept.append(s.keep()))
                pump(a, b, until=lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
                offer.publish(0, b"sample")
                pump(a, b, until=lambda: bool(kept))
                objs["sample"] = kept.pop()
                objs["loan"] = offer.loan(0)
                refs = [weakref.ref(o) for o in (*objs.values(), b)]
                del a, offer, proxy
                for name in order:
                    del objs[name]
                    gc.collect()
                del b
                gc.collect()
                self.assertEqual([r() for r in refs], [None] * len(refs))
                self.assertFalse(os.path.exists(sock))  # the listener closed and removed its socket


class Options(TempDirTest):
    """Node options and answers the other tests do not reach."""

    def test_rings_and_spin(self) -> None:
        # rings=0: everything on the socket; rings=64: small rings a burst
        # fills; either with a spinning consumer. The status names the carrier.
        for rings in (0, 64):
            sock = self.path(f"rings{rings}.sock")
            a = gwipc.Node.listen(sock)
            self.addCleanup(a.close)
            b = gwipc.Node.dial(sock, rings=rings, spin=0.0002)
            self.addCleanup(b.close)
            got: list[bytes] = []
            offer = a.offer(SVC, events=1, methods=1, on_call=lambda c: c.data.upper())
            proxy = b.require(SVC)
            proxy.subscribe(0, lambda smp: got.append(smp.tobytes()))
            pump(a, b, until=lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
            for i in range(100):
                offer.publish(0, b"%d" % i, wait=TIMEOUT)
                pump(a, b, until=lambda: len(got) == i + 1)
            self.assertEqual(got, [b"%d" % i for i in range(100)])
            pending = proxy.call_async(0, b"abc", timeout=TIMEOUT)
            pump(a, b, until=pending.done)
            self.assertEqual(pending.result(0), b"ABC")
            self.assertEqual([p["ring"] for p in b.status()["peers"]], [rings > 0], f"rings={rings}")
        for bad in ({"rings": 100}, {"rings": 32}, {"rings": 1 << 17}, {"spin": 2.0}, {"spin": float("inf")}):
            with self.assertRaises(gwipc.InvalidArgumentError, msg=str(bad)):
                gwipc.Node.dial(self.path("bad.sock"), **bad)

    def test_node_is_a_context_manager(self) -> None:
        with gwipc.Node.listen(self.path("cm.sock")) as node:
            self.assertFalse(node.closed)
            self.assertGreaterEqual(node.fileno(), 0)
        self.assertTrue(node.closed)
        self.assertFalse(os.path.exists(self.path("cm.sock")))

    def test_peer_callbacks_and_the_logger(self) -> None:
        import logging
        records: list[str] = []

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(record.getMessage())
        logger = logging.getLogger("gwipc.test.options")
        logger.addHandler(Collect())
        logger.propagate = False
        events: list[tuple[str, object]] = []
        sock = self.path("peers.sock")
        a = gwipc.Node.listen(sock, allow_uids=[os.getuid() + 1], allow_gids=[os.getgid() + 1], logger=logger,
                              log_level=gwipc.LogLevel.DEBUG,
                              on_peer_connected=lambda p: events.append(("connected", p.pid)),
                              on_peer_disconnected=lambda p, why: events.append(("gone", why)))
        self.addCleanup(a.close)
        b = gwipc.Node.dial(sock)
        self.addCleanup(b.close)
        # Neither our uid nor our gid is allowed: refused, and logged.
        pump(a, b, until=lambda: any("not allowed" in r for r in records))
        self.assertEqual(events, [])
        a.close()
        a = gwipc.Node.listen(sock, allow_uids=[os.getuid()],
                              on_peer_connected=lambda p: events.append(("connected", p.pid)),
                              on_peer_disconnected=lambda p, why: events.append(("gone", why)))
        self.addCleanup(a.close)
        pump(a, b, until=lambda: events)
        self.assertEqual(events, [("connected", os.getpid())])
        b.close()
        pump(a, until=lambda: len(events) == 2)
        self.assertEqual(events[1], ("gone", None))  # an orderly goodbye: no error

    def test_a_dialler_sizes_its_reply_pool(self) -> None:
        sock = self.path("lim.sock")
        a = gwipc.Node.listen(sock, limits=gwipc.Limits(services=1), max_peers=(1, 1))
        self.addCleanup(a.close)
        b = gwipc.Node.dial(sock, pools=[gwipc.Pool(SVC.id, gwipc.PoolKind.REPLY, gwipc.Geometry(512, 2))])
        self.addCleanup(b.close)
        a.offer(SVC, methods=1, on_call=lambda c: b"x" * 600)  # beyond the dialler's 512-byte reply slots
        proxy = b.require(SVC)
        pump(a, b, until=lambda: proxy.available)
        pending = proxy.call_async(0, b"", timeout=TIMEOUT)
        with self.assertRaises(gwipc.TooLargeError):  # the provider's reply did not fit
            pump(a, b, until=pending.done)
        pump(a, b, until=pending.done)
        with self.assertRaises(gwipc.AppError):
            pending.result(0)

    def test_a_call_answered_later_from_another_thread(self) -> None:
        a, b = pair(self)
        held: list[gwipc.Call] = []
        a.offer(SVC, methods=1, on_call=held.append)
        proxy = b.require(SVC)
        pump(a, b, until=lambda: proxy.available)
        ok = proxy.call_async(0, b"one", timeout=TIMEOUT)
        failed = proxy.call_async(0, b"two", timeout=TIMEOUT)
        pump(a, b, until=lambda: len(held) == 2)
        t = threading.Thread(target=lambda: (held[0].reply(b"late " + held[0].data),
                                             held[1].fail(9, b"no " + held[1].data)))
        t.start()
        t.join(TIMEOUT)
        self.assertTrue(held[0].answered and held[1].answered)
        pump(a, b, until=lambda: ok.done() and failed.done())
        self.assertEqual(ok.result(0), b"late one")
        with self.assertRaises(gwipc.AppError) as cm:
            failed.result(0)
        self.assertEqual((cm.exception.app_code, cm.exception.data), (9, b"no two"))
        with self.assertRaises(gwipc.CallDoneError):
            held[0].reply(b"again")
