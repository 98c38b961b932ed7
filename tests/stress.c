// SPDX-License-Identifier: GPL-2.0-only
/*
 * stress.c - walkers against a writer: the core shared by the Criterion
 * front-end (test_stress.c) and the plain one for TSan (stress_tsan.c).
 *
 * N walker threads translate random guest addresses and write a canary
 * through the pointer (each walker its own word of the page, so nobody
 * else writes it), hold it for a moment, and read it back before the walk
 * ends.  One pinner thread does the same through pins.  Meanwhile the
 * writer unmaps (real munmap, single ranges and lists through
 * gmm_unmap_ranges), discards, remaps, splits, collapses and
 * write-protects at random.  With a working tracker no walker ever faults
 * (SIGSEGV is caught and counted, not fatal), no canary changes under a
 * walker, and no walker reads a poisoned (freed) table page.
 *
 * The same run with serialisation switched off (GMM_VM_TEST_NO_SERIALIZE)
 * must be caught: that is what shows this test can fail.
 *
 * GMM_STRESS_TRANSLATIONS sets the translations per strategy (default
 * 10^7; scripts/test lowers it for the TSan build, run by hand higher).
 *
 * Built against the fault-injection library (stress_faults), with
 * st->inject set: table-page allocations, the pool's chunk mmap, backing
 * remaps and releases fail at random (one call in ten), and every
 * writer operation that fails must leave the table as it was -- the
 * writer compares its view of the block's 512 translations before and
 * after.  The one failure that does change something, by contract, is an
 * unmap whose host release failed after the leaves were cleared: the range
 * must then read as unmapped (table.h, gmm_unmap).
 *
 * GMM_STRESS_CHURN: odd walkers unregister and register again every that
 * many iterations (default 16384; 0: never).
 */
#include "stress.h"
#include "walkers.h"
#ifdef GMM_FAULT_INJECTION
#include "fault.h"
#endif

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NWALKERS 4
#define REGION_GPA 0x40000000ULL    /* 1 GiB: above a small low region */
#define REGION_SIZE (32ULL << 20)  /* 16 THP blocks */
#define NBLOCKS (REGION_SIZE / GMM_2M)
#define HOLD_SPINS 32




struct walker_arg {
	struct stress *st;
	int id;
};

static void *walker_main(void *p)
{
	struct walker_arg *a = p;
	struct stress *st = a->st;
	struct gmm_walker *volatile w = gmm_walker_register(st->vm); /* re-registered: volatile across siglongjmp */
	uint64_t seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(a->id + 1);
	uint64_t ok = 0, failed = 0;
	volatile uint64_t faults = 0, canary = 0;

	if (!w)
		return NULL;
	if (sigsetjmp(fault_jb, 1)) {
		/* A stale pointer faulted: close the walk and go on. */
		faults++;
		gmm_walk_end(w);
	}
	fault_armed = 1;
	for (uint64_t iter = 1; !atomic_load_explicit(&st->stop, memory_order_relaxed); iter++) {
		uint64_t page = xorshift(&seed) % (REGION_SIZE / GMM_PAGE_SIZE);
		uint64_t gpa = REGION_GPA + page * GMM_PAGE_SIZE + (uint64_t)a->id * 8;
		/* Odd walkers leave and come back now and then, so that
		 * walkers unregister while kick rounds and waits are under
		 * way (tracker.c: retired walkers, `leaving`). */
		if ((a->id & 1) && st->churn && iter % st->churn == 0) {
			gmm_walker_unregister(w);
			w = gmm_walker_register(st->vm);
			if (!w)
				abort();
		}
		gmm_walk_begin(w);
		volatile uint64_t *q = gmm_translate(w, gpa, 8, GMM_ACCESS_WRITE);
		if (q) {
			uint64_t v = ((uint64_t)a->id << 56) | (ok & 0xffffffffffffULL);
			*q = v;
			for (int i = 0; i < st->hold; i++)
				relax();
			if (*q != v)
				canary++;
			ok++;
		} else {
			failed++;
		}
		gmm_walk_end(w);
		if (q && (ok & 1023) == 0 &&
		    atomic_fetch_add(&st->translations, 1024) + 1024 >= st->target)
			atomic_store(&st->stop, true);
	}
	fault_armed = 0;
	atomic_fetch_add(&st->failed, failed);
	atomic_fetch_add(&st->faults, faults);
	atomic_fetch_add(&st->canary, canary);
	gmm_walker_unregister(w);
	return NULL;
}

