// SPDX-License-Identifier: GPL-2.0-only
/*
 * test_stress.c - the concurrency stress (stress.c) for every strategy, as
 * Criterion tests, and the proof that it can fail.
 */
#include <criterion/criterion.h>

#include "stress.h"

#include <stdlib.h>

static void stress_ok(enum gmm_strategy s)
{
	struct stress st = { .hold = HOLD_SPINS };
	int ret = run_stress(s, 0, &st);
	if (ret == 1)
		cr_skip_test("strategy %s is not available on this kernel", gmm_strategy_name(s));
	cr_assert_eq(ret, 0, "%s: %s", gmm_strategy_name(s), st.error);
}

TestSuite(stress, .timeout = 900);

Test(stress, kick) { stress_ok(GMM_STRATEGY_KICK); }
Test(stress, count) { stress_ok(GMM_STRATEGY_COUNT); }
Test(stress, perthread) { stress_ok(GMM_STRATEGY_PERTHREAD); }
Test(stress, membarrier) { stress_ok(GMM_STRATEGY_MEMBARRIER); }
Test(stress, rcu) { stress_ok(GMM_STRATEGY_RCU); }

/*
 * The tracker is needed: with serialisation off, the same stress is caught
 * (a fault on munmapped memory, a canary zeroed by a discard or a remap, or
 * a poisoned table page).  Deliberately racy, so not in the TSan build.
 */
Test(stress, without_serialisation_is_caught)
{
	uint64_t caught = 0;
	/* Hold pointers longer so the race window is wide; a few rounds so
	 * a quiet scheduler cannot make this flaky. */
	setenv("GMM_STRESS_TRANSLATIONS", "300000", 1);
	for (int round = 0; round < 5 && !caught; round++) {
		struct stress st = { .hold = 1000 };
		cr_assert_geq(run_stress(GMM_STRATEGY_PERTHREAD, GMM_VM_TEST_NO_SERIALIZE, &st), 0,
			      "%s", st.error);
		caught = atomic_load(&st.faults) + atomic_load(&st.canary) + st.gs.late_reads;
	}
	cr_assert_gt(caught, 0, "removing the tracker went unnoticed: the stress test cannot fail");
}
