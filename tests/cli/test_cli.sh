#!/bin/sh
# SPDX-License-Identifier: MIT
# The rtioreq program: demo runs in both modes report every request completed exactly
# once (exit 0, JSON keys present), bad input gives exit 2 and one line naming the
# cause, serve + hv in two processes agree; profiles: check accepts the shipped ones,
# run applies dev-2cpu (poller SCHED_FIFO on CPU 1, in a cpuset when possible) and
# removes what it created, also on SIGINT.
# usage: test_cli.sh RTIOREQ_BINARY SOURCE_DIR
set -u
bin="$1"
src="$2"
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# every JSON object names the version, the command line and the machine (cyclictest's keys)
check_meta() { # file
	for k in '{"version": "' '"library_version": "' '"cmdline": "' '"sysinfo": {"sysname": "' \
		"\"machine\": \"$(uname -m)\""; do
		grep -qF "$k" "$1" || { echo "FAIL: no $k in $(cat "$1")"; fail=1; }
	done
}

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
	check_meta "$tmp/$mode.json"
	grep -qF '"cmdline": "'"$bin"' run --json --mode '"$mode"' --vcpus 16 --requests 50k"' \
		"$tmp/$mode.json" || { echo "FAIL: cmdline in $(cat "$tmp/$mode.json")"; fail=1; }
	echo "ok: run --mode $mode: $(cat "$tmp/$mode.json")"
done

# the demo's default text output
"$bin" run >"$tmp/demo.txt" || { echo "FAIL: rtioreq run exit $?"; fail=1; }
grep -q "^requests 200000  completed 200000  lost 0  duplicated 0" "$tmp/demo.txt" &&
	grep -q "p99.9 " "$tmp/demo.txt" || { echo "FAIL: demo output:"; cat "$tmp/demo.txt"; fail=1; }

# --version: the program's and the library's version
"$bin" --version >"$tmp/version" 2>&1 && grep -qE '^rtioreq [0-9]+\.[0-9]+\.[0-9]+ \(library [0-9]+\.[0-9]+\.[0-9]+' \
	"$tmp/version" || { echo "FAIL: --version: $(cat "$tmp/version")"; fail=1; }

# --duration and --json=FILE
"$bin" run -m notify -v 2 -D 200ms --json="$tmp/d.json" >/dev/null ||
	{ echo "FAIL: --duration run"; fail=1; }
grep -qF '"ok": true' "$tmp/d.json" || { echo "FAIL: --json=FILE: $(cat "$tmp/d.json")"; fail=1; }

# --verbose: the events the engine only counted, on stderr (5% of requests unclaimed)
"$bin" run -V -n 20k >"$tmp/v.out" 2>"$tmp/v.err" || { echo "FAIL: run -V exit $?"; fail=1; }
grep -q "^rtioreq run: event: VM 1 vCPU [0-9]*: unclaimed x[0-9]* (total [0-9]*)$" "$tmp/v.err" &&
	grep -q "^requests 20000  completed 20000" "$tmp/v.out" ||
	{ echo "FAIL: run -V: $(cat "$tmp/v.err")"; fail=1; }
echo "ok: run --verbose: $(head -1 "$tmp/v.err")"

