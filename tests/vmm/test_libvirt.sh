#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# test_libvirt.sh VMM EXITLOOP_IMAGE [VERSION] - vmm driven by libvirt's
# Cloud Hypervisor driver (virsh -c ch:///system), VERSION 9.0 (the default)
# or 11.3 (or LIBVIRT_VERSION), the libvirt built by scripts/libvirt-setup
# VERSION (its prefix in VMM_LIBVIRT_PREFIX for 9.0, VMM_LIBVIRT11_PREFIX for
# 11.3, else the script is run here), our own libvirtd started by
# tests/vmm/libvirt_lib.sh with `cloud-hypervisor` -> VMM, the guest being the
# exitloop test image (it runs until stopped, prints "exitloop: tick K" about
# every second, and powers itself off when a 'q' is typed on its console).
# libvirt 9.0's known defects (LIBVIRT.md) are allowed with 9.0 only; with
# 11.3 the correct behaviour is asserted where 11.3 fixed them:
#   1. lifecycle: define (shut off), start (running, 2 vCPUs, the VMM a child
#      of libvirtd with threads vcpu0 and vcpu1, the guest's ticks on the pty
#      of `virsh ttyconsole`), suspend (paused: the vCPU threads use no CPU,
#      no ticks), resume (CPU time and ticks move again), shutdown (the VMM
#      exits; 11.3: the domain is "shut off" through the event monitor),
#      destroy and undefine (9.0's defects allowed), each step timed;
#      11.3: the VMM is daemonized with --event-monitor on libvirt's FIFO,
#      libvirtd's log shows our events (booted, paused, resumed, shutdown)
#      and `virsh event --all --loop --timeout` the domain's lifecycle;
#   2. a kernel path that does not exist: start fails, the reason names the
#      path, nothing left running, libvirtd still answers;
#   3. destroy of a running guest (persistent, then transient): the VMM is
#      gone within 1 s, libvirtd holds no more fds than before, no file left
#      under the prefix's var/ and etc/ or in /tmp;
#   4. 20 define/start/destroy cycles (libvirt 9.0's destroy drops the
#      definition; a destroyed transient domain would stay listed):
#      libvirtd's fds unchanged, no cloud-hypervisor left, MemAvailable not
#      down by more than 64 MiB (1 MiB a cycle past 64: the host is shared
#      and keeps a dying memory cgroup per domain), Shmem not up 16 MiB,
#      libvirtd's RSS growth and the cycle time printed (LIBVIRT_CYCLES
#      overrides the 20; 11.3 also undefines);
#   5. a guest that powers itself off ('q' on its console): the VMM exits;
#      11.3: domstate "shut off" (9.0: defect 5, the exit is not noticed).
# The daemon is restarted between groups (libvirt 9.0 keeps no definition
# across a restart and misses VMMs that died; see LIBVIRT.md), names are
# fresh per domain.  libvirt 9.0 puts the VMM's stdio on /dev/null, so the
# `cloud-hypervisor` libvirtd runs is a two-line wrapper that execs VMM (same
# pid, argv[0] cloud-hypervisor) with its stderr appended to a log here.
# Every check prints ok/FAIL; exit 1 if any failed, with the tails of the
# libvirtd and VMM logs.  Without /dev/kvm or root: skipped loudly (77).
set -u
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	echo "usage: $0 VMM EXITLOOP_IMAGE [9.0|11.3]" >&2
	exit 2
