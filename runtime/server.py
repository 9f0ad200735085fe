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
import ipaddress
import json
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields, replace
from urllib.parse import unquote_to_bytes

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from . import v2
from .batching import Batcher, BatchSettings
from .bounds import NumberError, real_number, whole_number
from .grammar import QueryError
from .session import BATCH_ROWS, DEFAULT_MODEL, Adder, ModelError, shipped_models


@dataclass(frozen=True)
class Limits:
    """What one client may hold: anything over is refused (413 before any model work, 408, 503) or
    its connection closed. adder.protocol enforces the connection bounds, the app the rest."""

    max_body_bytes: int = 1_000_000
    # The request line and headers; uvicorn sets no cap of its own. 64 KB is far above any request
    # this server answers, and times max_connections it bounds what heads can hold (64 MB).
    max_head_bytes: int = 65_536
    head_seconds: float = 10.0  # from connecting, or from a request's first byte, to the end of its headers
    body_seconds: float = 30.0  # from the end of the headers to the end of the body, read or not (1 MB at 33 KB/s)
    drain_seconds: float = 10.0  # for a reply the client does not read, once the send buffer is full
    # A reply sent while its request's body still arrives (a 413): this long, or this many bytes
    # read and dropped after it, lets a client that sends all before it reads see the reply.
    linger_seconds: float = 2.0
    linger_bytes: int = 16_000_000
    max_pipelined: int = 16  # requests queued behind the one being answered, on one connection
    max_connections: int = 1024  # fewer when the file-descriptor limit leaves room for fewer
    # Request bodies being read at once, all clients together: 64 bodies of the largest size.
    max_body_bytes_in_flight: int = 64_000_000
    # A request is refused past the queries its model answers in model_seconds (measured at start),
    # so no request holds a model long enough to stall everyone else; never more than max_queries.
    model_seconds: float = 0.2
    max_queries: int = 10_000
    min_queries: int = 100  # a floor, so a slow machine at start still takes ordinary requests

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.type == "float":
                real_number(value, f"Limits.{item.name}", 0.001, 86_400.0)
            else:
                whole_number(value, f"Limits.{item.name}", 1, 2**40)
        if self.min_queries > self.max_queries:
            raise NumberError(f"Limits.min_queries ({self.min_queries:,}) is over max_queries ({self.max_queries:,})")


@dataclass(frozen=True)
class Exposure:
    """Who besides the served address may use the server: Host names ("name" or "name:port",
    "*" for any) a request may carry, and origins ("http://host:port", "*") a browser page may
    read answers from. Requests naming the address served, and same-origin pages, need neither."""

    hosts: frozenset[str] = frozenset()
    origins: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ModelLimits:
    """One model's share of Limits: the queries a request may hold, from the model's measured cost."""

    max_queries: int
    query_microseconds: float


BACKLOG = 2048  # connections the kernel holds while the loop is busy, as uvicorn's default
FD_RESERVE = 32  # descriptors kept free of connections: model files, the loop, a log, the listening socket
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


def parse_add_body(body: bytes) -> tuple[list[str], str | None]:
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
    for number, query in enumerate(queries):
        if not isinstance(query, str):
            raise RequestError(400, f'"queries"[{number}] is {describe_type(query)}, not a string')
    if model is not None and not isinstance(model, str):
        raise RequestError(400, f'"model" must be a model\'s name (a string), got {describe_type(model)}')
    return queries, model


class BodyBudget:
    """Bytes of request bodies being read at once, all requests together, up to ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held = limit, 0

    def take(self, size: int) -> None:
        if self.held + size > self.limit:
            raise RequestError(503, "the server is reading too many request bodies at once; try again shortly")
        self.held += size


async def read_body(request: Request, limit: int, budget: BodyBudget | None = None) -> bytes:
    """The whole body, refused with 413 as soon as it is known to be over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    too_large = f"the request body is over {limit:,} bytes"
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, too_large)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, too_large)
            if budget is not None:
                budget.take(len(chunk))
            chunks.append(chunk)
    finally:
        if budget is not None:
            budget.held -= sum(map(len, chunks))
    return b"".join(chunks)


def query_seconds(adder: Adder, rows: int = 256, rounds: int = 3) -> float:
    """Seconds of model time one query costs at its most (the largest operands, the most terms),
    in a batch as the server runs them: the fastest of ``rounds``."""
    config = adder.config
    query = config.operators[0].join([str(config.max_operand)] * config.max_terms)
    batch = [query] * rows
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        adder.batch(batch)
        best = min(best, time.perf_counter() - started)
    return best / rows


