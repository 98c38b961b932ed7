#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# test_hostile.sh VMM IMAGES-DIR - the hostile-guest suite (issue 13).
#
# Each attack boots one image of images/hostile/ under the VMM with the
# devices it attacks, waits until the image says it has done its worst
# ("ready" on the serial console), then the host stops the VM -- SIGTERM,
# or vm.shutdown through the control API -- and the test asserts:
#   - the VMM exits 0 (stopped cleanly; no crash, no sanitizer report),
#   - the stop takes at most STOP_BOUND_MS (default 5000: generous for a
#     loaded CI machine under ASan; the design's aim is 100 ms, and the
#     measured figures are in the issue's note -- REPEAT=5 prints medians),
#   - the VMM's log (stderr) stays under LOG_BOUND bytes (default 64 KiB),
#     whatever the guest does, and the guest-caused lines are counted in
#     vm.counters.
#
#   ports    (a) thousands of unclaimed ports and MMIO addresses, after
#                3 written to the debug-exit port (--test-devices off)
#   virtio   (e) garbage in every virtio register, config byte and queue
#   console  (b) 256 chains of ~4 GiB each for a console nobody reads
#   console-api  the same, stopped with vm.shutdown
#   blk      (d) the disk queue full of ~4 GiB reads
#   blk-api  the same, stopped with vm.shutdown
#   balloon  (c) an inflate over blocks pinned by in-flight disk reads
#
# Environment: ATTACKS (default all), REPEAT (runs per attack, default 1),
# STOP_BOUND_MS, LOG_BOUND, READY_TIMEOUT (s, default 300).
# Without /dev/kvm: a loud message and exit 77 (skipped).
set -u
vmm=$1; images=$2
if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm ]; then
	echo "SKIP: /dev/kvm is missing or not accessible: the hostile-guest suite did NOT run" >&2
	exit 77
fi
STOP_BOUND_MS=${STOP_BOUND_MS:-5000}
LOG_BOUND=${LOG_BOUND:-65536}
READY_TIMEOUT=${READY_TIMEOUT:-300}
REPEAT=${REPEAT:-1}
ATTACKS=${ATTACKS:-ports virtio console console-api blk blk-api balloon}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
disk=$work/disk.img
truncate -s 4G "$disk"     # sparse: the giant reads read zeros
small=$work/small.img
truncate -s 64M "$small"

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
api() { # socket method path [body]
	curl -s --max-time 5 --unix-socket "$1" -X "$2" ${4:+-H 'Content-Type: application/json' -d "$4"} \
		"http://localhost/api/v1/$3"
}

# attack name -> the image and the VMM options it needs
setup() {
	case $1 in
	ports) img=ports; opts=(--test-devices off) ;;
	virtio) img=virtio; opts=(--disk "path=$small" --console "file=$work/console.out" --balloon size=0
		--hotplug-memory 128M) ;;
	console | console-api) img=console; opts=(--console pty) ;;
	blk | blk-api) img=blk; opts=(--disk "path=$disk,readonly=on") ;;
	balloon) img=balloon; opts=(--disk "path=$disk,readonly=on" --balloon size=0) ;;
	*) return 1 ;;
	esac
}

