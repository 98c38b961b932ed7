// SPDX-License-Identifier: GPL-2.0-only
/*
 * test_vm_state.c - the KVM side of a snapshot (vmm/core/vm_state.h) on
 * real KVM, without a guest running: VMs are created in restore mode (no
 * kernel), their vCPUs given state through the KVM ioctls, saved, restored
 * into a second VM and read back there.  Covers the order KVM needs (the
 * TSC deadline after the LAPIC: set before it, KVM drops it and a restored
 * Linux guest's next timer never fires -- found by snapshot_linux) and
 * bad state.json parts, each refused with the field named.  Without
 * /dev/kvm every test is skipped, loudly.
 */
#include <criterion/criterion.h>

#include "core/vm.h"
#include "core/vm_state.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define MSR_IA32_TSC_DEADLINE 0x6e0
#define APIC_LVTT 0x320
#define APIC_TIMER_TSC_DEADLINE (2u << 17)

static struct vm *new_vm(unsigned ncpus)
{
	if (access("/dev/kvm", R_OK | W_OK) != 0)
		cr_skip_test("no /dev/kvm: the vm_state tests did NOT run");
	struct vm_config cfg = {
		.mem_size = 32ULL << 20, .nr_vcpus = ncpus, .backing = GMM_BACKING_ANON,
		.strategy = gmm_strategy_default(), .cpuid_filter = -1, .restore = true,
	};
	struct vm *vm;
	cr_assert_eq(vm_create(&cfg, &vm), 0, "vm_create in restore mode failed");
	return vm;
}

static uint64_t get_msr(struct vcpu *cpu, uint32_t index)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m = { .h.nmsrs = 1, .e.index = index };
	cr_assert_eq(ioctl(cpu->fd, KVM_GET_MSRS, &m), 1, "KVM_GET_MSRS 0x%x", index);
	return m.e.data;
}

static void set_msr(struct vcpu *cpu, uint32_t index, uint64_t v)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m = { .h.nmsrs = 1, .e = { .index = index, .data = v } };
	cr_assert_eq(ioctl(cpu->fd, KVM_SET_MSRS, &m), 1, "KVM_SET_MSRS 0x%x", index);
}

Test(vm_state, round_trip)
{
	struct vm *a = new_vm(2);
	for (unsigned i = 0; i < 2; i++) {
		struct vcpu *cpu = &a->vcpus[i];
		struct kvm_regs r;
		cr_assert_eq(ioctl(cpu->fd, KVM_GET_REGS, &r), 0);
		r.rax = 0x1234567890abcdefULL + i;
		r.r15 = 0xfedcba0987654321ULL;
		r.rip = 0xffffffff81000000ULL + i;
		cr_assert_eq(ioctl(cpu->fd, KVM_SET_REGS, &r), 0);
		/* The LAPIC timer in TSC-deadline mode, a deadline far ahead. */
		struct kvm_lapic_state l;
		cr_assert_eq(ioctl(cpu->fd, KVM_GET_LAPIC, &l), 0);
		*(uint32_t *)&l.regs[APIC_LVTT] = APIC_TIMER_TSC_DEADLINE | 0xec;
		cr_assert_eq(ioctl(cpu->fd, KVM_SET_LAPIC, &l), 0);
		set_msr(cpu, MSR_IA32_TSC_DEADLINE, get_msr(cpu, 0x10) + (1ULL << 50));
	}
	uint64_t deadline = get_msr(&a->vcpus[1], MSR_IA32_TSC_DEADLINE);
	cr_assert_neq(deadline, 0, "this KVM drops a TSC deadline in TSC-deadline mode");
	char err[512] = "";
	struct json_object *st = vm_state_save(a, err, sizeof(err));
	cr_assert_not_null(st, "%s", err);
	struct vm *b = new_vm(2);
	cr_assert_eq(vm_state_restore(b, st, err, sizeof(err)), 0, "%s", err);
	for (unsigned i = 0; i < 2; i++) {
		struct kvm_regs r;
		cr_assert_eq(ioctl(b->vcpus[i].fd, KVM_GET_REGS, &r), 0);
		cr_expect_eq(r.rax, 0x1234567890abcdefULL + i);
		cr_expect_eq(r.r15, 0xfedcba0987654321ULL);
		cr_expect_eq(r.rip, 0xffffffff81000000ULL + i);
		struct kvm_lapic_state l;
		cr_assert_eq(ioctl(b->vcpus[i].fd, KVM_GET_LAPIC, &l), 0);
		cr_expect_eq(*(uint32_t *)&l.regs[APIC_LVTT], APIC_TIMER_TSC_DEADLINE | 0xec);
	}
	uint64_t back = get_msr(&b->vcpus[1], MSR_IA32_TSC_DEADLINE);
	/* The TSC of the new VM may differ a little; the deadline is far. */
	cr_expect(back != 0, "the TSC deadline was lost in the restore (set before the LAPIC?)");
	/* A second save of the restored VM: the same vCPU registers. */
	struct json_object *st2 = vm_state_save(b, err, sizeof(err));
	cr_assert_not_null(st2, "%s", err);
	struct json_object *c1 = json_object_array_get_idx(json_object_object_get(st, "vcpus"), 0);
	struct json_object *c2 = json_object_array_get_idx(json_object_object_get(st2, "vcpus"), 0);
	cr_expect_str_eq(json_object_get_string(json_object_object_get(c1, "regs")),
			 json_object_get_string(json_object_object_get(c2, "regs")));
	cr_expect_str_eq(json_object_get_string(json_object_object_get(c1, "sregs")),
			 json_object_get_string(json_object_object_get(c2, "sregs")));
	json_object_put(st);
	json_object_put(st2);
	vm_destroy(a);
	vm_destroy(b);
}

