/* SPDX-License-Identifier: MIT */
/**
 * @file sim.h
 * Simulated hypervisor: the trap source of tests, the demo and benchmarks. Producer
 * threads play the vCPUs of one VM on a shared region (shm.h), following the
 * hypervisor rules; one producer drives many vCPU slots (fill every FREE slot it owns,
 * then harvest completions), so it runs on a box with fewer CPUs than vCPUs. Round
 * trip latency is measured per request from just before the PENDING store to the
 * COMPLETE observation.
 */
#ifndef RTIOREQ_SIM_H
#define RTIOREQ_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "rtioreq/core/engine.h"
#include "rtioreq/core/hist.h"
#include "rtioreq/hv/shm.h"
#include "rtioreq/common.h"

RTIOREQ_BEGIN_DECLS

/** What a read must return, decided when the request is generated. */
enum rtioreq_sim_check {
	RTIOREQ_SIM_CHECK_NONE = 0, /**< writes, or reads of unpredictable devices */
	RTIOREQ_SIM_CHECK_EQ,	    /**< value == expect */
	RTIOREQ_SIM_CHECK_EQ_OR_ALT /**< value == expect or value == expect_alt */
};

/**
 * One generated request and what its read must return. Library-allocated (zeroed once,
 * then handed to the same vCPU's gen for each request) and handed out by pointer only:
 * it may grow at the end, and a field gen does not know stays zero (rtioreq/common.h).
 */
struct rtioreq_sim_op {
	struct rtioreq_hv_req req;     /**< the request */
	uint64_t expect;	       /**< a read's value (by \p check) */
	uint64_t expect_alt;	       /**< the other acceptable value (EQ_OR_ALT) */
	enum rtioreq_sim_check check;  /**< how to check a read */
};

/**
 * Workload: generates request \p k of \p vcpu. Called only by the producer that owns
 * \p vcpu, in order k = 0, 1, 2, ...; a write's effect on the device can be applied to
 * the workload's shadow state right away (the next request of the vCPU comes after).
 * A fixed layout {function, context} pair, no reserved tail: it is embedded in struct
 * rtioreq_sim_attr, whose reserved tail takes any new workload hook.
 */
struct rtioreq_sim_workload {
	/** fill \p op with request \p k of \p vcpu */
	void (*gen)(void *ctx, uint16_t vcpu, uint64_t k, struct rtioreq_sim_op *op);
	void *ctx; /**< passed to gen */
};

/** A simulated run (zero-initialise). */
struct rtioreq_sim_attr {
	struct rtioreq_shm_region *region; /**< the region the engine serves */
	uint16_t vcpu_num;	   /**< 1..16 */
	unsigned int producers;	   /**< threads, >= 1; vCPU v belongs to producer v % n */
	uint64_t requests;	   /**< total over all vCPUs; 0: run for duration_ns */
	uint64_t duration_ns;	   /**< with requests == 0 */
	bool completion_polling;   /**< spin for COMPLETE (polling mode) or sleep for the
				    * completion notification (notify mode) */
	int producer_cpu[4];	   /**< CPU of producer i (i < 4), -1 unpinned */
	uint64_t stranded_ns;	   /**< a request not COMPLETE after this is lost; 0: 5 s */
	uint64_t think_ns;	   /**< guest work between a vCPU's requests: after 1 in 8
				    * completions, a pseudo-random pause of 0..16*think_ns
				    * (mean think_ns over all requests); 0: none */
	bool think_all;		   /**< instead: pause after every completion, uniformly
				    * 0..2*think_ns (every request follows a pause) */
	struct rtioreq_sim_workload wl; /**< the requests */
	uint64_t reserved[4]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/** What a simulated run saw. */
struct rtioreq_sim_result {
	uint64_t requests;	  /**< PENDING stores */
	uint64_t completed;	  /**< COMPLETE observed for an outstanding request */
	uint64_t lost;		  /**< outstanding past stranded_ns (vCPU then abandoned) */
	uint64_t duplicated;	  /**< a slot found COMPLETE that had no outstanding request */
	uint64_t mismatched;	  /**< a read returned another value than the device defines */
	uint64_t upcalls;	  /**< upcalls rung */
	uint64_t ns;		  /**< wall time of the run */
	struct rtioreq_hist rtt;  /**< round trip, ns */
	uint64_t reserved[8]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/**
 * rtioreq_sim_run() - run the workload to the end (blocks), then check that every slot
 * is FREE again. Return 0 or -errno (EINVAL attr, thread creation errors).
 */
int rtioreq_sim_run(const struct rtioreq_sim_attr *a, struct rtioreq_sim_result *res);

RTIOREQ_END_DECLS

#endif /* RTIOREQ_SIM_H */
