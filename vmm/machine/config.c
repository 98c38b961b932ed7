// SPDX-License-Identifier: GPL-2.0-only
/*
 * config.c - a guest's configuration: defaults, copies, the console
 * mapping, and the checks `vmm run` and vm.create share (config.h).
 *
 * The checks read files (the kernel's bytes, the initrd's permissions) but
 * change nothing, except that a console or serial File is created (0600)
 * if it does not exist yet, the way `vmm run --serial file=P` always did.
 * No kernel, initrd or disk is opened before stat(2) says it is of the
 * type wanted, console files go through console_open_file(), and nothing
 * is opened in a way that can block (config.h).
 */
#include "machine/config.h"
#include "boot/boot.h"
#include "core/size.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const chr_names[] = {
	[CHR_OFF] = "Off", [CHR_NULL] = "Null", [CHR_PTY] = "Pty", [CHR_TTY] = "Tty",
	[CHR_FILE] = "File",
};

/* Contract (config.h). */
int config_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

void machine_config_init(struct machine_config *c)
{
	memset(c, 0, sizeof(*c));
	c->vm.mem_size = 256ULL << 20;
	c->vm.nr_vcpus = 1;
	c->vm.backing = GMM_BACKING_THP;
	c->vm.strategy = GMM_STRATEGY_DEFAULT;
	c->vm.cpuid_filter = -1;
	c->test_devices = -1;
	c->max_vcpus = 1;
	c->console.mode = CHR_OFF;
	c->serial.mode = CHR_TTY;
}

void machine_config_free(struct machine_config *c)
{
	free(c->kernel);
	free(c->initrd);
	free(c->cmdline);
	free(c->console.file);
	free(c->serial.file);
	c->kernel = c->initrd = c->cmdline = c->console.file = c->serial.file = NULL;
	for (unsigned i = 0; i < c->ndisks; i++) {
		free(c->disks[i].path);
		free(c->disks[i].serial);
	}
	memset(c->disks, 0, sizeof(c->disks));
	c->ndisks = 0;
}

static int dup_str(char **dst, const char *src)
{
	*dst = NULL;
	if (src && !(*dst = strdup(src)))
		return -1;
	return 0;
}

static int copy_disks(struct machine_config *dst, const struct machine_config *src)
{
	int ret = 0;
	for (unsigned i = 0; i < src->ndisks; i++)
		if (dup_str(&dst->disks[i].path, src->disks[i].path) < 0 ||
		    dup_str(&dst->disks[i].serial, src->disks[i].serial) < 0)
			ret = -1;
	return ret;
}

