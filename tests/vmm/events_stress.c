// SPDX-License-Identifier: GPL-2.0-only
/*
 * events_stress.c - the event monitor (vmm/core/events.c) under concurrent
 * producers, for TSan (Criterion's arena finds no room in TSan's address
 * space, so this is a plain program; test_events.c has the unit tests).
 *
 * Each of ROUNDS rounds opens a monitor on a pipe (fd=N), starts PRODUCERS
 * threads that emit EMITS events each as fast as they can while a reader
 * thread drains the pipe slowly (a short sleep between reads, so the queue
 * fills and drops happen), then closes the monitor with a bound and checks
 * the accounting: queued + dropped-when-full == emitted, written + dropped
 * == emitted, and the bytes read are exactly `written` whole events.
 * Exit 0 when every round checks out, 1 otherwise (the line says why).
 */
#include "core/events.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ROUNDS 5
#define PRODUCERS 4
#define EMITS 5000

static void *producer(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < EMITS; i++)
		events_emit("vm", (i & 1) ? "paused" : "resumed");
	return NULL;
}

struct reader {
	int fd;
	size_t bytes, lines;
};

/* Read until EOF (the monitor closed its end), slowly; bounded by poll's
 * 10 s timeout per read. */
static void *reader(void *arg)
{
	struct reader *r = arg;
	char buf[4096];
	for (;;) {
		struct pollfd p = { .fd = r->fd, .events = POLLIN };
		if (poll(&p, 1, 10000) <= 0)
			break;
		ssize_t n = read(r->fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		r->bytes += (size_t)n;
		for (ssize_t i = 0; i < n; i++)
			r->lines += buf[i] == '\n';
		usleep(200);
	}
	return NULL;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	int bad = 0;
	for (unsigned round = 0; round < ROUNDS; round++) {
		int p[2];
		if (pipe(p) < 0) {
			perror("pipe");
			return 1;
		}
		int wfd = fcntl(p[1], F_DUPFD_CLOEXEC, 10);
		close(p[1]);
		char spec[32], err[256];
		snprintf(spec, sizeof(spec), "fd=%d", wfd);
		if (events_open(spec, err, sizeof(err)) < 0) {
			printf("events_stress: events_open: %s\n", err);
			return 1;
		}
		struct reader rd = { .fd = p[0] };
		pthread_t rt, pt[PRODUCERS];
		pthread_create(&rt, NULL, reader, &rd);
		for (unsigned i = 0; i < PRODUCERS; i++)
			pthread_create(&pt[i], NULL, producer, NULL);
		for (unsigned i = 0; i < PRODUCERS; i++)
			pthread_join(pt[i], NULL);
		events_close(2000);
		pthread_join(rt, NULL);
		close(p[0]);
		struct events_stats st;
		events_get_stats(&st);
		unsigned long long total = (unsigned long long)PRODUCERS * EMITS;
		bool ok = st.written + st.dropped == total && st.queued <= total &&
			  rd.lines == st.written && rd.bytes > 0;
		printf("events_stress: round %u: %llu emitted by %d threads, %llu queued, %llu written, "
		       "%llu dropped; the reader got %zu events (%zu bytes): %s\n", round, total,
		       PRODUCERS, (unsigned long long)st.queued, (unsigned long long)st.written,
		       (unsigned long long)st.dropped, rd.lines, rd.bytes, ok ? "ok" : "FAIL");
		bad |= !ok;
	}
	return bad;
}
