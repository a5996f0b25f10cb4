// SPDX-License-Identifier: MIT
/*
 * Scale within a host (issue 13): the engine accepts RTIOREQ_MAX_VMS (64) VMs of 16
 * vCPUs, 1,024 slots; here 1, 16 and 64 VMs of 16 vCPUs, every slot on the one poller
 * of the engine CPU (a 2-CPU machine has one poller CPU), driven by the simulated
 * hypervisor (sim.h) on the first slot only, the others attached and idle:
 *  - the cost of scanning an idle slot: the poller's pass rate with every slot idle,
 *    from its own pass counter (rtioreq_poller_stats().loops, a relaxed store the poller
 *    does every pass anyway: nothing is added to the hot path), sampled around a sleep
 *    of the control thread on the other CPU; ns per slot = the slope between the
 *    smallest and the largest slot set (what a pass costs per slot added, the fixed
 *    per-pass work - RCU quiescent state, cpu_relax - cancels out);
 *  - a request when one poller owns 256 slots of which one is busy vs a poller owning
 *    that one slot: p50 and p99.9, interleaved;
 *  - the fallback dispatcher's wake-up with 64 VMs attached vs 1 VM, interleaved.
 */
#include "bench.h"

#define SC_VCPUS     16u
#define SC_SETTLE_NS 20000000ull /* the poller spins before its counter is sampled */

struct scan {
	uint64_t ns, loops; /* measured: wall time and passes */
};

static void scan_during(void *arg, struct rtioreq_engine *eng, struct rtioreq_vm *vm,
			struct rtioreq_poller *poller)
{
	struct scan *sc = arg;
	struct rtioreq_poller_stats a, b;
	uint64_t t0;

	(void)eng;
	(void)vm;
	bench_sleep_ns(SC_SETTLE_NS);
	rtioreq_poller_stats(poller, &a);
	t0 = bench_now_ns();
	bench_sleep_ns(sc->ns);
	rtioreq_poller_stats(poller, &b);
	sc->ns = bench_now_ns() - t0;
	sc->loops = b.loops - a.loops;
}

/* Idle passes of one poller over @vms VMs of SC_VCPUS slots for @ns: ns per pass. */
static double scan_pass_ns(unsigned int vms, uint64_t ns)
{
	struct scan sc = {.ns = ns};
	struct bench_run r = {.polling = true,
			      .vcpus = SC_VCPUS,
			      .idle_vms = vms - 1,
			      .idle_vcpus = SC_VCPUS,
			      .idle = true,
			      .producer_cpu = bench_cfg.producer_cpu,
			      .poller_cpu = bench_cfg.engine_cpu,
			      .during = scan_during,
			      .arg = &sc};

	bench_engine_run(&r);
	free(r.res);
	if (!sc.loops) { /* starved by the host or another process: the slice counts not */
		printf("# the poller made no pass over %u slots in %lu ns: slice skipped\n",
		       vms * SC_VCPUS, (unsigned long)sc.ns);
		return 0;
	}
	return (double)sc.ns / (double)sc.loops;
}

static void scale_scan(void)
{
	static const unsigned int vms[] = {1, 16, 64};
	enum { NV = sizeof(vms) / sizeof(vms[0]) };
	static double t[NV][BENCH_MAX_SLICES];
	unsigned int slices = bench_cfg.slices;
	const unsigned int last = NV - 1;

	printf("# idle scan: %u slices, each VM count in turn (order reversed every other "
	       "slice), %.0f ms of passes each\n",
	       slices, (double)bench_cfg.slice_ns / 1e6);
	for (unsigned int i = 0; i < slices; i++)
		for (unsigned int j = 0; j < NV; j++) {
			unsigned int k = bench_slice_order(i, j, NV);

			t[k][i] = scan_pass_ns(vms[k], bench_cfg.slice_ns);
		}
	bench_res.nscan = NV;
	for (unsigned int k = 0; k < NV; k++) {
		struct bench_scan_row *row = &bench_res.scan[k];
		double v[BENCH_MAX_SLICES];
		unsigned int n = 0;

		for (unsigned int i = 0; i < slices; i++)
			if (t[k][i] > 0)
				v[n++] = t[k][i];
		row->vms = vms[k];
		row->slots = vms[k] * SC_VCPUS;
		row->ns_per_pass = bench_median(v, n);
		row->ns_per_slot = row->ns_per_pass / row->slots;
		printf("#   %2u VMs, %4u idle slots: %.1f ns per pass, %.2f ns per slot\n",
		       row->vms, row->slots, row->ns_per_pass, row->ns_per_slot);
		printf("SUMMARY bench=scan vms=%u slots=%u ns_per_pass=%.1f ns_per_slot=%.3f\n",
		       row->vms, row->slots, row->ns_per_pass, row->ns_per_slot);
	}
	{
		/* the slope, per slice, then its median */
		double v[BENCH_MAX_SLICES];
		unsigned int ds = bench_res.scan[last].slots - bench_res.scan[0].slots, n = 0;

		for (unsigned int i = 0; i < slices; i++)
			if (t[last][i] > 0 && t[0][i] > 0)
				v[n++] = (t[last][i] - t[0][i]) / ds;
		if (!n) { /* reported as not measured; the rest of the run goes on */
			printf("# idle slot: not measured: no slice measured both the smallest and "
			       "the largest slot set (the poller got no CPU)\n");
			bench_res.nscan = 0;
			return;
		}
		bench_res.scan_ns_per_idle_slot = bench_median(v, n);
		printf("# idle slot: %.3f ns per slot per pass [%.3f..%.3f] (slope %u -> %u "
		       "slots; goal <= 2 ns: %s)\n",
		       bench_res.scan_ns_per_idle_slot, v[0], v[n - 1],
		       bench_res.scan[0].slots, bench_res.scan[last].slots,
		       bench_res.scan_ns_per_idle_slot <= 2 ? "met" : "NOT met");
		printf("SUMMARY bench=scan-idle-slot unit=ns/slot/pass value=%.3f min=%.3f "
		       "max=%.3f slices=%u goal_max=2 met=%d\n",
		       bench_res.scan_ns_per_idle_slot, v[0], v[n - 1], n,
		       bench_res.scan_ns_per_idle_slot <= 2);
	}
}

