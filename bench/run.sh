#!/bin/bash
# SPDX-License-Identifier: MIT
#
# bench/run.sh - run every rtioreq latency benchmark in ONE run on this machine and
# write the results folder: results.json, report.md, latency.png, cyclictest-format
# histograms (*.hist) and JSON (*.json), bench.log.
#
# usage: bench/run.sh [--quick] [--repeat N] [--out DIR] [--bin PATH] [--build-dir DIR]
#                     [--profiles-only] [--profile-duration T] [-- ARGS...]
#   --quick          short runs (under two minutes); default: full (under 6 minutes)
#   --repeat N       repeatability check: N consecutive runs of rtioreq-bench (no
#                    profiles, no plot) into DIR/run-1..N, then per interleaved ratio
#                    one line 'REPEAT key=K values=v1,...,vN mean=M max_dev_pct=D
#                    max_over_min=R ok=0|1' (ok: every value within +-15% of the mean
#                    of the N values, i.e. |v - M| <= 0.15 M), the idle-slot scan cost
#                    likewise, and 'REPEAT-SUMMARY checked=C within=W ok=0|1'; also
#                    in DIR/repeat.txt. Exit status 4 if some value is outside +-15%.
#                    A p99.9 ratio also lists, per run, whether its p99.9 was at the
#                    knee (knee=1: among the host's spikes; report.md, "Tails").
#   --profiles-only  only the last phase: each shipped profile (rt-configs/*.yaml that
#                    'rtioreq check --host' accepts here) run with 'rtioreq run -D T',
#                    its maximum round trip in profiles.md, profile-*.json
#   --profile-duration T  length of each profile run, default 10s
#   --out DIR        results folder; default results/<date>-<host>/ in the source tree
#   --bin PATH       rtioreq-bench binary; default: BUILD/bench/rtioreq-bench, built
#                    with cmake if missing
#   --build-dir DIR  cmake build directory, default build/ in the source tree
#   -- ARGS          passed to rtioreq-bench (see rtioreq-bench --help), e.g.
#                    -- --phases=polling,lookup
# After a run it prints the interleaved headline ratios (median [min..max], goal).
# Needs: root (SCHED_FIFO, perf counters, /dev/cpu_dma_latency), 2+ CPUs, cyclictest
# (rt-tests) and gnuplot. Exits non-zero, with a message, on any failure.
set -euo pipefail

die() {
	echo "run.sh: $*" >&2
	exit 1
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUICK=
OUT=
BIN=${RTIOREQ_BENCH:-}
BUILD=$ROOT/build
ARGS=()
PROFILES_ONLY=
PROFILE_T=10s
REPEAT=

while [ $# -gt 0 ]; do
	case $1 in
	-q | --quick) QUICK=--quick ;;
	-o | --out) [ $# -ge 2 ] || die "$1 needs a value"; OUT=$2; shift ;;
	--out=*) OUT=${1#*=} ;;
	--bin) [ $# -ge 2 ] || die "$1 needs a value"; BIN=$2; shift ;;
	--bin=*) BIN=${1#*=} ;;
	--build-dir) [ $# -ge 2 ] || die "$1 needs a value"; BUILD=$2; shift ;;
	--build-dir=*) BUILD=${1#*=} ;;
	-h | --help) sed -n '3,32p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	--profiles-only) PROFILES_ONLY=1 ;;
	--repeat) [ $# -ge 2 ] || die "$1 needs a value"; REPEAT=$2; shift ;;
	--repeat=*) REPEAT=${1#*=} ;;
	--profile-duration) [ $# -ge 2 ] || die "$1 needs a value"; PROFILE_T=$2; shift ;;
	--profile-duration=*) PROFILE_T=${1#*=} ;;
	--) shift; ARGS=("$@"); break ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done

if [ -n "$REPEAT" ]; then
	[[ $REPEAT =~ ^[0-9]+$ ]] && [ "$REPEAT" -ge 2 ] || die "--repeat needs a count >= 2"
fi
[ "$(id -u)" = 0 ] || die "run as root: SCHED_FIFO, perf counters and /dev/cpu_dma_latency"
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (engine and hypervisor side)"
if [ -z "$PROFILES_ONLY" ]; then
	command -v cyclictest >/dev/null || die "cyclictest not found (Debian: apt-get install rt-tests)"
	command -v gnuplot >/dev/null || die "gnuplot not found (Debian: apt-get install gnuplot-nox)"
