/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tracker.h - the in-flight walker tracker, as seen from outside.
 *
 * Walkers translate guest addresses inside walk sections (walk.h).  A writer
 * that has cleared leaves must know that no walker still holds a pointer it
 * obtained before the clear; only then may it release the memory (or free a
 * table page).  How the writer learns that is the VM's strategy:
 *
 *   kick        per unmapped 2 MiB block, signal every registered walker
 *               thread and wait for each to acknowledge; a thread inside a
 *               walk acknowledges when the walk ends (a vCPU in KVM_RUN
 *               leaves guest mode).  The user-space serialize_against_pte_lookup().
 *   count       one shared atomic count of walks in flight; per block, skip
 *               the kick when it reads zero (the 2019 count-based proposal's method).
 *   perthread   a sequence counter per walker on its own cache line, odd
 *               inside a walk; once per unmapped range the writer waits only
 *               for walkers that were inside a walk.  No signals.
 *   membarrier  as perthread, but the walker writes its counter with plain
 *               stores and the writer orders them with
 *               membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), once per range.
 *   rcu         liburcu's memb flavour: rcu_read_lock/unlock around walks,
 *               synchronize_rcu once per range (a process-wide grace period).
 *
 * The memory-ordering argument for each lives in src/tracker.c beside the
 * barriers.
 */
#ifndef GUESTMM_TRACKER_H
#define GUESTMM_TRACKER_H

#ifdef __cplusplus
extern "C" {
#endif

struct gmm_vm;

/* Writer-side (takes the writer mutex): return once every walk section that
 * was open when the call started has ended, by the VM's strategy.  Also
 * frees table pages unlinked before the call.  For callers that retire their
 * own structures that walkers may read.  In a forked child it does nothing
 * (gmm_last_error() says why: guestmm.h, "Processes"). */
void gmm_synchronize(struct gmm_vm *vm);


#ifdef __cplusplus
}
#endif

#endif
