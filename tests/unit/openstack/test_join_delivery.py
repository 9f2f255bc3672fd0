"""An Omni join reaches an OpenStack server: in its Glance image or in its user-data."""

from __future__ import annotations

import base64
import lzma

import pytest

from talprov.openstack.images import SCHEMATIC_PROPERTY
from talprov.providers.errors import InvalidRequest
from tests.emulators.factory_artifacts import artifact
from tests.unit.join_checks import (
    JOIN_TOKEN,
    assert_join_in_config,
    assert_join_in_schematic,
    assert_no_join_in_config,
    assert_no_join_in_schematic,
    join,
)
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


def test_kernel_args_join_travels_in_the_image(harness: Harness) -> None:
    ctx = harness.provision(harness.request("kargs").model_copy(
        update={"join": join("kernel_args")}))
    schematic_id, user_data = booted_with(harness, "kargs")
    assert_join_in_schematic(harness.factory, schematic_id)
    assert_no_join_in_config(user_data)
    assert JOIN_TOKEN not in " ".join(ctx.events) + repr(ctx.state)


def test_documents_join_travels_in_user_data(harness: Harness) -> None:
    harness.provision(harness.request("docs").model_copy(update={"join": join("documents")}))
    schematic_id, user_data = booted_with(harness, "docs")
    assert_no_join_in_schematic(harness.factory, schematic_id)
    assert_join_in_config(user_data)


def test_kernel_args_join_on_a_named_image_is_refused(harness: Harness) -> None:
    harness.cloud.add_image("talos-custom")
    request = harness.request("named", image="talos-custom").model_copy(
        update={"join": join("kernel_args")})
    with pytest.raises(InvalidRequest) as caught:
        harness.provision(request)
    assert caught.value.field == "provider_data.image"
    assert JOIN_TOKEN not in str(caught.value)
    assert harness.cloud.servers() == []