fi

if [ -z "$BIN" ]; then
	BIN=$BUILD/bench/rtioreq-bench
	if [ ! -x "$BIN" ] || [ ! -x "$BUILD/rtioreq" ]; then
		echo "# building rtioreq-bench and rtioreq in $BUILD"
		cmake -S "$ROOT" -B "$BUILD" >/dev/null ||
			die "cmake configure failed in $BUILD"
		cmake --build "$BUILD" -j"$(nproc)" --target rtioreq-bench rtioreq-cli ||
			die "cannot build rtioreq-bench (is add_subdirectory(bench) in CMakeLists.txt?)"
	fi
fi
[ -x "$BIN" ] || die "no executable $BIN"
CLI=$BUILD/rtioreq
[ -x "$CLI" ] || die "no executable $CLI (cmake --build $BUILD --target rtioreq-cli)"

# The shipped profiles as a user runs them: 'rtioreq run -D T PROFILE', real-time
# settings, cpusets and rt_throttling applied; the maximum round trip is what a
# throttled SCHED_FIFO poller shows (issue 14 item 8). Appends to report.md.
# first number of "key" in a (one VM) run's JSON
jfield() { grep -o "\"$1\": [0-9]*" "$2" | head -1 | grep -o '[0-9]*$'; }

profiles_phase() {
	local md=$OUT/profiles.md p name json max
	echo "# shipped profiles: rtioreq run -D $PROFILE_T each"
	{
		echo "## Shipped profiles ($PROFILE_T each, rtioreq run)"
		echo
		echo "sched_rt_runtime_us before the runs: $(cat /proc/sys/kernel/sched_rt_runtime_us)"
		echo
		echo "| profile | requests | p99.99 ns | max ns | note |"
		echo "| --- | --- | --- | --- | --- |"
	} >"$md"
	for p in "$ROOT"/rt-configs/*.yaml; do
		name=$(basename "$p" .yaml)
		if ! "$CLI" check --host "$p" >/dev/null 2>"$OUT/profile-$name.err"; then
			echo "# $name: not for this machine: $(head -1 "$OUT/profile-$name.err")"
			echo "| $name | - | - | - | not run: $(head -1 "$OUT/profile-$name.err" | sed 's/|/\\|/g') |" >>"$md"
			continue
		fi
		json=$OUT/profile-$name.json
		"$CLI" run -D "$PROFILE_T" --json="$json" "$p" >"$OUT/profile-$name.txt" \
			2>"$OUT/profile-$name.err" ||
			die "rtioreq run $p failed: $(cat "$OUT/profile-$name.err")"
		req=$(jfield requests "$json")
		max=$(jfield max "$json")
		echo "# $name: max round trip $max ns ($req requests)"
		echo "| $name | $req | $(jfield p9999 "$json") | $max |" \
			"$(grep -o 'rt_throttling: [a-z]*' "$OUT/profile-$name.err" | head -1) |" >>"$md"
	done
	echo "sched_rt_runtime_us after the runs: $(cat /proc/sys/kernel/sched_rt_runtime_us)" >>"$md"
}

if [ -z "$OUT" ]; then
	OUT=$ROOT/results/$(date +%Y%m%d-%H%M%S)-$(hostname -s)
fi
mkdir -p "$OUT" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)

if [ -n "$PROFILES_ONLY" ]; then
	profiles_phase | tee "$OUT/bench.log"
	[ "${PIPESTATUS[0]}" = 0 ] || die "profiles phase failed (see $OUT/bench.log)"
	echo "# done: $OUT/profiles.md"
	exit 0
fi

# The interleaved headline ratios of one bench.log, for humans.
ratios_summary() {
	awk '/^SUMMARY ratio=/ && / interleaved=1/ {
		for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
		g = ("goal_max" in f) ? sprintf("goal <= %s: %s", f["goal_max"],
			f["met"] ? "met" : "NOT met") : ""
		printf "#   %-44s %7.3fx [%.3f..%.3f] %s slices %s\n", f["ratio"], f["value"],
			f["min"], f["max"], f["slices"], g
		delete f
	}
	/^SUMMARY bench=scan-idle-slot/ {
		for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
		printf "#   %-44s %7.3f ns [%.3f..%.3f] goal <= 2: %s\n", "idle slot scan (ns/slot/pass)",
			f["value"], f["min"], f["max"], f["met"] ? "met" : "NOT met"
		delete f
	}' "$1"
}

# --repeat N: N runs, then each headline figure's N values against their mean.
if [ -n "$REPEAT" ]; then
	logs=()
	for k in $(seq 1 "$REPEAT"); do
		mkdir -p "$OUT/run-$k" || die "cannot create $OUT/run-$k"
		echo "# repeat $k/$REPEAT: $BIN ${QUICK:-(full)} -> $OUT/run-$k"
		"$BIN" $QUICK --out="$OUT/run-$k" "${ARGS[@]}" >"$OUT/run-$k/bench.log" ||
			die "rtioreq-bench failed (see $OUT/run-$k/bench.log)"
		ratios_summary "$OUT/run-$k/bench.log"
		logs+=("$OUT/run-$k/bench.log")
	done
	awk -v n="$REPEAT" '
	/^SUMMARY ratio=/ && / interleaved=1/ || /^SUMMARY bench=scan-idle-slot/ {
		if (seen[FILENAME, $2]++) next
		key = ""; val = ""; knee = ""
		for (i = 2; i <= NF; i++) {
			split($i, kv, "=")
			if (kv[1] == "ratio" || kv[1] == "bench") key = kv[2]
			if (kv[1] == "value") val = kv[2]
			if (kv[1] == "knee") knee = kv[2]
		}
		if (!(key in cnt)) order[++nk] = key
		v[key, ++cnt[key]] = val
		if (knee != "") kn[key] = kn[key] (kn[key] == "" ? "" : ",") knee
	}
	END {
		within = 0; checked = 0
		for (j = 1; j <= nk; j++) {
			key = order[j]
			if (cnt[key] != n) {
				printf "REPEAT key=%s runs=%d ok=0 why=missing-in-some-runs\n", key, cnt[key]
				checked++
				continue
			}
			s = 0; lo = ""; hi = ""; vals = ""
			for (i = 1; i <= n; i++) {
				x = v[key, i] + 0; s += x
				vals = vals (i > 1 ? "," : "") v[key, i]
				if (lo == "" || x < lo) lo = x
				if (hi == "" || x > hi) hi = x
			}
			m = s / n
			dev = 0
			for (i = 1; i <= n; i++) {
				d = v[key, i] - m; if (d < 0) d = -d
				if (m > 0 && 100 * d / m > dev) dev = 100 * d / m
			}
			ok = (m > 0 && dev <= 15)
			checked++; within += ok
			printf "REPEAT key=%s values=%s mean=%.4g max_dev_pct=%.1f max_over_min=%.3f ok=%d%s\n",
				key, vals, m, dev, (lo > 0 ? hi / lo : 0), ok,
				(key in kn ? " knee=" kn[key] : "")
		}
		printf "REPEAT-SUMMARY runs=%d checked=%d within=%d ok=%d rule=every_value_within_15pct_of_mean\n",
			n, checked, within, (checked > 0 && within == checked)
	}' "${logs[@]}" | tee "$OUT/repeat.txt"
	grep -q '^REPEAT-SUMMARY .* ok=1 ' "$OUT/repeat.txt" || exit 4
	exit 0
fi

echo "# rtioreq benchmarks: $BIN ${QUICK:-(full)} -> $OUT"
start=$(date +%s)
"$BIN" $QUICK --out="$OUT" "${ARGS[@]}" | tee "$OUT/bench.log" ||
	die "rtioreq-bench failed (see $OUT/bench.log)"

(cd "$OUT" && gnuplot latency.gp) || die "gnuplot failed on $OUT/latency.gp"

profiles_phase | tee -a "$OUT/bench.log"
[ "${PIPESTATUS[0]}" = 0 ] || die "profiles phase failed (see $OUT/bench.log)"
{ echo; cat "$OUT/profiles.md"; } >>"$OUT/report.md"

for f in results.json report.md latency.png; do
	[ -s "$OUT/$f" ] || die "missing or empty $OUT/$f"
done
ls "$OUT"/*.hist >/dev/null 2>&1 || die "no cyclictest-format histogram in $OUT"
if command -v jq >/dev/null; then
	for f in "$OUT"/*.json; do
		jq empty "$f" || die "invalid JSON: $f"
	done
fi
end=$(date +%s)
echo "# headline ratios (interleaved: median of the per-slice ratios [min..max]):"
ratios_summary "$OUT/bench.log"
echo "# done in $((end - start)) s: $OUT/report.md, results.json, latency.png"
