// SPDX-License-Identifier: GPL-2.0-only
/*
 * http.c - HTTP/1.1 requests in, responses out (the contract is in http.h).
 *
 * Bytes wait in a fixed input buffer; the parser moves them out as it goes:
 * header lines into a fixed header block, split there in place into the
 * NUL-terminated strings the request points at; body bytes into a body
 * buffer allocated once the length is known (Content-Length) or grown chunk
 * by chunk (never past the limit).  Chunk framing and trailers go through a
 * byte-at-a-time state machine and are not kept.  The parser stops at each
 * event, so a pipelined request's bytes wait in the input buffer until the
 * caller asks for it; when it says "need more" it has taken every byte.
 *
 * Every length is checked against its limit before anything is copied or
 * allocated: the header block against HTTP_MAX_HEADER_BYTES, a body or the
 * next chunk against HTTP_MAX_BODY_BYTES.
 */
#include "api/http.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* A body buffer larger than this is freed between requests. */
#define BODY_KEEP_BYTES (64 * 1024)

/* Internal result of one parsing step: go on parsing (else an event). */
#define STEP_ON (-1)

enum state {
	ST_HEAD,            /* request line and header lines */
	ST_BODY,            /* a Content-Length body */
	ST_CHUNK_SIZE,      /* the hex digits of a chunk size */
	ST_CHUNK_EXT,       /* after them: extensions, skipped */
	ST_CHUNK_SIZE_LF,   /* CR seen, LF expected */
	ST_CHUNK_DATA,
	ST_CHUNK_DATA_CR,   /* the CRLF after chunk data */
	ST_CHUNK_DATA_LF,
	ST_TRAILER_START,   /* at the start of a trailer line or the final one */
	ST_TRAILER_LINE,
	ST_TRAILER_LINE_LF,
	ST_TRAILER_END_LF,
	ST_DELIVERED,       /* req was reported; the next call starts the next */
	ST_CLOSED,
	ST_ERROR,
};

struct http_conn {
	enum state state;
	size_t in_pos, in_len;      /* in[in_pos, in_len) not parsed yet */
	size_t hdr_len, line_start; /* hdr[line_start, hdr_len): the line being read */
	bool have_request_line;
	char *body;                 /* NULL or body_cap bytes */
	size_t body_cap;
	uint64_t remaining;         /* Content-Length or chunk bytes still to come */
	uint64_t chunk_size;
	unsigned chunk_digits;
	size_t line_bytes;          /* of the chunk-size line, or of all trailers */
	int err_status;
	const char *err_msg;
	struct http_request req;
	char nobody[1];             /* the body of a request without one */
	char in[HTTP_IN_BUF_BYTES];
	char hdr[HTTP_MAX_HEADER_BYTES + 1];
};

/* ---- characters and lists ----------------------------------------------- */

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* A control character other than HT (CR, LF and NUL included). */
static bool is_ctl(char ch)
{
	unsigned char u = (unsigned char)ch;
	return (u < 0x20 && u != '\t') || u == 0x7f;
}

/* RFC 9110 tchar: what method and header names are made of. */
static bool is_tchar(char ch)
{
	unsigned char u = (unsigned char)ch;
	if ((u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z'))
		return true;
	return u && strchr("!#$%&'*+-.^_`|~", u) != NULL;
}

static bool is_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!is_tchar(*s))
			return false;
	return true;
}

