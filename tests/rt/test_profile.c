// SPDX-License-Identifier: MIT
/*
 * Profile loader, validator and plan: every shipped profile validates and plans; each
 * bad profile under tests/rt/profiles/ fails with exactly one diagnostic, at the expected
 * file:line:column; plan building gives the expected slot owners and thread attrs.
 */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <cyaml/cyaml.h>

#include "child.h"
#include "rtioreq/rt/profile.h"

#ifndef RTIOREQ_SOURCE_DIR
#error "build with -DRTIOREQ_SOURCE_DIR=\"<source tree>\""
#endif
#define PROFILES RTIOREQ_SOURCE_DIR "/tests/rt/profiles/"
#define RT_CONFIGS RTIOREQ_SOURCE_DIR "/rt-configs/"

/* Private to engine/rt/profile.c. */
void rtioreq__profile_cyaml_report(const char *log, cyaml_err_t err, char *what, size_t len,
				   unsigned int *line, unsigned int *column);

struct diags {
	char text[8192];
	size_t len;
	unsigned int errors, warnings;
};

static void collect(void *ctx, const struct rtioreq_profile_diag *d)
{
	struct diags *g = ctx;
	int n = snprintf(g->text + g->len, sizeof(g->text) - g->len, "%s\n", d->text);

	if (n > 0 && (size_t)n < sizeof(g->text) - g->len)
		g->len += (size_t)n;
	if (d->severity == RTIOREQ_PROFILE_WARNING)
		g->warnings++;
	else
		g->errors++;
	/* The structured fields agree with the text. */
	assert_non_null(strstr(d->text, d->what));
	if (d->line) {
		char pos[64];

		snprintf(pos, sizeof(pos), ":%u:%u: ", d->line, d->column);
		assert_non_null(strstr(d->text, pos));
	}
}

static void assert_diag(const struct diags *g, const char *want)
{
	if (!strstr(g->text, want))
		fail_msg("expected diagnostic containing\n  %s\ngot:\n%s", want, g->text);
}

static void all_cpus(cpu_set_t *set)
{
	CPU_ZERO(set);
	for (int c = 0; c < CPU_SETSIZE; c++)
		CPU_SET(c, set);
}

static struct rtioreq_profile *load_ok(const char *path, struct diags *g)
{
	struct rtioreq_profile *p = rtioreq_profile_load(path, collect, g);

	if (!p)
		fail_msg("%s: load failed (%s):\n%s", path, strerror(errno), g->text);
	return p;
}

/* ------------------------------------------------------------------------- */

/* Every reserved tail of a loaded profile's arrays and of a plan reads zero: a later
 * library takes new fields from them, where zero means the old behaviour
 * (rtioreq/common.h). */
#define RESERVED_ZERO(x) \
	do { \
		for (size_t r_ = 0; r_ < sizeof((x).reserved) / sizeof((x).reserved[0]); r_++) \
			assert_int_equal((x).reserved[r_], 0); \
	} while (0)

static void reserved_zero(const struct rtioreq_profile *p, const struct rtioreq_profile_plan *plan)
{
	for (unsigned int c = 0; c < p->n_cores; c++) {
		RESERVED_ZERO(p->cores[c]);
		for (unsigned int s = 0; s < p->cores[c].n_slots; s++)
			RESERVED_ZERO(p->cores[c].slots[s]);
	}
	for (unsigned int v = 0; v < p->n_vms; v++) {
		RESERVED_ZERO(p->vms[v]);
		for (unsigned int d = 0; d < p->vms[v].n_devices; d++) {
			const struct rtioreq_profile_device *dev = &p->vms[v].devices[d];

			RESERVED_ZERO(*dev);
			for (unsigned int r = 0; r < dev->n_ranges; r++)
				RESERVED_ZERO(dev->ranges[r]);
			for (unsigned int k = 0; k < dev->n_params; k++)
				RESERVED_ZERO(dev->params[k]);
		}
	}
	RESERVED_ZERO(*plan);
	for (unsigned int t = 0; t < plan->n_threads; t++)
		RESERVED_ZERO(plan->threads[t]);
	for (unsigned int s = 0; s < plan->n_slots; s++)
		RESERVED_ZERO(plan->slots[s]);
}

