// SPDX-License-Identifier: GPL-2.0-only
/*
 * sandbox.c - per-thread seccomp filters, one allow-list per thread class,
 * as Firecracker does (its vmm, api and vcpu filters).
 *
 * ---- Classes and where they are installed ------------------------------
 *
 *   main       the main thread (cli/run.c): after option parsing, the API
 *              socket and the signalfd, before the first VM boots.  It
 *              keeps creating VMs afterwards (vm.create/vm.boot, reboots).
 *   vcpu       vcpu_thread (core/vcpu.c), after its boot state is loaded:
 *              KVM_RUN and the device emulation of its exits.
 *   device     blk_thread, con_thread, balloon_thread, mem_thread
 *              (virtio/), after registering as guestmm walkers: queue
 *              work, io_uring_enter, guestmm writer calls (unmap, map,
 *              discard: madvise, mmap, fallocate, membarrier, the kick).
 *   io_worker  virtio-blk's pool_worker: preadv/pwritev/fdatasync.
 *   events     the event monitor's writer (core/events.c): opens its FIFO
 *              (retrying until a reader comes), writes and polls it.
 *
 * Not VM threads, not filtered by a class of their own: `vmm bench` and
 * `vmm demo` never call sandbox_init() (measurement tools driving the
 * project's own test images: bench's walker threads and vCPUs run
 * unfiltered, so that its figures stay comparable with earlier ones);
 * guestmm's prefault workers (gmm_region_prefault, created by whichever
 * thread adds a region) run under their creator's filter.
 *
 * ---- Inheritance: why main's list is the union of all --------------------
 *
 * A thread inherits its creator's filters, and a filter installed on top
 * of them does not replace them: the kernel runs every filter of the
 * thread and the most restrictive answer wins, so a thread's effective
 * list is the intersection of its own and its creator's.  Every vCPU,
 * device and I/O thread is created by the main thread, and necessarily
 * after main's filter (vm.boot through the API, a reboot): were main's
 * list missing a syscall a vCPU needs, the vCPU could never make it.  And
 * a new thread runs its set-up under main's filter alone, before its
 * own (a vCPU loads its registers with KVM_SET_SREGS...; glibc's
 * start_thread calls set_robust_list, rseq, rt_sigprocmask; the thread
 * then calls prctl(PR_SET_NO_NEW_PRIVS) and seccomp()).  So main's filter
 * is built as main's own list PLUS every other class's list: effective
 * vcpu = vcpu ∩ (main ∪ vcpu ∪ ...) = vcpu, as written.  The filters of
 * the other classes are where the sandbox narrows; main's keeps out what
 * no thread of the VMM does (execve unless --on-reboot restart re-executes
 * the VMM, ptrace, mount, sockets of other families (netlink, packet), bpf, kexec, keyctl, setuid...,
 * ioctls other than those listed, PROT_EXEC mappings).  clone is allowed
 * with CLONE_THREAD only; clone3, whose flags a filter cannot read (they
 * are in memory), fails with ENOSYS in every class and glibc falls back to
 * clone.  The main thread never creates processes.
 *
 * Filters stack: a child installs exactly one on top of main's; the main
 * thread installs one, once.  `--on-reboot restart` without the API
 * re-executes the VMM: the filter survives execve, so the new image does
 * not install main's again (sandbox_before_exec() leaves a mark in the
 * environment, checked with PR_GET_SECCOMP), and a VM that reboots a
 * thousand times does not stack a thousand filters (the kernel caps the
 * instructions of a thread's filters at 32768).
 *
 * ---- Actions -------------------------------------------------------------
 *
 * Anything not allowed traps (SECCOMP_RET_TRAP: SIGSYS on the thread,
 * with the syscall number), also a syscall of a foreign ABI (int 0x80,
 * x32).  The handler, async-signal-safe, knows the thread's class and
 * name from thread-local variables set by sandbox_enter():
 *   on   writes one line on stderr ("vmm: error: seccomp: thread vcpu0
 *        (class vcpu) made syscall getsid (124), not in its allow-list:
 *        the VMM is stopped (--seccomp on)"), calls the fatal hook (the
 *        terminal's settings back) and exit_group(159);
 *   log  sets the syscall's return value to -EPERM and returns; a line is
 *        written the 1st, 2nd, 4th, 8th... time a syscall number is
 *        denied (a loop of denials writes ~log2(n) lines), and counted
 *        (sandbox_denied()).
 * A few syscalls fail with an errno instead, no trap, no line (errno_rules):
 * clone3 with ENOSYS, and open/openat with EACCES in the classes that do
 * not allow them -- glibc's malloc opens /sys and /proc files behind its
 * caller's back in any thread, and copes with a failure; glibc's qsort
 * calls sysinfo (allowed everywhere).
 *
 * SIGSYS must not be blocked on the thread (the kernel would kill the
 * process without running the handler): sandbox_enter() unblocks it, for
 * the balloon thread starts with every signal blocked.  Threads that run
 * with every signal blocked under an inherited filter (guestmm's prefault
 * workers, LSan's tracer) die by SIGSYS without the line.
 *
 * The filters are compiled once by sandbox_init() on the main thread
 * (libseccomp, exported to BPF); sandbox_enter() only calls prctl and
 * seccomp(2), no allocation, no libseccomp state shared between threads.
 *
 * ---- Arguments -----------------------------------------------------------
 *
 * ioctl is allowed by request number (low 32 bits: the kernel's cmd is an
 * unsigned int): a vCPU gets KVM_RUN, KVM_GET_REGS/SREGS (its register dump
 * on a fatal exit) and KVM_IRQ_LINE (the UART's and the i8042's
 * interrupt); a device thread KVM_SET_USER_MEMORY_REGION (virtio-mem's
 * memslots); main every KVM, terminal and BLKGETSIZE64 request the VMM
 * makes (the migration thread's KVM_GET_DIRTY_LOG too: main creates it
 * and it runs under main's filter).  Every class may ioctl(0, TCSETS), the fatal hook's
 * console_restore.  mmap and mprotect with PROT_EXEC are refused (but for
 * main with SANDBOX_ALLOW_EXEC: the re-executed image's loader maps its
 * code).  prctl only with the options listed.
 *
 * ---- Sanitizer builds -----------------------------------------------------
 *
 * ASan/UBSan/TSan runtimes make syscalls of their own: at thread start and
 * exit (sigaltstack, pthread_getattr_np's sched_getaffinity), in reports
 * (/proc/self/maps, the binary's debug info read by the built-in
 * symbolizer: open, read, lseek, fstat, readlink, prctl) and,
 * for LSan's leak check at exit on the main thread, a tracer task cloned
 * without CLONE_THREAD that ptrace-attaches every thread (clone, ptrace,
 * wait4, prctl PR_SET_PDEATHSIG/PR_SET_PTRACER, getppid, and getdents,
 * not getdents64, to list /proc/self/task).  These are
 * added when the build is sanitized (VMM_SANITIZE_* from meson, or the
 * compiler's __SANITIZE_*__), to every class resp. to main; `vmm
 * seccomp-info` counts them.  An external symbolizer (llvm-symbolizer) is
 * not allowed: it would run under the filter; reports symbolize with the
 * runtime's built-in one.  The KVM tests do not run under TSan
 * (tests/vmm/meson.build), so its list is a best guess, never exercised.
 */
