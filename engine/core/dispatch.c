// SPDX-License-Identifier: MIT
/*
 * The fallback path: upcall -> dispatcher -> client (thread or embedder's waiter) ->
 * completion notification. The dispatcher takes the slots of every VM's fallback_mask
 * when the hypervisor rings upcall_seq; a request routed to a client with a handler
 * runs on that client's thread, one routed to a blocking client waits in its pending
 * set for rtioreq_client_wait(). Pollers hand requests for clients without a handler
 * to the same sets (rtioreq__assign()). The ordering pairs (H1, T1, ...) are defined in
 * engine_pvt.h.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine_pvt.h"
#include "sys/fence_pvt.h"
#include "sys/futex_pvt.h"
#include "sys/hook_pvt.h"
#include "sys/thread_pvt.h"

/* ---------------------------------------------------------------------------------- */
/* Doorbell and assignment */

void rtioreq__kick(struct rtioreq_engine *eng)
{
	/* K1: after the state change the dispatcher must see; pairs with its acquire load */
	atomic_fetch_add_explicit(&eng->kick, 1, memory_order_release);
	rtioreq__futex_wake(&eng->kick, 1, false);
}

void rtioreq__assign(struct rtioreq_vm *vm, struct rtioreq__slot *sl, struct rtioreq_client *c)
{
	uint32_t old;

	/* A1: slot.req before the bit; pairs with W1 in client_take() */
	old = atomic_fetch_or_explicit(&c->pending, 1u << sl->vcpu, memory_order_release);
	if (!(old & RTIOREQ__VCPU_MASK))
		rtioreq__futex_wake(&c->pending, 1, false);
}

/* ---------------------------------------------------------------------------------- */
/* Dispatcher: the fallback path's taker */

static unsigned int dispatch_scan(struct rtioreq__vmset *vs)
{
	unsigned int taken = 0;

	for (uint32_t i = 0; i < vs->n; i++) {
		struct rtioreq_vm *vm = vs->vm[i];
		/* O2: pairs with O1 in vm_place(); a slot is ours only while its bit is set */
		uint32_t mask = atomic_load_explicit(&vm->fallback_mask, memory_order_acquire);

		while (mask) {
			uint16_t v = (uint16_t)__builtin_ctz(mask);
			struct rtioreq_io_request *wire = &vm->page->req_slot[v];

			mask &= mask - 1;
			/* T1: pairs with the hypervisor's H1 */
			if (atomic_load_explicit(rtioreq_wire_atomic(&wire->processed),
						 memory_order_acquire) != RTIOREQ_STATE_PENDING)
				continue;
			if (atomic_load_explicit(&vm->slot[v].busy, memory_order_relaxed))
				continue; /* still ours from an earlier request: hv broke protocol */
			taken += rtioreq__serve(vm, &vm->slot[v], wire, false);
		}
	}
	return taken;
}

/*
 * The dispatcher's loop. Order: the kick word (D1) is read BEFORE the VM set (V2),
 * never after. An attach or detach publishes the set (V1) and then kicks (K1); so
 * either this V2 load sees the new set, or its K1 comes after our D1 load and the wait
 * below returns at once. Read the other way round, a VM attached between the two loads
 * was missed: the dispatcher waited on the old set's upcall words with the new kick
 * value, and the new VM's upcalls woke nobody (tests/core/test_wakeup.c holds the
 * dispatcher in that window).
 */
