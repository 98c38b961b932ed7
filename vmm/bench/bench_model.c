// SPDX-License-Identifier: GPL-2.0-only
/*
 * bench_model.c - the seed's case, which cannot run here: 496 GiB of THP
 * unmapped under 128 vCPUs (Leonardo Bras, "Introduces new count-based
 * method for tracking lockless pagetable walks", v5, linuxppc-dev, October
 * 2019: 275 s with an IPI broadcast per
 * 2 MiB block, 418 ms when a count of walkers in flight lets most blocks
 * skip it).  Predicted from this run's own measurements:
 *
 *   T(method) = memslot(V)                       KVM memslot deletion
 *             + B * c(method)                    per-block work (munmap, leaves)
 *             + B * q(method) * k(n)             per-block kick rounds
 *             + s(method, n)                     one serialisation per range
 *
 *   B      blocks of 2 MiB (496 GiB: 253,952)
 *   n      threads a kick must reach: V vCPUs + W device walkers (W = 0 here)
 *   k(n)   one kick round, fitted k0 + k1 n over every point where kick ran
 *   q      1 for kick; for count the measured fraction of blocks that found
 *          walkers in flight (the point with the most vCPUs, W = 0 preferred)
 *   c      measured per block at the largest size: raw munmap (floor a), the
 *          KVM floor minus its memslot deletion, each strategy minus its
 *          serialisation and memslot time
 *   s      one range serialisation, fitted s0 + s1 n per strategy
 *   memslot(V) fitted over the KVM floor's points
 *
 * Per-block costs measured with V + W busy threads on this machine's CPUs
 * are inflated by CPU sharing: they are divided by the load factor L =
 * (KVM floor per block) / (raw munmap per block), so the seed's host, where
 * the unmapping thread has a CPU to itself, pays c_raw per block for the
 * munmap and c / L for guestmm's own work.
 *
 * On 2 CPUs the kicks to n threads are served one after another, so k grows
 * with n by a scheduling slice per thread; on a host with a CPU per vCPU the
 * signals go out back to back and the vCPUs leave the guest in parallel.
 * Both are printed: k(n) as fitted here (an upper bound), and
 * k(n0) + (n - n0) * t_kill, with k(n0) the round measured with the fewest
 * threads n0 and t_kill one pthread_kill measured here.
 * The per-range serialisations s(n) include waits for walkers preempted
 * inside a walk, which a host with a CPU per thread does not have: they too
 * are upper bounds there.
 *
 * Every input is printed with the predictions.
 *
 * Threads: the main thread only.
 */
#include "bench/bench_model.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#define SEED_BYTES (496ULL << 30)
#define SEED_VCPUS 128
#define SEED_KICK_MS 275000.0
#define SEED_COUNT_MS 418.0
#define BLOCK (2ULL << 20)

/* Least squares y = a + b x; with fewer than two distinct x, b = 0 and a
 * is the mean. */
static void fit(const double *x, const double *y, unsigned n, double *a, double *b)
{
	double sx = 0, sy = 0, sxx = 0, sxy = 0;
	for (unsigned i = 0; i < n; i++) {
		sx += x[i];
		sy += y[i];
		sxx += x[i] * x[i];
		sxy += x[i] * y[i];
	}
	double d = n * sxx - sx * sx;
	if (n < 2 || fabs(d) < 1e-12) {
		*a = n ? sy / n : 0;
		*b = 0;
		return;
	}
	*b = (n * sxy - sx * sy) / d;
	*a = (sy - *b * sx) / n;
}

static bool usable(const struct bench_point *p)
{
	return p->cfg.range == 0 && p->cfg.backing == GMM_BACKING_THP;
}

#define MAXP 256

static _Atomic int kill_target_run;

static void kill_handler(int sig) { (void)sig; }

static void *kill_target(void *arg)
{
	(void)arg;
	while (atomic_load_explicit(&kill_target_run, memory_order_relaxed))
		;
	return NULL;
}

