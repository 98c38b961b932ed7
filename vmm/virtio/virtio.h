/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vmm/virtio/ - virtio devices on virtio-mmio: the split virtqueue, the
 * register file, blk, console, balloon, mem, and their attachment to a KVM
 * VM.  May call core/ (log, the bus and the VM for attaching) and guestmm
 * (every guest access is a walk); never devices/, the machine or the API.
 * Which devices a VM gets is the machine's business (machine/virtio_set.c).
 */
/*
 * virtio.h - virtio 1.2 devices on the virtio-mmio (version 2) transport,
 * split virtqueues with indirect descriptors and event-index.
 *
 * Layers (one file each):
 *   virtqueue.c    a split virtqueue as the device sees it: pop a descriptor
 *                  chain, push a used element, decide whether to interrupt.
 *                  Every access to the rings and tables is a guestmm walk
 *                  (gmm_translate/gmm_read/gmm_write); nothing keeps a host
 *                  pointer into guest memory between calls.
 *   virtio_mmio.c  the register file of one device (features, queues,
 *                  status, interrupt status, config space), called on the
 *                  vCPU thread that exited on the access; attaching a device
 *                  to a KVM VM (bus range, irqfd, ioeventfd per queue).
 *   virtio_blk.c, virtio_console.c, virtio_balloon.c, virtio_mem.c,
 *   virtio_net.c
 *                  the devices, each with its own thread that processes its
 *                  queues.
 *
 * The guest is untrusted.  A broken ring (a descriptor outside RAM or over
 * MMIO, a loop, a chain longer than the queue, an overflowing length, an
 * avail index that jumps past the queue size, a misaligned ring) puts the
 * device into DEVICE_NEEDS_RESET (status bit 0x40, with a configuration
 * change interrupt) and logs one rate-limited line; the device then ignores
 * its queues until the driver resets it.  A bad data buffer in an otherwise
 * valid request is an I/O error reported in that request.  Register writes
 * in the wrong state are ignored with a rate-limited line.
 *
 * Threads and locking:
 *   - d->lock (a mutex per device) guards the register state, the
 *     virtqueue structs and the device's own state.  The vCPU thread takes
 *     it for a register access (inside its walk section); the device
 *     thread takes it to pop and push.
 *   - RULE: nobody holds d->lock across a guestmm writer operation
 *     (gmm_unmap, gmm_map, gmm_collapse, gmm_discard, gmm_region_*), across
 *     blocking I/O, or while waiting for another thread.  A writer waits
 *     for walk sections to end, and a vCPU waiting for d->lock sits inside
 *     one: holding the lock there would deadlock.
 *   - A device thread is a guestmm walker (registered once); it calls
 *     writer operations only outside its walk sections.
 *   - Reset (status 0 written by the driver) takes effect at once under
 *     the lock: queues forgotten, d->generation incremented.  Work a device
 *     thread started in an older generation (an I/O in flight) is finished
 *     and dropped without touching the rings: the device compares the
 *     generation it popped under with d->generation before it pushes.
 */
#ifndef VMM_VIRTIO_H
#define VMM_VIRTIO_H

#include "core/log.h"

#include <guestmm/guestmm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- constants from the virtio 1.2 specification ------------------- */

/* Device status (2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE   0x01
#define VIRTIO_STATUS_DRIVER        0x02
#define VIRTIO_STATUS_DRIVER_OK     0x04
#define VIRTIO_STATUS_FEATURES_OK   0x08
#define VIRTIO_STATUS_NEEDS_RESET   0x40
#define VIRTIO_STATUS_FAILED        0x80

/* Transport feature bits (6). */
#define VIRTIO_F_INDIRECT_DESC      28
#define VIRTIO_F_EVENT_IDX          29
#define VIRTIO_F_VERSION_1          32

/* Interrupt status bits (4.2.2). */
#define VIRTIO_INT_VRING            0x1
#define VIRTIO_INT_CONFIG           0x2

