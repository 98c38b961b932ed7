/*
 * test_fault.c - failure paths under injected faults (guestmm/src/fault.h):
 * a failed operation changes nothing (issue 12, defects 3, 9 and 11).
 * Linked with the fault-injection library (guestmm_fi).
 */
#include <criterion/criterion.h>
#include <guestmm/guestmm.h>

#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static struct gmm_vm *vm;
static struct gmm_walker *w;

static void setup(void)
{
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	cfg.pin_timeout_ms = 200;
	cr_assert_eq(gmm_vm_create(&cfg, &vm), 0, "%s", gmm_last_error());
	w = gmm_walker_register(vm);
	cr_assert_not_null(w);
}

static void teardown(void)
{
	gmm_fault_reset();
	gmm_walker_unregister(w);
	gmm_vm_destroy(vm);
	vm = NULL;
}

static struct gmm_region *add(uint64_t gpa, uint64_t size, enum gmm_backing b)
{
	struct gmm_region *r;
	struct gmm_region_spec spec = { .gpa = gpa, .size = size, .backing = b };
	cr_assert_eq(gmm_region_add(vm, &spec, &r), 0, "%s", gmm_last_error());
	return r;
}

static bool mapped(uint64_t gpa)
{
	return gmm_table_lookup(vm, gpa, NULL) != 0;
}

TestSuite(fault, .init = setup, .fini = teardown, .timeout = 30);

/* The facility itself: nth, every, hits; disarmed sites never fire. */
Test(fault, sites_fire_when_told)
{
	add(0, 4 * GMM_2M, GMM_BACKING_THP);
	gmm_fault_set(GMM_FAULT_RELEASE, 2, 0);
	cr_assert_eq(gmm_unmap(vm, 0, GMM_2M, 0), 0);
	cr_assert_lt(gmm_unmap(vm, GMM_2M, GMM_2M, 0), 0, "the 2nd release must fail");
	cr_assert(strstr(gmm_last_error(), "injected"), "%s", gmm_last_error());
	cr_assert_eq(gmm_unmap(vm, 2 * GMM_2M, GMM_2M, 0), 0);
	cr_assert_eq(gmm_fault_hits(GMM_FAULT_RELEASE), 1);
	gmm_fault_set(GMM_FAULT_REMAP, 1, 0);
	cr_assert_lt(gmm_map(vm, 0, GMM_2M), 0);
	cr_assert_eq(gmm_map(vm, 0, GMM_2M), 0);
	cr_assert_eq(gmm_fault_hits(GMM_FAULT_REMAP), 1);
}

/* ---- defect 3: a failed gmm_map destroys what was mapped before --------- */

Test(fault, failed_map_keeps_earlier_leaves_and_pins)
{
	/* 4 KiB leaves: each 2 MiB block has its own level-0 table page. */
	add(0, 2 * GMM_2M, GMM_BACKING_ANON);
	struct gmm_pin pin;
	cr_assert_eq(gmm_pin(w, 0x3000, 8, GMM_ACCESS_WRITE, &pin), 0);
	*(volatile uint64_t *)pin.hva = 0x5eed;
	/* The second block goes, and its table page with it. */
	cr_assert_eq(gmm_unmap(vm, GMM_2M, GMM_2M, 0), 0);
	struct gmm_stats before, after;
	gmm_vm_stats(vm, &before);
	/* Mapping it back needs that table page: the host refuses it. */
	gmm_fault_set(GMM_FAULT_PTP_ALLOC, 1, 0);
	int ret = gmm_map(vm, 0, 2 * GMM_2M);
	cr_assert_lt(ret, 0, "the injected allocation failure must fail the map");
	cr_assert_eq(gmm_fault_hits(GMM_FAULT_PTP_ALLOC), 1);
	/* Nothing changed: the first block is mapped, the pin's word holds. */
	cr_assert(mapped(0x3000), "a leaf mapped before the failed call disappeared");
	cr_assert_eq(*(volatile uint64_t *)pin.hva, 0x5eed, "a pinned word changed under its pin");
	cr_assert_not(mapped(GMM_2M));
	gmm_vm_stats(vm, &after);
	cr_assert_eq(after.mapped_bytes, before.mapped_bytes);
	cr_assert_eq(after.table_pages_in_use, before.table_pages_in_use);
	gmm_unpin(vm, &pin);
	cr_assert_eq(gmm_map(vm, 0, 2 * GMM_2M), 0, "%s", gmm_last_error());
	cr_assert(mapped(GMM_2M));
}

