// SPDX-License-Identifier: GPL-2.0-only
/*
 * migration.c - the source's precopy and the destination's receiver
 * (migration.h), over the wire protocol of proto.h.
 *
 * Source, per pass: harvest the dirty bits of every RAM region -- KVM's
 * log (vCPU writes, per memslot) OR'd with guestmm's (the VMM's writes
 * through walks and pins; gmm_dirty_harvest returns only once every walk
 * that marked has ended) -- then send each dirty run.  The harvest comes
 * first, the copy after, so a write that races with the copy is dirty
 * again in the next pass.  The copy reads guest memory as a guestmm walker
 * (this thread registers): each run is translated inside a short walk and
 * sent from guest RAM under read pins (message_add: an unmap waits for at
 * most one message's send); a page unmapped meanwhile is sent as a hole
 * (MIG_RANGE_ZERO) rather than stale bytes -- guestmm marked it dirty when
 * it was unmapped or discarded.
 *
 * The first pass sends only pages that hold data (gmm_region_data_bits:
 * mapped and resident or swapped), read after logging started: a page
 * never touched is zero on the destination too.
 *
 * Estimated downtime = dirty bytes / the last pass's throughput.
 *
 * Destination: the VM exists from the Config message on (machine_restore,
 * restore mode, paused), every region fully mapped so that any page the
 * source sends has a place, guest RAM populated by a thread beside the
 * transfer (stopped at State); the state's table shape (unplugged blocks
 * unmapped, split and read-only ranges) is applied at State; Complete
 * resumes it and is answered only then.
 *
 * Threads: the migration thread ("_migrate") and the main thread; `g`'s
 * lock guards the progress, the thread handle and the outcome.
 */
#include "migration/migration.h"
#include "migration/proto.h"
#include "snapshot/snapshot.h"
#include "core/dirty_log.h"
#include "core/events.h"
#include "core/log.h"
#include "core/size.h"
#include "core/state_json.h"
#include "machine/virtio_set.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_REGIONS 8
#define MSG_DATA (8u << 20)        /* data bytes per Memory message */
#define MSG_RANGES 4096u
#define MSG_PIECES 512u            /* data pieces (iovecs, pins) per message */
#define CONNECT_TIMEOUT_MS 10000
#define IO_TIMEOUT_MS 30000

struct region_log {
	uint64_t gpa, size, npages;
	uint64_t *bits;
	bool gone;
};

static struct {
	pthread_mutex_t lock;
	bool busy, owns, joined;
	pthread_t thread;
	int efd;
	_Atomic bool cancel;
	enum migration_outcome outcome;
	struct migration_progress p;
	bool ever;
	/* the thread's inputs */
	struct machine *m;
	struct mig_url url;
	int lfd;
	bool local;
	unsigned downtime_ms, timeout_s;
	char *config;
	int (*parse_config)(const char *json, size_t len, struct machine_config *cfg, char *err,
			    size_t errlen);
} g = { .lock = PTHREAD_MUTEX_INITIALIZER, .efd = -1, .lfd = -1, .joined = true };

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Update the progress (vm.info reads it from the main thread). */
#define PROGRESS(...)                                                                  \
	do {                                                                           \
		pthread_mutex_lock(&g.lock);                                           \
		__VA_ARGS__;                                                           \
		pthread_mutex_unlock(&g.lock);                                         \
	} while (0)

static void set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_error(const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&g.lock);
	va_start(ap, fmt);
	vsnprintf(g.p.error, sizeof(g.p.error), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&g.lock);
}

void migration_progress(struct migration_progress *p)
{
	pthread_mutex_lock(&g.lock);
	*p = g.p;
	pthread_mutex_unlock(&g.lock);
}

