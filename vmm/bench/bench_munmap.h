/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * bench_munmap.h - `vmm bench munmap` (bench_munmap.c): runs the sweep,
 * then hands it to the report and the model.
 */
#ifndef VMM_BENCH_MUNMAP_H
#define VMM_BENCH_MUNMAP_H

int bench_main(int argc, char **argv);

#endif
