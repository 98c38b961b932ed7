// SPDX-License-Identifier: GPL-2.0-only
/*
 * run.c - `vmm run`: options, checks, the main thread's poll loop, the
 * exit status.
 *
 * Every bad value, missing file or unsupported image is refused with one
 * error line and exit status 2 before any guest memory is allocated.  Then
 * the guest is booted (machine.c: VM, devices, vCPUs) and the main thread
 * serves, in one poll(2) loop: signals (SIGINT, SIGTERM, SIGHUP: a clean
 * stop; SIGUSR1/SIGUSR2 pause/resume; SIGQUIT register dump), the VM's
 * stop event, console input and, with --api-socket, the control API
 * (api.c), until the VM stops or the API says to exit.  On a guest reboot
 * the VMM exits 0, or with --on-reboot restart starts again from scratch by
 * re-executing itself (a fresh VM, the same command line); with the API it
 * boots the guest again in the same process, as Cloud Hypervisor does.
 *
 * With --api-socket and no --kernel there is no VM until vm.create and
 * vm.boot; the loop then serves signals and the API alone.
 *
 * --event-monitor path=P|fd=N (core/events.h) announces the VMM's start
 * and exit here (vmm starting, shutdown) and the VM's steps from machine.c.
 * When the reader of a FIFO monitor goes away the VMM stops as on SIGTERM:
 * that is how libvirt 11.3 destroys a domain whose VMM it daemonized.
 */
#include "api/api.h"
#include "api/api_config.h"
#include "machine/config.h"
#include "devices/console.h"
#include "devices/devices.h"
#include "core/events.h"
#include "core/log.h"
#include "core/profile.h"
#include "core/sandbox.h"
#include "machine/machine.h"
#include "cli/run.h"
#include "core/size.h"
#include "virtio/virtio_devices.h"
#include "core/vm.h"
#include "machine/virtio_set.h"
#include "snapshot/snapshot.h"
#include "migration/migration.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

char **vmm_argv;

