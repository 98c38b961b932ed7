// SPDX-License-Identifier: GPL-2.0-only
/*
 * machine.c - one guest's life: configure, boot, pause, stop, reboot,
 * delete (the state machine is in machine.h).
 *
 * Booting is vm_create() (memory, irqchip, CPUID, vCPUs, kernel), then the
 * device set attached afresh to an empty bus (devices_attach: every device
 * reset, so a reboot's VM starts from power-on state), then vm_start().
 * Stopping is vm_stop() + vm_join() + vm_destroy() with the devices
 * detached, so nothing refers to a freed VM.  A reboot is the two in a row
 * with the same config and console.
 *
 * Each step is announced on the event monitor (core/events.h) as Cloud
 * Hypervisor announces it: vm booting/booted, pausing/paused,
 * resuming/resumed, rebooting/rebooted (a reboot is not a shutdown plus a
 * boot there), shutdown when a VM stops for good, deleted.
 *
 * Errors from vm_create() are logged by vm.c; the first one is caught
 * (log_error_since_mark) and handed back in err for the API's answer.
 *
 * Main thread only (machine.h).
 */
#include "machine/machine.h"
#include "devices/devices.h"
#include "core/events.h"
#include "core/log.h"
#include "virtio/virtio_devices.h"
#include "machine/virtio_set.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void machine_init(struct machine *m)
{
	memset(m, 0, sizeof(*m));
	machine_config_init(&m->cfg);
	m->con.out_fd = m->con.in_fd = m->con.hold_fd = -1;
	m->vcon.out_fd = m->vcon.in_fd = m->vcon.hold_fd = -1;
}

/* Open the virtio-console's own place when it does not share the UART's. */
static int open_vcon(struct machine *m)
{
	m->vcon_shared = config_console_shares_uart(&m->cfg);
	if (m->vcon_shared || m->cfg.console.mode == CHR_OFF || m->vcon_open)
		return 0;
	memset(&m->vcon, 0, sizeof(m->vcon));
	m->vcon.out_fd = m->vcon.in_fd = m->vcon.hold_fd = -1;
	switch (m->cfg.console.mode) {
	case CHR_TTY: m->vcon.kind = CONSOLE_STDIO; break;
	case CHR_FILE:
		m->vcon.kind = CONSOLE_FILE;
		snprintf(m->vcon.path, sizeof(m->vcon.path), "%s", m->cfg.console.file);
		break;
	default: m->vcon.kind = CONSOLE_OFF; break;
	}
	if (console_open(&m->vcon) < 0)
		return -1;
	m->vcon_open = true;
	m->vcon_eof = false;
	return 0;
}

bool machine_console_to_virtio(struct machine *m)
{
	struct virtio_dev *d = m->vm ? virtio_set_console(m->vm) : NULL;
	return d && m->vcon_shared && virtio_console_active(d);
}

int machine_configure(struct machine *m, struct machine_config *cfg, bool cli, char *err,
		      size_t errlen)
{
	if (m->configured) {
		snprintf(err, errlen, "a VM is already created (vm.delete it first)");
		return -1;
	}
	if (config_check(cfg, cli, err, errlen) < 0)
		return -1;
	machine_config_free(&m->cfg);
	m->cfg = *cfg;
	machine_config_init(cfg);   /* the strings are ours now */
	m->configured = true;
	m->cli = cli;
	return 0;
}

int machine_add_net(struct machine *m, struct net_config *n, char *err, size_t errlen)
{
	struct machine_config one;
	machine_config_init(&one);
	one.nets[0] = *n;           /* freed with `one` on every failure */
	one.nnets = 1;
	memset(n, 0, sizeof(*n));
	n->fd = -1;
	enum machine_state st = machine_state(m);
	int ret = -1;
	if (st == MACHINE_NONE) {
		snprintf(err, errlen, "no VM: vm.create first");
	} else if (st != MACHINE_CREATED && st != MACHINE_SHUTDOWN) {
		snprintf(err, errlen, "the VM is %s: virtio-mmio devices cannot be hot-plugged; "
			 "add the net device between vm.create and vm.boot",
			 machine_state_name(st));
		ret = -EBUSY;
	} else if (m->cfg.nnets >= CONFIG_MAX_NETS) {
		snprintf(err, errlen, "the VM has %u net devices already, at most %d", m->cfg.nnets,
			 CONFIG_MAX_NETS);
	} else {
		struct net_config *nc = &one.nets[0];
		char id[16];
		unsigned i;
		snprintf(id, sizeof(id), "_net%u", m->cfg.nnets);
		for (i = 0; i < m->cfg.nnets; i++) {
			char other[16];
			snprintf(other, sizeof(other), "_net%u", i);
			if (!strcmp(nc->id ? nc->id : id, m->cfg.nets[i].id ? m->cfg.nets[i].id : other))
				break;
		}
		if (i < m->cfg.nnets) {
			snprintf(err, errlen, "id %s: a net device with that id exists", nc->id ? nc->id : id);
		} else {
			m->cfg.nets[m->cfg.nnets++] = *nc;
			if (config_check(&m->cfg, m->cli, err, errlen) < 0) {
				m->cfg.nnets--;    /* back to `one`, freed below */
			} else {
				one.nnets = 0;     /* moved */
				ret = (int)m->cfg.nnets - 1;
			}
		}
	}
	machine_config_free(&one);
	return ret;
}

