// SPDX-License-Identifier: GPL-2.0-only
/*
 * proto.c - the migration wire protocol and its transport (the contract is
 * in proto.h).
 *
 * Every transfer is a loop of non-blocking calls (MSG_DONTWAIT, so the
 * fd's own mode does not matter) with a poll() between them when the
 * socket is not ready.  The poll waits at most STEP_MS at a time, so the
 * cancel flag is seen within that, and the deadline is "last progress +
 * timeout": each byte moved pushes it back, a silent peer runs into it.
 *
 * A header is read in two parts, 8 bytes (magic, version, cmd) then 16,
 * so that a stream that is not ours (an HTTP client, an older vmm) is
 * named at once instead of after a timeout.  fds ride on a header's first
 * bytes; recvmsg() collects every SCM_RIGHTS it is handed while the header
 * is read, payload reads use plain recv() (the kernel closes fds sent with
 * payload bytes: no control buffer, nothing installed).
 *
 * Every length from the peer is checked against its command's limit
 * before it is used to allocate or to read, and the memory table's sums
 * cannot overflow: each range ends below 2^52 and they do not overlap.
 */
#include "migration/proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define STEP_MS 100                     /* the longest single poll() */
#define UNIX_PATH_MAX_LEN (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/* ---- small helpers ------------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool cancelled(const _Atomic bool *cancel)
{
	return cancel && atomic_load(cancel);
}

static int effective_timeout(int ms)
{
	return ms > 0 ? ms : MIG_DEFAULT_TIMEOUT_MS;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

#define CONN_ERR(c, ...) set_err((c)->err, sizeof((c)->err), __VA_ARGS__)

/* "3 s" for whole seconds, "250 ms" otherwise. */
static const char *duration(char *buf, size_t n, int ms)
{
	if (ms % 1000 == 0)
		snprintf(buf, n, "%d s", ms / 1000);
	else
		snprintf(buf, n, "%d ms", ms);
	return buf;
}

/* Wait until fd has one of events, the deadline passes (-ETIMEDOUT) or
 * *cancel is set (-ECANCELED); polls in steps of at most STEP_MS.  0 when
 * ready (also on POLLERR/POLLHUP: the next call reports it) or -errno. */
static int wait_fd(int fd, short events, int64_t deadline, const _Atomic bool *cancel)
{
	for (;;) {
		if (cancelled(cancel))
			return -ECANCELED;
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = { .fd = fd, .events = events };
		int n = poll(&p, 1, left < STEP_MS ? (int)left : STEP_MS);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0)
			return (p.revents & POLLNVAL) ? -EBADF : 0;
	}
}

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
}

static bool is_unix_socket(int fd)
{
	int dom = 0;
	socklen_t l = sizeof(dom);
	return getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) == 0 && dom == AF_UNIX;
}

