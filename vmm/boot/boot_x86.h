/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * boot_x86.h - what the loaders (boot.c, boot_bzimage.c, boot_pvh.c,
 * boot_testimg.c) share and nobody else needs: the fixed low-memory layout
 * of the Linux loaders, x86 descriptors and entry states, identity-mapped
 * page tables, guest-memory writes with error text, initrd placement and a
 * bounds-checked ELF64 reader.  Everything here is pure: guest memory is
 * written through guestmm, registers are only described.
 *
 * Low-memory layout for bzImage and PVH boots (all below 64 KiB, inside
 * the e820 RAM [0, 0x9fc00), and disjoint from the testimg layout of
 * testimg.h: 0x6000 boot info, 0x7000 GDT, 0x10000.. page tables/stacks):
 *
 *   0x00000-0x00fff  untouched (real-mode IVT / BDA: zero)
 *   0x01000          GDT: null, null, 0x10 code, 0x18 data
 *   0x02000          PVH struct hvm_start_info; 0x2040 modlist; 0x2080 memmap
 *   0x03000          bzImage struct boot_params (the zero page, 4 KiB)
 *   0x04000-0x05fff  boot stack (RSP = 0x6000 at entry)
 *   0x08000          bzImage page tables: PML4, 0x9000 PDPT, 0xa000.. PDs
 *                    (identity map of [0, 4 GiB) with 2 MiB pages)
 *   0x0e000-0x0ffff  command line (at most 8 KiB with its NUL)
 *   0x9fc00          MP table (mptable.h), in the e820-reserved area
 *   0x100000 and up  the kernel, the initrd (top of low RAM)
 */
#ifndef VMM_BOOT_X86_H
#define VMM_BOOT_X86_H

#include "boot/boot_types.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the loaders write guest structures as host integers: little-endian hosts only"
#endif

#define KiB (1ULL << 10)
#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

/* ---- fixed layout (see the table above) ------------------------------ */

#define BOOT_GDT_GPA 0x1000ULL
#define BOOT_GDT_ENTRIES 4
#define BOOT_START_INFO_GPA 0x2000ULL
#define BOOT_MODLIST_GPA 0x2040ULL
#define BOOT_MEMMAP_GPA 0x2080ULL
#define BOOT_MEMMAP_MAX 32                 /* entries that fit before 0x3000 */
#define BOOT_ZERO_PAGE_GPA 0x3000ULL
#define BOOT_STACK_TOP 0x6000ULL
#define BOOT_PAGE_TABLES_GPA 0x8000ULL
#define BOOT_PAGE_TABLES_END 0xe000ULL     /* PML4 + PDPT + 4 PDs */
#define BOOT_CMDLINE_GPA 0xe000ULL
#define BOOT_CMDLINE_MAX 0x2000ULL         /* bytes, NUL included */

#define BOOT_SEL_CODE 0x10                 /* Linux __BOOT_CS */
#define BOOT_SEL_DATA 0x18                 /* Linux __BOOT_DS */


/* ---- control registers ---------------------------------------------- */

#define X86_CR0_PE (1ULL << 0)
#define X86_CR0_MP (1ULL << 1)
#define X86_CR0_ET (1ULL << 4)
#define X86_CR0_NE (1ULL << 5)
#define X86_CR0_PG (1ULL << 31)
#define X86_CR4_PAE (1ULL << 5)
#define X86_CR4_OSFXSR (1ULL << 9)
#define X86_CR4_OSXMMEXCPT (1ULL << 10)
#define X86_EFER_LME (1ULL << 8)
#define X86_EFER_LMA (1ULL << 10)
#define X86_RFLAGS_RESERVED 0x2ULL         /* bit 1 always set; IF clear */

/* ---- errors ---------------------------------------------------------- */

/* snprintf into err (err may be NULL or errlen 0).  Returns ret, so that
 * `return boot_fail(-EINVAL, err, errlen, "...")` reads as one statement. */
