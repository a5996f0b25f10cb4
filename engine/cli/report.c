// SPDX-License-Identifier: MIT
/* rtioreq program: the text and JSON report of a simulated run, and its verdict. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const struct {
	const char *label, *key;
	double p;
} pcts[] = { { "p50", "p50", 50 },	    { "p90", "p90", 90 },
	     { "p99", "p99", 99 },	    { "p99.9", "p999", 99.9 },
	     { "p99.99", "p9999", 99.99 } };

static double throughput(const struct rtioreq_sim_result *res)
{
	return res->ns ? (double)res->completed * 1e9 / (double)res->ns : 0.0;
}

void cli_report_text(FILE *f, const struct cli_report *r)
{
	const struct rtioreq_sim_result *res = r->res;
	const struct rtioreq_hist *h = &res->rtt;

	fprintf(f, "mode %s, %u vCPUs, %u poller%s\n", r->mode, r->vcpus, r->pollers,
		r->pollers == 1 ? "" : "s");
	fprintf(f, "requests %llu  completed %llu  lost %llu  duplicated %llu  mismatched %llu\n",
		(unsigned long long)res->requests, (unsigned long long)res->completed,
		(unsigned long long)res->lost, (unsigned long long)res->duplicated,
		(unsigned long long)res->mismatched);
	if (r->st)
		fprintf(f, "engine: invalid %llu  handler_errors %llu  unclaimed %llu  polled %llu  "
			   "fallback %llu  notified %llu\n",
			(unsigned long long)r->st->invalid, (unsigned long long)r->st->handler_errors,
			(unsigned long long)r->st->unclaimed, (unsigned long long)r->st->polled,
			(unsigned long long)r->st->fallback, (unsigned long long)r->st->notified);
	fprintf(f, "upcalls %llu  poller sleeps %llu  duration %.3f s  throughput %.0f requests/s\n",
		(unsigned long long)res->upcalls, (unsigned long long)r->sleeps,
		(double)res->ns / 1e9, throughput(res));
	fprintf(f, "round trip ns: min %llu", (unsigned long long)(h->count ? h->min : 0));
	for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++)
		fprintf(f, "  %s %llu", pcts[i].label,
			(unsigned long long)rtioreq_hist_percentile(h, pcts[i].p));
	fprintf(f, "  max %llu  mean %.0f\n", (unsigned long long)h->max,
		rtioreq_hist_mean(h));
	if (cli_report_verdict(r))
		fprintf(f, "FAILED: not every request completed exactly once with its value\n");
}

void cli_report_json(FILE *f, const struct cli_report *r)
{
	const struct rtioreq_sim_result *res = r->res;
	const struct rtioreq_hist *h = &res->rtt;
	const struct rtioreq_vm_stats *st = r->st;

	fputc('{', f);
	cli_json_meta(f);
	fprintf(f, "\"mode\": \"%s\", \"vcpus\": %u, \"pollers\": %u, ", r->mode, r->vcpus,
		r->pollers);
	fprintf(f, "\"requests\": %llu, \"completed\": %llu, \"lost\": %llu, "
		   "\"duplicated\": %llu, \"mismatched\": %llu, ",
		(unsigned long long)res->requests, (unsigned long long)res->completed,
		(unsigned long long)res->lost, (unsigned long long)res->duplicated,
		(unsigned long long)res->mismatched);
	if (st)
		fprintf(f, "\"invalid\": %llu, \"handler_errors\": %llu, \"unclaimed\": %llu, ",
			(unsigned long long)st->invalid, (unsigned long long)st->handler_errors,
			(unsigned long long)st->unclaimed);
	else
		fprintf(f, "\"invalid\": null, \"handler_errors\": null, \"unclaimed\": null, ");
	fprintf(f, "\"upcalls\": %llu, \"poller_sleeps\": %llu, \"duration_s\": %.6f, "
		   "\"throughput_rps\": %.0f, ",
		(unsigned long long)res->upcalls, (unsigned long long)r->sleeps,
		(double)res->ns / 1e9, throughput(res));
	cli_json_hist(f, "latency_ns", h);
	if (st)
		fprintf(f, ", \"engine\": {\"dispatched\": %llu, \"completed\": %llu, "
			   "\"polled\": %llu, \"fallback\": %llu, \"cleared\": %llu, "
			   "\"forced\": %llu, \"notified\": %llu}",
			(unsigned long long)st->dispatched, (unsigned long long)st->completed,
			(unsigned long long)st->polled, (unsigned long long)st->fallback,
			(unsigned long long)st->cleared, (unsigned long long)st->forced,
			(unsigned long long)st->notified);
	fprintf(f, ", \"ok\": %s}\n", cli_report_verdict(r) ? "false" : "true");
}

void cli_json_hist(FILE *f, const char *key, const struct rtioreq_hist *h)
{
	fprintf(f, "\"%s\": {\"min\": %llu", key, (unsigned long long)(h->count ? h->min : 0));
	for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++)
		fprintf(f, ", \"%s\": %llu", pcts[i].key,
			(unsigned long long)rtioreq_hist_percentile(h, pcts[i].p));
	fprintf(f, ", \"max\": %llu, \"mean\": %.1f, \"count\": %llu}",
		(unsigned long long)h->max, rtioreq_hist_mean(h), (unsigned long long)h->count);
}

int cli_report_verdict(const struct cli_report *r)
{
	const struct rtioreq_sim_result *res = r->res;

	if (res->lost || res->duplicated || res->mismatched || res->completed != res->requests ||
	    (r->requested && res->requests != r->requested))
		return CLI_EXIT_FAIL;
	if (r->st && (r->st->invalid || r->st->handler_errors))
		return CLI_EXIT_FAIL; /* the simulated workload issues only valid requests */
	return 0;
}

static void event_print(void *ctx, const struct rtioreq_event *e)
{
	switch (e->kind) {
	case RTIOREQ_EVENT_SLOT_MOVED:
		if (e->poller_tid)
			fprintf(stderr, "rtioreq %s: event: VM %u vCPU %d: slot moved to poller tid %d\n",
				cli_cmd, e->vm_id, e->vcpu, (int)e->poller_tid);
		else
			fprintf(stderr, "rtioreq %s: event: VM %u vCPU %d: slot moved to the fallback "
					"path\n", cli_cmd, e->vm_id, e->vcpu);
		break;
	case RTIOREQ_EVENT_POLLER_SLEPT:
		fprintf(stderr, "rtioreq %s: event: poller tid %d slept %llu times (total %llu)\n",
			cli_cmd, (int)e->poller_tid, (unsigned long long)e->count,
			(unsigned long long)e->total);
		break;
	case RTIOREQ_EVENT_DROPPED:
		fprintf(stderr, "rtioreq %s: event: %llu more events this period not shown\n", cli_cmd,
			(unsigned long long)e->count);
		break;
	default:
		fprintf(stderr, "rtioreq %s: event: VM %u vCPU %d: %s x%llu (total %llu)\n", cli_cmd,
			e->vm_id, e->vcpu, rtioreq_event_name(e->kind), (unsigned long long)e->count,
			(unsigned long long)e->total);
	}
}

struct rtioreq_events *cli_events_start(struct rtioreq_engine *eng)
{
	struct rtioreq_events *ev = rtioreq_events_start(eng, &(struct rtioreq_events_attr){
		.fn = event_print, .period_ms = 100, .thread = RTIOREQ_THREAD_ATTR_DEFAULT });

	if (!ev)
		cli_die("--verbose: events: %s", strerror(errno));
	return ev;
}
