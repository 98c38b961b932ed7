// SPDX-License-Identifier: GPL-2.0-only
/*
 * mptable.c - the MP table of mptable.h (Intel MultiProcessor Specification
 * 1.4, chapter 4: MP floating pointer structure and MP configuration table).
 *
 * The table is built in a host buffer, checksummed (every byte of the
 * floating pointer, and of the base configuration table, sums to 0 mod 256)
 * and written to guest memory in one go.
 *
 * IRQ 0: the brief for this file asked for ISA IRQ 0 -> IOAPIC pin 2 (the
 * QEMU/ACPI convention).  That convention holds only when the VMM installs
 * QEMU's GSI routing (GSI 0 -> IOAPIC pin 2).  This VMM keeps KVM's default
 * routing (virt/kvm/irqchip default_routing: GSI n -> IOAPIC pin n and PIC
 * n), and the in-kernel PIT raises GSI 0, i.e. IOAPIC pin 0; Firecracker,
 * with the same set-up, maps IRQ 0 -> pin 0.  So MPTABLE_IRQ0_PIN is 0;
 * make it 2 if vm.c ever installs QEMU-style routing.
 */
#include "boot/mptable.h"
#include "boot/boot_x86.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MPTABLE_IRQ0_PIN 0

#define MP_SPEC_REV 4                  /* 1.4 */
#define MP_PROCESSOR 0
#define MP_BUS 1
#define MP_IOAPIC 2
#define MP_INTSRC 3
#define MP_LINTSRC 4

#define MP_CPU_ENABLED 0x01
#define MP_CPU_BSP 0x02
#define MP_INT 0                       /* vectored interrupt (IOAPIC) */
#define MP_NMI 1
#define MP_EXTINT 3
#define MP_IRQ_CONFORMS 0x0000         /* polarity/trigger: as the bus says */
#define MP_IOAPIC_ENABLED 0x01

#define LAPIC_VERSION 0x14             /* KVM's local APIC */
#define IOAPIC_VERSION 0x11            /* KVM's IOAPIC */
#define CPU_SIGNATURE 0x600            /* family 6 */
#define CPU_FEATURES 0x201             /* FPU | APIC (CPUID.1:EDX) */
#define ISA_BUS_ID 0

struct mpf_intel {                     /* MP floating pointer structure */
	char signature[4];                 /* "_MP_" */
	uint32_t physptr;                  /* configuration table */
	uint8_t length;                    /* in 16-byte units: 1 */
	uint8_t specification;             /* 4 */
	uint8_t checksum;
	uint8_t feature1;                  /* 0: a configuration table is present */
	uint8_t feature2;                  /* bit 7: IMCR present (0: virtual wire) */
	uint8_t feature3, feature4, feature5;
} __attribute__((packed));
_Static_assert(sizeof(struct mpf_intel) == 16, "MP floating pointer");
_Static_assert(offsetof(struct mpf_intel, checksum) == 10, "mpf checksum");

struct mpc_table {                     /* MP configuration table header */
	char signature[4];                 /* "PCMP" */
	uint16_t length;                   /* base table, header included */
	uint8_t spec;
	uint8_t checksum;
	char oem[8];
	char productid[12];
	uint32_t oemptr;
	uint16_t oemsize;
	uint16_t oemcount;                 /* entries */
	uint32_t lapic;                    /* local APIC address */
	uint16_t ext_length;
	uint8_t ext_checksum;
	uint8_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_table) == 44, "MP configuration table header");
_Static_assert(offsetof(struct mpc_table, oemcount) == 34, "mpc entry count");
_Static_assert(offsetof(struct mpc_table, lapic) == 36, "mpc lapic");

struct mpc_cpu {
	uint8_t type;                      /* MP_PROCESSOR */
	uint8_t apicid;
	uint8_t apicver;
	uint8_t cpuflag;
	uint32_t cpufeature;               /* signature: stepping, model, family */
	uint32_t featureflag;
	uint32_t reserved[2];
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_cpu) == 20, "processor entry");

struct mpc_bus {
	uint8_t type;                      /* MP_BUS */
	uint8_t busid;
	char bustype[6];
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_bus) == 8, "bus entry");

struct mpc_ioapic {
	uint8_t type;                      /* MP_IOAPIC */
	uint8_t apicid;
	uint8_t apicver;
	uint8_t flags;
	uint32_t apicaddr;
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_ioapic) == 8, "IOAPIC entry");

struct mpc_intsrc {                    /* I/O and local interrupt entries */
	uint8_t type;                      /* MP_INTSRC or MP_LINTSRC */
	uint8_t irqtype;
	uint16_t irqflag;
	uint8_t srcbus;
	uint8_t srcbusirq;
	uint8_t dstapic;
	uint8_t dstirq;                    /* IOAPIC pin / LAPIC LINTn */
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_intsrc) == 8, "interrupt entry");

static uint8_t checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + b[i]);
	return (uint8_t)-sum;
}

