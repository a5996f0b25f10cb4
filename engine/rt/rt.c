// SPDX-License-Identifier: MIT
/*
 * Applying a real-time profile to this machine: cpusets, memory locking,
 * /dev/cpu_dma_latency and the permission check for real-time scheduling.
 * Control plane only: everything here may block.
 *
 * Backend detection asks the kernel what a directory is, not only what files it holds:
 *  - statfs(): a cpuset root must be on a cgroup v1 filesystem (CGROUP_SUPER_MAGIC).
 *    The classic "cpuset" filesystem type is, since Linux 2.6.24, a cgroup v1
 *    hierarchy mounted with "cpuset,noprefix", so it carries this magic too; a
 *    directory of look-alike files on tmpfs does not.
 *  - the file names then tell the two v1 flavours apart: "cpus" (noprefix, classic)
 *    versus "cpuset.cpus".
 *  - libcpuset 1.0 (Debian's libcpuset1) never reads /proc/mounts: its check()
 *    stats "/proc/self/cpuset" and "/dev/cpuset/tasks" once per process, caches the
 *    answer and then uses the fixed mount point "/dev/cpuset" (cpuset_mountpoint()
 *    returns that string, or "[cpuset filesystem not mounted]"). It would take any
 *    directory with a "tasks" file there, and fail later writing "cpus" into a
 *    prefixed hierarchy. So the classic root is LIBCPUSET only when it is the
 *    directory /dev/cpuset (same inode), on a cgroup filesystem, with "cpus" and
 *    "tasks".
 *  Note: "mount -t cpuset" while the cpuset controller is already bound to a prefixed
 *  v1 hierarchy succeeds but yields that prefixed hierarchy (the kernel ignores the
 *  noprefix option of a second mount of an existing hierarchy); detection then sees
 *  "cpuset.cpus" and refuses LIBCPUSET, which is what libcpuset needs.
 *
 * What the kernel does with a thread's affinity (cgroup v1 cpuset): attaching a task
 * sets its allowed CPUs to the cpuset's CPUs; moving it back to the root sets them to
 * the root's CPUs. An affinity chosen before the attach is not restored.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>

#include <bitmask.h>
#include <cpuset.h>

#include "rtioreq/rt/rt.h"

#define RT_CLASSIC_DEFAULT "/dev/cpuset"
#define RT_CGROUP1_DEFAULT "/sys/fs/cgroup/cpuset"
#define RT_CGROUP2_DEFAULT "/sys/fs/cgroup"
/* libcpuset 1.0 hard-codes its mount point. */
#define RT_LIBCPUSET_MNT "/dev/cpuset"
#define RT_CAP_SYS_NICE 23

#ifndef CGROUP_SUPER_MAGIC
#define CGROUP_SUPER_MAGIC 0x27e0eb
#endif
#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

/* ------------------------------------------------------------------------- */
/* Small helpers: the "why" sentence, files of a few bytes */

struct rt_why {
	char *buf;
	size_t len;
	size_t off;
};

__attribute__((format(printf, 2, 3))) static void why_add(struct rt_why *w, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!w->buf || !w->len || w->off >= w->len - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(w->buf + w->off, w->len - w->off, fmt, ap);
	va_end(ap);
	if (n > 0)
		w->off += (size_t)n < w->len - w->off ? (size_t)n : w->len - w->off - 1;
}

static void why_init(struct rt_why *w, char *buf, size_t len)
{
	w->buf = buf;
	w->len = len;
	w->off = 0;
	if (buf && len)
		buf[0] = '\0';
}

static bool has_file(const char *dir, const char *name)
{
	char p[512];

	if ((size_t)snprintf(p, sizeof(p), "%s/%s", dir, name) >= sizeof(p))
		return false;
	return access(p, F_OK) == 0;
}

/* Read a one-line file into @buf without its trailing newline. Return the length or -errno. */
static int read_line(const char *dir, const char *name, char *buf, size_t len)
{
	char p[512];
	ssize_t n;
	int fd, e;

	if ((size_t)snprintf(p, sizeof(p), "%s/%s", dir, name) >= sizeof(p))
		return -ENAMETOOLONG;
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	e = errno;
	close(fd);
	if (n < 0)
		return -e;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	return (int)n;
}