def model_limits(cost: float, limits: Limits) -> ModelLimits:
    """The queries a request may hold for a model costing ``cost`` seconds a query: what it answers
    in ``limits.model_seconds``, two significant digits, within min_queries..max_queries."""
    fits = int(limits.model_seconds / max(cost, 1e-9))
    if fits >= 100:
        scale = 10 ** (len(str(fits)) - 2)
        fits -= fits % scale
    return ModelLimits(max(limits.min_queries, min(limits.max_queries, fits)), round(cost * 1e6, 1))


async def answered(batcher: Batcher, queries: list[str]) -> tuple[list, int]:
    """The batcher's answer; a model that broke its promises (adder.ModelError) is a 500 saying so."""
    try:
        return await batcher.answer(queries)
    except ModelError as exc:
        raise RequestError(500, f"the model failed: {exc}") from None


def model_summary(name: str, adder: Adder, default: bool, limits: ModelLimits) -> dict:
    config = adder.config.to_dict()
    training = config.pop("training", {})
    return {
        "name": name,
        "default": default,
        "description": adder.config.describe(),
        "config": config,
        "accuracy": training.get("evaluation"),
        **({"proof": _proof_summary(training["proof"])} if isinstance(training.get("proof"), dict) else {}),
        "limits": {"max_queries": limits.max_queries, "query_microseconds": limits.query_microseconds},
    }


def _proof_summary(proof: dict) -> dict:
    """What a pairs model's proof says, for /models: whether it passed, of what, and its margin."""
    keys = ("passed", "statement", "smallest_margin", "transitions_checked", "failure")
    return {key: proof[key] for key in keys if key in proof}


def build_app(
    models: Mapping[str, Adder],
    default: str,
    limits: Limits = Limits(),
    batching: BatchSettings = BatchSettings(),
    exposure: Exposure = Exposure(),
    costs: Mapping[str, float] | None = None,
) -> Guard:
    """The app answering with ``models`` (name -> Adder, all loaded), ``default`` when a request names none.

    ``costs`` are each model's seconds a query (see query_seconds), measured here when not given;
    they set each model's request limit (model_limits)."""
    costs = costs if costs is not None else {name: query_seconds(adder) for name, adder in models.items()}
    shares = {name: model_limits(costs[name], limits) for name in models}
    batchers = {
        name: Batcher(adder, replace(batching, max_batch=min(batching.max_batch, shares[name].max_queries)))
        for name, adder in models.items()
    }
    listing = json.dumps(
        {"models": [model_summary(name, adder, name == default, shares[name]) for name, adder in models.items()]}
    )
    budget = BodyBudget(limits.max_body_bytes_in_flight)

    def batcher_for(name: str | None) -> tuple[str, Batcher]:
        if name is None:
            return default, batchers[default]
        if name not in batchers:
            raise RequestError(400, f"unknown model {name!r}; this server has: {', '.join(batchers)}")
        return name, batchers[name]

    async def add_many(request: Request) -> Response:
        try:
            body = await asyncio.wait_for(read_body(request, limits.max_body_bytes, budget), limits.body_seconds)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read it
        except asyncio.TimeoutError:
            raise RequestError(408, f"the request body took over {limits.body_seconds:g} s to arrive") from None
        queries, model = parse_add_body(body)
        name, batcher = batcher_for(model)
        most = shares[name].max_queries
        if len(queries) > most:
            raise RequestError(
                413, f"{len(queries):,} queries in one request; model {name!r} accepts at most {most:,} (see /models)"
            )
        results, batch = await answered(batcher, queries)
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
        _, batcher = batcher_for(models_asked[0] if models_asked else None)
        (result,), batch = await answered(batcher, found)
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
    return Guard(Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan), exposure)


def split_host(text: str) -> tuple[str, int | None]:
    """A Host header's name and port ("[::1]:80" -> ("[::1]", 80)); port None when absent or unreadable."""
    name, colon, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
    if not colon or "]" in port:
        return text, None
    return name, int(port) if port.isascii() and port.isdigit() and len(port) < 6 else -1