/* A device thread: pins a page, uses it for a while outside any walk. */
static void *pinner_main(void *p)
{
	struct walker_arg *a = p;
	struct stress *st = a->st;
	struct gmm_walker *w = gmm_walker_register(st->vm);
	uint64_t seed = 0x1234567ULL;
	volatile uint64_t faults = 0, canary = 0;
	uint64_t pins = 0, busy = 0;

	if (!w)
		return NULL;
	if (sigsetjmp(fault_jb, 1))
		faults++;
	fault_armed = 1;
	while (!atomic_load_explicit(&st->stop, memory_order_relaxed)) {
		uint64_t page = xorshift(&seed) % (REGION_SIZE / GMM_PAGE_SIZE);
		uint64_t gpa = REGION_GPA + page * GMM_PAGE_SIZE + (uint64_t)a->id * 8;
		struct gmm_pin pin;
		int ret = gmm_pin(w, gpa, 8, GMM_ACCESS_WRITE, &pin);
		if (ret == -EAGAIN)
			busy++;
		if (ret)
			continue;
		volatile uint64_t *q = pin.hva;
		uint64_t v = 0xabcd000000000000ULL | pins;
		*q = v;
		for (int i = 0; i < 200; i++)
			relax();
		if (*q != v)
			canary++;
		gmm_unpin(st->vm, &pin);
		pins++;
	}
	fault_armed = 0;
	atomic_fetch_add(&st->faults, faults);
	atomic_fetch_add(&st->canary, canary);
	atomic_fetch_add(&st->pins, pins);
	atomic_fetch_add(&st->pin_busy, busy);
	gmm_walker_unregister(w);
	return NULL;
}

#ifdef GMM_FAULT_INJECTION
/* The writer's view of a block: each 4 KiB page's host address and write
 * bit, 0 if unmapped. */
static void view(struct gmm_vm *vm, uint64_t base, uint64_t *v)
{
	for (unsigned i = 0; i < 512; i++) {
		uint64_t gpa = base + i * GMM_PAGE_SIZE, sz = 0;
		uint64_t e = gmm_table_lookup(vm, gpa, &sz);
		v[i] = e ? ((e & GMM_PTE_ADDR) + (gpa & (sz - 1))) | (e & GMM_PTE_WRITE) : 0;
	}
}

static uint64_t injected(void)
{
	uint64_t n = 0;
	for (int s = 0; s < GMM_FAULT__N; s++)
		n += gmm_fault_hits((enum gmm_fault_site)s);
	return n;
}
#endif

/*
 * Fault mode: an operation on [lo, hi) of the block at base returned ret.
 * A failure caused by an injected fault is accepted if the block's view is
 * as it was (before), or, for an unmap whose release failed, as it was with
 * [lo, hi) unmapped.  Returns the ret the caller should judge.
 */
static int judge(struct stress *st, uint64_t base, const uint64_t *before, int ret,
		 uint64_t hits0, uint64_t rel0, bool is_unmap, uint64_t lo, uint64_t hi)
{
#ifdef GMM_FAULT_INJECTION
	if (!st->inject || ret == 0 || injected() == hits0)
		return ret;
	uint64_t after[512];
	view(st->vm, base, after);
	bool released = is_unmap && gmm_fault_hits(GMM_FAULT_RELEASE) != rel0;
	for (unsigned i = 0; i < 512; i++) {
		uint64_t gpa = base + i * GMM_PAGE_SIZE;
		uint64_t want = released && gpa >= lo && gpa < hi ? 0 : before[i];
		if (after[i] != want) {
			if (!st->error[0])
				snprintf(st->error, sizeof(st->error),
					 "a failed operation (%d: %s) changed the translation of 0x%llx: "
					 "%#llx, was %#llx", ret, gmm_last_error(),
					 (unsigned long long)gpa, (unsigned long long)after[i],
					 (unsigned long long)before[i]);
			return ret;
		}
	}
	atomic_fetch_add(&st->failed_ops, 1);
	return 0;
#else
	(void)st, (void)base, (void)before, (void)hits0, (void)rel0, (void)is_unmap, (void)lo, (void)hi;
	return ret;
#endif
}

/* One random writer operation on block b.  Errors that the operation may
 * legitimately return (not splittable now, not collapsible) are fine;
 * anything else fails the test. */
