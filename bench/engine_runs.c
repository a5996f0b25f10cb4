// SPDX-License-Identifier: MIT
/*
 * The engine measured through the simulated hypervisor (sim.h), as `rtioreq run` does:
 * a shared region, the example devices (exdev.h), a VM attached paused and started
 * once its clients, ranges and pollers are in place. The round trip is the simulator's
 * own: from just before the PENDING store to the COMPLETE observation (polling mode,
 * the hypervisor spins) or to the wake-up by the completion notification (notify mode).
 * Every read is checked against the device's value; a run with a lost, duplicated or
 * wrong request aborts the benchmark.
 */
#include <errno.h>
#include <time.h>

#include "bench.h"

#define UPD_BASE   0xe0000000ull /* static ranges of the churn client */
#define UPD_CHURN  0xf0000000ull /* ranges added and removed under load */
#define UPD_STATIC 100u

struct sim_thread {
	struct rtioreq_sim_attr sa;
	struct rtioreq_sim_result *res;
	int rc;
};

static void *sim_thread_main(void *arg)
{
	struct sim_thread *s = arg;

	s->rc = rtioreq_sim_run(&s->sa, s->res);
	return NULL;
}

static void check_res(const char *what, const struct rtioreq_sim_result *res)
{
	if (res->lost || res->duplicated || res->mismatched || res->completed != res->requests)
		bench_die("%s: requests %lu completed %lu lost %lu duplicated %lu mismatched %lu",
			  what, (unsigned long)res->requests, (unsigned long)res->completed,
			  (unsigned long)res->lost, (unsigned long)res->duplicated,
			  (unsigned long)res->mismatched);
}

/* The idle VMs of a run (r->idle_vms): attached, slots placed, never driven. */
struct idle_vms {
	unsigned int n;
	struct rtioreq_shm shm[RTIOREQ_MAX_VMS];
};

static struct idle_vms *idle_vms_attach(const struct bench_run *r, struct rtioreq_engine *eng,
					struct rtioreq_poller *poller)
{
	struct idle_vms *iv = calloc(1, sizeof(*iv));

	if (!iv)
		bench_die("out of memory");
	if (r->idle_vms >= RTIOREQ_MAX_VMS)
		bench_die("%u idle VMs: the engine takes %d VMs", r->idle_vms, RTIOREQ_MAX_VMS);
	for (; iv->n < r->idle_vms; iv->n++) {
		struct rtioreq_shm *shm = &iv->shm[iv->n];
		struct rtioreq_vm *vm;
		int rc = rtioreq_shm_create(shm, NULL, (uint16_t)r->idle_vcpus);

		if (rc)
			bench_die("shared region of idle VM %u: %s", iv->n, strerror(-rc));
		vm = rtioreq_vm_attach(eng, &(struct rtioreq_vm_attr){.id = (uint16_t)(2 + iv->n),
								      .vcpu_num =
									  (uint16_t)r->idle_vcpus,
								      .page = &shm->region->page,
								      .chan = &shm->region->chan,
								      .paused = true});
		if (!vm)
			bench_die("idle VM %u attach: %s", iv->n, strerror(errno));
		for (unsigned int v = 0; poller && v < r->idle_vcpus; v++) {
			rc = rtioreq_vm_set_poller(vm, (uint16_t)v, poller);
			if (rc)
				bench_die("idle slot %u to poller: %s", v, strerror(-rc));
		}
		rc = rtioreq_vm_start(vm);
		if (rc)
			bench_die("idle VM start: %s", strerror(-rc));
	}
	return iv;
}

/* After rtioreq_engine_destroy(): the regions. */
static void idle_vms_close(struct idle_vms *iv)
{
	for (unsigned int i = 0; i < iv->n; i++)
		rtioreq_shm_close(&iv->shm[i]);
	free(iv);
}

