/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * http.h - the HTTP/1.1 layer of the control API: an incremental
 * server-side request parser for one connection, and a response writer.
 *
 * The caller (api.c, run from the VMM's poll loop) owns the socket.  It
 * puts bytes in (http_conn_read() from the fd, or http_conn_feed()), then
 * calls http_conn_next() until it says HTTP_NEED_MORE, acting on each
 * event in order:
 *
 *   HTTP_CONTINUE  the header block of a request carrying
 *                  "Expect: 100-continue" is complete and its body has not
 *                  been parsed: send http_send_continue() now (libcurl
 *                  waits a second for it), then call again.  Once per
 *                  request, only for HTTP/1.1 requests that have a body
 *                  (chunked, or Content-Length > 0).
 *   HTTP_REQUEST   a complete request: answer it (http_respond()), then
 *                  call again for the next, pipelined, one.
 *   HTTP_ERROR     the bytes are not a request we accept: send
 *                  http_respond_error() and close.  Sticky.
 *   HTTP_CLOSE     the last request said the connection closes
 *                  (Connection: close, or HTTP/1.0 without keep-alive):
 *                  close.  Sticky; bytes after that request are ignored.
 *   HTTP_NEED_MORE every byte given has been parsed: wait for more.
 *
 * What is accepted: "METHOD SP target SP HTTP/1.x" (1.0, 1.1; a later 1.x
 * is taken as 1.1; another major version is 505), header lines (names
 * matched case-insensitively, values trimmed; obs-fold rejected), lines
 * ending in CRLF or a bare LF (never a bare CR), empty lines before the
 * request line skipped.  Targets: origin-form ("/path?query") as libcurl
 * sends; absolute-form ("http://host/path") is normalised to its path;
 * anything else is 400.  No percent-decoding, no dot-segment removal: the
 * path is compared literally by the caller.  Host is not required.
 * Bodies: Content-Length (repeated or listed values must all be equal) or
 * "Transfer-Encoding: chunked" (extensions ignored, trailers read and
 * discarded); both is 400; another transfer coding is 501; a request with
 * neither has no body.
 *
 * Bounded: the header block (request line, headers, final empty line) is
 * at most HTTP_MAX_HEADER_BYTES (414 if the request line alone does not
 * fit, else 431), at most HTTP_MAX_HEADERS headers (431), a body at most
 * HTTP_MAX_BODY_BYTES (413, decided from Content-Length or the chunk size
 * before the body is read), a chunk-size line at most HTTP_MAX_CHUNK_LINE
 * bytes and the trailers at most HTTP_MAX_HEADER_BYTES (400, 431).  A
 * connection holds one fixed struct (~34 KiB) plus the body of the current
 * request.  Lengths that are not decimal/hex digits or overflow 64 bits are
 * 400.
 *
 * No global state, no threads, no locks: one connection is used by one
 * thread at a time; different connections are independent.
 */
#ifndef VMM_HTTP_H
#define VMM_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The limits.  The fuzzer's build (tests/vmm/meson.build) shrinks them with -D
 * for every file it compiles, to reach their edges; nothing else may. */
#ifndef HTTP_MAX_HEADER_BYTES
#define HTTP_MAX_HEADER_BYTES (16 * 1024)  /* request line + headers + CRLF */
#endif
#ifndef HTTP_MAX_HEADERS
#define HTTP_MAX_HEADERS      64
#endif
#ifndef HTTP_MAX_BODY_BYTES
#define HTTP_MAX_BODY_BYTES   (1024 * 1024)
#endif
#ifndef HTTP_MAX_CHUNK_LINE
#define HTTP_MAX_CHUNK_LINE   1024         /* "1a;ext=v\r\n" */
#endif
#ifndef HTTP_IN_BUF_BYTES
#define HTTP_IN_BUF_BYTES     (16 * 1024)  /* input not parsed yet */
#endif
#define HTTP_WRITE_TIMEOUT_MS 5000         /* http_respond() on a full socket */

struct http_header {
	const char *name;    /* as sent */
	const char *value;   /* leading and trailing blanks removed */
};

/* A parsed request: every string is NUL-terminated and lives in the
 * connection until the next http_conn_next() or http_conn_free(). */
struct http_request {
	const char *method;  /* "GET", "PUT", ... (case-sensitive, as sent) */
	const char *path;    /* "/api/v1/vm.info": the target before any '?' */
	const char *query;   /* after the '?', or NULL without one */
	int version;         /* 10 or 11 */
	struct http_header headers[HTTP_MAX_HEADERS];
	unsigned nheaders;
	char *body;          /* never NULL; NUL-terminated (may hold NULs) */
	size_t body_len;     /* <= HTTP_MAX_BODY_BYTES */
	bool chunked;        /* the body came chunked */
	bool expect_continue;/* HTTP_CONTINUE was (or will be) reported */
	bool keep_alive;     /* the connection stays open after the answer */
};

enum http_event {
	HTTP_NEED_MORE,
	HTTP_CONTINUE,
	HTTP_REQUEST,
	HTTP_ERROR,
	HTTP_CLOSE,
};

struct http_conn;

/* A connection in its initial state; NULL (errno ENOMEM) if out of
 * memory.  http_conn_free(NULL) does nothing. */
struct http_conn *http_conn_new(void);
void http_conn_free(struct http_conn *c);

/* Copy up to len bytes into the connection's input buffer; returns how
 * many were taken.  After http_conn_next() has said HTTP_NEED_MORE the
 * whole buffer (HTTP_IN_BUF_BYTES) is free; it fills only while a request
 * or a 100-continue is being reported, so feed, drain the events, feed the
 * rest.  After HTTP_ERROR or HTTP_CLOSE bytes are taken and dropped. */
size_t http_conn_feed(struct http_conn *c, const void *data, size_t len);

/* One read(2) from fd (blocking or not; EINTR retried) into the input
 * buffer.  Returns the bytes read, 0 at end of file, -errno on failure
 * (-EAGAIN: nothing to read on a nonblocking fd), -ENOBUFS if the buffer
 * is full (drain the events first).  The fd stays the caller's. */
ssize_t http_conn_read(struct http_conn *c, int fd);

/* http_conn_read() with recvmsg(2) on a unix stream socket: file
 * descriptors passed with the bytes (SCM_RIGHTS, as libvirt sends a tap's
 * with vm.add-net) are received close-on-exec into fds (at most maxfds;
 * *nfds says how many, 0 without any).  The kernel discards what does not
 * fit (counted in *dropped, which may be NULL).  Whatever is returned,
 * every fd in fds is the caller's to close.  On a fd that is not a socket
 * it falls back to read(2). */
#define HTTP_MAX_RECV_FDS 8
ssize_t http_conn_recv(struct http_conn *c, int fd, int *fds, size_t maxfds, size_t *nfds,
		       bool *dropped);

/* Parse what is buffered and report the next event (above).  *req is set
 * for HTTP_CONTINUE (headers only, body_len 0) and HTTP_REQUEST, else
 * NULL; it stays valid until the next call.  Never fails otherwise: on
 * memory exhaustion for a body it reports HTTP_ERROR with 503. */
enum http_event http_conn_next(struct http_conn *c, const struct http_request **req);

/* After http_conn_next() has said HTTP_NEED_MORE: true if bytes of a
 * request not reported yet have been taken (a partial request line,
 * headers, body or chunk framing, blank lines before a request line
 * included), false between requests.  The caller's per-request deadline
 * (api.c) runs while this is true. */
bool http_conn_partial(const struct http_conn *c);

/* After HTTP_ERROR: the status to answer (400, 413, 414, 431, 501, 503,
 * 505) and a one-line message; 0 and NULL before any error. */
int http_conn_error(const struct http_conn *c, const char **msg);

/* The value of the first header named name (any case), or NULL. */
const char *http_header(const struct http_request *r, const char *name);

/* The standard reason phrase of status ("OK", "Not Found"), "" if
 * unknown. */
const char *http_reason(int status);

/* Format the status line and headers of a response into buf:
 * "HTTP/1.1 <status> <reason>", "Content-Type: <content_type>" (when
 * content_type is not NULL), "Content-Length: <len>" (not for 1xx, 204 and
 * 304, which have no body: len must be 0 for them), "Connection: close"
 * unless keep_alive, and the empty line.  Returns the length (without a
 * NUL; buf is NUL-terminated), -EINVAL for a status outside 100..599, a
 * body where none is allowed or a content_type with a control character,
 * -ENOSPC if cap is too small (512 bytes is always enough for a
 * content_type under 256 bytes). */
int http_format_head(char *buf, size_t cap, int status, const char *content_type, size_t len,
		     bool keep_alive);

/* Write a whole response (head, then body) to fd.  Handles short writes on
 * a blocking or a nonblocking socket: on EAGAIN it waits with poll(2) for
 * the socket to drain, at most HTTP_WRITE_TIMEOUT_MS in all, so the
 * caller's loop stalls at most that long for a client that does not read.
 * Sockets are written with MSG_NOSIGNAL (a peer that went away is -EPIPE,
 * never SIGPIPE); other fds with write(2).  0, or -errno (-ETIMEDOUT,
 * -EPIPE; -EINVAL as http_format_head, or for a content_type of 256 bytes
 * or more, or len without a body); after a failure the
 * response may be partly sent: close the connection.  The body is always
 * sent (HEAD is not special: the API answers it 405). */
int http_respond(int fd, int status, const char *content_type, const void *body, size_t len,
		 bool keep_alive);

/* "HTTP/1.1 100 Continue\r\n\r\n", written as http_respond() writes. */
int http_send_continue(int fd);

/* After HTTP_ERROR: the error status with its message as text/plain and
 * "Connection: close".  Then close the connection (shutdown(SHUT_WR) and a
 * short drain first spares the client a reset if it is still sending). */
int http_respond_error(int fd, const struct http_conn *c);

#endif
