/* SPDX-License-Identifier: MIT */
/*
 * Test helper: run one loader call (a profile, a guest image: hostile input) in a child
 * process, so that its time and peak RSS (getrusage of the reaped child) are its own,
 * and bound them. A child that does not finish in 60 s is killed by its alarm. One copy
 * for tests/rt/test_profile.c and tests/hv/test_kvmload.c ("bad input ends in bounded
 * time and memory").
 */
#ifndef RTIOREQ_TEST_CHILD_H
#define RTIOREQ_TEST_CHILD_H

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

/*
 * The bounds of issue #10 (2 s, 100 MB); sanitizers slow code down and add shadow
 * memory. CPU seconds (user + system of the child): the machine is shared, wall time is
 * not the code's. H_WALL_SECS only catches a child that blocks (a FIFO without a writer).
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define H_COST_SECS 20.0
#define H_COST_KB (800L * 1024)
#else
#define H_COST_SECS 2.0
#define H_COST_KB (100L * 1024)
#endif
#define H_WALL_SECS 30.0

struct h_cost {
	double secs, cpu_secs; /* wall; user + system of the child */
	long maxrss_kb;	       /* the child's peak resident set */
	int status;	       /* wait status of the child */
	int ok;		       /* it exited 0 and sent all of its result */
};

/*
 * Fork; the child calls @fn(@arg, @out), which fills the @len bytes at @out, and sends
 * them back to the parent's @out. Signal handlers are reset in the child first
 * (cmocka's would resume the test there). Return the child's cost; the caller checks
 * cost.ok, then h_cost_check().
 */
static inline struct h_cost h_in_child(void (*fn)(void *arg, void *out), void *arg, void *out,
				       size_t len)
{
	struct h_cost c = { 0 };
	struct timespec t0, t1;
	struct rusage ru;
	size_t got = 0;
	int fds[2];
	ssize_t n;
	pid_t pid;

	memset(out, 0, len);
	assert_int_equal(pipe(fds), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		for (int sig = 1; sig < 32; sig++)
			signal(sig, SIG_DFL);
		close(fds[0]);
		alarm(60);
		fn(arg, out);
		for (size_t off = 0; off < len;) {
			n = write(fds[1], (char *)out + off, len - off);
			if (n <= 0)
				_exit(3);
			off += (size_t)n;
		}
		_exit(0);
	}
	close(fds[1]);
	while (got < len && (n = read(fds[0], (char *)out + got, len - got)) > 0)
		got += (size_t)n;
	close(fds[0]);
	assert_int_equal(wait4(pid, &c.status, 0, &ru), pid);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	c.secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	c.cpu_secs = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
		     (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
	c.maxrss_kb = ru.ru_maxrss;
	c.ok = WIFEXITED(c.status) && !WEXITSTATUS(c.status) && got == len;
	return c;
}

/* Fail the test, naming @what, if @c died or exceeded the bounds above. */
static inline void h_cost_check(const char *what, const struct h_cost *c)
{
	if (!c->ok)
		fail_msg("%s: the loader died (status %#x, signal %d) after %.1f s", what,
			 c->status, WIFSIGNALED(c->status) ? WTERMSIG(c->status) : 0, c->secs);
	if (c->cpu_secs > H_COST_SECS || c->secs > H_WALL_SECS || c->maxrss_kb > H_COST_KB)
		fail_msg("%s: %.2f s CPU, %.2f s, %ld KB (bounds %.0f s CPU, %.0f s, %ld KB)",
			 what, c->cpu_secs, c->secs, c->maxrss_kb, H_COST_SECS, H_WALL_SECS,
			 H_COST_KB);
}

#endif /* RTIOREQ_TEST_CHILD_H */
