// SPDX-License-Identifier: GPL-2.0-only
/*
 * test_table.c - unit tests of the table, walks, copy helpers, the pool,
 * pins and the VM/region API, failure paths included.
 */
#include <criterion/criterion.h>
#include "hugetlb_pool.h"
#include <guestmm/guestmm.h>

#include "internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct gmm_vm *vm;
static struct gmm_walker *w;

static void mkvm(enum gmm_strategy s, uint64_t limit)
{
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	cfg.strategy = s;
	if (limit)
		cfg.table_pages_limit = limit;
	cfg.pin_timeout_ms = 200;
	cr_assert_eq(gmm_vm_create(&cfg, &vm), 0, "%s", gmm_last_error());
	w = gmm_walker_register(vm);
	cr_assert_not_null(w);
}

static void rmvm(void)
{
	gmm_walker_unregister(w);
	gmm_vm_destroy(vm);
	vm = NULL;
}

static struct gmm_region *add(uint64_t gpa, uint64_t size, enum gmm_backing b, unsigned flags)
{
	struct gmm_region *r;
	struct gmm_region_spec spec = { .gpa = gpa, .size = size, .backing = b, .flags = flags };
	cr_assert_eq(gmm_region_add(vm, &spec, &r), 0, "%s", gmm_last_error());
	return r;
}

static void *tr(uint64_t gpa, size_t len, unsigned access)
{
	gmm_walk_begin(w);
	void *p = gmm_translate(w, gpa, len, access);
	gmm_walk_end(w);
	return p;
}

static uint64_t leaf_size(uint64_t gpa)
{
	uint64_t sz = 0;
	gmm_table_lookup(vm, gpa, &sz);
	return sz;
}

static void setup(void) { mkvm(GMM_STRATEGY_DEFAULT, 0); }
static void teardown(void) { rmvm(); }

TestSuite(vm);

Test(vm, config_errors)
{
	struct gmm_vm_config cfg;
	struct gmm_vm *v;
	gmm_vm_config_init(&cfg);
	cfg.strategy = (enum gmm_strategy)42;
	cr_assert_eq(gmm_vm_create(&cfg, &v), -EINVAL);
	gmm_vm_config_init(&cfg);
	cfg.table_pages_limit = 8;
	cfg.table_pages_reserve = 8;
	cr_assert_eq(gmm_vm_create(&cfg, &v), -EINVAL);
	cr_assert(strstr(gmm_last_error(), "reserve"));
	gmm_vm_config_init(&cfg);
	cfg.kick_signal = 9;
	cr_assert_eq(gmm_vm_create(&cfg, &v), -EINVAL);
}

Test(vm, strategy_names)
{
	for (int i = 0; i < GMM_STRATEGY__N; i++) {
		enum gmm_strategy s;
		cr_assert_eq(gmm_strategy_parse(gmm_strategy_name((enum gmm_strategy)i), &s), 0);
		cr_assert_eq((int)s, i);
	}
	enum gmm_strategy s;
	cr_assert_eq(gmm_strategy_parse("fast", &s), -EINVAL);
	cr_assert(strstr(gmm_last_error(), "fast"));
}

TestSuite(region, .init = setup, .fini = teardown);

Test(region, bad_regions_change_nothing)
{
	struct gmm_region_spec s = { .gpa = 0x1000, .size = GMM_2M, .backing = GMM_BACKING_THP };
	cr_assert_eq(gmm_region_add(vm, &s, NULL), -EINVAL, "thp at a 4K-aligned base");
	cr_assert(strstr(gmm_last_error(), "multiples"));
	s = (struct gmm_region_spec){ .gpa = 0, .size = 0, .backing = GMM_BACKING_ANON };
	cr_assert_eq(gmm_region_add(vm, &s, NULL), -EINVAL);
	s = (struct gmm_region_spec){ .gpa = GMM_GPA_LIMIT - GMM_2M, .size = 2 * GMM_2M,
				      .backing = GMM_BACKING_ANON };
	cr_assert_eq(gmm_region_add(vm, &s, NULL), -EINVAL, "beyond the GPA space");
	s = (struct gmm_region_spec){ .gpa = 0, .size = GMM_2M, .backing = GMM_BACKING_FILE };
	cr_assert_eq(gmm_region_add(vm, &s, NULL), -EINVAL, "file without a path");
	s = (struct gmm_region_spec){ .gpa = 0, .size = GMM_2M, .backing = (enum gmm_backing)77 };
	cr_assert_eq(gmm_region_add(vm, &s, NULL), -EINVAL);

	add(0, 4 * GMM_2M, GMM_BACKING_THP, 0);
	s = (struct gmm_region_spec){ .gpa = 3 * GMM_2M, .size = 2 * GMM_2M, .backing = GMM_BACKING_THP,
				      .name = "other" };
	cr_assert_eq(gmm_region_add(vm, &s, NULL), -EEXIST);
	cr_assert(strstr(gmm_last_error(), "overlaps"));
	cr_assert_eq(gmm_region_count(vm), 1);
	struct gmm_stats st;
	gmm_vm_stats(vm, &st);
	cr_assert_eq(st.mapped_bytes, 4 * GMM_2M);
}

Test(region, remove)
{
	struct gmm_region *r = add(0, 4 * GMM_2M, GMM_BACKING_THP, 0);
	cr_assert_not_null(tr(0x1000, 8, GMM_ACCESS_WRITE));
	cr_assert_eq(gmm_region_remove(vm, r), 0);
	cr_assert_null(tr(0x1000, 8, 0));
	cr_assert_eq(errno, EFAULT);
	cr_assert_eq(gmm_region_count(vm), 0);
	struct gmm_stats st;
	gmm_vm_stats(vm, &st);
	cr_assert_eq(st.mapped_bytes, 0);
	/* Only the root page is left. */
	cr_assert_eq(st.table_pages_in_use, 1);
}

TestSuite(walk, .init = setup, .fini = teardown);

