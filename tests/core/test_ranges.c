// SPDX-License-Identifier: MIT
/*
 * Range tables (engine/core/ranges.c): the copy-on-write map functions white-box, with fake
 * client pointers (the map functions only compare clients, never dereference them);
 * a randomized model test against a linear list of ranges; and the public
 * rtioreq_range_add/del/conflict with real requests routed by the dispatcher and by a
 * poller.
 */
#include <pthread.h>

#include "harness.h"
#include "core/ranges_pvt.h"

#define PIO RTIOREQ_TYPE_PORTIO
#define MMIO RTIOREQ_TYPE_MMIO
#define PCICFG RTIOREQ_TYPE_PCICFG
#define RD RTIOREQ_DIR_READ
#define WR RTIOREQ_DIR_WRITE

/* ---------------------------------------------------------------------------------- */
/* Helpers for the white-box tests */

/* Fake clients: distinct, never dereferenced by the map functions. */
static struct {
	long pad;
} fake[8];
#define CL(i) ((struct rtioreq_client *)(void *)&fake[i])

static size_t map_bytes(const struct rtioreq__map *m)
{
	return m->size;
}

/* A byte copy of @m, to check later that nobody wrote to it (copy-on-write). */
static void *map_snapshot(const struct rtioreq__map *m)
{
	void *s = malloc(map_bytes(m));

	assert_non_null(s);
	memcpy(s, m, map_bytes(m));
	return s;
}

static void map_unchanged(const struct rtioreq__map *m, void *snap)
{
	const struct rtioreq__map *s = snap;

	assert_int_equal(m->n[0], s->n[0]);
	assert_int_equal(m->n[1], s->n[1]);
	assert_memory_equal(m, snap, map_bytes(s));
	free(snap);
}

/* Nodes in layer @h of type @t's tree, from its definition (ranges_pvt.h): ceil(n / 8)
 * leaves, at least one; ceil(below / 9) in each layer above. */
static uint32_t tree_count(const struct rtioreq__map *m, uint32_t t, uint32_t h)
{
	uint32_t c = m->n[t] ? (m->n[t] + 7) / 8 : 1;

	while (h--)
		c = (c + 8) / 9;
	return c;
}

/* The smallest key under node @c of layer @h: down its leftmost children to a leaf. */
static uint64_t tree_min(const struct rtioreq__map *m, uint32_t t, uint32_t h, uint64_t c)
{
	for (;; h--) {
		if (c >= tree_count(m, t, h))
			return UINT64_MAX; /* no such node: padding */
		if (!h)
			return m->key[t][((uint64_t)m->layer[t][0] + c) * 8];
		c *= 9;
	}
}

/* Invariants of a built map: every array inside the one allocation, the trees 64-byte
 * aligned; the ranges sorted, disjoint, valid; the trees shaped and keyed as
 * ranges_pvt.h defines them (leaves: the starts, then padding; inner keys: the
 * smallest key under the next child). */
static void map_check(const struct rtioreq__map *m)
{
	const char *lo = (const char *)m->storage, *hi = (const char *)m + m->size;

	assert_true((uintptr_t)m % 64 == 0 && m->size % 64 == 0);
#if RTIOREQ__MAP_HAVE_AVX2
	/* the AVX2 descent is used wherever the CPU has it */
	assert_int_equal(m->avx2, __builtin_cpu_supports("avx2") != 0);
#else
	assert_int_equal(m->avx2, 0);
#endif
	for (uint32_t t = 0; t < RTIOREQ__NTYPES; t++) {
		uint32_t i, h, H = m->height[t], nodes = 0;

		assert_true(H >= 1 && H <= RTIOREQ__MAP_LAYERS);
		assert_int_equal(tree_count(m, t, H - 1), 1);
		assert_true(H == 1 || tree_count(m, t, H - 2) > 1);
		for (h = H; h-- > 0;) { /* root first in memory, leaves last */
			assert_int_equal(m->layer[t][h], nodes);
			nodes += tree_count(m, t, h);
		}
		assert_true((uintptr_t)m->key[t] % 64 == 0);
		assert_true((const char *)m->key[t] >= lo &&
			    (const char *)(m->key[t] + (size_t)nodes * 8) <= hi);
		assert_true((const char *)m->r[t] >= lo && (const char *)(m->r[t] + m->n[t]) <= hi);
		for (i = 0; i < tree_count(m, t, 0) * 8; i++)
			assert_true(m->key[t][(size_t)m->layer[t][0] * 8 + i] ==
				    (i < m->n[t] ? m->r[t][i].start : UINT64_MAX));
		for (h = 1; h < H; h++)
			for (uint64_t k = 0; k < tree_count(m, t, h); k++)
				for (uint32_t j = 0; j < 8; j++)
					assert_true(m->key[t][((uint64_t)m->layer[t][h] + k) * 8 + j] ==
						    tree_min(m, t, h - 1, k * 9 + j + 1));
		for (i = 0; i < m->n[t]; i++) {
			const struct rtioreq__range *r = &m->r[t][i];

			assert_true(r->start <= r->end);
			assert_non_null(r->client);
			if (t == PIO)
				assert_true(r->end <= 0xffff);
			if (i)
				assert_true(m->r[t][i - 1].end < r->start);
		}
	}
}

/* Apply a successful add and replace *m (the old map was never published). */
static void add_ok(struct rtioreq__map **m, uint32_t type, uint64_t start, uint64_t end,
		   struct rtioreq_client *c)
{
	struct rtioreq__map *n = NULL;
	void *snap = map_snapshot(*m);

	assert_int_equal(rtioreq__map_add(*m, type, start, end, c, &n, NULL), 0);
	assert_non_null(n);
	assert_ptr_not_equal(n, *m);
	map_unchanged(*m, snap);
	map_check(n);
	rtioreq__map_free(*m);
	*m = n;
}

static void del_ok(struct rtioreq__map **m, uint32_t type, uint64_t start, uint64_t end,
		   struct rtioreq_client *c)
{
	struct rtioreq__map *n = NULL;
	void *snap = map_snapshot(*m);

	assert_int_equal(rtioreq__map_del(*m, type, start, end, c, &n), 0);
	assert_non_null(n);
	map_unchanged(*m, snap);
	map_check(n);
	rtioreq__map_free(*m);
	*m = n;
}

/* An add that must fail with @err and leave *m and *out alone. */
static void add_err(struct rtioreq__map *m, uint32_t type, uint64_t start, uint64_t end,
		    struct rtioreq_client *c, int err)
{
	struct rtioreq__map *sentinel = (struct rtioreq__map *)(void *)&fake[7];
	struct rtioreq__map *n = sentinel;
	void *snap = map_snapshot(m);

	assert_int_equal(rtioreq__map_add(m, type, start, end, c, &n, NULL), err);
	assert_ptr_equal(n, sentinel);
	map_unchanged(m, snap);
}

static void del_err(struct rtioreq__map *m, uint32_t type, uint64_t start, uint64_t end,
		    struct rtioreq_client *c, int err)
{
	struct rtioreq__map *sentinel = (struct rtioreq__map *)(void *)&fake[7];
	struct rtioreq__map *n = sentinel;
	void *snap = map_snapshot(m);

	assert_int_equal(rtioreq__map_del(m, type, start, end, c, &n), err);
	assert_ptr_equal(n, sentinel);
	map_unchanged(m, snap);
}

/* ---------------------------------------------------------------------------------- */
/* White-box map tests */

