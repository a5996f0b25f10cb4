// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the PC device models' register interfaces (16550A UART, i8042,
 * CMOS RTC, PCI configuration mechanism #1, the default client) through
 * rtioreq_pcdev_handle(), as a guest drives them (tests/fuzz/README.md).
 *
 * Input: records of 12 bytes - type, direction, size, port selector, address (u32),
 * value (u32). The selector aims most accesses at the models' ports (0x3f8.., 0x60,
 * 0x64, 0x70, 0xcf8..) plus the record's low address bits; selector 0 uses the raw
 * address. UART input bytes are queued between records when the selector says so.
 *
 * Invariants, against a shadow of what a guest can know (each failure aborts):
 *  - malformed requests (size not 1/2/4/8, unknown type) are -EINVAL; reads are masked
 *    to their size, and all ones when the call failed;
 *  - UART: the scratch register reads back what was last written to it, LSR always has
 *    THRE and TEMT (bytes leave at once);
 *  - PCI: CONFIG_ADDRESS (dword at 0xcf8) reads back, the data port reads all ones (no
 *    devices), as do PCICFG requests and MMIO (nothing claimed);
 *  - RTC: CMOS RAM (0x0e..0x7f but the century byte) reads back what was written
 *    through index/data; time registers are valid BCD in BCD mode, and seconds and
 *    minutes stay below 60 in binary mode;
 *  - the counters never go backwards.
 * (The models' own locks make the calls safe from any thread; this target is single
 * threaded, as one vCPU is.)
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rtioreq.h"

#include "fuzz_check.h"

static struct {
	struct rtioreq_shm shm;
	struct rtioreq_engine *eng;
	struct rtioreq_vm *vm;
	struct rtioreq_pcdev *pc;
} h;

static _Atomic uint64_t out_bytes, resets;

static void uart_out(void *ctx, uint8_t b)
{
	atomic_fetch_add_explicit(&out_bytes, 1, memory_order_relaxed); /* a count */
}

static void on_reset(void *ctx)
{
	atomic_fetch_add_explicit(&resets, 1, memory_order_relaxed); /* a count */
}

static void setup(void)
{
	struct rtioreq_vm_attr va = { .id = 1, .vcpu_num = 1, .paused = true };
	struct rtioreq_pcdev_attr pa = { .uart_out = uart_out, .reset = on_reset };

	CHECK(!rtioreq_shm_create(&h.shm, NULL, 1), "shm");
	h.eng = rtioreq_engine_create(NULL);
	CHECK(h.eng, "engine");
	va.page = &h.shm.region->page;
	va.chan = &h.shm.region->chan;
	h.vm = rtioreq_vm_attach(h.eng, &va);
	CHECK(h.vm, "vm");
	h.pc = rtioreq_pcdev_attach(h.vm, &pa);
	CHECK(h.pc, "pcdev");
}

static const uint16_t bases[] = { 0, 0x3f8, 0x3f8, 0x60, 0x64, 0x70, 0xcf8, 0xcfc, 0xcf9 };

/* Shadow state, reset for each input by a fresh device-independent view. */
struct shadow {
	int scr;	 /* -1: unknown */
	int64_t pciaddr; /* -1: unknown */
	int rtc_index;	 /* -1: unknown */
	int cmos[128];	 /* -1: unknown */
};

static uint64_t mask(uint32_t size)
{
	return size >= 8 ? UINT64_MAX : (1ull << (8 * size)) - 1;
}

