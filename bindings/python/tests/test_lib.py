"""The ctypes layer against the header and the library: every function
declared, struct layouts, the error list, loading."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess

import gwipc
from gwipc import _errors, _lib

from helpers import BUILD, ROOT, TempDirTest, run_python

HEADER = (ROOT / "include" / "gwipc.h").read_text()

STRUCTS = ["gwipc_error", "gwipc_service_id", "gwipc_geometry", "gwipc_peer_info", "gwipc_limits", "gwipc_rule",
           "gwipc_call", "gwipc_offer_params", "gwipc_loan", "gwipc_sample", "gwipc_reply", "gwipc_proxy_params",
           "gwipc_find_event"]


class Header(TempDirTest):
    def test_every_declared_function_is_in_the_signature_table(self) -> None:
        declared = set(re.findall(r"GWIPC_API\s+[^;(]*?\b(gwipc_\w+)\s*\(", HEADER))
        self.assertGreater(len(declared), 60)  # the pattern found them
        self.assertEqual(declared, set(_lib.SIGNATURES))

    def test_error_list_matches_the_header_and_the_library(self) -> None:
        listed = [(n, int(v), t) for n, v, t in re.findall(r'X\((GWIPC_\w+), (-?\d+), "([^"]*)"\)', HEADER)]
        self.assertEqual(listed, list(_errors.CODES))
        lib = _lib.lib()
        for name, value, text in _errors.CODES:
            self.assertEqual(lib.gwipc_error_name(value).decode(), name)
            self.assertEqual(lib.gwipc_strerror(value).decode(), text)
            if value:
                cls = gwipc.exception_class(value)
                self.assertIs(getattr(gwipc, cls.__name__), cls)
                self.assertEqual((cls.code, cls.name), (value, name))
        self.assertTrue(issubclass(gwipc.TooLargeError, ValueError))
        self.assertTrue(issubclass(gwipc.TimeoutError, TimeoutError))
        self.assertTrue(issubclass(gwipc.PermissionDeniedError, PermissionError))
        self.assertTrue(issubclass(gwipc.UnknownEventError, LookupError))

    def test_struct_layouts_match_the_c_compiler(self) -> None:
        cc = shutil.which("cc")
        if cc is None:
            self.skipTest("no C compiler")
        lines = []
        for s in STRUCTS:
            fields = [f[0] for f in getattr(_lib, s)._fields_]
            lines.append(f'printf("{s} %zu", sizeof({s}));')
            lines += [f'printf(" %zu", offsetof({s}, {f}));' for f in fields]
            lines.append('printf("\\n");')
        src = "#include <stddef.h>\n#include <stdio.h>\n#include <gwipc.h>\nint main(void) {\n" + "\n".join(
            lines) + "\nreturn 0; }\n"
        tmp = self.dir
        (tmp / "layout.c").write_text(src)
        subprocess.run([cc, "-I", str(ROOT / "include"), "-o", str(tmp / "layout"), str(tmp / "layout.c")],
                       check=True)
        out = subprocess.run([str(tmp / "layout")], check=True, capture_output=True, text=True).stdout
        want = []
        for s in STRUCTS:
            t = getattr(_lib, s)
            want.append(" ".join([s, str(ctypes.sizeof(t))] + [str(getattr(t, f[0]).offset) for f in t._fields_]))
        self.assertEqual(out.splitlines(), want)

    def test_versions(self) -> None:
        self.assertEqual(gwipc.__version__, re.search(r'GWIPC_VERSION_STRING "([^"]+)"', HEADER).group(1))
        self.assertEqual(gwipc.library_version(), gwipc.__version__)


class Loading(TempDirTest):
    def test_import_does_not_load_the_library(self) -> None:
        rc, out, err = run_python(self, """
import gwipc, gwipc.aio
print(gwipc._lib.loaded(), open("/proc/self/maps").read().count("libgwipc"))
""")
        self.assertEqual((rc, out.strip(), err), (0, "False 0", ""))

    def test_the_error_lists_every_path_tried(self) -> None:
        env = dict(os.environ, GWIPC_LIBRARY=self.path("missing.so"), LD_LIBRARY_PATH=self.path("nowhere"))
        rc, out, err = run_python(self, """
import gwipc
from gwipc import _lib
_lib._candidates = (lambda orig: lambda: [c for c in orig() if "build" not in c[0] and "_native" not in c[0]])(
    _lib._candidates)
try:
    gwipc.load_library()
except gwipc.LibraryNotFoundError as exc:
    print(exc)
    print(isinstance(exc, ImportError), [p for p, _ in exc.tried])
""", env=env)
        self.assertEqual((rc, err), (0, ""), out)
        self.assertIn("missing.so: no such file", out)
        self.assertIn("libgwipc.so.1:", out)
        self.assertIn("True", out)

    def test_env_override_and_a_second_copy_is_refused(self) -> None:
        copy = self.path("libgwipc.so.1")
        shutil.copy(BUILD / "libgwipc.so.1", copy)
        env = dict(os.environ, GWIPC_LIBRARY=copy)
        rc, out, err = run_python(self, f"""
import gwipc
print(gwipc.load_library())
try:
    gwipc.load_library({str(BUILD / "libgwipc.so.1")!r})
except gwipc.GwipcError as exc:
    print("refused:", exc)
print(gwipc.load_library({copy!r}))
""", env=env)
        self.assertEqual((rc, err), (0, ""), out)
        first, refused, again = out.strip().split("\n")
        self.assertEqual(first, copy)
        self.assertIn("already loaded", refused)
        self.assertEqual(again, copy)
