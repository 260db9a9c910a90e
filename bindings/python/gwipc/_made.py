"""The base of the objects only gwipc makes."""

from __future__ import annotations

from typing import Any


class Made:
    """An object gwipc makes and the application only uses: calling the
    class raises TypeError, and so do copy and pickle. A copy would
    duplicate the state that says which memory is still valid (a copy made
    in a handler read the slot after it), and pickle cannot carry it to
    another process."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"gwipc.{type(self).__name__} objects are made by gwipc, not by calling the class")

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(f"gwipc.{type(self).__name__} objects cannot be copied or pickled")
