// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * walk.c - walker registration, translation and the copy helpers.
 *
 * Everything here except register/unregister is walker-side: no lock, no
 * sleep, no allocation.  Table entries are loaded with seq_cst loads: on
 * x86 that is a plain MOV, the same as acquire, and it puts the loads in
 * the total order that the count/perthread argument in tracker.c needs
 * (W2 there).  Acquire alone would be enough for the publish side: a
 * table page linked with a release store is seen filled.
 *
 * A walker that reads a poisoned entry (from a table page freed while it
 * still looked at it: a tracker bug, or the test-only flag that turns the
 * tracker off) counts a late read and fails the translation instead of
 * following garbage.
 */
#include "internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

extern __thread struct gmm_walker *gmm_tls_walkers __attribute__((tls_model("initial-exec")));

/* Threads registered with liburcu through us (a thread may walk several VMs). */
static __thread unsigned rcu_registrations;


/* ---- registration ---------------------------------------------------- */

/*
 * Thread exit while registered.  A walker thread that returns or calls
 * pthread_exit without gmm_walker_unregister used to stay registered: kick
 * rounds waited forever for a thread that no longer exists, and a thread
 * that died inside a walk held every perthread/membarrier writer forever.
 * A pthread key's destructor (run at thread exit, while the thread's TLS
 * is still there) now ends a walk left open -- the thread holds no pointer
 * any more: it is about to stop existing, and its last accesses are
 * ordered before gmm_walk_end's release as in any walk -- and unregisters
 * every walker still on the thread's list.  The key's value is only a
 * "this thread registered" mark.  Threads that vanish without running
 * destructors are handled writer-side (tracker.c, "dead walker threads").
 */
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static int exit_key_err;

static void walker_thread_exit(void *mark)
{
	(void)mark;
	struct gmm_walker *w;
	while ((w = gmm_tls_walkers) != NULL) {
		if (w->depth && !atomic_load_explicit(&w->orphan, memory_order_acquire)) {
			gmm_log(GMM_LOG_WARN, "walker thread %d exits inside a walk: walk ended",
				(int)w->tid);
			w->depth = 1;
			gmm_walk_end(w);
		} else if (w->depth && w->strategy == GMM_STRATEGY_RCU) {
			gmm__rcu_end();  /* orphan: the VM is gone, liburcu is not */
		}
		w->depth = 0;
		gmm_walker_unregister(w);
	}
}

static void make_exit_key(void)
{
	exit_key_err = pthread_key_create(&exit_key, walker_thread_exit);
}

/* Add w to / remove it from the thread's list, which our kick handler
 * walks.  Every signal is blocked meanwhile: VMs may use different kick
 * signals, and each handler walks the same list.  Returns with *old the
 * mask to restore. */
static void tls_block(sigset_t *old)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, old);
}

