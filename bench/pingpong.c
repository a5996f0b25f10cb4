// SPDX-License-Identifier: MIT
/*
 * The physical limits the engine is built on, measured between the same two CPUs:
 *  - cache-line ping-pong: one 64-byte line, the client stores an odd value
 *    (release), the server sees it (acquire) and stores the next even value (release),
 *    the client sees that (acquire). The polling path's floor: PENDING store -> the
 *    poller's load -> COMPLETE store -> the hypervisor's load is the same exchange.
 *  - futex ping-pong: the fallback path's floor, with the engine's own shared futex
 *    words (the channel page of a shared region): the client bumps upcall_seq and
 *    wakes (the upcall), the server bumps done_seq[0] and wakes (the completion
 *    notification); both sleep in futex_waitv like the dispatcher and rtioreq_hv_wait().
 * Every round trip is timed on the client with clock_gettime(CLOCK_MONOTONIC), like
 * the simulated hypervisor times requests, so the ratios compare like with like.
 */
#include <limits.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "sys/cpu_pvt.h"
#include "sys/futex_pvt.h"

#define PP_STOP (1ull << 63)
/* a round trip longer than this means the other side is not running at all */
#define PP_STALL_NS 5000000000ull

struct pp {
	_Atomic uint64_t line __attribute__((aligned(BENCH_CACHELINE))); /* alone in its line */
	uint8_t pad[BENCH_CACHELINE - sizeof(uint64_t)];
	struct rtioreq_hist *h;
	uint64_t warm_ns, run_ns, ns; /* ns: measured wall time, set by the client */
};

static void *pp_server(void *arg)
{
	struct pp *p = arg;
	uint64_t want = 1;

	for (;;) {
		/* acquire: pairs with the client's release store of the odd value */
		uint64_t v = atomic_load_explicit(&p->line, memory_order_acquire);

		if (v & PP_STOP)
			break;
		if (v == want) {
			/* release: pairs with the client's acquire load */
			atomic_store_explicit(&p->line, v + 1, memory_order_release);
			want += 2;
		} else {
			rtioreq__cpu_relax();
		}
	}
	return NULL;
}

static void *pp_client(void *arg)
{
	struct pp *p = arg;
	uint64_t k = 0, start = bench_now_ns(), measure = start + p->warm_ns;
	uint64_t end = measure + p->run_ns, t1 = start;
	bool on = false;

	while (t1 < end) {
		uint64_t t0 = bench_now_ns();

		if (!on && t0 >= measure) {
			on = true;
			measure = t0;
		}
		/* release: pairs with the server's acquire load */
		atomic_store_explicit(&p->line, 2 * k + 1, memory_order_release);
		/* acquire: pairs with the server's release store */
		for (unsigned int spins = 1;
		     atomic_load_explicit(&p->line, memory_order_acquire) != 2 * k + 2; spins++) {
			rtioreq__cpu_relax();
			if (!(spins & 4095) && bench_now_ns() - t0 > PP_STALL_NS) {
				atomic_store_explicit(&p->line, PP_STOP, memory_order_release);
				bench_die(
				    "cache-line ping-pong: no answer for %llu s: the server "
				    "thread on CPU %d does not run (a SCHED_FIFO task there?)",
				    PP_STALL_NS / 1000000000ull, bench_cfg.engine_cpu);
			}
		}
		t1 = bench_now_ns();
		if (on)
			rtioreq_hist_record(p->h, t1 - t0);
		k++;
	}
	p->ns = t1 - measure;
	atomic_store_explicit(&p->line, PP_STOP, memory_order_release);
	return NULL;
}

