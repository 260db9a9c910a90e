"""Offers: providing a service (events, fields, loans, answering calls)."""

from __future__ import annotations

import ctypes
import weakref
from collections.abc import Callable
from typing import Any

from . import _errors, _lib
from ._made import Made
from ._types import Geometry, ServiceID, c_geometry
from .node import Child, Node
from .sample import view

#: The application error code a call gets when its Python handler raised.
HANDLER_FAILED = -1


class Offer(Child):
    """A service this node provides (:meth:`gwipc.Node.offer`).

    Events have ids ``0..events-1``, methods ``0..methods-1``; ``fields``
    are the events whose latest value is cached for late subscribers.
    Callbacks (all run inside dispatch):

    - ``on_call(call)``: a method call (:class:`Call`). Return the reply
      (bytes or any buffer), or ``None`` and answer with ``call.reply()``
      / ``call.fail()`` now or later, from any thread. Raising
      :class:`gwipc.AppError` fails the call with its ``app_code`` and
      ``data``; any other exception fails it with ``HANDLER_FAILED`` and
      is re-raised from dispatch.
    - ``on_cancel(call)``: the caller of a pending call stopped waiting;
      answer it anyway to free it.
    - ``on_subscription(event, subscribed)``: first subscriber came, or
      last left.
    - ``on_update_request(event)``: a peer wants a field's current value
      and none is cached: publish it.

    ``subscriber_slots`` bounds the slots one subscriber holds (0: half the
    pool). With ``inline`` (the default) an update of at most 224 bytes to
    a peer connected through rings travels as a copy inside the ring, and
    its slot comes back once the subscriber's dispatch has read it; with
    ``inline=False`` every subscriber reads in place and holds the slot
    until its handler returns or the kept sample is released.
    """

    @classmethod
    def _create(cls, node: Node, service: ServiceID, *, events: int, methods: int, fields: tuple[int, ...],
                geometry: Geometry | None, reply_geometry: Geometry | None, subscriber_slots: int, inline: bool,
                on_call: Callable[["Call"], Any] | None, on_cancel: Callable[["Call"], Any] | None,
                on_subscription: Callable[[int, bool], Any] | None,
                on_update_request: Callable[[int], Any] | None) -> "Offer":
        c_service = ServiceID._check(service)._c()
        for cb, what in ((on_call, "on_call"), (on_cancel, "on_cancel"), (on_subscription, "on_subscription"),
                         (on_update_request, "on_update_request")):
            if cb is not None:
                _lib.callback(cb, what)
        field_ids = [_lib.integer(f, "field event id", _lib.U16) for f in fields]
        self = object.__new__(cls)
        self.service = service
        self._on_call, self._on_cancel = on_call, on_cancel
        self._on_subscription, self._on_update_request = on_subscription, on_update_request
        c_fields = (ctypes.c_uint16 * len(field_ids))(*field_ids)
        params = _lib.sized(_lib.gwipc_offer_params, events=_lib.integer(events, "events", _lib.U16),
                            methods=_lib.integer(methods, "methods", _lib.U16),
                            fields=ctypes.cast(c_fields, ctypes.POINTER(ctypes.c_uint16)), n_fields=len(field_ids),
                            geometry=c_geometry(geometry), reply_geometry=c_geometry(reply_geometry),
                            subscriber_slots=_lib.integer(subscriber_slots, "subscriber_slots", _lib.U32),
                            flags=0 if inline else _lib.OFFER_NO_INLINE,
                            destroy=_lib.on_destroy)
        key = _lib.register(self)
        params.userdata = key
        if on_call is not None:
            params.on_call = _lib.on_call
        if on_cancel is not None:
            params.on_cancel = _lib.on_cancel
        if on_subscription is not None:
            params.on_subscription = _lib.on_subscribers
        if on_update_request is not None:
            params.on_update_request = _lib.on_update_request
        lib = _lib.lib()
        h, err = _lib.OfferP(), _lib.gwipc_error()
        lib.gwipc_node_offer(node._handle(), c_service, params, ctypes.byref(h), err)
        self._adopt(node, h, lib.gwipc_offer_close)
        return self

    def publish(self, event: int, data: Any, *, wait: float | None = 0.0) -> None:
        """Copies ``data`` (bytes or any buffer) into a slot and sends it to
        every subscriber of ``event`` (a field also caches it). ``wait``:
        seconds to wait for a free slot (None: no limit), else
        :class:`gwipc.NoSlotError`. Other errors: TooLargeError,
        UnknownEventError, ClosedError."""
        event = _lib.event_id(event)
        _lib.seconds(wait, "wait")
        ptr, n, keep = _lib.buffer_arg(data)
        lib = _lib.lib()
        self._node._retry_noslot(lambda: lib.gwipc_offer_publish(self._handle(), event, ptr, n, 0), wait)
        del keep

    def loan(self, event: int, *, wait: float | None = 0.0) -> "Loan":
        """Lends a free slot for writing ``event`` in place (zero copy):
        write into :attr:`Loan.buffer`, then :meth:`Loan.publish`."""
        event = _lib.event_id(event)
        _lib.seconds(wait, "wait")
        loan = _lib.sized(_lib.gwipc_loan)
        lib = _lib.lib()
        self._node._retry_noslot(lambda: lib.gwipc_offer_loan(self._handle(), event, 0, loan), wait)
        return Loan._make(self, loan)

    # ---- callbacks (see _lib's trampolines) ---------------------------------

    def _cb_call(self, offer: Any, c_call: Any) -> None:
        call = Call._make(c_call)
        assert self._on_call is not None
        try:
            out = self._on_call(call)
            if out is not None and not call.fire_and_forget:
                call.reply(out)  # a reply that is no buffer, or does not fit, fails the call below
        except _errors.exception_class(-23) as exc:
            code = exc.app_code
            ok = isinstance(code, int) and _lib.I32[0] <= code <= _lib.I32[1]
            call._answer_quietly(code if ok else HANDLER_FAILED, getattr(exc, "data", b""))
            return
        except BaseException as exc:
            call._answer_quietly(HANDLER_FAILED, f"the handler raised {type(exc).__name__}".encode())
            raise

    def _cb_cancel(self, offer: Any, c_call: Any) -> None:
        assert self._on_cancel is not None
        self._on_cancel(Call._make(c_call))

    def _cb_subscribers(self, offer: Any, event: int, subscribed: int) -> None:
        assert self._on_subscription is not None
        self._on_subscription(event, bool(subscribed))

    def _cb_update_request(self, offer: Any, event: int) -> None:
        assert self._on_update_request is not None
        self._on_update_request(event)

    def __repr__(self) -> str:
        return f"<gwipc.Offer {self.service}{' closed' if self.closed else ''}>"