static int boot(struct machine *m, char *err, size_t errlen, bool announce,
		const struct machine_restore_hooks *rh);
static int stop(struct machine *m, int status, const char *why, bool *reboot, bool announce);

int machine_boot(struct machine *m, char *err, size_t errlen)
{
	return boot(m, err, errlen, true, NULL);
}

int machine_restore(struct machine *m, struct machine_config *cfg,
		    const struct machine_restore_hooks *hooks, char *err, size_t errlen)
{
	if (machine_state(m) != MACHINE_NONE) {
		snprintf(err, errlen, "a VM already exists (state %s): vm.delete it first",
			 machine_state_name(machine_state(m)));
		return EXIT_USAGE;
	}
	if (machine_configure(m, cfg, false, err, errlen) < 0)
		return EXIT_USAGE;
	events_emit("vm", "restoring");
	int st = boot(m, err, errlen, false, hooks);
	if (st) {
		machine_delete(m);   /* back to NONE, quietly: it never existed */
		return st;
	}
	events_emit("vm", "restored");
	if (hooks->resume && machine_resume(m) < 0) {
		snprintf(err, errlen, "restored, but the VM cannot be resumed");
		return EXIT_VMM_ERROR;
	}
	return 0;
}

static int boot(struct machine *m, char *err, size_t errlen, bool announce,
		const struct machine_restore_hooks *rh)
{
	enum machine_state st = machine_state(m);
	if (st != MACHINE_CREATED && st != MACHINE_SHUTDOWN) {
		snprintf(err, errlen, "%s", st == MACHINE_NONE ? "no VM: vm.create first" :
			 "the VM is already booted");
		return EXIT_USAGE;
	}
	if (announce)
		events_emit("vm", "booting");
	/* The files may have changed since vm.create. */
	if (config_check(&m->cfg, m->cli, err, errlen) < 0) {
		log_msg(LOG_ERROR, "%s", err);
		return EXIT_USAGE;
	}
	log_error_mark();
	if (!m->con_open) {
		config_uart_console(&m->cfg, &m->con);
		if (console_open(&m->con) < 0) {
			snprintf(err, errlen, "%s", log_error_since_mark() ?: "cannot open the console");
			return EXIT_VMM_ERROR;
		}
		m->con_open = true;
		m->con_eof = false;
	}
	if (open_vcon(m) < 0) {
		snprintf(err, errlen, "%s", log_error_since_mark() ?: "cannot open the console");
		return EXIT_VMM_ERROR;
	}
	/* The user's command line, then the virtio devices. */
	free(m->boot_cmdline);
	size_t cl = (m->cfg.cmdline ? strlen(m->cfg.cmdline) : 0) + 512;
	m->boot_cmdline = malloc(cl);
	if (!m->boot_cmdline) {
		snprintf(err, errlen, "out of memory");
		return EXIT_VMM_ERROR;
	}
	snprintf(m->boot_cmdline, cl, "%s", m->cfg.cmdline ? m->cfg.cmdline : "");
	if (virtio_set_cmdline(&m->cfg, m->boot_cmdline, cl) < 0) {
		snprintf(err, errlen, "too many virtio devices for the command line");
		return EXIT_USAGE;
	}
	struct vm_config vc = m->cfg.vm;
	vc.restore = rh != NULL;
	vc.boot.kernel = m->cfg.kernel;
	vc.boot.initrd = m->cfg.initrd;
	vc.boot.cmdline = m->boot_cmdline;
	int status = vm_create(&vc, &m->vm);
	if (status) {
		m->vm = NULL;
		snprintf(err, errlen, "%s", log_error_since_mark() ?: "cannot create the VM");
		return status;
	}
	bool test_devices = m->cfg.test_devices < 0 ? m->vm->plan.kind == IMAGE_TESTIMG
						     : m->cfg.test_devices > 0;
	m->test_devices_on = test_devices;
	if (devices_attach(m->vm, m->con.out_fd, test_devices) < 0) {
		snprintf(err, errlen, "cannot register the devices");
		log_msg(LOG_ERROR, "%s", err);
		vm_destroy(m->vm);
		m->vm = NULL;
		return EXIT_VMM_ERROR;
	}
	int vcon_fd = m->vcon_shared ? m->con.out_fd : m->vcon.out_fd;
	if (virtio_set_create(m->vm, &m->cfg, vcon_fd, err, errlen) < 0 ||
	    (rh && rh->apply(rh->arg, m->vm, err, errlen) < 0) || virtio_set_start(m->vm) < 0) {
		if (!err[0])
			snprintf(err, errlen, "cannot start the virtio devices");
		virtio_set_destroy(m->vm);
		devices_detach();
		vm_destroy(m->vm);
		m->vm = NULL;
		return EXIT_VMM_ERROR;
	}
	log_msg(LOG_INFO, "%s %u vCPU%s", rh ? "restored: starting" : "booting", vc.nr_vcpus,
		vc.nr_vcpus > 1 ? "s" : "");
	if (vm_start(m->vm) < 0) {
		snprintf(err, errlen, "%s", log_error_since_mark() ?: "cannot start the vCPUs");
		stop(m, EXIT_VMM_ERROR, "cannot start the vCPUs", NULL, false);
		return EXIT_VMM_ERROR;
	}
	m->booted = true;
	if (announce)
		events_emit("vm", "booted");
	return 0;
}

