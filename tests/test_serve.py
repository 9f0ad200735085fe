"""`adder serve` as a client meets it: a real server process on a free loopback port, real sockets."""

from __future__ import annotations

import http.client
import json
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("uvicorn", reason="needs the serve extra")
pytest.importorskip("starlette", reason="needs the serve extra")

from adder import Adder, QueryError  # noqa: E402
from adder.server import Limits, results_json  # noqa: E402
from adder.session import shipped_models  # noqa: E402

LIMITS = Limits()


def start_server(*args: str) -> tuple[subprocess.Popen, int]:
    """`adder serve --port 0 ARGS`, and the port it printed once listening."""
    process = subprocess.Popen(
        [sys.executable, "-m", "adder", "serve", "--port", "0", *args], stderr=subprocess.PIPE, text=True
    )
    line = process.stderr.readline()
    found = re.search(r"http://127\.0\.0\.1:(\d+);", line)  # loopback unless --host says otherwise
    if not found:
        process.kill()
        pytest.fail(f"adder serve did not start: {line}{process.stderr.read()}")
    return process, int(found.group(1))


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    finally:
        process.stderr.close()


@pytest.fixture(scope="module")
def port():
    process, port = start_server()
    yield port
    assert stop(process) == 0


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, parsed JSON body, response headers) of one request on a new connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        assert response.getheader("content-type") == "application/json", data
        return response.status, json.loads(data), response
    finally:
        connection.close()


def post(port: int, payload: object) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, data, _ = request(port, "POST", "/add", body)
    return status, data


def raw_exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send bytes as they are, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def runtime_error(query: str, model: str | None = None) -> str:
    with pytest.raises(QueryError) as caught:
        Adder(model)(query)
    return str(caught.value)


# The endpoints


def test_get_add_answers_one_query(port):
    status, data, _ = request(port, "GET", "/add?q=3%2B10")
    assert (status, data) == (200, {"query": "3+10", "answer": Adder()("3+10")})
    assert data["answer"] == 13


def test_get_add_refuses_a_bad_query_with_the_runtimes_message(port):
    status, data, _ = request(port, "GET", "/add?q=1000%2B1")
    assert status == 400
    assert data == {"query": "1000+1", "error": runtime_error("1000+1")}


def test_post_add_answers_every_query_in_order(port):
    queries = ["3+10", "oops", "999+999", "", "50+11"]
    status, data = post(port, {"queries": queries})
    assert status == 200
    expected = []
    for query, result in zip(queries, Adder().results(queries)):
        key = "error" if isinstance(result, QueryError) else "answer"
        expected.append({"query": query, key: result if key == "answer" else str(result)})
    assert data == {"results": expected}
    assert [r.get("answer") for r in data["results"]] == [13, None, 1998, None, 61]


def test_post_and_get_pick_a_shipped_model_by_name(port):
    assert post(port, {"queries": ["(12-7)+30"], "model": "arith"}) == (
        200,
        {"results": [{"query": "(12-7)+30", "answer": 35}]},
    )
    status, data = post(port, {"queries": ["(12-7)+30"]})  # the default model has no brackets
    assert status == 200 and data["results"][0]["error"] == runtime_error("(12-7)+30")
    assert request(port, "GET", "/add?q=%2812-7%29%2B30&model=arith")[:2] == (200, {"query": "(12-7)+30", "answer": 35})


def test_an_unknown_model_is_refused_and_no_file_is_opened(port):
    for status, data in (
        post(port, {"queries": ["1+1"], "model": "/etc/passwd"}),
        request(port, "GET", "/add?q=1%2B1&model=nope")[:2],
    ):
        assert status == 400 and data["error"].startswith("unknown model") and "default" in data["error"]


def test_health(port):
    assert request(port, "GET", "/health")[:2] == (200, {"status": "ok"})


def test_models_lists_the_shipped_models_with_config_and_accuracy(port):
    status, data, _ = request(port, "GET", "/models")
    assert status == 200
    assert sorted(m["name"] for m in data["models"]) == shipped_models()
    for entry in data["models"]:
        config = Adder(entry["name"]).config
        assert entry["default"] == (entry["name"] == "default")
        assert entry["config"]["max_operand"] == config.max_operand and entry["description"] == config.describe()
        assert entry["accuracy"] == config.training.get("evaluation")
        if config.layout == "pairs":  # proven, not evaluated: /models says so
            assert entry["accuracy"] is None and entry["proof"]["passed"] is True
            assert "every sequence of aligned digit pairs" in entry["proof"]["statement"]
        else:
            assert entry["accuracy"] is not None and "proof" not in entry


