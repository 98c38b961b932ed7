// SPDX-License-Identifier: GPL-2.0-only
/*
 * vcpu.c - vCPU set-up and the KVM_RUN loop.
 *
 * Each vCPU thread registers as a guestmm walker, unblocks SIG_VCPU (the
 * kick) and loops in KVM_RUN, dispatching I/O and MMIO exits to the bus.
 * Device handlers run inside a walk section, so any guest memory they
 * touch is translated through guestmm and stays valid until the exit is
 * handled.  Between KVM_RUNs the thread is outside any walk: a writer
 * unmapping memory never waits for a vCPU that is in the guest.
 *
 * Kick: vcpu_kick() sets run->immediate_exit and sends SIG_VCPU; whether
 * the thread is in the guest (the signal forces an exit) or about to enter
 * (immediate_exit makes KVM_RUN return at once), it comes back to user
 * space and looks at the VM's stop and pause requests.
 */
#include "core/vcpu.h"
#include "boot/boot.h"
#include "core/bus.h"
#include "core/cpuid.h"
#include "core/log.h"
#include "core/profile.h"
#include "core/sandbox.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define SIG_VCPU (SIGRTMIN + 1)

/* MSR numbers (Intel SDM vol. 4). */
#define MSR_IA32_TSC 0x10
#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_IA32_MISC_ENABLE_FAST_STRING 0x1ULL
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102

static void sig_vcpu_handler(int sig)
{
	(void)sig; /* only there to interrupt KVM_RUN */
}

int vcpu_signal_setup(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sig_vcpu_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIG_VCPU, &sa, NULL) < 0) {
		log_msg(LOG_ERROR, "sigaction: %s", strerror(errno));
		return -1;
	}
	return 0;
}

void vcpu_kick(struct vcpu *cpu)
{
	atomic_fetch_add_explicit(&cpu->kicks, 1, memory_order_relaxed);
	/* immediate_exit is read by KVM on entry; the signal covers a vCPU
	 * already in the guest. */
	__atomic_store_n(&cpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (cpu->thread)
		pthread_kill(cpu->thread, SIG_VCPU);
}

static void seg_to_kvm(const struct boot_seg *s, struct kvm_segment *k)
{
	k->base = s->base;
	k->limit = s->limit;
	k->selector = s->selector;
	k->type = s->type;
	k->present = s->present;
	k->dpl = s->dpl;
	k->db = s->db;
	k->s = s->s;
	k->l = s->l;
	k->g = s->g;
	k->avl = s->avl;
	k->unusable = s->unusable;
}

static int load_state(struct vcpu *cpu, const struct boot_cpu *b)
{
	struct kvm_sregs sregs;
	if (ioctl(cpu->fd, KVM_GET_SREGS, &sregs) < 0)
		return -1;
	seg_to_kvm(&b->cs, &sregs.cs);
	seg_to_kvm(&b->ds, &sregs.ds);
	seg_to_kvm(&b->es, &sregs.es);
	seg_to_kvm(&b->fs, &sregs.fs);
	seg_to_kvm(&b->gs, &sregs.gs);
	seg_to_kvm(&b->ss, &sregs.ss);
	if (b->tr.present || b->tr.type)
		seg_to_kvm(&b->tr, &sregs.tr);
	if (b->ldt.present || b->ldt.type)
		seg_to_kvm(&b->ldt, &sregs.ldt);
	sregs.gdt.base = b->gdt_base;
	sregs.gdt.limit = b->gdt_limit;
	sregs.idt.base = b->idt_base;
	sregs.idt.limit = b->idt_limit;
	sregs.cr0 = b->cr0;
	sregs.cr3 = b->cr3;
	sregs.cr4 = b->cr4;
	sregs.efer = b->efer;
	if (ioctl(cpu->fd, KVM_SET_SREGS, &sregs) < 0)
		return -1;
	struct kvm_regs regs = {
		.rip = b->rip, .rsp = b->rsp, .rflags = b->rflags ? b->rflags : 0x2,
		.rax = b->rax, .rbx = b->rbx, .rcx = b->rcx, .rdx = b->rdx,
		.rsi = b->rsi, .rdi = b->rdi,
	};
	if (ioctl(cpu->fd, KVM_SET_REGS, &regs) < 0)
		return -1;
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
	return ioctl(cpu->fd, KVM_SET_FPU, &fpu);
}

static int set_msrs(struct vcpu *cpu)
{
	static const uint32_t zero[] = {
		MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP, MSR_IA32_SYSENTER_EIP,
		MSR_STAR, MSR_CSTAR, MSR_KERNEL_GS_BASE, MSR_SYSCALL_MASK, MSR_LSTAR,
		MSR_IA32_TSC,
	};
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[16];
	} m;
	memset(&m, 0, sizeof(m));
	unsigned n = 0;
	for (; n < sizeof(zero) / sizeof(zero[0]); n++)
		m.e[n].index = zero[n];
	m.e[n].index = MSR_IA32_MISC_ENABLE;
	m.e[n++].data = MSR_IA32_MISC_ENABLE_FAST_STRING;
	m.h.nmsrs = n;
	int ret = ioctl(cpu->fd, KVM_SET_MSRS, &m);
	if (ret != (int)n)
		log_msg(LOG_DEBUG, "vcpu%u: KVM_SET_MSRS set %d of %u", cpu->index, ret, n);
	return 0;
}

