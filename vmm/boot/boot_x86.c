// SPDX-License-Identifier: GPL-2.0-only
/*
 * boot_x86.c - helpers shared by the loaders: errors, guest-memory writes,
 * initrd placement, GDT descriptors, identity page tables, entry states and
 * a bounds-checked ELF64 reader (see boot_x86.h for the low-memory layout).
 *
 * The ELF reader never trusts the file: every offset and size is checked
 * against the buffer length with overflow-free arithmetic before a byte is
 * read, and structures are copied out with memcpy (no unaligned access).
 */
#include "boot/boot_x86.h"
#include "boot/e820.h"

#include "testimg.h"

#include <guestmm/guestmm.h>

#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- errors ---------------------------------------------------------- */

int boot_fail(int ret, char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

const char *boot_size_str(uint64_t bytes, char *buf, size_t len)
{
	if (bytes < KiB)
		snprintf(buf, len, "%llu bytes", (unsigned long long)bytes);
	else if (bytes < MiB)
		snprintf(buf, len, "%.1f KiB", (double)bytes / (double)KiB);
	else if (bytes < GiB)
		snprintf(buf, len, "%.1f MiB", (double)bytes / (double)MiB);
	else
		snprintf(buf, len, "%.1f GiB", (double)bytes / (double)GiB);
	return buf;
}

/* ---- guest RAM --------------------------------------------------------- */

static bool range_in(uint64_t gpa, uint64_t len, uint64_t lo, uint64_t hi)
{
	return gpa >= lo && gpa <= hi && len <= hi - gpa;
}

bool boot_ram_contains(const struct guest_ram *ram, uint64_t gpa, uint64_t len)
{
	struct e820_entry e[8];
	int n = boot_e820(ram, e, 8);
	for (int i = 0; i < n; i++)
		if (e[i].type == 1 && range_in(gpa, len, e[i].addr, e[i].addr + e[i].size))
			return true;
	return false;
}

int boot_write(const struct guest_ram *ram, uint64_t gpa, const void *buf, size_t len,
	       const char *what, char *err, size_t errlen)
{
	if (!len)
		return 0;
	int ret = gmm_write(ram->w, gpa, buf, len);
	if (ret < 0)
		return boot_fail(-EFAULT, err, errlen,
				 "cannot write %s to guest memory [%#llx, %#llx): %s",
				 what, (unsigned long long)gpa,
				 (unsigned long long)(gpa + len), strerror(-ret));
	return 0;
}

int boot_zero(const struct guest_ram *ram, uint64_t gpa, uint64_t len,
	      const char *what, char *err, size_t errlen)
{
	uint64_t start = gpa;
	int ret = 0;
	gmm_walk_begin(ram->w);
	while (len) {
		size_t span, want = len > (1ULL << 30) ? (1ULL << 30) : (size_t)len;
		uint8_t *p = gmm_translate_span(ram->w, gpa, want, GMM_ACCESS_WRITE, &span);
		if (!p) {
			ret = -errno;
			break;
		}
		memset(p, 0, span);
		gpa += span;
		len -= span;
	}
	gmm_walk_end(ram->w);
	if (ret < 0)
		return boot_fail(-EFAULT, err, errlen,
				 "cannot clear %s in guest memory at %#llx (from %#llx): %s",
				 what, (unsigned long long)gpa, (unsigned long long)start,
				 strerror(-ret));
	return 0;
}

static bool overlaps(uint64_t a_lo, uint64_t a_hi, uint64_t b_lo, uint64_t b_hi)
{
	return a_lo < b_hi && b_lo < a_hi;
}

int boot_place_initrd(const struct guest_ram *ram, uint64_t size, uint64_t limit,
		      uint64_t avoid_lo, uint64_t avoid_hi, uint64_t *gpa,
		      char *err, size_t errlen)
{
	char s1[32], s2[32];
	uint64_t top = limit;
	if (top > ram->low_size)
		top = ram->low_size;
	if (top > BOOT_LOW_RAM_MAX)
		top = BOOT_LOW_RAM_MAX;
	/* First choice: as high as possible. */
	if (top >= size + BOOT_HIGH_MEMORY) {
		uint64_t g = (top - size) & ~(GMM_PAGE_SIZE - 1);
		if (g >= BOOT_HIGH_MEMORY && !overlaps(g, g + size, avoid_lo, avoid_hi)) {
			*gpa = g;
			return 0;
		}
	}
	/* Second: just below the kernel. */
	uint64_t below = avoid_lo < top ? avoid_lo : top;
	if (below >= size + BOOT_HIGH_MEMORY) {
		uint64_t g = (below - size) & ~(GMM_PAGE_SIZE - 1);
		if (g >= BOOT_HIGH_MEMORY) {
			*gpa = g;
			return 0;
		}
	}
	return boot_fail(-ENOSPC, err, errlen,
			 "%s does not fit in low RAM [1 MiB, %#llx) beside the kernel at "
			 "[%#llx, %#llx) (guest low RAM is %s)",
			 boot_size_str(size, s1, sizeof s1), (unsigned long long)top,
			 (unsigned long long)avoid_lo, (unsigned long long)avoid_hi,
			 boot_size_str(ram->low_size, s2, sizeof s2));
}

/* ---- descriptors ------------------------------------------------------- */

uint64_t x86_gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
	return ((uint64_t)(base & 0xff000000u) << 32) |
	       ((uint64_t)(flags & 0xf0ffu) << 40) |
	       ((uint64_t)(limit & 0x000f0000u) << 32) |
	       ((uint64_t)(base & 0x00ffffffu) << 16) |
	       (uint64_t)(limit & 0x0000ffffu);
}

