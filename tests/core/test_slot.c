// SPDX-License-Identifier: MIT
/*
 * The slot state machine of engine/core/engine_pvt.h, white box:
 *  - rtioreq__snapshot() on raw slot contents: every malformed request is refused,
 *    every well-formed one is accepted and copied field for field;
 *  - through the engine, on the fallback path (dispatcher, client thread) and on the
 *    polling path (poller, inline handler): invalid requests, handler errors and
 *    unclaimed accesses complete with all ones and are counted; a read's result is
 *    written back masked to its size into the value field and nowhere else;
 *    completion_polling decides whether the hypervisor is notified; a PENDING slot
 *    whose engine-side state is still busy is not taken a second time.
 * The hypervisor side is played by hand on a shared region (tests/harness.h): slots are
 * filled byte for byte, published with a release store of PENDING, and compared byte
 * for byte once COMPLETE.
 */
#include <pthread.h>
#include <sched.h>

#include "harness.h"
#include "core/engine_pvt.h"

#define PIO RTIOREQ_TYPE_PORTIO
#define MMIO RTIOREQ_TYPE_MMIO
#define PCI RTIOREQ_TYPE_PCICFG
#define RD RTIOREQ_DIR_READ
#define WR RTIOREQ_DIR_WRITE

#define SLOT_SIZE sizeof(struct rtioreq_io_request)
#define OFF_VALUE offsetof(struct rtioreq_io_request, reqs.mmio_request.value) /* 88 */
#define OFF_STATE offsetof(struct rtioreq_io_request, processed)		 /* 136 */
#define GARBAGE 0x5a		     /* reserved and padding bytes of test slots */
#define OLD_VALUE 0xdeadbeefcafef00dull /* value field before a read */
#define HANDLER_VALUE 0xf1e2d3c4b5a69788ull /* what the handlers answer to reads */

_Static_assert(OFF_VALUE == 88, "value field at byte 88");
_Static_assert(OFF_STATE == 136, "processed at byte 136");

/* ---------------------------------------------------------------------------------- */
/* Slot images */

/* A slot as a (well-behaved but untidy) hypervisor fills it: garbage in the reserved
 * words and padding, ABI-reserved request fields 0, the old value still there. */
static void img_base(struct rtioreq_io_request *w, uint32_t type, bool cp)
{
	memset(w, GARBAGE, sizeof(*w));
	w->type = type;
	w->completion_polling = cp;
	w->kernel_handled = 0;
	w->processed = RTIOREQ_STATE_PENDING;
	w->reqs.mmio_request.value = OLD_VALUE;
}

static void img_pio(struct rtioreq_io_request *w, uint32_t dir, uint64_t port, uint64_t size,
		    uint32_t value, bool cp)
{
	img_base(w, PIO, cp);
	w->reqs.pio_request.direction = dir;
	w->reqs.pio_request.reserved = 0;
	w->reqs.pio_request.address = port;
	w->reqs.pio_request.size = size;
	if (dir == WR)
		w->reqs.pio_request.value = value;
}

static void img_mmio(struct rtioreq_io_request *w, uint32_t dir, uint64_t addr, uint64_t size,
		     uint64_t value, bool cp)
{
	img_base(w, MMIO, cp);
	w->reqs.mmio_request.direction = dir;
	w->reqs.mmio_request.reserved = 0;
	w->reqs.mmio_request.address = addr;
	w->reqs.mmio_request.size = size;
	if (dir == WR)
		w->reqs.mmio_request.value = value;
}

static void img_pci(struct rtioreq_io_request *w, uint32_t dir, uint32_t bus, uint32_t dev,
		    uint32_t func, uint32_t reg, uint64_t size, uint32_t value, bool cp)
{
	img_base(w, PCI, cp);
	w->reqs.pci_request.direction = dir;
	memset(w->reqs.pci_request.reserved, 0, sizeof(w->reqs.pci_request.reserved));
	w->reqs.pci_request.size = size;
	if (dir == WR)
		w->reqs.pci_request.value = value;
	w->reqs.pci_request.bus = bus;
	w->reqs.pci_request.dev = dev;
	w->reqs.pci_request.func = func;
	w->reqs.pci_request.reg = reg;
}

/* First byte offset where @a and @b differ outside [skip, skip + n) and `processed`;
 * SLOT_SIZE if none. */
static size_t first_diff(const void *a, const void *b, size_t skip, size_t n)
{
	const uint8_t *x = a, *y = b;

	for (size_t i = 0; i < SLOT_SIZE; i++) {
		if (i >= skip && i < skip + n)
			continue;
		if (i >= OFF_STATE && i < OFF_STATE + sizeof(uint32_t))
			continue;
		if (x[i] != y[i])
			return i;
	}
	return SLOT_SIZE;
}

/* ---------------------------------------------------------------------------------- */
/* rtioreq__snapshot() */

static uint64_t mask_of(uint32_t size)
{
	return size >= 8 ? UINT64_MAX : (1ull << (8 * size)) - 1;
}

static void expect_invalid(const struct rtioreq_io_request *w, const char *what)
{
	struct rtioreq_io_request copy;
	struct rtioreq_req r;
	bool ok;

	memcpy(&copy, w, sizeof(copy));
	memset(&r, 0xcc, sizeof(r));
	ok = rtioreq__snapshot(w, &r);
	if (ok)
		fail_msg("%s: rtioreq__snapshot() accepted it", what);
	assert_int_equal(ok, false);
	/* the type as read, for the write-back; validation never writes the slot */
	assert_int_equal(r.type, w->type);
	assert_memory_equal(&copy, w, sizeof(copy));
}

