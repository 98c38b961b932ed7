/*
 * test_stress_faults.c - the concurrency stress (stress.c) with injected
 * host failures (built against guestmm_fi): every strategy, every failed
 * writer operation checked to have changed nothing it may not.
 */
#include <criterion/criterion.h>

#include "stress.h"

static void stress_faults(enum gmm_strategy s)
{
	struct stress st = { .hold = HOLD_SPINS, .inject = true };
	int ret = run_stress(s, 0, &st);
	if (ret == 1)
		cr_skip_test("strategy %s is not available on this kernel", gmm_strategy_name(s));
	cr_assert_eq(ret, 0, "%s: %s", gmm_strategy_name(s), st.error);
}

TestSuite(stress_faults, .timeout = 900);

Test(stress_faults, kick) { stress_faults(GMM_STRATEGY_KICK); }
Test(stress_faults, count) { stress_faults(GMM_STRATEGY_COUNT); }
Test(stress_faults, perthread) { stress_faults(GMM_STRATEGY_PERTHREAD); }
Test(stress_faults, membarrier) { stress_faults(GMM_STRATEGY_MEMBARRIER); }
Test(stress_faults, rcu) { stress_faults(GMM_STRATEGY_RCU); }
