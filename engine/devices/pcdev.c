// SPDX-License-Identifier: MIT
/*
 * PC device models (include/rtioreq/devices/pcdev.h): 16550A UART, i8042, CMOS RTC, PCI
 * configuration mechanism #1 and the default client, each an engine client.
 *
 * Concurrency: a model's handler may run at the same time on several pollers (one per
 * polled vCPU), on its client thread (fallback vCPUs) and in rtioreq_pcdev_handle().
 * The UART, i8042 and RTC keep their registers under one priority-inheritance mutex
 * each (a poller waiting for a lock held by a preempted SCHED_OTHER thread boosts it):
 * the critical sections are a handful of register updates and make no syscall.
 * What used to be done under them, or on the handler's thread, is moved out:
 *  - UART output goes through a lock-free single-producer ring (the producer is
 *    serialized by the UART lock, so bytes keep the model's order) to the device set's
 *    output thread (SCHED_OTHER), which calls uart_out: a console's write(2) never runs
 *    on a poller. The handler's only syscall is a FUTEX_WAKE when that thread sleeps.
 *  - Interrupt level changes are counted per line under the model's lock (a line's
 *    n-th transition leaves it at level n & 1) and replayed, in order, through
 *    rtioreq_vm_raise_irq() after the lock is dropped, by whichever thread holds the
 *    delivery token (IR below); a thread that finds the token taken leaves its
 *    transitions to the holder and returns at once: no thread waits for another. (A
 *    transition may thus wait for the holder's raise_irq in progress; if the holder
 *    is a preempted SCHED_OTHER client thread, as long as it is preempted: give the
 *    models' client threads the pollers' priority where interrupt latency matters.)
 * reset is called after the lock is dropped. The PCI model is two atomics; the default
 * client is stateless. Counters are relaxed atomics (statistics only).
 *
 * Ordering pairs of this file (label: partner)
 *  TX1 producer: store tx.head, release, after the byte      -> TX2
 *  TX2 output thread: load tx.head, acquire, then the bytes   <- TX1
 *  TX3 output thread: store tx.tail, release, after reading   -> TX4
 *  TX4 producer: load tx.tail, acquire, before overwriting    <- TX3
 *  TXW producer: TX1, seq_cst fence, load tx.sleeping; output thread: store sleeping=1
 *      (seq_cst), fence, load head: a Dekker pair, so either the thread sees the byte
 *      or the producer sees it asleep and wakes it
 *  IR  irq.gen[l] += 1 (seq_cst, under the model's lock) then try the token (seq_cst
 *      exchange); the holder stores token=0 (seq_cst) then re-reads every gen: either
 *      the holder sees the new transition, or the other thread gets the token
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rtioreq/devices/pcdev.h"
#include "sys/clock_pvt.h"
#include "sys/futex_pvt.h"
#include "sys/hook_pvt.h"
#include "sys/thread_pvt.h"

/* ------------------------------------------------------------------------- */
/* Register layouts */

/* 16550A: offsets from the base */
#define U_RBR 0 /* read, DLAB 0; THR on write; DLL with DLAB 1 */
#define U_IER 1 /* DLM with DLAB 1 */
#define U_IIR 2 /* read; FCR on write */
#define U_LCR 3
#define U_MCR 4
#define U_LSR 5
#define U_MSR 6
#define U_SCR 7

#define IER_RDA 0x01
#define IER_THRE 0x02
#define IER_RLS 0x04
#define IER_MSI 0x08

#define IIR_NONE 0x01
#define IIR_MSI 0x00
#define IIR_THRE 0x02
#define IIR_RDA 0x04
#define IIR_RLS 0x06
#define IIR_FIFO 0xc0 /* FIFOs enabled (16550A) */

#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define FCR_CLEAR_TX 0x04

#define LCR_DLAB 0x80

#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10

#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_ERRS 0x1e /* OE, PE, FE, BI: cleared by reading LSR */
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80
#define MSR_IDLE (MSR_DCD | MSR_DSR | MSR_CTS) /* a terminal attached, not ringing */

/* i8042 */
#define KBC_DATA 0x60
#define KBC_CMD 0x64

#define STR_OBF 0x01
#define STR_SYS 0x04
#define STR_CMD 0x08 /* last write went to 0x64 */
#define STR_UNLOCKED 0x10
#define STR_AUXDATA 0x20
#define STR_TIMEOUT 0x40

#define CTR_KBDINT 0x01
#define CTR_AUXINT 0x02
#define CTR_SYS 0x04
#define CTR_KBDDIS 0x10
#define CTR_AUXDIS 0x20
#define CTR_XLATE 0x40
#define CTR_INIT (CTR_XLATE | CTR_SYS | CTR_KBDINT) /* as a PC BIOS leaves it */

/* CMOS RTC */
#define RTC_INDEX 0x70
#define RTC_DATA 0x71
#define RTC_SEC 0x00
#define RTC_MIN 0x02
#define RTC_HOUR 0x04
#define RTC_WDAY 0x06
#define RTC_MDAY 0x07
#define RTC_MONTH 0x08
#define RTC_YEAR 0x09
#define RTC_REG_A 0x0a
#define RTC_REG_B 0x0b
#define RTC_REG_C 0x0c
#define RTC_REG_D 0x0d
#define RTC_CENTURY 0x32

#define RTC_A_UIP 0x80
#define RTC_A_INIT 0x26 /* 32.768 kHz time base, 1024 Hz periodic rate */
#define RTC_B_UIE 0x10
#define RTC_B_DM 0x04 /* binary (not BCD) */
#define RTC_B_24H 0x02
#define RTC_C_IRQF 0x80
#define RTC_C_UF 0x10
#define RTC_D_VRT 0x80