/* What run_main's loop returns to ask for a re-exec (not an exit status). */
#define RUN_REEXEC (-1)

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmm run --kernel FILE [options]\n"
		"       vmm run --api-socket SOCKET [--kernel FILE] [options]\n"
		"       vmm run --restore DIR [--restore-mode copy|on-demand] [options]\n"
		"\n"
		"Boot a guest: a Linux bzImage, an ELF vmlinux with a PVH note, or a test image\n"
		"from images/ (the format is detected from the file).\n"
		"\n"
		"  --kernel FILE          the kernel or test image (required without --api-socket)\n"
		"  --initrd FILE          an initial ramdisk (Linux)\n"
		"  --cmdline STRING       the kernel command line (Linux)\n"
		"  --memory SIZE          guest RAM, with K, M, G suffixes (default 256M)\n"
		"  --vcpus N              virtual CPUs, 1-%d (default 1)\n"
		"  --backing B            thp | hugetlb-2M | hugetlb-1G | memfd | anon (default thp)\n"
		"  --prefault             populate all guest RAM before booting\n"
		"  --serial MODE          the 16550 UART (ttyS0): stdio | pty | file=PATH | off\n"
		"                         (default stdio)\n"
		"  --console MODE         a virtio-console (hvc0): stdio | pty | file=PATH | off\n"
		"                         (default off; on the UART's pty or terminal when they\n"
		"                         share one, input then goes to hvc0 once its driver runs)\n"
		"  --disk path=F[,readonly=on][,engine=threads|io_uring][,serial=S]\n"
		"                         a virtio-blk disk on a raw image (up to 3; vda, vdb...);\n"
		"                         I/O on a pool of 4 threads (default) or io_uring\n"
		"  --balloon size=S[,deflate_on_oom=on][,free_page_reporting=on]\n"
		"                         a virtio-balloon, S its initial target (0 = empty)\n"
		"  --net tap=NAME|fd=N[,mac=M][,mtu=N][,ip=A,mask=A]\n"
		"                         a virtio-net device on a tap (up to 2): the tap opened\n"
		"                         by name, or an open tap fd; ip/mask set the host side\n"
		"                         and bring the tap up; mac defaults to 52:54:00:xx:xx:xx\n"
		"  --hotplug-memory SIZE  a virtio-mem region of SIZE (multiple of 128M) above RAM,\n"
		"                         2M blocks, all unplugged at boot; resize it with\n"
		"                         vmm remote (or the API's vm.resize)\n"
		"  --on-reboot ACTION     exit | restart: what a guest reboot does (default exit;\n"
		"                         with --api-socket: restart, in the same process)\n"
		"  --strategy S           guestmm walker tracker: kick | count | perthread |\n"
		"                         membarrier | rcu (default %s)\n"
		"  --cpuid-filter MODE    auto | on | off: hide features the host's instruction\n"
		"                         emulator cannot run (auto: when the host emulates)\n"
		"  --test-devices MODE    auto | on | off: the test images' debug-exit port (the\n"
		"                         guest picks the VMM's exit status) and testdev (auto:\n"
		"                         only when the kernel is one of the project's test images)\n"
		"  --api-socket SOCKET    serve the control API on a unix socket: path=P (created,\n"
		"                         removed at exit), fd=N (inherited and already listening,\n"
		"                         as libvirt passes it) or a bare path\n"
		"  --event-monitor path=P|fd=N\n"
		"                         write the lifecycle events as Cloud Hypervisor does\n"
		"                         ({\"timestamp\",\"source\",\"event\",\"properties\"}\n"
		"                         objects) to a FIFO (opened once a reader comes; the\n"
		"                         VMM stops when that reader goes away), a file or fd N;\n"
		"                         never waits on a slow reader (events dropped, counted)\n"
		"  --restore DIR          bring back a snapshot (vmm remote snapshot, the API's\n"
		"                         vm.snapshot) and run it: the guest's configuration\n"
		"                         comes from DIR; --backing, --serial and --console may\n"
		"                         override the saved ones, options that shape the guest\n"
		"                         (--kernel, --memory, --disk...) are refused\n"
		"  --restore-mode M       copy: read all of memory into prefaulted RAM first\n"
		"                         (default); on-demand: run at once, memory served from\n"
		"                         DIR as the guest touches it (userfaultfd)\n"
		"  --log-level L          error | warn | info | debug (default info)\n"
		"  --profile-guest FILE   sample every vCPU's RIP every millisecond (VMM_PROFILE_US\n"
		"                         sets the period) and write \"t_us vcpu rip\" lines to\n"
		"                         FILE at exit; scripts/guest-profile names the functions\n"
		"  --seccomp MODE         on | log | off: per-thread seccomp allow-lists (vmm\n"
		"                         seccomp-info); on: a syscall outside its thread's list\n"
		"                         stops the VMM with a log line, status %d; log: it fails\n"
		"                         with EPERM, logged; off: no filter (default on)\n"
		"\n"
		"On a terminal, the console is raw: Ctrl-A x quits, Ctrl-A d sends Ctrl-Alt-Del,\n"
		"Ctrl-A Ctrl-A sends Ctrl-A.  SIGINT/SIGTERM/SIGHUP stop the VM cleanly;\n"
		"SIGUSR1 pauses it (every vCPU parked outside KVM_RUN), SIGUSR2 resumes it,\n"
		"SIGQUIT logs every vCPU's registers.\n"
		"\n"
		"Control API (--api-socket): the part of Cloud Hypervisor's HTTP API libvirt's ch\n"
		"driver uses, under /api/v1/: vmm.ping, vmm.shutdown, vm.create, vm.boot, vm.info,\n"
		"vm.pause, vm.resume, vm.shutdown, vm.reboot, vm.delete, vm.counters.  Without\n"
		"--kernel no VM exists until vm.create + vm.boot; with it the VM boots at once and\n"
		"the API controls it.  vm.create's body is the whole guest: what it omits takes\n"
		"the defaults (1 vCPU, 256M, no device, console Tty, serial Null), not these\n"
		"options; only --backing, --prefault, --strategy and --cpuid-filter apply to\n"
		"the VMs it creates.  The socket is created 0600.  vm.create's \"console\"\n"
		"and \"serial\" (Off, Null, Pty, Tty, File) share the one UART: if either is Pty\n"
		"the UART is on a pty, whose path vm.info reports as console.file and/or\n"
		"serial.file (the same path); otherwise it follows serial, or console when serial\n"
		"is Off/Null: Tty is stdio, File a file, Off/Null discard the output.  The VMM\n"
		"exits 0 after vm.shutdown or vmm.shutdown; a guest reboot boots it again; a\n"
		"guest that stops otherwise ends the VMM with the exit status below.\n"
		"\n"
		"Exit status: 0 the guest powered off or rebooted (or was stopped cleanly),\n"
		"1 the VMM failed, 2 bad usage or input, 3 the guest triple-faulted,\n"
		"4 KVM could not run the guest (emulation failure, failed entry);\n"
		"a test image's debug-exit code is the exit status.\n",
		CONFIG_MAX_VCPUS, gmm_strategy_name(GMM_STRATEGY_DEFAULT), SANDBOX_EXIT_STATUS);
}

