#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""net_serve.py ADDR PORT send|recv FILE LIMIT - one TCP connection for the
network tests (test_net_linux.sh, test_libvirt_net.sh), run inside their
network namespace: "send" sends FILE and closes; "recv" reads until the peer
closes and writes "<sha256> <bytes>" to FILE.  The accept waits up to
4 * LIMIT + 120 s (the tests' own bound: the guest connects when its turn
comes), each receive or send call up to LIMIT seconds.  IP_FREEBIND: ADDR may be given to the tap
after the server started (libvirt makes the tap when the domain starts)."""
import hashlib
import socket
import sys

IP_FREEBIND = 15


def main():
    addr, port, mode, path, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
    s.bind((addr, port))
    s.listen(1)
    s.settimeout(4 * limit + 120)
    c, _ = s.accept()
    c.settimeout(limit)
    if mode == "send":
        with open(path, "rb") as f:
            c.sendall(f.read())
    else:
        h, n = hashlib.sha256(), 0
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            h.update(b)
            n += len(b)
        with open(path, "w") as f:
            f.write("%s %d\n" % (h.hexdigest(), n))
    c.close()


if __name__ == "__main__":
    main()
