/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * log.h - the VMM's log: stderr, one line per message, with a level.
 * stdout belongs to the guest's serial console.
 */
#ifndef VMM_LOG_H
#define VMM_LOG_H

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level lvl);
int log_parse_level(const char *s, enum log_level *out);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "vmm: error: ..." and return 2 (the exit status for bad usage). */
int die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The first error line this thread logged since its last log_error_mark(),
 * whatever the level filter, or NULL: how the control API answers a failed
 * vm.boot with the reason vm_create() logged.  Per thread, no locks. */
void log_error_mark(void);
const char *log_error_since_mark(void);

/*
 * Rate limiting for messages an untrusted guest can cause: at most
 * RATELIMIT_BURST lines per RATELIMIT_WINDOW_MS; the first line of a new
 * window says how many were suppressed in the last.  Every line a guest can
 * cause goes through here (so it is also counted: log_guest_counts()).
 *
 * Threads: any, without waiting.  One caller at a time owns the struct
 * (an atomic try-lock); a call that finds it owned by another thread does
 * not wait for it -- its line is suppressed and counted in `missed`, folded
 * into the window's count by the next owner.  So a vCPU never blocks on
 * another vCPU's log line.  A zeroed struct is ready to use.
 */
#include <stdint.h>
#define RATELIMIT_BURST 10
#define RATELIMIT_WINDOW_MS 5000
struct ratelimit {
	_Atomic int busy;            /* the try-lock */
	_Atomic unsigned missed;     /* suppressed while busy */
	uint64_t window_start_ns;    /* these three: under busy */
	unsigned count;
	unsigned suppressed;
	_Atomic uint64_t total_suppressed;
};
void log_ratelimited(struct ratelimit *rl, enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Process-wide totals of guest-caused lines (log_ratelimited): written to
 * stderr (or filtered by level only), and suppressed.  Relaxed counters. */
void log_guest_counts(uint64_t *lines, uint64_t *suppressed);

#endif
