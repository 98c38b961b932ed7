// SPDX-License-Identifier: GPL-2.0-only
/*
 * api_config.c - the control API's JSON bodies (api_config.h).
 *
 * Parsing is strict about what it uses and lenient about what it does not:
 * the body must be one JSON object (json-c in strict mode, UTF-8
 * validated, nothing but blanks after it); every value we read must have
 * its type and range, and an error names the field ("cpus.boot_vcpus: ...").
 * Keys we do not know are logged and ignored, as Cloud Hypervisor ignores
 * them; devices we cannot provide (fs, pmem, vsock, ...) are refused, since a
 * guest silently booted without its disk is worse than an error.
 */
#include "api/api_config.h"
#include "core/log.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <strings.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* ---- reading values ------------------------------------------------------ */

struct parse {
	char *err;
	size_t errlen;
};

/* The member key of o, or NULL when absent or JSON null. */
static struct json_object *member(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;
	if (!json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

static const char *type_name(struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null: return "null";
	case json_type_boolean: return "a boolean";
	case json_type_double: return "a fraction";
	case json_type_int: return "an integer";
	case json_type_object: return "an object";
	case json_type_array: return "an array";
	case json_type_string: return "a string";
	}
	return "?";
}

static int want_type(struct parse *p, struct json_object *v, enum json_type t, const char *name,
		     const char *what)
{
	if (json_object_is_type(v, t))
		return 0;
	return config_fail(p->err, p->errlen, "%s: expected %s, got %s", name, what, type_name(v));
}

/* Log the keys of o that are not in known (NULL-terminated). */
static void ignore_unknown(struct json_object *o, const char *prefix, const char *const *known)
{
	json_object_object_foreach(o, key, val) {
		(void)val;
		bool found = false;
		for (const char *const *k = known; *k && !found; k++)
			found = strcmp(*k, key) == 0;
		if (!found)
			log_msg(LOG_WARN, "vm.create: %s%s is not supported: ignored", prefix, key);
	}
}

static int get_uint(struct parse *p, struct json_object *v, const char *name, uint64_t *out)
{
	if (want_type(p, v, json_type_int, name, "an integer") < 0)
		return -1;
	if (json_object_get_int64(v) < 0)
		return config_fail(p->err, p->errlen, "%s: %" PRId64 " is negative", name,
			    json_object_get_int64(v));
	*out = json_object_get_uint64(v);
	return 0;
}

/* A non-empty string without NUL bytes, duplicated into *out (replacing
 * what was there). */
static int get_string(struct parse *p, struct json_object *v, const char *name, char **out)
{
	if (want_type(p, v, json_type_string, name, "a string") < 0)
		return -1;
	const char *s = json_object_get_string(v);
	size_t n = (size_t)json_object_get_string_len(v);
	if (n == 0)
		return config_fail(p->err, p->errlen, "%s: is empty", name);
	if (strlen(s) != n)
		return config_fail(p->err, p->errlen, "%s: holds a NUL character", name);
	char *d = strdup(s);
	if (!d)
		return config_fail(p->err, p->errlen, "%s: out of memory", name);
	free(*out);
	*out = d;
	return 0;
}

/* An optional string member of o ("" name prefix for messages). */
static int opt_string(struct parse *p, struct json_object *o, const char *key, const char *name,
		      char **out)
{
	struct json_object *v = member(o, key);
	return v && !json_object_is_type(v, json_type_null) ? get_string(p, v, name, out) : 0;
}

static bool is_null(struct json_object *v)
{
	return !v || json_object_is_type(v, json_type_null);
}

/* ---- the sections of vm.create ------------------------------------------- */

static int parse_cpus(struct parse *p, struct json_object *o, struct machine_config *cfg)
{
	static const char *const known[] = { "boot_vcpus", "max_vcpus", NULL };
	if (want_type(p, o, json_type_object, "cpus", "an object") < 0)
		return -1;
	ignore_unknown(o, "cpus.", known);
	uint64_t boot = cfg->vm.nr_vcpus, max = 0;
	struct json_object *v;
	if (!is_null(v = member(o, "boot_vcpus"))) {
		if (get_uint(p, v, "cpus.boot_vcpus", &boot) < 0)
			return -1;
		if (boot < 1 || boot > CONFIG_MAX_VCPUS)
			return config_fail(p->err, p->errlen, "cpus.boot_vcpus: %" PRIu64
				    " is not a number from 1 to %d", boot, CONFIG_MAX_VCPUS);
	}
	if (!is_null(v = member(o, "max_vcpus"))) {
		if (get_uint(p, v, "cpus.max_vcpus", &max) < 0)
			return -1;
		if (max < boot)
			return config_fail(p->err, p->errlen, "cpus.max_vcpus: %" PRIu64
				    " is less than boot_vcpus (%" PRIu64 ")", max, boot);
		if (max > CONFIG_MAX_VCPUS)
			return config_fail(p->err, p->errlen, "cpus.max_vcpus: %" PRIu64 " is more than %d",
				    max, CONFIG_MAX_VCPUS);
	}
	cfg->vm.nr_vcpus = (unsigned)boot;
	cfg->max_vcpus = (unsigned)(max ? max : boot);
	if (cfg->max_vcpus > cfg->vm.nr_vcpus)
		log_msg(LOG_WARN, "vm.create: cpus.max_vcpus %u: vCPU hotplug is not supported, "
			"the guest has %u", cfg->max_vcpus, cfg->vm.nr_vcpus);
	return 0;
}

static int get_bool(struct parse *p, struct json_object *o, const char *key, const char *name,
		    bool *out)
{
	struct json_object *v = member(o, key);
	if (is_null(v))
		return 0;
	if (want_type(p, v, json_type_boolean, name, "true or false") < 0)
		return -1;
	*out = json_object_get_boolean(v);
	return 0;
}

static int parse_memory(struct parse *p, struct json_object *o, struct machine_config *cfg)
{
	static const char *const known[] = { "size", "hotplug_size", "hotplugged_size",
					     "hotplug_method", NULL };
	if (want_type(p, o, json_type_object, "memory", "an object") < 0)
		return -1;
	ignore_unknown(o, "memory.", known);
	struct json_object *v = member(o, "size");
	if (!is_null(v)) {
		uint64_t size;
		if (get_uint(p, v, "memory.size", &size) < 0 ||
		    config_check_memory(size, cfg->vm.backing, false, p->err, p->errlen) < 0)
			return -1;
		cfg->vm.mem_size = size;
	}
	if (!is_null(v = member(o, "hotplug_method"))) {
		if (want_type(p, v, json_type_string, "memory.hotplug_method", "a string") < 0)
			return -1;
		if (strcmp(json_object_get_string(v), "VirtioMem"))
			return config_fail(p->err, p->errlen, "memory.hotplug_method: \"%s\": only "
					   "\"VirtioMem\" is supported", json_object_get_string(v));
	}
	if (!is_null(v = member(o, "hotplug_size")) &&
	    get_uint(p, v, "memory.hotplug_size", &cfg->hotplug_size) < 0)
		return -1;
	if (!is_null(v = member(o, "hotplugged_size")) &&
	    get_uint(p, v, "memory.hotplugged_size", &cfg->hotplugged_size) < 0)
		return -1;
	return 0;
}

/* "disks": [{"path": F, "readonly": b, "serial": S}, ...]: the whole
 * list, in place of any disks cfg held (never appended to them). */
static int parse_disks(struct parse *p, struct json_object *o, struct machine_config *cfg)
{
	static const char *const known[] = { "path", "readonly", "serial", "id", NULL };
	if (want_type(p, o, json_type_array, "disks", "an array") < 0)
		return -1;
	size_t n = json_object_array_length(o);
	if (n > CONFIG_MAX_DISKS)
		return config_fail(p->err, p->errlen, "disks: %zu disks, at most %d", n, CONFIG_MAX_DISKS);
	for (unsigned i = 0; i < cfg->ndisks; i++) {
		free(cfg->disks[i].path);
		free(cfg->disks[i].serial);
	}
	memset(cfg->disks, 0, sizeof(cfg->disks));
	cfg->ndisks = 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *d = json_object_array_get_idx(o, i);
		char name[32];
		snprintf(name, sizeof(name), "disks[%zu]", i);
		if (want_type(p, d, json_type_object, name, "an object") < 0)
			return -1;
		ignore_unknown(d, "disks[].", known);
		struct disk_config dc = { .engine = CONFIG_DISK_ENGINE_DEFAULT };
		char pname[48], sname[48];
		snprintf(pname, sizeof(pname), "%s.path", name);
		snprintf(sname, sizeof(sname), "%s.serial", name);
		int ret = get_bool(p, d, "readonly", "disks[].readonly", &dc.readonly);
		if (!ret && is_null(member(d, "path")))
			ret = config_fail(p->err, p->errlen, "%s: no path", name);
		if (!ret)
			ret = opt_string(p, d, "path", pname, &dc.path);
		if (!ret)
			ret = opt_string(p, d, "serial", sname, &dc.serial);
		if (!ret && dc.serial && strlen(dc.serial) > 20)
			ret = config_fail(p->err, p->errlen, "%s: longer than 20 bytes", sname);
		if (ret) {
			free(dc.path);
			free(dc.serial);
			return -1;
		}
		cfg->disks[cfg->ndisks++] = dc;
	}
	return 0;
}