def served_names(address: str) -> frozenset[str]:
    """The Host names that mean the address a connection arrived on: the address itself, and
    every loopback name when it is a loopback address."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return frozenset({address.lower()})
    names = {str(ip), f"[{ip}]"} if ip.version == 6 else {str(ip)}
    if ip.is_loopback or getattr(ip, "ipv4_mapped", None) is not None and ip.ipv4_mapped.is_loopback:
        names |= {"localhost", "127.0.0.1", "[::1]"}
    return frozenset(names)


class Guard:
    """The app behind two checks a browser's same-origin rule needs from the server itself:
    a Host that is not the address served (a DNS-rebinding page, whose name now points here)
    is refused; a page from another origin gets no data, unless Exposure allows either. An
    allowed origin gets the CORS headers that let its page read answers, preflights included."""

    def __init__(self, app: Starlette, exposure: Exposure) -> None:
        self.app, self.exposure = app, exposure
        self.router = app.router  # as a Starlette app's, for whoever inspects the routes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        hosts = [value for name, value in scope["headers"] if name == b"host"]
        origins = [value for name, value in scope["headers"] if name == b"origin"]
        if len(hosts) > 1 or len(origins) > 1:
            return await error_response(400, "a request may carry one Host and one Origin header")(scope, receive, send)
        host = hosts[0].decode("latin-1").lower() if hosts else None
        problem = self.host_problem(host, scope.get("server"))
        if problem is not None:
            return await error_response(403, problem)(scope, receive, send)
        if not origins:
            return await self.app(scope, receive, send)
        origin = origins[0].decode("latin-1")
        if host is not None and origin.lower() == f"http://{host}":
            return await self.app(scope, receive, send)
        allowed = self.exposure.origins
        if "*" not in allowed and origin.lower() not in allowed:
            message = (
                f"a page from {origin!r} gets no answers from this server; "
                f"start adder serve with --allow-origin {origin} to allow it"
            )
            return await error_response(403, message)(scope, receive, send)
        cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"origin")]
        if scope["method"] == "OPTIONS":
            preflight = [
                (b"access-control-allow-methods", b"GET, POST"),
                (b"access-control-allow-headers", b"content-type"),
                (b"access-control-max-age", b"600"),
            ]
            headers = [(k.decode(), v.decode("latin-1")) for k, v in cors + preflight]
            return await Response(status_code=204, headers=dict(headers))(scope, receive, send)

        async def send_with_cors(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def host_problem(self, host: str | None, server: tuple | None) -> str | None:
        allowed = self.exposure.hosts
        if host is None or "*" in allowed or host in allowed:  # no Host: HTTP/1.0, no browser
            return None
        name, port = split_host(host)
        if name in allowed:
            return None
        # No port: a name of ours cannot be a rebinding page's, whatever port it thinks it reached.
        if server is not None and port in (None, server[1]) and name in served_names(server[0]):
            return None
        return f"Host {host!r} is not this server's address; start adder serve with --allow-host {name} to accept it"


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


def connection_limit(limits: Limits) -> int:
    """How many connections may be open at once: limits.max_connections, or fewer when the
    file-descriptor limit leaves room for fewer beside those open now and FD_RESERVE."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        in_use = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 16
    except (ImportError, OSError, ValueError):
        return limits.max_connections
    if soft == resource.RLIM_INFINITY:
        return limits.max_connections
    return max(1, min(limits.max_connections, soft - in_use - FD_RESERVE))


def run(app: Guard, sock: socket.socket, loop: str = "auto", http: str = "auto", limits: Limits = Limits()) -> None:
    """Serve until SIGTERM or Ctrl-C: stop accepting, answer every request in flight, return.

    ``loop`` and ``http`` are uvicorn's: "auto" takes uvloop and httptools (the serve
    extra's), httptools bounded as adder.protocol says. The pure-Python h11 stack
    ("h11", for comparison only) has none of those bounds but its own 16 KB head cap.

    uvicorn drains the connections, then raises the signal again with the handler it
    found installed; SIGTERM's is set here to exit 0, since a drained stop is a clean one.
    """
    import uvicorn

    if http in ("auto", "httptools") and importlib.util.find_spec("httptools") is not None:
        from .protocol import bounded_protocol

        http = bounded_protocol(limits, connection_limit(limits))
    config = uvicorn.Config(
        app,
        ws="none",  # no upgrade is served; uvicorn would log a warning for each one asked for
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
    for adder in models.values():  # both graphs run once: a model that breaks its promises fails here
        config = adder.config
        example = config.operators[0].join([str(config.min_operand)] * config.min_terms)
        adder(example)
        adder.batch([example] * BATCH_ROWS)
    return models, name
