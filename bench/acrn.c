// SPDX-License-Identifier: MIT
/*
 * Baseline: ACRN's HSM I/O request dispatch (Linux drivers/virt/acrn/ioreq.c as posted
 * in the v6 series, shared/reference/acrn-hsm-ioreq-patch-v6-09-18.txt), re-implemented
 * in user space from its algorithm, on the same shared region, simulated hypervisor,
 * workload and example devices as rtioreq, so that only the dispatch differs:
 *
 *  - the upcall (the hypervisor's interrupt) schedules one deferred worker (the
 *    tasklet); here: the hypervisor rings the channel's upcall_seq futex (U1 + wake),
 *    one worker thread sleeps on it;
 *  - the worker, under read_lock(acrn_vm_list_lock), scans every slot of every VM for
 *    PENDING (acquire) and for each takes vm->ioreq_clients_lock and calls
 *    find_ioreq_client(): a linear walk over the clients, each client's range list
 *    walked under read_lock(client->range_lock), matching against the shared slot;
 *    no match gives the default client;
 *  - it sets kernel_handled, stores PROCESSING (release), set_bit() in the client's
 *    ioreqs_map and wakes the client's wait queue;
 *  - each client has its own handler thread (ioreq_task): it waits for a pending bit,
 *    calls the handler on the shared slot, clear_bit(), reads completion_polling,
 *    stores COMPLETE (release) and, unless the hypervisor polls, sends the
 *    notification (hcall_notify_req_finish; here: done_seq += 1 + FUTEX_WAKE, exactly
 *    rtioreq's notification, so the hypervisor side is identical).
 *
 * Kernel primitives map to user-space ones: rwlock_t -> pthread_rwlock_t, spinlock_t
 * (spin_lock_bh) -> pthread_mutex_t, wait queues -> futexes (a wake only when the map
 * goes from empty to non-empty, as rtioreq's assignment does; the waiter re-checks the
 * map before sleeping, so no wake-up is lost). Deviation: ACRN's dispatch returns
 * -EINVAL and leaves the vCPU hanging when no client matches and there is no default
 * client; here such a request completes with all ones (the benchmark workload never
 * sends one: 0% unmapped by default).
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>

#include "bench.h"
#include "core/engine_pvt.h"
#include "sys/futex_pvt.h"
#include "core/ranges_pvt.h"

struct acrn_range {
	struct acrn_range *next;
	uint32_t type;
	uint64_t start, end; /* inclusive */
};

struct acrn_vm;
struct acrn_client;
typedef int (*acrn_handler_fn)(struct acrn_client *c, struct rtioreq_io_request *req);

struct acrn_client {
	_Atomic uint32_t ioreqs_map __attribute__((aligned(BENCH_CACHELINE))); /* + futex */
	_Atomic bool stop;
	pthread_rwlock_t range_lock __attribute__((aligned(BENCH_CACHELINE)));
	struct acrn_range *range_list;
	struct acrn_client *next;
	struct acrn_vm *vm;
	acrn_handler_fn handler;
	void *priv;
	bool is_default;
	pthread_t thread;
};

struct acrn_vm {
	struct rtioreq_shm_region *region;
	uint16_t vcpu_num;
	pthread_mutex_t clients_lock; /* vm->ioreq_clients_lock */
	struct acrn_client *clients;
	struct acrn_client *default_client;
};

struct acrn_hsm {
	pthread_rwlock_t vm_list_lock; /* acrn_vm_list_lock */
	struct acrn_vm *vm;	       /* the VM list: one VM here */
	_Atomic bool stop;
	pthread_t worker;
};

static bool in_range(const struct acrn_range *range, const struct rtioreq_io_request *req)
{
	const volatile struct rtioreq_io_request *r = req;

	if (range->type != r->type)
		return false;
	switch (r->type) {
	case RTIOREQ_TYPE_MMIO:
		return r->reqs.mmio_request.address >= range->start &&
		       r->reqs.mmio_request.address + r->reqs.mmio_request.size - 1 <= range->end;
	case RTIOREQ_TYPE_PORTIO:
		return r->reqs.pio_request.address >= range->start &&
		       r->reqs.pio_request.address + r->reqs.pio_request.size - 1 <= range->end;
	default:
		return false;
	}
}

