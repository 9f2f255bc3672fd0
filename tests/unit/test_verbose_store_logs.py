"""``-v`` shows talprov's own INFO lines, not Alembic's.

QA before: every command under ``-v`` printed four ``alembic.runtime.migration``
lines ("Context impl SQLiteImpl.", "Will assume non-transactional DDL.") and one
per migration script, in Alembic's words.
"""

from __future__ import annotations

from tests.helpers import Home


def test_v_says_a_schema_upgrade_once_in_talprovs_words(home: Home) -> None:
    home.write_config(store=f"sqlite:///{home.root / 'fresh.sqlite'}")
    first = home.run("-v", "machine", "list", check=True)
    assert "alembic" not in first.stderr, first.stderr
    said = [line for line in first.stderr.splitlines() if "store schema" in line]
    assert len(said) == 1, first.stderr
    assert "upgraded from empty to" in said[0]
    again = home.run("-v", "machine", "list", check=True)
    assert "alembic" not in again.stderr, again.stderr
    assert "store schema" not in again.stderr, again.stderr


def test_vv_shows_alembics_own_lines(home: Home) -> None:
    home.write_config(store=f"sqlite:///{home.root / 'fresh.sqlite'}")
    run = home.run("-vv", "machine", "list", check=True)
    assert "alembic.runtime.migration" in run.stderr
