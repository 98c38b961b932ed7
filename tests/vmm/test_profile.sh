#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# test_profile.sh VMM IMAGES-DIR GUEST-PROFILE-SCRIPT - `vmm run
# --profile-guest`: the exitloop image on 2 vCPUs for about 2 s, stopped
# with SIGTERM; the file has a header and "t_us vcpu rip" samples from both
# vCPUs, every RIP inside the image, times increasing per vCPU, and
# scripts/guest-profile names the image's own loop as the top function.
# Bad input: a symbolic link as the file, a bad VMM_PROFILE_US -> status 2
# and no guest run.  Without /dev/kvm: skipped (77), loudly.
set -u
vmm=$1; imgs=$2; gp=$3
if [ ! -c /dev/kvm ]; then
	echo "SKIP: /dev/kvm is missing: the profiler test did NOT run" >&2; exit 77
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
img=$imgs/exitloop

timeout --preserve-status -s TERM 2 "$vmm" run --kernel "$img" --vcpus 2 --memory 64M --log-level info \
	--profile-guest "$tmp/p" </dev/null >/dev/null 2>"$tmp/err"
st=$?
[ $st = 0 ] && ok "SIGTERM stop, exit 0" || { bad "exit $st"; tail -5 "$tmp/err"; }
grep -q 'guest profile: [0-9]* samples written' "$tmp/err" && ok "the VMM reports the samples it wrote" ||
	bad "no 'guest profile: N samples written' line"
head -1 "$tmp/p" | grep -q '^# vmm guest profile: period_us 1000;' && ok "header" || bad "header: $(head -1 "$tmp/p")"
lo=$((0x$(nm "$img" | awk '$3 == "__image_start" { print $1 }')))
hi=$((0x$(nm "$img" | awk '$3 == "__image_end" { print $1 }')))
read -r n n0 n1 outside badline backwards < <(python3 - "$tmp/p" $lo $hi <<'PY'
import re, sys
lo, hi = int(sys.argv[2]), int(sys.argv[3])
n = out = badl = back = 0; c = {0: 0, 1: 0}; last = {}
for line in open(sys.argv[1]):
    if line.startswith("#"):
        continue
    m = re.fullmatch(r"(\d+) ([01]) ([0-9a-f]+)\n", line)
    if not m:
        badl += 1
        continue
    t, cpu, rip = int(m[1]), int(m[2]), int(m[3], 16)
    n += 1; c[cpu] += 1
    out += not (lo <= rip < hi)
    back += t < last.get(cpu, 0); last[cpu] = t
print(n, c[0], c[1], out, badl, back)
PY
)
# 2 s at one sample per ms and vCPU; a loaded host takes fewer.
[ "$n" -ge 200 ] && ok "$n samples" || bad "only $n samples"
[ "$n0" -ge 50 ] && [ "$n1" -ge 50 ] && ok "both vCPUs sampled ($n0, $n1)" || bad "vCPU samples: $n0, $n1"
[ "$outside" = 0 ] && [ "$badline" = 0 ] && ok "every RIP inside the image, every line well-formed" ||
	bad "$outside RIPs outside [$lo, $hi), $badline malformed lines"
[ "$backwards" = 0 ] && ok "times increase per vCPU" || bad "$backwards samples go back in time"
top=$(STEP=0 "$gp" "$tmp/p" "$img" | awk 'NR == 3 { print $3 }')
case $top in
""|"[user]"|"[kernel ?]") bad "guest-profile's top function: '$top'" ;;
*) nm "$img" | awk '{ print $3 }' | grep -qx -- "$top" && ok "guest-profile's top function is the image's $top" ||
	bad "top function '$top' is not the image's" ;;
esac

ln -s "$tmp/target" "$tmp/link"
"$vmm" run --kernel "$img" --profile-guest "$tmp/link" </dev/null >/dev/null 2>"$tmp/err"; st=$?
[ $st = 2 ] && [ ! -e "$tmp/target" ] && grep -q 'symbolic link' "$tmp/err" &&
	ok "a symlink as the profile: refused, exit 2" || bad "symlink: exit $st, $(cat "$tmp/err")"
VMM_PROFILE_US=abc "$vmm" run --kernel "$img" --profile-guest "$tmp/q" </dev/null >/dev/null 2>"$tmp/err"; st=$?
[ $st = 2 ] && grep -q VMM_PROFILE_US "$tmp/err" && ok "VMM_PROFILE_US=abc: refused, exit 2" ||
	bad "VMM_PROFILE_US=abc: exit $st, $(cat "$tmp/err")"
exit $fail
