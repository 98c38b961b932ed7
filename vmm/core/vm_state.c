// SPDX-License-Identifier: GPL-2.0-only
/*
 * vm_state.c - the KVM state of a VM to JSON and back (vm_state.h).
 *
 * Design: one C image of the state (struct kstate: per vCPU the KVM
 * structures, per VM the irqchip, PIT and clock) sits between KVM and the
 * JSON.  Save fills it with GET ioctls, then encodes it; restore decodes
 * ALL of the JSON into it first -- every presence, type, range and blob
 * size checked, the vCPU count against the VM's -- and only then issues
 * the first SET ioctl, so bad input changes nothing.
 *
 * Encoding: the register-like structures (regs, sregs and its segments,
 * debugregs, the PIT channels, the clock, CPUID entries, MSRs) are named
 * fields described by tables (struct field: name, offset, size), so a
 * snapshot is readable and an error names "vcpus[1].regs.rip"; opaque
 * kernel layouts (FPU, XSAVE, XCRS, LAPIC page, vCPU events, PIC and
 * IOAPIC) are hex blobs of exactly their kernel size.
 *
 * Order (QEMU's kvm_arch_put_registers and Firecracker's restore_state
 * agree on the constraints):
 *   save, per vCPU: MP_STATE first (KVM_GET_MP_STATE accepts pending
 *     INIT/SIPI events, which changes the rest), then registers, FPU,
 *     XCRS, XSAVE, LAPIC, MSRs, DEBUGREGS, CPUID; VCPU_EVENTS last (the
 *     other GETs may move state into them).
 *   restore: the VM's irqchip and PIT; per vCPU CPUID first (it decides
 *     which MSRs and XSAVE features exist), SREGS (CR0/CR4/EFER, APIC
 *     base) before REGS, FPU, XCRS before XSAVE, the MSRs before the
 *     LAPIC (the APIC base MSR decides xAPIC or x2APIC mode), except
 *     TSC_DEADLINE after it (KVM ignores a deadline unless the LAPIC timer
 *     is already in TSC-deadline mode, and KVM_SET_LAPIC cancels the
 *     timer), DEBUGREGS, then VCPU_EVENTS and MP_STATE last; finally the
 *     clock, once for the VM, with no flags: the guest's kvmclock resumes
 *     where it was saved (QEMU does the same; KVM_CLOCK_REALTIME would
 *     advance it by the time the snapshot lay on disk).
 *
 * Threads: main thread only, vCPUs not in KVM_RUN (the VM paused or not
 * started); vCPU ioctls from another thread are serialised by KVM's
 * per-vCPU mutex.  No lock of ours is held except to read vm->state.
 */
#include "core/vm_state.h"
#include "core/log.h"
#include "core/state_json.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

/* MSRs added to KVM_GET_MSR_INDEX_LIST (which has most of them already:
 * duplicates are dropped).  Intel SDM vol. 4; KVM's in
 * Documentation/virt/kvm/x86/msr.rst. */
#define MSR_IA32_TSC 0x10
#define MSR_KVM_WALL_CLOCK 0x11
#define MSR_KVM_SYSTEM_TIME 0x12
#define MSR_IA32_APICBASE 0x1b
#define MSR_IA32_TSC_ADJUST 0x3b
#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_IA32_CR_PAT 0x277
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define MSR_EFER 0xc0000080
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MSR_TSC_AUX 0xc0000103
#define MSR_KVM_WALL_CLOCK_NEW 0x4b564d00
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define MSR_KVM_ASYNC_PF_EN 0x4b564d02
#define MSR_KVM_STEAL_TIME 0x4b564d03
#define MSR_KVM_PV_EOI_EN 0x4b564d04
#define MSR_KVM_POLL_CONTROL 0x4b564d05
#define MSR_KVM_ASYNC_PF_INT 0x4b564d06

static const uint32_t extra_msrs[] = {
	MSR_IA32_TSC, MSR_KVM_WALL_CLOCK, MSR_KVM_SYSTEM_TIME, MSR_IA32_APICBASE,
	MSR_IA32_TSC_ADJUST, MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP, MSR_IA32_SYSENTER_EIP,
	MSR_IA32_MISC_ENABLE, MSR_IA32_CR_PAT, MSR_MTRR_DEF_TYPE, MSR_IA32_TSC_DEADLINE, MSR_EFER,
	MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_SYSCALL_MASK, MSR_KERNEL_GS_BASE, MSR_TSC_AUX,
	MSR_KVM_WALL_CLOCK_NEW, MSR_KVM_SYSTEM_TIME_NEW, MSR_KVM_ASYNC_PF_EN, MSR_KVM_STEAL_TIME,
	MSR_KVM_PV_EOI_EN, MSR_KVM_POLL_CONTROL, MSR_KVM_ASYNC_PF_INT,
};

