# SPDX-License-Identifier: GPL-2.0-only
# scripts/lib.sh - shared by scripts/run and scripts/test (sourced, not run).

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf '==> %s\n' "$*" >&2; }

# Packages every build needs.
BUILD_PACKAGES=(meson ninja-build pkg-config gcc libc6-dev libcriterion-dev liburcu-dev libjson-c-dev liburing-dev libseccomp-dev)

# ensure_packages PKG... - install those not installed yet (Debian 12).
ensure_packages() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing: ${missing[*]}"
	local sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# build_dir DIR MESON-OPTION... - configure once (or reconfigure), then build.
build_dir() {
	local dir=$1; shift
	if [ -f "$top/$dir/build.ninja" ]; then
		meson configure "$top/$dir" "$@" >/dev/null
	else
		meson setup "$top/$dir" "$top" "$@" >/dev/null
	fi
	ninja -C "$top/$dir" >&2
}
