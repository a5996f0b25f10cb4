/* SPDX-License-Identifier: MIT */
/*
 * Engine internals: the objects, the slot state machine and the request path shared
 * by pollers (polling path) and the dispatcher (fallback path).
 *
 * Ordering pairs (every acquire/release of the engine; label: partner)
 * ---------------------------------------------------------------------------------
 *  H1  hv:     store processed=PENDING, release, after filling    -> T1
 *  T1  engine: load processed, acquire, sees PENDING               <- H1
 *  T0  engine: load slot.busy, acquire, sees 0 (slot free to take) <- C1
 *  T2  engine: CAS processed PENDING->PROCESSING, acq_rel          <- H1, -> H2 (informational)
 *  C1  engine: store slot.busy=0, release, after the counters      -> T0
 *  C2  engine: store processed=COMPLETE, release, after the value  -> H2
 *  H2  hv:     load processed, acquire, sees COMPLETE, reads value <- C2
 *  U1  hv:     chan.upcall_seq += 1, release, after H1             -> D1
 *  D1  disp.:  load chan.upcall_seq, acquire, before scanning      <- U1
 *  K1  engine: eng.kick += 1, release, after a state change        -> D1 (same rule)
 *  N1  engine: chan.done_seq[v] += 1, release, after C2            -> hv's acquire load
 *  A1  assign: client.pending |= bit, release, after slot.req      -> W1
 *  W1  wait:   CAS client.pending, acquire, takes the bit          <- A1
 *  W2  wait:   store client.claim[v] = tag, release, after copying -> F1, F2
 *  F1  complete: CAS client.claim[v] tag -> 0, acq_rel (seq_cst)   <- W2
 *  F2  force:  exchange client.claim[v] -> 0, acq_rel (seq_cst), and pending
 *      &= ~bits (acq_rel, pairs with A1): exactly one of F1 / F2 wins a taken request
 *  FH  force: under client.flock, F2 on a claim and, if it won a taken request, the
 *      record (vCPU, tag) of that request in client.forced; complete: a failed F1
 *      takes client.flock and removes its own (vCPU, tag) record if there is one,
 *      letting go of the forced request's reference. The lock orders the record after
 *      the F2 that a failed F1 read, so a late completer always finds it; a double
 *      completion (or a forged tag) finds none and touches nothing
 *  TK  wait: taking += 1 before W1, -= 1 (release) after W2; force: after its F2 on
 *      pending, waits for taking == 0 (acquire) before its F2 on claims, so a request
 *      in transit from pending to claimed is never missed by a clear's force pass.
 *      A forcing call that finds it non-zero spins a bounded time, then sets
 *      RTIOREQ__TK_SLEEPER and sleeps on the word; the taker whose decrement leaves
 *      only that bit clears it and wakes it
 *  CP  complete: completing += 1 (seq_cst) before F1, -= 1 (release) after C2; a
 *      teardown loads it (seq_cst) after its F2 pass and waits for 0, so no completer
 *      still touches the VM's slot when the VM goes away (Dekker pair with F1/F2)
 *  R1  client.refs / vm.refs -= 1, acq_rel: every use by a thread that let go
 *      happens before the free by the thread that takes it to 0
 *  M1  update: store vm.map, release / M2 reader: load, acquire
 *  S1  update: store poller.set, release / S2 poller: load, acquire
 *  V1  update: store eng.vmset, release / V2 dispatcher: load, acquire
 *  O1  update: store vm.fallback_mask, release / O2 dispatcher: load, acquire
 *  L1  clear:  store vm.clearing, release / L2 taker: load, acquire
 *  DC  clear: clears += 1 under vm->lock unless detaching (relaxed: the lock orders it
 *      against detach's store of detaching), -= 1 (release) after its last use of the
 *      VM; detach, after setting detaching, loads it (acquire) until 0 before it lets
 *      go of the slots, map and region
 *  NW  poller: need_wakeup |= bits (seq_cst), seq_cst fence, load processed; the
 *      hv: H1, seq_cst fence, load need_wakeup: a store-load (Dekker) pair, so either
 *      the poller sees PENDING and stays awake, or the hv sees the bit and rings U1
 *  P1  control: poller.wake += 1, release, after a set change or stop -> P2
 *  P2  poller: load poller.wake, acquire, before deciding to sleep     <- P1
 *  OW  region owner word (chan.owner): written only by the engine holding the region's
 *      OFD lock (engine/hv/shm.c); the kernel's lock hand-over orders a dead owner's
 *      slot stores before the next owner's takeover sweep (takeover.c)
 *  Sleep handshakes (a store-then-ring by control, load-then-load by the sleeper):
 *  - hybrid poller: control S1 then P1; poller P2 THEN S2 (reloads its set after the
 *    wake word), NW bits on that set, futex_waitv on the wake word + upcall words;
 *  - dispatcher: control V1 (or O1, M1, L1) then K1; dispatcher D1 on kick THEN V2,
 *    D1 on each VM's upcall word, scan, futex_waitv on all of them.
 *    Either the sleeper's second load sees the new set, or the ring came after its
 *    first load and the wait returns at once. The reverse order (set, then word) loses
 *    a set published between the two loads (tests/core/test_wakeup.c).
 *  HG  completer: slot hist min/max/sum/overflow (relaxed), then its bucket += 1,
 *      release, single writer (the request's owner, as slot.st)   -> HR
 *  HR  rtioreq_vm_hist(): load a bucket, acquire, then min/max/sum  <- HG: every value
 *      counted in a bucket it read is covered by the min/max it reads after
 *  X1  rt/apply.c: an undo record's live word = 1, release, once written -> X2
 *  X2  rt/apply.c stop/cleanup (also a signal handler): exchange it with 0,
 *      acquire; whoever saw 1 undoes the item, exactly once                 <- X1
 * Objects unpublished by M1/S1/V1/O1 are freed or change owner only after an RCU
 * grace period (rcu_pvt.h): a reader never sees a slot, map or VM change under it.
 *
 * Slot ownership (engine side). At any time a slot is served by exactly one taker:
 * the poller whose set holds it, or the dispatcher if its bit is in fallback_mask.
 * Moving a slot between takers goes through a grace period. Once taken, the request
 * belongs to whoever completes it: the taker itself (inline handler, invalid, no
 * client, clearing), or a client (pending bit, then the claim word holding the take's
 * tag) or a forcing control call, each of which claims it with an atomic
 * read-modify-write, so exactly one completes it. Each take gets a new tag (the slot's
 * generation, carried in rtioreq_req.tag): a completion claims by tag, so a stale
 * completion (of a forced or cleared request) can never complete a later request.
 * slot.busy is 1 from take to completion; a PENDING slot that is still busy (a
 * hypervisor that broke the protocol) is left alone.
 *
 * Lifetimes. A client is freed when client.refs drops to 0: one reference is the
 * owner's handle (dropped by rtioreq_client_destroy(), or for a client torn down by VM
 * detach and never destroyed by its owner, by rtioreq_engine_destroy()), one is held
 * by every request taken by rtioreq_client_wait() until the taker calls
 * rtioreq_client_complete() for it (whether it wins or was forced), one by every
 * thread inside a client call. A client holds a reference on its VM, so that late
 * calls on a client of a detached VM find the VM's lock and flags (not its map, page or
 * channel: detach frees or lets go of those).
 *
 * Untrusted input: the hypervisor writes the slot. rtioreq__snapshot() reads each
 * field exactly once (volatile loads) into slot.req, validates it, and nothing reads
 * the shared fields again; write-back touches only the value field.
 */
