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
 * Connections: up to API_MAX_CONNS at once (more are answered 503 and
 * closed), keep-alive, closed after API_IDLE_MS without a byte (the
 * environment's VMM_API_IDLE_MS overrides it, for tests).  Sockets
 * are nonblocking; an answer is written synchronously (http_respond: at
 * most 5 s for a client that does not read).
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
#define API_MAX_POLLFDS (1 + API_MAX_CONNS)

struct api;

/* Listen on spec: "path=P" (created; a stale socket file left by a dead
 * VMM is replaced, one that still answers is refused), "fd=N" (an
 * inherited unix stream socket that is already listening, as libvirt
 * passes it: checked with SO_ACCEPTCONN), or a bare path.  The API drives
 * m; vm.create starts from *defaults (the `vmm run` options), which must
 * outlive the api.  0, or -1 with one sentence in err. */
int api_open(const char *spec, struct machine *m, const struct machine_config *defaults,
	     struct api **out, char *err, size_t errlen);
/* Close every connection and the socket; a path we created is removed. */
void api_close(struct api *a);

/* The fds to poll (the listening socket, then each connection) into p;
 * returns how many (<= API_MAX_POLLFDS). */
unsigned api_pollfds(struct api *a, struct pollfd *p, unsigned max);
/* Milliseconds until the next idle connection is due to close, -1 if none. */
int api_timeout_ms(const struct api *a);
/* Act on poll's answer for the n fds api_pollfds() gave (same order):
 * accept, read, answer, close idle connections.  True once the VMM must
 * exit (vmm.shutdown, vm.shutdown): the answer has been sent. */
bool api_serve(struct api *a, const struct pollfd *p, unsigned n);

#endif
