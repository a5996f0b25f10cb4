#!/bin/sh
# SPDX-License-Identifier: MIT
# The layering of docs/architecture.md, checked on the built library and the sources:
#  1. no call cycle between the library's files (from nm: which file's undefined
#     symbols another file defines; a cycle of any length fails, with its files named);
#  2. only engine/core/ includes the engine's private headers (core/*.h): trap sources,
#     device models, the real-time layer and the program use the public API and sys/.
# usage: test_layers.sh LIBRTIOREQ.a SOURCE_DIR
set -eu
lib="$1"
src="$2"
fail=0

# edges "from to": file @from uses a symbol that file @to defines
edges=$(nm -A "$lib" 2>/dev/null | awk '
	{ split($1, p, ":"); f = p[2]; sub(/\.o$/, "", f) }
	$2 == "U" { use[f, $3] = 1; next }
	$3 ~ /^[TDBR]$/ || $2 ~ /^[TDBR]$/ { def[$NF] = f }
	END {
		for (k in use) {
			split(k, q, SUBSEP)
			if ((q[2] in def) && def[q[2]] != q[1])
				e[q[1] " " def[q[2]]] = 1
		}
		for (k in e) print k
	}' | sort -u)
[ -n "$edges" ] || { echo "FAIL: no call edges read from $lib (nm missing?)"; exit 1; }

# topological peel: repeatedly drop files that call nothing left; what remains is cycles
left="$edges"
while :; do
	sinks=$(printf '%s\n' "$left" | awk '{ from[$1] = 1; to[$2] = 1 }
		END { for (t in to) if (!(t in from)) print t }')
	[ -z "$sinks" ] && break
	left=$(printf '%s\n' "$left" | awk -v s="$sinks" 'BEGIN { n = split(s, a, "\n");
		for (i = 1; i <= n; i++) drop[a[i]] = 1 } !($2 in drop)')
	[ -z "$left" ] && break
done
if [ -n "$left" ]; then
	echo "FAIL: call cycle among these files (caller callee):"
	printf '%s\n' "$left" | sed 's/^/  /'
	fail=1
else
	echo "ok: no call cycle among $(printf '%s\n' "$edges" | wc -l) call edges"
fi

bad=$(grep -ln '#include "core/' "$src"/engine/hv/*.c "$src"/engine/devices/*.c \
	"$src"/engine/rt/*.c "$src"/engine/cli/*.c "$src"/engine/sys/* 2>/dev/null || true)
if [ -n "$bad" ]; then
	echo "FAIL: private engine headers included outside engine/core/: $bad"
	fail=1
else
	echo "ok: engine/core/ private headers stay in engine/core/"
fi
[ "$fail" -eq 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit "$fail"
