/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * walk.h - lockless walks of the GPA -> HVA table by vCPU and device threads.
 *
 *   struct gmm_walker *w = gmm_walker_register(vm);   // once per thread
 *   gmm_walk_begin(w);
 *   uint8_t *p = gmm_translate(w, gpa, len, GMM_ACCESS_WRITE);
 *   if (p) memcpy(p, data, len);                       // p valid until walk_end
 *   gmm_walk_end(w);
 *   ...
 *   gmm_walker_unregister(w);                          // before the thread exits
 *
 * A pointer from gmm_translate() stays valid until the matching
 * gmm_walk_end(): a writer that unmaps the range waits for the walk to end
 * before it releases the memory.  Keep walks short (a descriptor, an MMIO
 * access); use a pin (pin.h) for anything that waits for I/O.  Walks nest.
 *
 * A walker belongs to one thread: only that thread may begin/end/translate
 * with it.  Walks never take a lock, never sleep and never allocate.
 */
#ifndef GUESTMM_WALK_H
#define GUESTMM_WALK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct gmm_vm;

/*
 * The accesses that are meant to be plain: relaxed atomic loads and stores
 * of words another thread also reads or writes, where the ordering comes
 * from elsewhere (a fence, a membarrier, a release/acquire pair named in
 * the comment beside it) or is not needed (a counter that is reported).
 * They compile to single MOVs, like Linux's READ_ONCE/WRITE_ONCE, and keep
 * the accesses that do order something -- written out with their
 * memory_order -- standing out in the code.
 */
#define GMM_READ_ONCE(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define GMM_WRITE_ONCE(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

enum {
	GMM_ACCESS_READ = 0,
	GMM_ACCESS_WRITE = 1u << 0,
};

/*
 * The walker's state.  Fields are private to guestmm; they are here only so
 * that begin/end can be inline.  The first cache line is written by the
 * owning thread and read by writers; the second is written by writers
 * (kick requests) and read by the owner.
 */
struct gmm_walker {
	_Alignas(64) _Atomic uint64_t seq;  /* perthread/membarrier: odd = in a walk */
	_Atomic uint64_t ntrans;            /* translations; owner writes, writer reads */
	_Atomic uint64_t nfaults;
	_Atomic uint32_t writer_waiting;    /* perthread/membarrier: wake the writer at end */
	/* membarrier: [hz_lo, hz_hi) covers every GPA translated in the current
	 * walk (empty between walks: reset at the end of each); a writer skips
	 * walkers outside its range. */
	_Atomic uint64_t hz_lo, hz_hi;
	_Atomic int in_walk;                /* kick/count: seen by our signal handler */
	_Atomic int kick_pending;           /* kick arrived during a walk: ack at end */
	uint32_t depth;                     /* nesting; owner only */
	uint32_t strategy;
	_Atomic uint64_t *inflight;         /* count: the VM's shared counter */
	struct gmm_vm *vm;

	_Alignas(64) _Atomic uint32_t kick_req;  /* writer: "acknowledge up to here" */
	_Atomic uint32_t kick_ack;          /* owner: last request acknowledged (only grows) */
	_Atomic uint64_t nkicks;            /* kicks received */
	_Atomic int leaving;                /* owner: in gmm_walker_unregister, holds no pointer */
	_Atomic int parked;                 /* owner: in a writer operation of this VM, no walk */
	_Atomic int dead;                   /* writer: the thread is gone (ESRCH), not waited for */
	_Atomic int orphan;                 /* the VM was destroyed with this walker registered */
	pthread_t thread;
	pid_t tid;
	struct gmm_walker *next;            /* VM's list (walkers lock); then its retired list */
	struct gmm_walker *tls_next;        /* this thread's walkers */
	/* The kick round this walker is in (tracker.c kick_all): written by
	 * the writer under the walkers lock, read by it during the round. */
	struct gmm_walker *round_next;
	uint32_t round_req;
};

