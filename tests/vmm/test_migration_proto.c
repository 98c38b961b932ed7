// SPDX-License-Identifier: GPL-2.0-only
/*
 * test_migration_proto.c - live migration's wire protocol and transport
 * (vmm/migration/proto.h), without a VM: URLs good and bad; every message
 * kind over a socketpair, fds over SCM_RIGHTS included, and a large
 * message through a thread (partial sends); the clear refusals (magic,
 * version, reserved, cmd, each command's len, fds where none belong); a
 * truncated stream; a stalled peer timing out within the bound while a
 * slow one that keeps moving does not; cancel; every memory-table and
 * memfd-table rule with its message; listen / accept / connect over unix
 * and over tcp on 127.0.0.1.  Each test has a 10 s bound of its own.
 */
#include <criterion/criterion.h>

#include "migration/proto.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

TestSuite(migration_proto, .timeout = 10);

/* ---- helpers ------------------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

/* Two connected ends: a (the sender) and b (the receiver). */
static void pair(struct mig_conn *a, struct mig_conn *b, int timeout_ms)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	*a = (struct mig_conn){ .fd = sv[0], .timeout_ms = timeout_ms };
	*b = (struct mig_conn){ .fd = sv[1], .timeout_ms = timeout_ms };
}

static void raw_write(int fd, const void *p, size_t n)
{
	cr_assert_eq(write(fd, p, n), (ssize_t)n);
}

static void raw_hdr(int fd, uint32_t magic, uint16_t version, uint16_t cmd, uint64_t len,
		    uint64_t reserved)
{
	struct mig_hdr h = { magic, version, cmd, len, reserved };
	raw_write(fd, &h, sizeof(h));
}

static int open_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	cr_assert_not_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

#define assert_err_has(s, sub)                                                          \
	cr_assert(strstr((s), (sub)) != NULL, "error \"%s\" lacks \"%s\"", (s), (sub))

/* ---- URLs ---------------------------------------------------------------- */

