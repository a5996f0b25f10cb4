// SPDX-License-Identifier: MIT
/*
 * Shared region and the hypervisor side of the protocol (docs/shm-protocol.md).
 * Labels (H1, U1, ...) are those of engine_pvt.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sys/fence_pvt.h"
#include "sys/futex_pvt.h"
#include "rtioreq/hv/shm.h"

static void shm_reset(struct rtioreq_shm *s)
{
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->lock_fd = -1;
}

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

	shm_reset(s);
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

/*
 * Header check, once the size is right. A region still being created (no magic yet)
 * is -EAGAIN, so a caller started first can wait for it; anything else wrong is
 * -EINVAL with the cause in s->why.
 */
static int shm_check(struct rtioreq_shm *s)
{
	struct rtioreq_chan *c = &s->region->chan;
	/* acquire: pairs with the creator's release of magic */
	uint32_t magic = atomic_load_explicit(rtioreq_wire_atomic(&c->magic), memory_order_acquire);
	const volatile struct rtioreq_chan *v = c;
	uint32_t n = v->vcpu_num, version = v->version;

	if (!magic) {
		snprintf(s->why, sizeof(s->why), "no magic yet (its creator has not finished)");
		return -EAGAIN;
	}
	if (magic != RTIOREQ_CHAN_MAGIC)
		snprintf(s->why, sizeof(s->why), "magic %#x, not %#x (RTIO)", magic,
			 RTIOREQ_CHAN_MAGIC);
	else if (version != RTIOREQ_CHAN_VERSION)
		snprintf(s->why, sizeof(s->why), "channel version %u, this engine speaks %u",
			 version, RTIOREQ_CHAN_VERSION);
	else if (!n || n > RTIOREQ_IO_REQUEST_MAX)
		snprintf(s->why, sizeof(s->why), "vcpu_num %u, not 1..%u", n,
			 RTIOREQ_IO_REQUEST_MAX);
	else
		return 0;
	return -EINVAL;
}

static struct flock owner_lock(short type)
{
	return (struct flock){ .l_type = type, .l_whence = SEEK_SET,
			       .l_start = offsetof(struct rtioreq_shm_region, chan.owner.word),
			       .l_len = sizeof(uint32_t) };
}

/*
 * One live engine per region (docs/shm-protocol.md, 7.4). The OFD lock is the
 * authority (the kernel drops it when its holder dies); the owner word says who holds
 * it and whether the last holder detached. OW: the word is written only under the
 * lock, and the kernel's lock hand-over orders the previous owner's stores (its slot
 * states included) before ours.
 */
static int shm_claim(struct rtioreq_shm *s)
{
	_Atomic uint32_t *w = rtioreq_wire_atomic(&s->region->chan.owner.word);
	struct flock fl = owner_lock(F_WRLCK);
	char path[32];
	int fd, e;

	/* an open file description of our own: OFD locks of one description never
	 * conflict, and an fd inherited from the creator (memfd) shares the creator's */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", s->fd);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fcntl(fd, F_OFD_SETLK, &fl)) {
		e = errno;
		close(fd);
		if (e != EAGAIN && e != EACCES)
			return -e;
		/* the holder stores its pid right after locking: give it a moment */
		for (int i = 0; i < 100; i++) {
			/* OW; relaxed: only a name for the message */
			s->holder = (pid_t)atomic_load_explicit(w, memory_order_relaxed);
			if (s->holder)
				break;
			usleep(1000);
		}
		return -EBUSY;
	}
	s->lock_fd = fd;
	/* OW: ours now; a nonzero old word is an owner that died without detaching */
	s->stale_owner = (pid_t)atomic_exchange_explicit(w, (uint32_t)getpid(),
							 memory_order_acq_rel);
	return 0;
}

int rtioreq_shm_open_fd(struct rtioreq_shm *s, int fd)
{
	struct stat st;
	int r;

	shm_reset(s);
	if (fstat(fd, &st))
		return -errno;
	if (st.st_size != sizeof(struct rtioreq_shm_region)) {
		snprintf(s->why, sizeof(s->why), "size %lld, not %zu%s", (long long)st.st_size,
			 sizeof(struct rtioreq_shm_region),
			 st.st_size ? "" : " (its creator has not sized it yet)");
		return st.st_size ? -EINVAL : -EAGAIN;
	}
	r = shm_map(s, fd);
	if (!r)
		r = shm_check(s);
	if (!r)
		r = shm_claim(s);
	if (r && s->region) {
		munmap(s->region, sizeof(struct rtioreq_shm_region));
		s->region = NULL;
		s->fd = -1;
	}
	return r;
}

int rtioreq_shm_open(struct rtioreq_shm *s, const char *name)
{
	int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
	int r;

	if (fd < 0) {
		shm_reset(s);
		return -errno;
	}
	r = rtioreq_shm_open_fd(s, fd);
	if (r)
		close(fd);
	return r;
}

void rtioreq_shm_close(struct rtioreq_shm *s)
{
	/* a claim always has a region: a zeroed struct (lock_fd 0) is left alone */
	if (s->region && s->lock_fd >= 0) {
		/* OW: detached cleanly, nothing to take over; then the kernel unlocks */
		atomic_store_explicit(rtioreq_wire_atomic(&s->region->chan.owner.word), 0,
				      memory_order_release);
		close(s->lock_fd);
	}
	if (s->region)
		munmap(s->region, sizeof(struct rtioreq_shm_region));
	if (s->fd >= 0)
		close(s->fd);
	if (s->owner && s->name[0])
		shm_unlink(s->name);
	shm_reset(s);
}

int rtioreq_hv_engine(const struct rtioreq_shm *s, pid_t *pid)
{
	struct flock fl = owner_lock(F_WRLCK);
	/* OW; relaxed: the lock state below is the answer, the word only a name */
	uint32_t w = atomic_load_explicit(rtioreq_wire_atomic(&s->region->chan.owner.word),
					  memory_order_relaxed);

	if (pid)
		*pid = (pid_t)w;
	if (fcntl(s->fd, F_OFD_GETLK, &fl))
		return -errno;
	if (fl.l_type != F_UNLCK)
		return RTIOREQ_HV_ENGINE_ALIVE;
	return w ? RTIOREQ_HV_ENGINE_DEAD : RTIOREQ_HV_ENGINE_NONE;
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
