/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * stress.h - the walkers-against-a-writer stress (stress.c).
 */
#ifndef TESTS_STRESS_H
#define TESTS_STRESS_H

#include <guestmm/guestmm.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct stress {
	struct gmm_vm *vm;
	atomic_bool stop;
	atomic_uint_fast64_t translations;  /* successful, summed while running */
	atomic_uint_fast64_t failed;        /* translate returned NULL */
	atomic_uint_fast64_t faults;        /* SIGSEGV/SIGBUS caught */
	atomic_uint_fast64_t canary;        /* canary changed under a walker */
	atomic_uint_fast64_t pins, pin_busy;
	atomic_uint_fast64_t failed_ops;    /* fault mode: writer ops failed by an injected fault */
	bool inject;                        /* inject faults (stress built with guestmm_fi) */
	uint64_t target;                    /* translations to reach */
	int hold;                           /* spins with the pointer held */
	uint64_t churn;                     /* re-register odd walkers every N iterations */
	struct gmm_stats gs;                /* at the end of the run */
	char error[256];                    /* first failed check, "" if none */
};

#define HOLD_SPINS 32

/* Run the stress with strategy s and VM flags.  0: every check passed
 * (with GMM_VM_TEST_NO_SERIALIZE the safety checks are left to the caller);
 * 1: strategy not available here; -1: st->error says what failed.
 * Translations: GMM_STRESS_TRANSLATIONS or 10^7. */
int run_stress(enum gmm_strategy s, unsigned flags, struct stress *st);

#endif
