#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""api_helper.py - the raw-socket and process side of tests/vmm/test_api.sh.

  stale PATH                 bind a unix socket at PATH and exit without
                             removing it (what a killed VMM leaves behind)
  listen-exec PATH PROG ARG0 ARGS...
                             create, bind and listen a unix stream socket at
                             PATH, then exec PROG (argv[0] ARG0) with ARGS and
                             "fd=N" appended, the socket inherited, stdio on
                             /dev/null: how libvirt starts cloud-hypervisor
  unlistened-exec PROG ARGS...
                             the same with a socket that is not listening
  garbage SOCK               send bytes that are no HTTP; print the answer
  bytewise SOCK              send a vmm.ping one byte at a time; print the answer
  continue SOCK ENDPOINT     a bodiless PUT as libvirt's libcurl sends it
                             (chunked, Expect: 100-continue): print the
                             milliseconds until "100 Continue", then the answer
  huge SOCK                  announce a 2 MiB vm.create body; print the answer
  ptycat PTY OUT             copy what the pty says to OUT until it goes away
  idle SOCK                  connect, send half a request, print the
                             milliseconds until the server closes (5 s at most)
  flood SOCK N               hold N connections open, then print the answer
                             to one more
  trickle SOCK N SECS PERIOD open N connections, each sending a request
                             head that never ends, a byte every PERIOD s,
                             for SECS s at most: print how many the server
                             closed and when (ms after each one's first byte)
  trickle-ping SOCK N HOLD PERIOD
                             N tricklers as above; after HOLD s a client
                             sends a vmm.ping: print its answer's status line
                             and time (3 s at most), and how many tricklers
                             are still open
"""
import array
import os
import select
import socket
import sys
import time


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    return s


def read_answer(s):
    """Everything the server sends until it closes or 1 s of silence."""
    out = b""
    s.settimeout(1)
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except (socket.timeout, ConnectionResetError):
        pass
    return out


def read_response(s):
    """One response: head, and the body by Content-Length."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(4096)
        if not b:
            return buf
        buf += b
    head, _, rest = buf.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            n = int(v)
    while len(rest) < n:
        b = s.recv(4096)
        if not b:
            break
        rest += b
    return head + b"\r\n\r\n" + rest


class Trickler:
    """A connection sending "GET ... HTTP/1.1\r\nX-Slow: aaaa..." forever."""

    def __init__(self, path):
        self.s = connect(path)
        self.s.setblocking(False)
        self.t0 = time.monotonic()
        self.s.send(b"G")
        self.rest = b"ET /api/v1/vmm.ping HTTP/1.1\r\nX-Slow: "
        self.closed_ms = None

    def step(self):
        """Send one more byte; False once the server has closed."""
        if self.closed_ms is not None:
            return False
        try:
            if self.s.recv(4096, socket.MSG_DONTWAIT) == b"":
                return self.close()
        except BlockingIOError:
            pass
        except OSError:
            return self.close()
        b, self.rest = (self.rest[:1], self.rest[1:]) if self.rest else (b"a", b"")
        try:
            self.s.send(b)
        except BlockingIOError:
            pass
        except OSError:
            return self.close()
        return True

    def close(self):
        self.closed_ms = (time.monotonic() - self.t0) * 1000
        self.s.close()
        return False


def trickle(path, n, secs, period, ping_at=None):
    conns = [Trickler(path) for _ in range(n)]
    t0 = time.monotonic()
    ping = None
    answer = b""
    result = None
    while time.monotonic() - t0 < secs:
        time.sleep(period)
        for c in conns:
            c.step()
        if ping_at is not None and ping is None and time.monotonic() - t0 >= ping_at:
            ping = connect(path)
            ping.setblocking(False)
            tp = time.monotonic()
            ping.send(b"GET /api/v1/vmm.ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
        if ping is not None and result is None:
            while select.select([ping], [], [], 0)[0]:
                try:
                    b = ping.recv(4096)
                except OSError:
                    b = b""
                answer += b
                if not b or b"\r\n\r\n" in answer:
                    result = (answer.split(b"\r\n")[0].decode("latin-1") or "none: closed",
                              (time.monotonic() - tp) * 1000)
                    break
            if result is None and time.monotonic() - tp > 3:
                result = ("none: no answer", (time.monotonic() - tp) * 1000)
        if ping_at is not None and result is not None:
            break
        if ping_at is None and all(c.closed_ms is not None for c in conns):
            break
    return conns, result


def devnull_stdio():
    fd = os.open("/dev/null", os.O_RDWR)
    for i in (0, 1, 2):
        os.dup2(fd, i)
    if fd > 2:
        os.close(fd)


def main():
    cmd = sys.argv[1]
    if cmd == "stale":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(sys.argv[2])
        os._exit(0)
    if cmd in ("listen-exec", "unlistened-exec"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if cmd == "listen-exec":
            path, prog, args = sys.argv[2], sys.argv[3], sys.argv[4:]
            s.bind(path)
            s.listen(8)
        else:
            prog, args = sys.argv[2], sys.argv[3:]
        s.set_inheritable(True)
        stderr = os.environ.get("API_HELPER_STDERR")
        devnull_stdio()
        if stderr:
            fd = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 2)
            os.close(fd)
        os.execv(prog, args + ["fd=%d" % s.fileno()])
    if cmd == "sendfds":
        # sendfds SOCK METHOD ENDPOINT BODY FD... - one raw request sent
        # with sendmsg, the FDs (tap:NAME opens a tap with a vnet header,
        # null opens /dev/null) passed with it (SCM_RIGHTS), as libvirt
        # sends vm.add-net; prints the status line's code and the body.
        path, method, ep, body = sys.argv[2:6]
        fds = []
        for spec in sys.argv[6:]:
            if spec.startswith("tap:"):
                import fcntl
                import struct
                f = os.open("/dev/net/tun", os.O_RDWR)
                ifr = struct.pack("16sH", spec[4:].encode(), 0x0002 | 0x1000 | 0x4000)
                fcntl.ioctl(f, 0x400454ca, ifr)  # TUNSETIFF: TAP, NO_PI, VNET_HDR
                fds.append(f)
            else:
                fds.append(os.open("/dev/null", os.O_RDONLY))
        b = body.encode()
        req = ("%s /api/v1/%s HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n"
               "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % (method, ep, len(b))).encode() + b
        s = connect(path)
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        s.sendmsg([req], anc)
        for f in fds:
            os.close(f)
        r = read_response(s).decode("latin-1")
        head, _, rbody = r.partition("\r\n\r\n")
        code = head.split(" ")[1] if " " in head else "none"
        print(code, rbody)
        return
    if cmd == "garbage":
        s = connect(sys.argv[2])
        s.sendall(b"\x00\xff\x16\x03\x01 garbage \x7f\r\n\r\n")
        sys.stdout.write(read_answer(s).decode("latin-1"))
        return
    if cmd == "bytewise":
        s = connect(sys.argv[2])
        for b in b"GET /api/v1/vmm.ping HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n":
            s.send(bytes([b]))
            time.sleep(0.002)
        s.settimeout(10)
        sys.stdout.write(read_response(s).decode("latin-1"))
        return
    if cmd == "continue":
        s = connect(sys.argv[2])
        t0 = time.monotonic()
        s.sendall(("PUT /api/v1/%s HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n"
                   "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
                   % sys.argv[3]).encode())
        s.settimeout(5)
        got = b""
        while b"\r\n\r\n" not in got:
            b = s.recv(1)
            if not b:
                break
            got += b
        ms = (time.monotonic() - t0) * 1000
        if not got.startswith(b"HTTP/1.1 100"):
            print("no 100 Continue: %r" % got)
            return
        print("continue_ms %.1f" % ms)
        s.sendall(b"0\r\n\r\n")
        sys.stdout.write(read_response(s).decode("latin-1"))
        return
    if cmd == "huge":
        s = connect(sys.argv[2])
        s.sendall(b"PUT /api/v1/vm.create HTTP/1.1\r\nHost: localhost\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n")
        try:
            s.sendall(b"{" + b" " * 65536)
        except OSError:
            pass
        sys.stdout.write(read_answer(s).decode("latin-1"))
        return
    if cmd == "ptycat":
        fd = os.open(sys.argv[2], os.O_RDONLY | os.O_NOCTTY)
        with open(sys.argv[3], "ab", buffering=0) as out:
            while True:
                try:
                    b = os.read(fd, 4096)
                except OSError:
                    break
                if not b:
                    break
                out.write(b)
        return
    if cmd == "idle":
        s = connect(sys.argv[2])
        s.sendall(b"GET /api/v1/vmm.ping HTTP/1.1\r\n")
        t0 = time.monotonic()
        s.settimeout(5)
        try:
            got = s.recv(4096)
        except socket.timeout:
            print("still open after 5 s")
            return
        print("closed_after_ms %.0f %r" % ((time.monotonic() - t0) * 1000, got))
        return
    if cmd == "flood":
        held = [connect(sys.argv[2]) for _ in range(int(sys.argv[3]))]
        time.sleep(0.2)
        s = connect(sys.argv[2])
        sys.stdout.write(read_answer(s).decode("latin-1"))
        for h in held:
            h.close()
        return
    if cmd == "trickle":
        conns, _ = trickle(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]),
                           float(sys.argv[5]))
        ms = [c.closed_ms for c in conns if c.closed_ms is not None]
        print("dropped %d/%d min_ms %.0f max_ms %.0f" % (len(ms), len(conns),
              min(ms) if ms else 0, max(ms) if ms else 0))
        return
    if cmd == "trickle-ping":
        hold = float(sys.argv[4])
        conns, result = trickle(sys.argv[2], int(sys.argv[3]), hold + 4, float(sys.argv[5]),
                                ping_at=hold)
        if result:
            print("ping %s in %.0f ms" % result)
        print("tricklers open %d/%d" % (sum(c.closed_ms is None for c in conns), len(conns)))
        return
    sys.exit("api_helper.py: unknown command " + cmd)


if __name__ == "__main__":
    main()