static void writer_op(struct stress *st, uint64_t *seed, uint64_t *ops)
{
	struct gmm_vm *vm = st->vm;
	uint64_t b = xorshift(seed) % NBLOCKS;
	uint64_t base = REGION_GPA + b * GMM_2M;
	uint64_t page = base + (xorshift(seed) % 512) * GMM_PAGE_SIZE;
	uint64_t leaf = 0;
	int ret = 0;
	uint64_t before[512], hits0 = 0, rel0 = 0;
#ifdef GMM_FAULT_INJECTION
#define SNAP()                                                  \
	do {                                                    \
		if (st->inject) {                               \
			view(vm, base, before);                 \
			hits0 = injected();                     \
			rel0 = gmm_fault_hits(GMM_FAULT_RELEASE); \
		}                                               \
	} while (0)
#else
#define SNAP() do { } while (0)
#endif

	SNAP();
	switch (xorshift(seed) % 8) {
	case 0: /* munmap the whole block */
	case 1:
		ret = gmm_unmap(vm, base, GMM_2M, 0);
		ret = judge(st, base, before, ret, hits0, rel0, true, base, base + GMM_2M);
		break;
	case 2: /* bring the block back (whatever is missing) */
	case 3:
		ret = gmm_map(vm, base, GMM_2M);
		ret = judge(st, base, before, ret, hits0, rel0, false, 0, 0);
		break;
	case 4: /* split it, if it is one leaf */
		if (gmm_table_lookup(vm, base, &leaf) && leaf == GMM_2M)
			ret = gmm_split(vm, base);
		ret = judge(st, base, before, ret, hits0, rel0, false, 0, 0);
		break;
	case 5: /* collapse, if whole */
		ret = gmm_collapse(vm, base);
		if (ret == -EAGAIN || ret == -EINVAL)
			ret = 0;
		ret = judge(st, base, before, ret, hits0, rel0, false, 0, 0);
		break;
	case 6: /* discard or munmap one 4 KiB page (splits the block); or two
		 * pages as a list (gmm_unmap_ranges: one serialisation for both) */
		if ((xorshift(seed) & 1) && page + 2 * GMM_PAGE_SIZE <= base + GMM_2M) {
			struct gmm_range r[2] = { { page, GMM_PAGE_SIZE },
						  { page + GMM_PAGE_SIZE, GMM_PAGE_SIZE } };
			ret = gmm_unmap_ranges(vm, r, 2, (xorshift(seed) & 1) ? GMM_UNMAP_DISCARD : 0);
			ret = judge(st, base, before, ret, hits0, rel0, true, page,
				    page + 2 * GMM_PAGE_SIZE);
			break;
		}
		ret = gmm_unmap(vm, page, GMM_PAGE_SIZE, (xorshift(seed) & 1) ? GMM_UNMAP_DISCARD : 0);
		ret = judge(st, base, before, ret, hits0, rel0, true, page, page + GMM_PAGE_SIZE);
		break;
	case 7: /* write-protect and restore */
		ret = gmm_protect(vm, base, GMM_2M, false);
		ret = judge(st, base, before, ret, hits0, rel0, false, 0, 0);
		SNAP();
		if (!ret)
			ret = gmm_protect(vm, base, GMM_2M, true);
		ret = judge(st, base, before, ret, hits0, rel0, false, 0, 0);
		break;
	}
#undef SNAP
	/* A pin held past the pin timeout (the pinner preempted on a loaded
	 * machine) makes unmap and protect give up with -EBUSY, changing
	 * nothing: the contract, not a failure. */
	if (ret == -EBUSY)
		ret = 0;
	if (ret != 0 && !st->error[0])
		snprintf(st->error, sizeof(st->error), "writer op failed: %s", gmm_last_error());
	(*ops)++;
}

#define CHECK(cond, ...)                                                        \
	do {                                                                    \
		if (!(cond) && !st->error[0])                                   \
			snprintf(st->error, sizeof(st->error), __VA_ARGS__);    \
	} while (0)