fi
vmm=$(realpath "$1")
img=$(realpath "$2")
version=${3:-${LIBVIRT_VERSION:-9.0}}
case $version in
9.0) v11=0; prefix=${VMM_LIBVIRT_PREFIX:-} ;;
11.3) v11=1; prefix=${VMM_LIBVIRT11_PREFIX:-} ;;
*) echo "usage: $0 VMM EXITLOOP_IMAGE [9.0|11.3]" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm ]; then
	echo "SKIP: /dev/kvm is missing or not accessible: the libvirt tests did NOT run" >&2
	exit 77
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: not root: libvirtd (ch:///system) cannot run: the libvirt tests did NOT run" >&2
	exit 77
fi
if ! command -v python3 >/dev/null; then
	# shellcheck source=../../scripts/lib.sh
	. "$here/../../scripts/lib.sh"
	ensure_packages python3 || { echo "FAIL: python3 is needed"; exit 1; }
fi
if [ -z "$prefix" ]; then
	echo "no libvirt $version prefix in the environment: running scripts/libvirt-setup $version" >&2
	prefix=$("$here/../../scripts/libvirt-setup" "$version" | tail -n 1)
fi
if [ -z "$prefix" ] || [ ! -x "$prefix/sbin/libvirtd" ] || [ ! -x "$prefix/bin/virsh" ]; then
	echo "FAIL: no libvirt with the ch driver (prefix '$prefix'): scripts/libvirt-setup failed?"
	exit 1
fi
# shellcheck source=libvirt_lib.sh
. "$here/libvirt_lib.sh"

libvirt_test_begin test_libvirt "$vmm"
# vsh ARGS... - virsh on our daemon, like virsh_ch, but never hanging.
vsh() { timeout -k 5 60 "$LIBVIRT_PREFIX/bin/virsh" -c ch:///system "$@"; }
domstate() { vsh domstate "$1" 2>&1 | head -n 1; }
# wait_state DOM STATE SECONDS - poll domstate; true once it says STATE.
wait_state() {
	local i
	for ((i = 0; i < $3 * 20; i++)); do
		[ "$(domstate "$1")" = "$2" ] && return 0
		sleep 0.05
	done
	return 1
}
# dom_xml NAME KERNEL - a domain's XML file (2 vCPUs, 64 MiB, pty console).
dom_xml() {
	cat >"$tmp/$1.xml" <<-EOF
		<domain type='kvm'>
		  <name>$1</name>
		  <memory unit='MiB'>64</memory>
		  <vcpu>2</vcpu>
		  <os>
		    <type arch='x86_64'>hvm</type>
		    <kernel>$2</kernel>
		  </os>
		  <devices>
		    <console type='pty'><target type='virtio'/></console>
		  </devices>
		</domain>
	EOF
	echo "$tmp/$1.xml"
}
ppid_of() { local s; read -r s 2>/dev/null <"/proc/$1/stat" || return 1; s=${s##*) }; s=${s#* }; echo "${s%% *}"; }
cmdline() { tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | sed 's/ $//'; }
# ch_pids - every cloud-hypervisor process (argv[0], or our wrapper before its
# exec: argv[1]), zombies excluded.
ch_pids() {
	local f p argv
	for f in /proc/[0-9]*/cmdline; do
		p=${f#/proc/}; p=${p%/cmdline}
		mapfile -d '' -n 2 argv 2>/dev/null <"$f" || continue
		[ "${#argv[@]}" -gt 0 ] || continue
		case "${argv[0]##*/}|${argv[1]:-}" in
		cloud-hypervisor\|* | *\|*/cloud-hypervisor) alive "$p" && echo "$p" ;;
		esac
	done
}
# lv_kids [all] - libvirtd's children (with "all": zombies too).
lv_kids() {
	local p
	for p in $(_libvirt_children "$LIBVIRT_PID"); do
		[ "${1:-}" = all ] || alive "$p" && echo "$p"
	done
}
# vmm_pid DOM - the VMM of a running domain: the pid of libvirt's status file
# (PREFIX/var/run/libvirt/ch/DOM.xml; libvirt 9.0 writes none), else
# libvirtd's cloud-hypervisor child (one domain runs at a time here).
vmm_pid() {
	local f=$LIBVIRT_PREFIX/var/run/libvirt/ch/$1.xml p k
	p=$(sed -n "s/.*<domstatus[^>]* pid='\([0-9]*\)'.*/\1/p" "$f" 2>/dev/null | head -n 1)
	# libvirt 11.3: the pidfile of the VMM it daemonized.
	[ -n "$p" ] || p=$(cat "$LIBVIRT_PREFIX/var/run/libvirt/ch/$1.pid" 2>/dev/null)
	if [ -z "$p" ]; then
		for k in $(lv_kids); do
			cmdline "$k" | grep -q cloud-hypervisor && p=$k
		done
	fi
	echo "$p"
}
vcpu_ticks() { # PID -> utime+stime of its vcpuN threads
	local t sum=0 f
	for t in /proc/$1/task/*; do
		grep -q '^vcpu' "$t/comm" 2>/dev/null || continue
		read -r f 2>/dev/null <"$t/stat" || continue
		set -- ${f##*) }
		sum=$((sum + ${12} + ${13}))
	done
	echo $sum
}
# zombie_vmms - zombie VMM processes anywhere (any parent).
zombie_vmms() {
	local f st n=0
	for f in /proc/[0-9]*/stat; do
		read -r st 2>/dev/null <"$f" || continue
		case $st in *" (vmm) Z "* | *" (cloud-hypervisor) Z "*) n=$((n + 1)) ;; esac
	done
	echo $n
}
# clean_cgroups - remove the cgroups libvirt 11.3 leaves behind for our
# domains (its removal gives up while the VMM is still exiting); prints
# how many there were.
clean_cgroups() {
	local d s n=0
	for d in /sys/fs/cgroup/*/machine/ch-*vmmtest-$$*.libvirt-ch /sys/fs/cgroup/machine/ch-*vmmtest-$$*.libvirt-ch; do
		[ -d "$d" ] || continue
		for s in "$d"/*/; do [ -d "$s" ] && rmdir "$s" 2>/dev/null; done
		rmdir "$d" 2>/dev/null && n=$((n + 1))
	done
	echo $n
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
memavail_kb() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }
shmem_kb() { awk '/^Shmem:/ {print $2}' /proc/meminfo; }
memcgs() { awk '$1 == "memory" {print $3}' /proc/cgroups; }
# wait_gone PID SECONDS [zombie-ok] - true once PID has exited (a zombie
# counts with zombie-ok); sets MS to the milliseconds waited.
# shellcheck disable=SC2034  # MS is for the callers
wait_gone() {
	local i t0; t0=$(now_ms)
	for ((i = 0; i < $2 * 100; i++)); do
		if [ "${3:-}" = zombie-ok ]; then alive "$1" || break
		else [ -d "/proc/$1" ] || break; fi
		sleep 0.01
	done
	MS=$(($(now_ms) - t0))
	if [ "${3:-}" = zombie-ok ]; then ! alive "$1"; else [ ! -d "/proc/$1" ]; fi
}
# gone_or_shutoff DOM WHY - DOM is gone from list --all, or (libvirt 9.0's
# defect WHY) listed "shut off".
gone_or_shutoff() {
	local s
	if ! listed "$1"; then ok "$1 is gone from list --all"; return; fi
	s=$(domstate "$1")
	check "$1 left in list --all as '$s' (libvirt 9.0, $2: allowed if 'shut off')" [ "$s" = "shut off" ]
}
showtail() { # FILE [LINES]
	# (libvirt's log has blank lines; libvirtd.out may lack a last newline)
	if [ -s "$1" ]; then { tail -n "${2:-25}" "$1"; echo; } | sed '/^$/d; s/^/    /'
	else echo "    (empty or missing)"; fi
}
start_daemon() { # GROUP
	libvirt_start "$prefix" "$wrapper" "$tmp/$1" || { bad "libvirtd did not start"; return 1; }
	vsh list --all >/dev/null 2>"$tmp/err" || { bad "virsh list: $(cat "$tmp/err")"; return 1; }
	echo "libvirtd pid $LIBVIRT_PID, log $tmp/$1/libvirtd.log"
}
stop_daemon() {
	# The logs of the daemons of every group are kept for the failure report.
	libvirt_stop
}

declare -A T
order=()

ch0=$(ch_count)
[ "$ch0" = 0 ] || note "$ch0 cloud-hypervisor process(es) running before the test: $(ch_pids | tr '\n' ' ')"
echo "libvirt prefix: $prefix ($("$prefix/sbin/libvirtd" --version))"
echo "VMM: $vmm; cloud-hypervisor --version: $(env -i LC_ALL=C bash -c "exec -a cloud-hypervisor '$vmm' --version" | head -n 1)"

# ---------------------------------------------------------------------------
echo "== 1. lifecycle: define, start, console, suspend, resume, shutdown, destroy, undefine"
if start_daemon g1; then
	dom=vmmtest-$$-1
	xml=$(dom_xml "$dom" "$img")
	evpid=
	if [ $v11 = 1 ]; then
		# libvirt's own domain events, for the whole group (bounded).
		timeout -k 5 150 "$LIBVIRT_PREFIX/bin/virsh" -c ch:///system event --all --loop \
			--timeout 140 >"$tmp/events1" 2>&1 &
		evpid=$!
		bg+=("$evpid")
		sleep 0.5
	fi
	t0=$(now_ms)
	out=$(vsh define "$xml" 2>&1); st=$?
	timing define $(($(now_ms) - t0))
	check "define $dom: $(one "$out")" [ $st = 0 ]
	out=$(vsh dominfo "$dom" 2>&1)
	check "dominfo: State: shut off" grep -Eq '^State: +shut off' <<<"$out"

	t0=$(now_ms)
	out=$(vsh start "$dom" 2>&1); st=$?
	if [ $st = 0 ] && wait_state "$dom" running 10; then st2=0; else st2=1; fi
	timing start $(($(now_ms) - t0))
	check "start: $(one "$out")" [ $st = 0 ]
	check "domstate: running" [ $st2 = 0 ]
	out=$(vsh dominfo "$dom" 2>&1)
	check "dominfo: CPU(s): 2, State: running" eval 'grep -Eq "^CPU\(s\): +2$" <<<"$out" && grep -Eq "^State: +running" <<<"$out"'
	pid=$(vmm_pid "$dom")
	if [ $v11 = 0 ]; then
		check "the VMM: pid ${pid:-?}, a child of libvirtd ($LIBVIRT_PID), '$(cmdline "${pid:-0}")'" \
			eval '[ -n "$pid" ] && alive "$pid" && [ "$(ppid_of "$pid")" = "$LIBVIRT_PID" ] &&
				cmdline "$pid" | grep -q "^cloud-hypervisor --api-socket fd=[0-9]"'
	else
		fifo=$LIBVIRT_PREFIX/var/run/libvirt/ch/$dom-event-monitor-fifo
		check "the VMM: pid ${pid:-?} (libvirt's pidfile), daemonized (parent $(ppid_of "${pid:-0}"), not libvirtd $LIBVIRT_PID), '$(cmdline "${pid:-0}")'" \
			eval '[ -n "$pid" ] && alive "$pid" && [ "$(ppid_of "$pid")" != "$LIBVIRT_PID" ] &&
				[ "$(cmdline "$pid" | sed "s/fd=[0-9]*/fd=N/")" = "cloud-hypervisor --api-socket fd=N --event-monitor path=$fifo" ]'
		check "its event monitor is libvirt's FIFO, open for writing" \
			eval '[ -p "$fifo" ] && ls -l /proc/$pid/fd 2>/dev/null | grep -qF -- "-> $fifo"'
	fi
	pid=${pid:-0}
	check "its threads include vcpu0 and vcpu1 ($(vcpu_names "$pid"))" [ "$(vcpu_names "$pid")" = "vcpu0 vcpu1 " ]
	pty=$(vsh ttyconsole "$dom" 2>&1)
	check "ttyconsole: $pty is a pty" [ -c "$pty" ]
	con=$tmp/console1
	: >"$con"
	if [ -c "$pty" ]; then
		stty -F "$pty" raw -echo 2>/dev/null	# no echo back into the guest
		python3 "$here/api_helper.py" ptycat "$pty" "$con" &
		catpid=$!
		bg+=("$catpid")
	fi
	for ((i = 0; i < 100; i++)); do [ "$(ticks "$con")" -gt 0 ] && break; sleep 0.1; done
	check "the console shows the guest's ticks ($(grep -m1 -o 'exitloop: tick [0-9]*' "$con"))" grep -q "exitloop: tick" "$con"
	grep -q "exitloop: start (2 vcpus, 64 MiB)" "$con" && ok "the console shows 'exitloop: start (2 vcpus, 64 MiB)'"

	t0=$(now_ms)
	out=$(vsh suspend "$dom" 2>&1); st=$?
	timing suspend $(($(now_ms) - t0))
	check "suspend: $(one "$out")" [ $st = 0 ]
	check "domstate: paused" [ "$(domstate "$dom")" = paused ]
	sleep 0.3
	c1=$(vcpu_ticks "$pid"); n1=$(ticks "$con")
	sleep 1.2
	c2=$(vcpu_ticks "$pid"); n2=$(ticks "$con")
	check "paused: vCPU threads use no CPU (ticks $c1 -> $c2) and the console no new tick ($n1 -> $n2)" \
		[ "$c1" = "$c2" -a "$n1" = "$n2" ]

	t0=$(now_ms)
	out=$(vsh resume "$dom" 2>&1); st=$?
	timing resume $(($(now_ms) - t0))
	check "resume: $(one "$out")" [ $st = 0 ]
	check "domstate: running" [ "$(domstate "$dom")" = running ]
	sleep 1
	c3=$(vcpu_ticks "$pid")
	for ((i = 0; i < 50; i++)); do [ "$(ticks "$con")" -gt "$n2" ] && break; sleep 0.1; done
	n3=$(ticks "$con")
	check "resumed: vCPU threads run again (ticks $c2 -> $c3), new ticks on the console ($n2 -> $n3)" \
		[ "$c3" -gt "$c2" -a "$n3" -gt "$n2" ]

	t0=$(now_ms)
	out=$(vsh shutdown "$dom" 2>&1); st=$?
	wait_gone "$pid" 10 zombie-ok; st2=$?
	timing shutdown $(($(now_ms) - t0))
	check "shutdown: $(one "$out")" [ $st = 0 ]
	check "after shutdown the VMM (pid $pid) exits ($([ -d /proc/$pid ] && echo "a zombie of libvirtd until destroy" || echo gone))" [ $st2 = 0 ]
	[ -n "${catpid:-}" ] && { wait_gone "$catpid" 2; kill "$catpid" 2>/dev/null; wait "$catpid" 2>/dev/null; }
	if [ $v11 = 1 ]; then
		wait_state "$dom" "shut off" 10
		check "domstate after shutdown: shut off (the VMM's shutdown event; 9.0 said 'in shutdown')" \
			[ "$(domstate "$dom")" = "shut off" ]
		out=$(vsh destroy "$dom" 2>&1); st=$?
		check "destroy of the shut-off domain fails as it should: $(one "$out")" \
			eval '[ $st != 0 ] && grep -qi "not running" <<<"$out"'
		check "after destroy: the VMM (pid $pid) is gone, reaped" wait_gone "$pid" 2
		out=$(vsh undefine "$dom" 2>&1); st=$?
		check "undefine: $(one "$out")" [ $st = 0 ]
		check "$dom is gone from list --all" eval '! listed "$dom"'
		check "no cloud-hypervisor process left ($(ch_count), before the test: $ch0)" \
			[ "$(ch_count)" -le "$ch0" ]
		# Our events, as libvirtd's ch driver read them from the FIFO.
		l=$tmp/g1/libvirtd.log
		for e in vmm:starting vm:booting vm:booted vm:pausing vm:paused vm:resuming vm:resumed vm:shutdown; do
			grep -q "$dom: Source: ${e%%:*}, Event: ${e#*:}," "$l" || { bad "libvirtd did not read event $e from the FIFO"; e=; break; }
		done
		[ -z "$e" ] || ok "libvirtd read our events from the FIFO: vmm starting, vm booting, booted, pausing, paused, resuming, resumed, shutdown"
		s=$(grep -c "Invalid JSON\|Unknown event\|Failed to process" "$l")
		check "no event libvirtd could not parse or did not know ($s)" [ "$s" = 0 ]
		# libvirt's own events (11.3's ch driver raises Defined, Started,
		# Stopped on destroy, Undefined; none for suspend/resume, nor for a
		# stop it learns from the event monitor).
		kill "$evpid" 2>/dev/null; wait "$evpid" 2>/dev/null
		echo "virsh event --all --loop said:"; sed 's/^/    /' "$tmp/events1"
		ev=$(grep "for domain '$dom'" "$tmp/events1" | sed 's/.*: //' | tr '\n' ',')
		check "virsh event: the domain's lifecycle ($ev)" \
			eval 'grep -q "Defined Added,Started Booted,.*Undefined Removed" <<<"$ev"'
	else
		s=$(domstate "$dom")
		case $s in
		"shut off") ok "domstate after shutdown: shut off" ;;
		"in shutdown") ok "domstate after shutdown: in shutdown (libvirt 9.0 defect 1)" ;;
		*) bad "domstate after shutdown: $s" ;;
		esac
		out=$(vsh destroy "$dom" 2>&1); st=$?
		if [ $st = 0 ]; then ok "destroy: $(one "$out")"
		else ok "destroy failed, allowed (libvirt 9.0 defects 1/2): $(one "$out")"; fi
		check "after destroy: the VMM (pid $pid) is gone, reaped" wait_gone "$pid" 2
		out=$(vsh undefine "$dom" 2>&1); st=$?
		if [ $st = 0 ]; then ok "undefine: $(one "$out")"
		elif grep -qi "failed to get domain\|not found\|no domain" <<<"$out"; then
			ok "undefine failed, allowed (libvirt 9.0 defect 2: destroy removed the definition): $(one "$out")"
		else bad "undefine: $(one "$out")"; fi
		gone_or_shutoff "$dom" "defect 3"
		check "no cloud-hypervisor child of libvirtd left" [ -z "$(lv_kids)" ]
	fi
	stop_daemon
