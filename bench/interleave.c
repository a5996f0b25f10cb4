// SPDX-License-Identifier: MIT
/*
 * Interleaved comparisons: every headline ratio of the suite comes from here (issue 13).
 * On a shared or virtualised host the host moves this guest's vCPUs between cores and
 * cache domains every few seconds, and a phase measured half a minute after its partner
 * is not comparable (a raw futex ping-pong measured 4.8 us in one run and 13.4 us in
 * the next). So the two sides of a ratio run in alternating short slices of one phase
 * (A B C, C B A, A B C, ...: reversing the order every other slice cancels what the
 * position within a slice would add), each slice's statistic is taken per side, and
 * the ratio is reported as the median of the per-slice ratios with its spread
 * (min..max) and the number of slices that measured both sides, so a reader sees
 * whether a difference is real. The SUMMARY line of each ratio comes at the end of the
 * run (report.c), one per ratio.
 * The merged distributions (every slice of a side) still feed the tables, the
 * cyclictest-format histograms and latency.png.
 */
#include "bench.h"

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double bench_median(double *v, unsigned int n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	return n & 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

unsigned int bench_slice_order(unsigned int slice, unsigned int j, unsigned int n)
{
	return slice & 1 ? n - 1 - j : j;
}

uint64_t bench_spike_ns(double p50)
{
	double t = BENCH_SPIKE_X * p50;

	return t > BENCH_SPIKE_NS ? (uint64_t)t : BENCH_SPIKE_NS;
}

void bench_ratio_print(const struct bench_ratio *r)
{
	char goal[48] = "", tail[96] = "";

	if (r->goal > 0)
		snprintf(goal, sizeof(goal), " goal_max=%.2f met=%d", r->goal,
			 r->median <= r->goal);
	if (!strcmp(r->stat, "p99.9"))
		snprintf(tail, sizeof(tail), " spikes_a_per_s=%.0f spikes_b_per_s=%.0f knee=%d",
			 r->a_spikes_per_s, r->b_spikes_per_s, r->knee);
	printf("SUMMARY ratio=%s stat=%s value=%.3f min=%.3f max=%.3f slices=%u a=%s a_ns=%.1f "
	       "b=%s b_ns=%.1f interleaved=1%s%s\n",
	       r->key, r->stat, r->median, r->min, r->max, r->n, r->a, r->a_ns, r->b, r->b_ns,
	       goal, tail);
}

void bench_interleave(struct bench_side *s, unsigned int nside, const struct bench_ratio_spec *r,
		      unsigned int nr, bool dma)
{
	static double p50[BENCH_MAX_SLICES][BENCH_MAX_SIDES],
	    p999[BENCH_MAX_SLICES][BENCH_MAX_SIDES], p99[BENCH_MAX_SLICES][BENCH_MAX_SIDES],
	    spikes[BENCH_MAX_SLICES][BENCH_MAX_SIDES]; /* per second */
	unsigned int slices = bench_cfg.slices;
	struct rtioreq_hist *h = malloc(sizeof(*h));
	int fd;

	if (!h)
		bench_die("out of memory");
	if (nside > BENCH_MAX_SIDES || slices > BENCH_MAX_SLICES || !slices)
		bench_die("interleave: %u sides, %u slices", nside, slices);
	printf("# interleaved: %u slices of %.0f ms per side (order reversed every other "
	       "slice)%s; ratios: median of the per-slice ratios [min..max]\n",
	       slices, (double)bench_cfg.slice_ns / 1e6,
	       dma ? ", /dev/cpu_dma_latency held at 0 throughout" : "");
	fd = dma ? bench_dma_hold() : -1;
	for (unsigned int i = 0; i < slices; i++) {
		for (unsigned int j = 0; j < nside; j++) {
			unsigned int k = bench_slice_order(i, j, nside);
			uint64_t ns;

			rtioreq_hist_init(h);
			ns = s[k].slice(s[k].arg, bench_cfg.slice_ns, h);
			/* an empty slice (the host starved a side for the whole slice)
			 * leaves 0: the ratios skip that slice */
			rtioreq_hist_merge(&s[k].d->h, h);
			s[k].d->ns += ns;
			s[k].d->dma_held = dma;
			p50[i][k] = (double)rtioreq_hist_percentile(h, 50);
			p99[i][k] = (double)rtioreq_hist_percentile(h, 99);
			p999[i][k] = (double)rtioreq_hist_percentile(h, 99.9);
			spikes[i][k] = ns ? (double)bench_hist_count_ge(h, bench_spike_ns(p50[i][k])) *
						1e9 / (double)ns
					  : 0;
		}
	}
	bench_dma_release(fd);
	free(h);
	for (unsigned int k = 0; k < nside; k++) {
		char extra[200] = "";

		if (s[k].extra)
			s[k].extra(s[k].arg, extra, sizeof(extra));
		bench_dist_print(s[k].d, extra[0] ? extra : NULL);
	}
	for (unsigned int q = 0; q < nr; q++) {
		struct bench_ratio *o;
		double va[BENCH_MAX_SLICES], vb[BENCH_MAX_SLICES], v[BENCH_MAX_SLICES];
		double sa[BENCH_MAX_SLICES], sb[BENCH_MAX_SLICES];
		unsigned int knees = 0;

		if (bench_res.nratio >= BENCH_MAX_RATIOS)
			bench_die("too many ratios");
		o = &bench_res.ratio[bench_res.nratio++];
		memset(o, 0, sizeof(*o));
		snprintf(o->key, sizeof(o->key), "%s", r[q].key);
		snprintf(o->what, sizeof(o->what), "%s", r[q].what);
		snprintf(o->a, sizeof(o->a), "%s", s[r[q].a].d->name);
		snprintf(o->b, sizeof(o->b), "%s", s[r[q].b].d->name);
		o->stat = r[q].tail ? "p99.9" : "p50";
		o->goal = r[q].goal;
		for (unsigned int i = 0; i < slices; i++) {
			double x = r[q].tail ? p999[i][r[q].a] : p50[i][r[q].a];
			double y = r[q].tail ? p999[i][r[q].b] : p50[i][r[q].b];

			if (x <= 0 || y <= 0)
				continue; /* a side measured nothing in this slice */
			va[o->n] = x;
			vb[o->n] = y;
			sa[o->n] = spikes[i][r[q].a];
			sb[o->n] = spikes[i][r[q].b];
			knees += x >= BENCH_KNEE * p99[i][r[q].a] || y >= BENCH_KNEE * p99[i][r[q].b];
			o->v[o->n] = x / y;
			v[o->n] = o->v[o->n];
			o->n++;
		}
		if (!o->n)
			bench_die("%s: no slice measured both sides", o->key);
		o->median = bench_median(v, o->n);
		o->min = v[0];
		o->max = v[o->n - 1];
		o->a_ns = bench_median(va, o->n);
		o->b_ns = bench_median(vb, o->n);
		if (r[q].tail) {
			o->a_spikes_per_s = bench_median(sa, o->n);
			o->b_spikes_per_s = bench_median(sb, o->n);
			o->knee = 2 * knees > o->n;
		}
		printf("# %s: %s %s / %s: %.3fx [%.3f..%.3f] over %u slices (medians %.0f / %.0f "
		       "ns)%s\n",
		       o->key, o->stat, o->a, o->b, o->median, o->min, o->max, o->n, o->a_ns,
		       o->b_ns,
		       o->goal > 0 ? (o->median <= o->goal ? ", goal met" : ", goal NOT met") : "");
		if (r[q].tail)
			printf("#   spikes (round trips >= max(%u us, %ux p50)) per second: %.0f / "
			       "%.0f; knee (p99.9 >= %.0fx p99 in most slices): %s%s\n",
			       BENCH_SPIKE_NS / 1000, BENCH_SPIKE_X, o->a_spikes_per_s,
			       o->b_spikes_per_s, BENCH_KNEE, o->knee ? "yes" : "no",
			       o->knee ? "; p99.9 at the knee: it lies among these spikes, so it "
					 "follows each side's request rate against the spike rate"
				       : "");
	}
	fflush(stdout);
}