Test(walk, translate)
{
	struct gmm_region *r = add(GMM_1G, 8 * GMM_2M, GMM_BACKING_THP, 0);
	struct gmm_region_info info;
	gmm_region_info(r, &info);
	cr_assert_eq(leaf_size(GMM_1G), GMM_2M);
	uint8_t *p = tr(GMM_1G + 12345, 100, GMM_ACCESS_WRITE);
	cr_assert_eq(p, (uint8_t *)info.hva + 12345);
	p[0] = 7;
	/* Across 2 MiB leaves: host-contiguous, one pointer. */
	cr_assert_eq(tr(GMM_1G + GMM_2M - 8, 16, 0), (uint8_t *)info.hva + GMM_2M - 8);
	/* Unmapped, beyond the region, beyond the table. */
	cr_assert_null(tr(0, 8, 0));
	cr_assert_eq(errno, EFAULT);
	cr_assert_null(tr(GMM_1G + 8 * GMM_2M - 4, 8, 0));
	cr_assert_eq(errno, EFAULT);
	cr_assert_null(tr(GMM_GPA_LIMIT + 4096, 8, 0));
	cr_assert_eq(errno, EFAULT);
	cr_assert_null(tr(~0ULL - 2, 8, 0));
	cr_assert_eq(errno, EFAULT);
	/* Outside a walk, zero length. */
	cr_assert_null(gmm_translate(w, GMM_1G, 8, 0));
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(tr(GMM_1G, 0, 0));
	cr_assert_eq(errno, EINVAL);
	struct gmm_stats st;
	gmm_vm_stats(vm, &st);
	cr_assert_eq(st.translations, 2);
	cr_assert_eq(st.translate_faults, 6);
}

Test(walk, discontiguous_and_readonly)
{
	add(0, GMM_2M, GMM_BACKING_ANON, 0);
	add(GMM_2M, GMM_2M, GMM_BACKING_ANON, GMM_REGION_READONLY);
	cr_assert_eq(leaf_size(0), GMM_PAGE_SIZE);
	/* Two regions, two host mappings: not one pointer. */
	cr_assert_null(tr(GMM_2M - 8, 16, 0));
	cr_assert_eq(errno, ERANGE);
	size_t span;
	gmm_walk_begin(w);
	cr_assert_not_null(gmm_translate_span(w, GMM_2M - 8, 16, 0, &span));
	gmm_walk_end(w);
	cr_assert_eq(span, 8);
	/* Read-only region. */
	cr_assert_not_null(tr(GMM_2M, 8, GMM_ACCESS_READ));
	cr_assert_null(tr(GMM_2M, 8, GMM_ACCESS_WRITE));
	cr_assert_eq(errno, EACCES);
	cr_assert_eq(gmm_protect(vm, GMM_2M, GMM_PAGE_SIZE, true), -EPERM);
}

Test(walk, nested)
{
	add(0, GMM_2M, GMM_BACKING_THP, 0);
	gmm_walk_begin(w);
	gmm_walk_begin(w);
	cr_assert_not_null(gmm_translate(w, 0, 8, 0));
	gmm_walk_end(w);
	cr_assert_not_null(gmm_translate(w, 0, 8, 0), "still inside the outer walk");
	gmm_walk_end(w);
	struct gmm_stats st;
	gmm_vm_stats(vm, &st);
	cr_assert_eq(st.walks_in_flight, 0);
}

Test(walk, copy_helpers)
{
	add(0, 2 * GMM_2M, GMM_BACKING_THP, 0);
	add(2 * GMM_2M, GMM_2M, GMM_BACKING_ANON, 0);
	/* Across a THP leaf boundary and into the next region's mapping. */
	uint8_t in[3 * 4096], out[sizeof(in)];
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 7 + 1);
	uint64_t gpa = 2 * GMM_2M - 5000;
	cr_assert_eq(gmm_write(w, gpa, in, sizeof(in)), 0);
	cr_assert_eq(gmm_read(w, gpa, out, sizeof(out)), 0);
	cr_assert_arr_eq(in, out, sizeof(in));
	/* A range that runs into unmapped space copies nothing. */
	cr_assert_eq(gmm_unmap(vm, 2 * GMM_2M + 4096, 4096, 0), 0);
	uint8_t before[4096], after[4096], junk[8192];
	memset(junk, 0xee, sizeof(junk));
	cr_assert_eq(gmm_read(w, 2 * GMM_2M, before, sizeof(before)), 0);
	cr_assert_eq(gmm_write(w, 2 * GMM_2M, junk, sizeof(junk)), -EFAULT);
	cr_assert_eq(gmm_read(w, 2 * GMM_2M, after, sizeof(after)), 0);
	cr_assert_arr_eq(before, after, sizeof(before));
	cr_assert_eq(gmm_read(w, 2 * GMM_2M, junk, sizeof(junk)), -EFAULT);
}

TestSuite(table, .init = setup, .fini = teardown);

Test(table, unmap_map_block)
{
	struct gmm_region *r = add(0, 4 * GMM_2M, GMM_BACKING_THP, 0);
	struct gmm_region_info info;
	gmm_region_info(r, &info);
	uint64_t *p = tr(GMM_2M, 8, GMM_ACCESS_WRITE);
	*p = 0x1122334455667788ULL;
	cr_assert_eq(gmm_unmap(vm, GMM_2M, GMM_2M, 0), 0);
	cr_assert_eq(leaf_size(GMM_2M), 0);
	cr_assert_null(tr(GMM_2M, 8, 0));
	cr_assert_not_null(tr(0, 8, 0), "neighbours stay");
	cr_assert_not_null(tr(2 * GMM_2M, 8, 0));
	/* Unmapping again is harmless. */
	cr_assert_eq(gmm_unmap(vm, GMM_2M, GMM_2M, 0), 0);
	cr_assert_eq(gmm_map(vm, GMM_2M, GMM_2M), 0);
	cr_assert_eq(leaf_size(GMM_2M), GMM_2M);
	p = tr(GMM_2M, 8, GMM_ACCESS_WRITE);
	cr_assert_eq((void *)p, (uint8_t *)info.hva + GMM_2M, "same host address after remap");
	cr_assert_eq(*p, 0, "fresh memory after munmap");
	struct gmm_stats st;
	gmm_vm_stats(vm, &st);
	cr_assert_eq(st.unmapped_bytes, GMM_2M);
	cr_assert_eq(st.released_bytes, GMM_2M);
	cr_assert_eq(st.mapped_bytes, 4 * GMM_2M);
}