/* Bounds of what a snapshot may hold (KVM's own: KVM_MAX_CPUID_ENTRIES is
 * 256; its MSR lists are a few hundred). */
#define MAX_CPUID 256
#define MAX_MSRS 1024
#define MAX_XSAVE (1u << 20)

/* ---- named fields --------------------------------------------------- */

struct field {
	const char *name;
	size_t off, size;   /* size 1, 2, 4 or 8: an unsigned little-endian integer */
};
#define F(type, m) { #m, offsetof(type, m), sizeof(((type *)0)->m) }
#define FN(name, type, m) { name, offsetof(type, m), sizeof(((type *)0)->m) }
#define NF(t) (sizeof(t) / sizeof((t)[0]))

static const struct field regs_fields[] = {
	F(struct kvm_regs, rax), F(struct kvm_regs, rbx), F(struct kvm_regs, rcx),
	F(struct kvm_regs, rdx), F(struct kvm_regs, rsi), F(struct kvm_regs, rdi),
	F(struct kvm_regs, rsp), F(struct kvm_regs, rbp), F(struct kvm_regs, r8),
	F(struct kvm_regs, r9), F(struct kvm_regs, r10), F(struct kvm_regs, r11),
	F(struct kvm_regs, r12), F(struct kvm_regs, r13), F(struct kvm_regs, r14),
	F(struct kvm_regs, r15), F(struct kvm_regs, rip), F(struct kvm_regs, rflags),
};

static const struct field seg_fields[] = {
	F(struct kvm_segment, base), F(struct kvm_segment, limit), F(struct kvm_segment, selector),
	F(struct kvm_segment, type), F(struct kvm_segment, present), F(struct kvm_segment, dpl),
	F(struct kvm_segment, db), F(struct kvm_segment, s), F(struct kvm_segment, l),
	F(struct kvm_segment, g), F(struct kvm_segment, avl), F(struct kvm_segment, unusable),
};

static const struct field dtable_fields[] = {
	F(struct kvm_dtable, base), F(struct kvm_dtable, limit),
};

static const struct field sregs_fields[] = {
	F(struct kvm_sregs, cr0), F(struct kvm_sregs, cr2), F(struct kvm_sregs, cr3),
	F(struct kvm_sregs, cr4), F(struct kvm_sregs, cr8), F(struct kvm_sregs, efer),
	F(struct kvm_sregs, apic_base),
};

static const struct { const char *name; size_t off; } sregs_segs[] = {
	{ "cs", offsetof(struct kvm_sregs, cs) }, { "ds", offsetof(struct kvm_sregs, ds) },
	{ "es", offsetof(struct kvm_sregs, es) }, { "fs", offsetof(struct kvm_sregs, fs) },
	{ "gs", offsetof(struct kvm_sregs, gs) }, { "ss", offsetof(struct kvm_sregs, ss) },
	{ "tr", offsetof(struct kvm_sregs, tr) }, { "ldt", offsetof(struct kvm_sregs, ldt) },
};

static const struct field debugregs_fields[] = {
	FN("db0", struct kvm_debugregs, db[0]), FN("db1", struct kvm_debugregs, db[1]),
	FN("db2", struct kvm_debugregs, db[2]), FN("db3", struct kvm_debugregs, db[3]),
	F(struct kvm_debugregs, dr6), F(struct kvm_debugregs, dr7),
	F(struct kvm_debugregs, flags),
};

static const struct field cpuid_fields[] = {
	F(struct kvm_cpuid_entry2, function), F(struct kvm_cpuid_entry2, index),
	F(struct kvm_cpuid_entry2, flags), F(struct kvm_cpuid_entry2, eax),
	F(struct kvm_cpuid_entry2, ebx), F(struct kvm_cpuid_entry2, ecx),
	F(struct kvm_cpuid_entry2, edx),
};

static const struct field msr_fields[] = {
	F(struct kvm_msr_entry, index), F(struct kvm_msr_entry, data),
};

static const struct field pit_channel_fields[] = {
	F(struct kvm_pit_channel_state, count), F(struct kvm_pit_channel_state, latched_count),
	F(struct kvm_pit_channel_state, count_latched),
	F(struct kvm_pit_channel_state, status_latched), F(struct kvm_pit_channel_state, status),
	F(struct kvm_pit_channel_state, read_state), F(struct kvm_pit_channel_state, write_state),
	F(struct kvm_pit_channel_state, write_latch), F(struct kvm_pit_channel_state, rw_mode),
	F(struct kvm_pit_channel_state, mode), F(struct kvm_pit_channel_state, bcd),
	F(struct kvm_pit_channel_state, gate),
	/* An s64 kept as its bit pattern; KVM_SET_PIT2 ignores it (the count
	 * is reloaded at the restore). */
	F(struct kvm_pit_channel_state, count_load_time),
};

