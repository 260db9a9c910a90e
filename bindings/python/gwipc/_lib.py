"""The private 1:1 ctypes layer over include/gwipc.h.

Everything here mirrors the header: the structs, one opaque type per
handle, one CFUNCTYPE per callback type, and :data:`SIGNATURES`, the
``restype``/``argtypes`` of every function, applied once when the library
is loaded. Functions returning ``int`` get :func:`_check`, the one error
checker: a negative result raises the matching :mod:`gwipc._errors` class,
filled from the call's ``gwipc_error`` when it took one.

Loading is lazy (:func:`lib`): ``import gwipc`` must not start the Go
runtime, so that a process that imports gwipc and creates no node can
still fork.

Callbacks: C holds only small integer keys (``userdata``). The
trampolines below are module-level CFUNCTYPE objects, made once, so none
can be collected while C holds it; each looks its key up in
:data:`registry` (a weak map to the Python object that handles it, kept
alive by the gwipc object it belongs to) and calls that object's private method
for the slot. A key that is gone (destroyed, or its owner collected)
makes the callback a no-op. Exceptions are caught here and handed to the
handler's ``_cb_fail`` method (the node re-raises them from ``dispatch()``),
and the safe value is returned to C.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import math
import numbers
import operator
import os
import sys
import threading
import weakref
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_int, c_int32, c_int64, c_size_t, c_uint,
                    c_uint8, c_uint16, c_uint32, c_uint64, c_void_p)
from importlib import resources
from pathlib import Path
from typing import Any

from . import _errors

#: The binding's API level: the library must have this major and at least this minor.
BINDING_MAJOR, BINDING_MINOR = 0, 2

FOREVER = -1
DISPATCH_MORE = 1 << 30
OFFER_NO_INLINE = 1 << 0
SONAME = "libgwipc.so.1"

# ---- structs ---------------------------------------------------------------


class gwipc_error(Structure):
    _fields_ = [("struct_size", c_uint32), ("code", c_int32), ("app_code", c_int32), ("status", c_uint16),
                ("reserved_", c_uint16), ("sys_errno", c_int32), ("message", c_char * 256)]

    def __init__(self) -> None:
        super().__init__(ctypes.sizeof(gwipc_error))


class gwipc_service_id(Structure):
    _fields_ = [("id", c_char_p), ("major", c_uint16), ("minor", c_uint16), ("instance", c_char_p)]


class gwipc_geometry(Structure):
    _fields_ = [("slot_size", c_uint32), ("slot_count", c_uint32)]


class gwipc_peer_info(Structure):
    _fields_ = [("struct_size", c_uint32), ("id", c_uint64), ("pid", c_int32), ("uid", c_uint32),
                ("gid", c_uint32), ("name", c_char_p)]


class gwipc_limits(Structure):
    _fields_ = [("struct_size", c_uint32), ("services", c_uint32), ("subscriptions", c_uint32),
                ("pending_calls", c_uint32), ("find_elements", c_uint32), ("pool_slots", c_uint32),
                ("pool_bytes", c_uint64), ("mapped_bytes", c_uint64)]


class gwipc_rule(Structure):
    _fields_ = [("struct_size", c_uint32), ("service", c_char_p), ("instance", c_char_p), ("actions", c_uint32),
                ("uids", POINTER(c_uint32)), ("n_uids", c_size_t), ("gids", POINTER(c_uint32)),
                ("n_gids", c_size_t), ("deny", c_int)]


class gwipc_call(Structure):
    _fields_ = [("struct_size", c_uint32), ("method", c_uint16), ("fire_and_forget", c_uint8),
                ("reserved_", c_uint8), ("peer", c_uint64), ("data", c_void_p), ("len", c_size_t),
                ("private_", c_uint64 * 2)]


class gwipc_loan(Structure):
    _fields_ = [("struct_size", c_uint32), ("event", c_uint16), ("reserved_", c_uint16), ("data", c_void_p),
                ("capacity", c_size_t), ("private_", c_uint64 * 2)]


class gwipc_sample(Structure):
    _fields_ = [("struct_size", c_uint32), ("event", c_uint16), ("requested", c_uint8), ("kept", c_uint8),
                ("seq", c_uint64), ("data", c_void_p), ("len", c_size_t), ("private_", c_uint64 * 2)]


class gwipc_reply(Structure):
    _fields_ = [("struct_size", c_uint32), ("reserved_", c_uint32), ("data", c_void_p), ("len", c_size_t),
                ("private_", c_uint64 * 2)]


class gwipc_find_event(Structure):
    _fields_ = [("struct_size", c_uint32), ("service", gwipc_service_id), ("peer", c_uint64),
                ("available", c_int)]


# Opaque handles: one type each, so a proxy cannot be passed for a node.
class gwipc_config(Structure):
    pass


class gwipc_node(Structure):
    pass


class gwipc_offer(Structure):
    pass


class gwipc_proxy(Structure):
    pass


class gwipc_finder(Structure):
    pass


class gwipc_writer(Structure):
    pass


ConfigP, NodeP, OfferP = POINTER(gwipc_config), POINTER(gwipc_node), POINTER(gwipc_offer)
ProxyP, FinderP, WriterP = POINTER(gwipc_proxy), POINTER(gwipc_finder), POINTER(gwipc_writer)

# ---- callback types ------------------------------------------------------------

destroy_cb = CFUNCTYPE(None, c_void_p)
peer_cb = CFUNCTYPE(None, c_void_p, NodeP, POINTER(gwipc_peer_info))
peer_gone_cb = CFUNCTYPE(None, c_void_p, NodeP, POINTER(gwipc_peer_info), POINTER(gwipc_error))
authorize_cb = CFUNCTYPE(c_int, c_void_p, POINTER(gwipc_peer_info), POINTER(c_char), c_size_t)
log_cb = CFUNCTYPE(None, c_void_p, c_int, c_char_p)
post_cb = CFUNCTYPE(None, c_void_p)
command_cb = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t, WriterP)
subscribers_cb = CFUNCTYPE(None, c_void_p, OfferP, c_uint16, c_int)
call_cb = CFUNCTYPE(None, c_void_p, OfferP, POINTER(gwipc_call))
update_request_cb = CFUNCTYPE(None, c_void_p, OfferP, c_uint16)
availability_cb = CFUNCTYPE(None, c_void_p, ProxyP, c_int)
suback_cb = CFUNCTYPE(None, c_void_p, ProxyP, c_uint16, c_int)
sample_cb = CFUNCTYPE(None, c_void_p, ProxyP, POINTER(gwipc_sample))
reply_cb = CFUNCTYPE(None, c_void_p, ProxyP, c_uint64, POINTER(gwipc_reply), POINTER(gwipc_error))
find_cb = CFUNCTYPE(None, c_void_p, FinderP, POINTER(gwipc_find_event))


class gwipc_offer_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("events", c_uint16), ("methods", c_uint16),
                ("fields", POINTER(c_uint16)), ("n_fields", c_size_t), ("geometry", gwipc_geometry),
                ("reply_geometry", gwipc_geometry), ("subscriber_slots", c_uint32), ("flags", c_uint32),
                ("on_subscription", subscribers_cb), ("on_call", call_cb), ("on_cancel", call_cb),
                ("on_update_request", update_request_cb), ("userdata", c_void_p), ("destroy", destroy_cb)]


class gwipc_proxy_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("on_availability", availability_cb), ("on_subscription", suback_cb),
                ("call_geometry", gwipc_geometry), ("userdata", c_void_p), ("destroy", destroy_cb)]


def sized(struct_type: type[Structure], **fields: Any) -> Any:
    """A struct with struct_size set (the header's *_INIT macros)."""
    return struct_type(struct_size=ctypes.sizeof(struct_type), **fields)


# ---- the signature table -------------------------------------------------------

_p = POINTER
_svc, _err, _u64p = _p(gwipc_service_id), _p(gwipc_error), _p(c_uint64)

#: name: (restype, argtypes). int-returning functions are checked by _check.
SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "gwipc_version_number": (c_uint, []),
    "gwipc_version": (c_char_p, []),
    "gwipc_strerror": (c_char_p, [c_int]),
    "gwipc_error_name": (c_char_p, [c_int]),
    "gwipc_free": (None, [c_void_p]),
    "gwipc_service_validate": (c_int, [_svc]),
    "gwipc_service_compatible": (c_int, [_svc, _svc]),
    "gwipc_config_new": (c_int, [_p(ConfigP)]),
    "gwipc_config_free": (None, [ConfigP]),
    "gwipc_config_set_name": (c_int, [ConfigP, c_char_p]),
    "gwipc_config_set_socket_mode": (c_int, [ConfigP, c_uint32]),
    "gwipc_config_set_max_packet": (c_int, [ConfigP, c_uint32]),
    "gwipc_config_set_handshake_timeout": (c_int, [ConfigP, c_int64]),
    "gwipc_config_set_reconnect": (c_int, [ConfigP, c_int64, c_int64]),
    "gwipc_config_set_spin": (c_int, [ConfigP, c_int64]),
    "gwipc_config_set_rings": (c_int, [ConfigP, c_uint32]),
    "gwipc_config_set_max_output": (c_int, [ConfigP, c_uint64]),
    "gwipc_config_set_max_peers": (c_int, [ConfigP, c_uint32, c_uint32]),
    "gwipc_config_set_limits": (c_int, [ConfigP, _p(gwipc_limits)]),
    "gwipc_config_add_pool": (c_int, [ConfigP, c_char_p, c_char_p, c_int, gwipc_geometry]),
    "gwipc_config_allow_uid": (c_int, [ConfigP, c_uint32]),
    "gwipc_config_allow_gid": (c_int, [ConfigP, c_uint32]),
    "gwipc_config_require_listener_uid": (c_int, [ConfigP, c_uint32]),
    "gwipc_config_add_rule": (c_int, [ConfigP, _p(gwipc_rule)]),
    "gwipc_config_set_peer_callbacks": (c_int, [ConfigP, peer_cb, peer_gone_cb, c_void_p, destroy_cb]),
    "gwipc_config_set_authorize": (c_int, [ConfigP, authorize_cb, c_void_p, destroy_cb]),
    "gwipc_config_set_log_callback": (c_int, [ConfigP, c_int, log_cb, c_void_p, destroy_cb]),
    "gwipc_config_set_log_fd": (c_int, [ConfigP, c_int, c_int]),
    "gwipc_config_set_status_path": (c_int, [ConfigP, c_char_p, c_uint32]),
    "gwipc_node_listen": (c_int, [c_char_p, ConfigP, _p(NodeP), _err]),
    "gwipc_node_dial": (c_int, [c_char_p, ConfigP, _p(NodeP), _err]),
    "gwipc_node_close": (None, [NodeP]),
    "gwipc_node_shutdown": (c_int, [NodeP, c_int64]),
    "gwipc_node_fd": (c_int, [NodeP]),
    "gwipc_node_dispatch": (c_int, [NodeP, c_int64]),
    "gwipc_node_wait": (c_int, [NodeP, c_int64]),
    "gwipc_node_post": (c_int, [NodeP, post_cb, c_void_p, destroy_cb]),
    "gwipc_node_run": (c_int, [NodeP]),
    "gwipc_node_run_thread": (c_int, [NodeP]),
    "gwipc_node_stop": (c_int, [NodeP]),
    "gwipc_node_status_json": (c_int, [NodeP, _p(c_void_p), _p(c_size_t)]),
    "gwipc_node_set_peer_userdata": (c_int, [NodeP, c_uint64, c_void_p]),
    "gwipc_node_get_peer_userdata": (c_int, [NodeP, c_uint64, _p(c_void_p)]),
    "gwipc_writer_write": (c_int, [WriterP, c_void_p, c_size_t]),
    "gwipc_node_handle_command": (c_int, [NodeP, c_char_p, command_cb, c_void_p, destroy_cb]),
    "gwipc_node_offer": (c_int, [NodeP, _svc, _p(gwipc_offer_params), _p(OfferP), _err]),
    "gwipc_offer_close": (None, [OfferP]),
    "gwipc_offer_publish": (c_int, [OfferP, c_uint16, c_void_p, c_size_t, c_int64]),
    "gwipc_offer_loan": (c_int, [OfferP, c_uint16, c_int64, _p(gwipc_loan)]),
    "gwipc_loan_publish": (c_int, [_p(gwipc_loan), c_size_t]),
    "gwipc_loan_discard": (c_int, [_p(gwipc_loan)]),
    "gwipc_call_reply": (c_int, [_p(gwipc_call), c_void_p, c_size_t]),
    "gwipc_call_fail": (c_int, [_p(gwipc_call), c_int32, c_void_p, c_size_t]),
    "gwipc_call_is_cancelled": (c_int, [_p(gwipc_call)]),
    "gwipc_node_require": (c_int, [NodeP, _svc, _p(gwipc_proxy_params), _p(ProxyP), _err]),
    "gwipc_proxy_close": (None, [ProxyP]),
    "gwipc_proxy_is_available": (c_int, [ProxyP]),
    "gwipc_proxy_subscribe": (c_int, [ProxyP, c_uint16, c_int, sample_cb, c_void_p, destroy_cb]),
    "gwipc_proxy_unsubscribe": (c_int, [ProxyP, c_uint16]),
    "gwipc_proxy_subscription_state": (c_int, [ProxyP, c_uint16, _p(c_int)]),
    "gwipc_proxy_request_update": (c_int, [ProxyP, c_uint16]),
    "gwipc_sample_keep": (c_int, [_p(gwipc_sample), _p(gwipc_sample)]),
    "gwipc_sample_release": (None, [_p(gwipc_sample)]),
    "gwipc_proxy_call": (c_int, [ProxyP, c_uint16, c_void_p, c_size_t, c_int64, _p(gwipc_reply), _err]),
    "gwipc_proxy_call_async": (c_int, [ProxyP, c_uint16, c_void_p, c_size_t, c_int64, reply_cb, c_void_p,
                                       destroy_cb, _u64p]),
    "gwipc_proxy_send": (c_int, [ProxyP, c_uint16, c_void_p, c_size_t]),
    "gwipc_proxy_cancel": (c_int, [ProxyP, c_uint64]),
    "gwipc_reply_keep": (c_int, [_p(gwipc_reply), _p(gwipc_reply)]),
    "gwipc_reply_release": (None, [_p(gwipc_reply)]),
    "gwipc_node_find": (c_int, [NodeP, c_char_p, c_uint16, c_uint16, c_char_p, find_cb, c_void_p, destroy_cb,
                                _p(FinderP)]),
    "gwipc_finder_close": (None, [FinderP]),
    "gwipc_sipc_query": (c_int, [c_char_p, c_void_p, c_size_t, c_int64, _p(c_void_p), _p(c_size_t), _err]),
}

