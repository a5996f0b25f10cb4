// SPDX-License-Identifier: MIT
/*
 * The library's binary interface as a user sees it: the version the headers say is the
 * version of the library running, and every struct a caller allocates keeps its size
 * (rtioreq/common.h: new fields come out of the reserved tail, so a binary built
 * against an older minor version keeps working). A size change here is an ABI break:
 * take the new field out of `reserved[]` instead (x86-64 sizes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rtioreq.h"
#include "rtioreq/hv/kvm.h"

static void test_version(void **state)
{
	char s[32];

	assert_int_equal(rtioreq_version(), RTIOREQ_VERSION_HEX);
	assert_int_equal(RTIOREQ_VERSION_HEX, (RTIOREQ_VERSION_MAJOR << 16) |
						      (RTIOREQ_VERSION_MINOR << 8) |
						      RTIOREQ_VERSION_PATCH);
	snprintf(s, sizeof(s), "%d.%d.%d", RTIOREQ_VERSION_MAJOR, RTIOREQ_VERSION_MINOR,
		 RTIOREQ_VERSION_PATCH);
	assert_string_equal(rtioreq_version_string(), s);
	assert_string_equal(RTIOREQ_VERSION_STRING, s);
}

#define SIZE(type, n) assert_int_equal(sizeof(type), n)
#define TAIL(type) assert_int_equal(offsetof(type, reserved) + sizeof(((type *)0)->reserved), \
				    sizeof(type))

static void test_struct_sizes(void **state)
{
	SIZE(struct rtioreq_thread_attr, 40);
	SIZE(struct rtioreq_engine_attr, 184);
	SIZE(struct rtioreq_vm_ops, 56);
	SIZE(struct rtioreq_vm_attr, 96);
	SIZE(struct rtioreq_vm_stats, 208);
	SIZE(struct rtioreq_client_attr, 72);
	SIZE(struct rtioreq_poller_stats, 64);
	SIZE(struct rtioreq_req, 48); /* + tag, the identity of a take (issue #14) */
	SIZE(struct rtioreq_pcdev_attr, 80);
	SIZE(struct rtioreq_pcdev_stats, 128);
	SIZE(struct rtioreq_kvm_attr, 104);
	SIZE(struct rtioreq_kvm_stats, 36232);
	SIZE(struct rtioreq_sim_attr, 128);
	SIZE(struct rtioreq_sim_result, 18080);
	SIZE(struct rtioreq_shm, 224); /* + the owner claim (issue #9), before any release */
	SIZE(struct rtioreq_hv_req, 56);
	SIZE(struct rtioreq_rt_roots, 40);
	SIZE(struct rtioreq_rt_cpuset, 680);
	SIZE(struct rtioreq_hist, 17960);
}

/* The reserved space is the last member (a field added after it would move nothing but
 * would not come out of the reserve either). */
static void test_reserved_tail(void **state)
{
	TAIL(struct rtioreq_thread_attr);
	TAIL(struct rtioreq_engine_attr);
	TAIL(struct rtioreq_vm_ops);
	TAIL(struct rtioreq_vm_attr);
	TAIL(struct rtioreq_vm_stats);
	TAIL(struct rtioreq_client_attr);
	TAIL(struct rtioreq_poller_stats);
	TAIL(struct rtioreq_pcdev_attr);
	TAIL(struct rtioreq_pcdev_stats);
	TAIL(struct rtioreq_kvm_attr);
	TAIL(struct rtioreq_kvm_stats);
	TAIL(struct rtioreq_sim_attr);
	TAIL(struct rtioreq_sim_result);
	TAIL(struct rtioreq_shm);
	TAIL(struct rtioreq_hv_req);
	TAIL(struct rtioreq_rt_roots);
	TAIL(struct rtioreq_rt_cpuset);
}

/* Stats calls zero the reserved tail: a newer caller reading a field an older library
 * does not know reads 0, never stack garbage. */
static void test_stats_zero_reserved(void **state)
{
	struct rtioreq_engine *eng = rtioreq_engine_create(NULL);
	struct rtioreq_thread_attr pa = RTIOREQ_THREAD_ATTR_DEFAULT;
	struct rtioreq_poller_stats ps;
	struct rtioreq_poller *p;
	uint64_t zero[16] = { 0 };

	assert_non_null(eng);
	p = rtioreq_poller_create(eng, &pa);
	assert_non_null(p);
	memset(&ps, 0xa5, sizeof(ps));
	rtioreq_poller_stats(p, &ps);
	assert_memory_equal(ps.reserved, zero, sizeof(ps.reserved));
	assert_int_equal(rtioreq_poller_destroy(p), 0);
	rtioreq_engine_destroy(eng);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_struct_sizes),
		cmocka_unit_test(test_reserved_tail),
		cmocka_unit_test(test_stats_zero_reserved),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
