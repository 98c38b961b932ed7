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
 * no lock held.
 *
 * Output nobody reads is dropped, never waited for (issue 13, finding 2).
 * A pty with no client, a full pipe, a stopped terminal: out_fd does not
 * take more.  The thread then waits for it at most CON_STALL_MS (in slices
 * of CON_WAIT_SLICE_MS that look at d->stop), and past that declares the
 * output stalled: every chain from then on is given back at once, its bytes
 * counted in console_output_dropped_bytes and not even read from guest
 * memory, until a poll() shows out_fd writable again (checked once per
 * chain, without waiting).  A chain's cost is bounded too: at most
 * CON_CHAIN_MAX bytes of it are written out (in 4 KiB chunks), the rest is
 * dropped and counted -- indirect descriptors let one chain name ~4 GiB
 * (the same small buffer 255 times over).  A blocking out_fd (stdio that
 * could not be reopened nonblocking: console.c) is written only after
 * poll() says POLLOUT, a chunk at a time (a pipe then takes PIPE_BUF bytes
 * without blocking).
 *
 * Stop bound: d->stop is looked at before each chain, between chunks and
 * in every wait slice, so virtio_dev_join() returns within one chunk's
 * copy and write plus one wait slice (CON_WAIT_SLICE_MS = 10 ms): well
 * under the 100 ms virtio.h promises, whatever the guest queued.  A chain
 * cut short by the stop is given back (used length 0) with its remaining
 * bytes counted as dropped.
 */
#include "core/sandbox.h"
#include "core/state_json.h"
#include "virtio/virtio_devices.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CON_RXQ 0
#define CON_TXQ 1
#define CON_IN_SIZE (64u << 10)
#define CON_CONFIG_SIZE 12   /* cols, rows, max_nr_ports, emerg_wr: all 0 */
#define CON_CHUNK 4096u                   /* copied and written at a time (PIPE_BUF) */
#define CON_CHAIN_MAX (1u << 20)          /* bytes of one chain written out at most */
#define CON_STALL_MS 50                   /* wait for a full out_fd, then drop */
#define CON_WAIT_SLICE_MS 10              /* d->stop is looked at this often */

struct console_dev {
	struct virtio_dev d;
	int out_fd;
	bool out_blocking;             /* out_fd lacks O_NONBLOCK: poll before writing */
	pthread_t thread;
	bool started;
	/* Input ring, under d.lock. */
	uint8_t in[CON_IN_SIZE];
	size_t in_head, in_count;
	/* Counters (under d.lock). */
	uint64_t tx_bytes, rx_bytes, in_dropped, out_lost, out_dropped, out_stalls;
	/* Device thread only. */
	bool stalled;                  /* out_fd stopped taking output */
	struct vq_chain chain;
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

static bool stopping(const struct virtio_dev *d)
{
	/* Acquire: pairs with virtio_dev_join()'s release store. */
	return atomic_load_explicit(&d->stop, memory_order_acquire);
}

/* Wait for out_fd to take output, spending at most *budget_ms (decreased
 * by the time waited, at least 1 ms a round), in slices that give up early
 * when the device is stopping.  True if it is writable. */
static bool wait_writable(struct console_dev *c, int *budget_ms)
{
	while (*budget_ms > 0 && !stopping(&c->d)) {
		int slice = *budget_ms < CON_WAIT_SLICE_MS ? *budget_ms : CON_WAIT_SLICE_MS;
		struct pollfd p = { .fd = c->out_fd, .events = POLLOUT };
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		int r = poll(&p, 1, slice);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		int64_t ms = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
		*budget_ms -= ms < 1 ? 1 : ms > slice ? slice : (int)ms;
		if (r > 0)
			return (p.revents & (POLLOUT | POLLERR | POLLHUP | POLLNVAL)) == POLLOUT;
		if (r < 0 && errno != EINTR)
			break;
	}
	*budget_ms = 0;
	return false;
}

/* out_fd takes output right now (no waiting). */
static bool writable_now(const struct console_dev *c)
{
	struct pollfd p = { .fd = c->out_fd, .events = POLLOUT };
	return poll(&p, 1, 0) == 1 && p.revents == POLLOUT;
}

/*
 * Write buf to out_fd, waiting for it at most what is left of the chain's
 * budget *wait_ms.  Returns the bytes written; fewer than len means the
 * output is stalled (or failed: a closed pipe), and c->stalled is set.
 * Device thread, no lock held.
 */
static size_t write_out(struct console_dev *c, const uint8_t *buf, size_t len, int *wait_ms)
{
	size_t done = 0;
	while (done < len) {
		/* A blocking fd is written only after POLLOUT, and a chunk
		 * of at most PIPE_BUF bytes: write() does not block. */
		if (c->out_blocking && !writable_now(c)) {
			if (wait_writable(c, wait_ms))
				continue;
			break;
		}
		ssize_t n = write(c->out_fd, buf + done, len - done);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN && wait_writable(c, wait_ms))
			continue;
		break;   /* no reader keeping up, a closed pipe, an I/O error */
	}
	if (done < len)
		c->stalled = true;
	return done;
}

