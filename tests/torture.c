// SPDX-License-Identifier: GPL-2.0-only
/*
 * torture.c - guestmm-torture: every writer operation of libguestmm at once,
 * against walkers and pinners that use every region, in the spirit of
 * Linux's rcutorture.
 *
 *   guestmm-torture [--strategy all|kick,count,...] [--translations N]
 *                   [--faults on|off] [--seconds S] [--seed N]
 *
 * Per strategy, one VM with three stable regions (thp, anon, memfd) and two
 * "churn" slots that a region thread adds and removes again and again.
 * Threads:
 *
 *   walkers (3)   open a walk, read the published object (below) and check
 *                 it is alive, translate a random page of a random region
 *                 (churn slots included) for write, store a canary, hold
 *                 it, read it back, check the object is still alive, end
 *                 the walk.
 *   pinner (1)    pins a random page of a random region, writes a canary,
 *                 holds it outside any walk, checks it, unpins.
 *   table writer  unmap / map / split / collapse / discard / protect and
 *                 unprotect on random blocks of the stable regions, and
 *                 gmm_discard of the one page per block walkers leave alone
 *                 (it drops contents under walkers by contract).  With injected failures on, every operation
 *                 that fails leaves the block's translations exactly as
 *                 they were (checked leaf by leaf with gmm_table_lookup).
 *   region cycler adds a churn region, lets it be used, removes it (-EBUSY
 *                 while pinned is fine), over and over.
 *   retirer       publishes a fresh object, gmm_synchronize(), then marks
 *                 the old one dead and frees it: the documented way for a
 *                 caller to retire structures that walkers read.  A walker
 *                 that sees a dead object (or ASan that sees a freed one)
 *                 means gmm_synchronize returned with a walk still open.
 *
 * Injected failures (--faults on, builds with GMM_FAULT_INJECTION only):
 * table-page allocation, the pool's chunk mmap, the backing's release and
 * remap, and membarrier fail at random now and then.
 *
 * Pass: faults (SIGSEGV/SIGBUS on released memory) = 0, canaries changed
 * under a walker or pin = 0, late reads of freed table pages = 0, dead
 * objects seen = 0, failed operations that changed something = 0, walks in
 * flight at the end = 0, and the run did what it claims (translations
 * reached, every kind of operation done).  A watchdog turns a run that
 * stops making progress for 120 s into a failure with the threads' state.
 *
 * Exit 0 when every strategy passed, 1 otherwise, 2 on bad usage.
 */
#include <guestmm/guestmm.h>

#include "walkers.h"

#ifdef GMM_FAULT_INJECTION
#include "fault.h"

static uint64_t faults_injected(void)
{
	uint64_t n = 0;
	for (int i = 0; i < GMM_FAULT__N; i++)
		n += gmm_fault_hits((enum gmm_fault_site)i);
	return n;
}

/* Every host call the library makes fails now and then. */
static void faults_arm(uint64_t seed)
{
	for (int i = 0; i < GMM_FAULT__N; i++)
		gmm_fault_set_random((enum gmm_fault_site)i, 20000, seed + (uint64_t)i);
}
#endif

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NWALKERS 3
#define MB (1ULL << 20)

struct slot {
	uint64_t gpa, size;
	enum gmm_backing backing;
	bool churn;
	const char *name;
};

static const struct slot slots[] = {
	{ 0x040000000ULL, 32 * MB, GMM_BACKING_THP, false, "thp" },
	{ 0x080000000ULL, 8 * MB, GMM_BACKING_ANON, false, "anon" },
	{ 0x0c0000000ULL, 8 * MB, GMM_BACKING_MEMFD, false, "memfd" },
	{ 0x100000000ULL, 8 * MB, GMM_BACKING_THP, true, "churn0" },
	{ 0x140000000ULL, 4 * MB, GMM_BACKING_ANON, true, "churn1" },
};
#define NSLOTS (sizeof(slots) / sizeof(slots[0]))
#define NSTABLE 3

#define OBJ_LIVE 0x4c495645u
#define OBJ_DEAD 0xdeadbeefu

struct obj {
	_Atomic uint32_t magic;
	uint64_t generation;
};

