// SPDX-License-Identifier: MIT
/* rtioreq-bench helpers: clocks, pinned threads, /dev/cpu_dma_latency, distributions. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "sys/thread_pvt.h"

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no syscall; same clock as sim.c */
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_sleep_ns(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

void bench_die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "rtioreq-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void bench_pin_self(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		bench_die("sched_setaffinity(CPU %d): %s", cpu, strerror(errno));
}

void bench_thread_start(pthread_t *t, int cpu, int prio, const char *name, void *(*fn)(void *),
			void *arg)
{
	/* the engine's own: affinity and policy in the attr before the thread starts */
	const struct rtioreq_thread_attr a = {.cpu = cpu,
					      .policy = prio > 0 ? SCHED_FIFO : SCHED_OTHER,
					      .priority = prio > 0 ? prio : 0,
					      .name = name};
	int r = rtioreq__thread_start(t, &a, name, fn, arg);

	if (r)
		bench_die("starting thread %s (CPU %d, %s %d): %s", name, cpu,
			  prio > 0 ? "SCHED_FIFO" : "SCHED_OTHER", prio, strerror(-r));
}

void *bench_zalloc_line(size_t n)
{
	size_t sz = (n + BENCH_CACHELINE - 1) / BENCH_CACHELINE * BENCH_CACHELINE;
	void *p = aligned_alloc(BENCH_CACHELINE, sz);

	if (!p)
		bench_die("out of memory");
	memset(p, 0, sz);
	return p;
}

int bench_dma_hold(void)
{
	int32_t zero = 0;
	int fd = open("/dev/cpu_dma_latency", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		bench_die("open /dev/cpu_dma_latency: %s (needs root)", strerror(errno));
	if (write(fd, &zero, sizeof(zero)) != sizeof(zero))
		bench_die("write /dev/cpu_dma_latency: %s", strerror(errno));
	return fd;
}

void bench_dma_release(int fd)
{
	if (fd >= 0)
		close(fd);
}

static void noise_read(struct bench_noise *n)
{
	unsigned long long v[10] = {0}, ut = 0, st = 0;
	char buf[1024], *p;
	FILE *f = fopen("/proc/stat", "r");

	n->busy = n->own = 0;
	n->t_ns = bench_now_ns();
	if (f) {
		if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
			   &v[3], &v[4], &v[5], &v[6], &v[7]) == 8)
			n->busy =
			    v[0] + v[1] + v[2] + v[5] + v[6] + v[7]; /* all but idle, iowait */
		fclose(f);
	}
	f = fopen("/proc/self/stat", "r");
	if (f) {
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);

		buf[len] = 0;
		p = strrchr(buf, ')'); /* the command name may hold spaces */
		/* fields after ")": state(3) ... utime(14) stime(15) */
		if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
				&st) == 2)
			n->own = ut + st;
		fclose(f);
	}
}

void bench_noise_start(struct bench_noise *n)
{
	noise_read(n);
}

double bench_noise_foreign_pct(const struct bench_noise *n)
{
	struct bench_noise e;
	double ticks, secs;
	long hz = sysconf(_SC_CLK_TCK);

	noise_read(&e);
	secs = (double)(e.t_ns - n->t_ns) / 1e9;
	ticks = (double)(e.busy - n->busy) - (double)(e.own - n->own);
	if (secs <= 0 || hz <= 0 || bench_res.nproc <= 0)
		return 0;
	if (ticks < 0)
		ticks = 0;
	return 100.0 * ticks / (double)hz / secs / (double)bench_res.nproc;
}

struct bench_dist *bench_dist_new(const char *name, const char *label, const char *unit)
{
	struct bench_dist *d;

	if (bench_res.ndist >= BENCH_MAX_DISTS)
		bench_die("too many distributions");
	d = &bench_res.dist[bench_res.ndist++];
	memset(d, 0, sizeof(*d));
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(d->label, sizeof(d->label), "%s", label);
	snprintf(d->unit, sizeof(d->unit), "%s", unit);
	rtioreq_hist_init(&d->h);
	d->plot = true;
	bench_noise_start(&d->noise);
	return d;
}

