// SPDX-License-Identifier: GPL-2.0-only
/*
 * boot_bzimage.c - Linux bzImage through the x86 boot protocol's 64-bit
 * entry (Documentation/arch/x86/boot.rst, protocol >= 2.12, XLF_KERNEL_64).
 *
 * We skip the real-mode setup code entirely: the protected-mode kernel
 * (the file after (setup_sects + 1) * 512 bytes, syssize * 16 bytes long)
 * goes to pref_address when the kernel is relocatable and pref_address is
 * kernel_alignment-aligned, else to 1 MiB.  The kernel then runs (and
 * decompresses itself) at runtime_start = align_up(max(load, pref_address),
 * kernel_alignment) for a relocatable kernel, pref_address otherwise, and
 * needs [runtime_start, runtime_start + init_size) as RAM: both ranges are
 * checked against the e820 map.
 *
 * Guest memory written (layout in boot_x86.h):
 *   0x1000   GDT: 0x10 flat 64-bit code (__BOOT_CS), 0x18 flat data (__BOOT_DS)
 *   0x3000   struct boot_params: the file's setup header, type_of_loader
 *            0xff, code32_start, cmd_line_ptr, ramdisk_image/size, e820
 *   0x8000   identity page tables for [0, 4 GiB), 2 MiB pages
 *   0xe000   the command line (strlen <= cmdline_size)
 *   load     the protected-mode kernel
 *   top of low RAM (below initrd_addr_max and 3 GiB, page-aligned, clear of
 *            the kernel's init_size region): the initrd
 *
 * Entry: 64-bit mode, paging on, CS = 0x10, DS/ES/SS = 0x18, interrupts
 * off, RSI = 0x3000 (boot_params), RIP = load + 0x200.
 */
#include "boot/boot_x86.h"
#include "boot/e820.h"
#include "boot/loaders.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define HDRS_MAGIC 0x53726448u           /* "HdrS" */
#define HDR_OFFSET 0x1f1
#define MIN_PROTOCOL 0x020c              /* 2.12: xloadflags, 64-bit entry */
#define XLF_KERNEL_64 (1u << 0)
#define LOADED_HIGH (1u << 0)
#define TYPE_OF_LOADER_UNDEFINED 0xff
#define E820_MAX_ZEROPAGE 128
#define ENTRY64_OFFSET 0x200

/* struct setup_header as it sits in the file at 0x1f1 and in boot_params. */
struct setup_header {
	uint8_t setup_sects;
	uint16_t root_flags;
	uint32_t syssize;
	uint16_t ram_size;
	uint16_t vid_mode;
	uint16_t root_dev;
	uint16_t boot_flag;
	uint16_t jump;
	uint32_t header;
	uint16_t version;
	uint32_t realmode_swtch;
	uint16_t start_sys_seg;
	uint16_t kernel_version;
	uint8_t type_of_loader;
	uint8_t loadflags;
	uint16_t setup_move_size;
	uint32_t code32_start;
	uint32_t ramdisk_image;
	uint32_t ramdisk_size;
	uint32_t bootsect_kludge;
	uint16_t heap_end_ptr;
	uint8_t ext_loader_ver;
	uint8_t ext_loader_type;
	uint32_t cmd_line_ptr;
	uint32_t initrd_addr_max;
	uint32_t kernel_alignment;
	uint8_t relocatable_kernel;
	uint8_t min_alignment;
	uint16_t xloadflags;
	uint32_t cmdline_size;
	uint32_t hardware_subarch;
	uint64_t hardware_subarch_data;
	uint32_t payload_offset;
	uint32_t payload_length;
	uint64_t setup_data;
	uint64_t pref_address;
	uint32_t init_size;
	uint32_t handover_offset;
	uint32_t kernel_info_offset;
} __attribute__((packed));

