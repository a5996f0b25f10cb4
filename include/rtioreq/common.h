/* SPDX-License-Identifier: MIT */
/**
 * @file common.h
 * Conventions shared by every public header of rtioreq. Included by each of them.
 *
 * @par Errors
 * Calls that return `int` return 0 (or a documented count, >= 0) on success and a
 * negative errno value on failure (`-EINVAL`, `-ENOMEM`, ...): use strerror(-ret).
 * Constructors (calls that return a pointer to a new object) return NULL and set
 * `errno`. Calls that return `void` cannot fail. The polling hot path and handlers never
 * touch `errno`. Lookups that return an index or a flag say what "none" is (e.g.
 * rtioreq_profile_plan_owner() returns -1). The library returns no codes beyond errno, so there is no
 * rtioreq_strerror(): strerror() names every error.
 *
 * @par Growing structs (ABI)
 * Every struct the caller allocates and the library reads (`*_attr`, `*_ops`) or fills
 * (`*_stats`, `*_result`) ends in reserved space (`reserved[]`), which must be zero:
 * zero-initialise these structs (`= { 0 }` or designated initialisers) and set only
 * the fields you use. A later minor version takes new fields out of the reserved
 * space, where zero means "the old behaviour", so the size and the offsets of every
 * existing field never change within a soname and a binary built against an older
 * version keeps working with a newer library. tests/api/test_api.c pins the sizes.
 * The same holds for the elements of arrays the library allocates and the caller
 * indexes (a loaded profile's cores, slots, VMs, devices, ranges and params; a plan's
 * threads and slots): the stride is part of the ABI, so they end in reserved space too.
 * struct rtioreq_profile_apply_attr has a `size` field instead (set it to its sizeof).
 * Structs the library allocates and hands out only by pointer, never as an array
 * element, may grow at the end: a loaded profile (struct rtioreq_profile), a
 * diagnostic, an event, a bind request (rtioreq/rt/apply.h), a simulator op; read the
 * fields you know, never allocate one or copy one back to the library. Handles
 * (struct rtioreq_engine, ...) are opaque. Fixed layouts, no reserved tail: the wire
 * format (rtioreq/abi.h), struct rtioreq_req (the hot path's snapshot), struct
 * rtioreq_hist, struct rtioreq_sim_workload (a {function, context} pair inside the
 * simulator's attributes) and the example devices' shadow (struct
 * rtioreq_exdev_oracle); the example devices themselves (struct rtioreq_exdev, which
 * grew handler_thread before any release) end in reserved space like the attributes.
 *
 * @par Threads
 * Each header says which thread may call what; handlers on the polling path must not
 * block (include/rtioreq/core/engine.h). docs/embedding.md describes the threads the
 * library creates and what an embedding process must know.
 */
#ifndef RTIOREQ_COMMON_H
#define RTIOREQ_COMMON_H

/**
 * @def RTIOREQ_BEGIN_DECLS
 * Declarations between RTIOREQ_BEGIN_DECLS and RTIOREQ_END_DECLS have C linkage and
 * default visibility: the library is built with -fvisibility=hidden, so exactly the
 * functions declared in the public headers are exported from librtioreq.so.
 */
/** @def RTIOREQ_END_DECLS
 * Ends what RTIOREQ_BEGIN_DECLS began. */
#ifdef __cplusplus
#define RTIOREQ_BEGIN_DECLS \
	extern "C" {        \
	_Pragma("GCC visibility push(default)")
#define RTIOREQ_END_DECLS                 \
	_Pragma("GCC visibility pop") \
	}
#else
#define RTIOREQ_BEGIN_DECLS _Pragma("GCC visibility push(default)")
#define RTIOREQ_END_DECLS _Pragma("GCC visibility pop")
#endif

/** A compile-time check that C11 and C++11 both accept. */
#ifdef __cplusplus
#define RTIOREQ_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define RTIOREQ_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#endif /* RTIOREQ_COMMON_H */
