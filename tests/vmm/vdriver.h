/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vdriver.h - a minimal virtio driver for unit tests: it owns a small guest
 * RAM (a guestmm VM with one region at GPA 0), lays out split virtqueues
 * and buffers in it, and talks to a device through virtio_mmio_access(),
 * exactly as a guest would through MMIO exits -- but from the test thread,
 * with no KVM and no guest.  It can also write anything a hostile guest
 * could (raw descriptors, bad indices, rings over MMIO), since every byte
 * goes through gmm_write().
 *
 * Single test thread; the device under test runs its own thread.
 */
#ifndef TESTS_VDRIVER_H
#define TESTS_VDRIVER_H

#include "virtio/virtio.h"

#include <stdbool.h>
#include <stdint.h>

struct vd_queue {
	uint16_t num;
	uint64_t desc, avail, used;   /* GPAs */
	uint16_t avail_idx;           /* driver's next avail->idx */
	uint16_t last_used;           /* used entries consumed */
	uint16_t next_desc;           /* descriptor allocator (round robin) */
};

struct vdriver {
	struct gmm_vm *mem;
	struct gmm_region *ram;
	struct gmm_walker *w;         /* the test thread's walker */
	uint64_t ram_size;
	uint64_t brk;                 /* bump allocator for rings and buffers */
	struct virtio_dev *d;
	struct vd_queue q[VIRTIO_MAX_QUEUES];
};

/* Guest RAM [0, ram_size) (thp backing unless backing given by
 * vd_init_backing), strategy = the default.  0 or -1. */
int vd_init(struct vdriver *v, uint64_t ram_size);
int vd_init_backing(struct vdriver *v, uint64_t ram_size, enum gmm_backing backing);
/* Unregister the walker, destroy the VM (the device must be destroyed
 * first). */
void vd_fini(struct vdriver *v);

/* Allocate size bytes of guest RAM aligned to align (bump; aborts the
 * test when RAM runs out).  Returns the GPA. */
uint64_t vd_alloc(struct vdriver *v, uint64_t size, uint64_t align);
/* Guest memory access (through the walker). */
void vd_write(struct vdriver *v, uint64_t gpa, const void *src, size_t len);
void vd_read(struct vdriver *v, uint64_t gpa, void *dst, size_t len);

/* Registers (32-bit), through virtio_mmio_access(). */
uint32_t vd_reg_read(struct vdriver *v, uint32_t off);
void vd_reg_write(struct vdriver *v, uint32_t off, uint32_t val);
/* Config space, len 1, 2, 4 or 8. */
uint64_t vd_config_read(struct vdriver *v, uint32_t off, unsigned len);
void vd_config_write(struct vdriver *v, uint32_t off, uint64_t val, unsigned len);

/* The driver's initialisation (3.1.1): reset, ACKNOWLEDGE, DRIVER,
 * features (the device's AND want; VERSION_1 always), FEATURES_OK (checked
 * back), then for each of nqueues queues a ring of `num` entries allocated
 * in RAM and QueueReady, then DRIVER_OK.  Starts nothing: the caller
 * has called d->ops->start() (or does so after).  Returns the status read
 * back (0 on FEATURES_OK refused: -1). */
int vd_setup(struct vdriver *v, struct virtio_dev *d, uint64_t want_features, unsigned nqueues,
	     uint16_t num);

/* One buffer of a chain to add. */
struct vd_buf {
	uint64_t gpa;
	uint32_t len;
	bool write;                   /* device-writable */
};

/* Add a chain of n buffers to queue q (n descriptors, or one INDIRECT
 * descriptor pointing at a table of n allocated in RAM), publish it in
 * the avail ring (not kicked).  Returns the head index. */
int vd_add(struct vdriver *v, unsigned q, const struct vd_buf *bufs, unsigned n, bool indirect);
/* Write raw descriptor i of queue q / publish a raw head (hostile tests). */
void vd_set_desc(struct vdriver *v, unsigned q, uint16_t i, const struct virtq_desc *d);
void vd_publish(struct vdriver *v, unsigned q, uint16_t head);
/* Set avail->idx / avail->flags / used_event directly (hostile tests). */
void vd_set_avail_idx(struct vdriver *v, unsigned q, uint16_t idx);
/* QueueNotify for q (the register write: with no ioeventfd it signals the
 * device's kick_fd). */
void vd_kick(struct vdriver *v, unsigned q);

/* Wait up to timeout_ms for a used element on q; consume it.  Returns the
 * head and stores the length written, or -1 on timeout. */
int vd_wait_used(struct vdriver *v, unsigned q, int timeout_ms, uint32_t *len);
/* Number of used elements not yet consumed. */
unsigned vd_used_pending(struct vdriver *v, unsigned q);
/* Wait up to timeout_ms for the device's irq_fd; true if it fired (and
 * clears it). */
bool vd_wait_irq(struct vdriver *v, int timeout_ms);
/* Wait up to timeout_ms until (status & mask) == mask. */
bool vd_wait_status(struct vdriver *v, uint32_t mask, int timeout_ms);

/* Call d->ops->stop on a helper thread and wait for it at most limit_ms:
 * the milliseconds it took, or -1 if it had not returned by then (the
 * helper thread is then left running with its stop, and its small state
 * leaked: the caller fails and ends the process). */
double vd_stop_within(struct virtio_dev *d, int limit_ms);

#endif
