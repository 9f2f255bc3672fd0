"""An Omni join reaches an OpenStack server: in its Glance image or in its user-data."""

from __future__ import annotations

import base64
import lzma

import pytest

from talprov.openstack.images import SCHEMATIC_PROPERTY
from talprov.providers.errors import InvalidRequest
from talprov.testing.factory_artifacts import artifact
from tests.unit.join_checks import JOIN_TOKEN, MODES, assert_join_delivered, join
from tests.unit.openstack.harness import TALOS_VERSION, Harness


def booted_with(harness: Harness, request_id: str) -> tuple[str, str]:
    """(schematic id of the server's image, its user-data), read back from the fake cloud."""
    server = next(s for s in harness.cloud.servers() if s.name == request_id)
    image = next(i for i in harness.cloud.images() if i.id == server.image_id)
    schematic_id = str(image.properties[SCHEMATIC_PROPERTY])
    # The image's bytes are the factory's for that schematic (not just a label on it).
    served = artifact("openstack-amd64.raw.xz", f"{schematic_id}/{TALOS_VERSION}")
    assert served is not None
    assert image.data in (served, lzma.decompress(served))
    return schematic_id, base64.b64decode(server.user_data or "").decode()


@pytest.mark.parametrize("mode", MODES)
def test_the_join_reaches_the_server(harness: Harness, mode: str) -> None:
    # kernel_args: in the Glance image's schematic; documents: in the user-data.
    ctx = harness.provision(harness.request("srv").model_copy(update={"join": join(mode)}))
    schematic_id, user_data = booted_with(harness, "srv")
    assert_join_delivered(mode, harness.factory, schematic_id, user_data)
    assert JOIN_TOKEN not in " ".join(ctx.events) + repr(ctx.state)


def test_kernel_args_join_on_a_named_image_is_refused(harness: Harness) -> None:
    harness.cloud.add_image("talos-custom")
    request = harness.request("named", image="talos-custom").model_copy(
        update={"join": join("kernel_args")})
    with pytest.raises(InvalidRequest) as caught:
        harness.provision(request)
    assert caught.value.field == "provider_data.image"
    assert JOIN_TOKEN not in str(caught.value)
    assert harness.cloud.servers() == []