double bench_measure_kill_us(void)
{
	int sig = SIGRTMIN + 5;
	struct sigaction sa = { .sa_handler = kill_handler }, old;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, &old) < 0)
		return -1;
	pthread_t t;
	atomic_store(&kill_target_run, 1);
	if (pthread_create(&t, NULL, kill_target, NULL) != 0)
		return -1;
	enum { N = 20000 };
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < N; i++)
		pthread_kill(t, sig);
	clock_gettime(CLOCK_MONOTONIC, &b);
	atomic_store(&kill_target_run, 0);
	pthread_join(t, NULL);
	sigaction(sig, &old, NULL);
	return ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / N / 1e3;
}

void bench_model(const struct bench_run *run, struct bench_model *m)
{
	memset(m, 0, sizeof(*m));
	for (int k = 0; k < BM__N; k++)
		m->predict_ms[k] = m->predict_par_ms[k] = -1;
	m->t_kill_us = bench_measure_kill_us();
	m->blocks = (double)(SEED_BYTES / BLOCK);
	m->vcpus = SEED_VCPUS;

	/* The largest size among usable points gives the per-block costs. */
	for (unsigned i = 0; i < run->npoints; i++)
		if (usable(&run->points[i]) && run->points[i].done[BM_KVM] &&
		    run->points[i].cfg.size > m->size_used)
			m->size_used = run->points[i].cfg.size;
	if (!m->size_used) {
		snprintf(m->why, sizeof m->why, "no whole-RAM thp point with the KVM floor measured");
		return;
	}
	double blocks_used = (double)(m->size_used / BLOCK);

	double x[MAXP], y[MAXP];
	unsigned n = 0;
	double c_raw = 0, c_kvm = 0, c_gmm[GMM_STRATEGY__N] = { 0 };
	unsigned n_raw = 0, n_kvm = 0, n_gmm[GMM_STRATEGY__N] = { 0 };
	for (unsigned i = 0; i < run->npoints; i++) {
		const struct bench_point *p = &run->points[i];
		if (!usable(p) || p->cfg.size != m->size_used)
			continue;
		if (p->done[BM_RAW]) {
			c_raw += BENCH_STAT(&p->cell[BM_RAW], unmap_ms).med;
			n_raw++;
		}
		if (p->done[BM_KVM]) {
			const struct bench_cell *c = &p->cell[BM_KVM];
			c_kvm += BENCH_STAT(c, unmap_ms).med - BENCH_STAT(c, slot_ms).med;
			n_kvm++;
		}
		for (int s = 0; s < GMM_STRATEGY__N; s++) {
			const struct bench_cell *c = &p->cell[BM_KICK + s];
			if (!p->done[BM_KICK + s])
				continue;
			c_gmm[s] += BENCH_STAT(c, unmap_ms).med - BENCH_STAT(c, slot_ms).med -
				    BENCH_STAT(c, ser_ms).med;
			n_gmm[s]++;
		}
	}
	m->c_raw_us = n_raw ? c_raw / n_raw / blocks_used * 1e3 : -1;
	m->c_kvm_us = n_kvm ? c_kvm / n_kvm / blocks_used * 1e3 : -1;
	for (int s = 0; s < GMM_STRATEGY__N; s++)
		m->c_gmm_us[s] = n_gmm[s] ? c_gmm[s] / n_gmm[s] / blocks_used * 1e3 : -1;

	/* memslot(V) over every usable point. */
	n = 0;
	for (unsigned i = 0; i < run->npoints && n < MAXP; i++) {
		const struct bench_point *p = &run->points[i];
		if (usable(p) && p->done[BM_KVM]) {
			x[n] = p->cfg.vcpus;
			y[n++] = BENCH_STAT(&p->cell[BM_KVM], slot_ms).med;
		}
	}
	fit(x, y, n, &m->slot0_ms, &m->slot1_ms);

	/* k(n): one kick round, from the kick points (ms per issued round). */
	n = 0;
	for (unsigned i = 0; i < run->npoints && n < MAXP; i++) {
		const struct bench_point *p = &run->points[i];
		const struct bench_cell *c = &p->cell[BM_KICK + GMM_STRATEGY_KICK];
		double issued = bench_median_u64(c, offsetof(struct bench_sample, ser_issued));
		if (p->cfg.range || !p->done[BM_KICK + GMM_STRATEGY_KICK] || issued <= 0)
			continue;
		x[n] = p->cfg.vcpus + p->cfg.walkers;
		y[n++] = BENCH_STAT(c, ser_ms).med / issued * 1e3;
	}
	m->k_points = n;
	fit(x, y, n, &m->k0_us, &m->k1_us);
	for (unsigned i = 0; i < n; i++)
		if (i == 0 || x[i] < m->k_min_n) {
			m->k_min_n = (unsigned)x[i];
			m->k_min_us = y[i];
		}

	/* q for count: the point with the most vCPUs, W = 0 first. */
	int best = -1;
	for (unsigned i = 0; i < run->npoints; i++) {
		const struct bench_point *p = &run->points[i];
		if (p->cfg.range || !p->done[BM_KICK + GMM_STRATEGY_COUNT])
			continue;
		if (best < 0) {
			best = (int)i;
			continue;
		}
		const struct bench_point *b = &run->points[best];
		bool p0 = p->cfg.walkers == 0, b0 = b->cfg.walkers == 0;
		if ((p0 && !b0) || (p0 == b0 && p->cfg.vcpus > b->cfg.vcpus))
			best = (int)i;
	}
	m->p_count = -1;
	if (best >= 0) {
		const struct bench_cell *c = &run->points[best].cell[BM_KICK + GMM_STRATEGY_COUNT];
		double is = bench_median_u64(c, offsetof(struct bench_sample, ser_issued));
		double sk = bench_median_u64(c, offsetof(struct bench_sample, ser_skipped));
		m->p_count = is + sk > 0 ? is / (is + sk) : 0;
	}

	/* s(n) per per-range strategy. */
	for (int s = GMM_STRATEGY_PERTHREAD; s < GMM_STRATEGY__N; s++) {
		n = 0;
		for (unsigned i = 0; i < run->npoints && n < MAXP; i++) {
			const struct bench_point *p = &run->points[i];
			if (p->cfg.range || !p->done[BM_KICK + s])
				continue;
			x[n] = p->cfg.vcpus + p->cfg.walkers;
			y[n++] = BENCH_STAT(&p->cell[BM_KICK + s], ser_ms).med;
		}
		m->has_s[s] = n > 0;
		fit(x, y, n, &m->s0_ms[s], &m->s1_ms[s]);
	}

	if (m->c_raw_us <= 0 || m->c_kvm_us <= 0) {
		snprintf(m->why, sizeof m->why, "the floors were not measured at %.0f GiB",
			 (double)m->size_used / (double)(1ULL << 30));
		return;
	}
	m->load = m->c_kvm_us / m->c_raw_us;
	if (m->load < 1)
		m->load = 1;
	double B = m->blocks, V = m->vcpus, nthreads = SEED_VCPUS;
	double slot = m->slot0_ms + m->slot1_ms * V;
	double k = (m->k0_us + m->k1_us * nthreads) / 1e3; /* ms */
	double k_par = (m->k_min_us + (nthreads - m->k_min_n) * m->t_kill_us) / 1e3;
	m->predict_ms[BM_RAW] = B * m->c_raw_us / 1e3;
	m->predict_ms[BM_KVM] = slot + B * m->c_raw_us / 1e3;
	for (int s = 0; s < GMM_STRATEGY__N; s++) {
		if (m->c_gmm_us[s] < 0)
			continue;
		double t = slot + B * m->c_gmm_us[s] / m->load / 1e3;
		double tp = -1;
		if (s == GMM_STRATEGY_KICK && m->k_points) {
			tp = t + B * k_par;
			t += B * k;
		} else if (s == GMM_STRATEGY_COUNT && m->k_points && m->p_count >= 0) {
			tp = t + B * m->p_count * k_par;
			t += B * m->p_count * k;
		} else if (s >= GMM_STRATEGY_PERTHREAD && m->has_s[s]) {
			t += m->s0_ms[s] + m->s1_ms[s] * nthreads;
		} else {
			t = -1;
		}
		m->predict_ms[BM_KICK + s] = t;
		m->predict_par_ms[BM_KICK + s] = tp;
	}
	m->ok = true;
}

