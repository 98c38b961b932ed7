/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * virtio_set.h - the virtio devices of one VM, made from its machine
 * configuration (virtio_set.c): machine assembly, so it lives in machine/
 * and calls virtio/ and core/, never the other way.
 */
#ifndef VMM_VIRTIO_SET_H
#define VMM_VIRTIO_SET_H

#include <stddef.h>

struct machine_config;
struct virtio_dev;
struct vm;

/* The VM's virtio devices from its config (slot order:
 * disks, console, balloon, virtio-mem, nets).  virtio_set_cmdline appends their
 * "virtio_mmio.device=" entries to buf (before the VM exists; -1 if buf
 * is too small).  create: make and attach them (after devices_attach: the
 * bus is reset there); console_fd is where the virtio-console writes.
 * start before the vCPUs run; stop after they are joined; destroy before
 * vm_destroy (frees vm->vio).  Main thread. */
int virtio_set_cmdline(const struct machine_config *c, char *buf, size_t len);
int virtio_set_create(struct vm *vm, const struct machine_config *c, int console_fd, char *err,
		      size_t errlen);
int virtio_set_start(struct vm *vm);
void virtio_set_stop(struct vm *vm);
void virtio_set_destroy(struct vm *vm);
/* The devices by role (NULL if absent or no VM); any thread. */
struct virtio_dev *virtio_set_console(struct vm *vm);
struct virtio_dev *virtio_set_balloon(struct vm *vm);
struct virtio_dev *virtio_set_mem(struct vm *vm);
/* Network device index (0..CONFIG_MAX_NETS-1, --net order); NULL if none. */
struct virtio_dev *virtio_set_net(struct vm *vm, unsigned index);
/* Snapshot (issue 16): quiesce every device (in-flight requests
 * completed, nothing touches guest memory) / let them go again; save
 * [{"slot","type","id",...transport and device state}] in slot order;
 * restore into a set just created from the same config (before
 * virtio_set_start): the list must match slot for slot (count, device
 * type), else -1 with err naming the slot.  Main thread, VM paused. */
struct json_object;
int virtio_set_quiesce(struct vm *vm);
void virtio_set_resume_io(struct vm *vm);
struct json_object *virtio_set_save(struct vm *vm, char *err, size_t errlen);
int virtio_set_restore(struct vm *vm, struct json_object *list, char *err, size_t errlen);
/* After the restore of the devices AND of the irqchip (vm_state_restore),
 * before the vCPUs run: re-signal each device whose restored
 * InterruptStatus has a bit set (virtio_dev_restore_irq), so a pending
 * interrupt is not lost under the irqchip's restored state.  Order for a
 * snapshot: virtio_set_quiesce before vm_state_save (interrupts raised by
 * the quiesce are then in the saved irqchip). */
void virtio_set_restore_irq(struct vm *vm);

/* "name value" lines for vm.counters. */
void virtio_set_counters(struct vm *vm, char *buf, size_t len);

#endif