void bench_scale(void)
{
	struct bench_engine_side *es = calloc(4, sizeof(*es));
	struct bench_side s[2];
	char topo[240];

	if (!es)
		bench_die("out of memory");
	snprintf(topo, sizeof(topo),
		 "scale: 1, 16, 64 VMs x %u vCPUs, every slot on one poller (CPU %d "
		 "SCHED_OTHER spinning); simulated hypervisor on CPU %d drives slot 0 of VM 1",
		 SC_VCPUS, bench_cfg.engine_cpu, bench_cfg.producer_cpu);
	bench_topology(topo);
	scale_scan();
	{
		static const struct bench_ratio_spec rs[] = {
		    {"scale_poll256_p50_over_poll1_p50",
		     "Polling, 1 busy slot among 256 on the poller / the poller owning 1 slot, "
		     "p50",
		     0, 1, false, 1.5},
		    {"scale_poll256_p999_over_poll1_p999",
		     "Polling, 1 busy slot among 256 on the poller / the poller owning 1 slot, "
		     "p99.9",
		     0, 1, true, 1.5},
		};

		bench_engine_side(&s[0], &es[0],
				  &(struct bench_run){.polling = true,
						      .vcpus = SC_VCPUS,
						      .sim_vcpus = 1,
						      .idle_vms = 256 / SC_VCPUS - 1,
						      .idle_vcpus = SC_VCPUS},
				  "scale-poll-256",
				  "rtioreq polling, 1 busy slot of 256 on the poller");
		bench_engine_side(&s[1], &es[1], &(struct bench_run){.polling = true, .vcpus = 1},
				  "scale-poll-1", "rtioreq polling, the poller owns 1 slot");
		s[0].d->plot = s[1].d->plot = false;
		bench_interleave(s, 2, rs, 2, false);
	}
	{
		static const struct bench_ratio_spec rs[] = {
		    {"scale_fallback64_p50_over_fallback1_p50",
		     "Fallback wake-up with 64 VMs attached / with 1 VM, p50, cpu_dma_latency=0", 0,
		     1, false, 0},
		    {"scale_fallback64_p999_over_fallback1_p999",
		     "Fallback wake-up with 64 VMs attached / with 1 VM, p99.9, "
		     "cpu_dma_latency=0",
		     0, 1, true, 0},
		};

		bench_engine_side(&s[0], &es[2],
				  &(struct bench_run){.vcpus = SC_VCPUS,
						      .sim_vcpus = 1,
						      .idle_vms = RTIOREQ_MAX_VMS - 1,
						      .idle_vcpus = SC_VCPUS},
				  "scale-fallback-64vm",
				  "rtioreq fallback, 64 VMs x 16 vCPUs attached, 1 slot driven, "
				  "cpu_dma_latency=0");
		bench_engine_side(&s[1], &es[3], &(struct bench_run){.vcpus = 1},
				  "scale-fallback-1vm",
				  "rtioreq fallback, 1 VM of 1 vCPU, cpu_dma_latency=0");
		s[0].d->plot = s[1].d->plot = false;
		bench_interleave(s, 2, rs, 2, true);
	}
	free(es);
}
