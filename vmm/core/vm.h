/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vmm/core/ - the KVM VM: its fds and memory slots (guest RAM from
 * guestmm), the vCPU threads and their run control (vcpu.c), CPUID, the
 * exit dispatch (bus.c) every device registers on, and the log and size
 * helpers everyone uses.  May call boot/ (the VM loads its kernel) and
 * guestmm; never a device, virtio, the machine, the API or the bench: they
 * call it (vm_stop, vm_irq_line, bus_register) and it calls them back only
 * through the bus.
 */
/*
 * vm.h - one KVM virtual machine: its memory (guestmm), vCPUs, devices and
 * lifecycle.
 *
 * Threads: the main thread creates everything, starts the vCPU threads
 * (named vcpu0, vcpu1, ...) and then serves the console and signals until
 * the VM stops.  Each vCPU thread is a guestmm walker: device emulation on
 * exits translates guest addresses inside walk sections.
 *
 * Lifecycle (vcpu.h, beside the vCPU loop it drives): vm_stop() may be
 * called from any thread (a device on a vCPU thread, the main thread on
 * SIGTERM); it records the first exit status and kicks every vCPU out of
 * KVM_RUN.  vm_pause() parks every vCPU outside
 * KVM_RUN (where guestmm sees it quiescent) and returns once all are parked;
 * vm_resume() lets them go.
 */
#ifndef VMM_VM_H
#define VMM_VM_H

#include "boot/boot.h"
#include "core/vcpu.h"
#include "core/vm_types.h"

/* Create the KVM VM, its RAM (guestmm regions + memslots), irqchip, PIT,
 * CPUID, and load the kernel (not with cfg->restore: vm_state_restore sets
 * the vCPUs, the snapshot's loader the memory).  On error: a message was logged, the VM is
 * destroyed, returns EXIT_USAGE or EXIT_VMM_ERROR. */
int vm_create(const struct vm_config *cfg, struct vm **out);
/* Start the vCPU threads (parked, the VM in VM_PAUSED until vm_resume,
 * with cfg->start_paused). */
int vm_start(struct vm *vm);
void vm_destroy(struct vm *vm);
/* Register guest memory [gpa, gpa + size) at hva as KVM memslot `slot`;
 * size 0 deletes the slot.  0 or -errno (logged by the caller).  Any
 * thread (main, virtio-mem's): the slot goes into vm->slots under its lock,
 * with KVM_MEM_LOG_DIRTY_PAGES while dirty logging is on (dirty_log.h). */
int vm_set_memslot(struct vm *vm, unsigned slot, uint64_t gpa, uint64_t size, void *hva);
/* Measured huge-page coverage of guest RAM (below and above the hole
 * together; virtio-mem's region is not RAM).  Any thread. */
void vm_ram_coverage(struct vm *vm, struct gmm_coverage *c);
/* Raise or lower a GSI line on the in-kernel irqchip. */
void vm_irq_line(struct vm *vm, unsigned irq, int level);

#endif
