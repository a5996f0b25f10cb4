/* SPDX-License-Identifier: MIT */
/*
 * Range table of one VM: for each routable type (PORTIO, MMIO) a sorted array of
 * disjoint inclusive ranges, plus the default client. Immutable once published: every
 * update builds a new map (copy-on-write, O(n)), publishes it with a release store and
 * retires the old one after a grace period. Readers (pollers, dispatcher) do one
 * acquire load and a search: no lock, no atomic read-modify-write.
 *
 * From RTIOREQ__MAP_DESCEND_MIN ranges on, the search does not bisect the sorted array
 * (at 10,000 ranges that is ~14 dependent loads, one cache line each, and a mispredicted
 * branch about every other level): every map also holds, per type, the ranges' starts
 * in an implicit B+ tree of 64-byte nodes (the "S+ tree" of algorithmica.org, after
 * the B-tree layouts of Khuong & Morin, "Array layouts for comparison-based
 * searching", 2017). Its leaves are
 * the sorted starts, RTIOREQ__MAP_NODE_KEYS per node, the last one padded; above them,
 * a node k of layer h (h >= 1) has the RTIOREQ__MAP_FANOUT children k * FANOUT + i,
 * i < FANOUT, in layer h - 1, and its key j is the smallest start under child j + 1
 * (padding where that child does not exist). A descent counts, in one node per layer,
 * the keys at or below the address, and goes to that child; the count in the leaf,
 * plus 8 times the leaf's index, is the answer. At 10,000 ranges: 5 nodes, 5 dependent
 * loads instead of 14, and no branch that depends on the data.
 *
 * Padding is UINT64_MAX, which no address but UINT64_MAX reaches (the descent answers
 * that one first). A node is compared with AVX2 where the CPU has it
 * (rtioreq__map_descend_avx2, chosen per map at build: m->avx2; AVX2 compares signed,
 * so keys and address get their top bit flipped first), with 8 scalar compares
 * elsewhere; both walk the same tree to the same answer.
 *
 * One allocation per map (64-byte aligned, @size bytes): the header, then the trees
 * key[0], key[1] (whole nodes, so each node is one cache line) and the sorted arrays
 * r[0], r[1]. What a lookup reads of the header fills its first two cache lines.
 */
#ifndef RTIOREQ_RANGES_PVT_H
#define RTIOREQ_RANGES_PVT_H

#include <stddef.h>
#include <stdint.h>

#include "core/rcu_pvt.h"
#include "rtioreq/core/engine.h"

#define RTIOREQ__NTYPES 2 /* routable types: RTIOREQ_TYPE_PORTIO, RTIOREQ_TYPE_MMIO */

#define RTIOREQ__MAP_NODE_KEYS 8u /* keys per tree node: one cache line */
#define RTIOREQ__MAP_FANOUT    9u /* children per inner node */
/* Layers of a tree at most: 8, so that the first node of each layer of both trees,
 * 2 x 8 uint32_t, fills exactly the header's second cache line (a lookup reads it). */
#define RTIOREQ__MAP_LAYERS 8u
/* Ranges per type at most, for RTIOREQ__MAP_LAYERS: 2^25 ranges fill 2^22 leaves, and 7
 * layers above them hold up to 9^7 = 4,782,969 leaves. Also keeps every node index
 * within 32 bits. */
#define RTIOREQ__MAP_MAX (1u << 25)
_Static_assert(RTIOREQ__MAP_MAX / RTIOREQ__MAP_NODE_KEYS <= 4782969u /* 9^7 */,
	       "RTIOREQ__MAP_MAX ranges fit a tree of RTIOREQ__MAP_LAYERS layers");

struct rtioreq__range {
	uint64_t start; /* inclusive */
	uint64_t end;	/* inclusive */
	struct rtioreq_client *client;
};

