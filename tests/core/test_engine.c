// SPDX-License-Identifier: MIT
/*
 * Engine lifecycle and routing through the public API, with the hypervisor side
 * driven by hand (tests/harness.h): attach validation, fallback and polling paths,
 * default and blocking clients, handler errors, invalid slots, inline fallback handlers
 * and handler_thread clients, clear, client destroy and detach with requests in
 * flight, slot migration between poller and dispatcher.
 */
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harness.h"

#define PIO RTIOREQ_TYPE_PORTIO
#define MMIO RTIOREQ_TYPE_MMIO
#define RD RTIOREQ_DIR_READ
#define WR RTIOREQ_DIR_WRITE

static int h_fail(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	return -EIO;
}

static void test_attach_validation(void **state)
{
	static struct rtioreq_io_request_buffer page;
	struct rtioreq_engine *eng = rtioreq_engine_create(NULL);
	struct rtioreq_vm_attr a = { .id = 7, .vcpu_num = 2, .page = &page };
	struct rtioreq_chan bad = { .magic = 0x1234, .version = 1, .vcpu_num = 16 };
	struct rtioreq_vm *vm;

	assert_non_null(eng);
	a.vcpu_num = 0;
	assert_null(rtioreq_vm_attach(eng, &a));
	assert_int_equal(errno, EINVAL);
	a.vcpu_num = 17;
	assert_null(rtioreq_vm_attach(eng, &a));
	assert_int_equal(errno, EINVAL);
	a.vcpu_num = 2;
	a.page = NULL;
	assert_null(rtioreq_vm_attach(eng, &a));
	assert_int_equal(errno, EINVAL);
	a.page = &page;
	a.chan = &bad;
	assert_null(rtioreq_vm_attach(eng, &a));
	assert_int_equal(errno, EINVAL);
	a.chan = NULL;
	vm = rtioreq_vm_attach(eng, &a);
	assert_non_null(vm);
	assert_null(rtioreq_vm_attach(eng, &a));
	assert_int_equal(errno, EEXIST);
	assert_int_equal(rtioreq_vm_set_poller(vm, 2, NULL), -EINVAL);
	assert_int_equal(rtioreq_vm_raise_irq(vm, 4, 1), -ENOSYS);
	rtioreq_engine_destroy(eng);
}

static void test_thread_attr_validation(void **state)
{
	struct rtioreq_engine *eng = rtioreq_engine_create(NULL);
	struct rtioreq_thread_attr bad_cpu = { .cpu = 4095 };
	struct rtioreq_thread_attr bad_prio = { .cpu = -1, .policy = SCHED_FIFO, .priority = 0 };
	struct rtioreq_thread_attr bad_other = { .cpu = -1, .policy = SCHED_OTHER, .priority = 5 };
	struct rtioreq_engine_attr ea = { .dispatcher = { .cpu = -2 }, .clients = { .cpu = -1 } };

	assert_null(rtioreq_poller_create(eng, &bad_cpu));
	assert_int_equal(errno, EINVAL);
	assert_null(rtioreq_poller_create(eng, &bad_prio));
	assert_int_equal(errno, EINVAL);
	assert_null(rtioreq_poller_create(eng, &bad_other));
	assert_int_equal(errno, EINVAL);
	assert_null(rtioreq_engine_create(&ea));
	assert_int_equal(errno, EINVAL);
	rtioreq_engine_destroy(eng);
}

