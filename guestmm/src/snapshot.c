// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * snapshot.c - guest memory to a sparse file and back, and the table's
 * shape (snapshot.h; ondemand.c has the userfaultfd restore).
 *
 * Save: under the writer mutex (no map, unmap, split or protect can run),
 * the region's table is read span by span (gmm_table_peek: a leaf of 4 KiB,
 * 2 MiB or 1 GiB, or a hole of the size of its slot); the mapped spans are
 * then asked the host which of their 4 KiB pages are resident (mincore(2),
 * 2 MiB of vector at a time), and only resident runs become extents.
 * Holes in the file are what nobody wrote: the file is extended with
 * ftruncate, never filled.  The extents are written by `threads` threads
 * with pwrite from the host mapping, each taking the next extent (at most
 * 8 MiB) from a shared atomic index.  The mutex stays held for the whole
 * write: the caller promised no guest writes (VM paused, devices quiesced)
 * and the mutex keeps the host mapping as it was read.
 *
 * Load (Copy restore): the mapped spans of the region, intersected with
 * the file's data ranges (lseek SEEK_DATA / SEEK_HOLE), become extents
 * read with pread into the mapping by `threads` threads the same way.
 * Unmapped spans are never touched: their host range is a PROT_NONE
 * placeholder.
 *
 * Threads started here are plain pthreads that only read or write memory
 * and the file; none is a walker, none takes a guestmm lock; the caller
 * joins them before the writer mutex is released.
 */
#include "internal.h"

#include <guestmm/guestmm.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define EXTENT_MAX (8ULL << 20)
#define MAX_THREADS 16

/* ---- extent lists ------------------------------------------------------ */

struct extent {
	uint64_t off;        /* file offset */
	uint8_t *hva;
	uint64_t len;
};

struct extents {
	struct extent *v;
	size_t n, cap;
};

/* Append, merging with the last one when contiguous in both; split at
 * EXTENT_MAX so threads share the work. */
static int ext_add(struct extents *x, uint64_t off, uint8_t *hva, uint64_t len)
{
	while (len) {
		struct extent *l = x->n ? &x->v[x->n - 1] : NULL;
		if (l && l->off + l->len == off && l->hva + l->len == hva && l->len < EXTENT_MAX) {
			uint64_t k = EXTENT_MAX - l->len < len ? EXTENT_MAX - l->len : len;
			l->len += k;
			off += k;
			hva += k;
			len -= k;
			continue;
		}
		if (x->n == x->cap) {
			size_t cap = x->cap ? 2 * x->cap : 256;
			struct extent *v = realloc(x->v, cap * sizeof(*v));
			if (!v)
				return gmm_seterr(ENOMEM, "out of memory for the snapshot's extent list");
			x->v = v;
			x->cap = cap;
		}
		uint64_t k = len < EXTENT_MAX ? len : EXTENT_MAX;
		x->v[x->n++] = (struct extent){ off, hva, k };
		off += k;
		hva += k;
		len -= k;
	}
	return 0;
}

/* wlock held: call fn for every mapped span of r (clipped to r), with
 * its leaf entry and leaf size, and every unmapped span (entry 0). */
typedef int (*span_fn)(void *arg, uint64_t gpa, uint64_t len, uint64_t e, uint64_t leaf);
static int for_each_span(struct gmm_region *r, span_fn fn, void *arg)
{
	uint64_t gpa = r->gpa, end = r->gpa + r->size;
	while (gpa < end) {
		uint64_t span;
		uint64_t e = gmm_table_peek(r->vm, gpa, &span);
		uint64_t next = (gpa & ~(span - 1)) + span;
		if (next > end || next <= gpa)
			next = end;
		int rc = fn(arg, gpa, next - gpa, e, span);
		if (rc < 0)
			return rc;
		gpa = next;
	}
	return 0;
}

/* ---- the worker threads ------------------------------------------------ */

struct io_job {
	int fd;
	bool write;
	struct extents *x;
	_Atomic size_t next;
	_Atomic int err;             /* first -errno */
	_Atomic uint64_t bad_off;
	_Atomic uint64_t bytes;
};

