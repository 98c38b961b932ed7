#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# test_api.sh VMM IMAGE - the control API (vmm run --api-socket) over its
# unix socket, with curl and python3 (tests/vmm/api_helper.py), IMAGE being the
# exitloop test image (a guest that runs until stopped, printing ticks):
#   - libvirt 9.0's sequence: ping, vm.create (9.0 shape, console Pty),
#     vm.boot, vm.info (Running, the pty path, the guest's output on it,
#     threads named vcpuN), pause (vCPU threads stop using CPU) / resume,
#     counters, reboot (same pty, the guest starts again), vm.shutdown (the
#     VMM exits 0 and removes its socket);
#   - the payload shape, vm.delete and a new vm.create, a kernel that
#     vanished before vm.boot (500, nothing running), vmm.shutdown;
#   - malformed input (bad JSON, unknown endpoint, wrong method, missing
#     kernel, devices, a huge body, garbage bytes, a request sent byte by
#     byte): each answered, the VMM keeps answering ping;
#   - connections: 16 held open, a 17th answered 503; an idle one closed
#     (VMM_API_IDLE_MS shortens the 60 s);
#   - Expect: 100-continue with an empty chunked body, as libcurl sends it,
#     answered without curl's 1 s wait (timed);
#   - --api-socket fd=N as libvirt passes it, through the cloud-hypervisor
#     name; bad fds and paths refused with exit 2; a stale socket replaced;
#   - --kernel with --api-socket; SIGTERM exits 0 in under 100 ms;
#   - `cloud-hypervisor --version`;
#   - virtio devices in vm.create (a disk, a balloon, virtio-mem), vm.info
#     with their state, vm.resize (balloon target, plugged size, refusals),
#     vm.counters per device, and `vmm remote` doing the same.
# Every check prints ok/FAIL; the exit status is 1 if any failed.  Without
# /dev/kvm the test says so loudly and is skipped (77).
set -u
vmm=$(realpath "$1")
img=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
helper=$here/api_helper.py
if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm ]; then
	echo "SKIP: /dev/kvm is missing or not accessible: the API tests did NOT run" >&2
	exit 77
