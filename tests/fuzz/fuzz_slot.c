// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: one slot image through a real engine (tests/fuzz/README.md).
 *
 * Input: byte 0 picks the vCPU (0, 1: polled by a poller; 2, 3: the fallback path
 * through upcall, dispatcher and client threads), the rest is the 256-byte slot as the
 * hypervisor writes it (short inputs are padded with 0x5a). The harness plays the
 * hypervisor: it copies the image into the FREE slot, stores PENDING (release), rings
 * if the engine asks for it, waits for COMPLETE (acquire) and compares.
 *
 * Invariants (each failure aborts, i.e. is a finding):
 *  - rtioreq__snapshot() accepts exactly what an independent reading of the ABI
 *    (docs/shm-protocol.md) accepts, and copies those fields (value masked to size);
 *  - the request completes within 5 s; the engine writes nothing but the value field
 *    (and `processed`);
 *  - a handler runs exactly when the request is valid and wholly inside a range, and it
 *    sees the fields of the slot; reads complete with its answer masked to the size,
 *    invalid or unclaimed reads with all ones (u64 for MMIO, u32 otherwise), writes
 *    leave the value field alone;
 *  - the VM's counters move by exactly one request, in the right class.
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rtioreq.h"
#include "core/engine_pvt.h"

#define VCPUS 4
#define OFF_VALUE 88
#define OFF_STATE 136
#define SLOT sizeof(struct rtioreq_io_request)

#include "fuzz_check.h"

/* The routing the harness sets up, and the reference lookup over it. */
static const struct {
	uint32_t type;
	uint64_t start, end;
	int client;
} ranges[] = {
	{ RTIOREQ_TYPE_PORTIO, 0x100, 0x1ff, 0 },
	{ RTIOREQ_TYPE_PORTIO, 0x200, 0x203, 1 },
	{ RTIOREQ_TYPE_PORTIO, 0x3f8, 0x3ff, 0 },
	{ RTIOREQ_TYPE_PORTIO, 0xfff0, 0xffff, 1 },
	{ RTIOREQ_TYPE_MMIO, 0x10000, 0x1ffff, 1 },
	{ RTIOREQ_TYPE_MMIO, 0x20000, 0x20007, 0 },
	{ RTIOREQ_TYPE_MMIO, 0xfffffffffffff000ull, UINT64_MAX, 0 },
};

static struct {
	struct rtioreq_shm shm;
	struct rtioreq_engine *eng;
	struct rtioreq_vm *vm;
	struct rtioreq_client *c[2];
	struct rtioreq_poller *poller;
} h;

/* What the last handler call saw; ordered before COMPLETE by the engine's C2. */
static _Atomic int calls;
static struct rtioreq_req seen;
static int seen_client;

static uint64_t answer(const struct rtioreq_req *r)
{
	return (r->addr * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)r->type << 56) ^ r->size;
}

static int handler(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	seen = *req;
	seen_client = (int)(intptr_t)priv;
	if (req->dir != RTIOREQ_DIR_WRITE)
		req->value = answer(req);
	atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed); /* read after COMPLETE */
	return 0;
}

static void setup(void)
{
	struct rtioreq_vm_attr va = { .id = 7, .vcpu_num = VCPUS };
	struct rtioreq_thread_attr ta = RTIOREQ_THREAD_ATTR_DEFAULT;

	CHECK(!rtioreq_shm_create(&h.shm, NULL, VCPUS), "shm");
	h.eng = rtioreq_engine_create(NULL);
	CHECK(h.eng, "engine");
	va.page = &h.shm.region->page;
	va.chan = &h.shm.region->chan;
	h.vm = rtioreq_vm_attach(h.eng, &va);
	CHECK(h.vm, "vm");
	for (int i = 0; i < 2; i++) {
		struct rtioreq_client_attr a = { .name = i ? "fuzz1" : "fuzz0",
						 .handler = handler,
						 .priv = (void *)(intptr_t)i };

		h.c[i] = rtioreq_client_create(h.vm, &a);
		CHECK(h.c[i], "client");
	}
	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
		CHECK(!rtioreq_range_add(h.c[ranges[i].client], ranges[i].type, ranges[i].start,
					 ranges[i].end),
		      "range %zu", i);
	h.poller = rtioreq_poller_create(h.eng, &ta);
	CHECK(h.poller, "poller");
	/* hybrid idle: the poller sleeps between inputs instead of taking a CPU from the
	 * fuzzer, and the NEED_WAKEUP handshake is exercised too */
	rtioreq_poller_set_idle(h.poller, 20000);
	CHECK(!rtioreq_vm_set_poller(h.vm, 0, h.poller), "poller 0");
	CHECK(!rtioreq_vm_set_poller(h.vm, 1, h.poller), "poller 1");
}

