// SPDX-License-Identifier: GPL-2.0-only
/*
 * events.c - the event monitor (events.h): a bounded queue filled by
 * events_emit() and a writer thread that drains it into the target.
 *
 * Design.  Producers (the main thread today: machine.c, run.c) take the
 * queue's mutex for a push -- a constant-time critical section, never held
 * across I/O -- and poke the writer through an eventfd (a non-blocking
 * write of 1, which cannot block: the counter is reset by every wake-up).
 * The writer thread polls that eventfd and, once open, the target's fd:
 * POLLERR on a FIFO/pipe's write end says its last reader closed.  It pops
 * one event, formats it (~100 bytes) and writes it with the fd in
 * O_NONBLOCK: a pipe write of at most PIPE_BUF bytes is all or nothing, so a
 * reader never sees half an object; EAGAIN (the reader is slow) waits in
 * poll(POLLOUT) for at most 100 ms at a time, re-checking the flush
 * deadline; EPIPE/POLLERR marks the reader gone (later events are dropped
 * and counted) and signals events_hangup_fd().  Every signal but SIGSYS is
 * blocked on the writer thread: the VMM's signals are the main thread's (a
 * signalfd), and a vanished reader is an EPIPE even where the process does
 * not ignore SIGPIPE (the unit tests).
 *
 * libvirt 11.3 also tears a domain down without closing the reader for
 * us to see: its event thread sits in read() on the FIFO, which keeps the
 * FIFO open after libvirt closed that fd, and what it does instead is
 * unlink the FIFO (and the API socket).  So while idle on a FIFO opened by
 * path, the writer looks every UNLINK_CHECK_MS at the FIFO's link count: 0
 * (removed) counts as the reader gone, like POLLERR.
 *
 * A FIFO without a reader cannot be opened O_WRONLY|O_NONBLOCK (ENXIO),
 * and a blocking open would wait for ever: the writer retries every 10 ms
 * for up to VMM_EVENT_OPEN_MS, then gives up (logged, events dropped).
 *
 * Closing sets a deadline; every wait of the writer is bounded by it and
 * what is still queued past it is dropped, so events_close() returns within
 * about flush_ms + 100 ms whatever the reader does.
 *
 * Memory ordering: every shared field is under `lock`, but for the
 * statistics, which are read under it too.  The eventfds are written
 * without it (their counters are the kernel's).
 */
#include "core/events.h"
#include "core/log.h"
#include "core/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OPEN_RETRY_MS 10
#define WRITE_WAIT_MS 100
#define OPEN_DEFAULT_MS 30000
#define UNLINK_CHECK_MS 100

struct event {
	uint64_t t_ns;            /* since events_open */
	const char *source, *event;
};

static struct {
	pthread_mutex_t lock;
	bool running;             /* a monitor is open (thread started) */
	bool closing;
	uint64_t deadline_ns;     /* CLOCK_MONOTONIC, when closing */
	struct event q[EVENTS_QUEUE_LEN];
	unsigned head, count;
	struct events_stats st;
	/* Set by events_open, read-only while the thread runs. */
	pthread_t thread;
	int wake_fd, hangup_fd;
	int fd;                   /* the target, -1 until opened (writer thread's) */
	bool fifo;                /* the target is a FIFO or pipe: POLLERR/EPIPE is the reader gone */
	char *path;               /* a FIFO the writer opens, else NULL */
	uint64_t t0_ns;
	uint64_t open_ms;
} ev = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake_fd = -1, .hangup_fd = -1, .fd = -1 };

static struct ratelimit drop_rl;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool simple_word(const char *s)
{
	if (!s || !*s || strlen(s) > 32)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || *s == '_' || *s == '-'))
			return false;
	return true;
}

/* Format one event; its length. */
static int format_event(const struct event *e, char *buf, size_t len)
{
	return snprintf(buf, len,
			"{\"timestamp\":{\"secs\":%llu,\"nanos\":%u},\"source\":\"%s\","
			"\"event\":\"%s\",\"properties\":null}\n",
			(unsigned long long)(e->t_ns / 1000000000u), (unsigned)(e->t_ns % 1000000000u),
			e->source, e->event);
}

/* Under lock: drop everything queued. */
static void drop_all_locked(void)
{
	ev.st.dropped += ev.count;
	ev.head = (ev.head + ev.count) % EVENTS_QUEUE_LEN;
	ev.count = 0;
}

