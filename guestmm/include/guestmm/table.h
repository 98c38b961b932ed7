/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * table.h - the writer side of the GPA -> HVA table.
 *
 * The table is a radix tree of 4 KiB table pages, 512 entries each, 9 bits
 * per level, four levels (GPA bits 47..12).  A level-2 entry may be a 1 GiB
 * leaf, a level-1 entry a 2 MiB leaf, a level-0 entry a 4 KiB leaf.  An
 * entry is a 64-bit word: the host address (4 KiB aligned) in bits 63..12
 * and the flags below.
 *
 * Every function here is writer-side: it takes the VM's writer mutex, so
 * writers are serialised among themselves; walkers never wait for them.
 * Each operation either completes or fails leaving guest memory and every
 * translation as they were (one exception, stated at gmm_unmap: a host
 * release that fails after the point of no return).
 */
#ifndef GUESTMM_TABLE_H
#define GUESTMM_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct gmm_vm;

#define GMM_PTE_PRESENT  (1ULL << 0)
#define GMM_PTE_TABLE    (1ULL << 1)  /* points to a table page, not memory */
#define GMM_PTE_WRITE    (1ULL << 2)
#define GMM_PTE_POISON   (1ULL << 11) /* only ever found in freed table pages */
#define GMM_PTE_ADDR     (~0xfffULL)

enum {
	/* Keep the host mapping and drop its contents (MADV_DONTNEED, or a
	 * punched hole for memfd/hugetlb) instead of munmap.  The address
	 * range stays reserved; gmm_map() brings zeroed pages back. */
	GMM_UNMAP_DISCARD = 1u << 0,
	/* Fail with -EBUSY at once on a pinned block instead of waiting up to
	 * the VM's pin timeout. */
	GMM_UNMAP_NOWAIT = 1u << 1,
};

/* Remove translations for [gpa, gpa + len) and give the memory back to the
 * host.  The range must lie in regions and be aligned to their host page
 * size (4 KiB for anon/thp/memfd/file: a THP leaf is split as needed).
 * Order: pinned blocks frozen (or -EBUSY) -> leaves cleared -> serialisation
 * by the VM's strategy -> munmap/discard -> table pages freed.
 * Returns 0, -EINVAL (range), -EBUSY (pinned), -ENOSPC (table-page limit
 * while splitting; nothing changed), or the host's error when munmap/
 * madvise failed after the leaves were cleared: then, and only then, a
 * failed unmap has taken effect -- the range is unmapped for walkers, but
 * some of its host memory could not be given back (it is, when the range
 * is mapped again or the region removed; released_bytes does not count
 * it). */
int gmm_unmap(struct gmm_vm *vm, uint64_t gpa, uint64_t len, unsigned flags);

/* One range of a gmm_unmap_ranges list. */
struct gmm_range {
	uint64_t gpa;
	uint64_t len;
};

/*
 * gmm_unmap of a list of ranges as ONE operation: one writer lock, one pin
 * wait, one serialisation, for the whole list.  For a balloon inflating
 * thousands of scattered 4 KiB pages, where a gmm_unmap per page costs a
 * serialisation each, and a pin timeout each when their block is pinned.
 *
 * The list: n ranges sorted by GPA and not overlapping (adjacent is
 * fine), each one as gmm_unmap wants it: inside one region (different
 * ranges may lie in different regions), aligned to the region's unmap
 * granule (4 KiB for anon/thp/memfd/file, the huge page for hugetlb), not
 * empty.  Parts already unmapped are skipped, as gmm_unmap does.  n == 0
 * does nothing and returns 0.  flags: GMM_UNMAP_DISCARD, GMM_UNMAP_NOWAIT,
 * meaning what they mean for gmm_unmap, for every range.
 *
 * Order (writer mutex held throughout):
 *   1. every range validated: a bad one fails the call with -EINVAL
 *      (its index and why in gmm_last_error), nothing changed;
 *   2. every 2 MiB block under the list frozen against new pins, with ONE
 *      deadline: the VM's pin timeout, counted once from here, whatever
 *      the number of ranges or pinned blocks (pin_waits counts 1).  A pin
 *      still held at the deadline (or at once with GMM_UNMAP_NOWAIT): every
 *      block is thawed, -EBUSY, nothing changed (pin_busy counts 1);
 *   3. the table pages that splitting the ranges' edges needs (THP leaves)
 *      counted and taken from the pool into a stash: -ENOSPC (or the
 *      host's -ENOMEM) here thaws the blocks, nothing changed.  From here
 *      on nothing can fail: the point of no return;
 *   4. edges split (translations unchanged), every range's leaves cleared;
 *   5. ONE serialisation by the VM's strategy (serialize_issued +
 *      serialize_skipped grow by 1; 0 if nothing in the list was mapped),
 *      covering every cleared range -- kick and count too, which gmm_unmap
 *      serialises per 2 MiB block;
 *   6. host memory released (munmap or discard) and table pages freed,
 *      then the blocks thawed.
 * Statistics: unmaps + 1 per call, unmapped_bytes as for gmm_unmap.
 *
 * Returns 0, -EINVAL, -EBUSY, -ENOSPC/-ENOMEM (nothing changed), -ECHILD
 * (forked child), or -- the one exception, as for gmm_unmap -- the host's
 * error when a munmap/madvise of step 6 failed: then the whole list is
 * unmapped for walkers but some host memory was not given back (the
 * other ranges' was).
 *
 * Writer-side: takes the VM's writer mutex; may sleep up to the pin
 * timeout once, plus one serialisation.  Not from inside a walk.
 */
