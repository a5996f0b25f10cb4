// SPDX-License-Identifier: MIT
/*
 * Engine, VMs, clients, ranges and the fallback path (upcall -> dispatcher -> client
 * thread -> completion notification). The ordering pairs (H1, T1, ...) are defined
 * in engine_pvt.h.
 *
 * Locks (control plane only; no taker ever takes one): eng->lock, then vm->lock, then
 * poller->lock.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/engine_pvt.h"
#include "sys/fence_pvt.h"
#include "sys/futex_pvt.h"
#include "sys/thread_pvt.h"

/* ---------------------------------------------------------------------------------- */
/* Notifications and assignment */

void rtioreq__vm_notify(struct rtioreq_vm *vm, uint16_t vcpu)
{
	_Atomic uint32_t *w;

	if (vm->ops && vm->ops->notify_finish) {
		vm->ops->notify_finish(vm->hv, vcpu);
		return;
	}
	w = rtioreq_wire_atomic(&vm->chan->done_seq[vcpu].word);
	rtioreq__chan_ring(w); /* N1: after C2; pairs with the hv's acquire load */
}

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

static void *dispatcher_main(void *arg)
{
	struct rtioreq_engine *eng = arg;
	struct futex_waitv wv[RTIOREQ_MAX_VMS + 1];

	rtioreq__rcu_register();
	for (;;) {
		/* V2: pairs with V1 in publish_vmset() */
		struct rtioreq__vmset *vs = atomic_load_explicit(&eng->vmset, memory_order_acquire);
		unsigned int n = 1;

		/* D1: doorbells read before the scan, so a ring after the scan read them
		 * makes the wait below return at once; pairs with U1 and K1 */
		rtioreq__futex_waitv_set(&wv[0], &eng->kick,
					 atomic_load_explicit(&eng->kick, memory_order_acquire),
					 false);
		/* relaxed, after D1: destroy stores stop before its kick (K1), so either D1
		 * saw that kick and this sees stop, or the wait below returns at once. (Read
		 * before D1, a stop+kick in between was lost and the join hung: seen once in
		 * 40 TSan runs.) The join orders everything else. */
		if (atomic_load_explicit(&eng->stop, memory_order_relaxed))
			break;
		for (uint32_t i = 0; vs && i < vs->n; i++, n++) {
			_Atomic uint32_t *w = rtioreq_wire_atomic(&vs->vm[i]->chan->upcall_seq.word);

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

/* Publish the dispatcher's VM set from eng->vms[] (under eng->lock). */
static int publish_vmset(struct rtioreq_engine *eng)
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

/* ---------------------------------------------------------------------------------- */
/* Engine */

struct rtioreq_engine *rtioreq_engine_create(const struct rtioreq_engine_attr *attr)
{
	struct rtioreq_engine *eng;
	int r;

	if (attr && (rtioreq__thread_attr_check(&attr->dispatcher) ||
		     rtioreq__thread_attr_check(&attr->clients) ||
		     rtioreq__thread_attr_check(&attr->rcu))) {
		errno = EINVAL;
		return NULL;
	}
	eng = calloc(1, sizeof(*eng));
	if (!eng)
		return NULL;
	if (attr) {
		eng->attr = *attr;
	} else {
		eng->attr.dispatcher.cpu = -1;
		eng->attr.clients.cpu = -1;
		eng->attr.rcu.cpu = -1;
	}
	r = rtioreq__rcu_worker_get(eng->attr.rcu.cpu);
	if (r) {
		free(eng);
		errno = -r;
		return NULL;
	}
	pthread_mutex_init(&eng->lock, NULL);
	r = rtioreq__thread_start(&eng->dispatcher, &eng->attr.dispatcher, "rtioreq-disp",
				  dispatcher_main, eng);
	if (r) {
		rtioreq__rcu_worker_put(eng->attr.rcu.cpu);
		pthread_mutex_destroy(&eng->lock);
		free(eng);
		errno = -r;
		return NULL;
	}
	return eng;
}

void rtioreq_engine_destroy(struct rtioreq_engine *eng)
{
	if (!eng)
		return;
	while (eng->pollers)
		rtioreq_poller_destroy(eng->pollers);
	while (eng->nvms)
		rtioreq_vm_detach(eng->vms[eng->nvms - 1]);
	atomic_store_explicit(&eng->stop, true, memory_order_relaxed); /* joined below */
	rtioreq__kick(eng);
	pthread_join(eng->dispatcher, NULL);
	rtioreq__rcu_barrier();
	rtioreq__rcu_worker_put(eng->attr.rcu.cpu);
	free(atomic_load_explicit(&eng->vmset, memory_order_relaxed)); /* no reader left */
	pthread_mutex_destroy(&eng->lock);
	free(eng);
}

/* ---------------------------------------------------------------------------------- */
/* VMs */

static bool chan_valid(const struct rtioreq_chan *c, uint16_t vcpu_num)
{
	const volatile struct rtioreq_chan *v = c; /* shared: read once each */
	uint32_t magic = v->magic, version = v->version, n = v->vcpu_num;

	return magic == RTIOREQ_CHAN_MAGIC && version == RTIOREQ_CHAN_VERSION && n >= vcpu_num;
}

/* Clear the VM's polled_mask and need_wakeup bits: every slot needs the upcall. */
static void vm_chan_unpoll(struct rtioreq_vm *vm)
{
	uint32_t mine = (uint32_t)((1u << vm->vcpu_num) - 1);

	/* seq_cst: the Dekker pair with the hv's fence, as in slot_give() */
	atomic_fetch_and_explicit(rtioreq_wire_atomic(&vm->chan->polled_mask.word), ~mine,
				  memory_order_seq_cst);
	/* relaxed: a stale bit only costs the hv one extra upcall */
	atomic_fetch_and_explicit(rtioreq_wire_atomic(&vm->chan->need_wakeup.word), ~mine,
				  memory_order_relaxed);
}

struct rtioreq_vm *rtioreq_vm_attach(struct rtioreq_engine *eng,
				     const struct rtioreq_vm_attr *attr)
{
	struct rtioreq_vm *vm;
	struct rtioreq__map *m;
	int err = 0;

	if (!eng || !attr || !attr->page || !attr->vcpu_num ||
	    attr->vcpu_num > RTIOREQ_IO_REQUEST_MAX ||
	    (attr->chan && !chan_valid(attr->chan, attr->vcpu_num))) {
		errno = EINVAL;
		return NULL;
	}
	vm = aligned_alloc(RTIOREQ__CACHELINE, sizeof(*vm));
	m = rtioreq__map_empty();
	if (!vm || !m) {
		free(vm);
		free(m);
		errno = ENOMEM;
		return NULL;
	}
	memset(vm, 0, sizeof(*vm));
	vm->eng = eng;
	vm->page = attr->page;
	vm->ops = attr->ops;
	vm->hv = attr->hv;
	vm->id = attr->id;
	vm->vcpu_num = attr->vcpu_num;
	vm->chan = attr->chan;
	if (!vm->chan) {
		vm->chan = calloc(1, sizeof(*vm->chan));
		if (!vm->chan) {
			free(vm);
			free(m);
			errno = ENOMEM;
			return NULL;
		}
		vm->chan->magic = RTIOREQ_CHAN_MAGIC;
		vm->chan->version = RTIOREQ_CHAN_VERSION;
		vm->chan->vcpu_num = attr->vcpu_num;
		vm->chan_private = true;
	}
	for (uint16_t v = 0; v < RTIOREQ_IO_REQUEST_MAX; v++)
		vm->slot[v].vcpu = v;
	/* no poller owns a slot yet: a channel left over from an earlier engine must not
	 * tell the hypervisor to skip the upcall */
	vm_chan_unpoll(vm);
	atomic_init(&vm->map, m);
	/* all slots start on the fallback path (published to the dispatcher by V1), or on
	 * none while paused */
	vm->paused = attr->paused;
	atomic_init(&vm->fallback_mask,
		    attr->paused ? 0u : (uint32_t)((1u << attr->vcpu_num) - 1));
	pthread_mutex_init(&vm->lock, NULL);

	pthread_mutex_lock(&eng->lock);
	for (uint32_t i = 0; i < eng->nvms; i++)
		if (eng->vms[i]->id == attr->id)
			err = EEXIST;
	if (!err && eng->nvms == RTIOREQ_MAX_VMS)
		err = ENOSPC;
	if (!err) {
		eng->vms[eng->nvms++] = vm;
		if (publish_vmset(eng)) {
			eng->nvms--;
			err = ENOMEM;
		}
	}
	pthread_mutex_unlock(&eng->lock);
	if (err) {
		pthread_mutex_destroy(&vm->lock);
		if (vm->chan_private)
			free(vm->chan);
		free(vm);
		free(m);
		errno = err;
		return NULL;
	}
	return vm;
}

void rtioreq_vm_upcall(struct rtioreq_vm *vm)
{
	_Atomic uint32_t *w = rtioreq_wire_atomic(&vm->chan->upcall_seq.word);

	rtioreq__chan_ring(w); /* U1: pairs with D1 in dispatcher_main() */
}

struct rtioreq_chan *rtioreq_vm_chan(struct rtioreq_vm *vm)
{
	return vm->chan;
}

int rtioreq_vm_raise_irq(struct rtioreq_vm *vm, uint32_t irq, uint32_t level)
{
	if (!vm->ops || !vm->ops->raise_irq)
		return -ENOSYS;
	return vm->ops->raise_irq(vm->hv, irq, level);
}

void rtioreq_vm_stats(struct rtioreq_vm *vm, struct rtioreq_vm_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (uint16_t v = 0; v < vm->vcpu_num; v++) {
		const struct rtioreq__slot_stats *s = &vm->slot[v].st;

		/* relaxed: statistics; each counter has one writer at a time */
		out->dispatched += atomic_load_explicit(&s->dispatched, memory_order_relaxed);
		out->completed += atomic_load_explicit(&s->completed, memory_order_relaxed);
		out->polled += atomic_load_explicit(&s->polled, memory_order_relaxed);
		out->fallback += atomic_load_explicit(&s->fallback, memory_order_relaxed);
		out->handler_errors +=
			atomic_load_explicit(&s->handler_errors, memory_order_relaxed);
		out->invalid += atomic_load_explicit(&s->invalid, memory_order_relaxed);
		out->unclaimed += atomic_load_explicit(&s->unclaimed, memory_order_relaxed);
		out->cleared += atomic_load_explicit(&s->cleared, memory_order_relaxed);
		out->forced += atomic_load_explicit(&s->forced, memory_order_relaxed);
		out->notified += atomic_load_explicit(&s->notified, memory_order_relaxed);
	}
}

/* Swap in a new map built by the caller (under vm->lock) and retire the old one. */
static void vm_publish_map(struct rtioreq_vm *vm, struct rtioreq__map *m)
{
	struct rtioreq__map *old = atomic_load_explicit(&vm->map, memory_order_relaxed);

	atomic_store_explicit(&vm->map, m, memory_order_release); /* M1, pairs with M2 */
	rtioreq__map_retire(old);
}

/*
 * Hand slot @v, which no taker owns now, to @p (NULL: the dispatcher). @was_polled: a
 * poller had it before (the hypervisor side is told it no longer is, if it ends on the
 * dispatcher). Under eng->lock and vm->lock. Return 0, or the poller's error, in which
 * case the slot went to the dispatcher.
 */
static int slot_give(struct rtioreq_vm *vm, uint16_t v, struct rtioreq_poller *p,
		     bool was_polled)
{
	_Atomic uint32_t *polled = rtioreq_wire_atomic(&vm->chan->polled_mask.word);
	uint32_t bit = 1u << v;
	int r = 0;

	if (p) {
		/* seq_cst: Dekker pair with the hv's fence between H1 and its polled_mask load */
		atomic_fetch_or_explicit(polled, bit, memory_order_seq_cst);
		r = rtioreq__poller_add(p, vm, v);
		if (!r && vm->ops && vm->ops->slot_polled)
			vm->ops->slot_polled(vm->hv, v, true);
	}
	if (!p || r) { /* to the dispatcher; also when the poller could not take it */
		atomic_fetch_and_explicit(polled, ~bit, memory_order_seq_cst); /* as above */
		if (was_polled && vm->ops && vm->ops->slot_polled)
			vm->ops->slot_polled(vm->hv, v, false);
		atomic_fetch_or_explicit(&vm->fallback_mask, bit, memory_order_release); /* O1 */
		rtioreq__kick(vm->eng); /* a request left PENDING without an upcall */
		p = NULL;
	}
	vm->poller_of[v] = p;
	return r;
}

/*
 * Move slot @v to @p (NULL: the dispatcher). Under eng->lock and vm->lock. The old
 * taker stops before the grace period ends; the new one starts after it.
 */
static int vm_place(struct rtioreq_vm *vm, uint16_t v, struct rtioreq_poller *p)
{
	struct rtioreq_poller *old = vm->poller_of[v];
	uint32_t bit = 1u << v;

	if (old == p)
		return 0;
	if (vm->paused) { /* nobody takes the slot yet: record the plan */
		vm->poller_of[v] = p;
		return 0;
	}
	if (!old)
		atomic_fetch_and_explicit(&vm->fallback_mask, ~bit, memory_order_release); /* O1 */
	else
		rtioreq__poller_remove(old, vm, v);
	rtioreq__rcu_synchronize();
	if (old) /* the old poller no longer sleeps on this slot's behalf */
		atomic_fetch_and_explicit(rtioreq_wire_atomic(&vm->chan->need_wakeup.word), ~bit,
					  memory_order_relaxed); /* relaxed: only costs an upcall */
	return slot_give(vm, v, p, old != NULL);
}

int rtioreq_vm_start(struct rtioreq_vm *vm)
{
	int r = 0;

	pthread_mutex_lock(&vm->eng->lock);
	pthread_mutex_lock(&vm->lock);
	if (vm->detaching) {
		r = -ENODEV;
	} else if (vm->paused) {
		/* no taker had any slot: each goes straight to its planned owner, no GP
		 * needed; a poller that cannot take it leaves it on the dispatcher, which is
		 * kicked for requests PENDING since attach */
		vm->paused = false;
		for (uint16_t v = 0; v < vm->vcpu_num; v++)
			slot_give(vm, v, vm->poller_of[v], false);
	}
	pthread_mutex_unlock(&vm->lock);
	pthread_mutex_unlock(&vm->eng->lock);
	return r;
}

int rtioreq_vm_set_poller(struct rtioreq_vm *vm, uint16_t vcpu, struct rtioreq_poller *p)
{
	int r = 0;

	if (vcpu >= vm->vcpu_num || (p && p->eng != vm->eng))
		return -EINVAL;
	pthread_mutex_lock(&vm->eng->lock);
	pthread_mutex_lock(&vm->lock);
	if (vm->detaching)
		r = -ENODEV;
	else
		r = vm_place(vm, vcpu, p);
	pthread_mutex_unlock(&vm->lock);
	pthread_mutex_unlock(&vm->eng->lock);
	return r;
}

/* Under eng->lock, so every VM in eng->vms is alive. */
void rtioreq__poller_release_slots(struct rtioreq_poller *p)
{
	for (uint32_t i = 0; i < p->eng->nvms; i++) {
		struct rtioreq_vm *vm = p->eng->vms[i];

		pthread_mutex_lock(&vm->lock);
		for (uint16_t v = 0; v < vm->vcpu_num; v++)
			if (vm->poller_of[v] == p)
				vm_place(vm, v, NULL);
		pthread_mutex_unlock(&vm->lock);
	}
}

static bool all_idle(struct rtioreq_vm *vm)
{
	for (uint16_t v = 0; v < vm->vcpu_num; v++)
		/* acquire: pairs with C1, so a completed request's effects are visible */
		if (atomic_load_explicit(&vm->slot[v].busy, memory_order_acquire))
			return false;
	return true;
}

static unsigned int client_force(struct rtioreq_client *c);

/* Wait for taken requests to finish, up to @timeout_ms; then force clients'. */
static int vm_drain(struct rtioreq_vm *vm, unsigned int timeout_ms)
{
	struct timespec tick = { 0, 1000000 };
	int forced = 0;

	for (unsigned int t = 0; !all_idle(vm) && t < timeout_ms; t++)
		nanosleep(&tick, NULL);
	if (all_idle(vm))
		return 0;
	pthread_mutex_lock(&vm->lock);
	for (struct rtioreq_client *c = vm->clients; c; c = c->next)
		forced += (int)client_force(c);
	pthread_mutex_unlock(&vm->lock);
	return forced;
}

int rtioreq_vm_clear(struct rtioreq_vm *vm, unsigned int timeout_ms)
{
	int forced;

	/* L1: requests taken after this see clearing and complete at once */
	atomic_fetch_add_explicit(&vm->clearing, 1, memory_order_release);
	rtioreq__kick(vm->eng);
	forced = vm_drain(vm, timeout_ms);
	atomic_fetch_sub_explicit(&vm->clearing, 1, memory_order_release); /* L1 */
	return forced;
}

static int client_destroy_claimed(struct rtioreq_client *c);

int rtioreq_vm_detach(struct rtioreq_vm *vm)
{
	struct rtioreq_engine *eng = vm->eng;
	struct rtioreq_client *c;

	pthread_mutex_lock(&eng->lock);
	pthread_mutex_lock(&vm->lock);
	vm->detaching = true;
	atomic_fetch_add_explicit(&vm->clearing, 1, memory_order_release); /* L1 */
	for (uint16_t v = 0; v < vm->vcpu_num; v++)
		if (vm->poller_of[v]) {
			if (!vm->paused) { /* paused: only a plan, the poller never had it */
				rtioreq__poller_remove(vm->poller_of[v], vm, v);
				if (vm->ops && vm->ops->slot_polled)
					vm->ops->slot_polled(vm->hv, v, false);
			}
			vm->poller_of[v] = NULL;
		}
	atomic_store_explicit(&vm->fallback_mask, 0, memory_order_release); /* O1 */
	vm_chan_unpoll(vm); /* nobody polls any more: the hypervisor rings for every slot */
	pthread_mutex_unlock(&vm->lock);
	for (uint32_t i = 0; i < eng->nvms; i++)
		if (eng->vms[i] == vm) {
			eng->vms[i] = eng->vms[--eng->nvms];
			break;
		}
	while (publish_vmset(eng)) {
		struct timespec ms = { 0, 1000000 };

		nanosleep(&ms, NULL); /* ENOMEM: the VM must leave the set before it is freed */
	}
	rtioreq__rcu_synchronize(); /* no taker references vm after this */

	/* every client: drain (handler threads) or force (blocking) */
	for (;;) {
		pthread_mutex_lock(&vm->lock);
		c = vm->clients;
		while (c && c->destroying)
			c = c->next; /* being destroyed by its owner */
		if (c)
			c->destroying = true; /* claim it */
		pthread_mutex_unlock(&vm->lock);
		if (!c)
			break;
		client_destroy_claimed(c);
	}
	for (;;) { /* wait for destroys by other threads */
		struct timespec ms = { 0, 1000000 };

		pthread_mutex_lock(&vm->lock);
		c = vm->clients;
		pthread_mutex_unlock(&vm->lock);
		if (!c)
			break;
		nanosleep(&ms, NULL);
	}
	/* last sweep: anything still PENDING is completed, nothing is left hanging */
	for (uint16_t v = 0; v < vm->vcpu_num; v++) {
		struct rtioreq_io_request *wire = &vm->page->req_slot[v];
		struct rtioreq__slot *sl = &vm->slot[v];

		RTIOREQ__ASSERT(!atomic_load_explicit(&sl->busy, memory_order_relaxed));
		if (atomic_load_explicit(rtioreq_wire_atomic(&wire->processed),
					 memory_order_acquire) == RTIOREQ_STATE_PENDING) /* T1 */
			rtioreq__serve(vm, sl, wire, false); /* clearing: completes at once */
	}
	pthread_mutex_unlock(&eng->lock);

	rtioreq__map_free(atomic_load_explicit(&vm->map, memory_order_relaxed)); /* after GP */
	if (vm->chan_private)
		free(vm->chan);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
	return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Clients */

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
static unsigned int client_force(struct rtioreq_client *c)
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

static void *client_main(void *arg)
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

struct rtioreq_client *rtioreq_client_create(struct rtioreq_vm *vm,
					     const struct rtioreq_client_attr *attr)
{
	struct rtioreq_client *c;
	struct rtioreq__map *m = NULL;
	int r = 0;

	if (!vm || !attr) {
		errno = EINVAL;
		return NULL;
	}
	c = aligned_alloc(RTIOREQ__CACHELINE, sizeof(*c));
	if (!c)
		return NULL;
	memset(c, 0, sizeof(*c));
	c->vm = vm;
	c->handler = attr->handler;
	c->priv = attr->priv;
	c->is_default = attr->is_default;
	snprintf(c->name, sizeof(c->name), "%s", attr->name ? attr->name : "client");

	pthread_mutex_lock(&vm->lock);
	if (vm->detaching)
		r = -ENODEV;
	else if (c->is_default)
		r = rtioreq__map_set_default(atomic_load_explicit(&vm->map, memory_order_relaxed),
					     c, &m);
	if (!r && c->handler) {
		char tname[16];

		snprintf(tname, sizeof(tname), "vm%u-%.8s", (unsigned int)(vm->id % 1000), c->name);
		r = rtioreq__thread_start(&c->thread,
					  attr->thread ? attr->thread : &vm->eng->attr.clients,
					  tname, client_main, c);
		c->has_thread = !r;
	}
	if (r) {
		pthread_mutex_unlock(&vm->lock);
		rtioreq__map_free(m);
		free(c);
		errno = -r;
		return NULL;
	}
	if (m)
		vm_publish_map(vm, m);
	c->next = vm->clients;
	vm->clients = c;
	pthread_mutex_unlock(&vm->lock);
	return c;
}

/* Withdraw @c from routing (under vm->lock held by caller, released on return). */
static void client_withdraw_unlock(struct rtioreq_client *c)
{
	struct rtioreq_vm *vm = c->vm;
	struct rtioreq__map *m;

	while (rtioreq__map_drop_client(atomic_load_explicit(&vm->map, memory_order_relaxed), c,
					&m)) {
		struct timespec ms = { 0, 1000000 };

		nanosleep(&ms, NULL); /* ENOMEM: the client must leave the map */
	}
	vm_publish_map(vm, m);
	pthread_mutex_unlock(&vm->lock);
	rtioreq__rcu_synchronize(); /* no taker can assign to c after this */
	/* DYING: waiters drain what is pending, then leave */
	atomic_fetch_or_explicit(&c->pending, RTIOREQ__DYING, memory_order_release);
	rtioreq__futex_wake(&c->pending, INT_MAX, false);
}

int rtioreq_client_shutdown(struct rtioreq_client *c)
{
	struct rtioreq_vm *vm = c->vm;

	pthread_mutex_lock(&vm->lock);
	if (c->shut) {
		pthread_mutex_unlock(&vm->lock);
		return 0;
	}
	c->shut = true;
	client_withdraw_unlock(c);
	return 0;
}

/* Destroy @c, claimed (destroying) by the caller; vm->lock not held. */
static int client_destroy_claimed(struct rtioreq_client *c)
{
	struct rtioreq_vm *vm = c->vm;
	struct timespec ms = { 0, 1000000 };

	pthread_mutex_lock(&vm->lock);
	c->shut = true; /* withdrawing again after a shutdown is harmless */
	client_withdraw_unlock(c);
	if (c->has_thread) {
		pthread_join(c->thread, NULL); /* drains its pending requests first */
	} else {
		for (unsigned int t = 0; t < RTIOREQ_CLEAR_TIMEOUT_MS; t++) {
			/* acquire: pairs with F1, a finished request's completion is visible */
			if (!(atomic_load_explicit(&c->pending, memory_order_acquire) &
			      RTIOREQ__VCPU_MASK) &&
			    !atomic_load_explicit(&c->inflight, memory_order_acquire))
				break;
			nanosleep(&ms, NULL);
		}
		client_force(c);
		while (atomic_load_explicit(&c->users, memory_order_acquire))
			nanosleep(&ms, NULL); /* waiters were woken by DYING and are leaving */
	}
	pthread_mutex_lock(&vm->lock);
	for (struct rtioreq_client **pp = &vm->clients; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	pthread_mutex_unlock(&vm->lock);
	free(c);
	return 0;
}

int rtioreq_client_destroy(struct rtioreq_client *c)
{
	struct rtioreq_vm *vm = c->vm;
	bool busy;

	pthread_mutex_lock(&vm->lock);
	busy = c->destroying;
	c->destroying = true;
	pthread_mutex_unlock(&vm->lock);
	if (busy)
		return -EBUSY; /* VM detach got there first and frees it */
	return client_destroy_claimed(c);
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

const char *rtioreq_client_name(const struct rtioreq_client *c)
{
	return c->name;
}

/* ---------------------------------------------------------------------------------- */
/* Ranges */

int rtioreq_range_add(struct rtioreq_client *c, uint32_t type, uint64_t start, uint64_t end)
{
	struct rtioreq_vm *vm = c->vm;
	struct rtioreq__map *m;
	int r;

	if (c->is_default)
		return -EINVAL;
	pthread_mutex_lock(&vm->lock);
	if (c->shut)
		r = -ENODEV;
	else
		r = rtioreq__map_add(atomic_load_explicit(&vm->map, memory_order_relaxed), type,
				     start, end, c, &m, NULL);
	if (!r)
		vm_publish_map(vm, m);
	pthread_mutex_unlock(&vm->lock);
	return r;
}

int rtioreq_range_del(struct rtioreq_client *c, uint32_t type, uint64_t start, uint64_t end)
{
	struct rtioreq_vm *vm = c->vm;
	struct rtioreq__map *m;
	int r;

	pthread_mutex_lock(&vm->lock);
	r = rtioreq__map_del(atomic_load_explicit(&vm->map, memory_order_relaxed), type, start,
			     end, c, &m);
	if (!r)
		vm_publish_map(vm, m);
	pthread_mutex_unlock(&vm->lock);
	return r;
}

int rtioreq_range_conflict(struct rtioreq_vm *vm, uint32_t type, uint64_t start, uint64_t end,
			   uint64_t *other_start, uint64_t *other_end, char *owner)
{
	struct rtioreq__range r;
	int found;

	pthread_mutex_lock(&vm->lock);
	found = rtioreq__map_conflict(atomic_load_explicit(&vm->map, memory_order_relaxed), type,
				      start, end, &r);
	if (found) {
		if (other_start)
			*other_start = r.start;
		if (other_end)
			*other_end = r.end;
		if (owner)
			snprintf(owner, RTIOREQ_NAME_LEN, "%s", r.client->name);
	}
	pthread_mutex_unlock(&vm->lock);
	return found;
}
