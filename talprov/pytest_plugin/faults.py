"""Fault injection for the plugin's emulators: ``talprov_faults.fail(...)``.

Two ways a call can fail:

* ``after=False`` (the default): the emulator never sees the call; the client
  gets the error. Nothing happened in the cloud.
* ``after=True``: the emulator handles the call (the instance or VM exists, the
  task ran), then the client gets the error instead of the answer. This is the
  case a provider must survive without making a second machine: a lost answer.

AWS goes through :class:`Ec2FaultProxy`, a small HTTP proxy in front of moto
(the ``endpoint_url`` of the plugin's config is the proxy), so faults reach
every process that uses the config, ``talprov serve`` included. An operation
is the EC2 API action (``RunInstances``). Proxmox VE uses fakepve's own failure
rules (before) and the launcher's ``fail_after`` (after); an operation is
``"METHOD /path/suffix"`` as fakepve matches it (``"POST /nodes/pve1/qemu"``;
``{vmid}``-style placeholders allowed).
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from talprov.demo_platforms.fakepve_control import FakePveServer

#: Platforms ``fail`` supports.
FAULT_PLATFORMS = ("aws", "proxmox")
#: Headers that describe one hop of a connection, never forwarded by a proxy (RFC 9110 7.6.1).
HOP_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                         "transfer-encoding", "upgrade", "host", "content-length"})


@dataclass
class Fault:
    """One injected failure rule; ``injected`` counts the calls it failed so far."""

    platform: str
    operation: str
    after: bool
    times: int
    status: int
    code: str
    message: str
    injected: int = 0

    @property
    def exhausted(self) -> bool:
        return self.injected >= self.times


def ec2_error_body(code: str, message: str) -> bytes:
    """An EC2 (query protocol) error document, as EC2 answers it."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
            "</Error></Errors><RequestID>talprov-fault</RequestID></Response>").encode()


def ec2_action(body: bytes, query: str) -> str:
    """The EC2 API action of a query-protocol request ("" when there is none)."""
    for source in (body.decode("utf-8", "replace"), query):
        found = urllib.parse.parse_qs(source).get("Action")
        if found:
            return found[0]
    return ""


class Ec2FaultProxy:
    """A threaded HTTP proxy on 127.0.0.1 that forwards to moto and fails chosen actions.

    Thread-safe. ``start`` once, ``clear`` between tests, ``stop`` at the end.
    """

    def __init__(self, upstream: str) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="talprov-ec2-fault-proxy")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Ec2FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving. Idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def take(self, action: str, *, after: bool) -> Fault | None:
        """The first live rule for ``action`` at this point, counted as used; or None."""
        with self._lock:
            for fault in self.faults:
                if fault.operation == action and fault.after == after and not fault.exhausted:
                    fault.injected += 1
                    return fault
        return None

    def forward(self, method: str, path: str, headers: dict[str, str],
                body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send the request to moto; its status, headers and body."""
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port,
                                                timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()


def _handler(proxy: Ec2FaultProxy) -> Callable[..., BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: a test's output is no place for an access log."""

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in HOP_HEADERS:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _fail(self, fault: Fault) -> None:
            self._send(fault.status, [("Content-Type", "text/xml")],
                       ec2_error_body(fault.code, fault.message))

        def _proxy(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            action = ec2_action(body, urllib.parse.urlsplit(self.path).query)
            before = proxy.take(action, after=False) if action else None
            if before is not None:
                self._fail(before)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            status, reply_headers, reply = proxy.forward(self.command, self.path, headers, body)
            after = proxy.take(action, after=True) if action else None
            if after is not None:
                self._fail(after)
                return
            self._send(status, reply_headers, reply)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _proxy

    return Handler


class Faults:
    """What the ``talprov_faults`` fixture gives: ``fail(platform, operation, ...)``.

    The emulator of ``platform`` is started (or reused) when the first fault for
    it is added; every rule is dropped at the end of the test.
    """

    def __init__(self, aws: Callable[[], Ec2FaultProxy],
                 proxmox: Callable[[], FakePveServer]) -> None:
        self._aws = aws
        self._proxmox = proxmox
        self.added: list[Fault] = []

    def fail(self, platform: str, operation: str, *, after: bool = False, times: int = 1,
             status: int | None = None, code: str = "InternalError",
             message: str = "injected by talprov_faults") -> Fault:
        """Fail the next ``times`` calls of ``operation`` on ``platform``.

        ``after=True``: the emulator acts first, then the client gets the error.
        ``status`` defaults to 500 (a server error, which talprov retries);
        ``code`` is the EC2 error code (aws only). Returns the rule, whose
        ``injected`` counts the calls failed so far (aws; fakepve counts inside).
        Raises ``ValueError`` for a platform without fault injection or a bad
        operation.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        fault = Fault(platform, operation, after, times, status or 500, code, message)
        if platform == "aws":
            if not operation.isalnum():
                raise ValueError(f"aws: operation {operation!r} is not an EC2 action name "
                                 "(such as RunInstances)")
            self._aws().add(fault)
        elif platform == "proxmox":
            method, _, suffix = operation.partition(" ")
            if method not in {"GET", "POST", "PUT", "DELETE"} or not suffix.startswith("/"):
                raise ValueError(f"proxmox: operation {operation!r} must be 'METHOD /path', "
                                 "e.g. 'POST /nodes/pve1/qemu'")
            op = "fail_after" if after else "fail"
            self._proxmox().control(op, method=method, suffix=suffix, status=fault.status,
                                    message=message, times=times)
        else:
            raise ValueError(f"fault injection supports {', '.join(FAULT_PLATFORMS)}, "
                             f"not {platform!r}")
        self.added.append(fault)
        return fault

    def pending(self, platform: str) -> list[str]:
        """The rules of ``platform`` not used up yet, one line each ("" when none is
        left): a test asserts ``pending(...) == []`` to show its faults were hit."""
        if platform == "aws":
            return [f"{f.operation} after={f.after} left={f.times - f.injected}"
                    for f in self.added if f.platform == "aws" and not f.exhausted]
        if platform == "proxmox":
            if not any(f.platform == "proxmox" for f in self.added):
                return []
            rules = self._proxmox().control("pending_failures")
            return [f"{r['method']} {r['suffix']} after={r['after']} left={r['times']}"
                    for r in rules]
        raise ValueError(f"fault injection supports {', '.join(FAULT_PLATFORMS)}, "
                         f"not {platform!r}")