#define HDR_AT(field, off) \
	_Static_assert(HDR_OFFSET + offsetof(struct setup_header, field) == (off), #field)
HDR_AT(setup_sects, 0x1f1);
HDR_AT(syssize, 0x1f4);
HDR_AT(boot_flag, 0x1fe);
HDR_AT(jump, 0x200);
HDR_AT(header, 0x202);
HDR_AT(version, 0x206);
HDR_AT(type_of_loader, 0x210);
HDR_AT(loadflags, 0x211);
HDR_AT(code32_start, 0x214);
HDR_AT(ramdisk_image, 0x218);
HDR_AT(ramdisk_size, 0x21c);
HDR_AT(cmd_line_ptr, 0x228);
HDR_AT(initrd_addr_max, 0x22c);
HDR_AT(kernel_alignment, 0x230);
HDR_AT(relocatable_kernel, 0x234);
HDR_AT(xloadflags, 0x236);
HDR_AT(cmdline_size, 0x238);
HDR_AT(pref_address, 0x258);
HDR_AT(init_size, 0x260);
HDR_AT(kernel_info_offset, 0x268);
_Static_assert(sizeof(struct setup_header) == 0x26c - HDR_OFFSET, "setup_header size");

struct boot_e820 {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));
_Static_assert(sizeof(struct boot_e820) == 20, "boot_e820_entry");

/* struct boot_params, the zero page (arch/x86/include/uapi/asm/bootparam.h). */
struct boot_params {
	uint8_t screen_info[0x40];               /* 0x000 */
	uint8_t apm_bios_info[0x14];             /* 0x040 */
	uint8_t _pad2[4];                        /* 0x054 */
	uint64_t tboot_addr;                     /* 0x058 */
	uint8_t ist_info[0x10];                  /* 0x060 */
	uint64_t acpi_rsdp_addr;                 /* 0x070 */
	uint8_t _pad3[8];                        /* 0x078 */
	uint8_t hd0_info[16];                    /* 0x080 */
	uint8_t hd1_info[16];                    /* 0x090 */
	uint8_t sys_desc_table[16];              /* 0x0a0 */
	uint8_t olpc_ofw_header[16];             /* 0x0b0 */
	uint32_t ext_ramdisk_image;              /* 0x0c0 */
	uint32_t ext_ramdisk_size;               /* 0x0c4 */
	uint32_t ext_cmd_line_ptr;               /* 0x0c8 */
	uint8_t _pad4[112];                      /* 0x0cc */
	uint32_t cc_blob_address;                /* 0x13c */
	uint8_t edid_info[0x80];                 /* 0x140 */
	uint8_t efi_info[0x20];                  /* 0x1c0 */
	uint32_t alt_mem_k;                      /* 0x1e0 */
	uint32_t scratch;                        /* 0x1e4 */
	uint8_t e820_entries;                    /* 0x1e8 */
	uint8_t eddbuf_entries;                  /* 0x1e9 */
	uint8_t edd_mbr_sig_buf_entries;         /* 0x1ea */
	uint8_t kbd_status;                      /* 0x1eb */
	uint8_t secure_boot;                     /* 0x1ec */
	uint8_t _pad5[2];                        /* 0x1ed */
	uint8_t sentinel;                        /* 0x1ef */
	uint8_t _pad6[1];                        /* 0x1f0 */
	struct setup_header hdr;                 /* 0x1f1 */
	uint8_t _pad7[0x290 - 0x26c];            /* 0x26c */
	uint32_t edd_mbr_sig_buffer[16];         /* 0x290 */
	struct boot_e820 e820_table[E820_MAX_ZEROPAGE]; /* 0x2d0 */
	uint8_t _pad8[48];                       /* 0xcd0 */
	uint8_t eddbuf[6 * 82];                  /* 0xd00 */
	uint8_t _pad9[276];                      /* 0xeec */
} __attribute__((packed));

