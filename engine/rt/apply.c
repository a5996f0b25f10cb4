// SPDX-License-Identifier: MIT
/*
 * rtioreq_profile_apply(): a profile applied to this machine for an embedder (see
 * include/rtioreq/rt/apply.h). The `rtioreq run PROFILE` command is one of its users.
 *
 * Undo records. What a run changes outside the process (cpusets, the cpu_dma_latency
 * descriptor, sched_rt_runtime_us) is recorded in a static table, not on the heap, so
 * that rtioreq_profile_cleanup() can undo it from a signal handler without allocating or
 * locking. Each undoable item has an atomic "live" word:
 *   X1  apply: store live = 1, release, after the item's record is written   -> X2
 *   X2  stop/cleanup: exchange live with 0, acquire; the one that saw 1 undoes <- X1
 * so a signal arriving during stop undoes every item exactly once. The table's slots are
 * handed out under reg_lock (normal threads only).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rtioreq/rt/apply.h"
#include "rtioreq/rt/rt.h"

#define RUNS_MAX 8
#define CPUSETS_MAX 64
#define THROTTLE_NONE LLONG_MIN

struct undo {
	struct rtioreq_rt_cpuset cs[CPUSETS_MAX];
	_Atomic int cs_live[CPUSETS_MAX]; /* X1/X2 */
	_Atomic int dma_fd;		  /* X1/X2 in one word: -1 when not held */
	bool used;			  /* under reg_lock */
};

static struct undo undo_tab[RUNS_MAX];
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * sched_rt_runtime_us is process-wide: the first run asking for `off` saves the value
 * and the last one to stop restores it (users under reg_lock); cleanup restores at once.
 */
static unsigned int thr_users;
static _Atomic long long thr_saved = THROTTLE_NONE; /* X1/X2: the value to restore */
static char thr_dir[256];			    /* where it was read; "" default */

struct rtioreq_profile_run {
	const struct rtioreq_profile *p;
	struct rtioreq_profile_plan plan;
	struct rtioreq_engine *eng;
	struct rtioreq_vm **vms;     /* per profile VM */
	struct rtioreq_poller **pl;  /* per plan thread */
	unsigned int npollers;
	struct undo *u;
	bool rt, thr_held;
	rtioreq_profile_log_fn log;
	void *ctx;
};