/* Device IDs (5). */
#define VIRTIO_ID_NET               1
#define VIRTIO_ID_BLOCK             2
#define VIRTIO_ID_CONSOLE           3
#define VIRTIO_ID_BALLOON           5
#define VIRTIO_ID_MEM               24

/* virtio-mmio registers (4.2.2). */
#define VIRTIO_MMIO_MAGIC_VALUE         0x000   /* "virt" */
#define VIRTIO_MMIO_VERSION             0x004   /* 2 */
#define VIRTIO_MMIO_DEVICE_ID           0x008
#define VIRTIO_MMIO_VENDOR_ID           0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES     0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES     0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL           0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX       0x034
#define VIRTIO_MMIO_QUEUE_NUM           0x038
#define VIRTIO_MMIO_QUEUE_READY         0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY        0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS    0x060
#define VIRTIO_MMIO_INTERRUPT_ACK       0x064
#define VIRTIO_MMIO_STATUS              0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW      0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH     0x084
#define VIRTIO_MMIO_QUEUE_AVAIL_LOW     0x090   /* "QueueDriver" */
#define VIRTIO_MMIO_QUEUE_AVAIL_HIGH    0x094
#define VIRTIO_MMIO_QUEUE_USED_LOW      0x0a0   /* "QueueDevice" */
#define VIRTIO_MMIO_QUEUE_USED_HIGH     0x0a4
#define VIRTIO_MMIO_SHM_SEL             0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW         0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH        0x0b4
#define VIRTIO_MMIO_SHM_BASE_LOW        0x0b8
#define VIRTIO_MMIO_SHM_BASE_HIGH       0x0bc
#define VIRTIO_MMIO_CONFIG_GENERATION   0x0fc
#define VIRTIO_MMIO_CONFIG              0x100
#define VIRTIO_MMIO_MAGIC               0x74726976u
#define VIRTIO_MMIO_VENDOR              0x204d4d56u  /* "VMM " */
/* Each device's window on the MMIO bus. */
#define VIRTIO_MMIO_WINDOW              0x1000

/* Split virtqueue layout (2.7). */
#define VIRTQ_DESC_F_NEXT           1
#define VIRTQ_DESC_F_WRITE          2
#define VIRTQ_DESC_F_INDIRECT       4
#define VIRTQ_AVAIL_F_NO_INTERRUPT  1
#define VIRTQ_USED_F_NO_NOTIFY      1

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
_Static_assert(sizeof(struct virtq_desc) == 16, "virtq_desc");

/* Bytes of each area for a queue of num entries (event-index fields
 * included, as the driver must always allocate them). */
#define VIRTQ_DESC_BYTES(num)   (16ULL * (num))
#define VIRTQ_AVAIL_BYTES(num)  (6ULL + 2ULL * (num))   /* flags, idx, ring[num], used_event */
#define VIRTQ_USED_BYTES(num)   (6ULL + 8ULL * (num))   /* flags, idx, ring[num], avail_event */

/* Limits of this implementation. */
#define VIRTQ_MAX_SIZE              256   /* QueueNumMax of every queue */
#define VIRTQ_MAX_CHAIN             256   /* descriptors in one chain, indirect ones included */
#define VIRTIO_MAX_QUEUES           5

/* ---- virtqueue.c ---------------------------------------------------- */

/* One buffer of a chain: a guest-physical range, not yet translated.  The
 * device translates (gmm_pin, or vq_chain_read/write) when it uses it. */
struct vq_seg {
	uint64_t gpa;
	uint32_t len;
	bool write;               /* device-writable */
};

/* A descriptor chain as popped: readable segments first (seg[0, nout)),
 * then writable ones (seg[nout, nseg)). */
struct vq_chain {
	uint16_t head;            /* what vq_push() gives back */
	uint16_t nseg, nout, nin;
	uint64_t out_bytes, in_bytes;   /* sums, each < 2^32 (checked) */
	struct vq_seg seg[VIRTQ_MAX_CHAIN];
};

