// SPDX-License-Identifier: MIT
/*
 * rtioreq-bench: every latency benchmark of issue 3 in one run, one process, one
 * machine; writes the results folder (see report.c). bench/run.sh is the front end.
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

struct bench_cfg bench_cfg;
struct bench_results bench_res;

static const char *const phases =
    "pingpong,polling,hybrid,fallback,acrn,lookup,updates,scale,hygiene,cyclictest";

static void usage(FILE *f)
{
	fprintf(f,
		"usage: rtioreq-bench --out=DIR [OPTIONS]\n"
		"Latency benchmarks of rtioreq (issue 3), all in one run: cache-line and futex\n"
		"ping-pongs, the engine's polling and fallback paths through the simulated\n"
		"hypervisor, an ACRN-style HSM baseline, lookup scaling, range updates under\n"
		"load, hot-path hygiene counters and cyclictest. Writes results.json, report.md,\n"
		"cyclictest-format histograms (*.hist, *.json), *.cdf and latency.gp into DIR.\n"
		"Needs root (SCHED_FIFO, perf counters, /dev/cpu_dma_latency) and 2 CPUs.\n"
		"\n"
		"  -o, --out=DIR            results folder (created if missing); required\n"
		"  -q, --quick              short runs (1 s per run that is not interleaved,\n"
		"                           7 slices of 150 ms per side, 3 s cyclictest): about a\n"
		"                           minute; default: full (5 s, 9 x 500 ms, 10 s)\n"
		"  -D, --duration=SECS      seconds per latency run that is not interleaved\n"
		"                           (overrides the default)\n"
		"  -S, --slice=MS           ms per side per slice of an interleaved phase;\n"
		"                           default 500 (quick: 150)\n"
		"  -n, --slices=N           slices per interleaved phase, 1..%d; default 9\n"
		"                           (quick: 7)\n"
		"  -e, --engine-cpu=CPU     CPU of the engine side (poller, dispatcher, clients,\n"
		"                           servers of the ping-pongs); default the last CPU\n"
		"  -c, --producer-cpu=CPU   CPU of the simulated hypervisor and of cyclictest;\n"
		"                           default 0\n"
		"  -p, --priority=PRIO      SCHED_FIFO priority 1..99 of the blocking engine-side\n"
		"                           threads (dispatcher, client threads, ACRN-style\n"
		"                           worker and handlers, futex server); 0 = SCHED_OTHER;\n"
		"                           default 50. Spinning threads are always SCHED_OTHER.\n"
		"  -u, --unmapped=PCT       share of requests to an unclaimed port, default 0\n"
		"  -r, --update-rate=N      range changes per second under load, default 10000\n"
		"  -P, --phases=LIST        comma list, default all: %s\n"
		"  -T, --fallback-thread    the example devices' clients set handler_thread: their\n"
		"                           fallback handlers run on client threads (upcall ->\n"
		"                           dispatcher -> client thread), not inline on the\n"
		"                           dispatcher (the default)\n"
		"  -M, --no-mlock           do not mlockall() (default: lock current and future)\n"
		"  -w, --wait-quiet=SECS    first wait up to SECS for a quiet machine (other\n"
		"                           processes below 5%% of the CPUs over 1 s);\n"
		"                           default 30 (quick: 10), 0: do not wait\n"
		"  -h, --help\n"
		"Output: human lines start with '#', one 'SUMMARY key=value ...' line per run.\n"
		"Exit status: 0 done, 1 a measurement failed (a request lost, duplicated or\n"
		"wrong, a thread not started), 2 bad usage.\n",
		BENCH_MAX_SLICES, phases);
}

static long num(const char *opt, const char *s, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "rtioreq-bench: %s: '%s' is not a number in %ld..%ld\n", opt, s, lo,
			hi);
		exit(2);
	}
	return v;
}

static void check_cpu(const char *opt, int cpu)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) || cpu < 0 || cpu >= CPU_SETSIZE ||
	    !CPU_ISSET(cpu, &set)) {
		fprintf(stderr, "rtioreq-bench: %s: CPU %d is not available to this process\n", opt,
			cpu);
		exit(2);
	}
}

static void parse(int argc, char **argv)
{
	static const struct option lo[] = {{"out", required_argument, NULL, 'o'},
					   {"quick", no_argument, NULL, 'q'},
					   {"duration", required_argument, NULL, 'D'},
					   {"slice", required_argument, NULL, 'S'},
					   {"slices", required_argument, NULL, 'n'},
					   {"engine-cpu", required_argument, NULL, 'e'},
					   {"producer-cpu", required_argument, NULL, 'c'},
					   {"priority", required_argument, NULL, 'p'},
					   {"unmapped", required_argument, NULL, 'u'},
					   {"update-rate", required_argument, NULL, 'r'},
					   {"phases", required_argument, NULL, 'P'},
					   {"no-mlock", no_argument, NULL, 'M'},
					   {"fallback-thread", no_argument, NULL, 'T'},
					   {"wait-quiet", required_argument, NULL, 'w'},
					   {"help", no_argument, NULL, 'h'},
					   {0}};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN), dur = 0, wait = -1, slice_ms = 0, slices = 0;
	bool nomlock = false;
	int c;

	bench_cfg = (struct bench_cfg){.engine_cpu = (int)ncpu - 1,
				       .producer_cpu = 0,
				       .prio = 50,
				       .update_rate = 10000,
				       .update_batch = 10};
	while ((c = getopt_long(argc, argv, "o:qD:S:n:e:c:p:u:r:P:MTw:h", lo, NULL)) != -1) {
		switch (c) {
		case 'o':
			bench_cfg.out = optarg;
			break;
		case 'q':
			bench_cfg.quick = true;
			break;
		case 'D':
			dur = num("--duration", optarg, 1, 600);
			break;
		case 'S':
			slice_ms = num("--slice", optarg, 10, 10000);
			break;
		case 'n':
			slices = num("--slices", optarg, 1, BENCH_MAX_SLICES);
			break;
		case 'e':
			bench_cfg.engine_cpu = (int)num("--engine-cpu", optarg, 0, 4095);
			break;
		case 'c':
			bench_cfg.producer_cpu = (int)num("--producer-cpu", optarg, 0, 4095);
			break;
		case 'p':
			bench_cfg.prio = (int)num("--priority", optarg, 0, 99);
			break;
		case 'u':
			bench_cfg.unmapped = (unsigned int)num("--unmapped", optarg, 0, 100);
			break;
		case 'r':
			bench_cfg.update_rate = (double)num("--update-rate", optarg, 10, 1000000);
			break;
		case 'P':
			bench_cfg.only = optarg;
			break;
		case 'M':
			nomlock = true;
			break;
		case 'T':
			bench_cfg.fallback_thread = true;
			break;
		case 'w':
			wait = num("--wait-quiet", optarg, 0, 3600);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc || !bench_cfg.out) {
		fprintf(stderr, "rtioreq-bench: %s (see --help)\n",
			optind < argc ? "unexpected argument" : "--out=DIR is required");
		exit(2);
	}
	check_cpu("--engine-cpu", bench_cfg.engine_cpu);
	check_cpu("--producer-cpu", bench_cfg.producer_cpu);
	if (bench_cfg.engine_cpu == bench_cfg.producer_cpu) {
		fprintf(stderr, "rtioreq-bench: the engine and the hypervisor need two CPUs\n");
		exit(2);
	}
	if (bench_cfg.quick) {
		bench_cfg.run_ns = 1000000000ull;
		bench_cfg.short_ns = 500000000ull;
		bench_cfg.warm_ns = 100000000ull;
		bench_cfg.cyc_s = 3;
		bench_cfg.hyg_requests = 300000;
		bench_cfg.lookup_ms = 20;
		bench_cfg.slice_ns = 150000000ull;
		bench_cfg.slice_warm_ns = 20000000ull;
		bench_cfg.slices = 7;
	} else {
		bench_cfg.run_ns = 5000000000ull;
		bench_cfg.short_ns = 3000000000ull;
		bench_cfg.warm_ns = 300000000ull;
		bench_cfg.cyc_s = 10;
		bench_cfg.hyg_requests = 1000000;
		bench_cfg.lookup_ms = 100;
		bench_cfg.slice_ns = 500000000ull;
		bench_cfg.slice_warm_ns = 50000000ull;
		bench_cfg.slices = 9;
	}
	if (slice_ms)
		bench_cfg.slice_ns = (uint64_t)slice_ms * 1000000ull;
	if (slices)
		bench_cfg.slices = (unsigned int)slices;
	bench_cfg.wait_quiet_s = wait >= 0 ? (unsigned int)wait : bench_cfg.quick ? 10 : 30;
	if (dur)
		bench_cfg.run_ns = (uint64_t)dur * 1000000000ull;
	if (mkdir(bench_cfg.out, 0755) && errno != EEXIST) {
		fprintf(stderr, "rtioreq-bench: mkdir %s: %s\n", bench_cfg.out, strerror(errno));
		exit(2);
	}
	if (!nomlock && mlockall(MCL_CURRENT | MCL_FUTURE))
		printf("# mlockall failed (%s): page faults may show in the tails\n",
		       strerror(errno));
}

/* Shared machines: wait (bounded) until other processes leave the CPUs alone. */
static void wait_quiet(void)
{
	uint64_t until = bench_now_ns() + bench_cfg.wait_quiet_s * 1000000000ull;

	while (bench_cfg.wait_quiet_s) {
		struct bench_noise n;
		double pct;

		bench_noise_start(&n);
		bench_sleep_ns(1000000000ull);
		pct = bench_noise_foreign_pct(&n);
		if (pct < 5) {
			printf(
			    "# machine quiet: other processes used %.1f%% of the CPUs over 1 s\n",
			    pct);
			return;
		}
		if (bench_now_ns() >= until) {
			printf("# machine still busy after %u s (other processes: %.1f%% of the "
			       "CPUs): running anyway, expect noisy figures\n",
			       bench_cfg.wait_quiet_s, pct);
			return;
		}
		printf("# waiting for a quiet machine: other processes use %.1f%% of the CPUs\n",
		       pct);
	}
}