#include "core/sandbox.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/sockios.h>
#include <ucontext.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/userfaultfd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#if defined(__SANITIZE_ADDRESS__) && !defined(VMM_SANITIZE_ADDRESS)
#define VMM_SANITIZE_ADDRESS 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(VMM_SANITIZE_THREAD)
#define VMM_SANITIZE_THREAD 1
#endif
#if defined(VMM_SANITIZE_ADDRESS) || defined(VMM_SANITIZE_THREAD) || \
    defined(VMM_SANITIZE_UNDEFINED) || defined(VMM_SANITIZE_LEAK)
#define VMM_SANITIZED 1
#endif

/* ---- the lists ------------------------------------------------------- */

struct rule {
	const char *name;
	int nr;                        /* SCMP_SYS(name); < 0: not on this arch */
	unsigned nargs;                /* 0: any arguments */
	struct scmp_arg_cmp arg[2];
};

#define CMP(a, mask, val) { (a), SCMP_CMP_MASKED_EQ, (scmp_datum_t)(mask), (scmp_datum_t)(val) }
#define SYS(n) { #n, SCMP_SYS(n), 0, { { 0, 0, 0, 0 } } }
#define SYS_IF(n, a, mask, val) { #n, SCMP_SYS(n), 1, { CMP(a, mask, val) } }
#define U32 0xffffffffu
#define PRCTL(opt) SYS_IF(prctl, 0, U32, opt)
#define END { NULL, 0, 0, { { 0, 0, 0, 0 } } }

/* Every thread: libc's own (malloc, locks, thread exit), logging, the
 * walker side of guestmm (kick handler: futex, rt_sigreturn), the crash
 * paths (abort, the fatal-signal handler: rt_sigaction, tgkill). */
static const struct rule common_rules[] = {
	SYS(read), SYS(write), SYS(writev),
	SYS(futex), SYS(sched_yield), SYS(clock_gettime), SYS(clock_nanosleep), SYS(nanosleep),
	SYS_IF(mmap, 2, PROT_EXEC, 0), SYS_IF(mprotect, 2, PROT_EXEC, 0),
	SYS(munmap), SYS(madvise), SYS(mremap), SYS(brk),
	SYS(rt_sigreturn), SYS(rt_sigprocmask), SYS(rt_sigaction), SYS(restart_syscall),
	SYS(tgkill), SYS(getpid), SYS(gettid),
	SYS(exit), SYS(exit_group),
	SYS(sysinfo),   /* glibc's qsort asks the RAM size before sorting more than 1 KiB */
	END
};

/* The fatal hook's console_restore, in every class but main, whose ioctl
 * list has TCSETS on any fd (libseccomp 2.5.4 leaks when a rule is
 * subsumed by a wider one, so the two are never both added). */
static const struct rule tcsets_rules[] = {
	{ "ioctl", SCMP_SYS(ioctl), 2, { CMP(0, U32, 0), CMP(1, U32, TCSETS) } },
	END
};