struct virtqueue {
	unsigned index;
	/* Set by the driver through the registers (virtio_mmio.c). */
	uint16_t num;             /* queue size; 0 until set */
	bool ready;
	uint64_t desc, avail, used;     /* guest-physical addresses */
	/* Negotiated features, copied when the queue becomes ready. */
	bool event_idx, indirect;
	/* Device state. */
	uint16_t last_avail;      /* next avail ring entry to take */
	uint16_t used_idx;        /* our copy of used->idx */
	uint16_t signalled_used;  /* used_idx when we last interrupted */
	bool signalled_valid;
	/* Statistics. */
	uint64_t popped, pushed, irqs, suppressed;
};

/* Forget everything the driver set and the device's indices (reset);
 * index is kept. */
void vq_reset(struct virtqueue *q);

/* Check the layout the driver chose, when it sets QueueReady: num a power
 * of two in [1, max]; desc 16-, avail 2-, used 4-byte aligned; no area
 * wraps or reaches GMM_GPA_LIMIT.  0, or -1 with a reason in why. */
int vq_check_layout(const struct virtqueue *q, uint16_t max, char *why, size_t whylen);

/*
 * Take the next available chain.  Returns 1 (c filled, q->last_avail
 * advanced), 0 (nothing available), or -1 with a reason in why: the ring is
 * broken (the caller puts the device into NEEDS_RESET).  Broken means: a
 * ring or descriptor table that does not translate (outside RAM, MMIO,
 * unplugged), avail->idx more than num ahead, a head or next index >= num
 * (or >= the indirect table's length), a loop or more than VIRTQ_MAX_CHAIN
 * descriptors, an indirect table with a bad length (0, not a multiple of
 * 16, more than VIRTQ_MAX_CHAIN entries), INDIRECT inside an indirect table
 * or together with NEXT, INDIRECT without the feature, a readable
 * descriptor after a writable one, a segment whose gpa + len wraps, byte
 * sums >= 2^32.  Zero-length descriptors are skipped.  Segment addresses
 * themselves are not translated here (a data buffer outside RAM is the
 * request's I/O error, found when the device uses it).
 * Walker-side: runs in its own walk section(s); the caller holds d->lock.
 */
int vq_pop(struct virtqueue *q, struct gmm_walker *w, struct vq_chain *c, char *why,
	   size_t whylen);

/* Put head back in the used ring with the number of bytes written to its
 * writable segments, and publish it (release ordering: the buffers' and
 * the element's contents before used->idx).  0, or -1 with why (the used
 * ring does not translate).  Walker-side; caller holds d->lock. */
int vq_push(struct virtqueue *q, struct gmm_walker *w, uint16_t head, uint32_t written,
	    char *why, size_t whylen);

/* Push n used elements (heads[i], lens[i]) and publish them with ONE
 * used->idx store (release), so the driver sees all of them or none: a
 * mergeable receive buffer's pieces (virtio-net).  n <= q->num.  0, or -1
 * with why.  Walker-side; caller holds d->lock. */
int vq_push_n(struct virtqueue *q, struct gmm_walker *w, const uint16_t *heads,
	      const uint32_t *lens, unsigned n, char *why, size_t whylen);

/* Give back the last n chains popped and not pushed: the next vq_pop
 * takes them again (a device that popped buffers for a packet and found
 * too few).  Caller holds d->lock; n <= what it popped since. */
void vq_unpop(struct virtqueue *q, uint16_t n);

/* As vq_arm, but ask for a notification when the driver adds a buffer
 * beyond what is available NOW (avail_event = avail->idx), for a device
 * that waits for more buffers than the ring holds at the moment.  1: the
 * driver added one meanwhile (look again), 0, -1 with why. */
int vq_arm_more(struct virtqueue *q, struct gmm_walker *w, char *why, size_t whylen);

/* After pushes: 1 if the driver wants an interrupt now (event-index:
 * used_event crossed since the last interrupt; otherwise avail->flags
 * lacks NO_INTERRUPT), 0 if not, -1 with why.  A full barrier orders our
 * used->idx store before the read of the driver's field. */
int vq_need_irq(struct virtqueue *q, struct gmm_walker *w, char *why, size_t whylen);

