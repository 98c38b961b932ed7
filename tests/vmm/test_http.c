// SPDX-License-Identifier: GPL-2.0-only
/*
 * test_http.c - the HTTP/1.1 layer of the control API (vmm/api/http.h): the
 * parser fed whole, byte by byte and in pieces; keep-alive, pipelining and
 * closing; Content-Length and chunked bodies; 100-continue in the shape
 * libvirt's libcurl sends; every error class with its status and the limits
 * at their edges; responses formatted and written to sockets, short writes
 * and a vanished peer included.
 */
#include <criterion/criterion.h>

#include "api/http.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct http_conn *c;
static const struct http_request *r;

static void setup(void)
{
	c = http_conn_new();
	cr_assert_not_null(c);
	r = NULL;
}

static void teardown(void)
{
	http_conn_free(c);
}

TestSuite(http, .init = setup, .fini = teardown);

/* ---- helpers ------------------------------------------------------------ */

/* Feed n bytes (draining nothing: they must fit) and report the next event. */
static enum http_event feed_n(const void *p, size_t n)
{
	cr_assert_eq(http_conn_feed(c, p, n), n, "input buffer full");
	return http_conn_next(c, &r);
}

static enum http_event feed(const char *s)
{
	return feed_n(s, strlen(s));
}

/* Feed s and expect HTTP_ERROR with that status; the error is sticky. */
static void expect_error(const char *s, int status)
{
	enum http_event ev = feed(s);
	const char *msg;
	cr_assert_eq(ev, HTTP_ERROR, "event %d for <%s>", ev, s);
	cr_assert_eq(http_conn_error(c, &msg), status, "status %d (%s) for <%s>",
		     http_conn_error(c, NULL), msg, s);
	cr_assert(msg && *msg);
	cr_assert_eq(http_conn_next(c, &r), HTTP_ERROR);
	cr_assert_null(r);
	cr_assert_eq(http_conn_feed(c, "GET / HTTP/1.1\r\n\r\n", 18), 18);
	cr_assert_eq(http_conn_next(c, &r), HTTP_ERROR);
}

/* A fresh connection for tests that try several inputs. */
static void renew(void)
{
	http_conn_free(c);
	c = http_conn_new();
	cr_assert_not_null(c);
}

static void expect_error_fresh(const char *s, int status)
{
	renew();
	expect_error(s, status);
}

static enum http_event feed_bytewise(const char *s)
{
	size_t n = strlen(s);
	for (size_t i = 0; i + 1 < n; i++) {
		enum http_event ev = feed_n(s + i, 1);
		cr_assert_eq(ev, HTTP_NEED_MORE, "event %d after byte %zu", ev, i);
	}
	return feed_n(s + n - 1, 1);
}

/* ---- requests ----------------------------------------------------------- */

Test(http, simple_get)
{
	cr_assert_eq(feed("GET /api/v1/vm.info HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n"),
		     HTTP_REQUEST);
	cr_assert_str_eq(r->method, "GET");
	cr_assert_str_eq(r->path, "/api/v1/vm.info");
	cr_assert_null(r->query);
	cr_assert_eq(r->version, 11);
	cr_assert_eq(r->nheaders, 2);
	cr_assert_str_eq(r->headers[0].name, "Host");
	cr_assert_str_eq(r->headers[1].value, "*/*");
	cr_assert_str_eq(http_header(r, "host"), "localhost");
	cr_assert_str_eq(http_header(r, "ACCEPT"), "*/*");
	cr_assert_null(http_header(r, "Content-Length"));
	cr_assert_eq(r->body_len, 0);
	cr_assert_str_eq(r->body, "");
	cr_assert(r->keep_alive);
	cr_assert_not(r->chunked);
	cr_assert_not(r->expect_continue);
	cr_assert_eq(http_conn_next(c, &r), HTTP_NEED_MORE);
	cr_assert_null(r);
}

Test(http, get_in_pieces_and_bytewise)
{
	cr_assert_eq(feed("GET /a HT"), HTTP_NEED_MORE);
	cr_assert_eq(feed("TP/1.1\r\nHo"), HTTP_NEED_MORE);
	cr_assert_eq(feed("st: x\r\n\r"), HTTP_NEED_MORE);
	cr_assert_eq(feed("\n"), HTTP_REQUEST);
	cr_assert_str_eq(r->path, "/a");
	cr_assert_str_eq(http_header(r, "Host"), "x");
	cr_assert_eq(feed_bytewise("GET /b?c=d HTTP/1.1\r\n\r\n"), HTTP_REQUEST);
	cr_assert_str_eq(r->path, "/b");
	cr_assert_str_eq(r->query, "c=d");
}

Test(http, targets)
{
	cr_assert_eq(feed("GET http://localhost/api/v1/vm.info?x=1 HTTP/1.1\r\n\r\n"), HTTP_REQUEST);
	cr_assert_str_eq(r->path, "/api/v1/vm.info");
	cr_assert_str_eq(r->query, "x=1");
	cr_assert_eq(feed("GET HTTP://localhost HTTP/1.1\r\n\r\n"), HTTP_REQUEST);
	cr_assert_str_eq(r->path, "/");
	cr_assert_null(r->query);
	cr_assert_eq(feed("GET https://h:80?q HTTP/1.1\r\n\r\n"), HTTP_REQUEST);
	cr_assert_str_eq(r->path, "/");
	cr_assert_str_eq(r->query, "q");
	cr_assert_eq(feed("GET /a/../b?%20 HTTP/1.1\r\n\r\n"), HTTP_REQUEST);
	cr_assert_str_eq(r->path, "/a/../b", "no normalisation");
	cr_assert_str_eq(r->query, "%20", "no decoding");
	expect_error("GET * HTTP/1.1\r\n\r\n", 400);
	expect_error_fresh("GET foo HTTP/1.1\r\n\r\n", 400);
	expect_error_fresh("GET ftp://h/x HTTP/1.1\r\n\r\n", 400);
	expect_error_fresh("GET /a\x01" "b HTTP/1.1\r\n\r\n", 400);
	expect_error_fresh("GET /a\x80 HTTP/1.1\r\n\r\n", 400);
}

