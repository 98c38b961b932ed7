// SPDX-License-Identifier: GPL-2.0-only
/*
 * walkers.h - what the concurrency tests' walker threads share (stress.c,
 * torture.c): a cheap PRNG, a spin hint, and a catcher for faults on
 * released memory, so that a walker that touches memory it should not
 * counts a fault and goes on instead of killing the test.
 *
 * Use: install_fault_catcher() once per process; in a thread,
 *   if (sigsetjmp(fault_jb, 1)) { faults++; ...recover... }
 *   fault_armed = 1;  ...  fault_armed = 0;
 * Header-only: each test program has its own copy of the thread-locals.
 */
#ifndef TESTS_WALKERS_H
#define TESTS_WALKERS_H

#include <setjmp.h>
#include <signal.h>
#include <stdint.h>

static __thread sigjmp_buf fault_jb;
static __thread volatile sig_atomic_t fault_armed;

static void on_fault(int sig)
{
	if (fault_armed)
		siglongjmp(fault_jb, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* SIGSEGV and SIGBUS jump back to the faulting thread's sigsetjmp while it
 * is armed; otherwise they kill the process as usual. */
static inline void install_fault_catcher(void)
{
	struct sigaction sa = { .sa_handler = on_fault, .sa_flags = SA_NODEFER };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
}

static inline uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static inline void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

#endif
