"""`adder`: answer queries from arguments or standard input; a thin layer over adder.Adder."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from .answer import EXIT_USAGE, answer_arguments, answer_stdin, open_adder, printable
from .figures import percent

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="markdown")


def show_models() -> None:
    from .session import Adder, shipped_models

    for name in shipped_models():
        config = Adder(name).config
        accuracy = config.training.get("evaluation", {})
        measured = (
            f"exact-match {percent(accuracy['exact_match'])} ({accuracy['method']})" if accuracy else "not measured"
        )
        exhaustive = accuracy.get("method") == "exhaustive"
        for group, counts in sorted(accuracy.get("groups", {}).items()):
            # per term count: exhaustive checks of part of a sampled domain, or slices of an exhaustive one
            if group.endswith("every query") or (exhaustive and group.endswith(" terms")):
                share = (counts["total"] - counts["wrong"]) / counts["total"]
                measured += f"; {group.removesuffix(', every query')}: {percent(share)} (exhaustive)"
        proof = config.training.get("proof")
        if isinstance(proof, dict) and proof.get("passed") is True:  # only a proof that passed is claimed
            measured = f"proven for every length up to {config.operand_width:,} digits (adder-verify {name})"
        elif isinstance(proof, dict):
            measured = f"not proven: its proof failed (adder-verify {name} says where)"
        typer.echo(f"{name}: {config.describe()}; {size_of(config.training)}{measured}")


def size_of(record: dict) -> str:
    """'LSTM 24/24, 8,556 parameters; ' from a training record (what it holds of it)."""
    layers, count = record.get("layers"), record.get("parameters")
    sizes = [layers.get(part) for part in ("encoder", "decoder")] if isinstance(layers, dict) else []
    readable = len(sizes) == 2 and all(
        isinstance(units, list) and units and all(type(u) is int for u in units) for units in sizes
    )
    if len(sizes) == 2 and sizes[1] == [] and isinstance(sizes[0], list) and sizes[0]:  # one LSTM, no decoder
        readable, sizes = all(type(u) is int for u in sizes[0]), sizes[:1]
    words = ["LSTM " + "/".join(",".join(map(str, units)) for units in sizes) if readable else ""]
    words.append(f"{count:,} parameters" if isinstance(count, int) and not isinstance(count, bool) else "")
    text = ", ".join(w for w in words if w)
    return f"{text}; " if text else ""


@app.command()
def main(
    queries: Annotated[
        list[str] | None, typer.Argument(help="Queries such as 3+10; '-' (or none, with piped input) reads stdin.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            envvar="ADDER_MODEL", help="A shipped model's name or a path to an .onnx file.", show_default="default"
        ),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            envvar="ADDER_ENGINE",
            help="What runs the model: onnxruntime, or numpy (needs nothing but numpy; slower).",
            show_default="onnxruntime where it is installed, else numpy",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per query.")] = False,
    info: Annotated[bool, typer.Option("--info", help="Print the model's configuration as JSON and exit.")] = False,
    list_models: Annotated[bool, typer.Option("--list-models", help="List the shipped models and exit.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    """Add integers with a trained seq2seq model: `adder "3+10"` prints 13.

    One answer per line, in order. A bad query prints an empty line (or a JSON
    error object), a message naming it on stderr, and the exit code is 1.

    `adder serve` answers over HTTP instead (see `adder serve --help`).
    """
    if version:
        from . import __version__

        typer.echo(f"adder {__version__}")
        return
    if list_models:
        show_models()
        return
    if queries == ["serve"]:  # `adder --model arith serve`: the subcommand is only ever the first word
        typer.echo("error: 'serve' must come first: adder serve [--host H] [--port P] [--model M]", err=True)
        raise typer.Exit(EXIT_USAGE)
    if queries and queries != ["-"] and not info:
        raise typer.Exit(answer_arguments(queries, model, as_json, engine))
    if info:
        adder = open_adder(model, engine)
        if adder is None:
            raise typer.Exit(EXIT_USAGE)
        typer.echo(json.dumps(adder.config.to_dict() | {"path": str(Path(adder.path))}, indent=2, sort_keys=True))
        return
    if not queries and sys.stdin is not None and sys.stdin.isatty():
        typer.echo('error: no query given; try: adder "3+10"  (or pipe one query per line)', err=True)
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(answer_stdin(model, as_json, engine))


serve_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="markdown")
SERVE_EXTRA = "pip install 'adder[serve]' (from a checkout: pip install '.[serve]')"


ALLOWED_TEXT = re.compile(r"[A-Za-z0-9.:\[\]_*-]+")  # what a host name, an address or a port may hold


def checked_hosts(values: list[str]) -> frozenset[str]:
    """--allow-host values: a name or address, with or without a port, or *."""
    for value in values:
        if not ALLOWED_TEXT.fullmatch(value):
            raise ValueError(f"--allow-host must be a host name or address (with or without :port), got {value!r}")
    return frozenset(value.lower() for value in values)


def checked_origins(values: list[str]) -> frozenset[str]:
    """--allow-origin values: scheme://host[:port] as a browser sends it, null, or *."""
    for value in values:
        scheme, sep, rest = value.partition("://")
        if value not in ("*", "null") and not (sep and scheme in ("http", "https") and ALLOWED_TEXT.fullmatch(rest)):
            raise ValueError(f"--allow-origin must be an origin such as http://localhost:3000 (or *), got {value!r}")
    return frozenset(value.lower() for value in values)


