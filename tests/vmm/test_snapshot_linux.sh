#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# test_snapshot_linux.sh VMM CMDLINE-FILE - snapshot and restore (issue 16)
# of a real Linux guest with its virtio devices in use.
#
# One boot of the project's guest kernel (scripts/guest-linux) with a data
# disk (vda, random bytes whose sha256 the host knows), the guest's script
# on a read-only disk (vdb, run as vmm.cmd="sh /dev/vdb"), a balloon (free
# page reporting on) and a virtio-mem region, steered through the serial
# console and `vmm remote` (the guest waits on `read` between steps):
#   before    the guest's sha256 of the disk's first DISK_MIB MiB (O_DIRECT)
#             equals the host's; the balloon inflated by BALLOON (vm.info's
#             actual size); MEM_PLUG plugged and then half of it unplugged
#             again (vm.info's plugged size); the guest reads the disk
#             in a loop (requests in flight) when the host pauses it
#   snapshot  vmm remote pause + snapshot DIR: config.json, state.json and
#             a sparse memory-ranges (on disk at most RAM - balloon +
#             plugged: never-plugged, unplugged and ballooned memory are
#             holes); the VMM is killed (-9)
#   copy      vmm run --restore DIR --restore-mode copy: running, vm.info's
#             balloon actual and virtio-mem plugged sizes are the snapshot's,
#             guestmm's mapped bytes and the balloon's unmapped bytes as
#             before (unplugged and ballooned memory stays unmapped), the
#             region's resident bytes at most the plugged size, the disk
#             loop goes on (blk reads grow); the console answers a command the host
#             types (ANSWER-42); a 'sleep 1' returns (timers run); the
#             guest's sha256 of the disk again, by O_DIRECT and through its
#             page cache (caches dropped), equals the host's; it prints its
#             dmesg and reboots (reboot -f, --on-reboot exit): exit 0
#   on-demand the same with --restore-mode on-demand and
#             VMM_TEST_ONDEMAND_NO_FILL=1 (every block by a fault): the disk
#             loop runs right after the restore, so the device threads
#             write into pages nobody has touched since (their faults); the
#             checks as for copy, and the VMM's exit line reports faults > 0
#   migrate   the snapshot restored (copy) in one VMM, its disk loop
#             running, then live-migrated (issue 17) into a VMM started
#             with only --api-socket: the source exits 0 after handing over,
#             and the destination passes the checks as for copy
#   crashes   none in any run (guest_klog.sh over each console)
# Environment: VMM_GUEST_LINUX_DIR (the kernel; default for local runs
# /var/cache/vmm/linux-91a064f98a6c5f4f when it exists).  Every wait is
# bounded.  Missing KVM or kernel: a loud message and exit 77 (skipped),
# never a pass.
set -u
vmm=$1; base=$(cat "$2")
# shellcheck source=guest_klog.sh
. "$(dirname "$0")/guest_klog.sh"
if [ ! -c /dev/kvm ]; then
	echo "SKIP: /dev/kvm is missing: the Linux snapshot test did NOT run" >&2; exit 77
fi
G=${VMM_GUEST_LINUX_DIR:-}
[ -z "$G" ] && [ -f /var/cache/vmm/linux-91a064f98a6c5f4f/vmlinux ] &&
	G=/var/cache/vmm/linux-91a064f98a6c5f4f
if [ -z "$G" ] || [ ! -f "$G/vmlinux" ]; then
	echo "SKIP: no guest kernel (VMM_GUEST_LINUX_DIR='$G' has no vmlinux; run scripts/test): Linux snapshot test NOT run" >&2
	exit 77
