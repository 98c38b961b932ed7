/*
 * boot.h - turning a kernel image into guest memory contents and initial
 * vCPU state.  No KVM here: the loaders write guest memory through guestmm
 * and describe the registers; vcpu.c loads them with KVM_SET_SREGS/REGS.
 *
 * Images (detected from their bytes, never from the file name):
 *   bzImage      Linux x86 boot protocol >= 2.12, 64-bit entry (XLF_KERNEL_64):
 *                boot_params (zero page) with e820, command line, initrd.
 *   pvh          ELF vmlinux with a XEN_ELFNOTE_PHYS32_ENTRY note: 32-bit
 *                protected-mode entry, EBX = hvm_start_info with its memmap.
 *   testimg      the project's test images (images/include/testimg.h):
 *                64-bit entry on every vCPU, identity-mapped page tables.
 *
 * Guest-physical layout (x86):
 *   [0, 640 KiB)             RAM (e820 RAM)
 *   [640 KiB, 1 MiB)         reserved (EBDA/VGA/BIOS area; MP table at 0x9fc00)
 *   [1 MiB, low_end)         RAM, low_end = min(ram, 3 GiB)
 *   [3 GiB, 4 GiB)           MMIO hole (devices, LAPIC, IOAPIC)
 *   [4 GiB, 4 GiB + rest)    RAM above the hole
 */
#ifndef VMM_BOOT_H
#define VMM_BOOT_H

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

const char *image_kind_name(enum image_kind k);

/* Identify an image from its first bytes (and the whole file for ELF
 * notes).  IMAGE_UNKNOWN with a reason in err for anything else: an ELF
 * without a PVH note, a 32-bit-only bzImage, a truncated header... */
enum image_kind image_detect(const uint8_t *buf, size_t len, char *err, size_t errlen);

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

/* Load cfg->kernel (and initrd, command line) into guest RAM and describe
 * the boot CPU.  Writes the e820 map / hvm_start_info memmap / testimg boot
 * info, the MP table when nr_vcpus > 1 (bzImage and pvh), page tables and
 * GDT where the entry mode needs them.  On failure: -errno, one clear
 * sentence in err (the file, what is wrong with it), and guest RAM may hold
 * partial contents (the caller discards the VM). */
int boot_load(const struct guest_ram *ram, const struct boot_config *cfg,
	      struct boot_plan *plan, char *err, size_t errlen);

/* The state vCPU `index` starts in: the BSP state for index 0; for a
 * testimg every vCPU gets the entry with its own RSI and RSP; for Linux the
 * APs are not started here (false: leave them to INIT/SIPI). */
bool boot_cpu_state(const struct boot_plan *plan, unsigned index, struct boot_cpu *out);

/* The e820 map the VMM gives every guest (for logs and tests). */
struct e820_entry {
	uint64_t addr, size;
	uint32_t type;            /* 1 RAM, 2 reserved */
};
int boot_e820(const struct guest_ram *ram, struct e820_entry *out, int max);

#endif