/* find_ioreq_client(): call with vm->clients_lock held. */
static struct acrn_client *acrn_find_client(struct acrn_vm *vm,
					    const struct rtioreq_io_request *req)
{
	struct acrn_client *found = NULL;

	for (struct acrn_client *c = vm->clients; c && !found; c = c->next) {
		pthread_rwlock_rdlock(&c->range_lock);
		for (const struct acrn_range *r = c->range_list; r; r = r->next) {
			if (in_range(r, req)) {
				found = c;
				break;
			}
		}
		pthread_rwlock_unlock(&c->range_lock);
	}
	return found ? found : vm->default_client;
}

static void acrn_complete(struct acrn_vm *vm, uint16_t vcpu, struct rtioreq_io_request *req)
{
	/* read before COMPLETE: the hypervisor may reuse the slot right after */
	bool polling = ((volatile struct rtioreq_io_request *)req)->completion_polling != 0;

	atomic_store_explicit(rtioreq_wire_atomic(&req->processed), RTIOREQ_STATE_COMPLETE,
			      memory_order_release); /* smp_store_release(); pairs with H2 */
	if (!polling) {				     /* hcall_notify_req_finish() */
		_Atomic uint32_t *w = rtioreq_wire_atomic(&vm->region->chan.done_seq[vcpu].word);

		atomic_fetch_add_explicit(w, 1, memory_order_release);
		rtioreq__futex_wake(w, INT_MAX, true);
	}
}

/* acrn_ioreq_dispatch() */
static void acrn_dispatch(struct acrn_vm *vm)
{
	for (uint16_t i = 0; i < vm->vcpu_num; i++) {
		struct rtioreq_io_request *req = &vm->region->page.req_slot[i];
		struct acrn_client *c;
		uint32_t old;

		/* smp_load_acquire(); pairs with the hypervisor's H1 */
		if (atomic_load_explicit(rtioreq_wire_atomic(&req->processed),
					 memory_order_acquire) != RTIOREQ_STATE_PENDING)
			continue;
		pthread_mutex_lock(&vm->clients_lock);
		c = acrn_find_client(vm, req);
		if (!c) { /* deviation, see the file header */
			req->reqs.pio_request.value = ~0u;
			req->reqs.mmio_request.value = ~0ull;
			pthread_mutex_unlock(&vm->clients_lock);
			acrn_complete(vm, i, req);
			continue;
		}
		req->kernel_handled = !c->is_default;
		atomic_store_explicit(rtioreq_wire_atomic(&req->processed),
				      RTIOREQ_STATE_PROCESSING, memory_order_release);
		/* set_bit() + wake_up_interruptible(); release: the slot state before the bit */
		old = atomic_fetch_or_explicit(&c->ioreqs_map, 1u << i, memory_order_release);
		if (!old)
			rtioreq__futex_wake(&c->ioreqs_map, 1, false);
		pthread_mutex_unlock(&vm->clients_lock);
	}
}

/* The tasklet: runs again whenever an upcall arrived since it last read the doorbell. */
static void *acrn_worker(void *arg)
{
	struct acrn_hsm *hsm = arg;
	_Atomic uint32_t *up = rtioreq_wire_atomic(&hsm->vm->region->chan.upcall_seq.word);

	for (;;) {
		/* acquire: pairs with the hypervisor's U1 */
		uint32_t seq = atomic_load_explicit(up, memory_order_acquire);
		struct futex_waitv wv;

		/* relaxed: a stop signal, followed by a doorbell ring */
		if (atomic_load_explicit(&hsm->stop, memory_order_relaxed))
			break;
		pthread_rwlock_rdlock(&hsm->vm_list_lock);
		acrn_dispatch(hsm->vm);
		pthread_rwlock_unlock(&hsm->vm_list_lock);
		rtioreq__futex_waitv_set(&wv, up, seq, true);
		rtioreq__futex_waitv(&wv, 1, NULL);
	}
	return NULL;
}

