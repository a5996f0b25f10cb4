#!/bin/sh
# SPDX-License-Identifier: MIT
# Run every fuzz target of a RTIOREQ_BUILD_FUZZ build for a bounded time from the committed
# seeds (tests/fuzz/README.md). A finding (crash, leak, broken invariant) fails the run
# and leaves its input as BUILD/fuzz-artifacts/<target>-crash-*.
# usage: smoke.sh BUILD_DIR [SECONDS_EACH (default 25)]
set -eu
build=$1
secs=${2:-25}
here=$(cd "$(dirname "$0")" && pwd)
out="$build/fuzz-artifacts"
mkdir -p "$out"
fail=0
for t in slot profile pcdev kvmload; do
	case $t in
	slot) opts="-max_len=257" ;;
	profile) opts="-dict=$here/profile.dict -max_len=4096" ;;
	kvmload) opts="-max_len=20000" ;;
	*) opts="" ;;
	esac
	work="$out/$t-corpus"
	mkdir -p "$work"
	# the seeds are read, never written: new inputs go to the scratch corpus
	# shellcheck disable=SC2086
	if timeout $((secs + 120)) "$build/tests/fuzz/fuzz_$t" $opts -max_total_time="$secs" \
		-print_final_stats=1 -artifact_prefix="$out/$t-" "$work" "$here/corpus/$t" \
		>"$out/$t.log" 2>&1; then
		echo "ok: fuzz_$t: $(grep -E '^Done' "$out/$t.log")"
	else
		echo "FAIL: fuzz_$t (log: $out/$t.log):"
		grep -E 'fuzz_[a-z]+:|ERROR|SUMMARY' "$out/$t.log" | head -20
		fail=1
	fi
done
exit $fail