Test(fault, failed_map_on_pool_mmap_changes_nothing)
{
	add(0, 2 * GMM_2M, GMM_BACKING_ANON);
	cr_assert_eq(gmm_unmap(vm, GMM_2M, GMM_2M, 0), 0);
	/* Empty the pool's free stack so the next page needs a new chunk. */
	struct gmm_ptp *held[256];
	unsigned n = 0;
	while (vm->pool.nfree && n < 256)
		held[n++] = gmm_pool_alloc(&vm->pool, false);
	cr_assert_eq(vm->pool.nfree, 0);
	gmm_fault_set(GMM_FAULT_POOL_MMAP, 1, 0);
	cr_assert_lt(gmm_map(vm, 0, 2 * GMM_2M), 0);
	cr_assert_eq(gmm_fault_hits(GMM_FAULT_POOL_MMAP), 1);
	cr_assert(mapped(0x3000));
	cr_assert_not(mapped(GMM_2M));
	for (unsigned i = 0; i < n; i++)
		gmm_pool_free(&vm->pool, held[i]);
}

/* A remap that fails after an earlier run was mapped back: the earlier run
 * is given back (a placeholder again), no translation appears. */
Test(fault, failed_remap_undoes_earlier_runs)
{
	struct gmm_region *r = add(0, 4 * GMM_2M, GMM_BACKING_THP);
	cr_assert_eq(gmm_unmap(vm, 0, GMM_2M, 0), 0);
	cr_assert_eq(gmm_unmap(vm, 2 * GMM_2M, GMM_2M, 0), 0);
	struct gmm_stats before, after;
	gmm_vm_stats(vm, &before);
	gmm_fault_set(GMM_FAULT_REMAP, 2, 0);
	cr_assert_lt(gmm_map(vm, 0, 4 * GMM_2M), 0);
	cr_assert_eq(gmm_fault_hits(GMM_FAULT_REMAP), 1);
	cr_assert_not(mapped(0));
	cr_assert_not(mapped(2 * GMM_2M));
	cr_assert(mapped(GMM_2M));
	gmm_vm_stats(vm, &after);
	cr_assert_eq(after.mapped_bytes, before.mapped_bytes);
	/* The first run is a PROT_NONE placeholder again, not fresh memory. */
	char line[512];
	bool none = false;
	FILE *f = fopen("/proc/self/maps", "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char perms[8];
		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 &&
		    lo <= (uintptr_t)r->hva && (uintptr_t)r->hva < hi)
			none = strcmp(perms, "---p") == 0;
	}
	fclose(f);
	cr_assert(none, "the run mapped back before the failure is still mapped");
	cr_assert_eq(gmm_map(vm, 0, 4 * GMM_2M), 0, "%s", gmm_last_error());
}

/* gmm_table_install (region add) with a failing table page: no leaf, no
 * statistics change (defect 11: mapped_bytes underflowed here). */
Test(fault, failed_region_add_changes_nothing)
{
	add(0, GMM_2M, GMM_BACKING_THP);
	struct gmm_stats before, after;
	gmm_vm_stats(vm, &before);
	/* 4 MiB of 4 KiB leaves at 1 GiB: a level-1 page and two level-0
	 * pages; the third allocation fails after the first block could
	 * have been linked. */
	gmm_fault_set(GMM_FAULT_PTP_ALLOC, 3, 0);
	struct gmm_region_spec spec = { .gpa = GMM_1G, .size = 2 * GMM_2M, .backing = GMM_BACKING_ANON };
	cr_assert_lt(gmm_region_add(vm, &spec, NULL), 0);
	cr_assert_eq(gmm_fault_hits(GMM_FAULT_PTP_ALLOC), 1);
	gmm_vm_stats(vm, &after);
	cr_assert_eq(after.mapped_bytes, before.mapped_bytes, "mapped_bytes %llu, was %llu",
		     (unsigned long long)after.mapped_bytes, (unsigned long long)before.mapped_bytes);
	cr_assert_eq(after.table_pages_in_use, before.table_pages_in_use);
	cr_assert_not(mapped(GMM_1G));
	cr_assert_eq(gmm_region_count(vm), 1);
}

/* ---- defect 11: a failed release is not counted as released ------------ */

