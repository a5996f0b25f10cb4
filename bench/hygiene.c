// SPDX-License-Identifier: MIT
/*
 * Hot-path hygiene as numbers: syscalls, page faults (minor, major), context switches
 * and heap allocations of the poller thread per million requests in steady-state
 * polling (16 vCPUs, after a warm-up run). The method of tests/test_hotpath.c:
 *  - perf_event_open() counters attached to the poller's thread id only: the
 *    raw_syscalls:sys_enter tracepoint (its id read from tracefs, mounted if needed),
 *    and the software counters page-faults, minor-faults, major-faults and
 *    context-switches; enabled while requests flow, disabled after;
 *  - heap allocations: this executable interposes malloc() & co. and counts the calls
 *    made by the watched thread id.
 * A positive control first proves the counters see what they should: a thread making
 * 1000 getppid() calls and 100 malloc() calls.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <malloc.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define COUNT_ALLOCS 0
#else
#define COUNT_ALLOCS 1
#endif

static _Atomic pid_t watched_tid;
static _Atomic uint64_t watched_allocs;

#if COUNT_ALLOCS
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t a, size_t b);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t al, size_t n);
extern void __libc_free(void *p);

static __thread pid_t my_tid;

static void note_alloc(void)
{
	/* relaxed: a filter; the counters are read after the watched thread stopped */
	pid_t w = atomic_load_explicit(&watched_tid, memory_order_relaxed);

	if (!w)
		return;
	if (!my_tid)
		my_tid = (pid_t)syscall(SYS_gettid);
	if (my_tid == w)
		atomic_fetch_add_explicit(&watched_allocs, 1, memory_order_relaxed);
}

void *malloc(size_t n)
{
	note_alloc();
	return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
	note_alloc();
	return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
	note_alloc();
	return __libc_realloc(p, n);
}

void *aligned_alloc(size_t al, size_t n)
{
	note_alloc();
	return __libc_memalign(al, n);
}

void *memalign(size_t al, size_t n)
{
	note_alloc();
	return __libc_memalign(al, n);
}

int posix_memalign(void **out, size_t al, size_t n)
{
	note_alloc();
	*out = __libc_memalign(al, n);
	return *out ? 0 : ENOMEM;
}

void free(void *p)
{
	__libc_free(p);
}
#endif

#define NCTR 5 /* syscalls, faults, minor, major, context switches */

struct counters {
	int fd[NCTR];
};

static long tracepoint_id(const char *event)
{
	char path[256];
	long id = -1;
	FILE *f;

	if (access("/sys/kernel/tracing/events", F_OK))
		mount("nodev", "/sys/kernel/tracing", "tracefs", 0, NULL);
	snprintf(path, sizeof(path), "/sys/kernel/tracing/events/%s/id", event);
	f = fopen(path, "r");
	if (!f) {
		snprintf(path, sizeof(path), "/sys/kernel/debug/tracing/events/%s/id", event);
		f = fopen(path, "r");
	}
	if (f) {
		if (fscanf(f, "%ld", &id) != 1)
			id = -1;
		fclose(f);
	}
	return id;
}