static const char *const shipped[] = { "dev-2cpu.yaml", "auto-4cpu.yaml", "auto-8cpu.yaml" };

static void test_shipped_profiles(void **state)
{
	cpu_set_t all;

	all_cpus(&all);
	for (size_t i = 0; i < sizeof(shipped) / sizeof(shipped[0]); i++) {
		char path[512], *buf = NULL;
		size_t len = 0;
		struct diags g = { .len = 0 };
		struct rtioreq_profile *p;
		struct rtioreq_profile_plan plan;
		FILE *out;

		snprintf(path, sizeof(path), "%s%s", RT_CONFIGS, shipped[i]);
		p = load_ok(path, &g);
		/* With every CPU present: no error, no warning. */
		assert_int_equal(rtioreq_profile_validate_cpus(p, true, &all), 0);
		assert_int_equal(g.errors + g.warnings, 0);
		/* On this host without the host check: at most warnings about CPUs. */
		assert_int_equal(rtioreq_profile_validate(p, false), 0);
		assert_int_equal(g.errors, 0);
		memset(&plan, 0xa5, sizeof(plan)); /* plan_build fills all of it */
		assert_int_equal(rtioreq_profile_plan_build(p, &plan), 0);
		assert_true(plan.n_threads >= 3);
		reserved_zero(p, &plan);
		rtioreq_profile_plan_free(&plan);
		out = open_memstream(&buf, &len);
		assert_non_null(out);
		assert_int_equal(rtioreq_profile_print_plan(p, out), 0);
		fclose(out);
		assert_non_null(strstr(buf, "slots:"));
		assert_non_null(strstr(buf, "mmio 0xd0000000..0xd0000fff"));
		assert_non_null(strstr(buf, "pio 0x510..0x513"));
		free(buf);
		rtioreq_profile_free(p);
	}
}

/* The 2-CPU box: one FIFO poller on CPU 1 owns all 4 slots; fallback threads on CPU 0. */
static void test_plan_dev_2cpu(void **state)
{
	struct diags g = { .len = 0 };
	struct rtioreq_profile *p = load_ok(RT_CONFIGS "dev-2cpu.yaml", &g);
	struct rtioreq_profile_plan plan;
	const struct rtioreq_profile_plan_thread *t;

	assert_int_equal(rtioreq_profile_plan_build(p, &plan), 0);
	assert_int_equal(plan.mode, RTIOREQ_PROFILE_POLLING);
	assert_true(plan.cpu_dma_latency);
	assert_int_equal(plan.n_threads, 3);
	t = &plan.threads[0];
	assert_int_equal(t->kind, RTIOREQ_PROFILE_THREAD_POLLER);
	assert_int_equal(t->attr.cpu, 1);
	assert_int_equal(t->attr.policy, SCHED_FIFO);
	assert_int_equal(t->attr.priority, 80);
	assert_int_equal(t->isolation, RTIOREQ_PROFILE_ISOLATION_CPUSET);
	assert_int_equal(t->idle, RTIOREQ_PROFILE_IDLE_SPIN);
	assert_int_equal(t->n_slots, 4);
	assert_int_equal(plan.n_slots, 4);
	for (uint16_t v = 0; v < 4; v++)
		assert_int_equal(rtioreq_profile_plan_owner(&plan, 1, v), 0);
	assert_int_equal(plan.threads[1].kind, RTIOREQ_PROFILE_THREAD_DISPATCHER);
	assert_int_equal(plan.engine.dispatcher.cpu, 0);
	assert_int_equal(plan.engine.dispatcher.policy, SCHED_OTHER);
	assert_int_equal(plan.engine.clients.cpu, 0);
	assert_int_equal(plan.engine.clients.priority, 0);
	rtioreq_profile_plan_free(&plan);
	rtioreq_profile_free(p);
}

