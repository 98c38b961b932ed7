/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * bench_model.h - the seed's case predicted from a run (bench_model.c).
 */
#ifndef VMM_BENCH_MODEL_H
#define VMM_BENCH_MODEL_H

#include "bench/bench.h"

#include <stdio.h>

/* Time one pthread_kill to a running thread (us), for the model. */
double bench_measure_kill_us(void);
void bench_model(const struct bench_run *run, struct bench_model *m);
void bench_model_print(FILE *f, const struct bench_model *m);

#endif
