// SPDX-License-Identifier: GPL-2.0-only
/*
 * test_boot.c - the boot loaders without KVM: images are loaded into a
 * guestmm VM (anonymous RAM at 0) through a walker of the test thread, and
 * guest memory and the described vCPU state are checked.
 *
 *   debian    Debian's real kernel: $VMM_DEBIAN_KERNEL_DIR/{bzImage,vmlinux}
 *             (scripts/debian-kernel), skipped LOUDLY when absent
 *   bzimage   a synthetic bzImage (header + pattern), every loader output
 *   pvh       a synthetic ELF with a Xen PHYS32_ENTRY note
 *   testimg   a tiny ELF with the VMMTEST note, built here
 *   bad       broken files: each fails with a message naming the problem
 *   e820, mptable
 */
#include <criterion/criterion.h>

#include "boot/boot.h"
#include "boot/mptable.h"
#include "testimg.h"

#include <guestmm/guestmm.h>

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KiB (1ULL << 10)
#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

/* ---- a guest and temporary files --------------------------------------- */

static struct gmm_vm *vm;
static struct gmm_walker *walker;
static struct guest_ram ram;
static char tmpdir[64];
static char *tmpfiles[32];
static int ntmp;

static void make_ram(uint64_t low)
{
	struct gmm_vm_config c;
	gmm_vm_config_init(&c);
	cr_assert_eq(gmm_vm_create(&c, &vm), 0, "gmm_vm_create: %s", gmm_last_error());
	struct gmm_region_spec s = {
		.gpa = 0, .size = low, .backing = GMM_BACKING_ANON, .name = "low",
	};
	cr_assert_eq(gmm_region_add(vm, &s, NULL), 0, "gmm_region_add: %s", gmm_last_error());
	walker = gmm_walker_register(vm);
	cr_assert_not_null(walker, "gmm_walker_register: %s", gmm_last_error());
	ram = (struct guest_ram){ .w = walker, .low_size = low, .high_size = 0 };
}

static void setup(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_boot.XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	make_ram(256 * MiB);
}

/* For tests that want their own RAM size: replace the guest. */
static void remake_ram(uint64_t low)
{
	gmm_walker_unregister(walker);
	walker = NULL;
	gmm_vm_destroy(vm);
	vm = NULL;
	make_ram(low);
}

static void teardown(void)
{
	for (int i = 0; i < ntmp; i++) {
		unlink(tmpfiles[i]);
		free(tmpfiles[i]);
	}
	ntmp = 0;
	if (tmpdir[0])
		rmdir(tmpdir);
	if (walker)
		gmm_walker_unregister(walker);
	walker = NULL;
	if (vm)
		gmm_vm_destroy(vm);
	vm = NULL;
}

static const char *write_tmp(const char *name, const void *buf, size_t len)
{
	cr_assert_lt(ntmp, 32);
	char *path = NULL;
	cr_assert_gt(asprintf(&path, "%s/%s", tmpdir, name), 0);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, (const uint8_t *)buf + done, len - done);
		cr_assert_gt(n, 0, "write %s: %s", path, strerror(errno));
		done += (size_t)n;
	}
	close(fd);
	tmpfiles[ntmp++] = path;
	return path;
}

static void gread(uint64_t gpa, void *buf, size_t len)
{
	cr_assert_eq(gmm_read(walker, gpa, buf, len), 0, "gmm_read %#llx", (unsigned long long)gpa);
}

static uint64_t g64(uint64_t gpa)
{
	uint64_t v;
	gread(gpa, &v, 8);
	return v;
}

static uint32_t g32(uint64_t gpa)
{
	uint32_t v;
	gread(gpa, &v, 4);
	return v;
}

static uint16_t g16(uint64_t gpa)
{
	uint16_t v;
	gread(gpa, &v, 2);
	return v;
}

static uint8_t g8(uint64_t gpa)
{
	uint8_t v;
	gread(gpa, &v, 1);
	return v;
}

