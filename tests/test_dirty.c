/*
 * test_dirty.c - guestmm's dirty log (guestmm/dirty.h, issue 17): write
 * translations, gmm_write and write pins mark exactly their 4 KiB pages
 * (THP leaves too), reads and an idle log mark nothing, a harvest clears;
 * a write pin taken before logging began is caught at its release; unmap,
 * discard and map mark their ranges; a region added while logging is all
 * dirty; the test switch stops the walkers' marks only; and, for every
 * strategy, a harvest returns only after a walk that marked before it has
 * ended, so the bytes written behind the mark are there to copy.
 */
#include <criterion/criterion.h>
#include <guestmm/guestmm.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MiB (1ULL << 20)
#define REGION (16 * MiB)
#define BASE (1ULL << 30)
#define PAGES (REGION / GMM_PAGE_SIZE)
#define WORDS (PAGES / 64)

static struct gmm_vm *vm;
static struct gmm_walker *w;
static enum gmm_strategy strategy = GMM_STRATEGY__N;   /* __N: the default */

static void setup(void)
{
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	if (strategy != GMM_STRATEGY__N)
		cfg.strategy = strategy;
	cfg.pin_timeout_ms = 300;
	cr_assert_eq(gmm_vm_create(&cfg, &vm), 0, "%s", gmm_last_error());
	struct gmm_region_spec spec = { .gpa = BASE, .size = REGION, .backing = GMM_BACKING_THP,
					.flags = GMM_REGION_PREFAULT, .name = "t" };
	cr_assert_eq(gmm_region_add(vm, &spec, NULL), 0, "%s", gmm_last_error());
	w = gmm_walker_register(vm);
	cr_assert(w);
}

static void teardown(void)
{
	if (w)
		gmm_walker_unregister(w);
	w = NULL;
	gmm_vm_destroy(vm);
	vm = NULL;
	strategy = GMM_STRATEGY__N;
}

TestSuite(dirty, .init = setup, .fini = teardown);

static uint64_t bits[WORDS];

/* Harvest the region; the number of pages reported. */
static uint64_t harvest(void)
{
	memset(bits, 0, sizeof(bits));
	cr_assert_eq(gmm_dirty_harvest(vm, BASE, bits, PAGES), 0, "%s", gmm_last_error());
	uint64_t n = 0;
	for (uint64_t i = 0; i < WORDS; i++)
		n += (uint64_t)__builtin_popcountll(bits[i]);
	return n;
}

static bool is_dirty(uint64_t gpa)
{
	uint64_t p = (gpa - BASE) / GMM_PAGE_SIZE;
	return bits[p / 64] >> (p % 64) & 1;
}

static void write_at(uint64_t gpa, size_t len)
{
	gmm_walk_begin(w);
	uint8_t *p = gmm_translate(w, gpa, len, GMM_ACCESS_WRITE);
	cr_assert(p, "translate 0x%llx: %s", (unsigned long long)gpa, strerror(errno));
	memset(p, 0xab, len);
	gmm_walk_end(w);
}

