/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vmm/api/ - the control plane: the HTTP/1.1 layer (http.c), the
 * endpoints (api.c), the JSON of a configuration (api_config.c) and the
 * `vmm remote` client (remote.c).  May call machine/ and everything below
 * it; never cli/ or the bench (cli/run.c serves it).
 */
/*
 * api.h - the control API: the part of Cloud Hypervisor's HTTP API that
 * libvirt's ch driver uses, served on a unix stream socket from the main
 * thread's poll loop (run.c).
 *
 * Endpoints, under /api/v1/ (answers are JSON; errors {"error":"..."}):
 *   GET vmm.ping      200 {"build_version","version","pid","features"}
 *   PUT vmm.shutdown  204; the VM (if any) is stopped and the VMM exits 0
 *   PUT vm.create     204; 400 bad body or config (the kernel is checked
 *                     here), 409 a VM exists already
 *   PUT vm.boot       204; 500 the VM could not be created (the reason),
 *                     409 already booted
 *   GET vm.info       200 {"config":{...},"state","memory_actual_size"}
 *   PUT vm.pause      204; 409 not running
 *   PUT vm.resume     204; 409 not paused
 *   PUT vm.shutdown   204; the guest is stopped and the VMM then exits 0
 *   PUT vm.reboot     204; the VM is destroyed and booted again, same
 *                     config and console; 409 not booted, 500 boot failed
 *   PUT vm.delete     204 (also without a VM); back to no VM
 *   GET vm.counters   200 {"guestmm":{...},"vcpu0":{...},...,"devices":{...}};
 *                     409 not booted
 *   PUT vm.resize     {"desired_ram": boot RAM + virtio-mem plugged size,
 *                     "desired_balloon": balloon target} 204 (passed to the
 *                     guest; vm.info's "balloon"/"virtio_mem" show progress),
 *                     400 bad value or no such device, 409 not booted
 * Every vm.* endpoint but create/delete answers 404 when no VM was
 * created (Cloud Hypervisor says 500 there; libvirt only tells success
 * from failure).  Unknown endpoint 404, wrong method 405, and what the
 * HTTP layer refuses (http.h: 400, 413, 414, 431, 501, 505) closes that
 * connection only: nothing a client sends stops the VMM.
 *
 * Connections: up to API_MAX_CONNS at once, keep-alive, closed after
 * API_IDLE_MS without a byte (the environment's VMM_API_IDLE_MS overrides
 * it, for tests).  A request -- head and body -- must arrive whole within
 * API_REQUEST_MS of its first byte (VMM_API_REQUEST_MS overrides it), or
 * the connection is answered 408 (best effort, never waited for) and
 * closed: bytes trickled one at a time keep the idle timer going but not
 * this one (slowloris).  When every slot is taken, a new connection takes
 * the slot of the connection that has been stalled longest -- a request
 * under way, or an idle keep-alive, for API_EVICT_MS at least -- which is
 * closed; only if none has is the newcomer answered 503 and closed.  So
 * API_MAX_CONNS trickling clients cannot keep a client out: it gets a slot
 * at once, and an attacker's fresh connections cannot take it (they are
 * younger).  Sockets are nonblocking; an answer is written synchronously
 * (http_respond: at most 5 s for a client that does not read).
 *
 * The socket (path=P) is created 0600 whatever the umask: bound under
 * umask 0177, then checked (our socket, owned by us) and chmod'ed through
 * an O_PATH fd if an ACL widened it.  Only a socket of ours, left by a dead
 * VMM, is ever replaced: anything else at the path (a symlink, a file,
 * another user's socket, a live one) is refused.
 *
 * Threads: main thread only, like the machine it drives (machine.h).
 */
#ifndef VMM_API_H
#define VMM_API_H

#include "machine/config.h"
#include "machine/machine.h"

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>

#define API_MAX_CONNS 16
#define API_IDLE_MS 60000
#define API_REQUEST_MS 10000   /* a whole request, from its first byte */
#define API_EVICT_MS 1000      /* stalled this long, a slot may be taken */
#define API_MAX_POLLFDS (1 + API_MAX_CONNS)

struct api;

/* Listen on spec: "path=P" (created; a stale socket file left by a dead
 * VMM is replaced, one that still answers is refused), "fd=N" (an
 * inherited unix stream socket that is already listening, as libvirt
 * passes it: checked with SO_ACCEPTCONN), or a bare path.  The API drives
 * m; vm.create starts from *defaults (the host choices of the `vmm run`
 * options: api_parse_create() keeps nothing else), which must outlive the
 * api.  Called before any other thread exists (the umask is changed
 * around bind(2)).  0, or -1 with one sentence in err. */
int api_open(const char *spec, struct machine *m, const struct machine_config *defaults,
	     struct api **out, char *err, size_t errlen);
/* Close every connection and the socket; a path we created is removed. */
void api_close(struct api *a);

/* The fds to poll (the listening socket, then each connection) into p;
 * returns how many (<= API_MAX_POLLFDS). */
unsigned api_pollfds(struct api *a, struct pollfd *p, unsigned max);
/* Milliseconds until the next connection is due to close (idle, or its
 * request's deadline), -1 if none. */
int api_timeout_ms(const struct api *a);
/* Act on poll's answer for the n fds api_pollfds() gave (same order):
 * accept, read, answer, close idle and late connections.  True once the VMM must
 * exit (vmm.shutdown, vm.shutdown): the answer has been sent. */
bool api_serve(struct api *a, const struct pollfd *p, unsigned n);

#endif
