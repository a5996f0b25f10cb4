/* SPDX-License-Identifier: MIT */
/* CPU primitives shared by every layer: the cache-line size and the spin-wait hint. */
#ifndef RTIOREQ_CPU_PVT_H
#define RTIOREQ_CPU_PVT_H

#include <stdatomic.h>

#define RTIOREQ__CACHELINE 64

/* One spin-wait iteration: PAUSE on x86 (frees the sibling hyperthread, no syscall). */
static inline void rtioreq__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	/* a compiler barrier only (no pairing): the spin loop re-reads its word */
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

#endif /* RTIOREQ_CPU_PVT_H */