Test(dirty, translations_mark_their_pages_only)
{
	/* Off: nothing is marked, harvest refuses. */
	write_at(BASE, 8);
	uint64_t b[WORDS];
	cr_assert_eq(gmm_dirty_harvest(vm, BASE, b, PAGES), -EPERM);
	cr_assert_not(gmm_dirty_active(vm));

	cr_assert_eq(gmm_dirty_start(vm), 0, "%s", gmm_last_error());
	cr_assert(gmm_dirty_active(vm));
	cr_assert_eq(gmm_dirty_start(vm), -EBUSY);
	cr_assert_eq(harvest(), 0, "a fresh log is clean");

	/* One byte; a range across a 2 MiB leaf; a read. */
	write_at(BASE + 5 * GMM_PAGE_SIZE + 100, 1);
	write_at(BASE + 2 * MiB - 2 * GMM_PAGE_SIZE + 8, 3 * GMM_PAGE_SIZE);
	gmm_walk_begin(w);
	cr_assert(gmm_translate(w, BASE + 9 * MiB, 64, GMM_ACCESS_READ));
	gmm_walk_end(w);
	uint8_t buf[100] = { 1 };
	cr_assert_eq(gmm_read(w, BASE + 10 * MiB, buf, sizeof(buf)), 0);
	cr_assert_eq(gmm_write(w, BASE + 12 * MiB - 50, buf, sizeof(buf)), 0);

	cr_assert_eq(harvest(), 1 + 4 + 2);
	cr_assert(is_dirty(BASE + 5 * GMM_PAGE_SIZE));
	for (uint64_t k = 0; k < 4; k++)
		cr_assert(is_dirty(BASE + 2 * MiB - 2 * GMM_PAGE_SIZE + k * GMM_PAGE_SIZE));
	cr_assert(is_dirty(BASE + 12 * MiB - GMM_PAGE_SIZE) && is_dirty(BASE + 12 * MiB));
	cr_assert_not(is_dirty(BASE + 9 * MiB));
	cr_assert_eq(harvest(), 0, "a harvest clears");

	/* gmm_translate_span marks what it translated. */
	size_t span;
	gmm_walk_begin(w);
	cr_assert(gmm_translate_span(w, BASE + 3 * MiB, 2 * GMM_PAGE_SIZE, GMM_ACCESS_WRITE, &span));
	gmm_walk_end(w);
	cr_assert_eq(harvest(), 2);

	gmm_dirty_stop(vm);
	cr_assert_not(gmm_dirty_active(vm));
	write_at(BASE, 8);
	cr_assert_eq(gmm_dirty_harvest(vm, BASE, b, PAGES), -EPERM);
	/* Restart: clean again, marks again. */
	cr_assert_eq(gmm_dirty_start(vm), 0);
	cr_assert_eq(harvest(), 0);
	write_at(BASE + 7 * GMM_PAGE_SIZE, 8);
	cr_assert_eq(harvest(), 1);
	cr_assert(is_dirty(BASE + 7 * GMM_PAGE_SIZE));
}

Test(dirty, harvest_refuses_bad_arguments)
{
	cr_assert_eq(gmm_dirty_start(vm), 0);
	uint64_t b[WORDS];
	cr_assert_eq(gmm_dirty_harvest(vm, BASE + 2 * MiB, b, PAGES), -ENOENT);
	cr_assert_eq(gmm_dirty_harvest(vm, BASE, b, PAGES - 1), -EINVAL);
}

Test(dirty, write_pin_taken_before_logging_is_caught_at_release)
{
	struct gmm_pin pr, pw;
	cr_assert_eq(gmm_pin(w, BASE + 4 * MiB, 2 * GMM_PAGE_SIZE, GMM_ACCESS_WRITE, &pw), 0);
	cr_assert_eq(gmm_pin(w, BASE + 6 * MiB, GMM_PAGE_SIZE, GMM_ACCESS_READ, &pr), 0);
	cr_assert_eq(gmm_dirty_start(vm), 0);
	memset(pw.hva, 0x5a, pw.len);   /* the I/O lands after the first copy */
	cr_assert_eq(harvest(), 0);
	gmm_unpin(vm, &pw);
	gmm_unpin(vm, &pr);
	cr_assert_eq(harvest(), 2, "the write pin's pages, not the read pin's");
	cr_assert(is_dirty(BASE + 4 * MiB) && is_dirty(BASE + 4 * MiB + GMM_PAGE_SIZE));

	/* A pin taken while logging: marked at the pin and at the release. */
	cr_assert_eq(gmm_pin(w, BASE + 8 * MiB, GMM_PAGE_SIZE, GMM_ACCESS_WRITE, &pw), 0);
	cr_assert_eq(harvest(), 1);
	gmm_unpin(vm, &pw);
	cr_assert_eq(harvest(), 1);
}