static const struct field clock_fields[] = {
	F(struct kvm_clock_data, clock), F(struct kvm_clock_data, flags),
	F(struct kvm_clock_data, realtime), F(struct kvm_clock_data, host_tsc),
};

static int put_fields(struct json_object *o, const void *base, const struct field *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t v = 0;
		memcpy(&v, (const char *)base + f[i].off, f[i].size); /* x86: little-endian */
		if (sj_set_u64(o, f[i].name, v) < 0)
			return -1;
	}
	return 0;
}

static int get_fields(struct json_object *o, void *base, const struct field *f, size_t n,
		      const char *where, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t max = f[i].size == 8 ? UINT64_MAX : (1ULL << (8 * f[i].size)) - 1;
		uint64_t v;
		if (sj_get_uint(o, f[i].name, max, &v, where, err, errlen) < 0)
			return -1;
		memcpy((char *)base + f[i].off, &v, f[i].size);
	}
	return 0;
}

/* A new object of the fields, added to parent as key. */
static int put_obj(struct json_object *parent, const char *key, const void *base,
		   const struct field *f, size_t n)
{
	struct json_object *o = json_object_new_object();
	if (!o)
		return -1;
	if (put_fields(o, base, f, n) < 0) {
		json_object_put(o);
		return -1;
	}
	return sj_set_obj(parent, key, o);
}

static int get_obj(struct json_object *parent, const char *key, void *base, const struct field *f,
		   size_t n, const char *where, char *err, size_t errlen)
{
	struct json_object *o;
	if (sj_get_obj(parent, key, &o, where, err, errlen) < 0)
		return -1;
	char w[96];
	/* A message prefix: cut if it must be. */
	if (snprintf(w, sizeof(w), "%s%s%s", where, where[0] ? "." : "", key) >= (int)sizeof(w))
		w[sizeof(w) - 1] = 0;
	return get_fields(o, base, f, n, w, err, errlen);
}

static int failf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int failf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- the C image of the state ------------------------------------------ */

struct cpu_state {
	struct kvm_cpuid2 *cpuid;       /* room for MAX_CPUID entries */
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	void *xsave;                    /* caps.xsave_size bytes, NULL without XSAVE */
	struct kvm_xcrs xcrs;           /* if caps.xcrs */
	struct kvm_lapic_state lapic;
	struct kvm_msrs *msrs;          /* room for MAX_MSRS entries */
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_debugregs dbg;
};

struct kstate {
	unsigned n;
	struct cpu_state *cpus;
	struct kvm_irqchip chip[3];     /* PIC master, PIC slave, IOAPIC */
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
};

/* What this KVM offers; a snapshot must match it (same host kind). */
struct caps {
	size_t xsave_size;   /* 0: no XSAVE; 4096: KVM_GET_XSAVE; more: KVM_GET_XSAVE2 */
	bool xcrs;
};

static const struct { const char *name; uint32_t id; size_t size; } chips[3] = {
	{ "pic_master", KVM_IRQCHIP_PIC_MASTER, sizeof(struct kvm_pic_state) },
	{ "pic_slave", KVM_IRQCHIP_PIC_SLAVE, sizeof(struct kvm_pic_state) },
	{ "ioapic", KVM_IRQCHIP_IOAPIC, sizeof(struct kvm_ioapic_state) },
};

