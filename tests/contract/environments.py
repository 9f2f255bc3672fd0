"""One environment per provider type: how to build it against its emulator.

Each environment yields an :class:`Environment`; the contract tests in this folder
run unchanged against every one of them. Adding a driver means adding one fixture
here and one name to ``ENVIRONMENTS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from talprov.providers.protocol import Provider, Runtime
from talprov.registry import build_provider
from talprov.testing import FakeClock
from tests.emulators.factory import FakeImageFactory
from tests.emulators.moto import MotoServer


@dataclass
class Environment:
    """A provider type wired to its emulator."""

    type_name: str
    runtime: Runtime
    clock: FakeClock
    #: The instance's config block (as in talprov.yaml) minus ``type``.
    config: dict[str, Any]
    provider_data: dict[str, Any]
    #: Every live machine on the emulated platform, whoever owns it (platform truth).
    platform_machines: Callable[[], int]
    talos_version: str = "v1.13.9"
    labels: dict[str, str] = field(default_factory=lambda: {"talprov.set": "workers"})
    #: Builds the instance when the platform's double must be handed to the
    #: provider (bare metal's power drivers); None: from ``config`` as talprov does.
    build: Callable[[str], Provider] | None = None

    def provider(self, instance: str = "contract") -> Provider:
        if self.build is not None:
            return self.build(instance)
        raw = {"type": self.type_name, **self.config}
        return build_provider(instance, raw, self.runtime, where=f"providers.{instance}")


def make_runtime(tmp_path: Path, factory: FakeImageFactory, clock: FakeClock,
                 installation: str = "contract") -> Runtime:
    return Runtime(installation=installation, cache_dir=tmp_path / "cache",
                   factory_url=factory.url, clock=clock, sleep=clock.sleep)


@pytest.fixture
def env_file(tmp_path: Path, plugin_dir: Path, image_factory: FakeImageFactory
             ) -> Environment:
    from tests.providers.fileprov import Cloud

    clock = FakeClock()
    path = str(tmp_path / "cloud.sqlite")
    cloud = Cloud(path)
    return Environment(
        type_name="file", runtime=make_runtime(tmp_path, image_factory, clock), clock=clock,
        config={"path": path}, provider_data={"size": "small"},
        platform_machines=lambda: len(cloud.machines()),
    )


@pytest.fixture
def env_proxmox(tmp_path: Path, image_factory: FakeImageFactory) -> Iterator[Environment]:
    from tests.emulators.fakepve import start_fakepve

    clock = FakeClock()
    (tmp_path / "pve").mkdir()
    server = start_fakepve(tmp_path / "pve")
    try:
        yield Environment(
            type_name="proxmox", runtime=make_runtime(tmp_path, image_factory, clock),
            clock=clock,
            config={"url": server.url, "username": server.user, "password": server.password,
                    "ca_file": str(server.ca_file), "poll_interval": 1.0},
            provider_data={"memory": 2048, "cores": 2, "disk_size": 10},
            platform_machines=lambda: len(server.vms()),
        )
    finally:
        server.stop()


@pytest.fixture
def env_aws(tmp_path: Path, image_factory: FakeImageFactory, moto_server: MotoServer
            ) -> Environment:
    import boto3

    from tests.emulators.moto import aws_instance_block

    def live_instances() -> int:
        ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_server.url)
        return sum(
            1
            for reservation in ec2.describe_instances()["Reservations"]
            for instance in reservation["Instances"]
            if instance["State"]["Name"] not in ("terminated", "shutting-down")
        )

    clock = FakeClock()
    block = aws_instance_block(moto_server)
    block.pop("type")
    return Environment(
        type_name="aws", runtime=make_runtime(tmp_path, image_factory, clock), clock=clock,
        config=block, provider_data={"instance_type": "t3.small"},
        platform_machines=live_instances,
    )


@pytest.fixture
def env_openstack(tmp_path: Path, image_factory: FakeImageFactory) -> Iterator[Environment]:
    from tests.emulators.openstack import FakeOpenStack

    cloud = FakeOpenStack().start()
    clock = FakeClock()
    try:
        yield Environment(
            type_name="openstack", runtime=make_runtime(tmp_path, image_factory, clock),
            clock=clock,
            config={"auth": cloud.auth(), "region": "RegionOne", "poll_interval": 1.0},
            provider_data={"flavor": "m1.small", "networks": ["private"]},
            platform_machines=lambda: len(cloud.servers()),
        )
    finally:
        cloud.stop()


@pytest.fixture
def env_vmware(tmp_path: Path, image_factory: FakeImageFactory) -> Iterator[Environment]:
    from talprov.providers.ownership import REQUEST_KEY
    from tests.emulators.vcsim.fixture import start_vcsim
    from tests.unit.vmware.observe import all_vms

    (tmp_path / "vcsim").mkdir()
    server = start_vcsim(tmp_path / "vcsim")

    def request_vms() -> int:
        # The simulator's inventory has VMs of its own; count the ones made for requests.
        return sum(1 for vms in all_vms(server).values() for vm in vms
                   if REQUEST_KEY in vm["extra"])

    clock = FakeClock()
    try:
        yield Environment(
            type_name="vmware", runtime=make_runtime(tmp_path, image_factory, clock),
            clock=clock,
            config={"url": server.url, "username": server.user, "password": server.password,
                    "ca_file": str(server.ca_file), "poll_interval": 1.0},
            provider_data={"cluster": "DC0_C0", "datastore": "LocalDS_0",
                           "network": "VM Network", "cpu": 2, "memory": 4096, "disk_size": 20},
            platform_machines=request_vms,
        )
    finally:
        server.stop()


@pytest.fixture
def env_baremetal(tmp_path: Path, image_factory: FakeImageFactory) -> Iterator[Environment]:
    """Inventory machines behind power doubles that PXE-boot against the boot server's
    HTTP endpoints on 127.0.0.1 (the QEMU rig is tests/unit/baremetal/test_rig.py)."""
    from talprov.baremetal.boot.http import BootHttp, HttpBootServer
    from talprov.baremetal.config import BareMetalConfig
    from talprov.baremetal.inventory import BmcInfo, Inventory
    from talprov.baremetal.provider import BareMetalProvider
    from tests.emulators.baremetal.pxe_machine import PxeLab
    from tests.emulators.moto import free_port

    clock = FakeClock()
    port = free_port()
    config = {"inventory": str(tmp_path / "inventory.sqlite"),
              "boot_url": f"http://127.0.0.1:{port}", "listen_address": "127.0.0.1",
              "listen_port": port, "poll_interval": 1.0, "observe_interval": 60.0}
    settings = BareMetalConfig.model_validate(config)
    inventory = Inventory(settings.inventory, clock=clock)
    for index in range(3):
        inventory.add(f"node-{index}", uuid=f"00000000-0000-4000-8000-00000000000{index}",
                      macs=[f"52:54:00:00:00:0{index}"], bmc=BmcInfo(address="127.0.0.1"))
    server = HttpBootServer(BootHttp(settings, inventory, image_factory.url), "127.0.0.1", port)
    server.start()
    lab = PxeLab(settings.boot_url)
    runtime = make_runtime(tmp_path, image_factory, clock)
    try:
        yield Environment(
            type_name="baremetal", runtime=runtime, clock=clock, config=config,
            provider_data={}, platform_machines=lab.powered_on,
            build=lambda instance: BareMetalProvider(instance, settings, runtime,
                                                     power=lab.power),
        )
    finally:
        server.stop()


ENVIRONMENTS = ["file", "proxmox", "aws", "openstack", "vmware", "baremetal"]
#: Environments a separate worker process can drive from talprov.yaml alone, so
#: that it can be killed and restarted (bare metal's power doubles live in the
#: test process and are handed to the provider; a worker could not reach them).
PROCESS_ENVIRONMENTS = [name for name in ENVIRONMENTS if name != "baremetal"]


@pytest.fixture(params=ENVIRONMENTS)
def env(request: pytest.FixtureRequest) -> Environment:
    """Each provider type in turn."""
    environment: Environment = request.getfixturevalue(f"env_{request.param}")
    return environment
