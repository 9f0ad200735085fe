"""`adder`: answer queries from arguments or standard input; a thin layer over runtime.Adder."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Annotated

import typer

from runtime.codec import QueryError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

EXIT_BAD_QUERY = 1
EXIT_USAGE = 2


def stdin_lines() -> Iterator[str]:
    """Lines of stdin without their endings; invalid UTF-8 survives as surrogates the parser refuses."""
    for raw in sys.stdin.buffer:
        yield raw.decode("utf-8", errors="surrogateescape").rstrip("\r\n")


def answer_stream(adder, queries: Iterable[str], label: str, as_json: bool) -> int:
    """Write one output line per query, in order; return how many queries failed."""
    failed = 0
    out = sys.stdout
    iterator = iter(queries)
    number = 0
    while chunk := list(islice(iterator, 8192)):
        lines = []
        for query, result in zip(chunk, adder.results(chunk)):
            number += 1
            if isinstance(result, QueryError):
                failed += 1
                typer.echo(f"error: {label} {number}: {result}", err=True)
                lines.append(json.dumps({"query": query, "error": str(result)}) if as_json else "")
            else:
                lines.append(json.dumps({"query": query, "answer": result}) if as_json else str(result))
        out.write("\n".join(lines) + "\n")
        out.flush()
    return failed


def show_models() -> None:
    from runtime.session import Adder, shipped_models

    for name in shipped_models():
        config = Adder(name).config
        accuracy = config.training.get("evaluation", {})
        measured = (
            f"exact-match {100 * accuracy['exact_match']:.4f}% ({accuracy['method']})" if accuracy else "not measured"
        )
        typer.echo(f"{name}: {config.describe()}; {measured}")


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
    """
    if version:
        from runtime import __version__

        typer.echo(f"adder {__version__}")
        return
    if list_models:
        show_models()
        return
    from runtime.session import Adder, ModelError

    try:
        adder = Adder(model)
    except ModelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    if info:
        typer.echo(json.dumps(adder.config.to_dict() | {"path": str(Path(adder.path))}, indent=2, sort_keys=True))
        return
    if not queries or queries == ["-"]:
        if not queries and sys.stdin.isatty():
            typer.echo('error: no query given; try: adder "3+10"  (or pipe one query per line)', err=True)
            raise typer.Exit(EXIT_USAGE)
        failed = answer_stream(adder, stdin_lines(), "line", as_json)
    else:
        failed = answer_stream(adder, queries, "query", as_json)
    if failed:
        raise typer.Exit(EXIT_BAD_QUERY)


def run() -> None:
    app()