static void set_nodelay(int fd)
{
	int one = 1;
	if (!is_unix_socket(fd))
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static bool cmd_known(uint16_t cmd)
{
	return (cmd >= MIG_START && cmd <= MIG_MEMORY_FD) || cmd == MIG_OK || cmd == MIG_ERROR;
}

const char *mig_cmd_name(uint16_t cmd)
{
	switch (cmd) {
	case MIG_START: return "MIG_START";
	case MIG_CONFIG: return "MIG_CONFIG";
	case MIG_STATE: return "MIG_STATE";
	case MIG_MEMORY: return "MIG_MEMORY";
	case MIG_COMPLETE: return "MIG_COMPLETE";
	case MIG_ABANDON: return "MIG_ABANDON";
	case MIG_MEMORY_FD: return "MIG_MEMORY_FD";
	case MIG_OK: return "MIG_OK";
	case MIG_ERROR: return "MIG_ERROR";
	default: return "unknown";
	}
}

/* ---- URLs ---------------------------------------------------------------- */

static int parse_port(const char *s, unsigned *port)
{
	size_t n = strlen(s);
	if (n == 0 || n > 5)
		return -1;
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return -1;
	*port = v;
	return 0;
}

static int parse_tcp(const char *url, const char *rest, struct mig_url *u, char *err,
		     size_t errlen)
{
	char host[64];
	const char *port_s;
	bool v6 = rest[0] == '[';
	if (v6) {
		const char *close_b = strchr(rest, ']');
		if (!close_b || close_b[1] != ':') {
			set_err(err, errlen, "migration URL \"%s\": an IPv6 address is written "
				"tcp:[ADDRESS]:PORT", url);
			return -1;
		}
		size_t hl = (size_t)(close_b - rest - 1);
		if (hl >= sizeof(host)) {
			set_err(err, errlen, "migration URL \"%s\": the host is too long", url);
			return -1;
		}
		memcpy(host, rest + 1, hl);
		host[hl] = '\0';
		port_s = close_b + 2;
	} else {
		const char *colon = strrchr(rest, ':');
		if (!colon) {
			set_err(err, errlen, "migration URL \"%s\": expected tcp:HOST:PORT", url);
			return -1;
		}
		size_t hl = (size_t)(colon - rest);
		if (hl >= sizeof(host)) {
			set_err(err, errlen, "migration URL \"%s\": the host is too long", url);
			return -1;
		}
		memcpy(host, rest, hl);
		host[hl] = '\0';
		if (strchr(host, ':')) {
			set_err(err, errlen, "migration URL \"%s\": an IPv6 address goes in brackets "
				"(tcp:[::1]:PORT)", url);
			return -1;
		}
		port_s = colon + 1;
	}
	unsigned port;
	if (parse_port(port_s, &port) < 0) {
		set_err(err, errlen, "migration URL \"%s\": the port \"%s\" is not a number "
			"1..65535", url, port_s);
		return -1;
	}

	memset(&u->addr, 0, sizeof(u->addr));
	char shown[INET6_ADDRSTRLEN];
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&u->addr;
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
			set_err(err, errlen, "migration URL \"%s\": \"%s\" is not a numeric IPv6 "
				"address", url, host);
			return -1;
		}
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		u->family = AF_INET6;
		u->addrlen = sizeof(*a);
		inet_ntop(AF_INET6, &a->sin6_addr, shown, sizeof(shown));
		snprintf(u->text, sizeof(u->text), "tcp:[%s]:%u", shown, port);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&u->addr;
		if (strcmp(host, "localhost") == 0) {
			a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		} else if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
			set_err(err, errlen, "migration URL \"%s\": the host \"%s\" is not a numeric "
				"IPv4 address, localhost or a bracketed IPv6 address", url, host);
			return -1;
		}
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		u->family = AF_INET;
		u->addrlen = sizeof(*a);
		inet_ntop(AF_INET, &a->sin_addr, shown, sizeof(shown));
		snprintf(u->text, sizeof(u->text), "tcp:%s:%u", shown, port);
	}
	return 0;
}

int mig_url_parse(const char *url, struct mig_url *u, char *err, size_t errlen)
{
	memset(u, 0, sizeof(*u));
	if (!url || !*url) {
		set_err(err, errlen, "empty migration URL: expected unix:/path or tcp:HOST:PORT");
		return -1;
	}
	if (strncmp(url, "unix:", 5) == 0) {
		const char *path = url + 5;
		size_t n = strlen(path);
		if (path[0] != '/') {
			set_err(err, errlen, "migration URL \"%s\": unix: takes an absolute path "
				"(unix:/path/to/socket)", url);
			return -1;
		}
		if (n > UNIX_PATH_MAX_LEN) {
			set_err(err, errlen, "migration URL: the socket path is %zu bytes, at most %zu "
				"fit in a unix socket address", n, UNIX_PATH_MAX_LEN);
			return -1;
		}
		struct sockaddr_un *a = (struct sockaddr_un *)&u->addr;
		a->sun_family = AF_UNIX;
		memcpy(a->sun_path, path, n + 1);
		u->family = AF_UNIX;
		u->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
		snprintf(u->text, sizeof(u->text), "unix:%s", path);
		return 0;
	}
	if (strncmp(url, "tcp:", 4) == 0) {
		if (parse_tcp(url, url + 4, u, err, errlen) < 0) {
			memset(u, 0, sizeof(*u));
			return -1;
		}
		return 0;
	}
	set_err(err, errlen, "migration URL \"%s\": expected unix:/path or tcp:HOST:PORT", url);
	return -1;
}

/* ---- sockets ------------------------------------------------------------- */

