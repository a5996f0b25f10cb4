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
	SIZE(struct rtioreq_exdev, 4208);
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
	SIZE(struct rtioreq_rt_throttle, 32);
	SIZE(struct rtioreq_events_attr, 96);
	SIZE(struct rtioreq_client_stats, 64);
#if RTIOREQ_HAVE_PROFILES
	/* caller-allocated, or array elements the caller indexes (the stride is ABI) */
	SIZE(struct rtioreq_profile_slot, 48);
	SIZE(struct rtioreq_profile_core, 80);
	SIZE(struct rtioreq_profile_range, 40);
	SIZE(struct rtioreq_profile_param, 40);
	SIZE(struct rtioreq_profile_device, 80);
	SIZE(struct rtioreq_profile_vm, 56);
	SIZE(struct rtioreq_profile_plan_thread, 104);
	SIZE(struct rtioreq_profile_plan_slot, 16);
	SIZE(struct rtioreq_profile_plan, 264);
	SIZE(struct rtioreq_profile_apply_attr, 64); /* grows at the end: its size field */
#endif
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
	TAIL(struct rtioreq_exdev);
	TAIL(struct rtioreq_pcdev_stats);
	TAIL(struct rtioreq_kvm_attr);
	TAIL(struct rtioreq_kvm_stats);
	TAIL(struct rtioreq_sim_attr);
	TAIL(struct rtioreq_sim_result);
	TAIL(struct rtioreq_shm);
	TAIL(struct rtioreq_hv_req);
	TAIL(struct rtioreq_rt_roots);
	TAIL(struct rtioreq_rt_cpuset);
	TAIL(struct rtioreq_rt_throttle);
	TAIL(struct rtioreq_events_attr);
	TAIL(struct rtioreq_client_stats);
#if RTIOREQ_HAVE_PROFILES
	TAIL(struct rtioreq_profile_slot);
	TAIL(struct rtioreq_profile_core);
	TAIL(struct rtioreq_profile_range);
	TAIL(struct rtioreq_profile_param);
	TAIL(struct rtioreq_profile_device);
	TAIL(struct rtioreq_profile_vm);
	TAIL(struct rtioreq_profile_plan_thread);
	TAIL(struct rtioreq_profile_plan_slot);
	TAIL(struct rtioreq_profile_plan);
#endif
}

/* Stats calls zero the reserved tail: a newer caller reading a field an older library
 * does not know reads 0, never stack garbage. */
static void test_stats_zero_reserved(void **state)
{
	struct rtioreq_engine *eng = rtioreq_engine_create(NULL);
	struct rtioreq_thread_attr pa = RTIOREQ_THREAD_ATTR_DEFAULT;
	struct rtioreq_poller_stats ps;
	struct rtioreq_client_stats cs;
	struct rtioreq_rt_throttle th;
	static struct rtioreq_io_request_buffer page;
	struct rtioreq_client *c;
	struct rtioreq_poller *p;
	struct rtioreq_vm *vm;
	uint64_t zero[16] = { 0 };

	assert_non_null(eng);
	p = rtioreq_poller_create(eng, &pa);
	assert_non_null(p);
	memset(&ps, 0xa5, sizeof(ps));
	rtioreq_poller_stats(p, &ps);
	assert_memory_equal(ps.reserved, zero, sizeof(ps.reserved));
	assert_int_equal(rtioreq_poller_destroy(p), 0);
	vm = rtioreq_vm_attach(eng, &(struct rtioreq_vm_attr){ .id = 1, .vcpu_num = 1,
								 .page = &page });
	assert_non_null(vm);
	c = rtioreq_client_create(vm, &(struct rtioreq_client_attr){ .name = "c" });
	assert_non_null(c);
	memset(&cs, 0xa5, sizeof(cs));
	rtioreq_client_stats(c, &cs);
	assert_memory_equal(cs.reserved, zero, sizeof(cs.reserved));
	memset(&th, 0xa5, sizeof(th));
	if (rtioreq_rt_throttle_get(NULL, &th) == 0) /* /proc/sys/kernel may be hidden */
		assert_memory_equal(th.reserved, zero, sizeof(th.reserved));
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