/* 8 CPUs: VM 1 vCPU k on the poller of CPU 4+k; VM 2 entirely on the fallback path. */
static void test_plan_auto_8cpu(void **state)
{
	struct diags g = { .len = 0 };
	struct rtioreq_profile *p = load_ok(RT_CONFIGS "auto-8cpu.yaml", &g);
	struct rtioreq_profile_plan plan;

	assert_int_equal(rtioreq_profile_plan_build(p, &plan), 0);
	assert_int_equal(plan.n_threads, 6);
	assert_int_equal(plan.n_slots, 8);
	for (uint16_t v = 0; v < 4; v++) {
		int t = rtioreq_profile_plan_owner(&plan, 1, v);

		assert_true(t >= 0);
		assert_int_equal(plan.threads[t].kind, RTIOREQ_PROFILE_THREAD_POLLER);
		assert_int_equal(plan.threads[t].attr.cpu, 4 + v);
		assert_int_equal(rtioreq_profile_plan_owner(&plan, 2, v), -1);
	}
	assert_int_equal(plan.threads[3].idle, RTIOREQ_PROFILE_IDLE_HYBRID);
	assert_int_equal(plan.threads[3].spin_us, 100);
	assert_int_equal(plan.threads[3].attr.priority, 70);
	assert_int_equal(plan.engine.dispatcher.cpu, 2);
	assert_int_equal(plan.engine.dispatcher.policy, SCHED_FIFO);
	assert_int_equal(plan.engine.clients.cpu, 3);
	assert_int_equal(plan.engine.clients.policy, SCHED_RR);
	assert_int_equal(plan.engine.clients.priority, 40);
	assert_false(p->vms[1].completion_polling);
	rtioreq_profile_plan_free(&plan);
	rtioreq_profile_free(p);
}

/*
 * CPUs are a host property: CPU 7 on a host with CPUs 0-1 is a warning without the host
 * check (the rest validates and plans), an error with it. Also: both slot forms, the
 * hybrid default spin, the completion_polling default.
 */
static void test_host_check(void **state)
{
	struct diags g = { .len = 0 };
	struct rtioreq_profile *p = load_ok(PROFILES "host-8cpu.yaml", &g);
	struct rtioreq_profile_plan plan;
	cpu_set_t two;

	CPU_ZERO(&two);
	CPU_SET(0, &two);
	CPU_SET(1, &two);
	assert_int_equal(rtioreq_profile_validate_cpus(p, false, &two), 0);
	assert_int_equal(g.errors, 0);
	assert_int_equal(g.warnings, 1);
	assert_diag(&g, "host-8cpu.yaml:6:10: warning: CPU 7 is not online on this host "
			"(online: 0-1)");

	g = (struct diags){ .len = 0 };
	assert_int_equal(rtioreq_profile_validate_cpus(p, true, &two), -EINVAL);
	assert_int_equal(g.errors, 1);
	assert_diag(&g, "host-8cpu.yaml:6:10: CPU 7 is not online on this host");

	assert_int_equal(rtioreq_profile_plan_build(p, &plan), 0);
	assert_int_equal(plan.n_threads, 3);
	assert_int_equal(plan.threads[0].spin_us, RTIOREQ_PROFILE_SPIN_US_DEFAULT);
	assert_int_equal(plan.threads[0].n_slots, 3);
	assert_int_equal(rtioreq_profile_plan_owner(&plan, 1, 0), 0);
	assert_int_equal(rtioreq_profile_plan_owner(&plan, 1, 1), 0);
	assert_int_equal(rtioreq_profile_plan_owner(&plan, 1, 2), -1);
	assert_int_equal(rtioreq_profile_plan_owner(&plan, 1, 3), -1);
	assert_int_equal(rtioreq_profile_plan_owner(&plan, 2, 0), 0);
	assert_int_equal(rtioreq_profile_plan_owner(&plan, 2, 1), -1);
	assert_true(p->vms[0].completion_polling);
	assert_false(p->vms[1].completion_polling);
	rtioreq_profile_plan_free(&plan);
	rtioreq_profile_free(p);
}

