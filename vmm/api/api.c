// SPDX-License-Identifier: GPL-2.0-only
/*
 * api.c - the control API's socket, connections and endpoints (api.h).
 *
 * The main thread's poll loop hands us the listening socket's and each
 * connection's readiness.  A readable connection gets one read(2) into its
 * http_conn (http.h), then every event it yields is acted on at once:
 * "100 Continue" sent the moment a request's head asks for it (libcurl
 * would otherwise wait a second), each complete request dispatched and
 * answered before the next pipelined one is looked at, a protocol error
 * answered and the connection closed.  Nothing here blocks but the
 * writing of an answer (bounded by http_respond) and the endpoints'
 * own work on the machine (creating a VM, joining its vCPUs).
 *
 * Timers (api.h): a connection is closed when idle_ms pass without a byte,
 * or request_ms after the first byte of a request that is not complete
 * yet (req_ms; http_conn_partial() says whether one is under way).  With
 * every slot taken, accept_all() closes the connection stalled longest
 * (stalled_since) if that is API_EVICT_MS or more, to make room.
 *
 * Endpoints act on the machine (machine.h) and answer from its state; the
 * JSON in and out is api_config.c's.  Every answer and every refusal is
 * logged with its status, at debug level for reads and info or warn for
 * actions and errors.
 */
#include "api/api.h"
#include "api/api_config.h"
#include "devices/devices.h"
#include "api/http.h"
#include "core/bus.h"
#include "core/log.h"
#include "core/size.h"
#include "virtio/virtio_devices.h"
#include "machine/virtio_set.h"
#include "snapshot/snapshot.h"
#include "migration/migration.h"

#include <json-c/json.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef VMM_VERSION
#define VMM_VERSION "0.0.0"
#endif

#define PREFIX "/api/v1/"

struct conn {
	int fd;                  /* -1: closed, to be compacted away */
	struct http_conn *h;
	int64_t last_ms;         /* last byte received (or accept) */
	int64_t req_ms;          /* first byte of the request under way, 0: none */
	/* File descriptors passed with the bytes (SCM_RIGHTS; conn_serve):
	 * the request they came with takes them (vm.add-net); what is left
	 * once no request is under way is closed. */
	int fds[HTTP_MAX_RECV_FDS];
	unsigned nfds;
};

struct api {
	int listen_fd;
	char *path;              /* a socket file we created, removed at close */
	dev_t dev;
	ino_t ino;
	struct conn conns[API_MAX_CONNS];
	unsigned nconns;
	unsigned npolled;        /* connections api_pollfds() last gave */
	int idle_ms;             /* API_IDLE_MS, or $VMM_API_IDLE_MS (tests) */
	int request_ms;          /* API_REQUEST_MS, or $VMM_API_REQUEST_MS (tests) */
	struct machine *m;
	const struct machine_config *defaults;
	bool exit;
	struct conn *cur;        /* the connection whose request is dispatched */
};

/* An answer: status and a JSON body (malloc'd; NULL for none). */
struct reply {
	int status;
	char *body;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the listening socket ------------------------------------------------ */

static int set_flags(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	int fdfl = fcntl(fd, F_GETFD);
	if (fl < 0 || fdfl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0)
		return -1;
	return 0;
}

/* An inherited socket: a unix stream socket, already listening. */
static int open_fd(struct api *a, const char *num, char *err, size_t errlen)
{
	char *end;
	errno = 0;
	long fd = strtol(num, &end, 10);
	if (!*num || *end || errno || fd < 0 || fd > INT_MAX)
		return config_fail(err, errlen, "--api-socket fd=%s: not a file descriptor number", num);
	int v = 0;
	socklen_t len = sizeof(v);
	if (fcntl((int)fd, F_GETFD) < 0)
		return config_fail(err, errlen, "--api-socket fd=%ld: %s", fd, strerror(errno));
	if (getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) < 0)
		return config_fail(err, errlen, "--api-socket fd=%ld: %s", fd,
			    errno == ENOTSOCK ? "not a socket" : strerror(errno));
	if (!v)
		return config_fail(err, errlen, "--api-socket fd=%ld: the socket is not listening "
			    "(bind and listen(2) it before passing it)", fd);
	int dom = 0, type = 0;
	len = sizeof(dom);
	getsockopt((int)fd, SOL_SOCKET, SO_DOMAIN, &dom, &len);
	len = sizeof(type);
	getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len);
	if (dom != AF_UNIX || type != SOCK_STREAM)
		return config_fail(err, errlen, "--api-socket fd=%ld: not a unix stream socket", fd);
	if (set_flags((int)fd) < 0)
		return config_fail(err, errlen, "--api-socket fd=%ld: %s", fd, strerror(errno));
	a->listen_fd = (int)fd;
	return 0;
}

/* A socket file at path: a stale one of ours (nobody accepts on it) is
 * replaced; a live one, another user's, or anything that is not a socket
 * (a symlink included: lstat) is left alone and refused.  The new socket
 * is 0600 whatever the umask (api.h). */
