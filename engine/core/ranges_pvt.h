/* SPDX-License-Identifier: MIT */
/*
 * Range table of one VM: for each routable type (PORTIO, MMIO) a sorted array of
 * disjoint inclusive ranges, plus the default client. Immutable once published: every
 * update builds a new map (copy-on-write, O(n)), publishes it with a release store and
 * retires the old one after a grace period. Readers (pollers, dispatcher) do one
 * acquire load and a search: no lock, no atomic read-modify-write.
 *
 * From RTIOREQ__MAP_DESCEND_MIN ranges on, the search does not bisect the sorted array
 * (at 10,000 ranges that touches ~14 cache lines, one dependent miss each, and
 * mispredicts a branch about every other level): every map also holds, per type, the
 * ranges' starts in Eytzinger (BFS) order, key[1..n] (node k's children are 2k and
 * 2k+1; the in-order walk is the sorted order; the levels are full but the last, filled
 * from the left), 64-byte aligned so that the 8 nodes 8k..8k+7 three levels below node
 * k share one cache line.
 * The top levels share a few lines that stay cached, and the descent prefetches the
 * lines 4 levels ahead, so the misses overlap (Khuong & Morin, "Array layouts for
 * comparison-based searching", 2017). Where the descent ends gives the index in the
 * sorted array by arithmetic alone (rtioreq__map_descend).
 *
 * One allocation per map (64-byte aligned, @size bytes): the header, then key[0], key[1]
 * (n+1 entries each, rounded up to whole cache lines) and the sorted arrays r[0], r[1].
 * What a lookup reads of the header fills its first cache line.
 */
#ifndef RTIOREQ_RANGES_PVT_H
#define RTIOREQ_RANGES_PVT_H

#include <stddef.h>
#include <stdint.h>

#include "core/rcu_pvt.h"
#include "rtioreq/core/engine.h"

#define RTIOREQ__NTYPES 2 /* routable types: RTIOREQ_TYPE_PORTIO, RTIOREQ_TYPE_MMIO */

/* Ranges per type at most: keeps the node indices of a descent (< 4n, and the
 * prefetched 16k + 8) within 32 bits. */
#define RTIOREQ__MAP_MAX (1u << 28)

struct rtioreq__range {
	uint64_t start; /* inclusive */
	uint64_t end;	/* inclusive */
	struct rtioreq_client *client;
};

struct rtioreq__map {
	/* first cache line: what a lookup reads */
	uint32_t n[RTIOREQ__NTYPES];
	uint32_t full[RTIOREQ__NTYPES]; /* levels of the tree with every node: log2(n+1) */
	uint32_t last[RTIOREQ__NTYPES]; /* nodes on the level below: n - (2^full - 1) */
	uint64_t *key[RTIOREQ__NTYPES];		   /* Eytzinger-ordered starts, key[1..n] */
	struct rtioreq__range *r[RTIOREQ__NTYPES]; /* sorted by start, disjoint */
	struct rtioreq_client *dflt;
	/* second: the rest */
	size_t size; /* bytes of the allocation, header included */
	struct rtioreq__rcu_head rcu;
	_Alignas(64) unsigned char storage[];
};

/* Below this many ranges a lookup bisects the sorted array instead: measured, the
 * branchy bisection (its branches well predicted for repeated addresses, its array in
 * L1) was 2x faster at 1-100 ranges, the descent 2x faster at 1,000 and more; the
 * crossover, somewhere between, was not measured closer. */
#define RTIOREQ__MAP_DESCEND_MIN 256u

/*
 * The Eytzinger search of rtioreq__map_upper_bound (the same answer). A branch-free
 * descent of key[@type] through the full levels (count: full[@type]) ends at position j
 * of the next level, which holds last[@type] nodes, the leftmost ones. If node j is
 * there, one more comparison picks one of its two empty child slots, 2j or 2j+1; if
 * not, the descent ended at an empty slot already. The slots, in order, are the gaps
 * between the sorted keys: the 2*last children of the last level's nodes first, then
 * the empty positions of that level; the index of the gap is the answer.
 */
