// SPDX-License-Identifier: MIT
/*
 * A conformance hypervisor: an independent hypervisor side written from
 * docs/shm-protocol.md alone (no rtioreq header, no engine helper: every offset and
 * rule below is the document's), driving the real `rtioreq serve` program.
 *
 * usage: conform RTIOREQ_BINARY SCENARIO
 *   polling   serve -m polling, every request spins for COMPLETE (completion_polling 1)
 *   notify    serve -m notify, every request sleeps for its notification
 *   mixed     serve -m polling with 2 pollers, completion_polling chosen per request
 *   hybrid    serve -m polling --idle hybrid, pauses so the pollers go to sleep
 *   scribble  polling, and a thread scribbling over the last vCPU's slot all along
 *   restart   SIGTERM and kill -9 restarts of serve: takeover of what a dead engine
 *             left PROCESSING, the owner word and lock, requests pending at attach
 *   second    a second serve on a served region must be refused (EBUSY, holder pid)
 *   slowcreate serve started 1.2 s before a creator that takes its time
 *   badregion serve refuses bad regions naming the cause
 *
 * Every scenario but badregion checks exact accounting: each request completes
 * exactly once with the value the document and the example devices promise; no byte
 * of a slot other than `value` (reads only) and `processed` changes; idle slots stay
 * FREE; the channel page changes only in the words the engine owns; serve's final
 * counters equal what this side saw (completed, invalid, unclaimed, notified = the
 * done_seq increments, abandoned = the slots seen PROCESSING when an engine was
 * killed). Requests are PENDING before serve attaches in every scenario.
 * Exit 0 pass, 1 fail.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- docs/shm-protocol.md, section 2: the region ---- */
#define REGION_SIZE 8192
#define MAX_VCPUS 16
#define SLOT(v) (256u * (v))
#define W_TYPE 0	/* slot words (offset / 4) */
#define W_CP 1
#define W_DIR 16	/* 64 */
#define W_ADDR 18	/* 72, u64 */
#define W_SIZE 20	/* 80, u64 */
#define W_VALUE 22	/* 88, u32 (u64 for MMIO) */
#define W_BUS 23	/* 92 */
#define W_DEV 24	/* 96 */
#define W_FUNC 25	/* 100 */
#define W_REG 26	/* 104 */
#define W_KH 33		/* 132 kernel_handled */
#define W_PROCESSED 34	/* 136 */
#define CHAN 4096u
#define CH_MAGIC (CHAN + 0)
#define CH_VERSION (CHAN + 4)
#define CH_VCPU_NUM (CHAN + 8)
#define CH_FLAGS (CHAN + 12)
#define CH_UPCALL (CHAN + 64)
#define CH_POLLED (CHAN + 128)
#define CH_NEED_WAKEUP (CHAN + 192)
#define CH_DONE(v) (CHAN + 256 + 64 * (v))
#define CH_OWNER (CHAN + 1280) /* channel version 2: the engine's owner word + lock */
#define MAGIC 0x4f495452u
enum { PENDING = 0, COMPLETE = 1, PROCESSING = 2, FREE = 3 };
enum { PORTIO = 0, MMIO = 1, PCICFG = 2 };
enum { READ = 0, WRITE = 1 };

/* ---- the example devices `rtioreq serve` adds (include/rtioreq/devices/exdev.h's
 * description): RAM-backed MMIO, a per-vCPU accumulator port, an unclaimed port; no
 * default client (PCICFG and anything else unclaimed) ---- */
#define RAM_BASE 0xd0000000ull
#define RAM_SIZE 0x1000u
#define ACC_PORT 0x510u
#define UNMAPPED_PORT 0x5f0u

#define REQ_TIMEOUT_NS 10000000000ull

