// SPDX-License-Identifier: MIT
/*
 * Pollers: the polling path. A pinned thread spins over its slot set; for each slot
 * seen PENDING it takes the request, runs the handler inline and stores COMPLETE.
 * Steady state: no syscall, no lock, no allocation (tests/core/test_hotpath.c counts them
 * with per-thread perf counters and an allocator hook). Ordering pairs: engine_pvt.h.
 *
 * Not steady state: while a grace period is in progress (a slot move's synchronize,
 * the call_rcu worker retiring range tables and slot sets), liburcu's quiescent-state
 * report in this loop issues one FUTEX_WAKE if the grace-period waiter stopped spinning
 * and went to sleep (after ~100 checks: when this poller was preempted or in a long
 * handler). At most one per grace period; nothing else (test_polling_syscalls_under_
 * churn measures it). Avoiding it would mean replacing liburcu's grace-period wait;
 * the engine keeps grace periods few instead (call_rcu batches retired tables).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/engine_pvt.h"
#include "sys/clock_pvt.h"
#include "sys/fence_pvt.h"
#include "sys/futex_pvt.h"
#include "sys/hook_pvt.h"
#include "sys/thread_pvt.h"

static _Atomic uint32_t *nw_word(const struct rtioreq__pent *e)
{
	return rtioreq_wire_atomic(&e->vm->chan->need_wakeup.word);
}

/*
 * Hybrid idle (NW, P1/P2, S1/S2 in engine_pvt.h): ask for the doorbell on every slot of
 * the set, re-check them, sleep until an upcall on one of their channels or a poller
 * wake-up. Called online; returns online. Return true if it slept.
 *
 * Order: the wake word (P2) is read BEFORE the slot set (S2), never after. A control
 * call publishes a set (S1) and then rings the wake word (P1); so either this S2 load
 * sees the new set, or its P1 comes after our P2 load and the futex wait below returns
 * at once (the word differs). Read the other way round, a set published between the
 * two loads was missed: the poller slept on the old set with the new wake value, never
 * set need_wakeup for the new slot, and the hypervisor, seeing "polled, awake", rang
 * nobody (tests/core/test_wakeup.c holds the poller in that window).
 */
static bool poller_sleep(struct rtioreq_poller *p)
{
	struct futex_waitv wv[RTIOREQ_MAX_VMS + 1];
	struct rtioreq__pset *set;
	unsigned int n = 0;
	bool pending = false;

	RTIOREQ__HOOK("poll.sleep.before_wake", p);
	/* P2: pairs with P1; a set change or stop after this makes the wait return at once */
	rtioreq__futex_waitv_set(&wv[n++], &p->wake,
				 atomic_load_explicit(&p->wake, memory_order_acquire), false);
	RTIOREQ__HOOK("poll.sleep.after_wake", p);
	/* S2, after P2: pairs with S1 in set_rebuild(); valid until our next quiescent state */
	set = atomic_load_explicit(&p->set, memory_order_acquire);
	for (uint32_t i = 0; set && i < set->n; i++) {
		_Atomic uint32_t *up = rtioreq_wire_atomic(&set->e[i].vm->chan->upcall_seq.word);
		unsigned int k = 1;

		while (k < n && wv[k].uaddr != (uintptr_t)up)
			k++;
		if (k == n && n < RTIOREQ_MAX_VMS + 1)
			/* D1-like: read before the bits are set, so an upcall rung after the
			 * hv saw a bit changes it and the wait returns at once */
			rtioreq__futex_waitv_set(&wv[n++], up,
						 atomic_load_explicit(up, memory_order_acquire),
						 true);
	}
	for (uint32_t i = 0; set && i < set->n; i++) /* NW: seq_cst, see the table */
		atomic_fetch_or_explicit(nw_word(&set->e[i]), 1u << set->e[i].slot->vcpu,
					 memory_order_seq_cst);
	RTIOREQ__FENCE_SEQ_CST(); /* NW: orders the bits before the loads */
	for (uint32_t i = 0; set && i < set->n && !pending; i++)
		/* T1 (relaxed is enough here: the fence above, and the taker reloads it) */
		pending = atomic_load_explicit(rtioreq_wire_atomic(&set->e[i].wire->processed),
					       memory_order_relaxed) == RTIOREQ_STATE_PENDING;
	if (!pending && !atomic_load_explicit(&p->stop, memory_order_relaxed)) {
		/* the waitv array holds addresses only: no set or chan is read while offline */
		rtioreq__rcu_offline();
		rtioreq__futex_waitv(wv, n, NULL);
		rtioreq__rcu_online();
	}
	/* S2: the set may have changed while we slept; clear the bits of what we own now
	 * (vm_place() clears those of slots taken away) */
	set = atomic_load_explicit(&p->set, memory_order_acquire);
	for (uint32_t i = 0; set && i < set->n; i++)
		/* relaxed: a stale bit only costs the hv one extra upcall */
		atomic_fetch_and_explicit(nw_word(&set->e[i]), ~(1u << set->e[i].slot->vcpu),
					  memory_order_relaxed);
	return !pending;
}