static void expect_valid(const struct rtioreq_io_request *w, uint32_t type, uint32_t dir,
			 uint64_t addr, uint32_t size, uint64_t wvalue, uint8_t bus, uint8_t dev,
			 uint8_t func, bool cp, const char *what)
{
	struct rtioreq_io_request copy;
	struct rtioreq_req r;
	bool ok;

	memcpy(&copy, w, sizeof(copy));
	memset(&r, 0xcc, sizeof(r));
	ok = rtioreq__snapshot(w, &r);
	if (!ok)
		fail_msg("%s: rtioreq__snapshot() refused it", what);
	assert_int_equal(r.type, type);
	assert_int_equal(r.dir, dir);
	assert_int_equal(r.addr, addr);
	assert_int_equal(r.size, size);
	/* writes: the data masked to the size; reads: 0, never the slot's old value */
	assert_int_equal(r.value, dir == WR ? wvalue & mask_of(size) : 0);
	assert_int_equal(r.bus, bus);
	assert_int_equal(r.dev, dev);
	assert_int_equal(r.func, func);
	assert_int_equal(r.completion_polling, cp);
	assert_memory_equal(&copy, w, sizeof(copy));
}

static void test_snapshot_rejects_bad_type_and_direction(void **state)
{
	struct rtioreq_io_request w;
	static const uint32_t bad_types[] = { 3, 4, 0x100, UINT32_MAX };
	static const uint32_t bad_dirs[] = { 2, 3, 0x80000000u, UINT32_MAX };
	struct rtioreq_req r;

	for (size_t i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++) {
		img_pio(&w, RD, 0x60, 1, 0, false);
		w.type = bad_types[i];
		expect_invalid(&w, "bad type");
		/* an unknown type reports a read: the engine answers all ones */
		memset(&r, 0xcc, sizeof(r));
		assert_false(rtioreq__snapshot(&w, &r));
		assert_int_equal(r.dir, RD);
	}
	for (size_t i = 0; i < sizeof(bad_dirs) / sizeof(bad_dirs[0]); i++) {
		img_pio(&w, bad_dirs[i], 0x60, 1, 0, false);
		expect_invalid(&w, "PIO bad direction");
		img_mmio(&w, bad_dirs[i], 0x1000, 4, 0, false);
		expect_invalid(&w, "MMIO bad direction");
		img_pci(&w, bad_dirs[i], 0, 1, 0, 0x10, 4, 0, false);
		expect_invalid(&w, "PCICFG bad direction");
		/* the direction as read: not WRITE, so the engine writes all ones back */
		memset(&r, 0xcc, sizeof(r));
		assert_false(rtioreq__snapshot(&w, &r));
		assert_int_equal(r.dir, bad_dirs[i]);
	}
}

static void test_snapshot_rejects_bad_size(void **state)
{
	static const uint64_t bad_all[] = { 0, 3, 5, 6, 7, 9, 16, 32, 0x100000001ull,
					    1ull << 32, 1ull << 63, UINT64_MAX };
	struct rtioreq_io_request w;

	for (size_t i = 0; i < sizeof(bad_all) / sizeof(bad_all[0]); i++) {
		for (uint32_t dir = RD; dir <= WR; dir++) {
			img_pio(&w, dir, 0x60, bad_all[i], 0x11, false);
			expect_invalid(&w, "PIO bad size");
			img_mmio(&w, dir, 0x1000, bad_all[i], 0x11, false);
			expect_invalid(&w, "MMIO bad size");
			img_pci(&w, dir, 0, 1, 0, 0x10, bad_all[i], 0x11, false);
			expect_invalid(&w, "PCICFG bad size");
		}
	}
	/* 8 bytes: MMIO only */
	img_pio(&w, RD, 0x60, 8, 0, false);
	expect_invalid(&w, "PIO size 8");
	img_pci(&w, RD, 0, 1, 0, 0x10, 8, 0, false);
	expect_invalid(&w, "PCICFG size 8");
	img_mmio(&w, RD, 0x1000, 8, 0, false);
	expect_valid(&w, MMIO, RD, 0x1000, 8, 0, 0, 0, 0, false, "MMIO size 8");
}

