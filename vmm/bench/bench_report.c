// SPDX-License-Identifier: GPL-2.0-only
/*
 * bench_report.c - what `vmm bench munmap` shows: the table on stdout, the
 * CSV (one line per sample), the JSON (everything, the model included) and
 * the plot (gnuplot, PNG).
 *
 * Every figure printed is computed here from the samples: medians with
 * min-max, ratios of medians to the KVM floor (b).  A cell whose samples
 * are scaled probes is marked "~" in the table and "predicted" elsewhere.
 * "Mwalk/s" counts translation attempts (hits and faults) of all walkers,
 * vCPUs included, in millions per second: during the unmap ("dur", from
 * its start to its return) and in the warm-up just before ("bef").  Once a
 * strategy has cleared the leaves, its walkers fault fast, so "dur" may
 * exceed "bef"; a strategy that starved its walkers would show "dur" near
 * zero.  The KVM floor's walkers read the scratch area instead.
 *
 * Threads: the main thread only.
 */
#include "bench/bench_report.h"
#include "core/log.h"
#include "core/size.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MED_U64(cell, field) bench_median_u64((cell), offsetof(struct bench_sample, field))

static bool predicted(const struct bench_cell *c)
{
	for (unsigned i = 0; i < c->n; i++)
		if (c->s[i].predicted)
			return true;
	return false;
}

/* Median unmap latency of the KVM floor of this point, or -1. */
static double floor_b(const struct bench_point *p)
{
	return p->done[BM_KVM] ? BENCH_STAT(&p->cell[BM_KVM], unmap_ms).med : -1;
}

static double min_coverage(const struct bench_point *p)
{
	double cov = 2;
	for (int m = BM_KICK; m < BM__N; m++)
		for (unsigned i = 0; p->done[m] && i < p->cell[m].n; i++)
			if (p->cell[m].s[i].coverage >= 0 && p->cell[m].s[i].coverage < cov)
				cov = p->cell[m].s[i].coverage;
	return cov > 1 ? -1 : cov;
}

static void fmt_ms(char *buf, size_t len, double ms)
{
	if (ms < 0)
		snprintf(buf, len, "never");
	else if (ms >= 10000)
		snprintf(buf, len, "%.0f", ms);
	else if (ms >= 100)
		snprintf(buf, len, "%.1f", ms);
	else
		snprintf(buf, len, "%.2f", ms);
}

void bench_print_point(FILE *f, const struct bench_run *run, const struct bench_point *p)
{
	char s[32], r[32];
	const struct bench_config *cfg = &p->cfg;
	double cov = min_coverage(p);
	fprintf(f, "\n== %s %s, %u vCPUs, %u walkers, %s%s: medians of %u [min-max], %.0f s\n",
		format_size(cfg->size, s, sizeof s), gmm_backing_name(cfg->backing), cfg->vcpus,
		cfg->walkers, cfg->range ? "unmap a range of " : "unmap all RAM",
		cfg->range ? format_size(cfg->range, r, sizeof r) : "", run->repeat, p->seconds);
	if (cov >= 0)
		fprintf(f, "   huge-page coverage of the RAM under test: %.1f%% at least%s%s%s\n",
			cov * 100, p->coverage_method ? " (" : "",
			p->coverage_method ? p->coverage_method : "", p->coverage_method ? ")" : "");
	fprintf(f, "   %-11s %26s %8s %10s %8s %15s %9s %9s %9s %12s\n", "method", "unmap ms",
		"x floor", "back ms", "slot ms", "ser iss/skip", "ser ms", "kicks", "kick-exit",
		"Mwalk/s dur/bef");
	double fb = floor_b(p);
	for (int m = 0; m < BM__N; m++) {
		if (!p->done[m])
			continue;
		const struct bench_cell *c = &p->cell[m];
		struct bench_stat u = BENCH_STAT(c, unmap_ms), b = BENCH_STAT(c, back_ms);
		char med[16], lo[16], hi[16], back[16], range[64], ratio[16];
		fmt_ms(med, sizeof med, u.med);
		fmt_ms(lo, sizeof lo, u.min);
		fmt_ms(hi, sizeof hi, u.max);
		fmt_ms(back, sizeof back, b.med);
		snprintf(range, sizeof range, "%s%s [%s-%s]", predicted(c) ? "~" : "", med, lo, hi);
		if (fb > 0)
			snprintf(ratio, sizeof ratio, "%.2fx", u.med / fb);
		else
			snprintf(ratio, sizeof ratio, "-");
		if (m == BM_RAW) {
			fprintf(f, "   %-11s %26s %8s %10s\n", bench_method_name(m), range, ratio, back);
			continue;
		}
		char ser[32];
		snprintf(ser, sizeof ser, "%.0f/%.0f", MED_U64(c, ser_issued), MED_U64(c, ser_skipped));
		fprintf(f, "   %-11s %26s %8s %10s %8.2f %15s %9.2f %9.0f %9.0f %6.2f/%5.2f\n",
			bench_method_name(m), range, ratio, back, BENCH_STAT(c, slot_ms).med, ser,
			BENCH_STAT(c, ser_ms).med, MED_U64(c, kicks), MED_U64(c, kick_exits),
			BENCH_STAT(c, rate_during).med / 1e6, BENCH_STAT(c, rate_before).med / 1e6);
	}
}

