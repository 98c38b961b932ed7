/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vmm/boot/ - kernel images into guest memory: image detection, the
 * bzImage, PVH and testimg loaders, x86 page tables and descriptors, the
 * e820 map and the MP table.  Pure: no KVM, no other vmm subsystem; calls
 * only guestmm (guest writes) and images/include/testimg.h.  Everyone above
 * may call it; it calls nothing above.
 */
/*
 * boot.h - turning a kernel image into guest memory contents and initial
 * vCPU state: the boot/ subsystem's entry points.  No KVM here: the loaders write guest memory through guestmm
 * and describe the registers; vcpu.c loads them with KVM_SET_SREGS/REGS.
 *
 * Images (detected from their bytes, never from the file name):
 *   bzImage      Linux x86 boot protocol >= 2.12, 64-bit entry (XLF_KERNEL_64):
 *                boot_params (zero page) with e820, command line, initrd.
 *   pvh          ELF vmlinux with a XEN_ELFNOTE_PHYS32_ENTRY note: 32-bit
 *                protected-mode entry, EBX = hvm_start_info with its memmap.
 *   testimg      the project's test images (images/include/testimg.h):
 *                64-bit entry on every vCPU, identity-mapped page tables.
 *
 * Guest-physical layout (x86):
 *   [0, 640 KiB)             RAM (e820 RAM)
 *   [640 KiB, 1 MiB)         reserved (EBDA/VGA/BIOS area; MP table at 0x9fc00)
 *   [1 MiB, low_end)         RAM, low_end = min(ram, 3 GiB)
 *   [3 GiB, 4 GiB)           MMIO hole (devices, LAPIC, IOAPIC)
 *   [4 GiB, 4 GiB + rest)    RAM above the hole
 */
#ifndef VMM_BOOT_H
#define VMM_BOOT_H

#include "boot/boot_types.h"
#include "boot/e820.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

const char *image_kind_name(enum image_kind k);

/* Identify an image from its first bytes (and the whole file for ELF
 * notes).  IMAGE_UNKNOWN with a reason in err for anything else: an ELF
 * without a PVH note, a 32-bit-only bzImage, a truncated header... */
enum image_kind image_detect(const uint8_t *buf, size_t len, char *err, size_t errlen);

/* Load cfg->kernel (and initrd, command line) into guest RAM and describe
 * the boot CPU.  Writes the e820 map / hvm_start_info memmap / testimg boot
 * info, the MP table (bzImage and pvh, any number of vCPUs), page tables and
 * GDT where the entry mode needs them.  On failure: -errno, one clear
 * sentence in err (the file, what is wrong with it), and guest RAM may hold
 * partial contents (the caller discards the VM). */
int boot_load(const struct guest_ram *ram, const struct boot_config *cfg,
	      struct boot_plan *plan, char *err, size_t errlen);

/* The state vCPU `index` starts in: the BSP state for index 0; for a
 * testimg every vCPU gets the entry with its own RSI and RSP; for Linux the
 * APs are not started here (false: leave them to INIT/SIPI). */
bool boot_cpu_state(const struct boot_plan *plan, unsigned index, struct boot_cpu *out);

#endif
