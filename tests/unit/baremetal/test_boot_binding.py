"""A machine's boot token and config go only to the address that fetched its boot
script, and (with the DHCP responder on) only after that machine's DHCP exchange
(issue 15, hole 4). Other callers use other loopback source addresses
(127.0.0.2, 127.0.0.3: all of 127/8 is loopback)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import httpx
import pytest

from talprov.baremetal.boot import dhcp
from talprov.baremetal.boot.binding import DhcpLedger
from talprov.baremetal.boot.http import BootHttp, HttpBootServer
from talprov.baremetal.config import DhcpConfig
from talprov.baremetal.inventory import BmcInfo, Inventory
from talprov.demo_platforms.aws import free_port as free_tcp_port
from tests.emulators.baremetal.rig import free_udp_port
from tests.unit.baremetal.test_boot_server import MAC, SID, UUID, allocate, config, pxe_packet


@dataclass
class Served:
    base: str
    app: BootHttp
    inventory: Inventory

    def client(self, source: str) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=5,
                            transport=httpx.HTTPTransport(local_address=source))

    def config_path(self, source: str) -> str | None:
        with self.client(source) as client:
            script = client.get("/boot.ipxe", params={"uuid": UUID, "mac": MAC}).text
        urls = [a for a in script.split() if a.startswith("talos.config=")]
        if not urls:
            return None
        return urls[0].split("=", 1)[1].replace(self.app.config.boot_url, "")

    def fetch(self, source: str, path: str) -> int:
        with self.client(source) as client:
            return client.get(path).status_code


def _serve(tmp_path: Path, ledger: DhcpLedger | None) -> Iterator[Served]:
    cfg = config(tmp_path)
    inventory = Inventory(cfg.inventory)
    inventory.add("m0", uuid=UUID, macs=[MAC], bmc=BmcInfo())
    (tmp_path / "mirror" / SID / "v1.11.5").mkdir(parents=True)
    app = BootHttp(cfg, inventory, "https://factory.invalid", ledger=ledger)
    # 0.0.0.0 would be routable; 127.0.0.1 is reached from every 127/8 source.
    server = HttpBootServer(app, "127.0.0.1", 0)
    server.start()
    try:
        allocate(inventory, cfg)
        yield Served(f"http://127.0.0.1:{server.port}", app, inventory)
    finally:
        server.stop()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    yield from _serve(tmp_path, None)


def test_a_config_fetch_from_another_address_is_refused_and_alerted(served: Served) -> None:
    path = served.config_path("127.0.0.1")
    assert path is not None
    assert served.fetch("127.0.0.2", path) == 403
    assert served.app.alerts.counts["config-wrong-address"] == 1
    assert "config-wrong-address" in [a.event for a in served.inventory.audit()]
    # The real machine still gets its config.
    assert served.fetch("127.0.0.1", path) == 200


def test_a_second_use_of_a_token_is_alerted(served: Served) -> None:
    path = served.config_path("127.0.0.1")
    assert path is not None
    assert served.fetch("127.0.0.1", path) == 200
    assert served.fetch("127.0.0.1", path) == 403
    assert served.app.alerts.counts["config-refetch"] == 1
    # Guessed tokens are refused without an alert: they are not a stolen token.
    assert served.fetch("127.0.0.2", path[:-4] + "abcd") == 403
    assert sum(served.app.alerts.counts.values()) == 1


def test_without_a_dhcp_exchange_no_install_token_is_handed_out(tmp_path: Path) -> None:
    ledger = DhcpLedger()
    for served in _serve(tmp_path, ledger):
        assert served.config_path("127.0.0.2") is None
        assert served.app.alerts.counts["script-without-dhcp"] == 1
        ledger.record(MAC, None)  # a proxy-mode exchange: no address to compare
        assert served.config_path("127.0.0.2") is not None


def test_a_leased_address_must_be_the_scripts_source(tmp_path: Path) -> None:
    ledger = DhcpLedger()
    for served in _serve(tmp_path, ledger):
        ledger.record(MAC, IPv4Address("127.0.0.3"))
        assert served.config_path("127.0.0.2") is None
        path = served.config_path("127.0.0.3")
        assert path is not None
        assert served.fetch("127.0.0.2", path) == 403
        assert served.fetch("127.0.0.3", path) == 200


def test_an_old_exchange_no_longer_vouches() -> None:
    now = [0.0]
    ledger = DhcpLedger(clock=lambda: now[0], window=300)
    ledger.record(MAC, None)
    assert ledger.vouches_for([MAC.upper()], "127.0.0.9")
    now[0] = 301
    assert not ledger.vouches_for([MAC], "127.0.0.9")


def test_the_responder_records_its_exchanges() -> None:
    port = free_udp_port()
    cfg = DhcpConfig(interface_address=IPv4Address("10.0.0.5"), port=port, proxy_port=port + 1,
                     range_start=IPv4Address("10.0.0.100"), range_end=IPv4Address("10.0.0.101"))
    ledger = DhcpLedger()
    responder = dhcp.DhcpResponder(cfg, "http://10.0.0.5:8081", listen_address="127.0.0.1",
                                   ledger=ledger)
    packet = bytearray(pxe_packet(dhcp.DISCOVER, ipxe=True))
    packet[12:16] = bytes([127, 0, 0, 1])  # ciaddr: the answer comes back by unicast
    responder.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.settimeout(3)
            client.sendto(bytes(packet), ("127.0.0.1", port))
            client.recvfrom(4096)
    finally:
        responder.stop()
    assert ledger.vouches_for([MAC], "10.0.0.100")
    assert not ledger.vouches_for([MAC], "10.0.0.101")


def test_with_config_tls_configs_go_over_https_only(tmp_path: Path) -> None:
    from talprov.baremetal.boot.server import config_tls_context
    from tests.unit.service.test_serve import _self_signed

    cert, key = _self_signed(tmp_path)
    tls_port = free_tcp_port()
    cfg = config(tmp_path, config_tls={"cert": str(cert), "key": str(key), "port": tls_port})
    assert cfg.config_tls is not None
    inventory = Inventory(cfg.inventory)
    inventory.add("m0", uuid=UUID, macs=[MAC], bmc=BmcInfo())
    app = BootHttp(cfg, inventory, "https://factory.invalid")
    plain = HttpBootServer(app, "127.0.0.1", 0)
    secure = HttpBootServer(app, "127.0.0.1", tls_port, tls=config_tls_context(cfg.config_tls))
    plain.start()
    secure.start()
    try:
        allocate(inventory, cfg)
        base = f"http://127.0.0.1:{plain.port}"
        script = httpx.get(f"{base}/boot.ipxe", params={"uuid": UUID, "mac": MAC}).text
        url = next(a for a in script.split() if a.startswith("talos.config=")).split("=", 1)[1]
        assert url.startswith(f"https://127.0.0.1:{tls_port}/config/{UUID}/")
        path = url.split(str(tls_port), 1)[1]
        assert httpx.get(base + path).status_code == 404  # never in clear text
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as client:
            assert client.get(f"https://127.0.0.1:{tls_port}/boot.ipxe").status_code == 404
            fetched = client.get(url)
        assert (fetched.status_code, fetched.text) == (200, "the-config")
    finally:
        secure.stop()
        plain.stop()
