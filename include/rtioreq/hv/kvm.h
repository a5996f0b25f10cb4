/* SPDX-License-Identifier: MIT */
/**
 * @file kvm.h
 * KVM trap source: runs a real guest under /dev/kvm and hands every port-I/O and MMIO
 * exit to the engine as an ACRN-format request in that vCPU's slot, playing the role
 * of the ACRN hypervisor (docs/shm-protocol.md, the rtioreq_hv_* helpers of shm.h):
 * FREE -> fill -> release PENDING (+ upcall unless polled), wait for COMPLETE (spin
 * when the VM asked for completion polling, else sleep on the completion
 * notification), copy a read's value into the exit, store FREE, re-enter the guest.
 *
 * The VM has the in-kernel interrupt controllers (PIC, IOAPIC, LAPIC) and PIT, so
 * only device I/O leaves the kernel. Device models raise interrupts through the VM's
 * rtioreq_vm_ops.raise_irq (rtioreq_kvm_vm_ops(): KVM_IRQ_LINE), never through KVM.
 *
 * This module is the hypervisor side only: it creates the shared region but neither
 * the engine VM nor the device models. The caller attaches the region to an engine
 * (rtioreq_kvm_region(), rtioreq_kvm_vm_ops()), adds its devices, then calls
 * rtioreq_kvm_run(). docs/kvm.md describes the guest layout and the boot protocol.
 *
 * Threads: create/run/destroy from one control thread; rtioreq_kvm_stop() and the ops
 * from any thread, including a device model's handler on a poller (they never block).
 */
#ifndef RTIOREQ_KVM_H
#define RTIOREQ_KVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rtioreq/core/engine.h"
#include "rtioreq/core/hist.h"
#include "rtioreq/hv/shm.h"
#include "rtioreq/common.h"

RTIOREQ_BEGIN_DECLS

#define RTIOREQ_KVM_MEM_DEFAULT (256ull << 20) /**< guest RAM when not given */
#define RTIOREQ_KVM_MEM_MAX (3ull << 30) /**< RAM ends below the 32-bit PCI hole */
/** The default kernel command line (docs/kvm.md explains each option). */
#define RTIOREQ_KVM_CMDLINE_DEFAULT                                                       \
	"console=ttyS0 earlyprintk=serial,ttyS0,115200 reboot=k panic=-1 acpi=off "      \
	"pci=conf1 tsc=reliable no_timer_check io_delay=none i8042.noaux"

/**
 * --inline: serve one request directly in the vCPU thread through the same device
 * models (no slot, no engine thread). Return 0, or < 0: a read then returns all ones.
 * Set req->value for reads.
 */
typedef int (*rtioreq_kvm_inline_fn)(void *ctx, struct rtioreq_req *req);

