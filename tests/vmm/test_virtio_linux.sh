#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# test_virtio_linux.sh VMM CMDLINE-FILE - the virtio devices with a real Linux guest.
#
# One boot of the project's guest kernel (scripts/guest-linux) with a data
# disk (vda), a read-only disk holding the guest's script (vdb, run as
# vmm.cmd="sh /dev/vdb"), a virtio-console on a file, a balloon and a
# virtio-mem region; the host steers it through `vmm remote` and the serial
# console (the guest waits on `read` between steps):
#   disk     the guest's sha256 of 32 MiB it reads equals the host's; 8 MiB it
#            copies from 16 MiB to 32 MiB with O_DIRECT writes land there
#            (host sha256 after the run; generating random data in the guest
#            would take minutes under this emulating KVM)
#   console  what the guest writes to /dev/hvc0 is in the console file
#   balloon  (free page reporting paused, free memory made resident first)
#            inflate by half of RAM: actual reaches it, host RSS falls, guestmm
#            split THP leaves; deflate: actual 0, leaves collapse again
#   report   reporting on again, the guest frees memory: >= 32 MiB reported
#            and discarded
#   mem      plug MEM, a guest process holds 64 MiB of anonymous memory (in
#            the plugged blocks: vm.counters' mem_resident_bytes), then exits,
#            reads the disk in a loop; unplug everything: plugged 0, nothing
#            of the region resident, RSS falls by what it held,
#            guestmm unmapped it (unmaps, released bytes); the time is printed
#   crashes  none: the guest runs with print_fatal_signals=1 and prints its
#            dmesg at the end; any kernel report of a fatal signal, segfault
#            or oops fails the test and is printed (guest_klog.sh)
# Environment: VMM_GUEST_LINUX_DIR (the kernel), VMM_VIRTIO_STRATEGY (default:
# the VMM's), VMM_VIRTIO_MEM (hot-plug size, default 256M), VMM_VIRTIO_RESULT
# (a file to append "strategy unplug_bytes wall_ms vmm_ms" to), VMM_VIRTIO_DD=1
# (guest dd throughput, 4 KiB and 1 MiB, printed), VMM_VIRTIO_MEMONLY=1 (skip
# the balloon and reporting steps: scripts/bench-virtio's unplug timing).
# Missing KVM or kernel: a loud message and exit 77 (skipped), never a pass.
set -u
vmm=$1; base=$(cat "$2")
# shellcheck source=guest_klog.sh
. "$(dirname "$0")/guest_klog.sh"
if [ ! -c /dev/kvm ]; then
	echo "SKIP: /dev/kvm is missing: the virtio guest test did NOT run" >&2; exit 77
fi
G=${VMM_GUEST_LINUX_DIR:-}
if [ -z "$G" ] || [ ! -f "$G/vmlinux" ]; then
	echo "SKIP: VMM_GUEST_LINUX_DIR not set (run scripts/test): virtio guest test NOT run" >&2
	exit 77
fi
MEM=${VMM_VIRTIO_MEM:-256M}
strategy=${VMM_VIRTIO_STRATEGY:-}
tmp=$(mktemp -d)
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
bytes() { numfmt --from=iec "$1"; }

