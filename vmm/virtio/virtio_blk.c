// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio_blk.c - virtio-blk (virtio 1.2, 5.2): a raw image file or block
 * device behind one request queue.
 *
 * Requests (5.2.6): a 16-byte header (type, reserved, sector) in the first
 * readable bytes of the chain, then the data buffers, then the status byte,
 * which is the LAST writable byte.  IN reads into the writable bytes before
 * the status byte, OUT writes the readable bytes after the header, FLUSH is
 * fdatasync, GET_ID writes the serial (20 bytes, NUL-padded).  Anything else
 * answers VIRTIO_BLK_S_UNSUPP.  A bad request (short header, a length that
 * is not a multiple of 512, a range beyond the capacity, a write to a
 * read-only disk, a data buffer that cannot be pinned) answers IOERR; a
 * chain with no writable byte at all cannot carry a status, so it is given
 * back with length 0.  A broken ring (vq_pop fails) puts the device into
 * NEEDS_RESET.
 *
 * One device thread, "_disk<index>", a guestmm walker:
 *
 *   loop: drain ctl_fd; reap finished I/O; drain kick_fd; pop chains
 *         (d->lock only around vq_pop/vq_arm), pin each request's data
 *         buffers and submit the I/O; push what finished (d->lock around
 *         the status byte, vq_push and virtio_queue_used); poll(kick_fd,
 *         ctl_fd, completion fd).
 *
 * Data buffers are pinned (gmm_pin) from submission until the I/O has
 * completed, so the I/O runs on host pointers (pin.hva) with no walk
 * section open and no lock held, while an unmap of those blocks waits for
 * the unpin (or fails with -EBUSY).  Pins are dropped before the request
 * is pushed.
 *
 * Engines:
 *   io_uring  one ring of VIRTQ_MAX_SIZE entries (the largest queue the
 *             driver may choose; at most that many requests are ever in
 *             flight); readv/writev/fsync(DATASYNC) SQEs submitted in a
 *             batch per loop; the ring signals an eventfd
 *             (io_uring_register_eventfd) that the thread polls.
 *   threads   four workers doing preadv/pwritev/fdatasync, handing finished
 *             requests back through a list and an eventfd.
 * io_uring falls back to threads (one warning per process) when the kernel
 * refuses the ring (seccomp, io_uring_disabled, old kernel).
 *
 * Reset: the driver's reset bumps d->generation under d->lock.  A request
 * remembers the generation it was popped under; when it finishes under a
 * newer one, it is unpinned and dropped without touching the status byte or
 * the rings.  Requests are slots of a fixed pool of VIRTQ_MAX_SIZE: a guest
 * that republishes heads still in flight, or resets in a loop, can at most
 * fill the pool, and the device stops popping until slots come back.
 *
 * Without VIRTIO_BLK_F_FLUSH negotiated the device is write-through (5.2.6.3):
 * each write is followed by an fdatasync before it completes.
 *
 * Stop (issue 13, finding 3): a request's data moves in chunks of at most
 * BLK_IO_CHUNK bytes, one system call or SQE each, so a guest that queues
 * 256 requests of ~4 GiB cannot make the stop wait for a terabyte.  Once
 * d->stop is set: the thread pops nothing more; no request starts another
 * chunk or its write-through fdatasync (it finishes with -ECANCELED, IOERR
 * to the driver, counted in cancelled_at_stop); jobs still queued for the
 * workers are cancelled before any I/O; io_uring gets
 * IORING_ASYNC_CANCEL_ANY (again every BLK_CANCEL_RETRY_MS while I/O is
 * left; on a kernel without it, one cancel per request) and the thread
 * waits for every CQE.  A request's pins are dropped only once its CQE
 * arrived or its worker returned from the system call, so nothing writes
 * into guest memory after the stop returns.  Bound: the chunks already
 * under way (one per request with io_uring, one per worker with threads,
 * 1 MiB each; a FLUSH's fdatasync already running) plus one poll round:
 * the host I/O the kernel cannot take back, and well under 100 ms beyond.
 */
#include "core/sandbox.h"
#include "core/state_json.h"
#include "virtio/virtio_devices.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <linux/fs.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* Feature bits (5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX   1
#define VIRTIO_BLK_F_SEG_MAX    2
#define VIRTIO_BLK_F_RO         5
#define VIRTIO_BLK_F_BLK_SIZE   6
#define VIRTIO_BLK_F_FLUSH      9

/* Request types and status values (5.2.6). */
#define VIRTIO_BLK_T_IN         0
#define VIRTIO_BLK_T_OUT        1
#define VIRTIO_BLK_T_FLUSH      4
#define VIRTIO_BLK_T_GET_ID     8
#define VIRTIO_BLK_S_OK         0
#define VIRTIO_BLK_S_IOERR      1
#define VIRTIO_BLK_S_UNSUPP     2
#define VIRTIO_BLK_ID_BYTES     20

#define BLK_SECTOR              512u
#define BLK_HDR_BYTES           16u

/* Config space (5.2.4), virtio 1.2 layout: byte offsets. */
#define CFG_CAPACITY            0    /* le64 */
#define CFG_SIZE_MAX            8    /* le32 */
#define CFG_SEG_MAX             12   /* le32 */
#define CFG_GEOMETRY            16   /* le16 cylinders, u8 heads, u8 sectors */
#define CFG_BLK_SIZE            20   /* le32 */
#define CFG_TOPOLOGY            24   /* u8, u8, le16, le32 */
#define CFG_WRITEBACK           32   /* u8, then u8 unused0 */
#define CFG_NUM_QUEUES          34   /* le16 */
/* 36..59: discard and write-zeroes limits, 60..71: secure erase (all 0,
 * their features not offered). */
#define BLK_CONFIG_SIZE         72

/* seg_max: data segments per request.  A chain holds at most
 * VIRTQ_MAX_CHAIN descriptors, two of which are the header and status. */
#define BLK_SEG_MAX             (VIRTQ_MAX_CHAIN - 2)
/* size_max (VIRTIO_BLK_F_SIZE_MAX is not offered: any segment is fine as
 * long as the chain's byte sums stay below 4 GiB, which vq_pop checks). */
#define BLK_SIZE_MAX            0xfffff000u
/* Host pieces of one request's data: segments, split further where a
 * segment crosses from one RAM region to the next.  preadv's limit. */
#define BLK_MAX_IOV             1024u
#define BLK_POOL_THREADS        4
/* Bytes of one request moved by one system call / SQE (see the top). */
#define BLK_IO_CHUNK            (1u << 20)
/* While stopping with io_uring I/O left: poll timeout, and the cancel is
 * sent again (for SQEs that reached the kernel after the last one). */
#define BLK_CANCEL_RETRY_MS     50

enum blk_op { OP_READ, OP_WRITE, OP_FLUSH };
enum blk_phase { PHASE_DATA, PHASE_SYNC };

/*
 * One request slot.  Owned by the device thread, except between
 * pool_submit() and the worker handing it back (threads engine), or between
 * its SQE's submission and its CQE (io_uring): then only the I/O touches
 * it, and the hand-back (pool mutex / CQ ring acquire) orders the I/O's
 * writes before the device thread reads the slot again.
 */
struct blk_req {
	struct blk_req *next;          /* free list, pool queue, done list */
	uint64_t generation;           /* d->generation when popped */
	uint16_t head;
	uint8_t op, phase;
	uint8_t status;                /* VIRTIO_BLK_S_* */
	bool has_status;               /* the chain has a writable byte */
	bool writethrough;             /* OUT: fdatasync before completing */
	uint64_t status_gpa;           /* the chain's last writable byte */
	uint32_t written;              /* used length to report */
	uint64_t offset;               /* file offset of the data */
	uint64_t bytes, done;          /* data bytes, and transferred so far */
	int err;                       /* -errno of a failed I/O, 0 if fine */
	unsigned niov, iov_first, cap;
	struct iovec *iov;             /* iov[i] = pins[i].hva, advanced by done */
	struct gmm_pin *pins;
	/* The chunk in flight: iov[cut_idx] shortened by cut_rest bytes
	 * (chunk_begin/chunk_end), while cut. */
	bool cut;
	unsigned cut_idx;
	size_t cut_rest;
	bool in_ring;                  /* io_uring: an SQE of it is queued or in flight */
};

struct blk_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct blk_req *head, *tail;   /* jobs, FIFO */
	struct blk_req *done;          /* finished, handed back */
	bool quit;
	unsigned nthreads;
	pthread_t th[BLK_POOL_THREADS];
};

