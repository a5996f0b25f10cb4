// SPDX-License-Identifier: MIT
/*
 * The two halves of a cross-process run (docs/shm-protocol.md):
 *   rtioreq hv    - the simulated hypervisor: creates a named region, drives the vCPUs,
 *                   reports what the vCPUs saw, removes the region;
 *   rtioreq serve - the engine: maps that region, serves it with the example devices
 *                   until the hypervisor removes it, --duration passes, or SIGINT/SIGTERM.
 * Start serve first (it waits for the region), e.g.
 *   rtioreq serve -S /demo & rtioreq hv -S /demo -v 8 -n 1M; wait
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"

#define MAX_POLLERS 16

static void check_name(const char *s)
{
	if (!s)
		cli_die("--shm=NAME is required (a POSIX shm name such as /rtioreq-demo)");
	if (s[0] != '/' || !s[1] || strchr(s + 1, '/') || strlen(s) >= 64)
		cli_die("--shm: '%s' is not a shm name ('/' then up to 62 characters, no other '/')",
			s);
}

static void serve_usage(FILE *f)
{
	fprintf(f,
		"usage: rtioreq serve --shm=NAME [OPTIONS]\n"
		"Serve the region NAME created by a hypervisor side (rtioreq hv, or your own\n"
		"following docs/shm-protocol.md) with the example devices, until the hypervisor\n"
		"removes the region, --duration passes, or SIGINT/SIGTERM.\n"
		"\n"
		"  -S, --shm=NAME           POSIX shm name of the region, e.g. /rtioreq-demo\n"
		"  -m, --mode=MODE          polling (pollers own every slot) or notify (fallback\n"
		"                           path only); default polling\n"
		"  -P, --pollers=N          poller threads, default 1\n"
		"  -c, --poller-cpus=LIST   CPUs of the pollers, default the last CPUs\n"
		"  -d, --dispatcher-cpu=CPU CPU of the dispatcher, default any\n"
		"  -p, --priority=PRIO      SCHED_FIFO priority 1..99 of engine threads\n"
		"  -D, --duration=T         stop after T (ns, us, ms, s, m, h)\n"
		"  -I, --idle=IDLE          poller idle strategy: spin (default) or hybrid\n"
		"                           (sleep after --spin without work; NEED_WAKEUP)\n"
		"      --spin=T             hybrid: spin time before sleeping, default 50us\n"
		"  -T, --handler-thread     on the fallback path, run the devices' handlers on\n"
		"                           a thread of their own (one more wake-up per\n"
		"                           request) instead of inline on the dispatcher\n"
		"  -w, --wait=T             wait up to T for the region to appear and its\n"
		"                           creator to finish it, default 10s\n"
		"  -j, --json[=FILE]        print the engine's counters as JSON at the end, and\n"
		"                           service_ns: each request's engine-side service\n"
		"                           time (PENDING seen to COMPLETE stored, not the\n"
		"                           guest's round trip), recorded while serving\n"
		"                           (two vDSO clock reads per request)\n"
		"  -h, --help\n"
		"A region has at most one engine: serve refuses one another engine serves\n"
		"(EBUSY, naming its pid), and completes what an engine that died left\n"
		"PROCESSING (all ones, counted as abandoned).\n");
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Wait up to @wait_ns for region @name to exist and be complete, then map and claim it.
 * Dies naming the cause. */
static void serve_open(struct rtioreq_shm *shm, const char *name, uint64_t wait_ns)
{
	uint64_t end = now_ns() + wait_ns;
	int r;

	/* the creator's steps (shm_open, ftruncate, header, magic last) take time; only
	 * a complete header is judged */
	while (((r = rtioreq_shm_open(shm, name)) == -ENOENT || r == -EAGAIN) && now_ns() < end)
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	if (r == -ENOENT)
		cli_die("--shm: no region %s appeared within the --wait time", name);
	if (r == -EAGAIN)
		cli_die("--shm: %s was not finished within the --wait time: %s", name, shm->why);
	if (r == -EINVAL)
		cli_die("--shm: %s is not a region this engine serves: %s", name, shm->why);
	if (r == -EBUSY && shm->holder)
		cli_die("--shm: %s is busy (EBUSY): another engine serves it, pid %d", name,
			(int)shm->holder);
	if (r == -EBUSY)
		cli_die("--shm: %s is busy (EBUSY): another engine serves it, pid unknown", name);
	if (r)
		cli_die("--shm: cannot map %s: %s", name, strerror(-r));
}

