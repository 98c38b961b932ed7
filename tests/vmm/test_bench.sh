#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# test_bench.sh VMM - `vmm bench munmap` works: a tiny configuration (the
# benchmark is a program, not a test: no figure is judged here) produces
# every method's samples in the table, the CSV, the JSON and the plot; bad
# options are refused with exit 2.  Without /dev/kvm: skipped loudly (77).
set -u
vmm=$1
if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm ]; then
	echo "SKIP: /dev/kvm is missing or not accessible: the benchmark smoke test did NOT run" >&2
	exit 77
fi
fail=0
check() { # description, then a command that must succeed
	local what=$1; shift
	if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fail=1; fi
}

# Bad options: one error line, exit 2, nothing measured.
for args in "--size 1X" "--size 1G --range 1G" "--vcpus 0" "--vcpus 65" "--walkers 99" \
	    "--strategy fastest" "--backing memfd" "--repeat 0" "--budget -1" "--image /nonexistent" \
	    "--frobnicate"; do
	out=$("$vmm" bench munmap $args 2>&1 </dev/null); st=$?
	check "bench munmap $args -> exit 2 ($(printf '%s' "$out" | grep -m1 error))" \
		test $st = 2 -a "$(printf '%s\n' "$out" | grep -c 'error')" -ge 1
done
out=$("$vmm" bench frobnicate 2>&1); st=$?
check "vmm bench frobnicate -> exit 2" test $st = 2

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
plot=
if gnuplot -e 'set terminal pngcairo' </dev/null >/dev/null 2>&1; then
	plot="--plot $dir/plot.png"
else
	echo "NOTE: gnuplot (pngcairo) missing: --plot not tested"
fi
start=$(date +%s)
"$vmm" bench munmap --size 128M,256M --vcpus 2 --walkers 1 --repeat 2 --budget 5 --warmup 50 \
	--csv "$dir/s.csv" --json "$dir/s.json" $plot >"$dir/out.txt" 2>"$dir/err.txt"
st=$?
echo "smoke run: exit $st in $(( $(date +%s) - start )) s"
check "smoke run exits 0" test $st = 0
[ $st = 0 ] || sed 's/^/    /' "$dir/err.txt" | tail -20
methods="raw-munmap kvm-floor kick count perthread membarrier rcu"
for m in $methods; do
	n=$(grep -c ",$m," "$dir/s.csv")
	check "CSV has 2 points x 2 samples of $m ($n)" test "$n" = 4
	check "table shows $m for both sizes" test "$(grep -c "^   $m .*\[" "$dir/out.txt")" = 2
done
check "table states the huge-page coverage" grep -q "huge-page coverage of the RAM under test: 100.0%" "$dir/out.txt"
check "the model prints predictions next to the seed's figures" \
	grep -q "275 s (IPI per block)" "$dir/out.txt"
check "JSON parses and has 2 points with every method" python3 -c "
import json, sys
d = json.load(open('$dir/s.json'))
assert len(d['points']) == 2
for p in d['points']:
    assert sorted(p['methods']) == sorted('$methods'.split()), p['methods'].keys()
    for m, v in p['methods'].items():
        assert len(v['samples']) == 2 and v['unmap_ms']['median'] > 0, m
assert d['model']['ok'] and d['model']['predicted_ms']['kick'] > 0
"
check "kick sent signals and took vCPUs out of KVM_RUN" python3 -c "
import json
d = json.load(open('$dir/s.json'))
s = d['points'][1]['methods']['kick']['samples']
# 256 MiB = 128 blocks, one kick round each, and one more: the grace
# period gmm_region_remove waits out before it frees the region itself.
assert all(x['kicks'] > 0 and x['kick_exits'] > 0 and x['ser_issued'] == 128 + 1 for x in s), s
"
if [ -n "$plot" ]; then
	check "plot is a PNG" sh -c "file '$dir/plot.png' | grep -q 'PNG image'"
fi
# SIGINT stops after the current sample and still reports.
"$vmm" bench munmap --size 256M --vcpus 1 --walkers 0 --repeat 50 --warmup 50 \
	--strategy perthread >"$dir/int.txt" 2>&1 &
pid=$!
sleep 3; kill -INT $pid; wait $pid; st=$?
check "SIGINT: exit 130 with the samples so far in the table" \
	sh -c "test $st = 130 && grep -q '^   perthread ' '$dir/int.txt'"
[ $fail = 0 ] && echo "bench smoke: all passed" || echo "bench smoke: some FAILED"
exit $fail