/* "balloon": {"size": N, "deflate_on_oom": b, "free_page_reporting": b} */
static int parse_balloon(struct parse *p, struct json_object *o, struct machine_config *cfg)
{
	static const char *const known[] = { "size", "deflate_on_oom", "free_page_reporting", NULL };
	if (want_type(p, o, json_type_object, "balloon", "an object") < 0)
		return -1;
	ignore_unknown(o, "balloon.", known);
	struct balloon_cfg b = { .enabled = true };
	struct json_object *v = member(o, "size");
	if (!is_null(v) && get_uint(p, v, "balloon.size", &b.size) < 0)
		return -1;
	if (get_bool(p, o, "deflate_on_oom", "balloon.deflate_on_oom", &b.deflate_on_oom) < 0 ||
	    get_bool(p, o, "free_page_reporting", "balloon.free_page_reporting",
		     &b.free_page_reporting) < 0)
		return -1;
	cfg->balloon = b;
	return 0;
}

/* "console" or "serial": {"mode": M, "file": F}. */
static int parse_chr(struct parse *p, struct json_object *o, const char *field, struct chr_config *ch)
{
	static const char *const known[] = { "mode", "file", "iommu", "socket", NULL };
	char name[32], prefix[32];
	snprintf(prefix, sizeof(prefix), "%s.", field);
	if (want_type(p, o, json_type_object, field, "an object") < 0)
		return -1;
	ignore_unknown(o, prefix, known);
	struct json_object *v = member(o, "mode");
	snprintf(name, sizeof(name), "%s.mode", field);
	if (is_null(v))
		return config_fail(p->err, p->errlen, "%s: missing (Off, Null, Pty, Tty or File)", name);
	if (want_type(p, v, json_type_string, name, "a string") < 0)
		return -1;
	enum chr_mode mode;
	if (chr_mode_parse(json_object_get_string(v), &mode) < 0)
		return config_fail(p->err, p->errlen, "%s: '%s' is not supported (Off, Null, Pty, Tty or File)",
			    name, json_object_get_string(v));
	ch->mode = mode;
	free(ch->file);
	ch->file = NULL;
	snprintf(name, sizeof(name), "%s.file", field);
	if (mode == CHR_FILE) {
		if (is_null(member(o, "file")))
			return config_fail(p->err, p->errlen, "%s: mode File needs a \"file\"", field);
		return opt_string(p, o, "file", name, &ch->file);
	}
	return 0;
}

/* libvirt 9.0: "kernel":{"path"}, "cmdline":{"args"}, "initramfs":{"path"}. */
static int parse_old_payload(struct parse *p, struct json_object *root, struct machine_config *cfg)
{
	static const struct { const char *key, *sub; size_t off; } parts[] = {
		{ "kernel", "path", offsetof(struct machine_config, kernel) },
		{ "cmdline", "args", offsetof(struct machine_config, cmdline) },
		{ "initramfs", "path", offsetof(struct machine_config, initrd) },
	};
	for (unsigned i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		struct json_object *o = member(root, parts[i].key);
		if (is_null(o))
			continue;
		if (want_type(p, o, json_type_object, parts[i].key, "an object") < 0)
			return -1;
		const char *const known[] = { parts[i].sub, NULL };
		char prefix[32], name[32];
		snprintf(prefix, sizeof(prefix), "%s.", parts[i].key);
		snprintf(name, sizeof(name), "%s.%s", parts[i].key, parts[i].sub);
		ignore_unknown(o, prefix, known);
		if (is_null(member(o, parts[i].sub)))
			return config_fail(p->err, p->errlen, "%s: missing", name);
		if (opt_string(p, o, parts[i].sub, name, (char **)((char *)cfg + parts[i].off)) < 0)
			return -1;
	}
	return 0;
}

