/*
 * main.c - the `vmm` command: global options and subcommands.
 *
 * Exit status: 0 success, 1 runtime failure, 2 bad usage (a bad value,
 * a missing file, an unknown subcommand).
 */
#include "bench.h"
#include "demo.h"
#include "log.h"
#include "run.h"

#include <guestmm/guestmm.h>

#include <stdbool.h>
#include <stdio.h>
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
		"\n"
		"  --version  print the version\n"
		"  --help     this text\n");
}

int main(int argc, char **argv)
{
	int i = 1;
	bool level_given = false;
	vmm_argv = argv;
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
