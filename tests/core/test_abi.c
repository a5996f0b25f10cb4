// SPDX-License-Identifier: MIT
/*
 * Wire format: include/rtioreq/abi.h against the kernel's <linux/acrn.h> (installed by
 * linux-libc-dev). Every struct of the request page (PIO, MMIO and PCI requests, the
 * 256-byte slot, the 16-slot page, the completion notification) is compared field by
 * field: size, alignment, offset and signedness of each member; every constant (states,
 * types, directions, slot count, ioctl type and numbers) likewise. Then rtioreq's own
 * channel page and shared region, as documented in abi.h.
 *
 * Each fact is checked twice: by a _Static_assert (the build breaks) and by a runtime
 * cmocka assert (a failure prints both operands).
 */
#include <setjmp.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <linux/acrn.h>
#include <linux/ioctl.h>

#include "rtioreq/abi.h"

#define FSIZE(type, f) sizeof(((type *)0)->f)
#define FALIGN(type, f) alignof(__typeof__(((type *)0)->f))
/* 1 if the (scalar or array element) type of the member is unsigned */
#define FUNSIGNED(type, f) ((__typeof__(+((type *)0)->f))-1 > 0)
#define AUNSIGNED(type, f) ((__typeof__(+((type *)0)->f[0]))-1 > 0)

