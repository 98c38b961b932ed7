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
/* Open it (and put a terminal in raw mode).  -1 with a message logged.
 * A file is opened with console_open_file(), truncated. */
int console_open(struct console *c);
/* Open path for guest output, the one way the VMM opens a file a client
 * or the command line names for writing (issue 13: a root VMM asked to
 * write "its" log must not write someone else's file):
 *   - open(2) O_WRONLY|O_APPEND|O_CREAT|O_NOFOLLOW|O_NONBLOCK|O_NOCTTY|
 *     O_CLOEXEC, mode 0600 (whatever the umask): a symlink as the last
 *     component is refused, never followed (nor its target created); a
 *     FIFO, a socket or a directory fail at once, never block;
 *   - fstat(2) on what was opened: a regular file must belong to the
 *     VMM's effective user and have one link (not another user's file, not
 *     a hard link to one); a character device must be a terminal;
 *     anything else is refused;
 *   - only then, with truncate, is a regular file emptied (ftruncate: a
 *     file that fails the checks is never truncated).
 * A terminal keeps O_NONBLOCK (output it cannot take is dropped, never
 * waited for).  The fd, or -1 with the reason (without the path) in why.
 * Symlinks in the directories above are followed, as everywhere. */
int console_open_file(const char *path, bool truncate, char *why, size_t whylen);
/* Restore the terminal; safe to call more than once and from a signal
 * handler. */
void console_restore(void);
void console_close(struct console *c);

/* Escape handling on a raw terminal: Ctrl-A x quits, Ctrl-A d sends
 * Ctrl-Alt-Del, Ctrl-A Ctrl-A sends Ctrl-A.  Filters buf in place and
 * returns the bytes for the guest; *action is 'x', 'd' or 0. */
size_t console_filter(struct console *c, unsigned char *buf, size_t len, int *action);

#endif