static void test_snapshot_rejects_out_of_range(void **state)
{
	struct rtioreq_io_request w;

	/* MMIO: addr + size - 1 must not wrap */
	img_mmio(&w, RD, UINT64_MAX, 2, 0, false);
	expect_invalid(&w, "MMIO ~0 size 2");
	img_mmio(&w, WR, UINT64_MAX - 2, 4, 1, false);
	expect_invalid(&w, "MMIO ~0-2 size 4");
	img_mmio(&w, RD, UINT64_MAX - 6, 8, 0, false);
	expect_invalid(&w, "MMIO ~0-6 size 8");
	img_mmio(&w, RD, UINT64_MAX, 1, 0, false);
	expect_valid(&w, MMIO, RD, UINT64_MAX, 1, 0, 0, 0, 0, false, "MMIO ~0 size 1");
	img_mmio(&w, RD, UINT64_MAX - 1, 2, 0, false);
	expect_valid(&w, MMIO, RD, UINT64_MAX - 1, 2, 0, 0, 0, 0, false, "MMIO ~0-1 size 2");
	img_mmio(&w, RD, UINT64_MAX - 7, 8, 0, false);
	expect_valid(&w, MMIO, RD, UINT64_MAX - 7, 8, 0, 0, 0, 0, false, "MMIO ~0-7 size 8");

	/* PIO: the last byte must be a port (<= 0xffff) */
	img_pio(&w, RD, 0x10000, 1, 0, false);
	expect_invalid(&w, "PIO port 0x10000");
	img_pio(&w, RD, 0xffff, 2, 0, false);
	expect_invalid(&w, "PIO 0xffff size 2");
	img_pio(&w, WR, 0xfffd, 4, 1, false);
	expect_invalid(&w, "PIO 0xfffd size 4");
	img_pio(&w, RD, UINT64_MAX, 1, 0, false);
	expect_invalid(&w, "PIO port ~0");
	img_pio(&w, RD, 1ull << 32, 1, 0, false);
	expect_invalid(&w, "PIO port 1<<32");
	img_pio(&w, RD, 0xffff, 1, 0, false);
	expect_valid(&w, PIO, RD, 0xffff, 1, 0, 0, 0, 0, false, "PIO 0xffff size 1");
	img_pio(&w, RD, 0xfffe, 2, 0, false);
	expect_valid(&w, PIO, RD, 0xfffe, 2, 0, 0, 0, 0, false, "PIO 0xfffe size 2");
	img_pio(&w, RD, 0xfffc, 4, 0, false);
	expect_valid(&w, PIO, RD, 0xfffc, 4, 0, 0, 0, 0, false, "PIO 0xfffc size 4");

	/* PCICFG: bus <= 255, dev <= 31, func <= 7, register within 4 KiB config space */
	img_pci(&w, RD, 256, 0, 0, 0, 4, 0, false);
	expect_invalid(&w, "PCICFG bus 256");
	img_pci(&w, RD, 0, 32, 0, 0, 4, 0, false);
	expect_invalid(&w, "PCICFG dev 32");
	img_pci(&w, RD, 0, 0, 8, 0, 4, 0, false);
	expect_invalid(&w, "PCICFG func 8");
	img_pci(&w, WR, UINT32_MAX, UINT32_MAX, UINT32_MAX, 0, 4, 1, false);
	expect_invalid(&w, "PCICFG all ~0");
	img_pci(&w, RD, 0, 0, 0, 0x1000, 1, 0, false);
	expect_invalid(&w, "PCICFG reg 0x1000");
	img_pci(&w, RD, 0, 0, 0, 0xffe, 4, 0, false);
	expect_invalid(&w, "PCICFG reg 0xffe size 4");
	img_pci(&w, RD, 0, 0, 0, UINT32_MAX, 1, 0, false);
	expect_invalid(&w, "PCICFG reg ~0");
	img_pci(&w, RD, 255, 31, 7, 0xfff, 1, 0, false);
	expect_valid(&w, PCI, RD, 0xfff, 1, 0, 255, 31, 7, false, "PCICFG max bdf, reg 0xfff");
	img_pci(&w, RD, 255, 31, 7, 0xffc, 4, 0, false);
	expect_valid(&w, PCI, RD, 0xffc, 4, 0, 255, 31, 7, false, "PCICFG reg 0xffc size 4");
}

/* Every valid (type, direction, size) is accepted and copied. */
static void test_snapshot_accepts_valid(void **state)
{
	static const uint32_t sizes[] = { 1, 2, 4, 8 };
	const uint64_t wv = 0x0123456789abcdefull;
	struct rtioreq_io_request w;

	for (int cp = 0; cp <= 1; cp++) {
		for (uint32_t dir = RD; dir <= WR; dir++) {
			for (size_t i = 0; i < 4; i++) {
				uint32_t sz = sizes[i];

				img_mmio(&w, dir, 0xfe000000 + 8 * i, sz, wv, cp);
				expect_valid(&w, MMIO, dir, 0xfe000000 + 8 * i, sz, wv, 0, 0, 0,
					     cp, "MMIO");
				if (sz == 8)
					continue;
				img_pio(&w, dir, 0x3f8 + i, sz, (uint32_t)wv, cp);
				expect_valid(&w, PIO, dir, 0x3f8 + i, sz, (uint32_t)wv, 0, 0, 0,
					     cp, "PIO");
				img_pci(&w, dir, 3, 4, 5, 0x40 + 4 * (uint32_t)i, sz,
					(uint32_t)wv, cp);
				expect_valid(&w, PCI, dir, 0x40 + 4 * i, sz, (uint32_t)wv, 3, 4,
					     5, cp, "PCICFG");
			}
		}
	}
	/* any non-zero completion_polling means "polling" */
	img_pio(&w, RD, 0x80, 1, 0, false);
	w.completion_polling = 0x80000000u;
	expect_valid(&w, PIO, RD, 0x80, 1, 0, 0, 0, 0, true, "PIO cp=0x80000000");
	/* write data is masked to the access size */
	img_mmio(&w, WR, 0x1000, 2, UINT64_MAX, false);
	expect_valid(&w, MMIO, WR, 0x1000, 2, 0xffff, 0, 0, 0, false, "MMIO write masked");
	img_pio(&w, WR, 0x70, 1, 0xabcdef12u, false);
	expect_valid(&w, PIO, WR, 0x70, 1, 0x12, 0, 0, 0, false, "PIO write masked");
}

/* ---------------------------------------------------------------------------------- */
/* Through the engine */