static void *dispatcher_main(void *arg)
{
	struct rtioreq_engine *eng = arg;
	struct futex_waitv wv[RTIOREQ_MAX_VMS + 1];

	rtioreq__rcu_register();
	for (;;) {
		struct rtioreq__vmset *vs;
		unsigned int n = 1;

		RTIOREQ__HOOK("dispatch.wait.before_kick", eng);
		/* D1: doorbells read before the set and the scan, so a ring after this makes
		 * the wait below return at once; pairs with K1 (and U1 below) */
		rtioreq__futex_waitv_set(&wv[0], &eng->kick,
					 atomic_load_explicit(&eng->kick, memory_order_acquire),
					 false);
		RTIOREQ__HOOK("dispatch.wait.after_kick", eng);
		/* relaxed, after D1: destroy stores stop before its kick (K1), so either D1
		 * saw that kick and this sees stop, or the wait below returns at once. (Read
		 * before D1, a stop+kick in between was lost and the join hung: seen once in
		 * 40 TSan runs.) The join orders everything else. */
		if (atomic_load_explicit(&eng->stop, memory_order_relaxed))
			break;
		/* V2, after D1: pairs with V1 in rtioreq__dispatch_publish() */
		vs = atomic_load_explicit(&eng->vmset, memory_order_acquire);
		for (uint32_t i = 0; vs && i < vs->n; i++, n++) {
			_Atomic uint32_t *w = rtioreq_wire_atomic(&vs->vm[i]->chan->upcall_seq.word);

			/* D1 for the VM's upcall word: pairs with the hv's U1 */
			rtioreq__futex_waitv_set(&wv[n], w,
						 atomic_load_explicit(w, memory_order_acquire), true);
		}
		/* seq_cst: with the hv's fence after H1 and the control thread's seq_cst
		 * update of polled_mask (vm_place()), a request whose upcall the hv skipped
		 * because the slot was still polled is seen by this scan */
		RTIOREQ__FENCE_SEQ_CST();
		if (vs && dispatch_scan(vs)) {
			rtioreq__rcu_quiescent();
			continue;
		}
		/* the waitv array holds addresses only; no pointer is used after offline */
		rtioreq__rcu_offline();
		rtioreq__futex_waitv(wv, n, NULL);
		rtioreq__rcu_online();
	}
	rtioreq__rcu_unregister();
	return NULL;
}

static void vmset_free_cb(struct rtioreq__rcu_head *h)
{
	free(caa_container_of(h, struct rtioreq__vmset, rcu));
}

int rtioreq__dispatch_publish(struct rtioreq_engine *eng)
{
	struct rtioreq__vmset *vs = calloc(1, sizeof(*vs)), *old;

	if (!vs)
		return -ENOMEM;
	vs->n = eng->nvms;
	memcpy(vs->vm, eng->vms, eng->nvms * sizeof(eng->vms[0]));
	old = atomic_load_explicit(&eng->vmset, memory_order_relaxed); /* relaxed: eng->lock */
	atomic_store_explicit(&eng->vmset, vs, memory_order_release);	/* V1 */
	if (old)
		rtioreq__rcu_call(&old->rcu, vmset_free_cb);
	rtioreq__kick(eng);
	return 0;
}

int rtioreq__dispatch_start(struct rtioreq_engine *eng)
{
	return rtioreq__thread_start(&eng->dispatcher, &eng->attr.dispatcher, "rtioreq-disp",
				     dispatcher_main, eng);
}

void rtioreq__dispatch_stop(struct rtioreq_engine *eng)
{
	atomic_store_explicit(&eng->stop, true, memory_order_relaxed); /* joined below */
	rtioreq__kick(eng);
	pthread_join(eng->dispatcher, NULL);
}

/* ---------------------------------------------------------------------------------- */
/* Clients: taking, completing and forcing assigned requests */

