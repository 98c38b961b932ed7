// SPDX-License-Identifier: GPL-2.0-only
/*
 * test_events.c - the event monitor's writer (vmm/core/events.c), no VMM:
 *   - the format and the order of what it writes, to a regular file and to
 *     a FIFO as libvirt 11.3 reads it;
 *   - a FIFO without a reader when the monitor opens (libvirt creates the
 *     FIFO, starts the VMM and only then opens its end): events_open does
 *     not wait, the events queued meanwhile arrive once a reader comes;
 *   - nobody ever opens the FIFO: events_close still returns, all dropped;
 *   - a reader that never reads (a full pipe): events_emit never blocks,
 *     what does not fit is dropped and counted, events_close honours its
 *     bound;
 *   - a reader that goes away: the hang-up fd becomes readable, later
 *     events are dropped;
 *   - bad specs refused with a reason.
 * Every wait is bounded (poll timeouts, Criterion's timeout); no assertion
 * depends on the machine's speed.  In the concurrency suite too (TSan).
 */
#include "core/events.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char dir[64];

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "/tmp/test_events.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(events, .init = setup, .fini = teardown, .timeout = 60);

static uint64_t ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Read from fd until EOF or timeout_ms; the bytes, NUL-terminated. */
static char *read_all(int fd, int timeout_ms, size_t *len)
{
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap + 1);
	cr_assert_not_null(buf);
	uint64_t end = ms_now() + (uint64_t)timeout_ms;
	for (;;) {
		uint64_t now = ms_now();
		if (now >= end)
			break;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, (int)(end - now)) <= 0)
			break;
		if (n == cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
			cr_assert_not_null(buf);
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	buf[n] = 0;
	if (len)
		*len = n;
	return buf;
}

static const char *names[] = { "booting", "booted", "pausing", "paused", "resuming", "resumed",
			       "shutdown", "deleted" };
#define NNAMES (sizeof(names) / sizeof(names[0]))

/* Check that text is exactly `count` events from source "vm" with
 * non-decreasing timestamps, the i-th named names[i % NNAMES] when strict
 * (else each one of names[]: some were dropped in between). */
static void check_events(const char *text, unsigned count, bool strict)
{
	const char *p = text;
	unsigned long long last = 0;
	for (unsigned i = 0; i < count; i++) {
		unsigned long long secs;
		unsigned nanos;
		char source[16], event[16];
		int used = 0;
		int k = sscanf(p, "{\"timestamp\":{\"secs\":%llu,\"nanos\":%u},\"source\":\"%15[a-z]\","
			       "\"event\":\"%15[a-z]\",\"properties\":null}\n%n",
			       &secs, &nanos, source, event, &used);
		cr_assert_eq(k, 4, "event %u does not parse: '%.120s'", i, p);
		cr_assert_gt(used, 0, "event %u: no newline after it: '%.120s'", i, p);
		cr_assert_lt(nanos, 1000000000u);
		cr_assert_str_eq(source, "vm");
		if (strict)
			cr_assert_str_eq(event, names[i % NNAMES], "event %u is %s, expected %s", i,
					 event, names[i % NNAMES]);
		bool known = false;
		for (unsigned k = 0; k < NNAMES; k++)
			known |= !strcmp(event, names[k]);
		cr_assert(known, "event %u: unknown name %s", i, event);
		unsigned long long t = secs * 1000000000ull + nanos;
		cr_assert_geq(t, last, "event %u: time went backwards", i);
		last = t;
		p += used;
	}
	cr_assert_eq(*p, 0, "more than %u events: '%.120s'", count, p);
}

Test(events, regular_file_in_order)
{
	char path[128], spec[140], err[256];
	snprintf(path, sizeof(path), "%s/events.json", dir);
	snprintf(spec, sizeof(spec), "path=%s", path);
	cr_assert_eq(events_open(spec, err, sizeof(err)), 0, "%s", err);
	for (unsigned i = 0; i < 200; i++)
		events_emit("vm", names[i % NNAMES]);
	events_close(5000);
	struct events_stats st;
	events_get_stats(&st);
	cr_assert_eq(st.queued, 200);
	cr_assert_eq(st.written, 200);
	cr_assert_eq(st.dropped, 0);
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	char *text = read_all(fd, 1000, NULL);
	close(fd);
	check_events(text, 200, true);
	free(text);
	struct stat sb;
	cr_assert_eq(stat(path, &sb), 0);
	cr_assert_eq(sb.st_mode & 0777, 0600);
}

