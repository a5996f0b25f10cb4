// SPDX-License-Identifier: MIT
/*
 * cyclictest (rt-tests) on the non-poller CPU, idle and with the engine busy, and the
 * engine's own distributions written in cyclictest's formats:
 *  - NAME.hist: the text of `cyclictest -h 400 -q`: "# Histogram", one line per
 *    microsecond bucket "%06d %06lu", then # Total / # Min Latencies / # Avg Latencies
 *    / # Max Latencies / # Histogram Overflows lines;
 *  - NAME.json: the shape of `cyclictest --json` (file_version 1, sysinfo,
 *    num_threads, resolution_in_ns, thread."0".{histogram, cycles, min, max, avg,
 *    cpu, node}), latencies in microseconds.
 * cyclictest itself is run as
 *   cyclictest -m -p 90 -i 200 -a CPU -t 1 -D SECS --json=FILE -q -h 400
 * and its JSON file is parsed; p99 comes from its histogram. Note: cyclictest holds
 * /dev/cpu_dma_latency at 0 while it runs (its default).
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>

#include "bench.h"

extern char **environ;

static FILE *out_open(const char *name, const char *ext)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s%s", bench_cfg.out, name, ext);
	f = fopen(path, "w");
	if (!f)
		bench_die("%s: %s", path, strerror(errno));
	return f;
}

/* The histogram in 1-us buckets: a log-linear bucket goes to the us of its midpoint. */
static void us_buckets(const struct rtioreq_hist *h, uint64_t *us, uint64_t *over)
{
	*over = 0;
	memset(us, 0, BENCH_HIST_US * sizeof(*us));
	for (unsigned int i = 0; i < RTIOREQ_HIST_BUCKETS; i++) {
		uint64_t lo, hi, mid;

		if (!h->bucket[i])
			continue;
		rtioreq_hist_bucket_range(i, &lo, &hi);
		mid = lo + (hi - lo) / 2;
		if (i == RTIOREQ_HIST_BUCKETS - 1 || mid / 1000 >= BENCH_HIST_US)
			*over += h->bucket[i];
		else
			us[mid / 1000] += h->bucket[i];
	}
}

void bench_write_cyclictest_files(const struct bench_dist *d)
{
	uint64_t *us = calloc(BENCH_HIST_US, sizeof(*us)), over;
	struct utsname u;
	char tbuf[64];
	time_t now = time(NULL);
	FILE *f;
	bool first = true;

	if (!us)
		bench_die("out of memory");
	us_buckets(&d->h, us, &over);
	f = out_open(d->name, ".hist");
	fprintf(f, "# rtioreq-bench %s: %s, 1 us buckets (cyclictest -h %u format)\n", d->name,
		d->label, BENCH_HIST_US);
	fprintf(f, "# Histogram\n");
	for (unsigned int i = 0; i < BENCH_HIST_US; i++)
		fprintf(f, "%06u %06lu\n", i, (unsigned long)us[i]);
	fprintf(f, "# Total: %09lu\n", (unsigned long)d->h.count);
	fprintf(f, "# Min Latencies: %05lu\n", (unsigned long)(d->h.count ? d->h.min / 1000 : 0));
	fprintf(f, "# Avg Latencies: %05lu\n", (unsigned long)(rtioreq_hist_mean(&d->h) / 1000));
	fprintf(f, "# Max Latencies: %05lu\n", (unsigned long)(d->h.max / 1000));
	fprintf(f, "# Histogram Overflows: %05lu\n", (unsigned long)over);
	fprintf(f, "# Histogram Overflow at cycle number:\n# Thread 0:\n\n");
	if (fclose(f))
		bench_die("writing %s.hist: %s", d->name, strerror(errno));

	uname(&u);
	strftime(tbuf, sizeof(tbuf), "%a, %d %b %Y %H:%M:%S %z", gmtime(&now));
	f = out_open(d->name, ".json");
	fprintf(f, "{\n  \"file_version\": 1,\n  \"cmdline:\": \"rtioreq-bench %s\",\n", d->name);
	fprintf(f, "  \"rt_test_version:\": \"rtioreq-bench\",\n");
	fprintf(f, "  \"start_time\": \"%s\",\n  \"end_time\": \"%s\",\n", tbuf, tbuf);
	fprintf(f,
		"  \"return_code\": 0,\n  \"sysinfo\": {\n    \"sysname\": \"%s\",\n"
		"    \"nodename\": \"%s\",\n    \"release\": \"%s\",\n    \"version\": \"%s\",\n"
		"    \"machine\": \"%s\",\n    \"realtime\": 0\n  },\n",
		u.sysname, u.nodename, u.release, u.version, u.machine);
	fprintf(f, "  \"num_threads\": 1,\n  \"resolution_in_ns\": %lu,\n",
		(unsigned long)bench_res.clock_ns_p50);
	fprintf(f, "  \"thread\": {\n    \"0\": {\n      \"histogram\": {");
	for (unsigned int i = 0; i < BENCH_HIST_US; i++) {
		if (!us[i])
			continue;
		fprintf(f, "%s\n        \"%u\": %lu", first ? "" : ",", i, (unsigned long)us[i]);
		first = false;
	}
	fprintf(f,
		"\n      },\n      \"cycles\": %lu,\n      \"min\": %lu,\n      \"max\": %lu,\n"
		"      \"avg\": %.2f,\n      \"cpu\": %d,\n      \"node\": 0\n    }\n  }\n}\n",
		(unsigned long)d->h.count, (unsigned long)(d->h.count ? d->h.min / 1000 : 0),
		(unsigned long)(d->h.max / 1000), rtioreq_hist_mean(&d->h) / 1000.0,
		bench_cfg.producer_cpu);
	if (fclose(f))
		bench_die("writing %s.json: %s", d->name, strerror(errno));
	free(us);
}