static int open_path(struct api *a, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (!path[0])
		return config_fail(err, errlen, "--api-socket: the path is empty");
	if (strlen(path) >= sizeof(sa.sun_path))
		return config_fail(err, errlen, "--api-socket %s: the path is longer than %zu bytes", path,
			    sizeof(sa.sun_path) - 1);
	strcpy(sa.sun_path, path);
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return config_fail(err, errlen, "--api-socket %s: exists and is not a socket", path);
		if (st.st_uid != geteuid())
			return config_fail(err, errlen, "--api-socket %s: a socket of uid %u, not ours: "
					   "refused", path, (unsigned)st.st_uid);
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		if (probe >= 0)
			close(probe);
		if (live)
			return config_fail(err, errlen, "--api-socket %s: another process is serving it", path);
		if (unlink(path) < 0)
			return config_fail(err, errlen, "--api-socket %s: cannot remove the stale socket: %s",
				    path, strerror(errno));
		log_msg(LOG_INFO, "api: removed the stale socket %s", path);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return config_fail(err, errlen, "--api-socket %s: socket: %s", path, strerror(errno));
	/* Created 0600 from the start: no moment when another user could
	 * connect.  (bind(2) never follows a symlink at the path: EADDRINUSE.) */
	mode_t old = umask(0177);
	int ret = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	int e = errno;
	umask(old);
	if (ret < 0 || listen(fd, API_MAX_CONNS) < 0) {
		config_fail(err, errlen, "--api-socket %s: %s", path, strerror(ret < 0 ? e : errno));
		close(fd);
		return -1;
	}
	/* Check what is at the path now (ours: a socket of our user) through
	 * an O_PATH fd, and tighten it there if a default ACL widened it. */
	int pfd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	const char *why = NULL;
	if (pfd < 0 || fstat(pfd, &st) < 0)
		why = strerror(errno);
	else if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid())
		why = "replaced under us";
	if (!why && (st.st_mode & 0777) != 0600) {
		char proc[64];
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
		if (chmod(proc, 0600) < 0 || fstat(pfd, &st) < 0 || (st.st_mode & 0777) != 0600)
			why = "cannot make it 0600";
	}
	if (pfd >= 0)
		close(pfd);
	if (why) {
		config_fail(err, errlen, "--api-socket %s: %s", path, why);
		close(fd);
		return -1;
	}
	a->path = strdup(path);
	a->dev = st.st_dev;
	a->ino = st.st_ino;
	a->listen_fd = fd;
	return 0;
}

int api_open(const char *spec, struct machine *m, const struct machine_config *defaults,
	     struct api **out, char *err, size_t errlen)
{
	struct api *a = calloc(1, sizeof(*a));
	*out = NULL;
	if (!a)
		return config_fail(err, errlen, "--api-socket: out of memory");
	a->listen_fd = -1;
	a->idle_ms = API_IDLE_MS;
	const char *idle = getenv("VMM_API_IDLE_MS");
	if (idle && atoi(idle) > 0)
		a->idle_ms = atoi(idle);
	a->request_ms = API_REQUEST_MS;
	const char *req = getenv("VMM_API_REQUEST_MS");
	if (req && atoi(req) > 0)
		a->request_ms = atoi(req);
	a->m = m;
	a->defaults = defaults;
	int ret;
	if (strncmp(spec, "fd=", 3) == 0)
		ret = open_fd(a, spec + 3, err, errlen);
	else
		ret = open_path(a, strncmp(spec, "path=", 5) == 0 ? spec + 5 : spec, err, errlen);
	if (ret < 0) {
		free(a);
		return -1;
	}
	log_msg(LOG_INFO, "api: listening on %s", a->path ? a->path : spec);
	*out = a;
	return 0;
}

/* Close the passed fds no request took. */
static void conn_drop_fds(struct conn *c, const char *why)
{
	if (!c->nfds)
		return;
	log_msg(LOG_INFO, "api: %u file descriptor%s passed with %s closed", c->nfds,
		c->nfds > 1 ? "s" : "", why);
	for (unsigned i = 0; i < c->nfds; i++)
		close(c->fds[i]);
	c->nfds = 0;
}

static void conn_close(struct conn *c)
{
	conn_drop_fds(c, "a connection that closed");
	if (c->fd >= 0)
		close(c->fd);
	http_conn_free(c->h);
	c->fd = -1;
	c->h = NULL;
}

void api_close(struct api *a)
{
	if (!a)
		return;
	for (unsigned i = 0; i < a->nconns; i++)
		conn_close(&a->conns[i]);
	if (a->listen_fd >= 0)
		close(a->listen_fd);
	/* Remove the file only if it is still the socket we bound. */
	struct stat st;
	if (a->path && lstat(a->path, &st) == 0 && st.st_dev == a->dev && st.st_ino == a->ino)
		unlink(a->path);
	free(a->path);
	free(a);
}

/* ---- endpoints ----------------------------------------------------------- */

static void reply_json(struct reply *r, int status, char *body)
{
	r->status = body ? status : 500;   /* NULL: out of memory */
	r->body = body;
}

