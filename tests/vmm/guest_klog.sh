# SPDX-License-Identifier: GPL-2.0-only
# shellcheck shell=bash
# guest_klog.sh - sourced by test_linux.sh and test_virtio_linux.sh: any
# crash in the Linux guest is a test failure.  The guest boots with
# print_fatal_signals=1 (the kernel logs every fatal signal a program dies
# of, with its registers) and prints its dmesg on the console before it
# ends; guest_crash_reports then finds the kernel's reports there.
# scripts/guest-crash-check measures how often guest programs crash.

# What the kernel says when something crashes: a fatal signal
# (print_fatal_signals), a user page fault, #GP or trap
# (show_unhandled_signals), a kernel oops or BUG; and busybox's shell's
# word for a child killed by SIGSEGV.
guest_klog_re='potentially unexpected fatal signal|segfault at|general protection fault|\] trap |Oops|BUG:|Kernel panic'
guest_crash_re="$guest_klog_re|Segmentation fault"

# guest_crash_reports CONSOLE-FILE: print the reports (every matching line,
# the first 10, then the kernel's first report with its registers) and
# return 0 when there are any; return 1 when none.
guest_crash_reports() {
	local log
	log=$(tr -d '\r' <"$1")
	grep -q -E "$guest_crash_re" <<<"$log" || return 1
	echo "$(grep -c -E "$guest_crash_re" <<<"$log") line(s) report a crash; the first ones:"
	grep -E "$guest_crash_re" <<<"$log" | head -n 10 | sed 's/^/  /'
	echo "the kernel's first report:"
	grep -m1 -E -A10 "$guest_klog_re" <<<"$log" | sed 's/^/  /'
}