/* ------------------------------------------------------------------------- */

struct bad {
	const char *file;
	const char *want; /* substring of the one diagnostic, from the file name on */
};

/* Refused at load: structure (libcyaml's domain, positioned by the schema walk). */
static const struct bad bad_load[] = {
	{ "empty.yaml", "empty.yaml:1:1: empty profile" },
	{ "comments-only.yaml", "comments-only.yaml:1:1: empty profile" },
	{ "bad-syntax.yaml", "bad-syntax.yaml:6:4: YAML syntax error: did not find expected ','" },
	{ "bad-two-docs.yaml", "bad-two-docs.yaml:17:1: a profile is one YAML document" },
	{ "bad-unknown-key.yaml", "bad-unknown-key.yaml:9:5: unknown key 'prio' in cores[1]" },
	{ "bad-type.yaml", "bad-type.yaml:4:10: cpu: expected an integer, got 'one'" },
	{ "bad-type-bool.yaml",
	  "bad-type-bool.yaml:9:25: completion_polling: expected true or false, got 'maybe'" },
	{ "bad-type-list.yaml", "bad-type-list.yaml:3:8: cores: expected a list, got '2'" },
	{ "bad-type-role.yaml", "bad-type-role.yaml:5:11: role: expected a list of: poller, "
				"dispatcher, clients" },
	{ "bad-enum.yaml", "bad-enum.yaml:6:13: policy: 'deadline' is not one of: other, fifo, rr" },
	{ "bad-missing-key.yaml", "bad-missing-key.yaml:7:5: missing required key 'vcpus' in vms[0]" },
};

/* Loaded, refused by rtioreq_profile_validate(). */
static const struct bad bad_validate[] = {
	{ "bad-priority.yaml", "bad-priority.yaml:9:15: priority 120 out of range 1..99" },
	{ "bad-priority-other.yaml",
	  "bad-priority-other.yaml:6:15: priority 5 with policy other: must be 0" },
	{ "bad-priority-missing.yaml",
	  "bad-priority-missing.yaml:8:13: policy rr needs a priority in 1..99" },
	{ "bad-slot-twice.yaml", "bad-slot-twice.yaml:13:29: slot VM 1 vCPU 1 is already polled "
				 "by CPU 1 (line 9)" },
	{ "bad-vcpu-range.yaml",
	  "bad-vcpu-range.yaml:9:24: vCPU 4 out of range: VM 1 has 4 vCPUs (0..3)" },
	{ "bad-vm-vcpus.yaml", "bad-vm-vcpus.yaml:8:12: vcpus 17 out of range 1..16" },
	{ "bad-unknown-vm.yaml", "bad-unknown-vm.yaml:10:15: slot names unknown VM 7" },
	{ "bad-dup-vm.yaml", "bad-dup-vm.yaml:9:9: duplicate VM id 1 (first at line 7)" },
	{ "bad-overlap.yaml", "bad-overlap.yaml:17:13: mmio range 0xd0000800..0xd00017ff overlaps "
			      "0xd0000000..0xd0000fff of device 'ram' (line 12)" },
	{ "bad-range-order.yaml",
	  "bad-range-order.yaml:12:45: pio range start 0x513 is above its end 0x510" },
	{ "bad-pio-end.yaml", "bad-pio-end.yaml:14:18: pio range end 0x10000 is above port 0xffff" },
	{ "bad-poller-dispatcher.yaml", "bad-poller-dispatcher.yaml:5:11: CPU 1 is both a poller "
					"and the fallback dispatcher" },
	{ "bad-dup-cpu.yaml", "bad-dup-cpu.yaml:10:10: duplicate cpu 0 (first at line 4)" },
	{ "bad-spin-us.yaml",
	  "bad-spin-us.yaml:9:5: spin_us is only valid with idle: hybrid (idle is spin)" },
};