/* Before the device thread sleeps: ask the driver to notify us when it
 * adds a buffer (event-index: avail_event = last_avail), full barrier,
 * then look again.  1: more is available already (pop again), 0: empty,
 * -1 with why. */
int vq_arm(struct virtqueue *q, struct gmm_walker *w, char *why, size_t whylen);

/* Copy between a chain's segments and a host buffer, as if the readable
 * (vq_chain_read) or writable (vq_chain_write) segments were one array,
 * starting at byte off of that array.  Each segment piece is copied with
 * gmm_read/gmm_write (a walk each).  0, -ERANGE (off + len beyond the
 * segments), -EFAULT (a segment does not translate: nothing further is
 * copied). */
int vq_chain_read(struct gmm_walker *w, const struct vq_chain *c, size_t off, void *dst,
		  size_t len);
int vq_chain_write(struct gmm_walker *w, const struct vq_chain *c, size_t off, const void *src,
		   size_t len);

/* ---- virtio_mmio.c: one device's transport state -------------------- */

struct virtio_dev;

struct virtio_dev_ops {
	/* Config space access, off + len <= config_size (the transport
	 * checks), len 1, 2, 4 or 8.  d->lock held, on a vCPU thread. */
	void (*config_read)(struct virtio_dev *d, uint32_t off, uint8_t *data, unsigned len);
	void (*config_write)(struct virtio_dev *d, uint32_t off, const uint8_t *data,
			     unsigned len);
	/* The driver reset the device: d->lock held, queues already reset,
	 * generation already bumped.  Drop device state (not in-flight
	 * I/O: that finishes and is dropped by generation).  Optional. */
	void (*reset)(struct virtio_dev *d);
	/* Start the device thread (the device is attached, the vCPUs are not
	 * yet running); stop it and wait for it (the vCPUs are stopped;
	 * in-flight I/O completes or is cancelled, pins are released);
	 * free everything.  Main thread.
	 * Stop is bounded whatever the guest queued (issue 13): a device
	 * thread looks at d->stop between chunks of its work and never waits
	 * on a guest-controlled amount of it.  The bound is the host I/O
	 * already under way (at most one chunk per request or worker: it
	 * cannot be taken back from the kernel while it may still write into
	 * guest memory) plus 100 ms; each device documents its own
	 * (virtio_console.c: one 4 KiB chunk and a 10 ms wait slice;
	 * virtio_blk.c: one 1 MiB chunk per request in flight). */
	int (*start)(struct virtio_dev *d);
	void (*stop)(struct virtio_dev *d);
	void (*destroy)(struct virtio_dev *d);
	/* Append "name value" lines of the device's counters for vm.counters
	 * (may be NULL).  Any thread; takes d->lock itself if it needs. */
	void (*counters)(struct virtio_dev *d, char *buf, size_t len);
	/* Snapshot (issue 16).  quiesce: finish every request the device
	 * popped (host I/O completed, results pushed, interrupts raised) and
	 * stop touching guest memory and rings until resume_io; the device
	 * thread may keep running but idle.  Bounded as stop is.  Main
	 * thread, vCPUs paused.  save: the device's own state (not the
	 * transport's: virtio_dev_save does that) as a new JSON object, or
	 * NULL with err; after quiesce.  restore: put a saved object back
	 * into a device created from the same config, before start; checks
	 * everything first, 0 or -1 with err.  May be NULL for a device with
	 * no state of its own (save then writes nothing, restore ignores). */
	int (*quiesce)(struct virtio_dev *d);
	void (*resume_io)(struct virtio_dev *d);
	struct json_object *(*save)(struct virtio_dev *d, char *err, size_t errlen);
	int (*restore)(struct virtio_dev *d, struct json_object *o, char *err, size_t errlen);
};

