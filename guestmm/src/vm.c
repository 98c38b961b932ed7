// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * vm.c - a VM's guest memory: lifecycle, the list of regions, statistics,
 * errors and logging.
 *
 * The regions list is read without a lock by pins (pin.c) inside a walk
 * section: a slot is published with a release store after the region is
 * fully set up, and a removed region is freed only after a full grace
 * period (gmm_tracker_sync, not the unmap's ranged one): a lookup reads
 * the descriptor of every region in a lower slot, whatever GPA it looks
 * for, so a walk that touched none of the removed region's GPAs may still
 * be reading it.  See gmm_region_remove for the order.
 *
 * Locking: region add/remove take the writer mutex (vm->wlock); the
 * statistics are read with relaxed loads and no lock but walkers_lock (to
 * sum the per-walker counters).
 */
#include "internal.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- errors and logging -------------------------------------------- */

static __thread char errbuf[512];
static enum gmm_log_level log_level = GMM_LOG_WARN;
static gmm_log_fn log_fn;

int gmm_seterr(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	errno = err;
	return -err;
}

const char *gmm_last_error(void)
{
	return errbuf[0] ? errbuf : "no error";
}

void gmm_set_log_level(enum gmm_log_level lvl) { log_level = lvl; }
void gmm_set_log_fn(gmm_log_fn fn) { log_fn = fn; }

void gmm_log(enum gmm_log_level lvl, const char *fmt, ...)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	if (lvl > log_level)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_fn)
		log_fn(lvl, msg);
	else
		fprintf(stderr, "guestmm: %s: %s\n", names[lvl], msg);
}

uint64_t gmm_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- strategies ---------------------------------------------------- */

static const char *const strategy_names[GMM_STRATEGY__N] = {
	[GMM_STRATEGY_KICK] = "kick",
	[GMM_STRATEGY_COUNT] = "count",
	[GMM_STRATEGY_PERTHREAD] = "perthread",
	[GMM_STRATEGY_MEMBARRIER] = "membarrier",
	[GMM_STRATEGY_RCU] = "rcu",
};

_Static_assert(GMM_STRATEGY_KICK == GMM__KICK && GMM_STRATEGY_COUNT == GMM__COUNT &&
	       GMM_STRATEGY_PERTHREAD == GMM__PERTHREAD &&
	       GMM_STRATEGY_MEMBARRIER == GMM__MEMBARRIER && GMM_STRATEGY_RCU == GMM__RCU,
	       "walk.h strategy numbers");

const char *gmm_strategy_name(enum gmm_strategy s)
{
	return (unsigned)s < GMM_STRATEGY__N ? strategy_names[s] : "?";
}

int gmm_strategy_parse(const char *name, enum gmm_strategy *out)
{
	for (int i = 0; i < GMM_STRATEGY__N; i++) {
		if (name && strcmp(name, strategy_names[i]) == 0) {
			*out = (enum gmm_strategy)i;
			return 0;
		}
	}
	return gmm_seterr(EINVAL, "unknown strategy '%s' (kick, count, perthread, membarrier, rcu)",
			  name ? name : "");
}

/* ---- VM lifecycle -------------------------------------------------- */

void gmm_vm_config_init(struct gmm_vm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->strategy = GMM_STRATEGY_DEFAULT;
	cfg->table_pages_limit = 65536;
	cfg->table_pages_reserve = 16;
	cfg->pin_timeout_ms = 1000;
}

