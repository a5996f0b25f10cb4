/* SPDX-License-Identifier: MIT */
/**
 * @file engine.h
 * rtioreq engine: VMs (attached slot pages), clients and their address ranges,
 * pollers (the polling path) and the dispatcher (the fallback path).
 *
 * Errors: control-plane calls return 0 or a negative errno; constructors return NULL
 * and set errno. Handlers and the hot path never touch errno.
 *
 * Call contexts. Each function below states where it may be called from, in these
 * terms (tests/core/test_lifecycle.c checks each kind):
 *  - any thread: including a handler (on a poller, the dispatcher or a client's
 *    thread) and an embedder's own liburcu-qsbr thread, online or offline. Never
 *    waits for a grace period on the caller's thread; may take a per-VM mutex (or the
 *    engine's list lock) that is only ever held for short sections with no grace
 *    period, join or timeout in them. The one exception: a step that must not fail
 *    (an object leaving a published set, a forced request's record) retries a failed
 *    allocation every 1 ms under its lock, so while malloc() keeps failing, a call
 *    that needs that lock waits as long as it does (RTIOREQ__RETRY_NOMEM,
 *    engine/sys/clock_pvt.h).
 *  - not on a poller: from any thread except the engine's pollers and dispatcher (so
 *    not from a handler running inline on either); called there it returns -EDEADLK
 *    (it waits for an RCU grace period, which would wait for the caller). From an
 *    embedder's online liburcu-qsbr thread it is fine: liburcu takes the thread
 *    offline while it waits (a quiescent state for the caller's own RCU use).
 *  - not from its own handler thread: additionally -EDEADLK on the handler thread of
 *    the client it would join (the client itself, or any client of the VM detached).
 *  - async-signal-safe: may be called from a signal handler.
 * Calls on one VM's control plane are serialised by per-VM mutexes; calls on different
 * VMs never wait for each other (no engine-wide lock is held across a grace period, a
 * thread join or a timeout; only the allocation retry above, under the engine's list
 * lock, while memory is exhausted): test_detach_does_not_stall_other_vm.
 *
 * Handles. An engine, VM or poller handle is valid until the call that destroys it
 * returns; no call on it may start after that. A client handle stays valid after its
 * VM is detached (calls on it return -ENODEV, -ESHUTDOWN or -ENOENT) until the owner
 * calls rtioreq_client_destroy() on it or the engine is destroyed. A client pinned by
 * a waiter outlives both, the engine's destroy included: a thread that holds one of its
 * requests may (and must) still call rtioreq_client_complete() for it (-ENOENT once
 * forced), and a thread that called rtioreq_client_wait() on it may call it again
 * (-ESHUTDOWN) until it waits on another client or exits; the client (and what is
 * left of its VM) is freed when the last of them lets go
 * (test_waiters_survive_engine_destroy, test_destroy_with_held_request).
 */
#ifndef RTIOREQ_ENGINE_H
#define RTIOREQ_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "rtioreq/abi.h"
#include "rtioreq/common.h"

RTIOREQ_BEGIN_DECLS

#define RTIOREQ_MAX_VMS 64 /**< per engine; bounded by futex_waitv's 128 waiters */
#define RTIOREQ_NAME_LEN 16 /**< bytes of a client or thread name, with the NUL */
/** bound for a blocking client's outstanding requests when it is destroyed (also by
 * detach) before they are force-completed */
#define RTIOREQ_CLEAR_TIMEOUT_MS 100

struct rtioreq_engine;
struct rtioreq_vm;
struct rtioreq_client;
struct rtioreq_poller;
struct rtioreq_vm_stats;
struct rtioreq_hist;

/**
 * A validated private copy of one slot's request: what handlers see. Handlers never
 * see the shared page; the engine writes `value` back for reads.
 */