void bench_engine_run(struct bench_run *r)
{
	struct rtioreq_thread_attr blk = {
	    .cpu = bench_cfg.engine_cpu,
	    .policy = bench_cfg.prio ? SCHED_FIFO : SCHED_OTHER,
	    .priority = bench_cfg.prio,
	};
	struct rtioreq_engine_attr ea = {
	    .dispatcher = blk, .clients = blk, .rcu = {.cpu = bench_cfg.producer_cpu}};
	struct rtioreq_exdev_oracle *oracle = bench_zalloc_line(sizeof(*oracle));
	struct rtioreq_exdev *dev = bench_zalloc_line(sizeof(*dev));
	struct sim_thread *st = calloc(1, sizeof(*st));
	struct rtioreq_poller *poller = NULL;
	struct idle_vms *iv;
	struct rtioreq_engine *eng;
	struct rtioreq_vm *vm;
	struct rtioreq_shm shm;
	uint64_t warm_ns = r->warm_ns ? r->warm_ns : bench_cfg.warm_ns;
	int rc;

	if (!oracle || !dev || !st)
		bench_die("out of memory");
	ea.dispatcher.name = "rtioreq-disp";
	rc = rtioreq_shm_create(&shm, NULL, (uint16_t)r->vcpus);
	if (rc)
		bench_die("shared region: %s", strerror(-rc));
	eng = rtioreq_engine_create(&ea);
	if (!eng)
		bench_die("engine: %s", strerror(errno));
	vm = rtioreq_vm_attach(eng, &(struct rtioreq_vm_attr){.id = 1,
							      .vcpu_num = (uint16_t)r->vcpus,
							      .page = &shm.region->page,
							      .chan = &shm.region->chan,
							      .paused = true});
	if (!vm)
		bench_die("VM attach: %s", strerror(errno));
	dev->handler_thread = r->handler_thread || bench_cfg.fallback_thread;
	rc = rtioreq_exdev_attach(dev, vm);
	if (rc)
		bench_die("example devices: %s", strerror(-rc));
	if (r->setup) {
		rc = r->setup(r->arg, vm);
		if (rc)
			bench_die("setup: %s", strerror(-rc));
	}
	if (r->polling) {
		struct rtioreq_thread_attr pa = {
		    .cpu = r->poller_cpu, .policy = SCHED_OTHER, .name = "rtioreq-poll"};

		poller = rtioreq_poller_create(eng, &pa);
		if (!poller)
			bench_die("poller: %s", strerror(errno));
		for (unsigned int v = 0; v < r->vcpus; v++) {
			rc = rtioreq_vm_set_poller(vm, (uint16_t)v, poller);
			if (rc)
				bench_die("slot %u to poller: %s", v, strerror(-rc));
		}
		rtioreq_poller_set_idle(poller, r->spin_ns);
	}
	iv = idle_vms_attach(r, eng, poller);
	rc = rtioreq_vm_start(vm);
	if (rc)
		bench_die("VM start: %s", strerror(-rc));
	rtioreq_exdev_oracle_init(oracle, 1, bench_cfg.unmapped);

	st->res = calloc(1, sizeof(*st->res));
	if (!st->res)
		bench_die("out of memory");
	st->sa = (struct rtioreq_sim_attr){
	    .region = shm.region,
	    .vcpu_num = (uint16_t)(r->sim_vcpus ? r->sim_vcpus : r->vcpus),
	    .producers = 1,
	    .completion_polling = r->polling,
	    .producer_cpu = {r->producer_cpu, -1, -1, -1},
	    .wl = {rtioreq_exdev_gen, oracle},
	    .think_ns = r->think_ns,
	    .think_all = r->think_ns != 0,
	};
	/*
	 * rtioreq_sim_run() runs on a thread of its own (a new thread gets its own glibc
	 * malloc arena), so the simulator's per-producer state, written on every request,
	 * is never a heap neighbour of the engine objects the control thread allocated.
	 */
	if (warm_ns && !r->idle) { /* first touches, caches, frequency: not measured */
		pthread_t t;

		st->sa.duration_ns = warm_ns;
		bench_thread_start(&t, -1, 0, "bench-sim", sim_thread_main, st);
		pthread_join(t, NULL);
		if (st->rc)
			bench_die("simulated hypervisor: %s", strerror(-st->rc));
		check_res("warm-up", st->res);
	}
	st->sa.requests = r->requests;
	st->sa.duration_ns = r->requests ? 0 : r->duration_ns;
	if (r->idle) {
		if (r->during)
			r->during(r->arg, eng, vm, poller);
	} else {
		pthread_t t;

		bench_thread_start(&t, -1, 0, "bench-sim", sim_thread_main, st);
		if (r->during)
			r->during(r->arg, eng, vm, poller);
		pthread_join(t, NULL);
	}
	if (r->after)
		r->after(r->arg, eng, vm, poller);
	if (poller)
		rtioreq_poller_stats(poller, &r->ps);
	if (st->rc)
		bench_die("simulated hypervisor: %s", strerror(-st->rc));
	if (!r->idle)
		check_res("measured run", st->res);
	rtioreq_vm_stats(vm, &r->st);
	rtioreq_engine_destroy(eng);
	idle_vms_close(iv);
	rtioreq_shm_close(&shm);
	r->res = st->res;
	free(st);
	free(oracle);
	free(dev);
}