static bool bcd_ok(uint8_t v)
{
	return (v & 0xf) <= 9 && (v >> 4) <= 9;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rtioreq_pcdev_stats s0, s1;
	struct shadow sh;

	if (!h.pc)
		setup();
	/* The models keep their state across inputs: what an earlier input wrote is
	 * unknown here, so the shadow starts empty. */
	sh.scr = -1;
	sh.pciaddr = -1;
	sh.rtc_index = -1;
	for (int i = 0; i < 128; i++)
		sh.cmos[i] = -1;
	rtioreq_pcdev_stats(h.pc, &s0);
	for (size_t off = 0; off + 12 <= size; off += 12) {
		const uint8_t *p = data + off;
		struct rtioreq_req req = { 0 };
		uint32_t a32, v32;
		unsigned int sel = p[3] % (sizeof(bases) / sizeof(bases[0]) + 1);
		bool malformed, rd;
		int r;

		memcpy(&a32, p + 4, 4);
		memcpy(&v32, p + 8, 4);
		if (sel == sizeof(bases) / sizeof(bases[0])) { /* console input */
			uint8_t in[4];

			memcpy(in, &v32, 4);
			(void)rtioreq_pcdev_uart_input(h.pc, in, 1 + (p[2] & 3));
			continue;
		}
		req.type = p[0] % 4; /* 3: unknown */
		req.dir = p[1] & 1;
		req.size = p[2] % 9;
		req.addr = sel ? bases[sel] + (a32 & 7) : a32;
		req.value = (uint64_t)v32 | (uint64_t)v32 << 32;
		rd = req.dir == RTIOREQ_DIR_READ;
		malformed = !req.size || (req.size & (req.size - 1)) || req.type > 2;
		r = rtioreq_pcdev_handle(h.pc, &req);
		if (malformed) {
			CHECK(r == -EINVAL, "malformed request: %d", r);
			continue;
		}
		CHECK(r == 0 || r == -EINVAL, "handle %d", r);
		if (rd) {
			CHECK(!(req.value & ~mask(req.size)), "read %#llx of size %u",
			      (unsigned long long)req.value, req.size);
			if (r)
				CHECK(req.value == mask(req.size), "failed read %#llx",
				      (unsigned long long)req.value);
		}
		if (r)
			continue;
		if (req.type == RTIOREQ_TYPE_MMIO || req.type == RTIOREQ_TYPE_PCICFG) {
			CHECK(!rd || req.value == mask(req.size), "type %u read %#llx", req.type,
			      (unsigned long long)req.value);
			continue;
		}
		/* port I/O, byte by byte as the models split it */
		for (uint32_t i = 0; i < req.size; i++) {
			uint64_t port = req.addr + i;
			uint8_t b = (uint8_t)(req.value >> (8 * i));
			uint8_t wb = (uint8_t)(v32 >> (8 * (i % 4)));
			bool uart = req.addr >= 0x3f8 && req.addr + req.size <= 0x400;

			if (uart && port == 0x3ff) {
				if (!rd)
					sh.scr = wb;
				else if (sh.scr >= 0)
					CHECK(b == sh.scr, "SCR %#x, wrote %#x", b, sh.scr);
			}
			if (uart && port == 0x3fd && rd)
				CHECK((b & 0x60) == 0x60, "LSR %#x without THRE|TEMT", b);
		}
		if (req.addr == 0xcf8 && req.size == 4) {
			if (!rd)
				sh.pciaddr = v32;
			else if (sh.pciaddr >= 0)
				CHECK(req.value == (uint64_t)sh.pciaddr, "CONFIG_ADDRESS %#llx",
				      (unsigned long long)req.value);
		}
		if (rd && req.addr >= 0xcfc && req.addr + req.size <= 0xd00)
			CHECK(req.value == mask(req.size), "PCI data %#llx",
			      (unsigned long long)req.value);
		if (req.addr >= 0x70 && req.addr + req.size <= 0x72) {
			for (uint32_t i = 0; i < req.size; i++) {
				uint64_t port = req.addr + i;
				uint8_t b = (uint8_t)(req.value >> (8 * i));
				uint8_t wb = (uint8_t)(v32 >> (8 * i));

				if (port == 0x70) {
					if (!rd)
						sh.rtc_index = wb & 0x7f;
					continue;
				}
				if (sh.rtc_index < 0)
					continue;
				if (sh.rtc_index >= 0x0e && sh.rtc_index != 0x32) {
					if (!rd)
						sh.cmos[sh.rtc_index] = wb;
					else if (sh.cmos[sh.rtc_index] >= 0)
						CHECK(b == sh.cmos[sh.rtc_index],
						      "CMOS %#x reads %#x, wrote %#x",
						      sh.rtc_index, b, sh.cmos[sh.rtc_index]);
				}
				if (sh.rtc_index == 0x0b && !rd)
					sh.cmos[0x0b] = wb;
				if (rd && sh.cmos[0x0b] >= 0 &&
				    (sh.rtc_index == 0 || sh.rtc_index == 2 || sh.rtc_index == 7 ||
				     sh.rtc_index == 8 || sh.rtc_index == 9)) {
					if (sh.cmos[0x0b] & 0x04) /* binary */
						CHECK(sh.rtc_index > 2 || b < 60, "binary time %#x",
						      b);
					else
						CHECK(bcd_ok(b), "register %#x: %#x is not BCD",
						      sh.rtc_index, b);
				}
			}
		}
	}
	rtioreq_pcdev_stats(h.pc, &s1);
	CHECK(s1.uart_tx >= s0.uart_tx && s1.rtc_reads >= s0.rtc_reads &&
		      s1.pci_cfg >= s0.pci_cfg && s1.resets >= s0.resets,
	      "counters went backwards");
	return 0;
}