int gmm_vm_create(const struct gmm_vm_config *cfg_in, struct gmm_vm **out)
{
	struct gmm_vm_config cfg;
	int ret;

	*out = NULL;
	if (cfg_in) {
		cfg = *cfg_in;
	} else {
		gmm_vm_config_init(&cfg);
	}
	if ((unsigned)cfg.strategy >= GMM_STRATEGY__N)
		return gmm_seterr(EINVAL, "unknown strategy %d", (int)cfg.strategy);
	if (!cfg.table_pages_limit)
		cfg.table_pages_limit = 65536;
	if (!cfg.table_pages_reserve)
		cfg.table_pages_reserve = 16;
	if (!cfg.pin_timeout_ms)
		cfg.pin_timeout_ms = 1000;
	if (!cfg.kick_signal)
		cfg.kick_signal = SIGRTMIN + 2;
	if (cfg.kick_signal < SIGRTMIN || cfg.kick_signal > SIGRTMAX)
		return gmm_seterr(EINVAL, "kick signal %d is not a real-time signal (%d..%d)",
				  cfg.kick_signal, SIGRTMIN, SIGRTMAX);
	/* The root page plus one table per level for a first leaf. */
	if (cfg.table_pages_limit < cfg.table_pages_reserve + 4)
		return gmm_seterr(EINVAL, "table-page limit %llu is below the reserve (%llu) + 4",
				  (unsigned long long)cfg.table_pages_limit,
				  (unsigned long long)cfg.table_pages_reserve);

	struct gmm_vm *vm = aligned_alloc(64, (sizeof(*vm) + 63) & ~(size_t)63);
	if (!vm)
		return gmm_seterr(ENOMEM, "out of memory");
	memset(vm, 0, sizeof(*vm));
	vm->cfg = cfg;
	pthread_mutex_init(&vm->wlock, NULL);
	pthread_mutex_init(&vm->walkers_lock, NULL);
	ret = gmm_pool_init(&vm->pool, cfg.table_pages_limit, cfg.table_pages_reserve);
	if (ret < 0)
		goto fail_pool;
	ret = gmm_table_init(vm);
	if (ret < 0)
		goto fail_table;
	ret = gmm_tracker_init(vm);
	if (ret < 0)
		goto fail_tracker;
	*out = vm;
	return 0;

fail_tracker:
	gmm_table_fini(vm);
fail_table:
	gmm_pool_fini(&vm->pool);
fail_pool:
	pthread_mutex_destroy(&vm->wlock);
	pthread_mutex_destroy(&vm->walkers_lock);
	free(vm);
	return ret;
}

static void region_free(struct gmm_region *r)
{
	gmm_backing_unmap(r);
	free(r->path);
	free(r->blocks);
	free((void *)GMM_READ_ONCE(r->dirty));
	free(r);
}

void gmm_vm_destroy(struct gmm_vm *vm)
{
	if (!vm)
		return;
	/* In a forked child the VM is the parent's (its locks may be
	 * held by threads that do not exist here): leave it alone. */
	if (gmm_writer_lock(vm) < 0)
		return;
	if (vm->walkers)
		gmm_log(GMM_LOG_WARN, "VM destroyed with %llu walkers still registered",
			(unsigned long long)vm->nwalkers);
	for (int i = 0; i < GMM_MAX_REGIONS; i++) {
		struct gmm_region *r = GMM_READ_ONCE(vm->regions[i]);
		if (!r)
			continue;
		/* Teardown always makes progress: no pin wait, reserve pages
		 * available for splits.  Pins still held are a caller bug. */
		gmm_unmap_locked(vm, r, r->gpa, r->size, GMM_UNMAP_FORCE | GMM_UNMAP_KEEP);
		atomic_store_explicit(&vm->regions[i], NULL, memory_order_release);
		region_free(r);
	}
	gmm_tracker_sync(vm);
	gmm_writer_unlock(vm);
	gmm_tracker_fini(vm);
	gmm_table_fini(vm);
	gmm_pool_fini(&vm->pool);
	pthread_mutex_destroy(&vm->wlock);
	pthread_mutex_destroy(&vm->walkers_lock);
	free(vm->deferred);
	free(vm);
}

enum gmm_strategy gmm_vm_strategy(const struct gmm_vm *vm)
{
	return vm->cfg.strategy;
}

/* ---- regions ------------------------------------------------------- */

/*
 * Lockless: inside a walk section or under wlock.  The slot load is
 * seq_cst (a plain MOV on x86): acquire pairs with the release store that
 * published the region; seq_cst puts it in the total order as the table
 * loads are (W2 in tracker.c's store-buffering argument), so a removal's
 * emptied slot (X1) and full serialisation cover it exactly as they cover
 * a cleared leaf: either this load sees the slot empty, or the writer sees
 * this walk in flight and waits for its end before freeing the region.
 */
struct gmm_region *gmm_region_lookup(struct gmm_vm *vm, uint64_t gpa)
{
	for (int i = 0; i < GMM_MAX_REGIONS; i++) {
		struct gmm_region *r = atomic_load_explicit(&vm->regions[i], memory_order_seq_cst);
		if (r)
			GMM_HOOK(GMM_HOOK_REGION_LOOKUP, r);
		if (r && gpa >= r->gpa && gpa - r->gpa < r->size)
			return r;
	}
	return NULL;
}

int gmm_region_add(struct gmm_vm *vm, const struct gmm_region_spec *spec,
		   struct gmm_region **out)
{
	const char *name = spec->name ? spec->name : "ram";
	int ret;