char *migration_progress_json(void)
{
	struct migration_progress p;
	bool ever;
	pthread_mutex_lock(&g.lock);
	p = g.p;
	ever = g.ever;
	pthread_mutex_unlock(&g.lock);
	if (!ever)
		return NULL;
	struct json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	sj_set_str(o, "role", p.role);
	sj_set_str(o, "state", p.state);
	sj_set_str(o, "url", p.url);
	sj_set_bool(o, "local", p.local);
	sj_set_u64(o, "iteration", p.iteration);
	sj_set_u64(o, "bytes", p.bytes);
	sj_set_u64(o, "pages", p.pages);
	sj_set_u64(o, "zero_pages", p.zero_pages);
	sj_set_u64(o, "dirty_bytes", p.dirty_bytes);
	sj_set_u64(o, "throughput_bytes_per_s", p.throughput);
	sj_set_u64(o, "elapsed_ms", p.elapsed_ms);
	sj_set_u64(o, "downtime_ms", p.downtime_ms);
	sj_set_u64(o, "total_ms", p.total_ms);
	if (p.error[0])
		sj_set_str(o, "error", p.error);
	char *s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

int migration_eventfd(void)
{
	return g.efd;
}

bool migration_busy(void)
{
	pthread_mutex_lock(&g.lock);
	bool b = g.busy;
	pthread_mutex_unlock(&g.lock);
	return b;
}

bool migration_owns_machine(void)
{
	pthread_mutex_lock(&g.lock);
	bool b = g.owns;
	pthread_mutex_unlock(&g.lock);
	return b;
}

/* The thread's end: record the outcome, wake the main loop. */
static void *thread_done(enum migration_outcome o, const char *state)
{
	pthread_mutex_lock(&g.lock);
	g.outcome = o;
	snprintf(g.p.state, sizeof(g.p.state), "%s", state);
	pthread_mutex_unlock(&g.lock);
	uint64_t one = 1;
	if (write(g.efd, &one, sizeof(one)) < 0)
		log_msg(LOG_WARN, "migration: eventfd: %s", strerror(errno));
	return NULL;
}

enum migration_outcome migration_finish(void)
{
	uint64_t v;
	if (g.efd >= 0 && read(g.efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_msg(LOG_WARN, "migration: eventfd: %s", strerror(errno));
	pthread_mutex_lock(&g.lock);
	bool join = !g.joined && g.outcome != MIGRATION_NONE;
	pthread_mutex_unlock(&g.lock);
	if (!join)
		return MIGRATION_NONE;
	pthread_join(g.thread, NULL);
	pthread_mutex_lock(&g.lock);
	enum migration_outcome o = g.outcome;
	g.joined = true;
	g.busy = false;
	g.owns = false;
	g.outcome = MIGRATION_NONE;
	pthread_mutex_unlock(&g.lock);
	free(g.config);
	g.config = NULL;
	if (g.lfd >= 0)
		close(g.lfd);
	g.lfd = -1;
	return o;
}

void migration_cancel(void)
{
	pthread_mutex_lock(&g.lock);
	bool running = !g.joined;
	pthread_mutex_unlock(&g.lock);
	if (!running)
		return;
	atomic_store(&g.cancel, true);
	log_msg(LOG_INFO, "migration: cancelled (the VMM stops)");
	/* Every wait of the thread polls the flag at least every 100 ms. */
	pthread_join(g.thread, NULL);
	pthread_mutex_lock(&g.lock);
	g.joined = true;
	g.busy = false;
	g.owns = false;
	g.outcome = MIGRATION_NONE;
	pthread_mutex_unlock(&g.lock);
	uint64_t v;
	if (read(g.efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_msg(LOG_DEBUG, "migration: eventfd: %s", strerror(errno));
}

static int begin(struct machine *m, const char *role, const char *url, bool local)
{
	if (g.efd < 0) {
		g.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (g.efd < 0)
			return -errno;
	}
	pthread_mutex_lock(&g.lock);
	memset(&g.p, 0, sizeof(g.p));
	snprintf(g.p.role, sizeof(g.p.role), "%s", role);
	snprintf(g.p.state, sizeof(g.p.state), "running");
	snprintf(g.p.url, sizeof(g.p.url), "%s", url);
	g.p.local = local;
	g.ever = true;
	g.busy = true;
	g.joined = false;
	g.outcome = MIGRATION_NONE;
	pthread_mutex_unlock(&g.lock);
	atomic_store(&g.cancel, false);
	g.m = m;
	return 0;
}

static int spawn(void *(*fn)(void *))
{
	pthread_attr_t a;
	pthread_attr_init(&a);
	int e = pthread_create(&g.thread, &a, fn, NULL);
	pthread_attr_destroy(&a);
	if (e) {
		pthread_mutex_lock(&g.lock);
		g.busy = g.owns = false;
		g.joined = true;
		pthread_mutex_unlock(&g.lock);
		return -e;
	}
	return 0;
}

/* ---- source ------------------------------------------------------------ */

struct sender {
	struct machine *m;
	struct vm *vm;
	struct mig_conn c;
	struct gmm_walker *w;
	struct region_log reg[MAX_REGIONS];
	unsigned nreg;
	uint8_t *buf;                 /* MSG_DATA bytes: copies where no pin */
	struct mig_range *tab;        /* MSG_RANGES + 1 */
	/* The message being built (message_add). */
	unsigned n, niov, npins;
	uint64_t data, bufused, pages, zeros;
	struct iovec iov[2 + MSG_PIECES];  /* count, table, then the data pieces */
	struct gmm_pin pins[MSG_PIECES];
	uint64_t t0;
	unsigned outstanding;         /* Memory messages not answered yet */
	bool logging, kvm_logging;
};

/* Memory messages are answered in order; up to WINDOW are sent before the
 * sender waits for the oldest answer, so neither end idles for a round
 * trip per message.  The answers are 24 bytes: the destination's writes
 * never fill the socket while the source is blocked sending. */
#define WINDOW 4

static int drain_replies(struct sender *s, unsigned keep)
{
	while (s->outstanding > keep) {
		if (mig_wait_reply(&s->c) < 0)
			return -1;
		s->outstanding--;
	}
	return 0;
}

/* The Memory message being built: its table (s->tab, s->n ranges) and
 * its data as pieces (s->iov), each either guest memory held by a read pin
 * -- sent straight from guest RAM, no copy -- or, where a pin cannot be
 * had at once (an unmap or protect is under way on the block), a copy made
 * inside the walk into s->buf.  The pins are dropped as soon as the
 * message is in the socket: an unmap waits at most for one message's
 * send (bounded by the connection's timeout, and by the VM's pin timeout
 * after which the unmap gives up with -EBUSY, changing nothing). */
static void message_reset(struct sender *s)
{
	for (unsigned i = 0; i < s->npins; i++)
		gmm_unpin(s->vm->mem, &s->pins[i]);
	s->npins = 0;
	s->niov = 0;
	s->n = 0;
	s->data = s->bufused = 0;
	s->pages = s->zeros = 0;
}

static int send_memory(struct sender *s)
{
	uint64_t count = s->n;
	s->iov[0] = (struct iovec){ &count, sizeof(count) };
	s->iov[1] = (struct iovec){ s->tab, (size_t)s->n * sizeof(*s->tab) };
	int rc = 0;
	if (drain_replies(s, WINDOW - 1) < 0 ||
	    mig_send_hdr(&s->c, MIG_MEMORY, sizeof(count) + s->n * sizeof(*s->tab) + s->data,
			 NULL, 0) < 0 ||
	    mig_sendv_all(&s->c, s->iov, 2 + (int)s->niov) < 0)
		rc = -1;
	else
		s->outstanding++;
	if (rc == 0)
		PROGRESS(g.p.bytes = s->c.sent + s->c.received; g.p.pages += s->pages;
			 g.p.zero_pages += s->zeros; g.p.elapsed_ms = now_ms() - s->t0);
	message_reset(s);
	return rc;
}

/* Add [gpa, gpa + len) to the message: a hole, or the bytes at h (valid in
 * the caller's walk). */
static void message_add(struct sender *s, uint64_t gpa, uint64_t len, void *h)
{
	uint64_t flags = h ? 0 : MIG_RANGE_ZERO;
	if (s->n && s->tab[s->n - 1].gpa + s->tab[s->n - 1].len == gpa &&
	    (s->tab[s->n - 1].flags & MIG_RANGE_ZERO) == flags)
		s->tab[s->n - 1].len += len;
	else
		s->tab[s->n++] = (struct mig_range){ gpa, len, flags };
	if (!h) {
		s->zeros += len / GMM_PAGE_SIZE;
		return;
	}
	struct gmm_pin *pin = &s->pins[s->npins];
	if (gmm_pin(s->w, gpa, len, GMM_ACCESS_READ, pin) == 0) {
		s->npins++;
		s->iov[2 + s->niov++] = (struct iovec){ pin->hva, len };
	} else {
		memcpy(s->buf + s->bufused, h, len);
		s->iov[2 + s->niov++] = (struct iovec){ s->buf + s->bufused, len };
		s->bufused += len;
	}
	s->data += len;
	s->pages += len / GMM_PAGE_SIZE;
}

static bool message_full(const struct sender *s)
{
	return s->n >= MSG_RANGES || s->niov >= MSG_PIECES || s->data >= MSG_DATA;
}

/* Send every page set in the regions' bitmaps (clearing them).  *sent =
 * bytes put on the wire. */
static int send_dirty(struct sender *s, uint64_t *sent)
{
	uint64_t before = s->c.sent;
	for (unsigned ri = 0; ri < s->nreg; ri++) {
		struct region_log *r = &s->reg[ri];
		for (uint64_t p = 0; p < r->npages;) {
			uint64_t word = r->bits[p / 64];
			if (!word) {
				p = (p / 64 + 1) * 64;
				continue;
			}
			if (!(word >> (p % 64) & 1)) {
				p++;
				continue;
			}
			/* A run of dirty pages starting at p, within what the
			 * message still holds. */
			uint64_t q = p;
			while (q < r->npages && (r->bits[q / 64] >> (q % 64) & 1) &&
			       (q - p + 1) * GMM_PAGE_SIZE <= MSG_DATA - s->data) {
				r->bits[q / 64] &= ~(1ULL << (q % 64));
				q++;
			}
			if (q == p) {
				if (send_memory(s) < 0)
					return -1;
				continue;
			}
			/* [p, q) inside one walk; unmapped parts are holes. */
			uint64_t gpa = r->gpa + p * GMM_PAGE_SIZE, end = r->gpa + q * GMM_PAGE_SIZE;
			gmm_walk_begin(s->w);
			while (gpa < end && !message_full(s)) {
				size_t span = 0;
				void *h = r->gone ? NULL :
					  gmm_translate_span(s->w, gpa, end - gpa, GMM_ACCESS_READ, &span);
				uint64_t len = h ? span : GMM_PAGE_SIZE;
				message_add(s, gpa, len, h);
				gpa += len;
			}
			gmm_walk_end(s->w);
			if (gpa < end) {
				/* The message filled mid-run: the rest stays dirty. */
				for (uint64_t k = (gpa - r->gpa) / GMM_PAGE_SIZE; k < q; k++)
					r->bits[k / 64] |= 1ULL << (k % 64);
				q = (gpa - r->gpa) / GMM_PAGE_SIZE;
			}
			p = q;
			if (message_full(s) && send_memory(s) < 0)
				return -1;
		}
	}
	if ((s->n && send_memory(s) < 0) || drain_replies(s, 0) < 0)
		return -1;
	*sent = s->c.sent - before;
	return 0;
}

/* vm_dirty_log_harvest's callback: a memslot's bits into the regions'. */
static void kvm_bits(void *arg, uint64_t gpa, const uint64_t *bits, uint64_t npages)
{
	struct sender *s = arg;
	for (unsigned ri = 0; ri < s->nreg; ri++) {
		struct region_log *r = &s->reg[ri];
		if (gpa < r->gpa || gpa >= r->gpa + r->size)
			continue;
		uint64_t first = (gpa - r->gpa) / GMM_PAGE_SIZE;
		for (uint64_t w = 0; w < (npages + 63) / 64; w++) {
			uint64_t v = bits[w];
			while (v) {
				uint64_t i = w * 64 + (uint64_t)__builtin_ctzll(v);
				v &= v - 1;
				if (i < npages && first + i < r->npages)
					r->bits[(first + i) / 64] |= 1ULL << ((first + i) % 64);
			}
		}
		return;
	}
}

/* Harvest both logs into the bitmaps; the dirty bytes. */
static int harvest(struct sender *s, uint64_t *dirty)
{
	if (vm_dirty_log_harvest(s->vm, kvm_bits, s) < 0) {
		snprintf(s->c.err, sizeof(s->c.err), "KVM_GET_DIRTY_LOG failed");
		return -1;
	}
	uint64_t n = 0;
	for (unsigned ri = 0; ri < s->nreg; ri++) {
		struct region_log *r = &s->reg[ri];
		if (!r->gone) {
			int rc = gmm_dirty_harvest(s->vm->mem, r->gpa, r->bits, r->npages);
			if (rc == -ENOENT) {
				/* Removed meanwhile: its pages go as holes, once. */
				r->gone = true;
				for (uint64_t i = 0; i < r->npages; i++)
					r->bits[i / 64] |= 1ULL << (i % 64);
			} else if (rc < 0) {
				snprintf(s->c.err, sizeof(s->c.err), "dirty harvest: %s", gmm_last_error());
				return -1;
			}
		}
		for (uint64_t w = 0; w < (r->npages + 63) / 64; w++)
			n += (uint64_t)__builtin_popcountll(r->bits[w]);
	}
	*dirty = n * GMM_PAGE_SIZE;
	return 0;
}

static int regions_init(struct sender *s)
{
	int nreg = gmm_region_count(s->vm->mem);
	if (nreg > MAX_REGIONS) {
		snprintf(s->c.err, sizeof(s->c.err), "%d memory regions (at most %d)", nreg, MAX_REGIONS);
		return -1;
	}
	for (int i = 0; i < nreg; i++) {
		struct gmm_region_info info;
		gmm_region_info(gmm_region_at(s->vm->mem, i), &info);
		struct region_log *r = &s->reg[s->nreg++];
		r->gpa = info.gpa;
		r->size = info.size;
		r->npages = info.size / GMM_PAGE_SIZE;
		r->bits = calloc((r->npages + 63) / 64, sizeof(uint64_t));
		if (!r->bits) {
			snprintf(s->c.err, sizeof(s->c.err), "out of memory");
			return -1;
		}
	}
	return 0;
}

/* Precopy until the estimate fits downtime_ms; -1 on failure or timeout. */
static int precopy(struct sender *s)
{
	if (vm_dirty_log_start(s->vm) < 0) {
		snprintf(s->c.err, sizeof(s->c.err), "KVM dirty logging could not start");
		return -1;
	}
	s->kvm_logging = true;
	if (gmm_dirty_start(s->vm->mem) < 0) {
		snprintf(s->c.err, sizeof(s->c.err), "guestmm dirty logging: %s", gmm_last_error());
		return -1;
	}
	s->logging = true;
	log_msg(LOG_DEBUG, "migration: dirty logging on (%" PRIu64 " ms)", now_ms() - s->t0);
	/* Pass 1: what holds data, read after both logs started. */
	for (unsigned ri = 0; ri < s->nreg; ri++) {
		struct gmm_region *gr = gmm_region_find(s->vm->mem, s->reg[ri].gpa);
		if (gr && gmm_region_data_bits(gr, s->reg[ri].bits) < 0) {
			snprintf(s->c.err, sizeof(s->c.err), "%s", gmm_last_error());
			return -1;
		}
	}
	log_msg(LOG_DEBUG, "migration: pages holding data found (%" PRIu64 " ms)", now_ms() - s->t0);
	uint64_t deadline = s->t0 + (uint64_t)g.timeout_s * 1000;
	for (unsigned it = 1;; it++) {
		uint64_t t = now_ms(), sent, dirty;
		if (send_dirty(s, &sent) < 0)
			return -1;
		uint64_t ms = now_ms() - t;
		uint64_t bw = sent * 1000 / (ms ? ms : 1);
		if (harvest(s, &dirty) < 0)
			return -1;
		uint64_t est = bw ? dirty * 1000 / bw : 0;
		PROGRESS(g.p.iteration = it; g.p.dirty_bytes = dirty; g.p.throughput = bw);
		log_msg(LOG_INFO, "migration: pass %u: %.1f MiB in %" PRIu64 " ms (%.0f MB/s); %.1f MiB "
			"dirty, estimated downtime %" PRIu64 " ms", it, (double)sent / 1048576.0, ms,
			(double)bw / 1e6, (double)dirty / 1048576.0, est);
		/* Test only: keep iterating for at least this long, so the
		 * guest does I/O during the migration (test_migration.sh). */
		const char *min = getenv("VMM_TEST_MIGRATION_MIN_MS");
		bool hold = min && now_ms() - s->t0 < strtoull(min, NULL, 10);
		if (est <= g.downtime_ms && !hold)
			return 0;
		if (now_ms() >= deadline) {
			snprintf(s->c.err, sizeof(s->c.err), "did not converge within %u s (%.1f MiB dirty "
				 "per pass at %.0f MB/s: estimated downtime %" PRIu64 " ms > %u ms)",
				 g.timeout_s, (double)dirty / 1048576.0, (double)bw / 1e6, est,
				 g.downtime_ms);
			return -1;
		}
		if (atomic_load(&g.cancel)) {
			snprintf(s->c.err, sizeof(s->c.err), "cancelled");
			return -1;
		}
		if (hold) {
			struct timespec ts = { 0, 50 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
	}
}

/* The state message: the snapshot's parts and the table's shape. */
static char *state_text(struct sender *s)
{
	struct json_object *root = json_object_new_object(), *mem;
	char e[512] = "";
	char *text = NULL;
	if (!root || sj_set_str(root, "format", SNAPSHOT_STATE_FORMAT) < 0 ||
	    sj_set_u64(root, "version", SNAPSHOT_STATE_VERSION) < 0 ||
	    snapshot_state_parts(s->vm, root, e, sizeof(e)) < 0 ||
	    !(mem = snapshot_memory_shape_save(s->vm, e, sizeof(e))) ||
	    sj_set_obj(root, "memory", mem) < 0) {
		snprintf(s->c.err, sizeof(s->c.err), "the VM's state: %s", e[0] ? e : "out of memory");
	} else {
		text = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
	}
	json_object_put(root);
	return text;
}

static int send_memory_fds(struct sender *s)
{
	struct mig_memfd_head head = { .count = s->nreg };
	struct mig_memfd t[MAX_REGIONS];
	int fds[MAX_REGIONS];
	for (unsigned i = 0; i < s->nreg; i++) {
		struct gmm_region_info info;
		gmm_region_info(gmm_region_find(s->vm->mem, s->reg[i].gpa), &info);
		t[i] = (struct mig_memfd){ info.gpa, info.size, 0, (uint32_t)info.backing, 0 };
		fds[i] = info.fd;
	}
	struct iovec iov[2] = { { &head, sizeof(head) }, { t, s->nreg * sizeof(t[0]) } };
	if (mig_send_hdr(&s->c, MIG_MEMORY_FD, sizeof(head) + s->nreg * sizeof(t[0]), fds, s->nreg) < 0 ||
	    mig_sendv_all(&s->c, iov, 2) < 0 || mig_wait_reply(&s->c) < 0)
		return -1;
	return 0;
}

/* One request and its answer. */
static int request(struct sender *s, uint16_t cmd, const void *payload, size_t len)
{
	return mig_send_msg(&s->c, cmd, payload, len) < 0 || mig_wait_reply(&s->c) < 0 ? -1 : 0;
}

static void *send_thread(void *arg)
{
	(void)arg;
	struct sender s = { .m = g.m, .vm = g.m->vm, .c = { .fd = -1, .timeout_ms = IO_TIMEOUT_MS,
							     .cancel = &g.cancel } };
	pthread_setname_np(pthread_self(), "_migrate");
	s.t0 = now_ms();
	bool paused = false, done = false;
	uint64_t t_pause = 0;
	char *state = NULL;
	s.buf = malloc(MSG_DATA);
	s.tab = malloc((MSG_RANGES + 1) * sizeof(*s.tab));
	s.w = gmm_walker_register(s.vm->mem);
	/* Test only: the VMM's own writes are not logged, so a test shows
	 * that it sees what guestmm's marks catch (tests/vmm/test_migration.sh). */
	if (getenv("VMM_TEST_NO_DEVICE_DIRTY"))
		gmm_dirty_test_skip_walkers(s.vm->mem, true);
	if (!s.buf || !s.tab || !s.w) {
		snprintf(s.c.err, sizeof(s.c.err), "out of memory");
		goto out;
	}
	if (regions_init(&s) < 0)
		goto out;
	if (mig_connect(&s.c, &g.url, CONNECT_TIMEOUT_MS) < 0)
		goto out;
	char start[160];
	snprintf(start, sizeof(start), "{\"vmm\":\"%s\",\"local\":%s}", VMM_VERSION,
		 g.local ? "true" : "false");
	if (request(&s, MIG_START, start, strlen(start)) < 0)
		goto out;
	if (g.local && send_memory_fds(&s) < 0)
		goto out;
	if (request(&s, MIG_CONFIG, g.config, strlen(g.config)) < 0)
		goto out;
	log_msg(LOG_DEBUG, "migration: the destination's VM exists (%" PRIu64 " ms)", now_ms() - s.t0);
	if (!g.local && precopy(&s) < 0)
		goto out;

	/* Stop and copy; each step timed for the log (t[]: ms since the pause). */
	t_pause = now_ms();
	uint64_t t[7] = { 0 }, last = 0;
	if (machine_pause(s.m) < 0) {
		snprintf(s.c.err, sizeof(s.c.err), "the VM could not be paused (it stopped?)");
		goto out;
	}
	paused = true;
	t[0] = now_ms() - t_pause;
	if (virtio_set_quiesce(s.vm) < 0) {
		snprintf(s.c.err, sizeof(s.c.err), "the virtio devices could not finish their requests");
		goto out;
	}
	t[1] = now_ms() - t_pause;
	if (!g.local) {
		uint64_t dirty;
		if (harvest(&s, &dirty) < 0)
			goto out;
		t[6] = now_ms() - t_pause;
		if (send_dirty(&s, &last) < 0)
			goto out;
	}
	t[2] = now_ms() - t_pause;
	if (!(state = state_text(&s)))
		goto out;
	t[3] = now_ms() - t_pause;
	if (request(&s, MIG_STATE, state, strlen(state)) < 0)
		goto out;
	t[4] = now_ms() - t_pause;
	if (request(&s, MIG_COMPLETE, NULL, 0) < 0)
		goto out;
	t[5] = now_ms() - t_pause;
	log_msg(LOG_INFO, "migration: paused for %" PRIu64 " ms: vCPUs parked %" PRIu64 ", devices "
		"quiesced %" PRIu64 ", logs harvested %" PRIu64 ", last %.1f MiB sent %" PRIu64 ", state "
		"saved %" PRIu64 " (%zu KiB), applied by the destination %" PRIu64 ", running there %"
		PRIu64, t[5], t[0], t[1], t[6], (double)last / 1048576.0, t[2], t[3],
		strlen(state) / 1024, t[4], t[5]);
	done = true;
out:
	if (!done) {
		bool cancelled = atomic_load(&g.cancel);
		set_error("%s", cancelled ? "cancelled" : s.c.err);
		log_msg(LOG_ERROR, "migration to %s failed: %s; the VM %s here", g.url.text,
			cancelled ? "cancelled" : s.c.err, paused ? "resumes" : "keeps running");
		if (s.c.fd >= 0) {
			/* Best effort, bounded: tell the destination. */
			s.c.timeout_ms = 1000;
			atomic_bool never = false;
			s.c.cancel = &never;
			request(&s, MIG_ABANDON, NULL, 0);
		}
	}
	uint64_t downtime = paused ? now_ms() - t_pause : 0;
	if (s.logging)
		gmm_dirty_stop(s.vm->mem);
	if (s.kvm_logging)
		vm_dirty_log_stop(s.vm);
	if (paused && !done) {
		virtio_set_resume_io(s.vm);
		machine_resume(s.m);
	} else if (paused) {
		/* Handed over: the devices stay quiesced, the VMM stops. */
	}
	mig_conn_close(&s.c);
	if (s.w)
		gmm_walker_unregister(s.w);
	for (unsigned i = 0; i < s.nreg; i++)
		free(s.reg[i].bits);
	free(s.buf);
	free(s.tab);
	free(state);
	pthread_mutex_lock(&g.lock);
	g.p.elapsed_ms = now_ms() - s.t0;
	g.p.total_ms = g.p.elapsed_ms;
	if (done)
		g.p.downtime_ms = downtime;
	pthread_mutex_unlock(&g.lock);
	if (done) {
		log_msg(LOG_INFO, "migration to %s complete: %u pass%s, %s on the wire, %" PRIu64
			" ms in all, downtime %" PRIu64 " ms", g.url.text, g.p.iteration,
			g.p.iteration == 1 ? "" : "es", format_size(s.c.sent, (char[32]){ 0 }, 32),
			now_ms() - s.t0, downtime);
		events_emit("vm", "migrated");
	}
	return thread_done(done ? MIGRATION_SENT : MIGRATION_FAILED,
			   done ? "completed" : atomic_load(&g.cancel) ? "cancelled" : "failed");
}

int migration_send_start(struct machine *m, const struct migration_send_opts *o, char *err,
			 size_t errlen)
{
	if (migration_busy()) {
		snprintf(err, errlen, "a migration is under way already");
		return -EBUSY;
	}
	if (machine_state(m) != MACHINE_RUNNING) {
		snprintf(err, errlen, "the VM is %s: only a running VM is migrated",
			 machine_state(m) == MACHINE_NONE ? "not created" :
			 machine_state_name(machine_state(m)));
		return -EBUSY;
	}
	struct mig_url u;
	if (mig_url_parse(o->url, &u, err, errlen) < 0)
		return -EINVAL;
	if (o->local) {
		if (u.family != AF_UNIX) {
			snprintf(err, errlen, "local migration passes the memory's fds: it needs a unix: "
				 "URL, not %s", o->url);
			return -EINVAL;
		}
		int n = gmm_region_count(m->vm->mem);
		for (int i = 0; i < n; i++) {
			struct gmm_region_info info;
			gmm_region_info(gmm_region_at(m->vm->mem, i), &info);
			if (info.fd < 0) {
				snprintf(err, errlen, "local migration shares guest memory: the %s backing "
					 "is private memory (use memfd, hugetlb-2M, hugetlb-1G or file)",
					 gmm_backing_name(info.backing));
				return -EINVAL;
			}
		}
		if (m->cfg.hotplug_size) {
			snprintf(err, errlen, "local migration of a VM with virtio-mem is not supported "
				 "(its hot-plug region is not passed on): migrate it by copy");
			return -EINVAL;
		}
	} else if (!vm_dirty_log_supported(m->vm)) {
		snprintf(err, errlen, "this host's KVM cannot log dirty pages: only a local "
			 "migration is possible");
		return -EINVAL;
	}
	char *config = strdup(o->config_json);
	if (!config) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int rc = begin(m, "send", u.text, o->local);
	if (rc < 0) {
		free(config);
		snprintf(err, errlen, "eventfd: %s", strerror(-rc));
		return rc;
	}
	g.url = u;
	g.local = o->local;
	g.downtime_ms = o->downtime_ms ? o->downtime_ms : 300;
	g.timeout_s = o->timeout_s ? o->timeout_s : 3600;
	free(g.config);
	g.config = config;
	rc = spawn(send_thread);
	if (rc < 0) {
		snprintf(err, errlen, "cannot start the migration thread: %s", strerror(-rc));
		return rc;
	}
	log_msg(LOG_INFO, "migration: sending to %s (%s, downtime %u ms, timeout %u s)", u.text,
		o->local ? "local: memory fds" : "copy", g.downtime_ms, g.timeout_s);
	events_emit("vm", "migrating");
	return 0;
}

/* ---- destination ------------------------------------------------------- */

struct receiver {
	struct machine *m;
	struct mig_conn c;
	bool local;
	bool config_answered;
	int fds[MIG_MAX_FDS];
	unsigned nfds;
	struct mig_memfd memfds[MIG_MAX_FDS];
	unsigned nmemfds;
	uint64_t t0, pages, zeros;
	bool abandoned;
	pthread_t prefault;
	bool prefaulting;
	_Atomic bool prefault_stop;
	struct vm *vm;                /* while recv_apply runs */
};

static int recv_memory_until_state(struct receiver *r, struct vm *vm, char *err, size_t errlen);

static void recv_progress(struct receiver *r)
{
	PROGRESS(g.p.bytes = r->c.sent + r->c.received; g.p.pages = r->pages;
		 g.p.zero_pages = r->zeros; g.p.elapsed_ms = now_ms() - r->t0);
}

/* Map every region whole: the source may send any page of it. */
static int map_all(struct vm *vm, char *err, size_t errlen)
{
	int n = gmm_region_count(vm->mem);
	for (int i = 0; i < n; i++) {
		struct gmm_region_info info;
		gmm_region_info(gmm_region_at(vm->mem, i), &info);
		if (gmm_map(vm->mem, info.gpa, info.size) < 0) {
			snprintf(err, errlen, "mapping region %s: %s", info.name ? info.name : "?",
				 gmm_last_error());
			return -1;
		}
	}
	return 0;
}

/* One Memory message into RAM. */
static int recv_memory(struct receiver *r, struct vm *vm, const struct mig_hdr *h, char *err,
		       size_t errlen)
{
	struct mig_range *t = NULL;
	uint64_t count, data;
	if (mig_recv_memory_table(&r->c, h, &t, &count, &data) < 0) {
		snprintf(err, errlen, "%s", r->c.err);
		return -1;
	}
	int ret = 0;
	for (uint64_t i = 0; i < count; i++) {
		struct gmm_region *gr = gmm_region_find(vm->mem, t[i].gpa);
		struct gmm_region_info info;
		if (gr)
			gmm_region_info(gr, &info);
		if (!gr || t[i].gpa + t[i].len > info.gpa + info.size) {
			/* The stream must stay in step to answer: read the data away. */
			snprintf(err, errlen, "memory range 0x%" PRIx64 "+0x%" PRIx64 " is not inside "
				 "one region of this VM", t[i].gpa, t[i].len);
			ret = -2;
			break;
		}
		uint8_t *hva = (uint8_t *)info.hva + (t[i].gpa - info.gpa);
		if (t[i].flags & MIG_RANGE_ZERO) {
			memset(hva, 0, t[i].len);
			r->zeros += t[i].len / GMM_PAGE_SIZE;
		} else if (mig_recv_all(&r->c, hva, t[i].len) < 0) {
			snprintf(err, errlen, "%s", r->c.err);
			ret = -1;
			break;
		} else {
			r->pages += t[i].len / GMM_PAGE_SIZE;
		}
	}
	free(t);
	return ret;
}

/* Read the rest of a message the receiver refuses (bounded by the
 * header's length, itself bounded by the protocol's limits). */
static int drain(struct receiver *r, uint64_t len)
{
	char buf[4096];
	while (len) {
		size_t k = len < sizeof(buf) ? len : sizeof(buf);
		if (mig_recv_all(&r->c, buf, k) < 0)
			return -1;
		len -= k;
	}
	return 0;
}

static char *recv_text(struct receiver *r, const struct mig_hdr *h)
{
	char *t = malloc(h->len + 1);
	if (!t)
		return NULL;
	if (mig_recv_all(&r->c, t, h->len) < 0) {
		free(t);
		return NULL;
	}
	t[h->len] = 0;
	return t;
}

static struct json_object *parse_json(const char *text, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o = NULL;
	if (tok) {
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
		o = json_tokener_parse_ex(tok, text, (int)len);
		if (json_tokener_get_error(tok) != json_tokener_success) {
			json_object_put(o);
			o = NULL;
		}
		json_tokener_free(tok);
	}
	if (o && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
	}
	return o;
}

/* The destination's RAM is populated (huge pages) by a thread of its own
 * while the memory arrives: first touches are what a fresh VM pays for
 * (on these machines about 1 ms per MiB), and the transfer need not wait
 * for them.  MADV_POPULATE_WRITE leaves a page the receiver wrote first as
 * it is.  Joined before the state is applied and before the VM goes. */
static void *prefault_thread(void *arg)
{
	struct receiver *r = arg;
	struct vm *vm = r->vm;
	pthread_setname_np(pthread_self(), "_migrate_pf");
	/* Guest RAM only: virtio-mem's region gets what is plugged as it
	 * arrives, and its unplugged blocks are unmapped at State. */
	struct gmm_region *ram[2] = { vm->ram_low, vm->ram_high };
	for (int i = 0; i < 2; i++) {
		int rc = ram[i] ? gmm_region_prefault_until(ram[i], 1, &r->prefault_stop) : 0;
		if (rc == -ECANCELED)
			break;
		if (rc < 0)
			log_msg(LOG_WARN, "migration: prefault: %s (the memory is faulted in as "
				"it arrives)", gmm_last_error());
	}
	return NULL;
}

/* Stop the prefault (within one 2 MiB chunk) and join it: the state is
 * applied, or the VM goes.  What is not populated yet is faulted in by
 * the guest, in huge pages, as it touches it. */
static void prefault_join(struct receiver *r)
{
	if (r->prefaulting) {
		atomic_store(&r->prefault_stop, true);
		pthread_join(r->prefault, NULL);
	}
	r->prefaulting = false;
}

/* machine_restore's hook: the VM exists, nothing runs.  Answer Config,
 * then take Memory messages until State. */
static int recv_apply(void *arg, struct vm *vm, char *err, size_t errlen)
{
	struct receiver *r = arg;
	int ret = recv_memory_until_state(r, vm, err, errlen);
	prefault_join(r);
	return ret;
}

/* The receiver's answers: the transport's error into err; a refusal
 * (err, also sent to the source); Ok. */
static int conn_fail(struct receiver *r, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s", r->c.err[0] ? r->c.err : "out of memory");
	return -1;
}

static int refuse(struct receiver *r, const char *err)
{
	mig_reply_error(&r->c, "%s", err);
	return -1;
}

static int answer_ok(struct receiver *r, char *err, size_t errlen)
{
	return mig_reply_ok(&r->c) < 0 ? conn_fail(r, err, errlen) : 0;
}

#define CMD(c) (1u << (c))

/* Read the next request: it must be one of `want` (CMD() bits); fds that
 * come with it go to r->fds (at most maxfds).  Anything else is read away
 * (its length is bounded by the protocol's limits) and refused, Abandon
 * answered Ok; -1 with err then, or on a transport error. */
static int expect(struct receiver *r, unsigned want, struct mig_hdr *h, unsigned maxfds,
		  char *err, size_t errlen)
{
	if (mig_recv_hdr(&r->c, h, maxfds ? r->fds : NULL, maxfds, maxfds ? &r->nfds : NULL) < 0)
		return conn_fail(r, err, errlen);
	if (h->cmd < 32 && (want & CMD(h->cmd)))
		return 0;
	bool abandon = h->cmd == MIG_ABANDON;
	if (drain(r, h->len) == 0) {
		if (abandon)
			mig_reply_ok(&r->c);
		else
			mig_reply_error(&r->c, "%s was not expected here", mig_cmd_name(h->cmd));
	}
	if (abandon)
		snprintf(err, errlen, "the source abandoned the migration");
	else
		snprintf(err, errlen, "the source sent %s out of order", mig_cmd_name(h->cmd));
	return -1;
}

/* A JSON object payload; NULL with err. */
static struct json_object *recv_object(struct receiver *r, const struct mig_hdr *h,
				       const char *what, char *err, size_t errlen)
{
	char *text = recv_text(r, h);
	if (!text) {
		conn_fail(r, err, errlen);
		return NULL;
	}
	struct json_object *o = parse_json(text, h->len);
	free(text);
	if (!o)
		snprintf(err, errlen, "%s: not a JSON object", what);
	return o;
}

/* State: checked, then the table's shape and the devices' state applied. */
static int recv_state(struct receiver *r, struct vm *vm, const struct mig_hdr *h, char *err,
		      size_t errlen)
{
	struct json_object *st = recv_object(r, h, "the state", err, errlen);
	if (!st)
		return r->c.err[0] ? -1 : refuse(r, err);
	int ret = -1;
	const char *fmt;
	uint64_t version;
	if (sj_get_str(st, "format", &fmt, "state", err, errlen) < 0 ||
	    sj_get_u64(st, "version", &version, "state", err, errlen) < 0) {
		/* err set */
	} else if (strcmp(fmt, SNAPSHOT_STATE_FORMAT) || version != SNAPSHOT_STATE_VERSION) {
		snprintf(err, errlen, "state format %s version %" PRIu64 ", this vmm takes %s "
			 "version %d", fmt, version, SNAPSHOT_STATE_FORMAT, SNAPSHOT_STATE_VERSION);
	} else {
		uint64_t t1 = now_ms(), t2;
		if (snapshot_memory_shape_apply(vm, st, err, errlen) == 0) {
			t2 = now_ms();
			if (snapshot_state_apply_parts(vm, st, err, errlen) == 0)
				ret = 0;
			log_msg(LOG_DEBUG, "migration: state applied in %" PRIu64 " ms: table shape %"
				PRIu64 ", devices and vCPUs %" PRIu64, now_ms() - t1, t2 - t1,
				now_ms() - t2);
		}
	}
	json_object_put(st);
	return ret < 0 ? refuse(r, err) : answer_ok(r, err, errlen);
}

static int recv_memory_until_state(struct receiver *r, struct vm *vm, char *err, size_t errlen)
{
	if (!r->local && map_all(vm, err, errlen) < 0)
		return -1;
	r->vm = vm;
	if (!r->local)
		r->prefaulting = pthread_create(&r->prefault, NULL, prefault_thread, r) == 0;
	if (answer_ok(r, err, errlen) < 0)
		return -1;
	r->config_answered = true;
	unsigned want = CMD(MIG_STATE) | (r->local ? 0 : CMD(MIG_MEMORY));
	for (unsigned msgs = 1;; msgs++) {
		struct mig_hdr h;
		if (expect(r, want, &h, 0, err, errlen) < 0)
			return -1;
		if (h.cmd == MIG_STATE) {
			/* The source is paused: the prefault stops first (its
			 * MADV_POPULATE_WRITE holds the mm's lock, which every
			 * mmap below -- allocations, the vCPUs' stacks -- waits
			 * for). */
			uint64_t tj = now_ms();
			prefault_join(r);
			log_msg(LOG_DEBUG, "migration: State: the prefault stopped in %" PRIu64 " ms",
				now_ms() - tj);
			return recv_state(r, vm, &h, err, errlen);
		}
			int rc = recv_memory(r, vm, &h, err, errlen);
		if (rc == -2)
			return refuse(r, err);
		if (rc < 0 || answer_ok(r, err, errlen) < 0)
			return -1;
		PROGRESS(g.p.iteration = msgs);
		recv_progress(r);
	}
}

/* Local mode: the RAM's fds and where they go. */
static int recv_memory_fds(struct receiver *r, char *err, size_t errlen)
{
	struct mig_hdr h;
	if (expect(r, CMD(MIG_MEMORY_FD), &h, MIG_MAX_FDS, err, errlen) < 0)
		return -1;
	if (mig_recv_memfd_table(&r->c, &h, r->nfds, r->memfds, &r->nmemfds) < 0) {
		conn_fail(r, err, errlen);
		return refuse(r, err);
	}
	if (r->nmemfds > 4) {
		snprintf(err, errlen, "MemoryFd: %u regions, this vmm shares at most 4", r->nmemfds);
		return refuse(r, err);
	}
	return answer_ok(r, err, errlen);
}

static void *recv_thread(void *arg)
{
	(void)arg;
	struct receiver r = { .m = g.m, .c = { .fd = -1, .timeout_ms = IO_TIMEOUT_MS,
					       .cancel = &g.cancel } };
	pthread_setname_np(pthread_self(), "_migrate");
	char e[600] = "";
	bool done = false, created = false;
	struct machine_config cfg;
	machine_config_init(&cfg);
	r.t0 = now_ms();
	r.c.fd = mig_accept(g.lfd, (int)(g.timeout_s * 1000), &g.cancel, e, sizeof(e));
	close(g.lfd);
	g.lfd = -1;
	if (g.url.family == AF_UNIX) {
		struct sockaddr_un *su = (struct sockaddr_un *)&g.url.addr;
		unlink(su->sun_path);
	}
	if (r.c.fd < 0)
		goto out;
	r.t0 = now_ms();
	log_msg(LOG_INFO, "migration: the source connected on %s", g.url.text);
	struct mig_hdr h;
	struct json_object *o;
	/* Start. */
	if (expect(&r, CMD(MIG_START), &h, 0, e, sizeof(e)) < 0)
		goto out;
	if (!(o = recv_object(&r, &h, "Start", e, sizeof(e))) ||
	    sj_get_bool(o, "local", &r.local, "Start", e, sizeof(e)) < 0) {
		json_object_put(o);
		if (!r.c.err[0])
			refuse(&r, e);
		goto out;
	}
	json_object_put(o);
	if (answer_ok(&r, e, sizeof(e)) < 0 || (r.local && recv_memory_fds(&r, e, sizeof(e)) < 0))
		goto out;
	/* Config: the VM is made, then recv_apply takes the memory and the
	 * state (it answers Config once the VM exists). */
	if (expect(&r, CMD(MIG_CONFIG), &h, 0, e, sizeof(e)) < 0)
		goto out;
	char *text = recv_text(&r, &h);
	if (!text) {
		conn_fail(&r, e, sizeof(e));
		goto out;
	}
	int prc = g.parse_config(text, h.len, &cfg, e, sizeof(e));
	free(text);
	if (prc < 0) {
		char tmp[sizeof(e)];
		snprintf(tmp, sizeof(tmp), "Config: %s", e);
		snprintf(e, sizeof(e), "%s", tmp);
		refuse(&r, e);
		goto out;
	}
	/* RAM is populated by recv_apply's prefault thread, beside the
	 * transfer; a local migration maps the source's memory. */
	cfg.vm.prefault = false;
	for (unsigned i = 0; i < r.nmemfds; i++) {
		cfg.vm.shared_ram[i].gpa = r.memfds[i].gpa;
		cfg.vm.shared_ram[i].fd = r.fds[i];
		if (r.memfds[i].backing < GMM_BACKING__N)
			cfg.vm.backing = (enum gmm_backing)r.memfds[i].backing;
	}
	cfg.vm.nshared_ram = r.nmemfds;
	struct machine_restore_hooks hooks = { .apply = recv_apply, .arg = &r, .resume = false };
	int st = machine_restore(r.m, &cfg, &hooks, e, sizeof(e));
	if (st) {
		if (!r.config_answered)
			refuse(&r, e);
		goto out;
	}
	created = true;
	if (expect(&r, CMD(MIG_COMPLETE), &h, 0, e, sizeof(e)) < 0)
		goto out;
	if (machine_resume(r.m) < 0) {
		snprintf(e, sizeof(e), "the VM could not be resumed");
		mig_reply_error(&r.c, "%s", e);
		goto out;
	}
	if (mig_reply_ok(&r.c) < 0) {
		/* The source will resume its VM: ours must not run as well. */
		snprintf(e, sizeof(e), "answering Complete: %s", r.c.err);
		goto out;
	}
	done = true;
out:
	if (!done) {
		bool cancelled = atomic_load(&g.cancel);
		set_error("%s", cancelled ? "cancelled" : e);
		log_msg(LOG_ERROR, "migration from %s failed: %s", g.url.text, cancelled ? "cancelled" : e);
		if (created || machine_state(r.m) != MACHINE_NONE)
			machine_delete(r.m);
	} else {
		struct gmm_coverage cov;
		vm_ram_coverage(r.m->vm, &cov);
		char b[32];
		/* Resident: what arrived and what the prefault reached before
		 * the state came; the rest is faulted in as the guest touches it. */
		log_msg(LOG_INFO, "migration from %s complete: %" PRIu64 " pages received, %" PRIu64
			" as holes, %" PRIu64 " ms after the connection; RAM %s resident, %.1f%% of "
			"it in huge pages (%s)", g.url.text, r.pages, r.zeros, now_ms() - r.t0,
			format_size(cov.resident, b, sizeof(b)),
			cov.resident ? 100.0 * (double)cov.huge / (double)cov.resident : 0.0,
			cov.method ? cov.method : "-");
		events_emit("vm", "migrated");
	}
	for (unsigned i = 0; i < r.nfds; i++)
		close(r.fds[i]);
	mig_conn_close(&r.c);
	machine_config_free(&cfg);
	recv_progress(&r);
	return thread_done(done ? MIGRATION_RECEIVED : MIGRATION_FAILED,
			   done ? "completed" : atomic_load(&g.cancel) ? "cancelled" : "failed");
}

int migration_receive_start(struct machine *m, const struct migration_receive_opts *o,
			    char *err, size_t errlen)
{
	if (migration_busy()) {
		snprintf(err, errlen, "a migration is under way already");
		return -EBUSY;
	}
	if (machine_state(m) != MACHINE_NONE) {
		snprintf(err, errlen, "a VM exists already (state %s): vm.delete it first",
			 machine_state_name(machine_state(m)));
		return -EBUSY;
	}
	struct mig_url u;
	if (mig_url_parse(o->url, &u, err, errlen) < 0)
		return -EINVAL;
	int lfd = mig_listen(&u, err, errlen);
	if (lfd < 0)
		return -EINVAL;
	int rc = begin(m, "receive", u.text, false);
	if (rc < 0) {
		close(lfd);
		snprintf(err, errlen, "eventfd: %s", strerror(-rc));
		return rc;
	}
	pthread_mutex_lock(&g.lock);
	g.owns = true;
	pthread_mutex_unlock(&g.lock);
	g.url = u;
	g.lfd = lfd;
	g.timeout_s = o->timeout_s ? o->timeout_s : 600;
	g.parse_config = o->parse_config;
	rc = spawn(recv_thread);
	if (rc < 0) {
		close(lfd);
		g.lfd = -1;
		snprintf(err, errlen, "cannot start the migration thread: %s", strerror(-rc));
		return rc;
	}
	log_msg(LOG_INFO, "migration: waiting for the source on %s (at most %u s)", u.text,
		g.timeout_s);
	return 0;
}
