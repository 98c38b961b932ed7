// SPDX-License-Identifier: GPL-2.0-only
/*
 * test_backing.c - backing.c through its internal functions: every backing
 * mapped, written, discarded, released (PROT_NONE placeholder), mapped back
 * and unmapped; prefault with progress; measured huge-page coverage.
 *
 * The hugetlb test changes /sys/kernel/mm/hugepages/hugepages-2048kB/
 * nr_hugepages and restores it in its fini and, should the test process
 * crash, again from the runner process (ReportHook POST_ALL).
 */
#include <criterion/criterion.h>
#include "hugetlb_pool.h"
#include <criterion/hooks.h>

#include "internal.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MiB (1ULL << 20)

/* ---- helpers -------------------------------------------------------- */

static void region_init(struct gmm_region *r, enum gmm_backing b, uint64_t size, const char *name)
{
	memset(r, 0, sizeof *r);
	r->gpa = 0;
	r->size = size;
	r->backing = b;
	r->fd = -1;
	snprintf(r->name, sizeof r->name, "%s", name);
}

static uint8_t pat(uint64_t i, uint8_t seed)
{
	return (uint8_t)(seed + i * 7 + (i >> 12) * 13) | 1;  /* never 0 */
}

static void fill(uint8_t *p, uint64_t off, uint64_t len, uint8_t seed)
{
	for (uint64_t i = off; i < off + len; i++)
		p[i] = pat(i, seed);
}

static bool check(const uint8_t *p, uint64_t off, uint64_t len, uint8_t seed)
{
	for (uint64_t i = off; i < off + len; i++)
		if (p[i] != pat(i, seed))
			return false;
	return true;
}