	if (out)
		*out = NULL;
	if ((unsigned)spec->backing >= GMM_BACKING__N)
		return gmm_seterr(EINVAL, "region \"%s\": unknown backing %d", name, (int)spec->backing);
	uint64_t pg = gmm_backing_page_size(spec->backing);
	if (spec->size == 0)
		return gmm_seterr(EINVAL, "region \"%s\": size is zero", name);
	if ((spec->gpa | spec->size) & (pg - 1))
		return gmm_seterr(EINVAL,
				  "region \"%s\": base 0x%llx and size 0x%llx must be multiples of the %s page size (%llu KiB)",
				  name, (unsigned long long)spec->gpa, (unsigned long long)spec->size,
				  gmm_backing_name(spec->backing), (unsigned long long)(pg >> 10));
	if (spec->gpa >= GMM_GPA_LIMIT || spec->size > GMM_GPA_LIMIT - spec->gpa)
		return gmm_seterr(EINVAL, "region \"%s\": [0x%llx, +0x%llx) is beyond the %d-bit guest-physical space",
				  name, (unsigned long long)spec->gpa, (unsigned long long)spec->size,
				  GMM_GPA_BITS);
	if ((spec->flags & GMM_REGION_FD) &&
	    (spec->fd < 0 || spec->backing == GMM_BACKING_ANON || spec->backing == GMM_BACKING_THP))
		return gmm_seterr(EINVAL, "region \"%s\": only a memfd, hugetlb or file region can map a given fd (fd %d, %s)",
				  name, spec->fd, gmm_backing_name(spec->backing));
	if (spec->backing == GMM_BACKING_FILE && !(spec->flags & GMM_REGION_FD) &&
	    (!spec->path || !*spec->path))
		return gmm_seterr(EINVAL, "region \"%s\": the file backing needs a path", name);

	struct gmm_region *r = calloc(1, sizeof(*r));
	if (!r)
		return gmm_seterr(ENOMEM, "out of memory");
	r->vm = vm;
	r->gpa = spec->gpa;
	r->size = spec->size;
	r->backing = spec->backing;
	r->flags = spec->flags;
	r->fd = -1;
	r->adopt_fd = (spec->flags & GMM_REGION_FD) ? spec->fd : -1;
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->nblocks = (uint32_t)((spec->size + GMM_2M - 1) / GMM_2M);
	r->blocks = calloc(r->nblocks, sizeof(*r->blocks));
	if (spec->path)
		r->path = strdup(spec->path);
	if (!r->blocks || (spec->path && !r->path)) {
		free(r->blocks);
		free(r->path);
		free(r);
		return gmm_seterr(ENOMEM, "out of memory");
	}
	for (uint32_t i = 0; i < r->nblocks; i++)
		atomic_init(&r->blocks[i].ref, 1);

	if ((ret = gmm_writer_lock(vm)) < 0)
		goto fail_unlocked;
	int slot = -1;
	for (int i = 0; i < GMM_MAX_REGIONS; i++) {
		struct gmm_region *o = GMM_READ_ONCE(vm->regions[i]);
		if (!o) {
			if (slot < 0)
				slot = i;
			continue;
		}
		if (spec->gpa < o->gpa + o->size && o->gpa < spec->gpa + spec->size) {
			ret = gmm_seterr(EEXIST,
					 "region \"%s\" [0x%llx, 0x%llx) overlaps region \"%s\" [0x%llx, 0x%llx)",
					 name, (unsigned long long)spec->gpa,
					 (unsigned long long)(spec->gpa + spec->size), o->name,
					 (unsigned long long)o->gpa, (unsigned long long)(o->gpa + o->size));
			goto fail;
		}
	}
	if (slot < 0) {
		ret = gmm_seterr(ENOSPC, "region \"%s\": at most %d regions per VM", name, GMM_MAX_REGIONS);
		goto fail;
	}
	ret = gmm_backing_map(r);
	if (ret < 0)
		goto fail;
	if (spec->flags & GMM_REGION_PREFAULT) {
		ret = gmm_region_prefault(r, spec->prefault_threads, spec->progress, spec->progress_arg);
		if (ret < 0)
			goto fail_unmap;
	}
	uint64_t pteflags = GMM_PTE_PRESENT | ((spec->flags & GMM_REGION_READONLY) ? 0 : GMM_PTE_WRITE);
	ret = gmm_table_install(vm, r, r->gpa, r->size, r->hva, r->page_size, pteflags);
	if (ret < 0)
		goto fail_unmap;
	/* Logging on: the region starts all dirty (dirty.c). */
	ret = gmm_dirty_region_init(vm, r);
	if (ret < 0) {
		gmm_unmap_locked(vm, r, r->gpa, r->size, GMM_UNMAP_FORCE | GMM_UNMAP_KEEP);
		gmm_tracker_sync(vm);
		gmm_table_free_deferred(vm);
		goto fail_unmap;
	}
	/* Release: the region is complete before a pin can find it. */
	atomic_store_explicit(&vm->regions[slot], r, memory_order_release);
	atomic_fetch_add_explicit(&vm->st_mapped_bytes, r->size, memory_order_relaxed);
	gmm_writer_unlock(vm);
	gmm_log(GMM_LOG_DEBUG, "region \"%s\": %s, 0x%llx+0x%llx at %p", r->name,
		gmm_backing_name(r->backing), (unsigned long long)r->gpa,
		(unsigned long long)r->size, (void *)r->hva);
	if (out)
		*out = r;
	return 0;

fail_unmap:
	gmm_backing_unmap(r);
fail:
	gmm_writer_unlock(vm);
fail_unlocked:
	free(r->blocks);
	free(r->path);
	free(r);
	return ret;
}

