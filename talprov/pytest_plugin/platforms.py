"""The emulators the plugin starts, each with the talprov.yaml block that points at it.

Each wrapper is made once per test session and ``reset`` before every test that
asks for it. ``provider_block()`` is the ``providers.<name>`` entry of
talprov.yaml; ``provider_data()`` is a request's ``provider_data`` that works on
the emulator as it is after ``reset``. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from talprov.demo_platforms.aws import LocalEc2
    from talprov.demo_platforms.fakepve_control import FakePveServer
    from talprov.demo_platforms.vmware import VSphereDemo
    from talprov.pytest_plugin.faults import Ec2FaultProxy
    from talprov.testing.factory import FakeImageFactory
    from talprov.testing.openstack import FakeOpenStack

REGION = "us-east-1"
#: Seconds between a driver's polls of a slow operation: the emulators finish at once.
POLL_INTERVAL = 0.2
VCSIM_ENV = "TALPROV_VCSIM"
VCSIM_HELP = (
    "vcsim (govmomi's vCenter simulator) is needed for the vSphere fixtures: build it with "
    "tests/emulators/vcsim/build.sh of a talprov checkout (Debian's golang-github-vmware-"
    f"govmomi-dev sources) and give its path with --talprov-vcsim=PATH or {VCSIM_ENV}=PATH; "
    "--talprov-skip-missing skips these tests instead")


@dataclass
class AwsEmulator:
    """moto's EC2 server seeded with Talos AMIs, behind the fault proxy."""

    server: LocalEc2
    proxy: Ec2FaultProxy
    region: str = REGION

    @property
    def url(self) -> str:
        """The endpoint talprov uses (through the fault proxy)."""
        return self.proxy.url

    def provider_block(self) -> dict[str, Any]:
        # botocore's own retries are off so that every injected fault reaches talprov.
        return {"type": "aws", "region": self.region, "endpoint_url": self.url,
                "max_attempts": 1, "poll_interval": POLL_INTERVAL}

    def provider_data(self) -> dict[str, Any]:
        return {"instance_type": "t3.small"}

    def ec2(self) -> Any:
        """A boto3 EC2 client straight to moto (no injected faults), for assertions."""
        import boto3

        return boto3.client("ec2", region_name=self.region, endpoint_url=self.server.url)

    def instances(self, states: tuple[str, ...] = ("pending", "running")) -> list[dict[str, Any]]:
        """Every instance in one of ``states``, as DescribeInstances gives it."""
        found = self.ec2().describe_instances(
            Filters=[{"Name": "instance-state-name", "Values": list(states)}])
        return [i for r in found["Reservations"] for i in r["Instances"]]

    def reset(self) -> None:
        self.proxy.clear()
        self.server.reset()

    def stop(self) -> None:
        self.proxy.stop()
        self.server.stop()


@dataclass
class ProxmoxEmulator:
    """fakepve (node pve1, storages local and local-lvm) with a placeholder Talos ISO
    in ``local``: there is no Image Factory to download the real one from."""

    server: FakePveServer
    password_file: Path
    iso_volume: str = ""

    @classmethod
    def start(cls, folder: Path) -> ProxmoxEmulator:
        """Start fakepve and upload the placeholder ISO. Raises ``RuntimeError``."""
        from talprov.demo_platforms.fakepve_control import start_fakepve
        from talprov.demo_platforms.proxmox import upload_placeholder
        from talprov.proxmox.client import PveClient
        from talprov.proxmox.config import ProxmoxConfig
        from talprov.talos.versions import DEFAULT_TALOS_VERSION

        server = start_fakepve(folder)
        try:
            password_file = folder / "password"
            password_file.write_text(server.password)
            password_file.chmod(0o600)
            emulator = cls(server, password_file)
            settings = {**emulator.provider_block(), "password": server.password}
            settings.pop("type")
            client = PveClient(ProxmoxConfig.model_validate(settings))
            emulator.iso_volume = upload_placeholder(
                client, f"talos-{DEFAULT_TALOS_VERSION}-nocloud-amd64-placeholder.iso")
            server.control("snapshot")
        except BaseException:
            server.stop()
            raise
        return emulator

    @property
    def url(self) -> str:
        return self.server.url

    def provider_block(self) -> dict[str, Any]:
        return {"type": "proxmox", "url": self.url, "username": self.server.user,
                "password": f"${{file:{self.password_file}}}",
                "ca_file": str(self.server.ca_file), "poll_interval": POLL_INTERVAL}

    def provider_data(self) -> dict[str, Any]:
        return {"iso": self.iso_volume, "cores": 1, "memory": 2048, "disk_size": 10}

    def vms(self) -> list[dict[str, Any]]:
        """Every VM fakepve has: vmid, name, node, status, config."""
        return self.server.vms()

    def reset(self) -> None:
        self.server.control("reset")

    def stop(self) -> None:
        self.server.stop()


@dataclass
class VSphereEmulator:
    """vcsim (VPX model: datacenter DC0, cluster DC0_C0) with a template to clone."""

    demo: VSphereDemo
    baseline: set[str] = field(default_factory=set)

    def provider_block(self) -> dict[str, Any]:
        return {**self.demo.provider_block(), "poll_interval": POLL_INTERVAL}

    def provider_data(self) -> dict[str, Any]:
        return dict(self.demo.machine_class()["provider_data"])

    @property
    def url(self) -> str:
        return self.demo.url

    def vm_names(self) -> set[str]:
        """The name of every VM and template vcsim has."""
        si = self.demo._connect(self.demo.password_file.read_text())
        try:
            return {vm.name for vm in _all_vms(si)}
        finally:
            si.content.sessionManager.Logout()

    def reset(self) -> None:
        """Destroy every VM made since the session started (vcsim has no reset)."""
        from talprov.demo_platforms.vmware import _wait_task

        si = self.demo._connect(self.demo.password_file.read_text())
        try:
            for vm in _all_vms(si):
                if vm.name in self.baseline:
                    continue
                if str(vm.runtime.powerState) == "poweredOn":
                    _wait_task(vm.PowerOffVM_Task())
                _wait_task(vm.Destroy_Task())
        finally:
            si.content.sessionManager.Logout()

    def stop(self) -> None:
        self.demo.stop()


def _all_vms(si: Any) -> list[Any]:
    from talprov.vmware import sdk

    content = si.content
    view = content.viewManager.CreateContainerView(content.rootFolder,
                                                   [sdk.vim().VirtualMachine], True)
    try:
        return list(view.view)
    finally:
        view.Destroy()


def find_vcsim(option: str | None) -> Path | None:
    """The vcsim binary: ``--talprov-vcsim``, else ``TALPROV_VCSIM``, else ``vcsim`` on
    PATH; None when there is none. Raises ``ValueError`` for a path that is no file."""
    named = option or os.environ.get(VCSIM_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise ValueError(f"the vcsim binary {named} is not a file. {VCSIM_HELP}")
        return path
    found = shutil.which("vcsim")
    return Path(found) if found else None


@dataclass
class OpenStackEmulator:
    """The fake OpenStack cloud (Keystone v3, Nova, Glance, Neutron) with the Image
    Factory stand-in serving the Talos images it boots."""

    cloud: FakeOpenStack
    factory: FakeImageFactory

    def provider_block(self) -> dict[str, Any]:
        return {"type": "openstack", "auth": self.cloud.auth(), "region": "RegionOne",
                "poll_interval": POLL_INTERVAL}

    def provider_data(self) -> dict[str, Any]:
        return {"flavor": "m1.small", "networks": ["private"]}

    def reset(self) -> None:
        self.cloud.reset()