static bool zeros(const uint8_t *p, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* Permissions of the VMA(s) covering [addr, addr + len) from /proc/self/maps,
 * without faulting anything.  false if the range is not one VMA run with
 * the same permissions. */
static bool maps_perms(const void *addr, uint64_t len, char perms[5])
{
	uintptr_t lo = (uintptr_t)addr, hi = lo + len, cur = lo;
	char line[512];
	bool ok = false;
	FILE *f = fopen("/proc/self/maps", "r");

	perms[0] = 0;
	if (!f)
		return false;
	while (fgets(line, sizeof line, f)) {
		unsigned long s, e;
		char p[5];

		if (sscanf(line, "%lx-%lx %4s", &s, &e, p) != 3)
			continue;
		if (e <= cur || s > cur)
			continue;
		if (!perms[0])
			memcpy(perms, p, 5);
		else if (strcmp(perms, p) != 0)
			break;
		cur = e;
		if (cur >= hi) {
			ok = true;
			break;
		}
	}
	fclose(f);
	return ok;
}

/* The range is mapped, PROT_NONE and has no page resident. */
static void assert_placeholder(const void *addr, uint64_t len)
{
	char perms[5];
	unsigned char vec[64];
	uint64_t n = len / GMM_PAGE_SIZE;

	cr_assert(maps_perms(addr, len, perms), "range %p+%#lx not mapped", addr, (unsigned long)len);
	cr_assert_str_eq(perms, "---p", "placeholder has perms %s", perms);
	cr_assert(n <= sizeof vec);
	cr_assert_eq(mincore((void *)addr, len, vec), 0, "mincore: %s", strerror(errno));
	for (uint64_t i = 0; i < n; i++)
		cr_assert_eq(vec[i] & 1, 0, "placeholder page %lu resident", (unsigned long)i);
}

static void assert_rw(const void *addr, uint64_t len)
{
	char perms[5];

	cr_assert(maps_perms(addr, len, perms), "range %p+%#lx not mapped", addr, (unsigned long)len);
	cr_assert_eq(strncmp(perms, "rw", 2), 0, "perms %s", perms);
}

static bool fd_closed(int fd)
{
	return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

struct progress {
	pthread_t caller;
	unsigned calls;
	bool wrong_thread, backwards;
	uint64_t last_done, last_total;
};

static void on_progress(void *arg, uint64_t done, uint64_t total)
{
	struct progress *p = arg;

	if (!pthread_equal(pthread_self(), p->caller))
		p->wrong_thread = true;
	if (p->calls && done < p->last_done)
		p->backwards = true;
	p->calls++;
	p->last_done = done;
	p->last_total = total;
}

static void prefault_checked(struct gmm_region *r, unsigned threads)
{
	struct progress pr = { .caller = pthread_self() };
	int rc = gmm_region_prefault(r, threads, on_progress, &pr);

	cr_assert_eq(rc, 0, "prefault: %d %s", rc, gmm_last_error());
	cr_assert_gt(pr.calls, 0, "progress never called");
	cr_assert_eq(pr.last_done, r->size, "last progress done %lu", (unsigned long)pr.last_done);
	cr_assert_eq(pr.last_total, r->size);
	cr_assert_not(pr.wrong_thread, "progress called from a worker thread");
	cr_assert_not(pr.backwards, "progress went backwards");
	cr_assert_leq(pr.calls, 102, "progress called %u times", pr.calls);
	cr_assert_gt(r->prefault_ns, 0);
}

/* ---- names ---------------------------------------------------------- */

Test(backing, names_round_trip)
{
	static const char *names[] = { "anon", "thp", "hugetlb-2M", "hugetlb-1G", "memfd", "file" };
	static const uint64_t sizes[] = { 4096, 2 * MiB, 2 * MiB, 1024 * MiB, 4096, 4096 };

	for (int b = 0; b < GMM_BACKING__N; b++) {
		enum gmm_backing out = GMM_BACKING__N;

		cr_assert_str_eq(gmm_backing_name((enum gmm_backing)b), names[b]);
		cr_assert_eq(gmm_backing_parse(names[b], &out), 0);
		cr_assert_eq(out, (enum gmm_backing)b);
		cr_assert_eq(gmm_backing_page_size((enum gmm_backing)b), sizes[b]);
	}
}

Test(backing, parse_rejects)
{
	enum gmm_backing out = GMM_BACKING_FILE;

	cr_assert_eq(gmm_backing_parse("bogus", &out), -EINVAL);
	cr_assert_eq(gmm_backing_parse("ANON", &out), -EINVAL);
	cr_assert_eq(gmm_backing_parse("hugetlb-2m", &out), -EINVAL);
	cr_assert_eq(gmm_backing_parse("", &out), -EINVAL);
	cr_assert_eq(gmm_backing_parse(NULL, &out), -EINVAL);
	cr_assert_eq(out, GMM_BACKING_FILE, "out changed on failure");
	cr_assert(strstr(gmm_last_error(), "bogus") == NULL);  /* last was NULL */
	gmm_backing_parse("bogus", &out);
	cr_assert(strstr(gmm_last_error(), "bogus"), "%s", gmm_last_error());
	cr_assert_str_eq(gmm_backing_name(GMM_BACKING__N), "unknown");
	cr_assert_eq(gmm_backing_page_size(GMM_BACKING__N), 0);
}

Test(backing, bad_size_rejected)
{
	struct gmm_region r;

	region_init(&r, GMM_BACKING_THP, 3 * MiB, "odd");
	cr_assert_eq(gmm_backing_map(&r), -EINVAL);
	cr_assert_null(r.hva);
	cr_assert_eq(r.fd, -1);
	region_init(&r, GMM_BACKING_ANON, 0, "zero");
	cr_assert_eq(gmm_backing_map(&r), -EINVAL);
	gmm_backing_unmap(&r);  /* harmless after a failed map */

	/* unmap of a zeroed, never mapped region closes nothing (not fd 0) */
	bool fd0_open = fcntl(0, F_GETFD) != -1;
	memset(&r, 0, sizeof r);
	gmm_backing_unmap(&r);
	cr_assert_eq(fcntl(0, F_GETFD) != -1, fd0_open);
}

/* ---- anon ----------------------------------------------------------- */

Test(backing, anon_cycle)
{
	struct gmm_region r;
	const uint64_t size = 8 * MiB;

	region_init(&r, GMM_BACKING_ANON, size, "anon");
	cr_assert_eq(gmm_backing_map(&r), 0, "%s", gmm_last_error());
	cr_assert_not_null(r.hva);
	cr_assert_eq(r.fd, -1);
	cr_assert_eq(r.page_size, GMM_PAGE_SIZE);
	assert_rw(r.hva, size);

	fill(r.hva, 0, size, 1);
	cr_assert(check(r.hva, 0, size, 1));

	/* discard 2 pages: zeros there, the rest intact */
	cr_assert_eq(gmm_backing_release(&r, 3 * 4096, 2 * 4096, true), 0, "%s", gmm_last_error());
	cr_assert(zeros(r.hva + 3 * 4096, 2 * 4096));
	cr_assert(check(r.hva, 0, 3 * 4096, 1));
	cr_assert(check(r.hva, 5 * 4096, size - 5 * 4096, 1));

	/* release 64 KiB for real: PROT_NONE placeholder at the same address */
	cr_assert_eq(gmm_backing_release(&r, 1 * MiB, 64 * 1024, false), 0, "%s", gmm_last_error());
	assert_placeholder(r.hva + 1 * MiB, 64 * 1024);
	cr_assert(check(r.hva, 1 * MiB + 64 * 1024, 64 * 1024, 1));

	/* map back: fresh zeros, writable */
	cr_assert_eq(gmm_backing_remap(&r, 1 * MiB, 64 * 1024), 0, "%s", gmm_last_error());
	assert_rw(r.hva + 1 * MiB, 64 * 1024);
	cr_assert(zeros(r.hva + 1 * MiB, 64 * 1024));
	fill(r.hva, 1 * MiB, 64 * 1024, 2);
	cr_assert(check(r.hva, 1 * MiB, 64 * 1024, 2));

	/* remap over a live range of ours (MAP_FIXED path): fresh zeros */
	cr_assert_eq(gmm_backing_remap(&r, 2 * MiB, 4096), 0, "%s", gmm_last_error());
	cr_assert(zeros(r.hva + 2 * MiB, 4096));
	cr_assert(check(r.hva, 2 * MiB + 4096, 4096, 1));

	uint8_t *hva = r.hva;
	gmm_backing_unmap(&r);
	cr_assert_null(r.hva);
	cr_assert_eq(r.fd, -1);
	char perms[5];
	cr_assert_not(maps_perms(hva, size, perms) && perms[0] == 'r', "still mapped after unmap");
}

Test(backing, anon_prefault_coverage)
{
	struct gmm_region r;
	struct gmm_coverage cov;
	const uint64_t size = 32 * MiB;

	region_init(&r, GMM_BACKING_ANON, size, "anon-pf");
	cr_assert_eq(gmm_backing_map(&r), 0, "%s", gmm_last_error());
	cr_assert_eq(gmm_region_coverage(&r, &cov), 0, "%s", gmm_last_error());
	cr_assert_eq(cov.size, size);
	cr_assert_eq(cov.resident, 0);
	prefault_checked(&r, 0);
	cr_assert_eq(gmm_region_coverage(&r, &cov), 0, "%s", gmm_last_error());
	cr_assert_str_eq(cov.method, "pagemap+kpageflags");
	cr_assert_eq(cov.huge, 0, "anon (NOHUGEPAGE) has %lu huge bytes", (unsigned long)cov.huge);
	cr_assert_eq(cov.resident, size, "resident %lu", (unsigned long)cov.resident);

	/* a discarded range is no longer resident; a released one neither */
	cr_assert_eq(gmm_backing_release(&r, 0, 1 * MiB, true), 0);
	cr_assert_eq(gmm_backing_release(&r, 4 * MiB, 1 * MiB, false), 0);
	cr_assert_eq(gmm_region_coverage(&r, &cov), 0, "%s", gmm_last_error());
	cr_assert_eq(cov.resident, size - 2 * MiB, "resident %lu", (unsigned long)cov.resident);
	gmm_backing_unmap(&r);
}

/* gmm_region_prefault_until: stops between 2 MiB chunks once told. */
Test(backing, prefault_until_cancel)
{
	struct gmm_region r;
	struct gmm_coverage cov;
	const uint64_t size = 32 * MiB;
	_Atomic bool cancel = true;

	region_init(&r, GMM_BACKING_ANON, size, "pf-cancel");
	cr_assert_eq(gmm_backing_map(&r), 0, "%s", gmm_last_error());
	cr_assert_eq(gmm_region_prefault_until(&r, 1, &cancel), -ECANCELED);
	cr_assert_eq(gmm_region_coverage(&r, &cov), 0, "%s", gmm_last_error());
	cr_assert_eq(cov.resident, 0, "cancelled before the first chunk: %lu resident",
		     (unsigned long)cov.resident);
	atomic_store(&cancel, false);
	cr_assert_eq(gmm_region_prefault_until(&r, 1, &cancel), 0, "%s", gmm_last_error());
	cr_assert_eq(gmm_region_coverage(&r, &cov), 0, "%s", gmm_last_error());
	cr_assert_eq(cov.resident, size, "resident %lu", (unsigned long)cov.resident);
	gmm_backing_unmap(&r);
}

Test(backing, prefault_over_placeholder_fails)
{
	struct gmm_region r;
	int rc;

	region_init(&r, GMM_BACKING_ANON, 8 * MiB, "holey");
	cr_assert_eq(gmm_backing_map(&r), 0, "%s", gmm_last_error());
	cr_assert_eq(gmm_backing_release(&r, 4 * MiB, 1 * MiB, false), 0);
	r.prefault_ns = 0;
	rc = gmm_region_prefault(&r, 2, NULL, NULL);
	cr_assert_eq(rc, -EFAULT, "rc %d", rc);
	cr_assert(strstr(gmm_last_error(), "holey"), "%s", gmm_last_error());
	cr_assert(strstr(gmm_last_error(), "unmapped"), "%s", gmm_last_error());
	cr_assert_eq(r.prefault_ns, 0);
	/* the placeholder survived */
	assert_placeholder(r.hva + 4 * MiB, 1 * MiB / 16);
	gmm_backing_unmap(&r);
}

Test(backing, release_rejects_bad_ranges)
{
	struct gmm_region r;

	region_init(&r, GMM_BACKING_ANON, 4 * MiB, "anon");
	cr_assert_eq(gmm_backing_map(&r), 0, "%s", gmm_last_error());
	cr_assert_eq(gmm_backing_release(&r, 1, 4096, true), -EINVAL);
	cr_assert_eq(gmm_backing_release(&r, 4096, 100, false), -EINVAL);
	cr_assert_eq(gmm_backing_release(&r, 4 * MiB - 4096, 8192, false), -EINVAL);
	cr_assert_eq(gmm_backing_release(&r, 8 * MiB, 4096, true), -EINVAL);
	cr_assert_eq(gmm_backing_remap(&r, 2048, 4096), -EINVAL);
	cr_assert(strstr(gmm_last_error(), "multiples"), "%s", gmm_last_error());
	gmm_backing_unmap(&r);

	/* thp works in 4 KiB units (the kernel splits the THP), not less */
	region_init(&r, GMM_BACKING_THP, 4 * MiB, "thp");
	cr_assert_eq(gmm_backing_map(&r), 0, "%s", gmm_last_error());
	cr_assert_eq(gmm_backing_release(&r, 100, 2 * MiB, true), -EINVAL);
	cr_assert_eq(gmm_backing_release(&r, 0, 2048, false), -EINVAL);
	cr_assert_eq(gmm_backing_remap(&r, 512, 1 * MiB), -EINVAL);
	cr_assert_eq(gmm_backing_release(&r, 0, 8 * MiB, false), -EINVAL);
	/* nothing was touched: the region is still fully read-write */
	assert_rw(r.hva, 4 * MiB);
	gmm_backing_unmap(&r);
}

Test(backing, thp_split_granularity)
{
	struct gmm_region r;

	region_init(&r, GMM_BACKING_THP, 4 * MiB, "thp");
	cr_assert_eq(gmm_backing_map(&r), 0, "%s", gmm_last_error());
	fill(r.hva, 0, 4 * MiB, 9);
	cr_assert_eq(gmm_backing_release(&r, 8192, 4096, true), 0, "%s", gmm_last_error());
	cr_assert(zeros(r.hva + 8192, 4096));
	cr_assert(check(r.hva, 0, 8192, 9));
	cr_assert(check(r.hva, 12288, 4 * MiB - 12288, 9));
	cr_assert_eq(gmm_backing_release(&r, 1 * MiB, 4096, false), 0, "%s", gmm_last_error());
	assert_placeholder(r.hva + 1 * MiB, 4096);
	cr_assert(check(r.hva, 1 * MiB + 4096, 4096, 9));
	cr_assert_eq(gmm_backing_remap(&r, 1 * MiB, 4096), 0, "%s", gmm_last_error());
	cr_assert(zeros(r.hva + 1 * MiB, 4096));
	assert_rw(r.hva, 4 * MiB);
	gmm_backing_unmap(&r);
}

/* ---- thp ------------------------------------------------------------ */

Test(backing, thp_cycle_and_coverage)
{
	struct gmm_region r;
	struct gmm_coverage cov;
	const uint64_t size = 64 * MiB;

	region_init(&r, GMM_BACKING_THP, size, "thp");
	cr_assert_eq(gmm_backing_map(&r), 0, "%s", gmm_last_error());
	cr_assert_eq((uintptr_t)r.hva % GMM_2M, 0, "thp mapping %p not 2 MiB aligned", r.hva);
	cr_assert_eq(r.fd, -1);
	cr_assert_eq(r.page_size, GMM_2M);

	prefault_checked(&r, 2);
	cr_assert_eq(gmm_region_coverage(&r, &cov), 0, "%s", gmm_last_error());
	cr_assert_str_eq(cov.method, "pagemap+kpageflags");
	cr_assert_eq(cov.size, size);
	cr_assert_eq(cov.resident, size, "resident %lu", (unsigned long)cov.resident);
	cr_assert_geq(cov.huge, size / 2, "only %lu of %lu bytes huge", (unsigned long)cov.huge,
		      (unsigned long)size);
	cr_log_info("thp coverage: %lu/%lu MiB huge", (unsigned long)(cov.huge >> 20),
		    (unsigned long)(size >> 20));

	fill(r.hva, 0, 8 * MiB, 3);
	cr_assert_eq(gmm_backing_release(&r, 2 * MiB, 2 * MiB, true), 0, "%s", gmm_last_error());
	cr_assert(zeros(r.hva + 2 * MiB, 2 * MiB));
	cr_assert(check(r.hva, 0, 2 * MiB, 3));
	cr_assert(check(r.hva, 4 * MiB, 4 * MiB, 3));

	cr_assert_eq(gmm_backing_release(&r, 4 * MiB, 2 * MiB, false), 0, "%s", gmm_last_error());
	assert_placeholder(r.hva + 4 * MiB, 256 * 1024);
	cr_assert_eq(gmm_region_coverage(&r, &cov), 0, "%s", gmm_last_error());
	cr_assert_leq(cov.resident, size - 2 * MiB);
	cr_assert_eq(gmm_backing_remap(&r, 4 * MiB, 2 * MiB), 0, "%s", gmm_last_error());
	cr_assert(zeros(r.hva + 4 * MiB, 2 * MiB));
	fill(r.hva, 4 * MiB, 2 * MiB, 4);
	cr_assert(check(r.hva, 4 * MiB, 2 * MiB, 4));
	cr_assert(check(r.hva, 6 * MiB, 2 * MiB, 3));
	gmm_backing_unmap(&r);
}

/* Without CAP_SYS_ADMIN the kernel hides PFNs: coverage falls back to smaps
 * (Criterion runs each test in its own process, so dropping is local). */
Test(backing, thp_coverage_smaps_fallback)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];
	struct gmm_region r;
	struct gmm_coverage cov;
	const uint64_t size = 32 * MiB;

	cr_assert_eq(syscall(SYS_capget, &hdr, data), 0);
	data[CAP_SYS_ADMIN / 32].effective &= ~(1u << (CAP_SYS_ADMIN % 32));
	data[CAP_SYS_ADMIN / 32].permitted &= ~(1u << (CAP_SYS_ADMIN % 32));
	data[CAP_SYS_ADMIN / 32].inheritable &= ~(1u << (CAP_SYS_ADMIN % 32));
	cr_assert_eq(syscall(SYS_capset, &hdr, data), 0, "capset: %s", strerror(errno));

	region_init(&r, GMM_BACKING_THP, size, "thp-smaps");
	cr_assert_eq(gmm_backing_map(&r), 0, "%s", gmm_last_error());
	cr_assert_eq(gmm_region_prefault(&r, 1, NULL, NULL), 0, "%s", gmm_last_error());
	cr_assert_eq(gmm_region_coverage(&r, &cov), 0, "%s", gmm_last_error());
	cr_assert_str_eq(cov.method, "smaps");
	cr_assert_eq(cov.resident, size, "resident %lu", (unsigned long)cov.resident);
	cr_assert_geq(cov.huge, size / 2, "huge %lu", (unsigned long)cov.huge);
	gmm_backing_unmap(&r);
}

