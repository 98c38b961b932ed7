// SPDX-License-Identifier: GPL-2.0-only
/*
 * bench_munmap.c - `vmm bench munmap`: how long does it take to take guest
 * memory away from a running VM, with each guestmm strategy, against the
 * floors a VMM cannot beat?
 *
 * The VM under test is a real KVM VM: a small system region (64 MiB at GPA
 * 0: the exitloop image, its stacks and page tables, a scratch area) and
 * the RAM under test, G GiB at GPA 4 GiB in its own memslot, prefaulted.
 * V vCPU threads run images/exitloop.c: every vCPU writes to the benchdev
 * port in a loop; the exit handler (bench_pio, on the vCPU thread, inside
 * its walk section) translates a GPA in the target range and copies 64
 * bytes.  W device walkers (threads "_walkerN") translate and copy 4 KiB
 * of the target range in a loop, as a virtio back end does.
 *
 * Methods, one sample each per repetition, in a rotating order:
 *   raw-munmap   floor (a): mmap + MADV_HUGEPAGE + populate as much THP
 *                as is unmapped (G, or the range) in this process, every
 *                VM paused, time munmap.  Measured once per amount per run
 *                (it depends on nothing else).
 *   kvm-floor    floor (b): the same backing allocated outside guestmm,
 *                a memslot over it, the same V vCPUs and W walkers
 *                running (their target: the scratch area, since nothing
 *                would keep them from touching memory that goes away);
 *                time KVM memslot deletion + munmap (range: the same
 *                release syscalls guestmm makes, memslot kept).
 *   strategies   the region added through guestmm; vCPUs and walkers
 *                target it; time memslot deletion + gmm_region_remove()
 *                (range: gmm_unmap() of the range).
 * Around each call: guestmm's statistics and the vCPUs' signal exits
 * before and after, the walkers' translation rate just before and during,
 * and the time until the host has the memory back (RSS, or the hugetlb
 * pool's free pages), polled from the call's return.
 *
 * Per-block strategies (kick, count) can take minutes per sample on a
 * small machine; when a probe of BENCH_PROBE_BLOCKS blocks predicts more
 * than --budget seconds, each repetition measures such a probe and scales
 * it, and the sample is marked "predicted" everywhere it is shown.
 *
 * Threads: the main thread measures; vCPU and walker threads only run the
 * loads.  Between measurements every VM is paused (vm_pause) and every
 * walker parked outside its walk section.  SIGINT/SIGTERM are taken by a
 * signalfd and checked between samples: the run stops early and reports
 * what it measured (hugetlb pages it reserved are given back).
 */
#include "bench/bench_munmap.h"
#include "bench/bench.h"
#include "bench/bench_model.h"
#include "bench/bench_report.h"
#include "core/bus.h"
#include "core/log.h"
#include "core/size.h"
#include "core/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/utsname.h>
#include <testimg.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 4U
#endif

#define SYS_SIZE (64ULL << 20)
#define SCRATCH_GPA (32ULL << 20)
#define SCRATCH_SIZE (32ULL << 20)
#define RAM_GPA (4ULL << 30)
#define RAM_SLOT 2
#define MAX_WALKERS 64
#define MAX_VCPUS 64
#define HUGETLB_FREE "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"
#define HUGETLB_NR "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static double ms_between(uint64_t a, uint64_t b) { return (double)(b - a) / 1e6; }

/* ---- options --------------------------------------------------------- */

struct opts {
	uint64_t sizes[16];
	unsigned nsizes;
	uint64_t vcpus[16], walkers[16];
	unsigned nvcpus, nwalkers;
	enum gmm_backing backings[4];
	unsigned nbackings;
	unsigned methods;
	unsigned repeat;
	uint64_t range;
	double budget_s;
	unsigned warmup_ms;
	const char *image, *csv, *json, *plot, *report;
	bool reserve_hugetlb;
	bool axes;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmm bench munmap [options]\n"
		"\n"
		"Unmap the RAM of a running KVM VM (vCPUs running the exitloop test image,\n"
		"device walker threads copying guest memory) with every guestmm strategy, side\n"
		"by side with two floors measured in the same run: (a) raw munmap of as much THP\n"
		"memory with nothing else running, (b) KVM memslot deletion + munmap with the\n"
		"vCPUs running and no user-space serialisation.  Lists are comma-separated;\n"
		"every combination is measured.\n"
		"\n"
		"  --size LIST          guest RAM under test (default 4G), e.g. 1G,4G,16G\n"
		"  --vcpus LIST         vCPU threads, 1-%d (default 8)\n"
		"  --walkers LIST       device walker threads, 0-%d (default 4)\n"
		"  --backing LIST       thp | hugetlb-2M | anon (default thp)\n"
		"  --strategy LIST      kick,count,perthread,membarrier,rcu or all (default all);\n"
		"                       the floors are always measured\n"
		"  --repeat N           repetitions per method, 1-%d (default 5)\n"
		"  --range SIZE         unmap SIZE from the middle of the RAM (a hot-unplug)\n"
		"                       instead of all of it\n"
		"  --budget SECONDS     a kick or count sample predicted (from a %d-block probe)\n"
		"                       to take longer is measured as that probe and scaled,\n"
		"                       marked \"predicted\" (default 120)\n"
		"  --warmup MS          load before each unmap (default 400)\n"
		"  --image FILE         the exitloop test image (default: next to this vmm build)\n"
		"  --axes               vary one list at a time around a centre point (the\n"
		"                       largest size, 8 vCPUs if listed (else the first), the\n"
		"                       most walkers, the first backing) instead of measuring\n"
		"                       every combination\n"
		"  --no-reserve         do not reserve hugetlb pages (as root the bench reserves\n"
		"                       what hugetlb-2M needs and gives it back at the end)\n"
		"  --csv FILE           every sample, one line each\n"
		"  --json FILE          everything: config, samples, summaries, the model\n"
		"  --plot FILE.png      latency vs size per method, and vs vCPUs at the\n"
		"                       largest size (gnuplot)\n"
		"  --report FILE.json   measure nothing: print the tables and the model of a\n"
		"                       run saved with --json (and --csv/--plot from it)\n"
		"\n"
		"The table goes to stdout, progress to stderr.  SIGINT stops after the\n"
		"current sample and reports what was measured.\n",
		MAX_VCPUS, MAX_WALKERS, BENCH_MAX_REPEAT, BENCH_PROBE_BLOCKS);
}

