/*
 * run.c - `vmm run`: options, checks, the VM's life, the exit status.
 *
 * Every bad value, missing file or unsupported image is refused with one
 * error line and exit status 2 before any guest memory is allocated.  Then
 * the VM is created, the devices registered, the vCPUs started, and the
 * main thread serves the console input and signals (SIGINT, SIGTERM,
 * SIGHUP: a clean stop) until the VM stops.  On a guest reboot the VMM
 * exits 0, or with --on-reboot restart starts again from scratch by
 * re-executing itself (a fresh VM, the same command line).
 */
#include "console.h"
#include "devices.h"
#include "log.h"
#include "run.h"
#include "size.h"
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_VCPUS 64

char **vmm_argv;
#define MIN_MEMORY (16ULL << 20)

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmm run --kernel FILE [options]\n"
		"\n"
		"Boot a guest: a Linux bzImage, an ELF vmlinux with a PVH note, or a test image\n"
		"from images/ (the format is detected from the file).\n"
		"\n"
		"  --kernel FILE          the kernel or test image (required)\n"
		"  --initrd FILE          an initial ramdisk (Linux)\n"
		"  --cmdline STRING       the kernel command line (Linux)\n"
		"  --memory SIZE          guest RAM, with K, M, G suffixes (default 256M)\n"
		"  --vcpus N              virtual CPUs, 1-%d (default 1)\n"
		"  --backing B            thp | hugetlb-2M | hugetlb-1G | memfd | anon (default thp)\n"
		"  --prefault             populate all guest RAM before booting\n"
		"  --serial MODE          stdio | pty | file=PATH | off (default stdio)\n"
		"  --on-reboot ACTION     exit | restart: what a guest reboot does (default exit)\n"
		"  --strategy S           guestmm walker tracker: kick | count | perthread |\n"
		"                         membarrier | rcu (default %s)\n"
		"  --cpuid-filter MODE    auto | on | off: hide features the host's instruction\n"
		"                         emulator cannot run (auto: when the host emulates)\n"
		"  --log-level L          error | warn | info | debug (default info)\n"
		"\n"
		"On a terminal, the console is raw: Ctrl-A x quits, Ctrl-A d sends Ctrl-Alt-Del,\n"
		"Ctrl-A Ctrl-A sends Ctrl-A.  SIGINT/SIGTERM/SIGHUP stop the VM cleanly;\n"
		"SIGUSR1 pauses it (every vCPU parked outside KVM_RUN), SIGUSR2 resumes it,\n"
		"SIGQUIT logs every vCPU's registers.\n"
		"\n"
		"Exit status: 0 the guest powered off or rebooted (or was stopped cleanly),\n"
		"1 the VMM failed, 2 bad usage or input, 3 the guest triple-faulted,\n"
		"4 KVM could not run the guest (emulation failure, failed entry);\n"
		"a test image's debug-exit code is the exit status.\n",
		MAX_VCPUS, gmm_strategy_name(GMM_STRATEGY_DEFAULT));
}

/* The kernel must exist, be readable and be an image we can boot. */
static int check_kernel(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return die_usage("--kernel %s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return die_usage("--kernel %s: not a regular file", path);
	}
	if (st.st_size == 0) {
		close(fd);
		return die_usage("--kernel %s: the file is empty", path);
	}
	size_t len = (size_t)st.st_size;
	uint8_t *buf = malloc(len);
	ssize_t got = buf ? pread(fd, buf, len, 0) : -1;
	close(fd);
	if (got != (ssize_t)len) {
		free(buf);
		return die_usage("--kernel %s: cannot read it", path);
	}
	char err[256] = "";
	enum image_kind k = image_detect(buf, len, err, sizeof(err));
	free(buf);
	if (k == IMAGE_UNKNOWN)
		return die_usage("--kernel %s: %s", path, err[0] ? err : "not a bootable image");
	return 0;
}

static int check_readable(const char *opt, const char *path)
{
	if (access(path, R_OK) < 0)
		return die_usage("%s %s: %s", opt, path, strerror(errno));
	return 0;
}