#ifndef RTIOREQ_ENGINE_PVT_H
#define RTIOREQ_ENGINE_PVT_H

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/hist_pvt.h"
#include "core/ranges_pvt.h"
#include "rtioreq/core/engine.h"
#include "rtioreq/core/hist.h"
#include "sys/clock_pvt.h"
#include "sys/cpu_pvt.h"
#include "sys/futex_pvt.h"

#ifdef NDEBUG
#define RTIOREQ__ASSERT(x) ((void)0)
#else
#define RTIOREQ__ASSERT(x) assert(x)
#endif

#define RTIOREQ__VCPU_MASK 0xffffu	/* client.pending bits: vCPUs */
#define RTIOREQ__DYING (1u << 31)	/* client.pending: shut down, drain and leave */
#define RTIOREQ__DEAD (1u << 30)	/* client.pending: torn down: drain, then -ESHUTDOWN */
#define RTIOREQ__TK_SLEEPER (1u << 31)	/* client.taking: a forcing call sleeps on it */

/*
 * Per-slot counters. Single writer: the current owner of the slot's request (see
 * slot.busy), so increments are relaxed load + relaxed store (no RMW); readers use
 * relaxed loads and may be one request behind.
 */
struct rtioreq__slot_stats {
	_Atomic uint64_t dispatched, completed, polled, fallback, handler_errors, invalid,
		unclaimed, cleared, forced, notified, abandoned;
};

