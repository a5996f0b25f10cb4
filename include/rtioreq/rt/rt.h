/* SPDX-License-Identifier: MIT */
/**
 * @file rt.h
 * Applying a real-time profile to this machine: cpusets, memory locking and
 * /dev/cpu_dma_latency. Scheduling policy and affinity are thread attributes
 * (struct rtioreq_thread_attr), set before each engine thread starts.
 *
 * Cpuset backends, tried in this order:
 *  - LIBCPUSET: the classic cpuset filesystem (files without the "cpuset." prefix,
 *    e.g. mounted at /dev/cpuset), through libcpuset;
 *  - CGROUP1: a cgroup v1 cpuset hierarchy with "cpuset."-prefixed files
 *    (/sys/fs/cgroup/cpuset on this development box), written directly;
 *  - none: affinity only (cgroup v2 cannot hold single threads of a process outside
 *    a threaded subtree, so it is reported, not half-applied).
 * Control-plane code: may block, never called from a poller.
 */
#ifndef RTIOREQ_RT_H
#define RTIOREQ_RT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "rtioreq/common.h"

RTIOREQ_BEGIN_DECLS

/** How cpusets are made here (rtioreq_rt_cpuset_backend()). */
enum rtioreq_rt_backend {
	RTIOREQ_RT_CPUSET_NONE,
	RTIOREQ_RT_CPUSET_LIBCPUSET,
	RTIOREQ_RT_CPUSET_CGROUP1,
};