/* Handler clients: count calls, answer reads with HANDLER_VALUE, remember writes. */
static _Atomic int calls;
static unsigned int ios; /* requests issued by raw_io() since use_path() */
static _Atomic uint64_t last_write;
static _Atomic uint32_t last_size;

static int h_answer(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	atomic_fetch_add(&calls, 1);
	atomic_store(&last_size, req->size);
	if (req->dir == WR)
		atomic_store(&last_write, req->value);
	else
		req->value = HANDLER_VALUE;
	return 0;
}

static int h_fail(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	atomic_fetch_add(&calls, 1);
	req->value = HANDLER_VALUE; /* must not leak out */
	return -EIO;
}

static struct rtioreq_client *slot_client(struct rtioreq_vm *vm, rtioreq_handler_fn fn,
					bool dflt)
{
	struct rtioreq_client_attr a = { .name = "slot", .handler = fn, .is_default = dflt };
	struct rtioreq_client *c = rtioreq_client_create(vm, &a);

	assert_non_null(c);
	return c;
}

/* Put every slot of @h on a new poller (@poll) or leave them on the fallback path.
 * Return the poller or NULL. */
static struct rtioreq_poller *use_path(struct h_vm *h, uint16_t vcpus, bool poll)
{
	struct rtioreq_thread_attr ta = RTIOREQ_THREAD_ATTR_DEFAULT;
	struct rtioreq_poller *p;

	atomic_store(&calls, 0);
	ios = 0;
	if (!poll)
		return NULL;
	p = rtioreq_poller_create(h->eng, &ta);
	assert_non_null(p);
	for (uint16_t v = 0; v < vcpus; v++)
		assert_int_equal(rtioreq_vm_set_poller(h->vm, v, p), 0);
	assert_int_equal(h->shm.region->chan.polled_mask.word, (1u << vcpus) - 1);
	return p;
}

/* Hypervisor: copy @img into FREE slot @v (all but `processed`), H1, upcall if needed. */
static void raw_submit(struct h_vm *h, uint16_t v, const struct rtioreq_io_request *img,
		       uint8_t *before)
{
	struct rtioreq_io_request *s = &h->shm.region->page.req_slot[v];
	uint32_t pending = RTIOREQ_STATE_PENDING;

	assert_int_equal(h_state(h, v), RTIOREQ_STATE_FREE);
	memcpy(s, img, OFF_STATE);
	memcpy((uint8_t *)s + OFF_STATE + 4, (const uint8_t *)img + OFF_STATE + 4,
	       SLOT_SIZE - OFF_STATE - 4);
	memcpy(before, img, SLOT_SIZE);
	memcpy(before + OFF_STATE, &pending, sizeof(pending));
	/* H1 */
	atomic_store_explicit(rtioreq_wire_atomic(&s->processed), RTIOREQ_STATE_PENDING,
			      memory_order_release);
	if (rtioreq_hv_needs_upcall(h->shm.region, v))
		rtioreq_hv_upcall(h->shm.region);
}

/* Wait for COMPLETE on @v (H2), copy the slot to @after, hand the slot back (FREE). */
static void raw_complete(struct h_vm *h, uint16_t v, uint8_t *after)
{
	uint64_t end = h_now_ns() + 5000000000ull;

	while (h_state(h, v) != RTIOREQ_STATE_COMPLETE && h_now_ns() < end)
		sched_yield();
	assert_int_equal(h_state(h, v), RTIOREQ_STATE_COMPLETE);
	memcpy(after, &h->shm.region->page.req_slot[v], SLOT_SIZE);
	/* C1 comes before C2: the engine-side slot is free once COMPLETE is seen */
	assert_int_equal(atomic_load_explicit(&h->vm->slot[v].busy, memory_order_acquire), 0);
	rtioreq_hv_release(h->shm.region, v);
}

/* Submit @img, wait for completion; return the value field (u64 for MMIO, else u32)
 * and check that nothing but the value field (@vlen bytes at 88) and `processed`
 * changed. */
static uint64_t raw_io(struct h_vm *h, uint16_t v, const struct rtioreq_io_request *img,
		       size_t vlen)
{
	uint8_t before[SLOT_SIZE], after[SLOT_SIZE];
	uint64_t v64;
	uint32_t v32;

	raw_submit(h, v, img, before);
	raw_complete(h, v, after);
	ios++;
	/* vlen 0 (nothing written back): the value field too is compared */
	assert_int_equal(first_diff(before, after, OFF_VALUE, vlen), SLOT_SIZE);
	if (img->type == MMIO) {
		memcpy(&v64, after + OFF_VALUE, sizeof(v64));
		return v64;
	}
	memcpy(&v32, after + OFF_VALUE, sizeof(v32));
	return v32;
}

static void vm_stats(struct h_vm *h, struct rtioreq_vm_stats *st)
{
	rtioreq_vm_stats(h->vm, st);
}

/*
 * Invalid slot contents complete (reads: all ones in the whole value field, the size
 * being untrusted; writes: nothing written), are counted as invalid, never reach the
 * handler (a default client that would take anything).
 */
