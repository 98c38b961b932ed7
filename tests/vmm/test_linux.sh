#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# test_linux.sh VMM CMDLINE-FILE - real Linux guests under vmm.
#
#  1. The project's guest kernel (scripts/guest-linux, $VMM_GUEST_LINUX_DIR)
#     boots to its busybox /init through the bzImage and the PVH path, runs
#     a command the test gives it, and the VMM exits 0 after the guest
#     reboots (i8042 reset); the default one-CPU kernel's bzImage with 1
#     vCPU, the SMP kernel's vmlinux (PVH) with 2 (MP table, SMP).  (The
#     bzImage's LZ4 decompressor alone takes ~26 s under this emulating KVM.)
#     The guest runs with print_fatal_signals=1 and prints its dmesg: any
#     kernel report of a fatal signal, segfault or oops fails (guest_klog.sh).
#  2. Debian's stock kernel (scripts/debian-kernel, $VMM_DEBIAN_KERNEL_DIR)
#     through PVH: its banner, the e820 map the VMM built and "Hypervisor
#     detected: KVM" appear on the serial console; then the test stops the
#     VM (SIGTERM) and the VMM exits 0.  Through bzImage: see below.
# Missing KVM or kernels: a loud message and exit 77 (skipped), never a pass.
set -u
vmm=$1; base=$(cat "$2")
# shellcheck source=guest_klog.sh
. "$(dirname "$0")/guest_klog.sh"
if [ ! -c /dev/kvm ]; then
	echo "SKIP: /dev/kvm is missing: the Linux guest tests did NOT run" >&2; exit 77
fi
G=${VMM_GUEST_LINUX_DIR:-}; D=${VMM_DEBIAN_KERNEL_DIR:-}
if [ -z "$G" ] || [ ! -f "$G/vmlinux-smp" ] || [ -z "$D" ] || [ ! -f "$D/bzImage" ]; then
	echo "SKIP: VMM_GUEST_LINUX_DIR / VMM_DEBIAN_KERNEL_DIR not set (run scripts/test): Linux guests NOT tested" >&2
	exit 77
fi
fail=0
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