static int hex_value(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* The next element of the comma-separated list at *s, blanks trimmed: its
 * start, its length in *n (0 for an empty element); NULL after the last. */
static const char *list_next(const char **s, size_t *n)
{
	const char *p = *s;
	if (!p)
		return NULL;
	const char *comma = strchr(p, ',');
	const char *end = comma ? comma : p + strlen(p);
	*s = comma ? comma + 1 : NULL;
	while (p < end && is_blank(*p))
		p++;
	while (end > p && is_blank(end[-1]))
		end--;
	*n = (size_t)(end - p);
	return p;
}

static bool elem_is(const char *p, size_t n, const char *word)
{
	return n == strlen(word) && strncasecmp(p, word, n) == 0;
}

/* ---- connection state --------------------------------------------------- */

static int fail(struct http_conn *c, int status, const char *msg)
{
	c->state = ST_ERROR;
	c->err_status = status;
	c->err_msg = msg;
	return HTTP_ERROR;
}

static void start_request(struct http_conn *c)
{
	c->hdr_len = c->line_start = 0;
	c->have_request_line = false;
	c->remaining = 0;
	if (c->body_cap > BODY_KEEP_BYTES) {
		free(c->body);
		c->body = NULL;
		c->body_cap = 0;
	}
	c->req = (struct http_request){ .body = c->nobody };
	c->state = ST_HEAD;
}

/* Room for need bytes of body (need <= HTTP_MAX_BODY_BYTES + 1). */
static int body_reserve(struct http_conn *c, size_t need)
{
	if (need <= c->body_cap)
		return 0;
	size_t cap = c->body_cap ? c->body_cap : 4096;
	while (cap < need)
		cap *= 2;
	if (cap > (size_t)HTTP_MAX_BODY_BYTES + 1)
		cap = (size_t)HTTP_MAX_BODY_BYTES + 1;
	char *p = realloc(c->body, cap);
	if (!p)
		return -ENOMEM;
	c->body = p;
	c->body_cap = cap;
	return 0;
}

static int finish_request(struct http_conn *c)
{
	if (c->body) {
		c->body[c->req.body_len] = '\0';
		c->req.body = c->body;
	}
	c->state = ST_DELIVERED;
	return HTTP_REQUEST;
}

/* Make the free space of the input buffer one block at its end. */
static void in_compact(struct http_conn *c)
{
	if (c->in_pos == 0)
		return;
	memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
	c->in_len -= c->in_pos;
	c->in_pos = 0;
}

struct http_conn *http_conn_new(void)
{
	struct http_conn *c = calloc(1, sizeof(*c));
	if (c)
		start_request(c);
	return c;
}

void http_conn_free(struct http_conn *c)
{
	if (!c)
		return;
	free(c->body);
	free(c);
}

size_t http_conn_feed(struct http_conn *c, const void *data, size_t len)
{
	if (c->state == ST_ERROR || c->state == ST_CLOSED)
		return len;
	in_compact(c);
	size_t room = sizeof(c->in) - c->in_len;
	size_t n = len < room ? len : room;
	if (n)
		memcpy(c->in + c->in_len, data, n);
	c->in_len += n;
	return n;
}

ssize_t http_conn_read(struct http_conn *c, int fd)
{
	in_compact(c);
	size_t room = sizeof(c->in) - c->in_len;
	if (room == 0)
		return -ENOBUFS;
	ssize_t n;
	do
		n = read(fd, c->in + c->in_len, room);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (c->state != ST_ERROR && c->state != ST_CLOSED)
		c->in_len += (size_t)n;
	return n;
}

ssize_t http_conn_recv(struct http_conn *c, int fd, int *fds, size_t maxfds, size_t *nfds,
		       bool *dropped)
{
	*nfds = 0;
	if (dropped)
		*dropped = false;
	if (maxfds > HTTP_MAX_RECV_FDS)
		maxfds = HTTP_MAX_RECV_FDS;
	in_compact(c);
	size_t room = sizeof(c->in) - c->in_len;
	if (room == 0)
		return -ENOBUFS;
	union {
		char buf[CMSG_SPACE(sizeof(int) * HTTP_MAX_RECV_FDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = c->in + c->in_len, .iov_len = room };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = ctl.buf, .msg_controllen = CMSG_SPACE(sizeof(int) * maxfds),
	};
	ssize_t n;
	do
		n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == ENOTSOCK)
		return http_conn_read(c, fd);
	if (n < 0)
		return -errno;
	/* Every SCM_RIGHTS the kernel delivered is taken, also with n == 0:
	 * the caller closes them. */
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int f;
			memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (*nfds < maxfds)
				fds[(*nfds)++] = f;
			else
				close(f);   /* cannot happen: the buffer holds maxfds */
		}
	}
	if ((msg.msg_flags & MSG_CTRUNC) && dropped)
		*dropped = true;
	if (c->state != ST_ERROR && c->state != ST_CLOSED)
		c->in_len += (size_t)n;
	return n;
}

