#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# test_snapshot.sh VMM SNAPCHECK - snapshot and restore with the snapcheck
# image (issue 16): it rewrites a pattern over half of its RAM in rounds and
# reads 64 KiB of a disk into fresh memory each round.  The VM is paused
# after round 2, snapshotted, the VMM killed, and the snapshot restored in
# each mode and onto each backing: the image must finish all its rounds with
# every word and every disk byte right (it exits 1 on any mismatch), going on
# from where it was (no round before the snapshot runs again).  Then bad
# input, each refused with a clear error and nothing left running.
#
# hugetlb-2M pages are reserved here and released at the end.  Every wait is
# bounded.
set -u
here=$(cd "$(dirname "$0")" && pwd)
NAME=vmm-snapshot
vmm=$1 img=$2
# shellcheck source=api_lib.sh
. "$here/api_lib.sh"
# shellcheck source=snapcheck_lib.sh
. "$here/snapcheck_lib.sh"

if [ ! -c /dev/kvm ]; then
	echo "SKIP: no /dev/kvm: the snapshot tests need KVM" >&2
	exit 77
fi

h2=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
h2_old=$(cat $h2 2>/dev/null || echo 0)
release() { echo "$h2_old" >$h2 2>/dev/null; cleanup; }
trap release EXIT
hugetlb=0
if echo $((h2_old + 160)) >$h2 2>/dev/null && [ "$(cat $h2)" -ge $((h2_old + 160)) ]; then
	hugetlb=1
else
	echo "NOTE: could not reserve 160 hugetlb-2M pages: restores onto hugetlb-2M not tested" >&2
	echo "$h2_old" >$h2 2>/dev/null
fi

snapcheck_disk "$tmp/disk.img"

# gone PID SECONDS - the process has exited.
gone() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}

# snap DIR [MEM] [WAIT] - boot snapcheck with the API, pause it once WAIT is
# on its console, snapshot it into DIR, kill -9 the VMM.  Sets SNAP_OK.
snap() {
	local dir=$1 mem=${2:-256M} waitfor=${3:-"round 2 ok"}
	mkdir -p "$dir"
	sock=$tmp/api.sock
	rm -f "$sock"
	"$vmm" run --kernel "$img" --memory "$mem" --disk path="$tmp/disk.img" --api-socket "$sock" \
		--serial file="$tmp/console.pre" --log-level info 2>"$tmp/vmm.pre" </dev/null &
	local pid=$!
	pids+=($pid)
	SNAP_OK=0
	if ! wait_for "$tmp/console.pre" "$waitfor" 120; then
		bad "snapcheck never reached '$waitfor' before the snapshot"
		tail -5 "$tmp/console.pre" "$tmp/vmm.pre"
		kill -KILL $pid
		return
	fi
	api PUT vm.pause
	[ "$CODE" = 204 ] || { bad "vm.pause: $CODE $BODY"; kill -KILL $pid; return; }
	api PUT vm.snapshot "{\"destination_url\":\"file://$dir\"}"
	SNAP_MS=$MS
	if [ "$CODE" = 204 ]; then SNAP_OK=1; else bad "vm.snapshot: $CODE $BODY"; fi
	api GET vm.info
	[[ $BODY == *'"state":"Paused"'* ]] || bad "the VM is not paused after the snapshot: $BODY"
	kill -KILL $pid
	gone $pid 10 || bad "the VMM did not die"
	cp "$tmp/console.pre" "$tmp/console.snap"
}

# restore DIR MODE BACKING - vmm run --restore; the image must finish.
restore_run() {
	local dir=$1 mode=$2 backing=$3 log=$tmp/console.$2.$3
	local t0=$(date +%s%N)
	timeout 300 "$vmm" run --restore "$dir" --restore-mode "$mode" --backing "$backing" \
		--serial file="$log" --log-level info </dev/null 2>"$tmp/vmm.$mode.$backing"
	local st=$? ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	if [ $st -eq 0 ] && grep -q "10 rounds ok" "$log" && ! grep -q "round [12] ok\|start (" "$log"; then
		ok "restore $mode onto $backing: the image went on from round $(grep -o 'round [0-9]* ok' "$log" | head -1 | cut -d' ' -f2) and finished all rounds intact (exit 0, $ms ms)"
	else
		bad "restore $mode onto $backing: exit $st"
		tail -5 "$log" | sed 's/^/    console: /'
		grep -iE 'error|warn|restore' "$tmp/vmm.$mode.$backing" | tail -8 | sed 's/^/    vmm: /'
	fi
	grep -E 'restore:|on-demand' "$tmp/vmm.$mode.$backing" | sed 's/^/    /'
}

