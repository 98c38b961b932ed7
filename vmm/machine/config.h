/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * config.h - what a guest is made of, as `vmm run` options and the control
 * API's vm.create both describe it, and the checks both apply.
 *
 * A machine_config owns its strings (kernel, initrd, command line, console
 * files): machine_config_free() releases them.  Its vm_config carries the
 * sizes and host choices; its boot paths are filled from the strings only
 * when the VM is created (machine.c), so a config can be moved by value.
 *
 * Console and serial follow Cloud Hypervisor's model: a "console"
 * (virtio-console there) and a "serial" port, each Off, Null, Pty, Tty or
 * File.  The serial port is the 16550 UART, the console a virtio-console
 * (present unless console is Off).  The UART's place (config_uart_console):
 * if either is Pty the UART is on one pty (the same path is reported for
 * both); otherwise it follows "serial" unless that is Off/Null, then
 * "console"; Tty is stdio, File a file, Off/Null discard its output.  The
 * virtio-console shares that place (config_console_shares_uart) when the
 * console is Pty, the serial port discards, or both are the terminal or
 * the same file; otherwise it has its own.
 *
 * The checks return 0, or -1 with one sentence in err naming the value (as
 * an option, "--kernel F: ...", or as a vm.create field, "kernel F: ...").
 * No locks: plain data, used by one thread at a time.
 */
#ifndef VMM_CONFIG_H
#define VMM_CONFIG_H

#include "devices/console.h"
#include "core/vm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_VCPUS 64
#define CONFIG_MIN_MEMORY (16ULL << 20)
#define CONFIG_MAX_MEMORY (1ULL << 40)

/* Cloud Hypervisor's ConsoleOutputMode values we accept. */
enum chr_mode { CHR_OFF, CHR_NULL, CHR_PTY, CHR_TTY, CHR_FILE };

struct chr_config {
	enum chr_mode mode;
	char *file;             /* CHR_FILE: the path (owned), else NULL */
};

/* A virtio-blk disk (virtio_devices.h's blk_config, with owned strings). */
#define CONFIG_MAX_DISKS 3
/* The thread pool: faster than io_uring on the 2-CPU test hosts for every
 * size and direction (scripts/bench-virtio, README "virtio figures"). */
#define CONFIG_DISK_ENGINE_DEFAULT 1
struct disk_config {
	char *path;             /* owned */
	bool readonly;
	int engine;             /* enum blk_engine: 0 io_uring, 1 threads */
	char *serial;           /* owned or NULL */
};

/* virtio-balloon: present when enabled; size is the initial target. */
struct balloon_cfg {
	bool enabled;
	uint64_t size;
	bool deflate_on_oom, free_page_reporting;
};

/* A virtio-net device on a tap (issue 15): from `--net`, from a 9.0-shape
 * vm.create "net" entry, or from vm.add-net with the tap's fd passed over
 * the API socket (SCM_RIGHTS).  One queue pair.  The config owns fd:
 * machine_config_free() closes it, machine_config_copy() dups it. */
#define CONFIG_MAX_NETS 2
struct net_config {
	char *id;               /* owned or NULL: "_net<index>" */
	char *tap;              /* owned: a tap interface to open (TUNSETIFF); NULL when fd >= 0 */
	int fd;                 /* an open tap fd owned here, or -1: open `tap` */
	uint8_t mac[6];         /* the guest's MAC */
	bool mac_set;           /* else a random locally administered one at create */
	unsigned mtu;           /* 0: 1500 */
	unsigned queue_size;    /* 0: 256 */
	uint32_t ip, mask;      /* host side of the tap, network order (0: leave the tap as it is) */
};

struct machine_config {
	struct vm_config vm;    /* memory, vCPUs, backing, strategy...; no paths */
	struct disk_config disks[CONFIG_MAX_DISKS];
	unsigned ndisks;
	struct net_config nets[CONFIG_MAX_NETS];
	unsigned nnets;
	struct balloon_cfg balloon;
	uint64_t hotplug_size;  /* virtio-mem region (0: none) */
	uint64_t hotplugged_size; /* plugged size requested at boot */
	char *kernel;           /* owned; NULL until given */
	char *initrd;           /* owned or NULL */
	char *cmdline;          /* owned or NULL */
	unsigned max_vcpus;     /* reported (no vCPU hotplug: only nr_vcpus exist) */
	struct chr_config console, serial;
	/* The test images' devices (debug-exit port, testdev): -1 auto (only
	 * when the kernel is a test image), 0 off, 1 on.  A host choice. */
	int test_devices;
};

