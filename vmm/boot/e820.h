/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * e820.h - the e820 memory map the VMM gives every guest (boot_e820()),
 * written by the loaders (zero page, PVH memmap) and checked by
 * boot_ram_contains():
 *   RAM       [0, 0x9fc00)
 *   reserved  [0x9fc00, 0x100000)            EBDA, VGA, BIOS; the MP table
 *   RAM       [1 MiB, low_size)              if low_size > 1 MiB
 *   RAM       [4 GiB, 4 GiB + high_size)     if high_size > 0
 */
#ifndef VMM_E820_H
#define VMM_E820_H

#include "boot/boot_types.h"

/* The map above (for the loaders, logs and tests). */
struct e820_entry {
	uint64_t addr, size;
	uint32_t type;            /* 1 RAM, 2 reserved */
};
int boot_e820(const struct guest_ram *ram, struct e820_entry *out, int max);

#endif
