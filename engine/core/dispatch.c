// SPDX-License-Identifier: MIT
/*
 * The fallback path: upcall -> dispatcher (handler inline) or client (handler_thread
 * thread or embedder's waiter) -> completion notification. The dispatcher takes the
 * slots of every VM's fallback_mask when the hypervisor rings upcall_seq; a request
 * routed to a client with a handler runs inline here (rtioreq__serve()), or on that
 * client's thread if it was created with handler_thread; one routed to a blocking
 * client waits in its pending set for rtioreq_client_wait(). Pollers hand requests
 * for clients without a handler to the same sets (rtioreq__assign()). The ordering
 * pairs (H1, T1, ...) are defined in engine_pvt.h.
 */
#include <errno.h>
#include <pthread.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine_pvt.h"
#include "sys/fence_pvt.h"
#include "sys/clock_pvt.h"
#include "sys/hook_pvt.h"
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
/* Lifetimes (engine_pvt.h, "Lifetimes"; R1) */

__thread struct rtioreq_client *rtioreq__tls_client;

void rtioreq__vm_get(struct rtioreq_vm *vm)
{
	/* relaxed: the caller already holds a reference (or the engine's list lock) */
	atomic_fetch_add_explicit(&vm->refs, 1, memory_order_relaxed);
}

