// SPDX-License-Identifier: GPL-2.0-only
/*
 * test_virtio_mem.c - the virtio-mem device driven through its registers
 * and a request queue in guest memory (tests/vmm/vdriver.h), no KVM: guest RAM
 * [0, 32 MiB), the hot-pluggable region [1 GiB, +256 MiB) (two 128 MiB
 * chunks), a fake set_memslot that records its calls.
 *
 * What is checked: the config space and features; a requested_size change
 * raises a configuration interrupt; PLUG makes the range translate and
 * creates the chunk's memslot; UNPLUG makes it stop translating, gives the
 * host memory back (mincore), moves guestmm's statistics by exactly one
 * unmap and one serialisation (issued or skipped), deletes the memslot of
 * a chunk that empties; hostile requests get the answer the spec requires
 * and change nothing; UNPLUG_ALL; STATE; a pinned block makes UNPLUG BUSY
 * and stays plugged; a walker thread translating inside plugged blocks
 * while they are unplugged; a broken ring -> NEEDS_RESET; a driver reset
 * keeps plugged memory plugged, and a reset while an unplug waits for a pin
 * neither blocks on d->lock nor gets a response pushed into the new ring;
 * memslot failures are undone; destroy deletes memslots and the region.
 */
#include "vdriver.h"
#include "virtio/virtio_devices.h"

#include <criterion/criterion.h>
#include <json-c/json.h>
#include <guestmm/guestmm.h>

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define RAM (32ULL << 20)
#define HP (1ULL << 30)
#define HP_SIZE (256ULL << 20)
#define BS VIRTIO_MEM_BLOCK_SIZE
#define SLOT VIRTIO_MEM_SLOT_SIZE
#define NBLK (HP_SIZE / BS)

#define F_UNPLUGGED_INACCESSIBLE 1

enum { PLUG = 0, UNPLUG = 1, UNPLUG_ALL = 2, STATE = 3 };
enum { ACK = 0, NACK = 1, BUSY = 2, ERROR = 3 };
enum { S_PLUGGED = 0, S_UNPLUGGED = 1, S_MIXED = 2 };

/* Config offsets. */
#define C_BLOCK 0
#define C_NODE 8
#define C_ADDR 16
#define C_REGION 24
#define C_USABLE 32
#define C_PLUGGED 40
#define C_REQUESTED 48

/* ---- fake memslots ------------------------------------------------------ */

struct slot_call {
	unsigned chunk;
	uint64_t gpa, size;
	void *hva;
};

static struct {
	pthread_mutex_t lock;
	struct slot_call calls[256];
	unsigned n;
	int fail_chunk;               /* -1: none; creating this chunk fails */
	bool live[HP_SIZE / SLOT];
} slots = { .lock = PTHREAD_MUTEX_INITIALIZER, .fail_chunk = -1 };

static int fake_set_memslot(void *opaque, unsigned chunk, uint64_t gpa, uint64_t size, void *hva)
{
	(void)opaque;
	pthread_mutex_lock(&slots.lock);
	int ret = 0;
	if (size && (int)chunk == slots.fail_chunk) {
		ret = -ENOSPC;
	} else {
		if (slots.n < 256)
			slots.calls[slots.n++] = (struct slot_call){ chunk, gpa, size, hva };
		if (chunk < HP_SIZE / SLOT)
			slots.live[chunk] = size != 0;
	}
	pthread_mutex_unlock(&slots.lock);
	return ret;
}

static unsigned slot_calls(void)
{
	pthread_mutex_lock(&slots.lock);
	unsigned n = slots.n;
	pthread_mutex_unlock(&slots.lock);
	return n;
}

static struct slot_call slot_call(unsigned i)
{
	pthread_mutex_lock(&slots.lock);
	struct slot_call c = slots.calls[i];
	pthread_mutex_unlock(&slots.lock);
	return c;
}

static bool slot_live(unsigned chunk)
{
	pthread_mutex_lock(&slots.lock);
	bool l = slots.live[chunk];
	pthread_mutex_unlock(&slots.lock);
	return l;
}

/* ---- fixture ------------------------------------------------------------ */

static struct vdriver v;
static struct virtio_dev *dev;
static uint8_t *hp_hva;                 /* host address of HP (stable) */
static uint64_t req_gpa, resp_gpa;

static void create_dev(void)
{
	char err[256] = "";
	struct virtio_mem_host host = { .set_memslot = fake_set_memslot, .opaque = NULL };
	dev = virtio_mem_create(v.mem, HP, HP_SIZE, GMM_BACKING_THP, &host, err, sizeof err);
	cr_assert_not_null(dev, "create: %s", err);
	struct gmm_region *r = gmm_region_find(v.mem, HP);
	cr_assert_not_null(r);
	struct gmm_region_info info;
	gmm_region_info(r, &info);
	cr_assert_eq(info.gpa, HP);
	cr_assert_eq(info.size, HP_SIZE);
	cr_assert_str_eq(info.name, "hotplug");
	hp_hva = info.hva;
}

static void setup_driver(void)
{
	int st = vd_setup(&v, dev, 1ULL << F_UNPLUGGED_INACCESSIBLE, 1, 16);
	cr_assert(st & VIRTIO_STATUS_DRIVER_OK, "status %#x", st);
}

static void setup(void)
{
	cr_assert_eq(vd_init(&v, RAM), 0);
	create_dev();
	setup_driver();
	cr_assert_eq(dev->ops->start(dev), 0);
	req_gpa = vd_alloc(&v, 64, 64);
	resp_gpa = vd_alloc(&v, 64, 64);
}

static void teardown(void)
{
	if (dev)
		dev->ops->destroy(dev);
	dev = NULL;
	vd_fini(&v);
}

TestSuite(virtio_mem, .init = setup, .fini = teardown, .timeout = 60);

/* ---- helpers ------------------------------------------------------------ */

static void put_req(uint64_t gpa, uint16_t type, uint64_t addr, uint16_t nb)
{
	uint8_t req[24];
	memset(req, 0xa5, sizeof req);  /* padding must be ignored */
	uint16_t t = htole16(type), n = htole16(nb);
	uint64_t a = htole64(addr);
	memcpy(req, &t, 2);
	memcpy(req + 8, &a, 8);
	memcpy(req + 16, &n, 2);
	vd_write(&v, gpa, req, sizeof req);
}

