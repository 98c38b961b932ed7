/*
 * test_snapshot.c - guest memory to a file and back (guestmm/snapshot.h,
 * issue 16): the sparse save (holes for never-touched, unmapped and
 * discarded memory, found from the table and residency), the table's
 * shape, Copy loads onto thp, memfd and hugetlb-2M, the truncated file,
 * and on-demand restore through userfaultfd: every byte served right to
 * walkers on several threads, a discarded page served as zeros, huge pages
 * again after fill-ahead, and the deadlock the design rules out -- a
 * writer serialising against a walker that is blocked in a fault the
 * handler is slow to serve.
 */
#include <criterion/criterion.h>
#include <guestmm/guestmm.h>

#include "hugetlb_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MiB (1ULL << 20)
#define REGION (64 * MiB)
#define BASE (1ULL << 30)

static struct gmm_vm *vm;
static int fd = -1;
static char path[] = "/tmp/gmm-snapshot-XXXXXX";

static void setup(void)
{
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	cfg.pin_timeout_ms = 300;
	cr_assert_eq(gmm_vm_create(&cfg, &vm), 0, "%s", gmm_last_error());
	strcpy(path, "/tmp/gmm-snapshot-XXXXXX");
	fd = mkstemp(path);
	cr_assert(fd >= 0);
	unlink(path);
	hp_save();
}

static void teardown(void)
{
	gmm_vm_destroy(vm);
	vm = NULL;
	if (fd >= 0)
		close(fd);
	fd = -1;
	hp_restore("test_snapshot");
}

TestSuite(snapshot, .init = setup, .fini = teardown);

static struct gmm_region *add(struct gmm_vm *v, uint64_t gpa, enum gmm_backing b)
{
	struct gmm_region *r;
	struct gmm_region_spec spec = { .gpa = gpa, .size = REGION, .backing = b, .name = "t" };
	cr_assert_eq(gmm_region_add(v, &spec, &r), 0, "%s", gmm_last_error());
	return r;
}

static uint8_t *hva_of(struct gmm_region *r, uint64_t gpa)
{
	struct gmm_region_info info;
	gmm_region_info(r, &info);
	return (uint8_t *)info.hva + (gpa - info.gpa);
}

static uint64_t word(uint64_t gpa)
{
	return gpa * 0x9e3779b97f4a7c15ULL ^ 0x5555;
}

/* The guest's writes: blocks 0 and 1 whole, every 4th page of block 5, one
 * word at the start of block 9 (that page is discarded after), and block
 * 12 whole (unmapped after); a 4 KiB hole in block 1 (a balloon page).
 * Returns the bytes that stay mapped and resident: thp faults in whole
 * 2 MiB pages, so blocks 5 and 9 are resident whole (zeros where nothing
 * was written), less the pages discarded or unmapped. */
static uint64_t write_guest(struct gmm_region *r)
{
	for (uint64_t g = BASE; g < BASE + 4 * MiB; g += 8)
		*(uint64_t *)hva_of(r, g) = word(g);
	for (uint64_t p = 0; p < 512; p += 4) {
		uint64_t g = BASE + 10 * MiB + p * GMM_PAGE_SIZE;
		*(uint64_t *)hva_of(r, g) = word(g);
	}
	*(uint64_t *)hva_of(r, BASE + 18 * MiB) = 1;
	for (uint64_t g = BASE + 24 * MiB; g < BASE + 26 * MiB; g += 8)
		*(uint64_t *)hva_of(r, g) = word(g);
	cr_assert_eq(gmm_discard(vm, BASE + 18 * MiB, GMM_PAGE_SIZE), 0, "%s", gmm_last_error());
	cr_assert_eq(gmm_unmap(vm, BASE + 24 * MiB, 2 * MiB, 0), 0, "%s", gmm_last_error());
	cr_assert_eq(gmm_unmap(vm, BASE + 2 * MiB + 8 * GMM_PAGE_SIZE, GMM_PAGE_SIZE, 0), 0, "%s",
		     gmm_last_error());
	return 8 * MiB - 2 * GMM_PAGE_SIZE;
}

