/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * lib.h - the little runtime the freestanding test images share (lib.c,
 * start.S): port and MMIO access, the serial console, a spinlock, exit.
 *
 * Every instruction may be emulated by the host (GUEST-LINUX.md), so the
 * helpers do the least they can: no UART set-up, one LSR poll per byte.
 */
#ifndef IMAGES_LIB_H
#define IMAGES_LIB_H

#include <stdint.h>
#include <stddef.h>
#include <testimg.h>

#define COM1_THR (TESTIMG_PORT_SERIAL + 0)  /* transmit holding register */
#define COM1_LSR (TESTIMG_PORT_SERIAL + 5)  /* line status register */
#define LSR_THRE 0x20                        /* THR empty: may write a byte */
#define COM1_RBR (TESTIMG_PORT_SERIAL + 0)  /* receive buffer register */
#define LSR_DR 0x01                          /* data ready: RBR holds a byte */

#define MiB (1ULL << 20)

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory");
	return v;
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port) : "memory");
	return v;
}

/* One 32-bit access each, exactly as written (a single mov). */
static inline uint32_t readl(uint64_t addr)
{
	uint32_t v;
	__asm__ volatile("movl (%1), %0" : "=r"(v) : "r"(addr) : "memory");
	return v;
}

static inline void writel(uint64_t addr, uint32_t v)
{
	__asm__ volatile("movl %0, (%1)" : : "r"(v), "r"(addr) : "memory");
}

static inline void writeb(uint64_t addr, uint8_t v)
{
	__asm__ volatile("movb %0, (%1)" : : "q"(v), "r"(addr) : "memory");
}

static inline void writew(uint64_t addr, uint16_t v)
{
	__asm__ volatile("movw %0, (%1)" : : "r"(v), "r"(addr) : "memory");
}

static inline uint8_t readb(uint64_t addr)
{
	uint8_t v;
	__asm__ volatile("movb (%1), %0" : "=q"(v) : "r"(addr) : "memory");
	return v;
}

/* xorshift64: the images' cheap pseudo-random numbers. */
static inline uint64_t rand64(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" : : : "memory");
}

static inline void barrier(void)
{
	__asm__ volatile("" : : : "memory");
}

/* Atomically add v to *p (lock xadd); returns the old value. */
static inline uint32_t atomic_fetch_add32(volatile uint32_t *p, uint32_t v)
{
	__asm__ volatile("lock xaddl %0, %1" : "+r"(v), "+m"(*p) : : "memory");
	return v;
}

static inline uint32_t atomic_read32(const volatile uint32_t *p)
{
	return *p;
}

/* Test-and-test-and-set lock in guest memory; 0 = free. */
typedef struct {
	volatile uint32_t locked;
} spinlock_t;

void spin_lock(spinlock_t *l);
void spin_unlock(spinlock_t *l);

/* Serial output on COM1; every print holds the console lock, so a line
 * printed by one call is never interleaved with another vCPU's. */
void putc_raw(char c);
void puts(const char *s);
/* printf subset: %s %c %d %u %x %p %%, the length modifiers l/ll/z, a
 * width with optional 0 padding (%016lx). */
void printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Exit code when the boot info is not what this image expects (wrong
 * magic or version, vCPU index >= nr_vcpus): apart from the 0/1 the
 * images report and from vmm's own statuses (1-4). */
#define TESTIMG_EXIT_BAD_BOOT_INFO 64

/* Report code on the debug-exit port; never returns. */
__attribute__((noreturn)) void testimg_exit(uint32_t code);
/* cli; hlt forever: what vCPUs with nothing to do run. */
__attribute__((noreturn)) void halt_forever(void);

/* Provided by each image; called by start.S on every vCPU with the entry
 * registers after the boot info has been checked.  Its return value is
 * the exit code on vCPU 0; other vCPUs halt when it returns. */
int main(const struct testimg_boot_info *bi, unsigned cpu);

/* The compiler may emit calls to these. */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);

/* Linker script symbols: the image occupies [__image_start, __image_end). */
extern char __image_start[], __image_end[];

#endif
