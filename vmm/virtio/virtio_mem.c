// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio_mem.c - virtio-mem (virtio 1.2, 5.15): a hot-pluggable region of
 * guest memory the guest's driver plugs and unplugs in 2 MiB blocks.
 *
 * The region [addr, addr + region_size) is a guestmm region ("hotplug")
 * backed like guest RAM.  At create the whole of it is unmapped
 * (gmm_unmap: munmap behind a PROT_NONE placeholder, so host addresses stay
 * stable), so every block starts unplugged and costs no host memory.
 *
 *   PLUG addr,n    gmm_map() of the range (one call); then a KVM memslot
 *                  (host->set_memslot) for each 128 MiB chunk that had no
 *                  plugged block.  A failure undoes both and answers NACK
 *                  (the request was valid; the host could not grant it).
 *   UNPLUG addr,n  one gmm_unmap() of the range: one serialisation against
 *                  walkers (skipped by the strategy when none is in
 *                  flight), memory released with munmap; then the memslots
 *                  of chunks that became empty are deleted.  A pin that
 *                  outlives the VM's pin timeout (a disk I/O into the block)
 *                  makes gmm_unmap fail with -EBUSY, changing nothing: the
 *                  answer is BUSY and the driver retries.
 *   UNPLUG_ALL     one gmm_unmap() per contiguous plugged run.
 *   STATE addr,n   PLUGGED / UNPLUGGED / MIXED.
 *
 * Validation follows the device requirements of 5.15.6.x: a misaligned
 * address, nb_blocks 0 or a range not inside the usable region is ERROR, as
 * is plugging a plugged block or unplugging an unplugged one; plugging
 * beyond requested_size is NACK (QEMU's order: range, then size, then
 * state).  usable_region_size is always region_size.  A request shorter
 * than 24 bytes or with an unknown type is ERROR.  A chain without a
 * writable 10-byte response buffer that translates is returned with
 * nothing written and nothing done.
 *
 * Device reset (status 0) changes no block (5.15.5: "The device MUST NOT
 * change the state of memory blocks during device reset"): plugged memory
 * stays plugged and plugged_size keeps saying so; the driver learns it
 * from the config and sends UNPLUG_ALL or STATE requests.
 *
 * Threads and locking (see virtio.h):
 *   - The device thread "_mem" is a guestmm walker.  It pops a request and
 *     validates it under d->lock, drops the lock for gmm_map / gmm_unmap /
 *     set_memslot, takes it again to publish the new state and, if the
 *     device was not reset in between (d->generation), to write the
 *     response and push it.  Nobody holds d->lock across a writer op.
 *   - State owned by the device thread alone (written only by it, or by
 *     destroy once it has been joined): the plugged bitmap, the per-chunk
 *     block counts, which memslots exist.  Since nobody else writes them,
 *     the thread may read them without the lock and a validation made under
 *     the lock still holds after it was dropped.
 *   - State under d->lock: plugged_size and requested_size (config space,
 *     read on vCPU threads), the statistics, the memslot count.
 */
#include "core/log.h"
#include "core/sandbox.h"
#include "core/state_json.h"
#include "virtio/virtio.h"
#include "virtio/virtio_devices.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE 1

#define VIRTIO_MEM_REQ_PLUG 0
#define VIRTIO_MEM_REQ_UNPLUG 1
#define VIRTIO_MEM_REQ_UNPLUG_ALL 2
#define VIRTIO_MEM_REQ_STATE 3

#define VIRTIO_MEM_RESP_ACK 0
#define VIRTIO_MEM_RESP_NACK 1
#define VIRTIO_MEM_RESP_BUSY 2
#define VIRTIO_MEM_RESP_ERROR 3

#define VIRTIO_MEM_STATE_PLUGGED 0
#define VIRTIO_MEM_STATE_UNPLUGGED 1
#define VIRTIO_MEM_STATE_MIXED 2

/* Wire sizes (5.15.6: "All requests are 24 bytes long", "All responses
 * are 10 bytes long"). */
#define REQ_BYTES 24
#define RESP_BYTES 10

/* Config space layout (5.15.4). */
#define CFG_BLOCK_SIZE 0
#define CFG_NODE_ID 8
#define CFG_ADDR 16
#define CFG_REGION_SIZE 24
#define CFG_USABLE_REGION_SIZE 32
#define CFG_PLUGGED_SIZE 40
#define CFG_REQUESTED_SIZE 48
#define CFG_BYTES 56

#define BLOCK VIRTIO_MEM_BLOCK_SIZE
#define BLOCKS_PER_CHUNK (VIRTIO_MEM_SLOT_SIZE / VIRTIO_MEM_BLOCK_SIZE)

struct vmem {
	struct virtio_dev dev;        /* first: d->priv == this */

	/* Constant after create. */
	struct gmm_region *region;
	uint64_t base, size;          /* the region */
	void *hva;                    /* host address of base (stable) */
	uint64_t nblocks;
	unsigned nchunks;
	struct virtio_mem_host host;  /* set_memslot NULL: no memslots (tests) */

	/* Device thread only (destroy after the join). */
	uint64_t *plugged;            /* bitmap, one bit per block */
	uint32_t *chunk_plugged;      /* plugged blocks per chunk */
	bool *slot_live;              /* a memslot exists for the chunk */
	bool *slot_new;               /* scratch for undoing a plug */
	struct vq_chain chain;        /* the request being handled */
	pthread_t thread;
	bool running;                 /* main thread: start/stop */

	/* Under d->lock. */
	uint64_t plugged_size, requested_size;
	uint64_t plug_requests, unplug_requests, state_requests;
	uint64_t acks, nacks, busy, errors, dropped;
	uint64_t last_unplug_ns, unplug_ns_total, unplugged_bytes_total;
	uint64_t plugged_bytes_total;
	unsigned memslots;
};

static struct vmem *to_vmem(struct virtio_dev *d)
{
	return d->priv;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- block bitmap (device thread) ------------------------------------ */

static bool blk_plugged(const struct vmem *m, uint64_t i)
{
	return m->plugged[i / 64] >> (i % 64) & 1;
}

static void blk_set(struct vmem *m, uint64_t i, bool on)
{
	if (on)
		m->plugged[i / 64] |= 1ULL << (i % 64);
	else
		m->plugged[i / 64] &= ~(1ULL << (i % 64));
}

/* Plugged blocks among [first, first + n). */
static uint64_t count_plugged(const struct vmem *m, uint64_t first, uint64_t n)
{
	uint64_t c = 0;
	for (uint64_t i = first; i < first + n; i++)
		c += blk_plugged(m, i);
	return c;
}

/* Mark [first, first + n) plugged and count it in its chunks. */
static void mark_plugged(struct vmem *m, uint64_t first, uint64_t n)
{
	for (uint64_t i = first; i < first + n; i++)
		blk_set(m, i, true);
	for (uint64_t c = first / BLOCKS_PER_CHUNK; c <= (first + n - 1) / BLOCKS_PER_CHUNK; c++) {
		uint64_t lo = c * BLOCKS_PER_CHUNK, hi = lo + BLOCKS_PER_CHUNK;
		if (lo < first)
			lo = first;
		if (hi > first + n)
			hi = first + n;
		m->chunk_plugged[c] += (uint32_t)(hi - lo);
	}
}

/* ---- memslots (device thread, no lock) -------------------------------- */

static int set_slot(struct vmem *m, unsigned chunk, bool on)
{
	if (!m->host.set_memslot)
		return 0;
	uint64_t off = (uint64_t)chunk * VIRTIO_MEM_SLOT_SIZE;
	return m->host.set_memslot(m->host.opaque, chunk, m->base + off,
				   on ? VIRTIO_MEM_SLOT_SIZE : 0, (uint8_t *)m->hva + off);
}

/* ---- config space ---------------------------------------------------- */

/* d->lock held (vCPU thread). */
static void mem_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, unsigned len)
{
	struct vmem *m = to_vmem(d);
	uint8_t cfg[CFG_BYTES] = { 0 };
	uint64_t v;

	v = htole64(BLOCK);
	memcpy(cfg + CFG_BLOCK_SIZE, &v, 8);
	/* node_id 0 and padding: no VIRTIO_MEM_F_ACPI_PXM. */
	v = htole64(m->base);
	memcpy(cfg + CFG_ADDR, &v, 8);
	v = htole64(m->size);
	memcpy(cfg + CFG_REGION_SIZE, &v, 8);
	v = htole64(m->size);
	memcpy(cfg + CFG_USABLE_REGION_SIZE, &v, 8);
	v = htole64(m->plugged_size);
	memcpy(cfg + CFG_PLUGGED_SIZE, &v, 8);
	v = htole64(m->requested_size);
	memcpy(cfg + CFG_REQUESTED_SIZE, &v, 8);
	if (off > CFG_BYTES || len > CFG_BYTES - off) {   /* the transport checks */
		memset(data, 0, len);
		return;
	}
	memcpy(data, cfg + off, len);
}

/* d->lock held, queues already reset, generation bumped.  The blocks stay
 * as they are (5.15.5): plugged memory stays mapped, plugged_size keeps
 * counting it, and a plug or unplug in flight on the device thread still
 * publishes its result (only its response is dropped). */
static void mem_reset(struct virtio_dev *d)
{
	struct vmem *m = to_vmem(d);
	if (m->plugged_size)
		log_ratelimited(&d->rl, LOG_DEBUG, "%s: driver reset with %" PRIu64 " MiB plugged; kept",
				d->name, m->plugged_size >> 20);
}

/* ---- requests --------------------------------------------------------- */

struct mem_req {
	uint16_t type;
	uint64_t addr;
	uint16_t nb;
	/* Derived by check_range(). */
	uint64_t first, n;            /* block index, blocks */
};

/* 5.15.6.x: ERROR unless addr is block-aligned, nb_blocks > 0 and the
 * range lies in the usable region (= the region).  No arithmetic here can
 * wrap: addr >= base is checked before subtracting, nb * BLOCK < 2^37. */
static bool check_range(const struct vmem *m, struct mem_req *r)
{
	if (r->addr % BLOCK || r->nb == 0 || r->addr < m->base)
		return false;
	uint64_t off = r->addr - m->base, len = (uint64_t)r->nb * BLOCK;
	if (off >= m->size || len > m->size - off)
		return false;
	r->first = off / BLOCK;
	r->n = r->nb;
	return true;
}

/* What a request handler reports back to the locked part. */
struct outcome {
	uint16_t resp;
	uint16_t state;               /* STATE */
	int64_t plugged_delta;        /* blocks */
	bool timed;                   /* an unplug that reached gmm_unmap */
	uint64_t ns, unplugged_bytes;
	int slots_delta;
	char why[200];                /* a line to log under the lock, or "" */
};

/*
 * Plug blocks [first, first + n), all unplugged (checked under the lock).
 * Device thread, no lock held, outside any walk section.
 */
static void do_plug(struct vmem *m, uint64_t first, uint64_t n, struct outcome *o)
{
	uint64_t gpa = m->base + first * BLOCK, len = n * BLOCK;
	unsigned c0 = (unsigned)(first / BLOCKS_PER_CHUNK);
	unsigned c1 = (unsigned)((first + n - 1) / BLOCKS_PER_CHUNK);

	int rc = gmm_map(m->dev.mem, gpa, len);
	if (rc < 0) {
		snprintf(o->why, sizeof o->why, "plug 0x%" PRIx64 "+0x%" PRIx64 ": %s", gpa, len,
			 gmm_last_error());
		o->resp = VIRTIO_MEM_RESP_NACK;
		return;
	}
	for (unsigned c = c0; c <= c1; c++)
		m->slot_new[c] = false;
	for (unsigned c = c0; c <= c1; c++) {
		if (m->slot_live[c])
			continue;
		rc = set_slot(m, c, true);
		if (rc < 0) {
			snprintf(o->why, sizeof o->why, "plug 0x%" PRIx64 "+0x%" PRIx64
				 ": memslot for chunk %u: %s", gpa, len, c, strerror(-rc));
			goto undo;
		}
		m->slot_live[c] = m->slot_new[c] = true;
		o->slots_delta++;
	}
	mark_plugged(m, first, n);
	o->plugged_delta = (int64_t)n;
	o->resp = VIRTIO_MEM_RESP_ACK;
	return;

undo:
	/* Give the memory back first: only once it is gone may the memslots
	 * made for it go.  A pin can only be on it if the guest already points
	 * I/O at blocks it was told are not plugged; wait for it as any
	 * unplug does.  Should even that fail, the blocks are mapped and stay
	 * plugged with their memslots (the truth, in the bitmap and
	 * plugged_size); the driver learns it through STATE / UNPLUG_ALL. */
	if (gmm_unmap(m->dev.mem, gpa, len, 0) == 0) {
		for (unsigned c = c0; c <= c1; c++) {
			if (!m->slot_new[c])
				continue;
			if (set_slot(m, c, false) == 0) {
				m->slot_live[c] = false;
				o->slots_delta--;
			}
		}
	} else {
		size_t l = strlen(o->why);
		snprintf(o->why + l, sizeof o->why - l, "; undo failed (%s): blocks stay plugged",
			 gmm_last_error());
		mark_plugged(m, first, n);
		o->plugged_delta = (int64_t)n;
	}
	o->resp = VIRTIO_MEM_RESP_NACK;
}

/*
 * Unplug blocks [first, first + n), all plugged: one gmm_unmap (one
 * serialisation), then delete the memslots of chunks left empty.  0 or
 * the gmm_unmap error (-EBUSY: pinned, nothing changed).  Device thread,
 * no lock held, outside any walk section.
 */
static int unplug_run(struct vmem *m, uint64_t first, uint64_t n, struct outcome *o)
{
	uint64_t gpa = m->base + first * BLOCK, len = n * BLOCK;
	int rc = gmm_unmap(m->dev.mem, gpa, len, 0);
	if (rc < 0)
		return rc;
	for (uint64_t i = first; i < first + n; i++)
		blk_set(m, i, false);
	o->plugged_delta -= (int64_t)n;
	o->unplugged_bytes += len;
	unsigned c0 = (unsigned)(first / BLOCKS_PER_CHUNK);
	unsigned c1 = (unsigned)((first + n - 1) / BLOCKS_PER_CHUNK);
	for (unsigned c = c0; c <= c1; c++) {
		uint64_t lo = (uint64_t)c * BLOCKS_PER_CHUNK, hi = lo + BLOCKS_PER_CHUNK;
		if (lo < first)
			lo = first;
		if (hi > first + n)
			hi = first + n;
		m->chunk_plugged[c] -= (uint32_t)(hi - lo);
		if (m->chunk_plugged[c] || !m->slot_live[c])
			continue;
		/* The memory is gone already (KVM's mappings of it went with the
		 * munmap); a memslot that cannot be deleted stays registered
		 * over the placeholder and is retried when the chunk next
		 * empties, or at destroy. */
		int e = set_slot(m, c, false);
		if (e < 0) {
			snprintf(o->why, sizeof o->why, "unplug: deleting the memslot of chunk %u: %s",
				 c, strerror(-e));
			continue;
		}
		m->slot_live[c] = false;
		o->slots_delta--;
	}
	return 0;
}

static uint16_t unplug_resp(int rc)
{
	return rc == -EBUSY ? VIRTIO_MEM_RESP_BUSY : VIRTIO_MEM_RESP_ERROR;
}

/* Device thread, no lock held. */
static void do_unplug(struct vmem *m, uint64_t first, uint64_t n, struct outcome *o)
{
	uint64_t t0 = now_ns();
	int rc = unplug_run(m, first, n, o);
	o->ns = now_ns() - t0;
	o->timed = true;
	if (rc < 0 && rc != -EBUSY)
		snprintf(o->why, sizeof o->why, "unplug 0x%" PRIx64 "+0x%" PRIx64 ": %s",
			 (uint64_t)(m->base + first * BLOCK), (uint64_t)(n * BLOCK), gmm_last_error());
	o->resp = rc < 0 ? unplug_resp(rc) : VIRTIO_MEM_RESP_ACK;
}

/* Every plugged run, one gmm_unmap each.  Runs unplugged before a failure
 * stay unplugged (the answer is BUSY or ERROR; plugged_size says how much
 * is left).  Device thread, no lock held. */
static void do_unplug_all(struct vmem *m, struct outcome *o)
{
	uint64_t t0 = now_ns();
	int rc = 0;
	for (uint64_t i = 0; i < m->nblocks && rc == 0;) {
		if (!blk_plugged(m, i)) {
			i++;
			continue;
		}
		uint64_t j = i;
		while (j < m->nblocks && blk_plugged(m, j))
			j++;
		rc = unplug_run(m, i, j - i, o);
		i = j;
	}
	o->ns = now_ns() - t0;
	o->timed = true;
	if (rc < 0 && rc != -EBUSY)
		snprintf(o->why, sizeof o->why, "unplug all: %s", gmm_last_error());
	o->resp = rc < 0 ? unplug_resp(rc) : VIRTIO_MEM_RESP_ACK;
}

/* d->lock held: a guest-caused line, rate-limited. */
static uint16_t reject(struct vmem *m, uint16_t resp, const struct mem_req *r, const char *what)
{
	/* NACK is ordinary (requested_size shrank under the driver). */
	log_ratelimited(&m->dev.rl, resp == VIRTIO_MEM_RESP_NACK ? LOG_DEBUG : LOG_WARN,
			"%s: request type %u addr 0x%" PRIx64 " nb_blocks %u: %s",
			m->dev.name, r->type, r->addr, r->nb, what);
	return resp;
}

/*
 * Handle the popped chain m->chain.  Entered and left with d->lock held;
 * drops it around the writer operations.  gen: d->generation when popped.
 */
static void handle_request(struct vmem *m, struct gmm_walker *w, struct virtqueue *q, uint64_t gen)
{
	struct virtio_dev *d = &m->dev;
	const struct vq_chain *c = &m->chain;
	uint8_t req[REQ_BYTES], resp[RESP_BYTES] = { 0 };
	struct mem_req r = { 0 };
	struct outcome o = { .resp = VIRTIO_MEM_RESP_ERROR };
	char why[128];
	uint16_t v16;
	uint64_t v64;

	/* The response buffer first: without a writable one that translates,
	 * nothing is done and the chain goes back with nothing written.
	 * Writing ERROR now also answers every early return below. */
	v16 = htole16(VIRTIO_MEM_RESP_ERROR);
	memcpy(resp, &v16, 2);
	if (c->in_bytes < RESP_BYTES || vq_chain_write(w, c, 0, resp, RESP_BYTES) < 0) {
		log_ratelimited(&d->rl, LOG_WARN, "%s: request without a writable %u-byte response buffer; dropped",
				d->name, RESP_BYTES);
		m->dropped++;
		goto push0;
	}
	if (c->out_bytes < REQ_BYTES || vq_chain_read(w, c, 0, req, REQ_BYTES) < 0) {
		log_ratelimited(&d->rl, LOG_WARN, "%s: request buffer of %" PRIu64 " bytes is short or does not translate",
				d->name, c->out_bytes);
		m->errors++;
		goto respond;
	}
	memcpy(&v16, req, 2);
	r.type = le16toh(v16);
	memcpy(&v64, req + 8, 8);
	r.addr = le64toh(v64);
	memcpy(&v16, req + 16, 2);
	r.nb = le16toh(v16);

	switch (r.type) {
	case VIRTIO_MEM_REQ_PLUG:
		m->plug_requests++;
		if (!check_range(m, &r))
			o.resp = reject(m, VIRTIO_MEM_RESP_ERROR, &r, "not block-aligned, empty or outside the region");
		else if (r.n * BLOCK > m->requested_size || m->plugged_size > m->requested_size - r.n * BLOCK)
			o.resp = reject(m, VIRTIO_MEM_RESP_NACK, &r, "beyond requested_size");
		else if (count_plugged(m, r.first, r.n))
			o.resp = reject(m, VIRTIO_MEM_RESP_ERROR, &r, "a block is plugged already");
		else {
			pthread_mutex_unlock(&d->lock);
			do_plug(m, r.first, r.n, &o);
			pthread_mutex_lock(&d->lock);
		}
		break;
	case VIRTIO_MEM_REQ_UNPLUG:
		m->unplug_requests++;
		if (!check_range(m, &r))
			o.resp = reject(m, VIRTIO_MEM_RESP_ERROR, &r, "not block-aligned, empty or outside the region");
		else if (count_plugged(m, r.first, r.n) != r.n)
			o.resp = reject(m, VIRTIO_MEM_RESP_ERROR, &r, "a block is not plugged");
		else {
			pthread_mutex_unlock(&d->lock);
			do_unplug(m, r.first, r.n, &o);
			pthread_mutex_lock(&d->lock);
		}
		break;
	case VIRTIO_MEM_REQ_UNPLUG_ALL:
		m->unplug_requests++;
		pthread_mutex_unlock(&d->lock);
		do_unplug_all(m, &o);
		pthread_mutex_lock(&d->lock);
		break;
	case VIRTIO_MEM_REQ_STATE: {
		m->state_requests++;
		if (!check_range(m, &r)) {
			o.resp = reject(m, VIRTIO_MEM_RESP_ERROR, &r, "not block-aligned, empty or outside the region");
			break;
		}
		uint64_t p = count_plugged(m, r.first, r.n);
		o.state = p == r.n ? VIRTIO_MEM_STATE_PLUGGED
				   : p == 0 ? VIRTIO_MEM_STATE_UNPLUGGED : VIRTIO_MEM_STATE_MIXED;
		o.resp = VIRTIO_MEM_RESP_ACK;
		break;
	}
	default:
		o.resp = reject(m, VIRTIO_MEM_RESP_ERROR, &r, "unknown request type");
		break;
	}

	/* Publish what happened to the blocks, whatever became of the device
	 * meanwhile: plugged_size must always describe the memory. */
	m->plugged_size = (uint64_t)((int64_t)m->plugged_size + o.plugged_delta * (int64_t)BLOCK);
	if (o.plugged_delta > 0)
		m->plugged_bytes_total += (uint64_t)o.plugged_delta * BLOCK;
	m->memslots = (unsigned)((int)m->memslots + o.slots_delta);
	if (o.timed) {
		m->last_unplug_ns = o.ns;
		m->unplug_ns_total += o.ns;
		m->unplugged_bytes_total += o.unplugged_bytes;
	}
	if (o.why[0])
		log_ratelimited(&d->rl, LOG_WARN, "%s: %s", d->name, o.why);
	switch (o.resp) {
	case VIRTIO_MEM_RESP_ACK: m->acks++; break;
	case VIRTIO_MEM_RESP_NACK: m->nacks++; break;
	case VIRTIO_MEM_RESP_BUSY: m->busy++; break;
	default: m->errors++; break;
	}

respond:
	/* Reset (or NEEDS_RESET) while the lock was dropped: the ring is not
	 * ours any more. */
	if (d->generation != gen || !virtio_dev_live(d) || !q->ready)
		return;
	memset(resp, 0, sizeof resp);
	v16 = htole16(o.resp);
	memcpy(resp, &v16, 2);
	v16 = htole16(o.state);
	memcpy(resp + 8, &v16, 2);
	if (vq_chain_write(w, c, 0, resp, RESP_BYTES) < 0) {
		/* The buffer translated a moment ago: the request itself just
		 * unplugged it.  The work is done; nothing can say so. */
		log_ratelimited(&d->rl, LOG_WARN, "%s: response buffer no longer translates", d->name);
		goto push0;
	}
	if (vq_push(q, w, c->head, RESP_BYTES, why, sizeof why) < 0)
		virtio_dev_fail(d, "request queue: %s", why);
	return;

push0:
	if (d->generation != gen || !virtio_dev_live(d) || !q->ready)
		return;
	if (vq_push(q, w, c->head, 0, why, sizeof why) < 0)
		virtio_dev_fail(d, "request queue: %s", why);
}

/* Drain queue 0.  Device thread; takes d->lock. */
static void process_queue(struct vmem *m, struct gmm_walker *w)
{
	struct virtio_dev *d = &m->dev;
	struct virtqueue *q = &d->vq[0];
	char why[128];

	pthread_mutex_lock(&d->lock);
	while (!atomic_load(&d->stop) && !virtio_dev_quiescing(d) && virtio_dev_live(d) && q->ready) {
		uint64_t gen = d->generation;
		uint64_t used0 = q->used_idx;
		int rc = vq_pop(q, w, &m->chain, why, sizeof why);
		if (rc < 0) {
			virtio_dev_fail(d, "request queue: %s", why);
			break;
		}
		if (rc == 0) {
			rc = vq_arm(q, w, why, sizeof why);
			if (rc < 0) {
				virtio_dev_fail(d, "request queue: %s", why);
				break;
			}
			if (rc == 0)
				break;
			continue;
		}
		handle_request(m, w, q, gen);
		/* Interrupt per request: a request may have waited for a
		 * pin timeout, the driver should not wait for the next. */
		if (d->generation == gen && virtio_dev_live(d) && q->used_idx != used0)
			virtio_queue_used(d, q, w);
	}
	pthread_mutex_unlock(&d->lock);
}

static void *mem_thread(void *arg)
{
	struct vmem *m = arg;
	struct virtio_dev *d = &m->dev;
	struct gmm_walker *w = gmm_walker_register(d->mem);
	if (!w) {
		log_msg(LOG_ERROR, "%s: cannot register the device thread as a walker: %s", d->name,
			gmm_last_error());
		return NULL;
	}
	sandbox_enter(SANDBOX_DEVICE);
	struct pollfd pfd[2] = {
		{ .fd = d->kick_fd[0], .events = POLLIN },
		{ .fd = d->ctl_fd, .events = POLLIN },
	};
	while (!atomic_load(&d->stop)) {
		/* Drain before looking, so a kick after the look wakes us. */
		virtio_eventfd_drain(d->kick_fd[0]);
		virtio_eventfd_drain(d->ctl_fd);
		process_queue(m, w);
		if (atomic_load(&d->stop))
			break;
		/* Quiesced (snapshot): the request process_queue was on is
		 * answered (its gmm_map/unmap and memslots done); nothing
		 * more is popped until resume or stop wakes us. */
		if (virtio_dev_quiescing(d)) {
			virtio_dev_set_quiet(d);
			(void)poll(pfd + 1, 1, -1);
			continue;
		}
		/* EINTR (a guestmm kick) just loops. */
		(void)poll(pfd, 2, -1);
	}
	gmm_walker_unregister(w);
	return NULL;
}

/* Main thread. */
static int mem_start(struct virtio_dev *d)
{
	struct vmem *m = to_vmem(d);
	if (m->running)
		return 0;
	atomic_store(&d->stop, false);
	int rc = pthread_create(&m->thread, NULL, mem_thread, m);
	if (rc) {
		log_msg(LOG_ERROR, "%s: cannot start its thread: %s", d->name, strerror(rc));
		return -rc;
	}
	pthread_setname_np(m->thread, "_mem");
	m->running = true;
	return 0;
}

/* Main thread.  The thread finishes the request it is on (at worst one
 * pin timeout) and exits. */
static void mem_stop(struct virtio_dev *d)
{
	struct vmem *m = to_vmem(d);
	virtio_dev_join(d, m->thread, &m->running);
}

/* Free everything of m but the region (create's error path, destroy). */
static void vmem_free(struct vmem *m)
{
	free(m->plugged);
	free(m->chunk_plugged);
	free(m->slot_live);
	free(m->slot_new);
	free(m);
}

/* Main thread, the device thread stopped: unplug everything, delete the
 * memslots, remove the region. */
static void mem_destroy(struct virtio_dev *d)
{
	struct vmem *m = to_vmem(d);
	struct outcome o = { 0 };

	mem_stop(d);
	for (uint64_t i = 0; i < m->nblocks;) {
		if (!blk_plugged(m, i)) {
			i++;
			continue;
		}
		uint64_t j = i;
		while (j < m->nblocks && blk_plugged(m, j))
			j++;
		if (unplug_run(m, i, j - i, &o) < 0)
			log_msg(LOG_WARN, "%s: destroy: %s", d->name, gmm_last_error());
		i = j;
	}
	for (unsigned c = 0; c < m->nchunks; c++)
		if (m->slot_live[c] && set_slot(m, c, false) < 0)
			log_msg(LOG_WARN, "%s: destroy: cannot delete the memslot of chunk %u", d->name, c);
	if (gmm_region_remove(d->mem, m->region) < 0)
		log_msg(LOG_ERROR, "%s: destroy: cannot remove its region: %s", d->name,
			gmm_last_error());
	virtio_dev_fini(d);
	vmem_free(m);
}

/* Any thread; takes d->lock. */
static void mem_counters(struct virtio_dev *d, char *buf, size_t len)
{
	struct vmem *m = to_vmem(d);
	size_t l = strnlen(buf, len);
	if (l >= len)
		return;
	pthread_mutex_lock(&d->lock);
	snprintf(buf + l, len - l,
		 "virtio_mem_region_bytes %" PRIu64 "\n"
		 "virtio_mem_plugged_bytes %" PRIu64 "\n"
		 "virtio_mem_requested_bytes %" PRIu64 "\n"
		 "virtio_mem_plug_requests %" PRIu64 "\n"
		 "virtio_mem_unplug_requests %" PRIu64 "\n"
		 "virtio_mem_state_requests %" PRIu64 "\n"
		 "virtio_mem_acks %" PRIu64 "\n"
		 "virtio_mem_nacks %" PRIu64 "\n"
		 "virtio_mem_busy %" PRIu64 "\n"
		 "virtio_mem_errors %" PRIu64 "\n"
		 "virtio_mem_dropped %" PRIu64 "\n"
		 "virtio_mem_plugged_bytes_total %" PRIu64 "\n"
		 "virtio_mem_unplugged_bytes_total %" PRIu64 "\n"
		 "virtio_mem_last_unplug_ns %" PRIu64 "\n"
		 "virtio_mem_unplug_ns_total %" PRIu64 "\n"
		 "virtio_mem_memslots %u\n",
		 m->size, m->plugged_size, m->requested_size, m->plug_requests,
		 m->unplug_requests, m->state_requests, m->acks, m->nacks, m->busy, m->errors,
		 m->dropped, m->plugged_bytes_total, m->unplugged_bytes_total, m->last_unplug_ns,
		 m->unplug_ns_total, m->memslots);
	pthread_mutex_unlock(&d->lock);
	/* Measured (a pagemap scan of the whole region, so here and not in
	 * vm.info, which clients poll), outside the lock: the region lives
	 * as long as the device. */
	struct gmm_coverage cov;
	size_t used = strnlen(buf, len);
	if (gmm_region_coverage(m->region, &cov) == 0 && used < len)
		snprintf(buf + used, len - used, "virtio_mem_resident_bytes %" PRIu64 "\n", cov.resident);
}

/* ---- snapshot (issue 16) ----------------------------------------------- */

static int mem_quiesce(struct virtio_dev *d)
{
	if (!to_vmem(d)->running)
		return 0;
	/* Bound: the request in progress (one pin timeout at worst). */
	return virtio_dev_quiesce_wait(d, VIRTIO_QUIESCE_TIMEOUT_MS);
}

static void mem_resume_io(struct virtio_dev *d)
{
	virtio_dev_resume(d);
}

/* Region, block size, the plugged bitmap (le64 words as hex), requested
 * and usable sizes, counters.  Main thread, the thread quiet (it alone
 * writes the bitmap). */
static struct json_object *mem_save(struct virtio_dev *d, char *err, size_t errlen)
{
	struct vmem *m = to_vmem(d);
	struct json_object *o = json_object_new_object();
	size_t words = (m->nblocks + 63) / 64;
	pthread_mutex_lock(&d->lock);
	int r = !o || sj_set_u64(o, "addr", m->base) || sj_set_u64(o, "region_size", m->size) ||
		sj_set_u64(o, "block_size", BLOCK) || sj_set_u64(o, "usable_region_size", m->size) ||
		sj_set_u64(o, "plugged_size", m->plugged_size) ||
		sj_set_u64(o, "requested_size", m->requested_size) ||
		sj_set_hex(o, "plugged", m->plugged, words * sizeof(uint64_t)) ||
		sj_set_u64(o, "plug_requests", m->plug_requests) ||
		sj_set_u64(o, "unplug_requests", m->unplug_requests) ||
		sj_set_u64(o, "plugged_bytes_total", m->plugged_bytes_total) ||
		sj_set_u64(o, "unplugged_bytes_total", m->unplugged_bytes_total);
	pthread_mutex_unlock(&d->lock);
	if (r) {
		json_object_put(o);
		snprintf(err, errlen, "%s: out of memory saving its state", d->name);
		return NULL;
	}
	return o;
}

/*
 * Main thread, before start.  Checks the region (address, size, block
 * size) is the one saved and the bitmap agrees with plugged_size, then
 * registers the KVM memslot of every chunk holding a plugged block (the
 * memslots are the VM's, created empty: undone if one fails), then takes
 * the bitmap.  Maps and unmaps nothing: guestmm's table is the memory
 * layer's to restore (plugged blocks mapped, the rest absent).
 */
static int mem_restore(struct virtio_dev *d, struct json_object *o, char *err, size_t errlen)
{
	struct vmem *m = to_vmem(d);
	const char *w = "virtio-mem";
	uint64_t addr, size, bs, usable, plugged_size, req, pr, ur, pbt, ubt;
	if (sj_get_u64(o, "addr", &addr, w, err, errlen) ||
	    sj_get_u64(o, "region_size", &size, w, err, errlen) ||
	    sj_get_u64(o, "block_size", &bs, w, err, errlen) ||
	    sj_get_u64(o, "usable_region_size", &usable, w, err, errlen) ||
	    sj_get_u64(o, "plugged_size", &plugged_size, w, err, errlen) ||
	    sj_get_u64(o, "requested_size", &req, w, err, errlen) ||
	    sj_get_u64(o, "plug_requests", &pr, w, err, errlen) ||
	    sj_get_u64(o, "unplug_requests", &ur, w, err, errlen) ||
	    sj_get_u64(o, "plugged_bytes_total", &pbt, w, err, errlen) ||
	    sj_get_u64(o, "unplugged_bytes_total", &ubt, w, err, errlen))
		return -1;
	if (addr != m->base || size != m->size || bs != BLOCK || usable != m->size) {
		snprintf(err, errlen, "%s: region 0x%" PRIx64 "+0x%" PRIx64 " in %" PRIu64
			 "-byte blocks, this one is 0x%" PRIx64 "+0x%" PRIx64 " in %llu", w, addr, size,
			 bs, m->base, m->size, BLOCK);
		return -1;
	}
	if (req > m->size || req % BLOCK) {
		snprintf(err, errlen, "%s.requested_size: 0x%" PRIx64 " is not a block multiple within "
			 "the region", w, req);
		return -1;
	}
	size_t words = (m->nblocks + 63) / 64;
	uint64_t *bm = calloc(words, sizeof(uint64_t));
	uint32_t *per = calloc(m->nchunks, sizeof(uint32_t));
	if (!bm || !per) {
		free(bm), free(per);
		snprintf(err, errlen, "%s: out of memory", w);
		return -1;
	}
	int rc = sj_get_hex(o, "plugged", bm, words * sizeof(uint64_t), w, err, errlen);
	uint64_t count = 0;
	for (uint64_t i = 0; !rc && i < words * 64; i++) {
		if (!(bm[i / 64] >> (i % 64) & 1))
			continue;
		if (i >= m->nblocks) {
			snprintf(err, errlen, "%s.plugged: block %" PRIu64 " beyond the region", w, i);
			rc = -1;
			break;
		}
		count++;
		per[i / BLOCKS_PER_CHUNK]++;
	}
	if (!rc && count * BLOCK != plugged_size) {
		snprintf(err, errlen, "%s.plugged_size: 0x%" PRIx64 ", the bitmap has %" PRIu64
			 " blocks plugged", w, plugged_size, count);
		rc = -1;
	}
	/* The memslots of chunks with plugged blocks, on the main thread
	 * before the device thread exists (set_memslot's other caller). */
	unsigned c = 0;
	for (; !rc && c < m->nchunks; c++) {
		if (!per[c] || m->slot_live[c])
			continue;
		int e = set_slot(m, c, true);
		if (e < 0) {
			snprintf(err, errlen, "%s: cannot register the memslot of chunk %u: %s", w, c,
				 strerror(-e));
			rc = -1;
			break;
		}
		m->slot_new[c] = true;
	}
	if (rc) {
		for (unsigned k = 0; k < c; k++)
			if (m->slot_new[k])
				set_slot(m, k, false);
		memset(m->slot_new, 0, m->nchunks * sizeof(bool));
		free(bm), free(per);
		return -1;
	}
	memset(m->slot_new, 0, m->nchunks * sizeof(bool));
	memcpy(m->plugged, bm, words * sizeof(uint64_t));
	memcpy(m->chunk_plugged, per, m->nchunks * sizeof(uint32_t));
	unsigned slots = 0;
	for (unsigned k = 0; k < m->nchunks; k++) {
		if (per[k])
			m->slot_live[k] = true;
		slots += m->slot_live[k];
	}
	free(bm), free(per);
	pthread_mutex_lock(&d->lock);
	m->plugged_size = plugged_size;
	m->requested_size = req;
	m->plug_requests = pr, m->unplug_requests = ur;
	m->plugged_bytes_total = pbt, m->unplugged_bytes_total = ubt;
	m->memslots = slots;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static const struct virtio_dev_ops mem_ops = {
	.quiesce = mem_quiesce,
	.resume_io = mem_resume_io,
	.save = mem_save,
	.restore = mem_restore,
	.config_read = mem_config_read,
	/* No config_write: every field is read-only for the driver (5.15.4.1);
	 * the transport ignores writes with a rate-limited line. */
	.reset = mem_reset,
	.start = mem_start,
	.stop = mem_stop,
	.destroy = mem_destroy,
	.counters = mem_counters,
};

/* ---- host side -------------------------------------------------------- */

struct virtio_dev *virtio_mem_create(struct gmm_vm *mem, uint64_t gpa, uint64_t size,
				     enum gmm_backing backing, const struct virtio_mem_host *host,
				     char *err, size_t errlen)
{
	if (!size || size % VIRTIO_MEM_SLOT_SIZE || gpa % VIRTIO_MEM_SLOT_SIZE ||
	    gpa >= GMM_GPA_LIMIT || size > GMM_GPA_LIMIT - gpa) {
		snprintf(err, errlen, "virtio-mem: region 0x%" PRIx64 "+0x%" PRIx64
			 " must be a non-empty multiple of %llu MiB, aligned to it, below 2^%d",
			 gpa, size, VIRTIO_MEM_SLOT_SIZE >> 20, GMM_GPA_BITS);
		return NULL;
	}
	if ((unsigned)backing >= GMM_BACKING__N || backing == GMM_BACKING_FILE ||
	    gmm_backing_page_size(backing) > BLOCK) {
		snprintf(err, errlen, "virtio-mem: backing %s cannot be plugged in %llu MiB blocks",
			 (unsigned)backing < GMM_BACKING__N ? gmm_backing_name(backing) : "?",
			 BLOCK >> 20);
		return NULL;
	}
	struct vmem *m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "virtio-mem: out of memory");
		return NULL;
	}
	m->base = gpa;
	m->size = size;
	m->nblocks = size / BLOCK;
	m->nchunks = (unsigned)(size / VIRTIO_MEM_SLOT_SIZE);
	if (host)
		m->host = *host;
	m->plugged = calloc((m->nblocks + 63) / 64, sizeof(uint64_t));
	m->chunk_plugged = calloc(m->nchunks, sizeof(uint32_t));
	m->slot_live = calloc(m->nchunks, sizeof(bool));
	m->slot_new = calloc(m->nchunks, sizeof(bool));
	if (!m->plugged || !m->chunk_plugged || !m->slot_live || !m->slot_new) {
		snprintf(err, errlen, "virtio-mem: out of memory");
		vmem_free(m);
		return NULL;
	}

	struct gmm_region_spec spec = {
		.gpa = gpa,
		.size = size,
		.backing = backing,
		.name = "hotplug",
	};
	int rc = gmm_region_add(mem, &spec, &m->region);
	if (rc < 0) {
		snprintf(err, errlen, "virtio-mem: %s", gmm_last_error());
		vmem_free(m);
		return NULL;
	}
	struct gmm_region_info info;
	gmm_region_info(m->region, &info);
	m->hva = info.hva;
	/* Every block starts unplugged: no host memory, a PROT_NONE
	 * placeholder keeping the addresses. */
	rc = gmm_unmap(mem, gpa, size, 0);
	if (rc < 0) {
		snprintf(err, errlen, "virtio-mem: unplugging the region: %s", gmm_last_error());
		gmm_region_remove(mem, m->region);
		vmem_free(m);
		return NULL;
	}

	struct virtio_dev *d = &m->dev;
	d->name = "virtio-mem";
	d->device_id = VIRTIO_ID_MEM;
	d->features = 1ULL << VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE;
	d->config_size = CFG_BYTES;
	d->nqueues = 1;
	d->ops = &mem_ops;
	d->priv = m;
	d->mem = mem;
	rc = virtio_dev_init(d);
	if (rc < 0) {
		snprintf(err, errlen, "virtio-mem: %s", strerror(-rc));
		gmm_region_remove(mem, m->region);
		vmem_free(m);
		return NULL;
	}
	return d;
}

