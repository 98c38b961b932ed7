/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pin.h - references on guest memory for accesses that outlive a walk.
 *
 * An I/O request keeps its buffers for milliseconds; holding a walk section
 * that long would stall every unmap.  A pin instead takes a reference on
 * each 2 MiB block under the range, the way a speculative page-cache lookup
 * does (folio_try_get_rcu; Matthew Wilcox, "Re: [PATCH v3 0/3] A Solution
 * to Re-enable hugetlb vmemmap optimize", linux-mm, February 2024):
 *
 *   inside a walk: read the leaf -> take a reference only if the block's
 *   count is not zero -> re-read the leaf and back off if it changed.
 *
 * A block's count is 1 while it is mapped, 1 + pins while pinned, and 0
 * while an unmap has it frozen.  Unmap freezes a block (1 -> 0) before it
 * touches the leaves, so a pin either sees the frozen block and fails, or
 * holds a reference the unmap must wait for (up to the VM's pin timeout)
 * or refuse with -EBUSY, changing nothing.  Write pins are also counted
 * apart: gmm_protect(read-only) waits for (or refuses, -EBUSY) the write
 * pins in its range, not the read pins.
 */
#ifndef GUESTMM_PIN_H
#define GUESTMM_PIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct gmm_walker;
struct gmm_vm;
struct gmm_region;

struct gmm_pin {
	void *hva;                 /* host pointer to gpa, valid until unpin */
	uint64_t gpa;
	size_t len;
	struct gmm_region *region; /* private */
	uint32_t first_block;      /* private */
	uint32_t nblocks;          /* private */
	uint32_t write;            /* private: a write pin */
};

/* Pin [gpa, gpa + len) (host-contiguous, within one region).  Walker-side:
 * never blocks, opens its own walk section.  0, or -EFAULT (unmapped),
 * -EACCES (write to read-only), -ERANGE (not host-contiguous), -EAGAIN
 * (an unmap, or for a write pin a read-only protect, is in progress on
 * the range, or a block has 65534 pins already: the caller fails the I/O
 * or retries later). */
int gmm_pin(struct gmm_walker *w, uint64_t gpa, size_t len, unsigned access,
	    struct gmm_pin *pin);

/* Drop a pin; any thread.  Wakes an unmap that waits for it. */
void gmm_unpin(struct gmm_vm *vm, struct gmm_pin *pin);

#ifdef __cplusplus
}
#endif

#endif
