// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * table.c - the GPA -> HVA radix table and its writer operations.
 *
 * Four levels of 512-entry table pages (9 bits each, GPA bits 47..12).
 * Level 3 holds only table pointers; a level-2 entry may be a 1 GiB leaf,
 * level 1 a 2 MiB leaf, level 0 a 4 KiB leaf.
 *
 * Writers (this file) hold vm->wlock; walkers (walk.c) hold nothing.  What
 * keeps a walker safe is how entries change:
 *
 *   publish   a new table page is filled completely, then linked with a
 *             release store: a walker that loads the link (seq_cst, which
 *             includes acquire) sees the filled page.
 *   split     a leaf is replaced by a table of 512 smaller leaves that
 *             translate exactly as the leaf did: a walker that still uses
 *             the old leaf gets the same pointer.  No serialisation.
 *   collapse  the reverse: a table of contiguous leaves becomes one leaf;
 *             the old table page may still be read by walkers in flight,
 *             so it is freed only after the next grace period.
 *   clear     leaves are cleared with relaxed stores; the tracker's
 *             serialisation that follows (gmm_tracker_block/range) orders
 *             them before it checks for walkers (seq_cst fence or
 *             membarrier, see tracker.c), and memory is released only
 *             after it.  Table pages left empty are unlinked and freed
 *             after that same serialisation.
 *
 * gmm_unmap_ranges is gmm_unmap over a sorted list of ranges done as one
 * operation: every range validated, every block frozen against one pin
 * deadline, every edge split from a stash filled beforehand, every leaf
 * cleared, then ONE serialisation for the whole list (whatever the
 * strategy) before the host memory goes.
 *
 * Every operation either completes or leaves translations as they were:
 * table pages it needs are counted by a dry run and taken from the pool
 * (install: a stash) before anything changes, so the step that changes
 * the table cannot fail half-way.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* The encoding (gmm_idx, gmm_lsize) is in internal.h: walk.c reads it too. */

static inline struct gmm_ptp *pte_table(uint64_t e)
{
	return (struct gmm_ptp *)(uintptr_t)(e & GMM_PTE_ADDR);
}

static inline bool is_leaf(uint64_t e)
{
	return (e & (GMM_PTE_PRESENT | GMM_PTE_TABLE)) == GMM_PTE_PRESENT;
}

static inline bool is_table(uint64_t e)
{
	return (e & (GMM_PTE_PRESENT | GMM_PTE_TABLE)) == (GMM_PTE_PRESENT | GMM_PTE_TABLE);
}

/* Writer's loads: wlock held, nobody else stores, relaxed is enough. */
static inline uint64_t wload(struct gmm_ptp *pg, unsigned i)
{
	return GMM_READ_ONCE(pg->e[i]);
}

/* Publishing store: everything written to what e points at (a filled table
 * page, memory the kernel just gave us) is visible to a walker that loads
 * e.  Pairs with the walker's seq_cst (acquire) loads in walk.c. */
static inline void wpublish(struct gmm_ptp *pg, unsigned i, uint64_t e)
{
	atomic_store_explicit(&pg->e[i], e, memory_order_release);
}

/* Clearing store: relaxed; ordered by the tracker's serialisation. */
static inline void wclear(struct gmm_ptp *pg, unsigned i)
{
	GMM_WRITE_ONCE(pg->e[i], 0);
}

int gmm_table_init(struct gmm_vm *vm)
{
	vm->root = gmm_pool_alloc(&vm->pool, false);
	return vm->root ? 0 : -ENOSPC;
}

static void free_tree(struct gmm_vm *vm, struct gmm_ptp *pg, int lvl)
{
	for (unsigned i = 0; i < GMM_PTES && lvl > 0; i++) {
		uint64_t e = wload(pg, i);
		if (is_table(e))
			free_tree(vm, pte_table(e), lvl - 1);
	}
	gmm_pool_free(&vm->pool, pg);
}

/* Called after every walker has gone. */
void gmm_table_fini(struct gmm_vm *vm)
{
	gmm_table_free_deferred(vm);
	if (vm->root)
		free_tree(vm, vm->root, GMM_LEVELS - 1);
	vm->root = NULL;
}

/* ---- deferred freeing ---------------------------------------------- */

/* wlock held.  The page is unlinked; walkers in flight may still read it. */
void gmm_table_defer_free(struct gmm_vm *vm, struct gmm_ptp *pg)
{
	if (vm->ndeferred == vm->deferred_cap) {
		uint64_t cap = vm->deferred_cap ? vm->deferred_cap * 2 : 64;
		struct gmm_ptp **n = realloc(vm->deferred, cap * sizeof(*n));
		if (!n) {
			/* Cannot queue it: wait out the grace period now.
			 * Slow but always correct. */
			gmm_tracker_sync(vm);
			gmm_table_free_deferred(vm);
			gmm_pool_free(&vm->pool, pg);
			return;
		}
		vm->deferred = n;
		vm->deferred_cap = cap;
	}
	vm->deferred[vm->ndeferred++] = pg;
	GMM_WRITE_ONCE(vm->st_deferred, vm->ndeferred);
}

/* wlock held, right after a serialisation: every page queued before it is
 * unreachable by any walk that is still running. */
void gmm_table_free_deferred(struct gmm_vm *vm)
{
	for (uint64_t i = 0; i < vm->ndeferred; i++)
		gmm_pool_free(&vm->pool, vm->deferred[i]);
	vm->ndeferred = 0;
	GMM_WRITE_ONCE(vm->st_deferred, 0);
}

/* ---- install ------------------------------------------------------- */

/*
 * Reserve, then commit.  An install first counts the table pages it needs
 * (a dry run), takes every one of them from the pool into a stash, and
 * only then changes the table: the commit step takes pages from the stash
 * and cannot fail.  A failure to fill the stash (the limit, or the host
 * refusing memory) gives the pages back and changes nothing -- in
 * particular it never has to unwind leaves already linked, which walkers
 * and pins may be using.
 */
struct ptp_stash {
	struct gmm_ptp **v;
	long n, used;
	struct gmm_ptp *inl[8];
};

static void stash_drop(struct gmm_vm *vm, struct ptp_stash *st)
{
	/* Pages never linked: no walker saw them, no grace period. */
	for (long i = st->used; i < st->n; i++)
		gmm_pool_free(&vm->pool, st->v[i]);
	if (st->v != st->inl)
		free(st->v);
	st->v = NULL;
	st->n = st->used = 0;
}