struct rtioreq__map {
	/* first cache line: what a lookup reads */
	uint32_t n[RTIOREQ__NTYPES];
	uint32_t height[RTIOREQ__NTYPES];	   /* layers of the tree, >= 1 */
	uint64_t *key[RTIOREQ__NTYPES];		   /* the trees' nodes, 8 keys each */
	struct rtioreq__range *r[RTIOREQ__NTYPES]; /* sorted by start, disjoint */
	struct rtioreq_client *dflt;
	uint32_t avx2; /* descend with rtioreq__map_descend_avx2 */
	/* second: the first node of each layer of each tree (leaves: layer 0), a lookup's */
	_Alignas(64) uint32_t layer[RTIOREQ__NTYPES][RTIOREQ__MAP_LAYERS];
	/* third: the rest */
	size_t size; /* bytes of the allocation, header included */
	struct rtioreq__rcu_head rcu;
	_Alignas(64) unsigned char storage[];
};

/* Below this many ranges a lookup bisects the sorted array instead. Measured (bench
 * lookup phase, the tree forced at every size): bisection 1.9 / 3.0 / 5.3-5.9 ns at
 * 1 / 10 / 100 ranges, the AVX2 tree 3.0 / 5.2 / 7.8-8.0 ns; at 1,000 the tree took
 * 11 ns, the earlier Eytzinger descent 17 ns, and that descent was 2x faster than the
 * bisection. The crossover, between 100 and 1,000, was not measured closer. */
#define RTIOREQ__MAP_DESCEND_MIN 256u

/* Keys of the 8 in @node that are <= @addr: which child, or the position in a leaf.
 * Unsigned compares: a compiler adds each one's carry (cmp + adc), 2 instructions. */
static inline uint32_t rtioreq__map_node_rank(const uint64_t *node, uint64_t addr)
{
	uint32_t i = 0;

	for (uint32_t j = 0; j < RTIOREQ__MAP_NODE_KEYS; j++)
		i += node[j] <= addr;
	return i;
}

/*
 * The descent through type @type's tree of @m with the node compare @rank: the one
 * copy of the walk, inlined with its @rank into rtioreq__map_descend (scalar) and
 * rtioreq__map_descend_avx2 (ranges.c).
 */
static inline __attribute__((always_inline)) uint32_t
rtioreq__map_descend_with(const struct rtioreq__map *m, uint32_t type, uint64_t addr,
			  uint32_t (*rank)(const uint64_t *node, uint64_t addr))
{
	const uint64_t *key = m->key[type];
	const uint32_t *layer = m->layer[type];
	uint32_t h = m->height[type] - 1, k = 0;

	if (addr == UINT64_MAX) /* the one address at or above the padding: every start */
		return m->n[type];
	for (; h > 0; h--)
		k = k * RTIOREQ__MAP_FANOUT +
		    rank(key + (size_t)(layer[h] + k) * RTIOREQ__MAP_NODE_KEYS, addr);
	return k * RTIOREQ__MAP_NODE_KEYS +
	       rank(key + (size_t)(layer[0] + k) * RTIOREQ__MAP_NODE_KEYS, addr);
}

/* The tree search of rtioreq__map_upper_bound (the same answer), scalar compares. */
static inline uint32_t rtioreq__map_descend(const struct rtioreq__map *m, uint32_t type,
					    uint64_t addr)
{
	return rtioreq__map_descend_with(m, type, addr, rtioreq__map_node_rank);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define RTIOREQ__MAP_HAVE_AVX2 1
/* rtioreq__map_descend with AVX2 (ranges.c); only where the CPU has it (m->avx2). */
uint32_t rtioreq__map_descend_avx2(const struct rtioreq__map *m, uint32_t type,
				   uint64_t addr);
#else
#define RTIOREQ__MAP_HAVE_AVX2 0
#endif

/*
 * Index in r[@type] (@type < RTIOREQ__NTYPES) of the first range whose start is > @addr,
 * i.e. the number of ranges starting at or below @addr: the one search routine of
 * lookups and updates. Small tables: bisection of r[]; large: the tree's descent, with
 * AVX2 where the CPU has it. The choices depend on the map only, so their branches are
 * predicted.
 */
static inline uint32_t rtioreq__map_upper_bound(const struct rtioreq__map *m, uint32_t type,
						uint64_t addr)
{
	const struct rtioreq__range *r = m->r[type];
	uint32_t lo = 0, hi = m->n[type];

	if (hi >= RTIOREQ__MAP_DESCEND_MIN) {
#if RTIOREQ__MAP_HAVE_AVX2
		if (m->avx2)
			return rtioreq__map_descend_avx2(m, type, addr);
#endif
		return rtioreq__map_descend(m, type, addr);
	}
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
