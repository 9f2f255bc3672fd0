"""The boot server's factory proxy (proxy_factory) as ``talprov serve`` wires it:
credentials written only into ``image_factory.url``, percent-encoded ones, the
factory's TLS setting, and what a refused or failed fetch logs."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from talprov.baremetal.boot.http import BootHttp, HttpBootServer
from talprov.baremetal.config import BareMetalConfig
from talprov.baremetal.inventory import Inventory
from talprov.cli.app import App
from talprov.cli.serve import start_boot_servers
from talprov.testing.factory import FakeImageFactory
from tests.helpers import Home
from tests.unit.autoscaler.certs import localhost_server
from tests.unit.baremetal.test_cli_operator import free_port

# HTTP Basic cannot carry a user name with ":" (RFC 7617); a password can.
USER, PASSWORD = "team@a", "pw:with@signs#90b3"
BODY = {"customization": {"systemExtensions": {"officialExtensions": ["siderolabs/iscsi-tools"]}}}
KERNEL = "v1.13.9/kernel-amd64"


def _factory(tls: ssl.SSLContext | None = None) -> FakeImageFactory:
    fake = FakeImageFactory(tls=tls)
    fake.users = {USER: PASSWORD}
    return fake.start()


@pytest.fixture
def authenticated() -> Iterator[FakeImageFactory]:
    fake = _factory()
    yield fake
    fake.stop()


def _in_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{quote(USER, safe='')}:{quote(PASSWORD, safe='')}@{rest}"


def _fetch(app: BootHttp, schematic: str) -> httpx.Response:
    server = HttpBootServer(app, "127.0.0.1", 0)
    server.start()
    try:
        return httpx.get(f"http://127.0.0.1:{server.port}/assets/{schematic}/{KERNEL}",
                         timeout=30)
    finally:
        server.stop()
        app.close()


def test_talprov_serve_proxies_with_credentials_written_only_into_the_url(
        home: Home, authenticated: FakeImageFactory, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing covered start_boot_servers handing the runtime's credentials on; a
    user and password with '@' and ':' percent-encoded in the URL are decoded."""
    owned, _ = authenticated.register(BODY, owner=USER)
    port = free_port()
    home.providers["metal"] = {
        "type": "baremetal", "inventory": str(home.root / "inventory.sqlite"),
        "boot_url": f"http://127.0.0.1:{port}", "listen_address": "127.0.0.1",
        "listen_port": port, "tftp_enabled": False, "proxy_factory": True}
    home.write_config(image_factory={"url": _in_url(authenticated.url)})
    app = App(config_path=str(home.config_path), store_url=None)
    (boot,) = start_boot_servers(app)
    try:
        assert PASSWORD not in repr(boot)
        assert boot.http is not None
        reply = httpx.get(f"http://127.0.0.1:{boot.http.port}/assets/{owned}/{KERNEL}",
                          timeout=30)
    finally:
        boot.stop()
        app.close()
    assert reply.status_code == 200, reply.text
    served = authenticated.content_for(f"/image/{owned}/{KERNEL}", USER)
    assert served is not None
    assert reply.content == served[0]
    assert PASSWORD not in capsys.readouterr().out


def _config(tmp_path: Path) -> BareMetalConfig:
    return BareMetalConfig(inventory=str(tmp_path / "inventory.sqlite"),
                           boot_url="http://127.0.0.1:8081", proxy_factory=True)


def test_the_proxy_verifies_the_factorys_certificate(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """factory_verify was never checked: a self-signed factory is refused (502, one
    log line) with verification on, and served with its CA given."""
    ca_file, cert, key = localhost_server(tmp_path, "factory")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    fake = _factory(tls)
    try:
        assert fake.url.startswith("https://")
        owned, _ = fake.register(BODY, owner=USER)
        config = _config(tmp_path)
        with caplog.at_level(logging.WARNING, logger="talprov.baremetal.boot.http"):
            refused = _fetch(BootHttp(config, _inventory(tmp_path), fake.url,
                                      factory_auth=(USER, PASSWORD)), owned)
        trusted = _fetch(BootHttp(config, _inventory(tmp_path), fake.url,
                                  factory_auth=(USER, PASSWORD),
                                  factory_verify=str(ca_file)), owned)
    finally:
        fake.stop()
    assert refused.status_code == 502
    assert any("TLS verification failed" in r.getMessage() for r in caplog.records), caplog.text
    assert trusted.status_code == 200, trusted.text


def test_a_refused_fetch_is_logged_once_per_status_without_credentials(
        tmp_path: Path, authenticated: FakeImageFactory, caplog: pytest.LogCaptureFixture,
) -> None:
    """Before, wrong credentials (401) became a bare 502 'factory error' with no log
    line, looking the same as a missing image."""
    owned, _ = authenticated.register(BODY, owner=USER)
    app = BootHttp(_config(tmp_path), _inventory(tmp_path), authenticated.url,
                   factory_auth=(USER, "wrong-password-77"))
    server = HttpBootServer(app, "127.0.0.1", 0)
    server.start()
    try:
        with caplog.at_level(logging.WARNING, logger="talprov.baremetal.boot.http"):
            replies = [httpx.get(f"http://127.0.0.1:{server.port}/assets/{owned}/{KERNEL}",
                                 timeout=30) for _ in range(3)]
    finally:
        server.stop()
        app.close()
    assert [r.status_code for r in replies] == [502] * 3
    said = [r.getMessage() for r in caplog.records if "401" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert "wrong-password-77" not in caplog.text
    assert USER not in caplog.text


def _inventory(tmp_path: Path) -> Inventory:
    return Inventory(str(tmp_path / "inventory.sqlite"))
