// SPDX-License-Identifier: MIT
/*
 * Real-time setup (engine/rt/rt.c): cpuset backend detection against fake and real roots,
 * the cgroup v1 cpuset path on this machine with live threads, /dev/cpu_dma_latency,
 * memory locking, prefaulting and the real-time permission check (also as nobody).
 * Root-only parts skip with a message. Every cpuset or cgroup created here is named
 * rtioreq-test-<pid>* and removed in the teardown, also when an assertion fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "rtioreq/rt/rt.h"

#define CG1 "/sys/fs/cgroup/cpuset"
#define CPU_CG "/sys/fs/cgroup/cpu"
#define NOBODY 65534

static char tmpd[128];

/* ------------------------------------------------------------------------- */
/* Helpers */

static void put_file(const char *dir, const char *name, const char *text)
{
	char p[PATH_MAX];
	FILE *f;
	int n = snprintf(p, sizeof(p), "%s/%s", dir, name);

	assert_true(n > 0 && (size_t)n < sizeof(p)); /* a truncated path would write elsewhere */
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Read @path (first line, no newline) into @buf; return 0 or -errno. */
static int get_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");

	if (!f)
		return -errno;
	if (!fgets(buf, (int)len, f))
		buf[0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	fclose(f);
	return 0;
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static void mk_subdir(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", tmpd, name);
	assert_int_equal(mkdir(out, 0755), 0);
}

#define assert_why_has(why, s)                                                        \
	do {                                                                           \
		if (!strstr((why), (s)))                                               \
			fail_msg("why \"%s\" lacks \"%s\"", (why), (s));               \
	} while (0)

/* Parse a kernel CPU list into @set. */
static void parse_cpus(const char *list, cpu_set_t *set)
{
	const char *s = list;

	CPU_ZERO(set);
	while (*s) {
		char *end;
		long a = strtol(s, &end, 10), b = a;

		assert_true(end != s);
		s = end;
		if (*s == '-') {
			b = strtol(s + 1, &end, 10);
			s = end;
		}
		for (long c = a; c <= b; c++)
			CPU_SET((int)c, set);
		if (*s == ',')
			s++;
	}
}

static int last_cpu(const cpu_set_t *set)
{
	int last = -1;

	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, set))
			last = c;
	return last;
}

static pid_t gettid_(void)
{
	return (pid_t)syscall(SYS_gettid);
}

#define CHILD_SKIP 77

/* Wait for a child that reports failures itself; assert it exited 0 (or CHILD_SKIP). */
static int wait_child(pid_t pid)
{
	int st;

	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (WIFEXITED(st) && WEXITSTATUS(st) == CHILD_SKIP)
		return CHILD_SKIP;
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fail_msg("child failed (status 0x%x; see its messages above)", st);
	return 0;
}

#define CHILD_CHECK(cond, ...)                                                         \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "child: %s:%d: ", __FILE__, __LINE__);         \
			fprintf(stderr, __VA_ARGS__);                                  \
			fputc('\n', stderr);                                           \
			_exit(1);                                                      \
		}                                                                      \
	} while (0)

static bool cg1_usable(void)
{
	if (geteuid() != 0) {
		print_message("skipped: needs root (mounts or creates cpusets of " CG1 ")\n");
		return false;
	}
	if (!exists(CG1 "/cpuset.cpus")) {
		print_message("skipped: " CG1 "/cpuset.cpus missing (no cgroup v1 cpuset here)\n");
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------------- */
/* 1. Backend detection */

static int tmp_setup(void **state)
{
	snprintf(tmpd, sizeof(tmpd), "/tmp/rtioreq-test-%d-XXXXXX", (int)getpid());
	return mkdtemp(tmpd) ? 0 : -1;
}

static int tmp_teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	if (tmpd[0] && strstr(tmpd, "/tmp/rtioreq-test-") == tmpd) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpd);
		if (system(cmd))
			return -1;
	}
	tmpd[0] = '\0';
	return 0;
}

static void test_detect_absent(void **state)
{
	char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX], why[512];
	struct rtioreq_rt_roots roots = { .classic = a, .cgroup1 = b, .cgroup2 = c };
	struct rtioreq_rt_cpuset cs;

	snprintf(a, sizeof(a), "%s/dev-cpuset", tmpd);
	snprintf(b, sizeof(b), "%s/cgroup-cpuset", tmpd);
	snprintf(c, sizeof(c), "%s/cgroup", tmpd);
	assert_int_equal(rtioreq_rt_cpuset_backend(&roots, why, sizeof(why)),
			 RTIOREQ_RT_CPUSET_NONE);
	assert_why_has(why, "no usable cpuset hierarchy: ");
	for (int i = 0; i < 3; i++) {
		char s[PATH_MAX + 8];

		snprintf(s, sizeof(s), "%s absent", (const char *[]){ a, b, c }[i]);
		assert_why_has(why, s);
	}
	/* one sentence, no final period: callers embed it */
	assert_null(strchr(why, '\n'));
	assert_true(why[strlen(why) - 1] != '.');
	/* create says the same and returns -ENODEV; a NULL or short why is fine */
	assert_int_equal(rtioreq_rt_cpuset_create(&cs, &roots, "x", 0, why, sizeof(why)), -ENODEV);
	assert_why_has(why, "absent");
	assert_string_equal(cs.path, "");
	assert_int_equal(rtioreq_rt_cpuset_backend(&roots, NULL, 0), RTIOREQ_RT_CPUSET_NONE);
	assert_int_equal(rtioreq_rt_cpuset_backend(&roots, why, 8), RTIOREQ_RT_CPUSET_NONE);
	assert_int_equal(strlen(why), 7);
	assert_int_equal(rtioreq_rt_cpuset_remove(&cs), 0);
}

