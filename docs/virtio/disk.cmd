build/tests/vmm/virtio-blk-bench   # release build (scripts/bench-virtio)
