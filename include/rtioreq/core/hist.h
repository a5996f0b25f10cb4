/* SPDX-License-Identifier: MIT */
/**
 * @file hist.h
 * Latency histogram: log-linear buckets (HDR style), fixed size, no allocation.
 * Values are nanoseconds. Values below 2^RTIOREQ_HIST_SUB_BITS are exact; above, each
 * power of two is split into 2^RTIOREQ_HIST_SUB_BITS buckets (relative error below
 * 1/2^RTIOREQ_HIST_SUB_BITS = 1.6%). Values at or above 2^RTIOREQ_HIST_MAX_BITS land in
 * the last bucket and are counted in `overflow`.
 *
 * Threads: one writer per histogram, no atomics; merge writer-private histograms
 * after their writers stopped (or under the caller's own synchronisation).
 */
#ifndef RTIOREQ_HIST_H
#define RTIOREQ_HIST_H

#include <stdint.h>
#include <stdio.h>
#include "rtioreq/common.h"

RTIOREQ_BEGIN_DECLS

#define RTIOREQ_HIST_SUB_BITS 6 /**< 2^6 buckets per power of two */
#define RTIOREQ_HIST_MAX_BITS 40 /**< ~1100 s */
/** Buckets of a histogram. */
#define RTIOREQ_HIST_BUCKETS \
	((1u << RTIOREQ_HIST_SUB_BITS) * (RTIOREQ_HIST_MAX_BITS - RTIOREQ_HIST_SUB_BITS + 1))

/** A histogram of nanosecond values; a fixed layout (no reserved tail: it never grows). */
struct rtioreq_hist {
	uint64_t count;	   /**< values recorded */
	uint64_t sum;	   /**< ns, saturating */
	uint64_t min;	   /**< exact; UINT64_MAX when empty */
	uint64_t max;	   /**< exact; 0 when empty */
	uint64_t overflow; /**< values >= 2^RTIOREQ_HIST_MAX_BITS */
	uint64_t bucket[RTIOREQ_HIST_BUCKETS]; /**< counts; rtioreq_hist_bucket_range() */
};

/** Empty \p h. */
void rtioreq_hist_init(struct rtioreq_hist *h);
/** Record one value of \p ns nanoseconds. No allocation, no syscall. */
void rtioreq_hist_record(struct rtioreq_hist *h, uint64_t ns);
/** Add every value of \p src to \p dst. */
void rtioreq_hist_merge(struct rtioreq_hist *dst, const struct rtioreq_hist *src);

/**
 * Value at percentile \p p (0 < p <= 100): the upper bound of the bucket holding the
 * ceil(p/100 * count)-th smallest value, clamped to [min, max]; p >= 100 gives max.
 * 0 for an empty histogram.
 */
uint64_t rtioreq_hist_percentile(const struct rtioreq_hist *h, double p);

/** Mean in ns (0 when empty). */
double rtioreq_hist_mean(const struct rtioreq_hist *h);

/** Bucket index of a value. */
unsigned int rtioreq_hist_index(uint64_t ns);
/** The [\p lo, \p hi] range of values bucket \p idx holds. */
void rtioreq_hist_bucket_range(unsigned int idx, uint64_t *lo, uint64_t *hi);

RTIOREQ_END_DECLS

#endif /* RTIOREQ_HIST_H */
