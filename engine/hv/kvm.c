// SPDX-License-Identifier: MIT
/*
 * KVM trap source (include/rtioreq/hv/kvm.h): a Linux guest under /dev/kvm whose port-I/O
 * and MMIO exits become ACRN-format requests in the vCPUs' slots. The vCPU threads are
 * the hypervisor side of docs/shm-protocol.md and use only the rtioreq_hv_* helpers of
 * engine/hv/shm.c for it (H1 submit + upcall rule, H2 poll, H3 release, done_seq wait), so
 * this file owns no acquire/release pair of its own on the slots.
 *
 * Atomics here: `exit_reason` (the first stop reason wins, CAS) and `stop` (release by
 * rtioreq_kvm_stop(), acquire by the vCPU threads before KVM_RUN: the reason and
 * detail are visible once stop is seen); kvm_run.immediate_exit is a plain store read
 * by the kernel at KVM_RUN entry, ordered before the kick signal by the tgkill
 * syscall. Per-vCPU statistics are written by their vCPU thread only and read after
 * pthread_join.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <asm/bootparam.h>
#include <elf.h>

#include "hv/kvm_pvt.h"
#include "sys/clock_pvt.h"
#include "sys/cpu_pvt.h"
#include "rtioreq/hv/kvm.h"

#define KICK_SIGNAL SIGUSR2 /* leaves KVM_RUN with -EINTR; the handler does nothing */

struct vcpu {
	struct rtioreq_kvm *k;
	uint16_t id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	_Atomic bool started; /* thread exists: may be signalled */
	/* written by the vCPU thread only */
	struct rtioreq_kvm_stats st;
};

struct rtioreq_kvm {
	int kvm_fd, vm_fd;
	uint8_t *mem;
	uint64_t mem_size;
	size_t run_size;
	unsigned int nvcpu;
	struct rtioreq_kvm_attr a;
	bool emulated; /* kvm_emulates_ring0() */
	struct rtioreq_shm shm;
	struct kvm_boot_info boot;
	_Atomic bool stop;
	_Atomic int exit_reason; /* enum rtioreq_kvm_exit; RUNNING until the first stop */
	char detail[160];	 /* written by the one stop that won the CAS */
	sem_t stopped;		 /* posted by every stop that won the CAS */
	_Atomic uint64_t t0;	 /* run start, ns (0 before) */
	uint64_t run_ns;
	_Atomic uint64_t irq_raises;
	bool ran;
	struct vcpu vcpu[RTIOREQ_IO_REQUEST_MAX];
};

const char *rtioreq_kvm_exit_name(enum rtioreq_kvm_exit e)
{
	static const char *const n[] = {
		[RTIOREQ_KVM_RUNNING] = "running",
		[RTIOREQ_KVM_REBOOT] = "reboot",
		[RTIOREQ_KVM_TRIPLE_FAULT] = "triple-fault",
		[RTIOREQ_KVM_SYSTEM_EVENT] = "system-event",
		[RTIOREQ_KVM_HLT] = "hlt",
		[RTIOREQ_KVM_TIMEOUT] = "timeout",
		[RTIOREQ_KVM_STOPPED] = "stopped",
		[RTIOREQ_KVM_STRANDED] = "stranded",
		[RTIOREQ_KVM_FAIL_ENTRY] = "fail-entry",
		[RTIOREQ_KVM_INTERNAL_ERROR] = "internal-error",
		[RTIOREQ_KVM_UNHANDLED] = "unhandled-exit",
		[RTIOREQ_KVM_ERROR] = "error",
	};

	if ((unsigned int)e >= sizeof(n) / sizeof(n[0]) || !n[e])
		return "unknown";
	return n[e];
}

