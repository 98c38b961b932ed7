# SPDX-License-Identifier: GPL-2.0-only
# tests/vmm/libvirt_lib.sh - sourced by tests that drive vmm through libvirt's
# Cloud Hypervisor driver (a libvirt built by scripts/libvirt-setup):
#   libvirt_start PREFIX VMM WORKDIR  start PREFIX/sbin/libvirtd with a
#                                     `cloud-hypervisor` (-> VMM) on its PATH,
#                                     logging to WORKDIR/libvirtd.log
#   libvirt_stop                      stop it (and the VMMs it left running)
#   virsh_ch ARGS...                  PREFIX/bin/virsh -c ch:///system ARGS
#   libvirt_test_begin NAME VMM       a test's scaffolding: $tmp (a scratch
#                                     directory, kept when a check failed),
#                                     $wrapper (a `cloud-hypervisor` that
#                                     execs VMM, logging to $vmmlog), the
#                                     counters and ok/bad/check/note, now_ms,
#                                     and the traps (kill ${bg[@]}, stop
#                                     libvirtd, remove $tmp)
# After libvirt_start: LIBVIRT_PREFIX, LIBVIRT_WORKDIR (libvirtd.log is there)
# and LIBVIRT_PID.  libvirtd runs under a small reaper (python3, a child
# subreaper, as systemd is on a real host): libvirt 11.3 daemonizes its VMMs,
# whose parent is then the reaper, which reaps them as they exit -- the
# machine's pid 1 may not (LIBVIRT_REAPER is its pid).  A test should `trap libvirt_stop EXIT`.  The daemon's
# sockets are at the prefix's fixed PREFIX/var/run/libvirt, so one daemon per
# prefix at a time.  The binaries carry their prefix's library path
# (RUNPATH), so no LD_LIBRARY_PATH is needed.

# shellcheck disable=SC2034  # LIBVIRT_WORKDIR is for the tests
LIBVIRT_PREFIX='' LIBVIRT_WORKDIR='' LIBVIRT_PID='' LIBVIRT_REAPER=''
# Set by libvirt_test_begin, for the tests.
# shellcheck disable=SC2034
tmp='' vmmlog='' wrapper='' fail=0 checks=0 bg=()

# The reaper: PR_SET_CHILD_SUBREAPER, fork+exec argv[2:], the child's pid in
# argv[1], SIGTERM/SIGINT forwarded to it, every child reaped; it exits once
# the daemon has exited and no orphan is left (or 10 s later).
_libvirt_reaper='
import ctypes, os, signal, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(pid))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
def fwd(sig, frame):
    try:
        os.kill(pid, sig)
    except OSError:
        pass
signal.signal(signal.SIGTERM, fwd)
signal.signal(signal.SIGINT, fwd)
end = None
while True:
    try:
        p, _ = os.waitpid(-1, os.WNOHANG if end else 0)
    except ChildProcessError:
        break
    except InterruptedError:
        continue
    if p == pid:
        end = time.time() + 10
    if end and p == 0:
        if time.time() > end:
            break
        time.sleep(0.05)
'