/* Files named like the classic cpuset fs, on an ordinary filesystem: not a cpuset. */
static void test_detect_fake_classic(void **state)
{
	char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX], why[512], s[PATH_MAX + 64];
	struct rtioreq_rt_roots roots = { .classic = a, .cgroup1 = b, .cgroup2 = c };

	mk_subdir(a, sizeof(a), "dev-cpuset");
	put_file(a, "cpus", "0-1\n");
	put_file(a, "mems", "0\n");
	put_file(a, "tasks", "");
	put_file(a, "cpu_exclusive", "1\n");
	put_file(a, "notify_on_release", "0\n");
	snprintf(b, sizeof(b), "%s/none1", tmpd);
	snprintf(c, sizeof(c), "%s/none2", tmpd);
	assert_int_equal(rtioreq_rt_cpuset_backend(&roots, why, sizeof(why)),
			 RTIOREQ_RT_CPUSET_NONE);
	snprintf(s, sizeof(s), "%s is not a cpuset mount (", a);
	assert_why_has(why, s);
	print_message("why: %s\n", why);
}

/* The cgroup1 file layout on an ordinary filesystem: not a cgroup either. */
static void test_detect_fake_cgroup1(void **state)
{
	char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX], why[512], s[PATH_MAX + 64];
	struct rtioreq_rt_roots roots = { .classic = a, .cgroup1 = b, .cgroup2 = c };

	snprintf(a, sizeof(a), "%s/none0", tmpd);
	mk_subdir(b, sizeof(b), "cgroup-cpuset");
	put_file(b, "cpuset.cpus", "0-1\n");
	put_file(b, "cpuset.mems", "0\n");
	put_file(b, "tasks", "");
	snprintf(c, sizeof(c), "%s/none2", tmpd);
	assert_int_equal(rtioreq_rt_cpuset_backend(&roots, why, sizeof(why)),
			 RTIOREQ_RT_CPUSET_NONE);
	snprintf(s, sizeof(s), "%s is not a cgroup v1 mount (", b);
	assert_why_has(why, s);
}

static void test_detect_fake_cgroup2(void **state)
{
	char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX], why[512], s[PATH_MAX + 64];
	struct rtioreq_rt_roots roots = { .classic = a, .cgroup1 = b, .cgroup2 = c };

	snprintf(a, sizeof(a), "%s/none0", tmpd);
	snprintf(b, sizeof(b), "%s/none1", tmpd);
	mk_subdir(c, sizeof(c), "cgroup");
	put_file(c, "cgroup.controllers", "cpu io memory pids\n");
	assert_int_equal(rtioreq_rt_cpuset_backend(&roots, why, sizeof(why)),
			 RTIOREQ_RT_CPUSET_NONE);
	snprintf(s, sizeof(s), "%s is cgroup v2 without the cpuset controller", c);
	assert_why_has(why, s);

	put_file(c, "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
	assert_int_equal(rtioreq_rt_cpuset_backend(&roots, why, sizeof(why)),
			 RTIOREQ_RT_CPUSET_NONE);
	snprintf(s, sizeof(s), "%s is cgroup v2, where placing single threads", c);
	assert_why_has(why, s);
	assert_why_has(why, "threaded subtree");
	print_message("why: %s\n", why);

	/* "cpusetx" is not "cpuset" */
	put_file(c, "cgroup.controllers", "cpusetx cpu\n");
	rtioreq_rt_cpuset_backend(&roots, why, sizeof(why));
	assert_why_has(why, "without the cpuset controller");
}

/* The real prefixed hierarchy: CGROUP1, and refused as a libcpuset root. */
static void test_detect_real(void **state)
{
	char a[PATH_MAX], c[PATH_MAX], why[512];
	struct rtioreq_rt_roots roots = { .classic = a, .cgroup1 = NULL, .cgroup2 = c };

	if (!exists(CG1 "/cpuset.cpus")) {
		print_message("skipped: " CG1 "/cpuset.cpus missing\n");
		skip();
	}
	snprintf(a, sizeof(a), "%s/none0", tmpd);
	snprintf(c, sizeof(c), "%s/none2", tmpd);
	strcpy(why, "stale");
	assert_int_equal(rtioreq_rt_cpuset_backend(&roots, why, sizeof(why)),
			 RTIOREQ_RT_CPUSET_CGROUP1);
	assert_string_equal(why, "");
	assert_string_equal(rtioreq_rt_backend_name(RTIOREQ_RT_CPUSET_CGROUP1), "cgroup1");
	assert_string_equal(rtioreq_rt_backend_name(RTIOREQ_RT_CPUSET_LIBCPUSET), "libcpuset");
	assert_string_equal(rtioreq_rt_backend_name(RTIOREQ_RT_CPUSET_NONE), "none");

	/* libcpuset would accept it (it only stats <mnt>/tasks) and then fail writing "cpus" */
	roots.classic = CG1;
	roots.cgroup1 = c;
	assert_int_equal(rtioreq_rt_cpuset_backend(&roots, why, sizeof(why)),
			 RTIOREQ_RT_CPUSET_NONE);
	assert_why_has(why, CG1 " has \"cpuset.\"-prefixed files, which libcpuset cannot use");

	/* another v1 controller's hierarchy is not a cpuset one */
	if (exists(CPU_CG "/tasks")) {
		roots.classic = a;
		roots.cgroup1 = CPU_CG;
		rtioreq_rt_cpuset_backend(&roots, why, sizeof(why));
		assert_why_has(why, CPU_CG " is a cgroup v1 mount without the cpuset controller");
	}

	/* defaults on this box: /dev/cpuset absent, so the prefixed hierarchy */
	if (!exists("/dev/cpuset"))
		assert_int_equal(rtioreq_rt_cpuset_backend(NULL, why, sizeof(why)),
				 RTIOREQ_RT_CPUSET_CGROUP1);
}