static void run_invalid(bool poll)
{
	struct rtioreq_io_request w;
	struct rtioreq_vm_stats st;
	struct h_vm h;
	unsigned int n;

	h_vm_start(&h, 2);
	use_path(&h, 2, poll);
	slot_client(h.vm, h_answer, true);

	img_pio(&w, RD, 0x60, 1, 0, false);
	w.type = 7;
	assert_int_equal(raw_io(&h, 0, &w, 4), UINT32_MAX);
	img_pio(&w, 2, 0x60, 1, 0, false);
	assert_int_equal(raw_io(&h, 1, &w, 4), UINT32_MAX);
	img_pio(&w, RD, 0x60, 3, 0, false);
	assert_int_equal(raw_io(&h, 0, &w, 4), UINT32_MAX);
	img_pio(&w, RD, 0x60, 8, 0, false);
	assert_int_equal(raw_io(&h, 1, &w, 4), UINT32_MAX);
	img_pio(&w, RD, 0x10000, 1, 0, false);
	assert_int_equal(raw_io(&h, 0, &w, 4), UINT32_MAX);
	img_pio(&w, RD, 0xffff, 2, 0, false);
	assert_int_equal(raw_io(&h, 1, &w, 4), UINT32_MAX);
	img_mmio(&w, RD, UINT64_MAX, 2, 0, false);
	assert_int_equal(raw_io(&h, 0, &w, 8), UINT64_MAX);
	img_mmio(&w, RD, 0x1000, 16, 0, false);
	assert_int_equal(raw_io(&h, 1, &w, 8), UINT64_MAX);
	img_mmio(&w, RD, 0x1000, 0, 0, false);
	assert_int_equal(raw_io(&h, 0, &w, 8), UINT64_MAX);
	/* PCICFG: a 32-bit value at 88; the bus field right after it is not touched */
	img_pci(&w, RD, 256, 0, 0, 0x10, 4, 0, false);
	assert_int_equal(raw_io(&h, 1, &w, 4), UINT32_MAX);
	img_pci(&w, RD, 0, 0, 0, 0x1000, 1, 0, false);
	assert_int_equal(raw_io(&h, 0, &w, 4), UINT32_MAX);
	/* invalid writes: the slot comes back byte-identical but for `processed` */
	img_mmio(&w, WR, 0x1000, 5, 0x1234, false);
	assert_int_equal(raw_io(&h, 1, &w, 0), 0x1234);
	img_pci(&w, WR, 0, 0, 8, 0x10, 4, 0x5678, true);
	assert_int_equal(raw_io(&h, 0, &w, 0), 0x5678);

	n = ios;
	vm_stats(&h, &st);
	assert_int_equal(st.invalid, n);
	assert_int_equal(st.dispatched, n);
	assert_int_equal(st.completed, n);
	assert_int_equal(poll ? st.polled : st.fallback, n);
	assert_int_equal(st.handler_errors, 0);
	assert_int_equal(st.unclaimed, 0);
	assert_int_equal(st.notified, n - 1); /* all but the completion_polling one */
	assert_int_equal(atomic_load(&calls), 0);
	/* a valid request on the same slots still reaches the handler */
	img_pio(&w, RD, 0x60, 1, 0, false);
	assert_int_equal(raw_io(&h, 0, &w, 4), HANDLER_VALUE & 0xff);
	assert_int_equal(atomic_load(&calls), 1);
	h_vm_stop(&h);
}

static void test_invalid_fallback(void **state)
{
	run_invalid(false);
}

static void test_invalid_polled(void **state)
{
	run_invalid(true);
}

/* A failing handler: completed anyway, reads all ones masked to the size. */
static void run_handler_error(bool poll)
{
	static const uint32_t sizes[] = { 1, 2, 4, 8 };
	struct rtioreq_io_request w;
	struct rtioreq_vm_stats st;
	struct h_vm h;
	unsigned int n;

	h_vm_start(&h, 1);
	use_path(&h, 1, poll);
	slot_client(h.vm, h_fail, true);
	for (size_t i = 0; i < 4; i++) {
		uint32_t sz = sizes[i];

		img_mmio(&w, RD, 0x2000, sz, 0, false);
		assert_int_equal(raw_io(&h, 0, &w, 8), mask_of(sz));
		if (sz == 8)
			continue;
		img_pio(&w, RD, 0x2f8, sz, 0, false);
		assert_int_equal(raw_io(&h, 0, &w, 4), mask_of(sz));
		img_pci(&w, RD, 0, 2, 0, 0x10, sz, 0, false);
		assert_int_equal(raw_io(&h, 0, &w, 4), mask_of(sz));
	}
	/* a failed write is completed too, nothing written back */
	img_pio(&w, WR, 0x2f8, 1, 0x41, false);
	assert_int_equal(raw_io(&h, 0, &w, 0), 0x41);

	n = ios;
	vm_stats(&h, &st);
	assert_int_equal(st.handler_errors, n);
	assert_int_equal(atomic_load(&calls), n);
	assert_int_equal(st.dispatched, n);
	assert_int_equal(st.completed, n);
	assert_int_equal(poll ? st.polled : st.fallback, n);
	assert_int_equal(st.invalid, 0);
	assert_int_equal(st.unclaimed, 0);
	h_vm_stop(&h);
}

static void test_handler_error_fallback(void **state)
{
	run_handler_error(false);
}

static void test_handler_error_polled(void **state)
{
	run_handler_error(true);
}

