// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio_balloon.c - the traditional memory balloon (virtio 1.2, 5.5),
 * with statistics and free page reporting.
 *
 * The guest's driver gives 4 KiB pages to the host (inflate) and takes them
 * back (deflate) as the host's target (config num_pages) asks; it reports
 * what it holds in config `actual`.  What the host does with them:
 *
 *   inflate   PFNs (le32, 4 KiB units) validated against the RAM regions
 *             that existed when the device was created, sorted, deduplicated
 *             against a bitmap of inflated pages (1 bit per 4 KiB of RAM),
 *             coalesced into runs that never cross a 2 MiB block, and the
 *             whole request's runs given to ONE gmm_unmap_ranges(
 *             GMM_UNMAP_DISCARD): the translations go (a device can no
 *             longer DMA there), the host memory goes (MADV_DONTNEED; a THP
 *             leaf is split and the kernel splits the host huge page).  One
 *             serialisation per request, however scattered its pages (a
 *             gmm_unmap per run cost one each), and at most one pin
 *             timeout when blocks under it are pinned by I/O (it cost one
 *             per run: 65,536 PFNs in a pinned block stalled the thread
 *             for hours).  All or nothing: a block still pinned at the
 *             timeout fails the request (-EBUSY, counted in unmap_errors),
 *             none of its pages enter the balloon, and a deflate of them is
 *             a no-op.  hugetlb cannot give back 4 KiB: a count of
 *             inflated pages per host page puts the whole host page in the
 *             request's list only once every 4 KiB of it is in the balloon
 *             (whole huge pages take the same single call).
 *   deflate   the same parsing; gmm_map() brings the runs back (fresh zeroed
 *             memory, which is what the driver expects of a page it took
 *             back: it never touched it while inflated -- MUST_TELL_HOST is
 *             offered, and Linux always accepts it), then each 2 MiB THP
 *             block with no page left in the balloon is collapsed back to
 *             one 2 MiB leaf (gmm_collapse) and, with host_thp_collapse
 *             (virtio_devices.h: off by default), MADV_COLLAPSE asks the
 *             kernel for a huge page behind it (best effort).  hugetlb: the
 *             first page deflated out of a host page unmapped whole maps the
 *             whole host page back.
 *   stats     the driver posts one buffer of (le16 tag, le64 val) pairs; we
 *             parse it and keep the chain; every stats_period_s we give it
 *             back, which is the request for fresh numbers: the driver
 *             refills it and posts it again.
 *   reporting each chain's writable segments are free guest pages (2 MiB
 *             aligned from Linux): gmm_discard() drops their contents and
 *             host memory, translations unchanged.  Pieces not aligned to
 *             the backing's granule are skipped.  hugetlb: the punched huge
 *             pages go back to the host pool; the guest touching them again
 *             needs a free huge page (a KVM fault / SIGBUS if none): the
 *             operator's choice to enable reporting with hugetlb.
 *
 * Queue indices: inflate 0, deflate 1, then statsq if STATS_VQ was
 * negotiated, then reporting_vq if REPORTING was (Linux compacts: with
 * REPORTING and no STATS_VQ the reporting queue is 2).  nqueues is the
 * maximum, 4; the role of an index is decided from the negotiated features.
 *
 * Reset: the driver may reset with pages still inflated (kexec does):
 * the reset hook (d->lock held, vCPU thread) cannot call guestmm writers,
 * so it sets deflate_all and wakes the thread, which maps every inflated
 * page back before it pops anything of the new generation.  Known window:
 * a device DMA into such a page between the reset and that remap fails
 * (I/O error); an anon/THP page the new kernel wrote through KVM in that
 * window is replaced by fresh memory (microseconds, against a kernel that
 * takes milliseconds to boot).
 *
 * Threads and locking (virtio.h):
 *   - d->lock guards the transport state, the config fields (num_pages,
 *     actual), the held statistics chain, stats[], deflate_all.
 *   - The thread "_balloon" (a guestmm walker) alone touches the bitmaps,
 *     per-host-page counts and the scratch buffers; it pops and pushes
 *     under d->lock and calls gmm_unmap/map/collapse/discard with d->lock
 *     NOT held, checking d->generation before it pushes.
 *   - Counters the thread updates outside the lock are relaxed atomics:
 *     each is exact for itself; info() is not one snapshot.
 *   - b->trl is the thread's own rate limit (no lock: one thread);
 *     d->rl is used under d->lock.
 *
 * Stop: the thread checks d->stop before each chain it pops, before each
 * request's gmm_unmap_ranges, and every DEFLATE_STOP_CHECK runs of a
 * deflate (or of the reset's deflate of everything), so a stop waits for at
 * most one guestmm call: for an inflate, one pin timeout (the VM's, 1 s by
 * default, less when the I/O holding the pin completes) plus the unmap.
 * A chain left half done is not pushed: the VM is going away.
 */
#include "core/sandbox.h"
#include "core/state_json.h"
#include "virtio/virtio_devices.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

/* Feature bits (5.5.3). */
#define VIRTIO_BALLOON_F_MUST_TELL_HOST 0
#define VIRTIO_BALLOON_F_STATS_VQ       1
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM 2
#define VIRTIO_BALLOON_F_REPORTING      5

/* Config layout (5.5.4), le32 each. */
#define BCFG_NUM_PAGES   0
#define BCFG_ACTUAL      4
#define BCFG_HINT_CMD_ID 8
#define BCFG_POISON_VAL  12
#define BCFG_SIZE        16

#define BALLOON_PAGE      UINT64_C(4096)
#define BALLOON_NQUEUES   4
#define BALLOON_MAX_REGIONS 16
/* PFN bytes taken from one chain (Linux sends at most 256 PFNs = 1 KiB);
 * more is ignored, with a line. */
#define BALLOON_MAX_PFN_BYTES (256u * 1024u)
/* Blocks remembered for one collapse pass: one per PFN at most. */
#define BALLOON_MAX_BLOCKS (BALLOON_MAX_PFN_BYTES / 4)
/* Statistics bytes read from one buffer: 10 bytes a tag; Linux has 16. */
#define BALLOON_STAT_SIZE 10u
#define BALLOON_MAX_STAT_BYTES (64u * BALLOON_STAT_SIZE)
#define BALLOON_NSTATS 16
/* Chains taken from one queue before looking at the others. */
#define BALLOON_BUDGET 64
/* Runs mapped back between two looks at d->stop. */
#define DEFLATE_STOP_CHECK 256

enum brole { ROLE_NONE, ROLE_INFLATE, ROLE_DEFLATE, ROLE_STATS, ROLE_REPORT };

static const char *const role_name[] = { "none", "inflate", "deflate", "stats", "reporting" };

/* A RAM region as the balloon sees it (copied at create: guest RAM
 * regions live as long as the VM). */
struct bregion {
	uint64_t gpa, size, pages;    /* pages: 4 KiB pages */
	enum gmm_backing backing;
	uint64_t host_page;           /* hugetlb: the huge page; else 4 KiB */
	uint64_t *bitmap;             /* 1 bit per 4 KiB: in the balloon */
	uint32_t *hcount;             /* hugetlb: pages in the balloon per host page */
	uint8_t *hgone;               /* hugetlb: host page unmapped by us */
};

struct balloon {
	struct virtio_dev dev;        /* first: d == &b->dev */
	struct balloon_config cfg;
	uint64_t ram_bytes;
	unsigned nreg;
	struct bregion reg[BALLOON_MAX_REGIONS];

	/* Thread. */
	pthread_t thread;
	bool running;
	sem_t started;
	int start_err;

	/* Thread-only. */
	struct gmm_walker *w;
	struct ratelimit trl;
	struct vq_chain chain;
	uint32_t *pfns;               /* BALLOON_MAX_PFN_BYTES */
	struct gmm_range *ranges;     /* one inflate request's runs (one per PFN at most) */
	size_t nranges;
	uint64_t *blocks;             /* touched 2 MiB blocks (GPAs) of one deflate */
	size_t nblocks;
	uint64_t nhgone;              /* hugetlb host pages unmapped by us */

	/* Under dev.lock. */
	uint32_t num_pages, actual;
	bool deflate_all;
	bool stats_held;
	uint16_t stats_head;
	uint64_t stats_gen;
	uint64_t stats_time_ns;       /* when the held buffer came */
	bool stats_valid;
	uint64_t stats[BALLOON_NSTATS];

	/* Relaxed atomics, written by the thread. */
	_Atomic uint64_t inflated_pages;
	_Atomic uint64_t inflate_pages, deflate_pages;
	_Atomic uint64_t reported_bytes, report_skipped_bytes;
	_Atomic uint64_t bad_pfns, dup_pfns;
	_Atomic uint64_t collapsed_blocks, thp_collapse_ok, thp_collapse_failed;
	_Atomic uint64_t unmap_errors, map_errors, discard_errors;
	_Atomic uint64_t stats_updates, bad_buffers;
};

#define BUMP(field, n) atomic_fetch_add_explicit(&(field), (n), memory_order_relaxed)
#define GET(field) atomic_load_explicit(&(field), memory_order_relaxed)

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static struct balloon *to_b(struct virtio_dev *d)
{
	return (struct balloon *)d->priv;
}

static bool is_hugetlb(enum gmm_backing b)
{
	return b == GMM_BACKING_HUGETLB_2M || b == GMM_BACKING_HUGETLB_1G;
}

/* Bitmap helpers (thread-only). */
static bool bit_test(const uint64_t *bm, uint64_t i)
{
	return (bm[i / 64] >> (i % 64)) & 1;
}

static void bit_set(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= 1ULL << (i % 64);
}

static void bit_clear(uint64_t *bm, uint64_t i)
{
	bm[i / 64] &= ~(1ULL << (i % 64));
}

/* The region holding gpa, or NULL.  *hint caches the last hit. */
static struct bregion *region_of(struct balloon *b, uint64_t gpa, unsigned *hint)
{
	if (*hint < b->nreg) {
		struct bregion *r = &b->reg[*hint];
		if (gpa >= r->gpa && gpa - r->gpa < r->size)
			return r;
	}
	for (unsigned i = 0; i < b->nreg; i++) {
		struct bregion *r = &b->reg[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size) {
			*hint = i;
			return r;
		}
	}
	return NULL;
}

/* d->lock held: the role of queue idx under the negotiated features. */
static enum brole queue_role(struct virtio_dev *d, unsigned idx)
{
	if (idx == 0)
		return ROLE_INFLATE;
	if (idx == 1)
		return ROLE_DEFLATE;
	unsigned next = 2;
	if (virtio_has_feature(d, VIRTIO_BALLOON_F_STATS_VQ)) {
		if (idx == next)
			return ROLE_STATS;
		next++;
	}
	if (virtio_has_feature(d, VIRTIO_BALLOON_F_REPORTING) && idx == next)
		return ROLE_REPORT;
	return ROLE_NONE;
}

/* ---- config space (d->lock held, vCPU thread) -------------------------- */

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void balloon_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, unsigned len)
{
	struct balloon *b = to_b(d);
	uint8_t cfg[BCFG_SIZE];
	put_le32(cfg + BCFG_NUM_PAGES, b->num_pages);
	put_le32(cfg + BCFG_ACTUAL, b->actual);
	put_le32(cfg + BCFG_HINT_CMD_ID, 0);   /* FREE_PAGE_HINT not offered */
	put_le32(cfg + BCFG_POISON_VAL, 0);    /* PAGE_POISON not offered */
	if (off > BCFG_SIZE || len > BCFG_SIZE - off) {   /* the transport checks */
		memset(data, 0, len);
		return;
	}
	memcpy(data, cfg + off, len);
}