uint64_t bench_engine_slice(void *arg, uint64_t ns, struct rtioreq_hist *h)
{
	struct bench_engine_side *es = arg;
	struct bench_run r = es->r;
	uint64_t t;

	r.duration_ns = ns;
	r.warm_ns = bench_cfg.slice_warm_ns;
	bench_engine_run(&r);
	rtioreq_hist_merge(h, &r.res->rtt);
	t = r.res->ns;
	es->requests += r.res->requests;
	es->upcalls += r.res->upcalls;
	es->sleeps += r.ps.sleeps;
	es->polled += r.st.polled;
	es->fallback += r.st.fallback;
	es->notified += r.st.notified;
	free(r.res);
	return t;
}

static void engine_extra(void *arg, char *buf, size_t n)
{
	const struct bench_engine_side *es = arg;

	snprintf(buf, n,
		 "vcpus=%u driven=%u idle_vms=%u polled=%lu fallback=%lu upcalls=%lu notified=%lu "
		 "sleeps=%lu",
		 es->r.vcpus, es->r.sim_vcpus ? es->r.sim_vcpus : es->r.vcpus, es->r.idle_vms,
		 (unsigned long)es->polled, (unsigned long)es->fallback,
		 (unsigned long)es->upcalls, (unsigned long)es->notified,
		 (unsigned long)es->sleeps);
}

void bench_engine_side(struct bench_side *s, struct bench_engine_side *es,
		       const struct bench_run *r, const char *name, const char *label)
{
	memset(es, 0, sizeof(*es));
	es->r = *r;
	es->r.producer_cpu = bench_cfg.producer_cpu;
	es->r.poller_cpu = bench_cfg.engine_cpu;
	*s = (struct bench_side){.d = bench_dist_new(name, label, "ns per request (round trip)"),
				 .slice = bench_engine_slice,
				 .arg = es,
				 .extra = engine_extra};
}

/*
 * Polling vs the cache-line round trip it is built on (issue 13: goal p50 <= 1.5x),
 * interleaved, and the 16-vCPU polling run beside them.
 */
void bench_polling(void)
{
	static const struct bench_ratio_spec rs[] = {
	    {"polling_p50_over_cacheline_p50",
	     "Polling p50 (1 vCPU) / cache-line round trip p50", 1, 0, false, 1.5},
	    {"polling16_p50_over_cacheline_p50",
	     "Polling p50 (16 vCPUs, 1 hypervisor thread) / cache-line round trip p50", 2, 0,
	     false, 0},
	};
	struct bench_engine_side *es = calloc(2, sizeof(*es));
	struct bench_side s[3];
	char topo[200];

	if (!es)
		bench_die("out of memory");
	snprintf(topo, sizeof(topo),
		 "engine polling: poller CPU %d SCHED_OTHER spinning, "
		 "simulated hypervisor CPU %d SCHED_OTHER spinning for COMPLETE",
		 bench_cfg.engine_cpu, bench_cfg.producer_cpu);
	bench_topology(topo);
	bench_cacheline_topology();
	s[0] = (struct bench_side){
	    .d = bench_dist_new("cacheline", "cache-line ping-pong (acquire/release, 1 line)",
				"ns per round trip"),
	    .slice = bench_cacheline_slice};
	bench_engine_side(&s[1], &es[0], &(struct bench_run){.polling = true, .vcpus = 1},
			  "poll-1vcpu", "rtioreq polling, 1 vCPU");
	bench_engine_side(&s[2], &es[1], &(struct bench_run){.polling = true, .vcpus = 16},
			  "poll-16vcpu", "rtioreq polling, 16 vCPUs");
	bench_interleave(s, 3, rs, 2, false);
	bench_res.thr_poll1 = (uint64_t)((double)s[1].d->h.count * 1e9 / (double)s[1].d->ns);
	bench_res.thr_poll16 = (uint64_t)((double)s[2].d->h.count * 1e9 / (double)s[2].d->ns);
	free(es);
}

