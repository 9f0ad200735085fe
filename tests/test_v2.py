"""The Open Inference Protocol on `adder serve`: Triton's own HTTP client, and requests written by hand."""

from __future__ import annotations

import gzip
import http.client
import json
import re
import signal
import struct
import subprocess
import sys
import threading
from dataclasses import replace

import pytest

pytest.importorskip("uvicorn", reason="needs the serve extra")
pytest.importorskip("starlette", reason="needs the serve extra")

from adder import Adder, QueryError  # noqa: E402
from adder.server import Limits  # noqa: E402
from adder.session import shipped_models  # noqa: E402
from adder.v2 import InferRequest, answer_datatype, infer_reply, parse_infer  # noqa: E402

LIMITS = Limits()

# Each shipped model's queries: right ones across its domain, and ones it must refuse.
CASES = {
    "default": ["3+10", "999+999", "0+0", " 50 + 11 ", "1000+1", "oops", "3-1"],
    "arith": ["(12-7)+30", "99-99-99", "12-(7+30)", "1+2+3", "100+1", "1*2"],
    "calc": ["12*34", "(99*99)", "7-99", "0*5", "100*1", "1/2"],
    "wide": ["9999999999+1", "1234567890+9876543210", "9999999999+9999999999", "0+0", "10000000000+1", "-1+2"],
}


def expected(model: str, queries: list[str]) -> list[int | QueryError]:
    return list(Adder(model).results(queries))


@pytest.fixture(scope="module")
def port():
    process = subprocess.Popen(
        [sys.executable, "-m", "adder", "serve", "--port", "0"], stderr=subprocess.PIPE, text=True
    )
    line = process.stderr.readline()
    found = re.search(r"http://127\.0\.0\.1:(\d+);", line)
    if not found:
        process.kill()
        pytest.fail(f"adder serve did not start: {line}{process.stderr.read()}")
    yield int(found.group(1))
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(timeout=30) == 0
    finally:
        process.stderr.close()


def exchange(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, response headers, body bytes) of one request on a new connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response, response.read()
    finally:
        connection.close()


def call(port: int, method: str, path: str, payload: object = None, headers: dict | None = None):
    """(status, parsed JSON) of a request whose reply must be JSON."""
    body = payload if isinstance(payload, bytes) or payload is None else json.dumps(payload).encode()
    status, response, data = exchange(port, method, path, body, headers)
    assert response.getheader("content-type") == "application/json", data
    return status, json.loads(data)


def infer_body(queries: object, **fields) -> dict:
    tensor = {"name": "queries", "datatype": "BYTES", "shape": [len(queries)], "data": queries}
    return {"inputs": [tensor | fields.pop("tensor", {})], **fields}


# Triton's own client


@pytest.fixture(scope="module")
def client(port):
    triton = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http] (the test extra)")
    connection = triton.InferenceServerClient(f"127.0.0.1:{port}")
    yield connection
    connection.close()


def test_tritonclient_reads_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "adder" and "binary_tensor_data" in metadata["extensions"]
    for model in shipped_models():
        assert client.is_model_ready(model) and client.is_model_ready(model, "1")
        found = client.get_model_metadata(model)
        assert found["name"] == model and found["versions"] == ["1"]
        assert found["inputs"] == [{"name": "queries", "datatype": "BYTES", "shape": [-1]}]
        wide = "BYTES" if model == "long" else "INT64"  # long's sums pass 2^63: decimal strings
        assert [(t["name"], t["datatype"]) for t in found["outputs"]] == [("answers", wide), ("errors", "BYTES")]
    assert not client.is_model_ready("nope")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("model", sorted(CASES))
def test_tritonclient_gets_every_shipped_models_answers_and_refusals(client, model, binary):
    import numpy as np
    import tritonclient.http as triton

    queries = CASES[model]
    tensor = triton.InferInput("queries", [len(queries)], "BYTES")
    tensor.set_data_from_numpy(np.array(queries, dtype=object), binary_data=binary)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("answers", "errors")]
    result = client.infer(model, [tensor], outputs=outputs, request_id=f"{model}-1")
    assert result.get_response()["id"] == f"{model}-1" and result.get_response()["model_name"] == model
    answers, errors = result.as_numpy("answers"), result.as_numpy("errors")
    assert answers.dtype == np.int64 and answers.shape == (len(queries),)
    for query, answer, error, truth in zip(queries, answers, errors, expected(model, queries)):
        error = error.decode() if isinstance(error, bytes) else error
        if isinstance(truth, QueryError):
            assert error == str(truth) and answer == 0, query
        else:
            assert error == "" and answer == truth, query
    assert any(isinstance(truth, QueryError) for truth in expected(model, queries))