/*
 * One chain's readable bytes to out_fd: at most CON_CHAIN_MAX of them, in
 * CON_CHUNK pieces, looking at d->stop between pieces.  Returns the bytes
 * written; the caller counts the rest as dropped.  Device thread, no lock.
 */
static uint64_t tx_chain(struct console_dev *c, struct gmm_walker *w)
{
	struct virtio_dev *d = &c->d;
	uint64_t len = c->chain.out_bytes, sent = 0;
	if (c->out_fd < 0 || len == 0)
		return 0;
	if (c->stalled) {
		/* Stalled: one look, no waiting, nothing read from the guest. */
		if (!writable_now(c))
			return 0;
		c->stalled = false;
	}
	if (len > CON_CHAIN_MAX)
		len = CON_CHAIN_MAX;
	int wait_ms = CON_STALL_MS;
	uint8_t buf[CON_CHUNK];
	while (sent < len && !stopping(d)) {
		size_t n = len - sent < sizeof(buf) ? (size_t)(len - sent) : sizeof(buf);
		if (vq_chain_read(w, &c->chain, sent, buf, n) < 0) {
			pthread_mutex_lock(&d->lock);
			log_ratelimited(&d->rl, LOG_WARN, "%s: transmit buffer outside RAM (dropped)",
					d->name);
			pthread_mutex_unlock(&d->lock);
			break;
		}
		size_t k = write_out(c, buf, n, &wait_ms);
		sent += k;
		if (k < n) {
			if (!stopping(d)) {
				pthread_mutex_lock(&d->lock);
				c->out_stalls++;
				log_ratelimited(&d->rl, LOG_INFO,
						"%s: nobody reads the output; dropping it until they do",
						d->name);
				pthread_mutex_unlock(&d->lock);
			}
			break;
		}
	}
	return sent;
}

/* Transmit queue: every chain's readable bytes go to out_fd (or are
 * dropped and counted, see the top of the file). */
