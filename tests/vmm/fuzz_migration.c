// SPDX-License-Identifier: GPL-2.0-only
/*
 * fuzz_migration.c - libFuzzer harness of live migration's receiving side
 * (vmm/migration/proto.h): the input is what a hostile peer sends.
 *
 * Input: one mode byte, then the stream.  Mode bit 0 picks the role, bits
 * 1-3 how many fds (0..7, dups of one memfd) ride on the stream's first
 * byte as SCM_RIGHTS.  The stream goes into a unix socketpair whose far
 * end is then shut for writing, so every read ends at once (no timeouts).
 *
 *   receiver (bit 0 clear): messages read as the destination reads them,
 *     mig_recv_hdr, then per command its payload (JSON, the MIG_MEMORY
 *     table through mig_recv_memory_table and its data, the MIG_MEMORY_FD
 *     table), each answered with mig_reply_ok or mig_reply_error(c->err).
 *     The answers are then read back with mig_wait_reply on the far end
 *     and must say exactly that: OK, or "the destination refused: <err>".
 *   sender (bit 0 set): answers read with mig_wait_reply until one is not
 *     a refusal; the error shown has no control characters.
 *
 * Checked after every accepted header and table: the header's fields
 * within their limits, the table sorted, aligned, below 2^52, its data
 * sum matching the header; after every refusal: a message, no fd given.
 * After each input, no fd is left open (the lowest free fds are as they
 * were).  FUZZ_MIG_TRACE=1 prints each outcome (to replay an input).
 * tests/vmm/meson.build builds it with clang -fsanitize=fuzzer
 * and small limits (4096-byte JSON, 64 ranges); tests/vmm/fuzz.sh
 * migration runs it.
 */
#include "migration/proto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(cond)                                                                     \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "fuzz_migration: %s:%d: check failed: %s\n",    \
				__FILE__, __LINE__, #cond);                             \
			abort();                                                        \
		}                                                                       \
	} while (0)

#define MAX_MESSAGES 512
#define FD_WINDOW 32     /* fds from the lowest free one compared before and after */

static int memfd = -1;
static bool trace;   /* FUZZ_MIG_TRACE=1: each message's outcome on stderr */

/* What the receiver answered, in order, to compare with what the sender
 * side reads back. */
struct answer {
	bool ok;
	char err[512];
};
static struct answer answers[MAX_MESSAGES];

static void check_hdr(const struct mig_hdr *h)
{
	CHECK(h->magic == MIG_MAGIC && h->version == MIG_VERSION && h->reserved == 0);
	CHECK(strcmp(mig_cmd_name(h->cmd), "unknown") != 0);
	switch (h->cmd) {
	case MIG_START:
	case MIG_CONFIG:
	case MIG_STATE:
		CHECK(h->len >= 1 && h->len <= MIG_MAX_JSON_BYTES);
		break;
	case MIG_MEMORY:
		CHECK(h->len >= 8);
		break;
	case MIG_MEMORY_FD:
		CHECK(h->len >= 40 && h->len <= 8 + 32 * MIG_MAX_FDS && (h->len - 8) % 32 == 0);
		break;
	case MIG_ERROR:
		CHECK(h->len <= MIG_MAX_ERROR_BYTES);
		break;
	default:
		CHECK(h->len == 0);
	}
}

static void check_table(const struct mig_hdr *h, const struct mig_range *r, uint64_t n,
			uint64_t data)
{
	CHECK(n <= MIG_MAX_RANGES && (n == 0) == (r == NULL));
	uint64_t sum = 0, end = 0;
	for (uint64_t i = 0; i < n; i++) {
		CHECK(r[i].gpa % 4096 == 0 && r[i].len % 4096 == 0 && r[i].len > 0);
		CHECK(r[i].gpa >= end);
		end = r[i].gpa + r[i].len;
		CHECK(end > r[i].gpa && end < MIG_GPA_LIMIT);
		CHECK((r[i].flags & ~MIG_RANGE_ZERO) == 0);
		if (!(r[i].flags & MIG_RANGE_ZERO))
			sum += r[i].len;
	}
	CHECK(sum == data && h->len == 8 + n * 24 + data);
	char err[256];
	uint64_t again = 0;
	CHECK(mig_memory_table_check(r, n, h->len, &again, err, sizeof(err)) == 0 && again == data);
	/* One byte more or less is refused. */
	CHECK(mig_memory_table_check(r, n, h->len + 1, NULL, err, sizeof(err)) == -1 && err[0]);
	CHECK(mig_memory_table_check(r, n, h->len - 1, NULL, err, sizeof(err)) == -1 && err[0]);
}

/* Read and drop len bytes; false if the stream failed. */
static bool skip(struct mig_conn *c, uint64_t len)
{
	static char buf[4096];
	while (len) {
		size_t k = len < sizeof(buf) ? (size_t)len : sizeof(buf);
		if (mig_recv_all(c, buf, k) < 0)
			return false;
		len -= k;
	}
	return true;
}

