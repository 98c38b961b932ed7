/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * virtio_net_hdr.h - virtio-net's feature bits and packet header (virtio
 * 1.2, 5.1.3 and 5.1.6), and the checks of a header (virtio_net_hdr.c)
 * that virtio_net.c applies and the virtqueue fuzzer exercises.
 */
#ifndef VMM_VIRTIO_NET_HDR_H
#define VMM_VIRTIO_NET_HDR_H

#include <stdbool.h>
#include <stdint.h>

/* Feature bits (5.1.3). */
#define VIRTIO_NET_F_CSUM        0
#define VIRTIO_NET_F_GUEST_CSUM  1
#define VIRTIO_NET_F_MTU         3
#define VIRTIO_NET_F_MAC         5
#define VIRTIO_NET_F_GUEST_TSO4  7
#define VIRTIO_NET_F_GUEST_TSO6  8
#define VIRTIO_NET_F_GUEST_ECN   9
#define VIRTIO_NET_F_GUEST_UFO   10
#define VIRTIO_NET_F_HOST_TSO4   11
#define VIRTIO_NET_F_HOST_TSO6   12
#define VIRTIO_NET_F_HOST_ECN    13
#define VIRTIO_NET_F_MRG_RXBUF   15
#define VIRTIO_NET_F_STATUS      16
#define NET_BIT(b) (1ULL << (b))

/* Header fields (5.1.6). */
#define NET_HDR_F_NEEDS_CSUM   1
#define NET_HDR_F_DATA_VALID   2
#define NET_GSO_NONE           0
#define NET_GSO_TCPV4          1
#define NET_GSO_UDP            3
#define NET_GSO_TCPV6          4
#define NET_GSO_ECN            0x80

/* struct virtio_net_hdr_v1: 12 bytes, little-endian fields. */
struct net_hdr {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len, gso_size, csum_start, csum_offset;
	uint16_t num_buffers;
} __attribute__((packed));
_Static_assert(sizeof(struct net_hdr) == 12, "virtio_net_hdr_v1");
#define NET_HDR_NUM_BUFFERS_OFF 10

/* A transmit header under the negotiated features feat, for a tap with
 * (vnet_hdr) or without vnet headers: NULL if it may go to the tap, else
 * why not (a constant sentence). */
const char *net_tx_hdr_problem(const struct net_hdr *h, uint64_t feat, bool vnet_hdr);
/* A header read from the tap, for a driver with features feat: NULL if the
 * driver can take it (flags it did not ask for are cleared in *h), else why
 * not (the packet is dropped). */
const char *net_rx_hdr_fix(struct net_hdr *h, uint64_t feat);

#endif
