#!/bin/bash
# tests/fuzz_virtqueue.sh BUILDDIR SECONDS - fuzz the split virtqueue layer
# (vmm/virtqueue.c through tests/fuzz_virtqueue.c) for SECONDS: hostile
# rings, descriptor tables and indices in guest memory.
#
# Installs clang and its libFuzzer runtime if missing (Debian), configures
# BUILDDIR with CC=clang and ASan+UBSan (once; a BUILDDIR configured with
# another compiler is refused), builds only the fuzzer, and runs it on the
# seed corpus tests/fuzz/virtqueue/ (read only) plus
# BUILDDIR/fuzz_virtqueue_corpus (where it keeps what it finds, across runs).
# Prints libFuzzer's final lines; exits non-zero on a crash, leaving the
# input as BUILDDIR/crash-*.  Reproduce one with:
#   FUZZ_VQ_TRACE=1 BUILDDIR/tests/fuzz_virtqueue BUILDDIR/crash-...
set -euo pipefail

if [ $# -ne 2 ] || ! [[ $2 =~ ^[0-9]+$ ]]; then
	echo "usage: $0 BUILDDIR SECONDS" >&2
	exit 2
fi
dir=$1
secs=$2

source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

ensure_packages clang "${BUILD_PACKAGES[@]}"
# libFuzzer's runtime is only recommended by clang: name it.
major=$(clang -dumpversion | cut -d. -f1)
ensure_packages "libclang-rt-$major-dev"

if [ ! -f "$dir/build.ninja" ]; then
	say "configuring $dir (clang, address,undefined)"
	CC=clang meson setup "$dir" "$top" -Db_sanitize=address,undefined -Db_lundef=false \
		-Dbuildtype=debugoptimized >/dev/null
elif ! grep -q 'C compiler for the host machine: clang' "$dir/meson-logs/meson-log.txt"; then
	echo "fuzz_virtqueue.sh: $dir is not a clang build directory" >&2
	exit 2
fi
ninja -C "$dir" tests/fuzz_virtqueue >&2

mkdir -p "$dir/fuzz_virtqueue_corpus"
log="$dir/fuzz_virtqueue.log"
say "fuzzing for ${secs}s (log: $log)"
status=0
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	"$dir/tests/fuzz_virtqueue" -max_total_time="$secs" -max_len=8192 -timeout=10 \
	-print_final_stats=1 -artifact_prefix="$dir/" \
	"$dir/fuzz_virtqueue_corpus" "$top/tests/fuzz/virtqueue" >"$log" 2>&1 || status=$?

if [ $status -ne 0 ]; then
	tail -n 40 "$log"
	echo "fuzz_virtqueue: FAILED (status $status); input: $(ls -t "$dir"/crash-* \
		"$dir"/leak-* "$dir"/timeout-* "$dir"/oom-* 2>/dev/null | head -n 1)"
	exit 1
fi
grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1
grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)' "$log"
echo "fuzz_virtqueue: no crash"
