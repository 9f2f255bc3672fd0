"""Stores made by talprov 0.1 (schema versions 1-3, its own runner) upgrade in place.

The fixtures in legacy/ are SQL dumps of real stores that the old runner and
store code wrote, on SQLite and on PostgreSQL, with every secret sealed under
``KEY``. Each test loads one, reads what it holds with nothing but SQL and the
SecretCodec, upgrades it through ``Store.migrate`` (Alembic) and reads it back
through the store: the same rows, and the same secrets after decryption.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from talprov.store import Store
from talprov.store.crypto import SecretCodec
from talprov.store.engine import create_store_engine
from talprov.store.upgrade import head_revision, status
from tests.unit.store.test_upgrade import drift

KEY = "legacy-fixture-key"
LEGACY = Path(__file__).with_name("legacy")
SET_PREFIX = "machine-request-set/"
KEPT_TABLES = ("requests", "request_labels", "events", "audit")


def load_dump(url: str, dialect: str, version: int) -> None:
    """Recreate the fixture store ``<dialect>_v<version>.sql`` at ``url``."""
    sql = (LEGACY / f"{dialect}_v{version}.sql").read_text()
    if dialect == "sqlite":
        raw = sqlite3.connect(sa.make_url(url).database or "")
        raw.executescript(sql)
        raw.close()
        return
    # psql meta-commands (\restrict) are for psql; the rest is plain SQL.
    statements = "\n".join(line for line in sql.splitlines() if not line.startswith("\\"))
    engine, _lock = create_store_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(statements)
    engine.dispose()  # the dump empties search_path on its connection


def before_upgrade(url: str) -> dict[str, Any]:
    """Row counts and decrypted secrets, read with SQL and the codec only."""
    codec, engine = SecretCodec(KEY), create_store_engine(url)[0]
    with engine.connect() as conn:
        def count(table: str) -> int:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608

        counts = {table: count(table) for table in KEPT_TABLES}
        requests = {
            row.id: (codec.decode(row.machine_config),
                     codec.decode(row.join_api_url) if row.join_api_url else None)
            for row in conn.execute(
                sa.text("SELECT id, machine_config, join_api_url FROM requests"))
        }
        names = [r.name for r in conn.execute(sa.text("SELECT name FROM clusters"))]
        sets: dict[str, tuple[str, str | None]] = {}
        for row in conn.execute(sa.text("SELECT name, spec FROM clusters")):
            if row.name.startswith(SET_PREFIX):  # version 1 kept sets as cluster documents
                doc = json.loads(row.spec)
                sets[row.name[len(SET_PREFIX):]] = (codec.decode(doc["machine_config"]),
                                                    codec.decode(doc["join_api_url"]))
        if sa.inspect(conn).has_table("request_sets"):
            for row in conn.execute(sa.text("SELECT name, machine_config, join_api_url "
                                            "FROM request_sets")):
                sets[row.name] = (codec.decode(row.machine_config),
                                  codec.decode(row.join_api_url))
    engine.dispose()
    counts["clusters"] = len([n for n in names if not n.startswith(SET_PREFIX)])
    counts["request_sets"] = len(sets)
    return {"counts": counts, "requests": requests, "sets": sets}


def after_upgrade(store: Store) -> dict[str, Any]:
    """The same facts, read through the upgraded store."""
    requests = {}
    for record in store.list_requests():
        join = record.request.join
        requests[record.request.id] = (record.request.machine_config.get_secret_value(),
                                       join.api_url.get_secret_value() if join else None)
    sets = {}
    for name in store.list_request_sets():
        found = store.get_request_set(name)
        assert found is not None
        sets[name] = (found.machine_config.get_secret_value(),
                      found.join_url.get_secret_value() if found.join_url else None)
    with store._engine.connect() as conn:
        counts = {table: int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608
                  for table in (*KEPT_TABLES, "clusters", "request_sets")}
    return {"counts": counts, "requests": requests, "sets": sets}


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_store_of_talprov_0_1_upgrades_with_nothing_lost(
    request: pytest.FixtureRequest, tmp_path: Path, dialect: str, version: int
) -> None:
    url = (f"sqlite:///{tmp_path / 'state.db'}" if dialect == "sqlite"
           else str(request.getfixturevalue("postgres_url")))
    load_dump(url, dialect, version)
    before = before_upgrade(url)
    assert len(before["requests"]) == 3
    assert before["sets"] == {"pool": ("set config secret",
                                       "https://omni.example/join?token=set")}

    with Store(url, key=KEY) as store:
        assert status(store._engine).legacy_version == version
        store.migrate()
        assert after_upgrade(store) == before
        assert store.get_cluster("prod") is not None
        assert status(store._engine).current == head_revision()
        assert not sa.inspect(store._engine).has_table("schema_version")
        assert drift(store._engine) == []
        store.migrate()  # a second run finds nothing to do
        assert after_upgrade(store) == before
