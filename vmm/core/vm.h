/*
 * vm.h - one KVM virtual machine: its memory (guestmm), vCPUs, devices and
 * lifecycle.
 *
 * Threads: the main thread creates everything, starts the vCPU threads
 * (named vcpu0, vcpu1, ...) and then serves the console and signals until
 * the VM stops.  Each vCPU thread is a guestmm walker: device emulation on
 * exits translates guest addresses inside walk sections.
 *
 * Lifecycle: vm_stop() may be called from any thread (a device on a vCPU
 * thread, the main thread on SIGTERM); it records the first exit status and
 * kicks every vCPU out of KVM_RUN.  vm_pause() parks every vCPU outside
 * KVM_RUN (where guestmm sees it quiescent) and returns once all are parked;
 * vm_resume() lets them go.
 */
#ifndef VMM_VM_H
#define VMM_VM_H

#include "boot/boot.h"

#include <guestmm/guestmm.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Exit statuses of `vmm run` (documented in vmm run --help). */
enum {
	EXIT_GUEST_OFF = 0,     /* guest powered off or rebooted, or clean stop */
	EXIT_VMM_ERROR = 1,     /* the VMM failed at run time */
	EXIT_USAGE = 2,         /* bad command line or input file */
	EXIT_TRIPLE_FAULT = 3,  /* KVM_EXIT_SHUTDOWN: the guest triple-faulted */
	EXIT_GUEST_ERROR = 4,   /* emulation failure, failed entry, internal error */
};

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	struct gmm_walker *walker;
	_Atomic uint64_t exits, io_exits, mmio_exits, kicks;
	_Atomic uint64_t intr_exits;   /* KVM_RUN returned EINTR: a signal */
};

enum vm_state { VM_CREATED, VM_RUNNING, VM_PAUSED, VM_STOPPED };

struct vm_config {
	uint64_t mem_size;
	unsigned nr_vcpus;
	enum gmm_backing backing;
	enum gmm_strategy strategy;
	bool prefault;
	int cpuid_filter;        /* -1 auto, 0 off, 1 on */
	struct boot_config boot;
};

struct vm {
	struct vm_config cfg;
	int kvm_fd, fd;
	int run_size;
	struct gmm_vm *mem;
	struct gmm_region *ram_low, *ram_high;
	struct guest_ram ram;
	struct boot_plan plan;
	struct kvm_cpuid2 *cpuid;
	bool cpuid_filtered;
	struct vcpu *vcpus;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum vm_state state;
	bool stop_requested;
	int exit_status;
	char exit_reason[128];
	bool pause_requested;
	_Atomic bool reboot;     /* the stop is a guest reboot */
	unsigned parked;         /* vCPUs parked for a pause */
	unsigned running;        /* vCPU threads not yet finished */
	int stop_eventfd;        /* becomes readable when the VM stops */
	void *owner;             /* the embedder's (vmm bench): device handlers find it */
	struct virtio_set *vio;  /* virtio devices (virtio_set.c), NULL if none */
};

/* Create the KVM VM, its RAM (guestmm regions + memslots), irqchip, PIT,
 * CPUID, and load the kernel.  On error: a message was logged, the VM is
 * destroyed, returns EXIT_USAGE or EXIT_VMM_ERROR. */
int vm_create(const struct vm_config *cfg, struct vm **out);
/* Start the vCPU threads. */
int vm_start(struct vm *vm);
/* Record the exit status (first caller wins) and stop every vCPU. */
void vm_stop(struct vm *vm, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);
/* Wait for every vCPU thread after a stop; returns the exit status. */
int vm_join(struct vm *vm);
void vm_destroy(struct vm *vm);
/* Register guest memory [gpa, gpa + size) at hva as KVM memslot `slot`;
 * size 0 deletes the slot.  0 or -errno (logged by the caller). */
int vm_set_memslot(struct vm *vm, unsigned slot, uint64_t gpa, uint64_t size, void *hva);
/* Raise or lower a GSI line on the in-kernel irqchip. */
void vm_irq_line(struct vm *vm, unsigned irq, int level);
/* Log the registers of a vCPU (error level). */
void vcpu_dump(struct vcpu *cpu);

/* vcpu.c */
int vcpu_init(struct vm *vm, unsigned index);
void *vcpu_thread(void *arg);
void vcpu_kick(struct vcpu *cpu);
int vcpu_signal_setup(void);

/* cpuid.c: the CPUID table for vCPU index (from the VM's filtered table). */
int cpuid_setup(struct vm *vm);
int cpuid_set_vcpu(struct vm *vm, struct vcpu *cpu);

#endif
