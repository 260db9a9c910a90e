"""Value types: service ids, geometries, access rules, limits, peers."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from . import _errors, _lib


@dataclass(frozen=True)
class ServiceID:
    """A service instance: interface ``id``, version ``major.minor`` and
    ``instance``. Ids are 1 to 64 bytes of printable UTF-8 without spaces;
    the instance ``"*"`` means any instance (to find only)."""

    id: str
    major: int = 1
    minor: int = 0
    instance: str = "default"

    def __str__(self) -> str:
        return f"{self.id}/{self.instance}@{self.major}.{self.minor}"

    def _c(self) -> Any:
        """The C struct (TypeError for parts of the wrong type,
        InvalidServiceError for a NUL in an id or a version beyond 16 bits)."""
        def part(value: Any, what: str) -> bytes:
            try:
                return _lib.cstr(value, what)
            except _errors.GwipcError as exc:
                raise _errors.error(-8, f"{self}: {exc}") from None
        return _lib.gwipc_service_id(part(self.id, "service id"),
                                     _lib.integer(self.major, "major version", _lib.U16, -8),
                                     _lib.integer(self.minor, "minor version", _lib.U16, -8),
                                     part(self.instance, "instance id"))

    @classmethod
    def _check(cls, value: Any) -> "ServiceID":
        if not isinstance(value, ServiceID):
            raise TypeError(f"expected a gwipc.ServiceID, not {type(value).__name__}")
        return value

    @classmethod
    def _from_c(cls, s: Any) -> "ServiceID":
        return cls(_lib.text(s.id), s.major, s.minor, _lib.text(s.instance))


@dataclass(frozen=True)
class Geometry:
    """A pool layout: ``slot_count`` slots of ``slot_size`` bytes."""

    slot_size: int
    slot_count: int

    def _c(self) -> Any:
        return _lib.gwipc_geometry(_lib.integer(self.slot_size, "slot_size", _lib.U32),
                                   _lib.integer(self.slot_count, "slot_count", _lib.U32))


def c_geometry(g: Geometry | None) -> Any:
    """The C geometry of g ({0, 0}, the default, for None)."""
    if g is None:
        return _lib.gwipc_geometry(0, 0)
    if not isinstance(g, Geometry):
        raise TypeError(f"expected a gwipc.Geometry or None, not {type(g).__name__}")
    return g._c()


class Action(enum.IntFlag):
    """What an access rule covers (combinable)."""

    OFFER = 1  #: offer the service to this node (checked by a consumer)
    REQUIRE = 2  #: bind to this node's offer
    SUBSCRIBE = 4  #: subscribe to this node's events
    CALL = 8  #: call this node's methods
    ALL = 15


@dataclass(frozen=True)
class Rule:
    """An access rule. Rules are checked in order; the first that matches
    decides; when none matches the action is allowed. ``uids``/``gids``
    both empty: every peer."""

    service: str = "*"
    instance: str = "*"
    actions: Action = Action.ALL
    uids: tuple[int, ...] = ()
    gids: tuple[int, ...] = ()
    deny: bool = False


@dataclass(frozen=True)
class Limits:
    """Per-peer limits (0: the library's default)."""

    services: int = 0
    subscriptions: int = 0
    pending_calls: int = 0
    find_elements: int = 0
    pool_slots: int = 0
    pool_bytes: int = 0
    mapped_bytes: int = 0


class PoolKind(enum.IntEnum):
    """Pools a dialler may size for itself (:class:`Pool`)."""

    REPLY = 0  #: the listener's pool for method replies to this dialler
    CALL = 1  #: the listener's pool for calls to this dialler's offers


@dataclass(frozen=True)
class Pool:
    """A dialler's request to size a pool the listener creates for it."""

    service: str
    kind: PoolKind
    geometry: Geometry
    instance: str = ""


class LogLevel(enum.IntEnum):
    """Log levels (Go's log/slog)."""

    DEBUG = -4
    INFO = 0
    WARN = 4
    ERROR = 8


class SubscriptionState(enum.IntEnum):
    """A subscription's state (:meth:`gwipc.Proxy.subscription_state`)."""

    PENDING = 0  #: not acknowledged yet (or the service is unavailable)
    ACTIVE = 1
    REFUSED = 2


@dataclass(frozen=True)
class PeerInfo:
    """A connected peer: its id (never reused), kernel-verified pid, uid and
    gid, and the name it gave."""

    id: int
    pid: int
    uid: int
    gid: int
    name: str

    @classmethod
    def _from_c(cls, p: Any) -> "PeerInfo":
        return cls(p.id, p.pid, p.uid, p.gid, _lib.text(p.name))


@dataclass(frozen=True)
class FindEvent:
    """An instance appearing (``available``) or disappearing at ``peer``."""

    service: ServiceID
    peer: int
    available: bool


@dataclass(frozen=True)
class Update:
    """A copied event update (what :func:`gwipc.aio.updates` yields)."""

    event: int
    seq: int
    requested: bool
    data: bytes = field(repr=False)
