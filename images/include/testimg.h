/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * testimg.h - the contract between the VMM and the project's test images
 * (images/NAME.c).  Shared by both sides; change it only on both sides.
 *
 * Image format: a static ELF64 x86-64 executable (ET_EXEC) whose PT_LOAD
 * segments are loaded at their p_paddr (guest-physical, linked at
 * TESTIMG_LOAD_BASE and above, inside low RAM), with a note
 * TESTIMG_NOTE_NAME / TESTIMG_NOTE_TYPE so the VMM can tell it from a
 * Linux vmlinux.
 *
 * Entry state, on EVERY vCPU at once (no INIT/SIPI), at e_entry:
 *   64-bit long mode, CS = TESTIMG_SEL_CODE64 (DS/ES/SS = TESTIMG_SEL_DATA),
 *   paging on with an identity map of [0, max(4 GiB, end of RAM)) in 2 MiB
 *   pages (the MMIO hole included), interrupts off, RFLAGS = 0x2,
 *   RDI = guest-physical (= virtual) address of struct testimg_boot_info,
 *   RSI = this vCPU's index (0 .. nr_vcpus - 1),
 *   RSP = top of this vCPU's stack (TESTIMG_STACK_SIZE bytes, 16-aligned).
 *
 * Memory the VMM uses below TESTIMG_LOAD_BASE (boot info, GDT, page tables,
 * stacks) must not be touched by images; RAM from TESTIMG_FREE_BASE up to
 * ram_low_end and [ram_high_start, ram_high_start + ram_high_size) beyond
 * the image's own segments is free.
 */
#ifndef TESTIMG_H
#define TESTIMG_H

#include <stdint.h>

#define TESTIMG_NOTE_NAME "VMMTEST"
#define TESTIMG_NOTE_TYPE 0x7e57u

#define TESTIMG_LOAD_BASE 0x100000ULL    /* images link here (1 MiB) */
#define TESTIMG_FREE_BASE 0x400000ULL    /* RAM above 4 MiB is the images' to use */
#define TESTIMG_BOOT_INFO 0x6000ULL      /* struct testimg_boot_info */
#define TESTIMG_GDT 0x7000ULL
#define TESTIMG_PAGE_TABLES 0x10000ULL   /* PML4, PDPT, PDs: up to 0x1ffff */
#define TESTIMG_STACKS 0x20000ULL        /* vCPU i's stack: [STACKS + i*SIZE, + SIZE) */
#define TESTIMG_STACK_SIZE 0x2000ULL
#define TESTIMG_MAX_VCPUS 64             /* stacks end at 0xa0000 */

#define TESTIMG_SEL_CODE64 0x08
#define TESTIMG_SEL_DATA 0x10

#define TESTIMG_MAGIC 0x544d4d56u        /* "VMMT" */

struct testimg_boot_info {
	uint32_t magic;           /* TESTIMG_MAGIC */
	uint32_t version;         /* 1 */
	uint64_t ram_size;        /* total guest RAM in bytes */
	uint64_t ram_low_end;     /* RAM is [0, ram_low_end) ... */
	uint64_t ram_high_start;  /* ... and [ram_high_start, + ram_high_size) */
	uint64_t ram_high_size;
	uint32_t nr_vcpus;
	uint32_t reserved;
};

/* Devices every test image may use. */
#define TESTIMG_PORT_SERIAL 0x3f8        /* 8250 UART, COM1 */
#define TESTIMG_PORT_EXIT 0x501          /* outl(code): the VMM stops and exits with code & 0xff */

/*
 * testdev: exits whose handlers walk guest memory through guestmm.
 *   outl(0x510, gpa low 32)  outl(0x514, gpa high 32)  outl(0x518, len)
 *       -> the VMM reads [gpa, gpa + len) (len <= 4096) through guestmm and
 *          keeps its checksum; inl(0x518) returns it (all-ones if the range
 *          is not guest RAM).
 *   MMIO at TESTDEV_MMIO (4 KiB): readl(+0) = the same checksum, computed
 *   again from guest memory; writel(+4, v) -> the VMM writes the 32-bit v
 *   into guest memory at gpa (through guestmm).
 * Checksum: testimg_checksum() below, over whole bytes.
 */
#define TESTDEV_PORT_GPA_LO 0x510
#define TESTDEV_PORT_GPA_HI 0x514
#define TESTDEV_PORT_LEN 0x518
#define TESTDEV_MMIO 0xd0000000ULL
#define TESTDEV_MMIO_SUM 0x0
#define TESTDEV_MMIO_STORE 0x4

/*
 * virtio-mmio (virtio 1.2, 4.2): the VMM's virtio devices sit in windows of
 * TESTIMG_VIRTIO_WINDOW bytes from TESTIMG_VIRTIO_BASE, slot 0 first, in the
 * order disks, console, balloon, virtio-mem (an empty slot reads magic 0).
 * images/vio.h is the images' polled driver.
 */
#define TESTIMG_VIRTIO_BASE 0xd0800000ULL
#define TESTIMG_VIRTIO_WINDOW 0x1000ULL
#define TESTIMG_VIRTIO_SLOTS 6

/*
 * benchdev (only under `vmm bench munmap`; elsewhere an unclaimed port):
 *   outl(0x520, n) -> the VMM's exit handler, inside the vCPU's walk
 *                     section, translates a GPA it derives from n in the
 *                     benchmark's target range and copies 64 bytes from it
 *                     (a fault, once that range is unmapped, is counted).
 */
#define TESTIMG_PORT_BENCH 0x520

/* FNV-1a, 32 bits. */
static inline uint32_t testimg_checksum(const uint8_t *p, uint64_t len)
{
	uint32_t h = 2166136261u;
	for (uint64_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

#endif
