// SPDX-License-Identifier: GPL-2.0-only
/*
 * snapcheck - the snapshot test image (issue 16).  vCPU 0 runs ROUNDS
 * rounds; round r rewrites one 64-bit word in every 4 KiB page of the
 * lower half of free RAM with pattern(addr) + r, then reads every word
 * back.  A snapshot taken mid-run and restored (the VMM killed in
 * between) must give back every word written before it and the vCPU's
 * registers, or a later check fails.  The upper half is never written
 * by the CPU: it stays holes in the snapshot's memory file -- except that
 * with a virtio-blk disk each round also reads 64 KiB of the disk into a
 * buffer in a 2 MiB block of its own in the upper half (fresh memory each
 * round: after an on-demand restore, the device thread is the first to
 * touch it and takes the fault) and checks the bytes: word i of sector s
 * must be disk_word(s, i), the pattern tests/vmm/test_snapshot.sh writes.
 *
 *   snapcheck: start (M MiB; pattern [0x..., 0x...), disk yes|no)
 *   snapcheck: round R ok
 * At the end every round's disk buffer is checked again (a live migration
 * must carry the device's writes: issue 17).
 *
 *   snapcheck: ROUNDS rounds ok, checksum 0x...        -> exit 0
 *   snapcheck: bad word at 0x...: ...                  -> exit 1
 */
#include "lib.h"
#include "vio.h"

#define PAGE 4096ULL
#define ROUNDS 10
#define DISK_READ (64 * 1024)
#define BLOCK (2ULL << 20)

static inline uint64_t pattern(uint64_t addr)
{
	return (addr * 0x9e3779b97f4a7c15ULL) ^ ~addr;
}

/* The disk's contents: word i of sector s. */
static inline uint64_t disk_word(uint64_t s, uint64_t i)
{
	return (s << 16 | i) * 0xd6e8feb86659fd93ULL;
}

/* Its word's offset in the page: one of 64 cache lines. */
static inline uint64_t word_addr(uint64_t page)
{
	return page + (((page >> 12) & 63) << 6);
}

struct blk_req {
	uint32_t type, reserved;
	uint64_t sector;
};

static struct vio_dev disk;
static struct vq dq;
static int have_disk;

/* One read of DISK_READ bytes at sector into buf, polled.  0 or -1. */
static int disk_read(uint64_t sector, uint64_t buf, uint64_t scratch)
{
	volatile struct blk_req *h = (volatile struct blk_req *)scratch;
	volatile uint8_t *status = (volatile uint8_t *)(scratch + 64);
	h->type = 0;
	h->reserved = 0;
	h->sector = sector;
	*status = 0xff;
	volatile struct vq_desc *d0 = vq_desc(&dq, 0), *d1 = vq_desc(&dq, 1), *d2 = vq_desc(&dq, 2);
	d0->addr = scratch;
	d0->len = sizeof(struct blk_req);
	d0->flags = VQ_F_NEXT;
	d0->next = 1;
	d1->addr = buf;
	d1->len = DISK_READ;
	d1->flags = VQ_F_NEXT | VQ_F_WRITE;
	d1->next = 2;
	d2->addr = scratch + 64;
	d2->len = 1;
	d2->flags = VQ_F_WRITE;
	d2->next = 0;
	uint16_t want = (uint16_t)(vq_used_idx(&dq) + 1);
	vq_post(&dq, 0);
	vq_notify(&disk, &dq);
	for (uint64_t spin = 0; vq_used_idx(&dq) != want; spin++) {
		if (spin > (1ULL << 32)) {
			puts("snapcheck: the disk never answered\n");
			return -1;
		}
		cpu_relax();
	}
	if (*status != 0) {
		printf("snapcheck: disk read at sector %lu: status %u\n", sector, *status);
		return -1;
	}
	return 0;
}

static int check_disk(uint64_t sector, uint64_t buf)
{
	for (uint64_t off = 0; off < DISK_READ; off += 8) {
		uint64_t s = sector + off / 512, i = (off % 512) / 8;
		uint64_t v = *(volatile uint64_t *)(buf + off);
		if (v != disk_word(s, i)) {
			printf("snapcheck: bad disk word at 0x%lx (sector %lu word %lu): read 0x%016lx, "
			       "expected 0x%016lx\n", buf + off, s, i, v, disk_word(s, i));
			return -1;
		}
	}
	return 0;
}

int main(const struct testimg_boot_info *bi, unsigned cpu)
{
	if (cpu != 0)
		halt_forever();
	uint64_t lo = TESTIMG_FREE_BASE;
	if ((uint64_t)(uintptr_t)__image_end > lo)
		lo = ((uint64_t)(uintptr_t)__image_end + PAGE - 1) & ~(PAGE - 1);
	/* The queue and the request header below the pattern. */
	uint64_t qarea = lo, scratch = lo + VQ_AREA_BYTES;
	lo += 2 * VQ_AREA_BYTES;
	uint64_t end = bi->ram_low_end & ~(BLOCK - 1);
	uint64_t mid = (lo + (end - lo) / 2) & ~(BLOCK - 1);
	if (mid <= lo || end - mid < (ROUNDS + 1) * BLOCK) {
		printf("snapcheck: needs at least %lu MiB of low RAM\n",
		       (unsigned long)((lo + (2 * ROUNDS + 2) * BLOCK) / MiB));
		return 1;
	}
	if (vio_find(&disk, VIO_ID_BLOCK, 0) >= 0) {
		uint64_t f = vio_init(&disk, VIO_F_VERSION_1);
		have_disk = f != ~0ULL && vio_queue(&disk, &dq, 0, 8, qarea) > 0;   /* its size */
		if (have_disk)
			vio_driver_ok(&disk);
	}
	printf("snapcheck: start (%lu MiB; pattern [0x%lx, 0x%lx), disk %s)\n",
	       (unsigned long)(bi->ram_size / MiB), lo, mid, have_disk ? "yes" : "no");

	uint64_t sum = 0;
	for (uint64_t r = 1; r <= ROUNDS; r++) {
		for (uint64_t p = lo; p < mid; p += PAGE) {
			uint64_t a = word_addr(p);
			*(volatile uint64_t *)a = pattern(a) + r;
		}
		sum = 0xcbf29ce484222325ULL;
		for (uint64_t p = lo; p < mid; p += PAGE) {
			uint64_t a = word_addr(p);
			uint64_t v = *(volatile uint64_t *)a;
			if (v != pattern(a) + r) {
				printf("snapcheck: bad word at 0x%lx in round %lu: read 0x%016lx, expected "
				       "0x%016lx\n", a, r, v, pattern(a) + r);
				return 1;
			}
			sum = (sum ^ v) * 0x100000001b3ULL;
		}
		if (have_disk) {
			uint64_t buf = mid + r * BLOCK, sector = r * (DISK_READ / 512);
			if (disk_read(sector, buf, scratch) < 0 || check_disk(sector, buf) < 0)
				return 1;
		}
		printf("snapcheck: round %lu ok\n", r);
	}
	/* Every round's disk buffer again: a migration that lost a device's
	 * write into guest memory (not marked dirty, never resent) shows here,
	 * on the destination (issue 17). */
	for (uint64_t r = 1; have_disk && r <= ROUNDS; r++)
		if (check_disk(r * (DISK_READ / 512), mid + r * BLOCK) < 0) {
			printf("snapcheck: round %lu's disk buffer is not what the disk holds\n", r);
			return 1;
		}
	printf("snapcheck: %d rounds ok, checksum 0x%016lx\n", ROUNDS, sum);
	return 0;
}