fi

# ---------------------------------------------------------------------------
echo "== 2. a kernel that does not exist: start fails, nothing left running"
if start_daemon g2; then
	dom=vmmtest-$$-2
	nokernel=$tmp/no-such-kernel
	xml=$(dom_xml "$dom" "$nokernel")
	n0=$(ch_count)
	out=$(vsh define "$xml" 2>&1); st=$?
	check "define with <kernel>$nokernel</kernel>: $(one "$out")" [ $st = 0 ]
	t0=$(now_ms)
	out=$(vsh start "$dom" 2>&1); st=$?
	ms=$(($(now_ms) - t0))
	echo "virsh start said (exit $st, $ms ms):"
	sed 's/^/    /' <<<"$out"
	check "start fails (exit $st)" [ $st != 0 ]
	vlog=$(grep -F "$nokernel" "$vmmlog" | tail -n 1)
	if grep -qF "$nokernel" <<<"$out"; then
		ok "virsh's error names the kernel path"
	elif [ -n "$vlog" ]; then
		ok "the reason names the kernel path, in the VMM's log (libvirt $version does not relay the VMM's error): ${vlog}"
	else
		bad "neither virsh's error nor the VMM's log names $nokernel"
	fi
	for ((i = 0; i < 40; i++)); do [ "$(ch_count)" -le "$n0" ] && [ -z "$(lv_kids)" ] && break; sleep 0.05; done
	check "nothing left running: $(ch_count) cloud-hypervisor processes (before: $n0), libvirtd's children: '$(lv_kids all | tr '\n' ' ')'" \
		[ "$(ch_count)" -le "$n0" -a -z "$(lv_kids)" ]
	[ -z "$(lv_kids all)" ] || note "libvirtd has zombie children: $(lv_kids all | tr '\n' ' ')"
	check "domstate: shut off" [ "$(domstate "$dom")" = "shut off" ]
	out=$(vsh version 2>&1); st=$?
	check "libvirtd still answers (virsh version: $(grep -i 'running hypervisor' <<<"$out"))" [ $st = 0 ]
	out=$(vsh undefine "$dom" 2>&1); st=$?
	check "undefine: $(one "$out")" [ $st = 0 ]
	# The daemon still starts a good guest.
	dom=vmmtest-$$-2b
	out=$(vsh define "$(dom_xml "$dom" "$img")" 2>&1 && vsh start "$dom" 2>&1); st=$?
	check "then a good guest starts: $(one "$out")" eval '[ $st = 0 ] && [ "$(domstate "$dom")" = running ]'
	pid=$(vmm_pid "$dom")
	out=$(vsh destroy "$dom" 2>&1); st=$?
	[ $v11 = 0 ] || vsh undefine "$dom" >/dev/null 2>&1	# 11.3 keeps the definition
	check "and is destroyed: $(one "$out"), its VMM (pid ${pid:-?}) gone" \
		eval '[ $st = 0 ] && [ -n "$pid" ] && wait_gone "$pid" 2 && ! listed "$dom"'
	stop_daemon
	# libcurl writes the bodies of libvirt's PUTs to the daemon's stdout.
	s=$(grep -F "$nokernel" "$tmp/g2/libvirtd.out" | tail -n 1)
	[ -z "$s" ] || note "libvirtd did get the VMM's answer, but only printed it on its stdout: $s"