/* The ratio called @key of this run (bench_res.ratio), or die. */
static const struct bench_ratio *ratio_of(const char *key)
{
	for (unsigned int i = 0; i < bench_res.nratio; i++)
		if (!strcmp(bench_res.ratio[i].key, key))
			return &bench_res.ratio[i];
	bench_die("no ratio %s in this run", key);
}

/*
 * What bounds fallback / ACRN-style on this machine, from the ratios just measured.
 * The fallback's floor is the futex ping-pong: two cross-CPU wake-ups and nothing else
 * (the hypervisor's upcall and the completion's notification). So the bound,
 * fallback <= 0.7 x ACRN-style, is reachable only if 0.7 x (ACRN-style / futex) >= 1.
 * And the model says what ACRN-style / futex can be here: two cross-CPU wake-ups plus
 * one hop between threads of the engine CPU (half a one-CPU ping-pong), since with 2
 * CPUs its worker and client thread share a CPU; 1 + local / 2 before its locks and
 * scan. Printed beside the measured ratios, every run.
 */
static void acrn_model(bool dma)
{
	const struct bench_ratio *acrn =
	    ratio_of(dma ? "acrn_p50_over_futex_p50_dma0" : "acrn_p50_over_futex_p50");
	const struct bench_ratio *loc = ratio_of(dma ? "futex_local_p50_over_futex_p50_dma0"
						     : "futex_local_p50_over_futex_p50");
	const struct bench_ratio *fb =
	    ratio_of(dma ? "fallback_p50_over_futex_p50_dma0" : "fallback_p50_over_futex_p50");
	double predicted = 1 + loc->median / 2, goal = 0.7 * acrn->median;

	printf("# ACRN-style model%s: ACRN / futex = %.3f measured, %.3f predicted by 2 "
	       "cross-CPU wake-ups + 1 one-CPU hop; so 0.7 x ACRN-style = %.3f x futex, %s "
	       "the two-wake-up floor (1.0; the fallback measured %.3f)\n",
	       dma ? " (cpu_dma_latency=0)" : "", acrn->median, predicted, goal,
	       goal < 1 ? "below" : "at or above", fb->median);
	printf("SUMMARY bench=acrn_model dma=%d local_over_futex=%.3f "
	       "acrn_over_futex=%.3f acrn_over_futex_predicted=%.3f "
	       "goal_over_futex=%.3f fallback_over_futex=%.3f\n",
	       dma, loc->median, acrn->median, predicted, goal, fb->median);
}

/*
 * The wake-up paths against their floor, interleaved within one phase: the raw futex
 * ping-pong (two wake-ups), the engine's fallback path, the ACRN-style dispatch and
 * hybrid idle. Hybrid idle: the poller sleeps after spin_ns without work (NEED_WAKEUP
 * handshake); every request follows a vCPU pause (uniform 0..2x think, mean 500 us)
 * longer than the spin time, so nearly every round trip includes the upcall and the
 * poller's wake-up: its p50 is the wake-up cost of hybrid idle.
 */
