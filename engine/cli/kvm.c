// SPDX-License-Identifier: MIT
/*
 * rtioreq kvm: boot a Linux guest under KVM with every port-I/O and MMIO exit served
 * by the engine through the vCPU's slot (docs/kvm.md). The trap source (kvm.h) is the
 * hypervisor side; this file is the service side: one engine, one VM attached paused
 * to the trap source's region, the PC device models (pcdev.h), a poller (polling
 * mode) or the fallback path (notify mode), then the run and its report.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "rtioreq/hv/kvm.h"
#include "rtioreq/devices/pcdev.h"

#define MARKER "RTIOREQ-GUEST-UP"
#define BANNER "Linux version"

struct console {
	pthread_mutex_t lock;
	int fd;
	char buf[4096];
	size_t len;
	char tail[32]; /* the last bytes, to spot the marker and the banner */
	size_t tlen;
	uint64_t marker_ns, banner_ns; /* since the run started; 0: not seen */
	struct rtioreq_kvm *k;
};

struct kvm_opts {
	const char *kernel, *initrd, *cmdline, *json_file;
	bool polling, inline_io, json;
	uint64_t mem, timeout_ns;
	int poller_cpu, vcpu_cpu;
};

static void kvm_usage(FILE *f)
{
	fprintf(f,
		"usage: rtioreq kvm --kernel=BZIMAGE [--initrd=FILE] [OPTIONS]\n"
		"Boot a Linux guest under /dev/kvm. Every port-I/O and MMIO exit becomes a\n"
		"request in the vCPU's slot, served by the engine's PC device models (16550A\n"
		"UART at 0x3f8 with IRQ 4, i8042 reset, CMOS RTC, PCI config mechanism #1);\n"
		"the console is printed on stdout, a summary on stderr at the end.\n"
		"scripts/fetch-guest.sh fetches Debian's cloud kernel and a busybox initramfs.\n"
		"\n"
		"  -k, --kernel=FILE        bzImage (boot protocol >= 2.12, 64-bit entry)\n"
		"  -i, --initrd=FILE        initramfs\n"
		"  -m, --mode=MODE          polling (a poller serves the slot, the vCPU spins for\n"
		"                           COMPLETE) or notify (upcall, dispatcher, client\n"
		"                           threads, completion notification); default polling\n"
		"  -I, --inline             serve exits in the vCPU thread through the same\n"
		"                           device models, bypassing the slots (baseline)\n"
		"  -l, --cmdline=STRING     kernel command line, default\n"
		"                           \"%s\"\n"
		"  -M, --mem=SIZE           guest RAM, MiB or with suffix M/G (binary), 64M..3G,\n"
		"                           default 256M\n"
		"  -c, --poller-cpu=CPU     CPU of the poller (polling mode), default the last\n"
		"  -C, --vcpu-cpu=CPU       CPU of the vCPU thread, default 0 (-1: unpinned)\n"
		"  -t, --timeout=T          stop the guest after T (ns, us, ms, s, m, h; default\n"
		"                           s), default 120s\n"
		"  -j, --json[=FILE]        print the summary as one JSON object (to FILE, '-'\n"
		"                           stdout) instead of the text on stderr\n"
		"  -h, --help\n"
		"Exit status: 0 the guest rebooted (i8042 or triple fault) with no invalid or\n"
		"stranded request, 1 it did not (timeout, crash, ...), 2 bad input or setup\n"
		"error (e.g. no /dev/kvm).\n",
		RTIOREQ_KVM_CMDLINE_DEFAULT);
}

static uint64_t parse_mem(const char *s)
{
	char *end;
	unsigned long long v;
	uint64_t shift = 20;

	errno = 0;
	if (!*s || *s == '-')
		cli_die("--mem: '%s' is not a size", s);
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		cli_die("--mem: '%s' is not a size", s);
	if (*end == 'M' || *end == 'm')
		end++;
	else if (*end == 'G' || *end == 'g')
		shift = 30, end++;
	if (*end)
		cli_die("--mem: '%s' is not a size (MiB, or suffix M or G)", s);
	if (v > (RTIOREQ_KVM_MEM_MAX >> shift) || (v << shift) < (64ull << 20))
		cli_die("--mem: %s is out of range 64M..3G", s);
	return (uint64_t)v << shift;
}

