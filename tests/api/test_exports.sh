#!/bin/sh
# SPDX-License-Identifier: MIT
# The shared library exports exactly the public API: every dynamic symbol it defines is
# an rtioreq_<module>_<verb> name (no rtioreq__ internals, no kvm__, no helper that
# lost its `static`), and every rtioreq_* function the static library defines globally
# is exported (a public header without RTIOREQ_BEGIN_DECLS would hide its functions).
# usage: test_exports.sh NM librtioreq.so librtioreq.a
set -u
nm=$1 so=$2 ar=$3
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
"$nm" -D --defined-only "$so" | awk 'NF == 3 { print $3 }' | sed 's/@.*//' | sort -u >"$tmp/so"
"$nm" -g --defined-only "$ar" 2>/dev/null | awk 'NF == 3 { print $3 }' | sort -u >"$tmp/ar"
bad=$(grep -v '^rtioreq_[a-z0-9]' "$tmp/so")
if [ -n "$bad" ]; then
	echo "FAIL: exported symbols outside the public API:"; echo "$bad"; fail=1
fi
grep '^rtioreq_[a-z0-9]' "$tmp/ar" >"$tmp/public"
missing=$(comm -23 "$tmp/public" "$tmp/so")
if [ -n "$missing" ]; then
	echo "FAIL: global rtioreq_* symbols of the library that are not exported:"
	echo "$missing"; fail=1
fi
# The check means something only if the archive has internals that stayed hidden.
grep -q '^rtioreq__' "$tmp/ar" || { echo "FAIL: no rtioreq__ internals in $ar?"; fail=1; }
for f in rtioreq_version rtioreq_engine_create rtioreq_vm_attach rtioreq_client_create; do
	grep -qx "$f" "$tmp/so" || { echo "FAIL: $f is not exported"; fail=1; }
done
[ $fail -eq 0 ] && echo "ok: $(wc -l <"$tmp/so") symbols exported, all public;" \
	"$(grep -c '^rtioreq__\|^kvm__' "$tmp/ar") internals hidden"
exit $fail
