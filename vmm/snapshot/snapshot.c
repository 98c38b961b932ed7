// SPDX-License-Identifier: GPL-2.0-only
/*
 * snapshot.c - vm.snapshot and vm.restore: the directory, the order of
 * the steps, and the checks (snapshot.h has the format).
 *
 * Save, with the VM paused (vCPUs parked outside KVM_RUN, the pending
 * I/O of each completed by the pause):
 *   devices quiesced (every request popped is completed and pushed, no
 *   device thread touches guest memory)  ->  state.json's parts: vCPUs,
 *   irqchip, PIT, clock; UART, i8042; virtio transports and devices  ->
 *   memory: each guestmm region's table shape and its mapped, resident
 *   pages into memory-ranges (sparse)  ->  the three files renamed into
 *   place  ->  devices let go.  The VM stays paused throughout; a failure
 *   leaves it paused and as it was, and removes the temporary files.
 *
 * Restore, into a VMM with no VM:
 *   config.json and state.json read and checked (format, version, vCPU
 *   count, the regions against the configuration, memory-ranges' size)
 *   before guest memory exists  ->  machine_restore(): the VM in restore
 *   mode (no kernel), the devices from the config  ->  apply(): UART and
 *   i8042, virtio, each region's shape and contents (Copy: read now;
 *   OnDemand: userfaultfd, served while the guest runs), vCPUs, irqchip,
 *   PIT, clock  ->  vCPUs started parked (PAUSED) or resumed.
 *
 * Untrusted input: the directory may hold anything.  Every file is opened
 * O_NOFOLLOW and checked to be a regular file; JSON goes through the
 * strict readers (core/state_json.h); sizes are checked against the
 * configuration before they are used.
 *
 * Main thread only.
 */
#include "snapshot/snapshot.h"
#include "core/events.h"
#include "core/log.h"
#include "core/size.h"
#include "core/state_json.h"
#include "core/vm_state.h"
#include "devices/devices.h"
#include "machine/virtio_set.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CONFIG_FILE "config.json"
#define STATE_FILE "state.json"
#define MEMORY_FILE "memory-ranges"
#define STATE_MAX (64u << 20)          /* state.json: vCPU blobs, device lists */
#define CONFIG_MAX (1u << 20)
#define MAX_REGIONS GMM_ONDEMAND_MAX_REGIONS
#define REGION_ALIGN (2ULL << 20)      /* each region's offset in memory-ranges */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int restore_mode_parse(const char *s, enum restore_mode *out)
{
	if (!strcasecmp(s, "copy"))
		*out = RESTORE_COPY;
	else if (!strcasecmp(s, "ondemand") || !strcasecmp(s, "on-demand"))
		*out = RESTORE_ON_DEMAND;
	else
		return -1;
	return 0;
}

int snapshot_url_dir(const char *url, char *dir, size_t len, char *err, size_t errlen)
{
	const char *p = url;
	if (!strncmp(url, "file://", 7))
		p = url + 7;
	else if (strstr(url, "://")) {
		snprintf(err, errlen, "%s: only file:// URLs are supported", url);
		return -1;
	}
	if (p[0] != '/') {
		snprintf(err, errlen, "%s: not an absolute path (file:///dir)", url);
		return -1;
	}
	if (strlen(p) >= len) {
		snprintf(err, errlen, "%s: the path is too long", url);
		return -1;
	}
	snprintf(dir, len, "%s", p);
	return 0;
}

/* ---- files ------------------------------------------------------------- */

