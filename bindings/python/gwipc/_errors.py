"""Exceptions, one class per code of the C error list (``GWIPC_ERRORS``).

:data:`CODES` is ``GWIPC_ERRORS`` of ``include/gwipc.h`` transcribed (a
test compares the two, and with the library's own tables). The classes
are generated from it: every code gets a subclass of :class:`GwipcError`,
named after the code (``GWIPC_E_NOSLOT`` -> ``NoSlotError``), with a
builtin base where a Python programmer would reach for one
(``TooLargeError`` is a ``ValueError``, ``TimeoutError`` the builtin
``TimeoutError``, ``PermissionDeniedError`` a ``PermissionError`` ...).
"""

from __future__ import annotations

import builtins
from typing import Any

#: (name, value, text) for every code, as in include/gwipc.h.
CODES: tuple[tuple[str, int, str], ...] = (
    ("GWIPC_OK", 0, "success"),
    ("GWIPC_E_INVAL", -1, "invalid argument"),
    ("GWIPC_E_BADHANDLE", -2, "stale, closed or wrong kind of handle"),
    ("GWIPC_E_NOMEM", -3, "out of memory"),
    ("GWIPC_E_CLOSED", -4, "object closed"),
    ("GWIPC_E_BUSY", -5, "the node is dispatched by another loop"),
    ("GWIPC_E_DEADLOCK", -6, "blocking call from a callback of the same node"),
    ("GWIPC_E_FORKED", -7, "called in a forked child"),
    ("GWIPC_E_INVALID_SERVICE", -8, "invalid service or instance id"),
    ("GWIPC_E_DUPLICATE", -9, "already offered, required or registered"),
    ("GWIPC_E_UNKNOWN_EVENT", -10, "unknown event id"),
    ("GWIPC_E_UNKNOWN_METHOD", -11, "unknown method id"),
    ("GWIPC_E_NOSLOT", -12, "no free slot in the pool"),
    ("GWIPC_E_TOO_LARGE", -13, "payload larger than a slot"),
    ("GWIPC_E_LOAN_DONE", -14, "loan already published or discarded"),
    ("GWIPC_E_NOT_AVAILABLE", -15, "service not available"),
    ("GWIPC_E_INVALID_CONFIG", -16, "invalid configuration"),
    ("GWIPC_E_UNSUPPORTED", -17, "not supported by the peer"),
    ("GWIPC_E_TIMEOUT", -18, "timed out"),
    ("GWIPC_E_CANCELLED", -19, "call cancelled"),
    ("GWIPC_E_CALL_DONE", -20, "call already answered"),
    ("GWIPC_E_PERMISSION", -21, "permission denied"),
    ("GWIPC_E_QUOTA", -22, "quota exceeded"),
    ("GWIPC_E_APP", -23, "the provider returned an application error"),
    ("GWIPC_E_REFUSED", -24, "refused by the peer"),
    ("GWIPC_E_NOSPACE", -25, "buffer too small"),
    ("GWIPC_E_NOTFOUND", -26, "no such subscription, call or peer"),
    ("GWIPC_E_OS", -27, "system call failed"),
    ("GWIPC_E_INTERNAL", -28, "internal error"),
    ("GWIPC_E_PEER_LOST", -29, "peer lost"),
    ("GWIPC_E_SIPC_PROTOCOL", -40, "Simple-IPC protocol error"),
    ("GWIPC_E_SIPC_TRUNCATED", -41, "Simple-IPC response truncated"),
    ("GWIPC_E_SIPC_CONNECT", -42, "no Simple-IPC server answers at the path"),
)

# Class names that the default (CamelCase of the code + "Error") gets wrong.
_NAMES = {
    "INVAL": "InvalidArgumentError",
    "BADHANDLE": "BadHandleError",
    "NOMEM": "OutOfMemoryError",
    "NOSLOT": "NoSlotError",
    "NOSPACE": "NoSpaceError",
    "NOTFOUND": "NotFoundError",
    "OS": "SystemCallError",
    "PERMISSION": "PermissionDeniedError",
}

