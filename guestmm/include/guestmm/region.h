/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * region.h - regions of guest RAM and the host memory behind them.
 *
 * A region is a GPA range [gpa, gpa + size) backed by one host mapping.  The
 * backing decides the host page size and therefore the size of the table's
 * leaves for the region:
 *
 *   anon        private anonymous, MADV_NOHUGEPAGE        4 KiB leaves
 *   thp         private anonymous, 2 MiB-aligned mapping,  2 MiB leaves
 *               MADV_HUGEPAGE (split to 4 KiB on discard)
 *   hugetlb-2M  memfd MFD_HUGETLB|MFD_HUGE_2MB, shared     2 MiB leaves
 *   hugetlb-1G  memfd MFD_HUGETLB|MFD_HUGE_1GB, shared     1 GiB leaves
 *   memfd       memfd (shareable with another process)     4 KiB leaves
 *   file        a file at a path, shared                   4 KiB leaves
 *
 * The host address of guest byte gpa is always info.hva + (gpa - info.gpa):
 * a block unmapped with munmap keeps a PROT_NONE placeholder so it can come
 * back at the same address (a KVM memslot over the region stays valid).
 *
 * Locking: add/remove/prefault are writer-side (they take the VM's writer
 * mutex); info/coverage may be called from any thread.
 */
#ifndef GUESTMM_REGION_H
#define GUESTMM_REGION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct gmm_vm;
struct gmm_region;

enum gmm_backing {
	GMM_BACKING_ANON,
	GMM_BACKING_THP,
	GMM_BACKING_HUGETLB_2M,
	GMM_BACKING_HUGETLB_1G,
	GMM_BACKING_MEMFD,
	GMM_BACKING_FILE,
	GMM_BACKING__N,
};

const char *gmm_backing_name(enum gmm_backing b);
/* "anon", "thp", "hugetlb-2M", "hugetlb-1G", "memfd", "file"; -EINVAL otherwise. */
int gmm_backing_parse(const char *name, enum gmm_backing *out);
/* Host page size of a backing (4 KiB, 2 MiB or 1 GiB). */
uint64_t gmm_backing_page_size(enum gmm_backing b);

/* Called from the thread that called prefault, at most every ~1% of progress
 * and once at the end; done and total are bytes. */
typedef void (*gmm_progress_fn)(void *arg, uint64_t done, uint64_t total);

enum {
	GMM_REGION_PREFAULT = 1u << 0,  /* populate every page at add time */
	GMM_REGION_READONLY = 1u << 1,  /* table leaves are read-only */
	/* memfd, hugetlb-*, file: map spec.fd's [0, size) (dup'd; its size
	 * checked) instead of making new memory -- another process's guest
	 * RAM handed over by a local migration (issue 17). */
	GMM_REGION_FD = 1u << 2,
};

struct gmm_region_spec {
	uint64_t gpa;                /* aligned to the backing's page size */
	uint64_t size;               /* multiple of the backing's page size */
	enum gmm_backing backing;
	const char *path;            /* GMM_BACKING_FILE: created if missing, extended if short */
	unsigned flags;              /* GMM_REGION_* */
	unsigned prefault_threads;   /* 0: number of online CPUs */
	gmm_progress_fn progress;    /* optional, for prefault */
	void *progress_arg;
	const char *name;            /* optional, for messages */
	int fd;                      /* with GMM_REGION_FD only */
};

/* Map the backing and install its leaves in the table.  Fails with a clear
 * message and nothing changed on: misaligned or zero size, overlap with
 * another region, GPA beyond GMM_GPA_LIMIT, hugetlb pages not reserved
 * (-ENOMEM, the message says how many to reserve and where), table-page
 * limit (-ENOSPC), a file that cannot be opened. */
int gmm_region_add(struct gmm_vm *vm, const struct gmm_region_spec *spec,
		   struct gmm_region **out);

/* Unmap the whole region for real (serialising as gmm_unmap does: once,
 * or per 2 MiB block for kick and count), then free it.
 * -EBUSY (nothing changed) if a pin outlives the VM's pin timeout. */
int gmm_region_remove(struct gmm_vm *vm, struct gmm_region *r);

/* Populate the region's mapped pages: MADV_POPULATE_WRITE split over
 * `threads` threads, falling back to touching one byte per page where the
 * kernel lacks it.  Returns -EFAULT if the kernel cannot provide memory
 * (for example hugetlb pages taken by someone else). */
int gmm_region_prefault(struct gmm_region *r, unsigned threads,
			gmm_progress_fn progress, void *arg);

/* As gmm_region_prefault without progress, in 2 MiB chunks, giving up
 * between chunks once *cancel is true: -ECANCELED then (what was populated
 * stays).  For a populate that runs beside other work and must end soon
 * when told (a live migration's destination). */
int gmm_region_prefault_until(struct gmm_region *r, unsigned threads, const _Atomic bool *cancel);

struct gmm_region_info {
	uint64_t gpa, size;
	enum gmm_backing backing;
	uint64_t page_size;          /* host page size = leaf size when mapped */
	void *hva;                   /* host address of gpa */
	int fd;                      /* memfd/hugetlb/file, -1 for anonymous */
	const char *name;
	uint64_t prefault_ns;        /* time of the last prefault, 0 if none */
};
void gmm_region_info(const struct gmm_region *r, struct gmm_region_info *info);

/* Measured huge-page coverage of the region's host memory. */
struct gmm_coverage {
	uint64_t size;               /* bytes examined (the region) */
	uint64_t resident;           /* bytes with a page behind them */
	uint64_t huge;               /* bytes backed by 2 MiB or 1 GiB pages */
	const char *method;          /* "pagemap+kpageflags" or "smaps" */
};
int gmm_region_coverage(const struct gmm_region *r, struct gmm_coverage *cov);

/* Iterate regions (writer-side: takes the writer mutex for the call). */
int gmm_region_count(struct gmm_vm *vm);
struct gmm_region *gmm_region_at(struct gmm_vm *vm, int index);
/* Region containing gpa, or NULL (writer-side). */
struct gmm_region *gmm_region_find(struct gmm_vm *vm, uint64_t gpa);

#ifdef __cplusplus
}
#endif

#endif