int main(int argc, char **argv)
{
	uint64_t t0 = bench_now_ns();
	struct bench_noise noise;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse(argc, argv);
	printf("# rtioreq-bench %s run, results in %s\n", bench_cfg.quick ? "quick" : "full",
	       bench_cfg.out);
	bench_machine_info();
	wait_quiet();
	bench_noise_start(&noise);
	{
		double la[3] = {0};
		FILE *f = fopen("/proc/loadavg", "r");

		if (f) {
			if (fscanf(f, "%lf %lf %lf", &la[0], &la[1], &la[2]) != 3)
				la[0] = 0;
			fclose(f);
		}
		printf("# load average at start: %.2f %.2f %.2f\n", la[0], la[1], la[2]);
	}
	printf("# topology: engine side on CPU %d, simulated hypervisor / ping-pong clients on "
	       "CPU %d; blocking engine-side threads %s %d; spinning threads SCHED_OTHER\n",
	       bench_cfg.engine_cpu, bench_cfg.producer_cpu,
	       bench_cfg.prio ? "SCHED_FIFO" : "SCHED_OTHER", bench_cfg.prio);
	bench_clock_overhead();

	if (bench_phase("pingpong")) {
		printf("#\n# 1. physical limit\n");
		bench_cacheline(false);
	}
	if (bench_phase("polling")) {
		printf("#\n# 2. engine, polling mode, interleaved with the cache-line ping-pong\n");
		bench_polling();
	}
	/* fallback, hybrid idle and the ACRN-style dispatch against the futex floor */
	for (int dma = 1; dma >= 0; dma--) {
		if (!bench_phase("fallback") && !bench_phase("hybrid") && !bench_phase("acrn"))
			break;
		printf("#\n# 3. wake-up paths, interleaved: raw futex, fallback%s%s; "
		       "/dev/cpu_dma_latency %s\n",
		       bench_phase("acrn") ? ", ACRN-style HSM (notify)" : "",
		       bench_phase("hybrid") ? ", hybrid idle" : "", dma ? "held at 0" : "not held");
		bench_wakeups(dma, bench_phase("acrn"), bench_phase("hybrid"));
	}
	if (bench_phase("acrn")) {
		printf(
		    "#\n# 4. ACRN-style HSM baseline with completion polling (partition mode)\n");
		bench_acrn_cpoll();
	}
	if (bench_phase("lookup")) {
		printf("#\n# 4. lookup scaling\n");
		bench_lookup();
	}
	if (bench_phase("updates")) {
		printf("#\n# 5. range updates under load\n");
		bench_updates();
	}
	if (bench_phase("scale")) {
		printf("#\n# 5b. scale: 1, 16, 64 VMs of 16 vCPUs\n");
		bench_scale();
	}
	if (bench_phase("hygiene")) {
		printf("#\n# 7. hot-path hygiene\n");
		bench_hygiene();
	}
	if (bench_phase("cyclictest")) {
		printf("#\n# 6. cyclictest\n");
		bench_cyclictest();
	}
	if (bench_phase("pingpong")) {
		printf("#\n# 1. physical limit again: did the host move our vCPUs meanwhile?\n");
		bench_cacheline(true);
	}
	bench_res.runtime_s = (double)(bench_now_ns() - t0) / 1e9;
	bench_res.foreign_pct = bench_noise_foreign_pct(&noise);
	printf("#\n# writing %s (run time %.1f s; other processes used %.1f%% of the CPUs)\n",
	       bench_cfg.out, bench_res.runtime_s, bench_res.foreign_pct);
	printf("SUMMARY bench=run secs=%.1f foreign_cpu_pct=%.1f\n", bench_res.runtime_s,
	       bench_res.foreign_pct);
	bench_write_results();
	return 0;
}
