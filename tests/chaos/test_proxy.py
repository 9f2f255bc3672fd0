"""The chaos suite's own parts do what they claim: the proxy's faults, its
replay of EC2 ClientTokens, its seeding, and the round checks' counting."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from talprov.providers.types import MachineRequest
from tests.chaos.proxy import EC2, KINDS, OPENSTACK, Ec2ClientTokens, FaultProxy
from tests.chaos.rounds import ChaosRun, Platform


class Backend:
    """A loopback HTTP server that counts the calls it answers."""

    def __init__(self) -> None:
        self.hits = 0
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                return

            def _reply(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                backend.hits += 1
                body = f"hit {backend.hits} at {backend.url}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _reply

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.1,), daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.stop()


def _proxy(backend: Backend, kind: str, **extra: Any) -> FaultProxy:
    return FaultProxy(backend.url, OPENSTACK, seed=7, rate=1.0, kinds=(kind,),
                      hold_seconds=(0.4, 0.4), **extra).start()


@pytest.mark.parametrize(("kind", "reaches_backend"), [
    ("error-before", False), ("error-after", True), ("throttle", False),
])
def test_error_answers_before_and_after_the_backend(backend: Backend, kind: str,
                                                    reaches_backend: bool) -> None:
    proxy = _proxy(backend, kind)
    try:
        answer = httpx.get(proxy.url + "/x")
    finally:
        proxy.stop()
    assert answer.status_code == (429 if kind == "throttle" else 503)
    assert backend.hits == (1 if reaches_backend else 0)
    assert (answer.headers.get("Retry-After") == "1") is (kind == "throttle")
    assert proxy.injected == {kind: 1}


@pytest.mark.parametrize(("kind", "reaches_backend"), [("drop-before", False),
                                                        ("drop-after", True)])
def test_dropped_connections(backend: Backend, kind: str, reaches_backend: bool) -> None:
    proxy = _proxy(backend, kind)
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(proxy.url + "/x")
    finally:
        proxy.stop()
    assert backend.hits == (1 if reaches_backend else 0)


def test_a_held_answer_arrives_late_and_urls_point_at_the_proxy(backend: Backend) -> None:
    proxy = _proxy(backend, "hold")
    try:
        started = time.monotonic()
        answer = httpx.get(proxy.url + "/x")
        took = time.monotonic() - started
    finally:
        proxy.stop()
    assert answer.status_code == 200
    assert took >= 0.4
    assert answer.text == f"hit 1 at {proxy.url}"


def test_a_seed_replays_the_same_faults(backend: Backend) -> None:
    def sequence(seed: int) -> list[str | None]:
        proxy = FaultProxy(backend.url, EC2, seed=seed, rate=0.5)
        try:
            return [proxy.choose("GET", "/")[0] for _ in range(40)]
        finally:
            proxy.stop()

    assert sequence(3) == sequence(3)
    assert sequence(3) != sequence(4)
    assert set(sequence(3)) - {None} <= set(KINDS)


def test_a_repeated_client_token_gets_the_first_answer(backend: Backend) -> None:
    tokens = Ec2ClientTokens()
    proxy = FaultProxy(backend.url, EC2, seed=1, client_tokens=tokens).start()
    body = {"Action": "RunInstances", "ClientToken": "tok-1", "ImageId": "ami-1"}
    try:
        first = httpx.post(proxy.url + "/", data=body)
        again = httpx.post(proxy.url + "/", data=body)
        other = httpx.post(proxy.url + "/", data={**body, "ClientToken": "tok-2"})
    finally:
        proxy.stop()
    assert first.text == again.text
    assert other.text != first.text
    assert backend.hits == 2
    assert tokens.replayed == 1


def test_the_round_checks_count_duplicates_leaks_stuck_and_lost(
        backend: Backend, tmp_path: Path) -> None:
    held: dict[str, dict[str, int]] = {"dup": {"machines": 2}, "gone": {"ports": 1},
                                       "pending": {}}
    platform = Platform("fake", FaultProxy(backend.url, EC2, seed=1),
                        {"type": "openstack", "auth": {"auth_url": backend.url}},
                        {}, lambda request_id: held.get(request_id, {}))
    run = ChaosRun(platform, tmp_path, seed=1, factory_url=backend.url)
    try:
        for request_id in ("dup", "gone", "pending"):
            run.store.create_request(MachineRequest(
                id=request_id, provider="chaos", talos_version="v1.11.5",
                machine_config=SecretStr("version: v1alpha1\n")))
        run.created = ["dup", "gone", "pending", "vanished"]
        record = run.store.get_request("gone")
        assert record is not None
        run.store.request_deletion("gone")
        run.store.forget_request("gone", actor="test", reason="x")
        run.check(0)
    finally:
        run.close()
        platform.proxy.stop()
    tally = run.tally
    assert (tally.duplicates, tally.stuck) == (1, 2)  # dup (pending too), pending
    assert tally.lost == 2  # "vanished" never stored; "gone" forgotten from the store
    assert tally.leaks == 0
