// SPDX-License-Identifier: GPL-2.0-only
/*
 * test_virtqueue.c - unit tests of the split virtqueue (vmm/virtio/virtqueue.c),
 * without a device or transport: a struct virtqueue is filled by hand over
 * rings laid out in the guest RAM of a test driver (vdriver.c, used for its
 * RAM, its walker and its ring writers only).
 *
 * Good paths: direct, indirect and mixed chains, zero-length descriptors,
 * copies across segments, interrupt suppression (flags and event index),
 * arming, 16-bit index wrap-around after more than 65536 operations.
 * Hostile rings: every case vq_pop/vq_push/vq_check_layout must refuse,
 * each checked for -1 and for a reason that names the problem; data
 * segments outside RAM; and a race of a popping walker against a writer
 * that unmaps and maps the pages under the rings.
 */
#include <criterion/criterion.h>

#include "vdriver.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RAM (4ULL << 20)
/* "MMIO": a GPA well beyond RAM (where the transport windows live). */
#define MMIO_GPA VIRTIO_MMIO_BASE

static struct vdriver v;
static struct virtqueue q;
static struct vq_chain c;
static char why[256];

static void setup(void)
{
	cr_assert_eq(vd_init(&v, RAM), 0, "vd_init: %s", gmm_last_error());
}

static void teardown(void)
{
	vd_fini(&v);
}

/* Queue 0 of the driver and the device's view of it, rings in RAM. */
static void mkq(uint16_t num, bool event_idx, bool indirect)
{
	struct vd_queue *Q = &v.q[0];
	memset(Q, 0, sizeof(*Q));
	Q->num = num;
	Q->desc = vd_alloc(&v, VIRTQ_DESC_BYTES(num), 16);
	Q->avail = vd_alloc(&v, VIRTQ_AVAIL_BYTES(num), 2);
	Q->used = vd_alloc(&v, VIRTQ_USED_BYTES(num), 4);
	static const uint8_t zero[VIRTQ_DESC_BYTES(VIRTQ_MAX_SIZE)];
	vd_write(&v, Q->desc, zero, VIRTQ_DESC_BYTES(num));
	vd_write(&v, Q->avail, zero, VIRTQ_AVAIL_BYTES(num));
	vd_write(&v, Q->used, zero, VIRTQ_USED_BYTES(num));

	memset(&q, 0, sizeof(q));
	q.index = 0;
	q.num = num;
	q.desc = Q->desc;
	q.avail = Q->avail;
	q.used = Q->used;
	q.event_idx = event_idx;
	q.indirect = indirect;
	q.ready = true;
	cr_assert_eq(vq_check_layout(&q, VIRTQ_MAX_SIZE, why, sizeof(why)), 0, "%s", why);
}

static void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc d = { .addr = addr, .len = len, .flags = flags, .next = next };
	vd_set_desc(&v, 0, i, &d);
}

/* Entry i of a descriptor table at gpa (indirect tables). */
static void tdesc(uint64_t table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		  uint16_t next)
{
	struct virtq_desc d = { .addr = addr, .len = len, .flags = flags, .next = next };
	vd_write(&v, table + 16ULL * i, &d, sizeof(d));
}

static int pop(void)
{
	why[0] = 0;
	return vq_pop(&q, v.w, &c, why, sizeof(why));
}

static int push(uint16_t head, uint32_t written)
{
	why[0] = 0;
	return vq_push(&q, v.w, head, written, why, sizeof(why));
}

static int need_irq(void)
{
	why[0] = 0;
	return vq_need_irq(&q, v.w, why, sizeof(why));
}

static int arm(void)
{
	why[0] = 0;
	return vq_arm(&q, v.w, why, sizeof(why));
}

static uint16_t rd16(uint64_t gpa)
{
	uint16_t x;
	vd_read(&v, gpa, &x, 2);
	return x;
}

static void wr16(uint64_t gpa, uint16_t x)
{
	vd_write(&v, gpa, &x, 2);
}

static uint64_t buf(uint32_t len, uint8_t fill)
{
	uint64_t g = vd_alloc(&v, len, 16);
	uint8_t tmp[4096];
	for (uint32_t off = 0; off < len; off += sizeof(tmp)) {
		uint32_t n = len - off < sizeof(tmp) ? len - off : (uint32_t)sizeof(tmp);
		memset(tmp, fill, n);
		vd_write(&v, g + off, tmp, n);
	}
	return g;
}

/* pop() must fail and say `what`. */
#define assert_broken(what)                                                                 \
	do {                                                                                \
		int rc_ = pop();                                                            \
		cr_assert_eq(rc_, -1, "pop returned %d, expected -1 (%s)", rc_, what);      \
		cr_assert(strstr(why, what), "reason \"%s\" lacks \"%s\"", why, what);       \
		cr_assert(strncmp(why, "queue 0: ", 9) == 0, "reason \"%s\"", why);          \
	} while (0)

/* ==== good paths ===================================================== */

TestSuite(vq, .init = setup, .fini = teardown);

Test(vq, direct_chain)
{
	mkq(8, false, false);
	uint64_t a = buf(100, 'a'), b = buf(50, 'b'), in = buf(200, 0);
	struct vd_buf bufs[] = { { a, 100, false }, { b, 50, false }, { in, 200, true } };
	int head = vd_add(&v, 0, bufs, 3, false);

	cr_assert_eq(pop(), 1, "%s", why);
	cr_assert_eq(c.head, head);
	cr_assert_eq(c.nseg, 3);
	cr_assert_eq(c.nout, 2);
	cr_assert_eq(c.nin, 1);
	cr_assert_eq(c.out_bytes, 150);
	cr_assert_eq(c.in_bytes, 200);
	cr_assert_eq(c.seg[0].gpa, a);
	cr_assert_eq(c.seg[1].gpa, b);
	cr_assert_eq(c.seg[2].gpa, in);
	cr_assert(!c.seg[0].write && !c.seg[1].write && c.seg[2].write);
	cr_assert_eq(q.last_avail, 1);
	cr_assert_eq(q.popped, 1);

	/* The readable bytes as one array, and a piece across the boundary. */
	uint8_t out[150];
	cr_assert_eq(vq_chain_read(v.w, &c, 0, out, 150), 0);
	for (int i = 0; i < 150; i++)
		cr_assert_eq(out[i], i < 100 ? 'a' : 'b', "byte %d", i);
	uint8_t mid[10];
	cr_assert_eq(vq_chain_read(v.w, &c, 95, mid, 10), 0);
	cr_assert(memcmp(mid, "aaaaabbbbb", 10) == 0);
	cr_assert_eq(vq_chain_read(v.w, &c, 100, mid, 51), -ERANGE);
	cr_assert_eq(vq_chain_read(v.w, &c, 151, mid, 0), -ERANGE);
	cr_assert_eq(vq_chain_read(v.w, &c, 150, mid, 0), 0);

	/* The writable bytes. */
	cr_assert_eq(vq_chain_write(v.w, &c, 10, "hello", 5), 0);
	char got[16];
	vd_read(&v, in + 10, got, 5);
	cr_assert(memcmp(got, "hello", 5) == 0);
	cr_assert_eq(vq_chain_write(v.w, &c, 196, "hello", 5), -ERANGE);

	cr_assert_eq(push((uint16_t)head, 15), 0, "%s", why);
	cr_assert_eq(rd16(q.used + 2), 1);
	uint32_t elem[2];
	vd_read(&v, q.used + 4, elem, 8);
	cr_assert_eq(elem[0], (uint32_t)head);
	cr_assert_eq(elem[1], 15);
	cr_assert_eq(q.used_idx, 1);
	cr_assert_eq(q.pushed, 1);
	uint32_t len;
	cr_assert_eq(vd_wait_used(&v, 0, 0, &len), head);
	cr_assert_eq(len, 15);

	cr_assert_eq(pop(), 0, "%s", why);
}

