// SPDX-License-Identifier: GPL-2.0-only
/*
 * hostile/console - attack (b) of the hostile-guest suite: the virtio
 * console's transmit queue filled with giant chains.  Each of the queue's
 * chains is one indirect table of 255 descriptors naming the same 16 MiB
 * buffer, ~4 GiB of output per chain and ~1 TiB in all, for a console
 * nobody reads.  Then the host stops the VM: the VMM must not wait for
 * that output (issue 13, finding 2).
 *
 *   hostile_console: start
 *   hostile_console: ready (N chains of M MiB queued)
 * then halts; the host stops the VM.
 */
#include "common.h"

int main(const struct testimg_boot_info *bi, unsigned cpu)
{
	if (cpu != 0)
		halt_forever();
	if (need_ram(bi, "hostile_console"))
		return 1;
	puts("hostile_console: start\n");
	struct vio_dev d;
	if (vio_find(&d, VIO_ID_CONSOLE, 0) < 0) {
		puts("hostile_console: no virtio console\n");
		return 1;
	}
	if (vio_init(&d, VIO_F_VERSION_1 | VIO_F_INDIRECT_DESC) !=
	    (VIO_F_VERSION_1 | VIO_F_INDIRECT_DESC)) {
		puts("hostile_console: the device refused VERSION_1 + INDIRECT_DESC\n");
		return 1;
	}
	struct vq rx, tx;
	if (vio_queue(&d, &rx, 0, 0, AREA) <= 0 || vio_queue(&d, &tx, 1, 0, AREA + VQ_AREA_BYTES) <= 0) {
		puts("hostile_console: no queues\n");
		return 1;
	}
	vio_driver_ok(&d);
	memset((void *)(uintptr_t)BUF, 'x', 4096); /* the rest reads as zeros */
	for (unsigned i = 0; i < tx.size; i++) {
		volatile struct vq_desc *t = table(i);
		for (unsigned k = 0; k < TABLE_ENTRIES; k++) {
			t[k].addr = BUF;
			t[k].len = (uint32_t)BUF_LEN;
			t[k].flags = k + 1 < TABLE_ENTRIES ? VQ_F_NEXT : 0;
			t[k].next = (uint16_t)(k + 1);
		}
		post_indirect(&tx, i, i, TABLE_ENTRIES);
	}
	vq_notify(&d, &tx);
	printf("hostile_console: ready (%u chains of %lu MiB queued)\n", tx.size,
	       (unsigned long)(TABLE_ENTRIES * BUF_LEN >> 20));
	halt_forever();
}
