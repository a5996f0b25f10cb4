/* SPDX-License-Identifier: MIT */
/*
 * rtioreq-bench: the latency benchmark suite (issue 3). One process runs every
 * measurement on the same machine, keeps every number in memory and writes the
 * results folder at the end (results.json, report.md, cyclictest-format histograms).
 *
 * Conventions (shared/STYLE.md): human lines on stdout start with '#'; each run
 * prints one machine-readable "SUMMARY ..." line; the unit per operation and the core
 * topology are printed with every run; histograms carry overflow counts.
 *
 * Topology: the engine side (poller, dispatcher, client threads, ACRN-baseline worker
 * and handler threads, the "server" side of ping-pongs) on engine_cpu, the simulated
 * hypervisor (producer) and every "client" side of a ping-pong on producer_cpu.
 * Spinning threads are SCHED_OTHER; only blocking engine-side threads get SCHED_FIFO.
 */
#ifndef RTIOREQ_BENCH_H
#define RTIOREQ_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "rtioreq.h"

#define BENCH_MAX_DISTS	 32
#define BENCH_MAX_SLICES 32
#define BENCH_MAX_SIDES	 6
#define BENCH_MAX_RATIOS 24
#define BENCH_HIST_US	400 /* cyclictest -h 400: 1-us buckets 0..399, then overflow */
#define BENCH_CACHELINE 64

/*
 * Noise gauge: CPU time used by other processes while a run lasted (/proc/stat busy
 * time minus this process's /proc/self/stat utime+stime), in % of all online CPUs.
 */
struct bench_noise {
	uint64_t busy, own; /* clock ticks */
	uint64_t t_ns;
};

/* One latency distribution: what every round-trip benchmark produces. */
struct bench_dist {
	char name[40];	/* file-name safe key, e.g. "poll-1vcpu" */
	char label[96]; /* for humans: table rows and the plot legend */
	char unit[48];	/* e.g. "ns per round trip" */
	struct rtioreq_hist h;
	uint64_t ops;		  /* operations measured (= h.count) */
	uint64_t ns;		  /* wall time of the measured part */
	bool dma_held;		  /* /dev/cpu_dma_latency held at 0 during the run */
	bool plot;		  /* part of latency.png */
	struct bench_noise noise; /* started by bench_dist_new() */
	double foreign_pct;	  /* set by bench_dist_print() */
};

struct bench_pct {
	uint64_t min, p50, p90, p99, p999, p9999, max;
	double mean;
};

struct bench_lookup_row {
	unsigned int ranges, acrn_clients;
	double rtioreq_ns, acrn_ns; /* median of the repeats, ns per lookup */
	double rtioreq_min_ns, acrn_min_ns;
	/* rtioreq with the scalar tree descent forced (what a CPU without AVX2 runs; the
	 * same as rtioreq_ns below 256 ranges, which bisect); avx2: the map's choice */
	double scalar_ns;
	int avx2; /* rtioreq_ns descended the tree with AVX2 */
	uint64_t lookups_rtioreq, lookups_scalar, lookups_acrn, wrong;
	double foreign_pct;
};

/*
 * A ratio measured interleaved (interleave.c): both sides ran in alternating slices of
 * one phase; per slice the statistic (p50 or p99.9) of each side and their quotient;
 * reported as the median of the per-slice quotients with their spread.
 */
struct bench_ratio {
	char key[64], what[160], a[40], b[40];
	const char *stat; /* "p50" or "p99.9" */
	unsigned int n;	  /* slices that measured both sides */
	double v[BENCH_MAX_SLICES];
	double median, min, max;
	double a_ns, b_ns; /* median over the slices of each side's statistic */
	double goal;	   /* the bound: median <= goal; 0: none */
	/*
	 * p99.9 ratios only. spikes_*: round trips of bench_spike_ns() or more per second
	 * of each side (median over the slices): what interrupts of the host and of the
	 * guest kernel add to the round trips they hit. knee: in most slices
	 * some side's p99.9 was >= BENCH_KNEE x its p99, i.e. the p99.9 fell among those
	 * spikes; the ratio then depends on each side's request rate against the spike
	 * rate, not on the engine.
	 */
	double a_spikes_per_s, b_spikes_per_s;
	bool knee;
};
#define BENCH_SPIKE_NS 10000u /* a spike: at least this, */
#define BENCH_SPIKE_X  10u    /* and at least this many times the side's p50 */
#define BENCH_KNEE     4.0
/* ns per step of a dependent 64-bit multiply-add chain (imul + add: ~4 cycles on
 * current x86), the median of 5 timings of 2^22 steps on the calling thread. */
