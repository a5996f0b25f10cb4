#!/bin/sh
# SPDX-License-Identifier: MIT
# Run the can-watchdog example on its profile and check what it promises: every frame
# and kick served, the poller SCHED_FIFO on the profile's CPU (as root, on 2+ CPUs), and
# no cpuset and no changed sched_rt_runtime_us left after a normal exit or a SIGINT.
# usage: check.sh [BINARY [PROFILE]]
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/can-watchdog}
profile=${2:-$here/can-watchdog.yaml}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fail=0
[ "$(nproc)" -ge 2 ] || { echo "skipped: the profile puts the poller on CPU 1"; exit 77; }
rt0=$(cat /proc/sys/kernel/sched_rt_runtime_us 2>/dev/null)
left() { ls -d /sys/fs/cgroup/cpuset/rtioreq-"$1"-* 2>/dev/null; }

"$bin" "$profile" >"$out" 2>&1 &
pid=$!
wait $pid
rc=$?
cat "$out"
[ $rc -eq 0 ] && grep -q '^ok$' "$out" || { echo "FAIL: exit $rc"; fail=1; }
if [ "$(id -u)" -eq 0 ] && [ "$(nproc)" -ge 2 ]; then
	grep -q "SCHED_FIFO 50, CPUs 1, CPU 1" "$out" ||
		{ echo "FAIL: the poller is not SCHED_FIFO 50 on CPU 1"; fail=1; }
fi
[ -z "$(left $pid)" ] || { echo "FAIL: cpuset left after exit: $(left $pid)"; fail=1; }

"$bin" "$profile" --hold >"$out" 2>&1 &
pid=$!
i=0
while ! grep -q '^holding' "$out" && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
held=$(left $pid)
kill -INT $pid
wait $pid
rc=$?
[ $rc -eq 130 ] || { echo "FAIL: SIGINT: exit $rc, want 130: $(cat "$out")"; fail=1; }
[ -z "$(left $pid)" ] || { echo "FAIL: cpuset left after SIGINT: $(left $pid)"; fail=1; }
now=$(cat /proc/sys/kernel/sched_rt_runtime_us 2>/dev/null)
[ "$now" = "$rt0" ] || { echo "FAIL: sched_rt_runtime_us $now, was $rt0"; fail=1; }
[ $fail -eq 0 ] && echo "ok: can-watchdog (cpuset while held: ${held:-none}; none left after exit and SIGINT)"
exit $fail
