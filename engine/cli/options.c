// SPDX-License-Identifier: MIT
/* rtioreq program: option parsing and the one-line error exit shared by every command. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "cli.h"

const char *cli_cmd = "";
int cli_argc;
char **cli_argv;

void cli_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "rtioreq%s%s: ", *cli_cmd ? " " : "", cli_cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(CLI_EXIT_USAGE);
}

uint64_t cli_u64(const char *opt, const char *s, uint64_t min, uint64_t max)
{
	char *end;
	uint64_t v, mul = 1;

	errno = 0;
	if (s && *s == '-' && isdigit((unsigned char)s[1]))
		cli_die("%s: '%s' is negative (range %llu..%llu)", opt, s, (unsigned long long)min,
			(unsigned long long)max);
	/* decimal only: strtoull's base 0 would read 010 as 8 and 0x10 as 16 */
	if (!s || !isdigit((unsigned char)*s))
		cli_die("%s: '%s' is not a number", opt, s ? s : "");
	if (s[0] == '0' && isdigit((unsigned char)s[1]))
		cli_die("%s: '%s' has a leading zero (numbers are decimal)", opt, s);
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		cli_die("%s: '%s' is too large", opt, s);
	if (end == s)
		cli_die("%s: '%s' is not a number", opt, s);
	if (*end == 'k' || *end == 'K')
		mul = 1000, end++;
	else if (*end == 'M')
		mul = 1000000, end++;
	else if (*end == 'G')
		mul = 1000000000, end++;
	if (*end)
		cli_die("%s: '%s' is not a number (suffixes: k, M, G)", opt, s);
	if (v > UINT64_MAX / mul)
		cli_die("%s: '%s' is too large", opt, s);
	v *= mul;
	if (v < min || v > max)
		cli_die("%s: %s is out of range %llu..%llu", opt, s, (unsigned long long)min,
			(unsigned long long)max);
	return v;
}

uint64_t cli_duration(const char *opt, const char *s)
{
	static const struct {
		const char *sfx;
		double ns;
	} units[] = { { "ns", 1 }, { "us", 1e3 }, { "ms", 1e6 }, { "s", 1e9 },
		      { "m", 60e9 }, { "h", 3600e9 }, { "", 1e9 } };
	char *end;
	double v;
	size_t digits;

	errno = 0;
	if (s && *s == '-' && (isdigit((unsigned char)s[1]) || s[1] == '.'))
		cli_die("%s: '%s' is negative", opt, s);
	/*
	 * Decimal digits (and a point), then the unit: strtod alone would also take hex
	 * (0x10), exponents, inf and nan; whatever it reads past the digits is refused.
	 */
	digits = s ? strspn(s, "0123456789.") : 0;
	v = digits ? strtod(s, &end) : 0;
	if (!digits || end != s + digits)
		cli_die("%s: '%s' is not a duration (e.g. 500us, 2s)", opt, s);
	if (end == s || errno || !isfinite(v) || v <= 0)
		cli_die("%s: '%s' is not a positive duration", opt, s);
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].sfx))
			continue;
		v *= units[i].ns;
		if (v < 1 || v > 1e15)
			cli_die("%s: '%s' is out of range 1ns..11d", opt, s);
		return (uint64_t)v;
	}
	cli_die("%s: '%s' has an unknown unit (ns, us, ms, s, m, h)", opt, s);
}

unsigned int cli_cpulist(const char *opt, const char *s, int *cpus, unsigned int max)
{
	unsigned int n = 0;
	const char *p = s;

	if (!*s)
		cli_die("%s: empty CPU list", opt);
	while (*p) {
		char *end;
		long a, b;

		if (!isdigit((unsigned char)*p))
			cli_die("%s: '%s' is not a CPU list (e.g. 1,3-5)", opt, s);
		a = b = strtol(p, &end, 10);
		if (*end == '-') {
			p = end + 1;
			if (!isdigit((unsigned char)*p))
				cli_die("%s: '%s' is not a CPU list (e.g. 1,3-5)", opt, s);
			b = strtol(p, &end, 10);
		}
		if (a > b || b >= 4096)
			cli_die("%s: bad CPU range in '%s'", opt, s);
		for (long c = a; c <= b; c++) {
			if (n == max)
				cli_die("%s: more than %u CPUs in '%s'", opt, max, s);
			for (unsigned int i = 0; i < n; i++)
				if (cpus[i] == c)
					cli_die("%s: CPU %ld is given twice in '%s'", opt, c, s);
			cpus[n++] = (int)c;
		}
		p = end;
		if (*p == ',' && p[1])
			p++;
		else if (*p)
			cli_die("%s: '%s' is not a CPU list (e.g. 1,3-5)", opt, s);
	}
	return n;
}

bool cli_mode(const char *opt, const char *s)
{
	if (!strcmp(s, "polling"))
		return true;
	if (!strcmp(s, "notify"))
		return false;
	cli_die("%s: '%s' is not a mode (polling, notify)", opt, s);
}

void cli_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		if ((unsigned char)*s >= 0x20)
			fputc(*s, f);
	}
	fputc('"', f);
}

void cli_json_meta(FILE *f)
{
	struct utsname u;
	char cmdline[4096];
	size_t len = 0;

	cmdline[0] = '\0';
	for (int i = 0; i < cli_argc && len < sizeof(cmdline); i++) {
		int n = snprintf(cmdline + len, sizeof(cmdline) - len, "%s%s", i ? " " : "",
				 cli_argv[i]);

		if (n < 0)
			break;
		len += (size_t)n;
	}
	fprintf(f, "\"version\": \"%s\", \"library_version\": \"%s\", \"cmdline\": ",
		RTIOREQ_VERSION_STRING, rtioreq_version_string());
	cli_json_str(f, cmdline);
	if (uname(&u)) {
		fprintf(f, ", \"sysinfo\": null, ");
		return;
	}
	fprintf(f, ", \"sysinfo\": {\"sysname\": ");
	cli_json_str(f, u.sysname);
	fprintf(f, ", \"nodename\": ");
	cli_json_str(f, u.nodename);
	fprintf(f, ", \"release\": ");
	cli_json_str(f, u.release);
	fprintf(f, ", \"version\": ");
	cli_json_str(f, u.version);
	fprintf(f, ", \"machine\": ");
	cli_json_str(f, u.machine);
	fprintf(f, "}, ");
}

FILE *cli_json_open(const char *file)
{
	FILE *f;

	if (!file || !strcmp(file, "-"))
		return stdout;
	f = fopen(file, "w");
	if (!f)
		cli_die("--json: cannot write %s: %s", file, strerror(errno));
	return f;
}

int cli_check_cpu(const char *opt, int cpu)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set))
		cli_die("sched_getaffinity: %s", strerror(errno));
	if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &set))
		cli_die("%s: CPU %d is not available to this process (%d online)", opt, cpu,
			cli_online_cpus());
	return cpu;
}

int cli_online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (int)n : 1;
}

const char *cli_engine_error(int err)
{
	if (err == ENOSYS)
		return "futex_waitv(2) is not available (Linux 5.16 or later is needed; "
		       "or a seccomp policy denies it)";
	return strerror(err);
}
