/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vmm/cli/ - the program's front ends: main.c (`vmm run|demo|bench|
 * remote`, --version), run.c (`vmm run`: a machine, its control API and its
 * console served until the guest stops), demo.c (`vmm demo`, guestmm
 * without KVM).  The top of the graph: may call every subsystem, nothing
 * calls it.
 *
 * run.h - `vmm run`.
 */
#ifndef VMM_RUN_H
#define VMM_RUN_H
/* `vmm run`; argv[0] is "run". */
int run_main(int argc, char **argv);
/* The whole command line, for --on-reboot restart (set by main). */
extern char **vmm_argv;
#endif