Test(http, header_values_trimmed_and_first_wins)
{
	cr_assert_eq(feed("GET / HTTP/1.1\r\nX-Foo: \t bar baz \t\r\nEmpty:\r\nx-foo: second\r\n"
			  "Odd: caf\xc3\xa9\r\n\r\n"), HTTP_REQUEST);
	cr_assert_eq(r->nheaders, 4);
	cr_assert_str_eq(http_header(r, "x-foo"), "bar baz");
	cr_assert_str_eq(http_header(r, "empty"), "");
	cr_assert_str_eq(r->headers[2].value, "second");
	cr_assert_str_eq(http_header(r, "Odd"), "caf\xc3\xa9", "obs-text is allowed");
}

Test(http, bare_lf_and_leading_empty_lines)
{
	cr_assert_eq(feed("\r\n\nGET /x HTTP/1.1\nA: b\n\n"), HTTP_REQUEST);
	cr_assert_str_eq(r->path, "/x");
	cr_assert_str_eq(http_header(r, "a"), "b");
}

Test(http, put_content_length_bytewise)
{
	const char *req = "PUT /api/v1/vm.create HTTP/1.1\r\nHost: localhost\r\n"
			  "Content-Type: application/json\r\nContent-Length: 27\r\n\r\n"
			  "{\"cpus\":{\"boot_vcpus\":2}}\r\n";
	cr_assert_eq(feed_bytewise(req), HTTP_REQUEST);
	cr_assert_str_eq(r->method, "PUT");
	cr_assert_eq(r->body_len, 27);
	cr_assert_eq(memcmp(r->body, "{\"cpus\":{\"boot_vcpus\":2}}\r\n", 27), 0);
	cr_assert_eq(r->body[27], '\0');
	cr_assert_not(r->chunked);
	cr_assert_eq(http_conn_next(c, &r), HTTP_NEED_MORE);
}

/* A body larger than the input buffer, fed in uneven pieces. */
Test(http, put_large_body_in_pieces)
{
	size_t blen = 300000;
	char head[128];
	int hl = snprintf(head, sizeof(head), "PUT /big HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", blen);
	size_t total = (size_t)hl + blen;
	char *msg = malloc(total);
	memcpy(msg, head, (size_t)hl);
	for (size_t i = 0; i < blen; i++)
		msg[hl + i] = (char)('a' + i % 26);
	size_t pos = 0, piece = 1;
	enum http_event ev = HTTP_NEED_MORE;
	while (pos < total) {
		size_t n = total - pos < piece ? total - pos : piece;
		size_t took = http_conn_feed(c, msg + pos, n);
		cr_assert_gt(took, 0);
		pos += took;
		piece = piece * 7 % 40009 + 1;
		ev = http_conn_next(c, &r);
		if (pos < total)
			cr_assert_eq(ev, HTTP_NEED_MORE);
	}
	cr_assert_eq(ev, HTTP_REQUEST);
	cr_assert_eq(r->body_len, blen);
	cr_assert_eq(memcmp(r->body, msg + hl, blen), 0);
	free(msg);
}

Test(http, body_at_the_limit)
{
	size_t blen = HTTP_MAX_BODY_BYTES;
	char head[128];
	snprintf(head, sizeof(head), "PUT / HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", blen);
	cr_assert_eq(feed(head), HTTP_NEED_MORE);
	char *body = malloc(blen);
	memset(body, 'x', blen);
	enum http_event ev = HTTP_NEED_MORE;
	for (size_t pos = 0; pos < blen;) {
		pos += http_conn_feed(c, body + pos, blen - pos);
		ev = http_conn_next(c, &r);
	}
	cr_assert_eq(ev, HTTP_REQUEST);
	cr_assert_eq(r->body_len, blen);
	cr_assert_eq(r->body[blen], '\0');
	free(body);
}