struct blk_dev {
	struct virtio_dev d;           /* first: container_of by cast */
	unsigned index;
	int fd;
	bool readonly;
	uint64_t capacity;             /* sectors */
	char *path;
	uint8_t serial[VIRTIO_BLK_ID_BYTES];
	uint8_t config[BLK_CONFIG_SIZE];
	enum blk_engine want_engine, engine;

	/* Device thread (running between start and stop). */
	bool running;
	pthread_t thread;
	sem_t started;
	int start_err;
	struct gmm_walker *w;
	int cfd;                       /* completion eventfd, -1 when stopped */
	bool ring_ok;
	struct io_uring ring;
	struct blk_pool pool;
	bool pool_ok;
	struct blk_req reqs[VIRTQ_MAX_SIZE];
	struct blk_req *free;          /* free slots */
	struct blk_req *done, *done_tail;   /* finished, to push */
	unsigned slots_used, io_inflight;
	struct vq_chain chain;         /* the chain being handled */
	struct ratelimit rl;           /* device thread's own messages */
	bool cancel_any_failed;        /* the kernel refused IORING_ASYNC_CANCEL_ANY */

	/* Counters: written by the device thread, read by anyone. */
	_Atomic uint64_t n_read, n_write, n_flush, n_get_id, n_unsupp, n_malformed;
	_Atomic uint64_t bytes_read, bytes_written;
	_Atomic uint64_t n_ioerr, n_pin_failed, n_dropped, n_status_faults;
	_Atomic uint64_t inflight_max, n_inflight, n_cancelled;
	_Atomic int engine_used;       /* enum blk_engine, for counters */
};

/*
 * Test hook: when set, a threads-engine worker calls it with the request's
 * operation (enum blk_op: 0 read, 1 write, 2 flush) right before the
 * request's first system call, data buffers pinned (a stop set meanwhile
 * lets that first chunk run: it counts as under way).  Lets a unit test
 * hold an I/O in flight deterministically.  Never set by the VMM.
 */
void (*_Atomic virtio_blk_test_io_hook)(int op);

