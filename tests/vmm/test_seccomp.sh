#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# test_seccomp.sh VMM HELLO EXITLOOP RESET - the per-thread seccomp filters
# (vmm/core/sandbox.c): VMM_SECCOMP_SELFTEST=<class> makes the first thread
# of that class call getsid(), in no allow-list, once its filter is on:
#   --seccomp on (and the default): the VMM stops with status 159 and one
#     line naming the thread, its class and the syscall;
#   --seccomp log: getsid fails with EPERM, one line, the guest runs on;
# then every thread of a running VM has exactly its class's filter on top
# of main's (/proc/PID/task/*/status) -- but the event monitor's writer,
# started before main filters itself, which has its own alone --, none with
# --seccomp off, and the
# re-executed VMM of --on-reboot restart does not stack main's again.
# Without /dev/kvm the test says so loudly and is skipped (77).
set -u
vmm=$1 hello=$2 exitloop=$3 reset=$4
if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm ]; then
	echo "SKIP: /dev/kvm is missing or not accessible: the KVM tests did NOT run" >&2
	exit 77
fi
tmp=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
show() { tail -n "${2:-8}" "$1" | sed 's/^/    /'; }

truncate -s 16M "$tmp/disk.img"
# Every class has a thread: a disk (device thread + I/O pool), a console.
devs=(--disk "path=$tmp/disk.img" --console "file=$tmp/hvc0.txt" --event-monitor "path=$tmp/events.json")

# 1. The allow-list sizes.
if "$vmm" seccomp-info >"$tmp/info" 2>&1 &&
   for c in main vcpu device io_worker events; do grep -Eq "^$c +[1-9][0-9]* +[0-9]+ +[1-9]" "$tmp/info" || exit 1; done; then
	ok "vmm seccomp-info: $(grep -E '^(main|vcpu|device|io_worker|events) ' "$tmp/info" | awk '{printf "%s %s syscalls; ", $1, $2}')"
else
	bad "vmm seccomp-info"; show "$tmp/info"
fi

# 2. A forbidden syscall in each class: on kills with the line, log denies.
for cls in main vcpu device io_worker events; do
	for mode in on log default; do
		opt=(--seccomp "$mode"); [ $mode = default ] && opt=()
		start=$(date +%s%N)
		VMM_SECCOMP_SELFTEST=$cls timeout -s KILL 60 "$vmm" run --kernel "$hello" --serial stdio \
			"${devs[@]}" "${opt[@]}" </dev/null >"$tmp/out" 2>&1
		st=$?
		ms=$(( ($(date +%s%N) - start) / 1000000 ))
		line="seccomp: thread [^ ]* (class $cls) made syscall getsid (124), not in its allow-list"
		if [ $mode = log ]; then
			if [ $st -eq 0 ] && grep -q "^vmm: warn: $line: denied with EPERM" "$tmp/out" &&
			   grep -q "seccomp selftest: $cls thread .*: getsid() denied with EPERM" "$tmp/out" &&
			   grep -q "hello from vmm test image" "$tmp/out"; then
				ok "--seccomp log, class $cls: EPERM, one line, the guest ran to its end ($ms ms)"
			else
				bad "--seccomp log, class $cls: exit $st"; show "$tmp/out"
			fi
		else
			if [ $st -eq 159 ] && grep -q "^vmm: error: $line: the VMM is stopped (--seccomp on)" "$tmp/out" &&
			   [ "$(grep -c 'seccomp: thread' "$tmp/out")" -eq 1 ]; then
				ok "--seccomp $mode, class $cls: stopped with status 159 and the line ($ms ms)"
			else
				bad "--seccomp $mode, class $cls: exit $st (wanted 159 and the line)"; show "$tmp/out"
			fi
		fi
	done
done

# 3. Cloud Hypervisor's spelling (libvirt's ch driver runs vmm so).
mkdir "$tmp/bin" && ln -s "$(readlink -f "$vmm")" "$tmp/bin/cloud-hypervisor"
VMM_SECCOMP_SELFTEST=vcpu timeout -s KILL 60 "$tmp/bin/cloud-hypervisor" --kernel "$hello" \
	--serial tty --seccomp log </dev/null >"$tmp/out" 2>&1
