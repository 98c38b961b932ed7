/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vm_state.h - the KVM side of a snapshot (issue 16): every vCPU, the
 * in-kernel irqchip, the PIT and kvmclock, to a JSON object and back
 * (vm_state.c).  Memory is guestmm's (guestmm/snapshot.h); the devices
 * write their own (devices.h, virtio.h); the snapshot directory is
 * vmm/snapshot/'s.
 *
 * What is saved, per vCPU: the CPUID table it runs with (KVM_GET_CPUID2),
 * KVM_GET_REGS, SREGS, FPU and XSAVE (when KVM has KVM_CAP_XSAVE; XSAVE2's
 * size when larger), XCRS (KVM_CAP_XCRS), LAPIC, every MSR of
 * KVM_GET_MSR_INDEX_LIST and of a short list of emulated ones (TSC, APIC
 * base, MISC_ENABLE, TSC_DEADLINE, PAT, EFER, kvmclock's) that
 * KVM_GET_MSRS reads, VCPU_EVENTS (pending exceptions, interrupts, NMI,
 * SMI), MP_STATE, DEBUGREGS; per VM: KVM_GET_IRQCHIP for PIC master, PIC
 * slave and IOAPIC, KVM_GET_PIT2, KVM_GET_CLOCK.  Register-like structures
 * are named fields ("vcpus[0].regs.rip", "vcpus[0].sregs.cs.selector",
 * "vcpus[0].msrs[3].index"), kernel layouts (fpu, xsave, xcrs, lapic,
 * events, the irqchips) hex blobs of their exact size (core/state_json.h).
 * Restore sets them in the order KVM needs (CPUID first; sregs before
 * regs; XCRS before XSAVE; MSRs before LAPIC, except TSC_DEADLINE after
 * it; events and MP state last; the clock once for the VM, without
 * KVM_CLOCK_REALTIME: guest time resumes where it was saved).  vm_state.c
 * has the reasons.
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
 * or NULL with err (the VM is running, an ioctl failed, out of memory).
 * The VM paused (VM_PAUSED) or never started (VM_CREATED). */
struct json_object *vm_state_save(struct vm *vm, char *err, size_t errlen);
/* Put the saved state into a VM created for a restore (vm_create with
 * cfg->restore: no kernel loaded, no boot registers), with the same vCPU
 * count, before vm_start (cfg->start_paused then parks the vCPUs until
 * vm_resume): everything checked (count, blob sizes, field types and
 * ranges) before the first ioctl; 0, or -1 with one sentence in err (bad
 * input: the VM unchanged; a refused ioctl: the VM half-set, destroy it). */
int vm_state_restore(struct vm *vm, struct json_object *state, char *err, size_t errlen);

#endif
