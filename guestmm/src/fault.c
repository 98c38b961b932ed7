/*
 * fault.c - fault injection and hooks (fault.h); only in the test library.
 *
 * Lock-free: a site's settings are plain atomics read with relaxed loads.
 * A test arms a site before the operation it wants to fail and disarms it
 * after; a call racing with gmm_fault_set sees the old or the new settings,
 * either being a valid choice.
 */
#include "internal.h"

#include <stdatomic.h>

#ifndef GMM_FAULT_INJECTION
#error "fault.c belongs to the fault-injection build only"
#endif

struct site {
	_Atomic uint64_t calls;        /* since the last gmm_fault_set */
	_Atomic uint64_t hits;
	_Atomic uint64_t nth, every;
	_Atomic uint32_t ppm;
	_Atomic uint64_t seed;
};

static struct site sites[GMM_FAULT__N];
static _Atomic(gmm_hook_fn) hooks[GMM_HOOK__N];

#define ST(x, v) GMM_WRITE_ONCE(x, v)

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

bool gmm_fault_fire(enum gmm_fault_site s)
{
	struct site *f = &sites[s];
	uint64_t n = atomic_fetch_add_explicit(&f->calls, 1, memory_order_relaxed) + 1;
	uint64_t nth = LD(f->nth), every = LD(f->every);
	uint32_t ppm = LD(f->ppm);
	bool fire = false;

	if (nth && n == nth)
		fire = true;
	else if (nth && every && n > nth && (n - nth) % every == 0)
		fire = true;
	else if (ppm && splitmix64(LD(f->seed) + n) % 1000000 < ppm)
		fire = true;
	if (fire)
		atomic_fetch_add_explicit(&f->hits, 1, memory_order_relaxed);
	return fire;
}

void gmm_fault_set(enum gmm_fault_site s, uint64_t nth, uint64_t every)
{
	ST(sites[s].ppm, 0);
	ST(sites[s].nth, 0);
	ST(sites[s].calls, 0);
	ST(sites[s].every, every);
	ST(sites[s].nth, nth);
}

void gmm_fault_set_random(enum gmm_fault_site s, uint32_t per_million, uint64_t seed)
{
	ST(sites[s].nth, 0);
	ST(sites[s].seed, seed);
	ST(sites[s].ppm, per_million);
}

uint64_t gmm_fault_hits(enum gmm_fault_site s)
{
	return LD(sites[s].hits);
}

uint64_t gmm_fault_calls(enum gmm_fault_site s)
{
	return LD(sites[s].calls);
}

void gmm_fault_reset(void)
{
	for (int s = 0; s < GMM_FAULT__N; s++) {
		ST(sites[s].nth, 0);
		ST(sites[s].ppm, 0);
		ST(sites[s].every, 0);
		ST(sites[s].calls, 0);
		ST(sites[s].hits, 0);
	}
	for (int h = 0; h < GMM_HOOK__N; h++)
		ST(hooks[h], (gmm_hook_fn)0);
}

void gmm_hook_set(enum gmm_hook_point h, gmm_hook_fn fn)
{
	atomic_store_explicit(&hooks[h], fn, memory_order_release);
}

void gmm_hook_call(enum gmm_hook_point h, void *arg)
{
	gmm_hook_fn fn = atomic_load_explicit(&hooks[h], memory_order_acquire);
	if (fn)
		fn(h, arg);
}
