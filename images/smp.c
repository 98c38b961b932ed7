// SPDX-License-Identifier: GPL-2.0-only
/*
 * smp - every vCPU reports in.  All vCPUs enter at once (testimg.h); vCPU 0
 * prints the banner, then each vCPU prints its line under the console lock
 * and increments a shared counter with a locked instruction.  vCPU 0 waits
 * for the counter to reach N, giving up when it has not moved for about a
 * second (SPIN_TSC):
 *
 *   smp: start (N vcpus, M MiB)
 *   vcpu I of N up                     (once per vCPU, in any order)
 *   smp: all N vcpus up                -> exit 0
 *   smp: only K of N vcpus up          -> exit 1
 *   smp: K reports from N vcpus        -> exit 1 (a vCPU entered twice)
 */
#include "lib.h"

/*
 * How long vCPU 0 waits with no new vCPU reporting before it gives up.  An
 * iteration count alone cannot mean the same on both kinds of host: here
 * every instruction is emulated (~6 us per iteration of this loop), on a
 * host with hardware virtualisation an iteration is a few ns and a
 * preempted lock holder alone can stall it for a scheduler time slice.  So
 * the wait is measured in TSC cycles, which tick at the host's rate either
 * way: 2^32 is ~1-2 s at 2-4 GHz, and restarts whenever another vCPU
 * reports.  SPIN_LIMIT is only the backstop for a TSC that does not tick.
 */
#define SPIN_TSC (1ULL << 32)
#define SPIN_LIMIT 10000000u

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

/* Shared by every vCPU; in .data, zero before anyone runs (testimg.ld). */
static volatile uint32_t banner_done;
static volatile uint32_t reported;

int main(const struct testimg_boot_info *bi, unsigned cpu)
{
	unsigned n = bi->nr_vcpus;

	if (cpu == 0) {
		printf("smp: start (%u vcpus, %lu MiB)\n", n, (unsigned long)(bi->ram_size / MiB));
		banner_done = 1;
	} else {
		/* So that the banner is the first line.  Unbounded: vCPU 0 sets
		 * it right after one printf, and if vCPU 0 is gone the VM is. */
		while (!banner_done)
			cpu_relax();
	}

	printf("vcpu %u of %u up\n", cpu, n);
	atomic_fetch_add32(&reported, 1);
	if (cpu != 0)
		return 0; /* halts */

	uint32_t seen = 0, idle = 0;
	uint64_t since = rdtsc();
	for (;;) {
		uint32_t now = atomic_read32(&reported);
		if (now > n) {
			printf("smp: %u reports from %u vcpus\n", now, n);
			return 1;
		}
		if (now == n)
			break;
		if (now != seen) {
			seen = now;
			idle = 0;
			since = rdtsc();
		} else if (rdtsc() - since >= SPIN_TSC || ++idle >= SPIN_LIMIT) {
			printf("smp: only %u of %u vcpus up\n", now, n);
			return 1;
		}
		cpu_relax();
	}
	printf("smp: all %u vcpus up\n", n);
	return 0;
}
