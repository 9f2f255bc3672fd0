"""Leases on requests: one worker at a time runs a request's steps.

A worker claims a request before running its steps and renews the claim while
they run; a worker that dies stops renewing and another takes the request over
once the lease has expired. Claim and renewal are one conditional UPDATE
(:func:`talprov.store.clusters.takeable`), so two workers never hold one request.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from talprov.store.clusters import takeable
from talprov.store.parts import StorePart
from talprov.store.records import utc_or_now
from talprov.store.schema import requests


class RequestLeaseMethods(StorePart):
    """The request-lease part of :class:`talprov.store.Store`, which mixes it in."""

    def claim(
        self, request_id: str, *, owner: str, ttl: float, now: datetime | None = None
    ) -> bool:
        """Take or renew the lease on a request for ``ttl`` seconds.

        Succeeds when the lease is free, expired or already ``owner``'s (renewal),
        in one conditional UPDATE, so two replicas cannot both win. Returns False
        when someone else holds it or the request does not exist.
        """
        if ttl <= 0:
            raise ValueError("lease ttl must be positive")
        moment = utc_or_now(now)
        with self._write() as conn:
            result = conn.execute(
                requests.update()
                .where(
                    requests.c.id == request_id,
                    takeable(requests, owner, moment),
                )
                .values(lease_owner=owner, lease_until=moment + timedelta(seconds=ttl))
            )
            return result.rowcount == 1

    def release(self, request_id: str, *, owner: str) -> None:
        """Give the lease back if ``owner`` holds it; idempotent, never raises for
        a lease held by someone else or an unknown request."""
        with self._write() as conn:
            conn.execute(
                requests.update()
                .where(requests.c.id == request_id, requests.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    def claim_many(
        self, request_ids: Collection[str], *, owner: str, ttl: float,
        now: datetime | None = None,
    ) -> dict[str, int]:
        """:meth:`claim` for many requests in one transaction.

        Returns the requests ``owner`` now holds, with their current version, so
        the caller can tell which changed since it read them. Requests held by
        someone else, or unknown, are simply absent. Idempotent for the owner.
        """
        if ttl <= 0:
            raise ValueError("lease ttl must be positive")
        if not request_ids:
            return {}
        moment = utc_or_now(now)
        ids = sorted(set(request_ids))
        held: dict[str, int] = {}
        with self._write() as conn:
            # Chunks keep the IN list under every backend's parameter limit.
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                conn.execute(
                    requests.update()
                    .where(
                        requests.c.id.in_(chunk),
                        takeable(requests, owner, moment),
                    )
                    .values(lease_owner=owner, lease_until=moment + timedelta(seconds=ttl))
                )
                rows = conn.execute(
                    sa.select(requests.c.id, requests.c.version).where(
                        requests.c.id.in_(chunk), requests.c.lease_owner == owner
                    )
                )
                held.update({str(r.id): int(r.version) for r in rows})
        return held

    def release_many(self, request_ids: Collection[str], *, owner: str) -> None:
        """:meth:`release` for many requests in one transaction; idempotent."""
        ids = sorted(set(request_ids))
        if not ids:
            return
        with self._write() as conn:
            for start in range(0, len(ids), 500):
                conn.execute(
                    requests.update()
                    .where(requests.c.id.in_(ids[start:start + 500]),
                           requests.c.lease_owner == owner)
                    .values(lease_owner=None, lease_until=None)
                )

    def lease_holder(self, request_id: str) -> tuple[str, datetime] | None:
        """Who holds the lease on a request and until when; None when free or unknown."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(requests.c.lease_owner, requests.c.lease_until).where(
                    requests.c.id == request_id
                )
            ).one_or_none()
        if row is None or row.lease_owner is None or row.lease_until is None:
            return None
        until = row.lease_until
        # SQLite hands datetimes back naive; they were written as UTC.
        if until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        return str(row.lease_owner), until
