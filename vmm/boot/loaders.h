/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * loaders.h - the interface between boot.c, which reads and checks the
 * files and detects the image kind, and the loader of each kind
 * (boot_bzimage.c, boot_pvh.c, boot_testimg.c).  Both sides include it;
 * the loaders never call back into boot.c.
 */
#ifndef VMM_LOADERS_H
#define VMM_LOADERS_H

#include "boot/boot_types.h"

#include <stddef.h>
#include <stdint.h>

/* What boot.c hands every loader: the files already read and checked
 * (kernel detected as the loader's kind). */
struct boot_files {
	const char *kernel_path;
	const uint8_t *kernel;
	size_t kernel_len;
	const char *initrd_path;  /* NULL: none */
	const uint8_t *initrd;
	size_t initrd_len;
	const char *cmdline;      /* never NULL */
	unsigned nr_vcpus;
};

/* bzImage header checks (shared by image_detect and the loader):
 * 1 = a usable bzImage, 0 = no HdrS signature (not a bzImage at all),
 * -EINVAL = a bzImage we cannot boot; err says why in both non-1 cases. */
int bzimage_check(const uint8_t *buf, size_t len, char *err, size_t errlen);

int bzimage_load(const struct guest_ram *ram, const struct boot_files *f,
		 struct boot_plan *plan, char *err, size_t errlen);
int pvh_load(const struct guest_ram *ram, const struct boot_files *f,
	     struct boot_plan *plan, char *err, size_t errlen);
int testimg_load(const struct guest_ram *ram, const struct boot_files *f,
		 struct boot_plan *plan, char *err, size_t errlen);

/* The testimg per-vCPU part of boot_cpu_state(). */
void testimg_cpu_state(const struct boot_plan *plan, unsigned index, struct boot_cpu *out);

#endif
