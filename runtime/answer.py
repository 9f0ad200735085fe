"""Answering queries for the `adder` command: one output line per query, errors on stderr.

Nothing here imports typer, so a plain `adder QUERY...` (see adder.command) can
answer without loading the option parser.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable

from .grammar import QueryError
from .lines import StdinLines
from .session import CHUNK_SIZE, Adder, EngineError, ModelError

EXIT_BAD_QUERY = 1
EXIT_USAGE = 2
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a command ended by it
CHUNK = CHUNK_SIZE  # queries per onnxruntime call and per write
PROGRESS_AFTER = 50_000  # lines before a progress bar is worth drawing


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


class OutputError(Exception):
    """Standard output cannot take the answers (closed, a full disk); the message says why."""


def write_out(out, text: str) -> None:
    """Write and flush; a failure other than a reader gone away (see adder.command) is an OutputError."""
    if out is None:
        raise OutputError("standard output is closed; there is nowhere to write the answers")
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write the answers: {exc.strerror or type(exc).__name__}") from None


def printable(text: str) -> str:
    """``text`` with control characters escaped (a newline as \\n, an escape sequence as \\x1b):
    a crafted file name or query can neither split a one-line error nor drive the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def answer_stream(adder, chunks: Iterable[list[str]], label: str, as_json: bool, progress: Progress, idle=None) -> int:
    """Write one output line per query, in order, a chunk at a time; return how many queries failed.

    The chunks go through one ``Adder.answer_chunks`` call, so its worker pool keeps
    several in flight. Each chunk's lines are written and flushed as soon as it is
    answered; with ``idle`` (see ``Adder.answer_chunks``), a query is never held back
    while the input waits.
    """
    failed = number = 0
    out = sys.stdout
    for chunk, results in adder.answer_chunks(chunks, idle):
        if not as_json and QueryError not in map(type, results):  # nearly every chunk: no loop per line
            number += len(chunk)
            write_out(out, "\n".join(map(str, results)) + "\n")
            progress.update(number)
            continue
        lines = []
        for query, result in zip(chunk, results):
            number += 1
            if isinstance(result, QueryError):
                failed += 1
                sys.stderr.write(f"error: {label} {number}: {printable(str(result))}\n")
                lines.append(json.dumps({"query": query, "error": str(result)}) if as_json else "")
            else:
                lines.append(json.dumps({"query": query, "answer": result}) if as_json else str(result))
        write_out(out, "\n".join(lines) + "\n")
        progress.update(number)
    progress.close()
    return failed


def open_adder(model: str | None, engine: str | None = None) -> Adder | None:
    """The Adder for ``model`` on ``engine`` (None: the default), or None after a one-line error on stderr."""
    try:
        return Adder(model, engine=engine)
    except (ModelError, EngineError) as exc:
        sys.stderr.write(f"error: {printable(str(exc))}\n")
        return None


def answer_arguments(queries: list[str], model: str | None, as_json: bool = False, engine: str | None = None) -> int:
    """Answer queries given as arguments; the exit code (0, EXIT_BAD_QUERY or EXIT_USAGE)."""
    adder = open_adder(model, engine)
    if adder is None:
        return EXIT_USAGE
    chunks = (queries[start : start + CHUNK] for start in range(0, len(queries), CHUNK))
    try:
        failed = answer_stream(adder, chunks, "query", as_json, Progress(None))
    except ModelError as exc:  # the model broke a promise mid-run: no answer after it can be trusted
        sys.stderr.write(f"error: {printable(str(exc))}\n")
        return EXIT_USAGE
    return EXIT_BAD_QUERY if failed else 0


def answer_stdin(model: str | None, as_json: bool, engine: str | None = None) -> int:
    """Answer stdin line by line (``adder -``); the exit code, EXIT_TERMINATED after SIGTERM.

    SIGTERM is caught from before the model is opened, so a query sent before it is
    answered even when the signal comes while the model loads.
    """
    if sys.stdin is None:
        sys.stderr.write("error: standard input is closed; give queries as arguments, or pipe them in\n")
        return EXIT_USAGE
    lines = StdinLines()
    with lines.ended_by_sigterm():
        adder = open_adder(model, engine)
        if adder is None:
            return EXIT_USAGE
        lines.max_chars = adder.config.max_query_chars
        try:
            failed = answer_stream(adder, lines.chunks(CHUNK), "line", as_json, Progress(lines), lines.idle)
        except ModelError as exc:  # as in answer_arguments
            sys.stderr.write(f"error: {printable(str(exc))}\n")
            return EXIT_USAGE
    if lines.terminated:
        return EXIT_TERMINATED
    return EXIT_BAD_QUERY if failed else 0
