/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * hugetlb_pool.h - for tests that reserve 2 MiB hugetlb pages themselves:
 * sysfs numbers read and written, the pool size remembered (hp_save, in
 * PRE_ALL and in a test's init) and put back (hp_restore, in its fini and
 * POST_ALL, so a test process that dies still leaves the pool as found).
 * Header-only: each test program has its own copy of hp_saved.  Used by
 * test_backing, test_table and test_virtio_balloon.
 */
#ifndef TESTS_HUGETLB_POOL_H
#define TESTS_HUGETLB_POOL_H

#include <stdbool.h>
#include <stdio.h>

#define HP2M "/sys/kernel/mm/hugepages/hugepages-2048kB/"

static long hp_saved = -1;

static inline long hp_read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

static inline bool hp_write_long(const char *path, long v)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return false;
	bool ok = fprintf(f, "%ld\n", v) > 0;
	return (fclose(f) == 0) && ok;
}

/* Free and unreserved huge pages of the pool in dir (HP2M...); -1 if
 * unreadable. */
static inline long hp_avail(const char *dir)
{
	char p[160];
	snprintf(p, sizeof p, "%sfree_hugepages", dir);
	long free = hp_read_long(p);
	snprintf(p, sizeof p, "%sresv_hugepages", dir);
	long resv = hp_read_long(p);
	if (free < 0 || resv < 0)
		return -1;
	return free > resv ? free - resv : 0;
}

static inline void hp_save(void)
{
	hp_saved = hp_read_long(HP2M "nr_hugepages");
}

/* who: the test program, for the warning. */
static inline void hp_restore(const char *who)
{
	if (hp_saved >= 0 && hp_read_long(HP2M "nr_hugepages") != hp_saved &&
	    !hp_write_long(HP2M "nr_hugepages", hp_saved))
		fprintf(stderr, "%s: WARNING: could not restore %snr_hugepages to %ld\n", who, HP2M,
			hp_saved);
}

#endif