static void say(const struct rtioreq_profile_run *run, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void say(const struct rtioreq_profile_run *run, const char *fmt, ...)
{
	char line[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (run->log)
		run->log(run->ctx, line);
	else
		fprintf(stderr, "rtioreq: %s\n", line);
}

/* ------------------------------------------------------------------------- */
/* Undo: shared by stop (normal threads) and cleanup (signal handlers) */

static int undo_record(struct undo *u)
{
	int failed = 0, fd;

	for (unsigned int i = 0; i < CPUSETS_MAX; i++)
		/* X2: pairs with X1 in pollers_start() */
		if (atomic_exchange_explicit(&u->cs_live[i], 0, memory_order_acquire))
			failed += rtioreq_rt_cpuset_remove(&u->cs[i]) != 0;
	fd = atomic_exchange_explicit(&u->dma_fd, -1, memory_order_acquire); /* X2 */
	if (fd >= 0)
		rtioreq_rt_dma_latency_release(fd);
	return failed;
}

static int throttle_restore_now(void)
{
	/* X2: pairs with X1 in throttle_apply() */
	long long v = atomic_exchange_explicit(&thr_saved, THROTTLE_NONE, memory_order_acquire);

	if (v == THROTTLE_NONE)
		return 0;
	return rtioreq_rt_throttle_set(thr_dir[0] ? thr_dir : NULL, v) != 0;
}

int rtioreq_profile_cleanup(void)
{
	int failed = 0;

	/* no lock: the table is static, every item is claimed by its live word */
	for (unsigned int i = 0; i < RUNS_MAX; i++)
		failed += undo_record(&undo_tab[i]);
	return failed + throttle_restore_now();
}

/* ------------------------------------------------------------------------- */
/* Opt-in signal handlers */

static const int cleanup_sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
static struct sigaction old_act[sizeof(cleanup_sigs) / sizeof(cleanup_sigs[0])];

static void on_signal(int sig, siginfo_t *si, void *uc)
{
	int e = errno;

	rtioreq_profile_cleanup();
	for (unsigned int i = 0; i < sizeof(cleanup_sigs) / sizeof(cleanup_sigs[0]); i++) {
		if (cleanup_sigs[i] != sig)
			continue;
		if (old_act[i].sa_flags & SA_SIGINFO) {
			errno = e;
			old_act[i].sa_sigaction(sig, si, uc);
			return;
		}
		if (old_act[i].sa_handler != SIG_DFL && old_act[i].sa_handler != SIG_IGN) {
			errno = e;
			old_act[i].sa_handler(sig);
			return;
		}
	}
	/* default action: die of the signal (it is blocked until we return) */
	signal(sig, SIG_DFL);
	raise(sig);
	errno = e;
}

int rtioreq_profile_cleanup_on_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (unsigned int i = 0; i < sizeof(cleanup_sigs) / sizeof(cleanup_sigs[0]); i++)
		sigaddset(&sa.sa_mask, cleanup_sigs[i]); /* one cleanup at a time */
	for (unsigned int i = 0; i < sizeof(cleanup_sigs) / sizeof(cleanup_sigs[0]); i++) {
		if (sigaction(cleanup_sigs[i], NULL, &old_act[i]))
			return -errno;
		if (!(old_act[i].sa_flags & SA_SIGINFO) && old_act[i].sa_handler == SIG_IGN)
			continue;
		if (old_act[i].sa_sigaction == on_signal)
			continue; /* called twice */
		if (sigaction(cleanup_sigs[i], &sa, NULL))
			return -errno;
	}
	return 0;
}

/* ------------------------------------------------------------------------- */
/* Steps of apply */

static bool rt_poller(const struct rtioreq_profile_plan_thread *t)
{
	return t->kind == RTIOREQ_PROFILE_THREAD_POLLER &&
	       (t->attr.policy == SCHED_FIFO || t->attr.policy == SCHED_RR);
}

/* Only real-time settings, all or none: permission first. */
static int rt_decide(struct rtioreq_profile_run *run, unsigned int flags)
{
	struct rtioreq_profile_plan *plan = &run->plan;
	int maxprio = 0;
	char why[256];

	for (unsigned int i = 0; i < plan->n_threads; i++)
		if (plan->threads[i].attr.priority > maxprio)
			maxprio = plan->threads[i].attr.priority;
	run->rt = true;
	if (maxprio && !rtioreq_rt_permitted(maxprio, why, sizeof(why))) {
		if (flags & RTIOREQ_PROFILE_APPLY_REQUIRE_RT) {
			say(run, "%s: real-time scheduling refused: %s", run->p->path, why);
			return -EPERM;
		}
		say(run, "warning: %s: running WITHOUT the profile's real-time settings "
			 "(SCHED_OTHER, no cpusets, no memory locking, no cpu_dma_latency, "
			 "throttling untouched); affinity only", why);
		run->rt = false;
	}
	if (run->rt)
		return 0;
	for (unsigned int i = 0; i < plan->n_threads; i++) {
		plan->threads[i].attr.policy = SCHED_OTHER;
		plan->threads[i].attr.priority = 0;
		plan->threads[i].isolation = RTIOREQ_PROFILE_ISOLATION_NONE;
	}
	plan->engine.dispatcher.policy = plan->engine.clients.policy = SCHED_OTHER;
	plan->engine.dispatcher.priority = plan->engine.clients.priority = 0;
	return 0;
}

int rtioreq_profile_throttling(const struct rtioreq_profile_plan *plan, const char *sysctl_dir,
			       struct rtioreq_rt_throttle *th, char *what, size_t len)
{
	const struct rtioreq_profile_plan_thread *t = NULL;
	long long stop_ms, period_ms;
	int r;

	snprintf(what, len, "no real-time poller");
	for (unsigned int i = 0; i < plan->n_threads && !t; i++)
		if (rt_poller(&plan->threads[i]))
			t = &plan->threads[i];
	if (!t)
		return 0;
	r = rtioreq_rt_throttle_get(sysctl_dir, th);
	if (r) {
		snprintf(what, len, "cannot read sched_rt_runtime_us: %s", strerror(-r));
		return r;
	}
	if (!rtioreq_rt_throttle_active(th)) {
		snprintf(what, len, "sched_rt_runtime_us %lld: real-time threads are not throttled",
			 th->runtime_us);
		return 0;
	}
	stop_ms = (th->period_us - th->runtime_us) / 1000;
	period_ms = th->period_us / 1000;
	switch (plan->rt_throttling) {
	case RTIOREQ_PROFILE_THROTTLING_OFF:
		snprintf(what, len, "sched_rt_runtime_us %lld of %lld would stop the real-time "
			 "poller %s (CPU %d) for %lld ms of every %lld ms; rt_throttling: off sets "
			 "it to -1 for the run and restores it after", th->runtime_us,
			 th->period_us, t->name, t->attr.cpu, stop_ms, period_ms);
		return 2;
	case RTIOREQ_PROFILE_THROTTLING_KEEP:
		snprintf(what, len, "rt_throttling: keep: the real-time poller %s (CPU %d) stops "
			 "for %lld ms of every %lld ms while it spins (sched_rt_runtime_us %lld of "
			 "%lld)", t->name, t->attr.cpu, stop_ms, period_ms, th->runtime_us,
			 th->period_us);
		return 1;
	default:
		snprintf(what, len, "sched_rt_runtime_us is %lld of sched_rt_period_us %lld: the "
			 "kernel stops the real-time poller %s (CPU %d) for %lld ms of every %lld "
			 "ms; set rt_throttling: off (disabled for the run, restored after) or keep "
			 "(accept the stalls), or use policy: other", th->runtime_us,
			 th->period_us, t->name, t->attr.cpu, stop_ms, period_ms);
		return -EPERM;
	}
}

/* rt_throttling: refuse, keep (say so) or switch off until stop/cleanup. */
static int throttle_apply(struct rtioreq_profile_run *run, const char *dir)
{
	struct rtioreq_rt_throttle th;
	char what[512];
	int r;

	if (!run->rt)
		return 0; /* no real-time thread: nothing is throttled */
	r = rtioreq_profile_throttling(&run->plan, dir, &th, what, sizeof(what));
	if (r == -EPERM) {
		say(run, "%s: %s", run->p->path, what);
		return r;
	}
	if (r < 0) {
		say(run, "warning: %s; real-time throttling unknown", what);
		return 0;
	}
	if (r == 1)
		say(run, "warning: %s", what);
	if (r != 2)
		return 0;
	pthread_mutex_lock(&reg_lock);
	r = 0;
	if (!thr_users) {
		snprintf(thr_dir, sizeof(thr_dir), "%s", dir ? dir : "");
		r = rtioreq_rt_throttle_set(dir, -1);
		if (!r)
			/* X1: the value to restore, once the change is made */
			atomic_store_explicit(&thr_saved, th.runtime_us, memory_order_release);
	}
	if (!r) {
		thr_users++;
		run->thr_held = true;
	}
	pthread_mutex_unlock(&reg_lock);
	if (r) {
		say(run, "rt_throttling: off: cannot write sched_rt_runtime_us: %s", strerror(-r));
		return r;
	}
	say(run, "rt_throttling: off: sched_rt_runtime_us -1 for the run (was %lld of %lld; "
		 "restored at exit)", th.runtime_us, th.period_us);
	return 0;
}

static void throttle_release(struct rtioreq_profile_run *run)
{
	if (!run->thr_held)
		return;
	pthread_mutex_lock(&reg_lock);
	if (!--thr_users)
		throttle_restore_now();
	pthread_mutex_unlock(&reg_lock);
	run->thr_held = false;
}

static int vms_attach(struct rtioreq_profile_run *run, const struct rtioreq_profile_apply_attr *a)
{
	const struct rtioreq_profile *p = run->p;

	for (unsigned int i = 0; i < p->n_vms; i++) {
		const struct rtioreq_profile_vm *pv = &p->vms[i];
		struct rtioreq_vm_attr va = { .id = (uint16_t)pv->id,
					      .vcpu_num = (uint16_t)pv->vcpus };
		int r = a->vm(a->ctx, pv, &va);

		if (r) {
			say(run, "VM %lld: the embedder's VM callback failed: %s",
			    (long long)pv->id, strerror(-r));
			return r;
		}
		va.id = (uint16_t)pv->id;
		va.vcpu_num = (uint16_t)pv->vcpus;
		va.paused = true;
		run->vms[i] = rtioreq_vm_attach(run->eng, &va);
		if (!run->vms[i]) {
			r = -errno;
			say(run, "VM %lld attach: %s", (long long)pv->id, strerror(-r));
			return r;
		}
	}
	return 0;
}

/* Bind every device, create its client (shared by devices naming the same one), ranges. */
static int devices_bind(struct rtioreq_profile_run *run,
			const struct rtioreq_profile_apply_attr *a)
{
	const struct rtioreq_profile *p = run->p;

	for (unsigned int i = 0; i < p->n_vms; i++) {
		const struct rtioreq_profile_vm *pv = &p->vms[i];
		struct rtioreq_client **made = calloc(pv->n_devices ? pv->n_devices : 1,
						      sizeof(*made));

		if (!made)
			return -ENOMEM;
		for (unsigned int d = 0; d < pv->n_devices; d++) {
			const struct rtioreq_profile_device *dev = &pv->devices[d];
			struct rtioreq_profile_bind b = { .pv = pv, .dev = dev, .vm = run->vms[i] };
			int r;

			for (unsigned int e = 0; e < d && !b.client; e++)
				if (!strcmp(pv->devices[e].client, dev->client))
					b.client = made[e];
			b.attr.name = dev->client;
			r = a->bind(a->ctx, &b);
			if (r) {
				say(run, "VM %lld device '%s' (client %s): bind: %s",
				    (long long)pv->id, dev->name, dev->client, strerror(-r));
				free(made);
				return r;
			}
			if (!b.client) {
				b.attr.name = dev->client;
				b.client = rtioreq_client_create(run->vms[i], &b.attr);
				if (!b.client) {
					r = -errno;
					say(run, "VM %lld client %s: %s", (long long)pv->id,
					    dev->client, strerror(-r));
					free(made);
					return r;
				}
			}
			made[d] = b.client;
			if (b.store)
				*b.store = b.client;
			for (unsigned int k = 0; k < dev->n_ranges; k++) {
				const struct rtioreq_profile_range *rg = &dev->ranges[k];

				r = rtioreq_range_add(b.client,
						      rg->type == RTIOREQ_PROFILE_PIO
							      ? RTIOREQ_TYPE_PORTIO
							      : RTIOREQ_TYPE_MMIO,
						      rg->start, rg->end);
				if (r) {
					say(run, "VM %lld device %s range 0x%llx-0x%llx: %s",
					    (long long)pv->id, dev->name,
					    (unsigned long long)rg->start,
					    (unsigned long long)rg->end, strerror(-r));
					free(made);
					return r;
				}
			}
		}
		free(made);
	}
	return 0;
}

/* Pollers, each in its cpuset when asked and possible (else affinity only, said once). */
static int pollers_start(struct rtioreq_profile_run *run,
			 const struct rtioreq_profile_apply_attr *a)
{
	unsigned int ncs = 0;
	char why[256];
	int r;

	for (unsigned int i = 0; i < run->plan.n_threads; i++) {
		struct rtioreq_profile_plan_thread *t = &run->plan.threads[i];
		struct rtioreq_rt_cpuset *cs;
		struct rtioreq_poller *pl;
		char name[64];

		if (t->kind != RTIOREQ_PROFILE_THREAD_POLLER)
			continue;
		pl = rtioreq_poller_create(run->eng, &t->attr);
		if (!pl) {
			r = -errno;
			say(run, "poller %s on CPU %d: %s", t->name, t->attr.cpu, strerror(-r));
			return r;
		}
		run->pl[i] = pl;
		run->npollers++;
		if (t->idle == RTIOREQ_PROFILE_IDLE_HYBRID)
			rtioreq_poller_set_idle(pl, t->spin_us * 1000);
		if (t->isolation != RTIOREQ_PROFILE_ISOLATION_CPUSET)
			continue;
		if (ncs == CPUSETS_MAX) {
			say(run, "warning: %s: more than %d cpusets; affinity only", t->name,
			    CPUSETS_MAX);
			continue;
		}
		cs = &run->u->cs[ncs];
		/* rtioreq-<pid>-cpu<N>: rtioreq_rt_cpuset_sweep() finds it if we die */
		snprintf(name, sizeof(name), "rtioreq-%d-cpu%d", (int)getpid(), t->attr.cpu);
		r = rtioreq_rt_cpuset_create(cs, a->roots, name, t->attr.cpu, why, sizeof(why));
		if (r) {
			say(run, "warning: %s: cpuset not applied (%s); affinity only", t->name, why);
			continue;
		}
		/* X1: the record is complete; pairs with X2 in undo_record() */
		atomic_store_explicit(&run->u->cs_live[ncs++], 1, memory_order_release);
		r = rtioreq_rt_cpuset_attach(cs, rtioreq_poller_tid(pl));
		if (r)
			say(run, "warning: %s: moving tid %d into %s: %s; affinity only", t->name,
			    (int)rtioreq_poller_tid(pl), cs->path, strerror(-r));
	}
	return 0;
}

static int slots_place(struct rtioreq_profile_run *run)
{
	for (unsigned int s = 0; s < run->plan.n_slots; s++) {
		const struct rtioreq_profile_plan_slot *sl = &run->plan.slots[s];
		struct rtioreq_vm *vm = rtioreq_profile_run_vm(run, sl->vm_id);
		int r;

		if (sl->thread < 0 || !run->pl[sl->thread] || !vm)
			continue;
		r = rtioreq_vm_set_poller(vm, sl->vcpu, run->pl[sl->thread]);
		if (r) {
			say(run, "VM %u vCPU %u to %s: %s", sl->vm_id, sl->vcpu,
			    run->plan.threads[sl->thread].name, strerror(-r));
			return r;
		}
	}
	return 0;
}

static bool any_cpuset(const struct rtioreq_profile_plan *plan)
{
	for (unsigned int i = 0; i < plan->n_threads; i++)
		if (plan->threads[i].isolation == RTIOREQ_PROFILE_ISOLATION_CPUSET)
			return true;
	return false;
}

struct rtioreq_profile_run *rtioreq_profile_apply(const struct rtioreq_profile *p,
						  const struct rtioreq_profile_apply_attr *attr)
{
	struct rtioreq_profile_apply_attr a = { 0 };
	struct rtioreq_profile_run *run;
	char report[512];
	int r;

	if (!p || !attr || !attr->size || attr->size > sizeof(a)) {
		errno = EINVAL;
		return NULL;
	}
	memcpy(&a, attr, attr->size);
	if (!a.vm || !a.bind) {
		errno = EINVAL;
		return NULL;
	}
	run = calloc(1, sizeof(*run));
	if (!run) {
		errno = ENOMEM;
		return NULL;
	}
	run->p = p;
	run->log = a.log;
	run->ctx = a.ctx;
	r = rtioreq_profile_plan_build(p, &run->plan);
	if (r) {
		free(run);
		errno = -r;
		return NULL;
	}
	run->vms = calloc(p->n_vms ? p->n_vms : 1, sizeof(*run->vms));
	run->pl = calloc(run->plan.n_threads ? run->plan.n_threads : 1, sizeof(*run->pl));
	if (!run->vms || !run->pl) {
		r = -ENOMEM;
		goto fail;
	}
	pthread_mutex_lock(&reg_lock);
	for (unsigned int i = 0; i < RUNS_MAX && !run->u; i++)
		if (!undo_tab[i].used) {
			run->u = &undo_tab[i];
			run->u->used = true;
			/* X1 (nothing to undo yet): a fresh record */
			atomic_store_explicit(&run->u->dma_fd, -1, memory_order_release);
		}
	pthread_mutex_unlock(&reg_lock);
	if (!run->u) {
		say(run, "more than %d profiles applied in this process", RUNS_MAX);
		r = -EBUSY;
		goto fail;
	}
	r = rt_decide(run, a.flags);
	if (!r)
		r = throttle_apply(run, a.sysctl_dir);
	if (r)
		goto fail;
	if (run->rt) {
		r = rtioreq_rt_lock_memory();
		if (r)
			say(run, "warning: mlockall: %s: memory not locked", strerror(-r));
		if (run->plan.cpu_dma_latency) {
			int fd = rtioreq_rt_dma_latency_hold(NULL);

			if (fd < 0)
				say(run, "warning: /dev/cpu_dma_latency: %s: not held",
				    strerror(-fd));
			else /* X1 */
				atomic_store_explicit(&run->u->dma_fd, fd, memory_order_release);
		}
		if (any_cpuset(&run->plan)) {
			r = rtioreq_rt_cpuset_sweep(a.roots, NULL, report, sizeof(report));
			if (r < 0)
				say(run, "warning: %s", report);
			else if (r > 0)
				say(run, "%s", report);
		}
	}
	run->eng = rtioreq_engine_create(&run->plan.engine);
	if (!run->eng) {
		r = -errno;
		say(run, "engine: %s", strerror(-r));
		goto fail;
	}
	r = vms_attach(run, &a);
	if (!r)
		r = devices_bind(run, &a);
	if (!r)
		r = pollers_start(run, &a);
	if (!r)
		r = slots_place(run);
	for (unsigned int i = 0; !r && !(a.flags & RTIOREQ_PROFILE_APPLY_NO_START) && i < p->n_vms;
	     i++) {
		r = rtioreq_vm_start(run->vms[i]);
		if (r)
			say(run, "VM %lld start: %s", (long long)p->vms[i].id, strerror(-r));
	}
	if (r)
		goto fail;
	return run;
fail:
	rtioreq_profile_stop(run);
	errno = r < 0 ? -r : EINVAL;
	return NULL;
}

void rtioreq_profile_stop(struct rtioreq_profile_run *run)
{
	if (!run)
		return;
	if (run->eng)
		rtioreq_engine_destroy(run->eng); /* threads gone before their cpusets */
	if (run->u) {
		undo_record(run->u);
		pthread_mutex_lock(&reg_lock);
		run->u->used = false;
		pthread_mutex_unlock(&reg_lock);
	}
	throttle_release(run);
	rtioreq_profile_plan_free(&run->plan);
	free(run->vms);
	free(run->pl);
	free(run);
}

/* ------------------------------------------------------------------------- */
/* Accessors */

struct rtioreq_engine *rtioreq_profile_run_engine(const struct rtioreq_profile_run *run)
{
	return run->eng;
}

struct rtioreq_vm *rtioreq_profile_run_vm(const struct rtioreq_profile_run *run, int64_t id)
{
	for (unsigned int i = 0; i < run->p->n_vms; i++)
		if (run->p->vms[i].id == id)
			return run->vms[i];
	return NULL;
}

const struct rtioreq_profile_plan *rtioreq_profile_run_plan(const struct rtioreq_profile_run *run)
{
	return &run->plan;
}

struct rtioreq_poller *rtioreq_profile_run_poller(const struct rtioreq_profile_run *run,
						  unsigned int i)
{
	return i < run->plan.n_threads ? run->pl[i] : NULL;
}

unsigned int rtioreq_profile_run_pollers(const struct rtioreq_profile_run *run)
{
	return run->npollers;
}

bool rtioreq_profile_run_rt(const struct rtioreq_profile_run *run)
{
	return run->rt;
}
