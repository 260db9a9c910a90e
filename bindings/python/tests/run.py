"""Runs every test here (unittest) and ends with one plain summary line,
"py-test: N passed, N failed, N skipped". Exit status 1 on any failure.

    python3 bindings/python/tests/run.py [-v] [TEST ...]
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]


class _Result(unittest.TextTestResult):
    """Counts the tests that passed (testsRun differs between versions)."""

    passed = 0

    def addSuccess(self, test: unittest.TestCase) -> None:  # noqa: N802 - unittest's name
        super().addSuccess(test)
        self.passed += 1


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "-v"]
    loader = unittest.TestLoader()
    suite = loader.loadTestsFromNames(args) if args else loader.discover(str(HERE), top_level_dir=str(HERE))
    runner = unittest.TextTestRunner(verbosity=2 if "-v" in sys.argv else 1, resultclass=_Result)
    result = runner.run(suite)
    assert isinstance(result, _Result)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.passed
    print(f"py-test: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
