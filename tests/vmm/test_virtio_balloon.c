// SPDX-License-Identifier: GPL-2.0-only
/*
 * test_virtio_balloon.c - the balloon driven by the test driver (vdriver.h):
 * inflate/deflate against guestmm's table and the host's memory, statistics,
 * free page reporting, the host's target, and hostile rings.
 *
 * Guest RAM is 64 MiB at GPA 0; the driver's rings and buffers are bump-
 * allocated from the bottom, so the pages the tests balloon lie at 16 MiB
 * and above.  Host residency is measured with mincore() on the region's
 * host mapping (the test may look there; the device may not).
 */
#include "vdriver.h"
#include "virtio/virtio_devices.h"

#include <criterion/criterion.h>
#include <json-c/json.h>
#include "hugetlb_pool.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define RAM (64ULL << 20)
#define PG 4096ULL
#define F_MUST_TELL_HOST (1ULL << 0)
#define F_STATS_VQ (1ULL << 1)
#define F_DEFLATE_ON_OOM (1ULL << 2)
#define F_REPORTING (1ULL << 5)
#define Q_INFLATE 0
#define Q_DEFLATE 1

static struct vdriver v;
static struct virtio_dev *dev;

static void start_ram(uint64_t ram, enum gmm_backing backing, const struct balloon_config *cfg,
		      uint64_t want, unsigned nqueues)
{
	cr_assert_eq(vd_init_backing(&v, ram, backing), 0, "vd_init: %s", gmm_last_error());
	char err[256];
	dev = virtio_balloon_create(v.mem, cfg, err, sizeof(err));
	cr_assert_not_null(dev, "create: %s", err);
	cr_assert_eq(dev->ops->start(dev), 0);
	int st = vd_setup(&v, dev, want, nqueues, 64);
	cr_assert(st > 0 && (st & VIRTIO_STATUS_DRIVER_OK), "vd_setup: status %#x", st);
}

static void start(enum gmm_backing backing, const struct balloon_config *cfg, uint64_t want,
		  unsigned nqueues)
{
	start_ram(RAM, backing, cfg, want, nqueues);
}

static void start_thp(void)
{
	/* No KVM here: the host collapse is exercised too (virtio_devices.h). */
	struct balloon_config cfg = { .host_thp_collapse = true };
	start(GMM_BACKING_THP, &cfg, ~0ULL, 2);
}

static void stop(void)
{
	if (dev)
		dev->ops->destroy(dev);
	dev = NULL;
	vd_fini(&v);
}

static struct balloon_info info(void)
{
	struct balloon_info in;
	virtio_balloon_info(dev, &in);
	return in;
}

/* Post one buffer of PFNs on q and wait for the device to use it. */
static void send_pfns(unsigned q, const uint32_t *pfns, size_t n)
{
	uint64_t buf = vd_alloc(&v, 4 * n, 4);
	uint32_t *le = calloc(n, 4);
	for (size_t i = 0; i < n; i++)
		le[i] = htole32(pfns[i]);
	vd_write(&v, buf, le, 4 * n);
	free(le);
	struct vd_buf b = { .gpa = buf, .len = (uint32_t)(4 * n) };
	int head = vd_add(&v, q, &b, 1, false);
	vd_kick(&v, q);
	uint32_t len = 99;
	cr_assert_eq(vd_wait_used(&v, q, 5000, &len), head, "queue %u: buffer not used", q);
	cr_assert_eq(len, 0);
}

/* PFNs [first, first + n) */
static void send_range(unsigned q, uint64_t gpa, size_t n)
{
	uint32_t *p = calloc(n, 4);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint32_t)(gpa / PG + i);
	send_pfns(q, p, n);
	free(p);
}

static uint8_t *hva(uint64_t gpa)
{
	struct gmm_region_info ri;
	gmm_region_info(v.ram, &ri);
	return (uint8_t *)ri.hva + gpa;
}

/* Host pages of [gpa, gpa + len) that are resident. */
static size_t resident_pages(uint64_t gpa, uint64_t len)
{
	size_t n = len / PG, count = 0;
	unsigned char *vec = calloc(n, 1);
	cr_assert_eq(mincore(hva(gpa), len, vec), 0, "mincore: %s", strerror(errno));
	for (size_t i = 0; i < n; i++)
		count += vec[i] & 1;
	free(vec);
	return count;
}

static void fill(uint64_t gpa, uint64_t len, uint8_t byte)
{
	for (uint64_t a = gpa; a < gpa + len; a += PG) {
		gmm_walk_begin(v.w);
		uint8_t *p = gmm_translate(v.w, a, PG, GMM_ACCESS_WRITE);
		cr_assert_not_null(p, "fill 0x%llx", (unsigned long long)a);
		memset(p, byte, PG);
		gmm_walk_end(v.w);
	}
}

static bool all_bytes(uint64_t gpa, uint64_t len, uint8_t byte)
{
	bool ok = true;
	for (uint64_t a = gpa; a < gpa + len && ok; a += PG) {
		gmm_walk_begin(v.w);
		const uint8_t *p = gmm_translate(v.w, a, PG, GMM_ACCESS_READ);
		cr_assert_not_null(p, "read 0x%llx", (unsigned long long)a);
		for (uint64_t i = 0; i < PG && ok; i++)
			ok = p[i] == byte;
		gmm_walk_end(v.w);
	}
	return ok;
}

static uint64_t leaf(uint64_t gpa)
{
	uint64_t sz = 0;
	gmm_table_lookup(v.mem, gpa, &sz);
	return sz;
}

