/* SPDX-License-Identifier: MIT */
/* Test helpers: a VM on a fresh shared region, and a synchronous hypervisor call. */
#ifndef RTIOREQ_TEST_HARNESS_H
#define RTIOREQ_TEST_HARNESS_H

#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "rtioreq.h"

struct h_vm {
	struct rtioreq_shm shm;
	struct rtioreq_engine *eng;
	struct rtioreq_vm *vm;
};

static inline uint64_t h_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void h_sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* A VM attached as @va says (page and chan: a fresh region of va.vcpu_num slots). */
static inline void h_vm_start_attr(struct h_vm *h, struct rtioreq_vm_attr va)
{
	assert_int_equal(rtioreq_shm_create(&h->shm, NULL, va.vcpu_num), 0);
	h->eng = rtioreq_engine_create(NULL);
	assert_non_null(h->eng);
	va.page = &h->shm.region->page;
	va.chan = &h->shm.region->chan;
	h->vm = rtioreq_vm_attach(h->eng, &va);
	assert_non_null(h->vm);
}

static inline void h_vm_start(struct h_vm *h, uint16_t vcpus)
{
	h_vm_start_attr(h, (struct rtioreq_vm_attr){ .id = 1, .vcpu_num = vcpus });
}

/* Handler: reads return (uintptr_t)priv. */
static inline int h_const(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	if (req->dir == RTIOREQ_DIR_READ)
		req->value = (uint64_t)(uintptr_t)priv;
	return 0;
}

/*
 * A handler that blocks until the test opens the gate, then reads 0x77; h_gated_calls
 * counts its calls. A test closes the gate (and zeroes the count) before its first
 * request, h_gated_wait()s until a handler is inside, and opens the gate to let it go.
 */
static _Atomic int h_gate __attribute__((unused));
static _Atomic int h_gated_calls __attribute__((unused));

static inline int h_gated(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	(void)c;
	(void)priv;
	atomic_fetch_add(&h_gated_calls, 1);
	while (!atomic_load(&h_gate))
		h_sleep_ms(1);
	req->value = 0x77;
	return 0;
}

static inline void h_gate_close(void)
{
	atomic_store(&h_gate, 0);
	atomic_store(&h_gated_calls, 0);
}

static inline void h_gate_open(void)
{
	atomic_store(&h_gate, 1);
}

static inline void h_gated_wait(void)
{
	while (!atomic_load(&h_gated_calls))
		h_sleep_ms(1);
}

static inline struct rtioreq_client *mk_client(struct rtioreq_vm *vm, const char *name,
					       rtioreq_handler_fn fn, uintptr_t priv, bool dflt)
{
	struct rtioreq_client_attr a = {
		.name = name, .handler = fn, .priv = (void *)priv, .is_default = dflt
	};
	struct rtioreq_client *c = rtioreq_client_create(vm, &a);

	assert_non_null(c);
	return c;
}

/* A handler client that may block: on the fallback path its handler runs on its own
 * thread (rtioreq_client_attr.handler_thread), not inline on the dispatcher. */
static inline struct rtioreq_client *mk_thread_client(struct rtioreq_vm *vm, const char *name,
						      rtioreq_handler_fn fn, uintptr_t priv)
{
	struct rtioreq_client_attr a = {
		.name = name, .handler = fn, .priv = (void *)priv, .handler_thread = true
	};
	struct rtioreq_client *c = rtioreq_client_create(vm, &a);

	assert_non_null(c);
	return c;
}

static inline void h_vm_stop(struct h_vm *h)
{
	rtioreq_engine_destroy(h->eng);
	rtioreq_shm_close(&h->shm);
}

/* Submit a request on @vcpu (slot must be FREE). */
static inline void h_submit(struct h_vm *h, uint16_t vcpu, uint32_t type, uint32_t dir,
			    uint64_t addr, uint32_t size, uint64_t value, bool cp)
{
	struct rtioreq_hv_req q = {
		.type = type, .dir = dir, .addr = addr, .size = size, .value = value
	};

	assert_true(rtioreq_hv_submit(h->shm.region, vcpu, &q, cp, true) >= 0);
}

/* Wait up to @ms for COMPLETE on @vcpu; return true and the value, slot made FREE. */
static inline bool h_wait(struct h_vm *h, uint16_t vcpu, uint32_t type, uint64_t *value,
			  unsigned int ms)
{
	uint64_t end = h_now_ns() + (uint64_t)ms * 1000000u;

	while (h_now_ns() < end) {
		if (rtioreq_hv_poll(h->shm.region, vcpu, type, value)) {
			rtioreq_hv_release(h->shm.region, vcpu);
			return true;
		}
		h_sleep_ms(0);
		sched_yield();
	}
	return false;
}

/* One synchronous access; fails the test if it does not complete within 5 s. */
static inline uint64_t h_io(struct h_vm *h, uint16_t vcpu, uint32_t type, uint32_t dir,
			    uint64_t addr, uint32_t size, uint64_t value)
{
	uint64_t v = 0;

	h_submit(h, vcpu, type, dir, addr, size, value, false);
	assert_true(h_wait(h, vcpu, type, &v, 5000));
	return v;
}

static inline uint32_t h_state(struct h_vm *h, uint16_t vcpu)
{
	return atomic_load_explicit(
		rtioreq_wire_atomic(&h->shm.region->page.req_slot[vcpu].processed),
		memory_order_acquire);
}

#endif /* RTIOREQ_TEST_HARNESS_H */
