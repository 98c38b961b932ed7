/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * console.h - where the serial console goes: stdio (raw mode when stdin is
 * a terminal, restored on every exit path), a pty (its path is logged and
 * reported), a file, or nowhere.
 *
 * A pty's master is nonblocking and the VMM keeps the slave open itself:
 * with no client on the slave (libvirt connects `virsh console` only when
 * asked) guest output queues up to the pty's buffer and is then dropped,
 * never stalling the vCPU that writes it; a client that goes away leaves
 * no hang-up behind, so the next one gets input through as well.
 */
#ifndef VMM_CONSOLE_H
#define VMM_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>

enum console_kind { CONSOLE_STDIO, CONSOLE_PTY, CONSOLE_FILE, CONSOLE_OFF };

struct console {
	enum console_kind kind;
	char path[256];      /* file: the path; pty: the slave's path */
	int out_fd;          /* where guest output goes, -1 for off */
	int in_fd;           /* where guest input comes from, -1 if none */
	int hold_fd;         /* pty: our own open of the slave, -1 if none */
	bool raw;            /* stdin was put in raw mode */
};

/* "stdio", "pty", "file=PATH", "off".  -1 on a bad spec. */
int console_parse(const char *spec, struct console *c);
/* Open it (and put a terminal in raw mode).  -1 with a message logged. */
int console_open(struct console *c);
/* Restore the terminal; safe to call more than once and from a signal
 * handler. */
void console_restore(void);
void console_close(struct console *c);

/* Escape handling on a raw terminal: Ctrl-A x quits, Ctrl-A d sends
 * Ctrl-Alt-Del, Ctrl-A Ctrl-A sends Ctrl-A.  Filters buf in place and
 * returns the bytes for the guest; *action is 'x', 'd' or 0. */
size_t console_filter(struct console *c, unsigned char *buf, size_t len, int *action);

#endif
