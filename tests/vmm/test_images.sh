#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# test_images.sh VMM IMAGE... - every test image boots under vmm and reports
# the expected result, with each backing and with 1 and 4 vCPUs.
# hugetlb pages are reserved here and released at the end (whatever
# happens).  Without /dev/kvm the test says so loudly and is skipped (77).
set -u
vmm=$1; shift
if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm ]; then
	echo "SKIP: /dev/kvm is missing or not accessible: the KVM tests did NOT run" >&2
	exit 77
fi
declare -A img
for f in "$@"; do img[$(basename "$f")]=$f; done

h2=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
h1=/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages
old2=$(cat $h2); old1=$(cat $h1 2>/dev/null || echo 0)
restore() { echo "$old2" > $h2; [ -w $h1 ] && echo "$old1" > $h1; }
trap restore EXIT

mem=128M
backings="thp anon memfd"
if echo $((old2 + 64)) > $h2 2>/dev/null && [ "$(cat $h2)" -ge $((old2 + 64)) ]; then
	backings="$backings hugetlb-2M"
else
	echo "NOTE: could not reserve 64 hugetlb-2M pages: hugetlb-2M not tested" >&2
fi
if [ -w $h1 ] && echo $((old1 + 1)) > $h1 2>/dev/null && [ "$(cat $h1)" -ge $((old1 + 1)) ]; then
	backings="$backings hugetlb-1G"
else
	echo "NOTE: could not reserve a 1 GiB page: hugetlb-1G not tested" >&2
fi

fail=0 runs=0
expect() { # image vcpus -> the line its output must contain
	case $1 in
	hello) echo "hello from vmm test image ($2 vcpus" ;;
	memtouch) echo "pages ok" ;;
	smp) echo "smp: all $2 vcpus up" ;;
	exits) echo "iterations ok" ;;
	esac
}
for b in ${BACKINGS:-$backings}; do
	m=$mem; [ $b = hugetlb-1G ] && m=1G
	for v in 1 4; do
		for name in hello memtouch smp exits; do
			[ -n "${img[$name]:-}" ] || { echo "FAIL: image $name not given"; fail=1; continue; }
			start=$(date +%s%N)
			out=$(timeout 300 "$vmm" run --kernel "${img[$name]}" --memory $m --vcpus $v \
				--backing $b --serial stdio --log-level warn </dev/null 2>&1)
			st=$?
			t=$(( ($(date +%s%N) - start) / 1000000 ))
			runs=$((runs + 1))
			want=$(expect $name $v)
			if [ $st -eq 0 ] && printf '%s' "$out" | grep -qF "$want"; then
				printf 'ok: %-8s %-10s vcpus=%d %6d ms\n' $name $b $v $t
			else
				printf 'FAIL: %-8s %-10s vcpus=%d exit %d (wanted 0 and "%s")\n' $name $b $v $st "$want"
				printf '%s\n' "$out" | tail -20 | sed 's/^/    /'
				fail=1
			fi
		done
	done
done

# Lifecycle: pause (SIGUSR1) parks every vCPU -- their threads stop using
# CPU -- resume (SIGUSR2) lets the guest finish; SIGTERM stops it cleanly.
vcpu_ticks() { # pid -> utime+stime of all vcpuN threads
	local t sum=0
	for t in /proc/$1/task/*; do
		grep -q '^vcpu' "$t/comm" 2>/dev/null || continue
		set -- $1 $(sed 's/.*) //' "$t/stat"); sum=$((sum + ${13} + ${14}))
	done
	echo $sum
}
log=$(mktemp)
"$vmm" run --kernel "${img[memtouch]}" --memory 1G --vcpus 2 --log-level info </dev/null >"$log" 2>&1 &
pid=$!
sleep 1
threads=$(cat /proc/$pid/task/*/comm 2>/dev/null | grep -c '^vcpu')
kill -USR1 $pid; sleep 0.5
a=$(vcpu_ticks $pid); sleep 1; b=$(vcpu_ticks $pid)
kill -USR2 $pid
wait $pid; st=$?
if [ "$threads" = 2 ] && [ "$a" -gt 0 ] && [ "$a" = "$b" ] && [ $st = 0 ] && grep -q "pages ok" "$log" &&
   grep -q "paused" "$log" && grep -q "resumed" "$log"; then
	echo "ok: pause parks the vCPUs (2 threads named vcpuN, CPU ticks $a -> $b while paused), resume finishes"
else
	echo "FAIL: pause/resume: vcpu threads $threads, ticks $a -> $b, exit $st"; sed 's/^/    /' "$log" | tail; fail=1
fi
"$vmm" run --kernel "${img[memtouch]}" --memory 1G --log-level info </dev/null >"$log" 2>&1 &
pid=$!
sleep 1; s0=$(date +%s%N); kill -TERM $pid; wait $pid; st=$?
ms=$(( ($(date +%s%N) - s0) / 1000000 ))
if [ $st = 0 ] && grep -q "stopped by signal 15" "$log" && [ $ms -lt 2000 ]; then
	echo "ok: SIGTERM stops the VM cleanly in $ms ms"
else
	echo "FAIL: SIGTERM: exit $st after $ms ms"; tail -5 "$log" | sed 's/^/    /'; fail=1
fi

# A triple fault dumps the registers and exits 3; a guest reset exits 0, or
# with --on-reboot restart boots the guest again (until stopped).
out=$("$vmm" run --kernel "${img[fault]}" --log-level warn </dev/null 2>&1); st=$?
if [ $st = 3 ] && printf '%s' "$out" | grep -q "triple fault" && printf '%s' "$out" | grep -q "rip "; then
	echo "ok: triple fault -> register dump, exit 3"
else
	echo "FAIL: triple fault: exit $st"; printf '%s\n' "$out" | tail -5 | sed 's/^/    /'; fail=1
fi
out=$("$vmm" run --kernel "${img[reset]}" --log-level info </dev/null 2>&1); st=$?
if [ $st = 0 ] && printf '%s' "$out" | grep -q "i8042 pulse reset"; then
	echo "ok: guest reset -> exit 0"
else
	echo "FAIL: guest reset: exit $st"; printf '%s\n' "$out" | tail -3 | sed 's/^/    /'; fail=1
fi
"$vmm" run --kernel "${img[reset]}" --on-reboot restart --log-level info </dev/null >"$log" 2>&1 &
pid=$!
for i in $(seq 100); do [ "$(grep -c 'starting again' "$log")" -ge 3 ] && break; sleep 0.1; done
kill -TERM $pid; wait $pid; st=$?
n=$(grep -c "pulsing the i8042 reset line" "$log")
if [ $st = 0 ] && [ "$n" -ge 3 ]; then
	echo "ok: --on-reboot restart boots the guest again ($n boots before SIGTERM)"
else
	echo "FAIL: --on-reboot restart: exit $st, $n boots"; tail -5 "$log" | sed 's/^/    /'; fail=1
fi
rm -f "$log"
echo "test images: $runs runs, $([ $fail = 0 ] && echo all passed || echo some FAILED)"
exit $fail
