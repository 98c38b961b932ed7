// SPDX-License-Identifier: GPL-2.0-only
/*
 * fuzz_http.c - libFuzzer harness of the HTTP/1.1 parser (vmm/api/http.h).
 *
 * The input is the byte stream a client sends.  It is parsed twice: in
 * pieces whose lengths are derived from the input (1 to 97 bytes, so a
 * mutation moves the cut points too), and in as large pieces as the
 * connection takes.  Every event is checked against the contract and
 * folded into a digest; the two runs must give the same digest, since
 * where the bytes were cut must not matter.  Checked:
 *   - 100-continue at most once per request, only for an HTTP/1.1 request
 *     with a body, before the request, with no body parsed yet;
 *   - a request's strings are NUL-terminated (ASan checks the reads), its
 *     body is within the limit and NUL-terminated, its header count too;
 *   - nothing after an error or a close, both sticky; an error has one of
 *     the documented statuses and a message; a close follows only a request
 *     that did not keep the connection alive;
 *   - feed takes at least one byte once the events are drained;
 *   - the response head of each request formats within its buffer.
 * tests/vmm/meson.build builds it with clang -fsanitize=fuzzer and small limits;
 * tests/vmm/fuzz.sh http runs it.
 */
#include "api/http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                     \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "fuzz_http: %s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                                       \
			abort();                                                        \
		}                                                                       \
	} while (0)

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static uint64_t mix_str(uint64_t h, const char *s)
{
	return s ? mix(h, s, strlen(s) + 1) : mix(h, "\xff", 1);
}

struct run {
	uint64_t digest;
	bool continued;      /* 100-continue reported for the current request */
	bool last_keep_alive;
	bool ended;          /* error or close seen */
	unsigned requests;
};

static void check_request(struct run *s, const struct http_request *r)
{
	CHECK(r->method && r->method[0] && r->path && r->path[0] == '/');
	CHECK(r->version == 10 || r->version == 11);
	CHECK(r->nheaders <= HTTP_MAX_HEADERS);
	CHECK(r->body && r->body_len <= HTTP_MAX_BODY_BYTES && r->body[r->body_len] == '\0');
	CHECK(r->expect_continue == s->continued);
	CHECK(!r->chunked || r->version == 11);
	uint64_t h = mix(s->digest, "R", 1);
	h = mix_str(h, r->method);
	h = mix_str(h, r->path);
	h = mix_str(h, r->query);
	for (unsigned i = 0; i < r->nheaders; i++) {
		CHECK(r->headers[i].name[0] != '\0');
		CHECK(http_header(r, r->headers[i].name) != NULL);
		h = mix_str(mix_str(h, r->headers[i].name), r->headers[i].value);
	}
	CHECK(http_header(r, "\x01") == NULL);
	h = mix(h, r->body, r->body_len + 1);
	unsigned char flags[4] = { (unsigned char)r->version, r->chunked, r->expect_continue,
				   r->keep_alive };
	s->digest = mix(h, flags, sizeof(flags));

	char head[512];
	size_t ctl = strlen(r->path) < 200 ? strlen(r->path) : 200;
	char ctype[201];
	memcpy(ctype, r->path, ctl);
	ctype[ctl] = '\0';
	int n = http_format_head(head, sizeof(head), 200, ctype, r->body_len, r->keep_alive);
	CHECK(n > 0 && (size_t)n < sizeof(head) && strlen(head) == (size_t)n);
}

/* Report the events until more input is needed; false once the connection
 * has ended. */
static bool drain(struct http_conn *c, struct run *s)
{
	for (;;) {
		const struct http_request *r;
		enum http_event ev = http_conn_next(c, &r);
		if (ev != HTTP_NEED_MORE)       /* where that comes depends on the cuts */
			s->digest = mix(s->digest, &ev, sizeof(ev));
		switch (ev) {
		case HTTP_NEED_MORE:
			CHECK(!r);
			return true;
		case HTTP_CONTINUE:
			CHECK(r && !s->continued && r->version == 11 && r->expect_continue);
			CHECK(r->body_len == 0 && r->body[0] == '\0');
			s->continued = true;
			break;
		case HTTP_REQUEST:
			CHECK(r);
			check_request(s, r);
			s->continued = false;
			s->last_keep_alive = r->keep_alive;
			s->requests++;
			break;
		case HTTP_ERROR: {
			const char *msg;
			int st = http_conn_error(c, &msg);
			CHECK(!r && msg && msg[0]);
			CHECK(st == 400 || st == 413 || st == 414 || st == 431 || st == 501 ||
			      st == 503 || st == 505);
			CHECK(http_conn_next(c, &r) == HTTP_ERROR && !r);
			s->digest = mix(s->digest, &st, sizeof(st));
			s->ended = true;
			return false;
		}
		case HTTP_CLOSE:
			CHECK(!r && s->requests > 0 && !s->last_keep_alive && !s->continued);
			CHECK(http_conn_next(c, &r) == HTTP_CLOSE && !r);
			s->ended = true;
			return false;
		default:
			CHECK(!"unknown event");
		}
	}
}

/* Parse data in pieces: from the input (1..97 bytes), or as large as fits. */
static uint64_t run(const uint8_t *data, size_t size, bool cut)
{
	struct http_conn *c = http_conn_new();
	CHECK(c);
	struct run s = { .digest = 0xcbf29ce484222325ULL };
	uint64_t h = 0;
	size_t pos = 0;
	while (pos < size) {
		h = h * 31 + data[pos];
		size_t want = cut ? 1 + h % 97 : size - pos;
		if (want > size - pos)
			want = size - pos;
		size_t took = http_conn_feed(c, data + pos, want);
		CHECK(took > 0 && took <= want);
		pos += took;
		if (!drain(c, &s))
			break;
	}
	if (s.ended) {
		const struct http_request *r;
		CHECK(http_conn_feed(c, "GET / HTTP/1.1\r\n\r\n", 18) == 18);
		enum http_event ev = http_conn_next(c, &r);
		CHECK((ev == HTTP_ERROR || ev == HTTP_CLOSE) && !r);
	}
	http_conn_free(c);
	return s.digest;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t a = run(data, size, true);
	uint64_t b = run(data, size, false);
	CHECK(a == b);
	return 0;
}
