// SPDX-License-Identifier: GPL-2.0-only
/*
 * dirty_log.c - KVM's dirty log over the VM's memslots (dirty_log.h).
 *
 * Flavour: the classic KVM_GET_DIRTY_LOG, which in one ioctl per slot
 * swaps KVM's bitmap for zeros and write-protects the pages it reported
 * (under KVM's mmu_lock), not KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2's GET +
 * KVM_CLEAR_DIRTY_LOG.  Why:
 *   - the ordering is one step: a write either set its bit before the swap
 *     (this harvest) or faults on the re-protected page and sets it after
 *     (a later one).  With the manual flavour the pages stay writable
 *     between GET and CLEAR, so a page may be read only after its CLEAR
 *     (the write in between sets no new bit): two ioctls per slot and a
 *     rule for the caller.
 *   - what the manual flavour saves is the write-protection of a whole
 *     slot at once -- at vm_dirty_log_start and for every dirty page in a
 *     GET, under mmu_lock, vCPU faults waiting -- by clearing in chunks
 *     and (KVM_DIRTY_LOG_INITIALLY_SET) protecting lazily.  That pays off
 *     for guests of hundreds of GiB; the harvest timings of 1 and 4 GiB
 *     slots are in tests/vmm/test_dirty_log.c's output.  Enabling it is a
 *     KVM_ENABLE_CAP on the VM and a CLEAR after each GET here.
 *
 * Locking (vm_types.h, struct vm_memslots): harvest_lock, then lock.
 * slots.lock is held across each KVM ioctl that reads or changes a slot,
 * so the registry always matches KVM, a slot vm_set_memslot creates
 * meanwhile gets the flag in its own ioctl (no window where it is
 * unlogged), and a slot cannot be deleted and made again larger between
 * its look-up and its KVM_GET_DIRTY_LOG (KVM would write the new slot's
 * bitmap over our smaller buffer).  fn runs with neither held, so the
 * virtio-mem thread's vm_set_memslot waits at most one slot's ioctl.
 *
 * Memory: one bitmap buffer, one bit per 4 KiB page of the largest slot
 * harvested (32 KiB per GiB), kept between harvests and freed at stop.
 */
#include "core/dirty_log.h"
#include "core/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define DIRTY_PAGE 4096ULL

/* 64-bit words of a slot's bitmap: KVM rounds up to whole longs. */
static size_t bitmap_words(uint64_t size)
{
	return (size_t)((size / DIRTY_PAGE + 63) / 64);
}

/* Set or clear the log flag of registry entry s in KVM (slots.lock held). */
static int set_flags(struct vm *vm, struct vm_memslot *s, uint32_t flags)
{
	struct kvm_userspace_memory_region mr = {
		.slot = s->slot, .flags = flags, .guest_phys_addr = s->gpa,
		.memory_size = s->size, .userspace_addr = (uint64_t)(uintptr_t)s->hva,
	};
	if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &mr) < 0)
		return -errno;
	s->flags = flags;
	return 0;
}

/*
 * Takes slots.lock.  The flag goes on slot by slot; a slot's log starts
 * empty when KVM allocates its bitmap, and KVM write-protects the slot
 * (splitting huge mappings as the guest writes).  On a failure the slots
 * done so far get their flags back, and logging stays off.
 */
int vm_dirty_log_start(struct vm *vm)
{
	struct vm_memslots *m = &vm->slots;
	pthread_mutex_lock(&m->lock);
	int err = 0;
	if (m->logging) {
		err = -EBUSY;
		goto out;
	}
	unsigned i;
	for (i = 0; i < m->n; i++) {
		err = set_flags(vm, &m->v[i], m->v[i].flags | KVM_MEM_LOG_DIRTY_PAGES);
		if (err < 0)
			break;
	}
	if (err < 0) {
		log_msg(LOG_ERROR, "dirty log: KVM_MEM_LOG_DIRTY_PAGES on memslot %u: %s",
			m->v[i].slot, strerror(-err));
		while (i-- > 0) {
			int e = set_flags(vm, &m->v[i], m->v[i].flags & ~KVM_MEM_LOG_DIRTY_PAGES);
			if (e < 0)
				log_msg(LOG_WARN, "dirty log: memslot %u keeps logging: %s",
					m->v[i].slot, strerror(-e));
		}
		goto out;
	}
	m->logging = true;
out:
	pthread_mutex_unlock(&m->lock);
	return err;
}