echo "== snapshot of snapcheck after round 2"
snap "$tmp/s1"
if [ $SNAP_OK = 1 ]; then
	ok "vm.snapshot of a paused 256 MiB VM ($SNAP_MS ms)"
	for f in config.json state.json memory-ranges; do
		check "the snapshot holds $f" test -s "$tmp/s1/$f"
	done
	ls "$tmp/s1" | grep -q tmp && bad "temporary files left: $(ls "$tmp/s1")"
	size=$(stat -c %s "$tmp/s1/memory-ranges")
	disk=$(( $(stat -c %b "$tmp/s1/memory-ranges") * $(stat -c %B "$tmp/s1/memory-ranges") ))
	# The image writes about half of RAM (one word per page: each page
	# resident); the upper half holds only its disk buffers.
	if [ "$size" -eq $((256 << 20)) ] && [ "$disk" -lt $((170 << 20)) ] && [ "$disk" -gt $((100 << 20)) ]; then
		ok "memory-ranges is sparse: $((size >> 20)) MiB long, $((disk >> 20)) MiB on disk"
	else
		bad "memory-ranges: $size bytes long, $disk on disk (wanted 256 MiB long, 100-170 MiB used)"
	fi
	grep -q '"format":"vmm-state","version":1' "$tmp/s1/state.json" || bad "state.json has no format version"

	restore_run "$tmp/s1" copy thp
	restore_run "$tmp/s1" on-demand thp
	restore_run "$tmp/s1" copy memfd
	if [ $hugetlb = 1 ]; then
		restore_run "$tmp/s1" copy hugetlb-2M
		restore_run "$tmp/s1" on-demand hugetlb-2M
	fi
	# Without fill-ahead every block comes in by a fault: the disk reads
	# land in blocks nobody touched since the restore, so the device
	# thread takes those faults itself.
	VMM_TEST_ONDEMAND_NO_FILL=1 restore_run "$tmp/s1" on-demand thp
	if grep -q 'on-demand restore:.* faults' "$tmp/vmm.on-demand.thp"; then
		ok "on-demand without fill-ahead: $(grep -o 'on-demand restore:.*' "$tmp/vmm.on-demand.thp" | head -1)"
	else
		bad "on-demand without fill-ahead: no fault statistics in the VMM's log"
	fi

	echo "== restore through the API (vm.restore on a VMM with only --api-socket)"
	sock=$tmp/api2.sock
	"$vmm" run --api-socket "$sock" --log-level info 2>"$tmp/vmm.api" </dev/null &
	apid=$!
	pids+=($apid)
	wait_for "$tmp/vmm.api" "api" 10
	for ((i = 0; i < 50; i++)); do [ -S "$sock" ] && break; sleep 0.1; done
	api PUT vm.restore "{\"source_url\":\"file://$tmp/s1\",\"memory_restore_mode\":\"OnDemand\"}"
	if [ "$CODE" = 204 ]; then ok "vm.restore (OnDemand, not resumed): 204 in $MS ms"; else bad "vm.restore: $CODE $BODY"; fi
	api GET vm.info
	[[ $BODY == *'"state":"Paused"'* ]] && ok "restored paused" || bad "vm.info after restore: $BODY"
	api PUT vm.restore "{\"source_url\":\"file://$tmp/s1\"}"
	[ "$CODE" = 409 ] && ok "a second vm.restore: 409" || bad "a second vm.restore: $CODE $BODY"
	api PUT vm.resume
	[ "$CODE" = 204 ] || bad "vm.resume: $CODE $BODY"
	if gone $apid 120; then
		wait $apid; st=$?
		# The console went to the snapshot's file (console.pre).
		if [ $st -eq 0 ] && grep -q "10 rounds ok" "$tmp/console.pre"; then
			ok "resumed through the API: the image finished intact"
		else
			bad "API restore: the VMM exited $st"; tail -3 "$tmp/console.pre"
		fi
	else
		bad "API restore: the image did not finish in 120 s"
	fi
fi

echo "== bad input"
# A running VM cannot be snapshotted.
sock=$tmp/api3.sock
"$vmm" run --kernel "$img" --memory 256M --api-socket "$sock" --serial off --log-level warn \
	2>"$tmp/vmm.bad" </dev/null &
bpid=$!
pids+=($bpid)
for ((i = 0; i < 50; i++)); do [ -S "$sock" ] && break; sleep 0.1; done
mkdir -p "$tmp/s2"
api PUT vm.snapshot "{\"destination_url\":\"file://$tmp/s2\"}"
[ "$CODE" = 409 ] && [[ $BODY == *paused* ]] && ok "snapshot of a running VM: 409 $BODY" ||
	bad "snapshot of a running VM: $CODE $BODY"
