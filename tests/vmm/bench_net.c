// SPDX-License-Identifier: GPL-2.0-only
/*
 * bench_net.c - virtio-net-bench: throughput of the VMM's virtio-net device
 * path on the host, no guest: the test driver (vdriver.h) plays the guest's
 * driver from this thread, the device runs its own thread on a real tap,
 * and the "host network" is an AF_PACKET socket on that tap, all inside a
 * network namespace this program creates (root and /dev/net/tun needed).
 *
 *   virtio-net-bench [--seconds 2] [--repeat 3]
 *
 * Cases, each over a fresh guest RAM and device, `seconds` per run, the
 * median of `repeat` runs (range in brackets):
 *   tx 64 / tx 1500   guest -> host: 256 transmit chains (one descriptor
 *                     each, header + frame) kept in flight, republished as
 *                     the device uses them, kicks as the event index asks;
 *                     packets/s counted where the device gives the chains
 *                     back (what it handed the tap) and at the peer socket
 *                     (what reached the host's stack).
 *   tx tso64k         guest -> host, 64 KiB TSO frames (TCP/IPv4, GSO
 *                     TCPV4, MSS 1448): the tap takes each as one GSO packet.
 *   rx 64 / rx 1500   host -> guest: the peer thread sends as fast as
 *                     AF_PACKET lets it; the driver keeps 256 receive
 *                     buffers of 2 KiB posted (MRG_RXBUF) and counts what it
 *                     receives (the peer's send rate is the ceiling).
 * MB/s is 10^6 bytes of Ethernet frame (no virtio header) per second.
 *
 * Output: the table on stdout, progress on stderr.  Exit 0, 1 if a run
 * failed, 2 on a bad command line, 77 if the environment lacks root or
 * /dev/net/tun.
 */
#include "netns.h"
#include "vdriver.h"
#include "virtio/virtio_devices.h"

#include <endian.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/utsname.h>
#include <time.h>

#define TAP "vnb0"
#define QN 256
#define RX_BUF 2048
#define MSS 1448

static const uint8_t guest_mac[6] = { 0x52, 0x54, 0x00, 0xbe, 0x4c, 0x01 };

