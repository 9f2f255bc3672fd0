"""Reads that touch only a request's bookkeeping columns, never its payload.

:meth:`Store.list_requests` builds whole records, which means parsing the body
and unsealing the machine config (Fernet) of every row. Deciding how long to
sleep, counting stages for /metrics or telling which requests exist needs none
of that; these queries select a few plain columns (or aggregate them in SQL), so
their cost stays small however many requests there are, and they never need the
store key (but count_requests_by_label, which compares the key id stored beside
sealed secrets with the store key's, and decrypts only rows sealed before key ids
were stored).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa

from talprov.providers.types import Stage
from talprov.store.crypto import FERNET_PREFIX, SecretCodec
from talprov.store.errors import StoreError
from talprov.store.parts import StorePart
from talprov.store.records import utc_or_now
from talprov.store.schema import clusters, request_labels, request_sets, requests


class LightQueryMethods(StorePart):
    """The payload-free reads of :class:`talprov.store.Store`, which mixes them in."""

    _codec: SecretCodec

    def holds_sealed_records(self) -> bool:
        """Whether any request, cluster or request set holds a secret encrypted with
        some key (whichever: it is not decrypted); False for a store whose schema is
        not there yet, and for one whose records are all unencrypted. Reads only
        whether a sealed column starts as encrypted text does. Raises
        :class:`StoreError` when the store cannot be read. Idempotent."""
        sealed = FERNET_PREFIX + "%"
        checks = {
            requests.name: sa.or_(requests.c.machine_config.like(sealed),
                                  requests.c.join_api_url.like(sealed)),
            request_sets.name: sa.or_(request_sets.c.machine_config.like(sealed),
                                      request_sets.c.join_api_url.like(sealed)),
            # The spec is JSON whose secrets are {"sealed": "<column text>"}: any
            # encrypted text in it counts (over-counting only means a warning).
            clusters.name: clusters.c.spec.like("%" + sealed),
        }
        with self._read() as conn:
            present = set(sa.inspect(conn).get_table_names())
            return any(conn.execute(sa.select(sa.literal(1)).where(check).limit(1))
                       .first() is not None
                       for table, check in checks.items() if table in present)

    def next_attempts(self, stages: Collection[Stage]) -> list[tuple[str, datetime | None]]:
        """``(request id, next_attempt_at)`` of every request in ``stages``, by id.

        ``None`` means "due now". Read-only; decrypts nothing, so it works without
        the store key. Raises :class:`StoreError` when the store cannot be read.
        """
        wanted = [Stage(s).value for s in stages]
        if not wanted:
            return []
        query = (
            sa.select(requests.c.id, requests.c.next_attempt_at)
            .where(requests.c.stage.in_(wanted))
            .order_by(requests.c.id)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [(str(row.id), row.next_attempt_at) for row in rows]

    def request_ids(self, provider: str, *, include_gone: bool = False) -> set[str]:
        """Ids of the requests of provider instance ``provider``; ``GONE`` ones only
        with ``include_gone``.

        Read-only; decrypts nothing. Raises :class:`StoreError` when the store
        cannot be read.
        """
        query = sa.select(requests.c.id).where(requests.c.provider == provider)
        if not include_gone:
            query = query.where(requests.c.stage != Stage.GONE.value)
        with self._read() as conn:
            return {str(rid) for rid in conn.execute(query).scalars()}

    def request_versions(self, request_ids: Collection[str]) -> dict[str, int]:
        """The stored version of each of ``request_ids`` that is still recorded
        (an unknown or forgotten id is absent): one query per 500 ids.

        Read-only; decrypts nothing. Raises :class:`StoreError` when the store
        cannot be read. Idempotent.
        """
        ids = sorted(set(request_ids))
        versions: dict[str, int] = {}
        with self._read() as conn:
            # Chunks keep the IN list under every backend's parameter limit.
            for start in range(0, len(ids), 500):
                rows = conn.execute(sa.select(requests.c.id, requests.c.version)
                                    .where(requests.c.id.in_(ids[start:start + 500])))
                versions.update({str(row.id): int(row.version) for row in rows})
        return versions

    def count_requests(self) -> dict[tuple[str, Stage], int]:
        """How many requests each ``(provider instance, stage)`` has, ``GONE`` included.

        Pairs with no request are absent. Counted in SQL; decrypts nothing.
        Raises :class:`StoreError` when the store cannot be read.
        """
        query = sa.select(
            requests.c.provider, requests.c.stage, sa.func.count().label("n")
        ).group_by(requests.c.provider, requests.c.stage)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return {(str(row.provider), Stage(row.stage)): int(row.n) for row in rows}

    def count_requests_by_label(self, key: str) -> dict[tuple[str, Stage, bool], int]:
        """How many requests not ``GONE`` each ``(value of label key, stage,
        unreadable)`` has (e.g. every cluster's requests by stage, for a status
        list); ``unreadable``: their secrets are sealed under another key than this
        store's (or under any key, for a store without one), as reading each request
        would find (:attr:`RequestRecord.unreadable`).

        One query, decrypting nothing, for requests whose key id is stored
        (``requests.sealed_with``); those sealed before it was (revision 0008) are
        decrypted to tell, in a second query only when there are any, and the key
        id of those this store's key opens is then written beside them (a write, once
        per row). Requests
        without the label, and groups with none, are absent. Raises
        :class:`StoreError` when the store cannot be read. Idempotent.
        """
        sealed = sa.or_(requests.c.machine_config.like(FERNET_PREFIX + "%"),
                        requests.c.join_api_url.like(FERNET_PREFIX + "%"))
        ours = self._codec.key_id
        # 1: sealed under another key (or any, without one); 2: sealed before key
        # ids were stored, so unknown; 0: readable. The stored key id is tested
        # first: the LIKEs read a machine config, which a row with an id never needs.
        readability = (sa.case((sealed, 1), else_=0) if ours is None else sa.case(
            (requests.c.sealed_with == ours, 0),
            (requests.c.sealed_with.is_not(None), 1),
            (sealed, 2), else_=0))
        labelled = (
            sa.select(request_labels.c.value, requests.c.stage)
            .join(requests, requests.c.id == request_labels.c.request_id)
            .where(request_labels.c.key == key, requests.c.stage != Stage.GONE.value)
        )
        query = (labelled.add_columns(readability.label("sealing"), sa.func.count().label("n"))
                 .group_by(request_labels.c.value, requests.c.stage, readability))
        counts: dict[tuple[str, Stage, bool], int] = {}
        with self._read() as conn:
            rows = conn.execute(query).all()
            unknown = any(row.sealing == 2 for row in rows)
            legacy = conn.execute(
                labelled.add_columns(requests.c.id, requests.c.machine_config,
                                     requests.c.join_api_url)
                .where(requests.c.sealed_with.is_(None), sealed)).all() if unknown else []
        for row in rows:
            if row.sealing != 2:
                group = (str(row.value), Stage(row.stage), row.sealing == 1)
                counts[group] = counts.get(group, 0) + int(row.n)
        opened: list[dict[str, str | None]] = []
        for row in legacy:
            readable = self._codec.opens(row.machine_config, row.join_api_url)
            group = (str(row.value), Stage(row.stage), not readable)
            counts[group] = counts.get(group, 0) + 1
            if readable:
                opened.append({"row_id": row.id, "config": row.machine_config})
        if opened and ours is not None:
            # Only saves later decrypts: a count that could not write is still right.
            with contextlib.suppress(StoreError):
                self._record_key_id(ours, opened)
        return counts

    def _record_key_id(self, ours: str, opened: list[dict[str, str | None]]) -> None:
        """Write ``ours`` beside rows stored before key ids were (revision 0008) that
        this store's key has just opened, so that no later count decrypts them again.
        Only where the row still holds the machine config that was opened (a reseal
        in between leaves it alone). Rows sealed under another key stay NULL: their
        key id is unknown. Idempotent."""
        with self._write() as conn:
            conn.execute(requests.update().where(
                requests.c.id == sa.bindparam("row_id"), requests.c.sealed_with.is_(None),
                requests.c.machine_config == sa.bindparam("config"),
            ).values(sealed_with=ours), opened)

    def count_due(
        self, stages: Collection[Stage], *, now: datetime | None = None
    ) -> dict[str, int]:
        """Per provider instance, how many requests in ``stages`` are due at ``now``
        (``next_attempt_at`` unset or not after it).

        Instances with none are absent. Counted in SQL; decrypts nothing. Raises
        :class:`StoreError` when the store cannot be read.
        """
        wanted = [Stage(s).value for s in stages]
        if not wanted:
            return {}
        moment = utc_or_now(now)
        query = (
            sa.select(requests.c.provider, sa.func.count().label("n"))
            .where(
                requests.c.stage.in_(wanted),
                sa.or_(
                    requests.c.next_attempt_at.is_(None),
                    requests.c.next_attempt_at <= moment,
                ),
            )
            .group_by(requests.c.provider)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return {str(row.provider): int(row.n) for row in rows}
