// SPDX-License-Identifier: MIT
/*
 * Events and per-client counters: each counted outcome (unclaimed, handler error,
 * invalid), a slot moving to a poller and back, and a hybrid poller's sleeps are reported
 * once, with their counts, on the events thread; the cap per period sums the rest into
 * one DROPPED event; a callback may call control functions (it holds no engine lock).
 */
#include <pthread.h>

#include "harness.h"
#include "sys/hook_pvt.h"

#define MAXEV 256

struct rec {
	pthread_mutex_t lock;
	struct rtioreq_event ev[MAXEV];
	unsigned int n;
	pthread_t thread;
	struct rtioreq_vm *vm; /* for the control call from the callback */
	int ctl;
};

static void record(void *ctx, const struct rtioreq_event *e)
{
	struct rec *r = ctx;
	struct rtioreq_vm *vm;

	pthread_mutex_lock(&r->lock);
	if (r->n < MAXEV)
		r->ev[r->n++] = *e;
	r->thread = pthread_self();
	pthread_mutex_unlock(&r->lock);
	pthread_mutex_lock(&r->lock);
	vm = e->kind == RTIOREQ_EVENT_UNCLAIMED ? r->vm : NULL;
	pthread_mutex_unlock(&r->lock);
	if (vm) {
		/* a control call from the callback: must not deadlock */
		int ctl = rtioreq_vm_set_poller(vm, 1, NULL);

		pthread_mutex_lock(&r->lock);
		r->ctl = ctl;
		r->vm = NULL;
		pthread_mutex_unlock(&r->lock);
	}
}

static int ctl_of(struct rec *r)
{
	int v;

	pthread_mutex_lock(&r->lock);
	v = r->ctl;
	pthread_mutex_unlock(&r->lock);
	return v;
}

static uint64_t sum(struct rec *r, enum rtioreq_event_kind k, int vcpu)
{
	uint64_t n = 0;

	pthread_mutex_lock(&r->lock);
	for (unsigned int i = 0; i < r->n; i++)
		if (r->ev[i].kind == k && (vcpu < 0 || r->ev[i].vcpu == vcpu))
			n += r->ev[i].count;
	pthread_mutex_unlock(&r->lock);
	return n;
}

static int h_fail(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	return -EIO;
}

static void test_counted_outcomes(void **state)
{
	struct rec r = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct rtioreq_client_stats cs;
	struct rtioreq_client *good, *bad;
	struct rtioreq_events *ev;
	struct h_vm h;

	h_vm_start(&h, 2);
	good = mk_client(h.vm, "good", h_const, 7, false);
	bad = mk_client(h.vm, "bad", h_fail, 0, false);
	assert_int_equal(rtioreq_range_add(good, RTIOREQ_TYPE_PORTIO, 0x10, 0x10), 0);
	assert_int_equal(rtioreq_range_add(bad, RTIOREQ_TYPE_PORTIO, 0x20, 0x20), 0);
	h_io(&h, 0, RTIOREQ_TYPE_PORTIO, RTIOREQ_DIR_READ, 0x99, 1, 0); /* before: not news */
	ev = rtioreq_events_start(h.eng, &(struct rtioreq_events_attr){
		.fn = record, .ctx = &r, .period_ms = 10, .thread = RTIOREQ_THREAD_ATTR_DEFAULT });
	assert_non_null(ev);
	for (int i = 0; i < 3; i++)
		assert_int_equal(h_io(&h, 1, RTIOREQ_TYPE_PORTIO, RTIOREQ_DIR_READ, 0x99, 1, 0),
				 0xff);
	assert_int_equal(h_io(&h, 0, RTIOREQ_TYPE_PORTIO, RTIOREQ_DIR_READ, 0x20, 1, 0), 0xff);
	h_io(&h, 0, RTIOREQ_TYPE_PORTIO, RTIOREQ_DIR_WRITE, 0x20, 1, 1);
	assert_int_equal(h_io(&h, 0, RTIOREQ_TYPE_PORTIO, RTIOREQ_DIR_READ, 0x10, 1, 0), 7);
	h_io(&h, 0, RTIOREQ_TYPE_PORTIO, RTIOREQ_DIR_READ, 0x10, 3, 0); /* size 3: invalid */
	rtioreq_events_stop(ev); /* reports the last period */
	assert_int_equal(sum(&r, RTIOREQ_EVENT_UNCLAIMED, 1), 3);
	assert_int_equal(sum(&r, RTIOREQ_EVENT_UNCLAIMED, 0), 0);
	assert_int_equal(sum(&r, RTIOREQ_EVENT_HANDLER_ERROR, 0), 2);
	assert_int_equal(sum(&r, RTIOREQ_EVENT_INVALID, 0), 1);
	assert_false(pthread_equal(r.thread, pthread_self())); /* on the events thread */
	rtioreq_client_stats(good, &cs);
	assert_int_equal(cs.served, 1);
	assert_int_equal(cs.handler_errors, 0);
	rtioreq_client_stats(bad, &cs);
	assert_int_equal(cs.served, 2);
	assert_int_equal(cs.handler_errors, 2);
	assert_string_equal(rtioreq_event_name(RTIOREQ_EVENT_SLOT_MOVED), "slot moved");
	h_vm_stop(&h);
}

