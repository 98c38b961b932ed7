/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vmm/bench/ - `vmm bench munmap`: the runner (bench_munmap.c), the
 * report (bench_report.c), the model of the seed's case (bench_model.c).
 * Uses core/ (a KVM VM, the bus) and guestmm; core/ does not know it; only
 * cli/main.c calls it.
 */
/*
 * bench.h - `vmm bench munmap`: what one measurement is, and what the
 * runner (bench_munmap.c) hands to the report (bench_report.c) and the
 * model (bench_model.c).
 *
 * A "method" is one way of taking guest memory away while the VM runs:
 * the two floors, then the five guestmm strategies.  A "config" is one
 * point of the sweep (guest RAM size, vCPUs, device walkers, backing,
 * whole RAM or a range).  Each (config, method) holds up to BENCH_MAX_REPEAT
 * samples, one per repetition.
 *
 * Threads: everything here is touched by the main thread only.
 */
#ifndef VMM_BENCH_H
#define VMM_BENCH_H

#include <guestmm/guestmm.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define BENCH_MAX_REPEAT 50

enum bench_method {
	BM_RAW,   /* floor (a): raw munmap of THP memory, nothing else running */
	BM_KVM,   /* floor (b): memslot delete + munmap, vCPUs running, no guestmm */
	BM_KICK,  /* BM_KICK + s is guestmm strategy s */
	BM__N = BM_KICK + GMM_STRATEGY__N,
};

static inline bool bench_is_strategy(int m) { return m >= BM_KICK; }
static inline enum gmm_strategy bench_strategy(int m) { return (enum gmm_strategy)(m - BM_KICK); }
/* "raw-munmap", "kvm-floor", then the strategy names. */
const char *bench_method_name(int m);

struct bench_config {
	uint64_t size;              /* guest RAM under test, bytes */
	unsigned vcpus, walkers;
	enum gmm_backing backing;
	uint64_t range;             /* 0: the whole RAM; else bytes unmapped from the middle */
};

/* One repetition of one method.  Times in ms; rates in translations/s. */
struct bench_sample {
	double unmap_ms;            /* start of the call to its return (whole: memslot + unmap) */
	double slot_ms;             /* of which KVM memslot deletion */
	double back_ms;             /* start until the host had the memory back; <0: never seen */
	uint64_t ser_issued, ser_skipped;
	double ser_ms;              /* time the writer spent serialising */
	uint64_t kicks;             /* signals sent to walker threads */
	uint64_t kick_exits;        /* vCPU exits from KVM_RUN by a signal, in the window */
	uint64_t walker_waits;      /* in-flight walkers the writer waited for */
	double rate_before;         /* translations/s just before the unmap */
	double rate_during;         /* translations/s from the unmap's start to its return */
	double coverage;            /* fraction of the region in huge pages, <0: not measured */
	bool predicted;             /* per-block method too slow for the budget: a probe of
	                               BENCH_PROBE_BLOCKS blocks, scaled to the size */
};

#define BENCH_PROBE_BLOCKS 64

struct bench_cell {
	unsigned n;
	struct bench_sample s[BENCH_MAX_REPEAT];
};

struct bench_point {
	struct bench_config cfg;
	bool done[BM__N];
	struct bench_cell cell[BM__N];
	const char *coverage_method;
	double seconds;             /* wall time spent on this point */
};

struct bench_run {
	struct bench_point *points;
	unsigned npoints;
	unsigned repeat;
	unsigned methods;           /* bit m: method m was asked for */
	char machine[160];          /* CPU model, CPUs, RAM */
	char date[40];              /* UTC, when the run started */
	char kernel[80];            /* uname -r */
	char command[512];          /* the command line */
};

/* Summary of a cell: median, min, max of a field. */
struct bench_stat { double med, min, max; };
struct bench_stat bench_stat_of(const struct bench_cell *c, size_t field_offset);
#define BENCH_STAT(cell, field) bench_stat_of((cell), offsetof(struct bench_sample, field))
/* Median of a count field (uint64_t). */
double bench_median_u64(const struct bench_cell *c, size_t field_offset);

/* The model (bench_model.c): the seed's case (496 GiB, 128 vCPUs) from this run's
 * measurements.  Prints the model, its inputs and the predictions; the
 * predictions also go into the JSON (bench_model_json). */
struct bench_model {
	bool ok;
	char why[160];              /* when !ok */
	double blocks;              /* of the seed's case */
	double vcpus;
	double c_raw_us;            /* raw munmap per 2 MiB block */
	double c_kvm_us;            /* KVM floor per block (without the memslot deletion) */
	double slot0_ms, slot1_ms;  /* memslot deletion = slot0 + slot1 * V */
	double k0_us, k1_us;        /* kick round per block = k0 + k1 * n, n = vCPUs + walkers */
	unsigned k_points;
	double c_gmm_us[GMM_STRATEGY__N];  /* guestmm's per-block cost outside serialisation */
	double p_count;             /* fraction of blocks where count had walkers in flight */
	double s0_ms[GMM_STRATEGY__N], s1_ms[GMM_STRATEGY__N]; /* one range serialisation
	                               = s0 + s1 * n (per-range strategies) */
	bool has_s[GMM_STRATEGY__N];
	double k_min_us;            /* the kick round measured with the fewest threads */
	unsigned k_min_n;           /* ... that many (vCPUs + walkers) */
	uint64_t size_used;         /* the size whose points gave the per-block costs */
	double load;                /* KVM floor / raw munmap per block: CPU sharing here */
	double t_kill_us;           /* one signal sent (pthread_kill), measured */
	double predict_ms[BM__N];   /* predictions; <0: not modelled */
	double predict_par_ms[BM__N]; /* kick, count with a CPU per vCPU:
	                               k = k_min + (n - k_min_n) t_kill */
};

#endif
