// SPDX-License-Identifier: GPL-2.0-only
/*
 * boot.c - the loaders' front door: read the kernel and initrd files (with
 * clear errors: missing, unreadable, empty, larger than guest RAM), detect
 * the image kind from its bytes, dispatch to boot_bzimage.c, boot_pvh.c or
 * boot_testimg.c, add the MP table for multi-vCPU Linux guests, and answer
 * boot_cpu_state().  The e820 map is e820.c's.
 */
#include "boot/boot.h"
#include "boot/boot_x86.h"
#include "boot/loaders.h"
#include "boot/mptable.h"
#include "testimg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *image_kind_name(enum image_kind k)
{
	switch (k) {
	case IMAGE_BZIMAGE:
		return "bzImage";
	case IMAGE_PVH:
		return "pvh";
	case IMAGE_TESTIMG:
		return "testimg";
	case IMAGE_UNKNOWN:
		break;
	}
	return "unknown";
}

/* Contract (boot.h): the kind from the bytes alone; IMAGE_UNKNOWN with the
 * reason in err.  ELF files are fully validated (headers, notes, segment
 * file ranges) so that a loader never meets a corrupt one. */
enum image_kind image_detect(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = 0;
	if (!buf || !len) {
		boot_fail(0, err, errlen, "the file is empty");
		return IMAGE_UNKNOWN;
	}
	if (len >= 4 && !memcmp(buf, "\x7f" "ELF", 4)) {
		struct elf_image img;
		if (elf_parse(buf, len, &img, err, errlen) < 0)
			return IMAGE_UNKNOWN;
		if (img.has_testimg_note)
			return IMAGE_TESTIMG;
		if (img.has_pvh_note)
			return IMAGE_PVH;
		boot_fail(0, err, errlen,
			  "ELF x86-64 executable with no PVH entry note (Xen "
			  "XEN_ELFNOTE_PHYS32_ENTRY) and no %s note: neither a PVH vmlinux "
			  "nor a test image", TESTIMG_NOTE_NAME);
		return IMAGE_UNKNOWN;
	}
	int r = bzimage_check(buf, len, err, errlen);
	if (r == 1)
		return IMAGE_BZIMAGE;
	if (r == 0) {
		/* Not a bzImage at all: say what we looked for. */
		char why[160];
		snprintf(why, sizeof why, "%s", err && errlen ? err : "");
		boot_fail(0, err, errlen,
			  "unrecognised image: not an ELF (no \\x7fELF magic) and %s", why);
	}
	return IMAGE_UNKNOWN;
}

/* Read a whole regular file of at most max bytes.  what = "kernel" or
 * "initrd" (for messages).  0, or -errno with "<what> <path>: ..." in err.
 * The open never blocks (O_NONBLOCK: a FIFO or a device put at the path
 * opens at once, and fstat refuses it before anything is read). */
static int read_file(const char *what, const char *path, uint64_t max, uint8_t **out,
		     size_t *outlen, char *err, size_t errlen)
{
	char s1[32], s2[32];
	*out = NULL;
	*outlen = 0;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		return boot_fail(-e, err, errlen, "cannot open %s %s: %s", what, path, strerror(e));
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return boot_fail(-e, err, errlen, "cannot stat %s %s: %s", what, path, strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return boot_fail(-EINVAL, err, errlen, "%s %s is not a regular file", what, path);
	}
	if (st.st_size == 0) {
		close(fd);
		return boot_fail(-EINVAL, err, errlen, "%s %s is empty", what, path);
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return boot_fail(-E2BIG, err, errlen, "%s %s is %s, larger than the guest RAM "
				 "it must fit in (%s)", what, path,
				 boot_size_str((uint64_t)st.st_size, s1, sizeof s1),
				 boot_size_str(max, s2, sizeof s2));
	}
	size_t len = (size_t)st.st_size;
	uint8_t *buf = malloc(len);
	if (!buf) {
		close(fd);
		return boot_fail(-ENOMEM, err, errlen, "cannot read %s %s: out of memory for %s",
				 what, path, boot_size_str(len, s1, sizeof s1));
	}
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			free(buf);
			close(fd);
			return boot_fail(-e, err, errlen, "cannot read %s %s: %s", what, path,
					 strerror(e));
		}
		if (n == 0)
			break;  /* shrank under us: use what is there */
		got += (size_t)n;
	}
	close(fd);
	if (!got) {
		free(buf);
		return boot_fail(-EINVAL, err, errlen, "%s %s is empty", what, path);
	}
	*out = buf;
	*outlen = got;
	return 0;
}