static void set_why(char *why, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_why(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!why || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
}

/* ---------------------------------------------------------------------------------- */
/* Loading Linux: the x86 boot protocol, 64-bit entry */

/*
 * Image bytes come through img_read(): from the file with pread (the loader reads the
 * headers, checks them, then streams the payload straight into guest memory, so a 2 GiB
 * sparse file costs nothing before it is refused) or from a buffer (tests, fuzzing).
 */
static int img_read(const struct kvm__image *im, uint64_t off, void *dst, uint64_t n)
{
	uint8_t *d = dst;

	if (off > im->len || n > im->len - off)
		return -ENOEXEC;
	if (im->buf) {
		memcpy(d, im->buf + off, n);
		return 0;
	}
	while (n) {
		ssize_t r = pread(im->fd, d, n > (1u << 30) ? (1u << 30) : n, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO; /* shrank under us */
		d += r;
		off += (uint64_t)r;
		n -= (uint64_t)r;
	}
	return 0;
}

static int image_open(struct kvm__image *im, const char *path, char *why, size_t why_len)
{
	struct stat st;
	int r;

	*im = (struct kvm__image){ .name = path, .fd = open(path, O_RDONLY | O_CLOEXEC) };
	if (im->fd < 0) {
		r = -errno;
		set_why(why, why_len, "%s: %s", path, strerror(errno));
		return r;
	}
	if (fstat(im->fd, &st) || !S_ISREG(st.st_mode) || st.st_size <= 0) {
		set_why(why, why_len, "%s: not a regular, non-empty file", path);
		close(im->fd);
		im->fd = -1;
		return -EINVAL;
	}
	im->len = (uint64_t)st.st_size;
	return 0;
}

static void e820_add(struct boot_params *bp, uint64_t addr, uint64_t size, uint32_t type)
{
	struct boot_e820_entry *e = &bp->e820_table[bp->e820_entries++];

	e->addr = addr;
	e->size = size;
	e->type = type;
}

static uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
	return ((uint64_t)(base & 0xff000000u) << 32) | ((uint64_t)(flags & 0xf0ffu) << 40) |
	       ((uint64_t)(limit & 0x000f0000u) << 32) | ((uint64_t)(base & 0x00ffffffu) << 16) |
	       (uint64_t)(limit & 0x0000ffffu);
}

/*
 * An uncompressed ELF vmlinux (what the bzImage's decompressor would produce): every
 * PT_LOAD segment at its physical address, entered at e_entry (phys_startup_64) with
 * the same 64-bit protocol. Skips the decompressor, which matters where guest ring-0
 * code is emulated (docs/kvm.md).
 */
static int load_elf(uint8_t *mem, uint64_t mem_size, const struct kvm__image *im,
		    struct kvm_boot_info *bi, uint64_t *end, char *why, size_t why_len)
{
	const char *kernel = im->name;
	uint64_t lo = UINT64_MAX, hi = 0;
	Elf64_Ehdr eh;
	int r;

	r = img_read(im, 0, &eh, sizeof(eh));
	if (r || eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64 ||
	    eh.e_phentsize != sizeof(Elf64_Phdr)) {
		set_why(why, why_len, "%s: not an x86-64 ELF kernel (e_ident, e_machine, "
			"e_phentsize)", kernel);
		return -ENOEXEC;
	}
	/* e_phnum * 56 < 4 MiB: no wrap; then e_phoff against what is left of the file */
	if ((uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > im->len ||
	    eh.e_phoff > im->len - (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr)) {
		set_why(why, why_len, "%s: e_phoff %#llx + e_phnum %u program headers are past "
			"the end of the file (%llu bytes)", kernel, (unsigned long long)eh.e_phoff,
			eh.e_phnum, (unsigned long long)im->len);
		return -ENOEXEC;
	}
	/* pass 0 checks every header and finds the extent, pass 1 loads */
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned int i = 0; i < eh.e_phnum; i++) {
			Elf64_Phdr ph;

			r = img_read(im, eh.e_phoff + (uint64_t)i * sizeof(ph), &ph, sizeof(ph));
			if (r) {
				set_why(why, why_len, "%s: program header %u: %s", kernel, i,
					strerror(-r));
				return r;
			}
			if (ph.p_type != PT_LOAD)
				continue;
			if (ph.p_filesz > im->len || ph.p_offset > im->len - ph.p_filesz) {
				set_why(why, why_len, "%s: segment %u: p_offset %#llx + p_filesz "
					"%#llx is past the end of the file (%llu bytes)", kernel, i,
					(unsigned long long)ph.p_offset,
					(unsigned long long)ph.p_filesz,
					(unsigned long long)im->len);
				return -ENOEXEC;
			}
			if (ph.p_filesz > ph.p_memsz) {
				set_why(why, why_len,
					"%s: segment %u: p_filesz %#llx > p_memsz %#llx", kernel, i,
					(unsigned long long)ph.p_filesz,
					(unsigned long long)ph.p_memsz);
				return -ENOEXEC;
			}
			if (ph.p_paddr < KVMG_HIGH || ph.p_memsz > mem_size ||
			    ph.p_paddr > mem_size - ph.p_memsz) {
				set_why(why, why_len,
					"%s: segment %u: p_paddr %#llx + p_memsz %#llx does "
					"not fit in %llu MiB above 1 MiB", kernel, i,
					(unsigned long long)ph.p_paddr,
					(unsigned long long)ph.p_memsz,
					(unsigned long long)(mem_size >> 20));
				return -E2BIG;
			}
			if (!pass) {
				if (ph.p_paddr < lo)
					lo = ph.p_paddr;
				if (ph.p_paddr + ph.p_memsz > hi)
					hi = ph.p_paddr + ph.p_memsz;
				continue;
			}
			r = img_read(im, ph.p_offset, mem + ph.p_paddr, ph.p_filesz);
			if (r) {
				set_why(why, why_len, "%s: segment %u: %s", kernel, i,
					strerror(-r));
				return r;
			}
			memset(mem + ph.p_paddr + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
		}
		if (!pass && (!hi || eh.e_entry < lo || eh.e_entry >= hi)) {
			set_why(why, why_len,
				"%s: no loadable segment holds the entry e_entry %#llx", kernel,
				(unsigned long long)eh.e_entry);
			return -ENOEXEC;
		}
	}
	bi->kernel_addr = lo;
	bi->entry = eh.e_entry;
	bi->version = 0x20c;
	*end = hi - lo;
	return 0;
}

int kvm__load_linux_image(uint8_t *mem, uint64_t mem_size, const struct kvm__image *kernel,
			  const struct kvm__image *initrd, const char *cmdline,
			  struct kvm_boot_info *bi, char *why, size_t why_len)
{
	struct boot_params *bp = (struct boot_params *)(mem + KVMG_ZERO_PAGE);
	/* the boot sector and setup header: 0x1f1 + sizeof(struct setup_header) < 0x300 */
	uint8_t head[0x400];
	struct setup_header *hdr;
	uint64_t setup_len, pm_len, load, init_size, rd_max;
	size_t hdr_end, cl_len = strlen(cmdline);
	uint32_t cl_max;
	int r;

	memset(bi, 0, sizeof(*bi));
	if (mem_size < KVMG_HIGH + (2u << 20)) {
		set_why(why, why_len, "guest RAM of %llu bytes is too small",
			(unsigned long long)mem_size);
		return -EINVAL;
	}
	if (kernel->len >= SELFMAG && !img_read(kernel, 0, head, SELFMAG) &&
	    !memcmp(head, ELFMAG, SELFMAG)) {
		r = load_elf(mem, mem_size, kernel, bi, &init_size, why, why_len);
		if (r)
			return r;
		load = bi->kernel_addr;
		/* no setup header in an ELF image: the fields a 2.12 header would carry */
		memset(bp, 0, sizeof(*bp));
		bp->hdr.boot_flag = 0xaa55;
		bp->hdr.header = 0x53726448; /* "HdrS" */
		bp->hdr.version = 0x20c;
		bp->hdr.type_of_loader = 0xff;
		bp->hdr.loadflags = LOADED_HIGH;
		bp->hdr.kernel_alignment = 0x200000;
		bp->hdr.initrd_addr_max = 0x7fffffff;
		bp->hdr.cmdline_size = KVMG_CMDLINE_MAX - 1;
		bp->hdr.vid_mode = 0xffff;
		hdr = &bp->hdr;
		goto params;
	}
	if (kernel->len < 0x1000 || img_read(kernel, 0, head, sizeof(head)) ||
	    head[0x1fe] != 0x55 || head[0x1ff] != 0xaa || memcmp(head + 0x202, "HdrS", 4)) {
		set_why(why, why_len, "%s: not a Linux bzImage (no boot sector/HdrS)",
			kernel->name);
		return -ENOEXEC;
	}
	hdr = (struct setup_header *)(head + 0x1f1);
	bi->version = hdr->version;
	if (hdr->version < 0x20c || !(hdr->xloadflags & XLF_KERNEL_64)) {
		set_why(why, why_len,
			"%s: boot protocol %u.%02u without a 64-bit entry (need version >= 2.12, "
			"xloadflags XLF_KERNEL_64)", kernel->name, hdr->version >> 8,
			hdr->version & 0xff);
		return -ENOEXEC;
	}
	if (!(hdr->loadflags & LOADED_HIGH)) {
		set_why(why, why_len, "%s: zImage (loadflags without LOADED_HIGH) is not supported",
			kernel->name);
		return -ENOEXEC;
	}
	setup_len = ((uint64_t)(hdr->setup_sects ? hdr->setup_sects : 4) + 1) * 512;
	if (setup_len >= kernel->len) {
		set_why(why, why_len, "%s: truncated: setup_sects %u is past the end of the file",
			kernel->name, hdr->setup_sects);
		return -ENOEXEC;
	}
	pm_len = kernel->len - setup_len;
	/* the protected-mode kernel at its preferred address (no relocation before it
	 * decompresses), else at the lowest aligned address above 1 MiB; every sum below
	 * is checked against mem_size before it is formed, so none can wrap */
	init_size = hdr->init_size > pm_len ? hdr->init_size : pm_len;
	if (init_size > mem_size - KVMG_HIGH) {
		set_why(why, why_len, "%s: init_size %#llx (or the %llu-byte payload) does not "
			"fit in %llu MiB of guest RAM", kernel->name,
			(unsigned long long)hdr->init_size, (unsigned long long)pm_len,
			(unsigned long long)(mem_size >> 20));
		return -E2BIG;
	}
	load = hdr->pref_address;
	if (load < KVMG_HIGH || load > mem_size - init_size) {
		uint64_t align = hdr->kernel_alignment;

		if (!hdr->relocatable_kernel) {
			set_why(why, why_len, "%s: pref_address %#llx + init_size %#llx is outside "
				"guest RAM (%llu MiB) and the kernel is not relocatable",
				kernel->name, (unsigned long long)load,
				(unsigned long long)init_size,
				(unsigned long long)(mem_size >> 20));
			return -E2BIG;
		}
		if (!align || (align & (align - 1)) || align > (1u << 30)) {
			if (align) {
				set_why(why, why_len,
					"%s: kernel_alignment %#llx is not a power of two up "
					"to 1 GiB", kernel->name, (unsigned long long)align);
				return -ENOEXEC;
			}
			align = 0x200000;
		}
		load = (KVMG_HIGH + align - 1) & ~(align - 1);
		if (load > mem_size - init_size) {
			set_why(why, why_len, "%s: init_size %#llx at %#llx (kernel_alignment) "
				"does not fit in %llu MiB of guest RAM", kernel->name,
				(unsigned long long)init_size, (unsigned long long)load,
				(unsigned long long)(mem_size >> 20));
			return -E2BIG;
		}
	}
	r = img_read(kernel, setup_len, mem + load, pm_len);
	if (r) {
		set_why(why, why_len, "%s: %s", kernel->name, strerror(-r));
		return r;
	}
	bi->kernel_addr = load;
	bi->entry = load + 0x200;

	/* boot_params: zero, then the image's setup header (0x1f1 to the end given by the
	 * byte at 0x201), then what the boot loader fills in */
	memset(bp, 0, sizeof(*bp));
	hdr_end = 0x202 + head[0x201];
	if (hdr_end > 0x1f1 + sizeof(bp->hdr))
		hdr_end = 0x1f1 + sizeof(bp->hdr);
	memcpy(&bp->hdr, head + 0x1f1, hdr_end - 0x1f1);
	bp->hdr.type_of_loader = 0xff; /* undefined loader */
	bp->hdr.loadflags |= CAN_USE_HEAP;
	bp->hdr.heap_end_ptr = 0xfe00 - 0x200;
	bp->hdr.vid_mode = 0xffff; /* "normal" */
	bp->hdr.code32_start = (uint32_t)load;
params:

	cl_max = hdr->cmdline_size ? hdr->cmdline_size : 255;
	if (cl_max > KVMG_CMDLINE_MAX - 1)
		cl_max = KVMG_CMDLINE_MAX - 1;
	if (cl_len > cl_max) {
		set_why(why, why_len,
			"command line is %zu bytes, the kernel takes %u (cmdline_size)", cl_len,
			cl_max);
		return -E2BIG;
	}
	memcpy(mem + KVMG_CMDLINE, cmdline, cl_len + 1);
	bp->hdr.cmd_line_ptr = (uint32_t)KVMG_CMDLINE;
	bp->ext_cmd_line_ptr = 0;

	if (initrd) {
		rd_max = (uint64_t)hdr->initrd_addr_max + 1;
		if (rd_max > mem_size)
			rd_max = mem_size;
		/* load + init_size <= mem_size was checked above */
		if (initrd->len > UINT32_MAX || initrd->len > rd_max ||
		    ((rd_max - initrd->len) & ~0xfffull) < load + init_size) {
			set_why(why, why_len, "%s: %llu bytes do not fit between the kernel's end "
				"%#llx and initrd_addr_max %#llx", initrd->name,
				(unsigned long long)initrd->len,
				(unsigned long long)(load + init_size),
				(unsigned long long)(rd_max - 1));
			return -E2BIG;
		}
		bi->initrd_addr = (rd_max - initrd->len) & ~0xfffull;
		bi->initrd_size = initrd->len;
		r = img_read(initrd, 0, mem + bi->initrd_addr, initrd->len);
		if (r) {
			set_why(why, why_len, "%s: %s", initrd->name, strerror(-r));
			return r;
		}
		bp->hdr.ramdisk_image = (uint32_t)bi->initrd_addr;
		bp->hdr.ramdisk_size = (uint32_t)initrd->len;
	}

	/* e820: low RAM below the EBDA, the legacy hole reserved, RAM from 1 MiB */
	e820_add(bp, 0, KVMG_EBDA, 1);
	e820_add(bp, KVMG_EBDA, 0xa0000 - KVMG_EBDA, 2);
	e820_add(bp, 0xf0000, 0x10000, 2);
	e820_add(bp, KVMG_HIGH, mem_size - KVMG_HIGH, 1);
	e820_add(bp, KVMG_IDENTITY_MAP, 0x4000, 2); /* KVM's private pages in the hole */

	/* GDT: __BOOT_CS 0x10 (64-bit code), __BOOT_DS 0x18, TSS 0x20 (for VM entry) */
	uint64_t *gdt = (uint64_t *)(mem + KVMG_GDT);

	memset(gdt, 0, 6 * sizeof(*gdt));
	gdt[KVMG_SEL_CS / 8] = gdt_entry(0xa09b, 0, 0xfffff);
	gdt[KVMG_SEL_DS / 8] = gdt_entry(0xc093, 0, 0xfffff);
	gdt[KVMG_SEL_TR / 8] = gdt_entry(0x808b, 0, 0xfffff);

	/* identity map 0..4 GiB with 2 MiB pages */
	uint64_t *pml4 = (uint64_t *)(mem + KVMG_PML4), *pdpt = (uint64_t *)(mem + KVMG_PDPT);
	uint64_t *pd = (uint64_t *)(mem + KVMG_PD);

	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = KVMG_PDPT | 0x3; /* present, writable */
	for (unsigned int i = 0; i < 4; i++)
		pdpt[i] = (KVMG_PD + 0x1000ull * i) | 0x3;
	for (unsigned int i = 0; i < 4 * 512; i++)
		pd[i] = ((uint64_t)i << 21) | 0x83; /* present, writable, 2 MiB */
	return 0;
}

int kvm__load_linux(uint8_t *mem, uint64_t mem_size, const char *kernel, const char *initrd,
		    const char *cmdline, struct kvm_boot_info *bi, char *why, size_t why_len)
{
	struct kvm__image k, rd = { .fd = -1 };
	int r;

	r = image_open(&k, kernel, why, why_len);
	if (r)
		return r;
	if (initrd)
		r = image_open(&rd, initrd, why, why_len);
	if (!r)
		r = kvm__load_linux_image(mem, mem_size, &k, initrd ? &rd : NULL, cmdline, bi, why,
					  why_len);
	close(k.fd);
	if (rd.fd >= 0)
		close(rd.fd);
	return r;
}

/* ---------------------------------------------------------------------------------- */
/* vCPU state */

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code64)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = type;
	s->present = 1;
	s->s = 1;
	s->l = code64;
	s->db = !code64;
	s->g = 1;
}

