/* SPDX-License-Identifier: MIT */
/*
 * rtioreq engine: VMs (attached slot pages), clients and their address ranges,
 * pollers (the polling path) and the dispatcher (the fallback path).
 *
 * Errors: control-plane calls return 0 or a negative errno; constructors return NULL
 * and set errno. Handlers and the hot path never touch errno.
 *
 * Threads: every control-plane call (attach/detach, client create/destroy, range
 * add/del, poller assignment) may be made from any thread that is not a poller, a
 * handler or the dispatcher, concurrently with requests flowing; they may block for an
 * RCU grace period. Calls on one VM's control plane are serialised by a per-VM mutex;
 * calls on different VMs never wait for each other.
 */
#ifndef RTIOREQ_ENGINE_H
#define RTIOREQ_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "rtioreq/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RTIOREQ_MAX_VMS 64 /* per engine; bounded by futex_waitv's 128 waiters */
#define RTIOREQ_NAME_LEN 16
/* bound for a blocking client's outstanding requests when it is destroyed (also by
 * detach) before they are force-completed */
#define RTIOREQ_CLEAR_TIMEOUT_MS 100

struct rtioreq_engine;
struct rtioreq_vm;
struct rtioreq_client;
struct rtioreq_poller;

/*
 * A validated private copy of one slot's request: what handlers see. Handlers never
 * see the shared page; the engine writes `value` back for reads.
 */
struct rtioreq_req {
	uint32_t type;	    /* RTIOREQ_TYPE_PORTIO / _MMIO / _PCICFG */
	uint32_t dir;	    /* RTIOREQ_DIR_READ / _WRITE */
	uint64_t addr;	    /* port, guest-physical address, or PCI config register */
	uint32_t size;	    /* bytes: 1, 2, 4 (PIO, PCICFG) or 1, 2, 4, 8 (MMIO) */
	uint16_t vcpu;	    /* slot index */
	uint16_t vm_id;	    /* rtioreq_vm_attr.id */
	uint64_t value;	    /* write: data (masked to size); read: handler fills it */
	uint8_t bus, dev, func; /* PCICFG only */
	uint8_t completion_polling; /* as read once from the slot */
	/* opaque identity of this take (a per-slot generation): rtioreq_client_complete()
	 * claims the request by it, so a stale completion never reaches a later request */
	uint64_t tag;
};

/*
 * Handler: serve one request. Called on a poller (the polling path: it must not block,
 * sleep or take locks another thread may hold for long) or on the client's own handler
 * thread (the fallback path). For reads, set req->value (the engine masks it to size).
 * Return 0, or a negative errno: the request is then completed anyway, a read returns
 * all ones, and the VM's handler_errors counter grows.
 */
typedef int (*rtioreq_handler_fn)(struct rtioreq_client *client, struct rtioreq_req *req,
				  void *priv);

/*
 * Placement and scheduling of an engine thread. Zero-initialised = CPU 0, SCHED_OTHER;
 * RTIOREQ_THREAD_ATTR_DEFAULT = unpinned SCHED_OTHER.
 */
struct rtioreq_thread_attr {
	int cpu;      /* CPU to pin to (set before the thread starts), or -1 */
	int policy;   /* SCHED_OTHER, SCHED_FIFO or SCHED_RR */
	int priority; /* 1..99 for FIFO/RR, 0 otherwise */
	const char *name; /* thread name, at most 15 chars used; NULL: a default */
};
#define RTIOREQ_THREAD_ATTR_DEFAULT { .cpu = -1 }

/* ------------------------------------------------------------------------- */
/* Engine */

struct rtioreq_engine_attr {
	struct rtioreq_thread_attr dispatcher; /* the fallback path's dispatcher thread */
	struct rtioreq_thread_attr clients;    /* default for client handler threads */
	/*
	 * liburcu's call_rcu worker, which frees replaced range tables and slot sets after
	 * grace periods: only .cpu is used. Put it on a housekeeping CPU, never a poller's
	 * (unpinned, it wakes on any CPU and preempts a SCHED_OTHER poller). One worker per
	 * process: the first engine created with .cpu >= 0 places it, later ones share it.
	 */
	struct rtioreq_thread_attr rcu;
};