# ---- the disks -------------------------------------------------------------
head -c $((64 << 20)) /dev/urandom > "$tmp/data.img"
want_read=$(head -c $((32 << 20)) "$tmp/data.img" | sha256sum | cut -d' ' -f1)
# Every step runs once: a guest program that fails is a failure (and a crash
# is reported by the guest's kernel: the dmesg at the end).
cat > "$tmp/script" <<'EOF'
echo "GUEST virtio: $(cat /sys/bus/virtio/devices/*/device | tr '\n' ' ')"
echo "DISK-READ $(dd if=/dev/vda bs=1M count=32 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)"
dd if=/dev/vda of=/tmp/w bs=1M count=8 skip=16 iflag=direct 2>/dev/null &&
dd if=/tmp/w of=/dev/vda bs=1M seek=32 oflag=direct conv=fsync 2>/dev/null &&
echo "DISK-WRITE $(dd if=/dev/vda bs=1M skip=32 count=8 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)" &&
echo DISK-WRITE-DONE
rm -f /tmp/w
echo HVC-HELLO-FROM-GUEST > /dev/hvc0
# rate WHAT BYTES CMD...: run CMD, print the MB/s it took (/proc/uptime, 10 ms).
rate() {
	what=$1 bytes=$2; shift 2
	t0=$(cut -d' ' -f1 /proc/uptime)
	"$@" 2>/dev/null
	t1=$(cut -d' ' -f1 /proc/uptime)
	awk -v w="$what" -v b="$bytes" -v a="$t0" -v z="$t1" \
		'BEGIN { printf "DD %s %d bytes in %.2f s: %.2f MB/s\n", w, b, z - a, b / (z - a) / 1e6 }'
}
if grep -q vmm.dd=1 /proc/cmdline; then
	rate "read 4 KiB" $((2048 * 4096)) dd if=/dev/vda of=/dev/null bs=4k count=2048 iflag=direct
	rate "write 4 KiB" $((2048 * 4096)) dd if=/dev/zero of=/dev/vda bs=4k count=2048 seek=10240 oflag=direct
	rate "read 1 MiB" $((16 << 20)) dd if=/dev/vda of=/dev/null bs=1M count=16 iflag=direct
	rate "write 1 MiB" $((16 << 20)) dd if=/dev/zero of=/dev/vda bs=1M count=16 seek=40 oflag=direct
fi
# Free page reporting off (order MAX_ORDER) while the balloon is measured,
# and most free memory made resident on the host, so that what the balloon
# takes is memory the host really has.
order=/sys/module/page_reporting/parameters/page_reporting_order
echo 11 > $order
if ! grep -q vmm.memonly=1 /proc/cmdline; then
	free=$(awk '/MemFree/ {print int($2 / 1024)}' /proc/meminfo)
	dd if=/dev/zero of=/tmp/fill bs=1M count=$((free - 24)) 2>/dev/null ||
		echo "GUEST-ERROR: writing $((free - 24)) MiB to /tmp failed"
	rm -f /tmp/fill
	echo STEP-BALLOON; read x
	echo 9 > $order    # reporting on again: what the guest frees now is reported
	dd if=/dev/zero of=/tmp/fill bs=1M count=48 2>/dev/null ||
		echo "GUEST-ERROR: writing 48 MiB to /tmp failed"
	rm -f /tmp/fill
	echo STEP-REPORT; read x
	echo 11 > $order   # off again: the unplug below is what gives memory back
fi
echo STEP-MEM; read x
grep -E 'MemTotal|MemFree' /proc/meminfo | tr -s ' ' | tr '\n' ' '; echo
# 64 MiB of anonymous memory held by a process (dd's buffer; dd then
# blocks writing to a pipe nobody reads).  Anonymous pages are movable, so
# Linux takes them from the plugged ZONE_MOVABLE blocks first; a file in
# this initramfs (ramfs) could only use boot RAM.
# dd's pid through a file and shell builtins.
rm -f /tmp/dd.pid
sh -c 'echo $$ > /tmp/dd.pid; exec dd if=/dev/zero bs=64M count=1' 2>/dev/null | sleep 1000000 &
holder=$!
while :; do
	sleep 1
	pid=; read pid < /tmp/dd.pid 2>/dev/null
	[ -n "$pid" ] || continue
	[ -d /proc/$pid ] || { echo "GUEST-ERROR: the 64 MiB holder (dd) is gone"; break; }
	rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null)
	[ "${rss:-0}" -ge 60000 ] 2>/dev/null && break
done
echo STEP-FILLED; read x
kill $pid $holder 2>/dev/null
(while :; do dd if=/dev/vda of=/dev/null bs=64k count=256 iflag=direct 2>/dev/null; done) &
busy=$!
echo STEP-BUSY; read x
kill $busy
# The kernel's log: with print_fatal_signals=1 it reports every program
# killed by a fatal signal; the host fails the test on any report.
echo GUEST-DMESG-BEGIN; dmesg; echo GUEST-DMESG-END
echo GUEST-DONE
EOF
# Pad with newlines to a whole sector: sh reads the device to its end.
size=$(stat -c %s "$tmp/script"); pad=$(( (512 - size % 512) % 512 + 512 ))
head -c $pad /dev/zero | tr '\0' '\n' >> "$tmp/script"
cp "$tmp/data.img" "$tmp/data.orig"

