// SPDX-License-Identifier: MIT
/*
 * Clients and their ranges: the control plane a device model uses. A client is created
 * on a VM with a handler (run inline on pollers and the dispatcher; with handler_thread,
 * on its own thread on the fallback path) or without one (an embedder's threads take
 * its requests with rtioreq_client_wait()). Every routing change builds a new range
 * table and publishes it (M1); takers see it on their next request. Locks: vm->lock,
 * never held across a grace period, a join or a timeout (only a 1 ms ENOMEM retry), so
 * handlers may update ranges (see engine.c for the order); eng->zlock nests inside it.
 * Lifetimes (references, zombies): engine_pvt.h.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine_pvt.h"
#include "sys/clock_pvt.h"
#include "sys/futex_pvt.h"
#include "sys/hook_pvt.h"
#include "sys/thread_pvt.h"

struct rtioreq_client *rtioreq_client_create(struct rtioreq_vm *vm,
					     const struct rtioreq_client_attr *attr)
{
	struct rtioreq_client *c;
	struct rtioreq__map *m = NULL;
	int r = 0;

	if (!vm || !attr) {
		errno = EINVAL;
		return NULL;
	}
	c = aligned_alloc(RTIOREQ__CACHELINE, sizeof(*c));
	if (!c)
		return NULL;
	memset(c, 0, sizeof(*c));
	c->vm = vm;
	atomic_init(&c->refs, 1); /* the owner's handle */
	rtioreq__mutex_init_pi(&c->flock); /* late completers may be real-time threads */
	c->handler = attr->handler;
	c->priv = attr->priv;
	c->is_default = attr->is_default;
	/* a thread attribute asks for a thread: callers written before handler_thread
	 * (pcdev's attr.thread) keep their handler thread rather than being moved onto
	 * the dispatcher, where a blocking handler would stall every VM's fallback path */
	c->handler_thread = attr->handler && (attr->handler_thread || attr->thread);
	snprintf(c->name, sizeof(c->name), "%s", attr->name ? attr->name : "client");

	pthread_mutex_lock(&vm->lock);
	if (vm->detaching)
		r = -ENODEV;
	else if (c->is_default) /* relaxed: vm->map is written only under vm->lock (M1) */
		r = rtioreq__map_set_default(atomic_load_explicit(&vm->map, memory_order_relaxed),
					     c, &m);
	/* only a handler_thread client is ever assigned a request for its handler: the
	 * others run inline on the dispatcher (rtioreq__serve()) and need no thread */
	if (!r && c->handler_thread) {
		char tname[16];

		snprintf(tname, sizeof(tname), "vm%u-%.8s", (unsigned int)(vm->id % 1000), c->name);
		r = rtioreq__thread_start(&c->thread,
					  attr->thread ? attr->thread : &vm->eng->attr.clients,
					  tname, rtioreq__client_main, c);
		c->has_thread = !r;
	}
	if (r) {
		pthread_mutex_unlock(&vm->lock);
		rtioreq__map_free(m);
		pthread_mutex_destroy(&c->flock);
		free(c);
		errno = -r;
		return NULL;
	}
	if (m)
		rtioreq__map_publish(&vm->map, m);
	rtioreq__vm_get(vm); /* the client's, until it is freed */
	c->next = vm->clients;
	vm->clients = c;
	pthread_mutex_unlock(&vm->lock);
	return c;
}

/* Withdraw @c from routing (under vm->lock held by caller, released on return). */
static void client_withdraw_unlock(struct rtioreq_client *c)
{
	struct rtioreq_vm *vm = c->vm;
	struct rtioreq__map *m;

	/* ENOMEM is retried: the client must leave the map. relaxed: vm->map is written
	 * only under vm->lock (held), by M1 */
	RTIOREQ__RETRY_NOMEM(rtioreq__map_drop_client(
		atomic_load_explicit(&vm->map, memory_order_relaxed), c, &m));
	rtioreq__map_publish(&vm->map, m);
	pthread_mutex_unlock(&vm->lock);
	RTIOREQ__HOOK("client.withdraw.sync", c);
	/* no taker can assign to c after this, and none still runs its handler inline */
	rtioreq__rcu_synchronize();
}

int rtioreq_client_shutdown(struct rtioreq_client *c)
{
	struct rtioreq_vm *vm = c->vm;

	if (rtioreq__rcu_is_reader())
		return -EDEADLK; /* a grace period would wait for this poller */
	pthread_mutex_lock(&vm->lock);
	if (c->shut) {
		pthread_mutex_unlock(&vm->lock);
		return 0;
	}
	c->shut = true;
	client_withdraw_unlock(c);
	/* DYING: waiters drain what is pending, then leave */
	atomic_fetch_or_explicit(&c->pending, RTIOREQ__DYING, memory_order_release);
	rtioreq__futex_wake(&c->pending, INT_MAX, false);
	return 0;
}

