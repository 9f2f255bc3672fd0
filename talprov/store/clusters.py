"""Recorded clusters: their spec documents, and the lease that lets one worker
at a time run a cluster's scaler passes (or change its record).

Two planners working on one cluster at once would both see a missing machine
and both create one. Request leases do not help there (the requests do not exist
yet), so the cluster row carries a lease of its own, taken and renewed like a
request's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from talprov.store.engine import retry_insert_race
from talprov.store.parts import StorePart
from talprov.store.records import dump_json, utc_or_now
from talprov.store.schema import clusters


def takeable(table: sa.Table, owner: str, moment: datetime) -> sa.ColumnElement[bool]:
    """The condition under which ``owner`` may take a row's lease at ``moment``:
    free, expired, or already its own (a renewal)."""
    return sa.or_(
        table.c.lease_owner.is_(None),
        table.c.lease_owner == owner,
        table.c.lease_until < moment,
    )


class ClusterMethods(StorePart):
    """The clusters part of :class:`talprov.store.Store`, which mixes it in."""

    def put_cluster(self, name: str, spec: dict[str, Any]) -> None:
        """Create or replace the spec document stored under ``name``; idempotent.
        Raises :class:`StoreError` when ``spec`` is not JSON-serialisable."""
        text = dump_json(spec, what=f"spec of cluster {name}")
        now = datetime.now(UTC)

        def upsert() -> None:
            with self._write() as conn:
                result = conn.execute(
                    clusters.update()
                    .where(clusters.c.name == name)
                    .values(spec=text, updated_at=now)
                )
                if result.rowcount != 1:
                    conn.execute(clusters.insert().values(name=name, spec=text, updated_at=now))

        retry_insert_race(upsert)

    def get_cluster(self, name: str) -> dict[str, Any] | None:
        """The stored spec, or ``None`` when there is none."""
        with self._read() as conn:
            text = conn.execute(
                sa.select(clusters.c.spec).where(clusters.c.name == name)
            ).scalar_one_or_none()
        if text is None:
            return None
        spec: dict[str, Any] = json.loads(text)
        return spec

    def list_clusters(self) -> list[str]:
        """Names of all stored clusters, sorted."""
        with self._read() as conn:
            return list(
                conn.execute(sa.select(clusters.c.name).order_by(clusters.c.name)).scalars()
            )

    def delete_cluster(self, name: str) -> None:
        """Remove a cluster spec; idempotent (an unknown name is not an error)."""
        with self._write() as conn:
            conn.execute(clusters.delete().where(clusters.c.name == name))

    def claim_cluster(
        self, name: str, *, owner: str, ttl: float, now: datetime | None = None
    ) -> bool:
        """Take or renew the lease on cluster ``name`` for ``ttl`` seconds.

        One conditional UPDATE: free, expired or already ``owner``'s wins, so two
        workers cannot both hold it. False when someone else holds it or the
        cluster is not recorded. Idempotent for the holder.
        """
        if ttl <= 0:
            raise ValueError("lease ttl must be positive")
        moment = utc_or_now(now)
        with self._write() as conn:
            result = conn.execute(
                clusters.update()
                .where(clusters.c.name == name, takeable(clusters, owner, moment))
                .values(lease_owner=owner, lease_until=moment + timedelta(seconds=ttl))
            )
            return result.rowcount == 1

    def release_cluster(self, name: str, *, owner: str) -> None:
        """Give the cluster's lease back if ``owner`` holds it. Idempotent; never raises
        for a lease held by someone else or an unknown cluster."""
        with self._write() as conn:
            conn.execute(
                clusters.update()
                .where(clusters.c.name == name, clusters.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    def cluster_lease_holder(self, name: str) -> tuple[str, datetime] | None:
        """Who holds cluster ``name``'s lease and until when (UTC); None when it is
        free or the cluster is not recorded. Read-only."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(clusters.c.lease_owner, clusters.c.lease_until)
                .where(clusters.c.name == name)
            ).one_or_none()
        if row is None or row.lease_owner is None or row.lease_until is None:
            return None
        until = row.lease_until
        # SQLite hands datetimes back naive; they were written as UTC.
        return str(row.lease_owner), until if until.tzinfo else until.replace(tzinfo=UTC)
