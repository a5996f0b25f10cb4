// SPDX-License-Identifier: MIT
/*
 * Range tables (copy-on-write sorted arrays) and the engine's RCU glue: the only
 * module that calls liburcu (rcu_pvt.h holds the inline reader side).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "core/ranges_pvt.h"
#include "sys/hook_pvt.h"

#ifdef RTIOREQ__TSAN
char rtioreq__rcu_tsan_token;
#endif

/* ---------------------------------------------------------------------------------- */
/* RCU glue */

__thread bool rtioreq__rcu_reader;

/*
 * call_rcu and rcu_barrier want a registered thread, online for call_rcu and offline
 * for the barrier (it waits for grace periods). The calling thread may be anything: a
 * control thread (not registered), one of the engine's readers (registered, online: a
 * handler updating ranges on a poller), or an embedder's own liburcu-qsbr thread,
 * online or offline. Registering an already registered thread again aborts in
 * liburcu (urcu_qsbr_register_thread: ctr == 0), so look first.
 */
enum rcu_state { RCU_UNREGISTERED, RCU_OFFLINE, RCU_ONLINE };

static enum rcu_state rcu_state(void)
{
	if (!URCU_TLS(urcu_qsbr_reader).registered)
		return RCU_UNREGISTERED;
	return urcu_qsbr_read_ongoing() ? RCU_ONLINE : RCU_OFFLINE;
}

/*
 * The pinned call_rcu worker (NULL: liburcu's default, unpinned). Created by the first
 * engine that asks for one (rcu.cpu >= 0), then used by every engine of the process
 * (rtioreq__rcu_call), so every engine holds a use: rcu_worker_users counts all live
 * engines, and the worker is freed only when the last engine goes. Set and cleared
 * under rcu_worker_lock; read by rtioreq__rcu_call (acquire, pairs with the release
 * store below) from threads of live engines, so never while it is freed.
 */
static _Atomic(struct call_rcu_data *) rcu_worker;
static pthread_mutex_t rcu_worker_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned int rcu_worker_users;

int rtioreq__rcu_worker_get(int cpu)
{
	int r = 0;

	pthread_mutex_lock(&rcu_worker_lock);
	/* relaxed: under the lock, the only writer */
	if (cpu >= 0 && !atomic_load_explicit(&rcu_worker, memory_order_relaxed)) {
		struct call_rcu_data *w = urcu_qsbr_create_call_rcu_data(0, cpu);

		if (!w) {
			r = -ENOMEM;
		} else {
			cpu_set_t set;

			/*
			 * liburcu applies cpu_affinity only every 256th grace period; pin it
			 * now (a SCHED_OTHER thread: placing it after start is safe)
			 */
			CPU_ZERO(&set);
			CPU_SET(cpu, &set);
			r = -pthread_setaffinity_np(urcu_qsbr_get_call_rcu_thread(w), sizeof(set),
						    &set);
			pthread_setname_np(urcu_qsbr_get_call_rcu_thread(w), "rtioreq-rcu");
			if (r)
				urcu_qsbr_call_rcu_data_free(w);
			else /* release: pairs with rtioreq__rcu_call()'s acquire */
				atomic_store_explicit(&rcu_worker, w, memory_order_release);
		}
	}
	if (!r)
		rcu_worker_users++;
	pthread_mutex_unlock(&rcu_worker_lock);
	return r;
}

void rtioreq__rcu_worker_put(void)
{
	pthread_mutex_lock(&rcu_worker_lock);
	if (!--rcu_worker_users) {
		struct call_rcu_data *w =
			atomic_load_explicit(&rcu_worker, memory_order_relaxed); /* under lock */
		bool online = rcu_state() == RCU_ONLINE; /* an embedder's qsbr thread */

		if (w) {
			/* relaxed: under the lock; no engine is left to read it */
			atomic_store_explicit(&rcu_worker, NULL, memory_order_relaxed);
			rtioreq__rcu_barrier(); /* its queue is empty: nothing moves */
			if (online) /* freeing joins the worker, which may wait for a GP */
				urcu_qsbr_thread_offline();
			urcu_qsbr_call_rcu_data_free(w);
			if (online)
				urcu_qsbr_thread_online();
		}
	}
	pthread_mutex_unlock(&rcu_worker_lock);
}