static int parse_cpu(const char *opt, const char *s, bool allow_none)
{
	if (allow_none && !strcmp(s, "-1"))
		return -1;
	return cli_check_cpu(opt, (int)cli_u64(opt, s, 0, 4095));
}

static void parse(int argc, char **argv, struct kvm_opts *o)
{
	static const struct option lo[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "mode", required_argument, NULL, 'm' },
		{ "inline", no_argument, NULL, 'I' },
		{ "cmdline", required_argument, NULL, 'l' },
		{ "mem", required_argument, NULL, 'M' },
		{ "poller-cpu", required_argument, NULL, 'c' },
		{ "vcpu-cpu", required_argument, NULL, 'C' },
		{ "timeout", required_argument, NULL, 't' },
		{ "json", optional_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	int c, ncpu = cli_online_cpus();

	*o = (struct kvm_opts){ .polling = true, .mem = RTIOREQ_KVM_MEM_DEFAULT,
				.timeout_ns = 120000000000ull, .poller_cpu = ncpu - 1,
				.vcpu_cpu = 0 };
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":k:i:m:Il:M:c:C:t:j::h", lo, NULL)) != -1) {
		switch (c) {
		case 'k': o->kernel = optarg; break;
		case 'i': o->initrd = optarg; break;
		case 'm': o->polling = cli_mode("--mode", optarg); break;
		case 'I': o->inline_io = true; break;
		case 'l': o->cmdline = optarg; break;
		case 'M': o->mem = parse_mem(optarg); break;
		case 'c': o->poller_cpu = parse_cpu("--poller-cpu", optarg, false); break;
		case 'C': o->vcpu_cpu = parse_cpu("--vcpu-cpu", optarg, true); break;
		case 't': o->timeout_ns = cli_duration("--timeout", optarg); break;
		case 'j':
			o->json = true;
			o->json_file = optarg;
			break;
		case 'h': kvm_usage(stdout); exit(0);
		case ':': cli_die("option %s needs a value", argv[optind - 1]);
		default: cli_die("unknown option '%s' (see rtioreq kvm --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		cli_die("unexpected argument '%s'", argv[optind]);
	if (!o->kernel)
		cli_die("--kernel=BZIMAGE is required (scripts/fetch-guest.sh fetches one)");
	if (access(o->kernel, R_OK))
		cli_die("--kernel: %s: %s", o->kernel, strerror(errno));
	if (o->initrd && access(o->initrd, R_OK))
		cli_die("--initrd: %s: %s", o->initrd, strerror(errno));
}

/* ---------------------------------------------------------------------------------- */
/* Callbacks of the device models */

static void con_flush(struct console *c)
{
	size_t off = 0;

	while (off < c->len) {
		ssize_t n = write(c->fd, c->buf + off, c->len - off);

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			break; /* console gone: drop the output, keep the guest running */
		}
		off += (size_t)n;
	}
	c->len = 0;
}

static void seen(struct console *c, const char *what, uint64_t *at)
{
	size_t n = strlen(what);

	if (!*at && c->tlen >= n && !memcmp(c->tail + c->tlen - n, what, n)) {
		*at = rtioreq_kvm_elapsed_ns(c->k);
		if (!*at)
			*at = 1;
	}
}

/* UART THR: a handler (poller or client thread) calls it for every byte. */
static void con_out(void *ctx, uint8_t byte)
{
	struct console *c = ctx;

	pthread_mutex_lock(&c->lock);
	c->buf[c->len++] = (char)byte;
	if (c->tlen == sizeof(c->tail)) {
		memmove(c->tail, c->tail + 1, sizeof(c->tail) - 1);
		c->tlen--;
	}
	c->tail[c->tlen++] = (char)byte;
	seen(c, MARKER, &c->marker_ns);
	seen(c, BANNER, &c->banner_ns);
	if (byte == '\n' || c->len == sizeof(c->buf))
		con_flush(c);
	pthread_mutex_unlock(&c->lock);
}

/* i8042 command 0xfe: end the VM (never blocks; the vCPU finishes its request). */
static void on_reset(void *ctx)
{
	rtioreq_kvm_stop(ctx, RTIOREQ_KVM_REBOOT, "i8042 reset (command 0xfe)");
}

static int inline_handle(void *ctx, struct rtioreq_req *req)
{
	struct rtioreq_pcdev **pc = ctx;

	return rtioreq_pcdev_handle(*pc, req);
}

/* ---------------------------------------------------------------------------------- */
/* Report */

static const struct {
	const char *label, *key;
	double p;
} pcts[] = { { "p50", "p50", 50 }, { "p90", "p90", 90 }, { "p99", "p99", 99 },
	     { "p99.9", "p999", 99.9 } };

static void hist_text(FILE *f, const char *what, const struct rtioreq_hist *h)
{
	fprintf(f, "%s ns: min %llu", what, (unsigned long long)(h->count ? h->min : 0));
	for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++)
		fprintf(f, "  %s %llu", pcts[i].label,
			(unsigned long long)rtioreq_hist_percentile(h, pcts[i].p));
	fprintf(f, "  max %llu  mean %.0f  (n %llu)\n", (unsigned long long)h->max,
		rtioreq_hist_mean(h), (unsigned long long)h->count);
}

