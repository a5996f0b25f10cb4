// SPDX-License-Identifier: MIT
/*
 * Torture run (liburcu style): minutes in CI, hours on demand. Two VMs of 16 vCPUs each
 * on their own shared regions, driven by the simulated hypervisor (one VM in polling
 * mode, one in notify mode), while a control thread keeps changing everything around
 * the requests: slot moves between a poller and the dispatcher, handler-client churn,
 * range moves, blocking-client churn, VM clears, engine restarts (every object torn
 * down and rebuilt on the same regions while the vCPUs keep submitting).
 *
 * Exact accounting: every read names its own request (its address changes from one
 * request of a vCPU to the next, and every device answers a hash of VM and address), so
 * a read must return its own value, or all ones when the engine completed it without a
 * device (cleared, forced, unclaimed while a range moved, swept at a restart). The
 * simulated hypervisor counts requests, completions, lost (not COMPLETE in 60 s),
 * duplicated (a slot found COMPLETE or not FREE without an outstanding request) and
 * mismatched values; the run passes only with requests == completed and no lost,
 * duplicated or mismatched request, and with every scenario having run.
 *
 *   torture [-d SECONDS | -n REQUESTS] [-s SCENARIOS] [--seed N]
 *
 * -d: run time in seconds (default 60; $RTIOREQ_TORTURE_SECONDS, if set, caps it: the
 * sanitizer runs of .ci/run); -n: total requests over both VMs instead (>= 1e8 for a
 * long run: -n 100M; not capped). -s: comma list of
 * scenarios (default "moves,churn,ranges,blocking,clears,restarts"):
 *   moves          slots move between the poller and the dispatcher
 *   churn          handler clients created and destroyed with their ranges mapped
 *   ranges         a client's window moved by the control thread (range del + add)
 *   blocking       a blocking client with one waiter thread, shut down, joined and
 *                  re-created (the documented way)
 *   clears         rtioreq_vm_clear() with a 50 ms bound (one waiter: a forced request's
 *                  late completion is refused, as documented)
 *   restarts       engine destroyed and re-created on the same regions
 *   hybrid         the poller in hybrid idle; vCPUs pause between requests
 * Scenarios with known defects on main (issue #14), off unless asked for:
 *   handler-ranges the window is moved from its own handler, on the poller and on the
 *                  client thread (item 5: liburcu aborts today)
 *   late           two waiters per blocking client and clears that force at once, so a
 *                  forced request's late completion races the next request (item 1)
 *   destroy-held   the blocking client is destroyed while its waiters may hold
 *                  requests, then the waiters are joined (item 3: use after free)
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rtioreq.h"

#define VMS 2
#define VCPUS 16
#define WAITERS_MAX 2
#define DEV_MMIO 0xd0000000ull	/* 4 KiB, handler client "dev" (always mapped) */
#define CHURN_MMIO 0xe0000000ull /* 4 KiB, handler client that comes and goes */
#define WIN_A 0xf0000000ull	/* the moving window: at A or at B, 256 bytes */
#define WIN_B 0xf0001000ull
#define WIN_SIZE 0x100u
#define BAR_MMIO 0xf0002000ull	/* write: the mover's handler moves its window */
#define BLK_PORT 0x700u		/* 256 ports, blocking client */

enum {
	SC_MOVES = 1 << 0,
	SC_CHURN = 1 << 1,
	SC_RANGES = 1 << 2,
	SC_BLOCKING = 1 << 3,
	SC_CLEARS = 1 << 4,
	SC_RESTARTS = 1 << 5,
	SC_HYBRID = 1 << 6,
	SC_HANDLER_RANGES = 1 << 7,
	SC_LATE = 1 << 8,
	SC_DESTROY_HELD = 1 << 9,
};

