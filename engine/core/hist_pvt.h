/* SPDX-License-Identifier: MIT */
/*
 * What the engine's per-slot service-time histograms (engine_pvt.h, rtioreq_vm_hist())
 * share with hist.c: the saturating sum, and folding one histogram's totals into
 * another's. One copy of each.
 */
#ifndef RTIOREQ_HIST_PVT_H
#define RTIOREQ_HIST_PVT_H

#include <stdint.h>

#include "rtioreq/core/hist.h"

/* @a + @b, UINT64_MAX if that overflows (hist.h: sum saturates). */
static inline uint64_t rtioreq__hist_sat_add(uint64_t a, uint64_t b)
{
	return a + b < a ? UINT64_MAX : a + b;
}

/* Fold the totals of @count (> 0) values into @dst (its buckets are the caller's). */
static inline void rtioreq__hist_fold(struct rtioreq_hist *dst, uint64_t count, uint64_t sum,
				      uint64_t min, uint64_t max, uint64_t overflow)
{
	dst->count += count;
	dst->sum = rtioreq__hist_sat_add(dst->sum, sum);
	dst->overflow += overflow;
	if (min < dst->min)
		dst->min = min;
	if (max > dst->max)
		dst->max = max;
}

#endif /* RTIOREQ_HIST_PVT_H */
