// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtqueue.c - a split virtqueue (virtio 1.2, 2.7) as the device sees it.
 *
 * The rings live in guest memory, which the guest may change at any moment
 * and the host may unmap at any moment (balloon, virtio-mem).  So:
 *   - every access is a guestmm walk: each public function opens one walk
 *     section for its ring accesses (gmm_read/gmm_write nest inside it) and
 *     closes it before returning; no host pointer survives a call;
 *   - each descriptor is copied out once (gmm_read) and only the copy is
 *     validated and used, so a guest rewriting it meanwhile gains nothing;
 *   - everything is validated (see vq_pop in virtio.h): a broken ring is
 *     reported as -1 with a sentence in `why` ("queue 0: descriptor 7: next
 *     300 >= queue size 256"); the caller puts the device into NEEDS_RESET.
 *     Nothing here logs: the caller logs once, rate-limited.
 *
 * Memory ordering with the driver (the guest runs on other CPUs):
 *   - vq_pop: avail->idx is read with an acquire load; the ring entry and
 *     the descriptors are read after it (pairs with the driver's write
 *     barrier between filling the ring and storing avail->idx).
 *   - vq_push: the used element is written, then used->idx is stored with
 *     release (pairs with the driver's read barrier after loading
 *     used->idx).  Data the device wrote to the buffers before the call is
 *     ordered before used->idx by the same release.
 *   - vq_need_irq: seq_cst fence between our used->idx store and the load
 *     of used_event / avail->flags (pairs with the driver's full barrier
 *     between storing used_event and re-reading used->idx).
 *   - vq_arm: store avail_event, seq_cst fence, load avail->idx (pairs with
 *     the driver's full barrier between storing avail->idx and loading
 *     avail_event).
 * The index fields are naturally aligned (vq_check_layout, rechecked by
 * every call), so a 2-byte field never crosses a page and the translated
 * pointer is fit for an atomic access.  Rings are little-endian.
 *
 * Locking: the caller holds d->lock (virtio.h) for every call on a queue;
 * vq_chain_read/write touch only the chain and guest memory.
 */
#include "virtio/virtio.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- helpers -------------------------------------------------------- */

static int vfail(const struct virtqueue *q, char *why, size_t whylen, const char *fmt,
		 va_list ap)
{
	if (why && whylen) {
		int n = snprintf(why, whylen, "queue %u: ", q->index);
		if (n >= 0 && (size_t)n < whylen)
			vsnprintf(why + n, whylen - (size_t)n, fmt, ap);
	}
	return -1;
}

__attribute__((format(printf, 4, 5)))
static int fail(const struct virtqueue *q, char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(q, why, whylen, fmt, ap);
	va_end(ap);
	return -1;
}

/* Why a translation or copy failed, from its errno. */
static const char *xlate_err(int err)
{
	switch (err) {
	case EFAULT: return "is not guest RAM (unmapped, MMIO or beyond RAM)";
	case EACCES: return "is read-only";
	case ERANGE: return "crosses a region boundary";
	default: return "does not translate";
	}
}

static inline bool pow2(unsigned x)
{
	return x && !(x & (x - 1));
}

/* [gpa, gpa + bytes) lies below GMM_GPA_LIMIT (so does not wrap). */
static inline bool area_ok(uint64_t gpa, uint64_t bytes)
{
	return gpa < GMM_GPA_LIMIT && bytes <= GMM_GPA_LIMIT - gpa;
}

/* Inside a walk: a naturally aligned 2-byte ring field. */
static inline uint16_t *field16(struct gmm_walker *w, uint64_t gpa, unsigned access)
{
	return gmm_translate(w, gpa, 2, access);
}

/* The event-index test (2.7.10): true if event lies in [old, new). */
static inline bool vring_need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

/* Offsets of the fields in the rings. */
static inline uint64_t avail_idx_gpa(const struct virtqueue *q) { return q->avail + 2; }
static inline uint64_t avail_ring_gpa(const struct virtqueue *q, uint16_t i)
{
	return q->avail + 4 + 2ULL * (i & (q->num - 1));
}
static inline uint64_t used_event_gpa(const struct virtqueue *q) { return q->avail + 4 + 2ULL * q->num; }
static inline uint64_t used_idx_gpa(const struct virtqueue *q) { return q->used + 2; }
static inline uint64_t used_ring_gpa(const struct virtqueue *q, uint16_t i)
{
	return q->used + 4 + 8ULL * (i & (q->num - 1));
}
static inline uint64_t avail_event_gpa(const struct virtqueue *q) { return q->used + 4 + 8ULL * q->num; }

/* ---- reset and layout ------------------------------------------------ */

/* Statistics are kept: they count over the device's life. */
void vq_reset(struct virtqueue *q)
{
	struct virtqueue keep = *q;
	memset(q, 0, sizeof(*q));
	q->index = keep.index;
	q->popped = keep.popped;
	q->pushed = keep.pushed;
	q->irqs = keep.irqs;
	q->suppressed = keep.suppressed;
}

int vq_check_layout(const struct virtqueue *q, uint16_t max, char *why, size_t whylen)
{
	unsigned lim = max < VIRTQ_MAX_SIZE ? max : VIRTQ_MAX_SIZE;
	if (!pow2(q->num) || q->num > lim)
		return fail(q, why, whylen, "size %u is not a power of two in [1, %u]", q->num, lim);
	if (q->desc & 15)
		return fail(q, why, whylen, "descriptor table at 0x%" PRIx64 " is not 16-byte aligned",
			    q->desc);
	if (q->avail & 1)
		return fail(q, why, whylen, "avail ring at 0x%" PRIx64 " is not 2-byte aligned",
			    q->avail);
	if (q->used & 3)
		return fail(q, why, whylen, "used ring at 0x%" PRIx64 " is not 4-byte aligned",
			    q->used);
	if (!area_ok(q->desc, VIRTQ_DESC_BYTES(q->num)))
		return fail(q, why, whylen,
			    "descriptor table at 0x%" PRIx64 " (%llu bytes) reaches beyond 0x%llx",
			    q->desc, VIRTQ_DESC_BYTES(q->num), GMM_GPA_LIMIT);
	if (!area_ok(q->avail, VIRTQ_AVAIL_BYTES(q->num)))
		return fail(q, why, whylen,
			    "avail ring at 0x%" PRIx64 " (%llu bytes) reaches beyond 0x%llx",
			    q->avail, VIRTQ_AVAIL_BYTES(q->num), GMM_GPA_LIMIT);
	if (!area_ok(q->used, VIRTQ_USED_BYTES(q->num)))
		return fail(q, why, whylen,
			    "used ring at 0x%" PRIx64 " (%llu bytes) reaches beyond 0x%llx",
			    q->used, VIRTQ_USED_BYTES(q->num), GMM_GPA_LIMIT);
	return 0;
}

/*
 * Every ring operation re-checks the layout (a few compares): the caller
 * normally checked it at QueueReady, but the aligned atomic accesses below
 * and the bitmaps in vq_pop depend on it, so it is not left to trust.
 */
static int usable(const struct virtqueue *q, char *why, size_t whylen)
{
	if (!q->ready)
		return fail(q, why, whylen, "not ready");
	return vq_check_layout(q, VIRTQ_MAX_SIZE, why, whylen);
}

/* Inside a walk: avail->idx (acquire) and how many entries it is ahead of
 * last_avail; -1 if it does not translate or jumps more than num ahead. */
static int avail_pending(struct virtqueue *q, struct gmm_walker *w, uint16_t *pending,
			 char *why, size_t whylen)
{
	uint16_t *p = field16(w, avail_idx_gpa(q), GMM_ACCESS_READ);
	if (!p)
		return fail(q, why, whylen, "avail ring idx at 0x%" PRIx64 " %s", avail_idx_gpa(q),
			    xlate_err(errno));
	/* Acquire: the ring entries and descriptors read after this are at
	 * least as new as the driver's writes before its avail->idx store. */
	uint16_t idx = le16toh(__atomic_load_n(p, __ATOMIC_ACQUIRE));
	uint16_t n = (uint16_t)(idx - q->last_avail);
	if (n > q->num)
		return fail(q, why, whylen,
			    "avail idx %u is %u entries ahead of the device's %u (queue size %u)", idx,
			    n, q->last_avail, q->num);
	*pending = n;
	return 0;
}

/* ---- pop ------------------------------------------------------------- */

#define BITMAP_WORDS ((VIRTQ_MAX_SIZE > VIRTQ_MAX_CHAIN ? VIRTQ_MAX_SIZE : VIRTQ_MAX_CHAIN) / 64)

static inline bool test_and_set(uint64_t *bm, unsigned i)
{
	uint64_t bit = 1ULL << (i % 64);
	bool was = bm[i / 64] & bit;
	bm[i / 64] |= bit;
	return was;
}

/*
 * Inside a walk: follow the chain from head.  Loops are found exactly with a
 * bitmap per table (the main table: at most num <= VIRTQ_MAX_SIZE entries;
 * an indirect table: at most VIRTQ_MAX_CHAIN), so a chain visits each
 * descriptor at most once and the walk is bounded by num + VIRTQ_MAX_CHAIN
 * steps; the data descriptors (zero-length ones included) are bounded by
 * VIRTQ_MAX_CHAIN, which bounds c->seg.
 */
static int walk_chain(struct virtqueue *q, struct gmm_walker *w, uint16_t head,
		      struct vq_chain *c, char *why, size_t whylen)
{
	uint64_t seen[BITMAP_WORDS] = { 0 };
	uint64_t table = q->desc;      /* the table we are in */
	unsigned size = q->num;        /* its number of entries */
	bool indirect = false;         /* in an indirect table */
	unsigned ndesc = 0;            /* data descriptors seen */
	unsigned i = head;

	c->head = head;
	c->nseg = c->nout = c->nin = 0;
	c->out_bytes = c->in_bytes = 0;

/* "descriptor 7" or "indirect descriptor 3 (table 0x5000 from descriptor 7)" */
#define DFMT "%sdescriptor %u%s"
#define DARGS (indirect ? "indirect " : ""), i, where
	char where[64] = "";

	for (;;) {
		if (test_and_set(seen, i))
			return fail(q, why, whylen,
				    "chain from head %u loops (" DFMT " is reached twice)", head,
				    DARGS);

		struct virtq_desc d;
		int rc = gmm_read(w, table + 16ULL * i, &d, sizeof(d));
		if (rc)
			return fail(q, why, whylen, DFMT " at 0x%" PRIx64 " %s", DARGS,
				    (uint64_t)(table + 16ULL * i), xlate_err(-rc));
		uint64_t addr = le64toh(d.addr);
		uint32_t len = le32toh(d.len);
		uint16_t flags = le16toh(d.flags);
		uint16_t next = le16toh(d.next);

		if (flags & VIRTQ_DESC_F_INDIRECT) {
			if (indirect)
				return fail(q, why, whylen, DFMT ": nested INDIRECT", DARGS);
			if (!q->indirect)
				return fail(q, why, whylen,
					    DFMT ": INDIRECT without VIRTIO_F_INDIRECT_DESC", DARGS);
			if (flags & VIRTQ_DESC_F_NEXT)
				return fail(q, why, whylen, DFMT ": INDIRECT together with NEXT",
					    DARGS);
			if (len == 0 || len % 16 || len / 16 > VIRTQ_MAX_CHAIN)
				return fail(q, why, whylen,
					    DFMT ": indirect table length %u (must be a non-zero "
					    "multiple of 16, at most %u entries)",
					    DARGS, len, VIRTQ_MAX_CHAIN);
			/* Beyond RAM is found by reading it; only a wrap is
			 * refused here. */
			if (addr + (len - 1) < addr)
				return fail(q, why, whylen,
					    DFMT ": indirect table 0x%" PRIx64 " + %u wraps around",
					    DARGS, addr, len);
			/* The WRITE flag of this descriptor is ignored (2.7.5.3.2). */
			snprintf(where, sizeof(where), " (table 0x%" PRIx64 " from descriptor %u)",
				 addr, i);
			table = addr;
			size = len / 16;
			indirect = true;
			memset(seen, 0, sizeof(seen));
			i = 0;
			continue;
		}

		if (++ndesc > VIRTQ_MAX_CHAIN)
			return fail(q, why, whylen, "chain from head %u has more than %u descriptors",
				    head, VIRTQ_MAX_CHAIN);
		if (len) {
			bool wr = flags & VIRTQ_DESC_F_WRITE;
			if (addr + (len - 1) < addr)
				return fail(q, why, whylen,
					    DFMT ": buffer 0x%" PRIx64 " + %u wraps around", DARGS,
					    addr, len);
			if (!wr && c->nin)
				return fail(q, why, whylen,
					    DFMT ": readable buffer after a writable one", DARGS);
			uint64_t *sum = wr ? &c->in_bytes : &c->out_bytes;
			*sum += len;
			if (*sum >= (1ULL << 32))
				return fail(q, why, whylen,
					    DFMT ": %s bytes of chain from head %u reach 2^32", DARGS,
					    wr ? "writable" : "readable", head);
			c->seg[c->nseg++] = (struct vq_seg){ .gpa = addr, .len = len, .write = wr };
			if (wr)
				c->nin++;
			else
				c->nout++;
		}
		if (!(flags & VIRTQ_DESC_F_NEXT))
			break;
		if (next >= size)
			return fail(q, why, whylen, DFMT ": next %u >= %s %u", DARGS, next,
				    indirect ? "indirect table size" : "queue size", size);
		i = next;
	}
#undef DFMT
#undef DARGS
	return 0;
}

int vq_pop(struct virtqueue *q, struct gmm_walker *w, struct vq_chain *c, char *why,
	   size_t whylen)
{
	if (!q->ready)
		return 0;
	if (usable(q, why, whylen))
		return -1;

	int ret = -1;
	gmm_walk_begin(w);
	uint16_t pending;
	if (avail_pending(q, w, &pending, why, whylen))
		goto out;
	if (!pending) {
		ret = 0;
		goto out;
	}
	uint64_t ent = avail_ring_gpa(q, q->last_avail);
	uint16_t *p = field16(w, ent, GMM_ACCESS_READ);
	if (!p) {
		fail(q, why, whylen, "avail ring entry %u at 0x%" PRIx64 " %s",
		     q->last_avail & (q->num - 1), ent, xlate_err(errno));
		goto out;
	}
	/* Ordered after the acquire load of avail->idx. */
	uint16_t head = le16toh(__atomic_load_n(p, __ATOMIC_RELAXED));
	if (head >= q->num) {
		fail(q, why, whylen, "avail ring entry %u: head %u >= queue size %u",
		     q->last_avail & (q->num - 1), head, q->num);
		goto out;
	}
	if (walk_chain(q, w, head, c, why, whylen))
		goto out;
	q->last_avail++;
	q->popped++;
	ret = 1;
out:
	gmm_walk_end(w);
	return ret;
}

/* ---- push and interrupts -------------------------------------------- */

int vq_push(struct virtqueue *q, struct gmm_walker *w, uint16_t head, uint32_t written,
	    char *why, size_t whylen)
{
	return vq_push_n(q, w, &head, &written, 1, why, whylen);
}

int vq_push_n(struct virtqueue *q, struct gmm_walker *w, const uint16_t *heads,
	      const uint32_t *lens, unsigned n, char *why, size_t whylen)
{
	if (usable(q, why, whylen))
		return -1;
	if (n == 0)
		return 0;
	if (n > q->num)
		return fail(q, why, whylen, "push of %u elements > queue size %u", n, q->num);
	for (unsigned i = 0; i < n; i++)
		if (heads[i] >= q->num)
			return fail(q, why, whylen, "push of head %u >= queue size %u", heads[i],
				    q->num);

	int ret = -1;
	gmm_walk_begin(w);
	/* Each element: two little-endian 32-bit words, 4-byte aligned (it may
	 * straddle a page: gmm_write copies across). */
	for (unsigned i = 0; i < n; i++) {
		uint32_t elem[2] = { htole32(heads[i]), htole32(lens[i]) };
		uint64_t ent = used_ring_gpa(q, (uint16_t)(q->used_idx + i));
		int rc = gmm_write(w, ent, elem, sizeof(elem));
		if (rc) {
			fail(q, why, whylen, "used ring entry %u at 0x%" PRIx64 " %s",
			     (q->used_idx + i) & (q->num - 1), ent, xlate_err(-rc));
			goto out;
		}
	}
	uint16_t *p = field16(w, used_idx_gpa(q), GMM_ACCESS_WRITE);
	if (!p) {
		fail(q, why, whylen, "used ring idx at 0x%" PRIx64 " %s", used_idx_gpa(q),
		     xlate_err(errno));
		goto out;
	}
	/* Release: every element and the buffers written before the call
	 * are visible before the new index (one store for all n). */
	__atomic_store_n(p, htole16((uint16_t)(q->used_idx + n)), __ATOMIC_RELEASE);
	q->used_idx = (uint16_t)(q->used_idx + n);
	q->pushed += n;
	ret = 0;
out:
	gmm_walk_end(w);
	return ret;
}

void vq_unpop(struct virtqueue *q, uint16_t n)
{
	q->last_avail = (uint16_t)(q->last_avail - n);
	q->popped -= n;
}

int vq_need_irq(struct virtqueue *q, struct gmm_walker *w, char *why, size_t whylen)
{
	if (usable(q, why, whylen))
		return -1;

	int ret = -1;
	gmm_walk_begin(w);
	/* Full barrier: our used->idx store (vq_push) is globally visible
	 * before we read the driver's suppression field.  Pairs with the
	 * driver's barrier between writing used_event (or clearing
	 * NO_INTERRUPT) and re-reading used->idx: either it sees our entries,
	 * or we see its request for an interrupt. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	bool need;
	if (q->event_idx) {
		uint16_t *p = field16(w, used_event_gpa(q), GMM_ACCESS_READ);
		if (!p) {
			fail(q, why, whylen, "used_event at 0x%" PRIx64 " %s", used_event_gpa(q),
			     xlate_err(errno));
			goto out;
		}
		uint16_t event = le16toh(__atomic_load_n(p, __ATOMIC_RELAXED));
		uint16_t old = q->signalled_used;
		bool valid = q->signalled_valid;
		q->signalled_used = q->used_idx;
		q->signalled_valid = true;
		need = !valid || vring_need_event(event, q->used_idx, old);
	} else {
		uint16_t *p = field16(w, q->avail, GMM_ACCESS_READ);
		if (!p) {
			fail(q, why, whylen, "avail ring flags at 0x%" PRIx64 " %s", q->avail,
			     xlate_err(errno));
			goto out;
		}
		uint16_t flags = le16toh(__atomic_load_n(p, __ATOMIC_RELAXED));
		need = !(flags & VIRTQ_AVAIL_F_NO_INTERRUPT);
	}
	if (need)
		q->irqs++;
	else
		q->suppressed++;
	ret = need;
out:
	gmm_walk_end(w);
	return ret;
}

int vq_arm(struct virtqueue *q, struct gmm_walker *w, char *why, size_t whylen)
{
	if (usable(q, why, whylen))
		return -1;

	int ret = -1;
	gmm_walk_begin(w);
	if (q->event_idx) {
		/* Kick us when avail->idx moves past last_avail. */
		uint16_t *p = field16(w, avail_event_gpa(q), GMM_ACCESS_WRITE);
		if (!p) {
			fail(q, why, whylen, "avail_event at 0x%" PRIx64 " %s", avail_event_gpa(q),
			     xlate_err(errno));
			goto out;
		}
		__atomic_store_n(p, htole16(q->last_avail), __ATOMIC_RELAXED);
	}
	/* Without event-index the driver always notifies (we never set
	 * VIRTQ_USED_F_NO_NOTIFY), so there is nothing to write. */
	/* Full barrier: avail_event is visible before we look at avail->idx
	 * again.  Pairs with the driver's barrier between its avail->idx
	 * store and its avail_event load: either it kicks, or we see the
	 * buffer now. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint16_t pending;
	if (avail_pending(q, w, &pending, why, whylen))
		goto out;
	ret = pending != 0;
out:
	gmm_walk_end(w);
	return ret;
}

int vq_arm_more(struct virtqueue *q, struct gmm_walker *w, char *why, size_t whylen)
{
	if (usable(q, why, whylen))
		return -1;

	int ret = -1;
	gmm_walk_begin(w);
	uint16_t *ai = field16(w, avail_idx_gpa(q), GMM_ACCESS_READ);
	if (!ai) {
		fail(q, why, whylen, "avail ring idx at 0x%" PRIx64 " %s", avail_idx_gpa(q),
		     xlate_err(errno));
		goto out;
	}
	uint16_t idx = le16toh(__atomic_load_n(ai, __ATOMIC_ACQUIRE));
	if (q->event_idx) {
		/* Kick us when avail->idx moves past its current value. */
		uint16_t *p = field16(w, avail_event_gpa(q), GMM_ACCESS_WRITE);
		if (!p) {
			fail(q, why, whylen, "avail_event at 0x%" PRIx64 " %s", avail_event_gpa(q),
			     xlate_err(errno));
			goto out;
		}
		__atomic_store_n(p, htole16(idx), __ATOMIC_RELAXED);
	}
	/* Full barrier, as in vq_arm: either the driver kicks for its next
	 * buffer, or we see it now. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint16_t pending;
	if (avail_pending(q, w, &pending, why, whylen))
		goto out;
	ret = (uint16_t)(q->last_avail + pending) != idx;
out:
	gmm_walk_end(w);
	return ret;
}

/* ---- copying to and from a chain ------------------------------------ */