void x86_seg_from_gdt(uint64_t e, uint16_t selector, struct boot_seg *s)
{
	memset(s, 0, sizeof *s);
	s->base = ((e >> 16) & 0xffffff) | (((e >> 56) & 0xff) << 24);
	uint32_t limit = (uint32_t)((e & 0xffff) | (((e >> 48) & 0xf) << 16));
	s->g = (e >> 55) & 1;
	/* KVM wants the limit in bytes: scale it by the granularity. */
	s->limit = s->g ? (limit << 12) | 0xfff : limit;
	s->selector = selector;
	s->type = (e >> 40) & 0xf;
	s->s = (e >> 44) & 1;
	s->dpl = (e >> 45) & 3;
	s->present = (e >> 47) & 1;
	s->avl = (e >> 52) & 1;
	s->l = (e >> 53) & 1;
	s->db = (e >> 54) & 1;
	s->unusable = !s->present;
}

int boot_write_linux_gdt(const struct guest_ram *ram, uint16_t code_flags,
			 char *err, size_t errlen)
{
	uint64_t gdt[BOOT_GDT_ENTRIES] = {
		[BOOT_SEL_CODE / 8] = x86_gdt_entry(code_flags, 0, 0xfffff),
		[BOOT_SEL_DATA / 8] = x86_gdt_entry(GDT_DATA, 0, 0xfffff),
	};
	return boot_write(ram, BOOT_GDT_GPA, gdt, sizeof gdt, "the GDT", err, errlen);
}

/* ---- page tables --------------------------------------------------------- */

#define PTE_P 0x1ULL
#define PTE_RW 0x2ULL
#define PTE_PS 0x80ULL