int machine_config_copy(struct machine_config *dst, const struct machine_config *src)
{
	*dst = *src;
	if (dup_str(&dst->kernel, src->kernel) < 0 || dup_str(&dst->initrd, src->initrd) < 0 ||
	    dup_str(&dst->cmdline, src->cmdline) < 0 ||
	    dup_str(&dst->console.file, src->console.file) < 0 ||
	    dup_str(&dst->serial.file, src->serial.file) < 0 || copy_disks(dst, src) < 0) {
		machine_config_free(dst);
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

void machine_config_reset_guest(struct machine_config *c)
{
	struct vm_config host = c->vm;
	int test_devices = c->test_devices;
	machine_config_free(c);
	machine_config_init(c);    /* zeroes the disks, balloon, hot-plug region */
	c->vm.backing = host.backing;
	c->vm.strategy = host.strategy;
	c->vm.prefault = host.prefault;
	c->vm.cpuid_filter = host.cpuid_filter;
	c->test_devices = test_devices;
	c->console.mode = CHR_TTY;
	c->serial.mode = CHR_NULL;
}

int chr_mode_parse(const char *s, enum chr_mode *out)
{
	for (unsigned i = 0; i < sizeof(chr_names) / sizeof(chr_names[0]); i++) {
		if (strcasecmp(s, chr_names[i]) == 0) {
			*out = (enum chr_mode)i;
			return 0;
		}
	}
	return -1;
}

const char *chr_mode_name(enum chr_mode m)
{
	return (unsigned)m < sizeof(chr_names) / sizeof(chr_names[0]) ? chr_names[m] : "?";
}

static bool discards(enum chr_mode m)
{
	return m == CHR_OFF || m == CHR_NULL;
}

void config_uart_console(const struct machine_config *c, struct console *out)
{
	memset(out, 0, sizeof(*out));
	out->out_fd = out->in_fd = out->hold_fd = -1;
	const struct chr_config *ch = discards(c->serial.mode) ? &c->console : &c->serial;
	if (c->console.mode == CHR_PTY || c->serial.mode == CHR_PTY) {
		out->kind = CONSOLE_PTY;
		return;
	}
	switch (ch->mode) {
	case CHR_TTY:
		out->kind = CONSOLE_STDIO;
		break;
	case CHR_FILE:
		out->kind = CONSOLE_FILE;
		snprintf(out->path, sizeof(out->path), "%s", ch->file ? ch->file : "");
		break;
	default:
		out->kind = CONSOLE_OFF;
		break;
	}
}

bool config_console_shares_uart(const struct machine_config *c)
{
	if (c->console.mode == CHR_PTY || discards(c->serial.mode))
		return true;
	if (c->console.mode == CHR_TTY && c->serial.mode == CHR_TTY)
		return true;
	return c->console.mode == CHR_FILE && c->serial.mode == CHR_FILE && c->console.file &&
	       c->serial.file && !strcmp(c->console.file, c->serial.file);
}

int config_check_memory(uint64_t size, enum gmm_backing backing, bool cli, char *err,
			size_t errlen)
{
	const char *name = cli ? "--memory" : "memory.size";
	uint64_t pg = gmm_backing_page_size(backing);
	char b1[32], b2[32];
	if (size < CONFIG_MIN_MEMORY)
		return config_fail(err, errlen, "%s: %s is below the minimum of 16M", name,
			    format_size(size, b1, sizeof(b1)));
	if (size > CONFIG_MAX_MEMORY)
		return config_fail(err, errlen, "%s: %s is more than 1T", name,
				   format_size(size, b1, sizeof(b1)));
	if (pg && size % pg)
		return config_fail(err, errlen, "%s: %s is not a multiple of the %s page size (%s)", name,
			    format_size(size, b1, sizeof(b1)), gmm_backing_name(backing),
			    format_size(pg, b2, sizeof(b2)));
	return 0;
}

/* Open path (flags: O_RDONLY or O_RDWR) if it is a regular file, or a
 * block device when blk: stat(2) first, so that a FIFO or a device is
 * never opened, then an open that cannot block (O_NONBLOCK: a FIFO put
 * there since opens at once) and fstat(2) on what was opened.  The fd
 * (O_NONBLOCK: no effect on reading a regular file or a block device), or
 * -errno (-EINVAL: the wrong type) with the reason in why. */
static int open_path(const char *path, int flags, bool blk, struct stat *st, char *why,
		     size_t whylen)
{
	const char *want = blk ? "not a regular file or block device" : "not a regular file";
	int fd = -1, e = EINVAL;
	if (stat(path, st) < 0) {
		e = errno;
	} else if (S_ISREG(st->st_mode) || (blk && S_ISBLK(st->st_mode))) {
		fd = open(path, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		e = errno;
		if (fd >= 0 && fstat(fd, st) == 0 &&
		    (S_ISREG(st->st_mode) || (blk && S_ISBLK(st->st_mode))))
			return fd;
		if (fd >= 0) {
			close(fd);
			e = EINVAL;
		}
	}
	snprintf(why, whylen, "%s", e == EINVAL ? want : strerror(e));
	return -e;
}

int config_check_kernel(const char *path, bool cli, char *err, size_t errlen)
{
	const char *name = cli ? "--kernel" : "kernel";
	struct stat st;
	char reason[128];
	int fd = open_path(path, O_RDONLY, false, &st, reason, sizeof(reason));
	if (fd < 0)
		return config_fail(err, errlen, "%s %s: %s", name, path, reason);
	if (st.st_size == 0) {
		close(fd);
		return config_fail(err, errlen, "%s %s: the file is empty", name, path);
	}
	size_t len = (size_t)st.st_size;
	uint8_t *buf = malloc(len);
	ssize_t got = buf ? pread(fd, buf, len, 0) : -1;
	close(fd);
	if (got != (ssize_t)len) {
		free(buf);
		return config_fail(err, errlen, "%s %s: cannot read it", name, path);
	}
	char why[256] = "";
	enum image_kind k = image_detect(buf, len, why, sizeof(why));
	free(buf);
	if (k == IMAGE_UNKNOWN)
		return config_fail(err, errlen, "%s %s: %s", name, path, why[0] ? why : "not a bootable image");
	return 0;
}

/* A File console: created (or opened as it is: nothing is truncated or
 * written here) now, so a bad path is refused before the VM exists.  field
 * is "serial" or "console". */
static int check_chr_file(const struct chr_config *ch, const char *field, bool cli, char *err,
			  size_t errlen)
{
	if (ch->mode != CHR_FILE)
		return 0;
	if (!ch->file || !ch->file[0])
		return config_fail(err, errlen, "%s: mode File needs a \"file\"", field);
	if (strlen(ch->file) >= sizeof(((struct console *)0)->path))
		return config_fail(err, errlen, "%s%s file=%s: the path is too long", cli ? "--" : "", field,
			    ch->file);
	char why[160];
	int fd = console_open_file(ch->file, false, why, sizeof(why));
	if (fd < 0)
		return config_fail(err, errlen, cli ? "--%s file=%s: %s" : "%s.file %s: %s", field, ch->file,
			    why);
	close(fd);
	return 0;
}

/* One "key=value" item of a comma-separated option: key and value split
 * in place.  Returns the value or NULL for an item without '='. */
static char *kv_split(char *item)
{
	char *eq = strchr(item, '=');
	if (!eq)
		return NULL;
	*eq = 0;
	return eq + 1;
}

static int parse_onoff(const char *v, bool *out)
{
	if (!strcmp(v, "on") || !strcmp(v, "true"))
		*out = true;
	else if (!strcmp(v, "off") || !strcmp(v, "false"))
		*out = false;
	else
		return -1;
	return 0;
}

int config_parse_disk(struct machine_config *c, const char *spec, char *err, size_t errlen)
{
	if (c->ndisks >= CONFIG_MAX_DISKS)
		return config_fail(err, errlen, "--disk: at most %d disks", CONFIG_MAX_DISKS);
	char *copy = strdup(spec), *save = NULL;
	if (!copy)
		return config_fail(err, errlen, "out of memory");
	struct disk_config d = { .engine = CONFIG_DISK_ENGINE_DEFAULT };
	int ret = 0;
	if (!strchr(copy, '=')) {
		d.path = strdup(copy);
	} else {
		for (char *it = strtok_r(copy, ",", &save); it && !ret; it = strtok_r(NULL, ",", &save)) {
			char *v = kv_split(it);
			if (!v)
				ret = config_fail(err, errlen, "--disk %s: '%s' is not key=value", spec, it);
			else if (!strcmp(it, "path"))
				free(d.path), d.path = strdup(v);
			else if (!strcmp(it, "readonly")) {
				if (parse_onoff(v, &d.readonly) < 0)
					ret = config_fail(err, errlen, "--disk %s: readonly=%s is not on or off", spec, v);
			} else if (!strcmp(it, "engine")) {
				if (!strcmp(v, "io_uring"))
					d.engine = 0;
				else if (!strcmp(v, "threads"))
					d.engine = 1;
				else
					ret = config_fail(err, errlen, "--disk %s: engine=%s is not io_uring or threads", spec, v);
			} else if (!strcmp(it, "serial")) {
				if (strlen(v) > 20)
					ret = config_fail(err, errlen, "--disk %s: serial=%s is longer than 20 bytes", spec, v);
				else
					free(d.serial), d.serial = strdup(v);
			} else {
				ret = config_fail(err, errlen, "--disk %s: unknown key '%s' (path, readonly, engine, serial)", spec, it);
			}
		}
	}
	free(copy);
	if (!ret && (!d.path || !*d.path))
		ret = config_fail(err, errlen, "--disk %s: no path=", spec);
	if (ret) {
		free(d.path);
		free(d.serial);
		return -1;
	}
	c->disks[c->ndisks++] = d;
	return 0;
}

int config_parse_balloon(struct machine_config *c, const char *spec, char *err, size_t errlen)
{
	char *copy = strdup(spec), *save = NULL;
	if (!copy)
		return config_fail(err, errlen, "out of memory");
	struct balloon_cfg b = { .enabled = true };
	int ret = 0;
	for (char *it = strtok_r(copy, ",", &save); it && !ret; it = strtok_r(NULL, ",", &save)) {
		char *v = kv_split(it);
		if (!v)
			ret = config_fail(err, errlen, "--balloon %s: '%s' is not key=value", spec, it);
		else if (!strcmp(it, "size")) {
			if (parse_size(v, &b.size) < 0)
				ret = config_fail(err, errlen, "--balloon %s: size=%s is not a size", spec, v);
		} else if (!strcmp(it, "deflate_on_oom")) {
			if (parse_onoff(v, &b.deflate_on_oom) < 0)
				ret = config_fail(err, errlen, "--balloon %s: deflate_on_oom=%s is not on or off", spec, v);
		} else if (!strcmp(it, "free_page_reporting")) {
			if (parse_onoff(v, &b.free_page_reporting) < 0)
				ret = config_fail(err, errlen, "--balloon %s: free_page_reporting=%s is not on or off", spec, v);
		} else {
			ret = config_fail(err, errlen, "--balloon %s: unknown key '%s' (size, deflate_on_oom, free_page_reporting)", spec, it);
		}
	}
	free(copy);
	if (!ret)
		c->balloon = b;
	return ret;
}

uint64_t config_hotplug_gpa(const struct machine_config *c)
{
	uint64_t low = c->vm.mem_size < BOOT_LOW_RAM_MAX ? c->vm.mem_size : BOOT_LOW_RAM_MAX;
	uint64_t high = c->vm.mem_size - low;
	return BOOT_HIGH_RAM_BASE + ((high + GMM_1G - 1) & ~(GMM_1G - 1));
}

static int check_devices(const struct machine_config *c, bool cli, char *err, size_t errlen)
{
	char b1[32], b2[32];
	for (unsigned i = 0; i < c->ndisks; i++) {
		const struct disk_config *d = &c->disks[i];
		const char *what = cli ? "--disk" : "disks";
		struct stat st;
		char why[128];
		int fd = open_path(d->path, d->readonly ? O_RDONLY : O_RDWR, true, &st, why, sizeof(why));
		if (fd < 0)
			return config_fail(err, errlen, "%s %s: %s%s", what, d->path, why,
					   d->readonly || (fd != -EACCES && fd != -EROFS && fd != -EPERM) ?
					   "" : " (readonly=on for a read-only image)");
		close(fd);
		if (S_ISREG(st.st_mode) && st.st_size % 512)
			return config_fail(err, errlen, "%s %s: its size (%lld bytes) is not a multiple of 512",
					   what, d->path, (long long)st.st_size);
	}
	if (c->balloon.enabled && c->balloon.size > c->vm.mem_size)
		return config_fail(err, errlen, "%s: %s is more than the guest's RAM (%s)",
				   cli ? "--balloon size" : "balloon.size", format_size(c->balloon.size, b1, sizeof(b1)),
				   format_size(c->vm.mem_size, b2, sizeof(b2)));
	if (c->balloon.enabled && c->balloon.size % GMM_PAGE_SIZE)
		return config_fail(err, errlen, "%s: not a multiple of 4K", cli ? "--balloon size" : "balloon.size");
	if (c->hotplug_size) {
		const char *what = cli ? "--hotplug-memory" : "memory.hotplug_size";
		uint64_t pg = gmm_backing_page_size(c->vm.backing);
		if (c->hotplug_size % CONFIG_HOTPLUG_ALIGN || (pg && c->hotplug_size % pg))
			return config_fail(err, errlen, "%s: %s is not a multiple of 128M%s", what,
					   format_size(c->hotplug_size, b1, sizeof(b1)),
					   pg > CONFIG_HOTPLUG_ALIGN ? " and of the backing's page size" : "");
		if (c->hotplug_size > CONFIG_MAX_MEMORY)
			return config_fail(err, errlen, "%s: more than 1T", what);
		if (c->hotplugged_size > c->hotplug_size || c->hotplugged_size % (2ULL << 20))
			return config_fail(err, errlen, "%s: the plugged size %s is not a multiple of 2M up to %s",
					   cli ? "--hotplug-memory" : "memory.hotplugged_size",
					   format_size(c->hotplugged_size, b1, sizeof(b1)),
					   format_size(c->hotplug_size, b2, sizeof(b2)));
	} else if (c->hotplugged_size) {
		return config_fail(err, errlen, "%s without a hot-plug region", cli ? "plugged size" : "memory.hotplugged_size");
	}
	if (c->ndisks + (c->console.mode != CHR_OFF) + c->balloon.enabled + (c->hotplug_size != 0) > 6)
		return config_fail(err, errlen, "at most 6 virtio devices");
	return 0;
}

int config_check(const struct machine_config *c, bool cli, char *err, size_t errlen)
{
	if (c->vm.nr_vcpus < 1 || c->vm.nr_vcpus > CONFIG_MAX_VCPUS)
		return config_fail(err, errlen, "%s: %u is not a number from 1 to %d",
			    cli ? "--vcpus" : "cpus.boot_vcpus", c->vm.nr_vcpus, CONFIG_MAX_VCPUS);
	if (config_check_memory(c->vm.mem_size, c->vm.backing, cli, err, errlen) < 0)
		return -1;
	if (!c->kernel)
		return config_fail(err, errlen, "%s", cli ? "run: --kernel is required (vmm run --help)" :
			    "no kernel: give payload.kernel (or kernel.path)");
	if (config_check_kernel(c->kernel, cli, err, errlen) < 0)
		return -1;
	if (c->initrd) {
		struct stat st;
		char why[128];
		int fd = open_path(c->initrd, O_RDONLY, false, &st, why, sizeof(why));
		if (fd < 0)
			return config_fail(err, errlen, "%s %s: %s", cli ? "--initrd" : "initramfs", c->initrd,
					   why);
		close(fd);
	}
	if (check_chr_file(&c->serial, "serial", cli, err, errlen) < 0 ||
	    check_chr_file(&c->console, "console", cli, err, errlen) < 0)
		return -1;
	return check_devices(c, cli, err, errlen);
}
