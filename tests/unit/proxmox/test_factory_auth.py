"""Proxmox on an authenticated Image Factory (its Enterprise edition).

The factory (siderolabs/image-factory docs/api.md, ``GET /image/...``: Auth
required, ownership enforced) serves an owned schematic's ISO to its user only;
a node's ``download-url`` carries no credentials, so it would be refused. With
``iso_transfer: auto`` talprov uploads the ISO from its cache at once; with
``download`` the instance is unusable until the operator changes the setting.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from talprov.providers.errors import InstanceUnavailable
from talprov.providers.protocol import Runtime
from talprov.providers.types import Owner
from talprov.proxmox.images import iso_file_name
from talprov.proxmox.provider import ProxmoxProvider
from talprov.talos.factory import images_for
from talprov.testing import FakeClock
from tests.driving import context, provision
from tests.emulators.factory import FakeImageFactory, schematic_id
from tests.emulators.factory import image_factory as image_factory  # noqa: PLC0414 - fixture
from tests.emulators.fakepve import FakePveServer
from tests.unit.proxmox.conftest import machine_request, password_config

USER, PASSWORD = "team-a", "factory-pw-1e7a"


@pytest.fixture
def authenticated(image_factory: FakeImageFactory, runtime: Runtime) -> FakeImageFactory:
    image_factory.users = {USER: PASSWORD}
    runtime.factory_url = image_factory.url
    runtime.factory_auth = (USER, PASSWORD)
    return image_factory


def test_auto_uploads_the_owned_iso_instead_of_a_download_the_factory_would_refuse(
        fakepve: FakePveServer, runtime: Runtime, clock: FakeClock, owner: Owner,
        authenticated: FakeImageFactory) -> None:
    """Before, the node was told to download the ISO (refused by a real factory: a
    PVE task failing after its timeout, then the upload)."""
    provider = ProxmoxProvider("lab", password_config(fakepve), runtime)
    request = machine_request("owned", talos_version="v1.13.9",
                              extensions=["siderolabs/iscsi-tools"])
    ctx = context(provider, request, owner)
    provision(provider, [ctx], clock)
    owned = schematic_id({"customization": {"systemExtensions": {
        "officialExtensions": ["siderolabs/iscsi-tools"]}}}, owner=USER)
    url = f"{authenticated.url}/image/{owned}/v1.13.9/nocloud-amd64.iso"
    assert ctx.state.iso_volume == f"local:iso/{iso_file_name(url)}"
    assert authenticated.hits[f"/image/{owned}/v1.13.9/nocloud-amd64.iso"] == 1
    assert any(e.startswith("uploaded Talos ISO") for e in ctx.events), ctx.events
    assert not any("downloads Talos ISO" in e for e in ctx.events), ctx.events


def test_download_waits_for_the_operator(
        fakepve: FakePveServer, runtime: Runtime, clock: FakeClock, owner: Owner,
        authenticated: FakeImageFactory) -> None:
    provider = ProxmoxProvider("lab", password_config(fakepve, iso_transfer="download"),
                               runtime)
    ctx = context(provider, machine_request("owned", talos_version="v1.13.9"), owner)
    with pytest.raises(InstanceUnavailable) as caught:
        provision(provider, [ctx], clock)
    assert "iso_transfer" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_one_isos_upload_does_not_wait_for_anothers(
        fakepve: FakePveServer, runtime: Runtime, clock: FakeClock, owner: Owner,
        authenticated: FakeImageFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """With an authenticated factory every ISO goes up from the cache (a download,
    then an upload); before, both ran under the provider's one lock, so a second
    ISO waited for the whole transfer of the first."""
    provider = ProxmoxProvider("lab", password_config(fakepve), runtime)
    first = context(provider, machine_request("first", talos_version="v1.13.9"), owner)
    second = context(provider, machine_request("second", talos_version="v1.12.4"), owner)
    factory = images_for(runtime)
    download = factory.download
    first_downloading, second_done = threading.Event(), threading.Event()
    waited: list[bool] = []

    def held_download(url: str, *args: object, **kwargs: object) -> Path:
        if "/v1.13.9/" in url:
            first_downloading.set()
            waited.append(second_done.wait(timeout=10))  # False: the second one waited
        return download(url, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(factory, "download", held_download)
    worker = threading.Thread(target=provision, args=(provider, [first], clock))
    worker.start()
    assert first_downloading.wait(timeout=10)
    provision(provider, [second], clock)
    second_done.set()
    worker.join(timeout=30)
    assert waited == [True]
    assert first.state.iso_volume is not None
    assert second.state.iso_volume is not None
