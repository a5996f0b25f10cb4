// SPDX-License-Identifier: MIT
/*
 * Latency histogram: bucket layout (every value lands in a bucket whose range holds
 * it, buckets tile the value space without gaps), percentiles against a sorted-array
 * model, merge, overflow and the empty histogram.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rtioreq/core/hist.h"

static void test_empty(void **state)
{
	struct rtioreq_hist h;

	rtioreq_hist_init(&h);
	assert_int_equal(h.count, 0);
	assert_int_equal(rtioreq_hist_percentile(&h, 50), 0);
	assert_int_equal(rtioreq_hist_percentile(&h, 100), 0);
	assert_true(rtioreq_hist_mean(&h) == 0.0);
}

/* Buckets are contiguous, ascending, and index(v) names the bucket that holds v. */
static void test_layout(void **state)
{
	uint64_t prev_hi = 0, lo, hi;

	for (unsigned int i = 0; i < RTIOREQ_HIST_BUCKETS; i++) {
		rtioreq_hist_bucket_range(i, &lo, &hi);
		if (i)
			assert_int_equal(lo, prev_hi + 1);
		else
			assert_int_equal(lo, 0);
		assert_true(hi >= lo);
		assert_int_equal(rtioreq_hist_index(lo), i);
		assert_int_equal(rtioreq_hist_index(hi), i);
		/* relative width below 2^-SUB_BITS once past the exact range */
		if (lo >= (1u << RTIOREQ_HIST_SUB_BITS) && i != RTIOREQ_HIST_BUCKETS - 1)
			assert_true((hi - lo + 1) * (1u << RTIOREQ_HIST_SUB_BITS) <= lo);
		prev_hi = hi;
	}
	assert_int_equal(prev_hi, UINT64_MAX);
	/* small values are exact */
	for (uint64_t v = 0; v < (1u << RTIOREQ_HIST_SUB_BITS); v++)
		assert_int_equal(rtioreq_hist_index(v), v);
	/* random values */
	srandom(1);
	for (int n = 0; n < 100000; n++) {
		uint64_t v = ((uint64_t)random() << 31 | (uint64_t)random()) >> (random() % 62);

		rtioreq_hist_bucket_range(rtioreq_hist_index(v), &lo, &hi);
		assert_true(lo <= v && v <= hi);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Percentile p: the bucket upper bound of the ceil(p * n)-th smallest value, so the
 * answer lies within one bucket width above the exact order statistic, never below.
 */
static void test_percentiles_vs_model(void **state)
{
	enum { N = 20000 };
	static uint64_t v[N];
	static const double ps[] = { 0.001, 1, 10, 50, 90, 99, 99.9, 99.99, 99.999 };
	struct rtioreq_hist h;
	uint64_t sum = 0;

	rtioreq_hist_init(&h);
	srandom(7);
	for (int i = 0; i < N; i++) {
		/* heavy tail: mostly ~300 ns, some to ~100 us */
		v[i] = 200 + (uint64_t)(random() % 200);
		if (random() % 100 == 0)
			v[i] = (uint64_t)(random() % 100000);
		rtioreq_hist_record(&h, v[i]);
		sum += v[i];
	}
	qsort(v, N, sizeof(v[0]), cmp_u64);
	assert_int_equal(h.count, N);
	assert_int_equal(h.sum, sum);
	assert_int_equal(h.min, v[0]);
	assert_int_equal(h.max, v[N - 1]);
	assert_int_equal(rtioreq_hist_percentile(&h, 100), v[N - 1]);
	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
		size_t rank = (size_t)(ps[i] / 100.0 * N);
		uint64_t exact, got, lo, hi;

		if ((double)rank < ps[i] / 100.0 * N)
			rank++;
		if (!rank)
			rank = 1;
		exact = v[rank - 1];
		got = rtioreq_hist_percentile(&h, ps[i]);
		rtioreq_hist_bucket_range(rtioreq_hist_index(exact), &lo, &hi);
		assert_true(got >= exact);
		assert_true(got <= hi);
	}
	assert_true(rtioreq_hist_mean(&h) > (double)sum / N - 0.5);
	assert_true(rtioreq_hist_mean(&h) < (double)sum / N + 0.5);
}

static void test_single_value_and_clamp(void **state)
{
	struct rtioreq_hist h;

	rtioreq_hist_init(&h);
	rtioreq_hist_record(&h, 1000);
	/* the bucket of 1000 spans several values; percentiles clamp to [min, max] */
	assert_int_equal(rtioreq_hist_percentile(&h, 0.0001), 1000);
	assert_int_equal(rtioreq_hist_percentile(&h, 50), 1000);
	assert_int_equal(rtioreq_hist_percentile(&h, 100), 1000);
	assert_int_equal(rtioreq_hist_percentile(&h, 0), 1000);
}

static void test_overflow_and_saturation(void **state)
{
	struct rtioreq_hist h;

	rtioreq_hist_init(&h);
	rtioreq_hist_record(&h, 1ull << RTIOREQ_HIST_MAX_BITS);
	rtioreq_hist_record(&h, UINT64_MAX);
	rtioreq_hist_record(&h, 5);
	assert_int_equal(h.overflow, 2);
	assert_int_equal(h.bucket[RTIOREQ_HIST_BUCKETS - 1], 2);
	assert_int_equal(h.sum, UINT64_MAX); /* saturated, not wrapped */
	assert_int_equal(h.max, UINT64_MAX);
	assert_int_equal(rtioreq_hist_percentile(&h, 30), 5);
	assert_int_equal(rtioreq_hist_percentile(&h, 99), UINT64_MAX);
}

static void test_merge(void **state)
{
	struct rtioreq_hist a, b, all, empty;

	rtioreq_hist_init(&a);
	rtioreq_hist_init(&b);
	rtioreq_hist_init(&all);
	rtioreq_hist_init(&empty);
	for (uint64_t i = 0; i < 5000; i++) {
		uint64_t x = i * 37 % 9000;

		rtioreq_hist_record(i & 1 ? &a : &b, x);
		rtioreq_hist_record(&all, x);
	}
	rtioreq_hist_merge(&a, &empty); /* no-op, keeps min */
	rtioreq_hist_merge(&a, &b);
	assert_int_equal(a.count, all.count);
	assert_int_equal(a.sum, all.sum);
	assert_int_equal(a.min, all.min);
	assert_int_equal(a.max, all.max);
	assert_memory_equal(a.bucket, all.bucket, sizeof(a.bucket));
	rtioreq_hist_merge(&empty, &all); /* into an empty one */
	assert_int_equal(empty.min, all.min);
	assert_int_equal(rtioreq_hist_percentile(&empty, 99), rtioreq_hist_percentile(&all, 99));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_percentiles_vs_model),
		cmocka_unit_test(test_single_value_and_clamp),
		cmocka_unit_test(test_overflow_and_saturation),
		cmocka_unit_test(test_merge),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
