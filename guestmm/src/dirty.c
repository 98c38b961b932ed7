// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * dirty.c - the dirty log of guest pages written through guestmm (dirty.h):
 * walkers mark, the migration harvests.
 *
 * One bit per 4 KiB page per region, in 64-bit words.  Walkers set bits,
 * the harvester clears words; nobody else writes them.
 *
 * ---- Ordering: a mark, the write behind it, the harvest -----------------
 *
 * A walker:   begin walk (B) -> translate for write: load the word, OR the
 *             page's bit in if it is not set (M, a seq_cst RMW, or the
 *             seq_cst load that found it set) -> store guest bytes (W)
 *             through the pointer -> end walk (E, release).
 * Harvester:  exchange the word with 0 (X, seq_cst) -> gmm_tracker_sync
 *             (T: returns once every walk in flight at its start has ended,
 *             with acquire on that end) -> copy the page (C).
 *
 * Claim: if X takes M's bit (or M found the bit set and X takes that),
 * then W happens before C -- the copy sees the new bytes -- or W's page
 * is marked again after X and a later harvest reports it.
 *
 *   - M is inside the walk, so B precedes M; both are seq_cst (or B is
 *     ordered by the strategy's barrier, as for any table load: tracker.c)
 *     and X reads M's value (or a later one), so B < M < X < T's first
 *     check in the total order of seq_cst operations.  T therefore sees
 *     the walk as in flight -- the same store-buffering argument that lets
 *     an unmap free memory after T (tracker.c, W2 and "Ordering: hazard
 *     ranges"; the full sync ignores hazard ranges) -- and returns only
 *     after E, whose release orders W before C.
 *   - If M's load read the bit set from an older mark M0 and X cleared it
 *     later, the walk still loaded the word before X in that order: the
 *     same argument applies.  If M's load comes after X (it read 0), M sets
 *     the bit again: the next harvest has it.
 *
 * Hence harvest = exchange THEN sync, and the caller copies after the
 * harvest.  The writes that the sync waits for are the walks in flight at
 * that moment only (microseconds, as for an unmap); vCPUs in KVM_RUN are
 * not walks.
 *
 * Pins.  A write pin's I/O writes guest memory after its walk ended, so
 * gmm_unpin marks again: the I/O's stores, then a seq_cst fence, then the
 * load of dirty_on and (if on) the mark, a seq_cst RMW whose value X
 * reads: X synchronises with it and C sees the I/O's bytes.  If the
 * unpin's load reads dirty_on still 0 (logging started meanwhile), the
 * fence pair decides: gmm_dirty_start stores dirty_on, then its sync's
 * seq_cst operations follow; by the fences' total order either the unpin
 * sees the flag, or its I/O's stores are visible to everything the
 * starter does after -- the first full copy, which comes after
 * gmm_dirty_start returns, sees the bytes.
 *
 * Start.  dirty_on goes on (seq_cst), then a full sync: a walk that loaded
 * dirty_on == 0 was in flight before the store and has ended when
 * gmm_dirty_start returns, so its writes are in the memory the first full
 * copy reads.  A walk that begins later sees the flag.
 */
#include "internal.h"

#include <guestmm/dirty.h>

#include <stdlib.h>
#include <string.h>

static inline uint64_t region_pages(const struct gmm_region *r)
{
	return r->size / GMM_PAGE_SIZE;
}

/* Set bits [first, first + n) of bm.  Skip the RMW when the word has them
 * already: a seq_cst load (a plain MOV on x86) keeps the argument above. */
static void set_bits(_Atomic uint64_t *bm, uint64_t first, uint64_t n)
{
	while (n) {
		uint64_t w = first / 64, b = first % 64;
		uint64_t k = 64 - b < n ? 64 - b : n;
		uint64_t mask = (k == 64 ? ~0ULL : ((1ULL << k) - 1)) << b;
		if ((atomic_load_explicit(&bm[w], memory_order_seq_cst) & mask) != mask)
			atomic_fetch_or_explicit(&bm[w], mask, memory_order_seq_cst);
		first += k;
		n -= k;
	}
}

static void mark(struct gmm_region *r, uint64_t gpa, uint64_t len)
{
	/* Acquire: pairs with the release that published the bitmap. */
	_Atomic uint64_t *bm = atomic_load_explicit(&r->dirty, memory_order_acquire);
	if (!bm || !len || gpa < r->gpa || gpa - r->gpa >= r->size)
		return;
	uint64_t end = gpa + len;
	if (end > r->gpa + r->size || end < gpa)
		end = r->gpa + r->size;
	uint64_t first = (gpa - r->gpa) / GMM_PAGE_SIZE;
	uint64_t last = (end - 1 - r->gpa) / GMM_PAGE_SIZE;
	set_bits(bm, first, last - first + 1);
}

/* Walker-side, inside the walk that translated [gpa, gpa + len): its
 * region cannot be freed before the walk ends (gmm_region_lookup). */
void gmm__dirty_mark(struct gmm_vm *vm, uint64_t gpa, uint64_t len)
{
	struct gmm_region *r = gmm_region_lookup(vm, gpa);
	if (r)
		mark(r, gpa, len);
}

void gmm__dirty_mark_region(struct gmm_region *r, uint64_t gpa, uint64_t len)
{
	mark(r, gpa, len);
}

void gmm_dirty_writer_mark(struct gmm_vm *vm, struct gmm_region *r, uint64_t gpa, uint64_t len)
{
	if (vm->dirty_logging)
		mark(r, gpa, len);
}

static _Atomic uint64_t *bitmap_alloc(const struct gmm_region *r)
{
	uint64_t words = (region_pages(r) + 63) / 64;
	return calloc(words, sizeof(uint64_t));
}

int gmm_dirty_region_init(struct gmm_vm *vm, struct gmm_region *r)
{
	if (!vm->dirty_logging)
		return 0;
	_Atomic uint64_t *bm = bitmap_alloc(r);
	if (!bm)
		return gmm_seterr(ENOMEM, "region \"%s\": out of memory for its dirty log", r->name);
	/* New memory: all of it must be sent. */
	set_bits(bm, 0, region_pages(r));
	atomic_store_explicit(&r->dirty, bm, memory_order_release);
	return 0;
}

int gmm_dirty_start(struct gmm_vm *vm)
{
	int ret = gmm_writer_lock(vm);
	if (ret < 0)
		return ret;
	if (vm->dirty_logging) {
		gmm_writer_unlock(vm);
		return gmm_seterr(EBUSY, "dirty logging is on already");
	}
	/* Every region's bitmap first (all or nothing), clean. */
	for (int i = 0; i < GMM_MAX_REGIONS; i++) {
		struct gmm_region *r = GMM_READ_ONCE(vm->regions[i]);
		if (!r || GMM_READ_ONCE(r->dirty))
			continue;
		_Atomic uint64_t *bm = bitmap_alloc(r);
		if (!bm) {
			gmm_writer_unlock(vm);
			return gmm_seterr(ENOMEM, "region \"%s\": out of memory for its dirty log",
					  r->name);
		}
		atomic_store_explicit(&r->dirty, bm, memory_order_release);
	}
	for (int i = 0; i < GMM_MAX_REGIONS; i++) {
		struct gmm_region *r = GMM_READ_ONCE(vm->regions[i]);
		if (!r)
			continue;
		/* Walkers are not marking (dirty_on is 0): a stray bit from
		 * a walk that saw an earlier logging's flag only costs a page
		 * sent twice. */
		_Atomic uint64_t *bm = GMM_READ_ONCE(r->dirty);
		for (uint64_t w = 0; w < (region_pages(r) + 63) / 64; w++)
			GMM_WRITE_ONCE(bm[w], 0);
	}
	vm->dirty_logging = true;
	/* seq_cst, then the full sync: see "Start" above. */
	atomic_store_explicit(&vm->dirty_on, vm->dirty_skip_walkers ? 0 : GMM_ACCESS_WRITE,
			      memory_order_seq_cst);
	atomic_thread_fence(memory_order_seq_cst);
	gmm_tracker_sync(vm);
	gmm_table_free_deferred(vm);
	gmm_writer_unlock(vm);
	gmm_log(GMM_LOG_DEBUG, "dirty logging on%s", vm->dirty_skip_walkers ?
		" (TEST: walkers and pins do not mark)" : "");
	return 0;
}

void gmm_dirty_stop(struct gmm_vm *vm)
{
	if (gmm_writer_lock(vm) < 0)
		return;
	vm->dirty_logging = false;
	atomic_store_explicit(&vm->dirty_on, 0, memory_order_seq_cst);
	gmm_writer_unlock(vm);
}

bool gmm_dirty_active(struct gmm_vm *vm)
{
	if (gmm_writer_lock(vm) < 0)
		return false;
	bool on = vm->dirty_logging;
	gmm_writer_unlock(vm);
	return on;
}

int gmm_dirty_harvest(struct gmm_vm *vm, uint64_t region_gpa, uint64_t *bits, uint64_t nbits)
{
	int ret = gmm_writer_lock(vm);
	if (ret < 0)
		return ret;
	struct gmm_region *r = NULL;
	for (int i = 0; i < GMM_MAX_REGIONS && !r; i++) {
		struct gmm_region *o = GMM_READ_ONCE(vm->regions[i]);
		if (o && o->gpa == region_gpa)
			r = o;
	}
	if (!r) {
		ret = gmm_seterr(ENOENT, "dirty harvest: no region starts at 0x%llx",
				 (unsigned long long)region_gpa);
	} else if (nbits != region_pages(r)) {
		ret = gmm_seterr(EINVAL, "dirty harvest: region \"%s\" has %llu pages, not %llu",
				 r->name, (unsigned long long)region_pages(r),
				 (unsigned long long)nbits);
	} else if (!vm->dirty_logging) {
		ret = gmm_seterr(EPERM, "dirty harvest: logging is off");
	} else {
		_Atomic uint64_t *bm = GMM_READ_ONCE(r->dirty);
		uint64_t words = (nbits + 63) / 64;
		for (uint64_t w = 0; w < words; w++) {
			/* X: seq_cst exchange, then T below. */
			if (GMM_READ_ONCE(bm[w]))
				bits[w] |= atomic_exchange_explicit(&bm[w], 0, memory_order_seq_cst);
		}
		/* T: every walk that marked before X has ended. */
		gmm_tracker_sync(vm);
		gmm_table_free_deferred(vm);
	}
	gmm_writer_unlock(vm);
	return ret;
}

void gmm_dirty_test_skip_walkers(struct gmm_vm *vm, bool skip)
{
	if (gmm_writer_lock(vm) < 0)
		return;
	vm->dirty_skip_walkers = skip;
	if (vm->dirty_logging)
		atomic_store_explicit(&vm->dirty_on, skip ? 0 : GMM_ACCESS_WRITE,
				      memory_order_seq_cst);
	gmm_writer_unlock(vm);
}
