/* SPDX-License-Identifier: MIT */
/**
 * @file exdev.h
 * Example device models, served by the engine, and the matching simulated workload:
 *  - a RAM-backed MMIO region at RTIOREQ_EXDEV_RAM_BASE (reads return what was written);
 *  - a scratch accumulator port at RTIOREQ_EXDEV_PORT: a write adds the value to the
 *    vCPU's accumulator (32-bit wrap), a read returns it (masked to the access size),
 *    so a lost or duplicated write shows in the next read;
 *  - accesses to RTIOREQ_EXDEV_UNMAPPED_PORT, which no client claims (reads: all ones).
 */
#ifndef RTIOREQ_EXDEV_H
#define RTIOREQ_EXDEV_H

#include <stdint.h>

#include "rtioreq/core/engine.h"
#include "rtioreq/hv/sim.h"
#include "rtioreq/common.h"

RTIOREQ_BEGIN_DECLS

#define RTIOREQ_EXDEV_RAM_BASE 0xd0000000ull /**< guest-physical base of the RAM region */
#define RTIOREQ_EXDEV_RAM_SIZE 0x1000u /**< 256 bytes per vCPU in the workload */
#define RTIOREQ_EXDEV_PORT 0x510u      /**< 4 ports: 0x510..0x513 */
#define RTIOREQ_EXDEV_UNMAPPED_PORT 0x5f0u /**< no client claims it */

/** The example devices' state (caller-allocated, zeroed; fixed layout: an example). */
struct rtioreq_exdev {
	uint8_t ram[RTIOREQ_EXDEV_RAM_SIZE];   /**< the MMIO region's contents */
	uint32_t acc[RTIOREQ_IO_REQUEST_MAX];  /**< per-vCPU accumulators of the port */
	struct rtioreq_client *ram_client;     /**< set by rtioreq_exdev_attach() */
	struct rtioreq_client *port_client;    /**< set by rtioreq_exdev_attach() */
	/** set before rtioreq_exdev_attach(): its clients get
	 * rtioreq_client_attr.handler_thread (the benchmark's --fallback-thread) */
	bool handler_thread;
	uint64_t reserved[3]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/** Handler of the RAM region (priv = struct rtioreq_exdev *). Non-blocking: fit for
 * the polling path. */
int rtioreq_exdev_ram_handler(struct rtioreq_client *c, struct rtioreq_req *req, void *priv);
/** Handler of the accumulator port (priv = struct rtioreq_exdev *). Non-blocking. */
int rtioreq_exdev_port_handler(struct rtioreq_client *c, struct rtioreq_req *req, void *priv);

/** Create both clients on \p vm with their ranges. Return 0 or -errno. */
int rtioreq_exdev_attach(struct rtioreq_exdev *d, struct rtioreq_vm *vm);

/** The workload's shadow of the device, one per VM. */
struct rtioreq_exdev_oracle {
	uint64_t seed;			       /**< of the pseudo-random workload */
	unsigned int unmapped_pct; /**< share of requests to the unmapped port, 0..100 */
	uint8_t ram[RTIOREQ_EXDEV_RAM_SIZE];  /**< what the RAM region must hold */
	uint32_t acc[RTIOREQ_IO_REQUEST_MAX]; /**< what each accumulator must hold */
};

/** Start a shadow: device state zero, workload \p seed, \p unmapped_pct percent of
 * requests to the unmapped port. */
void rtioreq_exdev_oracle_init(struct rtioreq_exdev_oracle *o, uint64_t seed,
			       unsigned int unmapped_pct);
/** gen callback for rtioreq_sim_workload (ctx = struct rtioreq_exdev_oracle *). */
void rtioreq_exdev_gen(void *ctx, uint16_t vcpu, uint64_t k, struct rtioreq_sim_op *op);

RTIOREQ_END_DECLS

#endif /* RTIOREQ_EXDEV_H */