/* wlock held.  0, or the pool's error (-ENOSPC, -ENOMEM) with nothing kept.
 * use_reserve: the pool's reserve may serve (unmap's must-progress splits). */
static int stash_fill(struct gmm_vm *vm, struct ptp_stash *st, long need, bool use_reserve)
{
	st->n = st->used = 0;
	st->v = st->inl;
	if (need > (long)(sizeof(st->inl) / sizeof(st->inl[0])) &&
	    !(st->v = malloc((size_t)need * sizeof(*st->v)))) {
		st->v = st->inl;
		return gmm_seterr(ENOMEM, "out of memory");
	}
	while (st->n < need) {
		struct gmm_ptp *pg = gmm_pool_alloc(&vm->pool, use_reserve);
		if (!pg) {
			int err = errno;
			stash_drop(vm, st);
			return -err;
		}
		st->v[st->n++] = pg;
	}
	return 0;
}

static struct gmm_ptp *stash_take(struct ptp_stash *st)
{
	/* The dry run counted exactly the pages the commit takes. */
	if (st->used >= st->n)
		abort();
	return st->v[st->used++];
}

/*
 * Install leaves for [gpa, end) in table pg (level lvl), the host address
 * of gpa being hva.  Already-present leaves are kept.  st NULL (dry):
 * change nothing, return the number of table pages that would be needed
 * (pg may be NULL for a table that does not exist yet).  Otherwise new
 * table pages come from the stash, filled before they are linked; never
 * fails.
 */
static long install_rec(struct gmm_vm *vm, struct gmm_ptp *pg, int lvl, uint64_t gpa,
			uint64_t end, uint8_t *hva, uint64_t max_leaf, uint64_t flags,
			struct ptp_stash *st)
{
	long need = 0;
	uint64_t sz = gmm_lsize(lvl);

	while (gpa < end) {
		uint64_t slot_end = (gpa & ~(sz - 1)) + sz;
		if (slot_end > end)
			slot_end = end;
		unsigned i = gmm_idx(gpa, lvl);
		uint64_t e = pg ? wload(pg, i) : 0;
		bool whole = (gpa & (sz - 1)) == 0 && slot_end - gpa == sz;
		bool can_leaf = lvl <= 2 && sz <= max_leaf && whole &&
				((uintptr_t)hva & (sz - 1)) == 0;

		if (is_leaf(e)) {
			/* Already mapped: leave it. */
		} else if (!e && can_leaf) {
			if (st)
				wpublish(pg, i, (uint64_t)(uintptr_t)hva | flags);
		} else {
			struct gmm_ptp *child = NULL;
			if (is_table(e))
				child = pte_table(e);
			else if (!st)
				need++;
			else
				child = stash_take(st);
			need += install_rec(vm, child, lvl - 1, gpa, slot_end, hva, max_leaf, flags, st);
			/* Link the new table only once it is filled. */
			if (st && !e)
				wpublish(pg, i, (uint64_t)(uintptr_t)child | GMM_PTE_PRESENT | GMM_PTE_TABLE);
		}
		hva += slot_end - gpa;
		gpa = slot_end;
	}
	return need;
}

/* wlock held.  The headroom check first (a clear -ENOSPC that leaves the
 * reserve to unmap and teardown), then the stash. */
static int install_reserve(struct gmm_vm *vm, struct ptp_stash *st, uint64_t gpa, uint64_t len,
			   uint8_t *hva, uint64_t max_leaf, uint64_t flags)
{
	long need = install_rec(vm, vm->root, GMM_LEVELS - 1, gpa, gpa + len, hva, max_leaf,
				flags, NULL);
	uint64_t room = gmm_pool_headroom(&vm->pool);
	if ((uint64_t)need > room)
		return gmm_seterr(ENOSPC,
				  "table-page limit: mapping 0x%llx+0x%llx needs %ld more table pages, %llu left of %llu",
				  (unsigned long long)gpa, (unsigned long long)len, need,
				  (unsigned long long)room, (unsigned long long)vm->pool.limit);
	return stash_fill(vm, st, need, false);
}

/* wlock held.  r is the region being added (not yet published).  On
 * failure nothing is installed and no statistic changed. */
int gmm_table_install(struct gmm_vm *vm, struct gmm_region *r, uint64_t gpa, uint64_t len,
		      uint8_t *hva, uint64_t max_leaf, uint64_t flags)
{
	(void)r;
	struct ptp_stash st;
	int ret = install_reserve(vm, &st, gpa, len, hva, max_leaf, flags);
	if (ret < 0)
		return ret;
	install_rec(vm, vm->root, GMM_LEVELS - 1, gpa, gpa + len, hva, max_leaf, flags, &st);
	stash_drop(vm, &st);
	return 0;
}

/* ---- lookup -------------------------------------------------------- */

/* wlock held.  The slot holding the leaf (or the absent entry) for gpa. */
static _Atomic uint64_t *find_slot(struct gmm_vm *vm, uint64_t gpa, int *lvl_out)
{
	struct gmm_ptp *pg = vm->root;
	for (int lvl = GMM_LEVELS - 1;; lvl--) {
		_Atomic uint64_t *slot = &pg->e[gmm_idx(gpa, lvl)];
		uint64_t e = atomic_load_explicit(slot, memory_order_relaxed);
		if (!is_table(e) || lvl == 0) {
			*lvl_out = lvl;
			return slot;
		}
		pg = pte_table(e);
	}
}

uint64_t gmm_table_peek(struct gmm_vm *vm, uint64_t gpa, uint64_t *span)
{
	int lvl;
	uint64_t e = atomic_load_explicit(find_slot(vm, gpa, &lvl), memory_order_relaxed);
	*span = gmm_lsize(lvl);
	return is_leaf(e) ? e : 0;
}

uint64_t gmm_table_lookup(struct gmm_vm *vm, uint64_t gpa, uint64_t *leaf_size)
{
	int lvl;
	uint64_t e = 0;
	if (gmm_writer_lock(vm) < 0)
		return 0;
	if (gpa < GMM_GPA_LIMIT) {
		e = atomic_load_explicit(find_slot(vm, gpa, &lvl), memory_order_relaxed);
		if (!is_leaf(e))
			e = 0;
	}
	gmm_writer_unlock(vm);
	if (leaf_size)
		*leaf_size = e ? gmm_lsize(lvl) : 0;
	return e;
}

