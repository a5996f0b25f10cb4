/* SPDX-License-Identifier: MIT */
/*
 * The only place rtioreq touches liburcu (QSBR flavour).
 *
 * Pointers to RCU-protected objects (VM range maps, poller slot sets, the dispatcher's
 * VM set) are published with atomic_store_explicit(release) and read with
 * atomic_load_explicit(acquire) by the readers; liburcu provides the grace periods:
 * readers (pollers, the dispatcher) are registered QSBR threads that report a
 * quiescent state once per loop and go offline before they block, so an object
 * unpublished before a grace period is no longer referenced after it.
 *
 * ThreadSanitizer does not see the ordering a grace period provides (liburcu's
 * counters use plain accesses and fences). Under TSan, readers release a sync token at
 * each quiescent state and before going offline, and updaters acquire it after a grace
 * period, which states exactly the happens-before a grace period guarantees.
 */
#ifndef RTIOREQ_RCU_PVT_H
#define RTIOREQ_RCU_PVT_H

#define _LGPL_SOURCE
#include <urcu-qsbr.h>
#include <urcu/call-rcu.h>
#include <stdbool.h>

#if defined(__SANITIZE_THREAD__)
#define RTIOREQ__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RTIOREQ__TSAN 1
#endif
#endif

#ifdef RTIOREQ__TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char rtioreq__rcu_tsan_token;
#define RTIOREQ__GP_RELEASE() __tsan_release(&rtioreq__rcu_tsan_token)
#define RTIOREQ__GP_ACQUIRE() __tsan_acquire(&rtioreq__rcu_tsan_token)
#else
#define RTIOREQ__GP_RELEASE() ((void)0)
#define RTIOREQ__GP_ACQUIRE() ((void)0)
#endif

/* True on the engine's own readers (pollers, dispatcher), set by rtioreq__rcu_register(). */
extern __thread bool rtioreq__rcu_reader;

/* Reader threads (pollers, dispatcher): register once, at thread start. Online after. */
static inline void rtioreq__rcu_register(void)
{
	urcu_qsbr_register_thread();
	rtioreq__rcu_reader = true;
}

static inline void rtioreq__rcu_unregister(void)
{
	RTIOREQ__GP_RELEASE();
	rtioreq__rcu_reader = false;
	urcu_qsbr_unregister_thread();
}

/*
 * True if the calling thread is one of the engine's RCU readers (a poller or the
 * dispatcher, so also any handler running inline on a poller): a grace-period wait
 * there would wait for the caller itself, and the objects it reads (its slot set, the
 * request it serves) must not be reclaimed under it. Such calls return -EDEADLK.
 * An embedder's own liburcu-qsbr thread is not one: liburcu takes it offline for the
 * duration of a grace-period wait.
 */
static inline bool rtioreq__rcu_is_reader(void)
{
	return rtioreq__rcu_reader;
}

/* Reader: no RCU-protected pointer read before this call is used after it. */
static inline void rtioreq__rcu_quiescent(void)
{
	RTIOREQ__GP_RELEASE();
	urcu_qsbr_quiescent_state();
}

/* Reader: about to block; holds no RCU-protected pointer until rtioreq__rcu_online(). */
static inline void rtioreq__rcu_offline(void)
{
	RTIOREQ__GP_RELEASE();
	urcu_qsbr_thread_offline();
}

static inline void rtioreq__rcu_online(void)
{
	urcu_qsbr_thread_online();
}

/*
 * Updater: wait until every reader passed a quiescent state. Never call it from one of
 * the engine's readers (rtioreq__rcu_is_reader()): it would wait for itself. From an
 * embedder's online QSBR thread, liburcu takes the caller offline while it waits.
 */
static inline void rtioreq__rcu_synchronize(void)
{
	urcu_qsbr_synchronize_rcu();
	RTIOREQ__GP_ACQUIRE();
}

/* Deferred reclamation: embed this in the object. */
struct rtioreq__rcu_head {
	struct rcu_head head;
	void (*fn)(struct rtioreq__rcu_head *h);
};

void rtioreq__rcu_call(struct rtioreq__rcu_head *h, void (*fn)(struct rtioreq__rcu_head *h));

/*
 * The process's pinned call_rcu worker. Every engine takes a use at create and lets go
 * at destroy (after a barrier), whatever its rcu.cpu: the worker serves every engine of
 * the process. get: @cpu >= 0 creates the worker on that CPU if there is none yet (a
 * later engine's different CPU is not applied; @cpu < 0: liburcu's default worker
 * until one asks). It is freed when the last engine goes. Return 0 or -errno.
 */
int rtioreq__rcu_worker_get(int cpu);
void rtioreq__rcu_worker_put(void);

/* Wait until every callback queued by rtioreq__rcu_call() so far has run. */
void rtioreq__rcu_barrier(void);

#endif /* RTIOREQ_RCU_PVT_H */