fail=0
declare -A stops logs
run_one() { # attack -> prints "stop_ms log_bytes" or fails
	local a=$1 d=$work/$1 pid s t st ready=0 how=term
	rm -rf "$d"; mkdir -p "$d"
	case $a in *-api) how=api ;; esac
	setup "$a" || { echo "FAIL: unknown attack $a"; return 1; }
	"$vmm" run --kernel "$images/hostile_$img" --memory 256M --serial stdio \
		--api-socket "path=$d/api.sock" --log-level info "${opts[@]}" \
		</dev/null >"$d/serial" 2>"$d/log" &
	pid=$!
	s=$(date +%s%N)
	local last=x now
	while kill -0 $pid 2>/dev/null && [ $(ms $s) -lt $((READY_TIMEOUT * 1000)) ]; do
		if [[ " ${opts[*]} " == *" --console pty "* ]]; then
			# The UART shares the console's pty, which nobody reads
			# (that is the attack): the image is done once the console
			# is live (DRIVER_OK) and vCPU 0 has stopped exiting (halted
			# after its notify, or stuck writing to the full pty).
			now=$(api "$d/api.sock" GET vm.counters 2>/dev/null | tr -d ' ' |
				grep -o '"console_status":15\|"vcpu0":{"exits":[0-9]*' | tr '\n' ' ')
			[[ "$now" == *console_status* && "$now" == "$last" ]] && { ready=1; break; }
			last=$now; sleep 1; continue
		elif grep -q "hostile_$img: ready" "$d/serial"; then
			ready=1; break
		fi
		sleep 0.1
	done
	if [ $ready = 0 ]; then
		echo "FAIL: $a: the image never said ready"; sed 's/^/    /' "$d/serial" | tail -5
		tail -c 2000 "$d/log" | sed 's/^/    /'; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
		return 1
	fi
	sleep 1 # let the attack run
	api "$d/api.sock" GET vm.counters >"$d/counters" 2>/dev/null
	t=$(date +%s%N)
	if [ $how = api ]; then
		api "$d/api.sock" PUT vm.shutdown >/dev/null 2>&1
	else
		kill -TERM $pid
	fi
	# Bounded: whatever the VMM does, the test goes on after 60 s.
	while kill -0 $pid 2>/dev/null && [ $(ms $t) -lt 60000 ]; do sleep 0.01; done
	local stop=$(ms $t)
	kill -0 $pid 2>/dev/null && { kill -9 $pid; stop=">60000"; }
	wait $pid; st=$?
	local bytes=$(stat -c %s "$d/log")
	local bad=
	[ $st = 0 ] || bad="exit status $st"
	case $stop in ">"*) bad="${bad:+$bad; }did not stop within 60 s" ;; *)
		[ "$stop" -le "$STOP_BOUND_MS" ] || bad="${bad:+$bad; }stop took $stop ms > $STOP_BOUND_MS" ;;
	esac
	[ "$bytes" -le "$LOG_BOUND" ] || bad="${bad:+$bad; }log $bytes bytes > $LOG_BOUND"
	grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$d/log" && bad="${bad:+$bad; }sanitizer report"
	if [ $a = ports ] && ! grep -qE '"guest_log_suppressed": *[1-9]' "$d/counters"; then
		bad="${bad:+$bad; }vm.counters has no guest_log_suppressed > 0: $(head -c 300 "$d/counters")"
	fi
	# The test devices: off for ports (which writes 3 to the debug-exit
	# port first thing), on by default for a test image.
	if [ $a = ports ] && grep -q "test devices attached" "$d/log"; then
		bad="${bad:+$bad; }--test-devices off still attached them"
	elif [ $a != ports ] && ! grep -q "test devices attached" "$d/log"; then
		bad="${bad:+$bad; }a test image got no test devices"
	fi
	stops[$a]+="$stop "; logs[$a]+="$bytes "
	if [ -n "$bad" ]; then
		echo "FAIL: $a: $bad"
		tail -c 1500 "$d/log" | sed 's/^/    /'
		return 1
	fi
	echo "ok: $a: stopped ($how) in $stop ms, log $bytes bytes"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for a in $ATTACKS; do
	for ((r = 0; r < REPEAT; r++)); do
		run_one "$a" || fail=1
	done
done
echo "hostile: attack  stop_ms(median of $REPEAT)  log_bytes(median)  [runs]"
for a in $ATTACKS; do
	# shellcheck disable=SC2086
	printf 'hostile: %-12s %8s %10s  [%s]\n' "$a" "$(median ${stops[$a]:-x})" \
		"$(median ${logs[$a]:-x})" "${stops[$a]:-}"
done
exit $fail
