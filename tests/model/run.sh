#!/bin/sh
# SPDX-License-Identifier: MIT
# Check the slot protocol model (tests/model/slot.pml) exhaustively with spin.
#
#   run.sh [--cc CC] model     every scenario: spin must find no error
#   run.sh [--cc CC] mutants   every mutation: spin must find the counterexample
#
# model: HANDOVER, ATTACH, CLEAR and TAKEOVER (slot.pml's header says what each holds and
# which properties are checked). mutants: each -DMUT_* of slot.pml applied to the scenario
# that exercises it; the run passes only if pan reports an error of the expected kind
# (an assertion, or an invalid end state: a vCPU left waiting). Larger instances (more
# requests, moves, clears: -DNREQ, -DMOVES, -DNCLEAR) are run by hand with spin -a.
# Needs spin (Debian package spin; scripts/deps.sh installs it) and a C compiler.
set -u
here=$(cd "$(dirname "$0")" && pwd)
cc=${CC:-cc}
while [ $# -gt 1 ]; do
	case $1 in
	--cc) cc=$2; shift 2 ;;
	*) break ;;
	esac
done
what=${1:-}
case $what in
model | mutants) ;;
*) echo "usage: run.sh [--cc CC] model|mutants" >&2; exit 2 ;;
esac
command -v spin >/dev/null 2>&1 ||
	{ echo "FAIL: spin not found (apt-get install spin, or scripts/deps.sh)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$here/slot.pml" "$tmp/"
fail=0

# check NAME EXPECT DEFINES...: EXPECT is "pass", "assert" or "end" (invalid end state)
check() {
	name=$1 expect=$2
	shift 2
	d="$tmp/$name"
	mkdir "$d" && cp "$tmp/slot.pml" "$d/" || return 1
	t0=$(date +%s)
	if ! (cd "$d" && spin -a "$@" slot.pml >spin.log 2>&1); then
		echo "FAIL: $name: spin -a $*:"; cat "$d/spin.log"; fail=1; return
	fi
	# safety checks (assertions, invalid end states); COLLAPSE: exact state
	# compression; MEMLIM in MB, a runaway model fails instead of eating the box
	if ! (cd "$d" && $cc -O2 -w -DSAFETY -DCOLLAPSE -DMEMLIM=2048 -o pan pan.c \
		>cc.log 2>&1); then
		echo "FAIL: $name: compiling pan:"; cat "$d/cc.log"; fail=1; return
	fi
	(cd "$d" && ./pan -m20000 >pan.log 2>&1)
	errs=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$d/pan.log" | head -n1)
	states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$d/pan.log" | head -n1)
	secs=$(($(date +%s) - t0))
	if [ -z "$errs" ] || grep -qE "max search depth too small|out of memory" "$d/pan.log"; then
		echo "FAIL: $name: pan did not finish the search:"; cat "$d/pan.log"; fail=1; return
	fi
	case $expect in
	pass)
		if [ "$errs" -eq 0 ]; then
			echo "ok: $name: no error in $states states (${secs}s)"
			return
		fi
		echo "FAIL: $name: spin found an error ($*); the trail:"
		sed -n '/^pan:1:/p' "$d/pan.log"
		(cd "$d" && spin -t -p -g "$@" slot.pml 2>&1 | tail -n 80)
		fail=1 ;;
	assert | end)
		pat="invalid end state"
		[ "$expect" = assert ] && pat="assertion violated"
		if [ "$errs" -gt 0 ] && grep -q "^pan:1: $pat" "$d/pan.log"; then
			found=$(sed -n 's/^pan:1: //p' "$d/pan.log")
			echo "ok: $name: counterexample found: $found (${secs}s)"
			return
		fi
		echo "FAIL: $name: expected spin to report '$pat', it reported:"
		cat "$d/pan.log"
		fail=1 ;;
	esac
}

if [ "$what" = model ]; then
	check handover pass -DHANDOVER
	check attach pass -DATTACH
	check clear pass -DCLEAR
	check takeover pass -DTAKEOVER
else
	# issue #14 item 2: today's orders in dispatch.c and poll.c lose a wake-up
	check mut-disp-vmset-first end -DATTACH -DMUT_DISP_VMSET_FIRST
	check mut-poll-set-before-wake end -DHANDOVER -DMUT_POLL_SET_BEFORE_WAKE
	# the hypervisor's step-4 fence; the grace period of a slot hand-over
	check mut-hv-no-fence end -DHANDOVER -DMUT_HV_NO_FENCE
	check mut-no-gp assert -DHANDOVER -DMUT_NO_GP
	# issue #14 item 1: a late completion claimed by the vCPU bit lands in the next request
	check mut-bare-bit assert -DCLEAR -DMUT_BARE_BIT
	# issue #9 defects 1 and 2: no takeover of PROCESSING slots; no liveness check
	check mut-no-takeover end -DTAKEOVER -DMUT_NO_TAKEOVER
	check mut-no-liveness assert -DTAKEOVER -DMUT_NO_LIVENESS
fi
[ $fail -eq 0 ] || exit 1
echo "model: all $what checks passed"
