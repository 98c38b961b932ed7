/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * boot_types.h - the types every part of boot/ and its callers share:
 * guest RAM as the loaders see it, the image kinds, the initial vCPU state
 * and the boot plan, and the fixed guest-physical layout.  Types and
 * constants only: boot.h (the entry points), e820.h, boot_x86.h,
 * loaders.h and mptable.h all include it, none of them includes another
 * module's header to get a type.
 */
#ifndef VMM_BOOT_TYPES_H
#define VMM_BOOT_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gmm_walker;

#define BOOT_LOW_RAM_MAX (3ULL << 30)   /* low RAM ends at 3 GiB at most */
#define BOOT_HIGH_RAM_BASE (4ULL << 30)
#define BOOT_MMIO_HOLE (3ULL << 30)      /* [3 GiB, 4 GiB): devices */

/* Guest RAM as the loaders see it: writes go through guestmm. */
struct guest_ram {
	struct gmm_walker *w;  /* a walker registered by the calling thread */
	uint64_t low_size;     /* RAM at [0, low_size) */
	uint64_t high_size;    /* RAM at [4 GiB, 4 GiB + high_size) */
};

enum image_kind {
	IMAGE_UNKNOWN,
	IMAGE_BZIMAGE,
	IMAGE_PVH,
	IMAGE_TESTIMG,
};

#define BOOT_EBDA_START 0x9fc00ULL         /* reserved from here to 1 MiB */
#define BOOT_HIGH_MEMORY 0x100000ULL       /* 1 MiB: kernels and initrds live above */

/* A segment register as KVM wants it (struct kvm_segment fields). */
struct boot_seg {
	uint64_t base;
	uint32_t limit;
	uint16_t selector;
	uint8_t type, present, dpl, db, s, l, g, avl, unusable;
};

/* Initial state of one vCPU. */
struct boot_cpu {
	uint64_t rip, rsp, rflags;
	uint64_t rax, rbx, rcx, rdx, rsi, rdi;
	uint64_t cr0, cr3, cr4, efer;
	struct boot_seg cs, ds, es, fs, gs, ss, tr, ldt;
	uint64_t gdt_base, idt_base;
	uint16_t gdt_limit, idt_limit;
};

struct boot_config {
	const char *kernel;       /* path */
	const char *initrd;       /* path or NULL */
	const char *cmdline;      /* NULL: empty */
	unsigned nr_vcpus;
	/* virtio-mmio devices etc. may add to the command line later. */
};

struct boot_plan {
	enum image_kind kind;
	struct boot_cpu bsp;          /* vCPU 0 */
	bool all_vcpus_enter;         /* testimg: every vCPU starts at the entry */
	/* testimg only: RSI/RSP differ per vCPU; boot_cpu_state() applies it. */
	uint64_t kernel_bytes, initrd_bytes;
	uint64_t initrd_gpa;
	char summary[256];            /* one line for the log: what was loaded where */
};

#endif
