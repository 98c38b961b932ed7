// SPDX-License-Identifier: GPL-2.0-only
/*
 * bench.c - guestmm-bench: the cost of unmapping under each walker-tracker
 * strategy, and the cost of each strategy to a walker.
 *
 *   guestmm-bench [--sizes 1G,4G,16G] [--walkers 0,1,4] [--strategies all|kick,...]
 *                 [--repeat 5] [--iters 20000000] [--csv FILE]
 *                 [--walker-cost-only | --unmap-only] [--range]
 *
 * Unmap part.  Per (size G, walkers W, strategy S) and repetition: a fresh VM,
 * one THP region of G bytes prefaulted (untimed; huge-page coverage
 * measured), W unpinned walker threads looping { begin; translate a random
 * 8-byte GPA for write; store; end } for 50 ms (the writer busy-waits the
 * last 40, measuring base_Mtps, so it is already on a CPU when the timed
 * call starts), then gmm_region_remove() is timed (--range: gmm_unmap() of
 * the middle half; the region is removed afterwards, untimed).  Stats
 * deltas give serialisations issued/skipped, their time and kicks; the
 * walkers' own counters sampled around the call give walker_Mtps: walks/s,
 * successful or not (faults are expected once leaves are cleared, and are
 * cheaper than a store to guest memory).  The floor "raw-munmap" is munmap()
 * of G bytes of prefaulted, 2 MiB-aligned MADV_HUGEPAGE memory (--range: of
 * its middle half), no walkers; x_floor = median / floor median.
 * Repetitions are interleaved across the configurations of a size, so
 * drift hits all alike; one region or floor mapping exists at a time.
 * A walker error other than EFAULT, or a late read of a freed table page,
 * fails the row (a tracker bug).  Coverage is the minimum over repetitions
 * (floor: AnonHugePages from /proc/self/smaps_rollup).
 *
 * Walker-cost part.  ns per operation on a 64 MiB prefaulted THP region,
 * random GPAs, iters iterations per run, median of repeat runs, with 1 and
 * with 2 threads at once (pinned to CPUs 0 and 1, each its own walker;
 * ns/op per thread, mean of the two).  Rows: per strategy "begin +
 * translate + end" and "begin + end" alone; pthread_rwlock "rdlock + flat
 * lookup + unlock" (hva + offset) and "rdlock + unlock"; baselines: the loop
 * with the flat lookup and no sync, and gmm_translate inside one walk left
 * open; and, for the default strategy, "begin + translate for write + end"
 * with the dirty log off and on (issue 17).  Pointers are not
 * dereferenced: this is sync + table-walk cost.
 *
 * Output: machine, date, command, then one table per part on stdout;
 * progress on stderr.  --csv FILE: unmap rows to FILE, walker-cost rows to
 * FILE with a ".csv" suffix replaced by (or, without one, followed by)
 * "-walker.csv"; only the parts that run are written.  Every figure is
 * measured by this run.  Exit 0; 1 if a measurement failed (its row says
 * why; skipped strategies are not failures); 2 on a bad command line.
 */
#include <guestmm/guestmm.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define PROG "guestmm-bench"
#define MAX_LIST 16
#define MAX_WALKERS 256
#define MAX_REPEAT 1000
#define REGION_GPA (4ULL << 30)              /* 1 GiB aligned: any backing */
#define PREFAULT_THREADS 2
#define TABLE_PAGES_LIMIT (1ULL << 20)
#define WARMUP_NS (10 * 1000000ULL)          /* walkers settle ... */
#define BASE_WINDOW_NS (40 * 1000000ULL)     /* ... then base throughput: 50 ms in all */
#define COST_REGION_SIZE (64ULL << 20)
#define DEFAULT_ITERS 20000000ULL
#define COST_THREADS_MAX 2

/* ---- small helpers ------------------------------------------------- */

static uint64_t t_start;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ULL), (long)(ns % 1000000000ULL) };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* A progress line on stderr, prefixed with the time since the start. */
static void __attribute__((format(printf, 1, 2))) progress(const char *fmt, ...)
{
	uint64_t s = (now_ns() - t_start) / 1000000000ULL;
	va_list ap;
	fprintf(stderr, "[%3" PRIu64 ":%02" PRIu64 "] ", s / 60, s % 60);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static _Noreturn void __attribute__((format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see --help)\n", stderr);
	exit(2);
}

/* "16G", "1536M", "64K", or bytes. */
static const char *fmt_size(uint64_t v, char *buf, size_t len)
{
	if (v && v % (1ULL << 30) == 0)
		snprintf(buf, len, "%" PRIu64 "G", v >> 30);
	else if (v && v % (1ULL << 20) == 0)
		snprintf(buf, len, "%" PRIu64 "M", v >> 20);
	else if (v && v % (1ULL << 10) == 0)
		snprintf(buf, len, "%" PRIu64 "K", v >> 10);
	else
		snprintf(buf, len, "%" PRIu64, v);
	return buf;
}

/* xorshift64* (Vigna): state never 0. */
static inline uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [0, n) without a division (Lemire). */
static inline uint64_t pick(uint64_t r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)r * n) >> 64);
}

static uint64_t seed_for(unsigned i, uint64_t salt)
{
	uint64_t s = (0x9E3779B97F4A7C15ULL * (i + 1)) ^ (salt * 0xBF58476D1CE4E5B9ULL);
	return s ? s : 1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Median, min and max of n values (NaNs ignored); NaN if none. */
static void stats3(const double *v, unsigned n, double *med, double *min, double *max)
{
	double tmp[MAX_REPEAT];
	unsigned m = 0;
	for (unsigned i = 0; i < n; i++)
		if (!isnan(v[i]))
			tmp[m++] = v[i];
	if (!m) {
		*med = *min = *max = NAN;
		return;
	}
	qsort(tmp, m, sizeof(tmp[0]), cmp_double);
	*med = m % 2 ? tmp[m / 2] : (tmp[m / 2 - 1] + tmp[m / 2]) / 2;
	*min = tmp[0];
	*max = tmp[m - 1];
}

/* Write s as a CSV field (quoted when needed). */
static void csv_str(FILE *f, const char *s)
{
	if (!strpbrk(s, ",\"\n")) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

/* A number as a CSV field; empty for NaN. */
static void csv_num(FILE *f, double v, int prec)
{
	if (!isnan(v))
		fprintf(f, "%.*f", prec, v);
}

/* A number in a table column of width w; "-" for NaN. */
static void col(FILE *f, int w, int prec, double v)
{
	if (isnan(v))
		fprintf(f, " %*s", w, "-");
	else
		fprintf(f, " %*.*f", w, prec, v);
}

static void pin_to_cpu(int cpu)
{
	static atomic_flag warned = ATOMIC_FLAG_INIT;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	int e = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (e && !atomic_flag_test_and_set(&warned))
		progress("warning: cannot pin a thread to CPU %d: %s (running unpinned)", cpu,
			 strerror(e));
}

/* ---- options ------------------------------------------------------- */

struct opts {
	uint64_t sizes[MAX_LIST];
	unsigned nsizes;
	unsigned walkers[MAX_LIST];
	unsigned nwalkers;
	enum gmm_strategy strat[GMM_STRATEGY__N];
	unsigned nstrat;
	unsigned repeat;
	uint64_t iters;
	const char *csv;
	bool unmap, cost, range;
};

static bool parse_u64(const char *s, uint64_t *out, char **end)
{
	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, end, 10);
	if (errno)
		return false;
	*out = v;
	return true;
}

/* A number with an optional K, M or G suffix (powers of 1024). */
static bool parse_size(const char *s, uint64_t *out)
{
	uint64_t v;
	char *end;
	unsigned shift = 0;
	if (!parse_u64(s, &v, &end))
		return false;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: break;
	}
	if (*end || v > (UINT64_MAX >> shift))
		return false;
	*out = v << shift;
	return true;
}

