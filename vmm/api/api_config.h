/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * api_config.h - the control API's JSON, without sockets or KVM: the
 * vm.create body into a machine_config, and the vm.info, vm.counters and
 * error bodies out of plain data.  Pure functions (json-c), unit-tested
 * under ASan; no global state, any thread.
 */
#ifndef VMM_API_CONFIG_H
#define VMM_API_CONFIG_H

#include "machine/config.h"

#include <guestmm/guestmm.h>
#include <stddef.h>
#include <stdint.h>

/* Cloud Hypervisor's version this API answers as (vmm.ping, and
 * `cloud-hypervisor --version`): libvirt 9.0 needs at least 15.0.0;
 * libvirt 11.3 gates on it (README: >= 22 multi-fd vm.add-net, >= 28 the
 * payload shape, both served; not >= 36, Socket serial, nor >= 40,
 * save/restore with NICs, which vmm does not implement). */
#define API_CH_VERSION "30.0.0"

/* Parse a vm.create body (len bytes; need not be NUL-terminated) into cfg.
 * The body is the whole guest, as in Cloud Hypervisor: cfg is first reset
 * by machine_config_reset_guest() (config.h), so what the body omits takes
 * the defaults (1 vCPU, 256 MiB, no disk, balloon or hot-plug memory,
 * console Tty, serial Null), never what cfg held -- `vmm run`'s --disk,
 * --memory or --serial do not leak into it; only cfg's host choices
 * (backing, strategy, prefault, CPUID filter) are kept.  Both shapes:
 * libvirt 9.0's  {"kernel":{"path":P},"cmdline":{"args":S},
 * "initramfs":{"path":P}, ...}  and the newer  {"payload":{"kernel":P,
 * "cmdline":S,"initramfs":P}, ...};  "cpus" {"boot_vcpus","max_vcpus"},
 * "memory" {"size","hotplug_method","hotplug_size","hotplugged_size"} in
 * bytes, "console"/"serial" {"mode","file"}, "disks" (at most 3),
 * "balloon", "net" (libvirt 9.0's: each entry names its "tap"; see
 * api_parse_net_entry).  Non-empty "fs", "pmem", "devices", "vdpa", "vsock"
 * are refused (no such devices yet); other keys are ignored with a warning
 * logged.  Values are range-checked (vCPUs 1-64, max_vcpus >= boot_vcpus,
 * memory limits and page size); files are not looked at (config_check).
 * 0, or -1 with one sentence in err; cfg may then hold new strings:
 * machine_config_free() it either way. */
int api_parse_create(const char *json, size_t len, struct machine_config *cfg, char *err,
		     size_t errlen);

/* One Cloud Hypervisor NetConfig object (a vm.create "net" entry, or the
 * vm.add-net body) into out (its fd -1): "id", "tap" (an interface name;
 * required in vm.create, where fds cannot come), "mac", "ip"/"mask" (the
 * tap's host side), "num_queues" (2 only: one queue pair), "queue_size",
 * "mtu"; "num_fds" (kata's count of passed fds) into *num_fds (0 when
 * absent).  vhost-user is refused, "fds" in vm.create refused and in
 * vm.add-net ignored (the passed fds count), other Cloud Hypervisor keys
 * logged and ignored.  name prefixes the fields in err.  On error out
 * holds nothing to free. */
struct json_object;
int api_parse_net_entry(struct json_object *o, const char *name, bool add_net,
			struct net_config *out, unsigned *num_fds, char *err, size_t errlen);
/* The vm.add-net body (one JSON object) through api_parse_net_entry. */
int api_parse_add_net(const char *json, size_t len, struct net_config *out, unsigned *num_fds,
		      char *err, size_t errlen);
/* vm.info's body: {"config":{"cpus":..,"memory":..,"payload":..,
 * "console":{"mode","file"},"serial":{"mode","file"}},"state":state,
 * "memory_actual_size":actual}.  pty is the UART's pty path (or NULL): it
 * is the "file" of whichever of console/serial is Pty; a File mode reports
 * its file.  A new string to free(), NULL if out of memory. */
