// SPDX-License-Identifier: GPL-2.0-only
/*
 * devices.c - the device set of a vmm VM, attached and detached as one:
 * the bus is emptied, then the UART and i8042 register (and reset)
 * themselves for the new VM, and the debug-exit port and testdev when the
 * machine asks for them (a test image: issue 13, finding 8 -- any guest
 * could otherwise pick the VMM's exit status, 3 mimicking a triple fault
 * to management tools).  Used for every VM
 * `vmm run` and the control API create, including a reboot's new one.
 *
 * Threads: main thread only, while no vCPU thread runs (the bus is read
 * without locks by vCPU threads, bus.h).
 */
#include "core/bus.h"
#include "core/log.h"
#include "devices/devices.h"
#include "core/state_json.h"

#include <stdio.h>

#include <testimg.h>

int devices_attach(struct vm *vm, int console_fd, bool test_devices)
{
	bus_reset();
	if (serial_init(vm, console_fd) < 0 || i8042_init(vm) < 0 ||
	    (test_devices && (debugexit_init(vm) < 0 || testdev_init(vm) < 0))) {
		devices_detach();
		return -1;
	}
	if (test_devices)
		log_msg(LOG_INFO, "test devices attached: debug-exit port %#x, testdev",
			TESTIMG_PORT_EXIT);
	return 0;
}

void devices_detach(void)
{
	serial_detach();
	i8042_detach();
	bus_reset();
}

struct json_object *devices_save(char *err, size_t errlen)
{
	struct json_object *o = json_object_new_object();
	if (!o) {
		snprintf(err, errlen, "out of memory saving the devices");
		return NULL;
	}
	struct json_object *s = serial_save(err, errlen);
	if (!s || sj_set_obj(o, "serial", s) < 0)
		goto fail;
	struct json_object *k = i8042_save(err, errlen);
	if (!k || sj_set_obj(o, "i8042", k) < 0)
		goto fail;
	return o;
fail:
	json_object_put(o);
	if (!err[0])
		snprintf(err, errlen, "out of memory saving the devices");
	return NULL;
}

/* Each part checks all of its own fields before it changes anything; a
 * refused i8042 after a restored UART leaves a VM that the caller
 * destroys (a restore runs into a VM made for it). */
int devices_restore(struct json_object *o, char *err, size_t errlen)
{
	struct json_object *s, *k;
	if (sj_get_obj(o, "serial", &s, "devices", err, errlen) ||
	    sj_get_obj(o, "i8042", &k, "devices", err, errlen))
		return -1;
	if (serial_restore(s, err, errlen) < 0 || i8042_restore(k, err, errlen) < 0)
		return -1;
	return 0;
}
