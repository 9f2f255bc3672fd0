"""A provider on an authenticated Image Factory boots the schematic by the id the factory gave.

The stand-in plays the factory's Enterprise edition (``users`` set): it names a
schematic with its owner in it. Before, every such request failed with
SchematicIdMismatch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from talprov.openstack.images import SCHEMATIC_PROPERTY
from talprov.talos.factory import images_for
from talprov.talos.schematic import Schematic
from tests.emulators.factory import FakeImageFactory, schematic_text
from tests.emulators.openstack import FakeOpenStack
from tests.unit.openstack.harness import Harness


def test_the_image_is_the_owned_schematic_the_factory_named(
    openstack_cloud: FakeOpenStack, tmp_path: Path,
) -> None:
    with FakeImageFactory() as factory:
        factory.users = {"team-a": "factory-pw-7c1"}
        harness = Harness(openstack_cloud, factory, tmp_path)
        harness.runtime.factory_auth = ("team-a", "factory-pw-7c1")
        request = harness.request("owned").model_copy(
            update={"extensions": ("siderolabs/iscsi-tools",)})
        ctx = harness.provision(request)

    (image,) = harness.cloud.images()
    local_id = Schematic.from_request(request).id()
    (body,) = [b for sid, b in factory.schematics.items() if factory.owners.get(sid)]
    owned_id = hashlib.sha256(schematic_text(body, "team-a").encode()).hexdigest()
    assert owned_id != local_id
    # Recorded where the driver keeps the schematic id, and by the factory client.
    assert image.properties[SCHEMATIC_PROPERTY] == owned_id
    assert images_for(harness.runtime).answered_id(Schematic.from_request(request)) == owned_id
    assert factory.hits[f"/image/{owned_id}/{request.talos_version}/openstack-amd64.raw.xz"] == 1
    assert "factory-pw-7c1" not in " ".join(ctx.events) + repr(harness.runtime)