/* Any thread; takes d->lock. */
int virtio_mem_request(struct virtio_dev *d, uint64_t bytes, char *err, size_t errlen)
{
	struct vmem *m = to_vmem(d);
	if (bytes % BLOCK || bytes > m->size) {
		snprintf(err, errlen, "virtio-mem: requested size %" PRIu64
			 " must be a multiple of %llu MiB and at most the region (%" PRIu64 " MiB)",
			 bytes, BLOCK >> 20, m->size >> 20);
		return -1;
	}
	pthread_mutex_lock(&d->lock);
	m->requested_size = bytes;
	virtio_config_changed(d);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* Any thread; takes d->lock. */
void virtio_mem_info(struct virtio_dev *d, struct virtio_mem_info *out)
{
	struct vmem *m = to_vmem(d);
	pthread_mutex_lock(&d->lock);
	*out = (struct virtio_mem_info){
		.addr = m->base,
		.region_size = m->size,
		.block_size = BLOCK,
		.plugged_bytes = m->plugged_size,
		.requested_bytes = m->requested_size,
		.plug_requests = m->plug_requests,
		.unplug_requests = m->unplug_requests,
		.nacks = m->nacks,
		.busy = m->busy,
		.last_unplug_ns = m->last_unplug_ns,
		.unplug_ns_total = m->unplug_ns_total,
		.unplugged_bytes_total = m->unplugged_bytes_total,
		.memslots = m->memslots,
	};
	pthread_mutex_unlock(&d->lock);
}
