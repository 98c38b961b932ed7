// SPDX-License-Identifier: GPL-2.0-only
/*
 * fuzz_virtqueue.c - libFuzzer harness of the split virtqueue
 * (vmm/virtio/virtqueue.c): the input is what a hostile driver puts in guest RAM.
 *
 * A small guest RAM (anonymous, 128 KiB at GPA 0, with one page unmapped
 * for good: "unplugged") is created once.  Each input is a 16-byte header
 * and an image copied to GPA 0x1000 after the RAM is zeroed:
 *   h[0]      queue size 2^(h[0] % 9)
 *   h[1]      bit 0 event-index, bit 1 indirect descriptors, bit 2 fold every
 *             descriptor address of the table and data area into [0, 256 KiB)
 *             (half RAM, half beyond), bit 3 a short `why` buffer, bit 7 add
 *             the start index to avail->idx; bits 4-6 where the rings are:
 *             0-3 packed in the image, 4 descriptor table in the hole,
 *             5 avail ring in the hole, 6 used ring beyond RAM ("MMIO"),
 *             7 used ring whose second half is in the hole
 *   h[2..3]   the device's start index (last_avail = used_idx), for wrap
 *   h[4]      operations: 1 + h[4] % 64
 *   h[5]      the queue's index (it prefixes every reason)
 *   h[6..15]  per-operation parameters (offsets, lengths, what to call)
 * The image holds the descriptor table at 0x1000, then the avail ring, the
 * used ring (4-byte aligned) and data (indirect tables, buffers).
 *
 * The loop pops until empty or broken; for each chain it reads and writes
 * part of it, pushes it, and asks about interrupts.  Checked:
 *   - a chain: head < num, nseg == nout + nin <= VIRTQ_MAX_CHAIN, readable
 *     segments first, no empty or wrapping segment, byte sums equal the
 *     sums of the segment lengths and are < 2^32, last_avail moved by one;
 *   - vq_chain_read/write against a reference copy made segment by segment
 *     with gmm_read (same result code, same bytes, nothing copied past a
 *     fault), -ERANGE exactly past the end, written bytes read back when
 *     the segments do not overlap;
 *   - vq_push: the element and used->idx as written; vq_need_irq against a
 *     model (avail flags, or vring_need_event with the signalled index);
 *     vq_arm: never 1 right after an empty pop, avail_event = last_avail;
 *   - a -1 carries a reason "queue N: ..."; after it the queue is reset
 *     (no pop on a broken queue without reset) and pops nothing;
 *   - each input is run twice and must give the same digest
 *     (deterministic: no uninitialised state leaks into results).
 *   - vq_unpop (some chains are given back and popped again: the same
 *     chain), vq_push_n of one element (same checks as vq_push), vq_arm_more
 *     (avail_event = avail->idx);
 *   - virtio-net's header checks (virtio_net_hdr.c) on each chain's first
 *     12 readable bytes, as the net device reads them, under features drawn
 *     from the input: a transmit header is accepted exactly when a model of
 *     the rules says so, and a receive header that is accepted carries only
 *     what the features allow;
 * tests/vmm/meson.build builds it with clang -fsanitize=fuzzer;
 * tests/vmm/fuzz.sh virtqueue runs it.
 */
#include "virtio/virtio.h"
#include "virtio/virtio_net_hdr.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                     \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "fuzz_virtqueue: %s:%d: check failed: %s\n",    \
				__FILE__, __LINE__, #cond);                             \
			abort();                                                        \
		}                                                                       \
	} while (0)

#define RAM_SIZE 0x20000ULL
#define HOLE 0x10000ULL                 /* one page, unmapped at start */
#define IMG 0x1000ULL                   /* the image, up to the hole */
#define IMG_MAX (HOLE - IMG)
#define BEYOND 0x100000ULL              /* beyond RAM: "MMIO" */
#define MAX_IO 4096
#define HDR 16

static struct gmm_vm *vm;
static struct gmm_walker *w;
static struct vq_chain c;
static bool trace;               /* FUZZ_VQ_TRACE=1: each operation on stderr */