/** The guest to create (zero-initialise). */
struct rtioreq_kvm_attr {
	const char *kernel;	/**< bzImage (Linux x86 boot protocol >= 2.12, 64-bit entry) */
	const char *initrd;	/**< initramfs, or NULL */
	const char *cmdline;	/**< NULL: RTIOREQ_KVM_CMDLINE_DEFAULT */
	uint64_t mem_bytes;	/**< guest RAM in bytes, 0: RTIOREQ_KVM_MEM_DEFAULT; at least
				 * 64 MiB, at most RTIOREQ_KVM_MEM_MAX */
	unsigned int vcpus;	/**< 0 or 1 (default) .. 16; see docs/kvm.md on APs */
	bool completion_polling; /**< vCPU threads spin for COMPLETE (polling mode); else
				  * they sleep on the completion notification */
	rtioreq_kvm_inline_fn inline_fn; /**< non-NULL: --inline, the slots are not used */
	void *inline_ctx; /**< passed to inline_fn */
	int vcpu_cpu;		/**< CPU of vCPU thread 0 (vCPU i: the i-th next), or -1 */
	uint64_t stranded_ns;	/**< a request not COMPLETE after this stops the VM
				 * (RTIOREQ_KVM_STRANDED); 0: 5 s */
	uint64_t reserved[4]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/** Why the guest stopped. */
enum rtioreq_kvm_exit {
	RTIOREQ_KVM_RUNNING = 0,
	RTIOREQ_KVM_REBOOT,	   /**< rtioreq_kvm_stop(REBOOT): e.g. i8042 command 0xfe */
	RTIOREQ_KVM_TRIPLE_FAULT,  /**< KVM_EXIT_SHUTDOWN: a reboot by triple fault */
	RTIOREQ_KVM_SYSTEM_EVENT,  /**< KVM_EXIT_SYSTEM_EVENT (reset/shutdown) */
	RTIOREQ_KVM_HLT,	   /**< KVM_EXIT_HLT (not expected with the in-kernel LAPIC) */
	RTIOREQ_KVM_TIMEOUT,	   /**< rtioreq_kvm_run()'s timeout passed */
	RTIOREQ_KVM_STOPPED,	   /**< rtioreq_kvm_stop(STOPPED) by the caller */
	RTIOREQ_KVM_STRANDED,	   /**< a request was not completed within stranded_ns */
	RTIOREQ_KVM_FAIL_ENTRY,	   /**< KVM_EXIT_FAIL_ENTRY */
	RTIOREQ_KVM_INTERNAL_ERROR, /**< KVM_EXIT_INTERNAL_ERROR */
	RTIOREQ_KVM_UNHANDLED,	   /**< another exit reason */
	RTIOREQ_KVM_ERROR,	   /**< an ioctl failed */
};

/** Short name: "reboot", "triple-fault", "timeout", ... */
const char *rtioreq_kvm_exit_name(enum rtioreq_kvm_exit e);

/** Counters and latency of a guest run. */
struct rtioreq_kvm_stats {
	uint64_t exits;		/**< KVM_RUN returns */
	uint64_t io_exits;	/**< KVM_EXIT_IO */
	uint64_t mmio_exits;	/**< KVM_EXIT_MMIO */
	uint64_t string_io;	/**< I/O exits with count > 1 (rep ins/outs) */
	uint64_t requests;	/**< slot round trips (or inline calls with --inline) */
	uint64_t upcalls;	/**< submits that rang the upcall doorbell */
	uint64_t intr_exits;	/**< KVM_RUN interrupted by a signal (kicks) */
	uint64_t irq_raises;	/**< raise_irq calls with level 1 */
	uint64_t stranded;	/**< requests not completed within stranded_ns */
	struct rtioreq_hist rtt;  /**< per request: PENDING store to COMPLETE seen (inline:
				   * the handler call), ns */
	struct rtioreq_hist exit; /**< per I/O or MMIO exit: KVM_RUN return to re-entry, ns */
	uint64_t run_ns;	/**< rtioreq_kvm_run() start to the stop */
	enum rtioreq_kvm_exit exit_reason; /**< why the guest stopped */
	char detail[160];	/**< what stopped it, e.g. "i8042 reset", the failed ioctl */
	uint64_t reserved[8]; /**< zero; new fields come from here (rtioreq/common.h) */
};

struct rtioreq_kvm;

/**
 * rtioreq_kvm_create() - open /dev/kvm, create the VM (in-kernel irqchip, PIT), its
 * memory, load the kernel/initrd/command line by the Linux x86 boot protocol, create
 * the vCPUs in 64-bit mode at the kernel's 64-bit entry, and the shared region (one
 * slot per vCPU). Nothing runs yet.
 * @param why  gets a one-line reason on failure (may be NULL); \p why_len its size.
 * Return: the VM, or NULL with errno (ENOENT/EACCES: /dev/kvm; ENOEXEC: not a bzImage
 * with a 64-bit entry; EINVAL: attr; E2BIG: kernel/initrd do not fit; ...).
 */
struct rtioreq_kvm *rtioreq_kvm_create(const struct rtioreq_kvm_attr *attr, char *why,
				       size_t why_len);

/** The region whose page and channel the engine VM must serve (vcpu_num = vCPUs). */
struct rtioreq_shm_region *rtioreq_kvm_region(struct rtioreq_kvm *k);
/** Number of vCPUs (slots) of the guest. */
unsigned int rtioreq_kvm_vcpus(const struct rtioreq_kvm *k);

/** Ops for rtioreq_vm_attr.ops, with rtioreq_vm_attr.hv = \p k: raise_irq = KVM_IRQ_LINE. */
const struct rtioreq_vm_ops *rtioreq_kvm_vm_ops(void);

/**
 * rtioreq_kvm_run() - start the vCPU threads and wait until the guest stops (a stop
 * request, a terminal exit) or \p timeout_ns passes (0: no limit), then stop and join
 * them. A vCPU waiting for a request's completion finishes that request first. Once
 * only. Control thread. Return the exit reason (also in the stats).
 */
enum rtioreq_kvm_exit rtioreq_kvm_run(struct rtioreq_kvm *k, uint64_t timeout_ns);

/**
 * rtioreq_kvm_stop() - stop the guest: the first reason given wins; every vCPU leaves
 * KVM_RUN (immediate_exit + a signal) and its thread ends after its current request.
 * Any thread, never blocks (a device model's reset callback may call it).
 */
void rtioreq_kvm_stop(struct rtioreq_kvm *k, enum rtioreq_kvm_exit why, const char *detail);

/** Nanoseconds since rtioreq_kvm_run() started the vCPUs (0 before). Any thread. */
uint64_t rtioreq_kvm_elapsed_ns(const struct rtioreq_kvm *k);

/** Counters summed over vCPUs; complete after rtioreq_kvm_run() returned. */
void rtioreq_kvm_stats(const struct rtioreq_kvm *k, struct rtioreq_kvm_stats *out);

/** Free everything. Detach the engine VM serving the region first. */
void rtioreq_kvm_destroy(struct rtioreq_kvm *k);

RTIOREQ_END_DECLS

#endif /* RTIOREQ_KVM_H */