bool http_conn_partial(const struct http_conn *c)
{
	switch (c->state) {
	case ST_HEAD:
		/* Blank lines before a request line stay in hdr too. */
		return c->hdr_len > 0 || c->in_pos < c->in_len;
	case ST_DELIVERED:
		return c->req.keep_alive && c->in_pos < c->in_len;
	case ST_CLOSED:
	case ST_ERROR:
		return false;
	default:
		return true;   /* a body, chunk framing or trailers under way */
	}
}

int http_conn_error(const struct http_conn *c, const char **msg)
{
	if (msg)
		*msg = c->err_msg;
	return c->err_status;
}

const char *http_header(const struct http_request *r, const char *name)
{
	for (unsigned i = 0; i < r->nheaders; i++)
		if (strcasecmp(r->headers[i].name, name) == 0)
			return r->headers[i].value;
	return NULL;
}

/* ---- the header block --------------------------------------------------- */

/* "HTTP/1.1" -> 11.  Another major version is 505, a later 1.x is 1.1. */
static int parse_version(struct http_conn *c, const char *v)
{
	if (strlen(v) != 8 || strncmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' ||
	    v[6] != '.' || v[7] < '0' || v[7] > '9')
		return fail(c, 400, "malformed HTTP version");
	if (v[5] != '1')
		return fail(c, 505, "HTTP version not supported");
	c->req.version = v[7] == '0' ? 10 : 11;
	return STEP_ON;
}

/* Origin-form as is; absolute-form (http or https) reduced to its path. */
static int parse_target(struct http_conn *c, char *t)
{
	if (!*t)
		return fail(c, 400, "empty request target");
	for (const char *p = t; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			return fail(c, 400, "bad character in the request target");
	if (*t != '/') {
		size_t skip = strncasecmp(t, "http://", 7) == 0   ? 7
			      : strncasecmp(t, "https://", 8) == 0 ? 8
								   : 0;
		if (!skip)
			return fail(c, 400, "unsupported request target form");
		t += skip + strcspn(t + skip, "/?");   /* past the authority */
	}
	char *q = strchr(t, '?');
	if (q) {
		*q = '\0';
		c->req.query = q + 1;
	}
	c->req.path = *t ? t : "/";
	return STEP_ON;
}

/* "METHOD SP target SP HTTP/x.y", split in place. */
static int request_line(struct http_conn *c, char *line, size_t len)
{
	char *sp1 = memchr(line, ' ', len);
	char *sp2 = sp1 ? memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - line)) : NULL;
	if (!sp2)
		return fail(c, 400, "malformed request line");
	*sp1 = *sp2 = '\0';
	if (!is_token(line))
		return fail(c, 400, "bad method");
	c->req.method = line;
	c->have_request_line = true;
	int r = parse_version(c, sp2 + 1);
	return r == STEP_ON ? parse_target(c, sp1 + 1) : r;
}

/* "name: value", split in place; obs-fold is rejected. */
static int header_line(struct http_conn *c, char *line, size_t len)
{
	if (is_blank(line[0]))
		return fail(c, 400, "obsolete header line folding");
	char *colon = memchr(line, ':', len);
	if (!colon)
		return fail(c, 400, "header line without a colon");
	*colon = '\0';
	if (!is_token(line))
		return fail(c, 400, "bad header name");
	char *v = colon + 1, *end = line + len;
	while (v < end && is_blank(*v))
		v++;
	while (end > v && is_blank(end[-1]))
		end--;
	for (const char *p = v; p < end; p++)
		if (is_ctl(*p))
			return fail(c, 400, "bad character in a header value");
	*end = '\0';
	if (c->req.nheaders == HTTP_MAX_HEADERS)
		return fail(c, 431, "too many header fields");
	c->req.headers[c->req.nheaders++] = (struct http_header){ line, v };
	return STEP_ON;
}