static void signal_fd(int fd)
{
	uint64_t one = 1;
	if (write(fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is near overflow, i.e. already signalled. */
	}
}

static void reader_gone(const char *why)
{
	pthread_mutex_lock(&ev.lock);
	bool first = !ev.st.reader_gone;
	ev.st.reader_gone = true;
	drop_all_locked();
	pthread_mutex_unlock(&ev.lock);
	if (first) {
		log_msg(LOG_INFO, "event monitor: %s: later events are dropped", why);
		signal_fd(ev.hangup_fd);
	}
}

/* The remaining wait before the flush deadline in ms (-1: not closing),
 * capped at cap_ms (cap_ms < 0: no cap). Under lock. */
static int wait_ms_locked(int cap_ms)
{
	if (!ev.closing)
		return cap_ms;
	uint64_t now = now_ns();
	if (now >= ev.deadline_ns)
		return 0;
	uint64_t left = (ev.deadline_ns - now + 999999) / 1000000;
	return cap_ms >= 0 && (uint64_t)cap_ms < left ? cap_ms : (int)left;
}

static bool past_deadline_locked(void)
{
	return ev.closing && now_ns() >= ev.deadline_ns;
}

/* Try to open the FIFO once: 1 opened, 0 no reader yet, -1 failed. */
static int try_open_fifo(void)
{
	int fd = open(ev.path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd >= 0) {
		struct stat sb;
		if (fstat(fd, &sb) < 0 || !S_ISFIFO(sb.st_mode)) {
			log_msg(LOG_WARN, "event monitor: %s is no longer a FIFO: not used", ev.path);
			close(fd);
			return -1;
		}
		ev.fd = fd;
		return 1;
	}
	if (errno == ENXIO || errno == EINTR)
		return 0;
	log_msg(LOG_WARN, "event monitor: cannot open %s: %s", ev.path, strerror(errno));
	return -1;
}

/* Write buf whole (a pipe write of <= PIPE_BUF is atomic), waiting for room
 * at most until the flush deadline.  0 written, -1 not (reason handled). */
static int write_event(const char *buf, size_t len)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(ev.fd, buf + off, len - off);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EPIPE) {
			reader_gone("the reader closed the FIFO");
			return -1;
		}
		if (n < 0 && errno != EAGAIN) {
			reader_gone(strerror(errno));
			return -1;
		}
		/* Full: wait for room, bounded, re-checking the deadline. */
		pthread_mutex_lock(&ev.lock);
		int ms = wait_ms_locked(WRITE_WAIT_MS);
		bool late = past_deadline_locked();
		pthread_mutex_unlock(&ev.lock);
		if (late)
			return -1;
		struct pollfd p = { .fd = ev.fd, .events = POLLOUT };
		if (poll(&p, 1, ms) > 0 && (p.revents & (POLLERR | POLLHUP | POLLNVAL)) && ev.fifo) {
			reader_gone("the reader closed the FIFO");
			return -1;
		}
	}
	return 0;
}

