"""Seeded random abuse of the whole public API, in child interpreters.

Two nodes in one process (a listener and a dialler) and everything they
make (offers, proxies, samples, views, loans, calls, finders, commands)
are driven by a seeded random sequence of calls, right and wrong: objects
used after release or close, closed in any order and used again, arguments
of the wrong type and out of range, calls from inside callbacks (blocking
ones must raise DeadlockError, not hang), other threads, and the garbage
collector at random points. Every step must succeed or raise what the API
documents (gwipc.GwipcError, TypeError, ValueError, OverflowError; also
BufferError from a loan with live views, and IndexError from indexing a
memoryview). After every step every view and kept sample must still be
mapped (checked in /proc/self/maps, so an unmapped one is reported at the
step that unmapped it, not as a crash later) and a self-describing payload
must read back intact. Anything else - a crash, a hang, another exception,
an exception that escaped into C ("Exception ignored" on stderr) - fails
the test.

Each seed runs in its own child (helpers.run_python): a crash is a failed
test naming the seed and the last steps (the child writes each step to
trace.log unbuffered), not a dead runner. The steps depend on the seed, the
timing of the two nodes' dispatches somewhat. Reproduce a seed with

    GWIPC_BUILD_DIR=$PWD/build PYTHONPATH=bindings/python \\
        python3 bindings/python/tests/test_abuse.py SEED STEPS DIR

Regressions, Contract and Surface hold one test for each finding of these
runs (docs/PYTHON.md, "Arguments" and "Zero-copy views").
"""

from __future__ import annotations

import array
import copy
import ctypes
import faulthandler
import gc
import logging
import os
import pickle
import random
import select
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gwipc

from helpers import TIMEOUT, TempDirTest, pair, pump, run_python
from test_safety import PAIR, ChildTest

SVC = gwipc.ServiceID("test.abuse", 1, 0, "x")

# (seed, steps): a few thousand steps in all, well under 30 s.
SEEDS = [(1, 900), (2, 900), (3, 900), (4, 900)]

#: What a step may raise (see the module docstring); Boom is what the
#: fuzz's own callbacks raise, re-raised by whatever dispatched them.
ALLOWED: tuple[type[BaseException], ...] = (gwipc.GwipcError, TypeError, ValueError, OverflowError)


class Boom(Exception):
    """Raised on purpose by a callback."""


class Finding(Exception):
    """A step broke the contract."""


MAGIC = b"GWAB"


