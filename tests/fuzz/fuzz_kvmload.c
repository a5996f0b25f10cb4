// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the KVM guest loader (bzImage and ELF headers) into a guest-memory
 * buffer, no /dev/kvm needed (tests/fuzz/README.md).
 *
 * Input: byte 0 bit 0 says whether an initrd follows, bytes 1-2 (little endian) how
 * many of the rest are the kernel (capped), the remainder is the initrd. Guest memory
 * is 16 MiB between two inaccessible guard pages: a write outside it faults.
 *
 * Invariants (each failure aborts):
 *  - an error is -ENOEXEC, -E2BIG or -EINVAL with a reason;
 *  - on success the kernel lies at or above 1 MiB and inside guest memory, the entry is
 *    inside it, a bzImage's protected-mode payload is in guest memory byte for byte at
 *    kernel_addr (entry = kernel_addr + 0x200), an initrd is page-aligned above the
 *    kernel, inside memory and byte for byte equal to the input, and the command line
 *    is at cmd_line_ptr.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <asm/bootparam.h>
#include <elf.h>

#include "hv/kvm_pvt.h"

#define MEM (16ull << 20)
#define PAGE 4096u

#include "fuzz_check.h"

static uint8_t *mem;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char cmdline[] = "console=ttyS0 rdinit=/init";
	struct kvm__image k, rd;
	struct kvm_boot_info bi;
	char why[256] = "";
	size_t klen;
	bool has_rd;
	int r;

	if (!mem) {
		uint8_t *m = mmap(NULL, MEM + 2 * PAGE, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		CHECK(m != MAP_FAILED, "mmap");
		CHECK(!mprotect(m, PAGE, PROT_NONE) && !mprotect(m + PAGE + MEM, PAGE, PROT_NONE),
		      "guard pages");
		mem = m + PAGE;
	}
	if (size < 3)
		return 0;
	has_rd = data[0] & 1;
	klen = (size_t)data[1] | (size_t)data[2] << 8;
	klen = has_rd ? (klen < size - 3 ? klen : size - 3) : size - 3;
	k = (struct kvm__image){ .name = "kernel", .fd = -1, .buf = data + 3, .len = klen };
	rd = (struct kvm__image){ .name = "initrd", .fd = -1, .buf = data + 3 + klen,
				  .len = size - 3 - klen };
	r = kvm__load_linux_image(mem, MEM, &k, has_rd ? &rd : NULL, cmdline, &bi, why,
				  sizeof(why));
	if (r) {
		CHECK(r == -ENOEXEC || r == -E2BIG || r == -EINVAL, "error %d (%s)", r, why);
		CHECK(why[0], "error %d without a reason", r);
		return 0;
	}
	CHECK(bi.kernel_addr >= 0x100000 && bi.kernel_addr < MEM, "kernel at %#llx",
	      (unsigned long long)bi.kernel_addr);
	CHECK(bi.entry >= bi.kernel_addr && bi.entry < MEM, "entry %#llx",
	      (unsigned long long)bi.entry);
	if (klen < SELFMAG || memcmp(data + 3, ELFMAG, SELFMAG)) {
		/* bzImage: the protected-mode part, as it is in the file */
		uint8_t sects = data[3 + 0x1f1] ? data[3 + 0x1f1] : 4;
		size_t setup = ((size_t)sects + 1) * 512;

		CHECK(setup < klen, "setup %zu of %zu bytes", setup, klen);
		CHECK(bi.kernel_addr + (klen - setup) <= MEM, "payload past memory");
		CHECK(!memcmp(mem + bi.kernel_addr, data + 3 + setup, klen - setup),
		      "payload differs");
		CHECK(bi.entry == bi.kernel_addr + 0x200, "entry %#llx",
		      (unsigned long long)bi.entry);
	}
	if (has_rd) {
		CHECK(bi.initrd_size == rd.len, "initrd size %llu of %llu",
		      (unsigned long long)bi.initrd_size, (unsigned long long)rd.len);
		CHECK(!(bi.initrd_addr & 0xfff) && bi.initrd_addr > bi.kernel_addr &&
			      bi.initrd_addr + bi.initrd_size <= MEM,
		      "initrd at %#llx + %llu", (unsigned long long)bi.initrd_addr,
		      (unsigned long long)bi.initrd_size);
		CHECK(!memcmp(mem + bi.initrd_addr, rd.buf, rd.len), "initrd differs");
	}
	{
		const struct boot_params *bp = (const void *)(mem + KVMG_ZERO_PAGE);

		CHECK(bp->hdr.cmd_line_ptr == KVMG_CMDLINE, "cmd_line_ptr %#x",
		      bp->hdr.cmd_line_ptr);
		CHECK(!strcmp((const char *)mem + KVMG_CMDLINE, cmdline), "command line");
		CHECK(!has_rd || bp->hdr.ramdisk_image == bi.initrd_addr, "ramdisk_image");
	}
	return 0;
}
