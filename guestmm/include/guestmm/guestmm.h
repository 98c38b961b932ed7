/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * guestmm.h - one VM's guest memory: creation, configuration, errors, statistics.
 *
 * A struct gmm_vm owns a set of regions of guest RAM (region.h), the host-side
 * GPA -> HVA table that vCPU and device threads walk without locks (walk.h),
 * the writer side that maps, unmaps, splits, collapses and protects (table.h),
 * the in-flight walker tracker that makes unmapping safe (tracker.h), the
 * table-page pool, and pins for accesses that outlive a walk (pin.h).
 *
 * Locking: every writer operation takes the VM's writer mutex; walkers never
 * take any lock.  Functions say beside their declaration which side they are.
 *
 * Processes: a VM belongs to the process that created it.  In a child made
 * by fork() its walker threads do not exist (and its locks may be held by
 * threads that do not exist either), so nothing in the child waits on
 * them: gmm_walker_register fails with ECHILD and every writer operation
 * that returns an error (map, unmap, split, collapse, discard, protect,
 * region add/remove) with -ECHILD, at once; gmm_synchronize, gmm_reclaim
 * and gmm_vm_destroy do nothing, gmm_vm_stats gives zeros, the region and
 * table lookups find nothing; gmm_walker_unregister only forgets the
 * walker in the calling thread.  Create a new VM in the child if it needs
 * one.
 *
 * Threads: a walker thread that exits while registered is unregistered at
 * its exit (a walk it left open is ended first).
 *
 * Errors: functions return 0 or a negative errno; a pointer-returning function
 * returns NULL and sets errno.  Either way gmm_last_error() gives a sentence
 * for the user (thread-local, valid until the next failing call).
 */
#ifndef GUESTMM_GUESTMM_H
#define GUESTMM_GUESTMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct gmm_vm;
struct gmm_region;
struct gmm_walker;

#define GMM_PAGE_SIZE 4096ULL
#define GMM_2M (2ULL << 20)
#define GMM_1G (1ULL << 30)
/* Guest-physical addresses handled by the table: 4 levels of 9 bits + 12. */
#define GMM_GPA_BITS 48
#define GMM_GPA_LIMIT (1ULL << GMM_GPA_BITS)

/* In-flight walker tracker strategies (see tracker.h for what each does). */
enum gmm_strategy {
	GMM_STRATEGY_KICK,
	GMM_STRATEGY_COUNT,
	GMM_STRATEGY_PERTHREAD,
	GMM_STRATEGY_MEMBARRIER,
	GMM_STRATEGY_RCU,
	GMM_STRATEGY__N,
};

/* The default, chosen from the benchmark (README "The default strategy"):
 * membarrier where the kernel has MEMBARRIER_CMD_PRIVATE_EXPEDITED, else
 * perthread (the same writer side with a full barrier in each walk). */
enum gmm_strategy gmm_strategy_default(void);
#define GMM_STRATEGY_DEFAULT (gmm_strategy_default())

/* True if the running kernel and library support strategy s. */
int gmm_strategy_available(int s);

const char *gmm_strategy_name(enum gmm_strategy s);
/* "kick", "count", "perthread", "membarrier", "rcu"; returns -EINVAL otherwise. */
int gmm_strategy_parse(const char *name, enum gmm_strategy *out);

/* VM flags. */
enum {
	/* Test only: the writer skips serialisation entirely.  Exists so the
	 * stress test can prove that it catches a missing tracker. */
	GMM_VM_TEST_NO_SERIALIZE = 1u << 0,
};

struct gmm_vm_config {
	enum gmm_strategy strategy;   /* gmm_vm_config_init() sets the default */
	uint64_t table_pages_limit;   /* 0: default (65536 pages = 256 MiB) */
	uint64_t table_pages_reserve; /* 0: default (16); pages kept for unmap/teardown */
	int kick_signal;              /* 0: SIGRTMIN + 2 */
	unsigned pin_timeout_ms;      /* how long unmap waits for pins; 0: default 1000 */
	unsigned flags;               /* GMM_VM_* */
};