static void hist_json(FILE *f, const char *key, const struct rtioreq_hist *h)
{
	fprintf(f, "\"%s\": {\"count\": %llu, \"min\": %llu", key, (unsigned long long)h->count,
		(unsigned long long)(h->count ? h->min : 0));
	for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++)
		fprintf(f, ", \"%s\": %llu", pcts[i].key,
			(unsigned long long)rtioreq_hist_percentile(h, pcts[i].p));
	fprintf(f, ", \"max\": %llu, \"mean\": %.1f}", (unsigned long long)h->max,
		rtioreq_hist_mean(h));
}

struct kvm_report {
	const struct kvm_opts *o;
	const char *mode;
	const struct rtioreq_kvm_stats *ks;
	const struct rtioreq_vm_stats *vs;
	const struct rtioreq_pcdev_stats *ps;
	uint64_t banner_ns, marker_ns, poller_served;
	bool ok;
};

#define U(x) ((unsigned long long)(x))

static void report_text(FILE *f, const struct kvm_report *r)
{
	const struct rtioreq_kvm_stats *ks = r->ks;
	const struct rtioreq_vm_stats *vs = r->vs;
	const struct rtioreq_pcdev_stats *ps = r->ps;

	fprintf(f, "# rtioreq kvm: mode %s, 1 vCPU (CPU %d), %s\n", r->mode, r->o->vcpu_cpu,
		r->o->inline_io ? "device models called in the vCPU thread"
		: r->o->polling ? "poller on its own CPU" : "fallback path");
	fprintf(f, "exit %s (%s)  run %.3f s  banner %.3f s  marker %.3f s\n",
		rtioreq_kvm_exit_name(ks->exit_reason), ks->detail, (double)ks->run_ns / 1e9,
		(double)r->banner_ns / 1e9, (double)r->marker_ns / 1e9);
	fprintf(f, "exits %llu  io %llu  mmio %llu  string-io %llu  signal %llu  irq raises %llu\n",
		U(ks->exits), U(ks->io_exits), U(ks->mmio_exits), U(ks->string_io),
		U(ks->intr_exits), U(ks->irq_raises));
	fprintf(f, "requests %llu  upcalls %llu  stranded %llu  poller served %llu\n",
		U(ks->requests), U(ks->upcalls), U(ks->stranded), U(r->poller_served));
	hist_text(f, r->o->inline_io ? "handler call" : "round trip", &ks->rtt);
	hist_text(f, "exit in user space", &ks->exit);
	fprintf(f, "engine: dispatched %llu  completed %llu  polled %llu  fallback %llu  "
		   "invalid %llu  handler_errors %llu  unclaimed %llu  cleared %llu  forced %llu  "
		   "notified %llu\n",
		U(vs->dispatched), U(vs->completed), U(vs->polled), U(vs->fallback),
		U(vs->invalid), U(vs->handler_errors), U(vs->unclaimed), U(vs->cleared),
		U(vs->forced), U(vs->notified));
	fprintf(f, "pcdev: uart_tx %llu  uart_irqs %llu  resets %llu  rtc_reads %llu  "
		   "pci_cfg %llu  unclaimed reads %llu writes %llu\n",
		U(ps->uart_tx), U(ps->uart_irqs), U(ps->resets), U(ps->rtc_reads), U(ps->pci_cfg),
		U(ps->unclaimed_reads), U(ps->unclaimed_writes));
	if (!r->ok)
		fprintf(f, "FAILED: the guest did not reboot cleanly (or a request was invalid or "
			   "stranded)\n");
}

