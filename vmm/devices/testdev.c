// SPDX-License-Identifier: GPL-2.0-only
/*
 * testdev.c - exits whose handlers walk guest memory (testimg.h), the way
 * virtio back ends will: the guest names a buffer by GPA and length, and
 * every port or MMIO access reads or writes it through guestmm from the
 * exiting vCPU's walk section.  Nothing is cached on the side: each access
 * translates again.
 *
 * The guest is untrusted: a GPA outside RAM, a length over 4 KiB or a range
 * that runs into unmapped memory reads as all-ones and stores nothing.
 * State (the buffer's GPA and length) is per VM, guarded by a mutex.
 */
#include "core/bus.h"
#include "devices/devices.h"
#include "core/vm.h"

#include <pthread.h>
#include <string.h>
#include <testimg.h>

#define MAX_LEN 4096

static struct {
	pthread_mutex_t lock;
	uint64_t gpa;
	uint32_t len;
} td = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Called inside the vCPU's walk section (vcpu.c). */
static uint32_t checksum(struct vcpu *cpu, uint64_t gpa, uint32_t len)
{
	uint8_t buf[MAX_LEN];
	if (len > MAX_LEN || gmm_read(cpu->walker, gpa, buf, len) < 0)
		return 0xffffffffu;
	return testimg_checksum(buf, len);
}

static void td_pio(void *opaque, struct vcpu *cpu, uint64_t off, uint8_t *data, unsigned len,
		   bool is_write)
{
	(void)opaque;
	uint32_t v = 0;
	memcpy(&v, data, len < 4 ? len : 4);
	pthread_mutex_lock(&td.lock);
	uint64_t gpa = td.gpa;
	uint32_t n = td.len;
	if (is_write) {
		if (off == 0)
			td.gpa = (td.gpa & ~0xffffffffULL) | v;
		else if (off == 4)
			td.gpa = (td.gpa & 0xffffffffULL) | ((uint64_t)v << 32);
		else if (off == 8)
			td.len = v;
		pthread_mutex_unlock(&td.lock);
		return;
	}
	pthread_mutex_unlock(&td.lock);
	v = off == 8 ? checksum(cpu, gpa, n) : 0xffffffffu;
	memcpy(data, &v, len < 4 ? len : 4);
}

static void td_mmio(void *opaque, struct vcpu *cpu, uint64_t off, uint8_t *data, unsigned len,
		    bool is_write)
{
	(void)opaque;
	pthread_mutex_lock(&td.lock);
	uint64_t gpa = td.gpa;
	uint32_t n = td.len;
	pthread_mutex_unlock(&td.lock);
	if (is_write) {
		if (off == TESTDEV_MMIO_STORE && len == 4)
			gmm_write(cpu->walker, gpa, data, 4); /* unmapped: nothing stored */
		return;
	}
	uint32_t v = off == TESTDEV_MMIO_SUM ? checksum(cpu, gpa, n) : 0xffffffffu;
	memset(data, 0xff, len);
	memcpy(data, &v, len < 4 ? len : 4);
}

int testdev_init(struct vm *vm)
{
	(void)vm;
	pthread_mutex_lock(&td.lock);
	td.gpa = 0;
	td.len = 0;
	pthread_mutex_unlock(&td.lock);
	int ret = bus_register(BUS_PIO, TESTDEV_PORT_GPA_LO, 12, td_pio, NULL, "testdev");
	return ret < 0 ? ret : bus_register(BUS_MMIO, TESTDEV_MMIO, 4096, td_mmio, NULL, "testdev");
}
