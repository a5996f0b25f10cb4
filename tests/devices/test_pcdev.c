// SPDX-License-Identifier: MIT
/*
 * PC device models (engine/devices/pcdev.c) driven through the real engine: a paused VM on a
 * shared region, the models attached, then started; every access is one synchronous
 * request through slot 0 (tests/harness.h), on the fallback path or, for the tests
 * registered twice, also inline on a poller. Interrupt levels are recorded through the
 * VM's raise_irq operation; UART output and reset requests through the attr hooks.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harness.h"
#include "hold.h"
#include "hygiene.h"
#include "rtioreq/devices/pcdev.h"

#define PIO RTIOREQ_TYPE_PORTIO
#define MMIO RTIOREQ_TYPE_MMIO
#define PCI RTIOREQ_TYPE_PCICFG
#define RD RTIOREQ_DIR_READ
#define WR RTIOREQ_DIR_WRITE

#define COM1 0x3f8
#define THR (COM1 + 0)
#define RBR (COM1 + 0)
#define DLL (COM1 + 0)
#define IER (COM1 + 1)
#define DLM (COM1 + 1)
#define IIR (COM1 + 2)
#define FCR (COM1 + 2)
#define LCR (COM1 + 3)
#define MCR (COM1 + 4)
#define LSR (COM1 + 5)
#define MSR (COM1 + 6)
#define SCR (COM1 + 7)

#define MAX_EV 1024

struct fx {
	struct h_vm h;
	struct rtioreq_pcdev *d;
	struct rtioreq_poller *p;
	bool poll;
	pthread_mutex_t lock; /* events and output below */
	unsigned int nev;
	uint32_t ev_irq[MAX_EV], ev_level[MAX_EV];
	uint32_t level[16];
	char out[4096];
	unsigned int nout;
	_Atomic int resets;
	_Atomic int bad_raise; /* raise_irq calls that did not change the level */
};

static int rec_raise(void *hv, uint32_t irq, uint32_t level)
{
	struct fx *f = hv;

	pthread_mutex_lock(&f->lock);
	if (f->nev < MAX_EV) {
		f->ev_irq[f->nev] = irq;
		f->ev_level[f->nev] = level;
		f->nev++;
	}
	/* a model drives a line only when its level changes (checked in fx_stop(); no
	 * cmocka assert here: this runs on pollers and client threads) */
	if (irq >= 16 || f->level[irq] == level)
		atomic_fetch_add(&f->bad_raise, 1);
	else
		f->level[irq] = level;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

static void rec_out(void *ctx, uint8_t b)
{
	struct fx *f = ctx;

	pthread_mutex_lock(&f->lock);
	if (f->nout < sizeof(f->out) - 1)
		f->out[f->nout++] = (char)b;
	pthread_mutex_unlock(&f->lock);
}

static void rec_reset(void *ctx)
{
	struct fx *f = ctx;

	atomic_fetch_add(&f->resets, 1);
}

static uint32_t level(struct fx *f, uint32_t irq)
{
	uint32_t l;

	pthread_mutex_lock(&f->lock);
	l = f->level[irq];
	pthread_mutex_unlock(&f->lock);
	return l;
}

static unsigned int nevents(struct fx *f)
{
	unsigned int n;

	pthread_mutex_lock(&f->lock);
	n = f->nev;
	pthread_mutex_unlock(&f->lock);
	return n;
}

static const struct rtioreq_vm_ops rec_ops = { .raise_irq = rec_raise };

/* @pa: the device set's attributes; NULL: record output and resets in the fixture. */
static struct fx *fx_start_pa(bool poll, const struct rtioreq_pcdev_attr *pa_in,
			      bool no_default)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct rtioreq_pcdev_attr pa = {
		.uart_out = rec_out, .uart_ctx = f, .reset = rec_reset, .reset_ctx = f,
		.no_default = no_default,
	};

	assert_non_null(f);
	if (pa_in)
		pa = *pa_in;
	pthread_mutex_init(&f->lock, NULL);
	f->poll = poll;
	h_vm_start_attr(&f->h, (struct rtioreq_vm_attr){ .id = 1, .vcpu_num = 2,
							 .ops = &rec_ops, .hv = f,
							 .paused = true });
	f->d = rtioreq_pcdev_attach(f->h.vm, &pa);
	assert_non_null(f->d);
	if (poll) {
		f->p = rtioreq_poller_create(f->h.eng, &(struct rtioreq_thread_attr){ .cpu = -1 });
		assert_non_null(f->p);
		assert_int_equal(rtioreq_vm_set_poller(f->h.vm, 0, f->p), 0);
	}
	assert_int_equal(rtioreq_vm_start(f->h.vm), 0);
	return f;
}

static struct fx *fx_start_attr(bool poll, bool no_default)
{
	return fx_start_pa(poll, NULL, no_default);
}

static struct fx *fx_start(bool poll)
{
	return fx_start_attr(poll, false);
}