static void init(void)
{
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	gmm_set_log_level(GMM_LOG_ERROR);
	CHECK(gmm_vm_create(&cfg, &vm) == 0);
	struct gmm_region_spec spec = {
		.gpa = 0, .size = RAM_SIZE, .backing = GMM_BACKING_ANON, .name = "fuzz",
	};
	struct gmm_region *r;
	CHECK(gmm_region_add(vm, &spec, &r) == 0);
	CHECK(gmm_unmap(vm, HOLE, GMM_PAGE_SIZE, 0) == 0);
	w = gmm_walker_register(vm);
	CHECK(w);
	trace = getenv("FUZZ_VQ_TRACE") != NULL;
}

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static uint64_t mix64(uint64_t h, uint64_t x)
{
	return mix(h, &x, sizeof(x));
}

static bool rd16(uint64_t gpa, uint16_t *v)
{
	return gmm_read(w, gpa, v, 2) == 0;
}

static inline bool need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

/* The reference copy of [off, off + len) of the readable (or writable)
 * segments: piece by piece with gmm_read, stopping at the first fault. */
static int ref_read(const struct vq_chain *ch, bool writable, size_t off, uint8_t *dst,
		    size_t len)
{
	size_t pos = 0;    /* array offset of the segment */
	for (unsigned s = writable ? ch->nout : 0; s < (writable ? ch->nseg : ch->nout); s++) {
		size_t a = off > pos ? off : pos;
		size_t b = off + len < pos + ch->seg[s].len ? off + len : pos + ch->seg[s].len;
		if (a < b && gmm_read(w, ch->seg[s].gpa + (a - pos), dst + (a - off), b - a))
			return -EFAULT;
		pos += ch->seg[s].len;
	}
	return 0;
}

static void check_chain(const struct virtqueue *q)
{
	CHECK(c.head < q->num);
	CHECK(c.nseg == c.nout + c.nin);
	CHECK(c.nseg <= VIRTQ_MAX_CHAIN);
	uint64_t out = 0, in = 0;
	for (unsigned s = 0; s < c.nseg; s++) {
		const struct vq_seg *sg = &c.seg[s];
		CHECK(sg->len > 0);
		CHECK(sg->gpa + (sg->len - 1) >= sg->gpa);
		CHECK(sg->write == (s >= c.nout));
		if (sg->write)
			in += sg->len;
		else
			out += sg->len;
	}
	CHECK(out == c.out_bytes && in == c.in_bytes);
	CHECK(out < (1ULL << 32) && in < (1ULL << 32));
}

/* Writable pieces of [off, off + len) pairwise disjoint in guest memory. */
static bool write_pieces_disjoint(size_t off, size_t len)
{
	struct { uint64_t a, b; } p[VIRTQ_MAX_CHAIN];
	unsigned n = 0;
	size_t pos = 0;
	for (unsigned s = c.nout; s < c.nseg; s++) {
		size_t a = off > pos ? off : pos;
		size_t b = off + len < pos + c.seg[s].len ? off + len : pos + c.seg[s].len;
		if (a < b) {
			p[n].a = c.seg[s].gpa + (a - pos);
			p[n].b = p[n].a + (b - a);
			for (unsigned j = 0; j < n; j++)
				if (p[n].a < p[j].b && p[j].a < p[n].b)
					return false;
			n++;
		}
		pos += c.seg[s].len;
	}
	return true;
}

/* The transmit rules, said again independently of virtio_net_hdr.c. */
static bool model_tx_ok(const struct net_hdr *h, uint64_t f, bool vnet)
{
	unsigned gso = h->gso_type & 0x7f;
	bool ecn = h->gso_type & 0x80, csum = h->flags & 1;
	if (h->flags & ~3u)
		return false;
	if (csum && (!(f & NET_BIT(VIRTIO_NET_F_CSUM)) || !vnet))
		return false;
	if (gso == 0)
		return !ecn;
	if (!vnet || !h->gso_size)
		return false;
	if (ecn && !(f & NET_BIT(VIRTIO_NET_F_HOST_ECN)))
		return false;
	return (gso == 1 && (f & NET_BIT(VIRTIO_NET_F_HOST_TSO4))) ||
	       (gso == 4 && (f & NET_BIT(VIRTIO_NET_F_HOST_TSO6)));
}