/* Register the calling thread as a walker of vm (walker lock; may sleep).
 * Fails with ECHILD in a child process after fork(): a VM belongs to the
 * process that created it (its walker threads do not exist in a child).
 * For the rcu strategy this also registers the thread with liburcu.  For
 * the strategies that may signal walkers (kick, count, and membarrier,
 * which falls back to kicks if membarrier() fails at run time) the VM's
 * kick signal is unblocked in the calling thread (and stays so): a walker
 * must be able to take kicks whatever its inherited mask.  perthread and
 * rcu leave the mask alone.
 * NULL with errno (ENOMEM) on failure. */
struct gmm_walker *gmm_walker_register(struct gmm_vm *vm);
/* Unregister; must be called by the owning thread, outside any walk.  A
 * thread that exits while registered is unregistered by a thread-exit
 * destructor (a walk it left open is ended first: it holds no pointer any
 * more).  In a child process after fork() this only forgets w in the
 * calling thread: the VM belongs to the parent (gmm_vm_check_owner). */
void gmm_walker_unregister(struct gmm_walker *w);

/* Out-of-line parts of begin/end (do not call directly). */
void gmm__kick_ack(struct gmm_walker *w);
void gmm__wake_writer(struct gmm_walker *w);
void gmm__rcu_begin(void);
void gmm__rcu_end(void);

/* Strategy numbers as in enum gmm_strategy (guestmm.h). */
#define GMM__KICK 0
#define GMM__COUNT 1
#define GMM__PERTHREAD 2
#define GMM__MEMBARRIER 3
#define GMM__RCU 4

/*
 * Open a walk section.  Never blocks.  Ordering contract: every table load
 * made by gmm_translate() after this returns is ordered after the walker
 * became visible as "in flight" to writers (see src/tracker.c for why each
 * strategy's barrier is enough).
 */
static inline void gmm_walk_begin(struct gmm_walker *w)
{
	if (w->depth++)
		return;
	switch (w->strategy) {
	case GMM__COUNT:
		/* Full barrier (locked RMW), pairs with the writer's seq_cst
		 * clear-then-read of the count. */
		atomic_fetch_add_explicit(w->inflight, 1, memory_order_seq_cst);
		/* fall through */
	case GMM__KICK:
		/* Only our own signal handler reads in_walk: a compiler
		 * barrier orders it against the walk. */
		GMM_WRITE_ONCE(w->in_walk, 1);
		atomic_signal_fence(memory_order_seq_cst);
		break;
	case GMM__PERTHREAD:
		/* seq becomes odd.  A locked RMW on our own cache line: a
		 * full barrier pairing with the writer's clear-then-read. */
		atomic_fetch_add_explicit(&w->seq, 1, memory_order_seq_cst);
		break;
	case GMM__MEMBARRIER:
		/* A plain MOV on x86 (release: the previous walk's accesses
		 * happen before it, for a writer that reads it); no fence:
		 * the writer's membarrier() supplies it on this CPU.  The
		 * compiler must not sink it below the table loads.  The
		 * hazard range is empty (reset by the last walk_end). */
		atomic_store_explicit(&w->seq,
			GMM_READ_ONCE(w->seq) + 1,
			memory_order_release);
		atomic_signal_fence(memory_order_seq_cst);
		break;
	default:
		gmm__rcu_begin();
		break;
	}
}

/*
 * Close a walk section.  Every pointer obtained inside it is dead after
 * this returns.  Release ordering: all accesses through those pointers
 * happen before a writer sees the walk as ended.
 */