/*
 * A device's params: reach the device model as strings with their positions; what
 * rtioreq checks of them (a mapping of scalars, unique keys) and rt_throttling's words
 * fail with one located error each.
 */
static void test_params(void **state)
{
	static const struct {
		const char *file, *want;
	} bad[] = {
		{ "bad-params-list.yaml",
		  "bad-params-list.yaml:13:17: vms[0].devices[0].params: expected a mapping" },
		{ "bad-params-nested.yaml", "bad-params-nested.yaml:13:24: "
					    "vms[0].devices[0].params.irq: expected a scalar" },
		{ "bad-params-dup.yaml",
		  "bad-params-dup.yaml:13:27: duplicate key 'irq' in vms[0].devices[0].params" },
		{ "bad-throttling.yaml",
		  "bad-throttling.yaml:3:16: rt_throttling: 'maybe' is not one of: keep, off" },
	};
	struct diags g = { .len = 0 };
	struct rtioreq_profile_plan plan;
	const struct rtioreq_profile_device *can, *wdt;
	struct rtioreq_profile *p = load_ok(PROFILES "params.yaml", &g);
	cpu_set_t all;

	all_cpus(&all);
	assert_int_equal(rtioreq_profile_validate_cpus(p, true, &all), 0);
	assert_int_equal(p->rt_throttling, RTIOREQ_PROFILE_THROTTLING_KEEP);
	assert_int_equal(p->vms[0].n_devices, 2);
	can = &p->vms[0].devices[0];
	wdt = &p->vms[0].devices[1];
	assert_int_equal(can->n_params, 3);
	assert_string_equal(can->params[0].key, "irq");
	assert_string_equal(can->params[0].value, "5");
	assert_int_equal(can->params[0].line, 19);
	assert_int_equal(can->params[0].column, 16);
	assert_string_equal(rtioreq_profile_param(can, "bitrate"), "500000");
	assert_string_equal(rtioreq_profile_param(can, "mode"), "loopback"); /* unquoted */
	assert_null(rtioreq_profile_param(can, "nope"));
	assert_int_equal(wdt->n_params, 0);
	assert_null(wdt->params);
	assert_null(rtioreq_profile_param(wdt, "irq"));
	assert_int_equal(rtioreq_profile_plan_build(p, &plan), 0);
	assert_int_equal(plan.rt_throttling, RTIOREQ_PROFILE_THROTTLING_KEEP);
	reserved_zero(p, &plan); /* params and ranges too */
	rtioreq_profile_plan_free(&plan);
	rtioreq_profile_free(p);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char path[512];

		memset(&g, 0, sizeof(g));
		snprintf(path, sizeof(path), "%s%s", PROFILES, bad[i].file);
		errno = 0;
		assert_null(rtioreq_profile_load(path, collect, &g));
		assert_int_equal(errno, EINVAL);
		if (g.errors != 1)
			fail_msg("%s: %u errors, expected 1:\n%s", path, g.errors, g.text);
		assert_diag(&g, bad[i].want);
	}
}

static void test_bad_load(void **state)
{
	for (size_t i = 0; i < sizeof(bad_load) / sizeof(bad_load[0]); i++) {
		char path[512];
		struct diags g = { .len = 0 };

		snprintf(path, sizeof(path), "%s%s", PROFILES, bad_load[i].file);
		errno = 0;
		assert_null(rtioreq_profile_load(path, collect, &g));
		assert_int_equal(errno, EINVAL);
		if (g.errors != 1)
			fail_msg("%s: %u errors, expected 1:\n%s", path, g.errors, g.text);
		assert_diag(&g, bad_load[i].want);
	}
}

