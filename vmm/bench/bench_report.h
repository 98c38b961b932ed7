/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * bench_report.h - what `vmm bench munmap` shows (bench_report.c): the
 * table, the CSV, the JSON and the plot, and a run read back from JSON.
 */
#ifndef VMM_BENCH_REPORT_H
#define VMM_BENCH_REPORT_H

#include "bench/bench.h"

#include <stdio.h>

void bench_print_point(FILE *f, const struct bench_run *run, const struct bench_point *p);
int bench_write_csv(const struct bench_run *run, const char *path);
int bench_plot(const struct bench_run *run, const char *path);
/* 0 if gnuplot can draw PNGs here, else -1 with a message logged. */
int bench_plot_check(void);
/* Read a run back from its --json file (samples and configs; the model is
 * computed again).  0, or -1 with a message logged. */
int bench_load_json(const char *path, struct bench_run *run);

int bench_write_json(const struct bench_run *run, const struct bench_model *m, const char *path);

#endif
