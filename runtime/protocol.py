"""uvicorn's httptools protocol with a cap on how large a request's line and headers may grow.

uvicorn keeps a request's URL and headers in memory for as long as the client keeps
sending them, joining the pieces as they come: measured here, one client streaming a
URL at ~7 MB/s held 70 MB after ten seconds and took every other client's /health
from under 1 ms to about a second. Past the cap the connection gets one JSON reply
(414 for the URL, 431 for headers) and is closed. uvicorn's h11 protocol, used when
httptools is missing, has its own 16 KB cap.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def capped_protocol(max_head_bytes: int) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``http`` setting, refusing heads over ``max_head_bytes``."""

    class CappedHttpToolsProtocol(HttpToolsProtocol):
        reading_head = False
        head_bytes = 0

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.reading_head, self.head_bytes = True, 0

        def on_headers_complete(self) -> None:
            self.reading_head = False
            super().on_headers_complete()

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
                status = b"414 URI Too Long"
                message = f"the URL is over {max_head_bytes:,} bytes"
            else:
                status = b"431 Request Header Fields Too Large"
                message = f"the request line and headers are over {max_head_bytes:,} bytes"
            body = json.dumps({"error": message}).encode()
            head = b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            self.transport.write(head % (status, len(body)) + body)
            self.transport.close()

    return CappedHttpToolsProtocol