/* The ABI read independently: validity and the fields of a well-formed request. */
static bool ref_validate(const uint8_t *b, struct rtioreq_req *r)
{
	uint32_t type, dir, cp, bus = 0, dev = 0, func = 0;
	uint64_t addr, size, value = 0, max = 4, limit = UINT64_MAX;

	memcpy(&type, b + 0, 4);
	memcpy(&cp, b + 4, 4);
	memset(r, 0, sizeof(*r));
	r->type = type;
	r->completion_polling = cp != 0;
	switch (type) {
	case RTIOREQ_TYPE_MMIO: /* direction, reserved, address, size, value: u32 u32 u64s */
	case RTIOREQ_TYPE_PORTIO:
		memcpy(&dir, b + 64, 4);
		memcpy(&addr, b + 72, 8);
		memcpy(&size, b + 80, 8);
		if (type == RTIOREQ_TYPE_MMIO) {
			memcpy(&value, b + 88, 8);
			max = 8;
		} else {
			uint32_t v32;

			memcpy(&v32, b + 88, 4);
			value = v32;
			limit = 0xffff;
		}
		break;
	case RTIOREQ_TYPE_PCICFG: { /* direction, reserved[3], size (u64), value, b/d/f, reg */
		uint32_t v32, reg;

		memcpy(&dir, b + 64, 4);
		memcpy(&size, b + 80, 8);
		memcpy(&v32, b + 88, 4);
		memcpy(&bus, b + 92, 4);
		memcpy(&dev, b + 96, 4);
		memcpy(&func, b + 100, 4);
		memcpy(&reg, b + 104, 4);
		value = v32;
		addr = reg;
		limit = 0xfff;
		if (bus > 255 || dev > 31 || func > 7)
			return false;
		break;
	}
	default:
		return false;
	}
	if (dir > 1 || (size != 1 && size != 2 && size != 4 && size != 8) || size > max)
		return false;
	if (addr + (size - 1) < addr || addr + (size - 1) > limit)
		return false;
	r->dir = dir;
	r->addr = addr;
	r->size = (uint32_t)size;
	r->value = dir == RTIOREQ_DIR_WRITE
			   ? (size == 8 ? value : value & ((1ull << (8 * size)) - 1))
			   : 0;
	r->bus = (uint8_t)bus;
	r->dev = (uint8_t)dev;
	r->func = (uint8_t)func;
	return true;
}

static int ref_route(const struct rtioreq_req *r)
{
	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
		if (ranges[i].type == r->type && r->addr >= ranges[i].start &&
		    r->addr + (r->size - 1) <= ranges[i].end)
			return ranges[i].client;
	return -1;
}