fi

# ---------------------------------------------------------------------------
# run_listing - libvirt's state under the prefix (run dir, lib, log).
run_listing() { find "$prefix/var" "$prefix/etc" -mindepth 1 2>/dev/null | sort; }
# tmp_listing - /tmp's entries but ours (a line each, with its type).
tmp_listing() { find /tmp -mindepth 1 -maxdepth 1 ! -path "$tmp" -printf '%y %p\n' 2>/dev/null | sort; }
echo "== 3. destroy of a running guest: the VMM gone, no fd or file left behind"
if start_daemon g3; then
	dom=vmmtest-$$-3
	xml=$(dom_xml "$dom" "$img")
	fd0=$(fd_count "$LIBVIRT_PID")
	run0=$(run_listing)
	tmp0=$(tmp_listing)
	out=$(vsh define "$xml" 2>&1 && vsh start "$dom" 2>&1); st=$?
	check "define and start $dom: $(one "$out")" eval '[ $st = 0 ] && [ "$(domstate "$dom")" = running ]'
	pid=$(vmm_pid "$dom")
	check "the VMM runs: pid ${pid:-?}" eval '[ -n "$pid" ] && alive "$pid"'
	pid=${pid:-0}
	fdrun=$(fd_count "$LIBVIRT_PID")
	# destroy in the background: libvirt 11.3's own call outlasts the VMM
	# (it retries removing the domain's cgroups for up to a second).
	t0=$(now_ms)
	vsh destroy "$dom" >"$tmp/destroy.out" 2>&1 &
	dpid=$!
	wait_gone "$pid" 5; st2=$?
	ms=$(($(now_ms) - t0))
	wait "$dpid"; st=$?
	dms=$(($(now_ms) - t0))
	out=$(cat "$tmp/destroy.out")
	timing destroy $ms
	timing "virsh destroy" $dms
	check "destroy: $(one "$out")" [ $st = 0 ]
	check "the VMM (pid $pid) is gone ${ms} ms after virsh destroy began (< 1000; virsh returned after $dms ms)" [ $st2 = 0 -a "$ms" -lt 1000 ]
	if [ $v11 = 0 ]; then
		check "$dom is gone from list --all (libvirt 9.0 defect 2: destroy removes the definition)" eval '! listed "$dom"'
	else
		check "$dom stays defined, shut off (libvirt 9.0's defect 2 fixed)" [ "$(domstate "$dom")" = "shut off" ]
		out=$(vsh undefine "$dom" 2>&1); st=$?
		check "undefine: $(one "$out"), gone from list --all" eval '[ $st = 0 ] && ! listed "$dom"'
	fi
	# A transient domain the same way.
	dom=vmmtest-$$-3t
	out=$(vsh create "$(dom_xml "$dom" "$img")" 2>&1); st=$?
	check "create (transient) $dom: $(one "$out")" eval '[ $st = 0 ] && [ "$(domstate "$dom")" = running ]'
	pid=$(vmm_pid "$dom")
	t0=$(now_ms)
	out=$(vsh destroy "$dom" 2>&1); st=$?
	wait_gone "${pid:-0}" 5; st2=$?
	ms=$(($(now_ms) - t0))
	check "destroy: $(one "$out"); the VMM (pid ${pid:-?}) gone after $ms ms (< 1000)" \
		[ $st = 0 -a -n "$pid" -a $st2 = 0 -a "$ms" -lt 1000 ]
	gone_or_shutoff "$dom" "destroy keeps a transient domain, cf. defect 3"
	fd1=$(settle_fds "$LIBVIRT_PID" "$fd0")
	check "libvirtd's fds: $fd0 before, $fdrun while running, $fd1 after" [ "$fd1" -le "$fd0" ]
	[ "$fd1" -le "$fd0" ] || ls -l "/proc/$LIBVIRT_PID/fd" | sed 's/^/    /'
	sleep 0.2
	# libvirt 11.3 keeps a log per domain under var/log/libvirt/ch (by design).
	d=$(diff <(echo "$run0") <(run_listing | grep -v "/var/log/libvirt/ch/vmmtest-$$-3t\?\.log$"))
	check "no file left or gone under $prefix/var and /etc${d:+:}" [ -z "$d" ]
	[ -z "$d" ] || sed 's/^/    /' <<<"$d"
	d=$(diff <(echo "$tmp0") <(tmp_listing) | grep '^>')
	# (Criterion's sockets are other test programs' running beside us.)
	sus=$(grep -Ei "$dom|libvirt|virsh|cloud|vmm|sock|^> [sp] " <<<"$d" | grep -v "^> s /tmp/criterion_[0-9]*\.sock$")
	check "no new file in /tmp from libvirt or the VMM${sus:+:}" [ -z "$sus" ]
	[ -z "$sus" ] || sed 's/^/    /' <<<"$sus"
	[ -z "$d" ] || [ -n "$sus" ] || { note "new in /tmp meanwhile (other processes?):"; sed 's/^/    /' <<<"$d"; }
	stop_daemon
