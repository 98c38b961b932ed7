// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio_console.c - virtio-console (device 3), one port: the guest's hvc0.
 *
 * No optional features (no multiport, no size, no emergency write): queue 0
 * receives (device -> guest), queue 1 transmits (guest -> device).  What the
 * guest transmits is written to out_fd (stdio, a pty, a file; -1 drops it).
 * What the user types is handed in by the main thread with
 * virtio_console_input() into a 64 KiB buffer, and the device thread copies
 * it into receive buffers as the guest posts them; beyond 64 KiB input is
 * dropped and counted (a guest that never reads cannot make the VMM grow).
 *
 * Thread "_console" (a guestmm walker) does all queue work.  Locking
 * (virtio.h): d->lock around pops, pushes and the input buffer; guest data
 * is copied into a local buffer under no lock, and out_fd is written with
 * no lock held (a pty's master is nonblocking: console.h; a full pipe or
 * terminal blocks only this thread).
 */
#include "core/sandbox.h"
#include "virtio/virtio_devices.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CON_RXQ 0
#define CON_TXQ 1
#define CON_IN_SIZE (64u << 10)
#define CON_CONFIG_SIZE 12   /* cols, rows, max_nr_ports, emerg_wr: all 0 */

struct console_dev {
	struct virtio_dev d;
	int out_fd;
	pthread_t thread;
	bool started;
	/* Input ring, under d.lock. */
	uint8_t in[CON_IN_SIZE];
	size_t in_head, in_count;
	/* Counters (under d.lock). */
	uint64_t tx_bytes, rx_bytes, in_dropped, out_lost;
	struct vq_chain chain;         /* device thread only */
};

static struct console_dev *cdev(struct virtio_dev *d)
{
	return d->priv;
}

static void con_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, unsigned len)
{
	(void)d, (void)off;
	memset(data, 0, len);
}

/* Write all of buf to fd (EINTR/EAGAIN retried briefly); false if output
 * had to be dropped. */
static bool write_out(int fd, const uint8_t *buf, size_t len)
{
	int stalls = 0;
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN && stalls++ < 20) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			poll(&p, 1, 5);
			continue;
		}
		return false;   /* a full pty nobody reads, a closed pipe */
	}
	return true;
}

/* Transmit queue: every chain's readable bytes go to out_fd. */
static void do_tx(struct console_dev *c, struct gmm_walker *w)
{
	struct virtio_dev *d = &c->d;
	char why[160];
	for (;;) {
		pthread_mutex_lock(&d->lock);
		struct virtqueue *q = &d->vq[CON_TXQ];
		if (!virtio_dev_live(d) || !q->ready) {
			pthread_mutex_unlock(&d->lock);
			return;
		}
		int r = vq_pop(q, w, &c->chain, why, sizeof(why));
		if (r == 0)
			r = vq_arm(q, w, why, sizeof(why)) > 0 ? vq_pop(q, w, &c->chain, why, sizeof(why)) : 0;
		if (r < 0)
			virtio_dev_fail(d, "transmit queue: %s", why);
		uint64_t gen = d->generation;
		pthread_mutex_unlock(&d->lock);
		if (r <= 0)
			return;

		bool lost = false;
		uint8_t buf[4096];
		for (uint64_t off = 0; off < c->chain.out_bytes;) {
			size_t n = c->chain.out_bytes - off < sizeof(buf) ? c->chain.out_bytes - off : sizeof(buf);
			if (vq_chain_read(w, &c->chain, off, buf, n) < 0) {
				pthread_mutex_lock(&d->lock);
				log_ratelimited(&d->rl, LOG_WARN, "%s: transmit buffer outside RAM (dropped)",
						d->name);
				pthread_mutex_unlock(&d->lock);
				break;
			}
			if (c->out_fd >= 0 && !write_out(c->out_fd, buf, n))
				lost = true;
			off += n;
		}

		pthread_mutex_lock(&d->lock);
		c->tx_bytes += c->chain.out_bytes;
		c->out_lost += lost;
		if (gen == d->generation && virtio_dev_live(d)) {
			if (vq_push(q, w, c->chain.head, 0, why, sizeof(why)) < 0)
				virtio_dev_fail(d, "transmit queue: %s", why);
			else
				virtio_queue_used(d, q, w);
		}
		pthread_mutex_unlock(&d->lock);
	}
}

/* Receive queue: pending input into the guest's buffers.  The copy is a
 * few walks inside the lock: short, and no writer operation. */
