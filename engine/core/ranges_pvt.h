/* SPDX-License-Identifier: MIT */
/*
 * Range table of one VM: for each routable type (PORTIO, MMIO) a sorted array of
 * disjoint inclusive ranges, plus the default client. Immutable once published: every
 * update builds a new map (copy-on-write, O(n)), publishes it with a release store and
 * retires the old one after a grace period. Readers (pollers, dispatcher) do one
 * acquire load and a binary search: no lock, no atomic read-modify-write.
 */
#ifndef RTIOREQ_RANGES_PVT_H
#define RTIOREQ_RANGES_PVT_H

#include <stdint.h>

#include "core/rcu_pvt.h"
#include "rtioreq/core/engine.h"

#define RTIOREQ__NTYPES 2 /* routable types: RTIOREQ_TYPE_PORTIO, RTIOREQ_TYPE_MMIO */

struct rtioreq__range {
	uint64_t start; /* inclusive */
	uint64_t end;	/* inclusive */
	struct rtioreq_client *client;
};

struct rtioreq__map {
	struct rtioreq__rcu_head rcu;
	struct rtioreq_client *dflt;
	uint32_t n[RTIOREQ__NTYPES];
	struct rtioreq__range *r[RTIOREQ__NTYPES]; /* into storage[] */
	struct rtioreq__range storage[];
};

/* Index of the first range of @type (< RTIOREQ__NTYPES) whose start is > @addr: the one
 * search routine of lookups and updates. */
static inline uint32_t rtioreq__map_upper_bound(const struct rtioreq__map *m, uint32_t type,
						uint64_t addr)
{
	const struct rtioreq__range *r = m->r[type];
	uint32_t lo = 0, hi = m->n[type];

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
 *          *conflict set if not NULL), -ENOMEM;
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