/* ---- split / collapse ---------------------------------------------- */

/* wlock held.  Split the leaf at *slot (level lvl >= 1).  Translation does
 * not change, so no serialisation: a walker holding the old leaf's pointer
 * points at the same memory.  The new table page comes from the stash st
 * when one is given and not empty (gmm_unmap_ranges: reserved beforehand),
 * else from the pool. */
static int split_slot(struct gmm_vm *vm, _Atomic uint64_t *slot, int lvl, bool use_reserve,
		      struct ptp_stash *st)
{
	uint64_t e = atomic_load_explicit(slot, memory_order_relaxed);
	struct gmm_ptp *child = st && st->used < st->n ? stash_take(st) : NULL;
	if (!child)
		child = gmm_pool_try_alloc(&vm->pool);
	if (!child)
		child = gmm_pool_alloc(&vm->pool, use_reserve);
	if (!child)
		return -ENOSPC;
	uint64_t flags = e & ~GMM_PTE_ADDR;
	uint64_t base = e & GMM_PTE_ADDR;
	uint64_t sub = gmm_lsize(lvl - 1);
	for (unsigned i = 0; i < GMM_PTES; i++)
		GMM_WRITE_ONCE(child->e[i], (base + i * sub) | flags);
	atomic_store_explicit(slot, (uint64_t)(uintptr_t)child | GMM_PTE_PRESENT | GMM_PTE_TABLE,
			      memory_order_release);
	atomic_fetch_add_explicit(&vm->st_splits, 1, memory_order_relaxed);
	return 0;
}

int gmm_split(struct gmm_vm *vm, uint64_t gpa)
{
	int lvl, ret = 0;
	if (gpa >= GMM_GPA_LIMIT)
		return gmm_seterr(EINVAL, "split: 0x%llx is beyond the table", (unsigned long long)gpa);
	if ((ret = gmm_writer_lock(vm)) < 0)
		return ret;
	_Atomic uint64_t *slot = find_slot(vm, gpa, &lvl);
	uint64_t e = atomic_load_explicit(slot, memory_order_relaxed);
	if (!is_leaf(e))
		ret = gmm_seterr(EINVAL, "split: 0x%llx is not mapped", (unsigned long long)gpa);
	else if (lvl == 0)
		ret = gmm_seterr(EINVAL, "split: 0x%llx is already a 4 KiB leaf", (unsigned long long)gpa);
	else if (split_slot(vm, slot, lvl, false, NULL) < 0)
		ret = -ENOSPC;
	gmm_writer_unlock(vm);
	return ret;
}

int gmm_collapse(struct gmm_vm *vm, uint64_t gpa)
{
	int ret = 0;
	if (gpa >= GMM_GPA_LIMIT)
		return gmm_seterr(EINVAL, "collapse: 0x%llx is beyond the table", (unsigned long long)gpa);
	if ((ret = gmm_writer_lock(vm)) < 0)
		return ret;
	/* Find the lowest table entry above the leaves for gpa. */
	struct gmm_ptp *pg = vm->root;
	_Atomic uint64_t *slot = NULL;
	int lvl = GMM_LEVELS - 1;
	for (;; lvl--) {
		_Atomic uint64_t *s = &pg->e[gmm_idx(gpa, lvl)];
		uint64_t e = atomic_load_explicit(s, memory_order_relaxed);
		if (!is_table(e) || lvl == 0)
			break;
		slot = s;
		pg = pte_table(e);
	}
	/* pg is the table holding gpa's leaf (level lvl); slot points at it.
	 * The new leaf may not be larger than the region's host pages. */
	struct gmm_region *r = gmm_region_lookup(vm, gpa);
	uint64_t max_leaf = r ? r->page_size : GMM_1G;
	if (!slot || lvl >= 2 || gmm_lsize(lvl + 1) > max_leaf) {
		ret = gmm_seterr(EINVAL, "collapse: 0x%llx is not inside a split block",
				 (unsigned long long)gpa);
		goto out;
	}
	uint64_t first = wload(pg, 0);
	uint64_t flags = first & ~GMM_PTE_ADDR;
	uint64_t base = first & GMM_PTE_ADDR;
	uint64_t sub = gmm_lsize(lvl);
	if (!is_leaf(first) || (base & (gmm_lsize(lvl + 1) - 1))) {
		ret = gmm_seterr(EAGAIN, "collapse: block of 0x%llx is not whole", (unsigned long long)gpa);
		goto out;
	}
	for (unsigned i = 1; i < GMM_PTES; i++) {
		if (wload(pg, i) != ((base + i * sub) | flags)) {
			ret = gmm_seterr(EAGAIN, "collapse: block of 0x%llx is not whole and contiguous",
					 (unsigned long long)gpa);
			goto out;
		}
	}
	/* Same translation, one entry: walkers may still be reading pg. */
	atomic_store_explicit(slot, base | flags, memory_order_release);
	gmm_table_defer_free(vm, pg);
	atomic_fetch_add_explicit(&vm->st_collapses, 1, memory_order_relaxed);
	/* Do not let unlinked pages pile up when nothing else serialises. */
	if (vm->ndeferred >= 64) {
		gmm_tracker_sync(vm);
		gmm_table_free_deferred(vm);
	}
out:
	gmm_writer_unlock(vm);
	return ret;
}

void gmm_reclaim(struct gmm_vm *vm)
{
	if (gmm_writer_lock(vm) < 0)
		return;
	if (vm->ndeferred) {
		gmm_tracker_sync(vm);
		gmm_table_free_deferred(vm);
	}
	gmm_writer_unlock(vm);
}

void gmm_synchronize(struct gmm_vm *vm)
{
	if (gmm_writer_lock(vm) < 0)
		return;
	gmm_tracker_sync(vm);
	gmm_table_free_deferred(vm);
	gmm_writer_unlock(vm);
}

/* ---- splitting range boundaries ------------------------------------ */

/*
 * Make a leaf boundary at gpa, splitting leaves larger than `gran` that
 * straddle it.  count_only: return how many splits are needed.
 */
