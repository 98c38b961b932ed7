// SPDX-License-Identifier: GPL-2.0-only
/*
 * vm_state.c - the KVM side of a snapshot (vm_state.h): every vCPU, the
 * in-kernel irqchip, the PIT and kvmclock, to JSON and back.
 *
 * Save reads with the KVM_GET_* ioctls from the main thread while every
 * vCPU is parked outside KVM_RUN (vm_pause; vcpu.c completed each one's
 * pending I/O before it parked).  Restore first parses and checks the
 * whole object into host structures (vCPU count, every blob's length,
 * every field's type), and only then issues the KVM_SET_* ioctls, in the
 * order KVM needs:
 *   per VM:   KVM_SET_CLOCK; irqchip (PIC master, PIC slave, IOAPIC); PIT
 *   per vCPU: CPUID2 (the saved table: the guest keeps the CPU it saw);
 *             SREGS (mode, CR0/3/4, EFER: what REGS and MSRs are read in);
 *             REGS; FPU; XCRS before XSAVE (XSAVE checks XCR0); MSRs;
 *             LAPIC after the APIC base MSR; the TSC deadline MSR after the
 *             LAPIC (it is dropped unless the timer is in that mode);
 *             DEBUGREGS; VCPU_EVENTS (pending exceptions and interrupts);
 *             MP_STATE last.
 *
 * MSRs: KVM_GET_MSR_INDEX_LIST's list (what KVM saves and restores for
 * migration) read one by one at save, keeping those that read; the set is
 * written back as saved.  A KVM that cannot write one of them fails the
 * restore with its number named.
 *
 * Threads: main thread; see vm_state.h.
 */
#include "core/vm_state.h"
#include "core/log.h"
#include "core/state_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define MAX_MSRS 512

/* One vCPU's state as KVM hands it over. */
struct cpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_xsave *xsave;          /* NULL without KVM_CAP_XSAVE */
	size_t xsave_size;
	struct kvm_xcrs xcrs;
	bool has_xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_debugregs dregs;
	unsigned nmsrs;
	struct kvm_msr_entry msrs[MAX_MSRS];
	struct kvm_cpuid2 *cpuid;
};

static void cpu_state_free(struct cpu_state *c)
{
	free(c->xsave);
	free(c->cpuid);
	c->xsave = NULL;
	c->cpuid = NULL;
}

static size_t xsave_size(struct vm *vm)
{
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) <= 0)
		return 0;
#ifdef KVM_CAP_XSAVE2
	int n = ioctl(vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	if (n > (int)sizeof(struct kvm_xsave))
		return (size_t)n;
#endif
	return sizeof(struct kvm_xsave);
}

/* The MSR numbers KVM migrates. */
static int msr_index_list(struct vm *vm, uint32_t *out, unsigned *n)
{
	struct {
		struct kvm_msr_list l;
		uint32_t idx[MAX_MSRS];
	} m;
	m.l.nmsrs = MAX_MSRS;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &m) < 0)
		return -1;
	*n = m.l.nmsrs < MAX_MSRS ? m.l.nmsrs : MAX_MSRS;
	memcpy(out, m.idx, *n * sizeof(uint32_t));
	return 0;
}

