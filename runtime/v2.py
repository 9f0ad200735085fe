"""The Open Inference Protocol (KServe's "v2" REST protocol, Triton's HTTP API) for `adder serve`.

    GET  /v2                               -> {"name": "adder", "version": ..., "extensions": [...]}
    GET  /v2/health/live, /v2/health/ready -> {"live": true}, {"ready": true}
    GET  /v2/models/NAME[/versions/1]      -> the model's metadata: its input and output tensors
    GET  /v2/models/NAME[/versions/1]/ready
    POST /v2/models/NAME[/versions/1]/infer

Every model takes one input, ``queries``: a BYTES tensor of shape [-1], one query string
an element. It gives two outputs of the same shape: ``answers`` (INT64, or BYTES holding
decimal strings for a model whose answers could pass 2^63) and ``errors`` (BYTES: "" for
an answered query, the runtime's message for a refused one, whose ``answers`` element is
0, or "" in BYTES, and means nothing). A request that asks only for ``answers`` while a
query is refused is refused as a whole, so no client reads a placeholder as an answer.

Tensor data travels as JSON, or in the binary tensor data extension (the default of
Triton's own clients). Requests are refused with ``{"error": "..."}`` and a 4xx status:
400 for a malformed request, 404 for a model or version this server does not have, 413
over the same limits as ``POST /add``. Queries join the model's batching queue like any
other request's.
"""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from . import __version__
from .config import ModelConfig
from .grammar import QueryError

Result = int | QueryError

MODEL_VERSION = "1"
PLATFORM = "adder"  # not "onnxruntime_onnx": the tensors served are strings, not the ONNX graph's own
INPUT = "queries"
ANSWERS = "answers"
ERRORS = "errors"
OUTPUTS = (ANSWERS, ERRORS)
EXTENSIONS = ["binary_tensor_data"]
HEADER_LENGTH = "inference-header-content-length"
INT64_MAX = 2**63 - 1
# Parameters naming features this server does not have: refused rather than silently ignored.
UNSUPPORTED = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset", "classification")
REQUEST_FIELDS = {"id", "parameters", "inputs", "outputs"}
INPUT_FIELDS = {"name", "shape", "datatype", "parameters", "data"}
OUTPUT_FIELDS = {"name", "parameters"}


class Answerer(Protocol):
    """What the server's batching queue offers (adder.batching.Batcher)."""

    async def answer(self, queries: list[str]) -> tuple[list[Result], int]: ...


class BodyLimits(Protocol):
    """The per-request limits this protocol shares with ``POST /add`` (adder.server.Limits)."""

    max_body_bytes: int
    body_seconds: float
    max_queries: int


class V2Error(Exception):
    """A request refused as a whole: its HTTP status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class InferRequest:
    """A parsed infer request: its queries, and each output asked for with whether it goes as binary."""

    queries: list[str]
    outputs: tuple[tuple[str, bool], ...]
    id: str | None = None


def answer_datatype(config: ModelConfig) -> str:
    """INT64 when every answer the model's domain allows fits in one (all shipped models), else BYTES."""
    largest = config.max_operand**config.max_terms if "*" in config.operators else config.max_operand * config.max_terms
    return "INT64" if largest <= INT64_MAX else "BYTES"


def server_metadata() -> dict:
    return {"name": "adder", "version": __version__, "extensions": EXTENSIONS}


def model_metadata(name: str, config: ModelConfig) -> dict:
    return {
        "name": name,
        "versions": [MODEL_VERSION],
        "platform": PLATFORM,
        "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": ANSWERS, "datatype": answer_datatype(config), "shape": [-1]},
            {"name": ERRORS, "datatype": "BYTES", "shape": [-1]},
        ],
    }


def shown(name: str) -> str:
    """A name from the URL, quoted and cut short: a refusal does not echo a megabyte back."""
    return repr(name) if len(name) <= 80 else repr(name[:80]) + "..."


