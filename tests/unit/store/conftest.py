"""Fixtures for the store tests: a migrated store on SQLite and, when the
server binaries are installed, on a real PostgreSQL started for the session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from talprov.store import Store

# Imported so pytest sees the fixtures here; tests/conftest.py may register the
# module as a plugin instead.
from tests.emulators.postgres import postgres_server, postgres_url  # noqa: F401


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """The same tests against a SQLite file and a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store(store_url)
    opened.migrate()
    yield opened
    opened.close()
