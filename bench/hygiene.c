// SPDX-License-Identifier: MIT
/*
 * Hot-path hygiene as numbers: syscalls, page faults (minor, major), context switches
 * and heap allocations of the poller thread per million requests in steady-state
 * polling (16 vCPUs, after a warm-up run). The method of tests/core/test_hotpath.c:
 *  - perf_event_open() counters attached to the poller's thread id only: the
 *    raw_syscalls:sys_enter tracepoint (its id read from tracefs, mounted if needed),
 *    and the software counters page-faults, minor-faults, major-faults and
 *    context-switches; enabled while requests flow, disabled after;
 *  - heap allocations: this executable interposes malloc() & co. and counts the calls
 *    made by the watched thread id.
 * A positive control first proves the counters see what they should: a thread making
 * 1000 getppid() calls and 100 malloc() calls.
 */
#include "bench.h"
#include "hygiene.h" /* tests/hygiene.h: counters and the malloc interposer */

static void counters_ctl(struct hyg_counters *c, unsigned long op)
{
	int r = hyg_ctl(c, op);

	if (r)
		bench_die("perf ioctl: %s", strerror(-r));
}

static void counters_read(struct hyg_counters *c, uint64_t out[HYG_NCTR])
{
	int r = hyg_read(c, out);

	if (r)
		bench_die("perf read: %s", strerror(-r));
}

struct hyg {
	struct hyg_counters k;
	struct rtioreq_poller_stats s0, s1;
	uint64_t v[HYG_NCTR];
	bool open;
};

static void hyg_during(void *arg, struct rtioreq_engine *eng, struct rtioreq_vm *vm,
		       struct rtioreq_poller *poller)
{
	struct hyg *g = arg;
	struct bench_hygiene *o = &bench_res.hyg;
	pid_t tid = rtioreq_poller_tid(poller);

	if (hyg_open(&g->k, tid, o->why, sizeof(o->why)))
		return;
	g->open = true;
	rtioreq_poller_stats(poller, &g->s0);
	atomic_store(&hyg_watched_allocs, 0);
	atomic_store(&hyg_watched_tid, tid);
	counters_ctl(&g->k, PERF_EVENT_IOC_ENABLE);
}

static void hyg_after(void *arg, struct rtioreq_engine *eng, struct rtioreq_vm *vm,
		      struct rtioreq_poller *poller)
{
	struct hyg *g = arg;

	if (!g->open)
		return;
	counters_ctl(&g->k, PERF_EVENT_IOC_DISABLE);
	atomic_store(&hyg_watched_tid, 0);
	rtioreq_poller_stats(poller, &g->s1);
	counters_read(&g->k, g->v);
}

void bench_hygiene(void)
{
	struct bench_hygiene *o = &bench_res.hyg;
	struct hyg *g = calloc(1, sizeof(*g));
	struct hyg_control ctl = {0};
	struct hyg_counters k;
	uint64_t v[HYG_NCTR];
	pthread_t t;
	struct bench_run r = {.polling = true,
			      .vcpus = 16,
			      .producer_cpu = bench_cfg.producer_cpu,
			      .poller_cpu = bench_cfg.engine_cpu,
			      .requests = bench_cfg.hyg_requests,
			      .during = hyg_during,
			      .after = hyg_after};
	char topo[200];

	if (!g)
		bench_die("out of memory");
	r.arg = g;
	o->allocs_counted = HYG_COUNT_ALLOCS;
	/* positive control */
	bench_thread_start(&t, -1, 0, "bench-control", hyg_control_main, &ctl);
	while (!atomic_load(&ctl.tid))
		sched_yield();
	if (hyg_open(&k, atomic_load(&ctl.tid), o->why, sizeof(o->why))) {
		atomic_store(&ctl.go, 1);
		pthread_join(t, NULL);
		printf("# hot-path hygiene: not measured: %s\n", o->why);
		free(g);
		return;
	}
	counters_ctl(&k, PERF_EVENT_IOC_ENABLE);
	atomic_store(&hyg_watched_allocs, 0);
	atomic_store(&hyg_watched_tid, atomic_load(&ctl.tid));
	atomic_store(&ctl.go, 1);
	pthread_join(t, NULL);
	atomic_store(&hyg_watched_tid, 0);
	counters_ctl(&k, PERF_EVENT_IOC_DISABLE);
	counters_read(&k, v);
	o->ctl_syscalls = v[0];
	o->ctl_allocs = atomic_load(&hyg_watched_allocs);
	printf("# hot-path hygiene control thread (1000 getppid, 100 malloc): %lu syscalls, "
	       "%lu allocations counted\n",
	       (unsigned long)o->ctl_syscalls, (unsigned long)o->ctl_allocs);
	if (o->ctl_syscalls < 1000 || (HYG_COUNT_ALLOCS && o->ctl_allocs < 100))
		bench_die("hygiene positive control failed: counters do not see what they should");

	snprintf(topo, sizeof(topo),
		 "hot-path hygiene: polling 16 vCPUs, poller CPU %d, "
		 "hypervisor CPU %d; counters on the poller thread only",
		 bench_cfg.engine_cpu, bench_cfg.producer_cpu);
	bench_topology(topo);
	bench_engine_run(&r);
	if (!g->open) {
		printf("# hot-path hygiene: not measured: %s\n", o->why);
		free(r.res);
		free(g);
		return;
	}
	o->ok = true;
	o->requests = g->s1.served - g->s0.served;
	o->loops = g->s1.loops - g->s0.loops;
	o->syscalls = g->v[0];
	o->faults = g->v[1];
	o->faults_min = g->v[2];
	o->faults_maj = g->v[3];
	o->ctxsw = g->v[4];
	o->allocs = atomic_load(&hyg_watched_allocs);
	{
		double pm = o->requests ? 1e6 / (double)o->requests : 0;

		printf("# poller thread over %lu requests (%lu loops): %lu syscalls, %lu page "
		       "faults (%lu minor, %lu major), %lu context switches, %lu heap "
		       "allocations%s\n",
		       (unsigned long)o->requests, (unsigned long)o->loops,
		       (unsigned long)o->syscalls, (unsigned long)o->faults,
		       (unsigned long)o->faults_min, (unsigned long)o->faults_maj,
		       (unsigned long)o->ctxsw, (unsigned long)o->allocs,
		       HYG_COUNT_ALLOCS ? "" : " (not counted under sanitizers)");
		printf("SUMMARY bench=hygiene unit=per_million_requests requests=%lu syscalls=%.2f "
		       "faults=%.2f faults_minor=%.2f faults_major=%.2f ctxsw=%.2f allocs=%.2f\n",
		       (unsigned long)o->requests, (double)o->syscalls * pm, (double)o->faults * pm,
		       (double)o->faults_min * pm, (double)o->faults_maj * pm,
		       (double)o->ctxsw * pm, (double)o->allocs * pm);
	}
	free(r.res);
	free(g);
}