st=$?
if [ $st -eq 0 ] && grep -q "denied with EPERM (--seccomp log" "$tmp/out"; then
	ok "cloud-hypervisor --seccomp log"
else
	bad "cloud-hypervisor --seccomp log: exit $st"; show "$tmp/out"
fi
if "$vmm" run --kernel "$hello" --seccomp sometimes </dev/null >"$tmp/out" 2>&1; [ $? -eq 2 ] &&
   grep -q "is not on, log or off" "$tmp/out"; then
	ok "--seccomp sometimes: refused, status 2"
else
	bad "--seccomp sometimes"; show "$tmp/out"
fi

# 4. The filters of a running VM: main has one, every other thread two
# (main's, inherited, and its class's); none with off.
# threads PID -> "name filters" per thread
threads() {
	for t in /proc/"$1"/task/*; do
		printf '%s %s %s\n' "$(cat "$t/comm")" \
			"$(awk '/^Seccomp_filters:/ {print $2}' "$t/status")" \
			"$(awk '/^NoNewPrivs:/ {print $2}' "$t/status")"
	done
}
for mode in on off; do
	rm -f "$tmp/serial.txt"
	"$vmm" run --kernel "$exitloop" --vcpus 2 --serial "file=$tmp/serial.txt" "${devs[@]}" \
		--balloon size=0 --seccomp $mode --log-level warn </dev/null >"$tmp/out" 2>&1 &
	pid=$!
	for _ in $(seq 100); do
		grep -q "exitloop: tick" "$tmp/serial.txt" 2>/dev/null && break
		sleep 0.1
	done
	threads $pid >"$tmp/threads"
	want_main=1 want_child=2
	[ $mode = off ] && want_main=0 want_child=0
	bad_threads=$(awk -v m=$want_main -v c=$want_child '
		$1 == "vmm" { if ($2 != m) print; next }
		$1 ~ /^(vcpu[0-9]+|_disk0|_disk0-io|_console|_balloon)$/ { if ($2 != c) print; n++; next }
		$1 == "events" { if ($2 != m) print; e++; next }   # started before main filters itself
		END { if (n < 8) print "only " n " VM threads"; if (e != 1) print e + 0 " events threads" }' "$tmp/threads")
	kill -TERM $pid
	for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
	wait $pid
	st=$?
	pid=
	if [ -z "$bad_threads" ] && [ $st -eq 0 ]; then
		ok "--seccomp $mode: main $want_main filter(s), vCPU/device/I/O threads $want_child ($(wc -l <"$tmp/threads") threads), SIGTERM exit 0"
	else
		bad "--seccomp $mode: exit $st; threads (name filters no_new_privs):"; show "$tmp/threads" 20
		[ -n "$bad_threads" ] && echo "    wrong: $bad_threads"
		show "$tmp/out"
	fi
done

# 5. --on-reboot restart re-executes the VMM under main's filter: the new
# image does not stack a second one (nor its vCPUs a third).
"$vmm" run --kernel "$reset" --on-reboot restart --serial stdio --log-level info \
	</dev/null >"$tmp/out" 2>&1 &
pid=$!
maxf=0
for _ in $(seq 100); do
	n=$(grep -c "reset: pulsing" "$tmp/out")
	f=$(awk '/^Seccomp_filters:/ {print $2}' /proc/$pid/status 2>/dev/null)
	[ -n "$f" ] && [ "$f" -gt $maxf ] && maxf=$f
	[ "$n" -ge 5 ] && break
	sleep 0.1
done
kill -TERM $pid
for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
wait $pid
st=$?
pid=
if [ "$n" -ge 5 ] && [ $maxf -eq 1 ] && [ $st -eq 0 ]; then
	ok "--on-reboot restart: $n boots, the main thread never had more than 1 filter"
else
	bad "--on-reboot restart: $n boots, main had up to $maxf filters, exit $st"; show "$tmp/out"
fi

exit $fail
