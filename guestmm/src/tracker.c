// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tracker.c - the in-flight walker tracker.
 *
 * Problem (Leonardo Bras, "Introduces new count-based method for tracking
 * lockless pagetable walks", v5, linuxppc-dev, October 2019, and its
 * review).  Walkers load table entries and use the host
 * pointers they find without a lock.  A writer that clears leaves and then
 * releases the memory (munmap) or a table page must first know that no
 * walker still holds a pointer it loaded before the clear.  The kernel's
 * answer on powerpc was serialize_against_pte_lookup(): an IPI to every CPU
 * for every huge page, acknowledged only once interrupts are enabled again
 * (lockless walks run with interrupts off).  128 CPUs x 254,000 huge pages
 * made a 496 GB munmap take 275 s.
 *
 * What the writer needs is a grace period: every walk section that was
 * open when the leaves were cleared has ended.  Walks that begin after the
 * clear cannot see the old entries (ordering arguments below), so they do
 * not matter.  The strategies differ in how the writer observes that, and
 * how often:
 *
 *   kick        per block: signal every walker thread, wait for each to
 *               acknowledge; a thread inside a walk acknowledges at its end.
 *   count       per block: skip the kick when the shared count of walks in
 *               flight reads zero.
 *   perthread   per range: read each walker's sequence counter (odd = in a
 *               walk); wait only for those that were odd, until they change.
 *   membarrier  per range: as perthread, with membarrier() in place of the
 *               walker-side full barrier.
 *   rcu         per range: liburcu memb synchronize_rcu().
 *
 * All writer-side functions here are called with vm->wlock held; they may
 * sleep.  The walker side is in walk.h (inline) and at the bottom of this
 * file (signal handler, out-of-line parts).
 *
 * ---- Ordering: count and perthread (a store-buffering pattern) --------
 *
 *   walker                                 writer
 *   W1: RMW_sc(counter)  (fetch_add)       X1: store_relaxed(entry, 0)
 *   W2: e = load_sc(entry)                 X2: fence_sc
 *       use pointer from e                 X3: c = load_acquire(counter)
 *   W3: RMW_release(counter) / store_release(seq)
 *
 * Claim: if X3 reads the counter from before W1, W2 reads the cleared entry.
 * W1 and W2 are seq_cst operations, X2 a seq_cst fence; all three are in
 * the single total order S.  If X2 preceded W2 in S, then by the fence rule
 * (C11 7.17.3p6, C++20 [atomics.order]p4: X1 is sequenced before a seq_cst
 * fence X2 that precedes the seq_cst load W2 in S) W2 observes X1 or later.
 * Otherwise W2 precedes X2 in S, so W1 (sequenced before W2) does too, and
 * X3, sequenced after the fence X2, observes W1 or later (same rule): the
 * writer sees the walker in flight and waits for W3.
 *
 * "Waits for W3" means an acquire load that reads W3 or a later value, so
 * that every access through the pointer happens before the writer releases
 * memory:
 *  - perthread: X3 and the re-reads in wait_inflight() are acquire loads of
 *    the walker's seq.  A value other than the odd one X3 saw was written
 *    by this walk's W3 (store_release) or by a later walk's W1 (a seq_cst
 *    RMW, so in W3's release sequence) or W3 (release, sequenced after
 *    this walk): each synchronizes with something sequenced after the walk.
 *  - count: X3 itself is an acquire load of the shared counter, and a zero
 *    is the early exit.  Zero means every walk whose W1 precedes the value
 *    read in the counter's modification order also has its W3 there (a
 *    W3 follows its own W1 in that order).  Every modification of the
 *    counter is an RMW, so the value read lies in the release sequence of
 *    each of those W3 (release RMWs): the acquire load synchronizes with
 *    all of them.  A walk whose W1 comes later reads the clear (the claim).
 *    Non-zero: a kick round, whose acknowledgements order the walks.
 * On x86 W1 is a LOCK XADD, W2 a plain MOV, X2 an MFENCE, and acquire
 * loads and release stores are plain MOVs: one fence per serialisation,
 * not per entry.
 *
 * ---- Ordering: membarrier -------------------------------------------
 *
 * The walker's W1 is a store (release, for the paragraph after next: a
 * plain MOV on x86) and a compiler barrier.  The writer's
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) makes every CPU running a
 * thread of this process execute a full barrier (and a CPU not running one
 * passed a context switch, itself a barrier) before it returns.  For a
 * walker that point falls either after W1 (then X3, after the syscall,
 * sees the odd counter) or before it (then W2 comes after the barrier,
 * which is after X1: W2 sees the clear).  The syscall also orders the
 * writer's own X1 before X3.
 *
 * ---- Ordering: hazard ranges (membarrier) ------------------------------
 *
 * Inside a walk, before the table loads for [gpa, gpa + len), the walker
 * widens its range [hz_lo, hz_hi) to cover it (H, release stores, only
 * ever growing within a walk).  The outermost gmm_walk_end() resets it to
 * empty (R, release stores, after the seq release W3); a new walker starts
 * empty.  The writer, after X1 and the membarrier, reads seq (X3, acquire)
 * and then the range of each walker (acquire loads) and waits only for
 * walkers in a walk (X3 odd: walk N) whose range meets the cleared one.
 *
 * H and the walker's table load L for the same translation are in program
 * order; membarrier puts a full barrier at some point P of the walker's
 * execution.  If L comes before P, so does H: the writer's reads, after
 * the syscall, see H or a later value of the range.  Later values are:
 *  (a) a wider range of walk N: contains H's, the writer waits;
 *  (b) walk N's reset R, or the H of a walk after N: each is a release
 *      store sequenced after walk N's last access, read by an acquire
 *      load, so walk N's accesses happen before whatever the writer does
 *      next -- skipping the walker is right: walk N is over.
 * If L comes after P, L sees X1's clear and the walker gets no pointer
 * into the range.  Before this was exact the reset was a relaxed store at
 * walk begin and the widening relaxed: a writer could read the next walk's
 * value and skip the walker with nothing ordering walk N's accesses before
 * its release of memory (true on x86-TSO, not in C11 or on ARMv8).  The
 * release stores cost nothing on x86 (plain MOVs); the same holds for
 * W1's release store, which makes a later walk's W1 read by the writer's
 * wait loop order walk N too (without relying on C17's same-thread clause
 * of release sequences, which C++20 dropped).
 *
 * Table pages freed after such a serialisation must lie wholly inside
 * [lo, hi): a walker outside the range never reads them (table.c passes
 * the union of the range and the coverage of every table page it
 * unlinked, and serialises fully when older deferred pages wait).
 *
 * ---- Ordering: kick ---------------------------------------------------
 *
 * The writer sends the signal after X1 (the syscall orders X1 before it).
 * The handler runs on the walker's thread, so it sees the thread's own
 * in_walk flag in program order.  Outside a walk it acknowledges at once:
 * the walker's next W2 comes after the signal delivery, which comes after
 * X1.  Inside a walk it leaves kick_pending for gmm_walk_end(), which
 * acknowledges after the walk's last access (the release store of the
 * acknowledgement pairs with the writer's acquire load).
 *
 * membarrier's fallback.  When membarrier() fails at run time, the writer
 * runs a kick round in its place and then wait_inflight() as usual.  A
 * membarrier walker never sets in_walk, so its handler acknowledges at
 * once, wherever the thread is: the signal delivery is the full barrier P
 * that membarrier would have forced on its CPU (a kernel entry and exit on
 * the walker's thread, after the writer's X1 and its pthread_kill), and
 * the handler's release acknowledgement, read by the writer's acquire,
 * orders everything the walker did before P (its odd seq, its hazard
 * range) before the writer's X3.  The rest of the membarrier argument is
 * unchanged.  A walker that is leaving is outside every walk.
 *
 * ---- Ordering: rcu ------------------------------------------------------
 *
 * liburcu's own argument (urcu-memb: membarrier on the update side).
 */