/* What the header block says about the message. */
struct framing {
	bool have_cl, have_te, te_chunked_last, close, keep_alive, expect;
	uint64_t cl;
	unsigned te_codings;
};

/* One Content-Length field: a list of equal decimal values, equal to any
 * earlier field's. */
static int content_length(struct http_conn *c, struct framing *f, const char *value)
{
	const char *p;
	size_t n;
	while ((p = list_next(&value, &n))) {
		if (n == 0)
			return fail(c, 400, "bad Content-Length");
		uint64_t v = 0;
		for (size_t i = 0; i < n; i++) {
			if (p[i] < '0' || p[i] > '9')
				return fail(c, 400, "bad Content-Length");
			unsigned d = (unsigned)(p[i] - '0');
			if (v > (UINT64_MAX - d) / 10)
				return fail(c, 400, "Content-Length overflows");
			v = v * 10 + d;
		}
		if (f->have_cl && v != f->cl)
			return fail(c, 400, "conflicting Content-Length values");
		f->have_cl = true;
		f->cl = v;
	}
	return STEP_ON;
}

static void transfer_encoding(struct framing *f, const char *value)
{
	const char *p;
	size_t n;
	f->have_te = true;
	while ((p = list_next(&value, &n)))
		if (n) {
			f->te_codings++;
			f->te_chunked_last = elem_is(p, n, "chunked");
		}
}

static void connection(struct framing *f, const char *value)
{
	const char *p;
	size_t n;
	while ((p = list_next(&value, &n))) {
		f->close |= elem_is(p, n, "close");
		f->keep_alive |= elem_is(p, n, "keep-alive");
	}
}

static int read_framing(struct http_conn *c, struct framing *f)
{
	for (unsigned i = 0; i < c->req.nheaders; i++) {
		const struct http_header *h = &c->req.headers[i];
		if (strcasecmp(h->name, "Content-Length") == 0) {
			int r = content_length(c, f, h->value);
			if (r != STEP_ON)
				return r;
		} else if (strcasecmp(h->name, "Transfer-Encoding") == 0) {
			transfer_encoding(f, h->value);
		} else if (strcasecmp(h->name, "Connection") == 0) {
			connection(f, h->value);
		} else if (strcasecmp(h->name, "Expect") == 0) {
			f->expect |= strcasecmp(h->value, "100-continue") == 0;
		}
	}
	return STEP_ON;
}

/* The empty line: decide the framing, then the body (or the request). */
static int end_of_head(struct http_conn *c)
{
	struct framing f = { 0 };
	int r = read_framing(c, &f);
	if (r != STEP_ON)
		return r;
	struct http_request *q = &c->req;
	q->keep_alive = !f.close && (q->version == 11 || f.keep_alive);
	if (f.have_te) {
		if (f.have_cl)
			return fail(c, 400, "both Content-Length and Transfer-Encoding");
		if (q->version == 10)
			return fail(c, 400, "Transfer-Encoding in an HTTP/1.0 request");
		if (!f.te_chunked_last)
			return fail(c, 400, "chunked is not the final transfer coding");
		if (f.te_codings > 1)
			return fail(c, 501, "transfer coding not implemented");
		q->chunked = true;
		c->chunk_size = c->chunk_digits = 0;
		c->line_bytes = 0;
		c->state = ST_CHUNK_SIZE;
	} else if (f.cl > 0) {
		if (f.cl > HTTP_MAX_BODY_BYTES)
			return fail(c, 413, "request body too large");
		if (body_reserve(c, (size_t)f.cl + 1) < 0)
			return fail(c, 503, "out of memory for the request body");
		c->remaining = f.cl;
		c->state = ST_BODY;
	} else {
		return finish_request(c);
	}
	if (f.expect && q->version == 11) {
		q->expect_continue = true;
		return HTTP_CONTINUE;
	}
	return STEP_ON;
}

