/*
 * bench_snapshot.c - guestmm-snapshot-bench: the memory half of snapshot
 * and restore (guestmm/snapshot.h, issue 16), measured, with the physical
 * limits of the same machine in the same run.  A program run by hand
 * (scripts/bench-snapshot), not a test: it prints figures and fails only
 * when an operation fails.
 *
 * For each size (--sizes, default 1G,4G): a thp region whose first half is
 * written (every byte: a pattern per 8 bytes), the second half never
 * touched; then
 *   save         gmm_region_save into a file in --dir (default /var/tmp):
 *                time, the file's length and its blocks on disk
 *   page cache   the file read with read(2) into a 1 MiB buffer, the way
 *                `cat > /dev/null` reads it (warm: it was just written)
 *   memcpy       the written half copied between two prefaulted huge-page
 *                buffers (the copy's own limit)
 *   copy thp     a fresh region, prefaulted (time), then gmm_region_load
 *                (time, rate); the sum is the Copy restore; huge-page
 *                coverage after
 *   copy 2M      the same onto hugetlb-2M (pages reserved and released)
 *   on-demand    time from gmm_ondemand_start to its return (to running);
 *                the first fault's latency (a touch of one page); the fault
 *                rate the handler sustains without fill-ahead (2 threads
 *                touching distinct blocks: faults/s, mean us per fault);
 *                with fill-ahead, the time until every block is in;
 *                coverage after
 * Every restore is checked against the pattern (one word per 4 KiB page).
 */
#include <guestmm/guestmm.h>

#include "hugetlb_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)
#define BASE (4 * GiB)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t pat(uint64_t off)
{
	return off * 0x9e3779b97f4a7c15ULL + 1;
}

static void die(const char *what)
{
	fprintf(stderr, "guestmm-snapshot-bench: %s: %s\n", what, gmm_last_error());
	exit(1);
}

static struct gmm_vm *new_vm(void)
{
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	struct gmm_vm *vm;
	if (gmm_vm_create(&cfg, &vm) < 0)
		die("vm");
	return vm;
}

static struct gmm_region *new_region(struct gmm_vm *vm, uint64_t size, enum gmm_backing b,
				     bool prefault, double *secs)
{
	struct gmm_region_spec spec = { .gpa = BASE, .size = size, .backing = b, .name = "bench",
					.flags = prefault ? GMM_REGION_PREFAULT : 0 };
	struct gmm_region *r;
	double t0 = now_s();
	if (gmm_region_add(vm, &spec, &r) < 0)
		return NULL;
	if (secs)
		*secs = now_s() - t0;
	return r;
}

static uint8_t *hva(struct gmm_region *r)
{
	struct gmm_region_info i;
	gmm_region_info(r, &i);
	return i.hva;
}

static void check(struct gmm_region *r, uint64_t size, const char *what)
{
	uint8_t *p = hva(r);
	for (uint64_t off = 0; off < size; off += 4096 + 8) {
		uint64_t o = off & ~7ULL;
		uint64_t v = *(volatile uint64_t *)(p + o), want = o < size / 2 ? pat(o) : 0;
		if (v != want) {
			fprintf(stderr, "guestmm-snapshot-bench: %s: word at %llu is 0x%llx, expected 0x%llx\n",
				what, (unsigned long long)o, (unsigned long long)v, (unsigned long long)want);
			exit(1);
		}
	}
}

static double coverage(struct gmm_region *r)
{
	struct gmm_coverage c;
	if (gmm_region_coverage(r, &c) < 0 || !c.size)
		return -1;
	return 100.0 * (double)c.huge / (double)c.size;
}

struct toucher {
	uint8_t *base;
	uint64_t from, to, step;
	double secs;
	uint64_t n;
};

static void *touch(void *p)
{
	struct toucher *t = p;
	double t0 = now_s();
	for (uint64_t off = t->from; off < t->to; off += t->step, t->n++)
		(void)*(volatile uint64_t *)(t->base + off);
	t->secs = now_s() - t0;
	return NULL;
}