/* ---------------------------------------------------------------------------------- */
/* Reading cyclictest's JSON: only the fields we need, in the layout cyclictest writes. */

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	if (buf)
		buf[n] = 0;
	fclose(f);
	return buf;
}

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
		p++;
	return p;
}

/* Value of "key": NUMBER found after @from; false if absent. */
static bool json_num(const char *from, const char *key, double *v)
{
	char pat[64];
	const char *p;
	char *end;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(from, pat);
	if (!p)
		return false;
	*v = strtod(p + strlen(pat), &end);
	return end != p + strlen(pat);
}

static bool parse_cyclictest(const char *path, struct bench_cyclic *c)
{
	char *buf = slurp(path), *end;
	const char *p;
	uint64_t *hist = calloc(BENCH_HIST_US, sizeof(*hist)), sum = 0, acc = 0, target;
	double v;

	if (!buf || !hist)
		goto fail;
	p = strstr(buf, "\"thread\":");
	p = p ? strstr(p, "\"0\":") : NULL;
	p = p ? strstr(p, "\"histogram\":") : NULL;
	p = p ? strchr(p, '{') : NULL;
	if (!p)
		goto fail;
	for (p = skip_ws(p + 1); *p == '"';) {
		unsigned long b = strtoul(p + 1, &end, 10);
		unsigned long long n;

		p = skip_ws(end + 1); /* past the closing quote */
		if (*p != ':')
			goto fail;
		n = strtoull(p + 1, &end, 10);
		if (b < BENCH_HIST_US)
			hist[b] += n;
		sum += n;
		p = skip_ws(end);
		if (*p == ',')
			p = skip_ws(p + 1);
	}
	if (*p != '}')
		goto fail;
	if (!json_num(p, "cycles", &v))
		goto fail;
	c->cycles = (uint64_t)v;
	if (!json_num(p, "min", &v))
		goto fail;
	c->min_us = (uint64_t)v;
	if (!json_num(p, "max", &v))
		goto fail;
	c->max_us = (uint64_t)v;
	if (!json_num(p, "avg", &v))
		goto fail;
	c->avg_us = v;
	/* cycles not in the histogram are its overflows (>= -h) */
	c->overflows = c->cycles > sum ? c->cycles - sum : 0;
	target = (c->cycles * 99 + 99) / 100;
	c->p99_us = -1;
	for (unsigned int i = 0; i < BENCH_HIST_US; i++) {
		acc += hist[i];
		if (acc >= target && target) {
			c->p99_us = i;
			break;
		}
	}
	free(buf);
	free(hist);
	return true;
fail:
	free(buf);
	free(hist);
	return false;
}