/* No range claims the access and there is no default client: unclaimed, all ones. */
static void run_unclaimed(bool poll)
{
	struct rtioreq_io_request w;
	struct rtioreq_vm_stats st;
	struct rtioreq_client *c;
	struct h_vm h;
	unsigned int n;

	h_vm_start(&h, 2);
	use_path(&h, 2, poll);
	/* no client at all */
	img_pio(&w, RD, 0x3f8, 2, 0, false);
	assert_int_equal(raw_io(&h, 0, &w, 4), 0xffff);
	img_mmio(&w, RD, 0xfed00000, 8, 0, false);
	assert_int_equal(raw_io(&h, 1, &w, 8), UINT64_MAX);
	/* a client with ranges elsewhere, and one straddling its end */
	c = slot_client(h.vm, h_answer, false);
	assert_int_equal(rtioreq_range_add(c, PIO, 0x100, 0x10f), 0);
	assert_int_equal(rtioreq_range_add(c, MMIO, 0x10000, 0x1ffff), 0);
	img_pio(&w, RD, 0x200, 1, 0, false);
	assert_int_equal(raw_io(&h, 0, &w, 4), 0xff);
	img_pio(&w, RD, 0x10f, 2, 0, false);
	assert_int_equal(raw_io(&h, 1, &w, 4), 0xffff);
	img_mmio(&w, RD, 0x1fffe, 4, 0, false);
	assert_int_equal(raw_io(&h, 0, &w, 8), 0xffffffff);
	/* PCICFG goes to the default client only */
	img_pci(&w, RD, 0, 3, 0, 0, 4, 0, false);
	assert_int_equal(raw_io(&h, 1, &w, 4), 0xffffffff);
	img_mmio(&w, WR, 0x20000, 4, 9, false);
	assert_int_equal(raw_io(&h, 0, &w, 0), 9);

	n = ios;
	vm_stats(&h, &st);
	assert_int_equal(st.unclaimed, n);
	assert_int_equal(st.dispatched, n);
	assert_int_equal(st.completed, n);
	assert_int_equal(st.invalid, 0);
	assert_int_equal(st.handler_errors, 0);
	assert_int_equal(atomic_load(&calls), 0);
	/* inside the range: claimed */
	img_pio(&w, RD, 0x10e, 2, 0, false);
	assert_int_equal(raw_io(&h, 1, &w, 4), HANDLER_VALUE & 0xffff);
	assert_int_equal(atomic_load(&calls), 1);
	vm_stats(&h, &st);
	assert_int_equal(st.unclaimed, n);
	h_vm_stop(&h);
}

static void test_unclaimed_fallback(void **state)
{
	run_unclaimed(false);
}

static void test_unclaimed_polled(void **state)
{
	run_unclaimed(true);
}

/*
 * Write-back widths: a read returns exactly the handler's value masked to its size, in
 * the value field only (u64 for MMIO, u32 at 88 for PIO and PCICFG); a write leaves the
 * slot byte-identical. The engine's snapshot is what the handler saw.
 */
static void run_widths(bool poll)
{
	static const uint32_t sizes[] = { 1, 2, 4, 8 };
	const uint64_t wv = 0x0a1b2c3d4e5f6071ull;
	struct rtioreq_io_request w;
	struct rtioreq_vm_stats st;
	struct h_vm h;
	unsigned int n;

	h_vm_start(&h, 2);
	use_path(&h, 2, poll);
	slot_client(h.vm, h_answer, true);
	for (size_t i = 0; i < 4; i++) {
		uint32_t sz = sizes[i];
		uint16_t v = (uint16_t)(i & 1);
		const struct rtioreq__slot *sl = &h.vm->slot[v];

		img_mmio(&w, RD, 0xfe000000 + 0x100 * i, sz, 0, false);
		assert_int_equal(raw_io(&h, v, &w, 8), HANDLER_VALUE & mask_of(sz));
		assert_int_equal(atomic_load(&last_size), sz);
		/* the engine's private snapshot of that request */
		assert_int_equal(sl->req.type, MMIO);
		assert_int_equal(sl->req.addr, 0xfe000000 + 0x100 * i);
		assert_int_equal(sl->req.size, sz);
		assert_int_equal(sl->req.vcpu, v);
		assert_int_equal(sl->req.vm_id, 1);
		assert_true(sl->valid);

		img_mmio(&w, WR, 0xfe000000 + 0x100 * i, sz, wv, false);
		assert_int_equal(raw_io(&h, v, &w, 0), wv);
		assert_int_equal(atomic_load(&last_write), wv & mask_of(sz));
		if (sz == 8)
			continue;

		img_pio(&w, RD, 0x400 + i, sz, 0, false);
		assert_int_equal(raw_io(&h, v, &w, 4), HANDLER_VALUE & mask_of(sz));
		img_pio(&w, WR, 0x400 + i, sz, (uint32_t)wv, false);
		assert_int_equal(raw_io(&h, v, &w, 0), (uint32_t)wv);
		assert_int_equal(atomic_load(&last_write), wv & mask_of(sz));

		img_pci(&w, RD, 1, 2, 3, 0x40, sz, 0, false);
		assert_int_equal(raw_io(&h, v, &w, 4), HANDLER_VALUE & mask_of(sz));
		assert_int_equal(sl->req.bus, 1);
		assert_int_equal(sl->req.dev, 2);
		assert_int_equal(sl->req.func, 3);
		img_pci(&w, WR, 1, 2, 3, 0x40, sz, (uint32_t)wv, false);
		assert_int_equal(raw_io(&h, v, &w, 0), (uint32_t)wv);
		assert_int_equal(atomic_load(&last_write), wv & mask_of(sz));
	}
	n = ios;
	assert_int_equal(atomic_load(&calls), n);
	vm_stats(&h, &st);
	assert_int_equal(st.completed, n);
	assert_int_equal(poll ? st.polled : st.fallback, n);
	h_vm_stop(&h);
}

