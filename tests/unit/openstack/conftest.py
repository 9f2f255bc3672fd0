"""Fixtures for the OpenStack tests: the fake cloud, the fake Image Factory, a harness."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulators.factory import FakeImageFactory
from tests.emulators.openstack import FakeOpenStack, openstack_cloud
from tests.unit.openstack.harness import Harness

__all__ = ["openstack_cloud"]


@pytest.fixture(scope="session")
def shared_image_factory() -> Iterator[FakeImageFactory]:
    """One fake Image Factory for all OpenStack tests: it keeps no state that matters
    here (each test has its own download cache), and stopping one costs half a second."""
    with FakeImageFactory() as fake:
        yield fake


@pytest.fixture
def harness(openstack_cloud: FakeOpenStack, shared_image_factory: FakeImageFactory,
            tmp_path: Path) -> Harness:
    return Harness(openstack_cloud, shared_image_factory, tmp_path)