class Call(Made):
    """A method call received by an offer.

    ``method``, ``peer`` (the caller's peer id), ``fire_and_forget`` and
    ``data`` (a copy of the request). Answer it once with :meth:`reply` or
    :meth:`fail`, inside the handler or later from any thread, until the
    node closes. A fire-and-forget call needs (and takes) no answer.
    """

    __slots__ = ("method", "peer", "fire_and_forget", "data", "_c", "_answered")

    @classmethod
    def _make(cls, borrowed: Any) -> "Call":
        self = object.__new__(cls)
        self._init(borrowed)
        return self

    def _init(self, borrowed: Any) -> None:
        c = _lib.gwipc_call.from_buffer_copy(borrowed.contents)
        self.method: int = c.method
        self.peer: int = c.peer
        self.fire_and_forget: bool = bool(c.fire_and_forget)
        self.data: bytes = ctypes.string_at(c.data, c.len) if c.len else b""
        self._c = c
        self._answered = False

    @property
    def cancelled(self) -> bool:
        """True once the caller cancelled, timed out or went away."""
        return bool(_lib.lib().gwipc_call_is_cancelled(self._c))

    @property
    def answered(self) -> bool:
        """True once replied to or failed (or the caller stopped waiting)."""
        return self._answered

    def reply(self, data: Any = b"") -> bool:
        """Answers with ``data``. False if the caller no longer waits (the
        answer is dropped). NoSlotError / TooLargeError leave the call
        pending (answer again); CallDoneError if already answered."""
        ptr, n, keep = _lib.buffer_arg(data)
        return self._answer(lambda: _lib.lib().gwipc_call_reply(self._c, ptr, n))

    def fail(self, app_code: int, data: Any = b"") -> bool:
        """Answers with an application error (the caller gets
        :class:`gwipc.AppError` with this ``app_code`` and ``data``)."""
        app_code = _lib.integer(app_code, "app_code", _lib.I32)
        ptr, n, keep = _lib.buffer_arg(data)
        return self._answer(lambda: _lib.lib().gwipc_call_fail(self._c, app_code, ptr, n))

    def _answer(self, send: Callable[[], int]) -> bool:
        if self.fire_and_forget:
            raise _errors.error(-1, "a fire-and-forget call takes no answer")
        try:
            send()
        except _errors.exception_class(-19):  # the caller stopped waiting
            self._answered = True
            return False
        self._answered = True
        return True

    def _answer_quietly(self, app_code: int, data: Any) -> None:
        if not self.fire_and_forget and not self._answered:
            try:
                self.fail(app_code, data)
            except (_errors.GwipcError, TypeError, ValueError):  # AppError data that is no buffer: without it
                try:
                    self.fail(app_code)
                except _errors.GwipcError:
                    pass

    def __repr__(self) -> str:
        return f"<gwipc.Call method={self.method} peer={self.peer} len={len(self.data)}>"


