// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * backing.c - the host memory behind a region: map, release, remap,
 * prefault, measured huge-page coverage.  No table knowledge.
 *
 * Design:
 *  - One host mapping per region, [hva, hva + size), that never moves.  A
 *    range released with munmap gets a PROT_NONE placeholder so that remap
 *    can put memory back at the same address (a KVM memslot stays valid).
 *  - Huge-page backings get a mapping aligned to their page size: thp
 *    over-allocates by 2 MiB and trims; hugetlb reserves PROT_NONE address
 *    space, MAP_FIXEDs the hugetlb mapping inside it and trims the rest.
 *  - hugetlb pages are reserved at mmap time (MAP_SHARED, no MAP_NORESERVE),
 *    so a shortage is an -ENOMEM at map or remap time with a message that
 *    says what to echo where, never a SIGBUS at first touch.  The free count
 *    is read from sysfs before mapping so the message is exact.  (A hugetlb
 *    discard punches the pages and their reservation away: remap the range
 *    before it is used again.)
 *  - Released memory really goes back to the host: munmap/MADV_DONTNEED for
 *    private anonymous memory, a punched hole for memfd/hugetlb (their pages
 *    live in the file, not in the mapping).  A user's file is never punched.
 *  - Read-only regions are mapped read-write: the table enforces read-only.
 *  - Prefault hands chunks to worker threads through an atomic index.  The
 *    workers never touch the thread-local last error nor call the progress
 *    callback: the calling thread does both.
 *  - Coverage is measured, not inferred: pagemap + kpageflags per 2 MiB
 *    block, or smaps sums when the kernel hides PFNs (no CAP_SYS_ADMIN).
 *
 * No global mutable state.  The caller serialises map/unmap/release/remap/
 * prefault of one region (the VM's writer mutex); coverage only reads.
 */
#include "internal.h"

#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << 26)
#endif
#ifndef MFD_HUGE_1GB
#define MFD_HUGE_1GB (30U << 26)
#endif

#define PREFAULT_CHUNK (64ULL << 20)
#define PREFAULT_CHUNK_CANCEL (2ULL << 20)   /* gmm_region_prefault_until: a cancel waits for one */

/* /proc/self/pagemap and /proc/kpageflags bits. */
#define PM_PRESENT (1ULL << 63)
#define PM_PFN_MASK ((1ULL << 55) - 1)
#define KPF_HUGE 17
#define KPF_THP 22

static const struct {
	const char *name;
	uint64_t page_size;
} backings[GMM_BACKING__N] = {
	[GMM_BACKING_ANON] = { "anon", GMM_PAGE_SIZE },
	[GMM_BACKING_THP] = { "thp", GMM_2M },
	[GMM_BACKING_HUGETLB_2M] = { "hugetlb-2M", GMM_2M },
	[GMM_BACKING_HUGETLB_1G] = { "hugetlb-1G", GMM_1G },
	[GMM_BACKING_MEMFD] = { "memfd", GMM_PAGE_SIZE },
	[GMM_BACKING_FILE] = { "file", GMM_PAGE_SIZE },
};

/* Name of a backing; "unknown" for a value outside the enum. */
const char *gmm_backing_name(enum gmm_backing b)
{
	if ((unsigned)b >= GMM_BACKING__N)
		return "unknown";
	return backings[b].name;
}

/* Exact, case-sensitive names; -EINVAL (with a message) otherwise. */
int gmm_backing_parse(const char *name, enum gmm_backing *out)
{
	for (unsigned b = 0; name && b < GMM_BACKING__N; b++) {
		if (strcmp(name, backings[b].name) == 0) {
			*out = (enum gmm_backing)b;
			return 0;
		}
	}
	return gmm_seterr(EINVAL, "unknown backing \"%s\" (expected anon, thp, hugetlb-2M, "
			  "hugetlb-1G, memfd or file)", name ? name : "(null)");
}

/* 4 KiB, 2 MiB or 1 GiB; 0 for a value outside the enum. */
uint64_t gmm_backing_page_size(enum gmm_backing b)
{
	if ((unsigned)b >= GMM_BACKING__N)
		return 0;
	return backings[b].page_size;
}

/* ---- helpers --------------------------------------------------------- */

static const char *rname(const struct gmm_region *r)
{
	return r->name[0] ? r->name : "(unnamed)";
}

static const char *psize_str(uint64_t ps)
{
	switch (ps) {
	case GMM_PAGE_SIZE: return "4 KiB";
	case GMM_2M: return "2 MiB";
	case GMM_1G: return "1 GiB";
	default: return "?";
	}
}

static bool is_hugetlb(enum gmm_backing b)
{
	return b == GMM_BACKING_HUGETLB_2M || b == GMM_BACKING_HUGETLB_1G;
}

/* The region's memory lives in a file we created (punching it frees memory). */
static bool owns_file_pages(enum gmm_backing b)
{
	return b == GMM_BACKING_MEMFD || is_hugetlb(b);
}

static bool is_anonymous(enum gmm_backing b)
{
	return b == GMM_BACKING_ANON || b == GMM_BACKING_THP;
}

static uint8_t *align_up(uint8_t *p, uint64_t a)
{
	return (uint8_t *)(((uintptr_t)p + a - 1) & ~(uintptr_t)(a - 1));
}

/* Name given to memfds (visible in /proc/<pid>/maps and fd links). */
static void memfd_name(const struct gmm_region *r, char *buf, size_t len)
{
	snprintf(buf, len, "guestmm:%s", r->name[0] ? r->name : "region");
}

/* ---- hugetlb pool (sysfs) ------------------------------------------- */

struct hpool {
	uint64_t nr, free, resv, surplus, overcommit;
};

static void hpool_path(char *buf, size_t len, uint64_t ps, const char *field)
{
	snprintf(buf, len, "/sys/kernel/mm/hugepages/hugepages-%" PRIu64 "kB/%s", ps >> 10, field);
}

static int hpool_field(uint64_t ps, const char *field, uint64_t *v)
{
	char path[128];
	unsigned long long x;
	FILE *f;
	int n;

	hpool_path(path, sizeof path, ps, field);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	n = fscanf(f, "%llu", &x);
	fclose(f);
	if (n != 1)
		return -EIO;
	*v = x;
	return 0;
}

/* nr/free/resv are required; surplus/overcommit default to 0. */
static int hpool_read(uint64_t ps, struct hpool *p)
{
	int err;

	*p = (struct hpool){ 0 };
	if ((err = hpool_field(ps, "nr_hugepages", &p->nr)) ||
	    (err = hpool_field(ps, "free_hugepages", &p->free)) ||
	    (err = hpool_field(ps, "resv_hugepages", &p->resv)))
		return err;
	(void)hpool_field(ps, "surplus_hugepages", &p->surplus);
	(void)hpool_field(ps, "nr_overcommit_hugepages", &p->overcommit);
	return 0;
}

/* Pages a new reservation can get: free and not reserved, plus the
 * surplus pages the kernel may still allocate (nr_overcommit_hugepages). */
static uint64_t hpool_avail(const struct hpool *p)
{
	uint64_t a = p->free > p->resv ? p->free - p->resv : 0;

	if (p->overcommit > p->surplus)
		a += p->overcommit - p->surplus;
	return a;
}

/* The -ENOMEM of a hugetlb shortage, with what to echo where.  what is ""
 * or a phrase such as " to map back offset 0x...". */
static int hugetlb_nomem(const struct gmm_region *r, uint64_t needed, const char *what)
{
	uint64_t ps = gmm_backing_page_size(r->backing);
	const char *bn = gmm_backing_name(r->backing);
	char path[128];
	struct hpool p;
	uint64_t avail;

	hpool_path(path, sizeof path, ps, "nr_hugepages");
	if (hpool_read(ps, &p))
		return gmm_seterr(ENOMEM, "%s: region \"%s\": the kernel could not reserve %" PRIu64
				  " pages of %s%s; reserve them in %s", bn, rname(r), needed,
				  psize_str(ps), what, path);
	avail = hpool_avail(&p);
	if (avail < needed)
		return gmm_seterr(ENOMEM, "%s: region \"%s\" needs %" PRIu64 " pages of %s%s but only %"
				  PRIu64 " are free; reserve them with: echo %" PRIu64 " > %s", bn,
				  rname(r), needed, psize_str(ps), what, avail,
				  p.nr + (needed - avail), path);
	return gmm_seterr(ENOMEM, "%s: region \"%s\": the kernel could not reserve %" PRIu64
			  " pages of %s%s although %" PRIu64 " appear free (hugetlb cgroup limit, "
			  "NUMA policy, or taken meanwhile?); reserve more with: echo %" PRIu64 " > %s",
			  bn, rname(r), needed, psize_str(ps), what, avail, p.nr + needed, path);
}

/* ---- map ------------------------------------------------------------ */

static int map_anon(struct gmm_region *r, bool thp)
{
	uint64_t len = r->size + (thp ? GMM_2M : 0);
	uint8_t *p, *a, *end;
	int e;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		e = errno;
		return gmm_seterr(e, "%s: region \"%s\": cannot map %" PRIu64
				  " bytes of anonymous memory: %s", gmm_backing_name(r->backing),
				  rname(r), r->size, strerror(e));
	}
	a = p;
	if (thp) {
		/* Trim to a 2 MiB-aligned [a, a + size). */
		a = align_up(p, GMM_2M);
		end = p + len;
		if (a > p)
			munmap(p, a - p);
		if (end > a + r->size)
			munmap(a + r->size, end - (a + r->size));
	}
	if (madvise(a, r->size, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE)) {
		e = errno;
		if (thp) {
			munmap(a, r->size);
			return gmm_seterr(e, "thp: region \"%s\": madvise(MADV_HUGEPAGE) failed: %s "
					  "(kernel without transparent huge pages?)", rname(r), strerror(e));
		}
		/* Without THP support nothing can become huge anyway. */
		gmm_log(GMM_LOG_DEBUG, "anon: region \"%s\": madvise(MADV_NOHUGEPAGE): %s",
			rname(r), strerror(e));
	}
	r->hva = a;
	r->fd = -1;
	return 0;
}