/* A line is complete in hdr[line_start, hdr_len) (its LF included). */
static int head_line(struct http_conn *c)
{
	char *line = c->hdr + c->line_start;
	size_t len = c->hdr_len - c->line_start - 1;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	line[len] = '\0';
	c->line_start = c->hdr_len;
	if (memchr(line, '\r', len) || memchr(line, '\0', len))
		return fail(c, 400, "bare CR or NUL in the header block");
	if (!c->have_request_line)
		return len == 0 ? STEP_ON : request_line(c, line, len);
	return len == 0 ? end_of_head(c) : header_line(c, line, len);
}

/* Move input up to the next LF into the header block. */
static int step_head(struct http_conn *c)
{
	size_t avail = c->in_len - c->in_pos;
	if (avail == 0)
		return HTTP_NEED_MORE;
	const char *src = c->in + c->in_pos;
	const char *lf = memchr(src, '\n', avail);
	size_t take = lf ? (size_t)(lf - src) + 1 : avail;
	if (take > HTTP_MAX_HEADER_BYTES - c->hdr_len)
		return c->have_request_line ? fail(c, 431, "header block too large")
					    : fail(c, 414, "request line too long");
	memcpy(c->hdr + c->hdr_len, src, take);
	c->hdr_len += take;
	c->in_pos += take;
	return lf ? head_line(c) : HTTP_NEED_MORE;
}

/* ---- the body ----------------------------------------------------------- */

/* Move input into the body: a Content-Length body or one chunk's data. */
static int step_body(struct http_conn *c)
{
	size_t avail = c->in_len - c->in_pos;
	if (avail == 0)
		return HTTP_NEED_MORE;
	size_t n = avail < c->remaining ? avail : (size_t)c->remaining;
	memcpy(c->body + c->req.body_len, c->in + c->in_pos, n);
	c->req.body_len += n;
	c->in_pos += n;
	c->remaining -= n;
	if (c->remaining)
		return HTTP_NEED_MORE;
	if (c->state == ST_BODY)
		return finish_request(c);
	c->state = ST_CHUNK_DATA_CR;
	return STEP_ON;
}

static int next_chunk(struct http_conn *c)
{
	c->chunk_size = c->chunk_digits = 0;
	c->line_bytes = 0;
	c->state = ST_CHUNK_SIZE;
	return STEP_ON;
}

/* The chunk-size line is complete: the data, or the trailers after "0". */
static int chunk_size_done(struct http_conn *c)
{
	if (c->chunk_size == 0) {
		c->line_bytes = 0;
		c->state = ST_TRAILER_START;
		return STEP_ON;
	}
	if (c->chunk_size > HTTP_MAX_BODY_BYTES - c->req.body_len)
		return fail(c, 413, "request body too large");
	if (body_reserve(c, c->req.body_len + (size_t)c->chunk_size + 1) < 0)
		return fail(c, 503, "out of memory for the request body");
	c->remaining = c->chunk_size;
	c->state = ST_CHUNK_DATA;
	return STEP_ON;
}

