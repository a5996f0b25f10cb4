// SPDX-License-Identifier: MIT
/*
 * The KVM guest loader (engine/hv/kvm.c) without /dev/kvm: kernels and initrds crafted
 * here are laid out into a guest-memory buffer by kvm__load_linux(). Hostile headers
 * (sums that wrap, offsets past the end, 2 GiB sparse files) end in an error naming the
 * field, within 2 s and 100 MB; valid images land where the boot protocol says.
 * Each load runs in a child process, so a crash or a runaway read fails the test instead
 * of killing it, and its peak RSS is its own.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <asm/bootparam.h>

#include "child.h"
#include "hv/kvm_pvt.h"

#define MEM (64ull << 20)
#define GIB2 (2ull << 30)


static char dir[] = "/tmp/rtioreq-kvmload-XXXXXX";

struct result {
	int r;
	char why[256];
	struct kvm_boot_info bi;
	uint8_t at_kernel[64], at_initrd[64]; /* guest bytes at the load addresses */
	struct h_cost cost; /* set by the parent */
};

static void path_of(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

/* @len bytes: @head, then (sparse) zeros up to @len. */
static void write_image(const char *name, const void *head, size_t head_len, uint64_t len)
{
	char path[128];
	int fd;

	path_of(path, sizeof(path), name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, head, head_len), (ssize_t)head_len);
	assert_int_equal(ftruncate(fd, (off_t)len), 0);
	close(fd);
}

/* A bzImage of 0x1000 + @payload bytes: setup_sects 1, protocol 2.15, 64-bit entry. */
static size_t bzimage(uint8_t *img, uint64_t pref_address, uint32_t init_size, bool reloc,
		      size_t payload)
{
	struct setup_header *h = (struct setup_header *)(img + 0x1f1);

	memset(img, 0, 0x400 + payload);
	img[0x1fe] = 0x55;
	img[0x1ff] = 0xaa;
	img[0x201] = 0x66; /* jump: the header ends at 0x268 */
	memcpy(img + 0x202, "HdrS", 4);
	h->setup_sects = 1;
	h->version = 0x20f;
	h->loadflags = LOADED_HIGH;
	h->xloadflags = XLF_KERNEL_64;
	h->pref_address = pref_address;
	h->init_size = init_size;
	h->relocatable_kernel = reloc;
	h->kernel_alignment = 0x200000;
	h->initrd_addr_max = 0x7fffffff;
	h->cmdline_size = 2047;
	for (size_t i = 0; i < payload; i++)
		img[0x400 + i] = (uint8_t)(i * 7 + 1);
	return 0x400 + payload;
}

/* An ELF vmlinux with one PT_LOAD segment of @filesz bytes at @paddr, from @offset. */
static size_t elf(uint8_t *img, uint64_t phoff, uint16_t phnum, uint64_t offset,
		  uint64_t filesz, uint64_t paddr)
{
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	Elf64_Phdr *ph = (Elf64_Phdr *)(img + sizeof(*eh));

	memset(img, 0, 0x1000);
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_machine = EM_X86_64;
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phoff = phoff;
	eh->e_phnum = phnum;
	eh->e_entry = paddr;
	ph->p_type = PT_LOAD;
	ph->p_offset = offset;
	ph->p_filesz = filesz;
	ph->p_memsz = filesz + 0x1000;
	ph->p_paddr = paddr;
	for (size_t i = 0x200; i < 0x1000; i++)
		img[i] = (uint8_t)(i * 5 + 3);
	return 0x1000;
}

struct load_args {
	const char *kp, *ip; /* paths of the kernel and initrd (NULL: none) */
};

/* In the child: the load, into a private 64 MiB guest memory. */
static void load_child(void *arg, void *out)
{
	const struct load_args *a = arg;
	struct result *res = out;
	uint8_t *mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
	/* a loader that reads a 2 GiB file whole fails here, not the machine */
	struct rlimit as = { 1ull << 30, 1ull << 30 };

	setrlimit(RLIMIT_AS, &as);
#endif
	if (mem == MAP_FAILED)
		_exit(4);
	res->r = kvm__load_linux(mem, MEM, a->kp, a->ip, "console=ttyS0", &res->bi, res->why,
				 sizeof(res->why));
	if (!res->r) {
		memcpy(res->at_kernel, mem + res->bi.kernel_addr, sizeof(res->at_kernel));
		if (res->bi.initrd_size)
			memcpy(res->at_initrd, mem + res->bi.initrd_addr, sizeof(res->at_initrd));
	}
}

static void load_in_child(const char *kernel, const char *initrd, struct result *res)
{
	char kp[128], ip[128];
	struct load_args a = { kp, initrd ? ip : NULL };

	path_of(kp, sizeof(kp), kernel);
	if (initrd)
		path_of(ip, sizeof(ip), initrd);
	res->cost = h_in_child(load_child, &a, res, sizeof(*res));
	print_message("%s%s%s: %d (%s), %.3f s CPU, %.3f s, %ld KB peak RSS\n", kernel,
		      initrd ? " + " : "", initrd ? initrd : "", res->r, res->why,
		      res->cost.cpu_secs, res->cost.secs, res->cost.maxrss_kb);
	h_cost_check(kernel, &res->cost);
}