Test(dirty, writer_operations_mark_their_ranges)
{
	cr_assert_eq(gmm_dirty_start(vm), 0);
	cr_assert_eq(gmm_discard(vm, BASE + 1 * MiB, 3 * GMM_PAGE_SIZE), 0, "%s", gmm_last_error());
	cr_assert_eq(harvest(), 3);
	cr_assert_eq(gmm_unmap(vm, BASE + 4 * MiB, 2 * MiB, 0), 0, "%s", gmm_last_error());
	cr_assert_eq(harvest(), 512);
	cr_assert(is_dirty(BASE + 4 * MiB) && is_dirty(BASE + 6 * MiB - GMM_PAGE_SIZE));
	cr_assert_eq(gmm_map(vm, BASE + 4 * MiB, 2 * MiB), 0, "%s", gmm_last_error());
	cr_assert_eq(harvest(), 512);
	struct gmm_range rg[2] = { { BASE + 8 * MiB, GMM_PAGE_SIZE }, { BASE + 9 * MiB, GMM_PAGE_SIZE } };
	cr_assert_eq(gmm_unmap_ranges(vm, rg, 2, 0), 0, "%s", gmm_last_error());
	cr_assert_eq(harvest(), 2);
	/* Split/protect change no bytes: not marked. */
	cr_assert_eq(gmm_protect(vm, BASE + 10 * MiB, 2 * MiB, false), 0, "%s", gmm_last_error());
	cr_assert_eq(gmm_protect(vm, BASE + 10 * MiB, 2 * MiB, true), 0, "%s", gmm_last_error());
	cr_assert_eq(harvest(), 0);
}

Test(dirty, region_added_while_logging_is_all_dirty)
{
	cr_assert_eq(gmm_dirty_start(vm), 0);
	struct gmm_region_spec spec = { .gpa = 2 * BASE, .size = 4 * MiB, .backing = GMM_BACKING_ANON,
					.name = "late" };
	cr_assert_eq(gmm_region_add(vm, &spec, NULL), 0, "%s", gmm_last_error());
	uint64_t b[(4 * MiB / GMM_PAGE_SIZE) / 64] = { 0 };
	cr_assert_eq(gmm_dirty_harvest(vm, 2 * BASE, b, 4 * MiB / GMM_PAGE_SIZE), 0);
	for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++)
		cr_assert_eq(b[i], ~0ULL);
	memset(b, 0, sizeof(b));
	cr_assert_eq(gmm_dirty_harvest(vm, 2 * BASE, b, 4 * MiB / GMM_PAGE_SIZE), 0);
	cr_assert_eq(b[0], 0);
}

Test(dirty, test_switch_stops_walker_marks_only)
{
	gmm_dirty_test_skip_walkers(vm, true);
	cr_assert_eq(gmm_dirty_start(vm), 0);
	write_at(BASE + GMM_PAGE_SIZE, 8);
	struct gmm_pin pw;
	cr_assert_eq(gmm_pin(w, BASE + 4 * MiB, GMM_PAGE_SIZE, GMM_ACCESS_WRITE, &pw), 0);
	gmm_unpin(vm, &pw);
	cr_assert_eq(harvest(), 0);
	cr_assert_eq(gmm_discard(vm, BASE + 1 * MiB, GMM_PAGE_SIZE), 0);
	cr_assert_eq(harvest(), 1);
	gmm_dirty_test_skip_walkers(vm, false);
	write_at(BASE + GMM_PAGE_SIZE, 8);
	cr_assert_eq(harvest(), 1);
}

/* ---- the harvest waits for the walk behind a mark ------------------- */

struct slow_writer {
	_Atomic int marked;
	_Atomic int wrote;
};

/* Translate (mark) for write, tell the test, wait 100 ms, then store and
 * end the walk. */
static void *slow_writer(void *arg)
{
	struct slow_writer *s = arg;
	struct gmm_walker *mw = gmm_walker_register(vm);
	if (!mw)
		return NULL;
	gmm_walk_begin(mw);
	volatile uint64_t *p = gmm_translate(mw, BASE + 3 * MiB, 8, GMM_ACCESS_WRITE);
	atomic_store(&s->marked, 1);
	struct timespec ts = { 0, 100 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	if (p)
		*p = 0x1234567890abcdefULL;
	atomic_store(&s->wrote, 1);
	gmm_walk_end(mw);
	gmm_walker_unregister(mw);
	return NULL;
}

static void harvest_waits(enum gmm_strategy s)
{
	if (!gmm_strategy_available(s))
		return;
	teardown();
	strategy = s;
	setup();
	cr_assert_eq(gmm_dirty_start(vm), 0);
	struct slow_writer sw = { 0 };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, slow_writer, &sw), 0);
	while (!atomic_load(&sw.marked))
		usleep(1000);
	cr_assert_eq(harvest(), 1, "%s", gmm_strategy_name(s));
	/* The page is to be copied now: its bytes must be the new ones. */
	gmm_walk_begin(w);
	volatile uint64_t *p = gmm_translate(w, BASE + 3 * MiB, 8, GMM_ACCESS_READ);
	uint64_t v = p ? *p : 0;
	gmm_walk_end(w);
	cr_assert_eq(v, 0x1234567890abcdefULL,
		     "%s: the harvest returned before the marked write landed (wrote=%d)",
		     gmm_strategy_name(s), atomic_load(&sw.wrote));
	pthread_join(t, NULL);
}

