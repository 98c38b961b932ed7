// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio_set.c - the virtio devices of one VM, made from its configuration:
 * disks first (virtio-blk, in --disk order), then the console
 * (virtio-console, when a console is configured), the balloon, the
 * virtio-mem hot-plug region, and last the network devices (virtio-net,
 * in --net order: after the others, so the slots the test images and
 * existing guests know do not move).  Device i sits in virtio-mmio slot i
 * (virtio_attach.c), so the kernel command line can be written before the
 * VM exists (virtio_set_cmdline) and the devices attached after.
 *
 * virtio-mem's KVM memslots: chunk i of the hot-plug region is memslot
 * VIRTIO_SET_MEMSLOT_BASE + i (0 and 1 are RAM below and above the hole).
 *
 * Threads: create/start/stop/destroy on the main thread, with the vCPUs not
 * running (create, start) or joined (stop, destroy).  The control calls
 * (balloon target, virtio-mem request, info) may come from any thread; the
 * devices lock for themselves.  The memslot callback runs on the "_mem"
 * thread: KVM_SET_USER_MEMORY_REGION may be called while vCPUs run.
 */
#include "machine/config.h"
#include "devices/devices.h"
#include "core/log.h"
#include "virtio/virtio_devices.h"
#include "core/vm.h"
#include "machine/virtio_set.h"
#include "core/state_json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define VIRTIO_SET_MEMSLOT_BASE 8

struct virtio_set {
	struct virtio_dev *dev[VIRTIO_MMIO_MAX_DEVICES];
	unsigned n, started;
	struct virtio_dev *console, *balloon, *mem;
	struct virtio_dev *net[CONFIG_MAX_NETS];
	unsigned nnets;
	struct virtio_mem_host mem_host;
};

/* How many devices the config makes (the slot order). */
static unsigned count_devices(const struct machine_config *c)
{
	return c->ndisks + (c->console.mode != CHR_OFF) + c->balloon.enabled + (c->hotplug_size != 0) +
	       c->nnets;
}

/* A MAC for a net configured without one: 52:54:00 (QEMU's prefix, as
 * libvirt uses), then three random bytes drawn once per process, the last
 * one plus the net's index -- so it stays the same across the guest's
 * reboots in this process.  Main thread. */
static void default_mac(unsigned index, uint8_t mac[6])
{
	static uint8_t salt[3];
	static bool drawn;
	if (!drawn) {
		if (getrandom(salt, sizeof(salt), 0) != (ssize_t)sizeof(salt)) {
			uint64_t t = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 16;
			memcpy(salt, &t, sizeof(salt));
		}
		drawn = true;
	}
	mac[0] = 0x52, mac[1] = 0x54, mac[2] = 0x00;
	mac[3] = salt[0], mac[4] = salt[1], mac[5] = (uint8_t)(salt[2] + index);
}

int virtio_set_cmdline(const struct machine_config *c, char *buf, size_t len)
{
	unsigned n = count_devices(c);
	if (n > VIRTIO_MMIO_MAX_DEVICES)
		return -1;
	for (unsigned slot = 0; slot < n; slot++) {
		size_t used = strlen(buf);
		int k = snprintf(buf + used, len - used, "%svirtio_mmio.device=4K@%#" PRIx64 ":%u",
				 used ? " " : "", (uint64_t)VIRTIO_MMIO_SLOT_BASE(slot),
				 virtio_mmio_irqs[slot]);
		if (k < 0 || (size_t)k >= len - used) {
			buf[used] = 0;
			return -1;
		}
	}
	return 0;
}

static int mem_set_memslot(void *opaque, unsigned chunk, uint64_t gpa, uint64_t size, void *hva)
{
	struct vm *vm = opaque;
	return vm_set_memslot(vm, VIRTIO_SET_MEMSLOT_BASE + chunk, gpa, size, hva);
}

