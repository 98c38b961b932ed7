/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * internal.h - guestmm's private structures and the contracts between its
 * files.  One file per mechanism:
 *
 *   vm.c       VM lifecycle, regions list, statistics, errors, logging
 *   backing.c  host memory behind a region: map, release, remap, prefault,
 *              measured huge-page coverage
 *   table.c    the radix table and its writer operations
 *   walk.c     walker registration, translate, copy helpers
 *   tracker.c  the in-flight walker tracker (all strategies)
 *   pool.c     the table-page pool
 *   pin.c      pins
 *   dirty.c    the dirty log of pages written through walks and pins
 */
#ifndef GUESTMM_INTERNAL_H
#define GUESTMM_INTERNAL_H

#include <guestmm/guestmm.h>

#include "fault.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define GMM_MAX_REGIONS 64
#define GMM_PTES 512
#define GMM_LEVELS 4

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* A statistic's load (reported, not acted on; walk.h's GMM_READ_ONCE), and
 * the writer's relaxed increment of a statistic. */
#define LD(x) GMM_READ_ONCE(x)
#define ADD(x, n) atomic_fetch_add_explicit(&(x), (n), memory_order_relaxed)

/* Sleep while *addr == val, at most timeout_ns (< 1 s); a wake, a changed
 * value, a signal or the timeout end it -- callers re-check in a loop. */
static inline void gmm_futex_wait(_Atomic uint32_t *addr, uint32_t val, long timeout_ns)
{
	struct timespec ts = { 0, timeout_ns };
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, &ts, NULL, 0);
}

/* Wake one waiter on addr (async-signal-safe). */
static inline void gmm_futex_wake(_Atomic uint32_t *addr)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* One table page: 512 entries, 4 KiB, 4 KiB aligned. */
struct gmm_ptp {
	_Atomic uint64_t e[GMM_PTES];
};

/* The table's encoding, shared by the writer (table.c) and the walkers
 * (walk.c): level lvl (0..3) is indexed by GPA bits 12 + 9 * lvl and up, 9
 * bits per level; an entry at level lvl maps (as a leaf) or covers (as a
 * table pointer) gmm_lsize(lvl) bytes: 4 KiB, 2 MiB, 1 GiB, 512 GiB. */
static inline unsigned gmm_idx(uint64_t gpa, int lvl)
{
	return (unsigned)(gpa >> (12 + 9 * lvl)) & (GMM_PTES - 1);
}

static inline uint64_t gmm_lsize(int lvl)
{
	return 1ULL << (12 + 9 * lvl);
}

/* What a freed table page is filled with: a late reader sees POISON. */
#define GMM_PTE_POISON_VALUE (0xdead000000000000ULL | GMM_PTE_POISON | GMM_PTE_PRESENT)

/* ---- pool.c -------------------------------------------------------- */

struct gmm_pool_chunk;

struct gmm_pool {
	pthread_mutex_t lock;
	struct gmm_ptp **free;          /* stack of free pages (under lock) */
	uint64_t nfree, free_cap;
	struct gmm_ptp **reserve;       /* pages only must-progress paths get */
	uint64_t nreserve, reserve_size;
	struct gmm_pool_chunk *chunks;
	uint64_t limit;                 /* pages charged to the VM at most */
	uint64_t charged;               /* pages obtained from the host (free + reserve + in use) */
	_Atomic uint64_t in_use;        /* handed out and not freed */
	_Atomic uint64_t peak;
};

int gmm_pool_init(struct gmm_pool *p, uint64_t limit, uint64_t reserve);
void gmm_pool_fini(struct gmm_pool *p);
/* Never waits on the lock, never grows, never touches the reserve: NULL if
 * the free stack is empty or the lock is busy.  Returns a zeroed page. */
struct gmm_ptp *gmm_pool_try_alloc(struct gmm_pool *p);
/* May lock and grow (up to the limit); with use_reserve, falls back to the
 * reserve.  NULL + -ENOSPC via gmm_seterr when nothing is left. */
struct gmm_ptp *gmm_pool_alloc(struct gmm_pool *p, bool use_reserve);
/* Poison the page and return it (refilling the reserve first).  Locks. */
void gmm_pool_free(struct gmm_pool *p, struct gmm_ptp *pg);
/* Pages a normal (non-reserve) allocation could still get. */
uint64_t gmm_pool_headroom(struct gmm_pool *p);

/* ---- regions ------------------------------------------------------- */