/* libvirt 11.3's order: mkfifo, start the VMM, then open(O_RDONLY). */
Test(events, fifo_without_reader_at_open)
{
	char path[128], spec[140], err[256];
	snprintf(path, sizeof(path), "%s/fifo", dir);
	cr_assert_eq(mkfifo(path, 0600), 0);
	snprintf(spec, sizeof(spec), "path=%s", path);
	uint64_t t0 = ms_now();
	cr_assert_eq(events_open(spec, err, sizeof(err)), 0, "%s", err);
	for (unsigned i = 0; i < 3; i++)
		events_emit("vm", names[i]);
	uint64_t t1 = ms_now();
	printf("events_open + 3 emits without a reader: %llu ms\n", (unsigned long long)(t1 - t0));
	struct events_stats st;
	events_get_stats(&st);
	cr_assert(!st.opened, "opened a FIFO nobody reads");
	usleep(100 * 1000);
	/* The reader comes: blocking open, as libvirt's; the writer's retry
	 * (every 10 ms) completes it. */
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	for (unsigned i = 3; i < 16; i++)
		events_emit("vm", names[i % NNAMES]);
	events_close(5000);
	char *text = read_all(fd, 5000, NULL);   /* EOF once the writer closed */
	close(fd);
	check_events(text, 16, true);
	free(text);
	events_get_stats(&st);
	cr_assert(st.opened);
	cr_assert_eq(st.written, 16);
}

Test(events, fifo_nobody_opens)
{
	char path[128], spec[140], err[256];
	snprintf(path, sizeof(path), "%s/fifo", dir);
	cr_assert_eq(mkfifo(path, 0600), 0);
	snprintf(spec, sizeof(spec), "path=%s", path);
	setenv("VMM_EVENT_OPEN_MS", "200", 1);
	cr_assert_eq(events_open(spec, err, sizeof(err)), 0, "%s", err);
	unsetenv("VMM_EVENT_OPEN_MS");
	events_emit("vmm", "starting");
	usleep(400 * 1000);
	events_emit("vmm", "shutdown");
	uint64_t t0 = ms_now();
	events_close(300);
	uint64_t ms = ms_now() - t0;
	printf("events_close(300) with no reader ever: %llu ms\n", (unsigned long long)ms);
	struct events_stats st;
	events_get_stats(&st);
	cr_assert(!st.opened);
	cr_assert_eq(st.written, 0);
	cr_assert_eq(st.dropped, 2, "dropped %llu", (unsigned long long)st.dropped);
}

/* A reader that holds the pipe open and never reads. */
Test(events, reader_never_reads)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	int wfd = fcntl(p[1], F_DUPFD, 10);
	cr_assert_gt(wfd, 2);
	close(p[1]);
	char spec[32], err[256];
	snprintf(spec, sizeof(spec), "fd=%d", wfd);
	cr_assert_eq(events_open(spec, err, sizeof(err)), 0, "%s", err);
	const unsigned total = 20000;   /* ~2 MB: 30 times a pipe's 64 KiB */
	uint64_t t0 = ms_now(), worst = 0;
	for (unsigned i = 0; i < total; i++) {
		uint64_t a = ms_now();
		events_emit("vm", names[i % NNAMES]);
		uint64_t d = ms_now() - a;
		worst = d > worst ? d : worst;
	}
	uint64_t emit_ms = ms_now() - t0;
	t0 = ms_now();
	events_close(200);
	uint64_t close_ms = ms_now() - t0;
	struct events_stats st;
	events_get_stats(&st);
	printf("%u emits into a pipe nobody reads: %llu ms (slowest %llu ms); close(200): %llu ms; "
	       "written %llu, dropped %llu\n", total, (unsigned long long)emit_ms,
	       (unsigned long long)worst, (unsigned long long)close_ms,
	       (unsigned long long)st.written, (unsigned long long)st.dropped);
	cr_assert_gt(st.dropped, 0, "nothing dropped: the pipe took 2 MB?");
	cr_assert_eq(st.written + st.dropped, total, "written %llu + dropped %llu != %u",
		     (unsigned long long)st.written, (unsigned long long)st.dropped, total);
	/* What was written is whole events, in order, all in the pipe. */
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	char *text = read_all(p[0], 1000, NULL);
	close(p[0]);
	check_events(text, (unsigned)st.written, false);
	free(text);
}

