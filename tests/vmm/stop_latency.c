// SPDX-License-Identifier: GPL-2.0-only
/*
 * stop_latency.c - virtio-stop-latency: how long a virtio device's stop
 * (what vm.shutdown, vm.delete, reboot and SIGTERM wait for) takes when a
 * hostile guest filled its queue (issue 13, findings 2 and 3).  No KVM: the
 * test driver (vdriver.h) plays the guest from this thread, the device runs
 * its own thread and engine as in vmm.  A measuring program run by hand
 * (docs/hostile/devstop-*.txt), not a test.
 *
 *   virtio-stop-latency MODE [--runs N] [--cap SECONDS]
 *
 *   console-512k       one 512 KiB transmit chain, the console on a pty
 *                      nobody reads (raw, nonblocking master, slave held
 *                      open: libvirt's Pty console with no client)
 *   console-giant      256 indirect chains of 255 descriptors naming the
 *                      same 16 MiB buffer (~4 GiB each), same pty
 *   blk-full-io_uring  256 reads of 127 x 32 MiB (~4 GiB) from a sparse
 *   blk-full-threads   5 GiB image on /dev/shm, the queue full, with each
 *                      engine
 *
 * Each run: a fresh guest RAM and device, the queue filled and kicked, 300
 * ms for the device to get going (blk: at least 4 requests in flight),
 * then the device's stop on a helper thread, timed.  Prints each run, the
 * device's counters after the first, and the median of the runs.  A stop
 * still running after --cap seconds (default 60) cannot be taken back: the
 * program says so and exits 3.
 */
#include "vdriver.h"
#include "virtio/virtio_devices.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define CON_BIG (16u << 20)
#define BLK_BUF (32u << 20)
#define BLK_SEGS 127

static int stop_cap_s = 60;   /* --cap */

static void die(const char *what)
{
	fprintf(stderr, "virtio-stop-latency: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* The stop's milliseconds; exits 3 past cap_s. */
static double timed_stop(struct virtio_dev *d, int cap_s)
{
	double ms = vd_stop_within(d, cap_s * 1000);
	if (ms < 0) {
		printf("  stop still running after %d s: gave up (> %d000 ms)\n", cap_s, cap_s);
		fflush(stdout);
		_exit(3);
	}
	return ms;
}

static void print_counters(struct virtio_dev *d, const char *const *names)
{
	char buf[4096] = "";
	d->ops->counters(d, buf, sizeof(buf));
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
		for (const char *const *n = names; *n; n++)
			if (!strncmp(line, *n, strlen(*n)) && line[strlen(*n)] == ' ')
				printf("  %s\n", line);
}

static int pty_no_reader(int *slave)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0 || grantpt(m) || unlockpt(m))
		die("pty");
	struct termios t;
	if (tcgetattr(m, &t) == 0) {
		cfmakeraw(&t);
		tcsetattr(m, TCSANOW, &t);
	}
	if (fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK) < 0)
		die("fcntl");
	*slave = open(ptsname(m), O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*slave < 0)
		die("pty slave");
	return m;
}

static double run_console(bool giant, bool show)
{
	struct vdriver v;
	int slave, out = pty_no_reader(&slave);
	if (vd_init(&v, 32ULL << 20))
		die("vd_init");
	char err[256];
	struct virtio_dev *d = virtio_console_create(v.mem, out, err, sizeof(err));
	if (!d) {
		fprintf(stderr, "virtio-stop-latency: %s\n", err);
		exit(1);
	}
	v.d = d;
	if (d->ops->start(d))
		die("start");
	vd_setup(&v, d, 1ULL << VIRTIO_F_INDIRECT_DESC, 2, VIRTQ_MAX_SIZE);
	if (giant) {
		uint64_t big = vd_alloc(&v, CON_BIG, 4096);
		struct vd_buf bufs[255];
		for (unsigned i = 0; i < 255; i++)
			bufs[i] = (struct vd_buf){ big, CON_BIG, false };
		for (unsigned i = 0; i < VIRTQ_MAX_SIZE; i++)
			vd_add(&v, 1, bufs, 255, true);
	} else {
		uint64_t a = vd_alloc(&v, 512 << 10, 4096);
		char *x = malloc(512 << 10);
		memset(x, 'x', 512 << 10);
		vd_write(&v, a, x, 512 << 10);
		free(x);
		struct vd_buf b = { a, 512 << 10, false };
		vd_add(&v, 1, &b, 1, false);
	}
	vd_kick(&v, 1);
	usleep(300000);
	double ms = timed_stop(d, stop_cap_s);
	if (show) {
		static const char *const names[] = { "console_tx_bytes", "console_output_lost_chains",
						     "console_output_dropped_bytes",
						     "console_output_stalls", NULL };
		print_counters(d, names);
	}
	d->ops->destroy(d);
	vd_fini(&v);
	close(out);
	close(slave);
	return ms;
}