/* Per 2 MiB of a region: the pin/freeze count (pin.h). */
struct gmm_block {
	_Atomic uint32_t ref;           /* 0 frozen by an unmap, 1 + pins otherwise;
					   write pins and protect's bit too (pin.c) */
};

struct gmm_region {
	struct gmm_vm *vm;
	uint64_t gpa, size;
	uint64_t page_size;             /* host page size of the backing */
	enum gmm_backing backing;
	unsigned flags;                 /* GMM_REGION_* */
	uint8_t *hva;                   /* host address of gpa; mapping is [hva, hva + size) */
	int fd;                         /* -1 for anonymous */
	int adopt_fd;                   /* with GMM_REGION_FD in flags: the caller's fd to map */
	char *path;                     /* GMM_BACKING_FILE */
	char name[48];
	uint64_t prefault_ns;
	uint32_t nblocks;
	struct gmm_block *blocks;
	/* Dirty log (dirty.c): one bit per 4 KiB page, allocated by
	 * gmm_dirty_start (or at add while logging is on) under wlock and
	 * published with a release store; freed with the region. */
	_Atomic(_Atomic uint64_t *) dirty;
};

/* ---- backing.c (host memory; no table knowledge) ------------------- */

/* Map host memory for r (r->gpa, size, backing, path, flags, name set by
 * the caller): sets r->hva, r->fd, r->page_size.  On failure nothing is left
 * mapped or open and the error is set with gmm_seterr(). */
int gmm_backing_map(struct gmm_region *r);
/* Unmap the whole host range and close the fd. */
void gmm_backing_unmap(struct gmm_region *r);
/* Give [off, off + len) of the region back to the host.  discard: keep the
 * mapping, drop contents (MADV_DONTNEED; punch hole for memfd/hugetlb).
 * Otherwise munmap it for real and put a PROT_NONE placeholder over the
 * hole; memfd/hugetlb holes are punched so the memory is really freed
 * (never for GMM_BACKING_FILE: the file keeps its data).  off/len aligned
 * to r->page_size, except thp: 4 KiB (a THP leaf is split first). */
int gmm_backing_release(struct gmm_region *r, uint64_t off, uint64_t len, bool discard);
/* Map [off, off + len) again at the same host address (MAP_FIXED over a
 * placeholder or a discarded range): fresh memory for anon/thp (with the
 * backing's madvise), the fd's pages otherwise. */
int gmm_backing_remap(struct gmm_region *r, uint64_t off, uint64_t len);

/* ---- vm.c ---------------------------------------------------------- */

struct gmm_deferred;

struct gmm_vm {
	struct gmm_vm_config cfg;
	pthread_mutex_t wlock;          /* the writer mutex */
	struct gmm_ptp *root;           /* level 3; never changes */
	/* GMM_ACCESS_WRITE while walkers mark dirty pages (dirty.c), 0
	 * otherwise: next to root, which every walk loads anyway. */
	_Atomic uint32_t dirty_on;
	bool dirty_logging;             /* wlock: logging is on (writer ops mark) */
	bool dirty_skip_walkers;        /* wlock: test switch (dirty.h) */
	struct gmm_pool pool;

	/* Regions readable without a lock (pins look blocks up): a slot is
	 * published with a release store; a removed region is freed only
	 * after a grace period.  Written under wlock. */
	_Atomic(struct gmm_region *) regions[GMM_MAX_REGIONS];

	/* Tracker. */
	_Alignas(64) _Atomic uint64_t inflight;   /* count strategy */
	_Alignas(64) pthread_mutex_t walkers_lock;
	struct gmm_walker *walkers;
	uint64_t nwalkers;
	/* A kick round is waiting for acknowledgements (walkers_lock; the
	 * round runs without it).  Walkers that unregister meanwhile are put
	 * on kick_retired, which the round frees when it ends. */
	bool kick_round;
	struct gmm_walker *kick_retired;
	pid_t owner_pid;                /* the process that created the VM */
	uint64_t folded_trans, folded_faults;     /* from unregistered walkers */

	/* Table pages unlinked by the writer, freed after the next grace
	 * period (writer-only, under wlock). */
	struct gmm_ptp **deferred;
	uint64_t ndeferred, deferred_cap;

