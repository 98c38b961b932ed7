// SPDX-License-Identifier: GPL-2.0-only
/*
 * boot_testimg.c - the project's test images (images/include/testimg.h):
 * a static ELF64 with a VMMTEST note, entered in 64-bit mode on every vCPU
 * at once.
 *
 * Guest memory written (addresses from testimg.h):
 *   TESTIMG_BOOT_INFO    0x6000   struct testimg_boot_info
 *   TESTIMG_GDT          0x7000   null, 0x08 flat 64-bit code, 0x10 flat data
 *   TESTIMG_PAGE_TABLES  0x10000  PML4, PDPT, one PD per GiB: identity map of
 *                                 [0, max(4 GiB, end of high RAM)) in 2 MiB
 *                                 pages; the 16 pages up to 0x1ffff hold at
 *                                 most 14 PDs, so RAM may end at 14 GiB
 *   TESTIMG_STACKS       0x20000  vCPU i's stack [0x20000 + i * 8 KiB, + 8 KiB),
 *                                 zeroed
 *   p_paddr >= 1 MiB              the PT_LOAD segments, in low RAM (bss zeroed)
 *
 * Entry (every vCPU): long mode, CS 0x08, DS/ES/FS/GS/SS 0x10, RFLAGS 0x2,
 * RIP = e_entry, RDI = 0x6000, RSI = the vCPU index, RSP = its stack top.
 * The command line is not used; an initrd is refused by boot.c.
 */
#include "boot/boot_x86.h"
#include "boot/loaders.h"
#include "testimg.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(struct testimg_boot_info) == 48, "testimg_boot_info");
_Static_assert(TESTIMG_STACKS + TESTIMG_MAX_VCPUS * TESTIMG_STACK_SIZE <= 0xa0000,
	       "test image stacks run into the VGA hole");
_Static_assert(TESTIMG_PAGE_TABLES + 0x10000 <= TESTIMG_STACKS,
	       "test image page tables run into the stacks");

#define TESTIMG_PT_END (TESTIMG_PAGE_TABLES + 0x10000)
#define TESTIMG_GDT_ENTRIES 3

/* Contract (boot_x86.h): load a detected test image (see above). */
int testimg_load(const struct guest_ram *ram, const struct boot_files *f,
		 struct boot_plan *plan, char *err, size_t errlen)
{
	char s1[32], why[320];
	const char *path = f->kernel_path;
	if (f->nr_vcpus > TESTIMG_MAX_VCPUS)
		return boot_fail(-E2BIG, err, errlen,
				 "kernel %s is a test image: %u vCPUs asked for, but test images "
				 "support at most %u (one stack each below 0xa0000)",
				 path, f->nr_vcpus, (unsigned)TESTIMG_MAX_VCPUS);
	struct elf_image img;
	int ret = elf_parse(f->kernel, f->kernel_len, &img, why, sizeof why);
	if (ret < 0)
		return boot_fail(ret, err, errlen, "kernel %s: %s", path, why);
	if (!img.has_testimg_note)
		return boot_fail(-EINVAL, err, errlen, "kernel %s: ELF has no %s note", path,
				 TESTIMG_NOTE_NAME);
	if (img.entry < img.load_lo || img.entry >= img.load_hi)
		return boot_fail(-EINVAL, err, errlen,
				 "kernel %s: the entry point %#llx lies outside its loaded "
				 "segments [%#llx, %#llx)", path, (unsigned long long)img.entry,
				 (unsigned long long)img.load_lo, (unsigned long long)img.load_hi);

	/* Page tables first: a RAM size they cannot map is a clear error
	 * before anything is loaded. */
	uint64_t cover = BOOT_HIGH_RAM_BASE + ram->high_size;
	uint64_t cr3;
	ret = x86_identity_map(ram, TESTIMG_PAGE_TABLES, TESTIMG_PT_END, cover, &cr3, why,
			       sizeof why);
	if (ret < 0)
		return boot_fail(ret, err, errlen, "kernel %s (test image): %s", path, why);

	uint64_t loaded;
	ret = elf_load_segments(ram, &img, TESTIMG_LOAD_BASE, path, &loaded, err, errlen);
	if (ret < 0)
		return ret;

	struct testimg_boot_info bi = {
		.magic = TESTIMG_MAGIC,
		.version = 1,
		.ram_size = ram->low_size + ram->high_size,
		.ram_low_end = ram->low_size,
		.ram_high_start = ram->high_size ? BOOT_HIGH_RAM_BASE : 0,
		.ram_high_size = ram->high_size,
		.nr_vcpus = f->nr_vcpus,
	};
	uint64_t gdt[TESTIMG_GDT_ENTRIES] = {
		[TESTIMG_SEL_CODE64 / 8] = x86_gdt_entry(GDT_CODE64, 0, 0xfffff),
		[TESTIMG_SEL_DATA / 8] = x86_gdt_entry(GDT_DATA, 0, 0xfffff),
	};
	ret = boot_write(ram, TESTIMG_BOOT_INFO, &bi, sizeof bi, "the test image boot info",
			 why, sizeof why);
	if (ret == 0)
		ret = boot_write(ram, TESTIMG_GDT, gdt, sizeof gdt, "the GDT", why, sizeof why);
	if (ret == 0)
		ret = boot_zero(ram, TESTIMG_STACKS, f->nr_vcpus * TESTIMG_STACK_SIZE,
				"the vCPU stacks", why, sizeof why);
	if (ret < 0)
		return boot_fail(ret, err, errlen, "kernel %s: %s", path, why);

	x86_state_long(&plan->bsp, TESTIMG_GDT, TESTIMG_GDT_ENTRIES * 8 - 1,
		       TESTIMG_SEL_CODE64, gdt[TESTIMG_SEL_CODE64 / 8],
		       TESTIMG_SEL_DATA, gdt[TESTIMG_SEL_DATA / 8], cr3);
	plan->bsp.rip = img.entry;
	plan->bsp.rdi = TESTIMG_BOOT_INFO;
	testimg_cpu_state(plan, 0, &plan->bsp);

	plan->kind = IMAGE_TESTIMG;
	plan->all_vcpus_enter = true;
	plan->kernel_bytes = loaded;
	plan->initrd_bytes = 0;
	plan->initrd_gpa = 0;
	snprintf(plan->summary, sizeof plan->summary,
		 "testimg %s: %u segments, %s in [%#llx, %#llx), 64-bit entry %#llx on %u vCPU%s",
		 path, img.nr_load, boot_size_str(loaded, s1, sizeof s1),
		 (unsigned long long)img.load_lo, (unsigned long long)img.load_hi,
		 (unsigned long long)img.entry, f->nr_vcpus, f->nr_vcpus == 1 ? "" : "s");
	return 0;
}

/* Contract (boot_x86.h): vCPU index's state = the BSP's, with RSI = index
 * and RSP = the top of its own stack. */
void testimg_cpu_state(const struct boot_plan *plan, unsigned index, struct boot_cpu *out)
{
	if (out != &plan->bsp)
		*out = plan->bsp;
	out->rsi = index;
	out->rsp = TESTIMG_STACKS + ((uint64_t)index + 1) * TESTIMG_STACK_SIZE;
}
