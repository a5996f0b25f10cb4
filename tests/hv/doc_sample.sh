#!/bin/sh
# SPDX-License-Identifier: MIT
# The minimal hypervisor side of docs/shm-protocol.md (section 8, its first C block)
# compiles as printed: C11, warnings as errors. usage: doc_sample.sh DOC [CC]
set -eu
doc=$1
cc=${2:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk '/^## 8\./ { s = 1 } /^## 9\./ { s = 0 }
     s && !done && /^```c$/ { p = 1; next }
     p && /^```$/ { p = 0; done = 1 }
     p' "$doc" >"$tmp/sample.c"
[ -s "$tmp/sample.c" ] || { echo "FAIL: no C block in section 8 of $doc"; exit 1; }
if ! "$cc" -std=c11 -Wall -Wextra -Werror -c "$tmp/sample.c" -o "$tmp/sample.o"; then
	echo "FAIL: the sample of section 8 does not compile"
	exit 1
fi
echo "ok: section 8's sample compiles ($(wc -l <"$tmp/sample.c") lines)"