/*
 * rtioreq_engine_create() - start an engine and its dispatcher thread.
 * @attr: may be NULL for defaults.
 * Return: the engine, or NULL with errno set (EINVAL bad attr, EPERM scheduling
 * refused, ENOMEM, or the error of pthread_create).
 */
struct rtioreq_engine *rtioreq_engine_create(const struct rtioreq_engine_attr *attr);

/*
 * rtioreq_engine_destroy() - detach every VM (completing what is in flight), stop and
 * join every poller, client thread and the dispatcher, wait for deferred frees.
 * May block. No other call on this engine may run concurrently or follow.
 */
void rtioreq_engine_destroy(struct rtioreq_engine *eng);

/* ------------------------------------------------------------------------- */
/* VMs */

/*
 * Operations of the hypervisor side for one VM. All optional.
 * @notify_finish: vCPU @vcpu's request is COMPLETE and it asked for a notification
 *	(completion_polling was 0): the "finish hypercall". NULL: the engine uses the
 *	channel's done_seq futex word (docs/shm-protocol.md). Called from the thread
 *	that completed the request (poller, client thread or control thread).
 * @raise_irq: for device models: assert (level 1) / deassert (0) guest interrupt @irq.
 *	Return 0 or -errno. NULL: rtioreq_vm_raise_irq() returns -ENOSYS.
 * @slot_polled: the engine starts (true) or stops (false) polling slot @vcpu; the
 *	channel's polled_mask is updated either way.
 */
struct rtioreq_vm_ops {
	void (*notify_finish)(void *hv, uint16_t vcpu);
	int (*raise_irq)(void *hv, uint32_t irq, uint32_t level);
	void (*slot_polled)(void *hv, uint16_t vcpu, bool polled);
};

struct rtioreq_vm_attr {
	uint16_t id;	   /* the VM's id (reported in requests and stats) */
	uint16_t vcpu_num; /* 1..16: slots the engine serves */
	struct rtioreq_io_request_buffer *page; /* not owned; must outlive the VM */
	struct rtioreq_chan *chan; /* shared channel page, or NULL for a private one */
	const struct rtioreq_vm_ops *ops; /* may be NULL */
	void *hv;		       /* passed to ops */
	/*
	 * Serve nothing until rtioreq_vm_start(): create the clients and ranges and place
	 * the slots first, so that no request of a running hypervisor reaches a VM with
	 * half its devices (a write taken by nobody would be lost to the device).
	 */
	bool paused;
};

/*
 * rtioreq_vm_attach() - serve a slot page. All slots start on the fallback path.
 * Slots found PENDING at attach are served (the dispatcher is kicked); with
 * attr->paused, only from rtioreq_vm_start() on.
 * Return: the VM, or NULL with errno: EINVAL (vcpu_num, page or a channel whose magic,
 * version or vcpu_num does not match), EEXIST (id in use), ENOSPC (RTIOREQ_MAX_VMS).
 */
struct rtioreq_vm *rtioreq_vm_attach(struct rtioreq_engine *eng,
				     const struct rtioreq_vm_attr *attr);

/*
 * rtioreq_vm_detach() - stop serving a VM: new requests complete at once (reads all
 * ones), its slots leave their pollers, every client is destroyed (see
 * rtioreq_client_destroy()), any PENDING slot is completed. May block.
 * Return 0. The page is no longer touched when it returns.
 */
/*
 * rtioreq_vm_start() - start serving a VM attached with attr->paused: every slot goes
 * to the poller rtioreq_vm_set_poller() placed it on meanwhile (recorded, not applied,
 * while paused) or to the fallback path; PENDING slots are served. Control thread; may
 * block briefly. Return 0 (also when already started) or -ENODEV (detaching).
 */
int rtioreq_vm_start(struct rtioreq_vm *vm);

int rtioreq_vm_detach(struct rtioreq_vm *vm);

/*
 * rtioreq_vm_upcall() - the hypervisor's upcall interrupt for this VM: wake the
 * dispatcher to scan its fallback slots. Async-signal-safe, any thread, never blocks.
 * Equivalent to the hypervisor side ringing the channel's upcall_seq.
 */
void rtioreq_vm_upcall(struct rtioreq_vm *vm);