static int get_caps(struct vm *vm, struct caps *c, char *err, size_t errlen)
{
	static const struct { int cap; const char *name; } need[] = {
		{ KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS" },
		{ KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS" },
		{ KVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK" },
	};
	for (size_t i = 0; i < NF(need); i++)
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, need[i].cap) <= 0)
			return failf(err, errlen, "KVM lacks %s, which a snapshot needs", need[i].name);
	c->xsave_size = 0;
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0) {
		/* XSAVE2's size depends on the VM's CPUID: ask the VM. */
		int sz = ioctl(vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
		c->xsave_size = sz > (int)sizeof(struct kvm_xsave) ? (size_t)sz : sizeof(struct kvm_xsave);
		if (c->xsave_size > MAX_XSAVE)
			return failf(err, errlen, "KVM's XSAVE area is %zu bytes, more than %u",
				     c->xsave_size, MAX_XSAVE);
	}
	c->xcrs = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
	return 0;
}

static void kstate_free(struct kstate *s)
{
	for (unsigned i = 0; s->cpus && i < s->n; i++) {
		free(s->cpus[i].cpuid);
		free(s->cpus[i].xsave);
		free(s->cpus[i].msrs);
	}
	free(s->cpus);
	s->cpus = NULL;
}

static int kstate_alloc(struct kstate *s, unsigned n, const struct caps *c)
{
	memset(s, 0, sizeof(*s));
	s->n = n;
	s->cpus = calloc(n, sizeof(*s->cpus));
	if (!s->cpus)
		return -1;
	for (unsigned i = 0; i < n; i++) {
		struct cpu_state *cs = &s->cpus[i];
		cs->cpuid = calloc(1, sizeof(*cs->cpuid) + MAX_CPUID * sizeof(struct kvm_cpuid_entry2));
		cs->msrs = calloc(1, sizeof(*cs->msrs) + MAX_MSRS * sizeof(struct kvm_msr_entry));
		cs->xsave = c->xsave_size ? calloc(1, c->xsave_size) : NULL;
		if (!cs->cpuid || !cs->msrs || (c->xsave_size && !cs->xsave))
			return -1;
	}
	return 0;
}

/* ---- save -------------------------------------------------------------- */

/* The MSRs to try: KVM's list plus extra_msrs, without duplicates, at most
 * MAX_MSRS.  A malloc'ed array; *n its length. */
static uint32_t *msr_candidates(struct vm *vm, unsigned *n, char *err, size_t errlen)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG) {
		failf(err, errlen, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
		return NULL;
	}
	unsigned kn = probe.nmsrs;
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + (kn + 1) * sizeof(uint32_t));
	uint32_t *out = calloc(kn + NF(extra_msrs), sizeof(uint32_t));
	if (!l || !out) {
		failf(err, errlen, "out of memory");
		goto fail;
	}
	l->nmsrs = kn;
	if (kn && ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		failf(err, errlen, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
		goto fail;
	}
	unsigned m = 0;
	for (unsigned i = 0; i < l->nmsrs + NF(extra_msrs); i++) {
		uint32_t idx = i < l->nmsrs ? l->indices[i] : extra_msrs[i - l->nmsrs];
		bool dup = false;
		for (unsigned j = 0; j < m && !dup; j++)
			dup = out[j] == idx;
		if (!dup && m < MAX_MSRS)
			out[m++] = idx;
	}
	free(l);
	*n = m;
	return out;
fail:
	free(l);
	free(out);
	return NULL;
}

/* Read every candidate that KVM_GET_MSRS reads.  KVM_GET_MSRS stops at the
 * first MSR it cannot read and returns how many it read: read in batches
 * from where the last one stopped, skipping the refused one. */
static int read_msrs(struct vcpu *cpu, const uint32_t *cand, unsigned ncand, struct kvm_msrs *out,
		     char *err, size_t errlen)
{
	struct kvm_msrs *b = calloc(1, sizeof(*b) + (size_t)ncand * sizeof(struct kvm_msr_entry));
	if (!b)
		return failf(err, errlen, "out of memory");
	unsigned kept = 0, skipped = 0;
	for (unsigned pos = 0; pos < ncand;) {
		memset(b, 0, sizeof(*b));
		b->nmsrs = ncand - pos;
		for (unsigned i = 0; i < b->nmsrs; i++)
			b->entries[i] = (struct kvm_msr_entry){ .index = cand[pos + i] };
		int r = ioctl(cpu->fd, KVM_GET_MSRS, b);
		if (r < 0) {
			free(b);
			return failf(err, errlen, "vcpu%u: KVM_GET_MSRS: %s", cpu->index, strerror(errno));
		}
		for (int i = 0; i < r; i++)
			out->entries[kept++] = b->entries[i];
		pos += (unsigned)r;
		if (pos < ncand) {
			pos++; /* cand[pos] did not read: not an MSR of this vCPU */
			skipped++;
		}
	}
	out->nmsrs = kept;
	free(b);
	log_msg(LOG_DEBUG, "vcpu%u: %u MSRs saved, %u of KVM's list not readable", cpu->index, kept,
		skipped);
	return 0;
}

static int save_cpu(struct vcpu *cpu, const struct caps *c, const uint32_t *cand, unsigned ncand,
		    struct cpu_state *s, char *err, size_t errlen)
{
	int fd = cpu->fd;
#define GET(req, p)                                                                          \
	do {                                                                                 \
		if (ioctl(fd, req, p) < 0)                                                   \
			return failf(err, errlen, "vcpu%u: %s: %s", cpu->index, #req,        \
				     strerror(errno));                                       \
	} while (0)
	GET(KVM_GET_MP_STATE, &s->mp);
	GET(KVM_GET_REGS, &s->regs);
	GET(KVM_GET_SREGS, &s->sregs);
	GET(KVM_GET_FPU, &s->fpu);
	if (c->xcrs)
		GET(KVM_GET_XCRS, &s->xcrs);
	if (c->xsave_size > sizeof(struct kvm_xsave))
		GET(KVM_GET_XSAVE2, s->xsave);
	else if (c->xsave_size)
		GET(KVM_GET_XSAVE, s->xsave);
	GET(KVM_GET_LAPIC, &s->lapic);
	if (read_msrs(cpu, cand, ncand, s->msrs, err, errlen) < 0)
		return -1;
	GET(KVM_GET_DEBUGREGS, &s->dbg);
	s->cpuid->nent = MAX_CPUID;
	GET(KVM_GET_CPUID2, s->cpuid);
	GET(KVM_GET_VCPU_EVENTS, &s->events);
#undef GET
	return 0;
}