/* ioreq_task() */
static void *acrn_client_main(void *arg)
{
	struct acrn_client *c = arg;
	struct acrn_vm *vm = c->vm;

	for (;;) {
		uint32_t map;

		/* acrn_ioreq_client_wait(): acquire pairs with the worker's set_bit */
		while (!(map = atomic_load_explicit(&c->ioreqs_map, memory_order_acquire)) &&
		       !atomic_load_explicit(&c->stop, memory_order_relaxed))
			rtioreq__futex_wait(&c->ioreqs_map, 0, NULL, false);
		if (!map)
			break; /* kthread_should_stop() */
		while ((map = atomic_load_explicit(&c->ioreqs_map, memory_order_acquire))) {
			uint16_t vcpu = (uint16_t)__builtin_ctz(map);
			struct rtioreq_io_request *req = &vm->region->page.req_slot[vcpu];

			if (c->handler(c, req) < 0)
				break;
			atomic_fetch_and_explicit(&c->ioreqs_map, ~(1u << vcpu),
						  memory_order_relaxed); /* clear_bit() */
			acrn_complete(vm, vcpu, req);
		}
	}
	return NULL;
}

/* The example devices behind ACRN's handler signature: the handler reads the slot. */
static int acrn_exdev_handler(struct acrn_client *c, struct rtioreq_io_request *slot)
{
	volatile struct rtioreq_io_request *s = slot;
	struct rtioreq_req r = {.type = s->type};
	int rc;

	r.vcpu = (uint16_t)(slot - c->vm->region->page.req_slot);
	if (r.type == RTIOREQ_TYPE_MMIO) {
		r.dir = s->reqs.mmio_request.direction;
		r.addr = s->reqs.mmio_request.address;
		r.size = (uint32_t)s->reqs.mmio_request.size;
		r.value = s->reqs.mmio_request.value;
		rc = rtioreq_exdev_ram_handler(NULL, &r, c->priv);
		if (!rc && r.dir == RTIOREQ_DIR_READ)
			s->reqs.mmio_request.value = r.value;
	} else {
		r.dir = s->reqs.pio_request.direction;
		r.addr = s->reqs.pio_request.address;
		r.size = (uint32_t)s->reqs.pio_request.size;
		r.value = s->reqs.pio_request.value;
		rc = rtioreq_exdev_port_handler(NULL, &r, c->priv);
		if (!rc && r.dir == RTIOREQ_DIR_READ)
			s->reqs.pio_request.value = (uint32_t)r.value;
	}
	return rc;
}

static struct acrn_client *acrn_client_create(struct acrn_vm *vm, acrn_handler_fn fn, void *priv)
{
	struct acrn_client *c = aligned_alloc(BENCH_CACHELINE, sizeof(*c));

	if (!c)
		bench_die("out of memory");
	memset(c, 0, sizeof(*c));
	c->vm = vm;
	c->handler = fn;
	c->priv = priv;
	pthread_rwlock_init(&c->range_lock, NULL);
	if (fn)
		bench_thread_start(&c->thread, bench_cfg.engine_cpu, bench_cfg.prio, "acrn-client",
				   acrn_client_main, c);
	pthread_mutex_lock(&vm->clients_lock);
	c->next = vm->clients; /* list_add() */
	vm->clients = c;
	pthread_mutex_unlock(&vm->clients_lock);
	return c;
}

static void acrn_range_add(struct acrn_client *c, uint32_t type, uint64_t start, uint64_t end)
{
	struct acrn_range *r = malloc(sizeof(*r));

	if (!r)
		bench_die("out of memory");
	r->type = type;
	r->start = start;
	r->end = end;
	pthread_rwlock_wrlock(&c->range_lock);
	r->next = c->range_list; /* list_add() */
	c->range_list = r;
	pthread_rwlock_unlock(&c->range_lock);
}

static void acrn_client_free(struct acrn_client *c)
{
	while (c->range_list) {
		struct acrn_range *r = c->range_list;

		c->range_list = r->next;
		free(r);
	}
	pthread_rwlock_destroy(&c->range_lock);
	free(c);
}

