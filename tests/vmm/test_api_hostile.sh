#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# test_api_hostile.sh VMM IMAGE - the control API and the paths it is given,
# against a hostile client (issue 13, findings 4-7).  IMAGE is any bootable
# test image (hello); no VM is booted, so /dev/kvm is not needed.
#   4. vm.create replaces the configuration: 3 disks in vm.create after one
#      --disk are exactly the request's 3 (was an out-of-bounds write), and
#      a vm.create without disks has none; --memory is not inherited.
#   5. the API socket is 0600 under umask 000 (and, as root, another user
#      cannot connect); console/serial File paths: a symlink, a FIFO, a
#      directory, a device node, a hard-linked file and (as root) another
#      user's file are refused with a clear error and left untouched; a
#      file the VMM creates is 0600; a symlink at the socket path is refused.
#   6. a FIFO as kernel, initrd, disk or serial file: vm.create answers a
#      clear error at once and vmm.ping still answers within 1 s; a kernel
#      swapped for a FIFO before vm.boot: 500 at once; `vmm run --kernel
#      FIFO` (and --initrd, --disk, --serial file=FIFO): exit 2, no hang.
#   7. slowloris: with VMM_API_REQUEST_MS=1000, 16 connections trickling a
#      byte every 100 ms are each closed about 1 s after their first byte,
#      then a ping succeeds; with the default deadline a 17th client gets
#      its ping answered while 16 tricklers hold every slot.
# Every check prints ok/FAIL; the exit status is 1 if any failed.
set -u
vmm=$(realpath "$1")
img=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
helper=$here/api_helper.py
NAME=test_api_hostile API_MAX_TIME=5
# shellcheck source=api_lib.sh
. "$here/api_lib.sh"
expect() {
	if [ "$CODE" = "$1" ]; then ok "$2 -> $CODE"; else bad "$2: got $CODE, wanted $1: $BODY"; fi
}
# refused WHAT TEXT - the last call answered 400 naming TEXT, within 2 s.
refused() {
	if [ "$CODE" = 400 ] && [ "$MS" -lt 2000 ] && grep -q -- "$2" <<<"$BODY"; then
		ok "$1 -> 400 in $MS ms: $BODY"
	else
		bad "$1: got $CODE in $MS ms, wanted 400 naming '$2': $BODY"
	fi
	[ "$CODE" = 204 ] && api PUT vm.delete
	return 0
}
jq_() {
	python3 -c 'import json, sys; d = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$BODY" "$1" 2>&1
}
# ping_fast WHAT - vmm.ping answers 200 within 1 s.
ping_fast() {
	api GET vmm.ping
	if [ "$CODE" = 200 ] && [ "$MS" -lt 1000 ]; then ok "ping after $1: $MS ms"
	else bad "ping after $1: $CODE in $MS ms"; fi
}
start_vmm() { # LOG ARGS...
	local log=$1; shift
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
stop_vmm() { # LOG
	kill -TERM "$pid" 2>/dev/null
	( sleep 10; kill -KILL "$pid" 2>/dev/null ) &
	local wd=$!
	wait "$pid" 2>/dev/null
	kill "$wd" 2>/dev/null
	wait "$wd" 2>/dev/null
	if grep -q "AddressSanitizer\|runtime error" "$1"; then
		bad "sanitizer report in $1"; tail -n 30 "$1" | sed 's/^/    /'
	fi
}
# run_vmm SECONDS ARGS... - vmm run with a watchdog; sets ST (124: killed)
# and OUT (its stderr).
run_vmm() {
	local secs=$1; shift
	OUT=$(timeout -s KILL "$secs" "$vmm" run "$@" </dev/null 2>&1 >/dev/null); ST=$?
	[ $ST = 137 ] && ST=124
}
showlog() { tail -n "${2:-15}" "$1" | sed 's/^/    /'; }
kernel_json='"payload":{"kernel":"'$img'"}'

# ---------------------------------------------------------------------------
echo "== 4. vm.create replaces the configuration (after --disk, --memory)"
for d in d0 d1 d2 d3; do head -c 1048576 /dev/zero >"$tmp/$d.img"; done
sock=$tmp/4.sock
log=$tmp/4.log
start_vmm "$log" --api-socket "path=$sock" --disk "path=$tmp/d0.img" --memory 64M \
	--balloon size=0 || { bad "vmm did not start"; showlog "$log"; }
api PUT vm.create '{'"$kernel_json"',"disks":[{"path":"'"$tmp"'/d1.img"},{"path":"'"$tmp"'/d2.img"},{"path":"'"$tmp"'/d3.img","readonly":true}]}'
expect 204 "vm.create with 3 disks after one --disk"
api GET vm.info
check "vm.info: exactly the request's 3 disks: $(jq_ '[x["path"][-6:] for x in d["config"]["disks"]]')" \
	[ "$(jq_ '[x["path"] for x in d["config"]["disks"]] == ["'"$tmp"'/d1.img", "'"$tmp"'/d2.img", "'"$tmp"'/d3.img"]')" = True ]
check "vm.info: no --balloon, not --memory 64M (the request omits them)" \
	[ "$(jq_ '("balloon" in d["config"], d["config"]["memory"]["size"])')" = "(False, 268435456)" ]
api PUT vm.delete
expect 204 "vm.delete"
api PUT vm.create '{'"$kernel_json"'}'
expect 204 "vm.create without disks"
api GET vm.info
check "vm.info: no disk at all (not --disk's)" [ "$(jq_ '"disks" in d["config"]')" = False ]
api PUT vm.delete
api PUT vm.create '{'"$kernel_json"',"disks":[{"path":"'"$tmp"'/d1.img"},{"path":"'"$tmp"'/d2.img"},{"path":"'"$tmp"'/d3.img"},{"path":"'"$tmp"'/d0.img"}]}'
refused "vm.create with 4 disks" "at most 3"
ping_fast "vm.create after --disk"
stop_vmm "$log"

# ---------------------------------------------------------------------------
echo "== 5. a private socket, and the files the VMM writes"
sock=$tmp/5.sock
log=$tmp/5.log
old_umask=$(umask)
umask 000
start_vmm "$log" --api-socket "path=$sock" || { bad "vmm did not start"; showlog "$log"; }
mode=$(stat -c %a "$sock" 2>/dev/null)
check "under umask 000 the socket is 0600 (mode $mode)" [ "$mode" = 600 ]
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	chmod 755 "$tmp"
	out=$(setpriv --reuid=65534 --regid=65534 --clear-groups curl -s -S --max-time 5 \
		--unix-socket "$sock" http://localhost/api/v1/vmm.ping 2>&1); st=$?
	check "another user (nobody) cannot connect: $out" eval '[ $st != 0 ] && grep -qi "permission denied\|couldn.t connect" <<<"$out"'
	chmod 700 "$tmp"
fi
echo secret >"$tmp/victim"
ln -s "$tmp/victim" "$tmp/link"
api PUT vm.create '{'"$kernel_json"',"serial":{"mode":"File","file":"'"$tmp"'/link"}}'
refused "serial File on a symlink" "symbolic link"
api PUT vm.create '{'"$kernel_json"',"console":{"mode":"File","file":"'"$tmp"'/link"}}'
refused "console File on a symlink" "symbolic link"
ln -s "$tmp/no-such-target" "$tmp/dangling"
api PUT vm.create '{'"$kernel_json"',"serial":{"mode":"File","file":"'"$tmp"'/dangling"}}'
refused "serial File on a dangling symlink" "symbolic link"
check "the dangling symlink's target was not created" [ ! -e "$tmp/no-such-target" ]
mkfifo "$tmp/fifo"
api PUT vm.create '{'"$kernel_json"',"serial":{"mode":"File","file":"'"$tmp"'/fifo"}}'
refused "serial File on a FIFO" "not a regular file or a terminal"
ping_fast "a FIFO as serial file"
mkdir "$tmp/dir"
api PUT vm.create '{'"$kernel_json"',"console":{"mode":"File","file":"'"$tmp"'/dir"}}'
refused "console File on a directory" "not a regular file or a terminal"
api PUT vm.create '{'"$kernel_json"',"serial":{"mode":"File","file":"/dev/null"}}'
refused "serial File on a device node (/dev/null)" "not a regular file or a terminal"
ln "$tmp/victim" "$tmp/hardlink"
api PUT vm.create '{'"$kernel_json"',"serial":{"mode":"File","file":"'"$tmp"'/hardlink"}}'
refused "serial File on a file with 2 hard links" "hard links"
rm "$tmp/hardlink"
if [ "$(id -u)" = 0 ]; then
	echo theirs >"$tmp/theirs"
	chown 65534:65534 "$tmp/theirs"
	api PUT vm.create '{'"$kernel_json"',"serial":{"mode":"File","file":"'"$tmp"'/theirs"}}'
	refused "serial File owned by another user (nobody)" "owned by uid 65534"
	check "another user's file is untouched" [ "$(cat "$tmp/theirs")" = theirs ]
fi
check "the symlink's target is untouched" [ "$(cat "$tmp/victim")" = secret ]
api PUT vm.create '{'"$kernel_json"',"serial":{"mode":"File","file":"'"$tmp"'/serial.log"}}'
expect 204 "vm.create with a new serial file"
fmode=$(stat -c %a "$tmp/serial.log" 2>/dev/null)
check "the serial file the VMM created is 0600 under umask 000 (mode $fmode)" [ "$fmode" = 600 ]
api PUT vm.delete
stop_vmm "$log"
umask "$old_umask"
check "the socket is removed at exit" [ ! -e "$sock" ]
run_vmm 20 --kernel "$img" --serial "file=$tmp/link"
check "vmm run --serial file=SYMLINK -> exit 2: $OUT" eval '[ $ST = 2 ] && grep -q "symbolic link" <<<"$OUT"'
run_vmm 20 --kernel "$img" --console "file=/dev/null"
check "vmm run --console file=/dev/null -> exit 2: $OUT" eval '[ $ST = 2 ] && grep -q "not a regular file or a terminal" <<<"$OUT"'
check "the symlink's target is still untouched" [ "$(cat "$tmp/victim")" = secret ]
ln -s "$tmp/x.sock" "$tmp/socklink"
run_vmm 20 --api-socket "path=$tmp/socklink"
check "--api-socket on a symlink -> exit 2: $OUT" eval '[ $ST = 2 ] && grep -q "not a socket" <<<"$OUT" && [ -L "$tmp/socklink" ]'

# ---------------------------------------------------------------------------
echo "== 6. FIFOs as kernel, initrd, disk: a clear error, the main loop never blocks"
sock=$tmp/6.sock
log=$tmp/6.log
start_vmm "$log" --api-socket "path=$sock" || { bad "vmm did not start"; showlog "$log"; }
api PUT vm.create '{"payload":{"kernel":"'"$tmp"'/fifo"}}'
refused "vm.create with a FIFO kernel" "not a regular file"
ping_fast "a FIFO kernel"
api PUT vm.create '{"kernel":{"path":"'"$img"'"},"initramfs":{"path":"'"$tmp"'/fifo"}}'
refused "vm.create with a FIFO initramfs" "not a regular file"
ping_fast "a FIFO initramfs"
api PUT vm.create '{'"$kernel_json"',"disks":[{"path":"'"$tmp"'/fifo"}]}'
refused "vm.create with a FIFO disk" "not a regular file or block device"
ping_fast "a FIFO disk"
cp "$img" "$tmp/kcopy"
api PUT vm.create '{"payload":{"kernel":"'"$tmp"'/kcopy"}}'
expect 204 "vm.create with a kernel"
rm "$tmp/kcopy"
mkfifo "$tmp/kcopy"
api PUT vm.boot
if [ "$CODE" = 500 ] && [ "$MS" -lt 2000 ] && grep -q "not a regular file" <<<"$BODY"; then
	ok "vm.boot with the kernel swapped for a FIFO -> 500 in $MS ms: $BODY"
else
	bad "vm.boot with the kernel swapped for a FIFO: $CODE in $MS ms: $BODY"
fi
ping_fast "vm.boot on a FIFO kernel"
stop_vmm "$log"
run_vmm 10 --kernel "$tmp/fifo"
check "vmm run --kernel FIFO -> exit 2: $OUT" eval '[ $ST = 2 ] && grep -q "not a regular file" <<<"$OUT"'
run_vmm 10 --kernel "$img" --initrd "$tmp/fifo"
check "vmm run --initrd FIFO -> exit 2: $OUT" eval '[ $ST = 2 ] && grep -q "not a regular file" <<<"$OUT"'
run_vmm 10 --kernel "$img" --disk "path=$tmp/fifo"
check "vmm run --disk FIFO -> exit 2: $OUT" eval '[ $ST = 2 ] && grep -q "not a regular file or block device" <<<"$OUT"'
run_vmm 10 --kernel "$img" --serial "file=$tmp/fifo"
check "vmm run --serial file=FIFO -> exit 2: $OUT" eval '[ $ST = 2 ] && grep -q "not a regular file or a terminal" <<<"$OUT"'

# ---------------------------------------------------------------------------
echo "== 7. slowloris: a deadline per request, and a slot for a real client"
sock=$tmp/7.sock
log=$tmp/7.log
VMM_API_REQUEST_MS=1000 start_vmm "$log" --api-socket "path=$sock" ||
	{ bad "vmm did not start"; showlog "$log"; }
out=$(python3 "$helper" trickle "$sock" 16 5 0.1)
echo "    $out"
n=$(sed -n 's/^dropped \([0-9]*\)\/.*/\1/p' <<<"$out")
lo=$(sed -n 's/.* min_ms \([0-9]*\).*/\1/p' <<<"$out")
hi=$(sed -n 's/.* max_ms \([0-9]*\).*/\1/p' <<<"$out")
check "16 tricklers (a byte per 100 ms) are all dropped by the 1 s deadline ($n/16, after $lo-$hi ms)" \
	eval '[ "$n" = 16 ] && [ "$lo" -ge 900 ] && [ "$hi" -lt 3000 ]'
ping_fast "16 tricklers"
stop_vmm "$log"
sock=$tmp/7b.sock
log=$tmp/7b.log
start_vmm "$log" --api-socket "path=$sock" || { bad "vmm did not start"; showlog "$log"; }
out=$(python3 "$helper" trickle-ping "$sock" 16 1.5 0.1)
echo "    $out"
check "a 17th client with 16 tricklers holding every slot (default deadline): ping answered" \
	grep -q "^ping HTTP/1.1 200" <<<"$out"
ping_fast "16 tricklers and a real client"
stop_vmm "$log"

echo "api_hostile: $checks checks, $([ $fail = 0 ] && echo all passed || echo some FAILED)"
exit $fail