/* ---- CSV ---------------------------------------------------------------- */

int bench_write_csv(const struct bench_run *run, const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		log_msg(LOG_ERROR, "--csv %s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(f, "size_bytes,vcpus,walkers,backing,range_bytes,method,rep,predicted,unmap_ms,"
		   "slot_ms,back_ms,ser_issued,ser_skipped,ser_ms,kicks,kick_exits,walker_waits,"
		   "rate_before,rate_during,coverage\n");
	for (unsigned i = 0; i < run->npoints; i++) {
		const struct bench_point *p = &run->points[i];
		for (int m = 0; m < BM__N; m++)
			for (unsigned k = 0; p->done[m] && k < p->cell[m].n; k++) {
				const struct bench_sample *s = &p->cell[m].s[k];
				fprintf(f, "%" PRIu64 ",%u,%u,%s,%" PRIu64 ",%s,%u,%d,%.4f,%.4f,%.4f,%" PRIu64
					",%" PRIu64 ",%.4f,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%.0f,%.0f,%.4f\n",
					p->cfg.size, p->cfg.vcpus, p->cfg.walkers,
					gmm_backing_name(p->cfg.backing), p->cfg.range, bench_method_name(m),
					k + 1, s->predicted, s->unmap_ms, s->slot_ms, s->back_ms,
					s->ser_issued, s->ser_skipped, s->ser_ms, s->kicks, s->kick_exits,
					s->walker_waits, s->rate_before, s->rate_during, s->coverage);
			}
	}
	if (fclose(f) != 0) {
		log_msg(LOG_ERROR, "--csv %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- JSON --------------------------------------------------------------- */

static json_object *jstat(struct bench_stat st)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "median", json_object_new_double(st.med));
	json_object_object_add(o, "min", json_object_new_double(st.min));
	json_object_object_add(o, "max", json_object_new_double(st.max));
	return o;
}

static json_object *jsample(const struct bench_sample *s)
{
	json_object *o = json_object_new_object();
#define D(f) json_object_object_add(o, #f, json_object_new_double(s->f))
#define U(f) json_object_object_add(o, #f, json_object_new_uint64(s->f))
	D(unmap_ms);
	D(slot_ms);
	D(back_ms);
	U(ser_issued);
	U(ser_skipped);
	D(ser_ms);
	U(kicks);
	U(kick_exits);
	U(walker_waits);
	D(rate_before);
	D(rate_during);
	D(coverage);
#undef D
#undef U
	json_object_object_add(o, "predicted", json_object_new_boolean(s->predicted));
	return o;
}

static json_object *jpoint(const struct bench_point *p)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "size_bytes", json_object_new_uint64(p->cfg.size));
	json_object_object_add(o, "vcpus", json_object_new_int((int)p->cfg.vcpus));
	json_object_object_add(o, "walkers", json_object_new_int((int)p->cfg.walkers));
	json_object_object_add(o, "backing", json_object_new_string(gmm_backing_name(p->cfg.backing)));
	json_object_object_add(o, "range_bytes", json_object_new_uint64(p->cfg.range));
	json_object_object_add(o, "coverage_min", json_object_new_double(min_coverage(p)));
	if (p->coverage_method)
		json_object_object_add(o, "coverage_method",
				       json_object_new_string(p->coverage_method));
	json_object_object_add(o, "seconds", json_object_new_double(p->seconds));
	json_object *methods = json_object_new_object();
	double fb = floor_b(p);
	for (int m = 0; m < BM__N; m++) {
		if (!p->done[m])
			continue;
		const struct bench_cell *c = &p->cell[m];
		json_object *jm = json_object_new_object();
		struct bench_stat u = BENCH_STAT(c, unmap_ms);
		json_object_object_add(jm, "unmap_ms", jstat(u));
		json_object_object_add(jm, "back_ms", jstat(BENCH_STAT(c, back_ms)));
		json_object_object_add(jm, "x_kvm_floor",
				       json_object_new_double(fb > 0 ? u.med / fb : -1));
		json_object_object_add(jm, "predicted", json_object_new_boolean(predicted(c)));
		json_object *arr = json_object_new_array();
		for (unsigned k = 0; k < c->n; k++)
			json_object_array_add(arr, jsample(&c->s[k]));
		json_object_object_add(jm, "samples", arr);
		json_object_object_add(methods, bench_method_name(m), jm);
	}
	json_object_object_add(o, "methods", methods);
	return o;
}