fi
NAME=test_api
# shellcheck source=api_lib.sh
. "$here/api_lib.sh"
# put_libcurl ENDPOINT - a bodiless PUT as libvirt sends it: chunked, with
# Expect: 100-continue.  Sets CODE, BODY and SECS (curl's total time).
put_libcurl() {
	local out
	out=$(curl -s -S --max-time 60 --unix-socket "$sock" -T - -H 'Expect: 100-continue' \
		-o "$tmp/body" -w '%{http_code} %{time_total}' "http://localhost/api/v1/$1" \
		</dev/null 2>"$tmp/curl.err")
	CODE=${out% *} SECS=${out#* }
	BODY=$(cat "$tmp/body" 2>/dev/null)
	rm -f "$tmp/body"
}
# expect CODE WHAT - the last api call answered CODE.
expect() {
	if [ "$CODE" = "$1" ]; then ok "$2 -> $CODE"; else bad "$2: got $CODE, wanted $1: $BODY"; fi
}
# jq_ EXPR - a Python expression on the last body (d), printed.
jq_() {
	python3 -c 'import json, sys; d = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$BODY" "$1" 2>&1
}
ping_ok() { # WHAT - the VMM still answers ping
	api GET vmm.ping
	expect 200 "ping after $1"
}
# start_vmm LOG ARGS... - vmm run ARGS in the background; sets pid, waits
# for the socket $sock to answer.
start_vmm() {
	local log=$1 i; shift
	"$vmm" run "$@" </dev/null >"$log.out" 2>"$log" &
	pid=$!
	pids+=("$pid")
	wait_ping
}
wait_ping() {
	local i
	for ((i = 0; i < 200; i++)); do
		[ -S "$sock" ] && curl -s --max-time 2 --unix-socket "$sock" -o /dev/null \
			http://localhost/api/v1/vmm.ping && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
# term_exit PID - SIGTERM it and wait (it is our child); sets ST and MS
# (milliseconds from the signal to its exit).  A watchdog kills it after
# 10 s (ST is then 137).
# The bound a SIGTERM stop is held to: generous, so that a loaded CI
# machine does not fail it (the times are printed; they are tens of ms).
STOP_BOUND_MS=${STOP_BOUND_MS:-2000}
term_exit() {
	( sleep 10; kill -KILL "$1" 2>/dev/null ) &
	local wd=$! s0
	s0=$(date +%s%N)
	kill -TERM "$1"
	wait "$1"
	ST=$?
	MS=$(( ($(date +%s%N) - s0) / 1000000 ))
	kill "$wd" 2>/dev/null
	wait "$wd" 2>/dev/null
}
# wait_exit PID SECONDS - sets ST to its exit status (or "alive").
wait_exit() {
	local i
	for ((i = 0; i < $2 * 20; i++)); do
		[ -d "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ] || break
		sleep 0.05
	done
	if [ -d "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; then
		ST=alive
		kill -KILL "$1"
	fi
	wait "$1" 2>/dev/null
	local st=$?
	[ "${ST:-}" = alive ] || ST=$st
}
vcpu_threads() { grep -l '^vcpu[0-9]' /proc/"$1"/task/*/comm 2>/dev/null | wc -l; }
vcpu_tids() { grep -l '^vcpu[0-9]' /proc/"$1"/task/*/comm 2>/dev/null | cut -d/ -f5 | sort | tr '\n' ' '; }
vcpu_ticks() { # pid -> utime+stime of all vcpuN threads
	local t sum=0 f
	for t in /proc/$1/task/*; do
		grep -q '^vcpu' "$t/comm" 2>/dev/null || continue
		read -r f <"$t/stat" || continue
		set -- ${f##*) }
		sum=$((sum + ${12} + ${13}))
	done
	echo $sum
}
showlog() { tail -n "${2:-15}" "$1" | sed 's/^/    /'; }

# ---------------------------------------------------------------------------
echo "== libvirt 9.0's sequence: create (9.0 shape) + boot, info, pause, resume, counters, reboot, shutdown"
sock=$tmp/a.sock
log=$tmp/a.log
start_vmm "$log" --api-socket "path=$sock" --log-level info || { bad "vmm did not start"; showlog "$log"; }
api GET vmm.ping
expect 200 "vmm.ping"
check "ping: version 30.0.0 and our pid" [ "$(jq_ '(d["version"], d["pid"] == '"$pid"', "vmm" in d["build_version"])')" = "('30.0.0', True, True)" ]
api GET vm.info
expect 404 "vm.info without a VM"
api PUT vm.boot
expect 404 "vm.boot without a VM"
api GET vm.counters
expect 404 "vm.counters without a VM"
create9='{"console":{"mode":"Pty"},"serial":{"mode":"Null"},"cpus":{"boot_vcpus":2,"max_vcpus":2},"memory":{"size":268435456},"kernel":{"path":"'$img'"},"cmdline":{"args":"console=ttyS0"},"disks":[],"net":[]}'
api PUT vm.create "$create9"
expect 204 "vm.create (libvirt 9.0 shape)"
api PUT vm.create "$create9"
expect 409 "a second vm.create"
api GET vm.info
check "vm.info before boot: Created" [ "$(jq_ 'd["state"]')" = Created ]
put_libcurl vm.boot
expect 204 "vm.boot (chunked, Expect: 100-continue)"
api GET vm.info
expect 200 "vm.info"
pty=$(jq_ 'd["config"]["console"]["file"]')
check "vm.info: Running, 2 vCPUs, 256 MiB, our kernel, serial Null without file" \
	[ "$(jq_ '(d["state"], d["config"]["cpus"], d["config"]["memory"]["size"], d["config"]["payload"]["kernel"] == "'"$img"'", d["config"]["serial"], d["memory_actual_size"])')" = \
	"('Running', {'boot_vcpus': 2, 'max_vcpus': 2}, 268435456, True, {'mode': 'Null', 'file': None}, 268435456)" ]
check "console.file $pty is a pty" [ -c "$pty" ]
python3 "$helper" ptycat "$pty" "$tmp/console" &
pids+=($!)
for ((i = 0; i < 100; i++)); do grep -q "exitloop: tick" "$tmp/console" 2>/dev/null && break; sleep 0.1; done
check "the guest's output on the pty (exitloop: start, ticks)" grep -q "exitloop: start (2 vcpus, 256 MiB)" "$tmp/console"
check "2 threads named vcpuN" [ "$(vcpu_threads $pid)" = 2 ]
put_libcurl vm.boot
expect 409 "vm.boot while running"

put_libcurl vm.pause
expect 204 "vm.pause"
pause_secs=$SECS
api GET vm.info
check "vm.info: Paused" [ "$(jq_ 'd["state"]')" = Paused ]
sleep 0.3
a=$(vcpu_ticks $pid); sleep 1; b=$(vcpu_ticks $pid)
check "paused: vCPU threads use no CPU (ticks $a -> $b)" [ "$a" = "$b" ]
t1=$(grep -c "exitloop: tick" "$tmp/console")
put_libcurl vm.pause
expect 409 "vm.pause while paused"
put_libcurl vm.resume
expect 204 "vm.resume"
resume_secs=$SECS
sleep 1
c=$(vcpu_ticks $pid)
check "resumed: vCPU threads run again (ticks $b -> $c)" [ "$c" -gt "$b" ]
api GET vm.info
check "vm.info: Running" [ "$(jq_ 'd["state"]')" = Running ]
put_libcurl vm.resume
expect 409 "vm.resume while running"
for ((i = 0; i < 50; i++)); do [ "$(grep -c "exitloop: tick" "$tmp/console")" -gt "$t1" ] && break; sleep 0.1; done
check "ticks continue after resume" [ "$(grep -c "exitloop: tick" "$tmp/console")" -gt "$t1" ]

api GET vm.counters
expect 200 "vm.counters"
check "vm.counters: guestmm statistics (translations) and vCPU exits" \
	[ "$(jq_ '(type(d["guestmm"]["translations"]) is int, len(d["guestmm"]) >= 26, d["vcpu0"]["exits"] > 0, d["vcpu1"]["io_exits"] > 0)')" = "(True, True, True, True)" ]

tids=$(vcpu_tids $pid)
put_libcurl vm.reboot
expect 204 "vm.reboot"
api GET vm.info
check "after reboot: Running on the same pty" [ "$(jq_ '(d["state"], d["config"]["console"]["file"])')" = "('Running', '$pty')" ]
for ((i = 0; i < 100; i++)); do [ "$(grep -c "exitloop: start" "$tmp/console")" -ge 2 ] && break; sleep 0.1; done
check "after reboot: the guest starts again on the pty" [ "$(grep -c "exitloop: start" "$tmp/console")" -ge 2 ]
check "after reboot: 2 new vCPU threads ($tids -> $(vcpu_tids $pid))" \
	[ "$(vcpu_threads $pid)" = 2 -a "$(vcpu_tids $pid)" != "$tids" ]

put_libcurl vm.shutdown
expect 204 "vm.shutdown"
wait_exit $pid 10
check "after vm.shutdown the VMM exits 0 (status $ST)" [ "$ST" = 0 ]
check "its socket file is removed" [ ! -e "$sock" ]
grep -q "ERROR: AddressSanitizer\|runtime error" "$log" && { bad "sanitizer report"; showlog "$log" 40; }

# ---------------------------------------------------------------------------
echo "== payload shape, vm.delete, malformed input, a vanished kernel, vmm.shutdown"
sock=$tmp/b.sock
log=$tmp/b.log
python3 "$helper" stale "$sock"
check "a stale socket file exists" [ -S "$sock" ]
start_vmm "$log" --api-socket "$sock" --log-level info || { bad "vmm did not start"; showlog "$log"; }
check "the stale socket was replaced" grep -q "removed the stale socket" "$log"
api PUT vm.create '{"cpus":'
expect 400 "vm.create with bad JSON"
ping_ok "bad JSON"
api PUT vm.create '{"payload":{"kernel":"'"$img"'"}}{"x":1}'
expect 400 "vm.create with trailing bytes"
api PUT vm.create ''
expect 400 "vm.create without a body"
api GET vm.frobnicate
expect 404 "unknown endpoint"
CODE=$(curl -s --unix-socket "$sock" -o /dev/null -w '%{http_code}' http://localhost/other)
expect 404 "a path outside /api/v1/"
api GET vm.create
expect 405 "GET vm.create"
check "405 names the method" [ "$(jq_ '"takes PUT" in d["error"]')" = True ]
api PUT vm.info
expect 405 "PUT vm.info"
api POST vmm.ping
expect 405 "POST vmm.ping"
api PUT vm.create '{"payload":{"kernel":"'"$tmp"'/no-such-kernel"}}'
expect 400 "vm.create with a missing kernel"
check "the error names the kernel" [ "$(jq_ '"no-such-kernel: No such file" in d["error"]')" = True ]
api PUT vm.create '{"cpus":{"boot_vcpus":1}}'
expect 400 "vm.create without a kernel"
api PUT vm.create '{"payload":{"kernel":"'"$img"'"},"disks":[{"path":"'"$tmp"'/no-such-disk.img"}]}'
expect 400 "vm.create with a missing disk image"
check "the error names the disk" [ "$(jq_ '"no-such-disk.img: No such file" in d["error"]')" = True ]
api PUT vm.create '{"payload":{"kernel":"'"$img"'"},"console":{"mode":"Telnet"}}'
expect 400 "vm.create with an unknown console mode"
api PUT vm.create '{"payload":{"kernel":"'"$img"'"},"cpus":{"boot_vcpus":65}}'
expect 400 "vm.create with 65 vCPUs"
api PUT vm.create '{"payload":{"kernel":"'"$img"'"},"memory":{"size":1048576}}'
expect 400 "vm.create with 1 MiB"
out=$(python3 "$helper" huge "$sock")
check "a 2 MiB body -> 413" grep -q "^HTTP/1.1 413" <<<"$out"
ping_ok "a huge body"
out=$(python3 "$helper" garbage "$sock")
check "garbage bytes -> 400" grep -q "^HTTP/1.1 400" <<<"$out"
ping_ok "garbage"
out=$(python3 "$helper" bytewise "$sock")
check "a request sent byte by byte -> 200 with our pid" grep -q "\"pid\":$pid" <<<"$out"
ping_ok "a byte-by-byte request"

cp "$img" "$tmp/kernel-copy"
api PUT vm.create '{"payload":{"kernel":"'"$tmp"'/kernel-copy","cmdline":"x"},"console":{"mode":"Off"},"serial":{"mode":"Pty"},"cpus":{"boot_vcpus":1},"memory":{"size":67108864}}'
expect 204 "vm.create (payload shape, serial Pty)"
rm "$tmp/kernel-copy"
api PUT vm.boot
expect 500 "vm.boot with the kernel gone"
check "the error names the kernel" [ "$(jq_ '"kernel-copy: No such file" in d["error"]')" = True ]
api GET vm.info
check "nothing running: state Created, no vCPU thread" [ "$(jq_ 'd["state"]')" = Created -a "$(vcpu_threads $pid)" = 0 ]
cp "$img" "$tmp/kernel-copy"
api PUT vm.boot
expect 204 "vm.boot once the kernel is back"
api GET vm.info
spty=$(jq_ 'd["config"]["serial"]["file"]')
check "vm.info: Running, serial.file $spty a pty, console Off without file" \
	[ "$(jq_ '(d["state"], d["config"]["console"], d["config"]["payload"]["cmdline"], d["config"]["memory"]["size"])')" = "('Running', {'mode': 'Off', 'file': None}, 'x', 67108864)" -a -c "$spty" ]
api PUT vm.create '{"payload":{"kernel":"'"$img"'"}}'
expect 409 "vm.create while one runs"
api PUT vm.delete
expect 204 "vm.delete"
api GET vm.info
expect 404 "vm.info after vm.delete"
check "no vCPU thread after vm.delete" [ "$(vcpu_threads $pid)" = 0 ]
api PUT vm.create '{"payload":{"kernel":"'"$img"'"},"serial":{"mode":"Null"},"console":{"mode":"Null"}}'
expect 204 "vm.create after vm.delete"
api PUT vm.boot
expect 204 "vm.boot again"
api GET vm.info
check "running again, 1 vCPU thread" [ "$(jq_ 'd["state"]')" = Running -a "$(vcpu_threads $pid)" = 1 ]
api PUT vm.pause
expect 204 "vm.pause (no body)"
api PUT vm.reboot
expect 204 "vm.reboot while paused"
api GET vm.info
check "after the reboot: Running" [ "$(jq_ 'd["state"]')" = Running ]
out=$(python3 "$helper" continue "$sock" vm.pause)
cms=$(sed -n 's/^continue_ms //p' <<<"$out")
check "raw 100-continue: '100 Continue' in ${cms:-?} ms, then 204" \
	eval '[ -n "$cms" ] && awk "BEGIN{exit !($cms < 200)}" && grep -q "^HTTP/1.1 204" <<<"$out"'
out=$(python3 "$helper" flood "$sock" 16)
check "16 connections held open, a 17th -> 503" grep -q "^HTTP/1.1 503" <<<"$out"
ping_ok "16 connections held and closed"
check "the VMM logged no sanitizer report" eval '! grep -q "AddressSanitizer\|runtime error" "$log"'
put_libcurl vmm.shutdown
expect 204 "vmm.shutdown"
wait_exit $pid 10
check "after vmm.shutdown the VMM exits 0 (status $ST)" [ "$ST" = 0 ]
check "its socket file is removed" [ ! -e "$sock" ]

# ---------------------------------------------------------------------------
echo "== idle connections are closed"
sock=$tmp/c.sock
log=$tmp/c.log
VMM_API_IDLE_MS=300 start_vmm "$log" --api-socket "path=$sock" --log-level debug ||
	{ bad "vmm did not start"; showlog "$log"; }
out=$(python3 "$helper" idle "$sock")
ims=$(sed -n 's/^closed_after_ms \([0-9]*\).*/\1/p' <<<"$out")
check "a connection idle (half a request) is closed after ${ims:-?} ms (VMM_API_IDLE_MS=300)" \
	eval '[ -n "$ims" ] && [ "$ims" -ge 250 ] && [ "$ims" -lt 2000 ]'
term_exit $pid
check "SIGTERM: exit 0 ($ST)" [ "$ST" = 0 ]

# ---------------------------------------------------------------------------
echo "== 100-continue latency (libcurl's bodiless PUT)"
for s in $pause_secs $resume_secs; do
	check "curl -T - (chunked, Expect: 100-continue) answered in ${s} s (< 0.5 s: no 1 s wait)" \
		awk "BEGIN{exit !($s < 0.5)}"
done
echo "100-continue: vm.pause ${pause_secs} s, vm.resume ${resume_secs} s through curl; raw ${cms:-?} ms to '100 Continue'"

# ---------------------------------------------------------------------------
echo "== cloud-hypervisor: --version, --api-socket fd=N as libvirt starts it"
mkdir -p "$tmp/bin"
ln -s "$vmm" "$tmp/bin/cloud-hypervisor"
out=$(env -i LC_ALL=C "$tmp/bin/cloud-hypervisor" --version </dev/null); st=$?
check "cloud-hypervisor --version: '$(head -1 <<<"$out")', exit $st" \
	eval '[ $st = 0 ] && head -1 <<<"$out" | grep -Eq "^cloud-hypervisor v30\.0\.0 \(vmm [0-9]"'
out=$("$vmm" --version); st=$?
check "vmm --version stays '$out'" eval '[ $st = 0 ] && grep -q "^vmm [0-9]" <<<"$out"'
sock=$tmp/fd.sock
log=$tmp/fd.log
API_HELPER_STDERR=$log python3 "$helper" listen-exec "$sock" "$tmp/bin/cloud-hypervisor" cloud-hypervisor --api-socket &
pid=$!
pids+=("$pid")
wait_ping || { bad "cloud-hypervisor --api-socket fd=N did not answer"; showlog "$log"; }
api GET vmm.ping
check "ping through the inherited socket: pid $pid" [ "$(jq_ 'd["pid"]')" = "$pid" ]
check "the process is cloud-hypervisor --api-socket fd=N" \
	eval 'tr "\0" " " </proc/$pid/cmdline | grep -q "^cloud-hypervisor --api-socket fd=[0-9]"' 
api PUT vm.create '{"console":{"mode":"Pty"},"serial":{"mode":"Pty"},"cpus":{"boot_vcpus":1,"max_vcpus":1},"memory":{"size":33554432},"kernel":{"path":"'"$img"'"}}'
expect 204 "vm.create (console and serial Pty)"
put_libcurl vm.boot
expect 204 "vm.boot"
api GET vm.info
cpty=$(jq_ 'd["config"]["console"]["file"]')
check "console.file and serial.file: the same pty $cpty" \
	[ -c "$cpty" -a "$(jq_ 'd["config"]["serial"]["file"]')" = "$cpty" ]
term_exit $pid
check "SIGTERM with a running VM: exit 0 in $MS ms (< $STOP_BOUND_MS)" [ "$ST" = 0 -a "$MS" -lt "$STOP_BOUND_MS" ]
term_ms=$MS
check "an inherited socket's file is left to its owner" [ -S "$sock" ]
check "stopped by signal 15 is logged" grep -q "stopped by signal 15" "$log"

# ---------------------------------------------------------------------------
echo "== bad sockets, --kernel with --api-socket, SIGTERM"
out=$("$vmm" run --api-socket fd=99 2>&1); st=$?
check "fd=99 (not open) -> exit 2: $out" eval '[ $st = 2 ] && grep -q "fd=99: Bad file descriptor" <<<"$out"'
out=$("$vmm" run --api-socket fd=0 2>&1 </dev/null); st=$?
check "fd=0 (/dev/null) -> exit 2: $out" eval '[ $st = 2 ] && grep -q "fd=0: not a socket" <<<"$out"'
out=$("$vmm" run --api-socket fd=x 2>&1); st=$?
check "fd=x -> exit 2: $out" eval '[ $st = 2 ] && grep -q "not a file descriptor number" <<<"$out"'
API_HELPER_STDERR=$tmp/unl.log python3 "$helper" unlistened-exec "$vmm" vmm run --api-socket; st=$?
out=$(cat "$tmp/unl.log")
check "a socket that is not listening -> exit 2: $out" eval '[ $st = 2 ] && grep -q "not listening" <<<"$out"'
: >"$tmp/regular"
out=$("$vmm" run --api-socket "path=$tmp/regular" 2>&1); st=$?
check "a path that is a regular file -> exit 2: $out" eval '[ $st = 2 ] && grep -q "not a socket" <<<"$out" && [ -f "$tmp/regular" ]'
out=$("$vmm" run --api-socket "path=$tmp/$(printf 'x%.0s' {1..120})" 2>&1); st=$?
check "a path too long -> exit 2" eval '[ $st = 2 ] && grep -q "longer than" <<<"$out"'

sock=$tmp/k.sock
log=$tmp/k.log
start_vmm "$log" --kernel "$img" --vcpus 2 --memory 64M --serial pty --api-socket "path=$sock" || { bad "vmm --kernel --api-socket did not start"; showlog "$log"; }
api GET vm.info
kpty=$(jq_ 'd["config"]["serial"]["file"]')
check "--kernel with --api-socket: Running, serial Pty on $kpty" \
	[ "$(jq_ '(d["state"], d["config"]["cpus"]["boot_vcpus"], d["config"]["serial"]["mode"])')" = "('Running', 2, 'Pty')" -a -c "$kpty" ]
out=$("$vmm" run --api-socket "path=$sock" 2>&1); st=$?
check "a second VMM on a live socket -> exit 2: $out" eval '[ $st = 2 ] && grep -q "another process" <<<"$out"'
api PUT vm.pause
expect 204 "vm.pause"
term_exit $pid
check "SIGTERM with a paused VM: exit 0 in $MS ms (< $STOP_BOUND_MS)" [ "$ST" = 0 -a "$MS" -lt "$STOP_BOUND_MS" ]
check "the socket file is removed" [ ! -e "$sock" ]

echo "== virtio devices through vm.create, vm.info, vm.resize, vm.counters and vmm remote"
sock=$tmp/v.sock
log=$tmp/v.log
head -c 1048576 /dev/zero > "$tmp/disk.img"
start_vmm "$log" --api-socket "path=$sock" --log-level info || { bad "vmm did not start"; showlog "$log"; }
api PUT vm.create '{"payload":{"kernel":"'"$img"'"},"memory":{"size":67108864,"hotplug_method":"VirtioMem","hotplug_size":268435456},"disks":[{"path":"'"$tmp"'/disk.img","readonly":true}],"balloon":{"size":0,"free_page_reporting":true},"console":{"mode":"Pty"},"serial":{"mode":"Null"}}'
expect 204 "vm.create with a disk, a balloon and 256 MiB of virtio-mem"
api PUT vm.boot
expect 204 "vm.boot"
api GET vm.info
check "vm.info: disk, balloon (target 0) and virtio-mem (256 MiB, 0 plugged)" \
	[ "$(jq_ '(d["config"]["disks"][0]["readonly"], d["balloon"]["target_size"], d["virtio_mem"]["region_size"], d["virtio_mem"]["plugged_size"])')" = "(True, 0, 268435456, 0)" ]
vpty=$(jq_ 'd["config"]["console"]["file"]')
check "the console (virtio-console, with the UART on it) is on pty $vpty" [ -c "$vpty" ]
api PUT vm.resize '{"desired_balloon":16777216}'
expect 204 "vm.resize desired_balloon 16 MiB"
api PUT vm.resize '{"desired_ram":201326592}'
expect 204 "vm.resize desired_ram 64 MiB + 128 MiB"
api GET vm.info
check "vm.info: the balloon target and the virtio-mem request changed" \
	[ "$(jq_ '(d["balloon"]["target_size"], d["virtio_mem"]["requested_size"])')" = "(16777216, 134217728)" ]
api PUT vm.resize '{"desired_ram":33554432}'
expect 400 "vm.resize below the boot RAM"
api PUT vm.resize '{"desired_ram":1073741824}'
expect 400 "vm.resize beyond the hot-plug region"
api PUT vm.resize '{"desired_ram":67108864,"desired_vcpus":4}'
expect 400 "vm.resize of vCPUs"
api PUT vm.resize '{"desired_balloon":1073741824}'
expect 400 "vm.resize: a balloon larger than RAM"
api PUT vm.resize '{}'
expect 400 "vm.resize with nothing to resize"
api PUT vm.resize 'not json'
expect 400 "vm.resize with a bad body"
api GET vm.counters
check "vm.counters: per-device counters (blk0, console, balloon, mem)" \
	[ "$(jq_ 'all(k in d["devices"] for k in ("blk0_requests_read", "console_tx_bytes", "balloon_inflate_pages", "mem_plugged_bytes", "mem_resident_bytes", "mem_status"))')" = True ]
out=$("$vmm" remote --api-socket "$sock" resize --balloon 8M 2>&1); st=$?
check "vmm remote resize --balloon 8M -> 0" [ $st = 0 ]
out=$("$vmm" remote --api-socket "$sock" info 2>&1); st=$?
check "vmm remote info shows the new target" eval '[ $st = 0 ] && grep -q "\"target_size\":8388608" <<<"$out"'
out=$("$vmm" remote --api-socket "$sock" resize --memory 1M 2>&1); st=$?
check "vmm remote resize --memory below RAM -> exit 1 with the API's reason" eval '[ $st = 1 ] && grep -q "below the boot RAM" <<<"$out"'
out=$("$vmm" remote --api-socket "$sock" resize 2>&1); st=$?
check "vmm remote resize without a size -> exit 2" [ $st = 2 ]
out=$("$vmm" remote --api-socket "$tmp/none.sock" info 2>&1); st=$?
check "vmm remote to a missing socket -> exit 1" eval '[ $st = 1 ] && grep -q "cannot connect" <<<"$out"'
term_exit $pid
check "SIGTERM with virtio devices: exit 0" [ "$ST" = 0 ]

sock=$tmp/n.sock
log=$tmp/n.log
start_vmm "$log" --api-socket "path=$sock" || bad "vmm did not start"
term_exit $pid
check "SIGTERM without a VM: exit 0 in $MS ms (< $STOP_BOUND_MS)" [ "$ST" = 0 -a "$MS" -lt "$STOP_BOUND_MS" ]
check "the socket file is removed" [ ! -e "$sock" ]

echo "timings: 100-continue through curl ${pause_secs}/${resume_secs} s, raw ${cms:-?} ms; SIGTERM with a running VM ${term_ms} ms"
echo "api: $checks checks, $([ $fail = 0 ] && echo all passed || echo some FAILED)"
exit $fail