static bool expected_at(uint64_t g, uint64_t v)
{
	bool written = (g < BASE + 4 * MiB && !(g >= BASE + 2 * MiB + 8 * GMM_PAGE_SIZE &&
						 g < BASE + 2 * MiB + 9 * GMM_PAGE_SIZE)) ||
		       (g >= BASE + 10 * MiB && g < BASE + 12 * MiB &&
			((g - BASE - 10 * MiB) / GMM_PAGE_SIZE) % 4 == 0 && g % GMM_PAGE_SIZE == 0);
	return v == (written ? word(g) : 0);
}

/* Every mapped word of r reads as the guest left it. */
static void check_guest(struct gmm_region *r)
{
	for (uint64_t g = BASE; g < BASE + REGION; g += 8) {
		if ((g >= BASE + 24 * MiB && g < BASE + 26 * MiB) ||
		    (g >= BASE + 2 * MiB + 8 * GMM_PAGE_SIZE && g < BASE + 2 * MiB + 9 * GMM_PAGE_SIZE))
			continue;   /* unmapped */
		uint64_t v = *(volatile uint64_t *)hva_of(r, g);
		cr_assert(expected_at(g, v), "word at 0x%llx: 0x%llx", (unsigned long long)g,
			  (unsigned long long)v);
	}
}

static struct gmm_shape_range *shape_of(struct gmm_region *r, size_t *n)
{
	struct gmm_shape_range *s = NULL;
	cr_assert_eq(gmm_region_shape(r, &s, n), 0, "%s", gmm_last_error());
	return s;
}

Test(snapshot, save_is_sparse)
{
	struct gmm_region *r = add(vm, BASE, GMM_BACKING_THP);
	uint64_t resident = write_guest(r);
	struct gmm_save_stats st;
	cr_assert_eq(gmm_region_save(r, fd, 0, 2, &st), 0, "%s", gmm_last_error());
	struct stat sb;
	fstat(fd, &sb);
	cr_expect_eq((uint64_t)sb.st_size, REGION, "file length %lld", (long long)sb.st_size);
	cr_expect_eq(st.written, resident, "written %llu, resident %llu",
		     (unsigned long long)st.written, (unsigned long long)resident);
	cr_expect_eq(st.mapped, REGION - 2 * MiB - GMM_PAGE_SIZE);
	cr_expect_leq((uint64_t)sb.st_blocks * 512, resident + 64 * 1024,
		      "%llu bytes on disk for %llu written", (unsigned long long)sb.st_blocks * 512,
		      (unsigned long long)resident);
	/* A hole where the guest never wrote, where it discarded, where it
	 * unmapped; data where it wrote. */
	cr_expect_eq(lseek(fd, 0, SEEK_DATA), 0);
	cr_expect_eq(lseek(fd, 2 * MiB, SEEK_HOLE), (off_t)(2 * MiB + 8 * GMM_PAGE_SIZE),
		     "the unmapped 4 KiB page of block 1 is not a hole");
	cr_expect_eq(lseek(fd, 4 * MiB, SEEK_DATA), (off_t)(10 * MiB));
	cr_expect_eq(lseek(fd, 12 * MiB, SEEK_DATA), (off_t)(18 * MiB + GMM_PAGE_SIZE),
		     "the discarded page of block 9 is not a hole");
	off_t after = lseek(fd, 20 * MiB, SEEK_DATA);
	cr_expect(after < 0, "data after 20 MiB at %lld (unmapped or untouched memory written)",
		  (long long)after);
}

