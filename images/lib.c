// SPDX-License-Identifier: GPL-2.0-only
/*
 * lib.c - the test images' runtime: serial console, formatted output,
 * spinlock, exit, and the C entry every vCPU takes from start.S.
 */
#include "lib.h"

#include <stdarg.h>

/* In .data (the linker script keeps no .bss), so it is zero in the file
 * and every vCPU sees it free from the first instruction. */
static spinlock_t console_lock;

void spin_lock(spinlock_t *l)
{
	for (;;) {
		uint32_t v = 1;
		/* xchg with memory is locked by itself. */
		__asm__ volatile("xchgl %0, %1" : "+r"(v), "+m"(l->locked) : : "memory");
		if (v == 0)
			return;
		while (l->locked)
			cpu_relax();
	}
}

void spin_unlock(spinlock_t *l)
{
	barrier();
	l->locked = 0; /* a plain store releases on x86 */
}

void putc_raw(char c)
{
	while (!(inb(COM1_LSR) & LSR_THRE))
		cpu_relax();
	outb(COM1_THR, (uint8_t)c);
}

static void puts_raw(const char *s)
{
	while (*s)
		putc_raw(*s++);
}

void puts(const char *s)
{
	spin_lock(&console_lock);
	puts_raw(s);
	spin_unlock(&console_lock);
}

/* Digits of v in base (10 or 16), at least width of them padded with pad. */
static void put_num(uint64_t v, unsigned base, int neg, unsigned width, char pad)
{
	char buf[24];
	unsigned n = 0;
	do {
		unsigned d = (unsigned)(v % base);
		buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
		v /= base;
	} while (v);
	if (neg && pad == '0')
		putc_raw('-');
	while (n + (neg ? 1u : 0u) < width--)
		putc_raw(pad);
	if (neg && pad != '0')
		putc_raw('-');
	while (n)
		putc_raw(buf[--n]);
}

void printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	spin_lock(&console_lock);
	for (const char *p = fmt; *p; p++) {
		if (*p != '%') {
			putc_raw(*p);
			continue;
		}
		p++;
		char pad = ' ';
		unsigned width = 0, longs = 0;
		if (*p == '0') {
			pad = '0';
			p++;
		}
		while (*p >= '0' && *p <= '9')
			width = width * 10 + (unsigned)(*p++ - '0');
		while (*p == 'l' || *p == 'z') {
			longs++;
			p++;
		}
		switch (*p) {
		case 'd': {
			int64_t v = longs ? va_arg(ap, int64_t) : va_arg(ap, int);
			put_num(v < 0 ? -(uint64_t)v : (uint64_t)v, 10, v < 0, width, pad);
			break;
		}
		case 'u':
		case 'x': {
			uint64_t v = longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
			put_num(v, *p == 'x' ? 16 : 10, 0, width, pad);
			break;
		}
		case 'p':
			puts_raw("0x");
			put_num((uint64_t)(uintptr_t)va_arg(ap, void *), 16, 0, width, pad);
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			puts_raw(s ? s : "(null)");
			break;
		}
		case 'c':
			putc_raw((char)va_arg(ap, int));
			break;
		case '%':
			putc_raw('%');
			break;
		case '\0':
			p--; /* a lone '%' at the end */
			break;
		default:
			putc_raw('%');
			putc_raw(*p);
			break;
		}
	}
	spin_unlock(&console_lock);
	va_end(ap);
}

void halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt" : : : "memory");
}

void testimg_exit(uint32_t code)
{
	outl(TESTIMG_PORT_EXIT, code);
	/* The VMM stops the VM on that write; if it has not yet, wait. */
	halt_forever();
}

/* start.S calls this on every vCPU with the entry registers RDI and RSI. */
__attribute__((noreturn)) void testimg_start(const struct testimg_boot_info *bi, unsigned cpu);

void testimg_start(const struct testimg_boot_info *bi, unsigned cpu)
{
	if (bi->magic != TESTIMG_MAGIC || bi->version != 1 || cpu >= bi->nr_vcpus) {
		if (cpu == 0) {
			printf("testimg: bad boot info at %p: magic 0x%x version %u, "
			       "vcpu %u of %u\n", (const void *)bi, bi->magic, bi->version, cpu,
			       bi->nr_vcpus);
			testimg_exit(TESTIMG_EXIT_BAD_BOOT_INFO);
		}
		halt_forever();
	}
	int ret = main(bi, cpu);
	if (cpu == 0)
		testimg_exit((uint32_t)ret);
	halt_forever();
}

void *memset(void *d, int c, size_t n)
{
	unsigned char *p = d;
	while (n--)
		*p++ = (unsigned char)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *p = d;
	const unsigned char *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

void *memmove(void *d, const void *s, size_t n)
{
	unsigned char *p = d;
	const unsigned char *q = s;
	if (p < q) {
		while (n--)
			*p++ = *q++;
	} else {
		while (n--)
			p[n] = q[n];
	}
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *p = a, *q = b;
	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p < *q ? -1 : 1;
	return 0;
}

/*
 * The ELF note that tells the VMM this is a test image: name
 * TESTIMG_NOTE_NAME, type TESTIMG_NOTE_TYPE, and a 4-byte descriptor
 * holding the boot info version the image expects.  A section named
 * .note* is SHT_NOTE; the linker script gives it a PT_NOTE segment.
 */
static const struct {
	uint32_t namesz, descsz, type;
	char name[sizeof(TESTIMG_NOTE_NAME)];   /* 8: "VMMTEST" and its NUL */
	uint32_t version;
} testimg_note __attribute__((section(".note.vmmtest"), aligned(4), used)) = {
	.namesz = sizeof(TESTIMG_NOTE_NAME),
	.descsz = sizeof(uint32_t),
	.type = TESTIMG_NOTE_TYPE,
	.name = TESTIMG_NOTE_NAME,
	.version = 1,
};
_Static_assert(sizeof(TESTIMG_NOTE_NAME) % 4 == 0, "note name needs no padding");
_Static_assert(sizeof(testimg_note) == 12 + 8 + 4, "note layout");
