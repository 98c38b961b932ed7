/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * events.h - the event monitor (`--event-monitor path=P|fd=N`): the VMM's
 * and the VM's lifecycle written as Cloud Hypervisor writes it, one JSON
 * object per event, concatenated:
 *
 *   {"timestamp":{"secs":S,"nanos":N},"source":"vm","event":"booted","properties":null}
 *
 * timestamp is the time since events_open() (Cloud Hypervisor: since its
 * monitor was set), source "vmm" (starting, shutdown) or "vm" (booting,
 * booted, pausing, paused, resuming, resumed, shutdown, rebooting,
 * rebooted, deleted).  libvirt 11.3's ch driver reads them from a FIFO it
 * creates (and blocks in open(O_RDONLY) until we open it for writing), and
 * stops the domain on vm or vmm "shutdown".
 *
 * Nothing here ever waits on the reader: events_emit() only queues (a
 * bounded queue; when it is full the event is dropped, counted and logged,
 * rate-limited), and a writer thread (named "events") opens the target and
 * writes with a non-blocking fd.  A FIFO that has no reader yet is opened
 * in the background, retried every 10 ms for up to VMM_EVENT_OPEN_MS
 * (default 30000) ms, events queueing meanwhile.  When the reader of a FIFO
 * or pipe goes away (POLLERR/EPIPE on our end) or a FIFO opened by path is
 * removed (its link count drops to 0: seen within 100 ms), later events are
 * dropped and
 * events_hangup_fd() becomes readable: libvirt 11.3 "destroys" a domain by
 * removing the FIFO and closing its end (its SIGTERM goes nowhere: the VMM
 * it daemonized is not its child), so the VMM takes that as its cue to stop
 * (cli/run.c).
 * events_close() flushes with a bound so the final shutdown reaches the
 * reader when it reads at all.
 *
 * One monitor per process (like the log).  Threads: events_open/close on
 * the main thread (open before the main thread's seccomp filter: the
 * writer thread gets a filter of its own, SANDBOX_EVENTS); events_emit from
 * any thread, without waiting (a mutex held for O(1), never across I/O).
 */
#ifndef VMM_EVENTS_H
#define VMM_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EVENTS_QUEUE_LEN 256      /* events waiting for the writer, at most */
#define EVENTS_FLUSH_MS 1000      /* events_close()'s usual bound */

/* Parse "path=P" or "fd=N" (N > 2, open for writing) and start the writer
 * thread.  A path that exists must be a FIFO or a regular file; a regular
 * file (or a new one) is created/truncated 0600 at once; a FIFO is opened
 * by the writer thread.  0, or -1 with the reason in err (nothing started). */
int events_open(const char *spec, char *err, size_t errlen);

/* Queue one event (source and event: string literals of [a-z_-]).  Any
 * thread, never blocks; does nothing when no monitor is open. */
void events_emit(const char *source, const char *event);

/* An eventfd that becomes readable (and stays so) once the reader of a
 * FIFO/pipe monitor has gone away; -1 without a monitor. */
int events_hangup_fd(void);

/* Write what is queued for at most flush_ms (then drop the rest, counted),
 * stop the writer, close.  Main thread; no-op without a monitor. */
void events_close(unsigned flush_ms);

struct events_stats {
	uint64_t queued;     /* accepted by events_emit */
	uint64_t written;    /* written whole */
	uint64_t dropped;    /* queue full, no reader, reader gone, or past the flush bound */
	bool opened;         /* the target was opened for writing */
	bool reader_gone;
};
/* Totals since the last events_open() (kept after events_close()). */
void events_get_stats(struct events_stats *out);

#endif
