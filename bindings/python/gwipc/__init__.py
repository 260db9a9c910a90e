"""gwipc: local IPC for Linux - service discovery, events, fields and
method calls between processes, payloads in shared memory.

A Python binding of libgwipc.so.1 (include/gwipc.h). Importing it does not
load the library: that happens on first use (or :func:`load_library`), so
a process that imports gwipc and creates no node can still fork. See
docs/PYTHON.md for the object model, threads, asyncio, zero-copy views and
fork rules.

Quick start (two processes)::

    import gwipc
    svc = gwipc.ServiceID("example.sensor", 1, 0, "kitchen")

    # provider
    with gwipc.Node.listen("/tmp/sensor.sock") as node:
        offer = node.offer(svc, events=1)
        offer.publish(0, b"21.5")
        node.run(timeout=5)

    # consumer
    with gwipc.Node.dial("/tmp/sensor.sock") as node:
        proxy = node.require(svc)
        proxy.subscribe(0, lambda s: print(s.seq, bytes(s.data)))
        node.run(timeout=5)
"""

from __future__ import annotations

from . import _errors, _lib
from ._errors import *  # noqa: F401,F403 - GwipcError and one class per code
from ._types import (Action, FindEvent, Geometry, Limits, LogLevel, PeerInfo, Pool, PoolKind, Rule, ServiceID,
                     SubscriptionState, Update)
from .node import Finder, Node
from .offer import HANDLER_FAILED, Call, Loan, Offer
from .proxy import PendingCall, Proxy
from .sample import Sample
from .sipc import query

#: The binding's version (the C header's GWIPC_VERSION_STRING it was written for).
__version__ = "0.2.0"

def load_library(path: str | None = None) -> str:
    """Loads libgwipc.so.1 now (from ``path``, or the documented search
    order) and returns the path of the file loaded."""
    return _lib.load(path)


def library_version() -> str:
    """The loaded library's version, "MAJOR.MINOR.PATCH" (loads it)."""
    return _lib.text(_lib.lib().gwipc_version())


__all__ = [
    "Action", "Call", "Finder", "FindEvent", "Geometry", "HANDLER_FAILED", "Limits", "Loan", "LogLevel", "Node",
    "Offer", "PeerInfo", "PendingCall", "Pool", "PoolKind", "Proxy", "Rule", "Sample", "ServiceID",
    "SubscriptionState", "Update", "library_version", "load_library", "query", "__version__",
] + _errors.__all__