static inline struct blk_dev *to_blk(struct virtio_dev *d)
{
	return (struct blk_dev *)d;
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static void counter_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

const char *blk_engine_name(enum blk_engine e)
{
	switch (e) {
	case BLK_ENGINE_IO_URING:
		return "io_uring";
	case BLK_ENGINE_THREADS:
		return "threads";
	}
	return "?";
}

int blk_engine_parse(const char *s, enum blk_engine *out)
{
	if (!s)
		return -1;
	if (!strcmp(s, "io_uring") || !strcmp(s, "io-uring")) {
		*out = BLK_ENGINE_IO_URING;
		return 0;
	}
	if (!strcmp(s, "threads")) {
		*out = BLK_ENGINE_THREADS;
		return 0;
	}
	return -1;
}

/* ---- iovec bookkeeping ---------------------------------------------- */

/* Skip n transferred bytes of the request's iovec (device thread or the
 * worker that owns the request). */
static void iov_advance(struct blk_req *r, uint64_t n)
{
	while (n && r->iov_first < r->niov) {
		struct iovec *v = &r->iov[r->iov_first];
		if (n < v->iov_len) {
			v->iov_base = (uint8_t *)v->iov_base + n;
			v->iov_len -= n;
			return;
		}
		n -= v->iov_len;
		r->iov_first++;
	}
}

/*
 * Limit what is left of the request's iovec to BLK_IO_CHUNK bytes for one
 * system call or SQE: the entry that crosses the limit is shortened (and
 * put back by chunk_end() once that I/O is over, before iov_advance()).
 * Returns the number of entries from iov_first.  Thread owning r.
 */
static int chunk_begin(struct blk_req *r)
{
	uint64_t left = BLK_IO_CHUNK;
	unsigned i = r->iov_first;
	while (i < r->niov && left) {
		struct iovec *v = &r->iov[i++];
		if (v->iov_len > left) {
			r->cut = true;
			r->cut_idx = i - 1;
			r->cut_rest = v->iov_len - (size_t)left;
			v->iov_len = (size_t)left;
			break;
		}
		left -= v->iov_len;
	}
	return (int)(i - r->iov_first);
}

static void chunk_end(struct blk_req *r)
{
	if (r->cut) {
		r->iov[r->cut_idx].iov_len += r->cut_rest;
		r->cut = false;
	}
}

/* The device is stopping (any thread; acquire pairs with
 * virtio_dev_join()'s release store). */
static bool blk_stopping(const struct blk_dev *b)
{
	return atomic_load_explicit(&b->d.stop, memory_order_acquire);
}

static int req_grow(struct blk_req *r)
{
	if (r->cap >= BLK_MAX_IOV)
		return -E2BIG;
	unsigned cap = r->cap ? r->cap * 2 : 16;
	if (cap > BLK_MAX_IOV)
		cap = BLK_MAX_IOV;
	struct iovec *iov = realloc(r->iov, cap * sizeof(*iov));
	if (!iov)
		return -ENOMEM;
	r->iov = iov;
	struct gmm_pin *pins = realloc(r->pins, cap * sizeof(*pins));
	if (!pins)
		return -ENOMEM;
	r->pins = pins;
	r->cap = cap;
	return 0;
}

/*
 * Pin [gpa, gpa + len) and append it to the request's iovec.  A range that
 * crosses from one region into the next (-ERANGE) is pinned in host-
 * contiguous pieces.  Device thread; walker-side (gmm_pin opens its own
 * walk sections), no lock needed.  0 or -errno (what is pinned so far
 * stays in r->pins: the caller unpins).
 */
static int pin_range(struct blk_dev *b, struct blk_req *r, uint64_t gpa, uint64_t len,
		     unsigned access)
{
	while (len) {
		if (r->niov == r->cap) {
			int rc = req_grow(r);
			if (rc)
				return rc;
		}
		struct gmm_pin *p = &r->pins[r->niov];
		size_t n = (size_t)len;
		int rc = gmm_pin(b->w, gpa, n, access, p);
		if (rc == -ERANGE) {
			size_t span = 0;
			gmm_walk_begin(b->w);
			void *h = gmm_translate_span(b->w, gpa, n, access, &span);
			gmm_walk_end(b->w);
			if (!h || span == 0 || span >= n)
				return -ERANGE;
			n = span;
			rc = gmm_pin(b->w, gpa, n, access, p);
		}
		if (rc)
			return rc;
		r->iov[r->niov] = (struct iovec){ .iov_base = p->hva, .iov_len = n };
		r->niov++;
		gpa += n;
		len -= n;
	}
	return 0;
}

/* Pin the bytes [skip, skip + len) of segments seg[from, to) of c (as one
 * array).  Device thread. */
static int pin_data(struct blk_dev *b, struct blk_req *r, const struct vq_chain *c,
		    unsigned from, unsigned to, uint64_t skip, uint64_t len, unsigned access)
{
	for (unsigned i = from; i < to && len; i++) {
		uint64_t gpa = c->seg[i].gpa, n = c->seg[i].len;
		if (skip >= n) {
			skip -= n;
			continue;
		}
		gpa += skip;
		n -= skip;
		skip = 0;
		if (n > len)
			n = len;
		int rc = pin_range(b, r, gpa, n, access);
		if (rc)
			return rc;
		len -= n;
	}
	return len ? -ERANGE : 0;
}

/* Drop the request's pins (any thread; here the device thread, after the
 * I/O completed: gmm_unpin's release orders the I/O's accesses before an
 * unmap that waits for the pin). */
static void unpin_all(struct blk_dev *b, struct blk_req *r)
{
	for (unsigned i = 0; i < r->niov; i++)
		gmm_unpin(b->d.mem, &r->pins[i]);
	r->niov = 0;
	r->iov_first = 0;
}

/* ---- completion ------------------------------------------------------- */

/* The request is finished (status and written set): queue it for
 * flush_done().  Device thread. */
static void req_done(struct blk_dev *b, struct blk_req *r)
{
	if (r->has_status && r->status == VIRTIO_BLK_S_IOERR)
		counter_add(&b->n_ioerr, 1);
	r->next = NULL;
	if (b->done_tail)
		b->done_tail->next = r;
	else
		b->done = r;
	b->done_tail = r;
}

static void req_finish(struct blk_dev *b, struct blk_req *r, uint8_t status, uint32_t written)
{
	r->status = status;
	r->written = written;
	req_done(b, r);
}

/* An asynchronous I/O is over (r->err says how): account and queue it.
 * Device thread. */
static void io_finish(struct blk_dev *b, struct blk_req *r)
{
	b->io_inflight--;
	atomic_store_explicit(&b->n_inflight, b->io_inflight, memory_order_relaxed);
	chunk_end(r);
	if (r->err == -ECANCELED) {
		counter_add(&b->n_cancelled, 1);
		req_finish(b, r, VIRTIO_BLK_S_IOERR, 1);
		return;
	}
	if (r->err) {
		log_ratelimited(&b->rl, LOG_WARN, "%s: %s of %llu bytes at sector %llu failed: %s",
				b->d.name, r->op == OP_READ ? "read" : r->op == OP_WRITE ? "write" : "flush",
				(unsigned long long)r->bytes, (unsigned long long)(r->offset / BLK_SECTOR),
				strerror(-r->err));
		req_finish(b, r, VIRTIO_BLK_S_IOERR, 1);
		return;
	}
	if (r->op == OP_READ) {
		counter_add(&b->bytes_read, r->bytes);
		req_finish(b, r, VIRTIO_BLK_S_OK, (uint32_t)r->bytes + 1);
	} else {
		if (r->op == OP_WRITE)
			counter_add(&b->bytes_written, r->bytes);
		req_finish(b, r, VIRTIO_BLK_S_OK, 1);
	}
}

/*
 * Give finished requests back to the driver.  Device thread.  Pins are
 * dropped first, without the lock.  Then, under d->lock: a request from an
 * older generation (a reset happened while it was in flight), or any
 * request while the device is not live, is dropped without touching guest
 * memory; the others get their status byte (gmm_write, a walk of its own)
 * and a used element (vq_push publishes with release ordering, after the
 * status byte and the I/O's data, which the completion hand-back ordered
 * before us).  One virtio_queue_used() for the batch decides on the
 * interrupt.  A used ring that does not translate -> NEEDS_RESET.
 */
static void flush_done(struct blk_dev *b)
{
	struct virtio_dev *d = &b->d;
	struct blk_req *list = b->done;
	if (!list)
		return;
	b->done = b->done_tail = NULL;
	for (struct blk_req *r = list; r; r = r->next)
		unpin_all(b, r);

	char why[128];
	struct virtqueue *q = &d->vq[0];
	bool pushed = false;
	pthread_mutex_lock(&d->lock);
	bool ok = virtio_dev_live(d) && q->ready;
	for (struct blk_req *r = list; r; r = r->next) {
		if (!ok || r->generation != d->generation) {
			counter_add(&b->n_dropped, 1);
			continue;
		}
		uint32_t written = r->written;
		if (r->has_status && gmm_write(b->w, r->status_gpa, &r->status, 1) != 0) {
			/* The status byte went away (unplugged, ballooned)
			 * while the I/O ran: nothing to report it in. */
			counter_add(&b->n_status_faults, 1);
			written = 0;
		}
		if (vq_push(q, b->w, r->head, written, why, sizeof(why)) != 0) {
			virtio_dev_fail(d, "request queue: %s", why);
			ok = false;
			continue;
		}
		pushed = true;
	}
	if (pushed && virtio_dev_live(d))
		virtio_queue_used(d, q, b->w);
	pthread_mutex_unlock(&d->lock);

	while (list) {
		struct blk_req *r = list;
		list = r->next;
		r->next = b->free;
		b->free = r;
		b->slots_used--;
	}
}

/* ---- io_uring engine -------------------------------------------------- */

/* Queue the request's next SQE (data or sync phase); submitted in a batch
 * by uring_submit().  Device thread (the only user of the ring). */
static void uring_prep(struct blk_dev *b, struct blk_req *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
	if (!sqe) {
		io_uring_submit(&b->ring);
		sqe = io_uring_get_sqe(&b->ring);
	}
	if (!sqe) {
		r->err = -EBUSY;
		io_finish(b, r);
		return;
	}
	if (r->phase == PHASE_SYNC) {
		io_uring_prep_fsync(sqe, b->fd, IORING_FSYNC_DATASYNC);
	} else {
		/* One chunk; io_progress() restores the iovec (chunk_end). */
		int cnt = chunk_begin(r);
		if (r->op == OP_READ)
			io_uring_prep_readv(sqe, b->fd, r->iov + r->iov_first, (unsigned)cnt,
					    r->offset + r->done);
		else
			io_uring_prep_writev(sqe, b->fd, r->iov + r->iov_first, (unsigned)cnt,
					     r->offset + r->done);
	}
	io_uring_sqe_set_data(sqe, r);
	r->in_ring = true;
}

/*
 * Stopping with I/O in flight: ask the kernel to cancel all of it (what
 * has not started completes with -ECANCELED; what runs finishes its chunk
 * or is interrupted).  The cancel's own CQE carries user_data 0.  A kernel
 * without IORING_ASYNC_CANCEL_ANY (before 5.19) answers -EINVAL: from then
 * on one cancel per request.  Device thread.
 */
static void uring_cancel_all(struct blk_dev *b)
{
	if (!b->cancel_any_failed) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
		if (sqe) {
			io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
			io_uring_sqe_set_data64(sqe, 0);
		}
		return;
	}
	for (unsigned i = 0; i < VIRTQ_MAX_SIZE; i++) {
		if (!b->reqs[i].in_ring)
			continue;
		struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
		if (!sqe)
			break;   /* the rest next round */
		io_uring_prep_cancel(sqe, &b->reqs[i], 0);
		io_uring_sqe_set_data64(sqe, 0);
	}
}