/*
 * One ACRN-style HSM, built, run for @warm_ns then @ns through the simulated hypervisor
 * (1 vCPU), and torn down; the measured run's result in @res.
 * /dev/cpu_dma_latency is the caller's.
 */
static void acrn_run(bool completion_polling, uint64_t warm_ns, uint64_t ns,
		     struct rtioreq_sim_result *res)
{
	struct rtioreq_exdev *dev = bench_zalloc_line(sizeof(*dev));
	struct rtioreq_exdev_oracle *oracle = bench_zalloc_line(sizeof(*oracle));
	struct acrn_hsm *hsm = calloc(1, sizeof(*hsm));
	struct acrn_vm *vm = calloc(1, sizeof(*vm));
	struct rtioreq_sim_attr sa;
	struct rtioreq_shm shm;
	int rc;

	if (!hsm || !vm)
		bench_die("out of memory");
	rc = rtioreq_shm_create(&shm, NULL, 1);
	if (rc)
		bench_die("shared region: %s", strerror(-rc));
	vm->region = shm.region;
	vm->vcpu_num = 1;
	pthread_mutex_init(&vm->clients_lock, NULL);
	pthread_rwlock_init(&hsm->vm_list_lock, NULL);
	hsm->vm = vm;
	/* the same two devices and ranges as rtioreq_exdev_attach() */
	acrn_range_add(acrn_client_create(vm, acrn_exdev_handler, dev), RTIOREQ_TYPE_MMIO,
		       RTIOREQ_EXDEV_RAM_BASE, RTIOREQ_EXDEV_RAM_BASE + RTIOREQ_EXDEV_RAM_SIZE - 1);
	acrn_range_add(acrn_client_create(vm, acrn_exdev_handler, dev), RTIOREQ_TYPE_PORTIO,
		       RTIOREQ_EXDEV_PORT, RTIOREQ_EXDEV_PORT + 3);
	bench_thread_start(&hsm->worker, bench_cfg.engine_cpu, bench_cfg.prio, "acrn-worker",
			   acrn_worker, hsm);

	rtioreq_exdev_oracle_init(oracle, 1, bench_cfg.unmapped);
	sa = (struct rtioreq_sim_attr){
	    .region = shm.region,
	    .vcpu_num = 1,
	    .producers = 1,
	    .completion_polling = completion_polling,
	    .producer_cpu = {bench_cfg.producer_cpu, -1, -1, -1},
	    .wl = {rtioreq_exdev_gen, oracle},
	};
	for (int pass = warm_ns ? 0 : 1; pass < 2; pass++) {
		sa.duration_ns = pass ? ns : warm_ns;
		rc = rtioreq_sim_run(&sa, res);
		if (rc)
			bench_die("simulated hypervisor: %s", strerror(-rc));
		if (res->lost || res->duplicated || res->mismatched ||
		    res->completed != res->requests)
			bench_die(
			    "ACRN baseline: requests %lu completed %lu lost %lu duplicated %lu "
			    "mismatched %lu",
			    (unsigned long)res->requests, (unsigned long)res->completed,
			    (unsigned long)res->lost, (unsigned long)res->duplicated,
			    (unsigned long)res->mismatched);
	}

	/* stop: worker, then the client threads (kthread_stop) */
	atomic_store_explicit(&hsm->stop, true, memory_order_relaxed);
	rtioreq_hv_upcall(shm.region);
	pthread_join(hsm->worker, NULL);
	for (struct acrn_client *c = vm->clients, *n; c; c = n) {
		n = c->next;
		atomic_store_explicit(&c->stop, true, memory_order_relaxed);
		rtioreq__futex_wake(&c->ioreqs_map, INT_MAX, false);
		pthread_join(c->thread, NULL);
		acrn_client_free(c);
	}
	pthread_mutex_destroy(&vm->clients_lock);
	pthread_rwlock_destroy(&hsm->vm_list_lock);
	rtioreq_shm_close(&shm);
	free(vm);
	free(hsm);
	free(oracle);
	free(dev);
}

