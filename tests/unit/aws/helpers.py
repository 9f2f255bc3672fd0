"""Helpers of the AWS driver tests: requests and a provider harness on moto."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from talprov.aws.config import AwsConfig
from talprov.aws.provider import AwsProvider
from talprov.providers.protocol import Runtime
from talprov.providers.types import MachineRequest
from talprov.testing import FakeClock
from tests.emulators.moto import REGION, CallCounter, FaultInjector, MotoServer
from tests.unit.aws.loop import LocalLoop

WORKER_CONFIG = """version: v1alpha1
machine:
  type: worker
  token: canary-token-5f1e0c  # never to be seen in output
cluster:
  controlPlane:
    endpoint: https://10.0.0.1:6443
"""


def make_request(rid: str, *, config: str = WORKER_CONFIG, version: str = "v1.13.9",
                 **kwargs: Any) -> MachineRequest:
    body: dict[str, Any] = {
        "id": rid, "provider": "aws-test", "talos_version": version,
        "machine_config": config, "labels": {"cluster": "demo", "set": "workers"},
        "provider_data": {"instance_type": "t3.small"},
    }
    body.update(kwargs)
    return MachineRequest.model_validate(body)


class Harness:
    """A provider on the moto server, its counters and fault injector, and a loop."""

    def __init__(self, server: MotoServer, tmp_path: Path, **config: Any) -> None:
        self.server = server
        self.tmp_path = tmp_path
        self.clock = FakeClock()
        self.runtime = Runtime(installation="talprov-test", cache_dir=tmp_path / "cache",
                               clock=self.clock, sleep=self.clock.sleep)
        self.config_args = {"region": REGION, "endpoint_url": server.url, "max_attempts": 1,
                            "poll_interval": 2.0, **config}
        self.counter = CallCounter()
        self.faults = FaultInjector()
        self.provider = self.new_provider()
        self.loop = LocalLoop(self.provider, self.runtime, self.clock)

    def new_provider(self) -> AwsProvider:
        """A fresh provider (as after a process restart), counted and fault-injected."""
        provider = AwsProvider("aws-test", AwsConfig(**self.config_args), self.runtime)
        # The counter goes first so that injected failures count as calls too.
        self.counter.attach(provider.clients.ec2)
        self.faults.attach(provider.clients.ec2)
        return provider

    def restart(self) -> None:
        """Simulate a process restart: new provider, the loop keeps persisted state."""
        self.provider = self.new_provider()
        old = self.loop
        self.loop = LocalLoop(self.provider, self.runtime, self.clock)
        self.loop.requests = old.requests

    def instances(self, *, include_terminated: bool = False) -> list[Any]:
        """Every instance in moto (a separate, uncounted client)."""
        import boto3

        ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=self.server.url)
        out = []
        for reservation in ec2.describe_instances()["Reservations"]:
            for raw in reservation["Instances"]:
                if include_terminated or raw["State"]["Name"] != "terminated":
                    out.append(raw)
        return out

    def raw_ec2(self) -> Any:
        import boto3

        return boto3.client("ec2", region_name=REGION, endpoint_url=self.server.url)
