// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio_net_hdr.c - the checks of virtio-net's 12-byte packet header
 * (virtio 1.2, 5.1.6), apart from the device so that the virtqueue fuzzer
 * (tests/vmm/fuzz_virtqueue.c) runs them on hostile bytes.
 *
 * Transmit: a header the driver wrote goes to the tap only if every request
 * in it was negotiated (NEEDS_CSUM needs CSUM; GSO TCPV4/TCPV6 need
 * HOST_TSO4/6, with ECN HOST_ECN; no UDP GSO, which is not offered), its
 * flags are known and a GSO packet has a GSO size.  What the tap still
 * refuses (csum_start beyond the frame, a hdr_len that lies) the kernel
 * checks: the device counts its EINVAL.
 * Receive: a header the tap wrote goes to the driver only if the driver
 * can take it (partial checksums need GUEST_CSUM, GSO types their
 * GUEST_* feature); DATA_VALID is cleared for a driver without GUEST_CSUM.
 *
 * Pure functions of their arguments: any thread, no lock.
 */
#include "virtio/virtio_net_hdr.h"

#include <endian.h>
#include <stddef.h>

const char *net_tx_hdr_problem(const struct net_hdr *h, uint64_t feat, bool vnet_hdr)
{
	uint8_t gso = h->gso_type & (uint8_t)~NET_GSO_ECN;
	if ((h->flags & NET_HDR_F_NEEDS_CSUM) && !(feat & NET_BIT(VIRTIO_NET_F_CSUM)))
		return "checksum offload not negotiated";
	if (h->flags & ~(NET_HDR_F_NEEDS_CSUM | NET_HDR_F_DATA_VALID))
		return "unknown header flags";
	if ((h->flags & NET_HDR_F_NEEDS_CSUM) && !vnet_hdr)
		return "checksum offload on a tap without vnet headers";
	if (gso == NET_GSO_NONE) {
		if (h->gso_type & NET_GSO_ECN)
			return "ECN without GSO";
		return NULL;
	}
	if (!vnet_hdr)
		return "GSO on a tap without vnet headers";
	if (gso == NET_GSO_TCPV4 && !(feat & NET_BIT(VIRTIO_NET_F_HOST_TSO4)))
		return "TSO4 not negotiated";
	if (gso == NET_GSO_TCPV6 && !(feat & NET_BIT(VIRTIO_NET_F_HOST_TSO6)))
		return "TSO6 not negotiated";
	if (gso != NET_GSO_TCPV4 && gso != NET_GSO_TCPV6)
		return "unknown GSO type";
	if ((h->gso_type & NET_GSO_ECN) && !(feat & NET_BIT(VIRTIO_NET_F_HOST_ECN)))
		return "ECN not negotiated";
	if (le16toh(h->gso_size) == 0)
		return "GSO size 0";
	return NULL;
}

const char *net_rx_hdr_fix(struct net_hdr *h, uint64_t feat)
{
	uint8_t gso = h->gso_type & (uint8_t)~NET_GSO_ECN;
	if (!(feat & NET_BIT(VIRTIO_NET_F_GUEST_CSUM))) {
		if (h->flags & NET_HDR_F_NEEDS_CSUM)
			return "partial checksum for a driver without GUEST_CSUM";
		h->flags = 0;
	}
	if (h->flags & ~(NET_HDR_F_NEEDS_CSUM | NET_HDR_F_DATA_VALID))
		return "unknown header flags from the tap";
	if (gso == NET_GSO_TCPV4 && !(feat & NET_BIT(VIRTIO_NET_F_GUEST_TSO4)))
		return "TSO4 packet for a driver without GUEST_TSO4";
	if (gso == NET_GSO_TCPV6 && !(feat & NET_BIT(VIRTIO_NET_F_GUEST_TSO6)))
		return "TSO6 packet for a driver without GUEST_TSO6";
	if (gso == NET_GSO_UDP && !(feat & NET_BIT(VIRTIO_NET_F_GUEST_UFO)))
		return "UFO packet for a driver without GUEST_UFO";
	if (gso != NET_GSO_NONE && gso != NET_GSO_TCPV4 && gso != NET_GSO_TCPV6 && gso != NET_GSO_UDP)
		return "unknown GSO type from the tap";
	if ((h->gso_type & NET_GSO_ECN) && (gso == NET_GSO_NONE || !(feat & NET_BIT(VIRTIO_NET_F_GUEST_ECN))))
		return "ECN packet for a driver without GUEST_ECN";
	return NULL;
}