/* liburcu's read side inline (its LGPL static headers), except under
 * ThreadSanitizer: those headers use volatile accesses that TSan reports as
 * races inside liburcu; the library's out-of-line functions are the same
 * algorithm, uninstrumented. */
#ifndef __SANITIZE_THREAD__
#define _LGPL_SOURCE
#endif
#include "internal.h"

#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

/*
 * ThreadSanitizer sees liburcu only from outside (its library is not
 * instrumented), so it cannot know what a grace period promises.  Say it in
 * TSan's own terms: every read-side section releases a token as it ends,
 * and synchronize_rcu's caller acquires it once the grace period is over
 * -- every section that was open when it began has ended by then, so
 * everything such a section did happens before what the writer does next
 * (freeing what the section read).  Sections that begin later are not
 * ordered by this, and need not be.  Nothing in other builds.
 */
#ifdef __SANITIZE_THREAD__
#include <sanitizer/tsan_interface.h>
static char rcu_tsan_token;
#define RCU_TSAN_RELEASE() __tsan_release(&rcu_tsan_token)
#define RCU_TSAN_ACQUIRE() __tsan_acquire(&rcu_tsan_token)
#else
#define RCU_TSAN_RELEASE() ((void)0)
#define RCU_TSAN_ACQUIRE() ((void)0)
#endif

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static long sys_membarrier(int cmd, unsigned flags)
{
	return syscall(__NR_membarrier, cmd, flags, 0);
}