/*
 * Takes harvest_lock for the whole call (the buffer is the harvest's),
 * slots.lock around each slot's look-up and KVM_GET_DIRTY_LOG.  Slots are
 * visited in slot order by "the first slot after the last one done", so a
 * slot created or deleted between two slots' ioctls is handled: one
 * created before the cursor waits for the next harvest (its log starts
 * clean, it loses nothing), one deleted is skipped.
 */
int vm_dirty_log_harvest(struct vm *vm,
			 void (*fn)(void *arg, uint64_t gpa, const uint64_t *bits, uint64_t npages),
			 void *arg)
{
	struct vm_memslots *m = &vm->slots;
	int err = 0;
	pthread_mutex_lock(&m->harvest_lock);
	for (uint64_t next = 0;;) {
		pthread_mutex_lock(&m->lock);
		if (!m->logging) {
			pthread_mutex_unlock(&m->lock);
			err = -EINVAL;
			break;
		}
		unsigned i = 0;
		while (i < m->n && m->v[i].slot < next)
			i++;
		if (i == m->n) {
			pthread_mutex_unlock(&m->lock);
			break;
		}
		struct vm_memslot s = m->v[i];
		size_t words = bitmap_words(s.size);
		if (words > m->bitmap_words) {
			uint64_t *b = realloc(m->bitmap, words * sizeof(uint64_t));
			if (!b) {
				pthread_mutex_unlock(&m->lock);
				err = -ENOMEM;
				break;
			}
			m->bitmap = b;
			m->bitmap_words = words;
		}
		struct kvm_dirty_log dl = { .slot = s.slot, .dirty_bitmap = m->bitmap };
		if (ioctl(vm->fd, KVM_GET_DIRTY_LOG, &dl) < 0) {
			err = -errno;
			pthread_mutex_unlock(&m->lock);
			log_msg(LOG_ERROR, "dirty log: KVM_GET_DIRTY_LOG on memslot %u: %s", s.slot,
				strerror(-err));
			break;
		}
		pthread_mutex_unlock(&m->lock);
		fn(arg, s.gpa, m->bitmap, s.size / DIRTY_PAGE);
		next = (uint64_t)s.slot + 1;
	}
	pthread_mutex_unlock(&m->harvest_lock);
	return err;
}

/* Takes harvest_lock (a harvest under way finishes first), then slots.lock. */
void vm_dirty_log_stop(struct vm *vm)
{
	struct vm_memslots *m = &vm->slots;
	pthread_mutex_lock(&m->harvest_lock);
	pthread_mutex_lock(&m->lock);
	if (m->logging) {
		for (unsigned i = 0; i < m->n; i++) {
			struct vm_memslot *s = &m->v[i];
			if (!(s->flags & KVM_MEM_LOG_DIRTY_PAGES))
				continue;
			int err = set_flags(vm, s, s->flags & ~KVM_MEM_LOG_DIRTY_PAGES);
			if (err < 0)
				log_msg(LOG_WARN, "dirty log: memslot %u keeps logging: %s", s->slot,
					strerror(-err));
		}
		m->logging = false;
	}
	free(m->bitmap);
	m->bitmap = NULL;
	m->bitmap_words = 0;
	pthread_mutex_unlock(&m->lock);
	pthread_mutex_unlock(&m->harvest_lock);
}

/* No lock: a VM of its own, gone before the return. */
bool vm_dirty_log_supported(struct vm *vm)
{
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) <= 0)
		return false;
	int fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (fd < 0)
		return false;
	bool ok = false;
	void *page = mmap(NULL, DIRTY_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page != MAP_FAILED) {
		struct kvm_userspace_memory_region mr = {
			.slot = 0, .flags = KVM_MEM_LOG_DIRTY_PAGES, .memory_size = DIRTY_PAGE,
			.userspace_addr = (uint64_t)(uintptr_t)page,
		};
		uint64_t bits = 0;
		struct kvm_dirty_log dl = { .slot = 0, .dirty_bitmap = &bits };
		ok = ioctl(fd, KVM_SET_USER_MEMORY_REGION, &mr) == 0 &&
		     ioctl(fd, KVM_GET_DIRTY_LOG, &dl) == 0;
		munmap(page, DIRTY_PAGE);
	}
	close(fd);
	return ok;
}