struct run {
	struct machine m;
	struct api *api;         /* NULL without --api-socket */
	int sfd;                 /* signalfd */
	bool reboot_restarts;    /* a guest reboot boots the guest again */
	bool reboot_reexecs;     /* ... by re-executing the VMM (no API) */
};

static void on_signal(struct run *r, const struct signalfd_siginfo *si, int *status, bool *done)
{
	struct machine *m = &r->m;
	bool sigstop = si->ssi_signo != SIGUSR1 && si->ssi_signo != SIGUSR2 &&
		       si->ssi_signo != SIGQUIT;
	if (migration_busy()) {
		if (!sigstop)
			return;   /* the migration owns the VM's state */
		migration_cancel();
	}
	struct vm *vm = m->vm;
	if (si->ssi_signo == SIGUSR1) {
		if (machine_pause(m) == 0)
			log_msg(LOG_INFO, "paused (every vCPU parked outside KVM_RUN)");
	} else if (si->ssi_signo == SIGQUIT) {
		/* Registers can be read only outside KVM_RUN. */
		if (!vm)
			return;
		bool was_running = machine_pause(m) == 0;
		for (unsigned i = 0; i < vm->cfg.nr_vcpus; i++)
			vcpu_dump(&vm->vcpus[i]);
		if (was_running)
			machine_resume(m);
	} else if (si->ssi_signo == SIGUSR2) {
		if (machine_resume(m) == 0)
			log_msg(LOG_INFO, "resumed");
	} else {
		char why[64];
		snprintf(why, sizeof(why), "stopped by signal %u", si->ssi_signo);
		if (!vm)
			log_msg(LOG_INFO, "%s", why);
		*status = machine_stop(m, EXIT_GUEST_OFF, why, NULL);
		*done = true;
	}
}

/* The VM stopped by itself (guest power-off, reset, fault, debug exit,
 * Ctrl-A x): join it, then exit or boot it again. */
static void on_stop(struct run *r, int *status, bool *done)
{
	bool reboot;
	/* A migration thread still using the VM lets go of it first. */
	migration_cancel();
	*status = machine_stop(&r->m, EXIT_GUEST_OFF, "stopped", &reboot);
	if (!reboot || !r->reboot_restarts) {
		if (reboot)
			events_emit("vm", "shutdown");   /* a reset that ends the VMM */
		*done = true;
		return;
	}
	if (r->reboot_reexecs) {
		events_emit("vm", "shutdown");   /* the new image starts afresh */
		*status = RUN_REEXEC;
		*done = true;
		return;
	}
	log_msg(LOG_INFO, "guest reboot: booting it again");
	events_emit("vm", "rebooting");
	char err[512];
	int st = machine_restart(&r->m, err, sizeof(err));
	if (st && !r->api) {
		*status = st;
		*done = true;
	}
	/* With the API the VMM stays up: vm.info says Shutdown, vm.boot
	 * may try again. */
}

