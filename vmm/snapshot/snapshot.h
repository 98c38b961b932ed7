/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vmm/snapshot/ - a paused VM to a directory and back (issue 16).  May call
 * machine/, virtio/, devices/, core/ and guestmm; called by api/ and cli/,
 * which own the JSON of the configuration (api_config.h) and hand it over
 * as text.
 */
/*
 * snapshot.h - vm.snapshot and vm.restore.
 *
 * The directory (Cloud Hypervisor's names; libvirt adds a file of its own):
 *   config.json    the VM's configuration (api_snapshot_config_json)
 *   state.json     everything else: {"format":"vmm-state","version":N,
 *                  "vm": vCPUs, irqchip, PIT, clock (core/vm_state.h),
 *                  "devices": UART, i8042, "virtio": the virtio devices,
 *                  "memory": {"file","size","regions":[{name, gpa, size,
 *                  backing, offset, shape}]}}
 *   memory-ranges  guest RAM, sparse (guestmm/snapshot.h): region i at its
 *                  "offset", holes for what the guest never touched,
 *                  ballooned, discarded or unplugged memory.
 * Files are written under temporary names and renamed once complete, so a
 * failed snapshot never leaves a directory that looks whole.
 *
 * Restore modes: Copy (the file read into prefaulted huge-page RAM by
 * several threads) and OnDemand (userfaultfd: the vCPUs run at once, a
 * handler serves each first touch from the file and a fill-ahead thread
 * brings in the rest).  A restore may choose another backing.
 *
 * Threads: main thread (the API's poll loop, or `vmm run`'s start-up).
 */
#ifndef VMM_SNAPSHOT_H
#define VMM_SNAPSHOT_H

#include "machine/machine.h"

#include <stdbool.h>
#include <stddef.h>

#define SNAPSHOT_STATE_FORMAT "vmm-state"
#define SNAPSHOT_STATE_VERSION 1

enum restore_mode { RESTORE_COPY, RESTORE_ON_DEMAND };

/* "Copy" / "OnDemand" (Cloud Hypervisor's, any case) or "copy" /
 * "on-demand" (vmm run's); -1 otherwise. */
int restore_mode_parse(const char *s, enum restore_mode *out);

/* file:///abs/dir (or a bare absolute path) -> dir.  -1 with err. */
int snapshot_url_dir(const char *url, char *dir, size_t len, char *err, size_t errlen);

/* Write the paused VM of m into dir (an existing directory).  config_json
 * is config.json's text (the caller made it from m->cfg).  The VM stays
 * paused; its devices are quiesced for the duration and let go after.
 * 0; -EBUSY (not paused: nothing written); -ENOENT/-EACCES/-ENOTDIR (the
 * directory); -EIO (anything else), with err. */
int snapshot_save(struct machine *m, const char *dir, const char *config_json, char *err,
		  size_t errlen);

/* Read dir/config.json (at most 1 MiB, a regular file) into a new string.
 * 0 or -1 with err. */
int snapshot_read_config(const char *dir, char **out, char *err, size_t errlen);

struct snapshot_restore_opts {
	enum restore_mode mode;
	bool prefault;       /* Copy: prefault all of RAM first (default yes) */
	bool resume;         /* run at once (else PAUSED) */
	/* Tap fds for the config's nets by id (vm.restore's net_fds),
	 * owned by the caller; the restore dups what it takes. */
	unsigned nnet_fds;
	struct { char id[40]; int fd; } net_fds[4];
};

/* Restore dir into m (state NONE) with cfg (parsed from config.json and
 * adjusted by the caller: backing, ...; moved).  Everything in state.json
 * is checked against cfg before guest memory exists where it can be
 * (format, version, vCPU count, regions, devices), the rest before the
 * vCPUs run.  0, or an exit status with err (nothing left running, m back
 * to NONE). */
int snapshot_restore(struct machine *m, const char *dir, struct machine_config *cfg,
		     const struct snapshot_restore_opts *o, char *err, size_t errlen);

/* ---- the parts a live migration (vmm/migration/) shares ---------------- */

struct json_object;
/* Add "vm" (vCPUs, irqchip, PIT, clock), "devices" and "virtio" to root:
 * the VM paused, its devices quiesced.  0 or -1 with err. */
int snapshot_state_parts(struct vm *vm, struct json_object *root, char *err, size_t errlen);
/* Put them back into a VM made in restore mode (machine_restore's apply
 * hook), memory already in place.  0 or -1 with err. */
int snapshot_state_apply_parts(struct vm *vm, struct json_object *state, char *err,
			       size_t errlen);
/* {"regions":[{name, gpa, size, backing, shape}]}: the table's shape
 * without a memory file.  NULL with err. */
struct json_object *snapshot_memory_shape_save(struct vm *vm, char *err, size_t errlen);
/* state's "memory" (as above) applied to vm's regions: every range mapped
 * but the unmapped ones, then split / read-only as listed.  0 or -1. */
int snapshot_memory_shape_apply(struct vm *vm, struct json_object *state, char *err,
				size_t errlen);

#endif