/* Map [0, r->size) of fd shared at an address aligned to ps (reserve
 * address space, map inside, trim the rest): sets r->hva.  0 or -errno
 * (nothing left mapped; the fd is the caller's). */
static int map_shared_aligned(struct gmm_region *r, int fd, uint64_t ps)
{
	uint64_t rlen = r->size + ps;
	uint8_t *res = mmap(NULL, rlen, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (res == MAP_FAILED)
		return -errno;
	uint8_t *a = align_up(res, ps);
	if (mmap(a, r->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
		int e = errno;
		munmap(res, rlen);
		return -e;
	}
	if (a > res)
		munmap(res, a - res);
	if (res + rlen > a + r->size)
		munmap(a + r->size, (res + rlen) - (a + r->size));
	r->hva = a;
	return 0;
}

static int map_hugetlb(struct gmm_region *r)
{
	uint64_t ps = gmm_backing_page_size(r->backing);
	uint64_t needed = r->size / ps;
	const char *bn = gmm_backing_name(r->backing);
	char name[64];
	struct hpool pool;
	int fd, e;

	/* Exact message before anything is reserved.  Without sysfs the
	 * mmap below is still the authority. */
	if (hpool_read(ps, &pool) == 0 && hpool_avail(&pool) < needed)
		return hugetlb_nomem(r, needed, "");

	memfd_name(r, name, sizeof name);
	fd = memfd_create(name, MFD_CLOEXEC | MFD_HUGETLB |
			  (ps == GMM_1G ? MFD_HUGE_1GB : MFD_HUGE_2MB));
	if (fd < 0) {
		e = errno;
		return gmm_seterr(e, "%s: region \"%s\": memfd_create(MFD_HUGETLB) failed: %s "
				  "(is the %s huge page size supported? see /sys/kernel/mm/hugepages/)",
				  bn, rname(r), strerror(e), psize_str(ps));
	}
	if (ftruncate(fd, (off_t)r->size)) {
		e = errno;
		close(fd);
		return gmm_seterr(e, "%s: region \"%s\": cannot size the hugetlb memfd to %" PRIu64
				  " bytes: %s", bn, rname(r), r->size, strerror(e));
	}
	e = map_shared_aligned(r, fd, ps);
	if (e == -ENOMEM) {   /* no huge pages to back the mapping */
		close(fd);
		return hugetlb_nomem(r, needed, "");
	}
	if (e < 0) {
		close(fd);
		return gmm_seterr(-e, "%s: region \"%s\": cannot map the hugetlb memfd: %s",
				  bn, rname(r), strerror(-e));
	}
	r->fd = fd;
	return 0;
}

static int map_memfd(struct gmm_region *r)
{
	char name[64];
	uint8_t *p;
	int fd, e;

	memfd_name(r, name, sizeof name);
	fd = memfd_create(name, MFD_CLOEXEC);
	if (fd < 0) {
		e = errno;
		return gmm_seterr(e, "memfd: region \"%s\": memfd_create failed: %s",
				  rname(r), strerror(e));
	}
	if (ftruncate(fd, (off_t)r->size)) {
		e = errno;
		close(fd);
		return gmm_seterr(e, "memfd: region \"%s\": cannot size the memfd to %" PRIu64
				  " bytes: %s", rname(r), r->size, strerror(e));
	}
	p = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		e = errno;
		close(fd);
		return gmm_seterr(e, "memfd: region \"%s\": cannot map %" PRIu64 " bytes: %s",
				  rname(r), r->size, strerror(e));
	}
	r->hva = p;
	r->fd = fd;
	return 0;
}

static int map_file(struct gmm_region *r)
{
	struct stat st;
	uint8_t *p;
	int fd, e;

	if (!r->path || !r->path[0])
		return gmm_seterr(EINVAL, "file: region \"%s\": no path given", rname(r));
	fd = open(r->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		e = errno;
		return gmm_seterr(e, "file: region \"%s\": cannot open %s: %s", rname(r), r->path,
				  strerror(e));
	}
	if (fstat(fd, &st)) {
		e = errno;
		close(fd);
		return gmm_seterr(e, "file: region \"%s\": cannot stat %s: %s", rname(r), r->path,
				  strerror(e));
	}
	/* Extend a short regular file; never shrink one.  Anything else (a
	 * device) is mapped as it is. */
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size < r->size && ftruncate(fd, (off_t)r->size)) {
		e = errno;
		close(fd);
		return gmm_seterr(e, "file: region \"%s\": cannot extend %s to %" PRIu64 " bytes: %s",
				  rname(r), r->path, r->size, strerror(e));
	}
	p = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		e = errno;
		close(fd);
		return gmm_seterr(e, "file: region \"%s\": cannot map %" PRIu64 " bytes of %s: %s",
				  rname(r), r->size, r->path, strerror(e));
	}
	r->hva = p;
	r->fd = fd;
	return 0;
}

