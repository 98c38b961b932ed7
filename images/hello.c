// SPDX-License-Identifier: GPL-2.0-only
/*
 * hello - the smallest test image: vCPU 0 prints one line on COM1 and
 * exits 0; every other vCPU halts.  The line is also its banner:
 *   hello from vmm test image (N vcpus, M MiB)
 */
#include "lib.h"

int main(const struct testimg_boot_info *bi, unsigned cpu)
{
	if (cpu != 0)
		halt_forever();
	printf("hello from vmm test image (%u vcpus, %lu MiB)\n", bi->nr_vcpus,
	       (unsigned long)(bi->ram_size / MiB));
	return 0;
}
