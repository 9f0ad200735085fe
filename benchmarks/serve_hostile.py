"""Hostile clients against `adder serve`: the server's memory and descriptors under each kind.

Starts `adder serve --port 0` (under a file-descriptor limit with --files), then runs
each kind of hostile client in turn on 127.0.0.1, every one bounded in connections,
bytes and seconds. While it runs, one honest client asks GET /health every 50 ms. Per
kind it prints the server's resident memory (MB) and open descriptors before, at their
peak, and two seconds after the clients are gone, the honest client's failures and its
slowest answer. Not a test; run by hand:

    python benchmarks/serve_hostile.py --files 256

--python runs another interpreter (say, one whose `adder` is an older checkout) for the
server, to measure it the same way.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time


def start(python: str, files: int | None) -> tuple[subprocess.Popen, int]:
    def limit() -> None:
        if files:
            resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))

    process = subprocess.Popen(
        [python, "-m", "adder", "serve", "--port", "0"], stderr=subprocess.PIPE, text=True, preexec_fn=limit
    )
    line = process.stderr.readline()
    found = re.search(r"127\.0\.0\.1:(\d+);", line)
    if not found:
        process.kill()
        sys.exit(f"the server did not start: {line}")
    return process, int(found.group(1))


def resources(pid: int) -> tuple[float, int]:
    try:
        with open(f"/proc/{pid}/status") as status:
            rss = int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1)) / 1024
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return float("nan"), -1


class Watch(threading.Thread):
    """Samples the server's memory and descriptors, and asks /health as an honest client would."""

    def __init__(self, pid: int, port: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.port = pid, port
        self.running = True
        self.peak_rss, self.peak_fds, self.failures, self.slowest = 0.0, 0, 0, 0.0

    def run(self) -> None:
        while self.running:
            rss, fds = resources(self.pid)
            self.peak_rss, self.peak_fds = max(self.peak_rss, rss), max(self.peak_fds, fds)
            started = time.perf_counter()
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/health")
                ok = connection.getresponse().status == 200
                connection.close()
            except OSError:
                ok = False
            self.failures += not ok
            self.slowest = max(self.slowest, time.perf_counter() - started)
            time.sleep(0.05)


def sockets(port: int, count: int, buffer: int | None = None) -> list[socket.socket]:
    made = []
    for _ in range(count):
        try:
            sock = socket.socket()
            if buffer:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
            sock.settimeout(5)
            sock.connect(("127.0.0.1", port))
            made.append(sock)
        except OSError:
            sock.close()
            break
    return made


def send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass


def hold(held: list[socket.socket], seconds: float, trickle: bytes | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if trickle:
            for sock in held:
                send_quietly(sock, trickle)
        time.sleep(0.5)


def idle(port, host):
    held = sockets(port, 400)
    hold(held, 4)
    return held


def slow_head(port, host):
    held = sockets(port, 200)
    for sock in held:
        send_quietly(sock, b"GET /health HTTP/1.1\r\nHost: %s\r\nX-Slow: " % host)
    hold(held, 12, trickle=b"1")
    return held


def slow_body(port, host):
    held = sockets(port, 200)
    for sock in held:
        send_quietly(sock, b"POST /add HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000000\r\n\r\n[" % host)
    hold(held, 6, trickle=b" ")
    return held


def unread_body(port, host):
    held = sockets(port, 200)
    for sock in held:
        send_quietly(sock, b"GET /nope HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000000\r\n\r\n" % host)
    hold(held, 6, trickle=b"x")
    return held


def unread_replies(port, host):
    held = sockets(port, 50, buffer=4096)
    body = json.dumps({"queries": ["999+999"] * 1000}).encode()
    request = b"POST /add HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s" % (host, len(body), body)
    for sock in held:
        send_quietly(sock, request * 4)
    hold(held, 14)
    return held


def pipelining(port, host):
    held = sockets(port, 4)
    one = b"GET /health HTTP/1.1\r\nHost: %s\r\n\r\n" % host
    for sock in held:
        send_quietly(sock, one * (1_000_000 // len(one)))
    hold(held, 4)
    return held


def huge_heads(port, host):
    held = sockets(port, 50)
    for sock in held:
        send_quietly(sock, b"GET /health HTTP/1.1\r\nHost: %s\r\nX-Big: " % host + b"1" * 1_000_000)
    hold(held, 3)
    return held


def big_bodies(port, host):
    held = sockets(port, 20)
    for sock in held:
        send_quietly(
            sock, b"POST /add HTTP/1.1\r\nHost: %s\r\nContent-Length: 5000000\r\n\r\n" % host + b"x" * 5_000_000
        )
    hold(held, 3)
    return held


def bad_http(port, host):
    for index in range(500):
        (sock,) = sockets(port, 1) or [None]
        if sock is None:
            break
        send_quietly(
            sock,
            [b"FOO / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"][index % 2],
        )
        sock.close()
    return []


KINDS = [idle, slow_head, slow_body, unread_body, unread_replies, pipelining, huge_heads, big_bodies, bad_http]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=None, help="the server's file-descriptor limit")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs the server")
    args = parser.parse_args()
    process, port = start(args.python, args.files)
    host = f"127.0.0.1:{port}".encode()
    time.sleep(1)
    print(f"files limit: {args.files or 'inherited'}")
    print(
        "| client kind | RSS MB before / peak / after | fds before / peak / after | /health failed | slowest /health |"
    )
    print("| --- | --- | --- | ---: | ---: |")
    try:
        for kind in KINDS:
            before = resources(process.pid)
            watch = Watch(process.pid, port)
            watch.start()
            held = kind(port, host)
            for sock in held:
                sock.close()
            time.sleep(2)
            watch.running = False
            watch.join()
            after = resources(process.pid)
            print(
                f"| {kind.__name__.replace('_', ' ')} | {before[0]:.0f} / {watch.peak_rss:.0f} / {after[0]:.0f} "
                f"| {before[1]} / {watch.peak_fds} / {after[1]} | {watch.failures} | {watch.slowest * 1000:.0f} ms |",
                flush=True,
            )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    main()