static int add(struct virtio_set *s, struct vm *vm, struct virtio_dev *d)
{
	if (!d)
		return -1;
	unsigned slot = s->n;
	s->dev[s->n++] = d;
	return virtio_mmio_attach(vm, d, slot);
}

int virtio_set_create(struct vm *vm, const struct machine_config *c, int console_fd, char *err,
		      size_t errlen)
{
	struct virtio_set *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	vm->vio = s;
	err[0] = 0;
	for (unsigned i = 0; i < c->ndisks; i++) {
		struct blk_config bc = {
			.path = c->disks[i].path, .readonly = c->disks[i].readonly,
			.engine = (enum blk_engine)c->disks[i].engine, .serial = c->disks[i].serial,
		};
		if (add(s, vm, virtio_blk_create(vm->mem, &bc, i, err, errlen)) < 0)
			goto fail;
	}
	if (c->console.mode != CHR_OFF) {
		s->console = virtio_console_create(vm->mem, console_fd, err, errlen);
		if (add(s, vm, s->console) < 0)
			goto fail;
	}
	if (c->balloon.enabled) {
		struct balloon_config bc = {
			.deflate_on_oom = c->balloon.deflate_on_oom,
			.free_page_reporting = c->balloon.free_page_reporting,
			.stats = true, .stats_period_s = 1,
		};
		s->balloon = virtio_balloon_create(vm->mem, &bc, err, errlen);
		if (add(s, vm, s->balloon) < 0)
			goto fail;
		if (c->balloon.size &&
		    virtio_balloon_set_target(s->balloon, c->balloon.size, err, errlen) < 0)
			goto fail;
	}
	if (c->hotplug_size) {
		s->mem_host = (struct virtio_mem_host){ .set_memslot = mem_set_memslot, .opaque = vm };
		s->mem = virtio_mem_create(vm->mem, config_hotplug_gpa(c), c->hotplug_size,
					   c->vm.backing, &s->mem_host, err, errlen);
		if (add(s, vm, s->mem) < 0)
			goto fail;
		if (c->hotplugged_size &&
		    virtio_mem_request(s->mem, c->hotplugged_size, err, errlen) < 0)
			goto fail;
	}
	for (unsigned i = 0; i < c->nnets && i < CONFIG_MAX_NETS; i++) {
		const struct net_config *nc = &c->nets[i];
		struct net_dev_config dc = {
			.tap = nc->tap, .fd = nc->fd, .mtu = nc->mtu, .queue_size = nc->queue_size,
			.ip = nc->ip, .mask = nc->mask,
		};
		if (nc->mac_set)
			memcpy(dc.mac, nc->mac, 6);
		else
			default_mac(i, dc.mac);
		s->net[i] = virtio_net_create(vm->mem, &dc, i, err, errlen);
		if (add(s, vm, s->net[i]) < 0)
			goto fail;
		s->nnets++;
	}
	return 0;
fail:
	if (!err[0])
		snprintf(err, errlen, "cannot attach the virtio devices");
	log_msg(LOG_ERROR, "%s", err);
	virtio_set_destroy(vm);
	return -1;
}

int virtio_set_start(struct vm *vm)
{
	struct virtio_set *s = vm->vio;
	for (; s && s->started < s->n; s->started++)
		if (s->dev[s->started]->ops->start(s->dev[s->started]) < 0)
			return -1;
	return 0;
}

void virtio_set_stop(struct vm *vm)
{
	struct virtio_set *s = vm->vio;
	while (s && s->started) {
		struct virtio_dev *d = s->dev[--s->started];
		d->ops->stop(d);
	}
}

void virtio_set_destroy(struct vm *vm)
{
	struct virtio_set *s = vm->vio;
	if (!s)
		return;
	virtio_set_stop(vm);
	for (unsigned i = s->n; i-- > 0;)
		s->dev[i]->ops->destroy(s->dev[i]);
	free(s);
	vm->vio = NULL;
}

