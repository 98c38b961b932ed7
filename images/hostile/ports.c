// SPDX-License-Identifier: GPL-2.0-only
/*
 * hostile/ports - attack (a) of the hostile-guest suite: thousands of
 * distinct unclaimed I/O ports and MMIO addresses, written and read, over
 * and over.  Every access is an exit the VMM answers "unclaimed"; what it
 * must not do is write a log line for each (issue 13, finding 1).
 *
 * It starts by writing 3 to the debug-exit port and poking the testdev:
 * run with --test-devices off (as a guest that is not a test image gets
 * them), those ports are unclaimed too, and the guest must not be able to
 * end the VMM with status 3, "triple fault" (finding 8).
 *
 *   hostile_ports: start
 *   hostile_ports: ready (N port and M MMIO accesses per round)
 * then the same rounds forever, until the host stops the VM.
 */
#include "../lib.h"

#define PORT_FIRST 0x1000u  /* nothing the VMM has lives at or above */
#define PORTS 20000u
#define MMIO_FIRST 0xd1000000ULL /* in the MMIO hole, past testdev and virtio */
#define MMIO_ADDRS 4000u

static void round_once(uint64_t *seed)
{
	for (uint32_t i = 0; i < PORTS; i++) {
		uint16_t port = (uint16_t)(PORT_FIRST + (i * 7919u) % (0x10000u - PORT_FIRST));
		outb(port, (uint8_t)rand64(seed));
		if (i % 4 == 0)
			(void)inb(port);
	}
	for (uint32_t i = 0; i < MMIO_ADDRS; i++) {
		uint64_t a = MMIO_FIRST + (uint64_t)i * 0x1000 + (i % 64) * 4;
		writel(a, (uint32_t)rand64(seed));
		if (i % 4 == 0)
			(void)readl(a);
	}
}

int main(const struct testimg_boot_info *bi, unsigned cpu)
{
	(void)bi;
	if (cpu != 0)
		halt_forever();
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	puts("hostile_ports: start\n");
	outl(TESTDEV_PORT_GPA_LO, 0x100000);
	outl(TESTDEV_PORT_LEN, 64);
	(void)inl(TESTDEV_PORT_LEN);
	outl(TESTIMG_PORT_EXIT, 3);
	round_once(&seed);
	printf("hostile_ports: ready (%u port and %u MMIO accesses per round)\n", PORTS + PORTS / 4,
	       MMIO_ADDRS + MMIO_ADDRS / 4);
	for (;;)
		round_once(&seed);
}