/* ---- memfd ---------------------------------------------------------- */

Test(backing, memfd_cycle)
{
	struct gmm_region r;
	struct gmm_coverage cov;
	const uint64_t size = 8 * MiB;
	uint8_t buf[4096];
	struct stat st;

	region_init(&r, GMM_BACKING_MEMFD, size, "memfd");
	cr_assert_eq(gmm_backing_map(&r), 0, "%s", gmm_last_error());
	cr_assert_geq(r.fd, 0);
	cr_assert_eq(r.page_size, GMM_PAGE_SIZE);
	cr_assert_eq(fstat(r.fd, &st), 0);
	cr_assert_eq((uint64_t)st.st_size, size);
	cr_assert(fcntl(r.fd, F_GETFD) & FD_CLOEXEC);

	fill(r.hva, 0, size, 5);
	cr_assert_eq(pread(r.fd, buf, sizeof buf, 0), (ssize_t)sizeof buf);
	cr_assert(check(buf, 0, sizeof buf, 5), "memfd does not hold what was written");

	/* discard: punched, the mapping reads zeros, the file too */
	cr_assert_eq(gmm_backing_release(&r, 1 * MiB, 1 * MiB, true), 0, "%s", gmm_last_error());
	cr_assert(zeros(r.hva + 1 * MiB, 1 * MiB));
	cr_assert_eq(pread(r.fd, buf, sizeof buf, 1 * MiB), (ssize_t)sizeof buf);
	cr_assert(zeros(buf, sizeof buf));
	cr_assert(check(r.hva, 0, 1 * MiB, 5));
	cr_assert(check(r.hva, 2 * MiB, size - 2 * MiB, 5));

	/* release: placeholder, memory freed (hole punched) */
	cr_assert_eq(gmm_region_coverage(&r, &cov), 0, "%s", gmm_last_error());
	uint64_t res_before = cov.resident;
	cr_assert_eq(gmm_backing_release(&r, 4 * MiB, 1 * MiB, false), 0, "%s", gmm_last_error());
	assert_placeholder(r.hva + 4 * MiB, 256 * 1024);
	cr_assert_eq(pread(r.fd, buf, sizeof buf, 4 * MiB), (ssize_t)sizeof buf);
	cr_assert(zeros(buf, sizeof buf), "released memfd range not punched");
	cr_assert_eq(gmm_region_coverage(&r, &cov), 0, "%s", gmm_last_error());
	cr_assert_eq(cov.resident, res_before - 1 * MiB);

	/* map back: zeros (punched), shared with the fd */
	cr_assert_eq(gmm_backing_remap(&r, 4 * MiB, 1 * MiB), 0, "%s", gmm_last_error());
	cr_assert(zeros(r.hva + 4 * MiB, 1 * MiB));
	r.hva[4 * MiB] = 0x5a;
	cr_assert_eq(pread(r.fd, buf, 1, 4 * MiB), 1);
	cr_assert_eq(buf[0], 0x5a, "remapped range not shared with the memfd");
	cr_assert(check(r.hva, 5 * MiB, size - 5 * MiB, 5));

	int fd = r.fd;
	gmm_backing_unmap(&r);
	cr_assert_eq(r.fd, -1);
	cr_assert(fd_closed(fd));
}