def payload(rng: random.Random, n: int) -> bytes:
    """A self-describing payload of n (>= 16) bytes: magic, length, nonce,
    then the nonce repeated; check() verifies it."""
    body = n - 16
    nonce = rng.getrandbits(64).to_bytes(8, "little")
    return MAGIC + body.to_bytes(4, "little") + nonce + (nonce * (body // 8 + 1))[:body]


def check(data: bytes, what: str) -> None:
    """Verifies a whole payload made by payload() (other bytes pass)."""
    if len(data) < 16 or data[:4] != MAGIC:
        return
    body = int.from_bytes(data[4:8], "little")
    if len(data) != 16 + body:
        return  # a loan published short, or a slice
    nonce = data[8:16]
    if data[16:] != (nonce * (body // 8 + 1))[:body]:
        raise Finding(f"{what}: the payload changed under a live view: {data[:40]!r}...")


SERVICES = [gwipc.ServiceID("abuse.s0", 1, 0, "i0"), gwipc.ServiceID("abuse.s1", 1, 0, "i1"),
            gwipc.ServiceID("abuse.s2", 2, 1, "i2")]


class Fuzz:
    """The state of one run: the objects made so far (closed ones too),
    and the random source."""

    def __init__(self, seed: int, steps: int, directory: str) -> None:
        self.rng = random.Random(seed)
        self.seed, self.steps, self.dir = seed, steps, directory
        self.gen = 0  # a new listener gets a new path: the old one may live on, held by its children
        self.sock = os.path.join(directory, "abuse-0.sock")
        self.status_path = os.path.join(directory, "status.sock")
        self.step = 0
        self.action = ""
        self.trace = os.open(os.path.join(directory, "trace.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.local = threading.local()  # .nodes: the nodes whose callbacks this thread is inside
        self.findings: list[str] = []
        self.a: gwipc.Node | None = None
        self.b: gwipc.Node | None = None
        self.pools: dict[str, list[Any]] = {k: [] for k in (
            "node", "offer", "proxy", "sample", "view", "loan", "lview", "pending", "call", "finder")}
        self.threads: list[threading.Thread] = []
        self.counts: dict[str, int] = {}
        self.logger = logging.getLogger("gwipc.abuse")
        self.logger.addHandler(logging.NullHandler())
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)

    # ---- bookkeeping --------------------------------------------------

    def log(self, text: str) -> None:
        os.write(self.trace, f"{self.step} {text}\n".encode(errors="replace"))

    def add(self, pool: str, obj: Any) -> Any:
        items = self.pools[pool]
        items.append(obj)
        if len(items) > (6 if pool in ("sample", "view", "lview", "loan") else 24):  # forget one at random
            items.pop(self.rng.randrange(len(items)))
        return obj

    def forget(self, pool: str, obj: Any) -> None:
        items = self.pools[pool]
        for i, x in enumerate(items):
            if x is obj:
                del items[i]
                return

    def pick(self, pool: str) -> Any:
        """One of the pool's objects: mostly a live one (not closed, not
        done), sometimes any (closed ones included)."""
        items = self.pools[pool]
        if not items:
            return None
        if self.rng.random() < 0.8:
            live = [x for x in items if not _dead(x)]
            if live:
                return self.rng.choice(live)
        return self.rng.choice(items)

    def finding(self, text: str) -> None:
        self.findings.append(f"seed {self.seed} step {self.step} ({self.action}): {text}")
        self.log("FINDING " + text)

    def inside(self) -> list[gwipc.Node]:
        nodes = getattr(self.local, "nodes", None)
        if nodes is None:
            nodes = self.local.nodes = []
        return nodes

    def guarded(self, name: str, fn: Callable[[], Any], *, drives: bool = True,
                extra: tuple[type[BaseException], ...] = ()) -> Any:
        """Runs one API use; anything outside the contract is a finding."""
        self.log(("  in callback: " if self.inside() else "") + name)
        try:
            out = fn()
            key = "ok " + name.split("(")[0]
            self.counts[key] = self.counts.get(key, 0) + 1
            return out
        except Finding as exc:
            self.finding(str(exc))
        except ALLOWED + extra:
            pass
        except Boom:
            if not drives:
                self.finding(f"{name}: a callback's exception came out of a call that runs no callback")
        except BaseException as exc:  # noqa: BLE001 - the point of the test
            self.finding(f"{name} raised {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        return None

    # ---- random values --------------------------------------------------

    def event(self) -> Any:
        r = self.rng.random()
        if r < 0.8:
            return self.rng.randrange(3)
        return self.rng.choice([3, 7, 65535, -1, 65536, 2**70, "0", None, 1.5, True])

    def method(self) -> Any:
        r = self.rng.random()
        if r < 0.8:
            return self.rng.randrange(2)
        return self.rng.choice([2, 9, 65535, -1, 65536, 2**64, "1", None, 0.0])

    def timeout(self, bad: bool = True) -> Any:
        """A short timeout, or (bad) a wrong one that must be refused."""
        if bad and self.rng.random() < 0.1:
            return self.rng.choice([-1, -0.5, float("nan"), "1", b"1", [1], complex(1, 1)])
        return self.rng.choice([0, 0, 0.001, 0.005, 0.02])

    def data(self) -> Any:
        r = self.rng.random()
        if r < 0.55:
            return payload(self.rng, self.rng.choice([16, 17, 40, 100, 255, 256, 1000, 4000]))
        if r < 0.65:
            return bytearray(payload(self.rng, self.rng.choice([16, 64, 300])))
        if r < 0.72:
            return memoryview(payload(self.rng, 48))
        if r < 0.76:
            return array.array("H", range(self.rng.randrange(50)))
        if r < 0.80:
            return b""
        if r < 0.84:
            return self.rng.choice([b"x" * 5000, b"y" * (1 << 17)])  # beyond a slot
        if r < 0.88:
            v = self.pick("view") or self.pick("lview")  # zero-copy views as input
            if v is not None:
                return v
        if r < 0.90:
            m = memoryview(b"released")
            m.release()
            return m
        if r < 0.92:
            return memoryview(bytearray(b"0123456789"))[::2]  # not contiguous
        return self.rng.choice(["text", None, 5, 2**80, 1.5, [1, 2], object()])

    # ---- the nodes ------------------------------------------------------

    def make_listener(self) -> None:
        rng = self.rng
        self.gen += 1
        self.sock = os.path.join(self.dir, f"abuse-{self.gen}.sock")
        self.status_path = os.path.join(self.dir, f"status-{self.gen}.sock")

        def authorize(peer: gwipc.PeerInfo) -> Any:
            r = rng.random()
            if r < 0.03:
                raise Boom("authorize")
            if r < 0.06:
                return "refused by the abuse test"
            return rng.choice([None, True])

        holder: list[gwipc.Node] = []
        node_of = lambda: holder[0] if holder else None  # noqa: E731
        kw: dict[str, Any] = dict(name="abuse-a", authorize=self.callback_of("authorize", node_of, authorize),
                                  logger=self.logger, log_level=gwipc.LogLevel.DEBUG,
                                  on_peer_connected=self.callback_of("peer_connected", node_of),
                                  on_peer_disconnected=self.callback_of("peer_disconnected", node_of))
        if rng.random() < 0.7:
            kw["status_path"] = self.status_path
        node = self.guarded("Node.listen", lambda: gwipc.Node.listen(self.sock, **kw))
        if node is not None:
            holder.append(node)
            self.a = self.add("node", node)
            for svc in SERVICES:  # what a new listener offers at once
                self.a_offer(node, svc)
            if "status_path" in kw:
                for name in ("hello", "boom", "wrong"):
                    self.guarded("handle_command", lambda name=name: node.handle_command(
                        name, self.callback_of("command:" + name, lambda: node, self.command)))

    def make_dialler(self) -> None:
        holder: list[gwipc.Node] = []
        node_of = lambda: holder[0] if holder else None  # noqa: E731
        kw: dict[str, Any] = dict(name="abuse-b", reconnect=(0.002, 0.02),
                                  on_peer_connected=self.callback_of("peer_connected", node_of),
                                  on_peer_disconnected=self.callback_of("peer_disconnected", node_of))
        if self.rng.random() < 0.3:
            kw["pools"] = [gwipc.Pool("abuse.s0", gwipc.PoolKind.REPLY, gwipc.Geometry(512, 4))]
        node = self.guarded("Node.dial", lambda: gwipc.Node.dial(self.sock, **kw))
        if node is not None:
            holder.append(node)
            self.b = self.add("node", node)
            for svc in SERVICES:  # what a new dialler requires at once
                self.a_require(node, svc)

    def nodes(self) -> list[gwipc.Node]:
        return [n for n in (self.a, self.b) if n is not None]

    def node(self, prefer: str = "") -> gwipc.Node | None:
        """A node: a or b (mostly the preferred one), or an older one."""
        if prefer and self.rng.random() < 0.75:
            n = self.a if prefer == "a" else self.b
            if n is not None:
                return n
        nodes = self.nodes()
        if self.rng.random() < 0.1 or not nodes:
            return self.pick("node")
        return self.rng.choice(nodes)

    # ---- callbacks ------------------------------------------------------

    def callback_of(self, name: str, node_of: Callable[[], gwipc.Node | None],
                    body: Callable[..., Any] | None = None) -> Callable[..., Any]:
        """A callback that records which node it runs in, sometimes does
        a nested random step, and sometimes raises Boom."""
        def cb(*args: Any) -> Any:
            node = node_of()
            stack = self.inside()
            if node is not None:
                stack.append(node)
            try:
                self.log(f"  callback {name}")
                self.counts["cb " + name.split(":")[0]] = self.counts.get("cb " + name.split(":")[0], 0) + 1
                out = body(*args) if body is not None else None
                if len(stack) < 3 and self.rng.random() < 0.25:
                    self.nested(node)
                if self.rng.random() < 0.05:
                    raise Boom(name)
                return out
            finally:
                if node is not None:
                    stack.pop()
        return cb

    def nested(self, node: gwipc.Node | None) -> None:
        """A random step inside a callback of node."""
        # Only inside a dispatch of node: a PendingCall's done callbacks also
        # run in add_done_callback (once done) and in the node's close.
        if node is not None and node._loop_thread == threading.get_ident() and self.rng.random() < 0.3:
            self.deadlock_probe(node)
            return
        name, action = self.rng.choice(INSIDE)
        self.log(f"  nested {name}")
        action(self)

    def deadlock_probe(self, node: gwipc.Node) -> None:
        """Blocking calls on the node whose callback runs: DeadlockError
        (BusyError for dispatching it), never a hang, even with no timeout."""
        rng = self.rng
        proxies = [p for p in self.pools["proxy"] if p.node is node and not p.closed]
        pendings = [p for p in self.pools["pending"] if p.proxy.node is node and not p.done()]
        offers = [o for o in self.pools["offer"] if o.node is node and not o.closed]
        probes: list[tuple[str, Callable[[], Any], type[BaseException]]] = [
            ("dispatch", lambda: node.dispatch(rng.choice([0, None])), gwipc.BusyError),
            ("run", lambda: node.run(timeout=rng.choice([0.01, None])), gwipc.BusyError),
            ("shutdown", lambda: node.shutdown(rng.choice([0.1, None])), gwipc.DeadlockError),
        ]
        if proxies:
            p = rng.choice(proxies)
            probes.append(("Proxy.call", lambda: p.call(0, b"x", timeout=rng.choice([None, 1.0])),
                           gwipc.DeadlockError))
            if not p.available:
                probes.append(("Proxy.wait_available", lambda: p.wait_available(None), gwipc.DeadlockError))
        if pendings:
            pc = rng.choice(pendings)
            probes.append(("PendingCall.result", lambda: pc.result(None), gwipc.DeadlockError))
        if offers:
            o = rng.choice(offers)
            probes.append(("Offer.publish(wait=None)",
                           lambda: _fill_then(o, lambda: o.publish(0, b"z", wait=None)), gwipc.DeadlockError))
        what, fn, want = rng.choice(probes)
        if node.closed:
            return
        self.log(f"  deadlock probe {what}")
        try:
            fn()
        except want:
            return
        except gwipc.ClosedError:
            return  # the node (or the object) was closed by an earlier nested step
        except _NoSlotNeeded:
            return
        except BaseException as exc:  # noqa: BLE001
            self.finding(f"{what} from a callback of its node raised {type(exc).__name__}: {exc}, "
                         f"not {want.__name__}")
            return
        self.finding(f"{what} from a callback of its node returned instead of raising {want.__name__}")

    def sample_handler(self, proxy_ref: list[Any]) -> Callable[[gwipc.Sample], Any]:
        rng = self.rng

        def handle(s: gwipc.Sample) -> None:
            r = rng.random()
            self.guarded("Sample.data in handler", lambda: check(bytes(s.data), "sample in handler"))
            if r < 0.25:
                self.guarded("Sample.keep", lambda: self.add("sample", s.keep()))
                self.log(f"  kept {s!r} addr={s._addr or 0:#x} hold={s._hold!r}")
            elif r < 0.45:
                v = self.guarded("Sample.data", lambda: s.data)
                if v is not None:  # a view (or a slice) escapes the handler, without keep()
                    self.add("view", v if rng.random() < 0.5 else v[rng.randrange(len(v) + 1):])
                    arr = getattr(v.obj, "_arr", v.obj)
                    if isinstance(arr, ctypes.Array):
                        self.log(f"  view escapes {ctypes.addressof(arr):#x} from proxy "
                                 f"{id(proxy_ref[0]):#x} of node {id(proxy_ref[0].node):#x}")
            elif r < 0.5:
                self.add("sample", s)  # escapes not kept: must raise later
            elif r < 0.55:
                self.guarded("Sample.tobytes", lambda: check(s.tobytes(), "tobytes"))
            elif r < 0.6:
                t = threading.Thread(target=lambda: self.guarded("Sample.data on another thread",
                                                                 lambda: check(bytes(s.data), "other thread")))
                t.start()
                t.join(10)
                if t.is_alive():
                    self.finding("Sample.data on another thread hung")
        return self.callback_of("sample", lambda: proxy_ref[0].node if proxy_ref else None, handle)

    def on_call(self, node_of: Callable[[], gwipc.Node | None]) -> Callable[[gwipc.Call], Any]:
        rng = self.rng

        def handle(call: gwipc.Call) -> Any:
            r = rng.random()
            if r < 0.4:
                return b"re:" + call.data[:64]
            if r < 0.55:
                self.add("call", call)  # answered later, maybe
                return None
            if r < 0.62:
                raise gwipc.AppError("app says no", app_code=rng.choice([7, -3, 2**40]))
            if r < 0.7:
                return rng.choice(["a str", 5, object(), b"x" * 100000])  # a wrong reply
            if r < 0.78:
                t = threading.Thread(target=lambda: self.guarded("Call.reply on another thread",
                                                                 lambda: call.reply(b"threaded")))
                t.start()
                self.threads.append(t)
                return None
            if r < 0.85:
                self.guarded("Call.fail", lambda: call.fail(rng.choice([1, -(2**31), 2**31, "x"]), self.data()))
                return None
            return self.data()
        return self.callback_of("on_call", node_of, handle)

    def command(self, request: bytes) -> Any:
        word = request.split(b" ", 1)[0]
        if word == b"boom":
            raise Boom("command")
        if word == b"wrong":
            return self.rng.choice([5, object(), b"x" * (17 << 20)])
        return self.rng.choice([b"hi " + request, "text reply", None, b""])

    # ---- the run ----------------------------------------------------------

    def run(self) -> None:
        self.make_listener()
        self.make_dialler()
        for self.step in range(1, self.steps + 1):
            if any(n is None or n.closed for n in (self.a, self.b)) and self.rng.random() < 0.3:
                self.action = "a_new_node"
                self.a_new_node()
            if self.rng.random() < 0.35:
                name, action = "pump", Fuzz.pump
            else:
                name, action = self.rng.choice(ACTIONS)
            self.action = name
            self.counts[name] = self.counts.get(name, 0) + 1
            self.log(name)
            try:
                action(self)
            except Finding as exc:
                self.finding(str(exc))
            except BaseException as exc:  # noqa: BLE001 - a bug of the fuzz itself, or of gwipc
                self.finding(f"{name} escaped with {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            self.verify_held()
            if len(self.findings) > 5:
                break
        for t in self.threads:
            t.join(10)
            if t.is_alive():
                self.finding("a helper thread hung")
        self.step = self.steps + 1
        self.action = "end"
        if self.rng.random() < 0.5:  # else the interpreter exits with everything open
            for pool in ("loan", "proxy", "offer", "finder", "node"):
                for obj in list(self.pools[pool]):
                    self.guarded(f"{pool} close at the end", obj.discard if pool == "loan" else obj.close,
                                 extra=(BufferError,))
        for v in self.pools["view"] + self.pools["lview"]:
            self.guarded("view read at the end", lambda v=v: check(bytes(v), "view at the end"),
                         extra=(IndexError,))

    def verify_held(self) -> None:
        """After every step: every view and kept sample is still mapped
        (read from /proc/self/maps, so a violation is a finding, not a
        crash later) and reads what was sent."""
        maps = []
        with open("/proc/self/maps") as f:
            for line in f:
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                maps.append((lo, hi))
        for pool in ("view", "lview"):
            for v in self.pools[pool]:
                try:
                    arr = v.obj
                except ValueError:
                    continue  # released
                arr = getattr(arr, "_arr", arr)  # 3.12+: the read-only exporter's array
                if not isinstance(arr, ctypes.Array):
                    continue
                addr, n = ctypes.addressof(arr), ctypes.sizeof(arr)
                if not any(lo <= addr and addr + n <= hi for lo, hi in maps):
                    self.finding(f"a {pool} at {addr:#x} ({n} bytes, hold {getattr(arr, '_gwipc_hold', None)!r}) "
                                 "is no longer mapped")
                    self.forget(pool, v)
                    return
        for s in self.pools["sample"]:
            if s._hold is None or not s._len:
                continue
            if not any(lo <= s._addr and s._addr + s._len <= hi for lo, hi in maps):
                self.finding(f"kept {s!r} at {s._addr:#x} is no longer mapped")
                self.pools["sample"].remove(s)
                return
            data = ctypes.string_at(s._addr, s._len)
            try:
                check(data, f"kept {s!r} at {s._addr:#x}")
            except Finding as exc:
                self.finding(str(exc))
                self.pools["sample"].remove(s)
                return

    # ---- actions (each a method; ACTIONS below lists them) ----------------

    def pump(self) -> None:
        """Dispatches both nodes for a little while (waiting for their fds
        at most a few ms at a time)."""
        for _ in range(self.rng.randrange(2, 10)):
            nodes = [n for n in self.nodes() if not n.closed]
            fds = [fd for fd in (self.guarded("fileno", n.fileno, drives=False) for n in nodes) if fd is not None]
            if fds:
                select.select(fds, [], [], self.rng.choice([0, 0.001, 0.002]))
            for n in nodes:
                if not n.closed:
                    self.guarded("dispatch", lambda n=n: n.dispatch(0))

    def a_dispatch_weird(self) -> None:
        n = self.node()
        if n is not None:
            t = self.timeout()
            self.guarded(f"dispatch({t!r})", lambda: n.dispatch(t))

    def a_run(self) -> None:
        n = self.node()
        if n is not None:
            t = self.rng.choice([0, 0.005, 0.02, -1, float("nan"), "x"])
            self.guarded(f"run({t!r})", lambda: n.run(timeout=t))

    def a_stop_and_call_soon(self) -> None:
        n = self.node()
        if n is None:
            return
        fn = self.rng.choice([lambda: None, self.callback_of("posted", lambda: n), 5, None])
        self.guarded("call_soon", lambda: n.call_soon(fn), drives=False)
        self.guarded("stop", n.stop, drives=False)

    def a_background_run(self) -> None:
        """Another thread runs a node while this one uses it too."""
        n = self.node()
        if n is None or n.closed:
            return
        t = threading.Thread(target=lambda: self.guarded("run on another thread", lambda: n.run(timeout=0.05)))
        t.start()
        for _ in range(self.rng.randrange(1, 4)):
            name, action = self.rng.choice(ACTIONS)
            if action not in (Fuzz.a_background_run, Fuzz.a_close_node, Fuzz.a_new_node):
                action(self)
        if self.rng.random() < 0.2:
            self.guarded("close while another thread runs it", n.close, drives=False)
        t.join(10)
        if t.is_alive():
            self.finding("Node.run(timeout=0.05) on another thread did not return")

    def a_status(self) -> None:
        n = self.node()
        if n is not None:
            self.guarded("status", lambda: n.status(), drives=False)
            self.guarded("fileno", lambda: n.fileno(), drives=False)
            self.guarded("repr", lambda: repr(n), drives=False)

    def a_query(self) -> None:
        path = self.rng.choice([self.status_path, self.status_path, self.sock, os.path.join(self.dir, "nothing"),
                                None, 5, ""])
        req = self.rng.choice(["ping", "status", b"hello x", "boom", "wrong", "help", "version", 5, None,
                               b"x" * 70000])
        if self.rng.random() < 0.5:  # answered by a dispatch of this thread meanwhile
            t = threading.Thread(target=lambda: self.guarded("query on another thread",
                                                             lambda: gwipc.query(path, req, timeout=2)))
            t.start()
            deadline = time.monotonic() + 5
            while t.is_alive() and time.monotonic() < deadline:
                self.pump()
            t.join(5)
            if t.is_alive():
                self.finding("gwipc.query(timeout=2) did not return")
        else:
            self.guarded("query", lambda: gwipc.query(path, req, timeout=self.rng.choice([0.01, 0, -1, "x"])),
                         drives=False)

    def a_close_node(self) -> None:
        n = self.node()
        if n is None or self.rng.random() < (0.9 if self.inside() else 0.7):
            return
        self.log(f"close node {id(n):#x} {n!r}")
        if self.rng.random() < 0.5:
            self.guarded("Node.close", n.close)
            if not n.closed:
                self.finding("Node.close left the node open")
        else:
            t = self.rng.choice([0, 0.01, 0.05, None, -1, "x"])
            was_open = not n.closed
            in_own_callback = n._loop_thread == threading.get_ident()
            try:
                self.log(f"Node.shutdown({t!r})")
                n.shutdown(t)
                if in_own_callback:
                    self.finding("Node.shutdown from a callback of the node did not raise DeadlockError")
            except (gwipc.DeadlockError, TypeError, ValueError):
                if was_open and n.closed:
                    self.finding("a refused Node.shutdown marked the node closed (it stays open in C)")
            except (gwipc.GwipcError, Boom):
                pass
            if not n.closed and not in_own_callback and not isinstance(t, str) and t != -1 and was_open:
                self.finding("Node.shutdown left the node open")

    def a_new_node(self) -> None:
        if self.a is None or self.a.closed:
            self.make_listener()
            self.make_dialler()  # to the new path (the old dialler lives on, maybe, unused)
        elif self.b is None or self.b.closed:
            self.make_dialler()

    def a_bad_node(self) -> None:
        rng = self.rng
        path = os.path.join(self.dir, f"bad{rng.randrange(3)}.sock")
        options = [dict(name=5), dict(name="a\0b"), dict(name="x" * 100), dict(socket_mode=-1),
                   dict(socket_mode=2**40), dict(max_peers=(1,)), dict(max_peers=(1, 2**33)), dict(max_packet=1),
                   dict(max_packet=2**32 + 4096), dict(handshake_timeout=float("inf")),
                   dict(handshake_timeout="1"),
                   dict(limits=gwipc.Limits(services=-1)), dict(limits=gwipc.Limits(pool_bytes=2**64)),
                   dict(limits=(1, 2)), dict(rules=[gwipc.Rule(uids=(-1,))]), dict(rules=["x"]),
                   dict(rules=[gwipc.Rule(service="a\0b")]), dict(rules=[gwipc.Rule(actions=99)]),
                   dict(allow_uids=[2**32]), dict(allow_uids=None), dict(authorize=5), dict(logger="x"),
                   dict(log_level=2**40), dict(on_peer_connected=3), dict(status_path=""),
                   dict(status_path=5), dict(bogus=1), dict(max_output=-1)]
        kw = rng.choice(options)
        bad_path = rng.choice([path, path, None, 5, b"", "", path + "\0x", "/nonexistent/dir/x.sock"])
        made = self.guarded(f"Node.listen(bad {kw})", lambda: gwipc.Node.listen(bad_path, **kw))
        if made is not None:
            made.close()
        dkw = rng.choice([dict(reconnect=(1, -1)), dict(reconnect=5), dict(reconnect=(float("inf"), 1e300)),
                          dict(pools=[gwipc.Pool(None, 0, gwipc.Geometry(1, 1))]),  # type: ignore[arg-type]
                          dict(pools=[gwipc.Pool("x", 7, gwipc.Geometry(1, 1))]),  # type: ignore[arg-type]
                          dict(pools=[gwipc.Pool("x", 0, (1, 1))]),  # type: ignore[arg-type]
                          dict(pools=[5]), dict(listener_uids=[-5])])
        made = self.guarded(f"Node.dial(bad {dkw})", lambda: gwipc.Node.dial(path, **dkw))
        if made is not None:
            made.close()

    def a_offer(self, n: gwipc.Node | None = None, svc: Any = None) -> None:
        n = n or self.node("a")
        if n is None:
            return
        rng = self.rng
        svc = svc or rng.choice(SERVICES) if rng.random() < 0.85 else rng.choice([
            gwipc.ServiceID("", 1, 0, "x"), gwipc.ServiceID("a b"), gwipc.ServiceID("x\0y"),
            gwipc.ServiceID("ok", -1), gwipc.ServiceID("ok", 2**16),
            gwipc.ServiceID(None),  # type: ignore[arg-type]
            gwipc.ServiceID("ok", 1, 0, "*"), gwipc.ServiceID("é" * 40), "abuse.s0", None])
        kw: dict[str, Any] = dict(events=3, methods=2, fields=[1])
        if rng.random() < 0.5:
            kw["geometry"] = gwipc.Geometry(256, rng.choice([2, 4, 8]))
        if rng.random() < 0.2:
            kw["subscriber_slots"] = rng.choice([1, 2, 0])
        if rng.random() < 0.15:
            kw[rng.choice(["events", "methods", "subscriber_slots"])] = rng.choice([-1, 70000, 2**40, "2", None])
        if rng.random() < 0.1:
            kw["fields"] = rng.choice([[70000], [-1], ["a"], None, [5]])
        if rng.random() < 0.1:
            kw["geometry"] = rng.choice([gwipc.Geometry(-1, 2), gwipc.Geometry(2**31, 2**20), gwipc.Geometry(0, 1),
                                         (256, 4), gwipc.Geometry("1", 2)])  # type: ignore[arg-type]
        holder: list[Any] = []
        node_of = lambda: holder[0].node if holder else None  # noqa: E731
        if rng.random() < 0.9:
            kw["on_call"] = self.on_call(node_of)
        if rng.random() < 0.6:
            kw["on_cancel"] = self.callback_of("on_cancel", node_of, lambda c: self.add("call", c))
        if rng.random() < 0.6:
            kw["on_subscription"] = self.callback_of("on_subscription", node_of)
        if rng.random() < 0.6:
            def update(ev: int) -> None:
                if holder:
                    self.guarded("publish in on_update_request",
                                 lambda: holder[0].publish(ev, payload(rng, 32)))
            kw["on_update_request"] = self.callback_of("on_update_request", node_of, update)
        if rng.random() < 0.05:
            kw["on_call"] = rng.choice([5, "x"])
        o = self.guarded(f"Node.offer({svc!r})", lambda: n.offer(svc, **kw),  # type: ignore[arg-type]
                         drives=False)
        if o is not None:
            holder.append(o)
            self.add("offer", o)

    def a_publish(self) -> None:
        o = self.pick("offer")
        if o is None:
            return
        ev, data = self.event(), self.data()
        wait = self.rng.choice([0, 0, 0.002, 0.01]) if self.rng.random() < 0.9 else self.timeout()
        self.guarded(f"publish({ev!r}, {type(data).__name__})", lambda: o.publish(ev, data, wait=wait))

    def a_loan(self) -> None:
        o = self.pick("offer")
        if o is None:
            return
        ev = self.event()
        loan = self.guarded(f"loan({ev!r})", lambda: o.loan(ev, wait=self.rng.choice([0, 0.002])))
        if loan is None:
            return
        self.add("loan", loan)
        rng = self.rng
        data = payload(rng, rng.choice([16, 100, 256]))
        r = rng.random()
        if r < 0.5:
            def write() -> None:
                loan.buffer[:len(data)] = data
            self.guarded("loan write", write, extra=(IndexError,))
            self.guarded("loan publish", lambda: loan.publish(len(data)), extra=(BufferError,))
        elif r < 0.7:
            v = self.guarded("loan.buffer", lambda: loan.buffer)
            if v is not None:
                self.add("lview", v)

    def a_loan_ops(self) -> None:
        loan = self.pick("loan")
        if loan is None:
            return
        rng = self.rng
        r = rng.random()
        if r < 0.25:
            n = rng.choice([0, 16, 100, loan.capacity, loan.capacity + 1, -1, 2**64, "x", None])
            self.guarded(f"Loan.publish({n!r})", lambda: loan.publish(n), extra=(BufferError,))
        elif r < 0.4:
            self.guarded("Loan.discard", loan.discard, extra=(BufferError,))
        elif r < 0.6:
            data = payload(rng, rng.choice([16, 64, 200]))

            def write() -> None:
                with loan.buffer as b:
                    b[:len(data)] = data
            self.guarded("with loan.buffer", write, extra=(IndexError,))
        elif r < 0.75:
            v = self.guarded("loan.buffer", lambda: loan.buffer)
            if v is not None:
                self.add("lview", v[rng.randrange(16):])
        elif r < 0.85:
            def as_context() -> None:
                with loan:
                    pass
            self.guarded("with loan", as_context, extra=(BufferError,))
        else:
            self.guarded("repr(loan)", lambda: repr(loan))

    def a_view_ops(self) -> None:
        """Views (of samples and loans) read, written, sliced, released -
        after their sample's release and their node's close too."""
        rng = self.rng
        pool = rng.choice(["view", "lview"])
        v = self.pick(pool)
        if v is None:
            return
        r = rng.random()
        if r < 0.4:
            self.guarded("bytes(view)", lambda: check(bytes(v), "view"))
        elif r < 0.55:
            self.guarded("view slice", lambda: bytes(v[rng.randrange(len(v) + 1):rng.randrange(len(v) + 1)]))
        elif r < 0.65:
            self.guarded("view index", lambda: v[rng.choice([0, len(v) - 1, len(v), -1, 10**6])],
                         extra=(IndexError,))
        elif r < 0.75:
            def write() -> None:
                v[0:4] = b"GWAB"  # read-only sample views raise TypeError
            self.guarded("view write", write, extra=(IndexError,))
        elif r < 0.85:
            self.guarded("view release", v.release)
            self.forget(pool, v)
        else:
            self.forget(pool, v)  # dropped: its hold may go now
            del v
            gc.collect()

    def a_require(self, n: gwipc.Node | None = None, svc: Any = None) -> None:
        n = n or self.node("b")
        if n is None:
            return
        rng = self.rng
        svc = svc or rng.choice(SERVICES) if rng.random() < 0.9 else rng.choice([
            gwipc.ServiceID("abuse.none"), gwipc.ServiceID("abuse.s0", 1, 5, "i0"), "abuse.s0",
            gwipc.ServiceID("abuse.s0", 70000)])
        holder: list[Any] = []
        node_of = lambda: holder[0].node if holder else None  # noqa: E731
        kw: dict[str, Any] = {}
        if rng.random() < 0.7:
            kw["on_availability"] = self.callback_of("on_availability", node_of)
        if rng.random() < 0.7:
            kw["on_subscription"] = self.callback_of("on_suback", node_of)
        if rng.random() < 0.2:
            kw["call_geometry"] = rng.choice([gwipc.Geometry(128, 2), gwipc.Geometry(2**32, 1), (1, 1)])
        p = self.guarded(f"Node.require({svc!r})", lambda: n.require(svc, **kw),  # type: ignore[arg-type]
                         drives=False)
        if p is None:
            return
        holder.append(p)
        self.add("proxy", p)
        for ev in range(3):
            if rng.random() < 0.7:
                self.guarded("subscribe", lambda ev=ev: p.subscribe(ev, self.sample_handler(holder),
                                                                  initial_value=rng.random() < 0.5), drives=False)

    def a_proxy_ops(self) -> None:
        p = self.pick("proxy")
        if p is None:
            return
        rng = self.rng
        holder = [p]
        r = rng.random()
        if r < 0.15:
            ev = self.event()
            h = self.sample_handler(holder) if rng.random() < 0.9 else rng.choice([5, None])
            self.guarded(f"subscribe({ev!r})", lambda: p.subscribe(ev, h, initial_value=rng.random() < 0.5),
                         drives=False)
        elif r < 0.22:
            self.guarded("unsubscribe", lambda: p.unsubscribe(self.event()), drives=False)
        elif r < 0.3:
            self.guarded("subscription_state", lambda: p.subscription_state(self.event()), drives=False)
        elif r < 0.36:
            self.guarded("request_update", lambda: p.request_update(self.event()), drives=False)
        elif r < 0.42:
            self.guarded("available", lambda: p.available, drives=False)
            self.guarded("wait_available", lambda: p.wait_available(self.timeout()))
        elif r < 0.55:
            self.guarded("Proxy.call", lambda: p.call(self.method(), self.data(), timeout=self.timeout()))
        elif r < 0.85:
            cb = rng.choice([None, self.callback_of("done", lambda: p.node), 5])
            t = rng.choice([None, 0, 0.01, 0.5, 5, 1e30, float("inf"), -1, "x"])
            pc = self.guarded("call_async", lambda: p.call_async(self.method(), self.data(), timeout=t,
                                                                callback=cb), drives=False)
            if pc is not None:
                self.add("pending", pc)
        elif r < 0.92:
            self.guarded("send", lambda: p.send(self.method(), self.data()), drives=False)
        else:
            self.guarded("Proxy.close", p.close, drives=False)

    def a_pending_ops(self) -> None:
        pc = self.pick("pending")
        if pc is None:
            return
        rng = self.rng
        r = rng.random()
        if r < 0.3:
            self.guarded("result", lambda: pc.result(self.timeout()))
        elif r < 0.5:
            self.guarded("cancel", pc.cancel, drives=False)
        elif r < 0.6:
            self.guarded("done/exception", lambda: (pc.done(), pc.exception(), repr(pc)), drives=False)
        elif r < 0.8:
            fn = rng.choice([self.callback_of("done later", lambda: pc.proxy.node), 5,
                             lambda p: (_ for _ in ()).throw(Boom("done callback"))])
            self.guarded("add_done_callback", lambda: pc.add_done_callback(fn))
        else:
            t = threading.Thread(target=lambda: self.guarded("cancel on another thread", pc.cancel))
            t.start()
            t.join(10)
            if t.is_alive():
                self.finding("PendingCall.cancel on another thread hung")

    def a_call_ops(self) -> None:
        c = self.pick("call")
        if c is None:
            return
        rng = self.rng
        r = rng.random()
        if r < 0.4:
            self.guarded("Call.reply", lambda: c.reply(self.data()), drives=False)
        elif r < 0.6:
            self.guarded("Call.fail", lambda: c.fail(rng.choice([3, -1, 2**31, None]), self.data()), drives=False)
        elif r < 0.75:
            self.guarded("Call.cancelled", lambda: c.cancelled, drives=False)
        else:
            t = threading.Thread(target=lambda: self.guarded("Call.reply on another thread",
                                                             lambda: c.reply(b"t")))
            t.start()
            t.join(10)
            if t.is_alive():
                self.finding("Call.reply on another thread hung")

    def a_sample_ops(self) -> None:
        s = self.pick("sample")
        if s is None:
            return
        rng = self.rng
        r = rng.random()
        self.log(f"sample {s!r} addr={s._addr or 0:#x} hold={s._hold!r}")
        if r < 0.3:
            v = self.guarded("Sample.data", lambda: s.data, drives=False)
            if v is not None:
                self.guarded("read", lambda: check(bytes(v), "kept sample"))
                if rng.random() < 0.5:
                    self.add("view", v)
        elif r < 0.4:
            self.guarded("Sample.tobytes", lambda: check(s.tobytes(), "kept tobytes"), drives=False)
        elif r < 0.5:
            self.guarded("Sample.keep outside", s.keep, drives=False)
        elif r < 0.7:
            self.guarded("Sample.release", s.release, drives=False)
            self.guarded("Sample.release again", s.release, drives=False)
        elif r < 0.8:
            def ctx() -> None:
                with s:
                    check(bytes(s.data), "with sample")
            self.guarded("with sample", ctx, drives=False)
        elif r < 0.9:
            t = threading.Thread(target=lambda: self.guarded("release on another thread", s.release))
            t.start()
            t.join(10)
        else:
            self.guarded("sample attrs", lambda: (s.event, s.seq, s.requested, s.kept, len(s), repr(s)))

    def a_find(self) -> None:
        n = self.node()
        if n is None:
            return
        rng = self.rng
        iface = rng.choice(["abuse.s0", "abuse.s1", "abuse.s2", "nothing", "", None, "a\0b", 5])
        major = rng.choice([1, 2, 0, -1, 70000, "1"])
        holder = [n]
        cb = self.callback_of("find", lambda: holder[0]) if rng.random() < 0.95 else 5
        f = self.guarded("find", lambda: n.find(iface, major, cb, instance=rng.choice(["*", "i0", "", None])),
                         drives=False)  # type: ignore[arg-type]
        if f is not None:
            self.add("finder", f)

    def a_close_child(self) -> None:
        pool = self.rng.choice(["offer", "proxy", "finder"])
        obj = self.pick(pool)
        if obj is None:
            return
        self.log(f"close {pool} {id(obj):#x} of node {id(obj.node):#x}")
        self.guarded(f"{pool}.close", obj.close, drives=False)
        self.guarded(f"{pool}.close again", obj.close, drives=False)
        if not obj.closed:
            self.finding(f"{pool}.close left it open")

    def a_closed_use(self) -> None:
        """Something of a closed object must raise, not work."""
        rng = self.rng
        closed = [o for pool in ("offer", "proxy", "node") for o in self.pools[pool] if o.closed]
        if not closed:
            return
        obj = rng.choice(closed)
        if isinstance(obj, gwipc.Offer):
            fn: Callable[[], Any] = lambda: obj.publish(0, b"x")  # noqa: E731
        elif isinstance(obj, gwipc.Proxy):
            fn = lambda: obj.call_async(0, b"x")  # noqa: E731
        else:
            fn = lambda: obj.status()  # noqa: E731
        self.log(f"closed use of {obj!r}")
        try:
            fn()
        except gwipc.GwipcError:
            return
        except BaseException as exc:  # noqa: BLE001
            self.finding(f"using a closed {type(obj).__name__} raised {type(exc).__name__}: {exc}")
            return
        self.finding(f"using a closed {type(obj).__name__} succeeded")

    def a_gc(self) -> None:
        rng = self.rng
        for _ in range(rng.randrange(4)):
            pool = rng.choice(list(self.pools))
            if self.pools[pool]:
                self.pools[pool].pop(rng.randrange(len(self.pools[pool])))
        if rng.random() < 0.2:  # drop the nodes themselves (their children may still be referenced)
            if rng.random() < 0.5:
                self.a = None
            else:
                self.b = None
            self.pools["node"] = [n for n in self.pools["node"] if n is self.a or n is self.b]
        gc.collect()

    def a_misc(self) -> None:
        rng = self.rng
        r = rng.random()
        if r < 0.3:
            self.guarded("library_version", gwipc.library_version, drives=False)
        elif r < 0.5:
            self.guarded("load_library", lambda: gwipc.load_library(rng.choice([None, "/nonexistent.so"])),
                         drives=False)
        elif r < 0.6:
            self.guarded("error", lambda: gwipc.error(rng.choice([-1, -23, -99, 0, 5])), drives=False)
        elif r < 0.75:  # the classes are exported, but gwipc makes their objects
            cls = rng.choice([gwipc.Node, gwipc.Offer, gwipc.Proxy, gwipc.Finder, gwipc.Sample, gwipc.Call,
                              gwipc.Loan, gwipc.PendingCall])
            inner = types.SimpleNamespace(event=0, seq=0, requested=0, data=1, len=64)
            junk = types.SimpleNamespace(contents=inner, event=0, capacity=64, data=1)
            made = self.guarded(f"{cls.__name__}(junk)", lambda: cls(junk), drives=False)
            if made is not None:
                self.finding(f"{cls.__name__}(junk) made an object")
        else:  # copies would duplicate the state saying which memory is still valid
            pool = rng.choice(["sample", "loan", "pending", "call", "node", "offer", "proxy", "finder"])
            obj = self.pick(pool)
            if obj is not None:
                how = rng.choice([copy.copy, copy.deepcopy, pickle.dumps])
                self.guarded(f"{how.__name__}({pool})", lambda: how(obj), drives=False)


def _dead(x: Any) -> bool:
    if isinstance(x, (gwipc.Node, gwipc.Offer, gwipc.Proxy, gwipc.Finder)):
        return x.closed
    if isinstance(x, (gwipc.Loan, gwipc.PendingCall)):
        return x.done if isinstance(x, gwipc.Loan) else x.done()
    if isinstance(x, gwipc.Call):
        return x.answered
    if isinstance(x, gwipc.Sample):
        return not x.kept
    return False


def _fill_then(offer: gwipc.Offer, fn: Callable[[], Any]) -> Any:
    """Fills offer's pool with loans so that fn (a publish that waits for
    a slot) has to wait, then runs it; the loans are discarded after."""
    loans = []
    try:
        for _ in range(300):
            try:
                loans.append(offer.loan(0))
            except gwipc.NoSlotError:
                break
        else:
            raise _NoSlotNeeded
        return fn()
    finally:
        for loan in loans:
            loan.discard()


class _NoSlotNeeded(Exception):
    """The pool never filled up: the probe is moot."""


ACTIONS: list[tuple[str, Callable[[Fuzz], None]]] = [
    (name, fn) for name, fn in vars(Fuzz).items() if name.startswith("a_") for _ in range({
        "a_publish": 8, "a_proxy_ops": 6, "a_view_ops": 4, "a_sample_ops": 4, "a_loan": 3, "a_loan_ops": 3,
        "a_pending_ops": 3, "a_call_ops": 3, "a_offer": 2, "a_require": 2, "a_gc": 2,
    }.get(name, 1))]
#: What a callback may do (no new nodes: they would outlive the run's view of them).
INSIDE = [(name, fn) for name, fn in ACTIONS if fn not in (Fuzz.a_new_node, Fuzz.a_bad_node, Fuzz.a_query,
                                                            Fuzz.a_background_run)]


def drive(seed: int, steps: int, directory: str) -> int:
    """One run (in a child interpreter); prints a summary, returns the exit status."""
    faulthandler.enable()  # before the library is loaded, so the Go runtime chains to it
    faulthandler.dump_traceback_later(45, exit=True)  # a hang: every thread's stack, then exit
    gc.set_threshold(50, 5, 5)  # the collector at many more points, callbacks included
    fz = Fuzz(seed, steps, directory)
    t0 = time.monotonic()
    fz.run()
    took = time.monotonic() - t0
    faulthandler.cancel_dump_traceback_later()
    if fz.findings:
        print("FINDINGS", *fz.findings, sep="\n", flush=True)
        return 1
    print(f"ABUSE OK seed={seed} steps={steps} {took:.1f}s", flush=True)
    if os.environ.get("GWIPC_ABUSE_STATS"):
        print(sorted(fz.counts.items()))
    return 0


class Regressions(ChildTest):
    """One test per finding of the abuse run (crashes in a child interpreter)."""

    def test_view_escaping_a_handler_that_closes_its_node(self) -> None:
        # The handler's view was kept only after the handler returned, by
        # then on a closed node: it pointed at unmapped memory (SIGSEGV).
        code = PAIR + """
escaped = []
def handler(s):
    escaped.append(s.data)
    b.close()
proxy.subscribe(0, handler)
pump(lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
offer.publish(0, b"A" * 4000)
try:
    pump(lambda: escaped)
except gwipc.GwipcError:
    pass  # b closed under the pump
offer.close(); a.close(); gc.collect()
print(bytes(escaped[0][:4]))
"""
        self.assertPrints(code, "b'AAAA'", self.path("c.sock"))

    def test_data_dropped_then_keep_in_the_handler_survives_proxy_close(self) -> None:
        # bytes(s.data) made and dropped a hold (a C keep and release), then
        # keep() kept again: the library names the released handle (see
        # docs/PYTHON.md), so the kept sample was unmapped with its proxy.
        code = PAIR + """
kept = []
def handler(s):
    bytes(s.data)            # a view made and dropped inside the handler
    kept.append(s.keep())
proxy.subscribe(0, handler)
pump(lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
offer.publish(0, b"kept!" * 20)
pump(lambda: kept)
proxy.close()
for _ in range(20):
    a.dispatch(0.002); b.dispatch(0.002)
gc.collect()
print(bytes(kept[0].data[:5]))
"""
        self.assertPrints(code, "b'kept!'", self.path("k.sock"))

    def test_views_stay_valid_in_exit_handlers(self) -> None:
        # weakref.finalize ran the holds' finalizers at exit (releasing the
        # sample, discarding the loan) before an earlier-registered atexit
        # handler read the views: SIGSEGV.
        code = """
import atexit
views = []
atexit.register(lambda: print(bytes(views[0][:4]), bytes(views[1][:4])))  # runs after gwipc's
""" + PAIR + """
proxy.subscribe(0, lambda s: views.append(s.keep().data))
pump(lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
offer.publish(0, b"KEPT" * 10)
pump(lambda: views)
loan = offer.loan(0)
views.append(loan.buffer)
views[1][:4] = b"LOAN"
del loan
"""
        self.assertPrints(code, "b'KEPT' b'LOAN'", self.path("x.sock"))

    def test_close_from_another_thread_while_a_call_is_delivered(self) -> None:
        # The library's close tears the node down before it waits for the
        # dispatch on another thread: the payload of the call being
        # delivered (gwipc_call.data) was unmapped under on_call (SIGSEGV
        # in Call's copy of it). A profiler holds the loop thread there.
        code = PAIR + """
import threading
svc2 = gwipc.ServiceID("test.safety2", 1, 0, "x")
a.offer(svc2, methods=1, on_call=lambda c: b"ok")
p2 = b.require(svc2)
pump(lambda: p2.available)
entered = threading.Event()
def prof(frame, event, arg):
    if event == "call" and frame.f_code.co_name == "_init" and frame.f_code.co_filename.endswith("offer.py"):
        entered.set()
        time.sleep(0.3)   # inside the call callback, before the payload is copied
def runner():
    sys.setprofile(prof)
    a.run(timeout=10)
t = threading.Thread(target=runner)
t.start()
p2.call_async(0, b"x" * 1000)
end = time.monotonic() + 10
while not entered.is_set() and time.monotonic() < end:
    b.dispatch(0.01)
a.close()
t.join(10)
print(entered.is_set(), a.closed, t.is_alive())
"""
        self.assertPrints(code, "True True False", self.path("t.sock"))

    def test_exception_in_a_done_callback_run_by_close_does_not_escape_into_c(self) -> None:
        # A done callback run by the close (the call never completed) raised
        # inside the destroy trampoline: ctypes printed "Exception ignored".
        code = PAIR + """
svc2 = gwipc.ServiceID("test.safety2", 1, 0, "x")
held = []
a.offer(svc2, methods=1, on_call=held.append)
p2 = b.require(svc2)
pump(lambda: p2.available)
ran = []
pending = p2.call_async(0, b"x")
pending.add_done_callback(lambda p: 1 / 0)
pending.add_done_callback(lambda p: ran.append(type(p.exception()).__name__))
pump(lambda: held)
b.close()
print(ran)
"""
        self.assertPrints(code, "['ClosedError']", self.path("d.sock"))


class Contract(TempDirTest):
    """Wrong arguments raise TypeError or a ValueError that is a GwipcError,
    never reach C as something else (ctypes masks ints to their C type, and
    raises ctypes.ArgumentError for other types)."""

    def setUp(self) -> None:
        super().setUp()
        self.a, self.b = pair(self)
        self.offer = self.a.offer(SVC, events=2, methods=1, fields=[1], on_call=lambda c: b"r:" + c.data)
        self.proxy = self.b.require(SVC)
        self.got: list[tuple[int, bytes]] = []
        self.proxy.subscribe(0, lambda s: self.got.append((s.event, s.tobytes())))
        pump(self.a, self.b, until=lambda: self.proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)

    def test_out_of_range_ids_are_refused_not_masked(self) -> None:
        for ev in (65536, 65536 + 1, -1, 2**70):  # 65536 was event 0 to C
            with self.assertRaises(gwipc.UnknownEventError):
                self.offer.publish(ev, b"masked")
            with self.assertRaises(gwipc.UnknownEventError):
                self.offer.loan(ev)
            with self.assertRaises(gwipc.UnknownEventError):
                self.proxy.subscribe(ev, lambda s: None)
        for m in (65536, -1, 2**64):
            with self.assertRaises(gwipc.UnknownMethodError):
                self.proxy.call_async(m, b"x")
            with self.assertRaises(gwipc.UnknownMethodError):
                self.proxy.send(m, b"x")
        self.offer.publish(0, b"real")
        pump(self.a, self.b, until=lambda: self.got)
        self.assertEqual(self.got, [(0, b"real")])

    def test_loan_lengths_are_checked(self) -> None:
        loan = self.offer.loan(0)
        for n in (-1, 2**64, 2**70):  # 2**70 published 0 bytes
            with self.assertRaises(gwipc.TooLargeError):
                loan.publish(n)
        with self.assertRaises(TypeError):
            loan.publish("3")  # type: ignore[arg-type]
        self.assertFalse(loan.done)
        loan.discard()

    def test_wrong_types_raise_type_error(self) -> None:
        S = gwipc.ServiceID
        cases: list[Any] = [
            lambda: self.offer.publish("0", b"x"), lambda: self.offer.publish(None, b"x"),
            lambda: self.offer.publish(0.0, b"x"), lambda: self.offer.publish(0, "str"),
            lambda: self.proxy.subscription_state(None), lambda: self.proxy.call(0, b"x", timeout="1"),
            lambda: self.a.offer("svc", events=1),  # type: ignore[arg-type]
            lambda: self.a.offer(S(None), events=1),  # type: ignore[arg-type]
            lambda: self.a.offer(S("x", "1"), events=1), lambda: self.a.offer(S("y"), events="2"),
            lambda: self.a.offer(S("z"), events=1, geometry=(256, 4)),
            lambda: self.a.offer(S("w"), methods=1, on_call=5),
            lambda: self.b.require("svc"), lambda: self.b.find(None, 1, print),
            lambda: self.b.find("x", 1, 5), lambda: self.a.handle_command(None, print),
            lambda: self.a.call_soon(5), lambda: self.a.dispatch("0"),
            lambda: gwipc.Node.listen(None), lambda: gwipc.Node.listen(self.path("n.sock"), name=5),
            lambda: gwipc.Node.listen(self.path("n.sock"), rules=["x"]),
            lambda: gwipc.Node.listen(self.path("n.sock"), max_peers=5),
            lambda: gwipc.Node.listen(self.path("n.sock"), logger="x"),
            lambda: gwipc.Node.dial(self.path("n.sock"), pools=[5]),
            lambda: gwipc.query(None), lambda: gwipc.query(self.path("none"), 10**12),
        ]
        for i, case in enumerate(cases):
            with self.subTest(i=i), self.assertRaises(TypeError):
                case()

    def test_out_of_range_values_raise_value_errors(self) -> None:
        S = gwipc.ServiceID
        cases: list[Any] = [
            lambda: self.a.offer(S("ab\0cd"), events=1),  # was offered as "ab"
            lambda: self.a.offer(S("x", -1), events=1), lambda: self.a.offer(S("x", 65537), events=1),
            lambda: self.a.offer(S("y"), events=70000), lambda: self.a.offer(S("y"), events=1, fields=[65536]),
            lambda: self.a.offer(S("y"), events=1, geometry=gwipc.Geometry(-1, 4)),
            lambda: self.b.find("x", -1, print),
            lambda: gwipc.Node.listen(self.path("n\0.sock")),
            lambda: gwipc.Node.listen(self.path("n.sock"), socket_mode=2**40),  # was mode 0
            lambda: gwipc.Node.listen(self.path("n.sock"), max_packet=2**32 + 4096),  # was 4096
            lambda: gwipc.Node.listen(self.path("n.sock"), allow_uids=[-1]),
            lambda: gwipc.Node.listen(self.path("n.sock"), limits=gwipc.Limits(services=-1)),
            lambda: gwipc.Node.listen(self.path("n.sock"), name="a\0b"),
            lambda: self.a.dispatch(float("nan")), lambda: self.proxy.call(0, timeout=-1),
        ]
        for i, case in enumerate(cases):
            with self.subTest(i=i), self.assertRaises(ValueError) as cm:
                case()
            if not isinstance(cm.exception, (UnicodeError,)) and "timeout" not in str(cm.exception):
                self.assertIsInstance(cm.exception, gwipc.GwipcError)

    def test_endless_timeouts_mean_no_limit(self) -> None:
        # inf raised OverflowError; 1e30 s was masked to an arbitrary int64.
        for t in (float("inf"), 1e30, 10**400):
            self.assertEqual(gwipc._lib.usec(t), gwipc._lib.FOREVER)
        self.assertTrue(self.proxy.wait_available(TIMEOUT))
        pending = self.proxy.call_async(0, b"x", timeout=float("inf"))
        pump(self.a, self.b, until=pending.done)
        self.assertEqual(pending.result(0), b"r:x")

    def test_refused_shutdown_leaves_the_node_open(self) -> None:
        # shutdown marked the node closed before the library refused: the
        # C node stayed open for good (socket served, peers connected).
        for bad in (-1, "1", float("nan")):
            with self.assertRaises((TypeError, ValueError)):
                self.a.shutdown(bad)  # type: ignore[arg-type]
            self.assertFalse(self.a.closed)
        errors: list[BaseException] = []

        def in_callback() -> None:
            try:
                self.a.shutdown(1)
            except gwipc.DeadlockError as exc:
                errors.append(exc)
        self.a.call_soon(in_callback)
        pump(self.a, until=lambda: errors)
        self.assertFalse(self.a.closed)
        self.a.status()
        self.a.shutdown(1)
        self.assertTrue(self.a.closed)
        pump(self.b, until=lambda: not self.proxy.available)

    def test_a_reply_that_cannot_be_sent_fails_the_call(self) -> None:
        # The handler's return value was replied after the handler's
        # try-block: a wrong one raised, and the call was never answered.
        svc = gwipc.ServiceID("test.abuse.reply", 1, 0, "x")
        replies = iter(["a str", 5, b"x" * (1 << 20)])
        self.a.offer(svc, methods=1, on_call=lambda c: next(replies))
        p = self.b.require(svc)
        pump(self.a, self.b, until=lambda: p.available)
        for want in (TypeError, TypeError, gwipc.TooLargeError):
            pending = p.call_async(0, b"x", timeout=TIMEOUT)
            with self.assertRaises(want):
                pump(self.a, self.b, until=pending.done)
            pump(self.a, self.b, until=pending.done)
            with self.assertRaises(gwipc.AppError) as cm:
                pending.result(0)
            self.assertEqual(cm.exception.app_code, gwipc.HANDLER_FAILED)

    def test_every_done_callback_runs_when_one_raises(self) -> None:
        # The first raising callback stopped the rest (an awaiting task's
        # among them, which then never woke).
        self.assertTrue(self.proxy.wait_available(TIMEOUT))
        ran: list[str] = []
        pending = self.proxy.call_async(0, b"x", timeout=TIMEOUT)
        pending.add_done_callback(lambda p: 1 / 0)
        pending.add_done_callback(lambda p: ran.append(p.result()))
        with self.assertRaises(ZeroDivisionError):
            pump(self.a, self.b, until=pending.done)
        self.assertEqual(ran, [b"r:x"])


class Surface(TempDirTest):
    def test_objects_gwipc_makes_cannot_be_made_or_copied(self) -> None:
        # gwipc.Loan(offer, junk).buffer and gwipc.Sample(junk).tobytes() read
        # any address; a copy.copy(sample) made in the handler read the slot
        # after the delivery (SIGSEGV once the proxy closed).
        junk = types.SimpleNamespace(contents=types.SimpleNamespace(event=0, seq=0, requested=0, data=1, len=8),
                                     event=0, capacity=8, data=1)
        for cls in (gwipc.Offer, gwipc.Proxy, gwipc.Finder, gwipc.Sample, gwipc.Call, gwipc.Loan,
                    gwipc.PendingCall):
            with self.subTest(cls=cls.__name__), self.assertRaises(TypeError):
                cls(junk)
        a, b = pair(self)
        offer = a.offer(SVC, events=1)
        proxy = b.require(SVC)
        copies: list[Any] = []

        def handler(s: gwipc.Sample) -> None:
            for how in (copy.copy, copy.deepcopy, pickle.dumps):
                try:
                    copies.append(how(s))
                except TypeError:
                    copies.append("refused")
        proxy.subscribe(0, handler)
        pump(a, b, until=lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
        offer.publish(0, b"x")
        loan = offer.loan(0)
        for obj in (loan, a, offer, proxy):
            with self.assertRaises(TypeError):
                copy.copy(obj)
        loan.discard()
        pump(a, b, until=lambda: copies)
        self.assertEqual(copies, ["refused"] * 3)

    def test_trampoline_slots_are_private(self) -> None:
        # offer.call(...), pending.reply(...), finder.find(...), node.log(...)
        # were the C callbacks' entry points, public by name.
        for cls, names in ((gwipc.Node, ["fail", "destroyed", "peer_connected", "peer_disconnected", "authorize",
                                         "log"]),
                           (gwipc.Offer, ["call", "cancel", "subscribers", "update_request", "fail", "destroyed"]),
                           (gwipc.Proxy, ["availability", "suback"]), (gwipc.Finder, ["find"]),
                           (gwipc.PendingCall, ["reply", "fail", "destroyed"])):
            for name in names:
                self.assertFalse(hasattr(cls, name), f"{cls.__name__}.{name}")


class Abuse(TempDirTest):
    """One child interpreter per seed."""

    def run_seed(self, seed: int, steps: int) -> None:
        tests = Path(__file__).resolve().parent
        code = (f"import sys; sys.path.insert(0, {str(tests)!r}); import test_abuse; "
                f"sys.exit(test_abuse.drive({seed}, {steps}, {str(self.dir)!r}))")
        rc, out, err = run_python(self, code, timeout=60)
        trace = self.dir / "trace.log"
        last = trace.read_text(errors="replace").splitlines()[-25:] if trace.exists() else []
        where = f"seed {seed}, {steps} steps; last steps:\n" + "\n".join(last)
        self.assertFalse(rc < 0, f"the child died of signal {-rc}: {where}\n{err[-4000:]}")
        self.assertEqual(rc, 0, f"{out[-6000:]}\n{err[-4000:]}\n{where}")
        self.assertIn(f"ABUSE OK seed={seed}", out)
        self.assertEqual(err, "", f"stderr of a clean run must be empty: {where}")


def _add_seed_tests() -> None:
    for seed, steps in SEEDS:
        def test(self: Abuse, seed: int = seed, steps: int = steps) -> None:
            self.run_seed(seed, steps)
        test.__name__ = f"test_seed_{seed}"
        setattr(Abuse, test.__name__, test)


_add_seed_tests()


if __name__ == "__main__":
    if len(sys.argv) == 4:
        sys.exit(drive(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
    import unittest
    unittest.main()
