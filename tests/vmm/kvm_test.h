/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kvm_test.h - what the Criterion tests that run VMs share: skip loudly
 * (and count as skipped) without /dev/kvm, a millisecond clock, and the
 * test images' debug-exit port (the VM stops with the code written).
 */
#ifndef VMM_TEST_KVM_TEST_H
#define VMM_TEST_KVM_TEST_H

#include <criterion/criterion.h>

#include "core/vcpu.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline bool kvm_test_available(const char *test)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "\n*** SKIPPED: %s needs /dev/kvm (%s) ***\n\n", test, strerror(errno));
		return false;
	}
	close(fd);
	return true;
}

#define NEED_KVM()                                                                     \
	do {                                                                           \
		if (!kvm_test_available(__FILE__))                                     \
			cr_skip_test("no /dev/kvm");                                   \
	} while (0)

static inline double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A bus handler for the debug-exit port: a write stops the VM with the
 * code's low byte as its status; reads see 0xff. */
static inline void kvm_test_exit_io(void *opaque, struct vcpu *cpu, uint64_t off, uint8_t *data,
				    unsigned len, bool is_write)
{
	(void)opaque;
	(void)off;
	if (!is_write) {
		memset(data, 0xff, len);
		return;
	}
	uint32_t code = 0;
	memcpy(&code, data, len < 4 ? len : 4);
	vm_stop(cpu->vm, (int)(code & 0xff), "guest wrote %u to the debug-exit port", code);
}

#endif
