// SPDX-License-Identifier: GPL-2.0-only
/*
 * bus.c - port-I/O and MMIO dispatch.
 *
 * Ranges sit in a small array per bus, sorted by base, searched by binary
 * search.  Registration happens before vCPUs start, so lookups need no lock.
 * Unclaimed accesses are logged once per (bus, address) -- a small hash of
 * addresses already reported, lossy by design: a guest hammering many
 * addresses cannot flood the log or grow memory.
 */
#include "core/bus.h"
#include "core/log.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#define MAX_RANGES 64
#define SEEN_SLOTS 256

struct bus {
	struct bus_range r[MAX_RANGES];
	int n;
	_Atomic uint64_t seen[SEEN_SLOTS]; /* addr + 1 of unclaimed accesses logged */
	_Atomic uint64_t unclaimed;        /* accesses nobody claimed */
	struct ratelimit rl;
};

static struct bus buses[2];

int bus_register(enum bus_kind kind, uint64_t base, uint64_t len, bus_handler fn, void *opaque,
		 const char *name)
{
	struct bus *b = &buses[kind];
	if (len == 0 || base + len < base)
		return -EINVAL;
	if (b->n == MAX_RANGES)
		return -ENOSPC;
	int i = 0;
	while (i < b->n && b->r[i].base < base)
		i++;
	if ((i > 0 && b->r[i - 1].base + b->r[i - 1].len > base) ||
	    (i < b->n && base + len > b->r[i].base))
		return -EEXIST;
	memmove(&b->r[i + 1], &b->r[i], (size_t)(b->n - i) * sizeof(b->r[0]));
	b->r[i] = (struct bus_range){ base, len, fn, opaque, name };
	b->n++;
	return 0;
}

static const struct bus_range *find(const struct bus *b, uint64_t addr)
{
	int lo = 0, hi = b->n - 1;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		const struct bus_range *r = &b->r[mid];
		if (addr < r->base)
			hi = mid - 1;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

bool bus_dispatch(enum bus_kind kind, struct vcpu *cpu, uint64_t addr, uint8_t *data,
		  unsigned len, bool is_write)
{
	struct bus *b = &buses[kind];
	const struct bus_range *r = find(b, addr);
	if (r && addr + len - r->base <= r->len) {
		r->fn(r->opaque, cpu, addr - r->base, data, len, is_write);
		return true;
	}
	if (!is_write)
		memset(data, 0xff, len);
	atomic_fetch_add_explicit(&b->unclaimed, 1, memory_order_relaxed);
	/* Log each unclaimed address once (best effort), rate-limited. */
	uint64_t key = addr + 1;
	_Atomic uint64_t *slot = &b->seen[(addr * 0x9e3779b97f4a7c15ULL) >> 56];
	if (atomic_exchange_explicit(slot, key, memory_order_relaxed) != key)
		log_ratelimited(&b->rl, LOG_WARN, "unclaimed %s %s at 0x%llx (%u bytes)%s",
			kind == BUS_PIO ? "port" : "MMIO", is_write ? "write" : "read",
			(unsigned long long)addr, len, is_write ? ", ignored" : ", reads as all-ones");
	return false;
}

uint64_t bus_unclaimed(enum bus_kind kind)
{
	return atomic_load_explicit(&buses[kind].unclaimed, memory_order_relaxed);
}

void bus_reset(void)
{
	memset(buses, 0, sizeof(buses));
}