	/* Statistics written under wlock (or by walkers where noted),
	 * read with relaxed loads. */
	_Atomic uint64_t st_serialize_issued, st_serialize_skipped, st_serialize_ns;
	_Atomic uint64_t st_kicks_sent, st_walker_waits, st_walkers_outside;
	_Atomic uint64_t st_splits, st_collapses;
	_Atomic uint64_t st_pins_active, st_pins_total;  /* walkers (atomic RMW) */
	_Atomic uint64_t st_pin_waits, st_pin_busy;
	_Atomic uint64_t st_maps, st_unmaps, st_unmapped_bytes, st_released_bytes;
	_Atomic uint64_t st_late_reads;                  /* walkers */
	_Atomic uint64_t st_mapped_bytes;
	_Atomic uint64_t st_deferred;                    /* mirror of ndeferred, lock-free read */
	_Atomic int pin_waiters;                         /* an unmap waits on a block */
};

/* Set the thread's last error; returns -err. */
int gmm_seterr(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gmm_log(enum gmm_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint64_t gmm_now_ns(void);

/* Lockless region lookup (inside a walk section, or under wlock). */
struct gmm_region *gmm_region_lookup(struct gmm_vm *vm, uint64_t gpa);

/* ---- table.c (writer side: called with wlock held) ----------------- */

int gmm_table_init(struct gmm_vm *vm);
void gmm_table_fini(struct gmm_vm *vm);
/* Install leaves for [gpa, gpa + len) -> hva, leaf size as large as the
 * page size, alignment and range allow.  On -ENOSPC nothing is installed. */
int gmm_table_install(struct gmm_vm *vm, struct gmm_region *r, uint64_t gpa, uint64_t len,
		      uint8_t *hva, uint64_t max_leaf, uint64_t flags);
/* Queue an unlinked table page for freeing after the next grace period. */
void gmm_table_defer_free(struct gmm_vm *vm, struct gmm_ptp *pg);
/* Free every deferred page (call only right after a serialisation). */
void gmm_table_free_deferred(struct gmm_vm *vm);
/* Internal unmap flags (beside the public GMM_UNMAP_*). */
#define GMM_UNMAP_CALLER_SYNCS (1u << 29) /* region removal: no per-range serialisation
					      and deferred pages stay queued; the caller
					      serialises fully right after */
#define GMM_UNMAP_FORCE (1u << 30)  /* blocks already frozen, or teardown: no pin freeze */
#define GMM_UNMAP_KEEP (1u << 31)   /* clear leaves only; host memory stays */

/* Unmap [gpa, gpa + len) of region r; wlock held.  Parts already unmapped
 * are skipped.  r need not be in the published list (region removal empties
 * its slot first). */
int gmm_unmap_locked(struct gmm_vm *vm, struct gmm_region *r, uint64_t gpa, uint64_t len,
		     unsigned flags);

/* ---- dirty.c ------------------------------------------------------- */

/* Walker-side: mark [gpa, gpa + len) (translated for write inside the
 * current walk) in its region's bitmap. */
void gmm__dirty_mark(struct gmm_vm *vm, uint64_t gpa, uint64_t len);
/* Any thread, r kept alive by the caller (a pin): mark [gpa, gpa + len). */
void gmm__dirty_mark_region(struct gmm_region *r, uint64_t gpa, uint64_t len);
/* wlock held: a writer operation changed [gpa, gpa + len) of r; marks it
 * if logging is on. */
void gmm_dirty_writer_mark(struct gmm_vm *vm, struct gmm_region *r, uint64_t gpa, uint64_t len);
/* wlock held: a region being added gets its bitmap (all dirty) if logging
 * is on.  0 or -ENOMEM. */
int gmm_dirty_region_init(struct gmm_vm *vm, struct gmm_region *r);

/* ---- pin.c (writer side of pins: wlock held) ----------------------- */

/* Freeze blocks [first, first + n) of r (1 -> 0) so no new pin can start;
 * wait up to the VM's pin timeout for pins to go (unless nowait).  On
 * -EBUSY every block is as it was. */
int gmm_pin_freeze(struct gmm_vm *vm, struct gmm_region *r, uint32_t first, uint32_t n,
		   bool nowait);
/* The pieces of gmm_pin_freeze, for an operation that freezes several
 * spans against one deadline (gmm_unmap_ranges): the deadline (now + the
 * VM's pin timeout); one span frozen until it (-EBUSY: that span thawed
 * again, the others are the caller's; *waited set if it slept); and the
 * end of the operation's waits (counts pin_waits once if it waited). */
uint64_t gmm_pin_deadline(struct gmm_vm *vm);
int gmm_pin_freeze_until(struct gmm_vm *vm, struct gmm_region *r, uint32_t first, uint32_t n,
			 bool nowait, uint64_t deadline, bool *waited);
void gmm_pin_wait_done(struct gmm_vm *vm, bool waited);
/* Undo gmm_pin_freeze (0 -> 1). */
void gmm_pin_thaw(struct gmm_region *r, uint32_t first, uint32_t n);
/* For gmm_protect(read-only): stop new write pins on blocks [first,
 * first + n) and wait up to the pin timeout for their write pins to go.
 * -EBUSY: stopped no more, nothing changed.  Read pins are not waited for. */
int gmm_pin_write_freeze(struct gmm_vm *vm, struct gmm_region *r, uint32_t first, uint32_t n);
/* Let write pins in again. */
void gmm_pin_write_thaw(struct gmm_region *r, uint32_t first, uint32_t n);

/* ---- tracker.c (writer side: wlock held) --------------------------- */

/* Strategies whose writer may signal walker threads: kick, count, and
 * membarrier (its fallback when membarrier() fails at run time).  Their
 * VMs install the kick handler and their walkers unblock the signal. */
static inline bool gmm_strategy_kicks(unsigned s)
{
	return s == GMM_STRATEGY_KICK || s == GMM_STRATEGY_COUNT || s == GMM_STRATEGY_MEMBARRIER;
}

/*
 * 0 if the calling process created vm; else -ECHILD with gmm_seterr().  A
 * forked child inherits a copy of the VM whose walker threads do not exist
 * in it (and whose locks may be held by parent threads that do not exist
 * either): every writer entry point and gmm_walker_register call this
 * first and fail.  One getpid() call: writer paths only.
 */
int gmm_vm_check_owner(struct gmm_vm *vm);

/*
 * Take / release the writer mutex (vm->wlock) from a writer entry point,
 * which the caller may call from a registered walker thread (a device
 * thread that also unmaps), outside any walk of vm.  The caller's walkers
 * of vm are "parked" meanwhile: a kick round neither signals nor waits for
 * them (tracker.c, "parked walkers").  Plain pthread_mutex_lock(&vm->wlock)
 * deadlocks there under ThreadSanitizer: a round that holds wlock waits
 * for an acknowledgement only the blocked thread's deferred handler gives.
 * Every writer entry point (table.c, vm.c) uses these, never the mutex
 * itself.  gmm_writer_lock first checks the caller owns the VM
 * (gmm_vm_check_owner): in a forked child it takes nothing and returns
 * -ECHILD, which the entry point returns (or, returning no error, treats
 * as "nothing to do").
 */
int gmm_writer_lock(struct gmm_vm *vm) __attribute__((warn_unused_result));
/* wlock held, gpa < GMM_GPA_LIMIT: the leaf entry covering gpa (0 if
 * none) and the size of the slot that holds it or the hole there (aligned:
 * the next slot starts at (gpa & ~(span - 1)) + span).  table.c. */
uint64_t gmm_table_peek(struct gmm_vm *vm, uint64_t gpa, uint64_t *span);
/* The memory file fd reaches off + r->size (snapshot.c, for the Copy load
 * and the on-demand start): 0, or -EINVAL "truncated" (-errno if fstat
 * fails) with the error set. */
struct gmm_region;
int gmm_snapshot_file_covers(int fd, const struct gmm_region *r, uint64_t off);
void gmm_writer_unlock(struct gmm_vm *vm);

int gmm_tracker_init(struct gmm_vm *vm);
void gmm_tracker_fini(struct gmm_vm *vm);
/* After the leaves of one block were cleared: per-block strategies (kick,
 * count) serialise here; the others do nothing. */
void gmm_tracker_block(struct gmm_vm *vm);
/* After every leaf of [lo, hi) was cleared (and the table pages queued for
 * freeing cover no GPA outside it): per-range strategies serialise here;
 * per-block ones do nothing (they already did).  membarrier waits only for
 * walkers whose walk touched [lo, hi). */
void gmm_tracker_range(struct gmm_vm *vm, uint64_t lo, uint64_t hi);
/* Unconditional, full serialisation by the VM's strategy: returns once
 * every walk section open when it was called has ended, whatever the walk
 * translated (membarrier does not filter by hazard range here).  For
 * anything a walk reads that is not a table entry of a cleared range:
 * region descriptors, block arrays, a caller's structures, table pages
 * that may lie anywhere. */
void gmm_tracker_sync(struct gmm_vm *vm);
/* Walks in flight now (approximate for rcu: 0). */
uint64_t gmm_tracker_inflight(struct gmm_vm *vm);

#endif