static struct gmm_stats gstats(void)
{
	struct gmm_stats st;
	gmm_vm_stats(v.mem, &st);
	return st;
}

static void drain_irqs(void)
{
	while (vd_wait_irq(&v, 0))
		;
}

/* Wait up to ms for cond (re-evaluated) to hold. */
#define WAIT_FOR(cond, ms)                                                   \
	({                                                                   \
		bool ok_ = false;                                            \
		for (int i_ = 0; i_ < (ms) && !(ok_ = (cond)); i_++)         \
			usleep(1000);                                        \
		ok_;                                                         \
	})

/* ---- features and config ----------------------------------------------- */

Test(balloon, features_and_config, .fini = stop)
{
	struct balloon_config cfg = { .stats = true, .deflate_on_oom = true,
				      .free_page_reporting = true };
	start(GMM_BACKING_THP, &cfg, ~0ULL, 4);
	cr_assert_eq(vd_reg_read(&v, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_BALLOON);
	vd_reg_write(&v, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t f = vd_reg_read(&v, VIRTIO_MMIO_DEVICE_FEATURES);
	cr_assert_eq(f & 0xff, F_MUST_TELL_HOST | F_STATS_VQ | F_DEFLATE_ON_OOM | F_REPORTING);
	cr_assert_eq(vd_config_read(&v, 0, 4), 0, "num_pages starts at 0");
	cr_assert_eq(vd_config_read(&v, 4, 4), 0, "actual starts at 0");
	cr_assert_eq(vd_config_read(&v, 8, 8), 0);
	vd_reg_write(&v, VIRTIO_MMIO_QUEUE_SEL, 4);
	cr_assert_eq(vd_reg_read(&v, VIRTIO_MMIO_QUEUE_NUM_MAX), 0, "only 4 queues");
	char buf[4096] = "other 1\n";
	dev->ops->counters(dev, buf, sizeof(buf));
	cr_assert(strncmp(buf, "other 1\n", 8) == 0, "counters append");
	cr_assert(strstr(buf, "balloon_inflated_bytes 0\n"));
	cr_assert(strstr(buf, "balloon_bad_pfns 0\n"));
}

Test(balloon, features_follow_the_config, .fini = stop)
{
	struct balloon_config cfg = { 0 };
	start(GMM_BACKING_THP, &cfg, ~0ULL, 2);
	vd_reg_write(&v, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	cr_assert_eq(vd_reg_read(&v, VIRTIO_MMIO_DEVICE_FEATURES) & 0xff, F_MUST_TELL_HOST);
}

/* ---- inflate / deflate on THP ------------------------------------------ */

Test(balloon, inflate_splits_and_frees_deflate_collapses, .fini = stop, .timeout = 60)
{
	start_thp();
	const uint64_t blk = 16ULL << 20;
	fill(blk, GMM_2M, 0xab);
	cr_assert_eq(resident_pages(blk, GMM_2M), 512, "the pattern is resident");
	cr_assert_eq(leaf(blk), GMM_2M);
	struct gmm_stats st0 = gstats();

	/* Pages 1..100 of the block. */
	send_range(Q_INFLATE, blk + PG, 100);
	struct gmm_stats st1 = gstats();
	cr_assert_eq(st1.splits, st0.splits + 1, "the 2 MiB leaf was split once");
	cr_assert_eq(leaf(blk + PG), 0, "inflated pages have no translation");
	cr_assert_eq(leaf(blk + 100 * PG), 0);
	cr_assert_eq(leaf(blk), PG, "page 0 is a 4 KiB leaf now");
	cr_assert_eq(leaf(blk + 101 * PG), PG);
	cr_assert_eq(resident_pages(blk + PG, 100 * PG), 0, "host memory of inflated pages is gone");
	cr_assert_eq(resident_pages(blk, PG), 1);
	cr_assert_eq(resident_pages(blk + 101 * PG, GMM_2M - 101 * PG), 512 - 101);
	cr_assert(all_bytes(blk, PG, 0xab));
	cr_assert(all_bytes(blk + 101 * PG, GMM_2M - 101 * PG, 0xab), "neighbours intact");
	struct balloon_info in = info();
	cr_assert_eq(in.inflated_bytes, 100 * PG);
	cr_assert_eq(in.inflate_pages, 100);
	cr_assert_eq(in.bad_pfns, 0);
	/* A device cannot reach them either. */
	uint8_t x;
	cr_assert_neq(gmm_read(v.w, blk + 50 * PG, &x, 1), 0);

	/* Deflate all but one: no collapse yet. */
	send_range(Q_DEFLATE, blk + PG, 99);
	cr_assert_eq(leaf(blk), PG, "one page still in the balloon");
	cr_assert_eq(info().collapsed_blocks, 0);
	cr_assert_eq(info().inflated_bytes, PG);
	/* The last one: the block is whole again and collapses. */
	send_range(Q_DEFLATE, blk + 100 * PG, 1);
	cr_assert_eq(leaf(blk), GMM_2M, "collapsed back to a 2 MiB leaf");
	struct gmm_stats st2 = gstats();
	cr_assert_eq(st2.collapses, st1.collapses + 1);
	in = info();
	cr_assert_eq(in.collapsed_blocks, 1);
	cr_assert_eq(in.inflated_bytes, 0);
	cr_assert_eq(in.deflate_pages, 100);
	cr_assert(all_bytes(blk + PG, 100 * PG, 0), "deflated pages come back zeroed");
	/* MADV_COLLAPSE was tried for the block (best effort: either way). */
	char buf[4096] = "";
	dev->ops->counters(dev, buf, sizeof(buf));
	unsigned long ok = 0, failed = 0;
	cr_assert(sscanf(strstr(buf, "balloon_thp_collapse_ok"), "balloon_thp_collapse_ok %lu", &ok) == 1);
	cr_assert(sscanf(strstr(buf, "balloon_thp_collapse_failed"), "balloon_thp_collapse_failed %lu",
			 &failed) == 1);
	cr_assert_eq(ok + failed, 1, "%s", buf);
	cr_log_info("MADV_COLLAPSE %s", ok ? "succeeded" : "failed (old kernel?)");
	cr_assert(all_bytes(blk + 101 * PG, GMM_2M - 101 * PG, 0xab));
	cr_assert(all_bytes(blk, PG, 0xab));
}

Test(balloon, whole_block_needs_no_split, .fini = stop, .timeout = 60)
{
	start_thp();
	const uint64_t blk = 20ULL << 20;
	fill(blk, GMM_2M, 0x3c);
	struct gmm_stats st0 = gstats();
	send_range(Q_INFLATE, blk, 512);
	cr_assert_eq(leaf(blk), 0);
	cr_assert_eq(leaf(blk + GMM_2M - PG), 0);
	cr_assert_eq(gstats().splits, st0.splits, "a whole block is unmapped as one leaf");
	cr_assert_eq(resident_pages(blk, GMM_2M), 0);
	cr_assert_eq(leaf(blk + GMM_2M), GMM_2M, "the next block is untouched");
	send_range(Q_DEFLATE, blk, 512);
	cr_assert_eq(leaf(blk), GMM_2M, "mapped back as one 2 MiB leaf");
	cr_assert_eq(info().collapsed_blocks, 0, "nothing to collapse");
	cr_assert_eq(info().inflated_bytes, 0);
	cr_assert(all_bytes(blk, GMM_2M, 0));
}

Test(balloon, pfns_outside_ram_and_duplicates, .fini = stop, .timeout = 60)
{
	start_thp();
	const uint64_t a = 32ULL << 20;
	uint32_t pfns[] = {
		(uint32_t)(a / PG + 7), (uint32_t)(RAM / PG), (uint32_t)(a / PG + 5),
		(uint32_t)(a / PG + 7), 0xffffffffu, (uint32_t)(a / PG + 6), (uint32_t)(a / PG + 7),
	};
	send_pfns(Q_INFLATE, pfns, sizeof(pfns) / sizeof(pfns[0]));
	struct balloon_info in = info();
	cr_assert_eq(in.bad_pfns, 2, "two PFNs outside RAM");
	cr_assert_eq(in.inflated_bytes, 3 * PG, "5, 6, 7 once each");
	cr_assert_eq(in.inflate_pages, 3);
	cr_assert_eq(leaf(a + 6 * PG), 0);
	cr_assert_eq(leaf(a + 8 * PG), PG);
	/* Inflating them again changes nothing. */
	send_range(Q_INFLATE, a + 5 * PG, 3);
	cr_assert_eq(info().inflated_bytes, 3 * PG);
	cr_assert_eq(info().inflate_pages, 3);
	/* Deflating a page never inflated is a no-op; so is a second deflate. */
	send_range(Q_DEFLATE, a + 100 * PG, 1);
	cr_assert_eq(info().deflate_pages, 0);
	send_range(Q_DEFLATE, a + 5 * PG, 3);
	send_range(Q_DEFLATE, a + 5 * PG, 3);
	in = info();
	cr_assert_eq(in.deflate_pages, 3);
	cr_assert_eq(in.inflated_bytes, 0);
	cr_assert_eq(leaf(a), GMM_2M);
	cr_assert_eq(in.bad_pfns, 2);
	cr_assert_eq(vd_reg_read(&v, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
}

/* PFNs split over two descriptors of an indirect table, one PFN across
 * the boundary; a trailing partial PFN is ignored. */
Test(balloon, pfns_across_segments, .fini = stop, .timeout = 60)
{
	start_thp();
	const uint64_t a = 40ULL << 20;
	uint32_t le[4];
	for (int i = 0; i < 4; i++)
		le[i] = htole32((uint32_t)(a / PG + 10 + i));
	uint64_t b1 = vd_alloc(&v, 6, 4), b2 = vd_alloc(&v, 16, 4);
	vd_write(&v, b1, le, 6);
	vd_write(&v, b2, (uint8_t *)le + 6, 10);
	vd_write(&v, b2 + 10, "\x01\x02\x03", 3);
	struct vd_buf bufs[2] = { { .gpa = b1, .len = 6 }, { .gpa = b2, .len = 13 } };
	int head = vd_add(&v, Q_INFLATE, bufs, 2, true);
	vd_kick(&v, Q_INFLATE);
	cr_assert_eq(vd_wait_used(&v, Q_INFLATE, 5000, NULL), head);
	cr_assert_eq(info().inflated_bytes, 4 * PG);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(leaf(a + (10 + i) * PG), 0);
	cr_assert_eq(leaf(a + 14 * PG), PG);
}

/* A data buffer outside RAM is that request's error, not a broken ring. */
Test(balloon, bad_pfn_buffer_is_ignored, .fini = stop, .timeout = 60)
{
	start_thp();
	struct vd_buf b = { .gpa = 1ULL << 30, .len = 64 };
	int head = vd_add(&v, Q_INFLATE, &b, 1, false);
	vd_kick(&v, Q_INFLATE);
	cr_assert_eq(vd_wait_used(&v, Q_INFLATE, 5000, NULL), head);
	cr_assert_eq(vd_reg_read(&v, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
	cr_assert_eq(info().inflated_bytes, 0);
	/* And the queue still works. */
	send_range(Q_INFLATE, 44ULL << 20, 2);
	cr_assert_eq(info().inflated_bytes, 2 * PG);
}

/* ---- other backings ------------------------------------------------------ */

Test(balloon, anon_backing, .fini = stop, .timeout = 60)
{
	struct balloon_config cfg = { 0 };
	start(GMM_BACKING_ANON, &cfg, ~0ULL, 2);
	const uint64_t a = 16ULL << 20;
	fill(a, 64 * PG, 0x77);
	struct gmm_stats st0 = gstats();
	send_range(Q_INFLATE, a + 8 * PG, 16);
	cr_assert_eq(leaf(a + 8 * PG), 0);
	cr_assert_eq(leaf(a + 7 * PG), PG);
	cr_assert_eq(gstats().splits, st0.splits, "4 KiB leaves need no split");
	cr_assert_eq(resident_pages(a + 8 * PG, 16 * PG), 0);
	cr_assert_eq(resident_pages(a, 8 * PG), 8);
	send_range(Q_DEFLATE, a + 8 * PG, 16);
	cr_assert_eq(leaf(a + 8 * PG), PG);
	cr_assert(all_bytes(a + 8 * PG, 16 * PG, 0));
	cr_assert(all_bytes(a + 24 * PG, 40 * PG, 0x77));
	cr_assert_eq(info().collapsed_blocks, 0, "anon never collapses");
	cr_assert_eq(info().inflated_bytes, 0);
}

/* hugetlb-2M: 16 MiB of guest RAM, 8 huge pages reserved by the test
 * itself as test_backing does (the pool is put back in fini and, should
 * the test process die, in POST_ALL); skipped loudly when it cannot. */
static void hp_init(void)
{
	hp_save();
}

static void hp_fini(void)
{
	stop();
	hp_restore("test_virtio_balloon");
}

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	(void)set;
	hp_save();
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	hp_restore("test_virtio_balloon");
}

Test(balloon, hugetlb_2m_whole_host_pages, .init = hp_init, .fini = hp_fini, .timeout = 60)
{
	const uint64_t ram = 16ULL << 20;
	if (hp_saved < 0)
		cr_skip_test("!!! SKIPPED: no 2 MiB hugetlb pool in sysfs: balloon on hugetlb-2M untested !!!");
	long avail = hp_avail(HP2M);
	if (avail < 8 && !hp_write_long(HP2M "nr_hugepages", hp_saved + (8 - avail)))
		cr_skip_test("!!! SKIPPED: cannot write %snr_hugepages (%s): balloon on hugetlb-2M untested !!!",
			     HP2M, strerror(errno));
	struct vdriver probe;
	if (vd_init_backing(&probe, ram, GMM_BACKING_HUGETLB_2M) < 0)
		cr_skip_test("!!! SKIPPED: %s: balloon on hugetlb-2M untested !!!", gmm_last_error());
	vd_fini(&probe);
	struct balloon_config cfg = { .free_page_reporting = true };
	start_ram(ram, GMM_BACKING_HUGETLB_2M, &cfg, ~0ULL, 3);
	const uint64_t blk = 8ULL << 20;
	fill(blk, GMM_2M, 0x42);
	send_range(Q_INFLATE, blk, 511);
	cr_assert_eq(leaf(blk), GMM_2M, "a huge page stays until all of it is inflated");
	cr_assert_eq(info().inflated_bytes, 511 * PG);
	cr_assert(all_bytes(blk, GMM_2M, 0x42), "nothing was discarded yet");
	send_range(Q_INFLATE, blk + 511 * PG, 1);
	cr_assert_eq(leaf(blk), 0, "the whole huge page went");
	cr_assert_eq(info().inflated_bytes, 512 * PG);
	send_range(Q_DEFLATE, blk + 3 * PG, 1);
	cr_assert_eq(leaf(blk), GMM_2M, "the first deflate maps the huge page back");
	cr_assert_eq(info().inflated_bytes, 511 * PG);
	cr_assert(all_bytes(blk, GMM_2M, 0), "a punched huge page reads zero");
	send_range(Q_INFLATE, blk + 3 * PG, 1);
	cr_assert_eq(leaf(blk), 0, "and full again: gone again");
	send_range(Q_DEFLATE, blk, 512);
	cr_assert_eq(leaf(blk), GMM_2M);
	cr_assert_eq(info().inflated_bytes, 0);

	/* Reporting: 4 KiB pieces are skipped, whole huge pages discarded. */
	const uint64_t b2 = 12ULL << 20;
	fill(b2, 2 * GMM_2M, 0x24);
	struct vd_buf bufs[2] = {
		{ .gpa = b2, .len = 16 * PG, .write = true },
		{ .gpa = b2 + GMM_2M, .len = GMM_2M, .write = true },
	};
	int head = vd_add(&v, 2, bufs, 2, false);
	vd_kick(&v, 2);
	cr_assert_eq(vd_wait_used(&v, 2, 5000, NULL), head);
	cr_assert_eq(info().reported_bytes, GMM_2M);
	cr_assert(all_bytes(b2, GMM_2M, 0x24), "a 4 KiB piece of a huge page is skipped");
	cr_assert(all_bytes(b2 + GMM_2M, GMM_2M, 0));
	cr_assert_eq(leaf(b2 + GMM_2M), GMM_2M);
}

/* ---- the host's target and the driver's actual ----------------------------- */

Test(balloon, set_target_and_actual, .fini = stop, .timeout = 30)
{
	start_thp();
	drain_irqs();
	char err[256];
	cr_assert_eq(virtio_balloon_set_target(dev, 8ULL << 20, err, sizeof(err)), 0, "%s", err);
	cr_assert(vd_wait_irq(&v, 2000), "config change interrupt");
	cr_assert(vd_reg_read(&v, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_INT_CONFIG);
	vd_reg_write(&v, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_INT_CONFIG);
	cr_assert_eq(vd_config_read(&v, 0, 4), (8ULL << 20) / PG);
	cr_assert_eq(info().target_bytes, 8ULL << 20);

	cr_assert_eq(virtio_balloon_set_target(dev, RAM + PG, err, sizeof(err)), -1);
	cr_assert(strstr(err, "RAM"), "%s", err);
	cr_assert_eq(virtio_balloon_set_target(dev, 1000, err, sizeof(err)), -1);
	cr_assert_eq(info().target_bytes, 8ULL << 20, "refused targets change nothing");
	cr_assert_eq(virtio_balloon_set_target(dev, RAM, err, sizeof(err)), 0, "all of RAM is allowed");

	vd_config_write(&v, 4, 1234, 4);
	cr_assert_eq(info().actual_bytes, 1234 * PG);
	cr_assert_eq(vd_config_read(&v, 4, 4), 1234);
	vd_config_write(&v, 5, 0x01, 1);
	cr_assert_eq(info().actual_bytes, (uint64_t)((1234 & ~0xff00) | 0x100) * PG, "byte write");
	vd_config_write(&v, 0, 7, 4);
	cr_assert_eq(vd_config_read(&v, 0, 4), RAM / PG, "num_pages is not the driver's");
	char buf[4096] = "";
	dev->ops->counters(dev, buf, sizeof(buf));
	cr_assert(strstr(buf, "balloon_target_bytes 67108864\n"), "%s", buf);
}

/* ---- statistics ------------------------------------------------------------ */

static void post_stats(unsigned q, uint64_t memfree, uint64_t memtot)
{
	uint8_t buf[30];
	struct { uint16_t tag; uint64_t val; } e[3] = { { 4, memfree }, { 5, memtot }, { 99, 1 } };
	for (int i = 0; i < 3; i++) {
		uint16_t t = htole16(e[i].tag);
		uint64_t val = htole64(e[i].val);
		memcpy(buf + 10 * i, &t, 2);
		memcpy(buf + 10 * i + 2, &val, 8);
	}
	uint64_t gpa = vd_alloc(&v, sizeof(buf), 2);
	vd_write(&v, gpa, buf, sizeof(buf));
	struct vd_buf b = { .gpa = gpa, .len = sizeof(buf) };
	vd_add(&v, q, &b, 1, false);
	vd_kick(&v, q);
}

Test(balloon, stats_round_trip, .fini = stop, .timeout = 30)
{
	struct balloon_config cfg = { .stats = true, .stats_period_s = 1 };
	start(GMM_BACKING_THP, &cfg, ~0ULL, 3);
	cr_assert_not(info().stats_valid);
	post_stats(2, 1000, 5000);
	cr_assert(WAIT_FOR(info().stats_valid, 3000), "statistics parsed");
	struct balloon_info in = info();
	cr_assert_eq(in.stats[4], 1000);
	cr_assert_eq(in.stats[5], 5000);
	cr_assert_eq(in.stats[0], 0);
	cr_assert_lt(in.stats_age_ms, 1000);
	/* The device keeps the buffer until it wants fresh numbers. */
	cr_assert_eq(vd_used_pending(&v, 2), 0);
	uint32_t len = 7;
	cr_assert_geq(vd_wait_used(&v, 2, 5000, &len), 0, "the request for fresh statistics");
	cr_assert_eq(len, 0);
	/* Event-index: the device must ask for a kick at the refill (a Linux
	 * driver kicks only when avail->idx passes avail_event). */
	uint16_t ev = 0;
	cr_assert(WAIT_FOR((vd_read(&v, v.q[2].used + 4 + 8ULL * v.q[2].num, &ev, 2),
			    le16toh(ev) == v.q[2].avail_idx), 2000),
		  "avail_event %u, avail idx %u", le16toh(ev), v.q[2].avail_idx);
	post_stats(2, 2000, 5000);
	cr_assert(WAIT_FOR(info().stats[4] == 2000, 3000), "refilled statistics parsed");
	cr_assert_eq(info().stats[5], 5000);
	char buf[4096] = "";
	dev->ops->counters(dev, buf, sizeof(buf));
	cr_assert(strstr(buf, "balloon_stats_updates 2\n"), "%s", buf);
}

/* ---- free page reporting --------------------------------------------------- */

static void report(unsigned q, const struct vd_buf *bufs, unsigned n)
{
	int head = vd_add(&v, q, bufs, n, false);
	vd_kick(&v, q);
	uint32_t len = 99;
	cr_assert_eq(vd_wait_used(&v, q, 5000, &len), head, "report used");
	cr_assert_eq(len, 0);
}

/* REPORTING without STATS_VQ: the reporting queue is index 2. */
Test(balloon, reporting_discards_at_index_2, .fini = stop, .timeout = 60)
{
	struct balloon_config cfg = { .free_page_reporting = true, .stats = true };
	start(GMM_BACKING_THP, &cfg, ~F_STATS_VQ, 3);
	const uint64_t a = 24ULL << 20;
	fill(a, 3 * GMM_2M, 0x5e);
	cr_assert_eq(resident_pages(a, GMM_2M), 512);
	struct vd_buf bufs[3] = {
		{ .gpa = a, .len = GMM_2M, .write = true },
		{ .gpa = a + GMM_2M + PG, .len = PG, .write = true },
		/* Not 4 KiB aligned inside: rounded inward to nothing. */
		{ .gpa = a + 2 * GMM_2M + 100, .len = 5000, .write = true },
	};
	report(2, bufs, 3);
	struct balloon_info in = info();
	cr_assert_eq(in.reported_bytes, GMM_2M + PG);
	cr_assert_eq(leaf(a), GMM_2M, "translations unchanged");
	cr_assert_eq(leaf(a + GMM_2M), GMM_2M);
	cr_assert_eq(resident_pages(a, GMM_2M), 0, "host memory given back");
	cr_assert(all_bytes(a, GMM_2M, 0), "reported pages read zero");
	cr_assert(all_bytes(a + GMM_2M + PG, PG, 0));
	cr_assert(all_bytes(a + GMM_2M, PG, 0x5e));
	cr_assert(all_bytes(a + GMM_2M + 2 * PG, GMM_2M - 2 * PG, 0x5e));
	cr_assert(all_bytes(a + 2 * GMM_2M, GMM_2M, 0x5e), "the unaligned piece was skipped");
	cr_assert_eq(in.inflated_bytes, 0, "reporting is not ballooning");
	/* Outside RAM: ignored, counted, the chain still used. */
	struct vd_buf out = { .gpa = RAM, .len = GMM_2M, .write = true };
	report(2, &out, 1);
	cr_assert_eq(info().bad_pfns, 512);
	cr_assert_eq(info().reported_bytes, GMM_2M + PG);
	cr_assert_eq(vd_reg_read(&v, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
}

/* Both: stats 2, reporting 3. */
Test(balloon, queue_indices_with_stats_and_reporting, .fini = stop, .timeout = 60)
{
	struct balloon_config cfg = { .free_page_reporting = true, .stats = true };
	start(GMM_BACKING_THP, &cfg, ~0ULL, 4);
	const uint64_t a = 24ULL << 20;
	fill(a, GMM_2M, 0x5e);
	post_stats(2, 11, 22);
	cr_assert(WAIT_FOR(info().stats_valid, 3000));
	cr_assert_eq(vd_used_pending(&v, 2), 0, "queue 2 holds statistics");
	struct vd_buf b = { .gpa = a, .len = GMM_2M, .write = true };
	report(3, &b, 1);
	cr_assert_eq(info().reported_bytes, GMM_2M);
	cr_assert(all_bytes(a, GMM_2M, 0));
}

/* ---- hostile rings and reset ------------------------------------------------ */

Test(balloon, hostile_ring_needs_reset, .fini = stop, .timeout = 30)
{
	start_thp();
	/* A descriptor that chains to itself. */
	uint64_t buf = vd_alloc(&v, 16, 4);
	struct virtq_desc d = { .addr = buf, .len = 16, .flags = VIRTQ_DESC_F_NEXT, .next = 0 };
	vd_set_desc(&v, Q_INFLATE, 0, &d);
	vd_publish(&v, Q_INFLATE, 0);
	vd_kick(&v, Q_INFLATE);
	cr_assert(vd_wait_status(&v, VIRTIO_STATUS_NEEDS_RESET, 3000), "loop -> NEEDS_RESET");
	/* Ignored until reset. */
	cr_assert_eq(info().inflate_pages, 0);
	/* A reset and a fresh setup work again. */
	int st = vd_setup(&v, dev, ~0ULL, 2, 64);
	cr_assert(st & VIRTIO_STATUS_DRIVER_OK);
	cr_assert_eq(st & VIRTIO_STATUS_NEEDS_RESET, 0);
	send_range(Q_INFLATE, 48ULL << 20, 4);
	cr_assert_eq(info().inflated_bytes, 4 * PG);

	/* An avail index that jumps past the queue size, on deflate. */
	vd_set_avail_idx(&v, Q_DEFLATE, 64 + 5);
	vd_kick(&v, Q_DEFLATE);
	cr_assert(vd_wait_status(&v, VIRTIO_STATUS_NEEDS_RESET, 3000), "avail jump -> NEEDS_RESET");
}

/* A reset with pages in the balloon gives every one of them back. */
Test(balloon, reset_deflates_everything, .fini = stop, .timeout = 60)
{
	start_thp();
	const uint64_t blk = 16ULL << 20;
	send_range(Q_INFLATE, blk + 10 * PG, 20);
	send_range(Q_INFLATE, blk + GMM_2M, 512);
	cr_assert_eq(info().inflated_bytes, 532 * PG);
	cr_assert_eq(leaf(blk + 10 * PG), 0);
	vd_reg_write(&v, VIRTIO_MMIO_STATUS, 0);
	cr_assert(WAIT_FOR(info().inflated_bytes == 0, 3000), "everything deflated after reset");
	cr_assert_eq(leaf(blk), GMM_2M, "the split block collapsed");
	cr_assert_eq(leaf(blk + GMM_2M), GMM_2M, "the whole block is back");
	cr_assert_eq(info().collapsed_blocks, 1);
	cr_assert(all_bytes(blk + 10 * PG, 20 * PG, 0));
	cr_assert_eq(info().actual_bytes, 0, "actual reset");
	/* A new driver inflating right after its reset keeps its pages: the
	 * reset's deflate never takes the new generation's. */
	cr_assert_eq(vd_setup(&v, dev, ~0ULL, 2, 64) & VIRTIO_STATUS_DRIVER_OK, VIRTIO_STATUS_DRIVER_OK);
	send_range(Q_INFLATE, blk + 40 * PG, 3);
	cr_assert(WAIT_FOR(info().inflated_bytes == 3 * PG, 3000), "inflated %llu",
		  (unsigned long long)info().inflated_bytes);
	usleep(50000);
	cr_assert_eq(info().inflated_bytes, 3 * PG);
	cr_assert_eq(leaf(blk + 40 * PG), 0);
	cr_assert_eq(leaf(blk + 10 * PG), PG, "the old generation's pages are back");
}

/* ---- one serialisation and one pin wait per inflate request (issue 13, finding 3) -- */

static uint64_t serialisations(void)
{
	struct gmm_stats st = gstats();
	return st.serialize_issued + st.serialize_skipped;
}

static uint64_t ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	int64_t ns = (int64_t)(t.tv_sec - t0->tv_sec) * 1000000000 + (t.tv_nsec - t0->tv_nsec);
	return (uint64_t)ns / 1000000;
}

/* Post one inflate buffer of n PFNs (not waited for). */
static int post_pfns(const uint32_t *pfns, size_t n)
{
	uint64_t buf = vd_alloc(&v, 4 * n, 4);
	uint32_t *le = calloc(n, 4);
	for (size_t i = 0; i < n; i++)
		le[i] = htole32(pfns[i]);
	vd_write(&v, buf, le, 4 * n);
	free(le);
	struct vd_buf b = { .gpa = buf, .len = (uint32_t)(4 * n) };
	return vd_add(&v, Q_INFLATE, &b, 1, false);
}

/* 64 scattered pages (every other one) over 4 blocks: one request, one
 * serialisation (it was one per page: each page its own run). */
Test(balloon, scattered_inflate_serialises_once, .fini = stop, .timeout = 60)
{
	start_thp();
	const uint64_t a = 16ULL << 20;
	uint32_t pfns[64];
	for (unsigned i = 0; i < 64; i++)
		pfns[i] = (uint32_t)(a / PG + (i / 16) * 512 + 2 * (i % 16));
	uint64_t s0 = serialisations();
	send_pfns(Q_INFLATE, pfns, 64);
	uint64_t s = serialisations() - s0;
	cr_assert_eq(info().inflated_bytes, 64 * PG);
	for (unsigned i = 0; i < 64; i++) {
		cr_assert_eq(leaf((uint64_t)pfns[i] * PG), 0);
		cr_assert_eq(leaf((uint64_t)pfns[i] * PG + PG), PG, "the odd pages stay");
	}
	cr_log_info("64 scattered pages: %llu serialisation(s)", (unsigned long long)s);
	cr_assert_eq(s, 1, "%llu serialisations for one inflate request", (unsigned long long)s);
	send_pfns(Q_DEFLATE, pfns, 64);
	cr_assert_eq(info().inflated_bytes, 0);
	cr_assert_eq(leaf(a), GMM_2M, "collapsed back");
}

/* Five scattered pages inside a 2 MiB block another thread keeps pinned
 * (an I/O that does not end): the request waits out the pin timeout once
 * (1 s, vdriver's VM), not once per page (it took 5 s). */
Test(balloon, pinned_block_costs_one_pin_timeout, .fini = stop, .timeout = 60)
{
	start_thp();
	const uint64_t blk = 16ULL << 20;
	struct gmm_pin pin;
	cr_assert_eq(gmm_pin(v.w, blk + 300 * PG, 64, GMM_ACCESS_READ, &pin), 0);
	uint32_t pfns[5];
	for (unsigned i = 0; i < 5; i++)
		pfns[i] = (uint32_t)(blk / PG + 10 + 20 * i);
	struct gmm_stats st0 = gstats();
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int head = post_pfns(pfns, 5);
	vd_kick(&v, Q_INFLATE);
	cr_assert_eq(vd_wait_used(&v, Q_INFLATE, 20000, NULL), head);
	uint64_t ms = ms_since(&t0);
	struct gmm_stats st1 = gstats();
	cr_log_info("inflate of 5 pages in a pinned block: %llu ms, %llu pin wait(s)",
		    (unsigned long long)ms, (unsigned long long)(st1.pin_waits - st0.pin_waits));
	cr_assert_lt(ms, 2500, "the request took %llu ms (pin timeout 1000 ms)",
		     (unsigned long long)ms);
	cr_assert_eq(st1.pin_waits - st0.pin_waits, 1, "one wait for the whole request");
	/* Nothing changed: the pages are mapped, not in the balloon. */
	for (unsigned i = 0; i < 5; i++)
		cr_assert_eq(leaf((uint64_t)pfns[i] * PG), GMM_2M);
	cr_assert_eq(info().inflated_bytes, 0);
	gmm_unpin(v.mem, &pin);
	/* The pin gone, the same request goes through. */
	send_pfns(Q_INFLATE, pfns, 5);
	cr_assert_eq(info().inflated_bytes, 5 * PG);
	cr_assert_eq(leaf((uint64_t)pfns[0] * PG), 0);
}

/* A stop while inflate requests wait for a pinned block: the device
 * thread ends within one pin timeout (it finished every queued request
 * first: three requests of five pages took 15 s). */
Test(balloon, stop_during_pinned_inflate_is_bounded, .fini = stop, .timeout = 60)
{
	start_thp();
	const uint64_t blk = 16ULL << 20;
	struct gmm_pin pin;
	cr_assert_eq(gmm_pin(v.w, blk + 300 * PG, 64, GMM_ACCESS_READ, &pin), 0);
	for (unsigned c = 0; c < 3; c++) {
		uint32_t pfns[5];
		for (unsigned i = 0; i < 5; i++)
			pfns[i] = (uint32_t)(blk / PG + 10 + 20 * i + 2 * c);
		post_pfns(pfns, 5);
	}
	vd_kick(&v, Q_INFLATE);
	usleep(300000);   /* the first request waits for the pin now */
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	dev->ops->stop(dev);
	uint64_t ms = ms_since(&t0);
	cr_log_info("stop during a pinned inflate: %llu ms", (unsigned long long)ms);
	cr_assert_lt(ms, 2000, "stop took %llu ms", (unsigned long long)ms);
	gmm_unpin(v.mem, &pin);
}

/* ---- snapshot (issue 16) --------------------------------------------------- */

static struct json_object *save_text(void)
{
	char err[256] = "";
	struct json_object *o = virtio_dev_save(dev, err, sizeof(err));
	cr_assert_not_null(o, "save: %s", err);
	struct json_object *back = json_tokener_parse(json_object_to_json_string(o));
	json_object_put(o);
	cr_assert_not_null(back);
	return back;
}

static const char *member_text(struct json_object *o, const char *a, const char *b)
{
	struct json_object *x, *y;
	cr_assert(json_object_object_get_ex(o, a, &x));
	cr_assert(json_object_object_get_ex(x, b, &y));
	return json_object_to_json_string(y);
}

/* Inflate, a target, actual and statistics; quiesce, save; a new device
 * on the same memory (whose table still lacks the inflated pages, as the
 * memory layer restores it) restored: the counters and the inflated list
 * are equal, the held statistics buffer is still the device's, and a
 * deflate after it maps the pages back. */
Test(balloon, snapshot_roundtrip, .fini = stop, .timeout = 60)
{
	struct balloon_config cfg = { .stats = true, .stats_period_s = 1 };
	start(GMM_BACKING_THP, &cfg, ~0ULL, 3);
	const uint64_t blk = 16ULL << 20;
	send_range(Q_INFLATE, blk + PG, 100);
	send_range(Q_INFLATE, blk + 4 * GMM_2M, 7);
	char err[256] = "";
	cr_assert_eq(virtio_balloon_set_target(dev, 200 * PG, err, sizeof(err)), 0, "%s", err);
	vd_config_write(&v, 4, 107, 4);
	post_stats(2, 1000, 5000);
	cr_assert(WAIT_FOR(info().stats_valid, 3000), "statistics parsed");
	struct balloon_info before = info();

	cr_assert_eq(dev->ops->quiesce(dev), 0);
	struct json_object *st = save_text();
	char *regions = strdup(member_text(st, "device", "regions"));
	cr_assert(strstr(regions, "[ 4097, 100 ]") || strstr(regions, "[4097,100]"), "%s", regions);
	dev->ops->destroy(dev);

	dev = virtio_balloon_create(v.mem, &cfg, err, sizeof(err));
	cr_assert_not_null(dev, "%s", err);
	v.d = dev;
	/* A run outside the region, and one page twice: refused. */
	const char *bad[] = { "[ [ 16383, 2 ] ]", "[ [ 10, 5 ], [ 14, 1 ] ]", "[ [ 1, -3 ] ]" };
	for (unsigned i = 0; i < 3; i++) {
		struct json_object *c = json_tokener_parse(json_object_to_json_string(st));
		struct json_object *dv, *rg;
		json_object_object_get_ex(c, "device", &dv);
		json_object_object_get_ex(dv, "regions", &rg);
		json_object_object_add(json_object_array_get_idx(rg, 0), "inflated",
				       json_tokener_parse(bad[i]));
		cr_assert_eq(virtio_dev_restore(dev, c, err, sizeof(err)), -1, "%s accepted", bad[i]);
		cr_assert(strstr(err, "regions[0].inflated"), "%s", err);
		cr_assert_eq(info().inflated_bytes, 0);
		json_object_put(c);
	}
	cr_assert_eq(virtio_dev_restore(dev, st, err, sizeof(err)), 0, "restore: %s", err);
	json_object_put(st);
	struct balloon_info after = info();
	cr_assert_eq(after.target_bytes, before.target_bytes);
	cr_assert_eq(after.actual_bytes, before.actual_bytes);
	cr_assert_eq(after.inflated_bytes, 107 * PG);
	cr_assert_eq(after.inflated_bytes, before.inflated_bytes);
	cr_assert_eq(after.inflate_pages, before.inflate_pages);
	cr_assert_eq(after.deflate_pages, before.deflate_pages);
	cr_assert(after.stats_valid);
	cr_assert_eq(after.stats[4], 1000);
	cr_assert_eq(vd_config_read(&v, 0, 4), 200);
	cr_assert_eq(vd_config_read(&v, 4, 4), 107);
	struct json_object *st2 = save_text();
	cr_assert_str_eq(member_text(st2, "device", "regions"), regions);
	json_object_put(st2);
	free(regions);

	cr_assert_eq(dev->ops->start(dev), 0);
	/* The held buffer comes back when its period is over. */
	uint32_t len = 7;
	cr_assert_geq(vd_wait_used(&v, 2, 5000, &len), 0, "the held statistics buffer");
	/* Deflate works on the restored bookkeeping. */
	uint8_t x;
	cr_assert_neq(gmm_read(v.w, blk + 50 * PG, &x, 1), 0, "still inflated");
	send_range(Q_DEFLATE, blk + PG, 100);
	send_range(Q_DEFLATE, blk + 4 * GMM_2M, 7);
	cr_assert_eq(info().inflated_bytes, 0);
	cr_assert_eq(info().deflate_pages, 107);
	cr_assert_eq(gmm_read(v.w, blk + 50 * PG, &x, 1), 0, "mapped back");
}
