/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vcpu.h - the vCPU threads (vcpu.c): set-up, the KVM_RUN loop, the kick,
 * and the run control that coordinates them with the rest of the VMM
 * (vm_stop, vm_pause, vm_resume, vm_join: the requests the threads look at
 * between two KVM_RUNs and the waits for them live beside that loop).
 * Called by vm.c and, through vm.h, by everyone who stops or pauses a VM;
 * calls cpuid.c and the bus, never vm.c.
 */
#ifndef VMM_VCPU_H
#define VMM_VCPU_H

#include "core/vm_types.h"

int vcpu_init(struct vm *vm, unsigned index);
void *vcpu_thread(void *arg);
void vcpu_kick(struct vcpu *cpu);
int vcpu_signal_setup(void);
/* Log the registers of a vCPU (error level). */
void vcpu_dump(struct vcpu *cpu);

/* Record the exit status (first caller wins) and stop every vCPU. */
void vm_stop(struct vm *vm, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);
/* Wait for every vCPU thread after a stop; returns the exit status. */
int vm_join(struct vm *vm);

#endif