fi

# ---------------------------------------------------------------------------
cycles=${LIBVIRT_CYCLES:-20}
echo "== 4. $cycles define/start/destroy cycles: no fd, process or memory left behind"
if start_daemon g4; then
	# One cycle first, so what libvirtd sets up once is in the baseline.
	dom=vmmtest-$$-4-warmup
	vsh define "$(dom_xml "$dom" "$img")" >/dev/null 2>&1 && vsh start "$dom" >/dev/null 2>&1 &&
		vsh destroy "$dom" >/dev/null 2>&1
	[ $v11 = 0 ] || vsh undefine "$dom" >/dev/null 2>&1
	sleep 0.3
	fd0=$(fd_count "$LIBVIRT_PID")
	rss0=$(rss_kb "$LIBVIRT_PID")
	mem0=$(memavail_kb) shm0=$(shmem_kb) cg0=$(memcgs)
	n0=$(ch_count)
	errs=0 tmin=999999 tmax=0
	t0=$(now_ms)
	for ((k = 1; k <= cycles; k++)); do
		dom=vmmtest-$$-4-$k
		xml=$(dom_xml "$dom" "$img")
		c0=$(now_ms)
		if ! out=$(vsh define "$xml" 2>&1 && vsh start "$dom" 2>&1); then
			errs=$((errs + 1)); echo "    cycle $k: define, start: $(one "$out")"
			vsh undefine "$dom" >/dev/null 2>&1
			continue
		fi
		s=$(domstate "$dom")
		[ "$s" = running ] || { errs=$((errs + 1)); echo "    cycle $k: domstate $s"; }
		pid=$(vmm_pid "$dom")
		if ! out=$(vsh destroy "$dom" 2>&1); then
			errs=$((errs + 1)); echo "    cycle $k: destroy: $(one "$out")"
		fi
		if [ -z "$pid" ] || ! wait_gone "$pid" 2; then
			errs=$((errs + 1)); echo "    cycle $k: the VMM (pid ${pid:-?}) still there"
		fi
		if [ $v11 = 1 ] && ! out=$(vsh undefine "$dom" 2>&1); then
			errs=$((errs + 1)); echo "    cycle $k: undefine: $(one "$out")"
		fi
		c=$(($(now_ms) - c0))
		[ $c -lt $tmin ] && tmin=$c
		[ $c -gt $tmax ] && tmax=$c
		rm -f "$xml"
	done
	total=$(($(now_ms) - t0))
	timing "cycle(avg)" $((total / cycles))
	echo "cycles: $cycles in $total ms: $((total / cycles)) ms each on average (min $tmin, max $tmax)"
	check "$cycles cycles of define, start (running), destroy (VMM gone): $errs errors" [ $errs = 0 ]
	left=$(vsh list --all --name 2>&1 | grep -c "^vmmtest-$$-4")
	check "no domain of the cycles left in list --all ($left)" [ "$left" = 0 ]
	fd1=$(settle_fds "$LIBVIRT_PID" "$fd0")
	check "libvirtd's fds unchanged: $fd0 -> $fd1" [ "$fd1" -le "$fd0" ]
	[ "$fd1" -le "$fd0" ] || ls -l "/proc/$LIBVIRT_PID/fd" | sed 's/^/    /'
	check "cloud-hypervisor processes: $(ch_count) (before the cycles: $n0, before the test: $ch0)" \
		[ "$(ch_count)" -le "$n0" -a -z "$(lv_kids)" ]
	z=$(lv_kids all | wc -l)
	check "no zombie child of libvirtd ($z)" [ "$z" = 0 ]
	z=$(zombie_vmms)
	check "no zombie VMM anywhere ($z)" [ "$z" = 0 ]
	rss_end=$(rss_kb "$LIBVIRT_PID")
	echo "figures: libvirt $version, $cycles cycles, $((total / cycles)) ms per cycle (min $tmin, max $tmax), libvirtd fds $fd0 -> $fd1, RSS $rss0 -> $rss_end KiB"
	mem1=$(memavail_kb) shm1=$(shmem_kb) cg1=$(memcgs)
	# MemAvailable is the host's: other processes move it, and the kernel
	# keeps dying memory cgroups of the domains libvirt made (/proc/cgroups'
	# count grows with the cycles).  So the bound is one guest's 64 MiB
	# never returned, or 1 MiB a cycle in long runs; Shmem (a memfd or
	# shared guest memory kept) is checked on its own.
	lim=$((cycles > 64 ? cycles : 64))
	check "MemAvailable: $((mem0 / 1024)) MiB -> $((mem1 / 1024)) MiB (may drop $lim MiB at most; memory cgroups $cg0 -> $cg1)" \
		[ $((mem0 - mem1)) -le $((lim * 1024)) ]
	check "Shmem: $((shm0 / 1024)) MiB -> $((shm1 / 1024)) MiB (may grow 16 MiB at most)" \
		[ $((shm1 - shm0)) -le $((16 * 1024)) ]
	rss1=$(rss_kb "$LIBVIRT_PID")
	echo "libvirtd RSS: $rss0 KiB -> $rss1 KiB ($((rss1 - rss0)) KiB over $cycles cycles)"
	check "libvirtd's RSS grew by $((rss1 - rss0)) KiB (< 16 MiB)" [ $((rss1 - rss0)) -lt 16384 ]
	stop_daemon