@serve_app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on. The default answers this machine only; 0.0.0.0 answers any.")
    ] = "127.0.0.1",
    port: Annotated[str, typer.Option(help="Port to listen on, 0 to 65535; 0 picks a free one.")] = "8000",
    model: Annotated[
        str | None,
        typer.Option(
            envvar="ADDER_MODEL",
            help="The model requests get when they name none: a shipped model's name or a path to an .onnx file.",
            show_default="default",
        ),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            help="Also answer requests whose Host header is this name (name or name:port; * for any), "
            "as behind a proxy. Others than the address served are refused, against DNS rebinding. Repeatable."
        ),
    ] = None,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(
            help="Let pages from this origin (http://host:port; * for any) read answers. "
            "Cross-origin requests get no data otherwise. Repeatable."
        ),
    ] = None,
    replicas: Annotated[
        int,
        typer.Option(
            min=0,
            help="Run this many replicas on Ray Serve (extra `replicas`) instead of one process; they answer /v2 only.",
        ),
    ] = 0,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="With --replicas: the Ray cluster to join (`ray start --head` prints it); default: start Ray here."
        ),
    ] = None,
) -> None:
    """Answer queries over HTTP until SIGTERM or Ctrl-C: GET /add?q=3%2B10, POST /add, GET /health, GET /models,
    and the Open Inference Protocol under /v2.

    Queries from concurrent requests are answered together, in one model call.
    Every shipped model is loaded; a request may name one.
    """
    from .bounds import parse_whole_number

    try:
        number = parse_whole_number(port, "--port", 0, 65535)
        if not host or not ALLOWED_TEXT.fullmatch(host):
            raise ValueError(f"--host must be an address or host name, got {host!r}")
        exposure_hosts, exposure_origins = checked_hosts(allow_host or []), checked_origins(allow_origin or [])
    except ValueError as exc:
        typer.echo(f"error: {printable(str(exc))}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    if ray_address is not None and not replicas:
        typer.echo("error: --ray-address runs replicas there; give --replicas N too", err=True)
        raise typer.Exit(EXIT_USAGE)
    if replicas:
        raise typer.Exit(serve_replicas(host, number, model, replicas, ray_address))
    if not all(importlib.util.find_spec(name) for name in ("uvicorn", "starlette")):
        typer.echo(f"error: adder serve needs the serve extra; install it with: {SERVE_EXTRA}", err=True)
        raise typer.Exit(EXIT_USAGE)
    from .server import Exposure, build_app, listen, open_models, run
    from .session import ModelError

    try:
        models, default = open_models(model)
    except ModelError as exc:
        typer.echo(f"error: {printable(str(exc))}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    try:
        sock = listen(host, number)
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host} port {port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    address = sock.getsockname()
    shown = f"[{address[0]}]" if ":" in address[0] else address[0]
    described = models[default].config.describe()
    typer.echo(
        f"adder serve: {default} ({described}) at http://{shown}:{address[1]}; SIGTERM or Ctrl-C stops", err=True
    )
    if not ipaddress.ip_address(address[0].split("%")[0]).is_loopback:
        typer.echo(
            f"warning: adder serve answers anyone who can reach {shown}:{address[1]}: "
            "it has no authentication and no TLS (put a proxy that has them in front)",
            err=True,
        )
    names = exposure_hosts | ({f"{host.lower()}:{address[1]}"} if not is_address(host) else set())
    run(build_app(models, default, exposure=Exposure(names, exposure_origins)), sock)


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


REPLICAS_EXTRA = "pip install 'adder[replicas]' (from a checkout: pip install '.[replicas]')"


def serve_replicas(host: str, port: int, model: str | None, replicas: int, ray_address: str | None) -> int:
    """`adder serve --replicas N`: the model and the port checked here, then Ray Serve until SIGTERM or Ctrl-C."""
    if not all(importlib.util.find_spec(name) for name in ("ray", "starlette")):
        typer.echo(
            f"error: adder serve --replicas needs the replicas extra; install it with: {REPLICAS_EXTRA}", err=True
        )
        return EXIT_USAGE
    from .session import Adder, ModelError

    try:
        Adder(model)
    except ModelError as exc:
        typer.echo(f"error: {exc}", err=True)
        return EXIT_USAGE
    import socket

    try:  # Ray's proxy takes a fixed port: a free one for --port 0, and a taken one refused here in one line
        with socket.create_server((host, port)) as probe:
            port = probe.getsockname()[1]
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host} port {port}: {exc.strerror or exc}", err=True)
        return EXIT_USAGE
    from .replicas import run_replicas

    try:
        run_replicas(model, host, port, replicas, address=ray_address, announce=lambda line: typer.echo(line, err=True))
    except ConnectionError as exc:  # ray.init: no cluster at that address, or one that refuses this client's token
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        typer.echo(f"error: cannot join the Ray cluster at {ray_address or 'this machine'}: {reason[:200]}", err=True)
        return EXIT_USAGE
    return 0