void bench_pct(const struct rtioreq_hist *h, struct bench_pct *p)
{
	p->min = h->count ? h->min : 0;
	p->p50 = rtioreq_hist_percentile(h, 50);
	p->p90 = rtioreq_hist_percentile(h, 90);
	p->p99 = rtioreq_hist_percentile(h, 99);
	p->p999 = rtioreq_hist_percentile(h, 99.9);
	p->p9999 = rtioreq_hist_percentile(h, 99.99);
	p->max = h->max;
	p->mean = rtioreq_hist_mean(h);
}

uint64_t bench_hist_count_ge(const struct rtioreq_hist *h, uint64_t ns)
{
	uint64_t n = 0, lo, hi;

	for (unsigned int i = rtioreq_hist_index(ns); i < RTIOREQ_HIST_BUCKETS; i++) {
		rtioreq_hist_bucket_range(i, &lo, &hi);
		if (lo >= ns)
			n += h->bucket[i];
	}
	return n;
}

void bench_dist_print(struct bench_dist *d, const char *extra)
{
	struct bench_pct p;
	double secs = (double)d->ns / 1e9, rate = secs > 0 ? (double)d->h.count / secs : 0.0;
	uint64_t over = bench_hist_count_ge(&d->h, BENCH_HIST_US * 1000ull);

	bench_pct(&d->h, &p);
	d->foreign_pct = bench_noise_foreign_pct(&d->noise);
	printf("# %s: %lu ops in %.2f s (%.0f ops/s), unit: %s%s; other processes used "
	       "%.1f%% of the CPUs meanwhile\n",
	       d->label, (unsigned long)d->h.count, secs, rate, d->unit,
	       d->dma_held ? ", /dev/cpu_dma_latency held at 0" : "", d->foreign_pct);
	printf("#   min %lu  p50 %lu  p90 %lu  p99 %lu  p99.9 %lu  p99.99 %lu  max %lu  "
	       "mean %.0f  (ns)  overflows: %lu >= %u us, %lu >= 2^%u ns\n",
	       (unsigned long)p.min, (unsigned long)p.p50, (unsigned long)p.p90,
	       (unsigned long)p.p99, (unsigned long)p.p999, (unsigned long)p.p9999,
	       (unsigned long)p.max, p.mean, (unsigned long)over, BENCH_HIST_US,
	       (unsigned long)d->h.overflow, RTIOREQ_HIST_MAX_BITS);
	printf("SUMMARY bench=%s unit=ns count=%lu secs=%.3f ops_per_s=%.0f min=%lu p50=%lu "
	       "p90=%lu p99=%lu p99.9=%lu p99.99=%lu max=%lu mean=%.1f overflow_%uus=%lu "
	       "dma_latency0=%d foreign_cpu_pct=%.1f%s%s\n",
	       d->name, (unsigned long)d->h.count, secs, rate, (unsigned long)p.min,
	       (unsigned long)p.p50, (unsigned long)p.p90, (unsigned long)p.p99,
	       (unsigned long)p.p999, (unsigned long)p.p9999, (unsigned long)p.max, p.mean,
	       BENCH_HIST_US, (unsigned long)over, d->dma_held, d->foreign_pct, extra ? " " : "",
	       extra ? extra : "");
	fflush(stdout);
}

void bench_topology(const char *what)
{
	printf("# topology: %s\n", what);
}

bool bench_phase(const char *name)
{
	const char *s = bench_cfg.only;
	size_t n = strlen(name);

	if (!s)
		return true;
	while (*s) {
		const char *e = strchr(s, ',');
		size_t l = e ? (size_t)(e - s) : strlen(s);

		if (l == n && !strncmp(s, name, n))
			return true;
		if (!e)
			break;
		s = e + 1;
	}
	return false;
}

double bench_cpu_step_ns(void)
{
	const unsigned int steps = 1u << 22;
	double t[5];
	volatile uint64_t sink;

	for (unsigned int r = 0; r < 5; r++) {
		uint64_t x = r + 1, t0 = bench_now_ns();

		for (unsigned int i = 0; i < steps; i++)
			x = x * 0x9e3779b97f4a7c15ull + i; /* each step waits for the last */
		t[r] = (double)(bench_now_ns() - t0) / steps;
		sink = x;
	}
	(void)sink;
	return bench_median(t, 5);
}
