// SPDX-License-Identifier: MIT
/*
 * rtioreq check PROFILE, and rtioreq run PROFILE: a real-time profile (rt-configs/,
 * docs/profiles.md) applied for real - pollers pinned under their policy, in a cpuset
 * when the machine has a usable cpuset hierarchy, memory locked, /dev/cpu_dma_latency
 * held when asked, real-time throttling as the profile says - serving one simulated VM
 * per profile VM. The profile is applied by rtioreq_profile_apply() (engine/rt/apply.c),
 * this file only provides the regions and the device models. Everything created is
 * removed on exit, also on SIGINT, SIGTERM, SIGHUP and SIGQUIT. Without real-time
 * privileges the run says so once and runs without any real-time setting.
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
			       "  -H, --host   CPUs this machine lacks are errors (default: warnings), and say\n"
			       "               what real-time throttling (sched_rt_runtime_us) does to\n"
			       "               the pollers; refused if run would refuse it\n");
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
	if (r)
		cli_die("printing the plan: %s", strerror(-r));
	if (host) { /* what this kernel's real-time throttling does to the pollers */
		struct rtioreq_profile_plan plan;
		struct rtioreq_rt_throttle th;
		char what[512];

		r = rtioreq_profile_plan_build(p, &plan);
		if (r)
			cli_die("%s: plan: %s", argv[optind], strerror(-r));
		r = rtioreq_profile_throttling(&plan, NULL, &th, what, sizeof(what));
		rtioreq_profile_plan_free(&plan);
		printf("host: %s\n", what);
		if (r == -EPERM) {
			fprintf(stderr, "%s: %s\n", argv[optind], what);
			rtioreq_profile_free(p);
			return CLI_EXIT_USAGE;
		}
	}
	rtioreq_profile_free(p);
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

struct run_ctx {
	const char *path;
	struct vm_run *vrs;
	unsigned int n;
};

static struct vm_run *vr_of(struct run_ctx *rc, const struct rtioreq_profile_vm *pv)
{
	for (unsigned int i = 0; i < rc->n; i++)
		if (rc->vrs[i].pv == pv)
			return &rc->vrs[i];
	return NULL;
}

/* rtioreq_profile_apply()'s VM callback: the region this process created for it. */
static int vm_cb(void *ctx, const struct rtioreq_profile_vm *pv, struct rtioreq_vm_attr *attr)
{
	struct vm_run *vr = vr_of(ctx, pv);

	if (!vr)
		return -ENOENT;
	attr->page = &vr->shm.region->page;
	attr->chan = &vr->shm.region->chan;
	return 0;
}

/* ... and its bind callback: the example device models by client name. */
static int bind_cb(void *ctx, struct rtioreq_profile_bind *b)
{
	struct run_ctx *rc = ctx;
	struct vm_run *vr = vr_of(rc, b->pv);
	rtioreq_handler_fn fn = model_of(b->dev->client);

	if (!fn || !vr) {
		fprintf(stderr, "rtioreq run: %s: VM %lld device '%s': no device model '%s' in "
				"rtioreq run (it has exdev-ram, exdev-port)\n",
			rc->path, (long long)b->pv->id, b->dev->name, b->dev->client);
		return -ENOENT;
	}
	b->attr.handler = fn;
	b->attr.priv = vr->dev;
	b->store = fn == rtioreq_exdev_ram_handler ? &vr->dev->ram_client : &vr->dev->port_client;
	return 0;
}

static unsigned int log_lines;