/*
 * "mount -t cpuset" (what libcpuset's documentation asks for) in a private mount
 * namespace while the cpuset controller is already bound to the prefixed hierarchy:
 * the kernel hands out that prefixed hierarchy, so it must not count as classic.
 */
static void test_detect_mount_cpuset_type(void **state)
{
	char mnt[PATH_MAX];
	pid_t pid;

	if (!cg1_usable())
		skip();
	mk_subdir(mnt, sizeof(mnt), "cpuset-mnt");
	pid = fork();
	if (pid == 0) {
		struct rtioreq_rt_roots roots = { .classic = mnt, .cgroup1 = "/nonexistent-1", .cgroup2 = "/nonexistent-2" };
		char why[512], p[PATH_MAX + 16];

		CHILD_CHECK(unshare(CLONE_NEWNS) == 0, "unshare: %s", strerror(errno));
		CHILD_CHECK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0, "private: %s",
			    strerror(errno));
		if (mount("cpuset", mnt, "cpuset", 0, NULL)) {
			fprintf(stderr, "child: mount -t cpuset: %s (nothing to check)\n",
				strerror(errno));
			_exit(0);
		}
		snprintf(p, sizeof(p), "%s/cpus", mnt);
		if (exists(p)) {
			fprintf(stderr, "child: mount -t cpuset gave a noprefix hierarchy here\n");
			_exit(0);
		}
		CHILD_CHECK(rtioreq_rt_cpuset_backend(&roots, why, sizeof(why)) ==
				    RTIOREQ_RT_CPUSET_NONE,
			    "backend not NONE");
		CHILD_CHECK(strstr(why, "\"cpuset.\"-prefixed files"), "why: %s", why);
		_exit(0);
	}
	wait_child(pid);
}

/*
 * The libcpuset path cannot meet a kernel here: the cpuset controller is bound to the
 * prefixed hierarchy, and noprefix is refused for any other one. So it runs against an
 * emulated /dev/cpuset: a tmpfs in a private mount namespace, with statfs() reporting
 * the cgroup magic there and mkdir() creating the control files as cgroupfs does (both
 * interposed, active only in that child). This checks what rtioreq asks of libcpuset
 * (paths, masks, the files written, tids moved), not the kernel's side.
 */
static bool emulate_classic;

int statfs(const char *path, struct statfs *sf)
{
	long r = syscall(SYS_statfs, path, sf);

	if (r == 0 && emulate_classic && !strncmp(path, "/dev/cpuset", 11))
		sf->f_type = 0x27e0eb; /* CGROUP_SUPER_MAGIC */
	return (int)r;
}

int mkdir(const char *path, mode_t mode)
{
	static const char *const files[][2] = {
		{ "cpus", "\n" },	   { "mems", "\n" },
		{ "tasks", "" },	   { "cpu_exclusive", "0\n" },
		{ "mem_exclusive", "0\n" }, { "mem_hardwall", "0\n" },
		{ "notify_on_release", "0\n" }, { "memory_migrate", "0\n" },
		{ "sched_load_balance", "1\n" },
	};
	long r = syscall(SYS_mkdir, path, mode);

	if (r == 0 && emulate_classic && !strncmp(path, "/dev/cpuset/", 12))
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
			put_file(path, files[i][0], files[i][1]);
	return (int)r;
}

