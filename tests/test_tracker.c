/*
 * test_tracker.c - the walker lifecycle and the kick machinery (tracker.c,
 * walk.c's register/unregister): the cases where a writer could wait
 * forever or a signal could kill the process.
 *
 * Every test that could hang has a Criterion timeout: a hang is a failure.
 * Each test runs in its own process (Criterion forks), so a seccomp filter
 * or a stray signal stays inside it.
 */
#include <criterion/criterion.h>
#include <guestmm/guestmm.h>

#include "internal.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KICK_SIG (SIGRTMIN + 2)

static struct gmm_vm *vm;

/* A VM with one 4-block THP region at 0 and no walker on the test thread. */
static void mkvm(enum gmm_strategy s)
{
	if (!gmm_strategy_available(s))
		cr_skip_test("%s not available", gmm_strategy_name(s));
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	cfg.strategy = s;
	cr_assert_eq(gmm_vm_create(&cfg, &vm), 0, "%s", gmm_last_error());
	struct gmm_region_spec spec = { .gpa = 0, .size = 4 * GMM_2M, .backing = GMM_BACKING_THP };
	cr_assert_eq(gmm_region_add(vm, &spec, NULL), 0, "%s", gmm_last_error());
}

static void set_kick_blocked(bool blocked)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, KICK_SIG);
	pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

static uint64_t kicks_sent(void)
{
	return atomic_load_explicit(&vm->st_kicks_sent, memory_order_relaxed);
}

static uint64_t walkers_now(void)
{
	struct gmm_stats st;
	gmm_vm_stats(vm, &st);
	return st.walkers;
}

/* ---- defect 0: no walker needs its signal handler to let a writer go on ----
 *
 * Under ThreadSanitizer (or any runtime that defers asynchronous signals
 * inside an intercepted blocking call) a thread blocked in
 * pthread_mutex_lock runs its handler only once it has the lock.  We
 * emulate that by blocking the kick signal in the walker thread around the
 * call that takes walkers_lock, after a writer has started a kick round.
 */
struct parked {
	_Atomic int state;     /* 1 registered and signal blocked, 2 done */
	bool stats;            /* call gmm_vm_stats (else unregister) in the round */
};

static void *parked_walker(void *p)
{
	struct parked *pk = p;
	struct gmm_walker *w = gmm_walker_register(vm);
	cr_assert_not_null(w);
	set_kick_blocked(true);
	atomic_store(&pk->state, 1);
	/* Wait until the writer's kick round is under way (it has sent us
	 * our signal, which stays pending). */
	while (kicks_sent() == 0)
		usleep(1000);
	usleep(20000);
	if (pk->stats) {
		struct gmm_stats st;
		gmm_vm_stats(vm, &st);     /* takes walkers_lock */
		set_kick_blocked(false);   /* "the handler runs once the call returned" */
		gmm_walker_unregister(w);
	} else {
		gmm_walker_unregister(w);  /* takes walkers_lock */
		set_kick_blocked(false);
	}
	atomic_store(&pk->state, 2);
	return NULL;
}

static void kick_round_with_parked_walker(bool stats)
{
	mkvm(GMM_STRATEGY_KICK);
	struct parked pk = { .stats = stats };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, parked_walker, &pk), 0);
	while (atomic_load(&pk.state) != 1)
		usleep(1000);
	/* The writer: one kick round per block. */
	cr_assert_eq(gmm_unmap(vm, 0, 4 * GMM_2M, 0), 0, "%s", gmm_last_error());
	pthread_join(t, NULL);
	cr_assert_eq(atomic_load(&pk.state), 2);
	cr_assert_geq(kicks_sent(), 1);
	cr_assert_eq(walkers_now(), 0);
	gmm_vm_destroy(vm);
}

Test(tracker, unregister_during_a_kick_round_needs_no_handler, .timeout = 20)
{
	kick_round_with_parked_walker(false);
}

Test(tracker, stats_from_a_walker_during_a_kick_round_do_not_deadlock, .timeout = 20)
{
	kick_round_with_parked_walker(true);
}

