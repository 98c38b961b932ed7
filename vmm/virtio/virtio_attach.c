// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio_attach.c - putting a virtio-mmio device into a KVM VM.
 *
 * Device number `slot` gets the MMIO window VIRTIO_MMIO_BASE + slot * 4 KiB
 * on the bus (register accesses run virtio_mmio_access() on the vCPU that
 * exited) and an ISA interrupt line from virtio_mmio_irqs[].  Two KVM
 * shortcuts keep the vCPU threads out of the data path:
 *   - KVM_IRQFD: the device thread writes its irq_fd and KVM raises the
 *     line in the in-kernel irqchip (an edge on an edge-triggered ISA line:
 *     one interrupt per write; the driver reads InterruptStatus).
 *   - KVM_IOEVENTFD per queue on QueueNotify with datamatch = the queue
 *     index: a notify completes inside KVM and signals that queue's
 *     kick_fd; the register handler is not even called.
 * Linux learns of the device from "virtio_mmio.device=4K@BASE:IRQ" on its
 * command line (virtio_set_cmdline; both the bzImage and the PVH path take
 * the command line from the same string).
 *
 * Main thread, before the vCPUs run (bus.h: registration is not safe
 * against dispatch).
 */
#include "core/bus.h"
#include "core/log.h"
#include "virtio/virtio.h"
#include "core/vm.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <testimg.h>

/* The test images find the devices where this file puts them. */
_Static_assert(TESTIMG_VIRTIO_BASE == VIRTIO_MMIO_BASE && TESTIMG_VIRTIO_WINDOW == VIRTIO_MMIO_WINDOW &&
		       TESTIMG_VIRTIO_SLOTS == VIRTIO_MMIO_MAX_DEVICES,
	       "images/include/testimg.h and virtio.h disagree on the virtio-mmio windows");

const unsigned virtio_mmio_irqs[VIRTIO_MMIO_MAX_DEVICES] = { 5, 6, 7, 9, 10, 11 };

static void mmio_handler(void *opaque, struct vcpu *cpu, uint64_t offset, uint8_t *data,
			 unsigned len, bool is_write)
{
	(void)cpu;
	virtio_mmio_access(opaque, offset, data, len, is_write);
}

static int set_ioeventfd(struct vm *vm, struct virtio_dev *d, unsigned q, bool deassign)
{
	struct kvm_ioeventfd io = {
		.datamatch = q,
		.addr = d->mmio_base + VIRTIO_MMIO_QUEUE_NOTIFY,
		.len = 4,
		.fd = d->kick_fd[q],
		.flags = KVM_IOEVENTFD_FLAG_DATAMATCH | (deassign ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0),
	};
	return ioctl(vm->fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

static int set_irqfd(struct vm *vm, struct virtio_dev *d, bool deassign)
{
	struct kvm_irqfd irq = {
		.fd = (uint32_t)d->irq_fd,
		.gsi = d->irq,
		.flags = deassign ? KVM_IRQFD_FLAG_DEASSIGN : 0,
	};
	return ioctl(vm->fd, KVM_IRQFD, &irq) < 0 ? -errno : 0;
}

int virtio_mmio_attach(struct vm *vm, struct virtio_dev *d, unsigned slot)
{
	if (slot >= VIRTIO_MMIO_MAX_DEVICES) {
		log_msg(LOG_ERROR, "%s: at most %d virtio devices", d->name, VIRTIO_MMIO_MAX_DEVICES);
		return -1;
	}
	d->mmio_base = VIRTIO_MMIO_SLOT_BASE(slot);
	d->irq = virtio_mmio_irqs[slot];
	int err = bus_register(BUS_MMIO, d->mmio_base, VIRTIO_MMIO_WINDOW, mmio_handler, d, d->name);
	if (err < 0) {
		log_msg(LOG_ERROR, "%s: MMIO window at %#" PRIx64 ": %s", d->name, d->mmio_base,
			strerror(-err));
		return -1;
	}
	err = set_irqfd(vm, d, false);
	if (err < 0) {
		log_msg(LOG_ERROR, "%s: KVM_IRQFD for IRQ %u: %s", d->name, d->irq, strerror(-err));
		return -1;
	}
	unsigned q;
	for (q = 0; q < d->nqueues; q++) {
		err = set_ioeventfd(vm, d, q, false);
		if (err < 0) {
			/* Not fatal: the register handler signals kick_fd too. */
			log_msg(LOG_WARN, "%s: KVM_IOEVENTFD for queue %u: %s (notifications go "
				"through the MMIO handler)", d->name, q, strerror(-err));
			break;
		}
	}
	log_msg(LOG_DEBUG, "%s at %#" PRIx64 " IRQ %u", d->name, d->mmio_base, d->irq);
	return 0;
}

void virtio_mmio_detach(struct vm *vm, struct virtio_dev *d)
{
	for (unsigned q = 0; q < d->nqueues; q++)
		set_ioeventfd(vm, d, q, true);
	set_irqfd(vm, d, true);
}
