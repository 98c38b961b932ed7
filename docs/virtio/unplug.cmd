scripts/bench-virtio results/virtio-final2   # count rerun alone: VMM_VIRTIO_STRATEGY=count VMM_VIRTIO_MEM=1G VMM_VIRTIO_MEMONLY=1 tests/vmm/test_virtio_linux.sh build/vmm/vmm images/linux/cmdline
