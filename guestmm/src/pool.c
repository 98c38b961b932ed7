// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * pool.c - the table-page pool.
 *
 * Table pages (4 KiB, 512 entries) come from a per-VM pool, charged to the
 * VM against a limit ("as long as the task is held accountable": Johannes
 * Weiner in "Memory allocation on speculative fastpaths", the linux-mm
 * thread Paul E. McKenney opened in May 2022).  Three ways in, after the
 * kernel's discussions of allocating where one may not sleep: that thread;
 * Alexei Starovoitov's "bpf, mm: Introduce try_alloc_pages()" (bpf-next,
 * v6, January 2025); and Michal Hocko's review of Uladzislau Rezki's
 * "mm: Add __rcu_alloc_page_lockless() func." (RFC, October 2020):
 *
 *   gmm_pool_try_alloc  for paths that must not sleep: takes the lock only
 *                       with trylock, never grows, never touches the reserve.
 *                       It fails and the caller falls back to the slow path.
 *   gmm_pool_alloc      the slow path: locks, may grow the pool (mmap a
 *                       chunk) up to the limit, and, for the paths that must
 *                       always make progress (unmap, teardown), may take a
 *                       page from the reserve.
 *   the reserve         pages allocated when the VM is created, charged from
 *                       the start, handed out only to must-progress paths
 *                       and refilled first when pages come back.
 *
 * Frees poison every entry (GMM_PTE_POISON_VALUE) so a walker that reads a
 * freed table page is caught (walk.c counts late_reads).  Every free comes
 * from the writer side (wlock held, may take the pool lock): table pages
 * are freed only after a grace period the writer waited for, never from a
 * walker, so there is no lockless free path (an earlier unused one,
 * gmm_pool_free_nolock, was removed).
 *
 * Pages are never returned to the host before gmm_pool_fini(): a late
 * reader of a freed page reads poison, never unmapped memory.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define CHUNK_PAGES 64

struct gmm_pool_chunk {
	struct gmm_pool_chunk *next;
	void *base;
	uint64_t npages;
};

static void poison(struct gmm_ptp *pg)
{
	/* Relaxed: a late reader may race with this; it reads either the old
	 * entry (still pointing into memory the writer has not released: the
	 * grace period covered every walk that could reach this page) or
	 * poison.  Atomic so the race is defined. */
	for (int i = 0; i < GMM_PTES; i++)
		GMM_WRITE_ONCE(pg->e[i], GMM_PTE_POISON_VALUE);
}

static void zero(struct gmm_ptp *pg)
{
	/* The page is unreachable by walkers until published with a release
	 * store by the caller, so plain zeroing would do; keep it atomic for
	 * the sanitizers' benefit. */
	for (int i = 0; i < GMM_PTES; i++)
		GMM_WRITE_ONCE(pg->e[i], 0);
}

static void note_in_use(struct gmm_pool *p, uint64_t n)
{
	GMM_WRITE_ONCE(p->in_use, n);
	if (n > GMM_READ_ONCE(p->peak))
		GMM_WRITE_ONCE(p->peak, n);
}

/* Called with p->lock held: add a chunk of up to CHUNK_PAGES pages. */
static int grow(struct gmm_pool *p, uint64_t want)
{
	uint64_t n = CHUNK_PAGES;
	if (n > p->limit - p->charged)
		n = p->limit - p->charged;
	if (n < want)
		return -ENOSPC;
	struct gmm_pool_chunk *c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	void *base = GMM_FAULT(GMM_FAULT_POOL_MMAP) ? MAP_FAILED :
		     mmap(NULL, n * GMM_PAGE_SIZE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		free(c);
		return -ENOMEM;
	}
	c->base = base;
	c->npages = n;
	c->next = p->chunks;
	p->chunks = c;
	p->charged += n;
	for (uint64_t i = 0; i < n; i++) {
		struct gmm_ptp *pg = (struct gmm_ptp *)((char *)base + i * GMM_PAGE_SIZE);
		poison(pg);
		p->free[p->nfree++] = pg;
	}
	return 0;
}