Test(table, discard_splits_and_map_collapses)
{
	add(0, 2 * GMM_2M, GMM_BACKING_THP, 0);
	uint64_t *keep = tr(8192, 8, GMM_ACCESS_WRITE);
	*keep = 42;
	uint64_t *gone = tr(4096, 8, GMM_ACCESS_WRITE);
	*gone = 43;
	cr_assert_eq(gmm_unmap(vm, 4096, 4096, GMM_UNMAP_DISCARD), 0);
	cr_assert_eq(leaf_size(0), GMM_PAGE_SIZE, "the THP leaf was split");
	cr_assert_eq(leaf_size(4096), 0);
	cr_assert_eq(*(uint64_t *)tr(8192, 8, 0), 42, "the rest of the block is intact");
	cr_assert_eq(leaf_size(GMM_2M), GMM_2M, "the next block is untouched");
	cr_assert_eq(gmm_collapse(vm, 0), -EAGAIN, "a page is missing");
	cr_assert_eq(gmm_map(vm, 4096, 4096), 0);
	cr_assert_eq(*(uint64_t *)tr(4096, 8, 0), 0, "discarded contents are gone");
	cr_assert_eq(gmm_unmap(vm, GMM_2M, GMM_2M, 0), 0);
	cr_assert_eq(gmm_collapse(vm, 0), 0);
	cr_assert_eq(leaf_size(0), GMM_2M);
	cr_assert_eq(*(uint64_t *)tr(8192, 8, 0), 42);
	struct gmm_stats st;
	gmm_vm_stats(vm, &st);
	cr_assert_eq(st.splits, 1);
	cr_assert_eq(st.collapses, 1);
	cr_assert_eq(st.table_pages_deferred, 1, "the old table page waits for a grace period");
	/* An unmap that clears nothing does not serialise, so it must not
	 * free what the collapse queued (found by the stress test). */
	cr_assert_eq(gmm_unmap(vm, GMM_2M, GMM_2M, 0), 0);
	gmm_vm_stats(vm, &st);
	cr_assert_eq(st.table_pages_deferred, 1, "freed without a grace period");
	gmm_reclaim(vm);
	gmm_vm_stats(vm, &st);
	cr_assert_eq(st.table_pages_deferred, 0);
}

Test(table, split_collapse_explicit)
{
	struct gmm_region *r = add(0, GMM_2M, GMM_BACKING_THP, 0);
	struct gmm_region_info info;
	gmm_region_info(r, &info);
	cr_assert_eq(gmm_collapse(vm, 0), -EINVAL, "not split");
	cr_assert_eq(gmm_split(vm, 0), 0);
	cr_assert_eq(leaf_size(0x5000), GMM_PAGE_SIZE);
	for (uint64_t a = 0; a < GMM_2M; a += 64 * 4096)
		cr_assert_eq(tr(a + 3, 1, 0), (uint8_t *)info.hva + a + 3);
	cr_assert_eq(gmm_split(vm, 0), -EINVAL, "already 4 KiB");
	cr_assert_eq(gmm_split(vm, 64 * GMM_2M), -EINVAL, "unmapped");
	cr_assert_eq(gmm_protect(vm, 0x3000, 0x1000, false), 0);
	cr_assert_eq(gmm_collapse(vm, 0), -EAGAIN, "flags differ");
	cr_assert_eq(gmm_protect(vm, 0x3000, 0x1000, true), 0);
	cr_assert_eq(gmm_collapse(vm, 0x1234), 0);
	cr_assert_eq(leaf_size(0), GMM_2M);
}

/* 1 GiB leaves, without 1 GiB of memory: the table never dereferences the
 * host addresses it stores, so a fake 1 GiB-aligned one will do. */
Test(table, gigabyte_leaves)
{
	struct gmm_region fake = { .vm = vm, .gpa = 4 * GMM_1G, .size = GMM_1G,
				   .page_size = GMM_1G, .backing = GMM_BACKING_HUGETLB_1G,
				   .nblocks = 512 };
	uint8_t *hva = (uint8_t *)(uintptr_t)0x7f0000000000ULL;
	pthread_mutex_lock(&vm->wlock);
	cr_assert_eq(gmm_table_install(vm, &fake, 4 * GMM_1G, GMM_1G, hva, GMM_1G,
				       GMM_PTE_PRESENT | GMM_PTE_WRITE), 0);
	pthread_mutex_unlock(&vm->wlock);
	cr_assert_eq(leaf_size(4 * GMM_1G + 12345), GMM_1G);
	cr_assert_eq(tr(4 * GMM_1G + 0x2345678, 8, 0), hva + 0x2345678);
	cr_assert_eq(gmm_split(vm, 4 * GMM_1G), 0);
	cr_assert_eq(leaf_size(4 * GMM_1G + 12345), GMM_2M);
	cr_assert_eq(tr(4 * GMM_1G + 0x2345678, 8, 0), hva + 0x2345678);
	cr_assert_eq(gmm_split(vm, 4 * GMM_1G + 0x2345678), 0);
	cr_assert_eq(leaf_size(4 * GMM_1G + 0x2345678), GMM_PAGE_SIZE);
	cr_assert_eq(tr(4 * GMM_1G + 0x2345678, 8, 0), hva + 0x2345678);
	cr_assert_eq(gmm_collapse(vm, 4 * GMM_1G + 0x2345678), 0);
	cr_assert_eq(gmm_collapse(vm, 4 * GMM_1G), 0);
	cr_assert_eq(leaf_size(4 * GMM_1G), GMM_1G);
	/* Take the leaves away again without touching host memory. */
	fake.blocks = calloc(512, sizeof(*fake.blocks));
	pthread_mutex_lock(&vm->wlock);
	cr_assert_eq(gmm_unmap_locked(vm, &fake, 4 * GMM_1G, GMM_1G, GMM_UNMAP_FORCE | GMM_UNMAP_KEEP), 0);
	pthread_mutex_unlock(&vm->wlock);
	free(fake.blocks);
	cr_assert_eq(leaf_size(4 * GMM_1G), 0);
}

Test(table, bad_ranges)
{
	add(0, 4 * GMM_2M, GMM_BACKING_THP, 0);
	add(4 * GMM_2M, GMM_2M, GMM_BACKING_THP, 0);
	cr_assert_eq(gmm_unmap(vm, 100, 4096, 0), -EINVAL, "not 4 KiB aligned");
	cr_assert(strstr(gmm_last_error(), "aligned"));
	cr_assert_eq(gmm_unmap(vm, 3 * GMM_2M, 2 * GMM_2M, 0), -EINVAL, "spans two regions");
	cr_assert_eq(gmm_unmap(vm, 64 * GMM_2M, GMM_2M, 0), -EINVAL, "no region");
	cr_assert_eq(gmm_unmap(vm, 0, 0, 0), -EINVAL, "empty");
	cr_assert_eq(gmm_unmap(vm, ~0ULL - 4095, 4096, 0), -EINVAL);
	cr_assert_eq(gmm_map(vm, 64 * GMM_2M, GMM_2M), -EINVAL);
	cr_assert_eq(gmm_protect(vm, 0, 5 * GMM_2M, false), -EINVAL);
	struct gmm_stats st;
	gmm_vm_stats(vm, &st);
	cr_assert_eq(st.unmaps, 0);
	cr_assert_eq(st.mapped_bytes, 5 * GMM_2M);
}

