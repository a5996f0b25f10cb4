/* SPDX-License-Identifier: MIT */
/**
 * @file abi.h
 * rtioreq wire format: the ACRN I/O request page, binary compatible with Linux's
 * include/uapi/linux/acrn.h (struct acrn_io_request and friends), plus rtioreq's
 * channel page (docs/shm-protocol.md).
 *
 * Names carry the rtioreq_ prefix so this header can sit beside <linux/acrn.h>;
 * tests/core/test_abi.c checks every size and offset against that header.
 *
 * Slot state machine (field `processed`), one slot per vCPU:
 *
 *	FREE --hv fills, release--> PENDING --service takes--> PROCESSING
 *	  ^                                                        |
 *	  +---- hv copies result, stores FREE <---- COMPLETE <-----+  (service: release)
 *
 * FREE and COMPLETE belong to the hypervisor; PENDING and PROCESSING to the service
 * side (rtioreq). A vCPU has at most one request outstanding. Every field of a slot is
 * written by an untrusted producer: the service side reads each field once into a
 * private snapshot, validates the snapshot, and uses only the snapshot.
 */
#ifndef RTIOREQ_ABI_H
#define RTIOREQ_ABI_H

#include <stddef.h>
#include <stdint.h>
#ifndef __cplusplus
#include <stdalign.h>
#include <stdatomic.h>
#endif
#include "rtioreq/common.h"

RTIOREQ_BEGIN_DECLS

#define RTIOREQ_IO_REQUEST_MAX 16 /**< slots per page = max vCPUs per VM */
#define RTIOREQ_PAGE_SIZE 4096 /**< bytes of the request page and of the channel page */

/** @{ */
/** `processed` values (ACRN_IOREQ_STATE_*) */
#define RTIOREQ_STATE_PENDING 0u
#define RTIOREQ_STATE_COMPLETE 1u
#define RTIOREQ_STATE_PROCESSING 2u
#define RTIOREQ_STATE_FREE 3u
/** @} */

/** @{ */
/** `type` values (ACRN_IOREQ_TYPE_*) */
#define RTIOREQ_TYPE_PORTIO 0u
#define RTIOREQ_TYPE_MMIO 1u
#define RTIOREQ_TYPE_PCICFG 2u
/** @} */

/** @{ */
/** `direction` values (ACRN_IOREQ_DIR_*) */
#define RTIOREQ_DIR_READ 0u
#define RTIOREQ_DIR_WRITE 1u
/** @} */

/** @{ */
/** ioctl numbers of /dev/acrn_hsm, for the ACRN backend (type 0xA2) */
#define RTIOREQ_ACRN_IOCTL_TYPE 0xA2
#define RTIOREQ_ACRN_NR_NOTIFY_REQUEST_FINISH 0x31
#define RTIOREQ_ACRN_NR_CREATE_IOREQ_CLIENT 0x32
#define RTIOREQ_ACRN_NR_ATTACH_IOREQ_CLIENT 0x33
#define RTIOREQ_ACRN_NR_DESTROY_IOREQ_CLIENT 0x34
#define RTIOREQ_ACRN_NR_CLEAR_VM_IOREQ 0x35
/** @} */

/** An MMIO request in a slot (struct acrn_mmio_request). */
struct rtioreq_mmio_request {
	uint32_t direction; /**< RTIOREQ_DIR_READ or RTIOREQ_DIR_WRITE */
	uint32_t reserved;  /**< 0 */
	uint64_t address;   /**< guest-physical address */
	uint64_t size;	    /**< bytes: 1, 2, 4 or 8 */
	uint64_t value;	    /**< write: the data; read: the result */
};

/** A port I/O request in a slot (struct acrn_pio_request). */
struct rtioreq_pio_request {
	uint32_t direction; /**< RTIOREQ_DIR_READ or RTIOREQ_DIR_WRITE */
	uint32_t reserved;  /**< 0 */
	uint64_t address;   /**< port, 0..0xffff */
	uint64_t size;	    /**< bytes: 1, 2 or 4 */
	uint32_t value;	    /**< write: the data; read: the result */
};

/** A PCI configuration space request in a slot (struct acrn_pci_request). */
struct rtioreq_pci_request {
	uint32_t direction;   /**< RTIOREQ_DIR_READ or RTIOREQ_DIR_WRITE */
	uint32_t reserved[3]; /**< 0 */
	uint64_t size;	      /**< bytes: 1, 2 or 4 */
	uint32_t value;	      /**< write: the data; read: the result */
	uint32_t bus;	      /**< PCI bus */
	uint32_t dev;	      /**< device */
	uint32_t func;	      /**< function */
	uint32_t reg;	      /**< configuration register offset */
};

/**
 * One 256-byte slot. Touches three cache lines: 0 (type, completion_polling),
 * 64 (the request), 128 (kernel_handled, processed).
 */
