"""The boot server against a hostile client on the provisioning network: a silent
TLS client must not stall the HTTPS config endpoint, idle connections are dropped,
log lines cannot be forged or carry a token, and asset paths cannot leave the mirror.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from pathlib import Path

import httpx
import pytest

from talprov.baremetal.boot import http as boot_http
from talprov.baremetal.boot.http import BootHttp, HttpBootServer
from talprov.baremetal.config import BareMetalConfig
from talprov.baremetal.inventory import Inventory
from talprov.demo_platforms.aws import free_port as free_tcp_port
from tests.unit.baremetal.test_boot_server import MAC, SID, UUID, allocate, config
from tests.unit.baremetal.test_boot_server import served as served  # noqa: PLC0414 - fixture

Served = tuple[str, Inventory, BareMetalConfig]


def test_a_silent_tls_client_does_not_stall_the_config_endpoint(tmp_path: Path) -> None:
    # The TLS handshake used to run in the accept loop: one client that connects
    # and sends nothing kept every machine from fetching its config.
    from talprov.baremetal.boot.server import config_tls_context
    from tests.unit.service.test_serve import _self_signed

    cert, key = _self_signed(tmp_path)
    port = free_tcp_port()
    cfg = config(tmp_path, config_tls={"cert": str(cert), "key": str(key), "port": port})
    assert cfg.config_tls is not None
    app = BootHttp(cfg, Inventory(cfg.inventory), "https://factory.invalid")
    secure = HttpBootServer(app, "127.0.0.1", port, tls=config_tls_context(cfg.config_tls))
    secure.start()
    silent = socket.create_connection(("127.0.0.1", port))
    try:
        time.sleep(0.2)  # the server has accepted the silent connection
        context = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(verify=context, timeout=3) as client:
            answer = client.get(f"https://127.0.0.1:{port}/config/{UUID}/nope")
        assert answer.status_code == 403
    finally:
        silent.close()
        secure.stop()


def test_idle_connections_are_dropped(served: Served,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Each connection holds a thread; one that never finishes its request line
    # must not hold it for ever.
    monkeypatch.setattr(boot_http, "IDLE_SECONDS", 0.5)
    base, _, _ = served
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as idle:
        idle.sendall(b"GET /boot.ipxe HTTP/1.1\r\n")  # and never the rest
        idle.settimeout(5)
        try:
            data = idle.recv(1024)
        except TimeoutError:
            pytest.fail("the server kept an idle connection (and its thread) for 5 s")
        assert data == b""  # closed without an answer


def test_log_lines_cannot_be_forged_or_carry_a_token(
        served: Served, caplog: pytest.LogCaptureFixture) -> None:
    base, inventory, cfg = served
    allocate(inventory, cfg)
    port = int(base.rsplit(":", 1)[1])
    caplog.set_level(logging.INFO, logger="talprov.baremetal.boot.http")
    forged = "x\nWARNING boot server alert config-refetch: machine m0"
    httpx.get(f"{base}/boot.ipxe", params={"uuid": forged, "mac": MAC})
    script = httpx.get(f"{base}/boot.ipxe", params={"uuid": UUID, "mac": MAC}).text
    token = next(a for a in script.split() if a.startswith("talos.config=")).rsplit("/", 1)[1]
    # A malformed request line with a live token: the error log must mask it too.
    with socket.create_connection(("127.0.0.1", port)) as raw:
        raw.sendall(f"GET /config/{UUID}/{token} x HTTP/1.1\r\n\r\n".encode())
        raw.settimeout(5)
        assert raw.recv(1024).startswith(b"HTTP/")
    lines = [r.getMessage() for r in caplog.records]
    assert lines, "nothing was logged"
    assert not any("\n" in line for line in lines), lines
    assert not any(token in line for line in lines), lines


@pytest.mark.parametrize("path", [
    "/assets/..%2F..%2Fsecret.txt/v1.13.9/kernel-amd64",
    f"/assets/{SID}/..%2F..%2F..%2Fsecret.txt/kernel-amd64",
    f"/assets/{SID}/v1.13.9/..%2F..%2F..%2Fsecret.txt",
    f"/assets/{SID}/v1.13.9/%2e%2e",
    "/assets/../../secret.txt",
])
def test_asset_paths_cannot_leave_the_mirror(served: Served, path: str,
                                             tmp_path: Path) -> None:
    base, _, _ = served
    (tmp_path / "secret.txt").write_text("not for machines")
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as raw:  # no client-side normalising
        raw.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        raw.settimeout(5)
        reply = b""
        while chunk := raw.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 404"), reply[:80]
    assert b"not for machines" not in reply
    ok = httpx.get(f"{base}/assets/{SID}/v1.13.9/kernel-amd64")
    assert (ok.status_code, ok.content) == (200, b"K" * 5000)


def test_unknown_machines_cannot_flood_the_inventory(
        served: Served, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # Anyone on the segment can make up UUIDs and MACs; each used to become a row
    # (and an audit entry) for ever.
    monkeypatch.setattr(boot_http, "MAX_DISCOVERED", 3)
    base, inventory, _ = served
    macs = [f"52:54:00:aa:00:{n:02x}" for n in range(6)]
    for mac in macs:
        reply = httpx.get(f"{base}/boot.ipxe", params={"mac": mac})
        assert (reply.status_code, "kernel" in reply.text) == (200, False)
    found = [m for m in inventory.machines() if m.name.startswith("discovered-")]
    assert len(found) == 3
    assert [a.event for a in inventory.audit()].count("discovered") == 3
    # A machine recorded before the limit is still recognised.
    httpx.get(f"{base}/boot.ipxe", params={"mac": macs[0]})
    assert [a.event for a in inventory.audit()].count("discovered") == 4
    full = [r for r in caplog.records if "discovered machines" in r.getMessage()]
    assert len(full) == 1, "the limit is logged once, not per request"


def test_one_source_address_cannot_flood_the_audit_log(
        served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    # Boot scripts and reports each write an audit entry; one address (a PXE machine
    # makes about six requests per boot) is held to a rate, kernels excepted.
    monkeypatch.setattr(boot_http, "REQUESTS_PER_MINUTE", 5)
    base, inventory, _ = served
    port = int(base.rsplit(":", 1)[1])

    def statuses(source: str, path: str, times: int) -> list[int]:
        transport = httpx.HTTPTransport(local_address=source)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", transport=transport) as client:
            return [client.get(path).status_code for _ in range(times)]

    report = f"/report/{UUID}?event=flood"
    assert statuses("127.0.0.2", report, 7) == [200] * 5 + [429] * 2
    assert [a.event for a in inventory.audit()].count("report-flood") == 5
    assert statuses("127.0.0.3", report, 1) == [200]  # another machine is not held up
    assert statuses("127.0.0.2", f"/assets/{SID}/v1.13.9/kernel-amd64", 2) == [200, 200]