static void test_empty_map(void **state)
{
	struct rtioreq__map *m = rtioreq__map_empty(), *n;
	struct rtioreq__range r;

	assert_non_null(m);
	map_check(m);
	assert_null(m->dflt);
	assert_int_equal(m->n[PIO], 0);
	assert_int_equal(m->n[MMIO], 0);
	/* a NULL map (no table yet) and an empty one route nowhere */
	assert_null(rtioreq__map_lookup(NULL, PIO, 0, 1));
	for (uint32_t t = 0; t < 4; t++) {
		assert_null(rtioreq__map_lookup(m, t, 0, 1));
		assert_null(rtioreq__map_lookup(m, t, 0xffff, 1));
		assert_null(rtioreq__map_lookup(m, t, UINT64_MAX - 7, 8));
	}
	assert_int_equal(rtioreq__map_conflict(m, PIO, 0, 0xffff, &r), 0);
	assert_int_equal(rtioreq__map_conflict(m, MMIO, 0, UINT64_MAX, &r), 0);
	assert_int_equal(rtioreq__map_conflict(NULL, MMIO, 0, UINT64_MAX, &r), 0);
	assert_int_equal(rtioreq__map_conflict(m, PCICFG, 0, UINT64_MAX, &r), 0);
	del_err(m, PIO, 0, 0, CL(0), -ENOENT);
	del_err(m, MMIO, 0, UINT64_MAX, CL(0), -ENOENT);
	del_err(m, PCICFG, 0, 0, CL(0), -ENOENT);

	/* with a default client, everything unclaimed (and PCICFG) goes there */
	n = NULL;
	assert_int_equal(rtioreq__map_set_default(m, CL(1), &n), 0);
	assert_non_null(n);
	assert_null(m->dflt);
	map_check(n);
	for (uint32_t t = 0; t < 4; t++) {
		assert_ptr_equal(rtioreq__map_lookup(n, t, 0, 1), CL(1));
		assert_ptr_equal(rtioreq__map_lookup(n, t, 0x1234, 4), CL(1));
		assert_ptr_equal(rtioreq__map_lookup(n, t, UINT64_MAX - 7, 8), CL(1));
	}
	rtioreq__map_free(n);
	rtioreq__map_free(m);
	rtioreq__map_free(NULL);
}

/* One range: its edges, straddling either edge, and the default for the rest. */
static void test_one_range(void **state)
{
	struct rtioreq__map *m = rtioreq__map_empty(), *d = NULL;
	const uint32_t sizes[] = { 1, 2, 4, 8 };

	assert_non_null(m);
	add_ok(&m, PIO, 0x100, 0x10f, CL(0));
	assert_int_equal(m->n[PIO], 1);
	assert_int_equal(m->n[MMIO], 0);
	assert_int_equal(m->r[PIO][0].start, 0x100);
	assert_int_equal(m->r[PIO][0].end, 0x10f);
	assert_ptr_equal(m->r[PIO][0].client, CL(0));

	assert_int_equal(rtioreq__map_set_default(m, CL(5), &d), 0);
	rtioreq__map_free(m);
	m = d;
	assert_int_equal(m->n[PIO], 1); /* set_default kept the ranges */
	assert_ptr_equal(m->r[PIO][0].client, CL(0));

	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0x100, 1), CL(0));
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0x100, 4), CL(0));
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0x108, 8), CL(0));
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0x10f, 1), CL(0));
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0x10e, 2), CL(0));
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0x10c, 4), CL(0));
	/* straddling the end: not wholly inside, goes to the default */
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0x10f, 2), CL(5));
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0x10e, 4), CL(5));
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0x109, 8), CL(5));
	/* straddling the start */
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0xff, 2), CL(5));
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0xfc, 8), CL(5));
	/* outside, and the same addresses of another type */
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0xff, 1), CL(5));
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0x110, 1), CL(5));
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0, 1), CL(5));
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0xffff, 1), CL(5));
	for (unsigned int i = 0; i < 4; i++) {
		assert_ptr_equal(rtioreq__map_lookup(m, MMIO, 0x100, sizes[i]), CL(5));
		assert_ptr_equal(rtioreq__map_lookup(m, PCICFG, 0x100, sizes[i]), CL(5));
	}
	/* exhaustive around the range */
	for (uint64_t a = 0xf0; a < 0x120; a++)
		for (unsigned int i = 0; i < 4; i++) {
			bool in = a >= 0x100 && a + sizes[i] - 1 <= 0x10f;

			assert_ptr_equal(rtioreq__map_lookup(m, PIO, a, sizes[i]),
					 in ? CL(0) : CL(5));
		}
	del_ok(&m, PIO, 0x100, 0x10f, CL(0));
	assert_int_equal(m->n[PIO], 0);
	assert_ptr_equal(m->dflt, CL(5));
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0x100, 1), CL(5));
	rtioreq__map_free(m);
}

/* Single-address ranges and ranges at both ends of each address space. */
static void test_extremes(void **state)
{
	struct rtioreq__map *m = rtioreq__map_empty();
	struct rtioreq__range r;

	assert_non_null(m);
	add_ok(&m, PIO, 0, 0, CL(0));
	add_ok(&m, PIO, 0xffff, 0xffff, CL(1));
	add_ok(&m, PIO, 1, 0xfffe, CL(2)); /* fills the gap exactly */
	add_ok(&m, MMIO, 0, 7, CL(3));
	add_ok(&m, MMIO, UINT64_MAX - 0xfff, UINT64_MAX, CL(4));
	add_ok(&m, MMIO, UINT64_MAX - 0x1fff, UINT64_MAX - 0x1000, CL(5));
	assert_int_equal(m->n[PIO], 3);
	assert_int_equal(m->n[MMIO], 3);

	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0, 1), CL(0));
	assert_null(rtioreq__map_lookup(m, PIO, 0, 2));
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 1, 4), CL(2));
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0xfffe, 1), CL(2));
	assert_null(rtioreq__map_lookup(m, PIO, 0xfffe, 2));
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0xffff, 1), CL(1));
	assert_ptr_equal(rtioreq__map_lookup(m, MMIO, 0, 8), CL(3));
	assert_null(rtioreq__map_lookup(m, MMIO, 1, 8));
	assert_ptr_equal(rtioreq__map_lookup(m, MMIO, UINT64_MAX, 1), CL(4));
	assert_ptr_equal(rtioreq__map_lookup(m, MMIO, UINT64_MAX - 7, 8), CL(4));
	assert_ptr_equal(rtioreq__map_lookup(m, MMIO, UINT64_MAX - 0xfff, 8), CL(4));
	assert_ptr_equal(rtioreq__map_lookup(m, MMIO, UINT64_MAX - 0x1007, 8), CL(5));
	assert_null(rtioreq__map_lookup(m, MMIO, UINT64_MAX - 0x1003, 8));
	assert_null(rtioreq__map_lookup(m, MMIO, UINT64_MAX - 0x2000, 1));

	/* the whole MMIO space conflicts with the lowest range */
	assert_int_equal(rtioreq__map_conflict(m, MMIO, 0, UINT64_MAX, &r), 1);
	assert_int_equal(r.start, 0);
	assert_int_equal(r.end, 7);
	assert_ptr_equal(r.client, CL(3));
	assert_int_equal(rtioreq__map_conflict(m, MMIO, 8, UINT64_MAX, &r), 1);
	assert_int_equal(r.start, UINT64_MAX - 0x1fff);
	assert_ptr_equal(r.client, CL(5));
	assert_int_equal(rtioreq__map_conflict(m, MMIO, UINT64_MAX, UINT64_MAX, &r), 1);
	assert_ptr_equal(r.client, CL(4));
	assert_int_equal(rtioreq__map_conflict(m, MMIO, 8, UINT64_MAX - 0x2000, &r), 0);
	add_err(m, MMIO, 0, UINT64_MAX, CL(6), -EEXIST);
	add_err(m, PIO, 0, 0xffff, CL(6), -EEXIST);
	add_err(m, MMIO, UINT64_MAX, UINT64_MAX, CL(6), -EEXIST);
	add_ok(&m, MMIO, 8, UINT64_MAX - 0x2000, CL(6)); /* the rest of MMIO */
	assert_int_equal(m->n[MMIO], 4);
	for (uint64_t a = 0; a < 16; a++)
		assert_ptr_equal(rtioreq__map_lookup(m, MMIO, a, 1), a < 8 ? CL(3) : CL(6));
	rtioreq__map_free(m);
}

