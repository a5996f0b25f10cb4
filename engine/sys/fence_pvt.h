/* SPDX-License-Identifier: MIT */
/*
 * The full fence of the store-load (Dekker) pairs: hypervisor H1 + fence + load of
 * polled_mask/need_wakeup against the engine's seq_cst updates of those words and
 * its re-check of the slots. ThreadSanitizer does not model atomic_thread_fence (GCC
 * refuses it under -Werror=tsan); there, a seq_cst read-modify-write of a dummy word
 * stands in: TSan understands it, and it is a full barrier on x86 and ARMv8 too.
 */
#ifndef RTIOREQ_FENCE_PVT_H
#define RTIOREQ_FENCE_PVT_H

#include <stdatomic.h>

#if defined(__SANITIZE_THREAD__)
static _Atomic unsigned int rtioreq__fence_word;
#define RTIOREQ__FENCE_SEQ_CST() \
	((void)atomic_fetch_add_explicit(&rtioreq__fence_word, 0, memory_order_seq_cst))
#else
#define RTIOREQ__FENCE_SEQ_CST() atomic_thread_fence(memory_order_seq_cst)
#endif

#endif /* RTIOREQ_FENCE_PVT_H */
