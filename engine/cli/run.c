// SPDX-License-Identifier: MIT
/*
 * rtioreq run: a simulated VM and the engine in one process. The simulated hypervisor
 * (sim.h) drives the vCPUs against the example devices (exdev.h) through a shared
 * region; the engine serves them by polling or on the fallback path.
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_POLLERS 16

struct run_opts {
	bool polling;
	unsigned int vcpus, pollers, npcpus, unmapped, priority;
	uint64_t requests, duration_ns, seed, think_ns, spin_ns;
	bool hybrid;
	int pcpus[MAX_POLLERS], producer_cpu, dispatcher_cpu;
	bool json, verbose;
	const char *json_file;
	const char *profile; /* run PROFILE */
	bool have_n, producer_given;
	unsigned int engine_opts; /* options the profile sets instead */
};

static void run_usage(FILE *f)
{
	fprintf(f,
		"usage: rtioreq run [OPTIONS] [PROFILE]\n"
		"Simulated VM and engine in one process: vCPUs do port I/O and MMIO against\n"
		"example devices (RAM-backed MMIO at 0xd0000000, accumulator port 0x510,\n"
		"unclaimed port 0x5f0); every read is checked against the device's value.\n"
		"Prints counts and round-trip latency (PENDING store to COMPLETE seen).\n"
		"\n"
		"  -m, --mode=MODE          polling (pollers serve the slots, the hypervisor\n"
		"                           spins for COMPLETE) or notify (upcall, dispatcher,\n"
		"                           client threads, completion notification);\n"
		"                           default polling\n"
		"  -v, --vcpus=N            vCPUs (slots) 1..16, default 4\n"
		"  -n, --requests=N         requests over all vCPUs (k, M, G suffixes),\n"
		"                           default 200k\n"
		"  -D, --duration=T         run for T instead (ns, us, ms, s, m, h; default s)\n"
		"  -P, --pollers=N          poller threads (polling mode), default 1\n"
		"  -c, --poller-cpus=LIST   CPUs of the pollers, one each, e.g. 1 or 2-3, not\n"
		"                           the producer's; default the last CPUs, other than\n"
		"                           the producer's\n"
		"  -C, --producer-cpu=CPU   CPU of the simulated hypervisor thread, default 0\n"
		"  -d, --dispatcher-cpu=CPU CPU of the dispatcher (notify mode), default any\n"
		"  -p, --priority=PRIO      SCHED_FIFO priority 1..99 of pollers, dispatcher\n"
		"                           and client threads; default SCHED_OTHER\n"
		"  -u, --unmapped=PCT       share of requests to the unclaimed port, 0..100,\n"
		"                           default 5\n"
		"  -s, --seed=N             workload seed, default 1\n"
		"  -I, --idle=IDLE          poller idle strategy: spin (default) or hybrid\n"
		"                           (sleep after --spin without work; NEED_WAKEUP)\n"
		"      --spin=T             hybrid: spin time before sleeping, default 50us\n"
		"  -T, --think=T            vCPU pause between requests: after 1 in 8, up to\n"
		"                           16*T (mean T); default none\n"
		"  -j, --json[=FILE]        print one JSON object (to FILE, '-' stdout)\n"
		"  -V, --verbose            log on stderr what the engine counts (invalid,\n"
		"                           unclaimed, handler errors, slot moves, poller\n"
		"                           sleeps...) as it happens, at most every 100 ms\n"
		"  -h, --help\n"
		"With a PROFILE (rt-configs/*.yaml) the engine runs as the profile says: pollers,\n"
		"policies, cpusets, memory locking, cpu_dma_latency; one simulated VM per profile\n"
		"VM, --requests/--duration each. -m, -v, -P, -c, -d, -p come from the profile.\n"
		"Exit status: 0 every request completed exactly once with its value, 1 not,\n"
		"2 bad input or setup error.\n");
}