def test_unknown_paths_and_methods_are_json_errors(port):
    status, data, _ = request(port, "GET", "/nowhere")
    assert status == 404 and "/add" in data["error"]
    status, data, response = request(port, "DELETE", "/add")
    assert status == 405 and "GET" in response.getheader("allow")


# Refusals


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/add", "no query"),
        ("/add?q=1%2B1&q=2%2B2", "2 queries"),
        ("/add?q=%FF%2B1", "not valid UTF-8"),
        ("/add?q=1%2B1&model=default&model=arith", "at most one model"),
    ],
)
def test_bad_get_requests_are_400(port, path, message):
    status, data, _ = request(port, "GET", path)
    assert status == 400 and message in data["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"queries": ["1+1"', "not JSON"),
        (b"", "not JSON"),
        (b'{"queries": ["1+1", "\xff\xfe"]}', "not valid UTF-8"),
        (b'["1+1"]', "got an array"),
        (b'{"query": "1+1"}', "expected a JSON object"),
        (b'{"queries": "1+1"}', "must be an array of strings, got a string"),
        (b'{"queries": ["1+1", 2]}', '"queries"[1] is a number, not a string'),
        (b'{"queries": [null]}', '"queries"[0] is null'),
        (b'{"queries": [], "model": 3}', '"model" must be'),
        (b'{"queries": [], "extra": 1}', "unknown field 'extra'"),
        (b'{"queries": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    ],
)
def test_bad_post_bodies_are_400_with_a_clear_message(port, body, message):
    status, data = post(port, body)
    assert status == 400 and message in data["error"], data


def test_a_body_over_the_limit_is_413_before_it_is_read(port):
    head = b"POST /add HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % (LIMITS.max_body_bytes + 1)
    reply = raw_exchange(port, head + b'{"queries": [')  # the rest is never sent: the answer cannot wait for it
    status, _, body = reply.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 413 ") and b"connection: close" in status.lower()
    assert json.loads(body) == {"error": f"the request body is over {LIMITS.max_body_bytes:,} bytes"}


def test_a_chunked_body_is_refused_once_it_passes_the_limit(port):
    # Exactly the limit in chunks, then one byte more and no end of body: the server must
    # answer without waiting for more. The byte over the limit is the last one sent (no
    # CRLF after it), so the server has read everything by the time it refuses: bytes left
    # unread when it closes would make the kernel reset the connection, which can drop
    # the reply before the client reads it.
    limit, size = LIMITS.max_body_bytes, 65536
    pieces = [min(size, limit - start) for start in range(0, limit, size)]
    chunks = b"".join(b"%x\r\n%s\r\n" % (n, b"x" * n) for n in pieces) + b"1\r\nx"
    head = b"POST /add HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    reply = raw_exchange(port, head + chunks)
    assert reply.startswith(b"HTTP/1.1 413 ") and b"bytes" in reply
    # and a body of exactly the limit is not refused for its size
    ended = b"".join(b"%x\r\n%s\r\n" % (n, b"x" * n) for n in pieces) + b"0\r\n\r\n"
    reply = raw_exchange(port, head.replace(b"Host: localhost", b"Host: localhost\r\nConnection: close") + ended)
    assert reply.startswith(b"HTTP/1.1 400 ") and b"over" not in reply


@pytest.mark.parametrize(("start", "status"), [(b"GET /add?q=", b"414"), (b"GET /health HTTP/1.1\r\nX-Long: ", b"431")])
def test_a_request_line_or_headers_without_end_are_cut_off_at_the_limit(port, start, status):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sent, piece = 0, b"1" * 65536
    try:
        sock.sendall(start)
        while sent < 4 * (LIMITS.linger_bytes + 16 * 2**20):
            sock.sendall(piece)
            sent += len(piece)
    except OSError:  # the server closed the connection
        pass
    try:
        reply = sock.recv(4096)
    except OSError:  # reset before the reply could be read
        reply = b""
    sock.close()
    # After its refusal the server reads and drops up to linger_bytes, so that a client still sending
    # sees the reply; and what the kernel buffers on both sides of a loopback connection (several MB)
    # is sent regardless.
    assert sent < LIMITS.linger_bytes + 16 * 2**20, "the server kept reading a request head with no end"
    assert reply == b"" or reply.startswith(b"HTTP/1.1 " + status)
    assert request(port, "GET", "/health")[:2] == (200, {"status": "ok"})


def test_more_queries_than_the_models_limit_is_413_naming_it(port):
    most = {entry["name"]: entry["limits"]["max_queries"] for entry in request(port, "GET", "/models")[1]["models"]}
    assert LIMITS.min_queries <= most["default"] <= LIMITS.max_queries
    status, data = post(port, {"queries": ["1"] * (most["default"] + 1)})
    assert status == 413 and f"model 'default' accepts at most {most['default']:,}" in data["error"]
    assert post(port, {"queries": ["1+1"] * most["default"]})[0] == 200


def test_empty_query_list_is_answered_empty(port):
    assert post(port, {"queries": []}) == (200, {"results": []})


def test_queries_needing_escapes_are_echoed_as_valid_json(port):
    queries = ['1"+1', "1\\+1", "\t1+1", "é+1", "\ud800", "1+1"]
    status, data = post(port, {"queries": queries})
    assert status == 200 and [r["query"] for r in data["results"]] == queries
    assert data["results"][-1]["answer"] == 2


def test_results_json_is_exactly_what_json_dumps_writes():
    rng = random.Random(5)
    alphabet = '0123456789+- \t"\\é\x00'
    for _ in range(300):
        queries = ["".join(rng.choices(alphabet, k=rng.randint(0, 6))) for _ in range(rng.randint(0, 5))]
        results = [rng.choice([rng.randint(0, 2000), QueryError(f"bad {q!r}")]) for q in queries]
        entries = [
            {"query": q, "error": str(r)} if isinstance(r, QueryError) else {"query": q, "answer": r}
            for q, r in zip(queries, results)
        ]
        assert results_json(queries, results) == json.dumps({"results": entries})


# Load and faults


def test_a_burst_of_concurrent_requests_is_answered_right_and_batched(port):
    rng = random.Random(7)
    pairs = [(rng.randint(0, 999), rng.randint(0, 999)) for _ in range(64 * 8)]
    answers: dict[int, object] = {}
    batches: list[int] = []
    start = threading.Barrier(64)

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start.wait()
        for index in range(number * 8, number * 8 + 8):  # one keep-alive connection each
            a, b = pairs[index]
            connection.request("GET", f"/add?q={a}%2B{b}")
            response = connection.getresponse()
            answers[index] = (response.status, json.loads(response.read()))
            batches.append(int(response.getheader("x-batch-queries")))
        connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == len(pairs)
    for index, (a, b) in enumerate(pairs):
        assert answers[index] == (200, {"query": f"{a}+{b}", "answer": a + b})
    assert max(batches) > 1, "no two concurrent requests shared a model call"


def test_concurrent_posts_each_get_their_own_answers(port):
    rng = random.Random(11)
    lists = [[f"{rng.randint(0, 999)}+{rng.randint(0, 999)}" for _ in range(rng.randint(1, 300))] for _ in range(24)]
    replies: dict[int, tuple[int, dict]] = {}
    threads = [
        threading.Thread(target=lambda i=i: replies.__setitem__(i, post(port, {"queries": lists[i]})))
        for i in range(24)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for i, queries in enumerate(lists):
        status, data = replies[i]
        assert status == 200 and [r["query"] for r in data["results"]] == queries
        assert [r["answer"] for r in data["results"]] == [eval(q) for q in queries]  # noqa: S307


def test_a_stalled_or_vanished_client_does_not_block_others(port):
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.sendall(b'POST /add HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{"queries": [')  # and no more
    half = socket.create_connection(("127.0.0.1", port))
    half.sendall(b"GET /add?q=1%2B1 HTTP/1.1\r\nHo")  # headers never finished
    for _ in range(5):
        gone = socket.create_connection(("127.0.0.1", port))
        gone.sendall(b"GET /add?q=2%2B2 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        gone.close()  # before its answer
    started = time.monotonic()
    assert request(port, "GET", "/add?q=3%2B10")[:2] == (200, {"query": "3+10", "answer": 13})
    assert time.monotonic() - started < 5
    stalled.close()
    half.close()


QUICK = (
    "import sys\n"
    "from adder.server import Limits, build_app, listen, open_models, run\n"
    "limits = Limits(head_seconds=0.5, body_seconds=0.5)\n"
    "models, default = open_models(None)\n"
    "sock = listen('127.0.0.1', 0)\n"
    "print(f'at http://127.0.0.1:{sock.getsockname()[1]};', file=sys.stderr, flush=True)\n"
    "run(build_app(models, default, limits), sock, limits=limits)\n"
)


@pytest.fixture(scope="module")
def impatient_port():
    """A server whose clients have half a second for a request head, and half a second for a body."""
    process = subprocess.Popen([sys.executable, "-c", QUICK], stderr=subprocess.PIPE, text=True)
    line = process.stderr.readline()
    found = re.search(r"http://127\.0\.0\.1:(\d+);", line)
    assert found, line + process.stderr.read()
    yield int(found.group(1))
    assert stop(process) == 0


def reply_after(sock: socket.socket, seconds: float) -> tuple[bytes, float]:
    """What the server sends until it closes the connection, and how long that took."""
    started, reply = time.monotonic(), b""
    sock.settimeout(seconds)
    while chunk := sock.recv(65536):
        reply += chunk
    return reply, time.monotonic() - started


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /add?q=1%2B1 HTTP/1.1\r\nHost: localhost\r\n"],  # nothing at all; headers that never end
)
def test_a_connection_without_a_complete_head_is_closed_in_time(impatient_port, sent):
    with socket.create_connection(("127.0.0.1", impatient_port)) as sock:
        sock.sendall(sent)
        reply, seconds = reply_after(sock, 10)
    assert reply.startswith(b"HTTP/1.1 408 ") and b"within 0.5 s" in reply
    assert 0.4 < seconds < 5


def test_a_head_sent_a_byte_at_a_time_is_cut_off(impatient_port):
    with socket.create_connection(("127.0.0.1", impatient_port)) as sock:
        started = time.monotonic()
        try:
            for byte in b"GET /add?q=1%2B1 HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"1" * 100:
                sock.sendall(bytes([byte]))
                time.sleep(0.05)
        except OSError:
            pass
        reply, _ = reply_after(sock, 10)
    assert reply.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < 4


def test_a_body_that_stops_arriving_is_408(impatient_port):
    with socket.create_connection(("127.0.0.1", impatient_port)) as sock:
        sock.sendall(b'POST /add HTTP/1.1\r\nHost: localhost\r\nContent-Length: 50\r\n\r\n{"queries": [')
        reply, seconds = reply_after(sock, 10)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and "0.5 s" in json.loads(body)["error"]
    assert 0.4 < seconds < 5


def test_a_prompt_client_on_an_impatient_server_is_answered(impatient_port):
    assert request(impatient_port, "GET", "/add?q=3%2B10")[:2] == (200, {"query": "3+10", "answer": 13})


def test_sigterm_finishes_requests_in_flight_then_exits_0():
    process, port = start_server()
    queries = [f"{n}+{n}" for n in range(1000)]
    body = json.dumps({"queries": queries}).encode()
    in_flight = socket.create_connection(("127.0.0.1", port), timeout=30)
    in_flight.sendall(b"POST /add HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:100])
    # Once the server has answered a request sent after it, it has read this one's head and
    # waits for the rest of its body (a fixed sleep was too short on a loaded machine: the
    # server took the connection for an idle one and closed it).
    assert request(port, "GET", "/health")[0] == 200
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    with pytest.raises(OSError):  # no longer accepting
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    in_flight.sendall(body[100:])
    reply = b""
    while chunk := in_flight.recv(65536):
        reply += chunk
    in_flight.close()
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert [r["answer"] for r in json.loads(payload)["results"]] == [2 * n for n in range(1000)]
    assert process.wait(timeout=30) == 0
    process.stderr.close()


# The command


def test_serve_without_the_extra_names_it():
    hide = (
        "import sys; sys.modules['uvicorn'] = None; sys.argv = ['adder', 'serve']; from adder.command import run; run()"
    )
    result = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "pip install 'adder[serve]'" in result.stderr


def test_serve_refuses_a_bad_model_or_a_busy_port_in_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "adder", "serve", "--model", "missing.onnx"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and result.stderr.startswith("error: missing.onnx: no such file")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = str(busy.getsockname()[1])
        result = subprocess.run(
            [sys.executable, "-m", "adder", "serve", "--port", taken], capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 2 and result.stderr.startswith(f"error: cannot listen on 127.0.0.1 port {taken}")
    assert "Traceback" not in result.stderr


def test_serve_is_only_ever_the_first_word():
    result = subprocess.run(
        [sys.executable, "-m", "adder", "--model", "arith", "serve"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "'serve' must come first" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "adder", "3+10", "serve"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and result.stdout.splitlines() == ["13", ""]