/* ---- availability, init -------------------------------------------- */

enum gmm_strategy gmm_strategy_default(void)
{
	return gmm_strategy_available(GMM_STRATEGY_MEMBARRIER) ? GMM_STRATEGY_MEMBARRIER
							       : GMM_STRATEGY_PERTHREAD;
}

int gmm_strategy_available(int s)
{
	if (s == GMM_STRATEGY_MEMBARRIER) {
		long mask = sys_membarrier(MEMBARRIER_CMD_QUERY, 0);
		return mask >= 0 && (mask & MEMBARRIER_CMD_PRIVATE_EXPEDITED);
	}
	return s >= 0 && s < GMM_STRATEGY__N;
}

static void kick_handler(int sig, siginfo_t *si, void *uc);
static void ack(struct gmm_walker *w);
extern __thread struct gmm_walker *gmm_tls_walkers __attribute__((tls_model("initial-exec")));

/* Install the kick handler for sig once per process (idempotent). */
static int install_kick_handler(int sig)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static uint64_t installed[2]; /* bitmap of signals 0..127 */
	int ret = 0;

	pthread_mutex_lock(&lock);
	if (!(installed[sig / 64] & (1ULL << (sig % 64)))) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = kick_handler;
		/* SA_RESTART: a walker blocked in read() etc. resumes;
		 * KVM_RUN still returns EINTR (KVM does not restart it). */
		sa.sa_flags = SA_SIGINFO | SA_RESTART;
		sigemptyset(&sa.sa_mask);
		if (sigaction(sig, &sa, NULL) < 0)
			ret = gmm_seterr(errno, "cannot install the kick handler for signal %d: %s",
					 sig, strerror(errno));
		else
			installed[sig / 64] |= 1ULL << (sig % 64);
	}
	pthread_mutex_unlock(&lock);
	return ret;
}

/*
 * Set up the VM's strategy; gmm_vm_create, before the VM is shared.
 *
 * The kick handler is installed for every strategy whose writer may send
 * the kick signal (gmm_strategy_kicks): kick, count, and membarrier, whose
 * serialisation falls back to a kick round when membarrier() fails at run
 * time (a seccomp filter installed after set-up, say).  The walkers of
 * those VMs unblock the signal (gmm_walker_register); a signal with no
 * handler would take its default action and kill the process.  perthread
 * and rcu never signal: their walkers leave the thread's mask alone and no
 * handler is needed (if another VM installed one, it ignores a thread with
 * no kicked walkers).
 */
int gmm_vm_check_owner(struct gmm_vm *vm)
{
	pid_t pid = getpid();
	if (likely(pid == vm->owner_pid))
		return 0;
	return gmm_seterr(ECHILD,
			  "this VM belongs to process %d; process %d is a child made by fork() and "
			  "cannot use it (its walker threads do not exist here): create a VM in the child",
			  (int)vm->owner_pid, (int)pid);
}

int gmm_tracker_init(struct gmm_vm *vm)
{
	int ret = 0;
	vm->owner_pid = getpid();
	if (gmm_strategy_kicks(vm->cfg.strategy))
		ret = install_kick_handler(vm->cfg.kick_signal);
	if (ret < 0)
		return ret;
	if (vm->cfg.strategy == GMM_STRATEGY_MEMBARRIER) {
		if (!gmm_strategy_available(GMM_STRATEGY_MEMBARRIER))
			return gmm_seterr(ENOSYS,
					  "strategy membarrier: the kernel lacks MEMBARRIER_CMD_PRIVATE_EXPEDITED");
		if (sys_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0) < 0)
			return gmm_seterr(errno, "membarrier register: %s", strerror(errno));
	}
	return 0;
}

/*
 * gmm_vm_destroy, after the last serialisation; no writer runs.  The
 * handler stays installed: other VMs may use it.  Walkers still registered
 * (a caller bug, warned about by gmm_vm_destroy) become orphans: their
 * thread's gmm_walker_unregister or thread-exit destructor then frees them
 * without touching the freed VM.  Walkers whose thread is known dead are
 * freed here (nobody else can).  A walker unregistering concurrently with
 * the destroy is a caller bug this does not make safe.
 */
