/* SPDX-License-Identifier: MIT */
/**
 * @file rtioreq.h
 * rtioreq: lock-free real-time I/O request engine. Umbrella header: includes every
 * public header of what this build of the library contains (rtioreq/version.h says
 * which optional parts are in). Conventions (errors, growing structs):
 * rtioreq/common.h.
 */
#ifndef RTIOREQ_H
#define RTIOREQ_H

#include "rtioreq/version.h"
#include "rtioreq/abi.h"
#include "rtioreq/core/engine.h"
#include "rtioreq/core/events.h"
#include "rtioreq/core/hist.h"
#include "rtioreq/devices/exdev.h"
#include "rtioreq/devices/pcdev.h"
#include "rtioreq/rt/rt.h"
#include "rtioreq/hv/shm.h"
#include "rtioreq/hv/sim.h"
#if RTIOREQ_HAVE_PROFILES
#include "rtioreq/rt/profile.h"
#include "rtioreq/rt/apply.h"
#endif
#if RTIOREQ_HAVE_KVM
#include "rtioreq/hv/kvm.h"
#endif

#endif /* RTIOREQ_H */