/*
 * The readable (or writable) segments as one array of bytes: copy [off,
 * off + len) of it.  Walker-side; each piece is a gmm_read/gmm_write, its
 * own walk section, all or nothing for that piece.  The range is checked
 * against the segments' real lengths before anything is copied.
 */
static int chain_copy(struct gmm_walker *w, const struct vq_chain *c, bool to_guest, size_t off,
		      uint8_t *buf, size_t len)
{
	unsigned nseg = c->nseg < VIRTQ_MAX_CHAIN ? c->nseg : VIRTQ_MAX_CHAIN;
	unsigned first = to_guest ? (c->nout < nseg ? c->nout : nseg) : 0;
	unsigned end = to_guest ? nseg : (c->nout < nseg ? c->nout : nseg);
	uint64_t total = 0;
	for (unsigned s = first; s < end; s++)
		total += c->seg[s].len;
	if (off > total || len > total - off)
		return -ERANGE;

	for (unsigned s = first; s < end && len; s++) {
		const struct vq_seg *sg = &c->seg[s];
		if (off >= sg->len) {
			off -= sg->len;
			continue;
		}
		size_t n = sg->len - off < len ? sg->len - off : len;
		int rc = to_guest ? gmm_write(w, sg->gpa + off, buf, n)
				  : gmm_read(w, sg->gpa + off, buf, n);
		if (rc)
			return -EFAULT;
		buf += n;
		len -= n;
		off = 0;
	}
	return 0;
}

int vq_chain_read(struct gmm_walker *w, const struct vq_chain *c, size_t off, void *dst,
		  size_t len)
{
	return chain_copy(w, c, false, off, dst, len);
}

int vq_chain_write(struct gmm_walker *w, const struct vq_chain *c, size_t off, const void *src,
		   size_t len)
{
	return chain_copy(w, c, true, off, (uint8_t *)(uintptr_t)src, len);
}
