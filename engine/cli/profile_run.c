// SPDX-License-Identifier: MIT
/*
 * rtioreq check PROFILE, and rtioreq run PROFILE: a real-time profile (rt-configs/,
 * docs/profiles.md) applied for real - pollers pinned under their policy, in a cpuset
 * when the machine has a usable cpuset hierarchy, memory locked, /dev/cpu_dma_latency
 * held when asked - serving one simulated VM per profile VM. Everything created is
 * removed on exit, also on SIGINT/SIGTERM. Without real-time privileges the run says
 * so once and runs without any real-time setting, never half of them.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "rtioreq/rt/rt.h"

#define MAX_THREADS 64

struct vm_run {
	const struct rtioreq_profile_vm *pv;
	struct rtioreq_shm shm;
	struct rtioreq_vm *vm;
	struct rtioreq_exdev *dev;
	struct rtioreq_exdev_oracle *oracle;
	struct rtioreq_sim_attr sa;
	struct rtioreq_sim_result *res;
	int rc;
	pthread_t thread;
};

static struct {
	struct rtioreq_rt_cpuset cs[MAX_THREADS];
	unsigned int ncs;
	int dma_fd;
} created = { .dma_fd = -1 };

/* Undo what was created on this machine; also called after a signal. */
static void undo_created(void)
{
	for (unsigned int i = 0; i < created.ncs; i++)
		rtioreq_rt_cpuset_remove(&created.cs[i]);
	created.ncs = 0;
	if (created.dma_fd >= 0)
		rtioreq_rt_dma_latency_release(created.dma_fd);
	created.dma_fd = -1;
}

static void diag_print(void *ctx, const struct rtioreq_profile_diag *d)
{
	unsigned int *errors = ctx;

	fprintf(stderr, "%s\n", d->text);
	if (d->severity == RTIOREQ_PROFILE_ERROR)
		(*errors)++;
}

static struct rtioreq_profile *load_valid(const char *path, bool host, unsigned int *errors)
{
	struct rtioreq_profile *p = rtioreq_profile_load(path, diag_print, errors);

	if (!p) {
		if (!*errors) /* the loader reports its errors itself; this is the rest */
			fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return NULL;
	}
	if (rtioreq_profile_validate(p, host)) {
		rtioreq_profile_free(p);
		return NULL;
	}
	return p;
}