/** Where to look for cpuset hierarchies; NULL fields take the defaults. */
struct rtioreq_rt_roots {
	const char *classic; /**< default "/dev/cpuset" */
	const char *cgroup1; /**< default "/sys/fs/cgroup/cpuset" */
	const char *cgroup2; /**< default "/sys/fs/cgroup" (detected only, to explain) */
	const char *reserved[2]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/**
 * rtioreq_rt_cpuset_backend() - the backend usable here. When NONE, \p why (if not NULL)
 * gets one sentence (no final period) saying what was found at each root and why it
 * cannot be used; otherwise \p why is set to "". A root counts only if the kernel says it
 * is a cgroup v1 filesystem (statfs), so look-alike directories are refused; LIBCPUSET
 * also needs the classic root to be /dev/cpuset itself, the only place libcpuset looks.
 */
enum rtioreq_rt_backend rtioreq_rt_cpuset_backend(const struct rtioreq_rt_roots *roots,
						  char *why, size_t why_len);
/** Short name of a backend: "none", "libcpuset", "cgroup1". */
const char *rtioreq_rt_backend_name(enum rtioreq_rt_backend b);

/** A cpuset created by rtioreq_rt_cpuset_create() (caller-allocated). */
struct rtioreq_rt_cpuset {
	enum rtioreq_rt_backend backend; /**< how it was made */
	char path[256];	 /**< directory of the created cpuset (full path) */
	char rel[128];	 /**< path relative to the hierarchy root (libcpuset) */
	char parent[256]; /**< hierarchy root: tasks go back there before removal */
	bool exclusive;	 /**< cpu_exclusive could be set */
	uint64_t reserved[4]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/**
 * rtioreq_rt_cpuset_create() - create cpuset \p name (a single path component, e.g.
 * "rtioreq-1234-cpu1") holding CPU \p cpu and the parent's memory nodes, try to make it
 * exclusive and without load balancing. Return 0, or -errno with \p why filled:
 * -ENODEV (no backend), -EPERM/-EACCES (not permitted), -EINVAL (CPU not in the root
 * cpuset), -EBUSY (an exclusive sibling cpuset holds the CPU), -EEXIST (left in place:
 * it is not ours). Nothing is left behind on error. \p cs->exclusive says whether
 * cpu_exclusive could be set; sched_load_balance=0 is attempted and not reported.
 */
int rtioreq_rt_cpuset_create(struct rtioreq_rt_cpuset *cs, const struct rtioreq_rt_roots *roots,
			     const char *name, int cpu, char *why, size_t why_len);
/**
 * Move thread \p tid (0: the calling thread) into the cpuset; the kernel sets its allowed
 * CPUs to the cpuset's. Threads it creates afterwards start in the cpuset too.
 * Return 0 or -errno (-EINVAL if \p cs is not created, -ESRCH if \p tid does not exist).
 */
int rtioreq_rt_cpuset_attach(struct rtioreq_rt_cpuset *cs, pid_t tid);
/**
 * rtioreq_rt_cpuset_remove() - move every task left in it back to the root, remove
 * the cpuset. Safe from a signal-handling thread while the tasks still run (no
 * allocation), not concurrently with create/attach on the same \p cs. Idempotent (0 when
 * \p cs->path is empty; it is emptied on success). The kernel gives a task moved back the
 * root's CPUs: a still-running thread loses its own affinity. Retries while the kernel
 * says EBUSY (about one second), then returns -EBUSY. Return 0 or -errno.
 */
int rtioreq_rt_cpuset_remove(struct rtioreq_rt_cpuset *cs);

/**
 * rtioreq_rt_dma_latency_hold() - write 0 to /dev/cpu_dma_latency (or \p path) and keep
 * it open: the CPUs stay out of deep C-states while the descriptor lives. Return the
 * fd (>= 0) or -errno. rtioreq_rt_dma_latency_release(fd) closes it.
 */
int rtioreq_rt_dma_latency_hold(const char *path);
/** Close a descriptor of rtioreq_rt_dma_latency_hold(): deep C-states are allowed again. */
void rtioreq_rt_dma_latency_release(int fd);

/**
 * rtioreq_rt_lock_memory() - mlockall(MCL_CURRENT | MCL_FUTURE): current and future
 * mappings (thread stacks, slot pages) are faulted in and stay resident. Return 0 or
 * -errno.
 */
int rtioreq_rt_lock_memory(void);

/**
 * rtioreq_rt_prefault() - write-touch every page of \p len bytes at \p p (which must be
 * writable) so no page fault hits a poller. Contents are unchanged, also when other
 * threads or processes write the memory meanwhile (same-value CAS per page).
 */
void rtioreq_rt_prefault(void *p, size_t len);

/**
 * rtioreq_rt_permitted() - whether SCHED_FIFO/RR at \p priority can be used by this
 * process (root, CAP_SYS_NICE or RLIMIT_RTPRIO); false with \p why filled otherwise.
 * Root means CAP_SYS_NICE in CapEff when /proc/self/status says so (root without it is
 * refused), else euid 0. Also false when \p priority is outside 1..99, or when the
 * calling thread's cgroup v1 cpu group has cpu.rt_runtime_us = 0 (RT_GROUP_SCHED
 * refuses real-time policies there, even to root).
 */
bool rtioreq_rt_permitted(int priority, char *why, size_t why_len);

/**
 * rtioreq_rt_cpuset_sweep() - remove cpusets named "<\p prefix>-&lt;pid&gt;-..." (NULL prefix:
 * "rtioreq", the names rtioreq_profile_apply() gives) whose owner process &lt;pid&gt; no
 * longer exists: left behind by a run that was killed (SIGKILL, a crash). Without this a
 * later run finds the CPU held by an exclusive sibling and runs without isolation.
 * Cpusets of live processes are never touched. \p report (if not NULL) gets one sentence
 * per cpuset removed or failing. Return the number removed (>= 0), or -errno.
 */
int rtioreq_rt_cpuset_sweep(const struct rtioreq_rt_roots *roots, const char *prefix,
			    char *report, size_t report_len);

/**
 * Real-time throttling: the kernel lets SCHED_FIFO/RR threads use \p runtime_us of every
 * \p period_us per CPU, then stops them for the rest of the period (-1: no limit). A
 * spinning real-time poller uses its whole budget, so with the default 950000 of
 * 1000000 it stops for 50 ms every second.
 */
struct rtioreq_rt_throttle {
	long long runtime_us; /**< /proc/sys/kernel/sched_rt_runtime_us; -1: unlimited */
	long long period_us;  /**< /proc/sys/kernel/sched_rt_period_us */
	uint64_t reserved[2]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/** Read both settings from \p dir (NULL: /proc/sys/kernel). Return 0 or -errno. */
int rtioreq_rt_throttle_get(const char *dir, struct rtioreq_rt_throttle *t);
/** Whether \p t stops real-time threads at all (runtime limited and below the period). */
bool rtioreq_rt_throttle_active(const struct rtioreq_rt_throttle *t);
/**
 * Write \p runtime_us (-1: unlimited) to \p dir/sched_rt_runtime_us (NULL: /proc/sys/kernel).
 * Needs root. Async-signal-safe. Return 0 or -errno.
 */
int rtioreq_rt_throttle_set(const char *dir, long long runtime_us);

RTIOREQ_END_DECLS

#endif /* RTIOREQ_RT_H */
