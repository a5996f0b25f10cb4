// SPDX-License-Identifier: MIT
/*
 * Engine objects and their lifecycle: the engine, VMs (attach, start, clear, detach),
 * pollers (create, destroy) and the placement of each slot on its taker (a poller or
 * the dispatcher), across a grace period. The takers themselves are poll.c (polling
 * path) and dispatch.c (fallback path); clients and ranges are client.c. The ordering
 * pairs (H1, T1, ...) are defined in engine_pvt.h.
 *
 * Locks (control plane only; no taker ever takes one, handlers may take vm->lock):
 * vm->place_lock, then vm->lock, then poller->lock (and eng->zlock inside vm->lock;
 * client->flock, FH, is a leaf).
 * eng->lock is a leaf held only to update the engine's lists: no grace period, join,
 * timeout or other VM's lock under it (the one sleep: a 1 ms retry while publishing
 * the VM set fails with ENOMEM), so calls on different VMs never wait for each
 * other. Only vm->place_lock is held across a grace period (a slot move of that VM).
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine_pvt.h"
#include "sys/clock_pvt.h"
#include "sys/futex_pvt.h"
#include "sys/hook_pvt.h"
#include "sys/thread_pvt.h"

/* ---------------------------------------------------------------------------------- */
/* Engine */