/* Add the chain, kick, wait for it; returns the bytes written. */
static uint32_t submit(const struct vd_buf *bufs, unsigned n)
{
	int head = vd_add(&v, 0, bufs, n, false);
	cr_assert_geq(head, 0);
	vd_kick(&v, 0);
	uint32_t len = 0xdead;
	int got = vd_wait_used(&v, 0, 10000, &len);
	cr_assert_eq(got, head, "used head %d, expected %d", got, head);
	return len;
}

/* One request; returns the response type, the state in *state. */
static int request(uint16_t type, uint64_t addr, uint16_t nb, uint16_t *state)
{
	uint8_t resp[10];
	memset(resp, 0xee, sizeof resp);
	vd_write(&v, resp_gpa, resp, sizeof resp);
	put_req(req_gpa, type, addr, nb);
	struct vd_buf b[2] = { { req_gpa, 24, false }, { resp_gpa, 10, true } };
	uint32_t len = submit(b, 2);
	cr_assert_eq(len, 10, "response length %u", len);
	vd_read(&v, resp_gpa, resp, sizeof resp);
	uint16_t t, s;
	memcpy(&t, resp, 2);
	memcpy(&s, resp + 8, 2);
	if (state)
		*state = le16toh(s);
	return le16toh(t);
}

static void set_requested(uint64_t bytes)
{
	char err[200];
	cr_assert_eq(virtio_mem_request(dev, bytes, err, sizeof err), 0, "%s", err);
}

static uint64_t cfg64(uint32_t off)
{
	return vd_config_read(&v, off, 8);
}

static uint64_t blk(unsigned i)
{
	return HP + (uint64_t)i * BS;
}

static bool translates(uint64_t gpa)
{
	gmm_walk_begin(v.w);
	void *p = gmm_translate(v.w, gpa, 8, GMM_ACCESS_WRITE);
	gmm_walk_end(v.w);
	return p != NULL;
}

/* Bytes of [gpa, gpa + len) of the hotplug region resident on the host. */
static uint64_t resident(uint64_t gpa, uint64_t len)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t n = len / (uint64_t)pg;
	unsigned char *vec = calloc(n, 1);
	cr_assert_not_null(vec);
	int rc = mincore(hp_hva + (gpa - HP), len, vec);
	cr_assert_eq(rc, 0, "mincore: %s", strerror(errno));
	uint64_t r = 0;
	for (size_t i = 0; i < n; i++)
		r += (vec[i] & 1) ? (uint64_t)pg : 0;
	free(vec);
	return r;
}

static struct virtio_mem_info info(void)
{
	struct virtio_mem_info i;
	virtio_mem_info(dev, &i);
	return i;
}

static struct gmm_stats stats(void)
{
	struct gmm_stats s;
	gmm_vm_stats(v.mem, &s);
	return s;
}

static int state_of(uint64_t addr, uint16_t nb)
{
	uint16_t s = 0xffff;
	cr_assert_eq(request(STATE, addr, nb, &s), ACK);
	return s;
}

/* ---- config and host control ---------------------------------------------- */

