/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dirty.h - which 4 KiB pages of guest RAM the VMM's own threads wrote
 * (issue 17, live migration).
 *
 * KVM's dirty log sees what vCPUs write; it does not see a device thread
 * copying a disk read into a guest buffer, a used ring, a net frame.  In
 * guestmm every such write is a write translation inside a walk
 * (gmm_translate / gmm_translate_span / gmm_write with GMM_ACCESS_WRITE) or
 * a write pin, so guestmm marks the pages there:
 *
 *   off  one predictable branch on the walker's fast path (a load of a word
 *        the writer changes twice per migration, tested with the access);
 *   on   the translation ORs the range's bits into the region's bitmap
 *        (one bit per 4 KiB page, whatever the leaf size: THP and hugetlb
 *        are logged at 4 KiB) before the walk ends; a write pin is marked
 *        at gmm_pin and again at gmm_unpin, so a pin taken before logging
 *        began, whose I/O lands after the first copy, is still caught.
 *
 * Writer operations that change what a page holds mark it too while
 * logging is on: gmm_unmap (and region removal), gmm_discard, gmm_map --
 * the next harvest reports the range, the caller finds it unmapped or
 * zero and sends the hole, never the stale bytes.  A region added while
 * logging is on starts all dirty.
 *
 * gmm_dirty_harvest takes a region's words with atomic exchanges and then
 * waits for every walk in flight to end (the VM's tracker, as an unmap
 * does): when it returns, every write behind a bit it reported has
 * landed, and a write that lands later sets its bit again (dirty.c holds
 * the ordering argument).  Copy the pages after the harvest, not before.
 *
 * Locking: start/stop/harvest are writer-side (they take the VM's writer
 * mutex); the marks are walker-side (no lock, no sleep, no allocation).
 */
#ifndef GUESTMM_DIRTY_H
#define GUESTMM_DIRTY_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct gmm_vm;

/* Start logging: every region gets a clean bitmap (allocated the first
 * time; 32 KiB per GiB), the walkers' flag goes on, and every walk in
 * flight is waited for, so a write through a pointer translated before
 * the flag was seen has landed when this returns (the caller's first full
 * copy comes after it).  0, or -ENOMEM (logging stays off).  Starting
 * twice is -EBUSY. */
int gmm_dirty_start(struct gmm_vm *vm);
/* Stop logging (the bitmaps stay allocated until their region goes). */
void gmm_dirty_stop(struct gmm_vm *vm);
bool gmm_dirty_active(struct gmm_vm *vm);

/* Harvest the region that starts at region_gpa: OR its marks into bits
 * (bit i of word i / 64 = page region_gpa + i * 4 KiB; nbits must be the
 * region's size / 4 KiB) and clear them, then wait for the walks in flight
 * (see above).  0; -ENOENT (no region starts there: removed); -EINVAL
 * (nbits); -EPERM (logging is off). */
int gmm_dirty_harvest(struct gmm_vm *vm, uint64_t region_gpa, uint64_t *bits, uint64_t nbits);

/* Test only: walkers and pins stop marking (writer operations still do),
 * so a test can show that it sees what the walker marks catch. */
void gmm_dirty_test_skip_walkers(struct gmm_vm *vm, bool skip);

#ifdef __cplusplus
}
#endif

#endif