static void *poller_main(void *arg)
{
	struct rtioreq_poller *p = arg;
	uint64_t loops = 0, served = 0, sleeps = 0, idle_since = 0;

	/* relaxed: read by rtioreq_poller_tid() for diagnostics only */
	atomic_store_explicit(&p->tid, (pid_t)syscall(SYS_gettid), memory_order_relaxed);
	rtioreq__rcu_register();
	/* relaxed: a pure stop signal; pthread_join orders everything after it */
	while (!atomic_load_explicit(&p->stop, memory_order_relaxed)) {
		/* S2: pairs with S1 in set_rebuild(); entries stay valid until our next
		 * quiescent state */
		struct rtioreq__pset *set = atomic_load_explicit(&p->set, memory_order_acquire);

		uint64_t before = served, spin_ns;

		for (uint32_t i = 0; set && i < set->n; i++) {
			const struct rtioreq__pent *e = &set->e[i];

			/* T1: pairs with the hypervisor's H1 */
			if (atomic_load_explicit(rtioreq_wire_atomic(&e->wire->processed),
						 memory_order_acquire) != RTIOREQ_STATE_PENDING)
				continue;
			served += rtioreq__serve(e->vm, e->slot, e->wire, true);
		}
		loops++;
		/* relaxed: a setting; a change also bumps wake (P1) */
		spin_ns = atomic_load_explicit(&p->spin_ns, memory_order_relaxed);
		if (served != before || !spin_ns) {
			idle_since = 0;
		} else if (!(loops & 63)) { /* read the clock every 64 idle passes */
			uint64_t now = rtioreq__now_ns();

			if (!idle_since) {
				idle_since = now;
			} else if (now - idle_since >= spin_ns) {
				sleeps += poller_sleep(p);
				/* relaxed: statistics, single writer */
				atomic_store_explicit(&p->sleeps, sleeps, memory_order_relaxed);
				idle_since = 0;
				continue; /* set is stale: reload it */
			}
		}
		/* relaxed: statistics, single writer */
		atomic_store_explicit(&p->loops, loops, memory_order_relaxed);
		atomic_store_explicit(&p->served, served, memory_order_relaxed);
		rtioreq__rcu_quiescent();
		rtioreq__cpu_relax();
	}
	rtioreq__rcu_unregister();
	return NULL;
}

int rtioreq__poller_start(struct rtioreq_poller *p, const struct rtioreq_thread_attr *attr)
{
	return rtioreq__thread_start(&p->thread, attr, "rtioreq-poll", poller_main, p);
}