Test(http, content_length_list_of_equal_values)
{
	cr_assert_eq(feed("PUT / HTTP/1.1\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc"),
		     HTTP_REQUEST);
	cr_assert_str_eq(r->body, "abc");
	cr_assert_eq(feed("PUT / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), HTTP_REQUEST);
	cr_assert_eq(r->body_len, 0);
	cr_assert_eq(feed("PUT / HTTP/1.1\r\nContent-Length: 0002\r\n\r\nab"), HTTP_REQUEST);
	cr_assert_str_eq(r->body, "ab");
}

static const char chunked_req[] =
	"PUT /api/v1/vm.create HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
	"5;foo=bar\r\nhello\r\n"
	"6 ; a=\"q;x\"\r\n world\r\n"
	"A\r\n0123456789\r\n"
	"0;last\r\nX-Trailer: 1\r\nY: 2\r\n\r\n";

static void check_chunked(void)
{
	cr_assert_str_eq(r->path, "/api/v1/vm.create");
	cr_assert(r->chunked);
	cr_assert_eq(r->body_len, 21);
	cr_assert_str_eq(r->body, "hello world0123456789");
	cr_assert_null(http_header(r, "X-Trailer"), "trailers are discarded");
	cr_assert_eq(r->nheaders, 2);
}

Test(http, chunked_extensions_and_trailers)
{
	cr_assert_eq(feed(chunked_req), HTTP_REQUEST);
	check_chunked();
	cr_assert_eq(http_conn_next(c, &r), HTTP_NEED_MORE);
	cr_assert_eq(feed_bytewise(chunked_req), HTTP_REQUEST);
	check_chunked();
}

Test(http, chunked_bare_lf_and_hex_case)
{
	cr_assert_eq(feed("PUT / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"
			  "a\nabcdefghij\nB\r\nabcdefghijk\r\n0\n\n"), HTTP_REQUEST);
	cr_assert_eq(r->body_len, 21);
	cr_assert_str_eq(r->body, "abcdefghijabcdefghijk");
}

/* libvirt 9.0's ch driver through libcurl: a bodiless PUT. */
static const char libcurl_head[] = "PUT /api/v1/vm.boot HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n"
				   "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
				   "Expect: 100-continue\r\n\r\n";

Test(http, libcurl_expect_continue)
{
	cr_assert_eq(feed(libcurl_head), HTTP_CONTINUE, "100 Continue before the body");
	cr_assert_not_null(r);
	cr_assert(r->expect_continue);
	cr_assert_str_eq(r->path, "/api/v1/vm.boot");
	cr_assert_str_eq(http_header(r, "content-type"), "application/json");
	cr_assert_eq(r->body_len, 0);
	cr_assert_eq(http_conn_next(c, &r), HTTP_NEED_MORE, "the body has not arrived");
	cr_assert_eq(feed("0\r\n"), HTTP_NEED_MORE);
	cr_assert_eq(feed("\r\n"), HTTP_REQUEST);
	cr_assert_str_eq(r->method, "PUT");
	cr_assert_eq(r->body_len, 0);
	cr_assert(r->chunked);
	cr_assert(r->keep_alive);
	cr_assert_eq(http_conn_next(c, &r), HTTP_NEED_MORE);
	/* The same again with the body already there: 100 once, then the request. */
	char all[512];
	snprintf(all, sizeof(all), "%s0\r\n\r\n", libcurl_head);
	cr_assert_eq(feed(all), HTTP_CONTINUE);
	cr_assert_eq(http_conn_next(c, &r), HTTP_REQUEST);
	cr_assert(r->expect_continue);
	cr_assert_eq(http_conn_next(c, &r), HTTP_NEED_MORE);
}

Test(http, libcurl_over_a_socket)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	cr_assert_eq(http_conn_read(c, sv[0]), -EAGAIN);
	cr_assert_eq(write(sv[1], libcurl_head, strlen(libcurl_head)), (ssize_t)strlen(libcurl_head));
	cr_assert_eq(http_conn_read(c, sv[0]), (ssize_t)strlen(libcurl_head));
	cr_assert_eq(http_conn_next(c, &r), HTTP_CONTINUE);
	cr_assert_eq(http_send_continue(sv[0]), 0);
	char buf[256];
	ssize_t n = read(sv[1], buf, sizeof(buf) - 1);
	cr_assert_eq(n, 25);
	buf[n] = '\0';
	cr_assert_str_eq(buf, "HTTP/1.1 100 Continue\r\n\r\n");
	cr_assert_eq(http_conn_next(c, &r), HTTP_NEED_MORE);
	cr_assert_eq(write(sv[1], "0\r\n\r\n", 5), 5);
	cr_assert_eq(http_conn_read(c, sv[0]), 5);
	cr_assert_eq(http_conn_next(c, &r), HTTP_REQUEST);
	cr_assert_eq(http_respond(sv[0], 204, NULL, NULL, 0, r->keep_alive), 0);
	n = read(sv[1], buf, sizeof(buf) - 1);
	buf[n] = '\0';
	cr_assert_str_eq(buf, "HTTP/1.1 204 No Content\r\n\r\n");
	close(sv[1]);
	cr_assert_eq(http_conn_read(c, sv[0]), 0, "end of file");
	close(sv[0]);
}

/* Send len bytes of req with nfds copies of /dev/null's fd (SCM_RIGHTS). */
static void send_with_fds(int sock, const char *req, unsigned nfds)
{
	int fds[16];
	union {
		char buf[CMSG_SPACE(sizeof(fds))];
		struct cmsghdr align;
	} ctl;
	for (unsigned i = 0; i < nfds; i++)
		cr_assert_geq(fds[i] = open("/dev/null", O_RDONLY), 0);
	struct iovec iov = { .iov_base = (void *)req, .iov_len = strlen(req) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds) {
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
	}
	cr_assert_eq(sendmsg(sock, &msg, 0), (ssize_t)strlen(req));
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
}

/* vm.add-net's tap fds (issue 15): received with the request's bytes,
 * close-on-exec; more than the caller takes are discarded and said so. */
Test(http, fds_passed_with_a_request)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	const char *req = "PUT /api/v1/vm.add-net HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
	int fds[HTTP_MAX_RECV_FDS];
	size_t nfds = 99;
	bool dropped = true;
	send_with_fds(sv[1], req, 1);
	cr_assert_eq(http_conn_recv(c, sv[0], fds, HTTP_MAX_RECV_FDS, &nfds, &dropped),
		     (ssize_t)strlen(req));
	cr_assert_eq(nfds, 1);
	cr_assert_not(dropped);
	cr_assert_eq(fcntl(fds[0], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC, "close-on-exec");
	struct stat a, b;
	cr_assert_eq(fstat(fds[0], &a), 0);
	cr_assert_eq(stat("/dev/null", &b), 0);
	cr_assert_eq(a.st_rdev, b.st_rdev, "the fd is the one sent");
	close(fds[0]);
	cr_assert_eq(http_conn_next(c, &r), HTTP_REQUEST);
	cr_assert_str_eq(r->path, "/api/v1/vm.add-net");
	cr_assert_eq(http_conn_next(c, &r), HTTP_NEED_MORE);
	/* Without fds: none reported. */
	send_with_fds(sv[1], req, 0);
	cr_assert_eq(http_conn_recv(c, sv[0], fds, HTTP_MAX_RECV_FDS, &nfds, &dropped),
		     (ssize_t)strlen(req));
	cr_assert_eq(nfds, 0);
	cr_assert_not(dropped);
	cr_assert_eq(http_conn_next(c, &r), HTTP_REQUEST);
	/* Five fds, room for two: two received, the rest gone. */
	send_with_fds(sv[1], req, 5);
	cr_assert_eq(http_conn_recv(c, sv[0], fds, 2, &nfds, &dropped), (ssize_t)strlen(req));
	cr_assert_eq(nfds, 2);
	cr_assert(dropped);
	close(fds[0]);
	close(fds[1]);
	cr_assert_eq(http_conn_next(c, &r), HTTP_REQUEST);
	cr_assert_eq(http_conn_recv(c, sv[0], fds, 2, &nfds, &dropped), -EAGAIN);
	close(sv[1]);
	close(sv[0]);
	/* Not a socket: a plain read. */
	int p[2];
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(write(p[1], "GET / HTTP/1.1\r\n\r\n", 18), 18);
	cr_assert_eq(http_conn_recv(c, p[0], fds, 2, &nfds, &dropped), 18);
	cr_assert_eq(nfds, 0);
	close(p[0]);
	close(p[1]);
}

Test(http, expect_continue_only_with_a_body_and_http11)
{
	cr_assert_eq(feed("GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"), HTTP_REQUEST);
	cr_assert_not(r->expect_continue);
	cr_assert_eq(feed("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n"),
		     HTTP_REQUEST);
	cr_assert_not(r->expect_continue);
	cr_assert_eq(feed("PUT / HTTP/1.0\r\nConnection: keep-alive\r\nExpect: 100-continue\r\n"
			  "Content-Length: 2\r\n\r\nab"), HTTP_REQUEST);
	cr_assert_not(r->expect_continue);
	cr_assert_eq(feed("PUT / HTTP/1.1\r\nExpect: 100-CONTINUE\r\nContent-Length: 2\r\n\r\n"),
		     HTTP_CONTINUE);
	cr_assert_eq(feed("ab"), HTTP_REQUEST);
	cr_assert_eq(feed("PUT / HTTP/1.1\r\nExpect: something-else\r\nContent-Length: 2\r\n\r\n"),
		     HTTP_NEED_MORE, "unknown expectations are ignored");
}

Test(http, expect_continue_oversize_is_413_not_100)
{
	char req[256];
	snprintf(req, sizeof(req), "PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n",
		 HTTP_MAX_BODY_BYTES + 1);
	expect_error(req, 413);
}

Test(http, pipelined_keep_alive)
{
	cr_assert_eq(feed("GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
			  "PUT /two HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody"
			  "PUT /three HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"
			  "GET /fo"),
		     HTTP_REQUEST);
	cr_assert_str_eq(r->path, "/one");
	cr_assert(r->keep_alive);
	cr_assert_eq(http_conn_next(c, &r), HTTP_REQUEST);
	cr_assert_str_eq(r->path, "/two");
	cr_assert_str_eq(r->body, "body");
	cr_assert_eq(http_conn_next(c, &r), HTTP_REQUEST);
	cr_assert_str_eq(r->path, "/three");
	cr_assert_str_eq(r->body, "xyz");
	cr_assert_eq(http_conn_next(c, &r), HTTP_NEED_MORE);
	cr_assert_eq(feed("ur HTTP/1.1\r\n\r\n"), HTTP_REQUEST);
	cr_assert_str_eq(r->path, "/four");
}

/* http_conn_partial(): what api.c's per-request deadline runs on (issue
 * 13, finding 7).  Any byte of a request not reported yet counts, blank
 * lines before a request line too (else a client could trickle those). */
Test(http, partial_request)
{
	cr_assert(!http_conn_partial(c), "a fresh connection");
	cr_assert_eq(feed("\r\n"), HTTP_NEED_MORE);
	cr_assert(http_conn_partial(c), "a blank line before a request line");
	cr_assert_eq(feed("GET /a HTTP/1.1\r\nX-Slow: a"), HTTP_NEED_MORE);
	cr_assert(http_conn_partial(c), "half a header line");
	cr_assert_eq(feed("a\r\n\r\n"), HTTP_REQUEST);
	cr_assert_eq(http_conn_next(c, &r), HTTP_NEED_MORE);
	cr_assert(!http_conn_partial(c), "between requests");
	cr_assert_eq(feed("PUT /b HTTP/1.1\r\nContent-Length: 4\r\n\r\nbo"), HTTP_NEED_MORE);
	cr_assert(http_conn_partial(c), "half a body");
	cr_assert_eq(feed("dy"), HTTP_REQUEST);
	cr_assert_eq(http_conn_next(c, &r), HTTP_NEED_MORE);
	cr_assert(!http_conn_partial(c));
	cr_assert_eq(feed("PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n"),
		     HTTP_NEED_MORE);
	cr_assert(http_conn_partial(c), "chunks without the last one");
	cr_assert_eq(feed("0\r\n\r\nGET /d HTTP/1.1\r\n"), HTTP_REQUEST);
	cr_assert(http_conn_partial(c), "a pipelined request's bytes wait behind the answer");
	cr_assert_eq(http_conn_next(c, &r), HTTP_NEED_MORE);
	cr_assert(http_conn_partial(c), "the pipelined request is half there");
	cr_assert_eq(feed("Connection: close\r\n\r\n"), HTTP_REQUEST);
	cr_assert_eq(http_conn_next(c, &r), HTTP_CLOSE);
	cr_assert(!http_conn_partial(c), "closed");
	renew();
	expect_error("BAD\r\n", 400);
	cr_assert(!http_conn_partial(c), "after an error");
}

/* More pipelined requests than the input buffer holds: feed, drain, feed. */
Test(http, many_pipelined_requests)
{
	size_t cap = 2000 * 40, len = 0;
	char *all = malloc(cap);
	for (int i = 0; i < 2000; i++)
		len += (size_t)snprintf(all + len, cap - len, "GET /r%d HTTP/1.1\r\n\r\n", i);
	cr_assert_gt(len, (size_t)HTTP_IN_BUF_BYTES);
	int seen = 0;
	for (size_t pos = 0; pos < len;) {
		size_t took = http_conn_feed(c, all + pos, len - pos);
		cr_assert_gt(took, 0);
		pos += took;
		enum http_event ev;
		while ((ev = http_conn_next(c, &r)) == HTTP_REQUEST) {
			char want[32];
			snprintf(want, sizeof(want), "/r%d", seen++);
			cr_assert_str_eq(r->path, want);
		}
		cr_assert_eq(ev, HTTP_NEED_MORE);
	}
	cr_assert_eq(seen, 2000);
	free(all);
}

Test(http, connection_close)
{
	const char *s = "GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /next HTTP/1.1\r\n\r\n";
	cr_assert_eq(feed(s), HTTP_REQUEST);
	cr_assert_not(r->keep_alive);
	cr_assert_eq(http_conn_next(c, &r), HTTP_CLOSE, "nothing after Connection: close");
	cr_assert_null(r);
	cr_assert_eq(http_conn_next(c, &r), HTTP_CLOSE);
	cr_assert_eq(http_conn_feed(c, "GET / HTTP/1.1\r\n\r\n", 18), 18, "dropped");
	cr_assert_eq(http_conn_next(c, &r), HTTP_CLOSE);
	char *more = calloc(1, HTTP_IN_BUF_BYTES * 2);
	cr_assert_eq(http_conn_feed(c, more, HTTP_IN_BUF_BYTES * 2), HTTP_IN_BUF_BYTES * 2,
		     "dropped, not buffered");
	free(more);
	cr_assert_eq(http_conn_next(c, &r), HTTP_CLOSE);
	renew();
	cr_assert_eq(feed("GET / HTTP/1.1\r\nConnection: keep-alive, CLOSE\r\n\r\n"), HTTP_REQUEST);
	cr_assert_not(r->keep_alive);
	renew();
	cr_assert_eq(feed("GET / HTTP/1.1\r\nConnection: Upgrade\r\nConnection: close\r\n\r\n"),
		     HTTP_REQUEST);
	cr_assert_not(r->keep_alive);
}

Test(http, http10)
{
	cr_assert_eq(feed("GET /old HTTP/1.0\r\n\r\nGET /x HTTP/1.0\r\n\r\n"), HTTP_REQUEST);
	cr_assert_eq(r->version, 10);
	cr_assert_not(r->keep_alive);
	cr_assert_eq(http_conn_next(c, &r), HTTP_CLOSE);
	renew();
	cr_assert_eq(feed("PUT /a HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx"
			  "GET /b HTTP/1.0\r\n\r\n"), HTTP_REQUEST);
	cr_assert(r->keep_alive);
	cr_assert_str_eq(r->body, "x");
	cr_assert_eq(http_conn_next(c, &r), HTTP_REQUEST);
	cr_assert_str_eq(r->path, "/b");
	cr_assert_not(r->keep_alive);
	cr_assert_eq(http_conn_next(c, &r), HTTP_CLOSE);
}

Test(http, later_minor_version_is_11)
{
	cr_assert_eq(feed("GET / HTTP/1.9\r\n\r\n"), HTTP_REQUEST);
	cr_assert_eq(r->version, 11);
	cr_assert(r->keep_alive);
}

Test(http, missing_host_is_accepted)
{
	cr_assert_eq(feed("GET / HTTP/1.1\r\n\r\n"), HTTP_REQUEST);
	cr_assert_eq(r->nheaders, 0);
}

/* ---- errors ------------------------------------------------------------- */

Test(http, bad_request_line)
{
	expect_error_fresh("GET\r\n\r\n", 400);
	expect_error_fresh("GET /\r\n\r\n", 400);
	expect_error_fresh("GET  / HTTP/1.1\r\n\r\n", 400);
	expect_error_fresh("GET / HTTP/1.1 \r\n\r\n", 400);
	expect_error_fresh(" GET / HTTP/1.1\r\n\r\n", 400);
	expect_error_fresh("G(T / HTTP/1.1\r\n\r\n", 400);
	expect_error_fresh("GET /a b HTTP/1.1\r\n\r\n", 400);
	expect_error_fresh("GET / HTTP/1.1\rX: y\r\n\r\n", 400);
	expect_error_fresh("\x16\x03\x01\x02\x03\r\n\r\n", 400);
	renew();
	cr_assert_eq(feed_n("GET\0 / HTTP/1.1\r\n\r\n", 19), HTTP_ERROR);
	cr_assert_eq(http_conn_error(c, NULL), 400);
	renew();
	cr_assert_eq(feed_n("GET /x\0y HTTP/1.1\r\n\r\n", 21), HTTP_ERROR);
	cr_assert_eq(http_conn_error(c, NULL), 400);
}

Test(http, bad_version)
{
	expect_error_fresh("GET / HTTP/2.0\r\n\r\n", 505);
	expect_error_fresh("GET / HTTP/0.9\r\n\r\n", 505);
	expect_error_fresh("GET / HTTP/1.1x\r\n\r\n", 400);
	expect_error_fresh("GET / http/1.1\r\n\r\n", 400);
	expect_error_fresh("GET / HTTP/1\r\n\r\n", 400);
	expect_error_fresh("GET / HTTP/1.\r\n\r\n", 400);
	expect_error_fresh("GET / HTTP/11.1\r\n\r\n", 400);
	expect_error_fresh("GET / FOO\r\n\r\n", 400);
}

Test(http, bad_header_lines)
{
	expect_error_fresh("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400);
	expect_error_fresh("GET / HTTP/1.1\r\nName : v\r\n\r\n", 400);
	expect_error_fresh("GET / HTTP/1.1\r\n: v\r\n\r\n", 400);
	expect_error_fresh("GET / HTTP/1.1\r\nA: b\r\n  folded\r\n\r\n", 400);
	expect_error_fresh("GET / HTTP/1.1\r\nA: b\x01" "c\r\n\r\n", 400);
	expect_error_fresh("GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n", 400);
	expect_error_fresh("GET / HTTP/1.1\r\nA\"B: c\r\n\r\n", 400);
	expect_error_fresh("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", 400);
}

/* The header block: exactly the limit passes, one byte more does not. */
static char *block_of(size_t total, const char *line1)
{
	char *s = malloc(total + 1);
	size_t l1 = strlen(line1);
	memcpy(s, line1, l1);
	memcpy(s + l1, "X: ", 3);
	memset(s + l1 + 3, 'v', total - l1 - 3 - 4);
	memcpy(s + total - 4, "\r\n\r\n", 5);
	return s;
}

static enum http_event feed_big(const char *s)
{
	size_t len = strlen(s);
	enum http_event ev = HTTP_NEED_MORE;
	for (size_t pos = 0; pos < len && ev == HTTP_NEED_MORE;) {
		pos += http_conn_feed(c, s + pos, len - pos);
		ev = http_conn_next(c, &r);
	}
	return ev;
}

Test(http, header_block_limit)
{
	char *s = block_of(HTTP_MAX_HEADER_BYTES, "GET / HTTP/1.1\r\n");
	cr_assert_eq(feed_big(s), HTTP_REQUEST);
	cr_assert_eq(strlen(http_header(r, "x")), HTTP_MAX_HEADER_BYTES - 16 - 3 - 4);
	free(s);
	renew();
	s = block_of(HTTP_MAX_HEADER_BYTES + 1, "GET / HTTP/1.1\r\n");
	cr_assert_eq(feed_big(s), HTTP_ERROR);
	cr_assert_eq(http_conn_error(c, NULL), 431);
	free(s);
}

Test(http, request_line_too_long)
{
	size_t n = HTTP_MAX_HEADER_BYTES + 100;
	char *s = malloc(n + 1);
	memcpy(s, "GET /", 5);
	memset(s + 5, 'a', n - 5);
	s[n] = '\0';
	cr_assert_eq(feed_big(s), HTTP_ERROR, "detected without a line end");
	cr_assert_eq(http_conn_error(c, NULL), 414);
	free(s);
}

Test(http, too_many_headers)
{
	char s[4096];
	size_t len = (size_t)sprintf(s, "GET / HTTP/1.1\r\n");
	for (int i = 0; i < HTTP_MAX_HEADERS; i++)
		len += (size_t)sprintf(s + len, "H%d: %d\r\n", i, i);
	strcpy(s + len, "\r\n");
	cr_assert_eq(feed(s), HTTP_REQUEST);
	cr_assert_eq(r->nheaders, HTTP_MAX_HEADERS);
	cr_assert_str_eq(http_header(r, "h63"), "63");
	strcpy(s + len, "One: more\r\n\r\n");
	expect_error_fresh(s, 431);
}

Test(http, content_length_and_transfer_encoding)
{
	expect_error_fresh("PUT / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
			   400);
	expect_error_fresh("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
			   400);
}

Test(http, bad_content_length)
{
	const char *bad[] = { "-1", "+5", "abc", "", "5 5", "0x10", "1.0", "5,", ",5", "5, 6",
			      "99999999999999999999999", "18446744073709551616" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char s[256];
		snprintf(s, sizeof(s), "PUT / HTTP/1.1\r\nContent-Length: %s\r\n\r\n", bad[i]);
		expect_error_fresh(s, 400);
	}
	expect_error_fresh("PUT / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400);
	expect_error_fresh("PUT / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n", 413);
}

Test(http, oversize_body)
{
	char s[256];
	snprintf(s, sizeof(s), "PUT / HTTP/1.1\r\nContent-Length: %d\r\n\r\n", HTTP_MAX_BODY_BYTES + 1);
	expect_error_fresh(s, 413);
	snprintf(s, sizeof(s), "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n",
		 HTTP_MAX_BODY_BYTES + 1);
	expect_error_fresh(s, 413);
	/* Chunks that add up to one byte too many: refused at the last size. */
	renew();
	snprintf(s, sizeof(s), "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n",
		 HTTP_MAX_BODY_BYTES / 2);
	cr_assert_eq(feed(s), HTTP_NEED_MORE);
	char *half = malloc(HTTP_MAX_BODY_BYTES / 2);
	memset(half, 'h', HTTP_MAX_BODY_BYTES / 2);
	for (int k = 0; k < 2; k++) {
		size_t pos = 0;
		while (pos < HTTP_MAX_BODY_BYTES / 2) {
			pos += http_conn_feed(c, half + pos, HTTP_MAX_BODY_BYTES / 2 - pos);
			cr_assert_eq(http_conn_next(c, &r), HTTP_NEED_MORE);
		}
		snprintf(s, sizeof(s), "\r\n%x\r\n", HTTP_MAX_BODY_BYTES / 2);
		if (k == 0)
			cr_assert_eq(feed(s), HTTP_NEED_MORE);
	}
	free(half);
	expect_error("\r\n1\r\n", 413);
}

Test(http, bad_chunks)
{
	const char *head = "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
	const char *bad[] = { "zz\r\n", "\r\n", ";ext\r\n", " 5\r\n", "5x\r\n", "5\rX",
			      "-1\r\n", "5\r\nhelloX", "5\r\nhello\rX", "11111111111111111\r\n",
			      "0\r\nTrailer\rX", "0\r\n\rX", "0\r\nA: \x01\r\n\r\n", "1;a\x01\r\n" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char s[256];
		snprintf(s, sizeof(s), "%s%s", head, bad[i]);
		expect_error_fresh(s, 400);
	}
	/* A chunk-size line one byte over HTTP_MAX_CHUNK_LINE (CRLF included). */
	char *s = malloc(HTTP_MAX_CHUNK_LINE + 256);
	cr_assert_not_null(s);
	snprintf(s, 256, "%s1;", head);
	size_t n = strlen(s);
	memset(s + n, 'e', HTTP_MAX_CHUNK_LINE - 3);
	strcpy(s + n + HTTP_MAX_CHUNK_LINE - 3, "\r\nx\r\n0\r\n\r\n");
	expect_error_fresh(s, 400);
	/* One that fits exactly. */
	renew();
	snprintf(s, 256, "%s1;", head);
	n = strlen(s);
	memset(s + n, 'e', HTTP_MAX_CHUNK_LINE - 4);
	strcpy(s + n + HTTP_MAX_CHUNK_LINE - 4, "\r\nx\r\n0\r\n\r\n");
	cr_assert_eq(feed(s), HTTP_REQUEST);
	cr_assert_str_eq(r->body, "x");
	free(s);
	/* 16 digits that fit in 64 bits, leading zeros allowed. */
	renew();
	cr_assert_eq(feed("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000001\r\n"
			  "y\r\n00\r\n\r\n"), HTTP_REQUEST);
	cr_assert_str_eq(r->body, "y");
}

Test(http, trailers_too_large)
{
	size_t n = HTTP_MAX_HEADER_BYTES + 100;
	char *s = malloc(n + 128);
	cr_assert_not_null(s);
	strcpy(s, "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: ");
	size_t h = strlen(s);
	memset(s + h, 't', n);
	strcpy(s + h + n, "\r\n\r\n");
	cr_assert_eq(feed_big(s), HTTP_ERROR);
	cr_assert_eq(http_conn_error(c, NULL), 431);
	free(s);
}

Test(http, transfer_codings)
{
	expect_error_fresh("PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
	expect_error_fresh("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400);
	expect_error_fresh("PUT / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n", 400);
	expect_error_fresh("PUT / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
	expect_error_fresh("PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n"
			   "Transfer-Encoding: chunked\r\n\r\n", 501);
	expect_error_fresh("PUT / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
	renew();
	cr_assert_eq(feed("PUT / HTTP/1.1\r\nTransfer-Encoding: , chunked ,\r\n\r\n0\r\n\r\n"),
		     HTTP_REQUEST, "empty list elements are ignored");
}

Test(http, no_error_before_one)
{
	const char *msg = "x";
	cr_assert_eq(http_conn_error(c, &msg), 0);
	cr_assert_null(msg);
	cr_assert_eq(http_respond_error(1, c), -EINVAL);
}

/* ---- responses ---------------------------------------------------------- */

Test(http, format_head)
{
	char b[512];
	int n = http_format_head(b, sizeof(b), 200, "application/json", 15, true);
	cr_assert_str_eq(b, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			    "Content-Length: 15\r\n\r\n");
	cr_assert_eq(n, (int)strlen(b));
	http_format_head(b, sizeof(b), 404, NULL, 0, false);
	cr_assert_str_eq(b, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	http_format_head(b, sizeof(b), 204, NULL, 0, true);
	cr_assert_str_eq(b, "HTTP/1.1 204 No Content\r\n\r\n");
	http_format_head(b, sizeof(b), 204, "application/json", 0, false);
	cr_assert_str_eq(b, "HTTP/1.1 204 No Content\r\nContent-Type: application/json\r\n"
			    "Connection: close\r\n\r\n");
	http_format_head(b, sizeof(b), 299, NULL, 1, true);
	cr_assert_str_eq(b, "HTTP/1.1 299 \r\nContent-Length: 1\r\n\r\n");
	cr_assert_eq(http_format_head(b, sizeof(b), 204, NULL, 1, true), -EINVAL);
	cr_assert_eq(http_format_head(b, sizeof(b), 100, NULL, 1, true), -EINVAL);
	cr_assert_eq(http_format_head(b, sizeof(b), 99, NULL, 0, true), -EINVAL);
	cr_assert_eq(http_format_head(b, sizeof(b), 600, NULL, 0, true), -EINVAL);
	cr_assert_eq(http_format_head(b, sizeof(b), 200, "text/plain\r\nX: y", 0, true), -EINVAL);
	cr_assert_eq(http_format_head(b, 20, 200, NULL, 0, true), -ENOSPC);
	cr_assert_eq(http_format_head(b, 0, 200, NULL, 0, true), -ENOSPC);
	n = http_format_head(b, sizeof(b), 200, NULL, 0, true);
	cr_assert_eq(http_format_head(b, (size_t)n, 200, NULL, 0, true), -ENOSPC, "no room for NUL");
	cr_assert_eq(http_format_head(b, (size_t)n + 1, 200, NULL, 0, true), n);
	cr_assert_str_eq(http_reason(413), "Content Too Large");
	cr_assert_str_eq(http_reason(431), "Request Header Fields Too Large");
	cr_assert_str_eq(http_reason(777), "");
}

static char *read_all(int fd, size_t *len)
{
	size_t cap = 1 << 16, n = 0;
	char *b = malloc(cap + 1);
	ssize_t k;
	while ((k = read(fd, b + n, cap - n)) > 0) {
		n += (size_t)k;
		if (n == cap)
			b = realloc(b, (cap *= 2) + 1);
	}
	b[n] = '\0';
	*len = n;
	return b;
}

Test(http, respond_json_and_error)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	const char *json = "{\"state\":\"Running\"}";
	cr_assert_eq(http_respond(sv[0], 200, "application/json", json, strlen(json), true), 0);
	expect_error("GET / HTTP/2.0\r\n\r\n", 505);
	cr_assert_eq(http_respond_error(sv[0], c), 0);
	close(sv[0]);
	size_t n;
	char *got = read_all(sv[1], &n);
	cr_assert_str_eq(got, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			      "Content-Length: 19\r\n\r\n{\"state\":\"Running\"}"
			      "HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Type: text/plain\r\n"
			      "Content-Length: 27\r\nConnection: close\r\n\r\n"
			      "HTTP version not supported\n");
	free(got);
	close(sv[1]);
	cr_assert_eq(http_respond(sv[0], 200, NULL, NULL, 3, true), -EINVAL);
	cr_assert_eq(http_respond(sv[0], 204, NULL, "x", 1, true), -EINVAL);
}

struct slow_reader {
	int fd;
	char *got;
	size_t len;
};

static void *slow_read(void *arg)
{
	struct slow_reader *s = arg;
	usleep(50 * 1000);      /* let the writer fill the socket first */
	s->got = read_all(s->fd, &s->len);
	return NULL;
}

/* A body far larger than the socket buffer on a nonblocking socket: the
 * writer meets EAGAIN and short writes, and every byte arrives in order. */
Test(http, respond_large_on_nonblocking_socket)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	int sndbuf = 4096;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	size_t blen = 2 << 20;
	char *body = malloc(blen);
	for (size_t i = 0; i < blen; i++)
		body[i] = (char)(i * 131 >> 3);
	struct slow_reader s = { .fd = sv[1] };
	pthread_t t;
	pthread_create(&t, NULL, slow_read, &s);
	cr_assert_eq(http_respond(sv[0], 200, "application/octet-stream", body, blen, false), 0);
	close(sv[0]);
	pthread_join(t, NULL);
	char head[256];
	int h = http_format_head(head, sizeof(head), 200, "application/octet-stream", blen, false);
	cr_assert_eq(s.len, (size_t)h + blen);
	cr_assert_eq(memcmp(s.got, head, (size_t)h), 0);
	cr_assert_eq(memcmp(s.got + h, body, blen), 0);
	free(s.got);
	free(body);
	close(sv[1]);
}

Test(http, respond_to_a_vanished_peer_is_epipe)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[1]);
	cr_assert_eq(http_respond(sv[0], 200, NULL, "x", 1, true), -EPIPE, "and no SIGPIPE");
	cr_assert_eq(http_send_continue(sv[0]), -EPIPE);
	close(sv[0]);
}

/* A client that never reads: the writer gives up after the timeout. */
Test(http, respond_times_out, .timeout = 30)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	size_t blen = 8 << 20;
	char *body = calloc(1, blen);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(http_respond(sv[0], 200, NULL, body, blen, true), -ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	cr_assert(ms >= HTTP_WRITE_TIMEOUT_MS - 50 && ms < HTTP_WRITE_TIMEOUT_MS + 3000, "%.0f ms", ms);
	free(body);
	close(sv[0]);
	close(sv[1]);
}

Test(http, respond_to_a_pipe)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(http_respond(p[1], 201, NULL, "ok", 2, true), 0);
	close(p[1]);
	size_t n;
	char *got = read_all(p[0], &n);
	cr_assert_str_eq(got, "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
	free(got);
	close(p[0]);
}

Test(http, read_helper)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	const char *req = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nConnection: close\r\n\r\n";
	cr_assert_eq(write(sv[1], req, strlen(req)), (ssize_t)strlen(req));
	cr_assert_eq(http_conn_read(c, sv[0]), (ssize_t)strlen(req));
	cr_assert_eq(http_conn_next(c, &r), HTTP_REQUEST);
	cr_assert_str_eq(r->path, "/a");
	cr_assert_eq(http_conn_next(c, &r), HTTP_REQUEST);
	cr_assert_str_eq(r->path, "/b");
	cr_assert_eq(http_conn_next(c, &r), HTTP_CLOSE);
	cr_assert_eq(http_conn_read(c, -1), -EBADF);
	close(sv[0]);
	close(sv[1]);
}

Test(http, read_helper_full_buffer)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	/* Two requests; the second fills the buffer behind the first. */
	char *big = block_of(HTTP_IN_BUF_BYTES, "GET /2 HTTP/1.1\r\n");
	const char *first = "GET /1 HTTP/1.1\r\n\r\n";
	cr_assert_eq(http_conn_feed(c, first, strlen(first)), strlen(first));
	cr_assert_eq(http_conn_feed(c, big, strlen(big)), HTTP_IN_BUF_BYTES - strlen(first));
	cr_assert_eq(http_conn_read(c, sv[0]), -ENOBUFS);
	cr_assert_eq(http_conn_next(c, &r), HTTP_REQUEST);
	cr_assert_str_eq(r->path, "/1");
	cr_assert_eq(http_conn_read(c, sv[0]), -EAGAIN, "its bytes are free again");
	cr_assert_eq(http_conn_next(c, &r), HTTP_NEED_MORE);
	size_t rest = strlen(first);
	cr_assert_eq(write(sv[1], big + strlen(big) - rest, rest), (ssize_t)rest);
	cr_assert_eq(http_conn_read(c, sv[0]), (ssize_t)rest);
	cr_assert_eq(http_conn_next(c, &r), HTTP_REQUEST);
	cr_assert_str_eq(r->path, "/2");
	free(big);
	close(sv[0]);
	close(sv[1]);
}
