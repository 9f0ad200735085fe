"""The HTTP interface of `adder serve`: a starlette app over one Batcher per model.

    GET  /add?q=3%2B10                      -> {"query": "3+10", "answer": 13}
    POST /add {"queries": [...], "model"?}  -> {"results": [{"query": ..., "answer"|"error": ...}, ...]}
    GET  /health                            -> {"status": "ok"}
    GET  /models                            -> the models this server answers with, config and accuracy

Every reply is JSON, refusals included: a bad query carries the runtime's own message,
a bad request a one-line ``error`` and a 4xx status. Clients name models only from the
set loaded at start, so no request can make the server open a file.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import signal
import socket
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from . import v2
from .batching import Batcher, BatchSettings
from .grammar import QueryError
from .session import BATCH_ROWS, DEFAULT_MODEL, Adder, shipped_models


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; anything over is refused with 413 before any model work."""

    max_body_bytes: int = 1_000_000
    max_head_bytes: int = 1_000_000  # the request line and headers (uvicorn sets no cap of its own)
    # A client too slow for these holds a connection no longer (no cap on connections held idle).
    head_seconds: float = 10.0  # from connecting, or from a request's first byte, to the end of its headers
    body_seconds: float = 30.0  # from the end of the headers to the end of the body (1 MB at 33 KB/s)
    # 10,000 queries are 25-50 ms of model time on two cores; more would make every other client wait.
    max_queries: int = 10_000


BACKLOG = 2048  # connections the kernel holds while the loop is busy, as uvicorn's default
# On SIGTERM, a request still in flight after this long (a client stalled mid-body) is dropped.
GRACE_SECONDS = 10