void rtioreq__poller_stop(struct rtioreq_poller *p)
{
	atomic_store_explicit(&p->stop, true, memory_order_relaxed); /* joined below */
	rtioreq__poller_wake(p);
	pthread_join(p->thread, NULL);
	rtioreq__rcu_barrier(); /* retired sets of this poller are freed */
	/* relaxed: the poller (S2's reader) was joined and no control call adds to a
	 * stopping poller (it left eng->pollers); the join orders the last S1 before us */
	free(atomic_load_explicit(&p->set, memory_order_relaxed));
}

pid_t rtioreq_poller_tid(const struct rtioreq_poller *p)
{
	/* relaxed: a diagnostic; rtioreq_poller_create() returned only once it was set */
	return atomic_load_explicit(&p->tid, memory_order_relaxed);
}

void rtioreq_poller_stats(const struct rtioreq_poller *p, struct rtioreq_poller_stats *out)
{
	memset(out, 0, sizeof(*out)); /* reserved tail: zero (rtioreq/common.h) */
	/* relaxed: statistics */
	out->loops = atomic_load_explicit(&p->loops, memory_order_relaxed);
	out->served = atomic_load_explicit(&p->served, memory_order_relaxed);
	out->sleeps = atomic_load_explicit(&p->sleeps, memory_order_relaxed);
}

void rtioreq__poller_wake(struct rtioreq_poller *p)
{
	atomic_fetch_add_explicit(&p->wake, 1, memory_order_release); /* P1, pairs with P2 */
	rtioreq__futex_wake(&p->wake, 1, false);
}

void rtioreq_poller_set_idle(struct rtioreq_poller *p, uint64_t spin_ns)
{
	atomic_store_explicit(&p->spin_ns, spin_ns, memory_order_relaxed); /* a setting */
	rtioreq__poller_wake(p); /* a sleeping poller re-reads it */
}

static void pset_free_cb(struct rtioreq__rcu_head *h)
{
	free(caa_container_of(h, struct rtioreq__pset, rcu));
}

/* Replace the set (under p->lock): copy without (vm, v), plus @add if not NULL. */
static int set_rebuild(struct rtioreq_poller *p, struct rtioreq_vm *vm, uint16_t v,
		       const struct rtioreq__pent *add)
{
	/* relaxed: S1's only writer is this function, under p->lock (held) */
	struct rtioreq__pset *old = atomic_load_explicit(&p->set, memory_order_relaxed);
	uint32_t n = old ? old->n : 0, k = 0;
	struct rtioreq__pset *set;

	set = calloc(1, sizeof(*set) + (n + 1) * sizeof(set->e[0]));
	if (!set)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++)
		if (old->e[i].vm != vm || old->e[i].slot->vcpu != v)
			set->e[k++] = old->e[i];
	if (add)
		set->e[k++] = *add;
	set->n = k;
	atomic_store_explicit(&p->set, set, memory_order_release); /* S1, pairs with S2 */
	rtioreq__poller_wake(p); /* asleep in hybrid idle: watch the new set */
	if (old)
		rtioreq__rcu_call(&old->rcu, pset_free_cb);
	return 0;
}

int rtioreq__poller_add(struct rtioreq_poller *p, struct rtioreq_vm *vm, uint16_t v)
{
	const struct rtioreq__pent e = {
		.vm = vm, .wire = &vm->page->req_slot[v], .slot = &vm->slot[v]
	};
	int r;

	pthread_mutex_lock(&p->lock);
	r = set_rebuild(p, vm, v, &e);
	pthread_mutex_unlock(&p->lock);
	return r;
}

int rtioreq__poller_remove(struct rtioreq_poller *p, struct rtioreq_vm *vm, uint16_t v)
{
	int r;

	pthread_mutex_lock(&p->lock);
	/* ENOMEM is retried: the slot must leave the set before it changes owner */
	r = RTIOREQ__RETRY_NOMEM(set_rebuild(p, vm, v, NULL));
	pthread_mutex_unlock(&p->lock);
	return r;
}