static void test_libcpuset_emulated(void **state)
{
	pid_t pid;

	if (geteuid() != 0) {
		print_message("skipped: needs root for a private mount namespace\n");
		skip();
	}
	pid = fork();
	if (pid == 0) {
		struct rtioreq_rt_roots roots = { .classic = NULL, .cgroup1 = "/nonexistent-1", .cgroup2 = "/nonexistent-2" };
		struct rtioreq_rt_cpuset cs;
		char why[512], buf[64], tid[16];
		int r;

		CHILD_CHECK(unshare(CLONE_NEWNS) == 0, "unshare: %s", strerror(errno));
		CHILD_CHECK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0, "private");
		CHILD_CHECK(mount("tmpfs", "/dev", "tmpfs", 0, NULL) == 0, "tmpfs on /dev");
		emulate_classic = true;
		CHILD_CHECK(syscall(SYS_mkdir, "/dev/cpuset", 0755) == 0, "mkdir /dev/cpuset");
		put_file("/dev/cpuset", "cpus", "0-1\n");
		put_file("/dev/cpuset", "mems", "0\n");
		put_file("/dev/cpuset", "tasks", "");
		put_file("/dev/cpuset", "cpu_exclusive", "1\n");
		put_file("/dev/cpuset", "mem_exclusive", "1\n");
		put_file("/dev/cpuset", "notify_on_release", "0\n");
		CHILD_CHECK(rtioreq_rt_cpuset_backend(&roots, why, sizeof(why)) ==
				    RTIOREQ_RT_CPUSET_LIBCPUSET,
			    "backend: %s", why);
		r = rtioreq_rt_cpuset_create(&cs, &roots, "rt1", 1, why, sizeof(why));
		CHILD_CHECK(r == 0, "create %d: %s", r, why);
		CHILD_CHECK(cs.backend == RTIOREQ_RT_CPUSET_LIBCPUSET, "backend");
		CHILD_CHECK(!strcmp(cs.path, "/dev/cpuset/rt1") && !strcmp(cs.rel, "/rt1") &&
				    !strcmp(cs.parent, "/dev/cpuset"),
			    "paths %s %s %s", cs.path, cs.rel, cs.parent);
		CHILD_CHECK(!get_line("/dev/cpuset/rt1/cpus", buf, sizeof(buf)) && !strcmp(buf, "1"),
			    "cpus \"%s\"", buf);
		CHILD_CHECK(!get_line("/dev/cpuset/rt1/mems", buf, sizeof(buf)) && !strcmp(buf, "0"),
			    "mems \"%s\"", buf);
		CHILD_CHECK(cs.exclusive && !get_line("/dev/cpuset/rt1/cpu_exclusive", buf, 64) &&
				    !strcmp(buf, "1"),
			    "cpu_exclusive");
		CHILD_CHECK(!get_line("/dev/cpuset/rt1/sched_load_balance", buf, 64) &&
				    !strcmp(buf, "0"),
			    "sched_load_balance");
		r = rtioreq_rt_cpuset_create(&cs, &roots, "rt1", 1, why, sizeof(why));
		CHILD_CHECK(r == -EEXIST && strstr(why, "already exists"), "twice: %d %s", r, why);
		r = rtioreq_rt_cpuset_create(&cs, &roots, "rt2", 4095, why, sizeof(why));
		CHILD_CHECK(r == -EINVAL && strstr(why, "CPU 4095 is not in /dev/cpuset/cpus (0-1)"),
			    "cpu 4095: %d %s", r, why);
		CHILD_CHECK(!exists("/dev/cpuset/rt2"), "rt2 left behind");

		/* attach the calling thread (tid 0), then remove: the tid goes back to the root */
		r = rtioreq_rt_cpuset_create(&cs, &roots, "rt3", 0, why, sizeof(why));
		CHILD_CHECK(r == 0, "create rt3 %d: %s", r, why);
		CHILD_CHECK(rtioreq_rt_cpuset_attach(&cs, 0) == 0, "attach");
		snprintf(tid, sizeof(tid), "%d", (int)gettid_());
		CHILD_CHECK(!get_line("/dev/cpuset/rt3/tasks", buf, sizeof(buf)) && !strcmp(buf, tid),
			    "tasks \"%s\"", buf);
		r = rtioreq_rt_cpuset_remove(&cs);
		/* tmpfs keeps the files, so rmdir says ENOTEMPTY; cgroupfs would not */
		CHILD_CHECK(r == -ENOTEMPTY, "remove %d", r);
		CHILD_CHECK(!get_line("/dev/cpuset/tasks", buf, sizeof(buf)) && !strcmp(buf, tid),
			    "root tasks \"%s\"", buf);
		_exit(0);
	}
	wait_child(pid);
}

/* ------------------------------------------------------------------------- */
/* 2. The cgroup v1 cpuset path, with live threads */

static struct rtioreq_rt_cpuset cs_main, cs_dup, cs_bad;
static char name_main[64], name_bad[64];
static atomic_int stop_threads;
static _Atomic pid_t tid_a, tid_b, tid_c;
static pthread_t thr_a, thr_b, thr_c;
static bool thr_a_on, thr_b_on;

static void nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void *sleeper(void *arg)
{
	_Atomic pid_t *tid = arg;

	atomic_store_explicit(tid, gettid_(), memory_order_release);
	while (!atomic_load_explicit(&stop_threads, memory_order_acquire))
		nap_ms(1);
	return NULL;
}

/* Thread B attaches itself (tid 0), then starts C, which starts inside the cpuset. */
static void *self_attacher(void *arg)
{
	bool ok = rtioreq_rt_cpuset_attach(&cs_main, 0) == 0;

	atomic_store_explicit(&tid_b, ok ? gettid_() : -1, memory_order_release);
	if (ok && pthread_create(&thr_c, NULL, sleeper, &tid_c) == 0) {
		while (!atomic_load_explicit(&stop_threads, memory_order_acquire))
			nap_ms(1);
		pthread_join(thr_c, NULL);
	}
	return NULL;
}

static pid_t wait_tid(_Atomic pid_t *tid)
{
	pid_t t;

	for (int i = 0; i < 5000; i++) {
		t = atomic_load_explicit(tid, memory_order_acquire);
		if (t)
			return t;
		nap_ms(1);
	}
	fail_msg("thread did not start");
	return -1;
}

static void task_cpuset(pid_t tid, char *buf, size_t len)
{
	char p[64];

	snprintf(p, sizeof(p), "/proc/self/task/%d/cpuset", (int)tid);
	assert_int_equal(get_line(p, buf, len), 0);
}

static void remove_named(const char *name)
{
	struct rtioreq_rt_cpuset cs = { .backend = RTIOREQ_RT_CPUSET_CGROUP1 };

	if (!name[0])
		return;
	snprintf(cs.path, sizeof(cs.path), CG1 "/%s", name);
	snprintf(cs.parent, sizeof(cs.parent), CG1);
	if (exists(cs.path) && rtioreq_rt_cpuset_remove(&cs))
		fprintf(stderr, "teardown: could not remove %s\n", cs.path);
}

static int cg1_setup(void **state)
{
	snprintf(name_main, sizeof(name_main), "rtioreq-test-%d", (int)getpid());
	snprintf(name_bad, sizeof(name_bad), "rtioreq-test-%d-bad", (int)getpid());
	atomic_store(&stop_threads, 0);
	atomic_store(&tid_a, 0);
	atomic_store(&tid_b, 0);
	atomic_store(&tid_c, 0);
	return 0;
}