struct virtio_dev {
	/* Filled by the device's create function before virtio_dev_init(). */
	const char *name;              /* "virtio-blk", ... (logs) */
	uint32_t device_id;
	uint64_t features;             /* device-specific bits; the transport
	                                  adds VERSION_1, INDIRECT_DESC, EVENT_IDX */
	uint32_t config_size;
	unsigned nqueues;              /* <= VIRTIO_MAX_QUEUES */
	uint16_t queue_max;            /* QueueNumMax (a power of two); 0: VIRTQ_MAX_SIZE */
	const struct virtio_dev_ops *ops;
	void *priv;
	struct gmm_vm *mem;

	/* Placement, set by virtio_mmio_attach() (0 in unit tests). */
	uint64_t mmio_base;
	unsigned irq;

	/* Event fds, created by virtio_dev_init(), nonblocking. */
	int kick_fd[VIRTIO_MAX_QUEUES];   /* QueueNotify of queue i (ioeventfd, or
	                                     written by the register handler) */
	int irq_fd;                    /* the device interrupts by writing 1 (irqfd) */
	int ctl_fd;                    /* wakes the device thread: status change,
	                                  host request, stop */
	_Atomic bool stop;             /* the device thread should exit */

	pthread_mutex_t lock;          /* see the top of this file */
	uint32_t status;
	uint64_t driver_features;      /* accepted at FEATURES_OK */
	uint32_t dev_feat_sel, drv_feat_sel, queue_sel;
	uint32_t isr;                  /* InterruptStatus */
	uint32_t config_generation;
	uint64_t generation;           /* resets so far */
	struct virtqueue vq[VIRTIO_MAX_QUEUES];
	struct ratelimit rl;           /* for guest-caused messages */
	uint64_t n_notify, n_irq, n_errors, n_resets;

	/* Snapshot quiesce handshake (virtio_state.c): the main thread sets
	 * quiesce (after clearing quiet) and wakes the device thread; the
	 * thread finishes what it popped, then sets quiet and touches no
	 * ring or guest memory while quiesce stays set. */
	_Atomic bool quiesce;
	_Atomic bool quiet;
};

/* Snapshot of the transport: status, features (device's offered ones are
 * checked equal at restore), selectors, InterruptStatus, config
 * generation, every queue (num, ready, desc/avail/used, event_idx,
 * indirect, last_avail, used_idx, signalled_used/valid), then the device's
 * own state from ops->save under "device".  save: d->lock taken inside,
 * after ops->quiesce.  restore: before ops->start; queue layouts are
 * checked as QueueReady checks them (vq_check_layout); 0 or -1 with err.
 * Neither raises an interrupt: a restored InterruptStatus with a bit set
 * is re-signalled by virtio_dev_restore_irq() once the VM is wired. */
struct json_object;
struct json_object *virtio_dev_save(struct virtio_dev *d, char *err, size_t errlen);
int virtio_dev_restore(struct virtio_dev *d, struct json_object *o, char *err, size_t errlen);
void virtio_dev_restore_irq(struct virtio_dev *d);

/* The quiesce handshake every device's ops->quiesce/resume_io use
 * (virtio_state.c).  Device thread: virtio_dev_quiescing() (acquire) at
 * the top of each round and before each pop; once nothing it popped is
 * left, virtio_dev_set_quiet() (release: its pushes and interrupts before
 * the flag) and wait on ctl_fd only.  Main thread:
 * virtio_dev_quiesce_wait() sets quiesce, wakes the thread and waits at
 * most timeout_ms for quiet: 0, or -1 (logged; the caller resumes);
 * virtio_dev_resume() clears both and wakes the thread, which then looks
 * at every queue again (kicks drained meanwhile are not lost). */
#define VIRTIO_QUIESCE_TIMEOUT_MS 10000
bool virtio_dev_quiescing(const struct virtio_dev *d);
void virtio_dev_set_quiet(struct virtio_dev *d);
int virtio_dev_quiesce_wait(struct virtio_dev *d, unsigned timeout_ms);
void virtio_dev_resume(struct virtio_dev *d);
/* What the transport offers (device bits | VERSION_1, INDIRECT_DESC,
 * EVENT_IDX) and QueueNumMax of d's queues (virtio_mmio.c). */
