// SPDX-License-Identifier: GPL-2.0-only
/*
 * test_virtio_net.c - virtio-net (virtio_net.c) driven by the test driver
 * (vdriver.h: the test plays the guest's driver) on a real tap inside a
 * network namespace each test creates for itself (criterion runs every test
 * in its own process: unshare(CLONE_NEWNET) there, no traffic leaves it).
 * The host side is an AF_PACKET socket on the tap.
 *
 * Frames guest -> tap and tap -> guest byte for byte, mergeable receive
 * buffers, checksum/TSO offloads both ways, waiting for receive buffers,
 * reset under traffic, bounded stop, a tap fd without vnet headers, the
 * hostile cases (short header, writable TX / readable RX descriptors,
 * oversized frames, nonsense GSO fields, broken rings), and an unmap of
 * the receive buffers' block during traffic.
 *
 * Needs root and /dev/net/tun: without them each test is skipped with the
 * reason.  Every wait is bounded; traffic loops are bounded in count.
 */
#include "netns.h"
#include "vdriver.h"
#include "virtio/virtio_devices.h"

#include <criterion/criterion.h>
#include <json-c/json.h>
#include <dirent.h>
#include <endian.h>
#include <linux/if_tun.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>

#define TAP "vnt0"
#define RAM (64ULL << 20)
#define QN 256

/* Feature bits (virtio 1.2, 5.1.3). */
#define F_CSUM        (1ULL << 0)
#define F_GUEST_CSUM  (1ULL << 1)
#define F_MTU         (1ULL << 3)
#define F_MAC         (1ULL << 5)
#define F_GUEST_TSO4  (1ULL << 7)
#define F_GUEST_TSO6  (1ULL << 8)
#define F_HOST_TSO4   (1ULL << 11)
#define F_HOST_TSO6   (1ULL << 12)
#define F_MRG_RXBUF   (1ULL << 15)
#define F_STATUS      (1ULL << 16)
#define F_ALL         (~0ULL)

struct vhdr {
	uint8_t flags, gso_type;
	uint16_t hdr_len, gso_size, csum_start, csum_offset, num_buffers;
} __attribute__((packed));

static struct vdriver v;
static struct virtio_dev *d;
static bool have_env;
static const uint8_t guest_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static uint64_t rxbuf_gpa[QN];   /* receive buffer of each head */
static uint32_t rxbuf_len[QN];

static void setup(void)
{
	char why[200];
	have_env = netns_enter(why, sizeof(why)) == 0;
	if (!have_env) {
		cr_log_warn("SKIPPED: virtio-net tests need a tap in a network namespace: %s", why);
		fprintf(stderr, "test_virtio_net: SKIPPED: %s\n", why);
	}
	cr_assert_eq(vd_init(&v, RAM), 0);
}

static void teardown(void)
{
	if (d)
		d->ops->destroy(d);
	d = NULL;
	vd_fini(&v);
}

TestSuite(virtio_net, .init = setup, .fini = teardown, .timeout = 60);

#define NEED_ENV()                                                                   \
	do {                                                                         \
		if (!have_env)                                                       \
			cr_skip_test("needs root and /dev/net/tun (see the log)");  \
	} while (0)

/* Make the device on tap TAP (10.9.0.1/24, up) and start it. */
static void make_dev(unsigned mtu)
{
	struct net_dev_config c = { .tap = TAP, .fd = -1, .mtu = mtu,
				    .ip = inet_addr("10.9.0.1"), .mask = inet_addr("255.255.255.0") };
	memcpy(c.mac, guest_mac, 6);
	char err[256];
	d = virtio_net_create(v.mem, &c, 0, err, sizeof(err));
	cr_assert_not_null(d, "%s", err);
	v.d = d;
	cr_assert_eq(d->ops->start(d), 0);
}

/* The driver's set-up with these features (DRIVER_OK checked). */
static void drive(uint64_t features)
{
	int st = vd_setup(&v, d, features, 2, QN);
	cr_assert(st > 0 && (st & VIRTIO_STATUS_DRIVER_OK), "setup: status %#x", st);
}

static struct net_info info(void)
{
	struct net_info i;
	virtio_net_info(d, &i);
	return i;
}

/* Wait (bounded) until cond(info) holds. */
#define WAIT_INFO(expr)                                                              \
	({                                                                           \
		bool ok_ = false;                                                    \
		for (int i_ = 0; i_ < 500 && !ok_; i_++) {                           \
			struct net_info I = info();                                  \
			ok_ = (expr);                                                \
			if (!ok_)                                                    \
				usleep(10000);                                       \
		}                                                                    \
		ok_;                                                                 \
	})

/* Post n receive buffers of len bytes (one descriptor each) and kick. */
static void post_rx(unsigned n, uint32_t len)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t gpa = vd_alloc(&v, len, 64);
		struct vd_buf b = { gpa, len, true };
		int head = vd_add(&v, 0, &b, 1, false);
		rxbuf_gpa[head] = gpa;
		rxbuf_len[head] = len;
	}
	vd_kick(&v, 0);
}

/* A test frame: broadcast, from a fixed source, our ethertype, payload a
 * pattern seeded by seed. */
static size_t test_frame(uint8_t *f, size_t len, unsigned seed, const uint8_t *dst)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	memcpy(f, dst ? dst : bcast, 6);
	memcpy(f + 6, guest_mac, 6);
	f[12] = NETNS_ETH_P_TEST >> 8;
	f[13] = NETNS_ETH_P_TEST & 0xff;
	for (size_t i = 14; i < len; i++)
		f[i] = (uint8_t)(i * 7 + seed * 13 + (i >> 8));
	return len;
}

/* Guest -> tap: one chain [header][frame] split into nseg pieces, kicked;
 * waits for it to be used.  Returns the used length. */