/* One write(2) of @s to an existing file (cgroup files take one value per write). */
static int write_str(const char *dir, const char *name, const char *s)
{
	char p[512];
	size_t len = strlen(s);
	ssize_t n;
	int fd, e;

	if ((size_t)snprintf(p, sizeof(p), "%s/%s", dir, name) >= sizeof(p))
		return -ENAMETOOLONG;
	fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, s, len);
	e = errno;
	close(fd);
	if (n < 0)
		return -e;
	return (size_t)n == len ? 0 : -EIO;
}

/* Whether @cpu is in a kernel CPU list such as "0-3,6,8-9". A malformed list holds nothing. */
static bool cpulist_has(const char *list, int cpu)
{
	const char *s = list;

	while (*s) {
		char *end;
		long a, b;

		a = strtol(s, &end, 10);
		if (end == s || a < 0)
			return false;
		b = a;
		s = end;
		if (*s == '-') {
			b = strtol(s + 1, &end, 10);
			if (end == s + 1 || b < a)
				return false;
			s = end;
		}
		if (cpu >= a && cpu <= b)
			return true;
		if (*s == ',')
			s++;
		else if (*s)
			return false;
	}
	return false;
}

static const char *fs_name(unsigned long magic, char *buf, size_t len)
{
	switch (magic) {
	case TMPFS_MAGIC:
		return "tmpfs";
	case SYSFS_MAGIC:
		return "sysfs";
	case PROC_SUPER_MAGIC:
		return "procfs";
	case CGROUP2_SUPER_MAGIC:
		return "cgroup2";
	case EXT4_SUPER_MAGIC:
		return "ext2/3/4";
	case OVERLAYFS_SUPER_MAGIC:
		return "overlayfs";
	case BTRFS_SUPER_MAGIC:
		return "btrfs";
	case XFS_SUPER_MAGIC:
		return "xfs";
	default:
		snprintf(buf, len, "filesystem magic 0x%lx", magic);
		return buf;
	}
}

/* statfs() @dir; on failure add "<dir> absent" (or the error) to @w and return false. */
static bool probe_statfs(const char *dir, struct statfs *sf, struct rt_why *w)
{
	if (statfs(dir, sf) == 0)
		return true;
	if (errno == ENOENT)
		why_add(w, "%s absent", dir);
	else
		why_add(w, "%s: %s", dir, strerror(errno));
	return false;
}

/* ------------------------------------------------------------------------- */
/* Backend detection */

static bool probe_classic(const char *root, struct rt_why *w)
{
	struct stat a, b;
	struct statfs sf;
	char nb[40];

	if (!probe_statfs(root, &sf, w))
		return false;
	if ((unsigned long)sf.f_type != CGROUP_SUPER_MAGIC) {
		why_add(w, "%s is not a cpuset mount (%s)", root,
			fs_name((unsigned long)sf.f_type, nb, sizeof(nb)));
		return false;
	}
	if (!has_file(root, "cpus") || !has_file(root, "tasks")) {
		if (has_file(root, "cpuset.cpus"))
			why_add(w, "%s has \"cpuset.\"-prefixed files, which libcpuset cannot use",
				root);
		else
			why_add(w, "%s is a cgroup v1 mount without the cpuset controller", root);
		return false;
	}
	if (stat(root, &a) || stat(RT_LIBCPUSET_MNT, &b) || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino) {
		why_add(w, "%s is a classic cpuset mount but libcpuset only uses %s", root,
			RT_LIBCPUSET_MNT);
		return false;
	}
	if (access("/proc/self/cpuset", F_OK)) {
		why_add(w, "%s is a classic cpuset mount but /proc/self/cpuset is absent", root);
		return false;
	}
	return true;
}