Test(snapshot, shape_round_trip)
{
	struct gmm_region *r = add(vm, BASE, GMM_BACKING_THP);
	write_guest(r);
	cr_assert_eq(gmm_split(vm, BASE + 30 * MiB), 0, "%s", gmm_last_error());
	cr_assert_eq(gmm_protect(vm, BASE + 40 * MiB, 2 * MiB, false), 0, "%s", gmm_last_error());
	size_t n;
	struct gmm_shape_range *s = shape_of(r, &n);
	cr_assert_geq(n, 4);
	struct gmm_vm *vm2;
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	cr_assert_eq(gmm_vm_create(&cfg, &vm2), 0);
	struct gmm_region *r2 = add(vm2, BASE, GMM_BACKING_THP);
	cr_assert_eq(gmm_region_apply_shape(r2, s, n), 0, "%s", gmm_last_error());
	size_t n2;
	struct gmm_shape_range *s2 = shape_of(r2, &n2);
	cr_expect_eq(n2, n);
	for (size_t i = 0; i < n && i < n2; i++)
		cr_expect(s[i].gpa == s2[i].gpa && s[i].len == s2[i].len && s[i].kind == s2[i].kind,
			  "range %zu: 0x%llx+0x%llx kind %d vs 0x%llx+0x%llx kind %d", i,
			  (unsigned long long)s[i].gpa, (unsigned long long)s[i].len, s[i].kind,
			  (unsigned long long)s2[i].gpa, (unsigned long long)s2[i].len, s2[i].kind);
	/* Bad lists change nothing. */
	struct gmm_shape_range bad[][2] = {
		{ { BASE - GMM_PAGE_SIZE, GMM_PAGE_SIZE, GMM_SHAPE_UNMAPPED } },
		{ { BASE + 100, GMM_PAGE_SIZE, GMM_SHAPE_UNMAPPED } },
		{ { BASE, GMM_PAGE_SIZE, 9 } },
		{ { BASE + MiB, GMM_PAGE_SIZE, GMM_SHAPE_UNMAPPED },
		  { BASE, GMM_PAGE_SIZE, GMM_SHAPE_UNMAPPED } },
	};
	for (size_t i = 0; i < 4; i++)
		cr_expect_eq(gmm_region_apply_shape(r2, bad[i], i == 3 ? 2 : 1), -EINVAL, "bad list %zu", i);
	size_t n3;
	struct gmm_shape_range *s3 = shape_of(r2, &n3);
	cr_expect_eq(n3, n2, "a refused list changed the table");
	free(s);
	free(s2);
	free(s3);
	gmm_vm_destroy(vm2);
}

/* Save from thp, load into `b` in a second VM, compare. */
static void copy_into(enum gmm_backing b)
{
	struct gmm_region *r = add(vm, BASE, GMM_BACKING_THP);
	write_guest(r);
	cr_assert_eq(gmm_region_save(r, fd, 2 * MiB, 0, NULL), 0, "%s", gmm_last_error());
	size_t n;
	struct gmm_shape_range *s = shape_of(r, &n);
	struct gmm_vm *vm2;
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	cr_assert_eq(gmm_vm_create(&cfg, &vm2), 0);
	struct gmm_region *r2;
	struct gmm_region_spec spec = { .gpa = BASE, .size = REGION, .backing = b, .name = "t2",
					.flags = GMM_REGION_PREFAULT };
	cr_assert_eq(gmm_region_add(vm2, &spec, &r2), 0, "%s", gmm_last_error());
	cr_assert_eq(gmm_region_apply_shape(r2, s, n), 0, "%s", gmm_last_error());
	struct gmm_load_stats ls;
	cr_assert_eq(gmm_region_load(r2, fd, 2 * MiB, 2, &ls), 0, "%s", gmm_last_error());
	if (b == GMM_BACKING_HUGETLB_2M) {
		/* Whole huge pages only: the 4 KiB hole stays mapped (zeros). */
		for (uint64_t g = BASE; g < BASE + REGION; g += 8) {
			if (g >= BASE + 24 * MiB && g < BASE + 26 * MiB)
				continue;
			uint64_t v = *(volatile uint64_t *)hva_of(r2, g);
			bool hole = g >= BASE + 2 * MiB + 8 * GMM_PAGE_SIZE &&
				    g < BASE + 2 * MiB + 9 * GMM_PAGE_SIZE;
			cr_assert(hole ? v == 0 : expected_at(g, v), "0x%llx", (unsigned long long)g);
		}
	} else {
		check_guest(r2);
	}
	cr_expect_eq(gmm_table_lookup(vm2, BASE + 24 * MiB, NULL), 0, "the unmapped block is mapped");
	free(s);
	gmm_vm_destroy(vm2);
}

Test(snapshot, copy_into_thp) { copy_into(GMM_BACKING_THP); }
Test(snapshot, copy_into_memfd) { copy_into(GMM_BACKING_MEMFD); }
Test(snapshot, copy_into_hugetlb)
{
	long have = hp_read_long(HP2M "nr_hugepages");
	if (have < 0 || !hp_write_long(HP2M "nr_hugepages", have + 40) || hp_avail(HP2M) < 32) {
		cr_skip_test("cannot reserve 32 hugetlb-2M pages: Copy into hugetlb-2M not tested");
		return;
	}
	copy_into(GMM_BACKING_HUGETLB_2M);
}

