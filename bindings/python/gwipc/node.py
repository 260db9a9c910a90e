"""Nodes: the socket, the loop that runs callbacks, and what a node owns."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, Union

from . import _errors, _lib
from ._made import Made
from ._types import Action, FindEvent, Geometry, Limits, LogLevel, PeerInfo, Pool, PoolKind, Rule, ServiceID

if TYPE_CHECKING:
    from .offer import Offer
    from .proxy import Proxy

# The longest one wait (a dispatch waiting inside the library, or a waiter
# sleeping while another thread drives the node) lasts: it bounds how late
# Ctrl-C, a stop() from another thread or a closed node is noticed.
_SLICE = 0.1

_O = TypeVar("_O", bound="Owned")

#: A socket path: str, bytes or os.PathLike.
Path_: TypeAlias = Union[str, bytes, "os.PathLike[str]"]

Authorizer = Callable[[PeerInfo], "bool | str | None"]


class _Box:
    """A handle and whether it was closed, shared with the finalizer (which
    must not refer to the object it finalizes)."""

    __slots__ = ("handle", "closer", "closed")

    def __init__(self, handle: Any, closer: Callable[[Any], None]) -> None:
        self.handle, self.closer, self.closed = handle, closer, False


def _close_box(box: _Box) -> None:
    box.closed = True
    box.closer(box.handle)


class _Loop:
    """Who dispatches a node: the lock every dispatch of it holds (so one
    loop at a time), and that loop's thread. Shared with the node's closer."""

    __slots__ = ("lock", "thread")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.thread: int | None = None


class Owned(Made):
    """An object that owns one C handle, closed exactly once: by
    :meth:`close`, or by its finalizer when it is collected or the
    interpreter exits. It is a context manager."""

    _box: _Box | None = None

    def _own(self, handle: Any, closer: Callable[[Any], None]) -> None:
        self._box = _Box(handle, closer)
        self._finalizer = weakref.finalize(self, _close_box, self._box)

    @property
    def _closed(self) -> bool:
        return self._box is None or self._box.closed

    @property
    def closed(self) -> bool:
        """True once closed (for a node's offers, proxies and finders: also
        once the node closed)."""
        return self._closed

    def close(self) -> None:
        """Closes the object; idempotent."""
        self._finalizer()

    def _handle(self) -> Any:
        _lib.guard()
        if self.closed:
            raise _errors.error(-4, f"{type(self).__name__} is closed")
        assert self._box is not None
        return self._box.handle

    def __enter__(self: _O) -> _O:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Child(Owned):
    """Something a node owns (an offer, a proxy, a finder): the node keeps
    it, and its callbacks, alive until it or the node is closed."""

    _node: "Node"

    def _adopt(self, node: "Node", handle: Any, closer: Callable[[Any], None]) -> None:
        self._node = node
        self._own(handle, closer)
        node._children.add(self)

    @property
    def node(self) -> "Node":
        return self._node

    @property
    def closed(self) -> bool:
        return self._closed or self._node._closed

    def close(self) -> None:
        super().close()
        self._node._children.discard(self)

    def _cb_fail(self, exc: BaseException) -> None:
        self._node._cb_fail(exc)

    def _cb_destroyed(self) -> None:
        """The registration ended (its last callback ran)."""


class Node(Owned):
    """A gwipc node: a listener (:meth:`listen`) or a dialler (:meth:`dial`).

    Callbacks of the node and of everything it owns run only inside
    :meth:`dispatch` / :meth:`run` (or a blocking call that drives the
    node), on that thread, one at a time. An exception a callback raises
    is re-raised from the dispatch that ran it. Use it as a context
    manager, or :meth:`close` / :meth:`shutdown` it; put :meth:`fileno` in
    your own event loop (see :mod:`gwipc.aio` for asyncio).
    """

    def __init__(self) -> None:
        raise TypeError("use gwipc.Node.listen() or gwipc.Node.dial()")

    # ---- creation -----------------------------------------------------

    @classmethod
    def listen(cls, path: Path_, *, allow_uids: Iterable[int] = (), allow_gids: Iterable[int] = (),
               authorize: Authorizer | None = None, socket_mode: int | None = None,
               max_peers: tuple[int, int] | None = None, **common: Any) -> "Node":
        """A node accepting peers on a socket at ``path``.

        ``allow_uids``/``allow_gids`` admit only those peers; ``authorize``
        is then asked about each (return ``None``/``True`` to admit it,
        ``False`` or a reason string to refuse it; an exception refuses it
        too and is re-raised from dispatch). ``socket_mode`` defaults to
        0o600; ``max_peers`` is ``(peers, handshakes)``. For the options
        shared with :meth:`dial` see :meth:`_configure`. Raises
        :class:`gwipc.SystemCallError` (errno EADDRINUSE) while another
        listener answers at path.
        """
        def setup(node: Node, cfg: Any, lib: Any) -> None:
            for uid in allow_uids:
                lib.gwipc_config_allow_uid(cfg, _lib.integer(uid, "uid", _lib.U32))
            for gid in allow_gids:
                lib.gwipc_config_allow_gid(cfg, _lib.integer(gid, "gid", _lib.U32))
            if socket_mode is not None:
                lib.gwipc_config_set_socket_mode(cfg, _lib.integer(socket_mode, "socket_mode", _lib.U32))
            if max_peers is not None:
                peers, handshakes = _pair(max_peers, "max_peers")
                lib.gwipc_config_set_max_peers(cfg, _lib.integer(peers, "max_peers", _lib.U32),
                                               _lib.integer(handshakes, "max_peers handshakes", _lib.U32))
            if authorize is not None:
                node._authorizer = _lib.callback(authorize, "authorize")
                lib.gwipc_config_set_authorize(cfg, _lib.on_authorize, node._key, _lib.on_destroy)
        return cls._create("gwipc_node_listen", path, setup, common)

    @classmethod
    def dial(cls, path: Path_, *, listener_uids: Iterable[int] = (), pools: Iterable[Pool] = (),
             reconnect: tuple[float, float] | None = None, **common: Any) -> "Node":
        """A node connecting to the listener at ``path`` (and reconnecting,
        with back-off, after loss). It returns at once; the connection is
        made by dispatch. ``listener_uids`` refuses a listener not running
        as one of them; ``pools`` sizes pools the listener makes for this
        node; ``reconnect`` is the back-off ``(min, max)`` in seconds.
        Shared options: :meth:`_configure`."""
        def setup(node: Node, cfg: Any, lib: Any) -> None:
            for uid in listener_uids:
                lib.gwipc_config_require_listener_uid(cfg, _lib.integer(uid, "listener uid", _lib.U32))
            for p in pools:
                if not isinstance(p, Pool):
                    raise TypeError(f"pools must hold gwipc.Pool, not {type(p).__name__}")
                if not isinstance(p.geometry, Geometry):
                    raise TypeError(f"Pool.geometry must be a gwipc.Geometry, not {type(p.geometry).__name__}")
                lib.gwipc_config_add_pool(cfg, _lib.cstr(p.service, "pool service"),
                                          _lib.cstr(p.instance, "pool instance"), int(PoolKind(p.kind)),
                                          p.geometry._c())
            if reconnect is not None:
                lo, hi = _pair(reconnect, "reconnect")
                lib.gwipc_config_set_reconnect(cfg, _lib.usec(lo, "reconnect minimum"),
                                               _lib.usec(hi, "reconnect maximum"))
        return cls._create("gwipc_node_dial", path, setup, common)

    @classmethod
    def _create(cls, open_fn: str, path: Path_, setup: Callable[["Node", Any, Any], None],
                common: dict[str, Any]) -> "Node":
        c_path = _lib.cpath(path)
        lib = _lib.lib()
        _lib.guard()
        node = object.__new__(cls)
        node._init_state()
        cfg = _lib.ConfigP()
        lib.gwipc_config_new(ctypes.byref(cfg))
        try:
            node._configure(cfg, lib, **common)
            setup(node, cfg, lib)
            h, err = _lib.NodeP(), _lib.gwipc_error()
            getattr(lib, open_fn)(c_path, cfg, ctypes.byref(h), err)
        finally:
            lib.gwipc_config_free(cfg)
        node._own(h, lib.gwipc_node_close)
        node._fd = lib.gwipc_node_fd(h)
        return node

    def _init_state(self) -> None:
        self._key = _lib.register(self)
        self._errors: list[BaseException] = []
        self._children: set[Child] = set()
        self._handlers: dict[int, Any] = {}  # commands and posted functions, by key
        self._ls = _Loop()
        self._progress = threading.Condition()
        self._steps = 0
        self._step_waiters: list[Callable[[None], Any]] = []  # run after the next dispatch (gwipc.aio)
        self._more = False
        self._stopping = False
        self._authorizer: Authorizer | None = None
        self._on_connected: Callable[[PeerInfo], None] | None = None
        self._on_disconnected: Callable[[PeerInfo, _errors.GwipcError | None], None] | None = None
        self._logger: logging.Logger | None = None

    def _configure(self, cfg: Any, lib: Any, *, name: str = "", status_path: Path_ | None = None,
                   status_mode: int = 0, rules: Iterable[Rule] = (), limits: Limits | None = None,
                   max_packet: int | None = None, handshake_timeout: float | None = None,
                   max_output: int | None = None, spin: float | None = None, rings: int | None = None,
                   on_peer_connected: Callable[[PeerInfo], None] | None = None,
                   on_peer_disconnected: Callable[[PeerInfo, _errors.GwipcError | None], None] | None = None,
                   logger: logging.Logger | None = None, log_level: LogLevel = LogLevel.INFO) -> None:
        """The options of both :meth:`listen` and :meth:`dial`:

        ``name`` (sent to peers); ``status_path`` (serve the status
        endpoint there, for :func:`gwipc.query` and ``gwipc status``, with
        file mode ``status_mode``; needed by :meth:`handle_command`);
        ``rules`` (access rules, :class:`gwipc.Rule`); ``limits``
        (:class:`gwipc.Limits`); ``max_packet``, ``handshake_timeout``
        (seconds), ``max_output``; ``spin`` (seconds, at most 1: how long
        a dispatch with nothing to do polls the shared-memory rings before
        it sleeps, for hand-offs without a wake-up at the cost of CPU;
        default 0) and ``rings`` (entries per ring, a power of two in
        [64, 65536], default 4096; 0 keeps every connection on the
        socket); ``on_peer_connected(peer)`` and
        ``on_peer_disconnected(peer, error_or_None)``; ``logger`` (a
        :class:`logging.Logger` that gets the node's records at
        ``log_level`` and above, inside dispatch).
        """
        if name:
            lib.gwipc_config_set_name(cfg, _lib.cstr(name, "name"))
        if status_path is not None:
            lib.gwipc_config_set_status_path(cfg, _lib.cpath(status_path, "status_path"),
                                             _lib.integer(status_mode, "status_mode", _lib.U32))
        for r in rules:
            lib.gwipc_config_add_rule(cfg, _rule(r))
        if limits is not None:
            if not isinstance(limits, Limits):
                raise TypeError(f"limits must be a gwipc.Limits, not {type(limits).__name__}")
            u32 = {f: _lib.integer(getattr(limits, f), f"limits.{f}", _lib.U32)
                   for f in ("services", "subscriptions", "pending_calls", "find_elements", "pool_slots")}
            u64 = {f: _lib.integer(getattr(limits, f), f"limits.{f}", _lib.U64)
                   for f in ("pool_bytes", "mapped_bytes")}
            lib.gwipc_config_set_limits(cfg, _lib.sized(_lib.gwipc_limits, **u32, **u64))
        if max_packet is not None:
            lib.gwipc_config_set_max_packet(cfg, _lib.integer(max_packet, "max_packet", _lib.U32))
        if handshake_timeout is not None:
            lib.gwipc_config_set_handshake_timeout(cfg, _lib.usec(handshake_timeout, "handshake_timeout"))
        if max_output is not None:
            lib.gwipc_config_set_max_output(cfg, _lib.integer(max_output, "max_output", _lib.U64))
        if spin is not None:
            lib.gwipc_config_set_spin(cfg, _lib.usec(spin, "spin"))
        if rings is not None:
            lib.gwipc_config_set_rings(cfg, _lib.integer(rings, "rings", _lib.U32))
        if on_peer_connected is not None or on_peer_disconnected is not None:
            self._on_connected = None if on_peer_connected is None else _lib.callback(on_peer_connected,
                                                                                      "on_peer_connected")
            self._on_disconnected = None if on_peer_disconnected is None else _lib.callback(
                on_peer_disconnected, "on_peer_disconnected")
            lib.gwipc_config_set_peer_callbacks(cfg, _lib.on_peer_connected, _lib.on_peer_disconnected,
                                                self._key, _lib.on_destroy)
        if logger is not None:
            if not isinstance(logger, (logging.Logger, logging.LoggerAdapter)):
                raise TypeError(f"logger must be a logging.Logger, not {type(logger).__name__}")
            self._logger = logger  # type: ignore[assignment]
            lib.gwipc_config_set_log_callback(cfg, _lib.integer(log_level, "log_level", _lib.I32), _lib.on_log,
                                              self._key, _lib.on_destroy)

    # ---- callbacks of the node itself (see _lib's trampolines) -------------

    def _cb_fail(self, exc: BaseException) -> None:
        self._errors.append(exc)

    def _cb_destroyed(self) -> None:
        pass

    def _cb_peer_connected(self, node: Any, peer: Any) -> None:
        if self._on_connected is not None:
            self._on_connected(PeerInfo._from_c(peer.contents))

    def _cb_peer_disconnected(self, node: Any, peer: Any, why: Any) -> None:
        if self._on_disconnected is not None:
            self._on_disconnected(PeerInfo._from_c(peer.contents), _lib.raise_for(why.contents) if why else None)

    def _cb_authorize(self, peer: Any, reason: Any, cap: int) -> int:
        assert self._authorizer is not None
        try:
            verdict = self._authorizer(PeerInfo._from_c(peer.contents))
        except BaseException:
            _write_reason(reason, cap, "the authorizer failed")
            raise
        if verdict is None or verdict is True:
            return 0
        _write_reason(reason, cap, verdict if isinstance(verdict, str) else "refused by the authorizer")
        return 1

    def _cb_log(self, level: int, line: bytes) -> None:
        if self._logger is not None:
            self._logger.log(max(logging.DEBUG, 20 + level * 5 // 2), "%s", _lib.text(line))

    # ---- the loop -------------------------------------------------------

    def fileno(self) -> int:
        """The node's fd: readable (level-triggered) whenever it has work,
        timers included. Owned by the node: never read or close it."""
        self._handle()
        return self._fd

    def dispatch(self, timeout: float | None = 0.0) -> int:
        """Waits up to ``timeout`` seconds (None: no limit) for work, then
        does what is ready and runs the callbacks, on this thread. Returns
        how many ran. Re-raises the first exception a callback raised.
        Raises :class:`gwipc.BusyError` if another loop drives the node or
        when called from one of its callbacks."""
        deadline = _deadline(timeout)
        self._enter()
        try:
            while True:
                n = self._step(_remaining(deadline))
                if n or self._more or self._closed or _remaining(deadline) == 0:
                    return n
        finally:
            self._leave()

    def run(self, timeout: float | None = None) -> None:
        """Dispatches until :meth:`stop`, :meth:`close` or ``timeout``
        seconds. Ctrl-C raises KeyboardInterrupt promptly."""
        deadline = _deadline(timeout)
        self._enter()
        self._stopping = False
        try:
            while not self._stopping and not self._closed:
                left = _remaining(deadline)
                if left == 0:
                    return
                self._step(left)
        except _errors.GwipcError as exc:
            if not self._closed or exc.code not in (-2, -4):
                raise
        finally:
            self._leave()

    def stop(self) -> None:
        """Makes :meth:`run` return soon. Any thread, or a callback."""
        self._stopping = True
        if not self._closed and self._loop_thread != threading.get_ident():
            self.call_soon(lambda: None)  # wakes the fd

    def call_soon(self, fn: Callable[[], Any]) -> None:
        """Runs ``fn()`` inside the next dispatch, on the loop's thread (not
        at all if the node closes first). Safe from any thread."""
        _lib.callback(fn, "fn")
        h = self._handle()
        posted = _Posted(self, fn)
        try:
            _lib.lib().gwipc_node_post(h, _lib.on_post, posted.key, _lib.on_destroy)
        except BaseException:
            posted._cb_destroyed()
            raise

    @property
    def _loop_thread(self) -> int | None:
        """The thread dispatching the node now (None: no loop runs)."""
        return self._ls.thread

    def _enter(self) -> None:
        self._handle()
        if self._ls.thread == threading.get_ident():
            raise _errors.error(-5, "dispatch called from a callback of the same node")
        if not self._ls.lock.acquire(blocking=False):
            raise _errors.error(-5)
        self._ls.thread = threading.get_ident()

    def _leave(self) -> None:
        self._ls.thread = None
        self._ls.lock.release()

    def _step(self, timeout: float | None) -> int:
        """One dispatch waiting at most _SLICE (inside the library, with the
        GIL released), or not at all when the last one left work pending;
        holding the loop."""
        wait = 0.0 if self._more else _SLICE if timeout is None else min(timeout, _SLICE)
        rc = _lib.lib().gwipc_node_dispatch(self._handle(), _lib.usec(wait))
        self._more = bool(rc & _lib.DISPATCH_MORE)
        with self._progress:
            self._steps += 1
            self._progress.notify_all()
        waiters, self._step_waiters = self._step_waiters, []
        for w in waiters:
            w(None)
        self._reraise()
        return rc & ~_lib.DISPATCH_MORE

    def _reraise(self) -> None:
        if not self._errors:
            return
        errs, self._errors = self._errors, []
        first = errs[0]
        add_note = getattr(first, "add_note", None)
        for other in errs[1:]:
            if add_note is not None:
                add_note(f"a later callback raised too: {other!r}")
        raise first

    def _wait(self, done: Callable[[], bool], timeout: float | None, what: str = "a blocking call") -> bool:
        """Waits until done() or timeout; True if done. Drives the node if
        no loop does; otherwise sleeps until the loop makes progress.
        Raises DeadlockError from a callback of the node."""
        deadline = _deadline(timeout)
        while not done():
            left = _remaining(deadline)
            if left == 0:
                return False
            if self._loop_thread == threading.get_ident():
                raise _errors.error(-6, f"{what} from a callback of the same node would never finish: "
                                        "use the asynchronous form")
            if self._ls.lock.acquire(blocking=False):
                self._ls.thread = threading.get_ident()
                try:
                    self._step(left)
                finally:
                    self._leave()
                continue
            with self._progress:
                if not done():
                    self._progress.wait(_SLICE if left is None else min(left, _SLICE))
            self._handle()
        return True

    def _retry_noslot(self, attempt: Callable[[], Any], wait: float | None) -> Any:
        """attempt() until it does not raise NoSlotError, for up to wait
        seconds, waiting for a dispatch (which may free a slot) between
        tries."""
        deadline = _deadline(wait)
        while True:
            try:
                return attempt()
            except _errors.exception_class(-12):
                left = _remaining(deadline)
                if left == 0:
                    raise
                steps = self._steps
                self._wait(lambda: self._steps != steps, left, "waiting for a free slot")

    # ---- what a node owns -------------------------------------------------

    def offer(self, service: ServiceID, *, events: int = 0, methods: int = 0, fields: Iterable[int] = (),
              geometry: "Geometry | None" = None, reply_geometry: "Geometry | None" = None,
              subscriber_slots: int = 0, inline: bool = True, on_call: Callable[..., Any] | None = None,
              on_cancel: Callable[..., Any] | None = None,
              on_subscription: Callable[[int, bool], Any] | None = None,
              on_update_request: Callable[[int], Any] | None = None) -> "Offer":
        """Starts offering ``service``; see :class:`gwipc.Offer`."""
        from .offer import Offer
        return Offer._create(self, service, events=events, methods=methods, fields=tuple(fields),
                             geometry=geometry, reply_geometry=reply_geometry, subscriber_slots=subscriber_slots,
                             inline=inline, on_call=on_call, on_cancel=on_cancel, on_subscription=on_subscription,
                             on_update_request=on_update_request)

    def require(self, service: ServiceID, *, on_availability: Callable[[bool], Any] | None = None,
                on_subscription: Callable[[int, int], Any] | None = None,
                call_geometry: "Geometry | None" = None) -> "Proxy":
        """Starts consuming ``service``; see :class:`gwipc.Proxy`."""
        from .proxy import Proxy
        return Proxy._create(self, service, on_availability, on_subscription, call_geometry)

    def find(self, interface: str, major: int, callback: Callable[[FindEvent], Any], *, min_minor: int = 0,
             instance: str = "*") -> "Finder":
        """Watches every peer, now and later, for offers of ``interface``
        (this major, minor >= ``min_minor``, ``instance`` or any for
        ``"*"``): ``callback(FindEvent)`` for each appearing and vanishing
        instance. Instances already known are reported in the next
        dispatch."""
        return Finder._create(self, interface, major, min_minor, instance, _lib.callback(callback, "callback"))

    def handle_command(self, name: str, handler: Callable[[bytes], "bytes | str | None"]) -> None:
        """Serves ``name`` on the status endpoint (needs ``status_path``):
        ``handler(request) -> response`` runs inside dispatch. An exception
        fails the request (the client gets no response) and is re-raised
        from dispatch."""
        c_name = _lib.cstr(name, "command name")
        _lib.callback(handler, "handler")
        h = self._handle()
        cmd = _Command(self, handler)
        try:
            _lib.lib().gwipc_node_handle_command(h, c_name, _lib.on_command, cmd.key, _lib.on_destroy)
        except BaseException:
            cmd._cb_destroyed()
            raise

    def status(self) -> dict[str, Any]:
        """The node's status (peers, offers, proxies, pools, counters) as a
        dict: the JSON document the status endpoint serves."""
        lib = _lib.lib()
        js, n = ctypes.c_void_p(), ctypes.c_size_t()
        lib.gwipc_node_status_json(self._handle(), ctypes.byref(js), ctypes.byref(n))
        try:
            return json.loads(ctypes.string_at(js, n.value))
        finally:
            lib.gwipc_free(js)

    # ---- closing ----------------------------------------------------------

    def close(self) -> None:
        """Closes the node and everything it owns (offers withdrawn, peers
        told goodbye without waiting). Idempotent; from another thread it
        waits for a running dispatch (woken, it returns; a run() too);
        from a callback it returns at once. Kept samples stay readable."""
        super().close()
        self._children.clear()

    def shutdown(self, timeout: float = 1.0) -> None:
        """Closes the node after flushing withdrawals and goodbyes to the
        peers, waiting up to ``timeout`` seconds (it closes in any case;
        :class:`gwipc.TimeoutError` if the flush did not finish)."""
        wait = _lib.usec(timeout)
        h = self._handle()
        if self._loop_thread == threading.get_ident():
            raise _errors.error(-6, "Node.shutdown from a callback of the same node would never finish: "
                                    "use close()")
        self._finalizer.detach()
        assert self._box is not None
        self._box.closed = True
        self._children.clear()
        _lib.lib().gwipc_node_shutdown(h, wait)

    def __repr__(self) -> str:
        return f"<gwipc.Node fd={getattr(self, '_fd', None)}{' closed' if self._closed else ''}>"


class Finder(Child):
    """A find watch (:meth:`Node.find`); :meth:`close` stops it."""

    @classmethod
    def _create(cls, node: Node, interface: str, major: int, min_minor: int, instance: str,
                callback: Callable[[FindEvent], Any]) -> "Finder":
        self = object.__new__(cls)
        self._callback = callback
        self._key = _lib.register(self)
        lib = _lib.lib()
        h = _lib.FinderP()
        lib.gwipc_node_find(node._handle(), _lib.cstr(interface, "interface"),
                            _lib.integer(major, "major", _lib.U16), _lib.integer(min_minor, "min_minor", _lib.U16),
                            _lib.cstr(instance, "instance"), _lib.on_find, self._key, _lib.on_destroy,
                            ctypes.byref(h))
        self._adopt(node, h, lib.gwipc_finder_close)
        return self

    def _cb_find(self, finder: Any, ev: Any) -> None:
        e = ev.contents
        self._callback(FindEvent(ServiceID._from_c(e.service), e.peer, bool(e.available)))


class _Handler:
    """A registration of the node itself (a command, a posted function),
    kept in Node._handlers until its destroy runs."""

    def __init__(self, node: Node, fn: Callable[..., Any]) -> None:
        self.node, self.fn = node, fn
        self.key = _lib.register(self)
        node._handlers[self.key] = self

    def _cb_fail(self, exc: BaseException) -> None:
        self.node._cb_fail(exc)

    def _cb_destroyed(self) -> None:
        self.node._handlers.pop(self.key, None)


class _Command(_Handler):
    """The handler of one status-endpoint command."""

    def _cb_command(self, request: Any, n: int, writer: Any) -> int:
        out = self.fn(ctypes.string_at(request, n) if n else b"")
        if out:
            ptr, length, keep = _lib.buffer_arg(out.encode() if isinstance(out, str) else out)
            _lib.lib().gwipc_writer_write(writer, ptr, length)
            del keep
        return 0


class _Posted(_Handler):
    """A function posted with :meth:`Node.call_soon`."""

    def _cb_posted(self) -> None:
        self.fn()


def _rule(r: Rule) -> Any:
    if not isinstance(r, Rule):
        raise TypeError(f"rules must hold gwipc.Rule, not {type(r).__name__}")
    uid_list = [_lib.integer(u, "rule uid", _lib.U32) for u in r.uids]
    gid_list = [_lib.integer(g, "rule gid", _lib.U32) for g in r.gids]
    uids = (ctypes.c_uint32 * len(uid_list))(*uid_list)
    gids = (ctypes.c_uint32 * len(gid_list))(*gid_list)
    c = _lib.sized(_lib.gwipc_rule, service=_lib.cstr(r.service, "rule service"),
                   instance=_lib.cstr(r.instance, "rule instance"), actions=int(Action(r.actions)),
                   n_uids=len(uid_list), n_gids=len(gid_list), deny=int(bool(r.deny)))
    c.uids = ctypes.cast(uids, ctypes.POINTER(ctypes.c_uint32))
    c.gids = ctypes.cast(gids, ctypes.POINTER(ctypes.c_uint32))
    c._keep = (uids, gids)
    return c


def _pair(value: Any, what: str) -> tuple[Any, Any]:
    """A two-element option ((min, max), (peers, handshakes))."""
    try:
        first, second = value
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a pair, not {value!r}") from None
    return first, second


def _write_reason(buf: Any, cap: int, reason: str) -> None:
    if cap == 0:
        return
    data = reason.encode()[: cap - 1] + b"\0"
    ctypes.memmove(buf, data, len(data))


def _deadline(timeout: float | None) -> float | None:
    """The monotonic deadline of a timeout (None: none; see _lib.seconds)."""
    t = _lib.seconds(timeout)
    return None if t is None else time.monotonic() + t


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