/* The same trap with the writer mutex: a walker thread (a device thread
 * that also unmaps: the balloon) blocks on wlock while another writer's
 * kick round, which holds wlock, waits for its acknowledgement. */
static _Atomic int wl_state; /* 1 registered and blocked, 2 done */

static void *walker_that_writes(void *p)
{
	(void)p;
	struct gmm_walker *w = gmm_walker_register(vm);
	cr_assert_not_null(w);
	set_kick_blocked(true);
	atomic_store(&wl_state, 1);
	while (kicks_sent() == 0)
		usleep(1000);
	usleep(20000);
	/* Blocks on wlock, held by the writer's kick round. */
	cr_assert_eq(gmm_unmap(vm, 3 * GMM_2M, GMM_2M, 0), 0, "%s", gmm_last_error());
	set_kick_blocked(false);
	gmm_walker_unregister(w);
	atomic_store(&wl_state, 2);
	return NULL;
}

Test(tracker, walker_blocked_on_the_writer_mutex_during_a_kick_round, .timeout = 20)
{
	mkvm(GMM_STRATEGY_KICK);
	pthread_t t;
	atomic_store(&wl_state, 0);
	cr_assert_eq(pthread_create(&t, NULL, walker_that_writes, NULL), 0);
	while (atomic_load(&wl_state) != 1)
		usleep(1000);
	cr_assert_eq(gmm_unmap(vm, 0, 3 * GMM_2M, 0), 0, "%s", gmm_last_error());
	pthread_join(t, NULL);
	cr_assert_eq(atomic_load(&wl_state), 2);
	cr_assert_eq(walkers_now(), 0);
	gmm_vm_destroy(vm);
}

/* ---- defect 4: membarrier failing at run time falls back to kicks ---------- */

/* membarrier() -> EPERM for this thread from now on. */
static void seccomp_deny_membarrier(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
	cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
	cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0, "%s", strerror(errno));
	errno = 0;
	cr_assert_eq(syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0), -1);
	cr_assert_eq(errno, EPERM);
}

static _Atomic int idle_state; /* 1 registered, 2 may leave */

static void *idle_walker(void *p)
{
	(void)p;
	struct gmm_walker *w = gmm_walker_register(vm);
	cr_assert_not_null(w);
	atomic_store(&idle_state, 1);
	while (atomic_load(&idle_state) != 2)
		usleep(1000);
	gmm_walker_unregister(w);
	return NULL;
}

Test(tracker, membarrier_failure_falls_back_to_kicks, .timeout = 20)
{
	mkvm(GMM_STRATEGY_MEMBARRIER);
	struct gmm_walker *w = gmm_walker_register(vm);
	cr_assert_not_null(w);
	gmm_walk_begin(w);
	cr_assert_not_null(gmm_translate(w, GMM_2M, 8, GMM_ACCESS_WRITE));
	gmm_walk_end(w);
	pthread_t t;
	atomic_store(&idle_state, 0);
	cr_assert_eq(pthread_create(&t, NULL, idle_walker, NULL), 0);
	while (atomic_load(&idle_state) != 1)
		usleep(1000);
	seccomp_deny_membarrier();
	/* Before the fix: killed here by the kick signal's default action. */
	cr_assert_eq(gmm_unmap(vm, 0, 2 * GMM_2M, 0), 0, "%s", gmm_last_error());
	cr_assert_geq(kicks_sent(), 1, "the other walker kicked (the writer's own is parked)");
	gmm_walk_begin(w);
	cr_assert_null(gmm_translate(w, GMM_2M, 8, GMM_ACCESS_READ));
	cr_assert_not_null(gmm_translate(w, 2 * GMM_2M, 8, GMM_ACCESS_READ));
	gmm_walk_end(w);
	atomic_store(&idle_state, 2);
	pthread_join(t, NULL);
	gmm_walker_unregister(w);
	gmm_vm_destroy(vm);
}