/* A vCPU after its set-up: KVM_RUN, its exits' devices (UART output,
 * eventfd writes of virtio-mmio, vm_stop's kicks), ioctls below.  poll:
 * the UART polls a blocking output fd (a socket) for room before it writes,
 * with a zero timeout (serial.c: a vCPU never waits on its output). */
static const struct rule vcpu_rules[] = {
	SYS(poll), SYS(ppoll),
	END
};

/* A virtio device thread. */
static const struct rule device_rules[] = {
	SYS(poll), SYS(ppoll),
	SYS(io_uring_enter),                 /* virtio-blk, engine=io_uring */
	SYS(membarrier),                     /* guestmm writer: serialisation */
	SYS(fallocate),                      /* guestmm: punch memfd/hugetlb holes */
	END
};

/* A virtio-blk pool thread. */
static const struct rule io_worker_rules[] = {
	SYS(preadv), SYS(pwritev), SYS(pread64), SYS(pwrite64), SYS(fdatasync), SYS(fsync),
	END
};

/* The event monitor's writer: opens its FIFO (retried until a reader
 * comes), writes and polls it. */
static const struct rule events_rules[] = {
	SYS(open), SYS(openat), SYS(close), SYS(fstat), SYS(newfstatat), SYS(fcntl),
	SYS(poll), SYS(ppoll),
	END
};

/*
 * Not allowed but not fatal either, in the classes that do not allow them:
 * the syscall fails with this errno, no trap, no line.  A vCPU, device or
 * I/O thread never opens a file itself, but glibc does behind some calls
 * and copies with a failure: malloc opens /sys/devices/system/cpu/online
 * when a thread creates the 9th arena (the arena limit) and
 * /proc/sys/vm/overcommit_memory when a thread's heap first shrinks.
 * (ASan builds, whose allocator is not glibc's, never go there.)
 */
struct errno_rule {
	const char *name;
	int nr;
	int err;
};
static const struct errno_rule errno_rules[] = {
	{ "open", SCMP_SYS(open), EACCES },
	{ "openat", SCMP_SYS(openat), EACCES },
	{ "clone3", SCMP_SYS(clone3), ENOSYS },   /* glibc falls back to clone */
	{ NULL, 0, 0 },
};

/* The main thread's own; its filter also gets every other class's. */
static const struct rule main_rules[] = {
	/* files: kernel, initrd, disks, consoles, /dev/kvm, /proc */
	SYS(open), SYS(openat), SYS(close), SYS(lseek), SYS(pread64), SYS(pwrite64), SYS(readv),
	SYS(fstat), SYS(newfstatat), SYS(stat), SYS(lstat), SYS(statx), SYS(fstatfs), SYS(statfs),
	SYS(readlink), SYS(readlinkat), SYS(access), SYS(faccessat), SYS(faccessat2),
	SYS(getdents64), SYS(unlink), SYS(unlinkat), SYS(fcntl), SYS(dup), SYS(dup2), SYS(dup3),
	SYS(ftruncate), SYS(fallocate), SYS(fsync), SYS(fdatasync), SYS(fchmod), SYS(umask),
	SYS(getcwd),
	/* memory: guest RAM (memfd, hugetlb), guestmm; snapshots (issue 16):
	 * the files renamed into place, on-demand restore's userfaultfd */
	SYS(memfd_create), SYS(mincore), SYS(membarrier),
	SYS(rename), SYS(renameat), SYS(renameat2), SYS(userfaultfd),
	/* events, the poll loop, the control API */
	SYS(poll), SYS(ppoll), SYS(eventfd2), SYS(pipe2), SYS(signalfd4),
	SYS(timerfd_create), SYS(timerfd_settime), SYS(timerfd_gettime),
	SYS(epoll_create1), SYS(epoll_ctl), SYS(epoll_wait), SYS(epoll_pwait),
	SYS(accept), SYS(accept4), SYS(recvfrom), SYS(recvmsg), SYS(sendto), SYS(sendmsg),
	SYS(shutdown), SYS(getsockopt), SYS(setsockopt), SYS(getsockname), SYS(getpeername),
	/* threads: pthread_create, naming, the children's own filters */
	SYS_IF(clone, 0, CLONE_THREAD, CLONE_THREAD), SYS(set_robust_list), SYS(rseq),
	SYS(sigaltstack), SYS(sched_getaffinity), SYS(seccomp),
	PRCTL(PR_SET_NAME), PRCTL(PR_GET_NAME), PRCTL(PR_SET_NO_NEW_PRIVS),
	PRCTL(PR_GET_NO_NEW_PRIVS), PRCTL(PR_GET_SECCOMP),
	/* virtio-net set-up: a datagram socket for the tap's address, MTU and
	 * flags (SIOCSIF*), nothing else */
	SYS_IF(socket, 0, U32, AF_INET),
	/* live migration (issue 17, its thread runs under main's filter):
	 * a unix or TCP stream to the other VMM, either end */
	SYS_IF(socket, 0, U32, AF_UNIX), SYS_IF(socket, 0, U32, AF_INET6),
	SYS(connect), SYS(bind), SYS(listen),
	/* io_uring set-up (virtio-blk) */
	SYS(io_uring_setup), SYS(io_uring_register), SYS(io_uring_enter),
	/* small queries: json-c's hash seed, ids, limits */
	SYS(getrandom), SYS(getuid), SYS(geteuid), SYS(getgid), SYS(getegid), SYS(uname),
	SYS(prlimit64), SYS(getrlimit),
	END
};