int x86_identity_map(const struct guest_ram *ram, uint64_t base, uint64_t base_end,
		     uint64_t cover, uint64_t *cr3, char *err, size_t errlen)
{
	uint64_t gibs = (cover + GiB - 1) / GiB;
	if (!gibs)
		gibs = 1;
	uint64_t need = (2 + gibs) * GMM_PAGE_SIZE;
	if (gibs > 512 || base + need > base_end) {
		uint64_t max = (base_end - base) / GMM_PAGE_SIZE;
		max = max > 2 ? max - 2 : 0;
		char s[32];
		return boot_fail(-E2BIG, err, errlen,
				 "the identity page tables at [%#llx, %#llx) map at most %llu GiB "
				 "with 2 MiB pages, but guest memory ends at %s",
				 (unsigned long long)base, (unsigned long long)base_end,
				 (unsigned long long)max, boot_size_str(cover, s, sizeof s));
	}
	uint64_t page[512];
	int ret;
	/* PML4: entry 0 -> PDPT. */
	memset(page, 0, sizeof page);
	page[0] = (base + GMM_PAGE_SIZE) | PTE_P | PTE_RW;
	if ((ret = boot_write(ram, base, page, sizeof page, "the PML4", err, errlen)) < 0)
		return ret;
	/* PDPT: one PD per GiB. */
	memset(page, 0, sizeof page);
	for (uint64_t i = 0; i < gibs; i++)
		page[i] = (base + (2 + i) * GMM_PAGE_SIZE) | PTE_P | PTE_RW;
	if ((ret = boot_write(ram, base + GMM_PAGE_SIZE, page, sizeof page, "the PDPT",
			      err, errlen)) < 0)
		return ret;
	/* PDs: 2 MiB pages. */
	for (uint64_t g = 0; g < gibs; g++) {
		for (uint64_t i = 0; i < 512; i++)
			page[i] = (g * GiB + i * GMM_2M) | PTE_P | PTE_RW | PTE_PS;
		if ((ret = boot_write(ram, base + (2 + g) * GMM_PAGE_SIZE, page, sizeof page,
				      "a page directory", err, errlen)) < 0)
			return ret;
	}
	*cr3 = base;
	return 0;
}

/* ---- entry states ---------------------------------------------------------- */

static void state_common(struct boot_cpu *c, uint64_t gdt, uint16_t gdt_limit,
			 uint16_t code_sel, uint64_t code, uint16_t data_sel, uint64_t data)
{
	memset(c, 0, sizeof *c);
	x86_seg_from_gdt(code, code_sel, &c->cs);
	x86_seg_from_gdt(data, data_sel, &c->ds);
	c->es = c->fs = c->gs = c->ss = c->ds;
	/* tr/ldt stay zero: vcpu.c keeps KVM's reset values (a busy TSS and
	 * an LDT), which VM entry accepts in every mode used here. */
	c->gdt_base = gdt;
	c->gdt_limit = gdt_limit;
	c->idt_base = 0;
	c->idt_limit = 0;   /* interrupts stay off until the guest sets its IDT */
	c->rflags = X86_RFLAGS_RESERVED;
}

void x86_state_long(struct boot_cpu *c, uint64_t gdt, uint16_t gdt_limit,
		    uint16_t code_sel, uint64_t code, uint16_t data_sel, uint64_t data,
		    uint64_t cr3)
{
	state_common(c, gdt, gdt_limit, code_sel, code, data_sel, data);
	c->cr0 = X86_CR0_PE | X86_CR0_MP | X86_CR0_ET | X86_CR0_NE | X86_CR0_PG;
	c->cr3 = cr3;
	c->cr4 = X86_CR4_PAE | X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT;
	c->efer = X86_EFER_LME | X86_EFER_LMA;
}

void x86_state_prot32(struct boot_cpu *c, uint64_t gdt, uint16_t gdt_limit,
		      uint16_t code_sel, uint64_t code, uint16_t data_sel, uint64_t data)
{
	state_common(c, gdt, gdt_limit, code_sel, code, data_sel, data);
	c->cr0 = X86_CR0_PE | X86_CR0_ET;
}

/* ---- command line ------------------------------------------------------------ */