/* Only `actual` is the driver's to write (poison_val needs PAGE_POISON,
 * which we do not offer).  Any width: bytes are merged into it. */
static void balloon_config_write(struct virtio_dev *d, uint32_t off, const uint8_t *data,
				 unsigned len)
{
	struct balloon *b = to_b(d);
	bool ignored = false;
	for (unsigned i = 0; i < len; i++) {
		uint32_t o = off + i;
		if (o >= BCFG_ACTUAL && o < BCFG_ACTUAL + 4) {
			unsigned sh = 8 * (o - BCFG_ACTUAL);
			b->actual = (b->actual & ~(0xffu << sh)) | ((uint32_t)data[i] << sh);
		} else {
			ignored = true;
		}
	}
	if (ignored)
		log_ratelimited(&d->rl, LOG_WARN,
				"%s: driver wrote read-only config bytes at %u+%u; ignored", d->name,
				off, len);
}

/* d->lock held; queues already reset, generation bumped.  A held stats
 * chain belongs to the old generation: forget it.  Inflated pages go back
 * by the thread (guestmm writers cannot run under d->lock) -- always, not
 * only when inflated_pages is non-zero now: an inflate of the old
 * generation may be between its gmm_unmap and its count. */
static void balloon_reset(struct virtio_dev *d)
{
	struct balloon *b = to_b(d);
	b->actual = 0;
	b->stats_held = false;
	b->deflate_all = true;
	virtio_dev_wake(d);
}

/* ---- inflate / deflate (thread, d->lock NOT held) ---------------------- */

/* Add `n` pages starting at page index p of region r, all in one 2 MiB
 * block and none of them inflated yet, to the request's list (runs come
 * in increasing GPA order: the list stays sorted).  hugetlb: the pages
 * enter the balloon now; a host page they complete joins the list. */
static void inflate_add(struct balloon *b, struct bregion *r, uint64_t p, uint64_t n)
{
	if (is_hugetlb(r->backing)) {
		uint64_t per = r->host_page / BALLOON_PAGE;
		for (uint64_t i = p; i < p + n; i++) {
			bit_set(r->bitmap, i);
			uint64_t hp = i / per;
			if (++r->hcount[hp] == per && !r->hgone[hp])
				b->ranges[b->nranges++] = (struct gmm_range){
					r->gpa + hp * r->host_page, r->host_page };
		}
		BUMP(b->inflated_pages, n);
		BUMP(b->inflate_pages, n);
		return;
	}
	b->ranges[b->nranges++] = (struct gmm_range){ r->gpa + p * BALLOON_PAGE, n * BALLOON_PAGE };
}

/* The request's list in one gmm_unmap_ranges, then the pages it took are
 * in the balloon.  On failure nothing changed (guestmm's contract): the
 * pages stay mapped and out of the bitmap, so a deflate of them is a
 * no-op; hugetlb host pages stay mapped (their 4 KiB pages are counted
 * in, as before). */
static void inflate_commit(struct balloon *b)
{
	struct virtio_dev *d = &b->dev;
	size_t n = b->nranges;
	b->nranges = 0;
	if (!n || atomic_load(&d->stop))
		return;
	int ret = gmm_unmap_ranges(d->mem, b->ranges, n, GMM_UNMAP_DISCARD);
	if (ret < 0) {
		BUMP(b->unmap_errors, 1);
		log_ratelimited(&b->trl, LOG_WARN, "%s: inflate: cannot unmap %zu run(s) from 0x%" PRIx64
				": %s", d->name, n, b->ranges[0].gpa, gmm_last_error());
		return;
	}
	unsigned hint = 0;
	for (size_t k = 0; k < n; k++) {
		struct bregion *r = region_of(b, b->ranges[k].gpa, &hint);
		uint64_t p = (b->ranges[k].gpa - r->gpa) / BALLOON_PAGE;
		if (is_hugetlb(r->backing)) {
			r->hgone[(b->ranges[k].gpa - r->gpa) / r->host_page] = 1;
			b->nhgone++;
			continue;
		}
		uint64_t pages = b->ranges[k].len / BALLOON_PAGE;
		for (uint64_t i = p; i < p + pages; i++)
			bit_set(r->bitmap, i);
		BUMP(b->inflated_pages, pages);
		BUMP(b->inflate_pages, pages);
	}
}

