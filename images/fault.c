// SPDX-License-Identifier: GPL-2.0-only
/*
 * fault - a guest that triple-faults on purpose: vCPU 0 loads an empty IDT
 * and executes ud2.  #UD finds no handler, nor does the #DF that follows:
 * the CPU shuts down, KVM reports KVM_EXIT_SHUTDOWN, and `vmm run` must
 * dump the registers and exit with status 3.
 */
#include "lib.h"

int main(const struct testimg_boot_info *bi, unsigned cpu)
{
	(void)bi;
	if (cpu != 0)
		halt_forever();
	printf("fault: loading an empty IDT, then ud2\n");
	struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idt = { 0, 0 };
	__asm__ volatile("lidt %0\n\tud2" : : "m"(idt) : "memory");
	printf("fault: still running after a triple fault?\n");
	return 1;
}