/* PCI mechanism #1 */
#define PCI_ADDR 0xcf8
#define PCI_RST_CNT 0xcf9 /* reset control register (chipset), byte */
#define PCI_DATA 0xcfc
#define PCI_END 0xcff
#define PCI_ENABLE 0x80000000u
#define RST_CNT_RST_CPU 0x04

#define ALL_ONES (~(uint64_t)0)

/* ------------------------------------------------------------------------- */
/* State */

struct pcdev_uart {
	pthread_mutex_t lock; /* everything below */
	uint8_t rx[RTIOREQ_PCDEV_UART_FIFO];
	unsigned int rx_head, rx_count;
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	uint8_t lsr_err;   /* LSR_ERRS bits latched until LSR is read */
	uint8_t msr_delta; /* MSR bits 0-3 latched until MSR is read */
	bool fifo_en;
	bool thr_ipending; /* THRE interrupt condition, cleared by reading IIR */
	bool irq;	   /* level last driven on IRQ 4 */
};

struct pcdev_kbc {
	pthread_mutex_t lock;
	uint8_t ram[32]; /* controller RAM, ram[0] = command byte (CTR) */
	uint8_t outport;
	uint8_t pending;  /* command waiting for its data byte on 0x60, 0 = none */
	uint8_t obuf;
	bool obf, aux, timeout; /* output buffer full / from the aux port / tx timeout */
	bool last_cmd;
	bool irq1, irq12;
};

struct pcdev_rtc {
	pthread_mutex_t lock;
	uint8_t index;
	uint8_t ram[128];
	time_t c_sec; /* host second at the last status C read (update-ended flag) */
};

struct pcdev_stats {
	_Atomic uint64_t uart_tx, uart_rx, uart_irqs, kbd_irqs, resets, rtc_reads, pci_cfg;
	_Atomic uint64_t unclaimed_reads, unclaimed_writes, uart_tx_dropped;
};

#define TX_RING 16384u /* bytes; a power of two */

/* UART output: one producer (under uart.lock), one consumer (the output thread). */
struct pcdev_tx {
	_Atomic uint32_t head; /* TX1/TX2: bytes produced, free-running */
	_Atomic uint32_t tail __attribute__((aligned(64))); /* TX3/TX4: bytes consumed */
	_Atomic uint32_t sleeping; /* TXW: 1 while the output thread sleeps on it */
	_Atomic bool stop;
	bool running;
	pthread_t thread;
	uint8_t buf[TX_RING];
};

/* Interrupt lines and their transitions. */
enum { IRQ_COM1, IRQ_KBD, IRQ_AUX, IRQ_LINES };
static const uint32_t irq_no[IRQ_LINES] = { RTIOREQ_PCDEV_COM1_IRQ, RTIOREQ_PCDEV_KBD_IRQ,
					    RTIOREQ_PCDEV_AUX_IRQ };

struct pcdev_irq {
	_Atomic uint32_t gen[IRQ_LINES]; /* IR: transitions computed (under the model lock) */
	_Atomic uint32_t token;		 /* IR: 1 while a thread delivers */
	uint32_t sent[IRQ_LINES];	 /* transitions delivered: token holder only */
};

struct rtioreq_pcdev {
	struct rtioreq_vm *vm;
	struct rtioreq_pcdev_attr attr;
	struct rtioreq_client *uart_c, *kbc_c, *rtc_c, *pci_c, *dflt_c;
	struct pcdev_uart uart;
	struct pcdev_kbc kbc;
	struct pcdev_rtc rtc;
	/* PCI: relaxed: each is a register on its own; no other data is published with it */
	_Atomic uint32_t pci_addr;
	_Atomic uint8_t pci_rst_cnt;
	struct pcdev_stats st;
	struct pcdev_irq irq;
	struct pcdev_tx tx;
};

static inline void stat_inc(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed); /* statistics only */
}

/* Lock a model's mutex (priority inheritance); never held across a syscall. */
static inline void lock(pthread_mutex_t *m)
{
	pthread_mutex_lock(m);
}

static inline void unlock(pthread_mutex_t *m)
{
	pthread_mutex_unlock(m);
}

/* ------------------------------------------------------------------------- */
/* Interrupt delivery, outside the models' locks */

/* Record a level change of @line (the model's lock held): its next transition. */
static void irq_change(struct rtioreq_pcdev *d, unsigned int line)
{
	atomic_fetch_add_explicit(&d->irq.gen[line], 1, memory_order_seq_cst); /* IR */
}

/*
 * Deliver every recorded transition not yet delivered, in order per line (the n-th
 * transition of a line drives it to n & 1, so each edge reaches the hypervisor).
 * Call with no model lock held. Never waits: if another thread holds the token, it
 * delivers ours too (IR), and we return.
 */
static void irq_deliver(struct rtioreq_pcdev *d)
{
	struct pcdev_irq *q = &d->irq;

	for (;;) {
		uint32_t total = 0, now = 0;

		if (atomic_exchange_explicit(&q->token, 1, memory_order_seq_cst)) /* IR */
			return;
		for (unsigned int l = 0; l < IRQ_LINES; l++) {
			/* IR: acquire part of seq_cst; the model state needs no publishing */
			uint32_t g = atomic_load_explicit(&q->gen[l], memory_order_seq_cst);

			while (q->sent[l] != g) {
				q->sent[l]++;
				(void)rtioreq_vm_raise_irq(d->vm, irq_no[l], q->sent[l] & 1);
			}
			total += g;
		}
		atomic_store_explicit(&q->token, 0, memory_order_seq_cst); /* IR */
		for (unsigned int l = 0; l < IRQ_LINES; l++)
			now += atomic_load_explicit(&q->gen[l], memory_order_seq_cst); /* IR */
		if (now == total)
			return; /* nobody left a transition to us */
	}
}

/* ------------------------------------------------------------------------- */
/* UART output ring and its thread */

/* Queue a transmitted byte (uart.lock held: the only producer). Never blocks: a full
 * ring (the output thread stalled for TX_RING bytes) drops and counts the byte. */