_Static_assert(sizeof(struct boot_params) == 4096, "boot_params is one page");
_Static_assert(offsetof(struct boot_params, acpi_rsdp_addr) == 0x070, "acpi_rsdp_addr");
_Static_assert(offsetof(struct boot_params, ext_ramdisk_image) == 0x0c0, "ext_ramdisk_image");
_Static_assert(offsetof(struct boot_params, cc_blob_address) == 0x13c, "cc_blob_address");
_Static_assert(offsetof(struct boot_params, e820_entries) == 0x1e8, "e820_entries");
_Static_assert(offsetof(struct boot_params, sentinel) == 0x1ef, "sentinel");
_Static_assert(offsetof(struct boot_params, hdr) == HDR_OFFSET, "hdr");
_Static_assert(offsetof(struct boot_params, edd_mbr_sig_buffer) == 0x290, "edd_mbr_sig_buffer");
_Static_assert(offsetof(struct boot_params, e820_table) == 0x2d0, "e820_table");
_Static_assert(offsetof(struct boot_params, eddbuf) == 0xd00, "eddbuf");

/* The header fields, read out of the file (len >= 0x26c checked). */
static void read_hdr(const uint8_t *buf, struct setup_header *h)
{
	memcpy(h, buf + HDR_OFFSET, sizeof *h);
}

static uint64_t setup_bytes(const struct setup_header *h)
{
	/* setup_sects == 0 means 4 (boot.rst). */
	return ((uint64_t)(h->setup_sects ? h->setup_sects : 4) + 1) * 512;
}

/* Contract (boot_x86.h): 1 = usable bzImage, 0 = no HdrS, -EINVAL = a
 * bzImage we cannot boot; err says why. */
