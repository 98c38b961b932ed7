// SPDX-License-Identifier: GPL-2.0-only
/*
 * bench_blk.c - virtio-blk-bench: throughput of the VMM's virtio-blk device
 * path on the host, no guest: the test driver (vdriver.h) plays the guest
 * from this thread, the device runs its own thread and engine as in vmm.
 *
 *   virtio-blk-bench [--engine io_uring|threads|both] [--sizes 4K,1M]
 *                    [--depth 32] [--seconds 3] [--repeat 3]
 *                    [--size 1G] [--file PATH]
 *
 * Per (engine, request size, read|write) and repetition: a fresh guest RAM
 * (THP) and device; `depth` request slots, each with a fixed indirect
 * descriptor table (header, data buffer, status byte) and ring descriptor,
 * so that the driver's work per request is a 16-byte header write, an
 * avail ring entry, and a kick when the event index asks for one.  The
 * driver keeps `depth` requests in flight at random size-aligned offsets of
 * the file for `seconds`, sleeping on the device's interrupt eventfd when
 * nothing is used, like a guest's driver with event-index interrupts.
 * Every completion's status byte is checked.  MB/s (10^6 bytes) and IOPS
 * are counted over the completions inside the window; the table gives the
 * median of `repeat` runs and their range.
 *
 * The disk file (default: a temporary file of --size under $TMPDIR or
 * /var/tmp, removed at exit) is created sparse and filled once (and synced,
 * so that its writeback does not run during the measurements), so reads
 * hit data, not holes.  An existing --file at least --size long is used as
 * it is.  The device opens it as vmm does: buffered, so the
 * page cache is warm and this measures the device path (pins, iovecs,
 * engine, rings), not the storage.
 *
 * Output: the table on stdout; progress on stderr.  Exit 0, 1 if a run
 * failed, 2 on a bad command line.
 */
#include "vdriver.h"
#include "virtio/virtio_devices.h"
#include "core/size.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIZES 8
#define QUEUE_NUM 256
#define T_IN 0
#define T_OUT 1

struct opts {
	bool engines[2];
	uint64_t sizes[MAX_SIZES];
	unsigned nsizes;
	unsigned depth;
	double seconds;
	unsigned repeat;
	uint64_t file_size;
	const char *file;
};

struct result {
	double mbps, iops;
	bool ok;
};

static _Noreturn void __attribute__((format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "virtio-blk-bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nusage: virtio-blk-bench [--engine io_uring|threads|both] [--sizes 4K,1M]\n"
			"       [--depth 32] [--seconds 3] [--repeat 3] [--size 1G] [--file PATH]\n");
	va_end(ap);
	exit(2);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

static void parse_sizes(struct opts *o, const char *arg)
{
	char *copy = strdup(arg), *save = NULL;
	o->nsizes = 0;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		uint64_t v;
		if (parse_size(tok, &v) || v == 0 || v % 512 || v > (64ULL << 20))
			usage_error("--sizes: bad request size '%s' (a multiple of 512 up to 64M)", tok);
		if (o->nsizes == MAX_SIZES)
			usage_error("--sizes: at most %d sizes", MAX_SIZES);
		o->sizes[o->nsizes++] = v;
	}
	free(copy);
	if (!o->nsizes)
		usage_error("--sizes: empty list");
}