static int perf_open(uint32_t type, uint64_t config, pid_t tid)
{
	struct perf_event_attr a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.type = type;
	a.config = config;
	a.disabled = 1;
	return (int)syscall(SYS_perf_event_open, &a, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

static int counters_open(struct counters *c, pid_t tid, char *why, size_t len)
{
	static const uint64_t sw[NCTR] = {
	    0, PERF_COUNT_SW_PAGE_FAULTS, PERF_COUNT_SW_PAGE_FAULTS_MIN,
	    PERF_COUNT_SW_PAGE_FAULTS_MAJ, PERF_COUNT_SW_CONTEXT_SWITCHES};
	long id = tracepoint_id("raw_syscalls/sys_enter");

	if (id < 0) {
		snprintf(why, len, "no raw_syscalls:sys_enter tracepoint id in tracefs: %s",
			 strerror(errno));
		return -1;
	}
	for (int i = 0; i < NCTR; i++) {
		c->fd[i] = i ? perf_open(PERF_TYPE_SOFTWARE, sw[i], tid)
			     : perf_open(PERF_TYPE_TRACEPOINT, (uint64_t)id, tid);
		if (c->fd[i] < 0) {
			snprintf(why, len,
				 "perf_event_open on thread %d: %s (root or "
				 "perf_event_paranoid <= 1 needed)",
				 (int)tid, strerror(errno));
			for (int j = 0; j < i; j++)
				close(c->fd[j]);
			return -1;
		}
	}
	return 0;
}

static void counters_ctl(struct counters *c, unsigned long op)
{
	for (int i = 0; i < NCTR; i++)
		if (ioctl(c->fd[i], op, 0))
			bench_die("perf ioctl: %s", strerror(errno));
}

static void counters_read(struct counters *c, uint64_t out[NCTR])
{
	for (int i = 0; i < NCTR; i++) {
		if (read(c->fd[i], &out[i], sizeof(out[i])) != sizeof(out[i]))
			bench_die("perf read: %s", strerror(errno));
		close(c->fd[i]);
	}
}

struct control {
	_Atomic pid_t tid;
	_Atomic int go;
};

static void *control_main(void *arg)
{
	struct control *c = arg;

	atomic_store(&c->tid, (pid_t)syscall(SYS_gettid));
	while (!atomic_load(&c->go))
		;
	for (int i = 0; i < 1000; i++)
		syscall(SYS_getppid);
	for (int i = 0; i < 100; i++) {
		char *volatile p = malloc(64 + (size_t)i);

		p[0] = 1;
		free(p);
	}
	return NULL;
}

struct hyg {
	struct counters k;
	struct rtioreq_poller_stats s0, s1;
	uint64_t v[NCTR];
	bool open;
};

static void hyg_during(void *arg, struct rtioreq_engine *eng, struct rtioreq_vm *vm,
		       struct rtioreq_poller *poller)
{
	struct hyg *g = arg;
	struct bench_hygiene *o = &bench_res.hyg;
	pid_t tid = rtioreq_poller_tid(poller);

	if (counters_open(&g->k, tid, o->why, sizeof(o->why)))
		return;
	g->open = true;
	rtioreq_poller_stats(poller, &g->s0);
	atomic_store(&watched_allocs, 0);
	atomic_store(&watched_tid, tid);
	counters_ctl(&g->k, PERF_EVENT_IOC_ENABLE);
}

static void hyg_after(void *arg, struct rtioreq_engine *eng, struct rtioreq_vm *vm,
		      struct rtioreq_poller *poller)
{
	struct hyg *g = arg;

	if (!g->open)
		return;
	counters_ctl(&g->k, PERF_EVENT_IOC_DISABLE);
	atomic_store(&watched_tid, 0);
	rtioreq_poller_stats(poller, &g->s1);
	counters_read(&g->k, g->v);
}

void bench_hygiene(void)
{
	struct bench_hygiene *o = &bench_res.hyg;
	struct hyg *g = calloc(1, sizeof(*g));
	struct control ctl = {0};
	struct counters k;
	uint64_t v[NCTR];
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
	o->allocs_counted = COUNT_ALLOCS;
	/* positive control */
	bench_thread_start(&t, -1, 0, "bench-control", control_main, &ctl);
	while (!atomic_load(&ctl.tid))
		sched_yield();
	if (counters_open(&k, atomic_load(&ctl.tid), o->why, sizeof(o->why))) {
		atomic_store(&ctl.go, 1);
		pthread_join(t, NULL);
		printf("# hot-path hygiene: not measured: %s\n", o->why);
		free(g);
		return;
	}
	counters_ctl(&k, PERF_EVENT_IOC_ENABLE);
	atomic_store(&watched_allocs, 0);
	atomic_store(&watched_tid, atomic_load(&ctl.tid));
	atomic_store(&ctl.go, 1);
	pthread_join(t, NULL);
	atomic_store(&watched_tid, 0);
	counters_ctl(&k, PERF_EVENT_IOC_DISABLE);
	counters_read(&k, v);
	o->ctl_syscalls = v[0];
	o->ctl_allocs = atomic_load(&watched_allocs);
	printf("# hot-path hygiene control thread (1000 getppid, 100 malloc): %lu syscalls, "
	       "%lu allocations counted\n",
	       (unsigned long)o->ctl_syscalls, (unsigned long)o->ctl_allocs);
	if (o->ctl_syscalls < 1000 || (COUNT_ALLOCS && o->ctl_allocs < 100))
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
	o->allocs = atomic_load(&watched_allocs);
	{
		double pm = o->requests ? 1e6 / (double)o->requests : 0;

		printf("# poller thread over %lu requests (%lu loops): %lu syscalls, %lu page "
		       "faults (%lu minor, %lu major), %lu context switches, %lu heap "
		       "allocations%s\n",
		       (unsigned long)o->requests, (unsigned long)o->loops,
		       (unsigned long)o->syscalls, (unsigned long)o->faults,
		       (unsigned long)o->faults_min, (unsigned long)o->faults_maj,
		       (unsigned long)o->ctxsw, (unsigned long)o->allocs,
		       COUNT_ALLOCS ? "" : " (not counted under sanitizers)");
		printf("SUMMARY bench=hygiene unit=per_million_requests requests=%lu syscalls=%.2f "
		       "faults=%.2f faults_minor=%.2f faults_major=%.2f ctxsw=%.2f allocs=%.2f\n",
		       (unsigned long)o->requests, (double)o->syscalls * pm, (double)o->faults * pm,
		       (double)o->faults_min * pm, (double)o->faults_maj * pm,
		       (double)o->ctxsw * pm, (double)o->allocs * pm);
	}
	free(r.res);
	free(g);
}
