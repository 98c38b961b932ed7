// SPDX-License-Identifier: GPL-2.0-only
/*
 * e820.c - the e820 map of e820.h, from the guest RAM's two ranges.
 */
#include "boot/e820.h"

#include <errno.h>

/* Contract (e820.h): the map above.  Returns the number of entries, or
 * -ENOSPC if max is too small for them (out is then filled up to max). */
int boot_e820(const struct guest_ram *ram, struct e820_entry *out, int max)
{
	struct e820_entry e[4];
	int n = 0;
	uint64_t low = ram->low_size;
	uint64_t base_end = low < BOOT_EBDA_START ? low : BOOT_EBDA_START;
	if (base_end)
		e[n++] = (struct e820_entry){ 0, base_end, 1 };
	e[n++] = (struct e820_entry){ BOOT_EBDA_START, BOOT_HIGH_MEMORY - BOOT_EBDA_START, 2 };
	if (low > BOOT_HIGH_MEMORY)
		e[n++] = (struct e820_entry){ BOOT_HIGH_MEMORY, low - BOOT_HIGH_MEMORY, 1 };
	if (ram->high_size)
		e[n++] = (struct e820_entry){ BOOT_HIGH_RAM_BASE, ram->high_size, 1 };
	for (int i = 0; i < n && i < max; i++)
		out[i] = e[i];
	return n <= max ? n : -ENOSPC;
}