/* Main with SANDBOX_ALLOW_EXEC: execve(/proc/self/exe) and the new
 * image's start-up (ld.so, libc, the sanitizer runtimes' init) under
 * the same filter. */
static const struct rule exec_rules[] = {
	SYS(execve), SYS(mmap), SYS(mprotect), SYS(arch_prctl), SYS(set_tid_address),
	SYS(personality), PRCTL(PR_GET_DUMPABLE),
#ifdef PR_SET_VMA
	PRCTL(PR_SET_VMA),
#endif
	END
};

/* Sanitizer runtimes, every class: thread start/exit, reports. */
static const struct rule sanitizer_rules[] = {
#ifdef VMM_SANITIZED
	SYS(open), SYS(openat), SYS(close), SYS(lseek), SYS(pread64), SYS(fstat), SYS(newfstatat),
	SYS(readlink), SYS(readlinkat), SYS(getdents), SYS(getdents64), SYS(sigaltstack),
	SYS(sched_getaffinity),
	SYS(prlimit64), SYS(getrlimit), SYS(getrusage), SYS(uname), SYS(prctl), SYS(getppid),
	SYS(kill), SYS(mincore),
#endif
	END
};

/* Sanitizer runtimes, main: LSan's leak check at exit (a tracer task
 * that ptrace-stops every thread). */
static const struct rule sanitizer_main_rules[] = {
#if defined(VMM_SANITIZE_ADDRESS) || defined(VMM_SANITIZE_LEAK)
	SYS(clone), SYS(ptrace), SYS(wait4), SYS(waitid), SYS(process_vm_readv), SYS(sched_yield),
#endif
	END
};

struct ioctl_req {
	const char *name;
	unsigned long req;
};
#define IOC(r) { #r, (unsigned long)(r) }
#define IOC_END { NULL, 0 }

static const struct ioctl_req vcpu_ioctls[] = {
	IOC(KVM_RUN), IOC(KVM_GET_REGS), IOC(KVM_GET_SREGS), IOC(KVM_IRQ_LINE),
	IOC_END
};

static const struct ioctl_req device_ioctls[] = {
	IOC(KVM_SET_USER_MEMORY_REGION),
	IOC(TUNSETOFFLOAD),                  /* virtio-net: the driver's offloads */
	IOC_END
};

static const struct ioctl_req io_worker_ioctls[] = {
	IOC_END
};

static const struct ioctl_req events_ioctls[] = {
	IOC_END
};

static const struct ioctl_req main_ioctls[] = {
	IOC(KVM_GET_API_VERSION), IOC(KVM_CHECK_EXTENSION), IOC(KVM_GET_VCPU_MMAP_SIZE),
	IOC(KVM_CREATE_VM), IOC(KVM_GET_SUPPORTED_CPUID), IOC(KVM_GET_MSR_INDEX_LIST),
	IOC(KVM_SET_USER_MEMORY_REGION), IOC(KVM_SET_TSS_ADDR), IOC(KVM_SET_IDENTITY_MAP_ADDR),
	IOC(KVM_CREATE_IRQCHIP), IOC(KVM_CREATE_PIT2), IOC(KVM_IRQFD), IOC(KVM_IOEVENTFD),
	IOC(KVM_IRQ_LINE), IOC(KVM_CREATE_VCPU), IOC(KVM_SET_CPUID2), IOC(KVM_GET_SREGS),
	IOC(KVM_SET_SREGS), IOC(KVM_GET_REGS), IOC(KVM_SET_REGS), IOC(KVM_SET_FPU),
	IOC(KVM_GET_MSRS), IOC(KVM_SET_MSRS), IOC(KVM_GET_LAPIC), IOC(KVM_SET_LAPIC),
	IOC(KVM_GET_MP_STATE), IOC(KVM_SET_MP_STATE),
	/* snapshot and restore (core/vm_state.c) */
	IOC(KVM_GET_FPU), IOC(KVM_GET_XSAVE), IOC(KVM_SET_XSAVE), IOC(KVM_GET_XCRS),
	IOC(KVM_SET_XCRS), IOC(KVM_GET_VCPU_EVENTS), IOC(KVM_SET_VCPU_EVENTS),
	IOC(KVM_GET_DEBUGREGS), IOC(KVM_SET_DEBUGREGS), IOC(KVM_GET_IRQCHIP),
	IOC(KVM_SET_IRQCHIP), IOC(KVM_GET_PIT2), IOC(KVM_SET_PIT2), IOC(KVM_GET_CLOCK),
	IOC(KVM_SET_CLOCK), IOC(KVM_GET_CPUID2),
	/* live migration's dirty log (core/dirty_log.c), on the migration
	 * thread: KVM_SET_USER_MEMORY_REGION flips the slots' log flag,
	 * KVM_CREATE_VM and KVM_CHECK_EXTENSION probe for it */
	IOC(KVM_GET_DIRTY_LOG),
#ifdef KVM_GET_XSAVE2
	IOC(KVM_GET_XSAVE2),
#endif
	/* on-demand restore (guestmm/snapshot.h) */
	IOC(UFFDIO_API), IOC(UFFDIO_REGISTER), IOC(UFFDIO_UNREGISTER), IOC(UFFDIO_COPY),
	IOC(UFFDIO_ZEROPAGE), IOC(UFFDIO_WAKE),
#ifdef USERFAULTFD_IOC_NEW
	IOC(USERFAULTFD_IOC_NEW),
#endif
	IOC(TCGETS), IOC(TCSETS), IOC(TCSETSW), IOC(TCSETSF), IOC(TIOCGWINSZ), IOC(TIOCGPTN),
	IOC(TIOCSPTLCK),
#ifdef TIOCGPTPEER
	IOC(TIOCGPTPEER),
#endif
	IOC(FIONBIO), IOC(FIONREAD), IOC(BLKGETSIZE64),
	/* virtio-net: open or check the tap, set the host side up */
	IOC(TUNSETIFF), IOC(TUNGETIFF), IOC(TUNSETVNETHDRSZ), IOC(TUNSETOFFLOAD),
	IOC(SIOCSIFADDR), IOC(SIOCSIFNETMASK), IOC(SIOCGIFFLAGS), IOC(SIOCSIFFLAGS),
	IOC(SIOCSIFMTU),
	IOC_END
};