fi

# ---------------------------------------------------------------------------
echo "== 5. a guest that powers itself off ('q' on its console)"
if start_daemon g5; then
	dom=vmmtest-$$-5
	out=$(vsh define "$(dom_xml "$dom" "$img")" 2>&1 && vsh start "$dom" 2>&1); st=$?
	check "define and start $dom: $(one "$out")" eval '[ $st = 0 ] && [ "$(domstate "$dom")" = running ]'
	pid=$(vmm_pid "$dom")
	pty=$(vsh ttyconsole "$dom" 2>&1)
	con=$tmp/console5
	: >"$con"
	if [ -c "$pty" ]; then
		stty -F "$pty" raw -echo 2>/dev/null
		python3 "$here/api_helper.py" ptycat "$pty" "$con" &
		bg+=("$!")
	fi
	for ((i = 0; i < 100; i++)); do [ "$(ticks "$con")" -gt 0 ] && break; sleep 0.1; done
	check "the guest runs (ticks on $pty)" [ "$(ticks "$con")" -gt 0 ]
	t0=$(now_ms)
	[ -c "$pty" ] && printf q >"$pty"
	wait_gone "${pid:-0}" 20 zombie-ok; st2=$?
	ms=$(($(now_ms) - t0))
	check "the guest powered itself off ('$(grep -m1 -o 'exitloop: q.*off' "$con")'): its VMM (pid ${pid:-?}) exited after $ms ms" \
		eval '[ -n "$pid" ] && [ $st2 = 0 ]'
	if [ $v11 = 1 ]; then
		wait_state "$dom" "shut off" 10
		ms=$(($(now_ms) - t0))
		check "domstate: shut off, $ms ms after the 'q' (the VMM's shutdown event)" [ "$(domstate "$dom")" = "shut off" ]
		check "libvirtd read the vm shutdown event" grep -q "$dom: Source: vm, Event: shutdown," "$tmp/g5/libvirtd.log"
		check "the VMM is reaped (no zombie)" wait_gone "${pid:-0}" 2
		out=$(vsh start "$dom" 2>&1); st=$?
		check "it starts again: $(one "$out")" eval '[ $st = 0 ] && [ "$(domstate "$dom")" = running ]'
		vsh destroy "$dom" >/dev/null 2>&1
		out=$(vsh undefine "$dom" 2>&1); st=$?
		check "undefine: $(one "$out")" eval '[ $st = 0 ] && ! listed "$dom"'
	else
		s=$(domstate "$dom")
		case $s in
		running) ok "domstate still 'running' (libvirt 9.0 defect 5: the VMM's exit is not noticed)" ;;
		"shut off") ok "domstate: shut off" ;;
		*) bad "domstate after the guest powered off: $s" ;;
		esac
		vsh destroy "$dom" >/dev/null 2>&1
		vsh undefine "$dom" >/dev/null 2>&1
	fi
	check "no cloud-hypervisor process left ($(ch_count), before the test: $ch0)" [ "$(ch_count)" -le "$ch0" ]
	stop_daemon