static inline void rtioreq__stat_inc(_Atomic uint64_t *c)
{
	/* relaxed: single writer (slot owner); readers tolerate a stale value */
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/*
 * Engine-side service time of one slot's requests (RTIOREQ_VM_HIST; rtioreq_vm_hist()).
 * Single writer, like slot.st: whoever completes the slot's request, so updates are
 * relaxed load + store (no RMW, no lock) and the bucket's store is the release of HG.
 */
struct rtioreq__slot_hist {
	_Atomic uint64_t sum, min, max, overflow;
	_Atomic uint64_t bucket[RTIOREQ_HIST_BUCKETS];
} __attribute__((aligned(RTIOREQ__CACHELINE)));

/* Record @ns in @h: the completer of the slot's request only (single writer). No
 * syscall, no lock, no allocation. */
static inline void rtioreq__slot_hist_record(struct rtioreq__slot_hist *h, uint64_t ns)
{
	/* relaxed: single writer; published to readers by the bucket's release below */
	uint64_t sum = atomic_load_explicit(&h->sum, memory_order_relaxed);
	_Atomic uint64_t *b = &h->bucket[rtioreq_hist_index(ns)];

	atomic_store_explicit(&h->sum, rtioreq__hist_sat_add(sum, ns), memory_order_relaxed);
	if (ns < atomic_load_explicit(&h->min, memory_order_relaxed))
		atomic_store_explicit(&h->min, ns, memory_order_relaxed);
	if (ns > atomic_load_explicit(&h->max, memory_order_relaxed))
		atomic_store_explicit(&h->max, ns, memory_order_relaxed);
	if (ns >> RTIOREQ_HIST_MAX_BITS)
		atomic_store_explicit(&h->overflow,
				      atomic_load_explicit(&h->overflow, memory_order_relaxed) + 1,
				      memory_order_relaxed);
	/* HG: after min/max/sum; pairs with HR in rtioreq_vm_hist() */
	atomic_store_explicit(b, atomic_load_explicit(b, memory_order_relaxed) + 1,
			      memory_order_release);
}

/* Engine-private state of one (VM, vCPU) slot. */
struct rtioreq__slot {
	_Atomic uint32_t busy; /* 1 between take and completion (T0/C1) */
	uint16_t vcpu;
	bool valid;			/* snapshot passed validation */
	uint64_t gen;			/* tag of the last take; written by the taker only */
	struct rtioreq_req req;		/* the snapshot: the only copy handlers see */
	/* RTIOREQ_VM_HIST: this slot's histogram (NULL: off), set at attach before the VM
	 * is published and constant after; t_take: when the taker saw the request PENDING,
	 * written by the taker and published with req */
	struct rtioreq__slot_hist *hist;
	uint64_t t_take;
	struct rtioreq__slot_stats st;
} __attribute__((aligned(RTIOREQ__CACHELINE)));

/* A request forced while its taker still holds it (FH): the taker's late completion. */
struct rtioreq__forced {
	uint64_t tag;
	uint16_t vcpu;
};

struct rtioreq_client {
	/* line 0: claim words, written by takers, waiters and completers */
	_Atomic uint32_t pending;  /* vCPU bits assigned, not yet taken; DYING, DEAD */
	_Atomic uint32_t users;	   /* threads inside rtioreq_client_wait() (a wake hint) */
	_Atomic uint32_t taking;   /* TK: waiters between W1 and W2; RTIOREQ__TK_SLEEPER */
	_Atomic uint32_t completing; /* CP: completers between F1 and C2 */
	_Atomic uint32_t refs;	     /* R1: see "Lifetimes" above */
	/* W2/F1/F2: tag of vCPU v's request taken by a waiter and not yet completed; 0 */
	_Atomic uint64_t claim[RTIOREQ_IO_REQUEST_MAX];
	/* read-mostly */
	struct rtioreq_vm *vm __attribute__((aligned(RTIOREQ__CACHELINE)));
	rtioreq_handler_fn handler;
	void *priv;
	bool is_default;
	bool handler_thread; /* rtioreq_client_attr.handler_thread: fallback on c->thread */
	/* FH: requests forced while their taker still holds them, one record each (vCPU,
	 * tag), under flock (a leaf: force and late completers only) */
	pthread_mutex_t flock;
	struct rtioreq__forced *forced;
	uint32_t nforced, capforced;
	/* control plane, under vm->lock */
	bool shut;	 /* withdrawn from routing */
	bool destroying; /* someone (owner or detach) is tearing it down */
	bool torn;	 /* torn down by VM detach: a zombie until the owner lets go */
	bool owner_released; /* the owner called rtioreq_client_destroy() */
	bool has_thread; /* handler_thread: c->thread runs (joined by teardown) */
	pthread_t thread;
	struct rtioreq_client *next;
	struct rtioreq_client *znext; /* eng->zombies, under eng->zlock */
	char name[RTIOREQ_NAME_LEN];
	/* rtioreq_client_stats(): bumped by whoever completes one of its requests (pollers,
	 * its thread, waiters: several writers, so a relaxed RMW; no syscall, no lock) */
	_Atomic uint64_t served __attribute__((aligned(RTIOREQ__CACHELINE)));
	_Atomic uint64_t handler_errors;
};

/* Count a request of @c completed with handler status @rc (relaxed: statistics). */
static inline void rtioreq__client_count(struct rtioreq_client *c, int rc)
{
	atomic_fetch_add_explicit(&c->served, 1, memory_order_relaxed);
	if (rc < 0)
		atomic_fetch_add_explicit(&c->handler_errors, 1, memory_order_relaxed);
}

struct rtioreq_vm {
	struct rtioreq__slot slot[RTIOREQ_IO_REQUEST_MAX];
	/* read by every taker */
	_Atomic(struct rtioreq__map *) map; /* M1/M2 */
	_Atomic uint32_t fallback_mask;	    /* O1/O2: slots the dispatcher takes */
	_Atomic uint32_t clearing;	    /* L1/L2: >0 completes requests at once */
	struct rtioreq_engine *eng;
	struct rtioreq_io_request_buffer *page;
	struct rtioreq_chan *chan;
	const struct rtioreq_vm_ops *ops;
	void *hv;
	uint16_t id, vcpu_num;
	bool chan_private;
	struct rtioreq__slot_hist *hist; /* RTIOREQ_VM_HIST: vcpu_num of them, or NULL */
	uint64_t serial; /* rtioreq__serial_next() at attach: identity for events.c */
	/* control plane */
	_Atomic uint32_t refs;	    /* R1: the engine's (attach to detach) + one per client */
	/*
	 * place_lock: slot placement (poller_of[], paused); held across the grace period
	 * of a slot move, so never taken on an RCU reader. lock: map updates, clients,
	 * flags; never held across a grace period, a join or a timeout (only a 1 ms ENOMEM
	 * retry, RTIOREQ__RETRY_NOMEM), so handlers may take it (range updates).
	 * Order: place_lock, then lock, then poller->lock.
	 */
	pthread_mutex_t place_lock;
	pthread_mutex_t lock;
	bool detaching; /* under both locks */
	_Atomic uint32_t clears; /* DC: rtioreq_vm_clear() calls in progress */
	bool paused; /* attached paused: poller_of[] is the plan, no taker yet */
	struct rtioreq_client *clients;
	struct rtioreq_poller *poller_of[RTIOREQ_IO_REQUEST_MAX];
	/* tid of poller_of[v] (0: the dispatcher), for readers that take no lock (events.c):
	 * written with poller_of[] under place_lock, relaxed both ways (a report only) */
	_Atomic pid_t taker_tid[RTIOREQ_IO_REQUEST_MAX];
	struct rtioreq__rcu_head rcu;
};

/* The dispatcher's RCU-protected view of the engine's VMs. */
struct rtioreq__vmset {
	struct rtioreq__rcu_head rcu;
	uint32_t n;
	struct rtioreq_vm *vm[RTIOREQ_MAX_VMS];
};

/* One slot in a poller's set. */
struct rtioreq__pent {
	struct rtioreq_vm *vm;
	struct rtioreq_io_request *wire;
	struct rtioreq__slot *slot;
};

struct rtioreq__pset {
	struct rtioreq__rcu_head rcu;
	uint32_t n;
	struct rtioreq__pent e[];
};

struct rtioreq_poller {
	/* line 0: the poller's own, read every loop */
	_Atomic(struct rtioreq__pset *) set; /* S1/S2 */
	_Atomic bool stop;
	_Atomic uint64_t loops, served, sleeps; /* single writer: the poller */
	_Atomic uint64_t spin_ns;	/* hybrid idle after this long without work; 0: spin */
	_Atomic uint32_t wake;		/* P1/P2: private doorbell of a sleeping poller */
	/* control plane */
	struct rtioreq_engine *eng __attribute__((aligned(RTIOREQ__CACHELINE)));
	_Atomic pid_t tid;
	uint64_t serial; /* rtioreq__serial_next() at create: identity for events.c */
	pthread_mutex_t lock; /* set updates (nests inside vm->lock) */
	pthread_t thread;
	struct rtioreq_poller *next; /* eng->pollers, under eng->lock */
};

struct rtioreq_engine {
	_Atomic uint32_t kick;			/* K1: dispatcher doorbell (private futex) */
	_Atomic bool stop;
	_Atomic(struct rtioreq__vmset *) vmset; /* V1/V2 */
	struct rtioreq_engine_attr attr;
	/* vms[], pollers: held only for list updates, never across a grace period, a
	 * join or a timeout (only a 1 ms ENOMEM retry of the VM set's publication), so one
	 * VM's teardown never stalls another VM's control calls */
	pthread_mutex_t lock;
	struct rtioreq_vm *vms[RTIOREQ_MAX_VMS];
	uint32_t nvms;
	/* ids of VMs being attached (validated, region being swept, not yet in vms[]) */
	uint16_t adding[RTIOREQ_MAX_VMS];
	uint32_t nadding;
	struct rtioreq_poller *pollers;
	pthread_t dispatcher;
	pthread_mutex_t zlock;		/* zombies */
	struct rtioreq_client *zombies; /* torn down by detach, owner not yet let go */
};

/*
 * Call context of the current thread, for calls that cannot run there (-EDEADLK):
 * rtioreq__rcu_is_reader() (ranges.c) is true on pollers and the dispatcher (a grace
 * period would wait for the caller); rtioreq__tls_client is the client whose handler
 * thread this is (a teardown of that client, or of its VM, would join the caller).
 */
extern __thread struct rtioreq_client *rtioreq__tls_client;

/*
 * Read the slot once into @r and validate. Return true if the request is well formed.
 * On false, r->type/r->dir hold what was read (for the all-ones write-back).
 */
static inline bool rtioreq__snapshot(const struct rtioreq_io_request *wire, struct rtioreq_req *r)
{
	const volatile struct rtioreq_io_request *s = wire;
	uint64_t addr, size, value = 0;
	uint32_t dir, max_size = 4;

	r->completion_polling = s->completion_polling != 0;
	r->type = s->type;
	r->bus = r->dev = r->func = 0;
	switch (r->type) {
	case RTIOREQ_TYPE_PORTIO:
		dir = s->reqs.pio_request.direction;
		addr = s->reqs.pio_request.address;
		size = s->reqs.pio_request.size;
		if (dir == RTIOREQ_DIR_WRITE)
			value = s->reqs.pio_request.value;
		break;
	case RTIOREQ_TYPE_MMIO:
		dir = s->reqs.mmio_request.direction;
		addr = s->reqs.mmio_request.address;
		size = s->reqs.mmio_request.size;
		if (dir == RTIOREQ_DIR_WRITE)
			value = s->reqs.mmio_request.value;
		max_size = 8;
		break;
	case RTIOREQ_TYPE_PCICFG: {
		uint32_t bus = s->reqs.pci_request.bus, dev = s->reqs.pci_request.dev;
		uint32_t func = s->reqs.pci_request.func;

		dir = s->reqs.pci_request.direction;
		addr = s->reqs.pci_request.reg;
		size = s->reqs.pci_request.size;
		if (dir == RTIOREQ_DIR_WRITE)
			value = s->reqs.pci_request.value;
		if (bus > 255 || dev > 31 || func > 7) {
			r->dir = dir;
			return false;
		}
		r->bus = (uint8_t)bus;
		r->dev = (uint8_t)dev;
		r->func = (uint8_t)func;
		break;
	}
	default:
		/* direction sits at offset 64 in every request layout: a WRITE of an unknown
		 * type keeps its value field (nothing is written but processed), anything
		 * else is answered as a read (docs/shm-protocol.md 6.1, 6.2) */
		r->dir = s->reqs.pio_request.direction == RTIOREQ_DIR_WRITE ? RTIOREQ_DIR_WRITE
									      : RTIOREQ_DIR_READ;
		return false;
	}
	r->dir = dir;
	if (dir > RTIOREQ_DIR_WRITE || size > max_size || !size || (size & (size - 1)))
		return false;
	if (addr > UINT64_MAX - (size - 1))
		return false;
	if (r->type == RTIOREQ_TYPE_PORTIO && addr + (size - 1) > 0xffff)
		return false;
	if (r->type == RTIOREQ_TYPE_PCICFG && addr + (size - 1) > 0xfff)
		return false;
	r->addr = addr;
	r->size = (uint32_t)size;
	r->value = value & rtioreq_size_mask(r->size);
	return true;
}

/* Completion notification of @vcpu's request (N1), after C2. */
static inline void rtioreq__vm_notify(struct rtioreq_vm *vm, uint16_t vcpu)
{
	/* the embedder's ops know vCPUs below vcpu_num only; a slot past it (completed by
	 * the takeover sweep of a larger channel) gets the channel's doorbell */
	if (vm->ops && vm->ops->notify_finish && vcpu < vm->vcpu_num) {
		vm->ops->notify_finish(vm->hv, vcpu);
		return;
	}
	/* N1: after C2; pairs with the hv's acquire load of done_seq */
	rtioreq__chan_ring(rtioreq_wire_atomic(&vm->chan->done_seq[vcpu].word));
}

/*
 * A process-wide serial for VMs and pollers: never reused, unlike an address (a VM
 * detached and attached again may land where the old one was), so observers that
 * remember objects between looks (events.c) key on it.
 */
uint64_t rtioreq__serial_next(void);

/* takeover.c: complete what a dead engine left in slots 0..@n-1 of @vm's region (@n: the
 * channel's vcpu_num, which may exceed the VM's); before @vm is published. */
void rtioreq__vm_takeover(struct rtioreq_vm *vm, uint32_t n);

/* dispatch.c: hand a taken request to client @c's pending set (A1), wake a waiter. */
void rtioreq__assign(struct rtioreq_vm *vm, struct rtioreq__slot *sl, struct rtioreq_client *c);

/*
 * Complete the request held in @sl: write the value back for reads, count, release the
 * slot (C1), store COMPLETE (C2), notify if the hypervisor asked for it. Called by the
 * request's owner only. @polled: completed inline on a poller.
 */
static inline void rtioreq__complete(struct rtioreq_vm *vm, struct rtioreq__slot *sl, bool polled)
{
	struct rtioreq_io_request *wire = &vm->page->req_slot[sl->vcpu];
	const struct rtioreq_req *r = &sl->req;
	bool notify = !r->completion_polling; /* read once at snapshot, before C2 */
	uint16_t vcpu = sl->vcpu;

	RTIOREQ__ASSERT(atomic_load_explicit(&sl->busy, memory_order_relaxed) == 1);
	if (r->dir != RTIOREQ_DIR_WRITE) {
		volatile struct rtioreq_io_request *s = wire;
		uint64_t v = sl->valid ? r->value & rtioreq_size_mask(r->size) : ~(uint64_t)0;

		if (r->type == RTIOREQ_TYPE_MMIO)
			s->reqs.mmio_request.value = v;
		else
			s->reqs.pio_request.value = (uint32_t)v; /* PIO and PCICFG: u32 at 88 */
	}
	rtioreq__stat_inc(&sl->st.completed);
	rtioreq__stat_inc(polled ? &sl->st.polled : &sl->st.fallback);
	if (notify)
		rtioreq__stat_inc(&sl->st.notified);
	if (sl->hist) /* RTIOREQ_VM_HIST; off: one predictable branch. Before C1: the next
		       * taker of the slot is the next writer */
		rtioreq__slot_hist_record(sl->hist, rtioreq__now_ns() - sl->t_take);
	/* C1: the slot's engine state is free again; pairs with T0 of the next taker */
	atomic_store_explicit(&sl->busy, 0, memory_order_release);
	/* C2: value and every earlier write before COMPLETE; pairs with the hv's H2 */
	atomic_store_explicit(rtioreq_wire_atomic(&wire->processed), RTIOREQ_STATE_COMPLETE,
			      memory_order_release);
	if (notify)
		rtioreq__vm_notify(vm, vcpu);
}

/* Complete with all ones for reads; @st: the counter that says why. */
static inline void rtioreq__complete_ones(struct rtioreq_vm *vm, struct rtioreq__slot *sl,
					  _Atomic uint64_t *st, bool polled)
{
	rtioreq__stat_inc(st);
	sl->req.value = ~(uint64_t)0;
	rtioreq__complete(vm, sl, polled);
}

/*
 * Take and serve a slot seen PENDING (T1) by its taker. A client with a handler runs
 * inline on the taker: a poller (@on_poller) or the dispatcher, each inside its RCU
 * read side, which is what keeps the client alive while its handler runs (a destroy
 * or detach waits for a grace period before it lets go). Only a client created with
 * rtioreq_client_attr.handler_thread goes to its thread on the fallback path (a
 * handler that may block), and a blocking client always to its pending set. Must be
 * called inside the taker's RCU read side. No syscall unless the request goes to a
 * client's pending set or the hypervisor asked for a notification.
 * Return true if the request was taken; false if the slot is still owned by an earlier
 * request or is no longer PENDING (only a hypervisor breaking the protocol causes either).
 */
static inline bool rtioreq__serve(struct rtioreq_vm *vm, struct rtioreq__slot *sl,
				  struct rtioreq_io_request *wire, bool on_poller)
{
	uint32_t expect = RTIOREQ_STATE_PENDING;
	struct rtioreq_client *c;
	struct rtioreq__map *m;
	int rc;

	/* T0: a slot still owned by an earlier request is not taken again; pairs with C1 */
	if (atomic_load_explicit(&sl->busy, memory_order_acquire))
		return false;
	if (sl->hist) /* RTIOREQ_VM_HIST: the service time starts here (rtioreq_vm_hist()) */
		sl->t_take = rtioreq__now_ns();
	/* snapshot first (sl->req is free: busy is 0), so that a hypervisor seeing
	 * PROCESSING knows the engine no longer reads the slot's fields */
	sl->valid = rtioreq__snapshot(wire, &sl->req);
	/* relaxed: only this taker may take the slot (ownership moves across grace periods);
	 * published by T2 (PROCESSING implies busy) and to later owners by A1 / C1 */
	atomic_store_explicit(&sl->busy, 1, memory_order_relaxed);
	/*
	 * T2: PENDING -> PROCESSING as a CAS, release (pairs with the hv's H2 load). A plain
	 * store could overwrite a COMPLETE stored by the previous owner between our stale
	 * PENDING load (T1) and now, if the hv re-stored PENDING on a slot it did not own:
	 * the hv would then never see its request complete. On failure the snapshot is
	 * dropped and the slot left alone.
	 */
	if (!atomic_compare_exchange_strong_explicit(rtioreq_wire_atomic(&wire->processed),
						     &expect, RTIOREQ_STATE_PROCESSING,
						     memory_order_acq_rel, memory_order_relaxed)) {
		atomic_store_explicit(&sl->busy, 0, memory_order_relaxed); /* never taken */
		return false;
	}
	rtioreq__stat_inc(&sl->st.dispatched);
	sl->req.tag = ++sl->gen; /* identity of this take; never 0 */
	sl->req.vcpu = sl->vcpu;
	sl->req.vm_id = vm->id;
	if (!sl->valid) {
		rtioreq__complete_ones(vm, sl, &sl->st.invalid, on_poller);
		return true;
	}
	/* L2: pairs with L1 in rtioreq_vm_clear()/detach */
	if (atomic_load_explicit(&vm->clearing, memory_order_acquire)) {
		rtioreq__complete_ones(vm, sl, &sl->st.cleared, on_poller);
		return true;
	}
	m = atomic_load_explicit(&vm->map, memory_order_acquire); /* M2, pairs with M1 */
	c = rtioreq__map_lookup(m, sl->req.type, sl->req.addr, sl->req.size);
	if (!c) {
		rtioreq__complete_ones(vm, sl, &sl->st.unclaimed, on_poller);
		return true;
	}
	/* inline: the request stays the taker's (no pending bit, no claim), so a clear or
	 * destroy never forces it: it finishes on its own, as handlers never block */
	if (c->handler && (on_poller || !c->handler_thread)) {
		sl->req.value = sl->req.dir == RTIOREQ_DIR_WRITE ? sl->req.value : 0;
		rc = c->handler(c, &sl->req, c->priv);
		rtioreq__client_count(c, rc);
		if (rc < 0) {
			rtioreq__complete_ones(vm, sl, &sl->st.handler_errors, on_poller);
			return true;
		}
		rtioreq__complete(vm, sl, on_poller);
		return true;
	}
	rtioreq__assign(vm, sl, c);
	return true;
}

/*
 * Who calls whom (no cycle): engine.c (lifecycle, slot placement) -> client.c (clients,
 * ranges) -> dispatch.c (fallback path) and poll.c (polling path) -> this header's
 * request path -> ranges.c (tables, RCU). Nothing below calls back up.
 */

/* dispatch.c: the fallback path */
void rtioreq__kick(struct rtioreq_engine *eng); /* K1: dispatcher doorbell */
int rtioreq__dispatch_start(struct rtioreq_engine *eng);
void rtioreq__dispatch_stop(struct rtioreq_engine *eng); /* stop and join */
/* Publish the dispatcher's VM set from eng->vms[] (V1, under eng->lock). 0 or -ENOMEM. */
int rtioreq__dispatch_publish(struct rtioreq_engine *eng);
/* Thread body of a handler_thread client: take, run, complete until drained. */
void *rtioreq__client_main(void *arg);
/* Claim and complete (all ones) everything assigned to @c. Return how many. */
unsigned int rtioreq__client_force(struct rtioreq_client *c);
/* Tear down @c (claimed with c->destroying, already unreachable by takers: withdrawn,
 * or its VM left every taker): drain (handler thread: joined) or bound-and-force its
 * requests, wake its waiters with -ESHUTDOWN, wait for in-flight completers. */
void rtioreq__client_teardown(struct rtioreq_client *c);
/* References (R1): the last put frees the client (and puts its VM). */
void rtioreq__client_get(struct rtioreq_client *c);
void rtioreq__client_put(struct rtioreq_client *c);
void rtioreq__vm_get(struct rtioreq_vm *vm);
void rtioreq__vm_put(struct rtioreq_vm *vm);

/* poll.c: the polling path */
int rtioreq__poller_start(struct rtioreq_poller *p, const struct rtioreq_thread_attr *attr);
void rtioreq__poller_stop(struct rtioreq_poller *p); /* stop, join, free its set */
/* Add / remove slot @vcpu of @vm to / from @p's set (S1); under vm->lock. */
int rtioreq__poller_add(struct rtioreq_poller *p, struct rtioreq_vm *vm, uint16_t vcpu);
int rtioreq__poller_remove(struct rtioreq_poller *p, struct rtioreq_vm *vm, uint16_t vcpu);
/* P1: wake the poller if it sleeps in hybrid idle (set change, setting, stop). */
void rtioreq__poller_wake(struct rtioreq_poller *p);

/* client.c: a client torn down by detach (@c, after rtioreq__client_teardown()):
 * unlinked from its VM, then freed if its owner already let go, else a zombie. */
void rtioreq__client_detached(struct rtioreq_client *c);

#endif /* RTIOREQ_ENGINE_PVT_H */