/* Fallback path: handler client thread, default client, no client, errors, invalid. */
static void test_fallback_routing(void **state)
{
	struct h_vm h;
	struct rtioreq_vm_stats st;
	struct rtioreq_client *a, *f, *d;
	struct rtioreq_hv_req q = { .type = 9, .dir = RD, .addr = 0x10, .size = 1 };
	char owner[RTIOREQ_NAME_LEN];
	uint64_t s, e, v;

	h_vm_start(&h, 4);
	a = mk_client(h.vm, "dev-a", h_const, 0x1234abcd, false);
	f = mk_client(h.vm, "dev-fail", h_fail, 0, false);
	assert_int_equal(rtioreq_range_add(a, PIO, 0x100, 0x10f), 0);
	assert_int_equal(rtioreq_range_add(a, MMIO, 0xfe000000, 0xfe000fff), 0);
	assert_int_equal(rtioreq_range_add(f, PIO, 0x110, 0x11f), 0);
	/* overlap is refused and explained */
	assert_int_equal(rtioreq_range_add(f, PIO, 0x10f, 0x110), -EEXIST);
	assert_int_equal(rtioreq_range_conflict(h.vm, PIO, 0x10f, 0x110, &s, &e, owner), 1);
	assert_int_equal(s, 0x100);
	assert_int_equal(e, 0x10f);
	assert_string_equal(owner, "dev-a");
	assert_int_equal(rtioreq_range_del(f, PIO, 0x100, 0x10f), -ENOENT);

	assert_int_equal(h_io(&h, 0, PIO, RD, 0x100, 4, 0), 0x1234abcd);
	assert_int_equal(h_io(&h, 1, PIO, RD, 0x10e, 2, 0), 0xabcd);
	assert_int_equal(h_io(&h, 2, MMIO, RD, 0xfe000ff8, 8, 0), 0x1234abcd);
	/* straddles the end of dev-a's range: nobody owns it, no default: all ones */
	assert_int_equal(h_io(&h, 3, PIO, RD, 0x10f, 2, 0), 0xffff);
	/* handler error: completed anyway, all ones */
	assert_int_equal(h_io(&h, 0, PIO, RD, 0x110, 1, 0), 0xff);
	h_io(&h, 0, PIO, WR, 0x110, 1, 5);
	/* invalid slot contents */
	assert_true(rtioreq_hv_submit(h.shm.region, 1, &q, false, true) >= 0);
	assert_true(h_wait(&h, 1, PIO, &v, 5000));
	assert_int_equal(v, 0xffffffff);
	q.type = PIO;
	q.size = 3;
	assert_true(rtioreq_hv_submit(h.shm.region, 1, &q, false, true) >= 0);
	assert_true(h_wait(&h, 1, PIO, &v, 5000));
	assert_int_equal(v, 0xffffffff);

	rtioreq_vm_stats(h.vm, &st);
	assert_int_equal(st.dispatched, 8);
	assert_int_equal(st.completed, 8);
	assert_int_equal(st.fallback, 8);
	assert_int_equal(st.polled, 0);
	assert_int_equal(st.unclaimed, 1);
	assert_int_equal(st.handler_errors, 2);
	assert_int_equal(st.invalid, 2);
	assert_int_equal(st.notified, 8);

	/* a default client takes what no range claims; only one default */
	d = mk_client(h.vm, "dflt", h_const, 0x42, true);
	assert_null(rtioreq_client_create(h.vm, &(struct rtioreq_client_attr){
							.name = "d2", .handler = h_const,
							.is_default = true }));
	assert_int_equal(errno, EEXIST);
	assert_int_equal(rtioreq_range_add(d, PIO, 0x200, 0x200), -EINVAL);
	assert_int_equal(h_io(&h, 3, PIO, RD, 0x10f, 2, 0), 0x42);
	assert_int_equal(h_io(&h, 3, PIO, RD, 0x3f8, 1, 0), 0x42);
	assert_int_equal(rtioreq_client_destroy(d), 0);
	assert_int_equal(h_io(&h, 3, PIO, RD, 0x3f8, 1, 0), 0xff);
	/* range removal takes effect */
	assert_int_equal(rtioreq_range_del(a, PIO, 0x100, 0x10f), 0);
	assert_int_equal(h_io(&h, 0, PIO, RD, 0x100, 1, 0), 0xff);
	assert_int_equal(h_io(&h, 0, MMIO, RD, 0xfe000000, 4, 0), 0x1234abcd);
	h_vm_stop(&h);
}

/* Where a handler ran: its thread's id and name (one writer per struct at a time). */
struct where {
	_Atomic int calls;
	_Atomic pid_t tid; /* of the last call */
	_Atomic int tids;  /* distinct tids seen, as far as consecutive calls tell */
	char name[16];	   /* of the last call's thread */
};

/* Reads return (addr << 8 | vcpu): every request has its own value. */
static int h_where(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	struct where *w = priv;
	pid_t tid = (pid_t)syscall(SYS_gettid);

	if (atomic_exchange(&w->tid, tid) != tid)
		atomic_fetch_add(&w->tids, 1);
	pthread_getname_np(pthread_self(), w->name, sizeof(w->name));
	atomic_fetch_add(&w->calls, 1);
	if (req->dir == RD)
		req->value = req->addr << 8 | req->vcpu;
	return 0;
}

/*
 * Fallback path, issue #13: a handler client runs inline on the dispatcher (upcall ->
 * dispatcher -> completion, no thread hop), every request exactly once with its own
 * value, counted as fallback; a handler_thread client still runs on its own thread.
 * (Before: both ran on their client threads, "vm1-inl" / "vm1-thr".)
 */
