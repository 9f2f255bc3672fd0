"""Which file a SQLite store URL names, found without creating anything: one rule
for ``store status`` (missing_sqlite_file) and the store-key check
(holds_no_file_yet), ``file:`` URIs included."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from talprov.store import Store
from talprov.store.engine import holds_no_file_yet, missing_sqlite_file
from talprov.store.errors import UnsupportedStore
from tests.unit.store.factories import make_request


def test_a_plain_path_and_a_file_uri_name_the_same_file(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    plain = f"sqlite:///{db}"
    uri = f"sqlite:///file:{db}?uri=true"
    authority = f"sqlite:///file://localhost{db}?mode=rw&uri=true"
    for url in (plain, uri, authority):
        assert missing_sqlite_file(url) == db, url
        assert holds_no_file_yet(url) is True, url
    sqlite3.connect(db).close()
    for url in (plain, uri, authority):
        # Review: holds_no_file_yet said an existing file: URI's file was not there.
        assert missing_sqlite_file(url) is None, url
        assert holds_no_file_yet(url) is False, url
    assert not (tmp_path / "file:").exists()


def test_memory_stores_and_other_databases(tmp_path: Path) -> None:
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:///file::memory:?uri=true",
                f"sqlite:///file:{tmp_path / 'x'}?mode=memory&cache=shared&uri=true"):
        assert missing_sqlite_file(url) is None, url
        assert holds_no_file_yet(url) is True, url
    pg = "postgresql+psycopg://u:p@127.0.0.1:1/db"
    assert (missing_sqlite_file(pg), holds_no_file_yet(pg)) == (None, False)
    assert list(tmp_path.iterdir()) == []


def test_without_uri_true_a_file_prefix_is_part_of_the_file_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLAlchemy's pysqlite dialect reads "file:" as a URI only with uri=true.
    monkeypatch.chdir(tmp_path)
    assert missing_sqlite_file("sqlite:///file:state.db") == tmp_path / "file:state.db"


def test_a_string_that_is_no_url_is_refused() -> None:
    for check in (missing_sqlite_file, holds_no_file_yet):
        with pytest.raises(UnsupportedStore, match="not a valid SQLAlchemy URL"):
            check("no url at all")


def test_a_shared_memory_uri_is_one_database_for_every_connection() -> None:
    # Counted as memory now, it gets the one shared connection an in-memory store
    # needs (a pool of five would hand out five empty databases).
    url = "sqlite:///file:talprov-shared?mode=memory&cache=shared&uri=true"
    with Store(url) as store:
        store.migrate()
        store.create_request(make_request("r1"))
        assert store.get_request("r1") is not None
