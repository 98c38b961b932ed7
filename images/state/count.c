// SPDX-License-Identifier: GPL-2.0-only
/*
 * state_count - a guest whose result shows whether its vCPU state survived
 * a save and restore (tests/vmm/test_vm_state.c, issue 16).
 *
 * vCPU 0 runs COUNT_N rounds; each reads port COUNT_PORT (one KVM_EXIT_IO,
 * whose IN result KVM puts into RAX only at the next KVM_RUN), checks it,
 * adds a pseudo-random number to a register accumulator and counts in
 * memory.  The test's port is a sequence: each read returns one more than
 * the last, so an IN lost or done twice across the snapshot shows.  At the
 * end the accumulator is computed again without I/O and compared: a
 * register, the memory counter or an IN's result lost makes it exit 1.
 * The port is unclaimed under `vmm run` (every read all-ones: the image
 * passes there too).  Other vCPUs halt.
 *
 *   count: start
 *   count: round K          (every COUNT_N / 8 rounds)
 *   count: done ACC
 */
#include "lib.h"

#define COUNT_PORT 0x5e0
#define COUNT_N 40000u
#define SEED 0x9e3779b97f4a7c15ULL

int main(const struct testimg_boot_info *bi, unsigned cpu)
{
	(void)bi;
	if (cpu != 0)
		halt_forever();
	volatile uint64_t *mem = (volatile uint64_t *)TESTIMG_FREE_BASE;
	mem[0] = 0;
	printf("count: start\n");
	uint32_t prev = inl(COUNT_PORT);
	uint32_t step = prev == 0xffffffffu ? 0 : 1; /* unclaimed: all-ones each time */
	uint64_t s = SEED, acc = 0;
	for (uint32_t i = 0; i < COUNT_N; i++) {
		uint32_t v = inl(COUNT_PORT);
		if (v != prev + step) {
			printf("count: round %u: IN read %x after %x\n", i, v, prev);
			return 1;
		}
		prev = v;
		acc += rand64(&s) ^ i;
		mem[0]++;
		if (i % (COUNT_N / 8) == 0)
			printf("count: round %u\n", i);
	}
	uint64_t s2 = SEED, acc2 = 0;
	for (uint32_t i = 0; i < COUNT_N; i++)
		acc2 += rand64(&s2) ^ i;
	if (acc != acc2 || mem[0] != COUNT_N) {
		printf("count: wrong: acc %lx, expected %lx; memory counter %lu of %u\n",
		       (unsigned long)acc, (unsigned long)acc2, (unsigned long)mem[0], COUNT_N);
		return 1;
	}
	printf("count: done %lx\n", (unsigned long)acc);
	return 0;
}
