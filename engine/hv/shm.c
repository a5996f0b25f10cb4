// SPDX-License-Identifier: MIT
/*
 * Shared region and the hypervisor side of the protocol (docs/shm-protocol.md).
 * Labels (H1, U1, ...) are those of engine_pvt.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sys/fence_pvt.h"
#include "sys/futex_pvt.h"
#include "rtioreq/hv/shm.h"

static int shm_map(struct rtioreq_shm *s, int fd)
{
	void *p = mmap(NULL, sizeof(struct rtioreq_shm_region), PROT_READ | PROT_WRITE,
		       MAP_SHARED, fd, 0);

	if (p == MAP_FAILED)
		return -errno;
	s->region = p;
	s->fd = fd;
	return 0;
}

int rtioreq_shm_create(struct rtioreq_shm *s, const char *name, uint16_t vcpu_num)
{
	struct rtioreq_chan *c;
	int fd, r;

	memset(s, 0, sizeof(*s));
	s->fd = -1;
	if (!vcpu_num || vcpu_num > RTIOREQ_IO_REQUEST_MAX)
		return -EINVAL;
	if (name && (name[0] != '/' || strlen(name) >= sizeof(s->name) || strchr(name + 1, '/')))
		return -EINVAL;
	if (name)
		fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	else
		fd = memfd_create("rtioreq", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (name)
		snprintf(s->name, sizeof(s->name), "%s", name);
	s->owner = true;
	if (ftruncate(fd, sizeof(struct rtioreq_shm_region))) {
		r = -errno;
		goto fail;
	}
	r = shm_map(s, fd);
	if (r)
		goto fail;
	for (unsigned int v = 0; v < RTIOREQ_IO_REQUEST_MAX; v++)
		s->region->page.req_slot[v].processed = RTIOREQ_STATE_FREE;
	c = &s->region->chan;
	c->version = RTIOREQ_CHAN_VERSION;
	c->vcpu_num = vcpu_num;
	/* release: the header is complete before the magic says so */
	atomic_store_explicit(rtioreq_wire_atomic(&c->magic), RTIOREQ_CHAN_MAGIC,
			      memory_order_release);
	return 0;
fail:
	close(fd);
	if (name)
		shm_unlink(name);
	s->fd = -1;
	return r;
}

static int shm_check(struct rtioreq_shm *s)
{
	struct rtioreq_chan *c = &s->region->chan;
	/* acquire: pairs with the creator's release of magic */
	uint32_t magic = atomic_load_explicit(rtioreq_wire_atomic(&c->magic), memory_order_acquire);
	const volatile struct rtioreq_chan *v = c;
	uint32_t n = v->vcpu_num, version = v->version;

	if (magic != RTIOREQ_CHAN_MAGIC || version != RTIOREQ_CHAN_VERSION || !n ||
	    n > RTIOREQ_IO_REQUEST_MAX)
		return -EINVAL;
	return 0;
}

int rtioreq_shm_open_fd(struct rtioreq_shm *s, int fd)
{
	struct stat st;
	int r;

	memset(s, 0, sizeof(*s));
	s->fd = -1;
	if (fstat(fd, &st))
		return -errno;
	if (st.st_size != sizeof(struct rtioreq_shm_region))
		return -EINVAL;
	r = shm_map(s, fd);
	if (r)
		return r;
	r = shm_check(s);
	if (r) {
		munmap(s->region, sizeof(struct rtioreq_shm_region));
		s->region = NULL;
		s->fd = -1;
	}
	return r;
}

int rtioreq_shm_open(struct rtioreq_shm *s, const char *name)
{
	int fd = shm_open(name, O_RDWR, 0);
	int r;

	if (fd < 0) {
		memset(s, 0, sizeof(*s));
		s->fd = -1;
		return -errno;
	}
	r = rtioreq_shm_open_fd(s, fd);
	if (r)
		close(fd);
	return r;
}

void rtioreq_shm_close(struct rtioreq_shm *s)
{
	if (s->region)
		munmap(s->region, sizeof(struct rtioreq_shm_region));
	if (s->fd >= 0)
		close(s->fd);
	if (s->owner && s->name[0])
		shm_unlink(s->name);
	memset(s, 0, sizeof(*s));
	s->fd = -1;
}

/* ---------------------------------------------------------------------------------- */
/* Hypervisor side */

static _Atomic uint32_t *slot_state(struct rtioreq_shm_region *r, uint16_t vcpu)
{
	return rtioreq_wire_atomic(&r->page.req_slot[vcpu].processed);
}

bool rtioreq_hv_needs_upcall(struct rtioreq_shm_region *r, uint16_t vcpu)
{
	/* Dekker pair with the engine's seq_cst update of polled_mask (vm_place()): after
	 * this fence either we see the bit cleared, or the engine's later scan sees H1 */
	RTIOREQ__FENCE_SEQ_CST();
	uint32_t bit = 1u << vcpu;
	/* relaxed, after the fence: polled_mask (vm_place()), need_wakeup (the NW pair
	 * with a poller going to sleep: it set the bit, fenced, then re-checked H1) */
	uint32_t polled = atomic_load_explicit(rtioreq_wire_atomic(&r->chan.polled_mask.word),
					       memory_order_relaxed);
	uint32_t nw = atomic_load_explicit(rtioreq_wire_atomic(&r->chan.need_wakeup.word),
					   memory_order_relaxed);

	return !(polled & bit) || (nw & bit);
}