for k in bzImage vmlinux-smp:2; do
	kern=${k%%:*}; v=1; [ "$k" != "$kern" ] && v=${k#*:}
	log=$(mktemp); s=$(date +%s%N)
	timeout 600 "$vmm" run --kernel "$G/$kern" --initrd "$G/initramfs.cpio" --memory 128M \
		--vcpus $v --cmdline "$base print_fatal_signals=1 vmm.cmd=\"echo guest-says-\$((6*7)); grep -c ^processor /proc/cpuinfo; s=\$?; dmesg | sed 's/^/KLOG /'; exit \$s\"" \
		--serial stdio --log-level info </dev/null >"$log" 2>&1 &
	pid=$!
	t_init=
	while kill -0 $pid 2>/dev/null; do
		[ -z "$t_init" ] && grep -q VMM-INIT-START "$log" && t_init=$(ms $s)
		sleep 0.05
	done
	wait $pid; st=$?; t_exit=$(ms $s)
	if reports=$(guest_crash_reports "$log"); then
		echo "FAIL: guest kernel via $kern, $v vCPU: the guest's kernel reported a crash:"
		printf '%s\n' "$reports" | sed 's/^/    /'; fail=1
	elif ! grep -q '^KLOG Linux version' "$log"; then
		echo "FAIL: guest kernel via $kern, $v vCPU: exit $st, and no kernel log from the guest (no crash check)"
		tail -25 "$log" | sed 's/^/    /'; fail=1
	elif [ $st = 0 ] && grep -q VMM-INIT-START "$log" && grep -q "guest-says-42" "$log" &&
	   grep -q "VMM-CMD-EXIT 0" "$log" && grep -q VMM-INIT-END "$log" &&
	   grep -qx "$v" <(tr -d '\r' < "$log") &&
	   ! grep -q "test devices attached" "$log"; then
		echo "ok: guest kernel via $kern, $v vCPU: /init at ${t_init} ms, command ran, reboot -> exit 0 at ${t_exit} ms"
	else
		echo "FAIL: guest kernel via $kern, $v vCPU: exit $st"; tail -25 "$log" | sed 's/^/    /'; fail=1
	fi
	rm -f "$log"
done

debian_banner() { # kernel-file -> ok if banner, e820 and KVM appear on the console
	local k=$1 log s pid limit t st
	log=$(mktemp); s=$(date +%s%N)
	"$vmm" run --kernel "$D/$k" --memory 256M --cmdline "console=ttyS0 earlyprintk=ttyS0" \
		--serial "file=$log" --log-level warn </dev/null >/dev/null 2>&1 &
	pid=$!
	limit=$(( ${DEBIAN_BOOT_TIMEOUT:-600} * 1000 ))
	until grep -q "Hypervisor detected: KVM" "$log" 2>/dev/null || [ $(ms $s) -gt $limit ] ||
	      ! kill -0 $pid 2>/dev/null; do sleep 0.2; done
	t=$(ms $s)
	kill -TERM $pid 2>/dev/null; wait $pid; st=$?
	if [ $st = 0 ] && grep -q "Linux version 6.1" "$log" && grep -q "Hypervisor detected: KVM" "$log" &&
	   grep -q "BIOS-e820: \[mem 0x0000000000000000-0x000000000009fbff\] usable" "$log" &&
	   grep -q "BIOS-e820: \[mem 0x000000000009fc00-0x00000000000fffff\] reserved" "$log" &&
	   grep -q "BIOS-e820: \[mem 0x0000000000100000-0x000000000fffffff\] usable" "$log"; then
		echo "ok: Debian's kernel via $k: banner, our e820 map, KVM detected at $t ms; stopped, exit 0"
	else
		echo "FAIL: Debian's kernel via $k: exit $st after $t ms"; head -20 "$log" | sed 's/^/    /'; fail=1
	fi
	rm -f "$log"
}
debian_banner vmlinux

# Debian's bzImage first inflates ~30 MB of XZ: under an emulating KVM that
# takes longer than this whole test run may (over 15 minutes here).  By
# default the test checks that the VMM hands over correctly -- the vCPU runs
# inside the kernel's decompressor, [load address, + init_size), and makes
# progress -- and VMM_DEBIAN_BZIMAGE_FULL=1 waits for the banner instead.
if [ -n "${VMM_DEBIAN_BZIMAGE_FULL:-}" ]; then
	DEBIAN_BOOT_TIMEOUT=${DEBIAN_BOOT_TIMEOUT:-3600} debian_banner bzImage
else
	err=$(mktemp)
	"$vmm" run --kernel "$D/bzImage" --memory 256M --cmdline "console=ttyS0" --serial off \
		--log-level info </dev/null >/dev/null 2>"$err" &
	pid=$!
	sleep 10; kill -QUIT $pid; sleep 3; kill -QUIT $pid; sleep 1
	kill -TERM $pid; wait $pid; st=$?
	range=$(sed -n 's/.*bzImage .* at \(0x[0-9a-f]*\) (runs at .*init_size \([0-9.]*\) MiB).*/\1 \2/p' "$err")
	rips=$(sed -n 's/^  rip \([0-9a-f]*\) .*/\1/p' "$err")
	read -r load isz <<<"$range"
	r1=$(echo "$rips" | sed -n 1p); r2=$(echo "$rips" | sed -n 2p)
	# Progress: rip moved, or a string instruction (rep movs under
	# emulation can run for seconds at one rip) moved its registers.
	regs=$(sed -n 's/^  \(rax\|rsi\) \(.*\)/\2/p' "$err")
	g1=$(echo "$regs" | sed -n 1,2p); g2=$(echo "$regs" | sed -n 3,4p)
	hi=$(( load + ${isz%.*} * 1048576 + 1048576 ))
	if [ $st = 0 ] && [ -n "$r1" ] && [ -n "$r2" ] && { [ "$r1" != "$r2" ] || [ "$g1" != "$g2" ]; } &&
	   [ $((16#$r1)) -ge $((load)) ] && [ $((16#$r1)) -lt $hi ] &&
	   [ $((16#$r2)) -ge $((load)) ] && [ $((16#$r2)) -lt $hi ]; then
		echo "ok: Debian's kernel via bzImage: loaded at $load, its decompressor runs (rip $r1 -> $r2$([ "$r1" = "$r2" ] && echo ', rax..rdi moved')); banner not awaited (VMM_DEBIAN_BZIMAGE_FULL=1)"
	else
		echo "FAIL: Debian's kernel via bzImage: exit $st, range '$range', rips '$r1' '$r2'"
		grep -E '^  (rip|rax|rsi) ' "$err" | sed 's/^/    /'
		grep -v '^  ' "$err" | tail -5 | sed 's/^/    /'; fail=1
	fi
	rm -f "$err"
fi
exit $fail