uint64_t rtioreq__serial_next(void)
{
	static _Atomic uint64_t serial;

	/* relaxed: only uniqueness matters; the object is published by its list's lock */
	return atomic_fetch_add_explicit(&serial, 1, memory_order_relaxed) + 1;
}

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
	/* no futex_waitv (Linux < 5.16, or denied): the sleepers could only spin */
	if (!rtioreq__futex_waitv_supported()) {
		errno = ENOSYS;
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
	rtioreq__mutex_init_pi(&eng->lock); /* handlers may attach VMs, create pollers */
	/* PI: nests inside vm->lock, which handlers on real-time takers take */
	rtioreq__mutex_init_pi(&eng->zlock);
	r = rtioreq__dispatch_start(eng);
	if (r) {
		rtioreq__rcu_worker_put();
		pthread_mutex_destroy(&eng->zlock);
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
	/* clients torn down by detach that their owner never destroyed: no call may
	 * follow now, so the owner's handle goes (a request still held keeps its client) */
	while (eng->zombies) {
		struct rtioreq_client *c = eng->zombies;

		eng->zombies = c->znext;
		rtioreq__client_put(c);
	}
	rtioreq__dispatch_stop(eng);
	rtioreq__rcu_barrier();
	rtioreq__rcu_worker_put();
	free(atomic_load_explicit(&eng->vmset, memory_order_relaxed)); /* no reader left */
	pthread_mutex_destroy(&eng->zlock);
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

/* Clear the polled_mask and need_wakeup bits of slots 0..@n-1: they need the upcall. */
static void vm_chan_unpoll(struct rtioreq_vm *vm, uint32_t n)
{
	uint32_t mine = (uint32_t)((1u << n) - 1);

	/* seq_cst: the Dekker pair with the hv's fence, as in slot_give() */
	atomic_fetch_and_explicit(rtioreq_wire_atomic(&vm->chan->polled_mask.word), ~mine,
				  memory_order_seq_cst);
	/* relaxed: a stale bit only costs the hv one extra upcall */
	atomic_fetch_and_explicit(rtioreq_wire_atomic(&vm->chan->need_wakeup.word), ~mine,
				  memory_order_relaxed);
}

/*
 * RTIOREQ_VM_HIST: @n empty slot histograms, cache-line aligned (one writer each).
 * Every word is written here, on the control thread, so the first request that lands
 * in a rarely used bucket takes no page fault on a poller (nor, under ThreadSanitizer,
 * a fault on the bucket's shadow memory, which memset() does not touch).
 */
static struct rtioreq__slot_hist *hist_alloc(uint16_t n)
{
	struct rtioreq__slot_hist *h = aligned_alloc(RTIOREQ__CACHELINE, n * sizeof(*h));

	for (uint16_t v = 0; h && v < n; v++) { /* not yet published: plain init */
		atomic_init(&h[v].sum, 0);
		atomic_init(&h[v].min, UINT64_MAX);
		atomic_init(&h[v].max, 0);
		atomic_init(&h[v].overflow, 0);
		for (unsigned int i = 0; i < RTIOREQ_HIST_BUCKETS; i++)
			atomic_init(&h[v].bucket[i], 0);
	}
	return h;
}

struct rtioreq_vm *rtioreq_vm_attach(struct rtioreq_engine *eng,
				     const struct rtioreq_vm_attr *attr)
{
	struct rtioreq__slot_hist *hist = NULL;
	struct rtioreq_vm *vm;
	struct rtioreq__map *m;
	int err = 0;

	if (!eng || !attr || !attr->page || !attr->vcpu_num ||
	    attr->vcpu_num > RTIOREQ_IO_REQUEST_MAX || (attr->flags & ~RTIOREQ_VM_HIST) ||
	    (attr->chan && !chan_valid(attr->chan, attr->vcpu_num))) {
		errno = EINVAL;
		return NULL;
	}
	if (attr->flags & RTIOREQ_VM_HIST)
		hist = hist_alloc(attr->vcpu_num);
	vm = aligned_alloc(RTIOREQ__CACHELINE, sizeof(*vm));
	m = rtioreq__map_empty();
	if (!vm || !m || ((attr->flags & RTIOREQ_VM_HIST) && !hist)) {
		free(vm);
		free(m);
		free(hist);
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
	vm->serial = rtioreq__serial_next();
	vm->chan = attr->chan;
	if (!vm->chan) {
		vm->chan = calloc(1, sizeof(*vm->chan));
		if (!vm->chan) {
			free(vm);
			free(m);
			free(hist);
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
	atomic_init(&vm->map, m);
	/* all slots start on the fallback path (published to the dispatcher by V1), or on
	 * none while paused */
	vm->paused = attr->paused;
	atomic_init(&vm->fallback_mask,
		    attr->paused ? 0u : (uint32_t)((1u << attr->vcpu_num) - 1));
	atomic_init(&vm->refs, 1); /* the engine's, until detach */
	pthread_mutex_init(&vm->place_lock, NULL);
	/* handlers on real-time pollers take it (range updates): priority inheritance */
	rtioreq__mutex_init_pi(&vm->lock);

	/*
	 * Validate first, then touch the region: a refused attach (EEXIST, ENOSPC) must
	 * leave a live engine's channel and slots alone. The id is reserved (eng->adding)
	 * while the region is swept outside eng->lock, so a concurrent attach of the same
	 * id is refused too, and no VM set published meanwhile holds this VM.
	 */
	pthread_mutex_lock(&eng->lock);
	for (uint32_t i = 0; i < eng->nvms; i++)
		if (eng->vms[i]->id == attr->id)
			err = EEXIST;
	for (uint32_t i = 0; i < eng->nadding; i++)
		if (eng->adding[i] == attr->id)
			err = EEXIST;
	if (!err && eng->nvms + eng->nadding >= RTIOREQ_MAX_VMS)
		err = ENOSPC;
	if (!err)
		eng->adding[eng->nadding++] = attr->id;
	pthread_mutex_unlock(&eng->lock);
	if (!err) {
		/* read once (shared, untrusted): chan_valid() checked it against vcpu_num,
		 * the bound keeps the sweep inside the page */
		uint32_t n = vm->chan_private ? vm->vcpu_num
					      : ((const volatile struct rtioreq_chan *)vm->chan)
							->vcpu_num;

		if (n > RTIOREQ_IO_REQUEST_MAX)
			n = RTIOREQ_IO_REQUEST_MAX;
		/* this second read is not trusted either: a hypervisor that lowered the count
		 * since chan_valid() must not leave the VM's own slots unswept */
		if (n < vm->vcpu_num)
			n = vm->vcpu_num;
		/* no poller owns a slot yet: a channel left over from an earlier engine must
		 * not tell the hypervisor to skip the upcall, for any of its slots */
		vm_chan_unpoll(vm, n);
		if (attr->takeover && !vm->chan_private)
			rtioreq__vm_takeover(vm, n); /* no taker knows the VM yet */
		/* after the takeover sweep: what a dead engine left was never seen PENDING
		 * here, so it is not recorded (rtioreq_vm_hist()); before V1 publishes it */
		vm->hist = hist;
		for (uint16_t v = 0; hist && v < attr->vcpu_num; v++)
			vm->slot[v].hist = &hist[v];
		pthread_mutex_lock(&eng->lock);
		for (uint32_t i = 0; i < eng->nadding; i++)
			if (eng->adding[i] == attr->id) {
				eng->adding[i] = eng->adding[--eng->nadding];
				break;
			}
		eng->vms[eng->nvms++] = vm;
		if (rtioreq__dispatch_publish(eng)) {
			eng->nvms--;
			err = ENOMEM;
		}
		pthread_mutex_unlock(&eng->lock);
	}
	if (err) {
		pthread_mutex_destroy(&vm->lock);
		pthread_mutex_destroy(&vm->place_lock);
		if (vm->chan_private)
			free(vm->chan);
		free(hist);
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

	rtioreq__chan_ring(w); /* U1: pairs with D1 in dispatch.c */
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

int rtioreq_vm_hist(struct rtioreq_vm *vm, struct rtioreq_hist *out)
{
	if (!vm || !out)
		return -EINVAL;
	if (!vm->hist) /* set at attach, constant */
		return -ENODATA;
	rtioreq_hist_init(out);
	for (uint16_t v = 0; v < vm->vcpu_num; v++) {
		struct rtioreq__slot_hist *h = &vm->hist[v];
		uint64_t n = 0;

		for (unsigned int i = 0; i < RTIOREQ_HIST_BUCKETS; i++) {
			/* HR: pairs with HG; min/max below cover every value counted here */
			uint64_t b = atomic_load_explicit(&h->bucket[i], memory_order_acquire);

			out->bucket[i] += b;
			n += b;
		}
		if (!n)
			continue;
		/* relaxed, after HR: statistics (see HG for what they are ordered after) */
		rtioreq__hist_fold(out, n, atomic_load_explicit(&h->sum, memory_order_relaxed),
				   atomic_load_explicit(&h->min, memory_order_relaxed),
				   atomic_load_explicit(&h->max, memory_order_relaxed),
				   atomic_load_explicit(&h->overflow, memory_order_relaxed));
	}
	return 0;
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
		out->abandoned += atomic_load_explicit(&s->abandoned, memory_order_relaxed);
	}
	/* the takeover sweep also completes the channel's slots past vcpu_num (nothing
	 * else ever touches them): relaxed, written once before the VM was published */
	for (uint16_t v = vm->vcpu_num; v < RTIOREQ_IO_REQUEST_MAX; v++)
		out->abandoned +=
			atomic_load_explicit(&vm->slot[v].st.abandoned, memory_order_relaxed);
}

/* Record @p (NULL: the dispatcher) as slot @v's taker or plan. Under vm->place_lock. */
static void slot_owner_set(struct rtioreq_vm *vm, uint16_t v, struct rtioreq_poller *p)
{
	vm->poller_of[v] = p;
	/* relaxed: read by the events thread for its report only */
	atomic_store_explicit(&vm->taker_tid[v], p ? rtioreq_poller_tid(p) : 0,
			      memory_order_relaxed);
}

/*
 * Hand slot @v, which no taker owns now, to @p (NULL: the dispatcher). @was_polled: a
 * poller had it before (the hypervisor side is told it no longer is, if it ends on the
 * dispatcher). Under vm->place_lock. Return 0, or the poller's error, in which case the
 * slot went to the dispatcher.
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
	slot_owner_set(vm, v, p);
	return r;
}

/* First half of a move: slot @v's current taker stops taking it (O1 / S1). */
static void slot_unpublish(struct rtioreq_vm *vm, uint16_t v)
{
	struct rtioreq_poller *old = vm->poller_of[v];

	if (!old)
		atomic_fetch_and_explicit(&vm->fallback_mask, ~(1u << v),
					  memory_order_release); /* O1 */
	else
		rtioreq__poller_remove(old, vm, v);
}

/* Second half, after a grace period: the old poller no longer sleeps on the slot's
 * behalf (relaxed: a stale bit only costs an upcall). */
static void slot_unwake(struct rtioreq_vm *vm, uint16_t v)
{
	atomic_fetch_and_explicit(rtioreq_wire_atomic(&vm->chan->need_wakeup.word), ~(1u << v),
				  memory_order_relaxed);
}

/*
 * Move slot @v to @p (NULL: the dispatcher). Under vm->place_lock only (held across
 * the grace period: no other lock, so handlers and other VMs never wait for it). The
 * old taker stops before the grace period ends; the new one starts after it.
 */
static int vm_place(struct rtioreq_vm *vm, uint16_t v, struct rtioreq_poller *p)
{
	struct rtioreq_poller *old = vm->poller_of[v];

	if (old == p)
		return 0;
	if (vm->paused) { /* nobody takes the slot yet: record the plan */
		slot_owner_set(vm, v, p);
		return 0;
	}
	slot_unpublish(vm, v);
	rtioreq__rcu_synchronize();
	if (old)
		slot_unwake(vm, v);
	return slot_give(vm, v, p, old != NULL);
}

int rtioreq_vm_start(struct rtioreq_vm *vm)
{
	int r = 0;

	if (rtioreq__rcu_is_reader())
		return -EDEADLK; /* place_lock may be held across a grace period */
	pthread_mutex_lock(&vm->place_lock);
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
	pthread_mutex_unlock(&vm->place_lock);
	return r;
}

int rtioreq_vm_set_poller(struct rtioreq_vm *vm, uint16_t vcpu, struct rtioreq_poller *p)
{
	int r = 0;

	if (vcpu >= vm->vcpu_num || (p && p->eng != vm->eng))
		return -EINVAL;
	if (rtioreq__rcu_is_reader())
		return -EDEADLK; /* the grace period would wait for the caller */
	pthread_mutex_lock(&vm->place_lock);
	if (vm->detaching)
		r = -ENODEV;
	else
		r = vm_place(vm, vcpu, p);
	pthread_mutex_unlock(&vm->place_lock);
	return r;
}

/* ---------------------------------------------------------------------------------- */
/* Pollers */

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
	p->serial = rtioreq__serial_next();
	rtioreq__mutex_init_pi(&p->lock); /* PI: nests inside vm->lock (handlers) */
	pthread_mutex_lock(&eng->lock);
	r = rtioreq__poller_start(p, attr);
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

/*
 * Give every slot of @p back to the dispatcher: all of them across one grace period.
 * The VMs are held by references, not by eng->lock, so that neither the grace period
 * nor another VM's slot move runs under the engine's lock.
 */
int rtioreq_poller_destroy(struct rtioreq_poller *p)
{
	struct rtioreq_engine *eng = p->eng;
	struct rtioreq_vm *vms[RTIOREQ_MAX_VMS];
	uint32_t moved[RTIOREQ_MAX_VMS] = { 0 }, n, any = 0;

	if (rtioreq__rcu_is_reader())
		return -EDEADLK; /* a grace period (and on itself, a join) */
	pthread_mutex_lock(&eng->lock);
	for (struct rtioreq_poller **pp = &eng->pollers; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	n = eng->nvms;
	for (uint32_t i = 0; i < n; i++) {
		vms[i] = eng->vms[i];
		rtioreq__vm_get(vms[i]);
	}
	pthread_mutex_unlock(&eng->lock);
	for (uint32_t i = 0; i < n; i++) { /* first halves */
		struct rtioreq_vm *vm = vms[i];

		pthread_mutex_lock(&vm->place_lock);
		for (uint16_t v = 0; !vm->detaching && v < vm->vcpu_num; v++) {
			if (vm->poller_of[v] != p)
				continue;
			if (vm->paused) {
				slot_owner_set(vm, v, NULL); /* a plan only */
				continue;
			}
			slot_unpublish(vm, v);
			moved[i] |= 1u << v;
		}
		any |= moved[i];
		pthread_mutex_unlock(&vm->place_lock);
	}
	if (any)
		rtioreq__rcu_synchronize(); /* one for the whole batch */
	for (uint32_t i = 0; i < n; i++) { /* second halves */
		struct rtioreq_vm *vm = vms[i];

		pthread_mutex_lock(&vm->place_lock);
		for (uint32_t m = moved[i]; m && !vm->detaching; m &= m - 1) {
			uint16_t v = (uint16_t)__builtin_ctz(m);

			/* moved meanwhile by rtioreq_vm_set_poller(): that call placed it */
			if (vm->poller_of[v] != p)
				continue;
			slot_unwake(vm, v);
			slot_give(vm, v, NULL, true);
		}
		pthread_mutex_unlock(&vm->place_lock);
		rtioreq__vm_put(vm);
	}
	rtioreq__poller_stop(p);
	pthread_mutex_destroy(&p->lock);
	free(p);
	return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Clearing and detaching */

static bool all_idle(struct rtioreq_vm *vm)
{
	for (uint16_t v = 0; v < vm->vcpu_num; v++)
		/* acquire: pairs with C1, so a completed request's effects are visible */
		if (atomic_load_explicit(&vm->slot[v].busy, memory_order_acquire))
			return false;
	return true;
}

/*
 * Wait for taken requests to finish, up to @timeout_ms; then force clients'. The
 * clients are held by references, not under vm->lock: a force may sleep (TK).
 */
static int vm_drain(struct rtioreq_vm *vm, unsigned int timeout_ms)
{
	struct rtioreq_client **cs = NULL;
	unsigned int n = 0, cap = 0;
	int forced = 0;

	for (unsigned int t = 0; !all_idle(vm) && t < timeout_ms; t++)
		rtioreq__sleep_ms(1);
	if (all_idle(vm))
		return 0;
	pthread_mutex_lock(&vm->lock);
	for (struct rtioreq_client *c = vm->clients; c; c = c->next)
		cap++;
	cs = cap ? malloc(cap * sizeof(*cs)) : NULL;
	for (struct rtioreq_client *c = vm->clients; cs && c; c = c->next) {
		rtioreq__client_get(c);
		cs[n++] = c;
	}
	if (!cs) /* ENOMEM: force under the lock instead */
		for (struct rtioreq_client *c = vm->clients; c; c = c->next)
			forced += (int)rtioreq__client_force(c);
	pthread_mutex_unlock(&vm->lock);
	for (unsigned int i = 0; i < n; i++) {
		forced += (int)rtioreq__client_force(cs[i]);
		rtioreq__client_put(cs[i]);
	}
	free(cs);
	return forced;
}

int rtioreq_vm_clear(struct rtioreq_vm *vm, unsigned int timeout_ms)
{
	int forced;

	if (rtioreq__rcu_is_reader())
		return -EDEADLK; /* it would wait for the poller's own request */
	pthread_mutex_lock(&vm->lock);
	if (vm->detaching) {
		pthread_mutex_unlock(&vm->lock);
		return -ENODEV;
	}
	/* DC: relaxed, under vm->lock: detach sets detaching under it, so it either sees
	 * this clear counted or this clear saw detaching */
	atomic_fetch_add_explicit(&vm->clears, 1, memory_order_relaxed);
	pthread_mutex_unlock(&vm->lock);

	/* L1: requests taken after this see clearing and complete at once */
	atomic_fetch_add_explicit(&vm->clearing, 1, memory_order_release);
	RTIOREQ__HOOK("vm.clear.entered", vm);
	rtioreq__kick(vm->eng);
	forced = vm_drain(vm, timeout_ms);
	atomic_fetch_sub_explicit(&vm->clearing, 1, memory_order_release); /* L1 */
	/* DC: release, the clear's last use of the VM: a detach that sees 0 may free it */
	atomic_fetch_sub_explicit(&vm->clears, 1, memory_order_release);
	return forced;
}

/* True if the calling thread is the handler thread of one of @vm's clients. */
static bool on_client_thread_of(struct rtioreq_vm *vm)
{
	return rtioreq__tls_client && rtioreq__tls_client->vm == vm;
}

int rtioreq_vm_detach(struct rtioreq_vm *vm)
{
	return rtioreq_vm_detach_stats(vm, NULL);
}

int rtioreq_vm_detach_stats(struct rtioreq_vm *vm, struct rtioreq_vm_stats *final)
{
	struct rtioreq_engine *eng = vm->eng;
	struct rtioreq_client *c;

	if (rtioreq__rcu_is_reader() || on_client_thread_of(vm))
		return -EDEADLK; /* a grace period / a join of the caller */
	/* 1. no taker: slots leave their pollers and the fallback path */
	pthread_mutex_lock(&vm->place_lock);
	pthread_mutex_lock(&vm->lock);
	if (vm->detaching) {
		pthread_mutex_unlock(&vm->lock);
		pthread_mutex_unlock(&vm->place_lock);
		return -ENODEV;
	}
	vm->detaching = true; /* client create, range updates, placement: -ENODEV */
	pthread_mutex_unlock(&vm->lock);
	atomic_fetch_add_explicit(&vm->clearing, 1, memory_order_release); /* L1 */
	for (uint16_t v = 0; v < vm->vcpu_num; v++)
		if (vm->poller_of[v]) {
			if (!vm->paused) { /* paused: only a plan, the poller never had it */
				rtioreq__poller_remove(vm->poller_of[v], vm, v);
				if (vm->ops && vm->ops->slot_polled)
					vm->ops->slot_polled(vm->hv, v, false);
			}
			slot_owner_set(vm, v, NULL);
		}
	atomic_store_explicit(&vm->fallback_mask, 0, memory_order_release); /* O1 */
	/* nobody polls any more: the hypervisor rings for every slot */
	vm_chan_unpoll(vm, vm->vcpu_num);
	pthread_mutex_unlock(&vm->place_lock);

	/* 2. the dispatcher's set: eng->lock only for the list update */
	pthread_mutex_lock(&eng->lock);
	for (uint32_t i = 0; i < eng->nvms; i++)
		if (eng->vms[i] == vm) {
			eng->vms[i] = eng->vms[--eng->nvms];
			break;
		}
	/* ENOMEM is retried: the VM must leave the set before it is freed */
	RTIOREQ__RETRY_NOMEM(rtioreq__dispatch_publish(eng));
	pthread_mutex_unlock(&eng->lock);
	rtioreq__rcu_synchronize(); /* no taker references vm after this: one for all slots */

	/* 3. every client: drain (handler threads) or bound and force (blocking). No
	 * taker can reach them any more, so no per-client withdrawal and grace period. */
	for (;;) {
		pthread_mutex_lock(&vm->lock);
		c = vm->clients;
		while (c && c->destroying)
			c = c->next; /* being destroyed by its owner */
		if (c) {
			c->destroying = true; /* claim it */
			c->shut = true;
		}
		pthread_mutex_unlock(&vm->lock);
		if (!c)
			break;
		rtioreq__client_teardown(c);
		rtioreq__client_detached(c);
	}
	for (;;) { /* wait for destroys by other threads */
		pthread_mutex_lock(&vm->lock);
		c = vm->clients;
		pthread_mutex_unlock(&vm->lock);
		if (!c)
			break;
		rtioreq__sleep_ms(1);
	}
	/* clears that began before detaching was set: they may still force and complete
	 * into the slots; no lock held while waiting (DC: acquire, pairs with their
	 * release decrement) */
	RTIOREQ__HOOK("vm.detach.wait_clears", vm);
	while (atomic_load_explicit(&vm->clears, memory_order_acquire))
		rtioreq__sleep_ms(1);
	/* 4. last sweep: anything still PENDING is completed, nothing is left hanging */
	for (uint16_t v = 0; v < vm->vcpu_num; v++) {
		struct rtioreq_io_request *wire = &vm->page->req_slot[v];
		struct rtioreq__slot *sl = &vm->slot[v];

		RTIOREQ__ASSERT(!atomic_load_explicit(&sl->busy, memory_order_relaxed));
		if (atomic_load_explicit(rtioreq_wire_atomic(&wire->processed),
					 memory_order_acquire) == RTIOREQ_STATE_PENDING) /* T1 */
			rtioreq__serve(vm, sl, wire, false); /* clearing: completes at once */
	}
	if (final) /* after the sweep: every request this engine will complete is counted */
		rtioreq_vm_stats(vm, final);

	/* after the GP, and no range update runs once detaching is set */
	rtioreq__map_free(atomic_load_explicit(&vm->map, memory_order_relaxed));
	atomic_store_explicit(&vm->map, NULL, memory_order_relaxed); /* under no reader */
	if (vm->chan_private)
		free(vm->chan);
	vm->chan = NULL;
	rtioreq__vm_put(vm); /* the engine's: freed now, or by its last zombie client */
	return 0;
}
