/* SPDX-License-Identifier: MIT */
/**
 * @file profile.h
 * rtioreq profiles: the per-core real-time layout of a partitioned system, in YAML
 * (the YAML files in rt-configs/, documented key by key in docs/profiles.md).
 *
 * A profile is loaded with libcyaml against a schema; its structure (unknown keys,
 * wrong types, missing required keys, empty files, syntax) is checked at load, the
 * meaning (ranges, slot ownership, overlaps, CPU roles, the host's CPUs) by
 * rtioreq_profile_validate(). Every diagnostic names "file:line:column: what is wrong".
 *
 * rtioreq_profile_plan_build() turns a valid profile into the threads and slot owners
 * the engine will run, as plain data (struct rtioreq_thread_attr and friends): it
 * creates no thread and touches no system setting.
 *
 * Errors: constructors return NULL and set errno; other calls return 0 or -errno.
 * Threads: a profile is immutable after load; any thread may read, validate or plan it.
 */
#ifndef RTIOREQ_PROFILE_H
#define RTIOREQ_PROFILE_H

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "rtioreq/core/engine.h"
#include "rtioreq/common.h"

RTIOREQ_BEGIN_DECLS

#define RTIOREQ_PROFILE_SPIN_US_DEFAULT 50u	 /**< hybrid idle: spin time before sleeping */
#define RTIOREQ_PROFILE_SPIN_US_MAX	1000000u /**< 1 s */
#define RTIOREQ_PROFILE_MAX_BYTES	(1u << 20) /**< larger files are refused */

/** `mode:` of a profile. */
enum rtioreq_profile_mode {
	RTIOREQ_PROFILE_POLLING, /**< slots listed under poller cores are polled */
	RTIOREQ_PROFILE_NOTIFY,	 /**< no pollers: every slot on the fallback path */
};

/** `isolation:` of a core. */
enum rtioreq_profile_isolation {
	RTIOREQ_PROFILE_ISOLATION_NONE,	  /**< affinity only */
	RTIOREQ_PROFILE_ISOLATION_CPUSET, /**< an exclusive cpuset for the core's threads */
};

/** `policy:` of a core. */
enum rtioreq_profile_policy {
	RTIOREQ_PROFILE_OTHER, /**< SCHED_OTHER, priority 0 */
	RTIOREQ_PROFILE_FIFO,  /**< SCHED_FIFO, priority 1..99 */
	RTIOREQ_PROFILE_RR,    /**< SCHED_RR, priority 1..99 */
};

/** Roles of a core: a bit set (a core may run the dispatcher and the client threads). */
enum rtioreq_profile_role {
	RTIOREQ_PROFILE_ROLE_POLLER = 1u << 0,	   /**< polls the slots listed in `slots` */
	RTIOREQ_PROFILE_ROLE_DISPATCHER = 1u << 1, /**< the fallback path's dispatcher */
	RTIOREQ_PROFILE_ROLE_CLIENTS = 1u << 2,	   /**< client handler threads */
};

/** `idle:` of a poller core. */
enum rtioreq_profile_idle {
	RTIOREQ_PROFILE_IDLE_SPIN,   /**< pure busy poll */
	RTIOREQ_PROFILE_IDLE_HYBRID, /**< spin spin_us, then sleep (NEED_WAKEUP handshake) */
};

/**
 * Real-time throttling (/proc/sys/kernel/sched_rt_runtime_us): the kernel stops every
 * SCHED_FIFO/RR thread of a CPU for (period - runtime) of each period once they used
 * their runtime; a spinning real-time poller always does (50 ms of every second with the
 * default 950000 of 1000000). Key `rt_throttling` (docs/profiles.md).
 */
enum rtioreq_profile_throttling {
	RTIOREQ_PROFILE_THROTTLING_UNSET, /**< not given: a throttled real-time poller is refused */
	RTIOREQ_PROFILE_THROTTLING_KEEP,  /**< accept the kernel's throttling (reported) */
	RTIOREQ_PROFILE_THROTTLING_OFF,	  /**< sched_rt_runtime_us = -1 for the run, restored */
};

