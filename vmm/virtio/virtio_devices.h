/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * virtio_devices.h - the virtio devices vmm offers, as the VMM creates and
 * controls them.  Each create function fills a struct virtio_dev (virtio.h)
 * and calls virtio_dev_init(); ops->start/stop/destroy run its thread.
 * None of them needs KVM: unit tests drive them through
 * virtio_mmio_access() with rings built in guest memory (tests/vmm/vdriver.h).
 *
 * Every function returning int gives 0 or -1 with one sentence in err.
 */
#ifndef VMM_VIRTIO_DEVICES_H
#define VMM_VIRTIO_DEVICES_H

#include "virtio/virtio.h"

#include <guestmm/guestmm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- virtio_blk.c ---------------------------------------------------- */

enum blk_engine { BLK_ENGINE_IO_URING, BLK_ENGINE_THREADS };

struct blk_config {
	const char *path;          /* a raw image file (or block device) */
	bool readonly;             /* opened O_RDONLY, VIRTIO_BLK_F_RO offered */
	enum blk_engine engine;    /* io_uring (default) or a thread pool */
	const char *serial;        /* GET_ID answer (<= 20 bytes); NULL: derived from the path */
};

/* Open the image and describe the device (capacity = size / 512; a size
 * that is not a multiple of 512 is refused).  The thread is "_disk<index>". */
struct virtio_dev *virtio_blk_create(struct gmm_vm *mem, const struct blk_config *cfg,
				     unsigned index, char *err, size_t errlen);
const char *blk_engine_name(enum blk_engine e);
int blk_engine_parse(const char *s, enum blk_engine *out);

/* ---- virtio_console.c ------------------------------------------------ */

/* hvc0: what the guest writes goes to out_fd (-1: dropped); input comes
 * from virtio_console_input().  Thread "_console". */
struct virtio_dev *virtio_console_create(struct gmm_vm *mem, int out_fd, char *err,
					 size_t errlen);
/* Bytes typed by the user (main thread); buffered up to 64 KiB until the
 * guest posts receive buffers (more is dropped, counted). */
void virtio_console_input(struct virtio_dev *d, const uint8_t *buf, size_t len);
/* The guest's driver is live and has a receive queue: input should go
 * here rather than to the UART. */
bool virtio_console_active(struct virtio_dev *d);

/* ---- virtio_balloon.c ------------------------------------------------ */

struct balloon_config {
	bool deflate_on_oom;       /* VIRTIO_BALLOON_F_DEFLATE_ON_OOM */
	bool free_page_reporting;  /* VIRTIO_BALLOON_F_REPORTING */
	bool stats;                /* VIRTIO_BALLOON_F_STATS_VQ */
	unsigned stats_period_s;   /* how often the device asks for statistics (0: 1 s) */
	/* After a deflate makes a THP block whole, also madvise(MADV_COLLAPSE)
	 * the host range (a synchronous copy of 2 MiB beside the running
	 * guest).  Off by default: unproven on the emulating test hosts
	 * (README, "virtio devices"); the table leaf collapses either way and
	 * khugepaged brings the huge page back in its own time. */
	bool host_thp_collapse;
};

struct balloon_info {
	uint64_t target_bytes;     /* what the host asked for (num_pages) */
	uint64_t actual_bytes;     /* what the driver says it holds (actual) */
	uint64_t inflated_bytes;   /* pages unmapped by inflate, not yet deflated */
	uint64_t inflate_pages, deflate_pages;   /* totals */
	uint64_t reported_bytes;   /* free page reporting: discarded in total */
	uint64_t bad_pfns;         /* PFNs outside RAM etc., ignored */
	uint64_t collapsed_blocks; /* 2 MiB leaves collapsed after deflate */
	bool stats_valid;
	uint64_t stats[16];        /* VIRTIO_BALLOON_S_* tags 0..15, last values */
	uint64_t stats_age_ms;     /* since the last statistics buffer */
};

/* Thread "_balloon". */
struct virtio_dev *virtio_balloon_create(struct gmm_vm *mem, const struct balloon_config *cfg,
					 char *err, size_t errlen);