static void send_chain(const struct vhdr *h, const uint8_t *frame, size_t len, unsigned nseg,
		       bool indirect)
{
	uint64_t gpa = vd_alloc(&v, sizeof(*h) + len, 64);
	vd_write(&v, gpa, h, sizeof(*h));
	vd_write(&v, gpa + sizeof(*h), frame, len);
	struct vd_buf b[8];
	size_t total = sizeof(*h) + len, off = 0;
	cr_assert(nseg >= 1 && nseg <= 8);
	for (unsigned i = 0; i < nseg; i++) {
		size_t n = i + 1 == nseg ? total - off : total / nseg;
		b[i] = (struct vd_buf){ gpa + off, (uint32_t)n, false };
		off += n;
	}
	vd_add(&v, 1, b, nseg, indirect);
	vd_kick(&v, 1);
	uint32_t ulen = 99;
	cr_assert_geq(vd_wait_used(&v, 1, 5000, &ulen), 0, "transmit chain not used");
	cr_assert_eq(ulen, 0, "a transmit chain's used length is 0");
}

/* Take one received packet (possibly several buffers) into out; returns
 * its length without the header, fills *h. */
static size_t recv_guest(struct vhdr *h, uint8_t *out, size_t cap, int timeout_ms)
{
	uint32_t len;
	int head = vd_wait_used(&v, 0, timeout_ms, &len);
	cr_assert_geq(head, 0, "no packet reached the guest");
	cr_assert_geq(len, sizeof(*h));
	cr_assert_leq(len, rxbuf_len[head]);
	vd_read(&v, rxbuf_gpa[head], h, sizeof(*h));
	unsigned nb = le16toh(h->num_buffers);
	size_t got = len - sizeof(*h);
	cr_assert_leq(got, cap);
	vd_read(&v, rxbuf_gpa[head] + sizeof(*h), out, got);
	for (unsigned i = 1; i < nb; i++) {
		head = vd_wait_used(&v, 0, 100, &len);
		cr_assert_geq(head, 0, "buffer %u of %u missing", i, nb);
		cr_assert_leq(got + len, cap);
		vd_read(&v, rxbuf_gpa[head], out + got, len);
		got += len;
	}
	return got;
}

/* ---- identity ---------------------------------------------------------- */

Test(virtio_net, identity_and_config)
{
	NEED_ENV();
	make_dev(9000);
	cr_assert_eq(vd_reg_read(&v, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_NET);
	vd_reg_write(&v, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t f = vd_reg_read(&v, VIRTIO_MMIO_DEVICE_FEATURES);
	uint64_t want = F_CSUM | F_GUEST_CSUM | F_MTU | F_MAC | F_GUEST_TSO4 | F_GUEST_TSO6 |
			F_HOST_TSO4 | F_HOST_TSO6 | F_MRG_RXBUF | F_STATUS;
	cr_assert_eq(f & want, want, "offered %#x", f);
	for (int i = 0; i < 6; i++)
		cr_assert_eq(vd_config_read(&v, (uint32_t)i, 1), guest_mac[i]);
	cr_assert_eq(vd_config_read(&v, 6, 2), 1, "link up");
	cr_assert_eq(vd_config_read(&v, 8, 2), 1, "one queue pair");
	cr_assert_eq(vd_config_read(&v, 10, 2), 9000, "mtu");
	struct ifreq ifr = { 0 };
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), TAP);
	cr_assert_eq(ioctl(s, SIOCGIFMTU, &ifr), 0);
	cr_assert_eq(ifr.ifr_mtu, 9000, "the tap's MTU follows mtu=");
	cr_assert_eq(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	cr_assert(ifr.ifr_flags & IFF_UP, "ip= brings the tap up");
	close(s);
	vd_reg_write(&v, VIRTIO_MMIO_QUEUE_SEL, 1);
	cr_assert_eq(vd_reg_read(&v, VIRTIO_MMIO_QUEUE_NUM_MAX), VIRTQ_MAX_SIZE);
	vd_reg_write(&v, VIRTIO_MMIO_QUEUE_SEL, 2);
	cr_assert_eq(vd_reg_read(&v, VIRTIO_MMIO_QUEUE_NUM_MAX), 0, "no control queue");
}

Test(virtio_net, create_refuses_bad_fds)
{
	NEED_ENV();
	char err[256];
	struct net_dev_config c = { .fd = STDIN_FILENO };
	cr_assert_null(virtio_net_create(v.mem, &c, 0, err, sizeof(err)));
	cr_assert(strstr(err, "is not a tap"), "%s", err);
	/* A tun (layer 3) is not a tap. */
	int t = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	struct ifreq ifr = { .ifr_flags = IFF_TUN | IFF_NO_PI };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "tun9");
	cr_assert_eq(ioctl(t, TUNSETIFF, &ifr), 0);
	c.fd = t;
	cr_assert_null(virtio_net_create(v.mem, &c, 0, err, sizeof(err)));
	cr_assert(strstr(err, "not a tap"), "%s", err);
	close(t);
	c = (struct net_dev_config){ .fd = -1, .tap = "a-name-far-too-long-for-linux" };
	cr_assert_null(virtio_net_create(v.mem, &c, 0, err, sizeof(err)));
	cr_assert(strstr(err, "longer than"), "%s", err);
}

/* ---- traffic ------------------------------------------------------------ */