static void test_fallback_inline(void **state)
{
	enum { ROUNDS = 100, VCPUS = 4 };
	struct where wi = { 0 }, wt = { 0 };
	struct rtioreq_client_stats cs;
	struct rtioreq_vm_stats st;
	struct rtioreq_client *in, *th;
	struct h_vm h;
	uint64_t v;

	h_vm_start(&h, VCPUS);
	in = mk_client(h.vm, "inl", h_where, (uintptr_t)&wi, false);
	th = mk_thread_client(h.vm, "thr", h_where, (uintptr_t)&wt);
	assert_int_equal(rtioreq_range_add(in, PIO, 0x100, 0x10f), 0);
	assert_int_equal(rtioreq_range_add(th, PIO, 0x200, 0x20f), 0);
	for (uint64_t r = 0; r < ROUNDS; r++) {
		uint64_t base = r & 1 ? 0x200 : 0x100;

		for (uint16_t c = 0; c < VCPUS; c++) /* all vCPUs in flight at once */
			h_submit(&h, c, PIO, RD, base + ((r + c) & 15), 1, 0, false);
		for (uint16_t c = 0; c < VCPUS; c++) {
			assert_true(h_wait(&h, c, PIO, &v, 5000));
			assert_int_equal(v, ((base + ((r + c) & 15)) << 8 | c) & 0xff);
		}
	}
	/* 1-byte reads keep only the vCPU: check the address too with 4-byte ones */
	assert_int_equal(h_io(&h, 3, PIO, RD, 0x10a, 4, 0), 0x10a03);
	assert_int_equal(h_io(&h, 2, PIO, RD, 0x20b, 4, 0), 0x20b02);
	assert_int_equal(atomic_load(&wi.calls), ROUNDS / 2 * VCPUS + 1);
	assert_int_equal(atomic_load(&wt.calls), ROUNDS / 2 * VCPUS + 1);
	rtioreq_client_stats(in, &cs);
	assert_int_equal(cs.served, ROUNDS / 2 * VCPUS + 1);
	rtioreq_client_stats(th, &cs);
	assert_int_equal(cs.served, ROUNDS / 2 * VCPUS + 1);
	rtioreq_vm_stats(h.vm, &st);
	assert_int_equal(st.dispatched, ROUNDS * VCPUS + 2);
	assert_int_equal(st.completed, ROUNDS * VCPUS + 2);
	assert_int_equal(st.fallback, ROUNDS * VCPUS + 2);
	assert_int_equal(st.notified, ROUNDS * VCPUS + 2);
	assert_int_equal(st.polled, 0);
	/* inline: always the dispatcher; the opt-out: its own thread, never that one */
	assert_int_equal(atomic_load(&wi.tids), 1);
	assert_string_equal(wi.name, "rtioreq-disp");
	assert_int_equal(atomic_load(&wt.tids), 1);
	assert_string_equal(wt.name, "vm1-thr");
	assert_int_not_equal(atomic_load(&wi.tid), atomic_load(&wt.tid));
	h_vm_stop(&h);
}

/*
 * A clear while the dispatcher runs a handler inline: the request is the dispatcher's,
 * as a poller's would be: never forced, it completes with the handler's value once
 * the handler returns; the clear returns after its bound with nothing forced.
 */
static void test_clear_inline_not_forced(void **state)
{
	struct rtioreq_vm_stats st;
	struct h_vm h;
	uint64_t v;

	h_gate_close();
	h_vm_start(&h, 1);
	assert_int_equal(rtioreq_range_add(mk_client(h.vm, "inl", h_gated, 0, false), PIO, 0x80,
					   0x80),
			 0);
	h_submit(&h, 0, PIO, RD, 0x80, 1, 0, false);
	h_gated_wait();
	assert_int_equal(rtioreq_vm_clear(h.vm, 20), 0);
	assert_int_equal(h_state(&h, 0), RTIOREQ_STATE_PROCESSING);
	h_gate_open();
	assert_true(h_wait(&h, 0, PIO, &v, 5000));
	assert_int_equal(v, 0x77);
	rtioreq_vm_stats(h.vm, &st);
	assert_int_equal(st.forced, 0);
	assert_int_equal(st.cleared, 0);
	assert_int_equal(st.fallback, 1);
	h_vm_stop(&h);
}

/* Polling path: the same routing, inline on a poller, and no notification wanted. */
static void test_polling_path(void **state)
{
	struct rtioreq_thread_attr ta = { .cpu = -1 };
	struct rtioreq_poller_stats ps;
	struct rtioreq_vm_stats st;
	struct rtioreq_poller *p;
	struct h_vm h;
	uint64_t v;

	h_vm_start(&h, 2);
	assert_int_equal(rtioreq_range_add(mk_client(h.vm, "dev", h_const, 0x5555aaaa, false),
					   MMIO, 0x1000, 0x1fff),
			 0);
	p = rtioreq_poller_create(h.eng, &ta);
	assert_non_null(p);
	assert_true(rtioreq_poller_tid(p) > 0);
	assert_int_equal(rtioreq_vm_set_poller(h.vm, 0, p), 0);
	assert_int_equal(rtioreq_vm_set_poller(h.vm, 1, p), 0);
	assert_int_equal(h.shm.region->chan.polled_mask.word, 3);
	for (int i = 0; i < 100; i++) {
		h_submit(&h, (uint16_t)(i & 1), MMIO, RD, 0x1000 + 8 * (uint64_t)i, 8, 0, true);
		assert_true(h_wait(&h, (uint16_t)(i & 1), MMIO, &v, 5000));
		assert_int_equal(v, 0x5555aaaa);
	}
	rtioreq_vm_stats(h.vm, &st);
	assert_int_equal(st.polled, 100);
	assert_int_equal(st.fallback, 0);
	assert_int_equal(st.notified, 0);
	rtioreq_poller_stats(p, &ps);
	assert_int_equal(ps.served, 100);
	assert_true(ps.loops > 0);
	/* destroying the poller hands the slots back to the dispatcher */
	assert_int_equal(rtioreq_poller_destroy(p), 0);
	assert_int_equal(h.shm.region->chan.polled_mask.word, 0);
	assert_int_equal(h_io(&h, 1, MMIO, RD, 0x1000, 4, 0), 0x5555aaaa);
	h_vm_stop(&h);
}

struct server {
	struct rtioreq_client *c;
	uint64_t answer;
	_Atomic int served;
	int last;
};