struct class_def {
	const char *name;
	const struct rule *rules;
	const struct ioctl_req *ioctls;
};

static const struct class_def classes[SANDBOX__N] = {
	[SANDBOX_MAIN] = { "main", main_rules, main_ioctls },
	[SANDBOX_VCPU] = { "vcpu", vcpu_rules, vcpu_ioctls },
	[SANDBOX_DEVICE] = { "device", device_rules, device_ioctls },
	[SANDBOX_IO_WORKER] = { "io_worker", io_worker_rules, io_worker_ioctls },
	[SANDBOX_EVENTS] = { "events", events_rules, events_ioctls },
};

/* ---- state ------------------------------------------------------------ */

#define MAX_NR 1024   /* syscall numbers with a name and a log counter */

static enum sandbox_mode mode = SANDBOX_OFF;
static bool ready;                            /* sandbox_init compiled the filters */
static struct sock_fprog progs[SANDBOX__N];
static bool main_inherited;                   /* main's filter came across execve */
static bool main_installed;                   /* sandbox_enter(SANDBOX_MAIN) done */
static const char *names[MAX_NR];             /* syscall names, for the handler */
static _Atomic unsigned denials[MAX_NR + 1];  /* per number, [MAX_NR]: the rest */
static atomic_ulong denied_total;
static void (*fatal_hook)(void);
static int selftest_class = -1;               /* VMM_SECCOMP_SELFTEST */
static atomic_bool selftest_done;

/* The handler's view of the thread (initial-exec TLS of the executable:
 * no allocation, safe in a signal handler). */
static __thread int tls_class = -1;
static __thread char tls_name[16];

#define REEXEC_ENV "VMM_SECCOMP_REEXEC"
#define SELFTEST_ENV "VMM_SECCOMP_SELFTEST"

static const char *const mode_names[] = { "off", "log", "on" };

int sandbox_parse_mode(const char *s, enum sandbox_mode *out)
{
	if (!strcmp(s, "off") || !strcmp(s, "false"))
		*out = SANDBOX_OFF;
	else if (!strcmp(s, "log"))
		*out = SANDBOX_LOG;
	else if (!strcmp(s, "on") || !strcmp(s, "true"))
		*out = SANDBOX_ON;
	else
		return -1;
	return 0;
}

const char *sandbox_mode_name(enum sandbox_mode m)
{
	return (unsigned)m <= SANDBOX_ON ? mode_names[m] : "?";
}

const char *sandbox_class_name(enum sandbox_class c)
{
	return (unsigned)c < SANDBOX__N ? classes[c].name : "?";
}

void sandbox_set_fatal_hook(void (*fn)(void))
{
	fatal_hook = fn;
}

unsigned long sandbox_denied(void)
{
	return atomic_load_explicit(&denied_total, memory_order_relaxed);
}

/* ---- the SIGSYS handler (async-signal-safe) ---------------------------- */

struct line {
	char buf[320];
	size_t n;
};

static void put(struct line *l, const char *s)
{
	while (*s && l->n < sizeof(l->buf) - 1)
		l->buf[l->n++] = *s++;
}

