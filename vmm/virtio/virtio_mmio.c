// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio_mmio.c - the virtio-mmio (version 2) register file of one device.
 *
 * A guest's driver sets a device up through 32-bit registers (virtio 1.2
 * 4.2.2): it reads the device's features 32 bits at a time, writes the
 * ones it accepts, sets FEATURES_OK (refused here unless VERSION_1 is
 * accepted and nothing the device did not offer), places each queue
 * (QueueNum, three addresses, QueueReady), sets DRIVER_OK, notifies queues
 * (QueueNotify) and acknowledges interrupts (InterruptACK).
 *
 * Everything here runs on the vCPU thread that exited on the access, under
 * d->lock (virtio.h: never held across guestmm writer operations or I/O).
 * The device thread learns of changes through d->ctl_fd (status changes)
 * and d->kick_fd[] (notifications; KVM's ioeventfd writes those directly
 * when registered, and this handler writes them otherwise).
 *
 * Wrong-state writes (queue fields while the queue is ready, features after
 * FEATURES_OK, a queue selector out of range...) are ignored and logged,
 * rate-limited; a queue whose layout is bad when it is made ready puts the
 * device into NEEDS_RESET.  Reads of unknown registers return 0.
 */
#include "virtio/virtio.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define TRANSPORT_FEATURES ((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_INDIRECT_DESC) | \
			    (1ULL << VIRTIO_F_EVENT_IDX))

/* QueueNumMax of every queue of d: its own limit (a power of two) or the
 * implementation's. */
uint16_t virtio_dev_queue_max(const struct virtio_dev *d)
{
	return d->queue_max && d->queue_max < VIRTQ_MAX_SIZE ? d->queue_max : VIRTQ_MAX_SIZE;
}

uint64_t virtio_dev_offered(const struct virtio_dev *d)
{
	return d->features | TRANSPORT_FEATURES;
}

int virtio_dev_init(struct virtio_dev *d)
{
	int err = 0;
	d->irq_fd = d->ctl_fd = -1;
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		d->kick_fd[i] = -1;
	if (d->nqueues == 0 || d->nqueues > VIRTIO_MAX_QUEUES || !d->ops)
		return -EINVAL;
	pthread_mutex_init(&d->lock, NULL);
	d->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	d->ctl_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->irq_fd < 0 || d->ctl_fd < 0)
		err = -errno;
	for (unsigned i = 0; !err && i < d->nqueues; i++) {
		d->kick_fd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (d->kick_fd[i] < 0)
			err = -errno;
	}
	if (err) {
		virtio_dev_fini(d);
		return err;
	}
	atomic_store(&d->stop, false);
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		d->vq[i].index = i;
		vq_reset(&d->vq[i]);
	}
	atomic_store(&d->quiesce, false);
	atomic_store(&d->quiet, false);
	d->status = 0;
	d->driver_features = 0;
	d->isr = 0;
	return 0;
}

/* Also the undo of a failed virtio_dev_init() past its argument checks. */
void virtio_dev_fini(struct virtio_dev *d)
{
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		if (d->kick_fd[i] >= 0)
			close(d->kick_fd[i]);
		d->kick_fd[i] = -1;
	}
	if (d->irq_fd >= 0)
		close(d->irq_fd);
	if (d->ctl_fd >= 0)
		close(d->ctl_fd);
	pthread_mutex_destroy(&d->lock);
	d->irq_fd = d->ctl_fd = -1;
}

bool virtio_eventfd_drain(int fd)
{
	uint64_t v;
	return read(fd, &v, sizeof(v)) == (ssize_t)sizeof(v);
}

static void eventfd_signal(int fd)
{
	uint64_t one = 1;
	/* EAGAIN only when the counter would overflow: it is signalled anyway. */
	static struct ratelimit rl; /* a guest's notifies call this as often as it likes */
	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_ratelimited(&rl, LOG_WARN, "eventfd write: %s", strerror(errno));
}

void virtio_dev_wake(struct virtio_dev *d)
{
	eventfd_signal(d->ctl_fd);
}