class _LoanHold:
    """Keeps an open loan (so its slot stays mapped) while views of it live."""

    __slots__ = ("__weakref__", "loan")

    def __init__(self, loan: "Loan") -> None:
        self.loan = loan


def _discard(c_loan: Any) -> None:
    try:
        _lib.lib().gwipc_loan_discard(c_loan)
    except _errors.GwipcError:
        pass  # published, or its node closed: nothing to give back


class Loan(Made):
    """A slot lent for writing an event in place (:meth:`Offer.loan`).

    :attr:`buffer` is a writable memoryview of the whole slot
    (``capacity`` bytes). :meth:`publish` sends the first n bytes;
    :meth:`discard` gives the slot back. Both refuse with BufferError while
    a view of the buffer is alive (drop it, or ``with loan.buffer as b:``),
    because the slot is reused afterwards. Used as a context manager the
    loan is discarded on exit unless published; a loan that is collected
    is discarded.
    """

    @classmethod
    def _make(cls, offer: Offer, c_loan: Any) -> "Loan":
        self = object.__new__(cls)
        self._init(offer, c_loan)
        return self

    def _init(self, offer: Offer, c_loan: Any) -> None:
        self._offer = offer
        self._c = c_loan
        self.event: int = c_loan.event
        self.capacity: int = c_loan.capacity
        self._weak: Any = None
        self._done = False
        self._finalizer = weakref.finalize(self, _discard, c_loan)
        self._finalizer.atexit = False  # a view may be used after the exit handlers (see sample.py)

    @property
    def buffer(self) -> memoryview:
        """The slot, writable (valid until publish or discard)."""
        if self._done:
            raise _errors.error(-14)
        hold = self._weak() if self._weak is not None else None
        if hold is None:
            hold = _LoanHold(self)
            self._weak = weakref.ref(hold)
        return view(self._c.data, self.capacity, hold, writable=True)

    def publish(self, n: int) -> None:
        """Publishes the first n bytes and ends the loan (ClosedError if
        the offer closed meanwhile: the loan ends too)."""
        n = _lib.integer(n, "length", _lib.U64, -13)
        self._end(lambda: _lib.lib().gwipc_loan_publish(self._c, n))

    def discard(self) -> None:
        """Ends the loan without publishing. Idempotent."""
        if not self._done:
            self._end(lambda: _lib.lib().gwipc_loan_discard(self._c))

    @property
    def done(self) -> bool:
        """True once published or discarded (the buffer is gone)."""
        return self._done

    def _end(self, fn: Callable[[], int]) -> None:
        if self._done:
            raise _errors.error(-14)
        if self._weak is not None and self._weak() is not None:
            raise BufferError("views of the loan's buffer are still alive: drop them first "
                              "(or use `with loan.buffer as b:`)")
        try:
            fn()
        except _errors.exception_class(-13):
            raise  # too large: the loan stays open
        except _errors.GwipcError:
            self._close()
            raise
        self._close()

    def _close(self) -> None:
        self._done = True
        self._finalizer.detach()

    def __enter__(self) -> "Loan":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done and (self._weak is None or self._weak() is None):
            self.discard()

    def __repr__(self) -> str:
        return f"<gwipc.Loan event={self.event} capacity={self.capacity}{' done' if self._done else ''}>"
