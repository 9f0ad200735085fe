"""`adder`: answer queries from arguments or standard input; a thin layer over adder.Adder."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .answer import EXIT_USAGE, answer_arguments, answer_stdin, open_adder
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
        raise typer.Exit(answer_arguments(queries, model, as_json))
    if info:
        adder = open_adder(model)
        if adder is None:
            raise typer.Exit(EXIT_USAGE)
        typer.echo(json.dumps(adder.config.to_dict() | {"path": str(Path(adder.path))}, indent=2, sort_keys=True))
        return
    if not queries and sys.stdin is not None and sys.stdin.isatty():
        typer.echo('error: no query given; try: adder "3+10"  (or pipe one query per line)', err=True)
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(answer_stdin(model, as_json))


serve_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="markdown")
SERVE_EXTRA = "pip install 'adder[serve]' (from a checkout: pip install '.[serve]')"


@serve_app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on. The default answers this machine only; 0.0.0.0 answers any.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on; 0 picks a free one.")] = 8000,
    model: Annotated[
        str | None,
        typer.Option(
            envvar="ADDER_MODEL",
            help="The model requests get when they name none: a shipped model's name or a path to an .onnx file.",
            show_default="default",
        ),
    ] = None,
) -> None:
    """Answer queries over HTTP until SIGTERM or Ctrl-C: GET /add?q=3%2B10, POST /add, GET /health, GET /models.

    Queries from concurrent requests are answered together, in one model call.
    Every shipped model is loaded; a request may name one.
    """
    if not all(importlib.util.find_spec(name) for name in ("uvicorn", "starlette")):
        typer.echo(f"error: adder serve needs the serve extra; install it with: {SERVE_EXTRA}", err=True)
        raise typer.Exit(EXIT_USAGE)
    from .server import build_app, listen, open_models, run
    from .session import ModelError

    try:
        models, default = open_models(model)
    except ModelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    try:
        sock = listen(host, port)
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host} port {port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    address = sock.getsockname()
    shown = f"[{address[0]}]" if ":" in address[0] else address[0]
    described = models[default].config.describe()
    typer.echo(
        f"adder serve: {default} ({described}) at http://{shown}:{address[1]}; SIGTERM or Ctrl-C stops", err=True
    )
    run(build_app(models, default), sock)