/* virtio-net's header checks on the chain's first readable bytes. */
static uint64_t net_hdr_checks(uint64_t dg, uint8_t p, unsigned k)
{
	struct net_hdr nh;
	if (c.out_bytes < sizeof(nh) || vq_chain_read(w, &c, 0, &nh, sizeof(nh)) != 0)
		return dg;
	uint64_t feat = ((uint64_t)p * 0x9e3779b1u + k * 0x85ebca6bu) & 0x1ffff;
	bool vnet = !(p & 0x20);
	const char *tx = net_tx_hdr_problem(&nh, feat, vnet);
	CHECK((tx == NULL) == model_tx_ok(&nh, feat, vnet));
	struct net_hdr rh = nh;
	const char *rx = net_rx_hdr_fix(&rh, feat);
	if (!rx) {
		unsigned gso = rh.gso_type & 0x7f;
		CHECK(!(rh.flags & ~3u));
		CHECK((feat & NET_BIT(VIRTIO_NET_F_GUEST_CSUM)) || rh.flags == 0);
		CHECK(gso == 0 || (gso == 1 && (feat & NET_BIT(VIRTIO_NET_F_GUEST_TSO4))) ||
		      (gso == 4 && (feat & NET_BIT(VIRTIO_NET_F_GUEST_TSO6))) ||
		      (gso == 3 && (feat & NET_BIT(VIRTIO_NET_F_GUEST_UFO))));
		CHECK(!(rh.gso_type & 0x80) || (gso && (feat & NET_BIT(VIRTIO_NET_F_GUEST_ECN))));
		CHECK(memcmp((uint8_t *)&rh + 1, (uint8_t *)&nh + 1, sizeof(nh) - 1) == 0);
	}
	dg = mix64(dg, tx ? strlen(tx) : 0);
	return mix64(dg, rx ? strlen(rx) : 0);
}

