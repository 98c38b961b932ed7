/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * migration.h - live migration (issue 17): vm.send-migration and
 * vm.receive-migration, Cloud Hypervisor's interface.
 *
 * Source (send.c... all in migration.c): a thread "_migrate" connects to
 * the destination, sends Start, the configuration (and in local mode the
 * RAM's fds), then precopies: dirty logging on (KVM's for the vCPUs,
 * guestmm's for the VMM's own writes), a first pass of every page that
 * holds data, then passes of what was dirtied meanwhile until the
 * estimated downtime (dirty bytes / measured throughput) is within
 * downtime_ms, or timeout_s passes (then the migration fails: the VM never
 * stopped).  Stop and copy: pause, quiesce the devices, the last dirty
 * pages, the state (snapshot.h's parts + the table's shape), Complete.
 * The destination answers Complete once its VM runs; only then does the
 * source's VMM stop (exit 0, "migrated").  Any failure before that --
 * a refused message, the connection lost, a cancel -- resumes the source
 * if it was paused, with nothing lost: its memory was only read.
 *
 * Destination: a thread listens (bounded: timeout_s), takes one
 * connection, builds the VM from the configuration in restore mode
 * (machine_restore), writes the memory it receives into RAM (prefaulted
 * huge pages: the guest ends on huge pages, coverage logged), applies the
 * state and runs the VM at Complete.  A failure leaves no VM (back to
 * NONE) and the VMM serving its API.
 *
 * While a migration thread runs it owns the machine's state changes: the
 * API refuses everything but vm.info, vm.counters, vmm.ping and
 * vmm.shutdown (409), and on the destination the main loop does not look
 * at the machine at all until migration_finish().
 *
 * Threads: every function is for the main thread but
 * migration_progress(), which any thread may call.
 */
#ifndef VMM_MIGRATION_H
#define VMM_MIGRATION_H

#include "machine/machine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct migration_send_opts {
	const char *url;          /* "unix:/path" or "tcp:host:port" */
	bool local;               /* pass RAM's fds (memfd/hugetlb/file) */
	unsigned downtime_ms;     /* 0: 300 */
	unsigned timeout_s;       /* 0: 3600 */
	const char *config_json;  /* the VM's configuration (copied) */
};

/* Start sending m's running VM.  0, or -EBUSY (a migration runs, or the VM
 * is not running), -EINVAL (bad URL, local with private memory) with err. */
int migration_send_start(struct machine *m, const struct migration_send_opts *o, char *err,
			 size_t errlen);

struct migration_receive_opts {
	const char *url;          /* "unix:/path" or "tcp:0.0.0.0:port" */
	unsigned timeout_s;       /* wait for the source at most this long; 0: 600 */
	/* The configuration's JSON into cfg (api_parse_snapshot_config). */
	int (*parse_config)(const char *json, size_t len, struct machine_config *cfg, char *err,
			    size_t errlen);
};

/* Start waiting for a VM on m (state NONE).  0, or -EBUSY / -EINVAL with
 * err (the URL is checked and the socket bound before this returns). */
int migration_receive_start(struct machine *m, const struct migration_receive_opts *o,
			    char *err, size_t errlen);

/* Readable when a migration thread has finished: the main loop then calls
 * migration_finish().  -1 before the first migration. */
int migration_eventfd(void);

enum migration_outcome {
	MIGRATION_NONE,           /* nothing finished */
	MIGRATION_SENT,           /* the VM runs on the destination: stop, exit 0 */
	MIGRATION_RECEIVED,       /* the VM runs here */
	MIGRATION_FAILED,         /* source: running as before; destination: no VM */
};
/* Join a finished thread and say how it ended. */
enum migration_outcome migration_finish(void);

/* A migration thread runs (the API gates on it). */
bool migration_busy(void);
/* The destination's thread owns the machine: the main loop leaves it alone. */
bool migration_owns_machine(void);
/* The VMM must stop: cancel a running migration and join it (bounded by
 * the connection timeout).  The source resumes; a destination's VM goes. */
void migration_cancel(void);

struct migration_progress {
	char role[12];            /* "", "send", "receive" */
	char state[16];           /* "", "running", "completed", "failed", "cancelled" */
	char url[128];
	bool local;
	unsigned iteration;       /* passes sent (1 = the full pass) */
	uint64_t bytes;           /* bytes on the wire (headers included) */
	uint64_t pages;           /* data pages sent / received */
	uint64_t zero_pages;      /* pages sent as holes */
	uint64_t dirty_bytes;     /* left after the last harvest */
	uint64_t throughput;      /* bytes/s of the last pass */
	uint64_t elapsed_ms;
	uint64_t downtime_ms;     /* source paused -> destination running (source's view) */
	uint64_t total_ms;
	char error[512];
};
void migration_progress(struct migration_progress *p);
/* The progress as a JSON object text (malloc'd) for vm.info, or NULL when
 * no migration ever ran. */
char *migration_progress_json(void);

#endif