/* Split a comma-separated list; calls fn(item) for each, which exits on error. */
static void for_each_item(const char *opt, const char *list, void (*fn)(const char *, void *),
			  void *arg)
{
	if (!*list)
		usage_error("%s: empty list", opt);
	char *copy = strdup(list);
	if (!copy) {
		fprintf(stderr, PROG ": out of memory\n");
		exit(1);
	}
	char *p = copy;
	for (;;) {
		char *comma = strchr(p, ',');
		if (comma)
			*comma = 0;
		if (!*p)
			usage_error("%s: empty item in '%s'", opt, list);
		fn(p, arg);
		if (!comma)
			break;
		p = comma + 1;
	}
	free(copy);
}

static void add_size(const char *item, void *arg)
{
	struct opts *o = arg;
	uint64_t v;
	if (!parse_size(item, &v) || v == 0)
		usage_error("--sizes: bad size '%s' (expected a positive number with an optional K, M or G suffix, e.g. 1G)",
			    item);
	if (v % GMM_2M)
		usage_error("--sizes: %s is not a multiple of 2M (THP regions are made of 2 MiB pages)",
			    item);
	struct sysinfo si;
	if (sysinfo(&si) == 0) {
		uint64_t ram = (uint64_t)si.totalram * si.mem_unit;
		if (v > ram / 10 * 9)
			usage_error("--sizes: %s is more than 90%% of this machine's RAM (%.1f GiB)",
				    item, (double)ram / (double)(1ULL << 30));
	}
	if (o->nsizes == MAX_LIST)
		usage_error("--sizes: at most %d sizes", MAX_LIST);
	o->sizes[o->nsizes++] = v;
}

static void add_walkers(const char *item, void *arg)
{
	struct opts *o = arg;
	uint64_t v;
	char *end;
	if (!parse_u64(item, &v, &end) || *end || v > MAX_WALKERS)
		usage_error("--walkers: bad walker count '%s' (expected 0..%d)", item, MAX_WALKERS);
	if (o->nwalkers == MAX_LIST)
		usage_error("--walkers: at most %d counts", MAX_LIST);
	o->walkers[o->nwalkers++] = (unsigned)v;
}

static void add_strategy(const char *item, void *arg)
{
	struct opts *o = arg;
	enum gmm_strategy s;
	if (strcmp(item, "all") == 0) {
		for (int i = 0; i < GMM_STRATEGY__N; i++)
			add_strategy(gmm_strategy_name((enum gmm_strategy)i), arg);
		return;
	}
	if (gmm_strategy_parse(item, &s) < 0)
		usage_error("--strategies: %s", gmm_last_error());
	for (unsigned i = 0; i < o->nstrat; i++)
		if (o->strat[i] == s)
			return; /* listed twice: once is enough */
	o->strat[o->nstrat++] = s;
}

static void usage(void)
{
	printf("usage: " PROG " [options]\n"
	       "  --sizes LIST        region sizes to unmap, K/M/G suffixes (default 1G,4G,16G)\n"
	       "  --walkers LIST      walker thread counts during the unmap (default 0,1,4)\n"
	       "  --strategies LIST   all, or some of kick,count,perthread,membarrier,rcu (default all)\n"
	       "  --repeat N          repetitions per configuration, median reported (default 5)\n"
	       "  --iters N           walker-cost iterations per thread and run, K/M/G allowed (default %llu)\n"
	       "  --csv FILE          unmap rows to FILE, walker-cost rows to FILE-walker.csv\n"
	       "                      (a \".csv\" suffix of FILE is replaced)\n"
	       "  --unmap-only        run only the unmap part\n"
	       "  --walker-cost-only  run only the walker-cost part\n"
	       "  --range             unmap the middle half of the region (gmm_unmap) instead of\n"
	       "                      removing it; the floor munmaps the middle half too\n"
	       "  --help              this text\n",
	       (unsigned long long)DEFAULT_ITERS);
}