/* Split a comma list; each item goes through fn, which returns 0 or, for a
 * bad item, die_usage()'s status.  -1 on a bad item (the message is
 * printed). */
static int parse_list(const char *opt, const char *arg, unsigned max, unsigned *n,
		      int (*fn)(const char *item, unsigned i, void *ctx), void *ctx)
{
	char *dup = strdup(arg), *save = NULL;
	int ret = 0;
	*n = 0;
	for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (*n >= max) {
			die_usage("%s: at most %u values", opt, max);
			ret = -1;
			break;
		}
		if (fn(t, *n, ctx) != 0) { /* die_usage() said why (it returns 2) */
			ret = -1;
			break;
		}
		(*n)++;
	}
	if (ret == 0 && *n == 0) {
		die_usage("%s: an empty list", opt);
		ret = -1;
	}
	free(dup);
	return ret;
}

static int item_size(const char *s, unsigned i, void *ctx)
{
	uint64_t *out = ctx;
	if (parse_size(s, &out[i]) < 0 || out[i] < (64ULL << 20) || out[i] % (2ULL << 20) ||
	    out[i] > (256ULL << 30))
		return die_usage("--size: '%s' is not a size of 64M-256G in whole 2 MiB", s);
	return 0;
}

static int item_vcpus(const char *s, unsigned i, void *ctx)
{
	uint64_t *out = ctx;
	if (parse_uint(s, 1, MAX_VCPUS, &out[i]) < 0)
		return die_usage("--vcpus: '%s' is not a count of 1-%d", s, MAX_VCPUS);
	return 0;
}

static int item_walkers(const char *s, unsigned i, void *ctx)
{
	uint64_t *out = ctx;
	if (parse_uint(s, 0, MAX_WALKERS, &out[i]) < 0)
		return die_usage("--walkers: '%s' is not a count of 0-%d", s, MAX_WALKERS);
	return 0;
}

static int item_backing(const char *s, unsigned i, void *ctx)
{
	enum gmm_backing *out = ctx;
	if (gmm_backing_parse(s, &out[i]) < 0 ||
	    (out[i] != GMM_BACKING_THP && out[i] != GMM_BACKING_HUGETLB_2M &&
	     out[i] != GMM_BACKING_ANON))
		return die_usage("--backing: '%s' is not thp, hugetlb-2M or anon", s);
	return 0;
}

static int item_strategy(const char *s, unsigned i, void *ctx)
{
	(void)i;
	unsigned *mask = ctx;
	enum gmm_strategy st;
	if (strcmp(s, "all") == 0) {
		for (int k = 0; k < GMM_STRATEGY__N; k++)
			*mask |= 1u << (BM_KICK + k);
		return 0;
	}
	if (gmm_strategy_parse(s, &st) < 0)
		return die_usage("--strategy: '%s' is not kick, count, perthread, membarrier, rcu "
				 "or all", s);
	if (!gmm_strategy_available(st))
		return die_usage("--strategy: %s is not available on this kernel", s);
	*mask |= 1u << (BM_KICK + st);
	return 0;
}