Test(virtio_net, guest_to_tap_byte_for_byte)
{
	NEED_ENV();
	make_dev(0);
	drive(F_ALL);
	int s = netns_packet_socket(TAP, false);
	cr_assert_geq(s, 0);
	static uint8_t f[2000], got[4000];
	const size_t sizes[] = { 60, 61, 600, 1514 };
	for (unsigned k = 0; k < 4 * 3; k++) {
		size_t len = test_frame(f, sizes[k % 4], k, NULL);
		struct vhdr h = { 0 };
		send_chain(&h, f, len, 1 + k % 3, k % 2);
		ssize_t n = netns_recv(s, got, sizeof(got), NETNS_ETH_P_TEST, 0, 3000);
		cr_assert_eq(n, (ssize_t)len, "frame %u: %zd bytes on the tap, sent %zu", k, n, len);
		cr_assert_eq(memcmp(got, f, len), 0, "frame %u differs", k);
	}
	struct net_info I = info();
	cr_assert_eq(I.tx_packets, 12);
	cr_assert_eq(I.tx_errors + I.tx_dropped, 0);
	close(s);
}

Test(virtio_net, tap_to_guest_byte_for_byte)
{
	NEED_ENV();
	make_dev(0);
	drive(F_ALL);
	int s = netns_packet_socket(TAP, false);
	cr_assert_geq(s, 0);
	post_rx(32, 2048);
	static uint8_t f[2000], got[4000];
	for (unsigned k = 0; k < 16; k++) {
		size_t len = test_frame(f, 60 + k * 90, k, guest_mac);
		cr_assert_eq(send(s, f, len, 0), (ssize_t)len);
		struct vhdr h;
		size_t n = recv_guest(&h, got, sizeof(got), 3000);
		cr_assert_eq(n, len, "frame %u: %zu bytes in the guest, sent %zu", k, n, len);
		cr_assert_eq(memcmp(got, f, len), 0, "frame %u differs", k);
		cr_assert_eq(le16toh(h.num_buffers), 1);
		cr_assert_eq(h.gso_type, 0);
		cr_assert_eq(h.flags & ~2, 0, "flags %#x (at most DATA_VALID)", h.flags);
		cr_assert_eq(h.gso_size | h.hdr_len | h.csum_start | h.csum_offset, 0);
	}
	cr_assert_eq(info().rx_packets, 16);
	char cnt[1024];
	d->ops->counters(d, cnt, sizeof(cnt));
	cr_assert(strstr(cnt, "rx_packets 16\n") && strstr(cnt, "rx_errors 0\n"), "%s", cnt);
	close(s);
}

Test(virtio_net, mergeable_rx_spreads_over_buffers)
{
	NEED_ENV();
	make_dev(9000);
	drive(F_ALL);
	int s = netns_packet_socket(TAP, false);
	cr_assert_geq(s, 0);
	post_rx(20, 1000);
	static uint8_t f[9100], got[20000];
	size_t len = test_frame(f, 9014, 3, guest_mac);
	cr_assert_eq(send(s, f, len, 0), (ssize_t)len, "send: %s", strerror(errno));
	struct vhdr h;
	size_t n = recv_guest(&h, got, sizeof(got), 3000);
	cr_assert_eq(n, len);
	cr_assert_eq(memcmp(got, f, len), 0);
	cr_assert_eq(le16toh(h.num_buffers), (len + 12 + 999) / 1000, "num_buffers %u",
		     le16toh(h.num_buffers));
	close(s);
}

/* Without MRG_RXBUF a packet must fit one chain: a frame bigger than the
 * buffer is dropped (counted) and the buffer stays the guest's. */
Test(virtio_net, no_mergeable_drops_what_does_not_fit)
{
	NEED_ENV();
	make_dev(9000);
	drive(F_ALL & ~F_MRG_RXBUF);
	int s = netns_packet_socket(TAP, false);
	cr_assert_geq(s, 0);
	post_rx(1, 2048);
	static uint8_t f[9100], got[9100];
	size_t big = test_frame(f, 4000, 1, guest_mac);
	cr_assert_eq(send(s, f, big, 0), (ssize_t)big);
	cr_assert(WAIT_INFO(I.rx_dropped == 1), "the oversized frame is counted as dropped");
	size_t len = test_frame(f, 1000, 2, guest_mac);
	cr_assert_eq(send(s, f, len, 0), (ssize_t)len);
	struct vhdr h;
	cr_assert_eq(recv_guest(&h, got, sizeof(got), 3000), len);
	cr_assert_eq(memcmp(got, f, len), 0);
	close(s);
}

/* The guest posts no buffer: packets wait (not dropped) until it does. */
Test(virtio_net, rx_waits_for_buffers)
{
	NEED_ENV();
	make_dev(0);
	drive(F_ALL);
	int s = netns_packet_socket(TAP, false);
	cr_assert_geq(s, 0);
	static uint8_t f[4][200], got[2000];
	for (unsigned k = 0; k < 4; k++) {
		test_frame(f[k], 100 + k, k, guest_mac);
		cr_assert_eq(send(s, f[k], 100 + k, 0), (ssize_t)(100 + k));
	}
	usleep(100000);
	cr_assert_eq(vd_used_pending(&v, 0), 0);
	cr_assert_eq(info().rx_dropped, 0);
	post_rx(8, 2048);
	for (unsigned k = 0; k < 4; k++) {
		struct vhdr h;
		cr_assert_eq(recv_guest(&h, got, sizeof(got), 3000), 100 + k);
		cr_assert_eq(memcmp(got, f[k], 100 + k), 0, "packet %u", k);
	}
	struct net_info I = info();
	cr_assert_geq(I.rx_waits, 1);
	cr_assert_eq(I.rx_dropped, 0);
	close(s);
}

/* CPU time (clock ticks) the thread named comm has used so far; -1 if
 * there is no such thread. */
