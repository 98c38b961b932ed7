/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * mptable.h - an Intel MultiProcessor Specification 1.4 table, so that a
 * Linux guest without ACPI finds its CPUs, its IOAPIC and the ISA IRQ
 * routing.  Pure: written into guest memory through guestmm.
 *
 * At MPTABLE_GPA (0x9fc00, the first KiB of the EBDA, where Linux's
 * smp_scan_config() looks, inside the e820-reserved [0x9fc00, 1 MiB)):
 *   the 16-byte floating pointer "_MP_", then the configuration table
 *   "PCMP" with, in this order: one processor entry per vCPU (APIC id =
 *   index, enabled, BSP flag on vCPU 0), one ISA bus (id 0), one IOAPIC
 *   (id = nr_vcpus, 0xfec00000), 16 I/O interrupt entries (ISA IRQ n ->
 *   IOAPIC pin n, see mptable.c on IRQ 0) and two local interrupt entries
 *   (ExtINT -> BSP LINT0, NMI -> every LAPIC's LINT1).
 */
#ifndef VMM_MPTABLE_H
#define VMM_MPTABLE_H

#include "boot/boot_types.h"

#include <stddef.h>

#define MPTABLE_GPA 0x9fc00ULL
#define MPTABLE_END 0x100000ULL        /* the table may grow up to 1 MiB */
#define MPTABLE_LAPIC_BASE 0xfee00000u
#define MPTABLE_IOAPIC_BASE 0xfec00000u
#define MPTABLE_ISA_IRQS 16
#define MPTABLE_MAX_VCPUS 254          /* APIC ids 0..253, the IOAPIC takes nr_vcpus */

/* Entries in the configuration table for n vCPUs. */
#define MPTABLE_ENTRIES(n) ((n) + 1 + 1 + MPTABLE_ISA_IRQS + 2)

/* Write the MP floating pointer and configuration table for nr_vcpus
 * (1 .. MPTABLE_MAX_VCPUS) at MPTABLE_GPA, checksums included.  0, or
 * -E2BIG (too many vCPUs) / -EFAULT (guest memory missing) with one
 * sentence in err. */
int mptable_write(const struct guest_ram *ram, unsigned nr_vcpus, char *err, size_t errlen);

#endif
