#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# tests/vmm/fuzz.sh TARGET BUILDDIR SECONDS - run one of the libFuzzer harnesses
# for SECONDS:
#   http       the control API's HTTP/1.1 parser (tests/vmm/fuzz_http.c)
#   virtqueue  the split virtqueue layer (vmm/virtio/virtqueue.c through
#              tests/vmm/fuzz_virtqueue.c): hostile rings, descriptor tables and
#              indices in guest memory (FUZZ_VQ_TRACE=1 traces a replay)
#   migration  live migration's receiving side (vmm/migration/proto.c through
#              tests/vmm/fuzz_migration.c): a hostile peer's stream, headers,
#              memory and memfd tables, fds over SCM_RIGHTS
#
# Installs clang and its libFuzzer runtime if missing (Debian), configures
# BUILDDIR with CC=clang and ASan+UBSan (once; a BUILDDIR configured with
# another compiler is refused), builds only the fuzzer, and runs it on the
# seed corpus tests/vmm/fuzz/TARGET/ (read only) plus BUILDDIR/fuzz_TARGET_corpus
# (where it keeps what it finds, across runs).  Prints libFuzzer's final
# lines; exits non-zero on a crash, leaving the input as BUILDDIR/crash-*.
# Reproduce one with: BUILDDIR/tests/vmm/fuzz_TARGET BUILDDIR/crash-...
set -euo pipefail

if [ $# -ne 3 ] || ! [[ $3 =~ ^[0-9]+$ ]] || [[ ! $1 =~ ^(http|virtqueue|migration)$ ]]; then
	echo "usage: $0 http|virtqueue|migration BUILDDIR SECONDS" >&2
	exit 2
fi
name=fuzz_$1
seeds=$1
dir=$2
secs=$3

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

ensure_packages clang "${BUILD_PACKAGES[@]}"
# libFuzzer's runtime is only recommended by clang: name it.
major=$(clang -dumpversion | cut -d. -f1)
ensure_packages "libclang-rt-$major-dev"

if [ ! -f "$dir/build.ninja" ]; then
	say "configuring $dir (clang, address,undefined)"
	CC=clang meson setup "$dir" "$top" -Db_sanitize=address,undefined -Db_lundef=false \
		-Dbuildtype=debugoptimized >/dev/null
elif ! grep -q 'C compiler for the host machine: clang' "$dir/meson-logs/meson-log.txt"; then
	echo "fuzz.sh: $dir is not a clang build directory" >&2
	exit 2
fi
ninja -C "$dir" "tests/vmm/$name" >&2

mkdir -p "$dir/${name}_corpus"
log="$dir/$name.log"
say "fuzzing for ${secs}s (log: $log)"
status=0
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	"$dir/tests/vmm/$name" -max_total_time="$secs" -max_len=8192 -timeout=10 \
	-print_final_stats=1 -artifact_prefix="$dir/" \
	"$dir/${name}_corpus" "$top/tests/vmm/fuzz/$seeds" >"$log" 2>&1 || status=$?

if [ $status -ne 0 ]; then
	tail -n 40 "$log"
	echo "$name: FAILED (status $status); input: $(ls -t "$dir"/crash-* "$dir"/leak-* \
		"$dir"/timeout-* "$dir"/oom-* 2>/dev/null | head -n 1)"
	exit 1
fi
grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1
grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)' "$log"
echo "$name: no crash"