void rtioreq_hv_upcall(struct rtioreq_shm_region *r)
{
	_Atomic uint32_t *w = rtioreq_wire_atomic(&r->chan.upcall_seq.word);

	rtioreq__chan_ring(w); /* U1: after H1; pairs with the dispatcher's D1 */
}

int rtioreq_hv_submit(struct rtioreq_shm_region *r, uint16_t vcpu, const struct rtioreq_hv_req *q,
		      bool completion_polling, bool ring)
{
	struct rtioreq_io_request *s = &r->page.req_slot[vcpu];

	/* acquire: pairs with our own earlier FREE store and any engine store */
	if (atomic_load_explicit(slot_state(r, vcpu), memory_order_acquire) != RTIOREQ_STATE_FREE)
		return -EBUSY;
	s->type = q->type;
	s->completion_polling = completion_polling;
	s->kernel_handled = 0;
	memset(&s->reqs, 0, sizeof(s->reqs));
	switch (q->type) {
	case RTIOREQ_TYPE_PCICFG:
		s->reqs.pci_request.direction = q->dir;
		s->reqs.pci_request.size = q->size;
		s->reqs.pci_request.value = (uint32_t)q->value;
		s->reqs.pci_request.bus = q->bus;
		s->reqs.pci_request.dev = q->dev;
		s->reqs.pci_request.func = q->func;
		s->reqs.pci_request.reg = (uint32_t)q->addr;
		break;
	case RTIOREQ_TYPE_MMIO:
		s->reqs.mmio_request.direction = q->dir;
		s->reqs.mmio_request.address = q->addr;
		s->reqs.mmio_request.size = q->size;
		s->reqs.mmio_request.value = q->value;
		break;
	default: /* PORTIO, and anything else a test wants to send as is */
		s->reqs.pio_request.direction = q->dir;
		s->reqs.pio_request.address = q->addr;
		s->reqs.pio_request.size = q->size;
		s->reqs.pio_request.value = (uint32_t)q->value;
		break;
	}
	/* H1: the filled request before PENDING; pairs with the engine's T1 */
	atomic_store_explicit(slot_state(r, vcpu), RTIOREQ_STATE_PENDING, memory_order_release);
	if (!rtioreq_hv_needs_upcall(r, vcpu))
		return 0;
	if (ring)
		rtioreq_hv_upcall(r);
	return 1;
}

bool rtioreq_hv_poll(struct rtioreq_shm_region *r, uint16_t vcpu, uint32_t type, uint64_t *value)
{
	const struct rtioreq_io_request *s = &r->page.req_slot[vcpu];

	/* H2: pairs with the engine's C2; the value is complete once COMPLETE is seen */
	if (atomic_load_explicit(slot_state(r, vcpu), memory_order_acquire) !=
	    RTIOREQ_STATE_COMPLETE)
		return false;
	if (value)
		*value = type == RTIOREQ_TYPE_MMIO ? s->reqs.mmio_request.value
						   : s->reqs.pio_request.value;
	return true;
}

void rtioreq_hv_release(struct rtioreq_shm_region *r, uint16_t vcpu)
{
	/* H3: the hypervisor is the only writer of FREE; the engine acts on PENDING only */
	atomic_store_explicit(slot_state(r, vcpu), RTIOREQ_STATE_FREE, memory_order_release);
}

uint32_t rtioreq_hv_done_seq(struct rtioreq_shm_region *r, uint16_t vcpu)
{
	/* acquire: pairs with the engine's N1, read before checking the slot's state */
	return atomic_load_explicit(rtioreq_wire_atomic(&r->chan.done_seq[vcpu].word),
				    memory_order_acquire);
}

int rtioreq_hv_wait(struct rtioreq_shm_region *r, uint32_t mask, const uint32_t *seen,
		    uint64_t timeout_ns)
{
	struct futex_waitv wv[RTIOREQ_IO_REQUEST_MAX];
	struct timespec abs;
	unsigned int n = 0;
	int ret;

	clock_gettime(CLOCK_MONOTONIC, &abs);
	abs.tv_sec += (time_t)(timeout_ns / 1000000000u);
	abs.tv_nsec += (long)(timeout_ns % 1000000000u);
	if (abs.tv_nsec >= 1000000000) {
		abs.tv_sec++;
		abs.tv_nsec -= 1000000000;
	}
	for (uint32_t m = mask & 0xffffu; m; m &= m - 1) {
		uint16_t v = (uint16_t)__builtin_ctz(m);

		rtioreq__futex_waitv_set(&wv[n++], rtioreq_wire_atomic(&r->chan.done_seq[v].word),
					 seen[v], true);
	}
	if (!n)
		return 0;
	ret = rtioreq__futex_waitv(wv, n, &abs);
	return ret == -EAGAIN ? 0 : ret;
}
