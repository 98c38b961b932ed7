#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# test_net_linux.sh VMM CMDLINE-FILE - virtio-net with the real Linux guest
# (issue 15), in a network namespace of the test's own: the script re-runs
# itself under `unshare --net`, so the tap, its address and every packet
# live and die there.  The host side of the tap is 10.0.2.1/24, the guest's
# eth0 10.0.2.15/24.  One boot, the guest's script on a read-only disk
# (vdb, run as vmm.cmd="sh /dev/vdb"), steered through the serial console:
#   ping      guest -> host, 3 echo replies
#   to-guest  NET_MIB MiB (default 2) of random bytes from a host TCP server; the guest's nc
#             writes them to its disk vda (the host checks the disk's sha256
#             after the run: hashing NET_MIB MiB in the guest would take minutes
#             under this emulating KVM)
#   to-host   the guest's nc sends its NET_MIB MiB disk vdc; the host's sha256 of
#             what arrived equals the file's
#   churn     a second NET_MIB MiB to the guest while the host unplugs all
#             hot-plugged memory (virtio-mem, 64 MiB plugged before) and inflates
#             the balloon by 32 MiB: the bytes arrive whole, nothing crashes
#   crashes   none: print_fatal_signals=1 and the guest's dmesg (guest_klog.sh)
# The device's MTU is 65520 (the guest's eth0 takes it from the MTU
# feature): under this emulating KVM the guest pays per packet and per byte
# (measured: 16 MiB host -> guest to /dev/null in 88 s at MTU 65520, 0.19
# MB/s); NET_MIB is 2 here and 16 in `scripts/test --long`.
# Transfers are bounded: every server gives up after NET_IO_TIMEOUT seconds
# (default 60 + 60 * NET_MIB) per call, the guest's nc after the same (-w),
# the whole test after 4 times that + 120 s.  The figures printed (MB/s through the guest) are emulation-bound:
# every guest instruction is emulated here (shared/GUEST-LINUX.md).
# Environment: VMM_GUEST_LINUX_DIR (the kernel), NET_MIB, NET_IO_TIMEOUT.
# Missing KVM, kernel, root or /dev/net/tun: a loud message and exit 77.
set -u
if [ $# -ne 2 ]; then
	echo "usage: $0 VMM CMDLINE-FILE" >&2
	exit 2
fi
if [ ! -c /dev/kvm ]; then
	echo "SKIP: /dev/kvm is missing: the network guest test did NOT run" >&2; exit 77
fi
if [ "$(id -u)" -ne 0 ] || [ ! -c /dev/net/tun ]; then
	echo "SKIP: not root or no /dev/net/tun: the network guest test did NOT run" >&2; exit 77
fi
G=${VMM_GUEST_LINUX_DIR:-}
if [ -z "$G" ] || [ ! -f "$G/vmlinux" ]; then
	echo "SKIP: VMM_GUEST_LINUX_DIR not set (run scripts/test): network guest test NOT run" >&2
	exit 77
fi
if [ -z "${VMM_TEST_IN_NETNS:-}" ]; then
	# every bound grows with the transfer size (NET_MIB)
	t=${NET_IO_TIMEOUT:-$((60 + 60 * ${NET_MIB:-2}))}
	VMM_TEST_IN_NETNS=1 exec timeout -k 10 $((4 * t + 120)) unshare --net "$0" "$@"
fi
vmm=$(realpath "$1"); base=$(cat "$2")
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=guest_klog.sh
. "$here/guest_klog.sh"
io_timeout=${NET_IO_TIMEOUT:-$((60 + 60 * ${NET_MIB:-2}))}
tmp=$(mktemp -d)
vmm_pid= srv=()
cleanup() {
	[ -n "$vmm_pid" ] && kill -9 "$vmm_pid" 2>/dev/null
	for p in "${srv[@]}"; do kill "$p" 2>/dev/null; done
	exec 3>&- 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# ---- the namespace's network ----------------------------------------------
tap=vmmnet0
ip link set lo up
ip tuntap add dev $tap mode tap vnet_hdr || { bad "ip tuntap add $tap"; exit 1; }
ip addr add 10.0.2.1/24 dev $tap
ip link set $tap up

# ---- the data and the guest's script ---------------------------------------
mib=${NET_MIB:-2}
head -c $((mib << 20)) /dev/urandom >"$tmp/to-guest"
head -c $((mib << 20)) /dev/urandom >"$tmp/to-guest2"
head -c $((mib << 20)) /dev/urandom >"$tmp/vdc.img"
head -c $((2 * mib << 20)) /dev/zero >"$tmp/vda.img"
sum() { sha256sum "$1" | cut -d' ' -f1; }
want1=$(sum "$tmp/to-guest") want2=$(sum "$tmp/to-guest2") want3=$(sum "$tmp/vdc.img")
cat >"$tmp/script" <<EOF
set -o pipefail
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up && echo "NET-UP \$(cat /sys/class/net/eth0/address)"
ping -c 3 -W 10 10.0.2.1 && echo PING-OK
# rate WHAT CMD...: run CMD, print the seconds it took (/proc/uptime)
rate() {
	what=\$1; shift
	t0=\$(cut -d' ' -f1 /proc/uptime)
	"\$@"
	st=\$?
	t1=\$(cut -d' ' -f1 /proc/uptime)
	echo "NET-TIME \$what \$st \$t0 \$t1"
}
rate to-guest sh -c 'nc -w $io_timeout 10.0.2.1 5001 </dev/null >/dev/vda && sync'
echo STEP-TO-HOST; read x
rate to-host sh -c 'nc -w $io_timeout 10.0.2.1 5002 </dev/vdc >/dev/null'
echo STEP-CHURN; read x
rate churn sh -c 'nc -w $io_timeout 10.0.2.1 5003 </dev/null | dd of=/dev/vda bs=1M seek=$mib 2>/dev/null && sync'
cat /sys/class/net/eth0/statistics/rx_packets /sys/class/net/eth0/statistics/tx_packets | tr '\n' ' ' | sed 's/^/NET-PACKETS /'; echo
echo GUEST-DMESG-BEGIN; dmesg; echo GUEST-DMESG-END
echo GUEST-DONE
EOF
size=$(stat -c %s "$tmp/script"); pad=$(( (512 - size % 512) % 512 + 512 ))
head -c $pad /dev/zero | tr '\0' '\n' >>"$tmp/script"

# serve PORT send FILE | serve PORT recv OUT - one TCP connection on
# 10.0.2.1:PORT, bounded by io_timeout; "recv" writes the sha256 of what
# came to OUT.
serve() {
	python3 "$here/net_serve.py" 10.0.2.1 "$@" "$io_timeout" &
	srv+=($!)
}
serve 5001 send "$tmp/to-guest"
serve 5002 recv "$tmp/from-guest"
serve 5003 send "$tmp/to-guest2"

mkfifo "$tmp/in"
exec 3<>"$tmp/in"
sock=$tmp/api.sock
netarg="tap=$tap,mac=52:54:00:00:02:0f,mtu=65520"
args=(run --kernel "$G/vmlinux" --initrd "$G/initramfs.cpio" --memory 128M
      --cmdline "$base print_fatal_signals=1 memhp_default_state=online_movable vmm.cmd=\"sh /dev/vdb\""
      --disk "path=$tmp/vda.img" --disk "path=$tmp/script,readonly=on" --disk "path=$tmp/vdc.img,readonly=on"
      --net "$netarg" --balloon size=0 --hotplug-memory 128M
      --serial stdio --api-socket "path=$sock" --on-reboot exit --log-level info)
start=$(date +%s%N)
"$vmm" "${args[@]}" <&3 >"$tmp/console" 2>"$tmp/vmm.log" &
vmm_pid=$!

wait_for() { # PATTERN SECONDS: the console shows PATTERN
	local limit=$(( $2 * 10 )) i=0
	until grep -q "$1" "$tmp/console" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt $limit ] || ! kill -0 $vmm_pid 2>/dev/null; then return 1; fi
		sleep 0.1
	done
}
remote() { "$vmm" remote --api-socket "$sock" "$@"; }
info() { remote info | python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
# guest_rate WHAT: "N MB/s in S s" from the guest's NET-TIME line
guest_rate() {
	tr -d '\r' <"$tmp/console" | awk -v w="$1" -v b=$((mib << 20)) \
		'$1 == "NET-TIME" && $2 == w { d = $5 - $4; printf "%.2f MB/s (%.1f s)", b / d / 1e6, d }'
}
showtails() { tail -n 30 "$tmp/console" | sed 's/^/    console: /'; tail -n 20 "$tmp/vmm.log" | sed 's/^/    vmm: /'; }

if ! wait_for STEP-TO-HOST "$io_timeout"; then
	bad "the guest did not finish its first transfer"; showtails; exit 1
fi
echo "guest booted and received $mib MiB after $(ms "$start") ms"
grep -q "NET-UP 52:54:00:00:02:0f" "$tmp/console" && ok "eth0 is up with the MAC given (52:54:00:00:02:0f)" ||
	bad "eth0: $(grep -a NET-UP "$tmp/console" | tr -d '\r')"
grep -q PING-OK "$tmp/console" && ok "ping guest -> host: $(grep -a 'packets transmitted' "$tmp/console" | tr -d '\r')" ||
	bad "ping failed: $(grep -a -A3 'PING 10.0.2.1' "$tmp/console" | tr -d '\r' | tr '\n' ' ')"
grep -q "NET-TIME to-guest 0 " "$tmp/console" && ok "host -> guest: $mib MiB received by the guest's nc, $(guest_rate to-guest)" ||
	bad "host -> guest: $(grep -a 'NET-TIME to-guest' "$tmp/console" | tr -d '\r')"

# Plug 64 MiB now, for the third transfer to unplug.
remote resize --memory $((192 << 20)) >/dev/null || bad "resize --memory (plug)"
for ((i = 0; i < 1200; i++)); do
	[ "$(info 'd["virtio_mem"]["plugged_size"]' 2>/dev/null)" = $((64 << 20)) ] && break
	sleep 0.1
done
echo go >&3
if ! wait_for STEP-CHURN "$io_timeout"; then
	bad "the guest did not finish its second transfer"; showtails; exit 1
fi
for ((i = 0; i < 50; i++)); do [ -s "$tmp/from-guest" ] && break; sleep 0.1; done
got=$(cut -d' ' -f1 "$tmp/from-guest" 2>/dev/null)
[ "$got" = "$want3" ] && ok "guest -> host: $mib MiB, sha256 equal to the guest disk's, $(guest_rate to-host)" ||
	bad "guest -> host: sha256/bytes $(cat "$tmp/from-guest" 2>/dev/null), want $want3 $((mib << 20))"

# The third transfer runs while memory moves under it.
plugged0=$(info 'd["virtio_mem"]["plugged_size"]')
echo go >&3
sleep 2
remote resize --memory $((128 << 20)) >/dev/null || bad "resize --memory (unplug)"
remote resize --balloon $((32 << 20)) >/dev/null || bad "resize --balloon"
if ! wait_for GUEST-DONE "$io_timeout"; then
	bad "the guest did not finish its third transfer"; showtails; exit 1
fi
plugged1=$(info 'd["virtio_mem"]["plugged_size"]' 2>/dev/null)
bal=$(info 'd["balloon"]["actual_size"]' 2>/dev/null)
echo "during the third transfer: virtio-mem plugged $plugged0 -> ${plugged1:-?} bytes, balloon actual ${bal:-?} bytes"
[ "${plugged1:-x}" = 0 ] && [ "$plugged0" -gt 0 ] 2>/dev/null && ok "virtio-mem unplugged $plugged0 bytes during the transfer" ||
	echo "NOTE: the unplug had not finished when the transfer did (plugged ${plugged1:-?})"
grep -q "NET-TIME churn 0 " "$tmp/console" && ok "host -> guest under unplug + balloon: $mib MiB received, $(guest_rate churn)" ||
	bad "transfer under unplug + balloon: $(grep -a 'NET-TIME churn' "$tmp/console" | tr -d '\r')"
grep -a NET-PACKETS "$tmp/console" | tr -d '\r' | sed 's/^/    guest eth0 rx, tx packets: /'
echo go >&3
for ((i = 0; i < 300; i++)); do kill -0 $vmm_pid 2>/dev/null || break; sleep 0.1; done
kill -0 $vmm_pid 2>/dev/null && { remote shutdown >/dev/null 2>&1; sleep 1; }
wait $vmm_pid 2>/dev/null
vmm_pid=
got1=$(head -c $((mib << 20)) "$tmp/vda.img" | sha256sum | cut -d' ' -f1)
[ "$got1" = "$want1" ] && ok "the first $mib MiB landed on the guest's disk intact (sha256 equal)" ||
	bad "first transfer: disk sha256 $got1, want $want1"
got2=$(tail -c +$(((mib << 20) + 1)) "$tmp/vda.img" | head -c $((mib << 20)) | sha256sum | cut -d' ' -f1)
[ "$got2" = "$want2" ] && ok "the $mib MiB sent during unplug + balloon landed intact (sha256 equal)" ||
	bad "third transfer: disk sha256 $got2, want $want2"
if guest_crash_reports "$tmp/console"; then
	bad "the guest's kernel reported a crash"
else
	grep -q GUEST-DMESG-END "$tmp/console" && ok "no crash in the guest's kernel log" || bad "no dmesg from the guest"
fi
s=$(grep -E "AddressSanitizer|LeakSanitizer|runtime error" "$tmp/vmm.log" | head -n 3)
[ -z "$s" ] && ok "no sanitizer report" || bad "sanitizer: $s"
grep -E "net|warn|error" "$tmp/vmm.log" | grep -v "unclaimed port" | sort | uniq -c | sort -rn | head -n 8 | sed 's/^/    vmm log: /'
[ $fail = 0 ] || showtails
echo "net_linux: $([ $fail = 0 ] && echo all passed || echo some FAILED)"
exit $fail
