#!/usr/bin/env python3
"""A Python consumer of the C sensor daemon (examples/c/sensor_daemon.c).

It finds "example.sensor" at the daemon's socket, subscribes to its readings
(event 0) and to its setpoint field (event 1, whose current value arrives
at once), calls its set_setpoint method (0) twice (a good value and one the
daemon refuses with an application error), prints what it gets and exits
0 after --readings readings (1 if --timeout seconds pass first).

    PYTHONPATH=bindings/python python3 bindings/python/examples/sensor_consumer.py --socket /tmp/sensor.sock

`make run` runs it next to the daemon and a Go consumer (gwipc demo).
"""

from __future__ import annotations

import argparse
import sys
import time

import gwipc

READING, SETPOINT = 0, 1  # events, as in examples/c/sensor.h
SET_SETPOINT = 0  # method: "22.5" -> "old=20.0"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--socket", required=True, help="the sensor daemon's socket")
    ap.add_argument("--readings", type=int, default=5, help="readings to wait for")
    ap.add_argument("--setpoint", default="22.5", help="the setpoint to set")
    ap.add_argument("--timeout", type=float, default=15.0, help="give up after this many seconds")
    args = ap.parse_args()
    say = lambda *a: print(*a, flush=True)  # noqa: E731 - one line at a time, also into a pipe
    deadline = time.monotonic() + args.timeout

    with gwipc.Node.dial(args.socket, name="py-consumer") as node:
        found: list[gwipc.FindEvent] = []
        node.find("example.sensor", 1, lambda ev: ev.available and found.append(ev))
        while not found:  # dispatch runs the callbacks, on this thread
            if time.monotonic() > deadline:
                say("no example.sensor found")
                return 1
            node.dispatch(0.1)
        service = found[0].service
        say(f"found {service} at peer {found[0].peer}")

        proxy = node.require(service)
        if not proxy.wait_available(timeout=5):  # drives the node until bound
            say("example.sensor did not become available")
            return 1
        # Two calls without waiting: a good setpoint and one the daemon refuses.
        good = proxy.call_async(SET_SETPOINT, args.setpoint.encode(), timeout=5)
        bad = proxy.call_async(SET_SETPOINT, b"hot", timeout=5)
        readings: list[float] = []
        proxy.subscribe(SETPOINT, lambda s: say(f"setpoint field: {s.data.tobytes().decode()}"), initial_value=True)
        proxy.subscribe(READING, lambda s: (readings.append(float(s.data.tobytes())),
                                            say(f"reading #{s.seq}: {s.data.tobytes().decode()} C")))
        # result() waits for the reply, dispatching the node (callbacks run meanwhile).
        say(f"set_setpoint({args.setpoint}) -> {good.result(timeout=5).decode()}")
        try:
            bad.result(timeout=5)
        except gwipc.AppError as exc:
            say(f"set_setpoint(hot) -> application error {exc.app_code}: {exc.data.decode()}")

        while len(readings) < args.readings:
            if time.monotonic() > deadline:
                say(f"only {len(readings)} readings within {args.timeout} s")
                return 1
            node.dispatch(0.1)
        say(f"done: {len(readings)} readings, mean {sum(readings) / len(readings):.2f} C")
        node.shutdown(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
