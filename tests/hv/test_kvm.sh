#!/bin/sh
# SPDX-License-Identifier: MIT
# End to end: boot Debian's cloud kernel and a busybox initramfs under KVM with every
# port-I/O and MMIO exit served by the engine through the vCPU's slot, in polling mode
# and in notify mode (and --inline, the baseline). Each boot must print the kernel
# banner and the init marker on the emulated UART, reboot through the i8042 within the
# timeout, and leave the engine's counters clean: no invalid request, no stranded vCPU.
#
# usage: test_kvm.sh RTIOREQ_BINARY [SOURCE_DIR]
# Environment:
#   RTIOREQ_KVM_TIMEOUT   per boot, default 120s (rtioreq kvm --timeout syntax)
#   RTIOREQ_KVM_MODES     default "polling notify inline"
#   RTIOREQ_GUEST_CACHE   guest cache directory (scripts/fetch-guest.sh), default
#                         ~/.cache/rtioreq-guest
#   RTIOREQ_KVM_CMDLINE   kernel command line instead of rtioreq's default
#   RTIOREQ_KVM_FORCE=1   on kvm_pvm, demand the full boot anyway (see below)
# Where /dev/kvm is kvm_pvm (this development box: no VT-x/AMD-V, guest ring-0 code is
# emulated), a stock kernel cannot boot to init; the test then checks what this host
# can run - each mode for 25 s: the banner on the UART, thousands of requests through
# the slots, counters clean - and says so (PARTIAL). Exit 0 pass, 1 fail, 77 skipped
# (no usable /dev/kvm, or the guest cannot be fetched).
set -u
bin=$1
src=${2:-$(cd "$(dirname "$0")/.." && pwd)}
timeout=${RTIOREQ_KVM_TIMEOUT:-120s}
modes=${RTIOREQ_KVM_MODES:-polling notify inline}
fail=0

if [ ! -e /dev/kvm ]; then
	echo "SKIP: /dev/kvm is missing (no KVM on this machine)"
	exit 77
fi
if ! { true </dev/kvm; } 2>/dev/null || ! { : >/dev/kvm; } 2>/dev/null; then
	echo "SKIP: /dev/kvm is not readable and writable by $(id -un)"
	exit 77
fi
# kvm_pvm runs a non-PVM guest's ring-0 code in KVM's instruction emulator (~1 us an
# instruction), which cannot emulate what Debian's kernel executes during boot (int3 in
# the alternatives self-test, after cmpxchg16b and xrstor worked around): docs/kvm.md.
partial=0
if [ -d /sys/module/kvm_pvm ] && [ "${RTIOREQ_KVM_FORCE:-0}" != 1 ]; then
	echo "PARTIAL: /dev/kvm is kvm_pvm: guest ring-0 code is emulated and a stock Linux" \
		"kernel stops at its int3 self-test (docs/kvm.md); checking the early boot only"
	partial=1
	timeout=${RTIOREQ_KVM_TIMEOUT:-25s}
	modes=${RTIOREQ_KVM_MODES:-polling notify}
fi
paths=$(sh "$src/scripts/fetch-guest.sh") || {
	echo "SKIP: cannot fetch the guest (scripts/fetch-guest.sh failed; apt access needed)"
	exit 77
}
get() { echo "$paths" | sed -n "s/^$1=//p"; }
kernel=$(get kernel)
initrd=$(get initrd)
# Where /dev/kvm is kvm_pvm, guest ring-0 code is emulated instruction by instruction
# (docs/kvm.md): boot the uncompressed kernel and initramfs to skip the decompressors.
if [ -d /sys/module/kvm_pvm ]; then
	kernel=$(get vmlinux)
	initrd=$(get initrd_cpio)
	echo "# kvm_pvm: booting the uncompressed $kernel and $initrd"