bad() { # expected-stderr-substring args...
	want="$1"
	shift
	timeout 20 "$bin" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	lines=$(wc -l <"$tmp/err")
	if [ $rc -ne 2 ] || [ "$lines" -ne 1 ] || ! grep -qF -- "$want" "$tmp/err"; then
		echo "FAIL: rtioreq $*: exit $rc, stderr: $(cat "$tmp/err") (want '$want')"
		fail=1
	else
		echo "ok: rtioreq $*: $(cat "$tmp/err")"
	fi
}
bad "unknown command 'frob' (run, serve, hv, check, kvm" frob
bad "expected one PROFILE" check
bad "-m, -v, -P, -c, -d and -p are set by the profile" run -v 2 "$src/rt-configs/dev-2cpu.yaml"
bad "bad-priority.yaml:" check "$src/tests/rt/profiles/bad-priority.yaml"
bad "nonexistent.yaml" check "$tmp/nonexistent.yaml"
bad "--vcpus: 17 is out of range 1..16" run --vcpus 17
bad "--vcpus: '0x' is not a number" run --vcpus 0x
bad "--mode: 'fast' is not a mode" run --mode fast
bad "--requests: '-5' is negative" run -n -5
bad "--requests: '99999999999999999999' is too large" run -n 99999999999999999999
bad "--duration: '5y' has an unknown unit" run -D 5y
bad "--duration: '0' is not a positive duration" run -D 0
bad "--requests and --duration exclude each other" run -n 5 -D 1s
bad "--poller-cpus: CPU 4095 is not available" run -c 4095
bad "--poller-cpus: 'x' is not a CPU list" run -c x
bad "--pollers/--poller-cpus/--idle need --mode polling" run -m notify -P 2
bad "--pollers: 5 pollers for 4 vCPUs" run -P 5
bad "--unmapped: 101 is out of range 0..100" run -u 101
# nonsense that used to run (issue #10): two pollers on one CPU, a poller on the simulated
# hypervisor's CPU, --spin without hybrid idle, octal and hex where decimal is meant
bad "--poller-cpus: CPU 1 is given twice in '1,1'" run -c 1,1 -P 2
bad "--poller-cpus: 1 CPU for 2 pollers" run -c 1 -P 2 -v 4
bad "--poller-cpus: CPU 0 is the simulated hypervisor's (--producer-cpu 0)" run -c 0
bad "--spin needs --idle hybrid" run --spin 20us
bad "--vcpus: '010' has a leading zero (numbers are decimal)" run -v 010
bad "--duration: '0x10' is not a duration" run -D 0x10
bad "--duration: '-1s' is negative" run -D -1s
bad "--seed: '-1' is negative" run -s -1
# hostile profiles (issue #10): refused at once with file:line:column
mkfifo "$tmp/fifo.yaml"
bad "fifo.yaml: cannot read: not a regular file (a FIFO)" check "$tmp/fifo.yaml"
bad "fifo.yaml: cannot read: not a regular file (a FIFO)" run "$tmp/fifo.yaml"
bad "$tmp: cannot read: is a directory" check "$tmp"
bad "bad-alias-bomb.yaml:9:7: YAML alias '*r': aliases are not allowed" \
	check "$src/tests/rt/profiles/bad-alias-bomb.yaml"
bad "bad-utf8.yaml:34:58: invalid leading UTF-8 octet (0xff)" \
	check "$src/tests/rt/profiles/bad-utf8.yaml"
bad "unknown option '--bogus'" run --bogus
bad "option -v needs a value" run -v
bad "extra: cannot read" run extra
bad "unexpected argument 'more'" run extra more
bad "--shm=NAME is required" serve

# hostile guest images (issue #10): checked before /dev/kvm is opened, the field named
poke() { # file offset bytes-in-hex...
	f=$1
	off=$(($2))
	shift 2
	for b in "$@"; do
		printf "\\$(printf %o "0x$b")" | dd of="$f" bs=1 seek=$off conv=notrunc 2>/dev/null
		off=$((off + 1))
	done
}
head -c 8192 /dev/zero >"$tmp/bz"
poke "$tmp/bz" 0x1f1 01                 # setup_sects
poke "$tmp/bz" 0x1fe 55 aa 00 66 48 64 72 53 0f 02 # boot_flag, jump, "HdrS", version 2.15
poke "$tmp/bz" 0x211 01                 # loadflags: LOADED_HIGH
poke "$tmp/bz" 0x236 01 00              # xloadflags: XLF_KERNEL_64
poke "$tmp/bz" 0x260 00 00 20 00        # init_size 2 MiB
cp "$tmp/bz" "$tmp/bz-sparse"
poke "$tmp/bz" 0x258 00 00 f0 ff ff ff ff ff # pref_address: + init_size wraps
bad "bz: pref_address 0xfffffffffff00000 + init_size 0x200000 is outside guest RAM" \
	kvm --kernel "$tmp/bz"
poke "$tmp/bz-sparse" 0x258 00 00 00 01 00 00 00 00 # 16 MiB, in a 2 GiB sparse file
truncate -s 2G "$tmp/bz-sparse"
bad "bz-sparse: init_size 0x200000 (or the 2147482624-byte payload) does not fit" \
	kvm --kernel "$tmp/bz-sparse"
