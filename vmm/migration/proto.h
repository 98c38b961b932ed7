/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vmm/migration/ - live migration (issue 17): the wire protocol and its
 * transport (proto.c), the sender and the receiver.  May call snapshot/,
 * machine/, virtio/, devices/, core/, boot/ and guestmm; called by api/
 * and cli/, never calls them.
 */
/*
 * proto.h - the migration wire protocol and its transport: URLs, sockets,
 * bounded whole-buffer I/O, framed messages, and the checks a receiver
 * makes on what it reads.  No VM knowledge: the sender and the receiver
 * build and apply the payloads.
 *
 * Modelled on Cloud Hypervisor's migration protocol.  Every message is a
 * 24-byte header (struct mig_hdr) followed by hdr.len payload bytes; every
 * integer is little-endian (this VMM is x86-64 only, so the structs below
 * are the wire format as they are).  The sender sends requests, the
 * receiver answers each with exactly one response:
 *
 *   MIG_START      JSON {"vmm":"<version>","local":true|false}
 *   MIG_CONFIG     JSON: the VM's configuration
 *   MIG_STATE      JSON: the VM's device and vCPU state
 *   MIG_MEMORY     uint64 count, count x struct mig_range, then the data of
 *                  each range without MIG_RANGE_ZERO, in table order
 *   MIG_COMPLETE   (empty) the VM now runs on the destination
 *   MIG_ABANDON    (empty) the source gives up; the destination drops it
 *   MIG_MEMORY_FD  (local mode) struct mig_memfd_head, count x struct
 *                  mig_memfd; the count fds ride as SCM_RIGHTS on the
 *                  header's first bytes (unix sockets only)
 *   MIG_OK         (empty) the request was applied
 *   MIG_ERROR      UTF-8 text, at most MIG_MAX_ERROR_BYTES: why not
 *
 * What a receiver refuses, each with a message naming the field: a bad
 * magic, another version (both versions said), reserved != 0, an unknown
 * cmd, a len over that cmd's limit (JSON 1..MIG_MAX_JSON_BYTES; empty
 * commands 0; MIG_MEMORY_FD 8 + 1..64 entries; MIG_ERROR <=
 * MIG_MAX_ERROR_BYTES), fds with any command but MIG_MEMORY_FD, and the
 * table rules of mig_memory_table_check() / mig_memfd_table_check().
 *
 * Transport: "unix:/abs/path" or "tcp:HOST:PORT" (mig_url_parse).  Every
 * socket this file makes is CLOEXEC and non-blocking; every wait is a
 * poll() in steps of at most 100 ms that also looks at a cancel flag, and
 * is bounded: mig_accept() and mig_connect() by their timeout, each
 * transfer by c->timeout_ms *without progress* (a slow link that moves
 * bytes goes on; a peer that stops sending does not hold us).  Errors are
 * one line in c->err (or err), for a log or the control API's answer.
 *
 * Threads: a struct mig_conn belongs to one thread at a time; *cancel may
 * be set from any thread (an atomic load each step).
 */
#ifndef VMM_MIGRATION_PROTO_H
#define VMM_MIGRATION_PROTO_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define MIG_MAGIC 0x474d4d56u   /* "VMMG" as a little-endian uint32 */
#define MIG_VERSION 1

enum mig_cmd {
	MIG_START = 1,
	MIG_CONFIG = 2,
	MIG_STATE = 3,
	MIG_MEMORY = 4,
	MIG_COMPLETE = 5,
	MIG_ABANDON = 6,
	MIG_MEMORY_FD = 7,
	MIG_OK = 0x100,
	MIG_ERROR = 0x101,
};

/* Limits (overridable at build time only for the fuzzer, which shrinks
 * them so that short inputs reach their edges). */
#ifndef MIG_MAX_JSON_BYTES
#define MIG_MAX_JSON_BYTES (16u << 20)
#endif
#ifndef MIG_MAX_RANGES
#define MIG_MAX_RANGES 65536u
#endif
#define MIG_MAX_ERROR_BYTES 4096u
#define MIG_MAX_FDS 64u
#define MIG_PAGE 4096u
#define MIG_GPA_LIMIT (1ull << 52)    /* every range ends below it */
#define MIG_DEFAULT_TIMEOUT_MS 30000  /* a conn's timeout_ms <= 0 means this */

