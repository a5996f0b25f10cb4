// SPDX-License-Identifier: MIT
/*
 * Exactly-once accounting under load: 16 vCPUs, RTIOREQ_STRESS_REQUESTS requests
 * (default 1,000,000) in each mode, while another thread keeps adding and removing
 * ranges, creating and destroying handler clients and the blocking default client,
 * and (polling mode) moving a slot between the poller and the dispatcher. The
 * lifecycle modes (below) add waiter threads on a blocking client, forced clears with
 * late completions, handler-initiated range moves and VM detach/attach cycles.
 *
 * Every request must complete exactly once with the value its device defines:
 *  - the example devices (RAM, accumulator port) stay mapped: reads are checked
 *    exactly, and a lost or doubled write shows in a later accumulator read;
 *  - the churn region is served by a client that comes and goes: reads return f(addr)
 *    when it is mapped, all ones when not;
 *  - unmapped accesses return all ones whether the default client exists or not.
 * The ledger: device calls + churn calls + default-client answers + unclaimed +
 * forced == requests == completed, and the simulated hypervisor saw no lost,
 * duplicated or mismatched request.
 */
#include <pthread.h>
#include <unistd.h>

#include "harness.h"

#define VCPUS 16
#define CHURN_PORT 0x600u
#define CHURN_MMIO 0xe0000000ull

static _Atomic uint64_t ram_calls, port_calls, churn_calls, default_calls;

static int count_ram(struct rtioreq_client *c, struct rtioreq_req *r, void *priv)
{
	atomic_fetch_add_explicit(&ram_calls, 1, memory_order_relaxed);
	return rtioreq_exdev_ram_handler(c, r, priv);
}

static int count_port(struct rtioreq_client *c, struct rtioreq_req *r, void *priv)
{
	atomic_fetch_add_explicit(&port_calls, 1, memory_order_relaxed);
	return rtioreq_exdev_port_handler(c, r, priv);
}

static uint64_t churn_value(uint64_t addr)
{
	return addr ^ 0xa5a5a5a5a5a5a5a5ull;
}

static int churn_handler(struct rtioreq_client *c, struct rtioreq_req *r, void *priv)
{
	atomic_fetch_add_explicit(&churn_calls, 1, memory_order_relaxed);
	if (r->dir == RTIOREQ_DIR_READ)
		r->value = churn_value(r->addr);
	return 0;
}

