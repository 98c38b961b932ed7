// SPDX-License-Identifier: GPL-2.0-only
/*
 * exits - a steady stream of exits whose VMM handlers walk guest memory
 * (the testdev of testimg.h).  vCPU 0, for ITERATIONS rounds:
 *   fill a buffer of 64..191 bytes with new content; compute its
 *   testimg_checksum(); tell the testdev its GPA and length (three port
 *   writes); read the VMM's checksum with inl(0x518) and again with an MMIO
 *   readl(+0) and compare both; have the VMM store a word into the buffer
 *   with writel(+4, v) and check the guest sees v there (and, every 16th
 *   round, that the VMM's checksum of the changed buffer matches too).
 * The buffer sits in free RAM across the 2 MiB boundary at 6 MiB, so a
 * long one spans two huge pages (and whatever region boundary the VMM
 * has there).  Before the loop, a range in the MMIO hole must read back
 * as all-ones.  Test images get no command line, so the count is fixed.
 *
 *   exits: start (N vcpus, M MiB; K iterations, buffer 0x..., 64..191 bytes)
 *   exits: K iterations ok             -> exit 0
 *   exits: iteration I: ...            -> exit 1 (the first mismatch)
 */
#include "lib.h"

#ifndef ITERATIONS
#define ITERATIONS 2000u
#endif
#define MIN_LEN 64u
#define MAX_LEN 191u
#define BUF_GPA (TESTIMG_FREE_BASE + 2 * MiB - 128) /* 0x5fff80 */

/* Fallback when the guest has too little RAM for BUF_GPA (not expected). */
static uint64_t small_ram_buf[(MAX_LEN + 8) / 8];

static void set_range(uint64_t gpa, uint32_t len)
{
	outl(TESTDEV_PORT_GPA_LO, (uint32_t)gpa);
	outl(TESTDEV_PORT_GPA_HI, (uint32_t)(gpa >> 32));
	outl(TESTDEV_PORT_LEN, len);
}

int main(const struct testimg_boot_info *bi, unsigned cpu)
{
	if (cpu != 0)
		halt_forever();

	uint64_t gpa = BUF_GPA;
	if (bi->ram_low_end < gpa + MAX_LEN + 8)
		gpa = (uint64_t)(uintptr_t)small_ram_buf;
	volatile uint64_t *words = (volatile uint64_t *)(uintptr_t)gpa;
	const uint8_t *bytes = (const uint8_t *)(uintptr_t)gpa;

	printf("exits: start (%u vcpus, %lu MiB; %u iterations, buffer 0x%lx, %u..%u bytes)\n",
	       bi->nr_vcpus, (unsigned long)(bi->ram_size / MiB), ITERATIONS, gpa, MIN_LEN,
	       MAX_LEN);

	/* A range that is not RAM reads as all-ones, on both paths. */
	set_range(TESTDEV_MMIO, 16);
	uint32_t p = inl(TESTDEV_PORT_LEN), m = readl(TESTDEV_MMIO + TESTDEV_MMIO_SUM);
	if (p != 0xffffffffu || m != 0xffffffffu) {
		printf("exits: checksum of [0x%lx, +16) (MMIO hole): port 0x%08x, mmio 0x%08x, "
		       "expected 0xffffffff\n", (uint64_t)TESTDEV_MMIO, p, m);
		return 1;
	}

	uint64_t seed = 0x2545f4914f6cdd1dULL;
	for (uint32_t i = 0; i < ITERATIONS; i++) {
		uint32_t len = MIN_LEN + (uint32_t)(rand64(&seed) % (MAX_LEN - MIN_LEN + 1));
		/* An LCG per word: every instruction counts when emulated. */
		uint64_t x = rand64(&seed);
		for (uint32_t w = 0; w < (len + 7) / 8; w++)
			words[w] = x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		barrier();
		uint32_t sum = testimg_checksum(bytes, len);

		set_range(gpa, len);
		p = inl(TESTDEV_PORT_LEN);
		m = readl(TESTDEV_MMIO + TESTDEV_MMIO_SUM);
		if (p != sum || m != sum) {
			printf("exits: iteration %u: checksum of [0x%lx, +%u): port 0x%08x, "
			       "mmio 0x%08x, guest 0x%08x\n", i, gpa, len, p, m, sum);
			return 1;
		}

		uint32_t v = (uint32_t)rand64(&seed);
		writel(TESTDEV_MMIO + TESTDEV_MMIO_STORE, v);
		uint32_t got = *(volatile uint32_t *)(uintptr_t)gpa;
		if (got != v) {
			printf("exits: iteration %u: MMIO store of 0x%08x to 0x%lx, guest reads 0x%08x\n",
			       i, v, gpa, got);
			return 1;
		}
		if (i % 16 == 0) {
			sum = testimg_checksum(bytes, len);
			p = inl(TESTDEV_PORT_LEN);
			if (p != sum) {
				printf("exits: iteration %u: after the store, port checksum 0x%08x, "
				       "guest 0x%08x\n", i, p, sum);
				return 1;
			}
		}
	}
	printf("exits: %u iterations ok\n", ITERATIONS);
	return 0;
}