/*
 * kvm_pvm (a KVM that runs guests without hardware virtualization: PVM) executes a
 * guest's ring-0 code in KVM's instruction emulator unless the guest is a PVM guest,
 * about 1 us per instruction here. Its emulator fails on LOCK CMPXCHG16B (SLUB uses it
 * when CPUID advertises CX16) and on XRSTOR (the FPU code with XSAVE): both bits are
 * cleared for such a host, so Linux falls back to cmpxchg and FXSAVE/FXRSTOR.
 */
static bool kvm_emulates_ring0(void)
{
	return access("/sys/module/kvm_pvm", F_OK) == 0;
}

static int setup_cpuid(struct rtioreq_kvm *k, struct vcpu *v, char *why, size_t why_len)
{
	struct kvm_cpuid2 *c = NULL;
	unsigned int n = 64;
	int r;

	for (;;) {
		free(c);
		c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			return -ENOMEM;
		c->nent = n;
		if (!ioctl(k->kvm_fd, KVM_GET_SUPPORTED_CPUID, c))
			break;
		if (errno != E2BIG || n > 4096) {
			r = -errno;
			set_why(why, why_len, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
			free(c);
			return r;
		}
		n *= 2;
	}
	for (unsigned int i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 1) { /* initial APIC ID = vCPU index */
			e->ebx = (e->ebx & 0x00ffffffu) | ((uint32_t)v->id << 24);
			if (k->emulated) /* CX16, XSAVE: see kvm_emulates_ring0() */
				e->ecx &= ~((1u << 13) | (1u << 26));
		}
		else if (e->function == 0xb || e->function == 0x1f) /* x2APIC ID */
			e->edx = v->id;
	}
	r = ioctl(v->fd, KVM_SET_CPUID2, c) ? -errno : 0;
	if (r)
		set_why(why, why_len, "KVM_SET_CPUID2: %s", strerror(-r));
	free(c);
	return r;
}