static int cg1_teardown(void **state)
{
	atomic_store_explicit(&stop_threads, 1, memory_order_release);
	if (thr_a_on)
		pthread_join(thr_a, NULL);
	if (thr_b_on)
		pthread_join(thr_b, NULL);
	thr_a_on = thr_b_on = false;
	rtioreq_rt_cpuset_remove(&cs_main);
	rtioreq_rt_cpuset_remove(&cs_dup);
	rtioreq_rt_cpuset_remove(&cs_bad);
	/* whatever the test got to, nothing named after this process stays */
	remove_named(name_main);
	remove_named(name_bad);
	return 0;
}

static void assert_affinity(pid_t tid, const cpu_set_t *want)
{
	cpu_set_t got;

	assert_int_equal(sched_getaffinity(tid, sizeof(got), &got), 0);
	if (!CPU_EQUAL(&got, want))
		fail_msg("thread %d: affinity has %d CPUs (last %d), expected %d (last %d)",
			 (int)tid, CPU_COUNT(&got), last_cpu(&got), CPU_COUNT(want),
			 last_cpu(want));
}

static void test_cgroup1_lifecycle(void **state)
{
	char root_cpus[256], root_mems[256], why[512], buf[512], p[PATH_MAX], want_cs[80];
	cpu_set_t root_set, one;
	int cpu;

	if (!cg1_usable())
		skip();
	assert_int_equal(get_line(CG1 "/cpuset.cpus", root_cpus, sizeof(root_cpus)), 0);
	assert_int_equal(get_line(CG1 "/cpuset.mems", root_mems, sizeof(root_mems)), 0);
	parse_cpus(root_cpus, &root_set);
	cpu = last_cpu(&root_set);
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	remove_named(name_main); /* a leftover of a crashed run with the same pid */

	assert_int_equal(rtioreq_rt_cpuset_create(&cs_main, NULL, name_main, cpu, why, sizeof(why)),
			 0);
	assert_string_equal(why, "");
	assert_int_equal(cs_main.backend, RTIOREQ_RT_CPUSET_CGROUP1);
	snprintf(p, sizeof(p), CG1 "/%s", name_main);
	assert_string_equal(cs_main.path, p);
	assert_string_equal(cs_main.parent, CG1);
	snprintf(buf, sizeof(buf), "/%s", name_main);
	assert_string_equal(cs_main.rel, buf);
	snprintf(p, sizeof(p), "%s/cpuset.cpus", cs_main.path);
	assert_int_equal(get_line(p, buf, sizeof(buf)), 0);
	assert_int_equal(atoi(buf), cpu);
	snprintf(p, sizeof(p), "%s/cpuset.mems", cs_main.path);
	assert_int_equal(get_line(p, buf, sizeof(buf)), 0);
	assert_string_equal(buf, root_mems);
	snprintf(p, sizeof(p), "%s/cpuset.cpu_exclusive", cs_main.path);
	assert_int_equal(get_line(p, buf, sizeof(buf)), 0);
	assert_string_equal(buf, cs_main.exclusive ? "1" : "0");
	snprintf(p, sizeof(p), "%s/cpuset.sched_load_balance", cs_main.path);
	assert_int_equal(get_line(p, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "0");
	print_message("created %s on CPU %d, exclusive %d\n", cs_main.path, cpu,
		      cs_main.exclusive);

	/* errors: twice, a CPU the root lacks, bad names; nothing left behind */
	assert_int_equal(rtioreq_rt_cpuset_create(&cs_dup, NULL, name_main, cpu, why, sizeof(why)),
			 -EEXIST);
	assert_why_has(why, "already exists");
	assert_string_equal(cs_dup.path, "");
	assert_true(exists(cs_main.path));
	assert_int_equal(rtioreq_rt_cpuset_create(&cs_bad, NULL, name_bad, 4095, why, sizeof(why)),
			 -EINVAL);
	snprintf(buf, sizeof(buf), "CPU 4095 is not in " CG1 "/cpuset.cpus (%s)", root_cpus);
	assert_why_has(why, buf);
	snprintf(p, sizeof(p), CG1 "/%s", name_bad);
	assert_false(exists(p));
	assert_int_equal(rtioreq_rt_cpuset_create(&cs_bad, NULL, name_bad, -1, why, sizeof(why)),
			 -EINVAL);
	assert_false(exists(p));
	assert_int_equal(rtioreq_rt_cpuset_create(&cs_bad, NULL, "a/b", cpu, why, sizeof(why)),
			 -EINVAL);
	assert_why_has(why, "one path component");
	assert_int_equal(rtioreq_rt_cpuset_create(&cs_bad, NULL, "..", cpu, NULL, 0), -EINVAL);
	assert_int_equal(rtioreq_rt_cpuset_attach(&cs_bad, gettid_()), -EINVAL);
	assert_int_equal(rtioreq_rt_cpuset_attach(&cs_main, 0x3fffffff), -ESRCH);

	/* A: attached by tid from this thread */
	assert_int_equal(pthread_create(&thr_a, NULL, sleeper, &tid_a), 0);
	thr_a_on = true;
	wait_tid(&tid_a);
	assert_int_equal(rtioreq_rt_cpuset_attach(&cs_main, tid_a), 0);
	snprintf(want_cs, sizeof(want_cs), "/%s", name_main);
	task_cpuset(tid_a, buf, sizeof(buf));
	assert_string_equal(buf, want_cs);
	assert_affinity(tid_a, &one);
	task_cpuset(gettid_(), buf, sizeof(buf));
	assert_string_equal(buf, "/");

	/* B attaches itself, C is born inside */
	assert_int_equal(pthread_create(&thr_b, NULL, self_attacher, NULL), 0);
	thr_b_on = true;
	assert_true(wait_tid(&tid_b) > 0);
	wait_tid(&tid_c);
	task_cpuset(tid_b, buf, sizeof(buf));
	assert_string_equal(buf, want_cs);
	task_cpuset(tid_c, buf, sizeof(buf));
	assert_string_equal(buf, want_cs);
	assert_affinity(tid_c, &one);
	snprintf(p, sizeof(p), "%s/tasks", cs_main.path);
	{
		FILE *f = fopen(p, "r");
		int n = 0, t;

		assert_non_null(f);
		while (fscanf(f, "%d", &t) == 1)
			n++;
		fclose(f);
		assert_int_equal(n, 3);
	}

	/* remove while all three run: gone, tasks back in "/", the root's CPUs again */
	assert_int_equal(rtioreq_rt_cpuset_remove(&cs_main), 0);
	assert_string_equal(cs_main.path, "");
	snprintf(p, sizeof(p), CG1 "/%s", name_main);
	assert_false(exists(p));
	for (int i = 0; i < 3; i++) {
		pid_t t = (pid_t[]){ tid_a, tid_b, tid_c }[i];

		task_cpuset(t, buf, sizeof(buf));
		assert_string_equal(buf, "/");
		assert_affinity(t, &root_set);
		assert_int_equal(kill(getpid(), 0), 0);
	}
	assert_int_equal(rtioreq_rt_cpuset_remove(&cs_main), 0);
	assert_int_equal(rtioreq_rt_cpuset_attach(&cs_main, tid_a), -EINVAL);

	/* the threads still run after all this */
	snprintf(p, sizeof(p), "/proc/self/task/%d", (int)tid_c);
	assert_true(exists(p));
}

/* ------------------------------------------------------------------------- */
/* 3. /dev/cpu_dma_latency */

static int32_t read_qos(int fd)
{
	int32_t v = -1;

	assert_int_equal(pread(fd, &v, sizeof(v), 0), sizeof(v));
	return v;
}

static void test_dma_latency(void **state)
{
	char p[PATH_MAX];
	int fd, rd;

	snprintf(p, sizeof(p), "%s/no-such-device", tmpd);
	assert_int_equal(rtioreq_rt_dma_latency_hold(p), -ENOENT);
	rtioreq_rt_dma_latency_release(-1);

	if (geteuid() != 0 || !exists("/dev/cpu_dma_latency")) {
		print_message("skipped the device part: needs root and /dev/cpu_dma_latency\n");
		return;
	}
	rd = open("/dev/cpu_dma_latency", O_RDONLY);
	assert_true(rd >= 0);
	print_message("cpu_dma_latency before: %d us\n", read_qos(rd));
	fd = rtioreq_rt_dma_latency_hold(NULL);
	assert_true(fd >= 0);
	assert_int_equal(read_qos(rd), 0);
	/* the value is the minimum over holders: a second holder changes nothing */
	{
		int fd2 = rtioreq_rt_dma_latency_hold(NULL);

		assert_true(fd2 >= 0);
		rtioreq_rt_dma_latency_release(fd2);
	}
	assert_int_equal(read_qos(rd), 0);
	rtioreq_rt_dma_latency_release(fd);
	print_message("cpu_dma_latency after release: %d us\n", read_qos(rd));
	close(rd);
}

/* ------------------------------------------------------------------------- */
/* 4. Memory and permission */

static void test_lock_memory(void **state)
{
	int r = rtioreq_rt_lock_memory();

	if (geteuid() == 0)
		assert_int_equal(r, 0);
	else
		assert_true(r == 0 || r == -ENOMEM || r == -EPERM);
	munlockall();
}

static void test_prefault(void **state)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t len = (size_t)pg * 8;
	unsigned char *m, vec[8];

	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(m != MAP_FAILED);
	assert_int_equal(mincore(m, len, vec), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(vec[i] & 1, 0);
	/* from the middle of page 1 to the first byte of page 6 */
	m[(size_t)pg + 7] = 0x5a;
	rtioreq_rt_prefault(m + pg + 7, (size_t)pg * 4 + 1 - 7 + (size_t)pg);
	assert_int_equal(mincore(m, len, vec), 0);
	for (int i = 0; i < 8; i++)
		if ((vec[i] & 1) != (i >= 1 && i <= 6))
			fail_msg("page %d resident %d", i, vec[i] & 1);
	assert_int_equal(m[(size_t)pg + 7], 0x5a);
	for (size_t i = 0; i < len; i++)
		if (m[i] != (i == (size_t)pg + 7 ? 0x5a : 0))
			fail_msg("byte %zu changed to 0x%x", i, m[i]);
	rtioreq_rt_prefault(NULL, 10);
	rtioreq_rt_prefault(m, 0);
	munmap(m, len);
}

static void test_permitted_root(void **state)
{
	char why[256];

	assert_false(rtioreq_rt_permitted(0, why, sizeof(why)));
	assert_why_has(why, "priority 0 is out of range 1..99");
	assert_false(rtioreq_rt_permitted(100, why, sizeof(why)));
	assert_why_has(why, "out of range");
	if (geteuid() != 0) {
		print_message("skipped the root part: not root\n");
		return;
	}
	strcpy(why, "stale");
	assert_true(rtioreq_rt_permitted(80, why, sizeof(why)));
	assert_string_equal(why, "");
	assert_true(rtioreq_rt_permitted(99, NULL, 0));
}

/* As nobody: RLIMIT_RTPRIO decides, and the answer matches what the kernel does. */
static void nobody_child(rlim_t rtprio)
{
	struct rlimit rl = { rtprio, rtprio };
	struct sched_param sp = { .sched_priority = 80 };
	char why[256], s[128];
	int r;

	if (setrlimit(RLIMIT_RTPRIO, &rl) && errno == EPERM)
		_exit(CHILD_SKIP); /* raising the hard limit needs CAP_SYS_RESOURCE */
	CHILD_CHECK(setrlimit(RLIMIT_RTPRIO, &rl) == 0, "setrlimit: %s", strerror(errno));
	CHILD_CHECK(setgroups(0, NULL) == 0, "setgroups: %s", strerror(errno));
	CHILD_CHECK(setgid(NOBODY) == 0 && setuid(NOBODY) == 0, "setuid: %s", strerror(errno));
	if (rtprio < 80) {
		CHILD_CHECK(!rtioreq_rt_permitted(80, why, sizeof(why)), "permitted as nobody");
		snprintf(s, sizeof(s),
			 "SCHED_FIFO/RR priority 80 needs root, CAP_SYS_NICE or RLIMIT_RTPRIO >= 80 "
			 "(now %llu)",
			 (unsigned long long)rtprio);
		CHILD_CHECK(!strcmp(why, s), "why \"%s\"", why);
		r = sched_setscheduler(0, SCHED_FIFO, &sp);
		CHILD_CHECK(r == -1 && errno == EPERM, "kernel allowed SCHED_FIFO 80");
		/* the device is root's only (crw-------) */
		if (exists("/dev/cpu_dma_latency")) {
			r = rtioreq_rt_dma_latency_hold(NULL);
			CHILD_CHECK(r == -EACCES, "dma latency hold as nobody: %d", r);
		}
		r = rtioreq_rt_lock_memory();
		CHILD_CHECK(r == 0 || r == -ENOMEM || r == -EPERM, "lock_memory %d", r);
	} else {
		CHILD_CHECK(rtioreq_rt_permitted(80, why, sizeof(why)), "refused: %s", why);
		CHILD_CHECK(!rtioreq_rt_permitted((int)rtprio + 1, why, sizeof(why)), "permitted");
		snprintf(s, sizeof(s), "(now %llu)", (unsigned long long)rtprio);
		CHILD_CHECK(strstr(why, s), "why \"%s\"", why);
		r = sched_setscheduler(0, SCHED_FIFO, &sp);
		CHILD_CHECK(r == 0, "kernel refused SCHED_FIFO 80: %s", strerror(errno));
	}
	_exit(0);
}

static void test_permitted_nobody(void **state)
{
	pid_t pid;

	if (geteuid() != 0) {
		print_message("skipped: needs root to become nobody\n");
		skip();
	}
	pid = fork();
	if (pid == 0)
		nobody_child(0);
	assert_int_equal(wait_child(pid), 0);
	pid = fork();
	if (pid == 0)
		nobody_child(90);
	if (wait_child(pid) == CHILD_SKIP)
		print_message("not checked: RLIMIT_RTPRIO 90 as nobody (cannot raise the hard "
			      "limit without CAP_SYS_RESOURCE)\n");
}

/* Root in a cpu cgroup whose cpu.rt_runtime_us is 0 (RT_GROUP_SCHED) is refused too. */
static char rt_grp[256];

static int rt_grp_teardown(void **state)
{
	for (int i = 0; rt_grp[0] && exists(rt_grp) && i < 100; i++) {
		if (rmdir(rt_grp) == 0 || errno != EBUSY)
			break;
		nap_ms(10);
	}
	rt_grp[0] = '\0';
	return 0;
}

static void test_permitted_rt_runtime_zero(void **state)
{
	char buf[64], p[PATH_MAX];
	pid_t pid;

	if (geteuid() != 0 || !exists(CPU_CG "/cpu.rt_runtime_us")) {
		print_message("skipped: needs root and " CPU_CG "/cpu.rt_runtime_us "
			      "(cgroup v1 cpu with RT_GROUP_SCHED)\n");
		skip();
	}
	snprintf(rt_grp, sizeof(rt_grp), CPU_CG "/rtioreq-test-%d-rt", (int)getpid());
	assert_int_equal(mkdir(rt_grp, 0755), 0);
	snprintf(p, sizeof(p), "%s/cpu.rt_runtime_us", rt_grp);
	assert_int_equal(get_line(p, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "0"); /* the kernel's default for a new group */
	pid = fork();
	if (pid == 0) {
		struct sched_param sp = { .sched_priority = 80 };
		char why[512], t[PATH_MAX + 8];
		FILE *f;

		snprintf(t, sizeof(t), "%s/tasks", rt_grp);
		f = fopen(t, "w");
		CHILD_CHECK(f && fprintf(f, "%d", (int)getpid()) > 0 && fclose(f) == 0,
			    "join %s", t);
		CHILD_CHECK(!rtioreq_rt_permitted(80, why, sizeof(why)), "permitted");
		snprintf(t, sizeof(t), "cpu cgroup %s: its cpu.rt_runtime_us is 0", rt_grp);
		CHILD_CHECK(strstr(why, t), "why \"%s\"", why);
		CHILD_CHECK(sched_setscheduler(0, SCHED_FIFO, &sp) == -1 && errno == EPERM,
			    "kernel allowed SCHED_FIFO in a group without rt runtime");
		_exit(0);
	}
	wait_child(pid);
}

/*
 * sched_rt_runtime_us through a stand-in directory: read, the "throttles at all" rule,
 * written (negative and positive) and read back; errors for what is not there.
 */
static void test_throttle(void **state)
{
	struct rtioreq_rt_throttle t;
	char dir[PATH_MAX];

	mk_subdir(dir, sizeof(dir), "sysctl");
	assert_int_equal(rtioreq_rt_throttle_get(dir, &t), -ENOENT);
	put_file(dir, "sched_rt_runtime_us", "950000\n");
	put_file(dir, "sched_rt_period_us", "1000000\n");
	assert_int_equal(rtioreq_rt_throttle_get(dir, &t), 0);
	assert_int_equal(t.runtime_us, 950000);
	assert_int_equal(t.period_us, 1000000);
	assert_true(rtioreq_rt_throttle_active(&t));
	assert_int_equal(rtioreq_rt_throttle_set(dir, -1), 0);
	assert_int_equal(rtioreq_rt_throttle_get(dir, &t), 0);
	assert_int_equal(t.runtime_us, -1);
	assert_false(rtioreq_rt_throttle_active(&t));
	assert_int_equal(rtioreq_rt_throttle_set(dir, 1000000), 0);
	assert_int_equal(rtioreq_rt_throttle_get(dir, &t), 0);
	assert_int_equal(t.runtime_us, 1000000);
	assert_false(rtioreq_rt_throttle_active(&t)); /* the whole period: never stops */
	assert_int_equal(rtioreq_rt_throttle_set(dir, 950000), 0);
	assert_int_equal(rtioreq_rt_throttle_get(dir, &t), 0);
	assert_int_equal(t.runtime_us, 950000);
	put_file(dir, "sched_rt_period_us", "x\n");
	assert_int_equal(rtioreq_rt_throttle_get(dir, &t), -EINVAL);
	assert_int_equal(rtioreq_rt_throttle_set("/nonexistent-rtioreq", -1), -ENOENT);
	/* the real one reads (its value is the machine's) */
	if (access("/proc/sys/kernel/sched_rt_runtime_us", R_OK) == 0)
		assert_int_equal(rtioreq_rt_throttle_get(NULL, &t), 0);
}

/*
 * A cpuset named after a process that is gone (a killed run) is swept; one named after
 * a live process (this one), and names of another form, are not.
 */
static void test_cpuset_sweep(void **state)
{
	char dead_dir[PATH_MAX], live_dir[PATH_MAX], other_dir[PATH_MAX], mems[256], report[512];
	pid_t dead;
	int st;

	if (!cg1_usable())
		skip();
	dead = fork();
	assert_true(dead >= 0);
	if (!dead)
		_exit(0);
	assert_int_equal(waitpid(dead, &st, 0), dead);
	assert_int_equal(get_line(CG1 "/cpuset.mems", mems, sizeof(mems)), 0);
	snprintf(dead_dir, sizeof(dead_dir), CG1 "/rtioreq-%d-cpu0", (int)dead);
	snprintf(live_dir, sizeof(live_dir), CG1 "/rtioreq-%d-cpu0", (int)getpid());
	snprintf(other_dir, sizeof(other_dir), CG1 "/rtioreq-x%d-cpu0", (int)dead);
	assert_int_equal(mkdir(dead_dir, 0755), 0);
	assert_int_equal(mkdir(live_dir, 0755), 0);
	assert_int_equal(mkdir(other_dir, 0755), 0);
	assert_int_equal(rtioreq_rt_cpuset_sweep(NULL, NULL, report, sizeof(report)), 1);
	if (!strstr(report, "removed stale") || !strstr(report, dead_dir + strlen(CG1)))
		fail_msg("report: %s", report);
	assert_int_equal(access(dead_dir, F_OK), -1);
	assert_int_equal(access(live_dir, F_OK), 0);
	assert_int_equal(access(other_dir, F_OK), 0);
	assert_int_equal(rmdir(live_dir), 0);
	assert_int_equal(rmdir(other_dir), 0);
	/* nothing stale: 0 and an empty report */
	assert_int_equal(rtioreq_rt_cpuset_sweep(NULL, "rtioreq-none", report, sizeof(report)), 0);
	assert_string_equal(report, "");
}

int main(void)
{
	const struct CMUnitTest detect[] = {
		cmocka_unit_test(test_detect_absent),
		cmocka_unit_test(test_detect_fake_classic),
		cmocka_unit_test(test_detect_fake_cgroup1),
		cmocka_unit_test(test_detect_fake_cgroup2),
		cmocka_unit_test(test_detect_real),
		cmocka_unit_test(test_detect_mount_cpuset_type),
		cmocka_unit_test(test_libcpuset_emulated),
	};
	const struct CMUnitTest cgroup1[] = {
		cmocka_unit_test_setup_teardown(test_cgroup1_lifecycle, cg1_setup, cg1_teardown),
	};
	const struct CMUnitTest misc[] = {
		cmocka_unit_test(test_dma_latency),
		cmocka_unit_test(test_lock_memory),
		cmocka_unit_test(test_prefault),
		cmocka_unit_test(test_throttle),
		cmocka_unit_test(test_cpuset_sweep),
		cmocka_unit_test(test_permitted_root),
		cmocka_unit_test(test_permitted_nobody),
		cmocka_unit_test_teardown(test_permitted_rt_runtime_zero, rt_grp_teardown),
	};
	int fails = 0;

	fails += cmocka_run_group_tests_name("rt detect", detect, tmp_setup, tmp_teardown);
	fails += cmocka_run_group_tests_name("rt cgroup1", cgroup1, NULL, NULL);
	fails += cmocka_run_group_tests_name("rt misc", misc, tmp_setup, tmp_teardown);
	return fails;
}
