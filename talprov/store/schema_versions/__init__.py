"""Alembic's script directory for the store: ``env.py`` and the versioned scripts.

Run through :mod:`talprov.store.upgrade` (which takes the locks), or through
``talprov store upgrade``; never edit a released script, add a new one.
"""

from __future__ import annotations

import sqlite3

from alembic import op

from talprov.store.errors import StoreError

# ALTER TABLE ... DROP COLUMN arrived in SQLite 3.35.0.
_SQLITE_DROP_COLUMN = (3, 35, 0)


def drop_plain_column(table: str, column: str) -> None:
    """Drop ``column`` (in no index, key or constraint) from ``table`` in place.

    Never through Alembic's batch mode on SQLite: that rebuilds the table, and
    dropping the old copy with foreign keys on (as the store runs) cascades into
    every child table (a downgrade of ``requests`` deleted all labels and events).
    Raises :class:`StoreError` on a SQLite older than 3.35, which has no DROP
    COLUMN, rather than losing rows; the transaction then leaves the schema as it
    was.
    """
    if op.get_bind().dialect.name == "sqlite" and sqlite3.sqlite_version_info < _SQLITE_DROP_COLUMN:
        raise StoreError(f"downgrading {table}.{column} needs SQLite 3.35 or newer "
                         f"(this Python has {sqlite3.sqlite_version})")
    op.drop_column(table, column)
