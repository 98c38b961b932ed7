// SPDX-License-Identifier: GPL-2.0-only
/*
 * main.c - the `vmm` command: global options and subcommands.
 *
 * Run as `cloud-hypervisor` (argv[0]'s basename: a symlink or copy of that
 * name, what libvirt's ch driver looks up on its PATH) it takes Cloud
 * Hypervisor's command line instead: `--version` prints
 * "cloud-hypervisor v30.0.0 (vmm X)" (libvirt reads the version there), and
 * `cloud-hypervisor --api-socket fd=N` is `vmm run --api-socket fd=N`;
 * --kernel, --cmdline, --initramfs, --memory size=, --cpus boot= and
 * --serial map onto `vmm run` options, as do --seccomp true|false|log
 * (on, off, log) and --event-monitor path=P|fd=N (libvirt 11.3 passes a FIFO); anything else is ignored with a warning.
 *
 * Exit status: 0 success, 1 runtime failure, 2 bad usage (a bad value,
 * a missing file, an unknown subcommand).
 */
#include "api/api_config.h"
#include "bench/bench_munmap.h"
#include "cli/demo.h"
#include "core/log.h"
#include "core/sandbox.h"
#include "api/remote.h"
#include "cli/run.h"

#include <guestmm/guestmm.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef VMM_VERSION
#define VMM_VERSION "0.0.0"
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmm [--log-level error|warn|info|debug] <command> [options]\n"
		"\n"
		"commands:\n"
		"  run        boot a guest (vmm run --help)\n"
		"  demo       guestmm without KVM: back RAM, run walkers, hot-unplug half\n"
		"             (vmm demo --help)\n"
		"  bench      benchmarks: `vmm bench munmap` (vmm bench munmap --help)\n"
		"  remote     one control-API request to a running vmm: info, counters,\n"
		"             resize --memory/--balloon, pause... (vmm remote --help)\n"
		"  seccomp-info [--verbose]\n"
		"             the seccomp allow-list of each thread class (vmm run --seccomp)\n"
		"\n"
		"  --version  print the version\n"
		"  --help     this text\n");
}

/* The value of "key=value" in a Cloud Hypervisor option list
 * ("size=1G,shared=on"), or NULL. */
static const char *ch_param(const char *list, const char *key, char *buf, size_t len)
{
	size_t k = strlen(key);
	for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
		if (strncmp(p, key, k) == 0 && p[k] == '=') {
			size_t n = strcspn(p + k + 1, ",");
			if (n >= len)
				return NULL;
			memcpy(buf, p + k + 1, n);
			buf[n] = 0;
			return buf;
		}
	}
	return NULL;
}