static void *serve_blocking(void *arg)
{
	struct server *s = arg;
	struct rtioreq_req req;

	while ((s->last = rtioreq_client_wait(s->c, &req)) == 0) {
		if (req.dir == RD)
			req.value = s->answer + req.addr;
		assert_int_equal(rtioreq_client_complete(s->c, &req, 0), 0);
		/* completing twice is refused and writes nothing */
		assert_int_equal(rtioreq_client_complete(s->c, &req, 0), -ENOENT);
		atomic_fetch_add(&s->served, 1);
	}
	return NULL;
}

/* ATTACH_IOREQ_CLIENT / NOTIFY_REQUEST_FINISH style default client. */
static void test_blocking_client(void **state)
{
	struct server s = { .answer = 0x1000 };
	struct rtioreq_req req;
	pthread_t t;
	struct h_vm h;

	h_vm_start(&h, 3);
	s.c = mk_client(h.vm, "dm", NULL, 0, true);
	assert_int_equal(pthread_create(&t, NULL, serve_blocking, &s), 0);
	for (uint16_t i = 0; i < 30; i++)
		assert_int_equal(h_io(&h, i % 3, PIO, RD, 0x60 + i, 1, 0), (0x1060 + i) & 0xff);
	assert_int_equal(rtioreq_client_shutdown(s.c), 0);
	pthread_join(t, NULL);
	assert_int_equal(s.last, -ENODEV);
	assert_int_equal(s.served, 30);
	assert_int_equal(rtioreq_client_wait(s.c, &req), -ENODEV);
	assert_int_equal(rtioreq_client_destroy(s.c), 0);
	/* handler clients cannot be waited on */
	s.c = mk_client(h.vm, "h", h_const, 1, false);
	assert_int_equal(rtioreq_client_wait(s.c, &req), -EINVAL);
	h_vm_stop(&h);
}

/* Clear: in-flight requests of a blocking client with nobody serving are forced;
 * requests arriving during the clear complete at once; a late complete is refused. */
static void test_clear_forces_within_bound(void **state)
{
	struct rtioreq_vm_stats st;
	struct rtioreq_client *c;
	struct rtioreq_req req;
	struct h_vm h;
	uint64_t t0, v;
	int forced;

	h_vm_start(&h, 2);
	c = mk_client(h.vm, "stuck", NULL, 0, false);
	assert_int_equal(rtioreq_range_add(c, PIO, 0x70, 0x71), 0);
	h_submit(&h, 0, PIO, RD, 0x70, 1, 0, false);
	assert_int_equal(rtioreq_client_wait(c, &req), 0); /* taken, never completed */
	assert_int_equal(req.addr, 0x70);
	h_submit(&h, 1, PIO, RD, 0x71, 1, 0, false); /* assigned, never taken */
	h_sleep_ms(20);
	assert_int_equal(h_state(&h, 0), RTIOREQ_STATE_PROCESSING);
	assert_int_equal(h_state(&h, 1), RTIOREQ_STATE_PROCESSING);
	t0 = h_now_ns();
	forced = rtioreq_vm_clear(h.vm, 50);
	assert_int_equal(forced, 2);
	assert_true(h_now_ns() - t0 < 2000000000ull);
	assert_true(h_now_ns() - t0 >= 50000000ull);
	assert_true(h_wait(&h, 0, PIO, &v, 10));
	assert_int_equal(v, 0xff);
	assert_true(h_wait(&h, 1, PIO, &v, 10));
	assert_int_equal(v, 0xff);
	req.value = 1;
	assert_int_equal(rtioreq_client_complete(c, &req, 0), -ENOENT);
	rtioreq_vm_stats(h.vm, &st);
	assert_int_equal(st.forced, 2);
	assert_int_equal(st.completed, 2);
	/* after the clear, routing is normal again */
	h_submit(&h, 0, PIO, RD, 0x70, 1, 0, false);
	assert_int_equal(rtioreq_client_wait(c, &req), 0);
	req.value = 0x33;
	assert_int_equal(rtioreq_client_complete(c, &req, 0), 0);
	assert_true(h_wait(&h, 0, PIO, &v, 5000));
	assert_int_equal(v, 0x33);
	h_vm_stop(&h);
}

struct clear_arg {
	struct rtioreq_vm *vm;
	int forced;
};

static void *do_clear(void *arg)
{
	struct clear_arg *a = arg;

	a->forced = rtioreq_vm_clear(a->vm, 300);
	return NULL;
}

/* A request arriving while the clear waits completes at once (cleared); the slow
 * handler_thread client's request finishes normally once released, not forced. */
