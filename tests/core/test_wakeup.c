// SPDX-License-Identifier: MIT
/*
 * The sleep/wake handshakes of the engine's two sleepers (engine_pvt.h: P1/P2 + S1/S2 +
 * NW for a hybrid poller, K1/D1 + V1/V2 for the dispatcher), each with the interleaving
 * that lost a wake-up forced by a test hook (sys/hook_pvt.h): the sleeper is held just
 * before it reads its doorbell word while a control call hands it new work and rings
 * that doorbell. A request on the new work must then complete with no other wake-up.
 */
#include <pthread.h>
#include <sched.h>

#include "harness.h"
#include "sys/hook_pvt.h"

#define PIO RTIOREQ_TYPE_PORTIO
#define RD RTIOREQ_DIR_READ

/* ---------------------------------------------------------------------------------- */
/* Hold one thread at one hook point until released */

static const char *_Atomic hold_where; /* hook name to hold at; NULL: none */
static void *_Atomic hold_arg;	       /* and only for this argument */
static _Atomic int hold_armed, held, released;

static void hold_hook(const char *where, void *arg)
{
	const char *w = atomic_load(&hold_where);
	int one = 1;

	if (!w || strcmp(where, w) || arg != atomic_load(&hold_arg))
		return;
	if (!atomic_compare_exchange_strong(&hold_armed, &one, 0))
		return; /* hold once */
	atomic_store(&held, 1);
	while (!atomic_load(&released))
		h_sleep_ms(1);
}

static void hold_arm(const char *where, void *arg)
{
	atomic_store(&held, 0);
	atomic_store(&released, 0);
	atomic_store(&hold_arg, arg);
	atomic_store(&hold_where, where);
	atomic_store(&hold_armed, 1);
	atomic_store(&rtioreq__test_hook, hold_hook);
}

/* Wait until the armed thread is held (fails the test after 5 s). */
static void hold_wait(void)
{
	for (int i = 0; i < 5000 && !atomic_load(&held); i++)
		h_sleep_ms(1);
	assert_int_equal(atomic_load(&held), 1);
}

static void hold_release(void)
{
	atomic_store(&released, 1);
}

static void hold_off(void)
{
	atomic_store(&rtioreq__test_hook, NULL);
	atomic_store(&hold_where, NULL);
	hold_release();
}

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

	assert_int_equal(rtioreq_shm_create(&h.shm, NULL, 1), 0);
	h.eng = rtioreq_engine_create(NULL);
	assert_non_null(h.eng);
	va.page = &h.shm.region->page;
	va.chan = &h.shm.region->chan;
	h.vm = rtioreq_vm_attach(h.eng, &va);
	assert_non_null(h.vm);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_poller_slot_before_wake),
		cmocka_unit_test(test_poller_slot_after_wake),
		cmocka_unit_test(test_dispatcher_vm_before_kick),
		cmocka_unit_test(test_dispatcher_vm_after_kick),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
