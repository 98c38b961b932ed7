// SPDX-License-Identifier: GPL-2.0-only
/*
 * hostile/virtio - attack (e) of the hostile-guest suite: garbage in every
 * virtio-mmio register and config byte of every slot (present or not), at
 * every width, and queues that are set up properly and then filled with
 * random descriptors and random available heads and notified.  The VMM
 * must answer all of it without crashing, without a log line per access,
 * and stop when the host asks.
 *
 * Descriptors point either anywhere (random 64-bit addresses, nearly all
 * outside RAM) or into a scratch area [64, 96) MiB the image never runs
 * from, so that what a device writes cannot hit the image's own code.
 *
 *   hostile_virtio: start (N devices)
 *   hostile_virtio: ready (round 1 done)
 * then more rounds forever, until the host stops the VM.
 */
#include "../vio.h"

#define AREA_BASE (TESTIMG_FREE_BASE)       /* queue areas: 16 KiB each */
#define SCRATCH 0x4000000ULL                /* 64 MiB */
#define SCRATCH_LEN 0x2000000ULL            /* 32 MiB */

static uint64_t seed = 0x243f6a8885a308d3ULL;

static uint64_t garbage_addr(void)
{
	uint64_t r = rand64(&seed);
	return (r & 1) ? r : SCRATCH + (r >> 8) % SCRATCH_LEN;
}

static void fill_scratch(void)
{
	volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)SCRATCH;
	/* The first 32 KiB, each round anew; every 32-bit word >= 2^31, so
	 * that a balloon reading PFNs here never names the image's own RAM. */
	for (uint64_t i = 0; i < 4096; i++)
		p[i] = rand64(&seed) | 0x8000000080000000ULL;
}

/* Set a device up by the book, then feed its queues random chains. */
static void polite_then_garbage(struct vio_dev *d, unsigned slot)
{
	if (vio_init(d, ~0ULL) == ~0ULL)
		return;
	struct vq q[4];
	unsigned nq = 0;
	for (unsigned i = 0; i < 4; i++)
		if (vio_queue(d, &q[nq], i, 0, AREA_BASE + (slot * 4 + i) * VQ_AREA_BYTES) > 0)
			nq++;
	vio_driver_ok(d);
	for (unsigned i = 0; i < nq; i++) {
		for (unsigned k = 0; k < q[i].size; k++) {
			volatile struct vq_desc *e = vq_desc(&q[i], k);
			uint64_t r = rand64(&seed);
			e->addr = garbage_addr();
			e->len = (r & 3) ? (uint32_t)(r >> 32) % 0x10000 : (uint32_t)(r >> 32);
			e->flags = (uint16_t)(r >> 8) & 7;
			e->next = (uint16_t)(r >> 16);
		}
		for (unsigned k = 0; k < 64; k++)
			vq_post(&q[i], (uint16_t)rand64(&seed));
		vq_notify(d, &q[i]);
		/* And an index far ahead of what was posted. */
		q[i].avail[1] = (uint16_t)(q[i].next_avail + 1000);
		vq_notify(d, &q[i]);
	}
}

/* Random values into every register and config byte, at every width. */
static void raw_garbage(uint64_t base)
{
	for (uint32_t off = 0; off < 0x200; off += 4) {
		if (off == VIO_STATUS && (rand64(&seed) & 3) == 0)
			writel(base + off, 0); /* resets, now and then */
		writel(base + off, (uint32_t)rand64(&seed));
		(void)readl(base + off);
	}
	for (uint32_t off = 0; off < 0x200; off++) {
		writeb(base + off, (uint8_t)rand64(&seed));
		(void)readb(base + off);
		if (off % 2 == 0)
			writew(base + off, (uint16_t)rand64(&seed));
	}
	/* Notifications for queues that do not exist. */
	for (unsigned i = 0; i < 8; i++)
		writel(base + VIO_QUEUE_NOTIFY, (uint32_t)rand64(&seed));
}

static void round_once(void)
{
	fill_scratch();
	for (unsigned s = 0; s < TESTIMG_VIRTIO_SLOTS; s++) {
		uint64_t base = TESTIMG_VIRTIO_BASE + s * TESTIMG_VIRTIO_WINDOW;
		struct vio_dev d = { .base = base, .device_id = readl(base + VIO_DEVICE_ID) };
		if (readl(base + VIO_MAGIC) == VIO_MAGIC_VALUE)
			polite_then_garbage(&d, s);
		raw_garbage(base);
	}
}

int main(const struct testimg_boot_info *bi, unsigned cpu)
{
	if (cpu != 0)
		halt_forever();
	if (bi->ram_low_end < SCRATCH + SCRATCH_LEN) {
		puts("hostile_virtio: needs at least 96 MiB of low RAM\n");
		return 1;
	}
	unsigned n = 0;
	for (unsigned s = 0; s < TESTIMG_VIRTIO_SLOTS; s++)
		n += readl(TESTIMG_VIRTIO_BASE + s * TESTIMG_VIRTIO_WINDOW + VIO_MAGIC) == VIO_MAGIC_VALUE;
	printf("hostile_virtio: start (%u devices)\n", n);
	round_once();
	puts("hostile_virtio: ready (round 1 done)\n");
	for (;;)
		round_once();
}