static long split_boundary(struct gmm_vm *vm, uint64_t gpa, uint64_t gran, bool count_only,
			   struct ptp_stash *st)
{
	long n = 0;
	if (gpa >= GMM_GPA_LIMIT)
		return 0;
	for (;;) {
		int lvl;
		_Atomic uint64_t *slot = find_slot(vm, gpa, &lvl);
		uint64_t e = atomic_load_explicit(slot, memory_order_relaxed);
		if (!is_leaf(e) || lvl == 0 || (gpa & (gmm_lsize(lvl) - 1)) == 0 || gmm_lsize(lvl) <= gran)
			return n;
		if (count_only) {
			/* Each split goes one level down. */
			for (int l = lvl; l > 0 && gmm_lsize(l) > gran && (gpa & (gmm_lsize(l) - 1)); l--)
				n++;
			return n;
		}
		if (split_slot(vm, slot, lvl, true, st) < 0)
			return -ENOSPC;
		n++;
	}
}

/* Prepare [gpa, end) so every leaf inside lies wholly inside it. */
static int split_range_edges(struct gmm_vm *vm, uint64_t gpa, uint64_t end, uint64_t gran,
			     bool use_reserve)
{
	long need = split_boundary(vm, gpa, gran, true, NULL) +
		    split_boundary(vm, end, gran, true, NULL);
	if (!need)
		return 0;
	uint64_t room = gmm_pool_headroom(&vm->pool);
	if (use_reserve) {
		pthread_mutex_lock(&vm->pool.lock);
		room += vm->pool.nreserve;
		pthread_mutex_unlock(&vm->pool.lock);
	}
	if ((uint64_t)need > room)
		return gmm_seterr(ENOSPC, "table-page limit: splitting the edges of 0x%llx-0x%llx needs %ld table pages, %llu left",
				  (unsigned long long)gpa, (unsigned long long)end, need,
				  (unsigned long long)room);
	if (split_boundary(vm, gpa, gran, false, NULL) < 0 ||
	    split_boundary(vm, end, gran, false, NULL) < 0)
		return -ENOSPC;
	return 0;
}

/* ---- clearing ------------------------------------------------------ */

/* Host ranges whose leaves were cleared, to release after serialising.
 * r is the region the leaves being cleared now belong to; each recorded
 * range keeps its own (gmm_unmap_ranges clears in several regions). */
struct release_list {
	struct gmm_vm *vm;
	struct gmm_region *r;
	bool discard;
	bool keep;                    /* clear leaves only, leave host memory */
	uint64_t cleared;             /* guest bytes cleared */
	uint64_t pt_lo, pt_hi;        /* GPAs covered by the table pages unlinked */
	uint64_t n, cap;
	struct rel_range { struct gmm_region *r; uint8_t *hva; uint64_t len; } *v, inl[16];
	int err;
};

static void release_all(struct release_list *rl)
{
	if (rl->keep) {
		rl->n = 0;
		return;
	}
	for (uint64_t i = 0; i < rl->n; i++) {
		struct gmm_region *r = rl->v[i].r;
		uint64_t off = (uint64_t)(rl->v[i].hva - r->hva);
		int ret = gmm_backing_release(r, off, rl->v[i].len, rl->discard);
		if (ret < 0) {
			if (!rl->err)
				rl->err = ret;   /* the first error is the one reported */
		} else {
			atomic_fetch_add_explicit(&rl->vm->st_released_bytes, rl->v[i].len,
						  memory_order_relaxed);
		}
	}
	rl->n = 0;
}

/* Record [hva, hva + len) for release; coalesces with the previous range. */
static void release_add(struct release_list *rl, uint8_t *hva, uint64_t len)
{
	rl->cleared += len;
	if (rl->n && rl->v[rl->n - 1].r == rl->r && rl->v[rl->n - 1].hva + rl->v[rl->n - 1].len == hva) {
		rl->v[rl->n - 1].len += len;
		return;
	}
	if (!rl->v) {
		rl->v = rl->inl;
		rl->cap = sizeof(rl->inl) / sizeof(rl->inl[0]);
	}
	if (rl->n == rl->cap) {
		uint64_t cap = rl->cap * 2;
		struct rel_range *n = malloc(cap * sizeof(*n));
		if (n) {
			memcpy(n, rl->v, rl->n * sizeof(*n));
			if (rl->v != rl->inl)
				free(rl->v);
		}
		if (!n) {
			/* No room to remember it: serialise now and release
			 * what we have, then start over. */
			gmm_tracker_sync(rl->vm);
			release_all(rl);
		} else {
			rl->v = n;
			rl->cap = cap;
		}
	}
	rl->v[rl->n].r = rl->r;
	rl->v[rl->n].hva = hva;
	rl->v[rl->n].len = len;
	rl->n++;
}

static bool table_empty(struct gmm_ptp *pg)
{
	for (unsigned i = 0; i < GMM_PTES; i++)
		if (wload(pg, i))
			return false;
	return true;
}

/*
 * Clear every leaf in [gpa, end) of table pg (level lvl).  Leaves must lie
 * wholly inside the range (split_range_edges).  Tables left empty are
 * unlinked and queued for freeing after the grace period.
 */
static void clear_rec(struct gmm_vm *vm, struct gmm_ptp *pg, int lvl, uint64_t gpa,
		      uint64_t end, struct release_list *rl)
{
	uint64_t sz = gmm_lsize(lvl);
	while (gpa < end) {
		uint64_t slot_end = (gpa & ~(sz - 1)) + sz;
		if (slot_end > end)
			slot_end = end;
		unsigned i = gmm_idx(gpa, lvl);
		uint64_t e = wload(pg, i);
		if (is_leaf(e)) {
			wclear(pg, i);
			release_add(rl, (uint8_t *)(uintptr_t)(e & GMM_PTE_ADDR), sz);
		} else if (is_table(e)) {
			struct gmm_ptp *child = pte_table(e);
			clear_rec(vm, child, lvl - 1, gpa, slot_end, rl);
			if (table_empty(child)) {
				wclear(pg, i);
				gmm_table_defer_free(vm, child);
				/* A walker anywhere under this entry may read
				 * the page, not only one in the cleared range. */
				uint64_t cov = gpa & ~(sz - 1);
				if (cov < rl->pt_lo)
					rl->pt_lo = cov;
				if (cov + sz > rl->pt_hi)
					rl->pt_hi = cov + sz;
			}
		}
		gpa = slot_end;
	}
}

