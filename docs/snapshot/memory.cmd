build-rel/tests/guestmm-snapshot-bench --sizes 1G,4G   # scripts/bench-snapshot