static void uring_submit(struct blk_dev *b)
{
	if (io_uring_sq_ready(&b->ring) == 0)
		return;
	int rc = io_uring_submit(&b->ring);
	if (rc < 0 && rc != -EAGAIN && rc != -EBUSY && rc != -EINTR)
		log_ratelimited(&b->rl, LOG_WARN, "%s: io_uring_submit: %s", b->d.name, strerror(-rc));
	/* Whatever stayed in the SQ is retried on the next loop (the
	 * thread polls with a short timeout while some is left). */
}

/* One CQE of r: account progress, queue the next phase or finish. */
static void io_progress(struct blk_dev *b, struct blk_req *r, int res)
{
	chunk_end(r);
	if (res == -EAGAIN || res == -EINTR) {
		if (blk_stopping(b)) {
			r->err = -ECANCELED;
			io_finish(b, r);
			return;
		}
		uring_prep(b, r);
		return;
	}
	if (res < 0) {
		r->err = res;
		io_finish(b, r);
		return;
	}
	if (r->phase == PHASE_DATA) {
		if (res == 0) {
			r->err = -EIO;    /* end of file: the image shrank */
			io_finish(b, r);
			return;
		}
		r->done += (uint64_t)res;
		iov_advance(r, (uint64_t)res);
		if (r->done < r->bytes || r->writethrough) {
			/* Another chunk (or the write-through sync), unless
			 * the device is stopping. */
			if (blk_stopping(b)) {
				r->err = -ECANCELED;
				io_finish(b, r);
				return;
			}
			if (r->done == r->bytes)
				r->phase = PHASE_SYNC;
			uring_prep(b, r);
			return;
		}
	}
	io_finish(b, r);
}

/* Reap every CQE.  The eventfd was drained by the caller first, so a CQE
 * posted after this loop signals it again.  Device thread. */
static void uring_reap(struct blk_dev *b)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	io_uring_for_each_cqe(&b->ring, head, cqe) {
		struct blk_req *r = io_uring_cqe_get_data(cqe);
		n++;
		if (!r) {
			/* A cancel's own completion. */
			if (cqe->res == -EINVAL)
				b->cancel_any_failed = true;
			continue;
		}
		r->in_ring = false;
		io_progress(b, r, cqe->res);
	}
	io_uring_cq_advance(&b->ring, n);
}

/* ---- thread-pool engine ----------------------------------------------- */

/*
 * The I/O of one request, on a worker: no lock held, no walk open; the
 * buffers are pinned.  A chunk (BLK_IO_CHUNK) per system call; d->stop is
 * looked at before the first and between chunks, and before the
 * write-through sync: a stopping device cancels (-ECANCELED) what has not
 * started.  Sets r->err.
 */
static void pool_do(struct blk_dev *b, struct blk_req *r)
{
	if (blk_stopping(b)) {
		r->err = -ECANCELED;
		return;
	}
	void (*hook)(int) = atomic_load_explicit(&virtio_blk_test_io_hook, memory_order_acquire);
	if (hook)
		hook(r->op);
	int err = 0;
	if (r->phase == PHASE_DATA) {
		while (r->done < r->bytes) {
			int cnt = chunk_begin(r);
			off_t off = (off_t)(r->offset + r->done);
			ssize_t n = r->op == OP_READ ? preadv(b->fd, r->iov + r->iov_first, cnt, off)
						     : pwritev(b->fd, r->iov + r->iov_first, cnt, off);
			int e = errno;
			chunk_end(r);
			if (n < 0 && e != EINTR && e != EAGAIN) {
				err = -e;
				break;
			}
			if (n == 0) {
				err = -EIO;
				break;
			}
			if (n > 0) {
				r->done += (uint64_t)n;
				iov_advance(r, (uint64_t)n);
			}
			if (r->done < r->bytes && blk_stopping(b)) {
				err = -ECANCELED;
				break;
			}
		}
		if (!err && r->writethrough)
			r->phase = PHASE_SYNC;
	}
	if (!err && r->phase == PHASE_SYNC) {
		/* A FLUSH that reached a worker is done; a write's own sync
		 * is skipped when stopping (the driver gets IOERR). */
		if (r->op == OP_WRITE && blk_stopping(b))
			err = -ECANCELED;
		else if (fdatasync(b->fd) != 0)
			err = -errno;
	}
	r->err = err;
}

static void *pool_worker(void *arg)
{
	struct blk_dev *b = arg;
	struct blk_pool *p = &b->pool;
	char name[16];
	snprintf(name, sizeof(name), "_disk%u-io", b->index);
	pthread_setname_np(pthread_self(), name);
	sandbox_enter(SANDBOX_IO_WORKER);

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->head && !p->quit)
			pthread_cond_wait(&p->cond, &p->lock);
		if (!p->head)
			break;
		struct blk_req *r = p->head;
		p->head = r->next;
		if (!p->head)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);

		pool_do(b, r);

		/* Hand back: the mutex orders the I/O's writes (and r's
		 * fields) before the device thread takes the list. */
		pthread_mutex_lock(&p->lock);
		r->next = p->done;
		p->done = r;
		pthread_mutex_unlock(&p->lock);
		eventfd_write(b->cfd, 1);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void pool_submit(struct blk_dev *b, struct blk_req *r)
{
	struct blk_pool *p = &b->pool;
	r->next = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->tail)
		p->tail->next = r;
	else
		p->head = r;
	p->tail = r;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* Take what the workers finished.  Device thread, after draining cfd. */