static json_object *jmodel(const struct bench_model *m)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "ok", json_object_new_boolean(m->ok));
	if (!m->ok) {
		json_object_object_add(o, "why", json_object_new_string(m->why));
		return o;
	}
#define D(f) json_object_object_add(o, #f, json_object_new_double(m->f))
	D(blocks);
	D(vcpus);
	D(c_raw_us);
	D(c_kvm_us);
	D(slot0_ms);
	D(slot1_ms);
	D(k0_us);
	D(k1_us);
	D(p_count);
	D(load);
	D(t_kill_us);
#undef D
	json_object *ser = json_object_new_object();
	for (int k = 0; k < GMM_STRATEGY__N; k++) {
		json_object *e = json_object_new_object();
		json_object_object_add(e, "c_gmm_us", json_object_new_double(m->c_gmm_us[k]));
		json_object_object_add(e, "s0_ms", json_object_new_double(m->s0_ms[k]));
		json_object_object_add(e, "s1_ms", json_object_new_double(m->s1_ms[k]));
		json_object_object_add(ser, gmm_strategy_name(k), e);
	}
	json_object_object_add(o, "per_strategy", ser);
	json_object *pred = json_object_new_object();
	for (int k = 0; k < BM__N; k++)
		if (m->predict_ms[k] >= 0)
			json_object_object_add(pred, bench_method_name(k),
					       json_object_new_double(m->predict_ms[k]));
	json_object_object_add(o, "predicted_ms", pred);
	json_object *par = json_object_new_object();
	for (int k = 0; k < BM__N; k++)
		if (m->predict_par_ms[k] >= 0)
			json_object_object_add(par, bench_method_name(k),
					       json_object_new_double(m->predict_par_ms[k]));
	json_object_object_add(o, "predicted_cpu_per_vcpu_ms", par);
	json_object *seed = json_object_new_object();
	json_object_object_add(seed, "kick_ms", json_object_new_double(275000));
	json_object_object_add(seed, "count_ms", json_object_new_double(418));
	json_object_object_add(o, "seed_ms", seed);
	return o;
}

