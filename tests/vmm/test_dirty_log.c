// SPDX-License-Identifier: GPL-2.0-only
/*
 * test_dirty_log.c - KVM's dirty log of the vCPUs' writes
 * (vmm/core/dirty_log.c, issue 17).  Needs /dev/kvm: every test is skipped
 * LOUDLY without it.  The VMs are made with vm_create like `vmm run` does,
 * THP-backed, running the state_dirty image (images/state/dirty.c), which
 * writes exactly the pages the test names through its port and nothing
 * else but its stack (below 1 MiB).  The range the test watches exactly is
 * [16 MiB, 512 MiB): RAM from 16 to 64 MiB and slots the test adds.
 *
 *   pages      pages written before the start are not reported (the logs
 *              start clean, huge mappings made before included); a set of
 *              scattered, consecutive and strided pages is reported
 *              exactly; a second harvest reports none of them; a second
 *              set, overlapping, exactly; stop clears the flag in KVM
 *              (KVM_GET_DIRTY_LOG answers ENOENT), a harvest then fails
 *              with -EINVAL, writes while stopped are not reported after
 *              a new start
 *   new_slot   a slot made by another thread while logging is on gets the
 *              flag and its writes are reported; deleted, it is no longer
 *              harvested; made again and logging stopped, it loses the flag
 *   timing     not asserted: one harvest of a 1 GiB, a 3 GiB and a 4 GiB
 *              slot, clean and after the guest wrote (nearly) every page
 */
#include <criterion/criterion.h>

#include "kvm_test.h"

#include "core/bus.h"
#include "core/dirty_log.h"
#include "core/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)
#define PAGE 4096ULL
#define DIRTY_PORT 0x5e8          /* images/state/dirty.c */
#define WATCH_LO (16 * MiB)       /* the range whose every page is accounted for */
#define WATCH_HI (512 * MiB)
#define WATCH_PAGES ((WATCH_HI - WATCH_LO) / PAGE)
#define NEW_SLOT 9                /* the test's own slot (virtio-mem's start at 8) */
#define NEW_GPA (256 * MiB)
#define NEW_SIZE (8 * MiB)

/* ---- the guest's port: one command at a time ---------------------------- */

static pthread_mutex_t cmd_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cmd_cond = PTHREAD_COND_INITIALIZER;
static uint32_t cmd[3];         /* op, first page, count */
static bool cmd_ready;          /* cmd holds a command the guest has not read */
static bool guest_waiting;      /* the guest is in its op IN, waiting */
static unsigned long guest_asks;/* op INs so far: one more = the last command done */
static unsigned phase;          /* vCPU 0 only: which of the three INs comes next */

static void dirty_io(void *opaque, struct vcpu *cpu, uint64_t off, uint8_t *data, unsigned len,
		     bool is_write)
{
	(void)opaque;
	(void)cpu;
	(void)off;
	if (is_write)
		return;
	uint32_t v = 0;
	pthread_mutex_lock(&cmd_lock);
	if (phase == 0) {
		guest_asks++;
		guest_waiting = true;
		pthread_cond_broadcast(&cmd_cond);
		struct timespec dl;
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += 300;
		while (!cmd_ready)
			if (pthread_cond_timedwait(&cmd_cond, &cmd_lock, &dl))
				break; /* the test is gone: op 0, the guest exits */
		guest_waiting = false;
		if (cmd_ready) {
			v = cmd[0];
			cmd_ready = false;
			phase = v ? 1 : 0;
		}
	} else {
		v = cmd[phase];
		phase = (phase + 1) % 3;
	}
	pthread_mutex_unlock(&cmd_lock);
	memcpy(data, &v, len < 4 ? len : 4);
}

/* Have the guest write pages first, first + stride, ... (count of them)
 * and wait until it has: it is back in its next op IN. */
