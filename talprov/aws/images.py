"""How a Talos image becomes an AMI.

* Default schematic: the official AMI that Sidero Labs publishes from account
  540036508848 under the name ``talos-<version>-<region>-<arch>``.
* Any other schematic: the Image Factory's ``aws-<arch>.raw.xz``, decompressed,
  uploaded to S3, imported with ImportSnapshot and registered as a UEFI/ENA AMI
  tagged with the schematic id, Talos version and arch. Every later request finds
  it again by those tags before anything is imported, and each stage of the
  import is idempotent on its own (a stable S3 key, a ClientToken on
  ImportSnapshot, a deterministic AMI name on RegisterImage), so a crash at any
  point resumes without a second upload or import.
"""

from __future__ import annotations

import hashlib
import lzma
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from talprov.aws.errors import NO_AWS_ANSWER, aws_errors, error_code, translate
from talprov.providers.errors import InvalidRequest, ProviderError, Transient
from talprov.talos.progress import Progress, no_progress

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import TagTypeDef
    from mypy_boto3_s3 import S3Client

OFFICIAL_OWNER = "540036508848"
AWS_ARCH = {"amd64": "x86_64", "arm64": "arm64"}
SCHEMATIC_TAG = "talprov-schematic"
VERSION_TAG = "talprov-talos-version"
ARCH_TAG = "talprov-arch"
ROOT_DEVICE = "/dev/xvda"
CHUNK = 8 * 1024 * 1024


class ImageImportFailed(ProviderError):
    """VM Import gave up on the image (bad bucket policy, role, or image)."""

    permanent = True


@dataclass(frozen=True)
class ImageKey:
    """What identifies one Talos image on AWS."""

    version: str
    arch: str
    schematic_id: str

    def official_name(self, region: str) -> str:
        """The name Sidero Labs publishes the official AMI under in ``region``."""
        return f"talos-{self.version}-{region}-{self.arch}"

    def custom_name(self) -> str:
        """The deterministic AMI name talprov registers a custom image under."""
        return f"talprov-talos-{self.version}-{self.arch}-{self.schematic_id[:16]}"

    def tags(self) -> list[TagTypeDef]:
        return [
            {"Key": SCHEMATIC_TAG, "Value": self.schematic_id},
            {"Key": VERSION_TAG, "Value": self.version},
            {"Key": ARCH_TAG, "Value": self.arch},
            {"Key": "Name", "Value": self.custom_name()},
        ]


@dataclass(frozen=True)
class FoundImage:
    """An AMI and the facts a launch needs about it."""

    image_id: str
    root_device_name: str
    state: str = "available"


def _found(raw: Any) -> FoundImage:
    return FoundImage(
        image_id=str(raw["ImageId"]),
        root_device_name=str(raw.get("RootDeviceName") or ROOT_DEVICE),
        state=str(raw.get("State", "available")),
    )


def find_official_images(
    ec2: EC2Client, region: str, keys: Iterable[ImageKey]
) -> dict[ImageKey, FoundImage]:
    """The official AMIs for ``keys``, looked up with ONE DescribeImages call.

    Keys without a published AMI are absent from the result. Read-only.
    """
    by_name = {key.official_name(region): key for key in keys}
    if not by_name:
        return {}
    with aws_errors("DescribeImages"):
        reply = ec2.describe_images(
            Owners=[OFFICIAL_OWNER],
            Filters=[{"Name": "name", "Values": sorted(by_name)}],
        )
    found: dict[ImageKey, FoundImage] = {}
    for raw in sorted(reply.get("Images", []), key=lambda i: str(i.get("CreationDate", ""))):
        key = by_name.get(str(raw.get("Name", "")))
        if key is not None and raw.get("State") == "available":
            # Newest wins when a name was ever published twice.
            found[key] = _found(raw)
    return found


