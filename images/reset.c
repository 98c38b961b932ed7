// SPDX-License-Identifier: GPL-2.0-only
/*
 * reset - a guest that reboots: vCPU 0 pulses the reset line through the
 * i8042 (outb(0x64, 0xfe), what Linux's reboot=k does).  `vmm run` exits 0,
 * or with --on-reboot restart boots the image again.
 */
#include "lib.h"

int main(const struct testimg_boot_info *bi, unsigned cpu)
{
	(void)bi;
	if (cpu != 0)
		halt_forever();
	printf("reset: pulsing the i8042 reset line\n");
	outb(0x64, 0xfe);
	halt_forever();
}
