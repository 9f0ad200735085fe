"""`adder serve --replicas N`: N copies of the same models behind Ray Serve (extra `replicas`).

One `adder serve` process holds one event loop and one queue a model. Past what that
answers, Ray Serve runs N replicas (processes, on this machine or across a Ray cluster),
each holding every model and answering the Open Inference Protocol (adder.v2) through
the same code as `adder serve`; Ray's HTTP proxy routes each request to a replica, and
``serve.batch`` gathers a replica's concurrent requests into one model call. Every
reply names its replica in an ``x-adder-replica`` header.

Only this module imports Ray, and only `adder serve --replicas` imports this module.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

from ray import serve
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from . import v2
from .session import DEFAULT_MODEL, Adder, shipped_models

APP_NAME = "adder"


@dataclass(frozen=True)
class ReplicaLimits:
    """What one request may ask for: as adder.server.Limits (Ray's proxy reads the request head)."""

    max_body_bytes: int = 1_000_000
    body_seconds: float = 30.0
    max_queries: int = 10_000


def queries_in(batch: list[tuple[str, list[str]]]) -> int:
    return sum(len(queries) for _, queries in batch)


def answer_all(adder: Adder, queries: list[str]) -> list[v2.Result]:
    return list(adder.results(queries))


class ModelQueue:
    """adder.v2's Answerer for one model, on the replica's batch method."""

    def __init__(self, name: str, answer: Callable) -> None:
        self.name = name
        self._answer = answer

    async def answer(self, queries: list[str]) -> tuple[list[v2.Result], int]:
        if not queries:
            return [], 0
        return await self._answer((self.name, queries))


# A stop waits for requests in flight (up to 10 s, as adder serve), not for Ray's default 2 s idle loop and 20 s.
@serve.deployment(max_ongoing_requests=256, graceful_shutdown_wait_loop_s=0.1, graceful_shutdown_timeout_s=10)
@serve.ingress()
class AdderReplica:
    """Every shipped model (and ``model`` when it is a path), answering the v2 protocol."""

    def __init__(self, model: str | None, threads: int, max_batch: int, wait: float) -> None:
        names = [model or DEFAULT_MODEL] + [name for name in shipped_models() if name != (model or DEFAULT_MODEL)]
        self.models = {
            name: Adder(model if name == (model or DEFAULT_MODEL) else name, threads=threads) for name in names
        }
        self.answer_batch.set_max_batch_size(max_batch)
        self.answer_batch.set_batch_wait_timeout_s(wait)
        context = serve.get_replica_context()
        replica = getattr(context.replica_id, "unique_id", None) or str(context.replica_id)
        self.replica = replica.encode()

    # In queries (batch_size_fn): Ray refuses a request larger than a batch, so a batch holds the largest request.
    @serve.batch(max_batch_size=ReplicaLimits.max_queries, batch_wait_timeout_s=0.0, batch_size_fn=queries_in)
    async def answer_batch(self, batch: list[tuple[str, list[str]]]) -> list[tuple[list[v2.Result], int]]:
        """Each request's results, one model call a model among the requests gathered."""
        by_model: dict[str, list[int]] = {}
        for index, (name, _) in enumerate(batch):
            by_model.setdefault(name, []).append(index)
        replies: list = [None] * len(batch)
        for name, indices in by_model.items():
            queries = [query for index in indices for query in batch[index][1]]
            results = await asyncio.to_thread(answer_all, self.models[name], queries)
            start = 0
            for index in indices:
                size = len(batch[index][1])
                replies[index] = (results[start : start + size], len(queries))
                start += size
        return replies

    def __serve_build_asgi_app__(self):
        configs = {name: adder.config for name, adder in self.models.items()}
        queues = {name: ModelQueue(name, self.answer_batch) for name in self.models}
        handlers = {HTTPException: refused, Exception: refused}
        app = Starlette(routes=v2.routes(configs, queues, ReplicaLimits()), exception_handlers=handlers)
        return tagged(app, self.replica)


def refused(request: Request, exc: Exception) -> Response:
    """The router's 404 and 405, and any fault (500), in the protocol's error shape."""
    if not isinstance(exc, HTTPException):
        return Response(json.dumps({"error": "internal error"}), 500, media_type="application/json")
    message = "no such endpoint; the replicas answer /v2" if exc.status_code == 404 else exc.detail
    return Response(json.dumps({"error": message}), exc.status_code, exc.headers, media_type="application/json")


def tagged(app, replica: bytes):
    """``app`` with an ``x-adder-replica`` header on every reply."""

    async def asgi(scope, receive, send):
        async def send_tagged(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-adder-replica", replica)]}
            await send(message)

        await app(scope, receive, send_tagged)

    return asgi


def deploy(
    model: str | None,
    replicas: int,
    cpus: float,
    *,
    name: str = APP_NAME,
    route_prefix: str = "/",
    max_batch: int = ReplicaLimits.max_queries,
    wait: float = 0.0,
) -> None:
    """``replicas`` replicas as the Serve application ``name`` at ``route_prefix``, once every one is ready."""
    deployment = AdderReplica.options(num_replicas=replicas, ray_actor_options={"num_cpus": cpus})
    threads = max(1, round(cpus))
    serve.run(deployment.bind(model, threads, max_batch, wait), name=name, route_prefix=route_prefix)


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def run_replicas(
    model: str | None,
    host: str,
    port: int,
    replicas: int,
    *,
    cpus: float | None = None,
    address: str | None = None,
    max_batch: int = ReplicaLimits.max_queries,
    wait: float = 0.0,
    announce: Callable[[str], None] = print,
    temp_dir: str | None = None,
) -> None:
    """Start Ray (or join the cluster at ``address``), deploy ``replicas`` replicas, serve until SIGTERM or Ctrl-C."""
    import ray

    local = address is None
    if cpus is None:  # on one machine, every replica fits however many there are; on a cluster, a core each
        cpus = min(1.0, (os.cpu_count() or 1) / replicas) if local else 1.0
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    ray.init(
        address=address,
        logging_level=logging.WARNING,
        include_dashboard=False if local else None,
        log_to_driver=False,
        _temp_dir=temp_dir if local else None,
        object_store_memory=100_000_000 if local else None,  # requests and replies only; Ray's default is 30% of RAM
    )
    signal.signal(signal.SIGTERM, _exit_quietly)
    try:
        serve.start(http_options={"host": host, "port": port})
        deploy(model, replicas, cpus, max_batch=max_batch, wait=wait)
        announce(
            f"adder serve: {replicas} replica{'s' * (replicas != 1)} on Ray Serve ({os.cpu_count()} cores here) "
            f"at http://{host}:{port}/v2; SIGTERM or Ctrl-C stops"
        )
        signal.pause()
    finally:
        serve.shutdown()
        ray.shutdown()