uint64_t virtio_dev_offered(const struct virtio_dev *d);
uint16_t virtio_dev_queue_max(const struct virtio_dev *d);

/* Initialise the transport state (after the constant fields are set):
 * lock, eventfds, queues.  0 or -errno (nothing left open). */
int virtio_dev_init(struct virtio_dev *d);
/* Close the eventfds, destroy the lock (the device thread is stopped). */
void virtio_dev_fini(struct virtio_dev *d);

/* A register access at offset off of the device's window (vCPU thread;
 * takes d->lock).  Registers below 0x100 are 32-bit; other widths are
 * ignored (read as 0) with a rate-limited line.  Never fails. */
void virtio_mmio_access(struct virtio_dev *d, uint64_t off, uint8_t *data, unsigned len,
			bool is_write);

/* d->lock held: the driver set DRIVER_OK, and NEEDS_RESET is not set. */
bool virtio_dev_live(const struct virtio_dev *d);
/* True if the driver negotiated feature bit (d->lock held). */
bool virtio_has_feature(const struct virtio_dev *d, unsigned bit);
/* d->lock held: set NEEDS_RESET, interrupt with a configuration change if
 * the driver is live, and log "<name>: <message>; device needs reset" at
 * warn level, rate-limited. */
void virtio_dev_fail(struct virtio_dev *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* d->lock held: OR `why` (VIRTIO_INT_*) into InterruptStatus and signal
 * the interrupt. */
void virtio_dev_irq(struct virtio_dev *d, uint32_t why);
/* d->lock held: the device changed its config space (generation++,
 * configuration change interrupt once the driver is live). */
void virtio_config_changed(struct virtio_dev *d);
/* d->lock held, after pushes on q: interrupt if vq_need_irq() says so;
 * a broken ring -> virtio_dev_fail().  w: the calling (device) thread's
 * walker. */
void virtio_queue_used(struct virtio_dev *d, struct virtqueue *q, struct gmm_walker *w);
/* Any thread: wake the device thread through ctl_fd. */
void virtio_dev_wake(struct virtio_dev *d);
/* Main thread: ask the device thread to exit (d->stop, then ctl_fd) and
 * join it; *running is cleared.  Nothing when *running is false. */
void virtio_dev_join(struct virtio_dev *d, pthread_t thread, bool *running);
/* Read (and so clear) an eventfd; true if it had been signalled. */
bool virtio_eventfd_drain(int fd);

/* ---- attaching to a KVM VM (virtio_attach.c, in the vmm executable) -- */

struct vm;

/* Where the devices go: windows of VIRTIO_MMIO_WINDOW bytes from
 * VIRTIO_MMIO_BASE, IRQs from the list (ISA lines the legacy devices leave
 * free, edge-triggered: each irqfd write is one interrupt). */
#define VIRTIO_MMIO_BASE UINT64_C(0xd0800000)
#define VIRTIO_MMIO_MAX_DEVICES 6
extern const unsigned virtio_mmio_irqs[VIRTIO_MMIO_MAX_DEVICES];

/* The window of slot (VIRTIO_MMIO_BASE + slot * VIRTIO_MMIO_WINDOW). */
#define VIRTIO_MMIO_SLOT_BASE(slot) (VIRTIO_MMIO_BASE + (uint64_t)(slot) * VIRTIO_MMIO_WINDOW)

/* Attach device number `slot` (0..MAX-1) to vm: its MMIO window on the
 * bus, KVM_IRQFD for irq_fd, KVM_IOEVENTFD (datamatch = queue index) for
 * each kick_fd.  The kernel learns of it from the command line
 * virtio_set_cmdline() (machine/virtio_set.h) wrote for the same slot.
 * Main thread, vCPUs not running.  0 or -1 (logged). */
int virtio_mmio_attach(struct vm *vm, struct virtio_dev *d, unsigned slot);
/* Undo attach's KVM registrations (before the VM fd closes is not needed:
 * closing the VM drops them; used when a device is removed at run time). */
void virtio_mmio_detach(struct vm *vm, struct virtio_dev *d);

#endif