_FORK_HINT = ("this process was forked from one that had loaded libgwipc; a forked child cannot use it "
              "(use the 'spawn' or 'forkserver' start method, or exec)")


def _check(result: int, func: Any, args: tuple[Any, ...], _error: Any = _errors.error,
           _struct: type = gwipc_error) -> int:
    """The errcheck of every int-returning function (helpers bound as
    defaults, so it works during interpreter shutdown)."""
    if result >= 0:
        return result
    for a in args:
        if isinstance(a, _struct) and a.code == result:
            raise _error(result, a.message.decode("utf-8", "replace"), app_code=a.app_code, status=a.status,
                         sys_errno=a.sys_errno)
    raise _error(result, _FORK_HINT if result == -7 else "")


def raise_for(err: gwipc_error, data: bytes = b"") -> _errors.GwipcError:
    """The exception for a filled gwipc_error (as a completion receives it)."""
    return _errors.error(err.code, err.message.decode("utf-8", "replace"), app_code=err.app_code,
                         status=err.status, sys_errno=err.sys_errno, data=data)


# ---- loading -------------------------------------------------------------------

_load_lock = threading.Lock()
_cdll: ctypes.CDLL | None = None
_loaded_path: str | None = None


def _candidates() -> list[tuple[str, bool]]:
    """(path, must_exist) in the documented order."""
    out: list[tuple[str, bool]] = []
    env = os.environ.get("GWIPC_LIBRARY")
    if env:
        out.append((env, True))
    try:
        bundled = resources.files(__package__) / "_native" / SONAME
        out.append((str(bundled), True))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - not a regular package
        pass
    # Running from the tree: bindings/python/gwipc/_lib.py -> <repo>/build/.
    out.append((str(Path(__file__).resolve().parents[3] / "build" / SONAME), True))
    out.append((SONAME, False))
    found = ctypes.util.find_library("gwipc")
    if found:
        out.append((found, False))
    return out