static void do_rx(struct console_dev *c, struct gmm_walker *w)
{
	struct virtio_dev *d = &c->d;
	char why[160];
	pthread_mutex_lock(&d->lock);
	struct virtqueue *q = &d->vq[CON_RXQ];
	bool pushed = false;
	while (c->in_count && virtio_dev_live(d) && q->ready) {
		int r = vq_pop(q, w, &c->chain, why, sizeof(why));
		if (r == 0)
			r = vq_arm(q, w, why, sizeof(why)) > 0 ? vq_pop(q, w, &c->chain, why, sizeof(why)) : 0;
		if (r < 0) {
			virtio_dev_fail(d, "receive queue: %s", why);
			break;
		}
		if (r == 0)
			break;
		uint64_t room = c->chain.in_bytes, done = 0;
		while (done < room && c->in_count) {
			size_t run = CON_IN_SIZE - c->in_head;
			if (run > c->in_count)
				run = c->in_count;
			if (run > room - done)
				run = (size_t)(room - done);
			if (vq_chain_write(w, &c->chain, done, c->in + c->in_head, run) < 0) {
				log_ratelimited(&d->rl, LOG_WARN, "%s: receive buffer outside RAM", d->name);
				break;
			}
			c->in_head = (c->in_head + run) % CON_IN_SIZE;
			c->in_count -= run;
			done += run;
		}
		c->rx_bytes += done;
		if (vq_push(q, w, c->chain.head, (uint32_t)done, why, sizeof(why)) < 0) {
			virtio_dev_fail(d, "receive queue: %s", why);
			break;
		}
		pushed = true;
	}
	if (pushed && virtio_dev_live(d))
		virtio_queue_used(d, q, w);
	pthread_mutex_unlock(&d->lock);
}

static void *con_thread(void *arg)
{
	struct console_dev *c = arg;
	struct virtio_dev *d = &c->d;
	struct gmm_walker *w = gmm_walker_register(d->mem);
	if (!w) {
		log_msg(LOG_ERROR, "%s: guestmm walker: %s", d->name, gmm_last_error());
		return NULL;
	}
	sandbox_enter(SANDBOX_DEVICE);
	while (!atomic_load(&d->stop)) {
		struct pollfd p[3] = {
			{ .fd = d->ctl_fd, .events = POLLIN },
			{ .fd = d->kick_fd[CON_RXQ], .events = POLLIN },
			{ .fd = d->kick_fd[CON_TXQ], .events = POLLIN },
		};
		if (poll(p, 3, -1) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 3; i++)
			if (p[i].revents)
				virtio_eventfd_drain(p[i].fd);
		do_tx(c, w);
		do_rx(c, w);
	}
	gmm_walker_unregister(w);
	return NULL;
}

static int con_start(struct virtio_dev *d)
{
	struct console_dev *c = cdev(d);
	int err = pthread_create(&c->thread, NULL, con_thread, c);
	if (err) {
		log_msg(LOG_ERROR, "%s: cannot start its thread: %s", d->name, strerror(err));
		return -1;
	}
	pthread_setname_np(c->thread, "_console");
	c->started = true;
	return 0;
}

static void con_stop(struct virtio_dev *d)
{
	struct console_dev *c = cdev(d);
	virtio_dev_join(d, c->thread, &c->started);
}

static void con_destroy(struct virtio_dev *d)
{
	con_stop(d);
	virtio_dev_fini(d);
	free(cdev(d));
}

static void con_counters(struct virtio_dev *d, char *buf, size_t len)
{
	struct console_dev *c = cdev(d);
	pthread_mutex_lock(&d->lock);
	snprintf(buf, len, "console_tx_bytes %" PRIu64 "\nconsole_rx_bytes %" PRIu64
		 "\nconsole_input_dropped %" PRIu64 "\nconsole_output_lost_chains %" PRIu64 "\n",
		 c->tx_bytes, c->rx_bytes, c->in_dropped, c->out_lost);
	pthread_mutex_unlock(&d->lock);
}

static const struct virtio_dev_ops con_ops = {
	.config_read = con_config_read,
	.start = con_start,
	.stop = con_stop,
	.destroy = con_destroy,
	.counters = con_counters,
};

struct virtio_dev *virtio_console_create(struct gmm_vm *mem, int out_fd, char *err, size_t errlen)
{
	struct console_dev *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "virtio-console: out of memory");
		return NULL;
	}
	c->out_fd = out_fd;
	struct virtio_dev *d = &c->d;
	d->name = "virtio-console";
	d->device_id = VIRTIO_ID_CONSOLE;
	d->features = 0;
	d->config_size = CON_CONFIG_SIZE;
	d->nqueues = 2;
	d->ops = &con_ops;
	d->priv = c;
	d->mem = mem;
	int e = virtio_dev_init(d);
	if (e < 0) {
		snprintf(err, errlen, "virtio-console: %s", strerror(-e));
		free(c);
		return NULL;
	}
	return d;
}

void virtio_console_input(struct virtio_dev *d, const uint8_t *buf, size_t len)
{
	struct console_dev *c = cdev(d);
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < len; i++) {
		if (c->in_count == CON_IN_SIZE) {
			c->in_dropped += len - i;
			break;
		}
		c->in[(c->in_head + c->in_count) % CON_IN_SIZE] = buf[i];
		c->in_count++;
	}
	pthread_mutex_unlock(&d->lock);
	virtio_dev_wake(d);
}

bool virtio_console_active(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->lock);
	bool on = virtio_dev_live(d) && d->vq[CON_RXQ].ready;
	pthread_mutex_unlock(&d->lock);
	return on;
}