/* `vmm run`'s defaults: 256 MiB of thp, 1 vCPU, the default strategy,
 * CPUID filter auto, console Off, serial Tty (stdio). */
/* Write a message into err (errlen bytes) and return -1: the error
 * convention of the checks here, of api_config.c and of api.c. */
int config_fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

void machine_config_init(struct machine_config *c);
/* Release the strings; the config is then as after machine_config_init()
 * except for the plain values, which are kept. */
void machine_config_free(struct machine_config *c);
/* A deep copy (strings duplicated).  -1 (ENOMEM) on failure. */
int machine_config_copy(struct machine_config *dst, const struct machine_config *src);
/* What a vm.create body starts from: the body is the whole guest (Cloud
 * Hypervisor's semantics), so every field it can name -- kernel, initrd,
 * command line, vCPUs, memory and its hot-plug region, disks, balloon,
 * console and serial -- goes back to its default (1 vCPU, 256 MiB, no
 * device, console Tty, serial Null: Cloud Hypervisor's), its strings freed;
 * only the host choices a body cannot name (vm.backing, vm.strategy,
 * vm.prefault, vm.cpuid_filter) are kept.  Never appends: see
 * api_parse_create(). */
void machine_config_reset_guest(struct machine_config *c);

/* "Off", "Null", "Pty", "Tty", "File" (case-insensitive) -> mode.  -1 for
 * anything else. */
int chr_mode_parse(const char *s, enum chr_mode *out);
const char *chr_mode_name(enum chr_mode m);

/* Where the UART goes for this config (the mapping above): fills a console
 * ready for console_open(). */
void config_uart_console(const struct machine_config *c, struct console *out);

/* "path=F[,readonly=on|off][,engine=io_uring|threads][,serial=S]" (a bare
 * path is path=F) appended to c->disks; "size=S[,deflate_on_oom=on]
 * [,free_page_reporting=on]" into c->balloon.  -1 with err. */
int config_parse_disk(struct machine_config *c, const char *spec, char *err, size_t errlen);
int config_parse_balloon(struct machine_config *c, const char *spec, char *err, size_t errlen);
/* "tap=NAME|fd=N[,mac=M][,mtu=N][,ip=A,mask=A][,id=S][,queue_size=N]"
 * appended to c->nets.  config_parse_mac: "52:54:00:12:34:56" -> 0, else -1. */
int config_parse_net(struct machine_config *c, const char *spec, char *err, size_t errlen);
int config_parse_mac(const char *s, uint8_t mac[6]);
/* Where the hot-plug region goes: above RAM, 1 GiB aligned. */
uint64_t config_hotplug_gpa(const struct machine_config *c);
#define CONFIG_HOTPLUG_ALIGN (128ULL << 20)

/* Does the virtio-console write where the UART does (the rule above)? */
bool config_console_shares_uart(const struct machine_config *c);

/* Memory size against the limits and the backing's page size. */
int config_check_memory(uint64_t size, enum gmm_backing backing, bool cli, char *err,
			size_t errlen);
/* The kernel exists, is a regular non-empty readable file and an image
 * vmm can boot (boot.h's image_detect). */
int config_check_kernel(const char *path, bool cli, char *err, size_t errlen);
/* Every check of a complete config: memory, vCPUs, kernel, initrd
 * readable, console/serial files creatable.  cli selects how values are
 * named in err: as `vmm run` options, or as vm.create fields.
 *
 * Paths (a client or the command line names them; issue 13): nothing is
 * opened that could block or act on open.  The kernel and initrd must be
 * regular files, a disk a regular file or a block device: the type is
 * looked at with stat(2) before the open (a device or a FIFO is never
 * opened), the open is O_NONBLOCK|O_NOCTTY|O_CLOEXEC and fstat(2) checks
 * the type again on what was opened.  Console and serial files follow
 * console_open_file()'s rule (console.h): a regular file of ours with one
 * link, or a terminal; never through a symlink. */
int config_check(const struct machine_config *c, bool cli, char *err, size_t errlen);

#endif
