// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the profile loader, validator and planner on any bytes (UTF-8,
 * UTF-16 with a BOM, aliases, NULs...), loaded from memory (tests/fuzz/README.md).
 *
 * Invariants (each failure aborts):
 *  - a load fails with EINVAL (and at least one error reported), EFBIG or ENOMEM; a
 *    load that succeeds reported no error;
 *  - no more than 20 diagnostics and the "... and N more" line per load or validation;
 *    every diagnostic's text is "name:line:column: what" or "name: what";
 *  - a document holding an alias never loads (libyaml's own scanner decides);
 *  - validation is 0 or -EINVAL, -EINVAL with at least one error, and the same twice;
 *  - a valid profile plans: every slot owned by a poller thread or the fallback path,
 *    each poller's slot count matching, one slot per vCPU of every VM, and the plan
 *    prints.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "rtioreq/rt/profile.h"
#include "rt/profile_pvt.h"

#define NAME "fuzz.yaml"

#include "fuzz_check.h"

struct count {
	unsigned int diags, errors;
};

static void diag(void *ctx, const struct rtioreq_profile_diag *d)
{
	struct count *c = ctx;
	char pos[64];

	c->diags++;
	c->errors += d->severity == RTIOREQ_PROFILE_ERROR;
	CHECK(!strncmp(d->text, NAME ":", strlen(NAME ":")), "text '%s'", d->text);
	CHECK(strstr(d->text, d->what), "text '%s' lacks what '%s'", d->text, d->what);
	if (d->line) {
		snprintf(pos, sizeof(pos), NAME ":%u:%u: ", d->line, d->column);
		CHECK(!strncmp(d->text, pos, strlen(pos)) && d->column, "text '%s'", d->text);
	}
}

/* Does libyaml's scanner see an alias before any error? */
static bool has_alias(const uint8_t *data, size_t size)
{
	yaml_parser_t ps;
	yaml_token_t tok;
	bool alias = false, end = false;

	if (!yaml_parser_initialize(&ps))
		abort();
	yaml_parser_set_input_string(&ps, data, size);
	for (unsigned int n = 0; !alias && !end && n < 100000; n++) {
		if (!yaml_parser_scan(&ps, &tok))
			break;
		alias = tok.type == YAML_ALIAS_TOKEN;
		end = tok.type == YAML_STREAM_END_TOKEN;
		yaml_token_delete(&tok);
	}
	yaml_parser_delete(&ps);
	return alias;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct count c = { 0 }, v1, v2;
	struct rtioreq_profile_plan plan;
	struct rtioreq_profile *p;
	cpu_set_t all;
	int r1, r2, e;

	p = rtioreq__profile_load_buffer(NAME, (const char *)data, size, diag, &c);
	e = errno;
	CHECK(c.diags <= 21, "%u diagnostics for one load", c.diags);
	if (!p) {
		CHECK(e == EINVAL || e == EFBIG || e == ENOMEM, "errno %d", e);
		CHECK(e == ENOMEM || c.errors, "load failed (errno %d) without an error", e);
		return 0;
	}
	CHECK(!c.errors, "loaded with %u errors", c.errors);
	CHECK(!has_alias(data, size), "a profile with an alias loaded");

	CPU_ZERO(&all);
	for (int i = 0; i < CPU_SETSIZE; i++)
		CPU_SET(i, &all);
	c = (struct count){ 0 };
	r1 = rtioreq_profile_validate_cpus(p, false, &all);
	v1 = c;
	c = (struct count){ 0 };
	r2 = rtioreq_profile_validate_cpus(p, false, &all);
	v2 = c;
	CHECK(r1 == 0 || r1 == -EINVAL || r1 == -ENOMEM, "validate %d", r1);
	CHECK(r1 == r2 && v1.diags == v2.diags && v1.errors == v2.errors,
	      "validation differs: %d/%u vs %d/%u", r1, v1.errors, r2, v2.errors);
	CHECK(v1.diags <= 21, "%u diagnostics for one validation", v1.diags);
	CHECK((r1 == -EINVAL) == (v1.errors > 0), "validate %d with %u errors", r1, v1.errors);
	if (!r1) {
		unsigned int nslots = 0, npoll = 0;
		FILE *null = fopen("/dev/null", "w");

		for (unsigned int i = 0; i < p->n_vms; i++)
			nslots += (unsigned int)p->vms[i].vcpus;
		CHECK(!rtioreq_profile_plan_build(p, &plan), "a valid profile does not plan");
		CHECK(plan.n_slots == nslots, "%u slots planned for %u vCPUs", plan.n_slots,
		      nslots);
		CHECK(plan.n_threads >= 2, "%u threads", plan.n_threads);
		for (unsigned int t = 0; t < plan.n_threads; t++) {
			unsigned int owned = 0;

			if (plan.threads[t].kind != RTIOREQ_PROFILE_THREAD_POLLER)
				continue;
			npoll++;
			for (unsigned int s = 0; s < plan.n_slots; s++)
				owned += plan.slots[s].thread == (int)t;
			CHECK(owned == plan.threads[t].n_slots, "poller %u: %u slots, says %u", t,
			      owned, plan.threads[t].n_slots);
		}
		for (unsigned int s = 0; s < plan.n_slots; s++) {
			int t = plan.slots[s].thread;

			CHECK(t == -1 || ((unsigned int)t < plan.n_threads &&
					  plan.threads[t].kind == RTIOREQ_PROFILE_THREAD_POLLER),
			      "slot %u owned by %d", s, t);
			CHECK(rtioreq_profile_plan_owner(&plan, plan.slots[s].vm_id,
							 plan.slots[s].vcpu) == t,
			      "owner lookup disagrees");
		}
		CHECK(npoll == plan.n_threads - 2, "%u pollers of %u threads", npoll,
		      plan.n_threads);
		rtioreq_profile_plan_free(&plan);
		CHECK(null && !rtioreq_profile_print_plan(p, null), "plan does not print");
		fclose(null);
	}
	rtioreq_profile_free(p);
	return 0;
}
