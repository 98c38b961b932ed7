// SPDX-License-Identifier: GPL-2.0-only
/*
 * log.c - leveled logging to stderr; guestmm's messages are routed here.
 * Each thread also keeps the first error it logged since its last mark
 * (log_error_mark), for callers that must hand the reason on.
 */
#include "core/log.h"

#include <guestmm/guestmm.h>

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum log_level level = LOG_INFO;
static const char *const names[] = { "error", "warn", "info", "debug" };

void log_set_level(enum log_level lvl)
{
	level = lvl;
	gmm_set_log_level((enum gmm_log_level)lvl);
}

int log_parse_level(const char *s, enum log_level *out)
{
	for (int i = 0; i <= LOG_DEBUG; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

static __thread char first_error[1024];
static __thread bool have_error;

void log_error_mark(void)
{
	have_error = false;
}

const char *log_error_since_mark(void)
{
	return have_error ? first_error : NULL;
}

static void vlog(enum log_level lvl, const char *fmt, va_list ap)
{
	char msg[1024];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (lvl == LOG_ERROR && !have_error) {
		memcpy(first_error, msg, sizeof(first_error));
		have_error = true;
	}
	fprintf(stderr, "vmm: %s: %s\n", names[lvl], msg);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	if (lvl > level)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog(lvl, fmt, ap);
	va_end(ap);
}

int die_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_ERROR, fmt, ap);
	va_end(ap);
	return 2;
}

static _Atomic uint64_t guest_lines, guest_suppressed;

void log_guest_counts(uint64_t *lines, uint64_t *suppressed)
{
	*lines = atomic_load_explicit(&guest_lines, memory_order_relaxed);
	*suppressed = atomic_load_explicit(&guest_suppressed, memory_order_relaxed);
}

static void suppress(struct ratelimit *rl, bool owner)
{
	atomic_fetch_add_explicit(&guest_suppressed, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&rl->total_suppressed, 1, memory_order_relaxed);
	if (owner)
		rl->suppressed++;
	else
		atomic_fetch_add_explicit(&rl->missed, 1, memory_order_relaxed);
}

/* Contract (log.h): never waits.  The try-lock's acquire/release orders
 * one owner's window fields before the next owner's reads. */
void log_ratelimited(struct ratelimit *rl, enum log_level lvl, const char *fmt, ...)
{
	int expected = 0;
	if (!atomic_compare_exchange_strong_explicit(&rl->busy, &expected, 1, memory_order_acquire,
						     memory_order_relaxed)) {
		suppress(rl, false);
		return;
	}
	rl->suppressed += atomic_exchange_explicit(&rl->missed, 0, memory_order_relaxed);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	if (now - rl->window_start_ns >= (uint64_t)RATELIMIT_WINDOW_MS * 1000000ULL) {
		if (rl->suppressed)
			log_msg(lvl, "(%u similar messages suppressed in the last %d ms)", rl->suppressed,
				RATELIMIT_WINDOW_MS);
		rl->window_start_ns = now;
		rl->count = 0;
		rl->suppressed = 0;
	}
	if (rl->count >= RATELIMIT_BURST) {
		suppress(rl, true);
		atomic_store_explicit(&rl->busy, 0, memory_order_release);
		return;
	}
	rl->count++;
	atomic_fetch_add_explicit(&guest_lines, 1, memory_order_relaxed);
	if (lvl <= level) {
		va_list ap;
		va_start(ap, fmt);
		vlog(lvl, fmt, ap);
		va_end(ap);
	}
	atomic_store_explicit(&rl->busy, 0, memory_order_release);
}
