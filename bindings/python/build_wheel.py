"""Packs the gwipc wheel: the package, the library bundled inside it
(gwipc/_native/libgwipc.so.1), and a dist-info written from pyproject.toml.

    /usr/bin/python3 bindings/python/build_wheel.py --lib build/libgwipc.so.1 --out build

The tag is py3-none-linux_<arch> (the library does not use the CPython ABI,
but it is a Linux binary) and Root-Is-Purelib is false. `python3 -m wheel
pack` (Debian's python3-wheel) writes RECORD and names the file. Prints the
wheel's path.
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent


def version() -> str:
    m = re.search(r'^__version__ = "([^"]+)"', (HERE / "gwipc" / "__init__.py").read_text(), re.M)
    if not m:
        sys.exit("build_wheel: no __version__ in gwipc/__init__.py")
    return m.group(1)


def metadata(project: dict, ver: str) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {ver}",
             f"Summary: {project['description']}", f"Requires-Python: {project['requires-python']}",
             f"License: {project['license']['text']}"]
    lines += [f"Classifier: {c}" for c in project.get("classifiers", [])]
    readme = (HERE / project["readme"]).resolve()
    lines += ["Description-Content-Type: text/markdown", "", readme.read_text()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", required=True, type=Path, help="libgwipc.so.1 to bundle")
    ap.add_argument("--out", required=True, type=Path, help="directory for the wheel")
    args = ap.parse_args()
    project = tomllib.loads((HERE / "pyproject.toml").read_text())["project"]
    ver = version()
    tag = f"py3-none-linux_{platform.machine()}"
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / f"gwipc-{ver}"
        pkg = stage / "gwipc"
        shutil.copytree(HERE / "gwipc", pkg, ignore=shutil.ignore_patterns("__pycache__", "_native"))
        (pkg / "_native").mkdir()
        shutil.copy2(args.lib, pkg / "_native" / "libgwipc.so.1")
        info = stage / f"gwipc-{ver}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(metadata(project, ver))
        (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nGenerator: gwipc build_wheel.py\n"
                                    f"Root-Is-Purelib: false\nTag: {tag}\n")
        args.out.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "wheel", "pack", str(stage), "-d", str(args.out)], check=True,
                       stdout=subprocess.DEVNULL)
    print(args.out / f"gwipc-{ver}-{tag}.whl")


if __name__ == "__main__":
    main()
