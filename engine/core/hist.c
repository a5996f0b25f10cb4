// SPDX-License-Identifier: MIT
/*
 * Log-linear latency histogram (see hist.h). Bucket layout, with S = SUB_BITS:
 *   values [0, 2^S)             -> buckets [0, 2^S), one value each;
 *   values [2^e, 2^(e+1)), e>=S -> 2^S buckets of width 2^(e-S), starting at
 *                                  index (e - S + 1) * 2^S.
 * The last group (e = MAX_BITS - 1) also takes every value >= 2^MAX_BITS.
 */
#include <string.h>

#include "core/hist_pvt.h"
#include "rtioreq/core/hist.h"

#define SUB (1u << RTIOREQ_HIST_SUB_BITS)

void rtioreq_hist_init(struct rtioreq_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

unsigned int rtioreq_hist_index(uint64_t ns)
{
	if (ns < SUB)
		return (unsigned int)ns;
	if (ns >> RTIOREQ_HIST_MAX_BITS)
		return RTIOREQ_HIST_BUCKETS - 1;
	unsigned int e = 63u - (unsigned int)__builtin_clzll(ns); /* S <= e < MAX_BITS */
	unsigned int shift = e - RTIOREQ_HIST_SUB_BITS;
	unsigned int sub = (unsigned int)(ns >> shift) & (SUB - 1);
	return (shift + 1) * SUB + sub;
}

void rtioreq_hist_bucket_range(unsigned int idx, uint64_t *lo, uint64_t *hi)
{
	if (idx >= RTIOREQ_HIST_BUCKETS)
		idx = RTIOREQ_HIST_BUCKETS - 1;
	if (idx < SUB) {
		*lo = *hi = idx;
		return;
	}
	unsigned int shift = idx / SUB - 1;
	uint64_t sub = idx % SUB;
	*lo = (SUB + sub) << shift;
	*hi = *lo + (1ull << shift) - 1;
	if (idx == RTIOREQ_HIST_BUCKETS - 1)
		*hi = UINT64_MAX; /* the overflow values live here too */
}

void rtioreq_hist_record(struct rtioreq_hist *h, uint64_t ns)
{
	h->bucket[rtioreq_hist_index(ns)]++;
	rtioreq__hist_fold(h, 1, ns, ns, ns, ns >> RTIOREQ_HIST_MAX_BITS ? 1 : 0);
}

void rtioreq_hist_merge(struct rtioreq_hist *dst, const struct rtioreq_hist *src)
{
	if (!src->count)
		return;
	for (unsigned int i = 0; i < RTIOREQ_HIST_BUCKETS; i++)
		dst->bucket[i] += src->bucket[i];
	rtioreq__hist_fold(dst, src->count, src->sum, src->min, src->max, src->overflow);
}

uint64_t rtioreq_hist_percentile(const struct rtioreq_hist *h, double p)
{
	if (!h->count)
		return 0;
	if (!(p < 100.0)) /* also NaN */
		return h->max;
	if (!(p > 0.0))
		return h->min;
	/* rank = ceil(p/100 * count), in [1, count] */
	double r = p / 100.0 * (double)h->count;
	uint64_t rank = (uint64_t)r;
	if ((double)rank < r)
		rank++;
	if (rank < 1)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	uint64_t seen = 0;
	for (unsigned int i = 0; i < RTIOREQ_HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= rank) {
			uint64_t lo, hi;
			rtioreq_hist_bucket_range(i, &lo, &hi);
			if (hi > h->max)
				hi = h->max;
			if (hi < h->min)
				hi = h->min;
			return hi;
		}
	}
	return h->max; /* not reached: the buckets add up to count */
}

double rtioreq_hist_mean(const struct rtioreq_hist *h)
{
	return h->count ? (double)h->sum / (double)h->count : 0.0;
}
