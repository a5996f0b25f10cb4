#!/bin/bash
# SPDX-License-Identifier: MIT
#
# bench/run.sh - run every rtioreq latency benchmark in ONE run on this machine and
# write the results folder: results.json, report.md, latency.png, cyclictest-format
# histograms (*.hist) and JSON (*.json), bench.log.
#
# usage: bench/run.sh [--quick] [--out DIR] [--bin PATH] [--build-dir DIR] [-- ARGS...]
#   --quick          short runs (under a minute); default: full (under 5 minutes)
#   --out DIR        results folder; default results/<date>-<host>/ in the source tree
#   --bin PATH       rtioreq-bench binary; default: BUILD/bench/rtioreq-bench, built
#                    with cmake if missing
#   --build-dir DIR  cmake build directory, default build/ in the source tree
#   -- ARGS          passed to rtioreq-bench (see rtioreq-bench --help), e.g.
#                    -- --phases=polling,lookup
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

while [ $# -gt 0 ]; do
	case $1 in
	-q | --quick) QUICK=--quick ;;
	-o | --out) [ $# -ge 2 ] || die "$1 needs a value"; OUT=$2; shift ;;
	--out=*) OUT=${1#*=} ;;
	--bin) [ $# -ge 2 ] || die "$1 needs a value"; BIN=$2; shift ;;
	--bin=*) BIN=${1#*=} ;;
	--build-dir) [ $# -ge 2 ] || die "$1 needs a value"; BUILD=$2; shift ;;
	--build-dir=*) BUILD=${1#*=} ;;
	-h | --help) sed -n '3,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	--) shift; ARGS=("$@"); break ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done

[ "$(id -u)" = 0 ] || die "run as root: SCHED_FIFO, perf counters and /dev/cpu_dma_latency"
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (engine and hypervisor side)"
command -v cyclictest >/dev/null || die "cyclictest not found (Debian: apt-get install rt-tests)"
command -v gnuplot >/dev/null || die "gnuplot not found (Debian: apt-get install gnuplot-nox)"

if [ -z "$BIN" ]; then
	BIN=$BUILD/bench/rtioreq-bench
	if [ ! -x "$BIN" ]; then
		echo "# building rtioreq-bench in $BUILD"
		cmake -S "$ROOT" -B "$BUILD" >/dev/null ||
			die "cmake configure failed in $BUILD"
		cmake --build "$BUILD" -j"$(nproc)" --target rtioreq-bench ||
			die "cannot build rtioreq-bench (is add_subdirectory(bench) in CMakeLists.txt?)"
	fi
fi
[ -x "$BIN" ] || die "no executable $BIN"

if [ -z "$OUT" ]; then
	OUT=$ROOT/results/$(date +%Y%m%d-%H%M%S)-$(hostname -s)
fi
mkdir -p "$OUT" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)

echo "# rtioreq benchmarks: $BIN ${QUICK:-(full)} -> $OUT"
start=$(date +%s)
"$BIN" $QUICK --out="$OUT" "${ARGS[@]}" | tee "$OUT/bench.log" ||
	die "rtioreq-bench failed (see $OUT/bench.log)"

(cd "$OUT" && gnuplot latency.gp) || die "gnuplot failed on $OUT/latency.gp"

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
echo "# done in $((end - start)) s: $OUT/report.md, results.json, latency.png"