static void run(uint64_t size, const char *dir)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/guestmm-snapshot-bench.%d", dir, getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		perror(path);
		exit(1);
	}
	unlink(path);
	const char *sz = size >= GiB ? "GiB" : "MiB";
	double szv = size >= GiB ? (double)size / GiB : (double)size / MiB;
	printf("== %.0f %s guest, first half written (%.0f MiB), thp\n", szv, sz,
	       (double)size / 2 / MiB);

	/* The source. */
	struct gmm_vm *vm = new_vm();
	struct gmm_region *r = new_region(vm, size, GMM_BACKING_THP, false, NULL);
	if (!r)
		die("source region");
	uint8_t *p = hva(r);
	for (uint64_t off = 0; off < size / 2; off += 8)
		*(uint64_t *)(p + off) = pat(off);
	struct gmm_save_stats ss;
	double t0 = now_s();
	if (gmm_region_save(r, fd, 0, 0, &ss) < 0)
		die("save");
	double save_s = now_s() - t0;
	struct stat sb;
	fstat(fd, &sb);
	printf("save          %8.1f ms  %7.0f MB/s  file %llu MiB long, %llu MiB on disk, %llu MiB "
	       "written in %llu extents\n", save_s * 1e3, (double)ss.written / save_s / 1e6,
	       (unsigned long long)(sb.st_size >> 20),
	       (unsigned long long)((uint64_t)sb.st_blocks * 512 >> 20),
	       (unsigned long long)(ss.written >> 20), (unsigned long long)ss.extents);
	gmm_vm_destroy(vm);

	/* The limits. */
	static char buf[1 << 20];
	t0 = now_s();
	uint64_t got = 0;
	for (off_t off = 0;;) {
		ssize_t n = pread(fd, buf, sizeof(buf), off);
		if (n <= 0)
			break;
		got += (uint64_t)n;
		off += n;
	}
	double cat_s = now_s() - t0;
	printf("page cache    %8.1f ms  %7.0f MB/s  read(2) of the whole file (%llu MiB), as cat does\n",
	       cat_s * 1e3, (double)got / cat_s / 1e6, (unsigned long long)(got >> 20));
	uint64_t half = size / 2;
	uint8_t *a = mmap(NULL, half, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *b = mmap(NULL, half, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || b == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	madvise(a, half, MADV_HUGEPAGE);
	madvise(b, half, MADV_HUGEPAGE);
	memset(a, 1, half);
	memset(b, 2, half);
	t0 = now_s();
	memcpy(b, a, half);
	double cpy_s = now_s() - t0;
	printf("memcpy        %8.1f ms  %7.0f MB/s  %llu MiB between prefaulted huge-page buffers\n",
	       cpy_s * 1e3, (double)half / cpy_s / 1e6, (unsigned long long)(half >> 20));
	munmap(a, half);
	munmap(b, half);

	/* Copy restores. */
	static const enum gmm_backing copy_to[] = { GMM_BACKING_THP, GMM_BACKING_HUGETLB_2M };
	for (size_t i = 0; i < 2; i++) {
		long before = hp_read_long(HP2M "nr_hugepages");
		if (copy_to[i] == GMM_BACKING_HUGETLB_2M &&
		    (!hp_write_long(HP2M "nr_hugepages", before + (long)(size / (2 * MiB)) + 8) ||
		     hp_avail(HP2M) < (long)(size / (2 * MiB)))) {
			printf("copy %-9s not measured: cannot reserve %llu huge pages\n",
			       gmm_backing_name(copy_to[i]), (unsigned long long)(size / (2 * MiB)));
			hp_write_long(HP2M "nr_hugepages", before);
			continue;
		}
		vm = new_vm();
		double pf_s;
		r = new_region(vm, size, copy_to[i], true, &pf_s);
		if (!r)
			die("copy region");
		struct gmm_load_stats ls;
		t0 = now_s();
		if (gmm_region_load(r, fd, 0, 0, &ls) < 0)
			die("load");
		double ld_s = now_s() - t0;
		check(r, size, "copy");
		printf("copy %-9s%8.1f ms  to running: prefault %.1f ms + load %.1f ms (%.0f MB/s, "
		       "%.2fx the page-cache read); huge pages %.1f%%\n", gmm_backing_name(copy_to[i]),
		       (pf_s + ld_s) * 1e3, pf_s * 1e3, ld_s * 1e3, (double)ls.read / ld_s / 1e6,
		       ld_s / cat_s, coverage(r));
		gmm_vm_destroy(vm);
		if (copy_to[i] == GMM_BACKING_HUGETLB_2M)
			hp_write_long(HP2M "nr_hugepages", before);
	}

	/* On demand: time to running, first fault, the handler's rate. */
	vm = new_vm();
	r = new_region(vm, size, GMM_BACKING_THP, false, NULL);
	struct gmm_ondemand *od;
	struct gmm_ondemand_spec os = { .fd = fd, .nregions = 1, .regions = { { r, 0 } },
					.no_fill_ahead = true };
	t0 = now_s();
	if (gmm_ondemand_start(vm, &os, &od) < 0)
		die("on-demand start");
	double start_s = now_s() - t0;
	p = hva(r);
	t0 = now_s();
	(void)*(volatile uint64_t *)(p + 8);
	double first_s = now_s() - t0;
	struct toucher tt[2];
	pthread_t th[2];
	for (int i = 0; i < 2; i++) {
		tt[i] = (struct toucher){ .base = p, .from = (uint64_t)(i + 1) * 2 * MiB,
					  .to = half, .step = 4 * MiB };
		pthread_create(&th[i], NULL, touch, &tt[i]);
	}
	double rate_secs = 0;
	uint64_t faults = 0;
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		faults += tt[i].n;
		if (tt[i].secs > rate_secs)
			rate_secs = tt[i].secs;
	}
	struct gmm_ondemand_stats st;
	gmm_ondemand_stats(od, &st);
	printf("on-demand     %8.3f ms  to running (gmm_ondemand_start returned)\n", start_s * 1e3);
	printf("  first fault %8.1f us  (a 4 KiB touch, served as its whole 2 MiB block; handler's "
	       "own time %.1f us)\n", first_s * 1e6, (double)st.first_fault_ns / 1e3);
	printf("  fault rate  %8.0f faults/s, %.0f MB/s, mean %.0f us each (2 threads, distinct 2 MiB "
	       "blocks, no fill-ahead; %llu faults)\n", (double)faults / rate_secs,
	       (double)faults * 2 * MiB / rate_secs / 1e6,
	       (double)st.fault_ns_total / (double)(st.faults ? st.faults : 1) / 1e3,
	       (unsigned long long)faults);
	check(r, size, "on-demand (faults)");
	printf("  coverage    %8.1f %% huge pages after the faults (each block collapsed: %llu, "
	       "failed %llu)\n", coverage(r), (unsigned long long)st.collapsed,
	       (unsigned long long)st.collapse_failed);
	gmm_ondemand_stop(od);
	gmm_vm_destroy(vm);

	vm = new_vm();
	r = new_region(vm, size, GMM_BACKING_THP, false, NULL);
	os.no_fill_ahead = false;
	os.regions[0].r = r;
	t0 = now_s();
	if (gmm_ondemand_start(vm, &os, &od) < 0)
		die("on-demand start");
	start_s = now_s() - t0;
	if (gmm_ondemand_wait(od, 600000) < 0)
		die("fill-ahead did not finish in 600 s");
	double fill_s = now_s() - t0;
	gmm_ondemand_stats(od, &st);
	check(r, size, "on-demand (fill-ahead)");
	printf("  fill-ahead  %8.1f ms  every block in (%.0f MB/s; running after %.3f ms); huge "
	       "pages %.1f%% of the region, collapsed %llu of %llu blocks\n", fill_s * 1e3,
	       (double)st.bytes_copied / fill_s / 1e6, start_s * 1e3, coverage(r),
	       (unsigned long long)st.collapsed, (unsigned long long)st.blocks_total);
	gmm_ondemand_stop(od);
	gmm_vm_destroy(vm);
	close(fd);
}

