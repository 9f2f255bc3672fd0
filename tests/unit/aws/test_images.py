"""Talos images on AWS: official AMI lookup, reuse of imported AMIs, and the import itself.

moto cannot import snapshots (ImportSnapshot is not implemented), so the import
stages run against botocore's Stubber with responses shaped like EC2's (their
fields are those of the EC2 API reference), while S3 is moto's real one.
"""

from __future__ import annotations

import hashlib
import lzma
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.stub import ANY, Stubber

from talprov.aws.images import (
    CustomImageImporter,
    ImageImportFailed,
    ImageKey,
    find_official_images,
)
from talprov.providers.errors import InvalidRequest
from talprov.talos.factory import ImageFactory, use_images
from talprov.talos.schematic import Schematic
from tests.emulators.moto import REGION, MotoServer, talos_ami_id
from tests.unit.aws.helpers import Harness, make_request

SCHEMATIC = "a" * 64
KEY = ImageKey("v1.13.9", "amd64", SCHEMATIC)


def test_official_lookup_ignores_other_owners_and_batches_versions(harness: Harness) -> None:
    ec2 = harness.provider.clients.ec2
    keys = [ImageKey(v, a, "x") for v in ("v1.10.7", "v1.13.9", "v9.9.9") for a in ("amd64",
                                                                                    "arm64")]
    before = harness.counter.calls["DescribeImages"]

    found = find_official_images(ec2, REGION, keys)

    assert harness.counter.calls["DescribeImages"] - before == 1
    assert {k.version for k in found} == {"v1.10.7", "v1.13.9"}
    for key, image in found.items():
        assert image.image_id == talos_ami_id(key.version, REGION, key.arch)
    # The seeded foreign copy of talos-v1.10.7-us-east-1-amd64 is never chosen.
    assert "ami-0f0f0f0f0f0f0f0f0" not in {i.image_id for i in found.values()}


def test_arm64_requests_get_the_arm64_ami(harness: Harness) -> None:
    harness.loop.add(make_request("arm-1", arch="arm64",
                                  provider_data={"instance_type": "t4g.small"}))
    harness.loop.run_until_settled()
    (raw,) = harness.instances()
    assert raw["ImageId"] == talos_ami_id("v1.13.9", REGION, "arm64")


def test_ami_override_is_used_as_is(harness: Harness) -> None:
    other = talos_ami_id("v1.10.7", REGION, "amd64")
    harness.loop.add(make_request("pinned", provider_data={"instance_type": "t3.small",
                                                           "ami": other}))
    harness.loop.run_until_settled()
    (raw,) = harness.instances()
    assert raw["ImageId"] == other


def test_custom_schematic_reuses_the_ami_imported_before(harness: Harness) -> None:
    request = make_request("ext-1", extensions=["siderolabs/iscsi-tools"])
    schematic_id = Schematic.from_request(request).id()
    ec2 = harness.raw_ec2()
    source = talos_ami_id("v1.13.9", REGION, "amd64")
    instance = ec2.run_instances(ImageId=source, MinCount=1, MaxCount=1)["Instances"][0]
    image_id = ec2.create_image(InstanceId=instance["InstanceId"], Name="imported")["ImageId"]
    ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    ec2.create_tags(Resources=[image_id], Tags=[
        {"Key": "talprov-schematic", "Value": schematic_id},
        {"Key": "talprov-talos-version", "Value": "v1.13.9"},
        {"Key": "talprov-arch", "Value": "amd64"},
    ])
    harness.loop.add(request)
    harness.loop.add(make_request("ext-2", extensions=["siderolabs/iscsi-tools"]))

    harness.loop.run_until_settled()

    images = {raw["ImageId"] for raw in harness.instances()}
    assert images == {image_id}
    assert harness.counter.calls.get("ImportSnapshot", 0) == 0


def test_custom_schematic_without_bucket_fails_naming_the_field(harness: Harness) -> None:
    harness.loop.add(make_request("ext-1", extensions=["siderolabs/iscsi-tools"]))
    harness.loop.run_until_settled()
    failed = harness.loop.requests["ext-1"].failed
    assert failed is not None
    assert "image_bucket" in failed


# ---------------------------------------------------------------------- the import, stubbed


@pytest.fixture
def raw_xz(tmp_path: Path) -> Path:
    path = tmp_path / "aws-amd64.raw.xz"
    with lzma.open(path, "wb") as handle:
        handle.write(b"\0" * 65536 + b"TALOS" + b"\0" * 4096)
    return path