/* Remember the 2 MiB block of gpa for the collapse pass (deflate PFNs come
 * sorted, so a repeat is always the last entry). */
static void touch_block(struct balloon *b, uint64_t gpa)
{
	uint64_t blk = gpa & ~(GMM_2M - 1);
	if (b->nblocks && b->blocks[b->nblocks - 1] == blk)
		return;
	b->blocks[b->nblocks++] = blk;
}

/* Map back `n` pages from page index p of region r, all in one 2 MiB block
 * and all inflated. */
static void deflate_run(struct balloon *b, struct bregion *r, uint64_t p, uint64_t n)
{
	struct virtio_dev *d = &b->dev;
	if (is_hugetlb(r->backing)) {
		uint64_t per = r->host_page / BALLOON_PAGE;
		for (uint64_t i = p; i < p + n; i++) {
			bit_clear(r->bitmap, i);
			uint64_t hp = i / per;
			r->hcount[hp]--;
			if (r->hgone[hp]) {
				uint64_t gpa = r->gpa + hp * r->host_page;
				int ret = gmm_map(d->mem, gpa, r->host_page);
				if (ret == 0) {
					r->hgone[hp] = 0;
					b->nhgone--;
				} else {
					/* hgone stays: the next deflate in this
					 * huge page (or a reset) tries again. */
					BUMP(b->map_errors, 1);
					log_ratelimited(&b->trl, LOG_ERROR,
							"%s: deflate: cannot map huge page 0x%" PRIx64
							" back: %s", d->name, gpa, gmm_last_error());
				}
			}
		}
		atomic_fetch_sub_explicit(&b->inflated_pages, n, memory_order_relaxed);
		BUMP(b->deflate_pages, n);
		return;
	}
	uint64_t gpa = r->gpa + p * BALLOON_PAGE;
	int ret = gmm_map(d->mem, gpa, n * BALLOON_PAGE);
	if (ret < 0) {
		/* The driver will use the pages anyway (KVM faults them in);
		 * only devices cannot reach them.  They stay in the bitmap so
		 * a later deflate or a reset tries again. */
		BUMP(b->map_errors, 1);
		log_ratelimited(&b->trl, LOG_ERROR, "%s: deflate: cannot map 0x%" PRIx64 "+0x%" PRIx64
				" back: %s", d->name, gpa, n * BALLOON_PAGE, gmm_last_error());
		return;
	}
	for (uint64_t i = p; i < p + n; i++)
		bit_clear(r->bitmap, i);
	atomic_fetch_sub_explicit(&b->inflated_pages, n, memory_order_relaxed);
	BUMP(b->deflate_pages, n);
	if (r->backing == GMM_BACKING_THP)
		touch_block(b, gpa);
}

/* After a deflate: collapse each touched THP block that has no page left
 * in the balloon back to one 2 MiB leaf, and ask the kernel for a huge
 * page behind it.  gmm_collapse fails harmlessly (-EAGAIN) if some other
 * part of the block is unmapped, -EINVAL if it is a 2 MiB leaf already. */
