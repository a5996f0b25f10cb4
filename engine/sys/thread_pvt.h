/* SPDX-License-Identifier: MIT */
#ifndef RTIOREQ_THREAD_PVT_H
#define RTIOREQ_THREAD_PVT_H

#include <pthread.h>

#include "rtioreq/core/engine.h"

/*
 * Validate a thread attribute: CPU in this process's allowed set, policy known,
 * priority in range. Return 0 or -EINVAL.
 */
int rtioreq__thread_attr_check(const struct rtioreq_thread_attr *a);

/*
 * Start @fn(@arg) with @a applied before it runs: CPU affinity and scheduling policy
 * are set in the pthread attributes (a SCHED_FIFO thread born on a busy CPU may never
 * get to move itself). @a may be NULL. Return 0 or -errno (EPERM: RT policy refused).
 */
int rtioreq__thread_start(pthread_t *t, const struct rtioreq_thread_attr *a,
			  const char *default_name, void *(*fn)(void *), void *arg);

/*
 * Initialise @m with priority inheritance: a lock that a real-time thread (a handler
 * on a SCHED_FIFO poller) may wait for while a lower-priority thread holds it, lending
 * it its priority. Return 0; or an errno value where PI is not supported, and @m is
 * then a default mutex (usable: the engine's locks go on without PI, the device models
 * treat it as an error).
 */
int rtioreq__mutex_init_pi(pthread_mutex_t *m);

#endif /* RTIOREQ_THREAD_PVT_H */
