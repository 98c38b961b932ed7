// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio_net.c - virtio-net (virtio 1.2, 5.1) on a Linux tap: one queue
 * pair (receive queue 0, transmit queue 1), no control queue.
 *
 * The tap: opened by name (/dev/net/tun, TUNSETIFF IFF_TAP|IFF_NO_PI|
 * IFF_VNET_HDR) or handed in as an fd (libvirt's, checked with TUNGETIFF:
 * a tap, IFF_NO_PI).  Non-blocking.  With IFF_VNET_HDR the tap speaks the
 * same 12-byte header as the driver (TUNSETVNETHDRSZ 12; x86 is little-
 * endian like virtio 1.x), so a packet crosses with its header and the
 * offloads can be offered: CSUM, HOST_TSO4/6/ECN (what the guest sends:
 * the tap takes GSO packets always), GUEST_CSUM, GUEST_TSO4/6/ECN, and
 * GUEST_UFO if the tap takes TUN_F_UFO (what the tap may hand us: set
 * with TUNSETOFFLOAD from the features the driver accepted, when the
 * device thread sees DRIVER_OK in a new generation, and cleared after a
 * reset).  A tap fd without IFF_VNET_HDR gets no offloads; the device then
 * strips the header on transmit and writes a zero one on receive.
 *
 * One device thread "_net<index>", a guestmm walker:
 *   loop: poll(ctl_fd, the two kick fds, the tap when it may read) ->
 *         apply the offloads for this generation -> transmit up to
 *         NET_BATCH chains -> receive up to NET_BATCH packets -> again,
 *         at once if a batch was cut short.
 *
 * Guest memory:
 *   transmit  the header is copied out (vq_chain_read) and checked, and
 *             only that copy is handed to the tap; the payload is
 *             translated segment by segment (gmm_translate_span) INSIDE one
 *             walk section that spans the non-blocking writev() to the tap
 *             and ends right after it: the kernel copies the frame during
 *             the call (tun_get_user), so no host pointer outlives the
 *             section and an unmap waits at most one writev.
 *   receive   the tap is read into a host buffer (header + up to
 *             NET_MAX_FRAME bytes), then copied into the guest's buffers
 *             with vq_chain_write (gmm_write, a walk per piece) under
 *             d->lock.  With MRG_RXBUF a packet spreads over as many
 *             chains as it needs (num_buffers in the first header), all
 *             published with one used->idx store (vq_push_n).
 * So a virtio-mem unplug or a balloon inflate under full traffic waits for
 * at most one writev or one gmm_write; a buffer it removed makes that
 * packet's copy fail (counted), never a stale host access.
 *
 * The tap is polled only while a packet could go somewhere: not while a
 * packet waits for buffers, the receive queue is not ready or the device
 * failed (then a kick or a status change wakes the thread), nor for one
 * NET_WAIT_SLICE_MS after a read error (a tap whose interface went away
 * reports POLLERR for ever: at most 100 tries a second, no spin).
 *
 * Waiting for receive buffers: while the guest has posted too few for the
 * pending packet, the chains popped are given back (vq_unpop), the device
 * asks for a kick on the next buffer (vq_arm_more) and stops reading the
 * tap; the packet is kept (one) and the rest wait in the tap's own queue,
 * which the kernel bounds (txqueuelen; overflow is the tap's drop count).
 * A packet that could not fit even in the whole ring is dropped (counted).
 *
 * Hostile input (counted in tx_errors / rx_errors, the packet dropped, the
 * chain given back; the device goes on): a transmit chain shorter than the
 * header or carrying writable descriptors, a frame above NET_MAX_FRAME,
 * GSO or checksum requests the driver did not negotiate, nonsense GSO
 * fields (the tap refuses them with EINVAL), a buffer outside RAM.  A
 * receive chain with readable descriptors, or a first buffer shorter than
 * the header, is a broken ring: NEEDS_RESET, as for the ring errors vq_pop
 * finds.  Every log line is rate-limited.
 *
 * Reset: generation as virtio-blk: a transmit chain popped in an older
 * generation is not pushed; the pending received packet is dropped; the
 * tap's offloads are cleared.  Receive work runs under d->lock, so it never
 * straddles a reset.
 *
 * Stop bound: d->stop is looked at before each packet and in every wait
 * slice; the longest step is one writev of <= 64 KiB to the tap or one
 * packet's copy, and a full tap is waited for at most NET_TX_WAIT_MS in
 * NET_WAIT_SLICE_MS slices (then the packet is dropped and counted): the
 * stop returns within one packet plus 10 ms, idle or not.
 *
 * Locking: d->lock around pops, pushes, the receive copy and the feature
 * snapshot; the tap is read and written with no lock held.  Counters are
 * relaxed atomics written by the device thread, read by anyone.
 */
#include "core/sandbox.h"
#include "core/state_json.h"
#include "virtio/virtio_devices.h"
#include "virtio/virtio_net_hdr.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define BIT(b) NET_BIT(b)
#define HDR_NUM_BUFFERS_OFF NET_HDR_NUM_BUFFERS_OFF
_Static_assert(sizeof(struct net_hdr) == VIRTIO_NET_HDR_BYTES, "header size");

/* Config space (5.1.4): mac[6], status, max_virtqueue_pairs, mtu. */
#define NET_CONFIG_SIZE    12
#define NET_S_LINK_UP      1

#define NET_RXQ            0
#define NET_TXQ            1
#define NET_BATCH          64      /* packets per direction per loop round */
#define NET_TX_WAIT_MS     50      /* a full tap is waited for this long, then drop */
#define NET_WAIT_SLICE_MS  10      /* d->stop is looked at this often */
#define NET_MAX_IOV        1024    /* UIO_MAXIOV */
#define NET_RX_BUF         (VIRTIO_NET_HDR_BYTES + NET_MAX_FRAME + 1)

struct net_dev {
	struct virtio_dev d;
	int tap;
	bool vnet_hdr;                 /* the tap speaks the 12-byte header */
	unsigned tap_offloads;         /* TUN_F_* the tap accepted when probed */
	unsigned index;
	char ifname[IFNAMSIZ];
	char thread_name[16];
	uint8_t config[NET_CONFIG_SIZE];
	pthread_t thread;
	bool started;

	/* Device thread only. */
	uint64_t seen_gen;             /* generation the offloads were set for */
	bool seen_live;
	unsigned cur_offloads;         /* TUN_F_* set on the tap now */
	bool rx_pending;               /* rx_buf holds a packet (rx_len bytes with header) */
	size_t rx_len;
	bool rx_wait;                  /* too few receive buffers: wait for a kick */
	bool tap_backoff;              /* a read error: leave the tap alone for one slice */
	uint8_t *rx_buf;
	struct vq_chain chain;         /* transmit chain / receive chains after the first */
	struct vq_chain first;         /* receive: the packet's first chain */
	struct iovec iov[NET_MAX_IOV];
	uint16_t heads[VIRTQ_MAX_SIZE];
	uint32_t lens[VIRTQ_MAX_SIZE];

	/* Counters: written by the device thread, relaxed. */
	_Atomic uint64_t rx_packets, rx_bytes, rx_dropped, rx_errors, rx_waits;
	_Atomic uint64_t tx_packets, tx_bytes, tx_dropped, tx_errors, tx_waits;
};

static struct net_dev *ndev(struct virtio_dev *d)
{
	return d->priv;
}

static void count(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static bool stopping(const struct virtio_dev *d)
{
	/* Acquire: pairs with virtio_dev_join()'s release store. */
	return atomic_load_explicit(&d->stop, memory_order_acquire);
}

static void net_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, unsigned len)
{
	memcpy(data, ndev(d)->config + off, len);
}

/* ---- the tap ------------------------------------------------------------ */

/* TUN_F_* for the guest features the driver accepted (what the tap may
 * then hand us). */
static unsigned offloads_for(uint64_t feat)
{
	unsigned o = 0;
	if (!(feat & BIT(VIRTIO_NET_F_GUEST_CSUM)))
		return 0;
	o |= TUN_F_CSUM;
	if (feat & BIT(VIRTIO_NET_F_GUEST_TSO4))
		o |= TUN_F_TSO4;
	if (feat & BIT(VIRTIO_NET_F_GUEST_TSO6))
		o |= TUN_F_TSO6;
	if ((feat & BIT(VIRTIO_NET_F_GUEST_ECN)) && (o & (TUN_F_TSO4 | TUN_F_TSO6)))
		o |= TUN_F_TSO_ECN;
	if (feat & BIT(VIRTIO_NET_F_GUEST_UFO))
		o |= TUN_F_UFO;
	return o;
}

/* Device thread, no lock: set the tap's offloads (logged once on failure,
 * which leaves the tap sending complete packets: safe). */
static void set_offloads(struct net_dev *n, unsigned o)
{
	if (!n->vnet_hdr || o == n->cur_offloads)
		return;
	if (ioctl(n->tap, TUNSETOFFLOAD, (unsigned long)o) < 0) {
		log_ratelimited(&n->d.rl, LOG_WARN, "%s: TUNSETOFFLOAD %#x on %s: %s", n->d.name, o,
				n->ifname, strerror(errno));
		if (o != 0 && ioctl(n->tap, TUNSETOFFLOAD, 0UL) == 0)
			n->cur_offloads = 0;
		return;
	}
	n->cur_offloads = o;
}

/* ---- transmit ----------------------------------------------------------- */

/* Wait for the tap to take a packet, in slices that give up when the
 * device stops; *budget_ms decreases.  True if writable. */
static bool wait_tap_writable(struct net_dev *n, int *budget_ms)
{
	while (*budget_ms > 0 && !stopping(&n->d)) {
		int slice = *budget_ms < NET_WAIT_SLICE_MS ? *budget_ms : NET_WAIT_SLICE_MS;
		struct pollfd p = { .fd = n->tap, .events = POLLOUT };
		int r = poll(&p, 1, slice);
		*budget_ms -= slice;
		if (r > 0)
			return (p.revents & POLLOUT) != 0;
		if (r < 0 && errno != EINTR)
			break;
	}
	*budget_ms = 0;
	return false;
}

enum tx_result { TX_SENT, TX_DROPPED, TX_ERROR };

/*
 * Send the popped chain n->chain to the tap.  Device thread, no lock held;
 * feat: the features negotiated when it was popped.
 */
static enum tx_result tx_one(struct net_dev *n, struct gmm_walker *w, uint64_t feat)
{
	struct virtio_dev *d = &n->d;
	const struct vq_chain *c = &n->chain;
	struct net_hdr h;
	const char *bad = NULL;
	if (c->nin)
		bad = "transmit chain with writable descriptors";
	else if (c->out_bytes < VIRTIO_NET_HDR_BYTES)
		bad = "transmit chain shorter than the header";
	else if (c->out_bytes - VIRTIO_NET_HDR_BYTES > NET_MAX_FRAME)
		bad = "transmit frame above 65550 bytes";
	else if (vq_chain_read(w, c, 0, &h, sizeof(h)) < 0)
		bad = "transmit buffer outside RAM";
	else
		bad = net_tx_hdr_problem(&h, feat, n->vnet_hdr);
	if (bad) {
		log_ratelimited(&d->rl, LOG_WARN, "%s: %s (dropped)", d->name, bad);
		return TX_ERROR;
	}
	h.num_buffers = 0;

	int wait_ms = NET_TX_WAIT_MS;
	for (;;) {
		unsigned niov = 0;
		if (n->vnet_hdr)
			n->iov[niov++] = (struct iovec){ .iov_base = &h, .iov_len = sizeof(h) };
		gmm_walk_begin(w);
		uint64_t skip = VIRTIO_NET_HDR_BYTES;
		bool fault = false;
		for (unsigned s = 0; s < c->nout && !fault; s++) {
			uint64_t gpa = c->seg[s].gpa, len = c->seg[s].len;
			if (skip >= len) {
				skip -= len;
				continue;
			}
			gpa += skip;
			len -= skip;
			skip = 0;
			while (len) {
				size_t span = 0;
				void *p = niov < NET_MAX_IOV
					? gmm_translate_span(w, gpa, (size_t)len, GMM_ACCESS_READ, &span)
					: NULL;
				if (!p || span == 0) {
					fault = true;
					break;
				}
				n->iov[niov++] = (struct iovec){ .iov_base = p, .iov_len = span };
				gpa += span;
				len -= span;
			}
		}
		ssize_t r = -1;
		int e = 0;
		if (!fault) {
			/* The kernel copies the frame during the call: the
			 * pointers end with the walk section. */
			r = writev(n->tap, n->iov, (int)niov);
			e = errno;
		}
		gmm_walk_end(w);
		if (fault) {
			log_ratelimited(&d->rl, LOG_WARN, "%s: transmit buffer outside RAM (dropped)",
					d->name);
			return TX_ERROR;
		}
		if (r >= 0)
			return TX_SENT;
		if (e == EINTR)
			continue;
		if ((e == EAGAIN || e == ENOBUFS) && !stopping(d)) {
			count(&n->tx_waits, 1);
			if (wait_tap_writable(n, &wait_ms))
				continue;
			return TX_DROPPED;
		}
		if (e == EAGAIN || e == ENOBUFS)
			return TX_DROPPED;
		/* EINVAL: the tap refused the header (nonsense GSO fields);
		 * EIO: the interface is down.  The guest's packet, dropped. */
		log_ratelimited(&d->rl, LOG_WARN, "%s: tap %s refused a packet: %s (dropped)", d->name,
				n->ifname, strerror(e));
		return e == EIO ? TX_DROPPED : TX_ERROR;
	}
}

/* Transmit queue: up to NET_BATCH chains.  True if more may be waiting. */
static bool do_tx(struct net_dev *n, struct gmm_walker *w)
{
	struct virtio_dev *d = &n->d;
	char why[160];
	bool pushed = false, more = false;
	for (unsigned i = 0; !stopping(d) && !virtio_dev_quiescing(d); i++) {
		if (i == NET_BATCH) {
			more = true;
			break;
		}
		pthread_mutex_lock(&d->lock);
		struct virtqueue *q = &d->vq[NET_TXQ];
		if (!virtio_dev_live(d) || !q->ready) {
			pthread_mutex_unlock(&d->lock);
			break;
		}
		int r = vq_pop(q, w, &n->chain, why, sizeof(why));
		if (r == 0)
			r = vq_arm(q, w, why, sizeof(why)) > 0 ? vq_pop(q, w, &n->chain, why, sizeof(why)) : 0;
		if (r < 0)
			virtio_dev_fail(d, "transmit queue: %s", why);
		uint64_t gen = d->generation, feat = d->driver_features;
		pthread_mutex_unlock(&d->lock);
		if (r <= 0)
			break;

		enum tx_result res = tx_one(n, w, feat);
		uint64_t bytes = n->chain.out_bytes > VIRTIO_NET_HDR_BYTES
			? n->chain.out_bytes - VIRTIO_NET_HDR_BYTES : 0;
		if (res == TX_SENT) {
			count(&n->tx_packets, 1);
			count(&n->tx_bytes, bytes);
		} else {
			count(res == TX_ERROR ? &n->tx_errors : &n->tx_dropped, 1);
		}

		pthread_mutex_lock(&d->lock);
		if (gen == d->generation && virtio_dev_live(d)) {
			if (vq_push(q, w, n->chain.head, 0, why, sizeof(why)) < 0)
				virtio_dev_fail(d, "transmit queue: %s", why);
			else
				pushed = true;
		}
		pthread_mutex_unlock(&d->lock);
	}
	if (pushed) {
		pthread_mutex_lock(&d->lock);
		if (virtio_dev_live(d))
			virtio_queue_used(d, &d->vq[NET_TXQ], w);
		pthread_mutex_unlock(&d->lock);
	}
	return more;
}

/* ---- receive ------------------------------------------------------------ */

enum rx_result { RX_DONE, RX_DROPPED, RX_NO_BUFFERS, RX_AGAIN, RX_BROKEN };

/*
 * Copy the pending packet into the receive queue.  d->lock held, device
 * live, queue ready.  RX_DONE (pushed), RX_DROPPED (dropped, counted; any
 * chain popped is given back or pushed), RX_AGAIN (buffers keep coming
 * while it pops: nothing changed, try again at once), RX_NO_BUFFERS (nothing changed,
 * a kick is armed), RX_BROKEN (the device failed).
 */
static enum rx_result rx_deliver(struct net_dev *n, struct gmm_walker *w)
{
	struct virtio_dev *d = &n->d;
	struct virtqueue *q = &d->vq[NET_RXQ];
	char why[160];
	uint64_t feat = d->driver_features;
	bool mrg = feat & BIT(VIRTIO_NET_F_MRG_RXBUF);
	struct net_hdr *h = (struct net_hdr *)n->rx_buf;
	const char *bad = net_rx_hdr_fix(h, feat);
	if (bad) {
		log_ratelimited(&d->rl, LOG_INFO, "%s: %s (dropped)", d->name, bad);
		count(&n->rx_dropped, 1);
		return RX_DROPPED;
	}
	h->num_buffers = htole16(1);

	size_t total = n->rx_len, off = 0;
	unsigned npop = 0, retries = 0;
	while (off < total) {
		struct vq_chain *c = npop == 0 ? &n->first : &n->chain;
		int r = vq_pop(q, w, c, why, sizeof(why));
		if (r < 0) {
			virtio_dev_fail(d, "receive queue: %s", why);
			return RX_BROKEN;
		}
		if (r == 0) {
			/* Too few buffers: give these back, wait for more. */
			vq_unpop(q, (uint16_t)npop);
			r = vq_arm_more(q, w, why, sizeof(why));
			if (r < 0) {
				virtio_dev_fail(d, "receive queue: %s", why);
				return RX_BROKEN;
			}
			if (r > 0 && ++retries < 2) {
				npop = 0;   /* a buffer came meanwhile: start again */
				off = 0;
				continue;
			}
			/* A buffer came after our avail_event store: the
			 * driver may not have seen it and not kick, so this is
			 * no reason to sleep. */
			return r > 0 ? RX_AGAIN : RX_NO_BUFFERS;
		}
		if (c->nout) {
			virtio_dev_fail(d, "receive queue: chain %u has readable descriptors", c->head);
			return RX_BROKEN;
		}
		if (npop == 0 && c->in_bytes < VIRTIO_NET_HDR_BYTES) {
			virtio_dev_fail(d, "receive queue: buffer of %" PRIu64 " bytes < header",
					c->in_bytes);
			return RX_BROKEN;
		}
		if (!mrg && c->in_bytes < total) {
			vq_unpop(q, 1);
			log_ratelimited(&d->rl, LOG_INFO,
					"%s: receive buffer of %" PRIu64 " bytes for a packet of %zu (dropped)",
					d->name, c->in_bytes, total);
			count(&n->rx_dropped, 1);
			return RX_DROPPED;
		}
		size_t k = c->in_bytes < total - off ? (size_t)c->in_bytes : total - off;
		if (vq_chain_write(w, c, 0, n->rx_buf + off, k) < 0) {
			/* A buffer outside RAM (unplugged, ballooned): this packet
			 * is lost; what was popped goes back empty. */
			n->heads[npop] = c->head;
			n->lens[npop] = 0;
			npop++;
			for (unsigned i = 0; i < npop; i++)
				n->lens[i] = 0;
			log_ratelimited(&d->rl, LOG_WARN, "%s: receive buffer outside RAM (dropped)",
					d->name);
			count(&n->rx_errors, 1);
			if (vq_push_n(q, w, n->heads, n->lens, npop, why, sizeof(why)) < 0) {
				virtio_dev_fail(d, "receive queue: %s", why);
				return RX_BROKEN;
			}
			return RX_DROPPED;
		}
		n->heads[npop] = c->head;
		n->lens[npop] = (uint32_t)k;
		npop++;
		off += k;
		if (off < total && npop >= q->num) {
			/* Could never fit: the whole ring is smaller. */
			vq_unpop(q, (uint16_t)npop);
			log_ratelimited(&d->rl, LOG_INFO,
					"%s: a packet of %zu bytes does not fit in the receive ring (dropped)",
					d->name, total);
			count(&n->rx_dropped, 1);
			return RX_DROPPED;
		}
	}
	if (npop > 1) {
		uint16_t nb = htole16((uint16_t)npop);
		if (vq_chain_write(w, &n->first, HDR_NUM_BUFFERS_OFF, &nb, sizeof(nb)) < 0)
			count(&n->rx_errors, 1);   /* the guest sees a bad packet; its buffers go back */
	}
	if (vq_push_n(q, w, n->heads, n->lens, npop, why, sizeof(why)) < 0) {
		virtio_dev_fail(d, "receive queue: %s", why);
		return RX_BROKEN;
	}
	count(&n->rx_packets, 1);
	count(&n->rx_bytes, total - VIRTIO_NET_HDR_BYTES);
	return RX_DONE;
}

/* Read one packet from the tap into rx_buf.  1 (rx_pending set), 0
 * (nothing to read), -1 (a read error, counted). */
static int rx_read(struct net_dev *n)
{
	struct virtio_dev *d = &n->d;
	for (;;) {
		ssize_t r;
		if (n->vnet_hdr) {
			r = read(n->tap, n->rx_buf, NET_RX_BUF);
		} else {
			memset(n->rx_buf, 0, VIRTIO_NET_HDR_BYTES);
			r = read(n->tap, n->rx_buf + VIRTIO_NET_HDR_BYTES, NET_RX_BUF - VIRTIO_NET_HDR_BYTES);
			if (r >= 0)
				r += VIRTIO_NET_HDR_BYTES;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return 0;
		if (r < 0) {
			log_ratelimited(&d->rl, LOG_WARN, "%s: reading tap %s: %s", d->name, n->ifname,
					strerror(errno));
			count(&n->rx_errors, 1);
			return -1;
		}
		if ((size_t)r < VIRTIO_NET_HDR_BYTES || (size_t)r >= NET_RX_BUF) {
			count(&n->rx_dropped, 1);   /* runt, or above the frame limit */
			continue;
		}
		n->rx_len = (size_t)r;
		n->rx_pending = true;
		return 1;
	}
}

/* Receive: up to NET_BATCH packets from the tap into the guest.  True if
 * more may be waiting. */
static bool do_rx(struct net_dev *n, struct gmm_walker *w)
{
	struct virtio_dev *d = &n->d;
	bool pushed = false, more = false;
	for (unsigned i = 0; !stopping(d) && !virtio_dev_quiescing(d) && !n->rx_wait; i++) {
		if (i == NET_BATCH) {
			more = true;
			break;
		}
		pthread_mutex_lock(&d->lock);
		bool ok = virtio_dev_live(d) && d->vq[NET_RXQ].ready;
		pthread_mutex_unlock(&d->lock);
		if (!ok) {
			/* Nowhere to deliver: wait for a kick or a status
			 * change rather than spin on the pending packet. */
			n->rx_wait = true;
			break;
		}
		if (!n->rx_pending) {
			int rr = rx_read(n);
			if (rr < 0)
				n->tap_backoff = true;   /* no spin on a broken tap's POLLERR */
			if (rr <= 0)
				break;
		}
		pthread_mutex_lock(&d->lock);
		enum rx_result r = RX_BROKEN;
		if (virtio_dev_live(d) && d->vq[NET_RXQ].ready)
			r = rx_deliver(n, w);
		if (r == RX_DONE)
			pushed = true;
		pthread_mutex_unlock(&d->lock);
		if (r == RX_AGAIN) {
			more = true;
			break;
		}
		if (r == RX_NO_BUFFERS) {
			count(&n->rx_waits, 1);
			n->rx_wait = true;
			break;
		}
		n->rx_pending = false;
		if (r == RX_BROKEN)
			break;
	}
	if (pushed) {
		pthread_mutex_lock(&d->lock);
		if (virtio_dev_live(d))
			virtio_queue_used(d, &d->vq[NET_RXQ], w);
		pthread_mutex_unlock(&d->lock);
	}
	return more;
}

/* ---- the thread --------------------------------------------------------- */

/* Follow the driver: offloads for a new live generation, cleared when the
 * device is reset or failed; the pending packet dropped on a reset. */
static void follow_state(struct net_dev *n)
{
	struct virtio_dev *d = &n->d;
	pthread_mutex_lock(&d->lock);
	bool live = virtio_dev_live(d) && !(d->status & VIRTIO_STATUS_FAILED);
	uint64_t gen = d->generation, feat = d->driver_features;
	pthread_mutex_unlock(&d->lock);
	if (gen != n->seen_gen) {
		if (n->rx_pending)
			count(&n->rx_dropped, 1);
		n->rx_pending = false;
		n->rx_wait = false;
		n->seen_gen = gen;
		n->seen_live = false;
	}
	if (live && !n->seen_live)
		set_offloads(n, offloads_for(feat));
	else if (!live && n->cur_offloads)
		set_offloads(n, 0);
	n->seen_live = live;
}

static void *net_thread(void *arg)
{
	struct net_dev *n = arg;
	struct virtio_dev *d = &n->d;
	struct gmm_walker *w = gmm_walker_register(d->mem);
	if (!w) {
		log_msg(LOG_ERROR, "%s: guestmm walker: %s", d->name, gmm_last_error());
		return NULL;
	}
	sandbox_enter(SANDBOX_DEVICE);
	bool again = true;
	while (!stopping(d)) {
		/* Quiesced (snapshot): do_tx and do_rx push every chain they
		 * take before returning (or give it back); a received packet
		 * still waiting for buffers stays in rx_buf and is saved.
		 * The tap and the queues are left alone until resume. */
		if (virtio_dev_quiescing(d)) {
			virtio_dev_set_quiet(d);
			struct pollfd c = { .fd = d->ctl_fd, .events = POLLIN };
			(void)poll(&c, 1, -1);
			virtio_eventfd_drain(d->ctl_fd);
			n->rx_wait = false;   /* look at the queues again after */
			again = true;
			continue;
		}
		struct pollfd p[4] = {
			{ .fd = d->ctl_fd, .events = POLLIN },
			{ .fd = d->kick_fd[NET_RXQ], .events = POLLIN },
			{ .fd = d->kick_fd[NET_TXQ], .events = POLLIN },
			{ .fd = n->tap, .events = 0 },
		};
		/* The tap is looked at only while a packet could go somewhere. */
		if (n->seen_live && !n->rx_wait && !n->rx_pending && !n->tap_backoff)
			p[3].events = POLLIN;
		int np = p[3].events ? 4 : 3;
		int timeout = again ? 0 : n->tap_backoff ? NET_WAIT_SLICE_MS : -1;
		n->tap_backoff = false;
		if (poll(p, (nfds_t)np, timeout) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 3; i++)
			if (p[i].revents)
				virtio_eventfd_drain(p[i].fd);
		if (p[0].revents || p[1].revents)
			n->rx_wait = false;   /* new buffers, or a status change */
		follow_state(n);
		bool more = do_tx(n, w);
		more |= do_rx(n, w);
		again = more || (n->rx_pending && !n->rx_wait);
	}
	gmm_walker_unregister(w);
	return NULL;
}

static int net_start(struct virtio_dev *d)
{
	struct net_dev *n = ndev(d);
	int err = pthread_create(&n->thread, NULL, net_thread, n);
	if (err) {
		log_msg(LOG_ERROR, "%s: cannot start its thread: %s", d->name, strerror(err));
		return -1;
	}
	pthread_setname_np(n->thread, n->thread_name);
	n->started = true;
	return 0;
}

static void net_stop(struct virtio_dev *d)
{
	struct net_dev *n = ndev(d);
	virtio_dev_join(d, n->thread, &n->started);
	/* The thread is gone: leave the tap as we found it. */
	if (n->cur_offloads)
		set_offloads(n, 0);
	n->seen_live = false;
}

static void net_destroy(struct virtio_dev *d)
{
	struct net_dev *n = ndev(d);
	net_stop(d);
	virtio_dev_fini(d);
	if (n->tap >= 0)
		close(n->tap);
	free(n->rx_buf);
	free(n);
}

static void net_info_fill(struct net_dev *n, struct net_info *out)
{
	struct virtio_dev *d = &n->d;
	memset(out, 0, sizeof(*out));
	memcpy(out->mac, n->config, 6);
	snprintf(out->ifname, sizeof(out->ifname), "%s", n->ifname);
	out->mtu = le16toh(*(uint16_t *)(n->config + 10));
	out->vnet_hdr = n->vnet_hdr;
	pthread_mutex_lock(&d->lock);
	out->features = d->driver_features;
	out->live = virtio_dev_live(d);
	pthread_mutex_unlock(&d->lock);
	out->offered = d->features;
#define LD(f) out->f = atomic_load_explicit(&n->f, memory_order_relaxed)
	LD(rx_packets); LD(rx_bytes); LD(rx_dropped); LD(rx_errors); LD(rx_waits);
	LD(tx_packets); LD(tx_bytes); LD(tx_dropped); LD(tx_errors); LD(tx_waits);
#undef LD
}

void virtio_net_info(struct virtio_dev *d, struct net_info *out)
{
	net_info_fill(ndev(d), out);
}

static void net_counters(struct virtio_dev *d, char *buf, size_t len)
{
	struct net_info i;
	net_info_fill(ndev(d), &i);
	snprintf(buf, len,
		 "rx_packets %" PRIu64 "\nrx_bytes %" PRIu64 "\nrx_dropped %" PRIu64
		 "\nrx_errors %" PRIu64 "\nrx_buffer_waits %" PRIu64
		 "\ntx_packets %" PRIu64 "\ntx_bytes %" PRIu64 "\ntx_dropped %" PRIu64
		 "\ntx_errors %" PRIu64 "\ntx_tap_waits %" PRIu64 "\n",
		 i.rx_packets, i.rx_bytes, i.rx_dropped, i.rx_errors, i.rx_waits, i.tx_packets,
		 i.tx_bytes, i.tx_dropped, i.tx_errors, i.tx_waits);
}

/* ---- snapshot (issue 16) ------------------------------------------------ */

static int net_quiesce(struct virtio_dev *d)
{
	if (!ndev(d)->started)
		return 0;
	/* Bound: one packet (a writev or a copy) plus NET_TX_WAIT_MS. */
	return virtio_dev_quiesce_wait(d, VIRTIO_QUIESCE_TIMEOUT_MS);
}

static void net_resume_io(struct virtio_dev *d)
{
	virtio_dev_resume(d);
}

/* MAC, MTU, link status (the config space), the tap offloads in force, and
 * a received packet still waiting for buffers (header included).  Main
 * thread, the thread quiet (it owns rx_buf and cur_offloads). */
static struct json_object *net_save(struct virtio_dev *d, char *err, size_t errlen)
{
	struct net_dev *n = ndev(d);
	uint16_t status, mtu;
	memcpy(&status, n->config + 6, 2);
	memcpy(&mtu, n->config + 10, 2);
	struct json_object *o = json_object_new_object();
	int r = !o || sj_set_hex(o, "mac", n->config, 6) || sj_set_u64(o, "mtu", le16toh(mtu)) ||
		sj_set_u64(o, "status", le16toh(status)) || sj_set_u64(o, "offloads", n->cur_offloads) ||
		sj_set_hex(o, "rx_pending", n->rx_buf, n->rx_pending ? n->rx_len : 0);
	if (r) {
		json_object_put(o);
		snprintf(err, errlen, "%s: out of memory saving its state", d->name);
		return NULL;
	}
	return o;
}

/* Main thread, before start.  The MTU must be the configured one (the
 * features depend on it); the MAC the guest knows is taken (a MAC drawn at
 * random for this process would differ).  The offloads are set on the tap
 * again by the thread's first round: seen_live starts false, so a live
 * driver gets TUNSETOFFLOAD of what it accepted. */
static int net_restore(struct virtio_dev *d, struct json_object *o, char *err, size_t errlen)
{
	struct net_dev *n = ndev(d);
	const char *w = "virtio-net", *pend;
	uint8_t mac[6];
	uint64_t mtu, status, offloads;
	uint16_t cur;
	memcpy(&cur, n->config + 10, 2);
	if (sj_get_hex(o, "mac", mac, 6, w, err, errlen) ||
	    sj_get_uint(o, "mtu", UINT16_MAX, &mtu, w, err, errlen) ||
	    sj_get_uint(o, "status", UINT16_MAX, &status, w, err, errlen) ||
	    sj_get_uint(o, "offloads", UINT32_MAX, &offloads, w, err, errlen) ||
	    sj_get_str(o, "rx_pending", &pend, w, err, errlen))
		return -1;
	if (mtu != le16toh(cur)) {
		snprintf(err, errlen, "%s: MTU %u, the snapshot's was %" PRIu64, w, le16toh(cur), mtu);
		return -1;
	}
	size_t len = strlen(pend) / 2;
	if (strlen(pend) % 2 || (len && (len < VIRTIO_NET_HDR_BYTES || len >= NET_RX_BUF))) {
		snprintf(err, errlen, "%s.rx_pending: %zu hex digits is not a packet", w, strlen(pend));
		return -1;
	}
	if (sj_get_hex(o, "rx_pending", n->rx_buf, len, w, err, errlen))
		return -1;
	if (offloads != offloads_for(d->driver_features) && virtio_dev_live(d))
		log_msg(LOG_INFO, "%s: tap offloads %#" PRIx64 " saved; setting those the driver "
			"accepted (%#x)", d->name, offloads, offloads_for(d->driver_features));
	memcpy(n->config, mac, 6);
	uint16_t st = htole16((uint16_t)status);
	memcpy(n->config + 6, &st, 2);
	n->rx_pending = len != 0;
	n->rx_len = len;
	n->rx_wait = false;
	n->seen_gen = d->generation;
	n->seen_live = false;
	return 0;
}

static const struct virtio_dev_ops net_ops = {
	.quiesce = net_quiesce,
	.resume_io = net_resume_io,
	.save = net_save,
	.restore = net_restore,
	.config_read = net_config_read,
	.start = net_start,
	.stop = net_stop,
	.destroy = net_destroy,
	.counters = net_counters,
};

/* ---- creation ----------------------------------------------------------- */

/* ip/mask/mtu on the tap's interface, and up.  0 or -1 with err. */
static int configure_ifc(struct net_dev *n, const struct net_dev_config *cfg, char *err,
			 size_t errlen)
{
	if (!cfg->ip && !cfg->mtu)
		return 0;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		snprintf(err, errlen, "virtio-net: socket: %s", strerror(errno));
		return -1;
	}
	struct ifreq ifr;
	const char *what = NULL;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", n->ifname);
	if (cfg->mtu) {
		ifr.ifr_mtu = (int)cfg->mtu;
		if (ioctl(s, SIOCSIFMTU, &ifr) < 0)
			what = "mtu";
	}
	if (!what && cfg->ip) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = cfg->ip;
		if (ioctl(s, SIOCSIFADDR, &ifr) < 0)
			what = "address";
		if (!what && cfg->mask) {
			sin->sin_addr.s_addr = cfg->mask;
			if (ioctl(s, SIOCSIFNETMASK, &ifr) < 0)
				what = "netmask";
		}
		if (!what && ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
			what = "flags";
		if (!what) {
			ifr.ifr_flags |= IFF_UP;
			if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
				what = "up";
		}
	}
	int e = errno;
	close(s);
	if (what) {
		snprintf(err, errlen, "virtio-net: cannot set the %s of %s: %s", what, n->ifname,
			 strerror(e));
		return -1;
	}
	return 0;
}

/* Open or adopt the tap.  0 or -1 with err. */
static int open_tap(struct net_dev *n, const struct net_dev_config *cfg, char *err, size_t errlen)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	if (cfg->fd >= 0) {
		if (ioctl(cfg->fd, TUNGETIFF, &ifr) < 0) {
			snprintf(err, errlen, "virtio-net: fd %d is not a tap (TUNGETIFF: %s)", cfg->fd,
				 strerror(errno));
			return -1;
		}
		if ((ifr.ifr_flags & (IFF_TAP | IFF_TUN)) != IFF_TAP) {
			snprintf(err, errlen, "virtio-net: fd %d (%s) is a tun, not a tap", cfg->fd,
				 ifr.ifr_name);
			return -1;
		}
		if (!(ifr.ifr_flags & IFF_NO_PI)) {
			snprintf(err, errlen, "virtio-net: tap fd %d (%s) lacks IFF_NO_PI", cfg->fd,
				 ifr.ifr_name);
			return -1;
		}
		n->tap = fcntl(cfg->fd, F_DUPFD_CLOEXEC, 3);
		if (n->tap < 0) {
			snprintf(err, errlen, "virtio-net: dup of fd %d: %s", cfg->fd, strerror(errno));
			return -1;
		}
		n->vnet_hdr = ifr.ifr_flags & IFF_VNET_HDR;
	} else {
		if (!cfg->tap || !cfg->tap[0] || strlen(cfg->tap) >= IFNAMSIZ) {
			snprintf(err, errlen, "virtio-net: tap name '%s' is empty or longer than %d bytes",
				 cfg->tap ? cfg->tap : "", IFNAMSIZ - 1);
			return -1;
		}
		n->tap = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
		if (n->tap < 0) {
			snprintf(err, errlen, "virtio-net: /dev/net/tun: %s", strerror(errno));
			return -1;
		}
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", cfg->tap);
		ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
		if (ioctl(n->tap, TUNSETIFF, &ifr) < 0) {
			snprintf(err, errlen, "virtio-net: tap %s: %s", cfg->tap, strerror(errno));
			return -1;
		}
		n->vnet_hdr = true;
	}
	snprintf(n->ifname, sizeof(n->ifname), "%s", ifr.ifr_name);
	int fl = fcntl(n->tap, F_GETFL);
	if (fl < 0 || fcntl(n->tap, F_SETFL, fl | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "virtio-net: tap %s: O_NONBLOCK: %s", n->ifname, strerror(errno));
		return -1;
	}
	if (n->vnet_hdr) {
		int sz = VIRTIO_NET_HDR_BYTES;
		if (ioctl(n->tap, TUNSETVNETHDRSZ, &sz) < 0) {
			snprintf(err, errlen, "virtio-net: tap %s: TUNSETVNETHDRSZ: %s", n->ifname,
				 strerror(errno));
			return -1;
		}
		/* What the tap can hand us: probed once, then off until a
		 * driver asks. */
		unsigned base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
		if (ioctl(n->tap, TUNSETOFFLOAD, (unsigned long)base) == 0) {
			n->tap_offloads = base;
			if (ioctl(n->tap, TUNSETOFFLOAD, (unsigned long)(base | TUN_F_UFO)) == 0)
				n->tap_offloads |= TUN_F_UFO;
		}
		ioctl(n->tap, TUNSETOFFLOAD, 0UL);
	}
	return 0;
}

