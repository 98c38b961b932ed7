// SPDX-License-Identifier: GPL-2.0-only
/*
 * stress_tsan.c - the concurrency stress (stress.c) for every strategy as
 * a plain program, for the ThreadSanitizer build: Criterion's process
 * arena cannot find room in TSan's address space.  Exit 0 only if every
 * available strategy passed; prints a Criterion-like synthesis line.
 */
#include "stress.h"

#include <stdio.h>

int main(void)
{
	int passed = 0, failed = 0, skipped = 0;
	for (int s = 0; s < GMM_STRATEGY__N; s++) {
		struct stress st = { .hold = HOLD_SPINS };
#ifdef STRESS_FAULTS
		st.inject = true;   /* built against guestmm_fi */
#endif
		int ret = run_stress((enum gmm_strategy)s, 0, &st);
		const char *name = gmm_strategy_name((enum gmm_strategy)s);
		if (ret == 1) {
			printf("[SKIP] stress::%s: not available on this kernel\n", name);
			skipped++;
		} else if (ret < 0) {
			printf("[FAIL] stress::%s: %s\n", name, st.error);
			failed++;
		} else {
			printf("[PASS] stress::%s\n", name);
			passed++;
		}
	}
	printf("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Skipped: %d\n",
	       passed + failed + skipped, passed, failed, skipped);
	return failed || !passed ? 1 : 0;
}