/* A copy of a saved state with one change made by fn. */
static void refused(struct json_object *good, void (*fn)(struct json_object *), const char *want)
{
	struct json_object *st = NULL;
	json_object_deep_copy(good, &st, NULL);
	fn(st);
	struct vm *b = new_vm(1);
	char err[512] = "";
	cr_expect_eq(vm_state_restore(b, st, err, sizeof(err)), -1, "accepted (wanted: %s)", want);
	cr_expect(strstr(err, want), "error <%s> lacks <%s>", err, want);
	vm_destroy(b);
	json_object_put(st);
}

static struct json_object *cpu0(struct json_object *st)
{
	return json_object_array_get_idx(json_object_object_get(st, "vcpus"), 0);
}
static void two_cpus(struct json_object *st)
{
	struct json_object *c = NULL;
	json_object_deep_copy(cpu0(st), &c, NULL);
	json_object_array_add(json_object_object_get(st, "vcpus"), c);
}
static void short_regs(struct json_object *st)
{
	json_object_object_add(cpu0(st), "regs", json_object_new_string("00ff"));
}
static void bad_hex(struct json_object *st)
{
	const char *s = json_object_get_string(json_object_object_get(cpu0(st), "lapic"));
	char *t = strdup(s);
	t[10] = 'z';
	json_object_object_add(cpu0(st), "lapic", json_object_new_string(t));
	free(t);
}
static void no_sregs(struct json_object *st)
{
	json_object_object_del(cpu0(st), "sregs");
}
static void msr_string(struct json_object *st)
{
	json_object_array_add(json_object_object_get(cpu0(st), "msrs"), json_object_new_string("x"));
}
static void pit_int(struct json_object *st)
{
	json_object_object_add(st, "pit", json_object_new_int(5));
}
static void clock_negative(struct json_object *st)
{
	json_object_object_add(st, "clock", json_object_new_int(-5));
}
static void no_ioapic(struct json_object *st)
{
	json_object_object_del(json_object_object_get(st, "irqchip"), "ioapic");
}

Test(vm_state, bad_state_refused)
{
	struct vm *a = new_vm(1);
	char err[512] = "";
	struct json_object *st = vm_state_save(a, err, sizeof(err));
	cr_assert_not_null(st, "%s", err);
	vm_destroy(a);
	refused(st, two_cpus, "vm.vcpus: 2 vCPUs, the VM has 1");
	refused(st, short_regs, "vm.vcpus[0].regs");
	refused(st, bad_hex, "vm.vcpus[0].lapic: not hex");
	refused(st, no_sregs, "vm.vcpus[0].sregs: missing");
	refused(st, msr_string, "vm.vcpus[0].msrs");
	refused(st, pit_int, "vm.pit: not a string");
	refused(st, clock_negative, "vm.clock: negative");
	refused(st, no_ioapic, "vm.irqchip.ioapic: missing");
	json_object_put(st);
}
