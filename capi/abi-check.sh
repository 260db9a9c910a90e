#!/bin/sh
# abi-check.sh HEADER LIBRARY: fails unless the functions HEADER declares
# (its GWIPC_API lines) are exactly the symbols LIBRARY exports (besides
# the version node). Run by make abi-check.
set -eu
header=$1 lib=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
grep '^GWIPC_API' "$header" | grep -oE 'gwipc_[a-z0-9_]+\(' | tr -d '(' | sort -u >"$tmp/declared"
nm -D --defined-only "$lib" | awk '$3 != "GWIPC_1" { sub(/@.*/, "", $3); print $3 }' | sort -u >"$tmp/exported"
if ! diff "$tmp/declared" "$tmp/exported" >"$tmp/diff"; then
	echo "abi-check: $header and $lib differ (< declared only, > exported only):"
	grep '^[<>]' "$tmp/diff"
	exit 1
fi
echo "abi-check: the $(wc -l <"$tmp/declared") functions of $header are exactly the exports of $lib"