static const struct {
	const char *name;
	unsigned int bit;
} scenarios[] = {
	{ "moves", SC_MOVES },	   { "churn", SC_CHURN },
	{ "ranges", SC_RANGES },   { "blocking", SC_BLOCKING },
	{ "clears", SC_CLEARS },   { "restarts", SC_RESTARTS },
	{ "hybrid", SC_HYBRID },   { "handler-ranges", SC_HANDLER_RANGES },
	{ "late", SC_LATE },	   { "destroy-held", SC_DESTROY_HELD },
};

static unsigned int sc;

struct vmctx {
	uint16_t id;
	struct rtioreq_shm shm;
	struct rtioreq_vm *vm;
	struct rtioreq_client *dev, *churn, *mover, *blk;
	_Atomic uint64_t win; /* the window's base: WIN_A or WIN_B (mover's view) */
	pthread_mutex_t win_lock; /* one window move at a time (handler or control) */
	pthread_t waiter[WAITERS_MAX];
	unsigned int nwaiters;
	/* waiter i has returned from rtioreq_client_wait() once: from then on its thread
	 * holds the client (engine.h), so destroy-held may destroy it under that thread */
	_Atomic int took[WAITERS_MAX];
	struct waiter_arg {
		struct vmctx *x;
		unsigned int i;
	} warg[WAITERS_MAX];
	/* sim */
	struct rtioreq_sim_result res;
	int sim_rc;
	uint64_t requests;
	pthread_t sim;
};

static struct vmctx vms[VMS];
static struct rtioreq_engine *eng;
static struct rtioreq_poller *poller;
static uint64_t duration_ns, total_requests;
static _Atomic int stop;

/* counters: what each scenario did, and what the devices saw */
static _Atomic uint64_t n_moves, n_churn, n_ranges, n_blocking, n_clears, n_forced,
	n_restarts, n_handler_moves, n_late_refused, n_waited, n_calls, n_sleeps;

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

