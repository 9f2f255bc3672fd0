"""Schema upgrades with Alembic, under the store's own locks.

The versioned scripts live in :mod:`talprov.store.schema_versions`. Every run
happens inside one write transaction that first takes a lock, so a second
process waits for the first and then finds nothing left to do: ``BEGIN
IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on PostgreSQL. Both
databases have transactional DDL, so a failing script leaves the schema where
it was. Other databases fall back on ``alembic_version``'s primary key and one
retry.

Stores made by talprov 0.1 recorded their version in a ``schema_version``
table; they are stamped with the matching revision first, and revision 0004
drops that table.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection, Engine

from talprov.errors import ConfigError
from talprov.store.engine import create_store_engine, transaction
from talprov.store.errors import StoreError
from talprov.store.schema import metadata

log = logging.getLogger(__name__)
SCRIPTS = Path(__file__).with_name("schema_versions")
# The advisory lock's key: "talprov" in ASCII. Every talprov that upgrades uses it.
_PG_UPGRADE_LOCK = 0x7461_6C70_726F_76
_LOCKING_DIALECTS = ("sqlite", "postgresql")
# talprov 0.1's schema_version numbers and the revisions that make the same tables.
LEGACY_VERSIONS = {1: "0001", 2: "0002", 3: "0003"}


@dataclass(frozen=True)
class SchemaStatus:
    """Where a store's schema stands. ``current`` is None for an empty database."""

    current: str | None
    head: str
    pending: tuple[str, ...]
    legacy_version: int | None
    """talprov 0.1's ``schema_version`` when the store was never run through Alembic."""


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for the packaged scripts; ``url`` only for offline SQL."""
    config = Config(output_buffer=io.StringIO())
    config.set_main_option("script_location", str(SCRIPTS).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision this talprov knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the packaged schema_versions has no scripts"
    return head


def run_in_context(config: Config) -> None:
    """Body of env.py: run the migrations Alembic has lined up.

    Offline, as SQL text. Online, on the connection (already in its locked
    transaction) that :func:`upgrade` put in ``config.attributes``; or, when the
    ``alembic`` command runs this (``alembic -c alembic.ini revision
    --autogenerate`` in a checkout), on a connection to ``sqlalchemy.url`` opened
    here, under the same locks.
    """
    from alembic import context

    if context.is_offline_mode():
        context.configure(url=config.get_main_option("sqlalchemy.url"),
                          target_metadata=metadata, literal_binds=True, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    given = config.attributes.get("connection")
    if given is not None:
        _run_on(given)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise StoreError("alembic config: sqlalchemy.url is not set")
    engine, lock = create_store_engine(url)
    try:
        with transaction(engine, lock, write=True) as conn:
            _hold_upgrade_lock(conn)
            _run_on(conn)
    finally:
        engine.dispose()


def _run_on(conn: Connection) -> None:
    from alembic import context

    context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def upgrade(engine: Engine, lock: threading.RLock | None = None, *, target: str = "head") -> str:
    """Bring the schema to ``target`` (default: the newest) and return the revision.

    Idempotent, and safe when several processes call it at once. ``lock``
    serialises use of an in-memory SQLite engine (see ``create_store_engine``).
    Raises :class:`StoreError` when the database is newer than this talprov (an
    older talprov must not write to a newer schema) or cannot be reached.
    """
    def run() -> str:
        return _run(engine, lock, lambda config: command.upgrade(config, target))

    try:
        return run()
    except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
        if engine.dialect.name in _LOCKING_DIALECTS:
            raise
        # A database without our lock: a concurrent process applied the same
        # script first. Looking again finds it applied.
        return run()


def downgrade(engine: Engine, lock: threading.RLock | None = None, *, target: str) -> str:
    """Take the schema back to ``target`` (a revision, or ``base`` for nothing).

    Same locking and errors as :func:`upgrade`.
    """
    return _run(engine, lock, lambda cfg: command.downgrade(cfg, target), "downgraded")


def status(engine: Engine, lock: threading.RLock | None = None) -> SchemaStatus:
    """Where the schema stands; reads only. Raises :class:`StoreError` when unreachable
    or when the store is newer than this talprov."""
    with transaction(engine, lock, write=False) as conn:
        legacy = _legacy_version(conn)
        current = MigrationContext.configure(conn).get_current_revision()
    if current is None and legacy is not None:
        current = LEGACY_VERSIONS[legacy]
    scripts = ScriptDirectory.from_config(alembic_config())
    _check_known(scripts, current)
    pending = [s.revision for s in scripts.iterate_revisions("head", current)]
    return SchemaStatus(current=current, head=head_revision(),
                        pending=tuple(reversed(pending)), legacy_version=legacy)


def offline_sql(url: str, *, start: str | None = None) -> str:
    """The SQL that upgrades a ``url``-dialect store from ``start`` (default: empty)
    to the newest revision, for a DBA to apply by hand. Connects to nothing.
    Raises ``ConfigError`` naming ``--from`` for a revision there is none of."""
    config = alembic_config(url)
    if start is not None:
        known = [s.revision for s in ScriptDirectory.from_config(config).walk_revisions()]
        if start not in known:
            raise ConfigError("--from", f"unknown revision {start!r} "
                                        f"(revisions: {', '.join(sorted(known))})")
    command.upgrade(config, f"{start}:head" if start else "head", sql=True)
    buffer = config.output_buffer
    assert isinstance(buffer, io.StringIO)
    return buffer.getvalue()


def _run(engine: Engine, lock: threading.RLock | None, run: Callable[[Config], None],
         done: str = "upgraded") -> str:
    """``run`` under the upgrade lock; logs once (INFO) when the revision changed,
    saying it was ``done`` ("upgraded", "downgraded"). Returns the revision."""
    with transaction(engine, lock, write=True) as conn:
        _hold_upgrade_lock(conn)
        migration = MigrationContext.configure(conn)
        scripts = ScriptDirectory.from_config(alembic_config())
        current = migration.get_current_revision()
        if current is None:
            _stamp_legacy(conn, migration, scripts)
        before = migration.get_current_revision()  # a legacy store's, once stamped
        _check_known(scripts, current)
        config = alembic_config()
        config.attributes["connection"] = conn
        try:
            run(config)
        except CommandError as exc:
            raise StoreError(f"schema upgrade: {exc}") from None
        after = migration.get_current_revision() or "base"
        if after != (before or "base"):
            log.info("store schema %s from %s to %s", done, before or "empty", after)
        return after


def _hold_upgrade_lock(conn: Connection) -> None:
    """Make every other upgrader wait until this transaction ends. On SQLite the
    write transaction's BEGIN IMMEDIATE already does; PostgreSQL needs an
    advisory lock, released with the transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_UPGRADE_LOCK})


def _legacy_version(conn: Connection) -> int | None:
    if "schema_version" not in sa.inspect(conn).get_table_names():
        return None
    found = conn.execute(sa.text("SELECT max(version) FROM schema_version")).scalar()
    if found is None:
        return None
    if int(found) not in LEGACY_VERSIONS:
        raise StoreError(f"store schema version {found} is newer than this talprov knows "
                         "(3); upgrade talprov")
    return int(found)


def _stamp_legacy(conn: Connection, migration: MigrationContext,
                  scripts: ScriptDirectory) -> None:
    legacy = _legacy_version(conn)
    if legacy is not None:
        migration.stamp(scripts, LEGACY_VERSIONS[legacy])


def _check_known(scripts: ScriptDirectory, revision: str | None) -> None:
    if revision is not None and revision not in {s.revision for s in scripts.walk_revisions()}:
        raise StoreError(f"store schema revision {revision!r} is unknown to this talprov "
                         f"(newest known: {head_revision()}); upgrade talprov")