fi
cmdline=${RTIOREQ_KVM_CMDLINE:-} # empty: rtioreq's default
if [ $partial = 1 ] && [ -z "$cmdline" ]; then
	# what gets furthest under kvm_pvm (docs/kvm.md): rtioreq's default plus these
	cmdline="console=ttyS0 earlyprintk=serial,ttyS0,115200 reboot=k panic=-1 acpi=off"
	cmdline="$cmdline pci=conf1 tsc=reliable no_timer_check io_delay=none i8042.noaux"
	cmdline="$cmdline init_on_alloc=0 noxsave"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

num() { # key file: a top-level or nested numeric JSON value
	sed -n "s/.*\"$1\": \([0-9][0-9]*\).*/\1/p" "$2" | head -n 1
}

for mode in $modes; do
	case $mode in
	inline) args="--inline" ;;
	*) args="--mode=$mode" ;;
	esac
	start=$(date +%s)
	set -- --kernel="$kernel" --initrd="$initrd" $args --timeout="$timeout" \
		--json="$tmp/$mode.json"
	[ -n "$cmdline" ] && set -- "$@" --cmdline="$cmdline"
	"$bin" kvm "$@" >"$tmp/$mode.out" 2>"$tmp/$mode.err"
	rc=$?
	secs=$(($(date +%s) - start))
	bad=""
	grep -q "Linux version" "$tmp/$mode.out" || bad="$bad no-banner"
	grep -q "Kernel panic" "$tmp/$mode.out" && bad="$bad panic"
	[ "$(num invalid "$tmp/$mode.json")" = 0 ] || bad="$bad invalid"
	[ "$(num stranded "$tmp/$mode.json")" = 0 ] || bad="$bad stranded"
	[ "$(num handler_errors "$tmp/$mode.json")" = 0 ] || bad="$bad handler-errors"
	req=$(num requests "$tmp/$mode.json")
	if [ $partial = 1 ]; then
		# stopped by the timeout or by the emulator, with the console flowing
		[ $rc -eq 1 ] || bad="$bad exit=$rc"
		grep -qE '"exit_reason": "(timeout|internal-error)"' "$tmp/$mode.json" ||
			bad="$bad exit-reason"
		[ "${req:-0}" -ge 1000 ] || bad="$bad few-requests(${req:-0})"
	else
		[ $rc -eq 0 ] || bad="$bad exit=$rc"
		grep -q "^RTIOREQ-GUEST-UP" "$tmp/$mode.out" || bad="$bad no-marker"
		grep -qF '"exit_reason": "reboot"' "$tmp/$mode.json" || bad="$bad not-rebooted"
		grep -qF '"ok": true' "$tmp/$mode.json" || bad="$bad not-ok"
	fi
	if [ "$mode" != inline ]; then
		# every request went through the slot: dispatched == completed == requests
		[ "$(num dispatched "$tmp/$mode.json")" = "$req" ] &&
			[ "$(num completed "$tmp/$mode.json")" = "$req" ] ||
			bad="$bad engine-count"
	fi
	if [ -n "$bad" ]; then
		echo "FAIL: $mode ($secs s):$bad"
		echo "--- console (last 30 lines)"
		tail -n 30 "$tmp/$mode.out"
		echo "--- stderr"
		cat "$tmp/$mode.err"
		echo "--- json"
		cat "$tmp/$mode.json" 2>/dev/null
		fail=1
	else
		[ $partial = 1 ] && echo "ok (PARTIAL, kvm_pvm): $mode: banner and $req requests" \
			"through the slots, then $(sed -n 's/.*"exit_reason": "\([a-z-]*\)".*/\1/p' \
			"$tmp/$mode.json" | head -n 1)"
		echo "ok: $mode ($secs s): $(cat "$tmp/$mode.json")"
	fi
done

# a missing kernel is a one-line usage error, exit 2
"$bin" kvm --kernel="$tmp/none" >"$tmp/o" 2>"$tmp/e"
rc=$?
if [ $rc -ne 2 ] || [ "$(wc -l <"$tmp/e")" -ne 1 ]; then
	echo "FAIL: kvm --kernel=missing: exit $rc, stderr: $(cat "$tmp/e")"
	fail=1
else
	echo "ok: kvm --kernel=missing: $(cat "$tmp/e")"
fi
exit $fail