/* Contract (boot.h): load cfg's files into ram and fill *plan; -errno and
 * one sentence naming the file in err on failure. */
int boot_load(const struct guest_ram *ram, const struct boot_config *cfg,
	      struct boot_plan *plan, char *err, size_t errlen)
{
	char s[32];
	if (err && errlen)
		err[0] = 0;
	memset(plan, 0, sizeof *plan);
	if (!ram || !ram->w || !cfg || !cfg->kernel || !cfg->kernel[0])
		return boot_fail(-EINVAL, err, errlen, "boot: no kernel image given");
	if (cfg->nr_vcpus == 0)
		return boot_fail(-EINVAL, err, errlen, "boot: at least one vCPU is needed");
	if (ram->low_size > BOOT_LOW_RAM_MAX)
		return boot_fail(-EINVAL, err, errlen,
				 "boot: low guest RAM ends at %#llx, above the 3 GiB MMIO hole",
				 (unsigned long long)ram->low_size);
	if (ram->low_size < 2 * MiB)
		return boot_fail(-ENOSPC, err, errlen,
				 "boot: %s of guest RAM is too little to boot anything (need 2 MiB)",
				 boot_size_str(ram->low_size, s, sizeof s));

	struct boot_files f = {
		.kernel_path = cfg->kernel,
		.initrd_path = cfg->initrd && cfg->initrd[0] ? cfg->initrd : NULL,
		.cmdline = cfg->cmdline ? cfg->cmdline : "",
		.nr_vcpus = cfg->nr_vcpus,
	};
	uint8_t *kbuf = NULL, *ibuf = NULL;
	int ret = read_file("kernel", f.kernel_path, ram->low_size + ram->high_size, &kbuf,
			    &f.kernel_len, err, errlen);
	if (ret < 0)
		return ret;
	f.kernel = kbuf;

	char why[384];
	enum image_kind kind = image_detect(kbuf, f.kernel_len, why, sizeof why);
	if (kind == IMAGE_UNKNOWN) {
		ret = boot_fail(-EINVAL, err, errlen, "kernel %s: %s", f.kernel_path, why);
		goto out;
	}
	if (f.initrd_path) {
		if (kind == IMAGE_TESTIMG) {
			ret = boot_fail(-EINVAL, err, errlen,
					"kernel %s is a test image: test images take no initrd (%s)",
					f.kernel_path, f.initrd_path);
			goto out;
		}
		ret = read_file("initrd", f.initrd_path, ram->low_size, &ibuf, &f.initrd_len,
				err, errlen);
		if (ret < 0)
			goto out;
		f.initrd = ibuf;
	}

	plan->kind = kind;
	switch (kind) {
	case IMAGE_BZIMAGE:
		ret = bzimage_load(ram, &f, plan, err, errlen);
		break;
	case IMAGE_PVH:
		ret = pvh_load(ram, &f, plan, err, errlen);
		break;
	case IMAGE_TESTIMG:
		ret = testimg_load(ram, &f, plan, err, errlen);
		break;
	default:
		ret = -EINVAL;
		break;
	}
	/* Every Linux guest gets an MP table, one vCPU too: without one the
	 * kernel scans the BIOS area for it 16 bytes at a time, each step an
	 * early_memremap + unmap (4 s under an emulating KVM), and runs its
	 * interrupts through the PIC instead of the IOAPIC. */
	if (ret == 0 && (kind == IMAGE_BZIMAGE || kind == IMAGE_PVH)) {
		char why2[256];
		ret = mptable_write(ram, cfg->nr_vcpus, why2, sizeof why2);
		if (ret < 0)
			boot_fail(ret, err, errlen, "kernel %s: %s", f.kernel_path, why2);
	}
out:
	free(kbuf);
	free(ibuf);
	if (ret < 0)
		plan->kind = IMAGE_UNKNOWN;
	return ret;
}

/* Contract (boot.h): vCPU 0 gets the BSP state; test images start every
 * vCPU with its own RSI (index) and RSP (stack top); Linux APs wait for
 * INIT/SIPI (false). */
bool boot_cpu_state(const struct boot_plan *plan, unsigned index, struct boot_cpu *out)
{
	if (!plan || plan->kind == IMAGE_UNKNOWN)
		return false;
	if (index == 0) {
		*out = plan->bsp;
		return true;
	}
	if (!plan->all_vcpus_enter || plan->kind != IMAGE_TESTIMG || index >= TESTIMG_MAX_VCPUS)
		return false;
	testimg_cpu_state(plan, index, out);
	return true;
}