static void parse_args(int argc, char **argv, struct opts *o)
{
	enum { O_SIZES = 256, O_WALKERS, O_STRAT, O_REPEAT, O_ITERS, O_CSV, O_COST_ONLY,
	       O_UNMAP_ONLY, O_RANGE, O_HELP };
	static const struct option lopts[] = {
		{ "sizes", required_argument, NULL, O_SIZES },
		{ "walkers", required_argument, NULL, O_WALKERS },
		{ "strategies", required_argument, NULL, O_STRAT },
		{ "repeat", required_argument, NULL, O_REPEAT },
		{ "iters", required_argument, NULL, O_ITERS },
		{ "csv", required_argument, NULL, O_CSV },
		{ "walker-cost-only", no_argument, NULL, O_COST_ONLY },
		{ "unmap-only", no_argument, NULL, O_UNMAP_ONLY },
		{ "range", no_argument, NULL, O_RANGE },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	const char *sizes = "1G,4G,16G", *walkers = "0,1,4", *strategies = "all";
	bool cost_only = false, unmap_only = false;
	uint64_t v;
	char *end;
	int c;

	memset(o, 0, sizeof(*o));
	o->repeat = 5;
	o->iters = DEFAULT_ITERS;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", lopts, NULL)) != -1) {
		switch (c) {
		case O_SIZES: sizes = optarg; break;
		case O_WALKERS: walkers = optarg; break;
		case O_STRAT: strategies = optarg; break;
		case O_REPEAT:
			if (!parse_u64(optarg, &v, &end) || *end || v < 1 || v > MAX_REPEAT)
				usage_error("--repeat: bad count '%s' (expected 1..%d)", optarg, MAX_REPEAT);
			o->repeat = (unsigned)v;
			break;
		case O_ITERS:
			if (!parse_size(optarg, &v) || v < 1000 || v > 10000000000ULL)
				usage_error("--iters: bad count '%s' (expected 1000..10000000000)", optarg);
			o->iters = v;
			break;
		case O_CSV:
			if (!*optarg)
				usage_error("--csv: empty file name");
			o->csv = optarg;
			break;
		case O_COST_ONLY: cost_only = true; break;
		case O_UNMAP_ONLY: unmap_only = true; break;
		case O_RANGE: o->range = true; break;
		case O_HELP: usage(); exit(0);
		case ':':
			usage_error("option %s needs a value", argv[optind - 1]);
		default:
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (cost_only && unmap_only)
		usage_error("--walker-cost-only and --unmap-only exclude each other");
	if (cost_only && o->range)
		usage_error("--range applies to the unmap part, which --walker-cost-only skips");
	o->unmap = !cost_only;
	o->cost = !unmap_only;
	for_each_item("--sizes", sizes, add_size, o);
	for_each_item("--walkers", walkers, add_walkers, o);
	for_each_item("--strategies", strategies, add_strategy, o);
}

/* ---- machine description ------------------------------------------- */

static void cpu_model(char *buf, size_t len)
{
	snprintf(buf, len, "unknown CPU");
	FILE *f = fopen("/proc/cpuinfo", "re");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');
		if (strncmp(line, "model name", 10) == 0 && colon) {
			colon++;
			colon += strspn(colon, " \t");
			colon[strcspn(colon, "\n")] = 0;
			snprintf(buf, len, "%s", colon);
			break;
		}
	}
	fclose(f);
}

static void read_line(const char *path, char *buf, size_t len)
{
	snprintf(buf, len, "?");
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	if (fgets(buf, (int)len, f))
		buf[strcspn(buf, "\n")] = 0;
	fclose(f);
}

static void print_machine(int argc, char **argv)
{
	char model[256], thp[128], defrag[128], date[64], ram[32];
	struct utsname u;
	struct sysinfo si;
	time_t t = time(NULL);
	struct tm tm;

	cpu_model(model, sizeof(model));
	read_line("/sys/kernel/mm/transparent_hugepage/enabled", thp, sizeof(thp));
	read_line("/sys/kernel/mm/transparent_hugepage/defrag", defrag, sizeof(defrag));
	if (uname(&u))
		memset(&u, 0, sizeof(u));
	if (sysinfo(&si) == 0)
		snprintf(ram, sizeof(ram), "%.1f GiB",
			 (double)si.totalram * si.mem_unit / (double)(1ULL << 30));
	else
		snprintf(ram, sizeof(ram), "?");
	localtime_r(&t, &tm);
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S %z", &tm);

	printf("# " PROG ", %s\n", date);
	printf("# machine: %s, %ld CPUs online, %s RAM\n", model, sysconf(_SC_NPROCESSORS_ONLN), ram);
	printf("# kernel: %s %s %s %s\n", u.sysname, u.release, u.version, u.machine);
	printf("# THP: enabled %s, defrag %s\n", thp, defrag);
	printf("# command:");
	for (int i = 0; i < argc; i++)
		printf(" %s", argv[i]);
	printf("\n\n");
	fflush(stdout);
}

/* ---- part 1: unmap -------------------------------------------------- */

enum status { ST_OK, ST_SKIPPED, ST_FAILED };

/* One repetition of one configuration. */
struct usample {
	double ms;
	double ser_issued, ser_skipped, ser_ms, kicks;
	double walker_mtps, base_mtps;  /* NaN without walkers */
	double coverage;                /* huge / size, NaN if unknown */
	double prefault_ms;
};

/* One configuration: (size, walkers, strategy); strategy -1 is the floor. */
struct urow {
	uint64_t size;
	unsigned walkers;
	int strategy;
	enum status status;
	char why[256];
	unsigned n;
	struct usample *s;
};

/* A walker thread of the unmap part.  The counters are written by the
 * owner only (plain relaxed stores) and sampled by the main thread. */
struct uwalker {
	_Alignas(64) _Atomic uint64_t walks;  /* walks done, translated or not */
	_Atomic uint64_t odd;                 /* failures other than EFAULT */
	_Atomic int state;
	int odd_errno;
	struct gmm_vm *vm;
	uint64_t gpa, nslots, seed;
	_Atomic int *stop;
	pthread_t thread;
	bool created;
	char err[256];
};

enum { W_STARTING, W_RUNNING, W_FAILED, W_DONE };

static void *unmap_walker(void *arg)
{
	struct uwalker *c = arg;
	struct gmm_walker *w = gmm_walker_register(c->vm);
	if (!w) {
		snprintf(c->err, sizeof(c->err), "gmm_walker_register: %s", gmm_last_error());
		atomic_store(&c->state, W_FAILED);
		return NULL;
	}
	atomic_store(&c->state, W_RUNNING);
	uint64_t x = c->seed, walks = 0, odd = 0;
	while (!atomic_load_explicit(c->stop, memory_order_relaxed)) {
		uint64_t r = rnd(&x);
		uint64_t gpa = c->gpa + pick(r, c->nslots) * 8;
		gmm_walk_begin(w);
		volatile uint64_t *p = gmm_translate(w, gpa, 8, GMM_ACCESS_WRITE);
		if (p) {
			*p = r;
		} else if (errno != EFAULT) {
			odd++;
			c->odd_errno = errno;
		}
		gmm_walk_end(w);
		walks++;
		atomic_store_explicit(&c->walks, walks, memory_order_relaxed);
		if (odd)
			atomic_store_explicit(&c->odd, odd, memory_order_relaxed);
	}
	gmm_walker_unregister(w);
	atomic_store(&c->state, W_DONE);
	return NULL;
}

static uint64_t sum_walks(struct uwalker *w, unsigned n)
{
	uint64_t s = 0;
	for (unsigned i = 0; i < n; i++)
		s += atomic_load_explicit(&w[i].walks, memory_order_relaxed);
	return s;
}

/* Stop and join every walker that was created; report the first problem. */
static bool stop_walkers(struct uwalker *w, unsigned n, _Atomic int *stop, char *why, size_t len)
{
	bool ok = true;
	atomic_store(stop, 1);
	for (unsigned i = 0; i < n; i++) {
		if (!w[i].created)
			continue;
		pthread_join(w[i].thread, NULL);
		if (atomic_load(&w[i].state) == W_FAILED && ok) {
			snprintf(why, len, "walker %u: %s", i, w[i].err);
			ok = false;
		}
		uint64_t odd = atomic_load(&w[i].odd);
		if (odd && ok) {
			snprintf(why, len, "walker %u: %" PRIu64 " translations failed with %s "
				 "(expected only EFAULT): library bug", i, odd, strerror(w[i].odd_errno));
			ok = false;
		}
	}
	return ok;
}

/* One repetition of strategy s on a region of `size` bytes with nw walkers. */
static enum status measure_gmm(const struct opts *o, uint64_t size, unsigned nw,
			       enum gmm_strategy s, struct usample *out, char *why, size_t whylen)
{
	struct gmm_vm_config cfg;
	struct gmm_vm *vm = NULL;
	struct gmm_region *r = NULL;
	struct uwalker *w = NULL;
	_Atomic int stop = 0;
	enum status st = ST_FAILED;
	int ret;

	if (!gmm_strategy_available(s)) {
		snprintf(why, whylen, "not available on this kernel");
		return ST_SKIPPED;
	}
	gmm_vm_config_init(&cfg);
	cfg.strategy = s;
	cfg.table_pages_limit = TABLE_PAGES_LIMIT;
	ret = gmm_vm_create(&cfg, &vm);
	if (ret == -ENOSYS) {
		snprintf(why, whylen, "%s", gmm_last_error());
		return ST_SKIPPED;
	}
	if (ret < 0) {
		snprintf(why, whylen, "gmm_vm_create: %s", gmm_last_error());
		return ST_FAILED;
	}

	struct gmm_region_spec spec = {
		.gpa = REGION_GPA,
		.size = size,
		.backing = GMM_BACKING_THP,
		.flags = GMM_REGION_PREFAULT,
		.prefault_threads = PREFAULT_THREADS,
		.name = "bench",
	};
	ret = gmm_region_add(vm, &spec, &r);
	if (ret < 0) {
		snprintf(why, whylen, "gmm_region_add: %s", gmm_last_error());
		goto out;
	}
	struct gmm_region_info info;
	gmm_region_info(r, &info);
	out->prefault_ms = (double)info.prefault_ns / 1e6;
	struct gmm_coverage cov;
	if (gmm_region_coverage(r, &cov) < 0) {
		progress("warning: gmm_region_coverage: %s", gmm_last_error());
		out->coverage = NAN;
	} else {
		out->coverage = cov.size ? (double)cov.huge / (double)cov.size : NAN;
	}

	if (nw) {
		w = aligned_alloc(64, nw * sizeof(*w));
		if (!w) {
			snprintf(why, whylen, "out of memory");
			goto out;
		}
		memset(w, 0, nw * sizeof(*w));
		for (unsigned i = 0; i < nw; i++) {
			w[i].vm = vm;
			w[i].gpa = REGION_GPA;
			w[i].nslots = size / 8;
			w[i].seed = seed_for(i, now_ns());
			w[i].stop = &stop;
			int e = pthread_create(&w[i].thread, NULL, unmap_walker, &w[i]);
			if (e) {
				snprintf(why, whylen, "pthread_create: %s", strerror(e));
				stop_walkers(w, nw, &stop, why, whylen);
				goto out;
			}
			w[i].created = true;
		}
		for (unsigned i = 0; i < nw; i++)
			while (atomic_load(&w[i].state) == W_STARTING)
				sleep_ns(100000);
		for (unsigned i = 0; i < nw; i++) {
			if (atomic_load(&w[i].state) != W_RUNNING) {
				if (stop_walkers(w, nw, &stop, why, whylen))
					snprintf(why, whylen, "walker %u did not start", i);
				goto out;
			}
		}
		sleep_ns(WARMUP_NS);
		/* Busy-wait through the base window: the writer is then a
		 * running thread already placed on a CPU when the unmap starts,
		 * instead of one just woken from sleep (which the scheduler
		 * may put on a walker's CPU, stalling that walker for the
		 * whole of a short unmap). */
		uint64_t a0 = sum_walks(w, nw), ta = now_ns(), tb;
		while ((tb = now_ns()) - ta < BASE_WINDOW_NS)
			;
		uint64_t a1 = sum_walks(w, nw);
		out->base_mtps = (double)(a1 - a0) * 1e3 / (double)(tb - ta);
	} else {
		out->base_mtps = out->walker_mtps = NAN;
	}

	struct gmm_stats before, after, fin;
	gmm_vm_stats(vm, &before);
	uint64_t c0 = sum_walks(w, nw);
	uint64_t t0 = now_ns();
	if (o->range)
		ret = gmm_unmap(vm, REGION_GPA + size / 4, size / 2, 0);
	else
		ret = gmm_region_remove(vm, r);
	uint64_t t1 = now_ns();
	uint64_t c1 = sum_walks(w, nw);
	if (ret < 0) {
		snprintf(why, whylen, "%s: %s", o->range ? "gmm_unmap" : "gmm_region_remove",
			 gmm_last_error());
		stop_walkers(w, nw, &stop, why, whylen);
		goto out;
	}
	if (!o->range)
		r = NULL;
	gmm_vm_stats(vm, &after);

	out->ms = (double)(t1 - t0) / 1e6;
	out->ser_issued = (double)(after.serialize_issued - before.serialize_issued);
	out->ser_skipped = (double)(after.serialize_skipped - before.serialize_skipped);
	out->ser_ms = (double)(after.serialize_ns - before.serialize_ns) / 1e6;
	out->kicks = (double)(after.kicks_sent - before.kicks_sent);
	if (nw)
		out->walker_mtps = (double)(c1 - c0) * 1e3 / (double)(t1 - t0);

	if (!stop_walkers(w, nw, &stop, why, whylen))
		goto out;
	gmm_vm_stats(vm, &fin);
	if (fin.late_reads != before.late_reads) {
		snprintf(why, whylen, "walkers read freed table pages %" PRIu64 " times (late_reads): tracker bug",
			 fin.late_reads - before.late_reads);
		goto out;
	}
	if (r) {
		/* --range: the rest goes untimed. */
		ret = gmm_region_remove(vm, r);
		if (ret < 0) {
			snprintf(why, whylen, "gmm_region_remove after the range unmap: %s",
				 gmm_last_error());
			goto out;
		}
		r = NULL;
	}
	st = ST_OK;
out:
	/* gmm_vm_destroy removes a region still there. */
	gmm_vm_destroy(vm);
	free(w);
	return st;
}

/* AnonHugePages of the whole process in bytes, or -1. */
static int64_t anon_huge_bytes(void)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "re");
	if (!f)
		return -1;
	char line[256];
	int64_t v = -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long kb;
		if (sscanf(line, "AnonHugePages: %llu kB", &kb) == 1) {
			v = (int64_t)kb << 10;
			break;
		}
	}
	fclose(f);
	return v;
}

