/* SPDX-License-Identifier: MIT */
/* Profiles, private: loading from memory (the fuzz target and tests use it). */
#ifndef RTIOREQ_PROFILE_PVT_H
#define RTIOREQ_PROFILE_PVT_H

#include <stddef.h>

#include "rtioreq/rt/profile.h"

/*
 * rtioreq__profile_load_buffer() - rtioreq_profile_load() of the @len bytes at @buf (any
 * bytes: no NUL terminator needed), named @path in diagnostics. Same returns.
 */
struct rtioreq_profile *rtioreq__profile_load_buffer(const char *path, const char *buf,
						      size_t len, rtioreq_profile_diag_fn diag,
						      void *ctx);

#endif /* RTIOREQ_PROFILE_PVT_H */