def kind(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "true or false", int: "a number"}
    return "null" if value is None else names.get(type(value), "a number" if isinstance(value, float) else "?")


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as sent before gzip or deflate (Triton's clients can compress), never over ``limit`` bytes."""
    if encoding is None or encoding.strip().lower() in ("", "identity"):
        return body
    wbits = {"gzip": 31, "deflate": 15}.get(encoding.strip().lower())
    if wbits is None:
        raise V2Error(415, f"content-encoding {encoding!r} is not supported; send gzip, deflate or none")
    inflater = zlib.decompressobj(wbits)
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise V2Error(400, f"the request body is not valid {encoding.strip().lower()} data ({exc})") from None
    if len(plain) > limit:
        raise V2Error(413, f"the request body is over {limit:,} bytes once decompressed")
    if not inflater.eof:
        raise V2Error(400, f"the request body's {encoding.strip().lower()} data is cut short")
    return plain


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON part of an infer body and the binary data after it (binary tensor data extension)."""
    if header_length is None:
        return body, b""
    if not header_length.strip().isdigit() or int(header_length) > len(body):
        raise V2Error(
            400,
            f"Inference-Header-Content-Length must be a byte count within the body's {len(body):,} bytes, "
            f"got {header_length[:40]!r}",
        )
    size = int(header_length)
    return body[:size], body[size:]


def parse_json(text: bytes) -> object:
    try:
        return json.loads(text.decode())
    except UnicodeDecodeError as exc:
        raise V2Error(400, f"the request JSON is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise V2Error(400, "the request JSON is nested too deeply") from None
    except ValueError as exc:
        raise V2Error(400, f"the request body is not JSON: {exc}") from None


def check_object(value: object, what: str, fields: set[str]) -> dict:
    if not isinstance(value, dict):
        raise V2Error(400, f"{what} must be a JSON object, got {kind(value)}")
    unknown = sorted(set(value) - fields)
    if unknown:
        raise V2Error(400, f"{what} has an unknown field {unknown[0]!r}; its fields are {', '.join(sorted(fields))}")
    return value


def check_parameters(value: object, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise V2Error(400, f'{what} "parameters" must be a JSON object, got {kind(value)}')
    for name in UNSUPPORTED:
        if name in value:
            raise V2Error(400, f"{what} asks for {name!r}: this server has no shared memory or classification")
    return value


def check_flag(parameters: dict, name: str, what: str) -> bool | None:
    flag = parameters.get(name)
    if flag is not None and not isinstance(flag, bool):
        raise V2Error(400, f"{what} parameter {name!r} must be true or false, got {kind(flag)}")
    return flag


def elements(count: int) -> str:
    return f"{count:,} element{'s' * (count != 1)}"


def queries_from_json(data: object, count: int) -> list[str]:
    if not isinstance(data, list):
        raise V2Error(400, f'input {INPUT!r} "data" must be an array of strings, got {kind(data)}')
    for number, element in enumerate(data):
        if not isinstance(element, str):
            nested = " (shape [-1] has no nesting: give a flat array)" if isinstance(element, list) else ""
            raise V2Error(400, f"input {INPUT!r} element {number} is {kind(element)}, not a string{nested}")
    if len(data) != count:
        raise V2Error(400, f"input {INPUT!r} has shape [{count}] but {elements(len(data))}")
    return data


def queries_from_binary(raw: bytes, count: int) -> list[str]:
    """BYTES elements as the binary extension writes them: each a 4-byte little-endian length, then its bytes."""
    queries, offset = [], 0
    while offset < len(raw):
        if len(queries) == count:
            raise V2Error(400, f"input {INPUT!r}'s binary data holds more than the {elements(count)} of its shape")
        if offset + 4 > len(raw):
            raise V2Error(400, f"input {INPUT!r}'s binary data ends inside element {len(queries)}'s length")
        (size,) = struct.unpack_from("<I", raw, offset)
        element = raw[offset + 4 : offset + 4 + size]
        if len(element) != size:
            raise V2Error(400, f"input {INPUT!r}'s binary element {len(queries)} is cut short")
        try:
            queries.append(element.decode())
        except UnicodeDecodeError as exc:
            raise V2Error(400, f"input {INPUT!r} element {len(queries)} is not valid UTF-8 ({exc.reason})") from None
        offset += 4 + size
    if len(queries) != count:
        raise V2Error(400, f"input {INPUT!r} has shape [{count}] but its binary data holds {elements(len(queries))}")
    return queries


def parse_input(tensor: object, binary: bytes, limits: BodyLimits) -> tuple[list[str], int]:
    """The queries of the one input, and how many bytes of the binary data they took."""
    tensor = check_object(tensor, f"input {INPUT!r}", INPUT_FIELDS)
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if name != INPUT:
        raise V2Error(400, f"unknown input {json.dumps(name)[:80]}; every model here takes one input, {INPUT!r}")
    if datatype != "BYTES":
        raise V2Error(400, f"input {INPUT!r} is BYTES (query strings), got datatype {json.dumps(datatype)[:80]}")
    if not isinstance(shape, list) or len(shape) != 1 or type(shape[0]) is not int or shape[0] < 0:
        raise V2Error(400, f"input {INPUT!r} has shape [-1] (one query an element), got {json.dumps(shape)[:80]}")
    count = shape[0]
    if count > limits.max_queries:
        raise V2Error(413, f"{count:,} queries in one request; at most {limits.max_queries:,} are accepted")
    parameters = check_parameters(tensor.get("parameters"), f"input {INPUT!r}")
    size = parameters.get("binary_data_size")
    if size is None:
        if "data" not in tensor:
            raise V2Error(400, f'input {INPUT!r} has no "data" and no binary_data_size')
        return queries_from_json(tensor["data"], count), 0
    if type(size) is not int or size < 0:
        raise V2Error(400, f"input {INPUT!r} binary_data_size must be a byte count, got {json.dumps(size)[:40]}")
    if "data" in tensor:
        raise V2Error(400, f'input {INPUT!r} has both "data" and binary_data_size; give one')
    if size > len(binary):
        raise V2Error(400, f"input {INPUT!r} binary_data_size is {size:,} but {len(binary):,} bytes follow the JSON")
    return queries_from_binary(binary[:size], count), size


def parse_outputs(value: object, binary_default: bool) -> tuple[tuple[str, bool], ...]:
    if value is None or value == []:  # every output, as the protocol says when none is named
        return tuple((name, binary_default) for name in OUTPUTS)
    if not isinstance(value, list):
        raise V2Error(400, f'"outputs" must be an array of objects such as {{"name": "{ANSWERS}"}}, got {kind(value)}')
    wanted: list[tuple[str, bool]] = []
    for number, tensor in enumerate(value):
        tensor = check_object(tensor, f'"outputs"[{number}]', OUTPUT_FIELDS)
        name = tensor.get("name")
        if name not in OUTPUTS:
            raise V2Error(400, f"unknown output {json.dumps(name)[:80]}; the outputs are {ANSWERS!r} and {ERRORS!r}")
        if any(name == seen for seen, _ in wanted):
            raise V2Error(400, f"output {name!r} is asked for twice")
        parameters = check_parameters(tensor.get("parameters"), f"output {name!r}")
        binary = check_flag(parameters, "binary_data", f"output {name!r}")
        wanted.append((name, binary_default if binary is None else binary))
    return tuple(wanted)


def parse_infer(body: bytes, header_length: str | None, limits: BodyLimits) -> InferRequest:
    """An infer request from its body (JSON, then binary data when ``header_length`` is given)."""
    text, binary = split_body(body, header_length)
    payload = check_object(parse_json(text), "the infer request", REQUEST_FIELDS)
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise V2Error(400, f'"id" must be a string, got {kind(request_id)}')
    parameters = check_parameters(payload.get("parameters"), "the request")
    binary_output = bool(check_flag(parameters, "binary_data_output", "the request"))
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        found = f"{len(inputs)} inputs" if isinstance(inputs, list) else kind(inputs)
        raise V2Error(400, f'"inputs" must be an array of one tensor, {INPUT!r}, got {found}')
    queries, used = parse_input(inputs[0], binary, limits)
    if used != len(binary):
        raise V2Error(400, f"{len(binary) - used:,} bytes of binary data follow the JSON that no input claims")
    return InferRequest(queries, parse_outputs(payload.get("outputs"), binary_output), request_id)


def bytes_tensor(elements: Sequence[str]) -> bytes:
    encoded = [element.encode("utf-8", "surrogatepass") for element in elements]
    return b"".join(struct.pack("<I", len(element)) + element for element in encoded)


def output_tensor(name: str, datatype: str, data: list, binary: bool) -> tuple[dict, bytes]:
    """One output's JSON entry, and its binary data when it goes as binary."""
    tensor: dict = {"name": name, "datatype": datatype, "shape": [len(data)]}
    if not binary:
        return tensor | {"data": data}, b""
    raw = struct.pack(f"<{len(data)}q", *data) if datatype == "INT64" else bytes_tensor(data)
    return tensor | {"parameters": {"binary_data_size": len(raw)}}, raw


def refused_message(queries: list[str], results: list[Result]) -> str | None:
    for number, (query, result) in enumerate(zip(queries, results)):
        if isinstance(result, QueryError):
            shown = json.dumps(query)[:60]
            return f"query {number} ({shown}): {result}; ask for the {ERRORS!r} output to have the others answered"
    return None


def infer_reply(name: str, request: InferRequest, results: list[Result], datatype: str) -> tuple[bytes, dict]:
    """The response body and its headers (binary when any output goes as binary)."""
    names = [output for output, _ in request.outputs]
    if ERRORS not in names:
        refused = refused_message(request.queries, results)
        if refused is not None:
            raise V2Error(400, refused)
    if datatype == "INT64":
        answers = [0 if isinstance(r, QueryError) else r for r in results]
    else:
        answers = ["" if isinstance(r, QueryError) else str(r) for r in results]
    errors = [str(r) if isinstance(r, QueryError) else "" for r in results]
    columns = {ANSWERS: (datatype, answers), ERRORS: ("BYTES", errors)}
    reply: dict = {"model_name": name, "model_version": MODEL_VERSION}
    if request.id is not None:
        reply["id"] = request.id
    outputs, raw = [], []
    for output, binary in request.outputs:
        tensor, data = output_tensor(output, *columns[output], binary)
        outputs.append(tensor)
        raw.append(data)
    reply["outputs"] = outputs
    head = json.dumps(reply).encode()
    if not any(binary for _, binary in request.outputs):
        return head, {"content-type": "application/json"}
    return head + b"".join(raw), {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(head))}