/* One repetition of the floor: raw munmap of prefaulted THP memory. */
static enum status measure_floor(const struct opts *o, uint64_t size, struct usample *out,
				 char *why, size_t whylen)
{
	uint64_t len = size + GMM_2M;
	uint8_t *raw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) {
		snprintf(why, whylen, "mmap of %" PRIu64 " bytes: %s", len, strerror(errno));
		return ST_FAILED;
	}
	uint8_t *p = (uint8_t *)(((uintptr_t)raw + GMM_2M - 1) & ~(uintptr_t)(GMM_2M - 1));
	if (p > raw)
		munmap(raw, (size_t)(p - raw));
	if (raw + len > p + size)
		munmap(p + size, (size_t)(raw + len - (p + size)));
	if (madvise(p, size, MADV_HUGEPAGE)) {
		snprintf(why, whylen, "madvise(MADV_HUGEPAGE): %s", strerror(errno));
		munmap(p, size);
		return ST_FAILED;
	}
	uint64_t t = now_ns();
	if (madvise(p, size, MADV_POPULATE_WRITE)) {
		if (errno != EINVAL) {
			snprintf(why, whylen, "madvise(MADV_POPULATE_WRITE): %s", strerror(errno));
			munmap(p, size);
			return ST_FAILED;
		}
		for (uint64_t off = 0; off < size; off += GMM_PAGE_SIZE)
			((volatile uint8_t *)p)[off] = 1;
	}
	out->prefault_ms = (double)(now_ns() - t) / 1e6;
	int64_t huge = anon_huge_bytes();
	out->coverage = huge < 0 ? NAN : (double)huge / (double)size;
	out->ser_issued = out->ser_skipped = out->ser_ms = out->kicks = NAN;
	out->walker_mtps = out->base_mtps = NAN;

	uint8_t *a = o->range ? p + size / 4 : p;
	uint64_t n = o->range ? size / 2 : size;
	uint64_t t0 = now_ns();
	int ret = munmap(a, n);
	uint64_t t1 = now_ns();
	if (ret) {
		snprintf(why, whylen, "munmap: %s", strerror(errno));
		munmap(p, size);
		return ST_FAILED;
	}
	if (o->range && (munmap(p, size / 4) || munmap(p + size / 4 * 3, size / 4))) {
		snprintf(why, whylen, "munmap of the rest: %s", strerror(errno));
		return ST_FAILED;
	}
	out->ms = (double)(t1 - t0) / 1e6;
	return ST_OK;
}

