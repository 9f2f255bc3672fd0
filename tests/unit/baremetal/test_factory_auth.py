"""Bare metal on an authenticated Image Factory (its Enterprise edition).

Facts from siderolabs/image-factory (docs/api.md, docs/authentication.md,
internal/frontend/http/http.go and configuration.go): ``POST /schematics`` sets
the schematic's ``owner`` to the caller and names it by the hash of that body;
``GET /image/<id>/...`` needs the credentials too and serves a schematic to its
owner only (an id without an owner, such as the locally computed one, is refused
to everybody). The machines' iPXE has no credentials, so the kernel and
initramfs reach them through the boot server (``proxy_factory``), which fetches
with the factory's credentials, or from a mirror.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from talprov.baremetal.boot.http import BootHttp, HttpBootServer
from talprov.baremetal.boot.server import BootServer
from talprov.providers.types import MachineRequest, Stage
from talprov.talos.schematic import Schematic
from tests.emulators.factory import FakeImageFactory, schematic_id
from tests.emulators.factory import image_factory as image_factory  # noqa: PLC0414 - fixture
from tests.helpers import WORKER_CONFIG
from tests.unit.baremetal.test_provider import Setup

USER, PASSWORD = "team-a", "factory-pw-90b3"
EXTENSIONS = ("siderolabs/iscsi-tools",)


@pytest.fixture
def authenticated(image_factory: FakeImageFactory) -> FakeImageFactory:
    image_factory.users = {USER: PASSWORD}
    return image_factory


def owned_id() -> str:
    body = {"customization": {"systemExtensions": {"officialExtensions": list(EXTENSIONS)}}}
    return schematic_id(body, owner=USER)


def provisioned(setup: Setup) -> tuple[str, str]:
    """Provision one request with EXTENSIONS; the kernel and initramfs URLs of its plan."""
    setup.provider.runtime.factory_auth = (USER, PASSWORD)
    setup.store.create_request(MachineRequest(
        id="r1", provider="bm", talos_version="v1.13.9", extensions=EXTENSIONS,
        machine_config=SecretStr(WORKER_CONFIG), provider_data={"machine": "m0"}))
    record = setup.settle("r1", Stage.PROVISIONED, Stage.FAILED)
    assert record.stage == Stage.PROVISIONED, record.error
    machine = setup.inventory.get("m0")
    assert machine is not None
    assert machine.boot is not None
    return machine.boot.kernel_url, machine.boot.initramfs_url


def test_a_machine_boots_the_owned_schematic_through_the_boot_servers_proxy(
        tmp_path: Path, authenticated: FakeImageFactory) -> None:
    """Before, the boot server's proxy fetched the factory without credentials: every
    kernel was a 401 upstream and a 502 to the machine."""
    setup = Setup(tmp_path, factory_url=authenticated.url, mirror_dir=None,
                  proxy_factory=True)
    kernel_url, initramfs_url = provisioned(setup)
    owned = owned_id()
    assert owned != Schematic(official_extensions=EXTENSIONS).id()
    assert f"/assets/{owned}/v1.13.9/" in kernel_url

    app = BootHttp(setup.config, setup.inventory, authenticated.url,
                   factory_auth=(USER, PASSWORD))
    server = HttpBootServer(app, "127.0.0.1", 0)
    server.start()
    try:
        here = f"http://127.0.0.1:{server.port}"
        got = [httpx.get(url.replace(setup.config.boot_url, here)) for url in
               (kernel_url, initramfs_url)]
    finally:
        server.stop()
    for reply, name in zip(got, ("kernel-amd64", "initramfs-amd64.xz"), strict=True):
        assert reply.status_code == 200, reply.text
        served = authenticated.content_for(f"/image/{owned}/v1.13.9/{name}", USER)
        assert served is not None
        assert reply.content == served[0]
    # Fetched by the owner's credentials; the password never left for the machines.
    assert PASSWORD not in kernel_url + initramfs_url


def test_the_boot_server_takes_the_factory_credentials_it_is_given(
        tmp_path: Path, authenticated: FakeImageFactory) -> None:
    """`talprov serve` and `baremetal serve` build a BootServer: its proxy uses the
    credentials handed to it, and credentials written into the URL alike."""
    setup = Setup(tmp_path, factory_url=authenticated.url, mirror_dir=None,
                  proxy_factory=True)
    kernel_url, _ = provisioned(setup)
    for url, auth in ((authenticated.url, (USER, PASSWORD)),
                      (authenticated.url.replace("http://", f"http://{USER}:{PASSWORD}@"),
                       None)):
        config = setup.config.model_copy(update={"listen_address": "127.0.0.1",
                                                 "listen_port": 0, "tftp_enabled": False})
        boot = BootServer(config, url, factory_auth=auth)
        boot.start()
        try:
            assert boot.http is not None
            here = f"http://127.0.0.1:{boot.http.port}"
            reply = httpx.get(kernel_url.replace(setup.config.boot_url, here))
        finally:
            boot.stop()
        assert reply.status_code == 200, reply.text


def test_without_a_proxy_or_mirror_the_instance_waits_for_its_operator(
        tmp_path: Path, authenticated: FakeImageFactory) -> None:
    """iPXE cannot authenticate to the factory: handing machines the factory's URLs
    would boot nothing (401) and fail each request after install_timeout. The
    instance is unusable until the operator sets proxy_factory or mirror_dir; the
    request is not failed for it."""
    setup = Setup(tmp_path, factory_url=authenticated.url, mirror_dir=None,
                  install_timeout=120.0)
    setup.provider.runtime.factory_auth = (USER, PASSWORD)
    setup.store.create_request(MachineRequest(
        id="r1", provider="bm", talos_version="v1.13.9", extensions=EXTENSIONS,
        machine_config=SecretStr(WORKER_CONFIG), provider_data={"machine": "m0"}))
    setup.reconciler.run_until(lambda: False, timeout=600, interval=1.0)
    record = setup.store.get_request("r1")
    assert record is not None
    assert record.stage not in (Stage.PROVISIONED, Stage.FAILED)
    assert "proxy_factory" in (record.error or ""), record.error
    assert PASSWORD not in (record.error or "")
    # No machine was switched on to boot what it cannot fetch.
    assert "m0" not in setup.machines or "boot-pxe" not in setup.machines["m0"].calls


def test_baremetal_serve_gives_its_proxy_the_credentials_of_talprov_yaml(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from talprov.baremetal.config import BareMetalConfig
    from talprov.cli.app import App
    from talprov.cli.baremetal import proxy_credentials
    from talprov.errors import ConfigError

    path = tmp_path / "talprov.yaml"
    path.write_text("image_factory:\n  url: https://factory.example.test\n"
                    "  username: team-a\n  password: ${env:TP_BM_FACTORY_PW}\n")
    proxied = BareMetalConfig.model_validate({
        "inventory": str(tmp_path / "inv.sqlite"), "boot_url": "http://127.0.0.1:1",
        "proxy_factory": True})
    monkeypatch.setenv("TP_BM_FACTORY_PW", PASSWORD)
    app = App(config_path=str(path), store_url=None)
    assert proxy_credentials(app, None, proxied) == ((USER, PASSWORD), True)
    assert proxy_credentials(app, "block.yaml", proxied) == (None, True)
    monkeypatch.delenv("TP_BM_FACTORY_PW")
    with pytest.raises(ConfigError) as caught:
        proxy_credentials(App(config_path=str(path), store_url=None), None, proxied)
    assert "image_factory" in caught.value.where
