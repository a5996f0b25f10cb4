/* SPDX-License-Identifier: MIT */
/**
 * Events an embedder can hook: what the engine otherwise only counts (invalid, unclaimed,
 * handler errors, forced, cleared), slots moving between takers and pollers going to
 * sleep, delivered to a callback on a thread of their own.
 *
 * How it stays off the polling path: pollers and the dispatcher do nothing new. They keep
 * incrementing their single-writer counters (struct rtioreq__slot_stats, the pollers'
 * sleeps); the events thread, a normal SCHED_OTHER thread, compares them with what it saw
 * one period earlier and calls the callback for each difference. So the hot path stays at
 * zero syscalls, zero locks and zero stores beyond the counters it always had
 * (tests/core/test_hotpath.c), and a slow callback delays only the next comparison.
 * Rate limit: one event per (kind, VM, vCPU) or (kind, poller) per period, carrying how
 * many happened; at most \p max_per_period events per period, the rest summed into one
 * RTIOREQ_EVENT_DROPPED event. A VM detached and attached again, or a poller destroyed
 * and created again, is a new source (even with the same id at the same address): its
 * counts start from what it had when the events thread first saw it
 * (test_reattached_same_address_is_new).
 *
 * The callback runs on the events thread with no engine lock held: it may log, block,
 * and call any control function (attach, detach, ranges, placement), except
 * rtioreq_events_stop() on its own events.
 */
#ifndef RTIOREQ_EVENTS_H
#define RTIOREQ_EVENTS_H

#include <stdint.h>
#include <sys/types.h>

#include "rtioreq/common.h"
#include "rtioreq/core/engine.h"

RTIOREQ_BEGIN_DECLS

/** What an event reports (rtioreq_event_name() names it). */
enum rtioreq_event_kind {
	RTIOREQ_EVENT_INVALID,	     /**< slot contents failed validation (all ones returned) */
	RTIOREQ_EVENT_UNCLAIMED,     /**< no range matched and no default client */
	RTIOREQ_EVENT_HANDLER_ERROR, /**< a handler returned < 0 */
	RTIOREQ_EVENT_FORCED,	     /**< force-completed by clear/destroy after the bound */
	RTIOREQ_EVENT_CLEARED,	     /**< completed at once during clear/detach */
	RTIOREQ_EVENT_SLOT_MOVED,    /**< the slot's taker changed (poller_tid: new one; 0: fallback) */
	RTIOREQ_EVENT_POLLER_SLEPT,  /**< a hybrid poller went to sleep (and woke) \p count times */
	RTIOREQ_EVENT_DROPPED,	     /**< \p count events over max_per_period were not delivered */
};

/** One event: what happened, where, how often. Library-allocated and handed to the
 * callback by pointer only: it may grow at the end (rtioreq/common.h). */
struct rtioreq_event {
	enum rtioreq_event_kind kind; /**< what happened */
	uint16_t vm_id; /**< VM events; 0 otherwise */
	int vcpu;	/**< the slot, or -1 (poller and dropped events) */
	pid_t poller_tid; /**< POLLER_SLEPT: the poller; SLOT_MOVED: the new taker, 0: fallback */
	uint64_t count;	  /**< how many since the previous event of this kind and source */
	uint64_t total;	  /**< how many since the VM was attached / the poller started */
};

/** The event callback: on the events thread, no engine lock held; may call control
 * functions. */
typedef void (*rtioreq_event_fn)(void *ctx, const struct rtioreq_event *ev);

/** Attributes of rtioreq_events_start() (zero-initialise). */
struct rtioreq_events_attr {
	rtioreq_event_fn fn; /**< required */
	void *ctx;	     /**< passed to fn */
	unsigned int period_ms;	     /**< comparison period; 0: 100 ms */
	unsigned int max_per_period; /**< 0: 64 */
	struct rtioreq_thread_attr thread; /**< placement; zero: CPU 0, SCHED_OTHER (use
					    * RTIOREQ_THREAD_ATTR_DEFAULT for unpinned) */
	uint64_t reserved[4]; /**< zero; new fields come from here (rtioreq/common.h) */
};

struct rtioreq_events;

/**
 * rtioreq_events_start() - start delivering \p eng's events to \p attr->fn. Counts already
 * made when it starts are not reported. Control thread; not from a handler.
 * Return: the events object, or NULL with errno (EINVAL, ENOMEM, pthread_create's).
 */
struct rtioreq_events *rtioreq_events_start(struct rtioreq_engine *eng,
					    const struct rtioreq_events_attr *attr);

/**
 * rtioreq_events_stop() - deliver what changed since the last period, stop and join the
 * thread, free \p ev. Call before rtioreq_engine_destroy(). Not from the callback.
 */
void rtioreq_events_stop(struct rtioreq_events *ev);

/** A short name of \p kind ("invalid", "unclaimed", ...). Any thread. */
const char *rtioreq_event_name(enum rtioreq_event_kind kind);

/** Per-client counters (relaxed: may be a request behind). */
struct rtioreq_client_stats {
	uint64_t served;	 /**< requests completed by its handler or its waiters */
	uint64_t handler_errors; /**< of which the handler (or complete's status) said < 0 */
	uint64_t reserved[6]; /**< zero; new fields come from here (rtioreq/common.h) */
};
/** rtioreq_client_stats() - \p client's counters into \p out. Any thread, never blocks. */
void rtioreq_client_stats(const struct rtioreq_client *client, struct rtioreq_client_stats *out);

RTIOREQ_END_DECLS

#endif /* RTIOREQ_EVENTS_H */
