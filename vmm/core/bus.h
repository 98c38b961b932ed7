/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * bus.h - the port-I/O and MMIO buses devices register ranges on.
 *
 * A vCPU thread that exits on an access looks the address up and calls the
 * device's handler.  Registration happens before the vCPUs start (later
 * issues add virtio-mmio devices the same way); lookups take no lock.
 * An access nobody claims is logged once per address and reads as
 * all-ones: never fatal, whatever the guest does.
 */
#ifndef VMM_BUS_H
#define VMM_BUS_H

#include <stdbool.h>
#include <stdint.h>

struct vcpu;

/* Handle an access of len bytes (1, 2, 4 or 8) at base + offset.  For a
 * read, fill data; for a write, data holds the bytes.  Called on the vCPU
 * thread that exited; the device does its own locking. */
typedef void (*bus_handler)(void *opaque, struct vcpu *cpu, uint64_t offset, uint8_t *data,
			    unsigned len, bool is_write);

enum bus_kind { BUS_PIO, BUS_MMIO };

struct bus_range {
	uint64_t base, len;
	bus_handler fn;
	void *opaque;
	const char *name;
};

/* Register [base, base + len) on a bus.  -EEXIST if it overlaps a range
 * already there, -ENOSPC if the bus is full.  Not thread-safe against
 * dispatch: register everything before vCPUs run. */
int bus_register(enum bus_kind kind, uint64_t base, uint64_t len, bus_handler fn, void *opaque,
		 const char *name);

/* Dispatch one access; false if no device claimed it (the access was then
 * logged and a read filled with all-ones). */
bool bus_dispatch(enum bus_kind kind, struct vcpu *cpu, uint64_t addr, uint8_t *data,
		  unsigned len, bool is_write);

/* Forget every range (tests; between VMs in one process). */
void bus_reset(void);
/* Accesses nobody claimed since the last bus_reset() (any thread; relaxed). */
uint64_t bus_unclaimed(enum bus_kind kind);

#endif
