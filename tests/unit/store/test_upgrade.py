"""Alembic upgrades: idempotent, all-or-nothing, reversible, and in step with schema.py."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from talprov.store import Store, StoreError
from talprov.store import upgrade as upgrade_module
from talprov.store.engine import create_store_engine
from talprov.store.schema import metadata
from talprov.store.upgrade import (
    SCRIPTS,
    downgrade,
    head_revision,
    offline_sql,
    status,
    upgrade,
)
from tests.unit.store.factories import make_request


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    created, _lock = create_store_engine(store_url)
    yield created
    created.dispose()


def drift(engine: Engine, models: sa.MetaData = metadata) -> list[object]:
    """What Alembic's autogenerate would write to bring the database to ``models``."""
    with engine.connect() as conn:
        found: list[object] = compare_metadata(MigrationContext.configure(conn), models)
    return found


def test_upgrade_is_idempotent_and_records_the_revision(engine: Engine) -> None:
    assert status(engine).current is None
    assert upgrade(engine) == head_revision()
    assert upgrade(engine) == head_revision()
    now = status(engine)
    assert (now.current, now.pending, now.legacy_version) == (head_revision(), (), None)


def test_the_models_and_the_migrations_agree(engine: Engine) -> None:
    upgrade(engine)
    assert drift(engine) == []


def test_the_drift_check_sees_a_model_change(engine: Engine) -> None:
    upgrade(engine)
    changed = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["requests"].append_column(sa.Column("note", sa.String(20)))
    sa.Table("widgets", changed, sa.Column("id", sa.Integer, primary_key=True))
    found = drift(engine, changed)
    assert ("add_column", None, "requests") in [op[:3] for op in found if isinstance(op, tuple)]
    assert "widgets" in {op[1].name for op in found if isinstance(op, tuple)
                         and op[0] == "add_table"}


def autogenerate(tmp_path: Path) -> str:
    """The upgrade() body ``alembic revision --autogenerate`` writes against a store
    at head, using a copy of the packaged scripts."""
    scripts = tmp_path / "scripts"
    shutil.copytree(SCRIPTS, scripts)
    config = Config()
    config.set_main_option("script_location", str(scripts))
    config.set_main_option("sqlalchemy.url", f"sqlite:///{tmp_path / 'dev.db'}")
    command.upgrade(config, "head")
    command.revision(config, message="probe", autogenerate=True, rev_id="0099")
    (written,) = (scripts / "versions").glob("0099_*.py")
    text = written.read_text()
    return text[text.index("def upgrade"):text.index("def downgrade")]


def test_autogenerate_writes_an_empty_revision_when_nothing_changed(tmp_path: Path) -> None:
    body = autogenerate(tmp_path)
    assert "op." not in body
    assert "pass" in body


def test_autogenerate_writes_the_change_of_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changed = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["requests"].append_column(sa.Column("note", sa.String(20)))
    monkeypatch.setattr(upgrade_module, "metadata", changed)
    body = autogenerate(tmp_path)
    assert "add_column('note'" in body or "add_column(sa.Column('note'" in body, body


def test_down_to_nothing_and_back_up_keeps_the_schema(engine: Engine) -> None:
    upgrade(engine)
    assert downgrade(engine, target="base") == "base"
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
    upgrade(engine)
    assert drift(engine) == []


def test_a_set_survives_a_downgrade_below_its_table(store_url: str, engine: Engine) -> None:
    with Store(store_url, key="k") as store:
        store.migrate()
        store.put_request_set("pool", {"kind": "MachineRequestSet", "machine_count": 1},
                              machine_config="cfg", join_url=None)
    downgrade(engine, target="0001")
    with engine.connect() as conn:
        spec = conn.execute(sa.text("SELECT spec FROM clusters")).scalar_one()
    assert json.loads(spec)["machine_config"].startswith("fernet:")
    with Store(store_url, key="k") as store:
        store.migrate()
        found = store.get_request_set("pool")
    assert found is not None
    assert found.machine_config.get_secret_value() == "cfg"


def test_a_newer_store_is_refused_and_left_alone(store_url: str, engine: Engine) -> None:
    with Store(store_url) as store:
        store.migrate()
        store.create_request(make_request())
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with Store(store_url) as store:
        with pytest.raises(StoreError, match="unknown to this talprov"):
            store.migrate()
        assert store.get_request("web-1") is not None
    with pytest.raises(StoreError, match="upgrade talprov"):
        status(engine)


def test_a_failing_script_changes_nothing(store_url: str, engine: Engine) -> None:
    upgrade(engine, target="0001")
    with engine.begin() as conn:  # a set document 0002 cannot read
        conn.execute(sa.text("INSERT INTO clusters (name, spec, updated_at) VALUES "
                             "('machine-request-set/bad', 'not json', '2026-01-01')"))
    with pytest.raises(StoreError, match="machine-request-set/bad"):
        upgrade(engine)
    assert status(engine).current == "0001"
    assert not sa.inspect(engine).has_table("request_sets")


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_offline_sql_names_every_table(dialect: str) -> None:
    sql = offline_sql(f"{dialect}://")
    for table in metadata.sorted_tables:
        assert f"CREATE TABLE {table.name} " in sql, table.name
    assert "ADD COLUMN lease_owner" in sql
    assert f"version_num='{head_revision()}'" in sql


def test_offline_sql_applied_by_hand_gives_the_models_schema(postgres_url: str) -> None:
    engine, _lock = create_store_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(offline_sql("postgresql://"))
        assert status(engine).current == head_revision()
        assert drift(engine) == []
    finally:
        engine.dispose()


def test_offline_sql_from_a_revision_holds_only_what_follows() -> None:
    sql = offline_sql("sqlite://", start="0002")
    assert "CREATE TABLE requests" not in sql
    assert "ADD COLUMN lease_owner" in sql


def _child_rows(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        labels = conn.execute(sa.text("SELECT count(*) FROM request_labels")).scalar_one()
        events = conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one()
    return labels, events


@pytest.mark.parametrize("target", ["0008", "0007", "0006"])
def test_a_downgrade_keeps_every_requests_labels_and_events(
    store_url: str, engine: Engine, target: str
) -> None:
    # A rebuild of `requests` on SQLite (batch drop_column) dropped the old table
    # with foreign keys on, which cascaded into request_labels and events.
    with Store(store_url, key="k") as store:
        store.migrate()
        store.create_request(make_request())
    before = _child_rows(engine)
    assert before[0] == 2
    assert before[1] >= 1
    downgrade(engine, target=target)
    assert _child_rows(engine) == before
    upgrade(engine)
    assert _child_rows(engine) == before
    with Store(store_url, key="k") as store:
        found = store.get_request("web-1")
    assert found is not None
    assert dict(found.request.labels) == {"role": "worker",
                                                                 "cluster": "prod"}