/* ---- defect 6: acknowledgements only move forward ---------------------------
 *
 * ack() is interrupted between its load of kick_req and its store of
 * kick_ack by a kick for a newer request, whose handler acknowledges that
 * newer request; the interrupted ack() must not then store its older one.
 * The test hook runs at exactly that point of ack(). */
static struct gmm_walker *hook_walker;
static _Atomic int hook_armed;

static void nested_kick(enum gmm_hook_point h, void *arg)
{
	struct gmm_walker *w = arg;
	(void)h;
	if (w != hook_walker || !atomic_exchange(&hook_armed, 0))
		return;
	/* A writer's next request (as kick_all publishes it), and its
	 * signal, delivered before pthread_kill returns. */
	atomic_fetch_add(&w->kick_req, 1);
	pthread_kill(pthread_self(), KICK_SIG);
}

Test(tracker, acks_never_go_backwards, .timeout = 10)
{
	mkvm(GMM_STRATEGY_KICK);
	struct gmm_walker *w = gmm_walker_register(vm);
	cr_assert_not_null(w);
	hook_walker = w;
	gmm_hook_set(GMM_HOOK_ACK, nested_kick);

	gmm_walk_begin(w);
	atomic_fetch_add(&w->kick_req, 1);          /* request 1 */
	pthread_kill(pthread_self(), KICK_SIG);     /* inside the walk: pending */
	cr_assert_eq(atomic_load(&w->kick_pending), 1);
	cr_assert_eq(atomic_load(&w->kick_ack), 0);
	atomic_store(&hook_armed, 1);
	gmm_walk_end(w);                            /* acks 1, interrupted by request 2 */
	cr_assert_eq(atomic_load(&hook_armed), 0, "the hook ran");
	uint32_t req = atomic_load(&w->kick_req), ack = atomic_load(&w->kick_ack);
	cr_assert_eq(req, 2);
	cr_assert_eq(ack, 2, "the acknowledgement went backwards: %u after request %u was acked",
		     ack, req);

	gmm_hook_set(GMM_HOOK_ACK, NULL);
	/* And a real writer is not held up. */
	cr_assert_eq(gmm_unmap(vm, 0, GMM_2M, 0), 0);
	gmm_walker_unregister(w);
	gmm_vm_destroy(vm);
}

/* ---- defect 8: thread exit and fork while registered ------------------------ */

enum how { RETURN_REGISTERED, RETURN_IN_WALK, VANISH_REGISTERED, VANISH_IN_WALK };

static void *exiting_walker(void *p)
{
	enum how how = (enum how)(uintptr_t)p;
	struct gmm_walker *w = gmm_walker_register(vm);
	cr_assert_not_null(w);
	if (how == RETURN_IN_WALK || how == VANISH_IN_WALK) {
		gmm_walk_begin(w);
		cr_assert_not_null(gmm_translate(w, GMM_2M + 64, 64, GMM_ACCESS_WRITE));
	}
	if (how == VANISH_REGISTERED || how == VANISH_IN_WALK)
		syscall(SYS_exit, 0);   /* no destructors: the thread is just gone */
	return NULL;                    /* without gmm_walker_unregister */
}

static void writer_after_exit(enum gmm_strategy s, enum how how)
{
	mkvm(s);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, exiting_walker, (void *)(uintptr_t)how), 0);
	pthread_join(t, NULL);
	/* Before the fix: waits forever for the dead thread. */
	cr_assert_eq(gmm_unmap(vm, 0, 4 * GMM_2M, 0), 0, "%s", gmm_last_error());
	gmm_synchronize(vm);
	if (how == RETURN_REGISTERED || how == RETURN_IN_WALK)
		cr_assert_eq(walkers_now(), 0, "unregistered at thread exit");
	if (how == RETURN_REGISTERED || how == RETURN_IN_WALK)
		gmm_vm_destroy(vm);
	/* A vanished thread's walker stays registered (nobody can free it
	 * safely); destroying the VM would only warn.  The process ends. */
}

