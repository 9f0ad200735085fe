"""`adder`: answer queries from arguments or standard input; a thin layer over runtime.Adder."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from stat import S_ISREG
from typing import Annotated

import typer

from runtime.codec import QueryError
from runtime.session import CHUNK_SIZE

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

EXIT_BAD_QUERY = 1
EXIT_USAGE = 2
CHUNK = CHUNK_SIZE  # queries per onnxruntime call and per write
PROGRESS_AFTER = 50_000  # lines before a progress bar is worth drawing


class StdinLines:
    """Lines of stdin without their endings; invalid UTF-8 survives as surrogates the parser refuses."""

    def __init__(self) -> None:
        self.bytes_read = 0
        stat = os.fstat(sys.stdin.fileno())
        self.size = stat.st_size if S_ISREG(stat.st_mode) else None

    def __iter__(self) -> Iterator[str]:
        for raw in sys.stdin.buffer:
            self.bytes_read += len(raw)
            yield raw.decode("utf-8", errors="surrogateescape").rstrip("\r\n")


class Progress:
    """A one-line progress bar on stderr, drawn only for a person watching a large input."""

    def __init__(self, source: StdinLines | None) -> None:
        self.source = source
        self.enabled = source is not None and sys.stderr.isatty()
        self.drawn = False

    def update(self, answered: int) -> None:
        if not self.enabled or answered < PROGRESS_AFTER:
            return
        size = self.source.size
        if size:
            share = min(self.source.bytes_read / size, 1.0)
            bar = "#" * int(30 * share)
            sys.stderr.write(f"\r[{bar:<30}] {100 * share:3.0f}%  {answered:,} lines")
        else:
            sys.stderr.write(f"\r{answered:,} lines answered")
        sys.stderr.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")


def answer_stream(adder, queries: Iterable[str], label: str, as_json: bool, progress: Progress) -> int:
    """Write one output line per query, in order; return how many queries failed."""
    failed = 0
    out = sys.stdout
    iterator = iter(queries)
    number = 0
    while chunk := list(islice(iterator, CHUNK)):
        lines = []
        for query, result in zip(chunk, adder.results(chunk, CHUNK)):
            number += 1
            if isinstance(result, QueryError):
                failed += 1
                typer.echo(f"error: {label} {number}: {result}", err=True)
                lines.append(json.dumps({"query": query, "error": str(result)}) if as_json else "")
            else:
                lines.append(json.dumps({"query": query, "answer": result}) if as_json else str(result))
        out.write("\n".join(lines) + "\n")
        out.flush()
        progress.update(number)
    progress.close()
    return failed


def show_models() -> None:
    from runtime.session import Adder, shipped_models

    for name in shipped_models():
        config = Adder(name).config
        accuracy = config.training.get("evaluation", {})
        measured = (
            f"exact-match {100 * accuracy['exact_match']:.4f}% ({accuracy['method']})" if accuracy else "not measured"
        )
        for group, counts in sorted(accuracy.get("groups", {}).items()):
            if group.endswith("every query"):  # exhaustive checks of part of a sampled domain
                share = (counts["total"] - counts["wrong"]) / counts["total"]
                measured += f"; {group.removesuffix(', every query')}: {100 * share:.4f}% (exhaustive)"
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
        lines = StdinLines()
        failed = answer_stream(adder, lines, "line", as_json, Progress(lines))
    else:
        failed = answer_stream(adder, queries, "query", as_json, Progress(None))
    if failed:
        raise typer.Exit(EXIT_BAD_QUERY)


def run() -> None:
    app()