enum op { OP_UNMAP, OP_MAP, OP_SPLIT, OP_COLLAPSE, OP_DISCARD_PAGE, OP_UNMAP_PAGE,
	  OP_PROTECT, OP_GMM_DISCARD, OP_REGION_ADD, OP_REGION_REMOVE, OP_SYNC, OP__N };
static const char *const op_names[OP__N] = {
	"unmap", "map", "split", "collapse", "discard-page", "unmap-page",
	"protect", "gmm_discard", "region-add", "region-remove", "synchronize",
};

struct torture {
	struct gmm_vm *vm;
	enum gmm_strategy strategy;
	bool faults_on;
	uint64_t seed;
	uint64_t target;
	atomic_bool stop;
	_Atomic uint64_t progress;         /* bumped by every thread now and then */
	_Atomic uint64_t translations, failed_translations;
	_Atomic uint64_t faults, canary, dead_objects;
	_Atomic uint64_t pins, pin_busy;
	_Atomic uint64_t ops[OP__N], op_failed[OP__N];
	_Atomic uint64_t injected_failures;  /* operations failed by an injected fault */
	_Atomic uint64_t changed_on_failure; /* ... that changed something anyway */
	_Atomic(struct obj *) published;
	pthread_mutex_t err_lock;
	char error[256];
};

static void fail(struct torture *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct torture *t, const char *fmt, ...)
{
	pthread_mutex_lock(&t->err_lock);
	if (!t->error[0]) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(t->error, sizeof(t->error), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&t->err_lock);
	atomic_store(&t->stop, true);
}



static bool stopping(struct torture *t)
{
	return atomic_load_explicit(&t->stop, memory_order_relaxed);
}

/* ---- walkers and the pinner ------------------------------------------ */

struct targ {
	struct torture *t;
	int id;
};

/* The last page of each 2 MiB block is gmm_discard's: discarding drops
 * contents under walkers without serialising (by contract: the guest said
 * it does not care), so walkers and pins keep their canaries elsewhere. */
#define DISCARD_PAGE 511

static uint64_t random_page(uint64_t *seed, int id)
{
	const struct slot *s = &slots[xorshift(seed) % NSLOTS];
	uint64_t page = xorshift(seed) % (s->size / GMM_PAGE_SIZE);
	if (page % 512 == DISCARD_PAGE)
		page--;
	/* Each thread its own word of the page: nobody else writes it. */
	return s->gpa + page * GMM_PAGE_SIZE + (uint64_t)id * 8;
}

static void check_obj(struct torture *t, struct obj *o, volatile uint64_t *dead)
{
	if (!o || atomic_load_explicit(&o->magic, memory_order_relaxed) != OBJ_LIVE)
		(*dead)++;
	(void)t;
}

static void *walker_main(void *p)
{
	struct targ *a = p;
	struct torture *t = a->t;
	struct gmm_walker *w = gmm_walker_register(t->vm);
	uint64_t seed = t->seed * 0x9e3779b97f4a7c15ULL + (uint64_t)a->id + 1;
	uint64_t ok = 0, failed = 0;
	volatile uint64_t faults = 0, canary = 0, dead = 0;

	if (!w) {
		fail(t, "walker register: %s", gmm_last_error());
		return NULL;
	}
	if (sigsetjmp(fault_jb, 1)) {
		faults++;
		gmm_walk_end(w);
	}
	fault_armed = 1;
	while (!stopping(t)) {
		uint64_t gpa = random_page(&seed, a->id);
		gmm_walk_begin(w);
		/* Acquire: the object is initialised before we read it. */
		struct obj *o = atomic_load_explicit(&t->published, memory_order_acquire);
		check_obj(t, o, &dead);
		/* Now and then work on the object a while before the first
		 * translation, as a device reads its own state first: a walk
		 * that has translated nothing yet is still a walk. */
		if ((xorshift(&seed) & 127) == 0) {
			for (int i = 0; i < 1000; i++)
				relax();
			check_obj(t, o, &dead);
		}
		volatile uint64_t *q = gmm_translate(w, gpa, 8, GMM_ACCESS_WRITE);
		if (q) {
			uint64_t v = ((uint64_t)a->id << 56) | (ok & 0xffffffffffffULL);
			*q = v;
			for (int i = 0; i < 32; i++)
				relax();
			if (*q != v)
				canary++;
			ok++;
		} else {
			failed++;
		}
		/* Still alive at the end of the walk: a retirer must wait. */
		check_obj(t, o, &dead);
		gmm_walk_end(w);
		if (q && (ok & 1023) == 0) {
			atomic_fetch_add_explicit(&t->progress, 1, memory_order_relaxed);
			if (atomic_fetch_add(&t->translations, 1024) + 1024 >= t->target)
				atomic_store(&t->stop, true);
		}
	}
	fault_armed = 0;
	atomic_fetch_add(&t->failed_translations, failed);
	atomic_fetch_add(&t->faults, faults);
	atomic_fetch_add(&t->canary, canary);
	atomic_fetch_add(&t->dead_objects, dead);
	gmm_walker_unregister(w);
	return NULL;
}