/* ---- file ----------------------------------------------------------- */

Test(backing, file_cycle)
{
	char path[] = "/tmp/guestmm-test-backing-XXXXXX";
	struct gmm_region r;
	const uint64_t size = 2 * MiB;
	uint8_t *buf;
	struct stat st;
	int fd;

	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "hello", 5), 5);
	close(fd);

	region_init(&r, GMM_BACKING_FILE, size, "file");
	r.path = path;
	r.flags = GMM_REGION_READONLY;  /* still mapped read-write */
	cr_assert_eq(gmm_backing_map(&r), 0, "%s", gmm_last_error());
	cr_assert_geq(r.fd, 0);
	cr_assert_eq(r.page_size, GMM_PAGE_SIZE);
	assert_rw(r.hva, size);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq((uint64_t)st.st_size, size, "file not extended: %ld", (long)st.st_size);
	cr_assert_eq(memcmp(r.hva, "hello", 5), 0, "existing contents not mapped");

	fill(r.hva, 0, size, 6);
	cr_assert_eq(msync(r.hva, size, MS_SYNC), 0);
	buf = malloc(size);
	fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, buf, size, 0), (ssize_t)size);
	cr_assert(check(buf, 0, size, 6), "file does not hold what was written");

	/* discard: MADV_DONTNEED only, the file keeps its data and it reads back */
	cr_assert_eq(gmm_backing_release(&r, 64 * 1024, 64 * 1024, true), 0, "%s", gmm_last_error());
	cr_assert(check(r.hva, 64 * 1024, 64 * 1024, 6), "discard lost the file's data");

	/* release: placeholder; the file is never punched */
	cr_assert_eq(gmm_backing_release(&r, 1 * MiB, 256 * 1024, false), 0, "%s", gmm_last_error());
	assert_placeholder(r.hva + 1 * MiB, 256 * 1024);
	cr_assert_eq(pread(fd, buf, size, 0), (ssize_t)size);
	cr_assert(check(buf, 0, size, 6), "release changed the file");

	/* map back: the file's data again */
	cr_assert_eq(gmm_backing_remap(&r, 1 * MiB, 256 * 1024), 0, "%s", gmm_last_error());
	cr_assert(check(r.hva, 0, size, 6));

	/* prefault preserves contents */
	prefault_checked(&r, 2);
	cr_assert(check(r.hva, 0, size, 6));

	int mfd = r.fd;
	gmm_backing_unmap(&r);
	cr_assert(fd_closed(mfd));
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq((uint64_t)st.st_size, size);

	/* a longer file is not shrunk */
	region_init(&r, GMM_BACKING_FILE, 1 * MiB, "file-short");
	r.path = path;
	cr_assert_eq(gmm_backing_map(&r), 0, "%s", gmm_last_error());
	cr_assert(check(r.hva, 0, 1 * MiB, 6));
	gmm_backing_unmap(&r);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq((uint64_t)st.st_size, size, "file shrunk to %ld", (long)st.st_size);

	close(fd);
	free(buf);
	unlink(path);
}