static const char *urow_name(const struct urow *r)
{
	return r->strategy < 0 ? "raw-munmap" : gmm_strategy_name((enum gmm_strategy)r->strategy);
}

/* Summary of a row's samples. */
struct usum {
	double med, min, max;
	double ser_issued, ser_skipped, ser_ms, kicks, walker_mtps, base_mtps;
	double coverage, prefault_ms;
};

static double med_of(const struct urow *r, size_t off)
{
	double v[MAX_REPEAT], med, lo, hi;
	for (unsigned i = 0; i < r->n; i++)
		v[i] = *(const double *)((const char *)&r->s[i] + off);
	stats3(v, r->n, &med, &lo, &hi);
	return med;
}

static void summarize(const struct urow *r, struct usum *u)
{
	double v[MAX_REPEAT], dummy;
	for (unsigned i = 0; i < r->n; i++)
		v[i] = r->s[i].ms;
	stats3(v, r->n, &u->med, &u->min, &u->max);
	u->ser_issued = med_of(r, offsetof(struct usample, ser_issued));
	u->ser_skipped = med_of(r, offsetof(struct usample, ser_skipped));
	u->ser_ms = med_of(r, offsetof(struct usample, ser_ms));
	u->kicks = med_of(r, offsetof(struct usample, kicks));
	u->walker_mtps = med_of(r, offsetof(struct usample, walker_mtps));
	u->base_mtps = med_of(r, offsetof(struct usample, base_mtps));
	u->prefault_ms = med_of(r, offsetof(struct usample, prefault_ms));
	for (unsigned i = 0; i < r->n; i++)
		v[i] = r->s[i].coverage;
	stats3(v, r->n, &dummy, &u->coverage, &dummy);
}

static void print_unmap_header(const struct opts *o)
{
	printf("%s of prefaulted THP memory while W walker threads translate and write (median of %u, min-max)\n",
	       o->range ? "gmm_unmap of the middle half" : "gmm_region_remove", o->repeat);
	printf("floor: raw munmap of %s with no walkers; x_floor = median / floor median; "
	       "Mtps = walks/s in millions, during the unmap and before it (base)\n",
	       o->range ? "the middle half of the same amount of THP memory" : "the same amount of THP memory");
	printf("%-5s %3s %-10s %10s %10s %10s %8s %10s %11s %9s %7s %11s %9s %8s\n", "size", "W",
	       "strategy", "median_ms", "min_ms", "max_ms", "x_floor", "ser_issued", "ser_skipped",
	       "ser_ms", "kicks", "walker_Mtps", "base_Mtps", "coverage");
	fflush(stdout);
}

static void print_urow(const struct urow *r, double floor_med)
{
	char sz[32];
	struct usum u;
	printf("%-5s %3u %-10s", fmt_size(r->size, sz, sizeof(sz)), r->walkers, urow_name(r));
	if (r->status != ST_OK) {
		printf(" %s (%s)\n", r->status == ST_SKIPPED ? "skipped" : "FAILED", r->why);
		return;
	}
	summarize(r, &u);
	col(stdout, 10, 2, u.med);
	col(stdout, 10, 2, u.min);
	col(stdout, 10, 2, u.max);
	col(stdout, 8, 2, floor_med > 0 ? u.med / floor_med : NAN);
	col(stdout, 10, 0, u.ser_issued);
	col(stdout, 11, 0, u.ser_skipped);
	col(stdout, 9, 2, u.ser_ms);
	col(stdout, 7, 0, u.kicks);
	col(stdout, 11, 2, u.walker_mtps);
	col(stdout, 9, 2, u.base_mtps);
	if (isnan(u.coverage))
		printf(" %8s\n", "-");
	else
		printf(" %7.1f%%\n", u.coverage * 100);
}

static void csv_unmap_header(FILE *f)
{
	fprintf(f, "mode,size_bytes,size,walkers,strategy,status,reps,median_ms,min_ms,max_ms,x_floor,"
		   "ser_issued,ser_skipped,ser_ms,kicks,walker_Mtps,base_Mtps,coverage,prefault_ms\n");
}

static void csv_urow(FILE *f, const struct opts *o, const struct urow *r, double floor_med)
{
	char sz[32], st[300];
	struct usum u;
	fprintf(f, "%s,%" PRIu64 ",%s,%u,%s,", o->range ? "range" : "region", r->size,
		fmt_size(r->size, sz, sizeof(sz)), r->walkers, urow_name(r));
	if (r->status != ST_OK) {
		snprintf(st, sizeof(st), "%s: %s", r->status == ST_SKIPPED ? "skipped" : "failed", r->why);
		csv_str(f, st);
		fprintf(f, ",0,,,,,,,,,,,,\n"); /* reps, then 12 empty fields */
		return;
	}
	summarize(r, &u);
	fprintf(f, "ok,%u,", r->n);
	csv_num(f, u.med, 3); fputc(',', f);
	csv_num(f, u.min, 3); fputc(',', f);
	csv_num(f, u.max, 3); fputc(',', f);
	csv_num(f, floor_med > 0 ? u.med / floor_med : NAN, 3); fputc(',', f);
	csv_num(f, u.ser_issued, 1); fputc(',', f);
	csv_num(f, u.ser_skipped, 1); fputc(',', f);
	csv_num(f, u.ser_ms, 3); fputc(',', f);
	csv_num(f, u.kicks, 1); fputc(',', f);
	csv_num(f, u.walker_mtps, 3); fputc(',', f);
	csv_num(f, u.base_mtps, 3); fputc(',', f);
	csv_num(f, u.coverage, 4); fputc(',', f);
	csv_num(f, u.prefault_ms, 1); fputc('\n', f);
}

