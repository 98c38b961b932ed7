/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vmm/machine/ - one guest assembled: its configuration (config.c), the
 * VM built from it with its legacy devices and virtio set (virtio_set.c),
 * and its lifecycle (machine.c).  May call virtio/, devices/, core/, boot/;
 * called by api/ and cli/, never calls them.
 */
/*
 * machine.h - one guest's life as `vmm run` and the control API drive it:
 * a configuration, the console its UART writes to, and while it is booted
 * the KVM VM (vm.h) with its devices on the bus.
 *
 *   NONE --configure--> CREATED --boot--> RUNNING <--pause/resume--> PAUSED
 *                          ^                 |  (stop: guest or API)
 *                          |                 v
 *                          +---boot------ SHUTDOWN      reboot = stop + boot
 *   delete: any state --> NONE
 *
 * The console is opened at the first boot and kept across reboots, so a
 * pty's path (what vm.info reports, what `virsh console` holds open) stays
 * the same; it is closed by machine_delete().
 *
 * Threads: every function here is called by the main thread only (the
 * poll loop of run.c: signals, console, API).  vCPU threads touch the VM
 * only through vm_stop() and the devices; the stop they cause reaches the
 * main thread through vm->stop_eventfd, which then calls machine_stop().
 */
#ifndef VMM_MACHINE_H
#define VMM_MACHINE_H

#include "machine/config.h"
#include "devices/console.h"
#include "core/vm.h"

enum machine_state { MACHINE_NONE, MACHINE_CREATED, MACHINE_RUNNING, MACHINE_PAUSED,
		     MACHINE_SHUTDOWN };

struct machine {
	bool configured;
	bool cli;                /* configured from `vmm run` options (error wording) */
	bool booted;             /* has been RUNNING: CREATED vs SHUTDOWN */
	struct machine_config cfg;
	struct console con;
	bool con_open;
	bool con_eof;            /* its input reached end of file (stdin) */
	struct vm *vm;           /* while booted (RUNNING, PAUSED, or stopping) */
	/* The virtio-console (when cfg.console is not Off) writes to con when
	 * it shares the UART's place (vcon_shared: a Pty console, a serial
	 * port that discards, or both on the terminal or the same file),
	 * otherwise to vcon, opened like con. */
	bool vcon_shared;
	struct console vcon;
	bool vcon_open;
	bool vcon_eof;
	char *boot_cmdline;      /* the command line with the virtio devices */
	bool test_devices_on;    /* the booted VM has the test images' devices */
};

void machine_init(struct machine *m);

/* Take cfg (moved: cfg is left empty) after config_check(); NONE -> CREATED.
 * -1 with err if the machine is already configured or the check fails. */
int machine_configure(struct machine *m, struct machine_config *cfg, bool cli, char *err,
		      size_t errlen);

/* vm.add-net: append a virtio-net device to a CREATED or SHUTDOWN
 * machine's config (moved: *n is left empty, its fd ours, also on
 * failure, when it is closed); it is made at the next boot.  virtio-mmio
 * has no hot-plug: a booted VM refuses (-EBUSY).  The config is checked
 * again with the device (its id unique, the device count); -1 with err
 * otherwise.  Returns the device's index in cfg.nets. */
int machine_add_net(struct machine *m, struct net_config *n, char *err, size_t errlen);
/* CREATED or SHUTDOWN -> RUNNING: check the files again, open the console
 * (first boot), create the VM, register the devices, start the vCPUs.
 * 0, or an exit status (EXIT_USAGE for a bad kernel or config,
 * EXIT_VMM_ERROR otherwise) with the reason in err, and logged (but for a
 * boot in the wrong state); nothing is left running then. */
int machine_boot(struct machine *m, char *err, size_t errlen);

/* Restore (issue 16): configure a machine in state NONE from cfg (moved,
 * as machine_configure) and boot it as a restore: the VM is created in
 * restore mode (no kernel loaded, no boot registers; RAM prefaulted only
 * if cfg says so), the legacy and virtio devices are made from the config,
 * then hooks->apply puts the saved state into them (devices, memory,
 * vCPUs) before any of them runs; the vCPUs start parked: -> PAUSED, or
 * RUNNING with hooks->resume.  Events: vm restoring, restored (and resumed).
 * On failure nothing is left running and the machine is back to NONE;
 * returns 0 or an exit status with err as machine_boot. */
struct machine_restore_hooks {
	int (*apply)(void *arg, struct vm *vm, char *err, size_t errlen);
	void *arg;
	bool resume;
};
int machine_restore(struct machine *m, struct machine_config *cfg,
		    const struct machine_restore_hooks *hooks, char *err, size_t errlen);

/* Stop the VM (first reason wins, as vm_stop), join its vCPUs and destroy
 * it: -> SHUTDOWN.  Returns the VM's exit status; *reboot (may be NULL)
 * says whether the stop was a guest reset.  Without a VM: returns 0. */
int machine_stop(struct machine *m, int status, const char *why, bool *reboot);

/* Stop the VM, boot it again with the same config (events: rebooting,
 * rebooted). */
int machine_reboot(struct machine *m, char *err, size_t errlen);

/* After machine_stop reported a guest reset (*reboot): boot the guest
 * again, announced as a reboot (rebooted, or shutdown if the boot fails).
 * machine_stop announces "shutdown" for every other stop, and for a reset
 * too when its caller passed reboot == NULL; a caller that got *reboot and
 * does not restart announces the shutdown itself (events_emit). */
int machine_restart(struct machine *m, char *err, size_t errlen);

/* RUNNING -> PAUSED (every vCPU parked outside KVM_RUN) and back.
 * -EINVAL in another state. */
int machine_pause(struct machine *m);
int machine_resume(struct machine *m);

/* Stop and destroy the VM, close the console, forget the config: -> NONE. */
void machine_delete(struct machine *m);

enum machine_state machine_state(struct machine *m);
/* "Created", "Running", "Paused", "Shutdown" (Cloud Hypervisor's names);
 * NULL for NONE. */
const char *machine_state_name(enum machine_state s);

/* Where the virtio-console's input goes: true if bytes typed on con go
 * to the virtio-console (it shares con and its driver is live) rather
 * than the UART. */
bool machine_console_to_virtio(struct machine *m);

/* The UART's pty path, or NULL. */
const char *machine_pty(const struct machine *m);

#endif
