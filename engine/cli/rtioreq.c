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
		"'rtioreq COMMAND --help' lists a command's options; 'rtioreq --version' the\n"
		"version of the program and of the library it runs with.\n");
}

int main(int argc, char **argv)
{
	cli_argc = argc;
	cli_argv = argv;
	if (argc < 2) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
		printf("rtioreq %s (library %s; kvm %s, profiles %s)\n", RTIOREQ_VERSION_STRING,
		       rtioreq_version_string(), RTIOREQ_HAVE_KVM ? "yes" : "no",
		       RTIOREQ_HAVE_PROFILES ? "yes" : "no");
		return 0;
	}
	cli_cmd = argv[1];
	if (!strcmp(argv[1], "run"))
		return cli_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "serve"))
		return cli_serve(argc - 1, argv + 1);
	if (!strcmp(argv[1], "hv"))
		return cli_hv(argc - 1, argv + 1);
#if RTIOREQ_HAVE_PROFILES
	if (!strcmp(argv[1], "check"))
		return cli_check(argc - 1, argv + 1);
#else
	if (!strcmp(argv[1], "check"))
		cli_die("this rtioreq was built without profile support (RTIOREQ_BUILD_PROFILES)");
#endif
#if RTIOREQ_HAVE_KVM
	if (!strcmp(argv[1], "kvm"))
		return cli_kvm(argc - 1, argv + 1);
#else
	if (!strcmp(argv[1], "kvm"))
		cli_die("this rtioreq was built without the KVM trap source (RTIOREQ_BUILD_KVM)");
#endif
	cli_cmd = "";
	cli_die("unknown command '%s' (run, serve, hv, check, kvm; see rtioreq --help)", argv[1]);
}
