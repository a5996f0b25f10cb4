/* SPDX-License-Identifier: MIT */
/**
 * Applying a profile: what `rtioreq run PROFILE` does, as a library call for device-model
 * processes that embed the engine.
 *
 * rtioreq_profile_apply() takes a validated profile and, in this order: checks that
 * real-time scheduling is permitted at the profile's highest priority; handles real-time
 * throttling as the profile's `rt_throttling` asks; removes stale rtioreq cpusets of
 * processes that are gone; locks memory (mlockall) and holds /dev/cpu_dma_latency when
 * asked; creates the engine with the dispatcher's and client threads' placement; attaches
 * each profile VM (paused) with the page the embedder gives through \p vm; binds every
 * device to the embedder's handler through \p bind (with the device's `params:`), creates
 * its client and ranges; starts the pollers with affinity and policy set before they run,
 * each in its own exclusive cpuset when asked and possible; places the slots; starts the
 * VMs. rtioreq_profile_stop() undoes all of it.
 *
 * Signals: the library installs no signal handler unless asked. What it changed on the
 * machine (cpusets, cpu_dma_latency, sched_rt_runtime_us) outlives the process if it is
 * killed, so an embedder that may be stopped by a signal either
 *  - blocks the signals in every thread, takes them in one thread (sigwait) and calls
 *    rtioreq_profile_stop() or rtioreq_profile_cleanup() there (what the rtioreq program
 *    does), or
 *  - calls rtioreq_profile_cleanup() from its own handler (it is async-signal-safe), or
 *  - opts in with rtioreq_profile_cleanup_on_signals(), which installs handlers that
 *    clean up and then die of the signal (or chain to the handler that was there).
 * A SIGKILLed run's cpusets are removed by the next apply (rtioreq_rt_cpuset_sweep());
 * its sched_rt_runtime_us stays as the run left it (noted in docs/profiles.md).
 *
 * Threads: apply and stop are control-plane calls (may block; not from a handler, a
 * poller or a signal handler). Errors: NULL + errno from apply, 0 or -errno otherwise.
 */
#ifndef RTIOREQ_RT_APPLY_H
#define RTIOREQ_RT_APPLY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rtioreq/common.h"
#include "rtioreq/core/engine.h"
#include "rtioreq/rt/profile.h"
#include "rtioreq/rt/rt.h"

RTIOREQ_BEGIN_DECLS

struct rtioreq_profile_run; /**< an applied profile (opaque) */

/**
 * One device to bind, given to the \p bind callback once per device of every VM, in file
 * order. For the first device naming a client, \p client is NULL and \p attr (its name preset
 * to dev->client, the rest zero) is to be filled: handler and priv (or handler NULL for a
 * blocking client), thread placement (NULL: the profile's clients core), is_default. Later
 * devices naming the same client get the \p client already created and \p attr is ignored.
 * If \p store is set by the callback, the created client is written there.
 * Library-allocated and handed to the callback by pointer only: it may grow at the end
 * (rtioreq/common.h).
 */
struct rtioreq_profile_bind {
	const struct rtioreq_profile_vm *pv;	   /**< the VM in the profile */
	const struct rtioreq_profile_device *dev;  /**< name, client, ranges, params */
	struct rtioreq_vm *vm;			   /**< the attached engine VM (paused) */
	struct rtioreq_client *client;		   /**< NULL: to be created from \p attr */
	struct rtioreq_client_attr attr;	   /**< to fill when \p client is NULL */
	struct rtioreq_client **store;		   /**< where to write the client, or NULL */
};

/**
 * Bind callback: 0, or -errno to fail the apply (everything done so far is undone). Use
 * dev->params / rtioreq_profile_param() and report bad values with their line:column.
 */
typedef int (*rtioreq_profile_bind_fn)(void *ctx, struct rtioreq_profile_bind *b);

/**
 * VM callback: fill \p attr for profile VM \p pv: page (required; the embedder owns it and
 * keeps it until rtioreq_profile_stop() returned), chan, ops, hv. id and vcpu_num are
 * preset from the profile and must be kept; paused is forced. 0 or -errno.
 */
typedef int (*rtioreq_profile_vm_fn)(void *ctx, const struct rtioreq_profile_vm *pv,
				     struct rtioreq_vm_attr *attr);

/** One line of what apply decided (warnings, real-time fallbacks, stale cpusets). */
typedef void (*rtioreq_profile_log_fn)(void *ctx, const char *line);

enum rtioreq_profile_apply_flags {
	/* fail with EPERM instead of running without real-time settings */
	RTIOREQ_PROFILE_APPLY_REQUIRE_RT = 1u << 0,
	/**< leave the VMs paused: the embedder calls rtioreq_vm_start() itself */
	RTIOREQ_PROFILE_APPLY_NO_START = 1u << 1,
};

/**
 * Attributes of rtioreq_profile_apply(). Set \p size to sizeof(struct
 * rtioreq_profile_apply_attr): fields added in later versions go at the end and read as
 * zero for callers built against this one.
 */
