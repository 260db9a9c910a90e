"""Received samples, and zero-copy views that cannot outlive their memory.

Every memoryview gwipc hands out is made over a ctypes array whose
attribute holds a *hold*: the Python object that keeps the memory valid (a
kept sample's C reference, or an open loan). Views and slices keep the
array, so the hold, alive; the C release runs from the hold's finalizer,
only once no view remains. So a view kept past ``release()`` or past the
node's ``close()`` stays valid (the library keeps a kept sample's mapping
until it is released); it never reads unmapped memory.

On Python 3.12+ a read-only view is exported through ``__buffer__`` (PEP
688), so ``view.obj`` is an opaque wrapper; before 3.12 it is the ctypes
array, whose own buffer is writable: writing through ``memoryview(view.obj)``
would fault on the read-only mapping (see docs/PYTHON.md).
"""

from __future__ import annotations

import ctypes
import inspect
import sys
import threading
import weakref
from typing import Any

from . import _errors, _lib
from ._made import Made

_PEP688 = sys.version_info >= (3, 12)


class _ReadOnly:
    """A read-only exporter of a ctypes array (Python 3.12+)."""

    __slots__ = ("_arr",)

    def __init__(self, arr: Any) -> None:
        self._arr = arr

    def __buffer__(self, flags: int) -> memoryview:
        if flags & inspect.BufferFlags.WRITABLE:
            raise BufferError("gwipc sample data is read-only shared memory")
        return memoryview(self._arr).cast("B").toreadonly()


def view(addr: int | None, n: int, hold: object, *, writable: bool) -> memoryview:
    """A memoryview of n bytes at addr that keeps hold alive."""
    if not n or not addr:
        return memoryview(bytearray()) if writable else memoryview(b"")
    arr = (ctypes.c_char * n).from_address(addr)
    arr._gwipc_hold = hold  # type: ignore[attr-defined]
    if writable:
        return memoryview(arr).cast("B")
    if _PEP688:
        return memoryview(_ReadOnly(arr))  # type: ignore[arg-type]
    return memoryview(arr).cast("B").toreadonly()


def _released(what: str) -> _errors.GwipcError:
    return _errors.error(-2, f"the {what} was released (keep() it inside the callback to use it later)")


class _SampleHold:
    """Keeps the memory of a sample's views valid: it keeps the C sample
    when made (inside the handler) and its finalizer releases it when the
    last reference (the Sample's, or a view's) goes."""

    __slots__ = ("__weakref__", "_finalizer")

    def keep(self, borrowed: Any) -> None:
        lib = _lib.lib()
        kept = _lib.gwipc_sample()
        lib.gwipc_sample_keep(borrowed, kept)
        self._finalizer = weakref.finalize(self, lib.gwipc_sample_release, kept)
        # Not at interpreter exit: a view may still be read after that (by an
        # atexit handler registered earlier, a daemon thread, a callback run
        # by a node's close at exit), and the process frees the slot anyway.
        self._finalizer.atexit = False


# Orders a view made on another thread against the end of the delivery
# (Sample._delivered), so the borrowed memory is never read after it.
_state = threading.RLock()


class Sample(Made):
    """One received event update.

    ``event``, ``seq`` (the provider's sequence number for the event: a
    jump means missed updates) and ``requested`` (it answers a request for
    a field's current value). :attr:`data` is a read-only zero-copy view
    of the provider's shared memory, valid inside the handler; call
    :meth:`keep` there to use the sample later, and :meth:`release` it
    when done (or use it as a context manager). A view that outlives that
    stays valid (the slot is held until the view goes), but a held slot
    counts against the subscriber's share of the provider's pool: copy
    (:meth:`tobytes`) what you keep for long.
    """

    __slots__ = ("event", "seq", "requested", "_addr", "_len", "_borrowed", "_hold", "_live", "_weak",
                 "_released", "__weakref__")

    @classmethod
    def _make(cls, borrowed: Any) -> "Sample":
        self = object.__new__(cls)
        self._init(borrowed)
        return self

    def _init(self, borrowed: Any) -> None:
        s = borrowed.contents
        self.event: int = s.event
        self.seq: int = s.seq
        self.requested: bool = bool(s.requested)
        self._addr: int | None = s.data
        self._len: int = s.len
        self._borrowed = borrowed  # valid while the callback runs
        self._hold: _SampleHold | None = None  # once kept
        self._live: _SampleHold | None = None  # the hold made during the delivery, until it ends
        self._weak: Any = None  # the hold of the views made so far
        self._released = False

    def __len__(self) -> int:
        return self._len

    @property
    def data(self) -> memoryview:
        """The payload: a read-only memoryview of shared memory (a copy,
        when the sample can no longer be kept: its node closed inside the
        handler, or it is read on another thread while the handler runs)."""
        with _state:
            try:
                hold = self._current_hold()
            except _errors.GwipcError:
                if self._released or self._borrowed is None:
                    raise
                return memoryview(ctypes.string_at(self._addr, self._len))
            return view(self._addr, self._len, hold, writable=False)

    def tobytes(self) -> bytes:
        """A copy of the payload."""
        with _state:
            if self._released or (self._hold is None and self._borrowed is None):
                raise _released("sample")
            return ctypes.string_at(self._addr, self._len) if self._len else b""

    def keep(self) -> "Sample":
        """Keeps the sample past its handler (only inside it); returns self."""
        with _state:
            if self._hold is None:
                if self._released or self._borrowed is None:
                    raise _released("sample")
                self._hold = self._current_hold()
        return self

    def release(self) -> None:
        """Gives the slot back once no view of it remains. Idempotent."""
        self._released = True
        self._hold = None

    @property
    def kept(self) -> bool:
        """True between keep() and release()."""
        return self._hold is not None

    def _current_hold(self) -> _SampleHold:
        """The hold of the views (with _state held). Made, and the C sample
        kept at once, for the first view inside the handler: a view that
        escapes the handler must not depend on keeping it afterwards, when
        the node may be closed (a close from the handler itself). The
        delivery holds it to its end, so the C sample is kept once and
        released at most once: a release inside the handler would give the
        slot back while it is delivered, and a second keep of the same
        delivery names the released handle."""
        if self._released:
            raise _released("sample")
        hold = self._hold or (self._weak() if self._weak is not None else None)
        if hold is None:
            if self._borrowed is None:
                raise _released("sample")
            hold = _SampleHold()
            hold.keep(self._borrowed)
            self._weak = weakref.ref(hold)
            self._live = hold
        return hold

    def _delivered(self) -> None:
        """The handler returned: a sample not kept is released (views made
        in the handler keep their own hold)."""
        with _state:
            if self._hold is None:
                self._released = True
            self._borrowed = None
            live, self._live = self._live, None
        del live  # outside the lock: the last reference runs the C release

    def __enter__(self) -> "Sample":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "kept" if self._hold else "released" if self._released else "borrowed"
        return f"<gwipc.Sample event={self.event} seq={self.seq} len={self._len} {state}>"
