// SPDX-License-Identifier: GPL-2.0-only
/*
 * boot_pvh.c - an uncompressed ELF64 vmlinux through the PVH boot ABI
 * (xen/include/public/arch-x86/hvm/start_info.h; Linux arch/x86/platform/pvh).
 *
 * The image says it speaks PVH with a "Xen" note of type
 * XEN_ELFNOTE_PHYS32_ENTRY (18) in a PT_NOTE segment: its value is the
 * 32-bit physical entry point.  PT_LOAD segments go to their p_paddr (in low
 * RAM above 1 MiB; bss zeroed).  Entry state: 32-bit protected mode, paging
 * off, CS = 0x10 flat 4 GiB code (type 0xb, D=1), DS/ES/SS = 0x18 flat data,
 * interrupts off, EBX = the hvm_start_info's GPA, EIP = the note's entry.
 *
 * Guest memory written (layout in boot_x86.h):
 *   0x1000   GDT: 0x10 flat 32-bit code, 0x18 flat data
 *   0x2000   struct hvm_start_info (magic, version 1, cmdline, modules, memmap)
 *   0x2040   struct hvm_modlist_entry: the initrd, if any
 *   0x2080   struct hvm_memmap_table_entry[]: the e820 map of boot.c
 *   0xe000   the command line
 *   p_paddr  the segments; the initrd at the top of low RAM (page-aligned,
 *            below 3 GiB, clear of the segments)
 * No ACPI tables: rsdp_paddr = 0 (Linux then finds the MP table, if any).
 */
#include "boot/boot_x86.h"
#include "boot/e820.h"
#include "boot/loaders.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define XEN_HVM_START_MAGIC_VALUE 0x336ec578u

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	/* version 1 */
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info");
_Static_assert(offsetof(struct hvm_start_info, modlist_paddr) == 16, "modlist_paddr");
_Static_assert(offsetof(struct hvm_start_info, cmdline_paddr) == 24, "cmdline_paddr");
_Static_assert(offsetof(struct hvm_start_info, rsdp_paddr) == 32, "rsdp_paddr");
_Static_assert(offsetof(struct hvm_start_info, memmap_paddr) == 40, "memmap_paddr");
_Static_assert(offsetof(struct hvm_start_info, memmap_entries) == 48, "memmap_entries");

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "hvm_modlist_entry");

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;            /* XEN_HVM_MEMMAP_TYPE_*: the e820 numbers */
	uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "hvm_memmap_table_entry");

_Static_assert(BOOT_START_INFO_GPA + sizeof(struct hvm_start_info) <= BOOT_MODLIST_GPA,
	       "start_info overlaps the modlist");
_Static_assert(BOOT_MODLIST_GPA + sizeof(struct hvm_modlist_entry) <= BOOT_MEMMAP_GPA,
	       "modlist overlaps the memmap");
_Static_assert(BOOT_MEMMAP_GPA + BOOT_MEMMAP_MAX * sizeof(struct hvm_memmap_table_entry) <=
	       BOOT_ZERO_PAGE_GPA, "memmap overlaps the zero page");

/* Contract (boot_x86.h): load a detected PVH vmlinux (see above). */
int pvh_load(const struct guest_ram *ram, const struct boot_files *f,
	     struct boot_plan *plan, char *err, size_t errlen)
{
	char s1[32], why[320];
	const char *path = f->kernel_path;
	struct elf_image img;
	int ret = elf_parse(f->kernel, f->kernel_len, &img, why, sizeof why);
	if (ret < 0)
		return boot_fail(ret, err, errlen, "kernel %s: %s", path, why);
	if (!img.has_pvh_note)
		return boot_fail(-EINVAL, err, errlen,
				 "kernel %s: ELF has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)",
				 path);
	if (img.pvh_entry < img.load_lo || img.pvh_entry >= img.load_hi ||
	    img.pvh_entry >= BOOT_LOW_RAM_MAX)
		return boot_fail(-EINVAL, err, errlen,
				 "kernel %s: the PVH entry %#llx lies outside its loaded "
				 "segments [%#llx, %#llx)", path,
				 (unsigned long long)img.pvh_entry, (unsigned long long)img.load_lo,
				 (unsigned long long)img.load_hi);