static void test_moves_sleeps_cap_and_control(void **state)
{
	struct rec r = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct rtioreq_events *ev;
	struct rtioreq_poller *p;
	struct h_vm h;
	uint64_t before;
	bool back = false;
	pid_t tid;

	h_vm_start(&h, 2);
	p = rtioreq_poller_create(h.eng, &(struct rtioreq_thread_attr)RTIOREQ_THREAD_ATTR_DEFAULT);
	assert_non_null(p);
	tid = rtioreq_poller_tid(p);
	rtioreq_poller_set_idle(p, 1000); /* hybrid: sleeps after 1 us idle */
	ev = rtioreq_events_start(h.eng, &(struct rtioreq_events_attr){
		.fn = record, .ctx = &r, .period_ms = 10, .max_per_period = 2,
		.thread = RTIOREQ_THREAD_ATTR_DEFAULT });
	assert_non_null(ev);
	assert_int_equal(rtioreq_vm_set_poller(h.vm, 0, p), 0);
	assert_int_equal(rtioreq_vm_set_poller(h.vm, 1, p), 0);
	h_sleep_ms(30);
	/* a poller with work sleeps again after each burst */
	for (int i = 0; i < 5; i++) {
		h_io(&h, 0, RTIOREQ_TYPE_PORTIO, RTIOREQ_DIR_READ, 0x99, 1, 0);
		h_sleep_ms(2);
	}
	h_sleep_ms(30);
	before = sum(&r, RTIOREQ_EVENT_UNCLAIMED, 0) + sum(&r, RTIOREQ_EVENT_DROPPED, -1);
	pthread_mutex_lock(&r.lock);
	r.vm = h.vm; /* from now on an unclaimed read makes the callback move slot 1 back */
	r.ctl = 1;
	pthread_mutex_unlock(&r.lock);
	h_io(&h, 0, RTIOREQ_TYPE_PORTIO, RTIOREQ_DIR_READ, 0x99, 1, 0);
	for (int i = 0; i < 400 && ctl_of(&r); i++)
		h_sleep_ms(5);
	assert_int_equal(ctl_of(&r), 0); /* the callback's control call returned 0 */
	pthread_mutex_lock(&r.lock);
	r.vm = NULL;
	pthread_mutex_unlock(&r.lock);
	assert_true(sum(&r, RTIOREQ_EVENT_UNCLAIMED, 0) + sum(&r, RTIOREQ_EVENT_DROPPED, -1) >
		    before);
	h_sleep_ms(30);
	rtioreq_events_stop(ev);
	pthread_mutex_lock(&r.lock);
	for (unsigned int i = 0; i < r.n; i++)
		print_message("event %s vm %u vcpu %d tid %d count %llu\n",
			      rtioreq_event_name(r.ev[i].kind), r.ev[i].vm_id, r.ev[i].vcpu,
			      (int)r.ev[i].poller_tid, (unsigned long long)r.ev[i].count);
	pthread_mutex_unlock(&r.lock);
	/* both slots moved to the poller (one event each, maybe a period apart) and slot 1
	 * back to the fallback path by the callback */
	assert_true(sum(&r, RTIOREQ_EVENT_SLOT_MOVED, 0) + sum(&r, RTIOREQ_EVENT_DROPPED, -1) >= 1);
	assert_true(sum(&r, RTIOREQ_EVENT_SLOT_MOVED, 1) + sum(&r, RTIOREQ_EVENT_DROPPED, -1) >= 1);
	assert_true(sum(&r, RTIOREQ_EVENT_POLLER_SLEPT, -1) + sum(&r, RTIOREQ_EVENT_DROPPED, -1) >= 1);
	pthread_mutex_lock(&r.lock);
	for (unsigned int i = 0; i < r.n; i++) {
		if (r.ev[i].kind == RTIOREQ_EVENT_POLLER_SLEPT)
			assert_int_equal(r.ev[i].poller_tid, tid);
		back |= r.ev[i].kind == RTIOREQ_EVENT_SLOT_MOVED && r.ev[i].vcpu == 1 &&
			r.ev[i].poller_tid == 0;
	}
	pthread_mutex_unlock(&r.lock);
	assert_true(back || sum(&r, RTIOREQ_EVENT_DROPPED, -1)); /* moved back by the callback */
	h_vm_stop(&h);
}