static void report_json(FILE *f, const struct kvm_report *r)
{
	const struct rtioreq_kvm_stats *ks = r->ks;
	const struct rtioreq_vm_stats *vs = r->vs;
	const struct rtioreq_pcdev_stats *ps = r->ps;

	fputc('{', f);
	cli_json_meta(f);
	fprintf(f, "\"mode\": \"%s\", \"inline\": %s, \"vcpus\": 1, \"exit_reason\": \"%s\", ",
		r->mode, r->o->inline_io ? "true" : "false",
		rtioreq_kvm_exit_name(ks->exit_reason));
	fprintf(f, "\"exit_detail\": ");
	cli_json_str(f, ks->detail);
	fprintf(f, ", \"run_s\": %.6f, \"banner_s\": %.6f, \"marker_s\": %.6f, ",
		(double)ks->run_ns / 1e9, (double)r->banner_ns / 1e9, (double)r->marker_ns / 1e9);
	fprintf(f, "\"exits\": %llu, \"io_exits\": %llu, \"mmio_exits\": %llu, "
		   "\"string_io\": %llu, \"signal_exits\": %llu, \"irq_raises\": %llu, "
		   "\"requests\": %llu, \"upcalls\": %llu, \"stranded\": %llu, ",
		U(ks->exits), U(ks->io_exits), U(ks->mmio_exits), U(ks->string_io),
		U(ks->intr_exits), U(ks->irq_raises), U(ks->requests), U(ks->upcalls),
		U(ks->stranded));
	hist_json(f, "latency_ns", &ks->rtt);
	fprintf(f, ", ");
	hist_json(f, "exit_ns", &ks->exit);
	fprintf(f, ", \"engine\": {\"dispatched\": %llu, \"completed\": %llu, \"polled\": %llu, "
		   "\"fallback\": %llu, \"invalid\": %llu, \"handler_errors\": %llu, "
		   "\"unclaimed\": %llu, \"cleared\": %llu, \"forced\": %llu, \"notified\": %llu}",
		U(vs->dispatched), U(vs->completed), U(vs->polled), U(vs->fallback),
		U(vs->invalid), U(vs->handler_errors), U(vs->unclaimed), U(vs->cleared),
		U(vs->forced), U(vs->notified));
	fprintf(f, ", \"pcdev\": {\"uart_tx\": %llu, \"uart_irqs\": %llu, \"resets\": %llu, "
		   "\"rtc_reads\": %llu, \"pci_cfg\": %llu, \"unclaimed_reads\": %llu, "
		   "\"unclaimed_writes\": %llu}",
		U(ps->uart_tx), U(ps->uart_irqs), U(ps->resets), U(ps->rtc_reads), U(ps->pci_cfg),
		U(ps->unclaimed_reads), U(ps->unclaimed_writes));
	fprintf(f, ", \"ok\": %s}\n", r->ok ? "true" : "false");
}

/* ---------------------------------------------------------------------------------- */

int cli_kvm(int argc, char **argv); /* for cli.h, beside cli_run() */

