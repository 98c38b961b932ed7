// SPDX-License-Identifier: GPL-2.0-only
/*
 * memtouch - vCPU 0 writes one 64-bit word per 4 KiB page of the free RAM
 * ([TESTIMG_FREE_BASE, ram_low_end) and the high range), then reads every
 * word back and checks it, so each page's guest-physical address must reach
 * its own host memory.  The word's offset in the page and its value are
 * functions of the page's address, so a page mapped at the wrong place (or
 * two pages sharing memory) reads back wrong.  One word per page only:
 * every instruction may be emulated (GUEST-LINUX.md).
 *
 *   memtouch: start (N vcpus, M MiB; low [0x400000, 0x...), high [0x..., 0x...))
 *   memtouch: P pages ok, checksum 0x...          -> exit 0
 *   memtouch: bad word at 0x...: read 0x..., expected 0x...   -> exit 1
 */
#include "lib.h"

#define PAGE 4096ULL

struct range {
	uint64_t start, end;
};

/* Offset of the word in the page: one of 64 cache lines, by page number. */
static inline uint64_t word_addr(uint64_t page)
{
	return page + (((page >> 12) & 63) << 6);
}

static inline uint64_t pattern(uint64_t addr)
{
	return (addr * 0x9e3779b97f4a7c15ULL) ^ ~addr;
}

static void write_range(struct range r)
{
	for (uint64_t p = r.start; p < r.end; p += PAGE) {
		uint64_t a = word_addr(p);
		*(volatile uint64_t *)a = pattern(a);
	}
}

/* Returns the first bad address, or 0; folds every word into *sum. */
static uint64_t check_range(struct range r, uint64_t *sum, uint64_t *pages)
{
	uint64_t h = *sum;
	for (uint64_t p = r.start; p < r.end; p += PAGE) {
		uint64_t a = word_addr(p);
		uint64_t v = *(volatile uint64_t *)a;
		if (v != pattern(a)) {
			printf("memtouch: bad word at 0x%lx: read 0x%016lx, expected 0x%016lx "
			       "(after %lu good pages)\n", a, v, pattern(a), *pages);
			return a;
		}
		h = (h ^ v) * 0x100000001b3ULL; /* FNV-1a, 64 bits, one word at a time */
		++*pages;
	}
	*sum = h;
	return 0;
}

int main(const struct testimg_boot_info *bi, unsigned cpu)
{
	if (cpu != 0)
		halt_forever();

	/* Free low RAM starts above the image (which the linker keeps below
	 * TESTIMG_FREE_BASE); whole pages only. */
	uint64_t lo = TESTIMG_FREE_BASE;
	if ((uint64_t)(uintptr_t)__image_end > lo)
		lo = ((uint64_t)(uintptr_t)__image_end + PAGE - 1) & ~(PAGE - 1);
	struct range r[2] = {
		{ lo, bi->ram_low_end & ~(PAGE - 1) },
		{ (bi->ram_high_start + PAGE - 1) & ~(PAGE - 1),
		  (bi->ram_high_start + bi->ram_high_size) & ~(PAGE - 1) },
	};
	for (int i = 0; i < 2; i++)
		if (r[i].end < r[i].start)
			r[i].end = r[i].start;

	printf("memtouch: start (%u vcpus, %lu MiB; low [0x%lx, 0x%lx), high [0x%lx, 0x%lx))\n",
	       bi->nr_vcpus, (unsigned long)(bi->ram_size / MiB), r[0].start, r[0].end,
	       r[1].start, r[1].end);

	for (int i = 0; i < 2; i++)
		write_range(r[i]);

	uint64_t sum = 0xcbf29ce484222325ULL, pages = 0;
	for (int i = 0; i < 2; i++)
		if (check_range(r[i], &sum, &pages))
			return 1;
	printf("memtouch: %lu pages ok, checksum 0x%016lx\n", pages, sum);
	return 0;
}
