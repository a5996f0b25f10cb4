// SPDX-License-Identifier: MIT
/*
 * Exactly-once accounting under load: 16 vCPUs, RTIOREQ_STRESS_REQUESTS requests
 * (default 1,000,000) in each mode, while another thread keeps adding and removing
 * ranges, creating and destroying handler clients and the blocking default client,
 * and (polling mode) moving a slot between the poller and the dispatcher.
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stress_polling),
		cmocka_unit_test(test_stress_notify),
		cmocka_unit_test(test_stress_hybrid),
		cmocka_unit_test(test_hybrid_no_lost_wakeup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
