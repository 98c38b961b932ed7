// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ondemand.c - on-demand restore: guest memory served from the snapshot's
 * file as it is first touched, through userfaultfd (snapshot.h).
 *
 * Blocks.  Each region is cut into blocks of its host page size where that
 * is huge (2 MiB thp and hugetlb-2M, 1 GiB hugetlb-1G), else 2 MiB.  Only
 * blocks holding data in the file (SEEK_DATA) need serving: a block that
 * is all hole reads as zeros, which is what the kernel gives on a first
 * touch once the range is no longer registered.  Each block has a state
 * under od->lock: TODO -> CLAIMED (one thread copies it, outside the lock)
 * -> DONE.
 *
 * Serving a block: for each mapped run of the region inside it (the
 * table's shape at start; unmapped runs are PROT_NONE placeholders that
 * were never registered), pread the file into a staging buffer (holes read
 * as zeros) and UFFDIO_COPY it in: one copy of the whole huge page for
 * hugetlb (the kernel maps it as one page), 4 KiB pages for thp, after
 * which MADV_COLLAPSE turns the block back into one huge page (counted;
 * a failure leaves it in 4 KiB pages, still correct).  UFFDIO_COPY wakes
 * every thread waiting on the range.  The collapse copies the block once
 * more: the filler does it for its own blocks and, after its pass, for the
 * blocks faults brought in (flag 0x40), so a fault costs one read and one
 * copy, not a collapse too (without a filler the handler collapses).
 *
 * Two threads serve: the handler reads fault messages and serves the
 * faulting block (a block CLAIMED by the filler is left to it: its copy
 * wakes the faulting thread); the filler walks the data blocks in GPA
 * order and serves every one still TODO.  When every data block is DONE
 * the regions are unregistered: later first touches (holes) are the
 * kernel's ordinary zero-fill.  A fault on a DONE block while still
 * registered means the page was discarded since (balloon, free page
 * reporting): it is served zeros, never the file's stale bytes.  A
 * message for a page already present again (the copy raced with the read
 * of the message) gets EEXIST and a UFFDIO_WAKE.
 *
 * Why the handler can never deadlock with a walker (the question):
 * any thread that touches guest memory -- a vCPU inside KVM_RUN, a device
 * thread inside a walk section, an io_uring or pool worker writing a
 * disk read into a guest buffer -- may block in a page fault until the
 * handler serves it, and a guestmm writer (an unmap for the balloon or
 * virtio-mem) may at that moment wait for that walker's walk section to
 * end (its serialisation).  The handler and the filler are not walkers,
 * never call a guestmm writer operation or take the writer mutex, and wait
 * only on od->lock (held for a few loads and stores, never across I/O or
 * a copy), their own fds and the file.  So the fault is served whatever
 * the writer and the walker are doing; the walker's walk then ends and the
 * writer goes on.  The chain walker -> handler has no edge back.  The one
 * thing the handler needs from others is the file, which is the caller's
 * (a local regular file).  A writer's munmap of a registered range (an
 * unplug) is fine: it drops the registration with the range, and a copy
 * into it fails with ENOENT, which is counted and ignored.
 *
 * Stop: od->stop and a write to stop_fd; both threads look at them between
 * blocks and every 100 ms of poll; the filler finishes at most the block it
 * is copying.  Stop happens when the VM goes away (no walker left), so a
 * range left unserved never faults again.
 */
#include "internal.h"

#include <guestmm/guestmm.h>

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

enum { B_HOLE, B_TODO, B_CLAIMED, B_DONE };

struct od_run {
	uint64_t gpa, len;           /* a mapped run, registered */
};

struct od_region {
	struct gmm_region *r;
	uint64_t off;                /* file offset of r->gpa */
	uint64_t block;              /* block size */
	uint64_t first;              /* index of its first block in od->state */
	uint64_t nblocks;
	struct od_run *runs;
	size_t nruns;
	bool huge_copy;              /* hugetlb: UFFDIO_COPY whole pages */
	bool collapse;               /* thp: MADV_COLLAPSE after the copy */
};

