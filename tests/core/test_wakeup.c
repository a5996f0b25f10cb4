// SPDX-License-Identifier: MIT
/*
 * The sleep/wake handshakes of the engine's two sleepers (engine_pvt.h: P1/P2 + S1/S2 +
 * NW for a hybrid poller, K1/D1 + V1/V2 for the dispatcher), each with the interleaving
 * that lost a wake-up forced by a test hook (sys/hook_pvt.h): the sleeper is held just
 * before it reads its doorbell word while a control call hands it new work and rings
 * that doorbell. A request on the new work must then complete with no other wake-up.
 * And without futex_waitv(2) (denied by seccomp) the engine refuses to start rather
 * than spin.
 */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "hold.h"

#define PIO RTIOREQ_TYPE_PORTIO
#define RD RTIOREQ_DIR_READ

/* ---------------------------------------------------------------------------------- */

/*
 * A slot given to a hybrid poller while the poller is between the load of its slot set
 * and the load of its wake word (hook "poll.sleep.before_wake", held on the idle
 * poller whose set is empty): rtioreq_vm_start() publishes the set (S1) and rings the
 * wake word (P1) in that window. The poller must then sleep watching the new slot (its
 * need_wakeup bit set, its channel's upcall word in the wait), so the hypervisor's
 * request on it is taken. Before the fix the poller sleeps on the old (empty) set, the
 * hypervisor sees "polled, awake" and rings nobody: the request waits forever.
 */
static void poller_given_slot_while_held(const char *where)
{
	struct rtioreq_vm_attr va = { .id = 1, .vcpu_num = 1, .paused = true };
	struct rtioreq_vm_stats st;
	struct rtioreq_poller *p;
	struct h_vm h;
	uint64_t v = 0;

	h_vm_start_attr(&h, va);
	assert_int_equal(rtioreq_range_add(mk_client(h.vm, "kbd", h_const, 0x5a, false), PIO,
					   0x60, 0x64),
			 0);
	p = rtioreq_poller_create(h.eng, &(struct rtioreq_thread_attr){ .cpu = -1 });
	assert_non_null(p);
	assert_int_equal(rtioreq_vm_set_poller(h.vm, 0, p), 0); /* the plan; paused */

	hold_arm(where, p);
	rtioreq_poller_set_idle(p, 1000); /* idle, empty set: it goes to sleep at once */
	hold_wait();
	/* S1 + P1 while the poller is held: no grace period (a paused VM's slots had no
	 * taker), so this returns with the poller still held */
	assert_int_equal(rtioreq_vm_start(h.vm), 0);
	assert_int_equal(h.shm.region->chan.polled_mask.word, 1);
	hold_release();
	h_sleep_ms(50); /* let it go to sleep */
	h_submit(&h, 0, PIO, RD, 0x60, 1, 0, true); /* rings only if need_wakeup says so */
	assert_true(h_wait(&h, 0, PIO, &v, 2000));
	assert_int_equal(v, 0x5a);
	rtioreq_vm_stats(h.vm, &st);
	assert_int_equal(st.polled, 1);
	hold_off();
	h_vm_stop(&h);
}

static void test_poller_slot_before_wake(void **state)
{
	poller_given_slot_while_held("poll.sleep.before_wake");
}

static void test_poller_slot_after_wake(void **state)
{
	poller_given_slot_while_held("poll.sleep.after_wake");
}

/*
 * A VM attached while the dispatcher is between the load of its VM set and the load
 * of its kick word (hook "dispatch.wait.before_kick"): the attach publishes the new set
 * (V1) and kicks (K1) in that window. The dispatcher must then wait on the new VM's
 * upcall word, so the request the hypervisor rings for is taken (unclaimed: completed
 * with all ones). Before the fix it waits on the old set's words only: never taken.
 */
