/* SPDX-License-Identifier: MIT */
/*
 * Counting what one thread does, for the hot-path claims (tests/core/test_hotpath.c and
 * bench/hygiene.c): perf_event_open() counters attached to a thread id only - the
 * raw_syscalls:sys_enter tracepoint (its id read from tracefs, mounted if needed) and
 * the software counters page-faults, minor-faults, major-faults, context-switches -
 * and heap allocations, counted by interposing malloc() & co. for the watched thread.
 *
 * Include in exactly one file of an executable: it defines malloc() and friends (not
 * in sanitizer builds, whose runtimes own malloc: HYG_COUNT_ALLOCS is then 0).
 */
#ifndef RTIOREQ_TESTS_HYGIENE_H
#define RTIOREQ_TESTS_HYGIENE_H

#include <errno.h>
#include <linux/perf_event.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define HYG_COUNT_ALLOCS 0
#else
#define HYG_COUNT_ALLOCS 1
#endif

enum { HYG_SYSCALLS, HYG_FAULTS, HYG_FAULTS_MIN, HYG_FAULTS_MAJ, HYG_CTXSW, HYG_NCTR };

/* The thread whose allocations are counted (0: none) and the count. */
static _Atomic pid_t hyg_watched_tid __attribute__((unused));
static _Atomic uint64_t hyg_watched_allocs __attribute__((unused));

#if HYG_COUNT_ALLOCS
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t a, size_t b);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t al, size_t n);
extern void __libc_free(void *p);

static __thread pid_t hyg_my_tid;

static void hyg_note_alloc(void)
{
	/* relaxed: a filter; the count is read after the watched thread stopped */
	pid_t w = atomic_load_explicit(&hyg_watched_tid, memory_order_relaxed);

	if (!w)
		return;
	if (!hyg_my_tid)
		hyg_my_tid = (pid_t)syscall(SYS_gettid);
	if (hyg_my_tid == w)
		atomic_fetch_add_explicit(&hyg_watched_allocs, 1, memory_order_relaxed);
}

void *malloc(size_t n)
{
	hyg_note_alloc();
	return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
	hyg_note_alloc();
	return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
	hyg_note_alloc();
	return __libc_realloc(p, n);
}

void *aligned_alloc(size_t al, size_t n)
{
	hyg_note_alloc();
	return __libc_memalign(al, n);
}

void *memalign(size_t al, size_t n)
{
	hyg_note_alloc();
	return __libc_memalign(al, n);
}

int posix_memalign(void **out, size_t al, size_t n)
{
	hyg_note_alloc();
	*out = __libc_memalign(al, n);
	return *out ? 0 : ENOMEM;
}

void free(void *p)
{
	__libc_free(p);
}
#endif

struct hyg_counters {
	int fd[HYG_NCTR];
};

static long hyg_tracepoint_id(const char *event)
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

static int hyg_perf_open(uint32_t type, uint64_t config, pid_t tid)
{
	struct perf_event_attr a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.type = type;
	a.config = config;
	a.disabled = 1;
	return (int)syscall(SYS_perf_event_open, &a, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

/* Open the counters of thread @tid, disabled. 0, or -1 with @why filled. */
static int hyg_open(struct hyg_counters *c, pid_t tid, char *why, size_t len)
{
	static const uint64_t sw[HYG_NCTR] = {
		0, PERF_COUNT_SW_PAGE_FAULTS, PERF_COUNT_SW_PAGE_FAULTS_MIN,
		PERF_COUNT_SW_PAGE_FAULTS_MAJ, PERF_COUNT_SW_CONTEXT_SWITCHES
	};
	long id = hyg_tracepoint_id("raw_syscalls/sys_enter");

	if (id < 0) {
		snprintf(why, len, "no raw_syscalls:sys_enter tracepoint id in tracefs: %s",
			 strerror(errno));
		return -1;
	}
	for (int i = 0; i < HYG_NCTR; i++) {
		c->fd[i] = i ? hyg_perf_open(PERF_TYPE_SOFTWARE, sw[i], tid)
			     : hyg_perf_open(PERF_TYPE_TRACEPOINT, (uint64_t)id, tid);
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

/*
 * One tracepoint counter (e.g. "syscalls/sys_enter_write": one syscall only) on thread
 * @tid, enabled at once. Return the fd, or -1 with @why filled.
 */
static inline int hyg_open_tracepoint(const char *event, pid_t tid, char *why, size_t len)
{
	long id = hyg_tracepoint_id(event);
	int fd;

	if (id < 0) {
		snprintf(why, len, "no %s tracepoint id in tracefs", event);
		return -1;
	}
	fd = hyg_perf_open(PERF_TYPE_TRACEPOINT, (uint64_t)id, tid);
	if (fd < 0 || ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)) {
		snprintf(why, len, "perf_event_open(%s) on thread %d: %s", event, (int)tid,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Read and close a counter of hyg_open_tracepoint(). Return the count or UINT64_MAX. */
static inline uint64_t hyg_read_close(int fd)
{
	uint64_t v = UINT64_MAX;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		v = UINT64_MAX;
	close(fd);
	return v;
}

/* PERF_EVENT_IOC_ENABLE / _DISABLE on every counter. 0 or -errno. */
static int hyg_ctl(struct hyg_counters *c, unsigned long op)
{
	for (int i = 0; i < HYG_NCTR; i++)
		if (ioctl(c->fd[i], op, 0))
			return -errno;
	return 0;
}

/* Read and close the counters. 0 or -errno (-EIO: short read). */
static int hyg_read(struct hyg_counters *c, uint64_t out[HYG_NCTR])
{
	int r = 0;

	for (int i = 0; i < HYG_NCTR; i++) {
		if (!r && read(c->fd[i], &out[i], sizeof(out[i])) != sizeof(out[i]))
			r = errno ? -errno : -EIO;
		close(c->fd[i]);
	}
	return r;
}

/* Positive control: a thread making 1000 getppid() and 100 malloc() calls on go. */
struct hyg_control {
	_Atomic pid_t tid;
	_Atomic int go;
};

static inline void *hyg_control_main(void *arg)
{
	struct hyg_control *c = arg;

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

#endif /* RTIOREQ_TESTS_HYGIENE_H */