Test(events, reader_goes_away)
{
	char path[128], spec[140], err[256];
	snprintf(path, sizeof(path), "%s/fifo", dir);
	cr_assert_eq(mkfifo(path, 0600), 0);
	snprintf(spec, sizeof(spec), "path=%s", path);
	int rfd = open(path, O_RDONLY | O_NONBLOCK);   /* the reader is there first */
	cr_assert_geq(rfd, 0);
	cr_assert_eq(events_open(spec, err, sizeof(err)), 0, "%s", err);
	events_emit("vmm", "starting");
	char *text = NULL;
	for (unsigned i = 0; i < 100 && (!text || !*text); i++) {   /* up to ~5 s */
		free(text);
		text = read_all(rfd, 50, NULL);
	}
	cr_assert(strstr(text, "\"event\":\"starting\""), "got '%s'", text);
	free(text);
	int hfd = events_hangup_fd();
	cr_assert_geq(hfd, 0);
	struct pollfd p = { .fd = hfd, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 0), 0, "hang-up signalled with the reader still there");
	close(rfd);
	cr_assert_eq(poll(&p, 1, 10000), 1, "no hang-up within 10 s of the reader closing");
	events_emit("vm", "shutdown");
	events_close(1000);
	struct events_stats st;
	events_get_stats(&st);
	cr_assert(st.reader_gone);
	cr_assert_eq(st.written, 1);
	cr_assert_eq(st.dropped, 1);
}

Test(events, bad_specs)
{
	char err[256], spec[160];
	const char *bad[] = { "", "foo", "path=", "fd=", "fd=1", "fd=2", "fd=abc", "fd=12x",
			      "fd=999999", "path=/", "fd=-3" };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		cr_assert_eq(events_open(bad[i], err, sizeof(err)), -1, "'%s' accepted", bad[i]);
		cr_assert(strstr(err, "--event-monitor"), "'%s': reason '%s'", bad[i], err);
	}
	/* A read-only fd is no target. */
	int fd = open("/dev/null", O_RDONLY);
	int hi = fcntl(fd, F_DUPFD, 10);
	close(fd);
	snprintf(spec, sizeof(spec), "fd=%d", hi);
	cr_assert_eq(events_open(spec, err, sizeof(err)), -1);
	cr_assert(strstr(err, "not open for writing"), "%s", err);
	close(hi);
	/* A directory that does not exist. */
	snprintf(spec, sizeof(spec), "path=%s/no/such/dir/f", dir);
	cr_assert_eq(events_open(spec, err, sizeof(err)), -1);
	cr_assert(strstr(err, "cannot open"), "%s", err);
	/* Without a monitor: emits are no-ops, close too. */
	events_emit("vm", "booting");
	events_close(0);
	cr_assert_eq(events_hangup_fd(), -1);
}

Test(events, malformed_names_dropped)
{
	char path[128], spec[140], err[256];
	snprintf(path, sizeof(path), "%s/e.json", dir);
	snprintf(spec, sizeof(spec), "path=%s", path);
	cr_assert_eq(events_open(spec, err, sizeof(err)), 0, "%s", err);
	events_emit("vm", "bad\"name");
	events_emit("VM", "booting");
	events_emit("vm", "booting");
	events_close(1000);
	struct events_stats st;
	events_get_stats(&st);
	cr_assert_eq(st.written, 1);
	cr_assert_eq(st.dropped, 2);
}

/* libvirt 11.3's destroy: its reader stays blocked in read() (the FIFO
 * stays open), it unlinks the FIFO. */
Test(events, fifo_removed_with_reader_still_open)
{
	char path[128], spec[140], err[256];
	snprintf(path, sizeof(path), "%s/fifo", dir);
	cr_assert_eq(mkfifo(path, 0600), 0);
	snprintf(spec, sizeof(spec), "path=%s", path);
	int rfd = open(path, O_RDONLY | O_NONBLOCK);
	cr_assert_geq(rfd, 0);
	cr_assert_eq(events_open(spec, err, sizeof(err)), 0, "%s", err);
	events_emit("vm", "booted");
	int hfd = events_hangup_fd();
	struct pollfd p = { .fd = hfd, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 300), 0, "hang-up signalled with the FIFO still there");
	cr_assert_eq(unlink(path), 0);
	cr_assert_eq(poll(&p, 1, 10000), 1, "no hang-up within 10 s of the FIFO's removal");
	events_close(1000);
	close(rfd);
	struct events_stats st;
	events_get_stats(&st);
	cr_assert(st.reader_gone);
}