static void *pinner_main(void *p)
{
	struct targ *a = p;
	struct torture *t = a->t;
	struct gmm_walker *w = gmm_walker_register(t->vm);
	uint64_t seed = t->seed + 0x1234567ULL;
	uint64_t pins = 0, busy = 0;
	volatile uint64_t faults = 0, canary = 0;

	if (!w) {
		fail(t, "pinner register: %s", gmm_last_error());
		return NULL;
	}
	if (sigsetjmp(fault_jb, 1))
		faults++;
	fault_armed = 1;
	while (!stopping(t)) {
		struct gmm_pin pin;
		int ret = gmm_pin(w, random_page(&seed, a->id), 8, GMM_ACCESS_WRITE, &pin);
		if (ret == -EAGAIN)
			busy++;
		if (ret)
			continue;
		volatile uint64_t *q = pin.hva;
		uint64_t v = 0xabcd000000000000ULL | pins;
		*q = v;
		for (int i = 0; i < 200; i++)
			relax();
		if (*q != v)
			canary++;
		gmm_unpin(t->vm, &pin);
		if ((++pins & 255) == 0)
			atomic_fetch_add_explicit(&t->progress, 1, memory_order_relaxed);
	}
	fault_armed = 0;
	atomic_fetch_add(&t->faults, faults);
	atomic_fetch_add(&t->canary, canary);
	atomic_fetch_add(&t->pins, pins);
	atomic_fetch_add(&t->pin_busy, busy);
	gmm_walker_unregister(w);
	return NULL;
}

/* ---- the table writer -------------------------------------------------- */

/* The block's translations page by page (host address of each 4 KiB page
 * and its write bit): what a walker would get, whatever the leaf sizes (an
 * unmap may split an edge leaf, which translates as before). */
struct snap {
	uint64_t v[512];
};

static void take_snap(struct gmm_vm *vm, uint64_t base, struct snap *s)
{
	for (unsigned i = 0; i < 512; i++) {
		uint64_t gpa = base + i * GMM_PAGE_SIZE, sz = 0;
		uint64_t e = gmm_table_lookup(vm, gpa, &sz);
		s->v[i] = e ? ((e & GMM_PTE_ADDR) + (gpa & (sz - 1))) | (e & GMM_PTE_WRITE) : 0;
	}
}

/* Operation errors that are part of the contract, not failures: the block
 * is not in the state the operation needs, or a pin is in the way. */
static bool expected_error(enum op op, int ret)
{
	switch (op) {
	case OP_SPLIT:
	case OP_COLLAPSE:
		return ret == -EINVAL || ret == -EAGAIN;
	case OP_GMM_DISCARD:
		return ret == -EINVAL;  /* not entirely mapped */
	default:
		return ret == -EBUSY;
	}
}

static int run_op(struct gmm_vm *vm, enum op op, const struct slot *s, uint64_t base, uint64_t page)
{
	uint64_t leaf = 0;
	int ret;
	switch (op) {
	case OP_UNMAP:
		return gmm_unmap(vm, base, GMM_2M, 0);
	case OP_MAP:
		return gmm_map(vm, base, GMM_2M);
	case OP_SPLIT:
		if (!gmm_table_lookup(vm, base, &leaf) || leaf != GMM_2M)
			return -EINVAL;
		return gmm_split(vm, base);
	case OP_COLLAPSE:
		return gmm_collapse(vm, base);
	case OP_DISCARD_PAGE:
		return gmm_unmap(vm, page, GMM_PAGE_SIZE, GMM_UNMAP_DISCARD);
	case OP_UNMAP_PAGE:
		return gmm_unmap(vm, page, GMM_PAGE_SIZE, 0);
	case OP_PROTECT:
		ret = gmm_protect(vm, base, GMM_2M, false);
		if (ret)
			return ret;
		for (int i = 0; i < 1000; i++)
			relax();
		return gmm_protect(vm, base, GMM_2M, true);
	case OP_GMM_DISCARD:
		return gmm_discard(vm, base + DISCARD_PAGE * GMM_PAGE_SIZE, GMM_PAGE_SIZE);
	default:
		(void)s;
		return 0;
	}
}