static bool probe_cgroup1(const char *root, struct rt_why *w)
{
	struct statfs sf;
	char nb[40];

	if (!probe_statfs(root, &sf, w))
		return false;
	if ((unsigned long)sf.f_type != CGROUP_SUPER_MAGIC) {
		why_add(w, "%s is not a cgroup v1 mount (%s)", root,
			fs_name((unsigned long)sf.f_type, nb, sizeof(nb)));
		return false;
	}
	if (has_file(root, "cpuset.cpus") && has_file(root, "cpuset.mems") &&
	    has_file(root, "tasks"))
		return true;
	if (has_file(root, "cpus"))
		why_add(w, "%s is a classic (noprefix) cpuset mount, used only through libcpuset at %s",
			root, RT_LIBCPUSET_MNT);
	else
		why_add(w, "%s is a cgroup v1 mount without the cpuset controller", root);
	return false;
}

/* cgroup v2 is only explained: the caller is about to report NONE. */
static void probe_cgroup2(const char *root, struct rt_why *w)
{
	struct statfs sf;
	char ctl[256], nb[40];
	const char *p;
	bool cpuset = false;

	if (!probe_statfs(root, &sf, w))
		return;
	if ((unsigned long)sf.f_type != CGROUP2_SUPER_MAGIC && !has_file(root, "cgroup.controllers")) {
		why_add(w, "%s is not cgroup v2 (%s)", root,
			fs_name((unsigned long)sf.f_type, nb, sizeof(nb)));
		return;
	}
	if (read_line(root, "cgroup.controllers", ctl, sizeof(ctl)) >= 0) {
		for (p = strstr(ctl, "cpuset"); p; p = strstr(p + 1, "cpuset")) {
			if ((p == ctl || p[-1] == ' ') && (p[6] == ' ' || p[6] == '\0'))
				cpuset = true;
		}
	}
	if (cpuset)
		why_add(w, "%s is cgroup v2, where placing single threads of a process needs a "
			   "threaded subtree with a cpuset partition, which rtioreq does not set up",
			root);
	else
		why_add(w, "%s is cgroup v2 without the cpuset controller", root);
}

static enum rtioreq_rt_backend detect(const struct rtioreq_rt_roots *roots, const char **root,
				      char *why, size_t why_len)
{
	const char *classic = roots && roots->classic ? roots->classic : RT_CLASSIC_DEFAULT;
	const char *cg1 = roots && roots->cgroup1 ? roots->cgroup1 : RT_CGROUP1_DEFAULT;
	const char *cg2 = roots && roots->cgroup2 ? roots->cgroup2 : RT_CGROUP2_DEFAULT;
	struct rt_why w;

	why_init(&w, why, why_len);
	why_add(&w, "no usable cpuset hierarchy: ");
	if (probe_classic(classic, &w)) {
		why_init(&w, why, why_len);
		*root = classic;
		return RTIOREQ_RT_CPUSET_LIBCPUSET;
	}
	why_add(&w, "; ");
	if (probe_cgroup1(cg1, &w)) {
		why_init(&w, why, why_len);
		*root = cg1;
		return RTIOREQ_RT_CPUSET_CGROUP1;
	}
	why_add(&w, "; ");
	probe_cgroup2(cg2, &w);
	*root = NULL;
	return RTIOREQ_RT_CPUSET_NONE;
}

enum rtioreq_rt_backend rtioreq_rt_cpuset_backend(const struct rtioreq_rt_roots *roots,
						  char *why, size_t why_len)
{
	const char *root;

	return detect(roots, &root, why, why_len);
}

const char *rtioreq_rt_backend_name(enum rtioreq_rt_backend b)
{
	switch (b) {
	case RTIOREQ_RT_CPUSET_NONE:
		return "none";
	case RTIOREQ_RT_CPUSET_LIBCPUSET:
		return "libcpuset";
	case RTIOREQ_RT_CPUSET_CGROUP1:
		return "cgroup1";
	}
	return "?";
}

/* ------------------------------------------------------------------------- */
/* Cpusets */