struct result {
	double pps, mbps, peer_pps;
	bool ok;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void put_desc(struct vdriver *v, unsigned q, uint16_t i, uint64_t addr, uint32_t len,
		     uint16_t flags)
{
	struct virtq_desc d = { .addr = htole64(addr), .len = htole32(len), .flags = htole16(flags) };
	vd_set_desc(v, q, i, &d);
}

/* Kick queue q if the device's avail_event asks for it (vring_need_event). */
static void maybe_kick(struct vdriver *v, unsigned q, uint16_t old_idx)
{
	struct vd_queue *Q = &v->q[q];
	uint16_t new_idx = Q->avail_idx;
	if (new_idx == old_idx)
		return;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	/* avail_event: an atomic load, as the device stores it atomically. */
	gmm_walk_begin(v->w);
	uint16_t *pe = gmm_translate(v->w, Q->used + 4 + 8ULL * Q->num, 2, GMM_ACCESS_READ);
	uint16_t ev = pe ? le16toh(__atomic_load_n(pe, __ATOMIC_RELAXED)) : (uint16_t)(old_idx);
	gmm_walk_end(v->w);
	if ((uint16_t)(new_idx - ev - 1) < (uint16_t)(new_idx - old_idx))
		vd_kick(v, q);
}

static uint16_t csum16(const uint8_t *b, size_t len, uint32_t sum)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(b[i] << 8 | b[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

/* A frame of len bytes: our ethertype (or, tso, TCP/IPv4 10.9.1.2 ->
 * 10.9.1.3 with the pseudo-header sum for NEEDS_CSUM). */
static void make_frame(uint8_t *f, size_t len, const uint8_t *dst, bool tso)
{
	memset(f, 0, len);
	memcpy(f, dst, 6);
	memcpy(f + 6, guest_mac, 6);
	for (size_t i = 14; i < len; i++)
		f[i] = (uint8_t)(i * 7);
	if (!tso) {
		f[12] = NETNS_ETH_P_TEST >> 8;
		f[13] = NETNS_ETH_P_TEST & 0xff;
		return;
	}
	f[12] = 0x08, f[13] = 0;
	uint8_t *ip = f + 14, *tcp = f + 34;
	size_t iplen = len - 14;
	memset(ip, 0, 40);
	ip[0] = 0x45, ip[2] = (uint8_t)(iplen >> 8), ip[3] = (uint8_t)iplen, ip[8] = 64, ip[9] = 6;
	ip[12] = 10, ip[13] = 9, ip[14] = 1, ip[15] = 2, ip[16] = 10, ip[17] = 9, ip[18] = 1, ip[19] = 3;
	uint16_t c = (uint16_t)~csum16(ip, 20, 0);
	ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
	tcp[1] = 1, tcp[3] = 2, tcp[12] = 0x50, tcp[13] = 0x10, tcp[14] = 0xff, tcp[15] = 0xff;
	uint16_t p = csum16(ip + 12, 8, 6 + (uint32_t)(iplen - 20));
	tcp[16] = (uint8_t)(p >> 8), tcp[17] = (uint8_t)p;
}

struct peer {
	int s;
	_Atomic bool stop, counting;
	_Atomic uint64_t packets, bytes;
	uint16_t ethertype;
	size_t hdr;            /* vnet header on the socket */
	uint8_t frame[2048];   /* what the sender sends */
	size_t frame_len;
};

/* Count frames of p->ethertype that come in on the tap (bounded: until
 * stop, which the main thread sets after the run's window). */
static void *peer_rx(void *arg)
{
	struct peer *p = arg;
	enum { B = 64 };
	static uint8_t bufs[B][NET_MAX_FRAME + 64];
	struct mmsghdr m[B];
	struct iovec iov[B];
	struct sockaddr_ll from[B];
	while (!atomic_load(&p->stop)) {
		for (int i = 0; i < B; i++) {
			iov[i] = (struct iovec){ bufs[i], sizeof(bufs[i]) };
			m[i] = (struct mmsghdr){ .msg_hdr = { .msg_name = &from[i],
							      .msg_namelen = sizeof(from[i]),
							      .msg_iov = &iov[i], .msg_iovlen = 1 } };
		}
		int n = recvmmsg(p->s, m, B, MSG_DONTWAIT, NULL);
		if (n <= 0) {
			struct pollfd pf = { .fd = p->s, .events = POLLIN };
			poll(&pf, 1, 10);
			continue;
		}
		if (!atomic_load(&p->counting))
			continue;
		uint64_t pk = 0, by = 0;
		for (int i = 0; i < n; i++) {
			const uint8_t *f = bufs[i] + p->hdr;
			if (from[i].sll_pkttype == PACKET_OUTGOING || m[i].msg_len < p->hdr + 14 ||
			    (f[12] << 8 | f[13]) != p->ethertype)
				continue;
			pk++;
			by += m[i].msg_len - p->hdr;
		}
		atomic_fetch_add(&p->packets, pk);
		atomic_fetch_add(&p->bytes, by);
	}
	return NULL;
}

/* Send p->frame as fast as the socket takes it, until stop. */
static void *peer_tx(void *arg)
{
	struct peer *p = arg;
	enum { B = 64 };
	struct mmsghdr m[B];
	struct iovec iov = { p->frame, p->frame_len };
	for (int i = 0; i < B; i++)
		m[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov, .msg_iovlen = 1 } };
	while (!atomic_load(&p->stop)) {
		int n = sendmmsg(p->s, m, B, 0);
		if (n > 0)
			atomic_fetch_add(&p->packets, (uint64_t)n);
		else if (errno == EAGAIN || errno == ENOBUFS) {
			struct pollfd pf = { .fd = p->s, .events = POLLOUT };
			poll(&pf, 1, 1);
		}
	}
	return NULL;
}

static struct virtio_dev *make_dev(struct vdriver *v)
{
	struct net_dev_config c = { .tap = TAP, .fd = -1, .ip = inet_addr("10.9.1.1"),
				    .mask = inet_addr("255.255.255.0") };
	memcpy(c.mac, guest_mac, 6);
	char err[256];
	struct virtio_dev *d = virtio_net_create(v->mem, &c, 0, err, sizeof(err));
	if (!d) {
		fprintf(stderr, "virtio-net-bench: %s\n", err);
		return NULL;
	}
	if (d->ops->start(d)) {
		d->ops->destroy(d);
		return NULL;
	}
	int st = vd_setup(v, d, ~0ULL, 2, QN);
	if (st < 0 || !(st & VIRTIO_STATUS_DRIVER_OK)) {
		fprintf(stderr, "virtio-net-bench: driver setup failed (status %#x)\n", st);
		d->ops->destroy(d);
		return NULL;
	}
	return d;
}

/* Reap used elements of queue q, republish them; false if nothing came for
 * 2 s. */
static bool reap(struct vdriver *v, struct virtio_dev *d, unsigned q, uint64_t *count,
		 uint64_t *bytes, size_t hdr_len)
{
	unsigned n = vd_used_pending(v, q);
	if (n == 0) {
		struct pollfd p = { .fd = d->irq_fd, .events = POLLIN };
		if (poll(&p, 1, 2000) == 0)
			return false;
		uint64_t x;
		if (read(d->irq_fd, &x, sizeof(x)) < 0) {
			/* already cleared */
		}
		return true;
	}
	uint16_t old = v->q[q].avail_idx;
	for (unsigned k = 0; k < n; k++) {
		uint32_t len;
		int head = vd_wait_used(v, q, 0, &len);
		if (head < 0)
			return false;
		(*count)++;
		if (bytes && len > hdr_len)
			*bytes += len - hdr_len;
		vd_publish(v, q, (uint16_t)head);
	}
	maybe_kick(v, q, old);
	return true;
}

static struct result run_tx(double seconds, size_t frame, bool tso)
{
	struct result res = { 0 };
	struct vdriver v;
	if (vd_init(&v, 64ULL << 20))
		return res;
	struct virtio_dev *d = make_dev(&v);
	if (!d) {
		vd_fini(&v);
		return res;
	}
	struct peer *p = calloc(1, sizeof(*p));
	p->s = netns_packet_socket(TAP, tso);
	p->ethertype = tso ? 0x0800 : NETNS_ETH_P_TEST;
	p->hdr = tso ? 10 : 0;
	pthread_t th;
	pthread_create(&th, NULL, peer_rx, p);

	static uint8_t f[NET_MAX_FRAME];
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t other[6] = { 0x02, 0, 0, 0, 0, 9 };
	make_frame(f, frame, tso ? other : bcast, tso);
	uint8_t h[VIRTIO_NET_HDR_BYTES] = { 0 };
	if (tso) {
		h[0] = 1, h[1] = 1;                    /* NEEDS_CSUM, TCPV4 */
		h[2] = 54, h[4] = MSS & 0xff, h[5] = MSS >> 8, h[6] = 34, h[8] = 16;
	}
	for (unsigned i = 0; i < QN; i++) {
		uint64_t g = vd_alloc(&v, sizeof(h) + frame, 64);
		vd_write(&v, g, h, sizeof(h));
		vd_write(&v, g + sizeof(h), f, frame);
		put_desc(&v, 1, (uint16_t)i, g, (uint32_t)(sizeof(h) + frame), 0);
		vd_publish(&v, 1, (uint16_t)i);
	}
	/* Warm up briefly, then count over the window. */
	vd_kick(&v, 1);
	uint64_t done = 0;
	bool ok = true;
	double t0 = now_s();
	while (ok && now_s() < t0 + 0.2)
		ok = reap(&v, d, 1, &done, NULL, 0);
	done = 0;
	atomic_store(&p->counting, true);
	double t1 = now_s();
	while (ok && now_s() < t1 + seconds)
		ok = reap(&v, d, 1, &done, NULL, 0);
	double el = now_s() - t1;
	atomic_store(&p->counting, false);
	uint64_t peer = atomic_load(&p->packets);
	atomic_store(&p->stop, true);
	pthread_join(th, NULL);
	struct net_info I;
	virtio_net_info(d, &I);
	if (I.tx_errors) {
		fprintf(stderr, "virtio-net-bench: %llu transmit errors\n", (unsigned long long)I.tx_errors);
		ok = false;
	}
	close(p->s);
	free(p);
	d->ops->destroy(d);
	vd_fini(&v);
	if (ok && el > 0) {
		res.ok = true;
		res.pps = (double)done / el;
		res.mbps = res.pps * (double)frame / 1e6;
		res.peer_pps = (double)peer / el;
	}
	return res;
}

static struct result run_rx(double seconds, size_t frame)
{
	struct result res = { 0 };
	struct vdriver v;
	if (vd_init(&v, 64ULL << 20))
		return res;
	struct virtio_dev *d = make_dev(&v);
	if (!d) {
		vd_fini(&v);
		return res;
	}
	for (unsigned i = 0; i < QN; i++) {
		uint64_t g = vd_alloc(&v, RX_BUF, 64);
		put_desc(&v, 0, (uint16_t)i, g, RX_BUF, VIRTQ_DESC_F_WRITE);
		vd_publish(&v, 0, (uint16_t)i);
	}
	vd_kick(&v, 0);
	struct peer *p = calloc(1, sizeof(*p));
	p->s = netns_packet_socket(TAP, false);
	make_frame(p->frame, frame, guest_mac, false);
	p->frame_len = frame;
	pthread_t th;
	pthread_create(&th, NULL, peer_tx, p);

	uint64_t got = 0, bytes = 0;
	bool ok = true;
	double t0 = now_s();
	while (ok && now_s() < t0 + 0.2)
		ok = reap(&v, d, 0, &got, &bytes, VIRTIO_NET_HDR_BYTES);
	got = bytes = 0;
	uint64_t sent0 = atomic_load(&p->packets);
	double t1 = now_s();
	while (ok && now_s() < t1 + seconds)
		ok = reap(&v, d, 0, &got, &bytes, VIRTIO_NET_HDR_BYTES);
	double el = now_s() - t1;
	uint64_t sent = atomic_load(&p->packets) - sent0;
	if (!ok) {
		struct net_info I;
		virtio_net_info(d, &I);
		fprintf(stderr, "virtio-net-bench: receive stalled: rx %llu packets, %llu dropped, "
			"%llu errors, %llu buffer waits; used pending %u; peer sent %llu\n",
			(unsigned long long)I.rx_packets, (unsigned long long)I.rx_dropped,
			(unsigned long long)I.rx_errors, (unsigned long long)I.rx_waits,
			vd_used_pending(&v, 0), (unsigned long long)atomic_load(&p->packets));
	}
	atomic_store(&p->stop, true);
	pthread_join(th, NULL);
	close(p->s);
	free(p);
	d->ops->destroy(d);
	vd_fini(&v);
	if (ok && el > 0) {
		res.ok = true;
		res.pps = (double)got / el;
		res.mbps = (double)bytes / el / 1e6;
		res.peer_pps = (double)sent / el;
	}
	return res;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
	double c[100];
	memcpy(c, v, n * sizeof(*v));
	qsort(c, n, sizeof(*c), cmp_double);
	return n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
}

static _Noreturn void usage(const char *msg)
{
	fprintf(stderr, "virtio-net-bench: %s\nusage: virtio-net-bench [--seconds 2] [--repeat 3]\n",
		msg);
	exit(2);
}

int main(int argc, char **argv)
{
	double seconds = 2;
	unsigned repeat = 3;
	static const struct option lopts[] = {
		{ "seconds", required_argument, NULL, 't' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		char *end;
		if (c == 't') {
			seconds = strtod(optarg, &end);
			if (*end || !(seconds > 0 && seconds <= 600))
				usage("--seconds: a duration in (0, 600]");
		} else if (c == 'r') {
			long r = strtol(optarg, &end, 10);
			if (*end || r < 1 || r > 100)
				usage("--repeat: 1..100");
			repeat = (unsigned)r;
		} else {
			usage("a device-level throughput benchmark of virtio-net on a tap");
		}
	}
	if (optind < argc)
		usage("unexpected argument");
	char why[200];
	if (netns_enter(why, sizeof(why)) < 0) {
		fprintf(stderr, "virtio-net-bench: cannot run: %s\n", why);
		return 77;
	}
	log_set_level(LOG_ERROR);

	struct utsname u;
	uname(&u);
	char when[64];
	time_t now = time(NULL);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&now));
	printf("# virtio-net-bench: the device path on the host (no guest), %s, %s %s, %ld CPUs\n",
	       when, u.sysname, u.release, sysconf(_SC_NPROCESSORS_ONLN));
	printf("# tap in a private network namespace, peer = AF_PACKET socket; queue %u, %.3g s per run,\n"
	       "# median of %u runs [range of packets/s]; MB/s = 10^6 frame bytes/s\n",
	       QN, seconds, repeat);
	printf("%-4s %-8s %12s %24s %10s %14s\n", "dir", "frame", "packets/s", "[min - max]", "MB/s",
	       "peer pkts/s");
	struct { const char *dir, *name; size_t frame; bool tx, tso; } cases[] = {
		{ "tx", "64", 64, true, false },
		{ "tx", "1500", 1514, true, false },
		{ "tx", "tso64k", 14 + 65535, true, true },
		{ "rx", "64", 64, false, false },
		{ "rx", "1500", 1514, false, false },
	};
	int rc = 0;
	for (unsigned k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		double pps[100], mbps[100], peer[100];
		bool ok = true;
		for (unsigned r = 0; r < repeat && ok; r++) {
			fprintf(stderr, "%s %s, run %u/%u\n", cases[k].dir, cases[k].name, r + 1, repeat);
			struct result res = cases[k].tx ? run_tx(seconds, cases[k].frame, cases[k].tso)
							: run_rx(seconds, cases[k].frame);
			ok = res.ok;
			pps[r] = res.pps, mbps[r] = res.mbps, peer[r] = res.peer_pps;
		}
		if (!ok) {
			printf("%-4s %-8s %12s\n", cases[k].dir, cases[k].name, "FAILED");
			rc = 1;
			continue;
		}
		double lo = pps[0], hi = pps[0];
		for (unsigned r = 1; r < repeat; r++) {
			lo = pps[r] < lo ? pps[r] : lo;
			hi = pps[r] > hi ? pps[r] : hi;
		}
		char range[64];
		snprintf(range, sizeof(range), "[%.0f - %.0f]", lo, hi);
		printf("%-4s %-8s %12.0f %24s %10.0f %14.0f\n", cases[k].dir, cases[k].name,
		       median(pps, repeat), range, median(mbps, repeat), median(peer, repeat));
		fflush(stdout);
	}
	return rc;
}