fi
RAM=$((128 << 20)) HOTPLUG=$((256 << 20))
MEM_PLUG=$((128 << 20)) MEM_KEEP=$((64 << 20)) BALLOON=$((16 << 20))
DISK_MIB=4
tmp=$(mktemp -d /tmp/vmm-snaplinux.XXXXXX)
vmm_pid=
cleanup() {
	[ -n "$vmm_pid" ] && kill -9 "$vmm_pid" 2>/dev/null
	exec 3>&- 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
start=$(date +%s%N)

# ---- the disks -------------------------------------------------------------
head -c $((16 << 20)) /dev/urandom > "$tmp/data.img"
want=$(head -c $((DISK_MIB << 20)) "$tmp/data.img" | sha256sum | cut -d' ' -f1)
# The guest's side.  Until the snapshot it runs once; from the disk loop on
# it runs once in each restored VM (the snapshot is taken in the loop).
cat > "$tmp/script" <<EOF
N=$DISK_MIB
EOF
cat >> "$tmp/script" <<'EOF'
echo "DISK-A $(dd if=/dev/vda bs=1M count=$N iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)"
echo STEP-READY; read x
# Requests in flight while the host pauses and snapshots the VM.
(while :; do dd if=/dev/vda of=/dev/null bs=64k count=16 iflag=direct 2>/dev/null; done) &
busy=$!
echo STEP-BUSY
# -- the snapshot is taken here; what follows runs in each restored VM --
read cmd
kill $busy
eval "$cmd"
# Timers: a sleep ends only by a timer interrupt (TSC deadline, restored).
(sleep 1; echo SLEPT-1S) &
echo "DISK-B $(dd if=/dev/vda bs=1M count=$N iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)"
# Through the page cache: pages the guest has not touched since the restore.
echo 3 > /proc/sys/vm/drop_caches
echo "DISK-C $(dd if=/dev/vda bs=1M count=$N 2>/dev/null | sha256sum | cut -d' ' -f1)"
echo GUEST-DMESG-BEGIN; dmesg; echo GUEST-DMESG-END
echo GUEST-DONE
EOF
# Pad with newlines to a whole sector: sh reads the device to its end.
size=$(stat -c %s "$tmp/script"); pad=$(( (512 - size % 512) % 512 + 512 ))
head -c $pad /dev/zero | tr '\0' '\n' >> "$tmp/script"

# wait_for FILE PATTERN SECONDS: FILE shows PATTERN while the VMM lives.
wait_for() {
	local limit=$(( $3 * 10 )) i=0
	until grep -q "$2" "$1" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt $limit ] || ! kill -0 "$vmm_pid" 2>/dev/null; then return 1; fi
		sleep 0.1
	done
}
sock=
remote() { timeout 60 "$vmm" remote --api-socket "$sock" "$@"; }
info() { remote info | python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
counter() { remote counters | python3 -c "import json,sys; d=json.load(sys.stdin); print(d[sys.argv[1]].get(sys.argv[2], 'none'))" "$1" "$2"; }
# poll EXPR VALUE SECONDS: vm.info's EXPR reaches VALUE.
poll() {
	local limit=$(( $3 * 10 )) i=0
	until [ "$(info "$1" 2>/dev/null)" = "$2" ]; do
		i=$((i + 1)); [ $i -gt $limit ] && return 1; sleep 0.1
	done
}
# exited SECONDS: the VMM is gone within SECONDS; sets st to its status.
exited() {
	local i
	for ((i = 0; i < $1 * 10; i++)); do
		if ! kill -0 "$vmm_pid" 2>/dev/null; then wait "$vmm_pid"; st=$?; vmm_pid=; return 0; fi
		sleep 0.1
	done
	return 1
}
# crash_check CONSOLE WHAT: guest_klog.sh over a run's console.
crash_check() {
	if reports=$(guest_crash_reports "$1"); then
		bad "$2: the guest's kernel reported a crash:"; printf '%s\n' "$reports" | sed 's/^/    /'
	elif ! grep -q '^GUEST-DMESG-END' "$1"; then
		bad "$2: the guest did not print its kernel log (no crash check)"
	else
		ok "$2: no crash: the guest's kernel reported no fatal signal, segfault or oops"
	fi
}
# stuck_dump LOG: where a VMM's guest is (SIGQUIT's register dumps, 3 of
# them a second apart, each RIP named from vmlinux's symbols) and what its
# vCPU does (vm.counters).
stuck_dump() {
	local i
	for i in 1 2 3; do kill -QUIT "$vmm_pid" 2>/dev/null; sleep 1; done
	nm -n "$G/vmlinux" 2>/dev/null | awk '$2 ~ /^[tTwW]$/ { print $1, $3 }' >"$tmp/syms"
	grep -A1 'registers:' "$1" | sed -n 's/^ *rip \([0-9a-f]*\).*/\1/p' | while read -r rip; do
		python3 - "$rip" "$tmp/syms" <<'PY'
import bisect, sys
rip = int(sys.argv[1], 16); a = []; n = []
for l in open(sys.argv[2]):
    x, y = l.split(); a.append(int(x, 16)); n.append(y)
i = bisect.bisect_right(a, rip) - 1
print("    guest rip %x: %s" % (rip, n[i] + "+0x%x" % (rip - a[i]) if i >= 0 and rip - a[i] < 1 << 20 else "[user]"))
PY
	done
	remote counters 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print("    counters:", {k: v for k, v in d.items() if k != "guestmm"})' 2>/dev/null
	grep -A7 'registers:' "$1" | tail -8 | sed 's/^/    /'
}
fail_tail() {   # fail_tail CONSOLE LOG: the last lines of both
	tail -15 "$1" | tr -d '\r' | sed 's/^/    console: /'
	tail -25 "$2" | sed 's/^/    vmm: /'
}

# ---- boot, then use the disk, virtio-mem and the balloon --------------------
mkfifo "$tmp/in"
exec 3<>"$tmp/in"
sock=$tmp/api.sock
"$vmm" run --kernel "$G/vmlinux" --initrd "$G/initramfs.cpio" --memory $RAM \
	--cmdline "$base print_fatal_signals=1 memhp_default_state=online_movable vmm.cmd=\"sh /dev/vdb\"" \
	--disk "path=$tmp/data.img" --disk "path=$tmp/script,readonly=on" \
	--balloon size=0,free_page_reporting=on --hotplug-memory $HOTPLUG \
	--serial stdio --api-socket "path=$sock" --on-reboot exit --log-level info \
	<&3 >"$tmp/console.boot" 2>"$tmp/vmm.boot" &
vmm_pid=$!
if ! wait_for "$tmp/console.boot" STEP-READY 600; then
	bad "the guest did not reach its first step"; fail_tail "$tmp/console.boot" "$tmp/vmm.boot"; exit 1
fi
echo "guest ready after $(ms $start) ms"
got=$(sed -n 's/^DISK-A \([0-9a-f]*\).*/\1/p' "$tmp/console.boot" | tr -d '\r')
[ "$got" = "$want" ] && ok "boot: the guest's sha256 of $DISK_MIB MiB of vda equals the host's" ||
	bad "boot: disk read: guest '$got', host $want"

# The balloon first: its pages then come from boot RAM (the balloon ignores
# pages of the virtio-mem region: "PFN ... is not in guest RAM").
t=$(date +%s%N)
remote resize --balloon $BALLOON >/dev/null || bad "resize --balloon"
if poll 'd["balloon"]["actual_size"]' $BALLOON 300; then
	ok "balloon: inflated to $((BALLOON >> 20)) MiB in $(ms $t) ms"
else
	bad "balloon: did not inflate: $(info 'd["balloon"]')"
fi
t=$(date +%s%N)
remote resize --memory $((RAM + MEM_PLUG)) >/dev/null || bad "resize --memory (plug)"
if poll 'd["virtio_mem"]["plugged_size"]' $MEM_PLUG 300; then
	ok "virtio-mem: $((MEM_PLUG >> 20)) MiB plugged in $(ms $t) ms"
else
	bad "virtio-mem: plug did not complete: $(info 'd["virtio_mem"]')"
fi
t=$(date +%s%N)
remote resize --memory $((RAM + MEM_KEEP)) >/dev/null || bad "resize --memory (unplug)"
if poll 'd["virtio_mem"]["plugged_size"]' $MEM_KEEP 300; then
	ok "virtio-mem: unplugged to $((MEM_KEEP >> 20)) MiB in $(ms $t) ms"
else
	bad "virtio-mem: unplug did not complete: $(info 'd["virtio_mem"]')"
fi
echo go >&3
wait_for "$tmp/console.boot" STEP-BUSY 120 || bad "the guest did not start its disk loop"
sleep 3
reads0=$(counter devices blk0_requests_read)
plugged0=$(info 'd["virtio_mem"]["plugged_size"]'); actual0=$(info 'd["balloon"]["actual_size"]')
res0=$(counter devices mem_resident_bytes); mapped0=$(counter guestmm mapped_bytes)
inflated0=$(counter devices balloon_inflated_bytes)
echo "    before the snapshot: plugged $plugged0, balloon actual $actual0 (unmapped $inflated0), guestmm mapped $mapped0, region resident $res0, blk0 reads $reads0"

# ---- pause, snapshot, kill ---------------------------------------------------
snap=$tmp/snap
mkdir -p "$snap"
remote pause >/dev/null || bad "vmm remote pause"
t=$(date +%s%N)
if remote snapshot "$snap" >"$tmp/snap.out" 2>&1; then
	ok "snapshot of the paused VM (disk loop running) in $(ms $t) ms"
else
	bad "vmm remote snapshot: $(cat "$tmp/snap.out")"
fi
[ "$(info 'd["state"]')" = Paused ] || bad "the VM is not paused after the snapshot: $(info 'd["state"]')"
kill -9 $vmm_pid; wait $vmm_pid 2>/dev/null; vmm_pid=
snap_ok=1
for f in config.json state.json memory-ranges; do
	[ -s "$snap/$f" ] || { bad "the snapshot has no $f (files: $(ls "$snap" | tr '\n' ' '))"; snap_ok=0; }
done
if [ $snap_ok = 1 ]; then
	len=$(stat -c %s "$snap/memory-ranges")
	disk=$(( $(stat -c %b "$snap/memory-ranges") * $(stat -c %B "$snap/memory-ranges") ))
	limit=$((RAM - BALLOON + MEM_KEEP + (1 << 20)))
	if [ "$len" -ge $RAM ] && [ "$disk" -le $limit ]; then
		ok "memory-ranges is sparse: $((len >> 20)) MiB long, $((disk >> 20)) MiB on disk (at most RAM - balloon + plugged = $((limit >> 20)) MiB)"
	else
		bad "memory-ranges: $len bytes long, $disk on disk (wanted >= $RAM long, <= $limit on disk)"
	fi
fi
grep -E 'snapshot' "$tmp/vmm.boot" | tail -3 | sed 's/^/    /'
if [ $snap_ok = 0 ]; then
	fail_tail "$tmp/console.boot" "$tmp/vmm.boot"; exit 1
fi

# ---- restore, in each mode ---------------------------------------------------
# restore_run MODE [ENV...]: vmm run --restore with the serial on a new
# FIFO, then the checks above.
restore_run() {
	local mode=$1; shift
	local con=$tmp/console.$mode log=$tmp/vmm.$mode
	exec 3>&-
	rm -f "$tmp/in"; mkfifo "$tmp/in"
	exec 3<>"$tmp/in"
	sock=$tmp/api.$mode.sock
	local t0=$(date +%s%N) i
	if [ "$mode" = migrate ]; then
		# The snapshot restored (copy) in a first VMM, running its disk
		# loop, then migrated live into a VMM with only --api-socket,
		# whose stdio becomes the guest's console.
		local src=$tmp/api.migsrc.sock
		"$vmm" run --restore "$snap" --restore-mode copy --serial stdio --api-socket "path=$src" \
			--log-level info </dev/null >"$tmp/console.migsrc" 2>"$tmp/vmm.migsrc" &
		local spid=$!
		"$vmm" run --api-socket "path=$sock" --on-reboot exit --log-level info <&3 >"$con" 2>"$log" &
		vmm_pid=$!
		for ((i = 0; i < 300; i++)); do [ -S "$src" ] && [ -S "$sock" ] && break; sleep 0.1; done
		sleep 1   # the disk loop runs in the source
		local mt=$(date +%s%N)
		remote receive-migration "unix:$tmp/mig.sock" >/dev/null || bad "migrate: receive-migration"
		timeout 120 "$vmm" remote --api-socket "$src" send-migration "unix:$tmp/mig.sock" --wait \
			>"$tmp/migrate.out" 2>&1
		local sst=124
		for ((i = 0; i < 600; i++)); do
			kill -0 $spid 2>/dev/null || { wait $spid; sst=$?; break; }
			sleep 0.1
		done
		[ $sst = 124 ] && kill -9 $spid 2>/dev/null
		[ $sst = 0 ] && ok "migrate: the source VMM handed over and exited 0 ($(ms $mt) ms after the request)" ||
			{ bad "migrate: the source VMM: exit $sst"; tail -5 "$tmp/vmm.migsrc" | sed 's/^/    /'; }
		grep -hE 'migration (to|from) .*complete|pass [0-9]+:' "$tmp/vmm.migsrc" "$log" | sed 's/^/    /'
	else
		env "$@" "$vmm" run --restore "$snap" --restore-mode "$mode" --serial stdio \
			--api-socket "path=$sock" --on-reboot exit --log-level info <&3 >"$con" 2>"$log" &
		vmm_pid=$!
	fi
	for ((i = 0; i < 1200; i++)); do
		[ -S "$sock" ] && [ "$(info 'd["state"]' 2>/dev/null)" = Running ] && break
		kill -0 $vmm_pid 2>/dev/null || break
		sleep 0.1
	done
	if [ "$(info 'd["state"]' 2>/dev/null)" != Running ]; then
		bad "$mode: the restored VM is not running after $(ms $t0) ms"
		fail_tail "$con" "$log"; kill -9 $vmm_pid 2>/dev/null; vmm_pid=; return
	fi
	ok "$mode: restored and running in $(ms $t0) ms"
	grep -E 'restore:' "$log" | sed 's/^/    /'
	local plugged actual res reads
	plugged=$(info 'd["virtio_mem"]["plugged_size"]'); actual=$(info 'd["balloon"]["actual_size"]')
	[ "$plugged" = "$plugged0" ] && ok "$mode: virtio-mem plugged size $((plugged >> 20)) MiB, as before" ||
		bad "$mode: virtio-mem plugged size $plugged, before the snapshot $plugged0"
	[ "$actual" = "$actual0" ] && ok "$mode: balloon actual size $((actual >> 20)) MiB, as before" ||
		bad "$mode: balloon actual size $actual, before the snapshot $actual0"
	# What was unmapped stays unmapped: unplugged blocks and ballooned
	# pages (guestmm's mapped bytes as before; the restored table's shape).
	local mapped inflated
	mapped=$(counter guestmm mapped_bytes); inflated=$(counter devices balloon_inflated_bytes)
	[ "$mapped" = "$mapped0" ] && ok "$mode: guestmm maps $((mapped >> 20)) MiB, as before (unplugged and ballooned memory unmapped)" ||
		bad "$mode: guestmm maps $mapped bytes, before the snapshot $mapped0"
	[ "$inflated" = "$inflated0" ] && ok "$mode: the balloon's unmapped bytes $((inflated >> 20)) MiB, as before" ||
		bad "$mode: the balloon's unmapped bytes $inflated, before the snapshot $inflated0"
	res=$(counter devices mem_resident_bytes)
	[ "$res" != none ] && [ "$res" -le "$plugged0" ] 2>/dev/null &&
		ok "$mode: the region's resident bytes $((res >> 20)) MiB <= plugged $((plugged0 >> 20)) MiB (unplugged blocks unmapped)" ||
		bad "$mode: the region's resident bytes $res > plugged $plugged0"
	# The guest's disk loop goes on where it was.
	for ((i = 0; i < 300; i++)); do
		reads=$(counter devices blk0_requests_read)
		[ "$reads" -gt "$reads0" ] 2>/dev/null && break
		sleep 0.2
	done
	[ "$reads" -gt "$reads0" ] 2>/dev/null && ok "$mode: the guest's disk loop goes on (blk0 reads $reads0 -> $reads)" ||
		bad "$mode: no disk read after the restore (blk0 reads $reads0 -> $reads)"
	# The console: a command typed in, its output seen.
	echo 'echo ANSWER-$((6 * 7))' >&3
	wait_for "$con" '^ANSWER-42' 120 && ok "$mode: the guest answers on its console (ANSWER-42)" ||
		{ bad "$mode: no answer on the console"; fail_tail "$con" "$log"; }
	wait_for "$con" '^SLEPT-1S' 30 && ok "$mode: the guest's timers run (sleep 1 returned)" ||
		bad "$mode: the guest's timers are dead: its 'sleep 1' did not return in 30 s"
	wait_for "$con" GUEST-DONE 300 || bad "$mode: the guest did not finish its steps"
	local b c
	b=$(sed -n 's/^DISK-B \([0-9a-f]*\).*/\1/p' "$con" | tr -d '\r')
	c=$(sed -n 's/^DISK-C \([0-9a-f]*\).*/\1/p' "$con" | tr -d '\r')
	[ "$b" = "$want" ] && ok "$mode: the guest's sha256 of $DISK_MIB MiB (O_DIRECT) equals the host's" ||
		bad "$mode: disk read (O_DIRECT): guest '$b', host $want"
	[ "$c" = "$want" ] && ok "$mode: the guest's sha256 of $DISK_MIB MiB (page cache) equals the host's" ||
		bad "$mode: disk read (page cache): guest '$c', host $want"
	if exited 60; then
		[ $st = 0 ] && ok "$mode: the guest powered off, the VMM exited 0 after $(ms $t0) ms" ||
			{ bad "$mode: the VMM exited $st"; fail_tail "$con" "$log"; }
	else
		bad "$mode: the VMM still runs 60 s after the guest's last step (its reboot -f)"
		stuck_dump "$log"
		kill -9 $vmm_pid; wait $vmm_pid 2>/dev/null; vmm_pid=
	fi
	crash_check "$con" "$mode"
	grep -E 'on-demand restore:' "$log" | sed 's/^/    /'
	if grep -E "vmm: (error|warn)" "$log" >/dev/null; then
		echo "    VMM warnings ($mode):"; grep -E "vmm: (error|warn)" "$log" | head -10 | sed 's/^/    /'
	fi
}

restore_run copy
restore_run on-demand VMM_TEST_ONDEMAND_NO_FILL=1
restore_run migrate
line=$(grep -o 'on-demand restore: [0-9]* faults.*' "$tmp/vmm.on-demand" | head -1)
n=$(sed -n 's/^on-demand restore: \([0-9]*\) faults.*/\1/p' <<<"$line")
[ -n "$n" ] && [ "$n" -gt 0 ] && ok "on-demand without fill-ahead: $line" ||
	bad "on-demand: no 'on-demand restore: N faults' line with N > 0 in the VMM's log ('$line')"

if [ -n "${VMM_SNAPSHOT_LINUX_KEEP:-}" ]; then
	mkdir -p "$VMM_SNAPSHOT_LINUX_KEEP" && cp "$tmp"/console.* "$tmp"/vmm.* "$VMM_SNAPSHOT_LINUX_KEEP"/
fi
echo "$(ms $start) ms in all: $([ $fail = 0 ] && echo all passed || echo SOME FAILED)"
exit $fail