struct virtio_dev *virtio_set_console(struct vm *vm)
{
	return vm && vm->vio ? vm->vio->console : NULL;
}

struct virtio_dev *virtio_set_balloon(struct vm *vm)
{
	return vm && vm->vio ? vm->vio->balloon : NULL;
}

struct virtio_dev *virtio_set_mem(struct vm *vm)
{
	return vm && vm->vio ? vm->vio->mem : NULL;
}

struct virtio_dev *virtio_set_net(struct vm *vm, unsigned index)
{
	return vm && vm->vio && index < vm->vio->nnets ? vm->vio->net[index] : NULL;
}

/* The device's name in counters: blk0, blk1, console, balloon, mem, net0, net1. */
static void role_name(const struct virtio_set *s, unsigned i, char *out, size_t len)
{
	const struct virtio_dev *d = s->dev[i];
	if (d == s->console)
		snprintf(out, len, "console");
	else if (d == s->balloon)
		snprintf(out, len, "balloon");
	else if (d == s->mem)
		snprintf(out, len, "mem");
	else if (s->nnets && d == s->net[0])
		snprintf(out, len, "net0");
	else if (s->nnets > 1 && d == s->net[1])
		snprintf(out, len, "net1");
	else
		snprintf(out, len, "blk%u", i);
}

/* Append the "name value" lines of src to dst as "<role>_name value"
 * (a name already starting with "<role>_" or "virtio_<role>_" keeps its
 * role once). */
static size_t append_prefixed(char *dst, size_t len, const char *role, char *src)
{
	size_t used = 0, rl = strlen(role);
	for (char *line = src, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
		*nl = 0;
		if (!strncmp(line, "virtio_", 7) && !strncmp(line + 7, role, rl) && line[7 + rl] == '_')
			line += 7 + rl + 1;
		else if (!strncmp(line, role, rl) && line[rl] == '_')
			line += rl + 1;
		int k = snprintf(dst + used, len - used, "%s_%s\n", role, line);
		if (k < 0 || (size_t)k >= len - used)
			break;
		used += (size_t)k;
	}
	return used;
}

void virtio_set_counters(struct vm *vm, char *buf, size_t len)
{
	struct virtio_set *s = vm ? vm->vio : NULL;
	size_t used = 0;
	buf[0] = 0;
	for (unsigned i = 0; s && i < s->n && used + 1 < len; i++) {
		struct virtio_dev *d = s->dev[i];
		char role[16], lines[4096];
		role_name(s, i, role, sizeof(role));
		pthread_mutex_lock(&d->lock);
		int k = snprintf(lines, sizeof(lines),
				 "notifies %" PRIu64 "\nirqs %" PRIu64 "\nerrors %" PRIu64
				 "\nresets %" PRIu64 "\nstatus %u\n",
				 d->n_notify, d->n_irq, d->n_errors, d->n_resets, d->status);
		pthread_mutex_unlock(&d->lock);
		if (k < 0 || (size_t)k >= sizeof(lines))
			break;
		if (d->ops->counters)
			d->ops->counters(d, lines + k, sizeof(lines) - (size_t)k);
		used += append_prefixed(buf + used, len - used, role, lines);
	}
}

/* ---- snapshot (issue 16) ------------------------------------------------- */

int virtio_set_quiesce(struct vm *vm)
{
	struct virtio_set *s = vm ? vm->vio : NULL;
	for (unsigned i = 0; s && i < s->n; i++) {
		struct virtio_dev *d = s->dev[i];
		if (!d->ops->quiesce || d->ops->quiesce(d) == 0)
			continue;
		log_msg(LOG_ERROR, "virtio slot %u (%s) did not quiesce", i, d->name);
		/* All or none: the ones before (and this one) go again. */
		for (unsigned k = 0; k <= i; k++)
			if (s->dev[k]->ops->resume_io)
				s->dev[k]->ops->resume_io(s->dev[k]);
		return -1;
	}
	return 0;
}

