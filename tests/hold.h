/* SPDX-License-Identifier: MIT */
/*
 * Hold one engine thread at one test hook point (engine/sys/hook_pvt.h) until the test
 * releases it: hold_arm("poll.sleep.before_wake", p), make the thread get there,
 * hold_wait(), do what must happen in that window, hold_release(); hold_off() at the
 * end. Holds once per arm; only the thread whose hook argument is @arg.
 */
#ifndef RTIOREQ_TESTS_HOLD_H
#define RTIOREQ_TESTS_HOLD_H

#include <stdatomic.h>
#include <string.h>

#include "harness.h"
#include "sys/hook_pvt.h"

static const char *_Atomic hold_where; /* hook name to hold at; NULL: none */
static void *_Atomic hold_arg;	       /* and only for this argument */
static _Atomic int hold_armed, held, released;

static inline void hold_hook(const char *where, void *arg)
{
	const char *w = atomic_load(&hold_where);
	int one = 1;

	if (!w || strcmp(where, w) || arg != atomic_load(&hold_arg))
		return;
	if (!atomic_compare_exchange_strong(&hold_armed, &one, 0))
		return; /* hold once */
	atomic_store(&held, 1);
	while (!atomic_load(&released))
		h_sleep_ms(1);
}

static inline void hold_arm(const char *where, void *arg)
{
	atomic_store(&held, 0);
	atomic_store(&released, 0);
	atomic_store(&hold_arg, arg);
	atomic_store(&hold_where, where);
	atomic_store(&hold_armed, 1);
	atomic_store(&rtioreq__test_hook, hold_hook);
}

/* Wait until the armed thread is held (fails the test after 5 s). */
static inline void hold_wait(void)
{
	for (int i = 0; i < 5000 && !atomic_load(&held); i++)
		h_sleep_ms(1);
	assert_int_equal(atomic_load(&held), 1);
}

static inline void hold_release(void)
{
	atomic_store(&released, 1);
}

static inline void hold_off(void)
{
	atomic_store(&rtioreq__test_hook, NULL);
	atomic_store(&hold_where, NULL);
	hold_release();
}

#endif /* RTIOREQ_TESTS_HOLD_H */
