"""Fixtures for the vSphere driver tests: vcsim, the Image Factory stand-in, a provider."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from talprov.providers.protocol import Runtime
from talprov.providers.types import MachineRequest, Owner
from talprov.testing import FakeClock
from talprov.vmware.config import VSphereConfig
from talprov.vmware.provider import VSphereProvider
from tests.emulators.factory import FakeImageFactory
from tests.emulators.factory import image_factory as image_factory  # noqa: PLC0414 - fixture
from tests.emulators.vcsim.fixture import VcsimServer
from tests.emulators.vcsim.fixture import vcsim as vcsim  # noqa: PLC0414 - re-exported fixture
from tests.unit.vmware.vapi_admin import VapiAdmin, vapi_admin


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runtime(clock: FakeClock, tmp_path: Path, image_factory: FakeImageFactory) -> Runtime:
    return Runtime(installation="talprov-test", cache_dir=tmp_path / "cache",
                   factory_url=image_factory.url, clock=clock, sleep=clock.sleep)


@pytest.fixture
def owner() -> Owner:
    return Owner(installation="talprov-test", instance="lab")


def vsphere_config(server: VcsimServer, **extra: Any) -> VSphereConfig:
    return VSphereConfig.model_validate({
        "url": server.url, "username": server.user, "password": server.password,
        "ca_file": str(server.ca_file), "poll_interval": 1.0, **extra,
    })


@pytest.fixture
def make_provider(vcsim: VcsimServer, runtime: Runtime) -> Iterator[Callable[..., VSphereProvider]]:
    made: list[VSphereProvider] = []

    def make(**extra: Any) -> VSphereProvider:
        provider = VSphereProvider("lab", vsphere_config(vcsim, **extra), runtime)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


@pytest.fixture
def provider(make_provider: Callable[..., VSphereProvider]) -> VSphereProvider:
    return make_provider()


def machine_request(request_id: str, **fields: Any) -> MachineRequest:
    body: dict[str, Any] = {
        "id": request_id, "provider": "lab", "talos_version": "v1.9.1",
        "machine_config": (
            f"version: v1alpha1\nmachine:\n  type: worker\n  token: secret-{request_id}\n"
        ),
        "labels": {"talprov.set": "workers"},
        "provider_data": {"cluster": "DC0_C0", "datastore": "LocalDS_0",
                          "network": "VM Network", "cpu": 4, "memory": 8192, "disk_size": 30},
    }
    body.update(fields)
    return MachineRequest.model_validate(body)


#: Where the vAPI tests place their VMs in vcsim's default inventory.
PLACEMENT = {"cluster": "DC0_C0", "datastore": "LocalDS_0", "network": "VM Network",
             "cpu": 2, "memory": 4096, "disk_size": 20}


@pytest.fixture
def admin(vcsim: VcsimServer) -> Iterator[VapiAdmin]:
    """A vAPI session to vcsim for arranging tags and libraries as an admin would."""
    with vapi_admin(vcsim) as session:
        yield session