void gmm_tracker_fini(struct gmm_vm *vm)
{
	pthread_mutex_lock(&vm->walkers_lock);
	struct gmm_walker *w = vm->walkers;
	vm->walkers = NULL;
	while (w) {
		struct gmm_walker *next = w->next;
		if (GMM_READ_ONCE(w->dead))
			free(w);
		else
			atomic_store_explicit(&w->orphan, 1, memory_order_release);
		w = next;
	}
	pthread_mutex_unlock(&vm->walkers_lock);
}

/* ---- dead walker threads --------------------------------------------- */

/*
 * A walker thread that ends without gmm_walker_unregister is unregistered by
 * walk.c's thread-exit destructor.  One that vanishes without running
 * destructors (a raw exit system call, a thread not made by pthreads) leaves
 * its walker registered: the kernel answers ESRCH for its tid, and the
 * writer then treats it as acknowledged and gone (a dead thread holds no
 * pointer and never walks again; its last accesses were done before the
 * kernel finished its exit, which is before the kernel could answer ESRCH
 * to our system call) and marks it `dead` so nobody waits for it again;
 * gmm_tracker_fini frees it.  (count: a thread that died inside a walk
 * leaves the shared count raised for good, so every later serialisation
 * kicks: correct, slower.)  The tid cannot be taken by another
 * thread until the dead one is reaped, but may be afterwards: a tid reused
 * before we noticed makes the dead walker look alive (then a kick round
 * waits for it until it is unregistered: the destructor exists so that this
 * does not happen).  Logged as an error at most once a second.
 */
/* At most one line a second from each call site that can repeat (every
 * serialisation may hit it): true if this one may log. */
static bool log_allowed(_Atomic uint64_t *last_ns)
{
	uint64_t now = gmm_now_ns(), last = atomic_load_explicit(last_ns, memory_order_relaxed);
	return now - last >= 1000000000ULL &&
	       atomic_compare_exchange_strong_explicit(last_ns, &last, now, memory_order_relaxed,
						       memory_order_relaxed);
}

static void mark_dead(struct gmm_vm *vm, struct gmm_walker *w)
{
	static _Atomic uint64_t last_log_ns;
	if (atomic_exchange_explicit(&w->dead, 1, memory_order_relaxed))
		return;
	if (log_allowed(&last_log_ns))
		gmm_log(GMM_LOG_ERROR,
			"walker thread %d of process %d is gone without gmm_walker_unregister; "
			"not waiting for it", (int)w->tid, (int)vm->owner_pid);
}

/* Is w's thread gone?  Writer side; a system call, for slow paths only.
 * A walker that set `leaving` unregistered (it may have exited since, its
 * struct kept for the round: retired): gone, but not an error to log --
 * a kick round that slept while a walker unregistered and its thread
 * exited used to report it as gone without unregistering (seen by
 * tests/ondemand_stress.c, whose walkers come and go during unmaps). */
static bool walker_gone(struct gmm_vm *vm, struct gmm_walker *w)
{
	if (GMM_READ_ONCE(w->dead))
		return true;
	if (atomic_load_explicit(&w->leaving, memory_order_seq_cst))
		return true;
	if (syscall(SYS_tgkill, vm->owner_pid, w->tid, 0) == 0 || errno != ESRCH)
		return false;
	mark_dead(vm, w);
	return true;
}

/* ---- the writer's serialisations (wlock held) ---------------------- */

/* Leaving (unregistering) or parked (in a writer operation of this VM):
 * outside every walk, needs no kick (seq_cst: see kick_all's argument below
 * and the one at park()). */
static inline bool away(struct gmm_walker *w)
{
	return atomic_load_explicit(&w->leaving, memory_order_seq_cst) ||
	       atomic_load_explicit(&w->parked, memory_order_seq_cst);
}