/* LINT0 as ExtINT, LINT1 as NMI: the virtual-wire set-up Linux expects. */
static int set_lapic(struct vcpu *cpu)
{
	struct kvm_lapic_state l;
	if (ioctl(cpu->fd, KVM_GET_LAPIC, &l) < 0)
		return -1;
	uint32_t *lvt0 = (uint32_t *)&l.regs[0x350], *lvt1 = (uint32_t *)&l.regs[0x360];
	*lvt0 = (*lvt0 & ~0x700u) | (7u << 8);  /* ExtINT */
	*lvt1 = (*lvt1 & ~0x700u) | (4u << 8);  /* NMI */
	return ioctl(cpu->fd, KVM_SET_LAPIC, &l);
}

int vcpu_init(struct vm *vm, unsigned index)
{
	struct vcpu *cpu = &vm->vcpus[index];
	cpu->vm = vm;
	cpu->index = index;
	cpu->fd = ioctl(vm->fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (cpu->fd < 0) {
		log_msg(LOG_ERROR, "KVM_CREATE_VCPU %u: %s", index, strerror(errno));
		return -1;
	}
	cpu->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, cpu->fd, 0);
	if (cpu->run == MAP_FAILED) {
		cpu->run = NULL;
		log_msg(LOG_ERROR, "mmap kvm_run: %s", strerror(errno));
		return -1;
	}
	if (cpuid_set_vcpu(vm, cpu) < 0 || set_msrs(cpu) < 0 || set_lapic(cpu) < 0) {
		log_msg(LOG_ERROR, "vcpu%u set-up: %s", index, strerror(errno));
		return -1;
	}
	return 0;
}

/* Registers are loaded on the vCPU's own thread once the kernel is loaded. */
static int vcpu_boot(struct vcpu *cpu)
{
	struct vm *vm = cpu->vm;
	struct boot_cpu b;
	if (!boot_cpu_state(&vm->plan, cpu->index, &b))
		return 0; /* an AP: waits for INIT/SIPI in the kernel */
	if (load_state(cpu, &b) < 0) {
		log_msg(LOG_ERROR, "vcpu%u: loading the boot state: %s", cpu->index, strerror(errno));
		return -1;
	}
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
	if (ioctl(cpu->fd, KVM_SET_MP_STATE, &mp) < 0) {
		log_msg(LOG_ERROR, "vcpu%u: KVM_SET_MP_STATE: %s", cpu->index, strerror(errno));
		return -1;
	}
	return 0;
}

void vcpu_dump(struct vcpu *cpu)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	if (ioctl(cpu->fd, KVM_GET_REGS, &r) < 0 || ioctl(cpu->fd, KVM_GET_SREGS, &s) < 0) {
		log_msg(LOG_ERROR, "vcpu%u: cannot read registers: %s", cpu->index, strerror(errno));
		return;
	}
	log_msg(LOG_ERROR, "vcpu%u registers:\n"
		"  rip %016llx rsp %016llx rflags %016llx\n"
		"  rax %016llx rbx %016llx rcx %016llx rdx %016llx\n"
		"  rsi %016llx rdi %016llx rbp %016llx\n"
		"  r8  %016llx r9  %016llx r10 %016llx r11 %016llx\n"
		"  r12 %016llx r13 %016llx r14 %016llx r15 %016llx\n"
		"  cr0 %016llx cr2 %016llx cr3 %016llx cr4 %016llx efer %016llx\n"
		"  cs %04x base %llx  ss %04x  gdt %llx/%x  idt %llx/%x",
		cpu->index, r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi,
		r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, s.cr0, s.cr2, s.cr3,
		s.cr4, s.efer, s.cs.selector, s.cs.base, s.ss.selector, s.gdt.base, s.gdt.limit,
		s.idt.base, s.idt.limit);
}

