// SPDX-License-Identifier: MIT
/* The smallest rtioreq device model: a watchdog port and four 32-bit MMIO registers,
 * served inline by a poller. main() plays the hypervisor (one vCPU) on a private region. */
#include <stdio.h>
#include <stdlib.h>
#include <rtioreq.h>

#define WDT_PORT 0x440		/* 32-bit; write: kick; read: number of kicks */
#define REGS 0xfed00000ull	/* 4 registers, 16 bytes */

struct dev { uint32_t kicks, regs[4]; };

static int handle(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	struct dev *d = priv;
	uint32_t *r = req->type == RTIOREQ_TYPE_PORTIO ? &d->kicks : &d->regs[(req->addr - REGS) / 4];

	if (req->dir == RTIOREQ_DIR_READ)
		req->value = *r;
	else if (r == &d->kicks)
		d->kicks++;
	else
		*r = (uint32_t)req->value;
	return 0; /* on a poller: never block */
}

static uint64_t io(struct rtioreq_shm_region *r, uint32_t type, uint32_t dir, uint64_t addr,
		   uint64_t v)
{
	struct rtioreq_hv_req q = { .type = type, .dir = dir, .size = 4, .addr = addr, .value = v };

	if (rtioreq_hv_submit(r, 0, &q, true, true) < 0)
		exit(1);
	while (!rtioreq_hv_poll(r, 0, type, &v))
		; /* the vCPU spins for COMPLETE */
	rtioreq_hv_release(r, 0);
	return v;
}

int main(void)
{
	static struct dev dev;
	struct rtioreq_shm shm;
	struct rtioreq_thread_attr any = RTIOREQ_THREAD_ATTR_DEFAULT;
	struct rtioreq_engine *eng;
	struct rtioreq_vm *vm;
	struct rtioreq_client *c;
	struct rtioreq_vm_stats st;

	if (rtioreq_shm_create(&shm, NULL, 1) || !(eng = rtioreq_engine_create(NULL)))
		return 1;
	vm = rtioreq_vm_attach(eng, &(struct rtioreq_vm_attr){ .id = 1, .vcpu_num = 1,
			.page = &shm.region->page, .chan = &shm.region->chan, .paused = true });
	c = vm ? rtioreq_client_create(vm, &(struct rtioreq_client_attr){ .name = "wdt+regs",
			.handler = handle, .priv = &dev }) : NULL;
	if (!c || rtioreq_range_add(c, RTIOREQ_TYPE_PORTIO, WDT_PORT, WDT_PORT + 3) ||
	    rtioreq_range_add(c, RTIOREQ_TYPE_MMIO, REGS, REGS + 15) ||
	    rtioreq_vm_set_poller(vm, 0, rtioreq_poller_create(eng, &any)) || rtioreq_vm_start(vm))
		return 1;
	for (int i = 0; i < 3; i++)
		io(shm.region, RTIOREQ_TYPE_PORTIO, RTIOREQ_DIR_WRITE, WDT_PORT, 1);
	io(shm.region, RTIOREQ_TYPE_MMIO, RTIOREQ_DIR_WRITE, REGS + 4, 0xcafe);
	printf("rtioreq %s: kicks %llu, reg1 %#llx, ", rtioreq_version_string(),
	       (unsigned long long)io(shm.region, RTIOREQ_TYPE_PORTIO, RTIOREQ_DIR_READ, WDT_PORT, 0),
	       (unsigned long long)io(shm.region, RTIOREQ_TYPE_MMIO, RTIOREQ_DIR_READ, REGS + 4, 0));
	rtioreq_vm_stats(vm, &st);
	printf("completed %llu, polled %llu, unclaimed %llu\n", (unsigned long long)st.completed,
	       (unsigned long long)st.polled, (unsigned long long)st.unclaimed);
	rtioreq_engine_destroy(eng); /* detaches the VM, stops the poller */
	rtioreq_shm_close(&shm);
	return 0;
}
