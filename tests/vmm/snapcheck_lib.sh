# SPDX-License-Identifier: GPL-2.0-only
# snapcheck_lib.sh - what the tests driving the snapcheck image share
# (test_snapshot.sh, test_migration.sh); sourced after api_lib.sh.

# snapcheck_disk FILE - the disk snapcheck reads: word i of sector s is
# (s << 16 | i) * K (images/snapcheck.c, disk_word).
snapcheck_disk() {
	python3 - "$1" <<'EOF'
import struct, sys
with open(sys.argv[1], 'wb') as f:
    for s in range(2048):
        f.write(b''.join(struct.pack('<Q', (((s << 16) | i) * 0xd6e8feb86659fd93) % 2**64)
                         for i in range(64)))
EOF
}

# wait_for FILE TEXT SECONDS - until FILE holds TEXT (0) or time is up (1).
wait_for() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -qF -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