/* Many ranges, including adjacent ones, inserted out of order. */
static void test_many_and_adjacent(void **state)
{
	struct rtioreq__map *m = rtioreq__map_empty();
	const uint32_t n = 200;

	assert_non_null(m);
	/* adjacent pair [a, b], [b+1, c] */
	add_ok(&m, MMIO, 0x1000, 0x1fff, CL(0));
	add_ok(&m, MMIO, 0x2000, 0x2fff, CL(1));
	/* and one before, adjacent too */
	add_ok(&m, MMIO, 0x0ff0, 0x0fff, CL(2));
	assert_ptr_equal(rtioreq__map_lookup(m, MMIO, 0x1ffc, 4), CL(0));
	assert_ptr_equal(rtioreq__map_lookup(m, MMIO, 0x1fff, 1), CL(0));
	assert_ptr_equal(rtioreq__map_lookup(m, MMIO, 0x2000, 1), CL(1));
	assert_ptr_equal(rtioreq__map_lookup(m, MMIO, 0x2000, 8), CL(1));
	assert_ptr_equal(rtioreq__map_lookup(m, MMIO, 0x0fff, 1), CL(2));
	assert_ptr_equal(rtioreq__map_lookup(m, MMIO, 0x1000, 1), CL(0));
	/* an access over the joint belongs to neither, even if both were one client's */
	assert_null(rtioreq__map_lookup(m, MMIO, 0x1ffe, 4));
	assert_null(rtioreq__map_lookup(m, MMIO, 0x0ffc, 8));
	assert_null(rtioreq__map_lookup(m, MMIO, 0x2ffc, 8));
	del_ok(&m, MMIO, 0x1000, 0x1fff, CL(0));
	del_ok(&m, MMIO, 0x2000, 0x2fff, CL(1));
	del_ok(&m, MMIO, 0x0ff0, 0x0fff, CL(2));
	assert_int_equal(m->n[MMIO], 0);

	/* n ranges of 16 ports at stride 32, inserted in a scrambled order (7 is coprime) */
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = (k * 7) % n;

		add_ok(&m, PIO, 0x20 * (uint64_t)i, 0x20 * (uint64_t)i + 0xf, CL(i % 4));
	}
	assert_int_equal(m->n[PIO], n);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t s = 0x20 * (uint64_t)i;

		assert_int_equal(m->r[PIO][i].start, s);
		assert_ptr_equal(rtioreq__map_lookup(m, PIO, s, 1), CL(i % 4));
		assert_ptr_equal(rtioreq__map_lookup(m, PIO, s + 0x8, 8), CL(i % 4));
		assert_ptr_equal(rtioreq__map_lookup(m, PIO, s + 0xf, 1), CL(i % 4));
		assert_null(rtioreq__map_lookup(m, PIO, s + 0xf, 2));
		assert_null(rtioreq__map_lookup(m, PIO, s + 0x10, 1));
		assert_null(rtioreq__map_lookup(m, PIO, s + 0x1f, 1));
		assert_null(rtioreq__map_lookup(m, PIO, s + 0x1f, 2));
		add_err(m, PIO, s + 0xf, s + 0x10, CL(5), -EEXIST);
		if (i + 1 < n) /* reaches into the next range */
			add_err(m, PIO, s + 0x1f, s + 0x20, CL(5), -EEXIST);
	}
	/* fill every gap: adjacent on both sides */
	for (uint32_t i = 0; i < n; i++)
		add_ok(&m, PIO, 0x20 * (uint64_t)i + 0x10, 0x20 * (uint64_t)i + 0x1f, CL(5));
	assert_int_equal(m->n[PIO], 2 * n);
	for (uint64_t a = 0; a < 0x20 * (uint64_t)n; a++)
		assert_ptr_equal(rtioreq__map_lookup(m, PIO, a, 1),
				 (a & 0x10) ? CL(5) : CL((a >> 5) % 4));
	/* remove every other one, from the top */
	for (uint32_t i = n; i-- > 0;)
		del_ok(&m, PIO, 0x20 * (uint64_t)i, 0x20 * (uint64_t)i + 0xf, CL(i % 4));
	assert_int_equal(m->n[PIO], n);
	assert_null(rtioreq__map_lookup(m, PIO, 0, 1));
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0x10, 1), CL(5));
	rtioreq__map_free(m);
}

/* Overlaps of every shape are refused with the existing range reported. */
static void test_overlap_rejected(void **state)
{
	struct rtioreq__map *m = rtioreq__map_empty(), *n;
	struct rtioreq__range r;
	static const struct {
		uint64_t start, end;
	} bad[] = {
		{ 0x100, 0x1ff }, /* identical */
		{ 0x140, 0x15f }, /* contained */
		{ 0x100, 0x100 }, /* first address */
		{ 0x1ff, 0x1ff }, /* last address */
		{ 0x80, 0x100 },  /* straddles the start by one */
		{ 0x1ff, 0x2ff }, /* straddles the end by one */
		{ 0x0, 0xffff },  /* contains */
		{ 0xf0, 0x20f },  /* contains */
	};

	assert_non_null(m);
	add_ok(&m, PIO, 0x100, 0x1ff, CL(0));
	add_ok(&m, PIO, 0x400, 0x4ff, CL(1));
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		for (unsigned int c = 0; c < 2; c++) { /* same owner or another: refused */
			memset(&r, 0xa5, sizeof(r));
			n = (struct rtioreq__map *)(void *)&fake[7];
			assert_int_equal(rtioreq__map_add(m, PIO, bad[i].start, bad[i].end,
							  CL(c ? 3 : 0), &n, &r),
					 -EEXIST);
			assert_ptr_equal(n, (void *)&fake[7]);
			assert_int_equal(r.start, 0x100);
			assert_int_equal(r.end, 0x1ff);
			assert_ptr_equal(r.client, CL(0));
			assert_int_equal(rtioreq__map_conflict(m, PIO, bad[i].start, bad[i].end,
							       &r),
					 1);
			assert_int_equal(r.start, 0x100);
			add_err(m, PIO, bad[i].start, bad[i].end, CL(c ? 3 : 0), -EEXIST);
		}
	}
	/* spanning both: the lower one is reported */
	assert_int_equal(rtioreq__map_add(m, PIO, 0x1ff, 0x400, CL(3), &n, &r), -EEXIST);
	assert_int_equal(r.start, 0x100);
	assert_int_equal(rtioreq__map_add(m, PIO, 0x200, 0x400, CL(3), &n, &r), -EEXIST);
	assert_int_equal(r.start, 0x400);
	assert_ptr_equal(r.client, CL(1));
	assert_int_equal(rtioreq__map_add(m, PIO, 0x200, 0x3ff, CL(3), &n, NULL), 0);
	rtioreq__map_free(n);
	/* the same addresses of the other type are free */
	add_ok(&m, MMIO, 0x100, 0x1ff, CL(3));
	add_err(m, MMIO, 0x1ff, 0x1ff, CL(0), -EEXIST);
	rtioreq__map_free(m);
}

static void test_invalid_args(void **state)
{
	struct rtioreq__map *m = rtioreq__map_empty();

	assert_non_null(m);
	add_ok(&m, PIO, 0x10, 0x1f, CL(0));
	add_err(m, PIO, 0x21, 0x20, CL(0), -EINVAL);		 /* start > end */
	add_err(m, MMIO, UINT64_MAX, 0, CL(0), -EINVAL);	 /* start > end */
	add_err(m, PIO, 0xfff0, 0x10000, CL(0), -EINVAL);	 /* port above 0xffff */
	add_err(m, PIO, 0x10000, 0x10000, CL(0), -EINVAL);	 /* port above 0xffff */
	add_err(m, PIO, 0x0, UINT64_MAX, CL(0), -EINVAL);	 /* port above 0xffff */
	add_err(m, PCICFG, 0x0, 0xff, CL(0), -EINVAL);		 /* not routable */
	add_err(m, 3, 0x0, 0xff, CL(0), -EINVAL);		 /* no such type */
	add_err(m, UINT32_MAX, 0x0, 0xff, CL(0), -EINVAL);	 /* no such type */
	add_err(m, MMIO, 0x0, 0xff, NULL, -EINVAL);		 /* no client */
	/* validity is checked before overlap */
	add_err(m, PIO, 0x18, 0x10000, CL(0), -EINVAL);
	add_err(m, PIO, 0x1f, 0x10, CL(0), -EINVAL);
	/* the valid edges */
	add_ok(&m, PIO, 0xfff0, 0xffff, CL(0));
	add_ok(&m, MMIO, 0x10000, UINT64_MAX, CL(0));
	rtioreq__map_free(m);
}

