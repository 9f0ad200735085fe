"""uvicorn's httptools protocol with a bound on everything a client can hold.

uvicorn bounds none of these on its own, and each was measured to hurt:

- **The head**: its URL and headers grow for as long as the client sends them (one
  client streaming a URL at ~7 MB/s held 70 MB after ten seconds), and a connection
  that sends nothing, or a byte now and then, is kept for ever. Here a head is refused
  past ``max_head_bytes`` (414 or 431) and must end within ``head_seconds`` of its first
  byte, or of the connection opening (408).
- **The body**: once the headers are in, nothing bounds a body the handler never reads
  (a GET with ``Content-Length: 1000000``, a byte sent now and then). Here a body must
  end within ``body_seconds`` of its headers (408), read or not; and when a reply is
  complete while its request's body is still arriving, the connection is closed the way
  TCP lets the reply arrive: the reply, then a half-close, then whatever the client
  still sends read and dropped, up to ``linger_bytes`` or ``linger_seconds``. Closing at
  once would make the kernel reset the connection and destroy the reply (a 413 for a
  5 MB POST arrived as ``ConnectionResetError``).
- **The reply**: a client that never reads kept its connection and its buffered replies
  for ever. Here a reply must drain within ``drain_seconds`` once the buffer is full, or
  once the connection is closing with bytes still to send; else the connection is dropped.
- **Pipelining**: httptools parses every request in what one read returns (up to 256 KB,
  some 6,000 ``GET /health``), and uvicorn queues each: 1 MB sent without reading took
  the server from 91 MB to 148 MB. Here at most ``max_pipelined`` requests wait behind
  the one being answered; the rest of the input is dropped, the queued ones answered,
  and the connection closed.
- **Connections**: each holds a file descriptor; under a limit of 100, 85 idle sockets
  made a fresh ``/health`` fail. Here at most ``max_connections`` are open: a new one
  past it closes the connection idle longest (or the slowest still sending a request);
  only when every connection is busy with a complete request is the new one refused (503).

Every reply written here is JSON, as the app's are, the parser's refusals included
(uvicorn's own are plain text).
"""

from __future__ import annotations

import asyncio
import json
from typing import Protocol as TypingProtocol

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

STATUS_LINES = {
    400: b"400 Bad Request",
    408: b"408 Request Timeout",
    414: b"414 URI Too Long",
    431: b"431 Request Header Fields Too Large",
    503: b"503 Service Unavailable",
}


class ConnectionLimits(TypingProtocol):
    """What ``bounded_protocol`` reads (adder.server.Limits has it all)."""

    max_head_bytes: int
    head_seconds: float
    body_seconds: float
    drain_seconds: float
    linger_seconds: float
    linger_bytes: int
    max_pipelined: int


class PipelineFull(Exception):
    """Raised inside a parser callback to stop the parser: the connection has queued enough
    requests, or is being refused."""


