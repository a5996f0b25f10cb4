/* SPDX-License-Identifier: MIT */
/*
 * The rtioreq program: shared option parsing and output helpers. Every bad input ends
 * in one line on stderr naming the command, the option and the cause, and exit code 2;
 * a run that lost, duplicated or corrupted a request exits 1.
 */
#ifndef RTIOREQ_CLI_H
#define RTIOREQ_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "rtioreq.h"

#define CLI_EXIT_FAIL 1	 /* the run went wrong (lost/duplicated/mismatched requests) */
#define CLI_EXIT_USAGE 2 /* bad input or setup error */

extern const char *cli_cmd; /* "run", "serve", "hv": prefix of error messages */
extern int cli_argc;	    /* the command line, for JSON output */
extern char **cli_argv;

/* Print "rtioreq <cmd>: <message>" and exit with CLI_EXIT_USAGE. */
void cli_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Integer with optional k/M/G suffix (x1000). Dies with the option name on error. */
uint64_t cli_u64(const char *opt, const char *s, uint64_t min, uint64_t max);
/* Duration: a number with suffix ns, us, ms, s (default), m or h; returns ns. */
uint64_t cli_duration(const char *opt, const char *s);
/* CPU list "0,2-3" -> up to @max CPUs in @cpus; returns the count. */
unsigned int cli_cpulist(const char *opt, const char *s, int *cpus, unsigned int max);
/* "polling" -> true, "notify" -> false. */
bool cli_mode(const char *opt, const char *s);
/* Open --json=FILE ("-" or NULL: stdout). */
FILE *cli_json_open(const char *file);
/* A JSON string literal of @s (quotes and backslashes escaped, control characters dropped). */
void cli_json_str(FILE *f, const char *s);
/*
 * The members every JSON object of the program starts with, as cyclictest's --json:
 * "version" (program and library), "cmdline", "sysinfo" (uname), each followed by ", ".
 */
void cli_json_meta(FILE *f);

/* Why rtioreq_engine_create() failed with @err, in words (ENOSYS: no futex_waitv). */
const char *cli_engine_error(int err);

int cli_online_cpus(void);
/* @cpu must be one this process may run on; returns it, or dies naming @opt. */
int cli_check_cpu(const char *opt, int cpu);

/* Print the summary / JSON of a simulated run and its VM's counters. */
struct cli_report {
	const char *mode;
	unsigned int vcpus, pollers;
	uint64_t requested; /* asked for (0: duration run) */
	const struct rtioreq_sim_result *res;
	const struct rtioreq_vm_stats *st; /* NULL: engine in another process */
	uint64_t sleeps;		   /* pollers' hybrid-idle sleeps */
};
void cli_report_text(FILE *f, const struct cli_report *r);
void cli_report_json(FILE *f, const struct cli_report *r);
/* JSON member "@key": {"min", percentiles, "max", "mean", "count"} of @h (ns). */
void cli_json_hist(FILE *f, const char *key, const struct rtioreq_hist *h);
/* 0 if every request completed exactly once with the right value, else CLI_EXIT_FAIL. */
int cli_report_verdict(const struct cli_report *r);

/* --verbose: events of @eng printed on stderr from their own thread (rtioreq_events_stop()). */
struct rtioreq_events *cli_events_start(struct rtioreq_engine *eng);

/* rtioreq run PROFILE */
struct cli_profile_opts {
	const char *path;
	uint64_t requests, duration_ns, seed, think_ns; /* per VM */
	unsigned int unmapped;
	int producer_cpu; /* -1: chosen from the plan */
	bool json, verbose;
	const char *json_file;
};
int cli_run_profile(const struct cli_profile_opts *o);

int cli_run(int argc, char **argv);
int cli_check(int argc, char **argv);
int cli_kvm(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_hv(int argc, char **argv);

#endif /* RTIOREQ_CLI_H */
