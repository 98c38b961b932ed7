// SPDX-License-Identifier: GPL-2.0-only
/*
 * vdriver.c - the unit tests' virtio driver (vdriver.h).
 *
 * It plays the guest: guest RAM is a guestmm VM with one region at GPA 0,
 * every byte it writes or reads goes through the test thread's walker
 * (gmm_write/gmm_read, or gmm_translate for the ring indices), and every
 * register access is a virtio_mmio_access() made inside a walk section,
 * the way a vCPU makes it on an MMIO exit (so a device that breaks the
 * locking rule of virtio.h deadlocks here as it would in a VM).
 *
 * Memory ordering as a Linux driver (drivers/virtio/virtio_ring.c):
 *   - publishing: ring entry written, then avail->idx stored with release;
 *   - consuming: used->idx loaded with acquire, then the element read;
 *     then used_event = last_used stored and a full fence, so the next
 *     used buffer interrupts (virtqueue_get_buf_ctx_split does the same).
 * Everything else is plain copies: single test thread.
 *
 * Failures of the driver itself (RAM exhausted, a write of its own
 * structures that does not translate) abort the test with cr_assert.
 */
#include "vdriver.h"

#include <criterion/criterion.h>

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <semaphore.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- RAM ------------------------------------------------------------ */

int vd_init(struct vdriver *v, uint64_t ram_size)
{
	return vd_init_backing(v, ram_size, GMM_BACKING_THP);
}

int vd_init_backing(struct vdriver *v, uint64_t ram_size, enum gmm_backing backing)
{
	memset(v, 0, sizeof(*v));
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	if (gmm_vm_create(&cfg, &v->mem))
		return -1;
	struct gmm_region_spec spec = {
		.gpa = 0, .size = ram_size, .backing = backing, .name = "vdriver-ram",
	};
	if (gmm_region_add(v->mem, &spec, &v->ram))
		goto err;
	v->w = gmm_walker_register(v->mem);
	if (!v->w)
		goto err;
	v->ram_size = ram_size;
	/* Page 0 stays unused, so that GPA 0 is never a valid allocation. */
	v->brk = GMM_PAGE_SIZE;
	return 0;
err:
	gmm_vm_destroy(v->mem);
	v->mem = NULL;
	return -1;
}

void vd_fini(struct vdriver *v)
{
	if (!v->mem)
		return;
	gmm_walker_unregister(v->w);
	gmm_vm_destroy(v->mem);
	v->mem = NULL;
	v->w = NULL;
}

uint64_t vd_alloc(struct vdriver *v, uint64_t size, uint64_t align)
{
	if (!align)
		align = 1;
	uint64_t a = (v->brk + align - 1) & ~(align - 1);
	cr_assert(a >= v->brk && size <= v->ram_size && a <= v->ram_size - size,
		  "vd_alloc: %" PRIu64 " bytes: guest RAM (%" PRIu64 " bytes) exhausted", size,
		  v->ram_size);
	v->brk = a + size;
	return a;
}

void vd_write(struct vdriver *v, uint64_t gpa, const void *src, size_t len)
{
	int rc = gmm_write(v->w, gpa, src, len);
	cr_assert_eq(rc, 0, "vd_write(0x%" PRIx64 ", %zu): %s", gpa, len, strerror(-rc));
}

void vd_read(struct vdriver *v, uint64_t gpa, void *dst, size_t len)
{
	int rc = gmm_read(v->w, gpa, dst, len);
	cr_assert_eq(rc, 0, "vd_read(0x%" PRIx64 ", %zu): %s", gpa, len, strerror(-rc));
}

/* A naturally aligned 16-bit ring field, through a translated pointer so
 * that it can be an atomic access with the ordering the caller needs. */
static void store16(struct vdriver *v, uint64_t gpa, uint16_t val, int order)
{
	gmm_walk_begin(v->w);
	uint16_t *p = gmm_translate(v->w, gpa, 2, GMM_ACCESS_WRITE);
	cr_assert_not_null(p, "vdriver: ring field at 0x%" PRIx64 ": %s", gpa, strerror(errno));
	__atomic_store_n(p, htole16(val), order);
	gmm_walk_end(v->w);
}

