"""Versioned schema migrations: an ordered list of functions and a runner.

Each migration builds its own table definitions instead of importing
:mod:`talprov.store.schema`, so that version 1 creates the same tables forever
even after the current schema has moved on.

The runner applies every pending migration and records it in
``schema_version``, all in one transaction, after taking a lock that makes a
second process wait and then find nothing left to do: ``BEGIN IMMEDIATE`` on
SQLite, a transaction-scoped advisory lock on PostgreSQL. Other databases fall
back on the primary key of ``schema_version`` and one retry.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from talprov.store.engine import transaction
from talprov.store.errors import StoreError
from talprov.store.schema import UtcDateTime

# Any constant works; it only has to be the same in every talprov process.
_PG_MIGRATION_LOCK = 0x7461_6C70_726F_76  # "talprov"


@dataclass(frozen=True)
class Migration:
    """One schema step; ``apply`` runs inside the runner's transaction."""

    version: int
    name: str
    apply: Callable[[Connection], None]


def _version_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "schema_version",
        metadata,
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("applied_at", UtcDateTime, nullable=False),
    )


def _v1_initial(conn: Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "requests",
        md,
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("provider", sa.String(255), nullable=False, index=True),
        sa.Column("stage", sa.String(32), nullable=False, index=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("machine_config", sa.Text, nullable=False),
        sa.Column("join_api_url", sa.Text, nullable=True),
        sa.Column("join_options", sa.Text, nullable=True),
        sa.Column("step_index", sa.Integer, nullable=False),
        sa.Column("step_name", sa.String(255), nullable=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime, nullable=True),
        sa.Column("step_started_at", UtcDateTime, nullable=True),
        sa.Column("infra_id", sa.String(255), nullable=True),
        sa.Column("machine_uuid", sa.String(64), nullable=True),
        sa.Column("addresses", sa.Text, nullable=False),
        sa.Column("marked_for_deletion", sa.Boolean, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_until", UtcDateTime, nullable=True),
    )
    sa.Table(
        "request_labels",
        md,
        sa.Column(
            "request_id",
            sa.String(63),
            sa.ForeignKey("requests.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Index("ix_request_labels_key_value", "key", "value"),
    )
    sa.Table(
        "events",
        md,
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "request_id",
            sa.String(63),
            sa.ForeignKey("requests.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    sa.Table(
        "audit",
        md,
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(63), nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    sa.Table(
        "clusters",
        md,
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    md.create_all(conn)


# Before version 2 the service kept each MachineRequestSet as a cluster document
# named with this prefix, its secrets already in SecretCodec text.
_V1_SET_PREFIX = "machine-request-set/"
_V1_SET_SECRET_FIELDS = ("machine_config", "join_api_url")
_V1_SET_TIME_FIELDS = ("created_at", "updated_at")
_SEALED_PREFIXES = ("plain:", "fernet:")


def _v2_request_sets(conn: Connection) -> None:
    md = sa.MetaData()
    request_sets = sa.Table(
        "request_sets",
        md,
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("machine_config", sa.Text, nullable=False),
        sa.Column("join_api_url", sa.Text, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    clusters = sa.Table(
        "clusters",
        md,
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    request_sets.create(conn)
    rows = conn.execute(
        sa.select(clusters).where(clusters.c.name.startswith(_V1_SET_PREFIX, autoescape=True))
    ).all()
    for row in rows:
        conn.execute(request_sets.insert().values(**_v1_set_columns(row)))
    if rows:
        conn.execute(clusters.delete().where(clusters.c.name.in_([r.name for r in rows])))


def _v1_set_columns(row: sa.Row[Any]) -> dict[str, Any]:
    """A version-1 set document as a ``request_sets`` row.

    The secrets are copied as they are: the service sealed them with the same
    SecretCodec and TALPROV_STORE_KEY as the store, and the migration has no key
    to re-encrypt with anyway. Raises StoreError (naming the row, never its
    content) for a document the service cannot have written.
    """
    name = row.name[len(_V1_SET_PREFIX) :]
    try:
        doc = json.loads(row.spec)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise StoreError(
            f"cluster row {row.name!r} is not a request set document; fix or remove it"
        )
    sealed = {field: doc.get(field) for field in _V1_SET_SECRET_FIELDS}
    for field, value in sealed.items():
        optional = field == "join_api_url"
        well_formed = isinstance(value, str) and value.startswith(_SEALED_PREFIXES)
        if not (well_formed or (optional and value is None)):
            raise StoreError(f"request set {name!r}: stored {field} is not in a known format")
    times = {field: _v1_time(doc.get(field), row.updated_at) for field in _V1_SET_TIME_FIELDS}
    document = {
        key: value
        for key, value in doc.items()
        if key not in _V1_SET_SECRET_FIELDS and key not in _V1_SET_TIME_FIELDS
    }
    return {
        "name": name,
        "document": json.dumps(document, sort_keys=True, separators=(",", ":")),
        "machine_config": sealed["machine_config"],
        "join_api_url": sealed["join_api_url"],
        "version": 1,
        **times,
    }


def _v1_time(text: object, fallback: datetime) -> datetime:
    # The service wrote aware ISO 8601 times; anything else falls back on the
    # cluster row's own timestamp rather than failing the upgrade.
    if isinstance(text, str):
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return fallback
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return fallback


def _v3_cluster_leases(conn: Connection) -> None:
    # A lease per cluster, so that several `talprov serve` replicas never run
    # scaler passes for one cluster at once (two planners would both create).
    for column in (
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_until", UtcDateTime, nullable=True),
    ):
        type_sql = column.type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE clusters ADD COLUMN {column.name} {type_sql}"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _v1_initial),
    Migration(2, "request sets table", _v2_request_sets),
    Migration(3, "cluster leases", _v3_cluster_leases),
)
"""Every migration, oldest first. Append only; never edit a released one."""


def latest_version(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """The schema version the given migrations lead to (0 for none)."""
    return max((m.version for m in migrations), default=0)


def current_version(conn: Connection) -> int:
    """The version recorded in the database; 0 for a database never migrated."""
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    table = _version_table(sa.MetaData())
    found = conn.execute(sa.select(sa.func.max(table.c.version))).scalar()
    return int(found or 0)


def _check_order(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)) or any(v < 1 for v in versions):
        raise ValueError("migrations must have unique, increasing, positive versions")


def migrate(
    engine: Engine,
    migrations: Sequence[Migration] = MIGRATIONS,
    *,
    target: int | None = None,
    now: datetime | None = None,
    lock: threading.RLock | None = None,
) -> int:
    """Bring the schema up to ``target`` (default: the latest) and return the version.

    Idempotent, and safe when several processes call it at once: the losers
    wait for the winner and then find the work done. All pending migrations
    apply in one transaction, so a failing one leaves the schema where it was.
    ``lock`` serialises use of an in-memory SQLite engine (see ``create_store_engine``).
    Raises :class:`StoreError` when the database is newer than these migrations
    (an older talprov must not write to a newer schema) or cannot be reached.
    """
    _check_order(migrations)
    goal = latest_version(migrations) if target is None else target
    lockless = engine.dialect.name not in ("sqlite", "postgresql")
    attempts = 2 if lockless else 1
    for attempt in range(attempts):
        try:
            return _migrate_once(engine, lock, migrations, goal, now or datetime.now(UTC))
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
            # Only reachable without a lock: another process applied the same step.
            if attempt + 1 >= attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _migrate_once(
    engine: Engine,
    lock: threading.RLock | None,
    migrations: Sequence[Migration],
    goal: int,
    now: datetime,
) -> int:
    with transaction(engine, lock, write=True) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
        version_table = _version_table(sa.MetaData())
        version_table.create(conn, checkfirst=True)
        version = current_version(conn)
        newest_known = latest_version(migrations)
        if version > newest_known:
            raise StoreError(
                f"store schema version {version} is newer than this talprov knows "
                f"({newest_known}); upgrade talprov"
            )
        for migration in migrations:
            if version < migration.version <= goal:
                migration.apply(conn)
                conn.execute(
                    version_table.insert().values(
                        version=migration.version, name=migration.name, applied_at=now
                    )
                )
                version = migration.version
        return version