static void rcu_trampoline(struct rcu_head *head)
{
	struct rtioreq__rcu_head *h = caa_container_of(head, struct rtioreq__rcu_head, head);

	RTIOREQ__GP_ACQUIRE();
	RTIOREQ__HOOK("rcu.callback", h);
	h->fn(h);
}

void rtioreq__rcu_call(struct rtioreq__rcu_head *h, void (*fn)(struct rtioreq__rcu_head *h))
{
	enum rcu_state was = rcu_state();

	h->fn = fn;
	if (was == RCU_UNREGISTERED)
		urcu_qsbr_register_thread();
	else if (was == RCU_OFFLINE)
		urcu_qsbr_thread_online(); /* no grace-period wait: takes no time */
	/* TSan: liburcu's queue hands h over to its callback thread; say so */
	RTIOREQ__GP_RELEASE();
	{
		/* acquire: pairs with the release store in rtioreq__rcu_worker_get() */
		struct call_rcu_data *w =
			atomic_load_explicit(&rcu_worker, memory_order_acquire);
		struct call_rcu_data *prev = urcu_qsbr_get_thread_call_rcu_data();

		if (w)
			urcu_qsbr_set_thread_call_rcu_data(w);
		urcu_qsbr_call_rcu(&h->head, rcu_trampoline);
		if (w)
			urcu_qsbr_set_thread_call_rcu_data(prev);
	}
	if (was == RCU_UNREGISTERED)
		urcu_qsbr_unregister_thread();
	else if (was == RCU_OFFLINE)
		urcu_qsbr_thread_offline();
}

void rtioreq__rcu_barrier(void)
{
	bool online = rcu_state() == RCU_ONLINE; /* never an engine reader: see callers */

	/* liburcu refuses a barrier from an online thread (it would wait for itself) */
	if (online)
		urcu_qsbr_thread_offline();
	urcu_qsbr_barrier();
	if (online)
		urcu_qsbr_thread_online();
	RTIOREQ__GP_ACQUIRE();
}

/* ---------------------------------------------------------------------------------- */
/* Maps */

#define LINE 64u /* the key arrays' alignment: see ranges_pvt.h */

/* a lookup reads one cache line of the header (LP64) */
_Static_assert(sizeof(void *) != 8 || offsetof(struct rtioreq__map, size) == LINE,
	       "what a lookup reads fills the first cache line of a map");

static size_t round_up(size_t x, size_t to)
{
	return (x + to - 1) / to * to;
}

/* A map for @n0 + @n1 ranges, zeroed, its arrays placed (ranges_pvt.h); NULL on ENOMEM. */
static struct rtioreq__map *map_alloc(uint32_t n0, uint32_t n1)
{
	const uint32_t n[RTIOREQ__NTYPES] = { n0, n1 };
	size_t off[2][RTIOREQ__NTYPES], size = offsetof(struct rtioreq__map, storage);
	struct rtioreq__map *m;
	uint32_t t;

	if (n0 > RTIOREQ__MAP_MAX || n1 > RTIOREQ__MAP_MAX)
		return NULL;
	for (t = 0; t < RTIOREQ__NTYPES; t++) { /* keys: whole lines, so each starts on one */
		off[0][t] = size;
		size += round_up((size_t)(n[t] + 1) * sizeof(uint64_t), LINE);
	}
	for (t = 0; t < RTIOREQ__NTYPES; t++) {
		off[1][t] = size;
		size += (size_t)n[t] * sizeof(struct rtioreq__range);
	}
	size = round_up(size, LINE); /* aligned_alloc wants a multiple of the alignment */
	m = aligned_alloc(LINE, size);
	if (!m)
		return NULL;
	memset(m, 0, size);
	m->size = size;
	for (t = 0; t < RTIOREQ__NTYPES; t++) {
		m->n[t] = n[t];
		m->key[t] = (uint64_t *)(void *)((char *)m + off[0][t]);
		m->r[t] = (struct rtioreq__range *)(void *)((char *)m + off[1][t]);
	}
	return m;
}