void bench_wakeups(bool dma, bool acrn, bool hybrid)
{
	/* at most 6 sides (futex, fallback, fallback-thread, acrn, futex-local, hybrid) and
	 * 6 ratios, all added below */
	struct bench_ratio_spec rs[6];
	struct bench_engine_side *es = calloc(3, sizeof(*es));
	struct bench_side s[6];
	_Static_assert(sizeof(s) / sizeof(s[0]) <= BENCH_MAX_SIDES, "bench_interleave takes them all");
	unsigned int ns = 2, nr = 0, acrn_side = 0;
	bool local = false; /* the one-CPU ping-pong and the ACRN model ran */
	char topo[240];

	if (!es)
		bench_die("out of memory");
	snprintf(topo, sizeof(topo),
		 "futex ping-pong on shared futex words (shm channel page): client CPU %d "
		 "SCHED_OTHER, server CPU %d %s %d",
		 bench_cfg.producer_cpu, bench_cfg.engine_cpu,
		 bench_cfg.prio ? "SCHED_FIFO" : "SCHED_OTHER", bench_cfg.prio);
	bench_topology(topo);
	snprintf(topo, sizeof(topo),
		 "engine fallback: dispatcher%s CPU %d %s %d, simulated "
		 "hypervisor CPU %d SCHED_OTHER sleeping on done_seq",
		 bench_cfg.fallback_thread ? " + client threads" : " (handlers inline)",
		 bench_cfg.engine_cpu, bench_cfg.prio ? "SCHED_FIFO" : "SCHED_OTHER",
		 bench_cfg.prio, bench_cfg.producer_cpu);
	bench_topology(topo);
	s[0] = (struct bench_side){
	    .d = bench_dist_new(dma ? "futex-dma0" : "futex",
				dma ? "raw futex ping-pong, cpu_dma_latency=0"
				    : "raw futex ping-pong",
				"ns per round trip (2 wake-ups)"),
	    .slice = bench_futex_slice};
	bench_engine_side(&s[1], &es[0], &(struct bench_run){.vcpus = 1},
			  dma ? "fallback-dma0" : "fallback",
			  dma ? "rtioreq fallback (notify), 1 vCPU, cpu_dma_latency=0"
			      : "rtioreq fallback (notify), 1 vCPU");
	rs[nr++] = (struct bench_ratio_spec){
	    dma ? "fallback_p50_over_futex_p50_dma0" : "fallback_p50_over_futex_p50",
	    dma ? "Fallback p50 / raw futex ping-pong p50, cpu_dma_latency=0"
		: "Fallback p50 / raw futex ping-pong p50",
	    1, 0, false, dma ? 1.15 : 0};
	if (!bench_cfg.fallback_thread) {
		/* the same requests through a client thread (handler_thread): what the inline
		 * fallback saves, one wake-up, measured in the same slices */
		bench_engine_side(&s[ns], &es[2], &(struct bench_run){.vcpus = 1, .handler_thread = true},
				  dma ? "fallback-thread-dma0" : "fallback-thread",
				  dma ? "rtioreq fallback through a client thread (handler_thread), "
					"1 vCPU, cpu_dma_latency=0"
				      : "rtioreq fallback through a client thread (handler_thread), "
					"1 vCPU");
		rs[nr++] = (struct bench_ratio_spec){
		    dma ? "fallback_p50_over_thread_p50_dma0" : "fallback_p50_over_thread_p50",
		    dma ? "Fallback p50, handler inline / through a client thread, "
			  "cpu_dma_latency=0"
			: "Fallback p50, handler inline / through a client thread",
		    1, ns, false, 0};
		ns++;
	}
	if (acrn) {
		bench_acrn_topology(false);
		s[ns] = (struct bench_side){
		    .d = bench_dist_new(dma ? "acrn-dma0" : "acrn",
					dma ? "ACRN-style HSM (notify), 1 vCPU, cpu_dma_latency=0"
					    : "ACRN-style HSM (notify), 1 vCPU",
					"ns per request (round trip)"),
		    .slice = bench_acrn_slice};
		rs[nr++] = (struct bench_ratio_spec){
		    dma ? "fallback_p50_over_acrn_p50_dma0" : "fallback_p50_over_acrn_p50",
		    dma ? "Fallback p50 / ACRN-style HSM p50 (notify), cpu_dma_latency=0"
			: "Fallback p50 / ACRN-style HSM p50 (notify)",
		    1, ns, false, dma ? 0.7 : 0};
		acrn_side = ns++;
		/*
		 * What bounds that ratio here: the ACRN-style dispatch has three wake-ups,
		 * but with 2 CPUs its worker and client thread share the engine CPU, so its
		 * middle hop is a switch on one CPU, not a cross-CPU wake-up. Measure that
		 * hop (half a one-CPU futex ping-pong) in the same slices.
		 */
		s[ns] = (struct bench_side){
		    .d = bench_dist_new(dma ? "futex-local-dma0" : "futex-local",
					dma ? "futex ping-pong on one CPU, cpu_dma_latency=0"
					    : "futex ping-pong on one CPU",
					"ns per round trip (2 context switches)"),
		    .slice = bench_futex_local_slice};
		rs[nr++] = (struct bench_ratio_spec){
		    dma ? "acrn_p50_over_futex_p50_dma0" : "acrn_p50_over_futex_p50",
		    dma ? "ACRN-style HSM p50 / raw futex ping-pong p50, cpu_dma_latency=0"
			: "ACRN-style HSM p50 / raw futex ping-pong p50",
		    acrn_side, 0, false, 0};
		rs[nr++] = (struct bench_ratio_spec){
		    dma ? "futex_local_p50_over_futex_p50_dma0" : "futex_local_p50_over_futex_p50",
		    dma ? "Futex ping-pong on one CPU p50 / across CPUs p50, cpu_dma_latency=0"
			: "Futex ping-pong on one CPU p50 / across CPUs p50",
		    ns, 0, false, 0};
		local = true;
		ns++;
	}
	if (hybrid) {
		bench_engine_side(&s[ns], &es[1],
				  &(struct bench_run){.polling = true,
						      .vcpus = 1,
						      .spin_ns = 20000,
						      .think_ns = 500000},
				  dma ? "hybrid-dma0" : "hybrid",
				  dma ? "rtioreq hybrid idle, every request wakes the poller, "
					"cpu_dma_latency=0"
				      : "rtioreq hybrid idle, every request wakes the poller");
		rs[nr++] = (struct bench_ratio_spec){
		    dma ? "hybrid_p50_over_futex_p50_dma0" : "hybrid_p50_over_futex_p50",
		    dma ? "Hybrid idle wake-up p50 / raw futex p50, cpu_dma_latency=0"
			: "Hybrid idle wake-up p50 / raw futex p50",
		    ns, 0, false, 0};
		ns++;
	}
	bench_interleave(s, ns, rs, nr, dma);
	if (local)
		acrn_model(dma);
	if (hybrid && es[1].sleeps < es[1].requests / 2)
		bench_die("hybrid: the poller slept %lu times for %lu requests",
			  (unsigned long)es[1].sleeps, (unsigned long)es[1].requests);
	free(es);
}