static void pool_reap(struct blk_dev *b)
{
	struct blk_pool *p = &b->pool;
	pthread_mutex_lock(&p->lock);
	struct blk_req *list = p->done;
	p->done = NULL;
	pthread_mutex_unlock(&p->lock);
	/* The list is LIFO: reverse it so completions keep their order. */
	struct blk_req *rev = NULL;
	while (list) {
		struct blk_req *r = list;
		list = r->next;
		r->next = rev;
		rev = r;
	}
	while (rev) {
		struct blk_req *r = rev;
		rev = r->next;
		io_finish(b, r);
	}
}

static int pool_start(struct blk_dev *b)
{
	struct blk_pool *p = &b->pool;
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	for (unsigned i = 0; i < BLK_POOL_THREADS; i++) {
		int rc = pthread_create(&p->th[i], NULL, pool_worker, b);
		if (rc) {
			log_msg(LOG_ERROR, "%s: cannot start an I/O thread: %s", b->d.name, strerror(rc));
			break;
		}
		p->nthreads++;
	}
	if (p->nthreads == 0) {
		pthread_cond_destroy(&p->cond);
		pthread_mutex_destroy(&p->lock);
		return -1;
	}
	return 0;
}

/* Every job is done (the device thread waited for in-flight I/O). */
static void pool_stop(struct blk_dev *b)
{
	struct blk_pool *p = &b->pool;
	pthread_mutex_lock(&p->lock);
	p->quit = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->th[i], NULL);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
}

/* ---- requests --------------------------------------------------------- */

static void io_submit_req(struct blk_dev *b, struct blk_req *r)
{
	b->io_inflight++;
	atomic_store_explicit(&b->n_inflight, b->io_inflight, memory_order_relaxed);
	if (b->io_inflight > atomic_load_explicit(&b->inflight_max, memory_order_relaxed))
		atomic_store_explicit(&b->inflight_max, b->io_inflight, memory_order_relaxed);
	if (b->engine == BLK_ENGINE_IO_URING)
		uring_prep(b, r);
	else
		pool_submit(b, r);
}

/* Check [sector, sector + bytes) against the capacity (no overflow). */
static bool range_ok(const struct blk_dev *b, uint64_t sector, uint64_t bytes)
{
	if (bytes % BLK_SECTOR)
		return false;
	return sector <= b->capacity && bytes / BLK_SECTOR <= b->capacity - sector;
}

/*
 * Handle one popped chain in a free slot (device thread, no lock held):
 * parse, validate, pin, submit -- or finish at once.
 */
static void handle_chain(struct blk_dev *b, const struct vq_chain *c, uint64_t gen,
			 bool writethrough)
{
	struct virtio_dev *d = &b->d;
	struct blk_req *r = b->free;
	b->free = r->next;
	b->slots_used++;
	r->next = NULL;
	r->generation = gen;
	r->head = c->head;
	r->phase = PHASE_DATA;
	r->err = 0;
	r->done = r->bytes = r->offset = 0;
	r->niov = r->iov_first = 0;
	r->writethrough = false;

	/* The status byte: the last writable byte (vq_pop skips zero-length
	 * descriptors, so the last writable segment has one). */
	const struct vq_seg *last = c->nin ? &c->seg[c->nseg - 1] : NULL;
	if (!last || !last->len) {
		log_ratelimited(&b->rl, LOG_WARN, "%s: request %u has no writable status byte",
				d->name, c->head);
		counter_add(&b->n_malformed, 1);
		r->has_status = false;
		req_finish(b, r, VIRTIO_BLK_S_IOERR, 0);
		return;
	}
	r->has_status = true;
	r->status_gpa = last->gpa + last->len - 1;

	uint8_t hdr[BLK_HDR_BYTES];
	if (c->out_bytes < BLK_HDR_BYTES || vq_chain_read(b->w, c, 0, hdr, sizeof(hdr)) != 0) {
		log_ratelimited(&b->rl, LOG_WARN, "%s: request %u: %s", d->name, c->head,
				c->out_bytes < BLK_HDR_BYTES ? "header shorter than 16 bytes"
							   : "header not in guest RAM");
		counter_add(&b->n_malformed, 1);
		req_finish(b, r, VIRTIO_BLK_S_IOERR, 1);
		return;
	}
	uint32_t type = get_le32(hdr);
	uint64_t sector = get_le64(hdr + 8);
	uint64_t in_data = c->in_bytes - 1;   /* writable bytes before the status */
	unsigned access;
	int rc;

	switch (type) {
	case VIRTIO_BLK_T_IN:
		counter_add(&b->n_read, 1);
		r->op = OP_READ;
		r->bytes = in_data;
		access = GMM_ACCESS_WRITE;
		break;
	case VIRTIO_BLK_T_OUT:
		counter_add(&b->n_write, 1);
		r->op = OP_WRITE;
		r->bytes = c->out_bytes - BLK_HDR_BYTES;
		access = GMM_ACCESS_READ;
		if (b->readonly) {
			log_ratelimited(&b->rl, LOG_WARN, "%s: write to a read-only disk refused",
					d->name);
			req_finish(b, r, VIRTIO_BLK_S_IOERR, 1);
			return;
		}
		r->writethrough = writethrough;
		break;
	case VIRTIO_BLK_T_FLUSH:
		counter_add(&b->n_flush, 1);
		r->op = OP_FLUSH;
		r->phase = PHASE_SYNC;
		io_submit_req(b, r);
		return;
	case VIRTIO_BLK_T_GET_ID: {
		counter_add(&b->n_get_id, 1);
		size_t n = in_data < VIRTIO_BLK_ID_BYTES ? (size_t)in_data : VIRTIO_BLK_ID_BYTES;
		if (n && vq_chain_write(b->w, c, 0, b->serial, n) != 0) {
			req_finish(b, r, VIRTIO_BLK_S_IOERR, 1);
			return;
		}
		req_finish(b, r, VIRTIO_BLK_S_OK, (uint32_t)n + 1);
		return;
	}
	default:
		counter_add(&b->n_unsupp, 1);
		log_ratelimited(&b->rl, LOG_DEBUG, "%s: unsupported request type %u", d->name, type);
		req_finish(b, r, VIRTIO_BLK_S_UNSUPP, 1);
		return;
	}

	if (!range_ok(b, sector, r->bytes)) {
		log_ratelimited(&b->rl, LOG_WARN,
				"%s: %s of %llu bytes at sector %llu: beyond the capacity (%llu sectors) or not whole sectors",
				d->name, r->op == OP_READ ? "read" : "write",
				(unsigned long long)r->bytes, (unsigned long long)sector,
				(unsigned long long)b->capacity);
		req_finish(b, r, VIRTIO_BLK_S_IOERR, 1);
		return;
	}
	r->offset = sector * BLK_SECTOR;
	if (r->bytes == 0) {
		req_finish(b, r, VIRTIO_BLK_S_OK, 1);
		return;
	}
	if (r->op == OP_READ)
		rc = pin_data(b, r, c, c->nout, c->nseg, 0, r->bytes, access);
	else
		rc = pin_data(b, r, c, 0, c->nout, BLK_HDR_BYTES, r->bytes, access);
	if (rc) {
		counter_add(&b->n_pin_failed, 1);
		log_ratelimited(&b->rl, LOG_WARN, "%s: request %u: data buffer not usable: %s",
				d->name, c->head, strerror(-rc));
		unpin_all(b, r);
		req_finish(b, r, VIRTIO_BLK_S_IOERR, 1);
		return;
	}
	io_submit_req(b, r);
}

