/*
 * dirty_stress.c - the dirty log under concurrency, without Criterion (it
 * runs under ThreadSanitizer in the concurrency suite): what a live
 * migration relies on.  A 16 MiB thp region, logging on; 3 walker threads
 * keep writing (translate for write + store, and write pins whose "I/O"
 * lands after the pin's walk ended; gmm_write is memcpy, which TSan would
 * report against the harvester's concurrent reads -- its marks are in
 * test_dirty.c) a counter into random pages; a
 * harvester thread plays the migration's source: harvest, then copy every
 * reported page into a shadow.  When the walkers stop, a last harvest and
 * copy (the stop-and-copy) must leave the shadow equal to the region, word
 * for word: a write whose page was never reported again after it landed
 * is a lost write.  Every strategy; exit 0, or 1 with the first lost page.
 *
 *   guestmm-dirty-stress [MILLISECONDS per strategy]   (default 1500)
 */
#include <guestmm/guestmm.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MiB (1ULL << 20)
#define SIZE (16 * MiB)
#define BASE (1ULL << 30)
#define PAGES (SIZE / GMM_PAGE_SIZE)
#define WALKERS 3

static struct gmm_vm *vm;
static uint8_t *hva;
static uint8_t *shadow;
static _Atomic bool stop;
static _Atomic int failed;
static _Atomic int errors;

static void on_log(enum gmm_log_level lvl, const char *msg)
{
	fprintf(stderr, "guestmm: %s\n", msg);
	if (lvl == GMM_LOG_ERROR)
		atomic_fetch_add(&errors, 1);
}

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* Up to ~20 us: wide enough that harvests fall between a mark and the
 * store behind it (without it, a broken harvest went unseen). */
static void delay(uint64_t *x)
{
	for (uint64_t i = rnd(x) % 4096; i; i--)
		__asm__ volatile("pause");
}

static void *walker(void *arg)
{
	uint64_t x = (uintptr_t)arg * 0x9e3779b97f4a7c15ULL + 1, n = 0;
	struct gmm_walker *w = gmm_walker_register(vm);
	if (!w) {
		atomic_store(&failed, 1);
		return NULL;
	}
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		uint64_t page = rnd(&x) % PAGES, gpa = BASE + page * GMM_PAGE_SIZE + (rnd(&x) % 512) * 8;
		uint64_t v = ++n << 8 | (uintptr_t)arg;
		switch (n % 2) {
		case 0: {
			gmm_walk_begin(w);
			_Atomic uint64_t *p = gmm_translate(w, gpa, 8, GMM_ACCESS_WRITE);
			delay(&x);   /* the device's work between translation and store */
			if (p)
				atomic_store_explicit(p, v, memory_order_relaxed);
			gmm_walk_end(w);
			break;
		}
		default: {
			struct gmm_pin pin;
			if (gmm_pin(w, gpa, 8, GMM_ACCESS_WRITE, &pin) == 0) {
				/* The "I/O": after the pin's walk has ended. */
				delay(&x);
				atomic_store_explicit((_Atomic uint64_t *)pin.hva, v, memory_order_relaxed);
				gmm_unpin(vm, &pin);
			}
			break;
		}
		}
	}
	gmm_walker_unregister(w);
	return NULL;
}

static uint64_t bits[PAGES / 64];

/* Harvest, then copy what was reported into the shadow (word by word with
 * relaxed atomic loads: the walkers may be writing the same words). */
static int harvest_and_copy(void)
{
	memset(bits, 0, sizeof(bits));
	if (gmm_dirty_harvest(vm, BASE, bits, PAGES) < 0) {
		fprintf(stderr, "dirty-stress: harvest: %s\n", gmm_last_error());
		return -1;
	}
	for (uint64_t p = 0; p < PAGES; p++) {
		if (!(bits[p / 64] >> (p % 64) & 1))
			continue;
		for (uint64_t o = 0; o < GMM_PAGE_SIZE; o += 8) {
			uint64_t v = atomic_load_explicit((_Atomic uint64_t *)(hva + p * GMM_PAGE_SIZE + o),
							  memory_order_relaxed);
			memcpy(shadow + p * GMM_PAGE_SIZE + o, &v, 8);
		}
	}
	return 0;
}

static int run(enum gmm_strategy s, unsigned ms)
{
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	cfg.strategy = s;
	if (gmm_vm_create(&cfg, &vm) < 0) {
		fprintf(stderr, "dirty-stress: %s\n", gmm_last_error());
		return -1;
	}
	struct gmm_region *r;
	struct gmm_region_spec spec = { .gpa = BASE, .size = SIZE, .backing = GMM_BACKING_THP,
					.flags = GMM_REGION_PREFAULT, .name = "dirty-stress" };
	if (gmm_region_add(vm, &spec, &r) < 0) {
		fprintf(stderr, "dirty-stress: %s\n", gmm_last_error());
		gmm_vm_destroy(vm);
		return -1;
	}
	struct gmm_region_info info;
	gmm_region_info(r, &info);
	hva = info.hva;
	/* The first pass: everything, after logging started. */
	if (gmm_dirty_start(vm) < 0) {
		fprintf(stderr, "dirty-stress: %s\n", gmm_last_error());
		return -1;
	}
	memcpy(shadow, hva, SIZE);
	atomic_store(&stop, false);
	pthread_t t[WALKERS];
	unsigned started = 0;
	for (; started < WALKERS; started++)
		if (pthread_create(&t[started], NULL, walker, (void *)(uintptr_t)(started + 1)))
			break;
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	unsigned harvests = 0;
	int rc = 0;
	do {
		if (harvest_and_copy() < 0)
			rc = -1;
		harvests++;
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (!rc && (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 < ms);
	atomic_store(&stop, true);
	for (unsigned i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	/* Stop and copy: nothing writes any more. */
	if (!rc && harvest_and_copy() < 0)
		rc = -1;
	for (uint64_t p = 0; !rc && p < PAGES; p++) {
		if (memcmp(shadow + p * GMM_PAGE_SIZE, hva + p * GMM_PAGE_SIZE, GMM_PAGE_SIZE)) {
			fprintf(stderr, "dirty-stress: %s: page 0x%llx changed after its last report: "
				"a lost write\n", gmm_strategy_name(s),
				(unsigned long long)(BASE + p * GMM_PAGE_SIZE));
			rc = -1;
		}
	}
	gmm_dirty_stop(vm);
	gmm_vm_destroy(vm);
	vm = NULL;
	if (!rc)
		printf("dirty-stress: %s: %u harvests beside %u writers, shadow equal\n",
		       gmm_strategy_name(s), harvests, started);
	return rc;
}

int main(int argc, char **argv)
{
	unsigned ms = argc > 1 ? (unsigned)atoi(argv[1]) : 1500;
	gmm_set_log_fn(on_log);
	shadow = malloc(SIZE);
	if (!shadow)
		return 1;
	int rc = 0;
	for (int s = 0; s < GMM_STRATEGY__N; s++) {
		if (!gmm_strategy_available(s))
			continue;
		if (run((enum gmm_strategy)s, ms) < 0)
			rc = 1;
	}
	free(shadow);
	if (atomic_load(&failed) || atomic_load(&errors)) {
		fprintf(stderr, "dirty-stress: a walker failed or guestmm logged an error\n");
		rc = 1;
	}
	return rc;
}
