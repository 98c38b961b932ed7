#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""libvirt_restore_replay.py VMM DIR WORKDIR - what libvirt 11.3's ch driver
does for `virsh restore DIR` (ch_process.c virCHProcessStartRestore and
ch_driver.c chDomainRestoreFlags), replayed request for request, for use
where that libvirt cannot do it itself: its restore launches the VMM
without a pidfile (priv->pidfile is only set by virCHProcessPrepareHost,
which the restore path never calls) and then fails with "Domain ... didn't
show up: Bad address".

  1. a unix socket bound and listening, a FIFO; the VMM started as
     `cloud-hypervisor --api-socket fd=N --event-monitor path=FIFO` in a
     session of its own (libvirt daemonizes it), stderr to WORKDIR/vmm.log;
  2. the FIFO's read end opened (libvirt blocks on it; here bounded);
  3. a new connection: ONE sendmsg of the raw
     `PUT /api/v1/vm.restore` request with Content-Length and the body
     {"source_url":"file://DIR"}, with an SCM_RIGHTS message of zero fds;
     the answer: ONE recv of at most 1023 bytes, "HTTP/1.x NNN" with NNN
     200 or 204 (libvirt waits without a timeout; here 120 s);
  4. GET vm.info: config.console.file (the pty libvirt shows);
  5. PUT vm.resume (200/204).
Writes one JSON object to WORKDIR/result.json (pid, status, restore_ms, pty,
vm.info's state before and after the resume, error), then stays, as
libvirt's event thread does, reading the FIFO into WORKDIR/events until the
VMM exits (a closed reader would stop the VMM): stop the VMM as libvirt
does, by unlinking WORKDIR/event-monitor-fifo, or with a signal.  Every
wait is bounded (the whole run by LIFETIME s, argv[4], default 1800).
"""
import json
import os
import select
import socket
import subprocess
import sys
import time


def call(sock_path, endpoint, method, body=b"", timeout=30):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    head = (f"{method} /api/v1/{endpoint} HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode()
    s.sendall(head + body)
    data = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        if not b:
            break
        data += b
        h, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            cl = [l for l in h.split(b"\r\n") if l.lower().startswith(b"content-length:")]
            if cl and len(rest) >= int(cl[0].split(b":")[1]):
                break
            if not cl and h.split(b" ")[1] in (b"204",):
                break
    s.close()
    status = int(data.split(b" ")[1]) if data.startswith(b"HTTP/1.") else 0
    return status, data.partition(b"\r\n\r\n")[2]


def main():
    vmm, src, work = os.path.realpath(sys.argv[1]), os.path.realpath(sys.argv[2]), sys.argv[3]
    lifetime = float(sys.argv[4]) if len(sys.argv) > 4 else 1800
    ev = -1
    out = {"pid": 0, "status": 0, "restore_ms": None, "pty": "", "error": ""}
    sock_path = os.path.join(work, "api.sock")
    fifo = os.path.join(work, "event-monitor-fifo")
    for p in (sock_path, fifo):
        if os.path.lexists(p):
            os.unlink(p)
    os.mkfifo(fifo, 0o600)
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(sock_path)
    lsock.listen(1)
    fd = lsock.fileno()
    log = open(os.path.join(work, "vmm.log"), "ab")
    proc = subprocess.Popen(["cloud-hypervisor", "--api-socket", f"fd={fd}",
                             "--event-monitor", f"path={fifo}"], executable=vmm,
                            pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=log,
                            stderr=log, start_new_session=True)
    lsock.close()
    out["pid"] = proc.pid
    try:
        # 2. the FIFO's read end: non-blocking open, then wait for a writer.
        ev = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        # 3. the raw vm.restore, as libvirt sends it.
        body = json.dumps({"source_url": "file://" + src}, separators=(",", ":")).encode()
        req = (b"PUT /api/v1/vm.restore HTTP/1.1\r\nHost: localhost\r\n"
               b"Content-Type: application/json\r\n"
               + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock_path)
        t0 = time.monotonic()
        s.sendmsg([req], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, b"")])
        r, _, _ = select.select([s], [], [], 120)
        if not r:
            out["error"] = "no answer to vm.restore within 120 s (libvirt would wait for ever)"
            raise SystemExit
        resp = s.recv(1023)
        out["restore_ms"] = round((time.monotonic() - t0) * 1000)
        s.close()
        try:
            out["status"] = int(resp.split(b" ")[1]) if resp.startswith(b"HTTP/1.") else 0
        except (IndexError, ValueError):
            out["status"] = 0
        if out["status"] not in (200, 204):
            out["error"] = "vm.restore answered: " + resp.decode("latin-1")
            raise SystemExit
        # 4. vm.info's console pty.
        st, info = call(sock_path, "vm.info", "GET")
        try:
            out["pty"] = json.loads(info)["config"]["console"]["file"]
        except (ValueError, KeyError, TypeError):
            out["error"] = f"vm.info ({st}) has no config.console.file: {info[:300]!r}"
            raise SystemExit
        out["state_before_resume"] = json.loads(info).get("state")
        # 5. vm.resume.
        st, b = call(sock_path, "vm.resume", "PUT")
        if st not in (200, 204):
            out["error"] = f"vm.resume answered {st}: {b[:300]!r}"
            raise SystemExit
        st, info = call(sock_path, "vm.info", "GET")
        out["state_after_resume"] = json.loads(info).get("state") if st == 200 else None
    except SystemExit:
        pass
    except OSError as e:
        out["error"] = f"{type(e).__name__}: {e}"
    with open(os.path.join(work, "result.json.tmp"), "w") as f:
        json.dump(out, f)
    os.rename(os.path.join(work, "result.json.tmp"), os.path.join(work, "result.json"))
    end = time.monotonic() + lifetime
    with open(os.path.join(work, "events"), "ab", buffering=0) as evout:
        while proc.poll() is None and time.monotonic() < end:
            r, _, _ = select.select([ev], [], [], 0.5) if ev >= 0 else ([], [], time.sleep(0.5))
            if r:
                try:
                    b = os.read(ev, 65536)
                except BlockingIOError:
                    b = b""
                if b:
                    evout.write(b)
                else:
                    time.sleep(0.1)     # no writer (yet, or any more)
    if proc.poll() is None:
        proc.kill()
    proc.wait()


if __name__ == "__main__":
    main()
