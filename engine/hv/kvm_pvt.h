/* SPDX-License-Identifier: MIT */
/*
 * KVM trap source, private: the guest-physical layout used for the Linux x86 64-bit
 * boot protocol (Documentation/arch/x86/boot.rst) and the loader's entry point.
 *
 *   0x00000500  GDT: 0x10 __BOOT_CS (64-bit code), 0x18 __BOOT_DS, 0x20 TSS
 *   0x00007000  boot_params ("zero page"), RSI at entry
 *   0x00008ff0  initial stack (the kernel sets its own at once)
 *   0x00009000  PML4, 0xa000 PDPT, 0xb000..0xefff four page directories: 0..4 GiB
 *               identity-mapped with 2 MiB pages
 *   0x00020000  kernel command line
 *   0x0009fc00  .. 0x000fffff: reserved in the e820 map (EBDA, VGA, BIOS)
 *   pref_address (16 MiB for Debian's kernel): protected-mode kernel; RIP = + 0x200
 *   top of RAM  initramfs (page-aligned, below initrd_addr_max)
 *   0xfffbc000  KVM's identity-map page and 0xfffbd000 its TSS (3 pages), in the hole
 */
#ifndef RTIOREQ_KVM_PVT_H
#define RTIOREQ_KVM_PVT_H

#include <stddef.h>
#include <stdint.h>

#define KVMG_GDT 0x500ull
#define KVMG_ZERO_PAGE 0x7000ull
#define KVMG_STACK 0x8ff0ull
#define KVMG_PML4 0x9000ull
#define KVMG_PDPT 0xa000ull
#define KVMG_PD 0xb000ull /* 4 pages */
#define KVMG_CMDLINE 0x20000ull
#define KVMG_CMDLINE_MAX 4096u
#define KVMG_EBDA 0x9fc00ull
#define KVMG_HIGH 0x100000ull
#define KVMG_IDENTITY_MAP 0xfffbc000ull
#define KVMG_TSS 0xfffbd000ull

#define KVMG_SEL_CS 0x10u
#define KVMG_SEL_DS 0x18u
#define KVMG_SEL_TR 0x20u

/* What the loader decided; the vCPU setup needs the entry point. */
struct kvm_boot_info {
	uint64_t kernel_addr; /* protected-mode kernel load address */
	uint64_t entry;	      /* 64-bit entry: kernel_addr + 0x200 */
	uint64_t initrd_addr, initrd_size;
	uint16_t version;     /* boot protocol version of the image */
};

/* An image to load: @len bytes at @buf, or (@buf NULL) of the open file @fd. */
struct kvm__image {
	const char *name; /* in error messages */
	int fd;
	const uint8_t *buf;
	uint64_t len;
};

/*
 * kvm__load_linux_image() - kvm__load_linux() from images: what the fuzz target and the
 * tests call, with guest memory that is only a buffer (no /dev/kvm needed). Headers are
 * checked (overflow-safe) before any payload byte is read; @why names the offending
 * field. @mem_size must be at least 3 MiB.
 */
int kvm__load_linux_image(uint8_t *mem, uint64_t mem_size, const struct kvm__image *kernel,
			  const struct kvm__image *initrd, const char *cmdline,
			  struct kvm_boot_info *bi, char *why, size_t why_len);

/*
 * kvm__load_linux() - lay out a bzImage, initrd and command line in guest memory
 * @mem (@mem_size bytes from guest-physical 0): setup header checks, boot_params with
 * e820, GDT and page tables. @why gets a one-line reason on error.
 * An uncompressed x86-64 ELF vmlinux is loaded by its PT_LOAD segments instead. The
 * files are read with pread after their headers were checked: nothing is read whole.
 * Return 0, -ENOEXEC (not a usable bzImage), -E2BIG (does not fit), -errno (files).
 */
int kvm__load_linux(uint8_t *mem, uint64_t mem_size, const char *kernel, const char *initrd,
		    const char *cmdline, struct kvm_boot_info *bi, char *why, size_t why_len);

#endif /* RTIOREQ_KVM_PVT_H */