static struct json_object *encode_cpu(const struct cpu_state *s, const struct caps *c)
{
	struct json_object *o = json_object_new_object(), *a, *sr;
	if (!o)
		return NULL;
	/* CPUID entries and MSRs: arrays of small objects. */
	if (!(a = json_object_new_array()) || sj_set_obj(o, "cpuid", a) < 0)
		goto fail;
	for (uint32_t i = 0; i < s->cpuid->nent; i++) {
		struct json_object *e = json_object_new_object();
		if (!e || json_object_array_add(a, e) < 0) {
			json_object_put(e);
			goto fail;
		}
		if (put_fields(e, &s->cpuid->entries[i], cpuid_fields, NF(cpuid_fields)) < 0)
			goto fail;
	}
	if (put_obj(o, "regs", &s->regs, regs_fields, NF(regs_fields)) < 0)
		goto fail;
	if (!(sr = json_object_new_object()) || sj_set_obj(o, "sregs", sr) < 0)
		goto fail;
	for (size_t i = 0; i < NF(sregs_segs); i++)
		if (put_obj(sr, sregs_segs[i].name, (const char *)&s->sregs + sregs_segs[i].off,
			    seg_fields, NF(seg_fields)) < 0)
			goto fail;
	if (put_obj(sr, "gdt", &s->sregs.gdt, dtable_fields, NF(dtable_fields)) < 0 ||
	    put_obj(sr, "idt", &s->sregs.idt, dtable_fields, NF(dtable_fields)) < 0 ||
	    put_fields(sr, &s->sregs, sregs_fields, NF(sregs_fields)) < 0 ||
	    sj_set_hex(sr, "interrupt_bitmap", s->sregs.interrupt_bitmap,
		       sizeof(s->sregs.interrupt_bitmap)) < 0)
		goto fail;
	if (sj_set_hex(o, "fpu", &s->fpu, sizeof(s->fpu)) < 0 ||
	    (c->xsave_size && sj_set_hex(o, "xsave", s->xsave, c->xsave_size) < 0) ||
	    (c->xcrs && sj_set_hex(o, "xcrs", &s->xcrs, sizeof(s->xcrs)) < 0) ||
	    sj_set_hex(o, "lapic", &s->lapic, sizeof(s->lapic)) < 0)
		goto fail;
	if (!(a = json_object_new_array()) || sj_set_obj(o, "msrs", a) < 0)
		goto fail;
	for (uint32_t i = 0; i < s->msrs->nmsrs; i++) {
		struct json_object *e = json_object_new_object();
		if (!e || json_object_array_add(a, e) < 0) {
			json_object_put(e);
			goto fail;
		}
		if (put_fields(e, &s->msrs->entries[i], msr_fields, NF(msr_fields)) < 0)
			goto fail;
	}
	if (sj_set_hex(o, "events", &s->events, sizeof(s->events)) < 0 ||
	    sj_set_u64(o, "mp_state", s->mp.mp_state) < 0 ||
	    put_obj(o, "debugregs", &s->dbg, debugregs_fields, NF(debugregs_fields)) < 0)
		goto fail;
	return o;
fail:
	json_object_put(o);
	return NULL;
}

static struct json_object *encode_vm(const struct kstate *s, const struct caps *c)
{
	struct json_object *o = json_object_new_object(), *a, *ic, *pit;
	if (!o)
		return NULL;
	if (!(a = json_object_new_array()) || sj_set_obj(o, "vcpus", a) < 0)
		goto fail;
	for (unsigned i = 0; i < s->n; i++) {
		struct json_object *v = encode_cpu(&s->cpus[i], c);
		if (!v || json_object_array_add(a, v) < 0) {
			json_object_put(v);
			goto fail;
		}
	}
	if (!(ic = json_object_new_object()) || sj_set_obj(o, "irqchip", ic) < 0)
		goto fail;
	for (int i = 0; i < 3; i++)
		if (sj_set_hex(ic, chips[i].name, &s->chip[i].chip, chips[i].size) < 0)
			goto fail;
	if (!(pit = json_object_new_object()) || sj_set_obj(o, "pit", pit) < 0 ||
	    sj_set_u64(pit, "flags", s->pit.flags) < 0 || !(a = json_object_new_array()) ||
	    sj_set_obj(pit, "channels", a) < 0)
		goto fail;
	for (int i = 0; i < 3; i++) {
		struct json_object *ch = json_object_new_object();
		if (!ch || json_object_array_add(a, ch) < 0) {
			json_object_put(ch);
			goto fail;
		}
		if (put_fields(ch, &s->pit.channels[i], pit_channel_fields, NF(pit_channel_fields)) < 0)
			goto fail;
	}
	if (put_obj(o, "clock", &s->clock, clock_fields, NF(clock_fields)) < 0)
		goto fail;
	return o;
fail:
	json_object_put(o);
	return NULL;
}

