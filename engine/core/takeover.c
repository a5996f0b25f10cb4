// SPDX-License-Identifier: MIT
/*
 * Takeover: an engine attaching a region whose previous engine died without detaching
 * finishes what that engine left (docs/shm-protocol.md, 7.4). Only the region's owner
 * may do this (the OFD lock of engine/hv/shm.c): the previous engine is then provably
 * gone, so a PROCESSING slot will never be completed by anyone else, and the protocol
 * forbids the hypervisor to touch it: without this sweep its vCPU would wait forever.
 */
#include "core/engine_pvt.h"

void rtioreq__vm_takeover(struct rtioreq_vm *vm, uint32_t n)
{
	for (uint16_t v = 0; v < n; v++) {
		struct rtioreq_io_request *wire = &vm->page->req_slot[v];
		struct rtioreq__slot *sl = &vm->slot[v];
		/* acquire; the dead owner's stores are ordered before ours by OW */
		uint32_t state = atomic_load_explicit(rtioreq_wire_atomic(&wire->processed),
						      memory_order_acquire);

		if (state == RTIOREQ_STATE_PROCESSING) {
			/* read once like any request: type, direction and completion_polling
			 * decide the write-back and the notification; the result is all ones */
			sl->valid = rtioreq__snapshot(wire, &sl->req);
			sl->req.vcpu = v;
			sl->req.vm_id = vm->id;
			/* relaxed: the VM is not published, this thread is its only taker */
			atomic_store_explicit(&sl->busy, 1, memory_order_relaxed);
			rtioreq__complete_ones(vm, sl, &sl->st.abandoned, false);
		} else if (state == RTIOREQ_STATE_COMPLETE) {
			/* it may have died between C2 and N1: one more increment only makes a
			 * waiter re-check (counters are compared for inequality only). N1
			 * (release, in rtioreq__chan_ring): after the dead owner's C2, ordered
			 * before us by OW; pairs with the hv's acquire load of done_seq */
			rtioreq__chan_ring(rtioreq_wire_atomic(&vm->chan->done_seq[v].word));
		}
	}
}