/* Newer: "payload":{"kernel","cmdline","initramfs"}. */
static int parse_payload(struct parse *p, struct json_object *o, struct machine_config *cfg)
{
	static const char *const known[] = { "kernel", "cmdline", "initramfs", NULL };
	static const char *const refused[] = { "firmware", "igvm", "host_data" };
	if (want_type(p, o, json_type_object, "payload", "an object") < 0)
		return -1;
	for (unsigned i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (!is_null(member(o, refused[i])))
			return config_fail(p->err, p->errlen, "payload.%s: not supported: vmm boots a kernel "
				    "directly (payload.kernel)", refused[i]);
	ignore_unknown(o, "payload.", known);
	if (opt_string(p, o, "kernel", "payload.kernel", &cfg->kernel) < 0 ||
	    opt_string(p, o, "cmdline", "payload.cmdline", &cfg->cmdline) < 0 ||
	    opt_string(p, o, "initramfs", "payload.initramfs", &cfg->initrd) < 0)
		return -1;
	return 0;
}

/* Device lists vmm cannot provide yet: refused when not empty. */
static int refuse_devices(struct parse *p, struct json_object *root)
{
	static const struct { const char *key, *what; } devs[] = {
		{ "fs", "shared file systems (virtio-fs)" },
		{ "pmem", "persistent memory devices" },
		{ "devices", "passed-through devices (VFIO)" },
		{ "user_devices", "vfio-user devices" },
		{ "vdpa", "vDPA devices" },
		{ "vsock", "vsock devices" },
	};
	for (unsigned i = 0; i < sizeof(devs) / sizeof(devs[0]); i++) {
		struct json_object *v = member(root, devs[i].key);
		if (is_null(v) || (json_object_is_type(v, json_type_array) &&
				   json_object_array_length(v) == 0))
			continue;
		log_msg(LOG_WARN, "vm.create refused: it asks for %s, which vmm does not support yet",
			devs[i].what);
		return config_fail(p->err, p->errlen, "%s: %s are not supported yet: remove them from the "
			    "configuration", devs[i].key, devs[i].what);
	}
	return 0;
}

/* One JSON object, and nothing after it but blanks. */
static struct json_object *parse_object(const char *json, size_t len, char *err, size_t errlen)
{
	if (len == 0) {
		config_fail(err, errlen, "the body is empty: expected a JSON object");
		return NULL;
	}
	if (memchr(json, 0, len) || len > INT32_MAX - 1) {
		config_fail(err, errlen, "the body is not JSON: it holds a NUL byte");
		return NULL;
	}
	struct json_tokener *tok = json_tokener_new();
	if (!tok) {
		config_fail(err, errlen, "out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
				    JSON_TOKENER_VALIDATE_UTF8);
	struct json_object *o = json_tokener_parse_ex(tok, json, (int)len);
	enum json_tokener_error e = json_tokener_get_error(tok);
	size_t end = json_tokener_get_parse_end(tok);
	if (e == json_tokener_continue) {
		/* A value with no end of its own (a number) or a truncated
		 * one: the end of the input decides. */
		o = json_tokener_parse_ex(tok, "", 1);
		e = json_tokener_get_error(tok);
		end = len;
	}
	if (e != json_tokener_success) {
		config_fail(err, errlen, "the body is not JSON: %s near byte %zu", json_tokener_error_desc(e),
		     end);
		json_tokener_free(tok);
		json_object_put(o);
		return NULL;
	}
	json_tokener_free(tok);
	for (size_t i = end; i < len; i++) {
		if (!strchr(" \t\r\n", json[i])) {
			config_fail(err, errlen,
				    "the body is not JSON: unexpected bytes after the value at byte %zu", i);
			json_object_put(o);
			return NULL;
		}
	}
	if (!json_object_is_type(o, json_type_object)) {
		config_fail(err, errlen, "the body is %s: expected a JSON object", type_name(o));
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* An IPv4 address string ("ip", "mask") into network order. */
static int get_ipv4(struct parse *p, struct json_object *o, const char *key, const char *name,
		    uint32_t *out)
{
	struct json_object *v = member(o, key);
	if (is_null(v))
		return 0;
	if (want_type(p, v, json_type_string, name, "a string") < 0)
		return -1;
	struct in_addr a;
	if (inet_pton(AF_INET, json_object_get_string(v), &a) != 1)
		return config_fail(p->err, p->errlen, "%s: '%s' is not an IPv4 address", name,
				   json_object_get_string(v));
	*out = a.s_addr;
	return 0;
}

/* An optional unsigned member in [lo, hi]; *out untouched when absent. */
static int get_range(struct parse *p, struct json_object *o, const char *key, const char *name,
		     uint64_t lo, uint64_t hi, unsigned *out)
{
	struct json_object *v = member(o, key);
	uint64_t n;
	if (is_null(v))
		return 0;
	if (get_uint(p, v, name, &n) < 0)
		return -1;
	if (n < lo || n > hi)
		return config_fail(p->err, p->errlen, "%s: %" PRIu64 " is not in %" PRIu64 "-%" PRIu64,
				   name, n, lo, hi);
	*out = (unsigned)n;
	return 0;
}

int api_parse_net_entry(struct json_object *o, const char *name, bool add_net,
			struct net_config *out, unsigned *num_fds, char *err, size_t errlen)
{
	/* Cloud Hypervisor's NetConfig; what we do not act on is logged. */
	static const char *const known[] = {
		"id", "tap", "mac", "ip", "mask", "num_queues", "queue_size", "mtu", "fds",
		"num_fds", "host_mac", "iommu", "offload_tso", "offload_ufo", "offload_csum",
		"vhost_user", "vhost_socket", "vhost_mode", "rate_limiter_config", "pci_segment",
		NULL,
	};
	struct parse pp = { err, errlen }, *p = &pp;
	char field[64];
	memset(out, 0, sizeof(*out));
	out->fd = -1;
	*num_fds = 0;
#define FIELD(k) (snprintf(field, sizeof(field), "%s.%s", name, k), field)
	if (want_type(p, o, json_type_object, name, "an object") < 0)
		return -1;
	ignore_unknown(o, "net[].", known);
	bool vhost = false;
	if (get_bool(p, o, "vhost_user", FIELD("vhost_user"), &vhost) < 0)
		return -1;
	if (vhost || !is_null(member(o, "vhost_socket")))
		return config_fail(err, errlen, "%s: vhost-user network devices are not supported: "
				   "vmm's virtio-net works on a tap", name);
	if (!is_null(member(o, "fds"))) {
		if (!add_net)
			return config_fail(err, errlen, "%s: tap fds can only come with vm.add-net, "
					   "passed with the request (SCM_RIGHTS)", FIELD("fds"));
		/* Cloud Hypervisor fills "fds" itself from what came with the
		 * request; a client's numbers mean nothing here. */
		log_msg(LOG_INFO, "vm.add-net: %s ignored: the fds passed with the request are used",
			FIELD("fds"));
	}
	unsigned nq = 2, nfds = 0;
	if (get_range(p, o, "num_queues", FIELD("num_queues"), 1, 1024, &nq) < 0 ||
	    get_range(p, o, "num_fds", FIELD("num_fds"), 0, 1024, &nfds) < 0)
		return -1;
	if (nq != 2)
		return config_fail(err, errlen, "%s: %u: vmm's virtio-net has one queue pair "
				   "(num_queues 2, one tap fd); multiqueue is not supported",
				   FIELD("num_queues"), nq);
	*num_fds = nfds;
	if (get_range(p, o, "queue_size", FIELD("queue_size"), 1, 32768, &out->queue_size) < 0 ||
	    get_range(p, o, "mtu", FIELD("mtu"), 68, 65535, &out->mtu) < 0)
		return -1;
	if (out->queue_size & (out->queue_size - 1))
		return config_fail(err, errlen, "%s: %u is not a power of 2", FIELD("queue_size"),
				   out->queue_size);
	char *mac = NULL;
	int ret = opt_string(p, o, "mac", FIELD("mac"), &mac);
	if (!ret && mac) {
		if (config_parse_mac(mac, out->mac) < 0)
			ret = config_fail(err, errlen, "%s: '%s' is not a MAC address (52:54:00:12:34:56)",
					  FIELD("mac"), mac);
		else if (out->mac[0] & 1)
			ret = config_fail(err, errlen, "%s: %s is a multicast address", FIELD("mac"), mac);
		out->mac_set = true;
	}
	free(mac);
	if (!ret)
		ret = opt_string(p, o, "id", FIELD("id"), &out->id);
	if (!ret && out->id && (strlen(out->id) > 32 ||
				strspn(out->id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					 "0123456789_.-") != strlen(out->id)))
		ret = config_fail(err, errlen, "%s: at most 32 of A-Z a-z 0-9 _ . -", FIELD("id"));
	if (!ret)
		ret = opt_string(p, o, "tap", FIELD("tap"), &out->tap);
	if (!ret && out->tap && strlen(out->tap) >= 16)
		ret = config_fail(err, errlen, "%s: '%s' is longer than an interface name (15 bytes)",
				  FIELD("tap"), out->tap);
	if (!ret)
		ret = get_ipv4(p, o, "ip", FIELD("ip"), &out->ip);
	if (!ret)
		ret = get_ipv4(p, o, "mask", FIELD("mask"), &out->mask);
	if (!ret && !add_net && !out->tap)
		ret = config_fail(err, errlen, "%s: no tap: name the tap interface (\"tap\"), or pass its "
				  "fd with vm.add-net", name);
#undef FIELD
	if (ret) {
		free(out->id);
		free(out->tap);
		out->id = out->tap = NULL;
	}
	return ret;
}

/* "net": [{"tap": NAME, "mac", "ip", "mask", "num_queues", "queue_size",
 * "mtu", "id"}, ...] (libvirt 9.0's shape): the whole list. */
static int parse_nets(struct parse *p, struct json_object *o, struct machine_config *cfg)
{
	if (want_type(p, o, json_type_array, "net", "an array") < 0)
		return -1;
	size_t n = json_object_array_length(o);
	if (n > CONFIG_MAX_NETS)
		return config_fail(p->err, p->errlen, "net: %zu devices, at most %d", n, CONFIG_MAX_NETS);
	for (size_t i = 0; i < n; i++) {
		char name[32];
		unsigned nfds;
		snprintf(name, sizeof(name), "net[%zu]", i);
		struct net_config nc;
		if (api_parse_net_entry(json_object_array_get_idx(o, i), name, false, &nc, &nfds,
					p->err, p->errlen) < 0)
			return -1;
		cfg->nets[cfg->nnets++] = nc;
	}
	return 0;
}

int api_parse_add_net(const char *json, size_t len, struct net_config *out, unsigned *num_fds,
		      char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	out->fd = -1;
	struct json_object *root = parse_object(json, len, err, errlen);
	if (!root)
		return -1;
	int ret = api_parse_net_entry(root, "body", true, out, num_fds, err, errlen);
	json_object_put(root);
	return ret;
}

int api_parse_create(const char *json, size_t len, struct machine_config *cfg, char *err,
		     size_t errlen)
{
	static const char *const known[] = {
		"cpus", "memory", "kernel", "cmdline", "initramfs", "payload", "console", "serial",
		"disks", "net", "fs", "pmem", "devices", "user_devices", "vdpa", "vsock", "balloon",
		NULL,
	};
	struct parse p = { err, errlen };
	/* The body is the whole guest: nothing of cfg's guest is kept. */
	machine_config_reset_guest(cfg);
	struct json_object *root = parse_object(json, len, err, errlen);
	if (!root)
		return -1;
	int ret = -1;
	struct json_object *v;
	if (refuse_devices(&p, root) < 0)
		goto out;
	ignore_unknown(root, "", known);
	if (!is_null(member(root, "payload")) &&
	    (!is_null(member(root, "kernel")) || !is_null(member(root, "cmdline")) ||
	     !is_null(member(root, "initramfs")))) {
		config_fail(err, errlen, "payload: give the kernel either in \"payload\" or as "
		     "\"kernel\"/\"cmdline\"/\"initramfs\", not both");
		goto out;
	}
	if (!is_null(v = member(root, "cpus")) && parse_cpus(&p, v, cfg) < 0)
		goto out;
	if (!is_null(v = member(root, "memory")) && parse_memory(&p, v, cfg) < 0)
		goto out;
	if (!is_null(v = member(root, "payload")) ? parse_payload(&p, v, cfg) < 0 :
						    parse_old_payload(&p, root, cfg) < 0)
		goto out;
	if (!is_null(v = member(root, "console")) && parse_chr(&p, v, "console", &cfg->console) < 0)
		goto out;
	if (!is_null(v = member(root, "serial")) && parse_chr(&p, v, "serial", &cfg->serial) < 0)
		goto out;
	if (!is_null(v = member(root, "disks")) && parse_disks(&p, v, cfg) < 0)
		goto out;
	if (!is_null(v = member(root, "balloon")) && parse_balloon(&p, v, cfg) < 0)
		goto out;
	if (!is_null(v = member(root, "net")) && parse_nets(&p, v, cfg) < 0)
		goto out;
	if (!cfg->kernel) {
		config_fail(err, errlen, "no kernel: give payload.kernel (or kernel.path)");
		goto out;
	}
	ret = 0;
out:
	json_object_put(root);
	return ret;
}

/* ---- writing bodies ------------------------------------------------------ */

/* Add v under key; remember an allocation failure in *ok. */
static void put(struct json_object *o, const char *key, struct json_object *v, bool *ok)
{
	if (!o || !v || json_object_object_add(o, key, v) < 0) {
		json_object_put(v);
		*ok = false;
	}
}

/* A string, or JSON null for NULL (no allocation to fail). */
static struct json_object *str_or_null(const char *s, bool *ok)
{
	if (!s)
		return NULL;
	struct json_object *v = json_object_new_string(s);
	if (!v)
		*ok = false;
	return v;
}

/* put() for values that may legitimately be null. */
static void put_nullable(struct json_object *o, const char *key, struct json_object *v, bool *ok)
{
	if (!o || json_object_object_add(o, key, v) < 0) {
		json_object_put(v);
		*ok = false;
	}
}

/* The string of o, duplicated, and o released. */
static char *finish(struct json_object *o, bool ok)
{
	char *s = ok && o ? strdup(json_object_to_json_string_ext(o, JSON_FLAGS)) : NULL;
	json_object_put(o);
	return s;
}

static struct json_object *chr_json(const struct chr_config *ch, const char *pty, bool *ok)
{
	struct json_object *o = json_object_new_object();
	put(o, "mode", json_object_new_string(chr_mode_name(ch->mode)), ok);
	const char *file = ch->mode == CHR_PTY ? pty : ch->mode == CHR_FILE ? ch->file : NULL;
	put_nullable(o, "file", str_or_null(file, ok), ok);
	return o;
}

/* The guest's configuration as vm.info's "config" (and a snapshot's
 * config.json "vm") shows it: vm.create's shape. */
static struct json_object *config_object(const struct machine_config *cfg, const char *pty,
					 bool *okp)
{
	bool ok = true;
	struct json_object *config = json_object_new_object();
	struct json_object *cpus = json_object_new_object();
	put(cpus, "boot_vcpus", json_object_new_int64(cfg->vm.nr_vcpus), &ok);
	put(cpus, "max_vcpus", json_object_new_int64(cfg->max_vcpus), &ok);
	put(config, "cpus", cpus, &ok);
	struct json_object *mem = json_object_new_object();
	put(mem, "size", json_object_new_uint64(cfg->vm.mem_size), &ok);
	if (cfg->hotplug_size) {
		put(mem, "hotplug_method", json_object_new_string("VirtioMem"), &ok);
		put(mem, "hotplug_size", json_object_new_uint64(cfg->hotplug_size), &ok);
		put(mem, "hotplugged_size", json_object_new_uint64(cfg->hotplugged_size), &ok);
	}
	put(config, "memory", mem, &ok);
	if (cfg->ndisks) {
		struct json_object *disks = json_object_new_array();
		for (unsigned i = 0; i < cfg->ndisks; i++) {
			struct json_object *d = json_object_new_object();
			put(d, "path", json_object_new_string(cfg->disks[i].path), &ok);
			put(d, "readonly", json_object_new_boolean(cfg->disks[i].readonly), &ok);
			put_nullable(d, "serial", str_or_null(cfg->disks[i].serial, &ok), &ok);
			if (!disks || json_object_array_add(disks, d) < 0) {
				json_object_put(d);
				ok = false;
			}
		}
		put(config, "disks", disks, &ok);
	}
	if (cfg->nnets) {
		struct json_object *nets = json_object_new_array();
		for (unsigned i = 0; i < cfg->nnets; i++) {
			const struct net_config *nc = &cfg->nets[i];
			struct json_object *d = json_object_new_object();
			char id[16], mac[18];
			snprintf(id, sizeof(id), "_net%u", i);
			put(d, "id", json_object_new_string(nc->id ? nc->id : id), &ok);
			put_nullable(d, "tap", str_or_null(nc->tap, &ok), &ok);
			if (nc->mac_set) {
				snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", nc->mac[0],
					 nc->mac[1], nc->mac[2], nc->mac[3], nc->mac[4], nc->mac[5]);
				put(d, "mac", json_object_new_string(mac), &ok);
			}
			put(d, "num_queues", json_object_new_int64(2), &ok);
			put(d, "queue_size", json_object_new_int64(nc->queue_size ? nc->queue_size : 256), &ok);
			put(d, "mtu", json_object_new_int64(nc->mtu ? nc->mtu : 1500), &ok);
			if (!nets || json_object_array_add(nets, d) < 0) {
				json_object_put(d);
				ok = false;
			}
		}
		put(config, "net", nets, &ok);
	}
	if (cfg->balloon.enabled) {
		struct json_object *b = json_object_new_object();
		put(b, "size", json_object_new_uint64(cfg->balloon.size), &ok);
		put(b, "deflate_on_oom", json_object_new_boolean(cfg->balloon.deflate_on_oom), &ok);
		put(b, "free_page_reporting", json_object_new_boolean(cfg->balloon.free_page_reporting), &ok);
		put(config, "balloon", b, &ok);
	}
	struct json_object *payload = json_object_new_object();
	put_nullable(payload, "kernel", str_or_null(cfg->kernel, &ok), &ok);
	put_nullable(payload, "cmdline", str_or_null(cfg->cmdline, &ok), &ok);
	put_nullable(payload, "initramfs", str_or_null(cfg->initrd, &ok), &ok);
	put(config, "payload", payload, &ok);
	put(config, "console", chr_json(&cfg->console, pty, &ok), &ok);
	put(config, "serial", chr_json(&cfg->serial, pty, &ok), &ok);
	if (!ok || !config) {
		json_object_put(config);
		*okp = false;
		return NULL;
	}
	return config;
}

char *api_info_json(const struct machine_config *cfg, const char *pty, const char *state,
		    uint64_t actual, const struct api_dev_state *dev)
{
	bool ok = true;
	struct json_object *root = json_object_new_object();
	put(root, "config", config_object(cfg, pty, &ok), &ok);
	if (dev && dev->has_balloon) {
		struct json_object *b = json_object_new_object();
		put(b, "target_size", json_object_new_uint64(dev->balloon_target), &ok);
		put(b, "actual_size", json_object_new_uint64(dev->balloon_actual), &ok);
		put(b, "inflated_size", json_object_new_uint64(dev->balloon_inflated), &ok);
		put(root, "balloon", b, &ok);
	}
	if (dev && dev->has_mem) {
		struct json_object *b = json_object_new_object();
		put(b, "region_size", json_object_new_uint64(dev->mem_region_size), &ok);
		put(b, "plugged_size", json_object_new_uint64(dev->mem_plugged), &ok);
		put(b, "requested_size", json_object_new_uint64(dev->mem_requested), &ok);
		put(root, "virtio_mem", b, &ok);
	}
	put(root, "state", json_object_new_string(state), &ok);
	put(root, "memory_actual_size", json_object_new_uint64(actual), &ok);
	return finish(root, ok);
}

unsigned api_stats_fields(const struct gmm_stats *st)
{
	char buf[4096];
	int n = gmm_stats_format(st, buf, sizeof(buf));
	unsigned lines = 0;
	for (int i = 0; i < n && (size_t)i < sizeof(buf); i++)
		lines += buf[i] == '\n';
	return lines;
}

int api_parse_resize(const char *json, size_t len, struct api_resize *out, char *err,
		     size_t errlen)
{
	static const char *const known[] = { "desired_ram", "desired_balloon", "desired_vcpus", NULL };
	struct parse p = { err, errlen };
	*out = (struct api_resize){ UINT64_MAX, UINT64_MAX, UINT64_MAX };
	struct json_object *root = parse_object(json, len, err, errlen);
	if (!root)
		return -1;
	ignore_unknown(root, "vm.resize: ", known);
	struct json_object *v;
	int ret = 0;
	if (!is_null(v = member(root, "desired_ram")))
		ret = get_uint(&p, v, "desired_ram", &out->desired_ram);
	if (!ret && !is_null(v = member(root, "desired_balloon")))
		ret = get_uint(&p, v, "desired_balloon", &out->desired_balloon);
	if (!ret && !is_null(v = member(root, "desired_vcpus")))
		ret = get_uint(&p, v, "desired_vcpus", &out->desired_vcpus);
	if (!ret && out->desired_ram == UINT64_MAX && out->desired_balloon == UINT64_MAX &&
	    out->desired_vcpus == UINT64_MAX)
		ret = config_fail(err, errlen, "nothing to resize: give desired_ram or desired_balloon");
	json_object_put(root);
	return ret;
}

char *api_counters_json(const struct gmm_stats *st, const struct api_vcpu_counters *cpus,
			unsigned ncpus, const char *device_lines)
{
	bool ok = true;
	struct json_object *root = json_object_new_object();
	struct json_object *g = json_object_new_object();
	char buf[4096];
	int n = gmm_stats_format(st, buf, sizeof(buf));
	if (n < 0 || (size_t)n >= sizeof(buf))
		ok = false;
	for (char *line = buf, *nl; ok && (nl = strchr(line, '\n')); line = nl + 1) {
		*nl = 0;
		char name[64];
		uint64_t v;
		if (sscanf(line, "%63s %" SCNu64, name, &v) == 2)
			put(g, name, json_object_new_uint64(v), &ok);
	}
	put(root, "guestmm", g, &ok);
	if (device_lines && *device_lines) {
		struct json_object *dv = json_object_new_object();
		char *copy = strdup(device_lines);
		if (!copy)
			ok = false;
		for (char *line = copy, *nl; ok && line && (nl = strchr(line, '\n')); line = nl + 1) {
			*nl = 0;
			char name[64];
			uint64_t v;
			if (sscanf(line, "%63s %" SCNu64, name, &v) == 2)
				put(dv, name, json_object_new_uint64(v), &ok);
		}
		free(copy);
		put(root, "devices", dv, &ok);
	}
	for (unsigned i = 0; i < ncpus; i++) {
		struct json_object *c = json_object_new_object();
		put(c, "exits", json_object_new_uint64(cpus[i].exits), &ok);
		put(c, "io_exits", json_object_new_uint64(cpus[i].io_exits), &ok);
		put(c, "mmio_exits", json_object_new_uint64(cpus[i].mmio_exits), &ok);
		put(c, "intr_exits", json_object_new_uint64(cpus[i].intr_exits), &ok);
		put(c, "kicks", json_object_new_uint64(cpus[i].kicks), &ok);
		char key[16];
		snprintf(key, sizeof(key), "vcpu%u", i);
		put(root, key, c, &ok);
	}
	return finish(root, ok);
}

char *api_error_json(const char *msg)
{
	bool ok = true;
	struct json_object *root = json_object_new_object();
	put(root, "error", json_object_new_string(msg), &ok);
	return finish(root, ok);
}

/* ---- a snapshot's config.json (issue 16) ------------------------------ */

#define SNAPSHOT_CONFIG_FORMAT "vmm-config"
#define SNAPSHOT_CONFIG_VERSION 1

static const char *tristate_name(int v)
{
	return v < 0 ? "auto" : v ? "on" : "off";
}

static int tristate_parse(const char *s, int *out)
{
	if (!strcmp(s, "auto"))
		*out = -1;
	else if (!strcmp(s, "on"))
		*out = 1;
	else if (!strcmp(s, "off"))
		*out = 0;
	else
		return -1;
	return 0;
}

char *api_snapshot_config_json(const struct machine_config *cfg)
{
	bool ok = true;
	struct json_object *root = json_object_new_object();
	put(root, "format", json_object_new_string(SNAPSHOT_CONFIG_FORMAT), &ok);
	put(root, "version", json_object_new_int64(SNAPSHOT_CONFIG_VERSION), &ok);
	put(root, "vm", config_object(cfg, NULL, &ok), &ok);
	struct json_object *host = json_object_new_object();
	put(host, "backing", json_object_new_string(gmm_backing_name(cfg->vm.backing)), &ok);
	put(host, "strategy", json_object_new_string(gmm_strategy_name(cfg->vm.strategy)), &ok);
	put(host, "prefault", json_object_new_boolean(cfg->vm.prefault), &ok);
	put(host, "cpuid_filter", json_object_new_string(tristate_name(cfg->vm.cpuid_filter)), &ok);
	put(host, "test_devices", json_object_new_string(tristate_name(cfg->test_devices)), &ok);
	struct json_object *eng = json_object_new_array();
	for (unsigned i = 0; eng && i < cfg->ndisks; i++)
		if (json_object_array_add(eng, json_object_new_int64(cfg->disks[i].engine)) < 0)
			ok = false;
	put(host, "disk_engines", eng, &ok);
	put(root, "host", host, &ok);
	return finish(root, ok);
}

/* A string member of "host" that must be one of a parser's words. */
static int host_word(struct parse *p, struct json_object *host, const char *key, const char **out)
{
	struct json_object *v = member(host, key);
	char name[48];
	snprintf(name, sizeof(name), "host.%s", key);
	if (is_null(v))
		return config_fail(p->err, p->errlen, "%s: missing", name);
	if (want_type(p, v, json_type_string, name, "a string") < 0)
		return -1;
	*out = json_object_get_string(v);
	return 0;
}

int api_parse_snapshot_config(const char *json, size_t len, struct machine_config *cfg, char *err,
			      size_t errlen)
{
	struct parse p = { err, errlen };
	struct json_object *root = parse_object(json, len, err, errlen);
	if (!root)
		return -1;
	int ret = -1;
	char *body = NULL;
	struct json_object *v, *host, *vm, *nets = NULL;
	const char *s;
	v = member(root, "format");
	if (is_null(v) || !json_object_is_type(v, json_type_string) ||
	    strcmp(json_object_get_string(v), SNAPSHOT_CONFIG_FORMAT)) {
		config_fail(err, errlen, "not a vmm snapshot configuration (\"format\" is not \"%s\")",
			    SNAPSHOT_CONFIG_FORMAT);
		goto out;
	}
	v = member(root, "version");
	if (is_null(v) || !json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) != SNAPSHOT_CONFIG_VERSION) {
		config_fail(err, errlen, "configuration format version %s, this vmm reads version %d",
			    is_null(v) ? "missing" : json_object_get_string(v), SNAPSHOT_CONFIG_VERSION);
		goto out;
	}
	host = member(root, "host");
	vm = member(root, "vm");
	if (is_null(host) || want_type(&p, host, json_type_object, "host", "an object") < 0 ||
	    is_null(vm) || want_type(&p, vm, json_type_object, "vm", "an object") < 0) {
		if (is_null(host) || is_null(vm))
			config_fail(err, errlen, "\"%s\": missing", is_null(host) ? "host" : "vm");
		goto out;
	}
	if (host_word(&p, host, "backing", &s) < 0)
		goto out;
	if (gmm_backing_parse(s, &cfg->vm.backing) < 0 || cfg->vm.backing == GMM_BACKING_FILE) {
		config_fail(err, errlen, "host.backing: '%s' is not a backing vmm restores", s);
		goto out;
	}
	if (host_word(&p, host, "strategy", &s) < 0)
		goto out;
	if (gmm_strategy_parse(s, &cfg->vm.strategy) < 0 || !gmm_strategy_available(cfg->vm.strategy)) {
		config_fail(err, errlen, "host.strategy: '%s' is not a strategy this host has", s);
		goto out;
	}
	if (get_bool(&p, host, "prefault", "host.prefault", &cfg->vm.prefault) < 0)
		goto out;
	if (host_word(&p, host, "cpuid_filter", &s) < 0)
		goto out;
	if (tristate_parse(s, &cfg->vm.cpuid_filter) < 0) {
		config_fail(err, errlen, "host.cpuid_filter: '%s' is not auto, on or off", s);
		goto out;
	}
	if (host_word(&p, host, "test_devices", &s) < 0)
		goto out;
	if (tristate_parse(s, &cfg->test_devices) < 0) {
		config_fail(err, errlen, "host.test_devices: '%s' is not auto, on or off", s);
		goto out;
	}
	/* The guest: vm.create's parser, without "net" (entries that came
	 * as fds have no tap name; vm.restore's net_fds gives them). */
	if (json_object_object_get_ex(vm, "net", &nets)) {
		json_object_get(nets);
		json_object_object_del(vm, "net");
	}
	body = strdup(json_object_to_json_string_ext(vm, JSON_C_TO_STRING_PLAIN));
	if (!body) {
		config_fail(err, errlen, "out of memory");
		goto out;
	}
	if (api_parse_create(body, strlen(body), cfg, err, errlen) < 0)
		goto out;
	if (!is_null(nets)) {
		if (want_type(&p, nets, json_type_array, "vm.net", "an array") < 0)
			goto out;
		size_t n = json_object_array_length(nets);
		if (n > CONFIG_MAX_NETS) {
			config_fail(err, errlen, "vm.net: %zu devices, at most %d", n, CONFIG_MAX_NETS);
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			char name[32];
			unsigned nfds;
			struct net_config nc;
			snprintf(name, sizeof(name), "vm.net[%zu]", i);
			if (api_parse_net_entry(json_object_array_get_idx(nets, i), name, true, &nc, &nfds,
						err, errlen) < 0)
				goto out;
			cfg->nets[cfg->nnets++] = nc;
		}
	}
	struct json_object *eng = member(host, "disk_engines");
	if (is_null(eng) || want_type(&p, eng, json_type_array, "host.disk_engines", "an array") < 0 ||
	    json_object_array_length(eng) != cfg->ndisks) {
		config_fail(err, errlen, "host.disk_engines: not one engine per disk (%u disks)",
			    cfg->ndisks);
		goto out;
	}
	for (unsigned i = 0; i < cfg->ndisks; i++) {
		uint64_t e;
		if (get_uint(&p, json_object_array_get_idx(eng, i), "host.disk_engines[]", &e) < 0)
			goto out;
		if (e > 1) {
			config_fail(err, errlen, "host.disk_engines[%u]: %llu is not 0 (io_uring) or 1 "
				    "(threads)", i, (unsigned long long)e);
			goto out;
		}
		cfg->disks[i].engine = (int)e;
	}
	ret = 0;
out:
	free(body);
	json_object_put(nets);
	json_object_put(root);
	return ret;
}

int api_parse_restore(const char *json, size_t len, struct api_restore *out, char *err,
		      size_t errlen)
{
	static const char *const known[] = { "source_url", "prefault", "memory_restore_mode",
					     "resume", "net_fds", "backing", NULL };
	struct parse p = { err, errlen };
	memset(out, 0, sizeof(*out));
	out->backing = -1;
	struct json_object *root = parse_object(json, len, err, errlen), *v;
	if (!root)
		return -1;
	int ret = -1;
	ignore_unknown(root, "vm.restore: ", known);
	v = member(root, "source_url");
	if (is_null(v)) {
		config_fail(err, errlen, "source_url: missing (file:///dir)");
		goto out;
	}
	if (want_type(&p, v, json_type_string, "source_url", "a string") < 0)
		goto out;
	if ((size_t)json_object_get_string_len(v) >= sizeof(out->url)) {
		config_fail(err, errlen, "source_url: too long");
		goto out;
	}
	snprintf(out->url, sizeof(out->url), "%s", json_object_get_string(v));
	out->prefault_set = !is_null(member(root, "prefault"));
	if (get_bool(&p, root, "prefault", "prefault", &out->prefault) < 0 ||
	    get_bool(&p, root, "resume", "resume", &out->resume) < 0)
		goto out;
	v = member(root, "memory_restore_mode");
	out->mode = NULL;
	if (!is_null(v)) {
		if (want_type(&p, v, json_type_string, "memory_restore_mode", "a string") < 0)
			goto out;
		out->mode = json_object_get_string(v);
		if (strcasecmp(out->mode, "copy") && strcasecmp(out->mode, "ondemand")) {
			config_fail(err, errlen, "memory_restore_mode: '%s' is not Copy or OnDemand",
				    out->mode);
			goto out;
		}
		out->on_demand = !strcasecmp(out->mode, "ondemand");
	}
	v = member(root, "backing");
	if (!is_null(v)) {
		enum gmm_backing b;
		if (want_type(&p, v, json_type_string, "backing", "a string") < 0)
			goto out;
		if (gmm_backing_parse(json_object_get_string(v), &b) < 0 || b == GMM_BACKING_FILE) {
			config_fail(err, errlen, "backing: '%s' is not thp, hugetlb-2M, hugetlb-1G, memfd "
				    "or anon", json_object_get_string(v));
			goto out;
		}
		out->backing = (int)b;
	}
	v = member(root, "net_fds");
	if (!is_null(v)) {
		if (want_type(&p, v, json_type_array, "net_fds", "an array") < 0)
			goto out;
		size_t n = json_object_array_length(v);
		if (n > CONFIG_MAX_NETS) {
			config_fail(err, errlen, "net_fds: %zu entries, at most %d", n, CONFIG_MAX_NETS);
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			struct json_object *e = json_object_array_get_idx(v, i), *id;
			uint64_t nf = 1;
			if (want_type(&p, e, json_type_object, "net_fds[]", "an object") < 0)
				goto out;
			id = member(e, "id");
			if (is_null(id) || !json_object_is_type(id, json_type_string) ||
			    (size_t)json_object_get_string_len(id) >= sizeof(out->nets[i].id)) {
				config_fail(err, errlen, "net_fds[%zu].id: missing or not a short string", i);
				goto out;
			}
			if (!is_null(member(e, "num_fds")) &&
			    get_uint(&p, member(e, "num_fds"), "net_fds[].num_fds", &nf) < 0)
				goto out;
			/* libvirt sends the domain's queue count, 0 when the XML
			 * names none: one queue pair either way. */
			if (nf == 0)
				nf = 1;
			if (nf != 1) {
				config_fail(err, errlen, "net_fds[%zu].num_fds: %llu; vmm's virtio-net has one "
					    "queue pair (one fd)", i, (unsigned long long)nf);
				goto out;
			}
			snprintf(out->nets[i].id, sizeof(out->nets[i].id), "%s", json_object_get_string(id));
			out->nnets++;
		}
	}
	out->mode = NULL;   /* the string belonged to root */
	ret = 0;
out:
	json_object_put(root);
	return ret;
}

int api_parse_snapshot(const char *json, size_t len, char *url, size_t urllen, char *err,
		       size_t errlen)
{
	static const char *const known[] = { "destination_url", NULL };
	struct parse p = { err, errlen };
	struct json_object *root = parse_object(json, len, err, errlen), *v;
	if (!root)
		return -1;
	int ret = -1;
	ignore_unknown(root, "vm.snapshot: ", known);
	v = member(root, "destination_url");
	if (is_null(v))
		config_fail(err, errlen, "destination_url: missing (file:///dir)");
	else if (want_type(&p, v, json_type_string, "destination_url", "a string") == 0) {
		if ((size_t)json_object_get_string_len(v) >= urllen)
			config_fail(err, errlen, "destination_url: too long");
		else {
			snprintf(url, urllen, "%s", json_object_get_string(v));
			ret = 0;
		}
	}
	json_object_put(root);
	return ret;
}

/* ---- live migration (issue 17) ------------------------------------------- */

/* A string member that must be there and fit. */
static int url_member(struct parse *p, struct json_object *root, const char *key, const char *hint,
		      char *url, size_t urllen)
{
	struct json_object *v = member(root, key);
	if (is_null(v))
		return config_fail(p->err, p->errlen, "%s: missing (%s)", key, hint);
	if (want_type(p, v, json_type_string, key, "a string") < 0)
		return -1;
	if ((size_t)json_object_get_string_len(v) >= urllen)
		return config_fail(p->err, p->errlen, "%s: too long", key);
	snprintf(url, urllen, "%s", json_object_get_string(v));
	return 0;
}

/* An optional integer member in [lo, hi]. */
static int bounded_uint(struct parse *p, struct json_object *root, const char *key, uint64_t lo,
			uint64_t hi, unsigned *out)
{
	struct json_object *v = member(root, key);
	uint64_t x;
	if (is_null(v))
		return 0;
	if (get_uint(p, v, key, &x) < 0)
		return -1;
	if (x < lo || x > hi)
		return config_fail(p->err, p->errlen, "%s: %" PRIu64 " is not in %" PRIu64 "..%" PRIu64,
				   key, x, lo, hi);
	*out = (unsigned)x;
	return 0;
}

int api_parse_send_migration(const char *json, size_t len, struct api_send_migration *out,
			     char *err, size_t errlen)
{
	static const char *const known[] = { "destination_url", "local", "downtime_ms",
					     "timeout_s", "downtime", "migration_timeout", NULL };
	struct parse p = { err, errlen };
	struct json_object *root = parse_object(json, len, err, errlen);
	if (!root)
		return -1;
	*out = (struct api_send_migration){ .downtime_ms = 300, .timeout_s = 3600 };
	ignore_unknown(root, "vm.send-migration: ", known);
	int ret = -1;
	if (url_member(&p, root, "destination_url", "unix:/path or tcp:host:port", out->url,
		       sizeof(out->url)) == 0 &&
	    get_bool(&p, root, "local", "local", &out->local) == 0 &&
	    /* Cloud Hypervisor's names, then ours. */
	    bounded_uint(&p, root, "downtime", 1, 3600000, &out->downtime_ms) == 0 &&
	    bounded_uint(&p, root, "migration_timeout", 1, 86400, &out->timeout_s) == 0 &&
	    bounded_uint(&p, root, "downtime_ms", 1, 3600000, &out->downtime_ms) == 0 &&
	    bounded_uint(&p, root, "timeout_s", 1, 86400, &out->timeout_s) == 0)
		ret = 0;
	json_object_put(root);
	return ret;
}

int api_parse_receive_migration(const char *json, size_t len, struct api_receive_migration *out,
				char *err, size_t errlen)
{
	static const char *const known[] = { "receiver_url", "timeout_s", NULL };
	struct parse p = { err, errlen };
	struct json_object *root = parse_object(json, len, err, errlen);
	if (!root)
		return -1;
	*out = (struct api_receive_migration){ .timeout_s = 600 };
	ignore_unknown(root, "vm.receive-migration: ", known);
	int ret = -1;
	if (url_member(&p, root, "receiver_url", "unix:/path or tcp:0.0.0.0:port", out->url,
		       sizeof(out->url)) == 0 &&
	    bounded_uint(&p, root, "timeout_s", 1, 86400, &out->timeout_s) == 0)
		ret = 0;
	json_object_put(root);
	return ret;
}