Test(backing, file_bad_path)
{
	const char *path = "/tmp/guestmm-no-such-dir-4f1c/ram.img";
	struct gmm_region r;
	int rc;

	region_init(&r, GMM_BACKING_FILE, 1 * MiB, "file");
	r.path = (char *)path;
	rc = gmm_backing_map(&r);
	cr_assert_eq(rc, -ENOENT, "rc %d", rc);
	cr_assert(strstr(gmm_last_error(), path), "message lacks the path: %s", gmm_last_error());
	cr_assert(strstr(gmm_last_error(), strerror(ENOENT)), "%s", gmm_last_error());
	cr_assert_null(r.hva);
	cr_assert_eq(r.fd, -1);

	region_init(&r, GMM_BACKING_FILE, 1 * MiB, "nopath");
	cr_assert_eq(gmm_backing_map(&r), -EINVAL);
}

/* ---- hugetlb -------------------------------------------------------- */

#define HP1G "/sys/kernel/mm/hugepages/hugepages-1048576kB/"

/* hp_saved (hugetlb_pool.h) is saved in the test process (fini restores)
 * and in the runner process (POST_ALL restores even if the test process
 * crashed). */
static void hp_init(void)
{
	hp_save();
}

static void hp_fini(void)
{
	hp_restore("test_backing");
}

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	(void)set;
	hp_save();
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	hp_restore("test_backing");
}

