// SPDX-License-Identifier: MIT
/* rtioreq: command dispatch, option parsing helpers and the run report. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

const char *cli_cmd = "";

void cli_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "rtioreq%s%s: ", *cli_cmd ? " " : "", cli_cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(CLI_EXIT_USAGE);
}

uint64_t cli_u64(const char *opt, const char *s, uint64_t min, uint64_t max)
{
	char *end;
	uint64_t v, mul = 1;

	errno = 0;
	if (!s || !*s || *s == '-' || isspace((unsigned char)*s))
		cli_die("%s: '%s' is not a number", opt, s ? s : "");
	v = strtoull(s, &end, 0);
	if (errno == ERANGE)
		cli_die("%s: '%s' is too large", opt, s);
	if (end == s)
		cli_die("%s: '%s' is not a number", opt, s);
	if (*end == 'k' || *end == 'K')
		mul = 1000, end++;
	else if (*end == 'M')
		mul = 1000000, end++;
	else if (*end == 'G')
		mul = 1000000000, end++;
	if (*end)
		cli_die("%s: '%s' is not a number (suffixes: k, M, G)", opt, s);
	if (v > UINT64_MAX / mul)
		cli_die("%s: '%s' is too large", opt, s);
	v *= mul;
	if (v < min || v > max)
		cli_die("%s: %s is out of range %llu..%llu", opt, s, (unsigned long long)min,
			(unsigned long long)max);
	return v;
}

uint64_t cli_duration(const char *opt, const char *s)
{
	static const struct {
		const char *sfx;
		double ns;
	} units[] = { { "ns", 1 }, { "us", 1e3 }, { "ms", 1e6 }, { "s", 1e9 },
		      { "m", 60e9 }, { "h", 3600e9 }, { "", 1e9 } };
	char *end;
	double v;

	errno = 0;
	if (!s || !*s || isspace((unsigned char)*s))
		cli_die("%s: '%s' is not a duration", opt, s ? s : "");
	v = strtod(s, &end);
	if (end == s || errno || !isfinite(v) || v <= 0)
		cli_die("%s: '%s' is not a positive duration", opt, s);
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].sfx))
			continue;
		v *= units[i].ns;
		if (v < 1 || v > 1e15)
			cli_die("%s: '%s' is out of range 1ns..11d", opt, s);
		return (uint64_t)v;
	}
	cli_die("%s: '%s' has an unknown unit (ns, us, ms, s, m, h)", opt, s);
}

unsigned int cli_cpulist(const char *opt, const char *s, int *cpus, unsigned int max)
{
	unsigned int n = 0;
	const char *p = s;

	if (!*s)
		cli_die("%s: empty CPU list", opt);
	while (*p) {
		char *end;
		long a, b;

		if (!isdigit((unsigned char)*p))
			cli_die("%s: '%s' is not a CPU list (e.g. 1,3-5)", opt, s);
		a = b = strtol(p, &end, 10);
		if (*end == '-') {
			p = end + 1;
			if (!isdigit((unsigned char)*p))
				cli_die("%s: '%s' is not a CPU list (e.g. 1,3-5)", opt, s);
			b = strtol(p, &end, 10);
		}
		if (a > b || b >= 4096)
			cli_die("%s: bad CPU range in '%s'", opt, s);
		for (long c = a; c <= b; c++) {
			if (n == max)
				cli_die("%s: more than %u CPUs in '%s'", opt, max, s);
			cpus[n++] = (int)c;
		}
		p = end;
		if (*p == ',' && p[1])
			p++;
		else if (*p)
			cli_die("%s: '%s' is not a CPU list (e.g. 1,3-5)", opt, s);
	}
	return n;
}

bool cli_mode(const char *opt, const char *s)
{
	if (!strcmp(s, "polling"))
		return true;
	if (!strcmp(s, "notify"))
		return false;
	cli_die("%s: '%s' is not a mode (polling, notify)", opt, s);
}

FILE *cli_json_open(const char *file)
{
	FILE *f;

	if (!file || !strcmp(file, "-"))
		return stdout;
	f = fopen(file, "w");
	if (!f)
		cli_die("--json: cannot write %s: %s", file, strerror(errno));
	return f;
}

int cli_check_cpu(const char *opt, int cpu)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set))
		cli_die("sched_getaffinity: %s", strerror(errno));
	if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &set))
		cli_die("%s: CPU %d is not available to this process (%d online)", opt, cpu,
			cli_online_cpus());
	return cpu;
}

int cli_online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (int)n : 1;
}

static const struct {
	const char *label, *key;
	double p;
} pcts[] = { { "p50", "p50", 50 },	    { "p90", "p90", 90 },
	     { "p99", "p99", 99 },	    { "p99.9", "p999", 99.9 },
	     { "p99.99", "p9999", 99.99 } };

static double throughput(const struct rtioreq_sim_result *res)
{
	return res->ns ? (double)res->completed * 1e9 / (double)res->ns : 0.0;
}

void cli_report_text(FILE *f, const struct cli_report *r)
{
	const struct rtioreq_sim_result *res = r->res;
	const struct rtioreq_hist *h = &res->rtt;

	fprintf(f, "mode %s, %u vCPUs, %u poller%s\n", r->mode, r->vcpus, r->pollers,
		r->pollers == 1 ? "" : "s");
	fprintf(f, "requests %llu  completed %llu  lost %llu  duplicated %llu  mismatched %llu\n",
		(unsigned long long)res->requests, (unsigned long long)res->completed,
		(unsigned long long)res->lost, (unsigned long long)res->duplicated,
		(unsigned long long)res->mismatched);
	if (r->st)
		fprintf(f, "engine: invalid %llu  handler_errors %llu  unclaimed %llu  polled %llu  "
			   "fallback %llu  notified %llu\n",
			(unsigned long long)r->st->invalid, (unsigned long long)r->st->handler_errors,
			(unsigned long long)r->st->unclaimed, (unsigned long long)r->st->polled,
			(unsigned long long)r->st->fallback, (unsigned long long)r->st->notified);
	fprintf(f, "upcalls %llu  poller sleeps %llu  duration %.3f s  throughput %.0f requests/s\n",
		(unsigned long long)res->upcalls, (unsigned long long)r->sleeps,
		(double)res->ns / 1e9, throughput(res));
	fprintf(f, "round trip ns: min %llu", (unsigned long long)(h->count ? h->min : 0));
	for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++)
		fprintf(f, "  %s %llu", pcts[i].label,
			(unsigned long long)rtioreq_hist_percentile(h, pcts[i].p));
	fprintf(f, "  max %llu  mean %.0f\n", (unsigned long long)h->max,
		rtioreq_hist_mean(h));
	if (cli_report_verdict(r))
		fprintf(f, "FAILED: not every request completed exactly once with its value\n");
}

void cli_report_json(FILE *f, const struct cli_report *r)
{
	const struct rtioreq_sim_result *res = r->res;
	const struct rtioreq_hist *h = &res->rtt;
	const struct rtioreq_vm_stats *st = r->st;

	fprintf(f, "{\"mode\": \"%s\", \"vcpus\": %u, \"pollers\": %u, ", r->mode, r->vcpus,
		r->pollers);
	fprintf(f, "\"requests\": %llu, \"completed\": %llu, \"lost\": %llu, "
		   "\"duplicated\": %llu, \"mismatched\": %llu, ",
		(unsigned long long)res->requests, (unsigned long long)res->completed,
		(unsigned long long)res->lost, (unsigned long long)res->duplicated,
		(unsigned long long)res->mismatched);
	if (st)
		fprintf(f, "\"invalid\": %llu, \"handler_errors\": %llu, \"unclaimed\": %llu, ",
			(unsigned long long)st->invalid, (unsigned long long)st->handler_errors,
			(unsigned long long)st->unclaimed);
	else
		fprintf(f, "\"invalid\": null, \"handler_errors\": null, \"unclaimed\": null, ");
	fprintf(f, "\"upcalls\": %llu, \"poller_sleeps\": %llu, \"duration_s\": %.6f, "
		   "\"throughput_rps\": %.0f, ",
		(unsigned long long)res->upcalls, (unsigned long long)r->sleeps,
		(double)res->ns / 1e9, throughput(res));
	fprintf(f, "\"latency_ns\": {\"min\": %llu", (unsigned long long)(h->count ? h->min : 0));
	for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++)
		fprintf(f, ", \"%s\": %llu", pcts[i].key,
			(unsigned long long)rtioreq_hist_percentile(h, pcts[i].p));
	fprintf(f, ", \"max\": %llu, \"mean\": %.1f}", (unsigned long long)h->max,
		rtioreq_hist_mean(h));
	if (st)
		fprintf(f, ", \"engine\": {\"dispatched\": %llu, \"completed\": %llu, "
			   "\"polled\": %llu, \"fallback\": %llu, \"cleared\": %llu, "
			   "\"forced\": %llu, \"notified\": %llu}",
			(unsigned long long)st->dispatched, (unsigned long long)st->completed,
			(unsigned long long)st->polled, (unsigned long long)st->fallback,
			(unsigned long long)st->cleared, (unsigned long long)st->forced,
			(unsigned long long)st->notified);
	fprintf(f, ", \"ok\": %s}\n", cli_report_verdict(r) ? "false" : "true");
}

int cli_report_verdict(const struct cli_report *r)
{
	const struct rtioreq_sim_result *res = r->res;

	if (res->lost || res->duplicated || res->mismatched || res->completed != res->requests ||
	    (r->requested && res->requests != r->requested))
		return CLI_EXIT_FAIL;
	if (r->st && (r->st->invalid || r->st->handler_errors))
		return CLI_EXIT_FAIL; /* the simulated workload issues only valid requests */
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: rtioreq COMMAND [OPTIONS]\n"
		"\n"
		"commands:\n"
		"  run     simulated VM + engine in one process; prints counts and round-trip\n"
		"          latency (the demo: 'rtioreq run' with no options)\n"
		"  serve   the engine side of a region created by another process (hv)\n"
		"  hv      the simulated hypervisor side: creates a region, drives vCPUs\n"
		"  check   validate a real-time profile (rt-configs/) and print its plan\n"
		"  kvm     boot a Linux guest under /dev/kvm through the engine (docs/kvm.md)\n"
		"\n"
		"'rtioreq COMMAND --help' lists a command's options.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	cli_cmd = argv[1];
	if (!strcmp(argv[1], "run"))
		return cli_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "serve"))
		return cli_serve(argc - 1, argv + 1);
	if (!strcmp(argv[1], "hv"))
		return cli_hv(argc - 1, argv + 1);
	if (!strcmp(argv[1], "check"))
		return cli_check(argc - 1, argv + 1);
	if (!strcmp(argv[1], "kvm"))
		return cli_kvm(argc - 1, argv + 1);
	cli_cmd = "";
	cli_die("unknown command '%s' (run, serve, hv, check, kvm; see rtioreq --help)", argv[1]);
}
