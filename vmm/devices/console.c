// SPDX-License-Identifier: GPL-2.0-only
/*
 * console.c - the serial console's host side.
 *
 * Raw mode: the terminal's settings are saved once; console_restore() puts
 * them back and is called on normal exit, from atexit, and from the fatal
 * signal handler (SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL) before the
 * signal is re-raised -- a crashing VMM must not leave a broken terminal.
 *
 * Files for guest output are opened by console_open_file() only: its rule
 * (console.h) is what keeps a path from a client from aiming the VMM at a
 * file it must not write.
 *
 * Guest output must never block the thread that writes it (a vCPU, for the
 * UART: issue 13, finding 9).  A pty's master is made nonblocking.  stdout
 * is shared with whoever started us, so O_NONBLOCK is not set on it (the
 * shell would inherit it): when it is a pipe, a FIFO or a terminal, it is
 * opened again through /proc/self/fd/1 as a file description of our own,
 * nonblocking.  When that fails (no reader left on a FIFO, no /proc) or
 * stdout is something else (a socket), the writers poll for POLLOUT before
 * writing (serial.c, virtio_console.c).  A regular file does not stall.
 */
#include "devices/console.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

static struct termios saved;
static volatile sig_atomic_t saved_valid;

void console_restore(void)
{
	if (saved_valid) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
		saved_valid = 0;
	}
}

static void fatal_signal(int sig)
{
	console_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

int console_parse(const char *spec, struct console *c)
{
	memset(c, 0, sizeof(*c));
	c->out_fd = c->in_fd = c->hold_fd = -1;
	if (strcmp(spec, "stdio") == 0) {
		c->kind = CONSOLE_STDIO;
	} else if (strcmp(spec, "pty") == 0) {
		c->kind = CONSOLE_PTY;
	} else if (strcmp(spec, "off") == 0) {
		c->kind = CONSOLE_OFF;
	} else if (strncmp(spec, "file=", 5) == 0 && spec[5]) {
		c->kind = CONSOLE_FILE;
		if (strlen(spec + 5) >= sizeof(c->path))
			return -1;
		strcpy(c->path, spec + 5);
	} else {
		return -1;
	}
	return 0;
}

static int make_raw(void)
{
	struct termios t;
	if (tcgetattr(STDIN_FILENO, &t) < 0)
		return -1;
	saved = t;
	saved_valid = 1;
	atexit(console_restore);
	static const int fatal[] = { SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL };
	for (unsigned i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
		signal(fatal[i], fatal_signal);
	cfmakeraw(&t);
	t.c_oflag |= OPOST | ONLCR; /* keep our own log lines readable */
	return tcsetattr(STDIN_FILENO, TCSANOW, &t);
}

/* Contract (console.h). */
int console_open_file(const char *path, bool truncate, char *why, size_t whylen)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
			    O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		if (e == ELOOP)
			snprintf(why, whylen, "a symbolic link: refused (name the file itself)");
		else if (e == ENXIO || e == EISDIR || e == ENODEV || e == EOPNOTSUPP)
			snprintf(why, whylen, "not a regular file or a terminal: refused");
		else
			snprintf(why, whylen, "%s", strerror(e));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		snprintf(why, whylen, "%s", strerror(errno));
	} else if (S_ISREG(st.st_mode)) {
		if (st.st_uid != geteuid())
			snprintf(why, whylen, "owned by uid %u, not by the VMM's user (uid %u): refused",
				 (unsigned)st.st_uid, (unsigned)geteuid());
		else if (st.st_nlink != 1)
			snprintf(why, whylen, "the file has %lu hard links: refused (give a file of its own)",
				 (unsigned long)st.st_nlink);
		else if (truncate && ftruncate(fd, 0) < 0)
			snprintf(why, whylen, "cannot truncate it: %s", strerror(errno));
		else
			return fd;
	} else if (S_ISCHR(st.st_mode) && isatty(fd)) {
		return fd;
	} else {
		snprintf(why, whylen, "not a regular file or a terminal: refused");
	}
	close(fd);
	return -1;
}