# _libvirt_alive PID - the process exists and is not a zombie.
_libvirt_alive() {
	local stat
	read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
	stat=${stat##*) }
	[ "${stat%% *}" != Z ]
}

# _libvirt_children PID - the pids of PID's child processes.
_libvirt_children() {
	local f stat
	for f in /proc/[0-9]*/stat; do
		read -r stat 2>/dev/null <"$f" || continue
		stat=${stat##*) }	# state ppid ...
		stat=${stat#* }
		[ "${stat%% *}" != "$1" ] || { f=${f#/proc/}; echo "${f%/stat}"; }
	done
}

# _libvirt_end PID... - SIGTERM, up to 5 s, then SIGKILL; reaps our children.
_libvirt_end() {
	local pid i
	kill -TERM "$@" 2>/dev/null || true
	for pid in "$@"; do
		for ((i = 0; i < 50; i++)); do
			_libvirt_alive "$pid" || break
			sleep 0.1
		done
		if _libvirt_alive "$pid"; then
			echo "libvirt_lib: pid $pid ignored SIGTERM for 5 s: SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
}

# _libvirt_clean_run PREFIX - remove the sockets and pid files a killed
# daemon leaves behind.
_libvirt_clean_run() {
	local run=$1/var/run
	rm -f "$run"/libvirt/libvirt-sock "$run"/libvirt/libvirt-sock-ro \
		"$run"/libvirt/libvirt-admin-sock "$run"/libvirtd.pid "$run"/libvirt/ch/*.pid
}

# libvirt_start PREFIX VMM WORKDIR
libvirt_start() {
	local prefix=$1 vmm=$2 dir=$3 sock=$1/var/run/libvirt/libvirt-sock i
	if [ -n "$LIBVIRT_PID" ]; then
		echo "libvirt_start: libvirtd (pid $LIBVIRT_PID) is running: libvirt_stop first" >&2
		return 1
	fi
	if [ ! -x "$prefix/sbin/libvirtd" ] || [ ! -x "$vmm" ]; then
		echo "libvirt_start: no $prefix/sbin/libvirtd or no executable $vmm" >&2
		return 1
	fi
	mkdir -p "$dir/bin" || return 1
	dir=$(cd "$dir" && pwd)
	ln -sfn "$(realpath "$vmm")" "$dir/bin/cloud-hypervisor" || return 1
	cat >"$dir/libvirtd.conf" <<-EOF || return 1
		log_filters="1:ch 1:util.command"
		log_outputs="1:file:$dir/libvirtd.log"
	EOF
	_libvirt_clean_run "$prefix"
	rm -f "$dir/libvirtd.pid"
	PATH=$dir/bin:$PATH python3 -c "$_libvirt_reaper" "$dir/libvirtd.pid" \
		"$prefix/sbin/libvirtd" --config "$dir/libvirtd.conf" \
		</dev/null >"$dir/libvirtd.out" 2>&1 &
	LIBVIRT_REAPER=$! LIBVIRT_PREFIX=$prefix LIBVIRT_WORKDIR=$dir
	for ((i = 0; i < 50; i++)); do
		[ -s "$dir/libvirtd.pid" ] && break
		sleep 0.02
	done
	LIBVIRT_PID=$(cat "$dir/libvirtd.pid" 2>/dev/null)
	LIBVIRT_PID=${LIBVIRT_PID:-$LIBVIRT_REAPER}
	for ((i = 0; i < 100; i++)); do
		[ -S "$sock" ] && return 0
		_libvirt_alive "$LIBVIRT_PID" || break
		sleep 0.1
	done
	echo "libvirt_start: FAILED: no $sock after $((i / 10)) s" \
		"(libvirtd $(_libvirt_alive "$LIBVIRT_PID" && echo running || echo exited)):" >&2
	tail -n 20 "$dir/libvirtd.out" "$dir/libvirtd.log" 2>/dev/null | sed 's/^/    /' >&2
	libvirt_stop
	return 1
}

# libvirt_stop - stop the daemon libvirt_start started, then the VMMs it
# leaves running (libvirt 9.0's ch driver neither stops nor finds them again).
libvirt_stop() {
	local kids= orphans=
	[ -n "$LIBVIRT_PID" ] || return 0
	_libvirt_alive "$LIBVIRT_PID" && kids=$(_libvirt_children "$LIBVIRT_PID")
	[ -z "$LIBVIRT_REAPER" ] || orphans=$(_libvirt_children "$LIBVIRT_REAPER" | grep -vx "$LIBVIRT_PID")
	_libvirt_end "$LIBVIRT_PID"
	# shellcheck disable=SC2086
	[ -z "$kids$orphans" ] || _libvirt_end $kids $orphans
	[ -z "$LIBVIRT_REAPER" ] || _libvirt_end "$LIBVIRT_REAPER"
	_libvirt_clean_run "$LIBVIRT_PREFIX"
	LIBVIRT_PID= LIBVIRT_REAPER=
}

# virsh_ch ARGS... - virsh on the ch driver of the daemon libvirt_start started.
virsh_ch() {
	"${LIBVIRT_PREFIX:?virsh_ch: libvirt_start first}/bin/virsh" -c ch:///system "$@"
}

# libvirt_test_begin NAME VMM - see the top of this file.
libvirt_test_begin() {
	tmp=$(mktemp -d "/tmp/$1.XXXXXX")
	chmod 755 "$tmp"
	vmmlog=$tmp/vmm.log
	wrapper=$tmp/cloud-hypervisor-logged
	cat >"$wrapper" <<EOF
#!/bin/bash
echo "=== pid \$\$ \$(date +%T.%N | cut -c1-12): cloud-hypervisor \$*" >>'$vmmlog'
exec -a cloud-hypervisor '$2' "\$@" 2>>'$vmmlog'
EOF
	chmod 755 "$wrapper"
	fail=0 checks=0 bg=()
	trap _libvirt_test_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}
ok() { checks=$((checks + 1)); echo "ok: $*"; }
bad() { checks=$((checks + 1)); echo "FAIL: $*"; fail=1; }
# check DESCRIPTION COMMAND... - ok if the command succeeds.
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
note() { echo "NOTE: $*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
_libvirt_test_cleanup() {
	local p
	for p in "${bg[@]}"; do kill "$p" 2>/dev/null; done
	libvirt_stop
	if [ "$fail" = 0 ]; then rm -rf "$tmp"; else echo "(logs kept in $tmp)"; fi
}

# ---- helpers the libvirt tests share (each may rely on the test's own vsh,
# ch_pids) ----
alive() { _libvirt_alive "$1"; }
ch_count() { ch_pids | wc -l; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
# listed DOM - virsh list --all shows DOM.
listed() { vsh list --all --name 2>/dev/null | grep -qx "$1"; }
# one TEXT - TEXT on one line.
one() { tr -s '\n' ' ' <<<"$1" | sed 's/ *$//'; }
# settle_fds PID WANT - wait up to 3 s for PID's fd count to come back to
# WANT (virsh's connection is closed by libvirtd after virsh exits); prints it.
settle_fds() {
	local i n
	for ((i = 0; i < 30; i++)); do
		n=$(fd_count "$1")
		[ "$n" -le "$2" ] && break
		sleep 0.1
	done
	echo "$n"
}
ticks() { grep -c "exitloop: tick" "$1" 2>/dev/null; }
timing() { T[$1]=$2; order+=("$1"); echo "time: $1 $2 ms"; }
vcpu_names() { cat /proc/"$1"/task/*/comm 2>/dev/null | grep '^vcpu' | sort | tr '\n' ' '; }
