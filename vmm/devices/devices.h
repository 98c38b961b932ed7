/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vmm/devices/ - the legacy devices (8250 UART, i8042, debug exit,
 * testdev) and the host end of the console (console.c: stdio, pty, file).
 * May call core/ (the bus, vm_stop, vm_irq_line, log) and boot/ types;
 * never virtio/, the machine or the API.
 */
/*
 * devices.h - the legacy devices of a vmm VM: 8250 UART, i8042 (reset and
 * Ctrl-Alt-Del), the debug-exit port and the testdev of the test images.
 * Each registers its ranges on the bus (bus.h); each *_init also resets the
 * device to its power-on state, so a VM created again in the same process
 * (vm.reboot, vm.delete + vm.create) starts from scratch.
 */
#ifndef VMM_DEVICES_H
#define VMM_DEVICES_H

#include <stddef.h>
#include <stdint.h>

struct vm;

/* devices.c: the whole set, on an empty bus, for vm (its UART writing to
 * console_fd, -1: dropped); the debug-exit port and testdev only with
 * test_devices (they let the guest choose the VMM's exit status and read
 * and write guest memory through the VMM: for the project's test images,
 * not for guests in general); -1 if a range cannot be registered (nothing
 * is left registered then).  devices_detach() empties the bus and makes the
 * devices forget the VM (console input and Ctrl-Alt-Del then go nowhere).
 * Main thread, with no vCPU thread running. */
#include <stdbool.h>
int devices_attach(struct vm *vm, int console_fd, bool test_devices);
void devices_detach(void);

/* 8250 UART at 0x3f8, IRQ 4.  Output goes to out_fd (-1: dropped). */
int serial_init(struct vm *vm, int out_fd);
void serial_detach(void);
/* Guest output bytes the UART dropped since serial_init (the output did not
 * take them at once).  Any thread; takes the UART's lock, never held long. */
uint64_t serial_tx_dropped(void);
/* Bytes typed by the user (main thread). */
void serial_input(const uint8_t *buf, size_t len);

/* i8042: 0x60/0x64.  Command 0xfe (pulse reset) ends the VM as a reboot. */
int i8042_init(struct vm *vm);
void i8042_detach(void);
/* Queue Ctrl-Alt-Del make/break scancodes and raise IRQ 1. */
void i8042_ctrl_alt_del(void);

/* Snapshot (issue 16): the UART's registers, FIFO contents and IRQ line;
 * the i8042's command byte, output queue and pending state.  save: a new
 * object or NULL; restore after devices_attach, before the vCPUs run: 0,
 * or -1 with err (everything checked first).  devices_save/restore do
 * both as {"serial":..,"i8042":..}.  Main thread, vCPUs parked. */
struct json_object;
struct json_object *devices_save(char *err, size_t errlen);
int devices_restore(struct json_object *o, char *err, size_t errlen);
/* The two halves (serial.c, i8042.c).  serial_restore drives IRQ 4 to
 * the saved level: call it after the irqchip's restore (KVM's line state
 * is not part of KVM_GET_IRQCHIP). */
struct json_object *serial_save(char *err, size_t errlen);
int serial_restore(struct json_object *o, char *err, size_t errlen);
struct json_object *i8042_save(char *err, size_t errlen);
int i8042_restore(struct json_object *o, char *err, size_t errlen);

/* Debug exit port (TESTIMG_PORT_EXIT) and testdev (testimg.h). */
int debugexit_init(struct vm *vm);
int testdev_init(struct vm *vm);

#endif