void virtio_dev_join(struct virtio_dev *d, pthread_t thread, bool *running)
{
	if (!*running)
		return;
	/* Release: the thread's acquire load of stop sees what came before. */
	atomic_store_explicit(&d->stop, true, memory_order_release);
	virtio_dev_wake(d);
	pthread_join(thread, NULL);
	*running = false;
}

bool virtio_dev_live(const struct virtio_dev *d)
{
	return (d->status & VIRTIO_STATUS_DRIVER_OK) && !(d->status & VIRTIO_STATUS_NEEDS_RESET);
}

bool virtio_has_feature(const struct virtio_dev *d, unsigned bit)
{
	return bit < 64 && (d->driver_features & (1ULL << bit));
}

void virtio_dev_irq(struct virtio_dev *d, uint32_t why)
{
	d->isr |= why;
	d->n_irq++;
	eventfd_signal(d->irq_fd);
}

void virtio_config_changed(struct virtio_dev *d)
{
	d->config_generation++;
	if (d->status & VIRTIO_STATUS_DRIVER_OK)
		virtio_dev_irq(d, VIRTIO_INT_CONFIG);
}

void virtio_dev_fail(struct virtio_dev *d, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	d->n_errors++;
	log_ratelimited(&d->rl, LOG_WARN, "%s: %s; device needs reset", d->name, msg);
	if (d->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	d->status |= VIRTIO_STATUS_NEEDS_RESET;
	/* 2.1.2: a device that sets NEEDS_RESET after DRIVER_OK sends a
	 * configuration change notification. */
	if (d->status & VIRTIO_STATUS_DRIVER_OK)
		virtio_config_changed(d);
}

void virtio_queue_used(struct virtio_dev *d, struct virtqueue *q, struct gmm_walker *w)
{
	char why[160];
	int r = vq_need_irq(q, w, why, sizeof(why));
	/* vq_need_irq counts q->irqs / q->suppressed; why starts "queue N: ". */
	if (r < 0)
		virtio_dev_fail(d, "%s", why);
	else if (r > 0)
		virtio_dev_irq(d, VIRTIO_INT_VRING);
}

/* Rate-limited complaint about a register access (guest-caused). */
static void bad_access(struct virtio_dev *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bad_access(struct virtio_dev *d, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_ratelimited(&d->rl, LOG_WARN, "%s: %s (ignored)", d->name, msg);
}

/* Driver reset (status 0): back to the power-on state at once. */
static void device_reset(struct virtio_dev *d)
{
	d->status = 0;
	d->driver_features = 0;
	d->dev_feat_sel = d->drv_feat_sel = d->queue_sel = 0;
	d->isr = 0;
	d->generation++;
	d->n_resets++;
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		vq_reset(&d->vq[i]);
	if (d->ops && d->ops->reset)
		d->ops->reset(d);
}

static struct virtqueue *selected(struct virtio_dev *d, const char *what)
{
	if (d->queue_sel >= d->nqueues) {
		bad_access(d, "%s of queue %u, which does not exist", what, d->queue_sel);
		return NULL;
	}
	return &d->vq[d->queue_sel];
}

/* A queue field may only be written while the queue is not ready. */
static struct virtqueue *selected_for_write(struct virtio_dev *d, const char *what)
{
	struct virtqueue *q = selected(d, what);
	if (q && q->ready) {
		bad_access(d, "%s of queue %u while it is ready", what, q->index);
		return NULL;
	}
	return q;
}

static void set_low(uint64_t *a, uint32_t v)
{
	*a = (*a & 0xffffffff00000000ULL) | v;
}

static void set_high(uint64_t *a, uint32_t v)
{
	*a = (*a & 0xffffffffULL) | ((uint64_t)v << 32);
}

static void write_status(struct virtio_dev *d, uint32_t v)
{
	if (v == 0) {
		device_reset(d);
		virtio_dev_wake(d);
		return;
	}
	if (v & ~0xffu) {
		bad_access(d, "status %#x", v);
		return;
	}
	/* The driver may only add bits (3.1.1), and FAILED at any time. */
	if ((d->status & ~v) & ~(uint32_t)VIRTIO_STATUS_NEEDS_RESET) {
		bad_access(d, "status %#x clears bits of %#x without a reset", v, d->status);
		return;
	}
	uint32_t added = v & ~d->status;
	if (added & VIRTIO_STATUS_FEATURES_OK) {
		uint64_t extra = d->driver_features & ~virtio_dev_offered(d);
		if (!(d->driver_features & (1ULL << VIRTIO_F_VERSION_1)) || extra) {
			/* Refused: the driver reads the status back and sees
			 * FEATURES_OK clear (3.1.1 step 6). */
			bad_access(d, "features %#llx refused (%s)",
				   (unsigned long long)d->driver_features,
				   extra ? "not offered" : "VERSION_1 missing: legacy drivers are not supported");
			v &= ~(uint32_t)VIRTIO_STATUS_FEATURES_OK;
			added &= ~(uint32_t)VIRTIO_STATUS_FEATURES_OK;
		}
	}
	if ((added & VIRTIO_STATUS_DRIVER_OK) && !(v & VIRTIO_STATUS_FEATURES_OK)) {
		bad_access(d, "DRIVER_OK without FEATURES_OK");
		return;
	}
	d->status = v | (d->status & VIRTIO_STATUS_NEEDS_RESET);
	if (added & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FAILED))
		virtio_dev_wake(d);
}

static void queue_ready(struct virtio_dev *d, uint32_t v)
{
	struct virtqueue *q = selected(d, "QueueReady");
	if (!q)
		return;
	if (v == 0) {
		/* 4.2.2: the driver may clear QueueReady to stop using a
		 * queue; the device forgets its indices. */
		uint16_t num = q->num;
		uint64_t desc = q->desc, avail = q->avail, used = q->used;
		/* Work a device thread started on the old rings must not
		 * land in new ones: the same generation rule as a reset. */
		d->generation++;
		vq_reset(q);
		q->num = num, q->desc = desc, q->avail = avail, q->used = used;
		return;
	}
	if (q->ready)
		return;
	if (!(d->status & VIRTIO_STATUS_FEATURES_OK)) {
		bad_access(d, "QueueReady of queue %u before FEATURES_OK", q->index);
		return;
	}
	char why[160];
	if (vq_check_layout(q, virtio_dev_queue_max(d), why, sizeof(why)) < 0) {
		virtio_dev_fail(d, "%s", why);
		return;
	}
	q->event_idx = virtio_has_feature(d, VIRTIO_F_EVENT_IDX);
	q->indirect = virtio_has_feature(d, VIRTIO_F_INDIRECT_DESC);
	q->last_avail = q->used_idx = 0;
	q->signalled_valid = false;
	q->ready = true;
	virtio_dev_wake(d);
}

static uint32_t reg_read(struct virtio_dev *d, uint32_t off)
{
	struct virtqueue *q;
	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE: return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION: return 2;
	case VIRTIO_MMIO_DEVICE_ID: return d->device_id;
	case VIRTIO_MMIO_VENDOR_ID: return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		return d->dev_feat_sel < 2 ? (uint32_t)(virtio_dev_offered(d) >> (32 * d->dev_feat_sel)) : 0;
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		return d->queue_sel < d->nqueues ? virtio_dev_queue_max(d) : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		q = d->queue_sel < d->nqueues ? &d->vq[d->queue_sel] : NULL;
		return q && q->ready;
	case VIRTIO_MMIO_INTERRUPT_STATUS: return d->isr;
	case VIRTIO_MMIO_STATUS: return d->status;
	case VIRTIO_MMIO_CONFIG_GENERATION: return d->config_generation;
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
		return 0xffffffffu;  /* no shared memory regions: length -1 */
	case VIRTIO_MMIO_SHM_BASE_LOW:
	case VIRTIO_MMIO_SHM_BASE_HIGH:
		return 0xffffffffu;
	/* Write-only registers and the queue fields read back as set. */
	case VIRTIO_MMIO_QUEUE_NUM:
		return d->queue_sel < d->nqueues ? d->vq[d->queue_sel].num : 0;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
	case VIRTIO_MMIO_QUEUE_USED_LOW:
	case VIRTIO_MMIO_QUEUE_USED_HIGH: {
		if (d->queue_sel >= d->nqueues)
			return 0;
		q = &d->vq[d->queue_sel];
		uint64_t a = off < VIRTIO_MMIO_QUEUE_AVAIL_LOW ? q->desc :
			     off < VIRTIO_MMIO_QUEUE_USED_LOW ? q->avail : q->used;
		return (off & 4) ? (uint32_t)(a >> 32) : (uint32_t)a;
	}
	default:
		return 0;
	}
}

