"""Proxies: using a service (subscriptions, fields, method calls)."""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Generator
from typing import Any

from . import _errors, _lib
from ._made import Made
from ._types import Geometry, ServiceID, SubscriptionState, c_geometry
from .node import Child, Node, _deadline, _remaining
from .sample import Sample


class Proxy(Child):
    """A service this node consumes (:meth:`gwipc.Node.require`).

    It is available once bound to a compatible offer of a peer;
    ``on_availability(available)`` tells when that changes, and
    ``on_subscription(event, status)`` gives the provider's answer to each
    subscription (0 accepted, else its wire status: 2 permission denied, 7
    unknown event ...). Subscriptions are kept across loss and rebinding.
    """

    @classmethod
    def _create(cls, node: Node, service: ServiceID, on_availability: Callable[[bool], Any] | None,
                on_subscription: Callable[[int, int], Any] | None, call_geometry: Geometry | None) -> "Proxy":
        c_service = ServiceID._check(service)._c()
        for cb, what in ((on_availability, "on_availability"), (on_subscription, "on_subscription")):
            if cb is not None:
                _lib.callback(cb, what)
        c_geom = c_geometry(call_geometry)
        self = object.__new__(cls)
        self.service = service
        self._on_availability, self._on_subscription = on_availability, on_subscription
        self._availability_waiters: list[Callable[[bool], Any]] = []
        self._subs: dict[int, _Subscription] = {}
        self._pending: set[PendingCall] = set()
        key = _lib.register(self)
        params = _lib.sized(_lib.gwipc_proxy_params, on_availability=_lib.on_availability,
                            on_subscription=_lib.on_suback, call_geometry=c_geom,
                            userdata=key, destroy=_lib.on_destroy)
        lib = _lib.lib()
        h, err = _lib.ProxyP(), _lib.gwipc_error()
        lib.gwipc_node_require(node._handle(), c_service, params, ctypes.byref(h), err)
        self._adopt(node, h, lib.gwipc_proxy_close)
        return self

    @property
    def available(self) -> bool:
        """True while bound to a provider."""
        return bool(_lib.lib().gwipc_proxy_is_available(self._handle()))

    def wait_available(self, timeout: float | None = None) -> bool:
        """Waits (driving the node if no loop does) until available; False
        on timeout."""
        return self._node._wait(lambda: self.available, timeout, "Proxy.wait_available")

    # ---- events ----------------------------------------------------------

    def subscribe(self, event: int, handler: Callable[[Sample], Any], *, initial_value: bool = False) -> None:
        """Calls ``handler(sample)`` for each update of ``event`` (with
        ``initial_value``, a field's current value first). Subscribing
        again replaces the handler. The proxy keeps the handler."""
        event = _lib.event_id(event)
        sub = _Subscription(self, _lib.callback(handler, "handler"))
        _lib.lib().gwipc_proxy_subscribe(self._handle(), event, int(initial_value), _lib.on_sample, sub.key,
                                         _lib.on_destroy)
        self._subs[event] = sub

    def unsubscribe(self, event: int) -> None:
        """Ends the subscription: no handler call starts after this returns."""
        event = _lib.event_id(event)
        _lib.lib().gwipc_proxy_unsubscribe(self._handle(), event)
        self._subs.pop(event, None)

    def subscription_state(self, event: int) -> SubscriptionState | None:
        """The subscription's state, or None if ``event`` is not subscribed."""
        event = _lib.event_id(event)
        state = ctypes.c_int()
        try:
            _lib.lib().gwipc_proxy_subscription_state(self._handle(), event, ctypes.byref(state))
        except _errors.exception_class(-26):
            return None
        return SubscriptionState(state.value)

    def request_update(self, event: int) -> None:
        """Asks for a field's current value; it arrives at the handler with
        ``requested`` set. The event must be subscribed and the service
        available."""
        _lib.lib().gwipc_proxy_request_update(self._handle(), _lib.event_id(event))

    # ---- methods -----------------------------------------------------------

    def send(self, method: int, data: Any = b"") -> None:
        """Calls ``method`` without a reply (fire-and-forget)."""
        method = _lib.method_id(method)
        ptr, n, keep = _lib.buffer_arg(data)
        _lib.lib().gwipc_proxy_send(self._handle(), method, ptr, n)

    def call(self, method: int, data: Any = b"", *, timeout: float | None = None) -> bytes:
        """Calls ``method`` and returns the reply, waiting first for the
        service and a free call slot, all within ``timeout`` seconds (None:
        no limit). Drives the node meanwhile if no loop does; never holds
        the GIL while waiting; Ctrl-C cancels the call. Raises
        :class:`gwipc.AppError` (``app_code``, ``data``),
        :class:`gwipc.TimeoutError`, PermissionDeniedError / RefusedError /
        QuotaError (the provider's middleware), UnknownMethodError,
        TooLargeError, ClosedError, and DeadlockError from a callback of
        the node (use :meth:`call_async` there)."""
        method = _lib.method_id(method)
        _lib.buffer_arg(data)  # a wrong type raises before any wait
        node = self._node
        if node._loop_thread == threading.get_ident():
            raise _errors.error(-6, "Proxy.call from a callback of the same node: use call_async")
        deadline = _deadline(timeout)
        while True:
            if not self.wait_available(_remaining(deadline)):
                raise _errors.error(-18, f"{self.service} was not available within {timeout} s")
            try:
                pending = node._retry_noslot(lambda: self.call_async(method, data, timeout=_left(deadline)),
                                             _remaining(deadline))
                break
            except _errors.exception_class(-15):
                continue  # gone again: wait for it
        try:
            node._wait(pending.done, None, "Proxy.call")  # the call's own timeout bounds it
        except BaseException:
            pending.cancel()
            raise
        return pending.result(0)

    def call_async(self, method: int, data: Any = b"", *, timeout: float | None = None,
                   callback: Callable[["PendingCall"], Any] | None = None) -> "PendingCall":
        """Calls ``method`` without waiting. The outcome arrives inside a
        dispatch; ``callback(pending)`` then runs. The result is an
        awaitable :class:`PendingCall`. Fails at once with
        NotAvailableError, NoSlotError, UnknownMethodError, TooLargeError,
        ClosedError."""
        method = _lib.method_id(method)
        wait = _lib.usec(timeout) if timeout else 0
        if callback is not None:
            _lib.callback(callback, "callback")
        ptr, n, keep = _lib.buffer_arg(data)
        pending = PendingCall._make(self, callback)
        call_id = ctypes.c_uint64()
        try:
            _lib.lib().gwipc_proxy_call_async(self._handle(), method, ptr, n, wait, _lib.on_reply,
                                              pending.key, _lib.on_destroy, ctypes.byref(call_id))
        except BaseException:
            self._pending.discard(pending)
            raise
        pending.id = call_id.value
        return pending

    # ---- callbacks (see _lib's trampolines) ---------------------------------

    def _cb_availability(self, proxy: Any, available: int) -> None:
        up = bool(available)
        waiters, self._availability_waiters = self._availability_waiters, []
        for w in waiters:
            w(up)
        if self._on_availability is not None:
            self._on_availability(up)

    def _cb_suback(self, proxy: Any, event: int, status: int) -> None:
        if self._on_subscription is not None:
            self._on_subscription(event, status)

    def __repr__(self) -> str:
        return f"<gwipc.Proxy {self.service}{' closed' if self.closed else ''}>"


