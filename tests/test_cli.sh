#!/bin/sh
# SPDX-License-Identifier: MIT
# The rtioreq program: demo runs in both modes report every request completed exactly
# once (exit 0, JSON keys present), bad input gives exit 2 and one line naming the
# cause, and serve + hv in two processes agree.
set -u
bin="$1"
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check_json() { # mode file
	for k in '"mode": "'"$1"'"' '"lost": 0,' '"duplicated": 0,' '"mismatched": 0,' \
		'"invalid": 0,' '"handler_errors": 0,' '"ok": true' '"latency_ns": {"min": '; do
		grep -qF "$k" "$2" || { echo "FAIL: $1: no $k in $(cat "$2")"; fail=1; }
	done
	req=$(sed 's/.*"requests": \([0-9]*\),.*/\1/' "$2")
	done_=$(sed 's/.*"completed": \([0-9]*\),.*/\1/' "$2")
	[ "$req" = "$3" ] && [ "$done_" = "$3" ] ||
		{ echo "FAIL: $1: requests $req completed $done_, want $3"; fail=1; }
}

for mode in polling notify; do
	"$bin" run --json --mode "$mode" --vcpus 16 --requests 50k >"$tmp/$mode.json"
	rc=$?
	[ $rc -eq 0 ] || { echo "FAIL: run --mode $mode exit $rc"; fail=1; }
	check_json "$mode" "$tmp/$mode.json" 50000
	echo "ok: run --mode $mode: $(cat "$tmp/$mode.json")"
done

# the demo's default text output
"$bin" run >"$tmp/demo.txt" || { echo "FAIL: rtioreq run exit $?"; fail=1; }
grep -q "^requests 200000  completed 200000  lost 0  duplicated 0" "$tmp/demo.txt" &&
	grep -q "p99.9 " "$tmp/demo.txt" || { echo "FAIL: demo output:"; cat "$tmp/demo.txt"; fail=1; }

# --duration and --json=FILE
"$bin" run -m notify -v 2 -D 200ms --json="$tmp/d.json" >/dev/null ||
	{ echo "FAIL: --duration run"; fail=1; }
grep -qF '"ok": true' "$tmp/d.json" || { echo "FAIL: --json=FILE: $(cat "$tmp/d.json")"; fail=1; }

bad() { # expected-stderr-substring args...
	want="$1"
	shift
	"$bin" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	lines=$(wc -l <"$tmp/err")
	if [ $rc -ne 2 ] || [ "$lines" -ne 1 ] || ! grep -qF -- "$want" "$tmp/err"; then
		echo "FAIL: rtioreq $*: exit $rc, stderr: $(cat "$tmp/err") (want '$want')"
		fail=1
	else
		echo "ok: rtioreq $*: $(cat "$tmp/err")"
	fi
}
bad "unknown command 'frob'" frob
bad "--vcpus: 17 is out of range 1..16" run --vcpus 17
bad "--vcpus: '0x' is not a number" run --vcpus 0x
bad "--mode: 'fast' is not a mode" run --mode fast
bad "--requests: '-5' is not a number" run -n -5
bad "--requests: '99999999999999999999' is too large" run -n 99999999999999999999
bad "--duration: '5y' has an unknown unit" run -D 5y
bad "--duration: '0' is not a positive duration" run -D 0
bad "--requests and --duration exclude each other" run -n 5 -D 1s
bad "--poller-cpus: CPU 4095 is not available" run -c 4095
bad "--poller-cpus: 'x' is not a CPU list" run -c x
bad "--pollers/--poller-cpus need --mode polling" run -m notify -P 2
bad "--pollers: 5 pollers for 4 vCPUs" run -P 5
bad "--unmapped: 101 is out of range 0..100" run -u 101
bad "unknown option '--bogus'" run --bogus
bad "option -v needs a value" run -v
bad "unexpected argument 'extra'" run extra
bad "--shm=NAME is required" serve
bad "--shm: 'x' is not a shm name" hv -S x
bad "--shm: no region /rtioreq-none-$$ appeared" serve -S /rtioreq-none-$$ -w 50ms

# two processes: the engine serves a region the hypervisor created
name="/rtioreq-clitest-$$"
"$bin" serve -S "$name" -m polling 2>"$tmp/serve.err" &
spid=$!
"$bin" hv -S "$name" -v 8 -n 100k --json >"$tmp/hv.json"
rc=$?
wait $spid
src=$?
[ $rc -eq 0 ] && [ $src -eq 0 ] || { echo "FAIL: hv exit $rc, serve exit $src"; fail=1; }
grep -qF '"ok": true' "$tmp/hv.json" && grep -q "completed 100000, polled 100000" "$tmp/serve.err" ||
	{ echo "FAIL: cross-process: $(cat "$tmp/hv.json" "$tmp/serve.err")"; fail=1; }
echo "ok: serve + hv: $(tail -1 "$tmp/serve.err")"
# a name in use (here: left over) is refused, not reused
: >"/dev/shm$name"
bad "--shm: $name exists" hv -S "$name" -n 1
rm -f "/dev/shm$name"

exit $fail