static void reply_error(struct reply *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void reply_error(struct reply *r, int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r->status = status;
	r->body = api_error_json(msg);
}

/* 404 without a VM; true if there is one. */
static bool need_vm(struct api *a, struct reply *r)
{
	if (machine_state(a->m) != MACHINE_NONE)
		return true;
	reply_error(r, 404, "no VM: vm.create first");
	return false;
}

static void wrong_state(struct api *a, struct reply *r, const char *what)
{
	reply_error(r, 409, "the VM is %s (state %s)", what, machine_state_name(machine_state(a->m)));
}

static void ep_ping(struct api *a, const struct http_request *req, struct reply *r)
{
	(void)a;
	(void)req;
	char buf[256];
	snprintf(buf, sizeof(buf),
		 "{\"build_version\":\"v%s (vmm %s)\",\"version\":\"%s\",\"pid\":%ld,"
		 "\"features\":[\"kvm\"]}", API_CH_VERSION, VMM_VERSION, API_CH_VERSION,
		 (long)getpid());
	reply_json(r, 200, strdup(buf));
}

static void ep_vmm_shutdown(struct api *a, const struct http_request *req, struct reply *r)
{
	(void)req;
	migration_cancel();
	machine_delete(a->m);
	log_msg(LOG_INFO, "api: vmm.shutdown: exiting");
	a->exit = true;
	r->status = 204;
}

static void ep_create(struct api *a, const struct http_request *req, struct reply *r)
{
	if (machine_state(a->m) != MACHINE_NONE) {
		reply_error(r, 409, "a VM already exists (state %s): vm.delete it first",
			    machine_state_name(machine_state(a->m)));
		return;
	}
	struct machine_config cfg;
	char err[512];
	if (machine_config_copy(&cfg, a->defaults) < 0) {
		reply_error(r, 500, "out of memory");
		return;
	}
	if (api_parse_create(req->body, req->body_len, &cfg, err, sizeof(err)) < 0 ||
	    machine_configure(a->m, &cfg, false, err, sizeof(err)) < 0) {
		reply_error(r, 400, "vm.create: %s", err);
	} else {
		struct machine_config *c = &a->m->cfg;
		char b[32];
		log_msg(LOG_INFO, "api: vm.create: %s, %u vCPU%s, %s, console %s, serial %s", c->kernel,
			c->vm.nr_vcpus, c->vm.nr_vcpus > 1 ? "s" : "",
			format_size(c->vm.mem_size, b, sizeof(b)), chr_mode_name(c->console.mode),
			chr_mode_name(c->serial.mode));
		r->status = 204;
	}
	machine_config_free(&cfg);
}

static void ep_boot(struct api *a, const struct http_request *req, struct reply *r)
{
	(void)req;
	if (!need_vm(a, r))
		return;
	enum machine_state st = machine_state(a->m);
	if (st != MACHINE_CREATED && st != MACHINE_SHUTDOWN) {
		wrong_state(a, r, "already booted");
		return;
	}
	char err[512];
	if (machine_boot(a->m, err, sizeof(err)) != 0) {
		reply_error(r, 500, "vm.boot: %s", err);
		return;
	}
	const char *pty = machine_pty(a->m);
	log_msg(LOG_INFO, "api: vm.boot: running%s%s", pty ? ", console on " : "", pty ? pty : "");
	r->status = 204;
}

/* body + "migration": the progress (vm.info), body freed. */
static char *with_migration(char *body)
{
	char *mig = migration_progress_json();
	if (!mig || !body)
		return free(mig), body;
	struct json_object *o = json_tokener_parse(body), *m = json_tokener_parse(mig);
	char *out = body;
	if (o && m && json_object_object_add(o, "migration", m) == 0) {
		m = NULL;
		char *t = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		if (t) {
			free(body);
			out = t;
		}
	}
	json_object_put(m);
	json_object_put(o);
	free(mig);
	return out;
}

static void ep_info(struct api *a, const struct http_request *req, struct reply *r)
{
	(void)req;
	if (migration_owns_machine()) {
		/* The receiver builds the VM: the machine is not ours to read. */
		reply_json(r, 200, with_migration(strdup("{\"state\":\"Receiving\"}")));
		return;
	}
	if (!need_vm(a, r))
		return;
	struct machine *m = a->m;
	uint64_t actual = m->cfg.vm.mem_size;
	if (m->vm) {
		struct gmm_stats st;
		gmm_vm_stats(m->vm->mem, &st);
		actual = st.mapped_bytes;
	}
	struct api_dev_state dev = { 0 };
	struct virtio_dev *b = virtio_set_balloon(m->vm), *vm_mem = virtio_set_mem(m->vm);
	if (b) {
		struct balloon_info bi;
		virtio_balloon_info(b, &bi);
		dev.has_balloon = true;
		dev.balloon_target = bi.target_bytes;
		dev.balloon_actual = bi.actual_bytes;
		dev.balloon_inflated = bi.inflated_bytes;
	}
	if (vm_mem) {
		struct virtio_mem_info mi;
		virtio_mem_info(vm_mem, &mi);
		dev.has_mem = true;
		dev.mem_region_size = mi.region_size;
		dev.mem_plugged = mi.plugged_bytes;
		dev.mem_requested = mi.requested_bytes;
	}
	reply_json(r, 200, with_migration(api_info_json(&m->cfg, machine_pty(m),
					 machine_state_name(machine_state(m)), actual, &dev)));
}

static void ep_pause(struct api *a, const struct http_request *req, struct reply *r)
{
	(void)req;
	if (!need_vm(a, r))
		return;
	if (machine_pause(a->m) < 0) {
		wrong_state(a, r, "not running");
		return;
	}
	log_msg(LOG_INFO, "api: vm.pause: paused (every vCPU parked outside KVM_RUN)");
	r->status = 204;
}

static void ep_resume(struct api *a, const struct http_request *req, struct reply *r)
{
	(void)req;
	if (!need_vm(a, r))
		return;
	if (machine_resume(a->m) < 0) {
		wrong_state(a, r, "not paused");
		return;
	}
	log_msg(LOG_INFO, "api: vm.resume: resumed");
	r->status = 204;
}

static void ep_shutdown(struct api *a, const struct http_request *req, struct reply *r)
{
	(void)req;
	if (!need_vm(a, r))
		return;
	machine_stop(a->m, EXIT_GUEST_OFF, "shut down through the API (vm.shutdown)", NULL);
	log_msg(LOG_INFO, "api: vm.shutdown: the VMM exits");
	a->exit = true;
	r->status = 204;
}

static void ep_reboot(struct api *a, const struct http_request *req, struct reply *r)
{
	(void)req;
	if (!need_vm(a, r))
		return;
	enum machine_state st = machine_state(a->m);
	if (st != MACHINE_RUNNING && st != MACHINE_PAUSED) {
		wrong_state(a, r, "not booted");
		return;
	}
	char err[512];
	if (machine_reboot(a->m, err, sizeof(err)) != 0) {
		reply_error(r, 500, "vm.reboot: %s", err);
		return;
	}
	log_msg(LOG_INFO, "api: vm.reboot: running again");
	r->status = 204;
}

static void ep_delete(struct api *a, const struct http_request *req, struct reply *r)
{
	(void)req;
	if (machine_state(a->m) != MACHINE_NONE)
		log_msg(LOG_INFO, "api: vm.delete");
	machine_delete(a->m);
	r->status = 204;
}

static void ep_counters(struct api *a, const struct http_request *req, struct reply *r)
{
	(void)req;
	if (migration_owns_machine()) {
		reply_error(r, 409, "vm.counters: a migration is being received (vm.info shows it)");
		return;
	}
	if (!need_vm(a, r))
		return;
	struct vm *vm = a->m->vm;
	if (!vm) {
		wrong_state(a, r, "not booted");
		return;
	}
	struct gmm_stats st;
	gmm_vm_stats(vm->mem, &st);
	struct api_vcpu_counters c[CONFIG_MAX_VCPUS];
	unsigned n = vm->cfg.nr_vcpus < CONFIG_MAX_VCPUS ? vm->cfg.nr_vcpus : CONFIG_MAX_VCPUS;
	for (unsigned i = 0; i < n; i++) {
		struct vcpu *cpu = &vm->vcpus[i];
		c[i] = (struct api_vcpu_counters){
			.exits = atomic_load_explicit(&cpu->exits, memory_order_relaxed),
			.io_exits = atomic_load_explicit(&cpu->io_exits, memory_order_relaxed),
			.mmio_exits = atomic_load_explicit(&cpu->mmio_exits, memory_order_relaxed),
			.intr_exits = atomic_load_explicit(&cpu->intr_exits, memory_order_relaxed),
			.kicks = atomic_load_explicit(&cpu->kicks, memory_order_relaxed),
		};
	}
	char dev[8192];
	virtio_set_counters(vm, dev, sizeof(dev));
	/* What the guest made the VMM log, and the accesses it made to nothing. */
	uint64_t lines, suppressed;
	log_guest_counts(&lines, &suppressed);
	size_t used = strlen(dev);
	snprintf(dev + used, sizeof(dev) - used,
		 "guest_log_lines %" PRIu64 "\nguest_log_suppressed %" PRIu64
		 "\nunclaimed_pio %" PRIu64 "\nunclaimed_mmio %" PRIu64
		 "\nserial_output_dropped_bytes %" PRIu64 "\n",
		 lines, suppressed, bus_unclaimed(BUS_PIO), bus_unclaimed(BUS_MMIO),
		 serial_tx_dropped());
	struct migration_progress mp;
	migration_progress(&mp);
	if (mp.role[0]) {
		used = strlen(dev);
		snprintf(dev + used, sizeof(dev) - used,
			 "migration_iterations %u\nmigration_bytes %" PRIu64 "\nmigration_pages %" PRIu64
			 "\nmigration_zero_pages %" PRIu64 "\nmigration_dirty_bytes %" PRIu64
			 "\nmigration_throughput_bytes_per_s %" PRIu64 "\nmigration_downtime_ms %" PRIu64
			 "\n", mp.iteration, mp.bytes, mp.pages, mp.zero_pages, mp.dirty_bytes,
			 mp.throughput, mp.downtime_ms);
	}
	reply_json(r, 200, api_counters_json(&st, c, n, dev));
}

/* vm.resize: desired_ram = boot RAM + the virtio-mem plugged size wanted;
 * desired_balloon = the balloon's target.  The guest does the rest: the
 * answer (204) means the request was passed on, vm.info shows progress. */
static void ep_resize(struct api *a, const struct http_request *req, struct reply *r)
{
	if (!need_vm(a, r))
		return;
	struct machine *m = a->m;
	if (!m->vm) {
		wrong_state(a, r, "not booted");
		return;
	}
	struct api_resize rs;
	char err[512];
	if (api_parse_resize(req->body, req->body_len, &rs, err, sizeof(err)) < 0) {
		reply_error(r, 400, "vm.resize: %s", err);
		return;
	}
	if (rs.desired_vcpus != UINT64_MAX && rs.desired_vcpus != m->cfg.vm.nr_vcpus) {
		reply_error(r, 400, "vm.resize: desired_vcpus: vCPU hotplug is not supported");
		return;
	}
	struct virtio_dev *mem = virtio_set_mem(m->vm), *b = virtio_set_balloon(m->vm);
	if (rs.desired_ram != UINT64_MAX) {
		if (!mem) {
			reply_error(r, 400, "vm.resize: desired_ram: the VM has no hot-plug memory "
				    "(memory.hotplug_size)");
			return;
		}
		if (rs.desired_ram < m->cfg.vm.mem_size) {
			reply_error(r, 400, "vm.resize: desired_ram %" PRIu64 " is below the boot RAM %" PRIu64
				    " (use desired_balloon to shrink further)", rs.desired_ram, m->cfg.vm.mem_size);
			return;
		}
	}
	if (rs.desired_balloon != UINT64_MAX && !b) {
		reply_error(r, 400, "vm.resize: desired_balloon: the VM has no balloon");
		return;
	}
	if (rs.desired_ram != UINT64_MAX &&
	    virtio_mem_request(mem, rs.desired_ram - m->cfg.vm.mem_size, err, sizeof(err)) < 0) {
		reply_error(r, 400, "vm.resize: desired_ram: %s", err);
		return;
	}
	if (rs.desired_balloon != UINT64_MAX &&
	    virtio_balloon_set_target(b, rs.desired_balloon, err, sizeof(err)) < 0) {
		reply_error(r, 400, "vm.resize: desired_balloon: %s", err);
		return;
	}
	log_msg(LOG_INFO, "api: vm.resize:%s%s", rs.desired_ram != UINT64_MAX ? " ram" : "",
		rs.desired_balloon != UINT64_MAX ? " balloon" : "");
	r->status = 204;
}

/* vm.add-net: a NetConfig body and, for a tap opened by the client (libvirt
 * 10.7+), its fd passed with the request (SCM_RIGHTS): one fd, one queue
 * pair.  Without an fd the body names the tap.  Cloud Hypervisor answers
 * 200 with the device's id. */
static void ep_add_net(struct api *a, const struct http_request *req, struct reply *r)
{
	struct conn *c = a->cur;
	struct net_config nc;
	unsigned num_fds = 0;
	char err[512];
	if (!need_vm(a, r))
		return;
	if (api_parse_add_net(req->body, req->body_len, &nc, &num_fds, err, sizeof(err)) < 0) {
		reply_error(r, 400, "vm.add-net: %s", err);
		return;
	}
	unsigned got = c ? c->nfds : 0;
	if (num_fds && num_fds != got) {
		reply_error(r, 400, "vm.add-net: num_fds is %u but %u fd%s came with the request",
			    num_fds, got, got == 1 ? "" : "s");
	} else if (got > 1) {
		reply_error(r, 400, "vm.add-net: %u tap fds came with the request: vmm's virtio-net "
			    "has one queue pair (one fd; multiqueue is not supported)", got);
	} else if (got == 1 && nc.tap) {
		reply_error(r, 400, "vm.add-net: give either a tap's name (\"tap\") or its fd, not both");
	} else if (got == 0 && !nc.tap) {
		reply_error(r, 400, "vm.add-net: no tap: name one (\"tap\") or pass its fd with the "
			    "request (SCM_RIGHTS)");
	} else {
		if (got == 1) {
			nc.fd = c->fds[0];
			c->nfds = 0;
			if (nc.ip || nc.mask)
				log_msg(LOG_INFO, "vm.add-net: ip/mask ignored: the tap came as an fd, "
					"its owner configures it");
			nc.ip = nc.mask = 0;
		}
		int idx = machine_add_net(a->m, &nc, err, sizeof(err));
		if (idx < 0) {
			reply_error(r, idx == -EBUSY ? 409 : 400, "vm.add-net: %s", err);
			return;
		}
		const struct net_config *n = &a->m->cfg.nets[idx];
		char id[16], *body;
		snprintf(id, sizeof(id), "_net%d", idx);
		log_msg(LOG_INFO, "api: vm.add-net: %s on %s%s", n->id ? n->id : id,
			n->fd >= 0 ? "a tap passed as an fd" : "tap ", n->fd >= 0 ? "" : n->tap);
		if (asprintf(&body, "{\"id\":\"%s\"}", n->id ? n->id : id) < 0)
			body = NULL;
		reply_json(r, 200, body);
		return;
	}
	free(nc.id);
	free(nc.tap);
}

/* vm.snapshot {"destination_url":"file:///dir"}: the VM must be paused
 * (libvirt sends vm.pause first); it stays paused. */
static void ep_snapshot(struct api *a, const struct http_request *req, struct reply *r)
{
	if (!need_vm(a, r))
		return;
	char err[600], dir[4096], url[4096];
	if (api_parse_snapshot(req->body, req->body_len, url, sizeof(url), err, sizeof(err)) < 0) {
		reply_error(r, 400, "vm.snapshot: %s", err);
	} else if (snapshot_url_dir(url, dir, sizeof(dir), err, sizeof(err)) < 0) {
		reply_error(r, 400, "vm.snapshot: destination_url %s", err);
	} else {
		/* What the restored VM must get, "auto" resolved: a restore
		 * loads no kernel to look at. */
		struct machine_config shown = a->m->cfg;
		shown.test_devices = a->m->test_devices_on;
		char *config = api_snapshot_config_json(&shown);
		int rc = config ? snapshot_save(a->m, dir, config, err, sizeof(err)) : -ENOMEM;
		free(config);
		if (rc == -ENOMEM && !config)
			reply_error(r, 500, "vm.snapshot: out of memory");
		else if (rc == -EBUSY)
			reply_error(r, 409, "vm.snapshot: %s", err);
		else if (rc == -ENOENT || rc == -ENOTDIR || rc == -EACCES || rc == -EROFS)
			reply_error(r, 400, "vm.snapshot: %s", err);
		else if (rc < 0)
			reply_error(r, 500, "vm.snapshot: %s", err);
		else
			r->status = 204;
	}
}

/* vm.restore on a VMM without a VM (libvirt starts one with only
 * --api-socket); net_fds' tap fds come with the request. */
static void ep_restore(struct api *a, const struct http_request *req, struct reply *r)
{
	struct conn *c = a->cur;
	struct api_restore ar;
	char err[600], dir[4096];
	if (machine_state(a->m) != MACHINE_NONE) {
		reply_error(r, 409, "vm.restore: a VM already exists (state %s): vm.delete it first",
			    machine_state_name(machine_state(a->m)));
		return;
	}
	if (api_parse_restore(req->body, req->body_len, &ar, err, sizeof(err)) < 0) {
		reply_error(r, 400, "vm.restore: %s", err);
		return;
	}
	if (snapshot_url_dir(ar.url, dir, sizeof(dir), err, sizeof(err)) < 0) {
		reply_error(r, 400, "vm.restore: source_url %s", err);
		return;
	}
	unsigned got = c ? c->nfds : 0;
	if (got != ar.nnets) {
		reply_error(r, 400, "vm.restore: net_fds names %u fd%s but %u came with the request",
			    ar.nnets, ar.nnets == 1 ? "" : "s", got);
		return;
	}
	if (ar.on_demand && ar.prefault_set && ar.prefault) {
		reply_error(r, 400, "vm.restore: prefault and OnDemand exclude each other (OnDemand "
			    "brings memory in as the guest touches it)");
		return;
	}
	struct snapshot_restore_opts o = {
		.mode = ar.on_demand ? RESTORE_ON_DEMAND : RESTORE_COPY,
		.prefault = ar.prefault_set ? ar.prefault : true,
		.resume = ar.resume,
		.nnet_fds = ar.nnets,
	};
	for (unsigned i = 0; i < ar.nnets; i++) {
		snprintf(o.net_fds[i].id, sizeof(o.net_fds[i].id), "%s", ar.nets[i].id);
		o.net_fds[i].fd = c->fds[i];
	}
	char *text = NULL;
	struct machine_config cfg;
	machine_config_init(&cfg);
	int st = EXIT_USAGE;
	if (snapshot_read_config(dir, &text, err, sizeof(err)) == 0 &&
	    api_parse_snapshot_config(text, strlen(text), &cfg, err, sizeof(err)) == 0) {
		if (ar.backing >= 0)
			cfg.vm.backing = (enum gmm_backing)ar.backing;
		st = snapshot_restore(a->m, dir, &cfg, &o, err, sizeof(err));
	} else if (text) {
		char tmp[sizeof(err) + 16];
		snprintf(tmp, sizeof(tmp), "config.json: %s", err);
		snprintf(err, sizeof(err), "%.*s", (int)sizeof(err) - 1, tmp);
	}
	free(text);
	machine_config_free(&cfg);
	if (st) {
		reply_error(r, st == EXIT_USAGE ? 400 : 500, "vm.restore: %s", err);
		return;
	}
	log_msg(LOG_INFO, "api: vm.restore: %s, %s", dir,
		machine_state_name(machine_state(a->m)));
	r->status = 204;
}

/* vm.send-migration: the answer (204) means the migration started;
 * vm.info's "migration" shows its progress and its end.  On success the
 * VMM stops (exit 0); on failure the VM keeps running here. */
static void ep_send_migration(struct api *a, const struct http_request *req, struct reply *r)
{
	if (!need_vm(a, r))
		return;
	struct api_send_migration sm;
	char err[600];
	if (api_parse_send_migration(req->body, req->body_len, &sm, err, sizeof(err)) < 0) {
		reply_error(r, 400, "vm.send-migration: %s", err);
		return;
	}
	struct machine_config shown = a->m->cfg;
	shown.test_devices = a->m->test_devices_on;
	char *config = api_snapshot_config_json(&shown);
	if (!config) {
		reply_error(r, 500, "vm.send-migration: out of memory");
		return;
	}
	struct migration_send_opts o = { .url = sm.url, .local = sm.local,
					 .downtime_ms = sm.downtime_ms, .timeout_s = sm.timeout_s,
					 .config_json = config };
	int rc = migration_send_start(a->m, &o, err, sizeof(err));
	free(config);
	if (rc == -EBUSY)
		reply_error(r, 409, "vm.send-migration: %s", err);
	else if (rc < 0)
		reply_error(r, rc == -EINVAL ? 400 : 500, "vm.send-migration: %s", err);
	else
		r->status = 204;
}

/* vm.receive-migration on a VMM without a VM: 204 once it listens. */
static void ep_receive_migration(struct api *a, const struct http_request *req, struct reply *r)
{
	struct api_receive_migration rm;
	char err[600];
	if (api_parse_receive_migration(req->body, req->body_len, &rm, err, sizeof(err)) < 0) {
		reply_error(r, 400, "vm.receive-migration: %s", err);
		return;
	}
	struct migration_receive_opts o = { .url = rm.url, .timeout_s = rm.timeout_s,
					    .parse_config = api_parse_snapshot_config };
	int rc = migration_receive_start(a->m, &o, err, sizeof(err));
	if (rc == -EBUSY)
		reply_error(r, 409, "vm.receive-migration: %s", err);
	else if (rc < 0)
		reply_error(r, rc == -EINVAL ? 400 : 500, "vm.receive-migration: %s", err);
	else
		r->status = 204;
}

static const struct endpoint {
	const char *name;
	const char *method;
	void (*fn)(struct api *a, const struct http_request *req, struct reply *r);
} endpoints[] = {
	{ "vmm.ping", "GET", ep_ping },
	{ "vmm.shutdown", "PUT", ep_vmm_shutdown },
	{ "vm.create", "PUT", ep_create },
	{ "vm.boot", "PUT", ep_boot },
	{ "vm.info", "GET", ep_info },
	{ "vm.pause", "PUT", ep_pause },
	{ "vm.resume", "PUT", ep_resume },
	{ "vm.shutdown", "PUT", ep_shutdown },
	{ "vm.reboot", "PUT", ep_reboot },
	{ "vm.delete", "PUT", ep_delete },
	{ "vm.counters", "GET", ep_counters },
	{ "vm.resize", "PUT", ep_resize },
	{ "vm.add-net", "PUT", ep_add_net },
	{ "vm.snapshot", "PUT", ep_snapshot },
	{ "vm.restore", "PUT", ep_restore },
	{ "vm.send-migration", "PUT", ep_send_migration },
	{ "vm.receive-migration", "PUT", ep_receive_migration },
};

/* What a VMM answers while a migration thread runs (it owns the VM's
 * state changes). */
static bool allowed_while_migrating(const char *name)
{
	return !strcmp(name, "vmm.ping") || !strcmp(name, "vm.info") ||
	       !strcmp(name, "vm.counters") || !strcmp(name, "vmm.shutdown");
}

static void dispatch(struct api *a, const struct http_request *req, struct reply *r)
{
	const char *name = strncmp(req->path, PREFIX, strlen(PREFIX)) == 0 ?
			   req->path + strlen(PREFIX) : NULL;
	for (size_t i = 0; name && i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
		const struct endpoint *e = &endpoints[i];
		if (strcmp(name, e->name) != 0)
			continue;
		if (strcmp(req->method, e->method) != 0) {
			reply_error(r, 405, "%s takes %s, not %s", e->name, e->method, req->method);
			return;
		}
		if (migration_busy() && !allowed_while_migrating(e->name)) {
			reply_error(r, 409, "%s: a migration is under way (vm.info shows it)", e->name);
			return;
		}
		e->fn(a, req, r);
		return;
	}
	reply_error(r, 404, "unknown endpoint %s (the API is under " PREFIX ")", req->path);
}

/* ---- connections --------------------------------------------------------- */

/* Answer one request; false if the connection must close. */
static bool answer(struct api *a, struct conn *c, const struct http_request *req)
{
	struct reply r = { 0 };
	a->cur = c;
	dispatch(a, req, &r);
	a->cur = NULL;
	if (r.status >= 400)
		log_msg(r.status >= 500 ? LOG_WARN : LOG_INFO, "api: %s %s -> %d %s", req->method,
			req->path, r.status, r.body ? r.body : "");
	else
		log_msg(LOG_DEBUG, "api: %s %s -> %d", req->method, req->path, r.status);
	int ret = http_respond(c->fd, r.status, r.body ? "application/json" : NULL, r.body,
			       r.body ? strlen(r.body) : 0, req->keep_alive && !a->exit);
	free(r.body);
	if (ret < 0)
		log_msg(LOG_DEBUG, "api: answer not sent: %s", strerror(-ret));
	return ret == 0;
}

/* One read, then every event it completes.  Closes c when done with it.
 * The request deadline starts at the first byte of a request and stops
 * when no partial request is left; a pipelined request whose bytes came
 * with an answered one starts its own once that one is answered. */
static void conn_serve(struct api *a, struct conn *c)
{
	int fds[HTTP_MAX_RECV_FDS];
	size_t nfds;
	bool dropped;
	ssize_t n = http_conn_recv(c->h, c->fd, fds, HTTP_MAX_RECV_FDS - c->nfds, &nfds, &dropped);
	for (size_t i = 0; i < nfds; i++)
		c->fds[c->nfds++] = fds[i];
	if (dropped)
		log_msg(LOG_INFO, "api: a client passed more than %d file descriptors: the rest "
			"were discarded", HTTP_MAX_RECV_FDS);
	if (n == -EAGAIN)
		return;
	if (n == 0 || (n < 0 && n != -ENOBUFS)) {
		conn_close(c);
		return;
	}
	c->last_ms = now_ms();
	if (!c->req_ms)
		c->req_ms = c->last_ms;
	bool answered = false;
	for (;;) {
		const struct http_request *req;
		switch (http_conn_next(c->h, &req)) {
		case HTTP_NEED_MORE:
			if (!http_conn_partial(c->h)) {
				c->req_ms = 0;
				conn_drop_fds(c, "a request that takes none");
			}
			else if (answered)
				c->req_ms = now_ms();
			return;
		case HTTP_CONTINUE:
			if (http_send_continue(c->fd) < 0) {
				conn_close(c);
				return;
			}
			break;
		case HTTP_REQUEST:
			if (!answer(a, c, req) || a->exit) {
				conn_close(c);
				return;
			}
			answered = true;
			break;
		case HTTP_ERROR: {
			const char *msg;
			int status = http_conn_error(c->h, &msg);
			log_msg(LOG_INFO, "api: bad request: %d %s", status, msg ? msg : "");
			http_respond_error(c->fd, c->h);
			conn_close(c);
			return;
		}
		case HTTP_CLOSE:
			conn_close(c);
			return;
		}
	}
}

/* Since when c has been stalled: its request under way, or its idle
 * keep-alive. */
static int64_t stalled_since(const struct conn *c)
{
	return c->req_ms ? c->req_ms : c->last_ms;
}

/* Every slot is taken: close the connection stalled longest if that is
 * API_EVICT_MS or more, and return its slot; -1 if none is. */
static int evict(struct api *a, int64_t now)
{
	int victim = -1;
	for (unsigned i = 0; i < a->nconns; i++)
		if (a->conns[i].fd >= 0 && (victim < 0 ||
		    stalled_since(&a->conns[i]) < stalled_since(&a->conns[victim])))
			victim = (int)i;
	if (victim < 0 || now - stalled_since(&a->conns[victim]) < API_EVICT_MS)
		return -1;
	struct conn *c = &a->conns[victim];
	log_msg(LOG_DEBUG, "api: every slot taken: closing the connection stalled for %" PRId64
		" ms (%s)", now - stalled_since(c), c->req_ms ? "a partial request" : "idle");
	conn_close(c);
	return victim;
}

static void accept_all(struct api *a)
{
	for (;;) {
		int fd = accept4(a->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_msg(LOG_WARN, "api: accept: %s", strerror(errno));
			return;
		}
		int64_t now = now_ms();
		int slot = a->nconns < API_MAX_CONNS ? (int)a->nconns : evict(a, now);
		struct http_conn *h = slot >= 0 ? http_conn_new() : NULL;
		if (!h) {
			static const char busy[] = "{\"error\":\"too many connections\"}";
			log_msg(LOG_WARN, "api: connection refused: %u open already", a->nconns);
			http_respond(fd, 503, "application/json", busy, sizeof(busy) - 1, false);
			close(fd);
			continue;
		}
		a->conns[slot] = (struct conn){ .fd = fd, .h = h, .last_ms = now };
		if ((unsigned)slot == a->nconns)
			a->nconns++;
	}
}

unsigned api_pollfds(struct api *a, struct pollfd *p, unsigned max)
{
	unsigned n = 0;
	if (max == 0)
		return 0;
	p[n++] = (struct pollfd){ .fd = a->listen_fd, .events = POLLIN };
	for (unsigned i = 0; i < a->nconns && n < max; i++)
		p[n++] = (struct pollfd){ .fd = a->conns[i].fd, .events = POLLIN };
	a->npolled = n - 1;
	return n;
}

/* When c is due to close: idle, or its request late. */
static int64_t due_ms(const struct api *a, const struct conn *c)
{
	int64_t due = c->last_ms + a->idle_ms;
	if (c->req_ms && c->req_ms + a->request_ms < due)
		due = c->req_ms + a->request_ms;
	return due;
}

int api_timeout_ms(const struct api *a)
{
	if (a->nconns == 0)
		return -1;
	int64_t now = now_ms(), next = INT64_MAX;
	for (unsigned i = 0; i < a->nconns; i++)
		if (due_ms(a, &a->conns[i]) < next)
			next = due_ms(a, &a->conns[i]);
	return next <= now ? 0 : (int)(next - now);
}

/* A request that did not arrive in time: 408, if the socket takes it at
 * once (never waited for: the client may be reading nothing), then close. */
static void conn_late(struct api *a, struct conn *c)
{
	char head[256];
	int n = http_format_head(head, sizeof(head), 408, NULL, 0, false);
	log_msg(LOG_DEBUG, "api: closing a connection whose request took over %d ms", a->request_ms);
	if (n > 0 && send(c->fd, head, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_msg(LOG_DEBUG, "api: 408 not sent: %s", strerror(errno));
	conn_close(c);
}

bool api_serve(struct api *a, const struct pollfd *p, unsigned n)
{
	/* p[1 + i] is conns[i] for the connections polled; accepted ones
	 * come after them and are polled next time. */
	for (unsigned i = 0; i + 1 < n && i < a->npolled && !a->exit; i++)
		if (p[1 + i].revents && a->conns[i].fd >= 0)
			conn_serve(a, &a->conns[i]);
	if (a->exit)
		return true;
	int64_t now = now_ms();
	unsigned k = 0;
	for (unsigned i = 0; i < a->nconns; i++) {
		struct conn *c = &a->conns[i];
		if (c->fd >= 0 && now - c->last_ms >= a->idle_ms) {
			log_msg(LOG_DEBUG, "api: closing a connection idle for %d ms", a->idle_ms);
			conn_close(c);
		} else if (c->fd >= 0 && c->req_ms && now - c->req_ms >= a->request_ms) {
			conn_late(a, c);
		}
		if (c->fd >= 0)
			a->conns[k++] = *c;
	}
	a->nconns = k;
	a->npolled = 0;
	if (n > 0 && (p[0].revents & POLLIN))
		accept_all(a);
	return false;
}
