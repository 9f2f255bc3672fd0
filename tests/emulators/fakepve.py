"""pytest fixture ``fakepve``: a fakepve server in its own process, one per test
(started by :mod:`talprov.demo_platforms.fakepve_control`, shared with the pytest plugin)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from talprov.demo_platforms.fakepve_control import (
    USER,
    FakePveServer,
    start_fakepve,
)

__all__ = ["USER", "FakePveServer", "fakepve", "start_fakepve"]


@pytest.fixture
def fakepve(tmp_path: Path) -> Iterator[FakePveServer]:
    """A fresh fakepve server for one test (node pve1, storages local and local-lvm)."""
    server = start_fakepve(tmp_path)
    try:
        yield server
    finally:
        server.stop()