static void test_del_not_found(void **state)
{
	struct rtioreq__map *m = rtioreq__map_empty();

	assert_non_null(m);
	add_ok(&m, PIO, 0x100, 0x1ff, CL(0));
	add_ok(&m, MMIO, 0x100, 0x1ff, CL(1));
	del_err(m, PIO, 0x100, 0x1ff, CL(1), -ENOENT);	/* wrong client */
	del_err(m, PIO, 0x100, 0x1fe, CL(0), -ENOENT);	/* not exact: shorter */
	del_err(m, PIO, 0x100, 0x200, CL(0), -ENOENT);	/* longer */
	del_err(m, PIO, 0x101, 0x1ff, CL(0), -ENOENT);	/* starts inside */
	del_err(m, PIO, 0xff, 0x1ff, CL(0), -ENOENT);	/* starts before */
	del_err(m, PIO, 0x0, 0xf, CL(0), -ENOENT);	/* elsewhere, below */
	del_err(m, PIO, 0x300, 0x3ff, CL(0), -ENOENT);	/* elsewhere, above */
	del_err(m, MMIO, 0x100, 0x1ff, CL(0), -ENOENT); /* other type's owner */
	del_err(m, PCICFG, 0x100, 0x1ff, CL(0), -ENOENT);
	del_err(m, 9, 0x100, 0x1ff, CL(0), -ENOENT);
	del_err(m, PIO, 0x100, 0x1ff, NULL, -ENOENT);
	del_ok(&m, PIO, 0x100, 0x1ff, CL(0));
	del_err(m, PIO, 0x100, 0x1ff, CL(0), -ENOENT); /* twice */
	assert_int_equal(m->n[MMIO], 1);
	del_ok(&m, MMIO, 0x100, 0x1ff, CL(1));
	rtioreq__map_free(m);
}

static void test_drop_client(void **state)
{
	struct rtioreq__map *m = rtioreq__map_empty(), *n = NULL;
	void *snap;

	assert_non_null(m);
	for (uint64_t i = 0; i < 12; i++) {
		add_ok(&m, PIO, 0x10 * i, 0x10 * i + 7, CL(i % 3));
		add_ok(&m, MMIO, 0x1000 * i, 0x1000 * i + 0xfff, CL((i + 1) % 3));
	}
	assert_int_equal(rtioreq__map_set_default(m, CL(1), &n), 0);
	rtioreq__map_free(m);
	m = n;

	/* a client with nothing: an identical copy */
	snap = map_snapshot(m);
	assert_int_equal(rtioreq__map_drop_client(m, CL(4), &n), 0);
	assert_ptr_not_equal(n, m);
	map_check(n);
	assert_int_equal(n->n[PIO], 12);
	assert_int_equal(n->n[MMIO], 12);
	assert_ptr_equal(n->dflt, CL(1));
	/* same counts, same layout: the arrays and the search index byte for byte */
	assert_int_equal(n->size, m->size);
	assert_memory_equal(n->storage, m->storage,
			    m->size - offsetof(struct rtioreq__map, storage));
	rtioreq__map_free(n);
	map_unchanged(m, snap);

	/* the default client with ranges: both its ranges and its default role go */
	snap = map_snapshot(m);
	assert_int_equal(rtioreq__map_drop_client(m, CL(1), &n), 0);
	map_unchanged(m, snap);
	map_check(n);
	assert_null(n->dflt);
	assert_int_equal(n->n[PIO], 8);
	assert_int_equal(n->n[MMIO], 8);
	for (uint32_t t = 0; t < 2; t++)
		for (uint32_t i = 0; i < n->n[t]; i++)
			assert_ptr_not_equal(n->r[t][i].client, CL(1));
	for (uint64_t i = 0; i < 12; i++) {
		struct rtioreq_client *p = i % 3 == 1 ? NULL : CL(i % 3);
		struct rtioreq_client *q = (i + 1) % 3 == 1 ? NULL : CL((i + 1) % 3);

		assert_ptr_equal(rtioreq__map_lookup(n, PIO, 0x10 * i, 8), p);
		assert_ptr_equal(rtioreq__map_lookup(n, MMIO, 0x1000 * i + 0x800, 4), q);
	}
	rtioreq__map_free(m);
	m = n;

	/* another client: the default stays (none here), the rest stays */
	assert_int_equal(rtioreq__map_set_default(m, CL(2), &n), 0);
	rtioreq__map_free(m);
	m = n;
	assert_int_equal(rtioreq__map_drop_client(m, CL(0), &n), 0);
	map_check(n);
	assert_ptr_equal(n->dflt, CL(2));
	assert_int_equal(n->n[PIO], 4);
	assert_int_equal(n->n[MMIO], 4);
	assert_ptr_equal(rtioreq__map_lookup(n, PIO, 0, 1), CL(2)); /* was CL(0)'s */
	rtioreq__map_free(m);
	m = n;
	assert_int_equal(rtioreq__map_drop_client(m, CL(2), &n), 0);
	map_check(n);
	assert_null(n->dflt);
	assert_int_equal(n->n[PIO], 0);
	assert_int_equal(n->n[MMIO], 0);
	rtioreq__map_free(m);
	rtioreq__map_free(n);
}

static void test_set_default(void **state)
{
	struct rtioreq__map *m = rtioreq__map_empty(), *n = NULL;
	struct rtioreq__map *sentinel = (struct rtioreq__map *)(void *)&fake[7];
	void *snap;

	assert_non_null(m);
	add_ok(&m, PIO, 0x60, 0x64, CL(0));
	add_ok(&m, MMIO, 0xfee00000, 0xfee00fff, CL(1));
	snap = map_snapshot(m);
	assert_int_equal(rtioreq__map_set_default(m, CL(2), &n), 0);
	map_unchanged(m, snap);
	map_check(n);
	assert_ptr_equal(n->dflt, CL(2));
	assert_int_equal(n->n[PIO], 1);
	assert_int_equal(n->n[MMIO], 1);
	/* same counts, same layout: the arrays and the search index byte for byte */
	assert_int_equal(n->size, m->size);
	assert_memory_equal(n->storage, m->storage,
			    m->size - offsetof(struct rtioreq__map, storage));
	rtioreq__map_free(m);
	m = n;

	/* a second default client is refused, the map untouched */
	snap = map_snapshot(m);
	n = sentinel;
	assert_int_equal(rtioreq__map_set_default(m, CL(3), &n), -EEXIST);
	assert_ptr_equal(n, sentinel);
	assert_int_equal(rtioreq__map_set_default(m, NULL, &n), -EEXIST);
	assert_ptr_equal(n, sentinel);
	map_unchanged(m, snap);
	/* the same one again is harmless */
	assert_int_equal(rtioreq__map_set_default(m, CL(2), &n), 0);
	assert_ptr_equal(n->dflt, CL(2));
	rtioreq__map_free(n);
	/* after dropping it, another may take the role */
	assert_int_equal(rtioreq__map_drop_client(m, CL(2), &n), 0);
	rtioreq__map_free(m);
	m = n;
	assert_int_equal(rtioreq__map_set_default(m, CL(3), &n), 0);
	assert_ptr_equal(n->dflt, CL(3));
	assert_ptr_equal(rtioreq__map_lookup(n, PIO, 0x60, 4), CL(0));
	assert_ptr_equal(rtioreq__map_lookup(n, PIO, 0x64, 2), CL(3));
	/* add/del carry the default over */
	rtioreq__map_free(m);
	m = n;
	add_ok(&m, PIO, 0x70, 0x70, CL(0));
	assert_ptr_equal(m->dflt, CL(3));
	del_ok(&m, MMIO, 0xfee00000, 0xfee00fff, CL(1));
	assert_ptr_equal(m->dflt, CL(3));
	rtioreq__map_free(m);
}

/* Every map ever built stays as it was: holding a chain of versions, each still
 * answers as it did when built (what a reader holding an old pointer sees). */