void bench_clock_overhead(void)
{
	struct rtioreq_hist *h = calloc(1, sizeof(*h));
	uint64_t n = bench_cfg.quick ? 200000 : 1000000;

	if (!h)
		bench_die("out of memory");
	rtioreq_hist_init(h);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t a = bench_now_ns(), b = bench_now_ns();

		rtioreq_hist_record(h, b - a);
	}
	bench_res.clock_ns_p50 = rtioreq_hist_percentile(h, 50);
	bench_res.clock_ns_p99 = rtioreq_hist_percentile(h, 99);
	printf("# clock_gettime(CLOCK_MONOTONIC) back to back: p50 %lu ns, p99 %lu ns "
	       "(included in every timed round trip)\n",
	       (unsigned long)bench_res.clock_ns_p50, (unsigned long)bench_res.clock_ns_p99);
	printf("SUMMARY bench=clock unit=ns count=%lu p50=%lu p99=%lu\n", (unsigned long)n,
	       (unsigned long)bench_res.clock_ns_p50, (unsigned long)bench_res.clock_ns_p99);
	free(h);
}

/* One cache-line ping-pong of @warm_ns + @run_ns into @h: the measured wall time, ns. */
static uint64_t pp_run(struct rtioreq_hist *h, uint64_t warm_ns, uint64_t run_ns)
{
	struct pp *p = bench_zalloc_line(sizeof(struct pp));
	pthread_t s, c;
	uint64_t ns;

	p->h = h;
	p->warm_ns = warm_ns;
	p->run_ns = run_ns;
	bench_thread_start(&s, bench_cfg.engine_cpu, 0, "pp-server", pp_server, p);
	bench_thread_start(&c, bench_cfg.producer_cpu, 0, "pp-client", pp_client, p);
	pthread_join(c, NULL);
	pthread_join(s, NULL);
	ns = p->ns;
	free(p);
	return ns;
}

void bench_cacheline_topology(void)
{
	char topo[160];

	snprintf(topo, sizeof(topo),
		 "cache-line ping-pong: client CPU %d, server CPU %d, both "
		 "SCHED_OTHER spinning",
		 bench_cfg.producer_cpu, bench_cfg.engine_cpu);
	bench_topology(topo);
}

void bench_cacheline(bool again)
{
	struct bench_dist *d =
	    bench_dist_new(again ? "cacheline-end" : "cacheline-start",
			   again ? "cache-line ping-pong, again at the end (drift check)"
				 : "cache-line ping-pong at the start (drift check)",
			   "ns per round trip");

	d->plot = false; /* the interleaved "cacheline" of the polling phase is plotted */
	bench_cacheline_topology();
	d->ns = pp_run(&d->h, bench_cfg.warm_ns, bench_cfg.short_ns);
	bench_dist_print(d, NULL);
}

uint64_t bench_cacheline_slice(void *arg, uint64_t ns, struct rtioreq_hist *h)
{
	(void)arg;
	return pp_run(h, bench_cfg.slice_warm_ns, ns);
}

/* ---------------------------------------------------------------------------------- */

struct fx {
	struct rtioreq_shm shm; /* the engine's shared region: its channel words */
	_Atomic uint32_t *req, *resp;
	_Atomic bool stop;
	struct rtioreq_hist *h;
	uint64_t warm_ns, run_ns, ns; /* ns: measured wall time, set by the client */
};

/* Sleep until *w != seen. @stall: die after PP_STALL_NS (the client side only). */
static void fx_wait(_Atomic uint32_t *w, uint32_t seen, bool stall)
{
	uint64_t t0 = stall ? bench_now_ns() : 0;
	struct futex_waitv wv;
	struct timespec abs;

	/* acquire: pairs with the other side's release increment */
	while (atomic_load_explicit(w, memory_order_acquire) == seen) {
		rtioreq__futex_waitv_set(&wv, w, seen, true);
		if (!stall) {
			rtioreq__futex_waitv(&wv, 1, NULL);
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &abs);
		abs.tv_sec += 1;
		rtioreq__futex_waitv(&wv, 1, &abs);
		if (bench_now_ns() - t0 > PP_STALL_NS)
			bench_die("futex ping-pong: no answer for %llu s: the server thread on CPU "
				  "%d does not run",
				  PP_STALL_NS / 1000000000ull, bench_cfg.engine_cpu);
	}
}