static int chunk_size_byte(struct http_conn *c, char ch)
{
	if (++c->line_bytes > HTTP_MAX_CHUNK_LINE)
		return fail(c, 400, "chunk-size line too long");
	int d = hex_value((unsigned char)ch);
	if (c->state == ST_CHUNK_SIZE && d >= 0) {
		if (c->chunk_size > (UINT64_MAX >> 4))
			return fail(c, 400, "chunk size overflows");
		c->chunk_size = c->chunk_size << 4 | (unsigned)d;
		c->chunk_digits++;
		return STEP_ON;
	}
	if (c->state == ST_CHUNK_SIZE && c->chunk_digits == 0)
		return fail(c, 400, "bad chunk size");
	if (c->state == ST_CHUNK_SIZE_LF)
		return ch == '\n' ? chunk_size_done(c) : fail(c, 400, "bare CR in a chunk-size line");
	if (ch == '\r')
		c->state = ST_CHUNK_SIZE_LF;
	else if (ch == '\n')
		return chunk_size_done(c);
	else if (c->state == ST_CHUNK_SIZE && ch != ';' && !is_blank(ch))
		return fail(c, 400, "bad chunk size");
	else if (is_ctl(ch))
		return fail(c, 400, "bad character in a chunk extension");
	else
		c->state = ST_CHUNK_EXT;
	return STEP_ON;
}

/* Trailer lines are checked for framing and control characters only, and
 * dropped; together they count against HTTP_MAX_HEADER_BYTES. */
static int trailer_byte(struct http_conn *c, char ch)
{
	if (++c->line_bytes > HTTP_MAX_HEADER_BYTES)
		return fail(c, 431, "trailers too large");
	switch (c->state) {
	case ST_TRAILER_START:
		if (ch == '\r')
			c->state = ST_TRAILER_END_LF;
		else if (ch == '\n')
			return finish_request(c);
		else if (is_ctl(ch))
			return fail(c, 400, "bad character in a trailer");
		else
			c->state = ST_TRAILER_LINE;
		return STEP_ON;
	case ST_TRAILER_LINE:
		if (ch == '\r')
			c->state = ST_TRAILER_LINE_LF;
		else if (ch == '\n')
			c->state = ST_TRAILER_START;
		else if (is_ctl(ch))
			return fail(c, 400, "bad character in a trailer");
		return STEP_ON;
	case ST_TRAILER_LINE_LF:
		if (ch != '\n')
			return fail(c, 400, "bare CR in a trailer");
		c->state = ST_TRAILER_START;
		return STEP_ON;
	default: /* ST_TRAILER_END_LF */
		return ch == '\n' ? finish_request(c) : fail(c, 400, "bare CR in a trailer");
	}
}

/* One byte of chunk framing (not chunk data). */
static int chunk_byte(struct http_conn *c, char ch)
{
	switch (c->state) {
	case ST_CHUNK_SIZE:
	case ST_CHUNK_EXT:
	case ST_CHUNK_SIZE_LF:
		return chunk_size_byte(c, ch);
	case ST_CHUNK_DATA_CR:
		if (ch == '\r') {
			c->state = ST_CHUNK_DATA_LF;
			return STEP_ON;
		}
		__attribute__((fallthrough)); /* a bare LF ends the data too */
	case ST_CHUNK_DATA_LF:
		return ch == '\n' ? next_chunk(c) : fail(c, 400, "chunk data not followed by CRLF");
	default:
		return trailer_byte(c, ch);
	}
}

/* ---- events ------------------------------------------------------------- */

static int step(struct http_conn *c)
{
	switch (c->state) {
	case ST_HEAD:
		return step_head(c);
	case ST_BODY:
	case ST_CHUNK_DATA:
		return step_body(c);
	default:
		if (c->in_pos == c->in_len)
			return HTTP_NEED_MORE;
		return chunk_byte(c, c->in[c->in_pos++]);
	}
}

enum http_event http_conn_next(struct http_conn *c, const struct http_request **req)
{
	*req = NULL;
	switch (c->state) {
	case ST_ERROR:
		return HTTP_ERROR;
	case ST_CLOSED:
		return HTTP_CLOSE;
	case ST_DELIVERED:
		if (!c->req.keep_alive) {
			c->state = ST_CLOSED;
			c->in_pos = c->in_len = 0;
			return HTTP_CLOSE;
		}
		start_request(c);
		break;
	default:
		break;
	}
	int ev;
	while ((ev = step(c)) == STEP_ON)
		;
	if (ev == HTTP_CONTINUE || ev == HTTP_REQUEST)
		*req = &c->req;
	return (enum http_event)ev;
}