static long thread_ticks(const char *comm)
{
	DIR *dir = opendir("/proc/self/task");
	cr_assert_not_null(dir);
	long ticks = -1;
	for (struct dirent *e; (e = readdir(dir)) && ticks < 0;) {
		char path[300], buf[512];
		snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = 0;
		char *l = strchr(buf, '('), *r = strrchr(buf, ')');
		if (!l || !r || (size_t)(r - l - 1) != strlen(comm) || strncmp(l + 1, comm, strlen(comm)))
			continue;
		unsigned long ut, st;
		/* After ")": state, then fields 4..13, utime (14), stime (15). */
		if (sscanf(r + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
			ticks = (long)(ut + st);
	}
	closedir(dir);
	return ticks;
}

/* A packet waits for receive buffers, the transmit ring breaks (NEEDS_RESET),
 * and the driver kicks the receive queue: the device has nowhere to put the
 * packet and must wait, not spin on it. */
Test(virtio_net, no_spin_on_a_failed_device)
{
	NEED_ENV();
	make_dev(0);
	drive(F_ALL);
	int s = netns_packet_socket(TAP, false);
	static uint8_t f[200];
	size_t len = test_frame(f, 100, 1, guest_mac);
	cr_assert_eq(send(s, f, len, 0), (ssize_t)len);
	cr_assert(WAIT_INFO(I.rx_waits >= 1), "the packet waits for buffers");
	vd_publish(&v, 1, 300);
	vd_kick(&v, 1);
	cr_assert(vd_wait_status(&v, VIRTIO_STATUS_NEEDS_RESET, 3000));
	vd_kick(&v, 0);
	usleep(50000);
	long t0 = thread_ticks("_net0");
	cr_assert_geq(t0, 0, "no thread _net0");
	usleep(500000);
	long used = thread_ticks("_net0") - t0;
	cr_assert_leq(used, 3, "the device thread used %ld ticks of 500 ms: it spins", used);

	/* A live device whose receive queue the driver took away (QueueReady
	 * 0), with packets arriving on the tap: no spin either. */
	drive(F_ALL);
	vd_reg_write(&v, VIRTIO_MMIO_QUEUE_SEL, 0);
	vd_reg_write(&v, VIRTIO_MMIO_QUEUE_READY, 0);
	for (int i = 0; i < 20; i++)
		cr_assert_eq(send(s, f, len, 0), (ssize_t)len);
	vd_kick(&v, 0);
	usleep(50000);
	t0 = thread_ticks("_net0");
	usleep(500000);
	used = thread_ticks("_net0") - t0;
	cr_assert_leq(used, 3, "no receive queue: the device thread used %ld ticks of 500 ms", used);
	close(s);
}

/* ---- offloads ------------------------------------------------------------ */

static uint16_t csum16(const void *p, size_t len, uint32_t sum)
{
	const uint8_t *b = p;
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(b[i] << 8 | b[i + 1]);
	if (len & 1)
		sum += (uint32_t)b[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

/* An Ethernet + IPv4 + TCP frame of total bytes, 10.9.0.2 -> 10.9.0.3
 * (not this host: the kernel drops it after the packet socket saw it),
 * IP checksum right, the TCP checksum field holding the pseudo-header sum
 * (what NEEDS_CSUM expects). */
static size_t tcp_frame(uint8_t *f, size_t total, const uint8_t *dst)
{
	memset(f, 0, 54);
	memcpy(f, dst, 6);
	memcpy(f + 6, guest_mac, 6);
	f[12] = 0x08;
	uint8_t *ip = f + 14, *tcp = f + 34;
	size_t iplen = total - 14;
	ip[0] = 0x45;
	ip[2] = (uint8_t)(iplen >> 8), ip[3] = (uint8_t)iplen;
	ip[8] = 64, ip[9] = 6;
	uint8_t src[4] = { 10, 9, 0, 2 }, dip[4] = { 10, 9, 0, 3 };
	memcpy(ip + 12, src, 4);
	memcpy(ip + 16, dip, 4);
	uint16_t c = (uint16_t)~csum16(ip, 20, 0);
	ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
	tcp[0] = 0x30, tcp[1] = 0x39, tcp[2] = 0x00, tcp[3] = 0x50;
	tcp[12] = 0x50, tcp[13] = 0x10;
	tcp[14] = 0xff, tcp[15] = 0xff;
	for (size_t i = 54; i < total; i++)
		f[i] = (uint8_t)(i * 31 + 5);
	uint32_t ps = (10u << 8 | 9) + (0u << 8 | 2) + (10u << 8 | 9) + (0u << 8 | 3) + 6 +
		      (uint32_t)(iplen - 20);
	uint16_t p = csum16("", 0, ps);
	tcp[16] = (uint8_t)(p >> 8), tcp[17] = (uint8_t)p;
	return total;
}

static const uint8_t tap_side_mac[6] = { 0x02, 0, 0, 0, 0, 0x01 };

/* 64 KiB TSO from the guest: the tap takes it as ONE GSO packet (the packet
 * socket, with vnet headers, sees gso_type TCPV4 and the whole length). */
Test(virtio_net, tso_guest_to_tap)
{
	NEED_ENV();
	make_dev(0);
	drive(F_ALL);
	int s = netns_packet_socket(TAP, true);
	cr_assert_geq(s, 0);
	static uint8_t f[NET_MAX_FRAME], got[NET_MAX_FRAME + 100];
	size_t len = tcp_frame(f, 14 + 65535, tap_side_mac);
	struct vhdr h = { .flags = 1, .gso_type = 1, .hdr_len = htole16(54),
			  .gso_size = htole16(1448), .csum_start = htole16(34),
			  .csum_offset = htole16(16) };
	send_chain(&h, f, len, 4, true);
	ssize_t n = netns_recv(s, got, sizeof(got), 0x0800, 10, 3000);
	cr_assert_eq(info().tx_errors, 0, "the TSO frame was refused");
	cr_assert_eq(n, (ssize_t)(10 + len), "one GSO packet of %zu bytes expected, got %zd",
		     len, n);
	cr_assert_eq(got[1] & 0x7f, 1, "gso_type TCPV4 on the host side, got %u", got[1]);
	cr_assert_eq(got[4] | got[5] << 8, 1448, "gso_size");
	cr_assert_eq(memcmp(got + 10 + 54, f + 54, len - 54), 0, "payload");
	cr_assert_eq(info().tx_bytes, len);
	close(s);
}

/* GSO from the host's side: with GUEST_TSO4 the guest gets one big
 * packet (TUNSETOFFLOAD let it through); without, the kernel segments it
 * before the tap and the guest gets MSS-sized frames. */
static void gso_to_guest(bool guest_tso)
{
	make_dev(0);
	drive(guest_tso ? F_ALL : F_ALL & ~(F_GUEST_TSO4 | F_GUEST_TSO6 | F_GUEST_CSUM));
	int s = netns_packet_socket(TAP, true);
	cr_assert_geq(s, 0);
	post_rx(200, 1536);
	static uint8_t pkt[10 + 30054], got[70000];
	size_t len = tcp_frame(pkt + 10, 30054, guest_mac);
	struct vhdr h = { .flags = 1, .gso_type = 1, .hdr_len = htole16(54),
			  .gso_size = htole16(1000), .csum_start = htole16(34),
			  .csum_offset = htole16(16) };
	memcpy(pkt, &h, 10);
	cr_assert_eq(send(s, pkt, 10 + len, 0), (ssize_t)(10 + len), "send: %s", strerror(errno));
	struct vhdr rh;
	size_t n = recv_guest(&rh, got, sizeof(got), 3000);
	if (guest_tso) {
		cr_assert_eq(n, len, "one packet of %zu expected, got %zu", len, n);
		cr_assert_eq(rh.gso_type & 0x7f, 1, "gso TCPV4 to the guest");
		cr_assert_eq(memcmp(got + 54, pkt + 10 + 54, len - 54), 0);
	} else {
		size_t payload = n - 54, segs = 1;
		cr_assert_eq(n, 54 + 1000, "segments of MSS 1000, got %zu", n);
		cr_assert_eq(rh.gso_type, 0);
		cr_assert_eq(rh.flags & 1, 0, "no partial checksum without GUEST_CSUM");
		while (payload < 30000) {
			n = recv_guest(&rh, got, sizeof(got), 3000);
			payload += n - 54;
			segs++;
		}
		cr_assert_eq(payload, 30000);
		cr_assert_eq(segs, 30);
	}
	close(s);
}

Test(virtio_net, gso_to_guest_with_tso)
{
	NEED_ENV();
	gso_to_guest(true);
}

Test(virtio_net, gso_to_guest_segmented_without_tso)
{
	NEED_ENV();
	gso_to_guest(false);
}

/* ---- hostile ------------------------------------------------------------- */

static void expect_tx_error(const char *what, uint64_t before)
{
	cr_assert(WAIT_INFO(I.tx_errors == before + 1), "%s: not counted (tx_errors %lu)", what,
		  (unsigned long)info().tx_errors);
	cr_assert_eq(vd_reg_read(&v, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0,
		     "%s: the device goes on", what);
}

Test(virtio_net, hostile_transmit)
{
	NEED_ENV();
	make_dev(0);
	drive(F_ALL & ~(F_HOST_TSO6));
	int s = netns_packet_socket(TAP, false);
	cr_assert_geq(s, 0);
	static uint8_t f[NET_MAX_FRAME + 100];
	uint32_t ulen;

	/* A header shorter than 12 bytes. */
	uint64_t g = vd_alloc(&v, 4096, 64);
	struct vd_buf b = { g, 8, false };
	vd_add(&v, 1, &b, 1, false);
	vd_kick(&v, 1);
	cr_assert_geq(vd_wait_used(&v, 1, 3000, &ulen), 0);
	expect_tx_error("short header", 0);

	/* Writable descriptors in a transmit chain. */
	struct vd_buf bw[2] = { { g, 100, false }, { g + 100, 100, true } };
	vd_add(&v, 1, bw, 2, false);
	vd_kick(&v, 1);
	cr_assert_geq(vd_wait_used(&v, 1, 3000, &ulen), 0);
	expect_tx_error("writable transmit descriptor", 1);

	/* A frame above 65550 bytes. */
	uint64_t big = vd_alloc(&v, 12 + NET_MAX_FRAME + 1, 64);
	struct vd_buf bb = { big, 12 + NET_MAX_FRAME + 1, false };
	vd_add(&v, 1, &bb, 1, false);
	vd_kick(&v, 1);
	cr_assert_geq(vd_wait_used(&v, 1, 3000, &ulen), 0);
	expect_tx_error("oversized frame", 2);

	/* GSO the driver did not negotiate (TSO6), an unknown GSO type, a
	 * GSO size of 0: refused by the device. */
	size_t len = tcp_frame(f, 3000, tap_side_mac);
	struct vhdr h6 = { .flags = 1, .gso_type = 4, .hdr_len = 54, .gso_size = 1000,
			   .csum_start = 34, .csum_offset = 16 };
	send_chain(&h6, f, len, 1, false);
	expect_tx_error("TSO6 not negotiated", 3);
	struct vhdr hx = { .gso_type = 9, .gso_size = 1000 };
	send_chain(&hx, f, len, 1, false);
	expect_tx_error("unknown GSO type", 4);
	struct vhdr h0 = { .flags = 1, .gso_type = 1, .hdr_len = 54, .csum_start = 34,
			   .csum_offset = 16 };
	send_chain(&h0, f, len, 1, false);
	expect_tx_error("GSO size 0", 5);
	/* Nonsense the device passes on and the tap refuses (EINVAL): a
	 * checksum start beyond the frame. */
	struct vhdr hc = { .flags = 1, .csum_start = htole16(60000), .csum_offset = 16 };
	send_chain(&hc, f, len, 1, false);
	expect_tx_error("checksum start beyond the frame", 6);

	/* A transmit buffer outside RAM. */
	struct vd_buf bo[2] = { { g, 12, false }, { RAM + 4096, 100, false } };
	vd_write(&v, g, &(struct vhdr){ 0 }, 12);
	vd_add(&v, 1, bo, 2, false);
	vd_kick(&v, 1);
	cr_assert_geq(vd_wait_used(&v, 1, 3000, &ulen), 0);
	expect_tx_error("buffer outside RAM", 7);

	/* After all that a good frame still goes through. */
	len = test_frame(f, 200, 9, NULL);
	struct vhdr h = { 0 };
	send_chain(&h, f, len, 2, false);
	static uint8_t got[4000];
	cr_assert_eq(netns_recv(s, got, sizeof(got), NETNS_ETH_P_TEST, 0, 3000), (ssize_t)len);
	cr_assert_eq(memcmp(got, f, len), 0);
	close(s);
}

Test(virtio_net, hostile_receive_readable_descriptor)
{
	NEED_ENV();
	make_dev(0);
	drive(F_ALL);
	int s = netns_packet_socket(TAP, false);
	cr_assert_geq(s, 0);
	uint64_t g = vd_alloc(&v, 4096, 64);
	/* A readable descriptor before a writable one: not a receive buffer. */
	struct vd_buf b[2] = { { g, 100, false }, { g + 100, 2048, true } };
	vd_add(&v, 0, b, 2, false);
	vd_kick(&v, 0);
	static uint8_t f[200];
	size_t len = test_frame(f, 100, 1, guest_mac);
	cr_assert_eq(send(s, f, len, 0), (ssize_t)len);
	cr_assert(vd_wait_status(&v, VIRTIO_STATUS_NEEDS_RESET, 3000),
		  "a readable receive buffer puts the device into NEEDS_RESET");
	/* The driver resets and sets up again: traffic flows. */
	drive(F_ALL);
	post_rx(4, 2048);
	cr_assert_eq(send(s, f, len, 0), (ssize_t)len);
	static uint8_t got[2000];
	struct vhdr h;
	cr_assert_eq(recv_guest(&h, got, sizeof(got), 3000), len);
	close(s);
}

Test(virtio_net, hostile_broken_ring)
{
	NEED_ENV();
	make_dev(0);
	drive(F_ALL);
	vd_publish(&v, 1, 300);   /* head >= queue size */
	vd_kick(&v, 1);
	cr_assert(vd_wait_status(&v, VIRTIO_STATUS_NEEDS_RESET, 3000));
	drive(F_ALL);
	vd_set_avail_idx(&v, 0, 1000);   /* avail idx far ahead */
	vd_kick(&v, 0);
	int s = netns_packet_socket(TAP, false);
	static uint8_t f[200];
	size_t len = test_frame(f, 100, 1, guest_mac);
	cr_assert_eq(send(s, f, len, 0), (ssize_t)len);
	cr_assert(vd_wait_status(&v, VIRTIO_STATUS_NEEDS_RESET, 3000));
	close(s);
}

/* A tap fd without IFF_VNET_HDR: no offloads offered, the header is the
 * device's business (stripped on transmit, written on receive). */
Test(virtio_net, tap_fd_without_vnet_header)
{
	NEED_ENV();
	int t = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), TAP);
	cr_assert_eq(ioctl(t, TUNSETIFF, &ifr), 0);
	struct net_dev_config c = { .fd = t, .ip = inet_addr("10.9.0.1") };
	memcpy(c.mac, guest_mac, 6);
	char err[256];
	d = virtio_net_create(v.mem, &c, 1, err, sizeof(err));
	cr_assert_not_null(d, "%s", err);
	close(t);   /* the device has its own dup */
	cr_assert_eq(d->ops->start(d), 0);
	drive(F_ALL);
	struct net_info I = info();
	cr_assert_not(I.vnet_hdr);
	cr_assert_eq(I.offered & (F_CSUM | F_HOST_TSO4 | F_GUEST_CSUM), 0, "no offloads");
	int s = netns_packet_socket(TAP, false);
	cr_assert_geq(s, 0);
	static uint8_t f[2000], got[4000];
	size_t len = test_frame(f, 500, 4, NULL);
	struct vhdr h = { 0 };
	send_chain(&h, f, len, 2, false);
	cr_assert_eq(netns_recv(s, got, sizeof(got), NETNS_ETH_P_TEST, 0, 3000), (ssize_t)len);
	cr_assert_eq(memcmp(got, f, len), 0);
	post_rx(4, 2048);
	len = test_frame(f, 700, 5, guest_mac);
	cr_assert_eq(send(s, f, len, 0), (ssize_t)len);
	struct vhdr rh;
	cr_assert_eq(recv_guest(&rh, got, sizeof(got), 3000), len);
	cr_assert_eq(memcmp(got, f, len), 0);
	cr_assert_eq(rh.flags | rh.gso_type, 0);
	close(s);
}

/* ---- reset, stop, unmap under traffic ----------------------------------- */

struct pump {
	int s;
	_Atomic bool stop;
	_Atomic unsigned sent;
};

static void *pump_thread(void *arg)
{
	struct pump *p = arg;
	uint8_t f[1000];
	test_frame(f, sizeof(f), 7, guest_mac);
	/* Bounded: until told, at most 30 s or 10^7 frames (the test's
	 * own timeout is 60 s). */
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0; i < 10000000 && !atomic_load(&p->stop); i++) {
		if ((i & 1023) == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if (t.tv_sec - t0.tv_sec > 30)
				break;
		}
		if (send(p->s, f, sizeof(f), 0) == (ssize_t)sizeof(f))
			atomic_fetch_add(&p->sent, 1);
		else
			usleep(100);
	}
	return NULL;
}

Test(virtio_net, reset_mid_traffic)
{
	NEED_ENV();
	make_dev(0);
	int s = netns_packet_socket(TAP, false);
	cr_assert_geq(s, 0);
	struct pump p = { .s = s };
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, pump_thread, &p), 0);
	for (unsigned round = 0; round < 20; round++) {
		drive(F_ALL);
		post_rx(64, 2048);
		uint32_t len;
		int head = vd_wait_used(&v, 0, 3000, &len);
		cr_assert_geq(head, 0, "round %u: nothing received", round);
		usleep(2000);
		vd_reg_write(&v, VIRTIO_MMIO_STATUS, 0);   /* reset with buffers in use */
	}
	atomic_store(&p.stop, true);
	pthread_join(th, NULL);
	cr_assert_eq(vd_reg_read(&v, VIRTIO_MMIO_STATUS), 0);
	struct net_info I = info();
	cr_assert_geq(I.rx_packets, 20);
	cr_assert_eq(I.rx_errors, 0);
	/* The device is still sound: a final set-up receives intact frames. */
	drive(F_ALL);
	post_rx(8, 2048);
	static uint8_t got[2000];
	struct vhdr h;
	uint8_t f[1000];
	test_frame(f, sizeof(f), 7, guest_mac);
	cr_assert_eq(send(s, f, sizeof(f), 0), (ssize_t)sizeof(f));
	cr_assert_eq(recv_guest(&h, got, sizeof(got), 3000), sizeof(f));
	cr_assert_eq(memcmp(got, f, sizeof(f)), 0);
	close(s);
}

