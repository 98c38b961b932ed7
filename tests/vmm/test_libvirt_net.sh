#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# test_libvirt_net.sh VMM CMDLINE-FILE - a Linux guest with a network, started
# by libvirt 11.3's Cloud Hypervisor driver (issue 15): the domain has an
# <interface type='ethernet'> (virtio); libvirt creates the tap and hands its
# fd to the VMM with vm.add-net (SCM_RIGHTS), then boots.  The test runs in a
# network namespace of its own (it re-runs itself under `unshare --net`):
# libvirtd, its tap and every packet live and die there.  The host side of
# the tap gets 10.0.2.1/24 once libvirt made it, the guest 10.0.2.15/24:
#   - virsh start: the VMM got the tap as an fd (vm.add-net in its log, a
#     tun fd held), thread _net0, the tap is up in the namespace;
#   - guest -> host ping;
#   - NET_MIB MiB (default 2; 16 in `scripts/test --long`; MTU 65520, see
#     test_net_linux.sh) host -> guest (written to the guest's disk vda, its
#     sha256 checked on the host after the run) and as much guest -> host (its disk
#     vdc; the sha256 of what arrived checked);
#   - virsh domifaddr / domiflist name the interface; destroy: the VMM gone,
#     the tap gone.
# Environment: VMM_LIBVIRT11_PREFIX (scripts/libvirt-setup 11.3),
# VMM_GUEST_LINUX_DIR, NET_MIB, NET_IO_TIMEOUT (default 60 + 60 * NET_MIB s; the whole test 4 times that + 120).  Without /dev/kvm,
# root, /dev/net/tun, the kernel or libvirt 11.3: skipped loudly (77).
set -u
if [ $# -ne 2 ]; then
	echo "usage: $0 VMM CMDLINE-FILE" >&2
	exit 2
fi
skip() { echo "SKIP: $*: the libvirt network test did NOT run" >&2; exit 77; }
[ -c /dev/kvm ] || skip "/dev/kvm is missing"
[ "$(id -u)" -eq 0 ] && [ -c /dev/net/tun ] || skip "not root or no /dev/net/tun"
G=${VMM_GUEST_LINUX_DIR:-}
[ -n "$G" ] && [ -f "$G/vmlinux" ] || skip "VMM_GUEST_LINUX_DIR not set (run scripts/test)"
prefix=${VMM_LIBVIRT11_PREFIX:-}
[ -n "$prefix" ] && [ -x "$prefix/sbin/libvirtd" ] || skip "VMM_LIBVIRT11_PREFIX not set (run scripts/test)"
if [ -z "${VMM_TEST_IN_NETNS:-}" ]; then
	# every bound grows with the transfer size (NET_MIB)
	t=${NET_IO_TIMEOUT:-$((60 + 60 * ${NET_MIB:-2}))}
	VMM_TEST_IN_NETNS=1 exec timeout -k 10 $((4 * t + 120)) unshare --net "$0" "$@"
fi
vmm=$(realpath "$1"); base=$(cat "$2")
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=libvirt_lib.sh
. "$here/libvirt_lib.sh"
# shellcheck source=guest_klog.sh
. "$here/guest_klog.sh"
io_timeout=${NET_IO_TIMEOUT:-$((60 + 60 * ${NET_MIB:-2}))}
tmp=$(mktemp -d /tmp/test_libvirt_net.XXXXXX)
chmod 755 "$tmp"
srv=() catpid=
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
cleanup() {
	local p
	for p in "${srv[@]}" $catpid; do kill "$p" 2>/dev/null; done
	libvirt_stop
	if [ $fail = 0 ]; then rm -rf "$tmp"; else echo "(logs kept in $tmp)"; fi
}
trap cleanup EXIT
vsh() { timeout -k 5 60 "$prefix/bin/virsh" -c ch:///system "$@"; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
ip link set lo up

# ---- data, the guest's script, the servers --------------------------------
mib=${NET_MIB:-2}
head -c $((mib << 20)) /dev/urandom >"$tmp/to-guest"
head -c $((mib << 20)) /dev/urandom >"$tmp/vdc.img"
head -c $((mib << 20)) /dev/zero >"$tmp/vda.img"
want1=$(sha256sum <"$tmp/to-guest" | cut -d' ' -f1) want2=$(sha256sum <"$tmp/vdc.img" | cut -d' ' -f1)
cat >"$tmp/script" <<EOF
set -o pipefail
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up && echo "NET-UP \$(cat /sys/class/net/eth0/address)"
# the host gives its side of the tap an address once libvirt made it
i=0; until ping -c 1 -W 1 10.0.2.1 >/dev/null 2>&1 || [ \$i -ge 60 ]; do i=\$((i + 1)); done
ping -c 3 -W 10 10.0.2.1 && echo PING-OK
nc -w $io_timeout 10.0.2.1 5001 </dev/null >/dev/vda && sync && echo TO-GUEST-OK
nc -w $io_timeout 10.0.2.1 5002 </dev/vdc >/dev/null && echo TO-HOST-OK
echo GUEST-DMESG-BEGIN; dmesg; echo GUEST-DMESG-END
echo GUEST-DONE
# wait here: the host destroys the domain (a reset would run this again)
read x; read x
EOF
size=$(stat -c %s "$tmp/script"); pad=$(( (512 - size % 512) % 512 + 512 ))
head -c $pad /dev/zero | tr '\0' '\n' >>"$tmp/script"
chmod 644 "$tmp"/*.img "$tmp/script"

serve() { # PORT send FILE | PORT recv OUT
	python3 "$here/net_serve.py" 10.0.2.1 "$@" "$io_timeout" &
	srv+=($!)
}
serve 5001 send "$tmp/to-guest"
serve 5002 recv "$tmp/from-guest"

# ---- the domain ------------------------------------------------------------
dom=vmmnet-$$
cat >"$tmp/$dom.xml" <<EOF
<domain type='kvm'>
  <name>$dom</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>$G/vmlinux</kernel>
    <initrd>$G/initramfs.cpio</initrd>
    <cmdline>$base print_fatal_signals=1 vmm.cmd="sh /dev/vdb"</cmdline>
  </os>
  <devices>
    <disk type='file' device='disk'><source file='$tmp/vda.img'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><source file='$tmp/script'/><target dev='vdb' bus='virtio'/><readonly/></disk>
    <disk type='file' device='disk'><source file='$tmp/vdc.img'/><target dev='vdc' bus='virtio'/><readonly/></disk>
    <interface type='ethernet'>
      <mac address='52:54:00:00:03:0f'/>
      <target dev='vmmlv0'/>
      <model type='virtio'/>
      <mtu size='65520'/>
    </interface>
    <console type='pty'><target type='virtio'/></console>
  </devices>
</domain>
EOF
wrapper=$tmp/cloud-hypervisor-logged
cat >"$wrapper" <<EOF
#!/bin/bash
exec -a cloud-hypervisor '$vmm' "\$@" 2>>'$tmp/vmm.log'
EOF
chmod 755 "$wrapper"
libvirt_start "$prefix" "$wrapper" "$tmp/lv" || { bad "libvirtd did not start"; exit 1; }
echo "libvirt $("$prefix/sbin/libvirtd" --version | awk '{print $NF}'), pid $LIBVIRT_PID"
t0=$(date +%s%N)
out=$(vsh create "$tmp/$dom.xml" 2>&1); st=$?
[ $st = 0 ] && ok "virsh create with <interface type='ethernet'>: $(echo $out) ($(ms "$t0") ms)" ||
	{ bad "virsh create: $out"; tail -n 30 "$tmp/vmm.log" "$tmp/lv/libvirtd.log" 2>/dev/null | sed 's/^/    /'; exit 1; }
ip addr add 10.0.2.1/24 dev vmmlv0 && ip link set vmmlv0 up && ok "libvirt made tap vmmlv0 in the namespace" ||
	bad "no tap vmmlv0: $(ip -br link | tr '\n' ' ')"
pid=$(sed -n "s/.*<domstatus[^>]* pid='\([0-9]*\)'.*/\1/p" "$prefix/var/run/libvirt/ch/$dom.xml" 2>/dev/null | head -n 1)
[ -z "$pid" ] && pid=$(pgrep -f "^cloud-hypervisor --api-socket" | head -n 1)
grep -q "vm.add-net: .* on a tap passed as an fd" "$tmp/vmm.log" && ok "the VMM got the tap as an fd with vm.add-net" ||
	bad "no vm.add-net with an fd in the VMM's log"
n=$(ls -l "/proc/${pid:-0}/fd" 2>/dev/null | grep -c /dev/net/tun)
# the config's fd (kept for a reboot) and the device's dup of it
[ "$n" = 2 ] && ok "the VMM (pid $pid) holds the tap: the config's fd and the device's" ||
	bad "the VMM (pid ${pid:-?}) holds $n tun fds (want 2: the config's and the device's)"
grep -qw _net0 <(cat /proc/"${pid:-0}"/task/*/comm 2>/dev/null) && ok "thread _net0 runs" || bad "no _net0 thread"
pty=$(vsh ttyconsole "$dom" 2>/dev/null)
if [ -c "$pty" ]; then
	stty -F "$pty" raw -echo 2>/dev/null
	python3 "$here/api_helper.py" ptycat "$pty" "$tmp/console" &
	catpid=$!
else
	bad "no console pty ($pty)"
fi
for ((i = 0; i < io_timeout * 10; i++)); do
	grep -q GUEST-DONE "$tmp/console" 2>/dev/null && break
	kill -0 "${pid:-0}" 2>/dev/null || break
	sleep 0.1
done
echo "guest done after $(ms "$t0") ms"
c=$(tr -d '\r' <"$tmp/console" 2>/dev/null)
grep -q "NET-UP 52:54:00:00:03:0f" <<<"$c" && ok "eth0 up with libvirt's MAC" || bad "eth0: $(grep NET-UP <<<"$c")"
grep -q PING-OK <<<"$c" && ok "ping guest -> host: $(grep 'packets transmitted' <<<"$c" | tail -n 1)" || bad "ping failed"
grep -q TO-GUEST-OK <<<"$c" && ok "host -> guest: $mib MiB received" || bad "host -> guest did not finish"
got=$(cut -d' ' -f1 "$tmp/from-guest" 2>/dev/null)
[ "$got" = "$want2" ] && ok "guest -> host: $mib MiB, sha256 equal" || bad "guest -> host: $(cat "$tmp/from-guest" 2>/dev/null), want $want2"
out=$(vsh domiflist "$dom" 2>&1)
grep -q "vmmlv0 .*ethernet.*52:54:00:00:03:0f" <<<"$out" && ok "domiflist: $(grep vmmlv0 <<<"$out" | tr -s ' ')" ||
	echo "NOTE: domiflist: $(echo $out)"
out=$(vsh destroy "$dom" 2>&1)
[ $? = 0 ] && ok "destroy: $(echo $out)" || bad "destroy: $out"
for ((i = 0; i < 50; i++)); do kill -0 "${pid:-0}" 2>/dev/null || break; sleep 0.1; done
kill -0 "${pid:-0}" 2>/dev/null && bad "the VMM (pid $pid) still runs after destroy" || ok "the VMM is gone"
for ((i = 0; i < 20; i++)); do ip link show vmmlv0 >/dev/null 2>&1 || break; sleep 0.1; done
ip link show vmmlv0 >/dev/null 2>&1 && bad "tap vmmlv0 left behind" || ok "tap vmmlv0 is gone"
got=$(head -c $((mib << 20)) "$tmp/vda.img" | sha256sum | cut -d' ' -f1)
[ "$got" = "$want1" ] && ok "the $mib MiB sent to the guest landed on its disk intact (sha256 equal)" ||
	bad "host -> guest: disk sha256 $got, want $want1"
if guest_crash_reports "$tmp/console"; then bad "the guest's kernel reported a crash"; fi
s=$(grep -E "AddressSanitizer|LeakSanitizer|runtime error" "$tmp/vmm.log" | head -n 3)
[ -z "$s" ] && ok "no sanitizer report" || bad "sanitizer: $s"
if [ $fail != 0 ]; then
	tail -n 30 "$tmp/console" 2>/dev/null | sed 's/^/    console: /'
	tail -n 30 "$tmp/vmm.log" | sed 's/^/    vmm: /'
	grep -E "error|warn" "$tmp/lv/libvirtd.log" 2>/dev/null | tail -n 10 | sed 's/^/    libvirtd: /'
fi
echo "libvirt_net: $([ $fail = 0 ] && echo all passed || echo some FAILED)"
exit $fail