def test_tritonclient_defaults_and_compressed_requests_are_answered(client):
    import numpy as np
    import tritonclient.http as triton

    tensor = triton.InferInput("queries", [2], "BYTES")
    tensor.set_data_from_numpy(np.array(["9999999999+9999999999", "1+1"], dtype=object))
    for compression in (None, "gzip", "deflate"):
        result = client.infer("wide", [tensor], model_version="1", request_compression_algorithm=compression)
        assert result.as_numpy("answers").tolist() == [19_999_999_998, 2]
        assert result.as_numpy("errors").tolist() == [b"", b""]


def test_tritonclient_hears_refusals_as_errors(client):
    import numpy as np
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    tensor = triton.InferInput("queries", [2], "BYTES")
    tensor.set_data_from_numpy(np.array(["3+10", "1000+1"], dtype=object))
    with pytest.raises(InferenceServerException, match=r"query 1 .*outside this model's range") as refused:
        client.infer("default", [tensor], outputs=[triton.InferRequestedOutput("answers")])
    assert refused.value.status() == "400"
    with pytest.raises(InferenceServerException, match="unknown model 'nope'") as refused:
        client.infer("nope", [tensor])
    assert refused.value.status() == "404"
    with pytest.raises(InferenceServerException, match="no version '2'"):
        client.infer("default", [tensor], model_version="2")
    wrong = triton.InferInput("queries", [2], "INT64")
    wrong.set_data_from_numpy(np.array([1, 2], dtype=np.int64))
    with pytest.raises(InferenceServerException, match="BYTES"):
        client.infer("default", [wrong])


# Hand-written requests


def test_endpoints_answer_as_the_protocol_says(port):
    assert call(port, "GET", "/v2/health/live") == (200, {"live": True})
    assert call(port, "GET", "/v2/health/ready") == (200, {"ready": True})
    assert call(port, "GET", "/v2/models/arith/ready") == (200, {"name": "arith", "ready": True})
    assert call(port, "GET", "/v2/models/arith/versions/1")[1]["platform"] == "adder"
    assert call(port, "GET", "/v2")[1]["version"] == "0.1.0"


def test_a_json_infer_is_answered_with_the_protocols_response(port):
    body = infer_body(["3+10", "1000+1"], id="a7", parameters={"priority": 1})
    status, reply = call(port, "POST", "/v2/models/default/infer", body)
    assert status == 200
    assert reply == {
        "model_name": "default",
        "model_version": "1",
        "id": "a7",
        "outputs": [
            {"name": "answers", "datatype": "INT64", "shape": [2], "data": [13, 0]},
            {
                "name": "errors",
                "datatype": "BYTES",
                "shape": [2],
                "data": ["", str(expected("default", ["1000+1"])[0])],
            },
        ],
    }
    status, reply = call(
        port, "POST", "/v2/models/default/versions/1/infer", infer_body(["1+1"], outputs=[{"name": "errors"}])
    )
    assert status == 200 and reply["outputs"] == [{"name": "errors", "datatype": "BYTES", "shape": [1], "data": [""]}]
    assert call(port, "POST", "/v2/models/default/infer", infer_body([]))[1]["outputs"][0]["shape"] == [0]


def test_a_hand_built_binary_request_gets_a_binary_reply(port):
    queries = ["50+11", "é"]
    raw = b"".join(struct.pack("<I", len(q.encode())) + q.encode() for q in queries)
    head = json.dumps(
        {
            "inputs": [
                {"name": "queries", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(raw)}}
            ],
            "outputs": [{"name": "answers", "parameters": {"binary_data": True}}, {"name": "errors"}],
        }
    ).encode()
    headers = {"Inference-Header-Content-Length": str(len(head))}
    status, response, data = exchange(port, "POST", "/v2/models/default/infer", head + raw, headers)
    assert status == 200 and response.getheader("content-type") == "application/octet-stream"
    size = int(response.getheader("inference-header-content-length"))
    reply = json.loads(data[:size])
    answers, errors = reply["outputs"]
    assert answers["parameters"] == {"binary_data_size": 16} and "data" not in answers
    assert struct.unpack("<2q", data[size:]) == (61, 0)
    assert errors["data"][0] == "" and errors["data"][1] == str(expected("default", ["é"])[0])


def binary_body(tensor_bytes: bytes, size: int, shape: int = 1) -> tuple[bytes, dict]:
    head = json.dumps(
        {
            "inputs": [
                {"name": "queries", "datatype": "BYTES", "shape": [shape], "parameters": {"binary_data_size": size}}
            ]
        }
    ).encode()
    return head + tensor_bytes, {"Inference-Header-Content-Length": str(len(head))}