static int get_cpu(struct vm *vm, struct vcpu *cpu, const uint32_t *idx, unsigned nidx,
		   size_t xs, struct cpu_state *c, char *err, size_t errlen)
{
	const char *what = NULL;
	memset(c, 0, sizeof(*c));
	if (ioctl(cpu->fd, KVM_GET_REGS, &c->regs) < 0)
		what = "KVM_GET_REGS";
	else if (ioctl(cpu->fd, KVM_GET_SREGS, &c->sregs) < 0)
		what = "KVM_GET_SREGS";
	else if (ioctl(cpu->fd, KVM_GET_FPU, &c->fpu) < 0)
		what = "KVM_GET_FPU";
	else if (ioctl(cpu->fd, KVM_GET_LAPIC, &c->lapic) < 0)
		what = "KVM_GET_LAPIC";
	else if (ioctl(cpu->fd, KVM_GET_VCPU_EVENTS, &c->events) < 0)
		what = "KVM_GET_VCPU_EVENTS";
	else if (ioctl(cpu->fd, KVM_GET_MP_STATE, &c->mp) < 0)
		what = "KVM_GET_MP_STATE";
	else if (ioctl(cpu->fd, KVM_GET_DEBUGREGS, &c->dregs) < 0)
		what = "KVM_GET_DEBUGREGS";
	if (!what && xs) {
		c->xsave = calloc(1, xs);
		c->xsave_size = xs;
		if (!c->xsave)
			what = "out of memory";
#ifdef KVM_GET_XSAVE2
		else if (xs > sizeof(struct kvm_xsave) && ioctl(cpu->fd, KVM_GET_XSAVE2, c->xsave) < 0)
			what = "KVM_GET_XSAVE2";
#endif
		else if (xs == sizeof(struct kvm_xsave) && ioctl(cpu->fd, KVM_GET_XSAVE, c->xsave) < 0)
			what = "KVM_GET_XSAVE";
	}
	if (!what && ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0) {
		c->has_xcrs = true;
		if (ioctl(cpu->fd, KVM_GET_XCRS, &c->xcrs) < 0)
			what = "KVM_GET_XCRS";
	}
	/* One MSR at a time: KVM_GET_MSRS stops at the first it cannot read. */
	for (unsigned i = 0; !what && i < nidx; i++) {
		struct {
			struct kvm_msrs h;
			struct kvm_msr_entry e;
		} m = { .h.nmsrs = 1, .e.index = idx[i] };
		if (ioctl(cpu->fd, KVM_GET_MSRS, &m) == 1)
			c->msrs[c->nmsrs++] = m.e;
	}
	if (!what && vm->cpuid) {
		size_t sz = sizeof(*vm->cpuid) + vm->cpuid->nent * sizeof(struct kvm_cpuid_entry2);
		c->cpuid = malloc(sz);
		if (!c->cpuid)
			what = "out of memory";
		else
			memcpy(c->cpuid, vm->cpuid, sz);
	}
	if (what) {
		snprintf(err, errlen, "vcpu%u: %s: %s", cpu->index, what, strerror(errno));
		cpu_state_free(c);
		return -1;
	}
	return 0;
}