static void test_copy_on_write_versions(void **state)
{
	struct rtioreq__map *v[8];
	void *snap[8];
	unsigned int k = 0;

	v[0] = rtioreq__map_empty();
	assert_non_null(v[0]);
	assert_int_equal(rtioreq__map_add(v[0], PIO, 0x10, 0x1f, CL(0), &v[1], NULL), 0);
	assert_int_equal(rtioreq__map_add(v[1], MMIO, 0x10, 0x1f, CL(1), &v[2], NULL), 0);
	assert_int_equal(rtioreq__map_set_default(v[2], CL(2), &v[3]), 0);
	assert_int_equal(rtioreq__map_add(v[3], PIO, 0x0, 0xf, CL(1), &v[4], NULL), 0);
	assert_int_equal(rtioreq__map_del(v[4], PIO, 0x10, 0x1f, CL(0), &v[5]), 0);
	assert_int_equal(rtioreq__map_drop_client(v[5], CL(2), &v[6]), 0);
	assert_int_equal(rtioreq__map_drop_client(v[6], CL(1), &v[7]), 0);
	for (k = 0; k < 8; k++) {
		map_check(v[k]);
		snap[k] = map_snapshot(v[k]);
	}
	for (k = 0; k < 8; k++)
		for (unsigned int j = 0; j < 8; j++)
			if (j != k)
				assert_ptr_not_equal(v[j], v[k]);
	/* spot answers per version */
	assert_null(rtioreq__map_lookup(v[0], PIO, 0x10, 1));
	assert_ptr_equal(rtioreq__map_lookup(v[1], PIO, 0x10, 1), CL(0));
	assert_null(rtioreq__map_lookup(v[1], MMIO, 0x10, 1));
	assert_ptr_equal(rtioreq__map_lookup(v[2], MMIO, 0x10, 1), CL(1));
	assert_null(rtioreq__map_lookup(v[2], PIO, 0x0, 1));
	assert_ptr_equal(rtioreq__map_lookup(v[3], PIO, 0x0, 1), CL(2));
	assert_ptr_equal(rtioreq__map_lookup(v[4], PIO, 0x0, 1), CL(1));
	assert_ptr_equal(rtioreq__map_lookup(v[4], PIO, 0x10, 1), CL(0));
	assert_ptr_equal(rtioreq__map_lookup(v[5], PIO, 0x10, 1), CL(2));
	assert_null(rtioreq__map_lookup(v[6], PIO, 0x10, 1));
	assert_ptr_equal(rtioreq__map_lookup(v[6], PIO, 0x0, 1), CL(1));
	assert_null(rtioreq__map_lookup(v[7], PIO, 0x0, 1));
	assert_null(rtioreq__map_lookup(v[7], MMIO, 0x10, 1));
	assert_int_equal(v[7]->n[PIO] + v[7]->n[MMIO], 0);
	for (k = 0; k < 8; k++) {
		map_unchanged(v[k], snap[k]);
		rtioreq__map_free(v[k]);
	}
}

/* ---------------------------------------------------------------------------------- */
/* The search index at every depth: maps of 0..10,001 ranges */

#define DEPTH_SLOTS 10001u /* 1,251 leaves: 5 layers, the top ones partly filled */
/* slot s: [depth_base + s * 0x40, + 0x1f], gaps between; set by each depth test */
static uint64_t depth_base;

static uint64_t depth_start(uint32_t s)
{
	return depth_base + (uint64_t)s * 0x40;
}

/* Sizes where the tree gains a layer or fills one: up to 10 (one leaf, then two), and
 * around 8 * 9^k (9^k leaves fill k layers above them; one more start needs another),
 * and the top. */
static bool depth_size_checked(uint32_t n)
{
	if (n <= 10 || n >= DEPTH_SLOTS - 1)
		return true;
	for (uint32_t full = 72; full < DEPTH_SLOTS; full *= 9)
		if (n + 1 >= full && n <= full + 1)
			return true;
	return false;
}

/* Every search of @m agrees on @addr: the scalar and AVX2 descents (the latter where
 * the CPU has it), and the one search routine with the map's choice and with the
 * scalar descent forced. Return the answer. */
static uint32_t depth_search(struct rtioreq__map *m, uint64_t addr)
{
	uint32_t want = rtioreq__map_descend(m, MMIO, addr), avx2 = m->avx2;

#if RTIOREQ__MAP_HAVE_AVX2
	if (avx2)
		assert_int_equal(rtioreq__map_descend_avx2(m, MMIO, addr), want);
#endif
	assert_int_equal(rtioreq__map_upper_bound(m, MMIO, addr), want);
	m->avx2 = 0;
	assert_int_equal(rtioreq__map_upper_bound(m, MMIO, addr), want);
	m->avx2 = avx2;
	return want;
}

/* Every boundary of every slot, present or not, against the model @present. */
static void depth_check(struct rtioreq__map *m, const bool *present, uint32_t n)
{
	uint32_t below = 0; /* present slots before slot s */

	map_check(m);
	assert_int_equal(m->n[MMIO], n);
	assert_int_equal(rtioreq__map_upper_bound(m, MMIO, 0), 0);
	assert_int_equal(rtioreq__map_upper_bound(m, MMIO, UINT64_MAX), n);
	assert_int_equal(depth_search(m, 0), 0);
	assert_int_equal(depth_search(m, UINT64_MAX), n);
	assert_int_equal(depth_search(m, UINT64_MAX - 1), n);
	assert_ptr_equal(rtioreq__map_lookup(m, MMIO, UINT64_MAX, 1), CL(7));
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, depth_start(0), 1), CL(7));
	for (uint32_t s = 0; s < DEPTH_SLOTS; s++) {
		uint64_t a = depth_start(s);
		struct rtioreq_client *c = present[s] ? CL(s % 4) : CL(7);
		uint32_t in = below + present[s];

		/* the descents at every size, even where lookups bisect */
		assert_int_equal(depth_search(m, a - 1), below);
		assert_int_equal(depth_search(m, a), in);
		assert_int_equal(depth_search(m, a + 0x1f), in);
		assert_int_equal(depth_search(m, a + 0x20), in);
		assert_int_equal(rtioreq__map_upper_bound(m, MMIO, a - 1), below);
		assert_ptr_equal(rtioreq__map_lookup(m, MMIO, a - 1, 1), CL(7));
		assert_int_equal(rtioreq__map_upper_bound(m, MMIO, a), in);
		assert_ptr_equal(rtioreq__map_lookup(m, MMIO, a, 8), c);
		assert_int_equal(rtioreq__map_upper_bound(m, MMIO, a + 0x1f), in);
		assert_ptr_equal(rtioreq__map_lookup(m, MMIO, a + 0x1f, 1), c);
		assert_ptr_equal(rtioreq__map_lookup(m, MMIO, a + 0x1f, 2), CL(7));
		assert_int_equal(rtioreq__map_upper_bound(m, MMIO, a + 0x20), in);
		assert_ptr_equal(rtioreq__map_lookup(m, MMIO, a + 0x20, 1), CL(7));
		below = in;
	}
}

/* Grow a map to DEPTH_SLOTS ranges in random order, checking every boundary at each
 * size where the tree changes shape (0..10, 8 * 9^k + {-1, 0, 1}, 10,000+): one leaf,
 * full layers, a layer more; then shrink it by deletes down to 8 * 9^3 - 1 (each update
 * copies the map: going down to 0 would double the test's time, and the smaller maps of
 * map_del are the model test's). */
static void index_depths(uint64_t base)
{
	uint32_t *order = malloc(DEPTH_SLOTS * sizeof(*order));
	bool *present = calloc(DEPTH_SLOTS, sizeof(*present));
	struct rtioreq__map *m = rtioreq__map_empty(), *n;
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	uint32_t i, checked = 0;

	depth_base = base;
	assert_non_null(order);
	assert_non_null(present);
	assert_non_null(m);
	assert_int_equal(rtioreq__map_set_default(m, CL(7), &n), 0);
	rtioreq__map_free(m);
	m = n;
	for (i = 0; i < DEPTH_SLOTS; i++)
		order[i] = i;
	for (i = DEPTH_SLOTS - 1; i > 0; i--) { /* Fisher-Yates with xorshift64 */
		uint32_t j, tmp;

		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		j = (uint32_t)(seed % (i + 1));
		tmp = order[i];
		order[i] = order[j];
		order[j] = tmp;
	}
	depth_check(m, present, 0);
	for (i = 0; i < DEPTH_SLOTS; i++) {
		uint32_t s = order[i];
		uint64_t a = depth_start(s);

		assert_int_equal(rtioreq__map_add(m, MMIO, a, a + 0x1f, CL(s % 4), &n, NULL), 0);
		rtioreq__map_free(m);
		m = n;
		present[s] = true;
		if (depth_size_checked(i + 1)) {
			depth_check(m, present, i + 1);
			checked++;
		}
	}
	/* a change of the other type copies this tree as it is (map_clone): one PIO range
	 * below every slot's address, checked like every other map, then gone again */
	assert_int_equal(rtioreq__map_add(m, PIO, 0, 0x1f, CL(5), &n, NULL), 0);
	rtioreq__map_free(m);
	m = n;
	depth_check(m, present, DEPTH_SLOTS);
	assert_ptr_equal(rtioreq__map_lookup(m, PIO, 0x10, 1), CL(5));
	assert_int_equal(rtioreq__map_del(m, PIO, 0, 0x1f, CL(5), &n), 0);
	rtioreq__map_free(m);
	m = n;
	for (i = 0; i < DEPTH_SLOTS - 5831; i++) { /* in another order: the same one shifted */
		uint32_t s = order[(i + DEPTH_SLOTS / 2) % DEPTH_SLOTS];
		uint64_t a = depth_start(s);

		assert_int_equal(rtioreq__map_del(m, MMIO, a, a + 0x1f, CL(s % 4), &n), 0);
		rtioreq__map_free(m);
		m = n;
		present[s] = false;
		if (depth_size_checked(DEPTH_SLOTS - 1 - i)) {
			depth_check(m, present, DEPTH_SLOTS - 1 - i);
			checked++;
		}
	}
	/* 22 sizes (0..10, 3 around each 8 * 9^k for k = 1..3, 10,000, 10,001), each
	 * checked growing (but 0); shrinking: 10,000, 5833, 5832, 5831 */
	assert_int_equal(checked, 22 - 1 + 4);
	rtioreq__map_free(m);
	free(present);
	free(order);
}