static bool region_gone(const struct rtioreq_shm *s)
{
	struct stat st;

	/* the hypervisor unlinks the name when it is done */
	return fstat(s->fd, &st) || st.st_nlink == 0;
}

int cli_serve(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "shm", required_argument, NULL, 'S' },
		{ "mode", required_argument, NULL, 'm' },
		{ "pollers", required_argument, NULL, 'P' },
		{ "poller-cpus", required_argument, NULL, 'c' },
		{ "dispatcher-cpu", required_argument, NULL, 'd' },
		{ "priority", required_argument, NULL, 'p' },
		{ "duration", required_argument, NULL, 'D' },
		{ "wait", required_argument, NULL, 'w' },
		{ "idle", required_argument, NULL, 'I' },
		{ "spin", required_argument, NULL, 1 },
		{ "handler-thread", no_argument, NULL, 'T' },
		{ "json", optional_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct rtioreq_poller *pollers[MAX_POLLERS] = { 0 };
	const char *name = NULL, *json_file = NULL;
	bool polling = true, json = false, hybrid = false, have_spin = false;
	bool handler_thread = false;
	FILE *jf = NULL;
	unsigned int npollers = 1, npcpus = 0, prio = 0;
	int pcpus[MAX_POLLERS], dcpu = -1, c, r, ncpu = cli_online_cpus();
	uint64_t duration = 0, wait_ns = 10000000000ull, ran = 0, spin_ns = 50000, sleeps = 0;
	struct rtioreq_exdev *dev = calloc(1, sizeof(*dev));
	struct rtioreq_engine_attr ea;
	struct rtioreq_engine *eng;
	struct rtioreq_vm_stats st;
	struct rtioreq_hist *hist = NULL;
	struct rtioreq_vm *vm;
	struct rtioreq_shm shm;
	sigset_t sigs;
	const char *why = "the hypervisor removed the region";

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":S:m:P:c:d:p:D:w:I:Tj::h", lo, NULL)) != -1) {
		switch (c) {
		case 'S': name = optarg; break;
		case 'T': handler_thread = true; break;
		case 'm': polling = cli_mode("--mode", optarg); break;
		case 'P': npollers = (unsigned int)cli_u64("--pollers", optarg, 1, MAX_POLLERS); break;
		case 'c': npcpus = cli_cpulist("--poller-cpus", optarg, pcpus, MAX_POLLERS); break;
		case 'd':
			dcpu = cli_check_cpu("--dispatcher-cpu",
					     (int)cli_u64("--dispatcher-cpu", optarg, 0, 4095));
			break;
		case 'p': prio = (unsigned int)cli_u64("--priority", optarg, 1, 99); break;
		case 'D': duration = cli_duration("--duration", optarg); break;
		case 'w': wait_ns = cli_duration("--wait", optarg); break;
		case 'I':
			if (strcmp(optarg, "spin") && strcmp(optarg, "hybrid"))
				cli_die("--idle: '%s' is not an idle strategy (spin, hybrid)", optarg);
			hybrid = !strcmp(optarg, "hybrid");
			break;
		case 1:
			spin_ns = cli_duration("--spin", optarg);
			have_spin = true;
			break;
		case 'j':
			json = true;
			json_file = optarg;
			break;
		case 'h': serve_usage(stdout); exit(0);
		case ':': cli_die("option %s needs a value", argv[optind - 1]);
		default: cli_die("unknown option '%s' (see rtioreq serve --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		cli_die("unexpected argument '%s'", argv[optind]);
	check_name(name);
	if (!polling && (hybrid || have_spin))
		cli_die("--idle/--spin need --mode polling");
	if (have_spin && !hybrid)
		cli_die("--spin needs --idle hybrid");
	if (npcpus && npcpus != npollers)
		cli_die("--poller-cpus: %u CPUs for %u pollers (give one CPU each)", npcpus,
			npollers);
	for (unsigned int i = 0; i < npcpus; i++)
		cli_check_cpu("--poller-cpus", pcpus[i]);
	if (!npcpus)
		for (int cpu = ncpu - 1; npcpus < npollers; cpu = cpu ? cpu - 1 : ncpu - 1)
			pcpus[npcpus++] = cpu;
	if (!dev)
		cli_die("out of memory");
	serve_open(&shm, name, wait_ns);
	if (shm.stale_owner)
		fprintf(stderr, "rtioreq serve: %s: engine pid %d died without detaching: taking "
				"over what it left\n", name, (int)shm.stale_owner);
	/* before serving: an unwritable --json path fails now, not after the run */
	if (json) {
		jf = cli_json_open(json_file);
		hist = malloc(sizeof(*hist));
		if (!hist)
			cli_die("out of memory");
	}
	/* engine threads inherit the mask: only this thread takes the signals */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGQUIT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	ea.dispatcher = (struct rtioreq_thread_attr){ .cpu = dcpu,
						      .policy = prio ? SCHED_FIFO : SCHED_OTHER,
						      .priority = (int)prio };
	ea.clients = ea.dispatcher;
	/* the call_rcu worker: on the dispatcher's CPU, or the first non-poller CPU */
	ea.rcu = (struct rtioreq_thread_attr){ .cpu = dcpu };
	for (int cpu = 0; ea.rcu.cpu < 0 && cpu < ncpu; cpu++) {
		bool poller_cpu = false;

		for (unsigned int i = 0; polling && i < npcpus; i++)
			poller_cpu |= pcpus[i] == cpu;
		if (!poller_cpu)
			ea.rcu.cpu = cpu;
	}
	eng = rtioreq_engine_create(&ea);
	if (!eng)
		cli_die("engine: %s", cli_engine_error(errno));
	vm = rtioreq_vm_attach(eng, &(struct rtioreq_vm_attr){
					    .id = 1, .vcpu_num = (uint16_t)shm.region->chan.vcpu_num,
					    .page = &shm.region->page, .chan = &shm.region->chan,
					    .paused = true, .takeover = shm.stale_owner != 0,
					    .flags = json ? RTIOREQ_VM_HIST : 0 });
	if (!vm)
		cli_die("VM attach: %s", strerror(errno));
	dev->handler_thread = handler_thread;
	r = rtioreq_exdev_attach(dev, vm);
	if (r)
		cli_die("example devices: %s", strerror(-r));
	for (unsigned int i = 0; polling && i < npollers; i++) {
		pollers[i] = rtioreq_poller_create(eng, &(struct rtioreq_thread_attr){
			.cpu = pcpus[npcpus == 1 ? 0 : i], .policy = prio ? SCHED_FIFO : SCHED_OTHER,
			.priority = (int)prio, .name = "rtioreq-poll" });
		if (!pollers[i])
			cli_die("poller: %s", strerror(errno));
		if (hybrid)
			rtioreq_poller_set_idle(pollers[i], spin_ns);
	}
	for (uint16_t v = 0; polling && v < shm.region->chan.vcpu_num; v++)
		if ((r = rtioreq_vm_set_poller(vm, v, pollers[v % npollers])))
			cli_die("slot to poller: %s", strerror(-r));
	/* devices and slots in place: only now take the hypervisor's requests */
	if ((r = rtioreq_vm_start(vm)))
		cli_die("VM start: %s", strerror(-r));
	fprintf(stderr, "rtioreq serve: serving %s (%u vCPUs, %s%s)\n", name,
		(unsigned int)shm.region->chan.vcpu_num, polling ? "polling" : "notify",
		hybrid ? ", hybrid idle" : "");
	for (;;) {
		struct timespec tick = { 0, 100000000 };
		int sig = sigtimedwait(&sigs, NULL, &tick);

		if (sig > 0) {
			why = strsignal(sig);
			break;
		}
		ran += 100000000;
		if (duration && ran >= duration) {
			why = "--duration passed";
			break;
		}
		if (region_gone(&shm))
			break;
	}
	/* the histogram while the VM still exists: without the few requests detach's last
	 * sweep completes at once (counted cleared) */
	if (hist && (r = rtioreq_vm_hist(vm, hist)))
		cli_die("service-time histogram: %s", strerror(-r));
	/* counters after detach's last sweep: they include what it completed */
	rtioreq_vm_detach_stats(vm, &st);
	for (unsigned int i = 0; polling && i < npollers; i++) {
		struct rtioreq_poller_stats ps;

		rtioreq_poller_stats(pollers[i], &ps);
		sleeps += ps.sleeps;
	}
	rtioreq_engine_destroy(eng);
	fprintf(stderr, "rtioreq serve: stopped (%s): completed %llu, polled %llu, fallback %llu, "
			"unclaimed %llu, invalid %llu, handler_errors %llu, cleared %llu, forced %llu, "
			"abandoned %llu, notified %llu\n",
		why, (unsigned long long)st.completed, (unsigned long long)st.polled,
		(unsigned long long)st.fallback, (unsigned long long)st.unclaimed,
		(unsigned long long)st.invalid, (unsigned long long)st.handler_errors,
		(unsigned long long)st.cleared, (unsigned long long)st.forced,
		(unsigned long long)st.abandoned, (unsigned long long)st.notified);
	if (json) {
		FILE *f = jf;

		fputc('{', f);
		cli_json_meta(f);
		fprintf(f, "\"dispatched\": %llu, \"completed\": %llu, \"polled\": %llu, "
			   "\"fallback\": %llu, \"handler_errors\": %llu, \"invalid\": %llu, "
			   "\"unclaimed\": %llu, \"cleared\": %llu, \"forced\": %llu, "
			   "\"notified\": %llu, \"abandoned\": %llu, \"sleeps\": %llu, ",
			(unsigned long long)st.dispatched, (unsigned long long)st.completed,
			(unsigned long long)st.polled, (unsigned long long)st.fallback,
			(unsigned long long)st.handler_errors, (unsigned long long)st.invalid,
			(unsigned long long)st.unclaimed, (unsigned long long)st.cleared,
			(unsigned long long)st.forced, (unsigned long long)st.notified,
			(unsigned long long)st.abandoned, (unsigned long long)sleeps);
		cli_json_hist(f, "service_ns", hist);
		fputs("}\n", f);
		if (f != stdout)
			fclose(f);
	}
	rtioreq_shm_close(&shm);
	free(hist);
	free(dev);
	return 0;
}

/* hv: a signal removes the region (serve then stops too) and ends the process. */
static sigset_t hv_sigs;
static const char *hv_shm_name;

static void *hv_watch(void *arg)
{
	int sig;

	if (sigwait(&hv_sigs, &sig))
		return NULL;
	shm_unlink(hv_shm_name);
	fprintf(stderr, "rtioreq hv: %s: stopped, %s removed\n", strsignal(sig), hv_shm_name);
	_exit(128 + sig);
}

static void hv_usage(FILE *f)
{
	fprintf(f,
		"usage: rtioreq hv --shm=NAME [OPTIONS]\n"
		"The simulated hypervisor in its own process: creates the region NAME, drives\n"
		"its vCPUs against the example devices, checks every read, removes the region.\n"
		"Start 'rtioreq serve --shm=NAME' first or within --timeout.\n"
		"\n"
		"  -S, --shm=NAME           POSIX shm name, e.g. /rtioreq-demo\n"
		"  -m, --mode=MODE          polling: spin for COMPLETE (completion_polling=1);\n"
		"                           notify: sleep for the completion notification;\n"
		"                           default polling\n"
		"  -v, --vcpus=N            vCPUs 1..16, default 4\n"
		"  -n, --requests=N         requests over all vCPUs, default 200k\n"
		"  -D, --duration=T         run for T instead\n"
		"  -C, --producer-cpu=CPU   CPU of the vCPU thread, default 0\n"
		"  -u, --unmapped=PCT       share of requests to the unclaimed port, default 5\n"
		"  -s, --seed=N             workload seed, default 1\n"
		"  -t, --timeout=T          a request not complete after T is lost, default 10s\n"
		"  -j, --json[=FILE]        print one JSON object\n"
		"  -h, --help\n");
}

int cli_hv(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "shm", required_argument, NULL, 'S' },
		{ "mode", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'v' },
		{ "requests", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'D' },
		{ "producer-cpu", required_argument, NULL, 'C' },
		{ "unmapped", required_argument, NULL, 'u' },
		{ "seed", required_argument, NULL, 's' },
		{ "timeout", required_argument, NULL, 't' },
		{ "json", optional_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct rtioreq_exdev_oracle *oracle = calloc(1, sizeof(*oracle));
	struct rtioreq_sim_result *res = calloc(1, sizeof(*res));
	const char *name = NULL, *json_file = NULL;
	bool polling = true, json = false, have_n = false;
	unsigned int vcpus = 4, unmapped = 5;
	uint64_t requests = 200000, duration = 0, seed = 1, timeout = 10000000000ull;
	int cpu = 0, c, r, verdict;
	struct rtioreq_sim_attr sa;
	struct rtioreq_shm shm;
	struct cli_report rep;
	pthread_t watcher;
	FILE *jf = NULL;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":S:m:v:n:D:C:u:s:t:j::h", lo, NULL)) != -1) {
		switch (c) {
		case 'S': name = optarg; break;
		case 'm': polling = cli_mode("--mode", optarg); break;
		case 'v': vcpus = (unsigned int)cli_u64("--vcpus", optarg, 1, 16); break;
		case 'n':
			requests = cli_u64("--requests", optarg, 1, UINT64_MAX / 2);
			have_n = true;
			break;
		case 'D': duration = cli_duration("--duration", optarg); break;
		case 'C':
			cpu = (int)cli_u64("--producer-cpu", optarg, 0,
					   (uint64_t)cli_online_cpus() - 1);
			break;
		case 'u': unmapped = (unsigned int)cli_u64("--unmapped", optarg, 0, 100); break;
		case 's': seed = cli_u64("--seed", optarg, 0, UINT64_MAX); break;
		case 't': timeout = cli_duration("--timeout", optarg); break;
		case 'j':
			json = true;
			json_file = optarg;
			break;
		case 'h': hv_usage(stdout); exit(0);
		case ':': cli_die("option %s needs a value", argv[optind - 1]);
		default: cli_die("unknown option '%s' (see rtioreq hv --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		cli_die("unexpected argument '%s'", argv[optind]);
	check_name(name);
	if (duration && have_n)
		cli_die("--requests and --duration exclude each other");
	if (duration)
		requests = 0;
	if (!oracle || !res)
		cli_die("out of memory");
	/* before the run: an unwritable --json path fails now, not after it */
	if (json)
		jf = cli_json_open(json_file);
	/* the region is removed also when a signal ends us: a watcher thread takes them */
	sigemptyset(&hv_sigs);
	sigaddset(&hv_sigs, SIGINT);
	sigaddset(&hv_sigs, SIGTERM);
	sigaddset(&hv_sigs, SIGHUP);
	sigaddset(&hv_sigs, SIGQUIT);
	pthread_sigmask(SIG_BLOCK, &hv_sigs, NULL); /* every thread from here inherits it */
	r = rtioreq_shm_create(&shm, name, (uint16_t)vcpus);
	if (r == -EEXIST)
		cli_die("--shm: %s exists (another hypervisor, or left over: rm /dev/shm%s)", name,
			name);
	if (r)
		cli_die("--shm: cannot create %s: %s", name, strerror(-r));
	hv_shm_name = name;
	if (pthread_create(&watcher, NULL, hv_watch, NULL)) {
		rtioreq_shm_close(&shm);
		cli_die("signal watcher thread: %s", strerror(errno));
	}
	rtioreq_exdev_oracle_init(oracle, seed, unmapped);
	memset(&sa, 0, sizeof(sa));
	sa.region = shm.region;
	sa.vcpu_num = (uint16_t)vcpus;
	sa.producers = 1;
	sa.requests = requests;
	sa.duration_ns = duration;
	sa.completion_polling = polling;
	sa.producer_cpu[0] = cpu;
	sa.producer_cpu[1] = sa.producer_cpu[2] = sa.producer_cpu[3] = -1;
	sa.stranded_ns = timeout;
	sa.wl = (struct rtioreq_sim_workload){ .gen = rtioreq_exdev_gen, .ctx = oracle };
	r = rtioreq_sim_run(&sa, res);
	rtioreq_shm_close(&shm); /* unlinks the name: serve stops */
	if (r)
		cli_die("simulated hypervisor: %s", strerror(-r));
	rep = (struct cli_report){ .mode = polling ? "polling" : "notify", .vcpus = vcpus,
				   .requested = requests, .res = res };
	if (json) {
		FILE *f = jf;

		cli_report_json(f, &rep);
		if (f != stdout)
			fclose(f);
		else
			json_file = NULL;
	}
	if (!json || json_file)
		cli_report_text(stdout, &rep);
	verdict = cli_report_verdict(&rep);
	free(oracle);
	free(res);
	return verdict;
}
