// SPDX-License-Identifier: GPL-2.0-only
/*
 * vm.c - a KVM VM backed by guestmm: creation, memory, lifecycle.
 *
 * Creation order matters and each step fails with one clear line:
 *   /dev/kvm, API version 12, every capability used  ->  guest RAM from
 *   guestmm (regions below and above the 3 GiB-4 GiB MMIO hole) registered
 *   as memslots  ->  TSS, in-kernel irqchip and PIT  ->  CPUID table  ->
 *   vCPUs  ->  kernel loaded through guestmm (not for a VM created for a
 *   restore, cfg.restore: its memory and registers come from a snapshot).
 *
 * Locking: vm->lock guards the lifecycle fields (state, stop/pause
 * requests, counters); vCPU threads take it only to park and to finish.
 * vm->slots.lock guards the memslot registry (vm_set_memslot, below; the
 * dirty log, dirty_log.c, reads and flags it); the two are never nested.
 */
#include "core/vm.h"
#include "core/cpuid.h"
#include "core/log.h"
#include "core/size.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define TSS_ADDR 0xfffbd000ULL
#define IDENTITY_MAP_ADDR 0xfffbc000ULL

static const struct { int cap; const char *name; } required_caps[] = {
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
	{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
	{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
	{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
	{ KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE" },
};

static int kvm_open(struct vm *vm)
{
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		log_msg(LOG_ERROR, "cannot open /dev/kvm: %s%s", strerror(errno),
			errno == ENOENT ? " (no KVM on this machine: load kvm_intel/kvm_amd)" :
			errno == EACCES ? " (add yourself to the kvm group)" : "");
		return -1;
	}
	int api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		log_msg(LOG_ERROR, "KVM API version %d, need %d", api, KVM_API_VERSION);
		return -1;
	}
	for (size_t i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]); i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0) {
			log_msg(LOG_ERROR, "KVM lacks %s, which vmm needs", required_caps[i].name);
			return -1;
		}
	}
	int max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max <= 0)
		max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max > 0 && vm->cfg.nr_vcpus > (unsigned)max) {
		log_msg(LOG_ERROR, "--vcpus %u: this KVM supports at most %d", vm->cfg.nr_vcpus, max);
		return -1;
	}
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	vm->fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->fd < 0 || vm->run_size <= 0) {
		log_msg(LOG_ERROR, "KVM_CREATE_VM: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void progress(void *arg, uint64_t done, uint64_t total)
{
	(void)arg;
	log_msg(LOG_DEBUG, "prefault %llu%%", (unsigned long long)(done * 100 / total));
}

static int add_ram(struct vm *vm, uint64_t gpa, uint64_t size, const char *name,
		   struct gmm_region **out, unsigned slot)
{
	struct gmm_region_spec spec = {
		.gpa = gpa, .size = size, .backing = vm->cfg.backing, .name = name,
		.flags = vm->cfg.prefault ? GMM_REGION_PREFAULT : 0, .progress = progress,
	};
	for (unsigned i = 0; i < vm->cfg.nshared_ram; i++) {
		if (vm->cfg.shared_ram[i].gpa == gpa) {
			spec.flags = GMM_REGION_FD;   /* the source's memory: no prefault */
			spec.fd = vm->cfg.shared_ram[i].fd;
		}
	}
	if (gmm_region_add(vm->mem, &spec, out) < 0) {
		log_msg(LOG_ERROR, "guest RAM: %s", gmm_last_error());
		return -1;
	}
	struct gmm_region_info info;
	gmm_region_info(*out, &info);
	int err = vm_set_memslot(vm, slot, gpa, size, info.hva);
	if (err < 0) {
		log_msg(LOG_ERROR, "KVM_SET_USER_MEMORY_REGION (%s): %s", name, strerror(-err));
		return -1;
	}
	return 0;
}

/* The registry entry of `slot`, or where it goes (vm->slots.lock held). */
static unsigned slot_index(const struct vm_memslots *m, unsigned slot)
{
	unsigned lo = 0, hi = m->n;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (m->v[mid].slot < slot)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Any thread: the main thread (RAM at creation, snapshot loads) and the
 * virtio-mem thread (its chunks, while the VM runs).  vm->slots.lock is
 * held across the ioctl: the registry changes only if KVM did, and a slot
 * created while dirty logging is on (dirty_log.c) gets
 * KVM_MEM_LOG_DIRTY_PAGES in the same ioctl, so no write to it escapes the
 * log.  The registry's room is made before the ioctl: a failed allocation
 * leaves KVM untouched.
 */
int vm_set_memslot(struct vm *vm, unsigned slot, uint64_t gpa, uint64_t size, void *hva)
{
	struct vm_memslots *m = &vm->slots;
	pthread_mutex_lock(&m->lock);
	int err = 0;
	if (size && m->n == m->cap) {
		unsigned cap = m->cap ? 2 * m->cap : 8;
		struct vm_memslot *v = realloc(m->v, cap * sizeof(*v));
		if (!v) {
			err = -ENOMEM;
			goto out;
		}
		m->v = v;
		m->cap = cap;
	}
	struct kvm_userspace_memory_region mr = {
		.slot = slot, .guest_phys_addr = gpa, .memory_size = size,
		.flags = size && m->logging ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		.userspace_addr = size ? (uint64_t)(uintptr_t)hva : 0,
	};
	if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &mr) < 0) {
		err = -errno;
		goto out;
	}
	unsigned i = slot_index(m, slot);
	bool found = i < m->n && m->v[i].slot == slot;
	if (!size) {
		if (found) {
			memmove(&m->v[i], &m->v[i + 1], (m->n - i - 1) * sizeof(m->v[0]));
			m->n--;
		}
	} else {
		if (!found) {
			memmove(&m->v[i + 1], &m->v[i], (m->n - i) * sizeof(m->v[0]));
			m->n++;
		}
		m->v[i] = (struct vm_memslot){ .slot = slot, .gpa = gpa, .size = size, .hva = hva,
					       .flags = mr.flags };
	}
out:
	pthread_mutex_unlock(&m->lock);
	return err;
}

void vm_ram_coverage(struct vm *vm, struct gmm_coverage *c)
{
	struct gmm_coverage c2 = { 0 };
	memset(c, 0, sizeof(*c));
	if (vm->ram_low)
		gmm_region_coverage(vm->ram_low, c);
	if (vm->ram_high) {
		gmm_region_coverage(vm->ram_high, &c2);
		c->size += c2.size;
		c->resident += c2.resident;
		c->huge += c2.huge;
		c->method = c->method ? c->method : c2.method;
	}
}

static int setup_memory(struct vm *vm)
{
	struct gmm_vm_config gc;
	gmm_vm_config_init(&gc);
	gc.strategy = vm->cfg.strategy;
	if (gmm_vm_create(&gc, &vm->mem) < 0) {
		log_msg(LOG_ERROR, "guestmm: %s", gmm_last_error());
		return -1;
	}
	uint64_t low = vm->cfg.mem_size < BOOT_LOW_RAM_MAX ? vm->cfg.mem_size : BOOT_LOW_RAM_MAX;
	uint64_t high = vm->cfg.mem_size - low;
	uint64_t t0 = now_ns();
	if (add_ram(vm, 0, low, "ram-low", &vm->ram_low, 0) < 0)
		return -1;
	if (high && add_ram(vm, BOOT_HIGH_RAM_BASE, high, "ram-high", &vm->ram_high, 1) < 0)
		return -1;
	uint64_t t1 = now_ns();
	vm->ram.low_size = low;
	vm->ram.high_size = high;

	/* The memory report: measured, not assumed. */
	struct gmm_coverage c;
	vm_ram_coverage(vm, &c);
	char b1[32], b2[32], b3[32];
	log_msg(LOG_INFO, "memory: %s %s, %s resident, %s in huge pages (%.1f%% of RAM, %s)%s%.1f ms",
		format_size(vm->cfg.mem_size, b1, sizeof(b1)), gmm_backing_name(vm->cfg.backing),
		format_size(c.resident, b2, sizeof(b2)), format_size(c.huge, b3, sizeof(b3)),
		c.size ? 100.0 * (double)c.huge / (double)c.size : 0.0, c.method,
		vm->cfg.prefault ? ", prefault " : ", mapped in ", (double)(t1 - t0) / 1e6);
	return 0;
}

static int setup_irqchip(struct vm *vm)
{
	if (ioctl(vm->fd, KVM_SET_TSS_ADDR, TSS_ADDR) < 0) {
		log_msg(LOG_ERROR, "KVM_SET_TSS_ADDR: %s", strerror(errno));
		return -1;
	}
	uint64_t idmap = IDENTITY_MAP_ADDR;
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0)
		ioctl(vm->fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap);
	if (ioctl(vm->fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		log_msg(LOG_ERROR, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
		return -1;
	}
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	if (ioctl(vm->fd, KVM_CREATE_PIT2, &pit) < 0) {
		log_msg(LOG_ERROR, "KVM_CREATE_PIT2: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int load_kernel(struct vm *vm)
{
	char err[512];
	/* The loader writes through guestmm: this thread walks for it. */
	vm->ram.w = gmm_walker_register(vm->mem);
	if (!vm->ram.w) {
		log_msg(LOG_ERROR, "guestmm: %s", gmm_last_error());
		return -1;
	}
	int ret = boot_load(&vm->ram, &vm->cfg.boot, &vm->plan, err, sizeof(err));
	gmm_walker_unregister(vm->ram.w);
	vm->ram.w = NULL;
	if (ret < 0) {
		log_msg(LOG_ERROR, "%s", err);
		return -1;
	}
	log_msg(LOG_INFO, "%s", vm->plan.summary);
	return 0;
}

int vm_create(const struct vm_config *cfg, struct vm **out)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return EXIT_VMM_ERROR;
	vm->cfg = *cfg;
	vm->cfg.boot.nr_vcpus = cfg->nr_vcpus;
	vm->kvm_fd = vm->fd = vm->stop_eventfd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	pthread_mutex_init(&vm->slots.lock, NULL);
	pthread_mutex_init(&vm->slots.harvest_lock, NULL);
	vm->stop_eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vm->vcpus = calloc(cfg->nr_vcpus, sizeof(*vm->vcpus));
	*out = NULL;
	int status = EXIT_VMM_ERROR;
	if (!vm->vcpus || vm->stop_eventfd < 0 || vcpu_signal_setup() < 0)
		goto fail;
	if (kvm_open(vm) < 0 || setup_memory(vm) < 0 || setup_irqchip(vm) < 0 ||
	    cpuid_setup(vm) < 0)
		goto fail;
	for (unsigned i = 0; i < cfg->nr_vcpus; i++)
		vm->vcpus[i].fd = -1;
	for (unsigned i = 0; i < cfg->nr_vcpus; i++)
		if (vcpu_init(vm, i) < 0)
			goto fail;
	/* A VM for a restore gets its memory and registers from the snapshot:
	 * nothing is loaded, and no guest byte is written here. */
	if (!cfg->restore && load_kernel(vm) < 0) {
		status = EXIT_USAGE;
		goto fail;
	}
	*out = vm;
	return 0;
fail:
	vm_destroy(vm);
	return status;
}

int vm_start(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->cfg.start_paused) {
		/* The threads find the pause requested before their first
		 * KVM_RUN and park (vcpu.c check_requests); vm_resume, which
		 * wants VM_PAUSED, releases them.  Release: read without the
		 * lock by the vCPUs. */
		__atomic_store_n(&vm->pause_requested, true, __ATOMIC_RELEASE);
		vm->state = VM_PAUSED;
	} else {
		vm->state = VM_RUNNING;
	}
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->cfg.nr_vcpus; i++) {
		struct vcpu *cpu = &vm->vcpus[i];
		pthread_mutex_lock(&vm->lock);
		vm->running++;
		pthread_mutex_unlock(&vm->lock);
		int err = pthread_create(&cpu->thread, NULL, vcpu_thread, cpu);
		if (err) {
			pthread_mutex_lock(&vm->lock);
			vm->running--;
			pthread_mutex_unlock(&vm->lock);
			log_msg(LOG_ERROR, "cannot start vcpu%u: %s", i, strerror(err));
			vm_stop(vm, EXIT_VMM_ERROR, "cannot start vcpu%u", i);
			return -1;
		}
		char name[16];
		snprintf(name, sizeof(name), "vcpu%u", i);
		pthread_setname_np(cpu->thread, name);
	}
	return 0;
}

void vm_irq_line(struct vm *vm, unsigned irq, int level)
{
	struct kvm_irq_level l = { .irq = irq, .level = (uint32_t)level };
	static struct ratelimit rl; /* devices raise lines as often as the guest makes them */
	if (ioctl(vm->fd, KVM_IRQ_LINE, &l) < 0)
		log_ratelimited(&rl, LOG_WARN, "KVM_IRQ_LINE %u: %s", irq, strerror(errno));
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	for (unsigned i = 0; vm->vcpus && i < vm->cfg.nr_vcpus; i++) {
		struct vcpu *cpu = &vm->vcpus[i];
		if (cpu->run)
			munmap(cpu->run, (size_t)vm->run_size);
		if (cpu->fd >= 0)
			close(cpu->fd);
	}
	free(vm->vcpus);
	free(vm->cpuid);
	if (vm->fd >= 0)
		close(vm->fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	/* Every walker (vCPU, device thread) is gone: nothing faults any more. */
	if (vm->ondemand) {
		struct gmm_ondemand_stats os;
		gmm_ondemand_stats(vm->ondemand, &os);
		log_msg(LOG_INFO, "on-demand restore: %llu faults (%llu blocks brought in by them, "
			"holes included), %llu by fill-ahead; %llu blocks hold data; %llu pages "
			"zero-filled; first fault %.0f us, mean %.0f us, max %.0f us; %llu blocks "
			"collapsed to huge pages (%llu failed); %s",
			(unsigned long long)os.faults, (unsigned long long)os.blocks_fault,
			(unsigned long long)os.blocks_fill, (unsigned long long)os.blocks_total,
			(unsigned long long)os.zero_served, (double)os.first_fault_ns / 1e3,
			os.faults ? (double)os.fault_ns_total / (double)os.faults / 1e3 : 0.0,
			(double)os.fault_ns_max / 1e3, (unsigned long long)os.collapsed,
			(unsigned long long)os.collapse_failed, os.done ? "complete" : "not complete");
		gmm_ondemand_stop(vm->ondemand);
	}
	/* After the memslots are gone with the VM fd. */
	gmm_vm_destroy(vm->mem);
	if (vm->stop_eventfd >= 0)
		close(vm->stop_eventfd);
	free(vm->slots.v);
	free(vm->slots.bitmap);
	pthread_mutex_destroy(&vm->slots.lock);
	pthread_mutex_destroy(&vm->slots.harvest_lock);
	pthread_mutex_destroy(&vm->lock);
	pthread_cond_destroy(&vm->cond);
	free(vm);
}