/* Take the next request assigned to @c. 0, or -ENODEV once shut down and drained. */
static int client_take(struct rtioreq_client *c, struct rtioreq_req *req)
{
	for (;;) {
		uint32_t p, bits, b;

		/* TK: in transit from here to W2 (relaxed: ordered by the W1 CAS below, which
		 * client_force's F1 on pending synchronizes with) */
		atomic_fetch_add_explicit(&c->taking, 1, memory_order_relaxed);
		/* W1: pairs with A1, makes slot.req of the assigned vCPU visible */
		p = atomic_load_explicit(&c->pending, memory_order_acquire);
		bits = p & RTIOREQ__VCPU_MASK;
		if (!bits) {
			atomic_fetch_sub_explicit(&c->taking, 1, memory_order_release); /* TK */
			if (p & RTIOREQ__DYING)
				return -ENODEV;
			rtioreq__futex_wait(&c->pending, p, NULL, false);
			continue;
		}
		b = bits & -bits;
		/* W1 CAS: acq_rel, so a force whose F1 on pending follows it sees taking */
		if (!atomic_compare_exchange_weak_explicit(&c->pending, &p, p & ~b,
							   memory_order_acq_rel,
							   memory_order_relaxed)) {
			atomic_fetch_sub_explicit(&c->taking, 1, memory_order_release); /* TK */
			continue;
		}
		/* copy before W2: once inflight, a forcing call may complete and the slot
		 * be reused */
		*req = c->vm->slot[__builtin_ctz(b)].req;
		atomic_fetch_or_explicit(&c->inflight, b, memory_order_release); /* W2 */
		atomic_fetch_sub_explicit(&c->taking, 1, memory_order_release); /* TK, after W2 */
		/* relaxed: a hint; other waiters also wake on the next assignment */
		if ((bits & ~b) && atomic_load_explicit(&c->users, memory_order_relaxed) > 1)
			rtioreq__futex_wake(&c->pending, 1, false);
		return 0;
	}
}

/* Complete a request of @c taken by client_take(). 0 or -ENOENT (not outstanding). */
static int client_finish(struct rtioreq_client *c, const struct rtioreq_req *req, int status)
{
	struct rtioreq_vm *vm = c->vm;
	struct rtioreq__slot *sl;
	uint32_t b, old;

	if (req->vcpu >= vm->vcpu_num)
		return -ENOENT;
	b = 1u << req->vcpu;
	old = atomic_fetch_and_explicit(&c->inflight, ~b, memory_order_acq_rel); /* F1 */
	if (!(old & b))
		return -ENOENT;
	rtioreq__client_count(c, status);
	sl = &vm->slot[req->vcpu];
	if (status < 0) {
		rtioreq__complete_ones(vm, sl, &sl->st.handler_errors, false);
		return 0;
	}
	if (sl->req.dir != RTIOREQ_DIR_WRITE)
		sl->req.value = req->value;
	rtioreq__complete(vm, sl, false);
	return 0;
}

/* Claim and complete (all ones) everything assigned to @c. Return how many. */
unsigned int rtioreq__client_force(struct rtioreq_client *c)
{
	uint32_t bits;
	unsigned int n = 0;

	/* F1 on pending (pairs with A1) and on inflight (pairs with W2) */
	bits = atomic_fetch_and_explicit(&c->pending, ~RTIOREQ__VCPU_MASK, memory_order_acq_rel) &
	       RTIOREQ__VCPU_MASK;
	/* TK: a waiter that took a bit before our F1 publishes it to inflight within a
	 * few instructions; wait for it (acquire: pairs with its release decrement) */
	while (atomic_load_explicit(&c->taking, memory_order_acquire))
		sched_yield();
	bits |= atomic_fetch_and_explicit(&c->inflight, 0, memory_order_acq_rel);
	while (bits) {
		struct rtioreq__slot *sl = &c->vm->slot[__builtin_ctz(bits)];

		bits &= bits - 1;
		rtioreq__complete_ones(c->vm, sl, &sl->st.forced, false);
		n++;
	}
	return n;
}

void *rtioreq__client_main(void *arg)
{
	struct rtioreq_client *c = arg;
	struct rtioreq_req req;

	while (client_take(c, &req) == 0) {
		int rc;

		if (req.dir != RTIOREQ_DIR_WRITE)
			req.value = 0;
		rc = c->handler(c, &req, c->priv);
		client_finish(c, &req, rc);
	}
	return NULL;
}

int rtioreq_client_wait(struct rtioreq_client *c, struct rtioreq_req *req)
{
	int r;

	if (c->handler)
		return -EINVAL;
	/* relaxed: destroy waits for 0 with acquire; the RMW orders nothing else */
	atomic_fetch_add_explicit(&c->users, 1, memory_order_relaxed);
	r = client_take(c, req);
	atomic_fetch_sub_explicit(&c->users, 1, memory_order_release);
	return r;
}

int rtioreq_client_complete(struct rtioreq_client *c, const struct rtioreq_req *req, int status)
{
	return client_finish(c, req, status);
}