def json_reply(payload: object, status: int = 200) -> Response:
    return Response(json.dumps(payload), status, media_type="application/json")


def error_reply(status: int, message: str) -> Response:
    # A refused body may still be arriving; closing the connection keeps it from being read as a request.
    headers = {"connection": "close"} if status in (408, 413) else None
    return Response(json.dumps({"error": message}), status, headers, media_type="application/json")


async def read_body(request: Request, limits: BodyLimits) -> bytes:
    """The whole body within the limits' size and time, or a V2Error (413, 408)."""
    limit = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise V2Error(413, f"the request body is over {limit:,} bytes")

    async def gather() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise V2Error(413, f"the request body is over {limit:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(gather(), limits.body_seconds)
    except asyncio.TimeoutError:
        raise V2Error(408, f"the request body took over {limits.body_seconds:g} s to arrive") from None


def routes(models: Mapping[str, ModelConfig], answerers: Mapping[str, Answerer], limits: BodyLimits) -> list[Route]:
    """The v2 endpoints for ``models`` (name -> config), whose queries go to ``answerers`` (name -> queue)."""
    datatypes = {name: answer_datatype(config) for name, config in models.items()}
    metadata = {name: json.dumps(model_metadata(name, config)) for name, config in models.items()}

    def model_named(request: Request) -> str:
        name, version = request.path_params["model"], request.path_params.get("version")
        if name not in models:
            raise V2Error(404, f"unknown model {shown(name)}; this server has: {', '.join(models)}")
        if version is not None and version != MODEL_VERSION:
            raise V2Error(404, f"model {name!r} has no version {shown(version)}; its only version is {MODEL_VERSION!r}")
        return name

    def refusing(handler):
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except V2Error as exc:
                return error_reply(exc.status, str(exc))
            except ClientDisconnect:
                return Response(status_code=400)  # nobody is left to read it

        return endpoint

    async def server(request: Request) -> Response:
        return json_reply(server_metadata())

    async def live(request: Request) -> Response:
        return json_reply({"live": True})

    async def ready(request: Request) -> Response:
        return json_reply({"ready": True})  # the server listens only once every model is loaded

    async def model(request: Request) -> Response:
        return Response(metadata[model_named(request)], media_type="application/json")

    async def model_ready(request: Request) -> Response:
        return json_reply({"name": model_named(request), "ready": True})

    async def infer(request: Request) -> Response:
        name = model_named(request)
        body = await read_body(request, limits)
        body = decompress(body, request.headers.get("content-encoding"), limits.max_body_bytes)
        parsed = parse_infer(body, request.headers.get(HEADER_LENGTH), limits)
        results, batch = await answerers[name].answer(parsed.queries)
        content, headers = infer_reply(name, parsed, results, datatypes[name])
        return Response(content, headers=headers | {"x-batch-queries": str(batch)})

    table = [
        ("/v2", server, "GET"),
        ("/v2/health/live", live, "GET"),
        ("/v2/health/ready", ready, "GET"),
        ("/v2/models/{model}", model, "GET"),
        ("/v2/models/{model}/versions/{version}", model, "GET"),
        ("/v2/models/{model}/ready", model_ready, "GET"),
        ("/v2/models/{model}/versions/{version}/ready", model_ready, "GET"),
        ("/v2/models/{model}/infer", infer, "POST"),
        ("/v2/models/{model}/versions/{version}/infer", infer, "POST"),
    ]
    return [Route(path, refusing(handler), methods=[method]) for path, handler, method in table]