static void *fx_server(void *arg)
{
	struct fx *f = arg;
	uint32_t seen = 0;

	for (;;) {
		fx_wait(f->req, seen, false);
		seen = atomic_load_explicit(f->req, memory_order_acquire);
		/* relaxed: set before the last req increment, which we acquired */
		if (atomic_load_explicit(&f->stop, memory_order_relaxed))
			break;
		/* release: the completion; pairs with the client's acquire in fx_wait() */
		atomic_fetch_add_explicit(f->resp, 1, memory_order_release);
		rtioreq__futex_wake(f->resp, INT_MAX, true);
	}
	return NULL;
}

static void *fx_client(void *arg)
{
	struct fx *f = arg;
	uint64_t start = bench_now_ns(), measure = start + f->warm_ns;
	uint64_t end = measure + f->run_ns, t1 = start;
	bool on = false;

	while (t1 < end) {
		uint64_t t0 = bench_now_ns();
		/* read before ringing, as the hypervisor reads done_seq before it sleeps */
		uint32_t r = atomic_load_explicit(f->resp, memory_order_acquire);

		if (!on && t0 >= measure) {
			on = true;
			measure = t0;
		}
		/* release: the upcall; pairs with the server's acquire in fx_wait() */
		atomic_fetch_add_explicit(f->req, 1, memory_order_release);
		rtioreq__futex_wake(f->req, INT_MAX, true);
		fx_wait(f->resp, r, true);
		t1 = bench_now_ns();
		if (on)
			rtioreq_hist_record(f->h, t1 - t0);
	}
	f->ns = t1 - measure;
	atomic_store_explicit(&f->stop, true, memory_order_relaxed);
	atomic_fetch_add_explicit(f->req, 1, memory_order_release);
	rtioreq__futex_wake(f->req, INT_MAX, true);
	return NULL;
}

/* One futex ping-pong of bench_cfg.slice_warm_ns + @ns into @h, its client on
 * @client_cpu at SCHED_FIFO @client_prio (0: SCHED_OTHER): the measured wall time, ns. */
static uint64_t fx_slice(int client_cpu, int client_prio, uint64_t ns, struct rtioreq_hist *h)
{
	struct fx *f = calloc(1, sizeof(*f));
	pthread_t s, c;
	uint64_t t;
	int r;

	if (!f)
		bench_die("out of memory");
	r = rtioreq_shm_create(&f->shm, NULL, 1);
	if (r)
		bench_die("shared region: %s", strerror(-r));
	f->req = rtioreq_wire_atomic(&f->shm.region->chan.upcall_seq.word);
	f->resp = rtioreq_wire_atomic(&f->shm.region->chan.done_seq[0].word);
	f->h = h;
	f->warm_ns = bench_cfg.slice_warm_ns;
	f->run_ns = ns;
	bench_thread_start(&s, bench_cfg.engine_cpu, bench_cfg.prio, "fx-server", fx_server, f);
	bench_thread_start(&c, client_cpu, client_prio, "fx-client", fx_client, f);
	pthread_join(c, NULL);
	pthread_join(s, NULL);
	rtioreq_shm_close(&f->shm);
	t = f->ns;
	free(f);
	return t;
}

/*
 * One futex ping-pong across the two CPUs (client on the producer CPU) of
 * bench_cfg.slice_warm_ns + @ns into @h (a bench_slice_fn; /dev/cpu_dma_latency is the
 * caller's): the measured wall time, ns.
 */
uint64_t bench_futex_slice(void *arg, uint64_t ns, struct rtioreq_hist *h)
{
	(void)arg;
	return fx_slice(bench_cfg.producer_cpu, 0, ns, h);
}

/*
 * The same with both threads on the engine CPU at the same SCHED_FIFO priority, as the
 * ACRN-style worker and client threads are: a woken thread does not preempt its waker
 * but runs when the waker goes to sleep. So a round trip is two context switches on
 * one CPU and no cross-CPU wake-up, and one hop between two threads of the same CPU
 * (the ACRN-style worker -> client thread hop on a 2-CPU machine) is half of it.
 */
uint64_t bench_futex_local_slice(void *arg, uint64_t ns, struct rtioreq_hist *h)
{
	(void)arg;
	return fx_slice(bench_cfg.engine_cpu, bench_cfg.prio, ns, h);
}
