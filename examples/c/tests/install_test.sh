#!/bin/sh
# install_test.sh MAKE CC - make install into a temporary DESTDIR, then build
# two examples against the installed copy with `pkg-config --cflags --libs
# gwipc` (nothing from the source tree on the include or library path) and
# run them: sensor_daemon serves, status_query asks it.
set -eu
make=$1 cc=$2
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$tmp"' EXIT
fail() { echo "install test: FAIL: $*" >&2; exit 1; }

root=$tmp/root
$make --no-print-directory install DESTDIR="$root" PREFIX=/usr >/dev/null
lib=$root/usr/lib
[ -f "$lib/libgwipc.so.1" ] && [ ! -L "$lib/libgwipc.so.1" ] || fail "no file $lib/libgwipc.so.1"
[ "$(readlink "$lib/libgwipc.so")" = libgwipc.so.1 ] || fail "libgwipc.so is not a symlink to libgwipc.so.1"
[ -f "$root/usr/include/gwipc.h" ] || fail "no header"
[ -f "$lib/pkgconfig/gwipc.pc" ] || fail "no gwipc.pc"

export PKG_CONFIG_LIBDIR="$lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$root"
unset PKG_CONFIG_PATH
flags=$(pkg-config --cflags --libs gwipc) || fail "pkg-config gwipc"
case "$flags" in *"-I$root/usr/include"*"-L$lib"*"-lgwipc"*) ;; *) fail "pkg-config gave: $flags" ;; esac
want=$(sed -n 's/^#define GWIPC_VERSION_STRING "\(.*\)"/\1/p' include/gwipc.h)
[ "$(pkg-config --modversion gwipc)" = "$want" ] || fail "modversion $(pkg-config --modversion gwipc), header $want"

for ex in sensor_daemon status_query; do
    # shellcheck disable=SC2086 # $flags is a list of flags
    $cc -std=c99 -Wall -Wextra -Werror -pedantic -Iexamples/c -o "$tmp/$ex" "examples/c/$ex.c" $flags ||
        fail "building $ex against the installed copy"
done
export LD_LIBRARY_PATH="$lib"
ldd "$tmp/sensor_daemon" | grep -q "libgwipc.so.1 => $lib/libgwipc.so.1" || fail "not linked to the installed copy"

timeout 30 "$tmp/sensor_daemon" -s "$tmp/s.sock" -S "$tmp/status.sock" -i 20 > "$tmp/daemon.out" &
pid=$!
out=
for _ in $(seq 50); do # up to 5 s for it to start and publish
    if out=$(timeout 10 "$tmp/status_query" -s "$tmp/status.sock" readings 2>/dev/null) &&
        case "$out" in [1-9]*" readings published"*) true ;; *) false ;; esac; then break; fi
    sleep 0.1
done
case "$out" in *" readings published"*) ;; *) fail "status_query readings: '$out'" ;; esac
kill -TERM $pid
status=0
wait $pid || status=$?
pid=
[ $status -eq 0 ] || fail "sensor_daemon exited $status after SIGTERM"
grep -q '^done: ' "$tmp/daemon.out" || fail "sensor_daemon did not finish cleanly"
echo "install test: ok (pkg-config: $flags)"