mkfifo "$tmp/in"
exec 3<>"$tmp/in"
sock=$tmp/api.sock
dd_flag=; [ -n "${VMM_VIRTIO_DD:-}" ] && dd_flag=" vmm.dd=1"
memonly=${VMM_VIRTIO_MEMONLY:-}
[ -n "$memonly" ] && dd_flag+=" vmm.memonly=1"
args=(run --kernel "$G/vmlinux" --initrd "$G/initramfs.cpio" --memory 128M
      --cmdline "$base print_fatal_signals=1 memhp_default_state=online_movable vmm.cmd=\"sh /dev/vdb\"$dd_flag"
      --disk "path=$tmp/data.img" --disk "path=$tmp/script,readonly=on"
      --console "file=$tmp/hvc.out" --balloon size=0,free_page_reporting=on
      --hotplug-memory "$MEM" --serial stdio --api-socket "path=$sock" --on-reboot exit
      --log-level info)
[ -n "$strategy" ] && args+=(--strategy "$strategy")
start=$(date +%s%N)
"$vmm" "${args[@]}" <&3 >"$tmp/console" 2>"$tmp/vmm.log" &
vmm_pid=$!

# wait_for PATTERN SECONDS: the console shows PATTERN.
wait_for() {
	local limit=$(( $2 * 10 )) i=0
	until grep -q "$1" "$tmp/console" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt $limit ] || ! kill -0 $vmm_pid 2>/dev/null; then return 1; fi
		sleep 0.1
	done
}
remote() { "$vmm" remote --api-socket "$sock" "$@"; }
info() { remote info | python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
counter() { remote counters | python3 -c "import json,sys; d=json.load(sys.stdin); print(d[sys.argv[1]][sys.argv[2]])" "$1" "$2"; }
rss_kib() { awk '/^VmRSS/ {print $2}' /proc/$vmm_pid/status; }
# poll EXPR VALUE SECONDS: vm.info's EXPR reaches VALUE.
poll() {
	local limit=$(( $3 * 10 )) i=0
	until [ "$(info "$1" 2>/dev/null)" = "$2" ]; do
		i=$((i + 1)); [ $i -gt $limit ] && return 1; sleep 0.1
	done
}

first=STEP-BALLOON; [ -n "$memonly" ] && first=STEP-MEM
if ! wait_for $first 900; then
	bad "the guest did not reach its first step"; tail -30 "$tmp/console" "$tmp/vmm.log" | sed 's/^/    /'; exit 1
fi
echo "guest at its first step after $(ms $start) ms: $(grep 'GUEST virtio' "$tmp/console" | tr -d '\r')"
got=$(sed -n 's/^DISK-READ \([0-9a-f]*\).*/\1/p' "$tmp/console" | tr -d '\r')
[ "$got" = "$want_read" ] && ok "disk read: the guest's sha256 of 32 MiB equals the host's" ||
	bad "disk read: guest $got, host $want_read"
grep -q DISK-WRITE-DONE "$tmp/console" && ok "disk write: the guest wrote 8 MiB with O_DIRECT + fsync" ||
	bad "disk write did not finish"
sleep 1
grep -q HVC-HELLO-FROM-GUEST "$tmp/hvc.out" 2>/dev/null && ok "console: /dev/hvc0 output is in the console file" ||
	bad "console: hvc0 output missing"
grep '^DD ' "$tmp/console" | tr -d '\r' | sed 's/^/    guest dd: /'


if [ -z "$memonly" ]; then
# ---- balloon ---------------------------------------------------------------
half=$((64 << 20))
rss0=$(rss_kib); splits0=$(counter guestmm splits); coll0=$(counter guestmm collapses)
t=$(date +%s%N)
remote resize --balloon $half >/dev/null || bad "resize --balloon"
if poll 'd["balloon"]["actual_size"]' $half 600; then
	rss1=$(rss_kib); splits1=$(counter guestmm splits)
	ok "balloon inflated to 64 MiB (half of RAM) in $(ms $t) ms; RSS ${rss0} -> ${rss1} KiB; THP leaves split: $((splits1 - splits0))"
	[ $((rss0 - rss1)) -ge $((32 << 10)) ] && ok "host RSS fell by $(( (rss0 - rss1) >> 10 )) MiB" ||
		bad "host RSS fell by only $(( (rss0 - rss1) >> 10 )) MiB"
	[ $((splits1 - splits0)) -gt 0 ] && ok "guestmm split $((splits1 - splits0)) THP leaves" || bad "no THP leaf split"
	inflated=$(info 'd["balloon"]["inflated_size"]')
	[ "$inflated" -ge $half ] 2>/dev/null && ok "the VMM unmapped $inflated bytes for the balloon" ||
		bad "inflated_size $inflated < $half"
	t=$(date +%s%N)
	remote resize --balloon 0 >/dev/null
	if poll 'd["balloon"]["actual_size"]' 0 600; then
		coll1=$(counter guestmm collapses)
		ok "balloon deflated in $(ms $t) ms; leaves collapsed: $((coll1 - coll0))"
		[ $((coll1 - coll0)) -gt 0 ] && ok "guestmm collapsed $((coll1 - coll0)) leaves (of $((splits1 - splits0)) split)" ||
			bad "no leaf collapsed after deflate"
	else
		bad "balloon did not deflate: $(info 'd["balloon"]')"
	fi
else
	bad "balloon did not inflate: $(info 'd["balloon"]')"
fi
# ---- free page reporting ---------------------------------------------------
# Paused so far (page_reporting_order = MAX_ORDER); the guest turns it on,
# frees the deflated 64 MiB and 48 MiB of tmpfs: Linux reports free 2 MiB
# blocks (>= 64 MiB free beyond its watermark, 2 s after a free).
rep0=$(counter devices balloon_reported_bytes)
echo go >&3
wait_for STEP-REPORT 600 || bad "the guest did not reach the reporting step"
rss0=$(rss_kib)
for i in $(seq 1 900); do
	rep1=$(counter devices balloon_reported_bytes)
	[ $((rep1 - rep0)) -ge $((32 << 20)) ] && break
	sleep 0.2
done
rss1=$(rss_kib)
[ $((rep1 - rep0)) -ge $((32 << 20)) ] &&
	ok "free page reporting: the guest reported $(( (rep1 - rep0) >> 20 )) MiB, discarded on the host (translations kept); RSS ${rss0} -> ${rss1} KiB" ||
	bad "free page reporting: $((rep1 - rep0)) bytes reported"
echo go >&3

fi

# ---- virtio-mem --------------------------------------------------------------
wait_for STEP-MEM 600 || bad "the guest did not reach the memory step"
memb=$(bytes "$MEM")
rss0=$(rss_kib); mapped0=$(counter guestmm mapped_bytes)
t=$(date +%s%N)
remote resize --memory $(( (128 << 20) + memb )) >/dev/null || bad "resize --memory"
if poll 'd["virtio_mem"]["plugged_size"]' $memb 900; then
	ok "virtio-mem: $MEM plugged in $(ms $t) ms; guestmm mapped $(( ($(counter guestmm mapped_bytes) - mapped0) >> 20 )) MiB more"
else
	bad "virtio-mem: plug did not complete: $(info 'd["virtio_mem"]')"
fi
echo go >&3
wait_for STEP-FILLED 400 || bad "the guest did not fill memory"
grep MemTotal "$tmp/console" | tr -d '\r' | sed 's/^/    guest: /'
rss1=$(rss_kib); res1=$(counter devices mem_resident_bytes)
echo go >&3
wait_for STEP-BUSY 300 || bad "the guest did not start its disk loop"
sleep 2
unm0=$(counter guestmm unmaps); rel0=$(counter guestmm released_bytes); reads0=$(counter devices blk0_requests_read 2>/dev/null || echo 0)
t=$(date +%s%N)
remote resize --memory $((128 << 20)) >/dev/null || bad "resize --memory back"
if poll 'd["virtio_mem"]["plugged_size"]' 0 900; then
	wall=$(ms $t)
	rss2=$(rss_kib); unm1=$(counter guestmm unmaps); rel1=$(counter guestmm released_bytes)
	res2=$(counter devices mem_resident_bytes)
	vmm_ns=$(counter devices mem_unplug_ns_total 2>/dev/null || echo 0)
	reads1=$(counter devices blk0_requests_read 2>/dev/null || echo 0)
	ok "virtio-mem: $MEM unplugged with the disk busy in $wall ms (VMM's unmap work $((vmm_ns / 1000)) us; disk reads meanwhile $((reads1 - reads0))); RSS ${rss0} -> ${rss1} (filled) -> ${rss2} KiB"
	[ $((rel1 - rel0)) -ge $memb ] && ok "guestmm released $(( (rel1 - rel0) >> 20 )) MiB in $((unm1 - unm0)) unmaps" ||
		bad "guestmm released only $((rel1 - rel0)) bytes"
	# The guest put $res1 bytes of its fill in the hot-plugged blocks (the
	# rest in boot RAM): that much host memory must be gone now.
	[ "$res2" = 0 ] && ok "nothing of the region is resident after the unplug (was $((res1 >> 20)) MiB)" ||
		bad "$res2 bytes of the region still resident"
	# The whole process's RSS is shown, not judged: offlining migrates the
	# guest's pages out of the region into boot RAM, whose first touches
	# raise RSS by as much as the region gave back (runs fell by 50 MiB of
	# 60, and by 11 of 62 in a slow one); the region's own count above is
	# the exact check.
	echo "    host RSS fell by $(( (rss1 - rss2) >> 10 )) MiB after the unplug (the region held $((res1 >> 20)) MiB; guest pages moved into boot RAM meanwhile)"
	[ -n "${VMM_VIRTIO_RESULT:-}" ] &&
		echo "${strategy:-default} $memb $wall $((vmm_ns / 1000000))" >> "$VMM_VIRTIO_RESULT"
else
	bad "virtio-mem: unplug did not complete: $(info 'd["virtio_mem"]')"
fi
echo go >&3

wait $vmm_pid; st=$?; vmm_pid=
[ $st = 0 ] && grep -q GUEST-DONE "$tmp/console" && ok "the guest finished and the VMM exited 0 after $(ms $start) ms" ||
	{ bad "VMM exit $st"; tail -20 "$tmp/console" | sed 's/^/    /'; }
got=$(tail -c +$((32 * 1048576 + 1)) "$tmp/data.img" | head -c $((8 << 20)) | sha256sum | cut -d' ' -f1)
want=$(sed -n 's/^DISK-WRITE \([0-9a-f]*\).*/\1/p' "$tmp/console" | tr -d '\r')
orig=$(tail -c +$((16 * 1048576 + 1)) "$tmp/data.orig" | head -c $((8 << 20)) | sha256sum | cut -d' ' -f1)
[ -n "$want" ] && [ "$got" = "$want" ] && [ "$got" = "$orig" ] &&
	ok "disk write: the image holds what the guest wrote (sha256 = the source range's)" ||
	bad "disk write: image $got, guest $want, source $orig"
# Any crash in the guest fails the test (a wrong page handed to the guest
# looks like a random crash); so does a guest step that failed.
if reports=$(guest_crash_reports "$tmp/console"); then
	bad "the guest's kernel reported a crash:"; printf '%s\n' "$reports" | sed 's/^/    /'
elif ! grep -q '^GUEST-DMESG-END' "$tmp/console"; then
	bad "the guest did not print its kernel log (no crash check)"
else
	ok "no crash: the guest's kernel reported no fatal signal, segfault or oops"
fi
if grep -q '^GUEST-ERROR' "$tmp/console"; then
	bad "a guest step failed:"; grep '^GUEST-ERROR' "$tmp/console" | tr -d '\r' | sed 's/^/    /'
fi
if grep -E "vmm: (error|warn)" "$tmp/vmm.log" | grep -v -e "prefault" >/dev/null; then
	echo "    VMM warnings:"; grep -E "vmm: (error|warn)" "$tmp/vmm.log" | head -10 | sed 's/^/    /'
fi
[ $fail = 0 ] || { echo "VMM log tail:"; tail -30 "$tmp/vmm.log" | sed 's/^/    /'; }
exit $fail
