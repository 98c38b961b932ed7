// SPDX-License-Identifier: GPL-2.0-only
/*
 * demo.c - `vmm demo`: guestmm on its own, without KVM.
 *
 * Backs RAM the way `vmm run` will, starts walker threads that copy data in
 * and out of guest memory the way device threads do, hot-unplugs the upper
 * half of RAM while they run, and reports what guestmm measured: the
 * memory report (backing, measured huge-page coverage, prefault time), the
 * unplug latency and the tracker's statistics.
 */
#include "cli/demo.h"
#include "core/log.h"
#include "core/size.h"

#include <guestmm/guestmm.h>

#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct demo {
	struct gmm_vm *vm;
	uint64_t mem;
	atomic_bool stop;
	atomic_uint_fast64_t copies, faults;
};

static void *walker(void *p)
{
	struct demo *d = p;
	struct gmm_walker *w = gmm_walker_register(d->vm);
	uint64_t seed = (uint64_t)(uintptr_t)&w | 1, n = 0, f = 0;
	uint8_t buf[512];
	if (!w)
		return NULL;
	memset(buf, 0x5a, sizeof(buf));
	while (!atomic_load_explicit(&d->stop, memory_order_relaxed)) {
		seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
		uint64_t gpa = (seed % (d->mem - sizeof(buf))) & ~7ULL;
		if (gmm_write(w, gpa, buf, sizeof(buf)) == 0 && gmm_read(w, gpa, buf, sizeof(buf)) == 0)
			n++;
		else
			f++;
	}
	atomic_fetch_add(&d->copies, n);
	atomic_fetch_add(&d->faults, f);
	gmm_walker_unregister(w);
	return NULL;
}

static void progress(void *arg, uint64_t done, uint64_t total)
{
	(void)arg;
	log_msg(LOG_INFO, "prefault %3llu%%", (unsigned long long)(done * 100 / total));
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmm demo [options]\n"
		"  Back guest RAM with guestmm, run walker threads, hot-unplug half of it.\n"
		"  --memory SIZE       guest RAM (default 1G; K, M, G suffixes)\n"
		"  --backing B         anon|thp|hugetlb-2M|hugetlb-1G|memfd (default thp)\n"
		"  --strategy S        kick|count|perthread|membarrier|rcu (default %s)\n"
		"  --walkers N         walker threads (default 2)\n"
		"  --prefault          populate RAM before starting\n"
		"  --seconds S         how long walkers run before the unplug (default 1)\n",
		gmm_strategy_name(GMM_STRATEGY_DEFAULT));
}

