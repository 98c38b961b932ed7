/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vio.h - a polled virtio-mmio driver for the test images (vio.c): find a
 * device by its ID, negotiate features, lay out split virtqueues in guest
 * RAM the image gives, post descriptor chains and notify.  No interrupts:
 * an image that waits for completions polls the used index.
 *
 * It is a driver for hostile images as much as for polite ones, so it
 * checks nothing the device says beyond what it needs to go on, and
 * leaves the descriptors themselves to the image (vq_desc()).
 */
#ifndef IMAGES_VIO_H
#define IMAGES_VIO_H

#include "lib.h"

/* virtio 1.2 constants the images use. */
#define VIO_ID_BLOCK 2
#define VIO_ID_CONSOLE 3
#define VIO_ID_BALLOON 5
#define VIO_ID_MEM 24

#define VIO_MAGIC 0x000
#define VIO_VERSION 0x004
#define VIO_DEVICE_ID 0x008
#define VIO_DEVICE_FEATURES 0x010
#define VIO_DEVICE_FEATURES_SEL 0x014
#define VIO_DRIVER_FEATURES 0x020
#define VIO_DRIVER_FEATURES_SEL 0x024
#define VIO_QUEUE_SEL 0x030
#define VIO_QUEUE_NUM_MAX 0x034
#define VIO_QUEUE_NUM 0x038
#define VIO_QUEUE_READY 0x044
#define VIO_QUEUE_NOTIFY 0x050
#define VIO_INTERRUPT_STATUS 0x060
#define VIO_INTERRUPT_ACK 0x064
#define VIO_STATUS 0x070
#define VIO_QUEUE_DESC 0x080   /* low at +0, high at +4 */
#define VIO_QUEUE_AVAIL 0x090
#define VIO_QUEUE_USED 0x0a0
#define VIO_CONFIG 0x100
#define VIO_MAGIC_VALUE 0x74726976u

#define VIO_S_ACK 0x01
#define VIO_S_DRIVER 0x02
#define VIO_S_DRIVER_OK 0x04
#define VIO_S_FEATURES_OK 0x08

#define VIO_F_INDIRECT_DESC (1ULL << 28)
#define VIO_F_VERSION_1 (1ULL << 32)

#define VQ_F_NEXT 1
#define VQ_F_WRITE 2
#define VQ_F_INDIRECT 4

struct vq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* One split virtqueue: the three areas sit in one 16 KiB block of guest
 * RAM the image hands to vio_queue() (descriptors at +0, driver area at
 * +4 KiB, device area at +8 KiB), enough for 256 entries. */
#define VQ_AREA_BYTES 0x4000u
struct vq {
	volatile struct vq_desc *desc;
	volatile uint16_t *avail;  /* flags, idx, ring[size] */
	volatile uint16_t *used;   /* flags, idx, then (id32, len32)[size] */
	uint16_t size;
	uint16_t next_avail;       /* the driver's copy of avail->idx */
	unsigned index;            /* queue number on the device */
};

struct vio_dev {
	uint64_t base;             /* the MMIO window */
	uint32_t device_id;
};

/* The first device with this ID (from slot `from` on), or base 0. */
int vio_find(struct vio_dev *d, uint32_t device_id, unsigned from);
/* Reset, ACKNOWLEDGE, DRIVER, offer `features` & the device's; returns
 * what was accepted (FEATURES_OK read back), or ~0 if the device refused. */
uint64_t vio_init(struct vio_dev *d, uint64_t features);
/* Set up queue `index` with `size` entries (0: the device's maximum, at
 * most 256) in the 16 KiB at `area` (4 KiB aligned, zeroed here). */
int vio_queue(struct vio_dev *d, struct vq *q, unsigned index, unsigned size, uint64_t area);
void vio_driver_ok(struct vio_dev *d);

static inline void vio_write(const struct vio_dev *d, uint32_t off, uint32_t v)
{
	writel(d->base + off, v);
}

static inline uint32_t vio_read(const struct vio_dev *d, uint32_t off)
{
	return readl(d->base + off);
}

static inline volatile struct vq_desc *vq_desc(struct vq *q, unsigned i)
{
	return &q->desc[i % q->size];
}

/* Make chain `head` available (no notify). */
void vq_post(struct vq *q, uint16_t head);
static inline void vq_notify(const struct vio_dev *d, const struct vq *q)
{
	vio_write(d, VIO_QUEUE_NOTIFY, q->index);
}

static inline uint16_t vq_used_idx(const struct vq *q)
{
	return q->used[1];
}

#endif
