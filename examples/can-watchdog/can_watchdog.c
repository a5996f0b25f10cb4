// SPDX-License-Identifier: MIT
/*
 * An out-of-tree device model on rtioreq: a CAN controller at an MMIO window that raises
 * an interrupt when a frame arrives, and a watchdog port, configured from a YAML profile
 * through rtioreq_profile_apply() alone. A small "guest" (two vCPU threads writing the
 * slot page as a hypervisor would) sends frames in loopback and kicks the watchdog.
 *
 *   usage: can-watchdog PROFILE [--hold]   (--hold: keep serving until a signal)
 *
 * CAN registers (offsets in the window): 0x00 TX (write: a frame, looped back), 0x08 RX
 * (read: the oldest frame, deasserts the interrupt when the queue empties), 0x10 STATUS
 * (frames queued), 0x18 BITRATE (the profile's params.bitrate). Watchdog port: write
 * kicks it, read returns the kicks so far.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#endif
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rtioreq.h>

struct can {
	struct rtioreq_vm *vm;
	uint64_t base;
	uint32_t irq, bitrate;
	pthread_mutex_t lock; /* the queue; the poller and client threads both take it */
	uint64_t q[64];
	unsigned int head, n;
};

struct wdt {
	_Atomic uint64_t kicks;
	uint64_t timeout_ms;
};

static struct can can = { .lock = PTHREAD_MUTEX_INITIALIZER };
static struct wdt wdt;
static _Atomic unsigned int irq_raised, irq_level;

/* The hypervisor's side of raise_irq: count the edges the guest would see. */
static int hv_raise_irq(void *hv, uint32_t irq, uint32_t level)
{
	if (level && !atomic_exchange(&irq_level, 1))
		atomic_fetch_add(&irq_raised, 1);
	if (!level)
		atomic_store(&irq_level, 0);
	return 0;
}

static const struct rtioreq_vm_ops hv_ops = { .raise_irq = hv_raise_irq };

static int can_handler(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	struct can *d = priv;
	uint64_t off = req->addr - d->base;
	int raise = -1;

	pthread_mutex_lock(&d->lock);
	if (off == 0x00 && req->dir == RTIOREQ_DIR_WRITE && d->n < 64) {
		d->q[(d->head + d->n++) % 64] = req->value;
		raise = 1;
	} else if (off == 0x08 && req->dir == RTIOREQ_DIR_READ) {
		req->value = d->n ? d->q[d->head] : 0;
		if (d->n) {
			d->head = (d->head + 1) % 64;
			if (!--d->n)
				raise = 0;
		}
	} else if (off == 0x10 && req->dir == RTIOREQ_DIR_READ) {
		req->value = d->n;
	} else if (off == 0x18 && req->dir == RTIOREQ_DIR_READ) {
		req->value = d->bitrate;
	}
	pthread_mutex_unlock(&d->lock);
	if (raise >= 0)
		rtioreq_vm_raise_irq(d->vm, d->irq, (uint32_t)raise);
	return 0;
}

static int wdt_handler(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	struct wdt *w = priv;

	if (req->dir == RTIOREQ_DIR_WRITE)
		atomic_fetch_add(&w->kicks, 1);
	else
		req->value = atomic_load(&w->kicks);
	return 0;
}

static struct rtioreq_shm shm;

static int vm_cb(void *ctx, const struct rtioreq_profile_vm *pv, struct rtioreq_vm_attr *attr)
{
	int r = rtioreq_shm_create(&shm, NULL, attr->vcpu_num);

	if (r)
		return r;
	attr->page = &shm.region->page;
	attr->chan = &shm.region->chan;
	attr->ops = &hv_ops;
	return 0;
}

/* A parameter as a number, or an error naming its line:column in the profile. */
static int param_u64(const char *path, const struct rtioreq_profile_device *dev,
		     const char *key, uint64_t *out)
{
	for (unsigned int i = 0; i < dev->n_params; i++) {
		char *end;

		if (strcmp(dev->params[i].key, key))
			continue;
		*out = strtoull(dev->params[i].value, &end, 0);
		if (end != dev->params[i].value && !*end)
			return 0;
		fprintf(stderr, "%s:%u:%u: %s.%s: '%s' is not a number\n", path,
			dev->params[i].line, dev->params[i].column, dev->name, key,
			dev->params[i].value);
		return -EINVAL;
	}
	fprintf(stderr, "%s: device %s: params.%s is required\n", path, dev->name, key);
	return -EINVAL;
}