int demo_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "memory", required_argument, NULL, 'm' },
		{ "backing", required_argument, NULL, 'b' },
		{ "strategy", required_argument, NULL, 's' },
		{ "walkers", required_argument, NULL, 'w' },
		{ "prefault", no_argument, NULL, 'p' },
		{ "seconds", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct demo d = { .mem = 1ULL << 30 };
	enum gmm_backing backing = GMM_BACKING_THP;
	struct gmm_vm_config cfg;
	uint64_t nwalkers = 2, seconds = 1;
	bool prefault = false;
	int c;

	gmm_vm_config_init(&cfg);
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (parse_size(optarg, &d.mem) < 0 || d.mem < (4ULL << 20))
				return die_usage("--memory: '%s' is not a size of at least 4M", optarg);
			break;
		case 'b':
			if (gmm_backing_parse(optarg, &backing) < 0 || backing == GMM_BACKING_FILE)
				return die_usage("--backing: '%s' is not one of anon, thp, hugetlb-2M, hugetlb-1G, memfd", optarg);
			break;
		case 's':
			if (gmm_strategy_parse(optarg, &cfg.strategy) < 0)
				return die_usage("--strategy: %s", gmm_last_error());
			break;
		case 'w':
			if (parse_uint(optarg, 0, 256, &nwalkers) < 0)
				return die_usage("--walkers: '%s' is not a number from 0 to 256", optarg);
			break;
		case 'p':
			prefault = true;
			break;
		case 't':
			if (parse_uint(optarg, 0, 3600, &seconds) < 0)
				return die_usage("--seconds: '%s' is not a number from 0 to 3600", optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc)
		return die_usage("demo: unexpected argument '%s'", argv[optind]);
	uint64_t pg = gmm_backing_page_size(backing);
	if (d.mem % (2 * pg))
		return die_usage("--memory: %llu is not a multiple of twice the %s page size",
				 (unsigned long long)d.mem, gmm_backing_name(backing));

	if (gmm_vm_create(&cfg, &d.vm) < 0) {
		log_msg(LOG_ERROR, "%s", gmm_last_error());
		return 1;
	}
	struct gmm_region *ram;
	struct gmm_region_spec spec = {
		.gpa = 0, .size = d.mem, .backing = backing, .name = "ram",
		.flags = prefault ? GMM_REGION_PREFAULT : 0, .progress = progress,
	};
	if (gmm_region_add(d.vm, &spec, &ram) < 0) {
		log_msg(LOG_ERROR, "%s", gmm_last_error());
		gmm_vm_destroy(d.vm);
		return 1;
	}
	struct gmm_region_info info;
	struct gmm_coverage cov = { 0 };
	char b1[32], b2[32], b3[32];
	gmm_region_info(ram, &info);
	gmm_region_coverage(ram, &cov);
	printf("memory: %s %s, resident %s, huge pages %s (%.1f%%, measured by %s), prefault %.1f ms\n",
	       format_size(d.mem, b1, sizeof(b1)), gmm_backing_name(backing),
	       format_size(cov.resident, b2, sizeof(b2)), format_size(cov.huge, b3, sizeof(b3)),
	       cov.size ? 100.0 * (double)cov.huge / (double)cov.size : 0.0, cov.method,
	       (double)info.prefault_ns / 1e6);

	pthread_t *th = calloc(nwalkers ? nwalkers : 1, sizeof(*th));
	for (uint64_t i = 0; i < nwalkers; i++)
		pthread_create(&th[i], NULL, walker, &d);
	usleep((useconds_t)(seconds * 1000000));

	struct gmm_stats before, after;
	gmm_vm_stats(d.vm, &before);
	uint64_t t0 = now_ns();
	int ret = gmm_unmap(d.vm, d.mem / 2, d.mem / 2, 0);
	uint64_t t1 = now_ns();
	gmm_vm_stats(d.vm, &after);
	atomic_store(&d.stop, true);
	for (uint64_t i = 0; i < nwalkers; i++)
		pthread_join(th[i], NULL);
	free(th);
	if (ret < 0) {
		log_msg(LOG_ERROR, "unplug failed: %s", gmm_last_error());
	} else {
		printf("unplug of %s with %llu walkers (strategy %s): %.3f ms, "
		       "serialisations %llu issued / %llu skipped (%.3f ms), kicks %llu\n",
		       format_size(d.mem / 2, b1, sizeof(b1)), (unsigned long long)nwalkers,
		       gmm_strategy_name(cfg.strategy), (double)(t1 - t0) / 1e6,
		       (unsigned long long)(after.serialize_issued - before.serialize_issued),
		       (unsigned long long)(after.serialize_skipped - before.serialize_skipped),
		       (double)(after.serialize_ns - before.serialize_ns) / 1e6,
		       (unsigned long long)(after.kicks_sent - before.kicks_sent));
	}
	printf("walkers: %llu copies of 512 bytes, %llu failed (after the unplug)\n",
	       (unsigned long long)atomic_load(&d.copies), (unsigned long long)atomic_load(&d.faults));
	char stats[2048];
	gmm_vm_stats(d.vm, &after);
	gmm_stats_format(&after, stats, sizeof(stats));
	printf("guestmm statistics:\n%s", stats);
	gmm_vm_destroy(d.vm);
	return ret < 0 ? 1 : 0;
}