static void test_bad_validate(void **state)
{
	cpu_set_t all;
	struct rtioreq_profile_plan plan;

	all_cpus(&all);
	for (size_t i = 0; i < sizeof(bad_validate) / sizeof(bad_validate[0]); i++) {
		char path[512];
		struct diags g = { .len = 0 };
		struct rtioreq_profile *p;

		snprintf(path, sizeof(path), "%s%s", PROFILES, bad_validate[i].file);
		p = load_ok(path, &g);
		assert_int_equal(rtioreq_profile_validate_cpus(p, true, &all), -EINVAL);
		if (g.errors != 1 || g.warnings)
			fail_msg("%s: %u errors and %u warnings, expected 1 error:\n%s", path,
				 g.errors, g.warnings, g.text);
		assert_diag(&g, bad_validate[i].want);
		/* No plan for an invalid profile, and planning reports nothing. */
		assert_int_equal(rtioreq_profile_plan_build(p, &plan), -EINVAL);
		assert_int_equal(rtioreq_profile_print_plan(p, stdout), -EINVAL);
		assert_int_equal(g.errors, 1);
		rtioreq_profile_free(p);
	}
}

static void test_defaults(void **state)
{
	struct diags g = { .len = 0 };
	struct rtioreq_profile *p = load_ok(PROFILES "bad-overlap.yaml", &g);

	/* client defaults to the device name; unset keys take their documented defaults. */
	assert_string_equal(p->vms[0].devices[1].name, "regs");
	assert_string_equal(p->vms[0].devices[1].client, "regs");
	assert_true(p->vms[0].completion_polling);
	assert_int_equal(p->mode, RTIOREQ_PROFILE_POLLING);
	assert_false(p->cpu_dma_latency);
	assert_int_equal(p->cores[0].policy, RTIOREQ_PROFILE_OTHER);
	assert_int_equal(p->cores[0].isolation, RTIOREQ_PROFILE_ISOLATION_NONE);
	assert_int_equal(p->cores[0].roles,
			 RTIOREQ_PROFILE_ROLE_DISPATCHER | RTIOREQ_PROFILE_ROLE_CLIENTS);
	rtioreq_profile_free(p);
}

/* Notify mode: no poller is planned, every slot is on the fallback path, one warning. */
static void test_notify_mode(void **state)
{
	char path[] = "/tmp/rtioreq-profile-XXXXXX";
	static const char yaml[] = "mode: notify\n"
				   "cores:\n"
				   "  - { cpu: 0, role: [dispatcher, clients] }\n"
				   "  - { cpu: 1, role: [poller], slots: [{ vm: 3, vcpu: 0 }] }\n"
				   "vms:\n"
				   "  - { id: 3, vcpus: 2 }\n";
	int fd = mkstemp(path);
	struct diags g = { .len = 0 };
	struct rtioreq_profile *p;
	struct rtioreq_profile_plan plan;
	cpu_set_t all;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, yaml, sizeof(yaml) - 1), (ssize_t)(sizeof(yaml) - 1));
	close(fd);
	p = load_ok(path, &g);
	unlink(path);
	all_cpus(&all);
	assert_int_equal(rtioreq_profile_validate_cpus(p, true, &all), 0);
	assert_int_equal(g.warnings, 1);
	assert_diag(&g, ":1:7: warning: mode notify: pollers are not started");
	assert_int_equal(rtioreq_profile_plan_build(p, &plan), 0);
	assert_int_equal(plan.n_threads, 2);
	assert_int_equal(rtioreq_profile_plan_owner(&plan, 3, 0), -1);
	assert_int_equal(rtioreq_profile_plan_owner(&plan, 3, 1), -1);
	rtioreq_profile_plan_free(&plan);
	rtioreq_profile_free(p);
}

static void test_missing_file(void **state)
{
	struct diags g = { .len = 0 };

	errno = 0;
	assert_null(rtioreq_profile_load(PROFILES "no-such-profile.yaml", collect, &g));
	assert_int_equal(errno, ENOENT);
	assert_int_equal(g.errors, 1);
	assert_diag(&g, "no-such-profile.yaml: cannot read: No such file or directory");
}

