"""Reads for people looking at the store: filtered pages of requests, what changed
since a moment, per-provider error summaries, lease holders, a cluster's recent
events.

Like :mod:`talprov.store.light_queries` these select plain bookkeeping columns
and never the payload, so they need no store key and never unseal a secret. The
status page (:mod:`talprov.service.ui`) is their user; its live updates ask
:meth:`BrowseMethods.changed_since` with the newest ``updated_at`` they have seen,
which the ``ix_requests_updated_at`` index answers in O(changes).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from talprov.providers.types import Stage
from talprov.store.parts import StorePart
from talprov.store.records import utc_or_now
from talprov.store.schema import clusters, request_labels, requests
from talprov.store.schema import events as event_log

#: Ids per ``IN (...)`` list, far below every backend's parameter limit.
_CHUNK = 500


@dataclass(frozen=True)
class RequestRow:
    """One request as a table shows it: bookkeeping and labels, no body, no secret."""

    id: str
    provider: str
    stage: Stage
    step_name: str | None
    error: str | None
    attempts: int
    next_attempt_at: datetime | None
    infra_id: str | None
    addresses: tuple[str, ...]
    labels: Mapping[str, str]
    lease_owner: str | None
    created_at: datetime
    updated_at: datetime
    version: int


@dataclass(frozen=True)
class BrowseFilter:
    """What a page of requests is narrowed to; every field given must match.

    ``text`` matches a substring of the id or the infra id; ``labels`` must all
    match exactly; ``providers`` is the caller's scope (None: every instance).
    Gone requests are left out unless ``stage`` is ``GONE``.
    """

    provider: str | None = None
    stage: Stage | None = None
    labels: Mapping[str, str] | None = None
    text: str | None = None
    providers: Collection[str] | None = None


@dataclass(frozen=True)
class ProviderErrors:
    """The newest error among a provider instance's live requests, and how widespread."""

    provider: str
    latest: str
    latest_at: datetime
    first_at: datetime
    requests: int


@dataclass(frozen=True)
class LeaseHolder:
    """A worker holding unexpired request leases."""

    owner: str
    requests: int
    until: datetime


_ROW_COLUMNS = (
    requests.c.id, requests.c.provider, requests.c.stage, requests.c.step_name,
    requests.c.error, requests.c.attempts, requests.c.next_attempt_at, requests.c.infra_id,
    requests.c.addresses, requests.c.lease_owner, requests.c.created_at,
    requests.c.updated_at, requests.c.version,
)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filtered(query: sa.Select[Any], wanted: BrowseFilter) -> sa.Select[Any]:
    if wanted.provider is not None:
        query = query.where(requests.c.provider == wanted.provider)
    if wanted.providers is not None:
        query = query.where(requests.c.provider.in_(sorted(set(wanted.providers))))
    if wanted.stage is not None:
        query = query.where(requests.c.stage == Stage(wanted.stage).value)
    else:
        query = query.where(requests.c.stage != Stage.GONE.value)
    if wanted.text:
        pattern = f"%{_escape_like(wanted.text)}%"
        query = query.where(sa.or_(requests.c.id.like(pattern, escape="\\"),
                                   requests.c.infra_id.like(pattern, escape="\\")))
    for key, value in (wanted.labels or {}).items():
        query = query.where(sa.exists().where(
            request_labels.c.request_id == requests.c.id,
            request_labels.c.key == key, request_labels.c.value == value,
        ))
    return query


