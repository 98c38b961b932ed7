/*
 * ondemand_stress.c - on-demand restore under concurrency, without
 * Criterion (it runs under ThreadSanitizer in the concurrency suite): a
 * 64 MiB thp region written with a pattern and saved; then, ROUNDS times,
 * a fresh VM restores it on demand (handler and fill-ahead) while 4 walker
 * threads read every word through guestmm and a writer thread unmaps and
 * maps back blocks the walkers skip, and discards pages of a block the
 * walkers do not read.  Every word a walker reads must be the pattern;
 * every round must end (bounded waits), and guestmm must log no error;
 * exit 0, or 1 with the first bad word or error.
 *
 *   guestmm-ondemand-stress [ROUNDS]      (default 5)
 */
#include <guestmm/guestmm.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MiB (1ULL << 20)
#define SIZE (64 * MiB)
#define BASE (1ULL << 30)
/* Blocks 20..27 are the writer's: walkers skip them. */
#define W_LO (BASE + 40 * MiB)
#define W_HI (W_LO + 8 * 2 * MiB)

/* Every guestmm error line is a failure: nothing here is an error. */
static _Atomic int errors;
static void on_log(enum gmm_log_level lvl, const char *msg)
{
	fprintf(stderr, "guestmm: %s\n", msg);
	if (lvl == GMM_LOG_ERROR)
		atomic_fetch_add(&errors, 1);
}

static uint64_t word(uint64_t gpa)
{
	return gpa * 0x9e3779b97f4a7c15ULL + 7;
}

struct walker_arg {
	struct gmm_vm *vm;
	uint64_t from, to;
	int bad;
	uint64_t bad_gpa, bad_val;
};

static void *walker(void *p)
{
	struct walker_arg *a = p;
	struct gmm_walker *w = gmm_walker_register(a->vm);
	if (!w) {
		a->bad = 1;
		return NULL;
	}
	for (uint64_t g = a->from; g < a->to && !a->bad; g += 512) {
		if (g >= W_LO && g < W_HI)
			continue;
		uint64_t v = 0;
		if (gmm_read(w, g, &v, sizeof(v)) < 0 || v != word(g)) {
			a->bad = 1;
			a->bad_gpa = g;
			a->bad_val = v;
		}
	}
	gmm_walker_unregister(w);
	return NULL;
}

struct writer_arg {
	struct gmm_vm *vm;
	_Atomic int stop;
	int err;
};

static void *writer(void *p)
{
	struct writer_arg *a = p;
	for (unsigned i = 0; !atomic_load(&a->stop) && i < 1000; i++) {
		uint64_t g = W_LO + (i % 8) * 2 * MiB;
		int rc = gmm_unmap(a->vm, g, 2 * MiB, 0);
		if (rc == 0)
			rc = gmm_map(a->vm, g, 2 * MiB);
		if (rc == 0)
			rc = gmm_discard(a->vm, W_LO + ((i + 3) % 8) * 2 * MiB, 4096);
		if (rc < 0) {
			a->err = rc;
			return NULL;
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned rounds = argc > 1 ? (unsigned)atoi(argv[1]) : 5;
	gmm_set_log_fn(on_log);
	char path[] = "/tmp/gmm-ondemand-stress-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return 1;
	unlink(path);
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	struct gmm_vm *src;
	struct gmm_region *r;
	struct gmm_region_spec spec = { .gpa = BASE, .size = SIZE, .backing = GMM_BACKING_THP,
					.name = "src" };
	if (gmm_vm_create(&cfg, &src) < 0 || gmm_region_add(src, &spec, &r) < 0) {
		fprintf(stderr, "ondemand-stress: %s\n", gmm_last_error());
		return 1;
	}
	struct gmm_region_info info;
	gmm_region_info(r, &info);
	for (uint64_t g = BASE; g < BASE + SIZE; g += 512)
		*(uint64_t *)((uint8_t *)info.hva + (g - BASE)) = word(g);
	if (gmm_region_save(r, fd, 0, 2, NULL) < 0) {
		fprintf(stderr, "ondemand-stress: save: %s\n", gmm_last_error());
		return 1;
	}
	gmm_vm_destroy(src);
	int status = 0;
	for (unsigned round = 0; round < rounds && !status; round++) {
		struct gmm_vm *vm;
		struct gmm_region *r2;
		spec.name = "dst";
		cfg.strategy = (enum gmm_strategy)(round % GMM_STRATEGY__N);
		if (!gmm_strategy_available(cfg.strategy))
			cfg.strategy = gmm_strategy_default();
		if (gmm_vm_create(&cfg, &vm) < 0 || gmm_region_add(vm, &spec, &r2) < 0) {
			fprintf(stderr, "ondemand-stress: %s\n", gmm_last_error());
			return 1;
		}
		struct gmm_ondemand *od;
		struct gmm_ondemand_spec os = { .fd = fd, .nregions = 1, .regions = { { r2, 0 } } };
		int rc = gmm_ondemand_start(vm, &os, &od);
		if (rc == -EPERM || rc == -ENOSYS) {
			fprintf(stderr, "ondemand-stress: SKIP: %s\n", gmm_last_error());
			return 77;
		}
		if (rc < 0) {
			fprintf(stderr, "ondemand-stress: %s\n", gmm_last_error());
			return 1;
		}
		struct walker_arg wa[4];
		pthread_t wt[4], ww;
		struct writer_arg wr = { .vm = vm };
		pthread_create(&ww, NULL, writer, &wr);
		for (int i = 0; i < 4; i++) {
			/* Each walker reads half of the region from its own start. */
			wa[i] = (struct walker_arg){ .vm = vm, .from = BASE + (uint64_t)i * SIZE / 8,
						     .to = BASE + (uint64_t)i * SIZE / 8 + SIZE / 2 };
			pthread_create(&wt[i], NULL, walker, &wa[i]);
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(wt[i], NULL);
			if (wa[i].bad) {
				fprintf(stderr, "ondemand-stress: round %u (%s): walker %d read 0x%llx at "
					"0x%llx\n", round, gmm_strategy_name(cfg.strategy), i,
					(unsigned long long)wa[i].bad_val,
					(unsigned long long)wa[i].bad_gpa);
				status = 1;
			}
		}
		atomic_store(&wr.stop, 1);
		pthread_join(ww, NULL);
		if (wr.err) {
			fprintf(stderr, "ondemand-stress: writer: %s\n", strerror(-wr.err));
			status = 1;
		}
		if (gmm_ondemand_wait(od, 30000) < 0) {
			fprintf(stderr, "ondemand-stress: round %u: fill-ahead not done in 30 s\n", round);
			status = 1;
		}
		struct gmm_ondemand_stats st;
		gmm_ondemand_stats(od, &st);
		printf("ondemand-stress round %u (%s): %llu faults, %llu blocks by fault, %llu by "
		       "fill-ahead, %llu zero-filled, %llu collapsed\n", round,
		       gmm_strategy_name(cfg.strategy), (unsigned long long)st.faults,
		       (unsigned long long)st.blocks_fault, (unsigned long long)st.blocks_fill,
		       (unsigned long long)st.zero_served, (unsigned long long)st.collapsed);
		gmm_ondemand_stop(od);
		gmm_vm_destroy(vm);
	}
	close(fd);
	if (atomic_load(&errors)) {
		fprintf(stderr, "ondemand-stress: guestmm logged %d error%s\n", atomic_load(&errors),
			atomic_load(&errors) == 1 ? "" : "s");
		status = 1;
	}
	printf("ondemand-stress: %s\n", status ? "FAILED" : "ok");
	return status;
}
