// SPDX-License-Identifier: GPL-2.0-only
/*
 * serial.c - a 16550A-compatible UART at 0x3f8, IRQ 4 (COM1).
 *
 * Enough of the 8250 family for Linux's 8250 driver and its console:
 * divisor latch, IER/IIR with FIFO bits (so it probes as a 16550A), LCR,
 * MCR with loopback (the driver's probe uses it), LSR, MSR, scratch.
 * Transmission is instant: a byte written to THR goes to the output fd and
 * THR is empty again at once.  Input arrives from the main thread
 * (serial_input) into a 64-byte receive FIFO; bytes beyond it are dropped,
 * as on real hardware.
 *
 * Whatever the guest writes to these registers, the emulation stays in a
 * defined state: unknown bits are ignored, reads never fail.
 *
 * Output never blocks (issue 13, finding 9): a byte is written to the
 * output fd on the vCPU that wrote THR, inside its walk section and with
 * the lock held, so a write that waited for a stalled terminal would stall
 * the guest, every guestmm writer and the VM's stop.  The fd is nonblocking
 * (console.c reopens stdout so), or, when it is not, written only after a
 * poll() without timeout says POLLOUT.  A byte the fd does not take at once
 * is dropped, as a UART with nobody listening would lose it, and counted;
 * the count is logged once when the UART is detached.  No thread: the
 * fd's own buffer (a pipe's 64 KiB, a tty's) is the transmit FIFO.
 *
 * Locking: one mutex for the UART's state; vCPU threads (register access)
 * and the main thread (input) take it.  The IRQ line is driven with the
 * lock held so level changes stay in order.
 */
#include "core/bus.h"
#include "devices/devices.h"
#include "core/log.h"
#include "core/vm.h"
#include "core/state_json.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#define COM1_BASE 0x3f8
#define COM1_IRQ 4

#define IER_RDI 0x01   /* received data available */
#define IER_THRI 0x02  /* transmitter holding register empty */
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xc0
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB 0x80
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define RX_SIZE 64

static struct serial {
	pthread_mutex_t lock;
	struct vm *vm;
	int out_fd;
	bool out_blocking;     /* out_fd lacks O_NONBLOCK: poll before writing */
	uint64_t tx_dropped;   /* bytes the output fd did not take */
	uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
	bool thri_pending;
	int irq_level;
	uint8_t rx[RX_SIZE];
	unsigned rx_head, rx_count;
} uart = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Lock held. */
static uint8_t iir(void)
{
	uint8_t fifo = (uart.fcr & FCR_ENABLE) ? IIR_FIFO : 0;
	if ((uart.ier & IER_RDI) && uart.rx_count)
		return fifo | IIR_RDI;
	if ((uart.ier & IER_THRI) && uart.thri_pending)
		return fifo | IIR_THRI;
	return fifo | IIR_NONE;
}

/* Lock held: drive IRQ 4 from the interrupt state. */
static void update_irq(void)
{
	int level = (iir() & IIR_NONE) ? 0 : 1;
	if (level != uart.irq_level) {
		uart.irq_level = level;
		vm_irq_line(uart.vm, COM1_IRQ, level);
	}
}

static void rx_push(uint8_t c)
{
	if (uart.rx_count == RX_SIZE)
		return; /* overrun: dropped */
	uart.rx[(uart.rx_head + uart.rx_count) % RX_SIZE] = c;
	uart.rx_count++;
}

static void transmit(uint8_t c)
{
	if (uart.mcr & MCR_LOOP) {
		rx_push(c);
	} else if (uart.out_fd >= 0) {
		/* Never blocks (see the top); a closed pty, a full pipe, a
		 * stopped terminal: the byte is lost, the guest goes on. */
		ssize_t n = -1;
		struct pollfd p = { .fd = uart.out_fd, .events = POLLOUT };
		if (!uart.out_blocking || (poll(&p, 1, 0) == 1 && p.revents == POLLOUT)) {
			for (int tries = 0; tries < 3; tries++) {
				n = write(uart.out_fd, &c, 1);
				if (n >= 0 || errno != EINTR)
					break;
			}
		}
		if (n != 1)
			uart.tx_dropped++;
	}
	uart.thri_pending = true;
}