static inline uint32_t rtioreq__map_descend(const struct rtioreq__map *m, uint32_t type,
					    uint64_t addr)
{
	const uint64_t *key = m->key[type];
	uint32_t n = m->n[type], levels = m->full[type], last = m->last[type], k = 1, j, in, at;

	for (uint32_t l = 0; l < levels; l++) {
		/* the 16 nodes 4 levels down, two cache lines, clamped to the array (cmovs):
		 * a prefetch never faults, but one past the allocation may cost a page walk */
		uint32_t p0 = 16 * k <= n ? 16 * k : n, p1 = 16 * k + 8 <= n ? 16 * k + 8 : n;

		__builtin_prefetch(&key[p0]);
		__builtin_prefetch(&key[p1]);
		k = 2 * k + (key[k] <= addr);
	}
	j = k - (1u << levels);
	/* masks, not ?: (which gcc may turn into a branch, mispredicted half the time
	 * when the last level is half full): key[0] exists, its answer is masked off */
	in = 0u - (uint32_t)(j < last);
	at = k & in;
	return (in & (2 * j + (key[at] <= addr))) | (~in & (last + j));
}

/*
 * Index in r[@type] (@type < RTIOREQ__NTYPES) of the first range whose start is > @addr,
 * i.e. the number of ranges starting at or below @addr: the one search routine of
 * lookups and updates. Small tables: bisection of r[]; large: rtioreq__map_descend. The
 * choice depends on the map only, so its branch is predicted.
 */
static inline uint32_t rtioreq__map_upper_bound(const struct rtioreq__map *m, uint32_t type,
						uint64_t addr)
{
	const struct rtioreq__range *r = m->r[type];
	uint32_t lo = 0, hi = m->n[type];

	if (hi >= RTIOREQ__MAP_DESCEND_MIN)
		return rtioreq__map_descend(m, type, addr);
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (r[mid].start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Client serving an access of @size bytes at @addr, or the default client, or NULL.
 * Only accesses wholly inside one range match ([addr, addr+size-1] within [start, end]);
 * the caller validated that addr+size-1 does not overflow. PCICFG goes to the default
 * client. Call inside an RCU read side (poller or dispatcher loop).
 */
static inline struct rtioreq_client *rtioreq__map_lookup(const struct rtioreq__map *m,
							 uint32_t type, uint64_t addr,
							 uint32_t size)
{
	const struct rtioreq__range *r;
	uint32_t i;

	if (!m)
		return NULL;
	if (type >= RTIOREQ__NTYPES)
		return m->dflt;
	r = m->r[type];
	/* the candidate is the last range starting at or below addr */
	i = rtioreq__map_upper_bound(m, type, addr);
	if (i && addr + (size - 1) <= r[i - 1].end)
		return r[i - 1].client;
	return m->dflt;
}

/* An empty map. NULL on ENOMEM. */
struct rtioreq__map *rtioreq__map_empty(void);

/*
 * Build a new map from @old (never modified) with one change. Return 0 and *out, or:
 * add:     -EINVAL (type, start > end, port range above 0xffff), -EEXIST (overlap;
 *          *conflict set if not NULL), -ENOMEM (also past RTIOREQ__MAP_MAX ranges);
 * del:     -ENOENT (no range [start, end] of @type owned by @client);
 * drop:    removes every range of @client and its default role (never fails but ENOMEM);
 * default: -EEXIST if another default client is set.
 */
int rtioreq__map_add(const struct rtioreq__map *old, uint32_t type, uint64_t start,
		     uint64_t end, struct rtioreq_client *client, struct rtioreq__map **out,
		     struct rtioreq__range *conflict);
int rtioreq__map_del(const struct rtioreq__map *old, uint32_t type, uint64_t start,
		     uint64_t end, struct rtioreq_client *client, struct rtioreq__map **out);
int rtioreq__map_drop_client(const struct rtioreq__map *old, struct rtioreq_client *client,
			     struct rtioreq__map **out);
int rtioreq__map_set_default(const struct rtioreq__map *old, struct rtioreq_client *client,
			     struct rtioreq__map **out);

/* First range of @type overlapping [start, end]; 1 if found (copied to *out), else 0. */
int rtioreq__map_conflict(const struct rtioreq__map *m, uint32_t type, uint64_t start,
			  uint64_t end, struct rtioreq__range *out);

/* Publish @m in *@slot (M1, release; pairs with the takers' M2) and retire the map it
 * replaces. Under the lock that serializes @slot's updates (vm->lock). */
void rtioreq__map_publish(_Atomic(struct rtioreq__map *) *slot, struct rtioreq__map *m);

/* Free now (never published, or after a grace period) / after the next grace period. */
void rtioreq__map_free(struct rtioreq__map *m);
void rtioreq__map_retire(struct rtioreq__map *m);

#endif /* RTIOREQ_RANGES_PVT_H */