static void collapse_blocks(struct balloon *b)
{
	struct virtio_dev *d = &b->dev;
	unsigned hint = 0;
	for (size_t k = 0; k < b->nblocks; k++) {
		uint64_t blk = b->blocks[k];
		struct bregion *r = region_of(b, blk, &hint);
		if (!r)
			continue;
		uint64_t first = (blk - r->gpa) / BALLOON_PAGE;
		bool empty = true;
		for (uint64_t wd = first / 64; wd < (first + 512) / 64 && empty; wd++)
			empty = r->bitmap[wd] == 0;
		if (!empty || gmm_collapse(d->mem, blk) != 0)
			continue;
		BUMP(b->collapsed_blocks, 1);
		/* MADV_COLLAPSE inside a walk: the writer that would unmap
		 * this block waits for us, so the host range cannot go away
		 * under madvise.  Best effort (old kernels: EINVAL). */
		if (!b->cfg.host_thp_collapse)
			continue;
		gmm_walk_begin(b->w);
		void *hva = gmm_translate(b->w, blk, GMM_2M, GMM_ACCESS_READ);
		int mret = hva ? madvise(hva, GMM_2M, MADV_COLLAPSE) : -1;
		gmm_walk_end(b->w);
		if (mret == 0)
			BUMP(b->thp_collapse_ok, 1);
		else
			BUMP(b->thp_collapse_failed, 1);
	}
	b->nblocks = 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* One run of process_pfns: into the inflate list, or mapped back.  false
 * when a stop came (looked at every DEFLATE_STOP_CHECK deflated runs). */
static bool flush_run(struct balloon *b, struct bregion *r, uint64_t p, uint64_t n, bool inflate,
		      uint64_t runs)
{
	if (inflate) {
		inflate_add(b, r, p, n);
		return true;
	}
	if (runs % DEFLATE_STOP_CHECK == 0 && atomic_load(&b->dev.stop))
		return false;
	deflate_run(b, r, p, n);
	return true;
}

/* Process n PFNs (host order) of one inflate or deflate buffer: sort,
 * drop duplicates, validate, coalesce into runs inside one region and one
 * 2 MiB block; unmap them all in one call (inflate) or map each back
 * (deflate). */
static void process_pfns(struct balloon *b, uint32_t *pfns, size_t n, bool inflate)
{
	struct virtio_dev *d = &b->dev;
	qsort(pfns, n, sizeof(*pfns), cmp_u32);
	unsigned hint = 0;
	struct bregion *rr = NULL;     /* the run being built */
	uint64_t rp = 0, rn = 0;
	uint64_t bad = 0, dup = 0, runs = 0;
	b->nblocks = 0;
	b->nranges = 0;
	for (size_t k = 0; k < n; k++) {
		if (k && pfns[k] == pfns[k - 1]) {
			dup++;
			continue;
		}
		uint64_t gpa = (uint64_t)pfns[k] * BALLOON_PAGE;
		struct bregion *r = region_of(b, gpa, &hint);
		if (!r) {
			if (!bad)
				log_ratelimited(&b->trl, LOG_WARN,
						"%s: %s: PFN 0x%" PRIx32 " is not in guest RAM; ignored",
						d->name, inflate ? "inflate" : "deflate", pfns[k]);
			bad++;
			continue;
		}
		uint64_t p = (gpa - r->gpa) / BALLOON_PAGE;
		/* Already in (inflate) or not in (deflate) the balloon. */
		if (bit_test(r->bitmap, p) == inflate) {
			dup++;
			continue;
		}
		bool extends = rr == r && rn && rp + rn == p &&
			       ((r->gpa + p * BALLOON_PAGE) & (GMM_2M - 1)) != 0;
		if (!extends) {
			if (rn && !flush_run(b, rr, rp, rn, inflate, ++runs))
				break;
			rr = r;
			rp = p;
			rn = 0;
		}
		rn++;
	}
	if (rn && !atomic_load(&d->stop))
		flush_run(b, rr, rp, rn, inflate, ++runs);
	if (inflate)
		inflate_commit(b);
	else
		collapse_blocks(b);
	BUMP(b->bad_pfns, bad);
	BUMP(b->dup_pfns, dup);
}

/* Map every inflated page back (after a reset).  inflated_pages is exact
 * here: only this thread changes it, and no chain is in progress. */
static void deflate_everything(struct balloon *b)
{
	if (!GET(b->inflated_pages) && !b->nhgone)
		return;
	uint64_t runs = 0;
	b->nblocks = 0;
	for (unsigned i = 0; i < b->nreg; i++) {
		struct bregion *r = &b->reg[i];
		for (uint64_t p = 0; p < r->pages;) {
			if (!r->bitmap[p / 64]) {
				p = (p / 64 + 1) * 64;
				continue;
			}
			if (!bit_test(r->bitmap, p)) {
				p++;
				continue;
			}
			uint64_t n = 1;
			while (p + n < r->pages && bit_test(r->bitmap, p + n) &&
			       ((r->gpa + (p + n) * BALLOON_PAGE) & (GMM_2M - 1)))
				n++;
			if (b->nblocks >= BALLOON_MAX_BLOCKS)
				collapse_blocks(b);
			if (++runs % DEFLATE_STOP_CHECK == 0 && atomic_load(&b->dev.stop))
				return;
			deflate_run(b, r, p, n);
			p += n;
		}
		/* hugetlb pages whose map back failed earlier: bits already
		 * clear, the host page still unmapped. */
		for (uint64_t hp = 0; r->hgone && hp < r->size / r->host_page; hp++) {
			if (!r->hgone[hp])
				continue;
			uint64_t gpa = r->gpa + hp * r->host_page;
			if (gmm_map(b->dev.mem, gpa, r->host_page) == 0) {
				r->hgone[hp] = 0;
				b->nhgone--;
			} else {
				BUMP(b->map_errors, 1);
				log_ratelimited(&b->trl, LOG_ERROR, "%s: reset: cannot map huge page 0x%"
						PRIx64 " back: %s", b->dev.name, gpa, gmm_last_error());
			}
		}
	}
	collapse_blocks(b);
}

/* ---- the queues (thread) ----------------------------------------------- */

/* Inflate, deflate or reporting: one chain popped under the generation
 * gen, d->lock not held.  Returns nothing: the caller pushes. */
static void handle_pfn_chain(struct balloon *b, bool inflate)
{
	struct virtio_dev *d = &b->dev;
	struct vq_chain *c = &b->chain;
	uint64_t bytes = c->out_bytes;
	if (bytes > BALLOON_MAX_PFN_BYTES) {
		log_ratelimited(&b->trl, LOG_WARN, "%s: %s buffer of %" PRIu64
				" bytes; only the first %u are used", d->name,
				inflate ? "inflate" : "deflate", bytes, BALLOON_MAX_PFN_BYTES);
		bytes = BALLOON_MAX_PFN_BYTES;
	}
	size_t n = (size_t)(bytes / 4);
	if (bytes % 4)
		log_ratelimited(&b->trl, LOG_WARN, "%s: %s buffer of %" PRIu64
				" bytes is not whole PFNs; the tail is ignored", d->name,
				inflate ? "inflate" : "deflate", c->out_bytes);
	if (!n)
		return;
	int ret = vq_chain_read(b->w, c, 0, b->pfns, n * 4);
	if (ret < 0) {
		BUMP(b->bad_buffers, 1);
		log_ratelimited(&b->trl, LOG_WARN, "%s: %s buffer does not translate (%s); ignored",
				d->name, inflate ? "inflate" : "deflate", strerror(-ret));
		return;
	}
	for (size_t k = 0; k < n; k++)
		b->pfns[k] = le32toh(b->pfns[k]);
	process_pfns(b, b->pfns, n, inflate);
}

/* Discard [gpa, gpa + len) of reported free memory: split by region,
 * aligned inward to the backing's granule, in pieces of at most 2 MiB (or
 * one huge page) so one bad piece costs little. */
static void report_range(struct balloon *b, uint64_t gpa, uint64_t len)
{
	struct virtio_dev *d = &b->dev;
	unsigned hint = 0;
	uint64_t end = gpa + len;
	if (end < gpa)          /* vq_pop refuses wrapping segments; be sure */
		end = UINT64_MAX;
	while (gpa < end) {
		struct bregion *r = region_of(b, gpa, &hint);
		if (!r) {
			/* Skip to the next region above gpa, if any. */
			uint64_t next = end;
			for (unsigned i = 0; i < b->nreg; i++)
				if (b->reg[i].gpa > gpa && b->reg[i].gpa < next)
					next = b->reg[i].gpa;
			/* Outside the boot RAM the balloon manages: memory of
			 * another region (virtio-mem's hot-plugged blocks) is
			 * discarded the same way when guestmm has it mapped
			 * (gmm_discard refuses anything else: nothing is lost). */
			uint64_t done = 0;
			for (uint64_t a = (gpa + GMM_2M - 1) & ~(GMM_2M - 1); a + GMM_2M <= next; a += GMM_2M)
				if (gmm_discard(d->mem, a, GMM_2M) == 0)
					done += GMM_2M;
			BUMP(b->reported_bytes, done);
			if (done < next - gpa) {
				BUMP(b->bad_pfns, (next - gpa - done + BALLOON_PAGE - 1) / BALLOON_PAGE);
				log_ratelimited(&b->trl, LOG_WARN,
						"%s: reporting: 0x%" PRIx64 "+0x%" PRIx64
						" is not in guest RAM; ignored", d->name, gpa, next - gpa);
			}
			gpa = next;
			continue;
		}
		uint64_t rend = r->gpa + r->size < end ? r->gpa + r->size : end;
		uint64_t g = r->host_page;
		uint64_t a = (gpa + g - 1) & ~(g - 1);
		uint64_t z = rend & ~(g - 1);
		uint64_t skipped = (a < z) ? (a - gpa) + (rend - z) : rend - gpa;
		BUMP(b->report_skipped_bytes, skipped);
		uint64_t step = g > GMM_2M ? g : GMM_2M;
		while (a < z) {
			uint64_t e = (a & ~(step - 1)) + step;
			if (e > z)
				e = z;
			int ret = gmm_discard(d->mem, a, e - a);
			if (ret == 0) {
				BUMP(b->reported_bytes, e - a);
			} else {
				BUMP(b->discard_errors, 1);
				log_ratelimited(&b->trl, LOG_WARN, "%s: reporting: cannot discard 0x%"
						PRIx64 "+0x%" PRIx64 ": %s", d->name, a, e - a,
						gmm_last_error());
			}
			a = e;
		}
		gpa = rend;
	}
}

static void handle_report_chain(struct balloon *b)
{
	const struct vq_chain *c = &b->chain;
	for (unsigned i = c->nout; i < c->nseg; i++)
		report_range(b, c->seg[i].gpa, c->seg[i].len);
}

/* Statistics buffer, d->lock not held: parse into vals/have. */
static void parse_stats(struct balloon *b, uint64_t *vals, bool *have)
{
	struct virtio_dev *d = &b->dev;
	const struct vq_chain *c = &b->chain;
	uint8_t buf[BALLOON_MAX_STAT_BYTES];
	uint64_t bytes = c->out_bytes < sizeof(buf) ? c->out_bytes : sizeof(buf);
	bytes -= bytes % BALLOON_STAT_SIZE;
	if (c->out_bytes % BALLOON_STAT_SIZE)
		log_ratelimited(&b->trl, LOG_WARN, "%s: statistics buffer of %" PRIu64
				" bytes is not whole entries; the tail is ignored", d->name,
				c->out_bytes);
	if (!bytes)
		return;
	int ret = vq_chain_read(b->w, c, 0, buf, bytes);
	if (ret < 0) {
		BUMP(b->bad_buffers, 1);
		log_ratelimited(&b->trl, LOG_WARN, "%s: statistics buffer does not translate (%s)",
				d->name, strerror(-ret));
		return;
	}
	for (uint64_t o = 0; o < bytes; o += BALLOON_STAT_SIZE) {
		uint16_t tag = (uint16_t)(buf[o] | (buf[o + 1] << 8));
		uint64_t val = 0;
		for (int i = 7; i >= 0; i--)
			val = (val << 8) | buf[o + 2 + i];
		if (tag < BALLOON_NSTATS) {
			vals[tag] = val;
			have[tag] = true;
		}
	}
}

static uint64_t stats_period_ns(const struct balloon *b)
{
	return (uint64_t)(b->cfg.stats_period_s ? b->cfg.stats_period_s : 1) * 1000000000ULL;
}

/*
 * Take and handle up to BALLOON_BUDGET chains from queue idx.  Returns true
 * if the budget ran out (more may be waiting).  Each chain: pop under
 * d->lock, unlock, do the guestmm writer work, lock, push if the
 * generation did not change.
 */
static bool process_queue(struct balloon *b, unsigned idx)
{
	struct virtio_dev *d = &b->dev;
	struct virtqueue *q = &d->vq[idx];
	char why[160];
	for (unsigned done = 0; done < BALLOON_BUDGET; done++) {
		if (atomic_load(&d->stop) || virtio_dev_quiescing(d))
			return false;
		pthread_mutex_lock(&d->lock);
		if (b->deflate_all) {
			/* A reset: the old generation's pages go back before
			 * anything of the new one is popped. */
			pthread_mutex_unlock(&d->lock);
			return true;
		}
		enum brole role = virtio_dev_live(d) && q->ready ? queue_role(d, idx) : ROLE_NONE;
		if (role == ROLE_NONE || (role == ROLE_STATS && b->stats_held)) {
			pthread_mutex_unlock(&d->lock);
			return false;
		}
		uint64_t gen = d->generation;
		int ret = vq_pop(q, b->w, &b->chain, why, sizeof(why));
		if (ret < 0)
			virtio_dev_fail(d, "%s: %s", role_name[role], why);
		pthread_mutex_unlock(&d->lock);
		if (ret <= 0)
			return false;

		uint64_t vals[BALLOON_NSTATS] = { 0 };
		bool have[BALLOON_NSTATS] = { false };
		switch (role) {
		case ROLE_INFLATE:
			handle_pfn_chain(b, true);
			break;
		case ROLE_DEFLATE:
			handle_pfn_chain(b, false);
			break;
		case ROLE_REPORT:
			handle_report_chain(b);
			break;
		case ROLE_STATS:
			parse_stats(b, vals, have);
			break;
		case ROLE_NONE:
			break;
		}

		pthread_mutex_lock(&d->lock);
		if (atomic_load(&d->stop)) {
			/* Perhaps cut short: the VM is going away. */
			pthread_mutex_unlock(&d->lock);
			return false;
		}
		if (d->generation != gen || !virtio_dev_live(d) || !q->ready) {
			/* Reset meanwhile: the chain belongs to a ring that is gone. */
			pthread_mutex_unlock(&d->lock);
			continue;
		}
		if (role == ROLE_STATS) {
			/* Keep it: giving it back is the next request. */
			for (unsigned t = 0; t < BALLOON_NSTATS; t++)
				if (have[t])
					b->stats[t] = vals[t];
			b->stats_valid = true;
			b->stats_held = true;
			b->stats_head = b->chain.head;
			b->stats_gen = gen;
			b->stats_time_ns = now_ns();
			BUMP(b->stats_updates, 1);
			pthread_mutex_unlock(&d->lock);
			return false;
		}
		if (vq_push(q, b->w, b->chain.head, 0, why, sizeof(why)) < 0)
			virtio_dev_fail(d, "%s: %s", role_name[role], why);
		else
			virtio_queue_used(d, q, b->w);
		pthread_mutex_unlock(&d->lock);
	}
	return true;
}

/* Give the held statistics buffer back once the period is over (the
 * driver refills and posts it).  Returns the poll timeout in ms until the
 * next request is due, or -1; *pushed says whether it gave the buffer back
 * (then the stats queue must be armed again before sleeping: with
 * event-index the driver kicks only past avail_event). */
static int stats_tick(struct balloon *b, bool *pushed)
{
	struct virtio_dev *d = &b->dev;
	int timeout = -1;
	char why[160];
	pthread_mutex_lock(&d->lock);
	if (b->stats_held) {
		uint64_t due = b->stats_time_ns + stats_period_ns(b), now = now_ns();
		unsigned idx = 2;   /* statsq is always index 2 when negotiated */
		struct virtqueue *q = &d->vq[idx];
		if (b->stats_gen != d->generation || !virtio_dev_live(d) || !q->ready ||
		    queue_role(d, idx) != ROLE_STATS) {
			b->stats_held = false;
		} else if (now >= due) {
			b->stats_held = false;
			*pushed = true;
			if (vq_push(q, b->w, b->stats_head, 0, why, sizeof(why)) < 0)
				virtio_dev_fail(d, "stats: %s", why);
			else
				virtio_queue_used(d, q, b->w);
		} else {
			timeout = (int)((due - now + 999999) / 1000000);
		}
	}
	pthread_mutex_unlock(&d->lock);
	return timeout;
}

/* Before sleeping: arm every queue we would pop from.  True if something
 * arrived meanwhile. */
static bool arm_queues(struct balloon *b)
{
	struct virtio_dev *d = &b->dev;
	bool more = false;
	char why[160];
	pthread_mutex_lock(&d->lock);
	for (unsigned idx = 0; idx < BALLOON_NQUEUES && virtio_dev_live(d); idx++) {
		struct virtqueue *q = &d->vq[idx];
		enum brole role = q->ready ? queue_role(d, idx) : ROLE_NONE;
		if (role == ROLE_NONE || (role == ROLE_STATS && b->stats_held))
			continue;
		int ret = vq_arm(q, b->w, why, sizeof(why));
		if (ret < 0)
			virtio_dev_fail(d, "%s: %s", role_name[role], why);
		else if (ret > 0)
			more = true;
	}
	pthread_mutex_unlock(&d->lock);
	return more;
}

static void *balloon_thread(void *arg)
{
	struct balloon *b = arg;
	struct virtio_dev *d = &b->dev;
	b->w = gmm_walker_register(d->mem);
	b->start_err = b->w ? 0 : -errno;
	sem_post(&b->started);
	if (!b->w)
		return NULL;
	sandbox_enter(SANDBOX_DEVICE);

	struct pollfd pfd[1 + BALLOON_NQUEUES];
	pfd[0] = (struct pollfd){ .fd = d->ctl_fd, .events = POLLIN };
	for (unsigned i = 0; i < BALLOON_NQUEUES; i++)
		pfd[1 + i] = (struct pollfd){ .fd = d->kick_fd[i], .events = POLLIN };

	while (!atomic_load(&d->stop)) {
		/* Drain first: a kick after this is seen by the next poll. */
		for (unsigned i = 0; i < 1 + BALLOON_NQUEUES; i++)
			virtio_eventfd_drain(pfd[i].fd);

		pthread_mutex_lock(&d->lock);
		bool all = b->deflate_all;
		b->deflate_all = false;
		pthread_mutex_unlock(&d->lock);
		if (all)
			deflate_everything(b);
		/* Quiesced (snapshot): every chain popped was pushed before
		 * process_queue returned and the reset's deflate is done; the
		 * held statistics buffer stays held (saved as such).  Nothing
		 * touches a ring until resume or stop wakes us. */
		if (virtio_dev_quiescing(d)) {
			virtio_dev_set_quiet(d);
			poll(pfd, 1, -1);
			continue;
		}

		bool pushed = false;
		stats_tick(b, &pushed);
		bool busy = false;
		for (unsigned idx = 0; idx < BALLOON_NQUEUES; idx++)
			busy |= process_queue(b, idx);
		if (busy || arm_queues(b))
			continue;
		/* A buffer held meanwhile sets a deadline; one whose period
		 * ran out meanwhile is pushed here, and then the stats queue
		 * needs arming: go round again (the refill's kick wakes us). */
		int timeout = stats_tick(b, &pushed);
		if (pushed)
			continue;
		if (atomic_load(&d->stop))
			break;
		poll(pfd, 1 + BALLOON_NQUEUES, timeout);
	}
	gmm_walker_unregister(b->w);
	b->w = NULL;
	return NULL;
}

/* ---- lifecycle (main thread) ------------------------------------------- */

static int balloon_start(struct virtio_dev *d)
{
	struct balloon *b = to_b(d);
	if (b->running)
		return 0;
	atomic_store(&d->stop, false);
	/* The thread starts with every signal blocked (the main thread
	 * handles them); gmm_walker_register unblocks the kick signal. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int err = pthread_create(&b->thread, NULL, balloon_thread, b);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		log_msg(LOG_ERROR, "%s: cannot start its thread: %s", d->name, strerror(err));
		return -1;
	}
	pthread_setname_np(b->thread, "_balloon");
	sem_wait(&b->started);
	if (b->start_err) {
		pthread_join(b->thread, NULL);
		log_msg(LOG_ERROR, "%s: cannot register its thread with guestmm: %s", d->name,
			strerror(-b->start_err));
		return -1;
	}
	b->running = true;
	return 0;
}

static void balloon_stop(struct virtio_dev *d)
{
	struct balloon *b = to_b(d);
	virtio_dev_join(d, b->thread, &b->running);
}

static void balloon_destroy(struct virtio_dev *d)
{
	struct balloon *b = to_b(d);
	balloon_stop(d);
	virtio_dev_fini(d);
	for (unsigned i = 0; i < b->nreg; i++) {
		free(b->reg[i].bitmap);
		free(b->reg[i].hcount);
		free(b->reg[i].hgone);
	}
	free(b->pfns);
	free(b->ranges);
	free(b->blocks);
	sem_destroy(&b->started);
	free(b);
}

static void fill_info(struct balloon *b, struct balloon_info *o)
{
	memset(o, 0, sizeof(*o));
	o->target_bytes = (uint64_t)b->num_pages * BALLOON_PAGE;
	o->actual_bytes = (uint64_t)b->actual * BALLOON_PAGE;
	o->inflated_bytes = GET(b->inflated_pages) * BALLOON_PAGE;
	o->inflate_pages = GET(b->inflate_pages);
	o->deflate_pages = GET(b->deflate_pages);
	o->reported_bytes = GET(b->reported_bytes);
	o->bad_pfns = GET(b->bad_pfns);
	o->collapsed_blocks = GET(b->collapsed_blocks);
	o->stats_valid = b->stats_valid;
	memcpy(o->stats, b->stats, sizeof(o->stats));
	if (b->stats_valid && b->stats_time_ns)
		o->stats_age_ms = (now_ns() - b->stats_time_ns) / 1000000;
}

static void balloon_counters(struct virtio_dev *d, char *buf, size_t len)
{
	struct balloon *b = to_b(d);
	struct balloon_info in;
	pthread_mutex_lock(&d->lock);
	fill_info(b, &in);
	pthread_mutex_unlock(&d->lock);
	size_t used = strnlen(buf, len);
	if (used >= len)
		return;
	snprintf(buf + used, len - used,
		 "balloon_target_bytes %" PRIu64 "\n"
		 "balloon_actual_bytes %" PRIu64 "\n"
		 "balloon_inflated_bytes %" PRIu64 "\n"
		 "balloon_inflate_pages %" PRIu64 "\n"
		 "balloon_deflate_pages %" PRIu64 "\n"
		 "balloon_reported_bytes %" PRIu64 "\n"
		 "balloon_report_skipped_bytes %" PRIu64 "\n"
		 "balloon_bad_pfns %" PRIu64 "\n"
		 "balloon_duplicate_pfns %" PRIu64 "\n"
		 "balloon_collapsed_blocks %" PRIu64 "\n"
		 "balloon_thp_collapse_ok %" PRIu64 "\n"
		 "balloon_thp_collapse_failed %" PRIu64 "\n"
		 "balloon_unmap_errors %" PRIu64 "\n"
		 "balloon_map_errors %" PRIu64 "\n"
		 "balloon_discard_errors %" PRIu64 "\n"
		 "balloon_bad_buffers %" PRIu64 "\n"
		 "balloon_stats_updates %" PRIu64 "\n"
		 "balloon_stats_age_ms %" PRIu64 "\n",
		 in.target_bytes, in.actual_bytes, in.inflated_bytes, in.inflate_pages,
		 in.deflate_pages, in.reported_bytes, GET(b->report_skipped_bytes), in.bad_pfns,
		 GET(b->dup_pfns), in.collapsed_blocks, GET(b->thp_collapse_ok),
		 GET(b->thp_collapse_failed), GET(b->unmap_errors), GET(b->map_errors),
		 GET(b->discard_errors), GET(b->bad_buffers), GET(b->stats_updates),
		 in.stats_valid ? in.stats_age_ms : 0);
}

/* ---- snapshot (issue 16) ------------------------------------------------ */

static int balloon_quiesce(struct virtio_dev *d)
{
	if (!to_b(d)->running)
		return 0;
	/* Bound: the chain in progress (one pin timeout for an inflate) or
	 * a reset's deflate of everything, as for stop. */
	return virtio_dev_quiesce_wait(d, VIRTIO_QUIESCE_TIMEOUT_MS);
}

static void balloon_resume_io(struct virtio_dev *d)
{
	virtio_dev_resume(d);
}

/* Runs of inflated pages of r as [[first page, count], ...]. */
static struct json_object *runs_save(const struct bregion *r)
{
	struct json_object *a = json_object_new_array();
	for (uint64_t p = 0; a && p < r->pages;) {
		if (!r->bitmap[p / 64]) {
			p = (p / 64 + 1) * 64;
			continue;
		}
		if (!bit_test(r->bitmap, p)) {
			p++;
			continue;
		}
		uint64_t n = 1;
		while (p + n < r->pages && bit_test(r->bitmap, p + n))
			n++;
		struct json_object *run = json_object_new_array();
		if (!run || json_object_array_add(run, json_object_new_uint64(p)) ||
		    json_object_array_add(run, json_object_new_uint64(n)) ||
		    json_object_array_add(a, run)) {
			json_object_put(run);
			json_object_put(a);
			return NULL;
		}
		p += n;
	}
	return a;
}

/*
 * The device's bookkeeping: target, actual, the inflated pages of each
 * RAM region (runs of its bitmap; hugetlb: also the host pages unmapped
 * whole), the held statistics buffer and the last statistics, the
 * counters.  Only the bookkeeping: the pages themselves are unmapped in
 * guestmm's table, which the memory layer saves and restores by its shape.
 * Main thread, the thread quiet (it alone writes the bitmaps).
 */
static struct json_object *balloon_save(struct virtio_dev *d, char *err, size_t errlen)
{
	struct balloon *b = to_b(d);
	struct json_object *o = json_object_new_object(), *regs = json_object_new_array();
	int r = !o || !regs;
	for (unsigned i = 0; !r && i < b->nreg; i++) {
		struct bregion *g = &b->reg[i];
		struct json_object *ro = json_object_new_object();
		r = !ro || sj_set_u64(ro, "gpa", g->gpa) || sj_set_u64(ro, "size", g->size) ||
		    sj_set_obj(ro, "inflated", runs_save(g));
		if (!r && g->hgone) {
			struct json_object *hg = json_object_new_array();
			for (uint64_t hp = 0; hg && hp < g->size / g->host_page; hp++)
				if (g->hgone[hp] && json_object_array_add(hg, json_object_new_uint64(hp))) {
					json_object_put(hg);
					hg = NULL;
				}
			r = sj_set_obj(ro, "host_pages_gone", hg);
		}
		if (r || json_object_array_add(regs, ro)) {
			json_object_put(ro);
			r = -1;
		}
	}
	if (!r) {
		r = sj_set_obj(o, "regions", regs);
		regs = NULL;
	}
	pthread_mutex_lock(&d->lock);
	if (!r)
		r = sj_set_u64(o, "num_pages", b->num_pages) | sj_set_u64(o, "actual", b->actual) |
		    sj_set_bool(o, "stats_valid", b->stats_valid) |
		    sj_set_hex(o, "stats", b->stats, sizeof(b->stats)) |
		    sj_set_bool(o, "stats_held", b->stats_held) |
		    sj_set_u64(o, "stats_head", b->stats_head) |
		    sj_set_u64(o, "inflate_pages", GET(b->inflate_pages)) |
		    sj_set_u64(o, "deflate_pages", GET(b->deflate_pages)) |
		    sj_set_u64(o, "reported_bytes", GET(b->reported_bytes)) |
		    sj_set_u64(o, "bad_pfns", GET(b->bad_pfns)) |
		    sj_set_u64(o, "collapsed_blocks", GET(b->collapsed_blocks));
	pthread_mutex_unlock(&d->lock);
	if (r) {
		json_object_put(regs);
		json_object_put(o);
		snprintf(err, errlen, "%s: out of memory saving its state", d->name);
		return NULL;
	}
	return o;
}

/* Region i's saved runs into the fresh bitmap bm (and host pages gone
 * into hg), checked: inside the region, not overlapping.  0 or -1. */
static int region_load(const struct bregion *g, struct json_object *ro, unsigned i, uint64_t *bm,
		       uint8_t *hg, uint64_t *pages, char *err, size_t errlen)
{
	char where[48];
	snprintf(where, sizeof(where), "virtio-balloon.regions[%u]", i);
	uint64_t gpa, size;
	struct json_object *runs;
	if (sj_get_u64(ro, "gpa", &gpa, where, err, errlen) ||
	    sj_get_u64(ro, "size", &size, where, err, errlen) ||
	    sj_get_array(ro, "inflated", &runs, where, err, errlen))
		return -1;
	if (gpa != g->gpa || size != g->size) {
		snprintf(err, errlen, "%s: RAM 0x%" PRIx64 "+0x%" PRIx64 ", this VM's is 0x%" PRIx64
			 "+0x%" PRIx64, where, gpa, size, g->gpa, g->size);
		return -1;
	}
	for (size_t k = 0; k < json_object_array_length(runs); k++) {
		struct json_object *run = json_object_array_get_idx(runs, k);
		struct json_object *f = json_object_is_type(run, json_type_array) &&
			json_object_array_length(run) == 2 ? json_object_array_get_idx(run, 0) : NULL;
		struct json_object *n = f ? json_object_array_get_idx(run, 1) : NULL;
		if (!f || !json_object_is_type(f, json_type_int) || !json_object_is_type(n, json_type_int) ||
		    json_object_get_int64(f) < 0 || json_object_get_int64(n) <= 0) {
			snprintf(err, errlen, "%s.inflated[%zu]: not [first page, count]", where, k);
			return -1;
		}
		uint64_t p = json_object_get_uint64(f), c = json_object_get_uint64(n);
		if (p >= g->pages || c > g->pages - p) {
			snprintf(err, errlen, "%s.inflated[%zu]: pages %" PRIu64 "+%" PRIu64
				 " outside the region's %" PRIu64, where, k, p, c, g->pages);
			return -1;
		}
		for (uint64_t q = p; q < p + c; q++) {
			if (bit_test(bm, q)) {
				snprintf(err, errlen, "%s.inflated[%zu]: page %" PRIu64 " twice", where, k, q);
				return -1;
			}
			bit_set(bm, q);
		}
		*pages += c;
	}
	if (!hg)
		return 0;
	struct json_object *gone;
	if (sj_get_array(ro, "host_pages_gone", &gone, where, err, errlen))
		return -1;
	uint64_t nhp = g->size / g->host_page;
	for (size_t k = 0; k < json_object_array_length(gone); k++) {
		struct json_object *h = json_object_array_get_idx(gone, k);
		if (!json_object_is_type(h, json_type_int) || json_object_get_int64(h) < 0 ||
		    json_object_get_uint64(h) >= nhp) {
			snprintf(err, errlen, "%s.host_pages_gone[%zu]: not a host page index", where, k);
			return -1;
		}
		hg[json_object_get_uint64(h)] = 1;
	}
	return 0;
}

/* Main thread, before start: everything checked into fresh bitmaps, then
 * swapped in.  Maps and unmaps nothing (the memory layer restored the
 * table the pages are absent from); hugetlb per-host-page counts are
 * recomputed from the bitmap. */
static int balloon_restore(struct virtio_dev *d, struct json_object *o, char *err, size_t errlen)
{
	struct balloon *b = to_b(d);
	const char *w = "virtio-balloon";
	uint64_t num_pages, actual, head, ip, dp, rb, bad, coll;
	bool valid, held;
	uint64_t stats[BALLOON_NSTATS];
	struct json_object *regs;
	if (sj_get_uint(o, "num_pages", UINT32_MAX, &num_pages, w, err, errlen) ||
	    sj_get_uint(o, "actual", UINT32_MAX, &actual, w, err, errlen) ||
	    sj_get_bool(o, "stats_valid", &valid, w, err, errlen) ||
	    sj_get_hex(o, "stats", stats, sizeof(stats), w, err, errlen) ||
	    sj_get_bool(o, "stats_held", &held, w, err, errlen) ||
	    sj_get_uint(o, "stats_head", UINT16_MAX, &head, w, err, errlen) ||
	    sj_get_u64(o, "inflate_pages", &ip, w, err, errlen) ||
	    sj_get_u64(o, "deflate_pages", &dp, w, err, errlen) ||
	    sj_get_u64(o, "reported_bytes", &rb, w, err, errlen) ||
	    sj_get_u64(o, "bad_pfns", &bad, w, err, errlen) ||
	    sj_get_u64(o, "collapsed_blocks", &coll, w, err, errlen) ||
	    sj_get_array(o, "regions", &regs, w, err, errlen))
		return -1;
	if (num_pages * BALLOON_PAGE > b->ram_bytes) {
		snprintf(err, errlen, "%s.num_pages: %" PRIu64 " pages is more than the RAM", w, num_pages);
		return -1;
	}
	if (json_object_array_length(regs) != b->nreg) {
		snprintf(err, errlen, "%s.regions: %zu, this VM has %u RAM regions", w,
			 json_object_array_length(regs), b->nreg);
		return -1;
	}
	pthread_mutex_lock(&d->lock);
	struct virtqueue *sq = &d->vq[2];
	bool stats_ok = sq->ready && queue_role(d, 2) == ROLE_STATS && head < sq->num;
	pthread_mutex_unlock(&d->lock);
	if (held && !stats_ok) {
		snprintf(err, errlen, "%s.stats_head: a held statistics buffer without a statistics queue "
			 "of more than %" PRIu64 " entries", w, head);
		return -1;
	}
	uint64_t *bm[BALLOON_MAX_REGIONS] = { NULL };
	uint8_t *hg[BALLOON_MAX_REGIONS] = { NULL };
	uint64_t pages = 0;
	int r = 0;
	for (unsigned i = 0; !r && i < b->nreg; i++) {
		struct bregion *g = &b->reg[i];
		bm[i] = calloc((g->pages + 63) / 64 + 8, sizeof(uint64_t));
		if (g->hgone)
			hg[i] = calloc(g->size / g->host_page, 1);
		if (!bm[i] || (g->hgone && !hg[i])) {
			snprintf(err, errlen, "%s: out of memory", w);
			r = -1;
		} else {
			r = region_load(g, json_object_array_get_idx(regs, i), i, bm[i], hg[i], &pages,
					err, errlen);
		}
	}
	if (r) {
		for (unsigned i = 0; i < b->nreg; i++)
			free(bm[i]), free(hg[i]);
		return -1;
	}
	b->nhgone = 0;
	for (unsigned i = 0; i < b->nreg; i++) {
		struct bregion *g = &b->reg[i];
		free(g->bitmap);
		g->bitmap = bm[i];
		if (g->hgone) {
			free(g->hgone);
			g->hgone = hg[i];
			uint64_t per = g->host_page / BALLOON_PAGE;
			memset(g->hcount, 0, sizeof(*g->hcount) * (g->size / g->host_page));
			for (uint64_t p = 0; p < g->pages; p++)
				g->hcount[p / per] += bit_test(g->bitmap, p);
			for (uint64_t hp = 0; hp < g->size / g->host_page; hp++)
				b->nhgone += g->hgone[hp];
		}
	}
	atomic_store_explicit(&b->inflated_pages, pages, memory_order_relaxed);
	atomic_store_explicit(&b->inflate_pages, ip, memory_order_relaxed);
	atomic_store_explicit(&b->deflate_pages, dp, memory_order_relaxed);
	atomic_store_explicit(&b->reported_bytes, rb, memory_order_relaxed);
	atomic_store_explicit(&b->bad_pfns, bad, memory_order_relaxed);
	atomic_store_explicit(&b->collapsed_blocks, coll, memory_order_relaxed);
	pthread_mutex_lock(&d->lock);
	b->num_pages = (uint32_t)num_pages;
	b->actual = (uint32_t)actual;
	b->deflate_all = false;
	b->stats_valid = valid;
	memcpy(b->stats, stats, sizeof(stats));
	b->stats_held = held;
	b->stats_head = (uint16_t)head;
	b->stats_gen = d->generation;
	b->stats_time_ns = now_ns();
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static const struct virtio_dev_ops balloon_ops = {
	.quiesce = balloon_quiesce,
	.resume_io = balloon_resume_io,
	.save = balloon_save,
	.restore = balloon_restore,
	.config_read = balloon_config_read,
	.config_write = balloon_config_write,
	.reset = balloon_reset,
	.start = balloon_start,
	.stop = balloon_stop,
	.destroy = balloon_destroy,
	.counters = balloon_counters,
};

static int cmp_region(const void *a, const void *b)
{
	const struct bregion *x = a, *y = b;
	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

struct virtio_dev *virtio_balloon_create(struct gmm_vm *mem, const struct balloon_config *cfg,
					 char *err, size_t errlen)
{
	struct balloon *b = calloc(1, sizeof(*b));
	if (!b) {
		snprintf(err, errlen, "virtio-balloon: out of memory");
		return NULL;
	}
	b->cfg = *cfg;
	if (sem_init(&b->started, 0, 0)) {
		snprintf(err, errlen, "virtio-balloon: sem_init: %s", strerror(errno));
		free(b);
		return NULL;
	}
	/* Guest RAM: the regions there are now (virtio-mem regions, created
	 * after us, are not ours to balloon). */
	int nr = gmm_region_count(mem);
	for (int i = 0; i < nr; i++) {
		struct gmm_region *gr = gmm_region_at(mem, i);
		if (!gr)
			continue;
		if (b->nreg == BALLOON_MAX_REGIONS) {
			log_msg(LOG_WARN, "virtio-balloon: more than %d RAM regions; the rest is not ballooned",
				BALLOON_MAX_REGIONS);
			break;
		}
		struct gmm_region_info info;
		gmm_region_info(gr, &info);
		struct bregion *r = &b->reg[b->nreg++];
		r->gpa = info.gpa;
		r->size = info.size;
		r->pages = info.size / BALLOON_PAGE;
		r->backing = info.backing;
		r->host_page = is_hugetlb(info.backing) ? info.page_size : BALLOON_PAGE;
		b->ram_bytes += info.size;
		/* calloc: untouched zero pages until the guest inflates. */
		r->bitmap = calloc((r->pages + 63) / 64 + 8, sizeof(uint64_t));
		if (is_hugetlb(info.backing)) {
			uint64_t nhp = info.size / info.page_size;
			r->hcount = calloc(nhp, sizeof(*r->hcount));
			r->hgone = calloc(nhp, 1);
		}
		if (!r->bitmap || (is_hugetlb(info.backing) && (!r->hcount || !r->hgone)))
			goto nomem;
	}
	if (!b->nreg) {
		snprintf(err, errlen, "virtio-balloon: the VM has no RAM");
		goto fail;
	}
	qsort(b->reg, b->nreg, sizeof(b->reg[0]), cmp_region);
	b->pfns = malloc(BALLOON_MAX_PFN_BYTES);
	b->ranges = malloc(sizeof(*b->ranges) * (BALLOON_MAX_PFN_BYTES / 4));
	/* At most one block per PFN of a buffer; deflate_everything
	 * collapses whenever the array is full. */
	b->blocks = malloc(sizeof(uint64_t) * BALLOON_MAX_BLOCKS);
	if (!b->pfns || !b->blocks || !b->ranges)
		goto nomem;

	struct virtio_dev *d = &b->dev;
	d->name = "virtio-balloon";
	d->device_id = VIRTIO_ID_BALLOON;
	d->features = 1ULL << VIRTIO_BALLOON_F_MUST_TELL_HOST;
	if (cfg->stats)
		d->features |= 1ULL << VIRTIO_BALLOON_F_STATS_VQ;
	if (cfg->deflate_on_oom)
		d->features |= 1ULL << VIRTIO_BALLOON_F_DEFLATE_ON_OOM;
	if (cfg->free_page_reporting)
		d->features |= 1ULL << VIRTIO_BALLOON_F_REPORTING;
	d->config_size = BCFG_SIZE;
	d->nqueues = BALLOON_NQUEUES;
	d->ops = &balloon_ops;
	d->priv = b;
	d->mem = mem;
	int ret = virtio_dev_init(d);
	if (ret < 0) {
		snprintf(err, errlen, "virtio-balloon: %s", strerror(-ret));
		goto fail;
	}
	return d;

nomem:
	snprintf(err, errlen, "virtio-balloon: out of memory for the page bitmaps");
fail:
	for (unsigned i = 0; i < b->nreg; i++) {
		free(b->reg[i].bitmap);
		free(b->reg[i].hcount);
		free(b->reg[i].hgone);
	}
	free(b->pfns);
	free(b->ranges);
	free(b->blocks);
	sem_destroy(&b->started);
	free(b);
	return NULL;
}

int virtio_balloon_set_target(struct virtio_dev *d, uint64_t bytes, char *err, size_t errlen)
{
	if (!d || d->device_id != VIRTIO_ID_BALLOON || d->ops != &balloon_ops) {
		snprintf(err, errlen, "not a virtio-balloon device");
		return -1;
	}
	struct balloon *b = to_b(d);
	if (bytes % BALLOON_PAGE) {
		snprintf(err, errlen, "balloon target %" PRIu64 " is not a multiple of 4 KiB", bytes);
		return -1;
	}
	if (bytes > b->ram_bytes || bytes / BALLOON_PAGE > UINT32_MAX) {
		snprintf(err, errlen, "balloon target %" PRIu64 " bytes is more than the guest's RAM (%"
			 PRIu64 " bytes)", bytes, b->ram_bytes);
		return -1;
	}
	pthread_mutex_lock(&d->lock);
	b->num_pages = (uint32_t)(bytes / BALLOON_PAGE);
	virtio_config_changed(d);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void virtio_balloon_info(struct virtio_dev *d, struct balloon_info *out)
{
	if (!d || d->ops != &balloon_ops) {
		memset(out, 0, sizeof(*out));
		return;
	}
	pthread_mutex_lock(&d->lock);
	fill_info(to_b(d), out);
	pthread_mutex_unlock(&d->lock);
}