int bench_write_json(const struct bench_run *run, const struct bench_model *m, const char *path)
{
	json_object *root = json_object_new_object();
	json_object_object_add(root, "machine", json_object_new_string(run->machine));
	json_object_object_add(root, "kernel", json_object_new_string(run->kernel));
	json_object_object_add(root, "date", json_object_new_string(run->date));
	json_object_object_add(root, "command", json_object_new_string(run->command));
	json_object_object_add(root, "repeat", json_object_new_int((int)run->repeat));
	json_object *pts = json_object_new_array();
	for (unsigned i = 0; i < run->npoints; i++)
		json_object_array_add(pts, jpoint(&run->points[i]));
	json_object_object_add(root, "points", pts);
	json_object_object_add(root, "model", jmodel(m));
	int ret = json_object_to_file_ext(path, root, JSON_C_TO_STRING_PRETTY);
	json_object_put(root);
	if (ret < 0) {
		log_msg(LOG_ERROR, "--json %s: %s", path, json_util_get_last_err());
		return -1;
	}
	return 0;
}

/* ---- reading a run back ------------------------------------------------ */

static double jd(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0;
}

static uint64_t ju(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_uint64(v) : 0;
}

static void jstr(json_object *o, const char *key, char *buf, size_t len)
{
	json_object *v;
	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		snprintf(buf, len, "%s", json_object_get_string(v));
}

static int load_point(json_object *jp, struct bench_point *p)
{
	json_object *methods, *v;
	enum gmm_backing b;
	if (!json_object_object_get_ex(jp, "methods", &methods) ||
	    !json_object_object_get_ex(jp, "backing", &v) ||
	    gmm_backing_parse(json_object_get_string(v), &b) < 0)
		return -1;
	p->cfg = (struct bench_config){ .size = ju(jp, "size_bytes"), .vcpus = (unsigned)ju(jp, "vcpus"),
					.walkers = (unsigned)ju(jp, "walkers"), .backing = b,
					.range = ju(jp, "range_bytes") };
	p->seconds = jd(jp, "seconds");
	if (json_object_object_get_ex(jp, "coverage_method", &v))
		p->coverage_method = strdup(json_object_get_string(v)); /* lives with the run */
	for (int m = 0; m < BM__N; m++) {
		json_object *jm, *arr;
		if (!json_object_object_get_ex(methods, bench_method_name(m), &jm) ||
		    !json_object_object_get_ex(jm, "samples", &arr))
			continue;
		size_t n = json_object_array_length(arr);
		for (size_t k = 0; k < n && k < BENCH_MAX_REPEAT; k++) {
			json_object *js = json_object_array_get_idx(arr, k), *pv;
			p->cell[m].s[k] = (struct bench_sample){
				.unmap_ms = jd(js, "unmap_ms"), .slot_ms = jd(js, "slot_ms"),
				.back_ms = jd(js, "back_ms"), .ser_issued = ju(js, "ser_issued"),
				.ser_skipped = ju(js, "ser_skipped"), .ser_ms = jd(js, "ser_ms"),
				.kicks = ju(js, "kicks"), .kick_exits = ju(js, "kick_exits"),
				.walker_waits = ju(js, "walker_waits"), .rate_before = jd(js, "rate_before"),
				.rate_during = jd(js, "rate_during"), .coverage = jd(js, "coverage"),
				.predicted = json_object_object_get_ex(js, "predicted", &pv) &&
					     json_object_get_boolean(pv),
			};
			p->cell[m].n++;
		}
		p->done[m] = p->cell[m].n > 0;
	}
	return 0;
}