/* Every request was well formed, answered by a model, and took the expected path. */
static void fx_stop(struct fx *f)
{
	struct rtioreq_vm_stats st;

	assert_int_equal(atomic_load(&f->bad_raise), 0);
	rtioreq_vm_stats(f->h.vm, &st);
	assert_int_equal(st.invalid, 0);
	assert_int_equal(st.handler_errors, 0);
	assert_int_equal(st.dispatched, st.completed);
	if (f->poll) {
		assert_true(st.polled > 0);
		assert_int_equal(st.fallback, 0);
	} else {
		assert_int_equal(st.polled, 0);
	}
	rtioreq_pcdev_detach(f->d);
	h_vm_stop(&f->h);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static uint64_t io(struct fx *f, uint32_t dir, uint16_t port, uint32_t size, uint64_t v)
{
	return h_io(&f->h, 0, PIO, dir, port, size, v);
}

static uint8_t inb(struct fx *f, uint16_t port)
{
	return (uint8_t)io(f, RD, port, 1, 0);
}

static void outb(struct fx *f, uint16_t port, uint8_t v)
{
	io(f, WR, port, 1, v);
}

static struct rtioreq_pcdev_stats stats(struct fx *f)
{
	struct rtioreq_pcdev_stats s;

	rtioreq_pcdev_stats(f->d, &s);
	return s;
}

/* ------------------------------------------------------------------------- */
/* UART */

static void uart_scratch_dlab(struct fx *f)
{
	outb(f, SCR, 0x5a);
	assert_int_equal(inb(f, SCR), 0x5a);
	outb(f, SCR, 0xa5);
	assert_int_equal(inb(f, SCR), 0xa5);

	outb(f, IER, 0x05);
	outb(f, LCR, 0x83); /* DLAB, 8N1 */
	outb(f, DLL, 0x0c);
	outb(f, DLM, 0x02);
	assert_int_equal(inb(f, DLL), 0x0c);
	assert_int_equal(inb(f, DLM), 0x02);
	assert_int_equal(inb(f, LCR), 0x83);
	outb(f, LCR, 0x03);
	assert_int_equal(inb(f, LCR), 0x03);
	assert_int_equal(inb(f, IER), 0x05); /* not the divisor */
	outb(f, LCR, 0x83);
	assert_int_equal(inb(f, DLL), 0x0c); /* kept */
	outb(f, LCR, 0x03);
	/* a 16-bit access splits into bytes: DLL/DLM in one go */
	outb(f, LCR, 0x83);
	io(f, WR, DLL, 2, 0x0001);
	assert_int_equal(io(f, RD, DLL, 2, 0), 0x0001);
	outb(f, LCR, 0x03);
	assert_int_equal(stats(f).uart_tx, 0); /* nothing went to THR */
}

static void uart_tx(struct fx *f)
{
	const char *msg = "Linux version 6.1\r\n";

	assert_int_equal(inb(f, LSR), 0x60); /* THRE | TEMT, no data */
	for (const char *p = msg; *p; p++) {
		assert_true(inb(f, LSR) & 0x20);
		outb(f, THR, (uint8_t)*p);
	}
	assert_int_equal(inb(f, LSR), 0x60);
	rtioreq_pcdev_uart_flush(f->d); /* uart_out runs on the output thread */
	pthread_mutex_lock(&f->lock);
	f->out[f->nout] = 0;
	assert_string_equal(f->out, msg);
	pthread_mutex_unlock(&f->lock);
	assert_int_equal(stats(f).uart_tx, strlen(msg));
	assert_int_equal(nevents(f), 0); /* no interrupt enabled */
}

/* The probe of Linux's 8250 autoconfig(), step by step, on a 16550A. */
static void uart_autoconfig(struct fx *f)
{
	uint8_t scratch, save_mcr, save_lcr;

	/* IER existence test: only the 4 interrupt bits are writable */
	scratch = inb(f, IER);
	outb(f, IER, 0);
	assert_int_equal(inb(f, IER) & 0x0f, 0);
	outb(f, IER, 0x0f);
	assert_int_equal(inb(f, IER) & 0x0f, 0x0f);
	outb(f, IER, 0xff);
	assert_int_equal(inb(f, IER), 0x0f);
	outb(f, IER, scratch);

	/* loopback test: MSR must follow MCR (status1 == DCD | CTS for LOOP | 0x0a) */
	save_mcr = inb(f, MCR);
	save_lcr = inb(f, LCR);
	outb(f, MCR, 0x10 | 0x0a);
	assert_int_equal(inb(f, MSR) & 0xf0, 0x90);
	outb(f, MCR, 0x1f);
	assert_int_equal(inb(f, MSR) & 0xf0, 0xf0);
	outb(f, MCR, 0x10);
	assert_int_equal(inb(f, MSR) & 0xf0, 0x00);
	outb(f, MCR, save_mcr);
	assert_int_equal(inb(f, MSR) & 0xf0, 0xb0); /* DCD, DSR, CTS: a terminal */

	/* FIFO detection: IIR bits 6-7 = 11 after FCR enable, 00 after disable */
	outb(f, LCR, 0xbf);
	outb(f, FCR, 0); /* "EFR" at offset 2 is FCR on a 16550A */
	outb(f, LCR, 0);
	assert_int_equal(inb(f, IIR), 0x01);
	outb(f, FCR, 0x01);
	assert_int_equal(inb(f, IIR) >> 6, 3);
	/* autoconfig_16550a(): no EFR (offset 2 with DLAB reads IIR, non-zero) */
	outb(f, LCR, 0x80);
	assert_int_not_equal(inb(f, IIR), 0);
	/* no 64-byte FIFO (TI16750 test: IIR bit 5 stays 0) */
	outb(f, LCR, 0);
	outb(f, FCR, 0x01 | 0x20);
	assert_int_equal(inb(f, IIR) & 0xe0, 0xc0);
	/* no XScale UUE bit */
	outb(f, IER, 0x40);
	assert_int_equal(inb(f, IER) & 0x40, 0);
	outb(f, IER, 0);
	outb(f, LCR, save_lcr);
	outb(f, FCR, 0x07); /* clear and enable */
	assert_int_equal(inb(f, IIR), 0xc1);
	outb(f, FCR, 0x00);
	assert_int_equal(inb(f, IIR), 0x01);
	/* serial8250_do_startup(): LSR must not read 0xff */
	assert_int_not_equal(inb(f, LSR), 0xff);
	assert_int_equal(nevents(f), 0);
}

/* THRE interrupt: needs IER.THRE and MCR.OUT2, cleared by reading IIR, re-armed by the
 * next THR write or a rising IER.THRE. */
static void uart_thre_irq(struct fx *f)
{
	outb(f, FCR, 0x07);
	outb(f, IER, 0x02); /* THRE enabled, OUT2 still clear: pending but not raised */
	assert_int_equal(level(f, 4), 0);
	assert_int_equal(nevents(f), 0);
	assert_int_equal(inb(f, IIR), 0xc2);
	assert_int_equal(inb(f, IIR), 0xc1); /* acknowledged by the read */

	outb(f, MCR, 0x0b); /* DTR | RTS | OUT2, as Linux sets on a PC */
	assert_int_equal(level(f, 4), 0); /* nothing pending */
	outb(f, IER, 0x00);
	outb(f, IER, 0x02); /* rising THRE re-arms */
	assert_int_equal(level(f, 4), 1);
	assert_int_equal(stats(f).uart_irqs, 1);
	assert_int_equal(inb(f, IIR), 0xc2);
	assert_int_equal(level(f, 4), 0); /* IIR read cleared the condition */
	assert_int_equal(inb(f, IIR), 0xc1);

	outb(f, THR, 'x'); /* THR empties at once: THRE pending again */
	assert_int_equal(level(f, 4), 1);
	assert_int_equal(stats(f).uart_irqs, 2);
	assert_int_equal(inb(f, IIR), 0xc2);
	assert_int_equal(level(f, 4), 0);

	/* the same IER value again is no rising edge */
	outb(f, IER, 0x02);
	assert_int_equal(level(f, 4), 0);
	outb(f, THR, 'y');
	assert_int_equal(level(f, 4), 1);
	outb(f, MCR, 0x03); /* OUT2 off gates the line */
	assert_int_equal(level(f, 4), 0);
	outb(f, MCR, 0x0b);
	assert_int_equal(level(f, 4), 1);
	outb(f, IER, 0); /* disabling THRE drops it */
	assert_int_equal(level(f, 4), 0);
	assert_int_equal(inb(f, IIR), 0xc1);
	assert_int_equal(stats(f).uart_irqs, 4);
	/* UART_BUG_THRE test of serial8250_do_startup() must not fire */
	outb(f, IER, 0x02);
	assert_int_equal(inb(f, IIR) & 0x01, 0);
	outb(f, IER, 0);
	outb(f, IER, 0x02);
	assert_int_equal(inb(f, IIR) & 0x01, 0);
	outb(f, IER, 0);
}

static void uart_rx(struct fx *f)
{
	const uint8_t in[20] = "abcdefghijklmnopqrst";

	outb(f, MCR, 0x0b);
	outb(f, FCR, 0x07);
	outb(f, IER, 0x01);
	assert_int_equal(level(f, 4), 0);
	assert_int_equal(rtioreq_pcdev_uart_input(f->d, in, 3), 3);
	assert_int_equal(level(f, 4), 1);
	assert_int_equal(inb(f, IIR), 0xc4);
	assert_int_equal(inb(f, LSR) & 0x01, 0x01);
	assert_int_equal(inb(f, RBR), 'a');
	assert_int_equal(inb(f, RBR), 'b');
	assert_int_equal(level(f, 4), 1);
	assert_int_equal(inb(f, RBR), 'c');
	assert_int_equal(level(f, 4), 0); /* FIFO empty */
	assert_int_equal(inb(f, LSR), 0x60);
	assert_int_equal(inb(f, IIR), 0xc1);

	/* 16 bytes fit, the rest waits; reads in order */
	assert_int_equal(rtioreq_pcdev_uart_input(f->d, in, 20), 16);
	assert_int_equal(rtioreq_pcdev_uart_input(f->d, in + 16, 4), 0);
	for (int i = 0; i < 16; i++)
		assert_int_equal(inb(f, RBR), in[i]);
	assert_int_equal(rtioreq_pcdev_uart_input(f->d, in + 16, 4), 4);
	/* a 2-byte read is split as the ISA bus does: RBR, then IER */
	assert_int_equal(io(f, RD, RBR, 2, 0), 'q' | 0x01 << 8);
	assert_int_equal(inb(f, RBR), 'r');
	outb(f, FCR, 0x03); /* clear RX */
	assert_int_equal(inb(f, LSR) & 1, 0);
	assert_int_equal(level(f, 4), 0);
	/* FIFOs disabled: a 1-byte holding register */
	outb(f, FCR, 0x00);
	assert_int_equal(rtioreq_pcdev_uart_input(f->d, in, 3), 1);
	assert_int_equal(inb(f, IIR), 0x04);
	assert_int_equal(inb(f, RBR), 'a');
	assert_int_equal(stats(f).uart_rx, 3 + 16 + 4 + 1);
	/* RX and THRE both pending: RDA first, then THRE */
	outb(f, FCR, 0x01);
	assert_int_equal(rtioreq_pcdev_uart_input(f->d, in, 1), 1);
	outb(f, IER, 0x03);
	assert_int_equal(inb(f, IIR), 0xc4);
	assert_int_equal(inb(f, RBR), 'a');
	assert_int_equal(inb(f, IIR), 0xc2);
	assert_int_equal(inb(f, IIR), 0xc1);
	assert_int_equal(level(f, 4), 0);
	outb(f, IER, 0);
}

static void uart_loopback(struct fx *f)
{
	outb(f, FCR, 0x00); /* FIFOs off: holding register of one byte */
	outb(f, IER, 0x0f);
	outb(f, MCR, 0x1f); /* loop, OUT2 set: the pin is forced off, no interrupt */
	outb(f, THR, 0x42);
	assert_int_equal(inb(f, LSR) & 0x01, 1);
	assert_int_equal(stats(f).uart_tx, 0); /* nothing left the UART */
	assert_int_equal(level(f, 4), 0);
	assert_int_equal(rtioreq_pcdev_uart_input(f->d, (const uint8_t *)"z", 1), 0);
	outb(f, THR, 0x43); /* overrun */
	assert_int_equal(inb(f, IIR), 0x06); /* RLS outranks RDA */
	assert_int_equal(inb(f, LSR), 0x63); /* DR | OE | THRE | TEMT */
	assert_int_equal(inb(f, LSR), 0x61); /* OE cleared by the read */
	assert_int_equal(inb(f, IIR), 0x04);
	assert_int_equal(inb(f, RBR), 0x42);
	/* modem status deltas follow MCR in loopback; MSR interrupt is the last */
	assert_int_equal(inb(f, MSR), 0xf0); /* 0xb0 -> 0xf0: only RI rose, no delta */
	outb(f, MCR, 0x10 | 0x08);	      /* CTS, DSR fall; RI falls: TERI */
	assert_int_equal(inb(f, IIR), 0x02);  /* THR write above: THRE */
	assert_int_equal(inb(f, IIR), 0x00);  /* then MSR */
	assert_int_equal(inb(f, MSR), 0x87);
	assert_int_equal(inb(f, IIR), 0x01);
	outb(f, IER, 0);
	outb(f, MCR, 0x0b);
	assert_int_equal(inb(f, MSR), 0xb0 | 0x03); /* CTS, DSR back: deltas */
	assert_int_equal(inb(f, MSR), 0xb0);
	assert_int_equal(level(f, 4), 0);
	assert_int_equal(nevents(f), 0);
}

/* ------------------------------------------------------------------------- */
/* i8042 */

static void kbc(struct fx *f)
{
	uint8_t st = inb(f, 0x64), ctr;

	assert_int_equal(st & 0x03, 0); /* OBF, IBF clear */
	assert_int_equal(st & 0x04, 0x04); /* system flag */
	assert_int_equal(st, 0x1c);
	outb(f, 0x64, 0xaa); /* self test */
	assert_int_equal(inb(f, 0x64) & 0x01, 1);
	assert_int_equal(inb(f, 0x60), 0x55);
	assert_int_equal(inb(f, 0x64) & 0x01, 0);
	outb(f, 0x64, 0xab);
	assert_int_equal(inb(f, 0x60), 0x00);
	/* CTR read and write, as i8042_controller_init() does */
	outb(f, 0x64, 0x20);
	assert_int_equal(inb(f, 0x64) & 0x21, 0x01);
	ctr = inb(f, 0x60);
	assert_int_equal(ctr & 0x04, 0x04);
	ctr = (uint8_t)((ctr | 0x10) & ~0x01); /* keyboard disabled, no interrupt */
	outb(f, 0x64, 0x60);
	outb(f, 0x60, ctr);
	outb(f, 0x64, 0x20);
	assert_int_equal(inb(f, 0x60), ctr);
	outb(f, 0x64, 0xae);
	outb(f, 0x64, 0x20);
	assert_int_equal(inb(f, 0x60), ctr & ~0x10);
	outb(f, 0x64, 0xa7);
	outb(f, 0x64, 0x20);
	assert_int_equal(inb(f, 0x60) & 0x20, 0x20);
	outb(f, 0x64, 0xa8);
	outb(f, 0x64, 0x20);
	assert_int_equal(inb(f, 0x60) & 0x20, 0);
	/* AUX loopback (i8042_check_aux): the byte comes back as aux data */
	outb(f, 0x64, 0xd3);
	outb(f, 0x60, 0x5a);
	assert_int_equal(inb(f, 0x64) & 0x21, 0x21);
	assert_int_equal(inb(f, 0x60), 0x5a);
	/* interrupts per CTR: IRQ 12 for aux data, IRQ 1 for keyboard data */
	outb(f, 0x64, 0x60);
	outb(f, 0x60, 0x47);
	outb(f, 0x64, 0xd3);
	outb(f, 0x60, 0xa5);
	assert_int_equal(level(f, 12), 1);
	assert_int_equal(inb(f, 0x60), 0xa5);
	assert_int_equal(level(f, 12), 0);
	outb(f, 0x60, 0xf2); /* to the keyboard: none, timeout with 0xfe */
	assert_int_equal(level(f, 1), 1);
	assert_int_equal(inb(f, 0x64) & 0x61, 0x41);
	assert_int_equal(inb(f, 0x60), 0xfe);
	assert_int_equal(level(f, 1), 0);
	/* with KBDINT in the CTR, every reply above raised IRQ 1 too */
	assert_true(stats(f).kbd_irqs >= 5);
	assert_int_equal(level(f, 1) | level(f, 12), 0);
	/* reboot */
	assert_int_equal(atomic_load(&f->resets), 0);
	assert_int_equal(inb(f, 0x64) & 0x02, 0); /* kb_wait() */
	outb(f, 0x64, 0xfe);
	assert_int_equal(atomic_load(&f->resets), 1);
	assert_int_equal(stats(f).resets, 1);
	/* 0x61 is not the i8042's: the default client answers */
	assert_int_equal(inb(f, 0x61), 0xff);
}

/* ------------------------------------------------------------------------- */
/* RTC */

static uint8_t cmos(struct fx *f, uint8_t reg)
{
	outb(f, 0x70, reg);
	return inb(f, 0x71);
}

static void cmos_w(struct fx *f, uint8_t reg, uint8_t v)
{
	outb(f, 0x70, reg);
	outb(f, 0x71, v);
}

static unsigned int bcd(uint8_t v)
{
	assert_true((v & 0x0f) <= 9 && (v >> 4) <= 9);
	return (v >> 4) * 10u + (v & 0x0f);
}

/* Read the clock as Linux does (again if the second changed); seconds since the epoch. */
static time_t rtc_time(struct fx *f, bool binary)
{
	unsigned int s, mi, h, da, mo, y, c;
	struct tm tm = { 0 };

	do {
		s = cmos(f, 0x00);
		mi = cmos(f, 0x02);
		h = cmos(f, 0x04);
		da = cmos(f, 0x07);
		mo = cmos(f, 0x08);
		y = cmos(f, 0x09);
		c = cmos(f, 0x32);
	} while (s != cmos(f, 0x00));
	if (!binary) {
		s = bcd((uint8_t)s);
		mi = bcd((uint8_t)mi);
		h = bcd((uint8_t)h);
		da = bcd((uint8_t)da);
		mo = bcd((uint8_t)mo);
		y = bcd((uint8_t)y);
		c = bcd((uint8_t)c);
	}
	assert_true(s < 60 && mi < 60 && h < 24 && da >= 1 && da <= 31 && mo >= 1 && mo <= 12);
	tm.tm_sec = (int)s;
	tm.tm_min = (int)mi;
	tm.tm_hour = (int)h;
	tm.tm_mday = (int)da;
	tm.tm_mon = (int)mo - 1;
	tm.tm_year = (int)(c * 100 + y) - 1900;
	return timegm(&tm);
}

static void rtc(struct fx *f)
{
	time_t now = time(NULL), t;
	struct tm tm;
	uint8_t a, b, h;

	a = cmos(f, 0x0a);
	assert_int_equal(a & 0x80, 0); /* no update in progress */
	assert_int_equal(a, 0x26);
	b = cmos(f, 0x0b);
	assert_int_equal(b, 0x02); /* 24 h, BCD */
	assert_int_equal(cmos(f, 0x0d), 0x80);

	t = rtc_time(f, false);
	assert_true(t >= now - 2 && t <= time(NULL) + 2);
	gmtime_r(&t, &tm);
	assert_int_equal(bcd(cmos(f, 0x06)), tm.tm_wday + 1); /* may race midnight: rare */

	cmos_w(f, 0x0b, b | 0x04); /* binary */
	assert_int_equal(cmos(f, 0x0b), 0x06);
	t = rtc_time(f, true);
	assert_true(t >= now - 2 && t <= time(NULL) + 2);
	/* 12-hour mode: 1..12 and bit 7 for PM */
	cmos_w(f, 0x0b, 0x04);
	h = cmos(f, 0x04);
	gmtime_r(&(time_t){ time(NULL) }, &tm);
	assert_true((h & 0x7f) >= 1 && (h & 0x7f) <= 12);
	if ((h & 0x7f) % 12 == (unsigned int)tm.tm_hour % 12) /* else the hour turned */
		assert_int_equal(!!(h & 0x80), tm.tm_hour >= 12);
	cmos_w(f, 0x0b, 0x02);
	/* time registers are the host's: writes are ignored */
	cmos_w(f, 0x09, 0x99);
	assert_int_not_equal(cmos(f, 0x09), 0x99);

	/* status C: update-ended flag, cleared by the read */
	for (int i = 0; i < 3000 && !(cmos(f, 0x0c) & 0x10); i++)
		h_sleep_ms(1);
	for (int tries = 0;; tries++) {
		struct timespec t0, t1;
		uint8_t c;

		clock_gettime(CLOCK_REALTIME, &t0);
		cmos(f, 0x0c);
		c = cmos(f, 0x0c);
		clock_gettime(CLOCK_REALTIME, &t1);
		if (t0.tv_sec == t1.tv_sec) { /* no second boundary between the two reads */
			assert_int_equal(c, 0);
			break;
		}
		assert_true(tries < 10);
	}
	assert_int_equal(cmos(f, 0x0d), 0x80);

	/* CMOS RAM; bit 7 of the index (NMI mask) is ignored; 0x70 reads the index */
	cmos_w(f, 0x40, 0x12);
	cmos_w(f, 0x80 | 0x7f, 0x34);
	assert_int_equal(cmos(f, 0x40), 0x12);
	assert_int_equal(cmos(f, 0x7f), 0x34);
	assert_int_equal(inb(f, 0x70), 0x7f);
	io(f, WR, 0x70, 2, 0x5641); /* index 0x41, data 0x56 */
	assert_int_equal(cmos(f, 0x41), 0x56);
	assert_true(stats(f).rtc_reads > 20);
}

/* ------------------------------------------------------------------------- */
/* PCI */

static uint64_t pcicfg(struct fx *f, uint32_t dir, uint8_t bus, uint8_t dev, uint8_t fn,
		       uint32_t reg, uint32_t size, uint64_t value)
{
	struct rtioreq_hv_req q = { .type = PCI, .dir = dir, .addr = reg, .size = size,
				    .value = value, .bus = bus, .dev = dev, .func = fn };
	uint64_t v = 0;

	assert_true(rtioreq_hv_submit(f->h.shm.region, 0, &q, false, true) >= 0);
	assert_true(h_wait(&f->h, 0, PCI, &v, 5000));
	return v;
}

static void pci(struct fx *f)
{
	uint64_t n0 = stats(f).pci_cfg;

	assert_int_equal(io(f, RD, 0xcf8, 4, 0), 0);
	io(f, WR, 0xcf8, 4, 0x80000000);
	assert_int_equal(io(f, RD, 0xcf8, 4, 0), 0x80000000);
	assert_int_equal(io(f, RD, 0xcfc, 4, 0), 0xffffffff); /* 00:00.0: nobody */
	assert_int_equal(io(f, RD, 0xcfd, 1, 0), 0xff);
	assert_int_equal(io(f, RD, 0xcfe, 2, 0), 0xffff);
	io(f, WR, 0xcfc, 4, 0x12345678); /* ignored */
	assert_int_equal(io(f, RD, 0xcfc, 4, 0), 0xffffffff);
	io(f, WR, 0xcf8, 4, 0x80001808); /* 00:03.0 reg 8 */
	assert_int_equal(io(f, RD, 0xcf8, 4, 0), 0x80001808);
	assert_int_equal(io(f, RD, 0xcfc, 4, 0), 0xffffffff);
	io(f, WR, 0xcf8, 4, 0x00001808); /* enable clear */
	assert_int_equal(io(f, RD, 0xcfc, 4, 0), 0xffffffff);
	/* pci_check_type2(): byte writes of 0 must not read back as 0 */
	outb(f, 0xcfb, 0);
	outb(f, 0xcf8, 0);
	outb(f, 0xcfa, 0);
	assert_false(inb(f, 0xcf8) == 0 && inb(f, 0xcfa) == 0);
	assert_int_equal(io(f, RD, 0xcf8, 4, 0), 0x00001808); /* untouched */
	assert_int_equal(stats(f).pci_cfg - n0, 18);
	/* PCICFG requests (HSM's combiner output) reach the default client */
	assert_int_equal(pcicfg(f, RD, 0, 0, 0, 0, 4, 0), 0xffffffff);
	assert_int_equal(pcicfg(f, RD, 0, 31, 7, 0xffe, 2, 0), 0xffff);
	assert_int_equal(pcicfg(f, RD, 255, 1, 0, 0x3d, 1, 0), 0xff);
	pcicfg(f, WR, 0, 1, 0, 4, 2, 0x0007);
	assert_int_equal(stats(f).pci_cfg - n0, 22);
	assert_int_equal(stats(f).unclaimed_reads, 0);
	/* 0xcf9 reset control: Linux's BOOT_CF9 writes 0x02 then 0x06 */
	assert_int_equal(inb(f, 0xcf9), 0);
	outb(f, 0xcf9, 0x02);
	assert_int_equal(atomic_load(&f->resets), 0);
	assert_int_equal(inb(f, 0xcf9), 0x02);
	outb(f, 0xcf9, 0x06);
	assert_int_equal(atomic_load(&f->resets), 1);
}

/* ------------------------------------------------------------------------- */
/* Default client */

static void dflt(struct fx *f)
{
	struct rtioreq_pcdev_stats s0 = stats(f), s;
	struct rtioreq_vm_stats vs;

	assert_int_equal(io(f, RD, 0x2f8, 1, 0), 0xff); /* COM2: not modelled */
	assert_int_equal(io(f, RD, 0x2f8, 2, 0), 0xffff);
	assert_int_equal(io(f, RD, 0x2f8, 4, 0), 0xffffffff);
	assert_int_equal(io(f, RD, 0x3fe, 4, 0), 0xffffffff); /* crosses the UART's end */
	io(f, WR, 0x80, 1, 0x55); /* POST / io delay port */
	io(f, WR, 0x2f8, 4, 0x1);
	assert_int_equal(h_io(&f->h, 0, MMIO, RD, 0xfec00000, 8, 0), ~(uint64_t)0);
	assert_int_equal(h_io(&f->h, 0, MMIO, RD, 0xfee00000, 4, 0), 0xffffffff);
	h_io(&f->h, 0, MMIO, WR, 0xfee00000, 4, 1);
	s = stats(f);
	assert_int_equal(s.unclaimed_reads - s0.unclaimed_reads, 6);
	assert_int_equal(s.unclaimed_writes - s0.unclaimed_writes, 3);
	rtioreq_vm_stats(f->h.vm, &vs);
	assert_int_equal(vs.unclaimed, 0); /* all answered by the default client */
}

/* ------------------------------------------------------------------------- */
/* Registration: each body on the fallback path and inline on a poller. */

#define BOTH(fn)                                                                   \
	static void fn##_fallback(void **state)                                   \
	{                                                                          \
		struct fx *f = fx_start(false);                                    \
		fn(f);                                                             \
		fx_stop(f);                                                        \
	}                                                                          \
	static void fn##_polled(void **state)                                     \
	{                                                                          \
		struct fx *f = fx_start(true);                                     \
		fn(f);                                                             \
		fx_stop(f);                                                        \
	}

BOTH(uart_scratch_dlab)
BOTH(uart_tx)
BOTH(uart_autoconfig)
BOTH(uart_thre_irq)
BOTH(uart_rx)
BOTH(uart_loopback)
BOTH(kbc)
BOTH(rtc)
BOTH(pci)
BOTH(dflt)

/* Without a default client, unclaimed accesses are the engine's (all ones, counted). */
static void test_no_default(void **state)
{
	struct fx *f = fx_start_attr(false, true);
	struct rtioreq_vm_stats vs;

	assert_int_equal(io(f, RD, 0x2f8, 2, 0), 0xffff);
	rtioreq_vm_stats(f->h.vm, &vs);
	assert_int_equal(vs.unclaimed, 1);
	assert_int_equal(stats(f).unclaimed_reads, 0);
	/* and a default client of our own may be added */
	mk_client(f->h.vm, "mine", h_const, 0x1234, true);
	assert_int_equal(io(f, RD, 0x2f8, 2, 0), 0x1234);
	fx_stop(f);
}

/* A taken range: attach fails with EEXIST and leaves nothing behind. */
static void test_attach_conflict(void **state)
{
	struct h_vm h;
	struct rtioreq_client *c;

	h_vm_start_attr(&h, (struct rtioreq_vm_attr){ .id = 1, .vcpu_num = 1, .paused = true });
	c = mk_client(h.vm, "rtc", h_const, 7, false);
	assert_int_equal(rtioreq_range_add(c, PIO, 0x71, 0x71), 0);
	assert_null(rtioreq_pcdev_attach(h.vm, NULL));
	assert_int_equal(errno, EEXIST);
	assert_int_equal(rtioreq_range_del(c, PIO, 0x71, 0x71), 0);
	mk_client(h.vm, "dflt", h_const, 7, true);
	assert_null(rtioreq_pcdev_attach(h.vm, NULL));
	assert_int_equal(errno, EEXIST);
	/* with no_default it fits beside that default client; NULL hooks are fine */
	struct rtioreq_pcdev *d = rtioreq_pcdev_attach(h.vm, &(struct rtioreq_pcdev_attr){
								     .no_default = true });
	assert_non_null(d);
	assert_int_equal(rtioreq_vm_start(h.vm), 0);
	assert_int_equal(h_io(&h, 0, PIO, RD, 0x3fd, 1, 0), 0x60);
	h_io(&h, 0, PIO, WR, 0x3f8, 1, 'x'); /* no uart_out: counted only */
	h_io(&h, 0, PIO, WR, 0x64, 1, 0xfe); /* no reset hook */
	assert_int_equal(h_io(&h, 0, PIO, RD, 0x2f8, 1, 0), 7);
	rtioreq_pcdev_detach(d);
	h_vm_stop(&h);
}

/* rtioreq_pcdev_handle(): the same models without the slots (--inline baseline). */
static void test_handle_direct(void **state)
{
	struct fx *f = fx_start(false);
	struct rtioreq_req r = { .type = PIO, .dir = WR, .addr = SCR, .size = 1, .value = 0x1ab };

	assert_int_equal(rtioreq_pcdev_handle(f->d, &r), 0);
	assert_int_equal(inb(f, SCR), 0xab); /* masked to the size; the same state */
	r = (struct rtioreq_req){ .type = PIO, .dir = RD, .addr = LSR, .size = 1 };
	assert_int_equal(rtioreq_pcdev_handle(f->d, &r), 0);
	assert_int_equal(r.value, 0x60);
	r = (struct rtioreq_req){ .type = PIO, .dir = RD, .addr = 0x2f8, .size = 2 };
	assert_int_equal(rtioreq_pcdev_handle(f->d, &r), 0);
	assert_int_equal(r.value, 0xffff);
	r = (struct rtioreq_req){ .type = PIO, .dir = RD, .addr = 0x60, .size = 2 };
	assert_int_equal(rtioreq_pcdev_handle(f->d, &r), 0); /* not wholly inside 0x60 */
	assert_int_equal(r.value, 0xffff);
	r = (struct rtioreq_req){ .type = MMIO, .dir = RD, .addr = 0xfee00000, .size = 8 };
	assert_int_equal(rtioreq_pcdev_handle(f->d, &r), 0);
	assert_true(r.value == ~(uint64_t)0);
	r = (struct rtioreq_req){ .type = PCI, .dir = RD, .addr = 0, .size = 4 };
	assert_int_equal(rtioreq_pcdev_handle(f->d, &r), 0);
	assert_int_equal(r.value, 0xffffffff);
	r = (struct rtioreq_req){ .type = PIO, .dir = RD, .addr = 0x3f8, .size = 3 };
	assert_int_equal(rtioreq_pcdev_handle(f->d, &r), -EINVAL);
	r = (struct rtioreq_req){ .type = PIO, .dir = WR, .addr = 0x64, .size = 1, .value = 0xfe };
	assert_int_equal(rtioreq_pcdev_handle(f->d, &r), 0);
	assert_int_equal(atomic_load(&f->resets), 1);
	assert_int_equal(stats(f).unclaimed_reads, 3);
	fx_stop(f);
}

/*
 * Concurrency: vCPU 0 polled, vCPU 1 on the fallback path, both transmitting and
 * reading the RX FIFO and IIR while a third thread feeds console input: every byte
 * goes out once, every input byte is read once, the IRQ line only changes level
 * (rec_raise checks it). Meant for TSan.
 */
struct stress {
	struct fx *f;
	uint16_t vcpu;
	unsigned int got;
	_Atomic bool *stop;
};

#define STRESS_TX 2000
#define STRESS_RX 3000

static void *stress_vcpu(void *arg)
{
	struct stress *s = arg;

	for (int i = 0; i < STRESS_TX; i++) {
		h_io(&s->f->h, s->vcpu, PIO, WR, THR, 1, 'a' + s->vcpu);
		/* input bytes are never 0; an empty FIFO reads 0 */
		if (h_io(&s->f->h, s->vcpu, PIO, RD, RBR, 1, 0))
			s->got++;
		h_io(&s->f->h, s->vcpu, PIO, RD, IIR, 1, 0);
	}
	return NULL;
}

static void *stress_input(void *arg)
{
	struct stress *s = arg;
	unsigned int sent = 0;

	while (sent < STRESS_RX) {
		sent += rtioreq_pcdev_uart_input(s->f->d, (const uint8_t *)"0123", 1);
		if (atomic_load(s->stop))
			break;
		sched_yield();
	}
	s->got = sent;
	return NULL;
}

static void test_stress(void **state)
{
	struct fx *f = fx_start(true);
	_Atomic bool stop = false;
	struct stress v0 = { f, 0, 0, &stop }, v1 = { f, 1, 0, &stop }, in = { f, 0, 0, &stop };
	pthread_t t0, t1, ti;
	struct rtioreq_pcdev_stats s;
	struct rtioreq_vm_stats vs;
	unsigned int left = 0;

	outb(f, FCR, 0x07);
	outb(f, MCR, 0x0b);
	outb(f, IER, 0x03);
	assert_int_equal(pthread_create(&ti, NULL, stress_input, &in), 0);
	assert_int_equal(pthread_create(&t0, NULL, stress_vcpu, &v0), 0);
	assert_int_equal(pthread_create(&t1, NULL, stress_vcpu, &v1), 0);
	pthread_join(t0, NULL);
	pthread_join(t1, NULL);
	atomic_store(&stop, true);
	pthread_join(ti, NULL);
	while (inb(f, LSR) & 1) {
		inb(f, RBR);
		left++;
	}
	s = stats(f);
	assert_int_equal(s.uart_tx, 2 * STRESS_TX);
	assert_int_equal(s.uart_rx, in.got);
	assert_int_equal(v0.got + v1.got + left, in.got);
	rtioreq_vm_stats(f->h.vm, &vs);
	assert_true(vs.polled > 0 && vs.fallback > 0);
	outb(f, IER, 0);
	assert_int_equal(atomic_load(&f->bad_raise), 0);
	assert_true(s.uart_irqs > 0);
	rtioreq_pcdev_detach(f->d);
	h_vm_stop(&f->h);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

/* ------------------------------------------------------------------------- */
/* Real-time hygiene: no blocking output on a poller, priority inheritance */

/* A console as an embedder writes one: write(2) of each byte to a pipe. */
static void pipe_out(void *ctx, uint8_t b)
{
	ssize_t r = write(*(int *)ctx, &b, 1);

	(void)r;
}

/*
 * A UART transmit handled inline on a poller makes no write(2) on the poller thread
 * (the console's write runs on the device set's output thread), and every byte still
 * arrives, in order. Counted with a per-thread syscalls:sys_enter_write perf counter
 * (positive control: this thread's own write to /dev/null is counted). The poller's
 * other syscalls (the output thread's FUTEX_WAKE) are printed.
 */
static void test_uart_tx_no_write_on_poller(void **state)
{
	const char *msg = "[    0.000000] Linux version 6.1.0 (console on a poller)\r\n";
	size_t len = strlen(msg), got = 0;
	int fds[2], self_fd, poll_fd, devnull;
	struct rtioreq_pcdev_attr pa = { 0 };
	struct hyg_counters k;
	uint64_t v[HYG_NCTR], self_w, poll_w;
	char why[256], buf[256];
	struct fx *f;
	pid_t tid;

	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	assert_int_equal(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
	pa.uart_out = pipe_out;
	pa.uart_ctx = &fds[1];
	f = fx_start_pa(true, &pa, false);
	tid = rtioreq_poller_tid(f->p);
	outb(f, SCR, 1); /* warm-up on the poller */

	self_fd = hyg_open_tracepoint("syscalls/sys_enter_write", (pid_t)syscall(SYS_gettid),
				      why, sizeof(why));
	if (self_fd < 0) {
		print_message("skipped: %s\n", why);
		fx_stop(f);
		skip();
	}
	poll_fd = hyg_open_tracepoint("syscalls/sys_enter_write", tid, why, sizeof(why));
	assert_true(poll_fd >= 0);
	assert_int_equal(hyg_open(&k, tid, why, sizeof(why)), 0);
	assert_int_equal(hyg_ctl(&k, PERF_EVENT_IOC_ENABLE), 0);
	devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	assert_int_equal(write(devnull, "x", 1), 1);
	close(devnull);
	for (size_t i = 0; i < len; i++)
		outb(f, THR, (uint8_t)msg[i]);
	assert_int_equal(hyg_ctl(&k, PERF_EVENT_IOC_DISABLE), 0);
	poll_w = hyg_read_close(poll_fd);
	self_w = hyg_read_close(self_fd);
	assert_int_equal(hyg_read(&k, v), 0);

	for (int t = 0; t < 2000 && got < len; t++) {
		ssize_t r = read(fds[0], buf + got, sizeof(buf) - 1 - got);

		if (r > 0)
			got += (size_t)r;
		else
			h_sleep_ms(1);
	}
	buf[got] = 0;
	print_message("poller thread %d over %zu UART writes: %lu write(2), %lu syscalls in "
		      "all (this thread: %lu write(2))\n",
		      (int)tid, len, (unsigned long)poll_w, (unsigned long)v[HYG_SYSCALLS],
		      (unsigned long)self_w);
	assert_true(self_w >= 1); /* the counter counts */
	assert_int_equal(poll_w, 0);
	assert_string_equal(buf, msg);
	assert_int_equal(stats(f).uart_tx, len);
	fx_stop(f);
	close(fds[0]);
	close(fds[1]);
}

struct pi_thread {
	struct rtioreq_pcdev *d;
	_Atomic pid_t tid;
};

static void *pi_access(void *arg)
{
	struct pi_thread *t = arg;
	struct rtioreq_req r = { .type = PIO, .dir = RD, .addr = SCR, .size = 1 };

	atomic_store(&t->tid, (pid_t)syscall(SYS_gettid));
	assert_int_equal(rtioreq_pcdev_handle(t->d, &r), 0);
	return NULL;
}

/* Kernel priority of thread @tid (/proc stat field 18): 20 for nice 0 SCHED_OTHER,
 * -1 - rtprio while it runs (or is boosted) at a real-time priority. */
static long task_prio(pid_t tid)
{
	char path[64], line[1024], *p;
	long prio = 0;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	fp = fopen(path, "r");
	assert_non_null(fp);
	assert_non_null(fgets(line, sizeof(line), fp));
	fclose(fp);
	p = strrchr(line, ')'); /* after the name: field 3 on */
	assert_non_null(p);
	assert_int_equal(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d "
				       "%*d %ld",
				&prio),
			 1);
	return prio;
}

/*
 * The models' locks inherit priority: a SCHED_OTHER thread inside the UART's critical
 * section (held there by the hook "pcdev.uart.locked") while a SCHED_FIFO thread waits
 * for the same lock runs boosted to the waiter's priority, so a poller is never held
 * up by a preempted non-RT thread holding a model lock. Before: stays at 20.
 */
static void test_model_locks_inherit_priority(void **state)
{
	struct fx *f = fx_start(false);
	struct pi_thread lo = { f->d, 0 }, hi = { f->d, 0 };
	struct sched_param sp = { .sched_priority = 1 };
	pthread_t tl, th;
	pthread_attr_t a;
	long prio = 0;
	int r;

	hold_arm("pcdev.uart.locked", f->d);
	assert_int_equal(pthread_create(&tl, NULL, pi_access, &lo), 0);
	hold_wait();
	pthread_attr_init(&a);
	pthread_attr_setinheritsched(&a, PTHREAD_EXPLICIT_SCHED);
	pthread_attr_setschedpolicy(&a, SCHED_FIFO);
	pthread_attr_setschedparam(&a, &sp);
	r = pthread_create(&th, &a, pi_access, &hi);
	pthread_attr_destroy(&a);
	if (r == EPERM) {
		hold_off();
		pthread_join(tl, NULL);
		fx_stop(f);
		print_message("skipped: SCHED_FIFO refused (root or RLIMIT_RTPRIO needed)\n");
		skip();
	}
	assert_int_equal(r, 0);
	for (int t = 0; t < 2000; t++) { /* until the waiter blocked and boosted the holder */
		prio = task_prio(atomic_load(&lo.tid));
		if (prio < 0)
			break;
		h_sleep_ms(1);
	}
	hold_off();
	pthread_join(th, NULL);
	pthread_join(tl, NULL);
	print_message("lock holder's priority while a SCHED_FIFO 1 thread waited: %ld\n", prio);
	assert_int_equal(prio, -2); /* -1 - 1: boosted to FIFO 1 */
	fx_stop(f);
}

#define BOTH_TESTS(fn) cmocka_unit_test(fn##_fallback), cmocka_unit_test(fn##_polled)

int main(void)
{
	const struct CMUnitTest tests[] = {
		BOTH_TESTS(uart_scratch_dlab),
		BOTH_TESTS(uart_tx),
		BOTH_TESTS(uart_autoconfig),
		BOTH_TESTS(uart_thre_irq),
		BOTH_TESTS(uart_rx),
		BOTH_TESTS(uart_loopback),
		BOTH_TESTS(kbc),
		BOTH_TESTS(rtc),
		BOTH_TESTS(pci),
		BOTH_TESTS(dflt),
		cmocka_unit_test(test_no_default),
		cmocka_unit_test(test_attach_conflict),
		cmocka_unit_test(test_handle_direct),
		cmocka_unit_test(test_stress),
		cmocka_unit_test(test_uart_tx_no_write_on_poller),
		cmocka_unit_test(test_model_locks_inherit_priority),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
