// SPDX-License-Identifier: MIT
/*
 * The results folder: results.json (every number), report.md (the tables and the
 * ratios the issue asks for), per distribution NAME.hist / NAME.json (cyclictest
 * formats) and NAME.cdf (gnuplot data), and latency.gp (run.sh renders latency.png).
 */
#include <errno.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

void bench_machine_info(void)
{
	struct bench_results *r = &bench_res;
	struct utsname u;
	char line[512];
	FILE *f = fopen("/proc/cpuinfo", "r");
	time_t now = time(NULL);

	snprintf(r->cpu_model, sizeof(r->cpu_model), "unknown");
	while (f && fgets(line, sizeof(line), f)) {
		char *c = strchr(line, ':');

		if (!strncmp(line, "model name", 10) && c) {
			for (c++; *c == ' ' || *c == '\t'; c++)
				;
			c[strcspn(c, "\n")] = 0;
			snprintf(r->cpu_model, sizeof(r->cpu_model), "%s", c);
			break;
		}
	}
	if (f)
		fclose(f);
	uname(&u);
	snprintf(r->kernel, sizeof(r->kernel), "%s %s", u.release, u.machine);
	snprintf(r->host, sizeof(r->host), "%s", u.nodename);
	strftime(r->date, sizeof(r->date), "%Y-%m-%dT%H:%M:%S%z", localtime(&now));
	r->nproc = sysconf(_SC_NPROCESSORS_ONLN);
	printf("# machine: %s, kernel %s, %ld CPUs online, host %s, %s\n", r->cpu_model, r->kernel,
	       r->nproc, r->host, r->date);
}

static const struct bench_dist *dist(const char *name)
{
	for (unsigned int i = 0; i < bench_res.ndist; i++)
		if (!strcmp(bench_res.dist[i].name, name))
			return &bench_res.dist[i];
	return NULL;
}

static double p50(const char *name)
{
	const struct bench_dist *d = dist(name);

	return d ? (double)rtioreq_hist_percentile(&d->h, 50) : 0;
}

static double p999(const char *name)
{
	const struct bench_dist *d = dist(name);

	return d ? (double)rtioreq_hist_percentile(&d->h, 99.9) : 0;
}

static FILE *out_file(const char *name)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", bench_cfg.out, name);
	f = fopen(path, "w");
	if (!f)
		bench_die("%s: %s", path, strerror(errno));
	return f;
}

static void out_close(FILE *f, const char *name)
{
	if (ferror(f) | fclose(f))
		bench_die("writing %s/%s failed", bench_cfg.out, name);
}

static void write_cdf(const struct bench_dist *d)
{
	char name[64];
	uint64_t acc = 0, lo, hi;
	FILE *f;

	snprintf(name, sizeof(name), "%s.cdf", d->name);
	f = out_file(name);
	fprintf(f, "# %s: upper bound of each non-empty histogram bucket (ns), CDF, 1-CDF\n",
		d->label);
	if (d->h.count)
		fprintf(f, "%lu 0 1\n", (unsigned long)d->h.min);
	for (unsigned int i = 0; i < RTIOREQ_HIST_BUCKETS; i++) {
		if (!d->h.bucket[i])
			continue;
		acc += d->h.bucket[i];
		rtioreq_hist_bucket_range(i, &lo, &hi);
		if (hi > d->h.max)
			hi = d->h.max;
		if (acc < d->h.count)
			fprintf(f, "%lu %.9f %.9g\n", (unsigned long)hi,
				(double)acc / (double)d->h.count,
				1.0 - (double)acc / (double)d->h.count);
		else
			fprintf(f, "%lu 1 NaN\n", (unsigned long)hi);
	}
	out_close(f, name);
}

static void write_gnuplot(void)
{
	static const char *const color[] = {"#000000", "#009e73", "#56b4e9", "#e69f00",
					    "#d55e00", "#0072b2", "#cc79a7", "#999999",
					    "#f0e442", "#8b0000", "#006400", "#4b0082"};
	FILE *f = out_file("latency.gp");
	unsigned int k;
	bool first;

	fprintf(f,
		"# gnuplot script written by rtioreq-bench; run.sh renders latency.png\n"
		"set terminal pngcairo size 1600,700 font \",10\" noenhanced\n"
		"set output 'latency.png'\n"
		"set datafile missing 'NaN'\n"
		"set multiplot layout 1,2 title \"rtioreq round trips: %s, %s, %ld CPUs, %s "
		"(one run; ns, k = 1e3, M = 1e6)\"\n"
		"set logscale x\nset format x '%%.0s%%c'\nset grid\n"
		"set xlabel 'round trip (ns, log scale)'\nset ylabel 'CDF'\n"
		"set yrange [0:1]\nunset key\n",
		bench_res.cpu_model, bench_res.kernel, bench_res.nproc, bench_res.date);
	for (int pass = 0; pass < 2; pass++) {
		if (pass)
			fprintf(
			    f,
			    "set logscale y\nset format y '%%.0e'\nset yrange [1e-6:1]\n"
			    "set key top right\n"
			    "set ylabel 'fraction of round trips slower (1 - CDF, log scale)'\n");
		fprintf(f, "plot ");
		first = true;
		k = 0;
		for (unsigned int i = 0; i < bench_res.ndist; i++) {
			const struct bench_dist *d = &bench_res.dist[i];

			if (!d->plot || !d->h.count)
				continue;
			fprintf(f,
				"%s'%s.cdf' using 1:%d with steps lw 2 lc rgb '%s' dt %d "
				"title \"%s (p50 %lu ns)\"",
				first ? "" : ", \\\n     ", d->name, pass ? 3 : 2, color[k % 12],
				d->dma_held ? 2 : 1, d->label,
				(unsigned long)rtioreq_hist_percentile(&d->h, 50));
			first = false;
			k++;
		}
		fprintf(f, "\n");
	}
	fprintf(f, "unset multiplot\n");
	out_close(f, "latency.gp");
}