/* ---------------------------------------------------------------------------------- */
/* Range updates under load */

struct upd {
	struct rtioreq_client *churn;
	bool placebo;
	const char *name;	     /* of its distribution */
	const struct upd *ref;	     /* the placebo's: the churn run whose batches it imitates */
	struct bench_engine_side es; /* arg of the side: es.r.arg is this upd */
	uint64_t period_ns, busy_ns;
	unsigned int batch;
	_Atomic bool stop;
	pthread_t thread;
	/* results, read after the join */
	uint64_t changes, errors, batches, busy_total_ns;
	struct rtioreq_hist change_ns;
};

static int churn_handler(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	return 0;
}

static int upd_setup(void *arg, struct rtioreq_vm *vm)
{
	struct upd *u = arg;
	const struct rtioreq_client_attr ca = {.name = "churn", .handler = churn_handler};
	int rc;

	u->churn = rtioreq_client_create(vm, &ca);
	if (!u->churn)
		return -errno;
	for (unsigned int i = 0; i < UPD_STATIC; i++) {
		rc = rtioreq_range_add(u->churn, RTIOREQ_TYPE_MMIO, UPD_BASE + i * 0x1000ull,
				       UPD_BASE + i * 0x1000ull + 0xfff);
		if (rc)
			return rc;
	}
	return 0;
}

