"""Peer processes for the cross-process tests (multiprocessing targets:
importable, top level)."""

from __future__ import annotations

import multiprocessing.synchronize
import threading
import time
from multiprocessing.queues import Queue
from typing import Any

import gwipc

SVC = gwipc.ServiceID("test.procs", 1, 2, "spawned")


def provider(sock: str, events: int, done: multiprocessing.synchronize.Event) -> None:
    """Offers SVC (event 0, field 1, method 0 = upper, app error 9 for
    b""); once subscribed publishes `events` events, then runs until done."""
    with gwipc.Node.listen(sock, name="py-provider") as node:
        subscribed = threading.Event()

        def on_call(call: gwipc.Call) -> bytes | None:
            if not call.data:
                call.fail(9, b"empty")
                return None
            return call.data.upper()

        offer = node.offer(SVC, events=2, methods=1, fields=[1], on_call=on_call,
                           on_subscription=lambda ev, on: on and ev == 0 and subscribed.set())
        offer.publish(1, b"field-value")
        deadline = time.monotonic() + 20
        while not subscribed.is_set() and time.monotonic() < deadline:
            node.dispatch(0.05)
        for i in range(events):
            offer.publish(0, b"event-%d" % i, wait=5)
        while not done.is_set() and time.monotonic() < deadline:
            node.dispatch(0.05)
        node.shutdown(1.0)


def consumer(sock: str, events: int, out: Queue) -> None:
    """Requires SVC, takes `events` events and the field, calls method 0,
    and reports what it got on `out`."""
    with gwipc.Node.dial(sock, name="py-consumer") as node:
        proxy = node.require(SVC)
        got: list[Any] = []
        proxy.subscribe(0, lambda s: got.append((s.seq, s.tobytes())))
        field: list[bytes] = []
        proxy.subscribe(1, lambda s: field.append(s.tobytes()), initial_value=True)
        reply = proxy.call(0, b"spawned", timeout=10)
        deadline = time.monotonic() + 10
        while (len(got) < events or not field) and time.monotonic() < deadline:
            node.dispatch(0.05)
        out.put({"events": got, "field": field, "reply": reply})
