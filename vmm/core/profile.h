/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * profile.h - a sampling profiler of the guest (`vmm run --profile-guest
 * FILE`): where the vCPUs spend their time, as (time, vCPU, RIP) samples
 * that scripts/guest-profile resolves against the guest's symbols.
 * profile.c has the design.  Called by the CLI (open, tick, close) and by
 * the vCPU loop (sample); calls nothing of the VMM (the kick is the
 * caller's).
 */
#ifndef VMM_PROFILE_H
#define VMM_PROFILE_H

#include "core/vm_types.h"

#include <stdbool.h>

/* Main thread, before any vCPU exists: create FILE (a new regular file, or
 * an existing one owned by us, truncated; never through a symlink) and the
 * period timer.  0, or -1 with the reason in err. */
int profile_open(const char *path, unsigned period_us, char *err, size_t errlen);

/* The timerfd the main loop polls (-1 when profiling is off). */
int profile_timerfd(void);

/* Main thread, when profile_timerfd() is readable: ask every vCPU of vm
 * (which must not be joined yet) for one sample: set its request, then
 * kick(cpu) (vcpu_kick) so that KVM_RUN returns. */
void profile_tick(struct vm *vm, void (*kick)(struct vcpu *));

/* vCPU thread, back from KVM_RUN with EINTR: take the sample asked for, if
 * any.  Cheap when profiling is off (one load). */
void profile_sample(struct vcpu *cpu);

/* Main thread, after every vCPU thread is joined: write the samples, close
 * the file.  Safe to call when profiling is off. */
void profile_close(void);

#endif