int bench_load_json(const char *path, struct bench_run *run)
{
	json_object *root = json_object_from_file(path), *pts, *v;
	if (!root || !json_object_object_get_ex(root, "points", &pts) ||
	    !json_object_is_type(pts, json_type_array)) {
		log_msg(LOG_ERROR, "--report %s: not a vmm bench munmap JSON file (%s)", path,
			root ? "no points" : json_util_get_last_err());
		json_object_put(root);
		return -1;
	}
	size_t n = json_object_array_length(pts);
	run->points = calloc(n ? n : 1, sizeof(*run->points));
	if (!run->points) {
		json_object_put(root);
		return -1;
	}
	jstr(root, "machine", run->machine, sizeof run->machine);
	jstr(root, "date", run->date, sizeof run->date);
	jstr(root, "kernel", run->kernel, sizeof run->kernel);
	jstr(root, "command", run->command, sizeof run->command);
	run->repeat = json_object_object_get_ex(root, "repeat", &v) ? (unsigned)json_object_get_int(v) : 0;
	for (size_t i = 0; i < n; i++) {
		struct bench_point *p = &run->points[run->npoints];
		if (load_point(json_object_array_get_idx(pts, i), p) < 0) {
			log_msg(LOG_ERROR, "--report %s: point %zu is malformed", path, i);
			json_object_put(root);
			return -1;
		}
		for (int m = 0; m < BM__N; m++)
			if (p->done[m])
				run->methods |= 1u << m;
		run->npoints++;
	}
	json_object_put(root);
	return 0;
}

/* ---- plot --------------------------------------------------------------- */

int bench_plot_check(void)
{
	int st = system("gnuplot -e 'set terminal pngcairo' </dev/null >/dev/null 2>&1");
	if (st != 0) {
		log_msg(LOG_ERROR, "--plot: gnuplot with the pngcairo terminal is not installed "
			"(apt-get install gnuplot-nox)");
		return -1;
	}
	return 0;
}

/* The axis a panel varies, the others held at the values of the points
 * that vary it most. */
enum axis { AX_SIZE, AX_VCPUS };

static double axis_val(const struct bench_point *p, enum axis ax)
{
	return ax == AX_SIZE ? (double)p->cfg.size / (double)(1ULL << 30) : p->cfg.vcpus;
}

/* Do p and q agree on everything but the axis? */
static bool same_but(const struct bench_point *p, const struct bench_point *q, enum axis ax)
{
	return p->cfg.backing == q->cfg.backing && p->cfg.walkers == q->cfg.walkers &&
	       p->cfg.range == q->cfg.range &&
	       (ax == AX_SIZE ? p->cfg.vcpus == q->cfg.vcpus : p->cfg.size == q->cfg.size);
}

/* The series for a panel: the family of points (equal but for the axis)
 * with the most members; for AX_VCPUS the largest size wins ties.  Writes
 * one data file per method (x median min max) into dir; returns the number
 * of points in the series and a title fragment. */