static uint64_t blk_counter(struct virtio_dev *d, const char *name)
{
	char buf[4096] = "";
	d->ops->counters(d, buf, sizeof(buf));
	size_t n = strlen(name);
	for (char *p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, name, n) && p[n] == ' ')
			return strtoull(p + n + 1, NULL, 10);
	return 0;
}

static double run_blk(enum blk_engine e, bool show)
{
	char path[] = "/dev/shm/stop-latency-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0 || ftruncate(fd, 5LL << 30))
		die("the sparse image");
	close(fd);
	struct vdriver v;
	if (vd_init(&v, 64ULL << 20))
		die("vd_init");
	struct blk_config cfg = { .path = path, .engine = e };
	char err[256];
	struct virtio_dev *d = virtio_blk_create(v.mem, &cfg, 0, err, sizeof(err));
	if (!d) {
		fprintf(stderr, "virtio-stop-latency: %s\n", err);
		exit(1);
	}
	v.d = d;
	if (d->ops->start(d))
		die("start");
	vd_setup(&v, d, ~0ULL, 1, VIRTQ_MAX_SIZE);
	uint64_t big = vd_alloc(&v, BLK_BUF, GMM_2M);
	struct vd_buf b[BLK_SEGS + 2];
	for (unsigned i = 0; i < VIRTQ_MAX_SIZE; i++) {
		uint64_t hdr = vd_alloc(&v, 16, 8), st = vd_alloc(&v, 1, 1);
		uint8_t h[16] = { 0 };   /* T_IN, sector 0 */
		vd_write(&v, hdr, h, sizeof(h));
		b[0] = (struct vd_buf){ hdr, 16, false };
		for (unsigned k = 0; k < BLK_SEGS; k++)
			b[k + 1] = (struct vd_buf){ big, BLK_BUF, true };
		b[BLK_SEGS + 1] = (struct vd_buf){ st, 1, true };
		vd_add(&v, 0, b, BLK_SEGS + 2, true);
	}
	vd_kick(&v, 0);
	for (int i = 0; i < 2000 && blk_counter(d, "inflight") < 4; i++)
		usleep(1000);
	usleep(300000);
	uint64_t inflight = blk_counter(d, "inflight");
	double ms = timed_stop(d, stop_cap_s);
	if (show) {
		printf("  inflight at stop %llu\n", (unsigned long long)inflight);
		static const char *const names[] = { "requests_read", "bytes_read", "cancelled_at_stop",
						     "inflight", NULL };
		print_counters(d, names);
	}
	d->ops->destroy(d);
	vd_fini(&v);
	unlink(path);
	return ms;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int runs = 5;
	const char *mode = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--runs") && i + 1 < argc)
			runs = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--cap") && i + 1 < argc)
			stop_cap_s = atoi(argv[++i]);
		else if (!mode && argv[i][0] != '-')
			mode = argv[i];
		else
			mode = NULL, i = argc;
	}
	if (!mode || runs < 1 || runs > 99 || stop_cap_s < 1) {
		fprintf(stderr, "usage: virtio-stop-latency console-512k|console-giant|"
				"blk-full-io_uring|blk-full-threads [--runs N] [--cap SECONDS]\n");
		return 2;
	}
	double ms[99];
	printf("%s: stop latency, %d run%s (cap %d s)\n", mode, runs, runs > 1 ? "s" : "",
	       stop_cap_s);
	for (int r = 0; r < runs; r++) {
		fflush(stdout);
		if (!strcmp(mode, "console-512k"))
			ms[r] = run_console(false, r == 0);
		else if (!strcmp(mode, "console-giant"))
			ms[r] = run_console(true, r == 0);
		else if (!strcmp(mode, "blk-full-io_uring"))
			ms[r] = run_blk(BLK_ENGINE_IO_URING, r == 0);
		else if (!strcmp(mode, "blk-full-threads"))
			ms[r] = run_blk(BLK_ENGINE_THREADS, r == 0);
		else {
			fprintf(stderr, "virtio-stop-latency: unknown mode %s\n", mode);
			return 2;
		}
		printf("  run %d: %.1f ms\n", r + 1, ms[r]);
	}
	qsort(ms, (size_t)runs, sizeof(ms[0]), cmp);
	printf("%s: median of %d: %.1f ms (min %.1f, max %.1f)\n", mode, runs, ms[runs / 2], ms[0],
	       ms[runs - 1]);
	return 0;
}