struct json_object *vm_state_save(struct vm *vm, char *err, size_t errlen)
{
	pthread_mutex_lock(&vm->lock);
	enum vm_state st = vm->state;
	pthread_mutex_unlock(&vm->lock);
	if (st != VM_PAUSED && st != VM_CREATED) {
		failf(err, errlen, "the VM is %s: pause it before saving its state",
		      st == VM_RUNNING ? "running" : "stopped");
		return NULL;
	}
	struct caps c;
	if (get_caps(vm, &c, err, errlen) < 0)
		return NULL;
	unsigned ncand = 0;
	uint32_t *cand = msr_candidates(vm, &ncand, err, errlen);
	if (!cand)
		return NULL;
	struct kstate s;
	struct json_object *o = NULL;
	if (kstate_alloc(&s, vm->cfg.nr_vcpus, &c) < 0) {
		failf(err, errlen, "out of memory");
		goto out;
	}
	for (unsigned i = 0; i < s.n; i++)
		if (save_cpu(&vm->vcpus[i], &c, cand, ncand, &s.cpus[i], err, errlen) < 0)
			goto out;
	for (int i = 0; i < 3; i++) {
		s.chip[i].chip_id = chips[i].id;
		if (ioctl(vm->fd, KVM_GET_IRQCHIP, &s.chip[i]) < 0) {
			failf(err, errlen, "KVM_GET_IRQCHIP %s: %s", chips[i].name, strerror(errno));
			goto out;
		}
	}
	if (ioctl(vm->fd, KVM_GET_PIT2, &s.pit) < 0) {
		failf(err, errlen, "KVM_GET_PIT2: %s", strerror(errno));
		goto out;
	}
	if (ioctl(vm->fd, KVM_GET_CLOCK, &s.clock) < 0) {
		failf(err, errlen, "KVM_GET_CLOCK: %s", strerror(errno));
		goto out;
	}
	o = encode_vm(&s, &c);
	if (!o)
		failf(err, errlen, "out of memory");
out:
	kstate_free(&s);
	free(cand);
	return o;
}

/* ---- restore ----------------------------------------------------------- */

/* An array member of at most max elements; *n its length. */
static int get_array_n(struct json_object *o, const char *key, size_t max, struct json_object **a,
		       size_t *n, const char *where, char *err, size_t errlen)
{
	if (sj_get_array(o, key, a, where, err, errlen) < 0)
		return -1;
	*n = json_object_array_length(*a);
	if (*n > max)
		return failf(err, errlen, "%s.%s: %zu entries, at most %zu", where, key, *n, max);
	return 0;
}

/* Element i of array a as an object. */
static struct json_object *elem_obj(struct json_object *a, size_t i, const char *where,
				    const char *key, char *err, size_t errlen)
{
	struct json_object *e = json_object_array_get_idx(a, i);
	if (!e || !json_object_is_type(e, json_type_object)) {
		failf(err, errlen, "%s%s%s[%zu]: not an object", where, where[0] ? "." : "", key, i);
		return NULL;
	}
	return e;
}