/* what every device answers for a read: names the VM and the address */
static uint64_t answer(uint16_t vm_id, uint64_t addr)
{
	return mix(((uint64_t)vm_id << 48) ^ addr ^ 0x5eed) | 1; /* never all ones */
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_us(unsigned int us)
{
	struct timespec ts = { us / 1000000, (long)(us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "torture: FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                      \
			fprintf(stderr, "\n");                                             \
			exit(1);                                                           \
		}                                                                          \
	} while (0)

/* ---------------------------------------------------------------------------------- */
/* Devices */

static int dev_handler(struct rtioreq_client *c, struct rtioreq_req *r, void *priv)
{
	atomic_fetch_add_explicit(&n_calls, 1, memory_order_relaxed);
	if (r->dir == RTIOREQ_DIR_READ)
		r->value = answer(r->vm_id, r->addr);
	return 0;
}

/* Move the window of @x to the other place: del then add (a request in between sees
 * neither: unclaimed, all ones, which the workload accepts). */
static void window_move_locked(struct vmctx *x)
{
	uint64_t from, to;

	int r;

	from = atomic_load(&x->win);
	to = from == WIN_A ? WIN_B : WIN_A;
	/* -ENODEV: the VM is being detached (restarts): its handlers still drain what was
	 * assigned to them, but its routing is frozen (engine.h, rtioreq_range_del()) */
	r = rtioreq_range_del(x->mover, RTIOREQ_TYPE_MMIO, from, from + WIN_SIZE - 1);
	if (r == -ENODEV)
		return;
	CHECK(r == 0, "window del: %d", r);
	r = rtioreq_range_add(x->mover, RTIOREQ_TYPE_MMIO, to, to + WIN_SIZE - 1);
	if (r == -ENODEV)
		return;
	CHECK(r == 0, "window add: %d", r);
	atomic_store(&x->win, to);
}

static void window_move(struct vmctx *x)
{
	pthread_mutex_lock(&x->win_lock);
	window_move_locked(x);
	pthread_mutex_unlock(&x->win_lock);
}

/* The mover: its window answers reads; a write to its BAR moves the window from the
 * handler itself (handler-ranges), as a PCI BAR write does. */
static int mover_handler(struct rtioreq_client *c, struct rtioreq_req *r, void *priv)
{
	struct vmctx *x = priv;

	atomic_fetch_add_explicit(&n_calls, 1, memory_order_relaxed);
	if (r->addr >= BAR_MMIO && r->addr < BAR_MMIO + 8) {
		if (r->dir == RTIOREQ_DIR_WRITE && (sc & SC_HANDLER_RANGES)) {
			/* trylock: the control thread may be moving it right now */
			if (pthread_mutex_trylock(&x->win_lock) == 0) {
				window_move_locked(x);
				pthread_mutex_unlock(&x->win_lock);
				atomic_fetch_add(&n_handler_moves, 1);
			}
		}
		if (r->dir == RTIOREQ_DIR_READ)
			r->value = answer(r->vm_id, r->addr);
		return 0;
	}
	if (r->dir == RTIOREQ_DIR_READ)
		r->value = answer(r->vm_id, r->addr);
	return 0;
}

/* A waiter of the blocking client: takes, answers, completes; a completion refused with
 * -ENOENT is a request the engine forced meanwhile. */
static void *waiter_main(void *arg)
{
	struct waiter_arg *a = arg;
	struct rtioreq_client *c = a->x->blk; /* set before this thread started */
	struct rtioreq_req req;
	uint64_t k = 0;

	while (rtioreq_client_wait(c, &req) == 0) {
		int r;

		atomic_store(&a->x->took[a->i], 1);
		atomic_fetch_add_explicit(&n_waited, 1, memory_order_relaxed);
		if (req.dir == RTIOREQ_DIR_READ)
			req.value = answer(req.vm_id, req.addr);
		if (!(++k & 7))
			sleep_us(20); /* an embedder thread that takes its time */
		else if ((sc & SC_LATE) && (k & 1))
			sleep_us(300); /* long enough for a clear to force it meanwhile */
		r = rtioreq_client_complete(c, &req, 0);
		CHECK(r == 0 || r == -ENOENT, "client_complete: %d", r);
		if (r == -ENOENT)
			atomic_fetch_add(&n_late_refused, 1);
	}
	return NULL;
}

static void blk_start(struct vmctx *x)
{
	struct rtioreq_client_attr a = { .name = "blk" };

	x->blk = rtioreq_client_create(x->vm, &a);
	CHECK(x->blk, "blk create: %s", strerror(errno));
	CHECK(rtioreq_range_add(x->blk, RTIOREQ_TYPE_PORTIO, BLK_PORT, BLK_PORT + 255) == 0,
	      "blk range");
	x->nwaiters = sc & SC_LATE ? 2 : 1;
	for (unsigned int i = 0; i < x->nwaiters; i++) {
		x->warg[i] = (struct waiter_arg){ .x = x, .i = i };
		atomic_store(&x->took[i], 0);
		CHECK(pthread_create(&x->waiter[i], NULL, waiter_main, &x->warg[i]) == 0,
		      "waiter");
	}
}

/* The documented way: shutdown (waiters drain and get -ENODEV), join, destroy. With
 * destroy-held: destroy first, join after (waiters may still hold requests). */
static void blk_stop(struct vmctx *x)
{
	bool held_ok = true;

	/* a thread that never entered rtioreq_client_wait() holds nothing: destroying the
	 * handle under its first call is the caller's use-after-free, not the engine's.
	 * Wait (bounded) until every waiter has taken a request once. */
	for (unsigned int i = 0, t = 0; (sc & SC_DESTROY_HELD) && i < x->nwaiters; i++)
		while (!atomic_load(&x->took[i]))
			if (++t > 2000) {
				held_ok = false; /* no traffic reached it: the documented way */
				break;
			} else {
				sleep_us(1000);
			}
	if ((sc & SC_DESTROY_HELD) && held_ok) {
		CHECK(rtioreq_client_destroy(x->blk) == 0, "blk destroy");
		for (unsigned int i = 0; i < x->nwaiters; i++)
			pthread_join(x->waiter[i], NULL);
	} else {
		CHECK(rtioreq_client_shutdown(x->blk) == 0, "blk shutdown");
		for (unsigned int i = 0; i < x->nwaiters; i++)
			pthread_join(x->waiter[i], NULL);
		CHECK(rtioreq_client_destroy(x->blk) == 0, "blk destroy");
	}
	x->blk = NULL;
}

static struct rtioreq_client *handler_client(struct vmctx *x, const char *name,
					     rtioreq_handler_fn fn)
{
	struct rtioreq_client_attr a = { .name = name, .handler = fn, .priv = x };
	struct rtioreq_client *c = rtioreq_client_create(x->vm, &a);

	CHECK(c, "client %s: %s", name, strerror(errno));
	return c;
}

/* ---------------------------------------------------------------------------------- */
/* Engine up / down (a restart is down + up on the same regions) */

static void engine_up(void)
{
	struct rtioreq_thread_attr ta = { .cpu = -1 };

	eng = rtioreq_engine_create(NULL);
	CHECK(eng, "engine_create: %s", strerror(errno));
	poller = rtioreq_poller_create(eng, &ta);
	CHECK(poller, "poller_create: %s", strerror(errno));
	if (sc & SC_HYBRID)
		rtioreq_poller_set_idle(poller, 20000);
	for (int i = 0; i < VMS; i++) {
		struct vmctx *x = &vms[i];
		struct rtioreq_vm_attr va = {
			.id = x->id, .vcpu_num = VCPUS, .page = &x->shm.region->page,
			.chan = &x->shm.region->chan, .paused = true
		};

		x->vm = rtioreq_vm_attach(eng, &va);
		CHECK(x->vm, "vm_attach: %s", strerror(errno));
		x->dev = handler_client(x, "dev", dev_handler);
		CHECK(rtioreq_range_add(x->dev, RTIOREQ_TYPE_MMIO, DEV_MMIO, DEV_MMIO + 0xfff) == 0,
		      "dev range");
		x->mover = handler_client(x, "mover", mover_handler);
		atomic_store(&x->win, WIN_A);
		CHECK(rtioreq_range_add(x->mover, RTIOREQ_TYPE_MMIO, WIN_A, WIN_A + WIN_SIZE - 1) ==
			      0,
		      "win range");
		CHECK(rtioreq_range_add(x->mover, RTIOREQ_TYPE_MMIO, BAR_MMIO, BAR_MMIO + 7) == 0,
		      "bar range");
		x->churn = NULL;
		blk_start(x);
		/* half the slots polled, half on the dispatcher */
		for (uint16_t v = 0; v < VCPUS; v += 2)
			CHECK(rtioreq_vm_set_poller(x->vm, v, poller) == 0, "set_poller");
		CHECK(rtioreq_vm_start(x->vm) == 0, "vm_start");
	}
}

static void engine_down(void)
{
	struct rtioreq_poller_stats ps;

	rtioreq_poller_stats(poller, &ps);
	atomic_fetch_add(&n_sleeps, ps.sleeps);
	for (int i = 0; i < VMS; i++)
		blk_stop(&vms[i]);
	/* detaches every VM (clients destroyed, PENDING slots swept), joins everything */
	rtioreq_engine_destroy(eng);
	eng = NULL;
	poller = NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Workload: one request of (vm, vcpu, k) */

static void gen(void *ctx, uint16_t vcpu, uint64_t k, struct rtioreq_sim_op *op)
{
	struct vmctx *x = ctx;
	uint64_t h = mix(((uint64_t)x->id << 56) ^ ((uint64_t)vcpu << 40) ^ k), pick = h % 100;

	memset(op, 0, sizeof(*op));
	op->req.dir = (h >> 8) % 3 ? RTIOREQ_DIR_READ : RTIOREQ_DIR_WRITE;
	op->req.value = h;
	/* the address follows k, so two requests of a vCPU to one device share an address
	 * only 32..512 requests apart: a completion that lands in a later request of its
	 * vCPU shows as a value mismatch */
	if (pick < 45) {
		op->req.type = RTIOREQ_TYPE_MMIO;
		op->req.size = 8;
		op->req.addr = DEV_MMIO + ((vcpu * 32 + k) % 512) * 8;
	} else if (pick < 65) {
		op->req.type = RTIOREQ_TYPE_PORTIO;
		op->req.size = 4;
		op->req.addr = BLK_PORT + ((vcpu * 4 + k) % 64) * 4;
	} else if (pick < 78) {
		op->req.type = RTIOREQ_TYPE_MMIO;
		op->req.size = 8;
		op->req.addr = CHURN_MMIO + ((vcpu * 32 + k) % 512) * 8;
	} else if (pick < 97) {
		op->req.type = RTIOREQ_TYPE_MMIO;
		op->req.size = 8;
		op->req.addr = ((h >> 16) & 1 ? WIN_A : WIN_B) + (k % (WIN_SIZE / 8)) * 8;
	} else {
		op->req.type = RTIOREQ_TYPE_MMIO;
		op->req.size = 8;
		op->req.addr = BAR_MMIO;
		op->req.dir = RTIOREQ_DIR_WRITE;
	}
	op->check = op->req.dir == RTIOREQ_DIR_READ ? RTIOREQ_SIM_CHECK_EQ_OR_ALT
						    : RTIOREQ_SIM_CHECK_NONE;
	op->expect = answer(x->id, op->req.addr);
	op->expect_alt = ~(uint64_t)0; /* completed without a device */
}

static void *sim_main(void *arg)
{
	struct vmctx *x = arg;
	struct rtioreq_sim_attr a = {
		.region = x->shm.region, .vcpu_num = VCPUS, .producers = 1,
		.requests = x->requests, .duration_ns = x->requests ? 0 : duration_ns,
		.completion_polling = x->id == 1, /* VM 1 spins, VM 2 sleeps for N1 */
		.producer_cpu = { -1, -1, -1, -1 },
		.stranded_ns = 60000000000ull, /* restarts and sanitizers: generous */
		.think_ns = sc & SC_HYBRID ? 20000 : 0, .wl = { gen, x }
	};

	x->sim_rc = rtioreq_sim_run(&a, &x->res);
	return NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Control thread: one random change at a time until the vCPUs are done */

static void *control_main(void *arg)
{
	uint64_t rng = *(uint64_t *)arg;
	unsigned int i = 0;

	while (!atomic_load(&stop)) {
		struct vmctx *x = &vms[(rng >> 7) % VMS];
		unsigned int what;

		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17; /* xorshift */
		what = (unsigned int)(rng % 8);
		i++;
		if (what == 0 && (sc & SC_MOVES)) {
			uint16_t v = (uint16_t)((rng >> 20) % VCPUS);

			CHECK(rtioreq_vm_set_poller(x->vm, v, (rng >> 30) & 1 ? poller : NULL) == 0,
			      "move");
			atomic_fetch_add(&n_moves, 1);
		} else if (what == 1 && (sc & SC_CHURN)) {
			if (x->churn) {
				/* destroyed with its range mapped: requests may be in flight */
				CHECK(rtioreq_client_destroy(x->churn) == 0, "churn destroy");
				x->churn = NULL;
			} else {
				x->churn = handler_client(x, "churn", dev_handler);
				CHECK(rtioreq_range_add(x->churn, RTIOREQ_TYPE_MMIO, CHURN_MMIO,
							CHURN_MMIO + 0xfff) == 0,
				      "churn range");
			}
			atomic_fetch_add(&n_churn, 1);
		} else if (what == 2 && (sc & SC_RANGES)) {
			window_move(x);
			atomic_fetch_add(&n_ranges, 1);
		} else if (what == 3 && (sc & SC_BLOCKING)) {
			blk_stop(x);
			blk_start(x);
			atomic_fetch_add(&n_blocking, 1);
		} else if (what == 4 && (sc & SC_CLEARS)) {
			int r = rtioreq_vm_clear(x->vm, sc & SC_LATE ? 0 : 50);

			CHECK(r >= 0, "vm_clear: %d", r);
			atomic_fetch_add(&n_clears, 1);
			atomic_fetch_add(&n_forced, (uint64_t)r);
		} else if (what == 5 && (sc & SC_RESTARTS) && !(i % 4)) {
			engine_down();
			sleep_us(2000); /* vCPUs keep submitting to a region nobody serves */
			engine_up();
			atomic_fetch_add(&n_restarts, 1);
		}
		sleep_us(500 + (unsigned int)((rng >> 40) % 1500));
	}
	return NULL;
}

/* ---------------------------------------------------------------------------------- */

static uint64_t parse_count(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || v < 0)
		return 0;
	switch (*end) {
	case 'k': case 'K': v *= 1e3; break;
	case 'm': case 'M': v *= 1e6; break;
	case 'g': case 'G': v *= 1e9; break;
	case '\0': break;
	default: return 0;
	}
	return (uint64_t)v;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: torture [-d SECONDS | -n REQUESTS] [-s SCENARIO,...] [--seed N]\n"
		"  -d, --duration SECONDS  run time, default 60\n"
		"                          (capped by $RTIOREQ_TORTURE_SECONDS if set)\n"
		"  -n, --requests N        total requests over both VMs instead (k/M/G)\n"
		"  -s, --scenarios LIST    default moves,churn,ranges,blocking,clears,restarts;\n"
		"                          also: hybrid, handler-ranges, late, destroy-held\n"
		"      --seed N            control thread's random seed (default 1)\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "duration", required_argument, NULL, 'd' },
		{ "requests", required_argument, NULL, 'n' },
		{ "scenarios", required_argument, NULL, 's' },
		{ "seed", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *env = getenv("RTIOREQ_TORTURE_SECONDS");
	const char *list = "moves,churn,ranges,blocking,clears,restarts";
	uint64_t seed = 1, t0, sum_req = 0, sum_done = 0, bad = 0;
	double secs = 60;
	pthread_t ctl;
	int o;

	while ((o = getopt_long(argc, argv, "d:n:s:h", lo, NULL)) != -1) {
		switch (o) {
		case 'd': secs = strtod(optarg, NULL); break;
		case 'n':
			total_requests = parse_count(optarg);
			if (!total_requests) {
				fprintf(stderr, "torture: bad request count '%s'\n", optarg);
				return 2;
			}
			break;
		case 's': list = optarg; break;
		case 'S': seed = strtoull(optarg, NULL, 0) | 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (env && strtod(env, NULL) > 0 && strtod(env, NULL) < secs)
		secs = strtod(env, NULL);
	if (secs <= 0 && !total_requests) {
		fprintf(stderr, "torture: the duration must be > 0\n");
		return 2;
	}
	{
		char *copy = strdup(list), *save = NULL;

		for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			size_t k;

			for (k = 0; k < sizeof(scenarios) / sizeof(scenarios[0]); k++)
				if (!strcmp(t, scenarios[k].name))
					break;
			if (k == sizeof(scenarios) / sizeof(scenarios[0])) {
				fprintf(stderr, "torture: unknown scenario '%s'\n", t);
				usage(stderr);
				return 2;
			}
			sc |= scenarios[k].bit;
		}
		free(copy);
	}
	duration_ns = (uint64_t)(secs * 1e9);
	for (int i = 0; i < VMS; i++) {
		vms[i].id = (uint16_t)(i + 1);
		pthread_mutex_init(&vms[i].win_lock, NULL);
		CHECK(rtioreq_shm_create(&vms[i].shm, NULL, VCPUS) == 0, "shm_create");
		vms[i].requests = total_requests / VMS + (i < (int)(total_requests % VMS));
	}
	printf("# torture: %d VMs x %d vCPUs, %s, scenarios %s\n", VMS, VCPUS,
	       total_requests ? "by requests" : "by time", list);
	if (total_requests)
		printf("# %lu requests\n", (unsigned long)total_requests);
	else
		printf("# %.1f s\n", secs);
	fflush(stdout);
	engine_up();
	t0 = now_ns();
	for (int i = 0; i < VMS; i++)
		CHECK(pthread_create(&vms[i].sim, NULL, sim_main, &vms[i]) == 0, "sim thread");
	CHECK(pthread_create(&ctl, NULL, control_main, &seed) == 0, "control thread");
	for (int i = 0; i < VMS; i++)
		pthread_join(vms[i].sim, NULL);
	atomic_store(&stop, 1);
	pthread_join(ctl, NULL);
	engine_down();
	for (int i = 0; i < VMS; i++) {
		struct rtioreq_sim_result *r = &vms[i].res;

		printf("vm%u (%s): requests %lu completed %lu lost %lu duplicated %lu "
		       "mismatched %lu upcalls %lu, p99 %lu ns, max %lu ns\n",
		       vms[i].id, vms[i].id == 1 ? "polling" : "notify", (unsigned long)r->requests,
		       (unsigned long)r->completed, (unsigned long)r->lost,
		       (unsigned long)r->duplicated, (unsigned long)r->mismatched,
		       (unsigned long)r->upcalls,
		       (unsigned long)rtioreq_hist_percentile(&r->rtt, 99),
		       (unsigned long)r->rtt.max);
		CHECK(vms[i].sim_rc == 0, "sim_run: %d", vms[i].sim_rc);
		sum_req += r->requests;
		sum_done += r->completed;
		bad += r->lost + r->duplicated + r->mismatched + (r->requests != r->completed);
		rtioreq_shm_close(&vms[i].shm);
		pthread_mutex_destroy(&vms[i].win_lock);
	}
	printf("control: moves %lu churn %lu window moves %lu (from handlers %lu) blocking "
	       "re-creations %lu clears %lu (forced %lu, late completions refused %lu) restarts "
	       "%lu; device calls %lu, waiter takes %lu, poller sleeps %lu\n",
	       (unsigned long)n_moves, (unsigned long)n_churn, (unsigned long)n_ranges,
	       (unsigned long)n_handler_moves, (unsigned long)n_blocking, (unsigned long)n_clears,
	       (unsigned long)n_forced, (unsigned long)n_late_refused, (unsigned long)n_restarts,
	       (unsigned long)n_calls, (unsigned long)n_waited, (unsigned long)n_sleeps);
	printf("SUMMARY requests=%lu completed=%lu bad=%lu seconds=%.1f\n", (unsigned long)sum_req,
	       (unsigned long)sum_done, (unsigned long)bad, (double)(now_ns() - t0) / 1e9);
	CHECK(bad == 0, "lost, duplicated or mismatched requests (see above)");
	if (total_requests)
		CHECK(sum_req == total_requests, "%lu of %lu requests made", (unsigned long)sum_req,
		      (unsigned long)total_requests);
	/* every scenario asked for really ran */
	CHECK(!(sc & SC_MOVES) || n_moves > 0, "no slot move");
	CHECK(!(sc & SC_CHURN) || n_churn > 0, "no client churn");
	CHECK(!(sc & SC_RANGES) || n_ranges > 0, "no window move");
	CHECK(!(sc & SC_BLOCKING) || n_blocking > 0, "no blocking-client re-creation");
	CHECK(!(sc & SC_CLEARS) || n_clears > 0, "no clear");
	CHECK(!(sc & SC_RESTARTS) || n_restarts > 0, "no restart");
	CHECK(!(sc & SC_HANDLER_RANGES) || n_handler_moves > 0, "no window move from a handler");
	CHECK(!(sc & SC_HYBRID) || n_sleeps > 0, "the hybrid poller never slept");
	CHECK(n_waited > 0 && n_calls > 0, "devices never called");
	printf("torture: ok\n");
	return 0;
}
