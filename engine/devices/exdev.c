// SPDX-License-Identifier: MIT
/* Example device models (RAM-backed MMIO, accumulator port) and their workload. */
#include <errno.h>
#include <string.h>

#include "rtioreq/devices/exdev.h"

int rtioreq_exdev_ram_handler(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	struct rtioreq_exdev *d = priv;
	uint64_t off = req->addr - RTIOREQ_EXDEV_RAM_BASE;

	if (req->type != RTIOREQ_TYPE_MMIO || req->addr < RTIOREQ_EXDEV_RAM_BASE ||
	    off + req->size > RTIOREQ_EXDEV_RAM_SIZE)
		return -EINVAL;
	if (req->dir == RTIOREQ_DIR_WRITE) {
		memcpy(d->ram + off, &req->value, req->size); /* little endian */
	} else {
		req->value = 0;
		memcpy(&req->value, d->ram + off, req->size);
	}
	return 0;
}

int rtioreq_exdev_port_handler(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	struct rtioreq_exdev *d = priv;

	if (req->type != RTIOREQ_TYPE_PORTIO)
		return -EINVAL;
	if (req->dir == RTIOREQ_DIR_WRITE)
		d->acc[req->vcpu] += (uint32_t)req->value;
	else
		req->value = d->acc[req->vcpu] & rtioreq_size_mask(req->size);
	return 0;
}

int rtioreq_exdev_attach(struct rtioreq_exdev *d, struct rtioreq_vm *vm)
{
	const struct rtioreq_client_attr ram = {
		.name = "exdev-ram", .handler = rtioreq_exdev_ram_handler, .priv = d,
		.handler_thread = d->handler_thread
	};
	const struct rtioreq_client_attr port = {
		.name = "exdev-port", .handler = rtioreq_exdev_port_handler, .priv = d,
		.handler_thread = d->handler_thread
	};
	int r;

	d->ram_client = rtioreq_client_create(vm, &ram);
	if (!d->ram_client)
		return -errno;
	d->port_client = rtioreq_client_create(vm, &port);
	if (!d->port_client) {
		r = -errno;
		goto fail;
	}
	r = rtioreq_range_add(d->ram_client, RTIOREQ_TYPE_MMIO, RTIOREQ_EXDEV_RAM_BASE,
			      RTIOREQ_EXDEV_RAM_BASE + RTIOREQ_EXDEV_RAM_SIZE - 1);
	if (!r)
		r = rtioreq_range_add(d->port_client, RTIOREQ_TYPE_PORTIO, RTIOREQ_EXDEV_PORT,
				      RTIOREQ_EXDEV_PORT + 3);
	if (!r)
		return 0;
	rtioreq_client_destroy(d->port_client);
fail:
	rtioreq_client_destroy(d->ram_client);
	d->ram_client = d->port_client = NULL;
	return r;
}

void rtioreq_exdev_oracle_init(struct rtioreq_exdev_oracle *o, uint64_t seed,
			       unsigned int unmapped_pct)
{
	memset(o, 0, sizeof(*o));
	o->seed = seed;
	o->unmapped_pct = unmapped_pct > 100 ? 100 : unmapped_pct;
}

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

void rtioreq_exdev_gen(void *ctx, uint16_t vcpu, uint64_t k, struct rtioreq_sim_op *op)
{
	struct rtioreq_exdev_oracle *o = ctx;
	uint64_t x = splitmix64(o->seed ^ ((uint64_t)vcpu << 48) ^ k);
	unsigned int pick = (unsigned int)(x % 100);
	bool write = (x >> 24) & 1;
	uint64_t value = splitmix64(x);

	memset(op, 0, sizeof(*op));
	op->req.dir = write ? RTIOREQ_DIR_WRITE : RTIOREQ_DIR_READ;
	op->check = write ? RTIOREQ_SIM_CHECK_NONE : RTIOREQ_SIM_CHECK_EQ;
	if (pick < o->unmapped_pct) {
		op->req.type = RTIOREQ_TYPE_PORTIO;
		op->req.addr = RTIOREQ_EXDEV_UNMAPPED_PORT;
		op->req.size = 1u << ((x >> 8) % 3);
		op->req.value = value & rtioreq_size_mask(op->req.size);
		op->expect = ~(uint64_t)0; /* nobody claims it */
	} else if (pick & 1) {
		uint32_t size = 1u << ((x >> 8) & 3);
		uint32_t off = vcpu * 256u + (uint32_t)((x >> 16) % (256 / size)) * size;

		op->req.type = RTIOREQ_TYPE_MMIO;
		op->req.addr = RTIOREQ_EXDEV_RAM_BASE + off;
		op->req.size = size;
		op->req.value = value & rtioreq_size_mask(size);
		if (write)
			memcpy(o->ram + off, &op->req.value, size);
		else
			memcpy(&op->expect, o->ram + off, size);
	} else {
		op->req.type = RTIOREQ_TYPE_PORTIO;
		op->req.size = 1u << ((x >> 8) % 3);
		/* aligned, so the access lies wholly inside 0x510..0x513 */
		op->req.addr = RTIOREQ_EXDEV_PORT + ((uint32_t)(x >> 16) & 3 & ~(op->req.size - 1));
		op->req.value = value & rtioreq_size_mask(op->req.size);
		if (write)
			o->acc[vcpu] += (uint32_t)op->req.value;
		else
			op->expect = o->acc[vcpu];
	}
}