static void parse(int argc, char **argv, struct run_opts *o)
{
	static const struct option lo[] = {
		{ "mode", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'v' },
		{ "requests", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'D' },
		{ "pollers", required_argument, NULL, 'P' },
		{ "poller-cpus", required_argument, NULL, 'c' },
		{ "producer-cpu", required_argument, NULL, 'C' },
		{ "dispatcher-cpu", required_argument, NULL, 'd' },
		{ "priority", required_argument, NULL, 'p' },
		{ "unmapped", required_argument, NULL, 'u' },
		{ "seed", required_argument, NULL, 's' },
		{ "idle", required_argument, NULL, 'I' },
		{ "spin", required_argument, NULL, 'S' },
		{ "think", required_argument, NULL, 'T' },
		{ "json", optional_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	int ncpu = cli_online_cpus(), c;
	bool have_n = false, have_pcpus = false, have_spin = false;

	*o = (struct run_opts){ .polling = true, .vcpus = 4, .pollers = 1, .unmapped = 5,
				.requests = 200000, .seed = 1, .producer_cpu = 0,
				.dispatcher_cpu = -1, .spin_ns = 50000 };
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":m:v:n:D:P:c:C:d:p:u:s:I:T:j::Vh", lo, NULL)) != -1) {
		switch (c) {
		case 'm':
			o->polling = cli_mode("--mode", optarg);
			o->engine_opts |= 1;
			break;
		case 'v':
			o->vcpus = (unsigned int)cli_u64("--vcpus", optarg, 1, 16);
			o->engine_opts |= 1;
			break;
		case 'n':
			o->requests = cli_u64("--requests", optarg, 1, UINT64_MAX / 2);
			have_n = true;
			break;
		case 'D': o->duration_ns = cli_duration("--duration", optarg); break;
		case 'P':
			o->pollers = (unsigned int)cli_u64("--pollers", optarg, 1, MAX_POLLERS);
			o->engine_opts |= 1;
			break;
		case 'c':
			o->npcpus = cli_cpulist("--poller-cpus", optarg, o->pcpus, MAX_POLLERS);
			have_pcpus = true;
			o->engine_opts |= 1;
			break;
		case 'C':
			o->producer_cpu = (int)cli_u64("--producer-cpu", optarg, 0, 4095);
			o->producer_given = true;
			break;
		case 'd':
			o->dispatcher_cpu = (int)cli_u64("--dispatcher-cpu", optarg, 0, 4095);
			o->engine_opts |= 1;
			break;
		case 'p':
			o->priority = (unsigned int)cli_u64("--priority", optarg, 1, 99);
			o->engine_opts |= 1;
			break;
		case 'u': o->unmapped = (unsigned int)cli_u64("--unmapped", optarg, 0, 100); break;
		case 's': o->seed = cli_u64("--seed", optarg, 0, UINT64_MAX); break;
		case 'I':
			if (strcmp(optarg, "spin") && strcmp(optarg, "hybrid"))
				cli_die("--idle: '%s' is not an idle strategy (spin, hybrid)", optarg);
			o->hybrid = !strcmp(optarg, "hybrid");
			o->engine_opts |= 1;
			break;
		case 'S':
			o->spin_ns = cli_duration("--spin", optarg);
			have_spin = true;
			o->engine_opts |= 1;
			break;
		case 'T': o->think_ns = cli_duration("--think", optarg); break;
		case 'j':
			o->json = true;
			o->json_file = optarg;
			break;
		case 'V': o->verbose = true; break;
		case 'h': run_usage(stdout); exit(0);
		case ':': cli_die("option %s needs a value", argv[optind - 1]);
		default:
			cli_die("unknown option '%s' (see rtioreq run --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		o->profile = argv[optind++];
	if (optind < argc)
		cli_die("unexpected argument '%s' (see rtioreq run --help)", argv[optind]);
	o->have_n = have_n;
	if (o->profile && o->engine_opts)
		cli_die("-m, -v, -P, -c, -d and -p are set by the profile %s", o->profile);
	if (o->duration_ns && have_n)
		cli_die("--requests and --duration exclude each other");
	if (o->duration_ns)
		o->requests = 0;
	if (!o->polling && (o->pollers != 1 || have_pcpus || o->hybrid))
		cli_die("--pollers/--poller-cpus/--idle need --mode polling");
	if (have_spin && !o->hybrid)
		cli_die("--spin needs --idle hybrid (a spinning poller never sleeps)");
	if (o->polling && o->pollers > o->vcpus)
		cli_die("--pollers: %u pollers for %u vCPUs would leave pollers idle", o->pollers,
			o->vcpus);
	cli_check_cpu("--producer-cpu", o->producer_cpu);
	if (o->profile)
		return;
	if (o->dispatcher_cpu >= 0)
		cli_check_cpu("--dispatcher-cpu", o->dispatcher_cpu);
	if (!o->polling)
		return;
	if (have_pcpus) {
		/* a spinning poller owns its CPU: two on one starve each other, and one on
		 * the simulated hypervisor's CPU starves the requests it waits for */
		if (o->npcpus != o->pollers)
			cli_die("--poller-cpus: %u CPU%s for %u pollers (give one CPU each)",
				o->npcpus, o->npcpus == 1 ? "" : "s", o->pollers);
		for (unsigned int i = 0; i < o->npcpus; i++) {
			if (o->pcpus[i] == o->producer_cpu)
				cli_die("--poller-cpus: CPU %d is the simulated hypervisor's "
					"(--producer-cpu %d)", o->pcpus[i], o->producer_cpu);
			cli_check_cpu("--poller-cpus", o->pcpus[i]);
		}
		return;
	}
	/* default: the last CPUs, skipping the producer's while others remain */
	for (int cpu = ncpu - 1; cpu >= 0 && o->npcpus < o->pollers; cpu--)
		if (cpu != o->producer_cpu || ncpu == 1)
			o->pcpus[o->npcpus++] = cpu;
	if (!o->npcpus)
		o->pcpus[o->npcpus++] = 0;
}

static struct rtioreq_thread_attr thread_attr(const struct run_opts *o, int cpu, const char *nm)
{
	return (struct rtioreq_thread_attr){ .cpu = cpu,
					     .policy = o->priority ? SCHED_FIFO : SCHED_OTHER,
					     .priority = (int)o->priority,
					     .name = nm };
}

static void die_errno(const char *what, int err)
{
	if (err == EPERM)
		cli_die("%s: %s (SCHED_FIFO needs root or RLIMIT_RTPRIO; drop --priority)", what,
			strerror(err));
	cli_die("%s: %s", what, strerror(err));
}

int cli_run(int argc, char **argv)
{
	struct rtioreq_poller *pollers[MAX_POLLERS] = { 0 };
	struct rtioreq_engine_attr ea;
	struct rtioreq_exdev_oracle *oracle;
	struct rtioreq_sim_result *res;
	struct rtioreq_vm_stats st;
	struct rtioreq_exdev *dev;
	struct rtioreq_engine *eng;
	struct rtioreq_sim_attr sa;
	struct rtioreq_vm *vm;
	struct rtioreq_shm shm;
	struct run_opts o;
	struct cli_report rep;
	struct rtioreq_events *events = NULL;
	FILE *f = stdout;
	int r, verdict;
	uint64_t sleeps = 0;

	parse(argc, argv, &o);
	if (o.profile)
#if !RTIOREQ_HAVE_PROFILES
		cli_die("PROFILE: this rtioreq was built without profile support "
			"(RTIOREQ_BUILD_PROFILES)");
#else
		return cli_run_profile(&(struct cli_profile_opts){
			.path = o.profile, .requests = o.requests, .duration_ns = o.duration_ns,
			.seed = o.seed, .unmapped = o.unmapped, .think_ns = o.think_ns,
			.producer_cpu = o.producer_given ? o.producer_cpu : -1, .json = o.json,
			.json_file = o.json_file, .verbose = o.verbose });
#endif
	/* before the run: an unwritable --json path fails now, not after it */
	if (o.json)
		f = cli_json_open(o.json_file);
	oracle = calloc(1, sizeof(*oracle));
	res = calloc(1, sizeof(*res));
	dev = calloc(1, sizeof(*dev));
	if (!oracle || !res || !dev)
		die_errno("out of memory", ENOMEM);
	r = rtioreq_shm_create(&shm, NULL, (uint16_t)o.vcpus);
	if (r)
		die_errno("shared region", -r);
	ea.dispatcher = thread_attr(&o, o.dispatcher_cpu, "rtioreq-disp");
	ea.clients = thread_attr(&o, o.dispatcher_cpu, NULL);
	ea.rcu = (struct rtioreq_thread_attr){ .cpu = o.producer_cpu }; /* not a poller's */
	eng = rtioreq_engine_create(&ea);
	if (!eng && errno == ENOSYS)
		cli_die("engine: %s", cli_engine_error(errno));
	if (!eng)
		die_errno("engine", errno);
	vm = rtioreq_vm_attach(eng, &(struct rtioreq_vm_attr){ .id = 1,
							       .vcpu_num = (uint16_t)o.vcpus,
							       .page = &shm.region->page,
							       .chan = &shm.region->chan });
	if (!vm)
		die_errno("VM attach", errno);
	r = rtioreq_exdev_attach(dev, vm);
	if (r)
		die_errno("example devices", -r);
	for (unsigned int i = 0; o.polling && i < o.pollers; i++) {
		struct rtioreq_thread_attr ta =
			thread_attr(&o, o.pcpus[o.npcpus == 1 ? 0 : i], "rtioreq-poll");

		pollers[i] = rtioreq_poller_create(eng, &ta);
		if (!pollers[i])
			die_errno("poller", errno);
		if (o.hybrid)
			rtioreq_poller_set_idle(pollers[i], o.spin_ns);
	}
	for (unsigned int v = 0; o.polling && v < o.vcpus; v++) {
		r = rtioreq_vm_set_poller(vm, (uint16_t)v, pollers[v % o.pollers]);
		if (r)
			die_errno("slot to poller", -r);
	}
	if (!o.json) {
		printf("rtioreq run: simulated VM, %u vCPUs on CPU %d, PIO+MMIO on example devices "
		       "(%u%% to an unclaimed port)\n",
		       o.vcpus, o.producer_cpu, o.unmapped);
		for (unsigned int i = 0; o.polling && i < o.pollers; i++)
			printf("poller %u: CPU %d, tid %d, %s, idle %s\n", i,
			       o.pcpus[o.npcpus == 1 ? 0 : i], (int)rtioreq_poller_tid(pollers[i]),
			       o.priority ? "SCHED_FIFO" : "SCHED_OTHER", o.hybrid ? "hybrid" : "spin");
		fflush(stdout);
	}
	rtioreq_exdev_oracle_init(oracle, o.seed, o.unmapped);
	memset(&sa, 0, sizeof(sa));
	sa.region = shm.region;
	sa.vcpu_num = (uint16_t)o.vcpus;
	sa.producers = 1;
	sa.requests = o.requests;
	sa.duration_ns = o.duration_ns;
	sa.completion_polling = o.polling;
	sa.think_ns = o.think_ns;
	sa.producer_cpu[0] = o.producer_cpu;
	for (int i = 1; i < 4; i++)
		sa.producer_cpu[i] = -1;
	sa.wl = (struct rtioreq_sim_workload){ .gen = rtioreq_exdev_gen, .ctx = oracle };
	if (o.verbose) /* --verbose: what the engine only counts, as it happens */
		events = cli_events_start(eng);
	r = rtioreq_sim_run(&sa, res);
	if (r)
		die_errno("simulated hypervisor", -r);
	rtioreq_events_stop(events);
	rtioreq_vm_stats(vm, &st);
	for (unsigned int i = 0; o.polling && i < o.pollers; i++) {
		struct rtioreq_poller_stats ps;

		rtioreq_poller_stats(pollers[i], &ps);
		sleeps += ps.sleeps;
	}
	rep = (struct cli_report){ .sleeps = sleeps, .mode = o.polling ? "polling" : "notify", .vcpus = o.vcpus,
				   .pollers = o.polling ? o.pollers : 0,
				   .requested = o.requests, .res = res, .st = &st };
	if (o.json) {
		cli_report_json(f, &rep);
		if (f != stdout)
			fclose(f);
	}
	if (!o.json || f != stdout)
		cli_report_text(stdout, &rep);
	verdict = cli_report_verdict(&rep);
	rtioreq_engine_destroy(eng);
	rtioreq_shm_close(&shm);
	free(oracle);
	free(res);
	free(dev);
	return verdict;
}