/* The exitloop image built next to this vmm: BUILD/vmm/vmm -> BUILD/images/exitloop. */
static const char *default_image(void)
{
	static char path[4200];
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return NULL;
	self[n] = 0;
	char *slash = strrchr(self, '/');
	if (!slash)
		return NULL;
	*slash = 0;
	snprintf(path, sizeof(path), "%s/../images/exitloop", self);
	return access(path, R_OK) == 0 ? path : NULL;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	enum { O_SIZE = 256, O_VCPUS, O_WALKERS, O_BACKING, O_STRATEGY, O_REPEAT, O_RANGE,
	       O_BUDGET, O_WARMUP, O_IMAGE, O_CSV, O_JSON, O_PLOT, O_NORESERVE, O_AXES, O_REPORT, O_HELP };
	static const struct option lopts[] = {
		{ "size", required_argument, 0, O_SIZE },
		{ "vcpus", required_argument, 0, O_VCPUS },
		{ "walkers", required_argument, 0, O_WALKERS },
		{ "backing", required_argument, 0, O_BACKING },
		{ "strategy", required_argument, 0, O_STRATEGY },
		{ "repeat", required_argument, 0, O_REPEAT },
		{ "range", required_argument, 0, O_RANGE },
		{ "budget", required_argument, 0, O_BUDGET },
		{ "warmup", required_argument, 0, O_WARMUP },
		{ "image", required_argument, 0, O_IMAGE },
		{ "csv", required_argument, 0, O_CSV },
		{ "json", required_argument, 0, O_JSON },
		{ "plot", required_argument, 0, O_PLOT },
		{ "no-reserve", no_argument, 0, O_NORESERVE },
		{ "axes", no_argument, 0, O_AXES },
		{ "report", required_argument, 0, O_REPORT },
		{ "help", no_argument, 0, O_HELP },
		{ 0, 0, 0, 0 },
	};
	*o = (struct opts){ .sizes = { 4ULL << 30 }, .nsizes = 1, .vcpus = { 8 }, .nvcpus = 1,
			    .walkers = { 4 }, .nwalkers = 1, .backings = { GMM_BACKING_THP },
			    .nbackings = 1, .repeat = 5, .budget_s = 120, .warmup_ms = 400,
			    .reserve_hugetlb = true };
	unsigned n;
	uint64_t v;
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (c) {
		case O_SIZE:
			if (parse_list("--size", optarg, 16, &o->nsizes, item_size, o->sizes) < 0)
				return 2;
			break;
		case O_VCPUS:
			if (parse_list("--vcpus", optarg, 16, &o->nvcpus, item_vcpus, o->vcpus) < 0)
				return 2;
			break;
		case O_WALKERS:
			if (parse_list("--walkers", optarg, 16, &o->nwalkers, item_walkers,
				       o->walkers) < 0)
				return 2;
			break;
		case O_BACKING:
			if (parse_list("--backing", optarg, 4, &o->nbackings, item_backing,
				       o->backings) < 0)
				return 2;
			break;
		case O_STRATEGY:
			o->methods = 0;
			if (parse_list("--strategy", optarg, 8, &n, item_strategy, &o->methods) < 0)
				return 2;
			break;
		case O_REPEAT:
			if (parse_uint(optarg, 1, BENCH_MAX_REPEAT, &v) < 0)
				return die_usage("--repeat: '%s' is not a count of 1-%d", optarg,
						 BENCH_MAX_REPEAT);
			o->repeat = (unsigned)v;
			break;
		case O_RANGE:
			if (parse_size(optarg, &o->range) < 0 || o->range == 0 ||
			    o->range % (2ULL << 20))
				return die_usage("--range: '%s' is not a size in whole 2 MiB", optarg);
			break;
		case O_BUDGET: {
			char *end;
			errno = 0;
			o->budget_s = strtod(optarg, &end);
			if (errno || *end || end == optarg || !(o->budget_s > 0) || o->budget_s > 1e6)
				return die_usage("--budget: '%s' is not a number of seconds", optarg);
			break;
		}
		case O_WARMUP:
			if (parse_uint(optarg, 10, 60000, &v) < 0)
				return die_usage("--warmup: '%s' is not 10-60000 ms", optarg);
			o->warmup_ms = (unsigned)v;
			break;
		case O_IMAGE:
			o->image = optarg;
			break;
		case O_CSV:
			o->csv = optarg;
			break;
		case O_JSON:
			o->json = optarg;
			break;
		case O_PLOT:
			o->plot = optarg;
			break;
		case O_NORESERVE:
			o->reserve_hugetlb = false;
			break;
		case O_AXES:
			o->axes = true;
			break;
		case O_REPORT:
			o->report = optarg;
			break;
		case O_HELP:
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return die_usage("unknown or incomplete option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return die_usage("unexpected argument '%s'", argv[optind]);
	if (!o->methods)
		item_strategy("all", 0, &o->methods);
	o->methods |= 1u << BM_RAW | 1u << BM_KVM;
	/* Drop strategies this kernel lacks (all asked for implicitly). */
	for (int s = 0; s < GMM_STRATEGY__N; s++)
		if (!gmm_strategy_available(s) && (o->methods & (1u << (BM_KICK + s)))) {
			log_msg(LOG_WARN, "strategy %s is not available here: skipped",
				gmm_strategy_name(s));
			o->methods &= ~(1u << (BM_KICK + s));
		}
	for (unsigned i = 0; i < o->nsizes; i++)
		if (o->range && o->range >= o->sizes[i])
		{
			char a[32], b[32];
			return die_usage("--range %s must be smaller than --size %s",
					 format_size(o->range, a, sizeof a),
					 format_size(o->sizes[i], b, sizeof b));
		}
	if (o->report)
		return o->plot && bench_plot_check() < 0 ? 2 : -1;
	if (!o->image)
		o->image = default_image();
	if (!o->image)
		return die_usage("--image: the exitloop test image was not found next to this "
				 "vmm; give its path (BUILD/images/exitloop)");
	if (access(o->image, R_OK) < 0)
		return die_usage("--image %s: %s", o->image, strerror(errno));
	if (o->plot && bench_plot_check() < 0)
		return 2;
	return -1; /* go on */
}

/* ---- the loads: benchdev on vCPU exits, device walkers ---------------- */

struct target {
	_Atomic uint64_t base, size;   /* the range walkers and vCPU exits read */
};

struct bvm;

struct walker {
	struct bvm *b;
	unsigned index;
	pthread_t thread;
	bool started;
};

/* One VM of the run: one per guestmm strategy, one for the KVM floor. */
struct bvm {
	int method;
	struct vm *vm;
	struct target target;
	struct walker walkers[MAX_WALKERS];
	unsigned nwalkers;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	_Atomic int state;             /* 0 parked, 1 run, 2 quit */
	unsigned parked;               /* walkers parked (under lock) */
};

static inline uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

/* The benchdev port: on a vCPU thread, inside its walk section (vcpu.c).
 * Reads 64 bytes at a GPA of the target chosen from the written value; a
 * fault (the range is being unmapped) is counted by guestmm. */
static void bench_pio(void *opaque, struct vcpu *cpu, uint64_t off, uint8_t *data, unsigned len,
		      bool is_write)
{
	(void)opaque;
	(void)off;
	struct bvm *b = cpu->vm->owner;
	if (!b || !is_write) {
		memset(data, 0xff, len);
		return;
	}
	uint32_t v = 0;
	memcpy(&v, data, len < 4 ? len : 4);
	uint64_t base = atomic_load_explicit(&b->target.base, memory_order_relaxed);
	uint64_t size = atomic_load_explicit(&b->target.size, memory_order_relaxed);
	uint8_t buf[64];
	if (size)
		gmm_read(cpu->walker, base + (mix(v) % (size / 64)) * 64, buf, sizeof(buf));
}

/* The exitloop image's console (COM1): swallowed, the line status always
 * "transmitter empty". */
static void sink_pio(void *opaque, struct vcpu *cpu, uint64_t off, uint8_t *data, unsigned len,
		     bool is_write)
{
	(void)opaque;
	(void)cpu;
	if (!is_write)
		memset(data, off == 5 ? 0x60 : 0, len);
}

/* Park (outside any walk) while the VM is paused; false to quit. */
static bool walker_wait(struct bvm *b)
{
	int st = atomic_load_explicit(&b->state, memory_order_acquire);
	if (st == 1)
		return true;
	pthread_mutex_lock(&b->lock);
	b->parked++;
	pthread_cond_broadcast(&b->cond);
	while ((st = atomic_load_explicit(&b->state, memory_order_acquire)) == 0)
		pthread_cond_wait(&b->cond, &b->lock);
	b->parked--;
	pthread_mutex_unlock(&b->lock);
	return st == 1;
}

/* A device walker: translate 4 KiB of the target and copy it, as a virtio
 * back end moving a buffer.  One walk section per buffer. */
static void *walker_thread(void *arg)
{
	struct walker *wk = arg;
	struct bvm *b = wk->b;
	char name[16];
	snprintf(name, sizeof(name), "_walker%u", wk->index);
	pthread_setname_np(pthread_self(), name);
	struct gmm_walker *w = gmm_walker_register(b->vm->mem);
	if (!w) {
		log_msg(LOG_ERROR, "walker %u: %s", wk->index, gmm_last_error());
		pthread_mutex_lock(&b->lock);
		b->parked++; /* for good: pauses must not wait for it */
		pthread_cond_broadcast(&b->cond);
		pthread_mutex_unlock(&b->lock);
		return NULL;
	}
	static __thread uint8_t buf[4096];
	uint64_t x = 0x9e3779b97f4a7c15ULL * (wk->index + 1);
	while (walker_wait(b)) {
		uint64_t base = atomic_load_explicit(&b->target.base, memory_order_relaxed);
		uint64_t size = atomic_load_explicit(&b->target.size, memory_order_relaxed);
		x = mix(x + 1);
		gmm_walk_begin(w);
		void *p = size ? gmm_translate(w, base + (x % (size / 4096)) * 4096, 4096, 0) : NULL;
		if (p) {
			memcpy(buf, p, sizeof(buf));
			/* The copy is the point: keep the compiler from dropping it. */
			__asm__ volatile("" : : "r"(buf) : "memory");
		}
		gmm_walk_end(w);
	}
	gmm_walker_unregister(w);
	return NULL;
}

static void bvm_set_state(struct bvm *b, int st)
{
	pthread_mutex_lock(&b->lock);
	atomic_store_explicit(&b->state, st, memory_order_release);
	pthread_cond_broadcast(&b->cond);
	if (st == 0)
		while (b->parked < b->nwalkers)
			pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
}

static void bvm_pause(struct bvm *b)
{
	vm_pause(b->vm);
	bvm_set_state(b, 0);
}

static void bvm_resume(struct bvm *b)
{
	bvm_set_state(b, 1);
	vm_resume(b->vm);
}

static void bvm_destroy(struct bvm *b)
{
	if (!b)
		return;
	if (b->vm) {
		bvm_set_state(b, 2);
		for (unsigned i = 0; i < b->nwalkers; i++)
			if (b->walkers[i].started)
				pthread_join(b->walkers[i].thread, NULL);
		vm_resume(b->vm);
		vm_stop(b->vm, 0, "benchmark done");
		vm_join(b->vm);
		vm_destroy(b->vm);
	}
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
	free(b);
}

/* A paused VM with V vCPUs running exitloop and W parked walkers. */
static struct bvm *bvm_create(int method, const struct bench_config *cfg, const char *image)
{
	struct bvm *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->method = method;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	struct vm_config vc = {
		.mem_size = SYS_SIZE,
		.nr_vcpus = cfg->vcpus,
		.backing = GMM_BACKING_THP,
		.strategy = bench_is_strategy(method) ? bench_strategy(method) : GMM_STRATEGY_DEFAULT,
		.cpuid_filter = -1,
		.boot = { .kernel = image },
	};
	if (vm_create(&vc, &b->vm) != 0) {
		b->vm = NULL;
		bvm_destroy(b);
		return NULL;
	}
	b->vm->owner = b;
	atomic_store(&b->target.base, SCRATCH_GPA);
	atomic_store(&b->target.size, SCRATCH_SIZE);
	if (vm_start(b->vm) < 0) {
		bvm_destroy(b);
		return NULL;
	}
	for (unsigned i = 0; i < cfg->walkers; i++) {
		struct walker *wk = &b->walkers[i];
		wk->b = b;
		wk->index = i;
		if (pthread_create(&wk->thread, NULL, walker_thread, wk) != 0) {
			log_msg(LOG_ERROR, "cannot start walker %u", i);
			bvm_destroy(b);
			return NULL;
		}
		wk->started = true;
		b->nwalkers++;
	}
	bvm_pause(b);
	return b;
}

/* ---- host memory: what the process holds ------------------------------ */

static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* Bytes of host memory the run holds in this backing's kind of memory:
 * the RSS for anonymous memory, the hugetlb pool's used pages for hugetlb. */
static int64_t held_bytes(enum gmm_backing b)
{
	if (b == GMM_BACKING_HUGETLB_2M)
		return -read_long(HUGETLB_FREE) * (int64_t)(2 << 20);
	FILE *f = fopen("/proc/self/statm", "r");
	long size = 0, rss = 0;
	if (f) {
		if (fscanf(f, "%ld %ld", &size, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return (int64_t)rss * 4096;
}

/* From t0, poll until the held memory dropped by at least 95% of `expect`
 * bytes below `before`; the time in ms, or -1 if not within 10 s. */
static double wait_back(enum gmm_backing b, int64_t before, uint64_t expect, uint64_t t0)
{
	int64_t goal = before - (int64_t)(expect / 20 * 19);
	for (;;) {
		uint64_t t = now_ns();
		if (held_bytes(b) <= goal)
			return ms_between(t0, t);
		if (t - t0 > 10000000000ULL)
			return -1;
		usleep(50);
	}
}

/* ---- floor memory: the same backing, outside guestmm ------------------ */

struct rawmem {
	uint8_t *hva;
	uint64_t size;
	int fd;
	enum gmm_backing backing;
};

static void populate(uint8_t *p, uint64_t len)
{
	if (madvise(p, len, MADV_POPULATE_WRITE) == 0)
		return;
	for (uint64_t o = 0; o < len; o += 4096)
		((volatile uint8_t *)p)[o] = 0;
}

/* Map and populate `size` bytes as guestmm would for this backing. */
static int rawmem_alloc(struct rawmem *m, enum gmm_backing b, uint64_t size)
{
	*m = (struct rawmem){ .size = size, .fd = -1, .backing = b };
	if (b == GMM_BACKING_HUGETLB_2M) {
		m->fd = memfd_create("bench-floor", MFD_CLOEXEC | MFD_HUGETLB | (21 << 26));
		if (m->fd < 0 || ftruncate(m->fd, (off_t)size) < 0)
			goto fail;
		m->hva = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, m->fd, 0);
		if (m->hva == MAP_FAILED)
			goto fail;
		return 0;
	}
	uint64_t align = 2ULL << 20;
	uint8_t *p = mmap(NULL, size + align, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		goto fail;
	uint8_t *a = (uint8_t *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	munmap(a + size, (size_t)(p + align - a));
	m->hva = a;
	madvise(a, size, b == GMM_BACKING_THP ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	populate(a, size);
	return 0;
fail:
	log_msg(LOG_ERROR, "floor memory (%s, %" PRIu64 " MiB): %s", gmm_backing_name(b),
		size >> 20, strerror(errno));
	if (m->fd >= 0)
		close(m->fd);
	m->hva = NULL;
	return -1;
}

/* Give [off, off + len) back: what guestmm's release does, nothing else
 * (munmap; for a range a PROT_NONE placeholder and the hugetlb punch). */
static void rawmem_release(struct rawmem *m, uint64_t off, uint64_t len)
{
	if (off == 0 && len == m->size) {
		munmap(m->hva, m->size);
		if (m->fd >= 0)
			close(m->fd);
		m->hva = NULL;
		m->fd = -1;
		return;
	}
	munmap(m->hva + off, len);
	mmap(m->hva + off, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
	     -1, 0);
	if (m->fd >= 0)
		fallocate(m->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
}

/* ---- one sample ------------------------------------------------------- */

struct snap {
	uint64_t t, trans, issued, skipped, ser_ns, kicks, waits, intr;
};

static void take(struct bvm *b, struct snap *s)
{
	struct gmm_stats st;
	gmm_vm_stats(b->vm->mem, &st);
	s->t = now_ns();
	s->trans = st.translations + st.translate_faults;
	s->issued = st.serialize_issued;
	s->skipped = st.serialize_skipped;
	s->ser_ns = st.serialize_ns;
	s->kicks = st.kicks_sent;
	s->waits = st.walker_waits;
	s->intr = 0;
	for (unsigned i = 0; i < b->vm->cfg.nr_vcpus; i++)
		s->intr += atomic_load_explicit(&b->vm->vcpus[i].intr_exits, memory_order_relaxed);
}

static double rate(const struct snap *a, const struct snap *b)
{
	return b->t > a->t ? (double)(b->trans - a->trans) * 1e9 / (double)(b->t - a->t) : 0;
}

static void fill_from_snaps(struct bench_sample *s, const struct snap *pre, const struct snap *a,
			    const struct snap *b)
{
	s->rate_before = rate(pre, a);
	s->rate_during = rate(a, b);
	s->ser_issued = b->issued - a->issued;
	s->ser_skipped = b->skipped - a->skipped;
	s->ser_ms = (double)(b->ser_ns - a->ser_ns) / 1e6;
	s->kicks = b->kicks - a->kicks;
	s->walker_waits = b->waits - a->waits;
	s->kick_exits = b->intr - a->intr;
}

struct ctx {
	const struct opts *o;
	struct bvm *vms[BM__N];
};

static void warm_up(const struct ctx *c, struct bvm *b, struct snap *pre, struct snap *a)
{
	bvm_resume(b);
	usleep(c->o->warmup_ms * 500);
	take(b, pre);
	usleep(c->o->warmup_ms * 500);
	take(b, a);
}

/* Floor (a).  Everything else is paused. */
static int sample_raw(uint64_t size, struct bench_sample *s)
{
	struct rawmem m;
	if (rawmem_alloc(&m, GMM_BACKING_THP, size) < 0)
		return -1;
	int64_t before = held_bytes(GMM_BACKING_THP);
	uint64_t t0 = now_ns();
	rawmem_release(&m, 0, size);
	uint64_t t1 = now_ns();
	*s = (struct bench_sample){ .unmap_ms = ms_between(t0, t1), .coverage = -1 };
	s->back_ms = wait_back(GMM_BACKING_THP, before, size, t0);
	return 0;
}

/* The part of the RAM a --range run unmaps: SIZE from the middle, 2 MiB aligned. */
static void victim(const struct bench_config *cfg, uint64_t *off, uint64_t *len)
{
	*len = cfg->range ? cfg->range : cfg->size;
	*off = cfg->range ? ((cfg->size - cfg->range) / 2) & ~((2ULL << 20) - 1) : 0;
}

/* Floor (b). */
static int sample_kvm(const struct ctx *c, const struct bench_config *cfg, struct bench_sample *s)
{
	struct bvm *b = c->vms[BM_KVM];
	struct rawmem m;
	if (rawmem_alloc(&m, cfg->backing, cfg->size) < 0)
		return -1;
	int err = vm_set_memslot(b->vm, RAM_SLOT, RAM_GPA, cfg->size, m.hva);
	if (err < 0) {
		log_msg(LOG_ERROR, "KVM_SET_USER_MEMORY_REGION: %s", strerror(-err));
		rawmem_release(&m, 0, cfg->size);
		return -1;
	}
	uint64_t off, len;
	victim(cfg, &off, &len);
	struct snap pre, a, z;
	warm_up(c, b, &pre, &a);
	int64_t before = held_bytes(cfg->backing);
	uint64_t t0 = now_ns();
	if (!cfg->range)
		vm_set_memslot(b->vm, RAM_SLOT, RAM_GPA, 0, NULL);
	uint64_t t1 = now_ns();
	rawmem_release(&m, off, len);
	take(b, &z);
	*s = (struct bench_sample){ .unmap_ms = ms_between(t0, z.t), .slot_ms = ms_between(t0, t1),
				    .coverage = -1 };
	s->back_ms = wait_back(cfg->backing, before, len, t0);
	fill_from_snaps(s, &pre, &a, &z);
	bvm_pause(b);
	if (cfg->range) {
		vm_set_memslot(b->vm, RAM_SLOT, RAM_GPA, 0, NULL);
		rawmem_release(&m, 0, cfg->size);
	}
	return 0;
}

/* Add the RAM under test to a strategy's VM: guestmm region + memslot.
 * `size` may be a probe's. */
static struct gmm_region *add_ram(struct bvm *b, enum gmm_backing backing, uint64_t size,
				  struct bench_sample *s, const char **cov_method)
{
	struct gmm_region_spec spec = {
		.gpa = RAM_GPA, .size = size, .backing = backing, .flags = GMM_REGION_PREFAULT,
		.name = "bench-ram",
	};
	struct gmm_region *r;
	if (gmm_region_add(b->vm->mem, &spec, &r) < 0) {
		log_msg(LOG_ERROR, "guest RAM under test: %s", gmm_last_error());
		return NULL;
	}
	struct gmm_region_info info;
	gmm_region_info(r, &info);
	int err = vm_set_memslot(b->vm, RAM_SLOT, RAM_GPA, size, info.hva);
	if (err < 0) {
		log_msg(LOG_ERROR, "KVM_SET_USER_MEMORY_REGION: %s", strerror(-err));
		gmm_region_remove(b->vm->mem, r);
		return NULL;
	}
	struct gmm_coverage cov;
	if (gmm_region_coverage(r, &cov) == 0 && cov.size) {
		s->coverage = (double)cov.huge / (double)cov.size;
		*cov_method = cov.method;
	}
	return r;
}

/* One strategy, `size` of RAM (a probe when smaller than the config's). */
static int sample_gmm(const struct ctx *c, int method, const struct bench_config *cfg,
		      uint64_t size, struct bench_sample *s, const char **cov_method)
{
	struct bvm *b = c->vms[method];
	*s = (struct bench_sample){ .coverage = -1 };
	struct gmm_region *r = add_ram(b, cfg->backing, size, s, cov_method);
	if (!r)
		return -1;
	uint64_t off = 0, len = size;
	if (size == cfg->size)
		victim(cfg, &off, &len);
	bool whole = len == size;
	atomic_store(&b->target.base, RAM_GPA);
	atomic_store(&b->target.size, size);
	struct snap pre, a, z;
	warm_up(c, b, &pre, &a);
	int64_t before = held_bytes(cfg->backing);
	uint64_t t0 = now_ns();
	if (whole)
		vm_set_memslot(b->vm, RAM_SLOT, RAM_GPA, 0, NULL);
	uint64_t t1 = now_ns();
	int ret = whole ? gmm_region_remove(b->vm->mem, r) : gmm_unmap(b->vm->mem, RAM_GPA + off, len, 0);
	take(b, &z);
	if (ret < 0)
		log_msg(LOG_ERROR, "%s: unmap: %s", bench_method_name(method), gmm_last_error());
	s->unmap_ms = ms_between(t0, z.t);
	s->slot_ms = ms_between(t0, t1);
	s->back_ms = wait_back(cfg->backing, before, len, t0);
	fill_from_snaps(s, &pre, &a, &z);
	bvm_pause(b);
	atomic_store(&b->target.base, SCRATCH_GPA);
	atomic_store(&b->target.size, SCRATCH_SIZE);
	if (!whole) {
		vm_set_memslot(b->vm, RAM_SLOT, RAM_GPA, 0, NULL);
		gmm_region_remove(b->vm->mem, r);
	}
	return ret < 0 ? -1 : 0;
}

/* A per-block method whose full sample would exceed the budget: measure a
 * probe of BENCH_PROBE_BLOCKS blocks and scale it to the config's blocks. */
static int sample_probe(const struct ctx *c, int method, const struct bench_config *cfg,
			struct bench_sample *s, const char **cov_method)
{
	uint64_t probe = BENCH_PROBE_BLOCKS * (2ULL << 20);
	if (sample_gmm(c, method, cfg, probe, s, cov_method) < 0)
		return -1;
	uint64_t off, len;
	victim(cfg, &off, &len);
	double k = (double)len / (double)probe;
	/* The memslot deletion is per call, not per block. */
	double slot = cfg->range ? 0 : s->slot_ms;
	s->unmap_ms = slot + (s->unmap_ms - s->slot_ms) * k;
	s->back_ms = s->back_ms < 0 ? -1 : slot + (s->back_ms - s->slot_ms) * k;
	s->slot_ms = slot;
	s->ser_ms *= k;
	s->ser_issued = (uint64_t)llround((double)s->ser_issued * k);
	s->ser_skipped = (uint64_t)llround((double)s->ser_skipped * k);
	s->kicks = (uint64_t)llround((double)s->kicks * k);
	s->kick_exits = (uint64_t)llround((double)s->kick_exits * k);
	s->walker_waits = (uint64_t)llround((double)s->walker_waits * k);
	s->predicted = true;
	return 0;
}

/* ---- the run ---------------------------------------------------------- */

static int sigfd = -1;
static bool interrupted;

static bool stop_asked(void)
{
	struct signalfd_siginfo si;
	if (!interrupted && sigfd >= 0 && read(sigfd, &si, sizeof(si)) == sizeof(si)) {
		interrupted = true;
		log_msg(LOG_WARN, "signal %u: stopping after this sample", si.ssi_signo);
	}
	return interrupted;
}

/* hugetlb-2M pages reserved by the run, given back at the end. */
static long hugetlb_orig = -1;

static void hugetlb_restore(void)
{
	if (hugetlb_orig < 0)
		return;
	FILE *f = fopen(HUGETLB_NR, "w");
	if (f) {
		fprintf(f, "%ld\n", hugetlb_orig);
		fclose(f);
	}
	log_msg(LOG_INFO, "hugetlb-2M pages back to %ld", hugetlb_orig);
	hugetlb_orig = -1;
}

/* Make `pages` 2 MiB huge pages free, reserving more as root. */
static int hugetlb_ensure(const struct opts *o, long pages)
{
	long fr = read_long(HUGETLB_FREE), nr = read_long(HUGETLB_NR);
	if (fr >= pages)
		return 0;
	if (!o->reserve_hugetlb || geteuid() != 0) {
		log_msg(LOG_ERROR, "hugetlb-2M: %ld free pages, %ld needed: run as root (the bench "
			"reserves them) or echo %ld > %s", fr, pages, nr + pages - fr, HUGETLB_NR);
		return -1;
	}
	if (hugetlb_orig < 0)
		hugetlb_orig = nr;
	FILE *f = fopen(HUGETLB_NR, "w");
	if (f) {
		fprintf(f, "%ld\n", nr + pages - fr);
		fclose(f);
	}
	fr = read_long(HUGETLB_FREE);
	fprintf(stderr, "bench: reserved hugetlb-2M pages: %ld free now (given back at the end)\n",
		fr);
	if (fr < pages) {
		log_msg(LOG_ERROR, "hugetlb-2M: could only get %ld of %ld pages (memory fragmented "
			"or short)", fr, pages);
		return -1;
	}
	return 0;
}

static void config_str(const struct bench_config *cfg, char *buf, size_t len)
{
	char s[32], r[32];
	snprintf(buf, len, "%s %s, %u vCPU%s, %u walker%s, %s%s", format_size(cfg->size, s, sizeof s),
		 gmm_backing_name(cfg->backing), cfg->vcpus, cfg->vcpus == 1 ? "" : "s",
		 cfg->walkers, cfg->walkers == 1 ? "" : "s",
		 cfg->range ? "range " : "whole RAM", cfg->range ? format_size(cfg->range, r, sizeof r) : "");
}

/* Floor (a) depends on the amount unmapped only (the size, or the range):
 * measured once per amount per run and shared by every point unmapping as
 * much. */
static uint64_t amount(const struct bench_config *c)
{
	return c->range ? c->range : c->size;
}

static const struct bench_cell *raw_for(struct bench_run *run, uint64_t bytes)
{
	for (unsigned i = 0; i < run->npoints; i++)
		if (amount(&run->points[i].cfg) == bytes && run->points[i].done[BM_RAW])
			return &run->points[i].cell[BM_RAW];
	return NULL;
}

static int run_point(struct bench_run *run, struct bench_point *p, const struct opts *o,
		     unsigned index, unsigned total)
{
	const struct bench_config *cfg = &p->cfg;
	char desc[128];
	config_str(cfg, desc, sizeof desc);
	fprintf(stderr, "bench: [%u/%u] %s\n", index + 1, total, desc);
	uint64_t start = now_ns();

	/* Floor (a) first: before any hugetlb reservation takes the memory. */
	const struct bench_cell *raw = raw_for(run, amount(cfg));
	if (raw) {
		p->cell[BM_RAW] = *raw;
	} else {
		for (unsigned r = 0; r < o->repeat && !stop_asked(); r++) {
			struct bench_sample *s = &p->cell[BM_RAW].s[p->cell[BM_RAW].n];
			if (sample_raw(amount(cfg), s) < 0)
				return -1;
			p->cell[BM_RAW].n++;
			fprintf(stderr, "bench:   rep %u %-10s %9.2f ms\n", r + 1, "raw-munmap", s->unmap_ms);
		}
	}
	p->done[BM_RAW] = p->cell[BM_RAW].n > 0;
	if (cfg->backing == GMM_BACKING_HUGETLB_2M &&
	    hugetlb_ensure(o, (long)((cfg->size + BENCH_PROBE_BLOCKS * (2ULL << 20)) >> 21)) < 0)
		return -1;

	struct ctx c = { .o = o };
	int ret = 0;
	for (int m = BM_KVM; m < BM__N; m++) {
		if (!(o->methods & (1u << m)))
			continue;
		c.vms[m] = bvm_create(m, cfg, o->image);
		if (!c.vms[m]) {
			ret = -1;
			goto out;
		}
	}
	/* Per-block methods: a probe decides whether a full sample fits the budget. */
	bool probe_only[BM__N] = { 0 };
	for (int m = BM_KICK; m < BM__N; m++) {
		enum gmm_strategy st = bench_strategy(m);
		if (!c.vms[m] || (st != GMM_STRATEGY_KICK && st != GMM_STRATEGY_COUNT))
			continue;
		uint64_t off, len;
		victim(cfg, &off, &len);
		if (len <= BENCH_PROBE_BLOCKS * (2ULL << 20))
			continue;
		struct bench_sample s;
		if (sample_probe(&c, m, cfg, &s, &p->coverage_method) < 0) {
			ret = -1;
			goto out;
		}
		probe_only[m] = s.unmap_ms / 1e3 > o->budget_s;
		fprintf(stderr, "bench:   probe %-10s predicts %.1f s%s\n", bench_method_name(m),
			s.unmap_ms / 1e3, probe_only[m] ? ": over the budget, probes only" : "");
	}
	for (unsigned r = 0; r < o->repeat && !stop_asked(); r++) {
		/* Rotate the order so no method always follows the same one. */
		for (int k = 0; k < BM__N - BM_KVM && !stop_asked(); k++) {
			int m = BM_KVM + (int)((k + r) % (BM__N - BM_KVM));
			if (!c.vms[m])
				continue;
			struct bench_sample *s = &p->cell[m].s[p->cell[m].n];
			int rc = m == BM_KVM ? sample_kvm(&c, cfg, s) :
				 probe_only[m] ? sample_probe(&c, m, cfg, s, &p->coverage_method) :
				 sample_gmm(&c, m, cfg, cfg->size, s, &p->coverage_method);
			if (rc < 0) {
				ret = -1;
				goto out;
			}
			p->cell[m].n++;
			p->done[m] = true;
			fprintf(stderr, "bench:   rep %u %-10s %9.2f ms%s  (ser %" PRIu64 "/%" PRIu64
				" %.2f ms, kicks %" PRIu64 ", %.2f Mtr/s)\n", r + 1, bench_method_name(m),
				s->unmap_ms, s->predicted ? " predicted" : "", s->ser_issued,
				s->ser_skipped, s->ser_ms, s->kicks, s->rate_during / 1e6);
		}
	}
out:
	for (int m = 0; m < BM__N; m++)
		bvm_destroy(c.vms[m]);
	hugetlb_restore();
	p->seconds = ms_between(start, now_ns()) / 1e3;
	return ret;
}

static bool planned(const struct bench_config *c, unsigned n, const struct bench_config *x)
{
	for (unsigned i = 0; i < n; i++)
		if (memcmp(&c[i], x, sizeof(*x)) == 0)
			return true;
	return false;
}

/* The points to measure, in order: every combination (sizes innermost, so
 * floor (a) of a size is measured at its first point), or with --axes the
 * centre and each list varied alone around it. */
static unsigned plan_points(const struct opts *o, struct bench_config **out)
{
	unsigned max = o->nsizes * o->nvcpus * o->nwalkers * o->nbackings, n = 0;
	struct bench_config *c = calloc(max ? max : 1, sizeof(*c));
	if (!c)
		return 0;
	struct bench_config centre = { .size = 0, .vcpus = (unsigned)o->vcpus[0],
				       .walkers = 0, .backing = o->backings[0], .range = o->range };
	for (unsigned i = 0; i < o->nsizes; i++)
		if (o->sizes[i] > centre.size)
			centre.size = o->sizes[i];
	for (unsigned i = 0; i < o->nvcpus; i++)
		if (o->vcpus[i] == 8)
			centre.vcpus = 8;
	for (unsigned i = 0; i < o->nwalkers; i++)
		if (o->walkers[i] > centre.walkers)
			centre.walkers = (unsigned)o->walkers[i];
	for (unsigned bi = 0; bi < o->nbackings; bi++)
		for (unsigned wi = 0; wi < o->nwalkers; wi++)
			for (unsigned vi = 0; vi < o->nvcpus; vi++)
				for (unsigned si = 0; si < o->nsizes; si++) {
					struct bench_config x = {
						.size = o->sizes[si], .vcpus = (unsigned)o->vcpus[vi],
						.walkers = (unsigned)o->walkers[wi],
						.backing = o->backings[bi], .range = o->range,
					};
					int off = (x.size != centre.size) + (x.vcpus != centre.vcpus) +
						  (x.walkers != centre.walkers) +
						  (x.backing != centre.backing);
					if (o->axes && off > 1)
						continue;
					if (!planned(c, n, &x))
						c[n++] = x;
				}
	*out = c;
	return n;
}

static void describe_machine(struct bench_run *run, int argc, char **argv)
{
	char model[128] = "unknown CPU", line[256];
	FILE *f = fopen("/proc/cpuinfo", "r");
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, "model name", 10) == 0) {
			char *v = strchr(line, ':');
			if (v) {
				snprintf(model, sizeof model, "%s", v + 2);
				model[strcspn(model, "\n")] = 0;
			}
			break;
		}
	if (f)
		fclose(f);
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	snprintf(run->machine, sizeof run->machine, "%s, %ld CPUs, %.0f GiB RAM", model,
		 sysconf(_SC_NPROCESSORS_ONLN), (double)pages * (double)psz / (double)(1ULL << 30));
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(run->date, sizeof run->date, "%Y-%m-%d %H:%M UTC", &tm);
	struct utsname u;
	if (uname(&u) == 0)
		snprintf(run->kernel, sizeof run->kernel, "%s", u.release);
	size_t n = 0;
	for (int i = 0; i < argc && n < sizeof run->command - 1; i++)
		n += (size_t)snprintf(run->command + n, sizeof run->command - n, "%s%s",
				      i ? " " : "", argv[i]);
}

/* The tables, the model and the files of the run saved at o->report
 * (from which --json, not to overwrite it, is not written again). */
static int report_main(const struct opts *o)
{
	struct bench_run run = { 0 };
	if (bench_load_json(o->report, &run) < 0)
		return 1;
	printf("# %s; %s; kernel %s\n# %s\n", run.machine, run.date, run.kernel, run.command);
	for (unsigned i = 0; i < run.npoints; i++)
		bench_print_point(stdout, &run, &run.points[i]);
	struct bench_model model;
	bench_model(&run, &model);
	bench_model_print(stdout, &model);
	int status = 0;
	if (o->csv && bench_write_csv(&run, o->csv) < 0)
		status = 1;
	if (o->plot && bench_plot(&run, o->plot) < 0)
		status = 1;
	for (unsigned i = 0; i < run.npoints; i++)
		free((char *)run.points[i].coverage_method);
	free(run.points);
	return status;
}

int bench_main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "munmap") != 0) {
		if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
			usage(stdout);
			return 0;
		}
		usage(stderr);
		return die_usage("vmm bench: the benchmark is 'munmap'");
	}
	struct opts o;
	int rc = parse_opts(argc - 1, argv + 1, &o);
	if (rc >= 0)
		return rc;

	if (o.report)
		return report_main(&o);

	/* SIGINT/SIGTERM through a signalfd, blocked in every thread. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);

	struct bench_run run = { .repeat = o.repeat, .methods = o.methods };
	describe_machine(&run, argc + 1, argv - 1);
	struct bench_config *cfgs = NULL;
	unsigned total = plan_points(&o, &cfgs);
	run.points = calloc(total, sizeof(*run.points));
	if (!run.points || !total)
		return 1;
	if (bus_register(BUS_PIO, TESTIMG_PORT_BENCH, 4, bench_pio, NULL, "benchdev") < 0 ||
	    bus_register(BUS_PIO, TESTIMG_PORT_SERIAL, 8, sink_pio, NULL, "console sink") < 0)
		return 1;
	printf("# %s; %s; kernel %s\n# %s\n", run.machine, run.date, run.kernel, run.command);
	fprintf(stderr, "bench: %u point%s x up to %d methods x %u repetitions; %s; %s\n", total,
		total == 1 ? "" : "s", __builtin_popcount(o.methods), o.repeat, run.machine, run.date);

	int status = 0;
	for (unsigned i = 0; i < total && !interrupted; i++) {
		struct bench_point *p = &run.points[run.npoints];
		p->cfg = cfgs[i];
		int r = run_point(&run, p, &o, run.npoints, total);
		run.npoints++;
		bench_print_point(stdout, &run, p);
		fflush(stdout);
		if (r < 0) /* reported; the other points may still run */
			status = 1;
	}
	free(cfgs);
	struct bench_model model;
	bench_model(&run, &model);
	bench_model_print(stdout, &model);
	if (o.csv && bench_write_csv(&run, o.csv) < 0)
		status = 1;
	if (o.json && bench_write_json(&run, &model, o.json) < 0)
		status = 1;
	if (o.plot && bench_plot(&run, o.plot) < 0)
		status = 1;
	free(run.points);
	if (sigfd >= 0)
		close(sigfd);
	return status ? status : interrupted ? 130 : 0;
}