void bench_acrn_topology(bool completion_polling)
{
	char topo[300];

	snprintf(topo, sizeof(topo),
		 "ACRN-style baseline: worker (tasklet) + 2 client threads "
		 "CPU %d %s %d, simulated hypervisor CPU %d SCHED_OTHER %s",
		 bench_cfg.engine_cpu, bench_cfg.prio ? "SCHED_FIFO" : "SCHED_OTHER",
		 bench_cfg.prio, bench_cfg.producer_cpu,
		 completion_polling ? "spinning for COMPLETE" : "sleeping on done_seq");
	bench_topology(topo);
}

uint64_t bench_acrn_slice(void *arg, uint64_t ns, struct rtioreq_hist *h)
{
	struct rtioreq_sim_result *res = calloc(1, sizeof(*res));
	uint64_t t;

	(void)arg;
	if (!res)
		bench_die("out of memory");
	acrn_run(false, bench_cfg.slice_warm_ns, ns, res);
	rtioreq_hist_merge(h, &res->rtt);
	t = res->ns;
	free(res);
	return t;
}

void bench_acrn_cpoll(void)
{
	struct rtioreq_sim_result *res = calloc(1, sizeof(*res));
	struct bench_dist *d;
	char extra[120];

	if (!res)
		bench_die("out of memory");
	d = bench_dist_new("acrn-cpoll", "ACRN-style HSM, completion polling, 1 vCPU",
			   "ns per request (round trip)");
	bench_acrn_topology(true);
	acrn_run(true, bench_cfg.warm_ns, bench_cfg.run_ns, res);
	d->h = res->rtt;
	d->ns = res->ns;
	snprintf(extra, sizeof(extra), "vcpus=1 upcalls=%lu", (unsigned long)res->upcalls);
	bench_dist_print(d, extra);
	free(res);
}

/* ---------------------------------------------------------------------------------- */
/* Lookup scaling: rtioreq's RCU range table vs find_ioreq_client() */

#define LK_ADDRS  4096u /* random addresses, cycled; a power of two */
#define LK_BASE	  0x100000000ull
#define LK_STRIDE 0x1000ull

static struct rtioreq_client *fake_client(unsigned int i)
{
	/* never dereferenced by a lookup: only compared */
	return (struct rtioreq_client *)(uintptr_t)(0x1000u + 64u * (i + 1));
}

static uint64_t lk_rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* ns per lookup of what a taker does per request (M2 + lookup), for @budget ns. */
static double lk_time_rtioreq(_Atomic(struct rtioreq__map *) *pub, const uint64_t *addr,
			      uint64_t budget, uint64_t *sink, uint64_t *lookups)
{
	uint64_t iters = 0, t0 = bench_now_ns(), t1;

	do {
		for (unsigned int k = 0; k < LK_ADDRS; k++) {
			/* M2 as a taker does it: pairs with the release store of @pub */
			const struct rtioreq__map *mm =
			    atomic_load_explicit(pub, memory_order_acquire);

			*sink += (uintptr_t)rtioreq__map_lookup(mm, RTIOREQ_TYPE_MMIO, addr[k], 4);
		}
		iters += LK_ADDRS;
		t1 = bench_now_ns();
	} while (t1 - t0 < budget);
	*lookups += iters;
	return (double)(t1 - t0) / (double)iters;
}