def refusal_bytes(status: int, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
    return head % (STATUS_LINES[status], len(body)) + body


class ClosingTransport:
    """The transport uvicorn's code writes to, whose ``close`` lingers or bounds the drain (see
    BoundedProtocol.close_transport); everything else is the real transport's."""

    def __init__(self, transport: asyncio.Transport, protocol: BoundedProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self.write = transport.write
        self.is_closing = transport.is_closing

    def close(self) -> None:
        self._protocol.close_transport()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class BoundedProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with the bounds above; ``limits`` and ``live`` are set by bounded_protocol."""

    limits: ConnectionLimits
    live: dict  # every open connection of this server -> None, oldest first
    max_connections: int

    receiving = False  # between a request's first byte and the end of its body
    lingering = False  # reply sent and half-closed; the rest of the input is dropped
    overflowed = False  # too many pipelined requests: input is dropped, queued ones answered
    refused = False  # a refusal was written here: nothing more is
    head_bytes = 0
    discarded = 0
    last_change = 0.0
    deadline: asyncio.TimerHandle | None = None  # the head's or the body's
    drain_timer: asyncio.TimerHandle | None = None
    real_transport: asyncio.Transport | None = None

    # The connection's life

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.real_transport = transport
        super().connection_made(ClosingTransport(transport, self))  # type: ignore[arg-type]
        self.last_change = self.loop.time()
        self.live[self] = None
        if len(self.live) > self.max_connections and not self.make_room():
            message = f"the server has its limit of {self.max_connections:,} connections open, all answering"
            self.refuse(503, message, linger=False)
            return
        self.arm(self.limits.head_seconds, self.head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.pop(self, None)
        self.disarm()
        if self.drain_timer is not None:
            self.drain_timer.cancel()
            self.drain_timer = None
        super().connection_lost(exc)

    def make_room(self) -> bool:
        """Close the connection that matters least to make room for this one: idle longest, else
        the oldest still sending a request. False when every other one is answering a request."""
        candidates = [(other.rank(), other.last_change, id(other), other) for other in self.live if other is not self]
        candidates = [entry for entry in candidates if entry[0] < 2]
        if not candidates:
            return False
        rank, _, _, chosen = min(candidates)
        self.live.pop(chosen, None)
        if rank == 1 and not (chosen.cycle and chosen.cycle.response_started):
            message = "the server needed this connection for another: it had sent no complete request"
            chosen.silence_handler()
            chosen.refuse(503, message, linger=False)
        else:
            chosen.real_transport.abort()
        return True

    def rank(self) -> int:
        """0 idle between requests, 1 still receiving a request, 2 answering one (never closed for room)."""
        if self.receiving:
            return 1
        if self.cycle is not None and not self.cycle.response_complete:
            return 2
        return 0

    # Input

    def data_received(self, data: bytes) -> None:
        if self.lingering or self.overflowed:
            self.discarded += len(data)
            if self.lingering and self.discarded > self.limits.linger_bytes:
                self.real_transport.abort()
            return
        self._unset_keepalive_if_required()
        if self.deadline is None and not self.receiving:  # any byte starts a head's clock, even a bare CRLF
            self.arm(self.limits.head_seconds, self.head_too_slow)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # no upgrade is served: answer this request, then close
            self.stop_reading()
        except httptools.HttpParserError as exc:
            if self.refused:
                return
            if self.overflowed:
                self.stop_reading()
            else:
                self.send_400_response(str(exc) or type(exc).__name__)
            return
        reading_head = self.receiving and self.deadline is not None and self.deadline_kind == "head"
        if reading_head and not self.real_transport.is_closing():
            self.head_bytes += len(data)  # per read, so a read that also ends the request before may count too
            if self.head_bytes > self.limits.max_head_bytes:
                self.refuse_head()

    def eof_received(self) -> bool | None:
        if self.lingering:
            self.real_transport.close()
        return None

    def stop_reading(self) -> None:
        """Drop the rest of the input; answer what is queued, then close."""
        self.overflowed = True
        queued = self.pipeline[0][0] if self.pipeline else self.cycle
        if queued is None or queued.response_complete:
            self.close_transport()
        else:
            queued.keep_alive = False

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.receiving, self.head_bytes = True, 0
        self.last_change = self.loop.time()
        if self.deadline is None:
            self.arm(self.limits.head_seconds, self.head_too_slow)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.deadline_kind == "head" or not self.receiving:
            super().on_header(name, value)
            return
        # A chunked body's trailers: nothing reads them, and uvicorn would add each to the request's
        # headers for as long as they came. Dropped, and counted against the head's cap.
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > self.limits.max_head_bytes and not self.refused:
            self.silence_handler()
            self.refuse(431, f"the request's trailers are over {self.limits.max_head_bytes:,} bytes")
            raise PipelineFull  # stops the parser: nothing after this is read as a request

    def on_headers_complete(self) -> None:
        busy = self.cycle is not None and not self.cycle.response_complete
        if busy and len(self.pipeline) >= self.limits.max_pipelined:
            self.overflowed, self.receiving = True, False
            raise PipelineFull
        self.disarm()
        self.arm(self.limits.body_seconds, self.body_too_slow, kind="body")
        self.head_bytes = 0  # from here on, a chunked body's trailers
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.receiving = False
        self.last_change = self.loop.time()
        self.disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self.last_change = self.loop.time()
        if self.receiving:  # the handler answered without reading the whole body
            self.server_state.total_requests += 1
            self.close_transport()
            return
        if self.overflowed and not self.pipeline:
            self.server_state.total_requests += 1
            self.close_transport()
            return
        super().on_response_complete()

    # Timers

    deadline_kind = "head"

    def arm(self, seconds: float, callback, kind: str = "head") -> None:
        self.disarm()
        self.deadline_kind = kind
        self.deadline = self.loop.call_later(seconds, callback)

    def disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def head_too_slow(self) -> None:
        self.deadline = None
        if not self.real_transport.is_closing():
            self.refuse(408, f"no complete request head within {self.limits.head_seconds:g} s")

    def body_too_slow(self) -> None:
        self.deadline = None
        if self.real_transport.is_closing() or self.lingering:
            return
        if self.cycle is not None and self.cycle.response_started:
            self.real_transport.abort()  # a reply is on its way; nothing more can be said
            return
        self.silence_handler()
        self.refuse(408, f"the request body took over {self.limits.body_seconds:g} s to arrive")

    # Output

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.drain_timer is None:
            self.drain_timer = self.loop.call_later(self.limits.drain_seconds, self.drain_too_slow)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.drain_timer is not None:
            self.drain_timer.cancel()
            self.drain_timer = None

    def drain_too_slow(self) -> None:
        self.drain_timer = None
        self.real_transport.abort()

    def close_transport(self) -> None:
        """Close: linger while a request's body is still arriving; drop the connection if what is
        left to send has not drained within drain_seconds."""
        transport = self.real_transport
        if transport.is_closing() or self.lingering:  # a lingering one ends on EOF, its bytes or its time
            return
        if self.receiving:
            self.linger()
            return
        transport.close()
        if transport.get_write_buffer_size() and self.drain_timer is None:
            self.drain_timer = self.loop.call_later(self.limits.drain_seconds, self.drain_too_slow)

    def linger(self) -> None:
        self.lingering = True
        self.disarm()
        transport = self.real_transport
        if transport.can_write_eof():
            transport.write_eof()  # the reply, then FIN: the client reads it to the end
        self.flow.resume_reading()
        self.deadline = self.loop.call_later(self.limits.linger_seconds, transport.abort)

    def silence_handler(self) -> None:
        """The handler still waiting for its body hears the client has gone, and its reply is dropped."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()

    def refuse(self, status: int, message: str, linger: bool = True) -> None:
        """One JSON reply written here, then the connection closes: lingering, so that whatever the
        client is still sending is read and dropped rather than reset, unless ``linger`` is False
        (the descriptor is wanted back now)."""
        self.disarm()
        self.refused = True
        self.real_transport.write(refusal_bytes(status, message))
        if linger:
            self.receiving = True
            self.close_transport()
        else:
            self.real_transport.close()

    def send_400_response(self, msg: str) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and (cycle.response_started or not self.receiving):
            self.stop_reading()  # a request before this one is being answered: its reply comes first
            return
        self.silence_handler()  # a body gone bad: its handler hears no more
        self.refuse(400, f"the request is not valid HTTP/1.1 ({msg})")

    def refuse_head(self) -> None:
        if len(self.url) > self.limits.max_head_bytes:
            self.refuse(414, f"the URL is over {self.limits.max_head_bytes:,} bytes")
        else:
            self.refuse(431, f"the request head is over {self.limits.max_head_bytes:,} bytes")


def bounded_protocol(limits: ConnectionLimits, max_connections: int) -> type[BoundedProtocol]:
    """The protocol class for uvicorn's ``http`` setting, bounded by ``limits`` and sharing one
    table of open connections, at most ``max_connections`` of them."""

    class ServerProtocol(BoundedProtocol):
        pass

    ServerProtocol.limits = limits
    ServerProtocol.live = {}
    ServerProtocol.max_connections = max_connections
    return ServerProtocol