ELEMENT = struct.pack("<I", 3) + b"1+1"


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b"{", {}, 400, "not JSON"),
        (b"\xff", {}, 400, "not valid UTF-8"),
        (b"[" * 100_000, {}, 400, "nested too deeply"),
        (b"[]", {}, 400, "must be a JSON object, got an array"),
        (json.dumps({"inputs": []}).encode(), {}, 400, "array of one tensor"),
        (json.dumps({"inputs": "1+1"}).encode(), {}, 400, "array of one tensor"),
        (json.dumps(infer_body(["1+1"], extra=1)).encode(), {}, 400, "unknown field 'extra'"),
        (json.dumps(infer_body(["1+1"], tensor={"datatype": "INT64"})).encode(), {}, 400, 'got datatype "INT64"'),
        (json.dumps(infer_body(["1+1"], tensor={"name": "x"})).encode(), {}, 400, 'unknown input "x"'),
        (json.dumps(infer_body(["1+1"], tensor={"shape": [2]})).encode(), {}, 400, "shape [2] but 1 element"),
        (json.dumps(infer_body(["1+1"], tensor={"shape": [1, 1]})).encode(), {}, 400, "shape [-1]"),
        (json.dumps(infer_body(["1+1"], tensor={"shape": [True]})).encode(), {}, 400, "shape [-1]"),
        (json.dumps(infer_body(["1+1"], tensor={"shape": [-1]})).encode(), {}, 400, "shape [-1]"),
        (json.dumps(infer_body(["1+1"], tensor={"shape": "1"})).encode(), {}, 400, "shape [-1]"),
        (json.dumps(infer_body([["1+1"]])).encode(), {}, 400, "has no nesting"),
        (json.dumps(infer_body([1])).encode(), {}, 400, "element 0 is a number, not a string"),
        (json.dumps(infer_body("1+1")).encode(), {}, 400, "must be an array of strings"),
        (json.dumps(infer_body(["1+1"], id=5)).encode(), {}, 400, '"id" must be a string'),
        (json.dumps(infer_body(["1+1"], parameters=[])).encode(), {}, 400, "must be a JSON object"),
        (json.dumps(infer_body(["1+1"], parameters={"binary_data_output": 1})).encode(), {}, 400, "true or false"),
        (json.dumps(infer_body(["1+1"], outputs=[{"name": "sum"}])).encode(), {}, 400, 'unknown output "sum"'),
        (json.dumps(infer_body(["1+1"], outputs=[{"name": "errors"}] * 2)).encode(), {}, 400, "asked for twice"),
        (json.dumps(infer_body(["1+1"], outputs="answers")).encode(), {}, 400, '"outputs" must be an array'),
        (
            json.dumps(
                infer_body(["1+1"], outputs=[{"name": "answers", "parameters": {"classification": 2}}])
            ).encode(),
            {},
            400,
            "no shared memory or classification",
        ),
        (
            json.dumps(infer_body(["1+1"], tensor={"parameters": {"shared_memory_region": "r"}})).encode(),
            {},
            400,
            "no shared memory",
        ),
        (
            json.dumps(infer_body(["1+1"], tensor={"data": None, "parameters": {}})).encode(),
            {},
            400,
            "array of strings",
        ),
        (*binary_body(ELEMENT, len(ELEMENT) + 1), 400, "bytes follow the JSON"),
        (*binary_body(ELEMENT + b"xx", len(ELEMENT)), 400, "no input claims"),
        (*binary_body(ELEMENT[:5], 5), 400, "cut short"),
        (*binary_body(ELEMENT[:2], 2), 400, "ends inside element 0"),
        (*binary_body(ELEMENT * 2, 2 * len(ELEMENT)), 400, "more than the 1 element of"),
        (*binary_body(ELEMENT, len(ELEMENT), shape=2), 400, "holds 1 element"),
        (*binary_body(struct.pack("<I", 2) + b"\xff\xfe", 6), 400, "not valid UTF-8"),
        (*binary_body(ELEMENT, -1), 400, "must be a byte count"),
        (b"{}", {"Inference-Header-Content-Length": "x"}, 400, "Inference-Header-Content-Length"),
        (b"{}", {"Inference-Header-Content-Length": "99"}, 400, "Inference-Header-Content-Length"),
        (b"{}", {"Content-Encoding": "br"}, 415, "not supported"),
        (b"{}", {"Content-Encoding": "gzip"}, 400, "not valid gzip"),
        (gzip.compress(b"{}")[:-8], {"Content-Encoding": "gzip"}, 400, "cut short"),
        (gzip.compress(b" " * (LIMITS.max_body_bytes + 1)), {"Content-Encoding": "gzip"}, 413, "once decompressed"),
        (json.dumps(infer_body(["1"] * (LIMITS.max_queries + 1))).encode(), {}, 413, "at most 10,000"),
        (json.dumps(infer_body(["1"], tensor={"shape": [10**30]})).encode(), {}, 413, "at most 10,000"),
    ],
)
def test_hostile_infer_requests_are_refused_in_the_protocols_error_shape(port, body, headers, status, message):
    got, reply = call(port, "POST", "/v2/models/default/infer", body, headers)
    assert got == status and list(reply) == ["error"] and message in reply["error"], reply