Test(table, protect)
{
	add(0, 2 * GMM_2M, GMM_BACKING_THP, 0);
	cr_assert_eq(gmm_protect(vm, GMM_2M, GMM_2M, false), 0);
	cr_assert_null(tr(GMM_2M + 8, 8, GMM_ACCESS_WRITE));
	cr_assert_eq(errno, EACCES);
	cr_assert_not_null(tr(GMM_2M + 8, 8, GMM_ACCESS_READ));
	cr_assert_not_null(tr(8, 8, GMM_ACCESS_WRITE));
	cr_assert_eq(gmm_write(w, GMM_2M - 4, "12345678", 8), -EACCES);
	cr_assert_eq(gmm_protect(vm, GMM_2M, GMM_2M, true), 0);
	cr_assert_eq(gmm_write(w, GMM_2M - 4, "12345678", 8), 0);
}

/* ---- the table-page pool and its limit ------------------------------ */

TestSuite(pool);

Test(pool, limit_fails_cleanly)
{
	/* Limit 21, reserve 16: 5 normal pages.  The root takes one, the
	 * first region a level-2 and a level-1 table: 2 left. */
	mkvm(GMM_STRATEGY_PERTHREAD, 16 + 5);
	add(0, 2 * GMM_2M, GMM_BACKING_THP, 0);
	struct gmm_stats st0, st1;
	gmm_vm_stats(vm, &st0);
	cr_assert_eq(st0.table_pages_in_use, 3, "root, level 2, level 1");
	/* A region in another 512 GiB slot needs a level-2, a level-1 and a
	 * level-0 table (4K leaves): 3 > 2. */
	struct gmm_region_spec s = { .gpa = 1ULL << 40, .size = 8192, .backing = GMM_BACKING_ANON };
	cr_assert_eq(gmm_region_add(vm, &s, NULL), -ENOSPC);
	cr_assert(strstr(gmm_last_error(), "table-page limit"), "%s", gmm_last_error());
	gmm_vm_stats(vm, &st1);
	cr_assert_eq(st1.table_pages_in_use, st0.table_pages_in_use, "nothing changed");
	cr_assert_eq(gmm_region_count(vm), 1);
	/* Splits use the normal headroom: two fit, the third fails and
	 * leaves the leaf as it was. */
	add(GMM_1G, 2 * GMM_2M, GMM_BACKING_THP, 0);   /* a new level-1 table: 1 left */
	cr_assert_eq(gmm_split(vm, 0), 0);
	cr_assert_eq(gmm_split(vm, GMM_2M), -ENOSPC);
	cr_assert_eq(leaf_size(GMM_2M), GMM_2M);
	cr_assert_not_null(tr(GMM_2M + 5, 1, 0));
	/* Unmap must always make progress: a 4 KiB hole needs a split,
	 * and gets it from the reserve. */
	cr_assert_eq(gmm_unmap(vm, GMM_1G + 4096, 4096, GMM_UNMAP_DISCARD), 0);
	cr_assert_eq(leaf_size(GMM_1G), GMM_PAGE_SIZE);
	gmm_vm_stats(vm, &st1);
	cr_assert_eq(st1.table_pages_reserve_free, 15);
	rmvm();
}

Test(pool, try_alloc_never_waits_never_grows)
{
	struct gmm_pool p;
	cr_assert_eq(gmm_pool_init(&p, 200, 4), 0);
	/* Init grew one chunk for the reserve; the rest is free. */
	uint64_t got = 0;
	struct gmm_ptp *pg, *pages[256];
	while ((pg = gmm_pool_try_alloc(&p)))
		pages[got++] = pg;
	cr_assert_eq(got, 64 - 4, "one chunk minus the reserve");
	for (int i = 0; i < GMM_PTES; i++)
		cr_assert_eq(atomic_load(&pages[0]->e[i]), 0, "zeroed");
	/* The slow path grows. */
	pg = gmm_pool_alloc(&p, false);
	cr_assert_not_null(pg);
	pages[got++] = pg;
	/* Lock busy: try_alloc fails at once rather than wait. */
	pthread_mutex_lock(&p.lock);
	cr_assert_null(gmm_pool_try_alloc(&p));
	pthread_mutex_unlock(&p.lock);
	/* A free comes back poisoned. */
	struct gmm_ptp *freed = pages[--got];
	uint64_t before = atomic_load(&p.in_use);
	gmm_pool_free(&p, freed);
	cr_assert_eq(atomic_load(&freed->e[0]), GMM_PTE_POISON_VALUE);
	cr_assert_eq(atomic_load(&freed->e[100]), GMM_PTE_POISON_VALUE);
	cr_assert_eq(atomic_load(&p.in_use), before - 1);
	/* Exhaust the limit: normal allocations stop, the reserve remains. */
	while ((pg = gmm_pool_alloc(&p, false)))
		pages[got++] = pg;
	cr_assert_eq(got, 200 - 4);
	for (int i = 0; i < 4; i++)
		cr_assert_not_null(gmm_pool_alloc(&p, true));
	cr_assert_null(gmm_pool_alloc(&p, true));
	cr_assert_eq(errno, ENOSPC);
	/* Frees refill the reserve first. */
	gmm_pool_free(&p, pages[--got]);
	cr_assert_eq(p.nreserve, 1);
	cr_assert_eq(atomic_load(&pages[got]->e[0]), GMM_PTE_POISON_VALUE);
	gmm_pool_fini(&p);
}

/* A table page freed after collapse is poisoned: a walker that read it
 * late would see poison, and count a late read. */