int machine_stop(struct machine *m, int status, const char *why, bool *reboot)
{
	return stop(m, status, why, reboot, true);
}

static int stop(struct machine *m, int status, const char *why, bool *reboot, bool announce)
{
	if (reboot)
		*reboot = false;
	if (!m->vm)
		return 0;
	vm_stop(m->vm, status, "%s", why);
	status = vm_join(m->vm);
	log_msg(status ? LOG_WARN : LOG_INFO, "VM stopped: %s (exit status %d)", m->vm->exit_reason,
		status);
	if (reboot)
		*reboot = m->vm->reboot;
	virtio_set_stop(m->vm);
	devices_detach();
	virtio_set_destroy(m->vm);
	vm_destroy(m->vm);
	m->vm = NULL;
	/* A guest reset handed to a caller that asked is the caller's to
	 * announce (machine_restart, or a shutdown when it exits). */
	if (announce && !(reboot && *reboot))
		events_emit("vm", "shutdown");
	return status;
}

int machine_reboot(struct machine *m, char *err, size_t errlen)
{
	events_emit("vm", "rebooting");
	stop(m, EXIT_GUEST_OFF, "rebooting", NULL, false);
	return machine_restart(m, err, errlen);
}

int machine_restart(struct machine *m, char *err, size_t errlen)
{
	int st = boot(m, err, errlen, false, NULL);
	events_emit("vm", st ? "shutdown" : "rebooted");
	return st;
}

int machine_pause(struct machine *m)
{
	if (machine_state(m) != MACHINE_RUNNING)
		return -EINVAL;
	events_emit("vm", "pausing");
	if (vm_pause(m->vm) < 0)
		return -EINVAL;
	/* A stop that raced with the pause leaves the VM stopping, not paused. */
	if (machine_state(m) != MACHINE_PAUSED)
		return -EINVAL;
	events_emit("vm", "paused");
	return 0;
}

int machine_resume(struct machine *m)
{
	if (machine_state(m) != MACHINE_PAUSED)
		return -EINVAL;
	events_emit("vm", "resuming");
	int r = vm_resume(m->vm);
	if (r == 0)
		events_emit("vm", "resumed");
	return r;
}

void machine_delete(struct machine *m)
{
	bool configured = m->configured;
	machine_stop(m, EXIT_GUEST_OFF, "deleted", NULL);
	if (m->con_open)
		console_close(&m->con);
	m->con_open = false;
	if (m->vcon_open)
		console_close(&m->vcon);
	m->vcon_open = false;
	free(m->boot_cmdline);
	m->boot_cmdline = NULL;
	machine_config_free(&m->cfg);
	machine_init(m);
	if (configured)
		events_emit("vm", "deleted");
}

enum machine_state machine_state(struct machine *m)
{
	if (!m->configured)
		return MACHINE_NONE;
	if (!m->vm)
		return m->booted ? MACHINE_SHUTDOWN : MACHINE_CREATED;
	pthread_mutex_lock(&m->vm->lock);
	enum machine_state st = m->vm->stop_requested ? MACHINE_SHUTDOWN :
				m->vm->state == VM_PAUSED ? MACHINE_PAUSED : MACHINE_RUNNING;
	pthread_mutex_unlock(&m->vm->lock);
	return st;
}

const char *machine_state_name(enum machine_state s)
{
	switch (s) {
	case MACHINE_CREATED: return "Created";
	case MACHINE_RUNNING: return "Running";
	case MACHINE_PAUSED: return "Paused";
	case MACHINE_SHUTDOWN: return "Shutdown";
	case MACHINE_NONE: break;
	}
	return NULL;
}

const char *machine_pty(const struct machine *m)
{
	return m->con_open && m->con.kind == CONSOLE_PTY ? m->con.path : NULL;
}