/* A libcyaml error the schema walk did not foresee is reported at its backtrace position. */
static void test_cyaml_report(void **state)
{
	static const char log[] = "Load: Invalid INT value: '99999999999'\n"
				  "Load: Backtrace:\n"
				  "  in mapping field 'priority' (line: 3, column: 15)\n"
				  "  in sequence entry '1' (line: 2, column: 5)\n";
	char what[128];
	unsigned int line, column;

	rtioreq__profile_cyaml_report(log, CYAML_ERR_INVALID_VALUE, what, sizeof(what), &line,
				      &column);
	assert_string_equal(what, "libcyaml: Invalid INT value: '99999999999'");
	assert_int_equal(line, 3);
	assert_int_equal(column, 15);
	rtioreq__profile_cyaml_report("", CYAML_ERR_INVALID_VALUE, what, sizeof(what), &line,
				      &column);
	assert_string_equal(what, "libcyaml: Invalid value");
	assert_int_equal(line, 1);
	assert_int_equal(column, 1);
}


/* ------------------------------------------------------------------------- */
/* Hostile input: a located error in bounded time and memory (issue #10) */

struct cost {
	struct h_cost cost; /* set by the parent */
	int loaded, valid;
	struct diags g;
};

/* A generated profile, removed as soon as its child is reaped (also when the test fails). */
static const char *generated;

/* In the child: load (and, if that works, validate) the profile at @arg. */
static void load_child(void *arg, void *out)
{
	struct cost *c = out;
	struct rtioreq_profile *p;
	cpu_set_t all;

	all_cpus(&all);
	p = rtioreq_profile_load(arg, collect, &c->g);
	c->loaded = p != NULL;
	c->valid = p && !rtioreq_profile_validate_cpus(p, false, &all);
	rtioreq_profile_free(p);
}

/* Load @path in a child process (tests/child.h): within the bounds, or the test fails. */
static void load_in_child(const char *path, struct cost *c)
{
	c->cost = h_in_child(load_child, (void *)path, c, sizeof(*c));
	if (generated)
		unlink(generated);
	generated = NULL;
	print_message("%s: %.3f s CPU, %.3f s, %ld KB peak RSS, %u errors\n", path,
		      c->cost.cpu_secs, c->cost.secs, c->cost.maxrss_kb, c->g.errors);
	h_cost_check(path, &c->cost);
}

/* Refused at load with one diagnostic containing @want, within the bounds. */
static void assert_refused(const char *path, const char *want)
{
	struct cost c;

	load_in_child(path, &c);
	assert_false(c.loaded);
	if (c.g.errors != 1)
		fail_msg("%s: %u errors, expected 1:\n%s", path, c.g.errors, c.g.text);
	assert_diag(&c.g, want);
}

/* Defect 1: aliases are refused where they are, before anything expands them. */
static void test_alias_bomb(void **state)
{
	assert_refused(PROFILES "bad-alias-bomb.yaml",
		       "bad-alias-bomb.yaml:9:7: YAML alias '*r': aliases are not allowed");
}

/* Defect 4: reader errors at the byte that caused them; an escaped NUL is refused. */
static void test_reader_errors(void **state)
{
	assert_refused(PROFILES "bad-utf8.yaml",
		       "bad-utf8.yaml:34:58: invalid leading UTF-8 octet (0xff)");
	assert_refused(PROFILES "bad-nul.yaml", "bad-nul.yaml:34:58: a NUL byte");
	assert_refused(PROFILES "bad-escaped-nul.yaml",
		       "bad-escaped-nul.yaml:27:15: a NUL character (\\0) in a string");
}

static void write_tmp(char *path, const char *text, size_t len)
{
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, text + off, len - off);

		assert_true(n > 0);
		off += (size_t)n;
	}
	close(fd);
}

/* Defect 3: 1 MB of flow nesting is refused at the first level past the limit. */
static void test_deep_nesting(void **state)
{
	size_t len = RTIOREQ_PROFILE_MAX_BYTES - 64;
	char path[] = "/tmp/rtioreq-deep-XXXXXX";
	char *text = malloc(len);

	assert_non_null(text);
	memcpy(text, "cores: ", 7);
	memset(text + 7, '[', len - 7);
	write_tmp(path, text, len);
	free(text);
	generated = path;
	/* "cores: " is level 1 (the top mapping), each '[' one more: the 32nd is column 39. */
	assert_refused(path, ":1:39: nesting deeper than 32 levels");
}