int cli_check(int argc, char **argv)
{
	static const struct option lo[] = { { "host", no_argument, NULL, 'H' },
					     { "help", no_argument, NULL, 'h' },
					     { 0 } };
	struct rtioreq_profile *p;
	unsigned int errors = 0;
	bool host = false;
	int c, r;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":Hh", lo, NULL)) != -1) {
		switch (c) {
		case 'H': host = true; break;
		case 'h':
			printf("usage: rtioreq check [--host] PROFILE\n"
			       "Load and validate a real-time profile and print its plan: threads,\n"
			       "CPUs, policies, slot ownership, ranges. Errors name file:line:column.\n"
			       "  -H, --host   CPUs this machine lacks are errors (default: warnings)\n");
			return 0;
		default: cli_die("unknown option '%s' (see rtioreq check --help)", argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		cli_die("expected one PROFILE (see rtioreq check --help)");
	p = load_valid(argv[optind], host, &errors);
	if (!p)
		return CLI_EXIT_USAGE;
	r = rtioreq_profile_print_plan(p, stdout);
	rtioreq_profile_free(p);
	if (r)
		cli_die("printing the plan: %s", strerror(-r));
	return 0;
}

/* Client handler for a device's client name: the example device models. */
static rtioreq_handler_fn model_of(const char *client)
{
	if (!strcmp(client, "exdev-ram"))
		return rtioreq_exdev_ram_handler;
	if (!strcmp(client, "exdev-port"))
		return rtioreq_exdev_port_handler;
	return NULL;
}

static void add_devices(struct vm_run *vr, const char *path)
{
	const struct rtioreq_profile_vm *pv = vr->pv;

	for (unsigned int d = 0; d < pv->n_devices; d++) {
		const struct rtioreq_profile_device *dev = &pv->devices[d];
		rtioreq_handler_fn fn = model_of(dev->client);
		struct rtioreq_client *c = NULL;

		if (!fn)
			cli_die("%s: VM %lld device '%s': no device model '%s' in rtioreq run "
				"(it has exdev-ram, exdev-port)",
				path, (long long)pv->id, dev->name, dev->client);
		/* devices naming the same client share it */
		for (unsigned int e = 0; e < d && !c; e++)
			if (!strcmp(pv->devices[e].client, dev->client))
				c = fn == rtioreq_exdev_ram_handler ? vr->dev->ram_client
								    : vr->dev->port_client;
		if (!c) {
			c = rtioreq_client_create(vr->vm, &(struct rtioreq_client_attr){
				.name = dev->client, .handler = fn, .priv = vr->dev });
			if (!c)
				cli_die("client %s: %s", dev->client, strerror(errno));
			if (fn == rtioreq_exdev_ram_handler)
				vr->dev->ram_client = c;
			else
				vr->dev->port_client = c;
		}
		for (unsigned int k = 0; k < dev->n_ranges; k++) {
			const struct rtioreq_profile_range *rg = &dev->ranges[k];
			int r = rtioreq_range_add(c,
						  rg->type == RTIOREQ_PROFILE_PIO ? RTIOREQ_TYPE_PORTIO
										 : RTIOREQ_TYPE_MMIO,
						  rg->start, rg->end);

			if (r)
				cli_die("VM %lld device %s range 0x%llx-0x%llx: %s", (long long)pv->id,
					dev->name, (unsigned long long)rg->start,
					(unsigned long long)rg->end, strerror(-r));
		}
	}
}

static void *sim_main(void *arg)
{
	struct vm_run *vr = arg;

	vr->rc = rtioreq_sim_run(&vr->sa, vr->res);
	return NULL;
}

/* What the kernel says about a thread: policy, priority, affinity, cpuset. */
static void show_thread(pid_t tid, char *buf, size_t n)
{
	struct sched_param sp = { 0 };
	cpu_set_t set;
	char path[64], cs[256] = "?";
	int pol = sched_getscheduler(tid), first = -1, count = 0;
	FILE *f;

	sched_getparam(tid, &sp);
	CPU_ZERO(&set);
	sched_getaffinity(tid, sizeof(set), &set);
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &set) && !count++)
			first = c;
	snprintf(path, sizeof(path), "/proc/%d/cpuset", (int)tid);
	f = fopen(path, "r");
	if (f) {
		if (fgets(cs, sizeof(cs), f))
			cs[strcspn(cs, "\n")] = 0;
		fclose(f);
	}
	snprintf(buf, n, "policy %s priority %d, affinity %s%d%s, cpuset %s",
		 pol == SCHED_FIFO ? "SCHED_FIFO" : pol == SCHED_RR ? "SCHED_RR" : "SCHED_OTHER",
		 sp.sched_priority, count == 1 ? "CPU " : "", count == 1 ? first : count,
		 count == 1 ? "" : " CPUs", cs);
}