static inline void gmm_walk_end(struct gmm_walker *w)
{
	if (--w->depth)
		return;
	switch (w->strategy) {
	case GMM__COUNT:
		atomic_fetch_sub_explicit(w->inflight, 1, memory_order_release);
		/* fall through */
	case GMM__KICK:
		atomic_signal_fence(memory_order_seq_cst);
		GMM_WRITE_ONCE(w->in_walk, 0);
		atomic_signal_fence(memory_order_seq_cst);
		/* A kick that arrived inside the walk is acknowledged now. */
		if (GMM_READ_ONCE(w->kick_pending))
			gmm__kick_ack(w);
		break;
	case GMM__MEMBARRIER:
		/* seq becomes even (release, as perthread), then the hazard
		 * range is emptied after the walk (release: a writer
		 * that reads the reset, or any later value, is ordered after
		 * this walk's accesses; tracker.c "Ordering: hazard ranges").
		 * Plain MOVs on x86. */
		atomic_store_explicit(&w->seq,
			GMM_READ_ONCE(w->seq) + 1,
			memory_order_release);
		atomic_store_explicit(&w->hz_lo, UINT64_MAX, memory_order_release);
		atomic_store_explicit(&w->hz_hi, 0, memory_order_release);
		if (GMM_READ_ONCE(w->writer_waiting))
			gmm__wake_writer(w);
		break;
	case GMM__PERTHREAD:
		/* seq becomes even; release pairs with the writer's acquire. */
		atomic_store_explicit(&w->seq,
			GMM_READ_ONCE(w->seq) + 1,
			memory_order_release);
		/* A writer asleep on this walk: wake it (same cache line, so
		 * this load costs nothing when nobody waits). */
		if (GMM_READ_ONCE(w->writer_waiting))
			gmm__wake_writer(w);
		break;
	default:
		gmm__rcu_end();
		break;
	}
}

/*
 * Translate [gpa, gpa + len) to a host pointer, inside a walk section.  The
 * whole range must be mapped, host-contiguous and (for GMM_ACCESS_WRITE)
 * writable.  NULL with errno: EFAULT (unmapped, or beyond the table),
 * EACCES (read-only), ERANGE (mapped but not host-contiguous: use
 * gmm_translate_span or the copy helpers), EINVAL (outside a walk, len 0).
 */
void *gmm_translate(struct gmm_walker *w, uint64_t gpa, size_t len, unsigned access);

/* As gmm_translate, but translate the longest host-contiguous prefix (at
 * most len) and store its length in *span. */
void *gmm_translate_span(struct gmm_walker *w, uint64_t gpa, size_t len,
			 unsigned access, size_t *span);

/*
 * Copy between guest memory and a buffer, across leaf and region
 * boundaries, in a walk section of their own (they may be called inside
 * one).  0, or -EFAULT (part of the range unmapped or beyond the table),
 * -EACCES (gmm_write to a read-only part).
 *
 * A failure copies nothing: the whole range is translated before the first
 * byte is copied, and the pointers translated are the ones copied through
 * (valid until the outermost walk ends, whatever a writer does meanwhile).
 * One exception, which needs a writer racing with the call: a range made
 * of more than 64 host-contiguous pieces -- a piece ends only at a region
 * boundary, so only a range crossing more than 64 regions, which exist at
 * once only if regions are removed and added while it is copied -- is
 * checked whole, then copied 64 pieces at a time with fresh translations;
 * an unmap or protect of part of it between the check and the copy fails
 * the call part-way, the pieces before the failing one copied.
 *
 * A concurrent writer never makes a copy touch released memory.  What it
 * can do to a copy that succeeds: a gmm_write racing with an unmap of its
 * range lands in memory released right after the walk ends (as if the
 * write came just before the unmap); a gmm_read racing with gmm_discard
 * (which does not serialise) may read old bytes, zeros, or a mix; neither
 * helper is atomic against other threads' accesses to the same bytes.
 */
int gmm_read(struct gmm_walker *w, uint64_t gpa, void *dst, size_t len);
int gmm_write(struct gmm_walker *w, uint64_t gpa, const void *src, size_t len);

#ifdef __cplusplus
}
#endif

#endif
