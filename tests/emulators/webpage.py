"""A loopback web server that answers every request with one page: what a wrong
endpoint URL, a plain web server or a proxy in front of an API answers.

Tests point a driver at it to check that it says "did not answer as <API>" with
the status and content type, and never shows the page.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CANARY = "page-canary-7c1d"
PAGE = f"<html><body>Welcome to nginx {CANARY}</body></html>"


@dataclass
class Page:
    """What the server answers; change it between requests."""

    status: int = 200
    content_type: str = "text/html"
    body: str = PAGE


@dataclass
class WebPage:
    url: str
    page: Page


@contextmanager
def web_page(*, tls: tuple[Path, Path] | None = None) -> Iterator[WebPage]:
    """Serve :class:`Page` on 127.0.0.1 (HTTPS with ``tls`` = (certificate, key))."""
    page = Page()

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            data = page.body.encode()
            self.send_response(page.status)
            self.send_header("content-type", page.content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = answer

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield WebPage(f"{scheme}://127.0.0.1:{server.server_address[1]}", page)
    finally:
        server.shutdown()
        server.server_close()
