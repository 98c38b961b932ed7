// SPDX-License-Identifier: GPL-2.0-only
/*
 * exitloop - every vCPU produces exits forever, until the VMM stops it.
 *
 * Each vCPU writes a running number to the benchdev port (testimg.h) in a
 * tight loop: under `vmm bench munmap` each write is an exit whose handler
 * translates guest memory through guestmm, so the vCPU threads go in and
 * out of walk sections the way a real VMM's do.  Under `vmm run` the port
 * is unclaimed and the exits are cheap; the image then serves as a guest
 * that stays up until it is shut down.  vCPU 0 prints one line at start and
 * a tick every 2^16 of its exits, so a console shows whether it makes
 * progress (paused: no ticks).  At each tick vCPU 0 also looks at COM1's
 * input: a 'q' typed on the console makes the guest power itself off (it
 * exits 0 through the debug-exit port), what the libvirt tests use for a
 * guest-initiated shutdown; any other byte is ignored.
 *
 *   exitloop: start (N vcpus, M MiB)
 *   exitloop: tick K
 *   exitloop: q on the console: powering off
 */
#include "lib.h"

#define TICK_EVERY (1u << 16)

int main(const struct testimg_boot_info *bi, unsigned cpu)
{
	if (cpu == 0)
		printf("exitloop: start (%u vcpus, %lu MiB)\n", bi->nr_vcpus,
		       (unsigned long)(bi->ram_size / MiB));
	uint32_t n = (uint32_t)cpu << 24;
	for (uint32_t tick = 0;; tick++) {
		for (uint32_t i = 0; i < TICK_EVERY; i++)
			outl(TESTIMG_PORT_BENCH, n++);
		if (cpu == 0) {
			printf("exitloop: tick %u\n", tick);
			if ((inb(COM1_LSR) & LSR_DR) && inb(COM1_RBR) == 'q') {
				printf("exitloop: q on the console: powering off\n");
				testimg_exit(0);
			}
		}
	}
	return 0;
}
