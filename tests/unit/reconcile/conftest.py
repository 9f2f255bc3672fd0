"""Fixtures shared by the reconcile tests: a fake clock and a migrated SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from talprov.store.store import Store
from talprov.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'state.db'}")
    s.migrate()
    return s