Test(pool, freed_table_pages_are_poisoned)
{
	mkvm(GMM_STRATEGY_PERTHREAD, 0);
	add(0, GMM_2M, GMM_BACKING_THP, 0);
	cr_assert_eq(gmm_split(vm, 0), 0);
	uint64_t l2 = atomic_load(&vm->root->e[0]);
	struct gmm_ptp *t2 = (struct gmm_ptp *)(uintptr_t)(l2 & GMM_PTE_ADDR);
	uint64_t l1 = atomic_load(&t2->e[0]);
	struct gmm_ptp *t1 = (struct gmm_ptp *)(uintptr_t)(l1 & GMM_PTE_ADDR);
	uint64_t l0 = atomic_load(&((struct gmm_ptp *)(uintptr_t)(atomic_load(&t1->e[0]) & GMM_PTE_ADDR))->e[0]);
	cr_assert(l0 & GMM_PTE_PRESENT);
	struct gmm_ptp *leaves = (struct gmm_ptp *)(uintptr_t)(atomic_load(&t1->e[0]) & GMM_PTE_ADDR);
	cr_assert_eq(gmm_collapse(vm, 0), 0);
	cr_assert(!(atomic_load(&leaves->e[5]) & GMM_PTE_POISON), "not freed before the grace period");
	gmm_reclaim(vm);
	cr_assert_eq(atomic_load(&leaves->e[5]), GMM_PTE_POISON_VALUE);
	rmvm();
}

/* ---- pins -------------------------------------------------------------- */

TestSuite(pin, .init = setup, .fini = teardown);

Test(pin, unmap_of_pinned_block_fails_and_loses_nothing)
{
	add(0, 4 * GMM_2M, GMM_BACKING_THP, 0);
	struct gmm_pin pin;
	cr_assert_eq(gmm_pin(w, GMM_2M + 100, 16, GMM_ACCESS_WRITE, &pin), 0);
	memcpy(pin.hva, "pinned-data-1234", 16);
	cr_assert_eq(gmm_unmap(vm, 0, 4 * GMM_2M, GMM_UNMAP_NOWAIT), -EBUSY);
	cr_assert(strstr(gmm_last_error(), "pinned"));
	/* With the timeout (200 ms here) it also gives up. */
	cr_assert_eq(gmm_unmap(vm, GMM_2M, GMM_2M, 0), -EBUSY);
	for (uint64_t a = 0; a < 4 * GMM_2M; a += GMM_2M)
		cr_assert_eq(leaf_size(a), GMM_2M, "every leaf is still there");
	char buf[16];
	cr_assert_eq(gmm_read(w, GMM_2M + 100, buf, 16), 0);
	cr_assert_arr_eq(buf, "pinned-data-1234", 16);
	/* Other blocks are not pinned. */
	cr_assert_eq(gmm_unmap(vm, 3 * GMM_2M, GMM_2M, GMM_UNMAP_NOWAIT), 0);
	struct gmm_stats st;
	gmm_vm_stats(vm, &st);
	cr_assert_eq(st.pins_active, 1);
	cr_assert_eq(st.pin_busy, 2);
	gmm_unpin(vm, &pin);
	cr_assert_eq(gmm_unmap(vm, GMM_2M, GMM_2M, GMM_UNMAP_NOWAIT), 0);
	gmm_vm_stats(vm, &st);
	cr_assert_eq(st.pins_active, 0);
}

struct unpin_later {
	struct gmm_pin *pin;
	unsigned ms;
};

static void *unpin_after(void *p)
{
	struct unpin_later *u = p;
	usleep(u->ms * 1000);
	gmm_unpin(vm, u->pin);
	return NULL;
}

Test(pin, unmap_waits_for_pin)
{
	add(0, 2 * GMM_2M, GMM_BACKING_THP, 0);
	struct gmm_pin pin;
	/* Across two blocks. */
	cr_assert_eq(gmm_pin(w, GMM_2M - 8, 16, GMM_ACCESS_READ, &pin), 0);
	cr_assert_eq(pin.nblocks, 2);
	struct unpin_later u = { &pin, 50 };
	pthread_t t;
	pthread_create(&t, NULL, unpin_after, &u);
	cr_assert_eq(gmm_unmap(vm, GMM_2M, GMM_2M, 0), 0, "%s", gmm_last_error());
	pthread_join(t, NULL);
	struct gmm_stats st;
	gmm_vm_stats(vm, &st);
	cr_assert_eq(st.pin_waits, 1);
	cr_assert_eq(leaf_size(GMM_2M), 0);
}

Test(pin, pin_errors)
{
	add(0, GMM_2M, GMM_BACKING_THP, 0);
	add(GMM_2M, GMM_2M, GMM_BACKING_THP, GMM_REGION_READONLY);
	struct gmm_pin pin;
	cr_assert_eq(gmm_pin(w, 8 * GMM_2M, 8, 0, &pin), -EFAULT);
	cr_assert_eq(gmm_pin(w, GMM_2M, 8, GMM_ACCESS_WRITE, &pin), -EACCES);
	cr_assert_eq(gmm_pin(w, GMM_2M - 8, 16, 0, &pin), -ERANGE, "two regions");
	/* A frozen block refuses new pins. */
	struct gmm_region *r = gmm_region_find(vm, 0);
	atomic_store(&r->blocks[0].ref, 0);
	cr_assert_eq(gmm_pin(w, 8, 8, 0, &pin), -EAGAIN);
	atomic_store(&r->blocks[0].ref, 1);
	cr_assert_eq(gmm_pin(w, 8, 8, 0, &pin), 0);
	gmm_unpin(vm, &pin);
	gmm_unpin(vm, &pin); /* a second unpin is harmless */
	cr_assert_eq(atomic_load(&r->blocks[0].ref), 1);
	struct gmm_region *ro = gmm_region_find(vm, GMM_2M);
	cr_assert_eq(gmm_pin(w, GMM_2M, 8, 0, &pin), 0);
	cr_assert_eq(gmm_region_remove(vm, ro), -EBUSY, "a pinned region stays");
	cr_assert_eq(gmm_region_count(vm), 2);
	gmm_unpin(vm, &pin);
	cr_assert_eq(gmm_region_remove(vm, ro), 0);
}

/* Protect means protect (issue 12, defect 5): read-only waits for write
 * pins in the range (up to the pin timeout) or fails with -EBUSY, changing
 * nothing; read pins do not hold it up. */
Test(pin, protect_refuses_a_held_write_pin, .timeout = 10)
{
	add(0, 2 * GMM_2M, GMM_BACKING_THP, 0);
	struct gmm_pin pin;
	cr_assert_eq(gmm_pin(w, GMM_2M + 64, 8, GMM_ACCESS_WRITE, &pin), 0);
	int ret = gmm_protect(vm, GMM_2M, GMM_2M, false);
	cr_assert_eq(ret, -EBUSY, "protect(read-only) with a write pin held: %d", ret);
	cr_assert(strstr(gmm_last_error(), "pinned"), "%s", gmm_last_error());
	/* Nothing changed: still writable, the pin still writes. */
	cr_assert_not_null(tr(GMM_2M + 64, 8, GMM_ACCESS_WRITE));
	*(volatile uint64_t *)pin.hva = 7;
	cr_assert_eq(gmm_protect(vm, GMM_2M, GMM_2M, false), -EBUSY);
	/* Another block is not pinned. */
	cr_assert_eq(gmm_protect(vm, 0, GMM_2M, false), 0);
	gmm_unpin(vm, &pin);
	cr_assert_eq(gmm_protect(vm, GMM_2M, GMM_2M, false), 0);
	cr_assert_null(tr(GMM_2M + 64, 8, GMM_ACCESS_WRITE));
	cr_assert_eq(gmm_pin(w, GMM_2M + 64, 8, GMM_ACCESS_WRITE, &pin), -EACCES);
}

