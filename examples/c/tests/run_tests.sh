#!/bin/sh
# run_tests.sh DIR TEST... - runs each C test binary under a time limit and
# reports which failed. A test that outlives GWT_SUITE_TIMEOUT_S (default
# 300) is killed and counts as failed: every wait in the tests is bounded,
# so a hang is a bug.
set -u
dir=$1
shift
limit=${GWT_SUITE_TIMEOUT_S:-300}
failed=
for t in "$@"; do
    echo "=== $t"
    timeout -k 5 "$limit" "$dir/$t"
    rc=$?
    [ $rc -eq 124 ] && echo "=== $t: killed after ${limit}s (hang)"
    [ $rc -ne 0 ] && failed="$failed $t"
done
if [ -n "$failed" ]; then
    echo "C tests FAILED:$failed"
    exit 1
fi
echo "C tests: all passed"