fi

n=$(clean_cgroups)
[ "$n" = 0 ] || note "removed $n cgroup directories libvirt $version left behind for our domains (it gives up removing them while the VMM is still exiting)"

# ---------------------------------------------------------------------------
echo "== the VMM's log"
n=$(grep -c '^=== pid .*--api-socket' "$vmmlog" 2>/dev/null)
echo "VMMs started by libvirt: $n"
s=$(grep -E "AddressSanitizer|LeakSanitizer|runtime error|ThreadSanitizer" "$vmmlog" 2>/dev/null | head -n 5)
check "no sanitizer report in the VMM's log${s:+: $s}" [ -z "$s" ]
# Expected: the missing kernel, and the exitloop image's writes to the
# benchdev port, unclaimed under `vmm run` (images/exitloop.c).
w=$(grep -Ei 'warn|error' "$vmmlog" 2>/dev/null | grep -vF -e "$tmp/no-such-kernel" -e "unclaimed port write at 0x520" |
	sort | uniq -c | sort -rn | head -n 8)
[ -z "$w" ] || { echo "warnings/errors the VMM logged:"; sed 's/^/    /' <<<"$w"; }
w=$(grep -hE ': (warning|error) : ' "$tmp"/g*/libvirtd.log 2>/dev/null | sed 's/^[0-9: .+-]*: *//' |
	grep -vF "no-such-kernel" | sort | uniq -c | sort -rn | head -n 8)
[ -z "$w" ] || { echo "warnings/errors in libvirtd's logs:"; sed 's/^/    /' <<<"$w"; }

echo "== times"
for k in "${order[@]}"; do printf 'time: %-12s %6s ms\n' "$k" "${T[$k]}"; done
if [ $fail != 0 ]; then
	for d in "$tmp"/g*; do
		echo "--- tail of $d/libvirtd.log"
		showtail "$d/libvirtd.log" 40
		[ -s "$d/libvirtd.out" ] && { echo "--- $d/libvirtd.out"; showtail "$d/libvirtd.out" 10; }
	done
	echo "--- tail of the VMM's log ($vmmlog)"
	showtail "$vmmlog" 40
	for f in "$prefix"/var/log/libvirt/ch/*; do
		[ -f "$f" ] || continue
		echo "--- tail of $f"
		showtail "$f" 20
	done
fi
echo "libvirt $version: $checks checks, $([ $fail = 0 ] && echo all passed || echo some FAILED)"
exit $fail