/* Contract (mptable.h). */
int mptable_write(const struct guest_ram *ram, unsigned nr_vcpus, char *err, size_t errlen)
{
	if (nr_vcpus == 0 || nr_vcpus > MPTABLE_MAX_VCPUS)
		return boot_fail(-E2BIG, err, errlen,
				 "the MP table describes 1 to %u vCPUs, not %u",
				 MPTABLE_MAX_VCPUS, nr_vcpus);
	size_t table_len = sizeof(struct mpc_table) + nr_vcpus * sizeof(struct mpc_cpu) +
			   sizeof(struct mpc_bus) + sizeof(struct mpc_ioapic) +
			   (MPTABLE_ISA_IRQS + 2) * sizeof(struct mpc_intsrc);
	size_t total = sizeof(struct mpf_intel) + table_len;
	_Static_assert(sizeof(struct mpf_intel) + sizeof(struct mpc_table) +
		       MPTABLE_MAX_VCPUS * sizeof(struct mpc_cpu) + 16 +
		       (MPTABLE_ISA_IRQS + 2) * 8 <= MPTABLE_END - MPTABLE_GPA,
		       "the MP table fits below 1 MiB");
	if (MPTABLE_GPA + total > ram->low_size)
		return boot_fail(-ENOSPC, err, errlen,
				 "the MP table at %#llx needs guest RAM up to %#llx",
				 (unsigned long long)MPTABLE_GPA,
				 (unsigned long long)(MPTABLE_GPA + total));
	uint8_t *buf = calloc(1, total);
	if (!buf)
		return boot_fail(-ENOMEM, err, errlen, "the MP table: out of memory");

	struct mpf_intel *mpf = (struct mpf_intel *)buf;
	uint8_t *table = buf + sizeof *mpf;
	uint8_t *p = table + sizeof(struct mpc_table);
	uint16_t count = 0;

	for (unsigned i = 0; i < nr_vcpus; i++) {
		struct mpc_cpu c = {
			.type = MP_PROCESSOR,
			.apicid = (uint8_t)i,
			.apicver = LAPIC_VERSION,
			.cpuflag = MP_CPU_ENABLED | (i == 0 ? MP_CPU_BSP : 0),
			.cpufeature = CPU_SIGNATURE,
			.featureflag = CPU_FEATURES,
		};
		memcpy(p, &c, sizeof c);
		p += sizeof c;
		count++;
	}
	struct mpc_bus bus = { .type = MP_BUS, .busid = ISA_BUS_ID };
	memcpy(bus.bustype, "ISA   ", 6);
	memcpy(p, &bus, sizeof bus);
	p += sizeof bus;
	count++;

	uint8_t ioapic_id = (uint8_t)nr_vcpus;
	struct mpc_ioapic io = {
		.type = MP_IOAPIC,
		.apicid = ioapic_id,
		.apicver = IOAPIC_VERSION,
		.flags = MP_IOAPIC_ENABLED,
		.apicaddr = MPTABLE_IOAPIC_BASE,
	};
	memcpy(p, &io, sizeof io);
	p += sizeof io;
	count++;

	for (unsigned irq = 0; irq < MPTABLE_ISA_IRQS; irq++) {
		struct mpc_intsrc is = {
			.type = MP_INTSRC,
			.irqtype = MP_INT,
			.irqflag = MP_IRQ_CONFORMS,
			.srcbus = ISA_BUS_ID,
			.srcbusirq = (uint8_t)irq,
			.dstapic = ioapic_id,
			.dstirq = (uint8_t)(irq == 0 ? MPTABLE_IRQ0_PIN : irq),
		};
		memcpy(p, &is, sizeof is);
		p += sizeof is;
		count++;
	}
	/* The virtual wire: the 8259's ExtINT into the BSP's LINT0, NMI into
	 * every LAPIC's LINT1 (vcpu.c programs the LVTs to match). */
	struct mpc_intsrc lint[2] = {
		{ .type = MP_LINTSRC, .irqtype = MP_EXTINT, .irqflag = MP_IRQ_CONFORMS,
		  .srcbus = ISA_BUS_ID, .srcbusirq = 0, .dstapic = 0, .dstirq = 0 },
		{ .type = MP_LINTSRC, .irqtype = MP_NMI, .irqflag = MP_IRQ_CONFORMS,
		  .srcbus = ISA_BUS_ID, .srcbusirq = 0, .dstapic = 0xff, .dstirq = 1 },
	};
	memcpy(p, lint, sizeof lint);
	p += sizeof lint;
	count += 2;

	struct mpc_table h = {
		.signature = { 'P', 'C', 'M', 'P' },
		.length = (uint16_t)table_len,
		.spec = MP_SPEC_REV,
		.oem = { 'V', 'M', 'M', ' ', ' ', ' ', ' ', ' ' },
		.productid = { 'M', 'I', 'N', 'I', 'V', 'M', 'M', ' ', ' ', ' ', ' ', ' ' },
		.oemcount = count,
		.lapic = MPTABLE_LAPIC_BASE,
	};
	memcpy(table, &h, sizeof h);
	table[offsetof(struct mpc_table, checksum)] = checksum(table, table_len);

	struct mpf_intel f = {
		.signature = { '_', 'M', 'P', '_' },
		.physptr = (uint32_t)(MPTABLE_GPA + sizeof f),
		.length = 1,
		.specification = MP_SPEC_REV,
	};
	memcpy(mpf, &f, sizeof f);
	buf[offsetof(struct mpf_intel, checksum)] = checksum(mpf, sizeof f);

	int ret = boot_write(ram, MPTABLE_GPA, buf, total, "the MP table", err, errlen);
	free(buf);
	return ret;
}
