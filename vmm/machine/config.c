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

#include "virtio/virtio.h"

#include <arpa/inet.h>
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
	for (unsigned i = 0; i < c->nnets; i++) {
		free(c->nets[i].id);
		free(c->nets[i].tap);
		if (c->nets[i].fd >= 0)
			close(c->nets[i].fd);
	}
	memset(c->nets, 0, sizeof(c->nets));
	c->nnets = 0;
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

/* The nets' strings duplicated and their fds dup'ed (close-on-exec);
 * whatever failed is NULL / -1 in dst, so machine_config_free(dst) is safe. */
static int copy_nets(struct machine_config *dst, const struct machine_config *src)
{
	int ret = 0;
	for (unsigned i = 0; i < src->nnets; i++) {
		struct net_config *n = &dst->nets[i];
		if (dup_str(&n->id, src->nets[i].id) < 0 || dup_str(&n->tap, src->nets[i].tap) < 0)
			ret = -1;
		if (src->nets[i].fd >= 0 &&
		    (n->fd = fcntl(src->nets[i].fd, F_DUPFD_CLOEXEC, 3)) < 0)
			ret = -1;
	}
	return ret;
}

int machine_config_copy(struct machine_config *dst, const struct machine_config *src)
{
	*dst = *src;
	/* Nothing of src's is left in dst before anything can fail: a failed
	 * copy is freed without touching src's strings or fds. */
	dst->kernel = dst->initrd = dst->cmdline = dst->console.file = dst->serial.file = NULL;
	for (unsigned i = 0; i < CONFIG_MAX_DISKS; i++)
		dst->disks[i].path = dst->disks[i].serial = NULL;
	for (unsigned i = 0; i < CONFIG_MAX_NETS; i++) {
		dst->nets[i].id = dst->nets[i].tap = NULL;
		dst->nets[i].fd = -1;
	}
	int nets = copy_nets(dst, src), e = errno;
	if (nets < 0 || dup_str(&dst->kernel, src->kernel) < 0 || dup_str(&dst->initrd, src->initrd) < 0 ||
	    dup_str(&dst->cmdline, src->cmdline) < 0 ||
	    dup_str(&dst->console.file, src->console.file) < 0 ||
	    dup_str(&dst->serial.file, src->serial.file) < 0 || copy_disks(dst, src) < 0) {
		e = nets < 0 && e == EMFILE ? EMFILE : ENOMEM;
		machine_config_free(dst);
		errno = e;
		return -1;
	}
	return 0;
}

void machine_config_reset_guest(struct machine_config *c)
{
	struct vm_config host = c->vm;
	int test_devices = c->test_devices;
	machine_config_free(c);
	machine_config_init(c);    /* zeroes the disks, nets, balloon, hot-plug region */
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

int config_parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char end;
	if (!s || strlen(s) != 17 ||
	    sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &end) != 6)
		return -1;
	for (int i = 0; i < 6; i++) {
		if (s[i * 3] == ' ' || s[i * 3] == '+' || s[i * 3] == '-' || (i < 5 && s[i * 3 + 2] != ':'))
			return -1;
		mac[i] = (uint8_t)v[i];
	}
	return 0;
}

static int parse_ulong(const char *v, unsigned long max, unsigned long *out)
{
	char *end;
	if (!*v || *v == '-' || *v == '+' || *v == ' ')
		return -1;
	errno = 0;
	unsigned long x = strtoul(v, &end, 10);
	if (errno || *end || x > max)
		return -1;
	*out = x;
	return 0;
}

