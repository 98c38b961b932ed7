// SPDX-License-Identifier: GPL-2.0-only
/*
 * hostile/blk - attack (d) of the hostile-guest suite: the disk's queue
 * filled with maximal reads.  Each request is one indirect table: the
 * header (read from sector 0), 253 data descriptors naming the same 16 MiB
 * buffer (~4 GiB per request, so the disk must be that large: a sparse
 * file does) and the status byte.  Then the host stops the VM: the VMM
 * must cancel that I/O, bounded, and write nothing into guest memory after
 * the stop returns (issue 13, finding 3, blk_stop).
 *
 *   hostile_blk: start
 *   hostile_blk: ready (N requests of M MiB queued)
 * then halts; the host stops the VM.
 */
#include "common.h"
#include "hostile_blk.h"

int main(const struct testimg_boot_info *bi, unsigned cpu)
{
	if (cpu != 0)
		halt_forever();
	if (need_ram(bi, "hostile_blk"))
		return 1;
	puts("hostile_blk: start\n");
	struct vio_dev d;
	struct vq q;
	if (blk_setup(&d, &q, "hostile_blk") < 0)
		return 1;
	for (unsigned i = 0; i < q.size; i++)
		blk_post_giant_read(&q, i);
	vq_notify(&d, &q);
	printf("hostile_blk: ready (%u requests of %lu MiB queued)\n", q.size,
	       (unsigned long)((TABLE_ENTRIES - 2) * BUF_LEN >> 20));
	halt_forever();
}
