"""Standard input as lines for `adder -`: in large chunks when input arrives fast, never held back when it is idle.

A program that writes one query and waits for its answer before the next (a
coprocess), or a person typing at a terminal, must get each answer as soon as its
line is read; a file or a fast pipe must still be answered a thousand lines per
model call. The reader tells the two apart by asking the kernel whether more input
is waiting (``select`` with a zero timeout): a chunk ends when it is full, or when
nothing more is waiting and the next line would have to be waited for.

SIGTERM ends the input: the complete lines already sent (read, or waiting to be
read, up to a megabyte) are answered, a line cut off before its newline is not,
and the command exits with status 143.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from stat import S_ISREG

from .grammar import MAX_QUERY_CHARS

READ_BYTES = 1 << 16  # per read: the size of a Linux pipe's buffer
READS_AFTER_SIGTERM = 16  # input already waiting when SIGTERM comes is read, up to 1 MiB
# Bytes of one line held at once: a query of MAX_QUERY_CHARS four-byte characters and its line end.
MAX_LINE_BYTES = 4 * MAX_QUERY_CHARS + 2


class LongLine(str):
    """The start of a line too long to be a query, standing for all of it: ``len`` is the
    whole line's length in bytes, so the parser refuses it with the length it really had."""

    def __new__(cls, start: str, length: int) -> LongLine:
        line = super().__new__(cls, start)
        line.length = length
        return line

    def __len__(self) -> int:
        return self.length


def _decode(raw: bytes) -> str:
    """Invalid UTF-8 survives as surrogates, which the parser refuses by position."""
    return raw.decode("utf-8", errors="surrogateescape")


