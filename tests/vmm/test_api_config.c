// SPDX-License-Identifier: GPL-2.0-only
/*
 * test_api_config.c - the control API's JSON without KVM (vmm/api/api_config.h)
 * and the configuration checks `vmm run` and vm.create share
 * (vmm/machine/config.h): vm.create bodies in libvirt 9.0's shape and the newer
 * payload shape, defaults, every refusal with the field it names (types,
 * ranges, modes, devices, malformed JSON); vm.info and vm.counters bodies
 * parsed back, every gmm_stats field present, the info's config accepted
 * again by vm.create; the console/serial -> UART mapping; the kernel,
 * initrd and file checks (VMM_TEST_IMAGE: a bootable test image).
 */
#include <criterion/criterion.h>

#include "api/api_config.h"
#include "machine/config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static struct machine_config cfg;
static char err[512];

static void setup(void)
{
	machine_config_init(&cfg);
	err[0] = 0;
}

static void teardown(void)
{
	machine_config_free(&cfg);
}

TestSuite(api_config, .init = setup, .fini = teardown);

static int parse(const char *json)
{
	return api_parse_create(json, strlen(json), &cfg, err, sizeof(err));
}

/* The body must be refused with an error containing want. */
static void refused(const char *json, const char *want)
{
	struct machine_config c;
	machine_config_init(&c);
	char e[512] = "";
	int ret = api_parse_create(json, strlen(json), &c, e, sizeof(e));
	cr_assert_eq(ret, -1, "accepted: %s", json);
	cr_assert(strstr(e, want), "error <%s> lacks <%s> for %s", e, want, json);
	machine_config_free(&c);
}

static struct json_object *path(struct json_object *o, const char *a, const char *b,
				const char *c)
{
	const char *keys[] = { a, b, c };
	for (int i = 0; i < 3 && keys[i] && o; i++)
		if (!json_object_object_get_ex(o, keys[i], &o))
			return NULL;
	return o;
}

Test(api_config, libvirt_9_shape)
{
	const char *body =
		"{\"console\":{\"mode\":\"Pty\"},\"serial\":{\"mode\":\"Null\"},"
		"\"cpus\":{\"boot_vcpus\":2,\"max_vcpus\":2},\"memory\":{\"size\":536870912},"
		"\"kernel\":{\"path\":\"/boot/vmlinuz\"},\"cmdline\":{\"args\":\"console=ttyS0 quiet\"},"
		"\"initramfs\":{\"path\":\"/boot/initrd.img\"},\"disks\":[],\"net\":[]}";
	cr_assert_eq(parse(body), 0, "%s", err);
	cr_assert_str_eq(cfg.kernel, "/boot/vmlinuz");
	cr_assert_str_eq(cfg.cmdline, "console=ttyS0 quiet");
	cr_assert_str_eq(cfg.initrd, "/boot/initrd.img");
	cr_assert_eq(cfg.vm.nr_vcpus, 2);
	cr_assert_eq(cfg.max_vcpus, 2);
	cr_assert_eq(cfg.vm.mem_size, 512ULL << 20);
	cr_assert_eq(cfg.console.mode, CHR_PTY);
	cr_assert_eq(cfg.serial.mode, CHR_NULL);
}

Test(api_config, payload_shape)
{
	const char *body =
		"{\"payload\":{\"kernel\":\"/k\",\"cmdline\":\"c\",\"initramfs\":\"/i\"},"
		"\"cpus\":{\"boot_vcpus\":4},\"memory\":{\"size\":1073741824},"
		"\"serial\":{\"mode\":\"pty\"}}";
	cr_assert_eq(parse(body), 0, "%s", err);
	cr_assert_str_eq(cfg.kernel, "/k");
	cr_assert_str_eq(cfg.cmdline, "c");
	cr_assert_str_eq(cfg.initrd, "/i");
	cr_assert_eq(cfg.vm.nr_vcpus, 4);
	cr_assert_eq(cfg.max_vcpus, 4, "max_vcpus defaults to boot_vcpus");
	cr_assert_eq(cfg.vm.mem_size, 1ULL << 30);
	cr_assert_eq(cfg.serial.mode, CHR_PTY, "modes are case-insensitive");
}

/* vm.create's body is the whole guest: what it omits takes the defaults,
 * not what the config held (`vmm run`'s --memory, --serial...); only the
 * host choices (backing, strategy, prefault, CPUID filter) are kept. */
Test(api_config, host_choices_kept)
{
	cfg.vm.mem_size = 64ULL << 20;
	cfg.vm.nr_vcpus = cfg.max_vcpus = 3;
	cfg.vm.backing = GMM_BACKING_ANON;
	cfg.vm.prefault = true;
	cfg.vm.cpuid_filter = 1;
	cfg.console.mode = CHR_OFF;
	cfg.serial.mode = CHR_TTY;
	cr_assert_eq(parse("  {\"payload\":{\"kernel\":\"/k\"},\"frobnicate\":[1,2],\"rng\":{}}\r\n"),
		     0, "%s", err);
	cr_assert_eq(cfg.vm.mem_size, 256ULL << 20);
	cr_assert_eq(cfg.vm.nr_vcpus, 1);
	cr_assert_eq(cfg.max_vcpus, 1);
	cr_assert_eq(cfg.vm.backing, GMM_BACKING_ANON);
	cr_assert(cfg.vm.prefault);
	cr_assert_eq(cfg.vm.cpuid_filter, 1);
	cr_assert_eq(cfg.console.mode, CHR_TTY, "Cloud Hypervisor's default console: Tty");
	cr_assert_eq(cfg.serial.mode, CHR_NULL, "Cloud Hypervisor's default serial: Null");
	cr_assert_null(cfg.cmdline);
	cr_assert_null(cfg.initrd);
	/* anon pages are 4 KiB: a size thp would refuse is fine. */
	cr_assert_eq(parse("{\"payload\":{\"kernel\":\"/k\"},\"memory\":{\"size\":17829888}}"), 0,
		     "%s", err);
	cr_assert_eq(cfg.vm.mem_size, 17829888);
}

/* Issue 13, finding 4: the request's disks were appended to --disk's and
 * checked against the request's count alone (3 + 1 wrote disks[3]). */