static void run_cyclictest(struct bench_cyclic *c)
{
	char dflag[32], aflag[16], jflag[600], txt[512], json[512];
	char *argv[] = {"cyclictest", "-m", "-p",  "90",  "-i", "200", "-a",  aflag, "-t",
			"1",	      "-D", dflag, jflag, "-q", "-h",  "400", NULL};
	posix_spawn_file_actions_t fa;
	struct bench_noise noise;
	pid_t pid;
	int st, rc;

	snprintf(dflag, sizeof(dflag), "%u", bench_cfg.cyc_s);
	snprintf(aflag, sizeof(aflag), "%d", bench_cfg.producer_cpu);
	snprintf(json, sizeof(json), "%s/cyclictest-%s.json", bench_cfg.out, c->name);
	snprintf(jflag, sizeof(jflag), "--json=%s", json);
	snprintf(txt, sizeof(txt), "%s/cyclictest-%s.hist", bench_cfg.out, c->name);
	bench_noise_start(&noise);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, txt, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	rc = posix_spawnp(&pid, "cyclictest", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc) {
		printf("# cyclictest could not be started: %s\n", strerror(rc));
		return;
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		printf("# cyclictest (%s) failed: status %d\n", c->name, st);
		return;
	}
	c->foreign_pct = bench_noise_foreign_pct(&noise);
	c->ok = parse_cyclictest(json, c);
	if (!c->ok)
		printf("# cyclictest (%s): cannot parse %s\n", c->name, json);
}

static void cyc_during(void *arg, struct rtioreq_engine *eng, struct rtioreq_vm *vm,
		       struct rtioreq_poller *poller)
{
	run_cyclictest(arg);
}

static struct bench_cyclic *cyc_new(const char *name, const char *label)
{
	struct bench_cyclic *c = &bench_res.cyc[bench_res.ncyc++];

	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "%s", name);
	snprintf(c->label, sizeof(c->label), "%s", label);
	return c;
}

static void cyc_print(const struct bench_cyclic *c)
{
	if (!c->ok)
		return;
	printf("# cyclictest %s: %lu cycles, min %lu us, avg %.2f us, p99 %ld us, max %lu us, "
	       "overflows %lu; engine served %lu requests meanwhile; other processes (cyclictest "
	       "included) %.1f%% of the CPUs\n",
	       c->label, (unsigned long)c->cycles, (unsigned long)c->min_us, c->avg_us, c->p99_us,
	       (unsigned long)c->max_us, (unsigned long)c->overflows,
	       (unsigned long)c->engine_requests, c->foreign_pct);
	printf("SUMMARY bench=cyclictest-%s unit=us cycles=%lu min=%lu avg=%.2f p99=%ld max=%lu "
	       "overflows=%lu engine_requests=%lu foreign_cpu_pct=%.1f\n",
	       c->name, (unsigned long)c->cycles, (unsigned long)c->min_us, c->avg_us, c->p99_us,
	       (unsigned long)c->max_us, (unsigned long)c->overflows,
	       (unsigned long)c->engine_requests, c->foreign_pct);
}

static void cyc_engine(struct bench_cyclic *c, int producer_cpu)
{
	struct bench_run r = {.polling = true,
			      .vcpus = 16,
			      .producer_cpu = producer_cpu,
			      .poller_cpu = bench_cfg.engine_cpu,
			      .duration_ns = (bench_cfg.cyc_s + 1) * 1000000000ull,
			      .during = cyc_during,
			      .arg = c};

	bench_engine_run(&r);
	c->engine_requests = r.res->completed;
	free(r.res);
}

void bench_cyclictest(void)
{
	struct bench_cyclic *c;
	char topo[300];

	snprintf(topo, sizeof(topo),
		 "cyclictest -m -p 90 -i 200 -a %d -t 1 -D %u -q -h 400 on "
		 "CPU %d (the non-poller CPU); engine: polling 16 vCPUs, poller CPU %d "
		 "SCHED_OTHER",
		 bench_cfg.producer_cpu, bench_cfg.cyc_s, bench_cfg.producer_cpu,
		 bench_cfg.engine_cpu);
	bench_topology(topo);
	c = cyc_new("idle", "idle (no engine)");
	run_cyclictest(c);
	cyc_print(c);
	/* the engine's effect on the other CPU alone: hypervisor thread beside the poller */
	c = cyc_new("engine", "engine busy, hypervisor thread on the poller CPU");
	cyc_engine(c, bench_cfg.engine_cpu);
	cyc_print(c);
	/* the deployment of this 2-CPU box: the hypervisor thread spins on CPU 0 too */
	c = cyc_new("engine-hv", "engine busy, hypervisor thread spinning on the measured CPU");
	cyc_engine(c, bench_cfg.producer_cpu);
	cyc_print(c);
}