static void put_u(struct line *l, unsigned long v)
{
	char d[24];
	int i = 0;
	do {
		d[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i && l->n < sizeof(l->buf) - 1)
		l->buf[l->n++] = d[--i];
}

static void put_hex(struct line *l, unsigned long v)
{
	static const char hex[] = "0123456789abcdef";
	char d[24];
	int i = 0;
	do {
		d[i++] = hex[v & 15];
		v >>= 4;
	} while (v);
	put(l, "0x");
	while (i && l->n < sizeof(l->buf) - 1)
		l->buf[l->n++] = d[--i];
}

static void put_who(struct line *l)
{
	put(l, "thread ");
	if (tls_name[0])
		put(l, tls_name);
	else
		put_u(l, (unsigned long)syscall(SYS_gettid));
	put(l, " (class ");
	put(l, tls_class >= 0 ? classes[tls_class].name : "none: its creator's filter");
	put(l, ")");
}

static void put_syscall(struct line *l, const siginfo_t *si)
{
	int nr = si->si_syscall;
	put(l, "syscall ");
	if (si->si_arch != AUDIT_ARCH_X86_64) {
		put_u(l, (unsigned)nr);
		put(l, " of a foreign ABI (arch ");
		put_hex(l, si->si_arch);
		put(l, ")");
		return;
	}
	if (nr >= 0 && nr < MAX_NR && names[nr])
		put(l, names[nr]);
	else
		put(l, "?");
	put(l, " (");
	put_u(l, (unsigned)nr);
	put(l, ")");
}

static void on_sigsys(int sig, siginfo_t *si, void *ucv)
{
	(void)sig;
	int saved_errno = errno;
	struct line l = { .n = 0 };
	if (mode == SANDBOX_ON) {
		put(&l, "vmm: error: seccomp: ");
		put_who(&l);
		put(&l, " made ");
		put_syscall(&l, si);
		put(&l, ", not in its allow-list: the VMM is stopped (--seccomp on)\n");
		(void)!write(STDERR_FILENO, l.buf, l.n);
		if (fatal_hook)
			fatal_hook();
		syscall(SYS_exit_group, SANDBOX_EXIT_STATUS);
	}
	/* log: the syscall returns -EPERM. */
	ucontext_t *uc = ucv;
	uc->uc_mcontext.gregs[REG_RAX] = -EPERM;
	atomic_fetch_add_explicit(&denied_total, 1, memory_order_relaxed);
	int nr = si->si_syscall;
	unsigned slot = si->si_arch == AUDIT_ARCH_X86_64 && nr >= 0 && nr < MAX_NR ? (unsigned)nr : MAX_NR;
	unsigned n = atomic_fetch_add_explicit(&denials[slot], 1, memory_order_relaxed) + 1;
	if ((n & (n - 1)) == 0) {   /* 1, 2, 4, 8...: bounded lines for any loop */
		put(&l, "vmm: warn: seccomp: ");
		put_who(&l);
		put(&l, " made ");
		put_syscall(&l, si);
		put(&l, ", not in its allow-list: denied with EPERM (--seccomp log; ");
		put_u(&l, n);
		put(&l, n == 1 ? " time)\n" : " times)\n");
		(void)!write(STDERR_FILENO, l.buf, l.n);
	}
	errno = saved_errno;
}

/* ---- building the filters ------------------------------------------------ */

static int add_rules(scmp_filter_ctx ctx, const struct rule *r)
{
	for (; r->name; r++) {
		if (r->nr < 0)
			continue;   /* not a syscall of this architecture */
		int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, r->nr, r->nargs,
						r->nargs ? r->arg : NULL);
		if (rc < 0) {
			log_msg(LOG_ERROR, "seccomp: rule for %s: %s", r->name, strerror(-rc));
			return -1;
		}
	}
	return 0;
}

static int add_ioctls(scmp_filter_ctx ctx, const struct ioctl_req *q)
{
	for (; q->name; q++) {
		int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
					  SCMP_A1(SCMP_CMP_MASKED_EQ, U32, q->req & U32));
		if (rc < 0) {
			log_msg(LOG_ERROR, "seccomp: rule for ioctl %s: %s", q->name, strerror(-rc));
			return -1;
		}
	}
	return 0;
}

/* The lists that make up class c's filter, NULL-terminated. */
static unsigned class_lists(enum sandbox_class c, unsigned flags, const struct rule **rules,
			    const struct ioctl_req **ioctls)
{
	unsigned n = 0, m = 0;
	rules[n++] = common_rules;
	rules[n++] = sanitizer_rules;
	if (c != SANDBOX_MAIN)
		rules[n++] = tcsets_rules;
	if (c == SANDBOX_MAIN) {
		for (unsigned k = 0; k < SANDBOX__N; k++) {
			rules[n++] = classes[k].rules;
			ioctls[m++] = classes[k].ioctls;
		}
		rules[n++] = sanitizer_main_rules;
		if (flags & SANDBOX_ALLOW_EXEC)
			rules[n++] = exec_rules;
	} else {
		rules[n++] = classes[c].rules;
		ioctls[m++] = classes[c].ioctls;
	}
	rules[n] = NULL;
	ioctls[m] = NULL;
	return n;
}

#define MAX_LISTS (SANDBOX__N + 8)

/* Mark in seen[] every syscall class c's filter allows (with some or any
 * arguments); returns how many. */