int cli_kvm(int argc, char **argv)
{
	struct kvm_opts o;
	struct console con = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = STDOUT_FILENO };
	struct rtioreq_pcdev *pc = NULL;
	struct rtioreq_poller *poller = NULL;
	struct rtioreq_kvm_stats *ks;
	struct rtioreq_vm_stats vs;
	struct rtioreq_pcdev_stats ps;
	struct rtioreq_poller_stats pst = { 0 };
	struct rtioreq_engine *eng;
	struct rtioreq_kvm *k;
	struct rtioreq_vm *vm;
	struct kvm_report rep;
	char why[256];
	unsigned int nv;

	parse(argc, argv, &o);
	k = rtioreq_kvm_create(&(struct rtioreq_kvm_attr){
				       .kernel = o.kernel,
				       .initrd = o.initrd,
				       .cmdline = o.cmdline,
				       .mem_bytes = o.mem,
				       .vcpus = 1,
				       .completion_polling = o.polling,
				       .inline_fn = o.inline_io ? inline_handle : NULL,
				       .inline_ctx = &pc,
				       .vcpu_cpu = o.vcpu_cpu,
			       },
			       why, sizeof(why));
	if (!k)
		cli_die("%s", why[0] ? why : strerror(errno));
	con.k = k;
	nv = rtioreq_kvm_vcpus(k);

	eng = rtioreq_engine_create(NULL);
	if (!eng)
		cli_die("engine: %s", cli_engine_error(errno));
	vm = rtioreq_vm_attach(eng, &(struct rtioreq_vm_attr){
					    .id = 1,
					    .vcpu_num = (uint16_t)nv,
					    .page = &rtioreq_kvm_region(k)->page,
					    .chan = &rtioreq_kvm_region(k)->chan,
					    .ops = rtioreq_kvm_vm_ops(),
					    .hv = k,
					    .paused = true,
				    });
	if (!vm)
		cli_die("attach: %s", strerror(errno));
	pc = rtioreq_pcdev_attach(vm, &(struct rtioreq_pcdev_attr){
					      .uart_out = con_out,
					      .uart_ctx = &con,
					      .reset = on_reset,
					      .reset_ctx = k,
				      });
	if (!pc)
		cli_die("device models: %s", strerror(errno));
	if (o.polling && !o.inline_io) {
		poller = rtioreq_poller_create(eng, &(struct rtioreq_thread_attr){
							    .cpu = o.poller_cpu,
							    .name = "rtioreq-poll",
						    });
		if (!poller)
			cli_die("poller on CPU %d: %s", o.poller_cpu, strerror(errno));
		for (uint16_t v = 0; v < nv; v++)
			if (rtioreq_vm_set_poller(vm, v, poller))
				cli_die("poller: cannot take slot %u", v);
	}
	if (rtioreq_vm_start(vm))
		cli_die("cannot start the VM");

	rtioreq_kvm_run(k, o.timeout_ns);

	rtioreq_pcdev_uart_flush(pc); /* con_out runs on the device set's output thread */
	pthread_mutex_lock(&con.lock);
	con_flush(&con);
	pthread_mutex_unlock(&con.lock);
	ks = malloc(sizeof(*ks));
	if (!ks)
		cli_die("out of memory");
	rtioreq_kvm_stats(k, ks);
	rtioreq_vm_stats(vm, &vs);
	rtioreq_pcdev_stats(pc, &ps);
	if (poller)
		rtioreq_poller_stats(poller, &pst);

	rtioreq_pcdev_detach(pc);
	rtioreq_vm_detach(vm);
	if (poller)
		rtioreq_poller_destroy(poller);
	rtioreq_engine_destroy(eng);

	rep = (struct kvm_report){
		.o = &o,
		.mode = o.inline_io ? "inline" : o.polling ? "polling" : "notify",
		.ks = ks,
		.vs = &vs,
		.ps = &ps,
		.banner_ns = con.banner_ns,
		.marker_ns = con.marker_ns,
		.poller_served = pst.served,
		.ok = (ks->exit_reason == RTIOREQ_KVM_REBOOT ||
		       ks->exit_reason == RTIOREQ_KVM_TRIPLE_FAULT) &&
		      !vs.invalid && !ks->stranded,
	};
	if (o.json) {
		FILE *f = cli_json_open(o.json_file);

		report_json(f, &rep);
		if (f != stdout)
			fclose(f);
	} else {
		report_text(stderr, &rep);
	}
	rtioreq_kvm_destroy(k);
	free(ks);
	return rep.ok ? 0 : CLI_EXIT_FAIL;
}
