"""Fixtures for the Proxmox driver tests: a fakepve server and a provider talking to it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from talprov.providers.protocol import Runtime
from talprov.providers.types import MachineRequest, Owner
from talprov.proxmox.config import ProxmoxConfig
from talprov.proxmox.provider import ProxmoxProvider
from talprov.testing import FakeClock
from tests.emulators.fakepve import FakePveServer
from tests.emulators.fakepve import fakepve as fakepve  # noqa: PLC0414 - re-exported fixture

ISO_URL = "https://factory.example.test/image/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba/v1.9.1/nocloud-amd64.iso"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runtime(clock: FakeClock, tmp_path: Path) -> Runtime:
    return Runtime(installation="talprov-test", cache_dir=tmp_path / "cache",
                   clock=clock, sleep=clock.sleep)


@pytest.fixture
def owner() -> Owner:
    return Owner(installation="talprov-test", instance="lab")


def password_config(server: FakePveServer, **extra: Any) -> ProxmoxConfig:
    return ProxmoxConfig.model_validate({
        "url": server.url, "username": server.user, "password": server.password,
        "ca_file": str(server.ca_file), "poll_interval": 1.0, **extra,
    })


@pytest.fixture
def make_provider(
    fakepve: FakePveServer, runtime: Runtime
) -> Callable[..., ProxmoxProvider]:
    def make(**extra: Any) -> ProxmoxProvider:
        return ProxmoxProvider("lab", password_config(fakepve, **extra), runtime,
                               iso_url=lambda request: ISO_URL)

    return make


@pytest.fixture
def provider(make_provider: Callable[..., ProxmoxProvider]) -> ProxmoxProvider:
    return make_provider()


def machine_request(request_id: str, **fields: Any) -> MachineRequest:
    body: dict[str, Any] = {
        "id": request_id, "provider": "lab", "talos_version": "v1.9.1",
        "machine_config": (
            f"version: v1alpha1\nmachine:\n  type: worker\n  token: secret-{request_id}\n"
        ),
        "labels": {"talprov.set": "workers"},
    }
    body.update(fields)
    return MachineRequest.model_validate(body)