static void guest_write(uint64_t first, uint64_t count, uint32_t stride)
{
	pthread_mutex_lock(&cmd_lock);
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 300;
	while (!guest_waiting)
		cr_assert_eq(pthread_cond_timedwait(&cmd_cond, &cmd_lock, &dl), 0,
			     "the guest does not ask for a command");
	unsigned long asks = guest_asks;
	cmd[0] = stride << 8 | (count ? 1u : 0u);
	cmd[1] = (uint32_t)first;
	cmd[2] = (uint32_t)count;
	cmd_ready = true;
	pthread_cond_broadcast(&cmd_cond);
	if (count)
		while (guest_asks == asks)
			cr_assert_eq(pthread_cond_timedwait(&cmd_cond, &cmd_lock, &dl), 0,
				     "the guest did not finish its writes");
	pthread_mutex_unlock(&cmd_lock);
}

static void serial_io(void *opaque, struct vcpu *cpu, uint64_t off, uint8_t *data, unsigned len,
		      bool is_write)
{
	(void)opaque;
	(void)cpu;
	if (!is_write)
		memset(data, off == 5 ? 0x60 : 0, len); /* LSR: THR empty */
	else if (off == 0)
		fputc(data[0], stderr);
}

static struct vm *boot(uint64_t mem)
{
	const char *image = getenv("VMM_STATE_DIRTY_IMAGE");
	cr_assert_not_null(image, "VMM_STATE_DIRTY_IMAGE is not set (meson sets it)");
	bus_reset();
	cr_assert_eq(bus_register(BUS_PIO, 0x3f8, 8, serial_io, NULL, "serial"), 0);
	cr_assert_eq(bus_register(BUS_PIO, 0x501, 4, kvm_test_exit_io, NULL, "debug-exit"), 0);
	cr_assert_eq(bus_register(BUS_PIO, DIRTY_PORT, 4, dirty_io, NULL, "dirty"), 0);
	pthread_mutex_lock(&cmd_lock);
	cmd_ready = guest_waiting = false;
	phase = 0;
	pthread_mutex_unlock(&cmd_lock);
	struct vm_config c = {
		.mem_size = mem, .nr_vcpus = 1, .backing = GMM_BACKING_THP,
		.strategy = GMM_STRATEGY_DEFAULT, .cpuid_filter = -1,
	};
	c.boot.kernel = image;
	struct vm *vm = NULL;
	cr_assert_eq(vm_create(&c, &vm), 0, "vm_create failed (see the log)");
	cr_assert_eq(vm_start(vm), 0);
	return vm;
}

static void shut_down(struct vm *vm)
{
	guest_write(0, 0, 0); /* op 0: the guest exits 0 */
	struct pollfd p = { .fd = vm->stop_eventfd, .events = POLLIN };
	cr_assert_gt(poll(&p, 1, 60 * 1000), 0, "the guest did not exit");
	int status = vm_join(vm);
	cr_assert_eq(status, 0, "exit status %d (%s)", status, vm->exit_reason);
	vm_destroy(vm);
	bus_reset();
}

/* ---- what a harvest reported -------------------------------------------- */

struct seen {
	uint8_t *page;              /* WATCH_PAGES flags: reported */
	uint64_t watched, outside;  /* bits set inside and outside the watched range */
	uint64_t first_outside;     /* the lowest page reported outside it */
	unsigned nslots;
	uint64_t slot_gpa[8], slot_npages[8];
	double t_prev, slot_ms[8];  /* per slot: since the previous fn returned */
};

static void seen_reset(struct seen *s)
{
	if (!s->page)
		s->page = malloc(WATCH_PAGES);
	cr_assert_not_null(s->page);
	memset(s->page, 0, WATCH_PAGES);
	s->watched = s->outside = 0;
	s->nslots = 0;
}

static void collect(void *arg, uint64_t gpa, const uint64_t *bits, uint64_t npages)
{
	struct seen *s = arg;
	double t = now_ms();
	cr_assert_lt(s->nslots, 8);
	s->slot_ms[s->nslots] = t - s->t_prev;
	s->slot_gpa[s->nslots] = gpa;
	s->slot_npages[s->nslots++] = npages;
	for (uint64_t w = 0; w < (npages + 63) / 64; w++) {
		for (uint64_t x = bits[w]; x; x &= x - 1) {
			uint64_t i = w * 64 + (uint64_t)__builtin_ctzll(x);
			cr_assert_lt(i, npages, "bit %llu set beyond the slot's %llu pages",
				     (unsigned long long)i, (unsigned long long)npages);
			uint64_t a = gpa + i * PAGE;
			if (a >= WATCH_LO && a < WATCH_HI) {
				s->page[(a - WATCH_LO) / PAGE] = 1;
				s->watched++;
			} else if (!s->outside++ || a < s->first_outside) {
				s->first_outside = a;
			}
		}
	}
	s->t_prev = now_ms();
}

