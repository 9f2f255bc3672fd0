"""The ``image_factory`` fixture: the Image Factory stand-in of
:mod:`talprov.testing.factory` (one copy, shared with the pytest plugin), one per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from talprov.testing.factory import (
    EMPTY_SCHEMATIC_ID,
    FakeImageFactory,
    iso9660,
    schematic_id,
    schematic_text,
    stream_optimized_vmdk,
)

__all__ = [
    "EMPTY_SCHEMATIC_ID",
    "FakeImageFactory",
    "image_factory",
    "iso9660",
    "schematic_id",
    "schematic_text",
    "stream_optimized_vmdk",
]


@pytest.fixture
def image_factory() -> Iterator[FakeImageFactory]:
    """A running FakeImageFactory on 127.0.0.1 (stopped after the test)."""
    with FakeImageFactory() as fake:
        yield fake