static void fmt_time(char *buf, size_t len, double ms)
{
	if (ms < 0)
		snprintf(buf, len, "not modelled");
	else if (ms >= 10000)
		snprintf(buf, len, "%.0f s", ms / 1e3);
	else if (ms >= 1000)
		snprintf(buf, len, "%.2f s", ms / 1e3);
	else
		snprintf(buf, len, "%.0f ms", ms);
}

void bench_model_print(FILE *f, const struct bench_model *m)
{
	fprintf(f, "\n== Model: the seed's case, 496 GiB of THP (%.0f blocks of 2 MiB), %.0f vCPUs, "
		   "no device walkers\n", m->blocks, m->vcpus);
	if (!m->ok) {
		fprintf(f, "   not modelled: %s\n", m->why);
		return;
	}
	fprintf(f, "   T = memslot(V) + B*c + B*q*k(n) + s(n); n = vCPU + walker threads a kick "
		   "reaches (here %.0f)\n", m->vcpus);
	fprintf(f, "   inputs measured in this run (per-block costs at %.0f GiB, whole RAM, thp):\n",
		(double)m->size_used / (double)(1ULL << 30));
	fprintf(f, "     c raw munmap            %8.2f us/block\n", m->c_raw_us);
	fprintf(f, "     c KVM floor             %8.2f us/block (load factor L = %.2f); memslot(V) = "
		   "%.3f + %.4f*V ms\n", m->c_kvm_us, m->load, m->slot0_ms, m->slot1_ms);
	fprintf(f, "     k(n) kick round         %8.2f + %.3f*n us (%u points); %.0f us at n = %u; "
		   "t_kill %.2f us\n", m->k0_us, m->k1_us, m->k_points, m->k_min_us, m->k_min_n,
		m->t_kill_us);
	fprintf(f, "     q count                 %8.3f of blocks found walkers in flight\n",
		m->p_count);
	for (int s = 0; s < GMM_STRATEGY__N; s++) {
		fprintf(f, "     c %-21s %8.2f us/block", gmm_strategy_name(s), m->c_gmm_us[s]);
		if (s >= GMM_STRATEGY_PERTHREAD && m->has_s[s])
			fprintf(f, "; s(n) = %.3f + %.4f*n ms", m->s0_ms[s], m->s1_ms[s]);
		fprintf(f, "\n");
	}
	fprintf(f, "   %-12s %16s %18s   %s\n", "method", "predicted, k(n)", "CPU per vCPU",
		"seed (Linux, 128 CPUs)");
	for (int k = 0; k < BM__N; k++) {
		char t[32], tp[32];
		fmt_time(t, sizeof t, m->predict_ms[k]);
		fmt_time(tp, sizeof tp, m->predict_par_ms[k]);
		const char *seed = k == BM_KICK + GMM_STRATEGY_KICK ? "275 s (IPI per block)" :
				   k == BM_KICK + GMM_STRATEGY_COUNT ? "418 ms (count of walkers)" : "";
		fprintf(f, "   %-12s %16s %18s   %s\n", bench_method_name(k), t,
			m->predict_par_ms[k] >= 0 ? tp : "", seed);
	}
	fprintf(f, "   (k(n) as fitted on this machine, where 2 CPUs serve the kicks one after\n"
		   "    another: an upper bound; \"CPU per vCPU\": k(n0) + (n-n0)*t_kill.  Per-range\n"
		   "    serialisations include waits for preempted walkers: upper bounds too.)\n");
}