struct mig_hdr {
	uint32_t magic;     /* MIG_MAGIC */
	uint16_t version;   /* MIG_VERSION */
	uint16_t cmd;       /* enum mig_cmd */
	uint64_t len;       /* payload bytes that follow */
	uint64_t reserved;  /* 0 */
};

#define MIG_RANGE_ZERO 1ull   /* holes / zero pages on the source: no data */

struct mig_range {
	uint64_t gpa, len, flags;
};

struct mig_memfd_head {
	uint32_t count;     /* 1..MIG_MAX_FDS, = the fds sent with the header */
	uint32_t pad;       /* 0 */
};

struct mig_memfd {
	uint64_t gpa, size, offset;  /* guest range; offset into fd i's file */
	uint32_t backing;            /* the region's backing, the sender's enum */
	uint32_t pad;                /* 0 */
};

_Static_assert(sizeof(struct mig_hdr) == 24, "mig_hdr is 24 bytes on the wire");
_Static_assert(sizeof(struct mig_range) == 24, "mig_range is 24 bytes on the wire");
_Static_assert(sizeof(struct mig_memfd_head) == 8, "mig_memfd_head is 8 bytes");
_Static_assert(sizeof(struct mig_memfd) == 32, "mig_memfd is 32 bytes on the wire");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the structs are the wire format");

/* "MIG_START" ... "MIG_ERROR"; "unknown" otherwise (never NULL). */
const char *mig_cmd_name(uint16_t cmd);

/* ---- addresses and sockets ---------------------------------------------- */

struct mig_url {
	int family;                      /* AF_UNIX / AF_INET / AF_INET6 */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char text[128];                  /* canonical: "unix:/p", "tcp:1.2.3.4:5", "tcp:[::1]:5" */
};

/* "unix:/abs/path" (path <= 107 bytes), "tcp:HOST:PORT" (HOST a numeric
 * IPv4 address, "localhost" (= 127.0.0.1) or a bracketed numeric IPv6
 * address; PORT 1..65535 in decimal; a listener may use 0.0.0.0 / [::]).
 * 0, or -1 with err saying what is expected. */
int mig_url_parse(const char *url, struct mig_url *u, char *err, size_t errlen);

/* A listening stream socket at u (CLOEXEC, non-blocking, backlog 4).
 * unix: an existing socket at the path is replaced; any other file there
 * is refused (never removed).  tcp: SO_REUSEADDR.  fd, or -1 with err. */
int mig_listen(const struct mig_url *u, char *err, size_t errlen);

/* Accept one connection on lfd within timeout_ms (<= 0: the default),
 * polling in steps of <= 100 ms and giving up once *cancel (if not NULL)
 * is true.  The fd returned is CLOEXEC and non-blocking (TCP_NODELAY on
 * tcp); the mig_* I/O below copes with either mode.  fd, or -1 with err
 * ("timed out after N s waiting for a connection", "cancelled", strerror). */
int mig_accept(int lfd, int timeout_ms, const _Atomic bool *cancel, char *err, size_t errlen);

/* One connection.  The caller fills fd (or lets mig_connect do it),
 * timeout_ms and cancel; counters and err are this file's. */
struct mig_conn {
	int fd;
	int timeout_ms;                /* no progress for this long = error (<= 0: default) */
	const _Atomic bool *cancel;    /* NULL: never cancelled */
	uint64_t sent, received;       /* header + payload bytes */
	unsigned fds_closed;           /* fds beyond maxfds the last mig_recv_hdr closed */
	char err[512];
};

/* Connect c to u within timeout_ms (<= 0: the default; c->cancel is
 * honoured).  Sets c->fd (CLOEXEC, non-blocking, TCP_NODELAY on tcp) and
 * zeroes the counters; c->timeout_ms and c->cancel are left as the caller
 * set them.  0, or -1 with c->err and c->fd = -1. */
int mig_connect(struct mig_conn *c, const struct mig_url *u, int timeout_ms);

/* Close c->fd (if >= 0) and set it to -1.  Idempotent. */
void mig_conn_close(struct mig_conn *c);

/* ---- whole-buffer I/O ---------------------------------------------------- */

/* Send / receive exactly len bytes (sendv: every iov byte; iov is advanced
 * in place).  Each is bounded by c->timeout_ms without progress and by
 * c->cancel (also checked before starting); EINTR is retried; no SIGPIPE.
 * 0, or -1 with c->err: "the peer closed the connection", "timed out: no
 * progress for N ms", "cancelled", or strerror.  After an error the stream
 * is out of step: close it. */
