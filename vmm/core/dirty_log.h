/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dirty_log.h - which guest pages the vCPUs wrote, from KVM's dirty log
 * (issue 17, live migration: the pre-copy rounds send what was written
 * since the last round).  KVM_MEM_LOG_DIRTY_PAGES on every memslot of
 * vm->slots, harvested with KVM_GET_DIRTY_LOG (dirty_log.c: which flavour
 * and why, the ordering it gives).
 *
 * Only writes made through KVM are logged: a vCPU's, and KVM's own into
 * guest memory (kvmclock, steal time, an emulated instruction's).  Writes
 * the VMM makes through the host mapping (virtio devices, guestmm's
 * loaders and discards) are not: the migration tracks those itself.
 *
 * Threads: start, harvest and stop from one migration thread (any thread
 * under main's seccomp filter: the ioctls are in main's list), while
 * vm_set_memslot may run on the main and the virtio-mem thread; see each
 * function for what it locks.
 */
#ifndef VMM_DIRTY_LOG_H
#define VMM_DIRTY_LOG_H

#include "core/vm_types.h"

#include <stdbool.h>
#include <stdint.h>

/* Start logging the vCPUs' writes: KVM_MEM_LOG_DIRTY_PAGES on every
 * memslot the VM has, and on every memslot created later (virtio-mem's
 * chunks: vm_set_memslot is called from the "_mem" device thread) until
 * vm_dirty_log_stop.  The logs start clean.  0 or -errno (then logging is
 * off, every flag as before); -EBUSY if logging is on already. */
int vm_dirty_log_start(struct vm *vm);

/* For every memslot (logging on), in slot order: KVM_GET_DIRTY_LOG (the
 * classic fetch-and-reprotect), then fn(arg, slot_gpa, bits, npages): bit
 * i of bits (64-bit words, bit i in word i / 64 at position i % 64, as KVM
 * gives them) = the 4 KiB page slot_gpa + i * 4096 was written through KVM
 * since the previous harvest (since vm_dirty_log_start, or since the slot
 * was created while logging).  fn is called for every slot, with no bit
 * set too; bits is valid only during the call; fn runs without any of the
 * VM's locks held and must not call these functions.
 *
 * Returns 0, -EINVAL if logging is off, -ENOMEM, or KVM's -errno (fn was
 * then called for the slots before).
 *
 * Ordering: every write by a vCPU that completed before the call started
 * is in bits passed to fn by this call or by a later harvest -- or its
 * slot was deleted since.  A write during the call lands in this harvest
 * or the next.  Read a page's contents after fn reported it: a write
 * after that read is reported again by a later harvest. */
int vm_dirty_log_harvest(struct vm *vm,
			 void (*fn)(void *arg, uint64_t gpa, const uint64_t *bits, uint64_t npages),
			 void *arg);

/* Clear KVM_MEM_LOG_DIRTY_PAGES again on every slot (KVM may go back to
 * huge mappings) and free the harvest's buffer.  Nothing if logging is
 * off.  A slot KVM refused to change is logged and keeps logging (KVM's
 * cost, not a correctness problem); the VM's logging is off regardless. */
void vm_dirty_log_stop(struct vm *vm);

/* Whether this host can log: a throw-away VM with a one-page slot with
 * KVM_MEM_LOG_DIRTY_PAGES answers KVM_GET_DIRTY_LOG (there is no
 * capability for the basic dirty log; this KVM's VM must not use the dirty
 * ring, which replaces it).  Any thread under main's filter. */
bool vm_dirty_log_supported(struct vm *vm);

#endif