struct gmm_ondemand {
	int uffd, fd, stop_fd;
	unsigned nregions;
	struct od_region reg[GMM_ONDEMAND_MAX_REGIONS];
	uint64_t nblocks;
	uint8_t *state;              /* per block, under lock */
	uint64_t todo;               /* data blocks not DONE, under lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;         /* todo reached 0 */
	pthread_t handler, filler;
	bool handler_started, filler_started;
	_Atomic bool stop;
	bool unregistered;           /* under lock */
	bool fill;                   /* a filler runs (set before the threads start) */
	bool collapse_pass_done;     /* under lock: the filler's last pass ended */
	unsigned serve_delay_us;
	uint64_t max_block;
	struct gmm_ondemand_stats st;   /* counters: atomics through the macros below */
};

#define STAT_ADD(od, f, n) __atomic_fetch_add(&(od)->st.f, (n), __ATOMIC_RELAXED)
#define STAT_LD(od, f) __atomic_load_n(&(od)->st.f, __ATOMIC_RELAXED)

/* A thread's staging buffer: one block of the largest size. */
static uint8_t *stage_alloc(struct gmm_ondemand *od)
{
	uint8_t *p = mmap(NULL, od->max_block, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		gmm_log(GMM_LOG_ERROR, "on-demand restore: no staging buffer: %s", strerror(errno));
		return NULL;
	}
	return p;
}

/* ---- the table's mapped runs ------------------------------------------ */

/* wlock held. */
static int collect_runs(struct od_region *o)
{
	struct gmm_region *r = o->r;
	uint64_t gpa = r->gpa, end = r->gpa + r->size;
	size_t cap = 0;
	while (gpa < end) {
		uint64_t span;
		uint64_t e = gmm_table_peek(r->vm, gpa, &span);
		uint64_t next = (gpa & ~(span - 1)) + span;
		if (next > end || next <= gpa)
			next = end;
		if (e) {
			struct od_run *l = o->nruns ? &o->runs[o->nruns - 1] : NULL;
			if (l && l->gpa + l->len == gpa) {
				l->len += next - gpa;
			} else {
				if (o->nruns == cap) {
					cap = cap ? 2 * cap : 16;
					struct od_run *v = realloc(o->runs, cap * sizeof(*v));
					if (!v)
						return gmm_seterr(ENOMEM, "out of memory");
					o->runs = v;
				}
				o->runs[o->nruns++] = (struct od_run){ gpa, next - gpa };
			}
		}
		gpa = next;
	}
	return 0;
}

/* ---- serving ------------------------------------------------------------ */

static struct od_region *region_of(struct gmm_ondemand *od, uint64_t block)
{
	for (unsigned i = 0; i < od->nregions; i++)
		if (block >= od->reg[i].first && block < od->reg[i].first + od->reg[i].nblocks)
			return &od->reg[i];
	return NULL;
}

/* The block index of a faulting host address, or UINT64_MAX. */
static uint64_t block_of(struct gmm_ondemand *od, uintptr_t addr, struct od_region **out)
{
	for (unsigned i = 0; i < od->nregions; i++) {
		struct od_region *o = &od->reg[i];
		uintptr_t base = (uintptr_t)o->r->hva;
		if (addr >= base && addr - base < o->r->size) {
			*out = o;
			return o->first + (addr - base) / o->block;
		}
	}
	return UINT64_MAX;
}

/* UFFDIO_COPY len bytes of src to dst (a registered range).  0, or
 * -errno; EEXIST (already there) and ENOENT/ESRCH (the range went away:
 * an unmap, or the VM is going) count as done. */
static int uffd_copy(struct gmm_ondemand *od, void *dst, const void *src, uint64_t len)
{
	for (int tries = 0; tries < 1000; tries++) {
		struct uffdio_copy c = {
			.dst = (uintptr_t)dst, .src = (uintptr_t)src, .len = len, .mode = 0,
		};
		if (ioctl(od->uffd, UFFDIO_COPY, &c) == 0)
			return 0;
		int e = errno;
		if (e == EAGAIN && c.copy > 0 && (uint64_t)c.copy < len) {
			/* Partly done: go on with the rest. */
			dst = (uint8_t *)dst + c.copy;
			src = (const uint8_t *)src + c.copy;
			len -= (uint64_t)c.copy;
			continue;
		}
		if (e == EAGAIN || e == EINTR)
			continue;
		if (e == EEXIST || e == ENOENT || e == ESRCH)
			return 0;
		return -e;
	}
	return -EAGAIN;
}