/* `cloud-hypervisor ARGS`: Cloud Hypervisor's options as `vmm run`'s. */
static int ch_main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-V")) {
			printf("cloud-hypervisor v%s (vmm %s)\n", API_CH_VERSION, VMM_VERSION);
			return 0;
		}
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("cloud-hypervisor v%s (vmm %s): vmm run with Cloud Hypervisor's command line\n"
			       "usage: cloud-hypervisor --api-socket fd=N|path=P|P [--kernel F] [--cmdline S]\n"
			       "       [--initramfs F] [--memory size=S] [--cpus boot=N] [--serial pty|tty|off|null|file=P]\n"
			       "       [--seccomp true|false|log] [--event-monitor path=P|fd=N]\n"
			       "Other options are ignored with a warning; `vmm run --help` has the rest.\n",
			       API_CH_VERSION, VMM_VERSION);
			return 0;
		}
	}
	/* "run" + two words per option at most + NULL. */
	char **av = calloc((size_t)argc * 2 + 2, sizeof(*av));
	char **owned = calloc((size_t)argc + 1, sizeof(*owned));
	int n = 0, nowned = 0, status = 0;
	if (!av || !owned) {
		free(av);
		free(owned);
		return die_usage("out of memory");
	}
	av[n++] = "run";
	for (int i = 1; i < argc && !status; i++) {
		const char *opt = argv[i], *val = NULL;
		char name[64], buf[64];
		const char *eq = strchr(opt, '=');
		bool from_next = false;
		if (strncmp(opt, "--", 2) == 0 && eq && (size_t)(eq - opt) < sizeof(name)) {
			memcpy(name, opt, (size_t)(eq - opt));   /* --opt=value */
			name[eq - opt] = 0;
			opt = name;
			val = eq + 1;
		} else if (i + 1 < argc && argv[i + 1][0] != '-') {
			val = argv[i + 1];
			from_next = true;
		}
		const char *map = NULL, *mval = val;
		if (!strcmp(opt, "--api-socket")) {
			map = "--api-socket";
		} else if (!strcmp(opt, "--event-monitor")) {
			map = "--event-monitor";
		} else if (!strcmp(opt, "--kernel")) {
			map = "--kernel";
		} else if (!strcmp(opt, "--cmdline")) {
			map = "--cmdline";
		} else if (!strcmp(opt, "--initramfs")) {
			map = "--initrd";
		} else if (!strcmp(opt, "--memory") && ch_param(val, "size", buf, sizeof(buf))) {
			map = "--memory";
			mval = buf;
		} else if (!strcmp(opt, "--cpus") && ch_param(val, "boot", buf, sizeof(buf))) {
			map = "--vcpus";
			mval = buf;
		} else if (!strcmp(opt, "--serial")) {
			map = "--serial";
			mval = !val ? NULL : !strcmp(val, "tty") ? "stdio" :
			       !strcmp(val, "off") || !strcmp(val, "null") ? "off" :
			       !strcmp(val, "pty") ? "pty" : !strncmp(val, "file=", 5) ? val : NULL;
		} else if (!strcmp(opt, "--seccomp")) {
			enum sandbox_mode sm;
			map = "--seccomp";
			mval = val && sandbox_parse_mode(val, &sm) == 0 ? sandbox_mode_name(sm) : NULL;
		}
		if (map && !mval) {
			status = die_usage("%s: '%s' is not a value vmm understands (cloud-hypervisor --help)",
					   opt, val ? val : "");
		} else if (!map) {
			log_msg(LOG_WARN, "cloud-hypervisor option %s%s%s is not supported: ignored", opt,
				val ? " " : "", val ? val : "");
		} else if (!(owned[nowned] = strdup(mval))) {
			status = die_usage("out of memory");
		} else {
			av[n++] = (char *)map;
			av[n++] = owned[nowned++];
		}
		if (from_next)
			i++;
	}
	if (!status)
		status = run_main(n, av);
	for (int i = 0; i < nowned; i++)
		free(owned[i]);
	free(owned);
	free(av);
	return status;
}

int main(int argc, char **argv)
{
	int i = 1;
	bool level_given = false;
	vmm_argv = argv;
	const char *base = argc > 0 && argv[0] ? strrchr(argv[0], '/') : NULL;
	base = base ? base + 1 : argc > 0 && argv[0] ? argv[0] : "";
	if (strcmp(base, "cloud-hypervisor") == 0)
		return ch_main(argc, argv);
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--version") == 0) {
			printf("vmm %s (guestmm, default strategy %s)\n", VMM_VERSION,
			       gmm_strategy_name(GMM_STRATEGY_DEFAULT));
			return 0;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--log-level") == 0 && i + 1 < argc) {
			enum log_level lvl;
			if (log_parse_level(argv[++i], &lvl) < 0)
				return die_usage("--log-level: '%s' is not error, warn, info or debug", argv[i]);
			log_set_level(lvl);
			level_given = true;
		} else {
			usage(stderr);
			return die_usage("unknown option '%s'", argv[i]);
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[i], "run") == 0)
		return run_main(argc - i, argv + i);
	if (strcmp(argv[i], "remote") == 0)
		return remote_main(argc - i, argv + i);
	if (strcmp(argv[i], "seccomp-info") == 0) {
		bool verbose = i + 1 < argc && !strcmp(argv[i + 1], "--verbose");
		if (i + 1 + verbose < argc)
			return die_usage("seccomp-info: unexpected argument '%s'", argv[i + 1 + verbose]);
		return sandbox_print_info(stdout, 0, verbose) < 0 ? 1 : 0;
	}
	if (strcmp(argv[i], "demo") == 0)
		return demo_main(argc - i, argv + i);
	if (strcmp(argv[i], "bench") == 0) {
		/* Dozens of VMs come and go: their creation reports are noise. */
		if (!level_given)
			log_set_level(LOG_WARN);
		return bench_main(argc - i, argv + i);
	}
	usage(stderr);
	return die_usage("unknown command '%s'", argv[i]);
}