static void assert_refused(const char *kernel, const char *initrd, int err, const char *field)
{
	struct result res;

	load_in_child(kernel, initrd, &res);
	if (res.r != err || !strstr(res.why, field))
		fail_msg("%s: got %d '%s', want %d naming '%s'", kernel, res.r, res.why, err,
			 field);
}

static int setup(void **state)
{
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	static const char *const names[] = { "bz-ok", "bz-wrap", "bz-big", "bz-align",
					     "elf-ok", "elf-off", "elf-phoff", "elf-paddr",
					     "bz-sparse", "elf-sparse", "rd-sparse", "rd-ok" };
	char path[128];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		path_of(path, sizeof(path), names[i]);
		unlink(path);
	}
	return rmdir(dir);
}

/* Valid images: the payload at the protocol's address, the initrd at the top of RAM. */
static void test_valid(void **state)
{
	static uint8_t img[0x2000];
	struct result res;
	size_t n;

	n = bzimage(img, 16ull << 20, 0x100000, false, 0x1000);
	write_image("bz-ok", img, n, n);
	write_image("rd-ok", "0707010000", 10, 10000);
	load_in_child("bz-ok", "rd-ok", &res);
	assert_int_equal(res.r, 0);
	assert_int_equal(res.bi.kernel_addr, 16ull << 20);
	assert_int_equal(res.bi.entry, (16ull << 20) + 0x200);
	assert_memory_equal(res.at_kernel, img + 0x400, sizeof(res.at_kernel));
	assert_int_equal(res.bi.initrd_size, 10000);
	assert_int_equal(res.bi.initrd_addr, (MEM - 10000) & ~0xfffull);
	assert_memory_equal(res.at_initrd, "0707010000", 10);

	n = elf(img, sizeof(Elf64_Ehdr), 1, 0x200, 0xe00, 0x1000000);
	write_image("elf-ok", img, n, n);
	load_in_child("elf-ok", NULL, &res);
	assert_int_equal(res.r, 0);
	assert_int_equal(res.bi.kernel_addr, 0x1000000);
	assert_int_equal(res.bi.entry, 0x1000000);
	assert_memory_equal(res.at_kernel, img + 0x200, sizeof(res.at_kernel));
}

/* Sums that wrap: each used to pass its check and make the loader copy out of bounds. */
static void test_wrapping_headers(void **state)
{
	static uint8_t img[0x2000];
	size_t n;

	/* pref_address + init_size wraps to 0x100000: the old check passed, then SIGSEGV */
	n = bzimage(img, 0xfffffffffff00000ull, 0x200000, false, 0x1000);
	write_image("bz-wrap", img, n, n);
	assert_refused("bz-wrap", NULL, -E2BIG, "pref_address 0xfffffffffff00000 + init_size");
	n = bzimage(img, 16ull << 20, 0xffffffffu, true, 0x1000);
	write_image("bz-big", img, n, n);
	assert_refused("bz-big", NULL, -E2BIG, "init_size 0xffffffff");
	n = bzimage(img, 0, 0x1000, true, 0x1000);
	((struct setup_header *)(img + 0x1f1))->kernel_alignment = 0x300000;
	write_image("bz-align", img, n, n);
	assert_refused("bz-align", NULL, -ENOEXEC, "kernel_alignment 0x300000");

	/* p_offset + p_filesz wraps to 0x100 */
	n = elf(img, sizeof(Elf64_Ehdr), 1, 0xffffffffffffff00ull, 0x200, 0x1000000);
	write_image("elf-off", img, n, n);
	assert_refused("elf-off", NULL, -ENOEXEC, "p_offset 0xffffffffffffff00 + p_filesz 0x200");
	/* e_phoff + e_phnum * 56 wraps to 56 */
	n = elf(img, 0xffffffffffffffc8ull, 2, 0x200, 0x100, 0x1000000);
	write_image("elf-phoff", img, n, n);
	assert_refused("elf-phoff", NULL, -ENOEXEC, "e_phoff 0xffffffffffffffc8");
	/* p_paddr + p_memsz wraps */
	n = elf(img, sizeof(Elf64_Ehdr), 1, 0x200, 0x100, 0xfffffffffffff000ull);
	write_image("elf-paddr", img, n, n);
	assert_refused("elf-paddr", NULL, -E2BIG, "p_paddr 0xfffffffffffff000");
}

/* 2 GiB sparse files are refused from their headers and size, never read. */
static void test_sparse_2gib(void **state)
{
	static uint8_t img[0x2000];
	size_t n;

	n = bzimage(img, 16ull << 20, 0x100000, true, 0x1000);
	write_image("bz-sparse", img, n, GIB2);
	assert_refused("bz-sparse", NULL, -E2BIG, "init_size 0x100000 (or the 2147482624-byte");
	n = elf(img, sizeof(Elf64_Ehdr), 1, 0x200, GIB2 - 0x200, 0x1000000);
	write_image("elf-sparse", img, n, GIB2);
	assert_refused("elf-sparse", NULL, -E2BIG, "segment 0: p_paddr 0x1000000 + p_memsz");
	n = bzimage(img, 16ull << 20, 0x100000, false, 0x1000);
	write_image("bz-ok", img, n, n);
	write_image("rd-sparse", "0707010000", 10, GIB2);
	assert_refused("bz-ok", "rd-sparse", -E2BIG, "rd-sparse: 2147483648 bytes do not fit");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_wrapping_headers),
		cmocka_unit_test(test_sparse_2gib),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