static struct json_object *cpu_json(const struct cpu_state *c)
{
	struct json_object *o = json_object_new_object(), *msrs = json_object_new_array();
	bool ok = o && msrs;
	ok = ok && !sj_set_hex(o, "regs", &c->regs, sizeof(c->regs));
	ok = ok && !sj_set_hex(o, "sregs", &c->sregs, sizeof(c->sregs));
	ok = ok && !sj_set_hex(o, "fpu", &c->fpu, sizeof(c->fpu));
	if (c->xsave)
		ok = ok && !sj_set_hex(o, "xsave", c->xsave, c->xsave_size);
	if (c->has_xcrs)
		ok = ok && !sj_set_hex(o, "xcrs", &c->xcrs, sizeof(c->xcrs));
	ok = ok && !sj_set_hex(o, "lapic", &c->lapic, sizeof(c->lapic));
	ok = ok && !sj_set_hex(o, "events", &c->events, sizeof(c->events));
	ok = ok && !sj_set_u64(o, "mp_state", c->mp.mp_state);
	ok = ok && !sj_set_hex(o, "debugregs", &c->dregs, sizeof(c->dregs));
	if (c->cpuid)
		ok = ok && !sj_set_hex(o, "cpuid", c->cpuid->entries,
				       c->cpuid->nent * sizeof(struct kvm_cpuid_entry2));
	for (unsigned i = 0; ok && i < c->nmsrs; i++) {
		struct json_object *e = json_object_new_array();
		ok = e && json_object_array_add(e, json_object_new_uint64(c->msrs[i].index)) == 0 &&
		     json_object_array_add(e, json_object_new_uint64(c->msrs[i].data)) == 0 &&
		     json_object_array_add(msrs, e) == 0;
		if (!ok)
			json_object_put(e);
	}
	if (ok) {
		ok = !sj_set_obj(o, "msrs", msrs);
		msrs = NULL;
	}
	json_object_put(msrs);
	if (!ok) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

struct json_object *vm_state_save(struct vm *vm, char *err, size_t errlen)
{
	static uint32_t idx[MAX_MSRS];
	unsigned nidx = 0;
	if (msr_index_list(vm, idx, &nidx) < 0) {
		snprintf(err, errlen, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
		return NULL;
	}
	size_t xs = xsave_size(vm);
	struct json_object *root = json_object_new_object(), *cpus = json_object_new_array();
	if (!root || !cpus || sj_set_obj(root, "vcpus", cpus) < 0) {
		json_object_put(root);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (unsigned i = 0; i < vm->cfg.nr_vcpus; i++) {
		struct cpu_state *c = malloc(sizeof(*c));
		if (!c) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		if (get_cpu(vm, &vm->vcpus[i], idx, nidx, xs, c, err, errlen) < 0) {
			free(c);
			goto fail;
		}
		struct json_object *o = cpu_json(c);
		cpu_state_free(c);
		free(c);
		if (!o || json_object_array_add(cpus, o) < 0) {
			json_object_put(o);
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	static const struct { unsigned id; const char *name; } chips[] = {
		{ KVM_IRQCHIP_PIC_MASTER, "pic_master" },
		{ KVM_IRQCHIP_PIC_SLAVE, "pic_slave" },
		{ KVM_IRQCHIP_IOAPIC, "ioapic" },
	};
	struct json_object *irq = json_object_new_object();
	if (sj_set_obj(root, "irqchip", irq) < 0)
		goto oom;
	for (size_t i = 0; i < sizeof(chips) / sizeof(chips[0]); i++) {
		struct kvm_irqchip chip = { .chip_id = chips[i].id };
		if (ioctl(vm->fd, KVM_GET_IRQCHIP, &chip) < 0) {
			snprintf(err, errlen, "KVM_GET_IRQCHIP %s: %s", chips[i].name, strerror(errno));
			goto fail;
		}
		if (sj_set_hex(irq, chips[i].name, &chip.chip, sizeof(chip.chip)) < 0)
			goto oom;
	}
	struct kvm_pit_state2 pit;
	if (ioctl(vm->fd, KVM_GET_PIT2, &pit) < 0) {
		snprintf(err, errlen, "KVM_GET_PIT2: %s", strerror(errno));
		goto fail;
	}
	if (sj_set_hex(root, "pit", &pit, sizeof(pit)) < 0)
		goto oom;
	struct kvm_clock_data clock = { 0 };
	if (ioctl(vm->fd, KVM_GET_CLOCK, &clock) < 0) {
		snprintf(err, errlen, "KVM_GET_CLOCK: %s", strerror(errno));
		goto fail;
	}
	if (sj_set_u64(root, "clock", clock.clock) < 0)
		goto oom;
	return root;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	json_object_put(root);
	return NULL;
}

/* ---- restore ----------------------------------------------------------- */

static int parse_cpu(struct json_object *o, unsigned i, size_t xs, bool xcrs, struct cpu_state *c,
		     char *err, size_t errlen)
{
	char where[40];
	snprintf(where, sizeof(where), "vm.vcpus[%u]", i);
	memset(c, 0, sizeof(*c));
	uint64_t mp;
	struct json_object *msrs;
	if (!json_object_is_type(o, json_type_object)) {
		snprintf(err, errlen, "%s: not an object", where);
		return -1;
	}
	if (sj_get_hex(o, "regs", &c->regs, sizeof(c->regs), where, err, errlen) < 0 ||
	    sj_get_hex(o, "sregs", &c->sregs, sizeof(c->sregs), where, err, errlen) < 0 ||
	    sj_get_hex(o, "fpu", &c->fpu, sizeof(c->fpu), where, err, errlen) < 0 ||
	    sj_get_hex(o, "lapic", &c->lapic, sizeof(c->lapic), where, err, errlen) < 0 ||
	    sj_get_hex(o, "events", &c->events, sizeof(c->events), where, err, errlen) < 0 ||
	    sj_get_hex(o, "debugregs", &c->dregs, sizeof(c->dregs), where, err, errlen) < 0 ||
	    sj_get_uint(o, "mp_state", KVM_MP_STATE_AP_RESET_HOLD, &mp, where, err, errlen) < 0 ||
	    sj_get_array(o, "msrs", &msrs, where, err, errlen) < 0)
		return -1;
	c->mp.mp_state = (uint32_t)mp;
	struct json_object *v;
	if (json_object_object_get_ex(o, "xsave", &v)) {
		if (!xs) {
			snprintf(err, errlen, "%s.xsave: this KVM has no XSAVE", where);
			return -1;
		}
		/* A smaller saved area (KVM_GET_XSAVE's 4 KiB) fits a larger one. */
		size_t n = (size_t)json_object_get_string_len(v) / 2;
		if (!json_object_is_type(v, json_type_string) || n < sizeof(struct kvm_xsave) || n > xs) {
			snprintf(err, errlen, "%s.xsave: %zu bytes, this KVM takes %zu to %zu", where, n,
				 sizeof(struct kvm_xsave), xs);
			return -1;
		}
		c->xsave = calloc(1, xs);
		c->xsave_size = xs;
		if (!c->xsave || sj_get_hex(o, "xsave", c->xsave, n, where, err, errlen) < 0) {
			if (!c->xsave)
				snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	if (json_object_object_get_ex(o, "xcrs", &v)) {
		if (!xcrs) {
			snprintf(err, errlen, "%s.xcrs: this KVM has no XCRs", where);
			return -1;
		}
		c->has_xcrs = true;
		if (sj_get_hex(o, "xcrs", &c->xcrs, sizeof(c->xcrs), where, err, errlen) < 0)
			return -1;
		if (c->xcrs.nr_xcrs > KVM_MAX_XCRS) {
			snprintf(err, errlen, "%s.xcrs: %u registers, at most %d", where, c->xcrs.nr_xcrs,
				 KVM_MAX_XCRS);
			return -1;
		}
	}
	if (json_object_object_get_ex(o, "cpuid", &v)) {
		size_t n = (size_t)json_object_get_string_len(v) / 2;
		size_t ent = sizeof(struct kvm_cpuid_entry2);
		if (!json_object_is_type(v, json_type_string) || n == 0 || n % ent || n / ent > 256) {
			snprintf(err, errlen, "%s.cpuid: %zu bytes is not 1 to 256 entries", where, n);
			return -1;
		}
		c->cpuid = calloc(1, sizeof(*c->cpuid) + n);
		if (!c->cpuid) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		c->cpuid->nent = (uint32_t)(n / ent);
		if (sj_get_hex(o, "cpuid", c->cpuid->entries, n, where, err, errlen) < 0)
			return -1;
	}
	size_t n = json_object_array_length(msrs);
	if (n > MAX_MSRS) {
		snprintf(err, errlen, "%s.msrs: %zu MSRs, at most %d", where, n, MAX_MSRS);
		return -1;
	}
	for (size_t k = 0; k < n; k++) {
		struct json_object *e = json_object_array_get_idx(msrs, k), *a, *b;
		if (!json_object_is_type(e, json_type_array) || json_object_array_length(e) != 2 ||
		    !json_object_is_type(a = json_object_array_get_idx(e, 0), json_type_int) ||
		    !json_object_is_type(b = json_object_array_get_idx(e, 1), json_type_int) ||
		    json_object_get_int64(a) < 0 || json_object_get_uint64(a) > UINT32_MAX ||
		    (json_object_get_int64(b) < 0 && json_object_get_uint64(b) == 0)) {
			snprintf(err, errlen, "%s.msrs[%zu]: not [index, value]", where, k);
			return -1;
		}
		c->msrs[k].index = (uint32_t)json_object_get_uint64(a);
		c->msrs[k].data = json_object_get_uint64(b);
	}
	c->nmsrs = (unsigned)n;
	return 0;
}

#define MSR_IA32_TSC_DEADLINE 0x6e0

static int set_msr(struct vcpu *cpu, const struct kvm_msr_entry *e, char *err, size_t errlen)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m = { .h.nmsrs = 1, .e = *e };
	if (ioctl(cpu->fd, KVM_SET_MSRS, &m) != 1) {
		snprintf(err, errlen, "vcpu%u: KVM_SET_MSRS: MSR 0x%x (value 0x%llx) refused",
			 cpu->index, e->index, (unsigned long long)e->data);
		return -1;
	}
	return 0;
}

static int set_cpu(struct vcpu *cpu, struct cpu_state *c, char *err, size_t errlen)
{
	const char *what = NULL;
	if (c->cpuid && ioctl(cpu->fd, KVM_SET_CPUID2, c->cpuid) < 0)
		what = "KVM_SET_CPUID2";
	else if (ioctl(cpu->fd, KVM_SET_SREGS, &c->sregs) < 0)
		what = "KVM_SET_SREGS";
	else if (ioctl(cpu->fd, KVM_SET_REGS, &c->regs) < 0)
		what = "KVM_SET_REGS";
	else if (ioctl(cpu->fd, KVM_SET_FPU, &c->fpu) < 0)
		what = "KVM_SET_FPU";
	else if (c->has_xcrs && ioctl(cpu->fd, KVM_SET_XCRS, &c->xcrs) < 0)
		what = "KVM_SET_XCRS";
	else if (c->xsave && ioctl(cpu->fd, KVM_SET_XSAVE, c->xsave) < 0)
		what = "KVM_SET_XSAVE";
	if (what) {
		snprintf(err, errlen, "vcpu%u: %s: %s", cpu->index, what, strerror(errno));
		return -1;
	}
	for (unsigned i = 0; i < c->nmsrs; i++) {
		if (c->msrs[i].index != MSR_IA32_TSC_DEADLINE && set_msr(cpu, &c->msrs[i], err, errlen) < 0)
			return -1;
	}
	if (ioctl(cpu->fd, KVM_SET_LAPIC, &c->lapic) < 0) {
		snprintf(err, errlen, "vcpu%u: KVM_SET_LAPIC: %s", cpu->index, strerror(errno));
		return -1;
	}
	/* The TSC deadline only counts once the LAPIC's timer is in
	 * TSC-deadline mode: after KVM_SET_LAPIC (QEMU orders it so too); set
	 * before, KVM drops it and the guest's next timer never fires. */
	for (unsigned i = 0; i < c->nmsrs; i++)
		if (c->msrs[i].index == MSR_IA32_TSC_DEADLINE && set_msr(cpu, &c->msrs[i], err, errlen) < 0)
			return -1;
	if (ioctl(cpu->fd, KVM_SET_DEBUGREGS, &c->dregs) < 0)
		what = "KVM_SET_DEBUGREGS";
	else if (ioctl(cpu->fd, KVM_SET_VCPU_EVENTS, &c->events) < 0)
		what = "KVM_SET_VCPU_EVENTS";
	else if (ioctl(cpu->fd, KVM_SET_MP_STATE, &c->mp) < 0)
		what = "KVM_SET_MP_STATE";
	if (what) {
		snprintf(err, errlen, "vcpu%u: %s: %s", cpu->index, what, strerror(errno));
		return -1;
	}
	return 0;
}

int vm_state_restore(struct vm *vm, struct json_object *state, char *err, size_t errlen)
{
	struct json_object *cpus, *irq;
	uint64_t clock;
	if (sj_get_array(state, "vcpus", &cpus, "vm", err, errlen) < 0 ||
	    sj_get_obj(state, "irqchip", &irq, "vm", err, errlen) < 0 ||
	    sj_get_u64(state, "clock", &clock, "vm", err, errlen) < 0)
		return -1;
	size_t n = json_object_array_length(cpus);
	if (n != vm->cfg.nr_vcpus) {
		snprintf(err, errlen, "vm.vcpus: %zu vCPUs, the VM has %u", n, vm->cfg.nr_vcpus);
		return -1;
	}
	static const struct { unsigned id; const char *name; } chips[] = {
		{ KVM_IRQCHIP_PIC_MASTER, "pic_master" },
		{ KVM_IRQCHIP_PIC_SLAVE, "pic_slave" },
		{ KVM_IRQCHIP_IOAPIC, "ioapic" },
	};
	struct kvm_irqchip chip[3];
	struct kvm_pit_state2 pit;
	for (size_t i = 0; i < 3; i++) {
		memset(&chip[i], 0, sizeof(chip[i]));
		chip[i].chip_id = chips[i].id;
		if (sj_get_hex(irq, chips[i].name, &chip[i].chip, sizeof(chip[i].chip), "vm.irqchip",
			       err, errlen) < 0)
			return -1;
	}
	if (sj_get_hex(state, "pit", &pit, sizeof(pit), "vm", err, errlen) < 0)
		return -1;
	size_t xs = xsave_size(vm);
	bool xcrs = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
	struct cpu_state *c = calloc(n, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int ret = -1;
	for (size_t i = 0; i < n; i++)
		if (parse_cpu(json_object_array_get_idx(cpus, i), (unsigned)i, xs, xcrs, &c[i], err,
			      errlen) < 0)
			goto out;
	/* Everything parsed: now KVM. */
	struct kvm_clock_data cd = { .clock = clock };
	if (ioctl(vm->fd, KVM_SET_CLOCK, &cd) < 0) {
		snprintf(err, errlen, "KVM_SET_CLOCK: %s", strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < 3; i++) {
		if (ioctl(vm->fd, KVM_SET_IRQCHIP, &chip[i]) < 0) {
			snprintf(err, errlen, "KVM_SET_IRQCHIP %s: %s", chips[i].name, strerror(errno));
			goto out;
		}
	}
	if (ioctl(vm->fd, KVM_SET_PIT2, &pit) < 0) {
		snprintf(err, errlen, "KVM_SET_PIT2: %s", strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (set_cpu(&vm->vcpus[i], &c[i], err, errlen) < 0)
			goto out;
	ret = 0;
out:
	for (size_t i = 0; i < n; i++)
		cpu_state_free(&c[i]);
	free(c);
	return ret;
}
