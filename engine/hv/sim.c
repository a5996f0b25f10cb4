// SPDX-License-Identifier: MIT
/*
 * Simulated hypervisor: producer threads that play the vCPUs of one VM by the
 * hypervisor rules (shm.h). A producer fills every FREE slot it owns, rings one upcall
 * for the batch if any slot needs it, then harvests completions: spinning when the
 * requests asked for completion polling, else sleeping on the vCPUs' completion
 * notifications.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rtioreq/hv/sim.h"
#include "sys/clock_pvt.h"
#include "sys/cpu_pvt.h"
#include "sys/thread_pvt.h"

struct producer {
	const struct rtioreq_sim_attr *a;
	uint32_t mine; /* vCPU bits */
	uint64_t quota[RTIOREQ_IO_REQUEST_MAX];
	uint64_t deadline; /* ns, 0: none */
	struct rtioreq_sim_result res;
	pthread_t thread;
};

static bool op_ok(const struct rtioreq_sim_op *op, uint64_t value)
{
	uint64_t mask = rtioreq_size_mask(op->req.size);

	if (op->req.dir == RTIOREQ_DIR_WRITE)
		return true;
	value &= mask;
	switch (op->check) {
	case RTIOREQ_SIM_CHECK_EQ:
		return value == (op->expect & mask);
	case RTIOREQ_SIM_CHECK_EQ_OR_ALT:
		return value == (op->expect & mask) || value == (op->expect_alt & mask);
	default:
		return true;
	}
}

static void *producer_main(void *arg)
{
	struct producer *p = arg;
	const struct rtioreq_sim_attr *a = p->a;
	struct rtioreq_shm_region *r = a->region;
	struct rtioreq_sim_result *res = &p->res;
	uint64_t stranded = a->stranded_ns ? a->stranded_ns : 5000000000ull;
	struct rtioreq_sim_op op[RTIOREQ_IO_REQUEST_MAX];
	uint64_t k[RTIOREQ_IO_REQUEST_MAX] = { 0 }, t0[RTIOREQ_IO_REQUEST_MAX];
	uint64_t ready[RTIOREQ_IO_REQUEST_MAX] = { 0 }, rng = 0x9e3779b97f4a7c15ull ^ p->mine;
	uint32_t seen[RTIOREQ_IO_REQUEST_MAX] = { 0 };
	uint32_t out = 0, dead = 0;

	for (;;) {
		uint64_t now = rtioreq__now_ns();
		bool time_up = p->deadline && now >= p->deadline, ring = false;
		unsigned int got = 0;

		/* fill every FREE slot that still has work */
		for (uint32_t m = p->mine & ~out & ~dead; m; m &= m - 1) {
			uint16_t v = (uint16_t)__builtin_ctz(m);
			int rc;

			if (time_up || k[v] >= p->quota[v] || now < ready[v])
				continue;
			a->wl.gen(a->wl.ctx, v, k[v], &op[v]);
			t0[v] = rtioreq__now_ns();
			rc = rtioreq_hv_submit(r, v, &op[v].req, a->completion_polling, false);
			if (rc == -EBUSY) {
				/* not FREE although we freed it: completed a second time */
				res->duplicated++;
				rtioreq_hv_release(r, v);
				continue;
			}
			k[v]++;
			res->requests++;
			out |= 1u << v;
			ring |= rc == 1;
		}
		if (ring) {
			rtioreq_hv_upcall(r);
			res->upcalls++;
		}
		if (!out) {
			bool more = false;

			for (uint32_t m = p->mine & ~dead; m; m &= m - 1)
				more |= !time_up && k[__builtin_ctz(m)] < p->quota[__builtin_ctz(m)];
			if (!more)
				break;
			continue;
		}
		/* harvest: done_seq before the state, so a notification after the check
		 * makes the wait return at once */
		if (!a->completion_polling)
			for (uint32_t m = out; m; m &= m - 1)
				seen[__builtin_ctz(m)] = rtioreq_hv_done_seq(r, (uint16_t)__builtin_ctz(m));
		for (uint32_t m = out; m; m &= m - 1) {
			uint16_t v = (uint16_t)__builtin_ctz(m);
			uint64_t value;

			if (!rtioreq_hv_poll(r, v, op[v].req.type, &value))
				continue;
			rtioreq_hist_record(&res->rtt, rtioreq__now_ns() - t0[v]);
			if (!op_ok(&op[v], value))
				res->mismatched++;
			rtioreq_hv_release(r, v);
			out &= ~(1u << v);
			res->completed++;
			if (a->think_ns && a->think_all) {
				rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17; /* xorshift */
				ready[v] = rtioreq__now_ns() + (rng >> 11) % (2 * a->think_ns + 1);
			} else if (a->think_ns) {
				rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17; /* xorshift */
				ready[v] = (rng & 7) ? 0
						     : rtioreq__now_ns() + (rng >> 11) % (16 * a->think_ns + 1);
			}
			got++;
		}
		if (got)
			continue;
		now = rtioreq__now_ns();
		for (uint32_t m = out; m; m &= m - 1) {
			uint16_t v = (uint16_t)__builtin_ctz(m);

			if (now - t0[v] > stranded) {
				res->lost++; /* the vCPU hangs: abandon it */
				dead |= 1u << v;
				out &= ~(1u << v);
			}
		}
		if (a->completion_polling)
			rtioreq__cpu_relax();
		else if (out)
			rtioreq_hv_wait(r, out, seen, 10000000u);
	}
	return NULL;
}

