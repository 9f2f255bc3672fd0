"""An Omni join reaches an EC2 instance: in the AMI imported from its schematic or in user-data.

moto plays EC2 and S3; ``SnapshotImports`` plays VM Import on top of them and the
fake Image Factory serves the schematic's ``aws-amd64.raw.xz``, so the instance's
AMI can be traced back to the bytes uploaded for it and to the schematic they came from.
"""

from __future__ import annotations

import base64
import lzma
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from talprov.aws.images import OFFICIAL_OWNER
from talprov.talos.factory import ImageFactory, use_images
from talprov.testing.factory_artifacts import artifact
from tests.emulators.factory import EMPTY_SCHEMATIC_ID, FakeImageFactory
from tests.emulators.factory import image_factory as image_factory  # noqa: PLC0414 - fixture
from tests.emulators.moto import REGION, SnapshotImports, talos_ami_id
from tests.unit.aws.helpers import Harness, make_request
from tests.unit.join_checks import (
    JOIN_TOKEN,
    assert_join_in_config,
    assert_join_in_schematic,
    assert_no_join_in_config,
    join,
)

VERSION = "v1.13.9"  # make_request's default


@pytest.fixture
def importing(harness_factory: Callable[..., Harness],
              image_factory: FakeImageFactory) -> tuple[Harness, SnapshotImports]:
    harness = harness_factory(image_bucket="talos-images")
    boto3.client("s3", region_name=REGION, endpoint_url=harness.server.url).create_bucket(
        Bucket="talos-images")
    use_images(harness.runtime, ImageFactory(image_factory.url, harness.tmp_path / "images"))
    imports = SnapshotImports(harness.server)
    imports.attach(harness.provider.clients.ec2)
    return harness, imports


def booted_with(harness: Harness, request_id: str) -> tuple[dict[str, Any], str]:
    """(the instance's AMI as EC2 describes it, the instance's user-data), read from moto."""
    ec2 = harness.raw_ec2()
    (raw,) = [i for i in harness.instances()
              if {"Key": "talprov-request", "Value": request_id} in i.get("Tags", [])]
    (image,) = ec2.describe_images(ImageIds=[raw["ImageId"]])["Images"]
    attribute = ec2.describe_instance_attribute(InstanceId=raw["InstanceId"],
                                                Attribute="userData")
    user_data = base64.b64decode(attribute["UserData"].get("Value", "")).decode()
    return image, user_data


def test_kernel_args_join_travels_in_the_imported_ami(
    importing: tuple[Harness, SnapshotImports], image_factory: FakeImageFactory,
) -> None:
    harness, imports = importing
    harness.loop.add(make_request("kargs", join=join("kernel_args")))
    harness.loop.run_until_settled()
    assert harness.loop.requests["kargs"].failed is None

    image, user_data = booted_with(harness, "kargs")
    tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
    schematic_id = tags["talprov-schematic"]
    assert_join_in_schematic(image_factory, schematic_id)
    # The AMI's snapshot was imported from the factory's disk image of that schematic.
    imported = imports.image_import(image["ImageId"])
    served = artifact("aws-amd64.raw.xz", f"{schematic_id}/{VERSION}")
    assert served is not None
    assert imported.data == lzma.decompress(served)
    assert_no_join_in_config(user_data)
    tracked = harness.loop.requests["kargs"]
    assert JOIN_TOKEN not in " ".join(tracked.events) + repr(tracked.state)


def test_documents_join_travels_in_user_data_on_the_official_ami(
    importing: tuple[Harness, SnapshotImports], image_factory: FakeImageFactory,
) -> None:
    harness, imports = importing
    harness.loop.add(make_request("docs", join=join("documents")))
    harness.loop.run_until_settled()

    image, user_data = booted_with(harness, "docs")
    # The default schematic boots Sidero Labs' own AMI: no join can be inside it.
    assert image["ImageId"] == talos_ami_id(VERSION, REGION, "amd64")
    assert image["OwnerId"] == OFFICIAL_OWNER
    assert set(image_factory.schematics) == {EMPTY_SCHEMATIC_ID}
    assert imports.imports == {}
    assert_join_in_config(user_data)


def test_kernel_args_join_on_a_named_ami_is_refused(harness: Harness) -> None:
    pinned = talos_ami_id(VERSION, REGION, "amd64")
    harness.loop.add(make_request("pinned", join=join("kernel_args"),
                                  provider_data={"instance_type": "t3.small", "ami": pinned}))
    harness.loop.run_until_settled()
    failed = harness.loop.requests["pinned"].failed
    assert failed is not None
    assert "provider_data.ami" in failed
    assert JOIN_TOKEN not in failed
    assert harness.instances() == []