Test(api_config, create_replaces_the_config)
{
	cr_assert_eq(config_parse_disk(&cfg, "path=/cli0.img", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_parse_disk(&cfg, "path=/cli1.img,serial=s", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_parse_balloon(&cfg, "size=4096", err, sizeof(err)), 0, "%s", err);
	cfg.hotplug_size = 1ULL << 30;
	cfg.hotplugged_size = 2ULL << 20;
	cfg.kernel = strdup("/cli-kernel");
	cfg.initrd = strdup("/cli-initrd");
	cfg.cmdline = strdup("cli");
	cfg.serial.mode = CHR_FILE;
	cfg.serial.file = strdup("/cli-serial");
	cr_assert_eq(parse("{\"payload\":{\"kernel\":\"/k\"},\"disks\":[{\"path\":\"/a\"},"
			   "{\"path\":\"/b\"},{\"path\":\"/c\",\"readonly\":true}]}"), 0, "%s", err);
	cr_assert_eq(cfg.ndisks, 3);
	cr_assert_str_eq(cfg.disks[0].path, "/a");
	cr_assert_str_eq(cfg.disks[1].path, "/b");
	cr_assert_str_eq(cfg.disks[2].path, "/c");
	cr_assert_null(cfg.disks[1].serial, "nothing of --disk's is left");
	cr_assert(cfg.disks[2].readonly);
	cr_assert(!cfg.balloon.enabled);
	cr_assert_eq(cfg.hotplug_size, 0);
	cr_assert_eq(cfg.hotplugged_size, 0);
	cr_assert_str_eq(cfg.kernel, "/k");
	cr_assert_null(cfg.initrd);
	cr_assert_null(cfg.cmdline);
	cr_assert_eq(cfg.serial.mode, CHR_NULL);
	cr_assert_null(cfg.serial.file);
	/* Again on the same config: replaced again, not added to. */
	cr_assert_eq(parse("{\"payload\":{\"kernel\":\"/k2\"},\"disks\":[{\"path\":\"/d\"}]}"), 0,
		     "%s", err);
	cr_assert_eq(cfg.ndisks, 1);
	cr_assert_str_eq(cfg.disks[0].path, "/d");
	cr_assert_eq(parse("{\"payload\":{\"kernel\":\"/k2\"}}"), 0, "%s", err);
	cr_assert_eq(cfg.ndisks, 0);
	/* A refused body leaves no half-parsed disk behind to leak. */
	cr_assert_eq(parse("{\"payload\":{\"kernel\":\"/k\"},\"disks\":[{\"path\":\"/a\"},"
			   "{\"readonly\":true}]}"), -1);
	cr_assert(cfg.ndisks <= 1);
}

Test(api_config, nulls_are_absent)
{
	cr_assert_eq(parse("{\"payload\":{\"kernel\":\"/k\",\"cmdline\":null,\"initramfs\":null},"
			   "\"disks\":null,\"net\":null,\"console\":null,\"cpus\":{\"boot_vcpus\":null}}"),
		     0, "%s", err);
	cr_assert_null(cfg.cmdline);
	cr_assert_eq(cfg.vm.nr_vcpus, 1);
}

Test(api_config, malformed_bodies)
{
	refused("", "empty");
	refused("{", "not JSON");
	refused("{\"payload\":", "not JSON");
	refused("not json at all", "not JSON");
	/* (json-c's strict mode still takes single-quoted strings.) */
	refused("{\"payload\":{\"kernel\":\"/k\"},}", "not JSON");
	refused("{\"payload\":{\"kernel\":\"/k\"}} trailing", "after the value");
	refused("{\"payload\":{\"kernel\":\"/k\"}}{}", "after the value");
	refused("[1,2,3]", "an array: expected a JSON object");
	refused("42", "an integer: expected a JSON object");
	refused("\"str\"", "a string: expected a JSON object");
	refused("null", "null: expected a JSON object");
	refused("{\"payload\":{\"kernel\":\"/k\xff\"}}", "not JSON");
	char deep[300];
	memset(deep, '[', sizeof(deep) - 1);
	deep[sizeof(deep) - 1] = 0;
	refused(deep, "not JSON");
	/* A NUL byte in the body. */
	const char nul[] = "{\"payload\":{\"kernel\":\"/k\"}}\0{}";
	struct machine_config c;
	machine_config_init(&c);
	cr_assert_eq(api_parse_create(nul, sizeof(nul) - 1, &c, err, sizeof(err)), -1);
	cr_assert(strstr(err, "NUL"), "%s", err);
	machine_config_free(&c);
}

Test(api_config, kernel_required_once)
{
	refused("{}", "no kernel");
	refused("{\"cpus\":{\"boot_vcpus\":1}}", "no kernel");
	refused("{\"kernel\":{}}", "kernel.path: missing");
	refused("{\"kernel\":{\"path\":\"\"}}", "kernel.path: is empty");
	refused("{\"kernel\":{\"path\":7}}", "kernel.path: expected a string, got an integer");
	refused("{\"kernel\":\"/k\"}", "kernel: expected an object, got a string");
	refused("{\"payload\":{\"kernel\":\"/k\\u0000x\"}}", "payload.kernel: holds a NUL");
	refused("{\"payload\":{\"kernel\":\"/k\"},\"kernel\":{\"path\":\"/k\"}}", "not both");
	refused("{\"payload\":{\"firmware\":\"/fw\"}}", "payload.firmware: not supported");
	refused("{\"payload\":[]}", "payload: expected an object, got an array");
	refused("{\"cmdline\":{\"args\":\"x\"}}", "no kernel");
}

Test(api_config, cpus_checked)
{
	const char *k = "\"payload\":{\"kernel\":\"/k\"}";
	char b[256];
#define CPUS(x) (snprintf(b, sizeof(b), "{%s,\"cpus\":%s}", k, x), b)
	refused(CPUS("{\"boot_vcpus\":0}"), "cpus.boot_vcpus: 0 is not a number from 1 to 64");
	refused(CPUS("{\"boot_vcpus\":65}"), "cpus.boot_vcpus: 65 is not a number from 1 to 64");
	refused(CPUS("{\"boot_vcpus\":-1}"), "cpus.boot_vcpus: -1 is negative");
	refused(CPUS("{\"boot_vcpus\":\"2\"}"), "cpus.boot_vcpus: expected an integer, got a string");
	refused(CPUS("{\"boot_vcpus\":2.5}"), "cpus.boot_vcpus: expected an integer");
	refused(CPUS("{\"boot_vcpus\":true}"), "got a boolean");
	refused(CPUS("{\"boot_vcpus\":18446744073709551615}"), "not a number from 1 to 64");
	refused(CPUS("{\"boot_vcpus\":4,\"max_vcpus\":2}"), "cpus.max_vcpus: 2 is less than boot_vcpus (4)");
	refused(CPUS("{\"boot_vcpus\":4,\"max_vcpus\":100}"), "cpus.max_vcpus: 100 is more than 64");
	refused(CPUS("[]"), "cpus: expected an object");
	cr_assert_eq(parse(CPUS("{\"boot_vcpus\":2,\"max_vcpus\":8,\"topology\":{}}")), 0, "%s", err);
	cr_assert_eq(cfg.vm.nr_vcpus, 2);
	cr_assert_eq(cfg.max_vcpus, 8);
	cr_assert_eq(parse(CPUS("{\"boot_vcpus\":64}")), 0, "%s", err);
	cr_assert_eq(cfg.vm.nr_vcpus, 64);
#undef CPUS
}

Test(api_config, memory_checked)
{
	const char *k = "\"payload\":{\"kernel\":\"/k\"}";
	char b[256];
#define MEM(x) (snprintf(b, sizeof(b), "{%s,\"memory\":%s}", k, x), b)
	refused(MEM("{\"size\":1048576}"), "memory.size: 1 MiB is below the minimum of 16M");
	refused(MEM("{\"size\":2199023255552}"), "memory.size: 2 TiB is more than 1T");
	refused(MEM("{\"size\":18446744073709551615}"), "is more than 1T");
	refused(MEM("{\"size\":269484032}"), "not a multiple of the thp page size");
	refused(MEM("{\"size\":-536870912}"), "memory.size: -536870912 is negative");
	refused(MEM("{\"size\":\"512M\"}"), "memory.size: expected an integer, got a string");
	refused(MEM("{\"size\":5.36870912e8}"), "memory.size: expected an integer");
	refused(MEM("512"), "memory: expected an object, got an integer");
	cr_assert_eq(parse(MEM("{\"size\":16777216,\"shared\":false,\"hugepages\":false}")), 0, "%s", err);
	cr_assert_eq(cfg.vm.mem_size, 16ULL << 20);
#undef MEM
}

Test(api_config, console_modes)
{
	const char *k = "\"payload\":{\"kernel\":\"/k\"}";
	char b[256];
#define CON(x) (snprintf(b, sizeof(b), "{%s,%s}", k, x), b)
	refused(CON("\"console\":{\"mode\":\"Socket\",\"socket\":\"/s\"}"),
		"console.mode: 'Socket' is not supported (Off, Null, Pty, Tty or File)");
	refused(CON("\"serial\":{\"mode\":\"Telnet\"}"), "serial.mode: 'Telnet' is not supported");
	refused(CON("\"serial\":{}"), "serial.mode: missing");
	refused(CON("\"serial\":{\"mode\":3}"), "serial.mode: expected a string");
	refused(CON("\"serial\":\"Pty\""), "serial: expected an object, got a string");
	refused(CON("\"console\":{\"mode\":\"File\"}"), "console: mode File needs a \"file\"");
	cr_assert_eq(parse(CON("\"console\":{\"mode\":\"File\",\"file\":\"/tmp/c\"},"
			       "\"serial\":{\"mode\":\"OFF\",\"iommu\":false}")), 0, "%s", err);
	cr_assert_eq(cfg.console.mode, CHR_FILE);
	cr_assert_str_eq(cfg.console.file, "/tmp/c");
	cr_assert_eq(cfg.serial.mode, CHR_OFF);
	cr_assert_eq(parse(CON("\"console\":{\"mode\":\"Tty\"}")), 0, "%s", err);
	cr_assert_eq(cfg.console.mode, CHR_TTY);
	cr_assert_null(cfg.console.file, "a mode without a file drops the old one");
#undef CON
}

Test(api_config, devices_refused)
{
	refused("{\"payload\":{\"kernel\":\"/k\"},\"net\":[{\"mac\":\"52:54:00:00:00:01\"}]}",
		"net[0]: no tap");
	refused("{\"payload\":{\"kernel\":\"/k\"},\"fs\":[{}]}", "fs:");
	refused("{\"payload\":{\"kernel\":\"/k\"},\"vsock\":{\"cid\":3}}", "vsock:");
	refused("{\"payload\":{\"kernel\":\"/k\"},\"devices\":[{\"path\":\"/sys/bus/pci/x\"}]}", "devices:");
	cr_assert_eq(parse("{\"payload\":{\"kernel\":\"/k\"},\"disks\":[],\"net\":[],\"fs\":null}"), 0,
		     "%s", err);
}

/* libvirt 9.0 names the tap in vm.create (issue 15). */
Test(api_config, net_entries)
{
#define NET(x) "{\"payload\":{\"kernel\":\"/k\"},\"net\":[" x "]}"
	cr_assert_eq(parse(NET("{\"tap\":\"vnet0\",\"mac\":\"52:54:00:AB:cd:01\",\"ip\":\"192.168.249.1\","
			       "\"mask\":\"255.255.255.0\",\"num_queues\":2,\"queue_size\":128,\"mtu\":9000},"
			       "{\"tap\":\"vnet1\",\"id\":\"lan\"}")), 0, "%s", err);
	cr_assert_eq(cfg.nnets, 2);
	cr_assert_str_eq(cfg.nets[0].tap, "vnet0");
	cr_assert_eq(cfg.nets[0].fd, -1);
	cr_assert(cfg.nets[0].mac_set);
	const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0x01 };
	cr_assert_arr_eq(cfg.nets[0].mac, mac, 6);
	cr_assert_eq(cfg.nets[0].ip, htonl(0xc0a8f901));
	cr_assert_eq(cfg.nets[0].mask, htonl(0xffffff00));
	cr_assert_eq(cfg.nets[0].queue_size, 128);
	cr_assert_eq(cfg.nets[0].mtu, 9000);
	cr_assert_str_eq(cfg.nets[1].id, "lan");
	cr_assert_not(cfg.nets[1].mac_set);
	/* vm.info reports them, and its config is accepted again. */
	char *info = api_info_json(&cfg, NULL, "Created", 0, NULL);
	cr_assert(info && strstr(info, "\"net\":[{\"id\":\"_net0\",\"tap\":\"vnet0\",\"mac\":\"52:54:00:ab:cd:01\""),
		  "%s", info);
	cr_assert(strstr(info, "{\"id\":\"lan\",\"tap\":\"vnet1\""), "%s", info);
	free(info);
	/* Every refusal names the field. */
	refused(NET("{\"tap\":\"t\",\"num_queues\":4}"), "net[0].num_queues: 4: vmm's virtio-net has one queue pair");
	refused(NET("{\"tap\":\"t\",\"mac\":\"52:54:00:00:00\"}"), "net[0].mac: '52:54:00:00:00' is not a MAC");
	refused(NET("{\"tap\":\"t\",\"mac\":\"01:00:5e:00:00:01\"}"), "multicast");
	refused(NET("{\"tap\":\"t\",\"ip\":\"300.1.1.1\"}"), "net[0].ip: '300.1.1.1' is not an IPv4");
	refused(NET("{\"tap\":\"t\",\"mask\":7}"), "net[0].mask: expected a string");
	refused(NET("{\"tap\":\"t\",\"queue_size\":100}"), "net[0].queue_size: 100 is not a power of 2");
	refused(NET("{\"tap\":\"t\",\"mtu\":12}"), "net[0].mtu: 12 is not in 68-65535");
	refused(NET("{\"tap\":\"0123456789abcdef\"}"), "longer than an interface name");
	refused(NET("{\"tap\":\"t\",\"id\":\"a\\\"b\"}"), "net[0].id: at most 32");
	refused(NET("{\"tap\":\"t\",\"fds\":[3]}"), "net[0].fds: tap fds can only come with vm.add-net");
	refused(NET("{\"tap\":\"t\",\"vhost_user\":true}"), "vhost-user network devices are not supported");
	refused(NET("{\"tap\":\"a\"},{\"tap\":\"b\"},{\"tap\":\"c\"}"), "net: 3 devices, at most 2");
	refused(NET("7"), "net[0]: expected an object");
#undef NET
}

/* vm.add-net's body: the tap may come as an fd, so none is required here. */
Test(api_config, add_net_body)
{
	struct net_config nc;
	unsigned nfds = 9;
	const char *ok = "{\"id\":\"net_0\",\"mac\":\"52:54:00:00:00:02\",\"num_queues\":2,"
			 "\"queue_size\":256,\"fds\":[-1],\"num_fds\":1}";
	cr_assert_eq(api_parse_add_net(ok, strlen(ok), &nc, &nfds, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(nfds, 1);
	cr_assert_eq(nc.fd, -1);
	cr_assert_null(nc.tap);
	cr_assert_str_eq(nc.id, "net_0");
	free(nc.id);
	const char *bad = "{\"num_queues\":6}";
	cr_assert_eq(api_parse_add_net(bad, strlen(bad), &nc, &nfds, err, sizeof(err)), -1);
	cr_assert(strstr(err, "body.num_queues: 6"), "%s", err);
	cr_assert_eq(api_parse_add_net("[]", 2, &nc, &nfds, err, sizeof(err)), -1);
	cr_assert(strstr(err, "expected a JSON object"), "%s", err);
}

Test(api_config, virtio_devices)
{
	cr_assert_eq(parse("{\"payload\":{\"kernel\":\"/k\"},\"disks\":[{\"path\":\"/d.img\",\"readonly\":true},"
			   "{\"path\":\"/e.img\",\"serial\":\"abc\",\"id\":\"_disk1\"}],"
			   "\"balloon\":{\"size\":1048576,\"free_page_reporting\":true},"
			   "\"memory\":{\"size\":268435456,\"hotplug_method\":\"VirtioMem\","
			   "\"hotplug_size\":1073741824,\"hotplugged_size\":134217728}}"), 0, "%s", err);
	cr_assert_eq(cfg.ndisks, 2);
	cr_assert_str_eq(cfg.disks[0].path, "/d.img");
	cr_assert(cfg.disks[0].readonly);
	cr_assert_null(cfg.disks[0].serial);
	cr_assert_str_eq(cfg.disks[1].serial, "abc");
	cr_assert(!cfg.disks[1].readonly);
	cr_assert(cfg.balloon.enabled);
	cr_assert_eq(cfg.balloon.size, 1048576);
	cr_assert(cfg.balloon.free_page_reporting);
	cr_assert(!cfg.balloon.deflate_on_oom);
	cr_assert_eq(cfg.hotplug_size, 1ULL << 30);
	cr_assert_eq(cfg.hotplugged_size, 128ULL << 20);
	refused("{\"payload\":{\"kernel\":\"/k\"},\"disks\":[{\"readonly\":true}]}", "disks[0]: no path");
	refused("{\"payload\":{\"kernel\":\"/k\"},\"disks\":{\"path\":\"/d\"}}", "disks");
	refused("{\"payload\":{\"kernel\":\"/k\"},\"disks\":[{\"path\":\"/d\",\"readonly\":1}]}",
		"readonly");
	refused("{\"payload\":{\"kernel\":\"/k\"},\"disks\":[{\"path\":\"/d\",\"serial\":"
		"\"123456789012345678901\"}]}", "longer than 20 bytes");
	refused("{\"payload\":{\"kernel\":\"/k\"},\"disks\":[{\"path\":\"/a\"},{\"path\":\"/b\"},"
		"{\"path\":\"/c\"},{\"path\":\"/d\"}]}", "at most 3");
	refused("{\"payload\":{\"kernel\":\"/k\"},\"balloon\":{\"size\":-1}}", "balloon.size");
	refused("{\"payload\":{\"kernel\":\"/k\"},\"memory\":{\"hotplug_method\":\"Acpi\"}}",
		"only \"VirtioMem\"");
}

Test(api_config, resize)
{
	struct api_resize rs;
	cr_assert_eq(api_parse_resize("{\"desired_balloon\":4096}", 24, &rs, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rs.desired_balloon, 4096);
	cr_assert_eq(rs.desired_ram, UINT64_MAX);
	const char *j = "{\"desired_ram\":1073741824,\"desired_vcpus\":null}";
	cr_assert_eq(api_parse_resize(j, strlen(j), &rs, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rs.desired_ram, 1ULL << 30);
	cr_assert_eq(api_parse_resize("{}", 2, &rs, err, sizeof(err)), -1);
	cr_assert(strstr(err, "nothing to resize"), "%s", err);
	cr_assert_eq(api_parse_resize("{\"desired_ram\":\"1G\"}", 19, &rs, err, sizeof(err)), -1);
	cr_assert_eq(api_parse_resize("[1]", 3, &rs, err, sizeof(err)), -1);
}

Test(api_config, error_json_escapes)
{
	char *s = api_error_json("a \"quoted\"\nline / with a slash");
	cr_assert_not_null(s);
	struct json_object *o = json_tokener_parse(s);
	cr_assert_not_null(o, "not JSON: %s", s);
	cr_assert_str_eq(json_object_get_string(path(o, "error", NULL, NULL)),
			 "a \"quoted\"\nline / with a slash");
	json_object_put(o);
	free(s);
}

Test(api_config, info_reports_the_pty_and_round_trips)
{
	cr_assert_eq(parse("{\"console\":{\"mode\":\"Pty\"},\"serial\":{\"mode\":\"Null\"},"
			   "\"cpus\":{\"boot_vcpus\":2,\"max_vcpus\":3},\"memory\":{\"size\":268435456},"
			   "\"kernel\":{\"path\":\"/boot/k\"},\"cmdline\":{\"args\":\"a=\\\"b\\\"\"}}"),
		     0, "%s", err);
	char *s = api_info_json(&cfg, "/dev/pts/7", "Running", 268435456, NULL);
	cr_assert_not_null(s);
	cr_assert(strstr(s, "\"/dev/pts/7\""), "slashes escaped or path missing: %s", s);
	struct json_object *o = json_tokener_parse(s);
	cr_assert_not_null(o, "not JSON: %s", s);
	cr_assert_str_eq(json_object_get_string(path(o, "state", NULL, NULL)), "Running");
	cr_assert_eq(json_object_get_int64(path(o, "memory_actual_size", NULL, NULL)), 268435456);
	struct json_object *c = path(o, "config", NULL, NULL);
	cr_assert_eq(json_object_get_int64(path(c, "cpus", "boot_vcpus", NULL)), 2);
	cr_assert_eq(json_object_get_int64(path(c, "cpus", "max_vcpus", NULL)), 3);
	cr_assert_eq(json_object_get_int64(path(c, "memory", "size", NULL)), 268435456);
	cr_assert_str_eq(json_object_get_string(path(c, "payload", "kernel", NULL)), "/boot/k");
	cr_assert_str_eq(json_object_get_string(path(c, "payload", "cmdline", NULL)), "a=\"b\"");
	cr_assert(json_object_is_type(path(c, "payload", "initramfs", NULL), json_type_null));
	cr_assert_str_eq(json_object_get_string(path(c, "console", "mode", NULL)), "Pty");
	cr_assert_str_eq(json_object_get_string(path(c, "console", "file", NULL)), "/dev/pts/7");
	cr_assert_str_eq(json_object_get_string(path(c, "serial", "mode", NULL)), "Null");
	cr_assert(json_object_is_type(path(c, "serial", "file", NULL), json_type_null));

	/* vm.info's config is a vm.create body (payload shape). */
	const char *cs = json_object_to_json_string(c);
	struct machine_config again;
	machine_config_init(&again);
	cr_assert_eq(api_parse_create(cs, strlen(cs), &again, err, sizeof(err)), 0, "%s: %s", err, cs);
	cr_assert_str_eq(again.kernel, "/boot/k");
	cr_assert_str_eq(again.cmdline, "a=\"b\"");
	cr_assert_eq(again.vm.nr_vcpus, 2);
	cr_assert_eq(again.max_vcpus, 3);
	cr_assert_eq(again.console.mode, CHR_PTY);
	machine_config_free(&again);
	json_object_put(o);
	free(s);

	/* Both Pty: the same path twice.  Before the pty exists: null. */
	cfg.serial.mode = CHR_PTY;
	s = api_info_json(&cfg, "/dev/pts/9", "Paused", 1, NULL);
	o = json_tokener_parse(s);
	cr_assert_str_eq(json_object_get_string(path(o, "config", "console", "file")), "/dev/pts/9");
	cr_assert_str_eq(json_object_get_string(path(o, "config", "serial", "file")), "/dev/pts/9");
	json_object_put(o);
	free(s);
	s = api_info_json(&cfg, NULL, "Created", 1, NULL);
	o = json_tokener_parse(s);
	cr_assert(json_object_is_type(path(o, "config", "console", "file"), json_type_null));
	json_object_put(o);
	free(s);
}

Test(api_config, counters_have_every_field)
{
	struct gmm_stats st;
	memset(&st, 0, sizeof(st));
	st.translations = 12345678901234ULL;
	st.mapped_bytes = 1ULL << 30;
	cr_assert_eq(api_stats_fields(&st) * sizeof(uint64_t), sizeof(st),
		     "gmm_stats_format lists %u fields; struct gmm_stats has %zu",
		     api_stats_fields(&st), sizeof(st) / sizeof(uint64_t));
	struct api_vcpu_counters cpus[2] = { { 10, 5, 3, 2, 1 }, { 20, 6, 4, 3, 2 } };
	char *s = api_counters_json(&st, cpus, 2, NULL);
	cr_assert_not_null(s);
	struct json_object *o = json_tokener_parse(s);
	cr_assert_not_null(o, "not JSON: %s", s);
	struct json_object *g = path(o, "guestmm", NULL, NULL);
	cr_assert_eq((size_t)json_object_object_length(g), sizeof(st) / sizeof(uint64_t));
	cr_assert_eq(json_object_get_uint64(path(g, "translations", NULL, NULL)), 12345678901234ULL);
	cr_assert_eq(json_object_get_uint64(path(g, "mapped_bytes", NULL, NULL)), 1ULL << 30);
	cr_assert_eq(json_object_get_uint64(path(o, "vcpu1", "exits", NULL)), 20);
	cr_assert_eq(json_object_get_uint64(path(o, "vcpu0", "kicks", NULL)), 1);
	cr_assert_null(path(o, "vcpu2", NULL, NULL));
	json_object_put(o);
	free(s);
}

Test(api_config, uart_mapping)
{
	static const struct { enum chr_mode console, serial; enum console_kind want; } t[] = {
		{ CHR_PTY, CHR_NULL, CONSOLE_PTY }, { CHR_OFF, CHR_PTY, CONSOLE_PTY },
		{ CHR_PTY, CHR_PTY, CONSOLE_PTY },  { CHR_TTY, CHR_PTY, CONSOLE_PTY },
		{ CHR_TTY, CHR_NULL, CONSOLE_STDIO }, { CHR_OFF, CHR_TTY, CONSOLE_STDIO },
		{ CHR_TTY, CHR_OFF, CONSOLE_STDIO }, { CHR_OFF, CHR_NULL, CONSOLE_OFF },
		{ CHR_NULL, CHR_OFF, CONSOLE_OFF },  { CHR_TTY, CHR_FILE, CONSOLE_FILE },
		{ CHR_FILE, CHR_NULL, CONSOLE_FILE },
	};
	for (unsigned i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct machine_config c;
		machine_config_init(&c);
		c.console.mode = t[i].console;
		c.serial.mode = t[i].serial;
		if (t[i].console == CHR_FILE)
			c.console.file = strdup("/tmp/console.log");
		if (t[i].serial == CHR_FILE)
			c.serial.file = strdup("/tmp/serial.log");
		struct console con;
		config_uart_console(&c, &con);
		cr_assert_eq(con.kind, t[i].want, "console %s serial %s -> %d, want %d",
			     chr_mode_name(t[i].console), chr_mode_name(t[i].serial), con.kind, t[i].want);
		cr_assert_eq(con.out_fd, -1);
		cr_assert_eq(con.hold_fd, -1);
		if (t[i].want == CONSOLE_FILE)
			cr_assert_str_eq(con.path, t[i].serial == CHR_FILE ? "/tmp/serial.log" :
						   "/tmp/console.log");
		machine_config_free(&c);
	}
}

Test(api_config, checks_name_the_value)
{
	const char *img = getenv("VMM_TEST_IMAGE");
	cr_assert_not_null(img, "VMM_TEST_IMAGE (a bootable test image) is not set");
	char dir[] = "/tmp/api_config_XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char empty[64], missing[64], file[96];
	snprintf(empty, sizeof(empty), "%s/empty", dir);
	snprintf(missing, sizeof(missing), "%s/missing", dir);
	FILE *f = fopen(empty, "w");
	cr_assert_not_null(f);
	fclose(f);

	cr_assert_eq(config_check_kernel(img, false, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_check_kernel(missing, false, err, sizeof(err)), -1);
	cr_assert(strstr(err, "kernel ") == err && strstr(err, "No such file"), "%s", err);
	cr_assert_eq(config_check_kernel(missing, true, err, sizeof(err)), -1);
	cr_assert(strstr(err, "--kernel ") == err, "%s", err);
	cr_assert_eq(config_check_kernel(empty, false, err, sizeof(err)), -1);
	cr_assert(strstr(err, "empty"), "%s", err);
	cr_assert_eq(config_check_kernel(dir, false, err, sizeof(err)), -1);
	cr_assert(strstr(err, "not a regular file"), "%s", err);
	cr_assert_eq(config_check_kernel("/proc/self/status", false, err, sizeof(err)), -1);

	cfg.kernel = strdup(img);
	cr_assert_eq(config_check(&cfg, false, err, sizeof(err)), 0, "%s", err);
	cfg.initrd = strdup(missing);
	cr_assert_eq(config_check(&cfg, false, err, sizeof(err)), -1);
	cr_assert(strstr(err, "initramfs ") == err, "%s", err);
	cr_assert_eq(config_check(&cfg, true, err, sizeof(err)), -1);
	cr_assert(strstr(err, "--initrd ") == err, "%s", err);
	free(cfg.initrd);
	cfg.initrd = NULL;
	snprintf(file, sizeof(file), "%s/no/such/dir/serial.log", dir);
	cfg.serial.mode = CHR_FILE;
	cfg.serial.file = strdup(file);
	cr_assert_eq(config_check(&cfg, false, err, sizeof(err)), -1);
	cr_assert(strstr(err, "serial.file ") == err && strstr(err, "No such file"), "%s", err);
	snprintf(file, sizeof(file), "%s/serial.log", dir);
	free(cfg.serial.file);
	cfg.serial.file = strdup(file);
	cr_assert_eq(config_check(&cfg, false, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(access(file, F_OK), 0, "a File console is created by the check");
	cfg.vm.nr_vcpus = 65;
	cr_assert_eq(config_check(&cfg, false, err, sizeof(err)), -1);
	cr_assert(strstr(err, "cpus.boot_vcpus: 65"), "%s", err);
	cfg.vm.nr_vcpus = 1;
	cfg.vm.mem_size = 1536ULL << 20;
	cfg.vm.backing = GMM_BACKING_HUGETLB_1G;
	cr_assert_eq(config_check(&cfg, false, err, sizeof(err)), -1);
	cr_assert(strstr(err, "multiple of the hugetlb-1G page size"), "%s", err);
	free(cfg.kernel);
	cfg.kernel = NULL;
	cfg.vm.backing = GMM_BACKING_THP;
	cr_assert_eq(config_check(&cfg, false, err, sizeof(err)), -1);
	cr_assert(strstr(err, "no kernel"), "%s", err);

	unlink(file);
	unlink(empty);
	rmdir(dir);
}

Test(api_config, console_shares_uart)
{
	struct machine_config c;
	machine_config_init(&c);
	c.console.mode = CHR_PTY, c.serial.mode = CHR_TTY;
	cr_assert(config_console_shares_uart(&c), "a Pty console carries the UART too");
	c.console.mode = CHR_TTY, c.serial.mode = CHR_NULL;
	cr_assert(config_console_shares_uart(&c), "a discarding serial port follows the console");
	c.console.mode = CHR_TTY, c.serial.mode = CHR_TTY;
	cr_assert(config_console_shares_uart(&c), "both on the terminal");
	c.console.mode = CHR_TTY, c.serial.mode = CHR_PTY;
	cr_assert(!config_console_shares_uart(&c), "the UART on a pty, the console on the terminal");
	c.console.mode = CHR_FILE, c.serial.mode = CHR_FILE;
	c.console.file = strdup("/tmp/a");
	c.serial.file = strdup("/tmp/b");
	cr_assert(!config_console_shares_uart(&c), "two different files");
	free(c.serial.file);
	c.serial.file = strdup("/tmp/a");
	cr_assert(config_console_shares_uart(&c), "the same file");
	machine_config_free(&c);
}

/* Issue 13, findings 5 and 6: the files a config names.  A console or
 * serial File must be a regular file the VMM's user owns with one link
 * (created 0600 if missing), or a terminal; a symlink, a FIFO, a
 * directory, a device node, a hard-linked file are refused and left as
 * they were.  Kernel, initrd and disks are opened without blocking: a FIFO
 * is refused at once (the test's timeout catches a hang). */
static char fdir[64];

static void mkpath(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", fdir, name);
}

static void serial_file(const char *path)
{
	free(cfg.serial.file);
	cfg.serial.mode = CHR_FILE;
	cfg.serial.file = strdup(path);
}

static void refused_file(const char *path, const char *want)
{
	serial_file(path);
	cr_assert_eq(config_check(&cfg, false, err, sizeof(err)), -1, "%s accepted", path);
	cr_assert(strstr(err, "serial.file ") == err && strstr(err, want), "%s: <%s> lacks <%s>",
		  path, err, want);
}

Test(api_config, chr_files_refused, .timeout = 20)
{
	const char *img = getenv("VMM_TEST_IMAGE");
	cr_assert_not_null(img);
	snprintf(fdir, sizeof(fdir), "/tmp/api_config_files_XXXXXX");
	cr_assert_not_null(mkdtemp(fdir));
	char victim[96], lnk[96], dangling[96], fifo[96], hard[96], fresh[96], target[96];
	mkpath(victim, sizeof(victim), "victim");
	mkpath(lnk, sizeof(lnk), "link");
	mkpath(dangling, sizeof(dangling), "dangling");
	mkpath(target, sizeof(target), "target");
	mkpath(fifo, sizeof(fifo), "fifo");
	mkpath(hard, sizeof(hard), "hard");
	mkpath(fresh, sizeof(fresh), "fresh.log");
	FILE *f = fopen(victim, "w");
	cr_assert_not_null(f);
	fputs("secret\n", f);
	fclose(f);
	cr_assert_eq(symlink(victim, lnk), 0);
	cr_assert_eq(symlink(target, dangling), 0);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	cr_assert_eq(link(victim, hard), 0);
	cfg.kernel = strdup(img);

	refused_file(lnk, "symbolic link");
	refused_file(dangling, "symbolic link");
	cr_assert_eq(access(target, F_OK), -1, "a dangling symlink's target was created");
	refused_file(fifo, "not a regular file or a terminal");
	refused_file(fdir, "not a regular file or a terminal");
	refused_file("/dev/null", "not a regular file or a terminal");
	refused_file(hard, "hard links");
	struct stat st;
	cr_assert_eq(stat(victim, &st), 0);
	cr_assert_eq(st.st_size, 7, "the victim was written to");

	/* The console's field is named too, and the --serial/--console form. */
	free(cfg.serial.file);
	cfg.serial.file = NULL;
	cfg.serial.mode = CHR_NULL;
	cfg.console.mode = CHR_FILE;
	cfg.console.file = strdup(lnk);
	cr_assert_eq(config_check(&cfg, true, err, sizeof(err)), -1);
	cr_assert(strstr(err, "--console file=") == err && strstr(err, "symbolic link"), "%s", err);
	free(cfg.console.file);
	cfg.console.file = NULL;
	cfg.console.mode = CHR_OFF;

	/* Created private whatever the umask. */
	mode_t old = umask(0);
	serial_file(fresh);
	int ret = config_check(&cfg, false, err, sizeof(err));
	umask(old);
	cr_assert_eq(ret, 0, "%s", err);
	cr_assert_eq(stat(fresh, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600, "created %o", st.st_mode & 07777);
	/* Then used again as it is. */
	cr_assert_eq(config_check(&cfg, false, err, sizeof(err)), 0, "%s", err);

	/* A terminal is fine (when the test has one to give). */
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m >= 0 && grantpt(m) == 0 && unlockpt(m) == 0 && ptsname(m)) {
		serial_file(ptsname(m));
		cr_assert_eq(config_check(&cfg, false, err, sizeof(err)), 0, "%s", err);
	}
	if (m >= 0)
		close(m);

	unlink(victim), unlink(lnk), unlink(dangling), unlink(fifo), unlink(hard), unlink(fresh);
	rmdir(fdir);
}

Test(api_config, fifo_paths_refused_at_once, .timeout = 20)
{
	const char *img = getenv("VMM_TEST_IMAGE");
	cr_assert_not_null(img);
	snprintf(fdir, sizeof(fdir), "/tmp/api_config_fifo_XXXXXX");
	cr_assert_not_null(mkdtemp(fdir));
	char fifo[96];
	mkpath(fifo, sizeof(fifo), "fifo");
	cr_assert_eq(mkfifo(fifo, 0600), 0);

	cr_assert_eq(config_check_kernel(fifo, false, err, sizeof(err)), -1);
	cr_assert(strstr(err, "kernel ") == err && strstr(err, "not a regular file"), "%s", err);
	cfg.kernel = strdup(img);
	cfg.initrd = strdup(fifo);
	cr_assert_eq(config_check(&cfg, false, err, sizeof(err)), -1);
	cr_assert(strstr(err, "initramfs ") == err && strstr(err, "not a regular file"), "%s", err);
	free(cfg.initrd);
	cfg.initrd = NULL;
	cr_assert_eq(config_parse_disk(&cfg, fifo, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_check(&cfg, true, err, sizeof(err)), -1);
	cr_assert(strstr(err, "--disk ") == err && strstr(err, "not a regular file or block device"),
		  "%s", err);

	unlink(fifo);
	rmdir(fdir);
}

/* ---- a snapshot's config.json and vm.restore's body (issue 16) ---------- */

Test(api_config, snapshot_config_round_trip)
{
	cr_assert_eq(parse("{\"payload\":{\"kernel\":\"/k\",\"cmdline\":\"console=ttyS0\"},"
			   "\"cpus\":{\"boot_vcpus\":2,\"max_vcpus\":2},"
			   "\"memory\":{\"size\":536870912,\"hotplug_method\":\"VirtioMem\","
			   "\"hotplug_size\":268435456},"
			   "\"disks\":[{\"path\":\"/d\",\"readonly\":true,\"serial\":\"S1\"}],"
			   "\"balloon\":{\"size\":0,\"free_page_reporting\":true},"
			   "\"net\":[{\"tap\":\"tap7\",\"mac\":\"52:54:00:01:02:03\",\"mtu\":9000}],"
			   "\"serial\":{\"mode\":\"Pty\"},\"console\":{\"mode\":\"Off\"}}"), 0, "%s", err);
	cfg.vm.backing = GMM_BACKING_MEMFD;
	cfg.vm.prefault = true;
	cfg.test_devices = 1;
	cfg.disks[0].engine = 0;
	char *text = api_snapshot_config_json(&cfg);
	cr_assert(text);
	struct machine_config back;
	machine_config_init(&back);
	int ret = api_parse_snapshot_config(text, strlen(text), &back, err, sizeof(err));
	cr_assert_eq(ret, 0, "%s: %s", err, text);
	cr_expect_eq(back.vm.nr_vcpus, 2);
	cr_expect_eq(back.vm.mem_size, 512ULL << 20);
	cr_expect_eq(back.hotplug_size, 256ULL << 20);
	cr_expect_eq(back.vm.backing, GMM_BACKING_MEMFD);
	cr_expect(back.vm.prefault);
	cr_expect_eq(back.test_devices, 1);
	cr_expect_eq(back.ndisks, 1);
	cr_expect_str_eq(back.disks[0].path, "/d");
	cr_expect(back.disks[0].readonly);
	cr_expect_str_eq(back.disks[0].serial, "S1");
	cr_expect_eq(back.disks[0].engine, 0);
	cr_expect(back.balloon.enabled && back.balloon.free_page_reporting);
	cr_expect_eq(back.nnets, 1);
	cr_expect_str_eq(back.nets[0].tap, "tap7");
	cr_expect_eq(back.nets[0].mtu, 9000);
	cr_expect(back.nets[0].mac_set && back.nets[0].mac[5] == 3);
	cr_expect_eq(back.serial.mode, CHR_PTY);
	cr_expect_eq(back.console.mode, CHR_OFF);
	cr_expect_str_eq(back.kernel, "/k");
	cr_expect_str_eq(back.cmdline, "console=ttyS0");
	machine_config_free(&back);
	free(text);
}

static void snapshot_config_refused(const char *json, const char *want)
{
	struct machine_config c;
	machine_config_init(&c);
	char e[512] = "";
	cr_assert_eq(api_parse_snapshot_config(json, strlen(json), &c, e, sizeof(e)), -1,
		     "accepted: %s", json);
	cr_assert(strstr(e, want), "error <%s> lacks <%s> for %s", e, want, json);
	machine_config_free(&c);
}

Test(api_config, snapshot_config_refused)
{
	const char *host = "\"host\":{\"backing\":\"thp\",\"strategy\":\"perthread\",\"prefault\":false,"
			   "\"cpuid_filter\":\"auto\",\"test_devices\":\"off\",\"disk_engines\":[]}";
	char buf[1024];
	snapshot_config_refused("[]", "expected a JSON object");
	snapshot_config_refused("{\"format\":\"other\"}", "not a vmm snapshot configuration");
	snapshot_config_refused("{\"format\":\"vmm-config\",\"version\":2}", "version 2");
	snapshot_config_refused("{\"format\":\"vmm-config\",\"version\":1}", "missing");
	snprintf(buf, sizeof(buf), "{\"format\":\"vmm-config\",\"version\":1,%s,"
		 "\"vm\":{\"payload\":{\"kernel\":\"/k\"},\"memory\":{\"size\":-5}}}", host);
	snapshot_config_refused(buf, "memory");
	snapshot_config_refused("{\"format\":\"vmm-config\",\"version\":1,\"vm\":{},"
				"\"host\":{\"backing\":\"file\"}}", "host.backing");
	snprintf(buf, sizeof(buf), "{\"format\":\"vmm-config\",\"version\":1,%s,"
		 "\"vm\":{\"payload\":{\"kernel\":\"/k\"},\"disks\":[{\"path\":\"/d\"}]}}", host);
	snapshot_config_refused(buf, "disk_engines");
	snprintf(buf, sizeof(buf), "{\"format\":\"vmm-config\",\"version\":1,%s,"
		 "\"vm\":{\"payload\":{\"kernel\":\"/k\"},\"net\":[{\"mac\":\"ff:ff:ff:ff:ff:ff\"}]}}", host);
	snapshot_config_refused(buf, "multicast");
}

Test(api_config, restore_body)
{
	struct api_restore r;
	const char *ok = "{\"source_url\":\"file:///s\",\"prefault\":false,"
			 "\"memory_restore_mode\":\"OnDemand\",\"resume\":true,"
			 "\"net_fds\":[{\"id\":\"net0\",\"num_fds\":1}],\"backing\":\"hugetlb-2M\"}";
	cr_assert_eq(api_parse_restore(ok, strlen(ok), &r, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(r.url, "file:///s");
	cr_expect(r.on_demand && r.resume && r.prefault_set && !r.prefault);
	cr_expect_eq(r.backing, GMM_BACKING_HUGETLB_2M);
	cr_expect_eq(r.nnets, 1);
	cr_expect_str_eq(r.nets[0].id, "net0");
	const char *min = "{\"source_url\":\"file:///s\"}";
	cr_assert_eq(api_parse_restore(min, strlen(min), &r, err, sizeof(err)), 0, "%s", err);
	cr_expect(!r.on_demand && !r.resume && !r.prefault_set && r.backing == -1 && r.nnets == 0);
	static const struct { const char *body, *want; } bad[] = {
		{ "{}", "source_url: missing" },
		{ "{\"source_url\":5}", "source_url" },
		{ "{\"source_url\":\"file:///s\",\"memory_restore_mode\":\"Lazy\"}", "not Copy or OnDemand" },
		{ "{\"source_url\":\"file:///s\",\"resume\":\"yes\"}", "resume" },
		{ "{\"source_url\":\"file:///s\",\"backing\":\"file\"}", "backing" },
		{ "{\"source_url\":\"file:///s\",\"net_fds\":[{\"num_fds\":1}]}", "net_fds[0].id" },
		{ "{\"source_url\":\"file:///s\",\"net_fds\":[{\"id\":\"a\",\"num_fds\":2}]}", "one queue pair" },
		{ "{\"source_url\":\"file:///s\",\"net_fds\":[{\"id\":\"a\"},{\"id\":\"b\"},{\"id\":\"c\"}]}", "at most" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char e[512] = "";
		cr_expect_eq(api_parse_restore(bad[i].body, strlen(bad[i].body), &r, e, sizeof(e)), -1,
			     "accepted %s", bad[i].body);
		cr_expect(strstr(e, bad[i].want), "<%s> lacks <%s>", e, bad[i].want);
	}
	char url[64];
	const char *s = "{\"destination_url\":\"file:///x\"}";
	cr_expect_eq(api_parse_snapshot(s, strlen(s), url, sizeof(url), err, sizeof(err)), 0);
	cr_expect_str_eq(url, "file:///x");
	cr_expect_eq(api_parse_snapshot("{}", 2, url, sizeof(url), err, sizeof(err)), -1);
	cr_expect(strstr(err, "destination_url: missing"));
}