/* Park while a pause is requested.  Returns false if the VM is stopping. */
/* Between two KVM_RUNs: park for a pause, or return false to stop.  The
 * fast path (nothing requested, every exit) takes no lock: the flags are
 * written under vm->lock with release stores, then the vCPU is kicked, so
 * the KVM_RUN that the kick ends is followed by a load that sees them. */
static bool check_requests(struct vcpu *cpu)
{
	struct vm *vm = cpu->vm;
	if (!__atomic_load_n(&vm->pause_requested, __ATOMIC_ACQUIRE) &&
	    !__atomic_load_n(&vm->stop_requested, __ATOMIC_ACQUIRE))
		return true;
	/* Before parking: an IN or an MMIO read the last exit handled has its
	 * result in kvm_run, not yet in the registers (KVM puts it there on
	 * the next KVM_RUN).  A snapshot of a paused VM must see it done, so
	 * re-enter once with immediate_exit set: KVM completes the pending
	 * instruction and returns EINTR before running the guest (the KVM API
	 * documentation's way to finish pending operations).  Outside any
	 * lock; the kick's own immediate_exit may already be set. */
	if (cpu->io_pending && !__atomic_load_n(&vm->stop_requested, __ATOMIC_ACQUIRE)) {
		cpu->io_pending = false;
		__atomic_store_n(&cpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		if (ioctl(cpu->fd, KVM_RUN, 0) == 0 || (errno != EINTR && errno != EAGAIN))
			log_msg(LOG_WARN, "vcpu%u: completing its pending I/O before a pause: %s",
				cpu->index, strerror(errno));
		__atomic_store_n(&cpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	}
	pthread_mutex_lock(&vm->lock);
	if (vm->pause_requested && !vm->stop_requested) {
		vm->parked++;
		pthread_cond_broadcast(&vm->cond);
		while (vm->pause_requested && !vm->stop_requested)
			pthread_cond_wait(&vm->cond, &vm->lock);
		vm->parked--;
	}
	bool go = !vm->stop_requested;
	pthread_mutex_unlock(&vm->lock);
	return go;
}

static void handle_io(struct vcpu *cpu)
{
	struct kvm_run *run = cpu->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool wr = run->io.direction == KVM_EXIT_IO_OUT;
	atomic_fetch_add_explicit(&cpu->io_exits, 1, memory_order_relaxed);
	for (uint32_t i = 0; i < run->io.count; i++) {
		bus_dispatch(BUS_PIO, cpu, run->io.port, data, run->io.size, wr);
		data += run->io.size;
	}
}

static void handle_mmio(struct vcpu *cpu)
{
	struct kvm_run *run = cpu->run;
	atomic_fetch_add_explicit(&cpu->mmio_exits, 1, memory_order_relaxed);
	unsigned len = run->mmio.len <= 8 ? run->mmio.len : 8;
	bus_dispatch(BUS_MMIO, cpu, run->mmio.phys_addr, run->mmio.data, len, run->mmio.is_write);
}

void *vcpu_thread(void *arg)
{
	struct vcpu *cpu = arg;
	struct vm *vm = cpu->vm;

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIG_VCPU);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	cpu->walker = gmm_walker_register(vm->mem);
	if (!cpu->walker) {
		vm_stop(vm, EXIT_VMM_ERROR, "vcpu%u: guestmm: %s", cpu->index, gmm_last_error());
		goto out;
	}
	if (!vm->cfg.restore && vcpu_boot(cpu) < 0) {
		vm_stop(vm, EXIT_VMM_ERROR, "vcpu%u: cannot load its boot state", cpu->index);
		goto out;
	}
	sandbox_enter(SANDBOX_VCPU);
	while (check_requests(cpu)) {
		cpu->io_pending = false;   /* this KVM_RUN completes it */
		int ret = ioctl(cpu->fd, KVM_RUN, 0);
		int err = errno;
		atomic_fetch_add_explicit(&cpu->exits, 1, memory_order_relaxed);
		if (ret < 0) {
			if (err == EINTR || err == EAGAIN) {
				/* A signal (a vcpu_kick, a guestmm kick) took
				 * the vCPU out of the guest. */
				atomic_fetch_add_explicit(&cpu->intr_exits, 1, memory_order_relaxed);
				__atomic_store_n(&cpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
				profile_sample(cpu);
				continue;
			}
			vcpu_dump(cpu);
			vm_stop(vm, EXIT_VMM_ERROR, "vcpu%u: KVM_RUN: %s", cpu->index, strerror(err));
			break;
		}
		/* Device emulation translates guest memory: one walk section
		 * per exit. */
		gmm_walk_begin(cpu->walker);
		switch (cpu->run->exit_reason) {
		case KVM_EXIT_IO:
			handle_io(cpu);
			cpu->io_pending = true;
			break;
		case KVM_EXIT_MMIO:
			handle_mmio(cpu);
			cpu->io_pending = true;
			break;
		case KVM_EXIT_INTR:
			break;
		case KVM_EXIT_HLT:
			/* Only without an in-kernel irqchip; not ours. */
			break;
		case KVM_EXIT_SHUTDOWN:
			vcpu_dump(cpu);
			vm_stop(vm, EXIT_TRIPLE_FAULT, "vcpu%u: triple fault (KVM_EXIT_SHUTDOWN)", cpu->index);
			break;
		case KVM_EXIT_SYSTEM_EVENT:
			if (cpu->run->system_event.type == KVM_SYSTEM_EVENT_RESET)
				vm->reboot = true;
			vm_stop(vm, EXIT_GUEST_OFF, "guest %s",
				cpu->run->system_event.type == KVM_SYSTEM_EVENT_RESET ? "reset" : "power-off");
			break;
		case KVM_EXIT_FAIL_ENTRY:
			vcpu_dump(cpu);
			vm_stop(vm, EXIT_GUEST_ERROR, "vcpu%u: entry failed (hardware reason 0x%llx)",
				cpu->index,
				(unsigned long long)cpu->run->fail_entry.hardware_entry_failure_reason);
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			vcpu_dump(cpu);
			vm_stop(vm, EXIT_GUEST_ERROR, "vcpu%u: KVM internal error, suberror %u%s",
				cpu->index, cpu->run->internal.suberror,
				cpu->run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ?
					" (instruction emulation failed)" : "");
			break;
		default:
			vcpu_dump(cpu);
			vm_stop(vm, EXIT_GUEST_ERROR, "vcpu%u: unhandled exit reason %u", cpu->index,
				cpu->run->exit_reason);
			break;
		}
		gmm_walk_end(cpu->walker);
	}
out:
	if (cpu->walker)
		gmm_walker_unregister(cpu->walker);
	cpu->walker = NULL;
	pthread_mutex_lock(&vm->lock);
	vm->running--;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

/* ---- run control (vcpu.h) ---------------------------------------------- */

void vm_stop(struct vm *vm, int status, const char *fmt, ...)
{
	pthread_mutex_lock(&vm->lock);
	if (!vm->stop_requested) {
		/* Release: vCPUs read it without the lock (check_requests). */
		__atomic_store_n(&vm->stop_requested, true, __ATOMIC_RELEASE);
		vm->exit_status = status;
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(vm->exit_reason, sizeof(vm->exit_reason), fmt, ap);
		va_end(ap);
		uint64_t one = 1;
		if (write(vm->stop_eventfd, &one, sizeof(one)) < 0)
			log_msg(LOG_WARN, "stop eventfd: %s", strerror(errno));
	}
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->cfg.nr_vcpus; i++)
		if (vm->vcpus[i].run)
			vcpu_kick(&vm->vcpus[i]);
}

int vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_RUNNING) {
		pthread_mutex_unlock(&vm->lock);
		return -EINVAL;
	}
	__atomic_store_n(&vm->pause_requested, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->cfg.nr_vcpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	pthread_mutex_lock(&vm->lock);
	while (vm->parked < vm->running && !vm->stop_requested)
		pthread_cond_wait(&vm->cond, &vm->lock);
	vm->state = vm->stop_requested ? vm->state : VM_PAUSED;
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_PAUSED) {
		pthread_mutex_unlock(&vm->lock);
		return -EINVAL;
	}
	__atomic_store_n(&vm->pause_requested, false, __ATOMIC_RELEASE);
	vm->state = VM_RUNNING;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int vm_join(struct vm *vm)
{
	for (unsigned i = 0; i < vm->cfg.nr_vcpus; i++)
		if (vm->vcpus[i].thread)
			pthread_join(vm->vcpus[i].thread, NULL);
	pthread_mutex_lock(&vm->lock);
	vm->state = VM_STOPPED;
	int status = vm->exit_status;
	pthread_mutex_unlock(&vm->lock);
	return status;
}