/* In-order walk of the implicit tree under node @k: give the nodes the starts of the
 * ranges from index @i on; return the next index. Depth <= 29 (RTIOREQ__MAP_MAX). */
static uint32_t index_fill(uint64_t *key, const struct rtioreq__range *r, uint32_t n,
			   uint32_t k, uint32_t i)
{
	if (k > n)
		return i;
	i = index_fill(key, r, n, 2 * k, i);
	key[k] = r[i++].start;
	return index_fill(key, r, n, 2 * k + 1, i);
}

/*
 * Build type @t's search index of @m from its sorted array (O(n), before @m is
 * published): key[] (key[0] stays 0 from map_alloc), the number of full levels,
 * floor(log2(n + 1)), and the number of nodes on the level below them.
 */
static void map_index(struct rtioreq__map *m, uint32_t t)
{
	uint32_t levels = 0;

	index_fill(m->key[t], m->r[t], m->n[t], 1, 0);
	while (((uint64_t)1 << (levels + 1)) - 1 <= m->n[t])
		levels++;
	m->full[t] = levels;
	m->last[t] = m->n[t] - ((1u << levels) - 1);
}

/* Copy @old, with type @type's array resized to @n (contents of that type left to fill
 * and index); the other type's ranges and index are copied as they are. */
static struct rtioreq__map *map_clone(const struct rtioreq__map *old, uint32_t type, uint32_t n)
{
	const uint32_t other = !type;
	uint32_t n0 = old->n[0], n1 = old->n[1];
	struct rtioreq__map *m;

	if (type == 0)
		n0 = n;
	else
		n1 = n;
	m = map_alloc(n0, n1);
	if (!m)
		return NULL;
	m->dflt = old->dflt;
	memcpy(m->r[other], old->r[other], m->n[other] * sizeof(struct rtioreq__range));
	memcpy(m->key[other], old->key[other], (m->n[other] + 1) * sizeof(uint64_t));
	m->full[other] = old->full[other];
	m->last[other] = old->last[other];
	return m;
}

struct rtioreq__map *rtioreq__map_empty(void)
{
	/* zeroed by map_alloc: no ranges, no levels, key[0] = 0 is the index of both types */
	return map_alloc(0, 0);
}

int rtioreq__map_conflict(const struct rtioreq__map *m, uint32_t type, uint64_t start,
			  uint64_t end, struct rtioreq__range *out)
{
	uint32_t i;

	if (!m || type >= RTIOREQ__NTYPES)
		return 0;
	/* ranges are disjoint and sorted: only the one before the insertion point (it may
	 * extend over start) and the one at it (it may start before end) can overlap */
	i = rtioreq__map_upper_bound(m, type, start);
	if (i > 0 && m->r[type][i - 1].end >= start) {
		*out = m->r[type][i - 1];
		return 1;
	}
	if (i < m->n[type] && m->r[type][i].start <= end) {
		*out = m->r[type][i];
		return 1;
	}
	return 0;
}

int rtioreq__map_add(const struct rtioreq__map *old, uint32_t type, uint64_t start,
		     uint64_t end, struct rtioreq_client *client, struct rtioreq__map **out,
		     struct rtioreq__range *conflict)
{
	struct rtioreq__range dummy;
	struct rtioreq__map *m;
	uint32_t i, n;

