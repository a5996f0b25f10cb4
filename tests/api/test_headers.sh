#!/bin/sh
# SPDX-License-Identifier: MIT
# Every public header compiles alone, as C11 -pedantic and as C++17 -pedantic, without
# warnings: a user can include any one of them first, from C or C++.
# usage: test_headers.sh CC CXX INCLUDE_DIR GENERATED_INCLUDE_DIR
set -u
cc=$1 cxx=$2 inc=$3 geninc=$4
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0 n=0
headers=$(cd "$inc" && find . -name '*.h' | sed 's|^\./||' | sort)
headers="$headers rtioreq/version.h"
warn="-Wall -Wextra -Werror -pedantic-errors"
for h in $headers; do
	n=$((n + 1))
	printf '#include "%s"\nint rtioreq_header_test_%d;\n' "$h" "$n" >"$tmp/t.c"
	cp "$tmp/t.c" "$tmp/t.cpp"
	if ! "$cc" -std=c11 $warn -I"$inc" -I"$geninc" -c "$tmp/t.c" -o "$tmp/t.o" \
		>"$tmp/err" 2>&1; then
		echo "FAIL (C11): $h"; cat "$tmp/err"; fail=1
	fi
	if ! "$cxx" -std=c++17 $warn -I"$inc" -I"$geninc" -c "$tmp/t.cpp" -o "$tmp/t.o" \
		>"$tmp/err" 2>&1; then
		echo "FAIL (C++17): $h"; cat "$tmp/err"; fail=1
	fi
done
[ "$n" -gt 10 ] || { echo "FAIL: only $n headers found under $inc"; exit 1; }
[ $fail -eq 0 ] && echo "ok: $n headers compile alone as C11 and C++17 (-pedantic-errors)"
exit $fail