Test(backing, hugetlb_2m, .init = hp_init, .fini = hp_fini, .timeout = 60)
{
	struct gmm_region r;
	struct gmm_coverage cov;
	const uint64_t size = 16 * MiB;
	long avail, nr, free0, resv0, f;
	int rc;

	cr_assert_geq(hp_saved, 0, "no 2 MiB hugetlb pool in sysfs");

	/* 1. Not enough pages: a clear -ENOMEM saying what to echo where. */
	avail = hp_avail(HP2M);
	region_init(&r, GMM_BACKING_HUGETLB_2M, (uint64_t)(avail + 1) * GMM_2M, "ram");
	rc = gmm_backing_map(&r);
	cr_assert_eq(rc, -ENOMEM, "rc %d (%s)", rc, gmm_last_error());
	cr_assert(strstr(gmm_last_error(), "echo"), "%s", gmm_last_error());
	cr_assert(strstr(gmm_last_error(), HP2M "nr_hugepages"), "%s", gmm_last_error());
	cr_assert(strstr(gmm_last_error(), "\"ram\""), "%s", gmm_last_error());
	cr_assert_null(r.hva);
	cr_assert_eq(r.fd, -1);
	cr_log_info("expected hugetlb error: %s", gmm_last_error());

	/* 2. Reserve 8 pages (restored by fini and POST_ALL). */
	nr = hp_read_long(HP2M "nr_hugepages");
	if (avail < 8 && !hp_write_long(HP2M "nr_hugepages", nr + (8 - avail)))
		cr_skip_test("!!! SKIPPED: cannot write %snr_hugepages (%s): hugetlb-2M untested !!!",
			     HP2M, strerror(errno));
	if (hp_avail(HP2M) < 8)
		cr_skip_test("!!! SKIPPED: asked the kernel for 8 free 2 MiB pages, got %ld: "
			     "hugetlb-2M untested !!!", hp_avail(HP2M));
	free0 = hp_read_long(HP2M "free_hugepages");
	resv0 = hp_read_long(HP2M "resv_hugepages");

	region_init(&r, GMM_BACKING_HUGETLB_2M, size, "ram");
	rc = gmm_backing_map(&r);
	cr_assert_eq(rc, 0, "map: %d %s", rc, gmm_last_error());
	cr_assert_eq((uintptr_t)r.hva % GMM_2M, 0, "hugetlb mapping %p not aligned", r.hva);
	cr_assert_geq(r.fd, 0);
	cr_assert_eq(r.page_size, GMM_2M);
	/* reserved at mmap time */
	cr_assert_eq(hp_read_long(HP2M "resv_hugepages"), resv0 + 8);

	fill(r.hva, 0, size, 7);
	cr_assert(check(r.hva, 0, size, 7));
	cr_assert_eq(gmm_region_coverage(&r, &cov), 0, "%s", gmm_last_error());
	cr_assert_str_eq(cov.method, "pagemap+kpageflags");
	cr_assert_eq(cov.huge, size, "huge %lu", (unsigned long)cov.huge);
	cr_assert_eq(cov.resident, size);
	f = hp_read_long(HP2M "free_hugepages");
	cr_assert_eq(f, free0 - 8);

	/* hugetlb works in whole huge pages */
	cr_assert_eq(gmm_backing_release(&r, 4096, 2 * MiB, true), -EINVAL);
	cr_assert_eq(gmm_backing_release(&r, 0, 1 * MiB, false), -EINVAL);
	cr_assert_eq(gmm_backing_remap(&r, 0, 4096), -EINVAL);
	cr_assert(strstr(gmm_last_error(), "2 MiB"), "%s", gmm_last_error());

	/* release 2 pages for real: back in the pool, placeholder kept */
	cr_assert_eq(gmm_backing_release(&r, 4 * MiB, 4 * MiB, false), 0, "%s", gmm_last_error());
	cr_assert_eq(hp_read_long(HP2M "free_hugepages"), f + 2, "free %ld, expected %ld",
		     hp_read_long(HP2M "free_hugepages"), f + 2);
	assert_placeholder(r.hva + 4 * MiB, 256 * 1024);
	cr_assert_eq(gmm_region_coverage(&r, &cov), 0, "%s", gmm_last_error());
	cr_assert_eq(cov.huge, size - 4 * MiB);

	/* map back: zeros, reserved again */
	cr_assert_eq(gmm_backing_remap(&r, 4 * MiB, 4 * MiB), 0, "%s", gmm_last_error());
	cr_assert(zeros(r.hva + 4 * MiB, 4 * MiB));
	cr_assert(check(r.hva, 8 * MiB, 8 * MiB, 7));
	cr_assert_eq(hp_read_long(HP2M "free_hugepages"), f);

	/* discard: punched, reads zeros, page back in the pool until touched */
	cr_assert_eq(gmm_backing_release(&r, 0, 2 * MiB, true), 0, "%s", gmm_last_error());
	cr_assert_eq(hp_read_long(HP2M "free_hugepages"), f + 1);
	cr_assert(zeros(r.hva, 2 * MiB));
	cr_assert(check(r.hva, 2 * MiB, 2 * MiB, 7));
	cr_assert_eq(gmm_backing_remap(&r, 0, 2 * MiB), 0, "%s", gmm_last_error());

	/* pages gone while released: remap is a clean -ENOMEM, no SIGBUS */
	cr_assert_eq(gmm_backing_release(&r, 12 * MiB, 2 * MiB, false), 0, "%s", gmm_last_error());
	nr = hp_read_long(HP2M "nr_hugepages");
	long spare = hp_avail(HP2M);
	cr_assert_geq(spare, 1);
	if (hp_write_long(HP2M "nr_hugepages", nr - spare) && hp_avail(HP2M) == 0) {
		rc = gmm_backing_remap(&r, 12 * MiB, 2 * MiB);
		cr_assert_eq(rc, -ENOMEM, "rc %d", rc);
		cr_assert(strstr(gmm_last_error(), "echo"), "%s", gmm_last_error());
		cr_assert(strstr(gmm_last_error(), "offset"), "%s", gmm_last_error());
		assert_placeholder(r.hva + 12 * MiB, 256 * 1024);
		cr_log_info("expected remap error: %s", gmm_last_error());
		cr_assert(hp_write_long(HP2M "nr_hugepages", nr));
	} else {
		cr_log_warn("could not empty the 2 MiB pool; remap -ENOMEM path untested");
	}
	cr_assert_eq(gmm_backing_remap(&r, 12 * MiB, 2 * MiB), 0, "%s", gmm_last_error());
	cr_assert(zeros(r.hva + 12 * MiB, 2 * MiB));

	/* prefault of a hugetlb region */
	prefault_checked(&r, 2);
	cr_assert_eq(gmm_region_coverage(&r, &cov), 0, "%s", gmm_last_error());
	cr_assert_eq(cov.huge, size);

	int fd = r.fd;
	gmm_backing_unmap(&r);
	cr_assert(fd_closed(fd));
	cr_assert_eq(hp_read_long(HP2M "free_hugepages"), free0, "pages not returned");
	cr_assert_eq(hp_read_long(HP2M "resv_hugepages"), resv0);
}

Test(backing, hugetlb_1g_shortage)
{
	struct gmm_region r;
	long avail = hp_avail(HP1G);
	int rc;

	if (avail < 0)
		cr_skip_test("no 1 GiB hugetlb pool on this machine");
	region_init(&r, GMM_BACKING_HUGETLB_1G, (uint64_t)(avail + 1) * GMM_1G, "big");
	rc = gmm_backing_map(&r);
	cr_assert_eq(rc, -ENOMEM, "rc %d (%s)", rc, gmm_last_error());
	cr_assert(strstr(gmm_last_error(), "1 GiB"), "%s", gmm_last_error());
	cr_assert(strstr(gmm_last_error(), HP1G "nr_hugepages"), "%s", gmm_last_error());
	cr_assert_null(r.hva);
	cr_assert_eq(r.fd, -1);
}