static uint8_t reg_read(unsigned reg)
{
	switch (reg) {
	case 0:
		if (uart.lcr & LCR_DLAB)
			return uart.dll;
		if (uart.rx_count) {
			uint8_t c = uart.rx[uart.rx_head];
			uart.rx_head = (uart.rx_head + 1) % RX_SIZE;
			uart.rx_count--;
			return c;
		}
		return 0;
	case 1:
		return (uart.lcr & LCR_DLAB) ? uart.dlm : uart.ier;
	case 2: {
		uint8_t v = iir();
		/* Reading IIR acknowledges a THR-empty interrupt. */
		if ((v & 0x0f) == IIR_THRI)
			uart.thri_pending = false;
		return v;
	}
	case 3:
		return uart.lcr;
	case 4:
		return uart.mcr;
	case 5:
		return (uint8_t)(LSR_THRE | LSR_TEMT | (uart.rx_count ? LSR_DR : 0));
	case 6:
		if (uart.mcr & MCR_LOOP) {
			/* DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD */
			uint8_t m = uart.mcr;
			return (uint8_t)(((m & 0x01) << 5) | ((m & 0x02) << 3) | ((m & 0x04) << 4) |
					 ((m & 0x08) << 4));
		}
		return 0xb0; /* DCD, DSR, CTS */
	default:
		return uart.scr;
	}
}

static void reg_write(unsigned reg, uint8_t v)
{
	switch (reg) {
	case 0:
		if (uart.lcr & LCR_DLAB)
			uart.dll = v;
		else
			transmit(v);
		break;
	case 1:
		if (uart.lcr & LCR_DLAB) {
			uart.dlm = v;
		} else {
			/* Enabling the THR-empty interrupt raises it at once. */
			if ((v & IER_THRI) && !(uart.ier & IER_THRI))
				uart.thri_pending = true;
			uart.ier = v & 0x0f;
		}
		break;
	case 2:
		uart.fcr = v & (FCR_ENABLE | 0xc0);
		if (v & FCR_CLEAR_RX)
			uart.rx_count = 0;
		break;
	case 3:
		uart.lcr = v;
		break;
	case 4:
		uart.mcr = v & 0x1f;
		break;
	case 7:
		uart.scr = v;
		break;
	default:
		break; /* LSR/MSR are read-only */
	}
}

static void serial_io(void *opaque, struct vcpu *cpu, uint64_t off, uint8_t *data, unsigned len,
		      bool is_write)
{
	(void)opaque;
	(void)cpu;
	pthread_mutex_lock(&uart.lock);
	for (unsigned i = 0; i < len && off + i < 8; i++) {
		if (is_write)
			reg_write((unsigned)off + i, data[i]);
		else
			data[i] = reg_read((unsigned)off + i);
	}
	update_irq();
	pthread_mutex_unlock(&uart.lock);
}

int serial_init(struct vm *vm, int out_fd)
{
	pthread_mutex_lock(&uart.lock);
	/* Power-on state: every register 0, FIFO empty, IRQ low. */
	uart.vm = vm;
	uart.out_fd = out_fd;
	int fl = out_fd >= 0 ? fcntl(out_fd, F_GETFL) : 0;
	uart.out_blocking = fl < 0 || !(fl & O_NONBLOCK);
	uart.tx_dropped = 0;
	uart.ier = uart.lcr = uart.mcr = uart.scr = uart.fcr = uart.dll = uart.dlm = 0;
	uart.thri_pending = false;
	uart.irq_level = 0;
	uart.rx_head = uart.rx_count = 0;
	pthread_mutex_unlock(&uart.lock);
	return bus_register(BUS_PIO, COM1_BASE, 8, serial_io, NULL, "serial");
}

void serial_detach(void)
{
	pthread_mutex_lock(&uart.lock);
	uart.vm = NULL;
	uart.out_fd = -1;
	uint64_t dropped = uart.tx_dropped;
	pthread_mutex_unlock(&uart.lock);
	if (dropped)
		log_msg(LOG_INFO, "serial: %llu bytes of guest output dropped (nobody read them fast enough)",
			(unsigned long long)dropped);
}

uint64_t serial_tx_dropped(void)
{
	pthread_mutex_lock(&uart.lock);
	uint64_t n = uart.tx_dropped;
	pthread_mutex_unlock(&uart.lock);
	return n;
}