/* The tree at every depth with small addresses, then with addresses around 2^63, where
 * the AVX2 compare's flip of the top bit matters (starts on both sides of it). On a
 * CPU with AVX2, every map must have chosen it (map_check). */
static void test_index_depths(void **state)
{
	(void)state;
#if RTIOREQ__MAP_HAVE_AVX2
	print_message("descents checked: scalar%s\n",
		      __builtin_cpu_supports("avx2") ? " and AVX2" : " only (no AVX2 here)");
#endif
	index_depths(0x40);
	index_depths((UINT64_C(1) << 63) - (uint64_t)DEPTH_SLOTS / 2 * 0x40);
}

/* ---------------------------------------------------------------------------------- */
/* Randomized model test: the map against a linear list */

#define MODEL_MAX 256
#define MODEL_WIN 40 /* addresses per window */
#define MODEL_NCL 4

struct model {
	struct rtioreq__range r[MODEL_MAX];
	uint32_t type[MODEL_MAX];
	unsigned int n;
	struct rtioreq_client *dflt;
};

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static uint32_t rnd_below(uint32_t n)
{
	return (uint32_t)((rnd() >> 32) % n);
}

/* Window bases per type: the bottom of the space and its very top. */
static uint64_t win_base(uint32_t type, unsigned int w)
{
	if (!w)
		return 0;
	return type == PIO ? 0x10000 - MODEL_WIN : UINT64_MAX - (MODEL_WIN - 1);
}

static int model_add(struct model *mo, uint32_t type, uint64_t start, uint64_t end,
		     struct rtioreq_client *c, struct rtioreq__range *conflict)
{
	int found = -1;

	if (type >= RTIOREQ__NTYPES || start > end || !c)
		return -EINVAL;
	if (type == PIO && end > 0xffff)
		return -EINVAL;
	for (unsigned int i = 0; i < mo->n; i++) {
		if (mo->type[i] != type || mo->r[i].end < start || mo->r[i].start > end)
			continue;
		if (found < 0 || mo->r[i].start < mo->r[found].start)
			found = (int)i;
	}
	if (found >= 0) {
		*conflict = mo->r[found];
		return -EEXIST;
	}
	assert_true(mo->n < MODEL_MAX);
	mo->r[mo->n] = (struct rtioreq__range){ .start = start, .end = end, .client = c };
	mo->type[mo->n++] = type;
	return 0;
}

static int model_del(struct model *mo, uint32_t type, uint64_t start, uint64_t end,
		     struct rtioreq_client *c)
{
	for (unsigned int i = 0; i < mo->n; i++) {
		if (mo->type[i] == type && mo->r[i].start == start && mo->r[i].end == end &&
		    mo->r[i].client == c) {
			mo->n--;
			mo->r[i] = mo->r[mo->n];
			mo->type[i] = mo->type[mo->n];
			return 0;
		}
	}
	return -ENOENT;
}

static void model_drop(struct model *mo, struct rtioreq_client *c)
{
	for (unsigned int i = 0; i < mo->n;) {
		if (mo->r[i].client == c) {
			mo->n--;
			mo->r[i] = mo->r[mo->n];
			mo->type[i] = mo->type[mo->n];
		} else {
			i++;
		}
	}
	if (mo->dflt == c)
		mo->dflt = NULL;
}

static struct rtioreq_client *model_lookup(const struct model *mo, uint32_t type, uint64_t addr,
					   uint32_t size)
{
	uint64_t last = addr + (size - 1);

	for (unsigned int i = 0; i < mo->n; i++)
		if (mo->type[i] == type && mo->r[i].start <= addr && last <= mo->r[i].end)
			return mo->r[i].client;
	return mo->dflt;
}

/* The map's content equals the model's (same set of ranges per type) and answers alike. */
static void model_compare(const struct model *mo, const struct rtioreq__map *m)
{
	static const uint32_t sizes[] = { 1, 2, 4, 8 };
	unsigned int cnt[RTIOREQ__NTYPES] = { 0, 0 };
	struct rtioreq__range r;

	map_check(m);
	assert_ptr_equal(m->dflt, mo->dflt);
	for (unsigned int i = 0; i < mo->n; i++) {
		uint32_t t = mo->type[i];

		cnt[t]++;
		/* the model's range is in the map: its own start finds exactly it */
		assert_int_equal(rtioreq__map_conflict(m, t, mo->r[i].start, mo->r[i].start, &r),
				 1);
		assert_int_equal(r.start, mo->r[i].start);
		assert_int_equal(r.end, mo->r[i].end);
		assert_ptr_equal(r.client, mo->r[i].client);
	}
	assert_int_equal(m->n[PIO], cnt[PIO]);
	assert_int_equal(m->n[MMIO], cnt[MMIO]);
	for (uint32_t t = 0; t < 3; t++) {
		for (unsigned int w = 0; w < 2; w++) {
			uint64_t base = win_base(t == PCICFG ? MMIO : t, w);

			for (uint64_t off = 0; off < MODEL_WIN; off++) {
				for (unsigned int s = 0; s < 4; s++) {
					uint64_t a = base + off;

					if (a > UINT64_MAX - (sizes[s] - 1))
						continue; /* the engine refuses it */
					assert_ptr_equal(rtioreq__map_lookup(m, t, a, sizes[s]),
							 t == PCICFG ? mo->dflt
								     : model_lookup(mo, t, a,
										    sizes[s]));
				}
			}
		}
	}
}