/* Stop while the guest posts no receive buffer and the tap keeps getting
 * packets, and with a full transmit ring of 64 KiB frames: bounded. */
Test(virtio_net, stop_bounded)
{
	NEED_ENV();
	make_dev(0);
	drive(F_ALL);
	int s = netns_packet_socket(TAP, false);
	struct pump p = { .s = s };
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, pump_thread, &p), 0);
	uint64_t g = vd_alloc(&v, 12 + 65000, 64);
	vd_write(&v, g, &(struct vhdr){ 0 }, 12);
	static uint8_t f[65000];
	test_frame(f, sizeof(f), 1, NULL);
	vd_write(&v, g + 12, f, sizeof(f));
	for (unsigned i = 0; i < QN; i++) {
		struct vd_buf b = { g, 12 + 65000, false };
		vd_add(&v, 1, &b, 1, false);
	}
	vd_kick(&v, 1);
	usleep(20000);
	double ms = vd_stop_within(d, 1000);
	atomic_store(&p.stop, true);
	pthread_join(th, NULL);
	cr_assert_geq(ms, 0, "stop did not return within 1 s");
	cr_log_info("stop under traffic: %.1f ms", ms);
	cr_assert_lt(ms, 1000);
	/* Idle: a second device, nothing queued. */
	d->ops->destroy(d);
	d = NULL;
	make_dev(0);
	drive(F_ALL);
	ms = vd_stop_within(d, 1000);
	cr_assert_geq(ms, 0, "idle stop did not return within 1 s");
	close(s);
}