static uint8_t *read_whole(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *buf = malloc((size_t)n);
	cr_assert_not_null(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void put16(uint8_t *b, size_t off, uint16_t v) { memcpy(b + off, &v, 2); }
static void put32(uint8_t *b, size_t off, uint32_t v) { memcpy(b + off, &v, 4); }
static void put64(uint8_t *b, size_t off, uint64_t v) { memcpy(b + off, &v, 8); }
static uint16_t get16(const uint8_t *b, size_t off) { uint16_t v; memcpy(&v, b + off, 2); return v; }
static uint32_t get32(const uint8_t *b, size_t off) { uint32_t v; memcpy(&v, b + off, 4); return v; }

static int load(const char *kernel, const char *initrd, const char *cmdline, unsigned vcpus,
		struct boot_plan *plan, char *err, size_t errlen)
{
	struct boot_config cfg = {
		.kernel = kernel, .initrd = initrd, .cmdline = cmdline, .nr_vcpus = vcpus,
	};
	memset(err, 0, errlen);
	return boot_load(&ram, &cfg, plan, err, errlen);
}

#define assert_fails(ret, errno_, err, substr)                                          \
	do {                                                                            \
		cr_assert_eq((ret), (errno_), "expected %d (%s), got %d: %s", (errno_),  \
			     #errno_, (ret), (err));                                    \
		cr_assert_not_null(strstr((err), (substr)),                            \
				   "error text \"%s\" does not say \"%s\"", (err), (substr)); \
	} while (0)

/* ---- synthetic images ---------------------------------------------------- */

#define SYN_SETUP_SECTS 4
#define SYN_SETUP_BYTES ((SYN_SETUP_SECTS + 1) * 512)

/* A bzImage with a 2.15 header and pm_len bytes of pattern as the kernel. */
static uint8_t *make_bzimage(size_t pm_len, uint32_t init_size, size_t *len)
{
	*len = SYN_SETUP_BYTES + pm_len;
	uint8_t *b = calloc(1, *len);
	cr_assert_not_null(b);
	b[0x1f1] = SYN_SETUP_SECTS;
	put32(b, 0x1f4, (uint32_t)(pm_len / 16));
	put16(b, 0x1fa, 0xffff);
	put16(b, 0x1fe, 0xaa55);
	b[0x200] = 0xeb;
	b[0x201] = 0x6a;                 /* header ends at 0x26c */
	memcpy(b + 0x202, "HdrS", 4);
	put16(b, 0x206, 0x020f);
	b[0x211] = 0x01;                 /* LOADED_HIGH */
	put32(b, 0x214, 0x100000);
	put32(b, 0x22c, 0x7fffffff);
	put32(b, 0x230, 0x200000);
	b[0x234] = 1;
	put16(b, 0x236, 0x3);            /* XLF_KERNEL_64 | CAN_BE_LOADED_ABOVE_4G */
	put32(b, 0x238, 255);
	put64(b, 0x258, 0x1000000);
	put32(b, 0x260, init_size);
	for (size_t i = 0; i < pm_len; i++)
		b[SYN_SETUP_BYTES + i] = (uint8_t)(i * 7 + 3);
	return b;
}

enum note_kind { NOTE_NONE, NOTE_TESTIMG, NOTE_PVH };

struct elf_opts {
	enum note_kind note;
	uint64_t paddr;        /* of the one PT_LOAD */
	uint64_t entry;
	size_t filesz, memsz;
	bool class32;
	uint64_t phoff;        /* 0: 64 */
	uint32_t note_namesz;  /* 0: correct */
};

#define ELF_DATA_OFF 0x1000

/* ELF64 x86-64 ET_EXEC: header, 2 program headers (PT_LOAD, PT_NOTE),
 * the note at 176, the segment's bytes at 0x1000. */
static uint8_t *make_elf(const struct elf_opts *o, size_t *len)
{
	*len = ELF_DATA_OFF + o->filesz;
	uint8_t *b = calloc(1, *len);
	cr_assert_not_null(b);
	Elf64_Ehdr eh = {
		.e_type = ET_EXEC, .e_machine = EM_X86_64, .e_version = EV_CURRENT,
		.e_entry = o->entry, .e_phoff = o->phoff ? o->phoff : sizeof eh,
		.e_ehsize = sizeof eh, .e_phentsize = sizeof(Elf64_Phdr),
		.e_phnum = o->note == NOTE_NONE ? 1 : 2,
	};
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = o->class32 ? ELFCLASS32 : ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	memcpy(b, &eh, sizeof eh);

	Elf64_Phdr ph[2] = {
		{ .p_type = PT_LOAD, .p_flags = PF_R | PF_W | PF_X, .p_offset = ELF_DATA_OFF,
		  .p_vaddr = o->paddr, .p_paddr = o->paddr, .p_filesz = o->filesz,
		  .p_memsz = o->memsz, .p_align = 0x1000 },
	};
	uint8_t note[64];
	size_t nlen = 0;
	if (o->note != NOTE_NONE) {
		const char *name = o->note == NOTE_TESTIMG ? TESTIMG_NOTE_NAME : "Xen";
		uint32_t namesz = (uint32_t)strlen(name) + 1;
		uint32_t descsz = o->note == NOTE_TESTIMG ? 4 : 8;
		uint32_t type = o->note == NOTE_TESTIMG ? TESTIMG_NOTE_TYPE : 18;
		put32(note, 0, o->note_namesz ? o->note_namesz : namesz);
		put32(note, 4, descsz);
		put32(note, 8, type);
		memset(note + 12, 0, sizeof note - 12);
		memcpy(note + 12, name, namesz);
		size_t doff = 12 + ((namesz + 3) & ~3u);
		if (o->note == NOTE_PVH)
			put64(note, doff, o->entry);
		else
			put32(note, doff, 1);
		nlen = doff + descsz;
		ph[1] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = 176, .p_filesz = nlen,
				      .p_align = 4 };
		memcpy(b + 176, note, nlen);
	}
	if (eh.e_phoff + 2 * sizeof(Elf64_Phdr) <= *len)
		memcpy(b + eh.e_phoff, ph, eh.e_phnum * sizeof(Elf64_Phdr));
	for (size_t i = 0; i < o->filesz; i++)
		b[ELF_DATA_OFF + i] = (uint8_t)(0xa5 ^ i);
	return b;
}

static struct elf_opts tiny_testimg(void)
{
	return (struct elf_opts){ .note = NOTE_TESTIMG, .paddr = 0x100000, .entry = 0x100010,
				  .filesz = 0x200, .memsz = 0x3000 };
}

/* ---- e820 ---------------------------------------------------------------- */

TestSuite(e820);

Test(e820, low_only)
{
	struct guest_ram r = { .low_size = 256 * MiB };
	struct e820_entry e[8];
	int n = boot_e820(&r, e, 8);
	cr_assert_eq(n, 3);
	cr_assert(e[0].addr == 0 && e[0].size == 0x9fc00 && e[0].type == 1);
	cr_assert(e[1].addr == 0x9fc00 && e[1].size == 0x100000 - 0x9fc00 && e[1].type == 2);
	cr_assert(e[2].addr == MiB && e[2].size == 255 * MiB && e[2].type == 1);
	cr_assert_eq(boot_e820(&r, e, 2), -ENOSPC);
}

Test(e820, above_4g)
{
	struct guest_ram r = { .low_size = 3 * GiB, .high_size = 5 * GiB };
	struct e820_entry e[8];
	int n = boot_e820(&r, e, 8);
	cr_assert_eq(n, 4);
	cr_assert(e[2].addr == MiB && e[2].addr + e[2].size == 3 * GiB && e[2].type == 1);
	cr_assert(e[3].addr == 4 * GiB && e[3].size == 5 * GiB && e[3].type == 1);
}

/* ---- MP table --------------------------------------------------------------- */

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

/* Check the table in guest memory for n vCPUs. */
static void check_mptable(unsigned n)
{
	uint8_t mpf[16];
	gread(MPTABLE_GPA, mpf, 16);
	cr_assert_eq(memcmp(mpf, "_MP_", 4), 0);
	cr_assert_eq(sum8(mpf, 16), 0, "floating pointer checksum");
	cr_assert_eq(mpf[8], 1);
	cr_assert_eq(mpf[9], 4);
	uint32_t phys = get32(mpf, 4);
	cr_assert_eq(phys, MPTABLE_GPA + 16);
	uint8_t hdr[44];
	gread(phys, hdr, 44);
	cr_assert_eq(memcmp(hdr, "PCMP", 4), 0);
	uint16_t len = get16(hdr, 4), count = get16(hdr, 34);
	cr_assert_eq(count, MPTABLE_ENTRIES(n));
	cr_assert_eq(get32(hdr, 36), 0xfee00000u);
	uint8_t *t = malloc(len);
	gread(phys, t, len);
	cr_assert_eq(sum8(t, len), 0, "configuration table checksum");
	size_t off = 44;
	unsigned cpus = 0, bsps = 0, buses = 0, ioapics = 0, ints = 0, lints = 0;
	uint8_t ioapic_id = 0xff;
	for (unsigned i = 0; i < count; i++) {
		cr_assert_lt(off, len);
		switch (t[off]) {
		case 0:
			cr_assert_eq(t[off + 1], cpus, "APIC id = index");
			cr_assert(t[off + 3] & 1, "enabled");
			bsps += (t[off + 3] & 2) ? 1 : 0;
			if (cpus == 0)
				cr_assert(t[off + 3] & 2, "BSP flag on CPU 0");
			cpus++;
			off += 20;
			break;
		case 1:
			cr_assert_eq(memcmp(t + off + 2, "ISA   ", 6), 0);
			buses++;
			off += 8;
			break;
		case 2:
			ioapic_id = t[off + 1];
			cr_assert_eq(get32(t, off + 4), 0xfec00000u);
			ioapics++;
			off += 8;
			break;
		case 3:
			cr_assert_eq(t[off + 6], ioapic_id);
			cr_assert_eq(t[off + 5], ints);          /* ISA IRQ n ... */
			cr_assert_eq(t[off + 7], ints);          /* ... -> pin n (KVM routing) */
			ints++;
			off += 8;
			break;
		case 4:
			lints++;
			off += 8;
			break;
		default:
			cr_assert_fail("unknown MP entry type %u at %zu", t[off], off);
		}
	}
	cr_assert_eq(off, len);
	cr_assert_eq(cpus, n);
	cr_assert_eq(bsps, 1);
	cr_assert_eq(buses, 1);
	cr_assert_eq(ioapics, 1);
	cr_assert_eq(ioapic_id, n);
	cr_assert_eq(ints, 16);
	cr_assert_eq(lints, 2);
	free(t);
}

TestSuite(mptable, .init = setup, .fini = teardown);

Test(mptable, checksums_and_entries)
{
	static const unsigned counts[] = { 1, 2, 8, 64, 254 };
	char err[256];
	for (unsigned i = 0; i < sizeof counts / sizeof counts[0]; i++) {
		cr_assert_eq(mptable_write(&ram, counts[i], err, sizeof err), 0, "%s", err);
		check_mptable(counts[i]);
	}
	cr_assert_eq(mptable_write(&ram, 255, err, sizeof err), -E2BIG);
	cr_assert_eq(mptable_write(&ram, 0, err, sizeof err), -E2BIG);
}

/* ---- test images ----------------------------------------------------------------- */

TestSuite(testimg, .init = setup, .fini = teardown);

Test(testimg, loads_with_boot_info_gdt_page_tables_and_per_vcpu_state)
{
	struct elf_opts o = tiny_testimg();
	size_t len;
	uint8_t *img = make_elf(&o, &len);
	cr_assert_eq(image_detect(img, len, NULL, 0), IMAGE_TESTIMG);
	const char *path = write_tmp("tiny.elf", img, len);
	struct boot_plan plan;
	char err[512];
	int ret = load(path, NULL, "ignored", 4, &plan, err, sizeof err);
	cr_assert_eq(ret, 0, "%s", err);
	cr_assert_eq(plan.kind, IMAGE_TESTIMG);
	cr_assert(plan.all_vcpus_enter);
	cr_assert_str_eq(image_kind_name(plan.kind), "testimg");

	/* Segment bytes and zeroed bss. */
	uint8_t seg[0x200];
	gread(0x100000, seg, sizeof seg);
	cr_assert_eq(memcmp(seg, img + ELF_DATA_OFF, sizeof seg), 0);
	uint8_t bss[0x2e00], zero[0x2e00] = { 0 };
	gread(0x100200, bss, sizeof bss);
	cr_assert_eq(memcmp(bss, zero, sizeof bss), 0);

	/* Boot info. */
	struct testimg_boot_info bi;
	gread(TESTIMG_BOOT_INFO, &bi, sizeof bi);
	cr_assert_eq(bi.magic, TESTIMG_MAGIC);
	cr_assert_eq(bi.version, 1);
	cr_assert_eq(bi.ram_size, 256 * MiB);
	cr_assert_eq(bi.ram_low_end, 256 * MiB);
	cr_assert_eq(bi.ram_high_size, 0);
	cr_assert_eq(bi.nr_vcpus, 4);

	/* GDT: null, 64-bit code at 0x08, data at 0x10. */
	cr_assert_eq(g64(TESTIMG_GDT), 0);
	cr_assert_eq(g64(TESTIMG_GDT + 8), 0x00af9b000000ffffULL);
	cr_assert_eq(g64(TESTIMG_GDT + 16), 0x00cf93000000ffffULL);

	/* Page tables: 4 GiB identity, 2 MiB pages. */
	uint64_t pt = TESTIMG_PAGE_TABLES;
	cr_assert_eq(g64(pt), (pt + 0x1000) | 3);
	cr_assert_eq(g64(pt + 8), 0);
	for (unsigned g = 0; g < 4; g++)
		cr_assert_eq(g64(pt + 0x1000 + 8 * g), (pt + 0x2000 + 0x1000 * g) | 3);
	cr_assert_eq(g64(pt + 0x1000 + 8 * 4), 0);
	cr_assert_eq(g64(pt + 0x2000), 0x83);
	cr_assert_eq(g64(pt + 0x2000 + 8), 0x200083);
	cr_assert_eq(g64(pt + 0x2000 + 3 * 0x1000 + 511 * 8), (4 * GiB - 2 * MiB) | 0x83);

	/* Every vCPU: the entry in long mode, RDI boot info, its RSI/RSP. */
	for (unsigned i = 0; i < 4; i++) {
		struct boot_cpu c;
		cr_assert(boot_cpu_state(&plan, i, &c));
		cr_assert_eq(c.rip, 0x100010);
		cr_assert_eq(c.rdi, TESTIMG_BOOT_INFO);
		cr_assert_eq(c.rsi, i);
		cr_assert_eq(c.rsp, TESTIMG_STACKS + (i + 1) * TESTIMG_STACK_SIZE);
		cr_assert_eq(c.rsp % 16, 0);
		cr_assert_eq(c.rflags, 0x2);
		cr_assert_eq(c.cr3, TESTIMG_PAGE_TABLES);
		cr_assert(c.cr0 & (1ULL << 31));
		cr_assert(c.cr4 & (1ULL << 5));
		cr_assert_eq(c.efer & 0x500, 0x500);
		cr_assert_eq(c.cs.selector, TESTIMG_SEL_CODE64);
		cr_assert(c.cs.l && !c.cs.db && c.cs.present && c.cs.s);
		cr_assert_eq(c.cs.type, 0xb);
		cr_assert_eq(c.ds.selector, TESTIMG_SEL_DATA);
		cr_assert_eq(c.ss.selector, TESTIMG_SEL_DATA);
		cr_assert_eq(c.ds.type, 0x3);
		cr_assert_eq(c.gdt_base, TESTIMG_GDT);
		cr_assert_eq(c.gdt_limit, 23);
	}
	free(img);
}

Test(testimg, page_tables_cover_high_ram)
{
	struct elf_opts o = tiny_testimg();
	size_t len;
	uint8_t *img = make_elf(&o, &len);
	const char *path = write_tmp("tiny.elf", img, len);
	struct boot_plan plan;
	char err[512];
	/* Only the sizes matter here: nothing is written above 4 GiB. */
	ram.high_size = 6 * GiB;
	cr_assert_eq(load(path, NULL, NULL, 1, &plan, err, sizeof err), 0, "%s", err);
	uint64_t pdpt = TESTIMG_PAGE_TABLES + 0x1000;
	cr_assert_neq(g64(pdpt + 9 * 8), 0);
	cr_assert_eq(g64(pdpt + 10 * 8), 0);
	cr_assert_eq(g64(TESTIMG_PAGE_TABLES + 0x2000 + 9 * 0x1000 + 511 * 8),
		     (10 * GiB - 2 * MiB) | 0x83);
	struct testimg_boot_info bi;
	gread(TESTIMG_BOOT_INFO, &bi, sizeof bi);
	cr_assert_eq(bi.ram_high_start, 4 * GiB);
	cr_assert_eq(bi.ram_high_size, 6 * GiB);

	ram.high_size = 12 * GiB;
	assert_fails(load(path, NULL, NULL, 1, &plan, err, sizeof err), -E2BIG, err, "14 GiB");
	free(img);
}

Test(testimg, too_many_vcpus)
{
	struct elf_opts o = tiny_testimg();
	size_t len;
	uint8_t *img = make_elf(&o, &len);
	const char *path = write_tmp("tiny.elf", img, len);
	struct boot_plan plan;
	char err[512];
	cr_assert_eq(load(path, NULL, NULL, 64, &plan, err, sizeof err), 0, "%s", err);
	struct boot_cpu c;
	cr_assert(boot_cpu_state(&plan, 63, &c));
	cr_assert_eq(c.rsp, 0xa0000);
	assert_fails(load(path, NULL, NULL, 65, &plan, err, sizeof err), -E2BIG, err, "at most 64");
	free(img);
}

Test(testimg, refuses_an_initrd_and_low_segments)
{
	struct elf_opts o = tiny_testimg();
	size_t len;
	uint8_t *img = make_elf(&o, &len);
	const char *path = write_tmp("tiny.elf", img, len);
	const char *rd = write_tmp("rd", "x", 1);
	struct boot_plan plan;
	char err[512];
	assert_fails(load(path, rd, NULL, 1, &plan, err, sizeof err), -EINVAL, err, "no initrd");
	free(img);

	o.paddr = 0x8000;        /* below TESTIMG_LOAD_BASE */
	o.entry = 0x8000;
	img = make_elf(&o, &len);
	path = write_tmp("low.elf", img, len);
	assert_fails(load(path, NULL, NULL, 1, &plan, err, sizeof err), -ENOSPC, err,
		     "outside guest RAM");
	free(img);
}

/* ---- synthetic bzImage -------------------------------------------------------------- */

static void check_linux_gdt_and_tables(void)
{
	cr_assert_eq(g64(0x1000 + 0x10), 0x00af9b000000ffffULL);
	cr_assert_eq(g64(0x1000 + 0x18), 0x00cf93000000ffffULL);
	cr_assert_eq(g64(0x8000), 0x9003);
	for (unsigned g = 0; g < 4; g++)
		cr_assert_eq(g64(0x9000 + 8 * g), (0xa000 + 0x1000 * g) | 3);
	cr_assert_eq(g64(0xa000 + 8), 0x200083);
	cr_assert_eq(g64(0xd000 + 511 * 8), (4 * GiB - 2 * MiB) | 0x83);
}

static void check_zero_page_e820(void)
{
	uint8_t n = g8(0x3000 + 0x1e8);
	cr_assert_eq(n, 3);
	cr_assert_eq(g64(0x3000 + 0x2d0), 0);
	cr_assert_eq(g64(0x3000 + 0x2d0 + 8), 0x9fc00);
	cr_assert_eq(g32(0x3000 + 0x2d0 + 16), 1);
	cr_assert_eq(g64(0x3000 + 0x2d0 + 20), 0x9fc00);
	cr_assert_eq(g32(0x3000 + 0x2d0 + 20 + 16), 2);
	cr_assert_eq(g64(0x3000 + 0x2d0 + 40), MiB);
	cr_assert_eq(g64(0x3000 + 0x2d0 + 48), ram.low_size - MiB);
	cr_assert_eq(g32(0x3000 + 0x2d0 + 56), 1);
}

static void check_long_entry(const struct boot_plan *plan, uint64_t rip)
{
	struct boot_cpu c;
	cr_assert(boot_cpu_state(plan, 0, &c));
	cr_assert_eq(c.rip, rip);
	cr_assert_eq(c.rsi, 0x3000);
	cr_assert_eq(c.rflags, 0x2);
	cr_assert_eq(c.cs.selector, 0x10);
	cr_assert(c.cs.l && !c.cs.db && c.cs.g && c.cs.present);
	cr_assert_eq(c.cs.limit, 0xffffffffu);
	cr_assert_eq(c.ds.selector, 0x18);
	cr_assert_eq(c.es.selector, 0x18);
	cr_assert_eq(c.ss.selector, 0x18);
	cr_assert_eq(c.cr3, 0x8000);
	cr_assert(c.cr0 & (1ULL << 31) && c.cr0 & 1);
	cr_assert(c.cr4 & (1ULL << 5));
	cr_assert_eq(c.efer & 0x500, 0x500);
	cr_assert_eq(c.gdt_base, 0x1000);
	cr_assert_eq(c.gdt_limit, 31);
	cr_assert(!boot_cpu_state(plan, 1, &c), "Linux APs wait for INIT/SIPI");
}

TestSuite(bzimage, .init = setup, .fini = teardown);

Test(bzimage, loads_zero_page_cmdline_initrd)
{
	size_t len;
	uint8_t *k = make_bzimage(64 * KiB, 4 * MiB, &len);
	cr_assert_eq(image_detect(k, len, NULL, 0), IMAGE_BZIMAGE);
	const char *kp = write_tmp("bzImage", k, len);
	uint8_t rdbuf[5000];
	for (size_t i = 0; i < sizeof rdbuf; i++)
		rdbuf[i] = (uint8_t)(i ^ 0x5a);
	const char *rp = write_tmp("initrd", rdbuf, sizeof rdbuf);
	const char *cmd = "console=ttyS0 root=/dev/vda";
	struct boot_plan plan;
	char err[512];
	cr_assert_eq(load(kp, rp, cmd, 1, &plan, err, sizeof err), 0, "%s", err);
	cr_assert_eq(plan.kind, IMAGE_BZIMAGE);
	cr_assert_not_null(strstr(plan.summary, "bzImage"), "%s", plan.summary);

	/* The protected-mode code at pref_address (16 MiB). */
	uint8_t pm[4096];
	gread(0x1000000, pm, sizeof pm);
	cr_assert_eq(memcmp(pm, k + SYN_SETUP_BYTES, sizeof pm), 0);
	check_long_entry(&plan, 0x1000200);

	/* Zero page. */
	cr_assert_eq(g32(0x3000 + 0x202), 0x53726448u);
	cr_assert_eq(g16(0x3000 + 0x206), 0x020f);
	cr_assert_eq(g8(0x3000 + 0x210), 0xff);
	cr_assert_eq(g32(0x3000 + 0x214), 0x1000000);
	uint32_t cl = g32(0x3000 + 0x228);
	char text[64] = { 0 };
	gread(cl, text, strlen(cmd) + 1);
	cr_assert_str_eq(text, cmd);
	uint32_t rd = g32(0x3000 + 0x218), rs = g32(0x3000 + 0x21c);
	cr_assert_eq(rs, sizeof rdbuf);
	cr_assert_eq(rd % 4096, 0);
	cr_assert_eq(rd, plan.initrd_gpa);
	cr_assert(rd + rs <= ram.low_size);
	cr_assert(rd >= 0x1000000 + 4 * MiB || rd + rs <= 0x1000000, "initrd clear of the kernel");
	uint8_t back[5000];
	gread(rd, back, sizeof back);
	cr_assert_eq(memcmp(back, rdbuf, sizeof back), 0);
	check_zero_page_e820();
	check_linux_gdt_and_tables();
	/* One vCPU has an MP table too: without one Linux scans 64 KiB of
	 * BIOS area 16 bytes at a time, an early_memremap each (issue 14:
	 * 4 s of an emulated boot). */
	check_mptable(1);
	free(k);
}

Test(bzimage, unaligned_pref_address_loads_at_1mib_and_smp_gets_mptable)
{
	size_t len;
	uint8_t *k = make_bzimage(64 * KiB, 4 * MiB, &len);
	put64(k, 0x258, 0x1000000 + 0x1000);   /* not 2 MiB-aligned */
	const char *kp = write_tmp("bzImage", k, len);
	struct boot_plan plan;
	char err[512];
	cr_assert_eq(load(kp, NULL, NULL, 2, &plan, err, sizeof err), 0, "%s", err);
	check_long_entry(&plan, 0x100200);
	char text[4];
	gread(g32(0x3000 + 0x228), text, 1);
	cr_assert_eq(text[0], 0, "empty command line");
	check_mptable(2);
	free(k);
}

Test(bzimage, initrd_respects_initrd_addr_max)
{
	size_t len;
	uint8_t *k = make_bzimage(64 * KiB, 4 * MiB, &len);
	put32(k, 0x22c, 0x3ffffff);             /* initrd below 64 MiB */
	const char *kp = write_tmp("bzImage", k, len);
	static uint8_t rdbuf[3 * 4096 + 17];
	const char *rp = write_tmp("initrd", rdbuf, sizeof rdbuf);
	struct boot_plan plan;
	char err[512];
	cr_assert_eq(load(kp, rp, NULL, 1, &plan, err, sizeof err), 0, "%s", err);
	cr_assert_eq(plan.initrd_gpa % 4096, 0);
	cr_assert(plan.initrd_gpa + sizeof rdbuf <= 0x4000000);
	cr_assert(plan.initrd_gpa >= 0x1000000 + 4 * MiB);
	free(k);
}

/* ---- synthetic PVH ---------------------------------------------------------------------- */

static void check_start_info(const char *cmd, uint64_t initrd_size)
{
	cr_assert_eq(g32(0x2000), 0x336ec578u);
	cr_assert_eq(g32(0x2000 + 4), 1);
	uint64_t cl = g64(0x2000 + 24);
	char text[256] = { 0 };
	gread(cl, text, strlen(cmd) + 1);
	cr_assert_str_eq(text, cmd);
	cr_assert_eq(g64(0x2000 + 32), 0, "no RSDP");
	uint64_t mm = g64(0x2000 + 40);
	uint32_t n = g32(0x2000 + 48);
	cr_assert_eq(n, 3);
	cr_assert_eq(g64(mm), 0);
	cr_assert_eq(g64(mm + 8), 0x9fc00);
	cr_assert_eq(g32(mm + 16), 1);
	cr_assert_eq(g64(mm + 24), 0x9fc00);
	cr_assert_eq(g32(mm + 24 + 16), 2);
	cr_assert_eq(g64(mm + 48), MiB);
	cr_assert_eq(g64(mm + 48 + 8), ram.low_size - MiB);
	cr_assert_eq(g32(mm + 48 + 16), 1);
	uint32_t nmod = g32(0x2000 + 12);
	if (initrd_size) {
		cr_assert_eq(nmod, 1);
		uint64_t ml = g64(0x2000 + 16);
		uint64_t paddr = g64(ml), size = g64(ml + 8);
		cr_assert_eq(size, initrd_size);
		cr_assert_eq(paddr % 4096, 0);
		cr_assert(paddr + size <= ram.low_size && paddr + size <= 3 * GiB);
	} else {
		cr_assert_eq(nmod, 0);
	}
}

static void check_prot32_entry(const struct boot_plan *plan, uint64_t rip)
{
	struct boot_cpu c;
	cr_assert(boot_cpu_state(plan, 0, &c));
	cr_assert_eq(c.rip, rip);
	cr_assert_eq(c.rbx, 0x2000);
	cr_assert_eq(c.cs.selector, 0x10);
	cr_assert_eq(c.cs.type, 0xb);
	cr_assert(c.cs.db && !c.cs.l && c.cs.g && c.cs.present && c.cs.s);
	cr_assert_eq(c.cs.base, 0);
	cr_assert_eq(c.cs.limit, 0xffffffffu);
	cr_assert_eq(c.ds.selector, 0x18);
	cr_assert_eq(c.es.selector, 0x18);
	cr_assert_eq(c.ss.selector, 0x18);
	cr_assert_eq(c.ds.type, 0x3);
	cr_assert(c.cr0 & 1);
	cr_assert_eq(c.cr0 & (1ULL << 31), 0, "paging off");
	cr_assert_eq(c.efer, 0);
	cr_assert_eq(c.rflags, 0x2);
	cr_assert_eq(g64(0x1000 + 0x10), 0x00cf9b000000ffffULL);
	cr_assert_eq(g64(0x1000 + 0x18), 0x00cf93000000ffffULL);
	cr_assert(!boot_cpu_state(plan, 1, &c));
}

TestSuite(pvh, .init = setup, .fini = teardown);

Test(pvh, synthetic_vmlinux)
{
	struct elf_opts o = { .note = NOTE_PVH, .paddr = 0x1000000, .entry = 0x1000040,
			      .filesz = 0x400, .memsz = 0x10000 };
	size_t len;
	uint8_t *k = make_elf(&o, &len);
	cr_assert_eq(image_detect(k, len, NULL, 0), IMAGE_PVH);
	const char *kp = write_tmp("vmlinux", k, len);
	const char *rp = write_tmp("initrd", "0123456789", 10);
	struct boot_plan plan;
	char err[512];
	cr_assert_eq(load(kp, rp, "console=hvc0", 3, &plan, err, sizeof err), 0, "%s", err);
	cr_assert_eq(plan.kind, IMAGE_PVH);
	check_start_info("console=hvc0", 10);
	check_prot32_entry(&plan, 0x1000040);
	uint8_t seg[0x400];
	gread(0x1000000, seg, sizeof seg);
	cr_assert_eq(memcmp(seg, k + ELF_DATA_OFF, sizeof seg), 0);
	check_mptable(3);
	free(k);
}

Test(pvh, entry_outside_segments)
{
	struct elf_opts o = { .note = NOTE_PVH, .paddr = 0x1000000, .entry = 0x3000000,
			      .filesz = 0x400, .memsz = 0x1000 };
	size_t len;
	uint8_t *k = make_elf(&o, &len);
	const char *kp = write_tmp("vmlinux", k, len);
	struct boot_plan plan;
	char err[512];
	assert_fails(load(kp, NULL, NULL, 1, &plan, err, sizeof err), -EINVAL, err,
		     "outside its loaded segments");
	free(k);
}

/* ---- bad files ---------------------------------------------------------------------------- */

TestSuite(bad, .init = setup, .fini = teardown);

static void expect_kernel_error(const void *buf, size_t len, int want, const char *substr)
{
	const char *p = write_tmp("kernel", buf, len);
	struct boot_plan plan;
	char err[512];
	int ret = load(p, NULL, NULL, 1, &plan, err, sizeof err);
	assert_fails(ret, want, err, substr);
	cr_assert_not_null(strstr(err, p), "the error names the file: %s", err);
	cr_assert_eq(plan.kind, IMAGE_UNKNOWN);
}

/* Build the ELF o describes, load it as the kernel, expect err and msg. */
static void expect_elf_error(const struct elf_opts *o, int err, const char *msg)
{
	size_t len;
	uint8_t *b = make_elf(o, &len);
	expect_kernel_error(b, len, err, msg);
	free(b);
}

Test(bad, empty_file)
{
	expect_kernel_error("", 0, -EINVAL, "is empty");
}

Test(bad, random_bytes)
{
	uint8_t b[4096];
	srand(42);
	for (size_t i = 0; i < sizeof b; i++)
		b[i] = (uint8_t)rand();
	expect_kernel_error(b, sizeof b, -EINVAL, "no HdrS signature at 0x202");
	expect_kernel_error(b, 100, -EINVAL, "too short");
}

Test(bad, missing_and_directory)
{
	struct boot_plan plan;
	char err[512];
	assert_fails(load("/nonexistent/bzImage", NULL, NULL, 1, &plan, err, sizeof err), -ENOENT,
		     err, "/nonexistent/bzImage");
	cr_assert_not_null(strstr(err, "No such file"), "%s", err);
	assert_fails(load(tmpdir, NULL, NULL, 1, &plan, err, sizeof err), -EINVAL, err,
		     "not a regular file");
}

Test(bad, bzimage_truncated)
{
	size_t len;
	uint8_t *k = make_bzimage(256 * KiB, 4 * MiB, &len);
	expect_kernel_error(k, 1024, -EINVAL, "real-mode setup code");
	expect_kernel_error(k, len / 2, -EINVAL, "truncated bzImage: header says 256.0 KiB of "
			    "protected-mode code");
	expect_kernel_error(k, 0x240, -EINVAL, "shorter than its setup header");
	free(k);
}

Test(bad, bzimage_header_fields)
{
	size_t len;
	uint8_t *k = make_bzimage(64 * KiB, 4 * MiB, &len);
	k[0x203] = 'X';
	expect_kernel_error(k, len, -EINVAL, "no HdrS signature at 0x202");
	k[0x203] = 'd';
	put16(k, 0x206, 0x0202);
	expect_kernel_error(k, len, -EINVAL, "protocol 2.02 is too old");
	put16(k, 0x206, 0x020f);
	put16(k, 0x236, 0x2);
	expect_kernel_error(k, len, -EINVAL, "XLF_KERNEL_64");
	put16(k, 0x236, 0x3);
	put32(k, 0x1f4, 0);
	expect_kernel_error(k, len, -EINVAL, "syssize is 0");
	free(k);
}

Test(bad, bzimage_init_size_larger_than_ram)
{
	size_t len;
	uint8_t *k = make_bzimage(64 * KiB, 512 * MiB, &len);
	expect_kernel_error(k, len, -ENOSPC, "init_size 512.0 MiB");
	free(k);
}

Test(bad, kernel_larger_than_ram)
{
	remake_ram(8 * MiB);
	const char *p = write_tmp("big", "", 0);
	cr_assert_eq(truncate(p, 9 * MiB), 0);
	struct boot_plan plan;
	char err[512];
	assert_fails(load(p, NULL, NULL, 1, &plan, err, sizeof err), -E2BIG, err,
		     "larger than the guest RAM");
}

Test(bad, cmdline_longer_than_cmdline_size)
{
	size_t len;
	uint8_t *k = make_bzimage(64 * KiB, 4 * MiB, &len);
	const char *p = write_tmp("bzImage", k, len);
	char cmd[300];
	memset(cmd, 'a', sizeof cmd - 1);
	cmd[sizeof cmd - 1] = 0;
	struct boot_plan plan;
	char err[512];
	assert_fails(load(p, NULL, cmd, 1, &plan, err, sizeof err), -E2BIG, err, "cmdline_size");
	cr_assert_not_null(strstr(err, "299 bytes"), "%s", err);
	cmd[255] = 0;
	cr_assert_eq(load(p, NULL, cmd, 1, &plan, err, sizeof err), 0, "255 is allowed: %s", err);
	free(k);
}

Test(bad, missing_initrd)
{
	size_t len;
	uint8_t *k = make_bzimage(64 * KiB, 4 * MiB, &len);
	const char *p = write_tmp("bzImage", k, len);
	struct boot_plan plan;
	char err[512];
	assert_fails(load(p, "/nonexistent/initrd.img", NULL, 1, &plan, err, sizeof err), -ENOENT,
		     err, "initrd /nonexistent/initrd.img");
	free(k);
}

Test(bad, initrd_that_does_not_fit)
{
	size_t len;
	uint8_t *k = make_bzimage(64 * KiB, 200 * MiB, &len);
	const char *p = write_tmp("bzImage", k, len);
	const char *rp = write_tmp("initrd", "", 0);
	cr_assert_eq(truncate(rp, 60 * MiB), 0);
	struct boot_plan plan;
	char err[512];
	assert_fails(load(p, rp, NULL, 1, &plan, err, sizeof err), -ENOSPC, err,
		     "does not fit in low RAM");
	free(k);
}

Test(bad, elf_without_notes)
{
	struct elf_opts o = tiny_testimg();
	o.note = NOTE_NONE;
	expect_elf_error(&o, -EINVAL, "no PVH entry note");
}

Test(bad, elf_segment_beyond_ram)
{
	struct elf_opts o = tiny_testimg();
	o.paddr = 1 * GiB;
	o.entry = 1 * GiB;
	size_t len;
	uint8_t *b = make_elf(&o, &len);
	expect_kernel_error(b, len, -ENOSPC, "outside guest RAM");
	o.note = NOTE_PVH;
	free(b);
	b = make_elf(&o, &len);
	expect_kernel_error(b, len, -ENOSPC, "outside guest RAM");
	free(b);
}

Test(bad, elf_phoff_beyond_file)
{
	struct elf_opts o = tiny_testimg();
	o.phoff = 1 << 20;
	expect_elf_error(&o, -EINVAL, "beyond the end of the file");
}

Test(bad, elf_truncated_segment_and_corrupt_note)
{
	struct elf_opts o = tiny_testimg();
	size_t len;
	uint8_t *b = make_elf(&o, &len);
	expect_kernel_error(b, len - 16, -EINVAL, "beyond the end of the file");
	free(b);
	o.note_namesz = 0x7ffffff0;
	b = make_elf(&o, &len);
	expect_kernel_error(b, len, -EINVAL, "runs past the end");
	free(b);
	o = tiny_testimg();
	b = make_elf(&o, &len);
	expect_kernel_error(b, 40, -EINVAL, "truncated ELF");
	free(b);
}

Test(bad, elf_32bit)
{
	struct elf_opts o = tiny_testimg();
	o.class32 = true;
	expect_elf_error(&o, -EINVAL, "32-bit ELF");
}

Test(bad, detect_reasons)
{
	char err[256];
	cr_assert_eq(image_detect(NULL, 0, err, sizeof err), IMAGE_UNKNOWN);
	cr_assert_not_null(strstr(err, "empty"));
	cr_assert_str_eq(image_kind_name(IMAGE_UNKNOWN), "unknown");
	cr_assert_str_eq(image_kind_name(IMAGE_BZIMAGE), "bzImage");
	cr_assert_str_eq(image_kind_name(IMAGE_PVH), "pvh");
}

/* ---- Debian's real kernel ------------------------------------------------------------------- */

static bool debian_paths(char *bz, char *vml, size_t len)
{
	const char *dir = getenv("VMM_DEBIAN_KERNEL_DIR");
	if (!dir || !dir[0]) {
		fprintf(stderr, "\n*** SKIPPED: VMM_DEBIAN_KERNEL_DIR is not set: Debian's real "
			"kernel was NOT tested (run scripts/debian-kernel) ***\n\n");
		return false;
	}
	snprintf(bz, len, "%s/bzImage", dir);
	snprintf(vml, len, "%s/vmlinux", dir);
	if (access(bz, R_OK) || access(vml, R_OK)) {
		fprintf(stderr, "\n*** SKIPPED: %s/{bzImage,vmlinux} missing: Debian's real "
			"kernel was NOT tested (run scripts/debian-kernel) ***\n\n", dir);
		return false;
	}
	return true;
}

TestSuite(debian, .init = setup, .fini = teardown, .timeout = 120);

Test(debian, bzimage)
{
	char bz[512], vml[512];
	if (!debian_paths(bz, vml, sizeof bz))
		cr_skip_test("VMM_DEBIAN_KERNEL_DIR unset or incomplete: Debian kernel NOT tested");
	size_t len;
	uint8_t *k = read_whole(bz, &len);
	cr_assert_not_null(k);
	char err[512];
	cr_assert_eq(image_detect(k, len, err, sizeof err), IMAGE_BZIMAGE, "%s", err);

	uint8_t rdbuf[12345];
	for (size_t i = 0; i < sizeof rdbuf; i++)
		rdbuf[i] = (uint8_t)(i * 13);
	const char *rp = write_tmp("initrd", rdbuf, sizeof rdbuf);
	const char *cmd = "console=ttyS0 earlyprintk=serial panic=-1";
	struct boot_plan plan;
	cr_assert_eq(load(bz, rp, cmd, 2, &plan, err, sizeof err), 0, "%s", err);
	cr_assert_eq(plan.kind, IMAGE_BZIMAGE);
	uint64_t pref;
	memcpy(&pref, k + 0x258, 8);
	uint32_t init_size = get32(k, 0x260);
	cr_log_info("%s", plan.summary);
	check_long_entry(&plan, pref + 0x200);
	cr_assert_eq(g32(0x3000 + 0x214) + 0x200, plan.bsp.rip);
	cr_assert_eq(g8(0x3000 + 0x1f1), k[0x1f1], "setup_sects copied");
	cr_assert_eq(g32(0x3000 + 0x202), 0x53726448u);
	cr_assert_eq(g16(0x3000 + 0x206), get16(k, 0x206));
	cr_assert_eq(g8(0x3000 + 0x210), 0xff);
	char text[128] = { 0 };
	gread(g32(0x3000 + 0x228), text, strlen(cmd) + 1);
	cr_assert_str_eq(text, cmd);
	uint32_t rd = g32(0x3000 + 0x218), rs = g32(0x3000 + 0x21c);
	cr_assert_eq(rs, sizeof rdbuf);
	cr_assert_eq(rd % 4096, 0);
	cr_assert(rd + rs <= 3 * GiB && rd + rs <= ram.low_size);
	cr_assert(rd >= pref + init_size || rd + rs <= pref, "initrd clear of init_size");
	cr_assert(rd + rs - 1 <= get32(k, 0x22c), "below initrd_addr_max");
	uint8_t back[sizeof rdbuf];
	gread(rd, back, sizeof back);
	cr_assert_eq(memcmp(back, rdbuf, sizeof back), 0);
	check_zero_page_e820();
	check_linux_gdt_and_tables();
	check_mptable(2);
	/* The kernel's first bytes at the load address. */
	uint64_t setup = ((uint64_t)(k[0x1f1] ? k[0x1f1] : 4) + 1) * 512;
	uint8_t head[512];
	gread(pref, head, sizeof head);
	cr_assert_eq(memcmp(head, k + setup, sizeof head), 0);

	/* The same kernel, damaged. */
	expect_kernel_error(k, 1024, -EINVAL, "truncated bzImage");
	expect_kernel_error(k, len / 2, -EINVAL, "of protected-mode code, file has");
	uint8_t *d = malloc(len);
	memcpy(d, k, len);
	d[0x202] = 'h';
	expect_kernel_error(d, len, -EINVAL, "no HdrS signature at 0x202");
	memcpy(d, k, len);
	put16(d, 0x206, 0x0202);
	expect_kernel_error(d, len, -EINVAL, "bzImage protocol 2.02 is too old");
	memcpy(d, k, len);
	put16(d, 0x236, get16(d, 0x236) & ~1u);
	expect_kernel_error(d, len, -EINVAL, "XLF_KERNEL_64");
	/* cmdline_size + 1 bytes is too long. */
	uint32_t cs = get32(k, 0x238);
	char *longcmd = malloc(cs + 2);
	memset(longcmd, 'x', cs + 1);
	longcmd[cs + 1] = 0;
	assert_fails(load(bz, NULL, longcmd, 1, &plan, err, sizeof err), -E2BIG, err,
		     "cmdline_size");
	free(longcmd);
	free(d);
	free(k);
}

Test(debian, vmlinux_pvh)
{
	char bz[512], vml[512];
	if (!debian_paths(bz, vml, sizeof bz))
		cr_skip_test("VMM_DEBIAN_KERNEL_DIR unset or incomplete: Debian kernel NOT tested");
	size_t len;
	uint8_t *k = read_whole(vml, &len);
	cr_assert_not_null(k);
	char err[512];
	cr_assert_eq(image_detect(k, len, err, sizeof err), IMAGE_PVH, "%s", err);

	/* The note's entry, found independently: scan PT_NOTE for Xen/18. */
	Elf64_Ehdr eh;
	memcpy(&eh, k, sizeof eh);
	uint64_t entry = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, k + eh.e_phoff + i * sizeof ph, sizeof ph);
		if (ph.p_type != PT_NOTE)
			continue;
		for (uint64_t off = 0; off + 12 <= ph.p_filesz;) {
			uint32_t nsz = get32(k, ph.p_offset + off), dsz = get32(k, ph.p_offset + off + 4);
			uint32_t type = get32(k, ph.p_offset + off + 8);
			const char *name = (const char *)k + ph.p_offset + off + 12;
			uint64_t doff = ph.p_offset + off + 12 + ((nsz + 3) & ~3u);
			if (type == 18 && nsz == 4 && !memcmp(name, "Xen", 4))
				memcpy(&entry, k + doff, dsz == 8 ? 8 : 4);
			off += 12 + ((nsz + 3) & ~3u) + ((dsz + 3) & ~3u);
		}
	}
	cr_assert_neq(entry, 0);

	const char *rp = write_tmp("initrd", "initrd-bytes", 12);
	const char *cmd = "console=ttyS0 panic=-1";
	struct boot_plan plan;
	cr_assert_eq(load(vml, rp, cmd, 1, &plan, err, sizeof err), 0, "%s", err);
	cr_log_info("%s", plan.summary);
	cr_assert_eq(plan.kind, IMAGE_PVH);
	check_start_info(cmd, 12);
	check_prot32_entry(&plan, entry);
	/* The first PT_LOAD's bytes at its p_paddr. */
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, k + eh.e_phoff + i * sizeof ph, sizeof ph);
		if (ph.p_type != PT_LOAD)
			continue;
		uint8_t head[256];
		gread(ph.p_paddr, head, sizeof head);
		cr_assert_eq(memcmp(head, k + ph.p_offset, sizeof head), 0);
		break;
	}
	/* Truncated at half: a segment runs past the end of the file. */
	expect_kernel_error(k, len / 2, -EINVAL, "beyond the end of the file");
	free(k);
}
