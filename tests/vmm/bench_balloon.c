// SPDX-License-Identifier: GPL-2.0-only
/*
 * bench_balloon.c - virtio-balloon-bench: the cost of inflating the balloon
 * over scattered 4 KiB pages, on the host, no guest: the test driver
 * (vdriver.h) plays the guest's balloon driver from this thread, the
 * device runs its own thread as in vmm.
 *
 *   virtio-balloon-bench [--inflate 512M] [--pattern alternate|random]
 *                        [--pfns 256] [--backing thp|anon] [--repeat 3]
 *                        [--seed N]
 *
 * Per repetition: a fresh guest RAM of 64 MiB (the driver's rings and
 * buffers) + twice --inflate, every page touched first (so each inflated
 * page has host memory to give back), and a fresh device.  The pages to
 * inflate lie in the second part: every other page (alternate), or each
 * --inflate worth of pages drawn at random from the span (random: selection
 * sampling, seeded).
 * The driver sends them as Linux's does, in increasing PFN order, --pfns
 * PFNs per buffer (Linux: 256; the device takes up to 65,536), one buffer
 * at a time, waiting for the device to use each.
 *
 * Reported: the time from the first buffer to the last one used, the
 * requests, the guestmm serialisations (issued + skipped) per request,
 * pin waits, and the balloon's inflated bytes (checked: every page).  The
 * table gives the median of --repeat runs and their range.
 *
 * A program run by hand, not a test (the figures are for
 * docs/bench/balloon/).  Exit 0, 1 if a run failed, 2 on a bad command line.
 */
#include "vdriver.h"
#include "virtio/virtio_devices.h"
#include "core/size.h"

#include <endian.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define PG 4096ULL
#define LOW (64ULL << 20)   /* rings and buffers live below */
#define Q_INFLATE 0
#define MAX_RUNS 32

struct opts {
	uint64_t inflate;
	bool random;
	unsigned pfns;
	enum gmm_backing backing;
	unsigned repeat;
	uint64_t seed;
};

struct result {
	double seconds;
	uint64_t requests, serialisations, pin_waits, inflated;
	bool ok;
};

