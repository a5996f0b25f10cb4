// SPDX-License-Identifier: MIT
/*
 * Events (include/rtioreq/core/events.h): a normal thread compares the engine's counters
 * with what it saw one period earlier and reports the differences. Pollers and the
 * dispatcher are not involved: the counters are the single-writer relaxed ones they
 * always kept (engine_pvt.h), read here with relaxed loads (a count may show up one
 * period late, never twice: each source's last value is remembered). Slot placement is
 * read from vm->taker_tid[] (relaxed, no lock: never a poller pointer, which
 * rtioreq_poller_destroy() may free under us, nor a lock a slot move holds across a
 * grace period); eng->lock, a leaf, keeps vms[] and pollers while they are read. What
 * was seen is keyed on each object's serial (never reused), not its address, which a
 * re-attached VM or re-created poller may share with its predecessor. The callback
 * runs with no lock held.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/engine_pvt.h"
#include "rtioreq/core/events.h"
#include "sys/hook_pvt.h"
#include "sys/thread_pvt.h"

#define NKINDS 5 /* the counted kinds: INVALID .. CLEARED */
#define MAX_POLLERS_SEEN 64

struct vm_seen {
	uint64_t serial;	/* identity: an address may be reused by a later VM */
	uint16_t id;
	bool mark;
	uint64_t c[RTIOREQ_IO_REQUEST_MAX][NKINDS];
	pid_t owner[RTIOREQ_IO_REQUEST_MAX]; /* taker_tid[] seen; 0: the dispatcher */
};

struct p_seen {
	uint64_t serial; /* identity: an address may be reused by a later poller */
	pid_t tid;
	bool mark;
	uint64_t sleeps;
};

struct rtioreq_events {
	struct rtioreq_engine *eng;
	struct rtioreq_events_attr a;
	pthread_t thread;
	pthread_mutex_t lock; /* stop, with cond */
	pthread_cond_t cond;
	bool stop;
	struct vm_seen vms[RTIOREQ_MAX_VMS];
	unsigned int nvms;
	struct p_seen pl[MAX_POLLERS_SEEN];
	unsigned int npl;
	struct rtioreq_event *q; /* one period's events, max_per_period */
	unsigned int nq;
	uint64_t dropped;
};

static const char *const names[] = {
	"invalid", "unclaimed", "handler error", "forced", "cleared",
	"slot moved", "poller slept", "dropped",
};

const char *rtioreq_event_name(enum rtioreq_event_kind kind)
{
	return (unsigned int)kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "?";
}

static void queue(struct rtioreq_events *ev, const struct rtioreq_event *e)
{
	if (ev->nq < ev->a.max_per_period)
		ev->q[ev->nq++] = *e;
	else
		ev->dropped++;
}

static void slot_counts(const struct rtioreq__slot_stats *s, uint64_t c[NKINDS])
{
	/* relaxed: statistics of single writers, see rtioreq__stat_inc() */
	c[RTIOREQ_EVENT_INVALID] = atomic_load_explicit(&s->invalid, memory_order_relaxed);
	c[RTIOREQ_EVENT_UNCLAIMED] = atomic_load_explicit(&s->unclaimed, memory_order_relaxed);
	c[RTIOREQ_EVENT_HANDLER_ERROR] =
		atomic_load_explicit(&s->handler_errors, memory_order_relaxed);
	c[RTIOREQ_EVENT_FORCED] = atomic_load_explicit(&s->forced, memory_order_relaxed);
	c[RTIOREQ_EVENT_CLEARED] = atomic_load_explicit(&s->cleared, memory_order_relaxed);
}

/* Compare one VM with what was seen; @fresh: just found, remember without reporting. */
static void scan_vm(struct rtioreq_events *ev, struct rtioreq_vm *vm, struct vm_seen *s,
		    bool fresh)
{
	for (uint16_t v = 0; v < vm->vcpu_num; v++) {
		/* relaxed: a report; the tid of the slot's current (or planned) poller */
		pid_t owner = atomic_load_explicit(&vm->taker_tid[v], memory_order_relaxed);
		uint64_t c[NKINDS];

		slot_counts(&vm->slot[v].st, c);
		for (int k = 0; k < NKINDS && !fresh; k++)
			if (c[k] != s->c[v][k])
				queue(ev, &(struct rtioreq_event){
					.kind = (enum rtioreq_event_kind)k, .vm_id = s->id, .vcpu = v,
					.count = c[k] - s->c[v][k], .total = c[k] });
		if (!fresh && owner != s->owner[v])
			queue(ev, &(struct rtioreq_event){
				.kind = RTIOREQ_EVENT_SLOT_MOVED, .vm_id = s->id, .vcpu = v,
				.poller_tid = owner, .count = 1, .total = 1 });
		memcpy(s->c[v], c, sizeof(c));
		s->owner[v] = owner;
	}
}

