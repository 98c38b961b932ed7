/work/main/build/vmm/vmm bench munmap --size 16G --range 1G --vcpus 8 --walkers 4 --repeat 5 --budget 20