static void parse_opts(struct opts *o, int argc, char **argv)
{
	*o = (struct opts){
		.engines = { true, true },
		.sizes = { 4096, 1 << 20 },
		.nsizes = 2,
		.depth = 32,
		.seconds = 3,
		.repeat = 3,
		.file_size = 1ULL << 30,
	};
	static const struct option lopts[] = {
		{ "engine", required_argument, NULL, 'e' },
		{ "sizes", required_argument, NULL, 's' },
		{ "depth", required_argument, NULL, 'd' },
		{ "seconds", required_argument, NULL, 't' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "size", required_argument, NULL, 'S' },
		{ "file", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	uint64_t v;
	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'e': {
			enum blk_engine e;
			if (!strcmp(optarg, "both")) {
				o->engines[0] = o->engines[1] = true;
			} else if (blk_engine_parse(optarg, &e) == 0) {
				o->engines[0] = e == BLK_ENGINE_IO_URING;
				o->engines[1] = e == BLK_ENGINE_THREADS;
			} else {
				usage_error("--engine: '%s' is not io_uring, threads or both", optarg);
			}
			break;
		}
		case 's':
			parse_sizes(o, optarg);
			break;
		case 'd':
			if (parse_uint(optarg, 1, QUEUE_NUM, &v))
				usage_error("--depth: expected 1..%d, not '%s'", QUEUE_NUM, optarg);
			o->depth = (unsigned)v;
			break;
		case 't': {
			char *end;
			o->seconds = strtod(optarg, &end);
			if (*end || !(o->seconds > 0 && o->seconds <= 3600))
				usage_error("--seconds: expected a duration in (0, 3600], not '%s'", optarg);
			break;
		}
		case 'r':
			if (parse_uint(optarg, 1, 100, &v))
				usage_error("--repeat: expected 1..100, not '%s'", optarg);
			o->repeat = (unsigned)v;
			break;
		case 'S':
			if (parse_size(optarg, &v) || v < (1 << 20) || v % (1 << 20))
				usage_error("--size: expected a multiple of 1M, not '%s'", optarg);
			o->file_size = v;
			break;
		case 'f':
			o->file = optarg;
			break;
		case 'h':
			usage_error("a device-level throughput benchmark of virtio-blk");
		default:
			usage_error("bad option");
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	for (unsigned i = 0; i < o->nsizes; i++)
		if (o->sizes[i] > o->file_size)
			usage_error("--sizes: %llu bytes is larger than the file",
				    (unsigned long long)o->sizes[i]);
}

/* Create (sparse) and fill the file if it is new or short.  Returns true
 * if we created it (removed at exit). */
static bool prepare_file(const char *path, uint64_t size, bool *created)
{
	struct stat st;
	bool exists = stat(path, &st) == 0;
	if (exists && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		fprintf(stderr, "virtio-blk-bench: %s is not a regular file or block device\n", path);
		return false;
	}
	*created = !exists;
	if (exists && (S_ISBLK(st.st_mode) || (uint64_t)st.st_size >= size))
		return true;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "virtio-blk-bench: cannot create %s: %s\n", path, strerror(errno));
		return false;
	}
	if (ftruncate(fd, (off_t)size) != 0) {
		fprintf(stderr, "virtio-blk-bench: ftruncate %s: %s\n", path, strerror(errno));
		close(fd);
		return false;
	}
	fprintf(stderr, "filling %s (%llu MiB)...\n", path, (unsigned long long)(size >> 20));
	double t0 = now_s();
	size_t chunk = 1 << 20;
	uint8_t *buf = malloc(chunk);
	for (size_t i = 0; i < chunk; i++)
		buf[i] = (uint8_t)(i * 31 + 7);
	for (uint64_t off = 0; off < size; off += chunk) {
		buf[0] = (uint8_t)(off >> 20);
		if (pwrite(fd, buf, chunk, (off_t)off) != (ssize_t)chunk) {
			fprintf(stderr, "virtio-blk-bench: writing %s: %s\n", path, strerror(errno));
			free(buf);
			close(fd);
			return false;
		}
	}
	free(buf);
	/* On disk before measuring: no writeback of the fill during a run. */
	if (fdatasync(fd) != 0)
		fprintf(stderr, "virtio-blk-bench: fdatasync %s: %s\n", path, strerror(errno));
	close(fd);
	fprintf(stderr, "filled in %.1f s\n", now_s() - t0);
	return true;
}

struct slot {
	uint64_t hdr, data, status, table;
};

static void put_desc(uint8_t *p, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc d = {
		.addr = htole64(addr), .len = htole32(len), .flags = htole16(flags),
		.next = htole16(next),
	};
	memcpy(p, &d, sizeof(d));
}

static void submit(struct vdriver *v, const struct slot *s, unsigned i, uint32_t type,
		   uint64_t sector)
{
	uint8_t h[16] = { 0 };
	uint32_t t = htole32(type);
	uint64_t sec = htole64(sector);
	memcpy(h, &t, 4);
	memcpy(h + 8, &sec, 8);
	vd_write(v, s[i].hdr, h, sizeof(h));
	vd_publish(v, 0, (uint16_t)i);
}