static uint64_t run(const uint8_t *data, size_t size)
{
	uint8_t h[HDR] = { 0 };
	memcpy(h, data, size < HDR ? size : HDR);
	const uint8_t *img = data + (size < HDR ? size : HDR);
	size_t imglen = size > HDR ? size - HDR : 0;
	if (imglen > IMG_MAX)
		imglen = IMG_MAX;

	uint16_t num = (uint16_t)(1u << (h[0] % 9));
	bool event_idx = h[1] & 1, indirect = h[1] & 2, fold = h[1] & 4;
	size_t whylen = h[1] & 8 ? 12 : 256;
	unsigned place = (h[1] >> 4) & 7;
	uint16_t start = (uint16_t)(h[2] | h[3] << 8);
	unsigned ops = 1 + h[4] % 64;
	unsigned index = h[5];

	/* Fresh RAM, then the image. */
	static const uint8_t zero[GMM_PAGE_SIZE];
	for (uint64_t pg = 0; pg < RAM_SIZE; pg += GMM_PAGE_SIZE)
		if (pg != HOLE)
			CHECK(gmm_write(w, pg, zero, GMM_PAGE_SIZE) == 0);
	static uint8_t buf[IMG_MAX];
	memset(buf, 0, sizeof(buf));
	memcpy(buf, img, imglen);

	uint64_t desc = IMG;
	uint64_t avail = desc + VIRTQ_DESC_BYTES(num);
	uint64_t used = (avail + VIRTQ_AVAIL_BYTES(num) + 3) & ~3ULL;
	uint64_t data_start = used + VIRTQ_USED_BYTES(num);
	if (fold) {
		for (uint64_t off = 0; off + 8 <= IMG_MAX; off += 16) {
			if (IMG + off >= avail && IMG + off < data_start)
				continue;
			uint64_t a;
			memcpy(&a, buf + off, 8);
			a %= 2 * RAM_SIZE;
			memcpy(buf + off, &a, 8);
		}
	}
	if (h[1] & 0x80) {
		uint16_t idx;
		memcpy(&idx, buf + (avail + 2 - IMG), 2);
		idx = (uint16_t)(idx + start);
		memcpy(buf + (avail + 2 - IMG), &idx, 2);
	}
	CHECK(gmm_write(w, IMG, buf, IMG_MAX) == 0);
	switch (place) {
	case 4: desc = HOLE; break;
	case 5: avail = HOLE + 16; break;
	case 6: used = BEYOND; break;
	case 7: used = HOLE - 4 - 8ULL * (num / 2); break;
	default: break;
	}

	struct virtqueue q = {
		.index = index, .num = num, .ready = true, .desc = desc, .avail = avail,
		.used = used, .event_idx = event_idx, .indirect = indirect,
		.last_avail = start, .used_idx = start,
	};
	char why[256], prefix[32];
	snprintf(prefix, sizeof(prefix), "queue %u: ", index);
	size_t plen = strlen(prefix) < whylen - 1 ? strlen(prefix) : whylen - 1;
	CHECK(vq_check_layout(&q, VIRTQ_MAX_SIZE, why, whylen) == 0);

	uint64_t dg = 0xcbf29ce484222325ULL;
	bool m_valid = false;     /* model of signalled_used */
	uint16_t m_sig = 0;
	bool broken = false;
	static uint8_t io[MAX_IO], ref[MAX_IO], src[MAX_IO];

	for (unsigned k = 0; k < ops && !broken; k++) {
		uint8_t p = (uint8_t)(h[6 + k % 10] ^ (k * 0x9d));
		uint16_t prev = q.last_avail;
		uint64_t popped = q.popped;
		memset(why, 0, sizeof(why));
		int r = vq_pop(&q, w, &c, why, whylen);
		dg = mix64(dg, (uint64_t)r);
		if (trace)
			fprintf(stderr, "op %u: pop %d head %u nout %u nin %u out %llu in %llu %s\n", k,
				r, c.head, c.nout, c.nin, (unsigned long long)c.out_bytes,
				(unsigned long long)c.in_bytes, r < 0 ? why : "");
		if (r < 0) {
			CHECK(strlen(why) >= plen && memcmp(why, prefix, plen) == 0);
			CHECK(q.last_avail == prev && q.popped == popped);
			dg = mix(dg, why, strlen(why));
			broken = true;
			break;
		}
		if (r == 0) {
			CHECK(q.last_avail == prev);
			bool more = p & 0x10;
			int a = more ? vq_arm_more(&q, w, why, whylen) : vq_arm(&q, w, why, whylen);
			dg = mix64(dg, (uint64_t)a);
			CHECK(a == 0 || (a == -1 && event_idx));
			if (a == 0 && event_idx) {
				uint16_t ev, ai;
				CHECK(rd16(used + 4 + 8ULL * num, &ev) && ev == q.last_avail);
				CHECK(!more || (rd16(avail + 2, &ai) && ev == ai));
			}
			broken = a < 0;
			break;
		}
		CHECK(r == 1);
		CHECK(q.last_avail == (uint16_t)(prev + 1) && q.popped == popped + 1);
		check_chain(&q);
		if (p & 0x40) {
			/* Given back and popped again (guest memory untouched
			 * since): the same chain. */
			uint16_t head0 = c.head, nseg0 = c.nseg;
			uint64_t out0 = c.out_bytes, in0 = c.in_bytes;
			vq_unpop(&q, 1);
			CHECK(q.last_avail == prev && q.popped == popped);
			CHECK(vq_pop(&q, w, &c, why, whylen) == 1);
			CHECK(c.head == head0 && c.nseg == nseg0 && c.out_bytes == out0 &&
			      c.in_bytes == in0);
			check_chain(&q);
		}
		dg = net_hdr_checks(dg, p, k);
		dg = mix(dg, &c.head, sizeof(c.head));
		dg = mix(dg, &c.nout, sizeof(c.nout));
		dg = mix(dg, &c.nin, sizeof(c.nin));
		for (unsigned i = 0; i < c.nseg; i++) {   /* fields: not the padding */
			dg = mix64(dg, c.seg[i].gpa);
			dg = mix64(dg, c.seg[i].len | (uint64_t)c.seg[i].write << 32);
		}

		/* Read part of the readable bytes, checked against the
		 * reference; and the edges of the range. */
		size_t off = c.out_bytes ? (size_t)((p * 131u) % (c.out_bytes + 1)) : 0;
		size_t len = c.out_bytes - off < MAX_IO ? c.out_bytes - off : MAX_IO;
		memset(io, 0xa5, len);
		memset(ref, 0xa5, len);
		int rc = vq_chain_read(w, &c, off, io, len);
		CHECK(rc == ref_read(&c, false, off, ref, len));
		CHECK(rc == 0 || rc == -EFAULT);
		CHECK(memcmp(io, ref, len) == 0);
		dg = mix64(dg, (uint64_t)rc);
		dg = mix(dg, io, len);
		CHECK(vq_chain_read(w, &c, c.out_bytes, io, 0) == 0);
		CHECK(vq_chain_read(w, &c, c.out_bytes, io, 1) == -ERANGE);
		CHECK(vq_chain_read(w, &c, c.out_bytes + 1, io, 0) == -ERANGE);

		/* Write part of the writable bytes. */
		size_t woff = c.in_bytes ? (size_t)((p * 61u) % (c.in_bytes + 1)) : 0;
		size_t wlen = c.in_bytes - woff < MAX_IO ? c.in_bytes - woff : MAX_IO;
		if (p & 1)
			wlen /= 3;
		for (size_t i = 0; i < wlen; i++)
			src[i] = (uint8_t)(i * 7 + k);
		rc = vq_chain_write(w, &c, woff, src, wlen);
		CHECK(rc == 0 || rc == -EFAULT);
		dg = mix64(dg, (uint64_t)rc);
		if (rc == 0 && write_pieces_disjoint(woff, wlen)) {
			memset(ref, 0, wlen);
			CHECK(ref_read(&c, true, woff, ref, wlen) == 0);
			CHECK(memcmp(ref, src, wlen) == 0);
		}
		CHECK(vq_chain_write(w, &c, c.in_bytes, src, 1) == -ERANGE);

		/* Complete it. */
		uint32_t written = (uint32_t)(c.in_bytes >> (p & 3));
		uint16_t uidx = q.used_idx;
		rc = p & 0x10 ? vq_push_n(&q, w, &c.head, &written, 1, why, whylen)
			      : vq_push(&q, w, c.head, written, why, whylen);
		dg = mix64(dg, (uint64_t)rc);
		if (trace)
			fprintf(stderr, "op %u: push %d %s\n", k, rc, rc ? why : "");
		if (rc) {
			CHECK(rc == -1 && q.used_idx == uidx);
			CHECK(strlen(why) >= plen && memcmp(why, prefix, plen) == 0);
			broken = true;
			break;
		}
		CHECK(q.used_idx == (uint16_t)(uidx + 1));
		uint32_t elem[2];
		uint16_t gidx;
		CHECK(gmm_read(w, used + 4 + 8ULL * (uidx & (num - 1)), elem, 8) == 0);
		CHECK(elem[0] == c.head && elem[1] == written);
		CHECK(rd16(used + 2, &gidx) && gidx == q.used_idx);

		/* Interrupt?  Not after every push: batches too. */
		if (p & 2 || k + 1 == ops) {
			int want;
			uint16_t f;
			if (event_idx) {
				if (!rd16(avail + 4 + 2ULL * num, &f)) {
					want = -1;
				} else {
					want = !m_valid || need_event(f, q.used_idx, m_sig);
					m_valid = true;
					m_sig = q.used_idx;
				}
			} else {
				want = rd16(avail, &f) ? !(f & VIRTQ_AVAIL_F_NO_INTERRUPT) : -1;
			}
			int n = vq_need_irq(&q, w, why, whylen);
			if (trace)
				fprintf(stderr, "op %u: need_irq %d %s\n", k, n, n < 0 ? why : "");
			CHECK(n == want);
			dg = mix64(dg, (uint64_t)n);
			broken = n < 0;
		}
	}
	if (broken) {
		/* A broken queue is only popped again after a reset. */
		vq_reset(&q);
		CHECK(q.index == index && !q.ready && q.num == 0 && q.last_avail == 0);
		CHECK(vq_pop(&q, w, &c, why, whylen) == 0);
	}
	return mix64(dg, q.popped);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!vm)
		init();
	uint64_t a = run(data, size);
	uint64_t b = run(data, size);
	CHECK(a == b);
	return 0;
}