/* ---- unmap --------------------------------------------------------- */

/* Smallest unit a range of r can be unmapped in. */
static uint64_t unmap_granule(const struct gmm_region *r)
{
	return r->backing == GMM_BACKING_THP ? GMM_PAGE_SIZE : r->page_size;
}

/* wlock held. */
int gmm_unmap_locked(struct gmm_vm *vm, struct gmm_region *r, uint64_t gpa, uint64_t len,
		     unsigned flags)
{
	uint64_t end = gpa + len;
	uint64_t gran = unmap_granule(r);
	uint32_t first = (uint32_t)((gpa - r->gpa) / GMM_2M);
	uint32_t nblk = (uint32_t)((end - r->gpa + GMM_2M - 1) / GMM_2M) - first;
	/* kick and count serialise per block, as the kernel did per huge
	 * page; memory is still released once, after the last block, so the
	 * strategies differ only in their serialisations. */
	bool per_block = vm->cfg.strategy == GMM_STRATEGY_KICK ||
			 vm->cfg.strategy == GMM_STRATEGY_COUNT;
	int ret;

	if (!(flags & GMM_UNMAP_FORCE)) {
		ret = gmm_pin_freeze(vm, r, first, nblk, flags & GMM_UNMAP_NOWAIT);
		if (ret < 0)
			return ret;
	}
	ret = split_range_edges(vm, gpa, end, gran, true);
	if (ret < 0)
		goto out;

	struct release_list rl = { .vm = vm, .r = r, .discard = flags & GMM_UNMAP_DISCARD,
				   .keep = flags & GMM_UNMAP_KEEP, .pt_lo = UINT64_MAX };
	/* Table pages queued before this call may lie anywhere. */
	bool older_deferred = vm->ndeferred != 0;
	bool serialised = false;
	if (per_block) {
		/* The kernel IPI broadcast's shape: clear one huge page,
		 * serialise, next. */
		uint64_t step = r->page_size > GMM_2M ? r->page_size : GMM_2M;
		for (uint64_t a = gpa; a < end;) {
			uint64_t b = (a & ~(step - 1)) + step;
			if (b > end)
				b = end;
			uint64_t before = rl.cleared;
			clear_rec(vm, vm->root, GMM_LEVELS - 1, a, b, &rl);
			if (rl.cleared != before) {
				gmm_tracker_block(vm);
				serialised = true;
			}
			a = b;
		}
	} else {
		clear_rec(vm, vm->root, GMM_LEVELS - 1, gpa, end, &rl);
		if (rl.cleared && !(flags & GMM_UNMAP_CALLER_SYNCS)) {
			/* The serialisation must cover every GPA whose walk
			 * could hold a pointer we free: the range, the table
			 * pages unlinked, or everything if older ones wait. */
			uint64_t lo = rl.pt_lo < gpa ? rl.pt_lo : gpa;
			uint64_t hi = rl.pt_hi > end ? rl.pt_hi : end;
			if (older_deferred)
				gmm_tracker_sync(vm);
			else
				gmm_tracker_range(vm, lo, hi);
			serialised = true;
		}
	}
	/* No walker can hold a pointer into the cleared range any more, nor
	 * into a table page queued before the last serialisation.  Without
	 * one (nothing was mapped here), pages queued earlier -- by a
	 * collapse -- must keep waiting. */
	if (serialised)
		gmm_table_free_deferred(vm);
	release_all(&rl);
	if (rl.v != rl.inl)
		free(rl.v);
	/* The range's bytes are gone: a migration sends the hole. */
	gmm_dirty_writer_mark(vm, r, gpa, len);
	atomic_fetch_add_explicit(&vm->st_unmaps, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&vm->st_unmapped_bytes, rl.cleared, memory_order_relaxed);
	atomic_fetch_sub_explicit(&vm->st_mapped_bytes, rl.cleared, memory_order_relaxed);
	ret = rl.err;
	if (ret < 0)
		gmm_log(GMM_LOG_ERROR, "unmap 0x%llx+0x%llx: releasing host memory failed: %s",
			(unsigned long long)gpa, (unsigned long long)len, gmm_last_error());
out:
	if (!(flags & GMM_UNMAP_FORCE))
		gmm_pin_thaw(r, first, nblk);
	return ret;
}

/* wlock held: the region holding all of [gpa, gpa + len), checked. */
static struct gmm_region *range_region(struct gmm_vm *vm, const char *op, uint64_t gpa,
				       uint64_t len, int *err)
{
	struct gmm_region *r = NULL;
	if (len == 0) {
		*err = gmm_seterr(EINVAL, "%s: empty range", op);
		return NULL;
	}
	if (gpa < GMM_GPA_LIMIT && len <= GMM_GPA_LIMIT - gpa)
		r = gmm_region_lookup(vm, gpa);
	if (!r || gpa + len > r->gpa + r->size) {
		*err = gmm_seterr(EINVAL, "%s: 0x%llx+0x%llx is not inside one region", op,
				  (unsigned long long)gpa, (unsigned long long)len);
		return NULL;
	}
	uint64_t gran = unmap_granule(r);
	if ((gpa | len) & (gran - 1)) {
		*err = gmm_seterr(EINVAL, "%s: 0x%llx+0x%llx is not aligned to %llu KiB (%s region \"%s\")",
				  op, (unsigned long long)gpa, (unsigned long long)len,
				  (unsigned long long)(gran >> 10), gmm_backing_name(r->backing), r->name);
		return NULL;
	}
	return r;
}

int gmm_unmap(struct gmm_vm *vm, uint64_t gpa, uint64_t len, unsigned flags)
{
	int ret;
	flags &= GMM_UNMAP_DISCARD | GMM_UNMAP_NOWAIT;
	if ((ret = gmm_writer_lock(vm)) < 0)
		return ret;
	struct gmm_region *r = range_region(vm, "unmap", gpa, len, &ret);
	if (r)
		ret = gmm_unmap_locked(vm, r, gpa, len, flags);
	gmm_writer_unlock(vm);
	return ret;
}

/* ---- unmap a list of ranges ---------------------------------------- */

/* wlock held: the region holding gpa, trying `hint` (the previous range's)
 * first: a list's ranges mostly share one region. */