class BrowseMethods(StorePart):
    """The status page's reads of :class:`talprov.store.Store`, which mixes them in."""

    def browse_requests(
        self, wanted: BrowseFilter, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[RequestRow], int]:
        """One page of matching requests by id, and how many match in all.

        Read-only; decrypts nothing. Raises :class:`StoreError` when the store
        cannot be read.
        """
        page = _filtered(sa.select(*_ROW_COLUMNS), wanted)
        page = page.order_by(requests.c.id).offset(max(0, offset)).limit(max(1, limit))
        total = _filtered(sa.select(sa.func.count()).select_from(requests), wanted)
        with self._read() as conn:
            rows = conn.execute(page).all()
            count = int(conn.execute(total).scalar_one())
            return self._with_labels(conn, rows), count

    def changed_since(
        self, moment: datetime | None, *, providers: Collection[str] | None = None,
        limit: int = 200,
    ) -> list[RequestRow]:
        """Requests (gone ones too) whose ``updated_at`` is at or after ``moment``,
        oldest change first, at most ``limit``; every request when ``moment`` is None.

        At-or-after rather than after: two writes in one clock tick must both be
        seen; callers drop what they already have by ``version``. Read-only;
        raises :class:`StoreError` when the store cannot be read.
        """
        query: sa.Select[Any] = sa.select(*_ROW_COLUMNS)
        if moment is not None:
            query = query.where(requests.c.updated_at >= utc_or_now(moment))
        if providers is not None:
            query = query.where(requests.c.provider.in_(sorted(set(providers))))
        query = query.order_by(requests.c.updated_at, requests.c.id).limit(limit)
        with self._read() as conn:
            return self._with_labels(conn, conn.execute(query).all())

    def newest_change(self, *, providers: Collection[str] | None = None) -> datetime | None:
        """The newest ``updated_at`` of any request (of ``providers`` when given);
        None when there is none. Read-only."""
        query = sa.select(sa.func.max(requests.c.updated_at))
        if providers is not None:
            query = query.where(requests.c.provider.in_(sorted(set(providers))))
        # max() keeps the column's type, so the value comes back as an aware UTC datetime.
        with self._read() as conn:
            moment: datetime | None = conn.execute(query).scalar()
        return moment

    def provider_errors(self) -> dict[str, ProviderErrors]:
        """Per provider instance, the newest error of its live requests that carry one.

        ``first_at`` is the earliest start of a failing step among those requests
        (their ``updated_at`` when no step is running): how long the instance has
        had failing requests. Read-only; decrypts nothing.
        """
        live = sa.and_(requests.c.error.is_not(None), requests.c.stage != Stage.GONE.value)
        spans = (
            sa.select(requests.c.provider, sa.func.max(requests.c.updated_at).label("latest"),
                      # A retried step keeps its start: that is when the trouble began.
                      sa.func.min(sa.func.coalesce(requests.c.step_started_at,
                                                   requests.c.updated_at)).label("first"),
                      sa.func.count().label("n"))
            .where(live).group_by(requests.c.provider).subquery()
        )
        query = (
            sa.select(requests.c.provider, requests.c.error, requests.c.updated_at,
                      spans.c.first, spans.c.n)
            .join(spans, sa.and_(spans.c.provider == requests.c.provider,
                                 spans.c.latest == requests.c.updated_at))
            .where(live).order_by(requests.c.provider, requests.c.id)
        )
        found: dict[str, ProviderErrors] = {}
        with self._read() as conn:
            rows = conn.execute(query).all()
        for row in rows:
            if row.provider in found:
                continue  # two errors in one tick: the first by id, deterministically
            found[row.provider] = ProviderErrors(
                provider=row.provider, latest=row.error, latest_at=row.updated_at,
                first_at=row.first,
                requests=int(row.n),
            )
        return found

    def lease_holders(self, *, now: datetime | None = None,
                      providers: Collection[str] | None = None) -> list[LeaseHolder]:
        """Workers holding request leases (on requests of ``providers`` when given)
        that have not expired at ``now``, by name. Read-only."""
        moment = utc_or_now(now)
        query = (
            sa.select(requests.c.lease_owner, sa.func.count().label("n"),
                      sa.func.max(requests.c.lease_until).label("until"))
            .where(requests.c.lease_owner.is_not(None), requests.c.lease_until > moment)
            .group_by(requests.c.lease_owner).order_by(requests.c.lease_owner)
        )
        if providers is not None:
            query = query.where(requests.c.provider.in_(sorted(set(providers))))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [LeaseHolder(owner=str(row.lease_owner), requests=int(row.n), until=row.until)
                for row in rows]

    def cluster_lease_holders(self, *, now: datetime | None = None
                              ) -> list[tuple[str, str, datetime]]:
        """``(cluster, worker, until)`` for every unexpired cluster lease, by cluster."""
        moment = utc_or_now(now)
        query = (sa.select(clusters.c.name, clusters.c.lease_owner, clusters.c.lease_until)
                 .where(clusters.c.lease_owner.is_not(None), clusters.c.lease_until > moment)
                 .order_by(clusters.c.name))
        with self._read() as conn:
            return [(str(r.name), str(r.lease_owner), r.lease_until)
                    for r in conn.execute(query).all()]

    def recent_events(self, labels: Mapping[str, str], *, limit: int = 20
                      ) -> list[tuple[str, datetime, str]]:
        """``(request id, at, message)`` of the newest events of requests carrying all
        ``labels``, newest first. Read-only."""
        query = sa.select(event_log.c.request_id, event_log.c.at, event_log.c.message)
        for key, value in labels.items():
            query = query.where(sa.exists().where(
                request_labels.c.request_id == event_log.c.request_id,
                request_labels.c.key == key, request_labels.c.value == value,
            ))
        query = query.order_by(event_log.c.seq.desc()).limit(limit)
        with self._read() as conn:
            return [(str(r.request_id), r.at, str(r.message)) for r in conn.execute(query).all()]

    @staticmethod
    def _with_labels(conn: Connection, rows: Sequence[sa.Row[Any]]) -> list[RequestRow]:
        ids = [str(row.id) for row in rows]
        labels: dict[str, dict[str, str]] = {i: {} for i in ids}
        for start in range(0, len(ids), _CHUNK):
            found = conn.execute(
                sa.select(request_labels.c.request_id, request_labels.c.key,
                          request_labels.c.value)
                .where(request_labels.c.request_id.in_(ids[start:start + _CHUNK]))
            ).all()
            for label in found:
                labels[str(label.request_id)][str(label.key)] = str(label.value)
        return [
            RequestRow(
                id=str(row.id), provider=str(row.provider), stage=Stage(row.stage),
                step_name=row.step_name, error=row.error, attempts=int(row.attempts),
                next_attempt_at=row.next_attempt_at, infra_id=row.infra_id,
                addresses=tuple(json.loads(row.addresses)),
                labels=dict(sorted(labels[str(row.id)].items())),
                lease_owner=row.lease_owner, created_at=row.created_at,
                updated_at=row.updated_at, version=int(row.version),
            )
            for row in rows
        ]
