"""The migration runner: versioned, idempotent, all-or-nothing, and in step with schema.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from talprov.store import Store, StoreError
from talprov.store.engine import create_store_engine
from talprov.store.migrations import (
    MIGRATIONS,
    Migration,
    current_version,
    latest_version,
    migrate,
)
from talprov.store.schema import metadata
from tests.unit.store.factories import make_request


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    created, _lock = create_store_engine(store_url)
    yield created
    created.dispose()


def version_of(engine: Engine) -> int:
    with engine.connect() as conn:
        return current_version(conn)


def _create_widgets(conn: Connection) -> None:
    md = sa.MetaData()
    sa.Table("widgets", md, sa.Column("id", sa.Integer, primary_key=True))
    md.create_all(conn)


def _add_widget_name(conn: Connection) -> None:
    conn.execute(sa.text("ALTER TABLE widgets ADD COLUMN name VARCHAR(50)"))


def _index_widget_name(conn: Connection) -> None:
    conn.execute(sa.text("CREATE INDEX ix_widgets_name ON widgets (name)"))


TOY = (
    Migration(1, "widgets", _create_widgets),
    Migration(2, "widget names", _add_widget_name),
    Migration(3, "index widget names", _index_widget_name),
)


def test_migrate_is_idempotent_and_records_the_version(engine: Engine) -> None:
    assert version_of(engine) == 0
    assert migrate(engine) == latest_version()
    assert migrate(engine) == latest_version()
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT version FROM schema_version ORDER BY version"))
        assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]


def test_a_store_at_version_n_migrates_to_the_latest(engine: Engine) -> None:
    assert migrate(engine, TOY, target=1) == 1
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO widgets (id) VALUES (7)"))

    assert migrate(engine, TOY) == 3

    inspector = sa.inspect(engine)
    assert {c["name"] for c in inspector.get_columns("widgets")} == {"id", "name"}
    assert "ix_widgets_name" in {i["name"] for i in inspector.get_indexes("widgets")}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id FROM widgets")).scalar_one() == 7
        names = conn.execute(sa.text("SELECT name FROM schema_version ORDER BY version"))
        assert [r[0] for r in names] == ["widgets", "widget names", "index widget names"]


def test_a_real_store_takes_a_later_migration(store_url: str) -> None:
    with Store(store_url) as store:
        store.migrate()
        store.create_request(make_request())

    def add_note_column(conn: Connection) -> None:
        conn.execute(sa.text("ALTER TABLE requests ADD COLUMN note VARCHAR(20)"))

    future = (*MIGRATIONS, Migration(latest_version() + 1, "request notes", add_note_column))
    engine, _ = create_store_engine(store_url)
    try:
        assert migrate(engine, future) == latest_version() + 1
        assert "note" in {c["name"] for c in sa.inspect(engine).get_columns("requests")}
    finally:
        engine.dispose()
    # Data written before the upgrade is intact; this talprov now refuses the newer schema.
    with Store(store_url) as store:
        assert store.get_request("web-1") is not None
        with pytest.raises(StoreError, match="newer than this talprov"):
            store.migrate()


def test_a_failing_migration_changes_nothing(engine: Engine) -> None:
    migrate(engine, TOY, target=1)

    def half_done(conn: Connection) -> None:
        conn.execute(sa.text("CREATE TABLE gadgets (id INTEGER PRIMARY KEY)"))
        raise RuntimeError("migration bug")

    broken = (*TOY[:2], Migration(3, "broken", half_done))
    with pytest.raises(RuntimeError, match="migration bug"):
        migrate(engine, broken)

    assert version_of(engine) == 1
    inspector = sa.inspect(engine)
    assert not inspector.has_table("gadgets")
    assert {c["name"] for c in inspector.get_columns("widgets")} == {"id"}
    assert migrate(engine, TOY) == 3


def test_migration_lists_must_be_ordered(engine: Engine) -> None:
    with pytest.raises(ValueError, match="increasing"):
        migrate(engine, (TOY[1], TOY[0]))


def test_migrated_schema_matches_schema_module(engine: Engine) -> None:
    migrate(engine)
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        columns = {c["name"]: c for c in inspector.get_columns(table.name)}
        assert set(columns) == {c.name for c in table.columns}, table.name
        for column in table.columns:
            assert columns[column.name]["nullable"] == column.nullable, (table.name, column.name)
        expected_indexes = {i.name for i in table.indexes}
        assert expected_indexes <= {i["name"] for i in inspector.get_indexes(table.name)}
        primary = inspector.get_pk_constraint(table.name)["constrained_columns"]
        assert set(primary) == {c.name for c in table.primary_key.columns}, table.name