/* Returns the number of failed configurations. */
static int run_unmap(const struct opts *o, FILE *csv)
{
	unsigned nrows = 1 + o->nwalkers * o->nstrat;
	unsigned total = o->nsizes * nrows * o->repeat, done = 0;
	int failures = 0;
	char sz[32];

	progress("unmap part: %u sizes x (floor + %u walker counts x %u strategies) x %u repetitions = %u measurements",
		 o->nsizes, o->nwalkers, o->nstrat, o->repeat, total);
	print_unmap_header(o);
	if (csv)
		csv_unmap_header(csv);

	for (unsigned gi = 0; gi < o->nsizes; gi++) {
		uint64_t size = o->sizes[gi];
		struct urow *rows = calloc(nrows, sizeof(*rows));
		if (!rows) {
			fprintf(stderr, PROG ": out of memory\n");
			exit(1);
		}
		for (unsigned i = 0; i < nrows; i++) {
			rows[i].size = size;
			rows[i].strategy = i ? (int)o->strat[(i - 1) % o->nstrat] : -1;
			rows[i].walkers = i ? o->walkers[(i - 1) / o->nstrat] : 0;
			rows[i].s = calloc(o->repeat, sizeof(struct usample));
			if (!rows[i].s) {
				fprintf(stderr, PROG ": out of memory\n");
				exit(1);
			}
		}
		fmt_size(size, sz, sizeof(sz));
		for (unsigned rep = 0; rep < o->repeat; rep++) {
			for (unsigned i = 0; i < nrows; i++) {
				struct urow *r = &rows[i];
				struct usample *smp = &r->s[r->n];
				enum status st;
				done++;
				if (r->status != ST_OK)
					continue; /* skipped or failed in an earlier repetition */
				char why[256] = "";
				if (r->strategy < 0)
					st = measure_floor(o, size, smp, why, sizeof(why));
				else
					st = measure_gmm(o, size, r->walkers, (enum gmm_strategy)r->strategy,
							 smp, why, sizeof(why));
				if (st == ST_OK) {
					r->n++;
					if (r->walkers)
						progress("[%u/%u] %s W=%u %s rep %u/%u: %.2f ms (prefault %.0f ms, coverage %.1f%%, walkers %.2f -> %.2f Mtps, %.0f serialisations, %.0f kicks)",
							 done, total, sz, r->walkers, urow_name(r), rep + 1,
							 o->repeat, smp->ms, smp->prefault_ms,
							 smp->coverage * 100, smp->base_mtps, smp->walker_mtps,
							 smp->ser_issued, smp->kicks);
					else
						progress("[%u/%u] %s W=0 %s rep %u/%u: %.2f ms (prefault %.0f ms, coverage %.1f%%)",
							 done, total, sz, urow_name(r), rep + 1, o->repeat,
							 smp->ms, smp->prefault_ms, smp->coverage * 100);
				} else {
					r->status = st;
					snprintf(r->why, sizeof(r->why), "%s", why);
					if (st == ST_FAILED)
						failures++;
					progress("[%u/%u] %s W=%u %s: %s (%s)", done, total, sz, r->walkers,
						 urow_name(r), st == ST_SKIPPED ? "skipped" : "FAILED", why);
				}
			}
		}
		double floor_med = NAN;
		if (rows[0].status == ST_OK) {
			struct usum u;
			summarize(&rows[0], &u);
			floor_med = u.med;
		}
		for (unsigned i = 0; i < nrows; i++) {
			print_urow(&rows[i], floor_med);
			if (csv)
				csv_urow(csv, o, &rows[i], floor_med);
		}
		fflush(stdout);
		if (csv)
			fflush(csv);
		for (unsigned i = 0; i < nrows; i++)
			free(rows[i].s);
		free(rows);
	}
	printf("\n");
	return failures;
}

/* ---- part 2: walker cost -------------------------------------------- */

enum cost_kind {
	CK_FLAT,       /* PRNG + flat lookup, no synchronisation */
	CK_TRANSLATE,  /* gmm_translate inside one open walk */
	CK_GMM_FULL,   /* begin + translate + end */
	CK_GMM_SYNC,   /* begin + end */
	CK_GMM_WRITE,  /* begin + translate for write + end (dirty log off or on) */
	CK_RW_FULL,    /* rdlock + flat lookup + unlock */
	CK_RW_SYNC,    /* rdlock + unlock */
};

/* A VM with a 64 MiB prefaulted THP region. */
struct cvm {
	struct gmm_vm *vm;
	uint8_t *hva;
	enum status status;
	char why[256];
};

struct crow {
	const char *sync;     /* strategy name, "rwlock" or "-" */
	const char *op;       /* for the CSV */
	const char *desc;     /* for the table */
	enum cost_kind kind;
	struct cvm *cvm;      /* NULL for rwlock rows */
	enum status status;
	char why[256];
	unsigned n[COST_THREADS_MAX];
	double *ns[COST_THREADS_MAX]; /* per thread count, per repetition: ns/op per thread */
};

struct cthread {
	const struct crow *row;
	uint8_t *hva;                 /* flat lookup base */
	pthread_rwlock_t *lock;
	pthread_barrier_t *bar;
	uint64_t iters, seed;
	int cpu;
	uint64_t ns, nulls, sink;
	bool failed;
	char err[256];
};

/* The loops: identical PRNG and address arithmetic, result summed into a
 * sink so nothing is optimised away. */
#define COST_LOOP(body)                                                        \
	for (uint64_t i = 0; i < iters; i++) {                                 \
		uint64_t gpa = REGION_GPA + pick(rnd(&x), nslots) * 8;        \
		void *p;                                                       \
		body;                                                          \
		sink += (uintptr_t)p;                                          \
	}

static void *cost_thread(void *arg)
{
	struct cthread *c = arg;
	const struct crow *row = c->row;
	struct gmm_walker *w = NULL;
	pthread_rwlock_t *l = c->lock;
	uint8_t *hva = c->hva;
	uint64_t x = c->seed, sink = 0, nulls = 0, iters = c->iters;
	const uint64_t nslots = COST_REGION_SIZE / 8;

	pin_to_cpu(c->cpu);
	if (row->cvm) {
		w = gmm_walker_register(row->cvm->vm);
		if (!w) {
			snprintf(c->err, sizeof(c->err), "gmm_walker_register: %s", gmm_last_error());
			c->failed = true;
		}
	}
	if (w && row->kind == CK_TRANSLATE)
		gmm_walk_begin(w);
	/* Both threads start together. */
	pthread_barrier_wait(c->bar);
	if (!c->failed) {
		uint64_t t0 = now_ns();
		switch (row->kind) {
		case CK_FLAT:
			COST_LOOP(p = hva + (gpa - REGION_GPA));
			break;
		case CK_TRANSLATE:
			COST_LOOP(p = gmm_translate(w, gpa, 8, GMM_ACCESS_READ); nulls += !p);
			break;
		case CK_GMM_FULL:
			COST_LOOP(gmm_walk_begin(w); p = gmm_translate(w, gpa, 8, GMM_ACCESS_READ);
				  gmm_walk_end(w); nulls += !p);
			break;
		case CK_GMM_WRITE:
			COST_LOOP(gmm_walk_begin(w); p = gmm_translate(w, gpa, 8, GMM_ACCESS_WRITE);
				  gmm_walk_end(w); nulls += !p);
			break;
		case CK_GMM_SYNC:
			COST_LOOP(gmm_walk_begin(w); gmm_walk_end(w); p = (void *)(uintptr_t)gpa);
			break;
		case CK_RW_FULL:
			COST_LOOP(nulls += pthread_rwlock_rdlock(l) != 0; p = hva + (gpa - REGION_GPA);
				  nulls += pthread_rwlock_unlock(l) != 0);
			break;
		case CK_RW_SYNC:
			COST_LOOP(nulls += pthread_rwlock_rdlock(l) != 0;
				  nulls += pthread_rwlock_unlock(l) != 0; p = (void *)(uintptr_t)gpa);
			break;
		}
		c->ns = now_ns() - t0;
	}
	if (w && row->kind == CK_TRANSLATE)
		gmm_walk_end(w);
	if (w)
		gmm_walker_unregister(w);
	c->sink = sink;
	c->nulls = nulls;
	if (nulls && !c->failed) {
		snprintf(c->err, sizeof(c->err), "%" PRIu64 " of %" PRIu64 " %s failed%s", nulls, iters,
			 row->cvm ? "translations" : "rwlock calls",
			 row->cvm ? " on a mapped region: library bug" : "");
		c->failed = true;
	}
	return NULL;
}