static void json_dist(FILE *f, const struct bench_dist *d, bool last)
{
	struct bench_pct p;
	double secs = (double)d->ns / 1e9;

	bench_pct(&d->h, &p);
	fprintf(f,
		"    \"%s\": {\"label\": \"%s\", \"unit\": \"%s\", \"count\": %lu, "
		"\"seconds\": %.3f, \"ops_per_s\": %.0f, \"min\": %lu, \"p50\": %lu, "
		"\"p90\": %lu, \"p99\": %lu, \"p99.9\": %lu, \"p99.99\": %lu, \"max\": %lu, "
		"\"mean\": %.1f, \"overflow_ge_%uus\": %lu, \"overflow_hist\": %lu, "
		"\"dma_latency_held_0\": %s, \"foreign_cpu_pct\": %.1f, \"files\": [\"%s.hist\", "
		"\"%s.json\", \"%s.cdf\"]}%s\n",
		d->name, d->label, d->unit, (unsigned long)d->h.count, secs,
		secs > 0 ? (double)d->h.count / secs : 0.0, (unsigned long)p.min,
		(unsigned long)p.p50, (unsigned long)p.p90, (unsigned long)p.p99,
		(unsigned long)p.p999, (unsigned long)p.p9999, (unsigned long)p.max, p.mean,
		BENCH_HIST_US, (unsigned long)bench_hist_count_ge(&d->h, BENCH_HIST_US * 1000ull),
		(unsigned long)d->h.overflow, d->dma_held ? "true" : "false", d->foreign_pct,
		d->name, d->name, d->name, last ? "" : ",");
}

static double ratio(double a, double b)
{
	return b > 0 ? a / b : 0;
}

/* A ratio row: only when both sides were measured in this run. */
struct ratio_row {
	const char *key, *what, *a_name, *b_name;
	double a, b;
	const char *unit;
};

static unsigned int ratio_rows(struct ratio_row *rr)
{
	const struct bench_lookup_row *lk =
	    bench_res.nlookup ? &bench_res.lookup[bench_res.nlookup - 1] : NULL;
	unsigned int n = 0;

#define ROW(k, w, an, av, bn, bv, u) rr[n++] = (struct ratio_row){k, w, an, bn, av, bv, u}
	ROW("hybrid_p50_over_polling_p50",
	    "Hybrid idle: wake-up round trip p50 / spinning poller p50 (1 vCPU)", "hybrid",
	    p50("hybrid"), "poll-1vcpu", p50("poll-1vcpu"), "ns");
	ROW("fallback_p50_over_polling_p50",
	    "Fallback p50 / polling p50 (1 vCPU): what polling "
	    "saves",
	    "fallback", p50("fallback"), "poll-1vcpu", p50("poll-1vcpu"), "ns");
	ROW("fallback_dma0_p50_over_polling_p50",
	    "Fallback p50 (cpu_dma_latency=0) / polling "
	    "p50",
	    "fallback-dma0", p50("fallback-dma0"), "poll-1vcpu", p50("poll-1vcpu"), "ns");
	ROW("acrn_p50_over_polling_p50",
	    "What a user would otherwise have: ACRN-style HSM "
	    "(notify) p50 / rtioreq polling p50",
	    "acrn", p50("acrn"), "poll-1vcpu", p50("poll-1vcpu"), "ns");
	ROW("acrn_cpoll_p50_over_polling_p50",
	    "ACRN-style with completion polling "
	    "(partition mode) p50 / rtioreq polling p50",
	    "acrn-cpoll", p50("acrn-cpoll"), "poll-1vcpu", p50("poll-1vcpu"), "ns");
	if (lk)
		ROW("lookup_acrn_over_rtioreq_max_ranges",
		    "Lookup at the largest table: ACRN "
		    "linear scan / rtioreq table, ns per lookup",
		    "ACRN scan", lk->acrn_ns, "rtioreq", lk->rtioreq_ns, "ns");
	ROW("cacheline_end_over_start",
	    "Drift check: cache-line p50 at the end / at the start "
	    "(1.0 = the host kept our vCPUs in place)",
	    "cacheline-end", p50("cacheline-end"), "cacheline-start", p50("cacheline-start"),
	    "ns");
#undef ROW
	return n;
}

static void fmt_ns(char *b, size_t n, double v)
{
	if (v >= 1e6)
		snprintf(b, n, "%.2f ms", v / 1e6);
	else if (v >= 1e4)
		snprintf(b, n, "%.1f us", v / 1e3);
	else
		snprintf(b, n, "%.0f ns", v);
}

