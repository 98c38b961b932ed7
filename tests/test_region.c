/*
 * test_region.c - region removal and full synchronisation against walks in
 * flight (issue 12, defects 1, 2 and 7).  Linked with the fault-injection
 * library (guestmm_fi): a hook widens the window between a lockless region
 * lookup's slot load and its read of the region.
 */
#include <criterion/criterion.h>
#include <guestmm/guestmm.h>

#include "internal.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct gmm_vm *vm;

static void mkvm(enum gmm_strategy s)
{
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	cfg.strategy = s;
	cfg.pin_timeout_ms = 300;
	cr_assert_eq(gmm_vm_create(&cfg, &vm), 0, "%s", gmm_last_error());
}

static void rmvm(void)
{
	gmm_fault_reset();
	gmm_vm_destroy(vm);
	vm = NULL;
}

static struct gmm_region *add(uint64_t gpa, uint64_t size, enum gmm_backing b, const char *name)
{
	struct gmm_region *r;
	struct gmm_region_spec spec = { .gpa = gpa, .size = size, .backing = b, .name = name };
	cr_assert_eq(gmm_region_add(vm, &spec, &r), 0, "%s", gmm_last_error());
	return r;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Wait (bounded) for *flag to become nonzero. */
static bool wait_flag(_Atomic int *flag, unsigned ms)
{
	for (unsigned i = 0; i < ms && !atomic_load(flag); i++)
		sleep_ms(1);
	return atomic_load(flag) != 0;
}

/* ---- defect 1: a pin's region lookup reads a region being removed ---- */

static struct gmm_region *victim;
static _Atomic int in_lookup, removed, removed_before_read;
static __thread bool hook_armed;

static void lookup_hook(enum gmm_hook_point h, void *arg)
{
	(void)h;
	if (!hook_armed || arg != victim)
		return;
	hook_armed = false;
	atomic_store(&in_lookup, 1);
	/* Give the remover up to 500 ms to free the region under us.  A
	 * correct removal cannot return while this walk is open, so the flag
	 * stays 0 and we go on after the wait. */
	wait_flag(&removed, 500);
	atomic_store(&removed_before_read, atomic_load(&removed));
	/* Back in gmm_region_lookup, the caller now reads victim->gpa/size:
	 * freed memory if the removal did not wait (ASan: heap-use-after-free). */
}

static void *pinner(void *p)
{
	uint64_t gpa = *(uint64_t *)p;
	struct gmm_walker *w = gmm_walker_register(vm);
	struct gmm_pin pin;
	hook_armed = true;
	int ret = gmm_pin(w, gpa, 8, GMM_ACCESS_WRITE, &pin);
	if (ret == 0)
		gmm_unpin(vm, &pin);
	gmm_walker_unregister(w);
	return (void *)(intptr_t)ret;
}

static void remove_under_lookup(enum gmm_strategy s)
{
	mkvm(s);
	/* The victim takes the lower slot: a lookup for the other region
	 * reads it on its way. */
	victim = add(0, GMM_2M, GMM_BACKING_THP, "victim");
	add(GMM_1G, GMM_2M, GMM_BACKING_THP, "other");
	atomic_store(&in_lookup, 0);
	atomic_store(&removed, 0);
	atomic_store(&removed_before_read, 0);
	gmm_hook_set(GMM_HOOK_REGION_LOOKUP, lookup_hook);

	uint64_t gpa = GMM_1G + 0x1000;
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, pinner, &gpa), 0);
	cr_assert(wait_flag(&in_lookup, 5000), "the pinner never reached the lookup");
	cr_assert_eq(gmm_region_remove(vm, victim), 0, "%s", gmm_last_error());
	atomic_store(&removed, 1);
	void *ret;
	pthread_join(th, &ret);
	cr_assert_eq((intptr_t)ret, 0, "pin of the other region: %d", (int)(intptr_t)ret);
	cr_assert_eq(atomic_load(&removed_before_read), 0,
		     "gmm_region_remove returned (and freed the region) while a pin's walk was "
		     "still reading it");
	cr_assert_eq(gmm_region_count(vm), 1);
	rmvm();
}

TestSuite(region_remove, .timeout = 20);

Test(region_remove, waits_for_lookups_membarrier) { remove_under_lookup(GMM_STRATEGY_MEMBARRIER); }
Test(region_remove, waits_for_lookups_perthread) { remove_under_lookup(GMM_STRATEGY_PERTHREAD); }
Test(region_remove, waits_for_lookups_rcu) { remove_under_lookup(GMM_STRATEGY_RCU); }
Test(region_remove, waits_for_lookups_kick) { remove_under_lookup(GMM_STRATEGY_KICK); }

/* ---- defect 2: gmm_synchronize waits for a walk that translated nothing - */

static _Atomic int walk_open, walk_ending;