static void collapse_block(struct gmm_ondemand *od, struct od_region *o, uint64_t b)
{
	struct gmm_region *r = o->r;
	uint64_t lo = r->gpa + (b - o->first) * o->block;
	if (madvise(r->hva + (lo - r->gpa), o->block, MADV_COLLAPSE) == 0)
		STAT_ADD(od, collapsed, 1);
	else
		STAT_ADD(od, collapse_failed, 1);
}

/* Copy block b in (the caller CLAIMED it).  stage: max_block bytes.  A
 * thp block mapped whole is collapsed at once (now) or marked for the
 * filler (a fault: the faulting thread is already awake, but the next
 * fault would wait for the collapse's copy).  Returns true if b is to be
 * collapsed later. */
static bool serve_block(struct gmm_ondemand *od, struct od_region *o, uint64_t b, uint8_t *stage,
			bool now)
{
	struct gmm_region *r = o->r;
	uint64_t lo = r->gpa + (b - o->first) * o->block;
	uint64_t hi = lo + o->block < r->gpa + r->size ? lo + o->block : r->gpa + r->size;
	bool whole = false;
	for (size_t i = 0; i < o->nruns; i++) {
		const struct od_run *run = &o->runs[i];
		uint64_t a = run->gpa > lo ? run->gpa : lo;
		uint64_t z = run->gpa + run->len < hi ? run->gpa + run->len : hi;
		if (a >= z)
			continue;
		whole = a == lo && z == hi;
		uint64_t len = z - a, foff = o->off + (a - r->gpa), done = 0;
		while (done < len) {
			ssize_t n = pread(od->fd, stage + done, len - done, (off_t)(foff + done));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			done += (uint64_t)n;
		}
		if (done < len)
			memset(stage + done, 0, len - done);   /* checked at start: cannot happen */
		int rc = uffd_copy(od, r->hva + (a - r->gpa), stage, len);
		if (rc < 0)
			gmm_log(GMM_LOG_WARN, "on-demand restore: UFFDIO_COPY at 0x%llx: %s",
				(unsigned long long)a, strerror(-rc));
		STAT_ADD(od, bytes_copied, len);
	}
	if (!o->collapse || !whole || hi - lo != o->block)
		return false;
	if (now)
		collapse_block(od, o, b);
	return !now;
}

/* Unregister every run (lock held): the rest is the kernel's. */
static void unregister_all(struct gmm_ondemand *od)
{
	if (od->unregistered)
		return;
	od->unregistered = true;
	for (unsigned i = 0; i < od->nregions; i++) {
		struct od_region *o = &od->reg[i];
		for (size_t k = 0; k < o->nruns; k++) {
			struct uffdio_range rg = {
				.start = (uintptr_t)(o->r->hva + (o->runs[k].gpa - o->r->gpa)),
				.len = o->runs[k].len,
			};
			/* A range unmapped since is no longer registered: EINVAL/ENOENT. */
			ioctl(od->uffd, UFFDIO_UNREGISTER, &rg);
		}
	}
	__atomic_store_n(&od->st.done, true, __ATOMIC_RELEASE);
}

/* Take block b if TODO (true), with od->lock. */
static bool claim(struct gmm_ondemand *od, uint64_t b)
{
	pthread_mutex_lock(&od->lock);
	bool mine = od->state[b] == B_TODO || od->state[b] == B_HOLE;
	if (mine)
		od->state[b] = od->state[b] == B_TODO ? B_CLAIMED : B_CLAIMED | 0x80;
	pthread_mutex_unlock(&od->lock);
	return mine;
}

static void finish(struct gmm_ondemand *od, uint64_t b)
{
	pthread_mutex_lock(&od->lock);
	bool data = !(od->state[b] & 0x80);
	od->state[b] = B_DONE | (od->state[b] & 0x40);
	if (data && --od->todo == 0) {
		unregister_all(od);
		pthread_cond_broadcast(&od->cond);
	}
	pthread_mutex_unlock(&od->lock);
}

/* A fault on a block served already: the page was discarded since (or the
 * copy that served it raced with this message).  Zeros, or a wake. */