[ -z "$(ls "$tmp/s2")" ] || bad "a refused snapshot wrote files: $(ls "$tmp/s2")"
api PUT vm.pause
api PUT vm.snapshot "{\"destination_url\":\"file://$tmp/nonexistent\"}"
[ "$CODE" = 400 ] && [[ $BODY == *"no such directory"* ]] && ok "snapshot into a missing directory: 400 $BODY" ||
	bad "snapshot into a missing directory: $CODE $BODY"
mkdir -p "$tmp/ro"
if mount -t tmpfs -o ro,size=1m tmpfs "$tmp/ro" 2>/dev/null; then
	api PUT vm.snapshot "{\"destination_url\":\"file://$tmp/ro\"}"
	[ "$CODE" = 400 ] && [[ $BODY == *"not writable"* ]] && ok "snapshot into a read-only directory: 400 $BODY" ||
		bad "snapshot into a read-only directory: $CODE $BODY"
	umount "$tmp/ro"
else
	echo "NOTE: cannot mount a read-only tmpfs: the unwritable-directory case not tested" >&2
fi
api PUT vm.snapshot '{"destination_url":"http://example.com/x"}'
[ "$CODE" = 400 ] && ok "snapshot to a non-file URL: 400 $BODY" || bad "snapshot to http://: $CODE $BODY"
api PUT vm.resume
[ "$CODE" = 204 ] && ok "the VM still resumes after the refused snapshots" || bad "vm.resume: $CODE $BODY"
kill -KILL $bpid

# bad_restore DIR WHAT TEXT [ARGS] - vmm run --restore must exit 2 with TEXT.
bad_restore() {
	local dir=$1 what=$2 text=$3; shift 3
	timeout 120 "$vmm" run --restore "$dir" --serial off --log-level info "$@" </dev/null \
		>"$tmp/bad.out" 2>&1
	local st=$?
	if [ $st -ne 0 ] && [ $st -ne 124 ] && grep -qF -- "$text" "$tmp/bad.out"; then
		ok "$what: exit $st, \"$(grep -F -- "$text" "$tmp/bad.out" | head -1 | sed 's/^.*error: //')\""
	else
		bad "$what: exit $st, wanted an error with '$text'"
		tail -5 "$tmp/bad.out" | sed 's/^/    /'
	fi
}
if [ $SNAP_OK = 1 ]; then
	cp -r "$tmp/s1" "$tmp/trunc"
	truncate -s $((100 << 20)) "$tmp/trunc/memory-ranges"
	bad_restore "$tmp/trunc" "truncated memory-ranges" "truncated"
	cp -r "$tmp/s1" "$tmp/vers"
	sed -i 's/"format":"vmm-state","version":1/"format":"vmm-state","version":7/' "$tmp/vers/state.json"
	bad_restore "$tmp/vers" "state.json of another format version" "format version 7"
	cp -r "$tmp/s1" "$tmp/mism"
	python3 - "$tmp/mism/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c['vm']['memory']['size'] = 512 << 20
json.dump(c, open(sys.argv[1], 'w'))
EOF
	bad_restore "$tmp/mism" "a config.json that does not match state.json" "not of one snapshot"
	cp -r "$tmp/s1" "$tmp/garb"
	head -c 3000 /dev/urandom >"$tmp/garb/state.json"
	bad_restore "$tmp/garb" "a state.json of random bytes" "state.json"
	cp -r "$tmp/s1" "$tmp/cpus"
	python3 - "$tmp/cpus/state.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c['vm']['vcpus'].append(c['vm']['vcpus'][0])
json.dump(c, open(sys.argv[1], 'w'))
EOF
	bad_restore "$tmp/cpus" "a state.json with a vCPU more than its config" "not of one snapshot"
	bad_restore "$tmp/nonexistent" "a missing directory" "no such directory"
	mkdir -p "$tmp/empty"
	bad_restore "$tmp/empty" "an empty directory" "config.json"
	bad_restore "$tmp/s1" "a guest option with --restore" "cannot be given" --memory 512M
fi
# 1 GiB into hugetlb-2M with no huge pages to be had.
snap "$tmp/big" 1G "start ("
if [ $SNAP_OK = 1 ]; then
	echo "$h2_old" >$h2 2>/dev/null
	if [ "$(grep HugePages_Free /proc/meminfo | awk '{print $2}')" -lt 512 ]; then
		bad_restore "$tmp/big" "1 GiB restored onto hugetlb-2M without 1 GiB of huge pages" "huge" \
			--backing hugetlb-2M
	else
		echo "NOTE: 512 free 2 MiB pages exist: the no-huge-pages case not tested" >&2
	fi
fi
[ -z "$(pgrep -f "$vmm run --restore" || true)" ] || bad "a restoring VMM is left running"

echo "$checks checks, $([ $fail = 0 ] && echo all passed || echo SOME FAILED)"
exit $fail
