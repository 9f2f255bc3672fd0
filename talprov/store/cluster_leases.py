"""Leases on clusters: one worker at a time runs a cluster's scaler passes.

Two planners working on one cluster at once would both see a missing machine
and both create one. Request leases do not help there (the requests do not exist
yet), so the cluster row carries a lease of its own, taken and renewed like a
request's.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from talprov.store.records import utc_or_now
from talprov.store.schema import clusters


def takeable(table: sa.Table, owner: str, moment: datetime) -> sa.ColumnElement[bool]:
    """The condition under which ``owner`` may take a row's lease at ``moment``:
    free, expired, or already its own (a renewal)."""
    return sa.or_(
        table.c.lease_owner.is_(None),
        table.c.lease_owner == owner,
        table.c.lease_until < moment,
    )


class ClusterLeaseMethods:
    """The cluster-lease half of :class:`talprov.store.Store`, which mixes it in."""

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # pragma: no cover - Store provides it

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
