"""`talprov config check` checks the store setting as opening the store does,
creating nothing and connecting nowhere.

QA: ``store: "mysql://x"`` passed the check while ``machine list`` refused it (exit
2); ``sqlite:////nonexistent-dir/x.db`` passed it and every command then failed
"unable to open database file"; a relative ``sqlite:///rel.db`` silently made a
store in whatever directory a command ran in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Home

PASSWORD = "CANARY-pg-password-5c1e"


def _check(home: Home, store: str) -> tuple[int, dict[str, Any], str]:
    home.write_config()
    text = home.config_path.read_text().replace(f"store: {home.store_url}", f"store: '{store}'")
    home.config_path.write_text(text)
    result = home.invoke("config", "check", "-o", "json")
    rows = {row["part"]: row for row in json.loads(result.stdout)}
    return result.exit_code, rows["store"], result.stderr


def test_an_unsupported_store_is_refused_as_every_command_refuses_it(home: Home) -> None:
    code, row, _ = _check(home, "mysql://x")
    assert code == 2, row
    assert row["file"] == str(home.config_path)
    assert row["key"] == "store"
    assert "a mysql store is not supported" in row["error"]
    listed = home.invoke("machine", "list")
    assert listed.exit_code == 2
    assert row["error"] in listed.stderr


def test_a_string_that_is_no_url_is_refused(home: Home) -> None:
    code, row, _ = _check(home, "not a url")
    assert code == 2, row
    assert "not a valid SQLAlchemy URL" in row["error"]


def test_a_sqlite_file_in_a_missing_directory_is_named(home: Home) -> None:
    missing = home.root / "nonexistent-dir"
    code, row, _ = _check(home, f"sqlite:///{missing}/x.db")
    assert code == 1, row
    assert row["key"] == "store"
    assert f"the directory {missing} does not exist" in row["error"]
    assert not missing.exists()  # the check creates nothing
    # Opening it says the same, not SQLite's "unable to open database file".
    listed = home.invoke("machine", "list")
    assert listed.exit_code == 1
    assert f"the directory {missing} does not exist" in listed.stderr
    assert not missing.exists()


def test_a_relative_sqlite_path_is_warned_about_and_resolved_as_before(
        home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, row, stderr = _check(home, "sqlite:///rel.db")
    assert code == 0, row
    assert row["result"] == "ok"
    warning = row["warning"]
    assert "rel.db is a relative path" in warning
    assert f"resolved against the current directory ({elsewhere})" in warning
    assert "not the config file's" in warning
    assert warning in stderr
    assert not (elsewhere / "rel.db").exists()  # checked, not created
    # Still resolved against the current directory: existing stores stay where they are.
    assert home.invoke("machine", "list").exit_code == 0
    assert (elsewhere / "rel.db").exists()
    assert not (home.root / "rel.db").exists()


def test_a_good_sqlite_store_is_ok_and_not_created(home: Home) -> None:
    target = home.root / "new" / "state.db"
    target.parent.mkdir()
    code, row, _ = _check(home, f"sqlite:///{target}")
    assert code == 0, row
    assert row == {"part": "store", "type": "sqlite", "result": "ok",
                   "file": str(home.config_path), "key": "store", "error": None,
                   "warning": None}
    assert not target.exists()


def test_a_postgresql_store_is_checked_without_connecting_or_showing_its_password(
        home: Home) -> None:
    # Port 9 answers nothing: a connection attempt would fail the row.
    code, row, stderr = _check(home, f"postgresql://talprov:{PASSWORD}@127.0.0.1:9/talprov")
    assert code == 0, row
    assert row["type"] == "postgresql"
    assert PASSWORD not in json.dumps(row) + stderr


def test_a_store_given_by_option_is_checked_too(home: Home) -> None:
    result = home.invoke("--store", "mysql://x", "config", "check", "-o", "json")
    assert result.exit_code == 2, result.output
    row = next(r for r in json.loads(result.stdout) if r["part"] == "store")
    assert row["file"] is None
    assert row["key"] == "--store"
    assert "a mysql store is not supported" in row["error"]


@pytest.mark.parametrize("store", [
    # A scheme talprov does not take (mysql) or a driver not installed: the refusal
    # names the store, never its password, however it is written.
    f"mysql://talprov:{PASSWORD}@127.0.0.1:9/talprov",
    f"mysql://talprov@127.0.0.1:9/talprov?password={PASSWORD}",
    f"postgresql+psycopg2://talprov:{PASSWORD}@127.0.0.1:9/talprov",
    f"postgresql+psycopg2://talprov@127.0.0.1:9/talprov?sslpassword={PASSWORD}",
    # An "@" in the password, not percent-encoded: the URL's parser takes part of
    # the password for the host.
    f"mysql://talprov:ab@{PASSWORD}@127.0.0.1:9/talprov",
])
def test_a_refused_store_never_shows_its_password(home: Home, store: str) -> None:
    code, row, stderr = _check(home, store)

    assert code != 0, row
    assert row["error"]
    assert PASSWORD not in json.dumps(row) + stderr


def test_a_postgres_scheme_is_postgresql(home: Home) -> None:
    # libpq and psycopg take postgres://; SQLAlchemy calls it another database.
    code, row, stderr = _check(home, f"postgres://talprov@127.0.0.1:9/talprov?password={PASSWORD}")

    assert code == 0, row
    assert row["type"] == "postgresql"
    assert PASSWORD not in json.dumps(row) + stderr