# Builtin bases, so `except ValueError` and friends catch what they should.
_BASES: dict[str, type[BaseException]] = {
    "INVAL": ValueError,
    "INVALID_SERVICE": ValueError,
    "INVALID_CONFIG": ValueError,
    "TOO_LARGE": ValueError,
    "NOMEM": MemoryError,
    "UNKNOWN_EVENT": LookupError,
    "UNKNOWN_METHOD": LookupError,
    "NOTFOUND": LookupError,
    "PERMISSION": PermissionError,
    "TIMEOUT": builtins.TimeoutError,
    "OS": OSError,
    "PEER_LOST": ConnectionError,
    "SIPC_CONNECT": ConnectionError,
}


class GwipcError(Exception):
    """Base of every gwipc error.

    Attributes: ``code`` (the negative ``GWIPC_E_*`` value), ``name``
    (``"GWIPC_E_NOSLOT"``), ``message`` (the library's explanation, or the
    code's text), and from the C ``gwipc_error``: ``app_code`` (for
    :class:`AppError`), ``status`` (the peer's wire status for refusals)
    and ``sys_errno`` (for :class:`SystemCallError`).
    """

    code: int = 0
    name: str = "GWIPC_E_UNKNOWN"
    text: str = "unknown error"

    __module__ = "gwipc"

    def __init__(self, message: str = "", *, app_code: int = 0, status: int = 0, sys_errno: int = 0) -> None:
        self.message = message or self.text
        super().__init__(self.message)
        self.app_code = app_code
        self.status = status
        self.sys_errno = sys_errno
        if isinstance(self, OSError):
            self.errno = sys_errno or None
            self.strerror = self.message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Any:  # picklable across multiprocessing
        return (_rebuild, (self.code, self.message, self.app_code, self.status, self.sys_errno,
                           getattr(self, "data", b"")))


def _rebuild(code: int, message: str, app_code: int, status: int, sys_errno: int, data: bytes) -> GwipcError:
    return error(code, message, app_code=app_code, status=status, sys_errno=sys_errno, data=data)


class UnknownCodeError(GwipcError):
    """A code this binding does not know (a newer library)."""


_BY_CODE: dict[int, type[GwipcError]] = {}


def _camel(suffix: str) -> str:
    return "".join(part.capitalize() for part in suffix.split("_")) + "Error"


def _generate() -> dict[str, type[GwipcError]]:
    made: dict[str, type[GwipcError]] = {}
    for name, value, text in CODES[1:]:
        suffix = name.removeprefix("GWIPC_E_")
        cls_name = _NAMES.get(suffix) or _camel(suffix)
        bases: tuple[type, ...] = (GwipcError,)
        if suffix in _BASES:
            bases += (_BASES[suffix],)
        doc = f"{name} ({value}): {text}."
        cls = type(cls_name, bases, {"code": value, "name": name, "text": text, "__doc__": doc,
                                     "__module__": "gwipc"})
        _BY_CODE[value] = cls
        made[cls_name] = cls
    return made


globals().update(_generate())


# AppError carries the failed reply's payload too.
_BY_CODE[-23].data = b""  # type: ignore[attr-defined]


def error(code: int, message: str = "", *, app_code: int = 0, status: int = 0, sys_errno: int = 0,
          data: bytes = b"") -> GwipcError:
    """The exception for a negative code (an instance, not raised)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        exc: GwipcError = UnknownCodeError(message or f"unknown gwipc error code {code}")
        exc.code = code
        return exc
    exc = cls(message, app_code=app_code, status=status, sys_errno=sys_errno)
    if data:
        exc.data = data  # type: ignore[attr-defined]
    return exc


def exception_class(code: int) -> type[GwipcError]:
    """The class raised for ``code``."""
    return _BY_CODE.get(code, UnknownCodeError)


class LibraryNotFoundError(ImportError):
    """libgwipc.so.1 could not be loaded; ``tried`` lists (path, reason)."""

    def __init__(self, message: str, tried: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.tried = tried


__all__ = ["CODES", "GwipcError", "LibraryNotFoundError", "UnknownCodeError", "error", "exception_class"] + [
    cls.__name__ for cls in _BY_CODE.values()]