/** `type:` of a device range. */
enum rtioreq_profile_range_type {
	RTIOREQ_PROFILE_PIO,  /**< port I/O: 0..0xffff */
	RTIOREQ_PROFILE_MMIO, /**< guest-physical addresses */
};

/**
 * One `slots` entry: VM \p vm, vCPUs \p vcpus. The `vcpu: N` form is loaded into \p vcpu and
 * then given as a one-entry \p vcpus list: read \p vcpus.
 */
struct rtioreq_profile_slot {
	int64_t vm;	      /**< `vm:` the VM id */
	int64_t vcpu;	      /**< `vcpu:` (the one-vCPU form; read vcpus) */
	int64_t *vcpus;	      /**< `vcpus:` the vCPUs (slots) */
	unsigned int n_vcpus; /**< entries in vcpus */
	uint64_t reserved[2]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/** One `cores:` entry: a CPU and what runs there. */
struct rtioreq_profile_core {
	int64_t cpu; /**< `cpu:` */
	unsigned int roles; /**< enum rtioreq_profile_role bits */
	enum rtioreq_profile_isolation isolation; /**< `isolation:` */
	enum rtioreq_profile_policy policy; /**< `policy:` */
	int64_t priority; /**< `priority:` */
	enum rtioreq_profile_idle idle; /**< `idle:` */
	uint64_t spin_us; /**< hybrid only; RTIOREQ_PROFILE_SPIN_US_DEFAULT when not given */
	struct rtioreq_profile_slot *slots; /**< `slots:` polled by this core */
	unsigned int n_slots; /**< entries in slots */
	uint64_t reserved[2]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/** One `ranges:` entry of a device. */
struct rtioreq_profile_range {
	enum rtioreq_profile_range_type type; /**< `type:` */
	uint64_t start; /**< `start:` */
	uint64_t end; /**< `end:` inclusive */
	uint64_t reserved[2]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/**
 * One entry of a device's free-form `params:` mapping (an IRQ line, a bitrate): rtioreq
 * checks only that it is a mapping of scalars with unique keys, the meaning is the
 * device model's (it gets them through the bind callback of rtioreq_profile_apply()).
 * \p line / \p column locate the value, for the model's own "file:line:column" errors.
 */
struct rtioreq_profile_param {
	char *key;   /**< the key */
	char *value; /**< the scalar as written (YAML quoting removed) */
	unsigned int line;   /**< of the value, 1-based */
	unsigned int column; /**< of the value, 1-based */
	uint64_t reserved[2]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/** One `devices:` entry of a VM. */
struct rtioreq_profile_device {
	char name[RTIOREQ_NAME_LEN]; /**< `name:` */
	char client[RTIOREQ_NAME_LEN]; /**< the client serving it; defaults to name */
	struct rtioreq_profile_range *ranges; /**< `ranges:` */
	unsigned int n_ranges; /**< entries in ranges */
	struct rtioreq_profile_param *params; /**< `params:`, in file order; NULL if none */
	unsigned int n_params; /**< entries in params */
	uint64_t reserved[2]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/** Value of parameter \p key of \p dev, or NULL when the profile does not give it. */
const char *rtioreq_profile_param(const struct rtioreq_profile_device *dev, const char *key);

/** One `vms:` entry. */
struct rtioreq_profile_vm {
	int64_t id; /**< `id:` */
	int64_t vcpus; /**< `vcpus:` number of vCPUs (slots) */
	bool completion_polling; /**< default true */
	struct rtioreq_profile_device *devices; /**< `devices:` */
	unsigned int n_devices; /**< entries in devices */
	uint64_t reserved[2]; /**< zero; new fields come from here (rtioreq/common.h) */
};

struct rtioreq__profile_index; /**< positions of the YAML nodes (private) */

/**
 * A loaded profile. Numbers are as written: rtioreq_profile_validate() range-checks them.
 * Only ever allocated by rtioreq_profile_load() and handed out by pointer: it may grow at
 * the end (rtioreq/common.h). The arrays it points to are indexed by the caller, so
 * their elements keep their size and grow out of their reserved tails.
 */
struct rtioreq_profile {
	char *path; /**< as given to rtioreq_profile_load(); used in diagnostics */
	enum rtioreq_profile_mode mode; /**< `mode:` */
	bool cpu_dma_latency; /**< hold /dev/cpu_dma_latency at 0 while running */
	enum rtioreq_profile_throttling rt_throttling; /**< `rt_throttling:` */
	struct rtioreq_profile_core *cores; /**< `cores:` */
	unsigned int n_cores; /**< entries in cores */
	struct rtioreq_profile_vm *vms; /**< `vms:` */
	unsigned int n_vms; /**< entries in vms */
	struct rtioreq__profile_index *index; /**< private */
};

/* ------------------------------------------------------------------------- */
/* Diagnostics */

/** Whether a diagnostic fails validation. */
enum rtioreq_profile_severity {
	RTIOREQ_PROFILE_ERROR, /**< fails load or validation */
	RTIOREQ_PROFILE_WARNING, /**< reported only */
};

/** One diagnostic, as handed to a rtioreq_profile_diag_fn. Library-allocated and handed out by pointer only: may grow at the end (rtioreq/common.h). */
struct rtioreq_profile_diag {
	enum rtioreq_profile_severity severity; /**< error or warning */
	const char *file; /**< the profile's path */
	unsigned int line; /**< 1-based; 0 when not known (e.g. file cannot be opened) */
	unsigned int column; /**< 1-based; 0 when not known */
	const char *what;	   /**< what is wrong, without the position */
	const char *text;	   /**< "file:line:column: what", warnings "...: warning: what" */
};

/**
 * Diagnostic sink. Called synchronously from load/validate, once per diagnostic, in
 * file order where the checks allow it. The strings live until the callback returns.
 */
typedef void (*rtioreq_profile_diag_fn)(void *ctx, const struct rtioreq_profile_diag *d);

/**
 * rtioreq_profile_load() - read and schema-check a profile.
 * @param path  the YAML file.
 * @param diag  where diagnostics go (also those of later rtioreq_profile_validate() calls);
 *	NULL: their text is printed to stderr, one per line.
 * Reports: syntax errors, empty files, more than one document, unknown keys, wrong
 * types (integers, booleans, enumerated words, strings, lists, mappings), missing
 * required keys, all of them with their position. Values are not range-checked here.
 * Return: the profile, or NULL with errno: EINVAL (diagnostics were reported), EFBIG
 * (larger than RTIOREQ_PROFILE_MAX_BYTES), ENOMEM, or the error of open/read.
 */
struct rtioreq_profile *rtioreq_profile_load(const char *path, rtioreq_profile_diag_fn diag,
					     void *ctx);

/** Free a profile (NULL is a no-op). */
void rtioreq_profile_free(struct rtioreq_profile *p);

/**
 * rtioreq_profile_validate() - check what libcyaml does not: ranges, the roles of the
 * cores, slot ownership, VM ids, overlapping address ranges, spin_us without hybrid.
 * @param host_check  CPUs outside this host's online set (/sys/devices/system/cpu/online)
 *	are errors; false: they are warnings, so an 8-CPU profile can be checked on a
 *	2-CPU laptop, and everything else still validates.
 * Diagnostics go to the profile's sink. Warnings do not fail validation.
 * Return: 0 (valid), -EINVAL (at least one error was reported), -ENOMEM.
 */
int rtioreq_profile_validate(const struct rtioreq_profile *p, bool host_check);

/** As rtioreq_profile_validate(), with the online CPUs given (NULL: read them). */
int rtioreq_profile_validate_cpus(const struct rtioreq_profile *p, bool host_check,
				  const cpu_set_t *online);

/* ------------------------------------------------------------------------- */
/* Plan: what the engine will run. Pure data, built from a valid profile. */

/** What a planned thread is. */
enum rtioreq_profile_thread_kind {
	RTIOREQ_PROFILE_THREAD_POLLER, /**< a poller */
	RTIOREQ_PROFILE_THREAD_DISPATCHER, /**< the dispatcher */
	RTIOREQ_PROFILE_THREAD_CLIENTS, /**< placement of client handler threads */
};

/** One planned engine thread. */
struct rtioreq_profile_plan_thread {
	enum rtioreq_profile_thread_kind kind; /**< poller, dispatcher or clients */
	int core; /**< index in profile->cores, or -1 (not placed by the profile: unpinned) */
	struct rtioreq_thread_attr attr; /**< cpu, SCHED_* policy, priority, name */
	enum rtioreq_profile_isolation isolation; /**< of its core */
	enum rtioreq_profile_idle idle; /**< pollers */
	uint64_t spin_us;		/**< pollers with hybrid idle */
	unsigned int n_slots;		/**< pollers: slots owned */
	char name[RTIOREQ_NAME_LEN];	/**< attr.name points here */
	uint64_t reserved[2]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/** Owner of one (VM, vCPU) slot. */
struct rtioreq_profile_plan_slot {
	uint16_t vm_id; /**< the VM */
	uint16_t vcpu; /**< the slot */
	int thread; /**< index in plan->threads of the owning poller, or -1: fallback path */
	uint64_t reserved[1]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/** What the engine will run for a profile (rtioreq_profile_plan_build() fills the
 * caller's struct, reserved tail included). */
struct rtioreq_profile_plan {
	enum rtioreq_profile_mode mode; /**< the profile's mode */
	bool cpu_dma_latency; /**< hold /dev/cpu_dma_latency at 0 */
	enum rtioreq_profile_throttling rt_throttling; /**< the profile's `rt_throttling:` */
	struct rtioreq_engine_attr engine; /**< dispatcher and client threads' attrs */
	struct rtioreq_profile_plan_thread *threads; /**< pollers first, then dispatcher, clients */
	unsigned int n_threads; /**< entries in threads */
	struct rtioreq_profile_plan_slot *slots; /**< every slot of every VM, in VM order */
	unsigned int n_slots; /**< entries in slots */
	uint64_t reserved[4]; /**< zero; new fields come from here (rtioreq/common.h) */
};

/**
 * rtioreq_profile_plan_build() - threads and slot owners of a profile that passed
 * rtioreq_profile_validate() (host check or not). In notify mode no poller is planned
 * and every slot is on the fallback path. Allocates; free with rtioreq_profile_plan_free().
 * Return: 0, -EINVAL (the profile does not validate), -ENOMEM.
 */
int rtioreq_profile_plan_build(const struct rtioreq_profile *p, struct rtioreq_profile_plan *out);

/** Free what rtioreq_profile_plan_build() allocated in \p plan. */
void rtioreq_profile_plan_free(struct rtioreq_profile_plan *plan);

/** Index in plan->threads of the poller owning slot \p vcpu of VM \p vm_id; -1: fallback or none. */
int rtioreq_profile_plan_owner(const struct rtioreq_profile_plan *plan, uint16_t vm_id,
			       uint16_t vcpu);

/**
 * rtioreq_profile_print_plan() - print the effective plan of a valid profile: engine
 * settings, threads (CPU, policy, priority, isolation, idle), slot ownership (unpolled
 * slots go to the fallback dispatcher), VMs with their devices, ranges and clients.
 * Return: 0, -EINVAL (not valid), -ENOMEM, -EIO (write error).
 */
int rtioreq_profile_print_plan(const struct rtioreq_profile *p, FILE *out);

/** Names of the enumerated values as written in profiles ("fifo", "hybrid", ...). */
const char *rtioreq_profile_policy_name(enum rtioreq_profile_policy policy);

RTIOREQ_END_DECLS

#endif /* RTIOREQ_PROFILE_H */