static void harvest(struct vm *vm, struct seen *s)
{
	seen_reset(s);
	s->t_prev = now_ms();
	cr_assert_eq(vm_dirty_log_harvest(vm, collect, s), 0);
}

/* The reported pages in the watched range are exactly want[] (sorted or
 * not, duplicates allowed). */
static void assert_exactly(const struct seen *s, const uint64_t *want, size_t n, const char *what)
{
	uint8_t *exp = calloc(WATCH_PAGES, 1);
	cr_assert_not_null(exp);
	for (size_t i = 0; i < n; i++)
		exp[(want[i] * PAGE - WATCH_LO) / PAGE] = 1;
	uint64_t missing = 0, extra = 0, first_missing = 0, first_extra = 0;
	for (uint64_t i = 0; i < WATCH_PAGES; i++) {
		if (exp[i] && !s->page[i] && !missing++)
			first_missing = WATCH_LO + i * PAGE;
		if (!exp[i] && s->page[i] && !extra++)
			first_extra = WATCH_LO + i * PAGE;
	}
	free(exp);
	cr_assert_eq(missing, 0, "%s: %llu written pages not reported (the first at %#llx)", what,
		     (unsigned long long)missing, (unsigned long long)first_missing);
	cr_assert_eq(extra, 0, "%s: %llu pages reported that were not written (the first at %#llx)",
		     what, (unsigned long long)extra, (unsigned long long)first_extra);
	fprintf(stderr, "%s: %llu pages reported in the watched range, exactly those written; "
		"%llu outside it", what, (unsigned long long)s->watched,
		(unsigned long long)s->outside);
	if (s->outside)
		fprintf(stderr, ", the first at %#llx", (unsigned long long)s->first_outside);
	fputc('\n', stderr);
}

/* A pseudo-random set of n pages in [lo, hi) (page numbers), the guest
 * made to write each; their numbers appended to out. */
static size_t write_scattered(uint64_t lo, uint64_t hi, size_t n, uint64_t seed, uint64_t *out)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		out[i] = lo + (seed >> 33) % (hi - lo);
		guest_write(out[i], 1, 1);
	}
	return n;
}

static size_t write_run(uint64_t first, uint64_t count, uint32_t stride, uint64_t *out)
{
	guest_write(first, count, stride);
	for (uint64_t i = 0; i < count; i++)
		out[i] = first + i * stride;
	return count;
}

/* The guest's write is in memory: the page's first word is its number. */
static void assert_written(struct vm *vm, const uint64_t *pages, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct vm_memslot *s = NULL;
		for (unsigned k = 0; k < vm->slots.n; k++)
			if (pages[i] * PAGE >= vm->slots.v[k].gpa &&
			    pages[i] * PAGE < vm->slots.v[k].gpa + vm->slots.v[k].size)
				s = &vm->slots.v[k];
		cr_assert_not_null(s, "page %#llx is in no slot", (unsigned long long)pages[i]);
		uint64_t v;
		memcpy(&v, (uint8_t *)s->hva + (pages[i] * PAGE - s->gpa), sizeof(v));
		cr_assert_eq(v, pages[i], "the guest did not write page %#llx",
			     (unsigned long long)pages[i]);
	}
}

/* KVM's own view: has the slot a dirty bitmap (the flag on)? */
static int kvm_get_log(struct vm *vm, unsigned slot, uint64_t npages)
{
	uint64_t *b = calloc((npages + 63) / 64, 8);
	cr_assert_not_null(b);
	struct kvm_dirty_log dl = { .slot = slot, .dirty_bitmap = b };
	int r = ioctl(vm->fd, KVM_GET_DIRTY_LOG, &dl) < 0 ? -errno : 0;
	free(b);
	return r;
}