static struct gmm_region *region_hint(struct gmm_vm *vm, uint64_t gpa, struct gmm_region *hint)
{
	if (hint && gpa >= hint->gpa && gpa - hint->gpa < hint->size)
		return hint;
	return gmm_region_lookup(vm, gpa);
}

/* wlock held: step 1 of gmm_unmap_ranges.  0 or -EINVAL naming the range. */
static int ranges_validate(struct gmm_vm *vm, const struct gmm_range *rg, size_t n)
{
	struct gmm_region *r = NULL;
	uint64_t prev_end = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t gpa = rg[i].gpa, len = rg[i].len;
		if (len == 0)
			return gmm_seterr(EINVAL, "unmap ranges: range %zu of %zu is empty", i, n);
		if (gpa >= GMM_GPA_LIMIT || len > GMM_GPA_LIMIT - gpa)
			return gmm_seterr(EINVAL, "unmap ranges: range %zu (0x%llx+0x%llx) is beyond the %d-bit guest-physical space",
					  i, (unsigned long long)gpa, (unsigned long long)len, GMM_GPA_BITS);
		if (i && gpa < prev_end)
			return gmm_seterr(EINVAL, "unmap ranges: range %zu (0x%llx) overlaps or comes before the range before it (ending at 0x%llx): the list must be sorted and not overlap",
					  i, (unsigned long long)gpa, (unsigned long long)prev_end);
		r = region_hint(vm, gpa, r);
		if (!r || gpa + len > r->gpa + r->size)
			return gmm_seterr(EINVAL, "unmap ranges: range %zu (0x%llx+0x%llx) is not inside one region",
					  i, (unsigned long long)gpa, (unsigned long long)len);
		uint64_t gran = unmap_granule(r);
		if ((gpa | len) & (gran - 1))
			return gmm_seterr(EINVAL, "unmap ranges: range %zu (0x%llx+0x%llx) is not aligned to %llu KiB (%s region \"%s\")",
					  i, (unsigned long long)gpa, (unsigned long long)len,
					  (unsigned long long)(gran >> 10), gmm_backing_name(r->backing), r->name);
		prev_end = gpa + len;
	}
	return 0;
}

/* A run of 2 MiB blocks of one region under the list. */
struct block_span {
	struct gmm_region *r;
	uint32_t first, n;
};

/* wlock held, list validated.  The next span of distinct blocks from range
 * *pos on: consecutive ranges whose blocks touch or share one (a list of
 * scattered 4 KiB pages in one region is usually a single span).  false at
 * the end of the list. */
static bool next_span(struct gmm_vm *vm, const struct gmm_range *rg, size_t n, size_t *pos,
		      struct block_span *sp)
{
	if (*pos >= n)
		return false;
	struct gmm_region *r = region_hint(vm, rg[*pos].gpa, sp->r);
	uint32_t first = (uint32_t)((rg[*pos].gpa - r->gpa) / GMM_2M);
	uint32_t last = (uint32_t)((rg[*pos].gpa + rg[*pos].len - 1 - r->gpa) / GMM_2M);
	for (++*pos; *pos < n; ++*pos) {
		uint64_t gpa = rg[*pos].gpa;
		if (gpa < r->gpa || gpa - r->gpa >= r->size)
			break;
		uint32_t f = (uint32_t)((gpa - r->gpa) / GMM_2M);
		if (f > last + 1)
			break;
		/* Sorted: f >= the previous range's first block. */
		uint32_t l = (uint32_t)((gpa + rg[*pos].len - 1 - r->gpa) / GMM_2M);
		if (l > last)
			last = l;
	}
	*sp = (struct block_span){ .r = r, .first = first, .n = last - first + 1 };
	return true;
}

/* Thaw every span of the list's first `spans` spans. */
static void ranges_thaw(struct gmm_vm *vm, const struct gmm_range *rg, size_t n, size_t spans)
{
	struct block_span sp = { 0 };
	size_t pos = 0;
	for (size_t k = 0; k < spans && next_span(vm, rg, n, &pos, &sp); k++)
		gmm_pin_thaw(sp.r, sp.first, sp.n);
}

/* Step 2: freeze every span against one deadline.  On -EBUSY everything
 * is thawed. */
static int ranges_freeze(struct gmm_vm *vm, const struct gmm_range *rg, size_t n, bool nowait)
{
	uint64_t deadline = gmm_pin_deadline(vm);
	bool waited = false;
	struct block_span sp = { 0 };
	size_t pos = 0, spans = 0;
	int ret = 0;
	while (next_span(vm, rg, n, &pos, &sp)) {
		ret = gmm_pin_freeze_until(vm, sp.r, sp.first, sp.n, nowait, deadline, &waited);
		if (ret < 0) {
			ranges_thaw(vm, rg, n, spans);
			break;
		}
		spans++;
	}
	gmm_pin_wait_done(vm, waited);
	return ret;
}

/*
 * Step 3's count: table pages the split at edge x needs, for the region's
 * unmap granule gran, not counting a leaf an earlier edge of the list
 * splits already.  Edges come in increasing order, so an earlier edge in
 * the same leaf of level l was the last one counted at that level:
 * last[l] remembers the base of that leaf.  A split goes one level down:
 * 1 GiB -> 2 MiB -> 4 KiB while x is not aligned to the leaf and the leaf
 * is larger than gran (as split_boundary does).
 */
static long edge_splits(struct gmm_vm *vm, uint64_t x, uint64_t gran, uint64_t last[GMM_LEVELS])
{
	if (x >= GMM_GPA_LIMIT)
		return 0;
	int lvl;
	uint64_t e = atomic_load_explicit(find_slot(vm, x, &lvl), memory_order_relaxed);
	if (!is_leaf(e))
		return 0;
	long need = 0;
	for (int l = lvl; l > 0 && gmm_lsize(l) > gran && (x & (gmm_lsize(l) - 1)); l--) {
		uint64_t base = x & ~(gmm_lsize(l) - 1);
		if (last[l] != base) {
			last[l] = base;
			need++;
		}
	}
	return need;
}

