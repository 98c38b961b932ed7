#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# tests/check_layout.sh [TOP] - the include rules of vmm/ and guestmm/.
#
# Reads every #include in vmm/ and guestmm/ and fails when
#   - guestmm/ includes anything outside guestmm/ (it never knows the VMM);
#   - a vmm/ file includes a vmm header by any spelling but "folder/file.h"
#     (relative to vmm/, the one include directory);
#   - an include between two vmm/ folders (subsystems) is not in ALLOWED
#     below: dependencies point one way, top to bottom;
#   - the files form an include circle: a module is a .c with its .h
#     (vmm/core/vm.c + vmm/core/vm.h); module A depends on B when a file of
#     A includes B's header; tsort finds any loop.
set -u
top=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$top" || exit 2

# Subsystem -> the subsystems it may include (besides itself).  Every vmm
# subsystem may include guestmm's public headers (<guestmm/...>).
declare -A ALLOWED=(
	[cli]="api migration snapshot machine bench virtio devices core boot"
	[api]="migration snapshot machine virtio devices core boot"
	[migration]="snapshot machine virtio devices core boot"
	[snapshot]="machine virtio devices core boot"
	[bench]="core boot"
	[machine]="virtio devices core boot"
	[virtio]="core boot"
	[devices]="core boot"
	[core]="boot"
	[boot]="images"
)

fail=0
bad() { echo "check_layout: $*"; fail=1; }
edges=$(mktemp)
trap 'rm -f "$edges"' EXIT

# guestmm: only guestmm/ and system headers.
while IFS= read -r f; do
	dir=$(dirname "$f")
	while IFS= read -r inc; do
		name=${inc:1:${#inc}-2}
		case $inc in
		\"*)
			if [ ! -f "$dir/$name" ] && [ ! -f guestmm/include/$name ] &&
			   [ ! -f guestmm/src/$name ]; then
				bad "$f includes \"$name\", which is not in guestmm/"
			fi ;;
		\<*)
			case $name in
			guestmm/*) ;;
			*) [ -e "vmm/$name" ] && bad "$f includes <$name> from vmm/" ;;
			esac ;;
		esac
	done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*\([<"][^>"]*[>"]\).*/\1/p' "$f")
done < <(find guestmm -name '*.[ch]' | sort)

# vmm: the allowed edges and the module graph.
while IFS= read -r f; do
	rel=${f#vmm/}
	sub=${rel%%/*}
	if [ "$sub" = "$rel" ]; then
		bad "$f is not in a subsystem folder"
		continue
	fi
	[ -n "${ALLOWED[$sub]+x}" ] || bad "$f: subsystem $sub/ is not in ALLOWED (tests/check_layout.sh)"
	echo "${f%.*} ${f%.*}" >>"$edges"
	while IFS= read -r name; do
		if [ -f "vmm/$name" ] && [[ $name == */* ]]; then
			tsub=${name%%/*}
			echo "${f%.*} vmm/${name%.*}" >>"$edges"
		elif [ -f "images/include/$name" ]; then
			tsub=images
		else
			bad "$f includes \"$name\": not a vmm header spelled folder/file.h"
			continue
		fi
		[ "$tsub" = "$sub" ] && continue
		case " ${ALLOWED[$sub]-} " in
		*" $tsub "*) ;;
		*) bad "$f includes \"$name\": $sub/ -> $tsub/ goes against the layering (allowed: ${ALLOWED[$sub]-none})" ;;
		esac
	done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
done < <(find vmm -name '*.[ch]' | sort)

if ! out=$(tsort "$edges" 2>&1 >/dev/null) || [ -n "$out" ]; then
	bad "include circle between modules (each loop: its modules, one per line):"
	echo "$out" | sed 's/^tsort: [^ ]*: input contains a loop:$/  loop:/; s/^tsort: /    /'
fi

[ $fail -eq 0 ] && echo "check_layout: ok ($(wc -l <"$edges") module edges, no circle)"
exit $fail
