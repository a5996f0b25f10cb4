// SPDX-License-Identifier: MIT
/*
 * Clients and their ranges: the control plane a device model uses. A client is created
 * on a VM with a handler (run inline on pollers, on its own thread on the fallback path)
 * or without one (an embedder's threads take its requests with rtioreq_client_wait()).
 * Every routing change builds a new range table and publishes it (M1); takers see it on
 * their next request. Locks: vm->lock only (see engine.c for the order).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine_pvt.h"
#include "sys/clock_pvt.h"
#include "sys/futex_pvt.h"
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
	c->handler = attr->handler;
	c->priv = attr->priv;
	c->is_default = attr->is_default;
	snprintf(c->name, sizeof(c->name), "%s", attr->name ? attr->name : "client");

	pthread_mutex_lock(&vm->lock);
	if (vm->detaching)
		r = -ENODEV;
	else if (c->is_default)
		r = rtioreq__map_set_default(atomic_load_explicit(&vm->map, memory_order_relaxed),
					     c, &m);
	if (!r && c->handler) {
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
		free(c);
		errno = -r;
		return NULL;
	}
	if (m)
		rtioreq__map_publish(&vm->map, m);
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

	/* ENOMEM is retried: the client must leave the map */
	RTIOREQ__RETRY_NOMEM(rtioreq__map_drop_client(
		atomic_load_explicit(&vm->map, memory_order_relaxed), c, &m));
	rtioreq__map_publish(&vm->map, m);
	pthread_mutex_unlock(&vm->lock);
	rtioreq__rcu_synchronize(); /* no taker can assign to c after this */
	/* DYING: waiters drain what is pending, then leave */
	atomic_fetch_or_explicit(&c->pending, RTIOREQ__DYING, memory_order_release);
	rtioreq__futex_wake(&c->pending, INT_MAX, false);
}

int rtioreq_client_shutdown(struct rtioreq_client *c)
{
	struct rtioreq_vm *vm = c->vm;

	pthread_mutex_lock(&vm->lock);
	if (c->shut) {
		pthread_mutex_unlock(&vm->lock);
		return 0;
	}
	c->shut = true;
	client_withdraw_unlock(c);
	return 0;
}

/* Destroy @c, claimed (destroying) by the caller; vm->lock not held. */
int rtioreq__client_destroy_claimed(struct rtioreq_client *c)
{
	struct rtioreq_vm *vm = c->vm;
	pthread_mutex_lock(&vm->lock);
	c->shut = true; /* withdrawing again after a shutdown is harmless */
	client_withdraw_unlock(c);
	if (c->has_thread) {
		pthread_join(c->thread, NULL); /* drains its pending requests first */
	} else {
		for (unsigned int t = 0; t < RTIOREQ_CLEAR_TIMEOUT_MS; t++) {
			/* acquire: pairs with F1, a finished request's completion is visible */
			if (!(atomic_load_explicit(&c->pending, memory_order_acquire) &
			      RTIOREQ__VCPU_MASK) &&
			    !atomic_load_explicit(&c->inflight, memory_order_acquire))
				break;
			rtioreq__sleep_ms(1);
		}
		rtioreq__client_force(c);
		while (atomic_load_explicit(&c->users, memory_order_acquire))
			rtioreq__sleep_ms(1); /* waiters were woken by DYING and are leaving */
	}
	pthread_mutex_lock(&vm->lock);
	for (struct rtioreq_client **pp = &vm->clients; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	pthread_mutex_unlock(&vm->lock);
	free(c);
	return 0;
}

int rtioreq_client_destroy(struct rtioreq_client *c)
{
	struct rtioreq_vm *vm = c->vm;
	bool busy;

	pthread_mutex_lock(&vm->lock);
	busy = c->destroying;
	c->destroying = true;
	pthread_mutex_unlock(&vm->lock);
	if (busy)
		return -EBUSY; /* VM detach got there first and frees it */
	return rtioreq__client_destroy_claimed(c);
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
	if (c->shut)
		r = -ENODEV;
	else
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
	r = rtioreq__map_del(atomic_load_explicit(&vm->map, memory_order_relaxed), type, start,
			     end, c, &m);
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
	found = rtioreq__map_conflict(atomic_load_explicit(&vm->map, memory_order_relaxed), type,
				      start, end, &r);
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
