"""moto's EC2/S3/STS server as a separate process, plus fault injection and call counting.

A subprocess (the ``moto_server`` CLI) rather than an in-process server so that
crash tests can kill the talprov side while the "cloud" lives on. The server is
started once per test session; every test gets a clean state through
``POST /moto-api/reset`` (milliseconds). Official Talos AMIs (owner
540036508848) are seeded through ``MOTO_AMIS_PATH``. ``SnapshotImports`` plays
the VM Import calls moto lacks.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

from talprov.aws.images import OFFICIAL_OWNER
from talprov.demo_platforms.aws import (
    DEFAULT_REGIONS,
    LocalEc2,
    fake_credentials,
    free_port,
    start_local_ec2,
    talos_ami_id,
    talos_amis,
)
from talprov.pytest_plugin.fixtures import use_fake_aws_credentials

__all__ = [
    "OFFICIAL_OWNER",
    "REGION",
    "CallCounter",
    "Fault",
    "FaultInjector",
    "Latency",
    "MotoServer",
    "SnapshotImport",
    "SnapshotImports",
    "aws_instance_block",
    "fake_credentials",
    "free_port",
    "moto_process",
    "moto_server",
    "start_moto_server",
    "talos_ami_id",
    "talos_amis",
]

REGION = DEFAULT_REGIONS[0]
MotoServer = LocalEc2


def start_moto_server(work_dir: Path) -> MotoServer:
    """Start ``moto_server`` on a free 127.0.0.1 port, seeded with Talos AMIs."""
    return start_local_ec2(work_dir)


def aws_instance_block(server: MotoServer, **extra: Any) -> dict[str, Any]:
    """A ``providers.<name>`` block of talprov.yaml for an AWS instance on ``server``.

    botocore retries are off so that injected faults reach talprov's own retries.
    """
    return {"type": "aws", "region": REGION, "endpoint_url": server.url, "max_attempts": 1,
            "poll_interval": 1.0, **extra}


@pytest.fixture(scope="session")
def moto_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto server for the whole session."""
    server = start_moto_server(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def moto_server(moto_process: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """A clean moto server and fake AWS credentials in the environment."""
    use_fake_aws_credentials(monkeypatch)
    moto_process.reset()
    return moto_process


# ---------------------------------------------------------------------- fault injection


class _Body:
    """The minimal raw-response object botocore reads a body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def ec2_error_response(code: str, message: str, status: int) -> AWSResponse:
    """An EC2 (query protocol) error reply as botocore would receive it."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
        "</Error></Errors><RequestID>fault-injected</RequestID></Response>"
    ).encode()
    headers = HTTPHeaders()
    headers["Content-Type"] = "text/xml"
    return AWSResponse("http://fault", status, headers, _Body(body))


@dataclass
class Fault:
    """Answer ``times`` calls of ``operation`` with an error instead of sending them."""

    operation: str
    code: str
    times: int
    status: int = 400
    message: str = "injected by the test"
    only_if: Any = None  # optional predicate on the request params (a dict)
    injected: int = 0


class FaultInjector:
    """A botocore ``before-send`` hook that fails chosen calls a set number of times.

    Returning a response from ``before-send`` makes botocore skip the HTTP send,
    so the error goes through botocore's real parsing and retry logic.
    """

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-send.ec2", self._before_send)

    def _before_send(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        body = _text(request.body)
        with self._lock:
            for fault in self.faults:
                if fault.operation != operation or fault.injected >= fault.times:
                    continue
                if fault.only_if is not None and not fault.only_if(body):
                    continue
                fault.injected += 1
                return ec2_error_response(fault.code, fault.message, fault.status)
        return None


@dataclass
class CallCounter:
    """Counts the HTTP requests a client sends, by operation (retries included)."""

    calls: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-send", self._count)

    def _count(self, event_name: str, **_: Any) -> None:
        with self._lock:
            self.calls[event_name.rsplit(".", 1)[-1]] += 1

    def total(self) -> int:
        return sum(self.calls.values())


@dataclass
class Latency:
    """Adds a fixed delay before every request a client sends (a slow network)."""

    seconds: float
    sleep: Any = time.sleep

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-send", self._delay)

    def _delay(self, **_: Any) -> None:
        self.sleep(self.seconds)


# ---------------------------------------------------------------------- VM Import


@dataclass
class SnapshotImport:
    """One emulated VM Import task: the S3 object it read and the snapshot it made."""

    bucket: str
    key: str
    data: bytes
    snapshot_id: str


class SnapshotImports:
    """moto lacks VM Import: this ``before-send`` hook plays ``ImportSnapshot`` and
    ``DescribeImportSnapshotTasks`` against moto itself, and completes ``RegisterImage``.

    An import reads the named object from moto's S3 (so a missing upload fails as
    on AWS), makes a real moto snapshot and reports the task completed at once.
    moto's RegisterImage drops the block device mappings and tag specifications:
    the hook registers through moto, tags the AMI there and remembers its root
    snapshot. ``imports`` and ``root_snapshots`` let tests trace an AMI back to
    the bytes it was imported from.
    """

    def __init__(self, server: MotoServer, region: str = REGION) -> None:
        import boto3

        self._s3 = boto3.client("s3", region_name=region, endpoint_url=server.url)
        self._ec2 = boto3.client("ec2", region_name=region, endpoint_url=server.url)
        self._zone = f"{region}a"
        self.imports: dict[str, SnapshotImport] = {}
        self.root_snapshots: dict[str, str] = {}  # AMI id -> snapshot id
        self._lock = threading.Lock()

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-send.ec2.ImportSnapshot", self._import)
        client.meta.events.register("before-send.ec2.DescribeImportSnapshotTasks", self._describe)
        client.meta.events.register("before-send.ec2.RegisterImage", self._register)

    def image_import(self, image_id: str) -> SnapshotImport:
        """The import whose snapshot is the root disk of AMI ``image_id``."""
        snapshot_id = self.root_snapshots[image_id]
        return next(i for i in self.imports.values() if i.snapshot_id == snapshot_id)

    def _register(self, request: Any, **_: Any) -> AWSResponse:
        from urllib.parse import parse_qs

        params = {k: v[0] for k, v in parse_qs(_text(request.body)).items()}
        image_id = self._ec2.register_image(Name=params["Name"],
                                            Description=params.get("Description", ""))["ImageId"]
        tags: list[Any] = []
        for number in range(1, 100):
            prefix = f"TagSpecification.{number}."
            if prefix + "ResourceType" not in params:
                break
            if params[prefix + "ResourceType"] == "image":
                tags += [{"Key": params[f"{prefix}Tag.{n}.Key"],
                          "Value": params[f"{prefix}Tag.{n}.Value"]}
                         for n in range(1, 100) if f"{prefix}Tag.{n}.Key" in params]
        if tags:
            self._ec2.create_tags(Resources=[image_id], Tags=tags)
        with self._lock:
            self.root_snapshots[image_id] = params["BlockDeviceMapping.1.Ebs.SnapshotId"]
        return _ec2_reply("RegisterImage", f"<imageId>{image_id}</imageId>")

    def _import(self, request: Any, **_: Any) -> AWSResponse:
        from urllib.parse import parse_qs

        params = {k: v[0] for k, v in parse_qs(_text(request.body)).items()}
        bucket = params["DiskContainer.UserBucket.S3Bucket"]
        key = params["DiskContainer.UserBucket.S3Key"]
        data = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        volume = self._ec2.create_volume(AvailabilityZone=self._zone,
                                         Size=max(1, -(-len(data) // 2**30)))
        snapshot = self._ec2.create_snapshot(VolumeId=volume["VolumeId"])["SnapshotId"]
        with self._lock:
            task_id = f"import-snap-{len(self.imports) + 1:08x}"
            self.imports[task_id] = SnapshotImport(bucket, key, data, snapshot)
        return _ec2_reply("ImportSnapshot", f"<importTaskId>{task_id}</importTaskId>")

    def _describe(self, request: Any, **_: Any) -> AWSResponse:
        from urllib.parse import parse_qs

        wanted = parse_qs(_text(request.body)).get("ImportTaskId.1", [])
        items = "".join(
            f"<item><importTaskId>{task_id}</importTaskId><snapshotTaskDetail>"
            f"<status>completed</status><snapshotId>{found.snapshot_id}</snapshotId>"
            "</snapshotTaskDetail></item>"
            for task_id, found in self.imports.items() if task_id in wanted)
        return _ec2_reply("DescribeImportSnapshotTasks",
                          f"<importSnapshotTaskSet>{items}</importSnapshotTaskSet>")


def _text(body: bytes | str) -> str:
    return body.decode() if isinstance(body, bytes) else body


def _ec2_reply(operation: str, inner: str) -> AWSResponse:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<{operation}Response>'
            f"<requestId>emulated</requestId>{inner}</{operation}Response>").encode()
    headers = HTTPHeaders()
    headers["Content-Type"] = "text/xml"
    return AWSResponse("http://emulated", 200, headers, _Body(body))