class ImportRig:
    def __init__(self, server: MotoServer, tmp_path: Path) -> None:
        self.ec2 = boto3.client("ec2", region_name=REGION)
        self.stub = Stubber(self.ec2)
        self.s3 = boto3.client("s3", region_name=REGION, endpoint_url=server.url)
        self.s3.create_bucket(Bucket="talos-images")
        self.puts = 0

        def count(**_: Any) -> None:
            self.puts += 1

        self.s3.meta.events.register("before-send.s3.PutObject", count)
        self.importer = CustomImageImporter(
            self.ec2, lambda: self.s3, bucket="talos-images", prefix="talprov/",
            role_name="vmimport", work_dir=tmp_path / "work",
        )

    def no_image_yet(self) -> None:
        self.stub.add_response("describe_images", {"Images": []}, {
            "Owners": ["self"], "Filters": ANY,
        })

    def import_started(self, task: str) -> None:
        self.stub.add_response("import_snapshot", {"ImportTaskId": task}, {
            "ClientToken": ANY, "Description": ANY, "RoleName": "vmimport",
            "DiskContainer": {
                "Description": ANY, "Format": "RAW",
                "UserBucket": {"S3Bucket": "talos-images",
                               "S3Key": f"talprov/{SCHEMATIC}/v1.13.9/aws-amd64.raw"},
            },
            "TagSpecifications": ANY,
        })

    def task_status(self, task: str, status: str, **detail: str) -> None:
        self.stub.add_response("describe_import_snapshot_tasks", {"ImportSnapshotTasks": [{
            "ImportTaskId": task,
            "SnapshotTaskDetail": {"Status": status, **detail},
        }]}, {"ImportTaskIds": [task]})


@pytest.fixture
def rig(moto_server: MotoServer, tmp_path: Path) -> ImportRig:
    return ImportRig(moto_server, tmp_path)


def test_import_uploads_imports_and_registers_once(rig: ImportRig, raw_xz: Path) -> None:
    fetches: list[int] = []

    def fetch() -> Path:
        fetches.append(1)
        return raw_xz

    with rig.stub:
        rig.no_image_yet()
        rig.import_started("import-snap-0123")
        first = rig.importer.advance(KEY, None, fetch)
        assert first.task_id == "import-snap-0123"
        assert first.image is None
        assert rig.puts == 1
        head = rig.s3.head_object(Bucket="talos-images",
                                  Key=f"talprov/{SCHEMATIC}/v1.13.9/aws-amd64.raw")
        assert head["ContentLength"] == 65536 + 5 + 4096

        rig.no_image_yet()
        rig.task_status("import-snap-0123", "active", Progress="42", StatusMessage="converting")
        middle = rig.importer.advance(KEY, "import-snap-0123", fetch)
        assert (middle.task_id, middle.percent, middle.image) == ("import-snap-0123", 42, None)

        rig.no_image_yet()
        rig.task_status("import-snap-0123", "completed", SnapshotId="snap-0abc")
        rig.stub.add_response("register_image", {"ImageId": "ami-0new"}, {
            "Name": f"talprov-talos-v1.13.9-amd64-{SCHEMATIC[:16]}", "Description": ANY,
            "Architecture": "x86_64", "RootDeviceName": "/dev/xvda",
            "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {
                "SnapshotId": "snap-0abc", "VolumeType": "gp3", "DeleteOnTermination": True}}],
            "VirtualizationType": "hvm", "EnaSupport": True, "BootMode": "uefi",
            "ImdsSupport": "v2.0", "TagSpecifications": ANY,
        })
        done = rig.importer.advance(KEY, "import-snap-0123", fetch)
        assert done.image is not None
        assert done.image.image_id == "ami-0new"
        rig.stub.assert_no_pending_responses()
    assert len(fetches) == 1


def test_import_resumed_after_a_crash_reuses_upload_and_token(
    rig: ImportRig, raw_xz: Path
) -> None:
    tokens: list[str] = []

    def remember(params: dict[str, Any], **_: Any) -> None:
        if "ClientToken" in params:
            tokens.append(params["ClientToken"])

    rig.ec2.meta.events.register("provide-client-params.ec2.ImportSnapshot", remember)
    with rig.stub:
        for _ in range(2):  # the task id was lost both times: the state was not saved
            rig.no_image_yet()
            rig.import_started("import-snap-0123")
            assert rig.importer.advance(KEY, None, lambda: raw_xz).task_id == "import-snap-0123"
    assert rig.puts == 1  # the second run found the object with the same sha256
    assert len(tokens) == 2
    assert tokens[0] == tokens[1]  # so EC2 answers with the same import task


def test_register_after_a_crash_finds_the_ami_by_name(rig: ImportRig, raw_xz: Path) -> None:
    with rig.stub:
        rig.no_image_yet()
        rig.task_status("import-snap-1", "completed", SnapshotId="snap-1")
        rig.stub.add_client_error("register_image", "InvalidAMIName.Duplicate",
                                  "AMI name is already in use")
        rig.stub.add_response("describe_images", {"Images": [{
            "ImageId": "ami-0old", "State": "available", "RootDeviceName": "/dev/xvda",
        }]}, {"Owners": ["self"], "Filters": [
            {"Name": "name", "Values": [f"talprov-talos-v1.13.9-amd64-{SCHEMATIC[:16]}"]}]})
        result = rig.importer.advance(KEY, "import-snap-1", lambda: raw_xz)
    assert result.image is not None
    assert result.image.image_id == "ami-0old"