static void test_model_random(void **state)
{
	const uint64_t seed = 0x5eed0f2a9e3779b9ull;
	const unsigned int nops = 6000;
	unsigned int stat[8] = { 0 };
	struct rtioreq__map *m = rtioreq__map_empty();
	struct model *mo = calloc(1, sizeof(*mo));

	assert_non_null(m);
	assert_non_null(mo);
	rng_state = seed;
	print_message("seed 0x%llx, %u ops\n", (unsigned long long)seed, nops);
	for (unsigned int op = 0; op < nops; op++) {
		struct rtioreq__map *n = NULL;
		struct rtioreq__range rc, rm;
		uint32_t pick = rnd_below(100);
		uint32_t type = rnd_below(16) ? rnd_below(2) : 2 + rnd_below(3);
		uint32_t ct = type < RTIOREQ__NTYPES ? type : MMIO;
		struct rtioreq_client *c = CL(rnd_below(MODEL_NCL));
		uint64_t start, end;
		void *snap = map_snapshot(m);
		int r, e;

		/* a range in one window, short so that the window holds several; PIO ranges
		 * near the top may run past 0xffff; sometimes start > end */
		start = win_base(ct, rnd_below(2)) + rnd_below(MODEL_WIN);
		end = start + (rnd_below(4) ? rnd_below(6) : rnd_below(MODEL_WIN));
		if (ct == MMIO && end < start)
			end = UINT64_MAX; /* wrapped past the top */
		if (!rnd_below(40))
			end = start - 1 - rnd_below(3);
		if (pick < 55) {
			r = rtioreq__map_add(m, type, start, end, c, &n, &rc);
			e = model_add(mo, type, start, end, c, &rm);
			assert_int_equal(r, e);
			if (r == -EEXIST) {
				assert_int_equal(rc.start, rm.start);
				assert_int_equal(rc.end, rm.end);
				assert_ptr_equal(rc.client, rm.client);
			}
			stat[r == 0 ? 0 : r == -EEXIST ? 1 : 2]++;
		} else if (pick < 95) {
			/* mostly an existing range, sometimes with the wrong client */
			if (mo->n && rnd_below(4)) {
				unsigned int i = rnd_below(mo->n);

				type = mo->type[i];
				start = mo->r[i].start;
				end = mo->r[i].end;
				c = rnd_below(5) ? mo->r[i].client : CL(rnd_below(MODEL_NCL));
			}
			r = rtioreq__map_del(m, type, start, end, c, &n);
			e = model_del(mo, type, start, end, c);
			assert_int_equal(r, e);
			stat[r == 0 ? 3 : 4]++;
		} else if (pick < 98) {
			r = rtioreq__map_set_default(m, c, &n);
			e = mo->dflt && mo->dflt != c ? -EEXIST : 0;
			assert_int_equal(r, e);
			if (!r)
				mo->dflt = c;
			stat[5 + !!r]++;
		} else {
			r = rtioreq__map_drop_client(m, c, &n);
			assert_int_equal(r, 0);
			model_drop(mo, c);
			stat[7]++;
		}
		map_unchanged(m, snap);
		if (!r) {
			assert_non_null(n);
			assert_ptr_not_equal(n, m);
			rtioreq__map_free(m); /* superseded, never published */
			m = n;
		}
		model_compare(mo, m);
	}
	print_message("add ok %u eexist %u einval %u; del ok %u enoent %u; dflt ok %u "
		      "eexist %u; drop %u; final %u ranges\n",
		      stat[0], stat[1], stat[2], stat[3], stat[4], stat[5], stat[6], stat[7],
		      mo->n);
	/* every outcome was exercised a fair number of times */
	for (unsigned int i = 0; i < 8; i++)
		assert_true(stat[i] >= 20);
	rtioreq__map_free(m);
	free(mo);
}

/* ---------------------------------------------------------------------------------- */
/* Public API */

static void test_api_errors(void **state)
{
	char owner[RTIOREQ_NAME_LEN];
	struct rtioreq_client *a, *b, *d;
	uint64_t s = 1, e = 1;
	struct h_vm h;

	h_vm_start(&h, 1);
	a = mk_client(h.vm, "dev-a", h_const, 0xa, false);
	b = mk_client(h.vm, "dev-b", NULL, 0, false); /* a blocking client: same rules */
	d = mk_client(h.vm, "dflt", h_const, 0xd, true);

	assert_int_equal(rtioreq_range_conflict(h.vm, PIO, 0, 0xffff, &s, &e, owner), 0);
	assert_int_equal(s, 1); /* outputs untouched */
	assert_int_equal(rtioreq_range_add(a, PIO, 0x3f8, 0x3ff), 0);
	assert_int_equal(rtioreq_range_add(b, PIO, 0x3f0, 0x3f7), 0); /* adjacent */
	assert_int_equal(rtioreq_range_add(b, PIO, 0x3fc, 0x403), -EEXIST);
	assert_int_equal(rtioreq_range_add(b, PIO, 0x3f8, 0x3ff), -EEXIST);
	assert_int_equal(rtioreq_range_add(a, PIO, 0x3f8, 0x3ff), -EEXIST); /* own, again */
	assert_int_equal(rtioreq_range_add(a, PIO, 0x3f9, 0x3f9), -EEXIST); /* contained */
	assert_int_equal(rtioreq_range_conflict(h.vm, PIO, 0x3fc, 0x403, &s, &e, owner), 1);
	assert_int_equal(s, 0x3f8);
	assert_int_equal(e, 0x3ff);
	assert_string_equal(owner, "dev-a");
	assert_int_equal(rtioreq_range_conflict(h.vm, PIO, 0x3e0, 0x3f0, NULL, NULL, owner), 1);
	assert_string_equal(owner, "dev-b");
	assert_int_equal(rtioreq_range_conflict(h.vm, PIO, 0x3e0, 0x3f0, NULL, NULL, NULL), 1);
	assert_int_equal(rtioreq_range_conflict(h.vm, MMIO, 0x3f8, 0x3ff, &s, &e, owner), 0);
	assert_int_equal(rtioreq_range_conflict(h.vm, PCICFG, 0, UINT64_MAX, &s, &e, owner), 0);

	assert_int_equal(rtioreq_range_add(a, PIO, 0x500, 0x4ff), -EINVAL);
	assert_int_equal(rtioreq_range_add(a, PIO, 0xfff0, 0x10000), -EINVAL);
	assert_int_equal(rtioreq_range_add(a, PCICFG, 0, 0xff), -EINVAL);
	assert_int_equal(rtioreq_range_add(a, 7, 0, 0xff), -EINVAL);
	assert_int_equal(rtioreq_range_add(d, MMIO, 0, 0xff), -EINVAL); /* default client */

	assert_int_equal(rtioreq_range_del(a, PIO, 0x3f0, 0x3f7), -ENOENT); /* b's */
	assert_int_equal(rtioreq_range_del(a, PIO, 0x3f8, 0x3fe), -ENOENT); /* not exact */
	assert_int_equal(rtioreq_range_del(a, MMIO, 0x3f8, 0x3ff), -ENOENT); /* type */
	assert_int_equal(rtioreq_range_del(a, PIO, 0x1000, 0x1fff), -ENOENT); /* unknown */
	assert_int_equal(rtioreq_range_del(d, PIO, 0x3f8, 0x3ff), -ENOENT);
	assert_int_equal(rtioreq_range_del(a, PIO, 0x3f8, 0x3ff), 0);
	assert_int_equal(rtioreq_range_del(a, PIO, 0x3f8, 0x3ff), -ENOENT);
	assert_int_equal(rtioreq_range_conflict(h.vm, PIO, 0x3f8, 0x3ff, &s, &e, owner), 0);
	assert_int_equal(rtioreq_range_add(b, PIO, 0x3f8, 0x3ff), 0); /* free again */

	/* the very top of MMIO */
	assert_int_equal(rtioreq_range_add(a, MMIO, UINT64_MAX - 0xfff, UINT64_MAX), 0);
	assert_int_equal(rtioreq_range_add(b, MMIO, UINT64_MAX, UINT64_MAX), -EEXIST);
	assert_int_equal(rtioreq_range_conflict(h.vm, MMIO, UINT64_MAX, UINT64_MAX, &s, &e,
						owner),
			 1);
	assert_true(s == UINT64_MAX - 0xfff && e == UINT64_MAX);
	assert_string_equal(owner, "dev-a");

	/* a shut-down client adds nothing; its ranges are gone */
	assert_int_equal(rtioreq_client_shutdown(b), 0);
	assert_int_equal(rtioreq_range_add(b, PIO, 0x600, 0x6ff), -ENODEV);
	assert_int_equal(rtioreq_range_conflict(h.vm, PIO, 0x3f0, 0x3ff, &s, &e, owner), 0);
	assert_int_equal(rtioreq_range_del(b, PIO, 0x3f0, 0x3f7), -ENOENT);
	assert_int_equal(rtioreq_client_destroy(b), 0);
	/* destroying a client frees its ranges for others */
	assert_int_equal(rtioreq_client_destroy(a), 0);
	assert_int_equal(rtioreq_range_conflict(h.vm, MMIO, 0, UINT64_MAX, &s, &e, owner), 0);
	a = mk_client(h.vm, "dev-a2", h_const, 0xa2, false);
	assert_int_equal(rtioreq_range_add(a, MMIO, UINT64_MAX - 0xfff, UINT64_MAX), 0);
	h_vm_stop(&h);
}