/* One run of a row with nthreads threads: the mean ns/op per thread. */
static int cost_run(const struct opts *o, const struct crow *row, unsigned nthreads,
		    uint8_t *hva, pthread_rwlock_t *lock, unsigned rep, double *ns_op,
		    char *why, size_t whylen)
{
	struct cthread c[COST_THREADS_MAX];
	pthread_t tid[COST_THREADS_MAX];
	pthread_barrier_t bar;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned created = 0;
	int ret = 0;

	if (ncpu < 1)
		ncpu = 1;
	pthread_barrier_init(&bar, NULL, nthreads);
	for (unsigned i = 0; i < nthreads; i++) {
		c[i] = (struct cthread){
			.row = row, .hva = hva, .lock = lock, .bar = &bar, .iters = o->iters,
			.seed = seed_for(i, rep + 1), .cpu = (int)(i % (unsigned)ncpu),
		};
	}
	for (; created < nthreads; created++) {
		int e = pthread_create(&tid[created], NULL, cost_thread, &c[created]);
		if (e) {
			snprintf(why, whylen, "pthread_create: %s", strerror(e));
			/* The barrier needs every thread: nothing can run.
			 * Threads already created wait forever; give up. */
			fprintf(stderr, PROG ": %s\n", why);
			exit(1);
		}
	}
	double sum = 0;
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(tid[i], NULL);
		if (c[i].failed && !ret) {
			snprintf(why, whylen, "%s", c[i].err);
			ret = -1;
		}
		sum += (double)c[i].ns / (double)o->iters;
	}
	pthread_barrier_destroy(&bar);
	*ns_op = sum / nthreads;
	return ret;
}

static void cvm_setup(struct cvm *c, enum gmm_strategy s)
{
	struct gmm_vm_config cfg;
	struct gmm_region *r;
	int ret;

	memset(c, 0, sizeof(*c));
	if (!gmm_strategy_available(s)) {
		c->status = ST_SKIPPED;
		snprintf(c->why, sizeof(c->why), "not available on this kernel");
		return;
	}
	gmm_vm_config_init(&cfg);
	cfg.strategy = s;
	cfg.table_pages_limit = TABLE_PAGES_LIMIT;
	ret = gmm_vm_create(&cfg, &c->vm);
	if (ret < 0) {
		c->status = ret == -ENOSYS ? ST_SKIPPED : ST_FAILED;
		snprintf(c->why, sizeof(c->why), "%s%s", ret == -ENOSYS ? "" : "gmm_vm_create: ",
			 gmm_last_error());
		c->vm = NULL;
		return;
	}
	struct gmm_region_spec spec = {
		.gpa = REGION_GPA,
		.size = COST_REGION_SIZE,
		.backing = GMM_BACKING_THP,
		.flags = GMM_REGION_PREFAULT,
		.prefault_threads = PREFAULT_THREADS,
		.name = "bench-cost",
	};
	ret = gmm_region_add(c->vm, &spec, &r);
	if (ret < 0) {
		c->status = ST_FAILED;
		snprintf(c->why, sizeof(c->why), "gmm_region_add: %s", gmm_last_error());
		gmm_vm_destroy(c->vm);
		c->vm = NULL;
		return;
	}
	struct gmm_region_info info;
	gmm_region_info(r, &info);
	c->hva = info.hva;
	struct gmm_coverage cov;
	if (gmm_region_coverage(r, &cov) < 0)
		progress("warning: gmm_region_coverage: %s", gmm_last_error());
	else if (cov.huge < cov.size)
		progress("warning: %s cost region: only %.1f%% of it is huge pages", gmm_strategy_name(s),
			 100.0 * (double)cov.huge / (double)cov.size);
	c->status = ST_OK;
}

static void print_cost(const struct opts *o, struct crow *rows, unsigned nrows)
{
	printf("walker cost, ns per operation (median of %u runs of %" PRIu64 " iterations per thread, min-max);\n"
	       "2 threads run at once, each its own walker on its own CPU, ns/op per thread (mean of the two)\n",
	       o->repeat, o->iters);
	printf("%-10s %-36s %9s %17s %9s %17s\n", "sync", "operation", "1 thread", "min-max",
	       "2 threads", "min-max");
	for (unsigned i = 0; i < nrows; i++) {
		struct crow *r = &rows[i];
		printf("%-10s %-36s", r->sync, r->desc);
		if (r->status != ST_OK) {
			printf(" %s (%s)\n", r->status == ST_SKIPPED ? "skipped" : "FAILED", r->why);
			continue;
		}
		for (unsigned t = 0; t < COST_THREADS_MAX; t++) {
			double med, lo, hi;
			char mm[64];
			stats3(r->ns[t], r->n[t], &med, &lo, &hi);
			snprintf(mm, sizeof(mm), "%.2f-%.2f", lo, hi);
			printf(" %9.2f %17s", med, mm);
		}
		printf("\n");
	}
	printf("\n");
	fflush(stdout);
}

static void csv_cost(FILE *f, const struct opts *o, struct crow *rows, unsigned nrows)
{
	static const unsigned nthr[COST_THREADS_MAX] = { 1, 2 };
	fprintf(f, "sync,op,threads,status,reps,iters,median_ns,min_ns,max_ns\n");
	for (unsigned i = 0; i < nrows; i++) {
		struct crow *r = &rows[i];
		for (unsigned t = 0; t < COST_THREADS_MAX; t++) {
			fprintf(f, "%s,%s,%u,", r->sync, r->op, nthr[t]);
			if (r->status != ST_OK) {
				char st[300];
				snprintf(st, sizeof(st), "%s: %s",
					 r->status == ST_SKIPPED ? "skipped" : "failed", r->why);
				csv_str(f, st);
				fprintf(f, ",0,%" PRIu64 ",,,\n", o->iters);
				continue;
			}
			double med, lo, hi;
			stats3(r->ns[t], r->n[t], &med, &lo, &hi);
			fprintf(f, "ok,%u,%" PRIu64 ",%.3f,%.3f,%.3f\n", r->n[t], o->iters, med, lo, hi);
		}
	}
}

