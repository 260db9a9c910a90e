"""What must never crash or hang the interpreter, each run in a child
interpreter so that a crash is a failed test, not a dead runner: views
past release and close, interpreter exit with live objects, fork, signals."""

from __future__ import annotations

import os
import signal
import sys
import time
import unittest

from helpers import PY_DIR, TIMEOUT, Proc, TempDirTest, run_python

# A provider and a consumer in the child; `got` collects samples.
PAIR = """
import gc, os, select, sys, time
import gwipc
svc = gwipc.ServiceID("test.safety", 1, 0, "x")
sock = sys.argv[1]
a = gwipc.Node.listen(sock)
b = gwipc.Node.dial(sock)
offer = a.offer(svc, events=1)
proxy = b.require(svc)

def pump(until, timeout=10):
    end = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < end, "timed out"
        select.select([a.fileno(), b.fileno()], [], [], 0.05)
        a.dispatch(0); b.dispatch(0)
"""


class ChildTest(TempDirTest):
    def assertPrints(self, code: str, want: str, *args: str) -> None:  # noqa: N802 - unittest style
        """code, run in a child interpreter, exits 0, prints want and
        nothing on stderr."""
        rc, out, err = run_python(self, code, *args)
        self.assertEqual((rc, out.strip(), err), (0, want, ""))


class Views(ChildTest):
    def test_view_escaping_the_handler_stays_readable_past_close(self) -> None:
        code = PAIR + """
escaped = []
proxy.subscribe(0, lambda s: escaped.append(s.data[2:]))    # a slice, no keep()
pump(lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
offer.publish(0, b"escaped-payload")
pump(lambda: escaped)
proxy.close(); offer.close(); b.close(); a.close()
del proxy, offer, a, b
gc.collect()
print(bytes(escaped[0]))
"""
        self.assertPrints(code, "b'caped-payload'", self.path("v.sock"))

    def test_views_of_a_released_sample_stay_readable_past_close(self) -> None:
        code = PAIR + """
kept = []
proxy.subscribe(0, lambda s: kept.append(s.keep()))
pump(lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
offer.publish(0, b"kept-payload")
pump(lambda: kept)
s = kept.pop()
view = s.data
sl = view[5:]
s.release()
try:
    s.data
except gwipc.BadHandleError:
    print("data after release raises")
a.close(); b.close()
del s, proxy, offer, a, b, view
gc.collect()
print(bytes(sl))
"""
        rc, out, err = run_python(self, code, self.path("k.sock"))
        self.assertEqual((rc, out.strip().split("\n"), err), (0, ["data after release raises", "b'payload'"], ""))

    def test_loan_view_past_offer_and_node_close_stays_writable(self) -> None:
        code = PAIR + """
loan = offer.loan(0)
buf = loan.buffer
buf[:4] = b"abcd"
offer.close(); a.close(); b.close()
del loan, offer, a
gc.collect()
buf[4:8] = b"efgh"
print(bytes(buf[:8]))
del buf
gc.collect()
print("done")
"""
        rc, out, err = run_python(self, code, self.path("l.sock"))
        self.assertEqual((rc, err), (0, ""), out)
        self.assertEqual(out.split(), ["b'abcdefgh'", "done"])

    def test_sample_data_cannot_be_written(self) -> None:
        code = PAIR + """
out = []
def handler(s):
    try:
        s.data[0] = 0
    except TypeError:
        out.append("read-only")
    if sys.version_info >= (3, 12):
        try:
            memoryview(s.data.obj)
        except TypeError:
            out.append("no writable re-export")
    else:
        out.append("no writable re-export")  # documented residual risk before 3.12
proxy.subscribe(0, handler)
pump(lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
offer.publish(0, b"x")
pump(lambda: len(out) == 2)
print(out)
"""
        rc, out, err = run_python(self, code, self.path("r.sock"))
        self.assertEqual((rc, err), (0, ""), out)
        self.assertIn("['read-only', 'no writable re-export']", out)


class Exit(ChildTest):
    def test_interpreter_exit_with_everything_open(self) -> None:
        code = PAIR + """
kept = []
proxy.subscribe(0, lambda s: kept.append(s.keep()))
pending_calls = []
pump(lambda: proxy.subscription_state(0) == gwipc.SubscriptionState.ACTIVE)
offer.publish(0, b"x")
pump(lambda: kept)
loan = offer.loan(0)
view = kept[0].data
cycle = [a, b, offer, proxy, loan, view]
cycle.append(cycle)
print("exiting")
"""
        t0 = time.monotonic()
        self.assertPrints(code, "exiting", self.path("e.sock"))
        self.assertLess(time.monotonic() - t0, 5)

    def test_exit_while_another_thread_runs_a_node(self) -> None:
        code = PAIR + """
import threading
threading.Thread(target=a.run, daemon=True).start()
threading.Thread(target=b.run, daemon=True).start()
proxy.subscribe(0, lambda s: None)
time.sleep(0.2)
print("exiting")
"""
        self.assertPrints(code, "exiting", self.path("t.sock"))


class Fork(ChildTest):
    def test_fork_after_load_fails_clearly_in_the_child(self) -> None:
        code = """
import os, sys, time, warnings
import gwipc
node = gwipc.Node.listen(sys.argv[1])
warnings.simplefilter("ignore", DeprecationWarning)  # 3.12: forking a multi-threaded process, on purpose
pid = os.fork()
if pid == 0:
    t0 = time.monotonic()
    try:
        node.dispatch(0)
        os._exit(3)
    except gwipc.ForkedError as exc:
        msg = str(exc)
    try:
        gwipc.Node.listen(sys.argv[1] + "2")
        os._exit(4)
    except gwipc.ForkedError:
        pass
    os._exit(0 if "spawn" in msg and time.monotonic() - t0 < 1 else 5)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
node.close()
"""
        self.assertPrints(code, "child 0", self.path("f.sock"))

    def test_import_then_fork_without_a_node_works(self) -> None:
        code = """
import os, sys
import gwipc
assert not gwipc._lib.loaded()
pid = os.fork()
if pid == 0:
    node = gwipc.Node.listen(sys.argv[1])   # loads the library in the child
    node.dispatch(0)
    node.close()
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status), "parent loaded", gwipc._lib.loaded())
"""
        self.assertPrints(code, "child 0 parent loaded False", self.path("g.sock"))


class Signals(ChildTest):
    def test_sigint_during_run_raises_keyboard_interrupt_promptly(self) -> None:
        code = """
import sys, time
import gwipc
node = gwipc.Node.listen(sys.argv[1])
print("running", flush=True)
try:
    node.run(timeout=30)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""
        env = dict(os.environ, PYTHONPATH=str(PY_DIR))
        p = Proc(self, [sys.executable, "-c", code, self.path("s.sock")], env=env)
        p.wait_line(lambda line: line == "running")
        time.sleep(0.3)
        t0 = time.monotonic()
        p.p.send_signal(signal.SIGINT)
        p.wait_line(lambda line: line == "interrupted")
        self.assertLess(time.monotonic() - t0, 0.5)
        rc, _, err = p.finish()
        self.assertEqual((rc, err), (0, ""))

    def test_no_signal_handler_is_installed(self) -> None:
        code = """
import signal, sys
import gwipc
sigs = [s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)]
before = {s: signal.getsignal(s) for s in sigs}
node = gwipc.Node.listen(sys.argv[1])
after = {s: signal.getsignal(s) for s in sigs}
node.close()
print(before == after)
"""
        self.assertPrints(code, "True", self.path("h.sock"))


if __name__ == "__main__":
    unittest.main()
