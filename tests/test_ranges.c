/*
 * test_ranges.c - gmm_unmap_ranges (table.h): a list of ranges unmapped
 * as one operation -- validation, one serialisation and one pin wait per
 * call whatever the strategy, a failed call (pinned block, injected
 * table-page or host failures) changes nothing, and walkers and pinners
 * running against it (issue 13, finding 3).  Linked with the
 * fault-injection library (guestmm_fi).
 */
#include <criterion/criterion.h>
#include <guestmm/guestmm.h>

#include "internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PG GMM_PAGE_SIZE
#define PIN_TIMEOUT_MS 200

static struct gmm_vm *vm;
static struct gmm_walker *w;

static void mkvm(enum gmm_strategy s)
{
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	cfg.strategy = s;
	cfg.pin_timeout_ms = PIN_TIMEOUT_MS;
	cr_assert_eq(gmm_vm_create(&cfg, &vm), 0, "%s", gmm_last_error());
	w = gmm_walker_register(vm);
	cr_assert_not_null(w);
}

static void setup(void)
{
	mkvm(GMM_STRATEGY_DEFAULT);
}

static void teardown(void)
{
	gmm_fault_reset();
	if (w)
		gmm_walker_unregister(w);
	w = NULL;
	if (vm)
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

static uint64_t leaf(uint64_t gpa)
{
	uint64_t sz = 0;
	gmm_table_lookup(vm, gpa, &sz);
	return sz;
}

static struct gmm_stats stats(void)
{
	struct gmm_stats st;
	gmm_vm_stats(vm, &st);
	return st;
}

static uint64_t serialisations(const struct gmm_stats *st)
{
	return st->serialize_issued + st->serialize_skipped;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Every 2 MiB block of [gpa, gpa + len) is one whole 2 MiB leaf. */
static void assert_whole_blocks(uint64_t gpa, uint64_t len)
{
	for (uint64_t a = gpa; a < gpa + len; a += GMM_2M)
		cr_assert_eq(leaf(a), GMM_2M, "block 0x%llx is not one 2 MiB leaf (%llu)",
			     (unsigned long long)a, (unsigned long long)leaf(a));
}

/* "Nothing changed": the table, the statistics an unmap moves, and every
 * block can be pinned (none left frozen). */
static void assert_unchanged(const struct gmm_stats *st0, uint64_t gpa, uint64_t len)
{
	struct gmm_stats st = stats();
	assert_whole_blocks(gpa, len);
	cr_assert_eq(st.splits, st0->splits, "splits %llu -> %llu", (unsigned long long)st0->splits,
		     (unsigned long long)st.splits);
	cr_assert_eq(st.unmaps, st0->unmaps);
	cr_assert_eq(st.mapped_bytes, st0->mapped_bytes);
	cr_assert_eq(st.released_bytes, st0->released_bytes);
	cr_assert_eq(serialisations(&st), serialisations(st0), "no serialisation");
	cr_assert_eq(st.table_pages_in_use, st0->table_pages_in_use, "table pages %llu -> %llu",
		     (unsigned long long)st0->table_pages_in_use,
		     (unsigned long long)st.table_pages_in_use);
	cr_assert_eq(st.table_pages_reserve_free, st0->table_pages_reserve_free);
	for (uint64_t a = gpa; a < gpa + len; a += GMM_2M) {
		struct gmm_pin pin;
		cr_assert_eq(gmm_pin(w, a, 8, GMM_ACCESS_WRITE, &pin), 0,
			     "block 0x%llx cannot be pinned: left frozen?", (unsigned long long)a);
		gmm_unpin(vm, &pin);
	}
}

TestSuite(ranges, .init = setup, .fini = teardown, .timeout = 60);

/* ---- validation ------------------------------------------------------ */

Test(ranges, bad_lists_change_nothing)
{
	add(0, 8 * GMM_2M, GMM_BACKING_THP);
	add(16 * GMM_2M, 4 * GMM_2M, GMM_BACKING_ANON);
	struct gmm_stats st0 = stats();
	const struct {
		const char *what;
		struct gmm_range r[3];
		size_t n;
		const char *msg;
	} bad[] = {
		{ "empty range", { { PG, PG }, { 3 * PG, 0 } }, 2, "empty" },
		{ "unsorted", { { 5 * PG, PG }, { PG, PG } }, 2, "sorted" },
		{ "overlapping", { { PG, 4 * PG }, { 3 * PG, PG } }, 2, "overlap" },
		{ "outside any region", { { PG, PG }, { 10 * GMM_2M, PG } }, 2, "region" },
		{ "across two regions", { { 7 * GMM_2M, 2 * GMM_2M } }, 1, "region" },
		{ "past the region's end", { { 19 * GMM_2M, GMM_2M + PG } }, 1, "region" },
		{ "unaligned start", { { PG, PG }, { 2 * PG + 512, PG } }, 2, "aligned" },
		{ "unaligned length", { { PG, PG + 1 } }, 1, "aligned" },
		{ "overflowing", { { PG, PG }, { UINT64_MAX - PG + 1, 2 * PG } }, 2, "beyond" },
		{ "beyond 48 bits", { { GMM_GPA_LIMIT - PG, 2 * PG } }, 1, "beyond" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(gmm_unmap_ranges(vm, bad[i].r, bad[i].n, GMM_UNMAP_DISCARD), -EINVAL,
			     "%s", bad[i].what);
		cr_assert(strstr(gmm_last_error(), bad[i].msg), "%s: %s", bad[i].what,
			  gmm_last_error());
		assert_unchanged(&st0, 0, 8 * GMM_2M);
	}
	cr_assert_eq(gmm_unmap_ranges(vm, NULL, 1, 0), -EINVAL);
	/* An empty list is no operation. */
	cr_assert_eq(gmm_unmap_ranges(vm, NULL, 0, 0), 0);
	assert_unchanged(&st0, 0, 8 * GMM_2M);
	cr_assert_eq(leaf(16 * GMM_2M), PG, "anon: 4 KiB leaves");
}

/* ---- one operation ---------------------------------------------------- */

/* 64 scattered pages over 4 THP blocks, a whole block, two adjacent
 * ranges, and ranges in a second (anon) region: one serialisation, one
 * unmap, exactly those pages gone, their host memory released. */
static void scattered(enum gmm_strategy s)
{
	if (!gmm_strategy_available(s))
		cr_skip_test("strategy %s not available here", gmm_strategy_name(s));
	teardown();
	mkvm(s);
	add(0, 8 * GMM_2M, GMM_BACKING_THP);
	add(16 * GMM_2M, 2 * GMM_2M, GMM_BACKING_ANON);
	struct gmm_range r[80];
	size_t n = 0;
	for (unsigned i = 0; i < 64; i++)
		r[n++] = (struct gmm_range){ (i / 16) * GMM_2M + 2 * (i % 16) * PG, PG };
	r[n++] = (struct gmm_range){ 5 * GMM_2M, GMM_2M };           /* a whole leaf */
	r[n++] = (struct gmm_range){ 6 * GMM_2M + 10 * PG, 2 * PG };  /* adjacent */
	r[n++] = (struct gmm_range){ 6 * GMM_2M + 12 * PG, 3 * PG };
	r[n++] = (struct gmm_range){ 16 * GMM_2M + PG, PG };          /* anon */
	r[n++] = (struct gmm_range){ 17 * GMM_2M - PG, 2 * PG };      /* across anon's blocks */
	struct gmm_stats st0 = stats();
	cr_assert_eq(gmm_unmap_ranges(vm, r, n, 0), 0, "%s", gmm_last_error());
	struct gmm_stats st1 = stats();
	cr_assert_eq(serialisations(&st1) - serialisations(&st0), 1,
		     "%s: %llu serialisations for one list", gmm_strategy_name(s),
		     (unsigned long long)(serialisations(&st1) - serialisations(&st0)));
	cr_assert_eq(st1.unmaps - st0.unmaps, 1);
	uint64_t bytes = 0;
	for (size_t i = 0; i < n; i++) {
		bytes += r[i].len;
		for (uint64_t a = r[i].gpa; a < r[i].gpa + r[i].len; a += PG)
			cr_assert_eq(leaf(a), 0, "0x%llx still mapped", (unsigned long long)a);
	}
	cr_assert_eq(st1.unmapped_bytes - st0.unmapped_bytes, bytes);
	cr_assert_eq(st0.mapped_bytes - st1.mapped_bytes, bytes);
	cr_assert_eq(st1.released_bytes - st0.released_bytes, bytes);
	cr_assert_eq(st1.splits - st0.splits, 5, "blocks 0-3 and 6 split once each");
	/* Neighbours stay. */
	for (unsigned i = 0; i < 64; i++)
		cr_assert_eq(leaf(r[i].gpa + PG), PG);
	cr_assert_eq(leaf(4 * GMM_2M), GMM_2M);
	cr_assert_eq(leaf(6 * GMM_2M + 15 * PG), PG);
	cr_assert_eq(leaf(16 * GMM_2M), PG);
	cr_assert_eq(leaf(17 * GMM_2M + PG), PG);
	/* Unmapping them again: nothing mapped, nothing to serialise. */
	cr_assert_eq(gmm_unmap_ranges(vm, r, n, 0), 0);
	struct gmm_stats st2 = stats();
	cr_assert_eq(serialisations(&st2), serialisations(&st1), "nothing was mapped");
	cr_assert_eq(st2.unmapped_bytes, st1.unmapped_bytes);
	/* And they come back. */
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(gmm_map(vm, r[i].gpa, r[i].len), 0);
	for (uint64_t b = 0; b < 8; b++)
		if (leaf(b * GMM_2M) != GMM_2M)
			cr_assert_eq(gmm_collapse(vm, b * GMM_2M), 0);
	assert_whole_blocks(0, 8 * GMM_2M);
}

Test(ranges, one_serialisation_membarrier) { scattered(GMM_STRATEGY_MEMBARRIER); }
Test(ranges, one_serialisation_perthread) { scattered(GMM_STRATEGY_PERTHREAD); }
Test(ranges, one_serialisation_rcu) { scattered(GMM_STRATEGY_RCU); }
Test(ranges, one_serialisation_kick) { scattered(GMM_STRATEGY_KICK); }
Test(ranges, one_serialisation_count) { scattered(GMM_STRATEGY_COUNT); }

Test(ranges, discard_keeps_the_address_range)
{
	struct gmm_region *reg = add(0, 2 * GMM_2M, GMM_BACKING_THP);
	struct gmm_region_info ri;
	gmm_region_info(reg, &ri);
	struct gmm_range r[2] = { { PG, PG }, { GMM_2M + 8 * PG, 8 * PG } };
	cr_assert_eq(gmm_unmap_ranges(vm, r, 2, GMM_UNMAP_DISCARD), 0, "%s", gmm_last_error());
	/* DISCARD keeps the host mapping: the host address is still readable
	 * (a munmap would leave a PROT_NONE placeholder). */
	cr_assert_eq(((volatile uint8_t *)ri.hva)[PG], 0);
	cr_assert_eq(leaf(PG), 0);
	cr_assert_eq(gmm_map(vm, PG, PG), 0);
	cr_assert_eq(leaf(PG), PG);
}

/* ---- pins: one bounded wait, then nothing changed --------------------- */

Test(ranges, pinned_block_one_bounded_wait)
{
	add(0, 8 * GMM_2M, GMM_BACKING_THP);
	struct gmm_pin pin;
	cr_assert_eq(gmm_pin(w, 3 * GMM_2M + 100 * PG, 64, GMM_ACCESS_READ, &pin), 0);
	/* Ten ranges in the pinned block, others before and after it: ten
	 * gmm_unmap calls would wait 10 x 200 ms. */
	struct gmm_range r[14];
	size_t n = 0;
	r[n++] = (struct gmm_range){ PG, PG };
	r[n++] = (struct gmm_range){ 2 * GMM_2M + PG, PG };
	for (unsigned i = 0; i < 10; i++)
		r[n++] = (struct gmm_range){ 3 * GMM_2M + (2 * i + 1) * PG, PG };
	r[n++] = (struct gmm_range){ 5 * GMM_2M + PG, PG };
	r[n++] = (struct gmm_range){ 7 * GMM_2M, GMM_2M };
	struct gmm_stats st0 = stats();
	uint64_t t0 = now_ms();
	cr_assert_eq(gmm_unmap_ranges(vm, r, n, GMM_UNMAP_DISCARD), -EBUSY);
	uint64_t ms = now_ms() - t0;
	cr_assert(strstr(gmm_last_error(), "pinned"), "%s", gmm_last_error());
	cr_log_info("pinned block: -EBUSY after %llu ms (pin timeout %d ms)", (unsigned long long)ms,
		    PIN_TIMEOUT_MS);
	cr_assert_geq(ms, PIN_TIMEOUT_MS - 20, "it waited for the pin");
	cr_assert_lt(ms, 5 * PIN_TIMEOUT_MS, "one wait, not one per range: %llu ms",
		     (unsigned long long)ms);
	struct gmm_stats st1 = stats();
	cr_assert_eq(st1.pin_waits - st0.pin_waits, 1);
	cr_assert_eq(st1.pin_busy - st0.pin_busy, 1);
	gmm_unpin(vm, &pin);
	st0.pins_active = st1.pins_active;
	assert_unchanged(&st0, 0, 8 * GMM_2M);

	/* NOWAIT: at once. */
	cr_assert_eq(gmm_pin(w, 3 * GMM_2M + 100 * PG, 64, GMM_ACCESS_READ, &pin), 0);
	t0 = now_ms();
	cr_assert_eq(gmm_unmap_ranges(vm, r, n, GMM_UNMAP_NOWAIT), -EBUSY);
	cr_assert_lt(now_ms() - t0, PIN_TIMEOUT_MS / 2);
	cr_assert_eq(stats().pin_waits, st1.pin_waits, "NOWAIT does not wait");
	gmm_unpin(vm, &pin);
	assert_unchanged(&st0, 0, 8 * GMM_2M);

	/* Unpinned: the same list goes through. */
	cr_assert_eq(gmm_unmap_ranges(vm, r, n, 0), 0, "%s", gmm_last_error());
	cr_assert_eq(leaf(3 * GMM_2M + PG), 0);
	cr_assert_eq(leaf(7 * GMM_2M), 0);
}

/* A pin that goes during the wait: the list goes through after it, and
 * pins on blocks the list froze see -EAGAIN meanwhile (not -EFAULT). */
static _Atomic int unpinned;
static struct gmm_pin held;

static void *unpin_later(void *arg)
{
	(void)arg;
	usleep(50 * 1000);
	gmm_unpin(vm, &held);
	atomic_store(&unpinned, 1);
	return NULL;
}

Test(ranges, wait_ends_when_the_pin_goes)
{
	add(0, 4 * GMM_2M, GMM_BACKING_THP);
	cr_assert_eq(gmm_pin(w, 2 * GMM_2M, 8, GMM_ACCESS_WRITE, &held), 0);
	struct gmm_range r[3] = { { PG, PG }, { 2 * GMM_2M + PG, PG }, { 3 * GMM_2M + PG, PG } };
	pthread_t t;
	pthread_create(&t, NULL, unpin_later, NULL);
	uint64_t t0 = now_ms();
	cr_assert_eq(gmm_unmap_ranges(vm, r, 3, 0), 0, "%s", gmm_last_error());
	uint64_t ms = now_ms() - t0;
	pthread_join(t, NULL);
	cr_assert(atomic_load(&unpinned));
	cr_assert_lt(ms, PIN_TIMEOUT_MS, "ended at the unpin (%llu ms)", (unsigned long long)ms);
	cr_assert_eq(stats().pin_waits, 1);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(leaf(r[i].gpa), 0);
}

/* ---- injected failures: nothing changed ------------------------------- */

/* 40 THP blocks, one 4 KiB page in each: 40 splits, more than the reserve
 * (16).  Every table-page allocation fails: the stash cannot be filled. */
Test(ranges, failed_split_reservation_changes_nothing)
{
	enum { N = 40 };
	add(0, N * GMM_2M, GMM_BACKING_THP);
	struct gmm_range r[N];
	for (unsigned i = 0; i < N; i++)
		r[i] = (struct gmm_range){ i * GMM_2M + 7 * PG, PG };
	struct gmm_stats st0 = stats();
	gmm_fault_set(GMM_FAULT_PTP_ALLOC, 1, 1);
	int ret = gmm_unmap_ranges(vm, r, N, GMM_UNMAP_DISCARD);
	cr_assert(ret == -ENOMEM || ret == -ENOSPC, "ret %d: %s", ret, gmm_last_error());
	cr_assert_gt(gmm_fault_hits(GMM_FAULT_PTP_ALLOC), 0);
	gmm_fault_reset();
	assert_unchanged(&st0, 0, N * GMM_2M);
	/* The n-th allocation failing, for each n: always all or nothing. */
	for (uint64_t nth = 1; nth <= N; nth += 7) {
		gmm_fault_set(GMM_FAULT_PTP_ALLOC, nth, 0);
		ret = gmm_unmap_ranges(vm, r, N, 0);
		gmm_fault_reset();
		if (ret == 0) {
			/* The reserve covered the one failure: all done;
			 * put everything back for the next round. */
			for (unsigned i = 0; i < N; i++) {
				cr_assert_eq(leaf(r[i].gpa), 0);
				cr_assert_eq(gmm_map(vm, r[i].gpa, PG), 0);
				cr_assert_eq(gmm_collapse(vm, i * GMM_2M), 0);
			}
			gmm_reclaim(vm);
			st0 = stats();
		} else {
			assert_unchanged(&st0, 0, N * GMM_2M);
		}
	}
}

/* The table-page limit: -ENOSPC, nothing changed. */
Test(ranges, table_page_limit_changes_nothing)
{
	teardown();
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	cfg.table_pages_limit = 40;
	cfg.table_pages_reserve = 4;
	cfg.pin_timeout_ms = PIN_TIMEOUT_MS;
	cr_assert_eq(gmm_vm_create(&cfg, &vm), 0, "%s", gmm_last_error());
	w = gmm_walker_register(vm);
	enum { N = 64 };
	add(0, N * GMM_2M, GMM_BACKING_THP);
	struct gmm_range r[N];
	for (unsigned i = 0; i < N; i++)
		r[i] = (struct gmm_range){ i * GMM_2M + PG, PG };
	struct gmm_stats st0 = stats();
	cr_assert_eq(gmm_unmap_ranges(vm, r, N, 0), -ENOSPC);
	cr_assert(strstr(gmm_last_error(), "table-page limit"), "%s", gmm_last_error());
	assert_unchanged(&st0, 0, N * GMM_2M);
}

/* A host release failing after the point of no return: the documented
 * exception -- every range unmapped for walkers, the error returned, only
 * what was given back counted. */
Test(ranges, failed_release_is_reported_after_the_point_of_no_return)
{
	add(0, 4 * GMM_2M, GMM_BACKING_THP);
	struct gmm_range r[3] = { { PG, PG }, { GMM_2M + PG, PG }, { 3 * GMM_2M, GMM_2M } };
	struct gmm_stats st0 = stats();
	gmm_fault_set(GMM_FAULT_RELEASE, 2, 0);
	cr_assert_lt(gmm_unmap_ranges(vm, r, 3, 0), 0);
	cr_assert_eq(gmm_fault_hits(GMM_FAULT_RELEASE), 1);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(leaf(r[i].gpa), 0);
	struct gmm_stats st1 = stats();
	cr_assert_eq(st1.released_bytes - st0.released_bytes, PG + GMM_2M);
	cr_assert_eq(st1.unmapped_bytes - st0.unmapped_bytes, 2 * PG + GMM_2M);
	/* Blocks are thawed: pins work on the rest of them. */
	struct gmm_pin pin;
	cr_assert_eq(gmm_pin(w, GMM_2M + 8 * PG, 8, GMM_ACCESS_READ, &pin), 0);
	gmm_unpin(vm, &pin);
	/* And mapping back works. */
	for (int i = 0; i < 3; i++)
		cr_assert_eq(gmm_map(vm, r[i].gpa, r[i].len), 0, "%s", gmm_last_error());
}

/* ---- walkers and pinners against it ----------------------------------- */

#define CONC_BLOCKS 8
static _Atomic int conc_stop;
static _Atomic uint64_t conc_reads, conc_pins;
static volatile uint64_t conc_sink;

static void *conc_walker(void *arg)
{
	bool pinner = arg != NULL;
	struct gmm_walker *cw = gmm_walker_register(vm);
	uint64_t seed = pinner ? 0x1234567 : 0x9abcdef, sum = 0;
	while (!atomic_load(&conc_stop)) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		uint64_t gpa = (seed % (CONC_BLOCKS * GMM_2M / PG)) * PG;
		if (pinner) {
			struct gmm_pin pin;
			if (gmm_pin(cw, gpa, PG, GMM_ACCESS_WRITE, &pin) == 0) {
				((volatile uint8_t *)pin.hva)[PG - 1] = 1;
				gmm_unpin(vm, &pin);
				atomic_fetch_add(&conc_pins, 1);
			}
			continue;
		}
		gmm_walk_begin(cw);
		volatile uint8_t *p = gmm_translate(cw, gpa, PG, GMM_ACCESS_WRITE);
		if (p) {
			/* Released memory would fault here (munmap): the
			 * serialisation must cover it.  The spin widens the
			 * window between the translation and the access. */
			p[0] = 1;
			for (int i = 0; i < 64; i++)
				__asm__ volatile("pause" ::: "memory");
			sum += p[PG - 1];
			atomic_fetch_add(&conc_reads, 1);
		}
		gmm_walk_end(cw);
	}
	gmm_walker_unregister(cw);
	conc_sink = sum;
	return NULL;
}

static void concurrent(enum gmm_strategy s)
{
	if (!gmm_strategy_available(s))
		cr_skip_test("strategy %s not available here", gmm_strategy_name(s));
	teardown();
	mkvm(s);
	add(0, CONC_BLOCKS * GMM_2M, GMM_BACKING_THP);
	atomic_store(&conc_stop, 0);
	pthread_t t[2];
	pthread_create(&t[0], NULL, conc_walker, NULL);
	pthread_create(&t[1], NULL, conc_walker, (void *)1);
	uint64_t seed = 42, ok = 0, busy = 0;
	enum { N = 256 };
	static struct gmm_range r[N];
	for (int round = 0; round < 150; round++) {
		/* A random half of the pages of a random window. */
		size_t n = 0;
		for (uint64_t p = 0; p < CONC_BLOCKS * GMM_2M / PG && n < N; p++) {
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			if (seed & 1)
				r[n++] = (struct gmm_range){ p * PG, PG };
		}
		int ret = gmm_unmap_ranges(vm, r, n, round & 1 ? GMM_UNMAP_DISCARD : 0);
		cr_assert(ret == 0 || ret == -EBUSY, "round %d: %d %s", round, ret, gmm_last_error());
		ok += ret == 0;
		busy += ret == -EBUSY;
		cr_assert_eq(gmm_map(vm, 0, CONC_BLOCKS * GMM_2M), 0, "%s", gmm_last_error());
		for (uint64_t b = 0; b < CONC_BLOCKS; b++)
			if (leaf(b * GMM_2M) != GMM_2M)
				gmm_collapse(vm, b * GMM_2M);
	}
	atomic_store(&conc_stop, 1);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	cr_log_info("%s: %llu lists unmapped, %llu busy, %llu reads, %llu pins", gmm_strategy_name(s),
		    (unsigned long long)ok, (unsigned long long)busy,
		    (unsigned long long)atomic_load(&conc_reads),
		    (unsigned long long)atomic_load(&conc_pins));
	cr_assert_gt(ok, 0);
	cr_assert_eq(stats().late_reads, 0);
}

Test(ranges, walkers_and_pinners_membarrier) { concurrent(GMM_STRATEGY_MEMBARRIER); }
Test(ranges, walkers_and_pinners_perthread) { concurrent(GMM_STRATEGY_PERTHREAD); }
Test(ranges, walkers_and_pinners_kick) { concurrent(GMM_STRATEGY_KICK); }
Test(ranges, walkers_and_pinners_rcu) { concurrent(GMM_STRATEGY_RCU); }