/* One message; false once the stream is out of step. */
static bool receive_one(struct mig_conn *c)
{
	struct mig_hdr h;
	int fds[MIG_MAX_FDS];
	unsigned nfds = 12345;
	if (mig_recv_hdr(c, &h, fds, MIG_MAX_FDS, &nfds) < 0) {
		CHECK(nfds == 0 && c->err[0]);
		return false;
	}
	check_hdr(&h);
	CHECK(nfds <= MIG_MAX_FDS && (nfds == 0 || h.cmd == MIG_MEMORY_FD));
	bool ok = true;
	switch (h.cmd) {
	case MIG_MEMORY: {
		struct mig_range *r;
		uint64_t n, data;
		ok = mig_recv_memory_table(c, &h, &r, &n, &data) == 0;
		if (ok) {
			check_table(&h, r, n, data);
			free(r);
			ok = skip(c, data);
		} else {
			CHECK(r == NULL && c->err[0]);
		}
		break;
	}
	case MIG_MEMORY_FD: {
		struct mig_memfd m[MIG_MAX_FDS];
		unsigned n = 99;
		ok = mig_recv_memfd_table(c, &h, nfds, m, &n) == 0;
		if (ok) {
			CHECK(n == nfds && n >= 1 && h.len == 8 + 32ull * n && c->fds_closed == 0);
			for (unsigned i = 0; i < n; i++) {
				CHECK(m[i].pad == 0 && m[i].size > 0);
				CHECK((m[i].gpa | m[i].size | m[i].offset) % 4096 == 0);
				CHECK(fcntl(fds[i], F_GETFD) == FD_CLOEXEC);
			}
		} else {
			CHECK(n == 0 && c->err[0]);
		}
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		break;
	}
	default:
		ok = skip(c, h.len);
	}
	return ok;
}

static void run_receiver(int rfd, int sfd)
{
	struct mig_conn c = { .fd = rfd, .timeout_ms = 1000 };
	unsigned n = 0;
	for (bool more = true; more && n < MAX_MESSAGES; n++) {
		more = receive_one(&c);
		answers[n].ok = more;
		if (trace)
			fprintf(stderr, "fuzz_migration: message %u: %s\n", n, more ? "ok" : c.err);
		if (more) {
			CHECK(mig_reply_ok(&c) == 0);
		} else {
			snprintf(answers[n].err, sizeof(answers[n].err), "%s", c.err);
			CHECK(mig_reply_error(&c, "%s", c.err) == 0);
		}
	}
	/* The sender reads each answer as the receiver meant it. */
	struct mig_conn s = { .fd = sfd, .timeout_ms = 1000 };
	for (unsigned i = 0; i < n; i++) {
		int rc = mig_wait_reply(&s);
		CHECK((rc == 0) == answers[i].ok);
		if (rc < 0) {
			char want[600];
			snprintf(want, sizeof(want), "the destination refused: %.480s", answers[i].err);
			CHECK(strcmp(s.err, want) == 0);
		}
	}
	CHECK(s.received == c.sent);
}

static void run_sender(int fd)
{
	struct mig_conn c = { .fd = fd, .timeout_ms = 1000 };
	for (int i = 0; i < MAX_MESSAGES; i++) {
		int rc = mig_wait_reply(&c);
		if (trace)
			fprintf(stderr, "fuzz_migration: answer %d: %s\n", i, rc == 0 ? "ok" : c.err);
		if (rc == 0)
			continue;
		CHECK(c.err[0]);
		for (const char *p = c.err; *p; p++)
			CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
		if (strncmp(c.err, "the destination refused", 23) != 0)
			break;
	}
}

static int lowest_free_fd(void)
{
	int fd = dup(0);
	CHECK(fd >= 0);
	close(fd);
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (memfd < 0) {
		trace = getenv("FUZZ_MIG_TRACE") != NULL;
		memfd = memfd_create("fuzz-migration", MFD_CLOEXEC);
		CHECK(memfd >= 0);
	}
	int low = lowest_free_fd();
	bool was_open[FD_WINDOW];
	for (int i = 0; i < FD_WINDOW; i++)
		was_open[i] = fcntl(low + i, F_GETFD) >= 0;
	unsigned mode = data[0], nfds = (mode >> 1) & 7;
	data++;
	size--;

	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	/* The stream into sv[0], the first bytes carrying the fds. */
	if (size) {
		int fds[7];
		for (unsigned i = 0; i < nfds; i++)
			CHECK((fds[i] = dup(memfd)) >= 0);
		struct mig_conn w = { .fd = sv[0], .timeout_ms = 1000 };
		size_t first = size < 24 ? size : 24;
		if (nfds) {
			/* mig_send_hdr writes a header of its own: the input's first
			 * bytes go with the fds by hand. */
			union {
				char buf[CMSG_SPACE(sizeof(int) * 7)];
				struct cmsghdr align;
			} ctl;
			memset(&ctl, 0, sizeof(ctl));
			struct iovec iov = { (void *)data, first };
			struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
					    .msg_controllen = CMSG_SPACE(sizeof(int) * nfds) };
			struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
			CHECK(sendmsg(sv[0], &m, MSG_NOSIGNAL) == (ssize_t)first);
			for (unsigned i = 0; i < nfds; i++)
				close(fds[i]);
		} else {
			CHECK(mig_send_all(&w, data, first) == 0);
		}
		CHECK(mig_send_all(&w, data + first, size - first) == 0);
	}
	CHECK(shutdown(sv[0], SHUT_WR) == 0);

	if (mode & 1)
		run_sender(sv[1]);
	else
		run_receiver(sv[1], sv[0]);
	close(sv[0]);
	close(sv[1]);

	/* Every fd this input made, received or refused, is closed again (the
	 * fds made for an input are the lowest free ones: in this window). */
	for (int i = 0; i < FD_WINDOW; i++)
		CHECK((fcntl(low + i, F_GETFD) >= 0) == was_open[i]);
	return 0;
}