/*
 * A kick round: signal every registered walker thread, then wait until each
 * has acknowledged or announced that it is leaving.  wlock held (one round
 * per VM at a time: the round's snapshot lives in the walkers' round_next
 * and round_req, and vm->kick_round is a flag, not a count).  May sleep.
 *
 * The round never waits while it holds walkers_lock.  It used to, and a
 * walker thread that blocked on walkers_lock outside a walk (in
 * gmm_walker_unregister, gmm_vm_stats, gmm_tracker_inflight) could then
 * acknowledge only from a signal handler run *inside* the blocked
 * pthread_mutex_lock.  ThreadSanitizer, and any runtime that defers
 * asynchronous signals inside an intercepted blocking call, runs it only
 * once the lock is taken: a deadlock (issue 12, defect 0).  Now:
 *
 *   1. Under the lock, for each walker not away (leaving, or parked:
 *      see park()) and not known dead: publish a new request, send the
 *      signal, and link the walker into the round's snapshot with the
 *      request to wait for.  Set vm->kick_round.  Nothing is allocated
 *      (the writer must always make progress).
 *   2. Without the lock, wait for each walker in the snapshot until
 *      ack >= request, or it is away, or its thread is gone.
 *   3. Under the lock, clear kick_round and take the retired list; free
 *      it (after the unlock: nobody else can reach those walkers).
 *
 * Why dropping the lock is safe:
 *  - A walker that registers after step 1 is not in the snapshot and need
 *    not be: its registration takes walkers_lock after we released it,
 *    and we released it after our clears (X1, before kick_all), so its
 *    walks see the clears (the lock's release/acquire).
 *  - A walker in the snapshot cannot be freed under us: gmm_walker_unregister
 *    unlinks it under walkers_lock and, if kick_round is set, puts it on
 *    kick_retired instead of freeing it; we free that list in step 3,
 *    after the last access to any snapshot walker.  If it unlinked before
 *    step 1 it is not in the snapshot.  (Step 1 and the unlink are both
 *    under the lock, so they are ordered one way or the other.)
 *  - A leaving walker needs no acknowledgement: it is in
 *    gmm_walker_unregister, which the contract puts outside any walk of
 *    this VM, so it holds no pointer from our table; its last walk's
 *    accesses are sequenced before its release (seq_cst) store of
 *    `leaving`, which our acquire (seq_cst) load reads, so they happen
 *    before we go on to release memory.  It never walks again with this
 *    walker.  It also acknowledges every request it sees (ack()), so a
 *    writer asleep on kick_ack is woken.
 *  - No lost wake-up between the two: the walker stores `leaving` then
 *    loads kick_req (in ack()); we increment kick_req then load `leaving`;
 *    all four are seq_cst, so either the walker sees our request (and its
 *    ack() raises kick_ack, which fails our futex_wait's compare or wakes
 *    it) or we see `leaving`.  The futex timeout is a second line.
 */
static bool kick_all(struct gmm_vm *vm)
{
	struct gmm_walker *round = NULL;

	pthread_mutex_lock(&vm->walkers_lock);
	for (struct gmm_walker *w = vm->walkers; w; w = w->next) {
		if (away(w) || GMM_READ_ONCE(w->dead))
			continue;
		/* The request is published before the signal (the syscall
		 * is a barrier; release documents the pairing with ack()'s
		 * acquire; seq_cst for the `leaving` argument above).
		 * tgkill, not pthread_kill: the thread may have exited, and
		 * its pthread_t with it; its tid answers ESRCH. */
		uint32_t req = atomic_fetch_add_explicit(&w->kick_req, 1, memory_order_seq_cst) + 1;
		if (syscall(SYS_tgkill, vm->owner_pid, w->tid, vm->cfg.kick_signal) < 0) {
			if (errno == ESRCH)
				mark_dead(vm, w);
			else
				gmm_log(GMM_LOG_ERROR, "kick of walker thread %d: %s", (int)w->tid,
					strerror(errno));
			continue;
		}
		ADD(vm->st_kicks_sent, 1);
		w->round_req = req;
		w->round_next = round;
		round = w;
	}
	vm->kick_round = true;
	pthread_mutex_unlock(&vm->walkers_lock);
	bool any = round != NULL;  /* "issued": another thread was disturbed */

	for (struct gmm_walker *w = round; w; w = w->round_next) {
		uint32_t req = w->round_req;
		for (unsigned spins = 0;; spins++) {
			/* Acquire: the walker's accesses through old pointers
			 * happen before we go on to release memory. */
			uint32_t ack = atomic_load_explicit(&w->kick_ack, memory_order_acquire);
			if ((int32_t)(ack - req) >= 0)
				break;
			if (away(w))
				break;
			if (spins < 256) {
				cpu_relax();
			} else {
				/* Bounded: the thread is alive (checked after
				 * each sleep), the signal is unblocked in it
				 * and handled (register, init), so its handler
				 * runs at its next return to user space and
				 * acknowledges, or its walk (short, by
				 * contract) ends and gmm_walk_end does; or it
				 * leaves, or exits (the destructor leaves). */
				gmm_futex_wait(&w->kick_ack, ack, 200000);
				if (walker_gone(vm, w))
					break;
			}
		}
	}

	pthread_mutex_lock(&vm->walkers_lock);
	vm->kick_round = false;
	struct gmm_walker *retired = vm->kick_retired;
	vm->kick_retired = NULL;
	pthread_mutex_unlock(&vm->walkers_lock);
	while (retired) {
		struct gmm_walker *next = retired->next;
		free(retired);
		retired = next;
	}
	return any;
}

