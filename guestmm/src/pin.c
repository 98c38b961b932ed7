// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * pin.c - block references for accesses that outlive a walk, after the
 * speculative page references Matthew Wilcox describes in "Re: [PATCH v3
 * 0/3] A Solution to Re-enable hugetlb vmemmap optimize" (linux-mm,
 * February 2024).
 *
 * Walker side (gmm_pin): inside a walk section, translate, take a reference
 * on each 2 MiB block only if its count is not zero (add-unless-zero, like
 * folio_try_get_rcu), then translate again and back off if the answer
 * changed.  The walk section keeps the first translation's memory alive
 * until the references are taken; after that the references do.
 *
 * Writer side (gmm_pin_freeze, wlock held): before an unmap touches a leaf
 * it freezes every block of the range (count 1 -> 0).  A pin that comes
 * later fails its add-unless-zero; a pin that came earlier makes the freeze
 * fail, and the unmap waits for the count to fall back to 1 (futex, up to
 * the VM's pin timeout) or gives up with -EBUSY after thawing what it froze:
 * nothing has changed at that point.  gmm_unmap_ranges freezes the blocks
 * of a whole list of ranges, span by span, against ONE deadline (the pin
 * timeout counted once from its start: gmm_pin_freeze_until), so a list
 * waits at most one pin timeout however many of its ranges are pinned.
 *
 * Write pins and protect.  A block's word also counts its write pins
 * (bits 16..30) and has a "no new write pins" bit (31):
 *
 *   bits  0..15  1 + pins of any kind while mapped, 0 while frozen
 *   bits 16..30  write pins among them
 *   bit  31      set by gmm_protect(read-only) while it waits: a write pin
 *                fails (-EAGAIN), a read pin goes ahead
 *
 * so a write pin costs the same single RMW as a read pin.  gmm_protect
 * making a range read-only sets bit 31 on its blocks, waits (up to the pin
 * timeout) for their write pins to go, then clears the write bits of the
 * leaves and serialises; on timeout it clears bit 31 again and fails with
 * -EBUSY, nothing changed.  Read pins do not hold it up: read-only memory
 * may still be read.  A write pin that comes after the leaves became
 * read-only fails its re-translation (EACCES).  The counts are capped (a
 * pin beyond 65534 on one 2 MiB block, or 32767 write pins, gets -EAGAIN).
 *
 * Ordering: the freeze is a seq_cst CAS; the pin's increment an RMW on the
 * same word, so exactly one of them wins (likewise protect's fetch_or of
 * bit 31 and a write pin's CAS).  gmm_unpin's decrement is a release: the
 * I/O's accesses happen before the writer's acquire (the successful freeze
 * CAS, or protect's acquire load that sees the write count at 0) and
 * therefore before the memory is released or made read-only.
 */
#include "internal.h"

#define REF_COUNT 0xffffu               /* 1 + pins; 0 frozen */
#define REF_WRITE_ONE (1u << 16)
#define REF_WRITES (0x7fffu << 16)      /* write pins */
#define REF_NO_WRITE (1u << 31)         /* protect: no new write pin */

static inline uint32_t ref_unit(bool write)
{
	return write ? 1 + REF_WRITE_ONE : 1;
}

static bool ref_get_unless_zero(_Atomic uint32_t *ref, bool write)
{
	uint32_t v = atomic_load_explicit(ref, memory_order_relaxed);
	while (v) {
		if ((v & REF_COUNT) == REF_COUNT ||
		    (write && ((v & REF_NO_WRITE) || (v & REF_WRITES) == REF_WRITES)))
			return false;
		if (atomic_compare_exchange_weak_explicit(ref, &v, v + ref_unit(write),
							  memory_order_acquire, memory_order_relaxed))
			return true;
	}
	return false;
}

static void ref_put(struct gmm_vm *vm, _Atomic uint32_t *ref, bool write)
{
	atomic_fetch_sub_explicit(ref, ref_unit(write), memory_order_release);
	/* seq_cst: pairs with the writer setting pin_waiters before it
	 * re-reads the count in futex_wait (the futex compares the value,
	 * so a wake we skip is a wait that does not sleep). */
	if (atomic_load_explicit(&vm->pin_waiters, memory_order_seq_cst))
		gmm_futex_wake(ref);
}

static void put_blocks(struct gmm_vm *vm, struct gmm_region *r, uint32_t first, uint32_t n,
		       bool write)
{
	for (uint32_t i = 0; i < n; i++)
		ref_put(vm, &r->blocks[first + i].ref, write);
}

int gmm_pin(struct gmm_walker *w, uint64_t gpa, size_t len, unsigned access, struct gmm_pin *pin)
{
	struct gmm_vm *vm = w->vm;
	bool write = access & GMM_ACCESS_WRITE;
	int ret = 0;

	gmm_walk_begin(w);
	void *p = gmm_translate(w, gpa, len, access);
	if (!p) {
		ret = -errno;
		goto out;
	}
	struct gmm_region *r = gmm_region_lookup(vm, gpa);
	if (!r || gpa + len - r->gpa > r->size) {
		ret = r ? -ERANGE : -EFAULT;
		goto out;
	}
	uint32_t first = (uint32_t)((gpa - r->gpa) / GMM_2M);
	uint32_t last = (uint32_t)((gpa + len - 1 - r->gpa) / GMM_2M);
	for (uint32_t b = first; b <= last; b++) {
		if (!ref_get_unless_zero(&r->blocks[b].ref, write)) {
			/* Frozen: an unmap (or, for a write pin, a protect) is
			 * under way on this block. */
			put_blocks(vm, r, first, b - first, write);
			ret = -EAGAIN;
			goto out;
		}
	}
	/* Re-read: back off if the leaf changed (protect, or a remap). */
	if (gmm_translate(w, gpa, len, access) != p) {
		put_blocks(vm, r, first, last - first + 1, write);
		ret = -EAGAIN;
		goto out;
	}
	pin->hva = p;
	pin->gpa = gpa;
	pin->len = len;
	pin->region = r;
	pin->first_block = first;
	pin->nblocks = last - first + 1;
	pin->write = write;
	atomic_fetch_add_explicit(&vm->st_pins_active, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&vm->st_pins_total, 1, memory_order_relaxed);
out:
	gmm_walk_end(w);
	return ret;
}

void gmm_unpin(struct gmm_vm *vm, struct gmm_pin *pin)
{
	if (!pin->region)
		return;
	if (pin->write) {
		/* The I/O's stores are done: mark again (a pin taken before
		 * logging began is caught here; dirty.c, "Pins"), while the
		 * pin still keeps the region alive. */
		atomic_thread_fence(memory_order_seq_cst);
		if (GMM_READ_ONCE(vm->dirty_on))
			gmm__dirty_mark_region(pin->region, pin->gpa, pin->len);
	}
	put_blocks(vm, pin->region, pin->first_block, pin->nblocks, pin->write);
	pin->region = NULL;
	pin->hva = NULL;
	atomic_fetch_sub_explicit(&vm->st_pins_active, 1, memory_order_relaxed);
}

void gmm_pin_thaw(struct gmm_region *r, uint32_t first, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		atomic_store_explicit(&r->blocks[first + i].ref, 1, memory_order_release);
}

/*
 * The writer's wait for pins to go (wlock held): sleep while *ref still
 * reads seen, at most 10 ms at a time (gmm_unpin wakes us when it sees
 * pin_waiters; the futex compares the value, so a wake-up we miss is a
 * sleep that does not happen), until the deadline.  false once the
 * deadline has passed: the caller gives up with -EBUSY.
 */
static bool pin_wait(struct gmm_vm *vm, _Atomic uint32_t *ref, uint32_t seen, uint64_t deadline,
		     bool *waited)
{
	uint64_t now = gmm_now_ns();
	if (now >= deadline)
		return false;
	*waited = true;
	atomic_store_explicit(&vm->pin_waiters, 1, memory_order_seq_cst);
	uint64_t left = deadline - now;
	gmm_futex_wait(ref, seen, (long)(left < 10000000ULL ? left : 10000000ULL));
	return true;
}

/* After the last pin_wait of an operation. */
static void pin_wait_done(struct gmm_vm *vm, bool waited)
{
	if (waited) {
		GMM_WRITE_ONCE(vm->pin_waiters, 0);
		atomic_fetch_add_explicit(&vm->st_pin_waits, 1, memory_order_relaxed);
	}
}

uint64_t gmm_pin_deadline(struct gmm_vm *vm)
{
	return gmm_now_ns() + (uint64_t)vm->cfg.pin_timeout_ms * 1000000ULL;
}

void gmm_pin_wait_done(struct gmm_vm *vm, bool waited)
{
	pin_wait_done(vm, waited);
}

/*
 * Freeze blocks [first, first + n) of r, waiting for pins until `deadline`
 * (a shared one: gmm_unmap_ranges freezes many spans against one pin
 * timeout).  On -EBUSY this call's blocks are thawed again (spans frozen
 * by earlier calls are the caller's to thaw) and pin_busy counts one.
 * *waited is set if it slept; the caller ends with gmm_pin_wait_done().
 */
int gmm_pin_freeze_until(struct gmm_vm *vm, struct gmm_region *r, uint32_t first, uint32_t n,
			 bool nowait, uint64_t deadline, bool *waited)
{
	for (uint32_t i = 0; i < n; i++) {
		_Atomic uint32_t *ref = &r->blocks[first + i].ref;
		for (;;) {
			uint32_t one = 1;
			if (atomic_compare_exchange_strong_explicit(ref, &one, 0, memory_order_seq_cst,
								    memory_order_seq_cst))
				break;
			if (nowait || !pin_wait(vm, ref, one, deadline, waited)) {
				gmm_pin_thaw(r, first, i);
				atomic_fetch_add_explicit(&vm->st_pin_busy, 1, memory_order_relaxed);
				return gmm_seterr(EBUSY,
						  "unmap: guest block at 0x%llx is pinned by %u I/O reference(s)%s",
						  (unsigned long long)(r->gpa + (uint64_t)(first + i) * GMM_2M),
						  (one & REF_COUNT) - 1, nowait ? "" : " past the pin timeout");
			}
		}
	}
	return 0;
}

int gmm_pin_freeze(struct gmm_vm *vm, struct gmm_region *r, uint32_t first, uint32_t n,
		   bool nowait)
{
	bool waited = false;
	int ret = gmm_pin_freeze_until(vm, r, first, n, nowait, gmm_pin_deadline(vm), &waited);
	pin_wait_done(vm, waited);
	return ret;
}

void gmm_pin_write_thaw(struct gmm_region *r, uint32_t first, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		atomic_fetch_and_explicit(&r->blocks[first + i].ref, ~REF_NO_WRITE,
					  memory_order_release);
}

int gmm_pin_write_freeze(struct gmm_vm *vm, struct gmm_region *r, uint32_t first, uint32_t n)
{
	uint64_t deadline = gmm_now_ns() + (uint64_t)vm->cfg.pin_timeout_ms * 1000000ULL;
	bool waited = false;
	int ret = 0;

	/* seq_cst RMW: against a write pin's CAS on the same word, one wins. */
	for (uint32_t i = 0; i < n; i++)
		atomic_fetch_or_explicit(&r->blocks[first + i].ref, REF_NO_WRITE, memory_order_seq_cst);
	for (uint32_t i = 0; i < n; i++) {
		_Atomic uint32_t *ref = &r->blocks[first + i].ref;
		for (;;) {
			/* Acquire: pairs with gmm_unpin's release decrement. */
			uint32_t v = atomic_load_explicit(ref, memory_order_acquire);
			if (!(v & REF_WRITES))
				break;
			if (!pin_wait(vm, ref, v, deadline, &waited)) {
				gmm_pin_write_thaw(r, first, n);
				atomic_fetch_add_explicit(&vm->st_pin_busy, 1, memory_order_relaxed);
				ret = gmm_seterr(EBUSY,
						 "protect: guest block at 0x%llx is pinned for writing by %u I/O reference(s) past the pin timeout",
						 (unsigned long long)(r->gpa + (uint64_t)(first + i) * GMM_2M),
						 (v & REF_WRITES) >> 16);
				break;
			}
		}
		if (ret)
			break;
	}
	pin_wait_done(vm, waited);
	return ret;
}
