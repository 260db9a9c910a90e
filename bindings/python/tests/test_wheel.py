"""The wheel: built as `make wheel` builds it, installed offline into a
fresh virtual environment, used from outside the tree with nothing set."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from helpers import BUILD, PY_DIR, TempDirTest, need

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-wheel (the Makefile installs it)

USE = """
import os, sys, time
import gwipc
svc = gwipc.ServiceID("test.wheel", 1, 0, "venv")
sock = os.path.join(sys.argv[1], "w.sock")
a = gwipc.Node.listen(sock)
b = gwipc.Node.dial(sock)
offer = a.offer(svc, events=1)
proxy = b.require(svc)
got = []
proxy.subscribe(0, lambda s: got.append(s.tobytes()))
end = time.monotonic() + 10
while proxy.subscription_state(0) != gwipc.SubscriptionState.ACTIVE and time.monotonic() < end:
    a.dispatch(0.01); b.dispatch(0.01)
offer.publish(0, b"from the wheel")
while not got and time.monotonic() < end:
    a.dispatch(0.01); b.dispatch(0.01)
print(got[0].decode(), gwipc.library_version(), gwipc._lib._loaded_path)
"""


class Wheel(TempDirTest):
    def test_offline_install_into_a_fresh_venv(self) -> None:
        need(BUILD / "libgwipc.so.1")
        if subprocess.run([SYSTEM_PYTHON, "-c", "import wheel"], capture_output=True).returncode:
            self.skipTest("Debian's python3-wheel is not installed (make py-deps)")
        out = subprocess.run([SYSTEM_PYTHON, str(PY_DIR / "build_wheel.py"), "--lib", str(BUILD / "libgwipc.so.1"),
                              "--out", str(self.dir / "dist")], check=True, capture_output=True, text=True,
                             timeout=120).stdout
        whl = Path(out.strip())
        self.assertRegex(whl.name, r"^gwipc-\d+\.\d+\.\d+-py3-none-linux_\w+\.whl$")
        with zipfile.ZipFile(whl) as z:
            wheel_file = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))).decode()
            self.assertIn("gwipc/_native/libgwipc.so.1", z.namelist())
        self.assertIn("Root-Is-Purelib: false", wheel_file)
        venv = self.dir / "venv"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GWIPC_", "VIRTUAL_ENV"))}
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env, timeout=120)
        py = venv / "bin" / "python"
        subprocess.run([py, "-m", "pip", "install", "--no-index", "--quiet", str(whl)], check=True, env=env,
                       timeout=120)
        away = self.dir / "elsewhere"
        away.mkdir()
        r = subprocess.run([py, "-c", USE, str(away)], cwd=away, env=env, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        words = r.stdout.split()
        self.assertEqual(words[:3], ["from", "the", "wheel"])
        loaded = words[4]
        self.assertTrue(loaded.startswith(str(venv)), loaded)
        self.assertTrue(loaded.endswith("gwipc/_native/libgwipc.so.1"), loaded)
