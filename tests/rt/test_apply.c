// SPDX-License-Identifier: MIT
/*
 * rtioreq_profile_apply(): a profile applied through the library call alone serves the
 * embedder's handlers, bound by client name with the device's params, on a poller with
 * the profile's policy and CPU; real-time throttling is refused, kept or switched off and
 * restored as the profile says (against a stand-in sysctl directory, so the machine's
 * real setting is never touched); rtioreq_profile_stop(), rtioreq_profile_cleanup() and
 * the opt-in signal handlers leave no cpuset behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

struct fixture {
	char dir[64];	   /* stand-in for /proc/sys/kernel */
	char profile[128]; /* generated profile */
	int poll_cpu;
};

struct bind_ctx {
	struct h_vm *h;
	unsigned int binds, created;
	char can_irq[16], can_bitrate[16];
	char log[4096];
	size_t loglen;
};

static void write_file(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(s, f);
	assert_int_equal(fclose(f), 0);
}

static long long read_runtime(const struct fixture *fx)
{
	char path[128];
	long long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/sched_rt_runtime_us", fx->dir);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%lld", &v), 1);
	fclose(f);
	return v;
}

/* A profile with one FIFO poller on the last CPU, isolation and throttling as given. */
static void make_profile(struct fixture *fx, const char *throttling, const char *isolation)
{
	char text[2048], path[128];

	snprintf(text, sizeof(text),
		 "%s\n"
		 "cores:\n"
		 "  - cpu: 0\n"
		 "    role: [dispatcher, clients]\n"
		 "  - cpu: %d\n"
		 "    role: [poller]\n"
		 "    policy: fifo\n"
		 "    priority: 10\n"
		 "    isolation: %s\n"
		 "    slots: [{ vm: 7, vcpus: [0, 1] }]\n"
		 "vms:\n"
		 "  - id: 7\n"
		 "    vcpus: 2\n"
		 "    devices:\n"
		 "      - name: can0\n"
		 "        client: can\n"
		 "        ranges: [{ type: mmio, start: 0xfe000000, end: 0xfe0000ff }]\n"
		 "        params: { irq: 5, bitrate: 500000 }\n"
		 "      - name: can0-msgram\n"
		 "        client: can\n"
		 "        ranges: [{ type: mmio, start: 0xfe001000, end: 0xfe001fff }]\n"
		 "      - name: wdt\n"
		 "        ranges: [{ type: pio, start: 0x443, end: 0x443 }]\n",
		 throttling, fx->poll_cpu, isolation);
	write_file(fx->profile, text);
	snprintf(path, sizeof(path), "%s/sched_rt_runtime_us", fx->dir);
	write_file(path, "950000\n");
	snprintf(path, sizeof(path), "%s/sched_rt_period_us", fx->dir);
	write_file(path, "1000000\n");
}