void serial_input(const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&uart.lock);
	for (size_t i = 0; i < len; i++)
		rx_push(buf[i]);
	if (uart.vm)
		update_irq();
	pthread_mutex_unlock(&uart.lock);
}

/* ---- snapshot (issue 16) --------------------------------------------------- */

/* Every register, the THR-empty interrupt pending (IIR is computed from
 * it, IER and the FIFO), the receive FIFO's contents in order, the IRQ
 * line's level.  Main thread, vCPUs parked. */
struct json_object *serial_save(char *err, size_t errlen)
{
	struct json_object *o = json_object_new_object();
	uint8_t rx[RX_SIZE];
	pthread_mutex_lock(&uart.lock);
	for (unsigned i = 0; i < uart.rx_count; i++)
		rx[i] = uart.rx[(uart.rx_head + i) % RX_SIZE];
	int r = !o || sj_set_u64(o, "ier", uart.ier) || sj_set_u64(o, "lcr", uart.lcr) ||
		sj_set_u64(o, "mcr", uart.mcr) || sj_set_u64(o, "scr", uart.scr) ||
		sj_set_u64(o, "fcr", uart.fcr) || sj_set_u64(o, "dll", uart.dll) ||
		sj_set_u64(o, "dlm", uart.dlm) || sj_set_bool(o, "thri_pending", uart.thri_pending) ||
		sj_set_u64(o, "iir", iir()) || sj_set_u64(o, "irq_level", (uint64_t)uart.irq_level) ||
		sj_set_hex(o, "rx", rx, uart.rx_count);
	pthread_mutex_unlock(&uart.lock);
	if (r) {
		json_object_put(o);
		snprintf(err, errlen, "serial: out of memory saving its state");
		return NULL;
	}
	return o;
}

/* After serial_init (devices_attach) and after the irqchip's restore,
 * before the vCPUs run: everything checked, then set, and the IRQ line
 * driven to the saved level (KVM's line state is not in the irqchip
 * state).  "iir" is informational: it follows from the rest. */
int serial_restore(struct json_object *o, char *err, size_t errlen)
{
	const char *w = "serial";
	uint64_t ier, lcr, mcr, scr, fcr, dll, dlm, level;
	bool thri;
	const char *hex;
	if (sj_get_uint(o, "ier", 0x0f, &ier, w, err, errlen) ||
	    sj_get_uint(o, "lcr", 0xff, &lcr, w, err, errlen) ||
	    sj_get_uint(o, "mcr", 0x1f, &mcr, w, err, errlen) ||
	    sj_get_uint(o, "scr", 0xff, &scr, w, err, errlen) ||
	    sj_get_uint(o, "fcr", FCR_ENABLE | 0xc0, &fcr, w, err, errlen) ||
	    sj_get_uint(o, "dll", 0xff, &dll, w, err, errlen) ||
	    sj_get_uint(o, "dlm", 0xff, &dlm, w, err, errlen) ||
	    sj_get_bool(o, "thri_pending", &thri, w, err, errlen) ||
	    sj_get_uint(o, "irq_level", 1, &level, w, err, errlen) ||
	    sj_get_str(o, "rx", &hex, w, err, errlen))
		return -1;
	size_t n = strlen(hex) / 2;
	uint8_t rx[RX_SIZE];
	if (strlen(hex) % 2 || n > RX_SIZE) {
		snprintf(err, errlen, "serial.rx: %zu hex digits (the FIFO holds %d bytes)", strlen(hex),
			 RX_SIZE);
		return -1;
	}
	if (sj_get_hex(o, "rx", rx, n, w, err, errlen))
		return -1;
	pthread_mutex_lock(&uart.lock);
	uart.ier = (uint8_t)ier, uart.lcr = (uint8_t)lcr, uart.mcr = (uint8_t)mcr;
	uart.scr = (uint8_t)scr, uart.fcr = (uint8_t)fcr, uart.dll = (uint8_t)dll;
	uart.dlm = (uint8_t)dlm;
	uart.thri_pending = thri;
	memcpy(uart.rx, rx, n);
	uart.rx_head = 0;
	uart.rx_count = (unsigned)n;
	uart.irq_level = (int)level;
	if (uart.vm)
		vm_irq_line(uart.vm, COM1_IRQ, uart.irq_level);
	if (uart.vm)
		update_irq();   /* the state decides; normally the same level */
	pthread_mutex_unlock(&uart.lock);
	return 0;
}