def _open(path: str) -> ctypes.CDLL:
    # CDLL, not PyDLL: the GIL is released around every call.
    cdll = ctypes.CDLL(path, use_errno=True)
    version = cdll.gwipc_version_number
    version.restype, version.argtypes = c_uint, []
    number = version()
    major, minor = number // 10000, number // 100 % 100
    if major != BINDING_MAJOR or minor < BINDING_MINOR:
        raise OSError(f"library version {major}.{minor} does not provide API {BINDING_MAJOR}.{BINDING_MINOR}")
    for name, (restype, argtypes) in SIGNATURES.items():
        fn = getattr(cdll, name)
        fn.restype, fn.argtypes = restype, argtypes
        if restype is c_int:
            fn.errcheck = _check
    return cdll


def _real(path: str, cdll: ctypes.CDLL) -> str:
    """The file the dynamic linker really loaded (for SONAME loads too)."""
    addr = ctypes.cast(cdll.gwipc_version_number, c_void_p).value
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            parts = line.split(None, 5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if addr is not None and lo <= addr < hi and len(parts) == 6:
                return parts[5].strip()
    return os.path.realpath(path)


def load(path: str | None = None) -> str:
    """Loads libgwipc once and returns the path of the file loaded.

    Without ``path`` the candidates are tried in order: ``$GWIPC_LIBRARY``,
    the copy bundled in the package (``gwipc/_native/libgwipc.so.1``), the
    project's ``build/`` when running from the tree, the SONAME, then
    ``ctypes.util.find_library("gwipc")``. Once loaded, asking for another
    file raises (two copies would be two Go runtimes in one process).
    Raises :class:`gwipc.LibraryNotFoundError` listing every path tried.
    """
    global _cdll, _loaded_path
    with _load_lock:
        if _cdll is not None:
            if path is not None and os.path.realpath(path) != _loaded_path:
                raise _errors.GwipcError(f"libgwipc is already loaded from {_loaded_path}; cannot load {path} too")
            return _loaded_path or ""
        tried: list[tuple[str, str]] = []
        for cand, must_exist in ([(path, True)] if path is not None else _candidates()):
            if must_exist and not os.path.isfile(cand):
                tried.append((cand, "no such file"))
                continue
            try:
                cdll = _open(cand)
            except (OSError, AttributeError) as exc:
                tried.append((cand, str(exc)))
                continue
            _cdll, _loaded_path = cdll, _real(cand, cdll)
            return _loaded_path
        lines = "\n".join(f"  {p}: {why}" for p, why in tried)
        raise _errors.LibraryNotFoundError(f"cannot load {SONAME}; tried:\n{lines}", tried)


forked = False


def _mark_forked() -> None:
    global forked
    forked = _cdll is not None


# In a child forked after the load every call fails at once (the C guard
# does the same for the library's functions), before any lock is taken.
os.register_at_fork(after_in_child=_mark_forked)


def guard() -> None:
    """Raises ForkedError in a child forked after the library was loaded."""
    if forked:
        raise _errors.error(-7, _FORK_HINT)


def lib() -> Any:
    """The loaded library (loading it on first use)."""
    if _cdll is None:
        load()
    return _cdll


def loaded() -> bool:
    return _cdll is not None


# ---- callbacks -----------------------------------------------------------------


#: key -> the Python handler of a registration. Weak: the handler is owned
#: by the gwipc object it belongs to (a node, offer, proxy ...). A handler
#: has one method per slot it serves (the names given to _trampoline
#: below), _cb_fail(exc) and _cb_destroyed(); all private (``_cb_*``), so no public method
#: of a gwipc object is a trampoline slot a caller could call by mistake.
registry: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
_keys = itertools.count(1)


def register(handler: Any) -> int:
    """A new userdata key for handler."""
    key = next(_keys)
    registry[key] = handler
    return key


def _invoke(key: int | None, slot: str, default: Any, *args: Any) -> Any:
    handler = registry.get(key or 0)
    if handler is None or sys.is_finalizing():
        return default
    try:
        return getattr(handler, slot)(*args)
    except BaseException as exc:  # noqa: BLE001 - re-raised from dispatch()
        handler._cb_fail(exc)
        return default


def _trampoline(ctype: Any, slot: str, default: Any = None) -> Any:
    def tramp(key: int | None, *args: Any) -> Any:
        return _invoke(key, slot, default, *args)
    tramp.__name__ = f"_{slot}_trampoline"
    return ctype(tramp)


@destroy_cb
def on_destroy(key: int | None) -> None:
    handler = registry.pop(key or 0, None)
    if handler is None or sys.is_finalizing():
        return
    try:
        handler._cb_destroyed()  # may run user code (a PendingCall's done callbacks)
    except BaseException as exc:  # noqa: BLE001 - an exception must not escape into C
        handler._cb_fail(exc)


# Refusing is the safe answer when an authorizer or a command handler raises.
on_peer_connected = _trampoline(peer_cb, "_cb_peer_connected")
on_peer_disconnected = _trampoline(peer_gone_cb, "_cb_peer_disconnected")
on_authorize = _trampoline(authorize_cb, "_cb_authorize", 1)
on_log = _trampoline(log_cb, "_cb_log")
on_post = _trampoline(post_cb, "_cb_posted")
on_command = _trampoline(command_cb, "_cb_command", 1)
on_subscribers = _trampoline(subscribers_cb, "_cb_subscribers")
on_call = _trampoline(call_cb, "_cb_call")
on_cancel = _trampoline(call_cb, "_cb_cancel")
on_update_request = _trampoline(update_request_cb, "_cb_update_request")
on_availability = _trampoline(availability_cb, "_cb_availability")
on_suback = _trampoline(suback_cb, "_cb_suback")
on_sample = _trampoline(sample_cb, "_cb_sample")
on_reply = _trampoline(reply_cb, "_cb_reply")
on_find = _trampoline(find_cb, "_cb_find")


def buffer_arg(data: Any) -> tuple[Any, int, Any]:
    """(pointer, length, keep-alive) for a payload: bytes without a copy,
    writable buffers in place, other read-only buffers copied once."""
    if isinstance(data, bytes):
        return (ctypes.cast(c_char_p(data), c_void_p) if data else None), len(data), data
    view = memoryview(data).cast("B")
    n = view.nbytes
    if n == 0:
        return None, 0, None
    if view.readonly:
        copy = bytes(view)
        return ctypes.cast(c_char_p(copy), c_void_p), n, copy
    arr = (c_char * n).from_buffer(view)
    return ctypes.addressof(arr), n, arr


# ---- argument checks -------------------------------------------------------------
#
# ctypes converts a Python int to a C integer by masking it (70000 becomes
# event 4464, -1 a size of 2**64-1, a huge timeout any value at all), raises
# ctypes.ArgumentError for other types, and passes a str with a NUL cut
# short. Every value from the caller goes through one of these first, so a
# wrong one raises TypeError, or a ValueError that is also a GwipcError
# (InvalidArgumentError, or the error the library gives for that kind of
# value), never reaches C as something else.

U16, U32, I32, U64 = (0, 0xFFFF), (0, 0xFFFFFFFF), (-(1 << 31), (1 << 31) - 1), (0, (1 << 64) - 1)
_MAX_USEC = (1 << 63) - 1


def integer(value: Any, what: str, bounds: tuple[int, int], code: int = -1) -> int:
    """value as an int within bounds: TypeError for a non-integer (a float,
    a str, None), else the error for ``code`` (InvalidArgumentError by
    default; UnknownEventError, UnknownMethodError ...) when out of range."""
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an int, not {type(value).__name__}") from None
    lo, hi = bounds
    if not lo <= v <= hi:
        raise _errors.error(code, f"{what} {v} is out of range [{lo}, {hi}]")
    return v


def event_id(value: Any) -> int:
    """An event id (uint16_t): UnknownEventError out of range."""
    return integer(value, "event id", U16, -10)


def method_id(value: Any) -> int:
    """A method id (uint16_t): UnknownMethodError out of range."""
    return integer(value, "method id", U16, -11)


def cstr(value: Any, what: str) -> bytes:
    """A str as the NUL-terminated UTF-8 the library copies: TypeError for
    anything else, InvalidArgumentError for an embedded NUL (C would see
    it cut short), UnicodeEncodeError (a ValueError) for lone surrogates."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    b = value.encode()
    if b"\0" in b:
        raise _errors.error(-1, f"{what} contains a NUL character")
    return b


def cpath(value: Any, what: str = "path") -> bytes:
    """A filesystem path (str, bytes or os.PathLike) for C."""
    try:
        b = os.fsencode(value)
    except TypeError:
        raise TypeError(f"{what} must be a str, bytes or os.PathLike, not {type(value).__name__}") from None
    if not b or b"\0" in b:
        raise _errors.error(-1, f"{what} {value!r} is empty or contains a NUL character")
    return b


def callback(value: Any, what: str) -> Any:
    """value, if callable (TypeError otherwise, at registration rather than
    at the first call)."""
    if not callable(value):
        raise TypeError(f"{what} must be callable, not {type(value).__name__}")
    return value


def seconds(value: Any, what: str = "timeout") -> float | None:
    """A duration in seconds (None or infinity: no limit). TypeError for a
    non-number, ValueError for a negative one or NaN."""
    if value is None:
        return None
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number of seconds or None, not {type(value).__name__}")
    try:
        v = float(value)
    except OverflowError:  # an int too large for a float: longer than any limit
        v = math.inf
    if v != v:
        raise ValueError(f"{what} cannot be NaN")
    if v < 0:
        raise ValueError(f"a {what} cannot be negative (use None for no limit)")
    return None if v == math.inf else v


def usec(value: float | None, what: str = "timeout") -> int:
    """Seconds (None or infinity: forever) as the library's microseconds;
    a duration too long for int64_t microseconds is forever too."""
    s = seconds(value, what)
    if s is None:
        return FOREVER
    if s == 0:
        return 0
    us = s * 1e6
    return FOREVER if us >= _MAX_USEC else max(1, round(us))


def text(b: bytes | None) -> str:
    return b.decode("utf-8", "replace") if b else ""