/* GMM_REGION_FD: map the caller's fd (a local migration's memfd, hugetlb
 * memfd or file), aligned to the backing's page size, after checking it
 * is a regular file (memfds are) at least r->size long.  The fd is dup'd:
 * the caller keeps its own. */
static int map_adopted(struct gmm_region *r)
{
	uint64_t ps = gmm_backing_page_size(r->backing);
	const char *bn = gmm_backing_name(r->backing);
	struct stat st;
	int fd, e;

	if (fstat(r->adopt_fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < r->size)
		return gmm_seterr(EINVAL, "%s: region \"%s\": the given fd is not a memory file of at least %" PRIu64
				  " bytes", bn, rname(r), r->size);
	fd = fcntl(r->adopt_fd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0) {
		e = errno;
		return gmm_seterr(e, "%s: region \"%s\": dup of the given fd: %s", bn, rname(r),
				  strerror(e));
	}
	e = map_shared_aligned(r, fd, ps);
	if (e < 0) {
		close(fd);
		return gmm_seterr(-e, "%s: region \"%s\": cannot map the given fd: %s (a %s "
				  "fd must be of that page size)", bn, rname(r), strerror(-e), bn);
	}
	r->fd = fd;
	return 0;
}

/*
 * Contract: r->gpa, size, backing, path (file), flags, name set by the
 * caller; sets r->hva, r->fd (-1 for anon/thp), r->page_size.  The mapping
 * is read-write even for GMM_REGION_READONLY.  r->size must be a non-zero
 * multiple of the backing's page size (-EINVAL).  On failure nothing is left
 * mapped or open (a file created by open(O_CREAT) stays on disk), the error
 * is set with gmm_seterr() and its negative errno returned; hugetlb
 * shortages are -ENOMEM with the echo command that fixes them.
 */
int gmm_backing_map(struct gmm_region *r)
{
	uint64_t ps = gmm_backing_page_size(r->backing);
	int err;

	r->hva = NULL;
	r->fd = -1;
	if (!ps)
		return gmm_seterr(EINVAL, "region \"%s\": unknown backing %d", rname(r),
				  (int)r->backing);
	if (!r->size || r->size % ps)
		return gmm_seterr(EINVAL, "%s: region \"%s\": size %#" PRIx64
				  " is not a non-zero multiple of %s", gmm_backing_name(r->backing),
				  rname(r), r->size, psize_str(ps));
	if (r->flags & GMM_REGION_FD)
		err = map_adopted(r);
	else switch (r->backing) {
	case GMM_BACKING_ANON: err = map_anon(r, false); break;
	case GMM_BACKING_THP: err = map_anon(r, true); break;
	case GMM_BACKING_HUGETLB_2M:
	case GMM_BACKING_HUGETLB_1G: err = map_hugetlb(r); break;
	case GMM_BACKING_MEMFD: err = map_memfd(r); break;
	case GMM_BACKING_FILE: err = map_file(r); break;
	default: err = gmm_seterr(EINVAL, "region \"%s\": unknown backing", rname(r)); break;
	}
	if (err == 0)
		r->page_size = ps;
	return err;
}

/* Contract: munmap [hva, hva + size) (placeholders included) and close the
 * fd; leaves r->hva NULL and r->fd -1.  A no-op on a region not mapped
 * (hva NULL), so a zeroed region's fd 0 is never closed. */
void gmm_backing_unmap(struct gmm_region *r)
{
	if (!r->hva)
		return;
	if (munmap(r->hva, r->size))
		gmm_log(GMM_LOG_WARN, "%s: region \"%s\": munmap failed: %s",
			gmm_backing_name(r->backing), rname(r), strerror(errno));
	r->hva = NULL;
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
}

/* ---- release / remap ------------------------------------------------ */

/* Smallest unit release/remap work in: the huge page for hugetlb (the
 * kernel cannot split one); 4 KiB otherwise, thp included (the kernel
 * splits a THP; table.h: "a THP leaf is split as needed"). */
static uint64_t granule(const struct gmm_region *r)
{
	return is_hugetlb(r->backing) ? r->page_size : GMM_PAGE_SIZE;
}

static int check_range(const struct gmm_region *r, uint64_t off, uint64_t len, const char *op)
{
	uint64_t g;

	if (!r->hva || !r->page_size)
		return gmm_seterr(EINVAL, "%s: region \"%s\" is not mapped", op, rname(r));
	g = granule(r);
	if (off % g || len % g)
		return gmm_seterr(EINVAL, "%s: %s: region \"%s\": offset %#" PRIx64 " and length %#"
				  PRIx64 " must be multiples of %s", op, gmm_backing_name(r->backing),
				  rname(r), off, len, psize_str(g));
	if (off > r->size || len > r->size - off)
		return gmm_seterr(EINVAL, "%s: region \"%s\": [%#" PRIx64 ", +%#" PRIx64
				  ") is outside the region (size %#" PRIx64 ")", op, rname(r), off, len,
				  r->size);
	return 0;
}

static int punch_hole(const struct gmm_region *r, uint64_t off, uint64_t len)
{
	if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		return -errno;
	return 0;
}

/* A PROT_NONE reservation over [addr, addr + len) if nothing is there.
 * Returns 0 or the errno of the failure. */
static int put_placeholder(uint8_t *addr, uint64_t len)
{
	void *p = mmap(addr, len, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);

	if (p == MAP_FAILED)
		return errno;
	if (p != addr) {        /* kernel < 4.17: the flag was only a hint */
		munmap(p, len);
		return EEXIST;
	}
	return 0;
}

/*
 * Contract: give [off, off + len) back to the host; off/len inside the
 * region and multiples of the huge page size for hugetlb, of 4 KiB for the
 * other backings - thp too: the kernel splits the THP (else -EINVAL,
 * nothing done).
 *  discard: the mapping stays, contents are dropped: MADV_DONTNEED for
 *    anon/thp; a punched hole for memfd/hugetlb (which also unmaps the pages,
 *    so the range reads zeros); MADV_DONTNEED only for a user file (its data
 *    stays and reads back).  A discarded hugetlb range has no reservation
 *    any more: touching it again needs a free huge page (SIGBUS if none) -
 *    remap it first to reserve cleanly.
 *  otherwise: the memory is unmapped for real and a PROT_NONE placeholder
 *    takes its place in the same call (mmap MAP_FIXED over the range), so
 *    the address stays the region's and no other mapping can slip in;
 *    memfd/hugetlb holes are punched too.  If the punch fails, a warning is
 *    logged and 0 returned: the range is unmapped, the file keeps pages.
 */
int gmm_backing_release(struct gmm_region *r, uint64_t off, uint64_t len, bool discard)
{
	const char *bn = gmm_backing_name(r->backing);
	uint8_t *addr;
	int err;

	if ((err = check_range(r, off, len, discard ? "discard" : "release")))
		return err;
	if (!len)
		return 0;
	addr = r->hva + off;
	if (GMM_FAULT(GMM_FAULT_RELEASE))
		return gmm_seterr(ENOMEM, "%s: region \"%s\": %s of [%#" PRIx64 ", +%#" PRIx64
				  "): injected failure", bn, rname(r), discard ? "discard" : "munmap",
				  off, len);

	if (discard) {
		if (owns_file_pages(r->backing)) {
			if ((err = punch_hole(r, off, len)))
				return gmm_seterr(-err, "%s: region \"%s\": cannot punch [%#" PRIx64 ", +%#"
						  PRIx64 "): %s", bn, rname(r), off, len, strerror(-err));
			return 0;
		}
		if (madvise(addr, len, MADV_DONTNEED)) {
			err = errno;
			return gmm_seterr(err, "%s: region \"%s\": madvise(MADV_DONTNEED) of [%#" PRIx64
					  ", +%#" PRIx64 "): %s", bn, rname(r), off, len, strerror(err));
		}
		return 0;
	}

	/* One call replaces the memory by the placeholder: the kernel unmaps
	 * the old pages and installs the PROT_NONE reservation under one
	 * mmap lock, so no other thread's mmap can take the address in
	 * between (a munmap followed by a placeholder left that window, and a
	 * later remap would then have mapped over the intruder). */
	if (mmap(addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
		 -1, 0) == MAP_FAILED) {
		err = errno;
		return gmm_seterr(err, "%s: region \"%s\": unmapping [%#" PRIx64 ", +%#" PRIx64
				  "): %s%s", bn, rname(r), off, len, strerror(err),
				  err == ENOMEM ? " (vm.max_map_count reached?)" : "");
	}
	GMM_HOOK(GMM_HOOK_RELEASED, (&(struct gmm_hook_range){ addr, len }));
	if (owns_file_pages(r->backing) && (err = punch_hole(r, off, len)))
		gmm_log(GMM_LOG_WARN, "%s: region \"%s\": unmapped [%#" PRIx64 ", +%#" PRIx64
			") but could not free its memory (punch hole: %s)", bn, rname(r), off, len,
			strerror(-err));
	return 0;
}

/*
 * Contract: map [off, off + len) again at hva + off (same alignment rules
 * as release; thp: MADV_HUGEPAGE again, khugepaged may collapse the range
 * back into a THP): fresh zeroed private memory with the backing's madvise for
 * anon/thp, the fd's pages at offset off otherwise (zeros where punched,
 * the file's data for a user file).  MAP_FIXED_NOREPLACE first; on EEXIST
 * the range is taken to be ours (a placeholder or a discarded/mapped range
 * of the region: the caller guarantees it is inside the region) and
 * MAP_FIXED is used.  Risk, documented: if a foreign mapping took the
 * address after a failed placeholder, MAP_FIXED replaces it.  hugetlb: the
 * pages are reserved here; a shortage is -ENOMEM with the echo command.  On
 * failure a placeholder is put back where nothing is left.
 */
int gmm_backing_remap(struct gmm_region *r, uint64_t off, uint64_t len)
{
	const char *bn = gmm_backing_name(r->backing);
	int prot = PROT_READ | PROT_WRITE;
	int flags, fd, err;
	uint8_t *addr;
	off_t foff;
	void *p;

	if ((err = check_range(r, off, len, "remap")))
		return err;
	if (!len)
		return 0;
	addr = r->hva + off;
	if (GMM_FAULT(GMM_FAULT_REMAP))
		return gmm_seterr(ENOMEM, "%s: region \"%s\": cannot map back [%#" PRIx64 ", +%#"
				  PRIx64 "): injected failure", bn, rname(r), off, len);
	if (is_anonymous(r->backing)) {
		flags = MAP_PRIVATE | MAP_ANONYMOUS;
		fd = -1;
		foff = 0;
	} else {
		flags = MAP_SHARED;
		fd = r->fd;
		foff = (off_t)off;
	}

	p = mmap(addr, len, prot, flags | MAP_FIXED_NOREPLACE, fd, foff);
	if (p != MAP_FAILED && p != addr) {     /* kernel < 4.17: only a hint */
		munmap(p, len);
		p = MAP_FAILED;
		errno = EEXIST;
	}
	if (p == MAP_FAILED && errno == EEXIST)
		p = mmap(addr, len, prot, flags | MAP_FIXED, fd, foff);
	if (p == MAP_FAILED) {
		err = errno;
		(void)put_placeholder(addr, len);
		if (err == ENOMEM && is_hugetlb(r->backing)) {
			char what[64];

			snprintf(what, sizeof what, " to map back offset %#" PRIx64, off);
			return hugetlb_nomem(r, len / r->page_size, what);
		}
		return gmm_seterr(err, "%s: region \"%s\": cannot map back [%#" PRIx64 ", +%#" PRIx64
				  "): %s", bn, rname(r), off, len, strerror(err));
	}
	if (is_anonymous(r->backing) &&
	    madvise(addr, len, r->backing == GMM_BACKING_THP ? MADV_HUGEPAGE : MADV_NOHUGEPAGE))
		gmm_log(r->backing == GMM_BACKING_THP ? GMM_LOG_WARN : GMM_LOG_DEBUG,
			"%s: region \"%s\": madvise after remap of [%#" PRIx64 ", +%#" PRIx64 "): %s",
			bn, rname(r), off, len, strerror(errno));
	return 0;
}

/* ---- prefault ------------------------------------------------------- */

struct pf_ctx {
	struct gmm_region *r;
	uint64_t chunk, nchunks;
	_Atomic uint64_t next;          /* next chunk to hand out */
	_Atomic uint64_t done;          /* bytes populated */
	_Atomic bool stop;              /* a worker failed */
	const _Atomic bool *cancel;     /* the caller's (gmm_region_prefault_until) or NULL */
	bool touch;                     /* MADV_POPULATE_WRITE unsupported */
	_Atomic int err;                /* first errno */
	_Atomic uint64_t err_off;       /* chunk offset of the first error */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned running;               /* workers not finished (under lock) */
};

/* Fault every 4 KiB page in for writing without changing its contents: an
 * atomic add of 0 (a read then write of the same byte that cannot lose a
 * concurrent write).  Used where the kernel lacks MADV_POPULATE_WRITE. */
static void pf_touch(uint8_t *p, uint64_t len)
{
	for (uint64_t o = 0; o < len; o += GMM_PAGE_SIZE)
		__atomic_fetch_add((volatile uint8_t *)(p + o), 0, __ATOMIC_RELAXED);
}

/* Does the kernel know MADV_POPULATE_WRITE (5.14+)?  EINVAL is ambiguous
 * on the region itself (newer kernels also return it for a PROT_NONE
 * range), so ask on a private page of our own. */
static bool populate_supported(void)
{
	void *p = mmap(NULL, GMM_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	bool ok;

	if (p == MAP_FAILED)
		return true;    /* cannot tell: use it, errors are reported */
	ok = madvise(p, GMM_PAGE_SIZE, MADV_POPULATE_WRITE) == 0 || errno != EINVAL;
	munmap(p, GMM_PAGE_SIZE);
	return ok;
}

static void *pf_worker(void *arg)
{
	struct pf_ctx *c = arg;
	struct gmm_region *r = c->r;

	while (!GMM_READ_ONCE(c->stop) && !(c->cancel && atomic_load(c->cancel))) {
		uint64_t i = atomic_fetch_add(&c->next, 1), off, len;
		uint8_t *p;
		int e = 0;

		if (i >= c->nchunks)
			break;
		off = i * c->chunk;
		len = r->size - off < c->chunk ? r->size - off : c->chunk;
		p = r->hva + off;
		if (c->touch) {
			pf_touch(p, len);
		} else {
			/* EINVAL here means a PROT_NONE placeholder in the
			 * range (support was probed beforehand). */
			while (madvise(p, len, MADV_POPULATE_WRITE)) {
				e = errno;
				if (e != EINTR)
					break;
				e = 0;
			}
		}
		if (e) {
			int zero = 0;

			if (atomic_compare_exchange_strong(&c->err, &zero, e))
				atomic_store(&c->err_off, off);
			atomic_store(&c->stop, true);
			break;
		}
		atomic_fetch_add(&c->done, len);
	}
	pthread_mutex_lock(&c->lock);
	c->running--;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/*
 * Contract: populate [hva, hva + size) for writing (contents preserved)
 * with MADV_POPULATE_WRITE over chunks of max(64 MiB, page size) shared by
 * `threads` threads (0: online CPUs; never more threads than chunks); where
 * the kernel lacks it (probed on a private page: EINVAL) pages are touched
 * instead.  progress (may be
 * NULL) is called only from the calling thread, at most every 1%, and on
 * success once at the end with done == total.  ENOMEM/EFAULT/EINVAL from
 * the kernel (hugetlb pages taken by someone else, a released part of the
 * region: a hole, or a PROT_NONE placeholder, which recent kernels report
 * as EINVAL) give -EFAULT with a message; no final progress call then.  Sets
 * r->prefault_ns on success.  Note: the touch fallback faults (SIGSEGV) on a
 * released (PROT_NONE) range; it only runs on kernels older than 5.14.
 */
static int prefault(struct gmm_region *r, unsigned threads, gmm_progress_fn progress, void *arg,
		    const _Atomic bool *cancel, uint64_t chunk);

int gmm_region_prefault(struct gmm_region *r, unsigned threads, gmm_progress_fn progress, void *arg)
{
	return prefault(r, threads, progress, arg, NULL, PREFAULT_CHUNK);
}

int gmm_region_prefault_until(struct gmm_region *r, unsigned threads, const _Atomic bool *cancel)
{
	return prefault(r, threads, NULL, NULL, cancel, PREFAULT_CHUNK_CANCEL);
}

static int prefault(struct gmm_region *r, unsigned threads, gmm_progress_fn progress, void *arg,
		    const _Atomic bool *cancel, uint64_t chunk)
{
	struct pf_ctx c = { .r = r, .cancel = cancel };
	pthread_condattr_t ca;
	sigset_t all, old;
	pthread_t *tids;
	uint64_t t0, total = r->size, step, last = 0;
	unsigned started = 0;
	int e;

	if (!r->hva || !r->size)
		return gmm_seterr(EINVAL, "prefault: region \"%s\" is not mapped", rname(r));
	if (threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		threads = n > 0 ? (unsigned)n : 1;
	}
	c.chunk = chunk > r->page_size ? chunk : r->page_size;
	c.nchunks = (r->size + c.chunk - 1) / c.chunk;
	if (threads > c.nchunks)
		threads = (unsigned)c.nchunks;
	step = total / 100 ? total / 100 : 1;
	c.touch = !populate_supported();
	if (c.touch)
		gmm_log(GMM_LOG_DEBUG, "prefault: MADV_POPULATE_WRITE unsupported, touching pages");

	pthread_mutex_init(&c.lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c.cond, &ca);
	pthread_condattr_destroy(&ca);

	t0 = gmm_now_ns();
	tids = calloc(threads, sizeof *tids);
	if (tids) {
		/* Workers take no signals meant for the process. */
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		pthread_mutex_lock(&c.lock);
		for (; started < threads; started++) {
			c.running++;
			if (pthread_create(&tids[started], NULL, pf_worker, &c)) {
				c.running--;
				break;
			}
		}
		pthread_mutex_unlock(&c.lock);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	if (started == 0) {
		/* No thread could be created: do the work here. */
		c.running = 1;
		pf_worker(&c);
	}

	pthread_mutex_lock(&c.lock);
	while (c.running) {
		struct timespec ts;
		uint64_t d;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 10 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&c.cond, &c.lock, &ts);
		d = atomic_load(&c.done);
		if (progress && d < total && d - last >= step) {
			pthread_mutex_unlock(&c.lock);
			progress(arg, d, total);
			last = d;
			pthread_mutex_lock(&c.lock);
		}
	}
	pthread_mutex_unlock(&c.lock);
	for (unsigned i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	free(tids);
	pthread_cond_destroy(&c.cond);
	pthread_mutex_destroy(&c.lock);

	e = atomic_load(&c.err);
	if (e) {
		uint64_t off = atomic_load(&c.err_off);

		if (e == ENOMEM || e == EFAULT || e == EINVAL)
			return gmm_seterr(EFAULT, "prefault: %s: region \"%s\": the kernel cannot provide "
					  "memory in [%#" PRIx64 ", +%#" PRIx64 ") (%s): hugetlb pages taken "
					  "by someone else, or part of the region unmapped",
					  gmm_backing_name(r->backing), rname(r), off, c.chunk, strerror(e));
		return gmm_seterr(e, "prefault: %s: region \"%s\": madvise(MADV_POPULATE_WRITE) in "
				  "[%#" PRIx64 ", +%#" PRIx64 "): %s", gmm_backing_name(r->backing),
				  rname(r), off, c.chunk, strerror(e));
	}
	if (cancel && atomic_load(cancel) && atomic_load(&c.next) < c.nchunks)
		return -ECANCELED;
	if (progress)
		progress(arg, total, total);
	r->prefault_ns = gmm_now_ns() - t0;
	return 0;
}

/* ---- coverage ------------------------------------------------------- */

/* 0: measured; 1: PFNs or page flags unavailable, use smaps. */
static int cov_pagemap(const struct gmm_region *r, struct gmm_coverage *cov)
{
	uint64_t ent[GMM_2M / GMM_PAGE_SIZE];
	uint64_t resident = 0, huge = 0;
	int pm, kf, ret = 0;

	pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pm < 0)
		return 1;
	kf = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	if (kf < 0) {
		close(pm);
		return 1;
	}
	/* Per 2 MiB of the region (1 GiB pages too), one pread of its 512
	 * pagemap entries.  A block is huge when all its pages are present,
	 * physically contiguous from a 2 MiB-aligned PFN, and the first is a
	 * THP or hugetlb page. */
	for (uint64_t off = 0; off < r->size; off += GMM_2M) {
		uint64_t len = r->size - off < GMM_2M ? r->size - off : GMM_2M;
		uint64_t n = len / GMM_PAGE_SIZE, present = 0, first, lastpfn, flags;
		uintptr_t va = (uintptr_t)(r->hva + off);

		if (pread(pm, ent, n * sizeof ent[0], (off_t)(va / GMM_PAGE_SIZE * sizeof ent[0])) !=
		    (ssize_t)(n * sizeof ent[0])) {
			ret = 1;
			break;
		}
		for (uint64_t i = 0; i < n; i++) {
			if (!(ent[i] & PM_PRESENT))
				continue;
			if (!(ent[i] & PM_PFN_MASK)) {  /* PFNs hidden: no CAP_SYS_ADMIN */
				ret = 1;
				goto out;
			}
			present++;
		}
		resident += present * GMM_PAGE_SIZE;
		if (n != GMM_2M / GMM_PAGE_SIZE || present != n)
			continue;
		first = ent[0] & PM_PFN_MASK;
		lastpfn = ent[n - 1] & PM_PFN_MASK;
		if (lastpfn != first + n - 1 || (first & (n - 1)))
			continue;
		if (pread(kf, &flags, sizeof flags, (off_t)(first * sizeof flags)) != sizeof flags) {
			ret = 1;
			break;
		}
		if (flags & ((1ULL << KPF_THP) | (1ULL << KPF_HUGE)))
			huge += GMM_2M;
	}
out:
	close(kf);
	close(pm);
	if (ret == 0) {
		cov->resident = resident;
		cov->huge = huge;
		cov->method = "pagemap+kpageflags";
	}
	return ret;
}

static bool smaps_field(const char *line, const char *name, uint64_t *bytes)
{
	size_t n = strlen(name);
	unsigned long long kb;

	if (strncmp(line, name, n) != 0 || sscanf(line + n, " %llu kB", &kb) != 1)
		return false;
	*bytes = (uint64_t)kb << 10;
	return true;
}

/* Sum the VMAs lying entirely inside the region. */
static int cov_smaps(const struct gmm_region *r, struct gmm_coverage *cov)
{
	uintptr_t lo = (uintptr_t)r->hva, hi = lo + r->size;
	uint64_t resident = 0, huge = 0, v;
	char *line = NULL;
	size_t cap = 0;
	bool in = false;
	FILE *f;
	int e;

	f = fopen("/proc/self/smaps", "re");
	if (!f) {
		e = errno;
		return gmm_seterr(e, "coverage: region \"%s\": cannot open /proc/self/smaps: %s",
				  rname(r), strerror(e));
	}
	while (getline(&line, &cap, f) > 0) {
		unsigned long s, end;
		char sp;

		if (sscanf(line, "%lx-%lx%c", &s, &end, &sp) == 3 && sp == ' ') {
			in = s >= lo && end <= hi;
			continue;
		}
		if (!in)
			continue;
		if (smaps_field(line, "Rss:", &v)) {
			resident += v;
		} else if (smaps_field(line, "AnonHugePages:", &v) ||
			   smaps_field(line, "ShmemPmdMapped:", &v) ||
			   smaps_field(line, "FilePmdMapped:", &v)) {
			huge += v;
		} else if (smaps_field(line, "Shared_Hugetlb:", &v) ||
			   smaps_field(line, "Private_Hugetlb:", &v)) {
			huge += v;      /* hugetlb pages are not in Rss */
			resident += v;
		}
	}
	free(line);
	fclose(f);
	cov->resident = resident;
	cov->huge = huge;
	cov->method = "smaps";
	return 0;
}

/*
 * Contract: measured coverage of [hva, hva + size): resident bytes and
 * bytes backed by 2 MiB/1 GiB pages.  Method "pagemap+kpageflags" (needs
 * CAP_SYS_ADMIN for PFNs and read access to /proc/kpageflags), else
 * "smaps".  Reads nothing outside the region; released (placeholder) blocks
 * count as not present.  Callable from any thread.
 */
int gmm_region_coverage(const struct gmm_region *r, struct gmm_coverage *cov)
{
	*cov = (struct gmm_coverage){ .size = r->size };
	if (!r->hva)
		return gmm_seterr(EINVAL, "coverage: region \"%s\" is not mapped", rname(r));
	if (cov_pagemap(r, cov) == 0)
		return 0;
	return cov_smaps(r, cov);
}
