/* SPDX-License-Identifier: MIT */
/*
 * Test-only seams. A race that needs one interleaving gets a named hook point in the
 * code (RTIOREQ__HOOK("poll.sleep.after_set", p)); a test sets rtioreq__test_hook to a
 * function that blocks, delays or records at that name, and so forces the interleaving
 * every time. Hook points exist only in the library built for the tests
 * (rtioreq_testing, -DRTIOREQ_TEST_HOOKS); in the real library they compile to nothing,
 * so the hot path stays as measured.
 */
#ifndef RTIOREQ_HOOK_PVT_H
#define RTIOREQ_HOOK_PVT_H

#ifdef RTIOREQ_TEST_HOOKS
#include <stdatomic.h>

typedef void (*rtioreq__hook_fn)(const char *where, void *arg);
/* Set by a test before the threads it steers start (or with any later store: relaxed
 * loads below, the hook orders what it needs itself). NULL: no hook. */
extern _Atomic(rtioreq__hook_fn) rtioreq__test_hook;

#define RTIOREQ__HOOK(where, arg)                                                       \
	do {                                                                            \
		rtioreq__hook_fn rtioreq__h_ =                                          \
			atomic_load_explicit(&rtioreq__test_hook, memory_order_relaxed); \
		if (rtioreq__h_)                                                        \
			rtioreq__h_((where), (arg));                                    \
	} while (0)
#else
#define RTIOREQ__HOOK(where, arg) ((void)(arg))
#endif

#endif /* RTIOREQ_HOOK_PVT_H */