bad "--shm: 'x' is not a shm name" hv -S x
bad "--shm: no region /rtioreq-none-$$ appeared" serve -S /rtioreq-none-$$ -w 50ms
bad "--idle/--spin need --mode polling" serve -S /rtioreq-none-$$ -m notify -I hybrid
bad "--spin needs --idle hybrid" serve -S /rtioreq-none-$$ --spin 10us
bad "--idle: 'nap' is not an idle strategy" serve -S /rtioreq-none-$$ -I nap

# two processes: the engine serves a region the hypervisor created
name="/rtioreq-clitest-$$"
"$bin" serve -S "$name" -m polling --json="$tmp/serve.json" 2>"$tmp/serve.err" &
spid=$!
"$bin" hv -S "$name" -v 8 -n 100k --json >"$tmp/hv.json"
rc=$?
wait $spid
srv_rc=$?
[ $rc -eq 0 ] && [ $srv_rc -eq 0 ] || { echo "FAIL: hv exit $rc, serve exit $srv_rc"; fail=1; }
grep -qF '"ok": true' "$tmp/hv.json" && grep -q "completed 100000, polled 100000" "$tmp/serve.err" ||
	{ echo "FAIL: cross-process: $(cat "$tmp/hv.json" "$tmp/serve.err")"; fail=1; }
check_meta "$tmp/hv.json"
check_meta "$tmp/serve.json"
# serve --json: the engine-side service time of every request served (RTIOREQ_VM_HIST)
grep -q '"dispatched": 100000,.*"service_ns": {"min": [0-9]*, "p50": [1-9][0-9]*,.*"count": 100000}}$' \
	"$tmp/serve.json" || { echo "FAIL: serve --json service_ns: $(cat "$tmp/serve.json")"; fail=1; }
echo "ok: serve + hv: $(tail -1 "$tmp/serve.err")"
# a name in use (here: left over) is refused, not reused
: >"/dev/shm$name"
bad "--shm: $name exists" hv -S "$name" -n 1
rm -f "/dev/shm$name"

# profiles
for p in "$src"/rt-configs/*.yaml; do
	"$bin" check "$p" >"$tmp/plan" 2>"$tmp/err" && grep -q "^slots:" "$tmp/plan" ||
		{ echo "FAIL: check $p: $(cat "$tmp/err")"; fail=1; }
done
echo "ok: rtioreq check accepts every shipped profile"
"$bin" check --host "$src/rt-configs/auto-8cpu.yaml" >/dev/null 2>"$tmp/err"
rc=$?
if [ "$(nproc)" -lt 8 ]; then
	[ $rc -eq 2 ] && grep -q "auto-8cpu.yaml:[0-9]*:[0-9]*: CPU [0-9]* is not online" "$tmp/err" ||
		{ echo "FAIL: check --host on $(nproc) CPUs: exit $rc $(cat "$tmp/err")"; fail=1; }
	"$bin" run -n 10 "$src/rt-configs/auto-8cpu.yaml" >/dev/null 2>&1
	[ $? -eq 2 ] || { echo "FAIL: run of an 8-CPU profile on $(nproc) CPUs was not refused"; fail=1; }
	echo "ok: an 8-CPU profile is refused by run and check --host on $(nproc) CPUs"
fi
# 'run -D 60s dev-2cpu' in the background ($pid), stdout in $tmp/NAME.txt, stderr in
# $tmp/NAME.err; returns once its poller printed its tid (or after 10 s)
profile_run_start() { # NAME
	: >"$tmp/$1.txt" # now: the background job's own redirection is asynchronous
	"$bin" run -D 60s "$src/rt-configs/dev-2cpu.yaml" >"$tmp/$1.txt" 2>"$tmp/$1.err" &
	pid=$!
	i=0
	while ! grep -q "^rtio-poll0: tid" "$tmp/$1.txt" && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
}
if [ "$(nproc)" -ge 2 ]; then
	"$bin" run -n 200k --json "$src/rt-configs/dev-2cpu.yaml" >"$tmp/prof.json" 2>"$tmp/prof.err"
	rc=$?
	grep -qF '"ok": true' "$tmp/prof.json" && [ $rc -eq 0 ] ||
		{ echo "FAIL: run dev-2cpu: exit $rc $(cat "$tmp/prof.json" "$tmp/prof.err")"; fail=1; }
	# the poller as the kernel sees it while a run is going; then SIGINT
	profile_run_start prof
	tid=$(sed -n 's/^rtio-poll0: tid \([0-9]*\),.*/\1/p' "$tmp/prof.txt")
	cs="/"
	if [ -n "$tid" ]; then
		echo "ok: $(grep '^rtio-poll0' "$tmp/prof.txt")"
		if [ "$(id -u)" -eq 0 ]; then
			chrt -p "$tid" | grep -q "SCHED_FIFO" && chrt -p "$tid" | grep -q "priority: 80" ||
				{ echo "FAIL: chrt -p $tid: $(chrt -p "$tid")"; fail=1; }
			taskset -cp "$tid" | grep -q "list: 1$" ||
				{ echo "FAIL: taskset -cp $tid: $(taskset -cp "$tid")"; fail=1; }
			echo "ok: $(chrt -p "$tid" | tr '\n' ' ')/ $(taskset -cp "$tid")"
			cs=$(cat "/proc/$tid/cpuset")
			if [ -f /sys/fs/cgroup/cpuset/cpuset.cpus ]; then
				[ "$cs" != "/" ] && [ -d "/sys/fs/cgroup/cpuset$cs" ] ||
					{ echo "FAIL: poller not in its own cpuset: '$cs'"; fail=1; }
			fi
		fi
	else
		echo "FAIL: run dev-2cpu printed no poller: $(cat "$tmp/prof.txt" "$tmp/prof.err")"
		fail=1
	fi
	kill -INT $pid
	wait $pid
	rc=$?
	[ $rc -eq 130 ] || { echo "FAIL: SIGINT: exit $rc"; fail=1; }
	if [ "$cs" != "/" ] && [ -e "/sys/fs/cgroup/cpuset$cs" ]; then
		echo "FAIL: cpuset $cs left after SIGINT"
		fail=1
	fi
	echo "ok: SIGINT: $(cat "$tmp/prof.err"); cpuset $cs gone"