/* ---- pages ---------------------------------------------------------------- */

Test(dirty_log, pages, .timeout = 600)
{
	NEED_KVM();
	struct vm *vm = boot(64 * MiB);
	cr_assert(vm_dirty_log_supported(vm), "this host cannot log dirty pages");
	cr_assert_eq(vm->slots.n, 1);
	cr_assert_eq(vm->slots.v[0].slot, 0);
	cr_assert_eq(vm->slots.v[0].size, 64 * MiB);
	const uint64_t lo = WATCH_LO / PAGE, hi = 64 * MiB / PAGE;
	uint64_t *w = malloc(8 * 65536);
	cr_assert_not_null(w);
	struct seen s = { 0 };

	/* Before the start: written (THP: huge mappings, writable), not logged. */
	write_run(lo, 1024, 1, w);
	cr_assert_eq(vm_dirty_log_harvest(vm, collect, &s), -EINVAL);
	cr_assert_eq(kvm_get_log(vm, 0, hi), -ENOENT);
	double t0 = now_ms();
	cr_assert_eq(vm_dirty_log_start(vm), 0);
	fprintf(stderr, "start: %.2f ms\n", now_ms() - t0);
	cr_assert_eq(vm_dirty_log_start(vm), -EBUSY);
	cr_assert(vm->slots.v[0].flags & KVM_MEM_LOG_DIRTY_PAGES);
	harvest(vm, &s);
	cr_assert_eq(s.nslots, 1);
	cr_assert_eq(s.slot_gpa[0], 0);
	cr_assert_eq(s.slot_npages[0], hi);
	assert_exactly(&s, NULL, 0, "after the start");

	/* Round 1: scattered (some in the pages written before), a run across
	 * 2 MiB boundaries, a strided run, the range's first and last page. */
	size_t n = 0;
	n += write_scattered(lo, hi, 200, 1, w + n);
	n += write_scattered(lo, lo + 1024, 40, 2, w + n);
	n += write_run(lo + 2000, 1500, 1, w + n);
	n += write_run(lo + 5000, 300, 17, w + n);
	n += write_run(lo, 1, 1, w + n);
	n += write_run(hi - 1, 1, 1, w + n);
	assert_written(vm, w, n);
	harvest(vm, &s);
	assert_exactly(&s, w, n, "round 1");
	harvest(vm, &s);
	assert_exactly(&s, NULL, 0, "round 1, again");

	/* Round 2: some of round 1's pages again (re-protected by the
	 * harvest: their writes must fault again), new ones. */
	size_t n2 = 0;
	uint64_t *w2 = w + n;
	for (size_t i = 0; i < n; i += 7)
		n2 += write_run(w[i], 1, 1, w2 + n2);
	n2 += write_run(lo + 3000, 600, 3, w2 + n2);
	harvest(vm, &s);
	assert_exactly(&s, w2, n2, "round 2");

	/* Stop: the flag off in KVM too; writes meanwhile are not in the
	 * next start's logs. */
	vm_dirty_log_stop(vm);
	cr_assert_eq(vm->slots.v[0].flags & KVM_MEM_LOG_DIRTY_PAGES, 0);
	cr_assert_eq(kvm_get_log(vm, 0, hi), -ENOENT, "KVM still logs after the stop");
	cr_assert_eq(vm_dirty_log_harvest(vm, collect, &s), -EINVAL);
	write_run(lo + 100, 2000, 1, w);
	cr_assert_eq(vm_dirty_log_start(vm), 0);
	harvest(vm, &s);
	assert_exactly(&s, NULL, 0, "after a new start");
	n = write_scattered(lo, hi, 100, 3, w);
	harvest(vm, &s);
	assert_exactly(&s, w, n, "after a new start, round 1");
	vm_dirty_log_stop(vm);
	vm_dirty_log_stop(vm); /* twice: nothing */

	free(s.page);
	free(w);
	shut_down(vm);
}

/* ---- new_slot ---------------------------------------------------------------- */

