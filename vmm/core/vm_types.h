/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vm_types.h - the VM and vCPU objects as vm.c, vcpu.c and cpuid.c share
 * them, and the exit statuses of `vmm run`.  Types only: each of the three
 * includes this instead of another's header, so vm.c -> vcpu.c -> cpuid.c
 * is a line, not a circle.
 */
#ifndef VMM_VM_TYPES_H
#define VMM_VM_TYPES_H

#include "boot/boot_types.h"

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
	_Atomic bool sample_req;       /* the guest profiler wants a sample (profile.c) */
	/* The last exit was port I/O or MMIO: KVM completes it (an IN's or a
	 * read's data into the registers) only at the next KVM_RUN.  vCPU
	 * thread only (vcpu.c: finish_pending_io before a pause parks it). */
	bool io_pending;
};

enum vm_state { VM_CREATED, VM_RUNNING, VM_PAUSED, VM_STOPPED };

/* One KVM memslot as vm_set_memslot registered it. */
struct vm_memslot {
	unsigned slot;
	uint64_t gpa, size;
	void *hva;
	uint32_t flags;          /* as KVM has them: KVM_MEM_LOG_DIRTY_PAGES while logging */
};

/* Every memslot of the VM (vm.c's vm_set_memslot keeps it; dirty_log.c
 * flips their flags and harvests them).  Lock order: harvest_lock, then
 * lock; never with vm->lock. */
struct vm_memslots {
	/* The registry and `logging`.  Held across the KVM ioctl that changes
	 * a slot, so the registry is what KVM has, and across a slot's
	 * KVM_GET_DIRTY_LOG, so the slot cannot change size under it. */
	pthread_mutex_t lock;
	struct vm_memslot *v;    /* sorted by slot number */
	unsigned n, cap;
	bool logging;            /* dirty logging on: every slot has the flag */
	/* One harvest at a time: the bitmap buffer (dirty_log.c), as large as
	 * the largest slot harvested so far needs; freed by vm_dirty_log_stop
	 * and vm_destroy. */
	pthread_mutex_t harvest_lock;
	uint64_t *bitmap;
	size_t bitmap_words;
};

struct vm_config {
	uint64_t mem_size;
	unsigned nr_vcpus;
	enum gmm_backing backing;
	enum gmm_strategy strategy;
	bool prefault;
	int cpuid_filter;        /* -1 auto, 0 off, 1 on */
	struct boot_config boot;
	/* A VM for a restore (issue 16, vm_state.h): vm_create loads no kernel
	 * and writes no guest memory (boot is unused, plan stays zeroed), and
	 * the vCPU threads load no boot registers: the state comes from
	 * vm_state_restore, called before vm_start. */
	bool restore;
	/* vm_start starts the vCPU threads parked, the VM in VM_PAUSED:
	 * vm_resume lets them run (a restored VM waits for its resume). */
	bool start_paused;
	/* A local migration's destination (issue 17): RAM regions map these
	 * fds (the source's memfd/hugetlb/file, by the region's GPA) instead
	 * of new memory.  The caller owns the fds (guestmm dups them). */
	struct { uint64_t gpa; int fd; } shared_ram[4];
	unsigned nshared_ram;
};

struct vm {
	struct vm_config cfg;
	int kvm_fd, fd;
	int run_size;
	struct gmm_vm *mem;
	struct gmm_region *ram_low, *ram_high;
	struct vm_memslots slots;
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
	/* An on-demand restore still serving faults (snapshot.c starts it;
	 * vm_destroy stops it before guest memory goes), or NULL. */
	struct gmm_ondemand *ondemand;
};

#endif
