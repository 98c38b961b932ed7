// SPDX-License-Identifier: GPL-2.0-only
/*
 * dirtier - the guest of scripts/bench-migration (issue 17): memory that
 * keeps being written at a steady rate while the VM migrates.
 *
 * vCPU 0 first writes one 64-bit word in every 4 KiB page of the free RAM
 * (low and high), so that all of it holds data, then loops for ever over a
 * working set of DIRTIER_WSET_MIB MiB from TESTIMG_FREE_BASE, rewriting one
 * word per 4 KiB page each time round, with DIRTIER_DELAY spins of
 * cpu_relax() between two pages (0: as fast as the vCPU goes).  A working
 * set of 0 halts instead: a guest that touched its memory once and idles.
 * Built once per rate by images/meson.build (dirtier_idle, dirtier_slow,
 * dirtier_fast).  Other vCPUs halt.  It never exits: the benchmark kills
 * the VMM.
 *
 *   dirtier: touched M MiB; looping over W MiB, delay D
 *   dirtier: touched M MiB; idle
 */
#include "lib.h"

#define PAGE 4096ULL

#ifndef DIRTIER_WSET_MIB
#define DIRTIER_WSET_MIB 0
#endif
#ifndef DIRTIER_DELAY
#define DIRTIER_DELAY 0
#endif

static inline uint64_t word_addr(uint64_t page)
{
	return page + (((page >> 12) & 63) << 6);
}

static void touch(uint64_t start, uint64_t end, uint64_t v)
{
	for (uint64_t p = start; p < end; p += PAGE)
		*(volatile uint64_t *)word_addr(p) = p ^ v;
}

int main(const struct testimg_boot_info *bi, unsigned cpu)
{
	if (cpu != 0)
		halt_forever();
	uint64_t lo = TESTIMG_FREE_BASE;
	if ((uint64_t)(uintptr_t)__image_end > lo)
		lo = ((uint64_t)(uintptr_t)__image_end + PAGE - 1) & ~(PAGE - 1);
	uint64_t end = bi->ram_low_end & ~(PAGE - 1);
	touch(lo, end, 0);
	touch(bi->ram_high_start, bi->ram_high_start + bi->ram_high_size, 0);
	uint64_t touched = (end - lo + bi->ram_high_size) / MiB;
	uint64_t wend = lo + (uint64_t)DIRTIER_WSET_MIB * MiB;
	if (wend > end)
		wend = end;
	if (wend <= lo) {
		printf("dirtier: touched %lu MiB; idle\n", (unsigned long)touched);
		halt_forever();
	}
	printf("dirtier: touched %lu MiB; looping over %lu MiB, delay %u\n", (unsigned long)touched,
	       (unsigned long)((wend - lo) / MiB), (unsigned)DIRTIER_DELAY);
	for (uint64_t r = 1;; r++) {
		for (uint64_t p = lo; p < wend; p += PAGE) {
			*(volatile uint64_t *)word_addr(p) = p ^ r;
			for (unsigned d = DIRTIER_DELAY; d; d--)
				cpu_relax();
		}
	}
}