/* Input on the virtio-console's own terminal (not shared with the UART). */
static void on_vconsole(struct run *r)
{
	struct machine *m = &r->m;
	unsigned char buf[256];
	ssize_t n = read(m->vcon.in_fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		m->vcon_eof = true;
		return;
	}
	int action;
	size_t k = console_filter(&m->vcon, buf, (size_t)n, &action);
	if (k && virtio_set_console(m->vm))
		virtio_console_input(virtio_set_console(m->vm), buf, k);
	if (action == 'x' && m->vm)
		vm_stop(m->vm, EXIT_GUEST_OFF, "stopped from the console (Ctrl-A x)");
	else if (action == 'd')
		i8042_ctrl_alt_del();
}

static void on_console(struct run *r)
{
	struct machine *m = &r->m;
	unsigned char buf[256];
	ssize_t n = read(m->con.in_fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* EOF on stdin: no more input. */
		m->con_eof = true;
		return;
	}
	int action;
	size_t k = console_filter(&m->con, buf, (size_t)n, &action);
	if (k && machine_console_to_virtio(m))
		virtio_console_input(virtio_set_console(m->vm), buf, k);
	else if (k)
		serial_input(buf, k);
	if (action == 'x' && m->vm)
		vm_stop(m->vm, EXIT_GUEST_OFF, "stopped from the console (Ctrl-A x)");
	else if (action == 'd')
		i8042_ctrl_alt_del();
}

/* Serve signals, the VM's stop, the console and the API until the VMM
 * must exit; returns the exit status (or RUN_REEXEC). */
static int serve(struct run *r)
{
	struct machine *m = &r->m;
	struct pollfd p[8 + API_MAX_POLLFDS];
	int status = 0;
	bool done = false;
	while (!done) {
		unsigned n = 0, i_stop = 0, i_con = 0, i_vcon = 0, i_api = 0, n_api = 0, i_prof = 0;
		unsigned i_ev = 0;
		p[n++] = (struct pollfd){ .fd = r->sfd, .events = POLLIN };
		if (events_hangup_fd() >= 0) {
			i_ev = n;
			p[n++] = (struct pollfd){ .fd = events_hangup_fd(), .events = POLLIN };
		}
		unsigned i_mig = 0;
		if (migration_eventfd() >= 0) {
			i_mig = n;
			p[n++] = (struct pollfd){ .fd = migration_eventfd(), .events = POLLIN };
		}
		/* A migration being received owns the machine until it ends. */
		bool mine = !migration_owns_machine();
		if (mine && m->vm) {
			i_stop = n;
			p[n++] = (struct pollfd){ .fd = m->vm->stop_eventfd, .events = POLLIN };
		}
		if (mine && m->vm && profile_timerfd() >= 0) {
			i_prof = n;
			p[n++] = (struct pollfd){ .fd = profile_timerfd(), .events = POLLIN };
		}
		if (mine && m->vm && m->con_open && m->con.in_fd >= 0 && !m->con_eof) {
			i_con = n;
			p[n++] = (struct pollfd){ .fd = m->con.in_fd, .events = POLLIN };
		}
		if (mine && m->vm && m->vcon_open && m->vcon.in_fd >= 0 && !m->vcon_eof) {
			i_vcon = n;
			p[n++] = (struct pollfd){ .fd = m->vcon.in_fd, .events = POLLIN };
		}
		if (r->api) {
			i_api = n;
			n_api = api_pollfds(r->api, p + n, API_MAX_POLLFDS);
			n += n_api;
		}
		if (poll(p, n, r->api ? api_timeout_ms(r->api) : -1) < 0) {
			if (errno == EINTR)
				continue;
			log_msg(LOG_ERROR, "poll: %s", strerror(errno));
			machine_stop(m, EXIT_VMM_ERROR, "poll failed", NULL);
			return EXIT_VMM_ERROR;
		}
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(r->sfd, &si, sizeof(si)) == sizeof(si))
				on_signal(r, &si, &status, &done);
			if (done)
				break;
		}
		if (i_ev && (p[i_ev].revents & POLLIN)) {
			/* libvirt 11.3's destroy: it closed the FIFO. */
			const char *why = "stopped: the event monitor's reader went away";
			migration_cancel();
			if (!m->vm)
				log_msg(LOG_INFO, "%s", why);
			status = machine_stop(m, EXIT_GUEST_OFF, why, NULL);
			break;
		}
		if (i_mig && (p[i_mig].revents & POLLIN)) {
			enum migration_outcome o = migration_finish();
			if (o == MIGRATION_SENT) {
				/* The VM runs on the destination now. */
				machine_stop(m, EXIT_GUEST_OFF, "migrated", NULL);
				status = 0;
				break;
			}
			if (o != MIGRATION_NONE)
				continue;   /* the machine may have changed: poll afresh */
		}
		if (i_stop && p[i_stop].revents && m->vm) {
			on_stop(r, &status, &done);
			continue;   /* the VM changed: poll its new fds */
		}
		if (i_prof && (p[i_prof].revents & POLLIN) && m->vm)
			profile_tick(m->vm, vcpu_kick);   /* not joined: its stop is handled above */
		if (i_con && (p[i_con].revents & (POLLIN | POLLHUP | POLLERR)))
			on_console(r);
		if (i_vcon && m->vm && (p[i_vcon].revents & (POLLIN | POLLHUP | POLLERR)))
			on_vconsole(r);
		if (r->api && api_serve(r->api, p + i_api, n_api))
			done = true;    /* vmm.shutdown or vm.shutdown: answered */
	}
	return status;
}