/* Compile time and run time: same offset, size and alignment of member @f. */
#define SAME_FIELD(rt, k, f)                                                              \
	_Static_assert(offsetof(rt, f) == offsetof(k, f), #rt "." #f " offset");          \
	_Static_assert(FSIZE(rt, f) == FSIZE(k, f), #rt "." #f " size");                  \
	_Static_assert(FALIGN(rt, f) == FALIGN(k, f), #rt "." #f " alignment")

static void check_field(const char *what, size_t rt_off, size_t k_off, size_t rt_size,
			size_t k_size, size_t rt_align, size_t k_align)
{
	print_message("  %-40s off %3zu size %2zu align %3zu\n", what, rt_off, rt_size,
		      rt_align);
	assert_int_equal(rt_off, k_off);
	assert_int_equal(rt_size, k_size);
	assert_int_equal(rt_align, k_align);
}

#define CHECK_FIELD(rt, k, f)                                                             \
	check_field(#rt "." #f, offsetof(rt, f), offsetof(k, f), FSIZE(rt, f), FSIZE(k, f), \
		    FALIGN(rt, f), FALIGN(k, f))

/* scalar member: also the same signedness */
#define CHECK_SCALAR(rt, k, f)                                                            \
	do {                                                                              \
		CHECK_FIELD(rt, k, f);                                                    \
		assert_int_equal(FUNSIGNED(rt, f), FUNSIGNED(k, f));                      \
	} while (0)

/* array member: also the same element size and signedness */
#define CHECK_ARRAY(rt, k, f)                                                             \
	do {                                                                              \
		CHECK_FIELD(rt, k, f);                                                    \
		assert_int_equal(FSIZE(rt, f[0]), FSIZE(k, f[0]));                        \
		assert_int_equal(AUNSIGNED(rt, f), AUNSIGNED(k, f));                      \
	} while (0)

#define CHECK_STRUCT(rt, k)                                                               \
	do {                                                                              \
		assert_int_equal(sizeof(rt), sizeof(k));                                  \
		assert_int_equal(alignof(rt), alignof(k));                                \
	} while (0)

/* ---------------------------------------------------------------------------------- */
/* struct acrn_mmio_request */

_Static_assert(sizeof(struct rtioreq_mmio_request) == sizeof(struct acrn_mmio_request),
	       "mmio size");
_Static_assert(alignof(struct rtioreq_mmio_request) == alignof(struct acrn_mmio_request),
	       "mmio align");
SAME_FIELD(struct rtioreq_mmio_request, struct acrn_mmio_request, direction);
SAME_FIELD(struct rtioreq_mmio_request, struct acrn_mmio_request, reserved);
SAME_FIELD(struct rtioreq_mmio_request, struct acrn_mmio_request, address);
SAME_FIELD(struct rtioreq_mmio_request, struct acrn_mmio_request, size);
SAME_FIELD(struct rtioreq_mmio_request, struct acrn_mmio_request, value);

static void test_mmio_request(void **state)
{
	CHECK_STRUCT(struct rtioreq_mmio_request, struct acrn_mmio_request);
	assert_int_equal(sizeof(struct rtioreq_mmio_request), 32);
	CHECK_SCALAR(struct rtioreq_mmio_request, struct acrn_mmio_request, direction);
	CHECK_SCALAR(struct rtioreq_mmio_request, struct acrn_mmio_request, reserved);
	CHECK_SCALAR(struct rtioreq_mmio_request, struct acrn_mmio_request, address);
	CHECK_SCALAR(struct rtioreq_mmio_request, struct acrn_mmio_request, size);
	CHECK_SCALAR(struct rtioreq_mmio_request, struct acrn_mmio_request, value);
}

/* ---------------------------------------------------------------------------------- */
/* struct acrn_pio_request */

_Static_assert(sizeof(struct rtioreq_pio_request) == sizeof(struct acrn_pio_request),
	       "pio size");
_Static_assert(alignof(struct rtioreq_pio_request) == alignof(struct acrn_pio_request),
	       "pio align");
SAME_FIELD(struct rtioreq_pio_request, struct acrn_pio_request, direction);
SAME_FIELD(struct rtioreq_pio_request, struct acrn_pio_request, reserved);
SAME_FIELD(struct rtioreq_pio_request, struct acrn_pio_request, address);
SAME_FIELD(struct rtioreq_pio_request, struct acrn_pio_request, size);
SAME_FIELD(struct rtioreq_pio_request, struct acrn_pio_request, value);

static void test_pio_request(void **state)
{
	CHECK_STRUCT(struct rtioreq_pio_request, struct acrn_pio_request);
	assert_int_equal(sizeof(struct rtioreq_pio_request), 32);
	CHECK_SCALAR(struct rtioreq_pio_request, struct acrn_pio_request, direction);
	CHECK_SCALAR(struct rtioreq_pio_request, struct acrn_pio_request, reserved);
	CHECK_SCALAR(struct rtioreq_pio_request, struct acrn_pio_request, address);
	CHECK_SCALAR(struct rtioreq_pio_request, struct acrn_pio_request, size);
	CHECK_SCALAR(struct rtioreq_pio_request, struct acrn_pio_request, value);
}

/* ---------------------------------------------------------------------------------- */
/* struct acrn_pci_request */

_Static_assert(sizeof(struct rtioreq_pci_request) == sizeof(struct acrn_pci_request),
	       "pci size");
_Static_assert(alignof(struct rtioreq_pci_request) == alignof(struct acrn_pci_request),
	       "pci align");
SAME_FIELD(struct rtioreq_pci_request, struct acrn_pci_request, direction);
SAME_FIELD(struct rtioreq_pci_request, struct acrn_pci_request, reserved);
SAME_FIELD(struct rtioreq_pci_request, struct acrn_pci_request, size);
SAME_FIELD(struct rtioreq_pci_request, struct acrn_pci_request, value);
SAME_FIELD(struct rtioreq_pci_request, struct acrn_pci_request, bus);
SAME_FIELD(struct rtioreq_pci_request, struct acrn_pci_request, dev);
SAME_FIELD(struct rtioreq_pci_request, struct acrn_pci_request, func);
SAME_FIELD(struct rtioreq_pci_request, struct acrn_pci_request, reg);

static void test_pci_request(void **state)
{
	CHECK_STRUCT(struct rtioreq_pci_request, struct acrn_pci_request);
	assert_int_equal(sizeof(struct rtioreq_pci_request), 48);
	CHECK_SCALAR(struct rtioreq_pci_request, struct acrn_pci_request, direction);
	CHECK_ARRAY(struct rtioreq_pci_request, struct acrn_pci_request, reserved);
	CHECK_SCALAR(struct rtioreq_pci_request, struct acrn_pci_request, size);
	CHECK_SCALAR(struct rtioreq_pci_request, struct acrn_pci_request, value);
	CHECK_SCALAR(struct rtioreq_pci_request, struct acrn_pci_request, bus);
	CHECK_SCALAR(struct rtioreq_pci_request, struct acrn_pci_request, dev);
	CHECK_SCALAR(struct rtioreq_pci_request, struct acrn_pci_request, func);
	CHECK_SCALAR(struct rtioreq_pci_request, struct acrn_pci_request, reg);
	/* "Need keep same header layout with &struct acrn_pio_request" (direction, value) */
	assert_int_equal(offsetof(struct rtioreq_pci_request, direction),
			 offsetof(struct rtioreq_pio_request, direction));
	assert_int_equal(offsetof(struct rtioreq_pci_request, value),
			 offsetof(struct rtioreq_pio_request, value));
}

/* ---------------------------------------------------------------------------------- */
/* struct acrn_io_request: the 256-byte slot */

#define RT_REQ struct rtioreq_io_request
#define K_REQ struct acrn_io_request

_Static_assert(sizeof(RT_REQ) == sizeof(K_REQ), "io_request size");
_Static_assert(alignof(RT_REQ) == alignof(K_REQ), "io_request align");
SAME_FIELD(RT_REQ, K_REQ, type);
SAME_FIELD(RT_REQ, K_REQ, completion_polling);
SAME_FIELD(RT_REQ, K_REQ, reserved0);
SAME_FIELD(RT_REQ, K_REQ, reqs);
SAME_FIELD(RT_REQ, K_REQ, reqs.pio_request);
SAME_FIELD(RT_REQ, K_REQ, reqs.mmio_request);
SAME_FIELD(RT_REQ, K_REQ, reqs.pci_request);
SAME_FIELD(RT_REQ, K_REQ, reqs.data);
SAME_FIELD(RT_REQ, K_REQ, reqs.pio_request.value);
SAME_FIELD(RT_REQ, K_REQ, reqs.mmio_request.value);
SAME_FIELD(RT_REQ, K_REQ, reqs.pci_request.value);
SAME_FIELD(RT_REQ, K_REQ, reserved1);
SAME_FIELD(RT_REQ, K_REQ, kernel_handled);
SAME_FIELD(RT_REQ, K_REQ, processed);
/* the value field every read's result is written to */
_Static_assert(offsetof(RT_REQ, reqs.pio_request.value) == 88, "pio value at byte 88");
_Static_assert(offsetof(RT_REQ, reqs.mmio_request.value) == 88, "mmio value at byte 88");
_Static_assert(offsetof(RT_REQ, reqs.pci_request.value) == 88, "pci value at byte 88");

static void test_io_request(void **state)
{
	CHECK_STRUCT(RT_REQ, K_REQ);
	assert_int_equal(sizeof(RT_REQ), 256);
	assert_int_equal(alignof(RT_REQ), 256);
	CHECK_SCALAR(RT_REQ, K_REQ, type);
	CHECK_SCALAR(RT_REQ, K_REQ, completion_polling);
	CHECK_ARRAY(RT_REQ, K_REQ, reserved0);
	CHECK_FIELD(RT_REQ, K_REQ, reqs);
	CHECK_FIELD(RT_REQ, K_REQ, reqs.pio_request);
	CHECK_FIELD(RT_REQ, K_REQ, reqs.mmio_request);
	CHECK_FIELD(RT_REQ, K_REQ, reqs.pci_request);
	CHECK_ARRAY(RT_REQ, K_REQ, reqs.data);
	CHECK_SCALAR(RT_REQ, K_REQ, reserved1);
	CHECK_SCALAR(RT_REQ, K_REQ, kernel_handled);
	CHECK_SCALAR(RT_REQ, K_REQ, processed);
	/* the request union: byte 64, 64 bytes */
	assert_int_equal(offsetof(RT_REQ, reqs), 64);
	assert_int_equal(FSIZE(RT_REQ, reqs), 64);
	/* nested members at their absolute offsets */
	CHECK_SCALAR(RT_REQ, K_REQ, reqs.pio_request.direction);
	CHECK_SCALAR(RT_REQ, K_REQ, reqs.pio_request.address);
	CHECK_SCALAR(RT_REQ, K_REQ, reqs.pio_request.size);
	CHECK_SCALAR(RT_REQ, K_REQ, reqs.pio_request.value);
	CHECK_SCALAR(RT_REQ, K_REQ, reqs.mmio_request.direction);
	CHECK_SCALAR(RT_REQ, K_REQ, reqs.mmio_request.address);
	CHECK_SCALAR(RT_REQ, K_REQ, reqs.mmio_request.size);
	CHECK_SCALAR(RT_REQ, K_REQ, reqs.mmio_request.value);
	CHECK_SCALAR(RT_REQ, K_REQ, reqs.pci_request.direction);
	CHECK_SCALAR(RT_REQ, K_REQ, reqs.pci_request.size);
	CHECK_SCALAR(RT_REQ, K_REQ, reqs.pci_request.value);
	CHECK_SCALAR(RT_REQ, K_REQ, reqs.pci_request.bus);
	CHECK_SCALAR(RT_REQ, K_REQ, reqs.pci_request.dev);
	CHECK_SCALAR(RT_REQ, K_REQ, reqs.pci_request.func);
	CHECK_SCALAR(RT_REQ, K_REQ, reqs.pci_request.reg);
	/* the cache lines abi.h documents: 0 (type, cp), 64 (request), 128 (state) */
	assert_int_equal(offsetof(RT_REQ, type), 0);
	assert_int_equal(offsetof(RT_REQ, completion_polling), 4);
	assert_int_equal(offsetof(RT_REQ, reserved1), 128);
	assert_int_equal(offsetof(RT_REQ, kernel_handled), 132);
	assert_int_equal(offsetof(RT_REQ, processed), 136);
}

/* A read's result goes to byte 88 of the slot for every request type. */
static void test_value_at_byte_88(void **state)
{
	union {
		RT_REQ rq;
		uint8_t b[sizeof(RT_REQ)];
	} u;
	uint64_t v64;
	uint32_t v32;

	assert_int_equal(offsetof(RT_REQ, reqs.pio_request.value), 88);
	assert_int_equal(offsetof(RT_REQ, reqs.mmio_request.value), 88);
	assert_int_equal(offsetof(RT_REQ, reqs.pci_request.value), 88);
	assert_int_equal(offsetof(K_REQ, reqs.pio_request.value), 88);
	assert_int_equal(offsetof(K_REQ, reqs.mmio_request.value), 88);
	assert_int_equal(offsetof(K_REQ, reqs.pci_request.value), 88);
	/* and data[3] is the same 8 bytes */
	assert_int_equal(offsetof(RT_REQ, reqs.data) + 3 * sizeof(uint64_t), 88);

	memset(&u, 0, sizeof(u));
	u.rq.reqs.mmio_request.value = 0x1122334455667788ull;
	memcpy(&v64, &u.b[88], sizeof(v64));
	assert_int_equal(v64, 0x1122334455667788ull);
	assert_int_equal(u.rq.reqs.data[3], 0x1122334455667788ull);
	/* the PIO and PCI value alias the low 4 bytes of the MMIO value (little endian) */
	assert_int_equal(u.rq.reqs.pio_request.value, 0x55667788u);
	assert_int_equal(u.rq.reqs.pci_request.value, 0x55667788u);
	memset(&u, 0, sizeof(u));
	u.rq.reqs.pio_request.value = 0xa1b2c3d4u;
	memcpy(&v32, &u.b[88], sizeof(v32));
	assert_int_equal(v32, 0xa1b2c3d4u);
	for (size_t i = 0; i < sizeof(u.b); i++)
		if (i < 88 || i >= 92)
			assert_int_equal(u.b[i], 0);
	/* the PCI bus field follows at 92: a 32-bit value store never reaches it */
	assert_int_equal(offsetof(RT_REQ, reqs.pci_request.bus), 92);
}

/* ---------------------------------------------------------------------------------- */
/* struct acrn_io_request_buffer: the page of 16 slots */

_Static_assert(sizeof(struct rtioreq_io_request_buffer) == sizeof(struct acrn_io_request_buffer),
	       "page size");
_Static_assert(alignof(struct rtioreq_io_request_buffer) ==
		       alignof(struct acrn_io_request_buffer),
	       "page align");
SAME_FIELD(struct rtioreq_io_request_buffer, struct acrn_io_request_buffer, req_slot);
SAME_FIELD(struct rtioreq_io_request_buffer, struct acrn_io_request_buffer, reserved);

static void test_io_request_buffer(void **state)
{
	CHECK_STRUCT(struct rtioreq_io_request_buffer, struct acrn_io_request_buffer);
	assert_int_equal(sizeof(struct rtioreq_io_request_buffer), 4096);
	assert_int_equal(RTIOREQ_PAGE_SIZE, 4096);
	CHECK_FIELD(struct rtioreq_io_request_buffer, struct acrn_io_request_buffer, req_slot);
	CHECK_FIELD(struct rtioreq_io_request_buffer, struct acrn_io_request_buffer, reserved);
	assert_int_equal(FSIZE(struct rtioreq_io_request_buffer, req_slot) / sizeof(RT_REQ),
			 ACRN_IO_REQUEST_MAX);
	for (size_t i = 0; i < RTIOREQ_IO_REQUEST_MAX; i++) {
		assert_int_equal(offsetof(struct rtioreq_io_request_buffer, req_slot[i]),
				 offsetof(struct acrn_io_request_buffer, req_slot[i]));
		assert_int_equal(offsetof(struct rtioreq_io_request_buffer, req_slot[i]),
				 256 * i);
	}
}

/* ---------------------------------------------------------------------------------- */
/* struct acrn_ioreq_notify */

_Static_assert(sizeof(struct rtioreq_ioreq_notify) == sizeof(struct acrn_ioreq_notify),
	       "notify size");
SAME_FIELD(struct rtioreq_ioreq_notify, struct acrn_ioreq_notify, vmid);
SAME_FIELD(struct rtioreq_ioreq_notify, struct acrn_ioreq_notify, reserved);
SAME_FIELD(struct rtioreq_ioreq_notify, struct acrn_ioreq_notify, vcpu);

static void test_ioreq_notify(void **state)
{
	CHECK_STRUCT(struct rtioreq_ioreq_notify, struct acrn_ioreq_notify);
	CHECK_SCALAR(struct rtioreq_ioreq_notify, struct acrn_ioreq_notify, vmid);
	CHECK_SCALAR(struct rtioreq_ioreq_notify, struct acrn_ioreq_notify, reserved);
	CHECK_SCALAR(struct rtioreq_ioreq_notify, struct acrn_ioreq_notify, vcpu);
}

/* ---------------------------------------------------------------------------------- */
/* Constants */

_Static_assert(RTIOREQ_IO_REQUEST_MAX == ACRN_IO_REQUEST_MAX, "slots");
_Static_assert(RTIOREQ_STATE_PENDING == ACRN_IOREQ_STATE_PENDING, "PENDING");
_Static_assert(RTIOREQ_STATE_COMPLETE == ACRN_IOREQ_STATE_COMPLETE, "COMPLETE");
_Static_assert(RTIOREQ_STATE_PROCESSING == ACRN_IOREQ_STATE_PROCESSING, "PROCESSING");
_Static_assert(RTIOREQ_STATE_FREE == ACRN_IOREQ_STATE_FREE, "FREE");
_Static_assert(RTIOREQ_TYPE_PORTIO == ACRN_IOREQ_TYPE_PORTIO, "PORTIO");
_Static_assert(RTIOREQ_TYPE_MMIO == ACRN_IOREQ_TYPE_MMIO, "MMIO");
_Static_assert(RTIOREQ_TYPE_PCICFG == ACRN_IOREQ_TYPE_PCICFG, "PCICFG");
_Static_assert(RTIOREQ_DIR_READ == ACRN_IOREQ_DIR_READ, "READ");
_Static_assert(RTIOREQ_DIR_WRITE == ACRN_IOREQ_DIR_WRITE, "WRITE");

static void test_constants(void **state)
{
	assert_int_equal(RTIOREQ_IO_REQUEST_MAX, ACRN_IO_REQUEST_MAX);
	assert_int_equal(RTIOREQ_STATE_PENDING, ACRN_IOREQ_STATE_PENDING);
	assert_int_equal(RTIOREQ_STATE_COMPLETE, ACRN_IOREQ_STATE_COMPLETE);
	assert_int_equal(RTIOREQ_STATE_PROCESSING, ACRN_IOREQ_STATE_PROCESSING);
	assert_int_equal(RTIOREQ_STATE_FREE, ACRN_IOREQ_STATE_FREE);
	assert_int_equal(RTIOREQ_TYPE_PORTIO, ACRN_IOREQ_TYPE_PORTIO);
	assert_int_equal(RTIOREQ_TYPE_MMIO, ACRN_IOREQ_TYPE_MMIO);
	assert_int_equal(RTIOREQ_TYPE_PCICFG, ACRN_IOREQ_TYPE_PCICFG);
	assert_int_equal(RTIOREQ_DIR_READ, ACRN_IOREQ_DIR_READ);
	assert_int_equal(RTIOREQ_DIR_WRITE, ACRN_IOREQ_DIR_WRITE);
#if defined(ACRN_IOREQ_TYPE_WP)
	/* write-protected page requests: newer headers only; rtioreq must follow */
#if defined(RTIOREQ_TYPE_WP)
	assert_int_equal(RTIOREQ_TYPE_WP, ACRN_IOREQ_TYPE_WP);
#else
	fail_msg("<linux/acrn.h> defines ACRN_IOREQ_TYPE_WP (%d), abi.h has no RTIOREQ_TYPE_WP",
		 (int)ACRN_IOREQ_TYPE_WP);
#endif
#else
	/* the installed header has no WP type: it must not collide with a known one */
	print_message("  <linux/acrn.h> has no ACRN_IOREQ_TYPE_WP: not compared\n");
#if defined(RTIOREQ_TYPE_WP)
	assert_true(RTIOREQ_TYPE_WP > RTIOREQ_TYPE_PCICFG);
#endif
#endif
	/* the state and type values are distinct */
	assert_int_not_equal(RTIOREQ_STATE_PENDING, RTIOREQ_STATE_FREE);
	assert_int_not_equal(RTIOREQ_STATE_COMPLETE, RTIOREQ_STATE_PROCESSING);
}

/* ---------------------------------------------------------------------------------- */
/* ioctl numbers of /dev/acrn_hsm */

_Static_assert(RTIOREQ_ACRN_IOCTL_TYPE == ACRN_IOCTL_TYPE, "ioctl type");
_Static_assert(RTIOREQ_ACRN_NR_NOTIFY_REQUEST_FINISH == _IOC_NR(ACRN_IOCTL_NOTIFY_REQUEST_FINISH),
	       "NOTIFY_REQUEST_FINISH");
_Static_assert(RTIOREQ_ACRN_NR_CREATE_IOREQ_CLIENT == _IOC_NR(ACRN_IOCTL_CREATE_IOREQ_CLIENT),
	       "CREATE_IOREQ_CLIENT");
_Static_assert(RTIOREQ_ACRN_NR_ATTACH_IOREQ_CLIENT == _IOC_NR(ACRN_IOCTL_ATTACH_IOREQ_CLIENT),
	       "ATTACH_IOREQ_CLIENT");
_Static_assert(RTIOREQ_ACRN_NR_DESTROY_IOREQ_CLIENT == _IOC_NR(ACRN_IOCTL_DESTROY_IOREQ_CLIENT),
	       "DESTROY_IOREQ_CLIENT");
_Static_assert(RTIOREQ_ACRN_NR_CLEAR_VM_IOREQ == _IOC_NR(ACRN_IOCTL_CLEAR_VM_IOREQ),
	       "CLEAR_VM_IOREQ");

#define CHECK_IOCTL(name)                                                                 \
	do {                                                                              \
		print_message("  ACRN_IOCTL_" #name " = 0x%08lx\n",                       \
			      (unsigned long)ACRN_IOCTL_##name);                          \
		assert_int_equal(RTIOREQ_ACRN_NR_##name, _IOC_NR(ACRN_IOCTL_##name));     \
		assert_int_equal(RTIOREQ_ACRN_IOCTL_TYPE, _IOC_TYPE(ACRN_IOCTL_##name));  \
	} while (0)

static void test_ioctl_numbers(void **state)
{
	assert_int_equal(RTIOREQ_ACRN_IOCTL_TYPE, ACRN_IOCTL_TYPE);
	CHECK_IOCTL(NOTIFY_REQUEST_FINISH);
	CHECK_IOCTL(CREATE_IOREQ_CLIENT);
	CHECK_IOCTL(ATTACH_IOREQ_CLIENT);
	CHECK_IOCTL(DESTROY_IOREQ_CLIENT);
	CHECK_IOCTL(CLEAR_VM_IOREQ);
	/* NOTIFY_REQUEST_FINISH is _IOW of struct acrn_ioreq_notify: same size as ours */
	assert_int_equal(_IOC_DIR(ACRN_IOCTL_NOTIFY_REQUEST_FINISH), _IOC_WRITE);
	assert_int_equal(_IOC_SIZE(ACRN_IOCTL_NOTIFY_REQUEST_FINISH),
			 sizeof(struct rtioreq_ioreq_notify));
	/* the client ioctls carry no argument struct */
	assert_int_equal(_IOC_DIR(ACRN_IOCTL_CREATE_IOREQ_CLIENT), _IOC_NONE);
	assert_int_equal(_IOC_DIR(ACRN_IOCTL_ATTACH_IOREQ_CLIENT), _IOC_NONE);
	assert_int_equal(_IOC_DIR(ACRN_IOCTL_DESTROY_IOREQ_CLIENT), _IOC_NONE);
	assert_int_equal(_IOC_DIR(ACRN_IOCTL_CLEAR_VM_IOREQ), _IOC_NONE);
	/* rebuilt from rtioreq's numbers, the full ioctl values match */
	assert_int_equal(_IOW(RTIOREQ_ACRN_IOCTL_TYPE, RTIOREQ_ACRN_NR_NOTIFY_REQUEST_FINISH,
			      struct rtioreq_ioreq_notify),
			 ACRN_IOCTL_NOTIFY_REQUEST_FINISH);
	assert_int_equal(_IO(RTIOREQ_ACRN_IOCTL_TYPE, RTIOREQ_ACRN_NR_CREATE_IOREQ_CLIENT),
			 ACRN_IOCTL_CREATE_IOREQ_CLIENT);
	assert_int_equal(_IO(RTIOREQ_ACRN_IOCTL_TYPE, RTIOREQ_ACRN_NR_ATTACH_IOREQ_CLIENT),
			 ACRN_IOCTL_ATTACH_IOREQ_CLIENT);
	assert_int_equal(_IO(RTIOREQ_ACRN_IOCTL_TYPE, RTIOREQ_ACRN_NR_DESTROY_IOREQ_CLIENT),
			 ACRN_IOCTL_DESTROY_IOREQ_CLIENT);
	assert_int_equal(_IO(RTIOREQ_ACRN_IOCTL_TYPE, RTIOREQ_ACRN_NR_CLEAR_VM_IOREQ),
			 ACRN_IOCTL_CLEAR_VM_IOREQ);
}

/* ---------------------------------------------------------------------------------- */
/* rtioreq's channel page and shared region (abi.h, docs/shm-protocol.md) */

#define CHAN struct rtioreq_chan

_Static_assert(offsetof(CHAN, magic) == 0, "magic");
_Static_assert(offsetof(CHAN, version) == 4, "version");
_Static_assert(offsetof(CHAN, vcpu_num) == 8, "vcpu_num");
_Static_assert(offsetof(CHAN, flags) == 12, "flags");
_Static_assert(offsetof(CHAN, upcall_seq) == 64, "upcall_seq");
_Static_assert(offsetof(CHAN, polled_mask) == 128, "polled_mask");
_Static_assert(offsetof(CHAN, need_wakeup) == 192, "need_wakeup");
_Static_assert(offsetof(CHAN, done_seq) == 256, "done_seq");
_Static_assert(offsetof(CHAN, owner) == 1280, "owner");
_Static_assert(sizeof(CHAN) == 256 + (RTIOREQ_IO_REQUEST_MAX + 1) * 64, "chan size");

static void test_chan_page(void **state)
{
	static const char magic[4] = { 'R', 'T', 'I', 'O' };
	uint32_t m = RTIOREQ_CHAN_MAGIC;

	/* "RTIO" in memory order on a little-endian machine */
	assert_int_equal(RTIOREQ_CHAN_MAGIC, 0x4f495452u);
	assert_memory_equal(&m, magic, sizeof(magic));
	assert_int_equal(RTIOREQ_CHAN_VERSION, 2); /* 2: the owner line */

	assert_int_equal(sizeof(struct rtioreq_chan_line), 64);
	assert_int_equal(offsetof(struct rtioreq_chan_line, word), 0);
	assert_int_equal(FSIZE(struct rtioreq_chan_line, word), 4);

	/* line 0: the header */
	assert_int_equal(offsetof(CHAN, magic), 0);
	assert_int_equal(offsetof(CHAN, version), 4);
	assert_int_equal(offsetof(CHAN, vcpu_num), 8);
	assert_int_equal(offsetof(CHAN, flags), 12);
	assert_int_equal(FSIZE(CHAN, magic), 4);
	assert_int_equal(FSIZE(CHAN, version), 4);
	assert_int_equal(FSIZE(CHAN, vcpu_num), 4);
	assert_int_equal(FSIZE(CHAN, flags), 4);
	/* one cache line per futex word */
	assert_int_equal(offsetof(CHAN, upcall_seq.word), 64);
	assert_int_equal(offsetof(CHAN, polled_mask.word), 128);
	assert_int_equal(offsetof(CHAN, need_wakeup.word), 192);
	assert_int_equal(offsetof(CHAN, done_seq), 256);
	assert_int_equal(FSIZE(CHAN, done_seq) / sizeof(struct rtioreq_chan_line),
			 RTIOREQ_IO_REQUEST_MAX);
	for (size_t v = 0; v < RTIOREQ_IO_REQUEST_MAX; v++)
		assert_int_equal(offsetof(CHAN, done_seq[v].word), 256 + 64 * v);
	/* version 2: the owner word after the done_seq lines (region offset 5376) */
	assert_int_equal(offsetof(CHAN, owner.word), 1280);
	assert_int_equal(sizeof(CHAN), 256 + (RTIOREQ_IO_REQUEST_MAX + 1) * 64);
	assert_true(sizeof(CHAN) <= RTIOREQ_PAGE_SIZE);
	/* 32-bit futex words, 4-byte aligned, viewable as atomics */
	assert_int_equal(alignof(CHAN), 4);
	assert_int_equal(sizeof(_Atomic uint32_t), sizeof(uint32_t));
	assert_int_equal(alignof(_Atomic uint32_t), alignof(uint32_t));
}

static void test_shm_region(void **state)
{
	static struct rtioreq_shm_region r;

	assert_int_equal(sizeof(struct rtioreq_shm_region), 8192);
	assert_int_equal(offsetof(struct rtioreq_shm_region, page), 0);
	assert_int_equal(offsetof(struct rtioreq_shm_region, chan), 4096);
	assert_int_equal(offsetof(struct rtioreq_shm_region, chan_reserved), 4096);
	assert_int_equal(FSIZE(struct rtioreq_shm_region, chan_reserved), RTIOREQ_PAGE_SIZE);
	assert_int_equal(alignof(struct rtioreq_shm_region), 256);
	/* absolute offsets in the region, as a hypervisor in another process sees them */
	assert_int_equal((uintptr_t)&r.page.req_slot[15].processed - (uintptr_t)&r,
			 15 * 256 + 136);
	assert_int_equal((uintptr_t)&r.chan.upcall_seq.word - (uintptr_t)&r, 4096 + 64);
	assert_int_equal((uintptr_t)&r.chan.polled_mask.word - (uintptr_t)&r, 4096 + 128);
	assert_int_equal((uintptr_t)&r.chan.need_wakeup.word - (uintptr_t)&r, 4096 + 192);
	assert_int_equal((uintptr_t)&r.chan.done_seq[3].word - (uintptr_t)&r,
			 4096 + 256 + 3 * 64);
	/* the wire-atomic view is the field itself */
	assert_ptr_equal(rtioreq_wire_atomic(&r.chan.magic), (void *)&r.chan.magic);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mmio_request),
		cmocka_unit_test(test_pio_request),
		cmocka_unit_test(test_pci_request),
		cmocka_unit_test(test_io_request),
		cmocka_unit_test(test_value_at_byte_88),
		cmocka_unit_test(test_io_request_buffer),
		cmocka_unit_test(test_ioreq_notify),
		cmocka_unit_test(test_constants),
		cmocka_unit_test(test_ioctl_numbers),
		cmocka_unit_test(test_chan_page),
		cmocka_unit_test(test_shm_region),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