int gmm_unmap_ranges(struct gmm_vm *vm, const struct gmm_range *rg, size_t n, unsigned flags)
{
	int ret;
	flags &= GMM_UNMAP_DISCARD | GMM_UNMAP_NOWAIT;
	if (n && !rg)
		return gmm_seterr(EINVAL, "unmap ranges: no list");
	if ((ret = gmm_writer_lock(vm)) < 0)
		return ret;
	if (n == 0)
		goto out;
	/* 1. Validate: nothing has been touched yet. */
	ret = ranges_validate(vm, rg, n);
	if (ret < 0)
		goto out;
	/* 2. Freeze, one pin wait for the whole list. */
	ret = ranges_freeze(vm, rg, n, flags & GMM_UNMAP_NOWAIT);
	if (ret < 0)
		goto out;

	/* 3. Reserve the splits' table pages (unmap may use the reserve). */
	uint64_t last[GMM_LEVELS] = { UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX };
	struct gmm_region *r = NULL;
	long need = 0;
	for (size_t i = 0; i < n; i++) {
		r = region_hint(vm, rg[i].gpa, r);
		need += edge_splits(vm, rg[i].gpa, unmap_granule(r), last);
		need += edge_splits(vm, rg[i].gpa + rg[i].len, unmap_granule(r), last);
	}
	struct ptp_stash st = { .v = NULL };
	if (need) {
		uint64_t room = gmm_pool_headroom(&vm->pool);
		pthread_mutex_lock(&vm->pool.lock);
		room += vm->pool.nreserve;
		pthread_mutex_unlock(&vm->pool.lock);
		if ((uint64_t)need > room)
			ret = gmm_seterr(ENOSPC, "table-page limit: splitting the edges of %zu ranges needs %ld table pages, %llu left",
					 n, need, (unsigned long long)room);
		else
			ret = stash_fill(vm, &st, need, true);
		if (ret < 0) {
			ranges_thaw(vm, rg, n, SIZE_MAX);
			goto out;
		}
	}

	/* 4. The point of no return: split the edges (from the stash),
	 * clear every range's leaves. */
	struct release_list rl = { .vm = vm, .discard = flags & GMM_UNMAP_DISCARD,
				   .pt_lo = UINT64_MAX };
	bool older_deferred = vm->ndeferred != 0;
	r = NULL;
	for (size_t i = 0; i < n; i++) {
		uint64_t gpa = rg[i].gpa, end = gpa + rg[i].len;
		r = region_hint(vm, gpa, r);
		uint64_t gran = unmap_granule(r);
		/* Cannot fail: the stash holds every page counted (and the
		 * pool's reserve backs a miscount). */
		if (split_boundary(vm, gpa, gran, false, &st) < 0 ||
		    split_boundary(vm, end, gran, false, &st) < 0)
			gmm_log(GMM_LOG_ERROR, "unmap ranges: splitting the edges of 0x%llx+0x%llx failed after the point of no return",
				(unsigned long long)gpa, (unsigned long long)rg[i].len);
		rl.r = r;
		clear_rec(vm, vm->root, GMM_LEVELS - 1, gpa, end, &rl);
	}
	if (st.v)
		stash_drop(vm, &st);

	/* 5. One serialisation for the whole list, covering the ranges and
	 * the table pages unlinked -- everything if older ones wait, or for
	 * kick and count (their tracker_range does nothing: they serialise
	 * per block in gmm_unmap; a list is serialised once, in full). */
	if (rl.cleared) {
		uint64_t lo = rl.pt_lo < rg[0].gpa ? rl.pt_lo : rg[0].gpa;
		uint64_t hi = rg[n - 1].gpa + rg[n - 1].len;
		if (rl.pt_hi > hi)
			hi = rl.pt_hi;
		bool per_block = vm->cfg.strategy == GMM_STRATEGY_KICK ||
				 vm->cfg.strategy == GMM_STRATEGY_COUNT;
		if (older_deferred || per_block)
			gmm_tracker_sync(vm);
		else
			gmm_tracker_range(vm, lo, hi);
		gmm_table_free_deferred(vm);
	}

	/* 6. Give the host memory back, then let pins in again. */
	release_all(&rl);
	if (rl.v && rl.v != rl.inl)
		free(rl.v);
	ranges_thaw(vm, rg, n, SIZE_MAX);
	/* The ranges' bytes are gone: a migration sends the holes. */
	r = NULL;
	for (size_t i = 0; i < n; i++) {
		r = region_hint(vm, rg[i].gpa, r);
		gmm_dirty_writer_mark(vm, r, rg[i].gpa, rg[i].len);
	}
	atomic_fetch_add_explicit(&vm->st_unmaps, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&vm->st_unmapped_bytes, rl.cleared, memory_order_relaxed);
	atomic_fetch_sub_explicit(&vm->st_mapped_bytes, rl.cleared, memory_order_relaxed);
	ret = rl.err;
	if (ret < 0)
		gmm_log(GMM_LOG_ERROR, "unmap of %zu ranges: releasing host memory failed: %s", n,
			gmm_last_error());
out:
	gmm_writer_unlock(vm);
	return ret;
}

/* ---- discard ------------------------------------------------------- */

/*
 * Writer-side (wlock: no unmap/map/remove can change the range's host
 * mapping under us).  The leaves are only read, never changed, so nothing
 * is serialised: a walker in flight keeps a valid pointer into a mapping
 * that stays; the kernel gives it a fresh zero page on its next touch.
 */
int gmm_discard(struct gmm_vm *vm, uint64_t gpa, uint64_t len)
{
	int ret = 0;
	if ((ret = gmm_writer_lock(vm)) < 0)
		return ret;
	struct gmm_region *r = range_region(vm, "discard", gpa, len, &ret);
	if (!r)
		goto out;
	if (r->flags & GMM_REGION_READONLY) {
		ret = gmm_seterr(EPERM, "discard: region \"%s\" is read-only", r->name);
		goto out;
	}
	/* Every byte must be mapped: an unmapped part may be a placeholder
	 * (PROT_NONE) or a hole the owner of the range keeps track of. */
	for (uint64_t a = gpa; a < gpa + len;) {
		int lvl;
		uint64_t e = atomic_load_explicit(find_slot(vm, a, &lvl), memory_order_relaxed);
		if (!is_leaf(e)) {
			ret = gmm_seterr(EINVAL, "discard: 0x%llx (in 0x%llx+0x%llx) is not mapped",
					 (unsigned long long)a, (unsigned long long)gpa,
					 (unsigned long long)len);
			goto out;
		}
		a += gmm_lsize(lvl) - (a & (gmm_lsize(lvl) - 1));
	}
	ret = gmm_backing_release(r, gpa - r->gpa, len, true);
	/* Zeros now (or partly, on failure): the migration resends. */
	gmm_dirty_writer_mark(vm, r, gpa, len);
	if (ret == 0)
		atomic_fetch_add_explicit(&vm->st_released_bytes, len, memory_order_relaxed);
out:
	gmm_writer_unlock(vm);
	return ret;
}