class StdinLines:
    """Lines of a file descriptor (stdin) without their endings, read a pipe's buffer at a time.

    Memory stays flat for any input: a line longer than any query is never held whole,
    only its start and its length (a LongLine).
    """

    def __init__(self, fd: int | None = None) -> None:
        self.fd = sys.stdin.fileno() if fd is None else fd
        self.bytes_read = 0
        stat = os.fstat(self.fd)
        self.size = stat.st_size if S_ISREG(stat.st_mode) else None
        self.terminated = False  # SIGTERM arrived (see ended_by_sigterm)
        self._lines: list[str] = []  # complete lines read and not yet handed out, from _next on
        self._next = 0
        self._partial = b""  # a line whose end has not been read yet
        self._long: tuple[str, int] | None = None  # a line too long to hold: its start, its length so far
        self._ended = False
        self._wake: int | None = None
        self._reads_after_sigterm = READS_AFTER_SIGTERM
        self.max_chars = MAX_QUERY_CHARS  # the longest query the model takes (ModelConfig.max_query_chars)

    @property
    def max_line_bytes(self) -> int:
        """Bytes of one line held at once: a query of max_chars four-byte characters and its line end."""
        return 4 * self.max_chars + 2

    def chunks(self, size: int) -> Iterator[list[str]]:
        """Lists of at most ``size`` lines, in order; a list ends early when its next line
        would have to wait for input."""
        while True:
            if self._next == len(self._lines) and not self._ended:
                self._fill()  # nothing read is waiting for an answer: wait for input
            chunk: list[str] = []
            while len(chunk) < size and (self._next < len(self._lines) or not self.idle()):
                if self._next == len(self._lines):
                    break  # the input ended
                take = self._lines[self._next : self._next + size - len(chunk)]
                self._next += len(take)
                chunk += take
            if not chunk:
                return
            yield chunk

    def idle(self) -> bool:
        """Whether the next line would have to wait for input: none is buffered and none is waiting."""
        while self._next == len(self._lines) and not self._ended:
            if not self._waiting(timeout=0):
                return not self._ended
            self._read()
        return False

    def _fill(self) -> None:
        """Wait for input (or SIGTERM), then read what came."""
        while self._next == len(self._lines) and not self._ended:
            if self._waiting(timeout=None):
                self._read()

    def _waiting(self, timeout: float | None) -> bool:
        """Whether a read would return at once (waiting up to ``timeout`` for one to)."""
        if self.terminated:
            return self._waiting_after_sigterm()
        watched = [self.fd] if self._wake is None else [self.fd, self._wake]
        try:
            readable = select.select(watched, [], [], timeout)[0]
        except (OSError, ValueError):  # a descriptor select cannot watch: read it, and let the read wait
            return True
        if self._wake in readable:
            _drain(self._wake)
        if self.terminated:
            return self._waiting_after_sigterm()
        return self.fd in readable

    def _waiting_after_sigterm(self) -> bool:
        """After SIGTERM, lines already sent (waiting in a pipe or terminal, a megabyte at most)
        are still read and answered; nothing that has yet to come. A file is read no further."""
        if self.size is None and self._reads_after_sigterm > 0:
            self._reads_after_sigterm -= 1
            try:
                if select.select([self.fd], [], [], 0)[0]:
                    return True
            except (OSError, ValueError):
                pass
        self._end(partial=False)
        return False

    def _read(self) -> None:
        try:
            data = os.read(self.fd, READ_BYTES)
        except BlockingIOError:  # a descriptor left non-blocking by whoever started us: nothing yet
            return
        except OSError:  # a terminal hung up (EIO): the input has ended
            data = b""
        if not data:
            self._end(partial=True)
            return
        self.bytes_read += len(data)
        if self._next:  # drop the lines already handed out
            del self._lines[: self._next]
            self._next = 0
        if self._long is not None:
            start, length = self._long
            end = data.find(b"\n")
            if end < 0:
                self._long = (start, length + len(data))
                return
            self._long = None
            self._lines.append(LongLine(start, length + end))
            data = data[end + 1 :]
        data = self._partial + data
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        if cut:
            text = _decode(data[: cut - 1])
            lines = text.split("\n")
            if "\r" in text:
                lines = [line.rstrip("\r") for line in lines]
            if len(text) > self.max_chars and max(map(len, lines)) > self.max_chars:
                lines = [_long_or_same(line, self.max_chars) for line in lines]
            self._lines += lines
        if len(self._partial) >= self.max_line_bytes:  # too long for a query: keep its start and count the rest
            self._long = (_decode(self._partial[: self.max_chars + 1]), len(self._partial))
            self._partial = b""

    def _end(self, partial: bool) -> None:
        """The input has ended; at its real end, a last line without a newline is still a line."""
        if not self._ended and partial:
            if self._long is not None:
                self._lines.append(LongLine(*self._long))
            elif self._partial:
                self._lines.append(_decode(self._partial).rstrip("\r"))
        self._ended = True

    @contextmanager
    def ended_by_sigterm(self) -> Iterator[None]:
        """While inside, SIGTERM ends the input: the lines read so far are answered, then the caller exits.

        The signal's handler only sets a flag; ``signal.set_wakeup_fd`` makes it also
        wake the ``select`` that waits for input.
        """
        if not hasattr(signal, "SIGTERM"):
            yield
            return
        wake, wake_write = os.pipe()
        os.set_blocking(wake, False)
        os.set_blocking(wake_write, False)

        def on_sigterm(signum, frame) -> None:
            self.terminated = True

        try:
            previous_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        except ValueError:  # not the main thread: SIGTERM keeps its meaning
            os.close(wake)
            os.close(wake_write)
            yield
            return
        previous_handler = signal.signal(signal.SIGTERM, on_sigterm)
        if hasattr(signal, "pthread_sigmask"):  # one held back by hold_sigterm arrives now
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        self._wake = wake
        try:
            yield
        finally:
            held = previous_handler is _hold_on_main_thread  # unblocked now: holding would loop
            signal.signal(signal.SIGTERM, signal.SIG_DFL if held else previous_handler)
            signal.set_wakeup_fd(previous_wakeup)
            self._wake = None
            os.close(wake)
            os.close(wake_write)


def hold_sigterm() -> None:
    """Until StdinLines.ended_by_sigterm takes over, hold SIGTERM back (pending) rather than die
    of it: a query sent while Python starts and the model loads is still answered.

    The main thread blocks it; one that reaches another thread (numpy's and onnxruntime's
    do not block it) is sent on to the main thread (``_hold_on_main_thread``), to wait there.
    """
    if hasattr(signal, "pthread_sigmask") and hasattr(signal, "pthread_kill") and hasattr(signal, "SIGTERM"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        signal.signal(signal.SIGTERM, _hold_on_main_thread)


def _hold_on_main_thread(signum, frame) -> None:
    """Python runs signal handlers on the main thread, which blocks SIGTERM while held: so sent
    to itself, the signal waits, pending, until ended_by_sigterm unblocks it."""
    signal.pthread_kill(threading.get_ident(), signum)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _long_or_same(line: str, max_chars: int = MAX_QUERY_CHARS) -> str:
    """A line of 4 * max_chars + 2 bytes or more stands as a LongLine, as if it had been read in pieces."""
    if len(line) <= max_chars:
        return line
    length = len(line.encode("utf-8", errors="surrogateescape"))
    return LongLine(line[: max_chars + 1], length) if length >= 4 * max_chars + 2 else line
