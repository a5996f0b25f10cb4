/* SPDX-License-Identifier: MIT */
/* Time: the monotonic clock in ns (vDSO, no syscall) and short control-plane sleeps. */
#ifndef RTIOREQ_CLOCK_PVT_H
#define RTIOREQ_CLOCK_PVT_H

#include <errno.h>
#include <stdint.h>
#include <time.h>

static inline uint64_t rtioreq__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no syscall */
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sleep @ms milliseconds (control plane only: never on a taker). */
static inline void rtioreq__sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/*
 * Run @call (an expression giving 0 or -errno) until it does not fail with -ENOMEM,
 * sleeping 1 ms between tries: for the control-plane steps that must not fail (an
 * object has to leave a published set before it is freed or changes owner).
 * Evaluates to the final result.
 */
#define RTIOREQ__RETRY_NOMEM(call)                       \
	({                                               \
		int rtioreq__r_;                         \
		while ((rtioreq__r_ = (call)) == -ENOMEM) \
			rtioreq__sleep_ms(1);            \
		rtioreq__r_;                             \
	})

#endif /* RTIOREQ_CLOCK_PVT_H */
