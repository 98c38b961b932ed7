/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapshot.h - guest memory to a file and back (issue 16): the memory half
 * of a VM snapshot, where a memory manager can do it well.
 *
 * The file ("memory-ranges" in a snapshot directory) mirrors guest RAM:
 * region r's byte gpa lives at file offset off_r + (gpa - r.gpa), where the
 * caller chooses off_r (regions laid end to end).  It is SPARSE: only
 * pages that are mapped in the table AND resident in the host are written;
 * never-touched memory, ballooned or discarded pages, unplugged blocks and
 * unmapped ranges stay holes (found from the table and the host's
 * residency -- mincore(2), or SEEK_DATA on a memfd/hugetlb fd -- never by
 * comparing bytes with zero).  `du` of the file is what the guest used.
 *
 * The table's shape is saved beside it (gmm_region_shape): which ranges
 * are unmapped, split to 4 KiB leaves, or read-only, so a restore gives
 * the guest the same translations, unplugged blocks still unmapped.
 *
 * A restore may use another backing than the save (thp -> hugetlb-2M, ...):
 * the file holds bytes, not pages.
 *
 * Two ways back:
 *   Copy      gmm_region_load: read the file's data ranges (SEEK_DATA/
 *             SEEK_HOLE) into the region's mapped memory with several
 *             threads; the caller prefaulted the region (huge pages).
 *   OnDemand  gmm_ondemand_*: userfaultfd (missing mode) over the regions'
 *             mapped ranges; a handler thread serves each fault from the
 *             file, a whole 2 MiB block at a time where the backing is huge
 *             (hugetlb: one UFFDIO_COPY of the huge page; thp: the block is
 *             copied and then MADV_COLLAPSE'd back into a huge page), and a
 *             fill-ahead thread brings in every remaining block in GPA
 *             order, so the guest runs at once and ends on huge pages.
 *             When every block is in, the regions are unregistered.
 *
 * Walkers fault too: a vCPU in KVM, a device thread copying into a
 * buffer, all reach guest memory through host addresses guestmm handed
 * out, and any of them may block in a page fault until the handler serves
 * it.  The handler is therefore not a walker and calls nothing that waits
 * for walkers (no gmm_* writer operation, no writer mutex, no
 * serialisation); it waits only on its own fds and mutex (ondemand.c holds
 * the argument in full).  A writer that unmaps or discards a range while
 * on-demand restore runs (balloon, virtio-mem) is safe: munmap drops the
 * registration with the range; a block already served is never served
 * from the file again (a later missing fault on it -- discarded since --
 * gets zeros), so stale bytes cannot come back.
 *
 * Locking: gmm_region_save/shape/apply_shape/load are writer-side (they
 * take the VM's writer mutex for their whole run: no map/unmap races) and
 * expect no guest writes meanwhile (VM paused, device threads quiesced --
 * the caller's business).  gmm_ondemand_* are called by one control
 * thread; their stats from any thread.
 */
#ifndef GUESTMM_SNAPSHOT_H
#define GUESTMM_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct gmm_vm;
struct gmm_region;

struct gmm_save_stats {
	uint64_t mapped;        /* bytes the table translates */
	uint64_t written;       /* bytes written (resident and mapped) */
	uint64_t extents;       /* data runs written */
	uint64_t ns;            /* wall time */
};

/* Write region r's mapped, resident pages into fd at off + (gpa - r.gpa),
 * with `threads` threads (0: online CPUs; pwrite from the host mapping),
 * and extend the file to off + r.size (ftruncate, never shrinking it), so
 * the region's holes are holes in the file.  The file's other bytes are
 * left alone.  0, or -errno with gmm_last_error() (a short write: -ENOSPC
 * or -EIO says which offset).  Writer-side. */
int gmm_region_save(struct gmm_region *r, int fd, uint64_t off, unsigned threads,
		    struct gmm_save_stats *st);

/* The pages gmm_region_save would write, as a bitmap: bit i of word i / 64
 * set (OR'd in) for page r.gpa + i * 4 KiB if it is mapped and holds data
 * (resident or swapped).  A live migration's first pass sends these only.
 * Writer-side. */
int gmm_region_data_bits(struct gmm_region *r, uint64_t *bits);

/* The table's shape over a region: maximal runs of GPA with one kind. */
enum gmm_shape_kind {
	GMM_SHAPE_UNMAPPED = 1,  /* no translation (unplugged, ballooned by unmap) */
	GMM_SHAPE_SPLIT = 2,     /* mapped with 4 KiB leaves where the backing is huge */
	GMM_SHAPE_READONLY = 3,  /* mapped read-only (gmm_protect) */
};
struct gmm_shape_range {
	uint64_t gpa, len;
	enum gmm_shape_kind kind;
};
/* Everything not listed is mapped, writable, with leaves as large as the
 * backing allows.  *out is malloc'd (free() it; NULL when n is 0), sorted
 * by gpa, ranges of one kind merged.  Writer-side. */
int gmm_region_shape(struct gmm_region *r, struct gmm_shape_range **out, size_t *n);
/* Make a freshly added region's table look like the list: unmap the
 * UNMAPPED ranges, split the SPLIT ones, protect the READONLY ones.  The
 * list is checked first (sorted, inside the region, aligned to 4 KiB,
 * known kinds; a SPLIT or UNMAPPED range on a hugetlb region aligned to its
 * page size): -EINVAL with the reason and nothing changed.  Writer-side. */
int gmm_region_apply_shape(struct gmm_region *r, const struct gmm_shape_range *v, size_t n);

struct gmm_load_stats {
	uint64_t read;          /* bytes read from the file (its data ranges) */
	uint64_t extents;
	uint64_t ns;
};
/* Copy restore: read [off, off + r.size) of fd into the region's mapped
 * memory, data ranges only (lseek SEEK_DATA/SEEK_HOLE; holes are left as
 * they are: zero in fresh memory), with `threads` threads (0: online
 * CPUs).  Parts of the file over unmapped ranges are skipped.  A file
 * shorter than off + r.size: -EINVAL "truncated" before anything is read.
 * -EIO on a short read (the offset named).  Writer-side. */
int gmm_region_load(struct gmm_region *r, int fd, uint64_t off, unsigned threads,
		    struct gmm_load_stats *st);

/* ---- on-demand restore ------------------------------------------------ */

struct gmm_ondemand;

#define GMM_ONDEMAND_MAX_REGIONS 8
struct gmm_ondemand_spec {
	int fd;                          /* the memory file (dup'd: caller keeps its own) */
	unsigned nregions;
	struct {
		struct gmm_region *r;
		uint64_t off;            /* file offset of r's first byte */
	} regions[GMM_ONDEMAND_MAX_REGIONS];
	bool no_fill_ahead;              /* serve faults only (tests, the fault-rate figure) */
	/* Test hook: the handler sleeps this long before serving each fault
	 * (0 in production): lets a test hold walkers in faults while a
	 * writer runs. */
	unsigned test_serve_delay_us;
};

struct gmm_ondemand_stats {
	uint64_t faults;                 /* missing faults served */
	uint64_t blocks_fault;           /* blocks brought in by a fault */
	uint64_t blocks_fill;            /* blocks brought in by fill-ahead */
	uint64_t blocks_total;           /* blocks to bring in at start */
	uint64_t zero_served;            /* faults on served blocks (discarded since): zeros */
	uint64_t bytes_copied;
	uint64_t first_fault_ns;         /* fault read -> its UFFDIO_COPY done, first fault */
	uint64_t fault_ns_total;         /* the same summed over faults */
	uint64_t fault_ns_max;
	uint64_t collapsed;              /* thp blocks MADV_COLLAPSE'd */
	uint64_t collapse_failed;
	bool done;                       /* every block in; regions unregistered */
};

/* Register the regions' MAPPED ranges (after gmm_region_apply_shape; the
 * regions must not be prefaulted: a present page never faults) with a new
 * userfaultfd and start the handler (and fill-ahead) threads.  Checks the
 * file covers every region (-EINVAL "truncated").  0, or -errno with
 * gmm_last_error() (no userfaultfd: -ENOSYS/-EPERM, with what to enable)
 * and nothing left registered. */
int gmm_ondemand_start(struct gmm_vm *vm, const struct gmm_ondemand_spec *spec,
		       struct gmm_ondemand **out);
/* Wait up to timeout_ms for every block to be in; 0 done, -ETIMEDOUT. */
int gmm_ondemand_wait(struct gmm_ondemand *od, unsigned timeout_ms);
void gmm_ondemand_stats(struct gmm_ondemand *od, struct gmm_ondemand_stats *st);
/* Stop the threads, unregister and close the userfaultfd, free od.  A
 * range not yet served reads zeros afterwards: call after
 * gmm_ondemand_wait() succeeded, or when the VM is going away (its walkers
 * stopped) -- before gmm_region_remove/gmm_vm_destroy.  Bounded: the
 * handler finishes at most the block it is copying. */
void gmm_ondemand_stop(struct gmm_ondemand *od);

#ifdef __cplusplus
}
#endif

#endif