static int bind_cb(void *ctx, struct rtioreq_profile_bind *b)
{
	const char *path = ctx;
	uint64_t v;

	if (!strcmp(b->dev->client, "can")) {
		if (param_u64(path, b->dev, "irq", &v))
			return -EINVAL;
		can.irq = (uint32_t)v;
		if (param_u64(path, b->dev, "bitrate", &v))
			return -EINVAL;
		can.bitrate = (uint32_t)v;
		can.base = b->dev->ranges[0].start;
		can.vm = b->vm;
		b->attr.handler = can_handler;
		b->attr.priv = &can;
		return 0;
	}
	if (!strcmp(b->dev->client, "wdt")) {
		if (param_u64(path, b->dev, "timeout_ms", &wdt.timeout_ms))
			return -EINVAL;
		b->attr.handler = wdt_handler;
		b->attr.priv = &wdt;
		return 0;
	}
	fprintf(stderr, "%s: device %s: no model for client '%s' (can, wdt)\n", path,
		b->dev->name, b->dev->client);
	return -ENOENT;
}

/* The guest's access on vCPU @vcpu: submit, spin for COMPLETE, release the slot. */
static uint64_t guest_io(uint16_t vcpu, uint32_t type, uint32_t dir, uint64_t addr,
			 uint64_t value)
{
	struct rtioreq_hv_req q = { .type = type, .dir = dir, .size = 8, .addr = addr,
				    .value = value };
	uint64_t v = 0;

	if (type == RTIOREQ_TYPE_PORTIO)
		q.size = 1; /* the port is one byte wide */
	while (rtioreq_hv_submit(shm.region, vcpu, &q, true, true) < 0)
		sched_yield();
	while (!rtioreq_hv_poll(shm.region, vcpu, type, &v))
		sched_yield();
	rtioreq_hv_release(shm.region, vcpu);
	return v;
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "can-watchdog.yaml";
	bool hold = argc > 2 && !strcmp(argv[2], "--hold");
	struct rtioreq_profile_run *run;
	struct rtioreq_profile *p;
	struct sched_param sp;
	uint64_t bitrate, got = 0, kicks;
	int bad = 0, pol;
	cpu_set_t set;
	pid_t tid;

	p = rtioreq_profile_load(path, NULL, NULL); /* errors: file:line:column on stderr */
	if (!p || rtioreq_profile_validate(p, true))
		return 2;
	/*
	 * A background job of a script starts with SIGINT ignored, and the library leaves
	 * ignored signals alone (nohup's SIGHUP must stay ignored); this program wants
	 * SIGINT to stop it wherever it was started.
	 */
	signal(SIGINT, SIG_DFL);
	/* opt-in: on INT/TERM/HUP/QUIT the cpuset and settings are undone before we die */
	if (rtioreq_profile_cleanup_on_signals())
		return 2;
	run = rtioreq_profile_apply(p, &(struct rtioreq_profile_apply_attr){
		.size = sizeof(struct rtioreq_profile_apply_attr), .vm = vm_cb, .bind = bind_cb,
		.ctx = (void *)path });
	if (!run) {
		fprintf(stderr, "can-watchdog: %s not applied: %s\n", path, strerror(errno));
		return 2;
	}
	tid = rtioreq_poller_tid(rtioreq_profile_run_poller(run, 0));
	pol = sched_getscheduler(tid);
	sched_getparam(tid, &sp);
	sched_getaffinity(tid, sizeof(set), &set);
	printf("poller tid %d: %s %d, CPUs %d, %s\n", (int)tid,
	       pol == SCHED_FIFO ? "SCHED_FIFO" : "SCHED_OTHER", sp.sched_priority, CPU_COUNT(&set),
	       CPU_COUNT(&set) == 1 && CPU_ISSET(1, &set) ? "CPU 1" : "not CPU 1 only");
	fflush(stdout);

	bitrate = guest_io(0, RTIOREQ_TYPE_MMIO, RTIOREQ_DIR_READ, can.base + 0x18, 0);
	for (uint64_t i = 1; i <= 1000; i++) {
		guest_io(0, RTIOREQ_TYPE_MMIO, RTIOREQ_DIR_WRITE, can.base + 0x00, 0xc0de0000 + i);
		got = guest_io(1, RTIOREQ_TYPE_MMIO, RTIOREQ_DIR_READ, can.base + 0x08, 0);
		bad += got != 0xc0de0000 + i;
		if (!(i % 100))
			guest_io(1, RTIOREQ_TYPE_PORTIO, RTIOREQ_DIR_WRITE, 0x443, 1);
	}
	kicks = guest_io(0, RTIOREQ_TYPE_PORTIO, RTIOREQ_DIR_READ, 0x443, 0);
	printf("can0: bitrate %llu, 1000 frames looped back, %d wrong, irq %u raised %u times\n",
	       (unsigned long long)bitrate, bad, can.irq, atomic_load(&irq_raised));
	printf("watchdog: %llu kicks (timeout %llu ms)\n", (unsigned long long)kicks,
	       (unsigned long long)wdt.timeout_ms);
	fflush(stdout);
	if (hold) {
		printf("holding: stop with a signal\n");
		fflush(stdout);
		for (;;)
			pause();
	}
	rtioreq_profile_stop(run);
	rtioreq_shm_close(&shm);
	rtioreq_profile_free(p);
	if (bad || bitrate != 500000 || kicks != 10 || atomic_load(&irq_raised) != 1000)
		return 1;
	printf("ok\n");
	return 0;
}
