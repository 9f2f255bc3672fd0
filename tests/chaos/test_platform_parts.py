"""The parts the Proxmox, vSphere and bare-metal chaos rounds add do what they claim:
the UDP proxy's faults, the HTTPS proxy (TLS on both sides, no cookies of its own),
a group of proxies acting as one, and leftovers counted as leaks."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chaos.baremetal import FaultGroup
from tests.chaos.observed import ObservedChaosRun, ObservedPlatform
from tests.chaos.proxy import EC2, FaultProxy
from tests.chaos.tls_proxy import PVE, TlsFaultProxy
from tests.chaos.udp_proxy import UdpFaultProxy
from tests.unit.autoscaler.certs import localhost_server


class UdpEcho:
    """A loopback UDP server that answers every datagram with ``b"re:" + it``."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, client = self.sock.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            self.seen.append(data)
            self.sock.sendto(b"re:" + data, client)

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[UdpEcho]:
    server = UdpEcho()
    yield server
    server.stop()


def _ask(port: int, data: bytes, timeout: float = 1.5) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(timeout)
        client.sendto(data, ("127.0.0.1", port))
        try:
            return client.recv(2048)
        except TimeoutError:
            return None


@pytest.mark.parametrize(("kind", "reaches_backend", "answered"), [
    (None, True, True), ("drop-before", False, False), ("drop-after", True, False),
    ("hold", True, True)])
def test_udp_proxy_faults(echo: UdpEcho, kind: str | None, reaches_backend: bool,
                          answered: bool) -> None:
    proxy = UdpFaultProxy(echo.port, seed=3, rate=0.0 if kind is None else 1.0,
                          kinds=(kind or "hold",), hold_seconds=(0.5, 0.5)).start()
    try:
        started = time.monotonic()
        answer = _ask(proxy.port, b"ping")
        took = time.monotonic() - started
    finally:
        proxy.stop()
    assert echo.seen == ([b"ping"] if reaches_backend else [])
    assert answer == (b"re:ping" if answered else None)
    assert (took >= 0.5) is (kind in ("hold", "drop-before", "drop-after"))
    assert proxy.injected == ({} if kind is None else {kind: 1})


def test_a_group_of_proxies_is_set_and_counted_as_one(echo: UdpEcho) -> None:
    proxies = [UdpFaultProxy(echo.port, seed=n) for n in (1, 2)]
    group = FaultGroup(list(proxies))
    group.rate = 0.2
    proxies[0].injected["hold"] += 2
    proxies[1].injected.update({"hold": 1, "drop-after": 1})
    assert [p.rate for p in proxies] == [0.2, 0.2]
    assert group.injected == {"hold": 3, "drop-after": 1}
    for proxy in proxies:
        proxy.stop()


class CookieBackend:
    """An HTTPS server that sets a cookie and records the Cookie header it gets."""

    def __init__(self, folder: Path) -> None:
        self.ca_file, certfile, keyfile = localhost_server(folder, "backend")
        self.cookies: list[str | None] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                return

            def do_GET(self) -> None:
                backend.cookies.append(self.headers.get("Cookie"))
                body = b"hello"
                self.send_response(200)
                self.send_header("Set-Cookie", "session=secret-of-client-a; Path=/")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certfile, keyfile)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.1,), daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_tls_proxy_speaks_https_both_ways_and_keeps_no_cookies(tmp_path: Path) -> None:
    (tmp_path / "backend").mkdir()
    (tmp_path / "proxy").mkdir()
    backend = CookieBackend(tmp_path / "backend")
    proxy = TlsFaultProxy(backend.url, PVE, seed=1, cert_dir=tmp_path / "proxy",
                          backend_ca=backend.ca_file)
    proxy.start()
    try:
        assert proxy.url.startswith("https://")
        with httpx.Client(verify=ssl.create_default_context(cafile=str(proxy.cert_file)),
                          trust_env=False) as first:
            assert first.get(proxy.url + "/a").text == "hello"
        with httpx.Client(verify=ssl.create_default_context(cafile=str(proxy.cert_file)),
                          trust_env=False) as second:  # a new worker: no cookie of its own
            second.get(proxy.url + "/b")
        with pytest.raises(httpx.ConnectError):  # its certificate is not the backend's
            httpx.get(proxy.url + "/c", trust_env=False,
                      verify=ssl.create_default_context(cafile=str(backend.ca_file)))
    finally:
        proxy.stop()
        backend.stop()
    assert backend.cookies == [None, None]


def test_leftovers_count_as_leaks_after_one_refresh(tmp_path: Path) -> None:
    reads: list[str] = []
    proxy = FaultProxy("http://127.0.0.1:9", EC2, seed=1)
    platform = ObservedPlatform(
        "fake", proxy, {"type": "openstack", "auth": {"auth_url": "http://127.0.0.1:9"}}, {},
        lambda _request_id: {}, refresh=lambda: reads.append("refresh"),
        leftovers=lambda: {"disks_without_vm": 2, "cordoned": 0})
    run = ObservedChaosRun(platform, tmp_path, seed=1, factory_url="http://127.0.0.1:9")
    try:
        run.check(0)
    finally:
        run.close()
        proxy.stop()
    assert reads == ["refresh"]
    assert run.tally.leaks == 2
    assert run.tally.findings == ["round 0: parts no machine owns: {'disks_without_vm': 2}"]
