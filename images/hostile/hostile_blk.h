/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * hostile/hostile_blk.h - the giant virtio-blk reads hostile/blk and
 * hostile/balloon queue (see blk.c).
 */
#ifndef HOSTILE_BLK_H
#define HOSTILE_BLK_H

#include "common.h"

struct blk_req_hdr {
	uint32_t type;      /* 0: VIRTIO_BLK_T_IN */
	uint32_t reserved;
	uint64_t sector;
};

static inline int blk_setup(struct vio_dev *d, struct vq *q, const char *name)
{
	if (vio_find(d, VIO_ID_BLOCK, 0) < 0) {
		printf("%s: no virtio disk\n", name);
		return -1;
	}
	if (vio_init(d, VIO_F_VERSION_1 | VIO_F_INDIRECT_DESC) !=
	    (VIO_F_VERSION_1 | VIO_F_INDIRECT_DESC)) {
		printf("%s: the disk refused VERSION_1 + INDIRECT_DESC\n", name);
		return -1;
	}
	if (vio_queue(d, q, 0, 0, AREA) <= 0) {
		printf("%s: no queue\n", name);
		return -1;
	}
	vio_driver_ok(d);
	return 0;
}

/* Request i: table i = header, 253 x 16 MiB of BUF, status (in SMALL). */
static inline void blk_post_giant_read(struct vq *q, unsigned i)
{
	volatile struct blk_req_hdr *h =
		(volatile struct blk_req_hdr *)(uintptr_t)(SMALL + i * 32);
	h->type = 0;
	h->reserved = 0;
	h->sector = 0;
	volatile struct vq_desc *t = table(i);
	t[0].addr = SMALL + i * 32;
	t[0].len = sizeof(struct blk_req_hdr);
	t[0].flags = VQ_F_NEXT;
	t[0].next = 1;
	for (unsigned k = 1; k < TABLE_ENTRIES - 1; k++) {
		t[k].addr = BUF;
		t[k].len = (uint32_t)BUF_LEN;
		t[k].flags = VQ_F_NEXT | VQ_F_WRITE;
		t[k].next = (uint16_t)(k + 1);
	}
	t[TABLE_ENTRIES - 1].addr = SMALL + i * 32 + 16;
	t[TABLE_ENTRIES - 1].len = 1;
	t[TABLE_ENTRIES - 1].flags = VQ_F_WRITE;
	t[TABLE_ENTRIES - 1].next = 0;
	post_indirect(q, i, i, TABLE_ENTRIES);
}

#endif