/* Write all of buf to dirfd/name (created 0600, replaced), fsync'd. */
static int write_file(int dirfd, const char *name, const char *buf, size_t len, char *err,
		      size_t errlen)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", name, strerror(errno));
		return -1;
	}
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "%s: %s", name, n < 0 ? strerror(errno) : "short write");
			close(fd);
			return -1;
		}
		done += (size_t)n;
	}
	if (fdatasync(fd) < 0) {
		snprintf(err, errlen, "%s: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* A regular file of dir, not through a symlink, at most max bytes, into a
 * new NUL-terminated buffer. */
static int read_file(int dirfd, const char *name, size_t max, char **out, size_t *lenp, char *err,
		     size_t errlen)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", name, errno == ELOOP ? "a symbolic link" : strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", name);
		close(fd);
		return -1;
	}
	if ((uint64_t)st.st_size > max) {
		snprintf(err, errlen, "%s: %lld bytes, more than the %zu a snapshot's %s can be", name,
			 (long long)st.st_size, max, name);
		close(fd);
		return -1;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		snprintf(err, errlen, "%s: out of memory", name);
		close(fd);
		return -1;
	}
	size_t done = 0, len = (size_t)st.st_size;
	while (done < len) {
		ssize_t n = read(fd, buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	close(fd);
	if (done != len) {
		snprintf(err, errlen, "%s: short read", name);
		free(buf);
		return -1;
	}
	buf[len] = 0;
	*out = buf;
	if (lenp)
		*lenp = len;
	return 0;
}

static int open_dir(const char *dir, bool write, char *err, size_t errlen)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", dir,
			 e == ENOENT ? "no such directory" :
			 e == ENOTDIR ? "not a directory" : strerror(e));
		return -e;
	}
	if (write && faccessat(fd, ".", W_OK, AT_EACCESS) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: not writable (%s)", dir, strerror(e));
		close(fd);
		return -e;
	}
	return fd;
}

int snapshot_read_config(const char *dir, char **out, char *err, size_t errlen)
{
	char e[400];
	int dfd = open_dir(dir, false, e, sizeof(e));
	if (dfd < 0) {
		snprintf(err, errlen, "%s", e);
		return -1;
	}
	int r = read_file(dfd, CONFIG_FILE, CONFIG_MAX, out, NULL, e, sizeof(e));
	close(dfd);
	if (r < 0)
		snprintf(err, errlen, "%s/%s", dir, e);
	return r;
}

/* ---- save -------------------------------------------------------------- */

static const char *shape_kind_name(enum gmm_shape_kind k)
{
	switch (k) {
	case GMM_SHAPE_UNMAPPED: return "unmapped";
	case GMM_SHAPE_SPLIT: return "split";
	case GMM_SHAPE_READONLY: return "readonly";
	}
	return "?";
}

static int shape_kind_parse(const char *s, enum gmm_shape_kind *k)
{
	if (!strcmp(s, "unmapped"))
		*k = GMM_SHAPE_UNMAPPED;
	else if (!strcmp(s, "split"))
		*k = GMM_SHAPE_SPLIT;
	else if (!strcmp(s, "readonly"))
		*k = GMM_SHAPE_READONLY;
	else
		return -1;
	return 0;
}

/* A region's entry in state.json's "memory": name, gpa, size, backing
 * and the table's shape.  NULL with err. */