int mig_listen(const struct mig_url *u, char *err, size_t errlen)
{
	int fd = socket(u->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		set_err(err, errlen, "listen on %s: socket: %s", u->text, strerror(errno));
		return -1;
	}
	if (u->family == AF_UNIX) {
		const char *path = ((const struct sockaddr_un *)&u->addr)->sun_path;
		struct stat st;
		if (lstat(path, &st) == 0) {
			if (!S_ISSOCK(st.st_mode)) {
				set_err(err, errlen, "listen on %s: %s exists and is not a socket: "
					"refusing to replace it", u->text, path);
				goto fail;
			}
			if (unlink(path) < 0) {
				set_err(err, errlen, "listen on %s: removing the old socket: %s",
					u->text, strerror(errno));
				goto fail;
			}
		} else if (errno != ENOENT) {
			set_err(err, errlen, "listen on %s: %s", u->text, strerror(errno));
			goto fail;
		}
	} else {
		int one = 1;
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
			set_err(err, errlen, "listen on %s: SO_REUSEADDR: %s", u->text,
				strerror(errno));
			goto fail;
		}
	}
	if (bind(fd, (const struct sockaddr *)&u->addr, u->addrlen) < 0) {
		set_err(err, errlen, "listen on %s: bind: %s", u->text, strerror(errno));
		goto fail;
	}
	if (listen(fd, 4) < 0) {
		set_err(err, errlen, "listen on %s: %s", u->text, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

int mig_accept(int lfd, int timeout_ms, const _Atomic bool *cancel, char *err, size_t errlen)
{
	int tmo = effective_timeout(timeout_ms);
	int64_t deadline = now_ms() + tmo;
	char d[32];
	for (;;) {
		if (cancelled(cancel)) {
			set_err(err, errlen, "waiting for a migration connection: cancelled");
			return -1;
		}
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			set_nodelay(fd);
			return fd;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			set_err(err, errlen, "accept: %s", strerror(errno));
			return -1;
		}
		int rc = wait_fd(lfd, POLLIN, deadline, cancel);
		if (rc == -ETIMEDOUT) {
			set_err(err, errlen, "timed out after %s waiting for a migration connection",
				duration(d, sizeof(d), tmo));
			return -1;
		}
		if (rc == -ECANCELED) {
			set_err(err, errlen, "waiting for a migration connection: cancelled");
			return -1;
		}
		if (rc < 0) {
			set_err(err, errlen, "waiting for a migration connection: %s", strerror(-rc));
			return -1;
		}
	}
}

int mig_connect(struct mig_conn *c, const struct mig_url *u, int timeout_ms)
{
	int tmo = effective_timeout(timeout_ms);
	int64_t deadline = now_ms() + tmo;
	char d[32];
	c->fd = -1;
	c->sent = c->received = 0;
	c->fds_closed = 0;
	c->err[0] = '\0';
	int fd = socket(u->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		CONN_ERR(c, "connect to %s: socket: %s", u->text, strerror(errno));
		return -1;
	}
	for (;;) {
		if (cancelled(c->cancel)) {
			CONN_ERR(c, "connect to %s: cancelled", u->text);
			goto fail;
		}
		if (connect(fd, (const struct sockaddr *)&u->addr, u->addrlen) == 0)
			break;
		int rc;
		if (errno == EINTR) {
			continue;
		} else if (errno == EAGAIN) {
			/* unix: the listener's backlog is full; try again shortly. */
			struct timespec ts = { 0, 10 * 1000 * 1000 };
			nanosleep(&ts, NULL);
			rc = now_ms() >= deadline ? -ETIMEDOUT : 0;
			if (rc == 0)
				continue;
		} else if (errno == EINPROGRESS || errno == EALREADY) {
			rc = wait_fd(fd, POLLOUT, deadline, c->cancel);
			if (rc == 0) {
				int so = 0;
				socklen_t l = sizeof(so);
				if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &l) < 0)
					so = errno;
				if (so == 0)
					break;
				rc = -so;
			}
		} else if (errno == EISCONN) {
			break;
		} else {
			rc = -errno;
		}
		if (rc == -ETIMEDOUT)
			CONN_ERR(c, "connect to %s: timed out after %s", u->text,
				 duration(d, sizeof(d), tmo));
		else if (rc == -ECANCELED)
			CONN_ERR(c, "connect to %s: cancelled", u->text);
		else
			CONN_ERR(c, "connect to %s: %s", u->text, strerror(-rc));
		goto fail;
	}
	set_nodelay(fd);
	c->fd = fd;
	return 0;
fail:
	close(fd);
	return -1;
}

