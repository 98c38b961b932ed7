// SPDX-License-Identifier: GPL-2.0-only
/*
 * test_legacy_state.c - the UART's and the i8042's snapshot state
 * (devices.h, issue 16) without KVM: serial.c and i8042.c are linked
 * alone, with the bus and the VM replaced by stubs here that capture the
 * port handlers and record the IRQ lines.  The test drives the registers
 * as a guest would, saves, resets the device (its init), restores and
 * reads the state back through the registers.
 */
#include "core/bus.h"
#include "core/vm.h"
#include "devices/devices.h"

#include <criterion/criterion.h>
#include <json-c/json.h>
#include <string.h>

/* ---- stubs ------------------------------------------------------------- */

static bus_handler uart_fn, kbd_fn;
static int irq_level[16];
static struct vm fake_vm;

int bus_register(enum bus_kind kind, uint64_t base, uint64_t len, bus_handler fn, void *opaque,
		 const char *name)
{
	(void)kind, (void)len, (void)opaque, (void)name;
	if (base == 0x3f8)
		uart_fn = fn;
	else if (base == 0x60)
		kbd_fn = fn;
	return 0;
}

void vm_irq_line(struct vm *vm, unsigned irq, int level)
{
	(void)vm;
	if (irq < 16)
		irq_level[irq] = level;
}

void vm_stop(struct vm *vm, int status, const char *fmt, ...)
{
	(void)vm, (void)status, (void)fmt;
}

static void out(bus_handler fn, uint64_t off, uint8_t v)
{
	fn(NULL, NULL, off, &v, 1, true);
}

static uint8_t in(bus_handler fn, uint64_t off)
{
	uint8_t v = 0;
	fn(NULL, NULL, off, &v, 1, false);
	return v;
}

static struct json_object *through_text(struct json_object *o)
{
	struct json_object *back = json_tokener_parse(json_object_to_json_string(o));
	json_object_put(o);
	cr_assert_not_null(back);
	return back;
}

/* ---- serial ------------------------------------------------------------- */

Test(legacy_state, serial_roundtrip, .timeout = 10)
{
	cr_assert_eq(serial_init(&fake_vm, -1), 0);
	out(uart_fn, 3, 0x83);          /* DLAB */
	out(uart_fn, 0, 0x0c);
	out(uart_fn, 1, 0x00);
	out(uart_fn, 3, 0x03);          /* 8N1 */
	out(uart_fn, 2, 0x01);          /* FIFO on */
	out(uart_fn, 7, 0x5a);          /* scratch */
	out(uart_fn, 1, 0x01);          /* RX interrupt */
	serial_input((const uint8_t *)"abc", 3);
	cr_assert_eq(irq_level[4], 1);
	cr_assert_eq(in(uart_fn, 0), 'a');
	char err[256] = "";
	struct json_object *st = serial_save(err, sizeof(err));
	cr_assert_not_null(st, "%s", err);
	st = through_text(st);

	cr_assert_eq(serial_init(&fake_vm, -1), 0);   /* power-on state */
	irq_level[4] = 0;
	cr_assert_eq(in(uart_fn, 5) & 1, 0, "FIFO empty after init");

	/* Corrupted: refused, nothing changed. */
	struct json_object *bad = json_tokener_parse(json_object_to_json_string(st));
	json_object_object_add(bad, "ier", json_object_new_uint64(0x100));
	cr_assert_eq(serial_restore(bad, err, sizeof(err)), -1);
	cr_assert(strstr(err, "serial.ier"), "%s", err);
	json_object_object_add(bad, "ier", json_object_new_uint64(1));
	char longfifo[200];
	memset(longfifo, 'a', sizeof(longfifo) - 2);
	longfifo[sizeof(longfifo) - 2] = 0;
	json_object_object_add(bad, "rx", json_object_new_string(longfifo));
	cr_assert_eq(serial_restore(bad, err, sizeof(err)), -1);
	cr_assert(strstr(err, "serial.rx"), "%s", err);
	json_object_put(bad);
	cr_assert_eq(in(uart_fn, 3), 0, "a refused restore changed LCR");

	cr_assert_eq(serial_restore(st, err, sizeof(err)), 0, "%s", err);
	json_object_put(st);
	cr_assert_eq(irq_level[4], 1, "the IRQ line driven to its saved level");
	cr_assert_eq(in(uart_fn, 3), 0x03);
	cr_assert_eq(in(uart_fn, 1), 0x01);
	cr_assert_eq(in(uart_fn, 7), 0x5a);
	cr_assert_eq(in(uart_fn, 2), 0xc4, "IIR: FIFO, data available");
	cr_assert_eq(in(uart_fn, 5) & 1, 1);
	cr_assert_eq(in(uart_fn, 0), 'b');
	cr_assert_eq(in(uart_fn, 0), 'c');
	cr_assert_eq(irq_level[4], 0, "FIFO drained: line low");
	out(uart_fn, 3, 0x83);
	cr_assert_eq(in(uart_fn, 0), 0x0c, "divisor kept");
	serial_detach();
}

/* ---- i8042 -------------------------------------------------------------- */

Test(legacy_state, i8042_roundtrip, .timeout = 10)
{
	cr_assert_eq(i8042_init(&fake_vm), 0);
	out(kbd_fn, 4, 0x60);           /* write the command byte */
	out(kbd_fn, 0, 0x47);
	out(kbd_fn, 4, 0x20);           /* read it: queued */
	out(kbd_fn, 4, 0xaa);           /* self test: 0x55 queued */
	out(kbd_fn, 4, 0x60);           /* a command waiting for its byte */
	char err[256] = "";
	struct json_object *st = i8042_save(err, sizeof(err));
	cr_assert_not_null(st, "%s", err);
	st = through_text(st);
	cr_assert_eq(i8042_init(&fake_vm), 0);
	cr_assert_eq(in(kbd_fn, 4) & 1, 0);

	struct json_object *bad = json_tokener_parse(json_object_to_json_string(st));
	json_object_object_add(bad, "ctr", json_object_new_string("x"));
	cr_assert_eq(i8042_restore(bad, err, sizeof(err)), -1);
	cr_assert(strstr(err, "i8042.ctr"), "%s", err);
	json_object_put(bad);

	cr_assert_eq(i8042_restore(st, err, sizeof(err)), 0, "%s", err);
	json_object_put(st);
	cr_assert_eq(in(kbd_fn, 4) & 1, 1, "output buffer full");
	cr_assert_eq(in(kbd_fn, 0), 0x47);
	cr_assert_eq(in(kbd_fn, 0), 0x55);
	cr_assert_eq(in(kbd_fn, 4) & 1, 0);
	out(kbd_fn, 0, 0x11);           /* the waiting command takes it */
	out(kbd_fn, 4, 0x20);
	cr_assert_eq(in(kbd_fn, 0), 0x11);
	i8042_detach();
}
