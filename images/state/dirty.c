// SPDX-License-Identifier: GPL-2.0-only
/*
 * state_dirty - a guest that writes the pages the test names, and nothing
 * else (tests/vmm/test_dirty_log.c, issue 17: KVM's dirty log).
 *
 * vCPU 0 reads commands from port DIRTY_PORT, three 32-bit INs each:
 *   op, first page (gpa >> 12), count
 *   op 1: write the 64-bit page number into the first word of pages
 *         [first, first + count * stride), every `stride`-th (op >> 8, 0 = 1)
 *   op 0 or all-ones (the port unclaimed, under `vmm run`): exit 0
 *   any other op: exit 1
 * The next IN is the test's sign that the command's writes are done.  The
 * image writes nothing else but its stack, below TESTIMG_LOAD_BASE.  Other
 * vCPUs halt.
 */
#include "lib.h"

#define DIRTY_PORT 0x5e8

int main(const struct testimg_boot_info *bi, unsigned cpu)
{
	(void)bi;
	if (cpu != 0)
		halt_forever();
	for (;;) {
		uint32_t op = inl(DIRTY_PORT);
		if (op == 0 || op == 0xffffffffu)
			return 0;
		uint64_t first = inl(DIRTY_PORT);
		uint64_t count = inl(DIRTY_PORT);
		uint64_t stride = op >> 8 ? op >> 8 : 1;
		if ((op & 0xff) != 1)
			return 1;
		for (uint64_t i = 0; i < count; i++) {
			uint64_t page = first + i * stride;
			*(volatile uint64_t *)(page << 12) = page;
		}
	}
}
