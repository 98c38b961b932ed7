// SPDX-License-Identifier: GPL-2.0-only
/*
 * hostile/balloon - attack (c) of the hostile-guest suite: inflate the
 * balloon over 2 MiB blocks that in-flight disk I/O holds pinned.  A few
 * giant disk reads into BUF (hostile_blk.h) keep BUF's blocks pinned for a
 * long while; then one inflate buffer names every other 4 KiB page of BUF,
 * 2048 scattered PFNs.  One guestmm unmap per page, each waiting out the
 * pin timeout, held the balloon and the stop for half an hour (issue 13,
 * finding 3).  Then the host stops the VM.
 *
 *   hostile_balloon: start
 *   hostile_balloon: ready (N disk reads in flight, M PFNs inflated)
 * then halts; the host stops the VM.
 */
#include "common.h"
#include "hostile_blk.h"

#define READS 8u
#define PFNS (SMALL + 0x10000)
#define NPFNS (unsigned)(BUF_LEN / 0x2000)

int main(const struct testimg_boot_info *bi, unsigned cpu)
{
	if (cpu != 0)
		halt_forever();
	if (need_ram(bi, "hostile_balloon"))
		return 1;
	puts("hostile_balloon: start\n");
	struct vio_dev disk, bal;
	struct vq dq, inflate, deflate;
	if (blk_setup(&disk, &dq, "hostile_balloon") < 0)
		return 1;
	for (unsigned i = 0; i < READS; i++)
		blk_post_giant_read(&dq, i);
	vq_notify(&disk, &dq);

	if (vio_find(&bal, VIO_ID_BALLOON, 0) < 0 || vio_init(&bal, VIO_F_VERSION_1) == ~0ULL ||
	    vio_queue(&bal, &inflate, 0, 0, AREA + 4 * VQ_AREA_BYTES) <= 0 ||
	    vio_queue(&bal, &deflate, 1, 0, AREA + 5 * VQ_AREA_BYTES) <= 0) {
		puts("hostile_balloon: no usable virtio balloon\n");
		return 1;
	}
	vio_driver_ok(&bal);
	volatile uint32_t *pfn = (volatile uint32_t *)(uintptr_t)PFNS;
	for (unsigned k = 0; k < NPFNS; k++)
		pfn[k] = (uint32_t)((BUF >> 12) + 2 * k);
	volatile struct vq_desc *e = vq_desc(&inflate, 0);
	e->addr = PFNS;
	e->len = NPFNS * 4;
	e->flags = 0;
	e->next = 0;
	vq_post(&inflate, 0);
	vq_notify(&bal, &inflate);
	printf("hostile_balloon: ready (%u disk reads in flight, %u PFNs inflated)\n", READS, NPFNS);
	halt_forever();
}
