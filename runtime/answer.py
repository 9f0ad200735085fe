"""Answering queries for the `adder` command: one output line per query, errors on stderr.

Nothing here imports typer, so a plain `adder QUERY...` (see adder.command) can
answer without loading the option parser.
"""

from __future__ import annotations

import json
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from stat import S_ISREG

from .grammar import MAX_QUERY_CHARS, QueryError
from .session import CHUNK_SIZE, Adder, ModelError

EXIT_BAD_QUERY = 1
EXIT_USAGE = 2
CHUNK = CHUNK_SIZE  # queries per onnxruntime call and per write
PROGRESS_AFTER = 50_000  # lines before a progress bar is worth drawing
# Bytes of one line held at once: a query of MAX_QUERY_CHARS four-byte characters and its line end.
MAX_LINE_BYTES = 4 * MAX_QUERY_CHARS + 2


class StdinLines:
    """Lines of stdin without their endings; invalid UTF-8 survives as surrogates the parser refuses."""

    def __init__(self) -> None:
        self.bytes_read = 0
        stat = os.fstat(sys.stdin.fileno())
        self.size = stat.st_size if S_ISREG(stat.st_mode) else None

    def __iter__(self) -> Iterator[str]:
        """Each line, read at most MAX_LINE_BYTES at a time: a line longer than any query is
        skipped in pieces (memory stays flat however long it is) and stands as a LongLine."""
        stream = sys.stdin.buffer
        while raw := stream.readline(MAX_LINE_BYTES):
            self.bytes_read += len(raw)
            if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                length = len(raw) + self._skip_rest_of_line(stream)
                yield LongLine(raw[: MAX_QUERY_CHARS + 1].decode("utf-8", errors="surrogateescape"), length)
                continue
            yield raw.decode("utf-8", errors="surrogateescape").rstrip("\r\n")

    def _skip_rest_of_line(self, stream) -> int:
        skipped = 0
        while piece := stream.readline(1 << 16):
            skipped += len(piece)
            self.bytes_read += len(piece)
            if piece.endswith(b"\n"):
                return skipped - 1
        return skipped


class LongLine(str):
    """The start of a line too long to be a query, standing for all of it: ``len`` is the
    whole line's length in bytes, so the parser refuses it with the length it really had."""

    def __new__(cls, start: str, length: int) -> LongLine:
        line = super().__new__(cls, start)
        line.length = length
        return line

    def __len__(self) -> int:
        return self.length


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
    """Write one output line per query, in order; return how many queries failed.

    The whole stream goes through one ``Adder.results`` call, so its worker pool keeps
    several chunks in flight; the queries it has read and not yet answered wait in a
    queue (a few chunks at most), to be written beside their answers.
    """
    failed = number = 0
    out = sys.stdout
    read: deque[str] = deque()

    def remembered() -> Iterator[str]:
        for query in queries:
            read.append(query)
            yield query

    lines: list[str] = []
    for result in adder.results(remembered(), CHUNK):
        query = read.popleft()
        number += 1
        if isinstance(result, QueryError):
            failed += 1
            sys.stderr.write(f"error: {label} {number}: {result}\n")
            lines.append(json.dumps({"query": query, "error": str(result)}) if as_json else "")
        else:
            lines.append(json.dumps({"query": query, "answer": result}) if as_json else str(result))
        if len(lines) == CHUNK:
            out.write("\n".join(lines) + "\n")
            out.flush()
            lines = []
            progress.update(number)
    if lines:
        out.write("\n".join(lines) + "\n")
        out.flush()
        progress.update(number)
    progress.close()
    return failed


def open_adder(model: str | None) -> Adder | None:
    """The Adder for ``model``, or None after a one-line error on stderr."""
    try:
        return Adder(model)
    except ModelError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return None


def answer_arguments(queries: list[str], model: str | None, as_json: bool = False) -> int:
    """Answer queries given as arguments; the exit code (0, EXIT_BAD_QUERY or EXIT_USAGE)."""
    adder = open_adder(model)
    if adder is None:
        return EXIT_USAGE
    failed = answer_stream(adder, queries, "query", as_json, Progress(None))
    return EXIT_BAD_QUERY if failed else 0