/*
 * Parked walkers.  A walker thread that enters a writer operation of its
 * VM (a balloon device thread unmapping) is outside every walk of that VM:
 * the contract forbids writer operations inside a walk of the same VM
 * (they would wait for their own walk).  If it blocks on wlock while a kick
 * round that holds wlock waits for its acknowledgement, and its handler is
 * deferred inside the blocking lock call (ThreadSanitizer), neither moves.
 * So the writer entry points park the caller's walkers of the VM before
 * they take wlock and unpark them just before they release it; a kick
 * round neither signals a parked walker nor waits for it (away()).
 *
 * Ordering, as for `leaving` (kick_all): the park store is seq_cst (a
 * release of the walks before it) and is followed by ack(), so a round
 * already waiting either sees the flag or gets the acknowledgement and
 * its wake-up.  A round that skipped a parked walker holds wlock; the
 * walker walks again only after it unparked, which it does while holding
 * wlock, i.e. after that round's writer released wlock, which it did after
 * its clears (X1): its walks see them (the mutex's release/acquire).  And
 * a round that starts after the unpark takes wlock after it, so it reads
 * parked == 0 and kicks the walker as usual.  A thread holding wlock is
 * itself parked: its own kick rounds do not signal it (they used to: a
 * self-kick, acknowledged by its own handler).  Walkers of other VMs on
 * the thread are not parked: a round of another VM has no lock in common
 * with us to order their next walks.
 */
static void park(struct gmm_vm *vm, int on)
{
	for (struct gmm_walker *w = gmm_tls_walkers; w; w = w->tls_next) {
		if (w->vm != vm || w->depth)
			continue;  /* inside a walk: a caller bug, not parked */
		if (on) {
			atomic_store_explicit(&w->parked, 1, memory_order_seq_cst);
			ack(w);
		} else {
			/* Ordered before the unlock by its release. */
			GMM_WRITE_ONCE(w->parked, 0);
		}
	}
}

int gmm_writer_lock(struct gmm_vm *vm)
{
	int ret = gmm_vm_check_owner(vm);
	if (ret < 0)
		return ret;
	park(vm, 1);
	pthread_mutex_lock(&vm->wlock);
	return 0;
}

void gmm_writer_unlock(struct gmm_vm *vm)
{
	park(vm, 0);
	pthread_mutex_unlock(&vm->wlock);
}

/* X2 in the argument above.  A seq_cst fence, not a seq_cst RMW on some
 * other variable: only the fence orders the preceding relaxed clears. */
static inline void writer_fence(void)
{
	atomic_thread_fence(memory_order_seq_cst);
}

/* Did the walk in flight on w touch [lo, hi)?  membarrier only, after the
 * barrier (see "Ordering: hazard ranges" above). */
static bool touched(struct gmm_walker *w, uint64_t lo, uint64_t hi)
{
	uint64_t a = atomic_load_explicit(&w->hz_lo, memory_order_acquire);
	uint64_t b = atomic_load_explicit(&w->hz_hi, memory_order_acquire);
	return a < hi && b > lo;
}

/* Wait for every walker whose sequence counter is odd now (in a walk) to
 * move on; with `ranged` (membarrier), only for those whose walk touched
 * [lo, hi).  Must follow writer_fence() or membarrier().  Returns the number
 * of walkers waited for; *outside counts those skipped for their range. */