double bench_cpu_step_ns(void);
/* The spike threshold of a side whose p50 is @p50 ns. */
uint64_t bench_spike_ns(double p50);

/* Idle-slot scan cost: passes of one spinning poller over slots nobody drives. */
struct bench_scan_row {
	unsigned int vms, slots;
	double ns_per_pass; /* median of the slices */
	double ns_per_slot; /* ns_per_pass / slots */
};

struct bench_updates {
	uint64_t changes, change_errors;
	double rate_per_s; /* achieved changes/s */
	double target_per_s;
	unsigned int batch, table_ranges;
	struct rtioreq_hist change_ns; /* per change (add or del), ns */
	double busy_ns_per_batch;      /* mean, also the placebo's spin time */
	uint64_t placebo_batches;
};

struct bench_cyclic {
	char name[32], label[96];
	bool ok;
	uint64_t cycles, overflows;
	uint64_t min_us, max_us;
	double avg_us;
	long p99_us;		  /* -1: in the overflow region */
	uint64_t engine_requests; /* requests the engine served meanwhile */
	double foreign_pct;
};

struct bench_hygiene {
	bool ok;
	char why[160];
	uint64_t requests, loops;
	uint64_t syscalls, faults, faults_min, faults_maj, ctxsw, allocs;
	bool allocs_counted;
	/* positive control: a thread doing 1000 getppid() + 100 malloc() */
	uint64_t ctl_syscalls, ctl_allocs;
};

struct bench_cfg {
	const char *out;
	bool quick;
	int engine_cpu, producer_cpu;
	int prio;	    /* SCHED_FIFO priority, blocking engine-side threads; 0: SCHED_OTHER */
	uint64_t run_ns;    /* one latency run */
	uint64_t short_ns;  /* ping-pongs */
	uint64_t warm_ns;   /* warm-up before each measured run */
	uint64_t slice_ns;  /* one side's share of one slice of an interleaved phase */
	uint64_t slice_warm_ns; /* warm-up before each slice of each side */
	unsigned int slices;	/* slices per interleaved phase */
	unsigned int cyc_s; /* cyclictest -D */
	uint64_t hyg_requests;
	double lookup_ms;   /* per lookup measurement repeat */
	double update_rate; /* changes/s */
	unsigned int update_batch;
	unsigned int unmapped; /* workload: % of requests to the unclaimed port */
	unsigned int wait_quiet_s;
	bool fallback_thread; /* example devices' clients: handler_thread (--fallback-thread) */
	const char *only; /* comma list of phases, NULL: all */
};

struct bench_results {
	char cpu_model[128], kernel[160], host[80], date[32];
	long nproc;
	uint64_t clock_ns_p50, clock_ns_p99; /* cost of one clock_gettime pair, ns */
	struct bench_dist dist[BENCH_MAX_DISTS];
	unsigned int ndist;
	struct bench_lookup_row lookup[8];
	unsigned int nlookup;
	/* ns per step of a dependent multiply-add chain on the engine CPU, before and after
	 * the lookup phase: the lookups are compute-bound, and the host sometimes slows a
	 * vCPU for minutes; this shows it (bench_cpu_step_ns) */
	double cpu_step_ns[2];
	struct bench_updates upd;
	struct bench_cyclic cyc[4];
	unsigned int ncyc;
	struct bench_hygiene hyg;
	uint64_t thr_poll1, thr_poll16; /* requests/s */
	struct bench_ratio ratio[BENCH_MAX_RATIOS];
	unsigned int nratio;
	struct bench_scan_row scan[4];
	unsigned int nscan;
	double scan_ns_per_idle_slot; /* slope between the smallest and largest slot set */
	double runtime_s;
	double foreign_pct; /* over the whole run */
};

