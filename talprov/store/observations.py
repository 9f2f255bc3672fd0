"""What a reconcile pass reads and writes about requests it does not work on.

Every pass looks at every active request: a provisioned one to see whether its
machine is still there, a waiting one to see whether it is due. Building whole
records for that (parsing each body, unsealing each machine config) costs more
than the rest of the pass once there are thousands of requests. A pass reads
:class:`RequestSummary` rows instead, writes what it observed with
:meth:`ObservationMethods.note_observed`, and reads whole records only of the
requests it is about to work on.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from talprov.providers.types import Stage
from talprov.store.errors import StaleRecord
from talprov.store.parts import StorePart
from talprov.store.records import dump_json, utc_or_now
from talprov.store.schema import requests


@dataclass(frozen=True)
class RequestSummary:
    """A request's bookkeeping without its body or secrets."""

    id: str
    provider: str
    stage: Stage
    version: int
    next_attempt_at: datetime | None
    infra_id: str | None
    machine_uuid: str | None
    addresses: tuple[str, ...]
    error: str | None
    #: Consecutive listings that missed this provisioned request's machine.
    missed_listings: int = 0
    #: Who holds or last held its lease (a lease is cleared when let go, so a
    #: holder here whose lease ran out died or stalled mid-work).
    lease_owner: str | None = None


_SUMMARY_COLUMNS = (
    requests.c.id, requests.c.provider, requests.c.stage, requests.c.version,
    requests.c.next_attempt_at, requests.c.infra_id, requests.c.machine_uuid,
    requests.c.addresses, requests.c.error, requests.c.missed_listings,
    requests.c.lease_owner,
)


def update_at_version(
    conn: Connection, request_id: str, expected_version: int, values: dict[str, Any]
) -> None:
    """Write ``values`` to the request only if it is still at ``expected_version``.

    The one optimistic write of request progress. Raises :class:`StaleRecord`,
    saying which version the request is at (or that it is gone), when it moved.
    """
    result = conn.execute(
        requests.update()
        .where(requests.c.id == request_id, requests.c.version == expected_version)
        .values(**values)
    )
    if result.rowcount == 1:
        return
    current = conn.execute(
        sa.select(requests.c.version).where(requests.c.id == request_id)
    ).scalar_one_or_none()
    raise stale_record(request_id, expected_version, current)


def stale_record(request_id: str, expected_version: int, current: int | None) -> StaleRecord:
    """The error for a write at ``expected_version`` to a request now at ``current``."""
    if current is None:
        return StaleRecord(f"request {request_id} no longer exists")
    return StaleRecord(
        f"request {request_id} is at version {current}, "
        f"not {expected_version}: another writer got there first"
    )


class ObservationMethods(StorePart):
    """The payload-free pass reads and writes of :class:`talprov.store.Store`."""

    def summaries(self, stages: Collection[Stage]) -> list[RequestSummary]:
        """The requests in ``stages`` as summaries, ordered by id.

        Read-only; decrypts nothing, so it works without the store key. Raises
        :class:`StoreError` when the store cannot be read.
        """
        wanted = [Stage(s).value for s in stages]
        if not wanted:
            return []
        query = (sa.select(*_SUMMARY_COLUMNS).where(requests.c.stage.in_(wanted))
                 .order_by(requests.c.id))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            RequestSummary(
                id=str(row.id), provider=str(row.provider), stage=Stage(row.stage),
                version=int(row.version), next_attempt_at=row.next_attempt_at,
                infra_id=row.infra_id, machine_uuid=row.machine_uuid,
                addresses=tuple(json.loads(row.addresses)), error=row.error,
                missed_listings=int(row.missed_listings), lease_owner=row.lease_owner,
            )
            for row in rows
        ]

    def note_observed(
        self,
        request_id: str,
        *,
        expected_version: int,
        stage: Stage | None = None,
        error: str | None = None,
        addresses: Sequence[str] | None = None,
        machine_uuid: str | None = None,
        missed_listings: int | None = None,
        events: Sequence[str] = (),
        now: datetime | None = None,
    ) -> int:
        """Record what a pass observed of a request it did not work on; the new version.

        Only the given fields change (``None`` leaves a field as it is); the step
        and its state are untouched. Writes only if the stored version still
        equals ``expected_version``, then bumps it; raises :class:`StaleRecord`
        otherwise (nothing is written). Not idempotent, like ``save_progress``.
        """
        moment = utc_or_now(now)
        values: dict[str, Any] = {"version": expected_version + 1, "updated_at": moment}
        if stage is not None:
            values["stage"] = Stage(stage).value
        if error is not None:
            values["error"] = error
        if addresses is not None:
            values["addresses"] = dump_json(list(addresses), what="addresses")
        if machine_uuid is not None:
            values["machine_uuid"] = machine_uuid
        if missed_listings is not None:
            values["missed_listings"] = missed_listings
        with self._write() as conn:
            update_at_version(conn, request_id, expected_version, values)
            self._append_events(conn, request_id, events, moment)
        return expected_version + 1
