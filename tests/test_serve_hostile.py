"""`adder serve` against clients that try to exhaust it: every resource a client can hold is
bounded, every refusal is JSON, and exposure beyond this machine is asked for, never silent.

Real server processes on free loopback ports; every loop is bounded. Memory and descriptors
are read from /proc (Linux), as a client cannot see them.
"""

from __future__ import annotations

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

import pytest

pytest.importorskip("uvicorn", reason="needs the serve extra")
pytest.importorskip("starlette", reason="needs the serve extra")

from adder.server import Limits, model_limits  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads the server's /proc")

LIMITS = Limits()
TIGHT = dict(head_seconds=1.0, body_seconds=1.0, drain_seconds=1.0, linger_seconds=0.5, max_pipelined=8)
TIGHT_SERVER = (
    "import sys\n"
    "from adder.server import Limits, build_app, listen, open_models, run\n"
    f"limits = Limits(**{TIGHT!r})\n"
    "models, default = open_models(None)\n"
    "sock = listen('127.0.0.1', 0)\n"
    "print(f'at http://127.0.0.1:{sock.getsockname()[1]};', file=sys.stderr, flush=True)\n"
    "run(build_app(models, default, limits), sock, limits=limits)\n"
)


class Server:
    def __init__(self, command: list[str], files: int | None = None) -> None:
        def limit_files() -> None:
            if files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))

        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, preexec_fn=limit_files)
        self.first_line = self.process.stderr.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+);", self.first_line)
        if not found:
            self.process.kill()
            pytest.fail(f"the server did not start: {self.first_line}{self.process.stderr.read()}")
        self.port = int(found.group(1))
        self.host = f"127.0.0.1:{self.port}".encode()
        health(self)  # answered once the loop runs: its descriptors and the batch threads are all open

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            return int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1)) / 1024

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            self.process.stderr.close()


@pytest.fixture(scope="module")
def tight():
    """A server with a second for a head and a body, a second to drain a reply, 8 pipelined requests."""
    server = Server([sys.executable, "-c", TIGHT_SERVER])
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def served():
    """`adder serve` as shipped, with its default limits."""
    server = Server([sys.executable, "-m", "adder", "serve", "--port", "0"])
    yield server
    assert server.stop() == 0