static const char *prefix_of(enum rtioreq_rt_backend b)
{
	return b == RTIOREQ_RT_CPUSET_CGROUP1 ? "cpuset." : "";
}

/* Explain a failed mkdir/write while creating @cs; return -@e. */
static int create_failed(struct rtioreq_rt_cpuset *cs, int e, const char *what, struct rt_why *w)
{
	if (e == EEXIST)
		why_add(w, "%s already exists (another rtioreq, or left over from a crash)",
			cs->path);
	else if (e == EACCES || e == EPERM)
		why_add(w, "cannot %s %s: %s (creating cpusets needs root or CAP_SYS_ADMIN)", what,
			cs->path, strerror(e));
	else
		why_add(w, "cannot %s %s: %s", what, cs->path, strerror(e));
	return -e;
}

static int create_cgroup1(struct rtioreq_rt_cpuset *cs, int cpu, const char *mems,
			  struct rt_why *w)
{
	char v[16];
	int r;

	if (mkdir(cs->path, 0755))
		return create_failed(cs, errno, "create", w);
	snprintf(v, sizeof(v), "%d", cpu);
	r = write_str(cs->path, "cpuset.cpus", v);
	if (r == -EINVAL) {
		/* Subset of the root was checked: an exclusive sibling holds the CPU. */
		why_add(w, "CPU %d of %s belongs to an exclusive sibling cpuset", cpu, cs->path);
		r = -EBUSY;
	} else if (r) {
		create_failed(cs, -r, "set cpuset.cpus of", w);
	}
	if (!r) {
		r = write_str(cs->path, "cpuset.mems", mems);
		if (r)
			create_failed(cs, -r, "set cpuset.mems of", w);
	}
	if (r)
		rmdir(cs->path);
	return r;
}

static int create_libcpuset(struct rtioreq_rt_cpuset *cs, int cpu, const char *mems,
			    struct rt_why *w)
{
	struct bitmask *cb = bitmask_alloc((unsigned int)cpuset_cpus_nbits());
	struct bitmask *mb = bitmask_alloc((unsigned int)cpuset_mems_nbits());
	struct cpuset *cp = cpuset_alloc();
	int r = 0;

	if (!cb || !mb || !cp) {
		r = -ENOMEM;
		why_add(w, "out of memory");
		goto out;
	}
	/* libcpuset sizes its masks from Cpus_allowed in /proc/self/status. */
	if ((unsigned int)cpu >= bitmask_nbits(cb) || bitmask_parselist(mems, mb) < 0) {
		r = -EINVAL;
		why_add(w, "CPU %d or memory nodes \"%s\" do not fit libcpuset's masks", cpu, mems);
		goto out;
	}
	bitmask_setbit(cb, (unsigned int)cpu);
	if (cpuset_setcpus(cp, cb) || cpuset_setmems(cp, mb)) {
		r = -ENOMEM;
		why_add(w, "out of memory");
		goto out;
	}
	/* mkdir, cpus, mems; on error libcpuset removes the directory it made. */
	if (cpuset_create(cs->rel, cp)) {
		int e = errno ? errno : EIO;

		if (e == EINVAL) {
			why_add(w, "CPU %d of %s belongs to an exclusive sibling cpuset", cpu,
				cs->path);
			r = -EBUSY;
		} else {
			r = create_failed(cs, e, "create", w);
		}
	}
out:
	cpuset_free(cp);
	if (mb)
		bitmask_free(mb);
	if (cb)
		bitmask_free(cb);
	return r;
}