int run_stress(enum gmm_strategy s, unsigned flags, struct stress *st)
{
	const char *env = getenv("GMM_STRESS_TRANSLATIONS");
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	cfg.strategy = s;
	cfg.flags = flags;
	if (!gmm_strategy_available(s))
		return 1;
	if (gmm_vm_create(&cfg, &st->vm) < 0) {
		snprintf(st->error, sizeof(st->error), "create: %s", gmm_last_error());
		return -1;
	}
	st->target = env ? strtoull(env, NULL, 0) : 10000000ULL;
	env = getenv("GMM_STRESS_CHURN");
	st->churn = env ? strtoull(env, NULL, 0) : 16384;

	struct gmm_region_spec spec = {
		.gpa = REGION_GPA, .size = REGION_SIZE, .backing = GMM_BACKING_THP, .name = "stress",
	};
	if (gmm_region_add(st->vm, &spec, NULL) < 0) {
		snprintf(st->error, sizeof(st->error), "region: %s", gmm_last_error());
		gmm_vm_destroy(st->vm);
		return -1;
	}

#ifdef GMM_FAULT_INJECTION
	if (st->inject) {
		/* One host answer in ten is a failure. */
		gmm_fault_set_random(GMM_FAULT_PTP_ALLOC, 100000, 1 + (uint64_t)s);
		gmm_fault_set_random(GMM_FAULT_POOL_MMAP, 100000, 2 + (uint64_t)s);
		gmm_fault_set_random(GMM_FAULT_REMAP, 100000, 3 + (uint64_t)s);
		gmm_fault_set_random(GMM_FAULT_RELEASE, 100000, 4 + (uint64_t)s);
	}
#endif
	install_fault_catcher();

	pthread_t th[NWALKERS + 1];
	struct walker_arg args[NWALKERS + 1];
	for (int i = 0; i <= NWALKERS; i++) {
		args[i] = (struct walker_arg){ st, i };
		if (pthread_create(&th[i], NULL, i < NWALKERS ? walker_main : pinner_main, &args[i]))
			abort();
	}
	uint64_t seed = 0xfeedULL + (uint64_t)s, ops = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!atomic_load(&st->stop)) {
		writer_op(st, &seed, &ops);
		if (st->error[0])
			atomic_store(&st->stop, true);
		/* The writer is not starved of checks for the stop flag;
		 * give walkers the CPU now and then (2 cores, 6 threads). */
		if ((ops & 63) == 0)
			sched_yield();
	}
	for (int i = 0; i <= NWALKERS; i++)
		pthread_join(th[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);

	/* A collapse among the last operations leaves its old table page
	 * deferred until the next grace period (freed at 64 or by the next
	 * serialising operation): wait it out as the API says, then every
	 * page must be back. */
	gmm_reclaim(st->vm);
	struct gmm_stats gs;
	gmm_vm_stats(st->vm, &gs);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	fprintf(stderr,
		"stress %-10s%s: %.1fs, %llu translations (%llu failed), %llu writer ops, "
		"%llu unmaps, %llu splits, %llu collapses, ser %llu issued/%llu skipped, "
		"%llu kicks, %.2f ms/serialisation, %llu walkers waited/%llu outside the range, "
		"%llu pins (%llu busy), faults %llu, canary %llu, late reads %llu\n",
		gmm_strategy_name(s), (flags & GMM_VM_TEST_NO_SERIALIZE) ? " (no serialisation)" : "",
		secs, (unsigned long long)gs.translations, (unsigned long long)atomic_load(&st->failed),
		(unsigned long long)ops, (unsigned long long)gs.unmaps, (unsigned long long)gs.splits,
		(unsigned long long)gs.collapses, (unsigned long long)gs.serialize_issued,
		(unsigned long long)gs.serialize_skipped, (unsigned long long)gs.kicks_sent,
		gs.serialize_issued ? (double)gs.serialize_ns / 1e6 / (double)gs.serialize_issued : 0.0,
		(unsigned long long)gs.walker_waits, (unsigned long long)gs.walkers_outside,
		(unsigned long long)atomic_load(&st->pins), (unsigned long long)atomic_load(&st->pin_busy),
		(unsigned long long)atomic_load(&st->faults), (unsigned long long)atomic_load(&st->canary),
		(unsigned long long)gs.late_reads);
	/* The run did what it claims: enough translations, a busy writer,
	 * walkers that really met unmapped blocks. */
	CHECK(gs.translations >= st->target, "only %llu translations", (unsigned long long)gs.translations);
	/* Scaled for short runs (GMM_STRESS_TRANSLATIONS below 10^7): the
	 * writer's share of two busy cores is not steady enough for fixed
	 * floors there. */
	uint64_t min_unmaps = st->target / 100000 < 100 ? st->target / 100000 : 100;
	uint64_t min_splits = st->target / 1000000 < 10 ? st->target / 1000000 : 10;
	CHECK(gs.unmaps > min_unmaps, "only %llu unmaps", (unsigned long long)gs.unmaps);
	CHECK(gs.splits > min_splits, "only %llu splits", (unsigned long long)gs.splits);
	CHECK(gs.collapses > 0, "no collapse");
	CHECK(atomic_load(&st->failed) > 0, "walkers never met an unmapped block");
	CHECK(atomic_load(&st->pins) > 0, "no pin succeeded");
	st->gs = gs;
	if (!(flags & GMM_VM_TEST_NO_SERIALIZE)) {
		CHECK(gs.walks_in_flight == 0, "walks still in flight");
		CHECK(gs.table_pages_deferred == 0, "table pages still deferred");
		CHECK(atomic_load(&st->faults) == 0, "walkers faulted on released memory");
		CHECK(atomic_load(&st->canary) == 0, "a canary changed under a walker");
		CHECK(gs.late_reads == 0, "a walker read a freed table page");
	}
#ifdef GMM_FAULT_INJECTION
	if (st->inject) {
		fprintf(stderr, "stress %-10s: %llu faults injected, %llu writer ops failed and changed "
			"nothing they should not have\n", gmm_strategy_name(s),
			(unsigned long long)injected(), (unsigned long long)atomic_load(&st->failed_ops));
		CHECK(atomic_load(&st->failed_ops) > 0, "no injected failure failed an operation");
		gmm_fault_reset();
	}
#endif
	gmm_vm_destroy(st->vm);
	return st->error[0] ? -1 : 0;
}