static void reg_write(struct virtio_dev *d, uint32_t off, uint32_t v)
{
	struct virtqueue *q;
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL: d->dev_feat_sel = v; break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL: d->drv_feat_sel = v; break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (d->status & VIRTIO_STATUS_FEATURES_OK) {
			bad_access(d, "driver features written after FEATURES_OK");
			break;
		}
		if (d->drv_feat_sel == 0)
			set_low(&d->driver_features, v);
		else if (d->drv_feat_sel == 1)
			set_high(&d->driver_features, v);
		else if (v)
			bad_access(d, "driver features word %u = %#x", d->drv_feat_sel, v);
		break;
	case VIRTIO_MMIO_QUEUE_SEL: d->queue_sel = v; break;
	case VIRTIO_MMIO_QUEUE_NUM:
		if ((q = selected_for_write(d, "QueueNum"))) {
			if (v > virtio_dev_queue_max(d)) {
				bad_access(d, "QueueNum %u > %u", v, virtio_dev_queue_max(d));
				break;
			}
			q->num = (uint16_t)v;
		}
		break;
	case VIRTIO_MMIO_QUEUE_READY: queue_ready(d, v); break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		if (v >= d->nqueues) {
			bad_access(d, "notify of queue %u", v);
			break;
		}
		d->n_notify++;
		eventfd_signal(d->kick_fd[v]);
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK: d->isr &= ~v; break;
	case VIRTIO_MMIO_STATUS: write_status(d, v); break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
	case VIRTIO_MMIO_QUEUE_USED_LOW:
	case VIRTIO_MMIO_QUEUE_USED_HIGH: {
		if (!(q = selected_for_write(d, "a queue address")))
			break;
		uint64_t *a = off < VIRTIO_MMIO_QUEUE_AVAIL_LOW ? &q->desc :
			      off < VIRTIO_MMIO_QUEUE_USED_LOW ? &q->avail : &q->used;
		if (off & 4)
			set_high(a, v);
		else
			set_low(a, v);
		break;
	}
	case VIRTIO_MMIO_SHM_SEL:
		break;
	default:
		bad_access(d, "write of %#x to register %#x", v, off);
		break;
	}
}