/* Real requests: the range's client after add, the default after del, on both paths. */
static void test_api_routing(void **state)
{
	struct rtioreq_thread_attr ta = { .cpu = -1 };
	struct rtioreq_client *a, *b;
	struct rtioreq_vm_stats st;
	struct rtioreq_poller *p;
	struct h_vm h;

	h_vm_start(&h, 2);
	a = mk_client(h.vm, "dev-a", h_const, 0xaaaa, false);
	b = mk_client(h.vm, "dev-b", h_const, 0xbbbb, false);
	p = rtioreq_poller_create(h.eng, &ta);
	assert_non_null(p);
	assert_int_equal(rtioreq_vm_set_poller(h.vm, 1, p), 0); /* vcpu 0: dispatcher */

	for (uint16_t v = 0; v < 2; v++) {
		/* no range, no default: unclaimed, reads all ones */
		assert_int_equal(h_io(&h, v, MMIO, RD, UINT64_MAX - 7, 8, 0), UINT64_MAX);
		assert_int_equal(h_io(&h, v, PIO, RD, 0x60, 1, 0), 0xff);
	}
	mk_client(h.vm, "dflt", h_const, 0xdddd, true);
	assert_int_equal(rtioreq_range_add(a, MMIO, UINT64_MAX - 0xfff, UINT64_MAX), 0);
	assert_int_equal(rtioreq_range_add(b, MMIO, UINT64_MAX - 0x1fff, UINT64_MAX - 0x1000),
			 0);
	assert_int_equal(rtioreq_range_add(a, PIO, 0x60, 0x60), 0);
	assert_int_equal(rtioreq_range_add(b, PIO, 0x61, 0x64), 0);
	for (uint16_t v = 0; v < 2; v++) {
		assert_int_equal(h_io(&h, v, MMIO, RD, UINT64_MAX - 7, 8, 0), 0xaaaa);
		assert_int_equal(h_io(&h, v, MMIO, RD, UINT64_MAX, 1, 0), 0xaa);
		assert_int_equal(h_io(&h, v, MMIO, RD, UINT64_MAX - 0xfff, 4, 0), 0xaaaa);
		assert_int_equal(h_io(&h, v, MMIO, RD, UINT64_MAX - 0x1003, 4, 0), 0xbbbb);
		/* across the joint of two adjacent ranges: the default */
		assert_int_equal(h_io(&h, v, MMIO, RD, UINT64_MAX - 0x1003, 8, 0), 0xdddd);
		assert_int_equal(h_io(&h, v, MMIO, RD, UINT64_MAX - 0x2000, 1, 0), 0xdd);
		assert_int_equal(h_io(&h, v, PIO, RD, 0x60, 1, 0), 0xaa);
		assert_int_equal(h_io(&h, v, PIO, RD, 0x60, 2, 0), 0xdddd); /* straddles */
		assert_int_equal(h_io(&h, v, PIO, RD, 0x61, 4, 0), 0xbbbb);
		assert_int_equal(h_io(&h, v, PIO, RD, 0x62, 4, 0), 0xdddd);
		assert_int_equal(h_io(&h, v, PCICFG, RD, 0x60, 1, 0), 0xdd);
	}
	assert_int_equal(rtioreq_range_del(a, MMIO, UINT64_MAX - 0xfff, UINT64_MAX), 0);
	assert_int_equal(rtioreq_range_del(b, PIO, 0x61, 0x64), 0);
	for (uint16_t v = 0; v < 2; v++) {
		assert_int_equal(h_io(&h, v, MMIO, RD, UINT64_MAX - 7, 8, 0), 0xdddd);
		assert_int_equal(h_io(&h, v, PIO, RD, 0x61, 4, 0), 0xdddd);
		assert_int_equal(h_io(&h, v, PIO, RD, 0x60, 1, 0), 0xaa);
		assert_int_equal(h_io(&h, v, MMIO, RD, UINT64_MAX - 0x1003, 4, 0), 0xbbbb);
	}
	/* a re-add goes back to the client at once */
	assert_int_equal(rtioreq_range_add(b, MMIO, UINT64_MAX - 0xfff, UINT64_MAX), 0);
	for (uint16_t v = 0; v < 2; v++)
		assert_int_equal(h_io(&h, v, MMIO, RD, UINT64_MAX - 7, 8, 0), 0xbbbb);
	rtioreq_vm_stats(h.vm, &st);
	assert_int_equal(st.dispatched, 4 + 2 * 11 + 2 * 4 + 2);
	assert_int_equal(st.completed, st.dispatched);
	assert_int_equal(st.unclaimed, 4);
	assert_int_equal(st.polled, st.dispatched / 2); /* vcpu 1's, on the poller */
	assert_int_equal(st.fallback, st.dispatched / 2);
	assert_int_equal(rtioreq_poller_destroy(p), 0);
	h_vm_stop(&h);
}

/* Ranges churning while a poller and the dispatcher route: every answer is one of the
 * two legal ones, and once the churn stops the last state holds. */
struct churn {
	struct rtioreq_client *c;
	_Atomic int stop;
	_Atomic unsigned int rounds;
};

static void *churn_main(void *arg)
{
	const struct timespec breather = { 0, 20000 };
	struct churn *ch = arg;

	/* the breathers keep both states visible and the RCU callback backlog (and ASan's
	 * quarantine) small */
	while (!atomic_load(&ch->stop)) {
		assert_int_equal(rtioreq_range_add(ch->c, PIO, 0x80, 0x8f), 0);
		assert_int_equal(rtioreq_range_add(ch->c, MMIO, 0xd0000000, 0xd0000fff), 0);
		nanosleep(&breather, NULL);
		assert_int_equal(rtioreq_range_del(ch->c, PIO, 0x80, 0x8f), 0);
		assert_int_equal(rtioreq_range_del(ch->c, MMIO, 0xd0000000, 0xd0000fff), 0);
		atomic_fetch_add(&ch->rounds, 1);
		nanosleep(&breather, NULL);
	}
	return NULL;
}

static void test_api_churn(void **state)
{
	struct rtioreq_thread_attr ta = { .cpu = -1 };
	struct churn ch = { 0 };
	unsigned int hit[2] = { 0, 0 };
	struct rtioreq_poller *p;
	struct h_vm h;
	pthread_t t;

	h_vm_start(&h, 2);
	mk_client(h.vm, "dflt", h_const, 0xd, true);
	ch.c = mk_client(h.vm, "dev", h_const, 0xc, false);
	p = rtioreq_poller_create(h.eng, &ta);
	assert_non_null(p);
	assert_int_equal(rtioreq_vm_set_poller(h.vm, 1, p), 0);
	assert_int_equal(pthread_create(&t, NULL, churn_main, &ch), 0);
	for (unsigned int i = 0;
	     i < 2000 || atomic_load(&ch.rounds) < 10 || !hit[0] || !hit[1]; i++) {
		uint16_t v = (uint16_t)(i & 1);
		uint64_t x = (i & 2) ? h_io(&h, v, PIO, RD, 0x80 + (i % 16), 1, 0)
				     : h_io(&h, v, MMIO, RD, 0xd0000000 + 8 * (i % 512), 8, 0);

		assert_true(x == 0xc || x == 0xd);
		hit[x == 0xc]++;
		if (i > 100000)
			break;
	}
	atomic_store(&ch.stop, 1);
	pthread_join(t, NULL);
	print_message("churn rounds %u, range hits %u, default hits %u\n",
		      atomic_load(&ch.rounds), hit[1], hit[0]);
	assert_true(atomic_load(&ch.rounds) >= 10);
	assert_true(hit[0] > 0 && hit[1] > 0);
	for (uint16_t v = 0; v < 2; v++) {
		assert_int_equal(h_io(&h, v, PIO, RD, 0x80, 1, 0), 0xd);
		assert_int_equal(h_io(&h, v, MMIO, RD, 0xd0000000, 8, 0), 0xd);
	}
	assert_int_equal(rtioreq_range_add(ch.c, PIO, 0x80, 0x8f), 0);
	for (uint16_t v = 0; v < 2; v++)
		assert_int_equal(h_io(&h, v, PIO, RD, 0x8f, 1, 0), 0xc);
	assert_int_equal(rtioreq_poller_destroy(p), 0);
	h_vm_stop(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_map),
		cmocka_unit_test(test_one_range),
		cmocka_unit_test(test_extremes),
		cmocka_unit_test(test_many_and_adjacent),
		cmocka_unit_test(test_overlap_rejected),
		cmocka_unit_test(test_invalid_args),
		cmocka_unit_test(test_del_not_found),
		cmocka_unit_test(test_drop_client),
		cmocka_unit_test(test_set_default),
		cmocka_unit_test(test_copy_on_write_versions),
		cmocka_unit_test(test_index_depths),
		cmocka_unit_test(test_model_random),
		cmocka_unit_test(test_api_errors),
		cmocka_unit_test(test_api_routing),
		cmocka_unit_test(test_api_churn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