int rtioreq_sim_run(const struct rtioreq_sim_attr *a, struct rtioreq_sim_result *res)
{
	unsigned int np = a->producers ? a->producers : 1;
	struct producer *p;
	uint64_t t0, deadline = 0;
	int r = 0;
	unsigned int started = 0;

	if (!a->region || !a->vcpu_num || a->vcpu_num > RTIOREQ_IO_REQUEST_MAX ||
	    np > a->vcpu_num || !a->wl.gen || (!a->requests && !a->duration_ns))
		return -EINVAL;
	p = calloc(np, sizeof(*p));
	if (!p)
		return -ENOMEM;
	t0 = rtioreq__now_ns();
	if (!a->requests)
		deadline = t0 + a->duration_ns;
	for (unsigned int i = 0; i < np; i++) {
		p[i].a = a;
		p[i].deadline = deadline;
		rtioreq_hist_init(&p[i].res.rtt);
	}
	for (uint16_t v = 0; v < a->vcpu_num; v++) {
		struct producer *q = &p[v % np];

		q->mine |= 1u << v;
		q->quota[v] = a->requests ? a->requests / a->vcpu_num +
						    (v < a->requests % a->vcpu_num)
					  : UINT64_MAX;
	}
	for (unsigned int i = 0; i < np; i++) {
		struct rtioreq_thread_attr ta = { .cpu = i < 4 ? a->producer_cpu[i] : -1 };

		r = rtioreq__thread_start(&p[i].thread, &ta, "rtioreq-vcpu", producer_main, &p[i]);
		if (r)
			break;
		started++;
	}
	memset(res, 0, sizeof(*res));
	rtioreq_hist_init(&res->rtt);
	for (unsigned int i = 0; i < started; i++) {
		pthread_join(p[i].thread, NULL);
		res->requests += p[i].res.requests;
		res->completed += p[i].res.completed;
		res->lost += p[i].res.lost;
		res->duplicated += p[i].res.duplicated;
		res->mismatched += p[i].res.mismatched;
		res->upcalls += p[i].res.upcalls;
		rtioreq_hist_merge(&res->rtt, &p[i].res.rtt);
	}
	res->ns = rtioreq__now_ns() - t0;
	free(p);
	if (r)
		return r;
	/* a completion arriving after the last harvest is a duplicate */
	{
		struct timespec ms = { 0, 1000000 };

		nanosleep(&ms, NULL);
	}
	for (uint16_t v = 0; v < a->vcpu_num; v++)
		if (rtioreq_hv_poll(a->region, v, 0, NULL))
			res->duplicated++;
	return 0;
}