static void test_widths_fallback(void **state)
{
	run_widths(false);
}

static void test_widths_polled(void **state)
{
	run_widths(true);
}

/* ---------------------------------------------------------------------------------- */
/* completion_polling */

struct notes {
	_Atomic int n;
	_Atomic int vcpu;
};

static void note_finish(void *hv, uint16_t vcpu)
{
	struct notes *nt = hv;

	atomic_store(&nt->vcpu, vcpu);
	atomic_fetch_add(&nt->n, 1);
}

static const struct rtioreq_vm_ops note_ops = { .notify_finish = note_finish };

/* Like h_vm_start(), with ops. */
static void h_vm_start_ops(struct h_vm *h, uint16_t vcpus, struct notes *nt)
{
	h_vm_start_attr(h, (struct rtioreq_vm_attr){
				   .id = 1, .vcpu_num = vcpus, .ops = &note_ops, .hv = nt });
}

/*
 * completion_polling=1: no notification (stats.notified and done_seq unchanged, even a
 * while later); 0: exactly one, on done_seq of that vCPU, or through ops.notify_finish
 * when the VM has one (done_seq then untouched).
 */
static void run_completion_polling(bool poll, bool ops)
{
	struct rtioreq_io_request w;
	struct rtioreq_vm_stats st;
	struct notes nt = { 0 };
	struct h_vm h;
	const uint16_t v = 2;
	uint32_t seq[RTIOREQ_IO_REQUEST_MAX] = { 0 };
	uint64_t notified;

	if (ops)
		h_vm_start_ops(&h, 3, &nt);
	else
		h_vm_start(&h, 3);
	use_path(&h, 3, poll);
	slot_client(h.vm, h_answer, true);

	for (int round = 0; round < 3; round++) {
		/* polling: nothing at all */
		seq[v] = rtioreq_hv_done_seq(h.shm.region, v);
		vm_stats(&h, &st);
		notified = st.notified;
		img_pio(&w, RD, 0x60, 1, 0, true);
		assert_int_equal(raw_io(&h, v, &w, 4), HANDLER_VALUE & 0xff);
		h_sleep_ms(10); /* a notification would follow COMPLETE closely */
		assert_int_equal(rtioreq_hv_done_seq(h.shm.region, v), seq[v]);
		vm_stats(&h, &st);
		assert_int_equal(st.notified, notified);
		assert_int_equal(atomic_load(&nt.n), ops ? round : 0);

		/* not polling: one notification, after COMPLETE */
		img_pio(&w, RD, 0x61, 1, 0, false);
		assert_int_equal(raw_io(&h, v, &w, 4), HANDLER_VALUE & 0xff);
		if (ops) {
			uint64_t end = h_now_ns() + 5000000000ull;

			while (atomic_load(&nt.n) == round && h_now_ns() < end)
				h_sleep_ms(1);
			h_sleep_ms(5);
			assert_int_equal(atomic_load(&nt.n), round + 1);
			assert_int_equal(atomic_load(&nt.vcpu), v);
			assert_int_equal(rtioreq_hv_done_seq(h.shm.region, v), seq[v]);
		} else {
			assert_int_equal(rtioreq_hv_wait(h.shm.region, 1u << v, seq, 5000000000ull),
					 0);
			h_sleep_ms(5);
			assert_int_equal(rtioreq_hv_done_seq(h.shm.region, v), seq[v] + 1);
		}
		vm_stats(&h, &st);
		assert_int_equal(st.notified, notified + 1);
		/* other vCPUs' words never move */
		assert_int_equal(rtioreq_hv_done_seq(h.shm.region, 0), 0);
		assert_int_equal(rtioreq_hv_done_seq(h.shm.region, 1), 0);
	}
	h_vm_stop(&h);
}

static void test_completion_polling_fallback(void **state)
{
	run_completion_polling(false, false);
}

static void test_completion_polling_polled(void **state)
{
	run_completion_polling(true, false);
}

static void test_completion_polling_ops_fallback(void **state)
{
	run_completion_polling(false, true);
}

static void test_completion_polling_ops_polled(void **state)
{
	run_completion_polling(true, true);
}

/* ---------------------------------------------------------------------------------- */
/* Busy protection */

/*
 * A hypervisor that breaks the protocol stores PENDING again while its request is
 * still being served (held by a blocking client): the engine-side slot is busy, so
 * the slot is not taken a second time (the dispatcher after an upcall, or a poller
 * spinning on it), the snapshot the client gets is the original one, and once the
 * client completes, the slot can be used normally again.
 */
