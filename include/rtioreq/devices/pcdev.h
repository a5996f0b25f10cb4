/* SPDX-License-Identifier: MIT */
/**
 * @file pcdev.h
 * PC device models served by the engine, enough for a Linux guest's console, clock,
 * reboot and PCI probe: a 16550A UART at 0x3f8 (IRQ 4), an i8042 that reboots on
 * command 0xfe, the CMOS RTC at 0x70/0x71 (host time), the PCI configuration mechanism
 * #1 at 0xcf8/0xcfc with ACRN's combiner semantics (no devices: reads all ones) and a
 * default client that answers unclaimed reads with all ones and counts them.
 *
 * Each model is a client of the engine with its own PORTIO ranges:
 *   uart 0x3f8..0x3ff, i8042 0x60 and 0x64, rtc 0x70..0x71, pci 0xcf8..0xcff,
 *   plus the default client (also answers RTIOREQ_TYPE_PCICFG requests).
 * A model's handler may run concurrently on several threads (pollers of different
 * vCPUs, its client thread for fallback vCPUs, rtioreq_pcdev_handle() callers): every
 * model keeps its state under a small per-model priority-inheritance mutex (or
 * atomics), held only for a few register updates and never across a syscall, so
 * handlers are fit for the polling path. UART output is queued to a lock-free ring and
 * passed to uart_out by the device set's own output thread (SCHED_OTHER by default),
 * never on the handler's thread. Interrupts go through the VM's hypervisor-side
 * operation (rtioreq_vm_raise_irq()), never to KVM directly; a line is driven only
 * when its level changes, every change in order, after the model's lock is dropped, by
 * one thread at a time (a handler that finds another thread delivering leaves its
 * changes to it and returns): rtioreq_vm_ops.raise_irq must not call back into this
 * module.
 *
 * Interrupt lines: IRQ 4 (UART), IRQ 1 and IRQ 12 (i8042 keyboard / aux output buffer
 * full, when enabled in the controller's command byte). The RTC raises no interrupt.
 */
#ifndef RTIOREQ_PCDEV_H
#define RTIOREQ_PCDEV_H

#include <stdbool.h>
#include <stdint.h>

#include "rtioreq/core/engine.h"
#include "rtioreq/common.h"

RTIOREQ_BEGIN_DECLS

#define RTIOREQ_PCDEV_COM1_BASE 0x3f8u /**< the UART's first port */
#define RTIOREQ_PCDEV_COM1_IRQ 4u      /**< the UART's interrupt line */
#define RTIOREQ_PCDEV_KBD_IRQ 1u       /**< i8042 keyboard output buffer full */
#define RTIOREQ_PCDEV_AUX_IRQ 12u      /**< i8042 aux output buffer full */
#define RTIOREQ_PCDEV_UART_FIFO 16u    /**< bytes of the UART's receive FIFO */