int boot_write_cmdline(const struct guest_ram *ram, const char *cmdline, uint64_t max,
		       const char *limit_name, char *err, size_t errlen)
{
	size_t n = strlen(cmdline);
	if (max > BOOT_CMDLINE_MAX - 1)
		max = BOOT_CMDLINE_MAX - 1;
	if (n > max)
		return boot_fail(-E2BIG, err, errlen,
				 "the command line is %zu bytes long, more than the %llu "
				 "the kernel accepts (%s)",
				 n, (unsigned long long)max, limit_name);
	return boot_write(ram, BOOT_CMDLINE_GPA, cmdline, n + 1, "the command line",
			  err, errlen);
}

/* ---- ELF64 --------------------------------------------------------------------- */

_Static_assert(sizeof(Elf64_Ehdr) == 64, "ELF64 header");
_Static_assert(sizeof(Elf64_Phdr) == 56, "ELF64 program header");
_Static_assert(sizeof(Elf64_Shdr) == 64, "ELF64 section header");
_Static_assert(sizeof(Elf64_Nhdr) == 12, "ELF note header");

/* [off, off + size) inside [0, len)? */
static bool in_file(uint64_t off, uint64_t size, size_t len)
{
	return off <= len && size <= len - off;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static bool note_name_is(const uint8_t *name, uint32_t namesz, const char *want)
{
	size_t n = strlen(want);
	/* namesz counts the NUL; tolerate producers that leave it out. */
	if (namesz == n + 1)
		return !memcmp(name, want, n) && name[n] == 0;
	if (namesz == n)
		return !memcmp(name, want, n);
	return false;
}

/* Walk the notes in [off, off + size) of the file (already bounds-checked).
 * A note running past the end is an error: the file is corrupt. */
static int scan_notes(struct elf_image *img, uint64_t off, uint64_t size, uint64_t align,
		      char *err, size_t errlen)
{
	const uint8_t *p = img->buf + off;
	uint64_t a = align == 8 ? 8 : 4;
	uint64_t pos = 0;
	while (size - pos >= sizeof(Elf64_Nhdr)) {
		Elf64_Nhdr nh;
		memcpy(&nh, p + pos, sizeof nh);
		uint64_t name_off = pos + sizeof nh;
		uint64_t desc_off = name_off + align_up(nh.n_namesz, a);
		uint64_t next = desc_off + align_up(nh.n_descsz, a);
		/* The last note's padding may be missing. */
		if (desc_off > size || nh.n_namesz > size - name_off ||
		    nh.n_descsz > size - desc_off)
			return boot_fail(-EINVAL, err, errlen,
					 "corrupt ELF: a note at file offset %#llx runs past the "
					 "end of its note area",
					 (unsigned long long)(off + pos));
		const uint8_t *name = p + name_off, *desc = p + desc_off;
		if (nh.n_type == TESTIMG_NOTE_TYPE &&
		    note_name_is(name, nh.n_namesz, TESTIMG_NOTE_NAME))
			img->has_testimg_note = true;
		if (nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY && note_name_is(name, nh.n_namesz, "Xen")) {
			uint64_t v = 0;
			if (nh.n_descsz == 4) {
				uint32_t v32;
				memcpy(&v32, desc, 4);
				v = v32;
			} else if (nh.n_descsz == 8) {
				memcpy(&v, desc, 8);
			} else {
				return boot_fail(-EINVAL, err, errlen,
						 "corrupt ELF: the PVH entry note "
						 "(XEN_ELFNOTE_PHYS32_ENTRY) has a %u-byte value, "
						 "expected 4 or 8", nh.n_descsz);
			}
			img->has_pvh_note = true;
			img->pvh_entry = v;
		}
		if (next >= size)
			break;
		pos = next;
	}
	return 0;
}

void elf_phdr(const struct elf_image *img, unsigned i, struct elf_phdr *ph)
{
	Elf64_Phdr p;
	memcpy(&p, img->buf + img->phoff + (uint64_t)i * sizeof p, sizeof p);
	ph->type = p.p_type;
	ph->flags = p.p_flags;
	ph->offset = p.p_offset;
	ph->vaddr = p.p_vaddr;
	ph->paddr = p.p_paddr;
	ph->filesz = p.p_filesz;
	ph->memsz = p.p_memsz;
	ph->align = p.p_align;
}

int elf_parse(const uint8_t *buf, size_t len, struct elf_image *img, char *err, size_t errlen)
{
	memset(img, 0, sizeof *img);
	img->buf = buf;
	img->len = len;
	if (len < EI_NIDENT || memcmp(buf, ELFMAG, SELFMAG))
		return boot_fail(-EINVAL, err, errlen, "not an ELF file (no \\x7fELF magic)");
	if (buf[EI_CLASS] == ELFCLASS32)
		return boot_fail(-EINVAL, err, errlen,
				 "32-bit ELF (ELFCLASS32): only 64-bit x86-64 ELF images boot");
	if (buf[EI_CLASS] != ELFCLASS64)
		return boot_fail(-EINVAL, err, errlen, "corrupt ELF: unknown ELF class %u",
				 buf[EI_CLASS]);
	if (buf[EI_DATA] != ELFDATA2LSB)
		return boot_fail(-EINVAL, err, errlen,
				 "ELF is not little-endian (EI_DATA %u): not an x86-64 image",
				 buf[EI_DATA]);
	if (len < sizeof(Elf64_Ehdr))
		return boot_fail(-EINVAL, err, errlen,
				 "truncated ELF: %zu bytes, shorter than the 64-byte ELF header", len);
	Elf64_Ehdr eh;
	memcpy(&eh, buf, sizeof eh);
	if (eh.e_machine != EM_X86_64)
		return boot_fail(-EINVAL, err, errlen,
				 "ELF for machine %u, not x86-64 (%u)", eh.e_machine, EM_X86_64);
	if (eh.e_type != ET_EXEC)
		return boot_fail(-EINVAL, err, errlen,
				 "ELF type %u is not an executable (ET_EXEC)", eh.e_type);
	if (eh.e_phnum == 0 || eh.e_phnum == PN_XNUM)
		return boot_fail(-EINVAL, err, errlen,
				 "corrupt ELF: %u program headers", eh.e_phnum);
	if (eh.e_phentsize != sizeof(Elf64_Phdr))
		return boot_fail(-EINVAL, err, errlen,
				 "corrupt ELF: program header size %u, expected %zu",
				 eh.e_phentsize, sizeof(Elf64_Phdr));
	uint64_t phsize = (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr);
	if (!in_file(eh.e_phoff, phsize, len))
		return boot_fail(-EINVAL, err, errlen,
				 "corrupt ELF: the program headers at offset %#llx (%u of them) "
				 "lie beyond the end of the file (%zu bytes)",
				 (unsigned long long)eh.e_phoff, eh.e_phnum, len);
	img->entry = eh.e_entry;
	img->phoff = eh.e_phoff;
	img->phnum = eh.e_phnum;

	bool had_notes = false;
	img->load_lo = UINT64_MAX;
	for (unsigned i = 0; i < img->phnum; i++) {
		struct elf_phdr ph;
		elf_phdr(img, i, &ph);
		if (ph.type == PT_LOAD) {
			if (!in_file(ph.offset, ph.filesz, len))
				return boot_fail(-EINVAL, err, errlen,
						 "truncated ELF: segment %u's %llu bytes at offset "
						 "%#llx lie beyond the end of the file (%zu bytes)",
						 i, (unsigned long long)ph.filesz,
						 (unsigned long long)ph.offset, len);
			if (ph.filesz > ph.memsz)
				return boot_fail(-EINVAL, err, errlen,
						 "corrupt ELF: segment %u has p_filesz %#llx > p_memsz %#llx",
						 i, (unsigned long long)ph.filesz,
						 (unsigned long long)ph.memsz);
			if (ph.memsz > UINT64_MAX - ph.paddr)
				return boot_fail(-EINVAL, err, errlen,
						 "corrupt ELF: segment %u at %#llx wraps around the "
						 "address space", i, (unsigned long long)ph.paddr);
			if (!ph.memsz)
				continue;
			img->nr_load++;
			if (ph.paddr < img->load_lo)
				img->load_lo = ph.paddr;
			if (ph.paddr + ph.memsz > img->load_hi)
				img->load_hi = ph.paddr + ph.memsz;
		} else if (ph.type == PT_NOTE) {
			if (!in_file(ph.offset, ph.filesz, len))
				return boot_fail(-EINVAL, err, errlen,
						 "truncated ELF: the note segment at offset %#llx "
						 "(%llu bytes) lies beyond the end of the file (%zu bytes)",
						 (unsigned long long)ph.offset,
						 (unsigned long long)ph.filesz, len);
			had_notes = true;
			int ret = scan_notes(img, ph.offset, ph.filesz, ph.align, err, errlen);
			if (ret < 0)
				return ret;
		}
	}
	if (!img->nr_load)
		return boot_fail(-EINVAL, err, errlen, "ELF has no loadable (PT_LOAD) segment");
	if (img->load_lo == UINT64_MAX)
		img->load_lo = 0;

	/* No PT_NOTE: look at SHT_NOTE sections, if the section headers are
	 * sane (they are optional: a bad table is ignored, not an error). */
	if (!had_notes && eh.e_shnum && eh.e_shentsize == sizeof(Elf64_Shdr) &&
	    in_file(eh.e_shoff, (uint64_t)eh.e_shnum * sizeof(Elf64_Shdr), len)) {
		for (unsigned i = 0; i < eh.e_shnum; i++) {
			Elf64_Shdr sh;
			memcpy(&sh, buf + eh.e_shoff + (uint64_t)i * sizeof sh, sizeof sh);
			if (sh.sh_type != SHT_NOTE || !in_file(sh.sh_offset, sh.sh_size, len))
				continue;
			int ret = scan_notes(img, sh.sh_offset, sh.sh_size, sh.sh_addralign,
					     err, errlen);
			if (ret < 0)
				return ret;
		}
	}
	return 0;
}

int elf_load_segments(const struct guest_ram *ram, const struct elf_image *img,
		      uint64_t min_gpa, const char *path, uint64_t *loaded,
		      char *err, size_t errlen)
{
	char s[32];
	/* Check every segment before writing any. */
	for (unsigned i = 0; i < img->phnum; i++) {
		struct elf_phdr ph;
		elf_phdr(img, i, &ph);
		if (ph.type != PT_LOAD || !ph.memsz)
			continue;
		if (ph.paddr < min_gpa || ph.paddr + ph.memsz > ram->low_size ||
		    !boot_ram_contains(ram, ph.paddr, ph.memsz))
			return boot_fail(-ENOSPC, err, errlen,
					 "kernel %s: segment %u [%#llx, %#llx) is outside guest "
					 "RAM: it must lie in low RAM [%#llx, %#llx) (%s of low RAM)",
					 path, i, (unsigned long long)ph.paddr,
					 (unsigned long long)(ph.paddr + ph.memsz),
					 (unsigned long long)min_gpa,
					 (unsigned long long)ram->low_size,
					 boot_size_str(ram->low_size, s, sizeof s));
	}
	uint64_t total = 0;
	for (unsigned i = 0; i < img->phnum; i++) {
		struct elf_phdr ph;
		elf_phdr(img, i, &ph);
		if (ph.type != PT_LOAD || !ph.memsz)
			continue;
		int ret = boot_write(ram, ph.paddr, img->buf + ph.offset, ph.filesz,
				     "an ELF segment", err, errlen);
		if (ret == 0)
			ret = boot_zero(ram, ph.paddr + ph.filesz, ph.memsz - ph.filesz,
					"an ELF segment's bss", err, errlen);
		if (ret < 0)
			return ret;
		total += ph.filesz;
	}
	*loaded = total;
	return 0;
}