struct rtioreq_profile_apply_attr {
	size_t size;		      /**< sizeof(struct rtioreq_profile_apply_attr) */
	rtioreq_profile_vm_fn vm;     /**< required */
	rtioreq_profile_bind_fn bind; /**< required */
	rtioreq_profile_log_fn log;   /**< NULL: lines go to stderr */
	void *ctx;		      /**< passed to the callbacks */
	unsigned int flags;	      /**< enum rtioreq_profile_apply_flags */
	/** Directory of sched_rt_runtime_us (NULL: /proc/sys/kernel). For tests. */
	const char *sysctl_dir;
	/** Cpuset roots (NULL: the defaults of rtioreq_rt_cpuset_backend()). For tests. */
	const struct rtioreq_rt_roots *roots;
};

/**
 * rtioreq_profile_apply() - apply \p p (which must pass rtioreq_profile_validate() with
 * the host check) to this machine and start serving its VMs.
 * Without permission for real-time scheduling it says so once through \p log and applies
 * no real-time setting at all (SCHED_OTHER, no cpuset, no mlockall, no cpu_dma_latency,
 * throttling untouched), affinity only; with RTIOREQ_PROFILE_APPLY_REQUIRE_RT it fails.
 * A real-time poller that the kernel would throttle (rtioreq_rt_throttle_active()) is
 * refused unless the profile says `rt_throttling: off` (sched_rt_runtime_us = -1 until
 * stop/cleanup, then restored) or `keep` (reported through \p log).
 * \p p must outlive the run (devices and params are handed out from it).
 * Return: the run, or NULL with errno: EINVAL (attr, or a profile that does not
 * validate), EPERM (real time required and refused, or a throttled real-time poller and
 * no rt_throttling), EBUSY (too many runs in this process), ENOMEM, or the error of a
 * callback, engine or kernel call (the cause went through \p log).
 */
struct rtioreq_profile_run *rtioreq_profile_apply(const struct rtioreq_profile *p,
						  const struct rtioreq_profile_apply_attr *attr);

/**
 * rtioreq_profile_stop() - destroy the engine (every VM detached, every thread joined),
 * then undo every machine setting apply made: cpusets removed, cpu_dma_latency released,
 * sched_rt_runtime_us restored, in that order. Frees \p run. NULL is a no-op.
 */
void rtioreq_profile_stop(struct rtioreq_profile_run *run);

/**
 * rtioreq_profile_cleanup() - undo the machine settings of every run of this process now
 * (cpusets, cpu_dma_latency, sched_rt_runtime_us), without stopping the engines: for a
 * process about to exit on a signal. Meant for signal handlers with the cgroup v1 cpuset
 * backend: open, read, write, close, rmdir, nanosleep, no allocation, no lock;
 * the cpuset paths are formatted with snprintf of %s/%ld (glibc allocates nothing for
 * those, but POSIX does not list snprintf as async-signal-safe). With libcpuset's backend
 * call it from a normal thread (libcpuset may allocate). Idempotent: a later rtioreq_profile_stop() only stops
 * the engine. Returns the number of settings that could not be undone (0: all).
 */
int rtioreq_profile_cleanup(void);

/**
 * rtioreq_profile_cleanup_on_signals() - opt-in: install handlers for SIGINT, SIGTERM,
 * SIGHUP and SIGQUIT that call rtioreq_profile_cleanup() and then pass the signal on: to
 * the handler installed before (a function), or, for the default action, the signal is
 * raised again with the default action (the process dies of it, exit status 128+sig).
 * Signals set to SIG_IGN stay ignored. Call once, before rtioreq_profile_apply(). Not
 * thread-safe against other sigaction() calls. Return 0 or -errno.
 */
int rtioreq_profile_cleanup_on_signals(void);

/**
 * rtioreq_profile_throttling() - what real-time throttling would do to \p plan's pollers on
 * this machine (\p sysctl_dir: NULL for /proc/sys/kernel), in one sentence in \p what.
 * \p th gets the settings read. Return: 0 (no real-time poller, or no throttling), 1
 * (throttled, and the profile says keep), 2 (throttled, and the profile says off: apply
 * disables it for the run), -EPERM (throttled and rt_throttling not given: apply
 * refuses), or -errno (the settings cannot be read).
 */
int rtioreq_profile_throttling(const struct rtioreq_profile_plan *plan, const char *sysctl_dir,
			       struct rtioreq_rt_throttle *th, char *what, size_t len);

/** The engine of a run (valid until rtioreq_profile_stop()). */
struct rtioreq_engine *rtioreq_profile_run_engine(const struct rtioreq_profile_run *run);
/** The engine VM of profile VM \p id, or NULL. */
struct rtioreq_vm *rtioreq_profile_run_vm(const struct rtioreq_profile_run *run, int64_t id);
/** The plan applied (threads, slot owners), with policies as applied (see _rt()). */
const struct rtioreq_profile_plan *rtioreq_profile_run_plan(const struct rtioreq_profile_run *run);
/** The poller of plan thread \p i, or NULL (not a poller, or \p i out of range). */
struct rtioreq_poller *rtioreq_profile_run_poller(const struct rtioreq_profile_run *run,
						  unsigned int i);
/** Number of pollers started. */
unsigned int rtioreq_profile_run_pollers(const struct rtioreq_profile_run *run);
/** Whether the real-time settings were applied (false: affinity only, see apply). */
bool rtioreq_profile_run_rt(const struct rtioreq_profile_run *run);

RTIOREQ_END_DECLS

#endif /* RTIOREQ_RT_APPLY_H */