fi

# Issue 10 defect 7 / issue 14 item 8: every way a profile run ends restores the machine.
rt_runtime() { cat /proc/sys/kernel/sched_rt_runtime_us 2>/dev/null || echo none; }
own_cpusets() { ls -d /sys/fs/cgroup/cpuset/rtioreq-"$1"-* 2>/dev/null; }
if [ "$(nproc)" -ge 2 ] && [ "$(id -u)" -eq 0 ]; then
	rt0=$(rt_runtime)
	# SIGHUP and SIGQUIT clean up like SIGINT and SIGTERM
	for sig in HUP QUIT TERM; do
		profile_run_start sig
		kill -$sig $pid
		wait $pid
		rc=$?
		left=$(own_cpusets $pid)
		if [ $rc -lt 129 ] || [ -n "$left" ] || [ "$(rt_runtime)" != "$rt0" ]; then
			echo "FAIL: SIG$sig: exit $rc, cpusets left: '$left', sched_rt_runtime_us" \
				"$(rt_runtime) (was $rt0): $(cat "$tmp/sig.err")"
			fail=1
			rmdir $left 2>/dev/null
			[ "$rt0" = none ] || echo "$rt0" >/proc/sys/kernel/sched_rt_runtime_us
		else
			echo "ok: SIG$sig: exit $rc, nothing left: $(tail -1 "$tmp/sig.err")"
		fi
	done
	# an unwritable --json path fails at once, before anything is created
	for args in "-D 3s $src/rt-configs/dev-2cpu.yaml" "-D 3s"; do
		t0=$(date +%s%N)
		"$bin" run --json="$tmp/no/such/dir.json" $args >"$tmp/out" 2>"$tmp/err" &
		pid=$!
		wait $pid
		rc=$?
		ms=$((($(date +%s%N) - t0) / 1000000))
		left=$(own_cpusets $pid)
		if [ $rc -ne 2 ] || [ $ms -gt 2000 ] || [ -n "$left" ] || [ "$(rt_runtime)" != "$rt0" ] ||
			! grep -q -- "--json: cannot write" "$tmp/err"; then
			echo "FAIL: run --json=unwritable $args: exit $rc after $ms ms, cpusets" \
				"'$left', sched_rt_runtime_us $(rt_runtime): $(cat "$tmp/err")"
			fail=1
			rmdir $left 2>/dev/null
			[ "$rt0" = none ] || echo "$rt0" >/proc/sys/kernel/sched_rt_runtime_us
		else
			echo "ok: run --json=unwritable $args: exit 2 after $ms ms: $(cat "$tmp/err")"
		fi
	done
	# a cpuset left by a killed run (its process is gone) is removed by the next run
	if [ -f /sys/fs/cgroup/cpuset/cpuset.cpus ]; then
		sh -c 'exit 0' &
		dead=$!
		wait $dead
		stale=/sys/fs/cgroup/cpuset/rtioreq-$dead-cpu1
		mkdir "$stale" && echo 1 >"$stale/cpuset.cpus" &&
			cat /sys/fs/cgroup/cpuset/cpuset.mems >"$stale/cpuset.mems" &&
			echo 1 >"$stale/cpuset.cpu_exclusive"
		"$bin" run -n 20k "$src/rt-configs/dev-2cpu.yaml" >"$tmp/st.txt" 2>"$tmp/st.err"
		rc=$?
		if [ -d "$stale" ] || [ $rc -ne 0 ] ||
			! grep -q "^rtio-poll0: .*cpuset /rtioreq-[0-9]*-cpu1$" "$tmp/st.txt"; then
			echo "FAIL: stale cpuset $stale: exit $rc, $(cat "$tmp/st.txt" "$tmp/st.err")"
			rmdir "$stale" 2>/dev/null
			fail=1
		else
			echo "ok: stale cpuset removed: $(grep stale "$tmp/st.err")"
		fi
	fi
	# real-time throttling: named by check --host; a profile that does not say is refused
	if [ "$rt0" != none ] && [ "$rt0" -ge 0 ]; then
		sed '/^rt_throttling:/d' "$src/rt-configs/dev-2cpu.yaml" >"$tmp/nothrottle.yaml"
		"$bin" check --host "$tmp/nothrottle.yaml" >"$tmp/out" 2>"$tmp/err"
		rc=$?
		[ $rc -eq 2 ] && grep -q "sched_rt_runtime_us is $rt0 .* rt_throttling: off" "$tmp/err" ||
			{ echo "FAIL: check --host without rt_throttling: exit $rc $(cat "$tmp/err")"; fail=1; }
		"$bin" run -n 1k "$tmp/nothrottle.yaml" >"$tmp/out" 2>"$tmp/err"
		rc=$?
		if [ $rc -eq 2 ] && grep -q "for [0-9]* ms of every [0-9]* ms" "$tmp/err"; then
			echo "ok: throttled RT poller refused: $(head -1 "$tmp/err")"
		else
			echo "FAIL: run without rt_throttling: exit $rc $(cat "$tmp/err")"
			fail=1
		fi
		"$bin" check --host "$src/rt-configs/dev-2cpu.yaml" | grep -q "^host: .*rt_throttling: off sets it to -1" ||
			{ echo "FAIL: check --host dev-2cpu names no throttling"; fail=1; }
		# off: -1 while running, restored after
		profile_run_start sig
		during=$(rt_runtime)
		kill -INT $pid
		wait $pid
		if [ "$during" = -1 ] && [ "$(rt_runtime)" = "$rt0" ]; then
			echo "ok: rt_throttling: off: sched_rt_runtime_us -1 during the run, $rt0 after"
		else
			echo "FAIL: rt_throttling off: $during during, $(rt_runtime) after (was $rt0)"
			fail=1
			echo "$rt0" >/proc/sys/kernel/sched_rt_runtime_us
		fi
	fi
fi

# hv removes its /dev/shm region when a signal stops it
for sig in INT:2 TERM:15; do
	num=${sig#*:}
	sig=${sig%:*}
	name="/rtioreq-clitest-sig-$$"
	"$bin" hv -S "$name" -D 60s >/dev/null 2>"$tmp/hv.err" &
	pid=$!
	i=0
	while [ ! -e "/dev/shm$name" ] && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -$sig $pid
	wait $pid
	rc=$?
	if [ -e "/dev/shm$name" ] || [ $rc -ne $((128 + num)) ]; then
		echo "FAIL: hv SIG$sig: exit $rc, /dev/shm$name $(ls /dev/shm$name 2>&1)"
		rm -f "/dev/shm$name"
		fail=1
	else
		echo "ok: hv SIG$sig: $(cat "$tmp/hv.err")"
	fi
done

exit $fail
