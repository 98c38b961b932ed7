// SPDX-License-Identifier: GPL-2.0-only
/*
 * devices.c - the device set of a vmm VM, attached and detached as one:
 * the bus is emptied, then the UART, i8042, debug-exit port and testdev
 * register (and reset) themselves for the new VM.  Used for every VM
 * `vmm run` and the control API create, including a reboot's new one.
 *
 * Threads: main thread only, while no vCPU thread runs (the bus is read
 * without locks by vCPU threads, bus.h).
 */
#include "core/bus.h"
#include "devices/devices.h"

int devices_attach(struct vm *vm, int console_fd)
{
	bus_reset();
	if (serial_init(vm, console_fd) < 0 || i8042_init(vm) < 0 || debugexit_init(vm) < 0 ||
	    testdev_init(vm) < 0) {
		devices_detach();
		return -1;
	}
	return 0;
}

void devices_detach(void)
{
	serial_detach();
	i8042_detach();
	bus_reset();
}