void mig_conn_close(struct mig_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* ---- bounded I/O --------------------------------------------------------- */

/* c->err for a failed transfer: rc is -errno (or -ETIMEDOUT / -ECANCELED
 * from wait_fd); what, if not NULL, says what was being moved. */
static int io_fail(struct mig_conn *c, int rc, const char *what)
{
	char reason[160];
	switch (rc) {
	case -ETIMEDOUT:
		snprintf(reason, sizeof(reason), "timed out: no progress for %d ms",
			 effective_timeout(c->timeout_ms));
		break;
	case -ECANCELED:
		snprintf(reason, sizeof(reason), "cancelled");
		break;
	case -EPIPE:
	case -ECONNRESET:
		snprintf(reason, sizeof(reason), "the peer closed the connection (%s)",
			 strerror(-rc));
		break;
	default:
		snprintf(reason, sizeof(reason), "%s", strerror(-rc));
	}
	if (what)
		CONN_ERR(c, "%s: %s", what, reason);
	else
		CONN_ERR(c, "%s", reason);
	return -1;
}

static int check_usable(struct mig_conn *c, const char *what)
{
	if (c->fd < 0)
		return io_fail(c, -ENOTCONN, what);
	if (cancelled(c->cancel))
		return io_fail(c, -ECANCELED, what);
	return 0;
}

/* Send every byte of iov[0..iovcnt); nfds fds ride on the first sendmsg
 * that moves a byte. */
static int send_iov(struct mig_conn *c, struct iovec *iov, int iovcnt, const int *fds,
		    unsigned nfds, const char *what)
{
	if (check_usable(c, what) < 0)
		return -1;
	union {
		char buf[CMSG_SPACE(sizeof(int) * MIG_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	int64_t last = now_ms();
	int tmo = effective_timeout(c->timeout_ms);
	bool fds_pending = nfds > 0;
	while (iovcnt > 0) {
		if (iov->iov_len == 0) {
			iov++;
			iovcnt--;
			continue;
		}
		struct msghdr m = {
			.msg_iov = iov,
			.msg_iovlen = (size_t)(iovcnt < IOV_MAX ? iovcnt : IOV_MAX),
		};
		if (fds_pending) {
			memset(&ctl, 0, sizeof(ctl));
			m.msg_control = ctl.buf;
			m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
		}
		ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return io_fail(c, -errno, what);
			int rc = wait_fd(c->fd, POLLOUT, last + tmo, c->cancel);
			if (rc < 0)
				return io_fail(c, rc, what);
			continue;
		}
		fds_pending = false;
		c->sent += (uint64_t)w;
		last = now_ms();
		for (size_t done = (size_t)w; done;) {
			size_t k = done < iov->iov_len ? done : iov->iov_len;
			iov->iov_base = (char *)iov->iov_base + k;
			iov->iov_len -= k;
			done -= k;
			if (iov->iov_len == 0) {
				iov++;
				iovcnt--;
			}
		}
	}
	return 0;
}

/* Take every SCM_RIGHTS fd of msg: into fds[] while *nfds < maxfds, the
 * rest closed and counted in c->fds_closed. */
static void take_fds(struct mig_conn *c, struct msghdr *msg, int *fds, unsigned maxfds,
		     unsigned *nfds)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int f;
			memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (*nfds < maxfds) {
				fds[(*nfds)++] = f;
			} else {
				close(f);
				c->fds_closed++;
			}
		}
	}
	/* The kernel dropped (and closed) what did not fit: at least one. */
	if (msg->msg_flags & MSG_CTRUNC)
		c->fds_closed++;
}

/* Receive exactly len bytes.  With fds != NULL, SCM_RIGHTS fds are
 * collected (take_fds); otherwise any fds sent with these bytes are
 * dropped by the kernel. */
