"""Shared test helpers: paths, temporary directories, bounded waits,
processes that are always reaped."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import gwipc

PY_DIR = Path(__file__).resolve().parents[1]  # bindings/python
ROOT = PY_DIR.parents[1]
BUILD = Path(os.environ.get("GWIPC_BUILD_DIR", ROOT / "build"))
EXAMPLES = BUILD / "examples"
GO_TOOL = BUILD / "gwipc"

#: The longest any single wait in these tests may take.
TIMEOUT = 10.0

SENSOR = gwipc.ServiceID("example.sensor", 1, 0, "kitchen")  # examples/c/sensor.h
CALC = gwipc.ServiceID("example.calc", 1, 0, "main")  # examples/c/calc.h
DEMO = gwipc.ServiceID("demo.sensor", 1, 0, "living-room")  # cmd/gwipc/demo.go


class TempDirTest(unittest.TestCase):
    """A test with a fresh directory (self.dir) for sockets."""

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gwipc-py-"))
        self.addCleanup(shutil.rmtree, self.dir, True)

    def path(self, name: str) -> str:
        return str(self.dir / name)


def pump(*nodes: gwipc.Node, until: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Dispatches the nodes in turn (on this thread, each waiting a few ms
    inside the library) until until() or timeout (then fails)."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        for n in nodes:
            n.dispatch(0.005 if len(nodes) > 1 else 0.05)


def pair(test: TempDirTest, **listen: Any) -> tuple[gwipc.Node, gwipc.Node]:
    """A listener and a dialler connected to it, closed at cleanup."""
    sock = test.path("pair.sock")
    a = gwipc.Node.listen(sock, name="provider", **listen)
    test.addCleanup(a.close)
    b = gwipc.Node.dial(sock, name="consumer")
    test.addCleanup(b.close)
    return a, b


def wait_until(cond: Callable[[], bool], timeout: float = TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.01)


class Proc:
    """A child process whose output is read line by line (unbuffered, so
    select() tells the truth); killed and reaped at cleanup."""

    def __init__(self, test: unittest.TestCase, argv: Iterable[str], env: dict[str, str] | None = None,
                 cwd: str | None = None) -> None:
        self.argv = [str(a) for a in argv]
        self.p = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                                  bufsize=0)
        self.lines: list[str] = []
        self._partial = b""
        self._eof = False
        test.addCleanup(self.kill)

    def _read(self, timeout: float) -> None:
        """Reads what arrives within timeout into self.lines."""
        assert self.p.stdout is not None
        if self._eof or not select.select([self.p.stdout], [], [], timeout)[0]:
            return
        chunk = os.read(self.p.stdout.fileno(), 65536)
        if not chunk:
            self._eof = True
        *done, self._partial = (self._partial + chunk).split(b"\n")
        self.lines += [line.decode(errors="replace") for line in done]

    def has_line(self, pred: Callable[[str], bool]) -> bool:
        """Whether a line read so far, or ready to read now, matches pred."""
        self._read(0)
        return any(pred(line) for line in self.lines)

    def wait_line(self, pred: Callable[[str], bool], timeout: float = TIMEOUT) -> str:
        """The first output line matching pred, waiting up to timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if pred(line):
                    return line
            left = deadline - time.monotonic()
            if left <= 0 or self._eof:
                raise AssertionError(f"{self.argv[0]}: no matching line within {timeout} s "
                                     f"(exit {self.p.poll()}); got {self.lines}")
            self._read(left)

    def finish(self, timeout: float = TIMEOUT) -> tuple[int, str, str]:
        """Waits for the exit (killing it after timeout): (code, stdout, stderr)."""
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
            raise AssertionError(f"{self.argv} did not exit within {timeout} s: {out!r}{err!r}") from None
        text = (self._partial + out).decode(errors="replace")
        return self.p.returncode, "\n".join(self.lines + [text]), err.decode(errors="replace")

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.communicate()


def run_python(test: unittest.TestCase, code: str, *args: str, timeout: float = 3 * TIMEOUT,
               env: dict[str, str] | None = None, cwd: str | None = None) -> tuple[int, str, str]:
    """Runs code in a fresh interpreter (this one's, with gwipc on the
    path): (exit code, stdout, stderr). A crash is a failed test, not a
    dead runner; a hang is killed after timeout."""
    full_env = dict(os.environ if env is None else env)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PY_DIR), full_env.get("PYTHONPATH", "")]))
    p = Proc(test, [sys.executable, "-c", textwrap.dedent(code), *args], env=full_env, cwd=cwd)
    return p.finish(timeout)


def need(path: Path) -> None:
    """Skips the test when a build product is missing (make build)."""
    if not path.exists():
        raise unittest.SkipTest(f"{path} not built (make build c-examples)")