static void *writer(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "events");
	sandbox_enter(SANDBOX_EVENTS);

	uint64_t open_deadline = ev.t0_ns + ev.open_ms * 1000000u;
	bool gave_up = false;
	char buf[256];
	for (;;) {
		/* A FIFO is opened here, in the background. */
		if (ev.fd < 0 && !gave_up) {
			int r = try_open_fifo();
			if (r < 0 || (r == 0 && now_ns() >= open_deadline)) {
				if (r == 0)
					log_msg(LOG_WARN, "event monitor: no reader opened %s within %llu ms: "
						"events are dropped", ev.path, (unsigned long long)ev.open_ms);
				gave_up = true;
			} else if (r > 0) {
				pthread_mutex_lock(&ev.lock);
				ev.st.opened = true;
				pthread_mutex_unlock(&ev.lock);
			}
		}
		pthread_mutex_lock(&ev.lock);
		bool no_target = ev.fd < 0 && gave_up;
		if (no_target || ev.st.reader_gone || past_deadline_locked())
			drop_all_locked();
		if (ev.count && ev.fd >= 0) {
			struct event e = ev.q[ev.head];
			ev.head = (ev.head + 1) % EVENTS_QUEUE_LEN;
			ev.count--;
			pthread_mutex_unlock(&ev.lock);
			int len = format_event(&e, buf, sizeof(buf));
			int r = write_event(buf, (size_t)len);
			pthread_mutex_lock(&ev.lock);
			if (r == 0)
				ev.st.written++;
			else
				ev.st.dropped++;
			pthread_mutex_unlock(&ev.lock);
			continue;
		}
		if (ev.closing && (ev.count == 0 || past_deadline_locked())) {
			drop_all_locked();
			pthread_mutex_unlock(&ev.lock);
			break;
		}
		/* Wait: for an event, the close, the reader going away, or the
		 * next open attempt. */
		bool watch = ev.fd >= 0 && ev.fifo && ev.path && !ev.st.reader_gone;
		int ms = wait_ms_locked(ev.fd < 0 && !gave_up ? OPEN_RETRY_MS :
					watch ? UNLINK_CHECK_MS : -1);
		pthread_mutex_unlock(&ev.lock);
		struct pollfd p[2] = { { .fd = ev.wake_fd, .events = POLLIN } };
		nfds_t n = 1;
		if (ev.fd >= 0 && ev.fifo && !ev.st.reader_gone)
			p[n++] = (struct pollfd){ .fd = ev.fd, .events = 0 };
		if (poll(p, n, ms) > 0) {
			uint64_t v;
			if ((p[0].revents & POLLIN) && read(ev.wake_fd, &v, sizeof(v)) < 0) {
				/* EAGAIN: another wake-up took it */
			}
			if (n > 1 && (p[1].revents & (POLLERR | POLLHUP)))
				reader_gone("the reader closed the FIFO");
		}
		struct stat sb;
		if (watch && fstat(ev.fd, &sb) == 0 && sb.st_nlink == 0)
			reader_gone("the FIFO was removed");
	}
	return NULL;
}

static int fail(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
	snprintf(err, errlen, fmt, a, b);
	return -1;
}