/* More changes in one period than the cap: the rest are summed into one DROPPED. */
static void test_cap(void **state)
{
	struct rec r = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct rtioreq_events *ev;
	struct h_vm h;

	h_vm_start(&h, 4);
	ev = rtioreq_events_start(h.eng, &(struct rtioreq_events_attr){
		.fn = record, .ctx = &r, .period_ms = 60000, .max_per_period = 2,
		.thread = RTIOREQ_THREAD_ATTR_DEFAULT });
	assert_non_null(ev);
	for (uint16_t v = 0; v < 4; v++)
		h_io(&h, v, RTIOREQ_TYPE_PORTIO, RTIOREQ_DIR_READ, 0x99, 1, 0);
	rtioreq_events_stop(ev); /* one period: 4 unclaimed sources, cap 2 */
	assert_int_equal(r.n, 3);
	assert_int_equal(sum(&r, RTIOREQ_EVENT_UNCLAIMED, -1), 2);
	assert_int_equal(sum(&r, RTIOREQ_EVENT_DROPPED, -1), 2);
	h_vm_stop(&h);
}

/*
 * F5: a VM detached and attached again (same id) at the same address is a new VM for
 * the events: its counters start from 0 and are not compared with the old VM's. Same
 * for a poller destroyed and created again at the same address. A hook holds the
 * events thread before a scan while the objects are replaced. (Before: events keyed on
 * the pointer, so the new VM's count minus the old one's wrapped: an UNCLAIMED event
 * with a count near 2^64.)
 */
static _Atomic int ev_hold, ev_parked, ev_scans;


static void events_hook(const char *where, void *arg)
{
	if (strcmp(where, "events.scan"))
		return;
	atomic_fetch_add(&ev_scans, 1);
	while (atomic_load(&ev_hold)) {
		atomic_store(&ev_parked, 1);
		h_sleep_ms(1);
	}
	atomic_store(&ev_parked, 0);
	(void)arg;
}

static void park_events(void)
{
	atomic_store(&ev_hold, 1);
	while (!atomic_load(&ev_parked))
		h_sleep_ms(1);
}