Test(virtio_mem, config_and_features)
{
	cr_assert_eq(vd_reg_read(&v, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_MEM);
	vd_reg_write(&v, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t f = vd_reg_read(&v, VIRTIO_MMIO_DEVICE_FEATURES);
	cr_assert(f & (1u << F_UNPLUGGED_INACCESSIBLE), "features %#x", f);
	cr_assert_not(f & 1u, "ACPI_PXM must not be offered");
	cr_assert_eq(cfg64(C_BLOCK), BS);
	cr_assert_eq(vd_config_read(&v, C_NODE, 2), 0);
	cr_assert_eq(cfg64(C_ADDR), HP);
	cr_assert_eq(cfg64(C_REGION), HP_SIZE);
	cr_assert_eq(cfg64(C_USABLE), HP_SIZE);
	cr_assert_eq(cfg64(C_PLUGGED), 0);
	cr_assert_eq(cfg64(C_REQUESTED), 0);
	/* 4-byte halves agree. */
	cr_assert_eq(vd_config_read(&v, C_ADDR + 4, 4), HP >> 32);
	cr_assert_eq(vd_config_read(&v, C_REGION, 4), (uint32_t)HP_SIZE);
	/* Read-only: a write changes nothing. */
	vd_config_write(&v, C_REQUESTED, 64ULL << 20, 8);
	cr_assert_eq(cfg64(C_REQUESTED), 0);

	/* Every block starts unplugged: nothing translates, nothing resident,
	 * no memslot. */
	for (unsigned i = 0; i < NBLK; i += 17)
		cr_assert_not(translates(blk(i)), "block %u translates", i);
	cr_assert_eq(gmm_table_lookup(v.mem, HP, NULL), 0);
	cr_assert_eq(resident(HP, HP_SIZE), 0);
	cr_assert_eq(slot_calls(), 0);
	struct virtio_mem_info in = info();
	cr_assert_eq(in.addr, HP);
	cr_assert_eq(in.region_size, HP_SIZE);
	cr_assert_eq(in.block_size, BS);
	cr_assert_eq(in.plugged_bytes, 0);
	cr_assert_eq(in.memslots, 0);

	char buf[2048] = "";
	dev->ops->counters(dev, buf, sizeof buf);
	cr_assert(strstr(buf, "virtio_mem_region_bytes 268435456\n"), "%s", buf);
}

Test(virtio_mem, requested_size_raises_config_interrupt)
{
	(void)vd_wait_irq(&v, 0);
	uint32_t gen = vd_reg_read(&v, VIRTIO_MMIO_CONFIG_GENERATION);
	set_requested(64ULL << 20);
	cr_assert(vd_wait_irq(&v, 2000), "no interrupt");
	uint32_t isr = vd_reg_read(&v, VIRTIO_MMIO_INTERRUPT_STATUS);
	cr_assert(isr & VIRTIO_INT_CONFIG, "isr %#x", isr);
	vd_reg_write(&v, VIRTIO_MMIO_INTERRUPT_ACK, isr);
	cr_assert_neq(vd_reg_read(&v, VIRTIO_MMIO_CONFIG_GENERATION), gen);
	cr_assert_eq(cfg64(C_REQUESTED), 64ULL << 20);
	cr_assert_eq(cfg64(C_USABLE), HP_SIZE);
	cr_assert_eq(info().requested_bytes, 64ULL << 20);

	/* Refused: not a block multiple, beyond the region. */
	char err[200];
	cr_assert_eq(virtio_mem_request(dev, BS + 4096, err, sizeof err), -1);
	cr_assert_eq(virtio_mem_request(dev, HP_SIZE + BS, err, sizeof err), -1);
	cr_assert_eq(cfg64(C_REQUESTED), 64ULL << 20);
	cr_assert_not(vd_wait_irq(&v, 100), "refused request interrupted");
	/* Shrinking is a change too. */
	set_requested(0);
	cr_assert(vd_wait_irq(&v, 2000));
	cr_assert_eq(cfg64(C_REQUESTED), 0);
}

Test(virtio_mem, create_refuses_bad_arguments)
{
	char err[256];
	struct virtio_mem_host host = { .set_memslot = fake_set_memslot };
	struct { uint64_t gpa, size; enum gmm_backing b; } bad[] = {
		{ 2ULL << 30, 0, GMM_BACKING_THP },                   /* empty */
		{ (2ULL << 30) + BS, SLOT, GMM_BACKING_THP },         /* misaligned */
		{ 2ULL << 30, SLOT + BS, GMM_BACKING_THP },           /* not whole chunks */
		{ 0, SLOT, GMM_BACKING_THP },                         /* over RAM */
		{ HP, SLOT, GMM_BACKING_THP },                        /* over the other device */
		{ GMM_GPA_LIMIT - SLOT, 2 * SLOT, GMM_BACKING_THP },  /* beyond the table */
		{ 2ULL << 30, SLOT, GMM_BACKING_HUGETLB_1G },         /* page > block */
		{ 2ULL << 30, SLOT, GMM_BACKING_FILE },               /* no path */
	};
	int regions = gmm_region_count(v.mem);
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = 0;
		struct virtio_dev *d = virtio_mem_create(v.mem, bad[i].gpa, bad[i].size, bad[i].b,
							 &host, err, sizeof err);
		cr_assert_null(d, "case %u accepted", i);
		cr_assert(err[0], "case %u: no message", i);
		cr_assert_eq(gmm_region_count(v.mem), regions, "case %u left a region", i);
	}
}

/* ---- plug and unplug ------------------------------------------------------- */

Test(virtio_mem, plug_maps_and_creates_memslot)
{
	set_requested(64ULL << 20);
	struct gmm_stats s0 = stats();
	cr_assert_eq(request(PLUG, blk(0), 4, NULL), ACK);
	for (unsigned i = 0; i < 4; i++) {
		cr_assert(translates(blk(i)), "block %u", i);
		cr_assert(translates(blk(i) + BS - 8));
		uint64_t leaf = 0;
		cr_assert_neq(gmm_table_lookup(v.mem, blk(i), &leaf), 0);
	}
	cr_assert_not(translates(blk(4)));
	/* The pointer is the region's stable address. */
	gmm_walk_begin(v.w);
	uint8_t *p = gmm_translate(v.w, blk(1) + 4096, 8, GMM_ACCESS_WRITE);
	gmm_walk_end(v.w);
	cr_assert_eq(p, hp_hva + BS + 4096);
	/* One map operation. */
	cr_assert_eq(stats().maps, s0.maps + 1);

	/* Memory works. */
	uint64_t pat = 0x0123456789abcdefULL, back = 0;
	vd_write(&v, blk(3) + 100, &pat, 8);
	vd_read(&v, blk(3) + 100, &back, 8);
	cr_assert_eq(back, pat);

	/* Memslot for chunk 0, whole chunk, at the region's hva. */
	cr_assert_eq(slot_calls(), 1);
	struct slot_call c = slot_call(0);
	cr_assert_eq(c.chunk, 0);
	cr_assert_eq(c.gpa, HP);
	cr_assert_eq(c.size, SLOT);
	cr_assert_eq(c.hva, (void *)hp_hva);

	cr_assert_eq(cfg64(C_PLUGGED), 4 * BS);
	struct virtio_mem_info in = info();
	cr_assert_eq(in.plugged_bytes, 4 * BS);
	cr_assert_eq(in.plug_requests, 1);
	cr_assert_eq(in.memslots, 1);

	/* More in chunk 0: no new memslot.  Chunk 1: its own. */
	cr_assert_eq(request(PLUG, blk(10), 2, NULL), ACK);
	cr_assert_eq(slot_calls(), 1);
	cr_assert_eq(request(PLUG, HP + SLOT + 3 * BS, 1, NULL), ACK);
	cr_assert_eq(slot_calls(), 2);
	c = slot_call(1);
	cr_assert_eq(c.chunk, 1);
	cr_assert_eq(c.gpa, HP + SLOT);
	cr_assert_eq(c.size, SLOT);
	cr_assert_eq(c.hva, (void *)(hp_hva + SLOT));
	cr_assert_eq(info().memslots, 2);
	cr_assert_eq(cfg64(C_PLUGGED), 7 * BS);
	/* A plug across the chunk boundary creates nothing new either. */
	cr_assert_eq(request(PLUG, HP + SLOT - BS, 2, NULL), ACK);
	cr_assert_eq(slot_calls(), 2);
	cr_assert_eq(cfg64(C_PLUGGED), 9 * BS);
}

Test(virtio_mem, unplug_releases_memory_and_memslot)
{
	set_requested(64ULL << 20);
	cr_assert_eq(request(PLUG, blk(0), 2, NULL), ACK);
	cr_assert_eq(request(PLUG, blk(8), 2, NULL), ACK);
	/* Touch every page so there is host memory to give back. */
	uint8_t *buf = malloc(2 * BS);
	memset(buf, 0x5a, 2 * BS);
	vd_write(&v, blk(0), buf, 2 * BS);
	vd_write(&v, blk(8), buf, 2 * BS);
	cr_assert_eq(resident(blk(0), 2 * BS), 2 * BS);

	struct gmm_stats s0 = stats();
	struct virtio_mem_info i0 = info();
	cr_assert_eq(request(UNPLUG, blk(0), 2, NULL), ACK);
	struct gmm_stats s1 = stats();
	struct virtio_mem_info i1 = info();

	cr_assert_not(translates(blk(0)));
	cr_assert_not(translates(blk(1) + BS - 8));
	cr_assert_eq(gmm_table_lookup(v.mem, blk(0), NULL), 0);
	cr_assert_eq(resident(blk(0), 2 * BS), 0, "host memory still resident");
	/* Exactly one unmap and one serialisation for the request. */
	cr_assert_eq(s1.unmaps, s0.unmaps + 1);
	cr_assert_eq(s1.released_bytes, s0.released_bytes + 2 * BS);
	cr_assert_eq(s1.serialize_issued + s1.serialize_skipped,
		     s0.serialize_issued + s0.serialize_skipped + 1,
		     "issued %llu->%llu skipped %llu->%llu",
		     (unsigned long long)s0.serialize_issued, (unsigned long long)s1.serialize_issued,
		     (unsigned long long)s0.serialize_skipped, (unsigned long long)s1.serialize_skipped);
	/* Chunk 0 still has blocks 8, 9: its memslot stays. */
	cr_assert_eq(slot_calls(), 1);
	cr_assert(slot_live(0));
	cr_assert_eq(cfg64(C_PLUGGED), 2 * BS);
	cr_assert_eq(i1.unplug_requests, i0.unplug_requests + 1);
	cr_assert_eq(i1.unplugged_bytes_total, i0.unplugged_bytes_total + 2 * BS);
	cr_assert_gt(i1.last_unplug_ns, 0);
	cr_assert_eq(i1.unplug_ns_total, i0.unplug_ns_total + i1.last_unplug_ns);
	/* The other blocks are untouched. */
	uint8_t b = 0;
	vd_read(&v, blk(9) + 12345, &b, 1);
	cr_assert_eq(b, 0x5a);

	/* The chunk empties: its memslot goes. */
	cr_assert_eq(request(UNPLUG, blk(8), 2, NULL), ACK);
	cr_assert_eq(slot_calls(), 2);
	struct slot_call c = slot_call(1);
	cr_assert_eq(c.chunk, 0);
	cr_assert_eq(c.size, 0);
	cr_assert_not(slot_live(0));
	cr_assert_eq(info().memslots, 0);
	cr_assert_eq(cfg64(C_PLUGGED), 0);
	cr_assert_eq(resident(HP, HP_SIZE), 0);

	/* Plugged again: fresh zeroed memory. */
	cr_assert_eq(request(PLUG, blk(0), 1, NULL), ACK);
	vd_read(&v, blk(0) + 777, &b, 1);
	cr_assert_eq(b, 0);
	free(buf);
}

/* ---- hostile requests ------------------------------------------------------ */

/* Everything observable about the blocks. */
struct snap {
	uint64_t plugged_cfg;
	unsigned slots;
	uint64_t maps, unmaps;
	uint64_t bitmap[NBLK / 64];
};

static struct snap snap(void)
{
	struct snap s = { 0 };
	s.plugged_cfg = cfg64(C_PLUGGED);
	s.slots = slot_calls();
	struct gmm_stats st = stats();
	s.maps = st.maps;
	s.unmaps = st.unmaps;
	for (unsigned i = 0; i < NBLK; i++)
		if (gmm_table_lookup(v.mem, blk(i), NULL))
			s.bitmap[i / 64] |= 1ULL << (i % 64);
	return s;
}

static void assert_unchanged(const struct snap *a, const char *what)
{
	struct snap b = snap();
	cr_assert_eq(b.plugged_cfg, a->plugged_cfg, "%s: plugged_size changed", what);
	cr_assert_eq(b.slots, a->slots, "%s: memslot calls", what);
	cr_assert_eq(b.maps, a->maps, "%s: gmm_map called", what);
	cr_assert_eq(b.unmaps, a->unmaps, "%s: gmm_unmap called", what);
	cr_assert_eq(memcmp(b.bitmap, a->bitmap, sizeof b.bitmap), 0, "%s: blocks changed", what);
}

Test(virtio_mem, hostile_requests_change_nothing)
{
	set_requested(16ULL << 20);            /* 8 blocks */
	cr_assert_eq(request(PLUG, blk(4), 2, NULL), ACK);
	struct snap s = snap();
	struct {
		uint16_t type;
		uint64_t addr;
		uint16_t nb;
		int resp;
		const char *what;
	} cases[] = {
		{ PLUG, blk(0) + 4096, 1, ERROR, "misaligned" },
		{ PLUG, blk(0) + BS / 2, 1, ERROR, "half-block misaligned" },
		{ PLUG, HP - BS, 1, ERROR, "below the region" },
		{ PLUG, HP - BS, 2, ERROR, "straddling the start" },
		{ PLUG, HP + HP_SIZE, 1, ERROR, "just past the end" },
		{ PLUG, HP + HP_SIZE - BS, 2, ERROR, "straddling the end" },
		{ PLUG, 0, 1, ERROR, "in RAM" },
		{ PLUG, blk(0), 0, ERROR, "nb_blocks 0" },
		{ PLUG, ~(BS - 1), 1, ERROR, "top of the address space" },
		{ PLUG, ~(BS - 1), 0xffff, ERROR, "wrapping" },
		{ PLUG, HP, 0xffff, ERROR, "more blocks than the region" },
		{ PLUG, blk(0), 7, NACK, "beyond requested_size" },
		{ PLUG, blk(4), 1, ERROR, "plugged already" },
		{ PLUG, blk(3), 2, ERROR, "partly plugged already" },
		{ UNPLUG, blk(0), 1, ERROR, "unplug not plugged" },
		{ UNPLUG, blk(5), 2, ERROR, "unplug partly plugged" },
		{ UNPLUG, blk(4) + 4096, 1, ERROR, "unplug misaligned" },
		{ UNPLUG, blk(4), 0, ERROR, "unplug nb_blocks 0" },
		{ UNPLUG, HP + HP_SIZE, 1, ERROR, "unplug outside" },
		{ STATE, blk(0) + 4096, 1, ERROR, "state misaligned" },
		{ STATE, blk(0), 0, ERROR, "state nb_blocks 0" },
		{ STATE, HP + HP_SIZE - BS, 2, ERROR, "state outside" },
		{ 4, blk(0), 1, ERROR, "type 4" },
		{ 0xffff, blk(0), 1, ERROR, "type 0xffff" },
	};
	for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int r = request(cases[i].type, cases[i].addr, cases[i].nb, NULL);
		cr_assert_eq(r, cases[i].resp, "%s: response %d, expected %d", cases[i].what, r,
			     cases[i].resp);
		assert_unchanged(&s, cases[i].what);
	}
	cr_assert_geq(info().nacks, 1);

	/* Short request: 16 bytes -> ERROR. */
	uint8_t resp[10];
	put_req(req_gpa, PLUG, blk(0), 1);
	struct vd_buf shortreq[2] = { { req_gpa, 16, false }, { resp_gpa, 10, true } };
	cr_assert_eq(submit(shortreq, 2), 10);
	vd_read(&v, resp_gpa, resp, 10);
	cr_assert_eq(resp[0] | resp[1] << 8, ERROR);
	assert_unchanged(&s, "short request");

	/* Request buffer outside RAM -> ERROR. */
	struct vd_buf farreq[2] = { { 0x80000000ULL, 24, false }, { resp_gpa, 10, true } };
	cr_assert_eq(submit(farreq, 2), 10);
	vd_read(&v, resp_gpa, resp, 10);
	cr_assert_eq(resp[0] | resp[1] << 8, ERROR);
	assert_unchanged(&s, "request outside RAM");

	/* Request in unplugged hotplug memory -> ERROR. */
	struct vd_buf hpreq[2] = { { blk(20), 24, false }, { resp_gpa, 10, true } };
	cr_assert_eq(submit(hpreq, 2), 10);
	assert_unchanged(&s, "request in unplugged memory");

	/* No writable response buffer: returned with nothing written, the
	 * (valid) request not executed. */
	put_req(req_gpa, PLUG, blk(0), 1);
	struct vd_buf noresp[1] = { { req_gpa, 24, false } };
	cr_assert_eq(submit(noresp, 1), 0);
	assert_unchanged(&s, "no response buffer");
	/* A response buffer too small. */
	struct vd_buf smallresp[2] = { { req_gpa, 24, false }, { resp_gpa, 4, true } };
	cr_assert_eq(submit(smallresp, 2), 0);
	assert_unchanged(&s, "small response buffer");
	/* A response buffer outside RAM. */
	struct vd_buf farresp[2] = { { req_gpa, 24, false }, { 0x80000000ULL, 10, true } };
	cr_assert_eq(submit(farresp, 2), 0);
	assert_unchanged(&s, "response outside RAM");
	/* The response buffer in an unplugged block. */
	struct vd_buf hpresp[2] = { { req_gpa, 24, false }, { blk(30), 10, true } };
	cr_assert_eq(submit(hpresp, 2), 0);
	assert_unchanged(&s, "response in unplugged memory");

	/* Still healthy: a request split over several descriptors works. */
	cr_assert_not(vd_reg_read(&v, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	put_req(req_gpa, PLUG, blk(0), 1);
	memset(resp, 0xee, sizeof resp);
	vd_write(&v, resp_gpa, resp, 10);
	struct vd_buf split[5] = {
		{ req_gpa, 5, false }, { req_gpa + 5, 11, false }, { req_gpa + 16, 8, false },
		{ resp_gpa, 3, true }, { resp_gpa + 3, 7, true },
	};
	cr_assert_eq(submit(split, 5), 10);
	vd_read(&v, resp_gpa, resp, 10);
	cr_assert_eq(resp[0] | resp[1] << 8, ACK);
	cr_assert(translates(blk(0)));
	cr_assert_eq(cfg64(C_PLUGGED), 3 * BS);
}

Test(virtio_mem, plug_up_to_requested_size_exactly)
{
	set_requested(8ULL << 20);
	cr_assert_eq(request(PLUG, blk(0), 3, NULL), ACK);
	cr_assert_eq(request(PLUG, blk(3), 2, NULL), NACK);
	cr_assert_eq(request(PLUG, blk(3), 1, NULL), ACK);
	cr_assert_eq(request(PLUG, blk(4), 1, NULL), NACK);
	cr_assert_eq(cfg64(C_PLUGGED), 8ULL << 20);
	/* The host lowers the request: plugging is refused, unplugging works. */
	set_requested(2ULL << 20);
	cr_assert_eq(request(PLUG, blk(10), 1, NULL), NACK);
	cr_assert_eq(request(UNPLUG, blk(0), 3, NULL), ACK);
	cr_assert_eq(cfg64(C_PLUGGED), 2ULL << 20);
	cr_assert_eq(info().nacks, 3);
}

/* ---- UNPLUG_ALL and STATE ----------------------------------------------------- */

Test(virtio_mem, unplug_all)
{
	set_requested(HP_SIZE);
	cr_assert_eq(request(PLUG, blk(0), 3, NULL), ACK);
	cr_assert_eq(request(PLUG, blk(3), 2, NULL), ACK);    /* one run with the first */
	cr_assert_eq(request(PLUG, blk(10), 1, NULL), ACK);
	cr_assert_eq(request(PLUG, blk(62), 4, NULL), ACK);   /* across the chunks */
	cr_assert_eq(request(PLUG, blk(127), 1, NULL), ACK);  /* the last block */
	cr_assert_eq(info().memslots, 2);
	cr_assert_eq(cfg64(C_PLUGGED), 11 * BS);
	uint8_t x = 1;
	vd_write(&v, blk(127) + BS - 1, &x, 1);

	struct gmm_stats s0 = stats();
	unsigned c0 = slot_calls();
	cr_assert_eq(request(UNPLUG_ALL, 0, 0, NULL), ACK);
	struct gmm_stats s1 = stats();
	cr_assert_eq(cfg64(C_PLUGGED), 0);
	cr_assert_eq(cfg64(C_USABLE), HP_SIZE);
	cr_assert_eq(s1.unmaps, s0.unmaps + 4, "one unmap per run");
	cr_assert_eq(s1.released_bytes, s0.released_bytes + 11 * BS);
	for (unsigned i = 0; i < NBLK; i++)
		cr_assert_not(translates(blk(i)), "block %u", i);
	cr_assert_eq(slot_calls(), c0 + 2);
	cr_assert_not(slot_live(0));
	cr_assert_not(slot_live(1));
	cr_assert_eq(info().memslots, 0);
	cr_assert_eq(info().unplugged_bytes_total, 11 * BS);
	cr_assert_eq(resident(HP, HP_SIZE), 0);
	/* Nothing plugged: still ACK, nothing done. */
	cr_assert_eq(request(UNPLUG_ALL, 0, 0, NULL), ACK);
	cr_assert_eq(stats().unmaps, s1.unmaps);
}

Test(virtio_mem, state)
{
	set_requested(HP_SIZE);
	cr_assert_eq(state_of(HP, NBLK), S_UNPLUGGED);
	cr_assert_eq(request(PLUG, blk(5), 3, NULL), ACK);
	cr_assert_eq(state_of(blk(5), 3), S_PLUGGED);
	cr_assert_eq(state_of(blk(6), 1), S_PLUGGED);
	cr_assert_eq(state_of(blk(4), 2), S_MIXED);
	cr_assert_eq(state_of(blk(7), 2), S_MIXED);
	cr_assert_eq(state_of(blk(8), 10), S_UNPLUGGED);
	cr_assert_eq(state_of(HP, NBLK), S_MIXED);
	/* STATE changes nothing. */
	cr_assert_eq(cfg64(C_PLUGGED), 3 * BS);
}

/* ---- pins and walkers -------------------------------------------------------- */

Test(virtio_mem, unplug_of_pinned_block_is_busy)
{
	set_requested(16ULL << 20);
	cr_assert_eq(request(PLUG, blk(2), 2, NULL), ACK);
	uint64_t pat = 42, back = 0;
	vd_write(&v, blk(3) + 64, &pat, 8);
	struct gmm_pin pin;
	cr_assert_eq(gmm_pin(v.w, blk(3), 4096, GMM_ACCESS_WRITE, &pin), 0);
	struct gmm_stats s0 = stats();

	/* gmm_unmap waits the pin timeout, then -EBUSY: BUSY, nothing changed. */
	cr_assert_eq(request(UNPLUG, blk(2), 2, NULL), BUSY);
	cr_assert_eq(state_of(blk(2), 2), S_PLUGGED);
	cr_assert(translates(blk(2)));
	cr_assert(translates(blk(3)));
	cr_assert_eq(cfg64(C_PLUGGED), 2 * BS);
	cr_assert_eq(info().busy, 1);
	cr_assert_gt(stats().pin_busy, s0.pin_busy);
	cr_assert(slot_live(0));
	vd_read(&v, blk(3) + 64, &back, 8);
	cr_assert_eq(back, pat);
	/* UNPLUG_ALL too. */
	cr_assert_eq(request(UNPLUG_ALL, 0, 0, NULL), BUSY);
	cr_assert_eq(cfg64(C_PLUGGED), 2 * BS);
	cr_assert_eq(info().busy, 2);

	gmm_unpin(v.mem, &pin);
	cr_assert_eq(request(UNPLUG, blk(2), 2, NULL), ACK);
	cr_assert_not(translates(blk(3)));
	cr_assert_eq(cfg64(C_PLUGGED), 0);
}

struct walker_arg {
	atomic_bool stop;
	atomic_bool started;
	atomic_ullong ok, faults;
};

/* Translate and write inside blocks [0, 32) as fast as possible. */
static void *walker_thread(void *p)
{
	struct walker_arg *a = p;
	struct gmm_walker *w = gmm_walker_register(v.mem);
	cr_assert_not_null(w);
	unsigned seed = 1;
	atomic_store(&a->started, true);
	while (!atomic_load(&a->stop)) {
		uint64_t gpa = blk(rand_r(&seed) % 32) + (uint64_t)(rand_r(&seed) % (BS / 64)) * 64;
		gmm_walk_begin(w);
		uint64_t *q = gmm_translate(w, gpa, 8, GMM_ACCESS_WRITE);
		if (q) {
			*q += 1;            /* ASan/the kernel would catch a freed page */
			atomic_fetch_add(&a->ok, 1);
		} else {
			atomic_fetch_add(&a->faults, 1);
		}
		gmm_walk_end(w);
	}
	gmm_walker_unregister(w);
	return NULL;
}

Test(virtio_mem, unplug_under_concurrent_walker)
{
	set_requested(64ULL << 20);
	cr_assert_eq(request(PLUG, blk(0), 32, NULL), ACK);
	struct walker_arg a = { 0 };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, walker_thread, &a), 0);
	for (int i = 0; i < 5000 && atomic_load(&a.ok) < 1000; i++)
		usleep(1000);
	cr_assert_geq(atomic_load(&a.ok), 1000, "the walker does not run");
	/* Unplug in pieces while the walker runs, and plug some back. */
	for (unsigned i = 0; i < 32; i += 4)
		cr_assert_eq(request(UNPLUG, blk(i), 4, NULL), ACK, "unplug %u", i);
	cr_assert_eq(request(PLUG, blk(8), 8, NULL), ACK);
	usleep(20000);
	cr_assert_eq(request(UNPLUG, blk(8), 8, NULL), ACK);
	for (int i = 0; i < 5000 && atomic_load(&a.faults) < 1000; i++)
		usleep(1000);
	unsigned long long f = atomic_load(&a.faults);
	atomic_store(&a.stop, true);
	pthread_join(t, NULL);
	cr_assert_geq(f, 1000, "the walker never saw the unplug");
	for (unsigned i = 0; i < 32; i++)
		cr_assert_not(translates(blk(i)), "block %u still translates", i);
	cr_assert_eq(cfg64(C_PLUGGED), 0);
	cr_assert_eq(resident(HP, 64ULL << 20), 0);
	cr_assert_eq(stats().late_reads, 0);
}