/*
 * rtioreq_vm_clear() - VM reset (ACRN's CLEAR_VM_IOREQ): while it runs, requests of
 * this VM complete at once (reads all ones, counted as cleared); it waits up to
 * @timeout_ms for requests already taken to finish, then force-completes those held by
 * client threads or blocking clients (a late completion by their handler is dropped).
 * Requests handled inline by a poller always finish on their own (handlers on the
 * polling path are non-blocking by contract). Other VMs are not affected. May block.
 * Return: number of requests force-completed (>= 0), or -errno.
 */
int rtioreq_vm_clear(struct rtioreq_vm *vm, unsigned int timeout_ms);

/* For device models: raise a guest interrupt through the hypervisor's ops. */
int rtioreq_vm_raise_irq(struct rtioreq_vm *vm, uint32_t irq, uint32_t level);

/* The channel page in use (shared, or the engine's private one). */
struct rtioreq_chan *rtioreq_vm_chan(struct rtioreq_vm *vm);

/*
 * Per-VM counters, summed over slots. Each request taken from PENDING counts once in
 * `dispatched` and, when its COMPLETE is stored, once in `completed` and once in
 * exactly one of `polled` / `fallback`. The other counters classify requests.
 */
struct rtioreq_vm_stats {
	uint64_t dispatched;	 /* taken from PENDING */
	uint64_t completed;	 /* COMPLETE stored */
	uint64_t polled;	 /* ... by a poller running the handler inline */
	uint64_t fallback;	 /* ... by the dispatcher, a client thread or a control call */
	uint64_t handler_errors; /* handler returned < 0 */
	uint64_t invalid;	 /* slot contents failed validation */
	uint64_t unclaimed;	 /* no range matched and no default client */
	uint64_t cleared;	 /* completed at once during clear/detach */
	uint64_t forced;	 /* force-completed by clear/destroy after the bound */
	uint64_t notified;	 /* completion notifications sent */
};
void rtioreq_vm_stats(struct rtioreq_vm *vm, struct rtioreq_vm_stats *out);

/* ------------------------------------------------------------------------- */
/* Clients and ranges */

struct rtioreq_client_attr {
	const char *name; /* at most RTIOREQ_NAME_LEN-1 chars used */
	/*
	 * NULL: a blocking client, served by your threads through rtioreq_client_wait()
	 * and rtioreq_client_complete() (ATTACH_IOREQ_CLIENT / NOTIFY_REQUEST_FINISH).
	 * Otherwise: pollers call it inline; on the fallback path the engine's handler
	 * thread for this client calls it.
	 */
	rtioreq_handler_fn handler;
	void *priv;
	bool is_default; /* serves accesses that match no range (one per VM) */
	const struct rtioreq_thread_attr *thread; /* handler thread; NULL: engine default */
};

/*
 * rtioreq_client_create() - add a client to a VM. Requests keep flowing.
 * Return: the client, or NULL with errno: EINVAL, EEXIST (a default client exists),
 * ENODEV (VM detaching), ENOMEM, or pthread_create's error.
 */
struct rtioreq_client *rtioreq_client_create(struct rtioreq_vm *vm,
					     const struct rtioreq_client_attr *attr);

/*
 * rtioreq_client_shutdown() - stop routing to @client: its ranges (or its default role)
 * are withdrawn, and once what was already assigned to it is handed out,
 * rtioreq_client_wait() returns -ENODEV. Idempotent. May block (grace period).
 */
int rtioreq_client_shutdown(struct rtioreq_client *client);

/*
 * rtioreq_client_destroy() - shutdown, then finish everything assigned to it: a handler
 * thread drains its requests and is joined; a blocking client gets
 * RTIOREQ_CLEAR_TIMEOUT_MS for its outstanding requests, then they are force-completed.
 * Nothing is lost or completed twice; other clients and VMs are not paused.
 * For a blocking client, call it once none of your threads is inside or between
 * rtioreq_client_wait() and rtioreq_client_complete() for it (after wait returned
 * -ENODEV). May block. Return 0, or -EBUSY if VM detach is already destroying it.
 */
int rtioreq_client_destroy(struct rtioreq_client *client);

/*
 * rtioreq_client_wait() - blocking clients: take the next request assigned to @client.
 * Blocks until one is assigned or the client shuts down.
 * Return: 0 with *req filled, -ENODEV (shut down and drained), -EINVAL (handler client).
 */
int rtioreq_client_wait(struct rtioreq_client *client, struct rtioreq_req *req);

