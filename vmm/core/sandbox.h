/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * sandbox.h - per-thread seccomp filters, one allow-list per thread class
 * (sandbox.c has the design and the lists).
 *
 * The main thread calls sandbox_init() once, before it creates any thread;
 * then every thread class calls sandbox_enter() once, at the start of its
 * thread function after its own set-up (the main thread: after its set-up,
 * before the first VM boots).  Until sandbox_init() has run with a mode
 * other than off, sandbox_enter() does nothing: the unit tests, `vmm bench`
 * and `vmm demo` run unfiltered.
 */
#ifndef VMM_SANDBOX_H
#define VMM_SANDBOX_H

#include <stdbool.h>
#include <stdio.h>

enum sandbox_mode {
	SANDBOX_OFF,    /* no filter */
	SANDBOX_LOG,    /* a syscall outside the list fails with EPERM, logged (rate-limited) */
	SANDBOX_ON,     /* a syscall outside the list kills the VMM with a log line */
};

enum sandbox_class {
	SANDBOX_MAIN,       /* the main thread: poll loop, control API, VM creation */
	SANDBOX_VCPU,       /* a vCPU thread: KVM_RUN and the device exits */
	SANDBOX_DEVICE,     /* a virtio device thread (its queues, guestmm writer calls) */
	SANDBOX_IO_WORKER,  /* a virtio-blk pool thread: the disk's I/O */
	SANDBOX_EVENTS,     /* the event monitor's writer (events.c) */
	SANDBOX__N
};

/* The exit status when `on` kills the VMM: 128 + SIGSYS, what a shell
 * shows for a process killed by SIGSYS. */
#define SANDBOX_EXIT_STATUS 159

/* sandbox_init flags. */
#define SANDBOX_ALLOW_EXEC 1u   /* the main thread may execve itself (--on-reboot restart) */

/* "off", "log", "on" (also Cloud Hypervisor's "false", "true"); 0 or -1. */
int sandbox_parse_mode(const char *s, enum sandbox_mode *out);
const char *sandbox_mode_name(enum sandbox_mode mode);
const char *sandbox_class_name(enum sandbox_class c);

/*
 * Main thread, once, while it is the only thread: compile every class's
 * filter (BPF, kept for sandbox_enter), install the SIGSYS handler.  With
 * SANDBOX_OFF it only records the mode.  0, or -1 with the reason logged.
 */
int sandbox_init(enum sandbox_mode mode, unsigned flags);

/*
 * Install class c's filter on the calling thread (no_new_privs first).
 * Every thread the caller creates afterwards inherits it.  A failure is
 * logged; with `on` it ends the VMM (status 1): a thread must not run
 * unfiltered when filters were asked for.
 */
void sandbox_enter(enum sandbox_class c);

/* Called first by the `on` mode's SIGSYS handler, on the offending thread:
 * must be async-signal-safe and make only syscalls every class allows
 * (ioctl(0, TCSETS) is in every list for console_restore). */
void sandbox_set_fatal_hook(void (*fn)(void));

/* The main thread is about to execve itself: its filter survives the exec,
 * the new image's sandbox_enter(SANDBOX_MAIN) does not stack a second one. */
void sandbox_before_exec(void);

/* Syscalls denied so far in `log` mode. */
unsigned long sandbox_denied(void);

/* `vmm seccomp-info`: each class's allow-list size (and with verbose the
 * names) as sandbox_init(mode on, flags) would build it.  0 or -1. */
int sandbox_print_info(FILE *f, unsigned flags, bool verbose);

#endif