static void serve_zero(struct gmm_ondemand *od, struct od_region *o, uintptr_t addr,
		       uint8_t *stage)
{
	struct gmm_region *r = o->r;
	uint64_t page = o->huge_copy ? r->page_size : GMM_PAGE_SIZE;
	uintptr_t start = addr & ~(uintptr_t)(page - 1);
	int e = 0;
	if (o->huge_copy) {
		memset(stage, 0, page);
		struct uffdio_copy c = { .dst = start, .src = (uintptr_t)stage, .len = page };
		if (ioctl(od->uffd, UFFDIO_COPY, &c) < 0)
			e = errno;
	} else {
		struct uffdio_zeropage z = { .range = { .start = start, .len = page } };
		if (ioctl(od->uffd, UFFDIO_ZEROPAGE, &z) < 0)
			e = errno;
	}
	if (e == 0) {
		STAT_ADD(od, zero_served, 1);
	} else {
		struct uffdio_range rg = { .start = start, .len = page };
		ioctl(od->uffd, UFFDIO_WAKE, &rg);
	}
}

static void *handler_thread(void *arg)
{
	struct gmm_ondemand *od = arg;
	uint8_t *stage = stage_alloc(od);
	if (!stage)
		return NULL;
	while (!atomic_load(&od->stop)) {
		struct pollfd p[2] = { { od->uffd, POLLIN, 0 }, { od->stop_fd, POLLIN, 0 } };
		if (poll(p, 2, 100) <= 0 || (p[1].revents & POLLIN))
			continue;
		struct uffd_msg msg[16];
		ssize_t n = read(od->uffd, msg, sizeof(msg));
		if (n <= 0)
			continue;
		for (size_t i = 0; i < (size_t)n / sizeof(msg[0]); i++) {
			if (msg[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			uint64_t t0 = gmm_now_ns();
			uintptr_t addr = (uintptr_t)msg[i].arg.pagefault.address;
			struct od_region *o;
			uint64_t b = block_of(od, addr, &o);
			if (b == UINT64_MAX)
				continue;
			if (od->serve_delay_us)
				usleep(od->serve_delay_us);
			if (claim(od, b)) {
				bool later = serve_block(od, o, b, stage, !od->fill);
				pthread_mutex_lock(&od->lock);
				if (later)
					od->state[b] |= 0x40;   /* the filler collapses it */
				pthread_mutex_unlock(&od->lock);
				finish(od, b);
				STAT_ADD(od, blocks_fault, 1);
			} else {
				pthread_mutex_lock(&od->lock);
				uint8_t s = od->state[b] & ~0x40;
				pthread_mutex_unlock(&od->lock);
				if (s == B_DONE)
					serve_zero(od, o, addr, stage);
				/* CLAIMED: the filler's copy wakes the faulting thread. */
			}
			uint64_t dt = gmm_now_ns() - t0;
			if (STAT_ADD(od, faults, 1) == 0)
				__atomic_store_n(&od->st.first_fault_ns, dt, __ATOMIC_RELAXED);
			STAT_ADD(od, fault_ns_total, dt);
			if (dt > STAT_LD(od, fault_ns_max))
				__atomic_store_n(&od->st.fault_ns_max, dt, __ATOMIC_RELAXED);
		}
	}
	munmap(stage, od->max_block);
	return NULL;
}

static void *filler_thread(void *arg)
{
	struct gmm_ondemand *od = arg;
	uint8_t *stage = stage_alloc(od);
	if (!stage)
		return NULL;
	for (uint64_t b = 0; b < od->nblocks && !atomic_load(&od->stop); b++) {
		pthread_mutex_lock(&od->lock);
		bool data = od->state[b] == B_TODO;
		pthread_mutex_unlock(&od->lock);
		if (!data || !claim(od, b))
			continue;
		serve_block(od, region_of(od, b), b, stage, true);
		finish(od, b);
		STAT_ADD(od, blocks_fill, 1);
	}
	/* The blocks faults brought in, collapsed off the fault path. */
	for (uint64_t b = 0; b < od->nblocks && !atomic_load(&od->stop); b++) {
		pthread_mutex_lock(&od->lock);
		bool later = od->state[b] & 0x40;
		od->state[b] &= ~0x40;
		pthread_mutex_unlock(&od->lock);
		if (later)
			collapse_block(od, region_of(od, b), b);
	}
	pthread_mutex_lock(&od->lock);
	od->collapse_pass_done = true;
	pthread_cond_broadcast(&od->cond);
	pthread_mutex_unlock(&od->lock);
	munmap(stage, od->max_block);
	return NULL;
}

/* ---- the interface ------------------------------------------------------ */

static int open_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0)
		return fd;
	int e = errno;
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
		if (fd >= 0)
			return fd;
	}
	return gmm_seterr(e, "userfaultfd: %s (on-demand restore serves faults from KVM and the "
			  "kernel: it needs CAP_SYS_PTRACE, vm.unprivileged_userfaultfd=1, or access "
			  "to /dev/userfaultfd)", strerror(e));
}