/*
 * Takes wlock; may sleep (pin timeout, serialisation).  The order:
 *
 *   1. freeze every block (waiting up to the pin timeout).  Until this
 *      succeeds the region is untouched and published: a pin that comes
 *      meanwhile gets -EAGAIN (frozen block) or succeeds (a block not
 *      frozen yet, then the freeze fails on it): never -EFAULT.  -EBUSY
 *      here changes nothing.
 *   2. the point of no return: empty the slot (no walk that begins later
 *      finds the region), clear every leaf with KEEP (nothing is released
 *      piecemeal, so nothing can fail half-way), serialise fully
 *      (gmm_tracker_sync: lookups read descriptors outside their own GPA
 *      range) and free the table pages unlinked.
 *   3. region_free: one munmap of the whole mapping gives the host memory
 *      back, then the descriptor and its blocks go.
 */
int gmm_region_remove(struct gmm_vm *vm, struct gmm_region *r)
{
	int ret = gmm_writer_lock(vm);
	if (ret < 0)
		return ret;
	int slot = -1;
	for (int i = 0; i < GMM_MAX_REGIONS; i++)
		if (GMM_READ_ONCE(vm->regions[i]) == r)
			slot = i;
	if (slot < 0) {
		gmm_writer_unlock(vm);
		return gmm_seterr(ENOENT, "no such region");
	}
	ret = gmm_pin_freeze(vm, r, 0, r->nblocks, false);
	if (ret < 0) {
		gmm_writer_unlock(vm);
		return ret;
	}
	/* X1 for walks that look regions up (see gmm_region_lookup). */
	atomic_store_explicit(&vm->regions[slot], NULL, memory_order_release);
	uint64_t mapped = GMM_READ_ONCE(vm->st_mapped_bytes);
	/* Cannot fail: the region's edges are leaf boundaries (no split), and
	 * KEEP releases nothing. */
	ret = gmm_unmap_locked(vm, r, r->gpa, r->size,
			       GMM_UNMAP_FORCE | GMM_UNMAP_KEEP | GMM_UNMAP_CALLER_SYNCS);
	if (ret < 0)
		gmm_log(GMM_LOG_ERROR, "remove region \"%s\": clearing leaves: %s", r->name,
			gmm_last_error());
	gmm_tracker_sync(vm);
	gmm_table_free_deferred(vm);
	/* region_free's munmap gives back what was still mapped. */
	mapped -= GMM_READ_ONCE(vm->st_mapped_bytes);
	atomic_fetch_add_explicit(&vm->st_released_bytes, mapped, memory_order_relaxed);
	gmm_writer_unlock(vm);
	region_free(r);
	return 0;
}

int gmm_region_count(struct gmm_vm *vm)
{
	int n = 0;
	if (gmm_writer_lock(vm) < 0)
		return 0;
	for (int i = 0; i < GMM_MAX_REGIONS; i++)
		n += GMM_READ_ONCE(vm->regions[i]) != NULL;
	gmm_writer_unlock(vm);
	return n;
}

struct gmm_region *gmm_region_at(struct gmm_vm *vm, int index)
{
	struct gmm_region *found = NULL;
	if (gmm_writer_lock(vm) < 0)
		return NULL;
	for (int i = 0, n = 0; i < GMM_MAX_REGIONS && !found; i++) {
		struct gmm_region *r = GMM_READ_ONCE(vm->regions[i]);
		if (r && n++ == index)
			found = r;
	}
	gmm_writer_unlock(vm);
	return found;
}