def test_a_refused_query_refuses_a_request_that_cannot_carry_its_error(port):
    body = infer_body(["3+10", "1000+1"], outputs=[{"name": "answers"}])
    status, reply = call(port, "POST", "/v2/models/default/infer", body)
    assert status == 400 and reply["error"].startswith('query 1 ("1000+1"): operand 1000')


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/v2/models/nope", 404, "unknown model 'nope'"),
        ("GET", "/v2/models/nope/ready", 404, "unknown model 'nope'"),
        ("GET", "/v2/models/default/versions/2", 404, "no version '2'"),
        ("POST", "/v2/models/nope/infer", 404, "unknown model 'nope'"),
        ("POST", "/v2/models/default/versions/0/infer", 404, "no version '0'"),
        ("GET", "/v2/models/default/infer", 405, "Method Not Allowed"),
        ("GET", "/v2/repository/index", 404, "no such endpoint"),
        ("GET", "/v2/models/" + "x" * 5_000, 404, "'" + "x" * 80 + "'..."),
    ],
)
def test_unknown_models_versions_paths_and_methods_are_json_errors(port, method, path, status, message):
    got, reply = call(port, method, path, b"{}" if method == "POST" else None)
    assert got == status and list(reply) == ["error"] and message in reply["error"] and len(reply["error"]) < 300


def test_a_body_over_the_limit_is_413(port):
    body = json.dumps(infer_body(["1+1" + " " * 120] * 9_000)).encode()
    assert len(body) > LIMITS.max_body_bytes
    status, reply = call(port, "POST", "/v2/models/default/infer", body)
    assert status == 413 and "over 1,000,000 bytes" in reply["error"]


def test_v2_requests_share_the_batching_queue_with_add(port):
    pairs = [(a, 999 - a) for a in range(0, 960, 30)]
    replies: dict[int, tuple] = {}
    start = threading.Barrier(len(pairs))

    def client(index: int) -> None:
        a, b = pairs[index]
        start.wait()
        if index % 2:
            status, response, data = exchange(port, "GET", f"/add?q={a}%2B{b}")
            replies[index] = (status, json.loads(data)["answer"], int(response.getheader("x-batch-queries")))
        else:
            body = json.dumps(infer_body([f"{a}+{b}"] * 4)).encode()
            status, response, data = exchange(port, "POST", "/v2/models/default/infer", body)
            answers = json.loads(data)["outputs"][0]["data"]
            assert answers == [answers[0]] * 4
            replies[index] = (status, answers[0], int(response.getheader("x-batch-queries")))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(len(pairs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [replies[n][:2] for n in range(len(pairs))] == [(200, 999)] * len(pairs)
    assert max(batch for _, _, batch in replies.values()) > 4, "no two requests shared a model call"


# The protocol without a server


def test_a_model_whose_answers_could_pass_int64_answers_in_bytes():
    config = replace(Adder("wide").config, operators="+*")
    assert answer_datatype(Adder("wide").config) == "INT64" and answer_datatype(config) == "BYTES"
    request = InferRequest(["x", "y"], (("answers", False), ("errors", True)), "r")
    body, headers = infer_reply("big", request, [99_999_999_980_000_000_001, QueryError("no")], "BYTES")
    size = int(headers["inference-header-content-length"])
    head = json.loads(body[:size])
    assert head["outputs"][0] == {
        "name": "answers",
        "datatype": "BYTES",
        "shape": [2],
        "data": ["99999999980000000001", ""],
    }
    assert body[size:] == struct.pack("<I", 0) + struct.pack("<I", 2) + b"no"


def test_binary_data_output_sends_every_output_as_binary_unless_one_says_otherwise():
    head = {
        "inputs": [{"name": "queries", "datatype": "BYTES", "shape": [0], "data": []}],
        "parameters": {"binary_data_output": True},
    }
    assert parse_infer(json.dumps(head).encode(), None, LIMITS).outputs == (("answers", True), ("errors", True))
    head["outputs"] = [{"name": "errors", "parameters": {"binary_data": False}}]
    assert parse_infer(json.dumps(head).encode(), None, LIMITS).outputs == (("errors", False),)
