/*
 * fault.h - fault injection and race-window hooks, for tests only.
 *
 * After Linux's fault-injection framework (Documentation/fault-injection):
 * each place where the library asks the host for something that can fail
 * is a named site.  In the release library GMM_FAULT(site) is the constant
 * false and GMM_HOOK() nothing, so the compiler removes both.  The test
 * library (guestmm_fi in guestmm/meson.build: the same sources compiled
 * with -DGMM_FAULT_INJECTION, plus fault.c) makes a site fail on demand:
 *
 *   gmm_fault_set(GMM_FAULT_PTP_ALLOC, 3, 0);     the 3rd call from now fails
 *   gmm_fault_set(GMM_FAULT_RELEASE, 1, 1);       every call fails
 *   gmm_fault_set(GMM_FAULT_REMAP, 5, 10);        the 5th, 15th, 25th ... fail
 *   gmm_fault_set_random(GMM_FAULT_RELEASE, 20000, seed);   2% of calls fail
 *   gmm_fault_hits(site);                          failures injected so far
 *   gmm_fault_reset();                             every site back to never
 *
 * A site that fires behaves as the host call failing would: it returns the
 * error the real call returns (ENOMEM for mmap/munmap/madvise, EPERM for
 * membarrier, as a seccomp filter does) and changes nothing.
 *
 * Hooks (GMM_HOOK) are points where a test may run code of its own to widen
 * a race window (sleep, wait for another thread); they exist only in the
 * test library.  Counters are atomics: sites fire from any thread.
 */
#ifndef GUESTMM_FAULT_H
#define GUESTMM_FAULT_H

#include <stdbool.h>
#include <stdint.h>

enum gmm_fault_site {
	GMM_FAULT_PTP_ALLOC,   /* gmm_pool_alloc: a table page (NULL, as at the limit) */
	GMM_FAULT_POOL_MMAP,   /* the pool's chunk mmap (ENOMEM) */
	GMM_FAULT_MEMBARRIER,  /* membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) (EPERM) */
	GMM_FAULT_RELEASE,     /* gmm_backing_release: munmap / madvise / punch (ENOMEM) */
	GMM_FAULT_REMAP,       /* gmm_backing_remap: the mmap (ENOMEM) */
	GMM_FAULT__N,
};

enum gmm_hook_point {
	/* gmm_region_lookup, between loading a slot and reading the region:
	 * arg is the region loaded (non-NULL). */
	GMM_HOOK_REGION_LOOKUP,
	/* gmm_backing_release (not discard), once the host range's memory is
	 * gone: arg is a struct gmm_hook_range (the host range). */
	GMM_HOOK_RELEASED,
	/* ack() (tracker.c), between its load of the request and its raise
	 * of the acknowledgement; may run in a signal handler: arg is the
	 * walker. */
	GMM_HOOK_ACK,
	GMM_HOOK__N,
};

struct gmm_hook_range {
	void *addr;
	uint64_t len;
};

typedef void (*gmm_hook_fn)(enum gmm_hook_point h, void *arg);

#ifdef GMM_FAULT_INJECTION
bool gmm_fault_fire(enum gmm_fault_site s);
void gmm_hook_call(enum gmm_hook_point h, void *arg);
#define GMM_FAULT(site) __builtin_expect(gmm_fault_fire(site), 0)
#define GMM_HOOK(h, arg) gmm_hook_call((h), (arg))
/* The copy helpers' batch (walk.c): small in the test library so that a
 * test can reach the multi-batch path without 65 regions. */
#define GMM_COPY_SPANS 4
#else
#define GMM_FAULT(site) ((void)(site), false)
#define GMM_HOOK(h, arg) ((void)0)
#endif

/* Test-side control (only in the test library). */
/* Fail the nth call from now (1 = the next one), then every `every`th call
 * after it (0: only once).  nth 0 disarms the site. */
void gmm_fault_set(enum gmm_fault_site s, uint64_t nth, uint64_t every);
/* Fail each call with probability per_million / 10^6 (deterministic for a
 * seed).  0 disarms. */
void gmm_fault_set_random(enum gmm_fault_site s, uint32_t per_million, uint64_t seed);
uint64_t gmm_fault_hits(enum gmm_fault_site s);
uint64_t gmm_fault_calls(enum gmm_fault_site s);
void gmm_fault_reset(void);
void gmm_hook_set(enum gmm_hook_point h, gmm_hook_fn fn);

#endif