static void tx_push(struct rtioreq_pcdev *d, uint8_t b)
{
	struct pcdev_tx *t = &d->tx;
	/* relaxed: we are the only writer of head */
	uint32_t h = atomic_load_explicit(&t->head, memory_order_relaxed);

	/* TX4: pairs with TX3, the output thread is done with the byte we overwrite */
	if (h - atomic_load_explicit(&t->tail, memory_order_acquire) == TX_RING) {
		stat_inc(&d->st.uart_tx_dropped);
		return;
	}
	t->buf[h % TX_RING] = b;
	atomic_store_explicit(&t->head, h + 1, memory_order_release); /* TX1 */
	stat_inc(&d->st.uart_tx);
}

/* After tx_push()es, with the lock dropped: wake the output thread if it sleeps. */
static void tx_kick(struct rtioreq_pcdev *d)
{
	struct pcdev_tx *t = &d->tx;

	atomic_thread_fence(memory_order_seq_cst); /* TXW: TX1 before the load below */
	/* relaxed after the fence; the exchange makes its futex wait return at once */
	if (atomic_load_explicit(&t->sleeping, memory_order_relaxed) &&
	    atomic_exchange_explicit(&t->sleeping, 0, memory_order_relaxed))
		rtioreq__futex_wake(&t->sleeping, 1, false);
}

static void *tx_main(void *arg)
{
	struct rtioreq_pcdev *d = arg;
	struct pcdev_tx *t = &d->tx;
	uint32_t tail = atomic_load_explicit(&t->tail, memory_order_relaxed); /* ours */

	for (;;) {
		uint32_t h = atomic_load_explicit(&t->head, memory_order_acquire); /* TX2 */

		if (h != tail) {
			for (; tail != h; tail++)
				if (d->attr.uart_out)
					d->attr.uart_out(d->attr.uart_ctx, t->buf[tail % TX_RING]);
			atomic_store_explicit(&t->tail, tail, memory_order_release); /* TX3 */
			continue;
		}
		/* relaxed: detach sets stop before its wake (exchange) below, and joins */
		if (atomic_load_explicit(&t->stop, memory_order_relaxed))
			break; /* empty and stopping: every byte was passed on */
		atomic_store_explicit(&t->sleeping, 1, memory_order_seq_cst); /* TXW */
		atomic_thread_fence(memory_order_seq_cst);
		if (atomic_load_explicit(&t->head, memory_order_relaxed) == h &&
		    !atomic_load_explicit(&t->stop, memory_order_relaxed))
			rtioreq__futex_wait(&t->sleeping, 1, NULL, false);
		/* relaxed: only this thread sets it to 1 (TXW); a producer that still sees
		 * 1 makes one extra wake, and the next TXW store is seq_cst again */
		atomic_store_explicit(&t->sleeping, 0, memory_order_relaxed);
	}
	return NULL;
}

static void tx_stop(struct rtioreq_pcdev *d)
{
	struct pcdev_tx *t = &d->tx;

	if (!t->running)
		return;
	atomic_store_explicit(&t->stop, true, memory_order_seq_cst); /* before the wake */
	atomic_store_explicit(&t->sleeping, 0, memory_order_seq_cst);
	rtioreq__futex_wake(&t->sleeping, 1, false);
	pthread_join(t->thread, NULL);
	t->running = false;
}

void rtioreq_pcdev_uart_flush(struct rtioreq_pcdev *d)
{
	/* acquire: bytes pushed before (by any thread we synchronized with) are counted */
	uint32_t h = atomic_load_explicit(&d->tx.head, memory_order_acquire);

	/* TX3: (int32_t) keeps the comparison right across the counters' wrap */
	while (d->tx.running &&
	       (int32_t)(atomic_load_explicit(&d->tx.tail, memory_order_acquire) - h) < 0)
		rtioreq__sleep_ms(1);
}

static void do_reset(struct rtioreq_pcdev *d)
{
	stat_inc(&d->st.resets);
	if (d->attr.reset)
		d->attr.reset(d->attr.reset_ctx);
}

/* ------------------------------------------------------------------------- */
/* 16550A UART. Every uart_* helper below is called with d->uart.lock held. */

static unsigned int uart_rx_cap(const struct pcdev_uart *u)
{
	return u->fifo_en ? RTIOREQ_PCDEV_UART_FIFO : 1;
}

static bool uart_rx_push(struct pcdev_uart *u, uint8_t b)
{
	if (u->rx_count >= uart_rx_cap(u))
		return false;
	u->rx[(u->rx_head + u->rx_count) % RTIOREQ_PCDEV_UART_FIFO] = b;
	u->rx_count++;
	return true;
}

/* Modem status inputs: in loopback, wired to the modem control outputs. */
static uint8_t uart_msr_status(uint8_t mcr)
{
	if (!(mcr & MCR_LOOP))
		return MSR_IDLE;
	return (uint8_t)(((mcr & MCR_RTS) ? MSR_CTS : 0) | ((mcr & MCR_DTR) ? MSR_DSR : 0) |
			 ((mcr & MCR_OUT1) ? MSR_RI : 0) | ((mcr & MCR_OUT2) ? MSR_DCD : 0));
}

/* Highest-priority pending interrupt that IER enables (IIR bits 0-3). */
static uint8_t uart_iir_id(const struct pcdev_uart *u)
{
	if ((u->ier & IER_RLS) && (u->lsr_err & LSR_ERRS))
		return IIR_RLS;
	if ((u->ier & IER_RDA) && u->rx_count)
		return IIR_RDA;
	if ((u->ier & IER_THRE) && u->thr_ipending)
		return IIR_THRE;
	if ((u->ier & IER_MSI) && (u->msr_delta & 0x0f))
		return IIR_MSI;
	return IIR_NONE;
}

