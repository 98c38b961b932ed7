#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
# test_cli.sh VMM IMAGE - the command line: bad values get one clear error line and
# exit status 2; --help/--version work; the demo runs and reports.
vmm=$1
good=$2   # a bootable image (build/images/hello)
fail=0
check() { # expected-status description command...
	want=$1; what=$2; shift 2
	out=$("$@" 2>&1); got=$?
	if [ "$got" != "$want" ]; then
		echo "FAIL: $what: exit $got, wanted $want"; echo "$out" | sed 's/^/    /'; fail=1
	else
		echo "ok: $what"
	fi
	LAST=$out
}
check 0 "--version" "$vmm" --version
echo "$LAST" | grep -q '^vmm [0-9]' || { echo "FAIL: version line: $LAST"; fail=1; }
check 0 "--help" "$vmm" --help
check 2 "no command" "$vmm"
check 2 "unknown command" "$vmm" frobnicate
check 2 "unknown option" "$vmm" --frob
check 2 "bad log level" "$vmm" --log-level loud demo
check 2 "demo: bad size" "$vmm" demo --memory 12Q
echo "$LAST" | grep -q "12Q" || { echo "FAIL: the error does not name the value"; fail=1; }
check 2 "demo: size overflow" "$vmm" demo --memory 99999999999999999999G
check 2 "demo: bad backing" "$vmm" demo --backing floppy
check 2 "demo: bad strategy" "$vmm" demo --strategy magic
check 2 "demo: bad walkers" "$vmm" demo --walkers -3
check 2 "demo: stray argument" "$vmm" demo extra
check 0 "demo runs" "$vmm" demo --memory 64M --walkers 2 --seconds 0 --prefault
echo "$LAST" | grep -q "unplug of 32 MiB" || { echo "FAIL: no unplug report"; echo "$LAST"; fail=1; }
echo "$LAST" | grep -q "^serialize_issued" || { echo "FAIL: no statistics"; fail=1; }

# vmm run: a table of bad command lines, each refused with exit 2 and an
# error that names the problem, before any guest memory exists.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
: > "$tmp/empty"; head -c 4096 /dev/urandom > "$tmp/random"; printf 'hello' > "$tmp/initrd"
check_run() { # expected-substring args...
	want=$1; shift
	out=$("$vmm" run "$@" 2>&1); got=$?
	if [ "$got" != 2 ] || ! printf '%s' "$out" | grep -qF -- "$want"; then
		echo "FAIL: vmm run $*: exit $got, wanted 2 and '$want'"; echo "$out" | sed 's/^/    /'; fail=1
	else
		echo "ok: vmm run $* -> $want"
	fi
}
check_run "--kernel is required"
check_run "No such file" --kernel "$tmp/missing"
check_run "empty" --kernel "$tmp/empty"
check_run "$tmp/random" --kernel "$tmp/random"
check_run "not a regular file" --kernel "$tmp"
k=$tmp/random
check_run "--memory" --kernel "$k" --memory lots
check_run "below the minimum" --kernel "$k" --memory 1M
check_run "multiple of the thp page size" --kernel "$k" --memory 257M
check_run "more than 1T" --kernel "$k" --memory 2T
check_run "--vcpus" --kernel "$k" --vcpus 0
check_run "--vcpus" --kernel "$k" --vcpus 65
check_run "--vcpus" --kernel "$k" --vcpus two
check_run "--backing" --kernel "$k" --backing floppy
check_run "--serial" --kernel "$k" --serial telnet
check_run "--serial" --kernel "$k" --serial file=
check_run "--on-reboot" --kernel "$k" --on-reboot sometimes
check_run "--strategy" --kernel "$k" --strategy psychic
check_run "--cpuid-filter" --kernel "$k" --cpuid-filter maybe
check_run "--log-level" --kernel "$k" --log-level loud
check_run "unknown option" --kernel "$k" --turbo
check_run "needs a value" --kernel
check_run "unexpected argument" --kernel "$k" extra
check_run "--initrd $tmp/none" --kernel "$good" --initrd "$tmp/none"
check_run "No such file" --kernel "$good" --serial "file=$tmp/no/such/dir/log"
check_run "multiple of the hugetlb-1G page size" --kernel "$good" --memory 1536M --backing hugetlb-1G
# --net (issue 15): parsed and checked before any tap is opened.
check_run "give tap=NAME or fd=N" --kernel "$good" --net mac=52:54:00:12:34:56
check_run "not a unicast MAC" --kernel "$good" --net tap=t0,mac=52:54:00:12:34
check_run "not a unicast MAC" --kernel "$good" --net tap=t0,mac=01:00:5e:00:00:01
check_run "mtu=" --kernel "$good" --net tap=t0,mtu=10
check_run "not an IPv4 address" --kernel "$good" --net tap=t0,ip=10.0.0.300
check_run "mask= without ip=" --kernel "$good" --net tap=t0,mask=255.255.255.0
check_run "is not open" --kernel "$good" --net fd=987
check_run "above 2" --kernel "$good" --net fd=1
check_run "interface name" --kernel "$good" --net tap=a-name-that-is-far-too-long
check_run "unknown key" --kernel "$good" --net tap=t0,queues=4
check_run "queue_size" --kernel "$good" --net tap=t0,queue_size=100
check_run "at most 2 network devices" --kernel "$good" --net tap=t0 --net tap=t1 --net tap=t2
check_run "the same tap" --kernel "$good" --net tap=t0 --net tap=t0
check_run "at most 6 virtio devices" --kernel "$good" --disk "path=$tmp/empty" --disk "path=$tmp/empty" \
	--disk "path=$tmp/empty" --console off --balloon size=0 --hotplug-memory 128M --net tap=t0 --net tap=t1
check 0 "run --help" "$vmm" run --help
echo "$LAST" | grep -q -- "--net tap=NAME|fd=N" || { echo "FAIL: run --help lacks --net"; fail=1; }
echo "$LAST" | grep -q "Exit status" || { echo "FAIL: run --help lacks the exit statuses"; fail=1; }
exit $fail