static void *upd_main(void *arg)
{
	struct upd *u = arg;
	uint64_t k = 0, next = bench_now_ns() + u->period_ns;

	/* relaxed: a stop signal; the join orders the results */
	while (!atomic_load_explicit(&u->stop, memory_order_relaxed)) {
		struct timespec ts = {(time_t)(next / 1000000000u), (long)(next % 1000000000u)};
		uint64_t t0, t1;

		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		t0 = bench_now_ns();
		if (u->placebo) {
			while (bench_now_ns() - t0 < u->busy_ns)
				;
		} else {
			for (unsigned int j = 0; j < u->batch; j++, k++) {
				uint64_t s = UPD_CHURN + ((k / 2) % 64) * 0x1000ull,
					 c0 = bench_now_ns();
				int rc = (k & 1) ? rtioreq_range_del(u->churn, RTIOREQ_TYPE_MMIO, s,
								     s + 0xfff)
						 : rtioreq_range_add(u->churn, RTIOREQ_TYPE_MMIO, s,
								     s + 0xfff);

				rtioreq_hist_record(&u->change_ns, bench_now_ns() - c0);
				u->errors += rc != 0;
				u->changes++;
			}
		}
		t1 = bench_now_ns();
		u->busy_total_ns += t1 - t0;
		u->batches++;
		next += u->period_ns;
		if (t1 > next + u->period_ns) /* fell behind: skip, never burst */
			next = t1 + u->period_ns;
	}
	/* leave the table as found: remove a range still added */
	if (!u->placebo && (k & 1)) {
		uint64_t s = UPD_CHURN + ((k / 2) % 64) * 0x1000ull;

		u->errors += rtioreq_range_del(u->churn, RTIOREQ_TYPE_MMIO, s, s + 0xfff) != 0;
	}
	return NULL;
}

static void upd_during(void *arg, struct rtioreq_engine *eng, struct rtioreq_vm *vm,
		       struct rtioreq_poller *poller)
{
	struct upd *u = arg;

	/* the placebo burns what a churn batch took, as measured so far */
	if (u->ref)
		u->busy_ns = u->ref->batches ? u->ref->busy_total_ns / u->ref->batches : 0;
	atomic_store_explicit(&u->stop, false, memory_order_relaxed); /* before the thread */
	/* the housekeeping CPU: where a control plane runs, beside the hypervisor thread */
	bench_thread_start(&u->thread, bench_cfg.producer_cpu, 0, "bench-upd", upd_main, u);
}

static void upd_after(void *arg, struct rtioreq_engine *eng, struct rtioreq_vm *vm,
		      struct rtioreq_poller *poller)
{
	struct upd *u = arg;

	atomic_store_explicit(&u->stop, true, memory_order_relaxed);
	pthread_join(u->thread, NULL);
}

/* bench_side.extra of an updates side (its arg is the engine side inside struct upd) */
static void upd_extra(void *arg, char *buf, size_t n)
{
	const struct bench_engine_side *es = arg;
	const struct upd *u = es->r.arg;
	uint64_t ns = 0;

	for (unsigned int i = 0; i < bench_res.ndist; i++)
		if (!strcmp(bench_res.dist[i].name, u->name))
			ns = bench_res.dist[i].ns;
	if (u->period_ns && !u->placebo)
		snprintf(buf, n, "changes=%lu change_errors=%lu changes_per_s=%.0f",
			 (unsigned long)u->changes, (unsigned long)u->errors,
			 ns ? (double)u->changes * 1e9 / (double)ns : 0.0);
	else if (u->period_ns)
		snprintf(buf, n, "placebo_batches=%lu busy_ns_per_batch=%lu",
			 (unsigned long)u->batches, (unsigned long)u->busy_ns);
	else
		snprintf(buf, n, "changes=0");
}