/*
 * Pop and handle every available chain, then arm the event index.
 * Device thread.  d->lock is held only around vq_pop/vq_arm (walks, no
 * blocking); the request is handled without it.  With no free slot left
 * the queue is not armed: a completion wakes the thread, which pops again.
 */
static void process_queue(struct blk_dev *b)
{
	struct virtio_dev *d = &b->d;
	struct virtqueue *q = &d->vq[0];
	char why[128];

	while (!blk_stopping(b) && !virtio_dev_quiescing(d)) {
		if (!b->free) {
			flush_done(b);   /* requests finished at once free slots */
			if (!b->free)
				return;
		}
		pthread_mutex_lock(&d->lock);
		if (!virtio_dev_live(d) || !q->ready) {
			pthread_mutex_unlock(&d->lock);
			return;
		}
		uint64_t gen = d->generation;
		bool writethrough = !virtio_has_feature(d, VIRTIO_BLK_F_FLUSH);
		int rc = vq_pop(q, b->w, &b->chain, why, sizeof(why));
		if (rc == 0) {
			rc = vq_arm(q, b->w, why, sizeof(why));
			if (rc < 0) {
				virtio_dev_fail(d, "request queue: %s", why);
				pthread_mutex_unlock(&d->lock);
				return;
			}
			pthread_mutex_unlock(&d->lock);
			if (rc == 1)
				continue;    /* the driver added more meanwhile */
			return;
		}
		if (rc < 0) {
			virtio_dev_fail(d, "request queue: %s", why);
			pthread_mutex_unlock(&d->lock);
			return;
		}
		pthread_mutex_unlock(&d->lock);
		handle_chain(b, &b->chain, gen, writethrough);
	}
}

static void engine_reap(struct blk_dev *b)
{
	virtio_eventfd_drain(b->cfd);
	if (b->engine == BLK_ENGINE_IO_URING)
		uring_reap(b);
	else
		pool_reap(b);
}

/* The device thread.  Exits once d->stop is set and nothing is in flight
 * (the stop path: see the top of the file). */
static void *blk_thread(void *arg)
{
	struct blk_dev *b = arg;
	struct virtio_dev *d = &b->d;
	char name[16];
	snprintf(name, sizeof(name), "_disk%u", b->index);
	pthread_setname_np(pthread_self(), name);
	b->w = gmm_walker_register(d->mem);
	b->start_err = b->w ? 0 : errno;
	sem_post(&b->started);
	if (!b->w)
		return NULL;
	sandbox_enter(SANDBOX_DEVICE);

	bool cancel_sent = false;
	struct pollfd pfd[3] = {
		{ .fd = d->kick_fd[0], .events = POLLIN },
		{ .fd = d->ctl_fd, .events = POLLIN },
		{ .fd = b->cfd, .events = POLLIN },
	};
	for (;;) {
		/* Drain before looking: a wake after the drain stays
		 * pending and ends the poll below at once. */
		virtio_eventfd_drain(d->ctl_fd);
		bool stopping = atomic_load_explicit(&d->stop, memory_order_acquire);
		bool quiescing = virtio_dev_quiescing(d);
		engine_reap(b);
		if (!stopping && !quiescing) {
			virtio_eventfd_drain(d->kick_fd[0]);
			process_queue(b);
		}
		/* Stopping with io_uring I/O left: cancel it, and again after
		 * every quiet BLK_CANCEL_RETRY_MS. */
		bool cancelling = stopping && b->engine == BLK_ENGINE_IO_URING && b->io_inflight;
		if (cancelling && !cancel_sent) {
			uring_cancel_all(b);
			cancel_sent = true;
		}
		if (b->engine == BLK_ENGINE_IO_URING)
			uring_submit(b);
		flush_done(b);
		if (stopping && b->slots_used == 0)
			break;
		/* Quiesce: every request popped is finished and pushed (its
		 * I/O completes: nothing is cancelled), nothing else popped. */
		if (quiescing && b->slots_used == 0)
			virtio_dev_set_quiet(d);
		int timeout = -1;
		if (b->engine == BLK_ENGINE_IO_URING && io_uring_sq_ready(&b->ring))
			timeout = 1;     /* the kernel refused part of a submit */
		else if (cancelling)
			timeout = BLK_CANCEL_RETRY_MS;
		/* While stopping or quiesced, kicks are not drained, so not
		 * polled either (they would spin); completions are.  Resume
		 * wakes us through ctl_fd and process_queue looks at the ring. */
		pfd[0].fd = stopping || quiescing ? -1 : d->kick_fd[0];
		int n = poll(pfd, 3, timeout);
		if (n < 0 && errno != EINTR) {
			log_ratelimited(&b->rl, LOG_ERROR, "%s: poll: %s", d->name, strerror(errno));
			usleep(1000);
		}
		if (n == 0 && cancelling)
			cancel_sent = false;
	}
	gmm_walker_unregister(b->w);
	b->w = NULL;
	return NULL;
}

/* ---- device operations ------------------------------------------------ */

/* d->lock held (vCPU thread): a copy of the constant config space. */
static void blk_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, unsigned len)
{
	memcpy(data, to_blk(d)->config + off, len);
}

/* d->lock held.  Every field is read-only (writeback needs CONFIG_WCE,
 * not offered). */
static void blk_config_write(struct virtio_dev *d, uint32_t off, const uint8_t *data,
			     unsigned len)
{
	(void)data;
	log_ratelimited(&d->rl, LOG_DEBUG, "%s: config write of %u bytes at %u ignored", d->name,
			len, off);
}

/* d->lock held, generation already bumped: in-flight requests are dropped
 * by generation when they finish; nothing else to forget.  Wake the thread
 * so that finished requests are flushed (and dropped) promptly. */
static void blk_reset(struct virtio_dev *d)
{
	virtio_dev_wake(d);
}