Test(vq, several_chains_in_ring_order)
{
	mkq(4, false, false);
	uint64_t b = buf(64, 'x');
	int heads[4];
	for (int i = 0; i < 4; i++) {
		struct vd_buf bb = { b, (uint32_t)(i + 1), false };
		heads[i] = vd_add(&v, 0, &bb, 1, false);
	}
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(pop(), 1, "%s", why);
		cr_assert_eq(c.head, heads[i]);
		cr_assert_eq(c.out_bytes, (uint64_t)(i + 1));
	}
	cr_assert_eq(pop(), 0);
	/* Completed out of order. */
	for (int i = 3; i >= 0; i--)
		cr_assert_eq(push((uint16_t)heads[i], 0), 0, "%s", why);
	for (int i = 3; i >= 0; i--)
		cr_assert_eq(vd_wait_used(&v, 0, 0, NULL), heads[i]);
}

Test(vq, indirect_chain)
{
	mkq(8, false, true);
	uint64_t a = buf(30, 'a'), b = buf(40, 'b'), in1 = buf(8, 0), in2 = buf(8, 0);
	struct vd_buf bufs[] = {
		{ a, 30, false }, { b, 40, false }, { in1, 8, true }, { in2, 8, true },
	};
	int head = vd_add(&v, 0, bufs, 4, true);
	cr_assert_eq(pop(), 1, "%s", why);
	cr_assert_eq(c.head, head);
	cr_assert_eq(c.nseg, 4);
	cr_assert_eq(c.nout, 2);
	cr_assert_eq(c.nin, 2);
	cr_assert_eq(c.out_bytes, 70);
	cr_assert_eq(c.in_bytes, 16);
	cr_assert_eq(c.seg[3].gpa, in2);
	cr_assert_eq(vq_chain_write(v.w, &c, 4, "0123456789ab", 12), 0);
	char x[8];
	vd_read(&v, in1, x, 8);
	cr_assert(memcmp(x + 4, "0123", 4) == 0);
	vd_read(&v, in2, x, 8);
	cr_assert(memcmp(x, "456789ab", 8) == 0);
	/* One descriptor of the ring was used. */
	cr_assert_eq(v.q[0].next_desc, (head + 1) % 8);
}