/* Set the balloon's target size (any thread): config change interrupt. */
int virtio_balloon_set_target(struct virtio_dev *d, uint64_t bytes, char *err, size_t errlen);
void virtio_balloon_info(struct virtio_dev *d, struct balloon_info *out);

/* ---- virtio_mem.c ---------------------------------------------------- */

#define VIRTIO_MEM_BLOCK_SIZE (2ULL << 20)
#define VIRTIO_MEM_SLOT_SIZE (128ULL << 20)   /* one KVM memslot per 128 MiB chunk */

/* How the device tells the VMM about KVM memslots: chunk i of the region
 * ([gpa + i * SLOT_SIZE, + SLOT_SIZE)) gets a memslot while any of its
 * blocks is plugged; size 0 deletes it.  0 or -errno.  Called on the
 * device thread, without d->lock; and by the snapshot restore (ops->restore,
 * main thread, before start) for every chunk with a plugged block. */
struct virtio_mem_host {
	int (*set_memslot)(void *opaque, unsigned chunk, uint64_t gpa, uint64_t size, void *hva);
	void *opaque;
};

struct virtio_mem_info {
	uint64_t addr, region_size, block_size;
	uint64_t plugged_bytes, requested_bytes;
	uint64_t plug_requests, unplug_requests, nacks, busy;
	uint64_t last_unplug_ns;       /* VMM time of the last unplug request */
	uint64_t unplug_ns_total;      /* all unplug requests */
	uint64_t unplugged_bytes_total;
	unsigned memslots;             /* live KVM memslots */
};

/* A hot-pluggable region [gpa, gpa + size) (size a multiple of
 * VIRTIO_MEM_SLOT_SIZE, gpa aligned to it) backed like guest RAM, every
 * block unplugged (no host memory) at start.  Thread "_mem". */
struct virtio_dev *virtio_mem_create(struct gmm_vm *mem, uint64_t gpa, uint64_t size,
				     enum gmm_backing backing, const struct virtio_mem_host *host,
				     char *err, size_t errlen);
/* Ask the guest to plug or unplug up to `bytes` (multiple of the block
 * size, <= region size): config change interrupt. */
int virtio_mem_request(struct virtio_dev *d, uint64_t bytes, char *err, size_t errlen);
void virtio_mem_info(struct virtio_dev *d, struct virtio_mem_info *out);

/* ---- virtio_net.c ---------------------------------------------------- */

#define VIRTIO_NET_HDR_BYTES 12        /* struct virtio_net_hdr_v1 (num_buffers included) */
#define NET_MAX_FRAME 65550            /* bytes of one frame after the header, at most */

struct net_dev_config {
	const char *tap;           /* a tap to open by name (TUNSETIFF), when fd < 0 */
	int fd;                    /* a tap fd (the device uses its own dup), or -1 */
	uint8_t mac[6];
	unsigned mtu;              /* 0: 1500, MTU feature not offered; else also set on the tap */
	unsigned queue_size;       /* QueueNumMax of both queues (power of two); 0: 256 */
	uint32_t ip, mask;         /* network order; ip != 0: set on the tap, which is brought up */
};

struct net_info {
	uint8_t mac[6];
	char ifname[16];
	unsigned mtu;
	bool vnet_hdr;             /* the tap carries virtio-net headers (offloads possible) */
	bool live;                 /* driver OK, no reset needed */
	uint64_t offered, features;   /* device-specific bits offered; accepted by the driver */
	uint64_t rx_packets, rx_bytes, rx_dropped, rx_errors, rx_waits;
	uint64_t tx_packets, tx_bytes, tx_dropped, tx_errors, tx_waits;
};

/* Open (or adopt) the tap and describe the device.  Thread "_net<index>". */
struct virtio_dev *virtio_net_create(struct gmm_vm *mem, const struct net_dev_config *cfg,
				     unsigned index, char *err, size_t errlen);
/* Any thread. */
void virtio_net_info(struct virtio_dev *d, struct net_info *out);

#endif