/* Serve the console and signals until the VM stops. */
static void main_loop(struct vm *vm, struct console *con, int sfd)
{
	struct pollfd p[3] = {
		{ .fd = vm->stop_eventfd, .events = POLLIN },
		{ .fd = sfd, .events = POLLIN },
		{ .fd = con->in_fd, .events = POLLIN },
	};
	for (;;) {
		int n = poll(p, con->in_fd >= 0 ? 3 : 2, -1);
		if (n < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo == SIGUSR1) {
				if (vm_pause(vm) == 0)
					log_msg(LOG_INFO, "paused (every vCPU parked outside KVM_RUN)");
			} else if (si.ssi_signo == SIGQUIT) {
				/* Registers can be read only outside KVM_RUN. */
				bool was_running = vm_pause(vm) == 0;
				for (unsigned i = 0; i < vm->cfg.nr_vcpus; i++)
					vcpu_dump(&vm->vcpus[i]);
				if (was_running)
					vm_resume(vm);
			} else if (si.ssi_signo == SIGUSR2) {
				if (vm_resume(vm) == 0)
					log_msg(LOG_INFO, "resumed");
			} else {
				vm_stop(vm, EXIT_GUEST_OFF, "stopped by signal %u", si.ssi_signo);
			}
		}
		if (con->in_fd >= 0 && (p[2].revents & (POLLIN | POLLHUP))) {
			unsigned char buf[256];
			ssize_t r = read(con->in_fd, buf, sizeof(buf));
			if (r <= 0) {
				/* EOF on stdin (or a closed pty): no more input. */
				p[2].fd = -1;
				continue;
			}
			int action;
			size_t k = console_filter(con, buf, (size_t)r, &action);
			if (k)
				serial_input(buf, k);
			if (action == 'x')
				vm_stop(vm, EXIT_GUEST_OFF, "stopped from the console (Ctrl-A x)");
			else if (action == 'd')
				i8042_ctrl_alt_del();
		}
	}
}