Test(tracker, thread_exit_unregisters_kick, .timeout = 20)
{
	writer_after_exit(GMM_STRATEGY_KICK, RETURN_REGISTERED);
}

Test(tracker, thread_exit_inside_a_walk_kick, .timeout = 20)
{
	writer_after_exit(GMM_STRATEGY_KICK, RETURN_IN_WALK);
}

Test(tracker, thread_exit_inside_a_walk_perthread, .timeout = 20)
{
	writer_after_exit(GMM_STRATEGY_PERTHREAD, RETURN_IN_WALK);
}

Test(tracker, thread_exit_inside_a_walk_membarrier, .timeout = 20)
{
	writer_after_exit(GMM_STRATEGY_MEMBARRIER, RETURN_IN_WALK);
}

Test(tracker, thread_exit_inside_a_walk_rcu, .timeout = 20)
{
	writer_after_exit(GMM_STRATEGY_RCU, RETURN_IN_WALK);
}

/* A thread gone without running its destructors (raw exit): the writer
 * notices it is dead (ESRCH) instead of waiting for its acknowledgement. */
Test(tracker, vanished_walker_thread_kick, .timeout = 20)
{
	writer_after_exit(GMM_STRATEGY_KICK, VANISH_REGISTERED);
}

Test(tracker, vanished_walker_thread_inside_a_walk_perthread, .timeout = 20)
{
	writer_after_exit(GMM_STRATEGY_PERTHREAD, VANISH_IN_WALK);
}

/* fork: the child gets the documented error from writer operations and
 * from gmm_walker_register, at once, and does not hang. */
static void fork_child_gets_an_error(enum gmm_strategy s)
{
	mkvm(s);
	struct gmm_walker *w = gmm_walker_register(vm);
	cr_assert_not_null(w);
	pthread_t t;
	atomic_store(&idle_state, 0);
	cr_assert_eq(pthread_create(&t, NULL, idle_walker, NULL), 0);
	while (atomic_load(&idle_state) != 1)
		usleep(1000);

	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		alarm(15);
		int code = 0;
		if (gmm_unmap(vm, 0, GMM_2M, 0) != -ECHILD)
			code |= 1;
		if (!strstr(gmm_last_error(), "fork"))
			code |= 2;
		gmm_synchronize(vm);            /* returns (does nothing) */
		errno = 0;
		if (gmm_walker_register(vm) != NULL || errno != ECHILD)
			code |= 4;
		_exit(code);
	}
	int status = 0;
	pid_t r = 0;
	for (int i = 0; i < 1000 && (r = waitpid(pid, &status, WNOHANG)) == 0; i++)
		usleep(10000);
	if (r == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		cr_assert_fail("the child hung in a writer operation (killed after 10 s)");
	}
	cr_assert(WIFEXITED(status), "child died: status 0x%x", status);
	cr_assert_eq(WEXITSTATUS(status), 0, "child: unmap %s ECHILD, error %s 'fork', register %s",
		     WEXITSTATUS(status) & 1 ? "not" : "", WEXITSTATUS(status) & 2 ? "without" : "with",
		     WEXITSTATUS(status) & 4 ? "did not fail with ECHILD" : "failed with ECHILD");
	/* The parent is unaffected. */
	cr_assert_eq(gmm_unmap(vm, 0, GMM_2M, 0), 0, "%s", gmm_last_error());
	atomic_store(&idle_state, 2);
	pthread_join(t, NULL);
	gmm_walker_unregister(w);
	gmm_vm_destroy(vm);
}

Test(tracker, fork_child_gets_an_error_kick, .timeout = 30)
{
	fork_child_gets_an_error(GMM_STRATEGY_KICK);
}

Test(tracker, fork_child_gets_an_error_default, .timeout = 30)
{
	fork_child_gets_an_error(GMM_STRATEGY_DEFAULT);
}

/*
 * fork while a parent thread holds the writer mutex (an unmap waiting for a
 * pin): the child's copy of the mutex stays locked forever, so every entry
 * point that would take it must give the documented answer without trying.
 */