Test(dirty, harvest_waits_for_the_marking_walk_kick) { harvest_waits(GMM_STRATEGY_KICK); }
Test(dirty, harvest_waits_for_the_marking_walk_count) { harvest_waits(GMM_STRATEGY_COUNT); }
Test(dirty, harvest_waits_for_the_marking_walk_perthread) { harvest_waits(GMM_STRATEGY_PERTHREAD); }
Test(dirty, harvest_waits_for_the_marking_walk_membarrier) { harvest_waits(GMM_STRATEGY_MEMBARRIER); }
Test(dirty, harvest_waits_for_the_marking_walk_rcu) { harvest_waits(GMM_STRATEGY_RCU); }

/* ---- helpers of a migration: data pages and a shared region --------- */

Test(dirty, data_bits_are_mapped_pages_with_contents)
{
	struct gmm_vm *v2;
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	cr_assert_eq(gmm_vm_create(&cfg, &v2), 0);
	struct gmm_region *r;
	struct gmm_region_spec spec = { .gpa = BASE, .size = REGION, .backing = GMM_BACKING_ANON,
					.name = "a" };
	cr_assert_eq(gmm_region_add(v2, &spec, &r), 0, "%s", gmm_last_error());
	struct gmm_region_info info;
	gmm_region_info(r, &info);
	((uint8_t *)info.hva)[3 * GMM_PAGE_SIZE] = 1;
	((uint8_t *)info.hva)[9 * GMM_PAGE_SIZE] = 1;
	((uint8_t *)info.hva)[10 * GMM_PAGE_SIZE] = 1;
	cr_assert_eq(gmm_unmap(v2, BASE + 10 * GMM_PAGE_SIZE, GMM_PAGE_SIZE, 0), 0);
	uint64_t b[WORDS] = { 0 };
	cr_assert_eq(gmm_region_data_bits(r, b), 0, "%s", gmm_last_error());
	cr_assert_eq(b[0], (1ULL << 3) | (1ULL << 9), "0x%llx", (unsigned long long)b[0]);
	for (uint64_t i = 1; i < WORDS; i++)
		cr_assert_eq(b[i], 0);
	gmm_vm_destroy(v2);
}

Test(dirty, region_maps_a_given_memfd)
{
	struct gmm_vm *v2;
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	cr_assert_eq(gmm_vm_create(&cfg, &v2), 0);
	struct gmm_region *r1, *r2;
	struct gmm_region_spec spec = { .gpa = BASE, .size = REGION, .backing = GMM_BACKING_MEMFD,
					.name = "src" };
	cr_assert_eq(gmm_region_add(v2, &spec, &r1), 0, "%s", gmm_last_error());
	struct gmm_region_info i1, i2;
	gmm_region_info(r1, &i1);
	memset(i1.hva, 0x77, GMM_PAGE_SIZE);
	struct gmm_region_spec s2 = { .gpa = 2 * BASE, .size = REGION, .backing = GMM_BACKING_MEMFD,
				      .flags = GMM_REGION_FD, .fd = i1.fd, .name = "dst" };
	cr_assert_eq(gmm_region_add(v2, &s2, &r2), 0, "%s", gmm_last_error());
	gmm_region_info(r2, &i2);
	cr_assert_neq(i2.fd, i1.fd, "dup'd");
	cr_assert_eq(((uint8_t *)i2.hva)[100], 0x77, "the same memory");
	/* Refused: anon with an fd, a file too short. */
	struct gmm_region_spec s3 = s2;
	s3.gpa = 3 * BASE;
	s3.backing = GMM_BACKING_THP;
	cr_assert_eq(gmm_region_add(v2, &s3, NULL), -EINVAL);
	s3.backing = GMM_BACKING_MEMFD;
	s3.size = 2 * REGION;
	cr_assert_eq(gmm_region_add(v2, &s3, NULL), -EINVAL);
	cr_assert(strstr(gmm_last_error(), "at least"), "%s", gmm_last_error());
	gmm_vm_destroy(v2);
}