void gmm_ondemand_stop(struct gmm_ondemand *od)
{
	if (!od)
		return;
	atomic_store(&od->stop, true);
	uint64_t one = 1;
	if (od->stop_fd >= 0 && write(od->stop_fd, &one, sizeof(one)) < 0)
		(void)0;
	if (od->handler_started)
		pthread_join(od->handler, NULL);
	if (od->filler_started)
		pthread_join(od->filler, NULL);
	if (od->uffd >= 0)
		close(od->uffd);   /* unregisters everything still registered */
	if (od->fd >= 0)
		close(od->fd);
	if (od->stop_fd >= 0)
		close(od->stop_fd);
	for (unsigned i = 0; i < od->nregions; i++)
		free(od->reg[i].runs);
	free(od->state);
	pthread_mutex_destroy(&od->lock);
	pthread_cond_destroy(&od->cond);
	free(od);
}

int gmm_ondemand_start(struct gmm_vm *vm, const struct gmm_ondemand_spec *spec,
		       struct gmm_ondemand **out)
{
	*out = NULL;
	if (!spec->nregions || spec->nregions > GMM_ONDEMAND_MAX_REGIONS)
		return gmm_seterr(EINVAL, "on-demand restore: %u regions (1 to %d)", spec->nregions,
				  GMM_ONDEMAND_MAX_REGIONS);
	struct gmm_ondemand *od = calloc(1, sizeof(*od));
	if (!od)
		return gmm_seterr(ENOMEM, "out of memory");
	od->uffd = od->fd = od->stop_fd = -1;
	pthread_mutex_init(&od->lock, NULL);
	pthread_cond_init(&od->cond, NULL);
	od->serve_delay_us = spec->test_serve_delay_us;
	int rc = 0;
	od->fd = fcntl(spec->fd, F_DUPFD_CLOEXEC, 3);
	if (od->fd < 0) {
		rc = gmm_seterr(errno, "the memory file: %s", strerror(errno));
		goto fail;
	}
	od->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (od->stop_fd < 0) {
		rc = gmm_seterr(errno, "eventfd: %s", strerror(errno));
		goto fail;
	}
	od->nregions = spec->nregions;
	for (unsigned i = 0; i < spec->nregions; i++) {
		struct od_region *o = &od->reg[i];
		struct gmm_region *r = spec->regions[i].r;
		o->r = r;
		o->off = spec->regions[i].off;
		if ((rc = gmm_snapshot_file_covers(od->fd, r, o->off)) < 0)
			goto fail;
		o->huge_copy = r->backing == GMM_BACKING_HUGETLB_2M ||
			       r->backing == GMM_BACKING_HUGETLB_1G;
		o->collapse = r->backing == GMM_BACKING_THP;
		o->block = o->huge_copy ? r->page_size : GMM_2M;
		o->first = od->nblocks;
		o->nblocks = (r->size + o->block - 1) / o->block;
		od->nblocks += o->nblocks;
		if (o->block > od->max_block)
			od->max_block = o->block;
	}
	od->state = calloc(od->nblocks ? od->nblocks : 1, 1);
	if (!od->state) {
		rc = gmm_seterr(ENOMEM, "out of memory");
		goto fail;
	}
	/* Which blocks hold data (the rest are B_HOLE: zeros). */
	for (unsigned i = 0; i < od->nregions; i++) {
		struct od_region *o = &od->reg[i];
		uint64_t pos = o->off, end = o->off + o->r->size;
		while (pos < end) {
			off_t d = lseek(od->fd, (off_t)pos, SEEK_DATA);
			if (d < 0 || (uint64_t)d >= end)
				break;
			uint64_t b = ((uint64_t)d - o->off) / o->block;
			if (od->state[o->first + b] != B_TODO) {
				od->state[o->first + b] = B_TODO;
				od->todo++;
			}
			pos = o->off + (b + 1) * o->block;
		}
	}
	od->st.blocks_total = od->todo;
	if ((rc = open_uffd()) < 0)
		goto fail;
	od->uffd = rc;
	rc = 0;
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	if (ioctl(od->uffd, UFFDIO_API, &api) < 0) {
		rc = gmm_seterr(errno, "UFFDIO_API: %s", strerror(errno));
		goto fail;
	}
	/* The mapped runs, registered (the writer mutex keeps the table still
	 * while they are read). */
	if ((rc = gmm_writer_lock(vm)) < 0) {
		gmm_seterr(-rc, "guestmm: the VM belongs to another process");
		goto fail;
	}
	for (unsigned i = 0; !rc && i < od->nregions; i++)
		rc = collect_runs(&od->reg[i]);
	gmm_writer_unlock(vm);
	if (rc < 0)
		goto fail;
	for (unsigned i = 0; i < od->nregions; i++) {
		struct od_region *o = &od->reg[i];
		for (size_t k = 0; k < o->nruns; k++) {
			struct uffdio_register reg = {
				.range = { .start = (uintptr_t)(o->r->hva + (o->runs[k].gpa - o->r->gpa)),
					   .len = o->runs[k].len },
				.mode = UFFDIO_REGISTER_MODE_MISSING,
			};
			if (ioctl(od->uffd, UFFDIO_REGISTER, &reg) < 0) {
				rc = gmm_seterr(errno, "UFFDIO_REGISTER of region %s at 0x%llx+0x%llx: %s",
						o->r->name, (unsigned long long)o->runs[k].gpa,
						(unsigned long long)o->runs[k].len, strerror(errno));
				goto fail;
			}
		}
	}
	if (od->todo == 0) {
		pthread_mutex_lock(&od->lock);
		unregister_all(od);
		pthread_mutex_unlock(&od->lock);
	}
	od->fill = !spec->no_fill_ahead && od->todo;
	if (pthread_create(&od->handler, NULL, handler_thread, od) != 0) {
		rc = gmm_seterr(EAGAIN, "cannot start the fault handler thread");
		goto fail;
	}
	od->handler_started = true;
	pthread_setname_np(od->handler, "_uffd");
	if (od->fill) {
		if (pthread_create(&od->filler, NULL, filler_thread, od) != 0) {
			rc = gmm_seterr(EAGAIN, "cannot start the fill-ahead thread");
			goto fail;
		}
		od->filler_started = true;
		pthread_setname_np(od->filler, "_fill");
	}
	*out = od;
	return 0;
fail:
	gmm_ondemand_stop(od);
	return rc;
}