Test(snapshot, truncated_file_refused)
{
	struct gmm_region *r = add(vm, BASE, GMM_BACKING_THP);
	write_guest(r);
	cr_assert_eq(gmm_region_save(r, fd, 0, 0, NULL), 0);
	cr_assert_eq(ftruncate(fd, REGION / 2), 0);
	struct gmm_vm *vm2;
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	cr_assert_eq(gmm_vm_create(&cfg, &vm2), 0);
	struct gmm_region *r2 = add(vm2, BASE, GMM_BACKING_THP);
	cr_expect_eq(gmm_region_load(r2, fd, 0, 0, NULL), -EINVAL);
	cr_expect(strstr(gmm_last_error(), "truncated"), "%s", gmm_last_error());
	struct gmm_ondemand *od;
	struct gmm_ondemand_spec spec = { .fd = fd, .nregions = 1, .regions = { { r2, 0 } } };
	cr_expect_eq(gmm_ondemand_start(vm2, &spec, &od), -EINVAL);
	cr_expect(strstr(gmm_last_error(), "truncated"), "%s", gmm_last_error());
	gmm_vm_destroy(vm2);
}

/* ---- on demand ---------------------------------------------------------- */

struct reader {
	struct gmm_vm *vm;
	uint64_t from, to;
	_Atomic int bad;
	uint64_t bad_gpa;
};

/* A walker thread reading every mapped word of [from, to) through guestmm. */
static void *read_all(void *arg)
{
	struct reader *rd = arg;
	struct gmm_walker *w = gmm_walker_register(rd->vm);
	if (!w) {
		atomic_store(&rd->bad, 1);
		return NULL;
	}
	for (uint64_t g = rd->from; g < rd->to; g += 8) {
		if ((g >= BASE + 24 * MiB && g < BASE + 26 * MiB) ||
		    (g >= BASE + 2 * MiB + 8 * GMM_PAGE_SIZE && g < BASE + 2 * MiB + 9 * GMM_PAGE_SIZE))
			continue;
		uint64_t v;
		if (gmm_read(w, g, &v, sizeof(v)) < 0 || !expected_at(g, v)) {
			atomic_store(&rd->bad, 1);
			rd->bad_gpa = g;
			break;
		}
	}
	gmm_walker_unregister(w);
	return NULL;
}

static enum gmm_strategy od_strategy = GMM_STRATEGY__N;   /* __N: the default */
static struct gmm_region *od_source;                        /* the saved region, in vm */

static struct gmm_region *ondemand_setup(struct gmm_vm **vm2, bool fill, unsigned delay_us,
					 struct gmm_ondemand **od)
{
	struct gmm_region *r = od_source = add(vm, BASE, GMM_BACKING_THP);
	write_guest(r);
	cr_assert_eq(gmm_region_save(r, fd, 0, 0, NULL), 0, "%s", gmm_last_error());
	size_t n;
	struct gmm_shape_range *s = shape_of(r, &n);
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	cfg.pin_timeout_ms = 300;
	if (od_strategy != GMM_STRATEGY__N)
		cfg.strategy = od_strategy;
	cr_assert_eq(gmm_vm_create(&cfg, vm2), 0);
	struct gmm_region *r2 = add(*vm2, BASE, GMM_BACKING_THP);
	cr_assert_eq(gmm_region_apply_shape(r2, s, n), 0, "%s", gmm_last_error());
	free(s);
	struct gmm_ondemand_spec spec = {
		.fd = fd, .nregions = 1, .regions = { { r2, 0 } }, .no_fill_ahead = !fill,
		.test_serve_delay_us = delay_us,
	};
	int rc = gmm_ondemand_start(*vm2, &spec, od);
	if (rc == -EPERM || rc == -ENOSYS)
		cr_skip_test("no userfaultfd here: %s", gmm_last_error());
	cr_assert_eq(rc, 0, "%s", gmm_last_error());
	return r2;
}

