// SPDX-License-Identifier: MIT
/* Engine thread creation: affinity and scheduling applied before the thread runs. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "sys/thread_pvt.h"

int rtioreq__thread_attr_check(const struct rtioreq_thread_attr *a)
{
	cpu_set_t allowed;

	if (!a)
		return 0;
	if (a->cpu >= 0) {
		if (a->cpu >= CPU_SETSIZE || sched_getaffinity(0, sizeof(allowed), &allowed))
			return -EINVAL;
		if (!CPU_ISSET(a->cpu, &allowed))
			return -EINVAL;
	} else if (a->cpu != -1) {
		return -EINVAL;
	}
	switch (a->policy) {
	case SCHED_OTHER:
		return a->priority == 0 ? 0 : -EINVAL;
	case SCHED_FIFO:
	case SCHED_RR:
		return a->priority >= 1 && a->priority <= 99 ? 0 : -EINVAL;
	default:
		return -EINVAL;
	}
}

int rtioreq__thread_start(pthread_t *t, const struct rtioreq_thread_attr *a,
			  const char *default_name, void *(*fn)(void *), void *arg)
{
	pthread_attr_t pa;
	char name[16];
	int r;

	r = rtioreq__thread_attr_check(a);
	if (r)
		return r;
	r = pthread_attr_init(&pa);
	if (r)
		return -r;
	if (a && a->cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(a->cpu, &set);
		r = pthread_attr_setaffinity_np(&pa, sizeof(set), &set);
	}
	/* explicit, also for SCHED_OTHER: a thread asked for SCHED_OTHER must not inherit
	 * a real-time policy from the thread creating it */
	if (!r) {
		struct sched_param sp = { .sched_priority = a ? a->priority : 0 };

		r = pthread_attr_setinheritsched(&pa, PTHREAD_EXPLICIT_SCHED);
		if (!r)
			r = pthread_attr_setschedpolicy(&pa, a ? a->policy : SCHED_OTHER);
		if (!r)
			r = pthread_attr_setschedparam(&pa, &sp);
	}
	if (!r)
		r = pthread_create(t, &pa, fn, arg);
	pthread_attr_destroy(&pa);
	if (r)
		return -r;
	snprintf(name, sizeof(name), "%s", a && a->name ? a->name : default_name);
	pthread_setname_np(*t, name);
	return 0;
}

int rtioreq__mutex_init_pi(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;
	int r = pthread_mutexattr_init(&a);

	if (!r) {
		r = pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
		if (!r)
			r = pthread_mutex_init(m, &a);
		pthread_mutexattr_destroy(&a);
	}
	if (r)
		pthread_mutex_init(m, NULL); /* still a usable lock, without PI */
	return r;
}