static void scan(struct rtioreq_events *ev)
{
	struct rtioreq_engine *eng = ev->eng;

	RTIOREQ__HOOK("events.scan", ev);
	ev->nq = 0;
	ev->dropped = 0;
	pthread_mutex_lock(&eng->lock); /* vms[] and pollers stay while we read them */
	for (unsigned int i = 0; i < ev->nvms; i++)
		ev->vms[i].mark = false;
	for (uint32_t i = 0; i < eng->nvms; i++) {
		struct rtioreq_vm *vm = eng->vms[i];
		unsigned int k = 0;

		while (k < ev->nvms && ev->vms[k].serial != vm->serial)
			k++;
		if (k == ev->nvms) { /* new VM (RTIOREQ_MAX_VMS bounds both tables) */
			memset(&ev->vms[k], 0, sizeof(ev->vms[k]));
			ev->vms[k].serial = vm->serial;
			ev->vms[k].id = vm->id;
			ev->nvms++;
			scan_vm(ev, vm, &ev->vms[k], true);
		} else {
			scan_vm(ev, vm, &ev->vms[k], false);
		}
		ev->vms[k].mark = true;
	}
	for (unsigned int i = 0; i < ev->npl; i++)
		ev->pl[i].mark = false;
	for (struct rtioreq_poller *p = eng->pollers; p; p = p->next) {
		/* relaxed: statistics, single writer (the poller) */
		uint64_t n = atomic_load_explicit(&p->sleeps, memory_order_relaxed);
		unsigned int k = 0;

		while (k < ev->npl && ev->pl[k].serial != p->serial)
			k++;
		if (k == ev->npl) {
			if (k == MAX_POLLERS_SEEN)
				continue;
			ev->pl[k] = (struct p_seen){ .serial = p->serial, .tid = rtioreq_poller_tid(p),
						     .sleeps = n };
			ev->npl++;
		} else if (n != ev->pl[k].sleeps) {
			queue(ev, &(struct rtioreq_event){
				.kind = RTIOREQ_EVENT_POLLER_SLEPT, .vcpu = -1,
				.poller_tid = ev->pl[k].tid, .count = n - ev->pl[k].sleeps,
				.total = n });
			ev->pl[k].sleeps = n;
		}
		ev->pl[k].mark = true;
	}
	pthread_mutex_unlock(&eng->lock);
	/* forget what is gone (compact) */
	for (unsigned int i = 0; i < ev->nvms;)
		if (!ev->vms[i].mark)
			ev->vms[i] = ev->vms[--ev->nvms];
		else
			i++;
	for (unsigned int i = 0; i < ev->npl;)
		if (!ev->pl[i].mark)
			ev->pl[i] = ev->pl[--ev->npl];
		else
			i++;
	/* no lock held: the callback may call control functions */
	for (unsigned int i = 0; i < ev->nq; i++)
		ev->a.fn(ev->a.ctx, &ev->q[i]);
	if (ev->dropped)
		ev->a.fn(ev->a.ctx, &(struct rtioreq_event){ .kind = RTIOREQ_EVENT_DROPPED,
							     .vcpu = -1, .count = ev->dropped });
}

static void *events_main(void *arg)
{
	struct rtioreq_events *ev = arg;
	bool stop = false;

	while (!stop) {
		struct timespec t;

		clock_gettime(CLOCK_REALTIME, &t);
		t.tv_sec += ev->a.period_ms / 1000;
		t.tv_nsec += (long)(ev->a.period_ms % 1000) * 1000000L;
		if (t.tv_nsec >= 1000000000L) {
			t.tv_sec++;
			t.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&ev->lock);
		while (!ev->stop && pthread_cond_timedwait(&ev->cond, &ev->lock, &t) != ETIMEDOUT)
			;
		stop = ev->stop;
		pthread_mutex_unlock(&ev->lock);
		scan(ev); /* also a last one on stop */
	}
	return NULL;
}

struct rtioreq_events *rtioreq_events_start(struct rtioreq_engine *eng,
					    const struct rtioreq_events_attr *attr)
{
	struct rtioreq_events *ev;
	int r;

	if (!eng || !attr || !attr->fn) {
		errno = EINVAL;
		return NULL;
	}
	ev = calloc(1, sizeof(*ev));
	if (!ev) {
		errno = ENOMEM;
		return NULL;
	}
	ev->eng = eng;
	ev->a = *attr;
	if (!ev->a.period_ms)
		ev->a.period_ms = 100;
	if (!ev->a.max_per_period)
		ev->a.max_per_period = 64;
	ev->q = calloc(ev->a.max_per_period, sizeof(*ev->q));
	if (!ev->q) {
		free(ev);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&ev->lock, NULL);
	pthread_cond_init(&ev->cond, NULL);
	/* what was counted before we started is not news: take it as seen */
	scan(ev);
	r = rtioreq__thread_start(&ev->thread, &ev->a.thread, "rtioreq-events", events_main, ev);
	if (r) {
		pthread_cond_destroy(&ev->cond);
		pthread_mutex_destroy(&ev->lock);
		free(ev->q);
		free(ev);
		errno = -r;
		return NULL;
	}
	return ev;
}

void rtioreq_events_stop(struct rtioreq_events *ev)
{
	if (!ev)
		return;
	pthread_mutex_lock(&ev->lock);
	ev->stop = true;
	pthread_cond_signal(&ev->cond);
	pthread_mutex_unlock(&ev->lock);
	pthread_join(ev->thread, NULL);
	pthread_cond_destroy(&ev->cond);
	pthread_mutex_destroy(&ev->lock);
	free(ev->q);
	free(ev);
}

void rtioreq_client_stats(const struct rtioreq_client *c, struct rtioreq_client_stats *out)
{
	memset(out, 0, sizeof(*out)); /* reserved tail: zero (rtioreq/common.h) */
	/* relaxed: statistics */
	out->served = atomic_load_explicit(&c->served, memory_order_relaxed);
	out->handler_errors = atomic_load_explicit(&c->handler_errors, memory_order_relaxed);
}