/* An unmap of the block holding the receive buffers while packets flow
 * (what a balloon inflate or a virtio-mem unplug does): the device never
 * writes through a stale pointer (ASan would see it), drops the packets
 * whose buffers are gone (rx_errors), and goes on once the block is back. */
Test(virtio_net, unmap_rx_buffers_under_traffic)
{
	NEED_ENV();
	make_dev(0);
	drive(F_ALL);
	int s = netns_packet_socket(TAP, false);
	struct pump p = { .s = s };
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, pump_thread, &p), 0);
	/* Buffers in their own 2 MiB block. */
	uint64_t block = (vd_alloc(&v, 4 << 20, 2 << 20) + (2 << 20) - 1) & ~((2ULL << 20) - 1);
	unsigned rounds = 0, unmapped = 0;
	for (; rounds < 40; rounds++) {
		/* Odd rounds: the block is gone before the buffers are posted
		 * (every packet meets a hole); even rounds: it goes while the
		 * device fills them. */
		bool before = rounds & 1;
		if (before && gmm_unmap(v.mem, block, 2ULL << 20, 0) == 0)
			unmapped++;
		for (unsigned i = 0; i < 64; i++) {
			struct vd_buf b = { block + i * 2048ULL, 2048, true };
			int head = vd_add(&v, 0, &b, 1, false);
			rxbuf_gpa[head] = b.gpa;
			rxbuf_len[head] = 2048;
		}
		vd_kick(&v, 0);
		usleep(before ? 5000 : 300);
		if (!before && gmm_unmap(v.mem, block, 2ULL << 20, 0) == 0)
			unmapped++;
		usleep(2000);
		cr_assert_eq(gmm_map(v.mem, block, 2ULL << 20), 0);
		/* Consume what was used, in whatever state. */
		uint32_t len;
		for (int k = 0; k < 64 && vd_wait_used(&v, 0, 300, &len) >= 0; k++)
			;
		while (vd_used_pending(&v, 0))
			vd_wait_used(&v, 0, 0, &len);
		/* Give the device a fresh ring each round (buffers it still
		 * holds are abandoned with the old one). */
		drive(F_ALL);
	}
	atomic_store(&p.stop, true);
	pthread_join(th, NULL);
	struct net_info I = info();
	cr_log_info("unmap under traffic: %u unmaps, rx %lu packets, %lu errors", unmapped,
		    (unsigned long)I.rx_packets, (unsigned long)I.rx_errors);
	cr_assert_eq(unmapped, 40);
	cr_assert_gt(I.rx_packets, 0);
	cr_assert_gt(I.rx_errors, 0, "packets into the unmapped block are counted");
	cr_assert_eq(vd_reg_read(&v, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
	close(s);
}

/* The same for transmit: the block holding the frames is unmapped before
 * they are posted (each one fails its translation: counted) or while the
 * device sends them (the unmap waits for the walk around the writev). */
Test(virtio_net, unmap_tx_buffers_under_traffic)
{
	NEED_ENV();
	make_dev(0);
	drive(F_ALL);
	uint64_t block = (vd_alloc(&v, 4 << 20, 2 << 20) + (2 << 20) - 1) & ~((2ULL << 20) - 1);
	static uint8_t f[1500];
	test_frame(f, sizeof(f), 3, NULL);
	unsigned unmapped = 0;
	/* Headers outside the block (read first, on their own), frames in it
	 * (translated inside the walk around the writev). */
	uint64_t hdrs = vd_alloc(&v, 64 * 16, 16);
	for (unsigned i = 0; i < 64; i++)
		vd_write(&v, hdrs + 16 * i, &(struct vhdr){ 0 }, 12);
	for (unsigned round = 0; round < 40; round++) {
		bool before = round & 1;
		for (unsigned i = 0; i < 64; i++)
			vd_write(&v, block + i * 2048ULL, f, sizeof(f));
		if (before && gmm_unmap(v.mem, block, 2ULL << 20, 0) == 0)
			unmapped++;
		for (unsigned i = 0; i < 64; i++) {
			struct vd_buf b[2] = { { hdrs + 16 * i, 12, false },
					       { block + i * 2048ULL, sizeof(f), false } };
			vd_add(&v, 1, b, 2, false);
		}
		vd_kick(&v, 1);
		if (!before) {
			usleep(200);
			if (gmm_unmap(v.mem, block, 2ULL << 20, 0) == 0)
				unmapped++;
		}
		uint32_t len;
		for (int k = 0; k < 64; k++)
			cr_assert_geq(vd_wait_used(&v, 1, 3000, &len), 0, "round %u: chain %d not used",
				      round, k);
		cr_assert_eq(gmm_map(v.mem, block, 2ULL << 20), 0);
	}
	struct net_info I = info();
	cr_log_info("transmit unmap: %u unmaps, tx %lu packets, %lu errors", unmapped,
		    (unsigned long)I.tx_packets, (unsigned long)I.tx_errors);
	cr_assert_eq(unmapped, 40);
	cr_assert_gt(I.tx_packets, 0);
	cr_assert_geq(I.tx_errors, 20 * 64, "every frame posted into the hole is counted");
	cr_assert_eq(I.tx_packets + I.tx_errors + I.tx_dropped, 40 * 64);
	cr_assert_eq(vd_reg_read(&v, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
}

/* ---- snapshot (issue 16) ------------------------------------------------ */

/* A packet waiting for receive buffers at quiesce is saved with the state;
 * a new device (a new tap of the same name, as a restored VM gets) restored
 * delivers it once buffers come, and frames flow both ways after it. */
Test(virtio_net, snapshot_roundtrip)
{
	NEED_ENV();
	make_dev(0);
	drive(F_ALL);
	int s = netns_packet_socket(TAP, false);
	cr_assert_geq(s, 0);
	static uint8_t f[2000], got[4000];
	size_t len = test_frame(f, 300, 1, guest_mac);
	cr_assert_eq(send(s, f, len, 0), (ssize_t)len);
	cr_assert(WAIT_INFO(I.rx_waits >= 1), "the packet waits for buffers");
	close(s);
	cr_assert_eq(d->ops->quiesce(d), 0);
	char err[256] = "";
	struct json_object *st = virtio_dev_save(d, err, sizeof(err));
	cr_assert_not_null(st, "%s", err);
	d->ops->destroy(d);

	struct net_dev_config c = { .tap = TAP, .fd = -1,
				    .ip = inet_addr("10.9.0.1"), .mask = inet_addr("255.255.255.0") };
	memcpy(c.mac, (uint8_t[6]){ 0x52, 0x54, 0, 0, 0, 9 }, 6);   /* another process's draw */
	d = virtio_net_create(v.mem, &c, 0, err, sizeof(err));
	cr_assert_not_null(d, "%s", err);
	v.d = d;
	cr_assert_eq(virtio_dev_restore(d, st, err, sizeof(err)), 0, "restore: %s", err);
	json_object_put(st);
	cr_assert_eq(memcmp(info().mac, guest_mac, 6), 0, "the guest's MAC is restored");
	cr_assert_eq(d->ops->start(d), 0);
	post_rx(8, 2048);
	struct vhdr h;
	cr_assert_eq(recv_guest(&h, got, sizeof(got), 3000), len);
	cr_assert_eq(memcmp(got, f, len), 0, "the pending packet");

	s = netns_packet_socket(TAP, false);
	cr_assert_geq(s, 0);
	len = test_frame(f, 1000, 2, guest_mac);
	cr_assert_eq(send(s, f, len, 0), (ssize_t)len);
	cr_assert_eq(recv_guest(&h, got, sizeof(got), 3000), len);
	cr_assert_eq(memcmp(got, f, len), 0);
	struct vhdr th = { 0 };
	len = test_frame(f, 600, 3, NULL);
	send_chain(&th, f, len, 2, false);
	ssize_t n = netns_recv(s, got, sizeof(got), NETNS_ETH_P_TEST, 0, 3000);
	cr_assert_eq(n, (ssize_t)len);
	cr_assert_eq(memcmp(got, f, len), 0);
	close(s);
}