static _Atomic int unmap_state;

static void *pinned_unmap(void *arg)
{
	(void)arg;
	atomic_store(&unmap_state, 1);
	int ret = gmm_unmap(vm, 0, GMM_2M, 0);  /* waits for the pin, holding wlock */
	atomic_store(&unmap_state, ret == 0 ? 2 : 3);
	return NULL;
}

Test(tracker, fork_child_every_entry_point_answers, .timeout = 30)
{
	struct gmm_vm_config cfg;
	gmm_vm_config_init(&cfg);
	cfg.pin_timeout_ms = 3000;
	cr_assert_eq(gmm_vm_create(&cfg, &vm), 0, "%s", gmm_last_error());
	struct gmm_region *r;
	struct gmm_region_spec spec = { .gpa = 0, .size = 4 * GMM_2M, .backing = GMM_BACKING_THP };
	cr_assert_eq(gmm_region_add(vm, &spec, &r), 0, "%s", gmm_last_error());
	struct gmm_walker *w = gmm_walker_register(vm);
	cr_assert_not_null(w);
	struct gmm_pin pin;
	cr_assert_eq(gmm_pin(w, 0x1000, 8, GMM_ACCESS_READ, &pin), 0);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, pinned_unmap, NULL), 0);
	/* Until the unmap holds the writer mutex (waiting for our pin). */
	while (pthread_mutex_trylock(&vm->wlock) == 0) {
		pthread_mutex_unlock(&vm->wlock);
		usleep(1000);
	}

	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		alarm(10);
		int bad = 0;
		struct gmm_region *nr = NULL;
		bad |= (gmm_map(vm, GMM_2M, GMM_2M) != -ECHILD) << 0;
		bad |= (gmm_unmap(vm, GMM_2M, GMM_2M, 0) != -ECHILD) << 1;
		bad |= (gmm_split(vm, GMM_2M) != -ECHILD) << 2;
		bad |= (gmm_collapse(vm, GMM_2M) != -ECHILD) << 3;
		bad |= (gmm_protect(vm, GMM_2M, GMM_2M, false) != -ECHILD) << 4;
		bad |= (gmm_discard(vm, GMM_2M, GMM_PAGE_SIZE) != -ECHILD) << 5;
		struct gmm_region_spec s2 = { .gpa = 1ULL << 30, .size = GMM_2M,
					      .backing = GMM_BACKING_THP };
		bad |= (gmm_region_add(vm, &s2, &nr) != -ECHILD) << 6;
		bad |= (gmm_region_remove(vm, r) != -ECHILD) << 7;
		bad |= (gmm_table_lookup(vm, 0, NULL) != 0) << 8;
		bad |= (gmm_region_count(vm) != 0 || gmm_region_find(vm, 0) != NULL) << 9;
		struct gmm_stats cst;
		gmm_vm_stats(vm, &cst);
		bad |= (cst.walkers != 0) << 10;
		gmm_reclaim(vm);
		gmm_synchronize(vm);
		gmm_vm_destroy(vm);
		_exit(bad ? 100 + __builtin_ctz(bad) : 0);
	}
	int status = 0;
	pid_t got = 0;
	for (int i = 0; i < 1500 && (got = waitpid(pid, &status, WNOHANG)) == 0; i++)
		usleep(10000);
	if (got == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		cr_assert_fail("the child hung on the writer mutex its parent held");
	}
	cr_assert(WIFEXITED(status), "the child died: status 0x%x (SIGALRM: hung)", status);
	cr_assert_eq(WEXITSTATUS(status), 0,
		     "the child: entry point %d (map, unmap, split, collapse, protect, discard, "
		     "region add, region remove, lookup, region count/find, stats) answered wrong",
		     WEXITSTATUS(status) - 100);
	gmm_unpin(vm, &pin);
	pthread_join(t, NULL);
	cr_assert_eq(atomic_load(&unmap_state), 2, "the parent's unmap went on after the unpin");
	gmm_walker_unregister(w);
	gmm_vm_destroy(vm);
}
