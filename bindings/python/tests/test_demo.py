"""`make run`: the C sensor daemon, this package's example consumer, a Go
consumer and `gwipc status`, orchestrated by `gwipc demo`."""

from __future__ import annotations

import os
import re
import sys

from helpers import EXAMPLES, GO_TOOL, PY_DIR, Proc, TempDirTest, need


class Demo(TempDirTest):
    def test_system_demo(self) -> None:
        need(GO_TOOL)
        need(EXAMPLES / "sensor_daemon")
        env = dict(os.environ, PYTHONPATH=str(PY_DIR))
        demo = Proc(self, [GO_TOOL, "demo", "--sensor-daemon", EXAMPLES / "sensor_daemon", "--python", sys.executable,
                           "--python-consumer", PY_DIR / "examples" / "sensor_consumer.py"], env=env)
        rc, out, err = demo.finish(timeout=40)
        self.assertEqual((rc, err), (0, ""), out)
        lines = [line for line in out.splitlines() if line]
        self.assertTrue(all(re.match(r"\[(C |Py|Go) [\w ]+ pid \d+\] ", line) for line in lines), lines)
        for want in (r"\[Py consumer +pid \d+\] set_setpoint\(22.5\) -> old=20.0",
                     r"\[Py consumer +pid \d+\] set_setpoint\(hot\) -> application error 1",
                     r"\[Py consumer +pid \d+\] done: 5 readings",
                     r"\[Go consumer +pid \d+\] done: 7 readings",
                     r"\[C  sensor_daemon +pid \d+\] setpoint changed to 22.5",
                     r"\[Go gwipc status +pid \d+\]   \d+ +py-consumer",
                     r"\[Go demo +pid \d+\] all four processes exited cleanly"):
            self.assertRegex(out, want)
