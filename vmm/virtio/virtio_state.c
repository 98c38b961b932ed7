// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio_state.c - a device's transport state into a snapshot and back
 * (issue 16), and the quiesce handshake the devices use before it is
 * taken.
 *
 * Saved: status, the features the device offered (a restore into a device
 * offering others is refused: the driver negotiated against those), the
 * driver's features, the three selectors, InterruptStatus, the config
 * generation, the reset generation, and every queue (num, ready, the three
 * addresses, event_idx, indirect, last_avail, used_idx, signalled_used,
 * signalled_valid).  The rings themselves are guest memory (the memory
 * layer's); the device's own state (ops->save) goes under "device".
 *
 * Restore is all or nothing: every field is read and checked into a copy
 * first (types and ranges by state_json; a ready queue's layout as
 * QueueReady checks it, with vq_check_layout; the driver's features a
 * subset of the offered ones, VERSION_1 with FEATURES_OK, a ready queue's
 * event_idx/indirect equal to the negotiated bits), then put in place
 * under d->lock, then ops->restore runs; if that refuses, the transport
 * fields are put back as they were.  Nothing raises an interrupt; every
 * queue's kick fd and ctl_fd are signalled so that the device thread,
 * once started, looks at every queue (a notification the guest sent
 * before the snapshot may not have been acted on).
 *
 * Quiesce handshake (virtio.h): two atomics.  Main thread: quiet = false,
 * then quiesce = true (release), wake; poll quiet (acquire) every 1 ms up
 * to the timeout.  Device thread: reads quiesce (acquire); once it is idle
 * sets quiet (release, after its pushes and interrupts).  A quiet set late
 * by a thread that read quiesce = true in an earlier round is harmless: a
 * thread does work only after it has read quiesce = false, which it has
 * not done between that read and the store.
 *
 * Threads: save/restore/quiesce/resume on the main thread with the vCPUs
 * paused; restore before ops->start.
 */
#include "core/state_json.h"
#include "virtio/virtio.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

bool virtio_dev_quiescing(const struct virtio_dev *d)
{
	/* Acquire: pairs with the release store in virtio_dev_quiesce_wait. */
	return atomic_load_explicit(&d->quiesce, memory_order_acquire);
}

void virtio_dev_set_quiet(struct virtio_dev *d)
{
	/* Release: the thread's pushes and used-ring stores before the flag
	 * the main thread acquires. */
	atomic_store_explicit(&d->quiet, true, memory_order_release);
}

int virtio_dev_quiesce_wait(struct virtio_dev *d, unsigned timeout_ms)
{
	atomic_store_explicit(&d->quiet, false, memory_order_relaxed);
	atomic_store_explicit(&d->quiesce, true, memory_order_release);
	virtio_dev_wake(d);
	for (unsigned ms = 0;; ms++) {
		if (atomic_load_explicit(&d->quiet, memory_order_acquire))
			return 0;
		if (ms >= timeout_ms)
			break;
		struct timespec t = { 0, 1000000 };
		nanosleep(&t, NULL);
	}
	log_msg(LOG_ERROR, "%s: did not quiesce within %u ms", d->name, timeout_ms);
	return -1;
}

void virtio_dev_resume(struct virtio_dev *d)
{
	atomic_store_explicit(&d->quiet, false, memory_order_relaxed);
	atomic_store_explicit(&d->quiesce, false, memory_order_release);
	virtio_dev_wake(d);
}

/* ---- save ---------------------------------------------------------------- */

static struct json_object *queue_save(const struct virtqueue *q)
{
	struct json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	int r = sj_set_u64(o, "num", q->num) | sj_set_bool(o, "ready", q->ready) |
		sj_set_u64(o, "desc", q->desc) | sj_set_u64(o, "avail", q->avail) |
		sj_set_u64(o, "used", q->used) | sj_set_bool(o, "event_idx", q->event_idx) |
		sj_set_bool(o, "indirect", q->indirect) | sj_set_u64(o, "last_avail", q->last_avail) |
		sj_set_u64(o, "used_idx", q->used_idx) |
		sj_set_u64(o, "signalled_used", q->signalled_used) |
		sj_set_bool(o, "signalled_valid", q->signalled_valid);
	if (r) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

struct json_object *virtio_dev_save(struct virtio_dev *d, char *err, size_t errlen)
{
	struct json_object *o = json_object_new_object();
	struct json_object *qs = json_object_new_array();
	if (!o || !qs)
		goto nomem;
	pthread_mutex_lock(&d->lock);
	int r = sj_set_u64(o, "status", d->status) |
		sj_set_u64(o, "device_features", virtio_dev_offered(d)) |
		sj_set_u64(o, "driver_features", d->driver_features) |
		sj_set_u64(o, "dev_feat_sel", d->dev_feat_sel) |
		sj_set_u64(o, "drv_feat_sel", d->drv_feat_sel) |
		sj_set_u64(o, "queue_sel", d->queue_sel) | sj_set_u64(o, "isr", d->isr) |
		sj_set_u64(o, "config_generation", d->config_generation) |
		sj_set_u64(o, "generation", d->generation);
	for (unsigned i = 0; !r && i < d->nqueues; i++) {
		struct json_object *q = queue_save(&d->vq[i]);
		if (!q || json_object_array_add(qs, q) < 0) {
			json_object_put(q);
			r = -1;
		}
	}
	pthread_mutex_unlock(&d->lock);
	if (r) {
		json_object_put(qs);
		goto nomem_o;
	}
	if (sj_set_obj(o, "queues", qs) < 0)   /* qs is freed on failure */
		goto nomem_o;
	/* The device's own state: its thread is quiet, ops->save takes
	 * d->lock itself for what the lock guards. */
	if (d->ops->save) {
		struct json_object *dev = d->ops->save(d, err, errlen);
		if (!dev) {
			json_object_put(o);
			return NULL;
		}
		if (sj_set_obj(o, "device", dev) < 0)
			goto nomem_o;
	}
	return o;
nomem:
	json_object_put(qs);
nomem_o:
	json_object_put(o);
	snprintf(err, errlen, "%s: out of memory saving its state", d->name);
	return NULL;
}

/* ---- restore ------------------------------------------------------------- */

/* The transport fields restore replaces (and puts back on failure). */
struct transport {
	uint32_t status;
	uint64_t driver_features;
	uint32_t dev_feat_sel, drv_feat_sel, queue_sel;
	uint32_t isr, config_generation;
	uint64_t generation;
	struct virtqueue vq[VIRTIO_MAX_QUEUES];
};

static void transport_get(const struct virtio_dev *d, struct transport *t)
{
	t->status = d->status;
	t->driver_features = d->driver_features;
	t->dev_feat_sel = d->dev_feat_sel, t->drv_feat_sel = d->drv_feat_sel;
	t->queue_sel = d->queue_sel;
	t->isr = d->isr, t->config_generation = d->config_generation;
	t->generation = d->generation;
	memcpy(t->vq, d->vq, sizeof(t->vq));
}

static void transport_put(struct virtio_dev *d, const struct transport *t)
{
	d->status = t->status;
	d->driver_features = t->driver_features;
	d->dev_feat_sel = t->dev_feat_sel, d->drv_feat_sel = t->drv_feat_sel;
	d->queue_sel = t->queue_sel;
	d->isr = t->isr, d->config_generation = t->config_generation;
	d->generation = t->generation;
	memcpy(d->vq, t->vq, sizeof(d->vq));
}

/* Queue i of the snapshot into q (its statistics zeroed, index kept). */
static int queue_load(struct virtio_dev *d, struct json_object *o, unsigned i, uint64_t feat,
		      struct virtqueue *q, char *err, size_t errlen)
{
	char where[64];
	snprintf(where, sizeof(where), "%s.queues[%u]", d->name, i);
	uint64_t num, desc, avail, used, last_avail, used_idx, sig;
	bool ready, event_idx, indirect, sig_valid;
	if (!json_object_is_type(o, json_type_object)) {
		snprintf(err, errlen, "%s: not an object", where);
		return -1;
	}
	if (sj_get_uint(o, "num", virtio_dev_queue_max(d), &num, where, err, errlen) ||
	    sj_get_bool(o, "ready", &ready, where, err, errlen) ||
	    sj_get_u64(o, "desc", &desc, where, err, errlen) ||
	    sj_get_u64(o, "avail", &avail, where, err, errlen) ||
	    sj_get_u64(o, "used", &used, where, err, errlen) ||
	    sj_get_bool(o, "event_idx", &event_idx, where, err, errlen) ||
	    sj_get_bool(o, "indirect", &indirect, where, err, errlen) ||
	    sj_get_uint(o, "last_avail", UINT16_MAX, &last_avail, where, err, errlen) ||
	    sj_get_uint(o, "used_idx", UINT16_MAX, &used_idx, where, err, errlen) ||
	    sj_get_uint(o, "signalled_used", UINT16_MAX, &sig, where, err, errlen) ||
	    sj_get_bool(o, "signalled_valid", &sig_valid, where, err, errlen))
		return -1;
	memset(q, 0, sizeof(*q));
	q->index = i;
	q->num = (uint16_t)num;
	q->ready = ready;
	q->desc = desc, q->avail = avail, q->used = used;
	q->event_idx = event_idx, q->indirect = indirect;
	q->last_avail = (uint16_t)last_avail, q->used_idx = (uint16_t)used_idx;
	q->signalled_used = (uint16_t)sig, q->signalled_valid = sig_valid;
	if (!ready)
		return 0;
	char why[160];
	if (vq_check_layout(q, virtio_dev_queue_max(d), why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: bad layout: %s", where, why);
		return -1;
	}
	if (event_idx != !!(feat & (1ULL << VIRTIO_F_EVENT_IDX)) ||
	    indirect != !!(feat & (1ULL << VIRTIO_F_INDIRECT_DESC))) {
		snprintf(err, errlen, "%s: event_idx/indirect do not match the driver's features",
			 where);
		return -1;
	}
	/* The driver's avail->idx is at most num ahead of last_avail, and
	 * the device never pushes more than it popped. */
	if ((uint16_t)(last_avail - used_idx) > num) {
		snprintf(err, errlen, "%s: used_idx %" PRIu64 " is more than %" PRIu64
			 " behind last_avail %" PRIu64, where, used_idx, num, last_avail);
		return -1;
	}
	return 0;
}

int virtio_dev_restore(struct virtio_dev *d, struct json_object *o, char *err, size_t errlen)
{
	const char *w = d->name;
	struct transport t;
	uint64_t v, offered, feat;
	if (!o || !json_object_is_type(o, json_type_object)) {
		snprintf(err, errlen, "%s: the saved state is not an object", w);
		return -1;
	}
	transport_get(d, &t);
	if (sj_get_uint(o, "status", 0xff, &v, w, err, errlen))
		return -1;
	t.status = (uint32_t)v;
	if (sj_get_u64(o, "device_features", &offered, w, err, errlen) ||
	    sj_get_u64(o, "driver_features", &feat, w, err, errlen))
		return -1;
	if (offered != virtio_dev_offered(d)) {
		snprintf(err, errlen, "%s: the snapshot's device offered features %#" PRIx64
			 ", this one offers %#" PRIx64 " (a different configuration)", w, offered,
			 virtio_dev_offered(d));
		return -1;
	}
	if (feat & ~offered) {
		snprintf(err, errlen, "%s: driver features %#" PRIx64 " include some not offered", w,
			 feat);
		return -1;
	}
	if ((t.status & VIRTIO_STATUS_FEATURES_OK) && !(feat & (1ULL << VIRTIO_F_VERSION_1))) {
		snprintf(err, errlen, "%s: FEATURES_OK without VERSION_1", w);
		return -1;
	}
	t.driver_features = feat;
	if (sj_get_uint(o, "dev_feat_sel", UINT32_MAX, &v, w, err, errlen))
		return -1;
	t.dev_feat_sel = (uint32_t)v;
	if (sj_get_uint(o, "drv_feat_sel", UINT32_MAX, &v, w, err, errlen))
		return -1;
	t.drv_feat_sel = (uint32_t)v;
	if (sj_get_uint(o, "queue_sel", UINT32_MAX, &v, w, err, errlen))
		return -1;
	t.queue_sel = (uint32_t)v;
	if (sj_get_uint(o, "isr", VIRTIO_INT_VRING | VIRTIO_INT_CONFIG, &v, w, err, errlen))
		return -1;
	t.isr = (uint32_t)v;
	if (sj_get_uint(o, "config_generation", UINT32_MAX, &v, w, err, errlen))
		return -1;
	t.config_generation = (uint32_t)v;
	if (sj_get_u64(o, "generation", &t.generation, w, err, errlen))
		return -1;

	struct json_object *qs;
	if (sj_get_array(o, "queues", &qs, w, err, errlen))
		return -1;
	if (json_object_array_length(qs) != d->nqueues) {
		snprintf(err, errlen, "%s.queues: %zu queues, the device has %u", w,
			 json_object_array_length(qs), d->nqueues);
		return -1;
	}
	for (unsigned i = 0; i < d->nqueues; i++) {
		if (queue_load(d, json_object_array_get_idx(qs, i), i, feat, &t.vq[i], err, errlen))
			return -1;
		if (t.vq[i].ready && !(t.status & VIRTIO_STATUS_FEATURES_OK)) {
			snprintf(err, errlen, "%s.queues[%u]: ready without FEATURES_OK", w, i);
			return -1;
		}
	}
	struct json_object *dev = NULL;
	if (d->ops->restore && sj_get_obj(o, "device", &dev, w, err, errlen))
		return -1;

	/* Everything of the transport checked: in place, then the device's
	 * own (which checks its part first); put back if it refuses. */
	struct transport old;
	pthread_mutex_lock(&d->lock);
	transport_get(d, &old);
	transport_put(d, &t);
	pthread_mutex_unlock(&d->lock);
	if (d->ops->restore && d->ops->restore(d, dev, err, errlen) < 0) {
		pthread_mutex_lock(&d->lock);
		transport_put(d, &old);
		pthread_mutex_unlock(&d->lock);
		return -1;
	}
	/* Let the thread look at every queue once it starts. */
	uint64_t one = 1;
	for (unsigned i = 0; i < d->nqueues; i++)
		if (d->kick_fd[i] >= 0 && write(d->kick_fd[i], &one, sizeof(one)) < 0 &&
		    errno != EAGAIN)
			log_msg(LOG_WARN, "%s: kick fd: %s", w, strerror(errno));
	virtio_dev_wake(d);
	return 0;
}

void virtio_dev_restore_irq(struct virtio_dev *d)
{
	uint64_t one = 1;
	pthread_mutex_lock(&d->lock);
	bool pending = d->isr != 0;
	pthread_mutex_unlock(&d->lock);
	if (pending && d->irq_fd >= 0 && write(d->irq_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_msg(LOG_WARN, "%s: irq fd: %s", d->name, strerror(errno));
}