int cli_run_profile(const struct cli_profile_opts *o)
{
	struct rtioreq_poller *pollers[MAX_THREADS] = { 0 };
	struct rtioreq_profile_plan plan;
	struct rtioreq_engine *eng;
	struct rtioreq_profile *p;
	struct vm_run *vrs;
	unsigned int errors = 0, np = 0;
	int producer = o->producer_cpu, maxprio = 0, r, verdict = 0;
	bool rt = true, stopped = false;
	uint64_t sleeps = 0;
	char why[256], info[512];
	sigset_t sigs;
	FILE *jf = NULL;

	p = load_valid(o->path, true, &errors); /* CPUs this machine lacks: refused */
	if (!p)
		exit(CLI_EXIT_USAGE); /* each error was printed with its file:line:column */
	r = rtioreq_profile_plan_build(p, &plan);
	if (r)
		cli_die("%s: plan: %s", o->path, strerror(-r));
	for (unsigned int i = 0; i < plan.n_threads; i++)
		if (plan.threads[i].attr.priority > maxprio)
			maxprio = plan.threads[i].attr.priority;
	if (maxprio && !rtioreq_rt_permitted(maxprio, why, sizeof(why))) {
		fprintf(stderr, "rtioreq run: warning: %s: running WITHOUT the profile's real-time "
				"settings (SCHED_OTHER, no cpusets, no memory locking, no "
				"cpu_dma_latency); affinity only\n", why);
		rt = false;
	}
	if (!rt) {
		for (unsigned int i = 0; i < plan.n_threads; i++) {
			plan.threads[i].attr.policy = SCHED_OTHER;
			plan.threads[i].attr.priority = 0;
			plan.threads[i].isolation = RTIOREQ_PROFILE_ISOLATION_NONE;
		}
		plan.engine.dispatcher.policy = plan.engine.clients.policy = SCHED_OTHER;
		plan.engine.dispatcher.priority = plan.engine.clients.priority = 0;
	}
	/* the simulated hypervisor's CPU: not one a poller spins on */
	if (producer < 0) {
		int ncpu = cli_online_cpus();

		producer = plan.engine.dispatcher.cpu >= 0 ? plan.engine.dispatcher.cpu : 0;
		for (int tries = 0; tries <= ncpu; tries++) {
			bool busy = false;

			for (unsigned int i = 0; i < plan.n_threads; i++)
				busy |= plan.threads[i].kind == RTIOREQ_PROFILE_THREAD_POLLER &&
					plan.threads[i].attr.cpu == producer;
			if (!busy)
				break;
			producer = tries == ncpu ? -1 : (producer + 1) % ncpu;
		}
	}

	/* signals: only this thread takes them, every engine thread inherits the mask */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	if (rt) {
		r = rtioreq_rt_lock_memory();
		if (r)
			fprintf(stderr, "rtioreq run: warning: mlockall: %s: memory not locked\n",
				strerror(-r));
		if (plan.cpu_dma_latency) {
			created.dma_fd = rtioreq_rt_dma_latency_hold(NULL);
			if (created.dma_fd < 0)
				fprintf(stderr, "rtioreq run: warning: /dev/cpu_dma_latency: %s: "
						"not held\n", strerror(-created.dma_fd));
		}
	}
	eng = rtioreq_engine_create(&plan.engine);
	if (!eng)
		cli_die("engine: %s", cli_engine_error(errno));
	vrs = calloc(p->n_vms, sizeof(*vrs));
	if (!vrs)
		cli_die("out of memory");
	for (unsigned int i = 0; i < p->n_vms; i++) {
		struct vm_run *vr = &vrs[i];

		vr->pv = &p->vms[i];
		vr->dev = calloc(1, sizeof(*vr->dev));
		vr->oracle = calloc(1, sizeof(*vr->oracle));
		vr->res = calloc(1, sizeof(*vr->res));
		if (!vr->dev || !vr->oracle || !vr->res)
			cli_die("out of memory");
		r = rtioreq_shm_create(&vr->shm, NULL, (uint16_t)vr->pv->vcpus);
		if (r)
			cli_die("VM %lld region: %s", (long long)vr->pv->id, strerror(-r));
		if (rt)
			rtioreq_rt_prefault(vr->shm.region, sizeof(*vr->shm.region));
		vr->vm = rtioreq_vm_attach(eng, &(struct rtioreq_vm_attr){
			.id = (uint16_t)vr->pv->id, .vcpu_num = (uint16_t)vr->pv->vcpus,
			.page = &vr->shm.region->page, .chan = &vr->shm.region->chan,
			.paused = true });
		if (!vr->vm)
			cli_die("VM %lld attach: %s", (long long)vr->pv->id, strerror(errno));
		add_devices(vr, o->path);
	}
	/* pollers, each in its cpuset when asked and possible */
	for (unsigned int i = 0; i < plan.n_threads && np < MAX_THREADS; i++) {
		struct rtioreq_profile_plan_thread *t = &plan.threads[i];
		struct rtioreq_poller *pl;

		if (t->kind != RTIOREQ_PROFILE_THREAD_POLLER)
			continue;
		pl = rtioreq_poller_create(eng, &t->attr);
		if (!pl)
			cli_die("poller %s on CPU %d: %s", t->name, t->attr.cpu, strerror(errno));
		pollers[i] = pl;
		np++;
		if (t->idle == RTIOREQ_PROFILE_IDLE_HYBRID)
			rtioreq_poller_set_idle(pl, t->spin_us * 1000);
		if (t->isolation == RTIOREQ_PROFILE_ISOLATION_CPUSET) {
			struct rtioreq_rt_cpuset *cs = &created.cs[created.ncs];
			char name[64];

			snprintf(name, sizeof(name), "rtioreq-%d-cpu%d", (int)getpid(), t->attr.cpu);
			r = rtioreq_rt_cpuset_create(cs, NULL, name, t->attr.cpu, why, sizeof(why));
			if (r) {
				fprintf(stderr, "rtioreq run: warning: %s: cpuset not applied (%s); "
						"affinity only\n", t->name, why);
			} else {
				created.ncs++;
				r = rtioreq_rt_cpuset_attach(cs, rtioreq_poller_tid(pl));
				if (r)
					fprintf(stderr, "rtioreq run: warning: %s: moving tid %d into "
							"%s: %s; affinity only\n", t->name,
						(int)rtioreq_poller_tid(pl), cs->path, strerror(-r));
			}
		}
	}
	for (unsigned int s = 0; s < plan.n_slots; s++) {
		const struct rtioreq_profile_plan_slot *sl = &plan.slots[s];

		if (sl->thread < 0 || !pollers[sl->thread])
			continue;
		for (unsigned int i = 0; i < p->n_vms; i++)
			if (vrs[i].pv->id == sl->vm_id &&
			    (r = rtioreq_vm_set_poller(vrs[i].vm, sl->vcpu, pollers[sl->thread])))
				cli_die("VM %u vCPU %u to %s: %s", sl->vm_id, sl->vcpu,
					plan.threads[sl->thread].name, strerror(-r));
	}
	for (unsigned int i = 0; i < p->n_vms; i++)
		if ((r = rtioreq_vm_start(vrs[i].vm)))
			cli_die("VM %lld start: %s", (long long)vrs[i].pv->id, strerror(-r));

	if (!o->json) {
		printf("rtioreq run %s: %u VM%s, simulated hypervisor on %s%d\n", o->path, p->n_vms,
		       p->n_vms == 1 ? "" : "s", producer < 0 ? "no fixed CPU" : "CPU ",
		       producer < 0 ? 0 : producer);
		for (unsigned int i = 0; i < plan.n_threads; i++) {
			if (!pollers[i])
				continue;
			show_thread(rtioreq_poller_tid(pollers[i]), info, sizeof(info));
			printf("%s: tid %d, %s\n", plan.threads[i].name,
			       (int)rtioreq_poller_tid(pollers[i]), info);
		}
		fflush(stdout);
	}
	for (unsigned int i = 0; i < p->n_vms; i++) {
		struct vm_run *vr = &vrs[i];

		rtioreq_exdev_oracle_init(vr->oracle, o->seed + (uint64_t)i, o->unmapped);
		vr->sa = (struct rtioreq_sim_attr){
			.region = vr->shm.region, .vcpu_num = (uint16_t)vr->pv->vcpus,
			.producers = 1, .requests = o->requests, .duration_ns = o->duration_ns,
			.completion_polling = vr->pv->completion_polling, .think_ns = o->think_ns,
			.producer_cpu = { producer, -1, -1, -1 },
			.wl = { rtioreq_exdev_gen, vr->oracle } };
		if (pthread_create(&vr->thread, NULL, sim_main, vr))
			cli_die("simulated hypervisor thread: %s", strerror(errno));
	}
	/* wait for the runs, or a signal: then undo what was created and leave at once */
	for (unsigned int i = 0; i < p->n_vms && !stopped; i++) {
		while (pthread_tryjoin_np(vrs[i].thread, NULL) == EBUSY) {
			struct timespec tick = { 0, 50000000 };
			int sig = sigtimedwait(&sigs, NULL, &tick);

			if (sig > 0) {
				undo_created();
				fprintf(stderr, "rtioreq run: %s: stopped, cpusets removed\n",
					sig == SIGINT ? "SIGINT" : "SIGTERM");
				_exit(128 + sig);
			}
		}
	}
	for (unsigned int i = 0; i < plan.n_threads; i++) {
		struct rtioreq_poller_stats ps;

		if (!pollers[i])
			continue;
		rtioreq_poller_stats(pollers[i], &ps);
		sleeps += ps.sleeps; /* per engine: reported with every VM */
	}
	if (o->json) {
		jf = cli_json_open(o->json_file);
		fprintf(jf, "{\"profile\": \"%s\", \"vms\": [", o->path);
	}
	for (unsigned int i = 0; i < p->n_vms; i++) {
		struct vm_run *vr = &vrs[i];
		struct rtioreq_vm_stats st;
		struct cli_report rep;

		if (vr->rc)
			cli_die("VM %lld simulated hypervisor: %s", (long long)vr->pv->id,
				strerror(-vr->rc));
		rtioreq_vm_stats(vr->vm, &st);
		rep = (struct cli_report){ .sleeps = sleeps, .mode = p->mode == RTIOREQ_PROFILE_POLLING ? "polling"
										    : "notify",
					   .vcpus = (unsigned int)vr->pv->vcpus, .pollers = np,
					   .requested = o->requests, .res = vr->res, .st = &st };
		if (jf) {
			fprintf(jf, "%s{\"vm\": %lld, \"run\": ", i ? ", " : "", (long long)vr->pv->id);
			cli_report_json(jf, &rep);
			fprintf(jf, "}");
		}
		if (!jf || jf != stdout) {
			printf("VM %lld (completion_polling %d): ", (long long)vr->pv->id,
			       vr->pv->completion_polling);
			cli_report_text(stdout, &rep);
		}
		verdict |= cli_report_verdict(&rep);
	}
	if (jf) {
		fprintf(jf, "], \"ok\": %s}\n", verdict ? "false" : "true");
		if (jf != stdout)
			fclose(jf);
	}
	rtioreq_engine_destroy(eng);
	undo_created();
	for (unsigned int i = 0; i < p->n_vms; i++) {
		rtioreq_shm_close(&vrs[i].shm);
		free(vrs[i].dev);
		free(vrs[i].oracle);
		free(vrs[i].res);
	}
	free(vrs);
	rtioreq_profile_plan_free(&plan);
	rtioreq_profile_free(p);
	return verdict;
}
