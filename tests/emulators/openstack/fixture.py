"""The ``openstack_cloud`` pytest fixture: a fresh fake cloud per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from talprov.testing.openstack.cloud import FakeOpenStack


@pytest.fixture
def openstack_cloud() -> Iterator[FakeOpenStack]:
    """A started ``FakeOpenStack`` (zones az1 and az2), stopped after the test."""
    cloud = FakeOpenStack().start()
    try:
        yield cloud
    finally:
        cloud.stop()