/* ---- map ----------------------------------------------------------- */

/* wlock held.  The first run [*x, *y) of absent leaves in [a, end), or
 * false.  An absent entry at level l means its whole slot is absent. */
static bool next_absent_run(struct gmm_vm *vm, uint64_t a, uint64_t end, uint64_t *x, uint64_t *y)
{
	while (a < end) {
		int lvl;
		uint64_t e = atomic_load_explicit(find_slot(vm, a, &lvl), memory_order_relaxed);
		if (is_leaf(e)) {
			a += gmm_lsize(lvl) - (a & (gmm_lsize(lvl) - 1));
			continue;
		}
		uint64_t b = a;
		while (b < end && !is_leaf(e)) {
			b += gmm_lsize(lvl) - (b & (gmm_lsize(lvl) - 1));
			if (b < end)
				e = atomic_load_explicit(find_slot(vm, b, &lvl), memory_order_relaxed);
		}
		*x = a;
		*y = b < end ? b : end;
		return true;
	}
	return false;
}

/*
 * Reserve, then commit: (1) the table pages (install_reserve), (2) host
 * memory under every absent run (a remap that fails gives back the runs
 * already mapped: none is linked yet, no walker can have seen them), (3)
 * link the leaves, which cannot fail.  A failure in (1) or (2) leaves every
 * translation, every pin and the statistics as they were.
 */
int gmm_map(struct gmm_vm *vm, uint64_t gpa, uint64_t len)
{
	int ret = 0;
	if ((ret = gmm_writer_lock(vm)) < 0)
		return ret;
	struct gmm_region *r = range_region(vm, "map", gpa, len, &ret);
	if (!r)
		goto out;
	uint64_t end = gpa + len;
	uint64_t flags = GMM_PTE_PRESENT | ((r->flags & GMM_REGION_READONLY) ? 0 : GMM_PTE_WRITE);
	uint8_t *hva = r->hva + (gpa - r->gpa);
	struct ptp_stash st;

	ret = install_reserve(vm, &st, gpa, len, hva, r->page_size, flags);
	if (ret < 0)
		goto out;
	uint64_t mapped = 0, x, y;
	for (uint64_t a = gpa; next_absent_run(vm, a, end, &x, &y); a = y) {
		ret = gmm_backing_remap(r, x - r->gpa, y - x);
		if (ret < 0) {
			char msg[256];
			snprintf(msg, sizeof(msg), "%s", gmm_last_error());
			/* Give back the runs before x (they are still absent in
			 * the table): placeholders again. */
			for (uint64_t u = gpa, ux, uy; u < x && next_absent_run(vm, u, x, &ux, &uy); u = uy)
				if (gmm_backing_release(r, ux - r->gpa, uy - ux, false) < 0)
					gmm_log(GMM_LOG_WARN, "map: cannot give back [0x%llx, 0x%llx) after a failed remap: %s",
						(unsigned long long)ux, (unsigned long long)uy, gmm_last_error());
			gmm_seterr(-ret, "map: %s", msg);
			stash_drop(vm, &st);
			goto out;
		}
		mapped += y - x;
	}
	install_rec(vm, vm->root, GMM_LEVELS - 1, gpa, end, hva, r->page_size, flags, &st);
	stash_drop(vm, &st);
	gmm_dirty_writer_mark(vm, r, gpa, len);
	atomic_fetch_add_explicit(&vm->st_maps, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&vm->st_mapped_bytes, mapped, memory_order_relaxed);
out:
	gmm_writer_unlock(vm);
	return ret;
}

/* ---- protect ------------------------------------------------------- */

static void protect_rec(struct gmm_ptp *pg, int lvl, uint64_t gpa, uint64_t end, bool writable)
{
	uint64_t sz = gmm_lsize(lvl);
	while (gpa < end) {
		uint64_t slot_end = (gpa & ~(sz - 1)) + sz;
		if (slot_end > end)
			slot_end = end;
		unsigned i = gmm_idx(gpa, lvl);
		uint64_t e = wload(pg, i);
		if (is_leaf(e)) {
			uint64_t n = writable ? (e | GMM_PTE_WRITE) : (e & ~GMM_PTE_WRITE);
			/* Release: granting write publishes nothing new, but
			 * keeps the entry's store ordering uniform. */
			if (n != e)
				wpublish(pg, i, n);
		} else if (is_table(e)) {
			protect_rec(pte_table(e), lvl - 1, gpa, slot_end, writable);
		}
		gpa = slot_end;
	}
}

int gmm_protect(struct gmm_vm *vm, uint64_t gpa, uint64_t len, bool writable)
{
	int ret = 0;
	if ((ret = gmm_writer_lock(vm)) < 0)
		return ret;
	struct gmm_region *r = range_region(vm, "protect", gpa, len, &ret);
	if (!r)
		goto out;
	if (writable && (r->flags & GMM_REGION_READONLY)) {
		ret = gmm_seterr(EPERM, "protect: region \"%s\" is read-only", r->name);
		goto out;
	}
	uint32_t first = (uint32_t)((gpa - r->gpa) / GMM_2M);
	uint32_t nblk = (uint32_t)((gpa + len - r->gpa + GMM_2M - 1) / GMM_2M) - first;
	if (!writable) {
		/* Write pins first: none may outlive this call (pin.c). */
		ret = gmm_pin_write_freeze(vm, r, first, nblk);
		if (ret < 0)
			goto out;
	}
	ret = split_range_edges(vm, gpa, gpa + len, unmap_granule(r), false);
	if (ret == 0)
		protect_rec(vm->root, GMM_LEVELS - 1, gpa, gpa + len, writable);
	if (ret == 0 && !writable) {
		/* A walker may still hold a writable pointer. */
		gmm_tracker_sync(vm);
		gmm_table_free_deferred(vm);
	}
	if (!writable)
		gmm_pin_write_thaw(r, first, nblk);
out:
	gmm_writer_unlock(vm);
	return ret;
}