int boot_fail(int ret, char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* "512 bytes", "1.0 KiB", "7.9 MiB", "3.0 GiB" into buf; returns buf. */
const char *boot_size_str(uint64_t bytes, char *buf, size_t len);

/* ---- guest RAM --------------------------------------------------------- */

/* True if [gpa, gpa + len) lies inside one e820 RAM range of ram. */
bool boot_ram_contains(const struct guest_ram *ram, uint64_t gpa, uint64_t len);

/* Write / zero guest memory; on failure -EFAULT and "cannot write <what>
 * to guest memory [a, b): <reason>" in err. */
int boot_write(const struct guest_ram *ram, uint64_t gpa, const void *buf, size_t len,
	       const char *what, char *err, size_t errlen);
int boot_zero(const struct guest_ram *ram, uint64_t gpa, uint64_t len,
	      const char *what, char *err, size_t errlen);

/* Choose the initrd's GPA: page-aligned, in low RAM at or above 1 MiB,
 * ending at or below min(limit, low RAM end, 3 GiB), outside [avoid_lo,
 * avoid_hi) (the kernel).  As high as possible.  0 or -ENOSPC with the
 * reason in err (the caller adds the file name). */
int boot_place_initrd(const struct guest_ram *ram, uint64_t size, uint64_t limit,
		      uint64_t avoid_lo, uint64_t avoid_hi, uint64_t *gpa,
		      char *err, size_t errlen);

/* ---- descriptors, page tables, entry states ---------------------------- */

/* GDT descriptor flags (access byte | flags nibble << 12). */
#define GDT_CODE64 0xa09bu   /* L=1, present, DPL 0, code exec/read, accessed */
#define GDT_CODE32 0xc09bu   /* D=1, G=1, code exec/read, accessed */
#define GDT_DATA 0xc093u     /* D=1, G=1, data read/write, accessed */

/* An 8-byte GDT descriptor. */
uint64_t x86_gdt_entry(uint16_t flags, uint32_t base, uint32_t limit);
/* The segment register KVM loads for descriptor `entry` at `selector`
 * (the same fields, decoded, so memory and registers agree). */
void x86_seg_from_gdt(uint64_t entry, uint16_t selector, struct boot_seg *out);

/* Write identity-mapped page tables at base: PML4, one PDPT, then one PD
 * per GiB of [0, cover) (cover rounded up to 1 GiB, at most 512 GiB), all
 * 2 MiB pages, present + writable.  The tables must end at or below
 * base_end: -E2BIG otherwise, with the reason in err.  *cr3 = base. */
int x86_identity_map(const struct guest_ram *ram, uint64_t base, uint64_t base_end,
		     uint64_t cover, uint64_t *cr3, char *err, size_t errlen);

/* Fill *c with a 64-bit long-mode entry: paging on (CR3 = cr3, PAE, LME,
 * LMA), CS = code_sel with descriptor `code`, DS/ES/FS/GS/SS = data_sel
 * with descriptor `data`, GDTR = (gdt, gdt_limit), interrupts off.  rip,
 * rsp and the argument registers are left zero. */
void x86_state_long(struct boot_cpu *c, uint64_t gdt, uint16_t gdt_limit,
		    uint16_t code_sel, uint64_t code, uint16_t data_sel, uint64_t data,
		    uint64_t cr3);
/* The same for 32-bit protected mode with paging off (PVH). */
void x86_state_prot32(struct boot_cpu *c, uint64_t gdt, uint16_t gdt_limit,
		      uint16_t code_sel, uint64_t code, uint16_t data_sel, uint64_t data);

/* ---- ELF64 ------------------------------------------------------------- */

#define XEN_ELFNOTE_PHYS32_ENTRY 18

struct elf_image {
	const uint8_t *buf;
	size_t len;
	uint64_t entry;           /* e_entry */
	uint64_t phoff;           /* validated: phnum entries lie in the file */
	unsigned phnum;
	bool has_testimg_note;    /* TESTIMG_NOTE_NAME / TESTIMG_NOTE_TYPE */
	bool has_pvh_note;        /* "Xen" / XEN_ELFNOTE_PHYS32_ENTRY */
	uint64_t pvh_entry;       /* its value */
	uint64_t load_lo, load_hi;/* span of the PT_LOAD segments (memsz) */
	unsigned nr_load;
};

/* One program header, copied out of the file (no alignment assumptions). */
struct elf_phdr {
	uint32_t type, flags;
	uint64_t offset, vaddr, paddr, filesz, memsz, align;
};

/* Validate an ELF64 x86-64 executable and everything the loaders will read
 * from it (header, program headers, PT_LOAD file ranges, notes), all
 * bounds-checked against len.  0, or -EINVAL with one sentence in err. */
int elf_parse(const uint8_t *buf, size_t len, struct elf_image *img, char *err, size_t errlen);
/* Program header i (< img->phnum) of a parsed image. */
void elf_phdr(const struct elf_image *img, unsigned i, struct elf_phdr *ph);

/* Load every PT_LOAD of a parsed image at p_paddr: file bytes, then zeros
 * up to p_memsz.  Each segment must lie inside [min_gpa, ram->low_size)
 * and in e820 RAM: -ENOSPC otherwise.  Checks all segments before writing
 * any.  *loaded = bytes copied from the file. */
int elf_load_segments(const struct guest_ram *ram, const struct elf_image *img,
		      uint64_t min_gpa, const char *path, uint64_t *loaded,
		      char *err, size_t errlen);

/* ---- what the Linux loaders write ------------------------------------ */

/* Write the command line at BOOT_CMDLINE_GPA (max: longest accepted
 * strlen, e.g. the bzImage's cmdline_size); -E2BIG if it is longer. */
int boot_write_cmdline(const struct guest_ram *ram, const char *cmdline, uint64_t max,
		       const char *limit_name, char *err, size_t errlen);

/* The Linux GDT at BOOT_GDT_GPA: null, null, `code` at 0x10, data at 0x18. */
int boot_write_linux_gdt(const struct guest_ram *ram, uint16_t code_flags,
			 char *err, size_t errlen);

#endif
