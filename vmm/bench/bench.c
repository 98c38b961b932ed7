// SPDX-License-Identifier: GPL-2.0-only
/*
 * bench.c - what the runner, the report and the model all need: the
 * methods' names and the statistics of a cell (bench.h).
 */
#include "bench/bench.h"

#include <stdlib.h>

static const char *method_names[BM__N] = { "raw-munmap", "kvm-floor", "kick", "count",
					   "perthread", "membarrier", "rcu" };

const char *bench_method_name(int m)
{
	return m >= 0 && m < BM__N ? method_names[m] : "?";
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

struct bench_stat bench_stat_of(const struct bench_cell *c, size_t off)
{
	double v[BENCH_MAX_REPEAT];
	unsigned n = 0;
	for (unsigned i = 0; i < c->n; i++) {
		double x = *(const double *)((const char *)&c->s[i] + off);
		if (x >= 0)
			v[n++] = x;
	}
	if (!n)
		return (struct bench_stat){ -1, -1, -1 };
	qsort(v, n, sizeof(double), cmp_double);
	double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	return (struct bench_stat){ med, v[0], v[n - 1] };
}

double bench_median_u64(const struct bench_cell *c, size_t off)
{
	double v[BENCH_MAX_REPEAT];
	for (unsigned i = 0; i < c->n; i++)
		v[i] = (double)*(const uint64_t *)((const char *)&c->s[i] + off);
	if (!c->n)
		return 0;
	qsort(v, c->n, sizeof(double), cmp_double);
	return c->n % 2 ? v[c->n / 2] : (v[c->n / 2 - 1] + v[c->n / 2]) / 2;
}