static void client_unlink(struct rtioreq_client *c)
{
	for (struct rtioreq_client **pp = &c->vm->clients; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
}

void rtioreq__client_detached(struct rtioreq_client *c)
{
	struct rtioreq_vm *vm = c->vm;
	struct rtioreq_engine *eng = vm->eng;
	bool released;

	pthread_mutex_lock(&vm->lock);
	client_unlink(c);
	c->torn = true;
	released = c->owner_released;
	if (!released) { /* embedder threads may still call it: keep it until let go */
		pthread_mutex_lock(&eng->zlock);
		c->znext = eng->zombies;
		eng->zombies = c;
		pthread_mutex_unlock(&eng->zlock);
	}
	pthread_mutex_unlock(&vm->lock);
	if (released)
		rtioreq__client_put(c); /* the owner's handle, handed over by its destroy */
}

int rtioreq_client_destroy(struct rtioreq_client *c)
{
	struct rtioreq_vm *vm = c->vm;
	struct rtioreq_engine *eng = vm->eng;

	if (rtioreq__tls_client == c || rtioreq__rcu_is_reader())
		return -EDEADLK; /* would join itself / wait for a grace period on a poller */
	pthread_mutex_lock(&vm->lock);
	if (c->owner_released) {
		pthread_mutex_unlock(&vm->lock);
		return -EBUSY;
	}
	c->owner_released = true;
	if (c->destroying) { /* VM detach tears it down (torn: it has) */
		bool torn = c->torn;

		if (torn) {
			pthread_mutex_lock(&eng->zlock);
			for (struct rtioreq_client **pp = &eng->zombies; *pp; pp = &(*pp)->znext)
				if (*pp == c) {
					*pp = c->znext;
					break;
				}
			pthread_mutex_unlock(&eng->zlock);
		}
		pthread_mutex_unlock(&vm->lock);
		if (torn)
			rtioreq__client_put(c); /* else detach puts the owner's handle */
		return 0;
	}
	c->destroying = true;
	c->shut = true; /* withdrawing again after a shutdown is harmless */
	client_withdraw_unlock(c);
	rtioreq__client_teardown(c);
	pthread_mutex_lock(&vm->lock);
	client_unlink(c);
	pthread_mutex_unlock(&vm->lock);
	rtioreq__client_put(c); /* the owner's handle: freed once no thread holds it */
	return 0;
}

const char *rtioreq_client_name(const struct rtioreq_client *c)
{
	return c->name;
}

/* ---------------------------------------------------------------------------------- */
/* Ranges */

int rtioreq_range_add(struct rtioreq_client *c, uint32_t type, uint64_t start, uint64_t end)
{
	struct rtioreq_vm *vm = c->vm;
	struct rtioreq__map *m;
	int r;

	if (c->is_default)
		return -EINVAL;
	pthread_mutex_lock(&vm->lock);
	if (c->shut || vm->detaching)
		r = -ENODEV;
	else /* relaxed: vm->map is written only under vm->lock (held), by M1 */
		r = rtioreq__map_add(atomic_load_explicit(&vm->map, memory_order_relaxed), type,
				     start, end, c, &m, NULL);
	if (!r)
		rtioreq__map_publish(&vm->map, m);
	pthread_mutex_unlock(&vm->lock);
	return r;
}

int rtioreq_range_del(struct rtioreq_client *c, uint32_t type, uint64_t start, uint64_t end)
{
	struct rtioreq_vm *vm = c->vm;
	struct rtioreq__map *m;
	int r;

	pthread_mutex_lock(&vm->lock);
	if (vm->detaching)
		r = -ENODEV;
	else /* relaxed: vm->map is written only under vm->lock (held), by M1 */
		r = rtioreq__map_del(atomic_load_explicit(&vm->map, memory_order_relaxed), type,
				     start, end, c, &m);
	if (!r)
		rtioreq__map_publish(&vm->map, m);
	pthread_mutex_unlock(&vm->lock);
	return r;
}

int rtioreq_range_conflict(struct rtioreq_vm *vm, uint32_t type, uint64_t start, uint64_t end,
			   uint64_t *other_start, uint64_t *other_end, char *owner)
{
	struct rtioreq__range r;
	int found;

	pthread_mutex_lock(&vm->lock);
	/* relaxed: vm->map is written only under vm->lock (held), by M1 */
	found = vm->detaching ? 0
			      : rtioreq__map_conflict(atomic_load_explicit(&vm->map,
								   memory_order_relaxed),
						      type, start, end, &r);
	if (found) {
		if (other_start)
			*other_start = r.start;
		if (other_end)
			*other_end = r.end;
		if (owner)
			snprintf(owner, RTIOREQ_NAME_LEN, "%s", r.client->name);
	}
	pthread_mutex_unlock(&vm->lock);
	return found;
}