static void do_tx(struct console_dev *c, struct gmm_walker *w)
{
	struct virtio_dev *d = &c->d;
	char why[160];
	while (!stopping(d) && !virtio_dev_quiescing(d)) {
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

		uint64_t sent = tx_chain(c, w);
		uint64_t dropped = c->out_fd >= 0 ? c->chain.out_bytes - sent : 0;

		pthread_mutex_lock(&d->lock);
		c->tx_bytes += c->chain.out_bytes;
		c->out_dropped += dropped;
		c->out_lost += dropped != 0;
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
	while (c->in_count && virtio_dev_live(d) && q->ready && !virtio_dev_quiescing(d)) {
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
		/* Quiesced (snapshot): do_tx and do_rx finish every chain they
		 * pop before returning, so nothing is held here; only ctl_fd
		 * is watched until resume or stop (kicks stay pending, and
		 * the round after resume looks at both queues anyway). */
		bool quiet = virtio_dev_quiescing(d);
		if (quiet)
			virtio_dev_set_quiet(d);
		struct pollfd p[3] = {
			{ .fd = d->ctl_fd, .events = POLLIN },
			{ .fd = quiet ? -1 : d->kick_fd[CON_RXQ], .events = POLLIN },
			{ .fd = quiet ? -1 : d->kick_fd[CON_TXQ], .events = POLLIN },
		};
		if (poll(p, 3, -1) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 3; i++)
			if (p[i].revents)
				virtio_eventfd_drain(p[i].fd);
		if (virtio_dev_quiescing(d))
			continue;
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
		 "\nconsole_input_dropped %" PRIu64 "\nconsole_output_lost_chains %" PRIu64
		 "\nconsole_output_dropped_bytes %" PRIu64 "\nconsole_output_stalls %" PRIu64 "\n",
		 c->tx_bytes, c->rx_bytes, c->in_dropped, c->out_lost, c->out_dropped,
		 c->out_stalls);
	pthread_mutex_unlock(&d->lock);
}

/* ---- snapshot (issue 16) ---------------------------------------------- */

static int con_quiesce(struct virtio_dev *d)
{
	if (!cdev(d)->started)
		return 0;
	/* Bound: one chain's write-out, CON_STALL_MS at most, and a round. */
	return virtio_dev_quiesce_wait(d, VIRTIO_QUIESCE_TIMEOUT_MS);
}

static void con_resume_io(struct virtio_dev *d)
{
	virtio_dev_resume(d);
}

/* The config space is constant (no SIZE, no MULTIPORT: cols, rows and
 * ports are 0), so the device's own state is the input not yet delivered
 * and the counters. */
static struct json_object *con_save(struct virtio_dev *d, char *err, size_t errlen)
{
	struct console_dev *c = cdev(d);
	struct json_object *o = json_object_new_object();
	uint8_t *lin = malloc(CON_IN_SIZE);
	int r = !o || !lin;
	pthread_mutex_lock(&d->lock);
	size_t n = c->in_count;
	for (size_t i = 0; !r && i < n; i++)
		lin[i] = c->in[(c->in_head + i) % CON_IN_SIZE];
	if (!r)
		r = sj_set_hex(o, "input", lin, n) | sj_set_u64(o, "tx_bytes", c->tx_bytes) |
		    sj_set_u64(o, "rx_bytes", c->rx_bytes) |
		    sj_set_u64(o, "input_dropped", c->in_dropped);
	pthread_mutex_unlock(&d->lock);
	free(lin);
	if (r) {
		json_object_put(o);
		snprintf(err, errlen, "%s: out of memory saving its state", d->name);
		return NULL;
	}
	return o;
}

static int con_restore(struct virtio_dev *d, struct json_object *o, char *err, size_t errlen)
{
	struct console_dev *c = cdev(d);
	const char *hex;
	uint64_t tx, rx, dropped;
	if (sj_get_str(o, "input", &hex, "virtio-console", err, errlen) ||
	    sj_get_u64(o, "tx_bytes", &tx, "virtio-console", err, errlen) ||
	    sj_get_u64(o, "rx_bytes", &rx, "virtio-console", err, errlen) ||
	    sj_get_u64(o, "input_dropped", &dropped, "virtio-console", err, errlen))
		return -1;
	size_t digits = strlen(hex);
	if (digits % 2 || digits / 2 > CON_IN_SIZE) {
		snprintf(err, errlen, "virtio-console.input: %zu hex digits (at most %u bytes)", digits,
			 CON_IN_SIZE);
		return -1;
	}
	uint8_t *buf = malloc(CON_IN_SIZE);
	if (!buf) {
		snprintf(err, errlen, "%s: out of memory", d->name);
		return -1;
	}
	if (sj_get_hex(o, "input", buf, digits / 2, "virtio-console", err, errlen)) {
		free(buf);
		return -1;
	}
	pthread_mutex_lock(&d->lock);
	memcpy(c->in, buf, digits / 2);
	c->in_head = 0;
	c->in_count = digits / 2;
	c->tx_bytes = tx, c->rx_bytes = rx, c->in_dropped = dropped;
	pthread_mutex_unlock(&d->lock);
	free(buf);
	return 0;
}

static const struct virtio_dev_ops con_ops = {
	.quiesce = con_quiesce,
	.resume_io = con_resume_io,
	.save = con_save,
	.restore = con_restore,
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
	if (out_fd >= 0) {
		int fl = fcntl(out_fd, F_GETFL);
		c->out_blocking = fl < 0 || !(fl & O_NONBLOCK);
	}
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