/* Live state of the balloon and virtio-mem for vm.info (has_*: present). */
struct api_dev_state {
	bool has_balloon, has_mem;
	uint64_t balloon_target, balloon_actual, balloon_inflated;
	uint64_t mem_region_size, mem_plugged, mem_requested;
};
char *api_info_json(const struct machine_config *cfg, const char *pty, const char *state,
		    uint64_t actual, const struct api_dev_state *dev);

/* vm.resize: {"desired_ram": N, "desired_balloon": N, "desired_vcpus": N}
 * (Cloud Hypervisor's).  Fields absent are -1 (UINT64_MAX). */
struct api_resize {
	uint64_t desired_ram, desired_balloon, desired_vcpus;
};
int api_parse_resize(const char *json, size_t len, struct api_resize *out, char *err,
		     size_t errlen);

/* One vCPU's exit counters (struct vcpu's, read once). */
struct api_vcpu_counters {
	uint64_t exits, io_exits, mmio_exits, intr_exits, kicks;
};

/* vm.counters' body, Cloud Hypervisor's shape (an object of counter
 * groups, each an object of unsigned integers): "guestmm" holds every
 * field of struct gmm_stats, "vcpuN" each vCPU's exits.  A new string to
 * free(), NULL if out of memory. */
char *api_counters_json(const struct gmm_stats *st, const struct api_vcpu_counters *cpus,
			unsigned ncpus, const char *device_lines);

/* The number of "name value" lines gmm_stats_format() writes: every field
 * of struct gmm_stats (the unit test holds it to sizeof). */
unsigned api_stats_fields(const struct gmm_stats *st);

/* A snapshot's config.json (issue 16): {"format":"vmm-config","version":1,
 * "vm":{vm.info's "config": vm.create's shape},"host":{"backing",
 * "strategy","prefault","cpuid_filter","test_devices","disk_engines"}}.
 * The writer returns a new string (NULL if out of memory).  The parser
 * fills cfg (host choices, then the guest through api_parse_create; "vm.net"
 * entries may lack a tap: vm.restore's net_fds give their fds): 0, or -1
 * with one sentence in err (another format or version is named as such);
 * machine_config_free() cfg either way. */
char *api_snapshot_config_json(const struct machine_config *cfg);
int api_parse_snapshot_config(const char *json, size_t len, struct machine_config *cfg, char *err,
			      size_t errlen);

/* vm.snapshot's body {"destination_url": URL} into url.  0 or -1 with err. */
int api_parse_snapshot(const char *json, size_t len, char *url, size_t urllen, char *err,
		       size_t errlen);

/* vm.restore's body (Cloud Hypervisor's RestoreConfig): "source_url"
 * (required), "prefault", "memory_restore_mode" ("Copy" | "OnDemand", any
 * case; default Copy), "resume", "net_fds" [{"id","num_fds":1}] (the fds
 * come with the request), and vmm's own "backing" (restore onto another
 * backing; -1: the snapshot's).  0, or -1 with err. */
struct api_restore {
	char url[4096];
	bool prefault, prefault_set, resume, on_demand;
	const char *mode;        /* internal */
	int backing;
	unsigned nnets;
	struct { char id[40]; } nets[CONFIG_MAX_NETS];
};
int api_parse_restore(const char *json, size_t len, struct api_restore *out, char *err,
		      size_t errlen);

/* {"error":msg} (escaped).  A new string to free(), NULL if out of memory. */
char *api_error_json(const char *msg);

/* vm.send-migration {"destination_url", "local", "downtime_ms" (Cloud
 * Hypervisor's "downtime"), "timeout_s" ("migration_timeout")} and
 * vm.receive-migration {"receiver_url", "timeout_s"}.  Defaults: 300 ms,
 * 3600 s; 600 s for the receiver's wait.  0 or -1 with err. */
struct api_send_migration {
	char url[256];
	bool local;
	unsigned downtime_ms, timeout_s;
};
int api_parse_send_migration(const char *json, size_t len, struct api_send_migration *out,
			     char *err, size_t errlen);
struct api_receive_migration {
	char url[256];
	unsigned timeout_s;
};
int api_parse_receive_migration(const char *json, size_t len, struct api_receive_migration *out,
				char *err, size_t errlen);

#endif