Test(fault, failed_releases_are_not_counted)
{
	add(0, 4 * GMM_2M, GMM_BACKING_THP);
	/* Two separate runs to release: blocks 0 and 2..3. */
	cr_assert_eq(gmm_unmap(vm, GMM_2M, GMM_2M, 0), 0);
	struct gmm_stats before, after;
	gmm_vm_stats(vm, &before);
	gmm_fault_set(GMM_FAULT_RELEASE, 1, 1);
	cr_assert_lt(gmm_unmap(vm, 0, 4 * GMM_2M, 0), 0);
	cr_assert_eq(gmm_fault_hits(GMM_FAULT_RELEASE), 2);
	gmm_vm_stats(vm, &after);
	cr_assert_eq(after.released_bytes, before.released_bytes,
		     "released_bytes grew by %llu with every release failing",
		     (unsigned long long)(after.released_bytes - before.released_bytes));
}

/* ---- defect 9: the copy helpers copy nothing when they fail ------------- */

/* GPA-adjacent regions, each its own host mapping: every region is one
 * host-contiguous piece, so the range below is more pieces than one batch
 * (GMM_COPY_SPANS, 4 in the test library). */
Test(fault, failed_copy_copies_nothing)
{
	enum { N = 6 };
	for (int i = 0; i < N; i++)
		add((uint64_t)i * GMM_2M, GMM_2M, GMM_BACKING_THP);
	/* The last region's last page is unmapped. */
	cr_assert_eq(gmm_unmap(vm, N * GMM_2M - GMM_PAGE_SIZE, GMM_PAGE_SIZE, 0), 0);
	size_t len = N * GMM_2M;
	uint8_t *buf = malloc(len);
	cr_assert_not_null(buf);
	memset(buf, 0xa5, len);
	cr_assert_eq(gmm_write(w, 0, buf, len), -EFAULT);
	uint8_t probe[64];
	for (int i = 0; i < N; i++) {
		cr_assert_eq(gmm_read(w, (uint64_t)i * GMM_2M, probe, sizeof(probe)), 0);
		for (size_t j = 0; j < sizeof(probe); j++)
			cr_assert_eq(probe[j], 0, "region %d was written by a gmm_write that failed", i);
	}
	/* And a read that fails leaves the buffer alone. */
	memset(buf, 0x5a, len);
	cr_assert_eq(gmm_read(w, 0, buf, len), -EFAULT);
	for (size_t j = 0; j < len; j += 4096)
		cr_assert_eq(buf[j], 0x5a, "byte %zu of a failed gmm_read's buffer changed", j);
	/* The mapped prefix still copies. */
	memset(buf, 0xa5, len);
	cr_assert_eq(gmm_write(w, 0, buf, len - GMM_PAGE_SIZE), 0);
	cr_assert_eq(gmm_read(w, len - 2 * GMM_PAGE_SIZE, probe, sizeof(probe)), 0);
	cr_assert_eq(probe[0], 0xa5);
	free(buf);
}

/* ---- a released range keeps its address --------------------------------- */

/*
 * Another thread of the process maps something (malloc's arenas, a library,
 * another VM's region) at the moment a range is released.  It must not get
 * the released addresses: gmm_map later maps the region's memory back at
 * them with MAP_FIXED, which would replace the intruder's mapping under it.
 * The hook runs at the point where the range's memory is gone and plays the
 * intruder: a mapping that asks for exactly those addresses.
 */
static void *intruder;

static void intrude(enum gmm_hook_point h, void *arg)
{
	struct gmm_hook_range *hr = arg;
	(void)h;
	void *p = mmap(hr->addr, GMM_PAGE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == hr->addr) {
		intruder = p;
		*(volatile uint64_t *)p = 0x1f1f1f1f;
	} else if (p != MAP_FAILED) {
		munmap(p, GMM_PAGE_SIZE);
	}
}

Test(fault, a_released_range_keeps_its_address)
{
	struct gmm_region *r = add(0, 2 * GMM_2M, GMM_BACKING_THP);
	struct gmm_region_info info;
	gmm_region_info(r, &info);
	gmm_hook_set(GMM_HOOK_RELEASED, intrude);
	cr_assert_eq(gmm_unmap(vm, GMM_2M, GMM_2M, 0), 0, "%s", gmm_last_error());
	gmm_hook_set(GMM_HOOK_RELEASED, NULL);
	cr_assert_null(intruder, "another mapping took the released address %p", intruder);
	/* Mapping back gives the region its memory there again. */
	cr_assert_eq(gmm_map(vm, GMM_2M, GMM_2M), 0, "%s", gmm_last_error());
	cr_assert_eq(gmm_write(w, GMM_2M, &(uint64_t){ 7 }, 8), 0);
	cr_assert_eq(*(volatile uint64_t *)((uint8_t *)info.hva + GMM_2M), 7);
}
