// SPDX-License-Identifier: GPL-2.0-only
/*
 * i8042.c - just enough of the PC keyboard controller: the reset line
 * (command 0xfe on port 0x64, what Linux's reboot=k uses) and a
 * Ctrl-Alt-Del from the host as keyboard scancodes on IRQ 1.
 *
 * Ports: 0x60 data (reads the next queued byte), 0x64 status (reads) and
 * command (writes).  Unknown commands are ignored.  State is tiny and
 * guarded by one mutex.
 */
#include "core/bus.h"
#include "devices/devices.h"
#include "core/log.h"
#include "core/vm.h"
#include "core/state_json.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define KBD_IRQ 1
#define ST_OBF 0x01
#define ST_SYS 0x04
#define CMD_READ_CTR 0x20
#define CMD_WRITE_CTR 0x60
#define CMD_SELF_TEST 0xaa
#define CMD_PULSE_RESET 0xfe

static struct {
	pthread_mutex_t lock;
	struct vm *vm;
	uint8_t q[16];
	unsigned head, count;
	uint8_t ctr;         /* controller configuration byte */
	bool expect_ctr;     /* next data write is the configuration byte */
} kbd = { .lock = PTHREAD_MUTEX_INITIALIZER, .ctr = 0x01 };

static void push(uint8_t b)
{
	if (kbd.count < sizeof(kbd.q))
		kbd.q[(kbd.head + kbd.count++) % sizeof(kbd.q)] = b;
}

static void i8042_io(void *opaque, struct vcpu *cpu, uint64_t off, uint8_t *data, unsigned len,
		     bool is_write)
{
	(void)opaque;
	(void)cpu;
	(void)len;
	bool reset = false;
	pthread_mutex_lock(&kbd.lock);
	if (off == 0) {                 /* port 0x60 */
		if (is_write) {
			if (kbd.expect_ctr)
				kbd.ctr = data[0];
			kbd.expect_ctr = false;
		} else if (kbd.count) {
			data[0] = kbd.q[kbd.head];
			kbd.head = (kbd.head + 1) % sizeof(kbd.q);
			kbd.count--;
		} else {
			data[0] = 0;
		}
	} else if (off == 4) {          /* port 0x64 */
		if (!is_write) {
			data[0] = (uint8_t)(ST_SYS | (kbd.count ? ST_OBF : 0));
		} else {
			switch (data[0]) {
			case CMD_READ_CTR:
				push(kbd.ctr);
				break;
			case CMD_WRITE_CTR:
				kbd.expect_ctr = true;
				break;
			case CMD_SELF_TEST:
				push(0x55);
				break;
			case CMD_PULSE_RESET:
				reset = true;
				break;
			default:
				break;
			}
		}
	} else if (!is_write) {
		data[0] = 0xff;
	}
	struct vm *vm = kbd.vm;
	pthread_mutex_unlock(&kbd.lock);
	if (reset) {
		vm->reboot = true;
		vm_stop(vm, EXIT_GUEST_OFF, "guest reset (i8042 pulse reset)");
	}
}

int i8042_init(struct vm *vm)
{
	pthread_mutex_lock(&kbd.lock);
	kbd.vm = vm;
	kbd.head = kbd.count = 0;
	kbd.ctr = 0x01;
	kbd.expect_ctr = false;
	pthread_mutex_unlock(&kbd.lock);
	/* 0x60..0x64: the unused 0x61..0x63 answer as all-ones here. */
	return bus_register(BUS_PIO, 0x60, 5, i8042_io, NULL, "i8042");
}

void i8042_detach(void)
{
	pthread_mutex_lock(&kbd.lock);
	kbd.vm = NULL;
	pthread_mutex_unlock(&kbd.lock);
}

void i8042_ctrl_alt_del(void)
{
	static const uint8_t seq[] = { 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d };
	pthread_mutex_lock(&kbd.lock);
	for (unsigned i = 0; i < sizeof(seq); i++)
		push(seq[i]);
	struct vm *vm = kbd.vm;
	pthread_mutex_unlock(&kbd.lock);
	if (vm) {
		vm_irq_line(vm, KBD_IRQ, 1);
		vm_irq_line(vm, KBD_IRQ, 0);
	}
}

/* ---- snapshot (issue 16) --------------------------------------------------- */

/* The configuration ("command") byte, the status the guest reads (OBF from
 * the queue), a command waiting for its data byte, the output queue in
 * order.  Main thread, vCPUs parked. */
struct json_object *i8042_save(char *err, size_t errlen)
{
	struct json_object *o = json_object_new_object();
	uint8_t q[sizeof(kbd.q)];
	pthread_mutex_lock(&kbd.lock);
	for (unsigned i = 0; i < kbd.count; i++)
		q[i] = kbd.q[(kbd.head + i) % sizeof(kbd.q)];
	int r = !o || sj_set_u64(o, "ctr", kbd.ctr) || sj_set_bool(o, "expect_ctr", kbd.expect_ctr) ||
		sj_set_u64(o, "status", (uint64_t)(ST_SYS | (kbd.count ? ST_OBF : 0))) ||
		sj_set_hex(o, "queue", q, kbd.count);
	pthread_mutex_unlock(&kbd.lock);
	if (r) {
		json_object_put(o);
		snprintf(err, errlen, "i8042: out of memory saving its state");
		return NULL;
	}
	return o;
}

/* After i8042_init.  "status" is informational (it follows from the
 * queue).  IRQ 1 is edge-triggered here: nothing to drive. */
int i8042_restore(struct json_object *o, char *err, size_t errlen)
{
	uint64_t ctr;
	bool expect;
	const char *hex;
	uint8_t q[sizeof(kbd.q)];
	if (sj_get_uint(o, "ctr", 0xff, &ctr, "i8042", err, errlen) ||
	    sj_get_bool(o, "expect_ctr", &expect, "i8042", err, errlen) ||
	    sj_get_str(o, "queue", &hex, "i8042", err, errlen))
		return -1;
	size_t n = strlen(hex) / 2;
	if (strlen(hex) % 2 || n > sizeof(q)) {
		snprintf(err, errlen, "i8042.queue: %zu hex digits (the queue holds %zu bytes)",
			 strlen(hex), sizeof(q));
		return -1;
	}
	if (sj_get_hex(o, "queue", q, n, "i8042", err, errlen))
		return -1;
	pthread_mutex_lock(&kbd.lock);
	kbd.ctr = (uint8_t)ctr;
	kbd.expect_ctr = expect;
	memcpy(kbd.q, q, n);
	kbd.head = 0;
	kbd.count = (unsigned)n;
	pthread_mutex_unlock(&kbd.lock);
	return 0;
}