/* stdout as a nonblocking file description of our own when it is a pipe,
 * a FIFO or a terminal (see the top of the file); STDOUT_FILENO itself
 * otherwise. */
static int stdout_nonblocking(void)
{
	struct stat st;
	int fl = fcntl(STDOUT_FILENO, F_GETFL);
	if (fl < 0 || (fl & O_NONBLOCK) || fstat(STDOUT_FILENO, &st) < 0 ||
	    !(S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)))
		return STDOUT_FILENO;
	int fd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	return fd >= 0 ? fd : STDOUT_FILENO;
}

int console_open(struct console *c)
{
	switch (c->kind) {
	case CONSOLE_STDIO:
		c->out_fd = stdout_nonblocking();
		c->in_fd = STDIN_FILENO;
		if (isatty(STDIN_FILENO)) {
			if (make_raw() < 0)
				log_msg(LOG_WARN, "cannot put the terminal in raw mode: %s", strerror(errno));
			else
				c->raw = true;
		}
		return 0;
	case CONSOLE_PTY: {
		int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0 || !ptsname(m)) {
			log_msg(LOG_ERROR, "cannot allocate a pty: %s", strerror(errno));
			if (m >= 0)
				close(m);
			return -1;
		}
		snprintf(c->path, sizeof(c->path), "%s", ptsname(m));
		/* Raw, so the guest sees exactly what is typed. */
		struct termios t;
		if (tcgetattr(m, &t) == 0) {
			cfmakeraw(&t);
			tcsetattr(m, TCSANOW, &t);
		}
		/* Output never blocks a vCPU; our own slave open keeps the
		 * master from hanging up between clients (console.h). */
		int fl = fcntl(m, F_GETFL);
		c->hold_fd = open(c->path, O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (fl < 0 || fcntl(m, F_SETFL, fl | O_NONBLOCK) < 0 || c->hold_fd < 0) {
			log_msg(LOG_ERROR, "cannot set up the pty %s: %s", c->path, strerror(errno));
			if (c->hold_fd >= 0)
				close(c->hold_fd);
			c->hold_fd = -1;
			close(m);
			return -1;
		}
		c->out_fd = c->in_fd = m;
		log_msg(LOG_INFO, "serial console on %s", c->path);
		return 0;
	}
	case CONSOLE_FILE: {
		char why[160];
		c->out_fd = console_open_file(c->path, true, why, sizeof(why));
		if (c->out_fd < 0) {
			log_msg(LOG_ERROR, "console file %s: %s", c->path, why);
			return -1;
		}
		return 0;
	}
	case CONSOLE_OFF:
		return 0;
	}
	return -1;
}

void console_close(struct console *c)
{
	console_restore();
	if (c->kind == CONSOLE_PTY || c->kind == CONSOLE_FILE) {
		if (c->out_fd >= 0)
			close(c->out_fd);
	}
	if (c->kind == CONSOLE_STDIO && c->out_fd > STDERR_FILENO)
		close(c->out_fd);   /* stdout reopened nonblocking */
	if (c->hold_fd >= 0)
		close(c->hold_fd);
	c->out_fd = c->in_fd = c->hold_fd = -1;
}

size_t console_filter(struct console *c, unsigned char *buf, size_t len, int *action)
{
	static bool escape;
	size_t o = 0;
	*action = 0;
	if (!c->raw)
		return len;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = buf[i];
		if (escape) {
			escape = false;
			if (ch == 'x' || ch == 'd') {
				*action = ch;
				continue;
			}
			if (ch != 0x01)
				buf[o++] = 0x01;
			buf[o++] = ch;
		} else if (ch == 0x01) {
			escape = true;
		} else {
			buf[o++] = ch;
		}
	}
	return o;
}