int rtioreq_rt_cpuset_create(struct rtioreq_rt_cpuset *cs, const struct rtioreq_rt_roots *roots,
			     const char *name, int cpu, char *why, size_t why_len)
{
	char cpus[1024], mems[1024];
	const char *root, *pfx;
	enum rtioreq_rt_backend b;
	struct rt_why w;
	char file[32];
	int r;

	memset(cs, 0, sizeof(*cs));
	b = detect(roots, &root, why, why_len);
	if (b == RTIOREQ_RT_CPUSET_NONE)
		return -ENODEV;
	why_init(&w, why, why_len);
	if (!name || !*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..")) {
		why_add(&w, "invalid cpuset name \"%s\": one path component expected",
			name ? name : "(null)");
		return -EINVAL;
	}
	if ((size_t)snprintf(cs->path, sizeof(cs->path), "%s/%s", root, name) >= sizeof(cs->path) ||
	    (size_t)snprintf(cs->rel, sizeof(cs->rel), "/%s", name) >= sizeof(cs->rel) ||
	    (size_t)snprintf(cs->parent, sizeof(cs->parent), "%s", root) >= sizeof(cs->parent)) {
		why_add(&w, "cpuset path %s/%s is too long", root, name);
		memset(cs, 0, sizeof(*cs));
		return -ENAMETOOLONG;
	}
	pfx = prefix_of(b);
	snprintf(file, sizeof(file), "%scpus", pfx);
	r = read_line(root, file, cpus, sizeof(cpus));
	if (r >= 0) {
		snprintf(file, sizeof(file), "%smems", pfx);
		r = read_line(root, file, mems, sizeof(mems));
	}
	if (r < 0) {
		why_add(&w, "cannot read %s/%s: %s", root, file, strerror(-r));
		goto fail;
	}
	if (cpu < 0 || !cpulist_has(cpus, cpu)) {
		why_add(&w, "CPU %d is not in %s/%scpus (%s)", cpu, root, pfx, cpus);
		r = -EINVAL;
		goto fail;
	}
	if (!mems[0]) {
		why_add(&w, "%s/%smems is empty", root, pfx);
		r = -EINVAL;
		goto fail;
	}
	if (b == RTIOREQ_RT_CPUSET_LIBCPUSET)
		r = create_libcpuset(cs, cpu, mems, &w);
	else
		r = create_cgroup1(cs, cpu, mems, &w);
	if (r)
		goto fail;

	/* Best effort: an exclusive sibling or a busy parent is not an error. */
	snprintf(file, sizeof(file), "%scpu_exclusive", pfx);
	cs->exclusive = write_str(cs->path, file, "1") == 0;
	snprintf(file, sizeof(file), "%ssched_load_balance", pfx);
	(void)write_str(cs->path, file, "0");
	cs->backend = b;
	return 0;
fail:
	memset(cs, 0, sizeof(*cs));
	return r;
}

int rtioreq_rt_cpuset_attach(struct rtioreq_rt_cpuset *cs, pid_t tid)
{
	char v[16];

	if (!cs->path[0] || tid < 0)
		return -EINVAL;
	/* libcpuset would take 0 as getpid(), the main thread, not the caller. */
	if (tid == 0)
		tid = (pid_t)syscall(SYS_gettid);
	if (cs->backend == RTIOREQ_RT_CPUSET_LIBCPUSET) {
		errno = 0;
		if (cpuset_move(tid, cs->rel))
			return errno ? -errno : -EIO;
		return 0;
	}
	snprintf(v, sizeof(v), "%d", (int)tid);
	return write_str(cs->path, "tasks", v);
}

/* Move one task back to the hierarchy root; a task that has exited counts as moved. */
static int move_back(struct rtioreq_rt_cpuset *cs, int root_fd, long tid)
{
	char v[24];
	int n;

	if (cs->backend == RTIOREQ_RT_CPUSET_LIBCPUSET) {
		errno = 0;
		if (cpuset_move((pid_t)tid, "/") == 0 || errno == ESRCH)
			return 0;
		return errno ? -errno : -EIO;
	}
	n = snprintf(v, sizeof(v), "%ld", tid);
	if (write(root_fd, v, (size_t)n) == n || errno == ESRCH)
		return 0;
	return -errno;
}

/*
 * Move every task listed in the cpuset's tasks file to the root. No allocation: the
 * file is read in chunks, a number cut at a chunk boundary carries over.
 */