def _left(deadline: float | None) -> float | None:
    """The time left for a call's own timeout (never 0, which means none)."""
    left = _remaining(deadline)
    if left == 0:
        raise _errors.error(-18, "the call timed out before it could be sent")
    return left


class _Subscription:
    """The handler of one subscription (owned by its proxy)."""

    def __init__(self, proxy: Proxy, handler: Callable[[Sample], Any]) -> None:
        self.proxy, self.handler = proxy, handler
        self.key = _lib.register(self)

    def _cb_sample(self, proxy: Any, borrowed: Any) -> None:
        s = Sample._make(borrowed)
        try:
            self.handler(s)
        finally:
            s._delivered()

    def _cb_fail(self, exc: BaseException) -> None:
        self.proxy._cb_fail(exc)

    def _cb_destroyed(self) -> None:
        pass


class PendingCall(Made):
    """A call made with :meth:`Proxy.call_async`.

    :meth:`done`, :meth:`result` (waits, driving the node if no loop
    does), :meth:`exception`, :meth:`cancel`, :meth:`add_done_callback`,
    and ``await pending`` in asyncio code (cancelling the awaiting task
    cancels the call)."""

    @classmethod
    def _make(cls, proxy: Proxy, callback: Callable[["PendingCall"], Any] | None) -> "PendingCall":
        self = object.__new__(cls)
        self._init(proxy, callback)
        return self

    def _init(self, proxy: Proxy, callback: Callable[["PendingCall"], Any] | None) -> None:
        self.proxy = proxy
        self.id = 0
        self._done = False
        self._reply = b""
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[PendingCall], Any]] = [callback] if callback else []
        self.key = _lib.register(self)
        proxy._pending.add(self)

    def done(self) -> bool:
        """True once the call completed (replied, failed, timed out,
        cancelled, or its node closed)."""
        return self._done

    def result(self, timeout: float | None = None) -> bytes:
        """The reply; raises the call's error. Waits up to ``timeout``."""
        if not self.proxy._node._wait(self.done, timeout, "PendingCall.result"):
            raise _errors.error(-18, "the call has not completed yet")
        if self._error is not None:
            raise self._error
        return self._reply

    def exception(self) -> BaseException | None:
        """The call's error once done (None on success or while pending)."""
        return self._error

    def cancel(self) -> bool:
        """Cancels the call (it completes with CancelledError); False if it
        had completed."""
        if self._done:
            return False
        try:
            _lib.lib().gwipc_proxy_cancel(self.proxy._handle(), self.id)
        except (_errors.exception_class(-26), _errors.exception_class(-4)):
            return False
        return True

    def add_done_callback(self, fn: Callable[["PendingCall"], Any]) -> None:
        """fn(self) once done (at once if it is), on the thread that
        completes it."""
        _lib.callback(fn, "fn")
        if self._done:
            fn(self)
        else:
            self._callbacks.append(fn)

    def __await__(self) -> Generator[Any, None, bytes]:
        """``await pending``: the reply (or the call's error), from a
        coroutine whose loop drives the node (gwipc.aio.attach)."""
        import asyncio

        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def resolve(p: PendingCall) -> None:
            def settle() -> None:
                if fut.done():
                    return
                if p._error is not None:
                    fut.set_exception(p._error)
                else:
                    fut.set_result(p._reply)
            if not loop.is_closed():
                loop.call_soon_threadsafe(settle)

        self.add_done_callback(resolve)
        try:
            return (yield from fut.__await__())
        except asyncio.CancelledError:
            self.cancel()
            raise

    # ---- callbacks (see _lib's trampolines) ---------------------------------

    def _cb_reply(self, proxy: Any, call_id: int, reply: Any, err: Any) -> None:
        data = b""
        if reply:
            r = reply.contents
            data = ctypes.string_at(r.data, r.len) if r.len else b""
        self._complete(data, _lib.raise_for(err.contents, data) if err else None)

    def _complete(self, data: bytes, error: BaseException | None) -> None:
        self._reply, self._error, self._done = data, error, True
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:  # every one runs (an awaiting task's among them), whichever raises
            try:
                fn(self)
            except BaseException as exc:  # noqa: BLE001 - re-raised from the dispatch
                self._cb_fail(exc)

    def _cb_fail(self, exc: BaseException) -> None:
        self.proxy._cb_fail(exc)

    def _cb_destroyed(self) -> None:
        self.proxy._pending.discard(self)
        if not self._done:  # the node closed first
            self._complete(b"", _errors.error(-4, "the node closed before the call completed"))

    def __repr__(self) -> str:
        state = "done" if self._done else "pending"
        return f"<gwipc.PendingCall id={self.id} {state}>"