static void run_busy(bool poll)
{
	struct rtioreq_poller_stats ps;
	struct rtioreq_vm_stats st;
	struct rtioreq_poller *p;
	struct rtioreq_client *c;
	struct rtioreq_io_request *s;
	struct rtioreq_req req;
	struct h_vm h;
	uint64_t end, val;

	h_vm_start(&h, 1);
	p = use_path(&h, 1, poll);
	c = slot_client(h.vm, NULL, true);
	s = &h.shm.region->page.req_slot[0];

	h_submit(&h, 0, PIO, RD, 0x60, 1, 0, false);
	end = h_now_ns() + 5000000000ull;
	while (h_state(&h, 0) != RTIOREQ_STATE_PROCESSING && h_now_ns() < end)
		sched_yield();
	assert_int_equal(h_state(&h, 0), RTIOREQ_STATE_PROCESSING);
	assert_int_equal(atomic_load_explicit(&h.vm->slot[0].busy, memory_order_acquire), 1);

	/* the rogue second request on the same slot */
	s->reqs.pio_request.address = 0x70;
	s->reqs.pio_request.size = 2;
	atomic_store_explicit(rtioreq_wire_atomic(&s->processed), RTIOREQ_STATE_PENDING,
			      memory_order_release);
	rtioreq_hv_upcall(h.shm.region);
	h_sleep_ms(30);
	assert_int_equal(h_state(&h, 0), RTIOREQ_STATE_PENDING); /* left alone */
	assert_int_equal(atomic_load_explicit(&h.vm->slot[0].busy, memory_order_acquire), 1);
	vm_stats(&h, &st);
	assert_int_equal(st.dispatched, 1);
	assert_int_equal(st.completed, 0);
	assert_int_equal(h.vm->slot[0].req.addr, 0x60);
	assert_int_equal(h.vm->slot[0].req.size, 1);
	if (p) {
		rtioreq_poller_stats(p, &ps);
		print_message("poller: %lu loops, %lu served (1 taken)\n",
			      (unsigned long)ps.loops, (unsigned long)ps.served);
		assert_int_equal(ps.served, 1); /* a busy slot is not counted as taken */
	}
	/*
	 * The hv takes its rogue PENDING back before the completion: left in place, it
	 * would be taken as a new request as soon as the completion below stores busy=0
	 * (C1, before COMPLETE), and what the rogue vCPU then sees is undefined. What the
	 * engine guarantees is narrower: a taker that loaded the stale PENDING and then
	 * sees busy 0 fails its T2 CAS (the state is no longer PENDING), so the original
	 * request's COMPLETE is never overwritten.
	 */
	atomic_store_explicit(rtioreq_wire_atomic(&s->processed), RTIOREQ_STATE_PROCESSING,
			      memory_order_release);

	/* the client gets the original snapshot and completes it */
	assert_int_equal(rtioreq_client_wait(c, &req), 0);
	assert_int_equal(req.addr, 0x60);
	assert_int_equal(req.size, 1);
	assert_int_equal(req.vcpu, 0);
	req.value = 0x1a5;
	assert_int_equal(rtioreq_client_complete(c, &req, 0), 0);
	assert_true(h_wait(&h, 0, PIO, &val, 5000));
	assert_int_equal(val, 0xa5);
	vm_stats(&h, &st);
	assert_int_equal(st.dispatched, 1);
	assert_int_equal(st.completed, 1);
	assert_int_equal(atomic_load_explicit(&h.vm->slot[0].busy, memory_order_acquire), 0);

	h_sleep_ms(10);
	vm_stats(&h, &st);
	assert_int_equal(st.dispatched, 1); /* the rogue PENDING was never taken */
	/*
	 * A poller that loaded the stale rogue PENDING may still be reading the slot for
	 * the snapshot its failed CAS drops (the protocol breach races with that read by
	 * construction); moving the slot waits a grace period, after which no taker reads
	 * it, so the next request is written race-free.
	 */
	if (p) {
		assert_int_equal(rtioreq_vm_set_poller(h.vm, 0, NULL), 0);
		assert_int_equal(rtioreq_vm_set_poller(h.vm, 0, p), 0);
	}

	/* normal service again */
	h_submit(&h, 0, PIO, RD, 0x64, 1, 0, false);
	assert_int_equal(rtioreq_client_wait(c, &req), 0);
	assert_int_equal(req.addr, 0x64);
	req.value = 0x3c;
	assert_int_equal(rtioreq_client_complete(c, &req, 0), 0);
	assert_true(h_wait(&h, 0, PIO, &val, 5000));
	assert_int_equal(val, 0x3c);
	vm_stats(&h, &st);
	assert_int_equal(st.dispatched, 2);
	assert_int_equal(st.completed, 2);
	/* completed by the client, never inline on a poller */
	assert_int_equal(st.fallback, 2);
	assert_int_equal(st.polled, 0);
	h_vm_stop(&h);
}

static void test_busy_fallback(void **state)
{
	run_busy(false);
}

static void test_busy_polled(void **state)
{
	run_busy(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_snapshot_rejects_bad_type_and_direction),
		cmocka_unit_test(test_snapshot_rejects_bad_size),
		cmocka_unit_test(test_snapshot_rejects_out_of_range),
		cmocka_unit_test(test_snapshot_accepts_valid),
		cmocka_unit_test(test_invalid_fallback),
		cmocka_unit_test(test_invalid_polled),
		cmocka_unit_test(test_handler_error_fallback),
		cmocka_unit_test(test_handler_error_polled),
		cmocka_unit_test(test_unclaimed_fallback),
		cmocka_unit_test(test_unclaimed_polled),
		cmocka_unit_test(test_widths_fallback),
		cmocka_unit_test(test_widths_polled),
		cmocka_unit_test(test_completion_polling_fallback),
		cmocka_unit_test(test_completion_polling_polled),
		cmocka_unit_test(test_completion_polling_ops_fallback),
		cmocka_unit_test(test_completion_polling_ops_polled),
		cmocka_unit_test(test_busy_fallback),
		cmocka_unit_test(test_busy_polled),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
