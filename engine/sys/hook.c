// SPDX-License-Identifier: MIT
/* The test hook's storage (test builds only; see hook_pvt.h). */
#include "sys/hook_pvt.h"

#ifdef RTIOREQ_TEST_HOOKS
_Atomic(rtioreq__hook_fn) rtioreq__test_hook;
#else
typedef int rtioreq__hook_unused; /* ISO C: a translation unit must not be empty */
#endif