struct rtioreq_io_request {
	uint32_t type;		     /**< RTIOREQ_TYPE_*: which member of `reqs` is valid */
	uint32_t completion_polling; /**< hv spins for COMPLETE; no notification wanted */
	uint32_t reserved0[14];	     /**< 0 */
	/** The request, by `type`. */
	union {
		struct rtioreq_pio_request pio_request;	  /**< RTIOREQ_TYPE_PORTIO */
		struct rtioreq_mmio_request mmio_request; /**< RTIOREQ_TYPE_MMIO */
		struct rtioreq_pci_request pci_request;	  /**< RTIOREQ_TYPE_PCICFG */
		uint64_t data[8];			  /**< the raw 64 bytes */
	} reqs;
	uint32_t reserved1;	 /**< 0 */
	uint32_t kernel_handled; /**< ACRN: handled in the hypervisor; ignored here */
	uint32_t processed; /**< RTIOREQ_STATE_*: access only through the helpers below */
} __attribute__((aligned(256)));

/** The request page: one slot per vCPU (struct acrn_io_request_buffer). */
struct rtioreq_io_request_buffer {
	union {
		/** slot v belongs to vCPU v */
		struct rtioreq_io_request req_slot[RTIOREQ_IO_REQUEST_MAX];
		uint8_t reserved[RTIOREQ_PAGE_SIZE]; /**< the page */
	};
};

/** struct acrn_ioreq_notify: argument of ACRN_IOCTL_NOTIFY_REQUEST_FINISH */
struct rtioreq_ioreq_notify {
	uint16_t vmid;	   /**< the VM */
	uint16_t reserved; /**< 0 */
	uint32_t vcpu;	   /**< the vCPU whose request completed */
};

RTIOREQ_STATIC_ASSERT(sizeof(struct rtioreq_mmio_request) == 32, "mmio_request size");
RTIOREQ_STATIC_ASSERT(sizeof(struct rtioreq_pio_request) == 32, "pio_request size");
RTIOREQ_STATIC_ASSERT(sizeof(struct rtioreq_pci_request) == 48, "pci_request size");
RTIOREQ_STATIC_ASSERT(sizeof(struct rtioreq_io_request) == 256, "io_request size");
RTIOREQ_STATIC_ASSERT(alignof(struct rtioreq_io_request) == 256, "io_request alignment");
RTIOREQ_STATIC_ASSERT(offsetof(struct rtioreq_io_request, type) == 0, "type offset");
RTIOREQ_STATIC_ASSERT(offsetof(struct rtioreq_io_request, completion_polling) == 4, "cp offset");
RTIOREQ_STATIC_ASSERT(offsetof(struct rtioreq_io_request, reqs) == 64, "reqs offset");
RTIOREQ_STATIC_ASSERT(offsetof(struct rtioreq_io_request, reserved1) == 128, "reserved1 offset");
RTIOREQ_STATIC_ASSERT(offsetof(struct rtioreq_io_request, kernel_handled) == 132, "kh offset");
RTIOREQ_STATIC_ASSERT(offsetof(struct rtioreq_io_request, processed) == 136, "processed offset");
RTIOREQ_STATIC_ASSERT(offsetof(struct rtioreq_pio_request, value) == 24, "pio value offset");
RTIOREQ_STATIC_ASSERT(offsetof(struct rtioreq_mmio_request, value) == 24, "mmio value offset");
RTIOREQ_STATIC_ASSERT(offsetof(struct rtioreq_pci_request, value) == 24, "pci value offset");
RTIOREQ_STATIC_ASSERT(offsetof(struct rtioreq_pci_request, reg) == 40, "pci reg offset");
RTIOREQ_STATIC_ASSERT(sizeof(struct rtioreq_io_request_buffer) == RTIOREQ_PAGE_SIZE, "page size");
RTIOREQ_STATIC_ASSERT(sizeof(struct rtioreq_ioreq_notify) == 8, "notify size");
#ifndef __cplusplus
/* The state helpers view plain uint32_t wire fields as _Atomic uint32_t. */
RTIOREQ_STATIC_ASSERT(sizeof(_Atomic uint32_t) == sizeof(uint32_t), "atomic u32 size");
RTIOREQ_STATIC_ASSERT(alignof(_Atomic uint32_t) == alignof(uint32_t), "atomic u32 align");

/**
 * rtioreq_wire_atomic() - view a 32-bit wire field as an atomic object (same size and
 * alignment, see above), for atomic_*_explicit(). C only: C++ has no _Atomic; use
 * rtioreq_wire_load_acquire() / rtioreq_wire_store_release(), which both languages accept.
 */
static inline _Atomic uint32_t *rtioreq_wire_atomic(uint32_t *field)
{
	return (_Atomic uint32_t *)field;
}
#endif

/**
 * rtioreq_wire_load_acquire() - load a 32-bit wire field (e.g. `processed`) with
 * acquire ordering. C and C++ (GCC/Clang atomic builtins on the plain field).
 */
static inline uint32_t rtioreq_wire_load_acquire(const uint32_t *field)
{
	return __atomic_load_n(field, __ATOMIC_ACQUIRE);
}

