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

#if RTIOREQ__MAP_HAVE_AVX2
#include <immintrin.h>
#endif
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

#define LINE 64u /* a tree node, and the trees' alignment: see ranges_pvt.h */

/* a lookup reads the first two cache lines of the header (LP64) */
_Static_assert(sizeof(void *) != 8 || offsetof(struct rtioreq__map, layer) == LINE,
	       "what a lookup reads first fills the first cache line of a map");
_Static_assert(offsetof(struct rtioreq__map, size) == 2 * LINE,
	       "the layers' first nodes fill the second cache line of a map");
_Static_assert(RTIOREQ__MAP_NODE_KEYS * sizeof(uint64_t) == LINE, "a node is a cache line");

static size_t round_up(size_t x, size_t to)
{
	return (x + to - 1) / to * to;
}

/* Leaves of the tree over @n keys (ranges_pvt.h): ceil(n / 8), at least one. */
static uint32_t tree_leaves(uint32_t n)
{
	return n ? (n - 1) / RTIOREQ__MAP_NODE_KEYS + 1 : 1;
}

/*
 * The shape of the tree over @n keys: its layers' first nodes in @layer[] (the root
 * first in memory, the leaves last) and their number in *@height; return the number of
 * nodes. Above the leaves, each layer has ceil(below / 9) nodes, up to the one that has
 * a single node.
 */
static uint32_t tree_shape(uint32_t n, uint32_t layer[RTIOREQ__MAP_LAYERS], uint32_t *height)
{
	uint32_t count[RTIOREQ__MAP_LAYERS], h = 0, c, total = 0;

	c = tree_leaves(n);
	for (;;) {
		count[h++] = c;
		if (c == 1)
			break;
		c = (c - 1) / RTIOREQ__MAP_FANOUT + 1;
	}
	*height = h;
	while (h--) {
		layer[h] = total;
		total += count[h];
	}
	return total;
}

/* Whether this CPU and OS run AVX2 (the compiler's runtime check reads CPUID and XCR0). */
static uint32_t cpu_avx2(void)
{
#if RTIOREQ__MAP_HAVE_AVX2
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") != 0;
#else
	return 0;
#endif
}

/* A map for @n0 + @n1 ranges, zeroed, its arrays placed and its trees shaped
 * (ranges_pvt.h), their keys left to map_index; NULL on ENOMEM. */
static struct rtioreq__map *map_alloc(uint32_t n0, uint32_t n1)
{
	const uint32_t n[RTIOREQ__NTYPES] = { n0, n1 };
	/* zero: the layers past a tree's height stay 0 in the header */
	uint32_t layer[RTIOREQ__NTYPES][RTIOREQ__MAP_LAYERS] = { { 0 } }, height[RTIOREQ__NTYPES];
	size_t off[2][RTIOREQ__NTYPES], size = offsetof(struct rtioreq__map, storage);
	struct rtioreq__map *m;
	uint32_t t;

	if (n0 > RTIOREQ__MAP_MAX || n1 > RTIOREQ__MAP_MAX)
		return NULL;
	for (t = 0; t < RTIOREQ__NTYPES; t++) { /* nodes: whole lines, from a line */
		off[0][t] = size;
		size += (size_t)tree_shape(n[t], layer[t], &height[t]) * LINE;
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
	m->avx2 = cpu_avx2();
	for (t = 0; t < RTIOREQ__NTYPES; t++) {
		m->n[t] = n[t];
		m->height[t] = height[t];
		memcpy(m->layer[t], layer[t], sizeof(layer[t]));
		m->key[t] = (uint64_t *)(void *)((char *)m + off[0][t]);
		m->r[t] = (struct rtioreq__range *)(void *)((char *)m + off[1][t]);
	}
	return m;
}

/* Nodes of type @t's tree in @m: the leaves come last, from layer[0] on. */
static uint32_t tree_nodes(const struct rtioreq__map *m, uint32_t t)
{
	return m->layer[t][0] + tree_leaves(m->n[t]);
}

/*
 * Fill type @t's tree of @m from its sorted array (O(n), before @m is published). Key
 * j of node k in layer h is the smallest start under the node's child j + 1, i.e. the
 * first key of leaf (k * 9 + j + 1) * 9^(h-1) (for h = 0: the start k * 8 + j itself),
 * or padding where there is none.
 */
static void map_index(struct rtioreq__map *m, uint32_t t)
{
	const uint32_t n = m->n[t];
	uint64_t span = 1; /* leaves under one node of layer h - 1: 9^(h-1) */

	for (uint32_t h = 0; h < m->height[t]; h++) {
		uint64_t *node = m->key[t] + (size_t)m->layer[t][h] * RTIOREQ__MAP_NODE_KEYS;
		uint32_t count = (h ? m->layer[t][h - 1] : tree_nodes(m, t)) - m->layer[t][h];

		for (uint64_t i = 0; i < (uint64_t)count * RTIOREQ__MAP_NODE_KEYS; i++) {
			uint64_t first = h ? (i + i / RTIOREQ__MAP_NODE_KEYS + 1) * span *
						 RTIOREQ__MAP_NODE_KEYS
					   : i;

			node[i] = first < n ? m->r[t][first].start : UINT64_MAX;
		}
		if (h)
			span *= RTIOREQ__MAP_FANOUT;
	}
}

#if RTIOREQ__MAP_HAVE_AVX2
/*
 * rtioreq__map_node_rank with AVX2: two compares of 4 keys each give the keys above
 * @addr (signed compares: keys and address with their top bit flipped order as
 * unsigned); a node's keys are sorted, so those are its top ones, and the lowest of
 * them is the rank (8 when none is above).
 */
__attribute__((target("avx2"))) static inline uint32_t node_rank_avx2(const uint64_t *node,
								     uint64_t addr)
{
	const __m256i *v = (const __m256i *)(const void *)node; /* 64-byte aligned */
	const __m256i flip = _mm256_set1_epi64x(INT64_MIN);
	__m256i a = _mm256_set1_epi64x((int64_t)(addr ^ (uint64_t)INT64_MIN));
	__m256i k0 = _mm256_xor_si256(_mm256_load_si256(v), flip);
	__m256i k1 = _mm256_xor_si256(_mm256_load_si256(v + 1), flip);
	uint32_t lo = (uint32_t)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(k0, a)));
	uint32_t hi = (uint32_t)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(k1, a)));

	return (uint32_t)__builtin_ctz(lo | hi << 4 | 1u << RTIOREQ__MAP_NODE_KEYS);
}

__attribute__((target("avx2"))) uint32_t rtioreq__map_descend_avx2(const struct rtioreq__map *m,
								  uint32_t type, uint64_t addr)
{
	return rtioreq__map_descend_with(m, type, addr, node_rank_avx2);
}
#endif

/* Copy @old, with type @type's array resized to @n (contents of that type left to fill
 * and index); the other type's ranges and tree are copied as they are. */
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
	memcpy(m->key[other], old->key[other], (size_t)tree_nodes(m, other) * LINE);
	return m;
}

struct rtioreq__map *rtioreq__map_empty(void)
{
	struct rtioreq__map *m = map_alloc(0, 0);

	if (m) /* one leaf of padding per type */
		for (uint32_t t = 0; t < RTIOREQ__NTYPES; t++)
			map_index(m, t);
	return m;
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