struct rtioreq_req {
	uint32_t type;	    /**< RTIOREQ_TYPE_PORTIO / _MMIO / _PCICFG */
	uint32_t dir;	    /**< RTIOREQ_DIR_READ / _WRITE */
	uint64_t addr;	    /**< port, guest-physical address, or PCI config register */
	uint32_t size;	    /**< bytes: 1, 2, 4 (PIO, PCICFG) or 1, 2, 4, 8 (MMIO) */
	uint16_t vcpu;	    /**< slot index */
	uint16_t vm_id;	    /**< rtioreq_vm_attr.id */
	uint64_t value;	    /**< write: data (masked to size); read: handler fills it */
	uint8_t bus;		    /**< PCICFG only: bus */
	uint8_t dev;		    /**< PCICFG only: device */
	uint8_t func;		    /**< PCICFG only: function */
	uint8_t completion_polling; /**< as read once from the slot */
	/** opaque identity of this take (a per-slot generation): rtioreq_client_complete()
	 * claims the request by it, so a stale completion never reaches a later request */
	uint64_t tag;
};

/**
 * Handler: serve one request. It must not block, sleep or take locks another thread
 * may hold for long: it runs inline on the taker, a poller (the polling path) or the
 * dispatcher (the fallback path), at that thread's CPU and priority
 * (rtioreq_engine_attr.dispatcher for the fallback path), and the next request of
 * every slot that taker serves waits for it. A handler that may block sets
 * rtioreq_client_attr.handler_thread: on the fallback path it then runs on the
 * client's own handler thread (one more thread wake-up per request).
 * For reads, set req->value (the engine masks it to size).
 * Return 0, or a negative errno: the request is then completed anyway, a read returns
 * all ones, and the VM's handler_errors counter grows.
 * A handler may call every function marked "any thread" (e.g. move its own ranges on
 * a BAR write: rtioreq_range_del() + rtioreq_range_add(), effective for the next
 * request); functions marked "not on a poller" return -EDEADLK when it runs inline
 * (on a poller or the dispatcher); on a handler_thread client's thread they work,
 * except those that would wait for that thread itself (rtioreq_client_destroy() of its
 * own client, rtioreq_vm_detach() of its own VM: -EDEADLK).
 */
typedef int (*rtioreq_handler_fn)(struct rtioreq_client *client, struct rtioreq_req *req,
				  void *priv);

/**
 * Placement and scheduling of an engine thread. Zero-initialised = CPU 0, SCHED_OTHER;
 * RTIOREQ_THREAD_ATTR_DEFAULT = unpinned SCHED_OTHER.
 */
struct rtioreq_thread_attr {
	int cpu;      /**< CPU to pin to (set before the thread starts), or -1 */
	int policy;   /**< SCHED_OTHER, SCHED_FIFO or SCHED_RR */
	int priority; /**< 1..99 for FIFO/RR, 0 otherwise */
	const char *name; /**< thread name, at most 15 chars used; NULL: a default */
	uint64_t reserved[2]; /**< zero; new fields come from here (rtioreq/common.h) */
};
/** Initialiser of a struct rtioreq_thread_attr: unpinned, SCHED_OTHER. */
#define RTIOREQ_THREAD_ATTR_DEFAULT { .cpu = -1 }

/* ------------------------------------------------------------------------- */
/* Engine */

