#!/bin/sh
# test_cli.sh VMM - the command line: bad values get one clear error line and
# exit status 2; --help/--version work; the demo runs and reports.
vmm=$1
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
exit $fail
