"""`adder serve --replicas 2`: two Ray Serve replicas on 127.0.0.1, both answering the v2 protocol."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

from adder import Adder, QueryError
from adder.session import shipped_models

QUERIES = {
    "default": ["3+10", "999+999", "1000+1"],
    "arith": ["(12-7)+30", "99-99-99", "1*2"],
    "calc": ["12*34", "(99*99)", "1/2"],
    "wide": ["1234567890+9876543210", "9999999999+9999999999", "10000000000+1"],
}


@pytest.fixture(scope="module")
def replicas():
    """`adder serve --replicas 2 --port 0`, Ray's files in a short folder of their own, and its port."""
    pytest.importorskip("ray.serve", reason="needs the replicas extra")
    pytest.importorskip("starlette", reason="needs the replicas extra")
    folder = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths must fit in 107 bytes
    process = subprocess.Popen(
        [sys.executable, "-m", "adder", "serve", "--replicas", "2", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"RAY_TMPDIR": folder},
    )
    seen = []
    for line in process.stderr:  # Ray may warn first
        seen.append(line)
        if found := re.search(r"2 replicas on Ray Serve .* at http://127\.0\.0\.1:(\d+)/v2;", line):
            break
    else:
        process.kill()
        pytest.fail("adder serve --replicas did not start:\n" + "".join(seen))
    threading.Thread(target=process.stderr.read, daemon=True).start()  # never let its pipe fill
    yield process, int(found.group(1))
    if process.poll() is None:
        process.kill()
    shutil.rmtree(folder, ignore_errors=True)


def infer(port: int, model: str, queries: list[str]) -> tuple[int, dict, str]:
    body = {"inputs": [{"name": "queries", "datatype": "BYTES", "shape": [len(queries)], "data": queries}]}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", f"/v2/models/{model}/infer", json.dumps(body))
        response = connection.getresponse()
        return response.status, json.loads(response.read()), response.getheader("x-adder-replica")
    finally:
        connection.close()


def test_two_replicas_both_answer_every_shipped_model_right(replicas):
    _, port = replicas
    replies: dict[int, tuple] = {}
    jobs = [(model, number) for model in sorted(QUERIES) for number in range(12)]

    def client(index: int) -> None:
        model, _ = jobs[index]
        replies[index] = infer(port, model, QUERIES[model])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(replies) == len(jobs)
    for index, (model, _) in enumerate(jobs):
        status, reply, _ = replies[index]
        truth = list(Adder(model).results(QUERIES[model]))
        answers, errors = (output["data"] for output in reply["outputs"])
        assert status == 200 and reply["model_name"] == model
        assert errors == [str(t) if isinstance(t, QueryError) else "" for t in truth]
        assert answers == [0 if isinstance(t, QueryError) else t for t in truth]
    assert len({replica for _, _, replica in replies.values()}) == 2, "not every reply came from one of two replicas"


def test_the_replicas_speak_the_same_protocol_to_tritonclient(replicas):
    np = pytest.importorskip("numpy")
    triton = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http] (the test extra)")
    _, port = replicas
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    assert client.is_server_ready() and all(client.is_model_ready(model) for model in shipped_models())
    tensor = triton.InferInput("queries", [3], "BYTES")
    tensor.set_data_from_numpy(np.array(QUERIES["calc"], dtype=object))
    result = client.infer("calc", [tensor])
    assert result.as_numpy("answers").tolist()[:2] == [408, 9801] and result.as_numpy("errors")[2] != b""
    status, reply, _ = infer(port, "nope", ["1+1"])
    assert status == 404 and "unknown model 'nope'" in reply["error"]
    status, reply, _ = infer(port, "default", ["1+1"] * 10_000)  # the largest request is one batch
    assert status == 200 and reply["outputs"][0]["data"] == [2] * 10_000
    assert infer(port, "default", ["1+1"] * 10_001)[0] == 413
    client.close()


def test_sigterm_stops_the_replicas_and_ray_with_exit_0(replicas):
    process, _ = replicas
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=90) == 0


def test_replicas_without_the_extra_name_it_in_one_line():
    hide = "import sys; sys.modules['ray'] = None; sys.argv = ['adder', 'serve', '--replicas', '2']; "
    hide += "from adder.command import run; run()"
    result = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "pip install 'adder[replicas]'" in result.stderr
    alone = [sys.executable, "-m", "adder", "serve", "--ray-address", "127.0.0.1:6379"]
    result = subprocess.run(alone, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "give --replicas N too" in result.stderr


def test_replicas_refuse_a_bad_model_or_a_busy_port_in_one_line():
    pytest.importorskip("ray.serve", reason="needs the replicas extra")
    command = [sys.executable, "-m", "adder", "serve", "--replicas", "2"]
    result = subprocess.run([*command, "--model", "missing.onnx"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith("error: missing.onnx: no such file")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = str(busy.getsockname()[1])
        result = subprocess.run([*command, "--port", taken], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith(f"error: cannot listen on 127.0.0.1 port {taken}")