/** Threads of an engine (zero-initialise; see rtioreq/common.h). */
struct rtioreq_engine_attr {
	/** the fallback path's dispatcher thread, which also runs the handlers of clients
	 * without handler_thread inline (at this CPU and priority) */
	struct rtioreq_thread_attr dispatcher;
	struct rtioreq_thread_attr clients;    /**< default for handler_thread clients' threads */
	/**
	 * liburcu's call_rcu worker, which frees replaced range tables and slot sets after
	 * grace periods: only .cpu is used. Put it on a housekeeping CPU, never a poller's
	 * (unpinned, it wakes on any CPU and preempts a SCHED_OTHER poller). One worker per
	 * process: the first engine created with .cpu >= 0 places it, and from then on
	 * every engine of the process (whatever its .cpu) uses it; it stays until the last
	 * engine is destroyed (test_rcu_worker_outlives_pinning_engine).
	 */
	struct rtioreq_thread_attr rcu;
	uint64_t reserved[8]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/**
 * rtioreq_engine_create() - start an engine and its dispatcher thread.
 * @param attr  may be NULL for defaults.
 * Context: any thread. Blocks only for the thread start.
 * Return: the engine, or NULL with errno set (EINVAL bad attr, EPERM scheduling
 * refused, ENOMEM, ENOSYS the kernel has no futex_waitv(2) (Linux < 5.16, or a seccomp
 * policy denies it): the engine's threads sleep on several words at once and would
 * otherwise spin, or the error of pthread_create).
 */
struct rtioreq_engine *rtioreq_engine_create(const struct rtioreq_engine_attr *attr);

/**
 * rtioreq_engine_destroy() - destroy every poller, detach every VM (completing what is
 * in flight), release the clients detach left to their owners (a client whose taken
 * request was never passed to rtioreq_client_complete() is not freed), stop and join
 * the dispatcher, wait for deferred frees.
 * Context: a thread that is none of this engine's (poller, dispatcher, client thread);
 * no other call on this engine, its VMs, clients or pollers may run concurrently or
 * follow. Blocks: grace periods, joins, each blocking client's bound.
 */
void rtioreq_engine_destroy(struct rtioreq_engine *eng);

/* ------------------------------------------------------------------------- */
/* VMs */

/**
 * Operations of the hypervisor side for one VM. All optional.
 * notify_finish: vCPU \p vcpu's request is COMPLETE and it asked for a notification
 *	(completion_polling was 0): the "finish hypercall". NULL: the engine uses the
 *	channel's done_seq futex word (docs/shm-protocol.md). Called from the thread
 *	that completed the request (poller, dispatcher, client thread,
 *	embedder thread or control thread).
 * raise_irq: for device models: assert (level 1) / deassert (0) guest interrupt \p irq.
 *	Return 0 or -errno. NULL: rtioreq_vm_raise_irq() returns -ENOSYS.
 * slot_polled: the engine starts (true) or stops (false) polling slot \p vcpu; the
 *	channel's polled_mask is updated either way.
 */
struct rtioreq_vm_ops {
	void (*notify_finish)(void *hv, uint16_t vcpu); /**< see above; may be NULL */
	int (*raise_irq)(void *hv, uint32_t irq, uint32_t level); /**< see above; may be NULL */
	void (*slot_polled)(void *hv, uint16_t vcpu, bool polled); /**< see above; may be NULL */
	void *reserved[4]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/** A VM to attach: its slot page and hypervisor side (zero-initialise). */
struct rtioreq_vm_attr {
	uint16_t id;	   /**< the VM's id (reported in requests and stats) */
	uint16_t vcpu_num; /**< 1..16: slots the engine serves */
	struct rtioreq_io_request_buffer *page; /**< not owned; must outlive the VM */
	struct rtioreq_chan *chan; /**< shared channel page, or NULL for a private one */
	const struct rtioreq_vm_ops *ops; /**< may be NULL */
	void *hv;		       /**< passed to ops */
	/**
	 * Serve nothing until rtioreq_vm_start(): create the clients and ranges and place
	 * the slots first, so that no request of a running hypervisor reaches a VM with
	 * half its devices (a write taken by nobody would be lost to the device).
	 */
	bool paused;
	/**
	 * The caller owns the shared region exclusively and its previous engine died
	 * without detaching (rtioreq_shm.stale_owner, docs/shm-protocol.md 7.4): slots that
	 * engine left PROCESSING are completed at attach (reads all ones, counted
	 * `abandoned`, notified if asked), and slots left COMPLETE get one more done_seq
	 * increment (it may have died between COMPLETE and the notification). Never set it
	 * while another engine may still serve the page. Ignored without \p chan.
	 */
	bool takeover;
	/**
	 * Options, RTIOREQ_VM_* bits (0: none). A bit this library does not know makes
	 * rtioreq_vm_attach() fail with EINVAL, so a binary asking for a newer option
	 * learns it is missing. (Taken out of the reserved tail in 0.x: the size is
	 * unchanged.)
	 */
	uint64_t flags;
	uint64_t reserved[5]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/**
 * rtioreq_vm_attr.flags: record each request's engine-side service time in a per-VM
 * histogram, read with rtioreq_vm_hist(). Off (the default) it costs one predictable
 * branch when a request is taken and one when it is completed; on, two reads of
 * CLOCK_MONOTONIC (served by the vDSO, no syscall, on tsc and kvm-clock clocksources,
 * as test_hotpath checks; on others, two syscalls per request), a few stores, and
 * vcpu_num * sizeof(struct rtioreq_hist) bytes allocated at attach.
 */
#define RTIOREQ_VM_HIST (1ull << 0)

/**
 * rtioreq_vm_attach() - serve a slot page. All slots start on the fallback path.
 * Slots found PENDING at attach are served (the dispatcher is kicked); with
 * attr->paused, only from rtioreq_vm_start() on.
 * Context: any thread. Does not block (the engine's list lock, held briefly).
 * A refused attach (EEXIST, ENOSPC) has not touched the page or channel: the checks come
 * before the channel's polled/need_wakeup bits of every vCPU of the channel are
 * cleared and (attr->takeover) its slots are swept (test_refused_attach_touches_nothing,
 * test_takeover_sweeps_whole_channel).
 * Return: the VM, or NULL with errno: EINVAL (vcpu_num, page or a channel whose magic,
 * version or vcpu_num does not match), EEXIST (id in use or being attached), ENOSPC
 * (RTIOREQ_MAX_VMS), ENOMEM.
 */
struct rtioreq_vm *rtioreq_vm_attach(struct rtioreq_engine *eng,
				     const struct rtioreq_vm_attr *attr);

/**
 * rtioreq_vm_start() - start serving a VM attached with attr->paused: every slot goes
 * to the poller rtioreq_vm_set_poller() placed it on meanwhile (recorded, not applied,
 * while paused) or to the fallback path; PENDING slots are served.
 * Context: not on a poller (it may wait for another call's slot move of this VM).
 * Blocks: only while a slot move of this VM is under way.
 * Return: 0 (also when already started), -ENODEV (detaching), -EDEADLK (on a poller).
 */
int rtioreq_vm_start(struct rtioreq_vm *vm);

/**
 * rtioreq_vm_detach() - stop serving a VM: new requests complete at once (reads all
 * ones), its slots leave their pollers and the dispatcher across one grace period,
 * every client is torn down (a handler thread drains what was assigned to it and is
 * joined; a blocking client gets RTIOREQ_CLEAR_TIMEOUT_MS, then its requests are
 * force-completed and its waiters return -ESHUTDOWN), any PENDING slot is completed.
 * Clients their owner has not destroyed stay valid handles (see "Handles"); release
 * them with rtioreq_client_destroy(), or rtioreq_engine_destroy() does.
 * Context: not on a poller, not from a handler thread of this VM's clients. Other VMs'
 * control calls proceed meanwhile (no engine-wide lock is held while it waits).
 * Blocks: a grace period, client thread joins, the blocking clients' bound, and
 * rtioreq_vm_clear() calls on this VM that began before it (it waits for them before
 * it lets go of the slots; test_clear_serialised_with_detach).
 * Return: 0; -ENODEV (already detaching); -EDEADLK. The page and channel are no
 * longer touched when it returns 0; the VM handle is invalid.
 */
int rtioreq_vm_detach(struct rtioreq_vm *vm);
/**
 * rtioreq_vm_detach_stats() - rtioreq_vm_detach(), and \p final (may be NULL) gets the
 * VM's counters after the last sweep, so they include what detach itself completed.
 */
int rtioreq_vm_detach_stats(struct rtioreq_vm *vm, struct rtioreq_vm_stats *final);

/**
 * rtioreq_vm_upcall() - the hypervisor's upcall interrupt for this VM: wake the
 * dispatcher to scan its fallback slots. Context: async-signal-safe, any thread.
 * Never blocks (an atomic add and a futex wake). No error.
 * Equivalent to the hypervisor side ringing the channel's upcall_seq.
 */
void rtioreq_vm_upcall(struct rtioreq_vm *vm);

/**
 * rtioreq_vm_clear() - VM reset (ACRN's CLEAR_VM_IOREQ): while it runs, requests of
 * this VM complete at once (reads all ones, counted as cleared); it waits up to
 * \p timeout_ms for requests already taken to finish, then force-completes those held by
 * client threads or blocking clients: their late rtioreq_client_complete() returns
 * -ENOENT and writes nothing, even if a later request of the same slot is outstanding
 * (each take has its own identity, rtioreq_req.tag: test_late_completion_rejected).
 * Requests handled inline by a poller or the dispatcher always finish on their own
 * (handlers are non-blocking by contract) and are never forced. Other VMs are not
 * affected.
 * Context: not on a poller. Blocks: up to \p timeout_ms, then briefly for a waiter that
 * is between taking a request and claiming it (it sleeps, it does not spin).
 * Concurrently with rtioreq_vm_detach() of the same VM: a clear that began first
 * finishes before the detach lets go of the VM; one that begins after returns -ENODEV
 * (no call may start once the detach returned: the handle is invalid;
 * test_clear_serialised_with_detach).
 * Return: number of requests force-completed (>= 0), -ENODEV (detaching), or -EDEADLK.
 */
int rtioreq_vm_clear(struct rtioreq_vm *vm, unsigned int timeout_ms);

/**
 * rtioreq_vm_raise_irq() - for device models: raise a guest interrupt through the
 * hypervisor's ops. Context: any thread; blocks as long as ops->raise_irq does.
 * Return: what ops->raise_irq returns, or -ENOSYS (no such op).
 */
int rtioreq_vm_raise_irq(struct rtioreq_vm *vm, uint32_t irq, uint32_t level);

/** The channel page in use (shared, or the engine's private one). Any thread; no
 * blocking; no error. */
struct rtioreq_chan *rtioreq_vm_chan(struct rtioreq_vm *vm);

/**
 * Per-VM counters, summed over slots. Each request taken from PENDING counts once in
 * `dispatched` and, when its COMPLETE is stored, once in `completed` and once in
 * exactly one of `polled` / `fallback`. A request a dead engine left PROCESSING and
 * this one completed at attach (rtioreq_vm_attr.takeover) counts in `abandoned`,
 * `completed` and `fallback`, not in `dispatched`: once a VM is detached, completed =
 * dispatched + abandoned. The other counters classify requests.
 */
struct rtioreq_vm_stats {
	uint64_t dispatched;	 /**< taken from PENDING */
	uint64_t completed;	 /**< COMPLETE stored */
	uint64_t polled;	 /**< ... by a poller running the handler inline */
	uint64_t fallback;	 /**< ... by the dispatcher (also running a handler inline), a
				  * client thread or a control call */
	uint64_t handler_errors; /**< handler returned < 0 */
	uint64_t invalid;	 /**< slot contents failed validation */
	uint64_t unclaimed;	 /**< no range matched and no default client */
	uint64_t cleared;	 /**< completed at once during clear/detach */
	uint64_t forced;	 /**< force-completed by clear/destroy after the bound */
	uint64_t notified;	 /**< completion notifications sent */
	uint64_t abandoned;	 /**< left PROCESSING by a dead engine, completed at takeover */
	uint64_t reserved[15]; /**< zero; new fields come from here (rtioreq/common.h) */
};
/** Any thread, never blocks (relaxed loads: each counter may be one request behind). */
void rtioreq_vm_stats(struct rtioreq_vm *vm, struct rtioreq_vm_stats *out);

/**
 * rtioreq_vm_hist() - the engine-side service time of \p vm's requests (attached with
 * RTIOREQ_VM_HIST in rtioreq_vm_attr.flags), summed over its slots into \p out.
 *
 * What is measured, per request, in ns of CLOCK_MONOTONIC: from the moment its taker
 * (a poller, the dispatcher, or a detach's last sweep) saw the slot PENDING and
 * starts the snapshot, to the moment just before the engine stores COMPLETE (after
 * the handler ran and the value was written back). It is the engine's service time,
 * not the guest's round trip: the time the request spent PENDING before a taker saw
 * it (poller loop, upcall and dispatcher wake-up) and the completion notification are
 * outside it. Every request taken from PENDING is recorded exactly once, whichever
 * path completes it (inline handler, client thread, rtioreq_client_complete(), a
 * clear's or teardown's force, invalid, unclaimed): once the VM is idle, `count`
 * equals rtioreq_vm_stats().dispatched. Requests a dead engine left behind
 * (rtioreq_vm_attr.takeover, counted `abandoned`) are not: this engine never saw them
 * PENDING.
 *
 * Consistency: each slot's histogram has one writer at a time (whoever completes that
 * slot's request) and is read with atomic loads, so no bucket is ever torn. A read
 * taken while requests complete may be a few requests behind; `count` is the sum of
 * the buckets read, and `min`/`max` cover every value counted (each bucket is
 * published after them, release/acquire); `sum` and `overflow` may already include a
 * request whose bucket was not yet read. There is no reset: for an interval, read twice and
 * subtract the buckets and counts.
 *
 * Context: any thread, including a handler; never blocks, takes no lock, allocates
 * nothing (\p out is the caller's: sizeof(struct rtioreq_hist), about 18 KiB).
 * Valid until the VM is detached.
 * Return: 0; -EINVAL (\p vm or \p out NULL); -ENODATA (the VM was attached without
 * RTIOREQ_VM_HIST).
 */
int rtioreq_vm_hist(struct rtioreq_vm *vm, struct rtioreq_hist *out);

/* ------------------------------------------------------------------------- */
/* Clients and ranges */

/** A client to create (zero-initialise; see rtioreq/common.h). */
struct rtioreq_client_attr {
	const char *name; /**< at most RTIOREQ_NAME_LEN-1 chars used */
	/**
	 * NULL: a blocking client, served by your threads through rtioreq_client_wait()
	 * and rtioreq_client_complete() (ATTACH_IOREQ_CLIENT / NOTIFY_REQUEST_FINISH).
	 * Otherwise the taker calls it inline: a poller, or on the fallback path the
	 * dispatcher (upcall -> dispatcher -> completion: two thread wake-ups per request,
	 * as a raw futex ping-pong), at the dispatcher's CPU and priority
	 * (rtioreq_engine_attr.dispatcher). See rtioreq_handler_fn for the contract.
	 */
	rtioreq_handler_fn handler;
	void *priv;	 /**< passed to the handler */
	bool is_default; /**< serves accesses that match no range (one per VM) */
	/** handler thread's placement; not NULL implies handler_thread (a thread is
	 *  asked for). NULL: a handler_thread client uses rtioreq_engine_attr.clients */
	const struct rtioreq_thread_attr *thread;
	/**
	 * With a handler: the handler may block on the fallback path, so it runs there on
	 * a handler thread of this client's own (started by rtioreq_client_create(), at
	 * \p thread), not inline on the dispatcher: upcall -> dispatcher -> client thread
	 * -> completion, one more wake-up; clear, destroy and detach wait for or force
	 * its requests as for a blocking client. Pollers still call the handler inline.
	 * Implied by a non-NULL \p thread. Ignored without a handler.
	 */
	bool handler_thread;
	uint64_t reserved[3]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/**
 * rtioreq_client_create() - add a client to a VM. Requests keep flowing.
 * Context: any thread (a handler thread is started for a handler_thread client).
 * Blocks: only for that thread start.
 * Return: the client, or NULL with errno: EINVAL, EEXIST (a default client exists),
 * ENODEV (VM detaching), ENOMEM, or pthread_create's error.
 */
struct rtioreq_client *rtioreq_client_create(struct rtioreq_vm *vm,
					     const struct rtioreq_client_attr *attr);

/**
 * rtioreq_client_shutdown() - stop routing to \p client: its ranges (or its default role)
 * are withdrawn, and once what was already assigned to it is handed out,
 * rtioreq_client_wait() returns -ENODEV. Idempotent.
 * Context: not on a poller. Blocks: one grace period.
 * Return: 0, or -EDEADLK.
 */
int rtioreq_client_shutdown(struct rtioreq_client *client);

/**
 * rtioreq_client_destroy() - shutdown, then finish everything assigned to it: a
 * request whose handler runs inline (a poller, the dispatcher) finishes first (the
 * destroy waits for a grace period, test_destroy_during_inline_fallback); a handler
 * thread drains its requests and is joined; a blocking client gets
 * RTIOREQ_CLEAR_TIMEOUT_MS for its outstanding requests, then they are force-completed
 * and threads blocked in rtioreq_client_wait() return -ESHUTDOWN. Nothing is lost or
 * completed twice; other clients and VMs are not paused. This releases the owner's
 * handle: no new call on \p client may start after it returns, except from a thread
 * that has waited on it: a thread that still holds a request taken from it may (and
 * must) call rtioreq_client_complete() for it (-ENOENT if it was forced), and a thread
 * that called rtioreq_client_wait() on it keeps it alive until that thread waits on
 * another client or exits, so its next wait returns -ESHUTDOWN (the usual wait/complete
 * loop may run into a destroy at any point: torture -s late,destroy-held). The client
 * is freed when the last of these lets go (test_destroy_with_held_request). On a
 * client whose VM was detached (or is being detached) it only releases the handle.
 * Context: not on a poller; not on \p client's own handler thread.
 * Blocks: a grace period, the handler thread's join or the blocking bound.
 * Return: 0; -EDEADLK; -EBUSY (the handle was already released).
 */
int rtioreq_client_destroy(struct rtioreq_client *client);

/**
 * rtioreq_client_wait() - blocking clients: take the next request assigned to \p client.
 * Every request it returns must be passed to rtioreq_client_complete() exactly once
 * (that lets go of it, also when it was forced meanwhile).
 * Context: not on a poller; any number of threads may wait on one client.
 * Blocks: until a request is assigned or the client shuts down or is torn down.
 * Return: 0 with *req filled; -ENODEV (shut down and drained); -ESHUTDOWN (destroyed,
 * or its VM detached: also for a thread blocked in it at the time,
 * test_detach_with_held_request); -EINVAL (handler client); -EDEADLK (on a poller).
 */
int rtioreq_client_wait(struct rtioreq_client *client, struct rtioreq_req *req);

/**
 * rtioreq_client_complete() - finish a request taken with rtioreq_client_wait():
 * writes req->value back for reads (all ones if \p status < 0), stores COMPLETE and
 * notifies the hypervisor if it asked for that. The request is identified by req->tag
 * (with req->vcpu), which must be as rtioreq_client_wait() returned it.
 * Context: any thread, including after the client was destroyed, its VM detached or
 * its engine destroyed while the request was held. Never blocks (beyond
 * ops->notify_finish); a completion that finds its request no longer claimed (forced,
 * already completed, stale) takes a per-client priority-inheritance lock, held
 * briefly by such completers and by a concurrent force (see "Call contexts" for
 * ENOMEM); so never complete a request that a handler is serving inline.
 * Return: 0; -ENOENT if that request is not outstanding for this client (force-
 * completed by a clear, destroy or detach, already completed, or never taken): nothing
 * is written then, and no later request of the same slot is touched
 * (test_late_completion_rejected); a second completion of the same request touches
 * nothing at all (test_double_complete_touches_nothing).
 */
int rtioreq_client_complete(struct rtioreq_client *client, const struct rtioreq_req *req,
			    int status);

/** Any thread, never blocks. */
const char *rtioreq_client_name(const struct rtioreq_client *client);

/**
 * rtioreq_range_add() - route accesses of \p type (RTIOREQ_TYPE_PORTIO or _MMIO) that lie
 * wholly inside [\p start, \p end] (inclusive) to \p client. Published to pollers and the
 * dispatcher without stopping them (copy-on-write table, RCU); the next request
 * taken sees it; the old table is freed after a grace period by the RCU worker, never
 * waited for on the caller's thread. O(n) for the update, O(log n) per lookup.
 * Context: any thread, including a handler of this or any client, on a poller or on
 * the dispatcher or a client thread (test_handler_moves_range_polled/_fallback/
 * _fallback_thread), and an embedder's
 * liburcu-qsbr thread online or offline (test_qsbr_embedder_thread).
 * Blocks: never (the VM's range mutex, held only for the O(n) copy).
 * Return: 0; -EINVAL (bad type, start > end, port above 0xffff, default client);
 * -EEXIST (overlaps a range of any client of this VM; the message-worthy detail is
 * available from rtioreq_range_conflict()); -ENODEV (client shut down, VM detaching);
 * -ENOMEM.
 */
int rtioreq_range_add(struct rtioreq_client *client, uint32_t type, uint64_t start,
		      uint64_t end);

/**
 * rtioreq_range_del() - remove exactly [\p start, \p end] of \p type from \p client; the next
 * request taken no longer sees it. Context and blocking: as rtioreq_range_add().
 * Return: 0, -ENOENT (no such range of \p client), -ENODEV (VM detaching), -ENOMEM.
 */
int rtioreq_range_del(struct rtioreq_client *client, uint32_t type, uint64_t start,
		      uint64_t end);

/**
 * rtioreq_range_conflict() - which range of \p vm overlaps [\p start, \p end] of \p type.
 * Context and blocking: as rtioreq_range_add().
 * Return: 1 and fills the outputs (owner name copied, RTIOREQ_NAME_LEN bytes), or 0
 * (also while the VM is detaching).
 */
int rtioreq_range_conflict(struct rtioreq_vm *vm, uint32_t type, uint64_t start,
			   uint64_t end, uint64_t *other_start, uint64_t *other_end,
			   char *owner);

/* ------------------------------------------------------------------------- */
/* Pollers: the polling path */

/**
 * rtioreq_poller_create() - start a polling thread with its CPU affinity and policy set
 * before it runs. It serves the slots assigned with rtioreq_vm_set_poller().
 * Context: any thread. Blocks: until the thread runs (for rtioreq_poller_tid()).
 * Return: the poller or NULL with errno (EINVAL bad CPU/policy/priority, EPERM, ...).
 */
struct rtioreq_poller *rtioreq_poller_create(struct rtioreq_engine *eng,
					     const struct rtioreq_thread_attr *attr);

/**
 * rtioreq_poller_destroy() - give the poller's slots back to the fallback path (all of
 * them across one grace period), stop and join it.
 * Context: not on a poller (any poller: it waits for a grace period).
 * Blocks: a grace period, the join. Return: 0, or -EDEADLK.
 */
int rtioreq_poller_destroy(struct rtioreq_poller *poller);

/**
 * rtioreq_vm_set_poller() - move slot \p vcpu of \p vm to \p poller (NULL: back to the
 * fallback path). Ownership changes hands across an RCU grace period, so the old and
 * the new owner never serve the slot at the same time; a request pending meanwhile is
 * served by the new owner.
 * Context: not on a poller. Blocks: one grace period (under this VM's placement mutex
 * only: other VMs' calls and this VM's range updates do not wait for it).
 * Return: 0, -EINVAL (vcpu, or a poller of another engine), -ENODEV (VM detaching),
 * -EDEADLK, -ENOMEM (the slot then stays on the fallback path).
 */
int rtioreq_vm_set_poller(struct rtioreq_vm *vm, uint16_t vcpu,
			  struct rtioreq_poller *poller);

/** Kernel thread id of the poller (for taskset/chrt/strace/perf). Any thread. */
pid_t rtioreq_poller_tid(const struct rtioreq_poller *poller);

/** Counters of one poller. */
struct rtioreq_poller_stats {
	uint64_t loops;	 /**< passes over the slot set */
	uint64_t served; /**< requests taken */
	uint64_t sleeps; /**< hybrid idle: times it slept (each ended by a wake-up) */
	uint64_t reserved[5]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/**
 * rtioreq_poller_set_idle() - idle strategy. \p spin_ns 0: spin (default): the lowest
 * latency, a full CPU. Otherwise hybrid: after \p spin_ns without a request the poller
 * sets the need_wakeup bits of its slots in their channels, re-checks its slots after
 * a full barrier and sleeps until the hypervisor rings the upcall doorbell (it does so
 * for a slot whose need_wakeup bit it sees after its PENDING store), a slot is moved
 * to or from it, or it is destroyed (io_uring SQPOLL's NEED_WAKEUP handshake,
 * docs/shm-protocol.md). No wake-up is lost. Any thread, never blocks; takes effect at
 * once.
 */
void rtioreq_poller_set_idle(struct rtioreq_poller *poller, uint64_t spin_ns);
/** Any thread, never blocks (relaxed loads). */
void rtioreq_poller_stats(const struct rtioreq_poller *poller, struct rtioreq_poller_stats *out);

RTIOREQ_END_DECLS

#endif /* RTIOREQ_ENGINE_H */
