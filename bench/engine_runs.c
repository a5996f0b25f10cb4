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
	struct rtioreq_engine *eng;
	struct rtioreq_vm *vm;
	struct rtioreq_shm shm;
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
	dev->handler_thread = bench_cfg.fallback_thread;
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
	rc = rtioreq_vm_start(vm);
	if (rc)
		bench_die("VM start: %s", strerror(-rc));
	rtioreq_exdev_oracle_init(oracle, 1, bench_cfg.unmapped);

	st->res = calloc(1, sizeof(*st->res));
	if (!st->res)
		bench_die("out of memory");
	st->sa = (struct rtioreq_sim_attr){
	    .region = shm.region,
	    .vcpu_num = (uint16_t)r->vcpus,
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
	if (bench_cfg.warm_ns) { /* first touches, caches, frequency: not measured */
		pthread_t t;

		st->sa.duration_ns = bench_cfg.warm_ns;
		bench_thread_start(&t, -1, 0, "bench-sim", sim_thread_main, st);
		pthread_join(t, NULL);
		if (st->rc)
			bench_die("simulated hypervisor: %s", strerror(-st->rc));
		check_res("warm-up", st->res);
	}
	st->sa.requests = r->requests;
	st->sa.duration_ns = r->requests ? 0 : r->duration_ns;
	{
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
	check_res("measured run", st->res);
	rtioreq_vm_stats(vm, &r->st);
	rtioreq_engine_destroy(eng);
	rtioreq_shm_close(&shm);
	r->res = st->res;
	free(st);
	free(oracle);
	free(dev);
}

/* Run @r, with /dev/cpu_dma_latency held at 0 if @dma, into @d (r->res is the caller's). */
static void run_into(struct bench_dist *d, struct bench_run *r, bool dma)
{
	int fd = dma ? bench_dma_hold() : -1;

	bench_engine_run(r);
	bench_dma_release(fd);
	d->h = r->res->rtt;
	d->ns = r->res->ns;
	d->dma_held = dma;
}

static struct bench_dist *engine_dist(const char *name, const char *label, bool polling,
				      unsigned int vcpus, bool dma)
{
	struct bench_run r = {.polling = polling,
			      .vcpus = vcpus,
			      .producer_cpu = bench_cfg.producer_cpu,
			      .poller_cpu = bench_cfg.engine_cpu,
			      .duration_ns = bench_cfg.run_ns};
	struct bench_dist *d = bench_dist_new(name, label, "ns per request (round trip)");
	char extra[160];

	run_into(d, &r, dma);
	snprintf(extra, sizeof(extra),
		 "vcpus=%u polled=%lu fallback=%lu upcalls=%lu "
		 "notified=%lu",
		 vcpus, (unsigned long)r.st.polled, (unsigned long)r.st.fallback,
		 (unsigned long)r.res->upcalls, (unsigned long)r.st.notified);
	bench_dist_print(d, extra);
	free(r.res);
	return d;
}

void bench_polling(void)
{
	char topo[200];
	struct bench_dist *d;

	snprintf(topo, sizeof(topo),
		 "engine polling: poller CPU %d SCHED_OTHER spinning, "
		 "simulated hypervisor CPU %d SCHED_OTHER spinning for COMPLETE",
		 bench_cfg.engine_cpu, bench_cfg.producer_cpu);
	bench_topology(topo);
	d = engine_dist("poll-1vcpu", "rtioreq polling, 1 vCPU", true, 1, false);
	bench_res.thr_poll1 = (uint64_t)((double)d->h.count * 1e9 / (double)d->ns);
	d = engine_dist("poll-16vcpu", "rtioreq polling, 16 vCPUs", true, 16, false);
	bench_res.thr_poll16 = (uint64_t)((double)d->h.count * 1e9 / (double)d->ns);
}

/*
 * Hybrid idle: the poller sleeps after spin_ns without work (NEED_WAKEUP handshake);
 * every request follows a vCPU pause (uniform 0..2x think, mean 500 us) longer than the
 * spin time, so nearly every round trip includes the upcall and the poller's wake-up:
 * the p50 is the wake-up cost of hybrid idle, with and without cpu_dma_latency held.
 */
void bench_hybrid(void)
{
	for (int dma = 0; dma < 2; dma++) {
		struct bench_run r = {.polling = true,
				      .vcpus = 1,
				      .producer_cpu = bench_cfg.producer_cpu,
				      .poller_cpu = bench_cfg.engine_cpu,
				      .duration_ns = bench_cfg.run_ns,
				      .spin_ns = 20000,
				      .think_ns = 500000};
		struct bench_dist *d =
		    bench_dist_new(dma ? "hybrid-dma0" : "hybrid",
				   dma ? "rtioreq hybrid idle, every request wakes the poller, "
					 "cpu_dma_latency=0"
				       : "rtioreq hybrid idle, every request wakes the poller",
				   "ns per request (round trip)");
		char extra[160];

		run_into(d, &r, dma);
		snprintf(extra, sizeof(extra), "spin_us=20 think_mean_us=500 sleeps=%lu upcalls=%lu",
			 (unsigned long)r.ps.sleeps, (unsigned long)r.res->upcalls);
		bench_dist_print(d, extra);
		if (r.ps.sleeps < r.res->requests / 2)
			bench_die("hybrid: the poller slept %lu times for %lu requests",
				  (unsigned long)r.ps.sleeps, (unsigned long)r.res->requests);
		free(r.res);
	}
}

void bench_fallback(bool dma)
{
	char topo[240];

	snprintf(topo, sizeof(topo),
		 "engine fallback: dispatcher%s CPU %d "
		 "%s %d, simulated hypervisor CPU %d SCHED_OTHER sleeping on done_seq",
		 bench_cfg.fallback_thread ? " + client threads" : " (handlers inline)",
		 bench_cfg.engine_cpu, bench_cfg.prio ? "SCHED_FIFO" : "SCHED_OTHER",
		 bench_cfg.prio, bench_cfg.producer_cpu);
	bench_topology(topo);
	engine_dist(dma ? "fallback-dma0" : "fallback",
		    dma ? "rtioreq fallback (notify), 1 vCPU, cpu_dma_latency=0"
			: "rtioreq fallback (notify), 1 vCPU",
		    false, 1, dma);
}

/* ---------------------------------------------------------------------------------- */
/* Range updates under load */

struct upd {
	struct rtioreq_client *churn;
	bool placebo;
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

/* @u: the churn client's state; u->period_ns 0: no updater thread at all */
/* One slice of an interleaved variant: a fresh engine for @ns, merged into @d. */
static void upd_slice(struct bench_dist *d, struct upd *u, uint64_t ns)
{
	struct bench_run r = {.polling = true,
			      .vcpus = 1,
			      .producer_cpu = bench_cfg.producer_cpu,
			      .poller_cpu = bench_cfg.engine_cpu,
			      .duration_ns = ns,
			      .setup = upd_setup,
			      .arg = u};

	if (u->period_ns) {
		r.during = upd_during;
		r.after = upd_after;
	}
	atomic_store_explicit(&u->stop, false, memory_order_relaxed); /* before the thread */
	bench_engine_run(&r);
	rtioreq_hist_merge(&d->h, &r.res->rtt);
	d->ns += r.res->ns;
	free(r.res);
}

static void upd_print(struct bench_dist *d, const struct upd *u)
{
	char extra[200];

	if (u->period_ns && !u->placebo)
		snprintf(extra, sizeof(extra), "changes=%lu change_errors=%lu changes_per_s=%.0f",
			 (unsigned long)u->changes, (unsigned long)u->errors,
			 (double)u->changes * 1e9 / (double)d->ns);
	else if (u->period_ns)
		snprintf(extra, sizeof(extra), "placebo_batches=%lu busy_ns_per_batch=%lu",
			 (unsigned long)u->batches, (unsigned long)u->busy_ns);
	else
		snprintf(extra, sizeof(extra), "changes=0");
	bench_dist_print(d, extra);
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
	 * The three variants run interleaved in short slices (none, churn, placebo, none,
	 * ...), each slice on a fresh engine, and their histograms merged: on this noisy
	 * guest the host moves our vCPUs between cache domains every few seconds, which
	 * would otherwise land on one variant and not the others.
	 */
	{
		unsigned int rounds = 5;
		uint64_t slice = bench_cfg.run_ns / rounds;
		struct bench_dist *dn, *dc, *dp;

		dn = bench_dist_new("upd-none", "polling 1 vCPU, no range updates",
				    "ns per request (round trip)");
		dc = bench_dist_new("upd-churn", "polling 1 vCPU, range add/del under load",
				    "ns per request (round trip)");
		dp = bench_dist_new("upd-placebo",
				    "polling 1 vCPU, placebo thread (same wake-ups and CPU time)",
				    "ns per request (round trip)");
		dn->plot = dc->plot = dp->plot = false;
		u->batch = bench_cfg.update_batch;
		u->period_ns = (uint64_t)(1e9 * u->batch / bench_cfg.update_rate);
		rtioreq_hist_init(&u->change_ns);
		pl->placebo = true;
		pl->batch = u->batch;
		pl->period_ns = u->period_ns;
		rtioreq_hist_init(&pl->change_ns);
		for (unsigned int i = 0; i < rounds; i++) {
			upd_slice(dn, none, slice);
			upd_slice(dc, u, slice);
			/* the placebo burns what a churn batch took, as measured so far */
			pl->busy_ns = u->batches ? u->busy_total_ns / u->batches : 0;
			upd_slice(dp, pl, slice);
		}
		upd_print(dn, none);
		upd_print(dc, u);
		upd_print(dp, pl);
		o->changes = u->changes;
		o->change_errors = u->errors;
		o->change_ns = u->change_ns;
		o->busy_ns_per_batch =
		    u->batches ? (double)u->busy_total_ns / (double)u->batches : 0;
		o->rate_per_s = (double)u->changes * 1e9 / (double)dc->ns;
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
