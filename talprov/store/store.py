"""The state store: requests, their progress and event logs, leases, cluster specs
and the service's request sets (:mod:`talprov.store.request_sets`), plus reads of
bookkeeping columns that decrypt nothing (:mod:`talprov.store.light_queries`).

Every public method is one database transaction. Writes on SQLite take the
write lock at the start (see :mod:`talprov.store.engine`), so two processes
sharing one file queue up instead of failing. Progress is written with
optimistic concurrency: a writer states the version it read and loses with
:class:`StaleRecord` if anything else changed the request since.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from talprov.providers.types import Stage
from talprov.store.browse import BrowseMethods
from talprov.store.clusters import ClusterMethods
from talprov.store.creates import CreateMethods
from talprov.store.crypto import SecretCodec
from talprov.store.engine import (
    create_store_engine,
    masked_url,
    transaction,
)
from talprov.store.group_commit import GroupCommit
from talprov.store.light_queries import LightQueryMethods
from talprov.store.location import default_store_url
from talprov.store.observations import ObservationMethods
from talprov.store.progress import IDS_PER_QUERY, ProgressMethods, insert_events
from talprov.store.records import (
    AuditEntry,
    Event,
    RequestRecord,
    record_from_row,
    utc_or_now,
)
from talprov.store.request_leases import RequestLeaseMethods
from talprov.store.request_sets import RequestSetMethods
from talprov.store.schema import audit, request_labels, requests
from talprov.store.schema import events as event_log
from talprov.store.ui_sessions import UiSessionMethods
from talprov.store.upgrade import SchemaStatus, status, upgrade


def _ids_with_labels(labels: Mapping[str, str]) -> sa.Select[tuple[str]]:
    """Ids of the requests carrying every one of ``labels``: ONE scan of the label
    index, whatever the number of labels (one EXISTS per label made the planner's
    work grow with each, and many of them kept PostgreSQL busy for minutes)."""
    wanted = sa.or_(*(
        sa.and_(request_labels.c.key == key, request_labels.c.value == value)
        for key, value in labels.items()
    ))
    # (request_id, key) is the table's primary key: a request matching all the
    # (distinct) keys has exactly len(labels) matching rows.
    return (
        sa.select(request_labels.c.request_id)
        .where(wanted)
        .group_by(request_labels.c.request_id)
        .having(sa.func.count() == len(labels))
    )


class Store(
    CreateMethods, RequestSetMethods, ClusterMethods, RequestLeaseMethods, LightQueryMethods,
    ObservationMethods, BrowseMethods, ProgressMethods, UiSessionMethods,
):
    """Persistent state for requests, clusters and request sets behind any SQLAlchemy URL.

    ``key`` is the ``TALPROV_STORE_KEY`` value: when given, machine configs and
    join URLs are Fernet-encrypted at rest. Safe to share between threads; several
    processes may use one SQLite file or one PostgreSQL database at once.
    Call :meth:`migrate` before first use.
    """

    def __init__(self, url: str, *, key: str | None = None) -> None:
        self._codec = SecretCodec(key)
        self._engine, self._memory_lock = create_store_engine(url)
        # SQLite has one write lock per file; threads that wait for it inside
        # SQLite poll with sleeps of up to 100 ms (its busy handler). Queueing
        # this process's writers on a Python lock instead wakes the next one the
        # moment the last commits; other processes still meet the busy timeout.
        self._writer_lock = self._memory_lock or (
            threading.RLock() if self._engine.dialect.name == "sqlite" else None)
        # Writes of many threads at once share transactions (group commit):
        # API creates, and the workers' step outcomes.
        self._creates = GroupCommit(self._create_many)
        self._progress_writes = GroupCommit(self._save_progress_turn)
        self.url = masked_url(url)
        """The store URL with any password hidden."""

    def __repr__(self) -> str:
        return f"Store({self.url!r}, encrypted={self._codec.encrypting})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _read(self) -> AbstractContextManager[Connection]:
        return transaction(self._engine, self._memory_lock, write=False)

    def _write(self) -> AbstractContextManager[Connection]:
        return transaction(self._engine, self._writer_lock, write=True)

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest Alembic revision
        (:mod:`talprov.store.upgrade`).

        Idempotent; safe when several processes call it at once. Raises
        :class:`StoreError` when the database is newer than this talprov or
        cannot be reached.
        """
        upgrade(self._engine, self._memory_lock)

    def schema_status(self) -> SchemaStatus:
        """Where the schema stands against this talprov's newest revision; reads only.
        Raises :class:`StoreError` when unreachable or newer than this talprov."""
        return status(self._engine, self._memory_lock)

    def close(self) -> None:
        """Release pooled connections. Idempotent."""
        self._engine.dispose()

    # -- requests -----------------------------------------------------------------

    def get_request(self, request_id: str) -> RequestRecord | None:
        """The stored request, or ``None``. Raises :class:`StoreKeyError` when its
        secrets are encrypted and the key is missing or wrong."""
        with self._read() as conn:
            row = self._select_row(conn, request_id)
        return None if row is None else record_from_row(row, self._codec)

    def list_requests(
        self,
        *,
        provider: str | None = None,
        stages: Collection[Stage] | None = None,
        labels: Mapping[str, str] | None = None,
        include_gone: bool = False,
        ids: Collection[str] | None = None,
        providers: Collection[str] | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[RequestRecord]:
        """Requests matching every given filter, ordered by id.

        ``ids`` limits the result to those requests (unknown ids are ignored);
        ``providers`` to requests of those instances. ``after`` and ``limit`` page
        through the result: at most ``limit`` requests whose id sorts after
        ``after`` (a cursor: the last id of the previous page).

        ``labels`` must all match exactly. When ``stages`` is given it alone decides
        which stages are returned; otherwise ``GONE`` requests are left out unless
        ``include_gone``. Raises :class:`StoreKeyError` as :meth:`get_request` does.
        """
        query = sa.select(requests)
        if provider is not None:
            query = query.where(requests.c.provider == provider)
        if providers is not None:
            query = query.where(requests.c.provider.in_(sorted(set(providers))))
        if after is not None:
            query = query.where(requests.c.id > after)
        if stages is not None:
            query = query.where(requests.c.stage.in_([Stage(s).value for s in stages]))
        elif not include_gone:
            query = query.where(requests.c.stage != Stage.GONE.value)
        if labels:
            query = query.where(requests.c.id.in_(_ids_with_labels(labels)))
        query = query.order_by(requests.c.id)
        if limit is not None:
            query = query.limit(limit)
        if ids is None:
            with self._read() as conn:
                rows = conn.execute(query).all()
            return [record_from_row(row, self._codec) for row in rows]
        wanted = sorted(set(ids))
        rows = []
        with self._read() as conn:
            # In chunks: databases limit how many parameters one statement takes.
            for start in range(0, len(wanted), IDS_PER_QUERY):
                chunk = wanted[start:start + IDS_PER_QUERY]
                rows += conn.execute(query.where(requests.c.id.in_(chunk))).all()
        # Chunks are in id order and each holds at most ``limit``: the first
        # ``limit`` rows of them all are the page.
        return [record_from_row(row, self._codec) for row in rows[:limit]]

    def request_deletion(self, request_id: str, *, now: datetime | None = None) -> RequestRecord:
        """Move a request to ``DEPROVISIONING`` so the reconciler removes its machine.

        Resets step, attempt and error fields but keeps the provider state,
        ``infra_id``, ``machine_uuid`` and addresses that deprovisioning needs, and
        bumps the version so an in-flight provisioning write fails with
        :class:`StaleRecord`. Idempotent: a request already deprovisioning or gone
        is returned unchanged. Raises :class:`KeyError` for an unknown id.
        """
        moment = utc_or_now(now)
        with self._write() as conn:
            row = self._select_row(conn, request_id, for_update=True)
            if row is None:
                raise KeyError(request_id)
            if row.stage in (Stage.DEPROVISIONING.value, Stage.GONE.value):
                return record_from_row(row, self._codec)
            conn.execute(
                requests.update()
                .where(requests.c.id == request_id)
                .values(
                    stage=Stage.DEPROVISIONING.value,
                    step_index=0,
                    step_name=None,
                    error=None,
                    attempts=0,
                    next_attempt_at=None,
                    step_started_at=None,
                    version=row.version + 1,
                    updated_at=moment,
                )
            )
            self._append_events(conn, request_id, [f"deletion requested (was {row.stage})"], moment)
            row = self._select_row(conn, request_id)
        assert row is not None
        return record_from_row(row, self._codec)

    def mark_for_deletion(self, request_id: str, marked: bool = True) -> None:
        """Set or clear the scaler's "delete this one first" flag.

        Idempotent. Does not bump the version: no progress field changes, so a
        concurrent :meth:`save_progress` cannot overwrite it. Raises
        :class:`KeyError` for an unknown id.
        """
        with self._write() as conn:
            result = conn.execute(
                requests.update()
                .where(requests.c.id == request_id)
                .values(marked_for_deletion=marked, updated_at=datetime.now(UTC))
            )
            if result.rowcount != 1:
                raise KeyError(request_id)

    def forget_request(self, request_id: str, *, actor: str, reason: str) -> None:
        """Remove a request and its events without touching any provider.

        Whatever machine it had is left running and unmanaged: that is the point
        (a machine removed by hand, a provider gone for good). Records ``actor`` and
        ``reason`` in the audit log. Raises :class:`KeyError` for an unknown id.
        """
        now = datetime.now(UTC)
        with self._write() as conn:
            # Explicit deletes rather than relying on ON DELETE CASCADE, which some
            # databases ignore unless configured.
            conn.execute(event_log.delete().where(event_log.c.request_id == request_id))
            conn.execute(request_labels.delete().where(request_labels.c.request_id == request_id))
            result = conn.execute(requests.delete().where(requests.c.id == request_id))
            if result.rowcount != 1:
                raise KeyError(request_id)
            conn.execute(
                audit.insert().values(request_id=request_id, at=now, actor=actor, reason=reason)
            )

    def events(self, request_id: str, *, offset: int = 0, limit: int | None = None
               ) -> list[Event]:
        """The request's event log, oldest first (empty for an unknown id): at most
        ``limit`` events from position ``offset`` (the log only grows, so positions
        stay put)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(event_log.c.request_id, event_log.c.at, event_log.c.message)
                .where(event_log.c.request_id == request_id)
                .order_by(event_log.c.seq).offset(offset).limit(limit)
            ).all()
        return [Event(request_id=r.request_id, at=r.at, message=r.message) for r in rows]

    def audit_log(self) -> list[AuditEntry]:
        """Every forget ever recorded, oldest first."""
        with self._read() as conn:
            rows = conn.execute(sa.select(audit).order_by(audit.c.seq)).all()
        return [
            AuditEntry(request_id=r.request_id, at=r.at, actor=r.actor, reason=r.reason)
            for r in rows
        ]

    def seal(self, secret: str) -> str:
        """``secret`` as this store keeps secrets: encrypted when it has a key."""
        return self._codec.encode(secret)

    def unseal(self, stored: str) -> str:
        """The inverse of :meth:`seal`. Raises ``StoreKeyError`` for a missing/wrong key."""
        return self._codec.decode(stored)

    # -- helpers ------------------------------------------------------------------

    @staticmethod
    def _select_row(
        conn: Connection, request_id: str, *, for_update: bool = False
    ) -> sa.Row[Any] | None:
        # FOR UPDATE matters where a read decides a write (PostgreSQL's READ
        # COMMITTED would otherwise let a concurrent save_progress slip in between);
        # SQLite ignores it, its write transactions are already serialised.
        query = sa.select(requests).where(requests.c.id == request_id)
        if for_update:
            query = query.with_for_update()
        return conn.execute(query).first()

    @staticmethod
    def _append_events(
        conn: Connection, request_id: str, messages: Sequence[str], at: datetime
    ) -> None:
        insert_events(conn, [(request_id, m) for m in messages], at)


__all__ = ["Store", "default_store_url"]