int gmm_pool_init(struct gmm_pool *p, uint64_t limit, uint64_t reserve)
{
	memset(p, 0, sizeof(*p));
	if (reserve >= limit)
		return gmm_seterr(EINVAL, "table-page reserve (%llu) must be below the limit (%llu)",
				  (unsigned long long)reserve, (unsigned long long)limit);
	pthread_mutex_init(&p->lock, NULL);
	p->limit = limit;
	p->reserve_size = reserve;
	/* The free stack can hold every page the VM may ever be charged. */
	p->free_cap = limit;
	p->free = calloc(limit, sizeof(*p->free));
	p->reserve = calloc(reserve ? reserve : 1, sizeof(*p->reserve));
	if (!p->free || !p->reserve)
		goto nomem;
	pthread_mutex_lock(&p->lock);
	while (p->nreserve < reserve) {
		if (p->nfree == 0 && grow(p, 1) < 0) {
			pthread_mutex_unlock(&p->lock);
			goto nomem;
		}
		p->reserve[p->nreserve++] = p->free[--p->nfree];
	}
	pthread_mutex_unlock(&p->lock);
	return 0;
nomem:
	gmm_pool_fini(p);
	return gmm_seterr(ENOMEM, "cannot allocate the table-page pool (%llu pages)",
			  (unsigned long long)limit);
}

void gmm_pool_fini(struct gmm_pool *p)
{
	struct gmm_pool_chunk *c = p->chunks;
	while (c) {
		struct gmm_pool_chunk *next = c->next;
		munmap(c->base, c->npages * GMM_PAGE_SIZE);
		free(c);
		c = next;
	}
	free(p->free);
	free(p->reserve);
	pthread_mutex_destroy(&p->lock);
	memset(p, 0, sizeof(*p));
}

/* May not sleep: trylock only; no growth, no reserve. */
struct gmm_ptp *gmm_pool_try_alloc(struct gmm_pool *p)
{
	if (pthread_mutex_trylock(&p->lock) != 0)
		return NULL;
	struct gmm_ptp *pg = NULL;
	if (p->nfree) {
		pg = p->free[--p->nfree];
		note_in_use(p, GMM_READ_ONCE(p->in_use) + 1);
	}
	pthread_mutex_unlock(&p->lock);
	if (pg)
		zero(pg);
	return pg;
}

/* May sleep (takes the lock, may mmap).  NULL with -ENOSPC (the limit) or
 * -ENOMEM (the host refused a chunk) set by gmm_seterr. */
struct gmm_ptp *gmm_pool_alloc(struct gmm_pool *p, bool use_reserve)
{
	struct gmm_ptp *pg = NULL;
	int err = 0;
	/* Injected: neither the free stack nor the host has a page; the
	 * reserve still serves must-progress paths, as it would then. */
	bool inject = GMM_FAULT(GMM_FAULT_PTP_ALLOC);
	pthread_mutex_lock(&p->lock);
	if (inject)
		err = -ENOMEM;
	else if (p->nfree == 0)
		err = grow(p, 1);
	if (p->nfree && !inject)
		pg = p->free[--p->nfree];
	else if (use_reserve && p->nreserve)
		pg = p->reserve[--p->nreserve];
	if (pg)
		note_in_use(p, GMM_READ_ONCE(p->in_use) + 1);
	pthread_mutex_unlock(&p->lock);
	if (!pg) {
		if (err == -ENOMEM)
			gmm_seterr(ENOMEM, "table page: the host refused memory for the pool%s%s",
				   inject ? " (injected)" : "",
				   use_reserve ? ", reserve exhausted too" : "");
		else
			gmm_seterr(ENOSPC, "table-page limit reached: %llu pages (%llu KiB) charged to this VM%s",
				   (unsigned long long)p->limit,
				   (unsigned long long)(p->limit * GMM_PAGE_SIZE / 1024),
				   use_reserve ? ", reserve exhausted too" : "");
		return NULL;
	}
	zero(pg);
	return pg;
}

void gmm_pool_free(struct gmm_pool *p, struct gmm_ptp *pg)
{
	poison(pg);
	pthread_mutex_lock(&p->lock);
	if (p->nreserve < p->reserve_size)
		p->reserve[p->nreserve++] = pg;
	else
		p->free[p->nfree++] = pg;
	note_in_use(p, GMM_READ_ONCE(p->in_use) - 1);
	pthread_mutex_unlock(&p->lock);
}

uint64_t gmm_pool_headroom(struct gmm_pool *p)
{
	pthread_mutex_lock(&p->lock);
	uint64_t n = p->nfree + (p->limit - p->charged);
	pthread_mutex_unlock(&p->lock);
	return n;
}