static int recv_buf(struct mig_conn *c, void *buf, size_t len, int *fds, unsigned maxfds,
		    unsigned *nfds, const char *what)
{
	if (check_usable(c, what) < 0)
		return -1;
	union {
		char buf[CMSG_SPACE(sizeof(int) * MIG_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	int64_t last = now_ms();
	int tmo = effective_timeout(c->timeout_ms);
	size_t got = 0;
	while (got < len) {
		struct iovec iov = { .iov_base = (char *)buf + got, .iov_len = len - got };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (fds) {
			m.msg_control = ctl.buf;
			m.msg_controllen = sizeof(ctl.buf);
		}
		ssize_t n = recvmsg(c->fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return io_fail(c, -errno, what);
			int rc = wait_fd(c->fd, POLLIN, last + tmo, c->cancel);
			if (rc < 0)
				return io_fail(c, rc, what);
			continue;
		}
		if (fds)
			take_fds(c, &m, fds, maxfds, nfds);
		if (n == 0) {
			if (what)
				CONN_ERR(c, "%s: the peer closed the connection (after %zu of %zu "
					 "bytes)", what, got, len);
			else
				CONN_ERR(c, "the peer closed the connection (after %zu of %zu bytes)",
					 got, len);
			return -1;
		}
		got += (size_t)n;
		c->received += (uint64_t)n;
		last = now_ms();
	}
	return 0;
}

int mig_send_all(struct mig_conn *c, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	return send_iov(c, &iov, 1, NULL, 0, NULL);
}

int mig_sendv_all(struct mig_conn *c, struct iovec *iov, int iovcnt)
{
	return send_iov(c, iov, iovcnt, NULL, 0, NULL);
}

int mig_recv_all(struct mig_conn *c, void *buf, size_t len)
{
	return recv_buf(c, buf, len, NULL, 0, NULL, NULL);
}

/* ---- messages ------------------------------------------------------------ */

static int hdr_fds_ok(struct mig_conn *c, unsigned nfds)
{
	if (nfds > MIG_MAX_FDS) {
		CONN_ERR(c, "sending %u file descriptors: at most %u go with one message", nfds,
			 MIG_MAX_FDS);
		return -1;
	}
	if (nfds && c->fd >= 0 && !is_unix_socket(c->fd)) {
		CONN_ERR(c, "file descriptors can only be sent over a unix socket (local "
			 "migration needs a unix: URL)");
		return -1;
	}
	return 0;
}

int mig_send_hdr(struct mig_conn *c, uint16_t cmd, uint64_t len, const int *fds, unsigned nfds)
{
	if (hdr_fds_ok(c, nfds) < 0)
		return -1;
	struct mig_hdr h = { .magic = MIG_MAGIC, .version = MIG_VERSION, .cmd = cmd, .len = len };
	struct iovec iov = { .iov_base = &h, .iov_len = sizeof(h) };
	char what[64];
	snprintf(what, sizeof(what), "sending the %s header", mig_cmd_name(cmd));
	return send_iov(c, &iov, 1, fds, nfds, what);
}

int mig_send_msg(struct mig_conn *c, uint16_t cmd, const void *payload, size_t len)
{
	if (len && !payload) {
		CONN_ERR(c, "sending %s: %zu payload bytes but no buffer", mig_cmd_name(cmd), len);
		return -1;
	}
	struct mig_hdr h = { .magic = MIG_MAGIC, .version = MIG_VERSION, .cmd = cmd, .len = len };
	struct iovec iov[2] = {
		{ .iov_base = &h, .iov_len = sizeof(h) },
		{ .iov_base = (void *)payload, .iov_len = len },
	};
	char what[64];
	snprintf(what, sizeof(what), "sending %s", mig_cmd_name(cmd));
	return send_iov(c, iov, 2, NULL, 0, what);
}

/* The payload length rule of each command. */
static int check_len(struct mig_conn *c, const struct mig_hdr *h)
{
	const char *name = mig_cmd_name(h->cmd);
	unsigned long long len = h->len;
	switch (h->cmd) {
	case MIG_START:
	case MIG_CONFIG:
	case MIG_STATE:
		if (len == 0) {
			CONN_ERR(c, "%s has no payload: a JSON text is expected", name);
			return -1;
		}
		if (len > MIG_MAX_JSON_BYTES) {
			CONN_ERR(c, "%s payload of %llu bytes is over the limit of %u bytes", name,
				 len, (unsigned)MIG_MAX_JSON_BYTES);
			return -1;
		}
		return 0;
	case MIG_MEMORY:
		if (len < sizeof(uint64_t)) {
			CONN_ERR(c, "MIG_MEMORY payload of %llu bytes is too short for its count "
				 "(8 bytes)", len);
			return -1;
		}
		if (len > sizeof(uint64_t) + (uint64_t)MIG_MAX_RANGES * sizeof(struct mig_range) +
				  MIG_GPA_LIMIT) {
			CONN_ERR(c, "MIG_MEMORY payload of %llu bytes is over the limit (%u ranges "
				 "of a 52-bit address space)", len, (unsigned)MIG_MAX_RANGES);
			return -1;
		}
		return 0;
	case MIG_MEMORY_FD:
		if (len < sizeof(struct mig_memfd_head) + sizeof(struct mig_memfd) ||
		    len > sizeof(struct mig_memfd_head) + MIG_MAX_FDS * sizeof(struct mig_memfd) ||
		    (len - sizeof(struct mig_memfd_head)) % sizeof(struct mig_memfd)) {
			CONN_ERR(c, "MIG_MEMORY_FD payload of %llu bytes is not 8 + 1..%u entries "
				 "of 32 bytes", len, MIG_MAX_FDS);
			return -1;
		}
		return 0;
	case MIG_ERROR:
		if (len > MIG_MAX_ERROR_BYTES) {
			CONN_ERR(c, "MIG_ERROR text of %llu bytes is over the limit of %u bytes",
				 len, MIG_MAX_ERROR_BYTES);
			return -1;
		}
		return 0;
	default: /* MIG_COMPLETE, MIG_ABANDON, MIG_OK */
		if (len != 0) {
			CONN_ERR(c, "%s carries no payload, but the header's len is %llu", name, len);
			return -1;
		}
		return 0;
	}
}

int mig_recv_hdr(struct mig_conn *c, struct mig_hdr *h, int *fds, unsigned maxfds,
		 unsigned *nfds)
{
	int none[1];
	unsigned got = 0;
	if (!fds) {
		fds = none;
		maxfds = 0;
	}
	if (nfds)
		*nfds = 0;
	c->fds_closed = 0;
	memset(h, 0, sizeof(*h));

	/* magic, version, cmd first: a stream that is not ours is named at once. */
	if (recv_buf(c, h, 8, fds, maxfds, &got, "reading a message header") < 0)
		goto fail;
	if (h->magic != MIG_MAGIC) {
		CONN_ERR(c, "bad magic 0x%08x in a message header (expected 0x%08x, \"VMMG\"): "
			 "the peer is not a vmm migration endpoint", h->magic, MIG_MAGIC);
		goto fail;
	}
	if (h->version != MIG_VERSION) {
		CONN_ERR(c, "the peer speaks migration protocol version %u, this vmm speaks %u",
			 h->version, MIG_VERSION);
		goto fail;
	}
	if (recv_buf(c, (char *)h + 8, sizeof(*h) - 8, fds, maxfds, &got,
		     "reading a message header") < 0)
		goto fail;
	if (h->reserved != 0) {
		CONN_ERR(c, "the reserved field of a %s header is 0x%llx (must be 0)",
			 mig_cmd_name(h->cmd), (unsigned long long)h->reserved);
		goto fail;
	}
	if (!cmd_known(h->cmd)) {
		CONN_ERR(c, "unknown command 0x%x in a message header", h->cmd);
		goto fail;
	}
	if (check_len(c, h) < 0)
		goto fail;
	if ((got || c->fds_closed) && h->cmd != MIG_MEMORY_FD) {
		CONN_ERR(c, "%u file descriptors came with %s, which carries none",
			 got + c->fds_closed, mig_cmd_name(h->cmd));
		goto fail;
	}
	if (nfds)
		*nfds = got;
	return 0;
fail:
	close_fds(fds, got);
	return -1;
}

int mig_reply_ok(struct mig_conn *c)
{
	return mig_send_msg(c, MIG_OK, NULL, 0);
}

int mig_reply_error(struct mig_conn *c, const char *fmt, ...)
{
	/* One byte past the limit kept: the cut looks at the byte after it. */
	char text[MIG_MAX_ERROR_BYTES + 2];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	size_t len = n < 0 ? 0 : (size_t)n;
	if (len > MIG_MAX_ERROR_BYTES) {
		/* Cut before a character that would straddle the limit. */
		len = MIG_MAX_ERROR_BYTES;
		while (len > 0 && ((unsigned char)text[len] & 0xc0) == 0x80)
			len--;
	}
	return mig_send_msg(c, MIG_ERROR, text, len);
}

int mig_wait_reply(struct mig_conn *c)
{
	struct mig_hdr h;
	if (mig_recv_hdr(c, &h, NULL, 0, NULL) < 0)
		return -1;
	if (h.cmd == MIG_OK)
		return 0;
	if (h.cmd != MIG_ERROR) {
		CONN_ERR(c, "expected MIG_OK or MIG_ERROR in answer, got %s", mig_cmd_name(h.cmd));
		return -1;
	}
	char text[MIG_MAX_ERROR_BYTES + 1];
	if (recv_buf(c, text, (size_t)h.len, NULL, 0, NULL, "reading the MIG_ERROR text") < 0)
		return -1;
	text[h.len] = '\0';
	for (size_t i = 0; i < h.len; i++)
		if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
			text[i] = '?';
	if (h.len == 0)
		CONN_ERR(c, "the destination refused (no reason given)");
	else
		CONN_ERR(c, "the destination refused: %.480s", text);
	return -1;
}

/* ---- payload tables ------------------------------------------------------ */

int mig_memory_table_check(const struct mig_range *r, uint64_t count, uint64_t payload_len,
			   uint64_t *data_bytes, char *err, size_t errlen)
{
	if (count > MIG_MAX_RANGES) {
		set_err(err, errlen, "MIG_MEMORY: count %llu is over the limit of %u ranges",
			(unsigned long long)count, (unsigned)MIG_MAX_RANGES);
		return -1;
	}
	uint64_t data = 0;
	for (uint64_t i = 0; i < count; i++) {
		unsigned long long gpa = r[i].gpa, len = r[i].len, flags = r[i].flags;
		unsigned long long idx = i;
		if (gpa % MIG_PAGE) {
			set_err(err, errlen, "MIG_MEMORY range %llu: gpa 0x%llx is not a multiple of "
				"4096", idx, gpa);
			return -1;
		}
		if (len == 0) {
			set_err(err, errlen, "MIG_MEMORY range %llu: len is 0", idx);
			return -1;
		}
		if (len % MIG_PAGE) {
			set_err(err, errlen, "MIG_MEMORY range %llu: len 0x%llx is not a multiple of "
				"4096", idx, len);
			return -1;
		}
		if (flags & ~MIG_RANGE_ZERO) {
			set_err(err, errlen, "MIG_MEMORY range %llu: flags 0x%llx has unknown bits "
				"(only MIG_RANGE_ZERO = 1 is defined)", idx, flags);
			return -1;
		}
		if (len >= MIG_GPA_LIMIT || gpa >= MIG_GPA_LIMIT - len) {
			set_err(err, errlen, "MIG_MEMORY range %llu: gpa 0x%llx + len 0x%llx does not "
				"end below 2^52", idx, gpa, len);
			return -1;
		}
		if (i > 0 && gpa < r[i - 1].gpa + r[i - 1].len) {
			set_err(err, errlen, "MIG_MEMORY range %llu: gpa 0x%llx is below the end "
				"0x%llx of range %llu: ranges must be sorted and not overlap", idx,
				gpa, (unsigned long long)(r[i - 1].gpa + r[i - 1].len), idx - 1);
			return -1;
		}
		if (!(flags & MIG_RANGE_ZERO))
			data += len;   /* disjoint ranges below 2^52: no overflow */
	}
	uint64_t want = sizeof(uint64_t) + count * sizeof(struct mig_range) + data;
	if (payload_len != want) {
		set_err(err, errlen, "MIG_MEMORY: the header's len is %llu, but 8 + %llu ranges x "
			"24 + %llu data bytes = %llu", (unsigned long long)payload_len,
			(unsigned long long)count, (unsigned long long)data,
			(unsigned long long)want);
		return -1;
	}
	if (data_bytes)
		*data_bytes = data;
	return 0;
}

int mig_recv_memory_table(struct mig_conn *c, const struct mig_hdr *h, struct mig_range **r,
			  uint64_t *count, uint64_t *data_bytes)
{
	*r = NULL;
	*count = 0;
	*data_bytes = 0;
	if (h->cmd != MIG_MEMORY) {
		CONN_ERR(c, "expected MIG_MEMORY, got %s", mig_cmd_name(h->cmd));
		return -1;
	}
	uint64_t n;
	if (recv_buf(c, &n, sizeof(n), NULL, 0, NULL, "reading the MIG_MEMORY count") < 0)
		return -1;
	if (n > MIG_MAX_RANGES) {
		CONN_ERR(c, "MIG_MEMORY: count %llu is over the limit of %u ranges",
			 (unsigned long long)n, (unsigned)MIG_MAX_RANGES);
		return -1;
	}
	uint64_t table = n * sizeof(struct mig_range);
	if (h->len < sizeof(n) + table) {
		CONN_ERR(c, "MIG_MEMORY: the header's len %llu is too short for %llu ranges "
			 "(8 + %llu bytes)", (unsigned long long)h->len, (unsigned long long)n,
			 (unsigned long long)table);
		return -1;
	}
	struct mig_range *t = NULL;
	if (n) {
		t = malloc((size_t)table);
		if (!t) {
			CONN_ERR(c, "MIG_MEMORY: no memory for %llu ranges", (unsigned long long)n);
			return -1;
		}
		if (recv_buf(c, t, (size_t)table, NULL, 0, NULL, "reading the MIG_MEMORY table") < 0) {
			free(t);
			return -1;
		}
	}
	if (mig_memory_table_check(t, n, h->len, data_bytes, c->err, sizeof(c->err)) < 0) {
		free(t);
		return -1;
	}
	*r = t;
	*count = n;
	return 0;
}

/* The count, the pad and the header's len of a MIG_MEMORY_FD payload. */
static int memfd_head_check(const struct mig_memfd_head *head, uint64_t payload_len, char *err,
			    size_t errlen)
{
	if (head->count == 0 || head->count > MIG_MAX_FDS) {
		set_err(err, errlen, "MIG_MEMORY_FD: count %u is not 1..%u", head->count,
			MIG_MAX_FDS);
		return -1;
	}
	if (head->pad != 0) {
		set_err(err, errlen, "MIG_MEMORY_FD: pad is 0x%x (must be 0)", head->pad);
		return -1;
	}
	uint64_t want = sizeof(*head) + (uint64_t)head->count * sizeof(struct mig_memfd);
	if (payload_len != want) {
		set_err(err, errlen, "MIG_MEMORY_FD: the header's len is %llu, but 8 + %u entries "
			"x 32 = %llu", (unsigned long long)payload_len, head->count,
			(unsigned long long)want);
		return -1;
	}
	return 0;
}

int mig_memfd_table_check(const struct mig_memfd_head *head, const struct mig_memfd *m,
			  uint64_t payload_len, unsigned nfds, unsigned fds_closed, char *err,
			  size_t errlen)
{
	if (memfd_head_check(head, payload_len, err, errlen) < 0)
		return -1;
	if (nfds != head->count || fds_closed) {
		set_err(err, errlen, "MIG_MEMORY_FD: %u file descriptors came with the header for "
			"count %u: exactly count are expected", nfds + fds_closed, head->count);
		return -1;
	}
	for (unsigned i = 0; i < head->count; i++) {
		unsigned long long gpa = m[i].gpa, size = m[i].size, off = m[i].offset;
		if (m[i].pad != 0) {
			set_err(err, errlen, "MIG_MEMORY_FD entry %u: pad is 0x%x (must be 0)", i,
				m[i].pad);
			return -1;
		}
		if (gpa % MIG_PAGE) {
			set_err(err, errlen, "MIG_MEMORY_FD entry %u: gpa 0x%llx is not a multiple "
				"of 4096", i, gpa);
			return -1;
		}
		if (size == 0 || size % MIG_PAGE) {
			set_err(err, errlen, "MIG_MEMORY_FD entry %u: size 0x%llx is not a positive "
				"multiple of 4096", i, size);
			return -1;
		}
		if (off % MIG_PAGE) {
			set_err(err, errlen, "MIG_MEMORY_FD entry %u: offset 0x%llx is not a multiple "
				"of 4096", i, off);
			return -1;
		}
		if (size >= MIG_GPA_LIMIT || gpa >= MIG_GPA_LIMIT - size) {
			set_err(err, errlen, "MIG_MEMORY_FD entry %u: gpa 0x%llx + size 0x%llx does "
				"not end below 2^52", i, gpa, size);
			return -1;
		}
	}
	return 0;
}

int mig_recv_memfd_table(struct mig_conn *c, const struct mig_hdr *h, unsigned nfds,
			 struct mig_memfd *m, unsigned *count)
{
	*count = 0;
	if (h->cmd != MIG_MEMORY_FD) {
		CONN_ERR(c, "expected MIG_MEMORY_FD, got %s", mig_cmd_name(h->cmd));
		return -1;
	}
	struct mig_memfd_head head;
	if (recv_buf(c, &head, sizeof(head), NULL, 0, NULL, "reading the MIG_MEMORY_FD count") < 0)
		return -1;
	/* Count and len agree before the entries are read. */
	if (memfd_head_check(&head, h->len, c->err, sizeof(c->err)) < 0)
		return -1;
	if (recv_buf(c, m, head.count * sizeof(*m), NULL, 0, NULL,
		     "reading the MIG_MEMORY_FD table") < 0)
		return -1;
	if (mig_memfd_table_check(&head, m, h->len, nfds, c->fds_closed, c->err,
				  sizeof(c->err)) < 0)
		return -1;
	*count = head.count;
	return 0;
}