static uint64_t wait_inflight(struct gmm_vm *vm, bool ranged, uint64_t lo, uint64_t hi,
			      uint64_t *outside)
{
	uint64_t waited = 0;
	pthread_mutex_lock(&vm->walkers_lock);
	for (struct gmm_walker *w = vm->walkers; w; w = w->next) {
		uint64_t s = atomic_load_explicit(&w->seq, memory_order_acquire); /* X3 */
		if (!(s & 1) || GMM_READ_ONCE(w->dead))
			continue;
		if (ranged && !touched(w, lo, hi)) {
			++*outside;
			continue;
		}
		waited++;
		/* Acquire pairs with the release in gmm_walk_end (W3). */
		for (unsigned spins = 0; spins < 256; spins++) {
			if (atomic_load_explicit(&w->seq, memory_order_acquire) != s)
				goto next;
			cpu_relax();
		}
		/*
		 * The walker may be preempted inside its walk (walkers can
		 * outnumber CPUs): sleep so it gets our CPU, and let its
		 * walk_end wake us.  The flag and the walker's seq store form
		 * another store-buffering pair; we do not fence it: a wake-up
		 * lost to it costs at most the futex timeout (1 ms), and the
		 * futex itself re-checks seq before sleeping.
		 */
		GMM_WRITE_ONCE(w->writer_waiting, 1);
		while (atomic_load_explicit(&w->seq, memory_order_acquire) == s) {
			gmm_futex_wait((_Atomic uint32_t *)&w->seq, (uint32_t)s, 1000000);
			if (walker_gone(vm, w))  /* died inside its walk */
				break;
		}
		GMM_WRITE_ONCE(w->writer_waiting, 0);
next:;
	}
	pthread_mutex_unlock(&vm->walkers_lock);
	return waited;
}

/*
 * One serialisation by the VM's strategy.  ranged (membarrier only): wait
 * just for walks whose hazard range meets [lo, hi) -- enough for what the
 * table holds (leaves and table pages of that range), not for anything else
 * a walk reads.  !ranged: every walk in flight, whatever it translated so
 * far, including one that has begun and translated nothing yet: it may
 * still be about to read a region descriptor, a block array, or a caller's
 * own structure (gmm_synchronize).  A whole-address-space wait is this
 * mode, never the sentinel range (0, UINT64_MAX): an open walk with an
 * empty range meets no range.
 */
static void serialize(struct gmm_vm *vm, bool ranged, uint64_t lo, uint64_t hi)
{
	uint64_t t0 = gmm_now_ns();
	bool issued = true;
	uint64_t outside = 0;

	switch (vm->cfg.strategy) {
	case GMM_STRATEGY_KICK:
		issued = kick_all(vm);
		break;
	case GMM_STRATEGY_COUNT:
		writer_fence();
		/* X3: acquire, for the early exit ("Ordering: count"). */
		if (atomic_load_explicit(&vm->inflight, memory_order_acquire) == 0)
			issued = false;
		else
			kick_all(vm);
		break;
	case GMM_STRATEGY_PERTHREAD: {
		writer_fence();
		uint64_t n = wait_inflight(vm, false, 0, 0, &outside);
		ADD(vm->st_walker_waits, n);
		issued = n != 0;
		break;
	}
	case GMM_STRATEGY_MEMBARRIER: {
		if ((GMM_FAULT(GMM_FAULT_MEMBARRIER) && (errno = EPERM)) ||
		    sys_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0) < 0) {
			/* Registered at create, so this fails only when
			 * something forbids it later (a seccomp filter); a
			 * full kick is still correct ("membarrier's
			 * fallback" above).  Logged at most once a second. */
			static _Atomic uint64_t last_log_ns;
			int err = errno;
			if (log_allowed(&last_log_ns))
				gmm_log(GMM_LOG_ERROR, "membarrier: %s; kicking walker threads instead",
					strerror(err));
			kick_all(vm);
		}
		ADD(vm->st_walker_waits, wait_inflight(vm, ranged, lo, hi, &outside));
		ADD(vm->st_walkers_outside, outside);
		break;
	}
	default:
		urcu_memb_synchronize_rcu();
		RCU_TSAN_ACQUIRE();
		break;
	}
	if (issued) {
		ADD(vm->st_serialize_issued, 1);
		ADD(vm->st_serialize_ns, gmm_now_ns() - t0);
	} else {
		ADD(vm->st_serialize_skipped, 1);
	}
}

void gmm_tracker_block(struct gmm_vm *vm)
{
	if (vm->cfg.flags & GMM_VM_TEST_NO_SERIALIZE)
		return;
	if (vm->cfg.strategy == GMM_STRATEGY_KICK || vm->cfg.strategy == GMM_STRATEGY_COUNT)
		serialize(vm, false, 0, 0);
}