static struct json_object *region_json(struct gmm_region *r, char *err, size_t errlen)
{
	struct gmm_region_info info;
	gmm_region_info(r, &info);
	struct gmm_shape_range *shape = NULL;
	size_t n = 0;
	if (gmm_region_shape(r, &shape, &n) < 0) {
		snprintf(err, errlen, "region %s: %s", info.name ? info.name : "?", gmm_last_error());
		return NULL;
	}
	struct json_object *o = json_object_new_object(), *list = json_object_new_array();
	bool ok = o && list;
	ok = ok && !sj_set_str(o, "name", info.name ? info.name : "");
	ok = ok && !sj_set_u64(o, "gpa", info.gpa) && !sj_set_u64(o, "size", info.size);
	ok = ok && !sj_set_str(o, "backing", gmm_backing_name(info.backing));
	for (size_t i = 0; ok && i < n; i++) {
		struct json_object *e = json_object_new_object();
		ok = e && !sj_set_u64(e, "gpa", shape[i].gpa) && !sj_set_u64(e, "len", shape[i].len) &&
		     !sj_set_str(e, "kind", shape_kind_name(shape[i].kind));
		if (!ok || json_object_array_add(list, e) < 0) {
			json_object_put(e);
			ok = false;
		}
	}
	free(shape);
	if (ok) {
		ok = !sj_set_obj(o, "shape", list);
		list = NULL;
	}
	if (!ok) {
		json_object_put(list);
		json_object_put(o);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	return o;
}

/* One region: its entry and its pages into fd at off. */
static struct json_object *save_region(struct gmm_region *r, int fd, uint64_t off,
				       struct gmm_save_stats *st, char *err, size_t errlen)
{
	struct json_object *o = region_json(r, err, errlen);
	if (!o)
		return NULL;
	if (sj_set_u64(o, "offset", off) < 0) {
		snprintf(err, errlen, "out of memory");
		json_object_put(o);
		return NULL;
	}
	if (gmm_region_save(r, fd, off, 0, st) < 0) {
		struct gmm_region_info info;
		gmm_region_info(r, &info);
		snprintf(err, errlen, "%s: region %s: %s", MEMORY_FILE, info.name ? info.name : "?",
			 gmm_last_error());
		json_object_put(o);
		return NULL;
	}
	sj_set_u64(o, "written", st->written);
	return o;
}

static void unlink_tmp(int dfd)
{
	unlinkat(dfd, MEMORY_FILE ".tmp", 0);
	unlinkat(dfd, STATE_FILE ".tmp", 0);
	unlinkat(dfd, CONFIG_FILE ".tmp", 0);
}

int snapshot_state_parts(struct vm *vm, struct json_object *root, char *err, size_t errlen)
{
	struct json_object *part;
	if (!(part = vm_state_save(vm, err, errlen)) || sj_set_obj(root, "vm", part) < 0)
		return -1;
	if (!(part = devices_save(err, errlen)) || sj_set_obj(root, "devices", part) < 0)
		return -1;
	if (!(part = virtio_set_save(vm, err, errlen)) || sj_set_obj(root, "virtio", part) < 0)
		return -1;
	return 0;
}

int snapshot_save(struct machine *m, const char *dir, const char *config_json, char *err,
		  size_t errlen)
{
	enum machine_state st = machine_state(m);
	if (st != MACHINE_PAUSED) {
		snprintf(err, errlen, "the VM is %s: a snapshot needs a paused VM (vm.pause first)",
			 st == MACHINE_NONE ? "not created" : machine_state_name(st));
		return -EBUSY;
	}
	char e[512] = "";
	int dfd = open_dir(dir, true, e, sizeof(e));
	if (dfd < 0) {
		snprintf(err, errlen, "%s", e);
		return dfd;
	}
	struct vm *vm = m->vm;
	uint64_t t0 = now_ns();
	events_emit("vm", "snapshotting");
	if (virtio_set_quiesce(vm) < 0) {
		snprintf(err, errlen, "the virtio devices could not finish their requests");
		virtio_set_resume_io(vm);
		close(dfd);
		return -EIO;
	}
	int ret = -EIO, mfd = -1;
	struct json_object *root = json_object_new_object();
	char *text = NULL;
	if (!root || sj_set_str(root, "format", SNAPSHOT_STATE_FORMAT) < 0 ||
	    sj_set_u64(root, "version", SNAPSHOT_STATE_VERSION) < 0 ||
	    sj_set_str(root, "vmm_version", VMM_VERSION) < 0) {
		snprintf(e, sizeof(e), "out of memory");
		goto out;
	}
	if (snapshot_state_parts(vm, root, e, sizeof(e)) < 0)
		goto out;

	/* Memory. */
	mfd = openat(dfd, MEMORY_FILE ".tmp", O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
		     0600);
	if (mfd < 0) {
		snprintf(e, sizeof(e), "%s: %s", MEMORY_FILE, strerror(errno));
		goto out;
	}
	struct json_object *mem = json_object_new_object(), *regions = json_object_new_array();
	if (!mem || !regions || sj_set_obj(root, "memory", mem) < 0 ||
	    sj_set_obj(mem, "regions", regions) < 0) {
		snprintf(e, sizeof(e), "out of memory");
		goto out;
	}
	uint64_t off = 0, written = 0, mapped = 0;
	int nreg = gmm_region_count(vm->mem);
	if (nreg > MAX_REGIONS) {
		snprintf(e, sizeof(e), "%d memory regions, a snapshot holds at most %d", nreg,
			 MAX_REGIONS);
		goto out;
	}
	for (int i = 0; i < nreg; i++) {
		struct gmm_region *r = gmm_region_at(vm->mem, i);
		struct gmm_region_info info;
		struct gmm_save_stats ss = { 0 };
		gmm_region_info(r, &info);
		struct json_object *ro = save_region(r, mfd, off, &ss, e, sizeof(e));
		if (!ro || json_object_array_add(regions, ro) < 0) {
			json_object_put(ro);
			goto out;
		}
		written += ss.written;
		mapped += ss.mapped;
		off += (info.size + REGION_ALIGN - 1) & ~(REGION_ALIGN - 1);
	}
	if (sj_set_str(mem, "file", MEMORY_FILE) < 0 || sj_set_u64(mem, "size", off) < 0 ||
	    ftruncate(mfd, (off_t)off) < 0) {
		snprintf(e, sizeof(e), "%s: %s", MEMORY_FILE, strerror(errno ? errno : ENOMEM));
		goto out;
	}
	struct stat mst;
	fstat(mfd, &mst);
	close(mfd);
	mfd = -1;

	text = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
	if (!text) {
		snprintf(e, sizeof(e), "out of memory");
		goto out;
	}
	if (write_file(dfd, STATE_FILE ".tmp", text, strlen(text), e, sizeof(e)) < 0 ||
	    write_file(dfd, CONFIG_FILE ".tmp", config_json, strlen(config_json), e, sizeof(e)) < 0)
		goto out;
	/* Whole files only: memory first, the state that describes it last. */
	if (renameat(dfd, MEMORY_FILE ".tmp", dfd, MEMORY_FILE) < 0 ||
	    renameat(dfd, CONFIG_FILE ".tmp", dfd, CONFIG_FILE) < 0 ||
	    renameat(dfd, STATE_FILE ".tmp", dfd, STATE_FILE) < 0) {
		snprintf(e, sizeof(e), "renaming into place: %s", strerror(errno));
		goto out;
	}
	fsync(dfd);
	ret = 0;
	char b1[32], b2[32], b3[32];
	log_msg(LOG_INFO, "snapshot: %s: %s of RAM mapped, %s written (%s on disk) in %.1f ms", dir,
		format_size(mapped, b1, sizeof(b1)), format_size(written, b2, sizeof(b2)),
		format_size((uint64_t)mst.st_blocks * 512, b3, sizeof(b3)),
		(double)(now_ns() - t0) / 1e6);
out:
	if (ret < 0) {
		snprintf(err, errlen, "%s", e);
		unlink_tmp(dfd);
	}
	if (mfd >= 0)
		close(mfd);
	free(text);
	json_object_put(root);
	virtio_set_resume_io(vm);
	close(dfd);
	events_emit("vm", ret ? "snapshot-failed" : "snapshotted");
	return ret;
}

/* ---- restore ----------------------------------------------------------- */

struct saved_region {
	uint64_t gpa, size, offset;
	struct gmm_shape_range *shape;
	size_t nshape;
};

struct restore {
	const char *dir;
	const struct snapshot_restore_opts *o;
	struct json_object *state;
	int mfd;
	uint64_t msize;                 /* memory-ranges' size */
	struct saved_region reg[MAX_REGIONS];
	unsigned nreg;
	uint64_t t0;
};

static void restore_free(struct restore *rs)
{
	for (unsigned i = 0; i < rs->nreg; i++)
		free(rs->reg[i].shape);
	json_object_put(rs->state);
	if (rs->mfd >= 0)
		close(rs->mfd);
}

/* state.json's "memory" into rs->reg, every value checked. */
static int parse_memory(struct restore *rs, bool with_file, char *err, size_t errlen)
{
	struct json_object *mem, *regions;
	uint64_t size = UINT64_MAX;
	if (sj_get_obj(rs->state, "memory", &mem, "state.json", err, errlen) < 0 ||
	    (with_file && sj_get_u64(mem, "size", &size, "state.json memory", err, errlen) < 0) ||
	    sj_get_array(mem, "regions", &regions, "state.json memory", err, errlen) < 0)
		return -1;
	size_t n = json_object_array_length(regions);
	if (n == 0 || n > MAX_REGIONS) {
		snprintf(err, errlen, "state.json memory.regions: %zu regions (1 to %d)", n, MAX_REGIONS);
		return -1;
	}
	if (with_file && size > rs->msize) {
		snprintf(err, errlen, "%s: %" PRIu64 " bytes, but the snapshot's memory is %" PRIu64
			 " bytes: the file is truncated", MEMORY_FILE, rs->msize, size);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *r = json_object_array_get_idx(regions, i), *shape;
		struct saved_region *sr = &rs->reg[rs->nreg++];
		char where[48];
		snprintf(where, sizeof(where), "state.json memory.regions[%zu]", i);
		if (sj_get_u64(r, "gpa", &sr->gpa, where, err, errlen) < 0 ||
		    sj_get_u64(r, "size", &sr->size, where, err, errlen) < 0 ||
		    (with_file && sj_get_u64(r, "offset", &sr->offset, where, err, errlen) < 0) ||
		    sj_get_array(r, "shape", &shape, where, err, errlen) < 0)
			return -1;
		if (sr->size == 0 || sr->size % GMM_PAGE_SIZE || sr->gpa % GMM_PAGE_SIZE ||
		    sr->gpa >= GMM_GPA_LIMIT || sr->size > GMM_GPA_LIMIT - sr->gpa ||
		    sr->offset > size || sr->size > size - sr->offset) {
			snprintf(err, errlen, "%s: gpa 0x%" PRIx64 " size 0x%" PRIx64 " offset 0x%" PRIx64
				 " does not fit the memory file of %" PRIu64 " bytes", where, sr->gpa,
				 sr->size, sr->offset, size);
			return -1;
		}
		size_t ns = json_object_array_length(shape);
		if (ns > (sr->size / GMM_PAGE_SIZE)) {
			snprintf(err, errlen, "%s.shape: %zu ranges for %llu pages", where, ns,
				 (unsigned long long)(sr->size / GMM_PAGE_SIZE));
			return -1;
		}
		sr->shape = ns ? calloc(ns, sizeof(*sr->shape)) : NULL;
		if (ns && !sr->shape) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		sr->nshape = ns;
		for (size_t k = 0; k < ns; k++) {
			struct json_object *e = json_object_array_get_idx(shape, k);
			const char *kind;
			char w2[80];
			snprintf(w2, sizeof(w2), "%s.shape[%zu]", where, k);
			if (sj_get_u64(e, "gpa", &sr->shape[k].gpa, w2, err, errlen) < 0 ||
			    sj_get_u64(e, "len", &sr->shape[k].len, w2, err, errlen) < 0 ||
			    sj_get_str(e, "kind", &kind, w2, err, errlen) < 0)
				return -1;
			if (shape_kind_parse(kind, &sr->shape[k].kind) < 0) {
				snprintf(err, errlen, "%s.kind: '%s' is not unmapped, split or readonly", w2,
					 kind);
				return -1;
			}
			/* Inside the region (apply_shape checks the rest). */
			if (sr->shape[k].gpa < sr->gpa || sr->shape[k].len > sr->size ||
			    sr->shape[k].gpa - sr->gpa > sr->size - sr->shape[k].len) {
				snprintf(err, errlen, "%s: outside the region", w2);
				return -1;
			}
		}
	}
	return 0;
}

/* Map what the shape does not list as unmapped (a region the VM creates
 * unplugged, virtio-mem's, gets its plugged blocks back), then the shape. */
static int restore_shape(struct gmm_vm *mem, struct gmm_region *r, const struct saved_region *sr,
			 char *err, size_t errlen)
{
	uint64_t at = sr->gpa, end = sr->gpa + sr->size;
	for (size_t k = 0; k <= sr->nshape; k++) {
		if (k < sr->nshape && sr->shape[k].kind != GMM_SHAPE_UNMAPPED)
			continue;
		uint64_t next = k < sr->nshape ? sr->shape[k].gpa : end;
		if (next > at && gmm_map(mem, at, next - at) < 0) {
			snprintf(err, errlen, "memory 0x%" PRIx64 "+0x%" PRIx64 ": %s", at, next - at,
				 gmm_last_error());
			return -1;
		}
		if (k < sr->nshape && next + sr->shape[k].len > at)
			at = next + sr->shape[k].len;
	}
	if (gmm_region_apply_shape(r, sr->shape, sr->nshape) < 0) {
		snprintf(err, errlen, "memory region at 0x%" PRIx64 ": %s", sr->gpa, gmm_last_error());
		return -1;
	}
	return 0;
}

static int apply_memory(struct restore *rs, struct vm *vm, char *err, size_t errlen)
{
	/* Test only: every block by a fault, none by fill-ahead, so a test
	 * sees device threads take faults (tests/vmm/test_snapshot.sh). */
	struct gmm_ondemand_spec spec = {
		.fd = rs->mfd,
		.no_fill_ahead = getenv("VMM_TEST_ONDEMAND_NO_FILL") != NULL,
	};
	uint64_t read = 0, t0 = now_ns();
	for (unsigned i = 0; i < rs->nreg; i++) {
		struct saved_region *sr = &rs->reg[i];
		struct gmm_region *r = gmm_region_find(vm->mem, sr->gpa);
		struct gmm_region_info info;
		if (r)
			gmm_region_info(r, &info);
		if (!r || info.gpa != sr->gpa || info.size != sr->size) {
			snprintf(err, errlen, "state.json memory.regions[%u] (0x%" PRIx64 "+0x%" PRIx64
				 ") is not a region of the configured VM: config.json does not match "
				 "state.json", i, sr->gpa, sr->size);
			return -1;
		}
		if (restore_shape(vm->mem, r, sr, err, errlen) < 0)
			return -1;
		if (rs->o->mode == RESTORE_COPY) {
			struct gmm_load_stats ls = { 0 };
			if (gmm_region_load(r, rs->mfd, sr->offset, 0, &ls) < 0) {
				snprintf(err, errlen, "%s: %s", MEMORY_FILE, gmm_last_error());
				return -1;
			}
			read += ls.read;
		} else {
			spec.regions[spec.nregions].r = r;
			spec.regions[spec.nregions++].off = sr->offset;
		}
	}
	char b1[32], b2[32];
	if (rs->o->mode == RESTORE_COPY) {
		double s = (double)(now_ns() - t0) / 1e9;
		struct gmm_coverage c;
		vm_ram_coverage(vm, &c);
		log_msg(LOG_INFO, "restore: Copy: %s read in %.1f ms (%.0f MB/s); RAM %s resident, "
			"%.1f%% in huge pages (%s)", format_size(read, b1, sizeof(b1)), s * 1e3,
			s > 0 ? (double)read / s / 1e6 : 0.0, format_size(c.resident, b2, sizeof(b2)),
			c.size ? 100.0 * (double)c.huge / (double)c.size : 0.0, c.method ? c.method : "-");
		return 0;
	}
	if (gmm_ondemand_start(vm->mem, &spec, &vm->ondemand) < 0) {
		snprintf(err, errlen, "on-demand restore: %s", gmm_last_error());
		return -1;
	}
	log_msg(LOG_INFO, "restore: OnDemand: userfaultfd armed over %u region%s in %.1f ms",
		spec.nregions, spec.nregions == 1 ? "" : "s", (double)(now_ns() - t0) / 1e6);
	return 0;
}

/* machine_restore's hook: the VM and its devices exist, nothing runs.
 * Memory first (virtio-mem's region gets its plugged blocks back before its
 * device is told about them), then the irqchip and vCPUs, then the devices:
 * the UART drives its IRQ line and the virtio devices re-signal their
 * pending interrupts into the restored irqchip, not into a fresh one the
 * irqchip's restore would overwrite. */
static int apply(void *arg, struct vm *vm, char *err, size_t errlen)
{
	struct restore *rs = arg;
	if (apply_memory(rs, vm, err, errlen) < 0)
		return -1;
	return snapshot_state_apply_parts(vm, rs->state, err, errlen);
}

int snapshot_state_apply_parts(struct vm *vm, struct json_object *state, char *err, size_t errlen)
{
	struct json_object *part;
	if (sj_get_obj(state, "vm", &part, "state", err, errlen) < 0 ||
	    vm_state_restore(vm, part, err, errlen) < 0)
		return -1;
	if (sj_get_obj(state, "devices", &part, "state", err, errlen) < 0 ||
	    devices_restore(part, err, errlen) < 0)
		return -1;
	if (sj_get_array(state, "virtio", &part, "state", err, errlen) < 0 ||
	    virtio_set_restore(vm, part, err, errlen) < 0)
		return -1;
	virtio_set_restore_irq(vm);
	return 0;
}

/* ---- for a live migration ---------------------------------------------- */

struct json_object *snapshot_memory_shape_save(struct vm *vm, char *err, size_t errlen)
{
	struct json_object *mem = json_object_new_object(), *regions = json_object_new_array();
	if (!mem || !regions || sj_set_obj(mem, "regions", regions) < 0) {
		json_object_put(mem);
		json_object_put(regions);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	int nreg = gmm_region_count(vm->mem);
	for (int i = 0; i < nreg && i < MAX_REGIONS; i++) {
		struct json_object *o = region_json(gmm_region_at(vm->mem, i), err, errlen);
		if (!o || json_object_array_add(regions, o) < 0) {
			if (o)
				snprintf(err, errlen, "out of memory");
			json_object_put(o);
			json_object_put(mem);
			return NULL;
		}
	}
	return mem;
}

int snapshot_memory_shape_apply(struct vm *vm, struct json_object *state, char *err, size_t errlen)
{
	struct restore rs = { .state = state, .mfd = -1 };
	int ret = parse_memory(&rs, false, err, errlen);
	for (unsigned i = 0; ret == 0 && i < rs.nreg; i++) {
		struct saved_region *sr = &rs.reg[i];
		struct gmm_region *r = gmm_region_find(vm->mem, sr->gpa);
		struct gmm_region_info info;
		if (r)
			gmm_region_info(r, &info);
		if (!r || info.gpa != sr->gpa || info.size != sr->size) {
			snprintf(err, errlen, "state memory.regions[%u] (0x%" PRIx64 "+0x%" PRIx64
				 ") is not a region of this VM", i, sr->gpa, sr->size);
			ret = -1;
		} else {
			ret = restore_shape(vm->mem, r, sr, err, errlen);
		}
	}
	rs.state = NULL;   /* the caller's */
	restore_free(&rs);
	return ret;
}

/* Give the config's fd-born nets their fds from net_fds. */
static int take_net_fds(struct machine_config *cfg, const struct snapshot_restore_opts *o,
			char *err, size_t errlen)
{
	for (unsigned k = 0; k < o->nnet_fds; k++) {
		unsigned i;
		for (i = 0; i < cfg->nnets; i++) {
			char id[16];
			snprintf(id, sizeof(id), "_net%u", i);
			if (!strcmp(o->net_fds[k].id, cfg->nets[i].id ? cfg->nets[i].id : id))
				break;
		}
		if (i == cfg->nnets) {
			snprintf(err, errlen, "net_fds: no net device %s in the snapshot", o->net_fds[k].id);
			return -1;
		}
		int fd = fcntl(o->net_fds[k].fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0) {
			snprintf(err, errlen, "net_fds: %s: %s", o->net_fds[k].id, strerror(errno));
			return -1;
		}
		if (cfg->nets[i].fd >= 0)
			close(cfg->nets[i].fd);
		cfg->nets[i].fd = fd;
		free(cfg->nets[i].tap);
		cfg->nets[i].tap = NULL;
	}
	for (unsigned i = 0; i < cfg->nnets; i++) {
		if (cfg->nets[i].fd < 0 && !cfg->nets[i].tap) {
			char id[16];
			snprintf(id, sizeof(id), "_net%u", i);
			snprintf(err, errlen, "net %s was given to the VM as an fd: vm.restore needs its "
				 "tap fd in net_fds", cfg->nets[i].id ? cfg->nets[i].id : id);
			return -1;
		}
	}
	return 0;
}

int snapshot_restore(struct machine *m, const char *dir, struct machine_config *cfg,
		     const struct snapshot_restore_opts *o, char *err, size_t errlen)
{
	struct restore rs = { .dir = dir, .o = o, .mfd = -1, .t0 = now_ns() };
	char e[512] = "";
	int status = EXIT_USAGE;
	char *text = NULL;
	size_t len = 0;
	int dfd = open_dir(dir, false, e, sizeof(e));
	if (dfd < 0)
		goto out;
	if (read_file(dfd, STATE_FILE, STATE_MAX, &text, &len, e, sizeof(e)) < 0)
		goto out;
	struct json_tokener *tok = json_tokener_new();
	if (tok) {
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
		rs.state = json_tokener_parse_ex(tok, text, (int)len);
		if (json_tokener_get_error(tok) != json_tokener_success) {
			json_object_put(rs.state);
			rs.state = NULL;
		}
		json_tokener_free(tok);
	}
	if (!rs.state || !json_object_is_type(rs.state, json_type_object)) {
		snprintf(e, sizeof(e), "%s: not a JSON object", STATE_FILE);
		goto out;
	}
	const char *fmt;
	uint64_t version, ncpus;
	struct json_object *vmo, *vcpus;
	if (sj_get_str(rs.state, "format", &fmt, STATE_FILE, e, sizeof(e)) < 0)
		goto out;
	if (strcmp(fmt, SNAPSHOT_STATE_FORMAT)) {
		snprintf(e, sizeof(e), "%s: format '%s', not a vmm snapshot (%s)", STATE_FILE, fmt,
			 SNAPSHOT_STATE_FORMAT);
		goto out;
	}
	if (sj_get_u64(rs.state, "version", &version, STATE_FILE, e, sizeof(e)) < 0)
		goto out;
	if (version != SNAPSHOT_STATE_VERSION) {
		snprintf(e, sizeof(e), "%s: format version %" PRIu64 ", this vmm restores version %d",
			 STATE_FILE, version, SNAPSHOT_STATE_VERSION);
		goto out;
	}
	if (sj_get_obj(rs.state, "vm", &vmo, STATE_FILE, e, sizeof(e)) < 0 ||
	    sj_get_array(vmo, "vcpus", &vcpus, "state.json vm", e, sizeof(e)) < 0)
		goto out;
	ncpus = json_object_array_length(vcpus);
	if (ncpus != cfg->vm.nr_vcpus) {
		snprintf(e, sizeof(e), "state.json has %" PRIu64 " vCPUs but config.json %u: the two "
			 "files are not of one snapshot", ncpus, cfg->vm.nr_vcpus);
		goto out;
	}
	rs.mfd = openat(dfd, MEMORY_FILE, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	if (rs.mfd < 0 || fstat(rs.mfd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(e, sizeof(e), "%s: %s", MEMORY_FILE,
			 rs.mfd < 0 ? strerror(errno) : "not a regular file");
		goto out;
	}
	rs.msize = (uint64_t)st.st_size;
	if (parse_memory(&rs, true, e, sizeof(e)) < 0)
		goto out;
	/* RAM as the config makes it: below 3 GiB and above 4 GiB, then
	 * virtio-mem; the regions must be those. */
	uint64_t total = 0;
	for (unsigned i = 0; i < rs.nreg; i++)
		total += rs.reg[i].size;
	if (total != cfg->vm.mem_size + cfg->hotplug_size) {
		snprintf(e, sizeof(e), "state.json's memory regions hold %" PRIu64 " bytes, config.json "
			 "says %" PRIu64 " of RAM and %" PRIu64 " of hot-plug memory: the files are not of "
			 "one snapshot", total, cfg->vm.mem_size, cfg->hotplug_size);
		goto out;
	}
	if (take_net_fds(cfg, o, e, sizeof(e)) < 0)
		goto out;
	cfg->vm.prefault = o->mode == RESTORE_COPY && o->prefault;
	struct machine_restore_hooks hooks = { .apply = apply, .arg = &rs, .resume = o->resume };
	status = machine_restore(m, cfg, &hooks, e, sizeof(e));
	if (status == 0) {
		log_msg(LOG_INFO, "restore: %s: %s mode, %s, %s after %.1f ms", dir,
			o->mode == RESTORE_COPY ? "Copy" : "OnDemand",
			gmm_backing_name(m->cfg.vm.backing), o->resume ? "running" : "paused",
			(double)(now_ns() - rs.t0) / 1e6);
	}
out:
	if (status)
		snprintf(err, errlen, "%s", e);
	free(text);
	restore_free(&rs);
	if (dfd >= 0)
		close(dfd);
	return status;
}