static int move_tasks_out(struct rtioreq_rt_cpuset *cs)
{
	char p[300], buf[512];
	int fd, root_fd = -1, r = 0;
	long tid = -1;
	ssize_t n;

	snprintf(p, sizeof(p), "%s/tasks", cs->path);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (cs->backend != RTIOREQ_RT_CPUSET_LIBCPUSET) {
		snprintf(p, sizeof(p), "%s/tasks", cs->parent);
		root_fd = open(p, O_WRONLY | O_CLOEXEC);
		if (root_fd < 0) {
			r = -errno;
			close(fd);
			return r;
		}
	}
	while (!r && (n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n && !r; i++) {
			if (buf[i] >= '0' && buf[i] <= '9') {
				tid = (tid < 0 ? 0 : tid * 10) + (buf[i] - '0');
			} else if (tid >= 0) {
				r = move_back(cs, root_fd, tid);
				tid = -1;
			}
		}
	}
	if (!r && n < 0)
		r = -errno;
	if (!r && tid >= 0)
		r = move_back(cs, root_fd, tid);
	if (root_fd >= 0)
		close(root_fd);
	close(fd);
	return r;
}

int rtioreq_rt_cpuset_remove(struct rtioreq_rt_cpuset *cs)
{
	struct timespec ts = { 0, 1000000L };
	int r, e;

	if (!cs->path[0])
		return 0;
	for (int i = 0; i < 100; i++) {
		r = move_tasks_out(cs);
		if (r && r != -ENOENT)
			return r;
		if (cs->backend == RTIOREQ_RT_CPUSET_LIBCPUSET) {
			errno = 0;
			r = cpuset_delete(cs->rel);
		} else {
			r = rmdir(cs->path);
		}
		e = errno;
		if (r == 0 || e == ENOENT) {
			cs->path[0] = '\0';
			return 0;
		}
		/* EBUSY: a task moved out is still exiting, or a thread was just created in it. */
		if (e != EBUSY)
			return e ? -e : -EIO;
		if (i == 10)
			ts.tv_nsec = 10000000L;
		nanosleep(&ts, NULL);
	}
	return -EBUSY;
}

/* ------------------------------------------------------------------------- */
/* Memory, C-states, permission */

int rtioreq_rt_dma_latency_hold(const char *path)
{
	int32_t v = 0;
	ssize_t n;
	int fd, e;

	fd = open(path ? path : "/dev/cpu_dma_latency", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, &v, sizeof(v));
	if (n != (ssize_t)sizeof(v)) {
		e = n < 0 ? errno : EIO;
		close(fd);
		return -e;
	}
	return fd;
}

void rtioreq_rt_dma_latency_release(int fd)
{
	if (fd >= 0)
		close(fd);
}

int rtioreq_rt_lock_memory(void)
{
	if (mlockall(MCL_CURRENT | MCL_FUTURE))
		return -errno;
	return 0;
}

void rtioreq_rt_prefault(void *p, size_t len)
{
	long pg = sysconf(_SC_PAGESIZE);
	uintptr_t a = (uintptr_t)p, end;

	if (!p || !len)
		return;
	if (pg <= 0)
		pg = 4096;
	end = a + len < a ? UINTPTR_MAX : a + len;
	while (a < end) {
		/*
		 * A write access, for the write fault (a read maps the zero page or leaves a
		 * COW page shared). A same-value CAS rather than "*p = *p": the memory may be
		 * a slot page another thread or process already writes, and a plain
		 * read-then-write could undo its store. Relaxed: only the access matters.
		 * (An idempotent fetch_or(0) may be compiled to a plain load.)
		 */
		_Atomic unsigned char *c = (_Atomic unsigned char *)a;
		unsigned char old = atomic_load_explicit(c, memory_order_relaxed);

		while (!atomic_compare_exchange_weak_explicit(c, &old, old, memory_order_relaxed,
							      memory_order_relaxed))
			;
		a = (a & ~((uintptr_t)pg - 1)) + (uintptr_t)pg;
	}
}