struct virtio_dev *virtio_net_create(struct gmm_vm *mem, const struct net_dev_config *cfg,
				     unsigned index, char *err, size_t errlen)
{
	struct net_dev *n = calloc(1, sizeof(*n));
	if (n)
		n->rx_buf = malloc(NET_RX_BUF);
	if (!n || !n->rx_buf) {
		snprintf(err, errlen, "virtio-net: out of memory");
		if (n)
			free(n);
		return NULL;
	}
	n->tap = -1;
	n->index = index;
	snprintf(n->thread_name, sizeof(n->thread_name), "_net%u", index);
	if (cfg->mtu && (cfg->mtu < 68 || cfg->mtu > 65535)) {
		snprintf(err, errlen, "virtio-net: mtu %u is not in [68, 65535]", cfg->mtu);
		goto fail;
	}
	if (cfg->queue_size && (cfg->queue_size < 2 || cfg->queue_size > VIRTQ_MAX_SIZE ||
				(cfg->queue_size & (cfg->queue_size - 1)))) {
		snprintf(err, errlen, "virtio-net: queue_size %u is not a power of two in [2, %u]",
			 cfg->queue_size, VIRTQ_MAX_SIZE);
		goto fail;
	}
	if (open_tap(n, cfg, err, errlen) < 0 || configure_ifc(n, cfg, err, errlen) < 0)
		goto fail;

	memcpy(n->config, cfg->mac, 6);
	uint16_t status = htole16(NET_S_LINK_UP), pairs = htole16(1);
	uint16_t mtu = htole16((uint16_t)(cfg->mtu ? cfg->mtu : 1500));
	memcpy(n->config + 6, &status, 2);
	memcpy(n->config + 8, &pairs, 2);
	memcpy(n->config + 10, &mtu, 2);

	struct virtio_dev *d = &n->d;
	d->name = "virtio-net";
	d->device_id = VIRTIO_ID_NET;
	d->features = BIT(VIRTIO_NET_F_MAC) | BIT(VIRTIO_NET_F_STATUS) | BIT(VIRTIO_NET_F_MRG_RXBUF);
	if (cfg->mtu)
		d->features |= BIT(VIRTIO_NET_F_MTU);
	if (n->vnet_hdr && (n->tap_offloads & TUN_F_CSUM)) {
		d->features |= BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_NET_F_GUEST_CSUM) |
			       BIT(VIRTIO_NET_F_HOST_TSO4) | BIT(VIRTIO_NET_F_HOST_TSO6) |
			       BIT(VIRTIO_NET_F_HOST_ECN) | BIT(VIRTIO_NET_F_GUEST_TSO4) |
			       BIT(VIRTIO_NET_F_GUEST_TSO6) | BIT(VIRTIO_NET_F_GUEST_ECN);
		if (n->tap_offloads & TUN_F_UFO)
			d->features |= BIT(VIRTIO_NET_F_GUEST_UFO);
	}
	d->config_size = NET_CONFIG_SIZE;
	d->nqueues = 2;
	d->queue_max = (uint16_t)cfg->queue_size;
	d->ops = &net_ops;
	d->priv = n;
	d->mem = mem;
	int e = virtio_dev_init(d);
	if (e < 0) {
		snprintf(err, errlen, "virtio-net: %s", strerror(-e));
		goto fail;
	}
	log_msg(LOG_INFO, "virtio-net %u: tap %s%s, mac %02x:%02x:%02x:%02x:%02x:%02x, %s", index,
		n->ifname, cfg->fd >= 0 ? " (fd)" : "", cfg->mac[0], cfg->mac[1], cfg->mac[2],
		cfg->mac[3], cfg->mac[4], cfg->mac[5],
		!n->vnet_hdr ? "no vnet header: no offloads"
			     : n->tap_offloads ? "checksum/TSO offloads" : "the tap takes no offloads");
	return d;
fail:
	if (n->tap >= 0)
		close(n->tap);
	free(n->rx_buf);
	free(n);
	return NULL;
}