static void dispatcher_given_vm_while_held(const char *where)
{
	struct rtioreq_shm shm_b;
	struct rtioreq_vm *vm_b;
	struct h_vm h, hb;
	uint64_t v = 0;

	h_vm_start(&h, 1);
	assert_int_equal(rtioreq_shm_create(&shm_b, NULL, 1), 0);
	hold_arm(where, h.eng);
	rtioreq_vm_upcall(h.vm); /* the dispatcher runs its loop once more: held there */
	hold_wait();
	/* V1 + K1 while the dispatcher is held (attach waits for no grace period) */
	vm_b = rtioreq_vm_attach(h.eng, &(struct rtioreq_vm_attr){
						.id = 2,
						.vcpu_num = 1,
						.page = &shm_b.region->page,
						.chan = &shm_b.region->chan,
					});
	assert_non_null(vm_b);
	hold_release();
	h_sleep_ms(50); /* let it go to sleep */
	hb.shm = shm_b;
	h_submit(&hb, 0, PIO, RD, 0x60, 1, 0, true); /* not polled: rings the upcall */
	assert_true(h_wait(&hb, 0, PIO, &v, 2000));
	assert_int_equal(v, 0xff); /* unclaimed */
	hold_off();
	assert_int_equal(rtioreq_vm_detach(vm_b), 0);
	h_vm_stop(&h);
	rtioreq_shm_close(&shm_b);
}

static void test_dispatcher_vm_before_kick(void **state)
{
	dispatcher_given_vm_while_held("dispatch.wait.before_kick");
}

static void test_dispatcher_vm_after_kick(void **state)
{
	dispatcher_given_vm_while_held("dispatch.wait.after_kick");
}

/* ---------------------------------------------------------------------------------- */
/* No futex_waitv */

#if defined(__x86_64__)
#define T_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define T_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#ifdef T_AUDIT_ARCH
/* This thread and its future children get ENOSYS for syscall 449 (futex_waitv), as on
 * Linux < 5.16. A raw BPF filter; no libseccomp. Return 0 or -errno. */
static int deny_futex_waitv(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, T_AUDIT_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 449, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0))
		return -errno;
	return 0;
}

static uint64_t cpu_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * In a forked child with syscall 449 denied: rtioreq_engine_create() fails with ENOSYS
 * (the sleepers cannot sleep). If it created an engine instead (before the fix), the
 * child reports how much CPU the idle engine (dispatcher + a hybrid poller) burned in
 * 200 ms and the test fails: that was a full CPU per sleeper.
 */
static void test_no_futex_waitv_refused(void **state)
{
	int status = 0;
	pid_t pid;

	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		struct rtioreq_engine *eng;
		struct rtioreq_poller *p;
		uint64_t t0, c0, c1;

		if (deny_futex_waitv()) {
			fprintf(stdout, "seccomp filter refused: %s\n", strerror(errno));
			_exit(3);
		}
		if (syscall(449, NULL, 0, 0, NULL, 0) != -1 || errno != ENOSYS)
			_exit(4); /* the filter does not work as meant */
		eng = rtioreq_engine_create(NULL);
		if (!eng)
			_exit(errno == ENOSYS ? 0 : 5);
		p = rtioreq_poller_create(eng, &(struct rtioreq_thread_attr){ .cpu = -1 });
		if (p)
			rtioreq_poller_set_idle(p, 1000);
		h_sleep_ms(20);
		c0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
		t0 = h_now_ns();
		h_sleep_ms(200);
		c1 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
		fprintf(stdout, "engine created without futex_waitv: idle CPU %.1f ms in %.1f ms\n",
			(double)(c1 - c0) / 1e6, (double)(h_now_ns() - t0) / 1e6);
		fflush(stdout);
		_exit(6);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* the parent (no filter) still creates engines */
	rtioreq_engine_destroy(rtioreq_engine_create(NULL));
}
#else
static void test_no_futex_waitv_refused(void **state)
{
	skip(); /* no seccomp arch constant for this architecture in the test */
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_poller_slot_before_wake),
		cmocka_unit_test(test_poller_slot_after_wake),
		cmocka_unit_test(test_dispatcher_vm_before_kick),
		cmocka_unit_test(test_dispatcher_vm_after_kick),
		cmocka_unit_test(test_no_futex_waitv_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