	if (type >= RTIOREQ__NTYPES || start > end || !client)
		return -EINVAL;
	if (type == RTIOREQ_TYPE_PORTIO && end > 0xffff)
		return -EINVAL;
	if (rtioreq__map_conflict(old, type, start, end, conflict ? conflict : &dummy))
		return -EEXIST;
	n = old->n[type];
	i = rtioreq__map_upper_bound(old, type, start);
	m = map_clone(old, type, n + 1);
	if (!m)
		return -ENOMEM;
	memcpy(m->r[type], old->r[type], i * sizeof(struct rtioreq__range));
	m->r[type][i] = (struct rtioreq__range){ .start = start, .end = end, .client = client };
	memcpy(m->r[type] + i + 1, old->r[type] + i, (n - i) * sizeof(struct rtioreq__range));
	map_index(m, type);
	*out = m;
	return 0;
}

int rtioreq__map_del(const struct rtioreq__map *old, uint32_t type, uint64_t start,
		     uint64_t end, struct rtioreq_client *client, struct rtioreq__map **out)
{
	const struct rtioreq__range *r;
	struct rtioreq__map *m;
	uint32_t i, n;

	if (type >= RTIOREQ__NTYPES)
		return -ENOENT;
	n = old->n[type];
	i = rtioreq__map_upper_bound(old, type, start);
	if (i == 0)
		return -ENOENT;
	r = &old->r[type][i - 1];
	if (r->start != start || r->end != end || r->client != client)
		return -ENOENT;
	m = map_clone(old, type, n - 1);
	if (!m)
		return -ENOMEM;
	memcpy(m->r[type], old->r[type], (i - 1) * sizeof(struct rtioreq__range));
	memcpy(m->r[type] + i - 1, old->r[type] + i, (n - i) * sizeof(struct rtioreq__range));
	map_index(m, type);
	*out = m;
	return 0;
}

int rtioreq__map_drop_client(const struct rtioreq__map *old, struct rtioreq_client *client,
			     struct rtioreq__map **out)
{
	uint32_t keep[RTIOREQ__NTYPES] = { 0, 0 };
	struct rtioreq__map *m;
	uint32_t t, i, k;

	for (t = 0; t < RTIOREQ__NTYPES; t++)
		for (i = 0; i < old->n[t]; i++)
			keep[t] += old->r[t][i].client != client;
	m = map_alloc(keep[0], keep[1]);
	if (!m)
		return -ENOMEM;
	for (t = 0; t < RTIOREQ__NTYPES; t++)
		for (i = 0, k = 0; i < old->n[t]; i++)
			if (old->r[t][i].client != client)
				m->r[t][k++] = old->r[t][i];
	m->dflt = old->dflt == client ? NULL : old->dflt;
	for (t = 0; t < RTIOREQ__NTYPES; t++)
		map_index(m, t);
	*out = m;
	return 0;
}

int rtioreq__map_set_default(const struct rtioreq__map *old, struct rtioreq_client *client,
			     struct rtioreq__map **out)
{
	struct rtioreq__map *m;

	if (old->dflt && old->dflt != client)
		return -EEXIST;
	m = map_clone(old, 0, old->n[0]);
	if (!m)
		return -ENOMEM;
	memcpy(m->r[0], old->r[0], old->n[0] * sizeof(struct rtioreq__range));
	map_index(m, 0);
	m->dflt = client;
	*out = m;
	return 0;
}

void rtioreq__map_free(struct rtioreq__map *m)
{
	free(m);
}

static void map_free_cb(struct rtioreq__rcu_head *h)
{
	free(caa_container_of(h, struct rtioreq__map, rcu));
}

void rtioreq__map_retire(struct rtioreq__map *m)
{
	if (m)
		rtioreq__rcu_call(&m->rcu, map_free_cb);
}

void rtioreq__map_publish(_Atomic(struct rtioreq__map *) *slot, struct rtioreq__map *m)
{
	/* relaxed: the caller's lock orders updates of @slot */
	struct rtioreq__map *old = atomic_load_explicit(slot, memory_order_relaxed);

	atomic_store_explicit(slot, m, memory_order_release); /* M1, pairs with M2 */
	rtioreq__map_retire(old);
}