/* @u's side of the interleaved phase; u->period_ns 0: no updater thread at all */
static void upd_side(struct bench_side *s, struct upd *u, const char *name, const char *label)
{
	struct bench_run r = {.polling = true, .vcpus = 1, .setup = upd_setup, .arg = u};

	if (u->period_ns) {
		r.during = upd_during;
		r.after = upd_after;
	}
	u->name = name;
	bench_engine_side(s, &u->es, &r, name, label);
	s->d->plot = false;
	s->extra = upd_extra;
}

void bench_updates(void)
{
	struct bench_updates *o = &bench_res.upd;
	struct upd *u = calloc(1, sizeof(*u)), *pl = calloc(1, sizeof(*pl));
	struct upd *none = calloc(1, sizeof(*none));
	char topo[300];

	if (!u || !pl || !none)
		bench_die("out of memory");
	o->batch = bench_cfg.update_batch;
	o->target_per_s = bench_cfg.update_rate;
	o->table_ranges = UPD_STATIC + 2; /* + exdev's MMIO and PIO range */
	snprintf(topo, sizeof(topo),
		 "updates under load: polling 1 vCPU (poller CPU %d, "
		 "hypervisor CPU %d); updater thread CPU %d SCHED_OTHER, %.0f changes/s in "
		 "batches of %u (add/del alternating, %u static ranges)",
		 bench_cfg.engine_cpu, bench_cfg.producer_cpu, bench_cfg.producer_cpu,
		 bench_cfg.update_rate, bench_cfg.update_batch, UPD_STATIC);
	bench_topology(topo);
	/*
	 * The three variants run interleaved (interleave.c), each slice on a fresh engine:
	 * the ratios are p99.9 against p99.9, per slice.
	 */
	{
		static const struct bench_ratio_spec rs[] = {
		    {"p999_updates_over_none", "p99.9 with concurrent range updates / without",
		     1, 0, true, 0},
		    {"p999_updates_over_placebo",
		     "p99.9 with range updates / with a placebo thread (same wake-ups and CPU "
		     "time, no updates)",
		     1, 2, true, 0},
		};
		struct bench_side s[3];

		u->batch = bench_cfg.update_batch;
		u->period_ns = (uint64_t)(1e9 * u->batch / bench_cfg.update_rate);
		rtioreq_hist_init(&u->change_ns);
		pl->placebo = true;
		pl->ref = u;
		pl->batch = u->batch;
		pl->period_ns = u->period_ns;
		rtioreq_hist_init(&pl->change_ns);
		upd_side(&s[0], none, "upd-none", "polling 1 vCPU, no range updates");
		upd_side(&s[1], u, "upd-churn", "polling 1 vCPU, range add/del under load");
		upd_side(&s[2], pl, "upd-placebo",
			 "polling 1 vCPU, placebo thread (same wake-ups and CPU time)");
		bench_interleave(s, 3, rs, 2, false);
		o->changes = u->changes;
		o->change_errors = u->errors;
		o->change_ns = u->change_ns;
		o->busy_ns_per_batch =
		    u->batches ? (double)u->busy_total_ns / (double)u->batches : 0;
		o->rate_per_s = (double)u->changes * 1e9 / (double)s[1].d->ns;
		if (u->errors)
			bench_die("range updates failed %lu times", (unsigned long)u->errors);
	}
	o->placebo_batches = pl->batches;
	{
		struct bench_pct p;

		bench_pct(&o->change_ns, &p);
		printf("# range change (rtioreq_range_add/del, %u ranges): p50 %lu ns, p99 %lu ns, "
		       "max %lu ns; %.0f changes/s achieved\n",
		       o->table_ranges, (unsigned long)p.p50, (unsigned long)p.p99,
		       (unsigned long)p.max, o->rate_per_s);
		printf("SUMMARY bench=range-change unit=ns count=%lu p50=%lu p99=%lu max=%lu "
		       "changes_per_s=%.0f\n",
		       (unsigned long)o->change_ns.count, (unsigned long)p.p50,
		       (unsigned long)p.p99, (unsigned long)p.max, o->rate_per_s);
	}
	free(u);
	free(pl);
	free(none);
}
