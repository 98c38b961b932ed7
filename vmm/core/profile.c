// SPDX-License-Identifier: GPL-2.0-only
/*
 * profile.c - a sampling profiler of the guest.
 *
 * Under a KVM that emulates every guest instruction (shared/GUEST-LINUX.md)
 * a Linux boot takes a minute, and a guest without symbols in its log
 * (no kallsyms) cannot say where.  The VMM can: every period the main
 * loop's timerfd fires, profile_tick() sets each vCPU's sample_req and
 * kicks it (the caller passes vcpu_kick: immediate_exit + SIG_VCPU; this
 * file does not include vcpu.h, which calls profile_sample), KVM_RUN
 * returns EINTR, and the vCPU reads its own RIP (KVM_GET_REGS, already in
 * the vcpu seccomp class) into its own buffer.  Nothing runs on the exit
 * path when no sample was asked for: profile_sample is called on EINTR
 * only.  With --on-reboot restart (a re-exec) the file holds the last
 * boot's samples.  A kick costs 70-115 us here, so a
 * 1 ms period costs the guest about a tenth of its speed, the same for
 * every part of the boot.
 *
 * Samples are (ns since profile_open, RIP); the file is text, one
 * "t_us vcpu rip" line per sample after a "# " header, written by
 * profile_close() once every vCPU thread is joined.  scripts/guest-profile
 * resolves RIPs against vmlinux's symbols.
 *
 * Concurrency: a vCPU's buffer is written by that vCPU thread only (its
 * count too); the main thread allocates it before the first request to
 * that vCPU (the release store of sample_req publishes the pointer, the
 * vCPU's acquire exchange sees it) and reads it only after vm_join, which
 * orders every write of the thread before it (pthread_join).
 */
#include "core/profile.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#define PROFILE_MAX_VCPUS 256
#define PROFILE_MAX_SAMPLES (1u << 20)   /* per vCPU: 17 min at 1 ms */

struct sample {
	uint64_t t_ns;
	uint64_t rip;
};

struct vcpu_samples {
	struct sample *s;
	uint32_t n;          /* written by the vCPU only */
	uint32_t dropped;    /* full buffer, or KVM_GET_REGS failed */
};

static struct {
	int fd, tfd;
	unsigned period_us;
	struct timespec t0;
	struct vcpu_samples cpu[PROFILE_MAX_VCPUS];
} prof = { .fd = -1, .tfd = -1 };

static _Atomic bool prof_on;

static uint64_t since_start_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)(t.tv_sec - prof.t0.tv_sec) * 1000000000ull +
	       (uint64_t)(t.tv_nsec - prof.t0.tv_nsec);
}

/* Contract (profile.h). */
int profile_open(const char *path, unsigned period_us, char *err, size_t errlen)
{
	if (period_us < 100 || period_us > 1000000) {
		snprintf(err, errlen, "profile period %u us: not between 100 us and 1 s", period_us);
		return -1;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
		      0600);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path,
			 errno == ELOOP ? "a symbolic link: refused" : strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    st.st_nlink != 1) {
		snprintf(err, errlen, "%s: not a regular file of ours with one link: refused", path);
		close(fd);
		return -1;
	}
	if (ftruncate(fd, 0) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	struct itimerspec it = {
		.it_interval = { .tv_sec = period_us / 1000000, .tv_nsec = (long)(period_us % 1000000) * 1000 },
	};
	it.it_value = it.it_interval;
	if (tfd < 0 || timerfd_settime(tfd, 0, &it, NULL) < 0) {
		snprintf(err, errlen, "profile timer: %s", strerror(errno));
		if (tfd >= 0)
			close(tfd);
		close(fd);
		return -1;
	}
	prof.fd = fd;
	prof.tfd = tfd;
	prof.period_us = period_us;
	clock_gettime(CLOCK_MONOTONIC, &prof.t0);
	atomic_store_explicit(&prof_on, true, memory_order_relaxed);
	return 0;
}

int profile_timerfd(void)
{
	return prof.tfd;
}

/* Contract (profile.h).  Main thread only. */
void profile_tick(struct vm *vm, void (*kick)(struct vcpu *))
{
	uint64_t n;
	if (read(prof.tfd, &n, sizeof(n)) != sizeof(n))
		return;
	for (unsigned i = 0; i < vm->cfg.nr_vcpus && i < PROFILE_MAX_VCPUS; i++) {
		struct vcpu *cpu = &vm->vcpus[i];
		struct vcpu_samples *vs = &prof.cpu[i];
		if (!vs->s && !(vs->s = malloc(PROFILE_MAX_SAMPLES * sizeof(*vs->s))))
			continue;
		if (!cpu->thread || !cpu->run)
			continue;
		/* Release: the vCPU's acquire exchange sees vs->s. */
		atomic_store_explicit(&cpu->sample_req, true, memory_order_release);
		kick(cpu);
	}
}

/* Contract (profile.h).  The vCPU thread of cpu only. */
void profile_sample(struct vcpu *cpu)
{
	if (!atomic_load_explicit(&prof_on, memory_order_relaxed) ||
	    !atomic_exchange_explicit(&cpu->sample_req, false, memory_order_acquire) ||
	    cpu->index >= PROFILE_MAX_VCPUS)
		return;
	struct vcpu_samples *vs = &prof.cpu[cpu->index];
	struct kvm_regs regs;
	if (vs->n >= PROFILE_MAX_SAMPLES || ioctl(cpu->fd, KVM_GET_REGS, &regs) < 0) {
		vs->dropped++;
		return;
	}
	vs->s[vs->n++] = (struct sample){ since_start_ns(), regs.rip };
}

/* Contract (profile.h). */
void profile_close(void)
{
	if (prof.fd < 0)
		return;
	atomic_store_explicit(&prof_on, false, memory_order_relaxed);
	FILE *f = fdopen(prof.fd, "w");
	if (!f) {
		close(prof.fd);
	} else {
		/* The file was opened O_NONBLOCK (a FIFO must not hang the
		 * open); a regular file never returns EAGAIN anyway. */
		fcntl(prof.fd, F_SETFL, 0);
		fprintf(f, "# vmm guest profile: period_us %u; t_us vcpu rip\n", prof.period_us);
		uint64_t total = 0, dropped = 0;
		for (unsigned i = 0; i < PROFILE_MAX_VCPUS; i++) {
			struct vcpu_samples *vs = &prof.cpu[i];
			for (uint32_t k = 0; k < vs->n; k++)
				fprintf(f, "%llu %u %llx\n", (unsigned long long)(vs->s[k].t_ns / 1000), i,
					(unsigned long long)vs->s[k].rip);
			total += vs->n;
			dropped += vs->dropped;
			free(vs->s);
			vs->s = NULL;
		}
		if (fclose(f) != 0)
			log_msg(LOG_WARN, "guest profile: write failed: %s", strerror(errno));
		else
			log_msg(LOG_INFO, "guest profile: %llu samples written (%llu dropped)",
				(unsigned long long)total, (unsigned long long)dropped);
	}
	close(prof.tfd);
	prof.fd = prof.tfd = -1;
}
