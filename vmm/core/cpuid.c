// SPDX-License-Identifier: GPL-2.0-only
/*
 * cpuid.c - the CPUID table vCPUs see: KVM_GET_SUPPORTED_CPUID, with each
 * vCPU's APIC ID filled in, and -- when the host's KVM emulates every guest
 * instruction (kvm_pvm, see ../shared/GUEST-LINUX.md) or when asked -- the
 * features its emulator cannot run hidden: POPCNT, ERMS, FSRM, SMAP, XSAVE
 * (and with it AVX/AVX2/AVX-512, which need XSAVE) and CMPXCHG16B, and the
 * KVM paravirtual features that work by hypercall (PV unhalt, TLB flush,
 * send-IPI, sched-yield): that emulator leaves a guest's hypercall pending,
 * and an SMP Linux guest hangs on its first PV IPI while bringing up CPU 1.
 */
#include "core/log.h"
#include "core/cpuid.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Leaf 1 ECX */
#define F1_CX16 (1u << 13)
#define F1_POPCNT (1u << 23)
#define F1_XSAVE (1u << 26)
#define F1_OSXSAVE (1u << 27)
#define F1_AVX (1u << 28)
#define F1_F16C (1u << 29)
#define F1_FMA (1u << 12)
#define F1_HYPERVISOR (1u << 31)
/* Leaf 7.0 EBX / EDX */
#define F7B_AVX2 (1u << 5)
#define F7B_ERMS (1u << 9)
#define F7B_SMAP (1u << 20)
#define F7B_AVX512 0xd0230000u   /* F, DQ, IFMA, PF, ER, CD, BW, VL */
#define F7D_FSRM (1u << 4)
/* KVM leaf 0x40000001 EAX: paravirtual features that work by hypercall */
#define KVM_PV_UNHALT (1u << 7)
#define KVM_PV_TLB_FLUSH (1u << 9)
#define KVM_PV_SEND_IPI (1u << 11)
#define KVM_PV_SCHED_YIELD (1u << 13)
#define KVM_PV_HYPERCALLS (KVM_PV_UNHALT | KVM_PV_TLB_FLUSH | KVM_PV_SEND_IPI | KVM_PV_SCHED_YIELD)

static bool emulating_host(void)
{
	return access("/sys/module/kvm_pvm", F_OK) == 0;
}

int cpuid_setup(struct vm *vm)
{
	int n = 128;
	for (;;) {
		vm->cpuid = calloc(1, sizeof(*vm->cpuid) + (size_t)n * sizeof(struct kvm_cpuid_entry2));
		if (!vm->cpuid)
			return -1;
		vm->cpuid->nent = (uint32_t)n;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, vm->cpuid) == 0)
			break;
		free(vm->cpuid);
		vm->cpuid = NULL;
		if (errno != E2BIG || n > 4096) {
			log_msg(LOG_ERROR, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
			return -1;
		}
		n *= 2;
	}
	bool filter = vm->cfg.cpuid_filter > 0 || (vm->cfg.cpuid_filter < 0 && emulating_host());
	vm->cpuid_filtered = filter;
	for (uint32_t i = 0; i < vm->cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &vm->cpuid->entries[i];
		if (e->function == 1) {
			e->ecx |= F1_HYPERVISOR;
			if (filter)
				e->ecx &= ~(F1_CX16 | F1_POPCNT | F1_XSAVE | F1_OSXSAVE | F1_AVX |
					    F1_F16C | F1_FMA);
		} else if (e->function == 7 && e->index == 0 && filter) {
			e->ebx &= ~(F7B_AVX2 | F7B_ERMS | F7B_SMAP | F7B_AVX512);
			e->edx &= ~F7D_FSRM;
		} else if (e->function == 0xd && filter) {
			e->eax = e->ebx = e->ecx = e->edx = 0;
		} else if (e->function == 0x40000001 && filter) {
			e->eax &= ~KVM_PV_HYPERCALLS;
		}
	}
	if (filter)
		log_msg(LOG_INFO, "cpuid: hiding POPCNT, ERMS, FSRM, SMAP, XSAVE/AVX, CMPXCHG16B, PV hypercalls%s",
			vm->cfg.cpuid_filter > 0 ? "" : " (this KVM emulates guest instructions)");
	return 0;
}

int cpuid_set_vcpu(struct vm *vm, struct vcpu *cpu)
{
	size_t sz = sizeof(*vm->cpuid) + vm->cpuid->nent * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = malloc(sz);
	if (!c)
		return -1;
	memcpy(c, vm->cpuid, sz);
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function == 1) {
			e->ebx = (e->ebx & 0x00ffffffu) | (cpu->index << 24);
		} else if (e->function == 0xb || e->function == 0x1f) {
			e->edx = cpu->index; /* x2APIC ID */
		}
	}
	int ret = ioctl(cpu->fd, KVM_SET_CPUID2, c);
	free(c);
	return ret;
}
