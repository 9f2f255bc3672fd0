"""A seeded fault proxy in front of an emulator's HTTP endpoint.

Every call the worker makes passes through it. With probability ``rate`` (drawn
from a ``random.Random(seed)``, so a seed replays the same fault sequence for
the same call sequence) a call gets one of :data:`KINDS`:

- ``error-before``: an error answer; the backend never sees the call;
- ``error-after``: the backend acts, the caller gets an error instead of its answer;
- ``hold``: the backend's answer, held back for a while (a slow network);
- ``drop-before`` / ``drop-after``: the connection is closed without an answer,
  before or after the backend acted;
- ``throttle``: a throttling answer with ``Retry-After``; the backend never sees it.

Error and throttling bodies are the platform's own shape (:class:`Dialect`), so
the SDKs parse them as they would the real cloud's. Response bodies have the
backend's base URL replaced by the proxy's (an OpenStack catalog then points
back at the proxy). :class:`Ec2ClientTokens` gives ``RunInstances`` EC2's
idempotency on ``ClientToken``, which moto does not implement: a repeated token
gets the first call's answer, without a second launch.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx

KINDS = ("error-before", "error-after", "hold", "drop-before", "drop-after", "throttle")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authorization", "proxy-authenticate", "content-length", "host",
               "accept-encoding", "content-encoding"}


@dataclass(frozen=True)
class Dialect:
    """How the platform words an error and a throttling answer: (status, type, body)."""

    error: tuple[int, str, bytes]
    throttle: tuple[int, str, bytes]


EC2 = Dialect(
    error=(503, "text/xml", b"<Response><Errors><Error><Code>Unavailable</Code><Message>"
           b"injected by the chaos proxy</Message></Error></Errors>"
           b"<RequestID>chaos</RequestID></Response>"),
    throttle=(503, "text/xml", b"<Response><Errors><Error><Code>RequestLimitExceeded</Code>"
              b"<Message>Request limit exceeded.</Message></Error></Errors>"
              b"<RequestID>chaos</RequestID></Response>"),
)
OPENSTACK = Dialect(
    error=(503, "application/json",
           b'{"error": {"code": 503, "title": "Service Unavailable", '
           b'"message": "injected by the chaos proxy"}}'),
    throttle=(429, "application/json",
              b'{"error": {"code": 429, "title": "Too Many Requests", '
              b'"message": "rate limited by the chaos proxy"}}'),
)


class Ec2ClientTokens:
    """EC2's ``RunInstances`` idempotency: the same ``ClientToken`` gets the first
    successful answer again instead of a new launch. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.replayed = 0

    @staticmethod
    def token(body: bytes) -> str | None:
        form = parse_qs(body.decode(errors="replace"))
        if form.get("Action") != ["RunInstances"]:
            return None
        tokens = form.get("ClientToken")
        return tokens[0] if tokens else None

    def replay(self, body: bytes) -> tuple[int, dict[str, str], bytes] | None:
        token = self.token(body)
        with self._lock:
            answer = self._answers.get(token) if token else None
            if answer is not None:
                self.replayed += 1
            return answer

    def remember(self, body: bytes, answer: tuple[int, dict[str, str], bytes]) -> None:
        token = self.token(body)
        if token and answer[0] == 200:
            with self._lock:
                self._answers.setdefault(token, answer)


@dataclass
class FaultProxy:
    """The proxy; ``start()`` it, point the worker at ``url``, ``stop()`` it."""

    backend: str
    dialect: Dialect
    seed: int
    rate: float = 0.0
    hold_seconds: tuple[float, float] = (0.2, 1.0)
    retry_after: int = 1
    client_tokens: Ec2ClientTokens | None = None
    #: The kinds to draw from (all by default).
    kinds: tuple[str, ...] = KINDS
    #: Calls that must never be faulted (e.g. the emulator's own admin API).
    exempt: Callable[[str, str], bool] = lambda _method, _path: False
    injected: Counter[str] = field(default_factory=Counter)
    calls: int = 0

    def __post_init__(self) -> None:
        self.backend = self.backend.rstrip("/")
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        self._client = httpx.Client(base_url=self.backend, timeout=60)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,),
                                        name="chaos-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for a loop that must be running
            self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def choose(self, method: str, path: str) -> tuple[str | None, float]:
        """The fault for this call (or None) and how long a ``hold`` holds; the same
        three draws per call, in call order, so a seed replays a sequence."""
        with self._lock:
            self.calls += 1
            roll, pick = self._random.random(), self._random.choice(self.kinds)
            hold = self._random.uniform(*self.hold_seconds)
            if self.exempt(method, path) or roll >= self.rate:
                return None, 0.0
            self.injected[pick] += 1
            return pick, hold

    def forward(self, method: str, path: str, headers: dict[str, str],
                body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.client_tokens is not None:
            replayed = self.client_tokens.replay(body)
            if replayed is not None:
                return replayed
        reply = self._client.request(method, path, headers=headers, content=body)
        kept = {k: v for k, v in reply.headers.items() if k.lower() not in _HOP_BY_HOP}
        content = reply.content.replace(self.backend.encode(), self.url.encode())
        for key in list(kept):
            if key.lower() == "location":
                kept[key] = kept[key].replace(self.backend, self.url)
        answer = (reply.status_code, kept, content)
        if self.client_tokens is not None:
            self.client_tokens.remember(body, answer)
        return answer


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: Any) -> None:
            return

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _canned(self, status: int, content_type: str, body: bytes,
                    retry_after: int | None = None) -> None:
            headers = {"Content-Type": content_type}
            if retry_after is not None:
                headers["Retry-After"] = str(retry_after)
            self._answer(status, headers, body)

        def _drop(self) -> None:
            self.close_connection = True

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            fault, hold = proxy.choose(self.command, self.path)
            if fault == "error-before":
                self._canned(*proxy.dialect.error)
                return
            if fault == "throttle":
                self._canned(*proxy.dialect.throttle, retry_after=proxy.retry_after)
                return
            if fault == "drop-before":
                self._drop()
                return
            answer = proxy.forward(self.command, self.path, headers, body)
            if fault == "error-after":
                self._canned(*proxy.dialect.error)
            elif fault == "drop-after":
                self._drop()
            else:
                if fault == "hold":
                    time.sleep(hold)
                self._answer(*answer)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    return Handler
