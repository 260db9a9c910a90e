"""asyncio integration: the node's fd in the loop, awaitable calls, and
event updates as an async iterator.

The node's fd is level-triggered and includes its timers, so
``loop.add_reader(fd, dispatch)`` is the whole integration: no timer
polls it. Needs a loop with ``add_reader`` (the default selector loop on
Linux, or uvloop)::

    async with gwipc.aio.attach(node):
        proxy = node.require(svc)
        await gwipc.aio.wait_available(proxy, timeout=5)
        reply = await gwipc.aio.call(proxy, 0, b"request", timeout=1)
        async for update in gwipc.aio.updates(proxy, 0):
            print(update.seq, update.data)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from . import _errors
from ._types import Update
from .node import Node, _deadline, _remaining
from .proxy import Proxy, _left
from .sample import Sample


class attach:
    """Drives ``node`` from the running loop while the context is entered
    (``async with`` or ``with`` inside a coroutine). Callbacks then run on
    the loop's thread. The first exception a callback raised is re-raised
    when the context exits (and stops nothing meanwhile)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> Node:
        self._loop = asyncio.get_running_loop()
        try:
            self._loop.add_reader(self.node.fileno(), self._readable)
        except NotImplementedError as exc:
            raise RuntimeError("gwipc.aio needs an event loop with add_reader (a selector loop)") from exc
        return self.node

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        # Also once the node closed inside the context: a reader left behind
        # would, when the fd number is reused, remove the new owner's reader.
        self._loop.remove_reader(self.node._fd)
        if self.error is not None:
            err, self.error = self.error, None
            raise err

    async def __aenter__(self) -> Node:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

    def _readable(self) -> None:
        assert self._loop is not None
        if self.node.closed:
            self._loop.remove_reader(self.node._fd)
            return
        try:
            self.node.dispatch(0)
        except _errors.exception_class(-5):
            return  # another thread is driving it (a blocking call): it runs the callbacks
        except Exception as exc:  # noqa: BLE001 - kept for __exit__
            if self.error is None:
                self.error = exc
        if self.node._more:
            self._loop.call_soon(self._readable)


def _settler(fut: asyncio.Future[Any]) -> Callable[[Any], None]:
    """A function that sets fut's result from whatever thread dispatches
    the node (made on the loop's thread)."""
    loop, loop_thread = asyncio.get_running_loop(), threading.get_ident()

    def settle(value: Any) -> None:
        def set_result() -> None:
            if not fut.done():
                fut.set_result(value)
        if threading.get_ident() == loop_thread:
            set_result()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(set_result)
    return settle


async def wait_available(proxy: Proxy, timeout: float | None = None) -> None:
    """Waits until the proxy is bound to a provider
    (:class:`gwipc.TimeoutError` after ``timeout`` seconds). The node must
    be attached."""
    deadline = _deadline(timeout)
    while not proxy.available:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        proxy._availability_waiters.append(_settler(fut))
        try:
            await asyncio.wait_for(fut, _remaining(deadline))
        except asyncio.TimeoutError:
            raise _errors.error(-18, f"{proxy.service} was not available within {timeout} s") from None


async def _next_dispatch(node: Node) -> None:
    """Waits for the node's next dispatch (one that may free a slot)."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    node._step_waiters.append(_settler(fut))
    await fut


async def call(proxy: Proxy, method: int, data: Any = b"", *, timeout: float | None = None) -> bytes:
    """``Proxy.call`` for coroutines: waits for the service and a free call
    slot, then for the reply, all within ``timeout`` seconds; cancelling
    the task cancels the call."""
    deadline = _deadline(timeout)
    while True:
        await wait_available(proxy, _remaining(deadline))
        try:
            pending = proxy.call_async(method, data, timeout=_left(deadline))
        except _errors.exception_class(-15):
            continue
        except _errors.exception_class(-12):
            await _next_dispatch(proxy.node)
            continue
        return await pending


class updates(AsyncIterator[Update]):
    """Subscribes to ``event`` and yields each update as a copied
    :class:`gwipc.Update` (copies: a queue of kept samples would hold the
    provider's slots). At most ``maxsize`` wait in the queue; beyond that
    the oldest is dropped (``dropped`` counts them; sequence numbers show
    the gap). Unsubscribes on :meth:`aclose` or at the end of ``async
    for``. The node must be attached."""

    def __init__(self, proxy: Proxy, event: int, *, initial_value: bool = False, maxsize: int = 64) -> None:
        self.proxy, self.event = proxy, event
        self.dropped = 0
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        self._queue: asyncio.Queue[Update] = asyncio.Queue(maxsize)
        proxy.subscribe(event, self._on_sample, initial_value=initial_value)

    def _on_sample(self, s: Sample) -> None:
        u = Update(s.event, s.seq, s.requested, s.tobytes())
        if threading.get_ident() == self._loop_thread:
            self._put(u)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._put, u)

    def _put(self, u: Update) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(u)

    def __aiter__(self) -> "updates":
        return self

    async def __anext__(self) -> Update:
        return await self._queue.get()

    async def aclose(self) -> None:
        if not self.proxy.closed:
            self.proxy.unsubscribe(self.event)

    async def __aenter__(self) -> "updates":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