static int run_cost(const struct opts *o, FILE *csv)
{
	static const unsigned nthr[COST_THREADS_MAX] = { 1, 2 };
	struct cvm base, logged, cvms[GMM_STRATEGY__N];
	struct crow rows[2 + 2 * GMM_STRATEGY__N + 2 + 2];
	pthread_rwlock_t lock;
	unsigned nrows = 0;
	int failures = 0;

	progress("walker-cost part: setting up one VM with a 64 MiB THP region per strategy");
	cvm_setup(&base, GMM_STRATEGY_DEFAULT);
	if (base.status != ST_OK) {
		printf("walker cost: FAILED (the baseline VM: %s)\n\n", base.why);
		progress("walker-cost part FAILED: %s", base.why);
		return 1;
	}
	int e = pthread_rwlock_init(&lock, NULL);
	if (e) {
		printf("walker cost: FAILED (pthread_rwlock_init: %s)\n\n", strerror(e));
		gmm_vm_destroy(base.vm);
		return 1;
	}

	memset(rows, 0, sizeof(rows));
#define CROW(sync_, op_, desc_, kind_, cvm_) \
	(struct crow){ .sync = (sync_), .op = (op_), .desc = (desc_), .kind = (kind_), .cvm = (cvm_) }
	rows[nrows++] = CROW("-", "flat", "loop: prng + flat lookup (no sync)", CK_FLAT, NULL);
	rows[nrows++] = CROW("-", "translate", "gmm_translate only (in one open walk)", CK_TRANSLATE,
			     &base);
	for (unsigned i = 0; i < o->nstrat; i++) {
		enum gmm_strategy s = o->strat[i];
		cvm_setup(&cvms[i], s);
		rows[nrows++] = CROW(gmm_strategy_name(s), "begin+translate+end",
				     "begin + translate + end", CK_GMM_FULL, &cvms[i]);
		rows[nrows++] = CROW(gmm_strategy_name(s), "begin+end", "begin + end", CK_GMM_SYNC,
				     &cvms[i]);
	}
	/* The dirty log's price on the walker (issue 17): write translations
	 * with logging off (one branch), and on (the page's bit loaded, and
	 * OR'd in when not set: nobody harvests here, so after the first
	 * sweep over the region's 16384 pages every bit is set and the mark
	 * is a load). */
	cvm_setup(&logged, GMM_STRATEGY_DEFAULT);
	if (logged.status == ST_OK && gmm_dirty_start(logged.vm) < 0) {
		logged.status = ST_FAILED;
		snprintf(logged.why, sizeof(logged.why), "gmm_dirty_start: %s", gmm_last_error());
	}
	rows[nrows++] = CROW(gmm_strategy_name(GMM_STRATEGY_DEFAULT), "write-log-off",
			     "begin + translate(write) + end, dirty log off", CK_GMM_WRITE, &base);
	rows[nrows++] = CROW(gmm_strategy_name(GMM_STRATEGY_DEFAULT), "write-log-on",
			     "begin + translate(write) + end, dirty log on", CK_GMM_WRITE, &logged);
	rows[nrows++] = CROW("rwlock", "rdlock+lookup+unlock", "rdlock + flat lookup + unlock",
			     CK_RW_FULL, NULL);
	rows[nrows++] = CROW("rwlock", "rdlock+unlock", "rdlock + unlock", CK_RW_SYNC, NULL);
#undef CROW

	for (unsigned i = 0; i < nrows; i++) {
		struct crow *r = &rows[i];
		if (r->cvm && r->cvm->status != ST_OK) {
			r->status = r->cvm->status;
			snprintf(r->why, sizeof(r->why), "%s", r->cvm->why);
			if (r->status == ST_FAILED)
				failures++;
		}
		for (unsigned t = 0; t < COST_THREADS_MAX; t++) {
			r->ns[t] = calloc(o->repeat, sizeof(double));
			if (!r->ns[t]) {
				fprintf(stderr, PROG ": out of memory\n");
				exit(1);
			}
		}
	}

	unsigned total = nrows * COST_THREADS_MAX * o->repeat, done = 0;
	progress("walker-cost part: %u rows x %u thread counts x %u repetitions = %u runs of %" PRIu64 " iterations",
		 nrows, COST_THREADS_MAX, o->repeat, total, o->iters);
	for (unsigned rep = 0; rep < o->repeat; rep++) {
		for (unsigned i = 0; i < nrows; i++) {
			struct crow *r = &rows[i];
			for (unsigned t = 0; t < COST_THREADS_MAX; t++) {
				char why[256];
				double ns;
				done++;
				if (r->status != ST_OK)
					continue;
				if (cost_run(o, r, nthr[t], base.hva, &lock, rep, &ns, why, sizeof(why))) {
					r->status = ST_FAILED;
					snprintf(r->why, sizeof(r->why), "%s", why);
					failures++;
					progress("[%u/%u] %s %s, %u thread(s): FAILED (%s)", done, total,
						 r->sync, r->desc, nthr[t], why);
					continue;
				}
				r->ns[t][r->n[t]++] = ns;
				if (rep == 0 || rep + 1 == o->repeat)
					progress("[%u/%u] %s %s, %u thread(s), rep %u/%u: %.2f ns/op", done,
						 total, r->sync, r->desc, nthr[t], rep + 1, o->repeat, ns);
			}
		}
	}

	print_cost(o, rows, nrows);
	if (csv)
		csv_cost(csv, o, rows, nrows);

	for (unsigned i = 0; i < nrows; i++)
		for (unsigned t = 0; t < COST_THREADS_MAX; t++)
			free(rows[i].ns[t]);
	for (unsigned i = 0; i < o->nstrat; i++)
		if (cvms[i].vm)
			gmm_vm_destroy(cvms[i].vm);
	if (logged.vm)
		gmm_vm_destroy(logged.vm);
	gmm_vm_destroy(base.vm);
	pthread_rwlock_destroy(&lock);
	return failures;
}

/* ---- main ----------------------------------------------------------- */

/* FILE with a ".csv" suffix replaced by "-walker.csv" (appended otherwise). */
static char *walker_csv_name(const char *file)
{
	size_t n = strlen(file);
	if (n > 4 && strcmp(file + n - 4, ".csv") == 0)
		n -= 4;
	char *s = malloc(n + sizeof("-walker.csv"));
	if (!s) {
		fprintf(stderr, PROG ": out of memory\n");
		exit(1);
	}
	memcpy(s, file, n);
	strcpy(s + n, "-walker.csv");
	return s;
}

static FILE *open_csv(const char *path)
{
	FILE *f = fopen(path, "we");
	if (!f)
		usage_error("--csv: cannot create %s: %s", path, strerror(errno));
	return f;
}

static int close_csv(FILE *f, const char *path)
{
	if (!f)
		return 0;
	if (ferror(f) | fclose(f)) {
		fprintf(stderr, PROG ": writing %s failed: %s\n", path, strerror(errno));
		return 1;
	}
	progress("wrote %s", path);
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	FILE *ucsv = NULL, *wcsv = NULL;
	char *wcsv_name = NULL;
	int failures = 0;

	parse_args(argc, argv, &o);
	t_start = now_ns();
	if (o.csv) {
		wcsv_name = walker_csv_name(o.csv);
		if (o.unmap)
			ucsv = open_csv(o.csv);
		if (o.cost)
			wcsv = open_csv(wcsv_name);
	}
	print_machine(argc, argv);

	uint64_t t0 = now_ns();
	if (o.unmap)
		failures += run_unmap(&o, ucsv);
	uint64_t t1 = now_ns();
	if (o.cost)
		failures += run_cost(&o, wcsv);
	uint64_t t2 = now_ns();

	failures += close_csv(ucsv, o.csv);
	failures += close_csv(wcsv, wcsv_name);
	free(wcsv_name);
	printf("# run time: unmap part %.1f s, walker-cost part %.1f s, total %.1f s%s\n",
	       (double)(t1 - t0) / 1e9, (double)(t2 - t1) / 1e9, (double)(t2 - t0) / 1e9,
	       failures ? "; some measurements FAILED" : "");
	progress("done in %.1f s%s", (double)(t2 - t0) / 1e9, failures ? ", with failures" : "");
	return failures ? 1 : 0;
}
