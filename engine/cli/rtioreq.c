// SPDX-License-Identifier: MIT
/* rtioreq: command dispatch only (options.c parses, report.c prints, one file per command). */
#include <string.h>

#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: rtioreq COMMAND [OPTIONS]\n"
		"\n"
		"commands:\n"
		"  run     simulated VM + engine in one process; prints counts and round-trip\n"
		"          latency (the demo: 'rtioreq run' with no options)\n"
		"  serve   the engine side of a region created by another process (hv)\n"
		"  hv      the simulated hypervisor side: creates a region, drives vCPUs\n"
		"  check   validate a real-time profile (rt-configs/) and print its plan\n"
		"  kvm     boot a Linux guest under /dev/kvm through the engine (docs/kvm.md)\n"
		"\n"
		"'rtioreq COMMAND --help' lists a command's options.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	cli_cmd = argv[1];
	if (!strcmp(argv[1], "run"))
		return cli_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "serve"))
		return cli_serve(argc - 1, argv + 1);
	if (!strcmp(argv[1], "hv"))
		return cli_hv(argc - 1, argv + 1);
	if (!strcmp(argv[1], "check"))
		return cli_check(argc - 1, argv + 1);
	if (!strcmp(argv[1], "kvm"))
		return cli_kvm(argc - 1, argv + 1);
	cli_cmd = "";
	cli_die("unknown command '%s' (run, serve, hv, check, kvm; see rtioreq --help)", argv[1]);
}