static unsigned allowed(enum sandbox_class c, unsigned flags, bool seen[MAX_NR])
{
	const struct rule *rules[MAX_LISTS];
	const struct ioctl_req *ioctls[MAX_LISTS];
	class_lists(c, flags, rules, ioctls);
	unsigned n = 0;
	memset(seen, 0, MAX_NR * sizeof(seen[0]));
	for (unsigned i = 0; rules[i]; i++)
		for (const struct rule *r = rules[i]; r->name; r++)
			if (r->nr >= 0 && r->nr < MAX_NR && !seen[r->nr]) {
				seen[r->nr] = true;
				n++;
			}
	return n;
}

static scmp_filter_ctx build(enum sandbox_class c, unsigned flags)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
	if (!ctx) {
		log_msg(LOG_ERROR, "seccomp: cannot create a filter (libseccomp)");
		return NULL;
	}
	const struct rule *rules[MAX_LISTS];
	const struct ioctl_req *ioctls[MAX_LISTS];
	class_lists(c, flags, rules, ioctls);
	int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_TRAP);
	/* The errno rules, for what the class does not allow (libseccomp
	 * refuses two actions for one syscall). */
	bool seen[MAX_NR];
	allowed(c, flags, seen);
	for (const struct errno_rule *e = errno_rules; !rc && e->name; e++)
		if (e->nr >= 0 && e->nr < MAX_NR && !seen[e->nr])
			rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO((uint32_t)e->err), e->nr, 0);
	if (rc) {
		log_msg(LOG_ERROR, "seccomp: %s", strerror(-rc));
		seccomp_release(ctx);
		return NULL;
	}
	for (unsigned i = 0; rules[i]; i++) {
		if (add_rules(ctx, rules[i]) < 0) {
			seccomp_release(ctx);
			return NULL;
		}
	}
	for (unsigned i = 0; ioctls[i]; i++) {
		if (add_ioctls(ctx, ioctls[i]) < 0) {
			seccomp_release(ctx);
			return NULL;
		}
	}
	return ctx;
}

/* Export ctx's BPF into *prog (malloc'd). */
static int export_bpf(scmp_filter_ctx ctx, struct sock_fprog *prog)
{
	int fd = memfd_create("vmm-seccomp", MFD_CLOEXEC);
	if (fd < 0) {
		log_msg(LOG_ERROR, "seccomp: memfd_create: %s", strerror(errno));
		return -1;
	}
	int rc = seccomp_export_bpf(ctx, fd);
	off_t size = rc ? -1 : lseek(fd, 0, SEEK_END);
	if (rc || size <= 0 || size % (off_t)sizeof(struct sock_filter) ||
	    size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS) {
		log_msg(LOG_ERROR, "seccomp: cannot export the filter: %s",
			rc ? strerror(-rc) : "bad size");
		close(fd);
		return -1;
	}
	struct sock_filter *f = malloc((size_t)size);
	if (!f || pread(fd, f, (size_t)size, 0) != size) {
		log_msg(LOG_ERROR, "seccomp: cannot read the filter back");
		free(f);
		close(fd);
		return -1;
	}
	close(fd);
	prog->len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
	prog->filter = f;
	return 0;
}

/* Distinct syscalls allowed (with some or any arguments) and ioctl
 * requests in class c's filter; with list, their names. */
static void count(enum sandbox_class c, unsigned flags, unsigned *nsys, unsigned *nioctl,
		  FILE *list)
{
	const struct rule *rules[MAX_LISTS];
	const struct ioctl_req *ioctls[MAX_LISTS];
	class_lists(c, flags, rules, ioctls);
	bool seen[MAX_NR];
	const struct ioctl_req *reqs[256];
	*nsys = allowed(c, flags, seen);
	*nioctl = 0;
	for (unsigned i = 0; ioctls[i]; i++)
		for (const struct ioctl_req *q = ioctls[i]; q->name; q++) {
			bool dup = false;
			for (unsigned j = 0; j < *nioctl && !dup; j++)
				dup = reqs[j]->req == q->req;
			if (!dup && *nioctl < sizeof(reqs) / sizeof(reqs[0]))
				reqs[(*nioctl)++] = q;
		}
	if (!list)
		return;
	fprintf(list, "  syscalls:");
	for (int nr = 0; nr < MAX_NR; nr++)
		if (seen[nr]) {
			char *s = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
			fprintf(list, " %s", s ? s : "?");
			free(s);
		}
	fprintf(list, "\n  ioctls:");
	for (unsigned j = 0; j < *nioctl; j++)
		fprintf(list, " %s", reqs[j]->name);
	fprintf(list, "\n  failing without a trap:");
	for (const struct errno_rule *e = errno_rules; e->name; e++)
		if (e->nr >= 0 && e->nr < MAX_NR && !seen[e->nr])
			fprintf(list, " %s (%s)", e->name, strerror(e->err));
	fprintf(list, "\n");
}