static _Atomic int unpinning;

/* Sets the flag just before the unpin: a protect that returns before
 * the pin is gone sees 0. */
static void *unpin_flagged(void *p)
{
	usleep(50 * 1000);
	atomic_store(&unpinning, 1);
	gmm_unpin(vm, p);
	return NULL;
}

Test(pin, protect_waits_for_a_write_pin_ignores_read_pins, .timeout = 10)
{
	add(0, 2 * GMM_2M, GMM_BACKING_THP, 0);
	struct gmm_pin wp, rp;
	cr_assert_eq(gmm_pin(w, GMM_2M - 8, 16, GMM_ACCESS_WRITE, &wp), 0);
	cr_assert_eq(gmm_pin(w, 64, 8, GMM_ACCESS_READ, &rp), 0);
	atomic_store(&unpinning, 0);
	pthread_t t;
	pthread_create(&t, NULL, unpin_flagged, &wp);
	cr_assert_eq(gmm_protect(vm, 0, 2 * GMM_2M, false), 0, "%s", gmm_last_error());
	cr_assert_eq(atomic_load(&unpinning), 1,
		     "gmm_protect(read-only) returned with a write pin held");
	pthread_join(t, NULL);
	cr_assert_null(tr(64, 8, GMM_ACCESS_WRITE));
	/* The read pin is untouched, and unmap still sees it. */
	cr_assert_eq(*(volatile uint64_t *)rp.hva, 0);
	cr_assert_eq(gmm_unmap(vm, 0, GMM_2M, GMM_UNMAP_NOWAIT), -EBUSY);
	gmm_unpin(vm, &rp);
	cr_assert_eq(gmm_protect(vm, 0, 2 * GMM_2M, true), 0);
}

/* ---- every strategy serialises and counts ------------------------------ */

TestSuite(strategy);

static void unmap_with(enum gmm_strategy s)
{
	if (!gmm_strategy_available(s))
		cr_skip_test("%s not available", gmm_strategy_name(s));
	mkvm(s, 0);
	add(0, 8 * GMM_2M, GMM_BACKING_THP, 0);
	cr_assert_eq(gmm_unmap(vm, 0, 8 * GMM_2M, 0), 0);
	struct gmm_stats st;
	gmm_vm_stats(vm, &st);
	uint64_t n = st.serialize_issued + st.serialize_skipped;
	if (s == GMM_STRATEGY_KICK || s == GMM_STRATEGY_COUNT)
		cr_assert_eq(n, 8, "one per block");
	else
		cr_assert_eq(n, 1, "one per range");
	/* The only walker is the writer's own thread: parked while it holds
	 * the writer mutex (tracker.c, "parked walkers"), never kicked. */
	if (s == GMM_STRATEGY_KICK)
		cr_assert_eq(st.kicks_sent, 0, "the writer does not kick itself");
	if (s == GMM_STRATEGY_COUNT || s == GMM_STRATEGY_PERTHREAD)
		cr_assert_eq(st.serialize_skipped, n, "nobody was in flight");
	rmvm();
}

Test(strategy, kick) { unmap_with(GMM_STRATEGY_KICK); }
Test(strategy, count) { unmap_with(GMM_STRATEGY_COUNT); }
Test(strategy, perthread) { unmap_with(GMM_STRATEGY_PERTHREAD); }
Test(strategy, membarrier) { unmap_with(GMM_STRATEGY_MEMBARRIER); }
Test(strategy, rcu) { unmap_with(GMM_STRATEGY_RCU); }

/* A walker thread that inherited a mask blocking every signal (as a VMM's
 * threads do, for a signalfd) still takes kicks: registering unblocks the
 * kick signal.  Without that, this unmap would wait forever for an
 * acknowledgement. */
static _Atomic int blocked_walker_state; /* 1 registered, 2 may leave */

static void *blocked_walker(void *p)
{
	(void)p;
	struct gmm_walker *bw = gmm_walker_register(vm);
	cr_assert_not_null(bw);
	atomic_store(&blocked_walker_state, 1);
	while (atomic_load(&blocked_walker_state) != 2)
		usleep(1000);
	gmm_walker_unregister(bw);
	return NULL;
}

Test(strategy, kick_reaches_a_thread_that_blocked_every_signal, .timeout = 10)
{
	mkvm(GMM_STRATEGY_KICK, 0);
	add(0, 4 * GMM_2M, GMM_BACKING_THP, 0);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pthread_t t;
	atomic_store(&blocked_walker_state, 0);
	cr_assert_eq(pthread_create(&t, NULL, blocked_walker, NULL), 0);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	while (atomic_load(&blocked_walker_state) != 1)
		usleep(1000);
	cr_assert_eq(gmm_unmap(vm, 0, 4 * GMM_2M, 0), 0);
	struct gmm_stats st;
	gmm_vm_stats(vm, &st);
	cr_assert_eq(st.kicks_sent, 4, "the blocked walker x 4 blocks (this one, the writer, is parked)");
	atomic_store(&blocked_walker_state, 2);
	pthread_join(t, NULL);
	rmvm();
}

/* membarrier waits only for walkers whose walk touched the unmapped range
 * (or a table page it frees): a walker parked inside a walk elsewhere does
 * not hold the unmap up; one inside the range does, until its walk ends. */
struct holder {
	uint64_t gpa;
	unsigned hold_ms;
	_Atomic int state;  /* 1 inside the walk, 2 released */
	_Atomic int go;     /* set by the test: end the walk (after hold_ms) */
};

static void *hold_walk(void *p)
{
	struct holder *h = p;
	struct gmm_walker *hw = gmm_walker_register(vm);
	cr_assert_not_null(hw);
	gmm_walk_begin(hw);
	volatile uint8_t *q = gmm_translate(hw, h->gpa, 64, 0);
	cr_assert_not_null(q);
	atomic_store(&h->state, 1);
	while (!atomic_load(&h->go))
		usleep(1000);
	usleep(h->hold_ms * 1000);
	(void)q[0]; /* still valid: the writer must not have released it */
	atomic_store(&h->state, 2);
	gmm_walk_end(hw);
	gmm_walker_unregister(hw);
	return NULL;
}

