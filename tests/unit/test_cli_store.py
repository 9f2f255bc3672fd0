"""``talprov store status`` and ``talprov store upgrade [--sql]``."""

from __future__ import annotations

import json
import sqlite3

import pytest
import sqlalchemy as sa

from talprov.store.upgrade import head_revision
from tests.helpers import REPO, Home
from tests.unit.store.test_legacy_upgrade import load_dump


def tables(home: Home) -> set[str]:
    engine = sa.create_engine(home.store_url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_status_of_a_missing_sqlite_file_says_so_and_creates_nothing(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    # QA: `store status` on a SQLite path that did not exist created the file.
    monkeypatch.chdir(home.root)
    for url, path in (("sqlite:///relative.db", home.root / "relative.db"),
                      (home.store_url, home.root / "state.db")):
        result = home.invoke("--store", url, "store", "status")
        assert result.exit_code == 1, result.output
        assert result.output.startswith("talprov: error: store: "), result.output
        assert f"{path} does not exist" in result.output
        assert "Traceback" not in result.output
        assert not path.exists()


def test_status_writes_nothing_and_upgrade_applies_every_revision(home: Home) -> None:
    sqlite3.connect(home.root / "state.db").close()  # an empty database file
    before = home.invoke("store", "status", "-o", "json")
    assert before.exit_code == 0, before.output
    shown = json.loads(before.output)
    assert (shown["current"], shown["head"]) == (None, head_revision())
    assert shown["pending"][-1] == head_revision()
    assert "requests" not in tables(home)

    upgraded = home.invoke("store", "upgrade", "-o", "yaml")
    assert upgraded.exit_code == 0, upgraded.output
    assert f"current: '{head_revision()}'" in upgraded.output
    assert "pending: []" in upgraded.output
    assert "requests" in tables(home)
    again = home.invoke("store", "upgrade", "-o", "json")
    assert json.loads(again.output)["pending"] == []


def test_a_store_of_talprov_0_1_shows_its_version_then_upgrades(home: Home) -> None:
    load_dump(home.store_url, "sqlite", 2)
    shown = json.loads(home.invoke("store", "status", "-o", "json").output)
    assert (shown["legacy_version"], shown["current"]) == (2, "0002")
    # No TALPROV_STORE_KEY needed: the sealed secrets move as they are.
    result = home.invoke("store", "upgrade", "-o", "json")
    assert json.loads(result.output)["current"] == head_revision()
    assert "schema_version" not in tables(home)


def test_sql_prints_the_script_and_touches_no_database(home: Home) -> None:
    result = home.invoke("--store", "postgresql://admin:hunter2@db.invalid/talprov",
                         "store", "upgrade", "--sql")
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE request_sets" in result.output
    assert "hunter2" not in result.output
    tail = home.invoke("store", "upgrade", "--sql", "--from", "0003")
    # Only the revisions after 0003: the tables made before are not made again.
    assert "CREATE TABLE request_sets" not in tail.output
    assert "CREATE TABLE ui_sessions" in tail.output  # 0006
    assert "DROP TABLE IF EXISTS schema_version" in tail.output
    assert not (home.root / "state.db").exists() or "requests" not in tables(home)


def test_a_newer_store_is_one_error_line(home: Home) -> None:
    assert home.invoke("store", "upgrade").exit_code == 0
    with sqlite3.connect(home.root / "state.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffff'")
    result = home.invoke("store", "status")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"talprov: error: store: store schema revision 'ffff' is unknown to this talprov "
        f"(newest known: {head_revision()}); upgrade talprov"
    ]


def test_an_unknown_start_revision_is_one_line_naming_from(home: Home) -> None:
    result = home.invoke("store", "upgrade", "--sql", "--from", "3")
    assert result.exit_code == 2
    # Every revision the package ships, so a new revision needs no edit here.
    shipped = sorted(p.name[:4] for p in (REPO / "talprov" / "store" / "schema_versions"
                                          / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert shipped[:7] == ["0001", "0002", "0003", "0004", "0005", "0006", "0007"]
    assert result.output.strip().splitlines() == [
        f"talprov: error: --from: unknown revision '3' (revisions: {', '.join(shipped)})"]


def test_sql_from_the_newest_revision_says_there_is_nothing_to_apply(home: Home) -> None:
    result = home.invoke("store", "upgrade", "--sql", "--from", head_revision())
    assert result.exit_code == 0, result.output
    # Still valid SQL for a pipe into psql: one comment line.
    assert result.stdout.strip().splitlines() == [
        f"-- revision {head_revision()} is the newest: there is nothing to apply"]


def test_a_store_of_another_database_is_one_line_naming_the_two(home: Home) -> None:
    # QA: a mysql:// store said "database driver missing: No module named 'MySQLdb'",
    # as if installing a driver would help.
    result = home.invoke("--store", "mysql://u:CANARY-pw@db.example/talprov", "machine", "list")
    assert result.exit_code == 2, result.output  # invalid input, as the README says
    assert "a mysql store is not supported; talprov stores in SQLite" in result.output
    assert "MySQLdb" not in result.output
    assert "CANARY-pw" not in result.output
    assert "Traceback" not in result.output