static void *io_worker(void *arg)
{
	struct io_job *j = arg;
	for (;;) {
		size_t i = atomic_fetch_add(&j->next, 1);
		if (i >= j->x->n || atomic_load(&j->err))
			return NULL;
		struct extent *e = &j->x->v[i];
		uint64_t done = 0;
		while (done < e->len) {
			ssize_t n = j->write ?
				pwrite(j->fd, e->hva + done, e->len - done, (off_t)(e->off + done)) :
				pread(j->fd, e->hva + done, e->len - done, (off_t)(e->off + done));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				int err = n < 0 ? -errno : (j->write ? -ENOSPC : -EIO);
				int zero = 0;
				if (atomic_compare_exchange_strong(&j->err, &zero, err))
					atomic_store(&j->bad_off, e->off + done);
				return NULL;
			}
			done += (uint64_t)n;
		}
		atomic_fetch_add(&j->bytes, done);
	}
}

static unsigned nthreads(unsigned threads, size_t work)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned n = threads ? threads : cpus > 0 ? (unsigned)cpus : 1;
	if (n > MAX_THREADS)
		n = MAX_THREADS;
	if (n > work)
		n = work ? (unsigned)work : 1;
	return n;
}

/* Run the job on n threads (the caller is one of them). */
static int run_job(struct io_job *j, unsigned threads)
{
	unsigned n = nthreads(threads, j->x->n);
	pthread_t t[MAX_THREADS];
	unsigned started = 0;
	for (unsigned i = 1; i < n; i++) {
		if (pthread_create(&t[started], NULL, io_worker, j) != 0)
			break;   /* fewer threads: the work still gets done */
		started++;
	}
	io_worker(j);
	for (unsigned i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	return atomic_load(&j->err);
}

/* ---- save -------------------------------------------------------------- */

struct save_ctx {
	struct gmm_region *r;
	uint64_t off;
	struct extents x;
	uint64_t mapped;
	int pagemap;                 /* /proc/self/pagemap, or -1 */
	unsigned char vec[512];      /* one byte per page: has contents */
	uint64_t pm[512];
};

/* Which of the n <= 512 pages at hva hold contents the guest could read
 * back: vec[i] bit 0.  Where the host keeps them decides how to ask:
 *   anon, thp   pagemap: present OR swapped (mincore says 0 for a page
 *               swapped out, and its contents would be lost)
 *   memfd       SEEK_DATA on the region's fd (shmem counts a swapped page
 *               as data; a discard punched a hole)
 *   hugetlb     mincore (huge pages are never swapped)
 * pagemap falls back to mincore if it cannot be read. */
static int resident(struct save_ctx *c, uint8_t *hva, uint64_t n)
{
	struct gmm_region *r = c->r;
	if ((r->backing == GMM_BACKING_ANON || r->backing == GMM_BACKING_THP) && c->pagemap >= 0) {
		off_t at = (off_t)((uintptr_t)hva / GMM_PAGE_SIZE * 8);
		if (pread(c->pagemap, c->pm, n * 8, at) == (ssize_t)(n * 8)) {
			for (uint64_t i = 0; i < n; i++)
				c->vec[i] = (c->pm[i] >> 62) & 3 ? 1 : 0;   /* 63 present, 62 swapped */
			return 0;
		}
	}
	if ((r->backing == GMM_BACKING_MEMFD || r->backing == GMM_BACKING_FILE) && r->fd >= 0) {
		uint64_t lo = (uint64_t)(hva - r->hva), hi = lo + n * GMM_PAGE_SIZE, at = lo;
		memset(c->vec, 0, n);
		while (at < hi) {
			off_t d = lseek(r->fd, (off_t)at, SEEK_DATA);
			if (d < 0 || (uint64_t)d >= hi)
				break;
			off_t h = lseek(r->fd, d, SEEK_HOLE);
			uint64_t e = h < 0 || (uint64_t)h > hi ? hi : (uint64_t)h;
			for (uint64_t p = ((uint64_t)d - lo) / GMM_PAGE_SIZE; p < (e - lo + GMM_PAGE_SIZE - 1) / GMM_PAGE_SIZE; p++)
				c->vec[p] = 1;
			at = e;
		}
		return 0;
	}
	if (mincore(hva, n * GMM_PAGE_SIZE, c->vec) < 0)
		return gmm_seterr(errno, "mincore of guest memory at %p: %s", (void *)hva,
				  strerror(errno));
	return 0;
}

/* The runs of pages holding data in the mapped span [gpa, gpa + len) of
 * c->r: fn(c, run_gpa, run_len) for each, in order. */
static int data_runs(struct save_ctx *c, uint64_t gpa, uint64_t len,
		     int (*fn)(struct save_ctx *c, uint64_t gpa, uint64_t len))
{
	uint8_t *hva = c->r->hva + (gpa - c->r->gpa);
	for (uint64_t at = 0; at < len; at += sizeof(c->vec) * GMM_PAGE_SIZE) {
		uint64_t k = len - at < sizeof(c->vec) * GMM_PAGE_SIZE ? len - at :
			     sizeof(c->vec) * GMM_PAGE_SIZE;
		int rc = resident(c, hva + at, k / GMM_PAGE_SIZE);
		if (rc < 0)
			return rc;
		for (uint64_t p = 0; p < k / GMM_PAGE_SIZE;) {
			if (!(c->vec[p] & 1)) {
				p++;
				continue;
			}
			uint64_t q = p;
			while (q < k / GMM_PAGE_SIZE && (c->vec[q] & 1))
				q++;
			rc = fn(c, gpa + at + p * GMM_PAGE_SIZE, (q - p) * GMM_PAGE_SIZE);
			if (rc < 0)
				return rc;
			p = q;
		}
	}
	return 0;
}

static int save_run(struct save_ctx *c, uint64_t gpa, uint64_t len)
{
	return ext_add(&c->x, c->off + (gpa - c->r->gpa), c->r->hva + (gpa - c->r->gpa), len);
}

static int save_span(void *arg, uint64_t gpa, uint64_t len, uint64_t e, uint64_t leaf)
{
	(void)leaf;
	struct save_ctx *c = arg;
	if (!e)
		return 0;
	c->mapped += len;
	return data_runs(c, gpa, len, save_run);
}

/* gmm_region_data_bits: the save's choice of pages, as a bitmap.  The
 * context comes first: data_runs hands it back as a save_ctx. */
struct bits_ctx {
	struct save_ctx c;
	uint64_t *bits;
};

static int bits_run(struct save_ctx *c, uint64_t gpa, uint64_t len)
{
	uint64_t *bits = ((struct bits_ctx *)c)->bits;
	for (uint64_t i = (gpa - c->r->gpa) / GMM_PAGE_SIZE; len; i++, len -= GMM_PAGE_SIZE)
		bits[i / 64] |= 1ULL << (i % 64);
	return 0;
}

static int bits_span(void *arg, uint64_t gpa, uint64_t len, uint64_t e, uint64_t leaf)
{
	(void)leaf;
	return e ? data_runs(arg, gpa, len, bits_run) : 0;
}

int gmm_region_data_bits(struct gmm_region *r, uint64_t *bits)
{
	struct gmm_vm *vm = r->vm;
	int rc = gmm_writer_lock(vm);
	if (rc < 0)
		return gmm_seterr(-rc, "guestmm: the VM belongs to another process");
	struct bits_ctx *b = calloc(1, sizeof(*b));
	if (!b) {
		gmm_writer_unlock(vm);
		return gmm_seterr(ENOMEM, "out of memory");
	}
	b->c.r = r;
	b->bits = bits;
	b->c.pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	rc = for_each_span(r, bits_span, b);
	gmm_writer_unlock(vm);
	if (b->c.pagemap >= 0)
		close(b->c.pagemap);
	free(b);
	return rc;
}

int gmm_region_save(struct gmm_region *r, int fd, uint64_t off, unsigned threads,
		    struct gmm_save_stats *st)
{
	struct gmm_vm *vm = r->vm;
	uint64_t t0 = gmm_now_ns();
	int rc = gmm_writer_lock(vm);
	if (rc < 0)
		return gmm_seterr(-rc, "guestmm: the VM belongs to another process");
	struct save_ctx *c = calloc(1, sizeof(*c));
	if (!c) {
		gmm_writer_unlock(vm);
		return gmm_seterr(ENOMEM, "out of memory");
	}
	c->r = r;
	c->off = off;
	c->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	rc = for_each_span(r, save_span, c);
	struct io_job j = { .fd = fd, .write = true, .x = &c->x };
	if (rc == 0) {
		struct stat sb;
		if (fstat(fd, &sb) < 0)
			rc = gmm_seterr(errno, "the memory file: %s", strerror(errno));
		else if ((uint64_t)sb.st_size < off + r->size && ftruncate(fd, (off_t)(off + r->size)) < 0)
			rc = gmm_seterr(errno, "extending the memory file to %llu bytes: %s",
					(unsigned long long)(off + r->size), strerror(errno));
	}
	if (rc == 0 && (rc = run_job(&j, threads)) < 0)
		gmm_seterr(-rc, "writing guest memory to the file at offset %llu: %s",
			   (unsigned long long)atomic_load(&j.bad_off), strerror(-rc));
	gmm_writer_unlock(vm);
	if (st) {
		st->mapped = c->mapped;
		st->written = atomic_load(&j.bytes);
		st->extents = c->x.n;
		st->ns = gmm_now_ns() - t0;
	}
	if (c->pagemap >= 0)
		close(c->pagemap);
	free(c->x.v);
	free(c);
	return rc;
}

/* ---- shape ------------------------------------------------------------- */

struct shape_ctx {
	struct gmm_region *r;
	struct gmm_shape_range *v;
	size_t n, cap;
};

static int shape_span(void *arg, uint64_t gpa, uint64_t len, uint64_t e, uint64_t leaf)
{
	struct shape_ctx *c = arg;
	enum gmm_shape_kind k;
	if (!e)
		k = GMM_SHAPE_UNMAPPED;
	else if (!(e & GMM_PTE_WRITE) && !(c->r->flags & GMM_REGION_READONLY))
		k = GMM_SHAPE_READONLY;
	else if (leaf < c->r->page_size)
		k = GMM_SHAPE_SPLIT;
	else
		return 0;
	struct gmm_shape_range *l = c->n ? &c->v[c->n - 1] : NULL;
	if (l && l->kind == k && l->gpa + l->len == gpa) {
		l->len += len;
		return 0;
	}
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 64;
		struct gmm_shape_range *v = realloc(c->v, cap * sizeof(*v));
		if (!v)
			return gmm_seterr(ENOMEM, "out of memory for the table's shape");
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = (struct gmm_shape_range){ gpa, len, k };
	return 0;
}

int gmm_region_shape(struct gmm_region *r, struct gmm_shape_range **out, size_t *n)
{
	int rc = gmm_writer_lock(r->vm);
	if (rc < 0)
		return gmm_seterr(-rc, "guestmm: the VM belongs to another process");
	struct shape_ctx c = { .r = r };
	rc = for_each_span(r, shape_span, &c);
	gmm_writer_unlock(r->vm);
	if (rc < 0) {
		free(c.v);
		return rc;
	}
	*out = c.v;
	*n = c.n;
	return 0;
}

int gmm_region_apply_shape(struct gmm_region *r, const struct gmm_shape_range *v, size_t n)
{
	struct gmm_vm *vm = r->vm;
	uint64_t gran = r->backing == GMM_BACKING_HUGETLB_2M || r->backing == GMM_BACKING_HUGETLB_1G ?
			r->page_size : GMM_PAGE_SIZE;
	for (size_t i = 0; i < n; i++) {
		const struct gmm_shape_range *s = &v[i];
		if (s->kind != GMM_SHAPE_UNMAPPED && s->kind != GMM_SHAPE_SPLIT &&
		    s->kind != GMM_SHAPE_READONLY)
			return gmm_seterr(EINVAL, "shape range %zu: unknown kind %d", i, (int)s->kind);
		if (!s->len || s->gpa < r->gpa || s->len > r->size || s->gpa - r->gpa > r->size - s->len)
			return gmm_seterr(EINVAL, "shape range %zu (0x%llx+0x%llx) is outside the region "
					  "0x%llx+0x%llx", i, (unsigned long long)s->gpa,
					  (unsigned long long)s->len, (unsigned long long)r->gpa,
					  (unsigned long long)r->size);
		/* Unmapped or split at 4 KiB on a huge backing (saved from thp,
		 * restored onto hugetlb): see the second loop. */
		uint64_t g = s->kind == GMM_SHAPE_READONLY ? gran : GMM_PAGE_SIZE;
		if ((s->gpa | s->len) & (g - 1))
			return gmm_seterr(EINVAL, "shape range %zu (0x%llx+0x%llx) is not aligned to "
					  "%llu bytes", i, (unsigned long long)s->gpa,
					  (unsigned long long)s->len, (unsigned long long)g);
		if (i && v[i - 1].gpa + v[i - 1].len > s->gpa)
			return gmm_seterr(EINVAL, "shape range %zu overlaps or precedes the one before",
					  i);
	}
	/* A hugetlb region cannot hold 4 KiB leaves: an unmapped range is
	 * shrunk to the huge pages wholly inside it (the rest stays mapped:
	 * memory the guest gave up -- ballooned -- and does not touch; a later
	 * deflate maps what is mapped already), and split ranges are left
	 * whole. */
	for (size_t i = 0; i < n; i++) {
		const struct gmm_shape_range *s = &v[i];
		int rc = 0;
		if (s->kind == GMM_SHAPE_UNMAPPED) {
			uint64_t lo = (s->gpa + gran - 1) & ~(gran - 1);
			uint64_t hi = (s->gpa + s->len) & ~(gran - 1);
			if (hi > lo)
				rc = gmm_unmap(vm, lo, hi - lo, 0);
		} else if (s->kind == GMM_SHAPE_SPLIT && gran == GMM_PAGE_SIZE &&
			   r->page_size > GMM_PAGE_SIZE) {
			for (uint64_t g = s->gpa & ~(r->page_size - 1); !rc && g < s->gpa + s->len;
			     g += r->page_size) {
				uint64_t leaf = 0;
				if (gmm_table_lookup(vm, g, &leaf) && leaf > GMM_PAGE_SIZE)
					rc = gmm_split(vm, g);
			}
		} else if (s->kind == GMM_SHAPE_READONLY) {
			rc = gmm_protect(vm, s->gpa, s->len, false);
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- load -------------------------------------------------------------- */

int gmm_snapshot_file_covers(int fd, const struct gmm_region *r, uint64_t off)
{
	struct stat sb;
	if (fstat(fd, &sb) < 0)
		return gmm_seterr(errno, "the memory file: %s", strerror(errno));
	if ((uint64_t)sb.st_size < off + r->size)
		return gmm_seterr(EINVAL, "the memory file is truncated: %llu bytes, region %s needs "
				  "[%llu, %llu)", (unsigned long long)sb.st_size, r->name,
				  (unsigned long long)off, (unsigned long long)(off + r->size));
	return 0;
}

struct load_ctx {
	struct gmm_region *r;
	int fd;
	uint64_t off;
	struct extents x;
};

/* One mapped span: the file's data ranges inside it. */
static int load_span(void *arg, uint64_t gpa, uint64_t len, uint64_t e, uint64_t leaf)
{
	(void)leaf;
	struct load_ctx *c = arg;
	if (!e)
		return 0;
	uint64_t lo = c->off + (gpa - c->r->gpa), hi = lo + len;
	while (lo < hi) {
		off_t d = lseek(c->fd, (off_t)lo, SEEK_DATA);
		if (d < 0 && errno == ENXIO)
			return 0;            /* nothing but a hole to the end */
		if (d < 0)
			return gmm_seterr(errno, "SEEK_DATA in the memory file: %s", strerror(errno));
		if ((uint64_t)d >= hi)
			return 0;
		off_t h = lseek(c->fd, d, SEEK_HOLE);
		if (h < 0)
			return gmm_seterr(errno, "SEEK_HOLE in the memory file: %s", strerror(errno));
		uint64_t end = (uint64_t)h < hi ? (uint64_t)h : hi;
		int rc = ext_add(&c->x, (uint64_t)d, c->r->hva + ((uint64_t)d - c->off),
				 end - (uint64_t)d);
		if (rc < 0)
			return rc;
		lo = end;
	}
	return 0;
}

int gmm_region_load(struct gmm_region *r, int fd, uint64_t off, unsigned threads,
		    struct gmm_load_stats *st)
{
	struct gmm_vm *vm = r->vm;
	uint64_t t0 = gmm_now_ns();
	int rc = gmm_snapshot_file_covers(fd, r, off);
	if (rc < 0)
		return rc;
	rc = gmm_writer_lock(vm);
	if (rc < 0)
		return gmm_seterr(-rc, "guestmm: the VM belongs to another process");
	struct load_ctx c = { .r = r, .fd = fd, .off = off };
	rc = for_each_span(r, load_span, &c);
	struct io_job j = { .fd = fd, .write = false, .x = &c.x };
	if (rc == 0 && (rc = run_job(&j, threads)) < 0)
		gmm_seterr(-rc, "reading guest memory from the file at offset %llu: %s",
			   (unsigned long long)atomic_load(&j.bad_off),
			   rc == -EIO ? "short read" : strerror(-rc));
	gmm_writer_unlock(vm);
	if (st) {
		st->read = atomic_load(&j.bytes);
		st->extents = c.x.n;
		st->ns = gmm_now_ns() - t0;
	}
	free(c.x.v);
	return rc;
}