static void test_clear_completes_arrivals(void **state)
{
	struct clear_arg ca;
	struct rtioreq_vm_stats st;
	struct h_vm h;
	pthread_t t;
	uint64_t v;

	h_gate_close();
	h_vm_start(&h, 2);
	/* a blocking handler: on its own thread (inline, it would hold up the dispatcher) */
	assert_int_equal(rtioreq_range_add(mk_thread_client(h.vm, "slow", h_gated, 0), PIO, 0x80,
					   0x80),
			 0);
	h_submit(&h, 0, PIO, RD, 0x80, 1, 0, false);
	h_gated_wait();
	ca.vm = h.vm;
	assert_int_equal(pthread_create(&t, NULL, do_clear, &ca), 0);
	h_sleep_ms(30);
	assert_int_equal(h_io(&h, 1, PIO, RD, 0x80, 1, 0), 0xff); /* cleared at once */
	h_gate_open();
	pthread_join(t, NULL);
	assert_int_equal(ca.forced, 0);
	assert_true(h_wait(&h, 0, PIO, &v, 5000));
	assert_int_equal(v, 0x77);
	rtioreq_vm_stats(h.vm, &st);
	assert_int_equal(st.cleared, 1);
	assert_int_equal(st.forced, 0);
	h_vm_stop(&h);
}

/* Destroying a handler_thread client drains its in-flight requests (normal values). */
static void test_destroy_with_requests_in_flight(void **state)
{
	struct rtioreq_vm_stats st;
	struct rtioreq_client *c, *b;
	struct h_vm h;
	uint64_t v;

	h_gate_close();
	h_vm_start(&h, 3);
	c = mk_thread_client(h.vm, "slow", h_gated, 0); /* its thread drains both */
	assert_int_equal(rtioreq_range_add(c, PIO, 0x90, 0x9f), 0);
	h_submit(&h, 0, PIO, RD, 0x90, 1, 0, false);
	h_submit(&h, 1, PIO, RD, 0x91, 1, 0, false);
	h_gated_wait();
	h_sleep_ms(10);
	h_gate_open();
	assert_int_equal(rtioreq_client_destroy(c), 0);
	assert_true(h_wait(&h, 0, PIO, &v, 10));
	assert_int_equal(v, 0x77);
	assert_true(h_wait(&h, 1, PIO, &v, 10));
	assert_int_equal(v, 0x77);
	/* after destroy its range is free and unclaimed */
	assert_int_equal(h_io(&h, 2, PIO, RD, 0x90, 1, 0), 0xff);
	/* a blocking client destroyed with an assigned request: forced after the bound */
	b = mk_client(h.vm, "blk", NULL, 0, false);
	assert_int_equal(rtioreq_range_add(b, PIO, 0x90, 0x9f), 0);
	h_submit(&h, 2, PIO, RD, 0x95, 1, 0, false);
	h_sleep_ms(10);
	assert_int_equal(rtioreq_client_destroy(b), 0);
	assert_true(h_wait(&h, 2, PIO, &v, 10));
	assert_int_equal(v, 0xff);
	rtioreq_vm_stats(h.vm, &st);
	assert_int_equal(st.completed, st.dispatched);
	assert_int_equal(st.forced, 1);
	h_vm_stop(&h);
}

/* Detach completes what a blocking client holds; the engine lets go of the page. */
static void test_detach_completes_everything(void **state)
{
	struct rtioreq_client *c;
	struct h_vm h;
	uint64_t v;

	h_vm_start(&h, 2);
	c = mk_client(h.vm, "blk", NULL, 0, true);
	(void)c;
	h_submit(&h, 0, MMIO, RD, 0xabc0, 8, 0, false);
	h_submit(&h, 1, PIO, WR, 0x20, 1, 1, false);
	h_sleep_ms(10);
	assert_int_equal(rtioreq_vm_detach(h.vm), 0);
	assert_true(h_wait(&h, 0, MMIO, &v, 10));
	assert_int_equal(v, UINT64_MAX);
	assert_true(h_wait(&h, 1, PIO, &v, 10));
	/* a second VM with the same id can attach again */
	h.vm = rtioreq_vm_attach(h.eng, &(struct rtioreq_vm_attr){
						.id = 1, .vcpu_num = 2, .page = &h.shm.region->page,
						.chan = &h.shm.region->chan });
	assert_non_null(h.vm);
	assert_int_equal(h_io(&h, 0, PIO, RD, 0x20, 1, 0), 0xff);
	h_vm_stop(&h);
}

struct mover {
	struct h_vm *h;
	struct rtioreq_poller *p;
	_Atomic int stop;
	unsigned int moves;
};

static void *move_slots(void *arg)
{
	struct mover *m = arg;

	while (!atomic_load(&m->stop)) {
		for (uint16_t v = 0; v < 4; v++)
			assert_int_equal(rtioreq_vm_set_poller(m->h->vm, v,
							       (m->moves + v) & 1 ? m->p : NULL),
					 0);
		m->moves++;
	}
	return NULL;
}