void bench_lookup(void)
{
	static const unsigned int sizes[] = {1, 10, 100, 1000, 10000};
	const unsigned int repeats = 5, max_clients = 8;
	uint64_t *addr = malloc(LK_ADDRS * sizeof(*addr));
	unsigned int *want = malloc(LK_ADDRS * sizeof(*want));
	uint64_t seed = 0x2545f4914f6cdd1dull;
	cpu_set_t saved;

	if (!addr || !want)
		bench_die("out of memory");
	/* lookups run on the engine's CPU: pin there for the phase, restore after */
	if (sched_getaffinity(0, sizeof(saved), &saved))
		bench_die("sched_getaffinity: %s", strerror(errno));
	bench_pin_self(bench_cfg.engine_cpu);
	bench_res.cpu_step_ns[0] = bench_cpu_step_ns();
	printf("# lookup scaling: rtioreq__map_lookup() (acquire load of the map + "
	       "bisection below 256 ranges, B+ tree of 64-byte nodes from there on, each node "
	       "compared with AVX2 where the CPU has it, else scalar; no lock) vs "
	       "ACRN find_ioreq_client() (mutex + per-client rwlock + "
	       "linear list walk, matching against a slot); %u random MMIO addresses, each "
	       "inside a range; ranges spread round-robin over min(n, %u) clients; "
	       "one thread on CPU %d; median of %u repeats; unit: ns per lookup\n",
	       LK_ADDRS, max_clients, bench_cfg.engine_cpu, repeats);
	for (unsigned int si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		unsigned int n = sizes[si], nc = n < max_clients ? n : max_clients;
		struct bench_lookup_row *row = &bench_res.lookup[bench_res.nlookup++];
		struct rtioreq__map *m = rtioreq__map_empty(), *m2;
		_Atomic(struct rtioreq__map *) pub;
		struct acrn_vm avm = {0};
		struct acrn_client **cl = calloc(nc, sizeof(*cl));
		struct rtioreq_io_request *slot = aligned_alloc(256, sizeof(*slot));
		double t_r[8], t_a[8], t_s[8];
		uint64_t sink = 0, wrong = 0;
		struct bench_noise noise;

		if (!m || !cl || !slot)
			bench_die("out of memory");
		memset(slot, 0, sizeof(*slot));
		pthread_mutex_init(&avm.clients_lock, NULL);
		for (unsigned int c = 0; c < nc; c++) {
			cl[c] = aligned_alloc(BENCH_CACHELINE, sizeof(**cl));
			if (!cl[c])
				bench_die("out of memory");
			memset(cl[c], 0, sizeof(**cl));
			pthread_rwlock_init(&cl[c]->range_lock, NULL);
			cl[c]->vm = &avm;
		}
		/* list order: client nc-1 first (list_add prepends), as ACRN would hold them */
		for (unsigned int c = 0; c < nc; c++) {
			cl[c]->next = avm.clients;
			avm.clients = cl[c];
		}
		for (unsigned int i = 0; i < n; i++) {
			uint64_t s = LK_BASE + i * LK_STRIDE;
			int rc = rtioreq__map_add(m, RTIOREQ_TYPE_MMIO, s, s + LK_STRIDE - 1,
						  fake_client(i % nc), &m2, NULL);

			if (rc)
				bench_die("rtioreq__map_add: %s", strerror(-rc));
			rtioreq__map_free(m); /* never published */
			m = m2;
			acrn_range_add(cl[i % nc], RTIOREQ_TYPE_MMIO, s, s + LK_STRIDE - 1);
		}
		atomic_store_explicit(&pub, m, memory_order_release);
		for (unsigned int k = 0; k < LK_ADDRS; k++) {
			unsigned int r = (unsigned int)(lk_rng(&seed) % n);

			addr[k] = LK_BASE + r * LK_STRIDE + (lk_rng(&seed) % (LK_STRIDE / 4)) * 4;
			want[k] = r % nc;
		}
		slot->type = RTIOREQ_TYPE_MMIO;
		slot->reqs.mmio_request.size = 4;
		/* correctness first: both must find the owner of every address */
		for (unsigned int k = 0; k < LK_ADDRS; k++) {
			struct acrn_client *f;

			slot->reqs.mmio_request.address = addr[k];
			f = acrn_find_client(&avm, slot);
			wrong += rtioreq__map_lookup(m, RTIOREQ_TYPE_MMIO, addr[k], 4) !=
				 fake_client(want[k]);
			wrong += f != cl[want[k]];
		}
		{ /* and with the scalar descent the scalar column times */
			uint32_t avx2 = m->avx2;

			m->avx2 = 0;
			for (unsigned int k = 0; k < LK_ADDRS; k++)
				wrong += rtioreq__map_lookup(m, RTIOREQ_TYPE_MMIO, addr[k], 4) !=
					 fake_client(want[k]);
			m->avx2 = avx2;
		}
		bench_noise_start(&noise);
		for (unsigned int rep = 0; rep < repeats; rep++) {
			uint64_t iters, t0, t1, budget = (uint64_t)(bench_cfg.lookup_ms * 1e6);
			uint32_t avx2 = m->avx2;

			t_r[rep] = lk_time_rtioreq(&pub, addr, budget, &sink, &row->lookups_rtioreq);
			m->avx2 = 0; /* the scalar descent, as a CPU without AVX2 runs it */
			t_s[rep] = lk_time_rtioreq(&pub, addr, budget, &sink, &row->lookups_scalar);
			m->avx2 = avx2;

			iters = 0;
			t0 = bench_now_ns();
			do { /* ACRN: what acrn_ioreq_dispatch() does per request */
				for (unsigned int k = 0; k < LK_ADDRS; k++) {
					slot->reqs.mmio_request.address = addr[k];
					pthread_mutex_lock(&avm.clients_lock);
					sink += (uintptr_t)acrn_find_client(&avm, slot);
					pthread_mutex_unlock(&avm.clients_lock);
					iters++;
					if (n >= 1000 && (k & 63) == 63 &&
					    bench_now_ns() - t0 >= budget)
						break;
				}
				t1 = bench_now_ns();
			} while (t1 - t0 < budget);
			t_a[rep] = (double)(t1 - t0) / (double)iters;
			row->lookups_acrn += iters;
		}
		row->foreign_pct = bench_noise_foreign_pct(&noise);
		row->ranges = n;
		row->acrn_clients = nc;
		row->rtioreq_ns = bench_median(t_r, repeats);
		row->scalar_ns = bench_median(t_s, repeats);
		row->avx2 = m->avx2 && n >= RTIOREQ__MAP_DESCEND_MIN;
		row->acrn_ns = bench_median(t_a, repeats);
		row->rtioreq_min_ns = t_r[0];
		row->acrn_min_ns = t_a[0];
		row->wrong = wrong;
		printf("#   %5u ranges: rtioreq %.1f ns (%s; scalar forced %.1f ns), ACRN scan "
		       "%.1f ns per lookup (x%.1f); wrong answers %lu; other processes %.1f%% of "
		       "the CPUs\n",
		       n, row->rtioreq_ns,
		       n < RTIOREQ__MAP_DESCEND_MIN ? "bisection" : row->avx2 ? "AVX2" : "scalar",
		       row->scalar_ns,
		       row->acrn_ns, row->acrn_ns / row->rtioreq_ns, (unsigned long)wrong,
		       row->foreign_pct);
		printf("SUMMARY bench=lookup unit=ns/lookup ranges=%u clients=%u rtioreq=%.2f "
		       "rtioreq_scalar=%.2f avx2=%d acrn=%.2f rtioreq_min=%.2f acrn_min=%.2f "
		       "wrong=%lu foreign_cpu_pct=%.1f sink=%lu\n",
		       n, nc, row->rtioreq_ns, row->scalar_ns, row->avx2, row->acrn_ns,
		       row->rtioreq_min_ns, row->acrn_min_ns, (unsigned long)wrong,
		       row->foreign_pct, (unsigned long)(sink & 1));
		if (wrong)
			bench_die("lookup: %lu wrong answers at %u ranges", (unsigned long)wrong,
				  n);
		rtioreq__map_free(m);
		for (unsigned int c = 0; c < nc; c++)
			acrn_client_free(cl[c]);
		pthread_mutex_destroy(&avm.clients_lock);
		free(cl);
		free(slot);
	}
	bench_res.cpu_step_ns[1] = bench_cpu_step_ns();
	printf("# CPU speed check on CPU %d: %.3f ns per dependent multiply-add step before "
	       "the lookups, %.3f after (the same machine at full speed: the same figure; a "
	       "slowed vCPU: larger)\n",
	       bench_cfg.engine_cpu, bench_res.cpu_step_ns[0], bench_res.cpu_step_ns[1]);
	printf("SUMMARY bench=cpu_step unit=ns before=%.3f after=%.3f\n",
	       bench_res.cpu_step_ns[0], bench_res.cpu_step_ns[1]);
	if (sched_setaffinity(0, sizeof(saved), &saved))
		bench_die("sched_setaffinity: %s", strerror(errno));
	free(addr);
	free(want);
}
