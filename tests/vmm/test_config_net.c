// SPDX-License-Identifier: GPL-2.0-only
/*
 * test_config_net.c - the network part of a machine configuration
 * (vmm/machine/config.c, issue 15): `--net` specs parsed into struct
 * net_config, MAC parsing, the owned tap fd through copy (dup'ed,
 * close-on-exec), free (closed) and reset_guest, and config_check's limits.
 * No tap is opened: plain data and fds (a pipe stands for a tap fd).
 */
#include "machine/config.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct machine_config c;
static char err[512];

static void setup(void)
{
	machine_config_init(&c);
}

static void teardown(void)
{
	machine_config_free(&c);
}

TestSuite(config_net, .init = setup, .fini = teardown, .timeout = 30);

static bool fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

Test(config_net, mac)
{
	uint8_t m[6];
	cr_assert_eq(config_parse_mac("52:54:00:ab:CD:0f", m), 0);
	cr_assert_eq(m[0], 0x52);
	cr_assert_eq(m[4], 0xcd);
	cr_assert_eq(m[5], 0x0f);
	const char *bad[] = { "", "52:54:00:ab:cd", "52:54:00:ab:cd:0f:11", "52-54-00-ab-cd-0f",
			      "52:54:00:ab:cd:g0", "52:54:00:ab:cd: f", "5:54:00:ab:cd:0ff",
			      "52:54:00:ab:cd:+f", NULL };
	for (int i = 0; bad[i]; i++)
		cr_assert_eq(config_parse_mac(bad[i], m), -1, "'%s' accepted", bad[i]);
}

Test(config_net, parse_tap)
{
	cr_assert_eq(config_parse_net(&c, "tap=vt0,mac=52:54:00:12:34:56,mtu=9000,ip=10.0.0.1,"
				      "mask=255.255.0.0,id=n0,queue_size=128", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.nnets, 1);
	struct net_config *n = &c.nets[0];
	cr_assert_str_eq(n->tap, "vt0");
	cr_assert_str_eq(n->id, "n0");
	cr_assert_eq(n->fd, -1);
	cr_assert(n->mac_set);
	cr_assert_eq(n->mac[5], 0x56);
	cr_assert_eq(n->mtu, 9000);
	cr_assert_eq(n->queue_size, 128);
	cr_assert_eq(n->ip, inet_addr("10.0.0.1"));
	cr_assert_eq(n->mask, inet_addr("255.255.0.0"));
	/* ip without mask: a /24. */
	cr_assert_eq(config_parse_net(&c, "tap=vt1,ip=10.1.0.1", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.nets[1].mask, inet_addr("255.255.255.0"));
	cr_assert_not(c.nets[1].mac_set);
	cr_assert_eq(config_parse_net(&c, "tap=vt2", err, sizeof(err)), -1);
	cr_assert(strstr(err, "at most 2"), "%s", err);
}

Test(config_net, parse_errors)
{
	const char *bad[][2] = {
		{ "", "tap=NAME or fd=N" },
		{ "mac=52:54:00:12:34:56", "tap=NAME or fd=N" },
		{ "tap=a,fd=3", "" },
		{ "tap=", "interface name" },
		{ "tap=0123456789abcdef", "interface name" },
		{ "tap=a/b", "interface name" },
		{ "tap=a,mac=01:00:00:00:00:01", "unicast" },
		{ "tap=a,mtu=67", "mtu" },
		{ "tap=a,mtu=65536", "mtu" },
		{ "tap=a,mtu=-1", "mtu" },
		{ "tap=a,queue_size=3", "queue_size" },
		{ "tap=a,queue_size=512", "queue_size" },
		{ "tap=a,ip=1.2.3", "IPv4" },
		{ "tap=a,mask=255.0.0.0", "without ip" },
		{ "tap=a,num_queues=2", "unknown key" },
		{ "tap=a,junk", "key=value" },
		{ "fd=2", "above 2" },
		{ "fd=x", "above 2" },
		{ "fd=999999", "not open" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		cr_assert_eq(config_parse_net(&c, bad[i][0], err, sizeof(err)), -1, "'%s' accepted",
			     bad[i][0]);
		cr_assert(strstr(err, bad[i][1]), "'%s': %s", bad[i][0], err);
		cr_assert_eq(c.nnets, 0);
	}
}

Test(config_net, fd_owned_copied_freed)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	char spec[64];
	snprintf(spec, sizeof(spec), "fd=%d", p[0]);
	cr_assert_eq(config_parse_net(&c, spec, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.nets[0].fd, p[0]);
	cr_assert_null(c.nets[0].tap);
	/* The same fd twice: refused (two owners would close it twice). */
	cr_assert_eq(config_parse_net(&c, spec, err, sizeof(err)), -1);
	cr_assert(strstr(err, "already"), "%s", err);

	struct machine_config copy;
	cr_assert_eq(machine_config_copy(&copy, &c), 0);
	int cfd = copy.nets[0].fd;
	cr_assert_neq(cfd, p[0], "the copy has its own fd");
	cr_assert(fd_open(cfd));
	cr_assert(fcntl(cfd, F_GETFD) & FD_CLOEXEC, "the copy's fd is close-on-exec");
	machine_config_free(&copy);
	cr_assert_not(fd_open(cfd), "free closes the copy's fd");
	cr_assert(fd_open(p[0]), "... and not the original");

	machine_config_reset_guest(&c);   /* a vm.create: nets go with the rest */
	cr_assert_eq(c.nnets, 0);
	cr_assert_not(fd_open(p[0]), "reset_guest closes the owned fd");
	close(p[1]);
}

Test(config_net, check_limits)
{
	const char *img = getenv("VMM_TEST_IMAGE");
	cr_assert_not_null(img, "VMM_TEST_IMAGE (meson sets it)");
	c.kernel = strdup(img);
	c.serial.mode = CHR_NULL;
	cr_assert_eq(config_parse_net(&c, "tap=a", err, sizeof(err)), 0);
	cr_assert_eq(config_check(&c, true, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_parse_net(&c, "tap=a", err, sizeof(err)), 0);
	cr_assert_eq(config_check(&c, true, err, sizeof(err)), -1);
	cr_assert(strstr(err, "the same tap"), "%s", err);
	free(c.nets[1].tap);
	c.nets[1].tap = strdup("b");
	cr_assert_eq(config_check(&c, false, err, sizeof(err)), 0, "%s", err);
	/* Six virtio devices at most, nets included. */
	char disk[] = "/tmp/test_config_net.XXXXXX";
	int fd = mkstemp(disk);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 4096), 0);
	close(fd);
	char spec[64];
	snprintf(spec, sizeof(spec), "path=%s", disk);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(config_parse_disk(&c, spec, err, sizeof(err)), 0, "%s", err);
	c.console.mode = CHR_NULL;
	cr_assert_eq(config_check(&c, true, err, sizeof(err)), 0, "%s", err);
	c.balloon.enabled = true;
	cr_assert_eq(config_check(&c, true, err, sizeof(err)), -1);
	cr_assert(strstr(err, "at most 6 virtio devices") && strstr(err, "has 7"), "%s", err);
	unlink(disk);
}
