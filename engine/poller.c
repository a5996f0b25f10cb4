// SPDX-License-Identifier: MIT
/*
 * Pollers: the polling path. A pinned thread spins over its slot set; for each slot
 * seen PENDING it takes the request, runs the handler inline and stores COMPLETE.
 * Steady state: no syscall, no lock, no allocation (tests/test_hotpath.c counts them
 * with per-thread perf counters and an allocator hook). Ordering pairs: engine_pvt.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine_pvt.h"
#include "thread_pvt.h"

static void *poller_main(void *arg)
{
	struct rtioreq_poller *p = arg;
	uint64_t loops = 0, served = 0;

	/* relaxed: read by rtioreq_poller_tid() for diagnostics only */
	atomic_store_explicit(&p->tid, (pid_t)syscall(SYS_gettid), memory_order_relaxed);
	rtioreq__rcu_register();
	/* relaxed: a pure stop signal; pthread_join orders everything after it */
	while (!atomic_load_explicit(&p->stop, memory_order_relaxed)) {
		/* S2: pairs with S1 in set_publish(); entries stay valid until our next
		 * quiescent state */
		struct rtioreq__pset *set = atomic_load_explicit(&p->set, memory_order_acquire);

		for (uint32_t i = 0; set && i < set->n; i++) {
			const struct rtioreq__pent *e = &set->e[i];

			/* T1: pairs with the hypervisor's H1 */
			if (atomic_load_explicit(rtioreq_wire_atomic(&e->wire->processed),
						 memory_order_acquire) != RTIOREQ_STATE_PENDING)
				continue;
			rtioreq__serve(e->vm, e->slot, e->wire, true);
			served++;
		}
		loops++;
		/* relaxed: statistics, single writer */
		atomic_store_explicit(&p->loops, loops, memory_order_relaxed);
		atomic_store_explicit(&p->served, served, memory_order_relaxed);
		rtioreq__rcu_quiescent();
		rtioreq__cpu_relax();
	}
	rtioreq__rcu_unregister();
	return NULL;
}

struct rtioreq_poller *rtioreq_poller_create(struct rtioreq_engine *eng,
					     const struct rtioreq_thread_attr *attr)
{
	struct rtioreq_poller *p;
	int r;

	if (!eng) {
		errno = EINVAL;
		return NULL;
	}
	p = aligned_alloc(RTIOREQ__CACHELINE, sizeof(*p));
	if (!p)
		return NULL;
	memset(p, 0, sizeof(*p));
	p->eng = eng;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_lock(&eng->lock);
	r = rtioreq__thread_start(&p->thread, attr, "rtioreq-poll", poller_main, p);
	if (!r) {
		p->next = eng->pollers;
		eng->pollers = p;
	}
	pthread_mutex_unlock(&eng->lock);
	if (r) {
		pthread_mutex_destroy(&p->lock);
		free(p);
		errno = -r;
		return NULL;
	}
	while (!atomic_load_explicit(&p->tid, memory_order_relaxed))
		sched_yield(); /* so rtioreq_poller_tid() is valid on return */
	return p;
}

int rtioreq_poller_destroy(struct rtioreq_poller *p)
{
	struct rtioreq_engine *eng = p->eng;

	pthread_mutex_lock(&eng->lock);
	rtioreq__poller_release_slots(p); /* each slot crosses a grace period */
	for (struct rtioreq_poller **pp = &eng->pollers; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	pthread_mutex_unlock(&eng->lock);
	atomic_store_explicit(&p->stop, true, memory_order_relaxed); /* joined below */
	pthread_join(p->thread, NULL);
	rtioreq__rcu_barrier(); /* retired sets of this poller are freed */
	free(atomic_load_explicit(&p->set, memory_order_relaxed));
	pthread_mutex_destroy(&p->lock);
	free(p);
	return 0;
}

pid_t rtioreq_poller_tid(const struct rtioreq_poller *p)
{
	return atomic_load_explicit(&p->tid, memory_order_relaxed);
}

void rtioreq_poller_stats(const struct rtioreq_poller *p, struct rtioreq_poller_stats *out)
{
	/* relaxed: statistics */
	out->loops = atomic_load_explicit(&p->loops, memory_order_relaxed);
	out->served = atomic_load_explicit(&p->served, memory_order_relaxed);
}

static void pset_free_cb(struct rtioreq__rcu_head *h)
{
	free(caa_container_of(h, struct rtioreq__pset, rcu));
}

/* Replace the set (under p->lock): copy without (vm, v), plus @add if not NULL. */
static int set_rebuild(struct rtioreq_poller *p, struct rtioreq_vm *vm, uint16_t v,
		       const struct rtioreq__pent *add)
{
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
	while ((r = set_rebuild(p, vm, v, NULL)) == -ENOMEM) {
		struct timespec ms = { 0, 1000000 };

		nanosleep(&ms, NULL); /* the slot must leave the set before it changes owner */
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}
