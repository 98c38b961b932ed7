# SPDX-License-Identifier: GPL-2.0-only
# api_lib.sh - what the control API's shell tests share (sourced by
# test_api.sh and test_api_hostile.sh after they set `here` and NAME):
# curl and python3 installed if missing, a scratch directory $tmp removed
# at exit with every process in ${pids[@]} killed, ok/bad/check counting
# checks into $checks and $fail, and api() for one request on $sock.
if ! command -v curl >/dev/null || ! command -v python3 >/dev/null; then
	# shellcheck source=../../scripts/lib.sh
	. "$here/../../scripts/lib.sh"
	ensure_packages curl python3 || { echo "FAIL: curl and python3 are needed"; exit 1; }
fi

tmp=$(mktemp -d "/tmp/$NAME.XXXXXX")
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
fail=0 checks=0
ok() { checks=$((checks + 1)); echo "ok: $*"; }
bad() { checks=$((checks + 1)); echo "FAIL: $*"; fail=1; }
# check DESCRIPTION COMMAND... - ok if the command succeeds.
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

sock=
# api METHOD ENDPOINT [BODY] - sets CODE, BODY and MS (the answer's time);
# curl gives up after API_MAX_TIME seconds (default 60; a VMM that blocks
# answers nothing).
api() {
	local args=(-s -S --max-time "${API_MAX_TIME:-60}" --unix-socket "$sock" -X "$1"
		-o "$tmp/body" -w '%{http_code}')
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
	local s0=$(date +%s%N)
	CODE=$(curl "${args[@]}" "http://localhost/api/v1/$2" 2>"$tmp/curl.err") || CODE="curl-failed:$(cat "$tmp/curl.err")"
	MS=$(( ($(date +%s%N) - s0) / 1000000 ))
	BODY=$(cat "$tmp/body" 2>/dev/null)
	rm -f "$tmp/body"
}