static const char *bin, *scenario;
static char name[64], tmpdir[64];
static uint32_t chan_version = 2;
static uint8_t *R;
static int rfd = -1;
static unsigned int nvcpu = 8;
static int failures;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_us(unsigned int us)
{
	struct timespec ts = { us / 1000000, (long)(us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stdout, "FAIL [%s]: ", scenario);
	vfprintf(stdout, fmt, ap);
	fputc('\n', stdout);
	va_end(ap);
	fflush(stdout);
	if (++failures > 20) {
		printf("too many failures, giving up\n");
		exit(1);
	}
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	uint64_t x = (rng_state += 0x9e3779b97f4a7c15ull);

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Every word of the region is accessed atomically by this side (the scribbler races
 * with the driver on purpose; the document asks for plain stores, relaxed atomics are
 * at least that). */
static _Atomic uint32_t *W(uint32_t off)
{
	return (_Atomic uint32_t *)(R + off);
}
static uint32_t ld(uint32_t off)
{
	return atomic_load_explicit(W(off), memory_order_relaxed);
}
static void st(uint32_t off, uint32_t x)
{
	atomic_store_explicit(W(off), x, memory_order_relaxed);
}
static uint32_t sw(unsigned int v, unsigned int word)
{
	return SLOT(v) + 4 * word;
}

static uint64_t mask(uint32_t size)
{
	return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1;
}

/* Shared futexes: no FUTEX_PRIVATE_FLAG (section 5, step 5). */
static void futex_wake_all(uint32_t off)
{
	syscall(SYS_futex, W(off), FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

struct waitv {
	uint64_t val, uaddr;
	uint32_t flags, reserved;
};

/* futex_waitv (syscall 449) over up to 16 done_seq words, absolute CLOCK_MONOTONIC. */
static void futex_waitv_done(const uint32_t *vs, const uint32_t *seen, unsigned int n,
			     uint64_t timeout_ns)
{
	struct waitv wv[MAX_VCPUS];
	uint64_t t = now_ns() + timeout_ns;
	struct timespec abs = { (time_t)(t / 1000000000u), (long)(t % 1000000000u) };

	for (unsigned int i = 0; i < n; i++)
		wv[i] = (struct waitv){ .val = seen[i], .uaddr = (uintptr_t)W(CH_DONE(vs[i])),
					.flags = 2 /* FUTEX_32 */ };
	syscall(449, wv, n, 0, &abs, CLOCK_MONOTONIC);
}

/* ------------------------------------------------------------------------------ */
/* The region (section 4.1) */

static uint32_t canary(unsigned int v, unsigned int w)
{
	return 0xc0de0000u | (v << 8) | w;
}

/* @slow_us: pause between each creation step (a slow creator). */
static void region_create(uint32_t vcpus, uint32_t version, off_t size, bool magic,
			  unsigned int slow_us)
{
	rfd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (rfd < 0) {
		printf("FAIL [%s]: shm_open %s: %s\n", scenario, name, strerror(errno));
		exit(1);
	}
	sleep_us(slow_us);
	if (ftruncate(rfd, size)) {
		perror("ftruncate");
		exit(1);
	}
	sleep_us(slow_us);
	R = mmap(NULL, REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
	if (R == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	if (size < REGION_SIZE)
		return;
	/* every slot FREE; the slots nobody serves (>= vcpu_num) hold a canary to prove
	 * it; the document leaves their other bytes to the hypervisor */
	for (unsigned int v = 0; v < MAX_VCPUS; v++) {
		for (unsigned int w = 0; w < 64 && v >= vcpus && v < MAX_VCPUS; w++)
			st(sw(v, w), canary(v, w));
		st(sw(v, W_PROCESSED), FREE);
	}
	st(CH_VERSION, version);
	st(CH_VCPU_NUM, vcpus);
	sleep_us(slow_us);
	if (magic) /* release: the header before the magic */
		atomic_store_explicit(W(CH_MAGIC), MAGIC, memory_order_release);
}

static void region_destroy(void)
{
	if (R && R != MAP_FAILED)
		munmap(R, REGION_SIZE);
	if (rfd >= 0)
		close(rfd);
	shm_unlink(name);
	R = NULL;
	rfd = -1;
}

/* Channel words the engine never writes stay as created (sections 2.1 and 6.2). */
static void check_channel(void)
{
	uint32_t mine = (uint32_t)((1ull << nvcpu) - 1);

	if (ld(CH_MAGIC) != MAGIC || ld(CH_VERSION) != chan_version || ld(CH_VCPU_NUM) != nvcpu ||
	    ld(CH_FLAGS) != 0)
		fail("channel header changed: magic %#x version %u vcpu_num %u flags %#x",
		     ld(CH_MAGIC), ld(CH_VERSION), ld(CH_VCPU_NUM), ld(CH_FLAGS));
	for (uint32_t off = CHAN + 16; off < REGION_SIZE; off += 4) {
		bool word = off == CH_UPCALL || off == CH_POLLED || off == CH_NEED_WAKEUP ||
			    (off >= CH_DONE(0) && off < CH_DONE(MAX_VCPUS) && off % 64 == 0) ||
			    (off == CH_OWNER && chan_version >= 2);

		if (!word && ld(off))
			fail("channel offset %u (region %u) is %#x: nobody may write it",
			     off - CHAN, off, ld(off));
	}
	if (ld(CH_POLLED) & ~mine || ld(CH_NEED_WAKEUP) & ~mine)
		fail("polled_mask %#x / need_wakeup %#x have bits beyond vcpu_num %u",
		     ld(CH_POLLED), ld(CH_NEED_WAKEUP), nvcpu);
	for (unsigned int v = nvcpu; v < MAX_VCPUS; v++)
		for (unsigned int w = 0; w < 64; w++)
			if (ld(sw(v, w)) != (w == W_PROCESSED ? FREE : canary(v, w)))
				fail("slot %u >= vcpu_num, word %u is %#x: written", v, w,
				     ld(sw(v, w)));
}

/* The kernel-maintained liveness of section 7.4: a write lock on the owner word,
 * held by the engine's open file description. Returns the lock type seen. */
static int engine_lock(void)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = CH_OWNER,
			    .l_len = 4 };

	if (fcntl(rfd, F_OFD_GETLK, &fl)) {
		fail("F_OFD_GETLK: %s", strerror(errno));
		return -1;
	}
	return fl.l_type;
}

/* ------------------------------------------------------------------------------ */
/* vCPUs */

enum kind { K_DEV, K_UNCLAIMED, K_INVALID, K_SCRIBBLED };

struct vcpu {
	bool out;		/* a request is outstanding */
	bool cp;		/* completion_polling */
	bool write;		/* the engine must not write value */
	bool wide;		/* value is a u64 (MMIO) */
	enum kind kind;
	uint32_t img[64];	/* every word as written (processed excluded) */
	uint64_t expect;	/* the value field after a read */
	uint64_t alt;		/* also right: completed with all ones (restart) */
	bool has_alt;
	uint32_t seen;		/* done_seq read before checking the state */
	uint64_t t0;
	/* the device as this vCPU sees it (its own RAM window and accumulator) */
	uint8_t ram[256];
	uint32_t acc;
};

static struct vcpu vc[MAX_VCPUS];
static bool stable = true;	/* device state is kept (no restarts) */
static int cp_mode;		/* 1 spin, 0 notify, -1 per request */
static int scribbled = -1;	/* vCPU the scribbler writes over */

/* What this side saw since the current engine started. */
struct tally {
	uint64_t completed, invalid, unclaimed, cp0[MAX_VCPUS], ones, rings;
	uint32_t done0[MAX_VCPUS];
};
static struct tally tl;

static void tally_start(void)
{
	memset(&tl, 0, sizeof(tl));
	for (unsigned int v = 0; v < nvcpu; v++)
		tl.done0[v] = ld(CH_DONE(v));
}

/* Build the next request of vCPU @v into vc[v] (section 5 step 2 and section 6). */
static void gen(unsigned int v, bool no_dev)
{
	struct vcpu *c = &vc[v];
	uint64_t x = rnd(), value = rnd();
	unsigned int pick = (unsigned int)(x % 100);
	uint32_t type = PORTIO, dir = (x >> 8) & 1, size = 1u << ((x >> 12) % 3), bus = 0,
		 dev = 0, func = 0, reg = 0;
	uint64_t addr = UNMAPPED_PORT;

	for (unsigned int w = 0; w < 64; w++)
		c->img[w] = canary(v, w);
	c->cp = cp_mode < 0 ? (x >> 40) & 1 : cp_mode != 0;
	c->kind = K_UNCLAIMED;
	c->has_alt = !stable;
	if ((int)v == scribbled) {
		c->kind = K_SCRIBBLED;
	} else if (pick < 12) { /* malformed: each rule of 6.1 in turn */
		c->kind = K_INVALID;
		switch ((x >> 16) % 8) {
		case 0: type = 3 + (uint32_t)(value % 1000); break;	/* unknown type */
		case 1: type = 0xffffffffu; dir = WRITE; break;		/* unknown, WRITE */
		case 2: size = (uint32_t[]){ 0, 3, 8, 16 }[value % 4]; break;
		case 3: dir = 2 + (uint32_t)(value % 100); break;	/* direction */
		case 4: addr = 0xffff; size = 2; break;			/* port overflow */
		case 5:
			type = MMIO;
			addr = value & 1 ? ~0ull : RAM_BASE;
			size = value & 1 ? 2 : 16;
			break;
		case 6:
			type = PCICFG;
			bus = value & 1 ? 256 : 0;
			dev = value & 2 ? 32 : 0;
			func = !(value & 3) ? 8 : 0;
			break;
		default:
			type = PCICFG;
			reg = 0xfff;
			size = 2;
			break;
		}
	} else if (pick < 24) { /* unclaimed: the unmapped port, MMIO outside RAM, PCICFG */
		if (pick % 3 == 1) {
			type = MMIO;
			addr = 0x1000 + (x >> 20) % 0x1000;
			size = 1u << ((x >> 12) & 3);
		} else if (pick % 3 == 2) {
			type = PCICFG;
			bus = (uint32_t)(value >> 8) & 255;
			dev = (uint32_t)(value >> 16) & 31;
			func = (uint32_t)(value >> 24) & 7;
			reg = (uint32_t)(value >> 32) & 0xffc;
		}
	} else if (pick & 1) { /* RAM: this vCPU's own 256 bytes */
		uint32_t off;

		type = MMIO;
		size = 1u << ((x >> 12) & 3);
		off = (uint32_t)((x >> 20) % (256 / size)) * size;
		addr = RAM_BASE + 256u * v + off;
		c->kind = K_DEV;
	} else { /* the accumulator port, aligned */
		addr = ACC_PORT + ((uint32_t)(x >> 20) & 3 & ~(size - 1));
		c->kind = K_DEV;
	}
	if (c->kind == K_DEV && no_dev)
		value = 0; /* restarts reset the devices: writes of 0 keep them all zero */
	value &= mask(size);
	c->write = dir == WRITE;
	c->wide = type == MMIO;
	c->img[W_TYPE] = type;
	c->img[W_CP] = c->cp;
	c->img[W_DIR] = dir;
	if (type == PCICFG) {
		c->img[W_BUS] = bus;
		c->img[W_DEV] = dev;
		c->img[W_FUNC] = func;
		c->img[W_REG] = reg;
	} else {
		c->img[W_ADDR] = (uint32_t)addr;
		c->img[W_ADDR + 1] = (uint32_t)(addr >> 32);
	}
	c->img[W_SIZE] = size;
	c->img[W_SIZE + 1] = 0;
	if (c->write) {
		c->img[W_VALUE] = (uint32_t)value;
		if (c->wide)
			c->img[W_VALUE + 1] = (uint32_t)(value >> 32);
	}
	/* a read's value field is left holding the canary: the engine overwrites it */
	c->alt = c->kind == K_INVALID ? (c->wide ? ~0ull : 0xffffffffull) : mask(size);
	switch (c->kind) {
	case K_INVALID: c->expect = c->alt; break;
	case K_UNCLAIMED: c->expect = mask(size); break;
	case K_SCRIBBLED: break;
	case K_DEV:
		if (!stable) {
			c->expect = 0;
		} else if (type == MMIO) {
			uint32_t off = (uint32_t)(addr - RAM_BASE - 256u * v);

			if (c->write) {
				memcpy(c->ram + off, &value, size); /* little endian */
			} else {
				c->expect = 0;
				memcpy(&c->expect, c->ram + off, size);
			}
		} else if (c->write) {
			c->acc += (uint32_t)value;
		} else {
			c->expect = c->acc & mask(size);
		}
		break;
	}
	if (!stable && c->kind == K_DEV)
		c->expect = 0;
}

/* Section 5, steps 1-5. @ring false: the request is left PENDING without an upcall. */
static void submit(unsigned int v, bool ring)
{
	struct vcpu *c = &vc[v];
	uint32_t s = atomic_load_explicit(W(sw(v, W_PROCESSED)), memory_order_acquire);

	if (s != FREE) { /* step 1 */
		fail("vCPU %u: slot is %u, not FREE, before submit (written while idle)", v, s);
		return;
	}
	for (unsigned int w = 0; w < 64; w++) /* step 2 */
		if (w != W_PROCESSED)
			st(sw(v, w), c->img[w]);
	c->out = true;
	c->t0 = now_ns();
	/* step 3, H1 */
	atomic_store_explicit(W(sw(v, W_PROCESSED)), PENDING, memory_order_release);
	/* step 4: full fence, then both masks */
	atomic_thread_fence(memory_order_seq_cst);
	if (!ring)
		return;
	if (!(ld(CH_POLLED) & (1u << v)) || (ld(CH_NEED_WAKEUP) & (1u << v))) {
		/* step 5, U1 + wake all */
		atomic_fetch_add_explicit(W(CH_UPCALL), 1, memory_order_release);
		futex_wake_all(CH_UPCALL);
		tl.rings++;
	}
}

/* Step 7 and the checks: called after an acquire load saw COMPLETE (H2). */
static void complete(unsigned int v)
{
	struct vcpu *c = &vc[v];
	uint64_t got;

	if (c->kind != K_SCRIBBLED) {
		for (unsigned int w = 0; w < 64; w++) {
			bool val = !c->write && (w == W_VALUE || (c->wide && w == W_VALUE + 1));

			if (w != W_PROCESSED && !val && ld(sw(v, w)) != c->img[w])
				fail("vCPU %u: slot word %u (offset %u) is %#x, wrote %#x: the engine "
				     "wrote outside value/processed (type %u dir %u)", v, w, 4 * w,
				     ld(sw(v, w)), c->img[w], c->img[W_TYPE], c->img[W_DIR]);
		}
		got = ld(sw(v, W_VALUE));
		if (c->wide)
			got |= (uint64_t)ld(sw(v, W_VALUE + 1)) << 32;
		if (!c->write && got != c->expect && !(c->has_alt && got == c->alt))
			fail("vCPU %u: read type %u addr %#x size %u kind %d got %#" PRIx64
			     ", expected %#" PRIx64, v, c->img[W_TYPE], c->img[W_ADDR],
			     c->img[W_SIZE], c->kind, got, c->expect);
		if (!c->write && c->has_alt && got == c->alt && c->expect != c->alt)
			tl.ones++;
		if (c->kind == K_INVALID)
			tl.invalid++;
		else if (c->kind == K_UNCLAIMED)
			tl.unclaimed++;
	}
	tl.completed++;
	if (!c->cp)
		tl.cp0[v]++;
	c->out = false;
	/* H3 */
	atomic_store_explicit(W(sw(v, W_PROCESSED)), FREE, memory_order_release);
}

/* One pass: complete what is COMPLETE; if nothing was, wait a little (section 5 step
 * 6). Returns the number completed. */
static unsigned int harvest(bool may_sleep)
{
	uint32_t wv[MAX_VCPUS], seen[MAX_VCPUS];
	unsigned int n = 0, done = 0;

	for (unsigned int v = 0; v < nvcpu; v++) {
		uint32_t s;

		if (!vc[v].out) {
			s = atomic_load_explicit(W(sw(v, W_PROCESSED)), memory_order_acquire);
			if (s != FREE)
				fail("vCPU %u: idle slot became %u (completed twice?)", v, s);
			continue;
		}
		/* N1 partner: the counter before the state */
		vc[v].seen = atomic_load_explicit(W(CH_DONE(v)), memory_order_acquire);
		s = atomic_load_explicit(W(sw(v, W_PROCESSED)), memory_order_acquire);
		if (s == COMPLETE) {
			complete(v);
			done++;
		} else if (s != PENDING && s != PROCESSING) {
			fail("vCPU %u: outstanding slot in state %u", v, s);
			vc[v].out = false;
		} else if (now_ns() - vc[v].t0 > REQ_TIMEOUT_NS) {
			fail("vCPU %u: request lost: still %s after %llu s", v,
			     s == PENDING ? "PENDING" : "PROCESSING", REQ_TIMEOUT_NS / 1000000000ull);
			vc[v].out = false;
		} else if (!vc[v].cp) {
			wv[n] = v;
			seen[n++] = vc[v].seen;
		}
	}
	if (done || !may_sleep)
		return done;
	if (n) /* a safety-net timeout: the count of notifications is checked exactly */
		futex_waitv_done(wv, seen, n, 20000000);
	else
		sched_yield();
	return 0;
}

static unsigned int outstanding(void)
{
	unsigned int n = 0;

	for (unsigned int v = 0; v < nvcpu; v++)
		n += vc[v].out;
	return n;
}

static void drain(void)
{
	while (outstanding())
		harvest(true);
}

/* Keep every vCPU busy for @ns or @max requests. @think: pause now and then with
 * nothing outstanding (hybrid idle). */
static uint64_t traffic(uint64_t ns, uint64_t max, bool think)
{
	uint64_t end = now_ns() + ns, n = 0;

	while (now_ns() < end && n < max && !failures) {
		if (think && !(rnd() % 64)) {
			drain();
			sleep_us(200 + (unsigned int)(rnd() % 800));
		}
		for (unsigned int v = 0; v < nvcpu; v++)
			if (!vc[v].out) {
				gen(v, !stable);
				submit(v, true);
				n++;
			}
		harvest(true);
	}
	return n;
}

/* ------------------------------------------------------------------------------ */
/* The engine: `rtioreq serve` */

struct serve {
	pid_t pid;
	int n;
	char err[128], json[128];
};

/* serves still running: killed by the exit handler, whatever way this test ends */
static pid_t live[8];

static void live_set(pid_t old, pid_t now)
{
	for (unsigned int i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (live[i] == old) {
			live[i] = now;
			return;
		}
}

static void cleanup(void)
{
	for (unsigned int i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (live[i] > 0) {
			kill(live[i], SIGKILL);
			waitpid(live[i], NULL, 0);
		}
	shm_unlink(name);
}

static void serve_start(struct serve *s, const char *mode, const char *extra)
{
	static int count;
	char *argv[32];
	int argc = 0, fd;
	char shm[80], json[160], *ex = extra ? strdup(extra) : NULL;

	s->n = count++;
	snprintf(s->err, sizeof(s->err), "%s/serve%d.err", tmpdir, s->n);
	snprintf(s->json, sizeof(s->json), "%s/serve%d.json", tmpdir, s->n);
	snprintf(shm, sizeof(shm), "--shm=%s", name);
	snprintf(json, sizeof(json), "--json=%s", s->json);
	argv[argc++] = (char *)bin;
	argv[argc++] = "serve";
	argv[argc++] = shm;
	argv[argc++] = "--mode";
	argv[argc++] = (char *)mode;
	argv[argc++] = json;
	for (char *t = ex ? strtok(ex, " ") : NULL; t && argc < 30; t = strtok(NULL, " "))
		argv[argc++] = t;
	argv[argc] = NULL;
	s->pid = fork();
	if (s->pid < 0) {
		perror("fork");
		exit(1);
	}
	if (!s->pid) {
		fd = open(s->err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 2);
		fd = open("/dev/null", O_WRONLY);
		dup2(fd, 1);
		execv(bin, argv);
		_exit(127);
	}
	live_set(0, s->pid);
	free(ex);
}

static char *slurp(const char *path)
{
	static char buf[8192];
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

	buf[n] = 0;
	if (f)
		fclose(f);
	return buf;
}

/* Wait until serve says it serves (stderr), doing traffic @with_traffic. */
static void serve_wait_serving(struct serve *s, bool with_traffic)
{
	uint64_t end = now_ns() + 20000000000ull;

	while (!strstr(slurp(s->err), "serving") && now_ns() < end) {
		if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
			live_set(s->pid, 0);
			fail("serve exited early: %s", slurp(s->err));
			printf("serve's stderr kept in %s\n", tmpdir);
			exit(1);
		}
		if (with_traffic)
			traffic(2000000, UINT64_MAX, false);
		else
			sleep_us(2000);
	}
	if (!strstr(slurp(s->err), "serving"))
		fail("serve did not start: %s", slurp(s->err));
}

/* Signal serve and reap it; returns its exit status (or -signal). */
static int serve_stop(struct serve *s, int sig)
{
	int status;

	kill(s->pid, sig);
	while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR)
		;
	live_set(s->pid, 0);
	s->pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

static bool json_get(const char *json, const char *key, uint64_t *out)
{
	char k[64];
	const char *p;

	snprintf(k, sizeof(k), "\"%s\": ", key);
	p = strstr(json, k);
	if (!p)
		return false;
	*out = strtoull(p + strlen(k), NULL, 10);
	return true;
}

/* serve's final counters against this side's tally. @polled_all: every slot polled. */
static void check_counters(struct serve *s, const char *mode, uint64_t abandoned,
			   bool exact_classes, bool polled_all)
{
	char json[8192];
	uint64_t got[16];
	uint64_t dnotified = 0;
	static const char *const keys[] = { "dispatched", "completed", "polled", "fallback",
					    "invalid", "unclaimed", "handler_errors", "forced",
					    "notified", "abandoned", "cleared" };
	enum { DISP, COMPL, POLL, FALLB, INV, UNCL, HERR, FORC, NOTI, ABAN, CLEAR };

	snprintf(json, sizeof(json), "%s", slurp(s->json));
	for (unsigned int i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!json_get(json, keys[i], &got[i])) {
			fail("serve %d: no \"%s\" in its JSON: %s", s->n, keys[i], json);
			got[i] = 0;
		}
	for (unsigned int v = 0; v < nvcpu; v++) {
		uint32_t d = ld(CH_DONE(v)) - tl.done0[v];

		dnotified += d;
	}
	printf("serve %d (%s): completed %" PRIu64 " (this side saw %" PRIu64 "), invalid %" PRIu64
	       ", unclaimed %" PRIu64 ", cleared %" PRIu64 ", abandoned %" PRIu64 ", notified %"
	       PRIu64 " (done_seq +%" PRIu64 "), polled %" PRIu64 ", upcalls rung %" PRIu64 "\n",
	       s->n, mode, got[COMPL], tl.completed, got[INV], got[UNCL], got[CLEAR], got[ABAN],
	       got[NOTI], dnotified, got[POLL], tl.rings);
	if (got[COMPL] != tl.completed)
		fail("serve %d: reports completed %" PRIu64 ", this side saw %" PRIu64, s->n,
		     got[COMPL], tl.completed);
	if (got[ABAN] != abandoned)
		fail("serve %d: reports abandoned %" PRIu64 ", %" PRIu64 " slots were PROCESSING "
		     "when its predecessor was killed", s->n, got[ABAN], abandoned);
	if (got[DISP] + got[ABAN] != got[COMPL])
		fail("serve %d: dispatched %" PRIu64 " + abandoned %" PRIu64 " != completed %" PRIu64,
		     s->n, got[DISP], got[ABAN], got[COMPL]);
	if (got[POLL] + got[FALLB] != got[COMPL])
		fail("serve %d: polled + fallback != completed", s->n);
	if (got[NOTI] != dnotified)
		fail("serve %d: reports notified %" PRIu64 ", done_seq grew by %" PRIu64, s->n,
		     got[NOTI], dnotified);
	for (unsigned int v = 0; v < nvcpu; v++)
		if ((int)v != scribbled && ld(CH_DONE(v)) - tl.done0[v] != tl.cp0[v])
			fail("vCPU %u: done_seq grew by %u for %" PRIu64 " requests that asked for "
			     "a notification", v, ld(CH_DONE(v)) - tl.done0[v], tl.cp0[v]);
	if (got[HERR] || got[FORC])
		fail("serve %d: handler_errors %" PRIu64 " forced %" PRIu64, s->n, got[HERR],
		     got[FORC]);
	if (exact_classes && (got[INV] != tl.invalid || got[UNCL] != tl.unclaimed))
		fail("serve %d: invalid %" PRIu64 " unclaimed %" PRIu64 ", this side sent %" PRIu64
		     " and %" PRIu64, s->n, got[INV], got[UNCL], tl.invalid, tl.unclaimed);
	if (exact_classes && stable && got[CLEAR])
		fail("serve %d: cleared %" PRIu64 " without a clear", s->n, got[CLEAR]);
	if (polled_all && got[POLL] != got[COMPL])
		fail("serve %d: polled %" PRIu64 " of %" PRIu64 " with every slot polled", s->n,
		     got[POLL], got[COMPL]);
	if (!strcmp(mode, "notify") && got[FALLB] != got[COMPL])
		fail("serve %d: notify mode, fallback %" PRIu64 " of %" PRIu64, s->n, got[FALLB],
		     got[COMPL]);
}

/* ------------------------------------------------------------------------------ */
/* Scenarios */

static atomic_bool scribble_stop;

static void *scribbler(void *arg)
{
	unsigned int v = (unsigned int)(uintptr_t)arg;
	static const unsigned int words[] = { W_TYPE, W_CP, W_DIR, W_SIZE, W_SIZE + 1, W_VALUE,
					      W_VALUE + 1, W_BUS, W_DEV, W_FUNC, W_REG, W_KH, 2, 17 };
	uint64_t x = 12345;

	/* every field but the address (kept at the unclaimed port: no device state
	 * changes) and processed; values biased to valid ones so requests also pass */
	while (!atomic_load_explicit(&scribble_stop, memory_order_relaxed)) {
		for (int i = 0; i < 64; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			st(sw(v, words[(x >> 33) % (sizeof(words) / sizeof(words[0]))]),
			   (x >> 60) & 1 ? (uint32_t)(x >> 20) : (uint32_t)(x >> 61));
		}
		sched_yield();
	}
	return NULL;
}

/* polling / notify / mixed / hybrid / scribble: one serve, exact accounting. */
static void scenario_basic(const char *mode, const char *extra, bool think, bool scribble)
{
	struct serve s;
	pthread_t th;
	uint64_t n;
	bool polled_all = !strcmp(mode, "polling");

	if (scribble) {
		nvcpu = 4;
		scribbled = 3;
	}
	region_create(nvcpu, chan_version, REGION_SIZE, true, 0);
	tally_start();
	for (unsigned int v = 0; v < nvcpu; v++) { /* PENDING before the engine attaches */
		gen(v, false);
		submit(v, true);
	}
	serve_start(&s, mode, extra); /* fork before the scribbler thread exists */
	if (scribble)
		pthread_create(&th, NULL, scribbler, (void *)(uintptr_t)scribbled);
	serve_wait_serving(&s, false);
	/* 1.5 s, and on a slow machine (sanitizers, load) until 2000 requests, up to 60 s */
	n = traffic(1500000000ull, 300000, think);
	for (uint64_t t0 = now_ns(); n < 2000 && now_ns() - t0 < 60000000000ull && !failures;)
		n += traffic(100000000ull, 2000 - n, think);
	if (scribble) {
		atomic_store(&scribble_stop, true);
		pthread_join(th, NULL);
	}
	drain();
	if (polled_all && ld(CH_POLLED) != (uint32_t)((1ull << nvcpu) - 1))
		fail("polled_mask %#x while every slot is polled", ld(CH_POLLED));
	if (chan_version >= 2 && (ld(CH_OWNER) != (uint32_t)s.pid || engine_lock() != F_WRLCK))
		fail("while served: owner word %u (serve is %d), lock %d", ld(CH_OWNER), (int)s.pid,
		     engine_lock());
	if (serve_stop(&s, SIGTERM))
		fail("serve exit status: %s", slurp(s.err));
	printf("%s: %" PRIu64 " requests submitted\n", scenario, n + nvcpu);
	check_counters(&s, mode, 0, !scribble, polled_all);
	check_channel();
	if (chan_version >= 2 && (ld(CH_OWNER) != 0 || engine_lock() != F_UNLCK))
		fail("after serve stopped: owner word %u, lock %d", ld(CH_OWNER), engine_lock());
	if (n < 2000)
		fail("only %" PRIu64 " requests in 60 s", n);
	if (think) { /* hybrid: the pollers must really have slept (and been woken) */
		uint64_t sleeps = 0;

		if (!json_get(slurp(s.json), "sleeps", &sleeps) || !sleeps)
			fail("hybrid: serve reports no poller sleep: %s", slurp(s.json));
	}
}

/* Count outstanding slots in @state. */
static unsigned int count_state(uint32_t state)
{
	unsigned int n = 0;

	for (unsigned int v = 0; v < nvcpu; v++)
		n += vc[v].out && ld(sw(v, W_PROCESSED)) == state;
	return n;
}

/* Submit on every idle vCPU, nobody serving: PENDING before the next engine attaches. */
static void submit_idle(void)
{
	for (unsigned int v = 0; v < nvcpu; v++)
		if (!vc[v].out) {
			gen(v, true);
			submit(v, true);
		}
}

static void scenario_restart(void)
{
	uint64_t abandoned = 0, caught = 0, swept = 0;
	struct serve s;

	stable = false;
	region_create(nvcpu, chan_version, REGION_SIZE, true, 0);
	submit_idle();
	for (int round = 0; round < 8; round++) {
		const char *mode = round % 4 == 3 ? "polling" : "notify";
		bool kill9 = !(round & 1);
		int st;

		/* every completion of the previous engine is in the slots: take them */
		while (harvest(false))
			;
		tally_start();
		/* notify mode with handler threads: a request stays PROCESSING across the
		 * dispatcher -> handler thread hop (tens of us), so a SIGSTOP lands there
		 * often enough; run inline on the dispatcher it is PROCESSING for well under
		 * a microsecond and 2000 freezes caught none (polling rounds are that short
		 * too: they check the takeover of nothing) */
		serve_start(&s, mode, strcmp(mode, "notify") ? NULL : "--handler-thread");
		serve_wait_serving(&s, true);
		traffic(150000000ull, UINT64_MAX, false);
		if (kill9) {
			unsigned int proc = 0;

			/* freeze it; a frozen engine writes nothing: kill it while it holds
			 * requests (PROCESSING) */
			for (int tries = 0; tries < 2000; tries++) {
				traffic(200000 + rnd() % 2000000, UINT64_MAX, false);
				kill(s.pid, SIGSTOP);
				waitpid(s.pid, &st, WUNTRACED);
				while (harvest(false))
					;
				proc = count_state(PROCESSING);
				if (proc)
					break;
				kill(s.pid, SIGCONT);
			}
			if (serve_stop(&s, SIGKILL) != -SIGKILL)
				fail("serve did not die of SIGKILL");
			caught += proc;
			abandoned = count_state(PROCESSING);
			printf("round %d: killed serve %d with %" PRIu64 " requests PROCESSING, %u "
			       "PENDING\n", round, s.n, abandoned, count_state(PENDING));
			if (chan_version >= 2 && (engine_lock() != F_UNLCK || !ld(CH_OWNER)))
				fail("dead engine: lock %d, owner word %u (should name the dead pid)",
				     engine_lock(), ld(CH_OWNER));
		} else {
			/* defect 4: one request the engine only meets in its detach sweep
			 * (notify mode: nothing scans a slot whose upcall was not rung) */
			if (!strcmp(mode, "notify")) {
				drain();
				gen(0, true);
				submit(0, false);
				sleep_us(20000);
				swept += ld(sw(0, W_PROCESSED)) == PENDING;
			}
			if (serve_stop(&s, SIGTERM))
				fail("serve %d exit status: %s", s.n, slurp(s.err));
			while (harvest(false))
				;
			check_counters(&s, mode, abandoned, false, false);
			if (chan_version >= 2 && (engine_lock() != F_UNLCK || ld(CH_OWNER)))
				fail("engine stopped: lock %d, owner word %u", engine_lock(),
				     ld(CH_OWNER));
			abandoned = 0;
		}
		check_channel();
		submit_idle(); /* pending before the next attach */
	}
	/* a last engine serves what is left, then stops cleanly */
	while (harvest(false))
		;
	tally_start();
	serve_start(&s, "notify", NULL);
	serve_wait_serving(&s, false);
	drain();
	if (serve_stop(&s, SIGTERM))
		fail("last serve exit status: %s", slurp(s.err));
	check_counters(&s, "notify", abandoned, false, false);
	check_channel();
	printf("restart: %" PRIu64 " requests caught PROCESSING by kill -9, %" PRIu64
	       " left for the detach sweep\n", caught, swept);
	if (!caught)
		fail("no kill caught a request PROCESSING: the takeover was not exercised");
}

static void scenario_second(void)
{
	struct serve a, b;
	uint64_t end;
	int st = 0;
	char want[64];

	region_create(nvcpu, chan_version, REGION_SIZE, true, 0);
	tally_start();
	serve_start(&a, "polling", NULL);
	serve_wait_serving(&a, true);
	serve_start(&b, "notify", NULL);
	end = now_ns() + 5000000000ull;
	while (now_ns() < end && waitpid(b.pid, &st, WNOHANG) != b.pid)
		traffic(2000000, UINT64_MAX, false);
	if (now_ns() >= end) {
		fail("a second serve on a served region is still running after 5 s");
		serve_stop(&b, SIGTERM);
	} else {
		live_set(b.pid, 0);
		snprintf(want, sizeof(want), "pid %d", (int)a.pid);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 2 || !strstr(slurp(b.err), want))
			fail("second serve: exit %d, wanted 2 and a message naming %s: %s",
			     WIFEXITED(st) ? WEXITSTATUS(st) : -1, want, slurp(b.err));
		else
			printf("second serve refused: %s", slurp(b.err));
	}
	traffic(300000000ull, UINT64_MAX, false);
	drain();
	if (serve_stop(&a, SIGTERM))
		fail("serve exit status: %s", slurp(a.err));
	check_counters(&a, "polling", 0, true, true);
	check_channel();
}

static void scenario_slowcreate(void)
{
	struct serve s;

	/* the document's order: serve first; the creator takes 3 x 30 ms between
	 * shm_open and the magic, 1.2 s after serve started */
	serve_start(&s, "polling", "--wait=10s");
	sleep_us(1200000);
	region_create(nvcpu, chan_version, REGION_SIZE, true, 30000);
	tally_start();
	submit_idle();
	serve_wait_serving(&s, false);
	traffic(300000000ull, UINT64_MAX, false);
	drain();
	if (serve_stop(&s, SIGTERM))
		fail("serve on a slowly created region: %s", slurp(s.err));
	check_counters(&s, "polling", 0, true, true);
	check_channel();
}

static void expect_refusal(const char *what, uint32_t vcpus, uint32_t version, off_t size,
			   bool magic, const char *want)
{
	struct serve s;
	int rc;

	region_create(vcpus, version, size, magic, 0);
	serve_start(&s, "polling", "--wait=300ms");
	while (waitpid(s.pid, &rc, 0) < 0 && errno == EINTR)
		;
	live_set(s.pid, 0);
	rc = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
	if (rc != 2 || !strstr(slurp(s.err), want))
		fail("%s: serve exit %d, wanted 2 and a message containing '%s': %s", what, rc,
		     want, slurp(s.err));
	else
		printf("%s: refused: %s", what, slurp(s.err));
	region_destroy();
}

static void scenario_badregion(void)
{
	char want[32];

	expect_refusal("vcpu_num 17", 17, chan_version, REGION_SIZE, true, "vcpu_num 17");
	expect_refusal("vcpu_num 0", 0, chan_version, REGION_SIZE, true, "vcpu_num 0");
	snprintf(want, sizeof(want), "version %u", chan_version + 7);
	expect_refusal("version", 8, chan_version + 7, REGION_SIZE, true, want);
	expect_refusal("size", 8, chan_version, 4096, true, "size 4096");
	expect_refusal("no magic", 8, chan_version, REGION_SIZE, false, "magic");
}

int main(int argc, char **argv)
{
	const char *v = getenv("CONFORM_CHAN_VERSION"); /* to run against an older engine */

	if (argc != 3) {
		fprintf(stderr, "usage: conform RTIOREQ_BINARY SCENARIO\n");
		return 2;
	}
	bin = argv[1];
	scenario = argv[2];
	if (v)
		chan_version = (uint32_t)atoi(v);
	rng_state ^= (uint64_t)getpid() << 20;
	snprintf(name, sizeof(name), "/rtioreq-conform-%d", (int)getpid());
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/rtioreq-conform-%d", (int)getpid());
	if (mkdir(tmpdir, 0700)) {
		perror(tmpdir);
		return 1;
	}
	atexit(cleanup); /* no serve and no region left behind, also on exit(1) */
	if (!strcmp(scenario, "polling"))
		cp_mode = 1, scenario_basic("polling", NULL, false, false);
	else if (!strcmp(scenario, "notify"))
		cp_mode = 0, scenario_basic("notify", NULL, false, false);
	else if (!strcmp(scenario, "mixed"))
		cp_mode = -1, scenario_basic("polling", "--pollers=2", false, false);
	else if (!strcmp(scenario, "hybrid"))
		cp_mode = -1, scenario_basic("polling", "--idle=hybrid --spin=50us", true, false);
	else if (!strcmp(scenario, "scribble"))
		cp_mode = -1, scenario_basic("polling", NULL, false, true);
	else if (!strcmp(scenario, "restart"))
		cp_mode = -1, scenario_restart();
	else if (!strcmp(scenario, "second"))
		cp_mode = -1, scenario_second();
	else if (!strcmp(scenario, "slowcreate"))
		cp_mode = -1, scenario_slowcreate();
	else if (!strcmp(scenario, "badregion"))
		scenario_badregion();
	else {
		fprintf(stderr, "conform: unknown scenario '%s'\n", scenario);
		return 2;
	}
	region_destroy();
	if (!failures) { /* keep the serve logs of a failed run */
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd))
			return 1;
	}
	if (failures)
		printf("serve's stderr and JSON kept in %s\n", tmpdir);
	printf("%s: %s\n", scenario, failures ? "FAIL" : "ok");
	return failures ? 1 : 0;
}