/* Fill *cfg with the defaults (strategy GMM_STRATEGY_DEFAULT). */
void gmm_vm_config_init(struct gmm_vm_config *cfg);

/* Create an empty VM.  Fails with -ENOSYS if the strategy needs a kernel or
 * library facility that is missing (membarrier), -EINVAL on a bad config. */
int gmm_vm_create(const struct gmm_vm_config *cfg, struct gmm_vm **out);

/* Remove every region (unmapping for real), free every table page.  Every
 * walker must have unregistered and every pin been released first. */
void gmm_vm_destroy(struct gmm_vm *vm);

enum gmm_strategy gmm_vm_strategy(const struct gmm_vm *vm);

/* Statistics.  Sampled without stopping walkers: each field is exact for
 * itself, the set is not a snapshot of one instant. */
struct gmm_stats {
	uint64_t walkers;              /* registered walker threads */
	uint64_t translations;         /* successful translate calls */
	uint64_t translate_faults;     /* translations of unmapped/protected GPAs */
	uint64_t walks_in_flight;      /* walk sections open now */
	/* A serialisation is "issued" when the writer disturbed or waited for
	 * other threads (signals sent, a walker waited for, membarrier IPIs,
	 * an RCU grace period), "skipped" when it found nobody to wait for
	 * (count: the count read zero; perthread: no walker in flight; kick:
	 * no other walker to signal).  membarrier and rcu cannot tell, so they
	 * always issue. */
	uint64_t serialize_issued;
	uint64_t serialize_skipped;
	uint64_t serialize_ns;         /* time the writer spent serialising */
	uint64_t kicks_sent;           /* signals sent to walker threads */
	uint64_t walker_waits;         /* in-flight walkers the writer waited for */
	uint64_t walkers_outside;      /* membarrier: in-flight walkers not waited for,
	                                  their walk being outside the unmapped range */
	uint64_t table_pages_in_use;
	uint64_t table_pages_peak;
	uint64_t table_pages_limit;
	uint64_t table_pages_reserve_free;
	uint64_t table_pages_deferred; /* unlinked, waiting for the grace period */
	uint64_t splits;
	uint64_t collapses;
	uint64_t pins_active;
	uint64_t pins_total;
	uint64_t pin_waits;            /* unmaps that had to wait for a pin */
	uint64_t pin_busy;             /* unmaps that failed with EBUSY on a pin */
	uint64_t maps;                 /* map operations (blocks brought back) */
	uint64_t unmaps;               /* unmap operations */
	uint64_t unmapped_bytes;
	uint64_t released_bytes;       /* host memory given back (munmap/discard) */
	uint64_t late_reads;           /* walkers that read a poisoned (freed) table page */
	uint64_t mapped_bytes;         /* guest bytes currently translatable */
};

/* Any thread, but not inside a walk of vm (a writer waiting for walks to
 * end holds the lock that sums the walkers' counters). */
void gmm_vm_stats(struct gmm_vm *vm, struct gmm_stats *st);
/* One line per field, "name value", for reports and the API. */
int gmm_stats_format(const struct gmm_stats *st, char *buf, size_t len);

/* Thread-local description of the last failure. */
const char *gmm_last_error(void);

/* Logging (stderr by default, "guestmm: <level>: msg"). */
enum gmm_log_level { GMM_LOG_ERROR, GMM_LOG_WARN, GMM_LOG_INFO, GMM_LOG_DEBUG };
typedef void (*gmm_log_fn)(enum gmm_log_level lvl, const char *msg);
void gmm_set_log_level(enum gmm_log_level lvl);
void gmm_set_log_fn(gmm_log_fn fn); /* NULL restores stderr */

#ifdef __cplusplus
}
#endif

#include <guestmm/region.h>
#include <guestmm/table.h>
#include <guestmm/tracker.h>
#include <guestmm/walk.h>
#include <guestmm/pin.h>
#include <guestmm/snapshot.h>
#include <guestmm/dirty.h>

#endif
