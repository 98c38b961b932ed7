// SPDX-License-Identifier: GPL-2.0-only
/*
 * debugexit.c - the debug-exit port test images report their result on:
 * outl(TESTIMG_PORT_EXIT, code) stops the VM, and `vmm run` exits with
 * code & 0xff.  Any width of write counts; reads return all-ones.
 */
#include "core/bus.h"
#include "devices/devices.h"
#include "core/vm.h"

#include <string.h>
#include <testimg.h>

static void debugexit_io(void *opaque, struct vcpu *cpu, uint64_t off, uint8_t *data,
			 unsigned len, bool is_write)
{
	struct vm *vm = opaque;
	(void)cpu;
	(void)off;
	if (!is_write) {
		memset(data, 0xff, len);
		return;
	}
	uint32_t code = 0;
	memcpy(&code, data, len < 4 ? len : 4);
	vm_stop(vm, (int)(code & 0xff), "guest wrote %u to the debug-exit port", code);
}

int debugexit_init(struct vm *vm)
{
	return bus_register(BUS_PIO, TESTIMG_PORT_EXIT, 4, debugexit_io, vm, "debug-exit");
}