Test(migration_proto, url_good)
{
	struct mig_url u;
	char err[256];
	cr_assert_eq(mig_url_parse("unix:/run/vmm/mig.sock", &u, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(u.family, AF_UNIX);
	cr_assert_str_eq(((struct sockaddr_un *)&u.addr)->sun_path, "/run/vmm/mig.sock");
	cr_assert_str_eq(u.text, "unix:/run/vmm/mig.sock");

	cr_assert_eq(mig_url_parse("tcp:192.168.1.20:6000", &u, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(u.family, AF_INET);
	cr_assert_eq(u.addrlen, sizeof(struct sockaddr_in));
	cr_assert_eq(ntohs(((struct sockaddr_in *)&u.addr)->sin_port), 6000);
	cr_assert_str_eq(u.text, "tcp:192.168.1.20:6000");

	cr_assert_eq(mig_url_parse("tcp:localhost:65535", &u, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(u.text, "tcp:127.0.0.1:65535");
	cr_assert_eq(mig_url_parse("tcp:0.0.0.0:1", &u, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(u.text, "tcp:0.0.0.0:1");

	cr_assert_eq(mig_url_parse("tcp:[::1]:4444", &u, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(u.family, AF_INET6);
	cr_assert_eq(ntohs(((struct sockaddr_in6 *)&u.addr)->sin6_port), 4444);
	cr_assert_str_eq(u.text, "tcp:[::1]:4444");

	/* 107 bytes of path: the most a sockaddr_un holds. */
	char url[128] = "unix:/";
	memset(url + 6, 'p', 106);
	url[112] = '\0';
	cr_assert_eq(mig_url_parse(url, &u, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(strlen(((struct sockaddr_un *)&u.addr)->sun_path), 107);
}

Test(migration_proto, url_bad)
{
	static const struct {
		const char *url, *msg;
	} bad[] = {
		{ "", "expected unix:/path or tcp:HOST:PORT" },
		{ "file:///tmp/x", "expected unix:/path or tcp:HOST:PORT" },
		{ "unix:relative.sock", "absolute path" },
		{ "unix:", "absolute path" },
		{ "tcp:example.com:80", "not a numeric IPv4 address, localhost or a bracketed IPv6" },
		{ "tcp:1.2.3.256:80", "not a numeric IPv4" },
		{ "tcp:127.0.0.1", "expected tcp:HOST:PORT" },
		{ "tcp:127.0.0.1:", "is not a number 1..65535" },
		{ "tcp:127.0.0.1:0", "is not a number 1..65535" },
		{ "tcp:127.0.0.1:65536", "is not a number 1..65535" },
		{ "tcp:127.0.0.1:+80", "is not a number 1..65535" },
		{ "tcp:127.0.0.1:80x", "is not a number 1..65535" },
		{ "tcp:127.0.0.1:000080", "is not a number 1..65535" },
		{ "tcp:::1:80", "goes in brackets" },
		{ "tcp:[::1]80", "tcp:[ADDRESS]:PORT" },
		{ "tcp:[::1", "tcp:[ADDRESS]:PORT" },
		{ "tcp:[fe80::1%eth0]:80", "not a numeric IPv6" },
		{ "tcp:[1.2.3.4]:80", "not a numeric IPv6" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mig_url u;
		char err[256] = "";
		cr_assert_eq(mig_url_parse(bad[i].url, &u, err, sizeof(err)), -1, "%s accepted",
			     bad[i].url);
		assert_err_has(err, bad[i].msg);
		cr_assert_eq(u.family, 0, "%s: the url is left zeroed", bad[i].url);
	}
	struct mig_url u;
	char err[256];
	cr_assert_eq(mig_url_parse(NULL, &u, err, sizeof(err)), -1);
	char url[128] = "unix:/";
	memset(url + 6, 'p', 107);     /* 108 bytes of path */
	url[113] = '\0';
	cr_assert_eq(mig_url_parse(url, &u, err, sizeof(err)), -1);
	assert_err_has(err, "108 bytes, at most 107");
}

/* ---- every message kind ---------------------------------------------------- */

static void json_round_trip(struct mig_conn *a, struct mig_conn *b, uint16_t cmd,
			    const char *json)
{
	cr_assert_eq(mig_send_msg(a, cmd, json, strlen(json)), 0, "%s", a->err);
	struct mig_hdr h;
	unsigned nfds = 99;
	int fds[4];
	cr_assert_eq(mig_recv_hdr(b, &h, fds, 4, &nfds), 0, "%s", b->err);
	cr_assert_eq(h.cmd, cmd);
	cr_assert_eq(h.len, strlen(json));
	cr_assert_eq(nfds, 0);
	char buf[256] = "";
	cr_assert_eq(mig_recv_all(b, buf, h.len), 0, "%s", b->err);
	cr_assert_str_eq(buf, json);
	cr_assert_eq(mig_reply_ok(b), 0, "%s", b->err);
	cr_assert_eq(mig_wait_reply(a), 0, "%s", a->err);
}

Test(migration_proto, every_message_kind)
{
	struct mig_conn a, b;
	pair(&a, &b, 2000);

	json_round_trip(&a, &b, MIG_START, "{\"vmm\":\"0.1.0\",\"local\":false}");
	json_round_trip(&a, &b, MIG_CONFIG, "{\"cpus\":{\"boot_vcpus\":2}}");
	json_round_trip(&a, &b, MIG_STATE, "{\"format\":\"vmm-state\",\"version\":1}");

	/* MIG_MEMORY: a data range, a zero range, a data range. */
	unsigned char page1[4096], page3[2 * 4096];
	memset(page1, 0xa1, sizeof(page1));
	memset(page3, 0xc3, sizeof(page3));
	struct mig_range t[3] = {
		{ 0x0, 4096, 0 },
		{ 0x1000, 0x100000, MIG_RANGE_ZERO },
		{ 0x200000, 2 * 4096, 0 },
	};
	uint64_t count = 3;
	uint64_t len = 8 + sizeof(t) + sizeof(page1) + sizeof(page3);
	struct iovec iov[4] = {
		{ &count, 8 }, { t, sizeof(t) }, { page1, sizeof(page1) }, { page3, sizeof(page3) },
	};
	cr_assert_eq(mig_send_hdr(&a, MIG_MEMORY, len, NULL, 0), 0, "%s", a.err);
	cr_assert_eq(mig_sendv_all(&a, iov, 4), 0, "%s", a.err);
	struct mig_hdr h;
	cr_assert_eq(mig_recv_hdr(&b, &h, NULL, 0, NULL), 0, "%s", b.err);
	cr_assert_eq(h.cmd, MIG_MEMORY);
	cr_assert_eq(h.len, len);
	struct mig_range *r;
	uint64_t n, data;
	cr_assert_eq(mig_recv_memory_table(&b, &h, &r, &n, &data), 0, "%s", b.err);
	cr_assert_eq(n, 3);
	cr_assert_eq(data, 3 * 4096);
	cr_assert_eq(memcmp(r, t, sizeof(t)), 0);
	free(r);
	unsigned char got[3 * 4096];
	cr_assert_eq(mig_recv_all(&b, got, sizeof(got)), 0, "%s", b.err);
	cr_assert_eq(memcmp(got, page1, 4096), 0);
	cr_assert_eq(memcmp(got + 4096, page3, sizeof(page3)), 0);
	cr_assert_eq(mig_reply_ok(&b), 0);
	cr_assert_eq(mig_wait_reply(&a), 0, "%s", a.err);

	/* MIG_MEMORY_FD: two memfds, their contents seen through the fds received. */
	int mfd[2];
	for (int i = 0; i < 2; i++) {
		mfd[i] = memfd_create("mig-test", MFD_CLOEXEC);
		cr_assert_geq(mfd[i], 0);
		cr_assert_eq(ftruncate(mfd[i], 8192), 0);
		char tag = (char)('A' + i);
		cr_assert_eq(pwrite(mfd[i], &tag, 1, 4096), 1);
	}
	struct {
		struct mig_memfd_head head;
		struct mig_memfd m[2];
	} p = { { 2, 0 }, { { 0, 8192, 0, 1, 0 }, { 0x100000000ull, 4096, 4096, 2, 0 } } };
	cr_assert_eq(mig_send_hdr(&a, MIG_MEMORY_FD, sizeof(p), mfd, 2), 0, "%s", a.err);
	cr_assert_eq(mig_send_all(&a, &p, sizeof(p)), 0, "%s", a.err);
	int fds[MIG_MAX_FDS];
	unsigned nfds = 0;
	cr_assert_eq(mig_recv_hdr(&b, &h, fds, MIG_MAX_FDS, &nfds), 0, "%s", b.err);
	cr_assert_eq(h.cmd, MIG_MEMORY_FD);
	cr_assert_eq(nfds, 2);
	struct mig_memfd m[MIG_MAX_FDS];
	unsigned mc;
	cr_assert_eq(mig_recv_memfd_table(&b, &h, nfds, m, &mc), 0, "%s", b.err);
	cr_assert_eq(mc, 2);
	cr_assert_eq(memcmp(m, p.m, sizeof(p.m)), 0);
	for (int i = 0; i < 2; i++) {
		char tag = 0;
		cr_assert_eq(pread(fds[i], &tag, 1, 4096), 1);
		cr_assert_eq(tag, 'A' + i, "fd %d is memfd %d", i, i);
		cr_assert_eq(fcntl(fds[i], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
		close(fds[i]);
		close(mfd[i]);
	}
	cr_assert_eq(mig_reply_ok(&b), 0);
	cr_assert_eq(mig_wait_reply(&a), 0, "%s", a.err);

	/* MIG_COMPLETE, MIG_ABANDON: empty. */
	uint16_t empty[] = { MIG_COMPLETE, MIG_ABANDON };
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(mig_send_msg(&a, empty[i], NULL, 0), 0, "%s", a.err);
		cr_assert_eq(mig_recv_hdr(&b, &h, NULL, 0, NULL), 0, "%s", b.err);
		cr_assert_eq(h.cmd, empty[i]);
		cr_assert_eq(h.len, 0);
		cr_assert_eq(mig_reply_error(&b, "no %s today (%d)", "migration", 42), 0);
		cr_assert_eq(mig_wait_reply(&a), -1);
		cr_assert_str_eq(a.err, "the destination refused: no migration today (42)");
	}

	/* Both ends counted every byte, headers included. */
	cr_assert_eq(a.sent, b.received);
	cr_assert_eq(b.sent, a.received);
	cr_assert_eq(b.sent, 7 * sizeof(struct mig_hdr) + 2 * strlen("no migration today (42)"));
	mig_conn_close(&a);
	mig_conn_close(&b);
	mig_conn_close(&b);
	cr_assert_eq(b.fd, -1);
}

Test(migration_proto, cmd_names)
{
	cr_assert_str_eq(mig_cmd_name(MIG_START), "MIG_START");
	cr_assert_str_eq(mig_cmd_name(MIG_MEMORY_FD), "MIG_MEMORY_FD");
	cr_assert_str_eq(mig_cmd_name(MIG_ERROR), "MIG_ERROR");
	cr_assert_str_eq(mig_cmd_name(8), "unknown");
	cr_assert_str_eq(mig_cmd_name(0), "unknown");
}

/* A 24 MiB memory message through a thread: many partial sends. */
struct big {
	struct mig_conn *c;
	unsigned char *buf;
	size_t len;
	int rc;
};

static void *big_sender(void *arg)
{
	struct big *g = arg;
	struct mig_range t = { 0x40000000, g->len, 0 };
	uint64_t count = 1;
	struct iovec iov[3] = { { &count, 8 }, { &t, sizeof(t) }, { g->buf, g->len } };
	g->rc = mig_send_hdr(g->c, MIG_MEMORY, 8 + sizeof(t) + g->len, NULL, 0);
	if (g->rc == 0)
		g->rc = mig_sendv_all(g->c, iov, 3);
	if (g->rc == 0)
		g->rc = mig_wait_reply(g->c);
	return NULL;
}

Test(migration_proto, large_message_through_a_thread)
{
	struct mig_conn a, b;
	pair(&a, &b, 5000);
	size_t len = 24u << 20;
	unsigned char *src = malloc(len), *dst = malloc(len);
	cr_assert(src && dst);
	for (size_t i = 0; i < len; i++)
		src[i] = (unsigned char)(i * 7 + (i >> 12));
	struct big g = { &a, src, len, -1 };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, big_sender, &g), 0);
	struct mig_hdr h;
	cr_assert_eq(mig_recv_hdr(&b, &h, NULL, 0, NULL), 0, "%s", b.err);
	struct mig_range *r;
	uint64_t n, data;
	cr_assert_eq(mig_recv_memory_table(&b, &h, &r, &n, &data), 0, "%s", b.err);
	cr_assert_eq(data, len);
	free(r);
	cr_assert_eq(mig_recv_all(&b, dst, len), 0, "%s", b.err);
	cr_assert_eq(mig_reply_ok(&b), 0);
	pthread_join(t, NULL);
	cr_assert_eq(g.rc, 0, "%s", a.err);
	cr_assert_eq(memcmp(src, dst, len), 0);
	cr_assert_eq(a.sent, b.received);
	free(src);
	free(dst);
	mig_conn_close(&a);
	mig_conn_close(&b);
}

/* ---- refusals of a header ------------------------------------------------ */

static void refused(uint32_t magic, uint16_t version, uint16_t cmd, uint64_t len,
		    uint64_t reserved, const char *msg)
{
	struct mig_conn a, b;
	pair(&a, &b, 1000);
	raw_hdr(a.fd, magic, version, cmd, len, reserved);
	struct mig_hdr h;
	int fds[2];
	unsigned nfds = 7;
	cr_assert_eq(mig_recv_hdr(&b, &h, fds, 2, &nfds), -1, "accepted: %s", msg);
	cr_assert_str_eq(b.err, msg);
	cr_assert_eq(nfds, 0);
	mig_conn_close(&a);
	mig_conn_close(&b);
}

Test(migration_proto, version_mismatch)
{
	refused(MIG_MAGIC, 7, MIG_START, 10, 0,
		"the peer speaks migration protocol version 7, this vmm speaks 1");
	refused(MIG_MAGIC, 0, MIG_OK, 0, 0,
		"the peer speaks migration protocol version 0, this vmm speaks 1");
}

Test(migration_proto, bad_magic)
{
	refused(0x564d4d47, MIG_VERSION, MIG_START, 10, 0,
		"bad magic 0x564d4d47 in a message header (expected 0x474d4d56, \"VMMG\"): "
		"the peer is not a vmm migration endpoint");

	/* Something else entirely (an HTTP client): named after 8 bytes, not
	 * after a timeout, though the rest of a header never comes. */
	struct mig_conn a, b;
	pair(&a, &b, 5000);
	raw_write(a.fd, "GET / HTTP/1.1\r\n", 16);
	struct mig_hdr h;
	int64_t t0 = now_ms();
	cr_assert_eq(mig_recv_hdr(&b, &h, NULL, 0, NULL), -1);
	cr_assert_lt(now_ms() - t0, 1000);
	assert_err_has(b.err, "bad magic 0x20544547");
	mig_conn_close(&a);
	mig_conn_close(&b);
}

Test(migration_proto, header_fields_refused)
{
	refused(MIG_MAGIC, 1, MIG_CONFIG, 5, 1,
		"the reserved field of a MIG_CONFIG header is 0x1 (must be 0)");
	refused(MIG_MAGIC, 1, 8, 0, 0, "unknown command 0x8 in a message header");
	refused(MIG_MAGIC, 1, 0, 0, 0, "unknown command 0x0 in a message header");
	refused(MIG_MAGIC, 1, 0x102, 0, 0, "unknown command 0x102 in a message header");
	refused(MIG_MAGIC, 1, MIG_CONFIG, (16u << 20) + 1, 0,
		"MIG_CONFIG payload of 16777217 bytes is over the limit of 16777216 bytes");
	refused(MIG_MAGIC, 1, MIG_STATE, 0, 0, "MIG_STATE has no payload: a JSON text is expected");
	refused(MIG_MAGIC, 1, MIG_START, UINT64_MAX, 0,
		"MIG_START payload of 18446744073709551615 bytes is over the limit of 16777216 bytes");
	refused(MIG_MAGIC, 1, MIG_COMPLETE, 1, 0,
		"MIG_COMPLETE carries no payload, but the header's len is 1");
	refused(MIG_MAGIC, 1, MIG_OK, 4, 0, "MIG_OK carries no payload, but the header's len is 4");
	refused(MIG_MAGIC, 1, MIG_ERROR, 4097, 0,
		"MIG_ERROR text of 4097 bytes is over the limit of 4096 bytes");
	refused(MIG_MAGIC, 1, MIG_MEMORY, 7, 0,
		"MIG_MEMORY payload of 7 bytes is too short for its count (8 bytes)");
	refused(MIG_MAGIC, 1, MIG_MEMORY, UINT64_MAX, 0,
		"MIG_MEMORY payload of 18446744073709551615 bytes is over the limit (65536 ranges "
		"of a 52-bit address space)");
	refused(MIG_MAGIC, 1, MIG_MEMORY_FD, 8, 0,
		"MIG_MEMORY_FD payload of 8 bytes is not 8 + 1..64 entries of 32 bytes");
	refused(MIG_MAGIC, 1, MIG_MEMORY_FD, 8 + 65 * 32, 0,
		"MIG_MEMORY_FD payload of 2088 bytes is not 8 + 1..64 entries of 32 bytes");
	refused(MIG_MAGIC, 1, MIG_MEMORY_FD, 8 + 33, 0,
		"MIG_MEMORY_FD payload of 41 bytes is not 8 + 1..64 entries of 32 bytes");
}

/* fds where none belong are closed and refused; fds beyond maxfds are
 * closed and counted; over tcp they cannot be sent at all. */
Test(migration_proto, fds_refused_and_closed)
{
	struct mig_conn a, b;
	pair(&a, &b, 1000);
	int base = open_fds();
	int three[3] = { 0, 1, 2 };
	cr_assert_eq(mig_send_hdr(&a, MIG_CONFIG, 2, three, 3), 0, "%s", a.err);
	cr_assert_eq(mig_send_all(&a, "{}", 2), 0);
	struct mig_hdr h;
	int fds[4];
	unsigned nfds = 9;
	cr_assert_eq(mig_recv_hdr(&b, &h, fds, 4, &nfds), -1);
	cr_assert_str_eq(b.err, "3 file descriptors came with MIG_CONFIG, which carries none");
	cr_assert_eq(nfds, 0);
	cr_assert_eq(open_fds(), base, "the refused fds were closed");
	mig_conn_close(&a);
	mig_conn_close(&b);

	/* Three fds, room for two: two kept, one closed; the table refuses. */
	pair(&a, &b, 1000);
	base = open_fds();
	struct {
		struct mig_memfd_head head;
		struct mig_memfd m[2];
	} p = { { 2, 0 }, { { 0, 4096, 0, 0, 0 }, { 0x1000, 4096, 0, 0, 0 } } };
	cr_assert_eq(mig_send_hdr(&a, MIG_MEMORY_FD, sizeof(p), three, 3), 0, "%s", a.err);
	cr_assert_eq(mig_send_all(&a, &p, sizeof(p)), 0);
	cr_assert_eq(mig_recv_hdr(&b, &h, fds, 2, &nfds), 0, "%s", b.err);
	cr_assert_eq(nfds, 2);
	cr_assert_eq(b.fds_closed, 1);
	cr_assert_eq(open_fds(), base + 2);
	struct mig_memfd m[MIG_MAX_FDS];
	unsigned mc = 5;
	cr_assert_eq(mig_recv_memfd_table(&b, &h, nfds, m, &mc), -1);
	cr_assert_str_eq(b.err, "MIG_MEMORY_FD: 3 file descriptors came with the header for "
		"count 2: exactly count are expected");
	cr_assert_eq(mc, 0);
	close(fds[0]);
	close(fds[1]);
	mig_conn_close(&a);
	mig_conn_close(&b);

	/* More than MIG_MAX_FDS is refused by the sender. */
	int many[MIG_MAX_FDS + 1];
	for (unsigned i = 0; i <= MIG_MAX_FDS; i++)
		many[i] = 0;
	pair(&a, &b, 1000);
	cr_assert_eq(mig_send_hdr(&a, MIG_MEMORY_FD, 40, many, MIG_MAX_FDS + 1), -1);
	assert_err_has(a.err, "at most 64");
	cr_assert_eq(a.sent, 0);
	mig_conn_close(&a);
	mig_conn_close(&b);
}

/* ---- streams that end or stall ------------------------------------------- */

Test(migration_proto, truncated_stream)
{
	struct mig_conn a, b;
	struct mig_hdr h;

	/* A header cut short: half of it, then the end of the stream. */
	pair(&a, &b, 1000);
	struct mig_hdr full = { MIG_MAGIC, MIG_VERSION, MIG_CONFIG, 100, 0 };
	raw_write(a.fd, &full, 12);
	shutdown(a.fd, SHUT_WR);
	cr_assert_eq(mig_recv_hdr(&b, &h, NULL, 0, NULL), -1);
	cr_assert_str_eq(b.err, "reading a message header: the peer closed the connection "
		"(after 4 of 16 bytes)");
	mig_conn_close(&a);
	mig_conn_close(&b);

	/* Nothing at all. */
	pair(&a, &b, 1000);
	mig_conn_close(&a);
	cr_assert_eq(mig_recv_hdr(&b, &h, NULL, 0, NULL), -1);
	cr_assert_str_eq(b.err, "reading a message header: the peer closed the connection "
		"(after 0 of 8 bytes)");
	mig_conn_close(&b);

	/* A payload cut short. */
	pair(&a, &b, 1000);
	raw_hdr(a.fd, MIG_MAGIC, MIG_VERSION, MIG_CONFIG, 100, 0);
	raw_write(a.fd, "{\"cpus\":", 8);
	mig_conn_close(&a);
	cr_assert_eq(mig_recv_hdr(&b, &h, NULL, 0, NULL), 0, "%s", b.err);
	char buf[100];
	cr_assert_eq(mig_recv_all(&b, buf, h.len), -1);
	cr_assert_str_eq(b.err, "the peer closed the connection (after 8 of 100 bytes)");
	mig_conn_close(&b);

	/* A memory table cut short. */
	pair(&a, &b, 1000);
	raw_hdr(a.fd, MIG_MAGIC, MIG_VERSION, MIG_MEMORY, 8 + 2 * 24 + 4096, 0);
	uint64_t count = 2;
	raw_write(a.fd, &count, 8);
	raw_write(a.fd, "0123456789", 10);
	mig_conn_close(&a);
	cr_assert_eq(mig_recv_hdr(&b, &h, NULL, 0, NULL), 0, "%s", b.err);
	struct mig_range *r = (void *)1;
	uint64_t n = 9, data = 9;
	cr_assert_eq(mig_recv_memory_table(&b, &h, &r, &n, &data), -1);
	cr_assert_str_eq(b.err, "reading the MIG_MEMORY table: the peer closed the connection "
		"(after 10 of 48 bytes)");
	cr_assert_null(r);
	cr_assert_eq(n, 0);
	mig_conn_close(&b);

	/* Waiting for an answer that never comes: the sender learns it. */
	pair(&a, &b, 1000);
	mig_conn_close(&b);
	cr_assert_eq(mig_wait_reply(&a), -1);
	assert_err_has(a.err, "the peer closed the connection");
	mig_conn_close(&a);
}

Test(migration_proto, stalled_peer_times_out)
{
	struct mig_conn a, b;
	pair(&a, &b, 300);
	/* Half a header, and then nothing (the connection stays open). */
	raw_write(a.fd, "VMMG\x01\x00\x02\x00\x05\x00\x00\x00", 12);
	struct mig_hdr h;
	int64_t t0 = now_ms();
	cr_assert_eq(mig_recv_hdr(&b, &h, NULL, 0, NULL), -1);
	int64_t took = now_ms() - t0;
	cr_assert_str_eq(b.err, "reading a message header: timed out: no progress for 300 ms");
	cr_assert_geq(took, 290);
	cr_assert_lt(took, 1000, "took %lld ms", (long long)took);

	/* A sender whose peer never reads: the send times out too. */
	size_t len = 16u << 20;
	void *big = calloc(1, len);
	cr_assert_not_null(big);
	t0 = now_ms();
	cr_assert_eq(mig_send_msg(&b, MIG_STATE, big, len), -1);
	took = now_ms() - t0;
	cr_assert_str_eq(b.err, "sending MIG_STATE: timed out: no progress for 300 ms");
	cr_assert_lt(took, 1500, "took %lld ms", (long long)took);
	free(big);

	/* The peer goes away while we send: an error, never SIGPIPE. */
	mig_conn_close(&a);
	cr_assert_eq(mig_send_all(&b, "x", 1), -1);
	assert_err_has(b.err, "the peer closed the connection");
	mig_conn_close(&b);
}

/* A slow peer that keeps moving: each byte resets the no-progress bound. */
static void *dribble(void *arg)
{
	int fd = *(int *)arg;
	struct mig_hdr h = { MIG_MAGIC, MIG_VERSION, MIG_COMPLETE, 0, 0 };
	for (size_t i = 0; i < sizeof(h); i += 4) {
		if (write(fd, (char *)&h + i, 4) != 4)
			break;
		sleep_ms(100);
	}
	return NULL;
}

Test(migration_proto, slow_peer_is_not_a_stall)
{
	struct mig_conn a, b;
	pair(&a, &b, 300);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, dribble, &a.fd), 0);
	struct mig_hdr h;
	int64_t t0 = now_ms();
	int rc = mig_recv_hdr(&b, &h, NULL, 0, NULL);
	int64_t took = now_ms() - t0;
	pthread_join(t, NULL);
	cr_assert_eq(rc, 0, "%s", b.err);
	cr_assert_eq(h.cmd, MIG_COMPLETE);
	cr_assert_geq(took, 450, "600 ms of dribbling, each gap < the 300 ms bound");
	mig_conn_close(&a);
	mig_conn_close(&b);
}

static _Atomic bool cancel_flag;

static void *cancel_later(void *arg)
{
	(void)arg;
	sleep_ms(200);
	atomic_store(&cancel_flag, true);
	return NULL;
}

Test(migration_proto, cancel)
{
	struct mig_conn a, b;
	pair(&a, &b, 10000);
	b.cancel = &cancel_flag;
	atomic_store(&cancel_flag, false);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, cancel_later, NULL), 0);
	struct mig_hdr h;
	int64_t t0 = now_ms();
	cr_assert_eq(mig_recv_hdr(&b, &h, NULL, 0, NULL), -1);
	int64_t took = now_ms() - t0;
	pthread_join(t, NULL);
	cr_assert_str_eq(b.err, "reading a message header: cancelled");
	cr_assert_geq(took, 190);
	cr_assert_lt(took, 500, "cancel is seen within a 100 ms step (took %lld ms)",
		     (long long)took);

	/* Once set, every call fails at once, even with data ready. */
	raw_hdr(a.fd, MIG_MAGIC, MIG_VERSION, MIG_OK, 0, 0);
	cr_assert_eq(mig_recv_hdr(&b, &h, NULL, 0, NULL), -1);
	assert_err_has(b.err, "cancelled");
	cr_assert_eq(mig_send_all(&b, "x", 1), -1);
	assert_err_has(b.err, "cancelled");
	cr_assert_eq(b.sent, 0);

	/* accept and connect too. */
	char err[256];
	struct mig_url u;
	char path[] = "/tmp/mig-cancel-XXXXXX";
	cr_assert_not_null(mkdtemp(path));
	char url[64];
	snprintf(url, sizeof(url), "unix:%s/s", path);
	cr_assert_eq(mig_url_parse(url, &u, err, sizeof(err)), 0, "%s", err);
	int lfd = mig_listen(&u, err, sizeof(err));
	cr_assert_geq(lfd, 0, "%s", err);
	atomic_store(&cancel_flag, false);
	cr_assert_eq(pthread_create(&t, NULL, cancel_later, NULL), 0);
	t0 = now_ms();
	cr_assert_eq(mig_accept(lfd, 10000, &cancel_flag, err, sizeof(err)), -1);
	took = now_ms() - t0;
	pthread_join(t, NULL);
	cr_assert_str_eq(err, "waiting for a migration connection: cancelled");
	cr_assert_lt(took, 500);
	struct mig_conn c = { .cancel = &cancel_flag };
	cr_assert_eq(mig_connect(&c, &u, 1000), -1);
	assert_err_has(c.err, "cancelled");
	cr_assert_eq(c.fd, -1);
	close(lfd);
	unlink(u.addr.ss_family == AF_UNIX ? ((struct sockaddr_un *)&u.addr)->sun_path : "");
	rmdir(path);
	mig_conn_close(&a);
	mig_conn_close(&b);
}

/* ---- answers ------------------------------------------------------------- */

Test(migration_proto, error_replies)
{
	struct mig_conn a, b;
	pair(&a, &b, 1000);

	/* Control characters in the peer's text are not passed on. */
	cr_assert_eq(mig_reply_error(&b, "bad\nline\x1b[2J"), 0);
	cr_assert_eq(mig_wait_reply(&a), -1);
	cr_assert_str_eq(a.err, "the destination refused: bad?line?[2J");

	cr_assert_eq(mig_reply_error(&b, "%s", ""), 0);
	cr_assert_eq(mig_wait_reply(&a), -1);
	cr_assert_str_eq(a.err, "the destination refused (no reason given)");

	/* A request where an answer belongs. */
	cr_assert_eq(mig_send_msg(&b, MIG_ABANDON, NULL, 0), 0);
	cr_assert_eq(mig_wait_reply(&a), -1);
	cr_assert_str_eq(a.err, "expected MIG_OK or MIG_ERROR in answer, got MIG_ABANDON");

	/* A long text is cut at 4096 bytes, never inside a character: "x" then
	 * 2-byte characters, so byte 4096 would split one. */
	char *s = malloc(6001);
	cr_assert_not_null(s);
	s[0] = 'x';
	for (int i = 1; i < 6000; i += 2) {
		s[i] = (char)0xc3;
		s[i + 1] = (char)0xa9;
	}
	s[5999] = '\0';
	cr_assert_eq(mig_reply_error(&b, "%s", s), 0);
	struct mig_hdr h;
	cr_assert_eq(mig_recv_hdr(&a, &h, NULL, 0, NULL), 0, "%s", a.err);
	cr_assert_eq(h.cmd, MIG_ERROR);
	cr_assert_eq(h.len, 4095);
	char *got = malloc(h.len);
	cr_assert_eq(mig_recv_all(&a, got, h.len), 0);
	cr_assert_eq(memcmp(got, s, h.len), 0);
	free(got);
	free(s);
	mig_conn_close(&a);
	mig_conn_close(&b);
}

/* ---- the memory table ---------------------------------------------------- */

static void table_refused(const struct mig_range *r, uint64_t count, uint64_t len,
			  const char *msg)
{
	char err[512] = "";
	uint64_t data = 77;
	cr_assert_eq(mig_memory_table_check(r, count, len, &data, err, sizeof(err)), -1,
		     "accepted: %s", msg);
	cr_assert_str_eq(err, msg);
	cr_assert_eq(data, 77, "data_bytes untouched on failure");
}

Test(migration_proto, memory_table_rules)
{
	const uint64_t L52 = 1ull << 52;
	char err[512];
	uint64_t data;

	/* Good: data, zero, data; an empty table. */
	struct mig_range ok[3] = { { 0, 8192, 0 }, { 8192, 4096, MIG_RANGE_ZERO },
				   { 0xfffffffff000ull, 4096, 0 } };
	cr_assert_eq(mig_memory_table_check(ok, 3, 8 + 72 + 12288, &data, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(data, 12288);
	cr_assert_eq(mig_memory_table_check(NULL, 0, 8, &data, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(data, 0);
	/* The highest page whose end is below 2^52. */
	struct mig_range top = { L52 - 8192, 4096, MIG_RANGE_ZERO };
	cr_assert_eq(mig_memory_table_check(&top, 1, 32, &data, err, sizeof(err)), 0, "%s", err);

	table_refused(NULL, 65537, 8 + 65537 * 24,
		      "MIG_MEMORY: count 65537 is over the limit of 65536 ranges");
	struct mig_range r[2];
	r[0] = (struct mig_range){ 0x1001, 4096, 0 };
	table_refused(r, 1, 8 + 24 + 4096,
		      "MIG_MEMORY range 0: gpa 0x1001 is not a multiple of 4096");
	r[0] = (struct mig_range){ 0x1000, 0, 0 };
	table_refused(r, 1, 8 + 24, "MIG_MEMORY range 0: len is 0");
	r[0] = (struct mig_range){ 0x1000, 4097, 0 };
	table_refused(r, 1, 8 + 24 + 4097,
		      "MIG_MEMORY range 0: len 0x1001 is not a multiple of 4096");
	r[0] = (struct mig_range){ 0x1000, 4096, 2 };
	table_refused(r, 1, 8 + 24 + 4096,
		      "MIG_MEMORY range 0: flags 0x2 has unknown bits (only MIG_RANGE_ZERO = 1 "
		      "is defined)");
	r[0] = (struct mig_range){ L52 - 4096, 8192, MIG_RANGE_ZERO };
	table_refused(r, 1, 8 + 24,
		      "MIG_MEMORY range 0: gpa 0xffffffffff000 + len 0x2000 does not end below 2^52");
	r[0] = (struct mig_range){ L52, 4096, MIG_RANGE_ZERO };
	table_refused(r, 1, 8 + 24,
		      "MIG_MEMORY range 0: gpa 0x10000000000000 + len 0x1000 does not end below "
		      "2^52");
	/* gpa + len wraps around 2^64. */
	r[0] = (struct mig_range){ 0xfffffffffffff000ull, 0x2000, MIG_RANGE_ZERO };
	table_refused(r, 1, 8 + 24,
		      "MIG_MEMORY range 0: gpa 0xfffffffffffff000 + len 0x2000 does not end below "
		      "2^52");
	r[0] = (struct mig_range){ 0x1000, 0xfffffffffffff000ull, MIG_RANGE_ZERO };
	table_refused(r, 1, 8 + 24,
		      "MIG_MEMORY range 0: gpa 0x1000 + len 0xfffffffffffff000 does not end below "
		      "2^52");
	/* Not sorted; overlapping; touching is fine. */
	r[0] = (struct mig_range){ 0x10000, 4096, MIG_RANGE_ZERO };
	r[1] = (struct mig_range){ 0x0, 4096, MIG_RANGE_ZERO };
	table_refused(r, 2, 8 + 48,
		      "MIG_MEMORY range 1: gpa 0x0 is below the end 0x11000 of range 0: ranges "
		      "must be sorted and not overlap");
	r[1] = (struct mig_range){ 0x10000, 4096, MIG_RANGE_ZERO };
	table_refused(r, 2, 8 + 48,
		      "MIG_MEMORY range 1: gpa 0x10000 is below the end 0x11000 of range 0: "
		      "ranges must be sorted and not overlap");
	r[1] = (struct mig_range){ 0x10000 - 4096, 8192, MIG_RANGE_ZERO };
	table_refused(r, 2, 8 + 48,
		      "MIG_MEMORY range 1: gpa 0xf000 is below the end 0x11000 of range 0: "
		      "ranges must be sorted and not overlap");
	r[1] = (struct mig_range){ 0x11000, 4096, 0 };
	cr_assert_eq(mig_memory_table_check(r, 2, 8 + 48 + 4096, &data, err, sizeof(err)), 0,
		     "%s", err);
	/* The header's len, one byte off either way. */
	table_refused(r, 2, 8 + 48 + 4095,
		      "MIG_MEMORY: the header's len is 4151, but 8 + 2 ranges x 24 + 4096 data "
		      "bytes = 4152");
	table_refused(r, 2, 8 + 48 + 4097,
		      "MIG_MEMORY: the header's len is 4153, but 8 + 2 ranges x 24 + 4096 data "
		      "bytes = 4152");
	/* Zero ranges carry no data. */
	r[1].flags = MIG_RANGE_ZERO;
	table_refused(r, 2, 8 + 48 + 4096,
		      "MIG_MEMORY: the header's len is 4152, but 8 + 2 ranges x 24 + 0 data "
		      "bytes = 56");
}

/* The stream reader checks count against the limit and the header's len
 * before it allocates or reads the table. */
Test(migration_proto, memory_table_from_the_stream)
{
	struct mig_conn a, b;
	struct mig_hdr h;
	struct mig_range *r;
	uint64_t n, data;
	uint64_t count;

	pair(&a, &b, 300);
	raw_hdr(a.fd, MIG_MAGIC, 1, MIG_MEMORY, 8 + 24, 0);
	count = 1ull << 40;
	raw_write(a.fd, &count, 8);
	cr_assert_eq(mig_recv_hdr(&b, &h, NULL, 0, NULL), 0, "%s", b.err);
	cr_assert_eq(mig_recv_memory_table(&b, &h, &r, &n, &data), -1);
	cr_assert_str_eq(b.err, "MIG_MEMORY: count 1099511627776 is over the limit of 65536 ranges");
	mig_conn_close(&a);
	mig_conn_close(&b);

	pair(&a, &b, 300);
	raw_hdr(a.fd, MIG_MAGIC, 1, MIG_MEMORY, 8 + 24, 0);
	count = 2;
	raw_write(a.fd, &count, 8);
	cr_assert_eq(mig_recv_hdr(&b, &h, NULL, 0, NULL), 0, "%s", b.err);
	cr_assert_eq(mig_recv_memory_table(&b, &h, &r, &n, &data), -1);
	cr_assert_str_eq(b.err, "MIG_MEMORY: the header's len 32 is too short for 2 ranges "
		"(8 + 48 bytes)");
	mig_conn_close(&a);
	mig_conn_close(&b);

	/* A table that fails a rule is refused with the rule's message. */
	pair(&a, &b, 300);
	struct mig_range bad = { 0x1000, 4096, 4 };
	raw_hdr(a.fd, MIG_MAGIC, 1, MIG_MEMORY, 8 + 24 + 4096, 0);
	count = 1;
	raw_write(a.fd, &count, 8);
	raw_write(a.fd, &bad, sizeof(bad));
	cr_assert_eq(mig_recv_hdr(&b, &h, NULL, 0, NULL), 0, "%s", b.err);
	cr_assert_eq(mig_recv_memory_table(&b, &h, &r, &n, &data), -1);
	assert_err_has(b.err, "range 0: flags 0x4 has unknown bits");
	cr_assert_null(r);

	/* Not a MIG_MEMORY header. */
	h.cmd = MIG_STATE;
	cr_assert_eq(mig_recv_memory_table(&b, &h, &r, &n, &data), -1);
	cr_assert_str_eq(b.err, "expected MIG_MEMORY, got MIG_STATE");
	mig_conn_close(&a);
	mig_conn_close(&b);

	/* An empty table: no allocation, 8 bytes of payload. */
	pair(&a, &b, 300);
	count = 0;
	cr_assert_eq(mig_send_msg(&a, MIG_MEMORY, &count, 8), 0);
	cr_assert_eq(mig_recv_hdr(&b, &h, NULL, 0, NULL), 0, "%s", b.err);
	cr_assert_eq(mig_recv_memory_table(&b, &h, &r, &n, &data), 0, "%s", b.err);
	cr_assert_null(r);
	cr_assert_eq(n, 0);
	cr_assert_eq(data, 0);
	mig_conn_close(&a);
	mig_conn_close(&b);
}

/* ---- the memfd table ----------------------------------------------------- */

static void memfd_refused(const struct mig_memfd_head *head, const struct mig_memfd *m,
			  uint64_t len, unsigned nfds, unsigned closed, const char *msg)
{
	char err[512] = "";
	cr_assert_eq(mig_memfd_table_check(head, m, len, nfds, closed, err, sizeof(err)), -1,
		     "accepted: %s", msg);
	cr_assert_str_eq(err, msg);
}

Test(migration_proto, memfd_table_rules)
{
	struct mig_memfd m[2] = { { 0, 0x100000, 0, 0, 0 }, { 0x100000000ull, 0x1000, 0x2000, 3, 0 } };
	struct mig_memfd_head head = { 2, 0 };
	char err[512];
	cr_assert_eq(mig_memfd_table_check(&head, m, 8 + 64, 2, 0, err, sizeof(err)), 0, "%s", err);

	struct mig_memfd_head h0 = { 0, 0 }, h65 = { 65, 0 }, hp = { 2, 1 };
	memfd_refused(&h0, m, 8, 0, 0, "MIG_MEMORY_FD: count 0 is not 1..64");
	memfd_refused(&h65, m, 8 + 65 * 32, 65, 0, "MIG_MEMORY_FD: count 65 is not 1..64");
	memfd_refused(&hp, m, 8 + 64, 2, 0, "MIG_MEMORY_FD: pad is 0x1 (must be 0)");
	memfd_refused(&head, m, 8 + 32, 2, 0,
		      "MIG_MEMORY_FD: the header's len is 40, but 8 + 2 entries x 32 = 72");
	memfd_refused(&head, m, 8 + 64, 1, 0,
		      "MIG_MEMORY_FD: 1 file descriptors came with the header for count 2: "
		      "exactly count are expected");
	memfd_refused(&head, m, 8 + 64, 3, 0,
		      "MIG_MEMORY_FD: 3 file descriptors came with the header for count 2: "
		      "exactly count are expected");
	memfd_refused(&head, m, 8 + 64, 2, 1,
		      "MIG_MEMORY_FD: 3 file descriptors came with the header for count 2: "
		      "exactly count are expected");

	struct mig_memfd b[2];
	memcpy(b, m, sizeof(m));
	b[1].pad = 5;
	memfd_refused(&head, b, 72, 2, 0, "MIG_MEMORY_FD entry 1: pad is 0x5 (must be 0)");
	memcpy(b, m, sizeof(m));
	b[1].gpa += 512;
	memfd_refused(&head, b, 72, 2, 0,
		      "MIG_MEMORY_FD entry 1: gpa 0x100000200 is not a multiple of 4096");
	memcpy(b, m, sizeof(m));
	b[0].size = 0;
	memfd_refused(&head, b, 72, 2, 0,
		      "MIG_MEMORY_FD entry 0: size 0x0 is not a positive multiple of 4096");
	b[0].size = 0x1800;
	memfd_refused(&head, b, 72, 2, 0,
		      "MIG_MEMORY_FD entry 0: size 0x1800 is not a positive multiple of 4096");
	memcpy(b, m, sizeof(m));
	b[1].offset = 0x10;
	memfd_refused(&head, b, 72, 2, 0,
		      "MIG_MEMORY_FD entry 1: offset 0x10 is not a multiple of 4096");
	memcpy(b, m, sizeof(m));
	b[1].gpa = (1ull << 52) - 0x1000;
	b[1].size = 0x2000;
	memfd_refused(&head, b, 72, 2, 0,
		      "MIG_MEMORY_FD entry 1: gpa 0xffffffffff000 + size 0x2000 does not end "
		      "below 2^52");

	/* From the stream: a count that disagrees with the header's len is
	 * refused before the entries are read. */
	struct mig_conn x, y;
	pair(&x, &y, 300);
	raw_hdr(x.fd, MIG_MAGIC, 1, MIG_MEMORY_FD, 8 + 32, 0);
	struct mig_memfd_head h3 = { 3, 0 };
	raw_write(x.fd, &h3, sizeof(h3));
	struct mig_hdr h;
	unsigned n;
	cr_assert_eq(mig_recv_hdr(&y, &h, NULL, 0, NULL), 0, "%s", y.err);
	cr_assert_eq(mig_recv_memfd_table(&y, &h, 0, b, &n), -1);
	cr_assert_str_eq(y.err, "MIG_MEMORY_FD: the header's len is 40, but 8 + 3 entries x 32 = 104");
	mig_conn_close(&x);
	mig_conn_close(&y);
}

/* ---- listen, accept, connect --------------------------------------------- */

/* Connect, accept, one request and its answer, both ways counted. */
static void exchange(const struct mig_url *u, int lfd)
{
	struct mig_conn s = { .timeout_ms = 2000 };
	cr_assert_eq(mig_connect(&s, u, 2000), 0, "%s", s.err);
	cr_assert_geq(s.fd, 0);
	cr_assert_eq(fcntl(s.fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	char err[256];
	int fd = mig_accept(lfd, 2000, NULL, err, sizeof(err));
	cr_assert_geq(fd, 0, "%s", err);
	cr_assert_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	cr_assert_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
	struct mig_conn r = { .fd = fd, .timeout_ms = 2000 };
	const char *j = "{\"vmm\":\"0.1.0\",\"local\":true}";
	cr_assert_eq(mig_send_msg(&s, MIG_START, j, strlen(j)), 0, "%s", s.err);
	struct mig_hdr h;
	cr_assert_eq(mig_recv_hdr(&r, &h, NULL, 0, NULL), 0, "%s", r.err);
	char buf[64] = "";
	cr_assert_eq(mig_recv_all(&r, buf, h.len), 0, "%s", r.err);
	cr_assert_str_eq(buf, j);
	cr_assert_eq(mig_reply_ok(&r), 0, "%s", r.err);
	cr_assert_eq(mig_wait_reply(&s), 0, "%s", s.err);
	cr_assert_eq(s.sent, r.received);
	cr_assert_eq(s.received, sizeof(struct mig_hdr));
	mig_conn_close(&s);
	mig_conn_close(&r);
}

Test(migration_proto, unix_listen_accept_connect)
{
	char dir[] = "/tmp/mig-unix-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char path[128], url[160], err[256];
	snprintf(path, sizeof(path), "%s/mig.sock", dir);
	snprintf(url, sizeof(url), "unix:%s", path);
	struct mig_url u;
	cr_assert_eq(mig_url_parse(url, &u, err, sizeof(err)), 0, "%s", err);

	/* Nobody listening yet. */
	struct mig_conn c = { .timeout_ms = 500 };
	cr_assert_eq(mig_connect(&c, &u, 500), -1);
	assert_err_has(c.err, "No such file or directory");
	assert_err_has(c.err, path);

	int lfd = mig_listen(&u, err, sizeof(err));
	cr_assert_geq(lfd, 0, "%s", err);
	cr_assert_eq(fcntl(lfd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	exchange(&u, lfd);

	/* No one connects: the accept times out within its bound. */
	int64_t t0 = now_ms();
	cr_assert_eq(mig_accept(lfd, 250, NULL, err, sizeof(err)), -1);
	int64_t took = now_ms() - t0;
	cr_assert_str_eq(err, "timed out after 250 ms waiting for a migration connection");
	cr_assert_geq(took, 240);
	cr_assert_lt(took, 800);
	close(lfd);

	/* The stale socket left behind is replaced ... */
	lfd = mig_listen(&u, err, sizeof(err));
	cr_assert_geq(lfd, 0, "%s", err);
	exchange(&u, lfd);
	close(lfd);
	unlink(path);

	/* ... any other file is not. */
	int f = open(path, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(f, 0);
	cr_assert_eq(write(f, "keep", 4), 4);
	close(f);
	cr_assert_eq(mig_listen(&u, err, sizeof(err)), -1);
	assert_err_has(err, "exists and is not a socket: refusing to replace it");
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert(S_ISREG(st.st_mode) && st.st_size == 4, "the file is untouched");
	unlink(path);

	/* A directory that does not exist. */
	char url2[200];
	snprintf(url2, sizeof(url2), "unix:%s/no/such/dir/s", dir);
	cr_assert_eq(mig_url_parse(url2, &u, err, sizeof(err)), 0);
	cr_assert_eq(mig_listen(&u, err, sizeof(err)), -1);
	assert_err_has(err, "bind: No such file or directory");
	rmdir(dir);
}

Test(migration_proto, tcp_listen_accept_connect)
{
	char err[256];
	struct mig_url u;
	cr_assert_eq(mig_url_parse("tcp:127.0.0.1:1", &u, err, sizeof(err)), 0, "%s", err);
	((struct sockaddr_in *)&u.addr)->sin_port = 0;   /* any free port */
	int lfd = mig_listen(&u, err, sizeof(err));
	cr_assert_geq(lfd, 0, "%s", err);
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&a, &al), 0);
	char url[64];
	snprintf(url, sizeof(url), "tcp:127.0.0.1:%u", ntohs(a.sin_port));
	struct mig_url cu;
	cr_assert_eq(mig_url_parse(url, &cu, err, sizeof(err)), 0, "%s", err);
	exchange(&cu, lfd);

	/* Twice on the same listener. */
	exchange(&cu, lfd);

	/* fds cannot travel over tcp: refused before anything is sent. */
	struct mig_conn s = { .timeout_ms = 1000 };
	cr_assert_eq(mig_connect(&s, &cu, 1000), 0, "%s", s.err);
	int fd = mig_accept(lfd, 1000, NULL, err, sizeof(err));
	cr_assert_geq(fd, 0, "%s", err);
	int zero = 0;
	cr_assert_eq(mig_send_hdr(&s, MIG_MEMORY_FD, 40, &zero, 1), -1);
	assert_err_has(s.err, "only be sent over a unix socket");
	cr_assert_eq(s.sent, 0);
	mig_conn_close(&s);
	close(fd);
	close(lfd);

	/* Nobody listening there any more. */
	cr_assert_eq(mig_connect(&s, &cu, 1000), -1);
	assert_err_has(s.err, "Connection refused");
	assert_err_has(s.err, url);
	cr_assert_eq(s.fd, -1);
}
