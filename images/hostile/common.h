/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * hostile/common.h - guest RAM the hostile images share (256 MiB guests):
 *   AREA       4 MiB   virtqueue areas, 16 KiB each
 *   TABLES     6 MiB   indirect descriptor tables, 4 KiB each (256 entries)
 *   SMALL      8 MiB   request headers, status bytes, PFN arrays
 *   BUF       16 MiB   the buffer every giant chain names again and again
 */
#ifndef HOSTILE_COMMON_H
#define HOSTILE_COMMON_H

#include "../vio.h"

#define AREA (TESTIMG_FREE_BASE)
#define TABLES 0x600000ULL
#define TABLE_BYTES 0x1000ULL
#define SMALL 0x800000ULL
#define BUF 0x1000000ULL
#define BUF_LEN 0x1000000ULL     /* 16 MiB */
#define TABLE_ENTRIES 255u       /* + the indirect descriptor = VIRTQ_MAX_CHAIN */

static inline volatile struct vq_desc *table(unsigned i)
{
	return (volatile struct vq_desc *)(uintptr_t)(TABLES + i * TABLE_BYTES);
}

/* Descriptor `head` of q: the whole chain is table i, of n entries. */
static inline void post_indirect(struct vq *q, unsigned head, unsigned i, unsigned n)
{
	volatile struct vq_desc *d = vq_desc(q, head);
	d->addr = TABLES + i * TABLE_BYTES;
	d->len = n * (uint32_t)sizeof(struct vq_desc);
	d->flags = VQ_F_INDIRECT;
	d->next = 0;
	vq_post(q, (uint16_t)head);
}

static inline int need_ram(const struct testimg_boot_info *bi, const char *name)
{
	if (bi->ram_low_end >= BUF + BUF_LEN)
		return 0;
	printf("%s: needs at least %lu MiB of low RAM\n", name, (unsigned long)((BUF + BUF_LEN) >> 20));
	return 1;
}

#endif
