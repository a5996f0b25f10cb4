/* SPDX-License-Identifier: MIT */
/*
 * Futex wrappers. Channel words live in memory shared with another process, so
 * they use shared futexes (no FUTEX_PRIVATE_FLAG); engine-internal words are private.
 * Never called on the polling path's steady state.
 */
#ifndef RTIOREQ_FUTEX_PVT_H
#define RTIOREQ_FUTEX_PVT_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

/* Sleep while *w == expect, at most @rel (NULL: no limit). Return 0 or -errno. */
static inline int rtioreq__futex_wait(_Atomic uint32_t *w, uint32_t expect,
				      const struct timespec *rel, bool shared)
{
	int op = FUTEX_WAIT | (shared ? 0 : FUTEX_PRIVATE_FLAG);

	if (syscall(SYS_futex, w, op, expect, rel, NULL, 0) == 0)
		return 0;
	return -errno;
}

static inline void rtioreq__futex_wake(_Atomic uint32_t *w, int n, bool shared)
{
	int op = FUTEX_WAKE | (shared ? 0 : FUTEX_PRIVATE_FLAG);

	syscall(SYS_futex, w, op, n, NULL, NULL, 0);
}

/*
 * Ring a channel sequence word: +1 with release, after the stores it announces, then
 * wake every waiter of the shared word. For upcall_seq (U1: the dispatcher and any
 * poller asleep in hybrid idle wait on it) and done_seq[v] (N1).
 */
static inline void rtioreq__chan_ring(_Atomic uint32_t *seq)
{
	atomic_fetch_add_explicit(seq, 1, memory_order_release);
	rtioreq__futex_wake(seq, INT_MAX, true);
}

/*
 * Sleep until one of @n words differs from its expected value or is woken.
 * @abs: CLOCK_MONOTONIC deadline or NULL. Return 0 (woken: index in *woken), or -errno
 * (-EAGAIN: a value already differed; -ETIMEDOUT).
 */
static inline int rtioreq__futex_waitv(struct futex_waitv *v, unsigned int n,
				       const struct timespec *abs)
{
	long r = syscall(SYS_futex_waitv, v, n, 0, abs, CLOCK_MONOTONIC);

	return r >= 0 ? 0 : -errno;
}

/*
 * Whether the kernel has futex_waitv(2) (Linux 5.16+). Probed with an empty vector,
 * which a kernel that has it rejects with EINVAL before looking at anything else;
 * ENOSYS (an older kernel, or a seccomp policy denying syscall 449) means no. Without
 * it every sleeper of the engine (dispatcher, hybrid pollers) would spin instead of
 * sleeping, so rtioreq_engine_create() refuses with ENOSYS.
 */
static inline bool rtioreq__futex_waitv_supported(void)
{
	return syscall(SYS_futex_waitv, NULL, 0, 0, NULL, CLOCK_MONOTONIC) == 0 || errno != ENOSYS;
}

static inline void rtioreq__futex_waitv_set(struct futex_waitv *v, _Atomic uint32_t *w,
					    uint32_t expect, bool shared)
{
	v->val = expect;
	v->uaddr = (uintptr_t)w;
	v->flags = FUTEX_32 | (shared ? 0 : FUTEX_PRIVATE_FLAG);
	v->__reserved = 0;
}

#endif /* RTIOREQ_FUTEX_PVT_H */