static int setup(void **state)
{
	static struct fixture fx;
	int fd;

	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		return -1;
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/rtioreq-apply-XXXXXX");
	assert_non_null(mkdtemp(fx.dir));
	snprintf(fx.profile, sizeof(fx.profile), "%s/p.yaml", fx.dir);
	fd = open(fx.profile, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	close(fd);
	fx.poll_cpu = (int)sysconf(_SC_NPROCESSORS_ONLN) - 1;
	*state = &fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	char path[160];

	snprintf(path, sizeof(path), "%s/sched_rt_runtime_us", fx->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/sched_rt_period_us", fx->dir);
	unlink(path);
	unlink(fx->profile);
	rmdir(fx->dir);
	return 0;
}

static int h_mmio_can(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	if (req->dir == RTIOREQ_DIR_READ)
		req->value = 0xca0 + (req->addr & 0xfff);
	return 0;
}

static int vm_cb(void *ctx, const struct rtioreq_profile_vm *pv, struct rtioreq_vm_attr *attr)
{
	struct bind_ctx *b = ctx;

	assert_int_equal(pv->id, 7);
	assert_int_equal(attr->id, 7);
	assert_int_equal(attr->vcpu_num, 2);
	attr->page = &b->h->shm.region->page;
	attr->chan = &b->h->shm.region->chan;
	return 0;
}

static int bind_cb(void *ctx, struct rtioreq_profile_bind *bd)
{
	struct bind_ctx *b = ctx;
	const char *irq = rtioreq_profile_param(bd->dev, "irq");

	b->binds++;
	assert_non_null(bd->vm);
	if (!strcmp(bd->dev->client, "can")) {
		if (!strcmp(bd->dev->name, "can0")) {
			assert_null(bd->client); /* first device of client "can" */
			assert_string_equal(bd->attr.name, "can");
			snprintf(b->can_irq, sizeof(b->can_irq), "%s", irq ? irq : "");
			snprintf(b->can_bitrate, sizeof(b->can_bitrate), "%s",
				 rtioreq_profile_param(bd->dev, "bitrate"));
		} else {
			assert_non_null(bd->client); /* shared with can0 */
			assert_null(irq);
		}
		bd->attr.handler = h_mmio_can;
	} else {
		assert_string_equal(bd->dev->name, "wdt");
		bd->attr.handler = h_const;
		bd->attr.priv = (void *)(uintptr_t)0x5a;
	}
	if (!bd->client)
		b->created++;
	return 0;
}

static void log_cb(void *ctx, const char *line)
{
	struct bind_ctx *b = ctx;
	int n = snprintf(b->log + b->loglen, sizeof(b->log) - b->loglen, "%s\n", line);

	if (n > 0 && (size_t)n < sizeof(b->log) - b->loglen)
		b->loglen += (size_t)n;
}

static struct rtioreq_profile *load(const struct fixture *fx)
{
	struct rtioreq_profile *p = rtioreq_profile_load(fx->profile, NULL, NULL);

	assert_non_null(p);
	assert_int_equal(rtioreq_profile_validate(p, true), 0);
	return p;
}

/*
 * The run a failed assertion left behind: stopped by the test's teardown, so that its
 * spinning FIFO poller does not starve the next test's on the same CPU.
 */
static struct rtioreq_profile_run *live;

static struct rtioreq_profile_run *apply(const struct fixture *fx, struct rtioreq_profile *p,
					 struct bind_ctx *b)
{
	struct rtioreq_profile_run *run = rtioreq_profile_apply(p, &(struct rtioreq_profile_apply_attr){
		.size = sizeof(struct rtioreq_profile_apply_attr), .vm = vm_cb, .bind = bind_cb,
		.log = log_cb, .ctx = b, .sysctl_dir = fx->dir });

	if (run)
		live = run;
	return run;
}

static void stop(struct rtioreq_profile_run *run)
{
	if (run == live)
		live = NULL;
	rtioreq_profile_stop(run);
}

static int test_teardown(void **state)
{
	rtioreq_profile_stop(live);
	live = NULL;
	return 0;
}

static bool rt_ok(void)
{
	char why[256];

	return rtioreq_rt_permitted(10, why, sizeof(why));
}

/* The cpuset of thread @tid as /proc says ("/" when none). */
static void cpuset_of(pid_t tid, char *buf, size_t len)
{
	char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/cpuset", (int)tid);
	snprintf(buf, len, "?");
	f = fopen(path, "r");
	if (!f)
		return;
	if (fgets(buf, (int)len, f))
		buf[strcspn(buf, "\n")] = 0;
	fclose(f);
}

static bool cgroup1_cpuset(void)
{
	char why[256];

	return rtioreq_rt_cpuset_backend(NULL, why, sizeof(why)) == RTIOREQ_RT_CPUSET_CGROUP1;
}

/* Handlers bound by the embedder serve on the profile's poller, with its policy and CPU. */
static void test_apply_serves(void **state)
{
	struct fixture *fx = *state;
	struct h_vm h = { 0 };
	struct bind_ctx b = { .h = &h };
	struct rtioreq_profile *p;
	struct rtioreq_profile_run *run;
	struct rtioreq_poller *pl;
	struct sched_param sp;
	cpu_set_t set;
	pid_t tid;

	make_profile(fx, "rt_throttling: keep", "none");
	p = load(fx);
	assert_int_equal(rtioreq_shm_create(&h.shm, NULL, 2), 0);
	run = apply(fx, p, &b);
	if (!run)
		fail_msg("apply: %s\n%s", strerror(errno), b.log);
	assert_int_equal(b.binds, 3);
	assert_int_equal(b.created, 2);
	assert_string_equal(b.can_irq, "5");
	assert_string_equal(b.can_bitrate, "500000");
	assert_int_equal(rtioreq_profile_run_pollers(run), 1);
	assert_non_null(rtioreq_profile_run_vm(run, 7));
	assert_null(rtioreq_profile_run_vm(run, 8));
	pl = rtioreq_profile_run_poller(run, 0);
	assert_non_null(pl);
	assert_null(rtioreq_profile_run_poller(run, 99));
	tid = rtioreq_poller_tid(pl);
	for (int i = 0; !tid && i < 1000; i++, h_sleep_ms(1))
		tid = rtioreq_poller_tid(pl);
	assert_true(tid > 0);
	assert_int_equal(sched_getaffinity(tid, sizeof(set), &set), 0);
	assert_int_equal(CPU_COUNT(&set), 1);
	assert_true(CPU_ISSET(fx->poll_cpu, &set));
	if (rtioreq_profile_run_rt(run)) {
		assert_int_equal(sched_getscheduler(tid), SCHED_FIFO);
		assert_int_equal(sched_getparam(tid, &sp), 0);
		assert_int_equal(sp.sched_priority, 10);
		/* keep: reported, the (stand-in) setting untouched */
		assert_non_null(strstr(b.log, "rt_throttling: keep"));
		assert_int_equal(read_runtime(fx), 950000);
	} else {
		assert_int_equal(sched_getscheduler(tid), SCHED_OTHER);
		assert_non_null(strstr(b.log, "WITHOUT the profile's real-time settings"));
	}
	/* requests: both devices of client "can" and the watchdog, on both vCPUs */
	assert_int_equal(h_io(&h, 0, RTIOREQ_TYPE_MMIO, RTIOREQ_DIR_READ, 0xfe000010, 4, 0),
			 0xca0 + 0x010);
	assert_int_equal(h_io(&h, 1, RTIOREQ_TYPE_MMIO, RTIOREQ_DIR_READ, 0xfe001020, 4, 0),
			 0xca0 + 0x020);
	assert_int_equal(h_io(&h, 1, RTIOREQ_TYPE_PORTIO, RTIOREQ_DIR_READ, 0x443, 1, 0), 0x5a);
	{
		struct rtioreq_vm_stats st;

		rtioreq_vm_stats(rtioreq_profile_run_vm(run, 7), &st);
		assert_int_equal(st.polled, 3); /* inline on the poller, no fallback */
		assert_int_equal(st.fallback, 0);
	}
	stop(run);
	rtioreq_shm_close(&h.shm);
	rtioreq_profile_free(p);
}

/* A throttled RT poller: refused without rt_throttling; off: -1, then restored. */
static void test_apply_throttling(void **state)
{
	struct fixture *fx = *state;
	struct h_vm h = { 0 };
	struct bind_ctx b = { .h = &h };
	struct rtioreq_profile *p;
	struct rtioreq_profile_run *run;
	char path[160];

	if (!rt_ok())
		skip(); /* no RT policy: nothing to throttle (test_apply_serves covers it) */
	assert_int_equal(rtioreq_shm_create(&h.shm, NULL, 2), 0);
	make_profile(fx, "", "none");
	p = load(fx);
	errno = 0;
	assert_null(apply(fx, p, &b));
	assert_int_equal(errno, EPERM);
	if (!strstr(b.log, "stops the real-time poller rtio-poll0") ||
	    !strstr(b.log, "for 50 ms of every 1000 ms"))
		fail_msg("log: %s", b.log);
	assert_int_equal(read_runtime(fx), 950000);
	assert_int_equal(b.binds, 0); /* refused before anything was made */
	rtioreq_profile_free(p);

	make_profile(fx, "rt_throttling: off", "none");
	p = load(fx);
	b.loglen = 0;
	run = apply(fx, p, &b);
	if (!run)
		fail_msg("apply: %s\n%s", strerror(errno), b.log);
	assert_int_equal(read_runtime(fx), -1);
	stop(run);
	assert_int_equal(read_runtime(fx), 950000);

	/* cleanup (the signal path) restores at once; a later stop does not write again */
	run = apply(fx, p, &b);
	assert_non_null(run);
	assert_int_equal(read_runtime(fx), -1);
	assert_int_equal(rtioreq_profile_cleanup(), 0);
	assert_int_equal(read_runtime(fx), 950000);
	snprintf(path, sizeof(path), "%s/sched_rt_runtime_us", fx->dir);
	write_file(path, "123\n");
	stop(run);
	assert_int_equal(read_runtime(fx), 123);
	rtioreq_shm_close(&h.shm);
	rtioreq_profile_free(p);
}

/* isolation: cpuset: the poller in its own cpuset while running; none after stop/cleanup. */
static void test_apply_cpuset(void **state)
{
	struct fixture *fx = *state;
	struct h_vm h = { 0 };
	struct bind_ctx b = { .h = &h };
	struct rtioreq_profile *p;
	struct rtioreq_profile_run *run;
	char cs[256], dir[300];
	pid_t tid;

	if (!rt_ok() || !cgroup1_cpuset())
		skip();
	make_profile(fx, "rt_throttling: keep", "cpuset");
	p = load(fx);
	for (int round = 0; round < 2; round++) {
		assert_int_equal(rtioreq_shm_create(&h.shm, NULL, 2), 0);
		run = apply(fx, p, &b);
		if (!run)
			fail_msg("apply: %s\n%s", strerror(errno), b.log);
		tid = rtioreq_poller_tid(rtioreq_profile_run_poller(run, 0));
		cpuset_of(tid, cs, sizeof(cs));
		snprintf(dir, sizeof(dir), "/sys/fs/cgroup/cpuset%s", cs);
		if (strncmp(cs, "/rtioreq-", 9) || access(dir, F_OK))
			fail_msg("poller tid %d in cpuset '%s'\n%s", (int)tid, cs, b.log);
		assert_int_equal(h_io(&h, 0, RTIOREQ_TYPE_PORTIO, RTIOREQ_DIR_READ, 0x443, 1, 0),
				 0x5a);
		if (round)
			assert_int_equal(rtioreq_profile_cleanup(), 0); /* signal path first */
		stop(run);
		assert_int_equal(access(dir, F_OK), -1);
		rtioreq_shm_close(&h.shm);
	}
	rtioreq_profile_free(p);
}

/*
 * Opt-in handlers: a process that dies of SIGHUP (or SIGQUIT) while a profile with a
 * cpuset and rt_throttling: off runs leaves neither behind, and dies of that signal.
 */
static void test_apply_signals(void **state)
{
	struct fixture *fx = *state;
	static const int sigs[] = { SIGHUP, SIGQUIT, SIGINT, SIGTERM };

	if (!rt_ok())
		skip();
	make_profile(fx, "rt_throttling: off", cgroup1_cpuset() ? "cpuset" : "none");
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		int pipefd[2], st;
		char cs[256] = "", dir[300];
		pid_t pid;

		assert_int_equal(pipe(pipefd), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			struct h_vm h = { 0 };
			struct bind_ctx b = { .h = &h };
			struct rtioreq_profile *p = load(fx);
			struct rtioreq_profile_run *run;

			close(pipefd[0]);
			if (rtioreq_profile_cleanup_on_signals() ||
			    rtioreq_shm_create(&h.shm, NULL, 2))
				_exit(3);
			run = apply(fx, p, &b);
			if (!run)
				_exit(4);
			cpuset_of(rtioreq_poller_tid(rtioreq_profile_run_poller(run, 0)), cs,
				  sizeof(cs));
			if (write(pipefd[1], cs, sizeof(cs)) != (ssize_t)sizeof(cs))
				_exit(5);
			for (;;)
				pause();
		}
		close(pipefd[1]);
		assert_int_equal(read(pipefd[0], cs, sizeof(cs)), (ssize_t)sizeof(cs));
		close(pipefd[0]);
		assert_int_equal(read_runtime(fx), -1);
		snprintf(dir, sizeof(dir), "/sys/fs/cgroup/cpuset%s", cs);
		if (cgroup1_cpuset())
			assert_int_equal(access(dir, F_OK), 0);
		assert_int_equal(kill(pid, sigs[i]), 0);
		assert_int_equal(waitpid(pid, &st, 0), pid);
		if (!WIFSIGNALED(st) || WTERMSIG(st) != sigs[i])
			fail_msg("signal %d: child status 0x%x", sigs[i], st);
		assert_int_equal(read_runtime(fx), 950000);
		if (strcmp(cs, "/"))
			assert_int_equal(access(dir, F_OK), -1);
	}
}

/* Bad attrs and a failing callback: NULL with errno, nothing left applied. */
static void test_apply_errors(void **state)
{
	struct fixture *fx = *state;
	struct rtioreq_profile *p;

	make_profile(fx, "rt_throttling: off", "none");
	p = load(fx);
	errno = 0;
	assert_null(rtioreq_profile_apply(p, NULL));
	assert_int_equal(errno, EINVAL);
	assert_null(rtioreq_profile_apply(p, &(struct rtioreq_profile_apply_attr){
		.size = sizeof(struct rtioreq_profile_apply_attr), .bind = bind_cb }));
	assert_int_equal(errno, EINVAL);
	assert_null(rtioreq_profile_apply(p, &(struct rtioreq_profile_apply_attr){
		.size = 1 + sizeof(struct rtioreq_profile_apply_attr), .vm = vm_cb,
		.bind = bind_cb }));
	assert_int_equal(errno, EINVAL);
	stop(NULL);
	assert_int_equal(read_runtime(fx), 950000);
	rtioreq_profile_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_apply_serves, test_teardown),
		cmocka_unit_test_teardown(test_apply_throttling, test_teardown),
		cmocka_unit_test_teardown(test_apply_cpuset, test_teardown),
		cmocka_unit_test_teardown(test_apply_signals, test_teardown),
		cmocka_unit_test_teardown(test_apply_errors, test_teardown),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
