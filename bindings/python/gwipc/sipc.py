"""Simple-IPC (Git's pkt-line protocol): one-shot requests to a status
endpoint (a node's, see ``status_path``) or to any Simple-IPC server."""

from __future__ import annotations

import ctypes
import os

from . import _lib


def query(path: str | bytes | os.PathLike[str], request: bytes | str = b"status", *,
          timeout: float | None = 10.0) -> bytes:
    """Sends ``request`` to the Simple-IPC server at ``path`` and returns
    the whole response, waiting up to ``timeout`` seconds (the GIL is
    released meanwhile). A node's endpoint answers ``ping``, ``version``,
    ``status`` (its JSON), ``help`` and the node's own commands. Raises
    :class:`gwipc.SipcConnectError` when nothing answers,
    SipcTruncatedError, SipcProtocolError, TimeoutError."""
    c_path = _lib.cpath(path)
    wait = _lib.usec(timeout)
    if isinstance(request, str):
        req = request.encode()
    elif isinstance(request, int):  # bytes(5) would be five NULs
        raise TypeError("request must be bytes, a buffer or a str, not int")
    else:
        req = bytes(memoryview(request))
    lib = _lib.lib()
    _lib.guard()
    resp, n, err = ctypes.c_void_p(), ctypes.c_size_t(), _lib.gwipc_error()
    lib.gwipc_sipc_query(c_path, req, len(req), wait, ctypes.byref(resp), ctypes.byref(n), err)
    try:
        return ctypes.string_at(resp, n.value)
    finally:
        lib.gwipc_free(resp)