static uint16_t load16(struct vdriver *v, uint64_t gpa, int order)
{
	gmm_walk_begin(v->w);
	uint16_t *p = gmm_translate(v->w, gpa, 2, GMM_ACCESS_READ);
	cr_assert_not_null(p, "vdriver: ring field at 0x%" PRIx64 ": %s", gpa, strerror(errno));
	uint16_t val = le16toh(__atomic_load_n(p, order));
	gmm_walk_end(v->w);
	return val;
}

/* ---- registers ------------------------------------------------------- */

/* A register access as a vCPU makes it: inside a walk section. */
static void mmio(struct vdriver *v, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
	cr_assert_not_null(v->d, "vdriver: no device (vd_setup not called)");
	gmm_walk_begin(v->w);
	virtio_mmio_access(v->d, off, data, len, is_write);
	gmm_walk_end(v->w);
}

uint32_t vd_reg_read(struct vdriver *v, uint32_t off)
{
	uint8_t b[4] = { 0 };
	mmio(v, off, b, 4, false);
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

void vd_reg_write(struct vdriver *v, uint32_t off, uint32_t val)
{
	uint8_t b[4] = { val, val >> 8, val >> 16, val >> 24 };
	mmio(v, off, b, 4, true);
}

uint64_t vd_config_read(struct vdriver *v, uint32_t off, unsigned len)
{
	cr_assert(len == 1 || len == 2 || len == 4 || len == 8, "vd_config_read: len %u", len);
	uint8_t b[8] = { 0 };
	mmio(v, VIRTIO_MMIO_CONFIG + (uint64_t)off, b, len, false);
	uint64_t val = 0;
	for (unsigned i = 0; i < len; i++)
		val |= (uint64_t)b[i] << (8 * i);
	return val;
}

void vd_config_write(struct vdriver *v, uint32_t off, uint64_t val, unsigned len)
{
	cr_assert(len == 1 || len == 2 || len == 4 || len == 8, "vd_config_write: len %u", len);
	uint8_t b[8];
	for (unsigned i = 0; i < 8; i++)
		b[i] = (uint8_t)(val >> (8 * i));
	mmio(v, VIRTIO_MMIO_CONFIG + (uint64_t)off, b, len, true);
}

/* ---- initialisation (3.1.1) ----------------------------------------- */

int vd_setup(struct vdriver *v, struct virtio_dev *d, uint64_t want_features, unsigned nqueues,
	     uint16_t num)
{
	cr_assert(nqueues <= VIRTIO_MAX_QUEUES, "vd_setup: %u queues", nqueues);
	v->d = d;
	memset(v->q, 0, sizeof(v->q));

	vd_reg_write(v, VIRTIO_MMIO_STATUS, 0);
	uint32_t st = VIRTIO_STATUS_ACKNOWLEDGE;
	vd_reg_write(v, VIRTIO_MMIO_STATUS, st);
	st |= VIRTIO_STATUS_DRIVER;
	vd_reg_write(v, VIRTIO_MMIO_STATUS, st);

	vd_reg_write(v, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint64_t dev = vd_reg_read(v, VIRTIO_MMIO_DEVICE_FEATURES);
	vd_reg_write(v, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	dev |= (uint64_t)vd_reg_read(v, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	uint64_t drv = (dev & want_features) | (1ULL << VIRTIO_F_VERSION_1);
	vd_reg_write(v, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	vd_reg_write(v, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)drv);
	vd_reg_write(v, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	vd_reg_write(v, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(drv >> 32));

	st |= VIRTIO_STATUS_FEATURES_OK;
	vd_reg_write(v, VIRTIO_MMIO_STATUS, st);
	if (!(vd_reg_read(v, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK))
		return -1;

	for (unsigned i = 0; i < nqueues; i++) {
		vd_reg_write(v, VIRTIO_MMIO_QUEUE_SEL, i);
		cr_assert_eq(vd_reg_read(v, VIRTIO_MMIO_QUEUE_READY), 0,
			     "vd_setup: queue %u ready before setup", i);
		uint32_t max = vd_reg_read(v, VIRTIO_MMIO_QUEUE_NUM_MAX);
		cr_assert_neq(max, 0, "vd_setup: queue %u not available", i);
		uint16_t n = num < max ? num : (uint16_t)max;

		struct vd_queue *q = &v->q[i];
		q->num = n;
		/* The spec's alignments, no more, to catch a device that
		 * assumes more. */
		q->desc = vd_alloc(v, VIRTQ_DESC_BYTES(n), 16);
		q->avail = vd_alloc(v, VIRTQ_AVAIL_BYTES(n), 2);
		q->used = vd_alloc(v, VIRTQ_USED_BYTES(n), 4);
		static const uint8_t zero[VIRTQ_DESC_BYTES(VIRTQ_MAX_SIZE)];
		vd_write(v, q->desc, zero, VIRTQ_DESC_BYTES(n));
		vd_write(v, q->avail, zero, VIRTQ_AVAIL_BYTES(n));
		vd_write(v, q->used, zero, VIRTQ_USED_BYTES(n));

		vd_reg_write(v, VIRTIO_MMIO_QUEUE_NUM, n);
		vd_reg_write(v, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)q->desc);
		vd_reg_write(v, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(q->desc >> 32));
		vd_reg_write(v, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)q->avail);
		vd_reg_write(v, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(q->avail >> 32));
		vd_reg_write(v, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)q->used);
		vd_reg_write(v, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(q->used >> 32));
		vd_reg_write(v, VIRTIO_MMIO_QUEUE_READY, 1);
	}

	st |= VIRTIO_STATUS_DRIVER_OK;
	vd_reg_write(v, VIRTIO_MMIO_STATUS, st);
	return (int)vd_reg_read(v, VIRTIO_MMIO_STATUS);
}

/* ---- rings ------------------------------------------------------------ */

static struct vd_queue *vq(struct vdriver *v, unsigned q)
{
	cr_assert(q < VIRTIO_MAX_QUEUES && v->q[q].num, "vdriver: queue %u not set up", q);
	return &v->q[q];
}

static void put_desc(struct vdriver *v, uint64_t gpa, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	struct virtq_desc d = {
		.addr = htole64(addr), .len = htole32(len),
		.flags = htole16(flags), .next = htole16(next),
	};
	vd_write(v, gpa, &d, sizeof(d));
}

int vd_add(struct vdriver *v, unsigned q, const struct vd_buf *bufs, unsigned n, bool indirect)
{
	struct vd_queue *Q = vq(v, q);
	cr_assert(n > 0, "vd_add: empty chain");
	uint16_t head = Q->next_desc % Q->num;

	if (indirect) {
		uint64_t table = vd_alloc(v, 16ULL * n, 16);
		for (unsigned i = 0; i < n; i++)
			put_desc(v, table + 16ULL * i, bufs[i].gpa, bufs[i].len,
				 (bufs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
					 (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0),
				 (uint16_t)(i + 1 < n ? i + 1 : 0));
		put_desc(v, Q->desc + 16ULL * head, table, 16 * n, VIRTQ_DESC_F_INDIRECT, 0);
		Q->next_desc = (uint16_t)((head + 1) % Q->num);
	} else {
		cr_assert(n <= Q->num, "vd_add: %u descriptors in a queue of %u", n, Q->num);
		uint16_t cur = head;
		for (unsigned i = 0; i < n; i++) {
			uint16_t nxt = (uint16_t)((cur + 1) % Q->num);
			put_desc(v, Q->desc + 16ULL * cur, bufs[i].gpa, bufs[i].len,
				 (bufs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
					 (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0),
				 i + 1 < n ? nxt : 0);
			cur = nxt;
		}
		Q->next_desc = cur;
	}
	vd_publish(v, q, head);
	return head;
}

void vd_set_desc(struct vdriver *v, unsigned q, uint16_t i, const struct virtq_desc *d)
{
	struct vd_queue *Q = vq(v, q);
	put_desc(v, Q->desc + 16ULL * i, d->addr, d->len, d->flags, d->next);
}

void vd_publish(struct vdriver *v, unsigned q, uint16_t head)
{
	struct vd_queue *Q = vq(v, q);
	store16(v, Q->avail + 4 + 2ULL * (Q->avail_idx % Q->num), head, __ATOMIC_RELAXED);
	/* Release: the descriptors and the ring entry before the index. */
	store16(v, Q->avail + 2, ++Q->avail_idx, __ATOMIC_RELEASE);
}

void vd_set_avail_idx(struct vdriver *v, unsigned q, uint16_t idx)
{
	struct vd_queue *Q = vq(v, q);
	Q->avail_idx = idx;
	store16(v, Q->avail + 2, idx, __ATOMIC_RELEASE);
}

void vd_kick(struct vdriver *v, unsigned q)
{
	/* Full barrier before the notification, as virtqueue_kick_prepare. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	vd_reg_write(v, VIRTIO_MMIO_QUEUE_NOTIFY, q);
}

/* ---- completions ------------------------------------------------------ */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

unsigned vd_used_pending(struct vdriver *v, unsigned q)
{
	struct vd_queue *Q = vq(v, q);
	return (uint16_t)(load16(v, Q->used + 2, __ATOMIC_ACQUIRE) - Q->last_used);
}

int vd_wait_used(struct vdriver *v, unsigned q, int timeout_ms, uint32_t *len)
{
	struct vd_queue *Q = vq(v, q);
	uint64_t deadline = now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	for (;;) {
		/* Acquire: the element and the buffers after the index. */
		uint16_t idx = load16(v, Q->used + 2, __ATOMIC_ACQUIRE);
		if (idx != Q->last_used)
			break;
		if (now_ms() >= deadline)
			return -1;
		usleep(200);
	}
	uint32_t elem[2];
	vd_read(v, Q->used + 4 + 8ULL * (Q->last_used % Q->num), elem, sizeof(elem));
	Q->last_used++;
	/* Ask for an interrupt at the next used buffer (used_event), then a
	 * full barrier, as Linux does after taking a buffer. */
	store16(v, Q->avail + 4 + 2ULL * Q->num, Q->last_used, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (len)
		*len = le32toh(elem[1]);
	return (int)le32toh(elem[0]);
}

bool vd_wait_irq(struct vdriver *v, int timeout_ms)
{
	cr_assert_not_null(v->d, "vdriver: no device");
	struct pollfd p = { .fd = v->d->irq_fd, .events = POLLIN };
	int rc;
	do
		rc = poll(&p, 1, timeout_ms);
	while (rc < 0 && errno == EINTR);
	if (rc <= 0)
		return false;
	uint64_t val;
	return read(v->d->irq_fd, &val, sizeof(val)) == (ssize_t)sizeof(val);
}

bool vd_wait_status(struct vdriver *v, uint32_t mask, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	for (;;) {
		if ((vd_reg_read(v, VIRTIO_MMIO_STATUS) & mask) == mask)
			return true;
		if (now_ms() >= deadline)
			return false;
		usleep(1000);
	}
}

struct stopper {
	struct virtio_dev *d;
	sem_t done;
};

static void *stop_thread(void *arg)
{
	struct stopper *s = arg;
	s->d->ops->stop(s->d);
	sem_post(&s->done);
	return NULL;
}

static double now_ms_f(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Contract (vdriver.h): a bounded wait on a semaphore, never a join. */
double vd_stop_within(struct virtio_dev *d, int limit_ms)
{
	struct stopper *s = calloc(1, sizeof(*s));
	if (!s)
		return -1;
	s->d = d;
	sem_init(&s->done, 0, 0);
	double t0 = now_ms_f();
	pthread_t th;
	if (pthread_create(&th, NULL, stop_thread, s) != 0) {
		sem_destroy(&s->done);
		free(s);
		return -1;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += limit_ms / 1000;
	ts.tv_nsec += (limit_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	int rc;
	while ((rc = sem_timedwait(&s->done, &ts)) != 0 && errno == EINTR)
		;
	if (rc != 0)
		return -1;
	double ms = now_ms_f() - t0;
	pthread_join(th, NULL);
	sem_destroy(&s->done);
	free(s);
	return ms;
}