/*
 * Drive IRQ 4 if its level changed. The PC gates the UART's interrupt output with
 * OUT2; in loopback the OUT2 pin is forced inactive, so the line stays low.
 */
static void uart_update_irq(struct rtioreq_pcdev *d)
{
	struct pcdev_uart *u = &d->uart;
	bool level = uart_iir_id(u) != IIR_NONE && (u->mcr & MCR_OUT2) && !(u->mcr & MCR_LOOP);

	if (level == u->irq)
		return;
	u->irq = level;
	if (level)
		stat_inc(&d->st.uart_irqs);
	irq_change(d, IRQ_COM1); /* delivered by irq_deliver() once unlocked */
}

static uint8_t uart_read(struct rtioreq_pcdev *d, unsigned int reg)
{
	struct pcdev_uart *u = &d->uart;
	uint8_t v = 0, id;

	switch (reg) {
	case U_RBR:
		if (u->lcr & LCR_DLAB)
			return u->dll;
		if (u->rx_count) {
			v = u->rx[u->rx_head];
			u->rx_head = (u->rx_head + 1) % RTIOREQ_PCDEV_UART_FIFO;
			u->rx_count--;
		}
		break;
	case U_IER:
		return (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
	case U_IIR:
		id = uart_iir_id(u);
		v = (uint8_t)(id | (u->fifo_en ? IIR_FIFO : 0));
		if (id == IIR_THRE)
			u->thr_ipending = false; /* reading IIR acknowledges THRE */
		break;
	case U_LCR:
		return u->lcr;
	case U_MCR:
		return u->mcr;
	case U_LSR:
		/* always ready to transmit: bytes leave at once */
		v = (uint8_t)((u->rx_count ? LSR_DR : 0) | u->lsr_err | LSR_THRE | LSR_TEMT);
		u->lsr_err = 0;
		break;
	case U_MSR:
		v = (uint8_t)(uart_msr_status(u->mcr) | u->msr_delta);
		u->msr_delta = 0;
		break;
	default: /* U_SCR */
		return u->scr;
	}
	uart_update_irq(d);
	return v;
}

/* *@tx: set when a byte went to the output ring (tx_kick() once the lock is dropped). */
static void uart_write(struct rtioreq_pcdev *d, unsigned int reg, uint8_t v, bool *tx)
{
	struct pcdev_uart *u = &d->uart;
	uint8_t old, now;

	switch (reg) {
	case U_RBR: /* THR */
		if (u->lcr & LCR_DLAB) {
			u->dll = v;
			return;
		}
		if (u->mcr & MCR_LOOP) {
			if (!uart_rx_push(u, v))
				u->lsr_err |= LSR_OE;
		} else {
			tx_push(d, v);
			*tx = true;
		}
		u->thr_ipending = true; /* THR empties at once */
		break;
	case U_IER:
		if (u->lcr & LCR_DLAB) {
			u->dlm = v;
			return;
		}
		v &= 0x0f;
		/* a rising IER.THRE re-arms THRE (LSR.THRE is always 1), as 8250's
		 * UART_BUG_THRE test and QEMU expect; a falling one drops it */
		if ((u->ier ^ v) & IER_THRE)
			u->thr_ipending = (v & IER_THRE) != 0;
		u->ier = v;
		break;
	case U_IIR: /* FCR */
		if ((bool)(v & FCR_ENABLE) != u->fifo_en || (v & FCR_CLEAR_RX))
			u->rx_head = u->rx_count = 0; /* toggling the enable clears the FIFOs */
		u->fifo_en = v & FCR_ENABLE;
		u->fcr = u->fifo_en ? (uint8_t)(v & 0xc9) : 0; /* trigger level, DMA mode */
		break;
	case U_LCR:
		u->lcr = v;
		return;
	case U_MCR:
		old = uart_msr_status(u->mcr);
		u->mcr = v & 0x1f;
		now = uart_msr_status(u->mcr);
		if ((old ^ now) & MSR_CTS)
			u->msr_delta |= MSR_DCTS;
		if ((old ^ now) & MSR_DSR)
			u->msr_delta |= MSR_DDSR;
		if ((old & MSR_RI) && !(now & MSR_RI))
			u->msr_delta |= MSR_TERI;
		if ((old ^ now) & MSR_DCD)
			u->msr_delta |= MSR_DDCD;
		break;
	case U_LSR: /* read only (factory test on some parts) */
	case U_MSR:
		return;
	default: /* U_SCR */
		u->scr = v;
		return;
	}
	uart_update_irq(d);
}

static int uart_handler(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	struct rtioreq_pcdev *d = priv;
	bool tx = false;
	uint64_t v = 0;

	if (req->type != RTIOREQ_TYPE_PORTIO || req->addr < RTIOREQ_PCDEV_COM1_BASE ||
	    req->addr + req->size > RTIOREQ_PCDEV_COM1_BASE + 8)
		return -EINVAL;
	/* a wider access is split into byte accesses, low address first, as the ISA
	 * bus does for an 8-bit device */
	lock(&d->uart.lock);
	RTIOREQ__HOOK("pcdev.uart.locked", d);
	for (uint32_t i = 0; i < req->size; i++) {
		unsigned int reg = (unsigned int)(req->addr - RTIOREQ_PCDEV_COM1_BASE) + i;

		if (req->dir == RTIOREQ_DIR_WRITE)
			uart_write(d, reg, (uint8_t)(req->value >> (8 * i)), &tx);
		else
			v |= (uint64_t)uart_read(d, reg) << (8 * i);
	}
	unlock(&d->uart.lock);
	if (req->dir != RTIOREQ_DIR_WRITE)
		req->value = v;
	if (tx)
		tx_kick(d);
	irq_deliver(d);
	return 0;
}

unsigned int rtioreq_pcdev_uart_input(struct rtioreq_pcdev *d, const uint8_t *buf,
				      unsigned int n)
{
	struct pcdev_uart *u = &d->uart;
	unsigned int i = 0;

	lock(&u->lock);
	if (!(u->mcr & MCR_LOOP)) { /* loopback disconnects the serial input */
		while (i < n && uart_rx_push(u, buf[i]))
			i++;
		uart_update_irq(d);
	}
	unlock(&u->lock);
	irq_deliver(d);
	for (unsigned int k = 0; k < i; k++)
		stat_inc(&d->st.uart_rx);
	return i;
}

/* ------------------------------------------------------------------------- */
/* i8042 keyboard controller, no keyboard or mouse attached. With d->kbc.lock held. */

static void kbc_update_irq(struct rtioreq_pcdev *d)
{
	struct pcdev_kbc *k = &d->kbc;
	bool irq1 = k->obf && !k->aux && (k->ram[0] & CTR_KBDINT);
	bool irq12 = k->obf && k->aux && (k->ram[0] & CTR_AUXINT);

	if (irq1 != k->irq1) {
		k->irq1 = irq1;
		if (irq1)
			stat_inc(&d->st.kbd_irqs);
		irq_change(d, IRQ_KBD);
	}
	if (irq12 != k->irq12) {
		k->irq12 = irq12;
		if (irq12)
			stat_inc(&d->st.kbd_irqs);
		irq_change(d, IRQ_AUX);
	}
}

/* Put a byte in the output buffer (the controller has one; a new byte replaces it). */
static void kbc_output(struct rtioreq_pcdev *d, uint8_t b, bool aux, bool timeout)
{
	struct pcdev_kbc *k = &d->kbc;

	k->obuf = b;
	k->obf = true;
	k->aux = aux;
	k->timeout = timeout;
	kbc_update_irq(d);
}

static uint8_t kbc_status(const struct pcdev_kbc *k)
{
	return (uint8_t)((k->obf ? STR_OBF : 0) | ((k->ram[0] & CTR_SYS) ? STR_SYS : 0) |
			 (k->last_cmd ? STR_CMD : 0) | STR_UNLOCKED | (k->aux ? STR_AUXDATA : 0) |
			 (k->timeout ? STR_TIMEOUT : 0));
}

/* Return true if the guest asked for a reset (call do_reset() after unlocking). */
static bool kbc_command(struct rtioreq_pcdev *d, uint8_t cmd)
{
	struct pcdev_kbc *k = &d->kbc;

	k->last_cmd = true;
	k->pending = 0;
	if (cmd >= 0x20 && cmd <= 0x3f) { /* read controller RAM; 0x20: the CTR */
		kbc_output(d, k->ram[cmd - 0x20], false, false);
		return false;
	}
	if ((cmd >= 0x60 && cmd <= 0x7f) || (cmd >= 0xd1 && cmd <= 0xd4)) {
		k->pending = cmd; /* the data byte follows on 0x60 */
		return false;
	}
	if (cmd >= 0xf0) /* pulse output lines whose bit is 0: line 0 is the CPU reset */
		return !(cmd & 1);
	switch (cmd) {
	case 0xa7: /* disable aux port */
		k->ram[0] |= CTR_AUXDIS;
		break;
	case 0xa8:
		k->ram[0] &= (uint8_t)~CTR_AUXDIS;
		break;
	case 0xa9: /* aux interface test: no error */
	case 0xab: /* keyboard interface test: no error */
		kbc_output(d, 0x00, false, false);
		break;
	case 0xaa: /* controller self test: passed, system flag set */
		k->ram[0] |= CTR_SYS;
		kbc_output(d, 0x55, false, false);
		break;
	case 0xad: /* disable keyboard */
		k->ram[0] |= CTR_KBDDIS;
		break;
	case 0xae:
		k->ram[0] &= (uint8_t)~CTR_KBDDIS;
		break;
	case 0xc0: /* read input port: keyboard not inhibited */
		kbc_output(d, 0x80, false, false);
		break;
	case 0xd0: /* read output port */
		kbc_output(d, k->outport, false, false);
		break;
	case 0xdd: /* A20 off / on (ignored beyond the output port bit) */
		k->outport &= (uint8_t)~0x02;
		break;
	case 0xdf:
		k->outport |= 0x02;
		break;
	default: /* unknown: ignored */
		break;
	}
	return false;
}

static bool kbc_data(struct rtioreq_pcdev *d, uint8_t v)
{
	struct pcdev_kbc *k = &d->kbc;
	uint8_t cmd = k->pending;

	k->last_cmd = false;
	k->pending = 0;
	if (cmd >= 0x60 && cmd <= 0x7f) {
		k->ram[cmd - 0x60] = v;
		kbc_update_irq(d); /* the CTR's interrupt enables may have changed */
		return false;
	}
	switch (cmd) {
	case 0xd1: /* write output port: bit 0 low holds the CPU in reset */
		k->outport = v;
		return !(v & 1);
	case 0xd2: /* write keyboard output buffer (loopback) */
		kbc_output(d, v, false, false);
		break;
	case 0xd3: /* write aux output buffer (loopback) */
		kbc_output(d, v, true, false);
		break;
	case 0xd4: /* to the aux device: none attached, the controller times out */
		kbc_output(d, 0xfe, true, true);
		break;
	default: /* to the keyboard: none attached, the controller times out */
		kbc_output(d, 0xfe, false, true);
		break;
	}
	return false;
}

static int kbc_handler(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	struct rtioreq_pcdev *d = priv;
	struct pcdev_kbc *k = &d->kbc;
	bool reset = false;
	uint8_t v;

	if (req->type != RTIOREQ_TYPE_PORTIO || req->size != 1 ||
	    (req->addr != KBC_DATA && req->addr != KBC_CMD))
		return -EINVAL;
	lock(&k->lock);
	if (req->dir == RTIOREQ_DIR_WRITE) {
		v = (uint8_t)req->value;
		reset = req->addr == KBC_CMD ? kbc_command(d, v) : kbc_data(d, v);
	} else if (req->addr == KBC_CMD) {
		req->value = kbc_status(k);
	} else {
		req->value = k->obuf; /* the last byte again if the buffer is empty */
		k->obf = k->aux = k->timeout = false;
		kbc_update_irq(d);
	}
	unlock(&k->lock);
	irq_deliver(d);
	if (reset)
		do_reset(d);
	return 0;
}

/* ------------------------------------------------------------------------- */
/* CMOS RTC (MC146818): time from CLOCK_REALTIME, 128 bytes of RAM. */

static uint8_t bin2bcd(unsigned int v)
{
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

/* A time register in the format status B asks for. */
static uint8_t rtc_time_reg(const struct pcdev_rtc *r, unsigned int reg, const struct tm *tm)
{
	bool bcd = !(r->ram[RTC_REG_B] & RTC_B_DM);
	unsigned int v, pm = 0;

	switch (reg) {
	case RTC_SEC:
		v = (unsigned int)(tm->tm_sec > 59 ? 59 : tm->tm_sec);
		break;
	case RTC_MIN:
		v = (unsigned int)tm->tm_min;
		break;
	case RTC_HOUR:
		v = (unsigned int)tm->tm_hour;
		if (!(r->ram[RTC_REG_B] & RTC_B_24H)) { /* 12-hour: 1..12, bit 7 = PM */
			pm = v >= 12 ? 0x80 : 0;
			v = v % 12 ? v % 12 : 12;
		}
		break;
	case RTC_WDAY:
		v = (unsigned int)tm->tm_wday + 1; /* 1 = Sunday */
		break;
	case RTC_MDAY:
		v = (unsigned int)tm->tm_mday;
		break;
	case RTC_MONTH:
		v = (unsigned int)tm->tm_mon + 1;
		break;
	case RTC_YEAR:
		v = (unsigned int)(tm->tm_year + 1900) % 100;
		break;
	default: /* RTC_CENTURY */
		v = (unsigned int)(tm->tm_year + 1900) / 100;
		break;
	}
	return (uint8_t)((bcd ? bin2bcd(v) : v) | pm);
}

static bool rtc_is_time(unsigned int reg)
{
	return reg == RTC_SEC || reg == RTC_MIN || reg == RTC_HOUR || reg == RTC_WDAY ||
	       reg == RTC_MDAY || reg == RTC_MONTH || reg == RTC_YEAR || reg == RTC_CENTURY;
}

/* With d->rtc.lock held. */
static uint8_t rtc_read(struct rtioreq_pcdev *d)
{
	struct pcdev_rtc *r = &d->rtc;
	unsigned int reg = r->index;
	struct timespec ts;
	struct tm tm;
	uint8_t v;

	stat_inc(&d->st.rtc_reads);
	if (rtc_is_time(reg) || reg == RTC_REG_C) {
		clock_gettime(CLOCK_REALTIME, &ts);
		if (reg == RTC_REG_C) {
			/* update-ended flag: a second boundary passed since the last read */
			v = ts.tv_sec != r->c_sec ? RTC_C_UF : 0;
			if (v && (r->ram[RTC_REG_B] & RTC_B_UIE))
				v |= RTC_C_IRQF;
			r->c_sec = ts.tv_sec;
			return v;
		}
		gmtime_r(&ts.tv_sec, &tm);
		return rtc_time_reg(r, reg, &tm);
	}
	switch (reg) {
	case RTC_REG_A:
		return r->ram[reg] & (uint8_t)~RTC_A_UIP; /* never inside an update */
	case RTC_REG_D:
		return RTC_D_VRT;
	default:
		return r->ram[reg];
	}
}

static void rtc_write(struct pcdev_rtc *r, uint8_t v)
{
	unsigned int reg = r->index;

	if (rtc_is_time(reg) || reg == RTC_REG_C || reg == RTC_REG_D)
		return; /* the clock is the host's; C and D are read only */
	if (reg == RTC_REG_A)
		v &= (uint8_t)~RTC_A_UIP;
	r->ram[reg] = v;
}

static int rtc_handler(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	struct rtioreq_pcdev *d = priv;
	struct pcdev_rtc *r = &d->rtc;
	uint64_t v = 0;

	if (req->type != RTIOREQ_TYPE_PORTIO || req->addr < RTC_INDEX ||
	    req->addr + req->size > RTC_DATA + 1)
		return -EINVAL;
	lock(&r->lock);
	for (uint32_t i = 0; i < req->size; i++) { /* e.g. outw 0x70: index, then data */
		uint8_t b = (uint8_t)(req->value >> (8 * i)), rb;

		if (req->addr + i == RTC_INDEX) {
			if (req->dir == RTIOREQ_DIR_WRITE)
				r->index = b & 0x7f; /* bit 7: NMI mask, ignored */
			rb = r->index;
		} else if (req->dir == RTIOREQ_DIR_WRITE) {
			rtc_write(r, b);
			rb = 0;
		} else {
			rb = rtc_read(d);
		}
		v |= (uint64_t)rb << (8 * i);
	}
	unlock(&r->lock);
	if (req->dir != RTIOREQ_DIR_WRITE)
		req->value = v;
	return 0;
}

/* ------------------------------------------------------------------------- */
/* PCI configuration: mechanism #1 and PCICFG requests. No device is present. */

/* Configuration read of @size bytes at @reg of bus/dev/func: no function answers. */
static uint64_t pci_cfg_read(uint8_t bus, uint8_t dev, uint8_t func, uint32_t reg,
			     uint32_t size)
{
	return ALL_ONES;
}

static void pci_cfg_write(uint8_t bus, uint8_t dev, uint8_t func, uint32_t reg, uint32_t size,
			  uint64_t value)
{
}

/*
 * 0xcf8..0xcff. A dword at 0xcf8 is CONFIG_ADDRESS (what ACRN's HSM caches);
 * 0xcfc..0xcff with the enable bit set is a configuration access to the addressed
 * function (HSM turns it into a PCICFG request: same answer here), with it clear reads
 * all ones. Other bytes of 0xcf8..0xcfb are ISA ports: 0xcf9 is the reset control
 * register, the rest reads all ones. Writes of what does not exist are ignored.
 */
static int pci_handler(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	struct rtioreq_pcdev *d = priv;
	bool wr = req->dir == RTIOREQ_DIR_WRITE, reset = false;
	uint32_t a;
	uint64_t v = 0;

	if (req->type != RTIOREQ_TYPE_PORTIO || req->addr < PCI_ADDR ||
	    req->addr + req->size > PCI_END + 1)
		return -EINVAL;
	stat_inc(&d->st.pci_cfg);
	if (req->addr == PCI_ADDR && req->size == 4) {
		/* relaxed: a register; the guest orders its own accesses to it */
		if (wr)
			atomic_store_explicit(&d->pci_addr, (uint32_t)req->value,
					      memory_order_relaxed);
		else
			req->value = atomic_load_explicit(&d->pci_addr, memory_order_relaxed);
		return 0;
	}
	if (req->addr >= PCI_DATA) {
		a = atomic_load_explicit(&d->pci_addr, memory_order_relaxed);
		if (a & PCI_ENABLE) {
			/* as HSM decodes it: reg bits 7:2, extended bits 27:24, byte */
			uint32_t reg = (a & 0xfc) | ((a >> 16) & 0xf00) |
				       (uint32_t)(req->addr - PCI_DATA);
			uint8_t bus = (uint8_t)(a >> 16), dev = (a >> 11) & 0x1f;
			uint8_t func = (a >> 8) & 7;

			if (wr)
				pci_cfg_write(bus, dev, func, reg, req->size, req->value);
			else
				req->value = pci_cfg_read(bus, dev, func, reg, req->size);
		} else if (!wr) {
			req->value = ALL_ONES;
		}
		return 0;
	}
	for (uint32_t i = 0; i < req->size; i++) { /* sub-dword within 0xcf8..0xcfb */
		uint64_t port = req->addr + i;
		uint8_t b = (uint8_t)(req->value >> (8 * i)), rb = 0xff;

		if (port == PCI_RST_CNT) {
			if (wr) {
				reset |= (b & RST_CNT_RST_CPU) != 0;
				/* relaxed: a register of its own; RST_CPU reads back 0 */
				atomic_store_explicit(&d->pci_rst_cnt, b & 0x0a,
						      memory_order_relaxed);
			}
			rb = atomic_load_explicit(&d->pci_rst_cnt, memory_order_relaxed);
		} else if (port >= PCI_DATA) {
			rb = 0xff; /* an unaligned dword reaching into the data port */
		}
		v |= (uint64_t)rb << (8 * i);
	}
	if (!wr)
		req->value = v;
	if (reset)
		do_reset(d);
	return 0;
}

/* ------------------------------------------------------------------------- */
/* Default client: what no range claims; PCICFG requests. */

static int dflt_handler(struct rtioreq_client *c, struct rtioreq_req *req, void *priv)
{
	struct rtioreq_pcdev *d = priv;

	if (req->type == RTIOREQ_TYPE_PCICFG) {
		stat_inc(&d->st.pci_cfg);
		if (req->dir == RTIOREQ_DIR_WRITE)
			pci_cfg_write(req->bus, req->dev, req->func, (uint32_t)req->addr,
				      req->size, req->value);
		else
			req->value = pci_cfg_read(req->bus, req->dev, req->func,
						  (uint32_t)req->addr, req->size);
		return 0;
	}
	if (req->dir == RTIOREQ_DIR_WRITE) {
		stat_inc(&d->st.unclaimed_writes);
	} else {
		stat_inc(&d->st.unclaimed_reads);
		req->value = ALL_ONES; /* the engine masks it to the size */
	}
	return 0;
}

/* ------------------------------------------------------------------------- */
/* Direct calls, attach, detach */

static bool within(const struct rtioreq_req *req, uint64_t start, uint64_t end)
{
	return req->addr >= start && req->addr + (req->size - 1) <= end;
}

int rtioreq_pcdev_handle(struct rtioreq_pcdev *d, struct rtioreq_req *req)
{
	int r;

	if (!req->size || req->size > 8 || (req->size & (req->size - 1)) ||
	    req->type > RTIOREQ_TYPE_PCICFG || req->addr > UINT64_MAX - (req->size - 1))
		return -EINVAL;
	req->value &= rtioreq_size_mask(req->size);
	if (req->type != RTIOREQ_TYPE_PORTIO)
		r = dflt_handler(NULL, req, d); /* MMIO: nothing claimed; PCICFG */
	else if (within(req, RTIOREQ_PCDEV_COM1_BASE, RTIOREQ_PCDEV_COM1_BASE + 7))
		r = uart_handler(NULL, req, d);
	else if (within(req, KBC_DATA, KBC_DATA) || within(req, KBC_CMD, KBC_CMD))
		r = kbc_handler(NULL, req, d);
	else if (within(req, RTC_INDEX, RTC_DATA))
		r = rtc_handler(NULL, req, d);
	else if (within(req, PCI_ADDR, PCI_END))
		r = pci_handler(NULL, req, d);
	else
		r = dflt_handler(NULL, req, d);
	if (r < 0 && req->dir != RTIOREQ_DIR_WRITE)
		req->value = ALL_ONES;
	if (req->dir != RTIOREQ_DIR_WRITE)
		req->value &= rtioreq_size_mask(req->size);
	return r;
}

void rtioreq_pcdev_stats(const struct rtioreq_pcdev *d, struct rtioreq_pcdev_stats *out)
{
	const struct pcdev_stats *s = &d->st;

	memset(out, 0, sizeof(*out)); /* reserved tail: zero (rtioreq/common.h) */
	/* relaxed: statistics */
	out->uart_tx = atomic_load_explicit(&s->uart_tx, memory_order_relaxed);
	out->uart_rx = atomic_load_explicit(&s->uart_rx, memory_order_relaxed);
	out->uart_irqs = atomic_load_explicit(&s->uart_irqs, memory_order_relaxed);
	out->kbd_irqs = atomic_load_explicit(&s->kbd_irqs, memory_order_relaxed);
	out->resets = atomic_load_explicit(&s->resets, memory_order_relaxed);
	out->rtc_reads = atomic_load_explicit(&s->rtc_reads, memory_order_relaxed);
	out->pci_cfg = atomic_load_explicit(&s->pci_cfg, memory_order_relaxed);
	out->unclaimed_reads = atomic_load_explicit(&s->unclaimed_reads, memory_order_relaxed);
	out->unclaimed_writes = atomic_load_explicit(&s->unclaimed_writes, memory_order_relaxed);
	out->uart_tx_dropped = atomic_load_explicit(&s->uart_tx_dropped, memory_order_relaxed);
}

static void pcdev_free(struct rtioreq_pcdev *d)
{
	tx_stop(d); /* after the clients: no producer left; every byte is passed on */
	pthread_mutex_destroy(&d->uart.lock);
	pthread_mutex_destroy(&d->kbc.lock);
	pthread_mutex_destroy(&d->rtc.lock);
	free(d);
}

void rtioreq_pcdev_detach(struct rtioreq_pcdev *d)
{
	struct rtioreq_client **cs[] = { &d->dflt_c, &d->pci_c, &d->rtc_c, &d->kbc_c,
					 &d->uart_c };

	if (!d)
		return;
	/* after each destroy returns, no handler of that client runs any more */
	for (size_t i = 0; i < sizeof(cs) / sizeof(cs[0]); i++) {
		if (*cs[i])
			rtioreq_client_destroy(*cs[i]);
		*cs[i] = NULL;
	}
	pcdev_free(d);
}

/* Create a client and add its port ranges ([start, end] pairs, n of them). */
static struct rtioreq_client *mk(struct rtioreq_pcdev *d, const char *name,
				 rtioreq_handler_fn fn, bool dflt, const uint16_t *ports,
				 unsigned int n)
{
	const struct rtioreq_client_attr ca = {
		.name = name, .handler = fn, .priv = d, .is_default = dflt,
		.thread = d->attr.thread,
	};
	struct rtioreq_client *c = rtioreq_client_create(d->vm, &ca);
	int r;

	if (!c)
		return NULL;
	for (unsigned int i = 0; i < n; i++) {
		r = rtioreq_range_add(c, RTIOREQ_TYPE_PORTIO, ports[2 * i], ports[2 * i + 1]);
		if (r < 0) {
			rtioreq_client_destroy(c);
			errno = -r;
			return NULL;
		}
	}
	return c;
}

struct rtioreq_pcdev *rtioreq_pcdev_attach(struct rtioreq_vm *vm,
					   const struct rtioreq_pcdev_attr *attr)
{
	static const uint16_t uart_r[] = { RTIOREQ_PCDEV_COM1_BASE, RTIOREQ_PCDEV_COM1_BASE + 7 };
	static const uint16_t kbc_r[] = { KBC_DATA, KBC_DATA, KBC_CMD, KBC_CMD };
	static const uint16_t rtc_r[] = { RTC_INDEX, RTC_DATA };
	static const uint16_t pci_r[] = { PCI_ADDR, PCI_END };
	struct rtioreq_pcdev *d;
	int err;

	if (!vm) {
		errno = EINVAL;
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->vm = vm;
	if (attr)
		d->attr = *attr;
	/* fully initialised before any client exists: handlers may run at once */
	err = rtioreq__mutex_init_pi(&d->uart.lock);
	if (!err)
		err = rtioreq__mutex_init_pi(&d->kbc.lock);
	if (!err)
		err = rtioreq__mutex_init_pi(&d->rtc.lock);
	if (!err)
		err = -rtioreq__thread_start(&d->tx.thread, d->attr.output, "rtioreq-uart", tx_main,
					     d);
	if (err) {
		pthread_mutex_destroy(&d->uart.lock); /* destroying a zeroed mutex is fine */
		pthread_mutex_destroy(&d->kbc.lock);
		pthread_mutex_destroy(&d->rtc.lock);
		free(d);
		errno = err;
		return NULL;
	}
	d->tx.running = true;
	d->kbc.ram[0] = CTR_INIT;
	d->kbc.outport = 0x03; /* reset line high (not in reset), A20 on */
	d->kbc.last_cmd = true;
	d->rtc.ram[RTC_REG_A] = RTC_A_INIT;
	d->rtc.ram[RTC_REG_B] = RTC_B_24H;
	d->rtc.ram[RTC_REG_D] = RTC_D_VRT;
	/* before any client exists: no other thread sees the device yet */
	atomic_init(&d->pci_addr, 0);
	atomic_init(&d->pci_rst_cnt, 0);

	d->uart_c = mk(d, "pc-uart", uart_handler, false, uart_r, 1);
	if (d->uart_c)
		d->kbc_c = mk(d, "pc-i8042", kbc_handler, false, kbc_r, 2);
	if (d->kbc_c)
		d->rtc_c = mk(d, "pc-rtc", rtc_handler, false, rtc_r, 1);
	if (d->rtc_c)
		d->pci_c = mk(d, "pc-pci", pci_handler, false, pci_r, 1);
	if (d->pci_c && !d->attr.no_default)
		d->dflt_c = mk(d, "pc-default", dflt_handler, true, NULL, 0);
	if (d->pci_c && (d->dflt_c || d->attr.no_default))
		return d;
	err = errno;
	rtioreq_pcdev_detach(d);
	errno = err;
	return NULL;
}
