/* SPDX-License-Identifier: MIT */
/* rtioreq: lock-free real-time I/O request engine. Umbrella header. */
#ifndef RTIOREQ_H
#define RTIOREQ_H

#include "rtioreq/abi.h"
#include "rtioreq/engine.h"
#include "rtioreq/exdev.h"
#include "rtioreq/hist.h"
#include "rtioreq/pcdev.h"
#include "rtioreq/profile.h"
#include "rtioreq/rt.h"
#include "rtioreq/shm.h"
#include "rtioreq/sim.h"

#endif /* RTIOREQ_H */