/* CAP_SYS_NICE in the effective set: 1, 0, or -1 when /proc/self/status is unreadable. */
static int cap_sys_nice(void)
{
	char line[256];
	int r = -1;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long eff;

		if (sscanf(line, "CapEff: %llx", &eff) == 1) {
			r = (eff >> RT_CAP_SYS_NICE) & 1;
			break;
		}
	}
	fclose(f);
	return r;
}

/*
 * With CONFIG_RT_GROUP_SCHED and a cgroup v1 cpu controller, a group whose
 * cpu.rt_runtime_us is 0 (the default for new groups) refuses SCHED_FIFO/RR even to
 * root. Return the group path in @grp when that is the case.
 */
static bool rt_runtime_zero(char *grp, size_t len)
{
	static const char *const mnts[] = { "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct" };
	char line[512], dir[700], v[32];
	bool zero = false;
	FILE *f = fopen("/proc/thread-self/cgroup", "re");

	if (!f)
		return false;
	while (!zero && fgets(line, sizeof(line), f)) {
		char *ctl = strchr(line, ':'), *path, *tok, *save;
		bool cpu = false;

		if (!ctl)
			continue;
		path = strchr(++ctl, ':');
		if (!path)
			continue;
		*path++ = '\0';
		path[strcspn(path, "\n")] = '\0';
		for (tok = strtok_r(ctl, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
			cpu |= !strcmp(tok, "cpu");
		if (!cpu || !strcmp(path, "/"))
			continue;
		for (size_t i = 0; i < sizeof(mnts) / sizeof(mnts[0]) && !zero; i++) {
			if ((size_t)snprintf(dir, sizeof(dir), "%s%s", mnts[i], path) >= sizeof(dir))
				continue;
			if (read_line(dir, "cpu.rt_runtime_us", v, sizeof(v)) > 0 && !strcmp(v, "0")) {
				snprintf(grp, len, "%s", dir);
				zero = true;
			}
		}
	}
	fclose(f);
	return zero;
}

bool rtioreq_rt_permitted(int priority, char *why, size_t why_len)
{
	struct rlimit rl;
	struct rt_why w;
	char grp[704], now[32];
	int cap;

	why_init(&w, why, why_len);
	if (priority < 1 || priority > 99) {
		why_add(&w, "SCHED_FIFO/RR priority %d is out of range 1..99", priority);
		return false;
	}
	if (rt_runtime_zero(grp, sizeof(grp))) {
		why_add(&w, "SCHED_FIFO/RR is refused in cpu cgroup %s: its cpu.rt_runtime_us is 0",
			grp);
		return false;
	}
	cap = cap_sys_nice();
	if (cap == 1 || (cap < 0 && geteuid() == 0))
		return true;
	if (getrlimit(RLIMIT_RTPRIO, &rl)) {
		why_add(&w, "getrlimit(RLIMIT_RTPRIO): %s", strerror(errno));
		return false;
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)priority)
		return true;
	snprintf(now, sizeof(now), "%llu", (unsigned long long)rl.rlim_cur);
	if (geteuid() == 0)
		why_add(&w, "SCHED_FIFO/RR priority %d needs CAP_SYS_NICE, which this root process "
			    "lacks, or RLIMIT_RTPRIO >= %d (now %s)", priority, priority, now);
	else
		why_add(&w, "SCHED_FIFO/RR priority %d needs root, CAP_SYS_NICE or RLIMIT_RTPRIO >= "
			    "%d (now %s)", priority, priority, now);
	return false;
}

/* ------------------------------------------------------------------------- */
/* Real-time throttling */

#define RT_SYSCTL_DEFAULT "/proc/sys/kernel"

int rtioreq_rt_throttle_get(const char *dir, struct rtioreq_rt_throttle *t)
{
	char v[32], *end;
	int r;

	memset(t, 0, sizeof(*t)); /* reserved tail: zero (rtioreq/common.h) */
	dir = dir ? dir : RT_SYSCTL_DEFAULT;
	r = read_line(dir, "sched_rt_runtime_us", v, sizeof(v));
	if (r < 0)
		return r;
	errno = 0;
	t->runtime_us = strtoll(v, &end, 10);
	if (errno || end == v || *end)
		return -EINVAL;
	r = read_line(dir, "sched_rt_period_us", v, sizeof(v));
	if (r < 0)
		return r;
	errno = 0;
	t->period_us = strtoll(v, &end, 10);
	if (errno || end == v || *end || t->period_us <= 0)
		return -EINVAL;
	return 0;
}

bool rtioreq_rt_throttle_active(const struct rtioreq_rt_throttle *t)
{
	return t->runtime_us >= 0 && t->runtime_us < t->period_us;
}

/* Async-signal-safe (open/write/close, digits by hand: no stdio in a signal handler). */
int rtioreq_rt_throttle_set(const char *dir, long long runtime_us)
{
	static const char file[] = "/sched_rt_runtime_us";
	unsigned long long u = runtime_us < 0 ? 0ull - (unsigned long long)runtime_us
					      : (unsigned long long)runtime_us;
	char v[24], digits[24], p[300];
	size_t len = 0, dl;
	int fd, e, nd = 0;
	ssize_t n;

	do {
		digits[nd++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (runtime_us < 0)
		v[len++] = '-';
	while (nd)
		v[len++] = digits[--nd];
	dir = dir ? dir : RT_SYSCTL_DEFAULT;
	dl = strlen(dir);
	if (dl + sizeof(file) > sizeof(p))
		return -ENAMETOOLONG;
	memcpy(p, dir, dl);
	memcpy(p + dl, file, sizeof(file));
	/* O_TRUNC: a no-op for the sysctl, needed for a stand-in regular file */
	fd = open(p, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, v, len);
	e = errno;
	close(fd);
	if (n < 0)
		return -e;
	return (size_t)n == len ? 0 : -EIO;
}

/* ------------------------------------------------------------------------- */
/* Stale cpusets */

/* "<prefix>-<pid>-..." -> pid, or -1 when @name is not of that form. */
static long stale_owner(const char *name, const char *prefix)
{
	size_t pl = strlen(prefix);
	char *end;
	long pid;

	if (strncmp(name, prefix, pl) || name[pl] != '-' || name[pl + 1] < '1' ||
	    name[pl + 1] > '9')
		return -1;
	errno = 0;
	pid = strtol(name + pl + 1, &end, 10);
	if (errno || pid <= 0 || *end != '-')
		return -1;
	return pid;
}

int rtioreq_rt_cpuset_sweep(const struct rtioreq_rt_roots *roots, const char *prefix,
			    char *report, size_t report_len)
{
	const char *root;
	enum rtioreq_rt_backend b = detect(roots, &root, NULL, 0);
	struct rt_why w;
	struct dirent *de;
	int removed = 0, r = 0;
	DIR *d;

	why_init(&w, report, report_len);
	if (b == RTIOREQ_RT_CPUSET_NONE)
		return 0;
	prefix = prefix ? prefix : "rtioreq";
	d = opendir(root);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		struct rtioreq_rt_cpuset cs = { .backend = b };
		long pid = stale_owner(de->d_name, prefix);

		if (pid < 0 || de->d_type != DT_DIR)
			continue;
		/* alive (or not ours to judge: EPERM means it exists) */
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		if ((size_t)snprintf(cs.path, sizeof(cs.path), "%s/%s", root, de->d_name) >=
			    sizeof(cs.path) ||
		    (size_t)snprintf(cs.rel, sizeof(cs.rel), "/%s", de->d_name) >= sizeof(cs.rel))
			continue;
		snprintf(cs.parent, sizeof(cs.parent), "%s", root);
		r = rtioreq_rt_cpuset_remove(&cs);
		if (r) {
			why_add(&w, "%scannot remove stale %s/%s (process %ld is gone): %s",
				w.off ? "; " : "", root, de->d_name, pid, strerror(-r));
			break;
		}
		why_add(&w, "%sremoved stale %s/%s (process %ld is gone)", w.off ? "; " : "", root,
			de->d_name, pid);
		removed++;
	}
	closedir(d);
	return r ? r : removed;
}