extern struct bench_cfg bench_cfg;
extern struct bench_results bench_res;

/* util.c */
uint64_t bench_now_ns(void);
void bench_sleep_ns(uint64_t ns);
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void bench_pin_self(int cpu);
/*
 * Zeroed, cache-line aligned and padded: for objects one CPU writes on the hot path
 * (the device state written by handlers, the workload's shadow written by the
 * hypervisor thread), so that heap neighbours never share a line with them; otherwise
 * the figures depend on the heap layout of each run (false sharing).
 */
void *bench_zalloc_line(size_t n);
/* Start a thread pinned to @cpu (-1: unpinned), SCHED_FIFO @prio if > 0, set before it runs. */
void bench_thread_start(pthread_t *t, int cpu, int prio, const char *name, void *(*fn)(void *),
			void *arg);
/* Hold /dev/cpu_dma_latency at 0: the fd, or dies. bench_dma_release() closes it. */
int bench_dma_hold(void);
void bench_dma_release(int fd);
struct bench_dist *bench_dist_new(const char *name, const char *label, const char *unit);
void bench_pct(const struct rtioreq_hist *h, struct bench_pct *p);
/* Print the '#' lines and the SUMMARY line of a distribution. */
void bench_dist_print(struct bench_dist *d, const char *extra);
/* Values >= @ns recorded in @h (bucket granularity). */
uint64_t bench_hist_count_ge(const struct rtioreq_hist *h, uint64_t ns);
void bench_topology(const char *what);
void bench_noise_start(struct bench_noise *n);
double bench_noise_foreign_pct(const struct bench_noise *n);
bool bench_phase(const char *name);

/* pingpong.c */
void bench_clock_overhead(void);
/* @again: the end-of-run repetition that shows whether the host moved our vCPUs */
void bench_cacheline(bool again);
void bench_cacheline_topology(void);
/* bench_slice_fn (interleave.c) of the cache-line / futex ping-pong; @arg unused */
uint64_t bench_cacheline_slice(void *arg, uint64_t ns, struct rtioreq_hist *h);
uint64_t bench_futex_slice(void *arg, uint64_t ns, struct rtioreq_hist *h);
/* the futex ping-pong with both threads on the engine CPU: one CPU, no cross-CPU wake */
uint64_t bench_futex_local_slice(void *arg, uint64_t ns, struct rtioreq_hist *h);

/* interleave.c */
/*
 * One side of an interleaved comparison. @slice measures for @ns after a warm-up of
 * its own (bench_cfg.slice_warm_ns) and records every round trip into @h (empty); it
 * returns the wall time of the measured part, ns.
 */
typedef uint64_t (*bench_slice_fn)(void *arg, uint64_t ns, struct rtioreq_hist *h);
struct bench_side {
	struct bench_dist *d; /* every slice merged: tables, .hist files, latency.png */
	bench_slice_fn slice;
	void *arg;
	/* after the phase: the extra key=value fields of d's SUMMARY line; may be NULL */
	void (*extra)(void *arg, char *buf, size_t n);
};
/* A ratio of side @a over side @b: p50, or p99.9 if @tail; @goal: bound, 0 none. */
struct bench_ratio_spec {
	const char *key, *what;
	unsigned int a, b;
	bool tail;
	double goal;
};
/*
 * Run @nside sides in bench_cfg.slices alternating slices (order reversed every other
 * slice), each side bench_cfg.slice_ns per slice, /dev/cpu_dma_latency held at 0 for
 * the whole phase if @dma; merge each side's slices into its dist, print them, then
 * compute, print and keep (bench_res.ratio) each of the @nr ratios.
 */
void bench_interleave(struct bench_side *s, unsigned int nside, const struct bench_ratio_spec *r,
		      unsigned int nr, bool dma);