static void write_json(const struct ratio_row *rr, unsigned int nr)
{
	FILE *f = out_file("results.json");
	const struct bench_hygiene *h = &bench_res.hyg;
	const struct bench_updates *u = &bench_res.upd;
	unsigned int nd = 0, k = 0;

	for (unsigned int i = 0; i < bench_res.ndist; i++)
		nd += bench_res.dist[i].h.count > 0;
	fprintf(f, "{\n  \"schema\": \"rtioreq-bench/1\",\n  \"date\": \"%s\",\n", bench_res.date);
	fprintf(f,
		"  \"machine\": {\"cpu_model\": \"%s\", \"kernel\": \"%s\", \"nproc\": %ld, "
		"\"host\": \"%s\", \"engine_cpu\": %d, \"producer_cpu\": %d},\n",
		bench_res.cpu_model, bench_res.kernel, bench_res.nproc, bench_res.host,
		bench_cfg.engine_cpu, bench_cfg.producer_cpu);
	fprintf(f,
		"  \"config\": {\"quick\": %s, \"run_s\": %.2f, \"pingpong_s\": %.2f, "
		"\"warmup_s\": %.2f, \"fifo_priority_blocking_engine_threads\": %d, "
		"\"unmapped_pct\": %u, \"cyclictest_s\": %u, \"hygiene_requests\": %lu, "
		"\"update_rate_per_s\": %.0f, \"update_batch\": %u, \"slices\": %u, "
		"\"slice_s_per_side\": %.3f, \"slice_warmup_s\": %.3f},\n",
		bench_cfg.quick ? "true" : "false", (double)bench_cfg.run_ns / 1e9,
		(double)bench_cfg.short_ns / 1e9, (double)bench_cfg.warm_ns / 1e9, bench_cfg.prio,
		bench_cfg.unmapped, bench_cfg.cyc_s, (unsigned long)bench_cfg.hyg_requests,
		bench_cfg.update_rate, bench_cfg.update_batch, bench_cfg.slices,
		(double)bench_cfg.slice_ns / 1e9, (double)bench_cfg.slice_warm_ns / 1e9);
	fprintf(f, "  \"clock_gettime_pair_ns\": {\"p50\": %lu, \"p99\": %lu},\n",
		(unsigned long)bench_res.clock_ns_p50, (unsigned long)bench_res.clock_ns_p99);
	fprintf(f, "  \"throughput_per_s\": {\"poll-1vcpu\": %lu, \"poll-16vcpu\": %lu},\n",
		(unsigned long)bench_res.thr_poll1, (unsigned long)bench_res.thr_poll16);
	fprintf(f, "  \"latency\": {\n");
	for (unsigned int i = 0; i < bench_res.ndist; i++)
		if (bench_res.dist[i].h.count)
			json_dist(f, &bench_res.dist[i], ++k == nd);
	fprintf(f, "  },\n  \"ratios\": {\n");
	for (unsigned int i = 0; i < bench_res.nratio; i++) {
		const struct bench_ratio *q = &bench_res.ratio[i];

		fprintf(f,
			"    \"%s\": {\"value\": %.3f, \"interleaved\": true, \"stat\": \"%s\", "
			"\"min\": %.3f, \"max\": %.3f, \"slices\": %u, \"per_slice\": [",
			q->key, q->median, q->stat, q->min, q->max, q->n);
		for (unsigned int j = 0; j < q->n; j++)
			fprintf(f, "%s%.3f", j ? ", " : "", q->v[j]);
		fprintf(f, "], \"what\": \"%s\", \"a\": \"%s\", \"a_ns\": %.1f, \"b\": \"%s\", "
			   "\"b_ns\": %.1f, \"goal_max\": ",
			q->what, q->a, q->a_ns, q->b, q->b_ns);
		if (q->goal > 0)
			fprintf(f, "%.2f, \"goal_met\": %s", q->goal,
				q->median <= q->goal ? "true" : "false");
		else
			fprintf(f, "null, \"goal_met\": null");
		if (!strcmp(q->stat, "p99.9"))
			fprintf(f, ", \"spikes_a_per_s\": %.0f, \"spikes_b_per_s\": %.0f, \"knee\": %s",
				q->a_spikes_per_s, q->b_spikes_per_s, q->knee ? "true" : "false");
		fprintf(f, "}");
		fprintf(f, "%s\n", i + 1 == bench_res.nratio && !nr ? "" : ",");
	}
	for (unsigned int i = 0; i < nr; i++) {
		char v[32];

		if (rr[i].a > 0 && rr[i].b > 0)
			snprintf(v, sizeof(v), "%.3f", ratio(rr[i].a, rr[i].b));
		else
			snprintf(v, sizeof(v), "null");
		fprintf(f,
			"    \"%s\": {\"value\": %s, \"interleaved\": false, \"stat\": \"p50\", "
			"\"what\": \"%s\", \"a\": \"%s\", \"a_ns\": %.1f, \"b\": \"%s\", "
			"\"b_ns\": %.1f}%s\n",
			rr[i].key, v, rr[i].what, rr[i].a_name, rr[i].a, rr[i].b_name, rr[i].b,
			i + 1 == nr ? "" : ",");
	}
	{
		char v[32] = "null"; /* null: the phase did not run or measured nothing */

		if (bench_res.nscan)
			snprintf(v, sizeof(v), "%.3f", bench_res.scan_ns_per_idle_slot);
		fprintf(f,
			"  },\n  \"scale\": {\"ns_per_idle_slot\": %s, "
			"\"ns_per_idle_slot_goal_max\": 2, \"scan\": [",
			v);
	}
	for (unsigned int i = 0; i < bench_res.nscan; i++) {
		const struct bench_scan_row *c = &bench_res.scan[i];

		fprintf(f,
			"%s{\"vms\": %u, \"slots\": %u, \"ns_per_pass\": %.1f, "
			"\"ns_per_slot\": %.3f}",
			i ? ", " : "", c->vms, c->slots, c->ns_per_pass, c->ns_per_slot);
	}
	fprintf(f, "]},\n");
	fprintf(f, "  \"cpu_step_ns\": {\"before_lookup\": %.3f, \"after_lookup\": %.3f},\n",
		bench_res.cpu_step_ns[0], bench_res.cpu_step_ns[1]);
	fprintf(f, "  \"lookup\": {\"unit\": \"ns per lookup (median of 5 repeats)\", "
		   "\"rtioreq_ns_by_ranges\": {");
	/* the issue-13 goal at a glance: rtioreq's ns per lookup keyed by table size */
	for (unsigned int i = 0; i < bench_res.nlookup; i++)
		fprintf(f, "%s\"%u\": %.2f", i ? ", " : "", bench_res.lookup[i].ranges,
			bench_res.lookup[i].rtioreq_ns);
	fprintf(f, "}, \"rows\": [\n");
	for (unsigned int i = 0; i < bench_res.nlookup; i++) {
		const struct bench_lookup_row *l = &bench_res.lookup[i];

		fprintf(f,
			"    {\"ranges\": %u, \"acrn_clients\": %u, \"rtioreq_ns\": %.2f, "
			"\"rtioreq_scalar_ns\": %.2f, \"avx2\": %s, "
			"\"acrn_ns\": %.2f, \"rtioreq_min_ns\": %.2f, \"acrn_min_ns\": %.2f, "
			"\"acrn_over_rtioreq\": %.2f, \"lookups_rtioreq\": %lu, \"lookups_scalar\": %lu, "
			"\"lookups_acrn\": %lu, \"wrong\": %lu, \"foreign_cpu_pct\": %.1f}%s\n",
			l->ranges, l->acrn_clients, l->rtioreq_ns, l->scalar_ns,
			l->avx2 ? "true" : "false", l->acrn_ns, l->rtioreq_min_ns,
			l->acrn_min_ns, ratio(l->acrn_ns, l->rtioreq_ns),
			(unsigned long)l->lookups_rtioreq, (unsigned long)l->lookups_scalar,
			(unsigned long)l->lookups_acrn,
			(unsigned long)l->wrong, l->foreign_pct,
			i + 1 == bench_res.nlookup ? "" : ",");
	}
	{
		struct bench_pct p;

		bench_pct(&u->change_ns, &p);
		fprintf(
		    f,
		    "  ]},\n  \"updates\": {\"changes\": %lu, \"change_errors\": %lu, "
		    "\"target_per_s\": %.0f, \"achieved_per_s\": %.0f, \"batch\": %u, "
		    "\"table_ranges\": %u, \"change_ns\": {\"p50\": %lu, \"p99\": %lu, "
		    "\"max\": %lu}, \"busy_ns_per_batch\": %.0f, \"placebo_batches\": %lu, "
		    "\"p99.9_none\": %.0f, \"p99.9_updates\": %.0f, \"p99.9_placebo\": %.0f},\n",
		    (unsigned long)u->changes, (unsigned long)u->change_errors, u->target_per_s,
		    u->rate_per_s, u->batch, u->table_ranges, (unsigned long)p.p50,
		    (unsigned long)p.p99, (unsigned long)p.max, u->busy_ns_per_batch,
		    (unsigned long)u->placebo_batches, p999("upd-none"), p999("upd-churn"),
		    p999("upd-placebo"));
	}
	fprintf(f, "  \"cyclictest\": {\"unit\": \"us\", \"runs\": [\n");
	for (unsigned int i = 0; i < bench_res.ncyc; i++) {
		const struct bench_cyclic *c = &bench_res.cyc[i];

		fprintf(f,
			"    {\"name\": \"%s\", \"label\": \"%s\", \"ok\": %s, \"cycles\": %lu, "
			"\"min\": %lu, \"avg\": %.2f, \"p99\": %ld, \"max\": %lu, "
			"\"overflows\": %lu, \"engine_requests\": %lu, \"foreign_cpu_pct\": %.1f, "
			"\"file\": \"cyclictest-%s.json\"}%s\n",
			c->name, c->label, c->ok ? "true" : "false", (unsigned long)c->cycles,
			(unsigned long)c->min_us, c->avg_us, c->p99_us, (unsigned long)c->max_us,
			(unsigned long)c->overflows, (unsigned long)c->engine_requests,
			c->foreign_pct, c->name, i + 1 == bench_res.ncyc ? "" : ",");
	}
	{
		double pm = h->requests ? 1e6 / (double)h->requests : 0;

		fprintf(f,
			"  ]},\n  \"hygiene\": {\"measured\": %s, \"why_not\": \"%s\", "
			"\"unit\": \"per million requests, poller thread\", \"requests\": %lu, "
			"\"loops\": %lu, \"syscalls\": %lu, \"page_faults\": %lu, "
			"\"minor_faults\": %lu, \"major_faults\": %lu, \"context_switches\": %lu, "
			"\"heap_allocations\": %lu, \"allocations_counted\": %s, "
			"\"per_million\": {\"syscalls\": %.3f, \"page_faults\": %.3f, "
			"\"minor_faults\": %.3f, \"major_faults\": %.3f, "
			"\"context_switches\": %.3f, \"heap_allocations\": %.3f}, "
			"\"control\": {\"syscalls\": %lu, \"allocations\": %lu}},\n",
			h->ok ? "true" : "false", h->why, (unsigned long)h->requests,
			(unsigned long)h->loops, (unsigned long)h->syscalls,
			(unsigned long)h->faults, (unsigned long)h->faults_min,
			(unsigned long)h->faults_maj, (unsigned long)h->ctxsw,
			(unsigned long)h->allocs, h->allocs_counted ? "true" : "false",
			(double)h->syscalls * pm, (double)h->faults * pm,
			(double)h->faults_min * pm, (double)h->faults_maj * pm,
			(double)h->ctxsw * pm, (double)h->allocs * pm,
			(unsigned long)h->ctl_syscalls, (unsigned long)h->ctl_allocs);
	}
	fprintf(f, "  \"runtime_s\": %.1f,\n  \"foreign_cpu_pct\": %.1f\n}\n", bench_res.runtime_s,
		bench_res.foreign_pct);
	out_close(f, "results.json");
}