static int setup_vcpu(struct rtioreq_kvm *k, struct vcpu *v, char *why, size_t why_len)
{
	struct kvm_sregs sr;
	struct kvm_regs rg;
	struct kvm_lapic_state lapic;
	int r;

	r = setup_cpuid(k, v, why, why_len);
	if (r)
		return r;
	/* LINT0 ExtINT (the PIC through the LAPIC: no MP/ACPI tables, virtual wire),
	 * LINT1 NMI; what a BIOS leaves behind */
	if (!ioctl(v->fd, KVM_GET_LAPIC, &lapic)) {
		uint32_t *lvt0 = (uint32_t *)(lapic.regs + 0x350);
		uint32_t *lvt1 = (uint32_t *)(lapic.regs + 0x360);

		*lvt0 = (*lvt0 & ~0x700u & ~0x10000u) | (7u << 8); /* ExtINT, unmasked */
		*lvt1 = (*lvt1 & ~0x700u & ~0x10000u) | (4u << 8); /* NMI */
		if (ioctl(v->fd, KVM_SET_LAPIC, &lapic)) {
			set_why(why, why_len, "KVM_SET_LAPIC: %s", strerror(errno));
			return -errno;
		}
	}
	/* what firmware leaves: MTRRs enabled with write-back as the default type (else
	 * all memory is uncached where KVM honours guest MTRRs: a slow crawl), fast
	 * strings on */
	union { /* kvm_msrs ends in a flexible array: storage for two entries after it */
		struct kvm_msrs h;
		uint8_t bytes[sizeof(struct kvm_msrs) + 2 * sizeof(struct kvm_msr_entry)];
	} msrs;

	memset(&msrs, 0, sizeof(msrs));
	msrs.h.nmsrs = 2;
	/* MTRRdefType: enabled, default type WB */
	msrs.h.entries[0] = (struct kvm_msr_entry){ .index = 0x2ff, .data = (1u << 11) | 6 };
	/* IA32_MISC_ENABLE: fast strings */
	msrs.h.entries[1] = (struct kvm_msr_entry){ .index = 0x1a0, .data = 1 };
	if (ioctl(v->fd, KVM_SET_MSRS, &msrs) != 2) {
		set_why(why, why_len, "KVM_SET_MSRS: %s", strerror(errno));
		return -EIO;
	}
	if (v->id) /* APs stay in wait-for-SIPI (docs/kvm.md) */
		return 0;
	if (ioctl(v->fd, KVM_GET_SREGS, &sr)) {
		set_why(why, why_len, "KVM_GET_SREGS: %s", strerror(errno));
		return -errno;
	}
	seg(&sr.cs, KVMG_SEL_CS, 0xb, true);
	seg(&sr.ds, KVMG_SEL_DS, 0x3, false);
	sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
	memset(&sr.tr, 0, sizeof(sr.tr));
	sr.tr.selector = KVMG_SEL_TR;
	sr.tr.limit = 0xfffff;
	sr.tr.type = 0xb; /* busy 64-bit TSS */
	sr.tr.present = 1;
	sr.gdt.base = KVMG_GDT;
	sr.gdt.limit = 6 * 8 - 1;
	sr.idt.base = 0;
	sr.idt.limit = 0;
	sr.cr3 = KVMG_PML4;
	sr.cr4 = 0x20;			     /* PAE */
	sr.cr0 = 0x80000000u | 0x10u | 0x1u; /* PG, ET, PE */
	sr.efer = 0x500;		     /* LME | LMA */
	if (ioctl(v->fd, KVM_SET_SREGS, &sr)) {
		set_why(why, why_len, "KVM_SET_SREGS: %s", strerror(errno));
		return -errno;
	}
	memset(&rg, 0, sizeof(rg));
	rg.rflags = 0x2;
	rg.rip = k->boot.entry;
	rg.rsi = KVMG_ZERO_PAGE;
	rg.rsp = KVMG_STACK;
	if (ioctl(v->fd, KVM_SET_REGS, &rg)) {
		set_why(why, why_len, "KVM_SET_REGS: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Create / destroy */

static int kvm_raise_irq(void *hv, uint32_t irq, uint32_t level)
{
	struct rtioreq_kvm *k = hv;
	struct kvm_irq_level l = { .irq = irq, .level = level };

	if (level)
		/* relaxed: a statistics counter, read after the run */
		atomic_fetch_add_explicit(&k->irq_raises, 1, memory_order_relaxed);
	return ioctl(k->vm_fd, KVM_IRQ_LINE, &l) ? -errno : 0;
}

static const struct rtioreq_vm_ops kvm_ops = { .raise_irq = kvm_raise_irq };

const struct rtioreq_vm_ops *rtioreq_kvm_vm_ops(void)
{
	return &kvm_ops;
}

/*
 * Guest RAM: anonymous memory aligned to 2 MiB and backed by transparent huge pages
 * where the host allows it, populated up front. Every guest page first touched costs
 * an EPT violation; under nested virtualization each one is a round trip through the
 * outer hypervisor, so 4 KiB pages made the kernel's decompression alone take over a
 * minute here, 2 MiB pages a fraction of a second.
 */
static int guest_mem(struct rtioreq_kvm *k)
{
	size_t align = 2u << 20, len = k->mem_size + align;
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uintptr_t a;

	if (p == MAP_FAILED)
		return -errno;
	a = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
	if (a > (uintptr_t)p)
		munmap(p, a - (uintptr_t)p);
	munmap((uint8_t *)a + k->mem_size, (uintptr_t)p + len - a - k->mem_size);
	k->mem = (uint8_t *)a;
	madvise(k->mem, k->mem_size, MADV_HUGEPAGE); /* best effort: THP may be off */
	return 0;
}

static void kick_handler(int sig)
{
	(void)sig;
}

struct rtioreq_kvm *rtioreq_kvm_create(const struct rtioreq_kvm_attr *attr, char *why,
				       size_t why_len)
{
	struct rtioreq_kvm *k;
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	struct kvm_userspace_memory_region region = { 0 };
	struct sigaction sa = { .sa_handler = kick_handler };
	int r, api;

	set_why(why, why_len, "%s", "");
	if (!attr || !attr->kernel || attr->vcpus > RTIOREQ_IO_REQUEST_MAX ||
	    (attr->mem_bytes && (attr->mem_bytes < (64ull << 20) ||
				 attr->mem_bytes > RTIOREQ_KVM_MEM_MAX))) {
		set_why(why, why_len, "bad attributes (kernel, vcpus 1..16, memory 64M..3G)");
		errno = EINVAL;
		return NULL;
	}
	k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->a = *attr;
	k->kvm_fd = k->vm_fd = -1;
	k->shm.fd = -1;
	k->nvcpu = attr->vcpus ? attr->vcpus : 1;
	k->mem_size = (attr->mem_bytes ? attr->mem_bytes : RTIOREQ_KVM_MEM_DEFAULT) & ~0x1fffffull;
	if (!k->a.cmdline)
		k->a.cmdline = RTIOREQ_KVM_CMDLINE_DEFAULT;
	if (!k->a.stranded_ns)
		k->a.stranded_ns = 5000000000ull;
	for (unsigned int i = 0; i < RTIOREQ_IO_REQUEST_MAX; i++)
		k->vcpu[i].fd = -1;
	sem_init(&k->stopped, 0, 0);

	/* the guest is laid out first: a bad image is reported (naming its field) before
	 * anything is asked of /dev/kvm, and needs no KVM to be diagnosed */
	r = guest_mem(k);
	if (r) {
		set_why(why, why_len, "guest memory (%llu MiB): %s",
			(unsigned long long)(k->mem_size >> 20), strerror(-r));
		goto fail;
	}
	r = kvm__load_linux(k->mem, k->mem_size, attr->kernel, attr->initrd, k->a.cmdline,
			    &k->boot, why, why_len);
	if (r)
		goto fail;

	k->emulated = kvm_emulates_ring0();
	k->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (k->kvm_fd < 0) {
		r = -errno;
		set_why(why, why_len, "/dev/kvm: %s%s", strerror(errno),
			errno == ENOENT ? " (no KVM here: kvm module not loaded, or no "
					  "virtualization support)" : "");
		goto fail;
	}
	api = ioctl(k->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		set_why(why, why_len, "/dev/kvm: API version %d, want %d", api, KVM_API_VERSION);
		r = -ENOTSUP;
		goto fail;
	}
	k->vm_fd = ioctl(k->kvm_fd, KVM_CREATE_VM, 0);
	if (k->vm_fd < 0) {
		r = -errno;
		set_why(why, why_len, "KVM_CREATE_VM: %s", strerror(errno));
		goto fail;
	}
#define VM_IOCTL(req, arg)                                                            \
	do {                                                                          \
		if (ioctl(k->vm_fd, req, arg) < 0) {                                  \
			r = -errno;                                                   \
			set_why(why, why_len, "%s: %s", #req, strerror(errno));       \
			goto fail;                                                    \
		}                                                                     \
	} while (0)
	VM_IOCTL(KVM_SET_TSS_ADDR, (unsigned long)KVMG_TSS);
	uint64_t idmap = KVMG_IDENTITY_MAP;

	VM_IOCTL(KVM_SET_IDENTITY_MAP_ADDR, &idmap);
	VM_IOCTL(KVM_CREATE_IRQCHIP, 0);
	VM_IOCTL(KVM_CREATE_PIT2, &pit);

	region.slot = 0;
	region.guest_phys_addr = 0;
	region.memory_size = k->mem_size;
	region.userspace_addr = (uintptr_t)k->mem;
	VM_IOCTL(KVM_SET_USER_MEMORY_REGION, &region);
#undef VM_IOCTL

	r = ioctl(k->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (r < (int)sizeof(struct kvm_run)) {
		r = -errno;
		set_why(why, why_len, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
		goto fail;
	}
	k->run_size = (size_t)r;
	for (unsigned int i = 0; i < k->nvcpu; i++) {
		struct vcpu *v = &k->vcpu[i];

		v->k = k;
		v->id = (uint16_t)i;
		rtioreq_hist_init(&v->st.rtt);
		rtioreq_hist_init(&v->st.exit);
		v->fd = ioctl(k->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
		if (v->fd < 0) {
			r = -errno;
			set_why(why, why_len, "KVM_CREATE_VCPU %u: %s", i, strerror(errno));
			goto fail;
		}
		v->run = mmap(NULL, k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
		if (v->run == MAP_FAILED) {
			v->run = NULL;
			r = -errno;
			set_why(why, why_len, "mmap kvm_run: %s", strerror(errno));
			goto fail;
		}
		r = setup_vcpu(k, v, why, why_len);
		if (r)
			goto fail;
	}

	r = rtioreq_shm_create(&k->shm, NULL, (uint16_t)k->nvcpu);
	if (r) {
		set_why(why, why_len, "shared region: %s", strerror(-r));
		goto fail;
	}
	/* the kick: no SA_RESTART, so KVM_RUN and futex waits return -EINTR */
	sigemptyset(&sa.sa_mask);
	if (sigaction(KICK_SIGNAL, &sa, NULL)) {
		r = -errno;
		set_why(why, why_len, "sigaction: %s", strerror(errno));
		goto fail;
	}
	/* before any vCPU thread exists: published by their creation */
	atomic_init(&k->exit_reason, RTIOREQ_KVM_RUNNING);
	return k;
fail:
	rtioreq_kvm_destroy(k);
	errno = -r;
	return NULL;
}

struct rtioreq_shm_region *rtioreq_kvm_region(struct rtioreq_kvm *k)
{
	return k->shm.region;
}

unsigned int rtioreq_kvm_vcpus(const struct rtioreq_kvm *k)
{
	return k->nvcpu;
}

void rtioreq_kvm_destroy(struct rtioreq_kvm *k)
{
	if (!k)
		return;
	for (unsigned int i = 0; i < RTIOREQ_IO_REQUEST_MAX; i++) {
		struct vcpu *v = &k->vcpu[i];

		if (v->run)
			munmap(v->run, k->run_size);
		if (v->fd >= 0)
			close(v->fd);
	}
	if (k->shm.region)
		rtioreq_shm_close(&k->shm);
	if (k->vm_fd >= 0)
		close(k->vm_fd);
	if (k->mem)
		munmap(k->mem, k->mem_size);
	if (k->kvm_fd >= 0)
		close(k->kvm_fd);
	sem_destroy(&k->stopped);
	free(k);
}

/* ---------------------------------------------------------------------------------- */
/* Stop */

void rtioreq_kvm_stop(struct rtioreq_kvm *k, enum rtioreq_kvm_exit why, const char *detail)
{
	int expect = RTIOREQ_KVM_RUNNING;

	/* the first reason wins; relaxed: `stop` below publishes the detail */
	if (atomic_compare_exchange_strong_explicit(&k->exit_reason, &expect, (int)why,
						    memory_order_relaxed, memory_order_relaxed)) {
		snprintf(k->detail, sizeof(k->detail), "%s", detail ? detail : "");
		/* release: pairs with the vCPU threads' and run()'s acquire of stop */
		atomic_store_explicit(&k->stop, true, memory_order_release);
		sem_post(&k->stopped);
	}
	for (unsigned int i = 0; i < k->nvcpu; i++) {
		struct vcpu *v = &k->vcpu[i];

		/* read by the kernel at the next KVM_RUN entry: covers a thread between
		 * its stop check and the ioctl; the signal covers one inside KVM_RUN */
		((volatile struct kvm_run *)v->run)->immediate_exit = 1;
		/* acquire: pairs with run()'s release after pthread_create */
		if (atomic_load_explicit(&v->started, memory_order_acquire) &&
		    !pthread_equal(v->thread, pthread_self()))
			pthread_kill(v->thread, KICK_SIGNAL);
	}
}

/* ---------------------------------------------------------------------------------- */
/* The vCPU threads: exits to requests */

static void vcpu_fail(struct vcpu *v, enum rtioreq_kvm_exit why, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void vcpu_fail(struct vcpu *v, enum rtioreq_kvm_exit why, const char *fmt, ...)
{
	char buf[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	rtioreq_kvm_stop(v->k, why, buf);
}

/*
 * One access through the slot, by the hypervisor rules (docs/shm-protocol.md section
 * 8): submit (H1, fence, upcall unless polled), wait for COMPLETE (H2) spinning or on
 * done_seq, take a read's value, release (H3). Return false if the request stranded
 * (the slot is then left alone: the engine's detach completes it).
 */
static bool serve_slot(struct vcpu *v, struct rtioreq_hv_req *q, uint64_t *value)
{
	struct rtioreq_kvm *k = v->k;
	struct rtioreq_shm_region *r = k->shm.region;
	bool spin = k->a.completion_polling;
	uint64_t t0, t1, deadline;
	uint32_t seen[RTIOREQ_IO_REQUEST_MAX];
	unsigned int n = 0;
	int rc;

	t0 = rtioreq__now_ns();
	rc = rtioreq_hv_submit(r, v->id, q, spin, true);
	if (rc < 0) { /* -EBUSY: our own bookkeeping is broken; never touch a busy slot */
		vcpu_fail(v, RTIOREQ_KVM_ERROR, "vCPU %u: slot not FREE at submit", v->id);
		return false;
	}
	v->st.upcalls += (uint64_t)rc;
	deadline = t0 + k->a.stranded_ns;
	for (;;) {
		if (!spin) /* N1 partner: read the counter before the state */
			seen[v->id] = rtioreq_hv_done_seq(r, v->id);
		if (rtioreq_hv_poll(r, v->id, q->type, value))
			break;
		if (spin) {
			rtioreq__cpu_relax();
			if (++n % 4096)
				continue;
		} else {
			/* any return (woken, -EINTR from a kick, 10 ms): re-check */
			rtioreq_hv_wait(r, 1u << v->id, seen, 10000000u);
		}
		if (rtioreq__now_ns() > deadline) {
			v->st.stranded++;
			vcpu_fail(v, RTIOREQ_KVM_STRANDED,
				  "vCPU %u: %s %#llx not completed within %llu ms", v->id,
				  q->type == RTIOREQ_TYPE_MMIO ? "MMIO" : "port",
				  (unsigned long long)q->addr,
				  (unsigned long long)(k->a.stranded_ns / 1000000));
			return false;
		}
	}
	t1 = rtioreq__now_ns();
	rtioreq_hist_record(&v->st.rtt, t1 - t0);
	rtioreq_hv_release(r, v->id);
	return true;
}

/* One access, through the slot or (--inline) straight to the device models. */
static bool serve(struct vcpu *v, uint32_t type, uint32_t dir, uint64_t addr, uint32_t size,
		  uint64_t *value)
{
	struct rtioreq_kvm *k = v->k;
	bool ok = true;

	v->st.requests++;
	if (k->a.inline_fn) {
		struct rtioreq_req q = { .type = type, .dir = dir, .addr = addr, .size = size,
					 .vcpu = v->id, .value = *value & rtioreq_size_mask(size),
					 .completion_polling = 1 };
		uint64_t t0 = rtioreq__now_ns();

		if (k->a.inline_fn(k->a.inline_ctx, &q) < 0)
			q.value = UINT64_MAX;
		rtioreq_hist_record(&v->st.rtt, rtioreq__now_ns() - t0);
		*value = q.value;
	} else {
		struct rtioreq_hv_req q = { .type = type, .dir = dir, .addr = addr, .size = size,
					    .value = *value & rtioreq_size_mask(size) };

		ok = serve_slot(v, &q, value);
	}
	if (dir == RTIOREQ_DIR_READ)
		*value &= rtioreq_size_mask(size);
	return ok;
}

static bool exit_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	uint32_t size = run->io.size, dir;

	dir = run->io.direction == KVM_EXIT_IO_OUT ? RTIOREQ_DIR_WRITE : RTIOREQ_DIR_READ;
	v->st.io_exits++;
	if (run->io.count > 1)
		v->st.string_io++;
	if ((size != 1 && size != 2 && size != 4) ||
	    run->io.data_offset + (uint64_t)size * run->io.count > v->k->run_size) {
		vcpu_fail(v, RTIOREQ_KVM_UNHANDLED, "port %#x: size %u count %u", run->io.port,
			  size, run->io.count);
		return false;
	}
	/* rep ins/outs: count elements back to back in the data area, one request each,
	 * in order, all to the same port */
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		uint64_t val = 0;

		if (dir == RTIOREQ_DIR_WRITE)
			memcpy(&val, data, size); /* x86: little-endian */
		if (!serve(v, RTIOREQ_TYPE_PORTIO, dir, run->io.port, size, &val))
			return false;
		if (dir == RTIOREQ_DIR_READ)
			memcpy(data, &val, size);
	}
	return true;
}

static bool exit_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t len = run->mmio.len;
	uint32_t dir = run->mmio.is_write ? RTIOREQ_DIR_WRITE : RTIOREQ_DIR_READ;
	uint64_t val = 0;

	v->st.mmio_exits++;
	if (len != 1 && len != 2 && len != 4 && len != 8) {
		vcpu_fail(v, RTIOREQ_KVM_UNHANDLED, "MMIO %#llx: length %u",
			  (unsigned long long)run->mmio.phys_addr, len);
		return false;
	}
	if (dir == RTIOREQ_DIR_WRITE)
		memcpy(&val, run->mmio.data, len);
	if (!serve(v, RTIOREQ_TYPE_MMIO, dir, run->mmio.phys_addr, len, &val))
		return false;
	if (dir == RTIOREQ_DIR_READ)
		memcpy(run->mmio.data, &val, len);
	return true;
}

/* "rip 0x... bytes 0f 01 ..." for an error message: where the guest stopped. */
static void insn_at_rip(struct vcpu *v, char *buf, size_t len)
{
	struct kvm_regs rg;
	struct kvm_translation tr = { 0 };
	size_t off;

	if (ioctl(v->fd, KVM_GET_REGS, &rg)) {
		snprintf(buf, len, "rip unknown");
		return;
	}
	off = (size_t)snprintf(buf, len, "rip %#llx", (unsigned long long)rg.rip);
	tr.linear_address = rg.rip;
	if (ioctl(v->fd, KVM_TRANSLATE, &tr) || !tr.valid ||
	    tr.physical_address + 8 > v->k->mem_size)
		return;
	for (unsigned int i = 0; i < 6 && off + 4 < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%02x", i ? " " : " bytes ",
					v->k->mem[tr.physical_address + i]);
}

static void *vcpu_main(void *arg)
{
	struct vcpu *v = arg;
	struct rtioreq_kvm *k = v->k;
	struct kvm_run *run = v->run;
	char name[16];

	snprintf(name, sizeof(name), "rtioreq-vcpu%u", v->id % 100u);
	pthread_setname_np(pthread_self(), name);
	/* acquire: pairs with rtioreq_kvm_stop()'s release */
	while (!atomic_load_explicit(&k->stop, memory_order_acquire)) {
		uint64_t t;
		bool ok = true;

		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				v->st.intr_exits++;
				continue;
			}
			vcpu_fail(v, RTIOREQ_KVM_ERROR, "vCPU %u: KVM_RUN: %s", v->id,
				  strerror(errno));
			break;
		}
		t = rtioreq__now_ns();
		v->st.exits++;
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			ok = exit_io(v);
			rtioreq_hist_record(&v->st.exit, rtioreq__now_ns() - t);
			break;
		case KVM_EXIT_MMIO:
			ok = exit_mmio(v);
			rtioreq_hist_record(&v->st.exit, rtioreq__now_ns() - t);
			break;
		case KVM_EXIT_INTR:
			v->st.intr_exits++;
			break;
		case KVM_EXIT_HLT:
			vcpu_fail(v, RTIOREQ_KVM_HLT, "vCPU %u: HLT", v->id);
			ok = false;
			break;
		case KVM_EXIT_SHUTDOWN:
			vcpu_fail(v, RTIOREQ_KVM_TRIPLE_FAULT, "vCPU %u: shutdown (triple fault)",
				  v->id);
			ok = false;
			break;
		case KVM_EXIT_SYSTEM_EVENT:
			vcpu_fail(v, RTIOREQ_KVM_SYSTEM_EVENT, "vCPU %u: system event %u", v->id,
				  run->system_event.type);
			ok = false;
			break;
		case KVM_EXIT_FAIL_ENTRY:
			vcpu_fail(v, RTIOREQ_KVM_FAIL_ENTRY,
				  "vCPU %u: VM entry failed, hardware reason %#llx", v->id,
				  (unsigned long long)
					  run->fail_entry.hardware_entry_failure_reason);
			ok = false;
			break;
		case KVM_EXIT_INTERNAL_ERROR: {
			char insn[64];

			insn_at_rip(v, insn, sizeof(insn));
			vcpu_fail(v, RTIOREQ_KVM_INTERNAL_ERROR,
				  "vCPU %u: KVM internal error, suberror %u%s, %s", v->id,
				  run->internal.suberror,
				  run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
					  ? " (instruction emulation failed)" : "",
				  insn);
			ok = false;
			break;
		}
		default:
			vcpu_fail(v, RTIOREQ_KVM_UNHANDLED, "vCPU %u: unhandled exit reason %u",
				  v->id, run->exit_reason);
			ok = false;
			break;
		}
		if (!ok)
			break;
	}
	return NULL;
}

static int pin(pthread_attr_t *pa, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return pthread_attr_setaffinity_np(pa, sizeof(set), &set);
}

enum rtioreq_kvm_exit rtioreq_kvm_run(struct rtioreq_kvm *k, uint64_t timeout_ns)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned int started = 0;

	if (k->ran) /* relaxed: the first run joined every thread that could write it */
		return (enum rtioreq_kvm_exit)atomic_load_explicit(&k->exit_reason,
								   memory_order_relaxed);
	k->ran = true;
	/* relaxed: written before the vCPU threads start (pthread_create publishes it) */
	atomic_store_explicit(&k->t0, rtioreq__now_ns(), memory_order_relaxed);
	for (unsigned int i = 0; i < k->nvcpu; i++) {
		struct vcpu *v = &k->vcpu[i];
		pthread_attr_t pa;
		int r;

		pthread_attr_init(&pa);
		if (k->a.vcpu_cpu >= 0 && ncpu > 0)
			pin(&pa, (int)((k->a.vcpu_cpu + (int)i) % ncpu));
		r = pthread_create(&v->thread, &pa, vcpu_main, v);
		pthread_attr_destroy(&pa);
		if (r) {
			rtioreq_kvm_stop(k, RTIOREQ_KVM_ERROR, "cannot start a vCPU thread");
			break;
		}
		/* release: pairs with rtioreq_kvm_stop()'s acquire before pthread_kill */
		atomic_store_explicit(&v->started, true, memory_order_release);
		started++;
	}
	if (started == k->nvcpu) {
		struct timespec abs;
		int r;

		clock_gettime(CLOCK_REALTIME, &abs); /* sem_timedwait: CLOCK_REALTIME */
		abs.tv_sec += (time_t)(timeout_ns / 1000000000u);
		abs.tv_nsec += (long)(timeout_ns % 1000000000u);
		if (abs.tv_nsec >= 1000000000) {
			abs.tv_sec++;
			abs.tv_nsec -= 1000000000;
		}
		do
			r = timeout_ns ? sem_timedwait(&k->stopped, &abs) : sem_wait(&k->stopped);
		while (r && errno == EINTR);
		if (r)
			rtioreq_kvm_stop(k, RTIOREQ_KVM_TIMEOUT, "timeout");
	}
	/* a stop that lost the CAS still kicks; make sure every vCPU saw one */
	rtioreq_kvm_stop(k, RTIOREQ_KVM_STOPPED, "stopped");
	k->run_ns = rtioreq__now_ns() - atomic_load_explicit(&k->t0, memory_order_relaxed);
	for (unsigned int i = 0; i < started; i++) {
		/* no more kicks: a late stop (a device model's reset) must not signal a
		 * joined thread; the reset comes from a request its vCPU waits for anyway */
		atomic_store_explicit(&k->vcpu[i].started, false, memory_order_relaxed);
		pthread_join(k->vcpu[i].thread, NULL);
	}
	/* acquire: with the joins above, the detail stored with the reason is visible */
	return (enum rtioreq_kvm_exit)atomic_load_explicit(&k->exit_reason, memory_order_acquire);
}

uint64_t rtioreq_kvm_elapsed_ns(const struct rtioreq_kvm *k)
{
	/* relaxed: a timestamp written once before the vCPU threads start */
	uint64_t t0 = atomic_load_explicit(&((struct rtioreq_kvm *)k)->t0, memory_order_relaxed);

	return t0 ? rtioreq__now_ns() - t0 : 0;
}

void rtioreq_kvm_stats(const struct rtioreq_kvm *k, struct rtioreq_kvm_stats *out)
{
	memset(out, 0, sizeof(*out));
	rtioreq_hist_init(&out->rtt);
	rtioreq_hist_init(&out->exit);
	for (unsigned int i = 0; i < k->nvcpu; i++) {
		const struct rtioreq_kvm_stats *s = &k->vcpu[i].st;

		out->exits += s->exits;
		out->io_exits += s->io_exits;
		out->mmio_exits += s->mmio_exits;
		out->string_io += s->string_io;
		out->requests += s->requests;
		out->upcalls += s->upcalls;
		out->intr_exits += s->intr_exits;
		out->stranded += s->stranded;
		rtioreq_hist_merge(&out->rtt, &s->rtt);
		rtioreq_hist_merge(&out->exit, &s->exit);
	}
	/* relaxed: a statistic (relaxed adds by the vCPU threads) */
	out->irq_raises = atomic_load_explicit(&((struct rtioreq_kvm *)k)->irq_raises,
					       memory_order_relaxed);
	out->run_ns = k->run_ns;
	/* acquire: as in rtioreq_kvm_run(), the detail below was written before it */
	out->exit_reason = (enum rtioreq_kvm_exit)atomic_load_explicit(
		&((struct rtioreq_kvm *)k)->exit_reason, memory_order_acquire);
	/* the detail was written before `stop` was released */
	if (atomic_load_explicit(&((struct rtioreq_kvm *)k)->stop, memory_order_acquire))
		snprintf(out->detail, sizeof(out->detail), "%s", k->detail);
}