void virtio_mmio_access(struct virtio_dev *d, uint64_t off, uint8_t *data, unsigned len,
			bool is_write)
{
	pthread_mutex_lock(&d->lock);
	if (off >= VIRTIO_MMIO_CONFIG) {
		uint64_t coff = off - VIRTIO_MMIO_CONFIG;
		bool ok = (len == 1 || len == 2 || len == 4 || len == 8) &&
			  coff + len <= d->config_size;
		if (!ok) {
			bad_access(d, "%u-byte config %s at %#llx (config space is %u bytes)", len,
				   is_write ? "write" : "read", (unsigned long long)coff, d->config_size);
			if (!is_write)
				memset(data, 0, len);
		} else if (is_write) {
			if (d->ops->config_write)
				d->ops->config_write(d, (uint32_t)coff, data, len);
			else
				bad_access(d, "config write at %#llx (read-only)", (unsigned long long)coff);
		} else {
			memset(data, 0, len);
			if (d->ops->config_read)
				d->ops->config_read(d, (uint32_t)coff, data, len);
		}
	} else if (len != 4 || (off & 3)) {
		bad_access(d, "%u-byte %s of register %#llx (registers are 32-bit)", len,
			   is_write ? "write" : "read", (unsigned long long)off);
		if (!is_write)
			memset(data, 0, len);
	} else if (is_write) {
		uint32_t v;
		memcpy(&v, data, 4);
		reg_write(d, (uint32_t)off, v);
	} else {
		uint32_t v = reg_read(d, (uint32_t)off);
		memcpy(data, &v, 4);
	}
	pthread_mutex_unlock(&d->lock);
}