/* Kick if the device's avail_event asks for it (vring_need_event). */
static void maybe_kick(struct vdriver *v, uint16_t old_idx)
{
	struct vd_queue *q = &v->q[0];
	uint16_t new_idx = q->avail_idx;
	if (new_idx == old_idx)
		return;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint16_t ev;
	vd_read(v, q->used + 4 + 8ULL * q->num, &ev, 2);
	ev = le16toh(ev);
	if ((uint16_t)(new_idx - ev - 1) < (uint16_t)(new_idx - old_idx))
		vd_kick(v, 0);
}

static struct result run_one(const struct opts *o, const char *path, enum blk_engine engine,
			     uint64_t size, bool write)
{
	struct result res = { 0 };
	struct vdriver v;
	uint64_t ram = ((uint64_t)o->depth * (size + 4096) + (8ULL << 20) + GMM_2M - 1) &
		       ~(GMM_2M - 1);
	if (vd_init(&v, ram)) {
		fprintf(stderr, "virtio-blk-bench: guest RAM of %llu MiB: %s\n",
			(unsigned long long)(ram >> 20), gmm_last_error());
		return res;
	}
	struct blk_config cfg = { .path = path, .engine = engine };
	char err[256];
	struct virtio_dev *d = virtio_blk_create(v.mem, &cfg, 0, err, sizeof(err));
	if (!d) {
		fprintf(stderr, "virtio-blk-bench: %s\n", err);
		vd_fini(&v);
		return res;
	}
	if (d->ops->start(d)) {
		d->ops->destroy(d);
		vd_fini(&v);
		return res;
	}
	int st = vd_setup(&v, d, ~0ULL, 1, QUEUE_NUM);
	if (st < 0 || !(st & VIRTIO_STATUS_DRIVER_OK)) {
		fprintf(stderr, "virtio-blk-bench: driver setup failed (status %#x)\n", st);
		goto out;
	}
	uint64_t sectors = o->file_size / 512, per = size / 512;
	uint64_t slots_in_file = sectors / per;
	struct slot *s = calloc(o->depth, sizeof(*s));
	uint8_t *fill = malloc(size);
	memset(fill, 0x5a, size);
	for (unsigned i = 0; i < o->depth; i++) {
		s[i].data = vd_alloc(&v, size, 4096);
		vd_write(&v, s[i].data, fill, size);   /* fault the pages in */
		s[i].hdr = vd_alloc(&v, 16, 16);
		s[i].status = vd_alloc(&v, 1, 1);
		s[i].table = vd_alloc(&v, 48, 16);
		uint8_t t[48];
		put_desc(t, s[i].hdr, 16, VIRTQ_DESC_F_NEXT, 1);
		put_desc(t + 16, s[i].data, (uint32_t)size,
			 (write ? 0 : VIRTQ_DESC_F_WRITE) | VIRTQ_DESC_F_NEXT, 2);
		put_desc(t + 32, s[i].status, 1, VIRTQ_DESC_F_WRITE, 0);
		vd_write(&v, s[i].table, t, sizeof(t));
		struct virtq_desc rd = { .addr = s[i].table, .len = 48, .flags = VIRTQ_DESC_F_INDIRECT };
		vd_set_desc(&v, 0, (uint16_t)i, &rd);
	}
	free(fill);

	uint32_t type = write ? T_OUT : T_IN;
	unsigned inflight = 0;
	uint16_t old = v.q[0].avail_idx;
	for (unsigned i = 0; i < o->depth; i++) {
		submit(&v, s, i, type, (rnd() % slots_in_file) * per);
		inflight++;
	}
	vd_kick(&v, 0);

	uint64_t done = 0;
	bool failed = false;
	double t0 = now_s(), t_end = t0 + o->seconds, t_last = t0;
	while (inflight) {
		bool running = !failed && t_last < t_end;
		unsigned n = vd_used_pending(&v, 0);
		if (n == 0) {
			struct pollfd p = { .fd = d->irq_fd, .events = POLLIN };
			if (poll(&p, 1, 2000) == 0) {
				fprintf(stderr, "virtio-blk-bench: no completion for 2 s\n");
				failed = true;
				break;
			}
			uint64_t x;
			if (read(d->irq_fd, &x, sizeof(x)) < 0 && errno != EAGAIN)
				failed = true;
			continue;
		}
		t_last = now_s();
		old = v.q[0].avail_idx;
		for (unsigned k = 0; k < n; k++) {
			uint32_t len;
			int head = vd_wait_used(&v, 0, 0, &len);
			if (head < 0 || (unsigned)head >= o->depth) {
				fprintf(stderr, "virtio-blk-bench: bad used head %d\n", head);
				failed = true;
				inflight = 0;
				break;
			}
			uint8_t status;
			vd_read(&v, s[head].status, &status, 1);
			if (status != 0) {
				fprintf(stderr, "virtio-blk-bench: request failed with status %u\n", status);
				failed = true;
			}
			inflight--;
			if (running && t_last < t_end) {
				done++;
				submit(&v, s, (unsigned)head, type, (rnd() % slots_in_file) * per);
				inflight++;
			}
		}
		maybe_kick(&v, old);
	}
	double elapsed = (t_last < t_end ? t_last : t_end) - t0;
	if (!failed && elapsed > 0) {
		res.ok = true;
		res.iops = (double)done / elapsed;
		res.mbps = res.iops * (double)size / 1e6;
	}
	free(s);
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

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
	struct opts o;
	parse_opts(&o, argc, argv);
	log_set_level(LOG_WARN);

	char tmp[256];
	const char *path = o.file;
	if (!path) {
		const char *dir = getenv("TMPDIR");
		snprintf(tmp, sizeof(tmp), "%s/virtio-blk-bench.%d.img", dir && *dir ? dir : "/var/tmp",
			 (int)getpid());
		path = tmp;
	}
	bool created = false;
	if (!prepare_file(path, o.file_size, &created))
		return 1;

	struct utsname u;
	uname(&u);
	char when[64];
	time_t now = time(NULL);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&now));
	printf("# virtio-blk-bench: the device path on the host (no guest), %s, %s %s, %ld CPUs\n",
	       when, u.sysname, u.release, sysconf(_SC_NPROCESSORS_ONLN));
	printf("# file %s, %llu MiB, buffered I/O with a warm page cache (the file was just read or written)\n",
	       path, (unsigned long long)(o.file_size >> 20));
	printf("# depth %u, %.3g s per run, median of %u runs (range in brackets)\n", o.depth,
	       o.seconds, o.repeat);
	printf("%-9s %-6s %8s %10s %22s %12s\n", "engine", "op", "size", "MB/s", "[min - max]", "IOPS");

	int rc = 0;
	for (int e = 0; e < 2; e++) {
		if (!o.engines[e])
			continue;
		enum blk_engine engine = e ? BLK_ENGINE_THREADS : BLK_ENGINE_IO_URING;
		for (unsigned si = 0; si < o.nsizes; si++) {
			for (int w = 0; w < 2; w++) {
				double mbps[100], iops[100];
				bool ok = true;
				for (unsigned r = 0; r < o.repeat && ok; r++) {
					fprintf(stderr, "%s %s %llu bytes, run %u/%u\n", blk_engine_name(engine),
						w ? "write" : "read", (unsigned long long)o.sizes[si], r + 1,
						o.repeat);
					struct result res = run_one(&o, path, engine, o.sizes[si], w);
					ok = res.ok;
					mbps[r] = res.mbps;
					iops[r] = res.iops;
				}
				char sz[32];
				format_size(o.sizes[si], sz, sizeof(sz));
				if (!ok) {
					printf("%-9s %-6s %8s %10s\n", blk_engine_name(engine),
					       w ? "write" : "read", sz, "FAILED");
					rc = 1;
					continue;
				}
				double lo = mbps[0], hi = mbps[0];
				for (unsigned r = 1; r < o.repeat; r++) {
					lo = mbps[r] < lo ? mbps[r] : lo;
					hi = mbps[r] > hi ? mbps[r] : hi;
				}
				char range[48];
				snprintf(range, sizeof(range), "[%.0f - %.0f]", lo, hi);
				printf("%-9s %-6s %8s %10.0f %22s %12.0f\n", blk_engine_name(engine),
				       w ? "write" : "read", sz, median(mbps, o.repeat), range,
				       median(iops, o.repeat));
				fflush(stdout);
			}
		}
	}
	if (created)
		unlink(path);
	return rc;
}