static uint32_t state(uint16_t v)
{
	return atomic_load_explicit(rtioreq_wire_atomic(&h.shm.region->page.req_slot[v].processed),
				    memory_order_acquire); /* pairs with the engine's C2 */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t img[SLOT], after[SLOT];
	struct rtioreq_io_request *slot;
	struct rtioreq_vm_stats st0, st1;
	struct rtioreq_req ref, snap;
	struct timespec t0, t;
	bool valid, snap_ok;
	uint32_t type;
	uint16_t v;
	int route, n0;

	if (!h.eng)
		setup();
	if (!size)
		return 0;
	v = data[0] % VCPUS;
	memset(img, 0x5a, sizeof(img));
	memcpy(img, data + 1, size - 1 < SLOT ? size - 1 : SLOT);

	/* 1. the snapshot against the reference, on a private copy */
	valid = ref_validate(img, &ref);
	memset(&snap, 0xcc, sizeof(snap));
	snap_ok = rtioreq__snapshot((const struct rtioreq_io_request *)img, &snap);
	CHECK(snap_ok == valid, "snapshot says %d, the ABI says %d", snap_ok, valid);
	if (valid)
		CHECK(snap.type == ref.type && snap.dir == ref.dir && snap.addr == ref.addr &&
			      snap.size == ref.size && snap.value == ref.value &&
			      snap.bus == ref.bus && snap.dev == ref.dev && snap.func == ref.func &&
			      snap.completion_polling == ref.completion_polling,
		      "snapshot fields differ from the slot");

	/* 2. through the engine */
	slot = &h.shm.region->page.req_slot[v];
	CHECK(state(v) == RTIOREQ_STATE_FREE, "slot %u not FREE", v);
	memcpy(slot, img, OFF_STATE);
	memcpy((uint8_t *)slot + OFF_STATE + 4, img + OFF_STATE + 4, SLOT - OFF_STATE - 4);
	route = valid ? ref_route(&ref) : -1;
	n0 = atomic_load_explicit(&calls, memory_order_relaxed);
	rtioreq_vm_stats(h.vm, &st0);
	/* H1: the slot's contents before PENDING */
	atomic_store_explicit(rtioreq_wire_atomic(&slot->processed), RTIOREQ_STATE_PENDING,
			      memory_order_release);
	if (rtioreq_hv_needs_upcall(h.shm.region, v))
		rtioreq_hv_upcall(h.shm.region);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (state(v) != RTIOREQ_STATE_COMPLETE) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		CHECK(t.tv_sec - t0.tv_sec < 5, "vCPU %u: no COMPLETE in 5 s (state %u)", v,
		      state(v));
		sched_yield();
	}
	memcpy(after, slot, SLOT);
	rtioreq_hv_release(h.shm.region, v);
	rtioreq_vm_stats(h.vm, &st1);

	/* only the value field changed */
	memcpy(&type, img, 4);
	for (size_t i = 0; i < SLOT; i++)
		if ((i < OFF_VALUE || i >= OFF_VALUE + 8) && (i < OFF_STATE || i >= OFF_STATE + 4))
			CHECK(after[i] == img[i], "byte %zu changed: %#x -> %#x", i, img[i],
			      after[i]);
	{
		bool rd = valid ? ref.dir != RTIOREQ_DIR_WRITE : true;
		uint64_t want, got, old;
		size_t n = type == RTIOREQ_TYPE_MMIO ? 8 : 4;

		if (!valid) {
			/* what the engine read as the direction decides the write-back */
			uint32_t dir;

			memcpy(&dir, img + 64, 4);
			/* every type, unknown ones too: a WRITE keeps its value field
			 * (docs/shm-protocol.md 6.1, 6.2; offset 64 in every layout) */
			rd = dir != RTIOREQ_DIR_WRITE;
		}
		got = old = 0;
		memcpy(&got, after + OFF_VALUE, n);
		memcpy(&old, img + OFF_VALUE, n);
		CHECK(!memcmp(after + OFF_VALUE + n, img + OFF_VALUE + n, 8 - n),
		      "bytes past the value field changed");
		if (!rd)
			want = old;
		else if (!valid)
			want = n == 8 ? UINT64_MAX : 0xffffffffu;
		else if (route < 0)
			want = ref.size == 8 ? UINT64_MAX : (1ull << (8 * ref.size)) - 1;
		else
			want = answer(&ref) & (ref.size == 8 ? UINT64_MAX
							       : (1ull << (8 * ref.size)) - 1);
		CHECK(got == want, "value field %#llx, want %#llx (valid %d, route %d)",
		      (unsigned long long)got, (unsigned long long)want, valid, route);
	}

	/* the handler ran exactly when routed, and saw the slot */
	n0 = atomic_load_explicit(&calls, memory_order_relaxed) - n0;
	CHECK(n0 == (route >= 0), "handler calls %d, routed %d", n0, route);
	if (route >= 0)
		CHECK(seen_client == route && seen.type == ref.type && seen.dir == ref.dir &&
			      seen.addr == ref.addr && seen.size == ref.size &&
			      (ref.dir != RTIOREQ_DIR_WRITE || seen.value == ref.value) &&
			      seen.bus == ref.bus && seen.dev == ref.dev && seen.func == ref.func &&
			      seen.vcpu == v && seen.vm_id == 7,
		      "the handler saw other fields than the slot's");

	/* counters: one request, in its class, on its path */
	CHECK(st1.completed - st0.completed == 1 && st1.dispatched - st0.dispatched == 1,
	      "completed +%llu", (unsigned long long)(st1.completed - st0.completed));
	CHECK(st1.invalid - st0.invalid == !valid, "invalid +%llu",
	      (unsigned long long)(st1.invalid - st0.invalid));
	CHECK(st1.unclaimed - st0.unclaimed == (valid && route < 0), "unclaimed +%llu",
	      (unsigned long long)(st1.unclaimed - st0.unclaimed));
	CHECK(st1.polled - st0.polled == (v < 2), "polled +%llu on vCPU %u",
	      (unsigned long long)(st1.polled - st0.polled), v);
	return 0;
}
