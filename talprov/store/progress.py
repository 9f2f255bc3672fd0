"""Writing step outcomes: one request's, or a whole batch step's in one transaction.

A batch step of 100 requests used to cost 100 commits in a row (each an fsync
and a turn at SQLite's single write lock); :meth:`ProgressMethods.save_progress_many`
makes it one, with the same optimistic version check per request. The runner's
threads that write at the same time (steps without a batch form, 8 at once)
share one transaction too, through the store's
:class:`~talprov.store.group_commit.GroupCommit`, instead of queueing for the
write lock one commit each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from talprov.providers.types import Stage
from talprov.store.crypto import SecretCodec
from talprov.store.errors import StaleRecord
from talprov.store.group_commit import GroupCommit
from talprov.store.observations import stale_record
from talprov.store.parts import StorePart
from talprov.store.records import (
    ProgressUpdate,
    RequestRecord,
    dump_json,
    record_from_row,
    save_one,
    utc_or_now,
)
from talprov.store.schema import events as event_log
from talprov.store.schema import requests

#: Ids per ``IN (...)`` list: far below SQLite's and PostgreSQL's parameter limits.
IDS_PER_QUERY = 500


class ProgressMethods(StorePart):
    """The progress writes of :class:`talprov.store.Store`."""

    _codec: SecretCodec
    _progress_writes: GroupCommit[ProgressWrite, Saved]

    def save_progress(
        self,
        request_id: str,
        *,
        expected_version: int,
        stage: Stage,
        step_index: int,
        step_name: str | None,
        state: dict[str, Any],
        error: str | None,
        attempts: int,
        next_attempt_at: datetime | None,
        step_started_at: datetime | None,
        infra_id: str | None,
        machine_uuid: str | None,
        addresses: Sequence[str],
        events: Sequence[str],
        now: datetime | None = None,
    ) -> RequestRecord:
        """Store a step's outcome and its event lines in one transaction.

        Writes only if the stored version still equals ``expected_version``, then
        bumps it. Raises :class:`StaleRecord` when the version moved or the request
        was removed (nothing is written then), :class:`StoreError` when ``state``
        is not JSON-serialisable. Not idempotent: a replay with the old version is
        rejected as stale, which is what keeps two workers from both advancing.
        """
        return save_one(self.save_progress_many, ProgressUpdate(
            request_id, expected_version, stage, step_index, step_name, state, error, attempts,
            next_attempt_at, step_started_at, infra_id, machine_uuid, addresses, events,
        ), now)

    def save_progress_many(
        self, updates: Sequence[ProgressUpdate], *, now: datetime | None = None
    ) -> list[RequestRecord | StaleRecord]:
        """Store many step outcomes (a batch step's) and their events in ONE transaction.

        Each update is written only at its ``expected_version`` (then bumped); a
        stale one is skipped, writes nothing, and comes back as its
        :class:`StaleRecord` in the result, in order; the others come back as their
        new records. Calls of other threads waiting at the same time share the
        transaction (:class:`~talprov.store.group_commit.GroupCommit`), each with
        its own ``now`` and outcomes, as if written one after the other; it
        returns once the transaction has committed. Raises :class:`StoreError`
        (nothing written) when a state is not JSON-serialisable or the database
        fails. Not idempotent (see :meth:`save_progress`).
        """
        moment = utc_or_now(now)
        write = ProgressWrite(tuple(updates), [_progress_columns(u, moment) for u in updates],
                              moment)
        saved = self._progress_writes.submit(write)
        return [outcome if isinstance(outcome, StaleRecord)
                else record_from_row(outcome, self._codec, update.request)
                for update, outcome in zip(write.updates, saved, strict=True)]

    def _save_progress_turn(self, writes: Sequence[ProgressWrite]) -> list[Saved | Exception]:
        """The :class:`GroupCommit` turn: every update of ``writes``, in order, in one
        transaction. One version check, one UPDATE statement, one INSERT of event
        lines and one read-back for them all (100 single statements cost a third
        of a batch's write)."""
        stale: list[dict[int, StaleRecord]] = [{} for _ in writes]
        written: list[tuple[ProgressWrite, int]] = []
        with self._write() as conn:
            versions = _versions_for_update(
                conn, [u.request_id for write in writes for u in write.updates])
            for call, write in enumerate(writes):
                for index, update in enumerate(write.updates):
                    at = versions.get(update.request_id)
                    if at != update.expected_version:
                        stale[call][index] = stale_record(
                            update.request_id, update.expected_version, at)
                        continue
                    versions[update.request_id] = at + 1
                    written.append((write, index))
            if written:
                # The rows are locked (SQLite: the write lock; PostgreSQL: FOR
                # UPDATE), and the version stays in the WHERE.
                conn.execute(_UPDATE_AT_VERSION, [
                    {"at_id": w.updates[i].request_id, "at_version": w.updates[i].expected_version,
                     **w.columns[i]} for w, i in written])
            insert_stamped_events(conn, [(w.updates[i].request_id, line, w.moment)
                                         for w, i in written for line in w.updates[i].events])
            rows = rows_by_id(conn, sorted({w.updates[i].request_id for w, i in written}))
        return [[stale[call].get(index) or rows[update.request_id]
                 for index, update in enumerate(write.updates)]
                for call, write in enumerate(writes)]


@dataclass(frozen=True)
class ProgressWrite:
    """One :meth:`ProgressMethods.save_progress_many` call, its columns worked out
    before it waits for the writer."""

    updates: Sequence[ProgressUpdate]
    columns: Sequence[dict[str, Any]]
    moment: datetime


#: What a turn answers one call: per update, its row as committed or its StaleRecord.
Saved = list["sa.Row[Any] | StaleRecord"]


_UPDATE_AT_VERSION = (
    requests.update()
    .where(requests.c.id == sa.bindparam("at_id"),
           requests.c.version == sa.bindparam("at_version"))
)


def insert_events(conn: Connection, lines: Sequence[tuple[str, str]], at: datetime) -> None:
    """Append event ``lines`` (request id, message), in order, all stamped ``at``:
    one statement for all of them."""
    insert_stamped_events(conn, [(rid, message, at) for rid, message in lines])


def insert_stamped_events(conn: Connection, lines: Sequence[tuple[str, str, datetime]]) -> None:
    """Append event ``lines`` (request id, message, time), in order: one statement."""
    if lines:
        conn.execute(event_log.insert(), [{"request_id": rid, "at": at, "message": message}
                                          for rid, message, at in lines])


def _versions_for_update(conn: Connection, request_ids: Sequence[str]) -> dict[str, int]:
    """The stored version of each of ``request_ids`` that exists, rows locked."""
    out: dict[str, int] = {}
    unique = sorted(set(request_ids))
    for start in range(0, len(unique), IDS_PER_QUERY):
        query = (sa.select(requests.c.id, requests.c.version)
                 .where(requests.c.id.in_(unique[start:start + IDS_PER_QUERY]))
                 .with_for_update())
        out.update({str(row.id): int(row.version) for row in conn.execute(query)})
    return out


def rows_by_id(conn: Connection, request_ids: Sequence[str], *, for_update: bool = False
               ) -> dict[str, Any]:
    """The stored rows of those of ``request_ids`` that exist, by id; locked when
    ``for_update`` (PostgreSQL's READ COMMITTED would otherwise let a concurrent
    write slip in between a read and the write it decides; SQLite's write
    transactions are already alone)."""
    rows: dict[str, Any] = {}
    for start in range(0, len(request_ids), IDS_PER_QUERY):
        query = sa.select(requests).where(
            requests.c.id.in_(request_ids[start:start + IDS_PER_QUERY]))
        if for_update:
            query = query.with_for_update()
        rows.update({str(row.id): row for row in conn.execute(query)})
    return rows


def _progress_columns(update: ProgressUpdate, moment: datetime) -> dict[str, Any]:
    """The ``requests`` columns one progress update writes."""
    return {
        "stage": Stage(update.stage).value,
        "step_index": update.step_index,
        "step_name": update.step_name,
        "state": dump_json(update.state, what=f"state of request {update.request_id}"),
        "error": update.error,
        "attempts": update.attempts,
        "next_attempt_at": None if update.next_attempt_at is None
        else utc_or_now(update.next_attempt_at),
        "step_started_at": None if update.step_started_at is None
        else utc_or_now(update.step_started_at),
        "infra_id": update.infra_id,
        "machine_uuid": update.machine_uuid,
        "addresses": dump_json(list(update.addresses), what="addresses"),
        "version": update.expected_version + 1,
        "updated_at": moment,
    }