/*
 * rtioreq_client_complete() - finish a request taken with rtioreq_client_wait():
 * writes req->value back for reads (all ones if @status < 0), stores COMPLETE and
 * notifies the hypervisor if it asked for that.
 * Return: 0; -ENOENT if that request is not outstanding for this client (already
 * force-completed, or never taken): nothing is written then.
 */
int rtioreq_client_complete(struct rtioreq_client *client, const struct rtioreq_req *req,
			    int status);

const char *rtioreq_client_name(const struct rtioreq_client *client);

/*
 * rtioreq_range_add() - route accesses of @type (RTIOREQ_TYPE_PORTIO or _MMIO) that lie
 * wholly inside [@start, @end] (inclusive) to @client. Published to pollers and the
 * dispatcher without stopping them (copy-on-write table, RCU); O(n) for the update,
 * O(log n) per lookup.
 * Return: 0; -EINVAL (bad type, start > end, port above 0xffff, default client);
 * -EEXIST (overlaps a range of any client of this VM; the message-worthy detail is
 * available from rtioreq_range_conflict()); -ENODEV (client shut down); -ENOMEM.
 */
int rtioreq_range_add(struct rtioreq_client *client, uint32_t type, uint64_t start,
		      uint64_t end);

/* Remove exactly [@start, @end] of @type from @client. Return 0 or -ENOENT. */
int rtioreq_range_del(struct rtioreq_client *client, uint32_t type, uint64_t start,
		      uint64_t end);

/*
 * rtioreq_range_conflict() - which range of @vm overlaps [@start, @end] of @type.
 * Return: 1 and fills the outputs (owner name copied, RTIOREQ_NAME_LEN bytes), or 0.
 */
int rtioreq_range_conflict(struct rtioreq_vm *vm, uint32_t type, uint64_t start,
			   uint64_t end, uint64_t *other_start, uint64_t *other_end,
			   char *owner);

/* ------------------------------------------------------------------------- */
/* Pollers: the polling path */

/*
 * rtioreq_poller_create() - start a polling thread with its CPU affinity and policy set
 * before it runs. It serves the slots assigned with rtioreq_vm_set_poller().
 * Return: the poller or NULL with errno (EINVAL bad CPU/policy/priority, EPERM, ...).
 */
struct rtioreq_poller *rtioreq_poller_create(struct rtioreq_engine *eng,
					     const struct rtioreq_thread_attr *attr);

/* Give the poller's slots back to the fallback path, stop and join it. May block. */
int rtioreq_poller_destroy(struct rtioreq_poller *poller);

/*
 * rtioreq_vm_set_poller() - move slot @vcpu of @vm to @poller (NULL: back to the
 * fallback path). Ownership changes hands across an RCU grace period, so the old and
 * the new owner never serve the slot at the same time; a request pending meanwhile is
 * served by the new owner. Return 0, -EINVAL (vcpu), -ENODEV (VM detaching),
 * -ENOMEM (the slot then stays on the fallback path).
 */
int rtioreq_vm_set_poller(struct rtioreq_vm *vm, uint16_t vcpu,
			  struct rtioreq_poller *poller);

/* Kernel thread id of the poller (for taskset/chrt/strace/perf). */
pid_t rtioreq_poller_tid(const struct rtioreq_poller *poller);

struct rtioreq_poller_stats {
	uint64_t loops;	 /* passes over the slot set */
	uint64_t served; /* requests taken */
	uint64_t sleeps; /* hybrid idle: times it slept (each ended by a wake-up) */
};

/*
 * rtioreq_poller_set_idle() - idle strategy. @spin_ns 0: spin (default): the lowest
 * latency, a full CPU. Otherwise hybrid: after @spin_ns without a request the poller
 * sets the need_wakeup bits of its slots in their channels, re-checks its slots after
 * a full barrier and sleeps until the hypervisor rings the upcall doorbell (it does so
 * for a slot whose need_wakeup bit it sees after its PENDING store), a slot is moved
 * to or from it, or it is destroyed (io_uring SQPOLL's NEED_WAKEUP handshake,
 * docs/shm-protocol.md). No wake-up is lost. Any thread; takes effect at once.
 */
void rtioreq_poller_set_idle(struct rtioreq_poller *poller, uint64_t spin_ns);
void rtioreq_poller_stats(const struct rtioreq_poller *poller, struct rtioreq_poller_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* RTIOREQ_ENGINE_H */
