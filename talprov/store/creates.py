"""Recording new requests: the creates of all waiting callers in one transaction.

Every create goes through the store's :class:`~talprov.store.group_commit.GroupCommit`:
under load (50 API calls at once) the creates that wait while one transaction
commits are written together in the next, instead of queueing one transaction
each for the write lock. A caller still returns only after its own request is
committed; each request keeps its own outcome (created, the same one again, or a
conflict), exactly as if it had been written alone, in arrival order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from talprov.errors import BeingDeleted, Conflict
from talprov.providers.types import MachineRequest, Stage
from talprov.store.crypto import SecretCodec
from talprov.store.engine import retry_insert_race
from talprov.store.group_commit import GroupCommit
from talprov.store.parts import StorePart
from talprov.store.progress import insert_stamped_events, rows_by_id
from talprov.store.records import (
    RequestRecord,
    dump_json,
    fresh_progress_columns,
    record_from_row,
    utc_or_now,
)
from talprov.store.schema import request_labels, requests


@dataclass(frozen=True)
class NewRequest:
    """One caller's create, its columns worked out before it waits for the writer."""

    request: MachineRequest
    fingerprint: str
    columns: dict[str, Any]
    now: datetime


#: What a turn answers each create: the row as committed, and whether this create made it.
Stored = tuple[sa.Row[Any], bool]


class CreateMethods(StorePart):
    """The creates of :class:`talprov.store.Store`."""

    _codec: SecretCodec
    _creates: GroupCommit[NewRequest, Stored]

    def create_request(
        self, request: MachineRequest, *, now: datetime | None = None
    ) -> RequestRecord:
        """Record a new request in ``PENDING``; idempotent on ``request.id``.

        A live (not ``GONE``) request with the same fingerprint is returned
        unchanged. A ``GONE`` one is replaced, whatever its body, by a fresh
        ``PENDING`` request: creating again after a deletion makes a new machine.
        Its version keeps counting up so writers holding the old one still lose.
        Raises :class:`Conflict` when a live request with a different body has
        the id, :class:`BeingDeleted` (a Conflict) whatever the body while the
        request of that id is being deleted (``DEPROVISIONING``): answering with it
        would tell the caller the create held. Raises :class:`StoreError` when the
        store fails (nothing is recorded).
        """
        return self.create_or_get_request(request, now=now)[0]

    def create_or_get_request(
        self, request: MachineRequest, *, now: datetime | None = None
    ) -> tuple[RequestRecord, bool]:
        """:meth:`create_request`, also saying whether this call created it.

        Of several concurrent calls with one body exactly one answers ``True``
        (an API answers it 201, the others 200). Returns only once the request is
        committed: together with the creates of other threads waiting at the
        same time (:mod:`talprov.store.creates`). Same errors as ``create_request``.
        """
        fingerprint = request.fingerprint()
        row, created = self._creates.submit(NewRequest(
            request, fingerprint, self._request_columns(request, fingerprint), utc_or_now(now)))
        return record_from_row(row, self._codec, request if created else None), created

    def _request_columns(self, request: MachineRequest, fingerprint: str) -> dict[str, Any]:
        body = request.model_dump(mode="json", exclude={"machine_config", "join"})
        join = request.join
        return {
            "provider": request.provider,
            "body": dump_json(body, what=f"request {request.id}"),
            "fingerprint": fingerprint,
            "machine_config": self._codec.encode(request.machine_config.get_secret_value()),
            "join_api_url": (
                self._codec.encode(join.api_url.get_secret_value()) if join is not None else None
            ),
            # Which key sealed them, so counts can tell another key's apart in SQL.
            "sealed_with": self._codec.key_id,
            "join_options": (
                dump_json(join.model_dump(mode="json", exclude={"api_url"}), what="join")
                if join is not None
                else None
            ),
        }

    def _create_many(self, creates: Sequence[NewRequest]) -> list[Stored | Exception]:
        """The :class:`GroupCommit` turn: ``creates`` in one transaction, tried
        again when another process inserted one of their ids meanwhile."""
        return retry_insert_race(lambda: self._create_turn(creates))

    def _create_turn(self, creates: Sequence[NewRequest]) -> list[Stored | Exception]:
        decided: list[str | Exception] = []  # per create: the id whose row it gets, or its error
        made: dict[str, NewRequest] = {}  # id -> the create of this turn that records it
        makers: set[int] = set()  # positions in ``creates`` of those creates
        with self._write() as conn:
            found = rows_by_id(conn, sorted({c.request.id for c in creates}), for_update=True)
            for position, new in enumerate(creates):
                request_id = new.request.id
                first = made.get(request_id)
                existing = found.get(request_id)
                fingerprint = (first.fingerprint if first is not None
                               else existing.fingerprint if existing is not None
                               and existing.stage != Stage.GONE.value else None)
                if (first is None and existing is not None
                        and existing.stage == Stage.DEPROVISIONING.value):
                    decided.append(BeingDeleted(
                        f"request {request_id} is being deleted; create it again once "
                        "it is gone"))
                    continue
                if fingerprint is None:
                    made[request_id] = new
                    makers.add(position)
                elif fingerprint != new.fingerprint:
                    decided.append(Conflict(
                        f"request {request_id} already exists with a different body"))
                    continue
                decided.append(request_id)
            _record(conn, [made[i] for i in sorted(made)], found)
            rows = {**found, **rows_by_id(conn, sorted(made))}
        return [outcome if isinstance(outcome, Exception) else (rows[outcome], position in makers)
                for position, outcome in enumerate(decided)]


def _record(conn: Connection, creates: Sequence[NewRequest], found: dict[str, Any]) -> None:
    """Write ``creates`` (in id order: two turns of two processes lock rows in the
    same order): new ids inserted, ids of ``GONE`` requests made afresh."""
    inserts: list[dict[str, Any]] = []
    for new in creates:
        values = {**new.columns, **fresh_progress_columns(),
                  "created_at": new.now, "updated_at": new.now}
        gone = found.get(new.request.id)
        if gone is None:
            inserts.append({"id": new.request.id, "version": 1, **values})
            continue
        conn.execute(requests.update().where(requests.c.id == new.request.id)
                     .values(version=gone.version + 1, **values))
        conn.execute(request_labels.delete()
                     .where(request_labels.c.request_id == new.request.id))
    if inserts:
        conn.execute(requests.insert(), inserts)
    labels = [{"request_id": new.request.id, "key": key, "value": value}
              for new in creates for key, value in new.request.labels.items()]
    if labels:
        conn.execute(request_labels.insert(), labels)
    insert_stamped_events(conn, [
        (new.request.id, "request created" if new.request.id not in found
         else "request created again (the previous one was gone)", new.now)
        for new in creates])