static void log_cb(void *ctx, const char *line)
{
	fprintf(stderr, "rtioreq run: %s\n", line);
	log_lines++;
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
	const struct rtioreq_profile_plan *plan;
	struct rtioreq_profile_run *run;
	struct rtioreq_profile *p;
	struct vm_run *vrs;
	struct run_ctx rc;
	struct rtioreq_events *events = NULL;
	unsigned int errors = 0, np;
	int producer = o->producer_cpu, r, verdict = 0;
	bool stopped = false;
	uint64_t sleeps = 0;
	char info[512];
	sigset_t sigs;
	FILE *jf = NULL;

	p = load_valid(o->path, true, &errors); /* CPUs this machine lacks: refused */
	if (!p)
		exit(CLI_EXIT_USAGE); /* each error was printed with its file:line:column */
	/* before anything is created: an unwritable path fails now, leaving nothing */
	if (o->json)
		jf = cli_json_open(o->json_file);

	/*
	 * Signals: only this thread takes them (every engine thread inherits the mask), and
	 * each of them ends the run with the machine's settings restored.
	 */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGQUIT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

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
	}
	rc = (struct run_ctx){ .path = o->path, .vrs = vrs, .n = p->n_vms };
	run = rtioreq_profile_apply(p, &(struct rtioreq_profile_apply_attr){
		.size = sizeof(struct rtioreq_profile_apply_attr), .vm = vm_cb, .bind = bind_cb,
		.log = log_cb, .ctx = &rc, .flags = RTIOREQ_PROFILE_APPLY_NO_START });
	if (!run) {
		if (jf && jf != stdout) {
			fclose(jf);
			unlink(o->json_file); /* nothing left behind */
		}
		if (!log_lines) /* else the library's last line named the cause */
			cli_die("%s: not applied: %s", o->path, strerror(errno));
		exit(CLI_EXIT_USAGE);
	}
	plan = rtioreq_profile_run_plan(run);
	np = rtioreq_profile_run_pollers(run);
	for (unsigned int i = 0; rtioreq_profile_run_rt(run) && i < p->n_vms; i++)
		rtioreq_rt_prefault(vrs[i].shm.region, sizeof(*vrs[i].shm.region));
	if (o->verbose) /* before the VMs start: slot placement is reported as it stands */
		events = cli_events_start(rtioreq_profile_run_engine(run));
	for (unsigned int i = 0; i < p->n_vms; i++) {
		vrs[i].vm = rtioreq_profile_run_vm(run, p->vms[i].id);
		if ((r = rtioreq_vm_start(vrs[i].vm))) {
			rtioreq_profile_stop(run);
			cli_die("VM %lld start: %s", (long long)vrs[i].pv->id, strerror(-r));
		}
	}
	/* the simulated hypervisor's CPU: not one a poller spins on */
	if (producer < 0) {
		int ncpu = cli_online_cpus();

		producer = plan->engine.dispatcher.cpu >= 0 ? plan->engine.dispatcher.cpu : 0;
		for (int tries = 0; tries <= ncpu; tries++) {
			bool busy = false;

			for (unsigned int i = 0; i < plan->n_threads; i++)
				busy |= plan->threads[i].kind == RTIOREQ_PROFILE_THREAD_POLLER &&
					plan->threads[i].attr.cpu == producer;
			if (!busy)
				break;
			producer = tries == ncpu ? -1 : (producer + 1) % ncpu;
		}
	}

	if (!o->json) {
		printf("rtioreq run %s: %u VM%s, simulated hypervisor on %s%d\n", o->path, p->n_vms,
		       p->n_vms == 1 ? "" : "s", producer < 0 ? "no fixed CPU" : "CPU ",
		       producer < 0 ? 0 : producer);
		for (unsigned int i = 0; i < plan->n_threads; i++) {
			struct rtioreq_poller *pl = rtioreq_profile_run_poller(run, i);

			if (!pl)
				continue;
			show_thread(rtioreq_poller_tid(pl), info, sizeof(info));
			printf("%s: tid %d, %s\n", plan->threads[i].name, (int)rtioreq_poller_tid(pl),
			       info);
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
		if (pthread_create(&vr->thread, NULL, sim_main, vr)) {
			rtioreq_profile_cleanup();
			cli_die("simulated hypervisor thread: %s", strerror(errno));
		}
	}
	/* wait for the runs, or a signal: then undo what was created and leave at once */
	for (unsigned int i = 0; i < p->n_vms && !stopped; i++) {
		while (pthread_tryjoin_np(vrs[i].thread, NULL) == EBUSY) {
			struct timespec tick = { 0, 50000000 };
			int sig = sigtimedwait(&sigs, NULL, &tick);

			if (sig > 0) {
				int left = rtioreq_profile_cleanup();

				/* the regions stay mapped: the pollers still read them until
				 * _exit (anonymous memfds: nothing to remove) */
				if (jf && jf != stdout)
					unlink(o->json_file); /* no results: no file */
				fprintf(stderr, "rtioreq run: %s: stopped, %s\n", strsignal(sig),
					left ? "some settings could not be restored"
					     : "cpusets removed, settings restored");
				_exit(128 + sig);
			}
		}
	}
	for (unsigned int i = 0; i < plan->n_threads; i++) {
		struct rtioreq_poller *pl = rtioreq_profile_run_poller(run, i);
		struct rtioreq_poller_stats ps;

		if (!pl)
			continue;
		rtioreq_poller_stats(pl, &ps);
		sleeps += ps.sleeps; /* per engine: reported with every VM */
	}
	if (jf)
		fprintf(jf, "{\"profile\": \"%s\", \"vms\": [", o->path);
	for (unsigned int i = 0; i < p->n_vms; i++) {
		struct vm_run *vr = &vrs[i];
		struct rtioreq_vm_stats st;
		struct cli_report rep;

		if (vr->rc) {
			rtioreq_profile_stop(run);
			cli_die("VM %lld simulated hypervisor: %s", (long long)vr->pv->id,
				strerror(-vr->rc));
		}
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
	rtioreq_events_stop(events);
	rtioreq_profile_stop(run);
	for (unsigned int i = 0; i < p->n_vms; i++) {
		rtioreq_shm_close(&vrs[i].shm);
		free(vrs[i].dev);
		free(vrs[i].oracle);
		free(vrs[i].res);
	}
	free(vrs);
	rtioreq_profile_free(p);
	return verdict;
}