/* Slots move between a poller and the dispatcher while requests flow. */
static void test_slot_migration_under_load(void **state)
{
	struct rtioreq_thread_attr ta = { .cpu = -1 };
	struct rtioreq_exdev_oracle *o = calloc(1, sizeof(*o));
	struct rtioreq_sim_result *res = calloc(1, sizeof(*res));
	struct rtioreq_exdev *dev = calloc(1, sizeof(*dev));
	struct rtioreq_vm_stats st;
	struct mover m = { 0 };
	struct h_vm h;
	pthread_t t;

	h_vm_start(&h, 4);
	assert_int_equal(rtioreq_exdev_attach(dev, h.vm), 0);
	m.h = &h;
	m.p = rtioreq_poller_create(h.eng, &ta);
	assert_non_null(m.p);
	rtioreq_exdev_oracle_init(o, 7, 5);
	for (int cp = 0; cp < 2; cp++) {
		struct rtioreq_sim_attr sa = {
			.region = h.shm.region, .vcpu_num = 4, .producers = 1, .requests = 20000,
			.completion_polling = cp, .producer_cpu = { -1, -1, -1, -1 },
			.wl = { rtioreq_exdev_gen, o }
		};

		atomic_store(&m.stop, 0);
		assert_int_equal(pthread_create(&t, NULL, move_slots, &m), 0);
		assert_int_equal(rtioreq_sim_run(&sa, res), 0);
		atomic_store(&m.stop, 1);
		pthread_join(t, NULL);
		assert_int_equal(res->requests, 20000);
		assert_int_equal(res->completed, 20000);
		assert_int_equal(res->lost, 0);
		assert_int_equal(res->duplicated, 0);
		assert_int_equal(res->mismatched, 0);
		assert_true(m.moves > 0);
	}
	rtioreq_vm_stats(h.vm, &st);
	assert_int_equal(st.completed, 40000);
	assert_int_equal(st.dispatched, 40000);
	assert_int_equal(st.polled + st.fallback, 40000);
	print_message("slot moves: %u, polled %lu, fallback %lu\n", m.moves,
		      (unsigned long)st.polled, (unsigned long)st.fallback);
	h_vm_stop(&h);
	free(o);
	free(res);
	free(dev);
}

/* Two VMs: a clear of one does not disturb the other; ids are reported per VM. */
static int h_vmid(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	req->value = req->vm_id;
	return 0;
}

static void test_two_vms(void **state)
{
	struct h_vm a, b;
	struct rtioreq_vm_attr va = { .id = 2, .vcpu_num = 1 };
	struct rtioreq_shm shm2;

	h_vm_start(&a, 1);
	assert_int_equal(rtioreq_shm_create(&shm2, NULL, 1), 0);
	va.page = &shm2.region->page;
	va.chan = &shm2.region->chan;
	b = a;
	b.shm = shm2;
	b.vm = rtioreq_vm_attach(a.eng, &va);
	assert_non_null(b.vm);
	mk_client(a.vm, "id", h_vmid, 0, true);
	mk_client(b.vm, "id", h_vmid, 0, true);
	assert_int_equal(h_io(&a, 0, PIO, RD, 1, 1, 0), 1);
	assert_int_equal(h_io(&b, 0, PIO, RD, 1, 1, 0), 2);
	assert_int_equal(rtioreq_vm_clear(a.vm, 10), 0);
	assert_int_equal(h_io(&b, 0, PIO, RD, 1, 1, 0), 2);
	assert_int_equal(rtioreq_vm_detach(b.vm), 0);
	assert_int_equal(h_io(&a, 0, PIO, RD, 1, 1, 0), 1);
	h_vm_stop(&a);
	rtioreq_shm_close(&shm2);
}

/*
 * Attached paused: a request PENDING before the devices exist is not taken (it would
 * reach nobody); after rtioreq_vm_start() it goes to the planned taker: the poller for
 * vCPU 0, the dispatcher for vCPU 1. Detaching a paused VM with a plan is clean.
 */
static void test_paused_attach(void **state)
{
	struct rtioreq_vm_attr va = { .id = 4, .vcpu_num = 2, .paused = true };
	struct rtioreq_vm_stats st;
	struct rtioreq_poller *p;
	struct rtioreq_client *c;
	struct h_vm h;
	uint64_t v = 0;

	assert_int_equal(rtioreq_shm_create(&h.shm, NULL, 2), 0);
	h.eng = rtioreq_engine_create(NULL);
	assert_non_null(h.eng);
	va.page = &h.shm.region->page;
	va.chan = &h.shm.region->chan;
	h.vm = rtioreq_vm_attach(h.eng, &va);
	assert_non_null(h.vm);
	h_submit(&h, 0, PIO, RD, 0x60, 1, 0, true);
	h_submit(&h, 1, PIO, RD, 0x60, 1, 0, false);
	h_sleep_ms(50);
	assert_int_equal(h_state(&h, 0), RTIOREQ_STATE_PENDING);
	assert_int_equal(h_state(&h, 1), RTIOREQ_STATE_PENDING);
	c = mk_client(h.vm, "kbd", h_const, 0x5a, false);
	assert_int_equal(rtioreq_range_add(c, PIO, 0x60, 0x64), 0);
	p = rtioreq_poller_create(h.eng, &(struct rtioreq_thread_attr){ .cpu = -1 });
	assert_non_null(p);
	assert_int_equal(rtioreq_vm_set_poller(h.vm, 0, p), 0);
	/* a plan only: the hypervisor is not told to skip the upcall yet */
	assert_int_equal(h.shm.region->chan.polled_mask.word, 0);
	h_sleep_ms(20);
	assert_int_equal(h_state(&h, 0), RTIOREQ_STATE_PENDING);
	assert_int_equal(rtioreq_vm_start(h.vm), 0);
	assert_true(h_wait(&h, 0, PIO, &v, 5000));
	assert_int_equal(v, 0x5a);
	assert_true(h_wait(&h, 1, PIO, &v, 5000));
	assert_int_equal(v, 0x5a);
	assert_int_equal(h.shm.region->chan.polled_mask.word, 1);
	assert_int_equal(rtioreq_vm_start(h.vm), 0); /* idempotent */
	rtioreq_vm_stats(h.vm, &st);
	assert_int_equal(st.polled, 1);
	assert_int_equal(st.fallback, 1);
	assert_int_equal(st.unclaimed, 0);
	assert_int_equal(rtioreq_vm_detach(h.vm), 0);

	/* detach while still paused, with a poller planned */
	va.id = 5;
	h.vm = rtioreq_vm_attach(h.eng, &va);
	assert_non_null(h.vm);
	assert_int_equal(rtioreq_vm_set_poller(h.vm, 1, p), 0);
	h_submit(&h, 1, PIO, RD, 0x60, 1, 0, false);
	assert_int_equal(rtioreq_vm_detach(h.vm), 0); /* completes it: nobody left hanging */
	assert_true(h_wait(&h, 1, PIO, &v, 100));
	assert_int_equal(v, 0xff);
	h_vm_stop(&h);
}