int gmm_ondemand_wait(struct gmm_ondemand *od, unsigned timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&od->lock);
	int rc = 0;
	while ((od->todo || (od->fill && !od->collapse_pass_done)) && rc == 0)
		rc = pthread_cond_timedwait(&od->cond, &od->lock, &ts);
	bool done = od->todo == 0 && (!od->fill || od->collapse_pass_done);
	pthread_mutex_unlock(&od->lock);
	return done ? 0 : -ETIMEDOUT;
}

void gmm_ondemand_stats(struct gmm_ondemand *od, struct gmm_ondemand_stats *st)
{
	st->faults = STAT_LD(od, faults);
	st->blocks_fault = STAT_LD(od, blocks_fault);
	st->blocks_fill = STAT_LD(od, blocks_fill);
	st->blocks_total = od->st.blocks_total;
	st->zero_served = STAT_LD(od, zero_served);
	st->bytes_copied = STAT_LD(od, bytes_copied);
	st->first_fault_ns = STAT_LD(od, first_fault_ns);
	st->fault_ns_total = STAT_LD(od, fault_ns_total);
	st->fault_ns_max = STAT_LD(od, fault_ns_max);
	st->collapsed = STAT_LD(od, collapsed);
	st->collapse_failed = STAT_LD(od, collapse_failed);
	st->done = __atomic_load_n(&od->st.done, __ATOMIC_ACQUIRE);
}
