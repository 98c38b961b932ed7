build/tests/virtio-blk-bench   # release build (scripts/bench-virtio)