static void *table_writer_main(void *p)
{
	struct torture *t = p;
	uint64_t seed = t->seed ^ 0xfeedULL;
	struct snap *before = malloc(sizeof(*before)), *after = malloc(sizeof(*after));

	if (!before || !after) {
		fail(t, "out of memory");
		goto out;
	}
	for (uint64_t n = 0; !stopping(t); n++) {
		const struct slot *s = &slots[xorshift(&seed) % NSTABLE];
		uint64_t nblocks = s->size / GMM_2M;
		uint64_t base = s->gpa + (xorshift(&seed) % nblocks) * GMM_2M;
		uint64_t page = base + (xorshift(&seed) % 512) * GMM_PAGE_SIZE;
		enum op op = (enum op)(xorshift(&seed) % (OP_GMM_DISCARD + 1));

		/* Only this thread changes the stable regions' translations,
		 * so a snapshot before and after an operation compares. */
		if (t->faults_on)
			take_snap(t->vm, base, before);
#ifdef GMM_FAULT_INJECTION
		uint64_t inj0 = t->faults_on ? faults_injected() : 0;
		uint64_t rel0 = t->faults_on ? gmm_fault_hits(GMM_FAULT_RELEASE) : 0;
#endif
		int ret = run_op(t->vm, op, s, base, page);
		atomic_fetch_add_explicit(&t->ops[op], 1, memory_order_relaxed);
		if (ret) {
			atomic_fetch_add_explicit(&t->op_failed[op], 1, memory_order_relaxed);
			bool injected = false, released = false;
#ifdef GMM_FAULT_INJECTION
			injected = t->faults_on && faults_injected() != inj0;
			released = injected && gmm_fault_hits(GMM_FAULT_RELEASE) != rel0;
#endif
			if (injected)
				atomic_fetch_add(&t->injected_failures, 1);
			if (!injected && !expected_error(op, ret)) {
				fail(t, "%s of 0x%llx failed: %s", op_names[op],
				     (unsigned long long)base, gmm_last_error());
				break;
			}
			/* A failed operation changes nothing.  (A protect
			 * whose second half failed did change the block: it
			 * is read-only now, by contract.) */
			if (t->faults_on && !(op == OP_PROTECT && ret != -EBUSY)) {
				take_snap(t->vm, base, after);
				/* The one documented exception (table.h): an
				 * unmap whose host release failed after the
				 * point of no return has its range unmapped. */
				uint64_t lo = op == OP_UNMAP ? base : page;
				uint64_t hi = op == OP_UNMAP ? base + GMM_2M : page + GMM_PAGE_SIZE;
				bool unmaps = op == OP_UNMAP || op == OP_UNMAP_PAGE ||
					      op == OP_DISCARD_PAGE;
				for (unsigned i = 0; released && unmaps && i < 512; i++) {
					uint64_t gpa = base + i * GMM_PAGE_SIZE;
					if (gpa >= lo && gpa < hi)
						before->v[i] = 0;
				}
				if (memcmp(before, after, sizeof(*before)) != 0) {
					atomic_fetch_add(&t->changed_on_failure, 1);
					fail(t, "%s of 0x%llx failed (%s) and changed the table",
					     op_names[op], (unsigned long long)base, gmm_last_error());
					break;
				}
			}
			if (op == OP_PROTECT)
				gmm_protect(t->vm, base, GMM_2M, true);
		}
		if ((n & 63) == 0) {
			atomic_fetch_add_explicit(&t->progress, 1, memory_order_relaxed);
			sched_yield();
		}
	}
out:
	free(before);
	free(after);
	return NULL;
}

/* ---- the region cycler ---------------------------------------------------- */

