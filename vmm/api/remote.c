// SPDX-License-Identifier: GPL-2.0-only
/*
 * remote.c - `vmm remote`: the control API from the command line (what
 * Cloud Hypervisor's ch-remote is to its API).  One HTTP/1.1 request on the
 * unix socket of a running `vmm run --api-socket`, the answer's body on
 * stdout, exit 0 for a 2xx answer, 1 otherwise (the API's error on stderr),
 * 2 for bad usage.
 *
 *   vmm remote --api-socket P info | counters | ping | pause | resume |
 *                             reboot | shutdown | boot | delete
 *   vmm remote --api-socket P resize [--memory SIZE] [--balloon SIZE]
 *       --memory: total RAM wanted (boot RAM + virtio-mem plugged size);
 *       --balloon: the balloon's target size.
 *   vmm remote --api-socket P snapshot DIR
 *   vmm remote --api-socket P restore DIR [--mode copy|on-demand] [--resume]
 *       [--no-prefault]
 *       vm.snapshot of the paused VM into DIR (an existing directory);
 *       vm.restore of DIR into a VMM with no VM (paused unless --resume).
 *
 *   vmm remote --api-socket P receive-migration URL [--timeout-s N] [--wait]
 *   vmm remote --api-socket P send-migration URL [--local] [--downtime-ms N]
 *       [--timeout-s N] [--wait]
 *       --wait polls vm.info's "migration" every 100 ms until it ends.
 *
 * No threads; blocking I/O with a 30 s timeout on the socket.
 */
#include "core/log.h"
#include "api/remote.h"
#include "core/size.h"

#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmm remote --api-socket PATH COMMAND\n"
		"\n"
		"commands: info, counters, ping, boot, pause, resume, reboot, shutdown, delete,\n"
		"          resize [--memory SIZE] [--balloon SIZE],\n"
		"          snapshot DIR, restore DIR [--mode copy|on-demand] [--resume] [--no-prefault]\n"
		"          send-migration URL [--local] [--downtime-ms N] [--timeout-s N] [--wait],\n"
		"          receive-migration URL [--timeout-s N] [--wait]\n"
		"  resize --memory SIZE   total guest RAM wanted: boot RAM + virtio-mem plugged\n"
		"  resize --balloon SIZE  the balloon's target (what the guest gives back)\n"
		"  snapshot DIR           write the paused VM into DIR (config.json, state.json,\n"
		"                         memory-ranges); the VM stays paused\n"
		"  restore DIR            bring DIR back in a VMM with no VM: Copy (default) reads\n"
		"                         all memory first, on-demand serves it as the guest\n"
		"                         touches it; paused unless --resume\n"
		"  receive-migration URL  wait (a VMM with no VM) for a VM on unix:/path or\n"
		"                         tcp:0.0.0.0:PORT\n"
		"  send-migration URL     move the running VM there (--local: pass the memory's\n"
		"                         fds, unix: only); the VMM exits 0 once the destination\n"
		"                         runs it; --wait: until the migration ends\n");
}