void rtioreq__vm_put(struct rtioreq_vm *vm)
{
	/* R1: acq_rel: release for our uses, acquire for everyone's if we free (a fence
	 * would do, but ThreadSanitizer does not model fences) */
	if (atomic_fetch_sub_explicit(&vm->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* detach already freed the map and let go of the page and channel */
	free(vm->hist);
	pthread_mutex_destroy(&vm->lock);
	pthread_mutex_destroy(&vm->place_lock);
	free(vm);
}

void rtioreq__client_get(struct rtioreq_client *c)
{
	/* relaxed: the caller already holds a reference */
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void rtioreq__client_put(struct rtioreq_client *c)
{
	struct rtioreq_vm *vm = c->vm;

	/* R1: acq_rel: release for our uses, acquire for everyone's if we free (a fence
	 * would do, but ThreadSanitizer does not model fences) */
	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
		return;
	pthread_mutex_destroy(&c->flock);
	free(c->forced); /* empty: every forced request's reference was let go */
	free(c);
	rtioreq__vm_put(vm);
}

/* ---------------------------------------------------------------------------------- */
/* Clients: taking, completing and forcing assigned requests */

/* TK: leave the transit window; wake a forcing call that sleeps on it. */
static void transit_leave(struct rtioreq_client *c)
{
	/* TK: release, after W2 (or after a failed W1) */
	uint32_t old = atomic_fetch_sub_explicit(&c->taking, 1, memory_order_release);

	if (old == (RTIOREQ__TK_SLEEPER | 1)) {
		/* relaxed: the futex wake orders nothing; the sleeper re-reads with acquire */
		atomic_fetch_and_explicit(&c->taking, ~RTIOREQ__TK_SLEEPER, memory_order_relaxed);
		rtioreq__futex_wake(&c->taking, INT_MAX, false);
	}
}

/*
 * TK, forcing side: wait until no waiter is between W1 and W2. The window is a few
 * instructions, unless the waiter was preempted there (a lower-priority thread, a
 * hook in the tests): spin briefly, then sleep on the word (the last waiter to leave
 * wakes us; the 10 ms bound is only a backstop), so a real-time forcing call never
 * starves the waiter it waits for.
 */
static void transit_wait(struct rtioreq_client *c)
{
	const struct timespec ms = { 0, 10000000 };

	for (unsigned int i = 0;; i++) {
		/* TK: acquire, pairs with the waiter's release decrement after W2 */
		uint32_t t = atomic_load_explicit(&c->taking, memory_order_acquire);

		if (!(t & ~RTIOREQ__TK_SLEEPER))
			return;
		if (i < 256) {
			rtioreq__cpu_relax();
			continue;
		}
		/* relaxed: only a request for a wake-up; the load above orders */
		if (!(t & RTIOREQ__TK_SLEEPER) &&
		    !atomic_compare_exchange_weak_explicit(&c->taking, &t, t | RTIOREQ__TK_SLEEPER,
							   memory_order_relaxed,
							   memory_order_relaxed))
			continue;
		rtioreq__futex_wait(&c->taking, t | RTIOREQ__TK_SLEEPER, &ms, false);
	}
}

/* Take the next request assigned to @c. 0; -ENODEV once shut down and drained;
 * -ESHUTDOWN once torn down (destroyed, or its VM detached). */
static int client_take(struct rtioreq_client *c, struct rtioreq_req *req)
{
	for (;;) {
		uint32_t p, bits, b;
		uint16_t v;

		/* TK: in transit from here to W2 (relaxed: ordered by the W1 CAS below, which
		 * client_force's F2 on pending synchronizes with) */
		atomic_fetch_add_explicit(&c->taking, 1, memory_order_relaxed);
		/* W1: pairs with A1, makes slot.req of the assigned vCPU visible */
		p = atomic_load_explicit(&c->pending, memory_order_acquire);
		bits = p & RTIOREQ__VCPU_MASK;
		if (!bits) {
			transit_leave(c);
			if (p & RTIOREQ__DEAD)
				return -ESHUTDOWN;
			if (p & RTIOREQ__DYING)
				return -ENODEV;
			rtioreq__futex_wait(&c->pending, p, NULL, false);
			continue;
		}
		b = bits & -bits;
		/* W1 CAS: acq_rel, so a force whose F2 on pending follows it sees taking */
		if (!atomic_compare_exchange_weak_explicit(&c->pending, &p, p & ~b,
							   memory_order_acq_rel,
							   memory_order_relaxed)) {
			transit_leave(c);
			continue;
		}
		RTIOREQ__HOOK("client.take.transit", c);
		v = (uint16_t)__builtin_ctz(b);
		/* copy before W2: once claimable, a forcing call may complete it and the slot
		 * be reused */
		*req = c->vm->slot[v].req;
		rtioreq__client_get(c); /* the taken request's reference, until complete */
		/* W2: the request is claimable by its tag; pairs with F1 and F2 */
		atomic_store_explicit(&c->claim[v], req->tag, memory_order_release);
		transit_leave(c); /* TK, after W2 */
		/* relaxed: a hint; other waiters also wake on the next assignment */
		if ((bits & ~b) && atomic_load_explicit(&c->users, memory_order_relaxed) > 1)
			rtioreq__futex_wake(&c->pending, 1, false);
		return 0;
	}
}

/*
 * Complete a request of @c taken by client_take(), claimed by its tag (F1). 0, or
 * -ENOENT: not outstanding (forced, already completed, or never taken); nothing of
 * the VM is written then. The taken request's reference is let go exactly once: by
 * the winning completion, or by the first late completion of a forced request (its
 * FH record); a second completion of the same request finds neither and touches
 * nothing.
 */
static int client_finish(struct rtioreq_client *c, const struct rtioreq_req *req, int status)
{
	struct rtioreq_vm *vm = c->vm;
	struct rtioreq__slot *sl;
	uint64_t tag = req->tag;
	bool found = false;
	uint32_t f;

	if (req->vcpu >= vm->vcpu_num || !tag)
		return -ENOENT;
	/* CP: before F1, seq_cst: see the table */
	atomic_fetch_add_explicit(&c->completing, 1, memory_order_seq_cst);
	/* F1: seq_cst (acq_rel at least: pairs with W2, and with F2 through the word) */
	if (!atomic_compare_exchange_strong_explicit(&c->claim[req->vcpu], &tag, 0,
						     memory_order_seq_cst, memory_order_seq_cst)) {
		/* CP: release; we touched nothing of the VM */
		atomic_fetch_sub_explicit(&c->completing, 1, memory_order_release);
		/* FH: forced under its taker? Then its record is there (the force wrote it
		 * under flock around the F2 our F1 read); let go of the request's reference.
		 * No record: a double completion or a stale tag, nothing is touched. */
		pthread_mutex_lock(&c->flock);
		for (f = 0; f < c->nforced; f++)
			if (c->forced[f].vcpu == req->vcpu && c->forced[f].tag == req->tag) {
				c->forced[f] = c->forced[--c->nforced];
				found = true;
				break;
			}
		pthread_mutex_unlock(&c->flock);
		if (found)
			rtioreq__client_put(c); /* never the last: the caller holds one */
		return -ENOENT;
	}
	rtioreq__client_count(c, status);
	sl = &vm->slot[req->vcpu];
	if (status < 0) {
		rtioreq__complete_ones(vm, sl, &sl->st.handler_errors, false);
	} else {
		if (sl->req.dir != RTIOREQ_DIR_WRITE)
			sl->req.value = req->value;
		rtioreq__complete(vm, sl, false);
	}
	/* CP: release, after C2: a teardown that sees 0 may let the VM go */
	atomic_fetch_sub_explicit(&c->completing, 1, memory_order_release);
	rtioreq__client_put(c); /* the taken request's; never the last: the caller holds one */
	return 0;
}

/* Room for @n more forced records in @c (under c->flock). 0 or -ENOMEM. */
static int forced_reserve(struct rtioreq_client *c, uint32_t n)
{
	struct rtioreq__forced *f;
	uint32_t cap;

	if (c->capforced - c->nforced >= n)
		return 0;
	cap = c->nforced + n;
	f = realloc(c->forced, cap * sizeof(*f));
	if (!f)
		return -ENOMEM;
	c->forced = f;
	c->capforced = cap;
	return 0;
}

/* Claim and complete (all ones) everything assigned to @c. Return how many. */
unsigned int rtioreq__client_force(struct rtioreq_client *c)
{
	struct rtioreq_vm *vm = c->vm;
	uint32_t bits;
	unsigned int n = 0;

	/* F2 on pending (pairs with A1) */
	bits = atomic_fetch_and_explicit(&c->pending, ~RTIOREQ__VCPU_MASK, memory_order_acq_rel) &
	       RTIOREQ__VCPU_MASK;
	transit_wait(c); /* TK */
	/*
	 * FH: the claims go under flock, each won one recorded in the same critical
	 * section, so a taker whose F1 fails on our exchange finds its record. Room for
	 * every vCPU first: the records must not fail (ENOMEM is retried, 1 ms sleeps;
	 * flock is taken only by forces and by late completers of forced requests).
	 */
	pthread_mutex_lock(&c->flock);
	RTIOREQ__RETRY_NOMEM(forced_reserve(c, vm->vcpu_num));
	for (uint16_t v = 0; v < vm->vcpu_num; v++) {
		/* F2 on claims: seq_cst, pairs with W2 and F1 (CP) */
		uint64_t tag = atomic_exchange_explicit(&c->claim[v], 0, memory_order_seq_cst);

		if (tag) { /* its taker still holds it: its late complete lets go */
			c->forced[c->nforced++] = (struct rtioreq__forced){ .tag = tag, .vcpu = v };
			bits |= 1u << v;
		}
	}
	pthread_mutex_unlock(&c->flock);
	while (bits) {
		struct rtioreq__slot *sl = &vm->slot[__builtin_ctz(bits)];

		bits &= bits - 1;
		rtioreq__complete_ones(vm, sl, &sl->st.forced, false);
		n++;
	}
	return n;
}

static bool client_idle(struct rtioreq_client *c)
{
	/* acquire: pairs with A1 / F1, a finished request's completion is visible */
	if (atomic_load_explicit(&c->pending, memory_order_acquire) & RTIOREQ__VCPU_MASK)
		return false;
	for (uint16_t v = 0; v < c->vm->vcpu_num; v++)
		if (atomic_load_explicit(&c->claim[v], memory_order_acquire)) /* W2/F1 */
			return false;
	return true;
}

void rtioreq__client_teardown(struct rtioreq_client *c)
{
	/* DEAD: waiters take what is still pending (within the bound), then leave with
	 * -ESHUTDOWN, as does every later wait; release: pairs with W1 */
	atomic_fetch_or_explicit(&c->pending, RTIOREQ__DYING | RTIOREQ__DEAD,
				 memory_order_release);
	rtioreq__futex_wake(&c->pending, INT_MAX, false);
	if (c->has_thread) {
		pthread_join(c->thread, NULL); /* drains its pending requests first */
		c->has_thread = false;
	} else {
		for (unsigned int t = 0; t < RTIOREQ_CLEAR_TIMEOUT_MS && !client_idle(c); t++)
			rtioreq__sleep_ms(1);
	}
	rtioreq__client_force(c);
	/* CP: seq_cst, after F2: no completer still writes the VM's slots after this */
	while (atomic_load_explicit(&c->completing, memory_order_seq_cst))
		rtioreq__sleep_ms(1);
}

void *rtioreq__client_main(void *arg)
{
	struct rtioreq_client *c = arg;
	struct rtioreq_req req;

	rtioreq__tls_client = c;
	while (client_take(c, &req) == 0) {
		int rc;

		if (req.dir != RTIOREQ_DIR_WRITE)
			req.value = 0;
		rc = c->handler(c, &req, c->priv);
		client_finish(c, &req, rc);
	}
	return NULL;
}

/*
 * A thread that waited on a client keeps one reference to it until it waits on another
 * client or exits (a thread-specific key's destructor lets go). The embedder's natural
 * loop, wait -> handle -> complete -> wait, may run into rtioreq_client_destroy() at any
 * point; with this reference its next wait finds the client alive and returns
 * -ESHUTDOWN instead of touching freed memory (torture: destroy-held,late).
 */
static pthread_key_t waiter_key;
static bool waiter_key_ok; /* written once under waiter_once, read after it */
static pthread_once_t waiter_once = PTHREAD_ONCE_INIT;
static __thread struct rtioreq_client *tls_waited;

static void waiter_ref_drop(void *c)
{
	tls_waited = NULL;
	rtioreq__client_put(c);
}

/*
 * Without a key (pthread_key_create failed: EAGAIN, the process's keys are all taken),
 * waiter_key is not ours and must never be used: each thread's reference is then let
 * go only when it waits on another client, not at thread exit. The degradation is a
 * leak of at most one client (and its VM) per exited waiter thread, never a use of a
 * freed client and never a write to another library's key.
 */
static void waiter_key_init(void)
{
	int fail = 0;

	RTIOREQ__HOOK("waiter.key_create", &fail); /* tests: as if it failed (EAGAIN) */
	waiter_key_ok = !fail && pthread_key_create(&waiter_key, waiter_ref_drop) == 0;
}

/* Called with a reference of the caller's own on @c. */
static void waiter_ref_hold(struct rtioreq_client *c)
{
	struct rtioreq_client *old = tls_waited;

	if (old == c)
		return;
	rtioreq__client_get(c); /* the thread's, until it waits elsewhere or exits */
	pthread_once(&waiter_once, waiter_key_init);
	tls_waited = c;
	if (waiter_key_ok) /* else kept until the thread waits elsewhere (see above) */
		pthread_setspecific(waiter_key, c);
	if (old)
		rtioreq__client_put(old);
}

int rtioreq_client_wait(struct rtioreq_client *c, struct rtioreq_req *req)
{
	int r;

	if (c->handler)
		return -EINVAL;
	if (rtioreq__rcu_is_reader())
		return -EDEADLK; /* it blocks: never on a poller or the dispatcher */
	rtioreq__client_get(c); /* this call's */
	waiter_ref_hold(c);
	/* relaxed: a wake-up hint only */
	atomic_fetch_add_explicit(&c->users, 1, memory_order_relaxed);
	r = client_take(c, req);
	atomic_fetch_sub_explicit(&c->users, 1, memory_order_relaxed);
	rtioreq__client_put(c);
	return r;
}

int rtioreq_client_complete(struct rtioreq_client *c, const struct rtioreq_req *req, int status)
{
	int r;

	rtioreq__client_get(c); /* this call's: the request's own may be let go inside */
	r = client_finish(c, req, status);
	rtioreq__client_put(c);
	return r;
}