int gmm_unmap_ranges(struct gmm_vm *vm, const struct gmm_range *ranges, size_t n,
		     unsigned flags);

/* Bring back translations for unmapped or discarded parts of
 * [gpa, gpa + len): fresh zeroed memory (anon, thp) or the backing file's
 * contents (memfd is punched on unmap, so zeroed too).  Parts already mapped
 * are left alone.  Leaves are as large as alignment and backing allow. */
int gmm_map(struct gmm_vm *vm, uint64_t gpa, uint64_t len);

/* Split the leaf containing gpa into 512 leaves of the next size down
 * (1 GiB -> 2 MiB, 2 MiB -> 4 KiB).  Translations do not change.
 * -EINVAL if gpa is unmapped or already a 4 KiB leaf; -ENOSPC at the
 * table-page limit. */
int gmm_split(struct gmm_vm *vm, uint64_t gpa);

/* Replace the table page under the 2 MiB (or 1 GiB) block containing gpa by
 * one leaf, when all 512 entries are present leaves with contiguous host
 * addresses and equal flags.  The old table page is freed after the next
 * grace period.  -EAGAIN when not collapsible, -EINVAL when not split. */
int gmm_collapse(struct gmm_vm *vm, uint64_t gpa);

/* Drop the contents of the mapped range [gpa, gpa + len) and give its host
 * memory back (MADV_DONTNEED for anon/thp; a punched hole for memfd and
 * hugetlb; a user file keeps its data, only the page cache mapping goes),
 * leaving every translation as it was: walkers keep working and read
 * zeros afterwards (the kernel supplies fresh pages on the next touch).
 * For free page reporting: the guest said it does not care what is there.
 * No serialisation: the translation does not change, and a walker racing
 * with the discard reads old or zero contents, as the guest asked.
 * hugetlb: the huge pages go back to the host pool; touching the range
 * again needs a free huge page (SIGBUS if someone took them all).
 * Alignment: the region's host page granule (4 KiB for anon/thp/memfd/
 * file -- a host THP is split by the kernel -- 2 MiB or 1 GiB for hugetlb).
 * -EINVAL on bad alignment, a range not inside one region or not entirely
 * mapped; -EPERM on a read-only region.  Counted in released_bytes. */
int gmm_discard(struct gmm_vm *vm, uint64_t gpa, uint64_t len);

/* Make [gpa, gpa + len) read-only or writable.  Removing write access
 * first waits up to the VM's pin timeout for write pins in the range
 * (new ones fail with -EAGAIN meanwhile; read pins are not waited for),
 * then serialises (a walker may hold a writable pointer); granting it does
 * neither.  -EBUSY (nothing changed) if a write pin outlives the timeout. */
int gmm_protect(struct gmm_vm *vm, uint64_t gpa, uint64_t len, bool writable);

/* Writer-side lookup for tests and reports: the leaf entry and its size for
 * gpa (0 if unmapped). */
uint64_t gmm_table_lookup(struct gmm_vm *vm, uint64_t gpa, uint64_t *leaf_size);

/* Free table pages unlinked by collapse once a grace period has passed
 * (unmap does this itself). */
void gmm_reclaim(struct gmm_vm *vm);

#ifdef __cplusplus
}
#endif

#endif
