"""moto's EC2/S3/STS server as a separate process, plus fault injection and call counting.

A subprocess (the ``moto_server`` CLI) rather than an in-process server so that
crash tests can kill the talprov side while the "cloud" lives on. The server is
started once per test session; every test gets a clean state through
``POST /moto-api/reset`` (milliseconds). Official Talos AMIs (owner
540036508848) are seeded through ``MOTO_AMIS_PATH``.
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
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
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
