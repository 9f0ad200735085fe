"""uvicorn's httptools protocol with caps on how large a request's line and headers may grow,
and on how long they may take to arrive.

uvicorn keeps a request's URL and headers in memory for as long as the client keeps
sending them, joining the pieces as they come: measured here, one client streaming a
URL at ~7 MB/s held 70 MB after ten seconds and took every other client's /health
from under 1 ms to about a second. Past the cap the connection gets one JSON reply
(414 for the URL, 431 for headers) and is closed. uvicorn's h11 protocol, used when
httptools is missing, has its own 16 KB cap.

uvicorn also keeps a connection that sends nothing, or sends a head a byte at a time,
for as long as the client likes; enough of them would use up the server's file
descriptors. A head must end within ``head_seconds`` of the connection opening or of
its own first byte, else 408 and the connection is closed.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def capped_protocol(max_head_bytes: int, head_seconds: float) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``http`` setting, refusing heads over ``max_head_bytes``
    or slower than ``head_seconds``."""

    class CappedHttpToolsProtocol(HttpToolsProtocol):
        reading_head = False
        head_bytes = 0
        head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.start_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self.stop_head_timer()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.reading_head, self.head_bytes = True, 0
            if self.head_timer is None:  # else the clock started when the connection opened
                self.start_head_timer()

        def on_headers_complete(self) -> None:
            self.reading_head = False
            self.stop_head_timer()
            super().on_headers_complete()

        def start_head_timer(self) -> None:
            self.head_timer = self.loop.call_later(head_seconds, self.head_too_slow)

        def stop_head_timer(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None

        def head_too_slow(self) -> None:
            self.head_timer = None
            if not self.transport.is_closing():
                self.refuse(b"408 Request Timeout", f"no complete request head within {head_seconds:g} s")

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            # Counted per chunk read, so a chunk that also ends the request before may count too:
            # the cap is far above a chunk's size (at most 256 KB) so no real request comes near it.
            if self.reading_head and not self.transport.is_closing():
                self.head_bytes += len(data)
                if self.head_bytes > max_head_bytes:
                    self.refuse_head()

        def refuse_head(self) -> None:
            if len(self.url) > max_head_bytes:
                self.refuse(b"414 URI Too Long", f"the URL is over {max_head_bytes:,} bytes")
            else:
                self.refuse(
                    b"431 Request Header Fields Too Large", f"the request head is over {max_head_bytes:,} bytes"
                )

        def refuse(self, status: bytes, message: str) -> None:
            self.stop_head_timer()
            body = json.dumps({"error": message}).encode()
            head = b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            self.transport.write(head % (status, len(body)) + body)
            self.transport.close()

    return CappedHttpToolsProtocol