void virtio_set_resume_io(struct vm *vm)
{
	struct virtio_set *s = vm ? vm->vio : NULL;
	for (unsigned i = 0; s && i < s->n; i++)
		if (s->dev[i]->ops->resume_io)
			s->dev[i]->ops->resume_io(s->dev[i]);
}

struct json_object *virtio_set_save(struct vm *vm, char *err, size_t errlen)
{
	struct virtio_set *s = vm ? vm->vio : NULL;
	struct json_object *list = json_object_new_array();
	if (!list) {
		snprintf(err, errlen, "out of memory saving the virtio devices");
		return NULL;
	}
	for (unsigned i = 0; s && i < s->n; i++) {
		char id[16];
		role_name(s, i, id, sizeof(id));
		struct json_object *e = virtio_dev_save(s->dev[i], err, errlen);
		if (!e) {
			json_object_put(list);
			return NULL;
		}
		if (sj_set_u64(e, "slot", i) || sj_set_u64(e, "type", s->dev[i]->device_id) ||
		    sj_set_str(e, "id", id) || json_object_array_add(list, e)) {
			json_object_put(e);
			json_object_put(list);
			snprintf(err, errlen, "out of memory saving the virtio devices");
			return NULL;
		}
	}
	return list;
}

int virtio_set_restore(struct vm *vm, struct json_object *list, char *err, size_t errlen)
{
	struct virtio_set *s = vm ? vm->vio : NULL;
	unsigned n = s ? s->n : 0;
	if (!list || !json_object_is_type(list, json_type_array)) {
		snprintf(err, errlen, "virtio: the saved devices are not a list");
		return -1;
	}
	size_t len = json_object_array_length(list);
	if (len != n) {
		snprintf(err, errlen, "virtio: the snapshot has %zu devices, this configuration makes %u",
			 len, n);
		return -1;
	}
	/* Identity first, for every slot, before any device changes. */
	for (unsigned i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(list, i);
		char where[32], id[16], msg[200];
		const char *sid;
		uint64_t slot, type;
		snprintf(where, sizeof(where), "virtio[%u]", i);
		role_name(s, i, id, sizeof(id));
		if (!json_object_is_type(e, json_type_object)) {
			snprintf(err, errlen, "virtio slot %u: not an object", i);
			return -1;
		}
		if (sj_get_u64(e, "slot", &slot, where, msg, sizeof(msg)) ||
		    sj_get_u64(e, "type", &type, where, msg, sizeof(msg)) ||
		    sj_get_str(e, "id", &sid, where, msg, sizeof(msg))) {
			snprintf(err, errlen, "virtio slot %u: %s", i, msg);
			return -1;
		}
		if (slot != i || type != s->dev[i]->device_id || strcmp(sid, id)) {
			snprintf(err, errlen, "virtio slot %u: the snapshot has %s (type %" PRIu64
				 ", slot %" PRIu64 "), this configuration has %s (type %u) there", i,
				 sid, type, slot, id, s->dev[i]->device_id);
			return -1;
		}
	}
	/* Each device checks all of its state before it changes; a later
	 * device's refusal leaves the earlier ones restored: the set was just
	 * created for this restore, and the caller destroys it. */
	for (unsigned i = 0; i < n; i++) {
		char msg[300];
		if (virtio_dev_restore(s->dev[i], json_object_array_get_idx(list, i), msg,
				       sizeof(msg)) < 0) {
			snprintf(err, errlen, "virtio slot %u: %s", i, msg);
			return -1;
		}
	}
	return 0;
}

void virtio_set_restore_irq(struct vm *vm)
{
	struct virtio_set *s = vm ? vm->vio : NULL;
	for (unsigned i = 0; s && i < s->n; i++)
		virtio_dev_restore_irq(s->dev[i]);
}