def describe_image(ec2: EC2Client, image_id: str) -> FoundImage:
    """The AMI ``image_id`` (an explicit override). Raises ``InvalidRequest`` if absent."""
    try:
        with aws_errors("DescribeImages"):
            images = ec2.describe_images(ImageIds=[image_id]).get("Images", [])
    except InvalidRequest as exc:
        raise InvalidRequest(
            f"AMI {image_id} not found ({exc})", field="provider_data.ami"
        ) from None
    if not images:
        raise InvalidRequest(f"AMI {image_id} not found", field="provider_data.ami")
    return _found(images[0])


def find_custom_image(ec2: EC2Client, key: ImageKey) -> FoundImage | None:
    """The AMI talprov registered earlier for ``key`` in this account, if any. Read-only."""
    with aws_errors("DescribeImages"):
        images = ec2.describe_images(
            Owners=["self"],
            Filters=[
                {"Name": f"tag:{SCHEMATIC_TAG}", "Values": [key.schematic_id]},
                {"Name": f"tag:{VERSION_TAG}", "Values": [key.version]},
                {"Name": f"tag:{ARCH_TAG}", "Values": [key.arch]},
            ],
        ).get("Images", [])
    usable = [i for i in images if i.get("State") in ("available", "pending")]
    if not usable:
        return None
    usable.sort(key=lambda i: (i.get("State") != "available", str(i.get("ImageId"))))
    return _found(usable[0])


