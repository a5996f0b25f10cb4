/* SPDX-License-Identifier: MIT */
/**
 * @file shm.h
 * The shared-memory protocol (docs/shm-protocol.md): a region of two pages, the ACRN
 * request page and rtioreq's channel page, created by the hypervisor side and mapped by
 * the engine, possibly in another process. The rtioreq_hv_* helpers implement the
 * hypervisor's rules; a hypervisor of your own may use them or follow the document.
 */
#ifndef RTIOREQ_SHM_H
#define RTIOREQ_SHM_H

#include <stdbool.h>
#include <stdint.h>

#include "rtioreq/abi.h"
#include "rtioreq/common.h"

RTIOREQ_BEGIN_DECLS

/** A mapped region (caller-allocated; filled by create/open, emptied by close). */
struct rtioreq_shm {
	struct rtioreq_shm_region *region; /**< the mapping */
	int fd;				   /**< the shm or memfd descriptor */
	bool owner;	/**< created it: unlinks the name on close */
	char name[64];	/**< POSIX shm name ("/rtioreq-..."), empty for an anonymous memfd */
	uint64_t reserved[4]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/**
 * rtioreq_shm_create() - create and map a region, every slot FREE, channel header set.
 * @param name  POSIX shm name starting with '/', or NULL for an anonymous memfd (share the fd).
 * Return 0 or -errno (EINVAL name or vcpu_num, EEXIST name in use, ...).
 */
int rtioreq_shm_create(struct rtioreq_shm *s, const char *name, uint16_t vcpu_num);

/** Map a region created by another process. Return 0, -EINVAL (not an rtioreq region:
 * size, magic or version), or -errno of shm_open/mmap. */
int rtioreq_shm_open(struct rtioreq_shm *s, const char *name);
/** As rtioreq_shm_open(), for a region passed as a descriptor (e.g. a memfd). On
 * success \p s owns \p fd (rtioreq_shm_close() closes it); on failure it stays yours. */
int rtioreq_shm_open_fd(struct rtioreq_shm *s, int fd);

/** Unmap, close, and unlink the name if this side created it. */
void rtioreq_shm_close(struct rtioreq_shm *s);

/** One request as the hypervisor side issues it. */
struct rtioreq_hv_req {
	uint32_t type; /**< RTIOREQ_TYPE_* */
	uint32_t dir;  /**< RTIOREQ_DIR_* */
	uint32_t size; /**< bytes: 1, 2, 4 or 8 (MMIO) */
	uint64_t addr;	/**< port, GPA, or PCI register */
	uint64_t value; /**< write data */
	uint8_t bus;	/**< PCICFG: bus */
	uint8_t dev;	/**< PCICFG: device */
	uint8_t func;	/**< PCICFG: function */
	uint64_t reserved[2]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/**
 * rtioreq_hv_submit() - hypervisor rule: write only a FREE slot, fill it, H1 (release
 * PENDING), full fence, then ring the upcall unless the engine polls that slot.
 * Return: 1 if an upcall was rung, 0 if not needed, -EBUSY if the slot is not FREE.
 * @param ring  false to leave ringing to the caller (batching: rtioreq_hv_upcall()).
 */
int rtioreq_hv_submit(struct rtioreq_shm_region *r, uint16_t vcpu, const struct rtioreq_hv_req *q,
		      bool completion_polling, bool ring);

/** Whether slot \p vcpu needs an upcall after its PENDING store (after a full fence). */
bool rtioreq_hv_needs_upcall(struct rtioreq_shm_region *r, uint16_t vcpu);

/** Ring the upcall doorbell (U1 + FUTEX_WAKE). */
void rtioreq_hv_upcall(struct rtioreq_shm_region *r);

/**
 * rtioreq_hv_poll() - H2: true if slot \p vcpu is COMPLETE; *value gets a read's result
 * (u32 for PIO/PCICFG, u64 for MMIO). Does not free the slot.
 */
bool rtioreq_hv_poll(struct rtioreq_shm_region *r, uint16_t vcpu, uint32_t type, uint64_t *value);

/** Hand slot \p vcpu back: store FREE (release). The hypervisor is its only writer. */
void rtioreq_hv_release(struct rtioreq_shm_region *r, uint16_t vcpu);

/** Current completion-notification counter of \p vcpu (acquire), to pass to wait. */
uint32_t rtioreq_hv_done_seq(struct rtioreq_shm_region *r, uint16_t vcpu);

/**
 * rtioreq_hv_wait() - sleep until one of the vCPUs in \p mask gets a completion
 * notification, i.e. its done_seq differs from seen[vcpu], or \p timeout_ns passes.
 * Return 0 (woken or already changed) or -ETIMEDOUT / -errno.
 */
int rtioreq_hv_wait(struct rtioreq_shm_region *r, uint32_t mask, const uint32_t *seen,
		    uint64_t timeout_ns);

RTIOREQ_END_DECLS

#endif /* RTIOREQ_SHM_H */