/* ------------------------------------------------------------------------------- */
/* RTIOREQ_VM_HIST: the engine-side service time (rtioreq_vm_hist()) */

#define HIST_SHORT_NS 1000000ull /* 1 ms */
#define HIST_LONG_NS 50000000ull /* 50 ms: far above any scheduling delay of a short one */
#define HIST_EACH 5

/* Fallback path: sleep the request's address in ns (a client thread may block). */
static int h_sleep_addr(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	struct timespec ts = { (time_t)(req->addr / 1000000000u),
			       (long)(req->addr % 1000000000u) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
	return 0;
}

/* Polling path: busy-wait the request's address in ns (a poller must not sleep). */
static int h_spin_addr(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	uint64_t end = h_now_ns() + req->addr;

	while (h_now_ns() < end)
		;
	return 0;
}

/* Values in buckets at or above the bucket of @ns. */
static uint64_t hist_at_least(const struct rtioreq_hist *h, uint64_t ns)
{
	uint64_t n = 0;

	for (unsigned int i = rtioreq_hist_index(ns); i < RTIOREQ_HIST_BUCKETS; i++)
		n += h->bucket[i];
	return n;
}

/*
 * HIST_EACH requests whose handler takes HIST_SHORT_NS and HIST_EACH that take
 * HIST_LONG_NS, plus one unclaimed: every request is counted exactly once, the short
 * ones land in buckets at or above HIST_SHORT_NS's and below HIST_LONG_NS's, the long
 * ones at or above HIST_LONG_NS's.
 */
static void hist_check_split(struct h_vm *h, uint16_t vcpu)
{
	struct rtioreq_vm_stats st;
	struct rtioreq_hist hs;
	uint64_t sum = 0;

	for (int i = 0; i < 2 * HIST_EACH; i++)
		h_io(h, vcpu, MMIO, WR, i < HIST_EACH ? HIST_SHORT_NS : HIST_LONG_NS, 1, 0);
	h_io(h, vcpu, PIO, RD, 0x10, 1, 0); /* no client: unclaimed, recorded too */
	assert_int_equal(rtioreq_vm_hist(h->vm, &hs), 0);
	rtioreq_vm_stats(h->vm, &st);
	assert_int_equal(st.dispatched, 2 * HIST_EACH + 1);
	assert_int_equal(st.unclaimed, 1);
	assert_int_equal(hs.count, st.dispatched);
	for (unsigned int i = 0; i < RTIOREQ_HIST_BUCKETS; i++)
		sum += hs.bucket[i];
	assert_int_equal(sum, hs.count);
	assert_int_equal(hist_at_least(&hs, HIST_LONG_NS), HIST_EACH);
	assert_int_equal(hist_at_least(&hs, HIST_SHORT_NS), 2 * HIST_EACH);
	assert_true(hs.max >= HIST_LONG_NS);
	assert_true(hs.min < HIST_SHORT_NS); /* the unclaimed one: no handler */
	assert_true(hs.sum >= HIST_EACH * (HIST_SHORT_NS + HIST_LONG_NS));
	assert_int_equal(hs.overflow, 0);
}

static void test_vm_hist_off(void **state)
{
	struct rtioreq_vm_attr va = { .id = 2, .vcpu_num = 1 };
	struct rtioreq_hist hs;
	struct h_vm h;

	h_vm_start(&h, 1);
	assert_int_equal(rtioreq_vm_hist(h.vm, &hs), -ENODATA);
	assert_int_equal(rtioreq_vm_hist(h.vm, NULL), -EINVAL);
	assert_int_equal(rtioreq_vm_hist(NULL, &hs), -EINVAL);
	/* an option this library does not know is refused, not ignored */
	va.page = &h.shm.region->page;
	va.flags = RTIOREQ_VM_HIST << 1;
	errno = 0;
	assert_null(rtioreq_vm_attach(h.eng, &va));
	assert_int_equal(errno, EINVAL);
	h_vm_stop(&h);
}

static void test_vm_hist_fallback(void **state)
{
	struct h_vm h;

	h_vm_start_attr(&h, (struct rtioreq_vm_attr){ .id = 1, .vcpu_num = 1,
						      .flags = RTIOREQ_VM_HIST });
	assert_int_equal(rtioreq_range_add(mk_client(h.vm, "sleep", h_sleep_addr, 0, false),
					   MMIO, HIST_SHORT_NS, HIST_LONG_NS),
			 0);
	hist_check_split(&h, 0);
	h_vm_stop(&h);
}

static void test_vm_hist_polling(void **state)
{
	struct rtioreq_thread_attr ta = RTIOREQ_THREAD_ATTR_DEFAULT;
	struct rtioreq_vm_stats st;
	struct rtioreq_poller *p;
	struct h_vm h;

	h_vm_start_attr(&h, (struct rtioreq_vm_attr){ .id = 1, .vcpu_num = 1,
						      .flags = RTIOREQ_VM_HIST });
	assert_int_equal(rtioreq_range_add(mk_client(h.vm, "spin", h_spin_addr, 0, false),
					   MMIO, HIST_SHORT_NS, HIST_LONG_NS),
			 0);
	p = rtioreq_poller_create(h.eng, &ta);
	assert_non_null(p);
	assert_int_equal(rtioreq_vm_set_poller(h.vm, 0, p), 0);
	hist_check_split(&h, 0);
	rtioreq_vm_stats(h.vm, &st);
	assert_int_equal(st.polled, 2 * HIST_EACH + 1);
	h_vm_stop(&h);
}

struct hist_reader {
	struct rtioreq_vm *vm;
	_Atomic bool stop;
	uint64_t reads;
};

/* Reads while requests complete: the count never goes back, the buckets always add
 * up to it, and min/max cover it (TSan: no race with the completers). */
static void *hist_read_main(void *arg)
{
	struct hist_reader *r = arg;
	struct rtioreq_hist *hs = malloc(sizeof(*hs));
	uint64_t last = 0;

	assert_non_null(hs);
	while (!atomic_load(&r->stop)) {
		uint64_t sum = 0;

		assert_int_equal(rtioreq_vm_hist(r->vm, hs), 0);
		for (unsigned int i = 0; i < RTIOREQ_HIST_BUCKETS; i++)
			sum += hs->bucket[i];
		assert_int_equal(sum, hs->count);
		assert_true(hs->count >= last);
		if (hs->count) {
			assert_true(hs->min <= hs->max);
			assert_true(rtioreq_hist_percentile(hs, 50) <= hs->max);
		}
		last = hs->count;
		r->reads++;
	}
	free(hs);
	return NULL;
}

/* Two slots, one polled and one on the fallback path, a reader in parallel. */
static void test_vm_hist_concurrent_reader(void **state)
{
	struct rtioreq_thread_attr ta = RTIOREQ_THREAD_ATTR_DEFAULT;
	struct hist_reader r = { 0 };
	struct rtioreq_vm_stats st;
	struct rtioreq_poller *p;
	struct rtioreq_hist hs;
	pthread_t t;
	struct h_vm h;

	h_vm_start_attr(&h, (struct rtioreq_vm_attr){ .id = 1, .vcpu_num = 2,
						      .flags = RTIOREQ_VM_HIST });
	mk_client(h.vm, "dflt", h_const, 7, true);
	p = rtioreq_poller_create(h.eng, &ta);
	assert_non_null(p);
	assert_int_equal(rtioreq_vm_set_poller(h.vm, 0, p), 0);
	r.vm = h.vm;
	assert_int_equal(pthread_create(&t, NULL, hist_read_main, &r), 0);
	for (int i = 0; i < 2000; i++)
		assert_int_equal(h_io(&h, (uint16_t)(i & 1), PIO, RD, 0x20, 1, 0), 7);
	atomic_store(&r.stop, true);
	pthread_join(t, NULL);
	assert_true(r.reads > 0);
	assert_int_equal(rtioreq_vm_hist(h.vm, &hs), 0);
	rtioreq_vm_stats(h.vm, &st);
	assert_int_equal(st.polled, 1000);
	assert_int_equal(hs.count, 2000);
	assert_int_equal(hs.count, st.dispatched);
	h_vm_stop(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_attach_validation),
		cmocka_unit_test(test_vm_hist_off),
		cmocka_unit_test(test_vm_hist_fallback),
		cmocka_unit_test(test_vm_hist_polling),
		cmocka_unit_test(test_vm_hist_concurrent_reader),
		cmocka_unit_test(test_thread_attr_validation),
		cmocka_unit_test(test_fallback_routing),
		cmocka_unit_test(test_fallback_inline),
		cmocka_unit_test(test_clear_inline_not_forced),
		cmocka_unit_test(test_polling_path),
		cmocka_unit_test(test_blocking_client),
		cmocka_unit_test(test_clear_forces_within_bound),
		cmocka_unit_test(test_clear_completes_arrivals),
		cmocka_unit_test(test_destroy_with_requests_in_flight),
		cmocka_unit_test(test_detach_completes_everything),
		cmocka_unit_test(test_slot_migration_under_load),
		cmocka_unit_test(test_two_vms),
		cmocka_unit_test(test_paused_attach),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