/* Which of @n sides runs @j-th in slice @slice: A B C, C B A, A B C, ... */
unsigned int bench_slice_order(unsigned int slice, unsigned int j, unsigned int n);
/* Median of @n values; sorts @v ascending (v[0] is then the minimum). */
double bench_median(double *v, unsigned int n);
/* "SUMMARY ratio=..." of @r (also used by report.c at the end of the run) */
void bench_ratio_print(const struct bench_ratio *r);

/* engine_runs.c */
struct bench_run {
	bool polling;
	unsigned int vcpus;
	int producer_cpu, poller_cpu;
	uint64_t duration_ns;
	uint64_t requests; /* instead of duration (hygiene) */
	uint64_t spin_ns;  /* poller hybrid idle: spin time; 0: spin forever */
	uint64_t warm_ns;  /* warm-up run; 0: bench_cfg.warm_ns */
	unsigned int sim_vcpus; /* slots the hypervisor drives (the first ones); 0: vcpus */
	unsigned int idle_vms;	/* more VMs of idle_vcpus slots each, attached, never driven;
				 * their slots go to the poller too if polling */
	unsigned int idle_vcpus;
	bool idle; /* no hypervisor thread at all: during() runs with every slot idle */
	uint64_t think_ns; /* vCPU pause after every request (uniform 0..2x); 0: none */
	bool quiet;
	bool handler_thread; /* example devices' clients keep their thread (3 wake-ups) */
	/* called once the measured run started (main thread); may be NULL */
	void (*during)(void *arg, struct rtioreq_engine *eng, struct rtioreq_vm *vm,
		       struct rtioreq_poller *poller);
	/* called after the measured run ended (main thread); may be NULL */
	void (*after)(void *arg, struct rtioreq_engine *eng, struct rtioreq_vm *vm,
		      struct rtioreq_poller *poller);
	void *arg;
	/* called before the VM starts (extra clients, ranges); may be NULL */
	int (*setup)(void *arg, struct rtioreq_vm *vm);
	/* results */
	struct rtioreq_sim_result *res;
	struct rtioreq_vm_stats st;
	struct rtioreq_poller_stats ps;
};
void bench_engine_run(struct bench_run *r);
/* The template of an interleaved side: each slice runs a copy of r for the slice. */
struct bench_engine_side {
	struct bench_run r;
	/* sums over the slices */
	uint64_t requests, upcalls, sleeps, polled, fallback, notified;
};
uint64_t bench_engine_slice(void *arg, uint64_t ns, struct rtioreq_hist *h);
/* @s: a side running a copy of @r (CPUs from bench_cfg) per slice, into a new dist */
void bench_engine_side(struct bench_side *s, struct bench_engine_side *es,
		       const struct bench_run *r, const char *name, const char *label);
void bench_polling(void);
/* fallback vs raw futex, ACRN-style (if @acrn) and hybrid idle (if @hybrid), interleaved */
void bench_wakeups(bool dma, bool acrn, bool hybrid);
void bench_updates(void);

/* scale.c: 1, 16, 64 VMs of 16 vCPUs */
void bench_scale(void);

/* acrn.c: the baseline of ACRN's HSM dispatch (see the file's header) */
/* bench_slice_fn of the ACRN-style dispatch in notify mode; @arg unused */
uint64_t bench_acrn_slice(void *arg, uint64_t ns, struct rtioreq_hist *h);
void bench_acrn_topology(bool completion_polling);
/* ACRN-style with completion polling, one run of bench_cfg.run_ns */
void bench_acrn_cpoll(void);
void bench_lookup(void);

/* hygiene.c */
void bench_hygiene(void);

/* cyclic.c */
void bench_cyclictest(void);
/* Write @d as cyclictest -h text and as cyclictest --json, into the results folder. */
void bench_write_cyclictest_files(const struct bench_dist *d);

/* report.c */
void bench_machine_info(void);
void bench_write_results(void);

#endif /* RTIOREQ_BENCH_H */