int mig_send_all(struct mig_conn *c, const void *buf, size_t len);
int mig_sendv_all(struct mig_conn *c, struct iovec *iov, int iovcnt);
int mig_recv_all(struct mig_conn *c, void *buf, size_t len);

/* ---- messages ------------------------------------------------------------ */

/* Send a header (version MIG_VERSION, reserved 0).  nfds (<= MIG_MAX_FDS)
 * fds ride as SCM_RIGHTS on its first bytes: unix sockets only (refused
 * with a clear error otherwise).  The fds stay the caller's.  0 or -1. */
int mig_send_hdr(struct mig_conn *c, uint16_t cmd, uint64_t len, const int *fds, unsigned nfds);

/* Read a header and check magic, version, reserved, cmd (any request or
 * response) and len against that cmd's limit.  fds that came with it are
 * put in fds[] (CLOEXEC) up to maxfds, the rest closed (counted in
 * c->fds_closed); *nfds = how many are in fds[].  fds with any cmd but
 * MIG_MEMORY_FD are refused.  0, or -1 with c->err; on -1 no fd is left
 * open and *nfds = 0.  fds and nfds may be NULL when maxfds is 0. */
int mig_recv_hdr(struct mig_conn *c, struct mig_hdr *h, int *fds, unsigned maxfds,
		 unsigned *nfds);

/* Header + payload (len bytes at payload; one sendmsg when it fits). */
int mig_send_msg(struct mig_conn *c, uint16_t cmd, const void *payload, size_t len);

/* Receiver: answer the current request with MIG_OK, or with MIG_ERROR and
 * the formatted text (cut to MIG_MAX_ERROR_BYTES on a UTF-8 boundary). */
int mig_reply_ok(struct mig_conn *c);
int mig_reply_error(struct mig_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sender: read the answer to the request just sent.  0 on MIG_OK; -1 with
 * c->err = "the destination refused: <its text>" (control characters
 * shown as '?'), or the protocol / transport error. */
int mig_wait_reply(struct mig_conn *c);

/* ---- the payload tables -------------------------------------------------- */

/* Check a MIG_MEMORY table already read (count ranges, in host memory)
 * against the header's len: count <= MIG_MAX_RANGES; each range's gpa and
 * len multiples of 4096, len > 0, gpa + len without overflow and below
 * 2^52, flags only MIG_RANGE_ZERO; ranges sorted by gpa, not overlapping;
 * payload_len == 8 + count * 24 + the lens of the ranges without
 * MIG_RANGE_ZERO, exactly.  0 with *data_bytes = that sum (may be NULL),
 * or -1 with err naming the range and the field.  count 0 is valid. */
int mig_memory_table_check(const struct mig_range *r, uint64_t count, uint64_t payload_len,
			   uint64_t *data_bytes, char *err, size_t errlen);

/* Read a MIG_MEMORY message's count and table (h: its header, as read by
 * mig_recv_hdr) and check them (count first, before anything is
 * allocated).  0 with *r (malloc'd, the caller frees; NULL when count is
 * 0), *count and *data_bytes: the data bytes that follow in the stream,
 * range by range.  -1 with c->err (nothing allocated). */
int mig_recv_memory_table(struct mig_conn *c, const struct mig_hdr *h, struct mig_range **r,
			  uint64_t *count, uint64_t *data_bytes);

/* Check a MIG_MEMORY_FD table: count 1..MIG_MAX_FDS, pads 0, payload_len
 * == 8 + count * 32, nfds == count (and none closed for lack of room:
 * fds_closed == 0), each gpa, size and offset a multiple of 4096, size >
 * 0, gpa + size below 2^52.  0 or -1 with err. */
int mig_memfd_table_check(const struct mig_memfd_head *head, const struct mig_memfd *m,
			  uint64_t payload_len, unsigned nfds, unsigned fds_closed, char *err,
			  size_t errlen);

/* Read and check a MIG_MEMORY_FD payload (h and nfds: from mig_recv_hdr)
 * into m[MIG_MAX_FDS]; *count = its entries.  The fds stay the caller's,
 * on success and on failure.  0 or -1 with c->err. */
int mig_recv_memfd_table(struct mig_conn *c, const struct mig_hdr *h, unsigned nfds,
			 struct mig_memfd *m, unsigned *count);

#endif
