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
from talprov.providers.registry import build_provider
from tests.emulators.factory import FakeImageFactory


class FakeClock:
    """A clock that only the sleeper moves: waits cost no real time."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


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
    talos_version: str = "v1.11.5"
    labels: dict[str, str] = field(default_factory=lambda: {"talprov.set": "workers"})

    def provider(self, instance: str = "contract") -> Provider:
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


ENVIRONMENTS = ["file", "proxmox"]


@pytest.fixture(params=ENVIRONMENTS)
def env(request: pytest.FixtureRequest) -> Environment:
    """Each provider type in turn."""
    environment: Environment = request.getfixturevalue(f"env_{request.param}")
    return environment