int sandbox_print_info(FILE *f, unsigned flags, bool verbose)
{
	fprintf(f, "seccomp allow-lists per thread class (%s build; main's includes every other class's,\n"
		"which its threads inherit; ioctl is one of the syscalls, ioctls counts its requests,\n"
		"every class may also ioctl(0, TCSETS) to restore the terminal; clone3 fails with\n"
		"ENOSYS everywhere, open/openat with EACCES where not allowed: --verbose)\n",
#ifdef VMM_SANITIZED
		"sanitizer"
#else
		"plain"
#endif
	);
	fprintf(f, "%-10s %8s %6s %6s\n", "class", "syscalls", "ioctls", "bpf");
	int ret = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned c = 0; c < SANDBOX__N; c++) {
			bool exec = pass == 1;
			if (exec && c != SANDBOX_MAIN)
				continue;
			unsigned fl = exec ? flags | SANDBOX_ALLOW_EXEC : flags;
			unsigned nsys, nioctl;
			count((enum sandbox_class)c, fl, &nsys, &nioctl, NULL);
			scmp_filter_ctx ctx = build((enum sandbox_class)c, fl);
			struct sock_fprog p = { 0 };
			if (!ctx || export_bpf(ctx, &p) < 0)
				ret = -1;
			if (ctx)
				seccomp_release(ctx);
			char name[32];
			snprintf(name, sizeof(name), "%s%s", classes[c].name, exec ? "+exec" : "");
			fprintf(f, "%-10s %8u %6u %6u%s\n", name, nsys, nioctl, (unsigned)p.len,
				exec ? "  (--on-reboot restart without the API: execve)" : "");
			free(p.filter);
			if (verbose)
				count((enum sandbox_class)c, fl, &nsys, &nioctl, f);
		}
	}
	return ret;
}

/* ---- init and install ------------------------------------------------------ */

int sandbox_init(enum sandbox_mode m, unsigned flags)
{
	mode = m;
	const char *mark = getenv(REEXEC_ENV);
	if (mark) {
		main_inherited = !strcmp(mark, sandbox_mode_name(m)) && prctl(PR_GET_SECCOMP) == 2;
		unsetenv(REEXEC_ENV);
	}
	if (m == SANDBOX_OFF)
		return 0;
	const char *st = getenv(SELFTEST_ENV);
	for (unsigned c = 0; st && c < SANDBOX__N; c++)
		if (!strcmp(st, classes[c].name))
			selftest_class = (int)c;
	for (int nr = 0; nr < MAX_NR; nr++)
		names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
	for (unsigned c = 0; c < SANDBOX__N; c++) {
		scmp_filter_ctx ctx = build((enum sandbox_class)c, flags);
		if (!ctx)
			return -1;
		int rc = export_bpf(ctx, &progs[c]);
		seccomp_release(ctx);
		if (rc < 0)
			return -1;
		unsigned nsys, nioctl;
		count((enum sandbox_class)c, flags, &nsys, &nioctl, NULL);
		log_msg(LOG_DEBUG, "seccomp %s: class %s: %u syscalls, %u ioctl requests, %u BPF instructions",
			sandbox_mode_name(m), classes[c].name, nsys, nioctl, (unsigned)progs[c].len);
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigsys;
	sa.sa_flags = SA_SIGINFO;
	sigfillset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0) {
		log_msg(LOG_ERROR, "seccomp: sigaction(SIGSYS): %s", strerror(errno));
		return -1;
	}
	ready = true;
	return 0;
}

void sandbox_before_exec(void)
{
	if (main_installed)
		setenv(REEXEC_ENV, sandbox_mode_name(mode), 1);
}

/* VMM_SECCOMP_SELFTEST=<class>: the first thread of that class makes one
 * syscall no list has (getsid), once its filter is on. */
static void selftest(enum sandbox_class c)
{
	if ((int)c != selftest_class || atomic_exchange(&selftest_done, true))
		return;
	errno = 0;
	long r = syscall(SYS_getsid, 0);
	int e = errno;
	if (r == -1 && e == EPERM)
		log_msg(LOG_WARN, "seccomp selftest: %s thread %s: getsid() denied with EPERM",
			classes[c].name, tls_name);
	else
		log_msg(LOG_ERROR, "seccomp selftest: %s thread %s: getsid() returned %ld (%s): not filtered",
			classes[c].name, tls_name, r, e ? strerror(e) : "no error");
}

void sandbox_enter(enum sandbox_class c)
{
	if (!ready || (unsigned)c >= SANDBOX__N)
		return;
	if (c == SANDBOX_MAIN)
		snprintf(tls_name, sizeof(tls_name), "main");
	else if (pthread_getname_np(pthread_self(), tls_name, sizeof(tls_name)) != 0)
		tls_name[0] = 0;
	tls_class = c;
	sigset_t sys;
	sigemptyset(&sys);
	sigaddset(&sys, SIGSYS);
	pthread_sigmask(SIG_UNBLOCK, &sys, NULL);
	if (c == SANDBOX_MAIN && main_inherited) {
		log_msg(LOG_DEBUG, "seccomp: the main thread's filter came across the re-exec");
	} else if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
		   syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &progs[c]) < 0) {
		int e = errno;
		tls_class = -1;
		log_msg(LOG_ERROR, "seccomp: cannot install the %s filter on thread %s: %s",
			classes[c].name, tls_name, strerror(e));
		if (mode == SANDBOX_ON)
			syscall(SYS_exit_group, EXIT_FAILURE);
		return;
	}
	if (c == SANDBOX_MAIN)
		main_installed = true;
	selftest(c);
}