static _Noreturn void __attribute__((format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "virtio-balloon-bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nusage: virtio-balloon-bench [--inflate 512M] [--pattern alternate|random]\n"
			"       [--pfns 256] [--backing thp|anon] [--repeat 3] [--seed N]\n");
	va_end(ap);
	exit(2);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *s)
{
	/* xorshift64* */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static void parse_opts(struct opts *o, int argc, char **argv)
{
	*o = (struct opts){ .inflate = 512ULL << 20, .pfns = 256, .backing = GMM_BACKING_THP,
			    .repeat = 3, .seed = 1 };
	static const struct option lopts[] = {
		{ "inflate", required_argument, NULL, 'i' },
		{ "pattern", required_argument, NULL, 'p' },
		{ "pfns", required_argument, NULL, 'n' },
		{ "backing", required_argument, NULL, 'b' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "seed", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'i':
			if (parse_size(optarg, &o->inflate) || !o->inflate || o->inflate % PG ||
			    o->inflate > (64ULL << 30))
				usage_error("--inflate: bad size '%s' (4 KiB multiple up to 64G)", optarg);
			break;
		case 'p':
			if (strcmp(optarg, "alternate") && strcmp(optarg, "random"))
				usage_error("--pattern: alternate or random, not '%s'", optarg);
			o->random = strcmp(optarg, "random") == 0;
			break;
		case 'n':
			o->pfns = (unsigned)strtoul(optarg, NULL, 0);
			if (!o->pfns || o->pfns > 65536)
				usage_error("--pfns: 1 to 65536, not '%s'", optarg);
			break;
		case 'b':
			if (strcmp(optarg, "thp") && strcmp(optarg, "anon"))
				usage_error("--backing: thp or anon, not '%s'", optarg);
			o->backing = strcmp(optarg, "anon") ? GMM_BACKING_THP : GMM_BACKING_ANON;
			break;
		case 'r':
			o->repeat = (unsigned)strtoul(optarg, NULL, 0);
			if (!o->repeat || o->repeat > MAX_RUNS)
				usage_error("--repeat: 1 to %d", MAX_RUNS);
			break;
		case 's':
			o->seed = strtoull(optarg, NULL, 0) | 1;
			break;
		default:
			usage_error("unknown option");
		}
	}
	if (optind != argc)
		usage_error("unexpected argument '%s'", argv[optind]);
}

static uint64_t serialisations(struct gmm_vm *vm, uint64_t *pin_waits)
{
	struct gmm_stats st;
	gmm_vm_stats(vm, &st);
	*pin_waits = st.pin_waits;
	return st.serialize_issued + st.serialize_skipped;
}

static struct result run(const struct opts *o)
{
	struct result res = { 0 };
	struct vdriver v;
	uint64_t span = 2 * o->inflate, ram = LOW + span;
	if (vd_init_backing(&v, ram, o->backing) < 0) {
		fprintf(stderr, "guest RAM: %s\n", gmm_last_error());
		return res;
	}
	struct gmm_region_info ri;
	gmm_region_info(v.ram, &ri);
	for (uint64_t off = LOW; off < ram; off += PG)
		((volatile uint8_t *)ri.hva)[off] = 1;
	struct balloon_config cfg = { 0 };
	char err[256];
	struct virtio_dev *d = virtio_balloon_create(v.mem, &cfg, err, sizeof(err));
	if (!d || d->ops->start(d) < 0) {
		fprintf(stderr, "balloon: %s\n", d ? "cannot start" : err);
		if (d)
			d->ops->destroy(d);
		vd_fini(&v);
		return res;
	}
	int st = vd_setup(&v, d, ~0ULL, 2, 256);
	if (st <= 0 || !(st & VIRTIO_STATUS_DRIVER_OK)) {
		fprintf(stderr, "vd_setup: status %#x\n", st);
		goto out;
	}
	uint64_t buf = vd_alloc(&v, 4ULL * o->pfns, 4096);
	uint32_t *pfns = malloc(4ULL * o->pfns);
	uint64_t seed = o->seed, want = o->inflate / PG, sent = 0, page = LOW / PG;
	uint64_t w0, s0 = serialisations(v.mem, &w0);
	double t0 = now_s();
	bool ok = true;
	while (sent < want && ok) {
		unsigned n = 0;
		while (n < o->pfns && sent < want) {
			/* random: selection sampling (Knuth's algorithm S),
			 * exactly `want` of the span's pages. */
			uint64_t left = ram / PG - page;
			bool take = o->random ? rnd(&seed) % left < want - sent
					      : (page - LOW / PG) % 2 == 0;
			if (take) {
				pfns[n++] = htole32((uint32_t)page);
				sent++;
			}
			page++;
		}
		vd_write(&v, buf, pfns, 4ULL * n);
		struct vd_buf b = { .gpa = buf, .len = 4 * n };
		int head = vd_add(&v, Q_INFLATE, &b, 1, false);
		vd_kick(&v, Q_INFLATE);
		ok = vd_wait_used(&v, Q_INFLATE, 600000, NULL) == head;
		res.requests++;
	}
	res.seconds = now_s() - t0;
	uint64_t w1, s1 = serialisations(v.mem, &w1);
	res.serialisations = s1 - s0;
	res.pin_waits = w1 - w0;
	free(pfns);
	struct balloon_info in;
	virtio_balloon_info(d, &in);
	res.inflated = in.inflated_bytes;
	res.ok = ok && in.inflated_bytes == o->inflate;
	if (!res.ok)
		fprintf(stderr, "run failed: %s, inflated %llu of %llu bytes\n",
			ok ? "complete" : "a request was not used", (unsigned long long)in.inflated_bytes,
			(unsigned long long)o->inflate);
out:
	d->ops->destroy(d);
	vd_fini(&v);
	return res;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	struct opts o;
	parse_opts(&o, argc, argv);
	struct utsname u;
	uname(&u);
	printf("virtio-balloon-bench: inflate %llu MiB of %s 4 KiB pages over %llu MiB (%s), %u PFNs per request, %u runs\n",
	       (unsigned long long)(o.inflate >> 20), o.random ? "random" : "every other",
	       (unsigned long long)(2 * o.inflate >> 20), gmm_backing_name(o.backing), o.pfns,
	       o.repeat);
	printf("host: %s %s, %ld CPUs, guestmm strategy %s\n", u.sysname, u.release,
	       sysconf(_SC_NPROCESSORS_ONLN), gmm_strategy_name(GMM_STRATEGY_DEFAULT));
	double secs[MAX_RUNS];
	struct result r[MAX_RUNS];
	int status = 0;
	printf("%-4s %10s %9s %15s %14s %10s\n", "run", "seconds", "requests", "serialisations",
	       "per request", "pin waits");
	for (unsigned i = 0; i < o.repeat; i++) {
		fprintf(stderr, "run %u/%u...\n", i + 1, o.repeat);
		r[i] = run(&o);
		if (!r[i].ok)
			status = 1;
		secs[i] = r[i].seconds;
		printf("%-4u %10.3f %9llu %15llu %14.2f %10llu%s\n", i + 1, r[i].seconds,
		       (unsigned long long)r[i].requests, (unsigned long long)r[i].serialisations,
		       r[i].requests ? (double)r[i].serialisations / (double)r[i].requests : 0.0,
		       (unsigned long long)r[i].pin_waits, r[i].ok ? "" : "  FAILED");
	}
	qsort(secs, o.repeat, sizeof(secs[0]), cmp_double);
	printf("median %.3f s (range %.3f-%.3f), %.1f MiB/s inflated\n", secs[o.repeat / 2], secs[0],
	       secs[o.repeat - 1], (double)(o.inflate >> 20) / secs[o.repeat / 2]);
	return status;
}