/* --serial MODE as the serial port's chr_config. */
static int serial_option(const char *spec, struct chr_config *ch)
{
	struct console con;
	if (console_parse(spec, &con) < 0)
		return -1;
	free(ch->file);
	ch->file = NULL;
	switch (con.kind) {
	case CONSOLE_STDIO: ch->mode = CHR_TTY; break;
	case CONSOLE_PTY: ch->mode = CHR_PTY; break;
	case CONSOLE_OFF: ch->mode = CHR_OFF; break;
	case CONSOLE_FILE:
		ch->mode = CHR_FILE;
		if (!(ch->file = strdup(con.path)))
			return -1;
		break;
	}
	return 0;
}

static int set_string(char **dst, const char *s)
{
	free(*dst);
	*dst = strdup(s);
	return *dst ? 0 : -1;
}

/* --profile-guest FILE, the period from VMM_PROFILE_US (default 1000). */
static int profile_start(const char *path, char *err, size_t errlen)
{
	unsigned period = 1000;
	const char *env = getenv("VMM_PROFILE_US");
	if (env) {
		char *end;
		errno = 0;
		unsigned long v = strtoul(env, &end, 10);
		if (errno || end == env || *end || v > 1000000) {
			snprintf(err, errlen, "VMM_PROFILE_US='%s' is not a number of microseconds", env);
			return -1;
		}
		period = (unsigned)v;
	}
	return profile_open(path, period, err, errlen);
}

/* --restore: the snapshot and what the command line may change of it. */
struct restore_cli {
	const char *dir;
	enum restore_mode mode;
	bool backing, serial, console;   /* given on the command line */
	const char *guest_option;        /* the first option that shapes the guest */
};