static void engine_stop(struct blk_dev *b)
{
	if (b->ring_ok) {
		io_uring_queue_exit(&b->ring);
		b->ring_ok = false;
	}
	if (b->pool_ok) {
		pool_stop(b);
		b->pool_ok = false;
	}
	if (b->cfd >= 0) {
		close(b->cfd);
		b->cfd = -1;
	}
}

/* Main thread: the completion eventfd, the engine, then the thread. */
static int blk_start(struct virtio_dev *d)
{
	static atomic_bool warned;
	struct blk_dev *b = to_blk(d);
	if (b->running)
		return 0;
	b->cfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b->cfd < 0) {
		log_msg(LOG_ERROR, "%s: eventfd: %s", d->name, strerror(errno));
		return -1;
	}
	b->engine = b->want_engine;
	if (b->engine == BLK_ENGINE_IO_URING) {
		int rc = io_uring_queue_init(VIRTQ_MAX_SIZE, &b->ring, 0);
		if (rc == 0) {
			b->ring_ok = true;
			rc = io_uring_register_eventfd(&b->ring, b->cfd);
			if (rc) {
				io_uring_queue_exit(&b->ring);
				b->ring_ok = false;
			}
		}
		if (rc) {
			if (!atomic_exchange(&warned, true))
				log_msg(LOG_WARN, "%s: io_uring unavailable (%s); using the threads engine",
					d->name, strerror(-rc));
			b->engine = BLK_ENGINE_THREADS;
		}
	}
	if (b->engine == BLK_ENGINE_THREADS) {
		if (pool_start(b)) {
			engine_stop(b);
			return -1;
		}
		b->pool_ok = true;
	}

	atomic_store_explicit(&b->engine_used, (int)b->engine, memory_order_relaxed);
	b->free = NULL;
	for (int i = VIRTQ_MAX_SIZE - 1; i >= 0; i--) {
		b->reqs[i].next = b->free;
		b->free = &b->reqs[i];
	}
	b->done = b->done_tail = NULL;
	b->slots_used = b->io_inflight = 0;
	atomic_store(&d->stop, false);
	sem_init(&b->started, 0, 0);
	int rc = pthread_create(&b->thread, NULL, blk_thread, b);
	if (rc) {
		log_msg(LOG_ERROR, "%s: cannot start its thread: %s", d->name, strerror(rc));
		sem_destroy(&b->started);
		engine_stop(b);
		return -1;
	}
	while (sem_wait(&b->started) != 0 && errno == EINTR)
		;
	sem_destroy(&b->started);
	if (b->start_err) {
		log_msg(LOG_ERROR, "%s: cannot register its thread with guestmm: %s", d->name,
			strerror(b->start_err));
		pthread_join(b->thread, NULL);
		engine_stop(b);
		return -1;
	}
	b->running = true;
	return 0;
}

/* Main thread: the thread finishes in-flight I/O (and unpins), pushes or
 * drops it, and exits; then the engine goes. */
static void blk_stop(struct virtio_dev *d)
{
	struct blk_dev *b = to_blk(d);
	if (!b->running)
		return;
	virtio_dev_join(d, b->thread, &b->running);
	engine_stop(b);
}

static void blk_destroy(struct virtio_dev *d)
{
	struct blk_dev *b = to_blk(d);
	blk_stop(d);
	for (unsigned i = 0; i < VIRTQ_MAX_SIZE; i++) {
		free(b->reqs[i].iov);
		free(b->reqs[i].pins);
	}
	close(b->fd);
	free(b->path);
	virtio_dev_fini(d);
	free(b);
}

/* Any thread: relaxed loads of counters the device thread keeps. */
static void blk_counters(struct virtio_dev *d, char *buf, size_t len)
{
	struct blk_dev *b = to_blk(d);
	size_t used = strnlen(buf, len);
	if (used >= len)
		return;
#define C(x) (unsigned long long)atomic_load_explicit(&b->x, memory_order_relaxed)
	snprintf(buf + used, len - used,
		 "engine %s\n"
		 "requests_read %llu\nrequests_write %llu\nrequests_flush %llu\n"
		 "requests_get_id %llu\nrequests_unsupported %llu\nrequests_malformed %llu\n"
		 "bytes_read %llu\nbytes_written %llu\n"
		 "errors %llu\npins_failed %llu\nstatus_faults %llu\ndropped_after_reset %llu\n"
		 "inflight %llu\ninflight_max %llu\ncancelled_at_stop %llu\n",
		 blk_engine_name((enum blk_engine)C(engine_used)), C(n_read), C(n_write),
		 C(n_flush), C(n_get_id), C(n_unsupp), C(n_malformed), C(bytes_read),
		 C(bytes_written), C(n_ioerr), C(n_pin_failed), C(n_status_faults), C(n_dropped),
		 C(n_inflight), C(inflight_max), C(n_cancelled));
#undef C
}

/* ---- snapshot (issue 16) --------------------------------------------- */

/* Main thread: the thread stops popping, lets every request in flight
 * finish (host I/O completes, not cancelled), pushes them with their
 * interrupt, then reports quiet.  Bound: VIRTIO_QUIESCE_TIMEOUT_MS (the
 * I/O a guest queued may be large: past the bound the snapshot fails and
 * the caller resumes). */
static int blk_quiesce(struct virtio_dev *d)
{
	if (!to_blk(d)->running)
		return 0;
	return virtio_dev_quiesce_wait(d, VIRTIO_QUIESCE_TIMEOUT_MS);
}

static void blk_resume_io(struct virtio_dev *d)
{
	virtio_dev_resume(d);
}

/* Main thread, the device quiet: constant fields only. */
static struct json_object *blk_save(struct virtio_dev *d, char *err, size_t errlen)
{
	struct blk_dev *b = to_blk(d);
	struct json_object *o = json_object_new_object();
	if (!o || sj_set_str(o, "path", b->path) || sj_set_bool(o, "readonly", b->readonly) ||
	    sj_set_hex(o, "serial", b->serial, sizeof(b->serial)) ||
	    sj_set_u64(o, "capacity", b->capacity) || sj_set_u64(o, "features", d->features)) {
		json_object_put(o);
		snprintf(err, errlen, "%s: out of memory saving its state", d->name);
		return NULL;
	}
	return o;
}

/* Main thread, before start.  The disk must be the one saved: the same
 * capacity and read-only flag (the guest's filesystem knows both), the
 * same features.  A different path is allowed (the image moved) and
 * logged; the serial the guest saw is kept. */