static void test_reattached_same_address_is_new(void **state)
{
	struct rec r = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct rtioreq_vm_attr va = { .id = 1, .vcpu_num = 1 };
	struct rtioreq_poller *p, *p2;
	struct rtioreq_events *ev;
	struct rtioreq_vm *old;
	struct h_vm h;
	uint64_t expect = 0;
	int same = 0, n;

	h_vm_start(&h, 1);
	va.page = &h.shm.region->page;
	va.chan = &h.shm.region->chan;
	p = rtioreq_poller_create(h.eng, NULL);
	assert_non_null(p);
	rtioreq_poller_set_idle(p, 1); /* hybrid: it sleeps and wakes, counted */
	assert_int_equal(rtioreq_vm_set_poller(h.vm, 0, p), 0);
	atomic_store(&rtioreq__test_hook, events_hook);
	ev = rtioreq_events_start(h.eng, &(struct rtioreq_events_attr){
		.fn = record, .ctx = &r, .period_ms = 5, .thread = RTIOREQ_THREAD_ATTR_DEFAULT });
	assert_non_null(ev);
	/*
	 * Each round: three unclaimed requests on the current VM, reported (its baseline
	 * was taken when it was first seen); then, with the events thread held, the VM and
	 * the poller are replaced and the new VM gets one request (fewer than the old one's
	 * count). Rounds repeat until the allocator has handed out the old VM's address
	 * again in some round and the old poller's in some round (not necessarily the same
	 * one: which it reuses when depends on the heap's history). Seen here: the VM from
	 * round 5 on, every time; the poller (freed by whichever thread ran the last RCU
	 * callback, so in another thread's cache) in round 15 in most runs and in none of 60
	 * rounds in some. So the VM's reuse is required (the UNCLAIMED sums below are per
	 * VM) and the poller's is taken when it comes (its "slept" counts are then checked
	 * for a wrapped difference with the rest). Every round's counts are checked.
	 */
	for (int i = 0; i < 60 && same != 3; i++) {
		for (int k = 0; k < 3; k++)
			h_io(&h, 0, RTIOREQ_TYPE_PORTIO, RTIOREQ_DIR_READ, 0x99, 1, 0);
		expect += 3;
		/* bounded: a wrapped count (the defect) makes the sum meaningless */
		for (int t = 0; t < 5000 && sum(&r, RTIOREQ_EVENT_UNCLAIMED, 0) != expect; t++)
			h_sleep_ms(1);
		park_events();
		old = h.vm;
		assert_int_equal(rtioreq_vm_detach(h.vm), 0);
		h.vm = rtioreq_vm_attach(h.eng, &va);
		assert_non_null(h.vm);
		assert_int_equal(rtioreq_poller_destroy(p), 0);
		p2 = rtioreq_poller_create(h.eng, NULL);
		assert_non_null(p2);
		same |= (h.vm == old) | (p2 == p) << 1;
		p = p2;
		rtioreq_poller_set_idle(p, 1);
		assert_int_equal(rtioreq_vm_set_poller(h.vm, 0, p), 0);
		h_io(&h, 0, RTIOREQ_TYPE_PORTIO, RTIOREQ_DIR_READ, 0x99, 1, 0);
		n = atomic_load(&ev_scans);
		atomic_store(&ev_hold, 0);
		while (atomic_load(&ev_scans) < n + 1) /* the held scan finished: the new */
			h_sleep_ms(1);		       /* VM's baseline is taken */
	}
#if defined(__SANITIZE_ADDRESS__)
	if (!(same & 1)) { /* ASan's allocator (quarantine, per-thread caches) did not hand
			  * the old addresses out again: the case cannot arise here */
		rtioreq_events_stop(ev);
		atomic_store(&rtioreq__test_hook, NULL);
		h_vm_stop(&h);
		skip();
	}
#endif
	assert_true(same & 1); /* the VM's address was reused: the case arose */
	if (!(same & 2))
		print_message("poller address not reused in 60 rounds: VM case only\n");
	rtioreq_events_stop(ev);
	atomic_store(&rtioreq__test_hook, NULL);
	/* the rounds' three each; a new VM's first count is its baseline, never news */
	assert_int_equal(sum(&r, RTIOREQ_EVENT_UNCLAIMED, 0), expect);
	pthread_mutex_lock(&r.lock);
	for (unsigned int i = 0; i < r.n; i++)
		assert_true(r.ev[i].count < 1000000); /* no wrapped difference */
	pthread_mutex_unlock(&r.lock);
	h_vm_stop(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counted_outcomes),
		cmocka_unit_test(test_moves_sleeps_cap_and_control),
		cmocka_unit_test(test_cap),
		cmocka_unit_test(test_reattached_same_address_is_new),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