static uint64_t parse_size(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	switch (*end) {
	case 'G': case 'g': return (uint64_t)(v * GiB);
	case 'M': case 'm': return (uint64_t)(v * MiB);
	default: return (uint64_t)v;
	}
}

int main(int argc, char **argv)
{
	const char *sizes = "1G,4G", *dir = "/var/tmp";
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--sizes") && i + 1 < argc)
			sizes = argv[++i];
		else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			dir = argv[++i];
		else {
			fprintf(stderr, "usage: guestmm-snapshot-bench [--sizes 1G,4G] [--dir DIR]\n");
			return 2;
		}
	}
	struct utsname u;
	uname(&u);
	time_t now = time(NULL);
	char when[64];
	strftime(when, sizeof(when), "%F %T", gmtime(&now));
	printf("# guestmm-snapshot-bench, %s UTC, Linux %s, %ld CPUs, file in %s\n", when, u.release,
	       sysconf(_SC_NPROCESSORS_ONLN), dir);
	setvbuf(stdout, NULL, _IOLBF, 0);
	hp_save();
	char *list = strdup(sizes);
	for (char *s = strtok(list, ","); s; s = strtok(NULL, ","))
		run(parse_size(s), dir);
	free(list);
	hp_restore("guestmm-snapshot-bench");
	return 0;
}