class RequestError(Exception):
    """A request refused as a whole: its HTTP status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true or false",
}


def json_response(payload: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    # ensure_ascii: a query holding a lone surrogate ("\ud800" in the request) is echoed back escaped.
    return Response(json.dumps(payload), status, headers, media_type="application/json")


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    # A refused body may still be arriving; closing the connection keeps it from being read as a request.
    if status in (408, 413):
        headers = {**(headers or {}), "connection": "close"}
    return json_response({"error": message}, status, headers)


def result_entry(query: str, result: int | QueryError) -> dict:
    if isinstance(result, QueryError):
        return {"query": query, "error": str(result)}
    return {"query": query, "answer": result}


# What json.dumps escapes (it writes ASCII): a query without any of these is its own JSON string body.
NEEDS_ESCAPE = re.compile(r'[^\x20-\x7e]|["\\]')


def results_json(queries: list[str], results: list[int | QueryError]) -> str:
    """``{"results": [...]}`` as json.dumps writes it; built directly when no query needs escaping
    (nearly always), which is ~4x faster for 1,000 answers: JSON would otherwise cost a quarter
    of what the model does."""
    if NEEDS_ESCAPE.search("".join(queries)):
        return json.dumps({"results": [result_entry(q, r) for q, r in zip(queries, results)]})
    entries = [
        f'{{"query": "{q}", "answer": {r}}}' if type(r) is int else json.dumps(result_entry(q, r))
        for q, r in zip(queries, results)
    ]
    return '{"results": [' + ", ".join(entries) + "]}"


def query_parameters(raw: bytes) -> dict[str, list[str]]:
    """The URL's query string, strictly UTF-8 (starlette's parser would turn bad bytes into U+FFFD)."""
    fields: dict[str, list[str]] = {}
    for part in raw.split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        try:
            key = unquote_to_bytes(name.replace(b"+", b" ")).decode()
            text = unquote_to_bytes(value.replace(b"+", b" ")).decode()
        except UnicodeDecodeError as exc:
            raise RequestError(400, f"the query string is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
        fields.setdefault(key, []).append(text)
    return fields


def describe_type(value: object) -> str:
    return "null" if value is None else JSON_TYPES.get(type(value), type(value).__name__)


def parse_add_body(body: bytes, limits: Limits) -> tuple[list[str], str | None]:
    """The queries (and the model asked for) from a POST /add body, or a RequestError saying what is wrong."""
    try:
        payload = json.loads(body.decode())
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"the request body is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise RequestError(400, "the request body is not JSON this server reads: nested too deeply") from None
    except ValueError as exc:
        raise RequestError(400, f"the request body is not JSON: {exc}") from None
    shape = 'expected a JSON object such as {"queries": ["3+10", "50+11"]}'
    if not isinstance(payload, dict) or "queries" not in payload:
        raise RequestError(400, f"{shape}, got {describe_type(payload)}" if not isinstance(payload, dict) else shape)
    unknown = sorted(set(payload) - {"queries", "model"})
    if unknown:
        raise RequestError(400, f'unknown field {unknown[0]!r}; {shape} and optionally "model"')
    queries, model = payload["queries"], payload.get("model")
    if not isinstance(queries, list):
        raise RequestError(400, f'"queries" must be an array of strings, got {describe_type(queries)}')
    if len(queries) > limits.max_queries:
        raise RequestError(413, f"{len(queries):,} queries in one request; at most {limits.max_queries:,} are accepted")
    for number, query in enumerate(queries):
        if not isinstance(query, str):
            raise RequestError(400, f'"queries"[{number}] is {describe_type(query)}, not a string')
    if model is not None and not isinstance(model, str):
        raise RequestError(400, f'"model" must be a model\'s name (a string), got {describe_type(model)}')
    return queries, model


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to be over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    too_large = f"the request body is over {limit:,} bytes"
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, too_large)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, too_large)
        chunks.append(chunk)
    return b"".join(chunks)


def model_summary(name: str, adder: Adder, default: bool) -> dict:
    config = adder.config.to_dict()
    training = config.pop("training", {})
    return {
        "name": name,
        "default": default,
        "description": adder.config.describe(),
        "config": config,
        "accuracy": training.get("evaluation"),
    }


def build_app(
    models: Mapping[str, Adder],
    default: str,
    limits: Limits = Limits(),
    batching: BatchSettings = BatchSettings(),
) -> Starlette:
    """The app answering with ``models`` (name -> Adder, all loaded), ``default`` when a request names none."""
    batchers = {name: Batcher(adder, batching) for name, adder in models.items()}
    listing = json.dumps({"models": [model_summary(name, adder, name == default) for name, adder in models.items()]})

    def batcher_for(name: str | None) -> Batcher:
        if name is None:
            return batchers[default]
        if name not in batchers:
            raise RequestError(400, f"unknown model {name!r}; this server has: {', '.join(batchers)}")
        return batchers[name]

    async def add_many(request: Request) -> Response:
        try:
            body = await asyncio.wait_for(read_body(request, limits.max_body_bytes), limits.body_seconds)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read it
        except asyncio.TimeoutError:
            raise RequestError(408, f"the request body took over {limits.body_seconds:g} s to arrive") from None
        queries, model = parse_add_body(body, limits)
        results, batch = await batcher_for(model).answer(queries)
        headers = {"x-batch-queries": str(batch)}
        return Response(results_json(queries, results), headers=headers, media_type="application/json")

    async def add_one(request: Request) -> Response:
        fields = query_parameters(request.scope["query_string"])
        found = fields.get("q", [])
        if len(found) != 1:
            hint = "give one query as /add?q=3%2B10 (the + written %2B)"
            raise RequestError(400, f"no query: {hint}" if not found else f"{len(found)} queries: {hint}, or POST many")
        models_asked = fields.get("model", [])
        if len(models_asked) > 1:
            raise RequestError(400, "give at most one model")
        batcher = batcher_for(models_asked[0] if models_asked else None)
        (result,), batch = await batcher.answer(found)
        status = 400 if isinstance(result, QueryError) else 200
        return json_response(result_entry(found[0], result), status, headers={"x-batch-queries": str(batch)})

    async def add(request: Request) -> Response:
        return await (add_many(request) if request.method == "POST" else add_one(request))

    async def health(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def list_models(request: Request) -> Response:
        return Response(listing, media_type="application/json")

    @asynccontextmanager
    async def lifespan(app: Starlette):
        for batcher in batchers.values():
            batcher.start()
        yield
        for batcher in batchers.values():
            await batcher.stop()

    def refused(request: Request, exc: Exception) -> Response:
        if isinstance(exc, RequestError):
            return error_response(exc.status, str(exc))
        if isinstance(exc, HTTPException):  # 404 and 405 (with its Allow header) from the router
            message = "no such endpoint; try /add, /health, /models or /v2" if exc.status_code == 404 else exc.detail
            return error_response(exc.status_code, message, exc.headers)
        return error_response(500, "internal error")

    handlers: dict[type[Exception] | int, Callable] = {
        error: refused for error in (RequestError, HTTPException, Exception)
    }
    routes = [
        Route("/add", add, methods=["GET", "POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/models", list_models, methods=["GET"]),
        *v2.routes({name: adder.config for name, adder in models.items()}, batchers, limits),  # adder/v2.py
    ]
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one); OSError says why not."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = found[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def run(app: Starlette, sock: socket.socket, loop: str = "auto", http: str = "auto", limits: Limits = Limits()) -> None:
    """Serve until SIGTERM or Ctrl-C: stop accepting, answer every request in flight, return.

    ``loop`` and ``http`` are uvicorn's: "auto" takes uvloop and httptools (the serve
    extra's), httptools with a cap on the request head (adder.protocol).

    uvicorn drains the connections, then raises the signal again with the handler it
    found installed; SIGTERM's is set here to exit 0, since a drained stop is a clean one.
    """
    import uvicorn

    if http in ("auto", "httptools") and importlib.util.find_spec("httptools") is not None:
        from .protocol import capped_protocol

        http = capped_protocol(limits.max_head_bytes, limits.head_seconds)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,  # a log line per request would cost more than answering it
        timeout_graceful_shutdown=GRACE_SECONDS,
        lifespan="on",
        loop=loop,
        http=http,
    )
    signal.signal(signal.SIGTERM, _exit_quietly)
    uvicorn.Server(config).run(sockets=[sock])


def open_models(model: str | None) -> tuple[dict[str, Adder], str]:
    """Every shipped model, plus ``model`` when it is a path, each warmed up; and the name requests default to.

    ModelError when ``model`` cannot be opened. Warming opens each batch session now,
    so no request pays for it.
    """
    served = Adder(model)
    name = model if model is not None else DEFAULT_MODEL
    models = {name: served}
    for shipped in shipped_models():
        if shipped not in models:
            models[shipped] = Adder(shipped)
    for adder in models.values():
        config = adder.config
        example = config.operators[0].join([str(config.min_operand)] * config.min_terms)
        adder.batch([example] * BATCH_ROWS)
    return models, name