int config_parse_net(struct machine_config *c, const char *spec, char *err, size_t errlen)
{
	if (c->nnets >= CONFIG_MAX_NETS)
		return config_fail(err, errlen, "--net: at most %d network devices", CONFIG_MAX_NETS);
	char *copy = strdup(spec), *save = NULL;
	if (!copy)
		return config_fail(err, errlen, "out of memory");
	struct net_config n = { .fd = -1 };
	bool has_fd = false, has_mask = false;
	int ret = 0;
	for (char *it = strtok_r(copy, ",", &save); it && !ret; it = strtok_r(NULL, ",", &save)) {
		char *v = kv_split(it);
		unsigned long x = 0;
		struct in_addr a;
		if (!v) {
			ret = config_fail(err, errlen, "--net %s: '%s' is not key=value", spec, it);
		} else if (!strcmp(it, "tap")) {
			if (!*v || strlen(v) >= 16 || strchr(v, '/') || n.tap)
				ret = config_fail(err, errlen, "--net %s: tap=%s is not one interface name of 1 to 15 bytes", spec, v);
			else if (!(n.tap = strdup(v)))
				ret = config_fail(err, errlen, "out of memory");
		} else if (!strcmp(it, "fd")) {
			if (parse_ulong(v, 1 << 20, &x) < 0 || x < 3 || has_fd)
				ret = config_fail(err, errlen, "--net %s: fd=%s is not one descriptor number above 2", spec, v);
			else if (fcntl((int)x, F_GETFD) < 0)
				ret = config_fail(err, errlen, "--net %s: fd %lu is not open", spec, x);
			else {
				for (unsigned i = 0; i < c->nnets; i++)
					if (c->nets[i].fd == (int)x)
						ret = config_fail(err, errlen, "--net %s: fd %lu is already another net's", spec, x);
				n.fd = (int)x;
				has_fd = true;
			}
		} else if (!strcmp(it, "mac")) {
			if (config_parse_mac(v, n.mac) < 0 || (n.mac[0] & 1))
				ret = config_fail(err, errlen, "--net %s: mac=%s is not a unicast MAC like 52:54:00:12:34:56", spec, v);
			n.mac_set = true;
		} else if (!strcmp(it, "mtu")) {
			if (parse_ulong(v, 65535, &x) < 0 || x < 68)
				ret = config_fail(err, errlen, "--net %s: mtu=%s is not a number from 68 to 65535", spec, v);
			else
				n.mtu = (unsigned)x;
		} else if (!strcmp(it, "queue_size")) {
			if (parse_ulong(v, 256, &x) < 0 || x < 2 || (x & (x - 1)))
				ret = config_fail(err, errlen, "--net %s: queue_size=%s is not a power of two from 2 to 256", spec, v);
			else
				n.queue_size = (unsigned)x;
		} else if (!strcmp(it, "ip") || !strcmp(it, "mask")) {
			if (inet_pton(AF_INET, v, &a) != 1)
				ret = config_fail(err, errlen, "--net %s: %s=%s is not an IPv4 address", spec, it, v);
			else if (it[0] == 'i')
				n.ip = a.s_addr;
			else {
				n.mask = a.s_addr;
				has_mask = true;
			}
		} else if (!strcmp(it, "id")) {
			free(n.id);
			if (!*v || strlen(v) > 64)
				ret = config_fail(err, errlen, "--net %s: id=%s is empty or longer than 64 bytes", spec, v);
			else if (!(n.id = strdup(v)))
				ret = config_fail(err, errlen, "out of memory");
		} else {
			ret = config_fail(err, errlen, "--net %s: unknown key '%s' (tap, fd, mac, mtu, ip, mask, id, queue_size)", spec, it);
		}
	}
	free(copy);
	if (!ret && !n.tap == !has_fd)
		ret = config_fail(err, errlen, "--net %s: give tap=NAME or fd=N (one of them)", spec);
	if (!ret && has_mask && !n.ip)
		ret = config_fail(err, errlen, "--net %s: mask= without ip=", spec);
	if (!ret && n.ip && !has_mask)
		n.mask = htonl(0xffffff00u);   /* a /24, as Cloud Hypervisor's default */
	if (ret) {
		free(n.tap);
		free(n.id);
		return ret;   /* fd stays the caller's */
	}
	c->nets[c->nnets++] = n;
	return 0;
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
	if (c->nnets > CONFIG_MAX_NETS)
		return config_fail(err, errlen, "%s: at most %d network devices", cli ? "--net" : "net",
				   CONFIG_MAX_NETS);
	for (unsigned i = 0; i < c->nnets; i++) {
		const struct net_config *n = &c->nets[i];
		const char *what = cli ? "--net" : "net";
		if ((n->fd >= 0) == (n->tap != NULL))
			return config_fail(err, errlen, "%s %u: give a tap name or a tap fd (one of them)", what, i);
		if (n->tap && (!n->tap[0] || strlen(n->tap) >= 16))
			return config_fail(err, errlen, "%s %u: tap '%s' is not an interface name of 1 to 15 bytes",
					   what, i, n->tap);
		if (n->fd >= 0 && fcntl(n->fd, F_GETFD) < 0)
			return config_fail(err, errlen, "%s %u: fd %d is not open", what, i, n->fd);
		if (n->mtu && (n->mtu < 68 || n->mtu > 65535))
			return config_fail(err, errlen, "%s %u: mtu %u is not from 68 to 65535", what, i, n->mtu);
		if (n->queue_size && (n->queue_size < 2 || n->queue_size > 256 ||
				      (n->queue_size & (n->queue_size - 1))))
			return config_fail(err, errlen, "%s %u: queue_size %u is not a power of two from 2 to 256",
					   what, i, n->queue_size);
		if (n->mac_set && (n->mac[0] & 1))
			return config_fail(err, errlen, "%s %u: mac %02x:%02x:%02x:%02x:%02x:%02x is multicast",
					   what, i, n->mac[0], n->mac[1], n->mac[2], n->mac[3], n->mac[4], n->mac[5]);
		if (n->mask && !n->ip)
			return config_fail(err, errlen, "%s %u: a mask without an ip", what, i);
		for (unsigned j = 0; j < i; j++)
			if ((n->tap && c->nets[j].tap && !strcmp(n->tap, c->nets[j].tap)) ||
			    (n->mac_set && c->nets[j].mac_set && !memcmp(n->mac, c->nets[j].mac, 6)))
				return config_fail(err, errlen, "%s %u: the same tap or mac as net %u", what, i, j);
	}
	unsigned ndev = c->ndisks + (c->console.mode != CHR_OFF) + c->balloon.enabled +
			(c->hotplug_size != 0) + c->nnets;
	if (ndev > VIRTIO_MMIO_MAX_DEVICES)
		return config_fail(err, errlen,
				   "at most %d virtio devices (disks, console, balloon, hot-plug memory and nets "
				   "together): this configuration has %u", VIRTIO_MMIO_MAX_DEVICES, ndev);
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
