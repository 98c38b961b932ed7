// SPDX-License-Identifier: GPL-2.0-only
/*
 * vio.c - the test images' polled virtio-mmio driver (vio.h): device
 * discovery in the VMM's slots (testimg.h), the status and feature
 * handshake of virtio 1.2 3.1.1, and split virtqueues laid out in RAM the
 * image chooses.
 */
#include "vio.h"

int vio_find(struct vio_dev *d, uint32_t device_id, unsigned from)
{
	for (unsigned s = from; s < TESTIMG_VIRTIO_SLOTS; s++) {
		uint64_t base = TESTIMG_VIRTIO_BASE + s * TESTIMG_VIRTIO_WINDOW;
		if (readl(base + VIO_MAGIC) != VIO_MAGIC_VALUE)
			continue;
		if (readl(base + VIO_DEVICE_ID) == device_id) {
			d->base = base;
			d->device_id = device_id;
			return (int)s;
		}
	}
	d->base = 0;
	return -1;
}

uint64_t vio_init(struct vio_dev *d, uint64_t features)
{
	vio_write(d, VIO_STATUS, 0);
	vio_write(d, VIO_STATUS, VIO_S_ACK);
	vio_write(d, VIO_STATUS, VIO_S_ACK | VIO_S_DRIVER);
	vio_write(d, VIO_DEVICE_FEATURES_SEL, 0);
	uint64_t have = vio_read(d, VIO_DEVICE_FEATURES);
	vio_write(d, VIO_DEVICE_FEATURES_SEL, 1);
	have |= (uint64_t)vio_read(d, VIO_DEVICE_FEATURES) << 32;
	uint64_t want = have & features;
	vio_write(d, VIO_DRIVER_FEATURES_SEL, 0);
	vio_write(d, VIO_DRIVER_FEATURES, (uint32_t)want);
	vio_write(d, VIO_DRIVER_FEATURES_SEL, 1);
	vio_write(d, VIO_DRIVER_FEATURES, (uint32_t)(want >> 32));
	vio_write(d, VIO_STATUS, VIO_S_ACK | VIO_S_DRIVER | VIO_S_FEATURES_OK);
	if (!(vio_read(d, VIO_STATUS) & VIO_S_FEATURES_OK))
		return ~0ULL;
	return want;
}

int vio_queue(struct vio_dev *d, struct vq *q, unsigned index, unsigned size, uint64_t area)
{
	vio_write(d, VIO_QUEUE_SEL, index);
	unsigned max = vio_read(d, VIO_QUEUE_NUM_MAX);
	if (max == 0)
		return -1;
	if (size == 0 || size > max)
		size = max;
	if (size > 256)
		size = 256;
	memset((void *)(uintptr_t)area, 0, VQ_AREA_BYTES);
	q->desc = (volatile struct vq_desc *)(uintptr_t)area;
	q->avail = (volatile uint16_t *)(uintptr_t)(area + 0x1000);
	q->used = (volatile uint16_t *)(uintptr_t)(area + 0x2000);
	q->size = (uint16_t)size;
	q->next_avail = 0;
	q->index = index;
	vio_write(d, VIO_QUEUE_NUM, size);
	vio_write(d, VIO_QUEUE_DESC, (uint32_t)area);
	vio_write(d, VIO_QUEUE_DESC + 4, (uint32_t)(area >> 32));
	vio_write(d, VIO_QUEUE_AVAIL, (uint32_t)(area + 0x1000));
	vio_write(d, VIO_QUEUE_AVAIL + 4, (uint32_t)((area + 0x1000) >> 32));
	vio_write(d, VIO_QUEUE_USED, (uint32_t)(area + 0x2000));
	vio_write(d, VIO_QUEUE_USED + 4, (uint32_t)((area + 0x2000) >> 32));
	vio_write(d, VIO_QUEUE_READY, 1);
	return (int)size;
}

void vio_driver_ok(struct vio_dev *d)
{
	vio_write(d, VIO_STATUS, VIO_S_ACK | VIO_S_DRIVER | VIO_S_FEATURES_OK | VIO_S_DRIVER_OK);
}

void vq_post(struct vq *q, uint16_t head)
{
	q->avail[2 + q->next_avail % q->size] = head;
	barrier(); /* x86 keeps stores in order; the compiler must too */
	q->next_avail++;
	q->avail[1] = q->next_avail;
	barrier();
}