/*
 * Defect 2: 1 MiB profiles of many cores, VMs or ranges are checked in bounded time, and
 * the errors they contain stop at a bound with a count of the rest.
 */
static void test_big_profiles(void **state)
{
	static const char *const kinds[] = { "cores", "vms", "ranges", "devices" };
	size_t cap = RTIOREQ_PROFILE_MAX_BYTES;
	char *text = malloc(cap);

	assert_non_null(text);
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		char path[] = "/tmp/rtioreq-big-XXXXXX";
		size_t len = 0;
		unsigned int i = 0;
		struct cost c;

#define ADD(...) (len += (size_t)snprintf(text + len, cap - len, __VA_ARGS__))
		ADD("cores:\n  - { cpu: 0, role: [dispatcher, clients] }\n");
		if (k == 0) /* every core a duplicate of cpu 1: one error each */
			while (len < cap - 200)
				ADD("  - { cpu: 1, role: [poller], idle: spin, "
				    "slots: [{vm: 1, vcpu: %u}] }\n", i++ % 2);
		ADD("vms:\n");
		if (k == 1) /* duplicate VM ids, and more VMs than supported */
			while (len < cap - 200)
				ADD("  - { id: %u, vcpus: 1 }\n", 1 + i++ % 1000);
		else
			ADD("  - id: 1\n    vcpus: 2\n%s", k >= 2 ? "    devices:\n" : "");
		if (k == 2) { /* one device, every range overlapping its neighbour */
			ADD("      - name: d\n        ranges:\n");
			while (len < cap - 200)
				ADD("          - {type: mmio, start: %u, end: %u}\n", i * 16,
				    i * 16 + 31), i++;
		}
		if (k == 3) /* many devices, names repeating */
			while (len < cap - 200)
				ADD("      - {name: d%u, ranges: "
				    "[{type: pio, start: %u, end: %u}]}\n",
				    i % 5000, i % 65536, i % 65536), i++;
#undef ADD
		write_tmp(path, text, len);
		generated = path;
		load_in_child(path, &c);
		if (!c.loaded)
			fail_msg("%s: not loaded:\n%s", kinds[k], c.g.text);
		assert_false(c.valid);
		if (c.g.errors > 21)
			fail_msg("%s: %u diagnostics, expected at most 20 and a count of the rest",
				 kinds[k], c.g.errors);
		assert_diag(&c.g, " more errors");
	}
	free(text);
}

/* Defect 5: a FIFO (no writer) or a directory is refused at once, with a clear cause. */
static void test_not_regular(void **state)
{
	char dir[] = "/tmp/rtioreq-fifo-XXXXXX", fifo[64];

	assert_non_null(mkdtemp(dir));
	snprintf(fifo, sizeof(fifo), "%s/profile.yaml", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_refused(fifo, "profile.yaml: cannot read: not a regular file (a FIFO)");
	assert_refused(dir, ": cannot read: is a directory");
	unlink(fifo);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shipped_profiles), cmocka_unit_test(test_plan_dev_2cpu),
		cmocka_unit_test(test_plan_auto_8cpu),	 cmocka_unit_test(test_host_check),
		cmocka_unit_test(test_bad_load),	 cmocka_unit_test(test_bad_validate),
		cmocka_unit_test(test_defaults),	 cmocka_unit_test(test_notify_mode),
		cmocka_unit_test(test_missing_file),	 cmocka_unit_test(test_cyaml_report),
		cmocka_unit_test(test_alias_bomb),	 cmocka_unit_test(test_reader_errors),
		cmocka_unit_test(test_deep_nesting),	 cmocka_unit_test(test_big_profiles),
		cmocka_unit_test(test_not_regular),
		cmocka_unit_test(test_params),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
