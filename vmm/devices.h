/*
 * devices.h - the legacy devices of a vmm VM: 8250 UART, i8042 (reset and
 * Ctrl-Alt-Del), the debug-exit port and the testdev of the test images.
 * Each registers its ranges on the bus (bus.h).
 */
#ifndef VMM_DEVICES_H
#define VMM_DEVICES_H

#include <stddef.h>
#include <stdint.h>

struct vm;

/* 8250 UART at 0x3f8, IRQ 4.  Output goes to out_fd (-1: dropped). */
int serial_init(struct vm *vm, int out_fd);
/* Bytes typed by the user (main thread). */
void serial_input(const uint8_t *buf, size_t len);

/* i8042: 0x60/0x64.  Command 0xfe (pulse reset) ends the VM as a reboot. */
int i8042_init(struct vm *vm);
/* Queue Ctrl-Alt-Del make/break scancodes and raise IRQ 1. */
void i8042_ctrl_alt_del(void);

/* Debug exit port (TESTIMG_PORT_EXIT) and testdev (testimg.h). */
int debugexit_init(struct vm *vm);
int testdev_init(struct vm *vm);

#endif
