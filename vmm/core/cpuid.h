/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * cpuid.h - the CPUID table the guest sees (cpuid.c): KVM's supported
 * table, filtered, set on every vCPU.
 */
#ifndef VMM_CPUID_H
#define VMM_CPUID_H

#include "core/vm_types.h"

/* The CPUID table for vCPU index (from the VM's filtered table). */
int cpuid_setup(struct vm *vm);
int cpuid_set_vcpu(struct vm *vm, struct vcpu *cpu);

#endif