static void write_md(const struct ratio_row *rr, unsigned int nr)
{
	FILE *f = out_file("report.md");
	const struct bench_hygiene *h = &bench_res.hyg;
	char a[32], b[32];

	fprintf(f, "# rtioreq latency benchmarks\n\n");
	fprintf(f,
		"One run of `bench/run.sh%s` on one machine; every figure below comes from "
		"this run, so compare ratios, not absolute times across runs.\n\n",
		bench_cfg.quick ? " --quick" : "");
	fprintf(f, "- **Machine**: %s, kernel %s, %ld CPUs online (host `%s`), %s\n",
		bench_res.cpu_model, bench_res.kernel, bench_res.nproc, bench_res.host,
		bench_res.date);
	fprintf(f,
		"- **Topology**: engine side (poller, dispatcher, client threads, ACRN-style "
		"worker and handler threads, ping-pong servers) on CPU %d; simulated hypervisor "
		"and ping-pong clients on CPU %d. Spinning threads SCHED_OTHER; blocking "
		"engine-side threads %s %d.\n",
		bench_cfg.engine_cpu, bench_cfg.producer_cpu,
		bench_cfg.prio ? "SCHED_FIFO" : "SCHED_OTHER", bench_cfg.prio);
	fprintf(f,
		"- **Workload**: example devices (RAM-backed MMIO, accumulator port), %u%% "
		"unclaimed; every read checked; %.1f s per latency run after %.2f s warm-up; "
		"total run time %.0f s.\n",
		bench_cfg.unmapped, (double)bench_cfg.run_ns / 1e9, (double)bench_cfg.warm_ns / 1e9,
		bench_res.runtime_s);
	fprintf(f,
		"- **Timer**: every round trip is timed with clock_gettime(CLOCK_MONOTONIC) "
		"(back-to-back pair: p50 %lu ns, p99 %lu ns), included in every figure.\n",
		(unsigned long)bench_res.clock_ns_p50, (unsigned long)bench_res.clock_ns_p99);
	if (dist("cacheline-start") && dist("cacheline-end")) {
		double c0 = p50("cacheline-start"), c1 = p50("cacheline-end");
		bool moved = c0 > 0 && c1 > 0 && (c1 / c0 > 1.25 || c0 / c1 > 1.25);

		fprintf(f,
			"- **Drift**: cache-line round trip p50 %.0f ns at the start, %.0f ns at "
			"the end of the run%s\n",
			c0, c1,
			moved ? ": **the host moved this guest's vCPUs during the run (other "
				"physical cores or cache domains); ratios between phases far apart "
				"in time are skewed: rerun**"
			      : " (stable).");
	}
	fprintf(f,
		"- **Noise**: other processes used %.1f%% of the CPUs during the run "
		"(/proc/stat busy time minus this process's; per run in the tables)%s\n\n",
		bench_res.foreign_pct,
		bench_res.foreign_pct > 5
		    ? ". **The machine was shared during this run: the tails are not the engine's "
		      "alone.**"
		    : ".");

	fprintf(f,
		"## Headline ratios (interleaved)\n\nBoth sides of each ratio ran in %u "
		"alternating slices of %.0f ms per side within one phase; the ratio is the median "
		"of the per-slice ratios, with their spread (min..max). Goal: the issue's bound "
		"on the median.\n\n"
		"| Comparison | Ratio (median) | Spread | Slices | Goal | Numerator | "
		"Denominator |\n|---|---:|---:|---:|---|---:|---:|\n",
		bench_cfg.slices, (double)bench_cfg.slice_ns / 1e6);
	for (unsigned int i = 0; i < bench_res.nratio; i++) {
		const struct bench_ratio *q = &bench_res.ratio[i];
		char g[48] = "-";

		if (q->goal > 0)
			snprintf(g, sizeof(g), "<= %.2fx: %s", q->goal,
				 q->median <= q->goal ? "met" : "**not met**");
		fmt_ns(a, sizeof(a), q->a_ns);
		fmt_ns(b, sizeof(b), q->b_ns);
		fprintf(f, "| %s%s | **%.2fx** | %.2f..%.2f | %u | %s | %s %s: %s | %s %s: %s |\n",
			q->what, q->knee ? " (at the knee, see below)" : "", q->median, q->min,
			q->max, q->n, g, q->a, q->stat, a, q->b, q->stat, b);
	}
	if (bench_res.nscan)
		fprintf(f,
			"| Idle slot scan: ns per slot per pass (slope %u -> %u slots, see Scale) "
			"| **%.2f ns** | | %u | <= 2 ns: %s | | |\n",
			bench_res.scan[0].slots, bench_res.scan[bench_res.nscan - 1].slots,
			bench_res.scan_ns_per_idle_slot, bench_cfg.slices,
			bench_res.scan_ns_per_idle_slot <= 2 ? "met" : "**not met**");
	if (h->ok) {
		double pm = h->requests ? 1e6 / (double)h->requests : 0;

		fprintf(f,
			"| Poller per million requests: syscalls / page faults (minor, major) / "
			"heap allocations | **%.2f / %.2f (%.2f, %.2f) / %.2f%s** | | | 0 / 0 / 0 | "
			"%lu requests | perf counters + malloc interposer |\n",
			(double)h->syscalls * pm, (double)h->faults * pm,
			(double)h->faults_min * pm, (double)h->faults_maj * pm,
			(double)h->allocs * pm, h->allocs_counted ? "" : " (allocs not counted)",
			(unsigned long)h->requests);
	}
	{ /* the p99.9 ratios' spike rates: why some of them do not repeat */
		bool any = false;

		for (unsigned int i = 0; i < bench_res.nratio; i++) {
			const struct bench_ratio *q = &bench_res.ratio[i];

			if (strcmp(q->stat, "p99.9"))
				continue;
			if (!any)
				fprintf(f,
					"\nTails: spikes per second of each side (round trips of at "
					"least %u us and %ux the side's p50; median over the "
					"slices). Their likely source is interrupts of the host and "
					"of the guest's kernel (whose code is emulated on this "
					"development machine), at a rate set by the machine rather "
					"than by the request rate (compare the two columns). A "
					"ratio marked *at the knee* had a p99.9 at least %.0fx its "
					"p99 on some side in most slices: its p99.9 lies among these "
					"spikes, so it follows each side's request rate against the "
					"spike rate, and may differ from run to run.\n\n"
					"| p99.9 ratio | spikes/s numerator | spikes/s denominator "
					"| at the knee |\n|---|---:|---:|---|\n",
					BENCH_SPIKE_NS / 1000, BENCH_SPIKE_X, BENCH_KNEE);
			any = true;
			fprintf(f, "| %s | %.0f | %.0f | %s |\n", q->key, q->a_spikes_per_s,
				q->b_spikes_per_s, q->knee ? "yes" : "no");
		}
	}
	fprintf(f,
		"\n## Other ratios (not interleaved)\n\nSides measured in different phases, "
		"seconds apart: indicative only.\n\n| Comparison | Ratio | Numerator | "
		"Denominator |\n|---|---:|---:|---:|\n");
	for (unsigned int i = 0; i < nr; i++) {
		if (rr[i].a <= 0 || rr[i].b <= 0)
			continue;
		fmt_ns(a, sizeof(a), rr[i].a);
		fmt_ns(b, sizeof(b), rr[i].b);
		fprintf(f, "| %s | **%.2fx** | %s: %s | %s: %s |\n", rr[i].what,
			ratio(rr[i].a, rr[i].b), rr[i].a_name, a, rr[i].b_name, b);
	}
	fprintf(f, "\n![latency distributions](latency.png)\n\n");

	fprintf(
	    f,
	    "## Latency distributions\n\nns per round trip (request: PENDING store to "
	    "COMPLETE seen by the hypervisor; ping-pong: store to the answer seen); "
	    "overflows = round trips of %u us or more (cyclictest -h %u).\n\n"
	    "| Run | ops/s | count | min | p50 | p90 | p99 | p99.9 | p99.99 | max | overflows | "
	    "other procs |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
	    BENCH_HIST_US, BENCH_HIST_US);
	for (unsigned int i = 0; i < bench_res.ndist; i++) {
		const struct bench_dist *d = &bench_res.dist[i];
		struct bench_pct p;
		double secs = (double)d->ns / 1e9;

		if (!d->h.count)
			continue;
		bench_pct(&d->h, &p);
		fprintf(f,
			"| %s (`%s`) | %.0f | %lu | %lu | %lu | %lu | %lu | %lu | %lu | %lu | "
			"%lu | %.0f%% |\n",
			d->label, d->name, secs > 0 ? (double)d->h.count / secs : 0.0,
			(unsigned long)d->h.count, (unsigned long)p.min, (unsigned long)p.p50,
			(unsigned long)p.p90, (unsigned long)p.p99, (unsigned long)p.p999,
			(unsigned long)p.p9999, (unsigned long)p.max,
			(unsigned long)bench_hist_count_ge(&d->h, BENCH_HIST_US * 1000ull),
			d->foreign_pct);
	}

	if (bench_res.nlookup) {
		fprintf(
		    f,
		    "\n## Lookup scaling\n\nns per lookup, median of 5 repeats: rtioreq's "
		    "`rtioreq__map_lookup()` (acquire load of the published map + bisection "
		    "below 256 ranges, from there on a B+ tree of 64-byte nodes, each node "
		    "compared with AVX2 where the CPU has it; the scalar column forces the "
		    "scalar compare) "
		    "vs the ACRN-style `find_ioreq_client()` (clients mutex + per-client rwlock "
		    "read side + linear walk of the range lists, matching the slot); random "
		    "addresses inside the ranges; one thread on CPU %d. CPU speed check: %.3f ns "
		    "per dependent multiply-add step before the lookups, %.3f after (a vCPU the "
		    "host slowed shows larger figures; compare runs by it).\n\n| Ranges | ACRN "
		    "clients | "
		    "rtioreq ns | scalar ns | ACRN-style ns | ACRN / rtioreq | other procs |\n"
		    "|---:|---:|---:|---:|---:|---:|---:|\n",
		    bench_cfg.engine_cpu, bench_res.cpu_step_ns[0], bench_res.cpu_step_ns[1]);
		for (unsigned int i = 0; i < bench_res.nlookup; i++) {
			const struct bench_lookup_row *l = &bench_res.lookup[i];

			fprintf(f, "| %u | %u | %.1f%s | %.1f | %.1f | %.1fx | %.0f%% |\n",
				l->ranges, l->acrn_clients, l->rtioreq_ns,
				l->avx2 ? " (AVX2)" : "",
				l->scalar_ns, l->acrn_ns,
				ratio(l->acrn_ns, l->rtioreq_ns), l->foreign_pct);
		}
	}
	if (dist("upd-churn")) {
		const struct bench_updates *u = &bench_res.upd;
		struct bench_pct p;

		bench_pct(&u->change_ns, &p);
		fprintf(
		    f,
		    "\n## Range updates under load\n\nPolling, 1 vCPU. An updater thread on "
		    "CPU %d (beside the hypervisor thread) adds and removes ranges at %.0f "
		    "changes/s (target %.0f, batches of %u; table of %u ranges; one change: p50 "
		    "%lu ns, p99 %lu ns). The placebo run has the same thread wake up as often and "
		    "spin as long (%.0f ns per batch) without touching the engine: it separates "
		    "the cost of a third thread on a 2-CPU box from the cost of the updates.\n\n"
		    "| Run | p50 | p99 | p99.9 | p99.99 | max |\n|---|---:|---:|---:|---:|---:|\n",
		    bench_cfg.producer_cpu, u->rate_per_s, u->target_per_s, u->batch,
		    u->table_ranges, (unsigned long)p.p50, (unsigned long)p.p99,
		    u->busy_ns_per_batch);
		for (unsigned int i = 0; i < bench_res.ndist; i++) {
			const struct bench_dist *d = &bench_res.dist[i];
			struct bench_pct q;

			if (strncmp(d->name, "upd-", 4))
				continue;
			bench_pct(&d->h, &q);
			fprintf(f, "| %s | %lu | %lu | %lu | %lu | %lu |\n", d->label,
				(unsigned long)q.p50, (unsigned long)q.p99, (unsigned long)q.p999,
				(unsigned long)q.p9999, (unsigned long)q.max);
		}
	}
	if (bench_res.nscan) {
		fprintf(f,
			"\n## Scale: 1, 16, 64 VMs of 16 vCPUs\n\nEvery slot on the one poller "
			"(CPU %d), every slot idle; passes counted by the poller's own counter "
			"(`rtioreq_poller_stats().loops`) over a sleep of the control thread; "
			"median of %u slices. ns per idle slot = slope between the smallest and the "
			"largest slot set: **%.3f ns**. The request and wake-up comparisons at "
			"scale are in the headline ratios (`scale_*`).\n\n| VMs | slots | ns per "
			"pass | ns per slot |\n|---:|---:|---:|---:|\n",
			bench_cfg.engine_cpu, bench_cfg.slices, bench_res.scan_ns_per_idle_slot);
		for (unsigned int i = 0; i < bench_res.nscan; i++)
			fprintf(f, "| %u | %u | %.1f | %.3f |\n", bench_res.scan[i].vms,
				bench_res.scan[i].slots, bench_res.scan[i].ns_per_pass,
				bench_res.scan[i].ns_per_slot);
	}
	if (bench_res.ncyc) {
		fprintf(f,
			"\n## cyclictest on CPU %d (the non-poller CPU)\n\n`cyclictest -m -p 90 "
			"-i 200 -a %d -t 1 -D %u -q -h 400 --json=...`; p99 from its histogram; "
			"us. The engine polls 16 vCPUs on CPU %d.\n\n| | ",
			bench_cfg.producer_cpu, bench_cfg.producer_cpu, bench_cfg.cyc_s,
			bench_cfg.engine_cpu);
		for (unsigned int i = 0; i < bench_res.ncyc; i++)
			fprintf(f, "%s | ", bench_res.cyc[i].label);
		fprintf(f, "\n|---|");
		for (unsigned int i = 0; i < bench_res.ncyc; i++)
			fprintf(f, "---:|");
#define CYC_ROW(title, fmt, expr)                                                                  \
	do {                                                                                       \
		fprintf(f, "\n| %s | ", title);                                                    \
		for (unsigned int i = 0; i < bench_res.ncyc; i++) {                                \
			const struct bench_cyclic *c = &bench_res.cyc[i];                          \
			if (c->ok)                                                                 \
				fprintf(f, fmt " | ", expr);                                       \
			else                                                                       \
				fprintf(f, "failed | ");                                           \
		}                                                                                  \
	} while (0)
		CYC_ROW("min", "%lu", (unsigned long)c->min_us);
		CYC_ROW("avg", "%.2f", c->avg_us);
		CYC_ROW("p99", "%ld", c->p99_us);
		CYC_ROW("max", "%lu", (unsigned long)c->max_us);
		CYC_ROW("cycles", "%lu", (unsigned long)c->cycles);
		CYC_ROW("overflows (>= 400 us)", "%lu", (unsigned long)c->overflows);
		CYC_ROW("engine requests meanwhile", "%lu", (unsigned long)c->engine_requests);
		CYC_ROW("other processes, % of CPUs", "%.0f%%", c->foreign_pct);
#undef CYC_ROW
		fprintf(
		    f,
		    "\n\nColumns: %s. cyclictest holds /dev/cpu_dma_latency at 0 while it "
		    "runs (its default).\n",
		    "idle = no engine; engine busy = poller and "
		    "hypervisor thread both on the poller CPU (the engine's effect on the other "
		    "CPU alone); engine + hv = the hypervisor thread spins (SCHED_OTHER) on the "
		    "measured CPU, as in the latency runs");
	}
	fprintf(f, "\n## Hot-path hygiene\n\n");
	if (h->ok)
		fprintf(
		    f,
		    "Poller thread, polling 16 vCPUs, %lu requests in steady state (after a "
		    "warm-up run), %lu poller loops: **%lu syscalls, %lu page faults (%lu minor, "
		    "%lu major), %lu context switches, %lu heap allocations**%s. Measured with "
		    "perf_event_open() counters attached to the poller's thread id "
		    "(raw_syscalls:sys_enter tracepoint; page-faults, minor-faults, major-faults, "
		    "context-switches software events) and a malloc() interposer counting calls "
		    "by that thread; a positive control thread (1000 getppid(), 100 malloc()) "
		    "was seen as %lu syscalls and %lu allocations.\n",
		    (unsigned long)h->requests, (unsigned long)h->loops, (unsigned long)h->syscalls,
		    (unsigned long)h->faults, (unsigned long)h->faults_min,
		    (unsigned long)h->faults_maj, (unsigned long)h->ctxsw, (unsigned long)h->allocs,
		    h->allocs_counted ? "" : " (allocations not counted in sanitizer builds)",
		    (unsigned long)h->ctl_syscalls, (unsigned long)h->ctl_allocs);
	else
		fprintf(f, "Not measured: %s\n", h->why[0] ? h->why : "phase not run");
	fprintf(f,
		"\n## Method\n\n"
		"- Interleaving (bench/interleave.c): the sides of every headline ratio run "
		"in alternating slices of one phase (A B C, C B A, ...), each slice of each "
		"side on a fresh engine (or ping-pong pair) after a short warm-up of its own; "
		"per slice each side's p50 (p99.9 for tail ratios) and their ratio; reported: "
		"the median of the per-slice ratios, min..max, and the slices counted. "
		"`bench/run.sh --repeat 3 --quick` checks that each comes back within +-15%%.\n"
		"- Cache-line ping-pong: two pinned spinning threads exchange one 64-byte line "
		"(release store, acquire load each way); the client times each round trip.\n"
		"- Engine runs: `rtioreq_sim_run()` (the simulated hypervisor) on a shared "
		"region with the example devices; the VM is attached paused, its clients, ranges "
		"and pollers placed, then started; a warm-up run, then the measured run; a lost, "
		"duplicated or wrong request aborts the benchmark. Round trip = PENDING store to "
		"COMPLETE observed (polling) or to the wake-up by the done_seq notification "
		"(notify/fallback). Throughput = completed requests / wall time.\n"
		"- Raw futex ping-pong: the engine's own shared futex words (channel page "
		"upcall_seq and done_seq[0]), futex_waitv on both sides, FUTEX_WAKE after a "
		"release increment: the two wake-ups a fallback request needs at least.\n"
		"- ACRN-style baseline: bench/acrn.c re-implements the HSM dispatch of the v6 "
		"patch (upcall -> one worker thread -> rwlock-protected per-client range lists "
		"scanned linearly -> PROCESSING + pending bit -> per-client handler thread -> "
		"COMPLETE + done_seq notification) on the same region, simulator, workload and "
		"devices.\n"
		"- /dev/cpu_dma_latency: opened O_RDWR, int32 0 written, kept open for the run.\n"
		"- Noise: CPU time of other processes during each run (/proc/stat minus this "
		"process), shown per run; the suite first waits (bounded) for a quiet machine.\n");
	fprintf(f, "\n## Files\n\n`results.json` (every number), `NAME.hist` (cyclictest -h text "
		   "format, 1 us buckets) and `NAME.json` (cyclictest --json shape) per "
		   "distribution, `cyclictest-*.json`/`.hist` (cyclictest's own output), "
		   "`NAME.cdf` + `latency.gp` -> `latency.png`, `bench.log` (stdout: '#' lines and "
		   "one SUMMARY line per run).\n");
	out_close(f, "report.md");
}

void bench_write_results(void)
{
	struct ratio_row rr[32];
	unsigned int nr = ratio_rows(rr);

	for (unsigned int i = 0; i < bench_res.ndist; i++) {
		const struct bench_dist *d = &bench_res.dist[i];

		if (!d->h.count)
			continue;
		bench_write_cyclictest_files(d);
		write_cdf(d);
	}
	write_gnuplot();
	write_json(rr, nr);
	write_md(rr, nr);
	for (unsigned int i = 0; i < bench_res.nratio; i++)
		bench_ratio_print(&bench_res.ratio[i]);
	for (unsigned int i = 0; i < nr; i++)
		if (rr[i].a > 0 && rr[i].b > 0)
			printf("SUMMARY ratio=%s stat=p50 value=%.3f a=%s a_ns=%.1f b=%s b_ns=%.1f "
			       "interleaved=0\n",
			       rr[i].key, ratio(rr[i].a, rr[i].b), rr[i].a_name, rr[i].a,
			       rr[i].b_name, rr[i].b);
}
