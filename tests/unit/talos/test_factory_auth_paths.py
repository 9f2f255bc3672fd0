"""Every driver path that names a Talos image uses the id an authenticated Image
Factory answers, not the locally computed one (review finding: some path might).

The authenticated factory (siderolabs/image-factory ``handleSchematicCreate``)
puts ``owner: <user>`` in the schematic before hashing it, and serves ``/image/``
of an owned schematic to its owner only: a URL built from the local id is never
served. The stand-in does the same with ``users`` set. OpenStack's path is
checked in tests/unit/openstack/test_factory_auth.py, bare metal's in
tests/unit/baremetal/test_factory_auth.py, the CLI's in tests/unit/test_cli_image.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from talprov.providers.protocol import Runtime
from talprov.providers.types import MachineRequest
from talprov.talos.factory import ImageFactory, use_images
from talprov.talos.schematic import Schematic
from tests.emulators.factory import FakeImageFactory, schematic_id
from tests.emulators.factory import image_factory as image_factory  # noqa: PLC0414 - fixture

USER, PASSWORD = "team-a", "factory-pw-61c8"
REQUEST = MachineRequest(id="owned-1", provider="p", talos_version="v1.13.9",
                         extensions=("siderolabs/iscsi-tools",))
OWNED = schematic_id({"customization": {"systemExtensions": {
    "officialExtensions": ["siderolabs/iscsi-tools"]}}}, owner=USER)


@pytest.fixture
def factory(image_factory: FakeImageFactory, tmp_path: Path) -> Iterator[ImageFactory]:
    image_factory.users = {USER: PASSWORD}
    assert Schematic.from_request(REQUEST).id() != OWNED
    with ImageFactory(image_factory.url, tmp_path / "images", auth=(USER, PASSWORD)) as client:
        yield client


def runtime_with(factory: ImageFactory, tmp_path: Path) -> Runtime:
    runtime = Runtime(installation="test", cache_dir=tmp_path, factory_url=factory.base_url,
                      factory_auth=(USER, PASSWORD))
    use_images(runtime, factory)
    return runtime


def test_proxmox_boots_the_iso_of_the_owned_schematic(factory: ImageFactory) -> None:
    from talprov.proxmox.images import factory_iso_url

    url = factory_iso_url(factory, REQUEST)
    assert url == f"{factory.base_url}/image/{OWNED}/v1.13.9/nocloud-amd64.iso"
    assert factory.download(url).stat().st_size > 0  # served: the owner's own id


def test_vsphere_names_and_imports_the_template_of_the_owned_schematic(
        factory: ImageFactory, tmp_path: Path) -> None:
    from talprov.vmware.images import factory_ova_url, template_name

    sid, url = factory_ova_url(runtime_with(factory, tmp_path), REQUEST)
    assert sid == OWNED  # what the template's talprov-schematic records
    assert template_name(sid, "v1.13.9", "amd64").endswith(OWNED[:16])
    assert url == f"{factory.base_url}/image/{OWNED}/v1.13.9/vmware-amd64.ova"
    assert factory.download(url).stat().st_size > 0


def test_aws_imports_the_image_of_the_owned_schematic(
        factory: ImageFactory, image_factory: FakeImageFactory, tmp_path: Path) -> None:
    from talprov.aws.config import AwsConfig
    from talprov.aws.resolving import ImageResolver

    runtime = runtime_with(factory, tmp_path)
    resolver = ImageResolver(None, AwsConfig(region="us-east-1"), runtime)  # type: ignore[arg-type]
    path = resolver._fetch(Schematic.from_request(REQUEST), REQUEST)
    assert path.stat().st_size > 0
    assert image_factory.hits[f"/image/{OWNED}/v1.13.9/aws-amd64.raw.xz"] == 1