/* ---- ring errors and resets --------------------------------------------------- */

Test(virtio_mem, broken_ring_needs_reset)
{
	set_requested(16ULL << 20);
	cr_assert_eq(request(PLUG, blk(0), 1, NULL), ACK);
	/* A head beyond the queue. */
	vd_publish(&v, 0, 200);
	vd_kick(&v, 0);
	cr_assert(vd_wait_status(&v, VIRTIO_STATUS_NEEDS_RESET, 5000), "no NEEDS_RESET");
	cr_assert(vd_wait_irq(&v, 1000));
	cr_assert(vd_reg_read(&v, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_INT_CONFIG);
	/* Ignored until reset; the plugged block is still plugged. */
	cr_assert(translates(blk(0)));
	cr_assert_eq(cfg64(C_PLUGGED), BS);

	/* Reset and set up again: the memory stays plugged (5.15.5); the
	 * driver finds it in plugged_size and STATE. */
	setup_driver();
	cr_assert_eq(cfg64(C_PLUGGED), BS);
	cr_assert(translates(blk(0)));
	cr_assert_eq(state_of(blk(0), 1), S_PLUGGED);
	/* A descriptor loop. */
	struct virtq_desc d0 = { .addr = req_gpa, .len = 24, .flags = VIRTQ_DESC_F_NEXT, .next = 1 };
	struct virtq_desc d1 = { .addr = resp_gpa, .len = 10,
				 .flags = VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, .next = 0 };
	vd_set_desc(&v, 0, 0, &d0);
	vd_set_desc(&v, 0, 1, &d1);
	vd_publish(&v, 0, 0);
	vd_kick(&v, 0);
	cr_assert(vd_wait_status(&v, VIRTIO_STATUS_NEEDS_RESET, 5000), "loop: no NEEDS_RESET");

	setup_driver();
	cr_assert_eq(request(UNPLUG_ALL, 0, 0, NULL), ACK);
	cr_assert_eq(cfg64(C_PLUGGED), 0);
	cr_assert_not(translates(blk(0)));
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * A reset while an UNPLUG waits in gmm_unmap for a pin: the driver's
 * register writes must not wait for the device (d->lock is not held across
 * gmm_unmap); the unplug still completes and shows in plugged_size; and its
 * response does not land in the rings the driver set up after the reset.
 */
Test(virtio_mem, reset_during_unplug)
{
	set_requested(16ULL << 20);
	cr_assert_eq(request(PLUG, blk(6), 1, NULL), ACK);
	struct gmm_pin pin;
	cr_assert_eq(gmm_pin(v.w, blk(6), 4096, GMM_ACCESS_READ, &pin), 0);
	put_req(req_gpa, UNPLUG, blk(6), 1);
	struct vd_buf b[2] = { { req_gpa, 24, false }, { resp_gpa, 10, true } };
	cr_assert_geq(vd_add(&v, 0, b, 2, false), 0);
	uint64_t n0 = info().unplug_requests;
	vd_kick(&v, 0);
	/* The device has taken the request (counted under d->lock before it
	 * drops the lock for gmm_unmap), and is soon waiting for the pin. */
	for (int i = 0; i < 500 && info().unplug_requests == n0; i++)
		usleep(10000);
	cr_assert_eq(info().unplug_requests, n0 + 1);
	usleep(50 * 1000);
	cr_assert_eq(cfg64(C_PLUGGED), BS);

	/* Reset and a whole new set-up (new rings) while it waits. */
	uint64_t t0 = mono_ms();
	setup_driver();
	uint64_t dt = mono_ms() - t0;
	cr_assert_lt(dt, 300, "reset and set-up took %llu ms: d->lock held across gmm_unmap?",
		     (unsigned long long)dt);
	gmm_unpin(v.mem, &pin);

	/* The unplug finishes; plugged_size follows. */
	for (int i = 0; i < 200 && cfg64(C_PLUGGED); i++)
		usleep(10000);
	cr_assert_eq(cfg64(C_PLUGGED), 0);
	cr_assert_not(translates(blk(6)));
	cr_assert_not(slot_live(0));
	usleep(50000);
	cr_assert_eq(vd_used_pending(&v, 0), 0, "the old request was answered in the new ring");
	cr_assert_not(vd_reg_read(&v, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);

	/* The new driver finds it unplugged and works. */
	cr_assert_eq(state_of(blk(6), 1), S_UNPLUGGED);
	cr_assert_eq(request(PLUG, blk(6), 1, NULL), ACK);
	cr_assert_eq(cfg64(C_PLUGGED), BS);
}

/* ---- memslot failures and destroy ------------------------------------------- */

Test(virtio_mem, memslot_failure_is_undone)
{
	set_requested(HP_SIZE);
	pthread_mutex_lock(&slots.lock);
	slots.fail_chunk = 1;
	pthread_mutex_unlock(&slots.lock);
	struct gmm_stats s0 = stats();
	/* Across chunks 0 and 1: chunk 0's memslot made, chunk 1's fails, both
	 * undone along with the mapping. */
	cr_assert_eq(request(PLUG, HP + SLOT - 2 * BS, 4, NULL), NACK);
	struct gmm_stats s1 = stats();
	cr_assert_eq(s1.maps, s0.maps + 1);
	cr_assert_eq(s1.unmaps, s0.unmaps + 1);
	for (unsigned i = 62; i < 66; i++)
		cr_assert_not(translates(blk(i)));
	cr_assert_eq(slot_calls(), 2);          /* chunk 0 created, deleted */
	cr_assert_eq(slot_call(0).size, SLOT);
	cr_assert_eq(slot_call(1).size, 0);
	cr_assert_not(slot_live(0));
	cr_assert_eq(cfg64(C_PLUGGED), 0);
	cr_assert_eq(info().memslots, 0);
	cr_assert_eq(state_of(HP, NBLK), S_UNPLUGGED);
	cr_assert_eq(resident(HP, HP_SIZE), 0);

	/* Chunk 0 alone still works, and a failure later leaves it alone. */
	cr_assert_eq(request(PLUG, blk(0), 1, NULL), ACK);
	cr_assert_eq(request(PLUG, blk(63), 2, NULL), NACK);
	cr_assert(slot_live(0));
	cr_assert(translates(blk(0)));
	cr_assert_not(translates(blk(63)));
	cr_assert_eq(cfg64(C_PLUGGED), BS);

	pthread_mutex_lock(&slots.lock);
	slots.fail_chunk = -1;
	pthread_mutex_unlock(&slots.lock);
	cr_assert_eq(request(PLUG, blk(63), 2, NULL), ACK);
	cr_assert(slot_live(1));
	cr_assert_eq(info().memslots, 2);
}

Test(virtio_mem, destroy_unplugs_everything)
{
	set_requested(HP_SIZE);
	cr_assert_eq(request(PLUG, blk(0), 2, NULL), ACK);
	cr_assert_eq(request(PLUG, blk(100), 2, NULL), ACK);
	cr_assert(slot_live(0) && slot_live(1));
	int regions = gmm_region_count(v.mem);
	uint64_t mapped0 = stats().mapped_bytes;
	dev->ops->destroy(dev);
	dev = NULL;
	cr_assert_not(slot_live(0));
	cr_assert_not(slot_live(1));
	cr_assert_eq(gmm_region_count(v.mem), regions - 1);
	cr_assert_null(gmm_region_find(v.mem, HP));
	cr_assert_eq(stats().mapped_bytes, mapped0 - 4 * BS);
	cr_assert_not(translates(blk(0)));
	/* The address range can be used again. */
	create_dev();
}

/* ---- snapshot (issue 16) ------------------------------------------------ */

static struct json_object *save_text(void)
{
	char err[256] = "";
	struct json_object *o = virtio_dev_save(dev, err, sizeof(err));
	cr_assert_not_null(o, "save: %s", err);
	struct json_object *back = json_tokener_parse(json_object_to_json_string(o));
	json_object_put(o);
	cr_assert_not_null(back);
	return back;
}

static const char *dev_member(struct json_object *o, const char *key)
{
	struct json_object *d, *x;
	cr_assert(json_object_object_get_ex(o, "device", &d));
	cr_assert(json_object_object_get_ex(d, key, &x));
	return json_object_get_string(x);
}

/* Plug blocks in two chunks; quiesce, save; a new device (its region all
 * unplugged, then mapped where the snapshot had blocks plugged: the memory
 * layer's part, played here) restored: the bitmap and sizes are equal,
 * the memslots of both chunks are registered again, nothing was mapped or
 * unmapped by the restore, and an unplug after it works. */
Test(virtio_mem, snapshot_roundtrip)
{
	set_requested(64ULL << 20);
	cr_assert_eq(request(PLUG, blk(0), 4, NULL), ACK);
	cr_assert_eq(request(PLUG, HP + SLOT + 3 * BS, 1, NULL), ACK);
	cr_assert_eq(dev->ops->quiesce(dev), 0);
	struct json_object *st = save_text();
	char *bitmap = strdup(dev_member(st, "plugged"));
	dev->ops->destroy(dev);
	pthread_mutex_lock(&slots.lock);
	memset(slots.live, 0, sizeof(slots.live));
	slots.n = 0;
	pthread_mutex_unlock(&slots.lock);

	create_dev();
	v.d = dev;
	cr_assert_eq(gmm_map(v.mem, blk(0), 4 * BS), 0);
	cr_assert_eq(gmm_map(v.mem, HP + SLOT + 3 * BS, BS), 0);
	struct gmm_stats s0 = stats();
	/* A bitmap that disagrees with plugged_size is refused, no memslot. */
	struct json_object *bad = json_tokener_parse(json_object_to_json_string(st));
	struct json_object *bd;
	json_object_object_get_ex(bad, "device", &bd);
	json_object_object_add(bd, "plugged_size", json_object_new_uint64(6 * BS));
	char err[256] = "";
	cr_assert_eq(virtio_dev_restore(dev, bad, err, sizeof(err)), -1);
	cr_assert(strstr(err, "plugged_size"), "%s", err);
	json_object_put(bad);
	cr_assert_eq(slot_calls(), 0);

	cr_assert_eq(virtio_dev_restore(dev, st, err, sizeof(err)), 0, "restore: %s", err);
	json_object_put(st);
	cr_assert(slot_live(0) && slot_live(1), "memslots registered again");
	cr_assert_eq(slot_calls(), 2);
	struct gmm_stats s1 = stats();
	cr_assert_eq(s1.maps, s0.maps, "restore mapped something");
	cr_assert_eq(s1.unmaps, s0.unmaps, "restore unmapped something");
	struct virtio_mem_info in = info();
	cr_assert_eq(in.plugged_bytes, 5 * BS);
	cr_assert_eq(in.requested_bytes, 64ULL << 20);
	cr_assert_eq(in.memslots, 2);
	cr_assert_eq(cfg64(C_PLUGGED), 5 * BS);
	struct json_object *st2 = save_text();
	cr_assert_str_eq(dev_member(st2, "plugged"), bitmap);
	json_object_put(st2);
	free(bitmap);

	cr_assert_eq(dev->ops->start(dev), 0);
	cr_assert_eq(state_of(blk(0), 4), S_PLUGGED);
	cr_assert_eq(request(UNPLUG, blk(1), 1, NULL), ACK);
	cr_assert_not(translates(blk(1)));
	cr_assert(translates(blk(0)));
	cr_assert_eq(request(UNPLUG, HP + SLOT + 3 * BS, 1, NULL), ACK);
	cr_assert_not(slot_live(1), "the emptied chunk's memslot went");
	cr_assert_eq(info().plugged_bytes, 3 * BS);
}