static void tls_remove(struct gmm_walker *w)
{
	sigset_t old;
	tls_block(&old);
	for (struct gmm_walker **pp = &gmm_tls_walkers; *pp; pp = &(*pp)->tls_next) {
		if (*pp == w) {
			*pp = w->tls_next;
			break;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

struct gmm_walker *gmm_walker_register(struct gmm_vm *vm)
{
	if (gmm_vm_check_owner(vm) < 0)
		return NULL;  /* errno ECHILD */
	pthread_once(&exit_key_once, make_exit_key);
	if (exit_key_err || pthread_setspecific(exit_key, (void *)1)) {
		gmm_seterr(ENOMEM, "cannot set up the walker's thread-exit hook");
		return NULL;
	}
	struct gmm_walker *w = aligned_alloc(64, (sizeof(*w) + 63) & ~(size_t)63);
	if (!w) {
		gmm_seterr(ENOMEM, "out of memory");
		return NULL;
	}
	memset(w, 0, sizeof(*w));
	w->vm = vm;
	w->strategy = vm->cfg.strategy;
	w->inflight = &vm->inflight;
	w->thread = pthread_self();
	w->tid = gettid();
	/* membarrier: the hazard range starts empty (walk.h). */
	GMM_WRITE_ONCE(w->hz_lo, UINT64_MAX);
	GMM_WRITE_ONCE(w->hz_hi, 0);
	if (w->strategy == GMM_STRATEGY_RCU && rcu_registrations++ == 0)
		urcu_memb_register_thread();

	sigset_t old;
	tls_block(&old);
	w->tls_next = gmm_tls_walkers;
	gmm_tls_walkers = w;
	/* The kick signal must reach a registered walker of a VM that may
	 * kick (kick, count, membarrier's fallback: gmm_strategy_kicks; the
	 * VM installed the handler), whatever mask the thread inherited (a
	 * VMM's threads often start with every signal blocked for a
	 * signalfd): a blocked kick would stall every kick round forever.  It
	 * stays unblocked after unregister; the handler ignores a thread with
	 * no walkers.  perthread and rcu are never kicked: the mask is left
	 * as it was. */
	if (gmm_strategy_kicks(w->strategy))
		sigdelset(&old, vm->cfg.kick_signal);
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	pthread_mutex_lock(&vm->walkers_lock);
	w->next = vm->walkers;
	vm->walkers = w;
	vm->nwalkers++;
	pthread_mutex_unlock(&vm->walkers_lock);
	return w;
}

/*
 * Unregister; the owning thread, outside any walk of w's VM.  May sleep
 * (walkers lock).
 *
 * A writer's kick round may be waiting for this walker.  We must not need
 * our signal handler to let it go on: under ThreadSanitizer (or any runtime
 * that defers asynchronous signals in an intercepted blocking call) the
 * handler does not run while we block on walkers_lock.  So departure is
 * announced lock-free first: `leaving` (seq_cst, so it is also a release
 * of our last walk's accesses), then every request published so far is
 * acknowledged (outside a walk an acknowledgement is always true).  A
 * writer waiting for us stops at either (tracker.c, kick_all, for the
 * argument).  Then we leave the thread's list (so our handler forgets us)
 * and, under the lock, the VM's; if a kick round is in progress its
 * snapshot may still point at us: we go on the VM's retired list and the
 * round frees us when it ends, otherwise we are freed here.
 *
 * Two cases touch no VM state: an orphan (its VM was destroyed first:
 * gmm_tracker_fini marked it) is freed; in a forked child the VM is the
 * parent's (its locks may be held by threads that do not exist here), so w
 * is only dropped from the thread's list and left as it is.
 */
void gmm_walker_unregister(struct gmm_walker *w)
{
	if (!w)
		return;
	unsigned strategy = w->strategy;
	if (atomic_load_explicit(&w->orphan, memory_order_acquire)) {
		tls_remove(w);
		if (strategy == GMM_STRATEGY_RCU && --rcu_registrations == 0)
			urcu_memb_unregister_thread();
		free(w);
		return;
	}
	struct gmm_vm *vm = w->vm;
	if (gmm_vm_check_owner(vm) < 0) {
		tls_remove(w);
		return;
	}

	atomic_store_explicit(&w->leaving, 1, memory_order_seq_cst);
	gmm__kick_ack(w);

	tls_remove(w);
	if (strategy == GMM_STRATEGY_RCU && --rcu_registrations == 0)
		urcu_memb_unregister_thread();

	pthread_mutex_lock(&vm->walkers_lock);
	for (struct gmm_walker **pp = &vm->walkers; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			vm->nwalkers--;
			break;
		}
	}
	vm->folded_trans += GMM_READ_ONCE(w->ntrans);
	vm->folded_faults += GMM_READ_ONCE(w->nfaults);
	bool retire = vm->kick_round;
	if (retire) {
		w->next = vm->kick_retired;
		vm->kick_retired = w;
	}
	pthread_mutex_unlock(&vm->walkers_lock);
	/* Retired: the round frees w; do not touch it any more. */
	if (!retire)
		free(w);
}

/* ---- translation ------------------------------------------------------ */

enum stop { STOP_DONE, STOP_FAULT, STOP_ACCES, STOP_DISCONTIG };

static inline void count(_Atomic uint64_t *c)
{
	/* Single writer (the owner): load + store, no locked RMW. */
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/*
 * membarrier: widen this walk's hazard range to [gpa, gpa + len) before any
 * table load for it.  No fence: the writer's membarrier() orders these
 * stores before the walker's later loads (tracker.c, "Ordering: hazard
 * ranges").  Release stores (plain MOVs on x86): a writer that reads one of
 * them while looking at an earlier walk of ours is ordered after that
 * walk's accesses.  The range only grows within a walk, so a writer that
 * reads any value of it from this walk sees every GPA translated before
 * the barrier.
 */
static inline void hazard(struct gmm_walker *w, uint64_t gpa, uint64_t len)
{
	if (w->strategy != GMM__MEMBARRIER)
		return;
	if (gpa < GMM_READ_ONCE(w->hz_lo))
		atomic_store_explicit(&w->hz_lo, gpa, memory_order_release);
	if (gpa + len > GMM_READ_ONCE(w->hz_hi))
		atomic_store_explicit(&w->hz_hi, gpa + len, memory_order_release);
	atomic_signal_fence(memory_order_seq_cst);
}

/* Longest host-contiguous, accessible prefix of [gpa, gpa + len). */
static inline uint8_t *walk_range(struct gmm_walker *w, uint64_t gpa, size_t len,
				  unsigned access, size_t *span, enum stop *why)
{
	uint8_t *start = NULL;
	size_t got = 0;

	*why = STOP_DONE;
	if (unlikely(gpa >= GMM_GPA_LIMIT || len > GMM_GPA_LIMIT - gpa)) {
		*why = STOP_FAULT;
		goto out;
	}
	hazard(w, gpa, len);
	while (got < len) {
		uint64_t a = gpa + got;
		struct gmm_ptp *pg = w->vm->root;
		uint64_t e;
		int lvl = GMM_LEVELS - 1;
		for (;;) {
			e = atomic_load_explicit(&pg->e[gmm_idx(a, lvl)], memory_order_seq_cst);
			if (unlikely(e & GMM_PTE_POISON)) {
				atomic_fetch_add_explicit(&w->vm->st_late_reads, 1, memory_order_relaxed);
				*why = STOP_FAULT;
				goto out;
			}
			if (!(e & GMM_PTE_TABLE) || lvl == 0)
				break;
			pg = (struct gmm_ptp *)(uintptr_t)(e & GMM_PTE_ADDR);
			lvl--;
		}
		if (unlikely(!(e & GMM_PTE_PRESENT) || (e & GMM_PTE_TABLE) || lvl == GMM_LEVELS - 1)) {
			*why = STOP_FAULT;
			break;
		}
		if (unlikely((access & GMM_ACCESS_WRITE) && !(e & GMM_PTE_WRITE))) {
			*why = STOP_ACCES;
			break;
		}
		uint64_t sz = gmm_lsize(lvl);
		uint64_t off = a & (sz - 1);
		uint8_t *h = (uint8_t *)(uintptr_t)(e & GMM_PTE_ADDR) + off;
		size_t n = sz - off < len - got ? sz - off : len - got;
		if (!start) {
			start = h;
		} else if (start + got != h) {
			*why = STOP_DISCONTIG;
			break;
		}
		got += n;
	}
out:
	*span = got;
	return got ? start : NULL;
}

static void *fail(struct gmm_walker *w, int err)
{
	count(&w->nfaults);
	errno = err;
	return NULL;
}

void *gmm_translate(struct gmm_walker *w, uint64_t gpa, size_t len, unsigned access)
{
	size_t span;
	enum stop why;
	if (unlikely(!w->depth || !len))
		return fail(w, EINVAL);
	uint8_t *p = walk_range(w, gpa, len, access, &span, &why);
	if (likely(span == len)) {
		count(&w->ntrans);
		/* Dirty log (dirty.c): the one branch when it is off. */
		if (unlikely(GMM_READ_ONCE(w->vm->dirty_on) & access))
			gmm__dirty_mark(w->vm, gpa, len);
		return p;
	}
	return fail(w, why == STOP_ACCES ? EACCES : why == STOP_DISCONTIG ? ERANGE : EFAULT);
}

void *gmm_translate_span(struct gmm_walker *w, uint64_t gpa, size_t len, unsigned access,
			 size_t *span)
{
	enum stop why;
	*span = 0;
	if (unlikely(!w->depth || !len))
		return fail(w, EINVAL);
	uint8_t *p = walk_range(w, gpa, len, access, span, &why);
	if (!p)
		return fail(w, why == STOP_ACCES ? EACCES : EFAULT);
	count(&w->ntrans);
	if (unlikely(GMM_READ_ONCE(w->vm->dirty_on) & access))
		gmm__dirty_mark(w->vm, gpa, *span);
	return p;
}

/* ---- copy helpers ---------------------------------------------------- */

#ifdef GMM_COPY_SPANS
#define COPY_SPANS GMM_COPY_SPANS   /* test library (fault.h) */
#else
#define COPY_SPANS GMM_MAX_REGIONS
#endif

/*
 * Whether a failure copied anything (walk.h states the contract).  Up to
 * COPY_SPANS host-contiguous pieces of the range are translated before a
 * byte is copied, and their pointers are used for the copy: within one
 * walk section they stay valid whatever a writer does meanwhile, so such a
 * range is copied entirely or not at all, even against a concurrent unmap.
 * A piece ends only where the host mapping does -- at a region boundary,
 * every leaf of a region mapping gpa to r->hva + (gpa - r->gpa) -- so one
 * batch covers every range that crosses at most COPY_SPANS (=
 * GMM_MAX_REGIONS) regions.  A longer range (regions removed and added
 * while it is copied) is checked whole first, then copied a batch at a
 * time with fresh translations: a writer that clears part of it between
 * the check and the copy makes it fail part-way.
 */
static int check_rest(struct gmm_walker *w, uint64_t gpa, size_t len, unsigned access)
{
	while (len) {
		size_t span;
		enum stop why;
		if (!walk_range(w, gpa, len, access, &span, &why)) {
			int err = why == STOP_ACCES ? EACCES : EFAULT;
			fail(w, err);
			return -err;
		}
		gpa += span;
		len -= span;
	}
	return 0;
}

static int copy(struct gmm_walker *w, uint64_t gpa, void *buf, size_t len, bool to_guest)
{
	struct { uint8_t *p; size_t n; } v[COPY_SPANS];
	unsigned access = to_guest ? GMM_ACCESS_WRITE : GMM_ACCESS_READ;
	uint8_t *b = buf;
	bool checked = false;
	int ret = 0;

	gmm_walk_begin(w);
	while (len && !ret) {
		size_t nv = 0, batch = 0;
		while (nv < COPY_SPANS && batch < len) {
			size_t span;
			uint8_t *p = gmm_translate_span(w, gpa + batch, len - batch, access, &span);
			if (!p) {
				ret = -errno;
				break;
			}
			v[nv].p = p;
			v[nv].n = span;
			nv++;
			batch += span;
		}
		if (!ret && batch < len && !checked) {
			/* More than one batch: nothing is copied unless all
			 * of it translates now. */
			ret = check_rest(w, gpa + batch, len - batch, access);
			checked = true;
		}
		if (ret)
			break;
		for (size_t i = 0; i < nv; i++) {
			if (to_guest)
				memcpy(v[i].p, b, v[i].n);
			else
				memcpy(b, v[i].p, v[i].n);
			b += v[i].n;
		}
		gpa += batch;
		len -= batch;
	}
	gmm_walk_end(w);
	return ret;
}

int gmm_read(struct gmm_walker *w, uint64_t gpa, void *dst, size_t len)
{
	return copy(w, gpa, dst, len, false);
}

int gmm_write(struct gmm_walker *w, uint64_t gpa, const void *src, size_t len)
{
	return copy(w, gpa, (void *)src, len, true);
}