/**
 * rtioreq_wire_store_release() - store a 32-bit wire field with release ordering.
 * C and C++.
 */
static inline void rtioreq_wire_store_release(uint32_t *field, uint32_t v)
{
	__atomic_store_n(field, v, __ATOMIC_RELEASE);
}

/**
 * Channel page: rtioreq's extension for running the hypervisor side in another
 * process (docs/shm-protocol.md). It follows the request page in a shared region:
 * region offset 0 = struct rtioreq_io_request_buffer, offset 4096 = struct rtioreq_chan.
 * Every word is a 32-bit futex word accessed atomically; each has its own cache line
 * because its writers differ.
 */
#define RTIOREQ_CHAN_MAGIC 0x4f495452u /**< "RTIO" little endian */
#define RTIOREQ_CHAN_VERSION 2u /**< 2: the owner line (one live engine per region) */

/** One 32-bit futex word on its own cache line. */
struct rtioreq_chan_line {
	uint32_t word;	  /**< accessed atomically only */
	uint32_t pad[15]; /**< 0 */
};

/** The channel page (docs/shm-protocol.md). */
struct rtioreq_chan {
	/** line 0: written once by the creator (hypervisor side) before sharing */
	uint32_t magic;	   /**< RTIOREQ_CHAN_MAGIC */
	uint32_t version;  /**< RTIOREQ_CHAN_VERSION */
	uint32_t vcpu_num; /**< slots in use, 1..RTIOREQ_IO_REQUEST_MAX */
	uint32_t flags;	   /**< reserved, 0 */
	uint32_t pad0[12]; /**< 0 */
	/** hv -> engine doorbell: +1 (release) after a PENDING store, then FUTEX_WAKE of
	 * all waiters (the dispatcher and sleeping pollers) */
	struct rtioreq_chan_line upcall_seq;
	/** engine -> hv: bit v set = the engine polls slot v, no upcall needed ... */
	struct rtioreq_chan_line polled_mask;
	/** ... unless bit v is set here: its poller is going to sleep (hybrid idle) and
	 * needs the doorbell (io_uring SQPOLL's NEED_WAKEUP). The hv reads both after a
	 * full fence that follows its PENDING store. */
	struct rtioreq_chan_line need_wakeup;
	/** engine -> hv, per vCPU: +1 (release) after COMPLETE when completion_polling
	 * was 0, then FUTEX_WAKE: the completion notification ("finish hypercall") */
	struct rtioreq_chan_line done_seq[RTIOREQ_IO_REQUEST_MAX];
	/** engine <-> engine: the pid of the engine that owns the region, 0 when none.
	 * Written by an engine only while it holds an OFD write lock (F_OFD_SETLK) on
	 * these 4 bytes of the region's file; the kernel drops the lock when the engine
	 * dies, so "lock free, word nonzero" = the owner died without detaching and the
	 * next engine takes over what it left (docs/shm-protocol.md, section 7.4). */
	struct rtioreq_chan_line owner;
};

/** The whole shared region: what the hypervisor side creates and the engine maps. */
struct rtioreq_shm_region {
	struct rtioreq_io_request_buffer page; /**< offset 0: the ACRN request page */
	union {
		struct rtioreq_chan chan; /**< offset 4096: the channel page */
		uint8_t chan_reserved[RTIOREQ_PAGE_SIZE];
	};
};

RTIOREQ_STATIC_ASSERT(sizeof(struct rtioreq_chan_line) == 64, "chan line size");
RTIOREQ_STATIC_ASSERT(offsetof(struct rtioreq_chan, upcall_seq) == 64, "upcall_seq offset");
RTIOREQ_STATIC_ASSERT(offsetof(struct rtioreq_chan, polled_mask) == 128, "polled_mask offset");
RTIOREQ_STATIC_ASSERT(offsetof(struct rtioreq_chan, need_wakeup) == 192, "need_wakeup offset");
RTIOREQ_STATIC_ASSERT(offsetof(struct rtioreq_chan, done_seq) == 256, "done_seq offset");
RTIOREQ_STATIC_ASSERT(offsetof(struct rtioreq_chan, owner) == 1280, "owner offset");
RTIOREQ_STATIC_ASSERT(sizeof(struct rtioreq_chan) <= RTIOREQ_PAGE_SIZE, "chan fits a page");
RTIOREQ_STATIC_ASSERT(offsetof(struct rtioreq_shm_region, chan) == 4096, "chan page offset");
RTIOREQ_STATIC_ASSERT(sizeof(struct rtioreq_shm_region) == 8192, "region size");

/** Bits of an access of \p size bytes (1, 2, 4 or 8; 8 and above: all 64). */
static inline uint64_t rtioreq_size_mask(uint32_t size)
{
	return size >= 8 ? ~(uint64_t)0 : ((uint64_t)1 << (size * 8)) - 1;
}

RTIOREQ_END_DECLS

#endif /* RTIOREQ_ABI_H */