static int blk_restore(struct virtio_dev *d, struct json_object *o, char *err, size_t errlen)
{
	struct blk_dev *b = to_blk(d);
	const char *path;
	bool ro;
	uint8_t serial[VIRTIO_BLK_ID_BYTES];
	uint64_t cap, feat;
	if (sj_get_str(o, "path", &path, "virtio-blk", err, errlen) ||
	    sj_get_bool(o, "readonly", &ro, "virtio-blk", err, errlen) ||
	    sj_get_hex(o, "serial", serial, sizeof(serial), "virtio-blk", err, errlen) ||
	    sj_get_u64(o, "capacity", &cap, "virtio-blk", err, errlen) ||
	    sj_get_u64(o, "features", &feat, "virtio-blk", err, errlen))
		return -1;
	if (cap != b->capacity) {
		snprintf(err, errlen, "virtio-blk: disk %s has %" PRIu64 " sectors, the snapshot's "
			 "disk had %" PRIu64 ": not the same disk", b->path, b->capacity, cap);
		return -1;
	}
	if (ro != b->readonly) {
		snprintf(err, errlen, "virtio-blk: disk %s is %s, the snapshot's was %s", b->path,
			 b->readonly ? "read-only" : "writable", ro ? "read-only" : "writable");
		return -1;
	}
	if (feat != d->features) {
		snprintf(err, errlen, "virtio-blk: features %#" PRIx64 " differ from the snapshot's %#"
			 PRIx64, d->features, feat);
		return -1;
	}
	if (strcmp(path, b->path))
		log_msg(LOG_INFO, "%s: restoring %s's state onto %s", d->name, path, b->path);
	pthread_mutex_lock(&d->lock);
	memcpy(b->serial, serial, sizeof(serial));
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static const struct virtio_dev_ops blk_ops = {
	.quiesce = blk_quiesce,
	.resume_io = blk_resume_io,
	.save = blk_save,
	.restore = blk_restore,
	.config_read = blk_config_read,
	.config_write = blk_config_write,
	.reset = blk_reset,
	.start = blk_start,
	.stop = blk_stop,
	.destroy = blk_destroy,
	.counters = blk_counters,
};

/* ---- creation --------------------------------------------------------- */

static int open_image(const struct blk_config *cfg, int *fd_out, uint64_t *bytes, char *err,
		      size_t errlen)
{
	/* Never blocks (a FIFO put at the path opens at once and is refused
	 * below); O_NONBLOCK is cleared once the type is known (io_uring
	 * would answer -EAGAIN on it). */
	int fd = open(cfg->path, (cfg->readonly ? O_RDONLY : O_RDWR) | O_NONBLOCK | O_NOCTTY |
		      O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open disk image %s%s: %s", cfg->path,
			 cfg->readonly ? "" : " for writing", strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		snprintf(err, errlen, "cannot stat disk image %s: %s", cfg->path, strerror(errno));
		close(fd);
		return -1;
	}
	uint64_t size;
	if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size) != 0) {
			snprintf(err, errlen, "cannot get the size of block device %s: %s", cfg->path,
				 strerror(errno));
			close(fd);
			return -1;
		}
	} else {
		snprintf(err, errlen, "disk image %s is not a regular file or a block device",
			 cfg->path);
		close(fd);
		return -1;
	}
	if (size % BLK_SECTOR) {
		snprintf(err, errlen, "disk image %s is %llu bytes, not a multiple of 512", cfg->path,
			 (unsigned long long)size);
		close(fd);
		return -1;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		snprintf(err, errlen, "disk image %s: %s", cfg->path, strerror(errno));
		close(fd);
		return -1;
	}
	*fd_out = fd;
	*bytes = size;
	return 0;
}

struct virtio_dev *virtio_blk_create(struct gmm_vm *mem, const struct blk_config *cfg,
				     unsigned index, char *err, size_t errlen)
{
	if (!cfg || !cfg->path || !*cfg->path) {
		snprintf(err, errlen, "virtio-blk needs a disk image path");
		return NULL;
	}
	if (cfg->engine != BLK_ENGINE_IO_URING && cfg->engine != BLK_ENGINE_THREADS) {
		snprintf(err, errlen, "unknown virtio-blk I/O engine %d", (int)cfg->engine);
		return NULL;
	}
	if (cfg->serial && strlen(cfg->serial) > VIRTIO_BLK_ID_BYTES) {
		snprintf(err, errlen, "disk serial \"%s\" is longer than %d bytes", cfg->serial,
			 VIRTIO_BLK_ID_BYTES);
		return NULL;
	}
	struct blk_dev *b = calloc(1, sizeof(*b));
	if (!b) {
		snprintf(err, errlen, "out of memory for virtio-blk");
		return NULL;
	}
	b->path = strdup(cfg->path);
	if (!b->path) {
		snprintf(err, errlen, "out of memory for virtio-blk");
		free(b);
		return NULL;
	}
	uint64_t bytes;
	if (open_image(cfg, &b->fd, &bytes, err, errlen)) {
		free(b->path);
		free(b);
		return NULL;
	}
	b->index = index;
	b->readonly = cfg->readonly;
	b->capacity = bytes / BLK_SECTOR;
	b->want_engine = b->engine = cfg->engine;
	atomic_init(&b->engine_used, (int)cfg->engine);
	b->cfd = -1;

	/* GET_ID: the serial, or the image's file name (its last 20 bytes
	 * when longer), NUL-padded. */
	const char *serial = cfg->serial;
	if (!serial) {
		const char *slash = strrchr(cfg->path, '/');
		serial = slash && slash[1] ? slash + 1 : cfg->path;
		size_t n = strlen(serial);
		if (n > VIRTIO_BLK_ID_BYTES)
			serial += n - VIRTIO_BLK_ID_BYTES;
	}
	memcpy(b->serial, serial, strnlen(serial, VIRTIO_BLK_ID_BYTES));

	put_le64(b->config + CFG_CAPACITY, b->capacity);
	put_le32(b->config + CFG_SIZE_MAX, BLK_SIZE_MAX);
	put_le32(b->config + CFG_SEG_MAX, BLK_SEG_MAX);
	put_le32(b->config + CFG_BLK_SIZE, BLK_SECTOR);
	put_le16(b->config + CFG_NUM_QUEUES, 1);
	/* geometry, topology, writeback and the rest stay 0: their features
	 * (GEOMETRY, TOPOLOGY, CONFIG_WCE, ...) are not offered. */

	struct virtio_dev *d = &b->d;
	d->name = "virtio-blk";
	d->device_id = VIRTIO_ID_BLOCK;
	d->features = 1ULL << VIRTIO_BLK_F_SEG_MAX | 1ULL << VIRTIO_BLK_F_BLK_SIZE |
		      1ULL << VIRTIO_BLK_F_FLUSH | (cfg->readonly ? 1ULL << VIRTIO_BLK_F_RO : 0);
	d->config_size = BLK_CONFIG_SIZE;
	d->nqueues = 1;
	d->ops = &blk_ops;
	d->priv = b;
	d->mem = mem;
	int rc = virtio_dev_init(d);
	if (rc) {
		snprintf(err, errlen, "virtio-blk: cannot initialise the device: %s", strerror(-rc));
		close(b->fd);
		free(b->path);
		free(b);
		return NULL;
	}
	return d;
}