def connect(server: Server, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    return sock


def until_closed(sock: socket.socket, seconds: float) -> tuple[bytes, bool]:
    """What the server sends within ``seconds``, and whether it closed the connection by then."""
    deadline, reply = time.monotonic() + seconds, b""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return reply, False
        except ConnectionResetError:
            return reply, True
        if not chunk:
            return reply, True
        reply += chunk
    return reply, False


def send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the server stopped reading, or closed: what a bound may do


def json_reply(raw: bytes) -> tuple[int, dict, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), raw[:300]
    return int(head.split()[1]), json.loads(body), head


def health(server: Server, headers: dict | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/health", headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


# Time: a whole request, read or not


@pytest.mark.parametrize("path", [b"/health", b"/nope"])
def test_a_reply_to_a_request_whose_body_never_comes_ends_its_connection(served, path):
    sock = connect(served)
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000000\r\n\r\n" % (path, served.host))
    reply, closed = until_closed(sock, 5)
    sock.close()
    assert closed, "the connection was held open after its reply"
    assert json_reply(reply)[0] in (200, 404)


def test_a_body_nobody_reads_sent_a_byte_at_a_time_is_cut_off(tight):
    sock = connect(tight)
    sock.sendall(b"GET /nope HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000000\r\n\r\n" % tight.host)
    closed = False
    for _ in range(40):  # 8 s at most, a byte every 0.2 s
        try:
            sock.sendall(b"x")
        except OSError:
            closed = True
            break
        reply, closed = until_closed(sock, 0.2)
        if closed:
            break
    sock.close()
    assert closed, "a trickled body held the connection"


def test_bytes_before_a_head_start_its_clock_after_a_keep_alive_reply(tight):
    sock = connect(tight)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: %s\r\n\r\n" % tight.host)
    reply = b""
    while b'{"status": "ok"}' not in reply:
        reply += sock.recv(4096)
    closed = False
    for _ in range(30):  # 6 s at most; the head's limit is 1 s
        try:
            sock.sendall(b"\r\n")
        except OSError:
            closed = True
            break
        if until_closed(sock, 0.2)[1]:
            closed = True
            break
    sock.close()
    assert closed, "blank lines held a keep-alive connection"


def test_a_body_over_the_limit_gets_its_413_while_the_client_still_sends(served):
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    connection.request("POST", "/add", body=b"x" * 5_000_000)  # sends it all before reading
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read()) == {"error": f"the request body is over {LIMITS.max_body_bytes:,} bytes"}
    connection.close()


# Replies nobody reads


def test_a_client_that_never_reads_its_replies_is_dropped(served):
    before = served.descriptors()
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    connection.request("GET", "/models")
    listed = json.loads(connection.getresponse().read())["models"]
    connection.close()
    count = next(m["limits"]["max_queries"] for m in listed if m["name"] == "default")
    body = json.dumps({"queries": ["x" * 90] * count}).encode()  # each answered by a long error: ~190 bytes
    assert len(body) < LIMITS.max_body_bytes
    request = b"POST /add HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s" % (served.host, len(body), body)
    # Replies of 6 MB in all, more than the kernel buffers on both sides of a 4 KB window hold.
    sock = connect(served, receive_buffer=4096)
    repeats = min(LIMITS.max_pipelined + 1, -(-6_000_000 // (count * 190)))
    sender = threading.Thread(target=send_quietly, args=(sock, request * repeats), daemon=True)
    sender.start()
    deadline = time.monotonic() + LIMITS.drain_seconds + 10
    while served.descriptors() > before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert served.descriptors() <= before, (
        f"a reply nobody reads held its connection ({before} -> {served.descriptors()})"
    )
    sock.close()


# Pipelining


def test_pipelined_requests_are_bounded_per_connection_and_memory_stays_flat(served):
    before = served.rss_mb()
    one = b"GET /health HTTP/1.1\r\nHost: %s\r\n\r\n" % served.host
    flood = one * (1_000_000 // len(one))
    for _ in range(4):
        sock = connect(served)
        try:
            sock.sendall(flood)
        except OSError:
            pass  # the server stopped reading and closed: what it was meant to do
        reply, closed = until_closed(sock, 15)
        sock.close()
        assert closed and reply.count(b"HTTP/1.1 200") <= LIMITS.max_pipelined + 1
    assert health(served) == (200, {"status": "ok"})
    grown = served.rss_mb() - before
    assert grown < 40, f"the server grew by {grown:.0f} MB"


# Connections


def test_idle_connections_up_to_the_descriptor_limit_leave_room_for_a_new_client():
    server = Server([sys.executable, "-m", "adder", "serve", "--port", "0"], files=100)
    held = []
    try:
        for _ in range(120):
            held.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        time.sleep(0.3)
        assert server.descriptors() < 100
        assert health(server) == (200, {"status": "ok"})
        assert health(server) == (200, {"status": "ok"})
    finally:
        for sock in held:
            sock.close()
        assert server.stop() == 0


# Every reply the server writes is JSON


@pytest.mark.parametrize(
    "raw, status",
    [
        (b"FOO / HTTP/1.1\r\nHost: {host}\r\n\r\n", 400),
        (b"POST /add HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST /add HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST /add HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST /add HTTP/1.1\r\nHost: {host}\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
        (b"POST /add HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"GET / HTTP/9.9\r\nHost: {host}\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHo st: {host}\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHost: {host}\r\nHost: evil.example\r\n\r\n", 400),
        (b"POST /add HTTP/1.1\r\nHost: {host}\r\nContent-Length: 19\r\n\r\n" + b'{"queries": [NaN]}\n', 400),
        (
            b"POST /add HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
            + b"X: %s\r\n" % (b"1" * 100) * 1000,
            431,
        ),
    ],
)
def test_every_refusal_the_server_writes_is_json(served, raw, status):
    sock = connect(served)
    sock.sendall(raw.replace(b"{host}", served.host))
    reply, _ = until_closed(sock, 5)
    sock.close()
    code, body, _ = json_reply(reply)
    assert code == status and isinstance(body["error"], str) and body["error"]


# Exposure


def test_a_host_that_is_not_the_served_address_is_refused(served):
    assert health(served, {"Host": f"127.0.0.1:{served.port}"}) == (200, {"status": "ok"})
    assert health(served, {"Host": f"localhost:{served.port}"}) == (200, {"status": "ok"})
    status, body = health(served, {"Host": f"rebind.example:{served.port}"})
    assert status == 403 and "--allow-host rebind.example" in body["error"]
    assert health(served, {"Host": "127.0.0.1:1"})[0] == 403  # the right name, another port


def test_cross_origin_pages_get_no_data(served):
    status, body = health(served, {"Origin": "http://evil.example"})
    assert status == 403 and "--allow-origin http://evil.example" in body["error"]
    assert health(served, {"Origin": f"http://127.0.0.1:{served.port}"}) == (200, {"status": "ok"})


def test_allowed_hosts_and_origins_are_answered_with_cors_headers():
    server = Server(
        [sys.executable, "-m", "adder", "serve", "--port", "0", "--allow-host", "proxy.example"]
        + ["--allow-origin", "http://page.example"]
    )
    try:
        assert health(server, {"Host": "proxy.example"}) == (200, {"status": "ok"})
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/health", headers={"Origin": "http://page.example"})
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("access-control-allow-origin") == "http://page.example"
        response.read()
        preflight = {"Origin": "http://page.example", "Access-Control-Request-Method": "POST"}
        connection.request("OPTIONS", "/add", headers=preflight)
        response = connection.getresponse()
        assert response.status == 204 and "POST" in response.getheader("access-control-allow-methods")
        response.read()
        assert health(server, {"Origin": "http://other.example"})[0] == 403
    finally:
        assert server.stop() == 0


def test_binding_beyond_loopback_prints_one_warning_line():
    process = subprocess.Popen(
        [sys.executable, "-m", "adder", "serve", "--host", "0.0.0.0", "--port", "0"], stderr=subprocess.PIPE, text=True
    )
    try:
        first, second = process.stderr.readline(), process.stderr.readline()
        assert first.startswith("adder serve: ")
        assert second.startswith("warning: ") and "no authentication and no TLS" in second
        port = int(re.search(r"http://0\.0\.0\.0:(\d+);", first).group(1))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/health")  # answered once it serves, so SIGTERM finds its handler
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        process.stderr.close()


# Limits per model


def test_each_models_query_limit_comes_from_its_measured_cost(served):
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    connection.request("GET", "/models")
    listed = {entry["name"]: entry["limits"] for entry in json.loads(connection.getresponse().read())["models"]}
    assert listed["wide"]["max_queries"] < listed["default"]["max_queries"]
    for limits in listed.values():
        seconds = limits["max_queries"] * limits["query_microseconds"] / 1e6
        assert seconds <= LIMITS.model_seconds * 1.01 or limits["max_queries"] == LIMITS.min_queries
    most = listed["wide"]["max_queries"]
    for count, status in ((most + 1, 413), (most, 200)):
        body = json.dumps({"queries": ["1+1"] * count, "model": "wide"})
        connection.request("POST", "/add", body=body)
        response = connection.getresponse()
        reply = json.loads(response.read())
        assert response.status == status, reply if status == 413 else response.status
        if status == 413:
            assert f"model 'wide' accepts at most {most:,}" in reply["error"]
    connection.close()


@pytest.mark.parametrize(
    "bad", [dict(head_seconds=-1), dict(body_seconds=float("nan")), dict(max_pipelined=0), dict(max_body_bytes=2.5)]
)
def test_limits_given_through_the_python_api_are_checked(bad):
    with pytest.raises(ValueError, match=f"Limits.{next(iter(bad))} must be"):
        Limits(**bad)


def test_a_models_limit_is_what_it_answers_in_the_time_allowed():
    assert model_limits(1e-6, LIMITS).max_queries == LIMITS.max_queries  # fast: the ceiling
    assert model_limits(87e-6, LIMITS).max_queries == 2200  # 0.2 s / 87 us = 2,298, two figures
    assert model_limits(1.0, LIMITS).max_queries == LIMITS.min_queries  # absurdly slow: the floor