static uint64_t unmap_while_held(uint64_t held_gpa, unsigned hold_ms, struct gmm_stats *st)
{
	struct holder h = { .gpa = held_gpa, .hold_ms = hold_ms };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, hold_walk, &h), 0);
	while (atomic_load(&h.state) != 1)
		usleep(1000);
	atomic_store(&h.go, 1);
	uint64_t t0 = gmm_now_ns();
	cr_assert_eq(gmm_unmap(vm, GMM_1G, 4 * GMM_2M, 0), 0);
	uint64_t ms = (gmm_now_ns() - t0) / 1000000;
	int state_at_return = atomic_load(&h.state);
	pthread_join(t, NULL);
	gmm_vm_stats(vm, st);
	return state_at_return == 2 ? ms : ms | (1ULL << 63);
}

Test(strategy, membarrier_waits_only_for_walks_in_the_range, .timeout = 20)
{
	if (!gmm_strategy_available(GMM_STRATEGY_MEMBARRIER))
		cr_skip_test("membarrier not available");
	mkvm(GMM_STRATEGY_MEMBARRIER, 0);
	add(0, 4 * GMM_2M, GMM_BACKING_THP, 0);
	add(GMM_1G, 4 * GMM_2M, GMM_BACKING_THP, 0);
	struct gmm_stats st;
	/* Held outside [1G, 1G + 8M) (and outside the 1 GiB its freed table
	 * pages cover): not waited for; the unmap returns while it holds. */
	uint64_t r = unmap_while_held(GMM_2M, 300, &st);
	cr_assert(r >> 63, "the unmap returned while the walk elsewhere was still open");
	cr_assert_eq(st.walkers_outside, 1);
	cr_assert_eq(st.walker_waits, 0);
	/* Held inside: waited for until its walk ends. */
	cr_assert_eq(gmm_map(vm, GMM_1G, 4 * GMM_2M), 0);
	r = unmap_while_held(GMM_1G + GMM_2M + 128, 300, &st);
	cr_assert_eq(r >> 63, 0, "the unmap returned before the walk in its range ended");
	cr_assert_geq(r, 250);
	cr_assert_eq(st.walker_waits, 1);
	rmvm();
}

/* Statistics never wait for the writer: an API thread can report while a
 * long unmap runs.  (Were wlock taken, this would deadlock: the test holds
 * it.) */
Test(vm, stats_do_not_wait_for_the_writer, .timeout = 10)
{
	setup();
	struct gmm_stats st;
	pthread_mutex_lock(&vm->wlock);
	gmm_vm_stats(vm, &st);
	pthread_mutex_unlock(&vm->wlock);
	cr_assert_eq(st.walkers, 1);
	teardown();
}

Test(vm, stats_format)
{
	struct gmm_stats st = { .translations = 12, .late_reads = 3 };
	char buf[2048];
	cr_assert_gt(gmm_stats_format(&st, buf, sizeof(buf)), 0);
	cr_assert(strstr(buf, "translations 12\n"));
	cr_assert(strstr(buf, "late_reads 3\n"));
}

/* ---- gmm_discard: free page reporting ------------------------------- */

static uint64_t resident(struct gmm_region *r)
{
	struct gmm_coverage cov;
	cr_assert_eq(gmm_region_coverage(r, &cov), 0, "%s", gmm_last_error());
	return cov.resident;
}

/* Page by page: a range may cross regions (not contiguous on the host). */
static void fill(uint64_t gpa, uint64_t len, uint8_t byte)
{
	for (uint64_t a = gpa; a < gpa + len; a += GMM_PAGE_SIZE) {
		gmm_walk_begin(w);
		uint8_t *p = gmm_translate(w, a, GMM_PAGE_SIZE, GMM_ACCESS_WRITE);
		cr_assert_not_null(p);
		memset(p, byte, GMM_PAGE_SIZE);
		gmm_walk_end(w);
	}
}

static bool all_bytes(uint64_t gpa, uint64_t len, uint8_t byte)
{
	bool ok = true;
	for (uint64_t a = gpa; a < gpa + len && ok; a += GMM_PAGE_SIZE) {
		gmm_walk_begin(w);
		const uint8_t *p = gmm_translate(w, a, GMM_PAGE_SIZE, GMM_ACCESS_READ);
		cr_assert_not_null(p);
		for (uint64_t i = 0; i < GMM_PAGE_SIZE && ok; i++)
			ok = p[i] == byte;
		gmm_walk_end(w);
	}
	return ok;
}

Test(table, discard_drops_contents_keeps_translations)
{
	struct gmm_region *r = add(0, 2 * GMM_2M, GMM_BACKING_THP, 0);
	struct gmm_region_info info;
	gmm_region_info(r, &info);
	fill(0, 2 * GMM_2M, 0x5a);
	uint64_t before = resident(r);
	cr_assert_geq(before, 2 * GMM_2M, "the pattern is resident");
	struct gmm_stats st0;
	gmm_vm_stats(vm, &st0);

	/* One 4 KiB page out of a THP leaf: the table keeps its 2 MiB leaf. */
	cr_assert_eq(gmm_discard(vm, 4096, 4096), 0, "%s", gmm_last_error());
	cr_assert_eq(leaf_size(4096), GMM_2M, "no split in the table");
	cr_assert_eq(tr(4096, 8, 0), (uint8_t *)info.hva + 4096, "same translation");
	cr_assert(all_bytes(4096, 4096, 0), "discarded page reads zero");
	cr_assert(all_bytes(0, 4096, 0x5a), "the page before is intact");
	cr_assert(all_bytes(8192, GMM_2M - 8192, 0x5a), "the rest of the block is intact");

	/* A whole block: its host memory goes. */
	cr_assert_eq(gmm_discard(vm, GMM_2M, GMM_2M), 0, "%s", gmm_last_error());
	uint64_t after = resident(r);
	cr_assert_leq(after, before - GMM_2M, "resident %llu -> %llu: the block was not given back",
		      (unsigned long long)before, (unsigned long long)after);
	cr_assert_eq(leaf_size(GMM_2M), GMM_2M);
	cr_assert(all_bytes(GMM_2M, GMM_2M, 0), "the discarded block reads zero");
	/* And it is usable again. */
	fill(GMM_2M, 4096, 0x77);
	cr_assert(all_bytes(GMM_2M, 4096, 0x77));

	struct gmm_stats st;
	gmm_vm_stats(vm, &st);
	cr_assert_eq(st.released_bytes - st0.released_bytes, GMM_2M + 4096);
	cr_assert_eq(st.unmaps, st0.unmaps, "a discard is not an unmap");
	cr_assert_eq(st.splits, st0.splits);
	cr_assert_eq(st.mapped_bytes, 2 * GMM_2M);
}