void gmm_tracker_range(struct gmm_vm *vm, uint64_t lo, uint64_t hi)
{
	if (vm->cfg.flags & GMM_VM_TEST_NO_SERIALIZE)
		return;
	if (vm->cfg.strategy != GMM_STRATEGY_KICK && vm->cfg.strategy != GMM_STRATEGY_COUNT)
		serialize(vm, true, lo, hi);
}

void gmm_tracker_sync(struct gmm_vm *vm)
{
	if (vm->cfg.flags & GMM_VM_TEST_NO_SERIALIZE)
		return;
	serialize(vm, false, 0, 0);
}

uint64_t gmm_tracker_inflight(struct gmm_vm *vm)
{
	uint64_t n = 0;
	switch (vm->cfg.strategy) {
	case GMM_STRATEGY_COUNT:
		return LD(vm->inflight);
	case GMM_STRATEGY_RCU:
		return 0; /* liburcu does not say */
	default:
		break;
	}
	pthread_mutex_lock(&vm->walkers_lock);
	for (struct gmm_walker *w = vm->walkers; w; w = w->next) {
		if (GMM_READ_ONCE(w->dead))
			continue;
		if (vm->cfg.strategy == GMM_STRATEGY_KICK)
			n += LD(w->in_walk) != 0;
		else
			n += LD(w->seq) & 1;
	}
	pthread_mutex_unlock(&vm->walkers_lock);
	return n;
}

/* ---- walker side ----------------------------------------------------- */

/* This thread's walkers (one per VM it walks), for the signal handler.
 * initial-exec: the handler must not trigger a TLS allocation. */
__thread struct gmm_walker *gmm_tls_walkers __attribute__((tls_model("initial-exec")));


/*
 * Acknowledge every request published so far.  Runs in the kick handler
 * and in gmm_walk_end() (and gmm_walker_unregister): the handler can
 * interrupt the other two anywhere, including between our load of the
 * request and our store of the acknowledgement, and a handler for another
 * VM's kick acknowledges this walker too (whatever VM sent the signal: the
 * thread is outside this walker's walks, which is all an acknowledgement
 * says).  So the acknowledgement only moves forward: a CAS that raises it
 * to req unless it already is at or past req (serial-number order, as the
 * writer compares).  An interrupted older ack then finds the newer value
 * and leaves it; a plain store would put it back, and the writer waiting
 * for the newer request would wait forever (no further signal comes).
 *
 * Ordering: the acquire load of kick_req pairs with the writer's release
 * increment, so the writer's clears (X1) happen before this
 * acknowledgement and before the thread's next walk.  The release CAS
 * pairs with the writer's acquire load of kick_ack: the walk that just
 * ended (if any) happens before the writer goes on to release memory.  A
 * failed CAS stores nothing; the value it found was stored by a release
 * CAS of this same thread (only the owning thread acknowledges), sequenced
 * after everything this call could order.
 */
static void ack(struct gmm_walker *w)
{
	GMM_WRITE_ONCE(w->kick_pending, 0);
	uint32_t req = atomic_load_explicit(&w->kick_req, memory_order_seq_cst);
	GMM_HOOK(GMM_HOOK_ACK, w);
	uint32_t cur = GMM_READ_ONCE(w->kick_ack);
	while ((int32_t)(req - cur) > 0) {
		if (atomic_compare_exchange_weak_explicit(&w->kick_ack, &cur, req,
							  memory_order_release,
							  memory_order_relaxed)) {
			gmm_futex_wake(&w->kick_ack);
			break;
		}
	}
}

/* Async-signal-safe: atomics, a futex syscall, errno preserved. */
static void kick_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	int saved = errno;
	for (struct gmm_walker *w = gmm_tls_walkers; w; w = w->tls_next) {
		ADD(w->nkicks, 1);
		if (GMM_READ_ONCE(w->in_walk))
			GMM_WRITE_ONCE(w->kick_pending, 1);
		else
			ack(w);
	}
	errno = saved;
}

/* Called by gmm_walk_end() when a writer sleeps on this walker's seq. */
void gmm__wake_writer(struct gmm_walker *w)
{
	gmm_futex_wake((_Atomic uint32_t *)&w->seq);
}

/* Called by gmm_walk_end() when a kick arrived during the walk. */
void gmm__kick_ack(struct gmm_walker *w)
{
	ack(w);
}

void gmm__rcu_begin(void)
{
	urcu_memb_read_lock();
}

void gmm__rcu_end(void)
{
	RCU_TSAN_RELEASE();
	urcu_memb_read_unlock();
}