static int decode_cpu(struct json_object *o, const struct caps *c, struct cpu_state *s,
		      const char *w, char *err, size_t errlen)
{
	char ew[96];
	struct json_object *a, *sr, *e;
	size_t n;
	if (get_array_n(o, "cpuid", MAX_CPUID, &a, &n, w, err, errlen) < 0)
		return -1;
	s->cpuid->nent = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		if (!(e = elem_obj(a, i, w, "cpuid", err, errlen)))
			return -1;
		snprintf(ew, sizeof(ew), "%s.cpuid[%zu]", w, i);
		if (get_fields(e, &s->cpuid->entries[i], cpuid_fields, NF(cpuid_fields), ew, err,
			       errlen) < 0)
			return -1;
	}
	if (get_obj(o, "regs", &s->regs, regs_fields, NF(regs_fields), w, err, errlen) < 0)
		return -1;
	if (sj_get_obj(o, "sregs", &sr, w, err, errlen) < 0)
		return -1;
	snprintf(ew, sizeof(ew), "%s.sregs", w);
	for (size_t i = 0; i < NF(sregs_segs); i++)
		if (get_obj(sr, sregs_segs[i].name, (char *)&s->sregs + sregs_segs[i].off, seg_fields,
			    NF(seg_fields), ew, err, errlen) < 0)
			return -1;
	if (get_obj(sr, "gdt", &s->sregs.gdt, dtable_fields, NF(dtable_fields), ew, err, errlen) < 0 ||
	    get_obj(sr, "idt", &s->sregs.idt, dtable_fields, NF(dtable_fields), ew, err, errlen) < 0 ||
	    get_fields(sr, &s->sregs, sregs_fields, NF(sregs_fields), ew, err, errlen) < 0 ||
	    sj_get_hex(sr, "interrupt_bitmap", s->sregs.interrupt_bitmap,
		       sizeof(s->sregs.interrupt_bitmap), ew, err, errlen) < 0)
		return -1;
	if (sj_get_hex(o, "fpu", &s->fpu, sizeof(s->fpu), w, err, errlen) < 0)
		return -1;
	/* XSAVE and XCRS: present exactly when this KVM has them. */
	struct json_object *x;
	if (c->xsave_size) {
		if (sj_get_hex(o, "xsave", s->xsave, c->xsave_size, w, err, errlen) < 0)
			return -1;
	} else if (json_object_object_get_ex(o, "xsave", &x)) {
		return failf(err, errlen, "%s.xsave: this KVM has no XSAVE", w);
	}
	if (c->xcrs) {
		if (sj_get_hex(o, "xcrs", &s->xcrs, sizeof(s->xcrs), w, err, errlen) < 0)
			return -1;
	} else if (json_object_object_get_ex(o, "xcrs", &x)) {
		return failf(err, errlen, "%s.xcrs: this KVM has no XCRS", w);
	}
	if (sj_get_hex(o, "lapic", &s->lapic, sizeof(s->lapic), w, err, errlen) < 0)
		return -1;
	if (get_array_n(o, "msrs", MAX_MSRS, &a, &n, w, err, errlen) < 0)
		return -1;
	s->msrs->nmsrs = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		if (!(e = elem_obj(a, i, w, "msrs", err, errlen)))
			return -1;
		snprintf(ew, sizeof(ew), "%s.msrs[%zu]", w, i);
		if (get_fields(e, &s->msrs->entries[i], msr_fields, NF(msr_fields), ew, err, errlen) < 0)
			return -1;
	}
	uint64_t mp;
	if (sj_get_hex(o, "events", &s->events, sizeof(s->events), w, err, errlen) < 0 ||
	    sj_get_uint(o, "mp_state", KVM_MP_STATE_AP_RESET_HOLD, &mp, w, err, errlen) < 0 ||
	    get_obj(o, "debugregs", &s->dbg, debugregs_fields, NF(debugregs_fields), w, err,
		    errlen) < 0)
		return -1;
	s->mp.mp_state = (uint32_t)mp;
	return 0;
}

static int decode_vm(struct json_object *state, struct vm *vm, const struct caps *c,
		     struct kstate *s, char *err, size_t errlen)
{
	if (!state || !json_object_is_type(state, json_type_object))
		return failf(err, errlen, "the VM state is not an object");
	struct json_object *a, *ic, *pit;
	size_t n;
	if (get_array_n(state, "vcpus", 4096, &a, &n, "", err, errlen) < 0)
		return -1;
	if (n != vm->cfg.nr_vcpus)
		return failf(err, errlen, "vcpus: %zu vCPUs saved, the VM has %u", n, vm->cfg.nr_vcpus);
	for (size_t i = 0; i < n; i++) {
		char w[32];
		struct json_object *o = elem_obj(a, i, "", "vcpus", err, errlen);
		if (!o)
			return -1;
		snprintf(w, sizeof(w), "vcpus[%zu]", i);
		if (decode_cpu(o, c, &s->cpus[i], w, err, errlen) < 0)
			return -1;
	}
	if (sj_get_obj(state, "irqchip", &ic, "", err, errlen) < 0)
		return -1;
	for (int i = 0; i < 3; i++) {
		s->chip[i].chip_id = chips[i].id;
		if (sj_get_hex(ic, chips[i].name, &s->chip[i].chip, chips[i].size, "irqchip", err,
			       errlen) < 0)
			return -1;
	}
	uint64_t flags;
	if (sj_get_obj(state, "pit", &pit, "", err, errlen) < 0 ||
	    sj_get_uint(pit, "flags", UINT32_MAX, &flags, "pit", err, errlen) < 0 ||
	    get_array_n(pit, "channels", 3, &a, &n, "pit", err, errlen) < 0)
		return -1;
	if (n != 3)
		return failf(err, errlen, "pit.channels: %zu channels, expected 3", n);
	s->pit.flags = (uint32_t)flags;
	for (size_t i = 0; i < 3; i++) {
		char w[32];
		struct json_object *ch = elem_obj(a, i, "pit", "channels", err, errlen);
		if (!ch)
			return -1;
		snprintf(w, sizeof(w), "pit.channels[%zu]", i);
		if (get_fields(ch, &s->pit.channels[i], pit_channel_fields, NF(pit_channel_fields), w,
			       err, errlen) < 0)
			return -1;
	}
	return get_obj(state, "clock", &s->clock, clock_fields, NF(clock_fields), "", err, errlen);
}