int events_open(const char *spec, char *err, size_t errlen)
{
	if (ev.running)
		return fail(err, errlen, "--event-monitor: %s%sgiven twice", "", "");
	int fd = -1;
	bool fifo = false;
	char *path = NULL;
	if (!strncmp(spec, "fd=", 3)) {
		char *end;
		errno = 0;
		long v = strtol(spec + 3, &end, 10);
		if (errno || end == spec + 3 || *end || v <= 2 || v > 1 << 20)
			return fail(err, errlen, "--event-monitor: fd '%s' is not a file descriptor above 2%s",
				    spec + 3, "");
		int fl = fcntl((int)v, F_GETFL);
		if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY)
			return fail(err, errlen, "--event-monitor: fd %s is not open for writing%s",
				    spec + 3, "");
		struct stat sb;
		if (fstat((int)v, &sb) < 0)
			return fail(err, errlen, "--event-monitor: fd %s: %s", spec + 3, strerror(errno));
		fd = (int)v;
		fifo = S_ISFIFO(sb.st_mode);
		if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
			return fail(err, errlen, "--event-monitor: fd %s: %s", spec + 3, strerror(errno));
	} else if (!strncmp(spec, "path=", 5) && spec[5]) {
		const char *p = spec + 5;
		struct stat sb;
		if (stat(p, &sb) == 0 && S_ISFIFO(sb.st_mode)) {
			fifo = true;
			if (!(path = strdup(p)))
				return fail(err, errlen, "out of memory%s%s", "", "");
		} else if (stat(p, &sb) == 0 && !S_ISREG(sb.st_mode)) {
			return fail(err, errlen, "--event-monitor: %s is neither a FIFO nor a regular file%s",
				    p, "");
		} else {
			fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK | O_CLOEXEC, 0600);
			if (fd < 0)
				return fail(err, errlen, "--event-monitor: cannot open %s: %s", p,
					    strerror(errno));
		}
	} else {
		return fail(err, errlen, "--event-monitor: '%s' is not path=PATH or fd=N%s", spec, "");
	}
	uint64_t open_ms = OPEN_DEFAULT_MS;
	const char *env = getenv("VMM_EVENT_OPEN_MS");
	if (env) {
		char *end;
		unsigned long long v = strtoull(env, &end, 10);
		if (end != env && !*end && v <= 3600000)
			open_ms = v;
	}
	int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int hang = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (wake < 0 || hang < 0) {
		snprintf(err, errlen, "--event-monitor: eventfd: %s", strerror(errno));
		goto fail_fds;
	}
	pthread_mutex_lock(&ev.lock);
	ev.closing = false;
	ev.head = ev.count = 0;
	memset(&ev.st, 0, sizeof(ev.st));
	ev.st.opened = fd >= 0;
	ev.wake_fd = wake;
	ev.hangup_fd = hang;
	ev.fd = fd;
	ev.fifo = fifo;
	ev.path = path;
	ev.t0_ns = now_ns();
	ev.open_ms = open_ms;
	ev.running = true;
	pthread_mutex_unlock(&ev.lock);
	/* The writer starts with every signal blocked (sandbox_enter unblocks
	 * SIGSYS): it may be created before the main thread blocks the signals
	 * it serves through its signalfd, and a SIGTERM delivered to it would
	 * kill the VMM; SIGPIPE blocked makes a vanished reader an EPIPE. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&ev.thread, NULL, writer, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		snprintf(err, errlen, "--event-monitor: cannot start its thread: %s", strerror(rc));
		pthread_mutex_lock(&ev.lock);
		ev.running = false;
		ev.wake_fd = ev.hangup_fd = ev.fd = -1;
		ev.path = NULL;
		pthread_mutex_unlock(&ev.lock);
		goto fail_fds;
	}
	return 0;
fail_fds:
	if (wake >= 0)
		close(wake);
	if (hang >= 0)
		close(hang);
	if (fd > 2)
		close(fd);
	free(path);
	return -1;
}

void events_emit(const char *source, const char *event)
{
	uint64_t t = now_ns();
	pthread_mutex_lock(&ev.lock);
	if (!ev.running || ev.closing) {
		pthread_mutex_unlock(&ev.lock);
		return;
	}
	if (!simple_word(source) || !simple_word(event)) {
		ev.st.dropped++;
		pthread_mutex_unlock(&ev.lock);
		log_ratelimited(&drop_rl, LOG_WARN, "event monitor: a malformed event was dropped");
		return;
	}
	if (ev.count == EVENTS_QUEUE_LEN || ev.st.reader_gone) {
		bool full = !ev.st.reader_gone;
		uint64_t dropped = ++ev.st.dropped;
		pthread_mutex_unlock(&ev.lock);
		if (full)
			log_ratelimited(&drop_rl, LOG_WARN, "event monitor: the reader is not keeping up: "
					"%s %s dropped (%llu dropped so far)", source, event,
					(unsigned long long)dropped);
		return;
	}
	ev.q[(ev.head + ev.count) % EVENTS_QUEUE_LEN] =
		(struct event){ .t_ns = t - ev.t0_ns, .source = source, .event = event };
	ev.count++;
	ev.st.queued++;
	int wake = ev.wake_fd;
	pthread_mutex_unlock(&ev.lock);
	signal_fd(wake);
}

int events_hangup_fd(void)
{
	pthread_mutex_lock(&ev.lock);
	int fd = ev.running ? ev.hangup_fd : -1;
	pthread_mutex_unlock(&ev.lock);
	return fd;
}

void events_close(unsigned flush_ms)
{
	pthread_mutex_lock(&ev.lock);
	if (!ev.running) {
		pthread_mutex_unlock(&ev.lock);
		return;
	}
	ev.closing = true;
	ev.deadline_ns = now_ns() + (uint64_t)flush_ms * 1000000u;
	pthread_mutex_unlock(&ev.lock);
	signal_fd(ev.wake_fd);
	pthread_join(ev.thread, NULL);
	pthread_mutex_lock(&ev.lock);
	if (ev.st.dropped)
		log_msg(LOG_INFO, "event monitor: %llu event%s written, %llu dropped",
			(unsigned long long)ev.st.written, ev.st.written == 1 ? "" : "s",
			(unsigned long long)ev.st.dropped);
	if (ev.fd >= 0)
		close(ev.fd);
	close(ev.wake_fd);
	close(ev.hangup_fd);
	free(ev.path);
	ev.fd = ev.wake_fd = ev.hangup_fd = -1;
	ev.path = NULL;
	ev.running = false;
	pthread_mutex_unlock(&ev.lock);
}

void events_get_stats(struct events_stats *out)
{
	pthread_mutex_lock(&ev.lock);
	*out = ev.st;
	pthread_mutex_unlock(&ev.lock);
}