struct gmm_region *gmm_region_find(struct gmm_vm *vm, uint64_t gpa)
{
	if (gmm_writer_lock(vm) < 0)
		return NULL;
	struct gmm_region *r = gmm_region_lookup(vm, gpa);
	gmm_writer_unlock(vm);
	return r;
}

void gmm_region_info(const struct gmm_region *r, struct gmm_region_info *info)
{
	info->gpa = r->gpa;
	info->size = r->size;
	info->backing = r->backing;
	info->page_size = r->page_size;
	info->hva = r->hva;
	info->fd = r->fd;
	info->name = r->name;
	info->prefault_ns = r->prefault_ns;
}

/* ---- statistics ---------------------------------------------------- */

/* Any thread, outside a walk of vm (wait_inflight holds walkers_lock while
 * it waits for walks to end).  In a forked child: zeros (guestmm.h). */
void gmm_vm_stats(struct gmm_vm *vm, struct gmm_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (gmm_vm_check_owner(vm) < 0)
		return;
	pthread_mutex_lock(&vm->walkers_lock);
	st->walkers = vm->nwalkers;
	st->translations = vm->folded_trans;
	st->translate_faults = vm->folded_faults;
	for (struct gmm_walker *w = vm->walkers; w; w = w->next) {
		st->translations += LD(w->ntrans);
		st->translate_faults += LD(w->nfaults);
	}
	pthread_mutex_unlock(&vm->walkers_lock);
	st->walks_in_flight = gmm_tracker_inflight(vm);
	st->serialize_issued = LD(vm->st_serialize_issued);
	st->serialize_skipped = LD(vm->st_serialize_skipped);
	st->serialize_ns = LD(vm->st_serialize_ns);
	st->kicks_sent = LD(vm->st_kicks_sent);
	st->walker_waits = LD(vm->st_walker_waits);
	st->walkers_outside = LD(vm->st_walkers_outside);
	st->table_pages_in_use = LD(vm->pool.in_use);
	st->table_pages_peak = LD(vm->pool.peak);
	st->table_pages_limit = vm->pool.limit;
	pthread_mutex_lock(&vm->pool.lock);  /* held only for a push or pop */
	st->table_pages_reserve_free = vm->pool.nreserve;
	pthread_mutex_unlock(&vm->pool.lock);
	st->table_pages_deferred = LD(vm->st_deferred);
	st->splits = LD(vm->st_splits);
	st->collapses = LD(vm->st_collapses);
	st->pins_active = LD(vm->st_pins_active);
	st->pins_total = LD(vm->st_pins_total);
	st->pin_waits = LD(vm->st_pin_waits);
	st->pin_busy = LD(vm->st_pin_busy);
	st->maps = LD(vm->st_maps);
	st->unmaps = LD(vm->st_unmaps);
	st->unmapped_bytes = LD(vm->st_unmapped_bytes);
	st->released_bytes = LD(vm->st_released_bytes);
	st->late_reads = LD(vm->st_late_reads);
	st->mapped_bytes = LD(vm->st_mapped_bytes);
}

int gmm_stats_format(const struct gmm_stats *st, char *buf, size_t len)
{
#define F(name) #name, (unsigned long long)st->name
	return snprintf(buf, len,
		"%s %llu\n%s %llu\n%s %llu\n%s %llu\n%s %llu\n%s %llu\n%s %llu\n%s %llu\n"
		"%s %llu\n%s %llu\n%s %llu\n%s %llu\n%s %llu\n%s %llu\n%s %llu\n%s %llu\n"
		"%s %llu\n%s %llu\n%s %llu\n%s %llu\n%s %llu\n%s %llu\n%s %llu\n%s %llu\n"
		"%s %llu\n%s %llu\n%s %llu\n",
		F(walkers), F(translations), F(translate_faults), F(walks_in_flight),
		F(serialize_issued), F(serialize_skipped), F(serialize_ns), F(kicks_sent),
		F(walker_waits), F(walkers_outside), F(table_pages_in_use), F(table_pages_peak),
		F(table_pages_limit),
		F(table_pages_reserve_free), F(table_pages_deferred), F(splits), F(collapses),
		F(pins_active), F(pins_total), F(pin_waits), F(pin_busy), F(maps), F(unmaps),
		F(unmapped_bytes), F(released_bytes), F(late_reads), F(mapped_bytes));
#undef F
}