static int connect_to(const char *path, bool quiet)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_msg(LOG_ERROR, "--api-socket %s: path too long", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = { .tv_sec = 30 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (!quiet)
			log_msg(LOG_ERROR, "cannot connect to %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Send one request and read the whole answer (Connection: close): the
 * HTTP status, and the body in *out (malloc'd, "" if none).  -1 if the VMM
 * cannot be reached or does not answer (logged unless quiet). */
static int fetch(const char *sock, const char *method, const char *endpoint, const char *body,
		 bool quiet, char **out)
{
	int fd = connect_to(sock, quiet);
	if (fd < 0)
		return -1;
	char head[512];
	size_t blen = body ? strlen(body) : 0;
	int n = snprintf(head, sizeof(head),
			 "%s /api/v1/%s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			 method, endpoint, blen);
	if (write(fd, head, (size_t)n) != n || (blen && write(fd, body, blen) != (ssize_t)blen)) {
		if (!quiet)
			log_msg(LOG_ERROR, "%s: cannot send the request: %s", sock, strerror(errno));
		close(fd);
		return -1;
	}
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap + 1);
	if (!buf) {
		close(fd);
		return -1;
	}
	for (;;) {
		if (len == cap) {
			char *nb = realloc(buf, cap * 2 + 1);
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		ssize_t k = read(fd, buf + len, cap - len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	close(fd);
	buf[len] = 0;
	int status = 0;
	char *b = strstr(buf, "\r\n\r\n");
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
		if (!quiet)
			log_msg(LOG_ERROR, "%s: no HTTP answer", sock);
		free(buf);
		return -1;
	}
	b = b ? b + 4 : buf + len;
	memmove(buf, b, strlen(b) + 1);
	*out = buf;
	return status;
}

/* One request: the body on stdout and 0 for a 2xx answer; 1 otherwise
 * (the API's error on stderr). */
static int request(const char *sock, const char *method, const char *endpoint, const char *body)
{
	char *b = NULL;
	int status = fetch(sock, method, endpoint, body, false, &b);
	if (status < 0)
		return 1;
	int ret = 0;
	if (status >= 200 && status < 300) {
		if (*b)
			printf("%s%s", b, b[strlen(b) - 1] == '\n' ? "" : "\n");
	} else {
		log_msg(LOG_ERROR, "%s: HTTP %d: %s", endpoint, status, *b ? b : "(no body)");
		ret = 1;
	}
	free(b);
	return ret;
}

/* GET vm.info quietly: 0 with the body's "migration" state in state[]
 * (its object printed), -1 if the VMM does not answer (gone). */
static int migration_state(const char *sock, char *state, size_t len, char *error, size_t elen)
{
	char *body = NULL;
	if (fetch(sock, "GET", "vm.info", NULL, true, &body) < 0)
		return -1;
	struct json_object *o = json_tokener_parse(body), *mo, *v;
	free(body);
	snprintf(state, len, "none");
	if (o && json_object_object_get_ex(o, "migration", &mo)) {
		if (json_object_object_get_ex(mo, "state", &v))
			snprintf(state, len, "%s", json_object_get_string(v));
		if (json_object_object_get_ex(mo, "error", &v))
			snprintf(error, elen, "%s", json_object_get_string(v));
		printf("%s\n", json_object_to_json_string_ext(mo, JSON_C_TO_STRING_PLAIN));
	}
	json_object_put(o);
	return 0;
}

/* send-migration URL [--local] [--downtime-ms N] [--timeout-s N] [--wait]
 * receive-migration URL [--timeout-s N] [--wait]. */
static int migration_command(const char *sock, const char *cmd, int argc, char **argv)
{
	bool send = !strcmp(cmd, "send-migration"), local = false, wait = false;
	long downtime = 0, timeout = 0;
	const char *url = NULL;
	for (int i = 0; i < argc; i++) {
		char *end;
		if (send && !strcmp(argv[i], "--local")) {
			local = true;
		} else if (!strcmp(argv[i], "--wait")) {
			wait = true;
		} else if ((send && !strcmp(argv[i], "--downtime-ms")) || !strcmp(argv[i], "--timeout-s")) {
			if (i + 1 >= argc)
				return die_usage("remote %s: %s needs a number", cmd, argv[i]);
			long v = strtol(argv[i + 1], &end, 10);
			if (*end || v < 1 || v > 3600000)
				return die_usage("remote %s: %s: '%s' is not a positive number", cmd, argv[i],
						 argv[i + 1]);
			*(!strcmp(argv[i], "--timeout-s") ? &timeout : &downtime) = v;
			i++;
		} else if (!url && argv[i][0] != '-') {
			url = argv[i];
		} else {
			return die_usage("remote %s: unexpected argument '%s'", cmd, argv[i]);
		}
	}
	if (!url)
		return die_usage("remote %s: which URL? (unix:/path or tcp:host:port)", cmd);
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, send ? "destination_url" : "receiver_url",
			       json_object_new_string(url));
	if (send && local)
		json_object_object_add(o, "local", json_object_new_boolean(true));
	if (downtime)
		json_object_object_add(o, "downtime_ms", json_object_new_int64(downtime));
	if (timeout)
		json_object_object_add(o, "timeout_s", json_object_new_int64(timeout));
	char *body = strdup(json_object_to_json_string(o));
	json_object_put(o);
	if (!body)
		return 1;
	int r = request(sock, "PUT", send ? "vm.send-migration" : "vm.receive-migration", body);
	free(body);
	if (r || !wait)
		return r;
	/* Until it ends: bounded by the timeout the VMM applies, plus a minute. */
	long limit_ms = ((timeout ? timeout : send ? 3600 : 600) + 60) * 1000L;
	char state[32], error[600] = "";
	for (long t = 0; t < limit_ms; t += 100) {
		if (migration_state(sock, state, sizeof(state), error, sizeof(error)) < 0) {
			if (send) {
				/* A failed migration leaves the source running: gone = handed over. */
				printf("{\"state\":\"completed\",\"note\":\"the source VMM exited after handing over\"}\n");
				return 0;
			}
			log_msg(LOG_ERROR, "remote %s: the VMM went away", cmd);
			return 1;
		}
		if (!strcmp(state, "completed"))
			return 0;
		if (strcmp(state, "running")) {
			log_msg(LOG_ERROR, "remote %s: %s: %s", cmd, state, error[0] ? error : "?");
			return 1;
		}
		usleep(100000);
	}
	log_msg(LOG_ERROR, "remote %s: still running after %ld s", cmd, limit_ms / 1000);
	return 1;
}

/* snapshot DIR | restore DIR [--mode M] [--resume] [--no-prefault]. */
static int snapshot_command(const char *sock, const char *cmd, int argc, char **argv)
{
	bool restore = !strcmp(cmd, "restore"), resume = false, prefault = true;
	const char *dir = NULL, *mode = "Copy";
	for (int i = 0; i < argc; i++) {
		if (restore && !strcmp(argv[i], "--resume"))
			resume = true;
		else if (restore && !strcmp(argv[i], "--no-prefault"))
			prefault = false;
		else if (restore && !strcmp(argv[i], "--mode") && i + 1 < argc) {
			const char *m = argv[++i];
			if (!strcmp(m, "copy") || !strcmp(m, "Copy"))
				mode = "Copy";
			else if (!strcmp(m, "on-demand") || !strcmp(m, "OnDemand"))
				mode = "OnDemand";
			else
				return die_usage("remote restore --mode: '%s' is not copy or on-demand", m);
		} else if (argv[i][0] != '-' && !dir)
			dir = argv[i];
		else
			return die_usage("remote %s: unexpected argument '%s'", cmd, argv[i]);
	}
	if (!dir)
		return die_usage("remote %s: which directory? (vmm remote --help)", cmd);
	char abs[4096];
	if (dir[0] != '/') {
		if (!getcwd(abs, sizeof(abs) - strlen(dir) - 2))
			return die_usage("remote %s: cannot make %s absolute", cmd, dir);
		strcat(abs, "/");
		strcat(abs, dir);
		dir = abs;
	}
	char url[4200];
	snprintf(url, sizeof(url), "file://%s", dir);
	struct json_object *o = json_object_new_object();
	if (!o)
		return 1;
	json_object_object_add(o, restore ? "source_url" : "destination_url",
			       json_object_new_string(url));
	if (restore) {
		json_object_object_add(o, "memory_restore_mode", json_object_new_string(mode));
		json_object_object_add(o, "resume", json_object_new_boolean(resume));
		json_object_object_add(o, "prefault", json_object_new_boolean(prefault &&
									  !strcmp(mode, "Copy")));
	}
	char *body = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	if (!body)
		return 1;
	int r = request(sock, "PUT", restore ? "vm.restore" : "vm.snapshot", body);
	free(body);
	return r;
}

int remote_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "api-socket", required_argument, NULL, 'a' },
		{ "memory", required_argument, NULL, 'm' },
		{ "balloon", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sock = NULL;
	uint64_t mem = UINT64_MAX, balloon = UINT64_MAX;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'a': sock = optarg; break;
		case 'm':
		case 'b': {
			uint64_t v;
			if (parse_size(optarg, &v) < 0)
				return die_usage("--%s: '%s' is not a size", c == 'm' ? "memory" : "balloon",
						 optarg);
			*(c == 'm' ? &mem : &balloon) = v;
			break;
		}
		case 'h': usage(stdout); return 0;
		default:
			usage(stderr);
			return die_usage("remote: bad option '%s'", argv[optind - 1]);
		}
	}
	if (!sock)
		return die_usage("remote: --api-socket PATH is required (vmm remote --help)");
	if (optind >= argc)
		return die_usage("remote: which command? (vmm remote --help)");
	const char *cmd = argv[optind++];
	if (!strcmp(cmd, "snapshot") || !strcmp(cmd, "restore"))
		return snapshot_command(sock, cmd, argc - optind, argv + optind);
	if (!strcmp(cmd, "send-migration") || !strcmp(cmd, "receive-migration"))
		return migration_command(sock, cmd, argc - optind, argv + optind);
	/* Options may also follow the command: resize --balloon 64M. */
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		uint64_t v;
		if ((c != 'm' && c != 'b') || parse_size(optarg, &v) < 0)
			return die_usage("remote %s: bad option or size '%s'", cmd, argv[optind - 1]);
		*(c == 'm' ? &mem : &balloon) = v;
	}
	if (optind < argc)
		return die_usage("remote: unexpected argument '%s'", argv[optind]);
	static const struct { const char *cmd, *method, *endpoint; } simple[] = {
		{ "info", "GET", "vm.info" }, { "counters", "GET", "vm.counters" },
		{ "ping", "GET", "vmm.ping" }, { "boot", "PUT", "vm.boot" },
		{ "pause", "PUT", "vm.pause" }, { "resume", "PUT", "vm.resume" },
		{ "reboot", "PUT", "vm.reboot" }, { "shutdown", "PUT", "vm.shutdown" },
		{ "delete", "PUT", "vm.delete" },
	};
	for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
		if (!strcmp(cmd, simple[i].cmd)) {
			if (mem != UINT64_MAX || balloon != UINT64_MAX)
				return die_usage("remote %s: --memory/--balloon belong to resize", cmd);
			return request(sock, simple[i].method, simple[i].endpoint, NULL);
		}
	}
	if (!strcmp(cmd, "resize")) {
		if (mem == UINT64_MAX && balloon == UINT64_MAX)
			return die_usage("remote resize: give --memory SIZE and/or --balloon SIZE");
		char body[128] = "{";
		if (mem != UINT64_MAX)
			snprintf(body + strlen(body), sizeof(body) - strlen(body), "\"desired_ram\":%" PRIu64, mem);
		if (balloon != UINT64_MAX)
			snprintf(body + strlen(body), sizeof(body) - strlen(body), "%s\"desired_balloon\":%" PRIu64,
				 mem != UINT64_MAX ? "," : "", balloon);
		strcat(body, "}");
		return request(sock, "PUT", "vm.resize", body);
	}
	usage(stderr);
	return die_usage("remote: unknown command '%s'", cmd);
}
