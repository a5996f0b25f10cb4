/* SPDX-License-Identifier: MIT */
/* rtioreq: lock-free real-time I/O request engine. Umbrella header. */
#ifndef RTIOREQ_H
#define RTIOREQ_H

#include "rtioreq/abi.h"
#include "rtioreq/core/engine.h"
#include "rtioreq/core/events.h"
#include "rtioreq/devices/exdev.h"
#include "rtioreq/core/hist.h"
#include "rtioreq/devices/pcdev.h"
#include "rtioreq/rt/profile.h"
#include "rtioreq/rt/rt.h"
#include "rtioreq/rt/apply.h"
#include "rtioreq/hv/shm.h"
#include "rtioreq/hv/sim.h"

#endif /* RTIOREQ_H */
