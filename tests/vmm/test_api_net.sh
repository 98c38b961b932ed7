#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# test_api_net.sh VMM IMAGE - virtio-net through the control API (issue 15),
# in a network namespace of its own (the script re-runs itself under
# `unshare --net`: every tap it makes lives and dies there):
#   - vm.add-net with a tap's fd passed with the request (SCM_RIGHTS), as
#     libvirt 10.7+ sends it: 200 {"id":...}, vm.info lists the device, the
#     VMM holds the tap;
#   - refusals, each 4xx with a reason, and no fd kept: two fds (one queue
#     pair only), num_queues 4, no tap and no fd, num_fds that does not
#     match, a tap name and an fd both, a third device, fds passed with a
#     request that takes none (vm.info): the VMM's fd count is unchanged;
#   - vm.boot: the guest (IMAGE, the exitloop test image) runs with its
#     net device, thread _net0 exists; add-net on a running VM is 409;
#   - libvirt 9.0's shape: vm.create with "net":[{"tap":NAME}] boots with
#     the tap opened by name;
#   - vm.delete closes the taps (no tun fd left).
# Every check prints ok/FAIL; exit 1 if any failed.  Needs root and
# /dev/net/tun, /dev/kvm for the boots: otherwise skipped loudly (77).
set -u
if [ $# -ne 2 ]; then
	echo "usage: $0 VMM IMAGE" >&2
	exit 2
fi
if [ "$(id -u)" -ne 0 ] || [ ! -c /dev/net/tun ]; then
	echo "SKIP: not root or no /dev/net/tun: the API network tests did NOT run" >&2
	exit 77
fi
if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm ]; then
	echo "SKIP: /dev/kvm is missing or not accessible: the API network tests did NOT run" >&2
	exit 77
fi
if [ -z "${VMM_TEST_IN_NETNS:-}" ]; then
	VMM_TEST_IN_NETNS=1 exec timeout -k 5 240 unshare --net "$0" "$@"
fi
vmm=$(realpath "$1")
img=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
helper=$here/api_helper.py
NAME=test_api_net
# shellcheck source=api_lib.sh
. "$here/api_lib.sh"
sock=$tmp/api.sock