def client_token(*parts: str) -> str:
    """A ClientToken (≤ 64 ASCII characters) that is the same for the same parts."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"talprov-{digest[:48]}"


@dataclass(frozen=True)
class ImportProgress:
    """Where one custom image import stands."""

    image: FoundImage | None = None
    task_id: str | None = None
    percent: int | None = None


class CustomImageImporter:
    """Brings a factory raw.xz image into EC2 as an AMI, one idempotent stage per call.

    ``fetch`` returns the local path of the image's ``aws-<arch>.raw.xz`` (the Image
    Factory client downloads and caches it). ``advance`` is called again and again
    (one call per step run) until it returns an image.
    """

    def __init__(
        self,
        ec2: EC2Client,
        s3: Callable[[], S3Client],
        *,
        bucket: str | None,
        prefix: str,
        role_name: str,
        work_dir: Path,
        progress: Progress = no_progress,
    ) -> None:
        self._ec2 = ec2
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix
        self._role_name = role_name
        self._work_dir = work_dir
        self._progress = progress

    def object_key(self, key: ImageKey) -> str:
        return f"{self._prefix}{key.schematic_id}/{key.version}/aws-{key.arch}.raw"

    def advance(
        self, key: ImageKey, task_id: str | None, fetch: Callable[[], Path]
    ) -> ImportProgress:
        """Take the import of ``key`` one stage further.

        Returns the image once registered (``image.state`` may still be
        'pending'), else the import task id to pass back next time. Raises
        ``InvalidRequest`` (no image_bucket configured), ``ImageImportFailed``,
        and translated AWS errors. Idempotent at every stage.
        """
        existing = find_custom_image(self._ec2, key)
        if existing is not None:
            return ImportProgress(image=existing)
        if task_id is None:
            if not self._bucket:
                raise InvalidRequest(
                    "a non-default schematic needs an S3 bucket to import the image from",
                    field="image_bucket",
                )
            raw = self._decompressed(fetch(), key)
            object_key = self._upload(raw, key)
            return ImportProgress(task_id=self._start_import(key, object_key))
        with aws_errors("DescribeImportSnapshotTasks"):
            tasks = self._ec2.describe_import_snapshot_tasks(ImportTaskIds=[task_id])
        details = [t.get("SnapshotTaskDetail", {}) for t in tasks.get("ImportSnapshotTasks", [])]
        if not details:
            raise ImageImportFailed(f"import task {task_id} vanished")
        detail = details[0]
        status = detail.get("Status", "")
        if status == "completed" and detail.get("SnapshotId"):
            return ImportProgress(image=self._register(key, str(detail["SnapshotId"])))
        if status in ("deleting", "deleted") or "error" in status.lower():
            raise ImageImportFailed(
                f"import task {task_id} {status}: {detail.get('StatusMessage', '')}"
            )
        percent = int(detail.get("Progress", "0") or 0)
        self._progress(f"import {key.custom_name()}", percent, 100)
        return ImportProgress(task_id=task_id, percent=percent)

    def _decompressed(self, xz_path: Path, key: ImageKey) -> Path:
        target = self._work_dir / f"{key.schematic_id}-{key.version}-aws-{key.arch}.raw"
        if target.exists():
            return target
        self._work_dir.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        with lzma.open(xz_path, "rb") as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
        partial.replace(target)  # atomic: a crash never leaves a half file under the name
        return target

    def _upload(self, raw: Path, key: ImageKey) -> str:
        assert self._bucket is not None
        s3 = self._s3()
        object_key = self.object_key(key)
        digest = _sha256_file(raw)
        try:
            with aws_errors("HeadObject"):
                head = s3.head_object(Bucket=self._bucket, Key=object_key)
            if head.get("Metadata", {}).get("sha256") == digest:
                return object_key
        except ProviderError:
            pass  # absent (404) or unreadable: upload it
        size = raw.stat().st_size
        sent = 0

        def on_bytes(count: int) -> None:
            nonlocal sent
            sent += count
            self._progress(f"upload {object_key}", sent, size)

        with aws_errors("PutObject"):
            s3.upload_file(
                str(raw), self._bucket, object_key,
                ExtraArgs={"Metadata": {"sha256": digest}}, Callback=on_bytes,
            )
        return object_key

    def _start_import(self, key: ImageKey, object_key: str) -> str:
        assert self._bucket is not None
        tags = [t for t in key.tags() if t["Key"] != "Name"]
        with aws_errors("ImportSnapshot"):
            reply = self._ec2.import_snapshot(
                ClientToken=client_token("import", self._bucket, object_key),
                Description=key.custom_name(),
                DiskContainer={
                    "Description": key.custom_name(),
                    "Format": "RAW",
                    "UserBucket": {"S3Bucket": self._bucket, "S3Key": object_key},
                },
                RoleName=self._role_name,
                TagSpecifications=[{"ResourceType": "import-snapshot-task", "Tags": tags}],
            )
        return str(reply["ImportTaskId"])

    def _register(self, key: ImageKey, snapshot_id: str) -> FoundImage:
        try:
            reply = self._ec2.register_image(
                Name=key.custom_name(),
                Description=f"Talos {key.version} schematic {key.schematic_id}",
                Architecture="arm64" if key.arch == "arm64" else "x86_64",
                RootDeviceName=ROOT_DEVICE,
                BlockDeviceMappings=[{
                    "DeviceName": ROOT_DEVICE,
                    "Ebs": {"SnapshotId": snapshot_id, "VolumeType": "gp3",
                            "DeleteOnTermination": True},
                }],
                VirtualizationType="hvm",
                EnaSupport=True,
                BootMode="uefi",
                ImdsSupport="v2.0",
                TagSpecifications=[
                    {"ResourceType": "image", "Tags": key.tags()},
                    {"ResourceType": "snapshot", "Tags": key.tags()},
                ],
            )
        except NO_AWS_ANSWER as exc:
            raise translate(exc, "RegisterImage") from None
        except ClientError as exc:
            if error_code(exc) != "InvalidAMIName.Duplicate":
                raise translate(exc, "RegisterImage") from None
            # A previous run registered it but crashed before it was seen by tag
            # (or the tags are still propagating): find it by its unique name.
            return self._by_name(key)
        return FoundImage(image_id=str(reply["ImageId"]), root_device_name=ROOT_DEVICE,
                          state="pending")

    def _by_name(self, key: ImageKey) -> FoundImage:
        with aws_errors("DescribeImages"):
            images = self._ec2.describe_images(
                Owners=["self"], Filters=[{"Name": "name", "Values": [key.custom_name()]}]
            ).get("Images", [])
        if not images:
            raise Transient(f"AMI {key.custom_name()} exists but is not visible yet")
        return _found(images[0])


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