/** Hooks and threads of the PC device models (zero-initialise). */
struct rtioreq_pcdev_attr {
	/** UART transmit: called for every byte the guest writes to THR outside loopback,
	 * in order, on the device set's output thread (no lock of this module held), a
	 * little after the guest wrote it (rtioreq_pcdev_uart_flush() waits for it). May
	 * block, e.g. write(2) to a terminal: the handlers do not wait for it; if it falls
	 * 16 KiB behind, further bytes are dropped and counted (uart_tx_dropped). May be
	 * NULL. */
	void (*uart_out)(void *ctx, uint8_t byte);
	void *uart_ctx; /**< passed to uart_out */
	/** The guest asks for a reboot: i8042 command 0xfe (any 0xf0..0xfe pulse of
	 * output line 0, or output port bit 0 cleared by command 0xd1) or a write of
	 * bit 2 to the reset control register 0xcf9. Called from a handler, no lock held;
	 * Linux writes 0xfe up to 10 times, so expect repeats. Must not destroy the
	 * device set or the VM itself (signal the VM's run loop instead). May be NULL. */
	void (*reset)(void *ctx);
	void *reset_ctx; /**< passed to reset */
	/** Handler threads of the models' clients (fallback path); NULL: engine default. */
	const struct rtioreq_thread_attr *thread;
	bool no_default; /**< do not create the default client */
	/** The output thread that calls uart_out; NULL: unpinned SCHED_OTHER. Keep it off
	 * the pollers' CPUs and below their priority. */
	const struct rtioreq_thread_attr *output;
	uint64_t reserved[3]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/** Counters of the PC device models. */
struct rtioreq_pcdev_stats {
	uint64_t uart_tx;	/**< bytes transmitted (queued for uart_out) */
	uint64_t uart_rx;	/**< bytes queued by rtioreq_pcdev_uart_input() */
	uint64_t uart_irqs;	/**< IRQ 4 raises (0 -> 1 transitions) */
	uint64_t kbd_irqs;	/**< IRQ 1 and IRQ 12 raises */
	uint64_t resets;	/**< reset requests (i8042 0xfe/0xd1, 0xcf9) */
	uint64_t rtc_reads;	/**< reads of 0x71 */
	uint64_t pci_cfg;	/**< accesses to 0xcf8..0xcff and PCICFG requests */
	uint64_t unclaimed_reads;  /**< reads answered by the default client */
	uint64_t unclaimed_writes; /**< writes dropped by the default client */
	uint64_t uart_tx_dropped; /**< bytes lost: uart_out was 16 KiB behind */
	uint64_t reserved[6]; /**< zero; new fields come from here (rtioreq/common.h) */
};

struct rtioreq_pcdev;

/**
 * rtioreq_pcdev_attach() - create the models as clients of \p vm with their ranges.
 * Call on a paused VM (rtioreq_vm_attr.paused) before rtioreq_vm_start(). Control
 * thread; may block (grace periods). Starts the output thread. \p attr may be NULL (no
 * output, no reset hook). Return the device set, or NULL with errno (EEXIST: a range
 * or the default client is taken, ENODEV: VM detaching, ENOMEM, EINVAL/EPERM: the
 * output thread's attributes, or rtioreq_client_create()'s error).
 */
struct rtioreq_pcdev *rtioreq_pcdev_attach(struct rtioreq_vm *vm,
					   const struct rtioreq_pcdev_attr *attr);

/** Queue bytes for the guest to read from the UART (console input); raises the IRQ if
 * enabled. Any thread but a raise_irq callback. Return the number queued: the FIFO
 * holds RTIOREQ_PCDEV_UART_FIFO bytes (1 while the guest keeps FIFOs disabled, 0 in
 * loopback mode, where the serial input is disconnected); retry the rest later. */
unsigned int rtioreq_pcdev_uart_input(struct rtioreq_pcdev *d, const uint8_t *buf,
				      unsigned int n);

/**
 * rtioreq_pcdev_handle() - serve one request directly, bypassing the slots (the
 * trap source's --inline baseline): routed by type and address exactly as the
 * engine routes it to the clients above (unclaimed: the default client's answer,
 * counted, even with attr->no_default). Any thread; same concurrency as a handler.
 * For reads req->value is set (masked to size; all ones on error).
 * Return 0 or -EINVAL (malformed: size not 1/2/4/8, type unknown).
 */
int rtioreq_pcdev_handle(struct rtioreq_pcdev *d, struct rtioreq_req *req);

/** Wait until uart_out has been called for every byte transmitted before this call
 * (e.g. before printing after the console). Any thread but a handler or uart_out;
 * sleeps 1 ms at a time. */
void rtioreq_pcdev_uart_flush(struct rtioreq_pcdev *d);

/** Snapshot of the counters (each read atomically; not a consistent set). Any thread. */
void rtioreq_pcdev_stats(const struct rtioreq_pcdev *d, struct rtioreq_pcdev_stats *out);

/** Destroy the clients (the VM stays attached), pass every queued output byte to
 * uart_out, stop the output thread and free. Call before the VM is detached
 * (rtioreq_vm_detach() and rtioreq_engine_destroy() destroy and free its clients),
 * once no thread is inside rtioreq_pcdev_uart_input() or _handle(). May block. */
void rtioreq_pcdev_detach(struct rtioreq_pcdev *d);

RTIOREQ_END_DECLS

#endif /* RTIOREQ_PCDEV_H */