int run_main(int argc, char **argv)
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
		{ "on-reboot", required_argument, NULL, 'r' },
		{ "strategy", required_argument, NULL, 'S' },
		{ "cpuid-filter", required_argument, NULL, 'C' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct vm_config cfg = {
		.mem_size = 256ULL << 20, .nr_vcpus = 1, .backing = GMM_BACKING_THP,
		.strategy = GMM_STRATEGY_DEFAULT, .cpuid_filter = -1,
	};
	struct console con;
	console_parse("stdio", &con);
	bool restart = false;
	uint64_t n;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'k': cfg.boot.kernel = optarg; break;
		case 'i': cfg.boot.initrd = optarg; break;
		case 'c': cfg.boot.cmdline = optarg; break;
		case 'm':
			if (parse_size(optarg, &cfg.mem_size) < 0)
				return die_usage("--memory: '%s' is not a size (e.g. 256M, 4G)", optarg);
			break;
		case 'v':
			if (parse_uint(optarg, 1, MAX_VCPUS, &n) < 0)
				return die_usage("--vcpus: '%s' is not a number from 1 to %d", optarg, MAX_VCPUS);
			cfg.nr_vcpus = (unsigned)n;
			break;
		case 'b':
			if (gmm_backing_parse(optarg, &cfg.backing) < 0 || cfg.backing == GMM_BACKING_FILE)
				return die_usage("--backing: '%s' is not thp, hugetlb-2M, hugetlb-1G, memfd or anon", optarg);
			break;
		case 'p': cfg.prefault = true; break;
		case 's':
			if (console_parse(optarg, &con) < 0)
				return die_usage("--serial: '%s' is not stdio, pty, file=PATH or off", optarg);
			break;
		case 'r':
			if (strcmp(optarg, "exit") && strcmp(optarg, "restart"))
				return die_usage("--on-reboot: '%s' is not exit or restart", optarg);
			restart = strcmp(optarg, "restart") == 0;
			break;
		case 'S':
			if (gmm_strategy_parse(optarg, &cfg.strategy) < 0)
				return die_usage("--strategy: %s", gmm_last_error());
			if (!gmm_strategy_available(cfg.strategy))
				return die_usage("--strategy %s: not available on this kernel", optarg);
			break;
		case 'C':
			if (!strcmp(optarg, "auto"))
				cfg.cpuid_filter = -1;
			else if (!strcmp(optarg, "on"))
				cfg.cpuid_filter = 1;
			else if (!strcmp(optarg, "off"))
				cfg.cpuid_filter = 0;
			else
				return die_usage("--cpuid-filter: '%s' is not auto, on or off", optarg);
			break;
		case 'l': {
			enum log_level lvl;
			if (log_parse_level(optarg, &lvl) < 0)
				return die_usage("--log-level: '%s' is not error, warn, info or debug", optarg);
			log_set_level(lvl);
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			if (optopt)
				return die_usage("run: option --%s%s", argv[optind - 1] + 2,
						 strchr(argv[optind - 1], '=') ? " takes no value" : " needs a value");
			return die_usage("run: unknown option '%s' (vmm run --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return die_usage("run: unexpected argument '%s'", argv[optind]);
	if (!cfg.boot.kernel)
		return die_usage("run: --kernel is required (vmm run --help)");

	/* Everything checkable is checked before guest memory exists. */
	uint64_t pg = gmm_backing_page_size(cfg.backing);
	char b1[32];
	if (cfg.mem_size < MIN_MEMORY)
		return die_usage("--memory: %s is below the minimum of 16M",
				 format_size(cfg.mem_size, b1, sizeof(b1)));
	if (cfg.mem_size > (1ULL << 40))
		return die_usage("--memory: %s is more than 1T", format_size(cfg.mem_size, b1, sizeof(b1)));
	if (cfg.mem_size % pg)
		return die_usage("--memory: %s is not a multiple of the %s page size (%s)",
				 format_size(cfg.mem_size, b1, sizeof(b1)), gmm_backing_name(cfg.backing),
				 format_size(pg, (char[32]){ 0 }, 32));
	if (check_kernel(cfg.boot.kernel))
		return EXIT_USAGE;
	if (cfg.boot.initrd && check_readable("--initrd", cfg.boot.initrd))
		return EXIT_USAGE;
	if (con.kind == CONSOLE_FILE) {
		int fd = open(con.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd < 0)
			return die_usage("--serial file=%s: %s", con.path, strerror(errno));
		close(fd);
	}

	/* Signals: handled by the main thread through a signalfd; every
	 * thread created from here on inherits the blocked mask. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SIGUSR2);
	sigaddset(&sigs, SIGQUIT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	signal(SIGPIPE, SIG_IGN);

	struct vm *vm;
	int status = vm_create(&cfg, &vm);
	if (status)
		return status;
	if (console_open(&con) < 0) {
		vm_destroy(vm);
		return EXIT_VMM_ERROR;
	}
	if (serial_init(vm, con.out_fd) < 0 || i8042_init(vm) < 0 || debugexit_init(vm) < 0 ||
	    testdev_init(vm) < 0) {
		log_msg(LOG_ERROR, "cannot register the devices");
		console_close(&con);
		vm_destroy(vm);
		return EXIT_VMM_ERROR;
	}
	log_msg(LOG_INFO, "booting %u vCPU%s", cfg.nr_vcpus, cfg.nr_vcpus > 1 ? "s" : "");
	if (vm_start(vm) == 0)
		main_loop(vm, &con, sfd);
	status = vm_join(vm);
	console_close(&con);
	log_msg(status ? LOG_WARN : LOG_INFO, "VM stopped: %s (exit status %d)", vm->exit_reason,
		status);
	bool reboot = vm->reboot;
	vm_destroy(vm);
	close(sfd);
	if (reboot && restart) {
		log_msg(LOG_INFO, "--on-reboot restart: starting again");
		/* Signals stay blocked across exec: a SIGTERM arriving now stays
		 * pending and the new image's signalfd reads it, instead of it
		 * killing the process half-way through start-up. */
		execv("/proc/self/exe", vmm_argv);
		log_msg(LOG_ERROR, "restart: %s", strerror(errno));
		return EXIT_VMM_ERROR;
	}
	return status;
}