static int restore_cpu(struct vcpu *cpu, const struct caps *c, struct cpu_state *s, char *err,
		       size_t errlen)
{
	int fd = cpu->fd;
#define SET(req, p)                                                                          \
	do {                                                                                 \
		if (ioctl(fd, req, p) < 0)                                                   \
			return failf(err, errlen, "vcpu%u: %s: %s", cpu->index, #req,        \
				     strerror(errno));                                       \
	} while (0)
	SET(KVM_SET_CPUID2, s->cpuid);
	SET(KVM_SET_SREGS, &s->sregs);
	SET(KVM_SET_REGS, &s->regs);
	SET(KVM_SET_FPU, &s->fpu);
	if (c->xcrs)
		SET(KVM_SET_XCRS, &s->xcrs);
	if (c->xsave_size)
		SET(KVM_SET_XSAVE, s->xsave);
	/* The MSRs, TSC_DEADLINE moved to the end to be set after the LAPIC. */
	struct kvm_msrs *m = s->msrs;
	uint32_t n = m->nmsrs, deadline = n;
	for (uint32_t i = 0; i < n; i++) {
		if (m->entries[i].index == MSR_IA32_TSC_DEADLINE && deadline == n) {
			struct kvm_msr_entry t = m->entries[i];
			m->entries[i] = m->entries[n - 1];
			m->entries[n - 1] = t;
			deadline = n - 1;
			break;
		}
	}
	m->nmsrs = deadline;
	int r = ioctl(fd, KVM_SET_MSRS, m);
	if (r < 0 || (uint32_t)r != m->nmsrs) {
		m->nmsrs = n;
		if (r < 0)
			return failf(err, errlen, "vcpu%u: KVM_SET_MSRS: %s", cpu->index, strerror(errno));
		return failf(err, errlen, "vcpu%u: KVM_SET_MSRS refused MSR %#x", cpu->index,
			     m->entries[r].index);
	}
	SET(KVM_SET_LAPIC, &s->lapic);
	if (deadline < n) {
		struct { struct kvm_msrs h; struct kvm_msr_entry e; } one = {
			.h = { .nmsrs = 1 }, .e = m->entries[deadline],
		};
		if (ioctl(fd, KVM_SET_MSRS, &one) != 1)
			return failf(err, errlen, "vcpu%u: KVM_SET_MSRS refused TSC_DEADLINE",
				     cpu->index);
	}
	m->nmsrs = n;
	SET(KVM_SET_DEBUGREGS, &s->dbg);
	SET(KVM_SET_VCPU_EVENTS, &s->events);
	SET(KVM_SET_MP_STATE, &s->mp);
#undef SET
	return 0;
}

int vm_state_restore(struct vm *vm, struct json_object *state, char *err, size_t errlen)
{
	pthread_mutex_lock(&vm->lock);
	enum vm_state st = vm->state;
	pthread_mutex_unlock(&vm->lock);
	if (!vm->cfg.restore)
		return failf(err, errlen, "the VM was not created for a restore");
	if (st != VM_CREATED)
		return failf(err, errlen, "the VM's vCPUs have started: restore before vm_start");
	struct caps c;
	if (get_caps(vm, &c, err, errlen) < 0)
		return -1;
	struct kstate s;
	int ret = -1;
	if (kstate_alloc(&s, vm->cfg.nr_vcpus, &c) < 0) {
		failf(err, errlen, "out of memory");
		goto out;
	}
	/* Everything checked before the first SET. */
	if (decode_vm(state, vm, &c, &s, err, errlen) < 0)
		goto out;
	for (int i = 0; i < 3; i++) {
		if (ioctl(vm->fd, KVM_SET_IRQCHIP, &s.chip[i]) < 0) {
			failf(err, errlen, "KVM_SET_IRQCHIP %s: %s", chips[i].name, strerror(errno));
			goto out;
		}
	}
	if (ioctl(vm->fd, KVM_SET_PIT2, &s.pit) < 0) {
		failf(err, errlen, "KVM_SET_PIT2: %s", strerror(errno));
		goto out;
	}
	for (unsigned i = 0; i < s.n; i++)
		if (restore_cpu(&vm->vcpus[i], &c, &s.cpus[i], err, errlen) < 0)
			goto out;
	/* Only the clock: TSC_STABLE and HOST_TSC describe the saving host,
	 * REALTIME would add the time between save and restore. */
	struct kvm_clock_data clk = { .clock = s.clock.clock };
	if (ioctl(vm->fd, KVM_SET_CLOCK, &clk) < 0) {
		failf(err, errlen, "KVM_SET_CLOCK: %s", strerror(errno));
		goto out;
	}
	ret = 0;
out:
	kstate_free(&s);
	return ret;
}