static void *hold_empty_walk(void *p)
{
	(void)p;
	struct gmm_walker *w = gmm_walker_register(vm);
	gmm_walk_begin(w);
	atomic_store(&walk_open, 1);
	sleep_ms(300);
	/* Set just before the walk ends: whoever sees it 0 after its
	 * gmm_synchronize returned was let go with the walk open. */
	atomic_store(&walk_ending, 1);
	gmm_walk_end(w);
	gmm_walker_unregister(w);
	return NULL;
}

static void sync_waits(enum gmm_strategy s)
{
	mkvm(s);
	add(0, GMM_2M, GMM_BACKING_THP, "ram");
	atomic_store(&walk_open, 0);
	atomic_store(&walk_ending, 0);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, hold_empty_walk, NULL), 0);
	cr_assert(wait_flag(&walk_open, 5000));
	gmm_synchronize(vm);
	int ending = atomic_load(&walk_ending);
	pthread_join(th, NULL);
	cr_assert_eq(ending, 1, "gmm_synchronize returned while a walk begun before it was open");
	rmvm();
}

TestSuite(synchronize, .timeout = 20);

Test(synchronize, waits_for_an_empty_walk_membarrier) { sync_waits(GMM_STRATEGY_MEMBARRIER); }
Test(synchronize, waits_for_an_empty_walk_perthread) { sync_waits(GMM_STRATEGY_PERTHREAD); }
Test(synchronize, waits_for_an_empty_walk_rcu) { sync_waits(GMM_STRATEGY_RCU); }

/* ---- defect 7: a removal that waits for a pin, then fails ------------- */

struct remover { struct gmm_region *r; int ret; };

static void *do_remove(void *p)
{
	struct remover *rm = p;
	rm->ret = gmm_region_remove(vm, rm->r);
	return NULL;
}

Test(region_remove, pins_see_eagain_while_a_removal_waits, .timeout = 20)
{
	mkvm(GMM_STRATEGY_DEFAULT);
	struct gmm_region *r = add(0, 4 * GMM_2M, GMM_BACKING_THP, "ram");
	struct gmm_walker *w = gmm_walker_register(vm);
	/* Pin the last block: the removal freezes the others, then waits. */
	struct gmm_pin held;
	cr_assert_eq(gmm_pin(w, 3 * GMM_2M + 0x100, 8, GMM_ACCESS_WRITE, &held), 0);
	*(volatile uint64_t *)held.hva = 0x1234;
	struct remover rm = { r, 0 };
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, do_remove, &rm), 0);
	bool waiting = false;
	for (int i = 0; i < 5000 && !waiting; i++) {
		waiting = atomic_load(&vm->pin_waiters) != 0;
		if (!waiting)
			sleep_ms(1);
	}
	cr_assert(waiting, "the removal never waited for the pin");
	/* The region is still there: a pin elsewhere in it must be told to
	 * come back (-EAGAIN), not that the memory is gone (-EFAULT). */
	struct gmm_pin other;
	int ret = gmm_pin(w, 0x1000, 8, GMM_ACCESS_WRITE, &other);
	if (ret == 0)
		gmm_unpin(vm, &other);
	pthread_join(th, NULL);
	cr_assert_eq(rm.ret, -EBUSY, "remove: %d", rm.ret);
	cr_assert_eq(ret, -EAGAIN, "pin during a removal that waits: %d (%s)", ret, strerror(-ret));
	/* Nothing changed. */
	cr_assert_eq(gmm_region_count(vm), 1);
	cr_assert_eq(*(volatile uint64_t *)held.hva, 0x1234);
	uint64_t sz;
	for (uint64_t b = 0; b < 4; b++)
		cr_assert_neq(gmm_table_lookup(vm, b * GMM_2M, &sz), 0, "block %llu", (unsigned long long)b);
	gmm_unpin(vm, &held);
	cr_assert_eq(gmm_pin(w, 0x1000, 8, GMM_ACCESS_WRITE, &other), 0);
	gmm_unpin(vm, &other);
	gmm_walker_unregister(w);
	rmvm();
}

/* A removal past its point of no return completes: a host release that
 * fails cannot leave the region published with its leaves gone. */
Test(region_remove, completes_when_a_release_fails, .timeout = 20)
{
	mkvm(GMM_STRATEGY_DEFAULT);
	struct gmm_region *r = add(0, 4 * GMM_2M, GMM_BACKING_THP, "ram");
	add(GMM_1G, GMM_2M, GMM_BACKING_THP, "other");
	gmm_fault_set(GMM_FAULT_RELEASE, 1, 1);
	int ret = gmm_region_remove(vm, r);
	gmm_fault_reset();
	cr_assert_eq(ret, 0, "remove with failing releases: %d (%s)", ret, gmm_last_error());
	cr_assert_eq(gmm_region_count(vm), 1);
	cr_assert_null(gmm_region_find(vm, 0));
	struct gmm_stats st;
	gmm_vm_stats(vm, &st);
	cr_assert_eq(st.mapped_bytes, GMM_2M);
	rmvm();
}