static unsigned write_series(const struct bench_run *run, enum axis ax, const char *dir,
			     char *title, size_t tlen)
{
	int best = -1;
	unsigned best_n = 0;
	for (unsigned i = 0; i < run->npoints; i++) {
		unsigned n = 0;
		for (unsigned j = 0; j < run->npoints; j++)
			n += same_but(&run->points[i], &run->points[j], ax);
		if (n > best_n || (n == best_n && best >= 0 && ax == AX_VCPUS &&
				   run->points[i].cfg.size > run->points[best].cfg.size)) {
			best = (int)i;
			best_n = n;
		}
	}
	if (best < 0)
		return 0;
	const struct bench_point *ref = &run->points[best];
	char s[32];
	if (ax == AX_SIZE)
		snprintf(title, tlen, "%u vCPUs, %u walkers, %s", ref->cfg.vcpus, ref->cfg.walkers,
			 gmm_backing_name(ref->cfg.backing));
	else
		snprintf(title, tlen, "%s, %u walkers, %s", format_size(ref->cfg.size, s, sizeof s),
			 ref->cfg.walkers, gmm_backing_name(ref->cfg.backing));
	for (int m = 0; m < BM__N; m++) {
		char path[4200];
		snprintf(path, sizeof path, "%s/%d-%s.dat", dir, (int)ax, bench_method_name(m));
		FILE *f = fopen(path, "w");
		if (!f)
			return 0;
		/* Points in axis order. */
		double last = -1;
		for (;;) {
			int next = -1;
			for (unsigned j = 0; j < run->npoints; j++) {
				const struct bench_point *q = &run->points[j];
				if (!same_but(ref, q, ax) || !q->done[m] || axis_val(q, ax) <= last)
					continue;
				if (next < 0 || axis_val(q, ax) < axis_val(&run->points[next], ax))
					next = (int)j;
			}
			if (next < 0)
				break;
			const struct bench_point *q = &run->points[next];
			struct bench_stat u = BENCH_STAT(&q->cell[m], unmap_ms);
			fprintf(f, "%g %g %g %g\n", axis_val(q, ax), u.med, u.min, u.max);
			last = axis_val(q, ax);
		}
		fclose(f);
	}
	return best_n;
}

int bench_plot(const struct bench_run *run, const char *path)
{
	char dir[] = "/tmp/vmm-bench-plot-XXXXXX";
	if (!mkdtemp(dir)) {
		log_msg(LOG_ERROR, "--plot: mkdtemp: %s", strerror(errno));
		return -1;
	}
	char t0[128], t1[128], script[4200];
	unsigned n0 = write_series(run, AX_SIZE, dir, t0, sizeof t0);
	unsigned n1 = write_series(run, AX_VCPUS, dir, t1, sizeof t1);
	snprintf(script, sizeof script, "%s/plot.gp", dir);
	FILE *f = fopen(script, "w");
	if (!f) {
		log_msg(LOG_ERROR, "--plot: %s: %s", script, strerror(errno));
		return -1;
	}
	fprintf(f, "set terminal pngcairo size 1600,700 font ',11'\n"
		   "set output '%s'\n"
		   "set multiplot layout 1,2 title 'vmm bench munmap: %s, %s'\n"
		   "set logscale y\nset grid\nset key top left\n"
		   "set ylabel 'unmap latency, ms (median, min-max)'\n",
		path, run->machine, run->date);
	for (int panel = 0; panel < 2; panel++) {
		unsigned n = panel ? n1 : n0;
		fprintf(f, "set title '%s (%s)'\n", panel ? "latency vs vCPUs" : "latency vs guest RAM",
			panel ? t1 : t0);
		fprintf(f, "set xlabel '%s'\nset logscale x 2\n", panel ? "vCPU threads" : "GiB unmapped");
		if (n == 0) {
			fprintf(f, "set label 1 'no data' at graph 0.5,0.5 center\nplot NaN notitle\n"
				   "unset label 1\n");
			continue;
		}
		fprintf(f, "plot ");
		bool first = true;
		for (int m = 0; m < BM__N; m++) {
			if (!(run->methods & (1u << m)))
				continue;
			fprintf(f, "%s'%s/%d-%s.dat' using 1:2:3:4 with yerrorlines lw 2 title '%s'",
				first ? "" : ", ", dir, panel, bench_method_name(m), bench_method_name(m));
			first = false;
		}
		fprintf(f, "\n");
	}
	fprintf(f, "unset multiplot\n");
	fclose(f);
	char cmd[4300];
	snprintf(cmd, sizeof cmd, "gnuplot '%s' 2>&1", script);
	int st = system(cmd);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		log_msg(LOG_WARN, "--plot: could not remove %s", dir);
	if (st != 0) {
		log_msg(LOG_ERROR, "--plot: gnuplot failed (status %d)", st);
		return -1;
	}
	fprintf(stderr, "bench: plot written to %s\n", path);
	return 0;
}