Test(table, discard_other_backings)
{
	struct gmm_region *a = add(0, GMM_2M, GMM_BACKING_ANON, 0);
	struct gmm_region *m = add(GMM_2M, GMM_2M, GMM_BACKING_MEMFD, 0);
	fill(0, 2 * GMM_2M, 0xc3);
	uint64_t ra = resident(a), rm = resident(m);
	cr_assert_eq(gmm_discard(vm, 0x10000, 0x20000), 0, "%s", gmm_last_error());
	cr_assert_eq(gmm_discard(vm, GMM_2M + 0x10000, 0x20000), 0, "%s", gmm_last_error());
	cr_assert(all_bytes(0x10000, 0x20000, 0), "anon: zero after discard");
	cr_assert(all_bytes(GMM_2M + 0x10000, 0x20000, 0), "memfd: the hole reads zero");
	cr_assert(all_bytes(0, 0x10000, 0xc3));
	cr_assert(all_bytes(GMM_2M + 0x30000, GMM_2M - 0x30000, 0xc3));
	/* Reading the zeros back may fault in the shared zero page (anon) or
	 * nothing; either way no more than before. */
	cr_assert_leq(resident(a), ra);
	cr_assert_leq(resident(m), rm);

}

/* hugetlb-2M: reserves one huge page itself (as test_backing does) and
 * puts the pool back in fini and, should the test process die, POST_ALL. */
static void discard_hp_init(void)
{
	setup();
	hp_save();
}

static void discard_hp_fini(void)
{
	teardown();
	hp_restore("test_table");
}

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	(void)set;
	hp_save();
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	hp_restore("test_table");
}

Test(table_hugetlb, discard_hugetlb_2m, .init = discard_hp_init, .fini = discard_hp_fini,
     .timeout = 60)
{
	struct gmm_region *h;
	struct gmm_region_spec s = { .gpa = 4 * GMM_2M, .size = 2 * GMM_2M,
				     .backing = GMM_BACKING_HUGETLB_2M };
	if (hp_saved < 0)
		cr_skip_test("!!! SKIPPED: no 2 MiB hugetlb pool in sysfs: discard on hugetlb-2M untested !!!");
	long avail = hp_avail(HP2M);
	if (avail < 2)
		hp_write_long(HP2M "nr_hugepages", hp_saved + (2 - avail));
	if (gmm_region_add(vm, &s, &h) < 0)
		cr_skip_test("!!! SKIPPED: %s: discard on hugetlb-2M untested !!!", gmm_last_error());
	fill(4 * GMM_2M, 2 * GMM_2M, 0x11);
	cr_assert_eq(gmm_discard(vm, 4 * GMM_2M, 4096), -EINVAL, "hugetlb: 2 MiB granule");
	cr_assert_eq(gmm_discard(vm, 4 * GMM_2M + 4096, GMM_2M), -EINVAL);
	cr_assert(all_bytes(4 * GMM_2M, 2 * GMM_2M, 0x11), "refused discards change nothing");
	long free0 = hp_read_long(HP2M "free_hugepages");
	cr_assert_eq(gmm_discard(vm, 4 * GMM_2M, GMM_2M), 0, "%s", gmm_last_error());
	cr_assert_eq(hp_read_long(HP2M "free_hugepages"), free0 + 1,
		     "the huge page went back to the pool");
	cr_assert_eq(leaf_size(4 * GMM_2M), GMM_2M, "translation unchanged");
	cr_assert(all_bytes(4 * GMM_2M, GMM_2M, 0), "punched: reads zero");
	cr_assert(all_bytes(5 * GMM_2M, GMM_2M, 0x11));
}

Test(table, discard_bad_ranges_change_nothing)
{
	add(0, 2 * GMM_2M, GMM_BACKING_THP, 0);
	add(2 * GMM_2M, GMM_2M, GMM_BACKING_THP, 0);
	add(8 * GMM_2M, GMM_2M, GMM_BACKING_ANON, GMM_REGION_READONLY);
	fill(0, 3 * GMM_2M, 0x99);
	struct gmm_stats st0;
	gmm_vm_stats(vm, &st0);
	cr_assert_eq(gmm_discard(vm, 100, 4096), -EINVAL, "not 4 KiB aligned");
	cr_assert(strstr(gmm_last_error(), "aligned"));
	cr_assert_eq(gmm_discard(vm, 0, 4095), -EINVAL, "length not aligned");
	cr_assert_eq(gmm_discard(vm, GMM_2M, 2 * GMM_2M), -EINVAL, "spans two regions");
	cr_assert_eq(gmm_discard(vm, 16 * GMM_2M, 4096), -EINVAL, "no region");
	cr_assert_eq(gmm_discard(vm, 2 * GMM_2M + GMM_2M - 4096, 8192), -EINVAL, "runs off the end");
	cr_assert_eq(gmm_discard(vm, 0, 0), -EINVAL, "empty");
	cr_assert_eq(gmm_discard(vm, ~0ULL - 4095, 4096), -EINVAL);
	cr_assert_eq(gmm_discard(vm, 8 * GMM_2M, 4096), -EPERM, "read-only region");
	/* A range with an unmapped page inside. */
	cr_assert_eq(gmm_unmap(vm, 0x3000, 0x1000, GMM_UNMAP_DISCARD), 0);
	gmm_vm_stats(vm, &st0);
	cr_assert_eq(gmm_discard(vm, 0x1000, 0x4000), -EINVAL, "partly unmapped");
	cr_assert(strstr(gmm_last_error(), "not mapped"));
	cr_assert(all_bytes(0x1000, 0x2000, 0x99), "nothing before the hole was dropped");
	cr_assert(all_bytes(0x4000, 0x1000, 0x99), "nothing after the hole was dropped");
	cr_assert(all_bytes(GMM_2M, 2 * GMM_2M, 0x99));
	struct gmm_stats st;
	gmm_vm_stats(vm, &st);
	cr_assert_eq(st.released_bytes, st0.released_bytes);
}
