/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vm_state.h - the KVM side of a snapshot (issue 16): every vCPU, the
 * in-kernel irqchip, the PIT and kvmclock, to a JSON object and back
 * (vm_state.c).  Memory is guestmm's (guestmm/snapshot.h); the devices
 * write their own (devices.h, virtio.h); the snapshot directory is
 * vmm/snapshot/'s.
 *
 * What is saved, per vCPU: KVM_GET_REGS, SREGS, FPU and XSAVE (when KVM
 * has KVM_CAP_XSAVE; XSAVE2's size when larger), XCRS (KVM_CAP_XCRS),
 * LAPIC, every MSR of KVM_GET_MSR_INDEX_LIST that KVM_GET_MSRS reads
 * (kvmclock's system-time MSRs included), VCPU_EVENTS (pending
 * exceptions, interrupts, NMI, SMI), MP_STATE, DEBUGREGS; per VM:
 * KVM_GET_IRQCHIP for PIC master, PIC slave and IOAPIC, KVM_GET_PIT2,
 * KVM_GET_CLOCK.  Blobs are hex (core/state_json.h).  Restore sets them in
 * the order KVM needs (sregs before regs; MSRs before LAPIC; XCRS before
 * XSAVE; events and MP state last; the clock once for the VM).
 *
 * A vCPU that exited for port or MMIO I/O has the result of an IN/read
 * still in kvm_run, not in its registers: the VM's pause (vcpu.c) re-enters
 * KVM_RUN once with immediate_exit set before parking, so the state read
 * here is complete (KVM's documented way to finish a pending operation).
 *
 * Threads: main thread; the VM paused (vCPUs parked outside KVM_RUN) for
 * save, the vCPU threads not yet started for restore.
 */
#ifndef VMM_VM_STATE_H
#define VMM_VM_STATE_H

#include "core/vm_types.h"

#include <json-c/json.h>
#include <stddef.h>

/* The state format version of this object's contents; bumped when a field
 * changes meaning. */
#define VM_STATE_VERSION 1

/* {"vcpus":[...],"irqchip":{...},"pit":{...},"clock":{...}}: a new object,
 * or NULL with err (an ioctl failed, out of memory). */
struct json_object *vm_state_save(struct vm *vm, char *err, size_t errlen);
/* Put the saved state into a VM created for a restore (vm_create with
 * cfg->restore: no kernel loaded, no boot registers), with the same vCPU
 * count: everything checked (count, blob sizes, field types) before the
 * first ioctl; 0, or -1 with one sentence in err. */
int vm_state_restore(struct vm *vm, struct json_object *state, char *err, size_t errlen);

#endif