static void *region_main(void *p)
{
	struct torture *t = p;
	struct gmm_region *r[NSLOTS] = { 0 };
	uint64_t seed = t->seed ^ 0xabcdefULL;

	while (!stopping(t)) {
		unsigned i = NSTABLE + (unsigned)(xorshift(&seed) % (NSLOTS - NSTABLE));
		const struct slot *s = &slots[i];
		if (!r[i]) {
			struct gmm_region_spec spec = {
				.gpa = s->gpa, .size = s->size, .backing = s->backing, .name = s->name,
			};
			int ret = gmm_region_add(t->vm, &spec, &r[i]);
			atomic_fetch_add(&t->ops[OP_REGION_ADD], 1);
			if (ret) {
				atomic_fetch_add(&t->op_failed[OP_REGION_ADD], 1);
				r[i] = NULL;
				/* Only an injected failure may refuse an add. */
				if (!t->faults_on) {
					fail(t, "add %s: %s", s->name, gmm_last_error());
					break;
				}
			}
		} else {
			int ret = gmm_region_remove(t->vm, r[i]);
			atomic_fetch_add(&t->ops[OP_REGION_REMOVE], 1);
			if (ret == 0) {
				r[i] = NULL;
			} else {
				atomic_fetch_add(&t->op_failed[OP_REGION_REMOVE], 1);
				if (ret != -EBUSY && !t->faults_on) {
					fail(t, "remove %s: %s", s->name, gmm_last_error());
					break;
				}
			}
		}
		atomic_fetch_add_explicit(&t->progress, 1, memory_order_relaxed);
		/* Let the walkers meet the region before it goes. */
		struct timespec ts = { 0, 200000 };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* ---- the retirer ------------------------------------------------------------ */

static void *retirer_main(void *p)
{
	struct torture *t = p;
	for (uint64_t gen = 1; !stopping(t); gen++) {
		struct obj *o = malloc(sizeof(*o));
		if (!o) {
			fail(t, "out of memory");
			break;
		}
		atomic_init(&o->magic, OBJ_LIVE);
		o->generation = gen;
		struct obj *old = atomic_exchange(&t->published, o);
		gmm_synchronize(t->vm);
		atomic_fetch_add(&t->ops[OP_SYNC], 1);
		if (old) {
			atomic_store_explicit(&old->magic, OBJ_DEAD, memory_order_relaxed);
			free(old);
		}
		atomic_fetch_add_explicit(&t->progress, 1, memory_order_relaxed);
		struct timespec ts = { 0, 100000 };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* ---- one strategy ------------------------------------------------------------ */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run(enum gmm_strategy s, uint64_t target, bool faults_on, double seconds, uint64_t seed)
{
	struct torture *t = calloc(1, sizeof(*t));
	struct gmm_vm_config cfg;
	int ret = 0;

	if (!t)
		return -1;
	pthread_mutex_init(&t->err_lock, NULL);
	t->strategy = s;
	t->target = target;
	t->faults_on = faults_on;
	t->seed = seed + (uint64_t)s;
	gmm_vm_config_init(&cfg);
	cfg.strategy = s;
	cfg.pin_timeout_ms = 50;
	if (gmm_vm_create(&cfg, &t->vm) < 0) {
		printf("[FAIL] torture::%s: create: %s\n", gmm_strategy_name(s), gmm_last_error());
		free(t);
		return -1;
	}
	for (unsigned i = 0; i < NSTABLE; i++) {
		struct gmm_region_spec spec = {
			.gpa = slots[i].gpa, .size = slots[i].size, .backing = slots[i].backing,
			.name = slots[i].name,
		};
		if (gmm_region_add(t->vm, &spec, NULL) < 0) {
			printf("[FAIL] torture::%s: region %s: %s\n", gmm_strategy_name(s),
			       slots[i].name, gmm_last_error());
			gmm_vm_destroy(t->vm);
			free(t);
			return -1;
		}
	}
	struct obj *first = malloc(sizeof(*first));
	if (!first)
		abort();
	atomic_init(&first->magic, OBJ_LIVE);
	first->generation = 0;
	atomic_init(&t->published, first);

#ifdef GMM_FAULT_INJECTION
	/* Injected failures only once the fixed regions exist. */
	if (faults_on)
		faults_arm(seed);
#endif
	double t0 = now_s();
	pthread_t th[NWALKERS + 4];
	struct targ args[NWALKERS + 1];
	int n = 0;
	for (int i = 0; i <= NWALKERS; i++) {
		args[i] = (struct targ){ t, i };
		if (pthread_create(&th[n++], NULL, i < NWALKERS ? walker_main : pinner_main, &args[i]))
			abort();
	}
	if (pthread_create(&th[n++], NULL, table_writer_main, t) ||
	    pthread_create(&th[n++], NULL, region_main, t) ||
	    pthread_create(&th[n++], NULL, retirer_main, t))
		abort();

	/* Watchdog: progress must move; the run must end in time. */
	uint64_t last = 0;
	double last_t = now_s();
	while (!stopping(t)) {
		struct timespec ts = { 0, 100000000 };
		nanosleep(&ts, NULL);
		uint64_t p = atomic_load(&t->progress);
		double now = now_s();
		if (p != last) {
			last = p;
			last_t = now;
		} else if (now - last_t > 120) {
			struct gmm_stats gs;
			gmm_vm_stats(t->vm, &gs);
			fprintf(stderr, "torture %s: no progress for 120 s; %llu walks in flight, "
				"%llu pins active\n", gmm_strategy_name(s),
				(unsigned long long)gs.walks_in_flight,
				(unsigned long long)gs.pins_active);
			/* A hang in the library cannot be unwound: report it. */
			printf("[FAIL] torture::%s: no progress for 120 s (a hang)\n", gmm_strategy_name(s));
			fflush(stdout);
			_exit(1);
		}
		if (seconds > 0 && now - t0 > seconds) {
			fail(t, "not done after %.0f s (%llu of %llu translations)", seconds,
			     (unsigned long long)atomic_load(&t->translations),
			     (unsigned long long)t->target);
		}
	}
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
#ifdef GMM_FAULT_INJECTION
	gmm_fault_reset();
#endif
	double secs = now_s() - t0;

	struct gmm_stats gs;
	gmm_vm_stats(t->vm, &gs);
	uint64_t total_ops = 0;
	char opsbuf[512];
	size_t off = 0;
	for (int i = 0; i < OP__N; i++) {
		total_ops += atomic_load(&t->ops[i]);
		off += (size_t)snprintf(opsbuf + off, sizeof(opsbuf) - off, "%s%s %llu",
					i ? ", " : "", op_names[i],
					(unsigned long long)atomic_load(&t->ops[i]));
	}
	fprintf(stderr,
		"torture %-10s: %.1f s, %llu translations (%llu failed), %llu pins (%llu busy), "
		"%llu writer operations (%s), %llu failed by injected faults, "
		"%llu changed the table on failure; faults %llu, canary %llu, late reads %llu, "
		"dead objects seen %llu; serialisations %llu issued/%llu skipped, %llu walkers waited\n",
		gmm_strategy_name(s), secs, (unsigned long long)gs.translations,
		(unsigned long long)atomic_load(&t->failed_translations),
		(unsigned long long)atomic_load(&t->pins), (unsigned long long)atomic_load(&t->pin_busy),
		(unsigned long long)total_ops, opsbuf,
		(unsigned long long)atomic_load(&t->injected_failures),
		(unsigned long long)atomic_load(&t->changed_on_failure),
		(unsigned long long)atomic_load(&t->faults), (unsigned long long)atomic_load(&t->canary),
		(unsigned long long)gs.late_reads, (unsigned long long)atomic_load(&t->dead_objects),
		(unsigned long long)gs.serialize_issued, (unsigned long long)gs.serialize_skipped,
		(unsigned long long)gs.walker_waits);

#define CHECK(cond, ...) do { if (!(cond)) fail(t, __VA_ARGS__); } while (0)
	CHECK(atomic_load(&t->faults) == 0, "%llu walker faults on released memory",
	      (unsigned long long)atomic_load(&t->faults));
	CHECK(atomic_load(&t->canary) == 0, "%llu canaries changed under a walker or pin",
	      (unsigned long long)atomic_load(&t->canary));
	CHECK(gs.late_reads == 0, "%llu late reads of freed table pages",
	      (unsigned long long)gs.late_reads);
	CHECK(atomic_load(&t->dead_objects) == 0,
	      "%llu retired objects seen inside walks (gmm_synchronize returned early)",
	      (unsigned long long)atomic_load(&t->dead_objects));
	CHECK(gs.walks_in_flight == 0, "walks still in flight at the end");
	CHECK(gs.translations >= t->target, "only %llu translations",
	      (unsigned long long)gs.translations);
	for (int i = 0; i < OP__N; i++)
		CHECK(atomic_load(&t->ops[i]) > 0, "no %s operation ran", op_names[i]);
	CHECK(atomic_load(&t->pins) > 0, "no pin succeeded");
	CHECK(atomic_load(&t->failed_translations) > 0, "walkers never met an unmapped page");
	if (faults_on)
		CHECK(atomic_load(&t->injected_failures) > 0, "no injected failure hit an operation");
#undef CHECK

	gmm_vm_destroy(t->vm);
	free(atomic_load(&t->published));
	if (t->error[0]) {
		printf("[FAIL] torture::%s: %s\n", gmm_strategy_name(s), t->error);
		ret = -1;
	} else {
		printf("[PASS] torture::%s\n", gmm_strategy_name(s));
	}
	fflush(stdout);
	pthread_mutex_destroy(&t->err_lock);
	free(t);
	return ret;
}

/* With injected failures the library logs each failed host call, as it
 * should; here they are expected: count them instead of printing. */
static _Atomic uint64_t log_lines;
static void count_log(enum gmm_log_level lvl, const char *msg)
{
	(void)lvl, (void)msg;
	atomic_fetch_add_explicit(&log_lines, 1, memory_order_relaxed);
}

static int usage(const char *msg)
{
	fprintf(stderr, "guestmm-torture: %s\n"
		"usage: guestmm-torture [--strategy all|S[,S...]] [--translations N] "
		"[--faults on|off] [--seconds S] [--seed N]\n", msg);
	return 2;
}

int main(int argc, char **argv)
{
	const char *env = getenv("GMM_STRESS_TRANSLATIONS");
	uint64_t target = env ? strtoull(env, NULL, 0) : 10000000ULL;
	const char *strategies = "all";
	bool faults_on = false;
	double seconds = 0;
	uint64_t seed = 1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			return usage("missing value");
		char *end;
		if (!strcmp(a, "--strategy")) {
			strategies = v;
		} else if (!strcmp(a, "--translations")) {
			target = strtoull(v, &end, 0);
			if (*end || !target)
				return usage("bad --translations");
		} else if (!strcmp(a, "--faults")) {
			if (strcmp(v, "on") && strcmp(v, "off"))
				return usage("--faults on|off");
			faults_on = !strcmp(v, "on");
		} else if (!strcmp(a, "--seconds")) {
			seconds = strtod(v, &end);
			if (*end || seconds < 0)
				return usage("bad --seconds");
		} else if (!strcmp(a, "--seed")) {
			seed = strtoull(v, &end, 0);
			if (*end)
				return usage("bad --seed");
		} else {
			return usage("unknown option");
		}
		i++;
	}
#ifndef GMM_FAULT_INJECTION
	if (faults_on)
		return usage("--faults on needs the fault-injection build (guestmm_fi)");
#endif

	install_fault_catcher();

	if (faults_on)
		gmm_set_log_fn(count_log);
	int passed = 0, failed = 0, skipped = 0;
	for (int s = 0; s < GMM_STRATEGY__N; s++) {
		const char *name = gmm_strategy_name((enum gmm_strategy)s);
		if (strcmp(strategies, "all")) {
			/* Is name in the comma-separated list? */
			size_t n = strlen(name);
			const char *q = strategies;
			bool found = false;
			while ((q = strstr(q, name))) {
				if ((q == strategies || q[-1] == ',') && (q[n] == ',' || !q[n]))
					found = true;
				q += n;
			}
			if (!found)
				continue;
		}
		if (!gmm_strategy_available(s)) {
			printf("[SKIP] torture::%s: not available on this kernel\n", name);
			skipped++;
			continue;
		}
		if (run((enum gmm_strategy)s, target, faults_on, seconds, seed) == 0)
			passed++;
		else
			failed++;
	}
	if (faults_on)
		fprintf(stderr, "torture: %llu library log lines (injected failures) not shown\n",
			(unsigned long long)atomic_load(&log_lines));
	printf("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Skipped: %d\n",
	       passed + failed + skipped, passed, failed, skipped);
	return failed || !passed ? 1 : 0;
}