expect() {
	if [ "$CODE" = "$1" ]; then ok "$2 -> $CODE"; else bad "$2: got $CODE, wanted $1: $BODY"; fi
}
# sendfds METHOD ENDPOINT BODY FD... - sets CODE and BODY.
sendfds() {
	local out
	out=$(timeout 20 python3 "$helper" sendfds "$sock" "$@" 2>&1)
	CODE=${out%% *} BODY=${out#* }
}
# expect_refused WHAT WANT - CODE is 4xx and BODY holds WANT.
expect_refused() {
	if [[ $CODE == 4* ]] && grep -qF -- "$2" <<<"$BODY"; then ok "$1 -> $CODE $BODY"
	else bad "$1: got $CODE $BODY, wanted 4xx with '$2'"; fi
}
tun_fds() { ls -l "/proc/$pid/fd" 2>/dev/null | grep -c '/dev/net/tun'; }
all_fds() { find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
start_vmm() {
	local i
	"$vmm" run --api-socket "path=$sock" --log-level info </dev/null >"$tmp/vmm.out" 2>"$tmp/vmm.log" &
	pid=$!
	pids+=("$pid")
	for ((i = 0; i < 200; i++)); do
		curl -s --max-time 2 --unix-socket "$sock" -o /dev/null http://localhost/api/v1/vmm.ping &&
			return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
showlog() { echo "--- the VMM's log"; tail -n 30 "$tmp/vmm.log" | sed 's/^/    /'; }
threads() { cat /proc/"$pid"/task/*/comm 2>/dev/null | sort | tr '\n' ' '; }
create='{"payload":{"kernel":"'$img'"},"cpus":{"boot_vcpus":1},"memory":{"size":67108864},"serial":{"mode":"Null"},"console":{"mode":"Off"}}'

echo "== vm.add-net with fds (SCM_RIGHTS)"
start_vmm || { bad "vmm did not start"; showlog; exit 1; }
sendfds PUT vm.add-net '{"mac":"52:54:00:00:00:01"}' tap:early0
expect_refused "vm.add-net before vm.create" "no VM"
api PUT vm.create "$create"
expect 204 "vm.create"
fd0=$(all_fds)
sendfds PUT vm.add-net '{"id":"net_0","mac":"52:54:00:12:34:56","num_queues":2,"queue_size":256}' tap:vmmtap0
check "vm.add-net with one tap fd: $CODE $BODY" [ "$CODE" = 200 -a "$BODY" = '{"id":"net_0"}' ]
check "the VMM holds the tap ($(tun_fds) tun fd)" [ "$(tun_fds)" = 1 ]
api GET vm.info
check "vm.info lists it" grep -q '"net":\[{"id":"net_0","tap":null,"mac":"52:54:00:12:34:56"' <<<"$BODY"
fd1=$(all_fds)
sendfds PUT vm.add-net '{"mac":"52:54:00:00:00:02"}' tap:vmmtap1 tap:vmmtap2
expect_refused "two fds" "one queue pair"
sendfds PUT vm.add-net '{"num_queues":4}' tap:vmmtap1 tap:vmmtap2
expect_refused "num_queues 4" "num_queues: 4"
sendfds PUT vm.add-net '{"mac":"52:54:00:00:00:02"}'
expect_refused "no tap and no fd" "no tap"
sendfds PUT vm.add-net '{"num_fds":2}' tap:vmmtap1
expect_refused "num_fds 2 with one fd" "num_fds is 2 but 1 fd came"
sendfds PUT vm.add-net '{"tap":"vmmtap1"}' tap:vmmtap1
expect_refused "a name and an fd" "not both"
sendfds PUT vm.add-net '{"id":"net_0"}' tap:vmmtap1
expect_refused "the same id again" "exists"
sendfds PUT vm.add-net '{"mac":"zz"}' tap:vmmtap1
expect_refused "a bad mac" "is not a MAC"
sendfds GET vm.info '' null null null
expect 200 "vm.info with three fds passed along"
sleep 0.1
check "no fd kept from the refusals or vm.info: $fd1 before, $(all_fds) after, $(tun_fds) tun" \
	[ "$(all_fds)" = "$fd1" -a "$(tun_fds)" = 1 ]
grep -q "file descriptors passed with a request that takes none closed" "$tmp/vmm.log" &&
	ok "the VMM says it closed them"
sendfds PUT vm.add-net '{}' tap:vmmtap1
check "a second device: $CODE $BODY" [ "$CODE" = 200 -a "$BODY" = '{"id":"_net1"}' ]
sendfds PUT vm.add-net '{}' tap:vmmtap2
expect_refused "a third device" "at most 2"

echo "== vm.boot with the net devices"
api PUT vm.boot
expect 204 "vm.boot"
sleep 0.5
t=$(threads)
check "threads _net0 and _net1 run ($t)" eval 'grep -qw _net0 <<<"$t" && grep -qw _net1 <<<"$t"'
sendfds PUT vm.add-net '{}' tap:vmmtap3
check "vm.add-net on a running VM: 409 ($CODE $BODY)" eval '[ "$CODE" = 409 ] && grep -q "hot-plug" <<<"$BODY"'
ip link show vmmtap0 >/dev/null 2>&1 && ok "tap vmmtap0 exists while the VM runs"
api PUT vm.delete
expect 204 "vm.delete"
sleep 0.2
check "no tun fd left after vm.delete ($(tun_fds))" [ "$(tun_fds)" = 0 ]
check "fds back to where they were before the devices ($fd0 -> $(all_fds))" [ "$(all_fds)" -le "$fd0" ]

echo "== libvirt 9.0's shape: the tap named in vm.create"
ip tuntap add dev vmmtap9 mode tap vnet_hdr || bad "ip tuntap add"
api PUT vm.create "${create%\}},\"net\":[{\"tap\":\"vmmtap9\",\"mac\":\"52:54:00:00:00:09\"}]}"
expect 204 "vm.create with net [{tap: vmmtap9}]"
api PUT vm.boot
expect 204 "vm.boot"
sleep 0.3
check "thread _net0 runs ($(threads))" grep -qw _net0 <<<"$(threads)"
check "the VMM holds a tun fd ($(tun_fds))" [ "$(tun_fds)" = 1 ]
api PUT vm.delete
# (a missing tap is created by TUNSETIFF, as Cloud Hypervisor does; lo is
# an interface that is not a tap)
api PUT vm.create "${create%\}},\"net\":[{\"tap\":\"lo\"}]}"
if [ "$CODE" = 204 ]; then api PUT vm.boot; fi
check "an interface that is not a tap (lo): refused, named ($CODE $BODY)" \
	eval '[[ $CODE == [45]* ]] && grep -qw lo <<<"$BODY"'
api GET vmm.ping
expect 200 "the VMM still answers"
kill -TERM "$pid"
for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
check "SIGTERM: the VMM exits" eval '! kill -0 "$pid" 2>/dev/null'
s=$(grep -E "AddressSanitizer|LeakSanitizer|runtime error" "$tmp/vmm.log" | head -n 3)
check "no sanitizer report${s:+: $s}" [ -z "$s" ]
[ $fail = 0 ] || showlog
echo "api_net: $checks checks, $([ $fail = 0 ] && echo all passed || echo some FAILED)"
exit $fail