def test_failed_import_is_permanent(rig: ImportRig, raw_xz: Path) -> None:
    with rig.stub:
        rig.no_image_yet()
        rig.task_status("import-snap-2", "deleted", StatusMessage="ClientError: Disk validation")
        with pytest.raises(ImageImportFailed, match="Disk validation"):
            rig.importer.advance(KEY, "import-snap-2", lambda: raw_xz)


def test_existing_image_stops_the_import_before_any_upload(rig: ImportRig, raw_xz: Path) -> None:
    with rig.stub:
        rig.stub.add_response("describe_images", {"Images": [
            {"ImageId": "ami-0ready", "State": "available", "RootDeviceName": "/dev/xvda"}]},
            {"Owners": ["self"], "Filters": ANY})
        result = rig.importer.advance(KEY, None, lambda: raw_xz)
    assert result.image is not None
    assert result.image.image_id == "ami-0ready"
    assert rig.puts == 0


def test_importer_without_bucket_names_the_setting(tmp_path: Path, raw_xz: Path) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    importer = CustomImageImporter(ec2, lambda: boto3.client("s3", region_name=REGION),
                                   bucket=None, prefix="", role_name="vmimport",
                                   work_dir=tmp_path)
    with Stubber(ec2) as stub:
        stub.add_response("describe_images", {"Images": []})
        with pytest.raises(InvalidRequest, match="image_bucket"):
            importer.advance(KEY, None, lambda: raw_xz)



# ---------------------------------------------------------------------- the import, via the step


def factory_serving(raw_xz: Path, cache_dir: Path, seen: list[str]) -> ImageFactory:
    """The real Image Factory client, answered in memory (no network at all)."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.method == "POST" and request.url.path == "/schematics":
            schematic_id = hashlib.sha256(request.content).hexdigest()
            return httpx.Response(201, json={"id": schematic_id})
        if request.url.path.endswith("/aws-amd64.raw.xz"):
            return httpx.Response(200, stream=httpx.ByteStream(raw_xz.read_bytes()))
        return httpx.Response(404)

    return ImageFactory("http://factory.test", cache_dir, transport=httpx.MockTransport(handle))


def test_resolve_image_step_imports_once_for_two_requests(
    harness_factory: Any, raw_xz: Path
) -> None:
    harness = harness_factory(image_bucket="talos-images")
    boto3.client("s3", region_name=REGION, endpoint_url=harness.server.url).create_bucket(
        Bucket="talos-images")
    seen: list[str] = []
    use_images(harness.runtime, factory_serving(raw_xz, harness.tmp_path / "images", seen))
    stubbed = boto3.client("ec2", region_name=REGION)
    harness.provider.clients.__dict__["ec2"] = stubbed  # the cached client, replaced
    resolve = harness.provider.steps()[0].run
    requests = [make_request(f"ext-{i}", extensions=["siderolabs/iscsi-tools"])
                for i in range(2)]
    schematic_id = Schematic.from_request(requests[0]).id()
    contexts = [harness.loop._context(harness.loop.add(r), None) for r in requests]

    with Stubber(stubbed) as stub:
        stub.add_response("describe_images", {"Images": []})
        stub.add_response("import_snapshot", {"ImportTaskId": "import-snap-9"})
        stub.add_response("describe_images", {"Images": []})
        stub.add_response("describe_import_snapshot_tasks", {"ImportSnapshotTasks": [{
            "ImportTaskId": "import-snap-9",
            "SnapshotTaskDetail": {"Status": "active", "Progress": "10"}}]})
        first = [resolve(ctx) for ctx in contexts]
        assert all(r is not None for r in first)  # Retry: importing
        assert [c.state.import_task_id for c in contexts] == ["import-snap-9"] * 2

        stub.add_response("describe_images", {"Images": []})
        stub.add_response("describe_import_snapshot_tasks", {"ImportSnapshotTasks": [{
            "ImportTaskId": "import-snap-9",
            "SnapshotTaskDetail": {"Status": "completed", "SnapshotId": "snap-9"}}]})
        stub.add_response("register_image", {"ImageId": "ami-0custom"})
        stub.add_response("describe_images", {"Images": [
            {"ImageId": "ami-0custom", "State": "available", "RootDeviceName": "/dev/xvda"}]})
        assert resolve(contexts[0]) is not None  # registered, still pending
        assert resolve(contexts[0]) is None
        assert resolve(contexts[1]) is None  # from the provider's cache, no call
        stub.assert_no_pending_responses()

    assert [c.state.image_id for c in contexts] == ["ami-0custom"] * 2
    assert seen == ["POST /schematics", f"GET /image/{schematic_id}/v1.13.9/aws-amd64.raw.xz"]
