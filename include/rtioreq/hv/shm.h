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
#include <sys/types.h>

#include "rtioreq/abi.h"
#include "rtioreq/common.h"

RTIOREQ_BEGIN_DECLS

/** A mapped region (caller-allocated; filled by create/open, emptied by close). */
struct rtioreq_shm {
	struct rtioreq_shm_region *region; /**< the mapping */
	int fd;				   /**< the shm or memfd descriptor */
	bool owner;	/**< created it: unlinks the name on close */
	char name[64];	/**< POSIX shm name ("/rtioreq-..."), empty for an anonymous memfd */
	/* engine side (rtioreq_shm_open*): */
	int lock_fd;	   /**< our own open file description, holding the owner lock; or -1 */
	pid_t stale_owner; /**< the previous engine died without detaching: its pid (attach
			    * with rtioreq_vm_attr.takeover); 0 if it detached or none was */
	pid_t holder;	   /**< on -EBUSY: pid of the live engine that owns it (0: unknown) */
	char why[96];	   /**< on -EINVAL or -EAGAIN: what is wrong with the region */
	uint64_t reserved[4]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/**
 * rtioreq_shm_create() - create and map a region, every slot FREE, channel header set.
 * @param name  POSIX shm name starting with '/', or NULL for an anonymous memfd (share the fd).
 * Return 0 or -errno (EINVAL name or vcpu_num, EEXIST name in use, ...).
 */
int rtioreq_shm_create(struct rtioreq_shm *s, const char *name, uint16_t vcpu_num);

/**
 * rtioreq_shm_open() / rtioreq_shm_open_fd() - the engine's side: map a region created
 * by another process, check it, and claim it: at most one live engine per region.
 * The claim is an OFD write lock (F_OFD_SETLK) on the channel's owner word, taken on an
 * open file description of our own (so it also excludes an engine that inherited the
 * creator's fd), plus our pid in that word. The kernel drops the lock when the engine
 * dies; a nonzero word found under a free lock names an engine that died without
 * detaching (\p s->stale_owner): attach with rtioreq_vm_attr.takeover then. Call
 * rtioreq_shm_close() only after the VM is detached: it clears the word and unlocks.
 * Return: 0; -ENOENT (no such name); -EAGAIN (being created: size 0 or no magic yet;
 * retry); -EINVAL (not a region this engine serves: size, magic, version or vcpu_num,
 * said in \p s->why); -EBUSY (a live engine owns it, its pid in \p s->holder); or -errno of
 * shm_open/mmap/fcntl. rtioreq_shm_open_fd() does not take over \p fd on failure.
 */
int rtioreq_shm_open(struct rtioreq_shm *s, const char *name);
/** As rtioreq_shm_open(), for a region passed as a descriptor (e.g. a memfd). On
 * success \p s owns \p fd (rtioreq_shm_close() closes it); on failure it stays yours. */
int rtioreq_shm_open_fd(struct rtioreq_shm *s, int fd);

/** Unmap and close; the creator unlinks the name; an engine releases its claim. */
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

/** rtioreq_hv_engine()'s answers. */
enum { RTIOREQ_HV_ENGINE_NONE, RTIOREQ_HV_ENGINE_ALIVE, RTIOREQ_HV_ENGINE_DEAD };

/**
 * rtioreq_hv_engine() - hypervisor side: is an engine serving region \p s (section 7.4
 * of docs/shm-protocol.md)? Asks the kernel for the owner lock (F_OFD_GETLK on the
 * creator's own fd) and reads the owner word. *\p pid (may be NULL) gets the word.
 * Return: RTIOREQ_HV_ENGINE_ALIVE, _NONE (none attached, or the last one detached),
 * _DEAD (the last one died without detaching: the next one takes over), or -errno.
 */
int rtioreq_hv_engine(const struct rtioreq_shm *s, pid_t *pid);

RTIOREQ_END_DECLS

#endif /* RTIOREQ_SHM_H */