struct wl {
	struct rtioreq_exdev_oracle ex;
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

/* 10% of requests go to the churn region, the rest to the example workload. */
static void stress_gen(void *ctx, uint16_t vcpu, uint64_t k, struct rtioreq_sim_op *op)
{
	struct wl *w = ctx;
	uint64_t x = mix(((uint64_t)vcpu << 40) ^ k ^ 0x1234567);

	if (x % 10) {
		rtioreq_exdev_gen(&w->ex, vcpu, k, op);
		return;
	}
	memset(op, 0, sizeof(*op));
	op->req.dir = (x >> 8) & 1 ? RTIOREQ_DIR_WRITE : RTIOREQ_DIR_READ;
	if ((x >> 9) & 1) {
		op->req.type = RTIOREQ_TYPE_PORTIO;
		op->req.size = 1u << ((x >> 10) % 3);
		op->req.addr = CHURN_PORT + ((x >> 12) & 0xf & ~(uint64_t)(op->req.size - 1));
	} else {
		op->req.type = RTIOREQ_TYPE_MMIO;
		op->req.size = 1u << ((x >> 10) & 3);
		op->req.addr = CHURN_MMIO + ((x >> 12) & 0xfff & ~(uint64_t)(op->req.size - 1));
	}
	op->req.value = x;
	op->check = op->req.dir == RTIOREQ_DIR_READ ? RTIOREQ_SIM_CHECK_EQ_OR_ALT
						    : RTIOREQ_SIM_CHECK_NONE;
	op->expect = churn_value(op->req.addr);
	op->expect_alt = ~(uint64_t)0;
}

/* The blocking default client's server thread: answers all ones, like a bus. */
struct dflt {
	struct rtioreq_client *c;
	pthread_t t;
};

static void *default_server(void *arg)
{
	struct dflt *d = arg;
	struct rtioreq_req req;

	while (rtioreq_client_wait(d->c, &req) == 0) {
		req.value = ~(uint64_t)0;
		atomic_fetch_add_explicit(&default_calls, 1, memory_order_relaxed);
		assert_int_equal(rtioreq_client_complete(d->c, &req, 0), 0);
	}
	return NULL;
}

static void default_start(struct rtioreq_vm *vm, struct dflt *d)
{
	struct rtioreq_client_attr a = { .name = "dflt", .is_default = true };

	d->c = rtioreq_client_create(vm, &a);
	assert_non_null(d->c);
	assert_int_equal(pthread_create(&d->t, NULL, default_server, d), 0);
}

static void default_stop(struct dflt *d)
{
	assert_int_equal(rtioreq_client_shutdown(d->c), 0);
	pthread_join(d->t, NULL);
	assert_int_equal(rtioreq_client_destroy(d->c), 0);
}

struct churn {
	struct rtioreq_vm *vm;
	struct rtioreq_poller *poller; /* NULL: no slot migration */
	struct dflt dflt;
	_Atomic int stop;
	unsigned long clients, range_ops, defaults, moves;
};

static void *churn_main(void *arg)
{
	struct churn *ch = arg;
	struct rtioreq_client_attr a = { .name = "churn", .handler = churn_handler };

	for (unsigned long i = 0; !atomic_load(&ch->stop); i++) {
		struct rtioreq_client *c = rtioreq_client_create(ch->vm, &a);

		assert_non_null(c);
		ch->clients++;
		for (int j = 0; j < 4; j++) {
			assert_int_equal(rtioreq_range_add(c, RTIOREQ_TYPE_PORTIO, CHURN_PORT,
							   CHURN_PORT + 0xf),
					 0);
			assert_int_equal(rtioreq_range_add(c, RTIOREQ_TYPE_MMIO, CHURN_MMIO,
							   CHURN_MMIO + 0xfff),
					 0);
			/* overlaps with the example devices stay refused */
			assert_int_equal(rtioreq_range_add(c, RTIOREQ_TYPE_PORTIO, 0x50f, 0x510),
					 -EEXIST);
			h_sleep_ms(0);
			if (j < 3) {
				assert_int_equal(rtioreq_range_del(c, RTIOREQ_TYPE_PORTIO,
								   CHURN_PORT, CHURN_PORT + 0xf),
						 0);
				assert_int_equal(rtioreq_range_del(c, RTIOREQ_TYPE_MMIO,
								   CHURN_MMIO, CHURN_MMIO + 0xfff),
						 0);
			}
			ch->range_ops += 5;
		}
		/* destroyed with its ranges still mapped: requests may be in flight */
		assert_int_equal(rtioreq_client_destroy(c), 0);
		if (i % 8 == 7) {
			default_stop(&ch->dflt);
			default_start(ch->vm, &ch->dflt);
			ch->defaults++;
		}
		if (ch->poller) {
			assert_int_equal(rtioreq_vm_set_poller(ch->vm, VCPUS - 1,
							       i & 1 ? ch->poller : NULL),
					 0);
			ch->moves++;
		}
	}
	return NULL;
}

static uint64_t stress_requests(void)
{
	const char *s = getenv("RTIOREQ_STRESS_REQUESTS");

	return s ? strtoull(s, NULL, 0) : 1000000;
}

/*
 * @spin_ns 0: the poller spins; otherwise hybrid idle with that spin time, and the
 * vCPUs pause between requests so the poller sleeps and must be woken (NEED_WAKEUP).
 */
static void run_stress(bool polling, uint64_t spin_ns)
{
	struct rtioreq_sim_result *res = calloc(1, sizeof(*res));
	struct rtioreq_exdev *dev = calloc(1, sizeof(*dev));
	struct wl *w = calloc(1, sizeof(*w));
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	struct rtioreq_client *ram, *port;
	struct rtioreq_vm_stats st;
	struct churn ch = { 0 };
	struct rtioreq_poller_stats ps = { 0 };
	uint64_t n = stress_requests(), ledger;
	struct h_vm h;
	pthread_t t;

	atomic_store(&ram_calls, 0);
	atomic_store(&port_calls, 0);
	atomic_store(&churn_calls, 0);
	atomic_store(&default_calls, 0);
	h_vm_start(&h, VCPUS);
	ram = rtioreq_client_create(h.vm, &(struct rtioreq_client_attr){
						  .name = "ram", .handler = count_ram, .priv = dev });
	port = rtioreq_client_create(h.vm, &(struct rtioreq_client_attr){
						   .name = "port", .handler = count_port, .priv = dev });
	assert_non_null(ram);
	assert_non_null(port);
	assert_int_equal(rtioreq_range_add(ram, RTIOREQ_TYPE_MMIO, RTIOREQ_EXDEV_RAM_BASE,
					   RTIOREQ_EXDEV_RAM_BASE + RTIOREQ_EXDEV_RAM_SIZE - 1),
			 0);
	assert_int_equal(rtioreq_range_add(port, RTIOREQ_TYPE_PORTIO, RTIOREQ_EXDEV_PORT,
					   RTIOREQ_EXDEV_PORT + 3),
			 0);
	if (polling) {
		struct rtioreq_thread_attr ta = { .cpu = ncpu > 1 ? (int)ncpu - 1 : -1 };

		ch.poller = rtioreq_poller_create(h.eng, &ta);
		assert_non_null(ch.poller);
		for (uint16_t v = 0; v < VCPUS; v++)
			assert_int_equal(rtioreq_vm_set_poller(h.vm, v, ch.poller), 0);
		rtioreq_poller_set_idle(ch.poller, spin_ns);
	}
	ch.vm = h.vm;
	default_start(h.vm, &ch.dflt);
	rtioreq_exdev_oracle_init(&w->ex, 0xfeed, 5);
	assert_int_equal(pthread_create(&t, NULL, churn_main, &ch), 0);
	{
		struct rtioreq_sim_attr sa = {
			.region = h.shm.region, .vcpu_num = VCPUS, .producers = 1, .requests = n,
			.completion_polling = polling,
			.producer_cpu = { polling && ncpu > 1 ? 0 : -1, -1, -1, -1 },
			.stranded_ns = 30000000000ull, .wl = { stress_gen, w },
			.think_ns = spin_ns ? 20000 : 0
		};

		assert_int_equal(rtioreq_sim_run(&sa, res), 0);
	}
	if (ch.poller)
		rtioreq_poller_stats(ch.poller, &ps);
	atomic_store(&ch.stop, 1);
	pthread_join(t, NULL);
	default_stop(&ch.dflt);
	rtioreq_vm_stats(h.vm, &st);
	ledger = atomic_load(&ram_calls) + atomic_load(&port_calls) + atomic_load(&churn_calls) +
		 atomic_load(&default_calls) + st.unclaimed + st.forced;
	print_message("%s: %lu requests in %.2f s, p50 %lu ns, p99 %lu ns, max %lu ns; "
		      "ram %lu port %lu churn %lu default %lu unclaimed %lu forced %lu; "
		      "polled %lu fallback %lu; clients %lu, range ops %lu, default "
		      "re-creations %lu, slot moves %lu, poller sleeps %lu\n",
		      spin_ns ? "hybrid" : polling ? "polling" : "notify", (unsigned long)res->requests,
		      (double)res->ns / 1e9, (unsigned long)rtioreq_hist_percentile(&res->rtt, 50),
		      (unsigned long)rtioreq_hist_percentile(&res->rtt, 99),
		      (unsigned long)res->rtt.max, (unsigned long)atomic_load(&ram_calls),
		      (unsigned long)atomic_load(&port_calls), (unsigned long)atomic_load(&churn_calls),
		      (unsigned long)atomic_load(&default_calls), (unsigned long)st.unclaimed,
		      (unsigned long)st.forced, (unsigned long)st.polled, (unsigned long)st.fallback,
		      ch.clients, ch.range_ops, ch.defaults, ch.moves, (unsigned long)ps.sleeps);
	assert_int_equal(res->requests, n);
	assert_int_equal(res->completed, n);
	assert_int_equal(res->lost, 0);
	assert_int_equal(res->duplicated, 0);
	assert_int_equal(res->mismatched, 0);
	assert_int_equal(st.dispatched, n);
	assert_int_equal(st.completed, n);
	assert_int_equal(st.polled + st.fallback, n);
	assert_int_equal(st.invalid, 0);
	assert_int_equal(st.handler_errors, 0);
	assert_int_equal(ledger, n);
	assert_true(ch.clients > 1);
	assert_true(atomic_load(&churn_calls) > 0);
	if (spin_ns)
		assert_true(ps.sleeps > 0); /* the handshake was exercised */
	if (polling)
		assert_true(st.polled > 0);
	else
		assert_int_equal(st.polled, 0);
	h_vm_stop(&h);
	free(res);
	free(dev);
	free(w);
}

static void test_stress_polling(void **state)
{
	run_stress(true, 0);
}

static void test_stress_notify(void **state)
{
	run_stress(false, 0);
}

static void test_stress_hybrid(void **state)
{
	run_stress(true, 2000);
}

/*
 * One vCPU, no other traffic: a lost wake-up cannot be hidden by another vCPU's
 * doorbell, so it shows as a lost request. The pauses straddle the spin time, so the
 * poller goes to sleep at every point of the race with the next PENDING store.
 */
static void test_hybrid_no_lost_wakeup(void **state)
{
	struct rtioreq_exdev *dev = calloc(1, sizeof(*dev));
	struct rtioreq_sim_result *res = calloc(1, sizeof(*res));
	struct wl *w = calloc(1, sizeof(*w));
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	struct rtioreq_thread_attr ta = { .cpu = ncpu > 1 ? (int)ncpu - 1 : -1 };
	struct rtioreq_poller_stats ps;
	struct rtioreq_vm_stats st;
	struct rtioreq_poller *p;
	uint64_t n = stress_requests() / 20;
	struct h_vm h;

	h_vm_start(&h, 1);
	assert_int_equal(rtioreq_exdev_attach(dev, h.vm), 0);
	p = rtioreq_poller_create(h.eng, &ta);
	assert_non_null(p);
	assert_int_equal(rtioreq_vm_set_poller(h.vm, 0, p), 0);
	rtioreq_poller_set_idle(p, 1000);
	/* pauses of 0..800 us after 1 in 8 requests: long against the spin time and the
	 * poller's clock-check granularity even in sanitizer builds */
	rtioreq_exdev_oracle_init(&w->ex, 0xbeef, 5);
	{
		struct rtioreq_sim_attr sa = {
			.region = h.shm.region, .vcpu_num = 1, .producers = 1, .requests = n,
			.completion_polling = true, .think_ns = 50000,
			.producer_cpu = { ncpu > 1 ? 0 : -1, -1, -1, -1 },
			.stranded_ns = 5000000000ull,
			.wl = { rtioreq_exdev_gen, &w->ex }
		};

		assert_int_equal(rtioreq_sim_run(&sa, res), 0);
	}
	rtioreq_poller_stats(p, &ps);
	rtioreq_vm_stats(h.vm, &st);
	print_message("hybrid, 1 vCPU: %lu requests, %lu sleeps, %lu upcalls, p50 %lu ns, "
		      "p99 %lu ns, max %lu ns\n",
		      (unsigned long)res->requests, (unsigned long)ps.sleeps,
		      (unsigned long)res->upcalls,
		      (unsigned long)rtioreq_hist_percentile(&res->rtt, 50),
		      (unsigned long)rtioreq_hist_percentile(&res->rtt, 99),
		      (unsigned long)res->rtt.max);
	assert_int_equal(res->requests, n);
	assert_int_equal(res->completed, n);
	assert_int_equal(res->lost, 0);
	assert_int_equal(res->duplicated, 0);
	assert_int_equal(res->mismatched, 0);
	assert_int_equal(st.completed, n);
	assert_int_equal(st.polled, n);
	assert_true(ps.sleeps > n / 64); /* it really slept, many times */
	assert_true(res->upcalls >= ps.sleeps / 2); /* and was woken by the doorbell */
	h_vm_stop(&h);
	free(res);
	free(dev);
	free(w);
}

/* ---------------------------------------------------------------------------------- */
/*
 * Lifecycle under load (issue #14): while requests flow, a cycler attaches the VM
 * (paused, devices created, even slots on a poller, started), clears it over and over
 * (forcing what blocking waiters hold: their late completions must be refused and
 * never land in a later request), then detaches it and attaches it again. Devices:
 *  - a blocking client served by two waiter threads: reads of port 0x700 + i return
 *    blk_value(port) (waiters now and then hold a request a while, so clears force it);
 *  - a handler client owning a 4 KiB MMIO window it moves itself between two bases on
 *    every write to port 0x800 (a BAR write, on a poller or on its thread): reads in
 *    either window return mov_value(addr) while mapped there;
 *  - nothing at port 0x900.
 * Every read returns its own value or all ones (cleared, forced, unmapped, or between
 * attaches); a late completion landing in a later request would be a mismatch (the
 * values depend on the address, which changes from request to request).
 */
#define LC_VCPUS 8
#define BLK_PORT 0x700u
#define MOV_CTL 0x800u
#define NONE_PORT 0x900u
#define MOV_A 0xe2000000ull
#define MOV_B 0xe3000000ull

static uint64_t blk_value(uint64_t addr)
{
	return mix(addr ^ 0xb10cull);
}

static uint64_t mov_value(uint64_t addr)
{
	return mix(addr ^ 0x30e30eull);
}

static void lc_gen(void *ctx, uint16_t vcpu, uint64_t k, struct rtioreq_sim_op *op)
{
	uint64_t x = mix(((uint64_t)vcpu << 40) ^ k ^ 0x7e57);
	unsigned int pick = (unsigned int)(x % 100);

	(void)ctx;
	memset(op, 0, sizeof(*op));
	op->req.value = x >> 7;
	op->expect_alt = ~(uint64_t)0;
	op->check = RTIOREQ_SIM_CHECK_EQ_OR_ALT;
	op->req.dir = RTIOREQ_DIR_READ;
	if (pick < 55) { /* blocking client */
		op->req.type = RTIOREQ_TYPE_PORTIO;
		op->req.size = 1u << ((x >> 8) % 3);
		op->req.addr = BLK_PORT + ((x >> 12) & 0xff & ~(uint64_t)(op->req.size - 1));
		if (pick >= 45) {
			op->req.dir = RTIOREQ_DIR_WRITE;
			op->check = RTIOREQ_SIM_CHECK_NONE;
		}
		op->expect = blk_value(op->req.addr);
	} else if (pick < 90) { /* the moving window, at either base */
		op->req.type = RTIOREQ_TYPE_MMIO;
		op->req.size = 1u << ((x >> 8) & 3);
		op->req.addr = ((x >> 10) & 1 ? MOV_B : MOV_A) +
			       ((x >> 12) & 0xfff & ~(uint64_t)(op->req.size - 1));
		op->expect = mov_value(op->req.addr);
	} else if (pick < 95) { /* BAR write: the handler moves its window */
		op->req.type = RTIOREQ_TYPE_PORTIO;
		op->req.dir = RTIOREQ_DIR_WRITE;
		op->req.size = 4;
		op->req.addr = MOV_CTL;
		op->check = RTIOREQ_SIM_CHECK_NONE;
	} else {
		op->req.type = RTIOREQ_TYPE_PORTIO;
		op->req.size = 1;
		op->req.addr = NONE_PORT;
		op->expect = ~(uint64_t)0;
	}
}

struct lc {
	struct rtioreq_shm_region *region;
	struct rtioreq_engine *eng;
	struct rtioreq_poller *poller;
	_Atomic int stop;
	/* per attach */
	struct rtioreq_vm *vm;
	struct rtioreq_client *blk;
	_Atomic uint64_t mov_base;
	_Atomic int moving;
	/* counts */
	_Atomic uint64_t served, late, shutdowns, moves, move_errors;
	uint64_t cycles, clears, forced;
};

static void *lc_waiter(void *arg)
{
	struct lc *l = arg;
	struct rtioreq_client *c = l->blk; /* read before the cycler replaces it */
	struct rtioreq_req req;
	int r;

	while ((r = rtioreq_client_wait(c, &req)) == 0) {
		if (req.dir == RTIOREQ_DIR_READ)
			req.value = blk_value(req.addr);
		if (!(mix(req.addr ^ req.tag) & 7))
			h_sleep_ms(0); /* hold it a while: a clear may force it meanwhile */
		r = rtioreq_client_complete(c, &req, 0);
		assert_true(r == 0 || r == -ENOENT);
		atomic_fetch_add(r ? &l->late : &l->served, 1);
	}
	assert_int_equal(r, -ESHUTDOWN); /* torn down by the detach */
	atomic_fetch_add(&l->shutdowns, 1);
	return NULL;
}

static int mov_handler(struct rtioreq_client *c, struct rtioreq_req *r, void *priv)
{
	struct lc *l = priv;

	if (r->type == RTIOREQ_TYPE_PORTIO) { /* MOV_CTL write: move the window */
		uint64_t old, nb;
		int e;

		/* the device's own register is single-owner: a write racing with another
		 * (one on the poller, one on the client thread) is dropped */
		if (atomic_exchange(&l->moving, 1))
			return 0;
		old = atomic_load(&l->mov_base); /* after the exchange: the current base */
		nb = old == MOV_A ? MOV_B : MOV_A;
		e = rtioreq_range_del(c, RTIOREQ_TYPE_MMIO, old, old + 0xfff);
		if (!e)
			e = rtioreq_range_add(c, RTIOREQ_TYPE_MMIO, nb, nb + 0xfff);
		if (!e) {
			atomic_store(&l->mov_base, nb);
			atomic_fetch_add(&l->moves, 1);
		} else if (e != -ENODEV) { /* -ENODEV: the VM is being detached */
			print_message("range move %#lx -> %#lx: %d\n", (unsigned long)old,
				      (unsigned long)nb, e);
			atomic_fetch_add(&l->move_errors, 1);
		}
		atomic_store(&l->moving, 0);
		return 0;
	}
	if (r->dir == RTIOREQ_DIR_READ)
		r->value = mov_value(r->addr);
	return 0;
}

static void *lc_cycler(void *arg)
{
	struct lc *l = arg;
	struct rtioreq_client_attr ma = { .name = "mov", .handler = mov_handler, .priv = l };
	struct rtioreq_client_attr ba = { .name = "blk" };

	while (!atomic_load(&l->stop)) {
		struct rtioreq_vm_attr va = { .id = 9, .vcpu_num = LC_VCPUS, .paused = true,
					      .page = &l->region->page, .chan = &l->region->chan };
		struct rtioreq_client *mov;
		pthread_t w[2];

		l->vm = rtioreq_vm_attach(l->eng, &va);
		assert_non_null(l->vm);
		l->blk = rtioreq_client_create(l->vm, &ba);
		assert_non_null(l->blk);
		assert_int_equal(rtioreq_range_add(l->blk, RTIOREQ_TYPE_PORTIO, BLK_PORT,
						   BLK_PORT + 0xff),
				 0);
		mov = rtioreq_client_create(l->vm, &ma);
		assert_non_null(mov);
		atomic_store(&l->mov_base, MOV_A);
		assert_int_equal(rtioreq_range_add(mov, RTIOREQ_TYPE_PORTIO, MOV_CTL, MOV_CTL + 3),
				 0);
		assert_int_equal(rtioreq_range_add(mov, RTIOREQ_TYPE_MMIO, MOV_A, MOV_A + 0xfff),
				 0);
		for (int i = 0; i < 2; i++)
			assert_int_equal(pthread_create(&w[i], NULL, lc_waiter, l), 0);
		for (uint16_t v = 0; l->poller && v < LC_VCPUS; v += 2)
			assert_int_equal(rtioreq_vm_set_poller(l->vm, v, l->poller), 0);
		assert_int_equal(rtioreq_vm_start(l->vm), 0);
		for (int j = 0; j < 8 && !atomic_load(&l->stop); j++) {
			int f;

			h_sleep_ms(2);
			f = rtioreq_vm_clear(l->vm, j & 1);
			assert_true(f >= 0);
			l->forced += (uint64_t)f;
			l->clears++;
		}
		assert_int_equal(rtioreq_vm_detach(l->vm), 0);
		for (int i = 0; i < 2; i++)
			pthread_join(w[i], NULL);
		/* the handles outlived the detach; the owner lets go now */
		assert_int_equal(rtioreq_client_destroy(l->blk), 0);
		assert_int_equal(rtioreq_client_destroy(mov), 0);
		l->cycles++;
	}
	return NULL;
}

static void run_stress_lifecycle(bool polling)
{
	struct rtioreq_sim_result *res = calloc(1, sizeof(*res));
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	/* polling: the producer spins on one CPU of a small box and the poller on the
	 * other while busy, so the waiters and the cycler get little time: fewer requests */
	uint64_t n = stress_requests() / (polling ? 20 : 5);
	struct rtioreq_shm shm;
	struct lc l = { 0 };
	pthread_t t;

	assert_int_equal(rtioreq_shm_create(&shm, NULL, LC_VCPUS), 0);
	l.region = shm.region;
	l.eng = rtioreq_engine_create(NULL);
	assert_non_null(l.eng);
	if (polling) {
		l.poller = rtioreq_poller_create(
			l.eng, &(struct rtioreq_thread_attr){ .cpu = ncpu > 1 ? (int)ncpu - 1 : -1 });
		assert_non_null(l.poller);
		/* hybrid idle: the poller leaves its CPU to the waiters when idle */
		rtioreq_poller_set_idle(l.poller, 50000);
	}
	assert_int_equal(pthread_create(&t, NULL, lc_cycler, &l), 0);
	{
		struct rtioreq_sim_attr sa = {
			.region = shm.region, .vcpu_num = LC_VCPUS, .producers = 1, .requests = n,
			.completion_polling = polling,
			.producer_cpu = { polling && ncpu > 1 ? 0 : -1, -1, -1, -1 },
			.stranded_ns = 30000000000ull, .wl = { lc_gen, NULL }
		};

		assert_int_equal(rtioreq_sim_run(&sa, res), 0);
	}
	atomic_store(&l.stop, 1);
	pthread_join(t, NULL);
	print_message("lifecycle %s: %lu requests in %.2f s, p99 %lu ns, max %lu ns; attach/detach "
		      "cycles %lu, clears %lu, forced %lu, late completions refused %lu, blocking "
		      "served %lu, waiters shut down %lu, handler range moves %lu\n",
		      polling ? "polling" : "notify", (unsigned long)res->requests,
		      (double)res->ns / 1e9, (unsigned long)rtioreq_hist_percentile(&res->rtt, 99),
		      (unsigned long)res->rtt.max, (unsigned long)l.cycles,
		      (unsigned long)l.clears, (unsigned long)l.forced,
		      (unsigned long)atomic_load(&l.late), (unsigned long)atomic_load(&l.served),
		      (unsigned long)atomic_load(&l.shutdowns), (unsigned long)atomic_load(&l.moves));
	assert_int_equal(res->requests, n);
	assert_int_equal(res->completed, n);
	assert_int_equal(res->lost, 0);
	assert_int_equal(res->duplicated, 0);
	assert_int_equal(res->mismatched, 0);
	assert_int_equal(atomic_load(&l.move_errors), 0);
	assert_true(l.cycles >= 2);
	assert_int_equal(atomic_load(&l.shutdowns), 2 * l.cycles);
	assert_true(atomic_load(&l.moves) > 0);
	assert_true(atomic_load(&l.served) > 0);
	/* every forced request held by a waiter came back as a refused late completion;
	 * forced also counts requests still pending (not yet taken) */
	assert_true(atomic_load(&l.late) <= l.forced);
	if (l.poller)
		assert_int_equal(rtioreq_poller_destroy(l.poller), 0);
	rtioreq_engine_destroy(l.eng);
	rtioreq_shm_close(&shm);
	free(res);
}

static void test_stress_lifecycle_polling(void **state)
{
	run_stress_lifecycle(true);
}

static void test_stress_lifecycle_notify(void **state)
{
	run_stress_lifecycle(false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stress_polling),
		cmocka_unit_test(test_stress_notify),
		cmocka_unit_test(test_stress_hybrid),
		cmocka_unit_test(test_hybrid_no_lost_wakeup),
		cmocka_unit_test(test_stress_lifecycle_polling),
		cmocka_unit_test(test_stress_lifecycle_notify),
	};

	if (getenv("RTIOREQ_TEST_FILTER")) /* one test at a time */
		cmocka_set_test_filter(getenv("RTIOREQ_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