	uint64_t loaded;
	ret = elf_load_segments(ram, &img, BOOT_HIGH_MEMORY, path, &loaded, err, errlen);
	if (ret < 0)
		return ret;

	ret = boot_write_cmdline(ram, f->cmdline, BOOT_CMDLINE_MAX - 1,
				 "the VMM's command-line area", why, sizeof why);
	if (ret < 0)
		return boot_fail(ret, err, errlen, "kernel %s: %s", path, why);

	struct hvm_start_info si = {
		.magic = XEN_HVM_START_MAGIC_VALUE,
		.version = 1,
		.cmdline_paddr = BOOT_CMDLINE_GPA,
		.rsdp_paddr = 0,
		.memmap_paddr = BOOT_MEMMAP_GPA,
	};

	uint64_t initrd_gpa = 0;
	if (f->initrd) {
		ret = boot_place_initrd(ram, f->initrd_len, BOOT_LOW_RAM_MAX, img.load_lo,
					img.load_hi, &initrd_gpa, why, sizeof why);
		if (ret == 0)
			ret = boot_write(ram, initrd_gpa, f->initrd, f->initrd_len, "the initrd",
					 why, sizeof why);
		if (ret < 0)
			return boot_fail(ret, err, errlen, "initrd %s: %s", f->initrd_path, why);
		struct hvm_modlist_entry mod = { .paddr = initrd_gpa, .size = f->initrd_len };
		ret = boot_write(ram, BOOT_MODLIST_GPA, &mod, sizeof mod, "the PVH module list",
				 why, sizeof why);
		if (ret < 0)
			return boot_fail(ret, err, errlen, "kernel %s: %s", path, why);
		si.nr_modules = 1;
		si.modlist_paddr = BOOT_MODLIST_GPA;
	}

	struct e820_entry map[BOOT_MEMMAP_MAX];
	struct hvm_memmap_table_entry mm[BOOT_MEMMAP_MAX];
	int n = boot_e820(ram, map, BOOT_MEMMAP_MAX);
	if (n < 0)
		return boot_fail(n, err, errlen, "kernel %s: the memory map does not fit", path);
	for (int i = 0; i < n; i++)
		mm[i] = (struct hvm_memmap_table_entry){ map[i].addr, map[i].size, map[i].type, 0 };
	si.memmap_entries = (uint32_t)n;
	ret = boot_write(ram, BOOT_MEMMAP_GPA, mm, (size_t)n * sizeof mm[0], "the PVH memory map",
			 why, sizeof why);
	if (ret == 0)
		ret = boot_write(ram, BOOT_START_INFO_GPA, &si, sizeof si, "the hvm_start_info",
				 why, sizeof why);
	if (ret == 0)
		ret = boot_write_linux_gdt(ram, GDT_CODE32, why, sizeof why);
	if (ret < 0)
		return boot_fail(ret, err, errlen, "kernel %s: %s", path, why);

	x86_state_prot32(&plan->bsp, BOOT_GDT_GPA, BOOT_GDT_ENTRIES * 8 - 1,
			 BOOT_SEL_CODE, x86_gdt_entry(GDT_CODE32, 0, 0xfffff),
			 BOOT_SEL_DATA, x86_gdt_entry(GDT_DATA, 0, 0xfffff));
	plan->bsp.rip = img.pvh_entry;
	plan->bsp.rbx = BOOT_START_INFO_GPA;
	plan->bsp.rsp = BOOT_STACK_TOP;

	plan->kind = IMAGE_PVH;
	plan->all_vcpus_enter = false;
	plan->kernel_bytes = loaded;
	plan->initrd_bytes = f->initrd_len;
	plan->initrd_gpa = initrd_gpa;
	int k = snprintf(plan->summary, sizeof plan->summary,
			 "pvh %s: %u segments, %s in [%#llx, %#llx), 32-bit entry %#llx",
			 path, img.nr_load, boot_size_str(loaded, s1, sizeof s1),
			 (unsigned long long)img.load_lo, (unsigned long long)img.load_hi,
			 (unsigned long long)img.pvh_entry);
	if (f->initrd && k > 0 && (size_t)k < sizeof plan->summary)
		snprintf(plan->summary + k, sizeof plan->summary - (size_t)k,
			 ", initrd %s at %#llx", boot_size_str(f->initrd_len, s1, sizeof s1),
			 (unsigned long long)initrd_gpa);
	return 0;
}