/* Parse the options into cfg; 0, or the exit status (help: -1 and 0). */
static int parse_options(int argc, char **argv, struct machine_config *cfg, const char **api_spec,
			 int *on_reboot, enum sandbox_mode *seccomp, const char **profile,
			 const char **event_spec, struct restore_cli *rc)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "cmdline", required_argument, NULL, 'c' },
		{ "memory", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'v' },
		{ "backing", required_argument, NULL, 'b' },
		{ "prefault", no_argument, NULL, 'p' },
		{ "serial", required_argument, NULL, 's' },
		{ "console", required_argument, NULL, 'O' },
		{ "disk", required_argument, NULL, 'D' },
		{ "balloon", required_argument, NULL, 'B' },
		{ "net", required_argument, NULL, 'N' },
		{ "hotplug-memory", required_argument, NULL, 'H' },
		{ "on-reboot", required_argument, NULL, 'r' },
		{ "strategy", required_argument, NULL, 'S' },
		{ "cpuid-filter", required_argument, NULL, 'C' },
		{ "test-devices", required_argument, NULL, 'T' },
		{ "api-socket", required_argument, NULL, 'a' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "event-monitor", required_argument, NULL, 'E' },
		{ "seccomp", required_argument, NULL, 'Z' },
		{ "profile-guest", required_argument, NULL, 'P' },
		{ "restore", required_argument, NULL, 'R' },
		{ "restore-mode", required_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t n;
	int c;
	optind = 1;
	opterr = 0;
	int idx;
	while ((c = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
		if (strchr("kicmvDBNHp", c) && !rc->guest_option)
			rc->guest_option = c == 'p' ? "prefault" : opts[idx].name;
		rc->backing |= c == 'b';
		rc->serial |= c == 's';
		rc->console |= c == 'O';
		switch (c) {
		case 'R':
			rc->dir = optarg;
			break;
		case 'M':
			if (restore_mode_parse(optarg, &rc->mode) < 0)
				return die_usage("--restore-mode: '%s' is not copy or on-demand", optarg);
			break;
		case 'k':
		case 'i':
		case 'c':
			if (set_string(c == 'k' ? &cfg->kernel : c == 'i' ? &cfg->initrd : &cfg->cmdline,
				       optarg) < 0)
				return die_usage("out of memory");
			break;
		case 'm':
			if (parse_size(optarg, &cfg->vm.mem_size) < 0)
				return die_usage("--memory: '%s' is not a size (e.g. 256M, 4G)", optarg);
			break;
		case 'v':
			if (parse_uint(optarg, 1, CONFIG_MAX_VCPUS, &n) < 0)
				return die_usage("--vcpus: '%s' is not a number from 1 to %d", optarg,
						 CONFIG_MAX_VCPUS);
			cfg->vm.nr_vcpus = cfg->max_vcpus = (unsigned)n;
			break;
		case 'b':
			if (gmm_backing_parse(optarg, &cfg->vm.backing) < 0 ||
			    cfg->vm.backing == GMM_BACKING_FILE)
				return die_usage("--backing: '%s' is not thp, hugetlb-2M, hugetlb-1G, memfd or anon", optarg);
			break;
		case 'p': cfg->vm.prefault = true; break;
		case 's':
			if (serial_option(optarg, &cfg->serial) < 0)
				return die_usage("--serial: '%s' is not stdio, pty, file=PATH or off", optarg);
			break;
		case 'O':
			if (serial_option(optarg, &cfg->console) < 0)
				return die_usage("--console: '%s' is not stdio, pty, file=PATH or off", optarg);
			break;
		case 'D':
		case 'B': {
			char e[256];
			if ((c == 'D' ? config_parse_disk : config_parse_balloon)(cfg, optarg, e, sizeof(e)) < 0)
				return die_usage("%s", e);
			break;
		}
		case 'N': {
			char e[256];
			if (config_parse_net(cfg, optarg, e, sizeof(e)) < 0)
				return die_usage("%s", e);
			break;
		}
		case 'H':
			if (parse_size(optarg, &cfg->hotplug_size) < 0 || !cfg->hotplug_size)
				return die_usage("--hotplug-memory: '%s' is not a size (e.g. 1G)", optarg);
			break;
		case 'r':
			if (strcmp(optarg, "exit") && strcmp(optarg, "restart"))
				return die_usage("--on-reboot: '%s' is not exit or restart", optarg);
			*on_reboot = strcmp(optarg, "restart") == 0;
			break;
		case 'S':
			if (gmm_strategy_parse(optarg, &cfg->vm.strategy) < 0)
				return die_usage("--strategy: %s", gmm_last_error());
			if (!gmm_strategy_available(cfg->vm.strategy))
				return die_usage("--strategy %s: not available on this kernel", optarg);
			break;
		case 'C':
			if (!strcmp(optarg, "auto"))
				cfg->vm.cpuid_filter = -1;
			else if (!strcmp(optarg, "on"))
				cfg->vm.cpuid_filter = 1;
			else if (!strcmp(optarg, "off"))
				cfg->vm.cpuid_filter = 0;
			else
				return die_usage("--cpuid-filter: '%s' is not auto, on or off", optarg);
			break;
		case 'T':
			if (!strcmp(optarg, "auto"))
				cfg->test_devices = -1;
			else if (!strcmp(optarg, "on"))
				cfg->test_devices = 1;
			else if (!strcmp(optarg, "off"))
				cfg->test_devices = 0;
			else
				return die_usage("--test-devices: '%s' is not auto, on or off", optarg);
			break;
		case 'a':
			*api_spec = optarg;
			break;
		case 'E':
			*event_spec = optarg;
			break;
		case 'l': {
			enum log_level lvl;
			if (log_parse_level(optarg, &lvl) < 0)
				return die_usage("--log-level: '%s' is not error, warn, info or debug", optarg);
			log_set_level(lvl);
			break;
		}
		case 'Z':
			if (sandbox_parse_mode(optarg, seccomp) < 0)
				return die_usage("--seccomp: '%s' is not on, log or off", optarg);
			break;
		case 'P':
			*profile = optarg;
			break;
		case 'h':
			usage(stdout);
			return -1;
		default:
			if (optopt)
				return die_usage("run: option --%s%s", argv[optind - 1] + 2,
						 strchr(argv[optind - 1], '=') ? " takes no value" : " needs a value");
			return die_usage("run: unknown option '%s' (vmm run --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return die_usage("run: unexpected argument '%s'", argv[optind]);
	if (rc->dir && rc->guest_option)
		return die_usage("--restore: --%s cannot be given: the snapshot's configuration is the "
				 "guest's", rc->guest_option);
	if (!cfg->kernel && !*api_spec && !rc->dir)
		return die_usage("run: --kernel is required (or --api-socket, or --restore; vmm run --help)");
	return 0;
}

/* vmm run --restore DIR: the snapshot's configuration with the command
 * line's host choices over it, restored and resumed. */
static int restore(struct run *r, const struct restore_cli *rc, const struct machine_config *opts)
{
	char err[600], *text = NULL;
	struct machine_config cfg;
	machine_config_init(&cfg);
	int st = EXIT_USAGE;
	if (snapshot_read_config(rc->dir, &text, err, sizeof(err)) < 0) {
		log_msg(LOG_ERROR, "--restore: %s", err);
	} else if (api_parse_snapshot_config(text, strlen(text), &cfg, err, sizeof(err)) < 0) {
		log_msg(LOG_ERROR, "--restore %s: config.json: %s", rc->dir, err);
	} else {
		if (rc->backing)
			cfg.vm.backing = opts->vm.backing;
		if (rc->serial) {
			free(cfg.serial.file);
			cfg.serial = opts->serial;
			cfg.serial.file = opts->serial.file ? strdup(opts->serial.file) : NULL;
		}
		if (rc->console) {
			free(cfg.console.file);
			cfg.console = opts->console;
			cfg.console.file = opts->console.file ? strdup(opts->console.file) : NULL;
		}
		struct snapshot_restore_opts o = { .mode = rc->mode, .prefault = true, .resume = true };
		st = snapshot_restore(&r->m, rc->dir, &cfg, &o, err, sizeof(err));
		if (st)
			log_msg(LOG_ERROR, "--restore %s: %s", rc->dir, err);
	}
	free(text);
	machine_config_free(&cfg);
	return st;
}

/* Signals: handled by the main thread through a signalfd; every thread
 * created from here on inherits the blocked mask. */
static int signals_setup(void)
{
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SIGUSR2);
	sigaddset(&sigs, SIGQUIT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sfd < 0)
		log_msg(LOG_ERROR, "signalfd: %s", strerror(errno));
	return sfd;
}

int run_main(int argc, char **argv)
{
	struct machine_config cfg, defaults;
	machine_config_init(&cfg);
	machine_config_init(&defaults);
	const char *api_spec = NULL;
	int on_reboot = -1;
	enum sandbox_mode seccomp = SANDBOX_ON;
	struct run r = { .sfd = -1 };
	machine_init(&r.m);
	char err[512];

	const char *profile = NULL, *event_spec = NULL;
	struct restore_cli rc = { .mode = RESTORE_COPY };
	int status = parse_options(argc, argv, &cfg, &api_spec, &on_reboot, &seccomp, &profile,
				   &event_spec, &rc);
	if (status) {
		machine_config_free(&cfg);
		return status < 0 ? 0 : status;
	}
	/* What vm.create starts from: the host choices of these options
	 * (--backing, --prefault, --strategy, --cpuid-filter) and nothing of
	 * the guest they describe -- a vm.create body is the whole guest
	 * (api_parse_create), after vm.delete of the VM --kernel booted too. */
	if (machine_config_copy(&defaults, &cfg) < 0) {
		machine_config_free(&cfg);
		return die_usage("out of memory");
	}
	machine_config_reset_guest(&defaults);
	r.reboot_restarts = api_spec ? on_reboot != 0 : on_reboot == 1;
	r.reboot_reexecs = !api_spec;
	/* The filters are compiled while this is the only thread. */
	sandbox_set_fatal_hook(console_restore);
	if (sandbox_init(seccomp, r.reboot_restarts && r.reboot_reexecs ? SANDBOX_ALLOW_EXEC : 0) < 0) {
		machine_config_free(&cfg);
		machine_config_free(&defaults);
		return EXIT_VMM_ERROR;
	}

	/* Everything checkable is checked before guest memory exists. */
	if (cfg.kernel && machine_configure(&r.m, &cfg, true, err, sizeof(err)) < 0)
		status = die_usage("%s", err);
	if (!status && profile && profile_start(profile, err, sizeof(err)) < 0)
		status = die_usage("--profile-guest: %s", err);
	if (!status && api_spec && api_open(api_spec, &r.m, &defaults, &r.api, err, sizeof(err)) < 0)
		status = die_usage("%s", err);
	/* Its writer thread takes a filter of its own: started before main's. */
	if (!status && event_spec && events_open(event_spec, err, sizeof(err)) < 0)
		status = die_usage("%s", err);
	if (!status)
		events_emit("vmm", "starting");
	if (!status && (r.sfd = signals_setup()) < 0)
		status = EXIT_VMM_ERROR;
	/* Set-up done: from here on every VM is created under main's filter. */
	if (!status)
		sandbox_enter(SANDBOX_MAIN);
	if (!status && r.m.configured)
		status = machine_boot(&r.m, err, sizeof(err));
	if (!status && rc.dir)
		status = restore(&r, &rc, &cfg);
	if (!status)
		status = serve(&r);

	machine_delete(&r.m);
	events_emit("vmm", "shutdown");
	events_close(EVENTS_FLUSH_MS);
	profile_close();   /* every vCPU thread is joined */
	api_close(r.api);
	if (r.sfd >= 0)
		close(r.sfd);
	machine_config_free(&cfg);
	machine_config_free(&defaults);
	if (status == RUN_REEXEC) {
		log_msg(LOG_INFO, "--on-reboot restart: starting again");
		/* Signals stay blocked across exec: a SIGTERM arriving now stays
		 * pending and the new image's signalfd reads it, instead of it
		 * killing the process half-way through start-up. */
		sandbox_before_exec();
		execv("/proc/self/exe", vmm_argv);
		log_msg(LOG_ERROR, "restart: %s", strerror(errno));
		return EXIT_VMM_ERROR;
	}
	return status;
}
