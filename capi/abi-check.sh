#!/bin/sh
# abi-check.sh HEADER LIBRARY CAPIDIR: fails unless
#  - the functions HEADER declares (its GWIPC_API lines) are exactly the
#    symbols LIBRARY exports (besides the version node),
#  - CAPIDIR/guard.c is what gen-guard.sh makes of HEADER now,
#  - the Go implementations CAPIDIR exports (//export capi_*) are exactly
#    the ones guard.c calls.
# Run by make abi-check (and so by make test).
set -eu
header=$1 lib=$2 dir=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# same WHAT FILE1 FILE2: the two sorted lists are equal, else say how not.
same() {
	if ! diff "$2" "$3" >"$tmp/diff"; then
		echo "abi-check: $1 (< first only, > second only):"
		grep '^[<>]' "$tmp/diff"
		fail=1
	fi
}

grep '^GWIPC_API' "$header" | grep -oE 'gwipc_[a-z0-9_]+\(' | tr -d '(' | sort -u >"$tmp/declared"
nm -D --defined-only "$lib" | awk '$3 != "GWIPC_1" { sub(/@.*/, "", $3); print $3 }' | sort -u >"$tmp/exported"
same "$header declares other functions than $lib exports" "$tmp/declared" "$tmp/exported"

sh "$dir/gen-guard.sh" "$header" "$dir/errors.c" >"$tmp/guard.c"
if ! cmp -s "$tmp/guard.c" "$dir/guard.c"; then
	echo "abi-check: $dir/guard.c is not what gen-guard.sh makes of $header: run make guard"
	fail=1
fi

grep -ho '^//export capi_[a-z0-9_]*' "$dir"/*.go | sed 's#^//export ##' | sort -u >"$tmp/go"
grep -oE '\bcapi_[a-z0-9_]+\(' "$dir/guard.c" | tr -d '(' | grep -vx 'capi_forked_error' | sort -u >"$tmp/called"
same "the Go exports of $dir differ from what guard.c calls" "$tmp/go" "$tmp/called"

[ $fail -eq 0 ] || exit 1
echo "abi-check: the $(wc -l <"$tmp/declared") functions of $header are exactly the exports of $lib; guard.c is current"