struct slot_op {
	struct vm *vm;
	uint64_t size;
	void *hva;
	int ret;
};

/* Like virtio-mem's "_mem" thread: vm_set_memslot off the main thread. */
static void *slot_thread(void *arg)
{
	struct slot_op *op = arg;
	op->ret = vm_set_memslot(op->vm, NEW_SLOT, NEW_GPA, op->size, op->hva);
	return NULL;
}

static void set_slot_elsewhere(struct vm *vm, uint64_t size, void *hva)
{
	struct slot_op op = { .vm = vm, .size = size, .hva = hva };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, slot_thread, &op), 0);
	pthread_setname_np(t, "_mem");
	pthread_join(t, NULL);
	cr_assert_eq(op.ret, 0, "vm_set_memslot: %s", strerror(-op.ret));
}

static bool harvested_slot(const struct seen *s, uint64_t gpa)
{
	for (unsigned i = 0; i < s->nslots; i++)
		if (s->slot_gpa[i] == gpa)
			return true;
	return false;
}

Test(dirty_log, new_slot, .timeout = 600)
{
	NEED_KVM();
	struct vm *vm = boot(64 * MiB);
	uint8_t *raw = mmap(NULL, NEW_SIZE + 2 * MiB, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(raw, MAP_FAILED);
	uint8_t *hva = (uint8_t *)(((uintptr_t)raw + 2 * MiB - 1) & ~(uintptr_t)(2 * MiB - 1));
	madvise(hva, NEW_SIZE, MADV_HUGEPAGE);
	uint64_t w[4096];
	struct seen s = { 0 };
	const uint64_t np = NEW_SIZE / PAGE, first = NEW_GPA / PAGE;

	cr_assert_eq(vm_dirty_log_start(vm), 0);
	set_slot_elsewhere(vm, NEW_SIZE, hva);
	cr_assert_eq(vm->slots.n, 2);
	cr_assert_eq(vm->slots.v[1].slot, NEW_SLOT);
	cr_assert(vm->slots.v[1].flags & KVM_MEM_LOG_DIRTY_PAGES,
		  "a slot made while logging has no KVM_MEM_LOG_DIRTY_PAGES");
	harvest(vm, &s);
	cr_assert_eq(s.nslots, 2);
	cr_assert_eq(s.slot_gpa[1], NEW_GPA);
	cr_assert_eq(s.slot_npages[1], np);
	assert_exactly(&s, NULL, 0, "the new slot, before writes");

	size_t n = 0;
	n += write_scattered(first, first + np, 100, 4, w + n);
	n += write_run(first + 512, 600, 1, w + n);
	n += write_scattered(WATCH_LO / PAGE, 64 * MiB / PAGE, 20, 5, w + n);
	assert_written(vm, w, n);
	harvest(vm, &s);
	assert_exactly(&s, w, n, "the new slot");
	harvest(vm, &s);
	assert_exactly(&s, NULL, 0, "the new slot, again");

	/* Deleted: out of the registry, not harvested. */
	set_slot_elsewhere(vm, 0, NULL);
	cr_assert_eq(vm->slots.n, 1);
	harvest(vm, &s);
	cr_assert_eq(s.nslots, 1);
	cr_assert(!harvested_slot(&s, NEW_GPA));

	/* Made again while logging, then the stop takes its flag too. */
	set_slot_elsewhere(vm, NEW_SIZE, hva);
	n = write_run(first, 10, 5, w);
	harvest(vm, &s);
	assert_exactly(&s, w, n, "the slot made again");
	vm_dirty_log_stop(vm);
	cr_assert_eq(vm->slots.v[1].flags & KVM_MEM_LOG_DIRTY_PAGES, 0);
	cr_assert_eq(kvm_get_log(vm, NEW_SLOT, np), -ENOENT, "KVM still logs the new slot");
	/* A slot made with logging off has no flag; the next start gives it. */
	set_slot_elsewhere(vm, 0, NULL);
	set_slot_elsewhere(vm, NEW_SIZE, hva);
	cr_assert_eq(vm->slots.v[1].flags & KVM_MEM_LOG_DIRTY_PAGES, 0);
	cr_assert_eq(vm_dirty_log_start(vm), 0);
	cr_assert(vm->slots.v[1].flags & KVM_MEM_LOG_DIRTY_PAGES);
	n = write_run(first + 7, 3, 1, w);
	harvest(vm, &s);
	assert_exactly(&s, w, n, "a slot of before the start");
	vm_dirty_log_stop(vm);

	free(s.page);
	shut_down(vm);
	munmap(raw, NEW_SIZE + 2 * MiB);
}

/* ---- timing (printed, not asserted) ---------------------------------------- */

/* Harvest times of every slot of vm; the guest writes every page of the
 * slots from index write_from on. */
static void time_slots(struct vm *vm, const char *what, unsigned write_from)
{
	struct seen s = { 0 };
	/* A harvest of logs with nothing new: the floor of every round. */
	double best[8];
	for (int r = 0; r < 3; r++) {
		harvest(vm, &s);
		for (unsigned i = 0; i < s.nslots; i++)
			best[i] = r == 0 || s.slot_ms[i] < best[i] ? s.slot_ms[i] : best[i];
	}
	for (unsigned i = 0; i < s.nslots; i++)
		fprintf(stderr, "timing %s: slot at %#llx, %llu MiB: harvest with nothing dirty "
			"%.3f ms (best of 3)\n", what, (unsigned long long)s.slot_gpa[i],
			(unsigned long long)(s.slot_npages[i] * PAGE / MiB), best[i]);
	/* Every page written (RAM below 4 MiB, the image's own, aside). */
	uint64_t written = 0;
	for (unsigned i = write_from; i < s.nslots; i++) {
		uint64_t first = s.slot_gpa[i] / PAGE, count = s.slot_npages[i];
		if (first < 4 * MiB / PAGE) {
			count -= 4 * MiB / PAGE - first;
			first = 4 * MiB / PAGE;
		}
		double t0 = now_ms();
		guest_write(first, count, 1);
		written += count;
		fprintf(stderr, "timing %s: the guest wrote %llu pages in %.0f ms\n", what,
			(unsigned long long)count, now_ms() - t0);
	}
	harvest(vm, &s);
	for (unsigned i = 0; i < s.nslots; i++)
		fprintf(stderr, "timing %s: slot at %#llx, %llu MiB: harvest after the guest wrote "
			"%s %.3f ms\n", what, (unsigned long long)s.slot_gpa[i],
			(unsigned long long)(s.slot_npages[i] * PAGE / MiB),
			i >= write_from ? "every page" : "nothing (its stack aside)", s.slot_ms[i]);
	cr_assert_geq(s.watched + s.outside, written);
	harvest(vm, &s);
	for (unsigned i = 0; i < s.nslots; i++)
		fprintf(stderr, "timing %s: slot at %#llx: the next harvest, nothing dirty %.3f ms\n",
			what, (unsigned long long)s.slot_gpa[i], s.slot_ms[i]);
	free(s.page);
}

Test(dirty_log, timing, .timeout = 900)
{
	NEED_KVM();
	/* 1 GiB of RAM: slot 0, 1 GiB. */
	struct vm *vm = boot(1 * GiB);
	double t0 = now_ms();
	cr_assert_eq(vm_dirty_log_start(vm), 0);
	fprintf(stderr, "timing 1 GiB VM: start %.2f ms\n", now_ms() - t0);
	time_slots(vm, "1 GiB VM", 0);
	vm_dirty_log_stop(vm);
	shut_down(vm);
	/* 7 GiB of RAM: slot 0, 3 GiB below the hole, slot 1, 4 GiB above
	 * (only that one written: 3 GiB more of host memory otherwise). */
	vm = boot(7 * GiB);
	t0 = now_ms();
	cr_assert_eq(vm_dirty_log_start(vm), 0);
	fprintf(stderr, "timing 7 GiB VM: start %.2f ms\n", now_ms() - t0);
	time_slots(vm, "7 GiB VM", 1);
	vm_dirty_log_stop(vm);
	shut_down(vm);
}