int bzimage_check(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	char s1[32], s2[32];
	if (len < 0x206)
		return boot_fail(0, err, errlen,
				 "not a bzImage: %zu bytes is too short for the boot header "
				 "(no HdrS signature at 0x202)", len);
	uint32_t magic;
	memcpy(&magic, buf + 0x202, 4);
	if (magic != HDRS_MAGIC)
		return boot_fail(0, err, errlen, "not a bzImage: no HdrS signature at 0x202");
	if (len < 0x26c)
		return boot_fail(-EINVAL, err, errlen,
				 "truncated bzImage: %zu bytes, shorter than its setup header "
				 "(0x26c bytes)", len);
	struct setup_header h;
	read_hdr(buf, &h);
	if (h.version < MIN_PROTOCOL)
		return boot_fail(-EINVAL, err, errlen,
				 "bzImage protocol %u.%02u is too old (need 2.12, 64-bit entry)",
				 h.version >> 8, h.version & 0xff);
	if (!(h.xloadflags & XLF_KERNEL_64))
		return boot_fail(-EINVAL, err, errlen,
				 "bzImage has no 64-bit entry (XLF_KERNEL_64 clear in xloadflags "
				 "%#x): a 32-bit-only kernel", h.xloadflags);
	uint64_t setup = setup_bytes(&h);
	if (setup > len)
		return boot_fail(-EINVAL, err, errlen,
				 "truncated bzImage: header says %s of real-mode setup code, "
				 "file has %s", boot_size_str(setup, s1, sizeof s1),
				 boot_size_str(len, s2, sizeof s2));
	uint64_t pm = (uint64_t)h.syssize * 16;
	if (!pm)
		return boot_fail(-EINVAL, err, errlen,
				 "corrupt bzImage: syssize is 0 (no protected-mode code)");
	if (pm > len - setup)
		return boot_fail(-EINVAL, err, errlen,
				 "truncated bzImage: header says %s of protected-mode code, "
				 "file has %s", boot_size_str(pm, s1, sizeof s1),
				 boot_size_str(len - setup, s2, sizeof s2));
	if (h.relocatable_kernel &&
	    (!h.kernel_alignment || (h.kernel_alignment & (h.kernel_alignment - 1))))
		return boot_fail(-EINVAL, err, errlen,
				 "corrupt bzImage: kernel_alignment %#x is not a power of two",
				 h.kernel_alignment);
	return 1;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Contract (boot_x86.h): load a checked bzImage (see the top of the file). */
int bzimage_load(const struct guest_ram *ram, const struct boot_files *f,
		 struct boot_plan *plan, char *err, size_t errlen)
{
	char s1[32], s2[32], why[320];
	const char *path = f->kernel_path;
	int ret = bzimage_check(f->kernel, f->kernel_len, why, sizeof why);
	if (ret != 1)
		return boot_fail(-EINVAL, err, errlen, "kernel %s: %s", path, why);
	struct setup_header h;
	read_hdr(f->kernel, &h);
	uint64_t setup = setup_bytes(&h);
	uint64_t pm = (uint64_t)h.syssize * 16;
	uint64_t pref = h.pref_address;
	uint64_t kalign = h.relocatable_kernel ? h.kernel_alignment : 1;

	/* Where the code goes, and where the kernel will run. */
	uint64_t load = BOOT_HIGH_MEMORY;
	if (h.relocatable_kernel && pref >= BOOT_HIGH_MEMORY && !(pref & (kalign - 1)))
		load = pref;
	uint64_t run;
	if (h.relocatable_kernel)
		run = align_up(load > pref ? load : pref, kalign);
	else
		run = pref >= BOOT_HIGH_MEMORY ? pref : load;
	uint64_t init = h.init_size > pm ? h.init_size : pm;
	if (!boot_ram_contains(ram, load, pm) || !boot_ram_contains(ram, run, init) ||
	    run + init > ram->low_size)
		return boot_fail(-ENOSPC, err, errlen,
				 "kernel %s needs RAM [%#llx, %#llx) (init_size %s at its "
				 "runtime address), but guest low RAM ends at %#llx (%s)",
				 path, (unsigned long long)run, (unsigned long long)(run + init),
				 boot_size_str(init, s1, sizeof s1),
				 (unsigned long long)ram->low_size,
				 boot_size_str(ram->low_size, s2, sizeof s2));

	/* Command line. */
	ret = boot_write_cmdline(ram, f->cmdline, h.cmdline_size, "its cmdline_size", why,
				 sizeof why);
	if (ret < 0)
		return boot_fail(ret, err, errlen, "kernel %s: %s", path, why);

	/* The protected-mode kernel. */
	ret = boot_write(ram, load, f->kernel + setup, pm, "the kernel", why, sizeof why);
	if (ret < 0)
		return boot_fail(ret, err, errlen, "kernel %s: %s", path, why);

	/* The initrd: as high as allowed, clear of everything the kernel uses. */
	uint64_t initrd_gpa = 0;
	if (f->initrd) {
		/* initrd_addr_max is the last byte's address; 0 means the
		 * historical 0x37ffffff. */
		uint64_t limit = (uint64_t)(h.initrd_addr_max ? h.initrd_addr_max : 0x37ffffff) + 1;
		uint64_t lo = load < run ? load : run;
		uint64_t hi = load + pm > run + init ? load + pm : run + init;
		ret = boot_place_initrd(ram, f->initrd_len, limit, lo, hi, &initrd_gpa, why,
					sizeof why);
		if (ret < 0)
			return boot_fail(ret, err, errlen, "initrd %s: %s", f->initrd_path, why);
		ret = boot_write(ram, initrd_gpa, f->initrd, f->initrd_len, "the initrd", why,
				 sizeof why);
		if (ret < 0)
			return boot_fail(ret, err, errlen, "initrd %s: %s", f->initrd_path, why);
	}

	/* The zero page: the file's setup header (0x1f1 up to 0x202 + the
	 * byte at 0x201, boot.rst), then what the loader fills in. */
	struct boot_params bp;
	memset(&bp, 0, sizeof bp);
	uint64_t hdr_end = 0x202 + (uint64_t)f->kernel[0x201];
	if (hdr_end > offsetof(struct boot_params, edd_mbr_sig_buffer))
		hdr_end = offsetof(struct boot_params, edd_mbr_sig_buffer);
	if (hdr_end > setup)
		hdr_end = setup;
	memcpy((uint8_t *)&bp + HDR_OFFSET, f->kernel + HDR_OFFSET, hdr_end - HDR_OFFSET);
	bp.hdr.type_of_loader = TYPE_OF_LOADER_UNDEFINED;
	bp.hdr.loadflags |= LOADED_HIGH;
	bp.hdr.code32_start = (uint32_t)load;
	bp.hdr.cmd_line_ptr = (uint32_t)BOOT_CMDLINE_GPA;
	bp.ext_cmd_line_ptr = 0;
	bp.hdr.ramdisk_image = (uint32_t)initrd_gpa;
	bp.hdr.ramdisk_size = (uint32_t)f->initrd_len;
	bp.hdr.setup_data = 0;
	bp.hdr.hardware_subarch = 0;       /* a normal PC */
	struct e820_entry map[E820_MAX_ZEROPAGE];
	int n = boot_e820(ram, map, E820_MAX_ZEROPAGE);
	if (n < 0)
		return boot_fail(n, err, errlen, "kernel %s: the e820 map does not fit", path);
	for (int i = 0; i < n; i++)
		bp.e820_table[i] = (struct boot_e820){ map[i].addr, map[i].size, map[i].type };
	bp.e820_entries = (uint8_t)n;
	ret = boot_write(ram, BOOT_ZERO_PAGE_GPA, &bp, sizeof bp, "the zero page", why,
			 sizeof why);
	if (ret < 0)
		return boot_fail(ret, err, errlen, "kernel %s: %s", path, why);

	/* GDT, page tables, the 64-bit entry state. */
	uint64_t cr3;
	ret = boot_write_linux_gdt(ram, GDT_CODE64, why, sizeof why);
	if (ret == 0)
		ret = x86_identity_map(ram, BOOT_PAGE_TABLES_GPA, BOOT_PAGE_TABLES_END,
				       BOOT_HIGH_RAM_BASE, &cr3, why, sizeof why);
	if (ret < 0)
		return boot_fail(ret, err, errlen, "kernel %s: %s", path, why);
	x86_state_long(&plan->bsp, BOOT_GDT_GPA, BOOT_GDT_ENTRIES * 8 - 1,
		       BOOT_SEL_CODE, x86_gdt_entry(GDT_CODE64, 0, 0xfffff),
		       BOOT_SEL_DATA, x86_gdt_entry(GDT_DATA, 0, 0xfffff), cr3);
	plan->bsp.rip = load + ENTRY64_OFFSET;
	plan->bsp.rsi = BOOT_ZERO_PAGE_GPA;
	plan->bsp.rsp = BOOT_STACK_TOP;

	plan->kind = IMAGE_BZIMAGE;
	plan->all_vcpus_enter = false;
	plan->kernel_bytes = pm;
	plan->initrd_bytes = f->initrd_len;
	plan->initrd_gpa = initrd_gpa;
	int k = snprintf(plan->summary, sizeof plan->summary,
			 "bzImage %s: boot protocol %u.%02u, %s at %#llx (runs at %#llx, "
			 "init_size %s), entry %#llx",
			 path, h.version >> 8, h.version & 0xff, boot_size_str(pm, s1, sizeof s1),
			 (unsigned long long)load, (unsigned long long)run,
			 boot_size_str(init, s2, sizeof s2),
			 (unsigned long long)plan->bsp.rip);
	if (f->initrd && k > 0 && (size_t)k < sizeof plan->summary)
		snprintf(plan->summary + k, sizeof plan->summary - (size_t)k,
			 ", initrd %s at %#llx", boot_size_str(f->initrd_len, s1, sizeof s1),
			 (unsigned long long)initrd_gpa);
	return 0;
}
