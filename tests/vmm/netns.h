/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * netns.h - the network side of the virtio-net test and benchmark: a
 * network namespace of the calling process's own (unshare(CLONE_NEWNET):
 * nothing leaves it), IPv6 off in it (no router solicitations on the tap),
 * and AF_PACKET sockets on the tap standing for "the host's network".
 *
 * Header-only helpers for tests/vmm/test_virtio_net.c and bench_net.c; one
 * thread, no locks.
 */
#ifndef TESTS_NETNS_H
#define TESTS_NETNS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef PACKET_VNET_HDR
#define PACKET_VNET_HDR 15
#endif

/* Our own ethertype for test frames (IEEE local experimental). */
#define NETNS_ETH_P_TEST 0x88b5

/* Enter a new network namespace.  0, or -1 with a reason in why (not
 * root, no /dev/net/tun, no namespaces). */
static inline int netns_enter(char *why, size_t len)
{
	if (geteuid() != 0) {
		snprintf(why, len, "not root: a tap in a network namespace needs CAP_NET_ADMIN");
		return -1;
	}
	if (access("/dev/net/tun", R_OK | W_OK) != 0) {
		snprintf(why, len, "no /dev/net/tun: %s", strerror(errno));
		return -1;
	}
	if (unshare(CLONE_NEWNET) != 0) {
		snprintf(why, len, "unshare(CLONE_NEWNET): %s", strerror(errno));
		return -1;
	}
	static const char *const knobs[] = {
		"/proc/sys/net/ipv6/conf/default/disable_ipv6",
		"/proc/sys/net/ipv6/conf/all/disable_ipv6",
	};
	for (unsigned i = 0; i < 2; i++) {
		int fd = open(knobs[i], O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			if (write(fd, "1", 1) != 1) {
				/* no IPv6 in this kernel: nothing to quiet */
			}
			close(fd);
		}
	}
	return 0;
}

/* An AF_PACKET socket bound to ifname, all protocols, with a 4 MiB receive
 * buffer; vnet: PACKET_VNET_HDR (a 10-byte virtio_net_hdr before every
 * frame both ways).  Nonblocking.  The fd, or -1. */
static inline int netns_packet_socket(const char *ifname, bool vnet)
{
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL));
	if (s < 0)
		return -1;
	int one = 1, buf = 4 << 20;
	setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf));
	setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf));
	if (vnet && setsockopt(s, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)) < 0) {
		close(s);
		return -1;
	}
	struct sockaddr_ll a = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
				 .sll_ifindex = (int)if_nametoindex(ifname) };
	if (!a.sll_ifindex || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(s);
		return -1;
	}
	return s;
}

/* Receive the next frame that came IN on the tap (not one the kernel sent
 * out) and, if ethertype is not 0, has that ethertype; wait up to
 * timeout_ms.  Bytes received (with the vnet header if the socket has
 * one), or -1 on timeout. */
static inline ssize_t netns_recv(int s, void *buf, size_t len, uint16_t ethertype, size_t hdr,
				 int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms;) {
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(s, buf, len, MSG_TRUNC, (struct sockaddr *)&from, &fl);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				return -1;
			struct pollfd p = { .fd = s, .events = POLLIN };
			poll(&p, 1, 10);
			waited += 10;
			continue;
		}
		if (from.sll_pkttype == PACKET_OUTGOING)
			continue;
		if ((size_t)n < hdr + 14)
			continue;
		const uint8_t *f = (const uint8_t *)buf + hdr;
		if (ethertype && (f[12] << 8 | f[13]) != ethertype)
			continue;
		return n;
	}
	return -1;
}

#endif