/* ---- responses ---------------------------------------------------------- */

const char *http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "";
	}
}

/* snprintf at buf + *off; false if it did not fit. */
static bool append(char *buf, size_t cap, size_t *off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static bool append(char *buf, size_t cap, size_t *off, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf + *off, cap - *off, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap - *off)
		return false;
	*off += (size_t)n;
	return true;
}

int http_format_head(char *buf, size_t cap, int status, const char *content_type, size_t len,
		     bool keep_alive)
{
	if (status < 100 || status > 599)
		return -EINVAL;
	bool bodyless = status < 200 || status == 204 || status == 304;
	if (bodyless && len)
		return -EINVAL;
	for (const char *p = content_type; p && *p; p++)
		if (is_ctl(*p))
			return -EINVAL;
	if (cap == 0)
		return -ENOSPC;
	size_t off = 0;
	const char *reason = http_reason(status);
	bool ok = append(buf, cap, &off, "HTTP/1.1 %d %s\r\n", status, reason);
	if (ok && content_type)
		ok = append(buf, cap, &off, "Content-Type: %s\r\n", content_type);
	if (ok && !bodyless)
		ok = append(buf, cap, &off, "Content-Length: %zu\r\n", len);
	if (ok && !keep_alive)
		ok = append(buf, cap, &off, "Connection: close\r\n");
	if (ok)
		ok = append(buf, cap, &off, "\r\n");
	return ok ? (int)off : -ENOSPC;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One sendmsg (sockets, no SIGPIPE) or writev (anything else). */
static ssize_t write_some(int fd, struct iovec *iov, int n, bool *is_sock)
{
	if (*is_sock) {
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t r = sendmsg(fd, &m, MSG_NOSIGNAL);
		if (r >= 0 || errno != ENOTSOCK)
			return r;
		*is_sock = false;
	}
	return writev(fd, iov, n);
}

/* Write every byte of iov[0..n), waiting on EAGAIN until the deadline. */
static int write_all(int fd, struct iovec *iov, int n)
{
	int64_t deadline = now_ms() + HTTP_WRITE_TIMEOUT_MS;
	bool is_sock = true;
	while (n > 0) {
		if (iov->iov_len == 0) {
			iov++;
			n--;
			continue;
		}
		ssize_t w = write_some(fd, iov, n, &is_sock);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		if (w < 0) {
			int64_t left = deadline - now_ms();
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			if (left <= 0)
				return -ETIMEDOUT;
			if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
				return -errno;
			continue;
		}
		for (size_t done = (size_t)w; done;) {
			size_t k = done < iov->iov_len ? done : iov->iov_len;
			iov->iov_base = (char *)iov->iov_base + k;
			iov->iov_len -= k;
			done -= k;
			if (iov->iov_len == 0) {
				iov++;
				n--;
			}
		}
	}
	return 0;
}

int http_respond(int fd, int status, const char *content_type, const void *body, size_t len,
		 bool keep_alive)
{
	char head[512];
	if ((content_type && strlen(content_type) >= 256) || (len && !body))
		return -EINVAL;
	int h = http_format_head(head, sizeof(head), status, content_type, len, keep_alive);
	if (h < 0)
		return h;
	struct iovec iov[2] = {
		{ .iov_base = head, .iov_len = (size_t)h },
		{ .iov_base = (void *)body, .iov_len = len },
	};
	return write_all(fd, iov, 2);
}

int http_send_continue(int fd)
{
	static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = sizeof(msg) - 1 };
	return write_all(fd, &iov, 1);
}

int http_respond_error(int fd, const struct http_conn *c)
{
	if (!c->err_status)
		return -EINVAL;
	char body[128];
	int n = snprintf(body, sizeof(body), "%s\n", c->err_msg);
	if (n < 0 || (size_t)n >= sizeof(body))
		return -EINVAL;
	return http_respond(fd, c->err_status, "text/plain", body, (size_t)n, false);
}