Test(vq, direct_then_indirect)
{
	mkq(8, false, true);
	uint64_t a = buf(10, 'a'), b = buf(20, 'b'), w = buf(30, 0);
	uint64_t t = vd_alloc(&v, 32, 16);
	tdesc(t, 1, w, 30, VIRTQ_DESC_F_WRITE, 0);
	tdesc(t, 0, b, 20, VIRTQ_DESC_F_NEXT, 1);
	desc(2, a, 10, VIRTQ_DESC_F_NEXT, 5);
	/* The WRITE flag of the pointing descriptor is ignored. */
	desc(5, t, 32, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
	vd_publish(&v, 0, 2);
	cr_assert_eq(pop(), 1, "%s", why);
	cr_assert_eq(c.head, 2);
	cr_assert_eq(c.nseg, 3);
	cr_assert_eq(c.nout, 2);
	cr_assert_eq(c.seg[0].gpa, a);
	cr_assert_eq(c.seg[1].gpa, b);
	cr_assert_eq(c.seg[2].gpa, w);
}

Test(vq, zero_length_descriptors_skipped)
{
	mkq(8, false, true);
	uint64_t a = buf(10, 'a'), w = buf(10, 0);
	desc(0, a, 10, VIRTQ_DESC_F_NEXT, 1);
	desc(1, 0xdead0000, 0, VIRTQ_DESC_F_NEXT, 2);   /* skipped, address not looked at */
	desc(2, w, 10, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3);
	desc(3, a, 0, VIRTQ_DESC_F_NEXT, 4);            /* readable, but empty: no order error */
	desc(4, w, 0, VIRTQ_DESC_F_WRITE, 0);
	vd_publish(&v, 0, 0);
	cr_assert_eq(pop(), 1, "%s", why);
	cr_assert_eq(c.nseg, 2);
	cr_assert_eq(c.nout, 1);
	cr_assert_eq(c.nin, 1);
	cr_assert_eq(c.seg[1].gpa, w);

	/* A chain of nothing but an empty descriptor is a valid empty chain. */
	desc(6, 0, 0, 0, 0);
	vd_publish(&v, 0, 6);
	cr_assert_eq(pop(), 1, "%s", why);
	cr_assert_eq(c.nseg, 0);
	cr_assert_eq(c.out_bytes + c.in_bytes, 0);
	uint8_t x;
	cr_assert_eq(vq_chain_read(v.w, &c, 0, &x, 1), -ERANGE);
	cr_assert_eq(vq_chain_write(v.w, &c, 0, &x, 0), 0);
}

Test(vq, largest_legal_chain)
{
	/* 256 descriptors: 128 direct + an indirect table of 128. */
	mkq(256, false, true);
	uint64_t b = buf(4096, 'z');
	uint64_t t = vd_alloc(&v, 16 * 128, 16);
	for (int i = 0; i < 128; i++)
		desc((uint16_t)i, b + (uint64_t)i, 1, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
	desc(128, t, 16 * 128, VIRTQ_DESC_F_INDIRECT, 0);
	for (int i = 0; i < 128; i++)
		tdesc(t, (uint16_t)i, b, 2, VIRTQ_DESC_F_WRITE | (i < 127 ? VIRTQ_DESC_F_NEXT : 0),
		      (uint16_t)(i + 1));
	vd_publish(&v, 0, 0);
	cr_assert_eq(pop(), 1, "%s", why);
	cr_assert_eq(c.nseg, VIRTQ_MAX_CHAIN);
	cr_assert_eq(c.nout, 128);
	cr_assert_eq(c.nin, 128);
	cr_assert_eq(c.out_bytes, 128);
	cr_assert_eq(c.in_bytes, 256);
	uint8_t all[128];
	cr_assert_eq(vq_chain_read(v.w, &c, 0, all, 128), 0);
	for (int i = 0; i < 128; i++)
		cr_assert_eq(all[i], 'z');
}

Test(vq, max_lengths_without_overflow)
{
	/* 2^32 - 1 bytes each way is legal (the segments are not touched). */
	mkq(8, false, false);
	desc(0, 0x100000000ULL, 0xffffffffu, VIRTQ_DESC_F_NEXT, 1);
	desc(1, 0x200000000ULL, 0xffffffffu, VIRTQ_DESC_F_WRITE, 0);
	vd_publish(&v, 0, 0);
	cr_assert_eq(pop(), 1, "%s", why);
	cr_assert_eq(c.out_bytes, 0xffffffffULL);
	cr_assert_eq(c.in_bytes, 0xffffffffULL);
	/* A segment ending exactly at 2^64 does not wrap. */
	desc(2, UINT64_MAX - 9, 10, 0, 0);
	vd_publish(&v, 0, 2);
	cr_assert_eq(pop(), 1, "%s", why);
	uint8_t x[10];
	cr_assert_eq(vq_chain_read(v.w, &c, 0, x, 10), -EFAULT);
}

Test(vq, not_ready_pops_nothing)
{
	mkq(8, false, false);
	desc(0, buf(8, 1), 8, 0, 0);
	vd_publish(&v, 0, 0);
	q.ready = false;
	cr_assert_eq(pop(), 0);
	cr_assert_eq(push(0, 0), -1);
	q.ready = true;
	cr_assert_eq(pop(), 1, "%s", why);
}

Test(vq, reset_keeps_index_and_statistics)
{
	mkq(8, true, true);
	q.index = 3;
	desc(0, buf(8, 1), 8, 0, 0);
	vd_publish(&v, 0, 0);
	cr_assert_eq(pop(), 1, "%s", why);
	cr_assert_eq(push(0, 0), 0, "%s", why);
	cr_assert_eq(need_irq(), 1, "%s", why);
	vq_reset(&q);
	cr_assert_eq(q.index, 3);
	cr_assert_eq(q.num, 0);
	cr_assert(!q.ready && !q.event_idx && !q.indirect && !q.signalled_valid);
	cr_assert_eq(q.desc | q.avail | q.used, 0);
	cr_assert_eq(q.last_avail | q.used_idx | q.signalled_used, 0);
	cr_assert_eq(q.popped, 1);
	cr_assert_eq(q.pushed, 1);
	cr_assert_eq(q.irqs, 1);
	cr_assert_eq(pop(), 0);
}

/* ---- interrupts and notifications ----------------------------------- */

Test(vq, need_irq_flags)
{
	mkq(8, false, false);
	uint64_t b = buf(8, 0);
	for (int i = 0; i < 2; i++) {
		struct vd_buf bb = { b, 8, true };
		vd_add(&v, 0, &bb, 1, false);
	}
	cr_assert_eq(pop(), 1);
	cr_assert_eq(push(c.head, 8), 0, "%s", why);
	cr_assert_eq(need_irq(), 1, "%s", why);
	wr16(q.avail, VIRTQ_AVAIL_F_NO_INTERRUPT);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(push(c.head, 8), 0, "%s", why);
	cr_assert_eq(need_irq(), 0, "%s", why);
	cr_assert_eq(q.irqs, 1);
	cr_assert_eq(q.suppressed, 1);
	/* Without event-index the used ring's avail_event is not written. */
	cr_assert_eq(arm(), 0, "%s", why);
	cr_assert_eq(rd16(q.used + 4 + 8 * 8), 0);
}

Test(vq, need_irq_event_idx)
{
	mkq(8, true, false);
	uint64_t used_event = q.avail + 4 + 2 * 8;
	uint64_t b = buf(8, 0);
	struct vd_buf bb = { b, 8, true };

	/* First interrupt: nothing signalled yet, always. */
	wr16(used_event, 100);
	vd_add(&v, 0, &bb, 1, false);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(push(c.head, 1), 0, "%s", why);
	cr_assert_eq(need_irq(), 1, "%s", why);
	cr_assert(q.signalled_valid);
	cr_assert_eq(q.signalled_used, 1);

	/* The driver wants an interrupt when used->idx passes 3 (used_event
	 * = 3: after the entry with index 3 is used, i.e. used->idx 4). */
	wr16(used_event, 3);
	int expect[] = { 0, 0, 1, 0 };   /* after used->idx 2, 3, 4, 5 */
	for (int i = 0; i < 4; i++) {
		vd_add(&v, 0, &bb, 1, false);
		cr_assert_eq(pop(), 1);
		cr_assert_eq(push(c.head, 1), 0, "%s", why);
		cr_assert_eq(need_irq(), expect[i], "used->idx %u: %s", q.used_idx, why);
	}

	/* Several pushes in one batch crossing used_event: one interrupt. */
	wr16(used_event, 6);
	for (int i = 0; i < 3; i++) {
		vd_add(&v, 0, &bb, 1, false);
		cr_assert_eq(pop(), 1);
		cr_assert_eq(push(c.head, 1), 0, "%s", why);
	}
	cr_assert_eq(q.used_idx, 8);
	cr_assert_eq(need_irq(), 1, "%s", why);
	/* No new push: no interrupt. */
	cr_assert_eq(need_irq(), 0, "%s", why);
	/* A used_event already behind us: suppressed. */
	wr16(used_event, 2);
	vd_add(&v, 0, &bb, 1, false);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(push(c.head, 1), 0);
	cr_assert_eq(need_irq(), 0, "%s", why);
	/* The avail flags are ignored with event-index. */
	wr16(q.avail, VIRTQ_AVAIL_F_NO_INTERRUPT);
	wr16(used_event, 9);
	vd_add(&v, 0, &bb, 1, false);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(push(c.head, 1), 0);
	cr_assert_eq(need_irq(), 1, "%s", why);
}

Test(vq, arm_event_idx)
{
	mkq(8, true, false);
	uint64_t avail_event = q.used + 4 + 8 * 8;
	wr16(avail_event, 0x5555);
	cr_assert_eq(arm(), 0, "%s", why);
	cr_assert_eq(rd16(avail_event), 0);

	uint64_t b = buf(8, 0);
	struct vd_buf bb = { b, 8, false };
	vd_add(&v, 0, &bb, 1, false);
	vd_add(&v, 0, &bb, 1, false);
	/* More arrived before we slept: pop again. */
	cr_assert_eq(arm(), 1, "%s", why);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(arm(), 1, "%s", why);
	cr_assert_eq(rd16(avail_event), 1);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(arm(), 0, "%s", why);
	cr_assert_eq(rd16(avail_event), 2);
	/* A broken avail idx is reported by arm too. */
	vd_set_avail_idx(&v, 0, 50);
	cr_assert_eq(arm(), -1);
	cr_assert(strstr(why, "ahead"), "%s", why);
}

Test(vq, wrap_near_65536)
{
	mkq(4, true, false);
	uint16_t start = 65533;
	vd_set_avail_idx(&v, 0, start);
	wr16(q.used + 2, start);
	v.q[0].last_used = start;
	q.last_avail = q.used_idx = start;
	uint64_t b = buf(8, 0);
	struct vd_buf bb = { b, 8, true };
	for (int i = 0; i < 8; i++) {
		int head = vd_add(&v, 0, &bb, 1, false);
		cr_assert_eq(pop(), 1, "op %d: %s", i, why);
		cr_assert_eq(c.head, head);
		cr_assert_eq(push(c.head, 3), 0, "%s", why);
		cr_assert_eq(vd_wait_used(&v, 0, 0, NULL), head, "op %d", i);
	}
	cr_assert_eq(q.last_avail, (uint16_t)(start + 8));
	cr_assert_eq(rd16(q.used + 2), (uint16_t)(start + 8));

	/* A batch across the wrap: used_event 65535 lies in [65533, 1). */
	vd_set_avail_idx(&v, 0, start);
	wr16(q.used + 2, start);
	v.q[0].last_used = start;
	q.last_avail = q.used_idx = q.signalled_used = start;
	q.signalled_valid = true;
	wr16(q.avail + 4 + 2 * 4, 65535);
	for (int i = 0; i < 4; i++) {
		vd_add(&v, 0, &bb, 1, false);
		cr_assert_eq(pop(), 1, "%s", why);
		cr_assert_eq(push(c.head, 1), 0, "%s", why);
	}
	cr_assert_eq(q.used_idx, 1);
	cr_assert_eq(need_irq(), 1, "%s", why);
	/* ... and 65532 does not (it lies before the batch). */
	q.last_avail = q.used_idx = q.signalled_used = start;
	vd_set_avail_idx(&v, 0, start);
	wr16(q.avail + 4 + 2 * 4, 65532);
	for (int i = 0; i < 4; i++) {
		vd_add(&v, 0, &bb, 1, false);
		cr_assert_eq(pop(), 1, "%s", why);
		cr_assert_eq(push(c.head, 1), 0, "%s", why);
	}
	cr_assert_eq(need_irq(), 0, "%s", why);
}

Test(vq, wrap_after_65536_ops, .timeout = 120)
{
	mkq(4, true, false);
	uint64_t used_event = q.avail + 4 + 2 * 4;
	uint64_t b = buf(16, 0);
	const unsigned n = 70000;
	for (unsigned i = 0; i < n; i++) {
		struct vd_buf bb[2] = { { b, 4, false }, { b + 8, 8, true } };
		int head = vd_add(&v, 0, bb, 2, false);
		/* Ask for an interrupt at this buffer, at a later one, or at
		 * one already passed (65535 % 3 == 0: the push that wraps
		 * used->idx to 0 must interrupt). */
		uint16_t u = q.used_idx;
		uint16_t ev[3] = { u, (uint16_t)(u + 2), (uint16_t)(u - 1) };
		wr16(used_event, ev[i % 3]);
		int r = pop();
		if (r != 1)
			cr_assert_fail("op %u: pop %d: %s", i, r, why);
		if (c.head != head || c.nseg != 2)
			cr_assert_fail("op %u: head %u (want %d), nseg %u", i, c.head, head, c.nseg);
		if (push(c.head, 8) != 0)
			cr_assert_fail("op %u: push: %s", i, why);
		int irq = need_irq();
		if (irq != (i % 3 ? 0 : 1))
			cr_assert_fail("op %u: used->idx %u used_event %u: need_irq %d", i, q.used_idx,
				 rd16(used_event), irq);
		if (rd16(q.used + 2) != (uint16_t)(i + 1))
			cr_assert_fail("op %u: used->idx %u", i, rd16(q.used + 2));
		v.q[0].last_used++;
	}
	cr_assert_eq(q.popped, n);
	cr_assert_eq(q.pushed, n);
	cr_assert_eq(q.irqs, (n + 2) / 3);
	cr_assert_eq(q.suppressed, n - (n + 2) / 3);
	cr_assert_eq(q.last_avail, (uint16_t)n);
	cr_assert_eq(pop(), 0);
}

/* ==== hostile rings ================================================== */

TestSuite(hostile, .init = setup, .fini = teardown);

Test(hostile, desc_table_outside_ram)
{
	mkq(8, false, false);
	vd_publish(&v, 0, 0);
	q.desc = RAM;                     /* just beyond the end */
	assert_broken("descriptor 0 at 0x400000 is not guest RAM");
	q.desc = MMIO_GPA;                /* over "MMIO" */
	assert_broken("is not guest RAM");
	q.desc = RAM - 64;                /* straddles the end of RAM */
	vd_publish(&v, 0, 4);             /* entry 4 is beyond the end */
	q.last_avail = 1;
	assert_broken("descriptor 4");
	/* Nothing was consumed. */
	cr_assert_eq(q.last_avail, 1);
	cr_assert_eq(q.popped, 0);
}

Test(hostile, avail_outside_ram)
{
	mkq(8, false, false);
	q.avail = MMIO_GPA;
	assert_broken("avail ring idx");
	q.avail = GMM_GPA_LIMIT - 64;     /* legal layout, nothing there */
	cr_assert_eq(vq_check_layout(&q, 256, why, sizeof(why)), 0, "%s", why);
	assert_broken("avail ring idx");
	cr_assert_eq(need_irq(), -1);
	cr_assert(strstr(why, "avail ring flags"), "%s", why);
	q.event_idx = true;
	cr_assert_eq(need_irq(), -1);
	cr_assert(strstr(why, "used_event"), "%s", why);
	cr_assert_eq(arm(), -1);
	cr_assert(strstr(why, "avail ring idx"), "%s", why);
}

Test(hostile, used_outside_ram)
{
	mkq(8, true, false);
	desc(0, buf(8, 0), 8, VIRTQ_DESC_F_WRITE, 0);
	vd_publish(&v, 0, 0);
	q.used = MMIO_GPA;
	cr_assert_eq(pop(), 1, "%s", why);
	cr_assert_eq(push(0, 8), -1);
	cr_assert(strstr(why, "used ring entry 0 at 0xd0800004 is not guest RAM"), "%s", why);
	cr_assert_eq(q.used_idx, 0);
	cr_assert_eq(q.pushed, 0);
	cr_assert_eq(arm(), -1);
	cr_assert(strstr(why, "avail_event"), "%s", why);
}

Test(hostile, rings_in_unmapped_ram)
{
	mkq(8, true, false);
	/* Each ring on a page of its own, then the pages unmapped one at a
	 * time. */
	uint64_t p = vd_alloc(&v, 3 * GMM_PAGE_SIZE, GMM_PAGE_SIZE);
	q.desc = v.q[0].desc = p;
	q.avail = v.q[0].avail = p + GMM_PAGE_SIZE;
	q.used = v.q[0].used = p + 2 * GMM_PAGE_SIZE;
	uint64_t b = buf(8, 0);
	struct vd_buf bb = { b, 8, true };
	cr_assert_eq(vd_add(&v, 0, &bb, 1, false), 0);

	cr_assert_eq(gmm_unmap(v.mem, q.desc, GMM_PAGE_SIZE, 0), 0, "%s", gmm_last_error());
	assert_broken("descriptor 0 at 0x");
	cr_assert_eq(q.last_avail, 0);
	cr_assert_eq(gmm_map(v.mem, q.desc, GMM_PAGE_SIZE), 0, "%s", gmm_last_error());
	desc(0, b, 8, VIRTQ_DESC_F_WRITE, 0);     /* the page came back zeroed */
	cr_assert_eq(pop(), 1, "%s", why);
	cr_assert_eq(c.nin, 1);

	cr_assert_eq(gmm_unmap(v.mem, q.used, GMM_PAGE_SIZE, 0), 0, "%s", gmm_last_error());
	cr_assert_eq(push(c.head, 8), -1);
	cr_assert(strstr(why, "used ring entry 0 at 0x"), "%s", why);
	cr_assert_eq(q.used_idx, 0);
	cr_assert_eq(arm(), -1);
	cr_assert(strstr(why, "avail_event"), "%s", why);
	cr_assert_eq(gmm_map(v.mem, q.used, GMM_PAGE_SIZE), 0, "%s", gmm_last_error());
	cr_assert_eq(push(c.head, 8), 0, "%s", why);
	cr_assert_eq(rd16(q.used + 2), 1);

	cr_assert_eq(gmm_unmap(v.mem, q.avail, GMM_PAGE_SIZE, 0), 0, "%s", gmm_last_error());
	assert_broken("avail ring idx at 0x");
	cr_assert_eq(need_irq(), -1);
	cr_assert(strstr(why, "used_event"), "%s", why);
	cr_assert_eq(gmm_map(v.mem, q.avail, GMM_PAGE_SIZE), 0, "%s", gmm_last_error());
	/* Zeroed: avail->idx 0 is one behind last_avail 1, i.e. 65535 ahead. */
	assert_broken("65535 entries ahead");
}

Test(hostile, used_ring_read_only)
{
	mkq(8, false, false);
	desc(0, buf(8, 0), 8, VIRTQ_DESC_F_WRITE, 0);
	vd_publish(&v, 0, 0);
	uint64_t page = q.used & ~(GMM_PAGE_SIZE - 1);
	cr_assert_eq(gmm_protect(v.mem, page, GMM_PAGE_SIZE, false), 0, "%s", gmm_last_error());
	cr_assert_eq(pop(), 1, "%s", why);     /* reading is fine */
	cr_assert_eq(push(0, 8), -1);
	cr_assert(strstr(why, "read-only"), "%s", why);
	cr_assert_eq(gmm_protect(v.mem, page, GMM_PAGE_SIZE, true), 0);
	cr_assert_eq(push(0, 8), 0, "%s", why);
}

Test(hostile, self_loop)
{
	mkq(8, false, false);
	desc(3, buf(8, 0), 8, VIRTQ_DESC_F_NEXT, 3);
	vd_publish(&v, 0, 3);
	assert_broken("chain from head 3 loops (descriptor 3 is reached twice)");
}

Test(hostile, two_cycle)
{
	mkq(8, false, false);
	uint64_t b = buf(8, 0);
	desc(1, b, 8, VIRTQ_DESC_F_NEXT, 2);
	desc(2, b, 8, VIRTQ_DESC_F_NEXT, 1);
	vd_publish(&v, 0, 1);
	assert_broken("loops (descriptor 1 is reached twice)");
}

Test(hostile, zero_length_loop)
{
	/* Empty descriptors add no segment, but a loop of them is a loop. */
	mkq(8, false, false);
	desc(0, 0, 0, VIRTQ_DESC_F_NEXT, 1);
	desc(1, 0, 0, VIRTQ_DESC_F_NEXT, 0);
	vd_publish(&v, 0, 0);
	assert_broken("loops");
}

Test(hostile, chain_longer_than_queue)
{
	/* A chain through all num descriptors and on: it must come back. */
	mkq(16, false, false);
	uint64_t b = buf(8, 0);
	for (int i = 0; i < 16; i++)
		desc((uint16_t)i, b, 8, VIRTQ_DESC_F_NEXT, (uint16_t)((i + 1) % 16));
	vd_publish(&v, 0, 5);
	assert_broken("chain from head 5 loops (descriptor 5 is reached twice)");
}

Test(hostile, chain_longer_than_max)
{
	/* 200 direct descriptors + an indirect table of 100. */
	mkq(256, false, true);
	uint64_t b = buf(8, 0);
	uint64_t t = vd_alloc(&v, 16 * 100, 16);
	for (int i = 0; i < 200; i++)
		desc((uint16_t)i, b, 1, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
	desc(200, t, 16 * 100, VIRTQ_DESC_F_INDIRECT, 0);
	for (int i = 0; i < 100; i++)
		tdesc(t, (uint16_t)i, b, 1, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
	tdesc(t, 99, b, 1, 0, 0);
	vd_publish(&v, 0, 0);
	assert_broken("chain from head 0 has more than 256 descriptors");
}

Test(hostile, indirect_bad_lengths)
{
	mkq(8, false, true);
	uint64_t t = vd_alloc(&v, 16 * 300, 16);
	tdesc(t, 0, buf(8, 0), 8, 0, 0);
	uint32_t bad[] = { 0, 8, 20, 16 * 257, 0xfffffff0u };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		desc((uint16_t)i, t, bad[i], VIRTQ_DESC_F_INDIRECT, 0);
		vd_publish(&v, 0, (uint16_t)i);
		assert_broken("indirect table length");
		q.last_avail++;   /* skip it, as if reset */
	}
	/* 256 entries is the limit and legal. */
	desc(6, t, 16 * 256, VIRTQ_DESC_F_INDIRECT, 0);
	vd_publish(&v, 0, 6);
	cr_assert_eq(pop(), 1, "%s", why);
	cr_assert_eq(c.nseg, 1);
}

Test(hostile, indirect_table_outside_ram)
{
	mkq(8, false, true);
	desc(0, MMIO_GPA, 64, VIRTQ_DESC_F_INDIRECT, 0);
	vd_publish(&v, 0, 0);
	assert_broken("indirect descriptor 0 (table 0xd0800000 from descriptor 0) at 0xd0800000 "
		      "is not guest RAM");
	q.last_avail++;
	desc(1, UINT64_MAX - 15, 32, VIRTQ_DESC_F_INDIRECT, 0);
	vd_publish(&v, 0, 1);
	assert_broken("wraps");
	q.last_avail++;
	/* A table straddling the end of RAM: the entry beyond it fails. */
	uint64_t t = RAM - 16;
	tdesc(t, 0, buf(8, 0), 8, VIRTQ_DESC_F_NEXT, 1);
	desc(2, t, 32, VIRTQ_DESC_F_INDIRECT, 0);
	vd_publish(&v, 0, 2);
	assert_broken("indirect descriptor 1");
}

Test(hostile, nested_indirect)
{
	mkq(8, false, true);
	uint64_t t1 = vd_alloc(&v, 32, 16), t2 = vd_alloc(&v, 16, 16);
	uint64_t b = buf(8, 0);
	tdesc(t2, 0, b, 8, 0, 0);
	tdesc(t1, 0, b, 8, VIRTQ_DESC_F_NEXT, 1);
	tdesc(t1, 1, t2, 16, VIRTQ_DESC_F_INDIRECT, 0);
	desc(4, t1, 32, VIRTQ_DESC_F_INDIRECT, 0);
	vd_publish(&v, 0, 4);
	assert_broken("indirect descriptor 1 (table");
	cr_assert(strstr(why, "from descriptor 4): nested INDIRECT"), "%s", why);
}

Test(hostile, indirect_with_next)
{
	mkq(8, false, true);
	uint64_t t = vd_alloc(&v, 16, 16);
	tdesc(t, 0, buf(8, 0), 8, 0, 0);
	desc(0, t, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	desc(1, 0, 0, 0, 0);
	vd_publish(&v, 0, 0);
	assert_broken("descriptor 0: INDIRECT together with NEXT");
}

Test(hostile, indirect_without_feature)
{
	mkq(8, false, false);
	uint64_t t = vd_alloc(&v, 16, 16);
	tdesc(t, 0, buf(8, 0), 8, 0, 0);
	desc(0, t, 16, VIRTQ_DESC_F_INDIRECT, 0);
	vd_publish(&v, 0, 0);
	assert_broken("descriptor 0: INDIRECT without VIRTIO_F_INDIRECT_DESC");
	/* The same chain is fine with the feature. */
	q.indirect = true;
	cr_assert_eq(pop(), 1, "%s", why);
}

Test(hostile, indirect_next_out_of_table_and_loop)
{
	mkq(8, false, true);
	uint64_t t = vd_alloc(&v, 64, 16), b = buf(8, 0);
	tdesc(t, 0, b, 8, VIRTQ_DESC_F_NEXT, 3);
	tdesc(t, 3, b, 8, VIRTQ_DESC_F_NEXT, 4);    /* table has 4 entries */
	desc(0, t, 64, VIRTQ_DESC_F_INDIRECT, 0);
	vd_publish(&v, 0, 0);
	assert_broken("indirect descriptor 3 (table");
	cr_assert(strstr(why, "next 4 >= indirect table size 4"), "%s", why);

	q.last_avail++;
	tdesc(t, 3, b, 8, VIRTQ_DESC_F_NEXT, 0);
	vd_publish(&v, 0, 0);
	assert_broken("loops (indirect descriptor 0");
}

Test(hostile, head_out_of_range)
{
	mkq(8, false, false);
	vd_publish(&v, 0, 8);
	assert_broken("avail ring entry 0: head 8 >= queue size 8");
	cr_assert_eq(q.last_avail, 0);
	q.last_avail = 1;
	vd_publish(&v, 0, 0xffff);
	assert_broken("avail ring entry 1: head 65535 >= queue size 8");
}

Test(hostile, next_out_of_range)
{
	mkq(256, false, false);
	desc(7, buf(8, 0), 8, VIRTQ_DESC_F_NEXT, 300);
	vd_publish(&v, 0, 7);
	cr_assert_eq(pop(), -1);
	cr_assert_str_eq(why, "queue 0: descriptor 7: next 300 >= queue size 256");
}

Test(hostile, readable_after_writable)
{
	mkq(8, false, true);
	uint64_t b = buf(8, 0);
	desc(0, b, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	desc(1, b, 8, VIRTQ_DESC_F_NEXT, 2);
	desc(2, b, 8, 0, 0);
	vd_publish(&v, 0, 0);
	assert_broken("descriptor 1: readable buffer after a writable one");
	/* The same across the indirect boundary. */
	q.last_avail++;
	uint64_t t = vd_alloc(&v, 16, 16);
	tdesc(t, 0, b, 8, 0, 0);
	desc(3, b, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 4);
	desc(4, t, 16, VIRTQ_DESC_F_INDIRECT, 0);
	vd_publish(&v, 0, 3);
	assert_broken("indirect descriptor 0 (table");
}

Test(hostile, segment_wraps)
{
	mkq(8, false, true);
	desc(0, UINT64_MAX - 10, 100, 0, 0);
	vd_publish(&v, 0, 0);
	assert_broken("descriptor 0: buffer 0xfffffffffffffff5 + 100 wraps around");
	q.last_avail++;
	uint64_t t = vd_alloc(&v, 16, 16);
	tdesc(t, 0, UINT64_MAX, 2, VIRTQ_DESC_F_WRITE, 0);
	desc(1, t, 16, VIRTQ_DESC_F_INDIRECT, 0);
	vd_publish(&v, 0, 1);
	assert_broken("wraps around");
}

Test(hostile, byte_sums_overflow)
{
	mkq(8, false, false);
	desc(0, 0x1000, 0x80000000u, VIRTQ_DESC_F_NEXT, 1);
	desc(1, 0x1000, 0x80000000u, 0, 0);
	vd_publish(&v, 0, 0);
	assert_broken("descriptor 1: readable bytes of chain from head 0 reach 2^32");
	q.last_avail++;
	desc(2, 0x1000, 0xffffffffu, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3);
	desc(3, 0x1000, 1, VIRTQ_DESC_F_WRITE, 0);
	vd_publish(&v, 0, 2);
	assert_broken("writable bytes");
	/* Many segments summing past 2^32 (no single one huge). */
	q.last_avail++;
	for (int i = 0; i < 5; i++)
		desc((uint16_t)(i + 3), 0x1000, 0x40000000u, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 4));
	desc(7, 0, 0, 0, 0);
	vd_publish(&v, 0, 3);
	assert_broken("reach 2^32");
}

Test(hostile, avail_idx_jump)
{
	mkq(8, false, false);
	vd_set_avail_idx(&v, 0, 9);
	assert_broken("avail idx 9 is 9 entries ahead of the device's 0 (queue size 8)");
	cr_assert_eq(arm(), -1);
	/* Behind us counts as far ahead. */
	q.last_avail = 5;
	vd_set_avail_idx(&v, 0, 4);
	assert_broken("65535 entries ahead");
	/* Exactly num ahead is legal: all heads 0, a zero descriptor. */
	q.last_avail = 0;
	vd_set_avail_idx(&v, 0, 8);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(pop(), 1, "%d: %s", i, why);
	cr_assert_eq(pop(), 0);
}

Test(hostile, check_layout)
{
	mkq(8, false, false);
	struct virtqueue good = q;
	uint16_t bad_num[] = { 0, 3, 6, 255, 512 };
	for (unsigned i = 0; i < sizeof(bad_num) / sizeof(bad_num[0]); i++) {
		q = good;
		q.num = bad_num[i];
		cr_assert_eq(vq_check_layout(&q, 1024, why, sizeof(why)), -1, "num %u", q.num);
		cr_assert(strstr(why, "is not a power of two in [1, 256]"), "%s", why);
		/* A ring op refuses too, whatever the caller skipped. */
		cr_assert_eq(pop(), -1);
		cr_assert_eq(push(0, 0), -1);
		cr_assert_eq(need_irq(), -1);
		cr_assert_eq(arm(), -1);
	}
	q = good;
	q.num = 256;
	cr_assert_eq(vq_check_layout(&q, 128, why, sizeof(why)), -1);
	cr_assert_str_eq(why, "queue 0: size 256 is not a power of two in [1, 128]");
	cr_assert_eq(vq_check_layout(&q, 256, why, sizeof(why)), 0);
	q.num = 1;
	cr_assert_eq(vq_check_layout(&q, 256, why, sizeof(why)), 0);

	struct { uint64_t *field; uint64_t val; const char *what; } mis[] = {
		{ &q.desc, 8, "descriptor table at 0x8 is not 16-byte aligned" },
		{ &q.desc, 0x1001, "not 16-byte aligned" },
		{ &q.avail, 0x1001, "avail ring at 0x1001 is not 2-byte aligned" },
		{ &q.used, 0x1002, "used ring at 0x1002 is not 4-byte aligned" },
		{ &q.desc, GMM_GPA_LIMIT - 16, "descriptor table at" },
		{ &q.avail, GMM_GPA_LIMIT - 20, "avail ring at" },
		{ &q.used, GMM_GPA_LIMIT - 4, "used ring at" },
		{ &q.desc, UINT64_MAX - 15, "reaches beyond" },
		{ &q.used, UINT64_MAX - 3, "reaches beyond" },
	};
	for (unsigned i = 0; i < sizeof(mis) / sizeof(mis[0]); i++) {
		q = good;
		*mis[i].field = mis[i].val;
		cr_assert_eq(vq_check_layout(&q, 256, why, sizeof(why)), -1, "%s", mis[i].what);
		cr_assert(strstr(why, mis[i].what), "\"%s\" lacks \"%s\"", why, mis[i].what);
		cr_assert_eq(pop(), -1, "%s", mis[i].what);
		cr_assert_eq(push(0, 0), -1);
	}
	/* Areas ending exactly at the limit are fine. */
	q = good;
	q.desc = GMM_GPA_LIMIT - VIRTQ_DESC_BYTES(8);
	q.avail = GMM_GPA_LIMIT - VIRTQ_AVAIL_BYTES(8);
	q.used = (GMM_GPA_LIMIT - VIRTQ_USED_BYTES(8)) & ~3ULL;
	cr_assert_eq(vq_check_layout(&q, 256, why, sizeof(why)), 0, "%s", why);
	/* A short why buffer is truncated, not overrun. */
	q.num = 3;
	char small[12];
	memset(small, 'x', sizeof(small));
	cr_assert_eq(vq_check_layout(&q, 256, small, 8), -1);
	cr_assert_eq(strlen(small), 7);
	cr_assert_eq(small[8], 'x');
	cr_assert_eq(vq_check_layout(&q, 256, NULL, 0), -1);
}

Test(hostile, chain_copy_segment_outside_ram)
{
	mkq(8, false, false);
	uint64_t a = buf(100, 'a'), c3 = buf(100, 'c');
	uint64_t w1 = buf(100, 0), w3 = buf(100, 0);
	/* Readable: RAM, MMIO, RAM; writable: RAM, straddling the end, RAM. */
	desc(0, a, 100, VIRTQ_DESC_F_NEXT, 1);
	desc(1, MMIO_GPA, 100, VIRTQ_DESC_F_NEXT, 2);
	desc(2, c3, 100, VIRTQ_DESC_F_NEXT, 3);
	desc(3, w1, 100, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 4);
	desc(4, RAM - 50, 100, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 5);
	desc(5, w3, 100, VIRTQ_DESC_F_WRITE, 0);
	vd_publish(&v, 0, 0);
	cr_assert_eq(pop(), 1, "%s", why);   /* data segments are not checked here */
	cr_assert_eq(c.nout, 3);
	cr_assert_eq(c.nin, 3);

	uint8_t dst[300];
	memset(dst, 0xee, sizeof(dst));
	cr_assert_eq(vq_chain_read(v.w, &c, 0, dst, 300), -EFAULT);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(dst[i], 'a');
	for (int i = 100; i < 300; i++)
		cr_assert_eq(dst[i], 0xee, "byte %d copied beyond the fault", i);
	/* Around the bad segment it works. */
	cr_assert_eq(vq_chain_read(v.w, &c, 200, dst, 100), 0);
	cr_assert_eq(dst[0], 'c');
	cr_assert_eq(vq_chain_read(v.w, &c, 150, dst, 10), -EFAULT);

	uint8_t src[300];
	memset(src, 'W', sizeof(src));
	cr_assert_eq(vq_chain_write(v.w, &c, 0, src, 300), -EFAULT);
	uint8_t got[100];
	vd_read(&v, w1, got, 100);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(got[i], 'W');
	/* The straddling segment: all or nothing, so its RAM half is intact. */
	vd_read(&v, RAM - 50, got, 50);
	for (int i = 0; i < 50; i++)
		cr_assert_eq(got[i], 0, "byte %d of the straddling segment written", i);
	vd_read(&v, w3, got, 100);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(got[i], 0, "byte %d written beyond the fault", i);
	cr_assert_eq(vq_chain_write(v.w, &c, 200, src, 100), 0);
	vd_read(&v, w3, got, 100);
	cr_assert_eq(got[99], 'W');

	/* A segment in an unmapped page of RAM. */
	uint64_t pg = vd_alloc(&v, GMM_PAGE_SIZE, GMM_PAGE_SIZE);
	desc(6, pg, 16, VIRTQ_DESC_F_WRITE, 0);
	vd_publish(&v, 0, 6);
	cr_assert_eq(pop(), 1, "%s", why);
	cr_assert_eq(gmm_unmap(v.mem, pg, GMM_PAGE_SIZE, 0), 0, "%s", gmm_last_error());
	cr_assert_eq(vq_chain_write(v.w, &c, 0, src, 16), -EFAULT);
	cr_assert_eq(gmm_map(v.mem, pg, GMM_PAGE_SIZE), 0);
	cr_assert_eq(vq_chain_write(v.w, &c, 0, src, 16), 0);
}

/* ---- a walker popping while a writer unmaps the rings ---------------- */

struct race {
	struct vdriver *v;
	uint64_t desc, avail, used, data;
	_Atomic bool stop;
	_Atomic unsigned long ok, errors, empty, faults, rounds;
	char last_why[256];
};

/*
 * Each round the thread plays the driver (lays out one chain from scratch
 * with gmm_write, which may fail on an unmapped page) and then the device
 * (pop, read, write, push, need_irq, arm).  Every outcome is legal except a
 * crash or an inconsistent chain.
 */
static void *race_thread(void *arg)
{
	struct race *r = arg;
	struct gmm_walker *w = gmm_walker_register(r->v->mem);
	if (!w)
		return (void *)1;
	static struct vq_chain ch;
	struct virtqueue rq = {
		.num = 4, .ready = true, .desc = r->desc, .avail = r->avail, .used = r->used,
		.event_idx = true, .indirect = true,
	};
	char rwhy[256];
	void *bad = NULL;
	while (!atomic_load(&r->stop)) {
		struct virtq_desc d[2] = {
			{ r->data, 64, VIRTQ_DESC_F_NEXT, 1 },
			{ r->data + 64, 64, VIRTQ_DESC_F_WRITE, 0 },
		};
		uint16_t avail[3] = { 0, 1, 0 };    /* flags, idx, ring[0] */
		uint16_t used_idx = 0;
		gmm_write(w, r->desc, d, sizeof(d));
		gmm_write(w, r->avail, avail, sizeof(avail));
		gmm_write(w, r->used + 2, &used_idx, 2);
		rq.last_avail = rq.used_idx = 0;
		rq.signalled_valid = false;
		atomic_fetch_add(&r->rounds, 1);

		int rc = vq_pop(&rq, w, &ch, rwhy, sizeof(rwhy));
		if (rc == 0) {
			atomic_fetch_add(&r->empty, 1);
			continue;
		}
		if (rc < 0) {
			atomic_fetch_add(&r->errors, 1);
			memcpy(r->last_why, rwhy, sizeof(rwhy));
			continue;
		}
		/* The chain is what was popped: checked, whatever the timing
		 * (a page that came back zeroed gives an empty chain). */
		if (ch.nseg != ch.nout + ch.nin || ch.nseg > 2 || ch.head != 0) {
			bad = (void *)2;
			break;
		}
		uint8_t tmp[128];
		int c1 = vq_chain_read(w, &ch, 0, tmp, ch.out_bytes);
		int c2 = vq_chain_write(w, &ch, 0, tmp, ch.in_bytes);
		if ((c1 && c1 != -EFAULT) || (c2 && c2 != -EFAULT)) {
			bad = (void *)3;
			break;
		}
		if (c1 || c2)
			atomic_fetch_add(&r->faults, 1);
		if (vq_push(&rq, w, ch.head, (uint32_t)ch.in_bytes, rwhy, sizeof(rwhy)) ||
		    vq_need_irq(&rq, w, rwhy, sizeof(rwhy)) < 0 ||
		    vq_arm(&rq, w, rwhy, sizeof(rwhy)) < 0) {
			atomic_fetch_add(&r->errors, 1);
			memcpy(r->last_why, rwhy, sizeof(rwhy));
			continue;
		}
		atomic_fetch_add(&r->ok, 1);
	}
	gmm_walker_unregister(w);
	return bad;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

Test(race, unmap_under_rings, .init = setup, .fini = teardown, .timeout = 120)
{
	static struct race r;
	memset(&r, 0, sizeof(r));
	r.v = &v;
	/* Each area on its own page. */
	uint64_t base = vd_alloc(&v, 4 * GMM_PAGE_SIZE, GMM_PAGE_SIZE);
	r.desc = base;
	r.avail = base + GMM_PAGE_SIZE;
	r.used = base + 2 * GMM_PAGE_SIZE;
	r.data = base + 3 * GMM_PAGE_SIZE;

	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, race_thread, &r), 0);
	uint64_t t0 = now_ns();
	unsigned cycles = 0;
	int unmap_rc = 0, map_rc = 0;
	/* At least 400 unmap/map cycles over the four pages, and until both
	 * outcomes were seen (bounded at 20 s). */
	while (cycles < 400 || !atomic_load(&r.ok) || !atomic_load(&r.errors) ||
	       !atomic_load(&r.faults)) {
		if (now_ns() - t0 > 20000000000ULL)
			break;
		uint64_t pg = base + (cycles % 4) * GMM_PAGE_SIZE;
		unmap_rc = gmm_unmap(v.mem, pg, GMM_PAGE_SIZE, 0);
		if (unmap_rc)
			break;
		usleep(300);
		map_rc = gmm_map(v.mem, pg, GMM_PAGE_SIZE);
		if (map_rc)
			break;
		usleep(300);
		cycles++;
	}
	atomic_store(&r.stop, true);
	void *res;
	pthread_join(t, &res);
	cr_assert_eq(unmap_rc, 0, "gmm_unmap: %s", gmm_last_error());
	cr_assert_eq(map_rc, 0, "gmm_map: %s", gmm_last_error());
	cr_assert_null(res, "popper failed: %ld", (long)res);

	struct gmm_stats st;
	gmm_vm_stats(v.mem, &st);
	cr_log_info("race: %u cycles, %lu rounds, %lu ok, %lu ring errors (last: %s), %lu "
		    "data faults, %lu empty",
		    cycles, atomic_load(&r.rounds), atomic_load(&r.ok), atomic_load(&r.errors),
		    r.last_why, atomic_load(&r.faults), atomic_load(&r.empty));
	cr_assert_gt(atomic_load(&r.ok), 0);
	cr_assert_gt(atomic_load(&r.errors), 0, "no ring error seen in %u cycles", cycles);
	cr_assert_gt(atomic_load(&r.faults), 0, "no data fault seen in %u cycles", cycles);
	cr_assert(strncmp(r.last_why, "queue 0: ", 9) == 0, "%s", r.last_why);
	cr_assert_eq(st.late_reads, 0);
}