Test(snapshot, ondemand_walkers_read_the_file)
{
	struct gmm_vm *vm2;
	struct gmm_ondemand *od;
	struct gmm_region *r2 = ondemand_setup(&vm2, false, 0, &od);
	struct reader rd[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		/* Overlapping quarters: two threads fault on the same blocks. */
		rd[i] = (struct reader){ .vm = vm2, .from = BASE + (uint64_t)i * (REGION / 4),
					 .to = BASE + (uint64_t)(i + 2) * (REGION / 4) };
		if (rd[i].to > BASE + REGION)
			rd[i].to = BASE + REGION;
		pthread_create(&t[i], NULL, read_all, &rd[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		cr_expect(!atomic_load(&rd[i].bad), "reader %d: bad word at 0x%llx", i,
			  (unsigned long long)rd[i].bad_gpa);
	}
	/* Every data block was touched: done once the handler has finished
	 * its bookkeeping (it wakes the faulting threads first). */
	cr_expect_eq(gmm_ondemand_wait(od, 5000), 0, "not done 5 s after every block was read");
	struct gmm_ondemand_stats st;
	gmm_ondemand_stats(od, &st);
	cr_expect_gt(st.faults, 0);
	cr_expect_eq(st.blocks_fill, 0);
	cr_expect_eq(st.blocks_total, 4, "blocks with data: %llu", (unsigned long long)st.blocks_total);
	cr_expect(st.done, "every data block served, yet not done");
	/* Discarded after it was served: zeros (the kernel's, once
	 * unregistered, or the handler's), never the file's bytes. */
	cr_assert_eq(gmm_discard(vm2, BASE, GMM_PAGE_SIZE), 0, "%s", gmm_last_error());
	cr_expect_eq(*(volatile uint64_t *)hva_of(r2, BASE + 8), 0);
	gmm_ondemand_stop(od);
	gmm_vm_destroy(vm2);
}

Test(snapshot, ondemand_discard_before_done_reads_zero)
{
	struct gmm_vm *vm2;
	struct gmm_ondemand *od;
	struct gmm_region *r2 = ondemand_setup(&vm2, false, 0, &od);
	/* Block 1 served by this touch (it has a 4 KiB hole: never collapsed,
	 * so nothing but the handler can fill the page again); blocks 0, 5
	 * and 9 still to come. */
	uint64_t g = BASE + 2 * MiB + 16;
	cr_assert_eq(*(volatile uint64_t *)hva_of(r2, g), word(g));
	cr_assert_eq(gmm_discard(vm2, BASE + 2 * MiB, GMM_PAGE_SIZE), 0, "%s", gmm_last_error());
	cr_expect_eq(*(volatile uint64_t *)hva_of(r2, g), 0,
		     "a discarded page came back with the file's bytes");
	/* The handler counts after its ioctl has woken us: wait for it. */
	struct gmm_ondemand_stats st;
	gmm_ondemand_stats(od, &st);
	for (int i = 0; i < 1000 && st.faults < 2; i++) {
		usleep(1000);
		gmm_ondemand_stats(od, &st);
	}
	cr_expect_eq(st.zero_served, 1, "zero_served %llu, faults %llu", (unsigned long long)st.zero_served, (unsigned long long)st.faults);
	cr_expect(!st.done);
	gmm_ondemand_stop(od);
	gmm_vm_destroy(vm2);
}

Test(snapshot, ondemand_fill_ahead_ends_on_huge_pages)
{
	struct gmm_vm *vm2;
	struct gmm_ondemand *od;
	struct gmm_region *r2 = ondemand_setup(&vm2, true, 0, &od);
	cr_assert_eq(gmm_ondemand_wait(od, 10000), 0, "fill-ahead did not finish in 10 s");
	check_guest(r2);
	struct gmm_ondemand_stats st;
	gmm_ondemand_stats(od, &st);
	cr_expect(st.done);
	cr_expect_eq(st.blocks_fill + st.blocks_fault, 4);
	/* Blocks 0, 5 and 9 are mapped whole: collapsed into huge pages
	 * (block 1 has its 4 KiB hole). */
	cr_expect_geq(st.collapsed, 3, "collapsed %llu", (unsigned long long)st.collapsed);
	struct gmm_coverage cov;
	gmm_region_coverage(r2, &cov);
	cr_expect_geq(cov.huge, 6 * MiB, "%llu bytes in huge pages", (unsigned long long)cov.huge);
	gmm_ondemand_stop(od);
	gmm_vm_destroy(vm2);
}

/* The design's claim: a writer serialising against a walker that is
 * blocked in a fault still finishes, because the handler never waits for
 * either.  The handler sleeps 300 ms per fault here. */
struct blocked {
	struct gmm_vm *vm;
	_Atomic int in_walk, done;
	uint64_t v;
};

static void *walk_and_fault(void *arg)
{
	struct blocked *b = arg;
	struct gmm_walker *w = gmm_walker_register(b->vm);
	gmm_walk_begin(w);
	atomic_store(&b->in_walk, 1);
	uint64_t *p = gmm_translate(w, BASE + 10 * MiB, 8, 0);
	b->v = p ? *(volatile uint64_t *)p : 1;   /* faults: the handler is slow */
	gmm_walk_end(w);
	gmm_walker_unregister(w);
	atomic_store(&b->done, 1);
	return NULL;
}

static uint64_t ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	int64_t ns = (int64_t)(t.tv_sec - t0->tv_sec) * 1000000000LL + (t.tv_nsec - t0->tv_nsec);
	return (uint64_t)(ns / 1000000);
}

/* Every strategy: the writer waits for the walker in its own way
 * (perthread and membarrier: for a walk that touched the range). */
static void writer_and_faulting_walker(enum gmm_strategy strategy)
{
	if (!gmm_strategy_available(strategy))
		return;
	od_strategy = strategy;
	struct gmm_vm *vm2;
	struct gmm_ondemand *od;
	ondemand_setup(&vm2, false, 300000, &od);
	struct blocked b = { .vm = vm2 };
	pthread_t t;
	pthread_create(&t, NULL, walk_and_fault, &b);
	for (int i = 0; i < 2000 && !atomic_load(&b.in_walk); i++)
		usleep(1000);
	usleep(50000);   /* in the fault now: the handler takes 300 ms */
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* Unmapping the very block the walker faults on: the writer must
	 * wait for that walk to end, and the walk for the handler. */
	cr_assert_eq(gmm_unmap(vm2, BASE + 10 * MiB, 2 * MiB, 0), 0, "%s: %s",
		     gmm_strategy_name(strategy), gmm_last_error());
	uint64_t ms = ms_since(&t0);
	pthread_join(t, NULL);
	cr_expect(atomic_load(&b.done));
	cr_expect_eq(b.v, word(BASE + 10 * MiB), "%s: the faulting walker read 0x%llx",
		     gmm_strategy_name(strategy), (unsigned long long)b.v);
	cr_expect_lt(ms, 10000, "%s: the unmap took %llu ms", gmm_strategy_name(strategy),
		     (unsigned long long)ms);
	cr_expect_eq(gmm_table_lookup(vm2, BASE + 10 * MiB, NULL), 0);
	gmm_ondemand_stop(od);
	gmm_vm_destroy(vm2);
	cr_assert_eq(gmm_region_remove(vm, od_source), 0);
	od_strategy = GMM_STRATEGY__N;
}

Test(snapshot, writer_and_faulting_walker_make_progress, .timeout = 120)
{
	for (int s = 0; s < GMM_STRATEGY__N; s++)
		writer_and_faulting_walker((enum gmm_strategy)s);
}

/* memfd: what the fd holds (a discard punches a hole there), not what
 * happens to be mapped in this process. */
Test(snapshot, save_memfd_is_sparse)
{
	struct gmm_region *r = add(vm, BASE, GMM_BACKING_MEMFD);
	for (uint64_t g = BASE; g < BASE + 4 * MiB; g += GMM_PAGE_SIZE)
		*(uint64_t *)hva_of(r, g) = word(g);
	cr_assert_eq(gmm_discard(vm, BASE + MiB, 2 * GMM_PAGE_SIZE), 0, "%s", gmm_last_error());
	struct gmm_save_stats st;
	cr_assert_eq(gmm_region_save(r, fd, 0, 2, &st), 0, "%s", gmm_last_error());
	cr_expect_eq(st.written, 4 * MiB - 2 * GMM_PAGE_SIZE, "written %llu",
		     (unsigned long long)st.written);
	cr_expect_eq(lseek(fd, 0, SEEK_HOLE), (off_t)MiB, "the discarded pages are not a hole");
	cr_expect_eq(lseek(fd, MiB, SEEK_DATA), (off_t)(MiB + 2 * GMM_PAGE_SIZE));
	cr_expect(lseek(fd, 4 * MiB, SEEK_DATA) < 0, "data past what the guest wrote");
}
