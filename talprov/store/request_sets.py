"""MachineRequestSets in the store: one row per set, its secrets sealed like a request's.

The document is whatever JSON the service keeps for a set; the store only
knows that the machine config and join URL are secret and keeps them in their
own columns through its codec (encrypted when ``TALPROV_STORE_KEY`` is set).
Writes use optimistic concurrency like request progress: a writer may state
the version it read and loses with :class:`StaleRecord` if the set changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr

from talprov.store.crypto import SecretCodec
from talprov.store.engine import retry_insert_race
from talprov.store.errors import StaleRecord, StoreKeyError
from talprov.store.parts import StorePart
from talprov.store.records import RequestSetRecord, dump_json, utc_or_now
from talprov.store.schema import request_sets

_NAME_LIMIT = 255  # the width of request_sets.name


class RequestSetMethods(StorePart):
    """The request-set half of :class:`talprov.store.Store`, which mixes it in and
    provides the transactions and the codec."""

    _codec: SecretCodec

    def put_request_set(
        self,
        name: str,
        document: dict[str, Any],
        *,
        machine_config: str | None,
        join_url: str | None,
        expected_version: int | None = None,
        create_only: bool = False,
        now: datetime | None = None,
    ) -> int:
        """Create or replace the set ``name`` and return its version after the write.

        ``expected_version`` ``None`` writes whatever is stored; ``0`` requires
        that no set of that name exists; any other number requires the stored
        version to equal it. Idempotent: when the stored document and secrets
        already equal the given ones, nothing is written and the current version
        is returned, whatever ``expected_version`` says (a retried write that
        had succeeded is not stale). Versions restart at 1 after a delete.
        ``create_only`` refuses any existing set, even an equal one, with
        :class:`StaleRecord`: of several concurrent creators exactly one wins.
        Raises :class:`StaleRecord` on a version mismatch (nothing is written),
        :class:`StoreError` when ``document`` is not JSON-serialisable,
        ``ValueError`` for an empty or over-long name. ``machine_config``
        ``None`` keeps the sealed machine config and join URL as stored (a set
        whose secrets this key cannot read can still be scaled down or deleted);
        ``join_url`` is then ignored, and a set that does not exist yet raises
        :class:`StaleRecord`.
        """
        if not name or len(name) > _NAME_LIMIT:
            raise ValueError(f"request set names are 1 to {_NAME_LIMIT} characters")
        text = dump_json(document, what=f"document of request set {name}")
        moment = utc_or_now(now)
        return retry_insert_race(
            lambda: self._put_set_once(
                name, text, machine_config, join_url, expected_version, create_only, moment
            )
        )

    def _put_set_once(
        self,
        name: str,
        text: str,
        machine_config: str | None,
        join_url: str | None,
        expected_version: int | None,
        create_only: bool,
        now: datetime,
    ) -> int:
        with self._write() as conn:
            # FOR UPDATE: on PostgreSQL the read decides the write (see Store._select_row).
            row = conn.execute(
                sa.select(request_sets).where(request_sets.c.name == name).with_for_update()
            ).first()
            if row is not None and create_only:
                raise StaleRecord(f"request set {name} already exists")
            if row is None and machine_config is None:
                raise StaleRecord(f"request set {name} was removed; it cannot keep its secrets")
            if row is not None and self._holds(row, text, machine_config, join_url):
                return int(row.version)
            current = 0 if row is None else int(row.version)
            if expected_version is not None and expected_version != current:
                found = "does not exist" if row is None else f"is at version {current}"
                raise StaleRecord(
                    f"request set {name} {found}, not version {expected_version}: "
                    "another writer got there first"
                )
            values: dict[str, Any] = {"document": text, "updated_at": now,
                                      "version": current + 1}
            if machine_config is not None:
                values["machine_config"] = self._codec.encode(machine_config)
                values["join_api_url"] = (
                    None if join_url is None else self._codec.encode(join_url))
            if row is None:
                conn.execute(request_sets.insert().values(name=name, created_at=now, **values))
            else:
                conn.execute(
                    request_sets.update().where(request_sets.c.name == name).values(**values)
                )
        return current + 1

    def _holds(
        self, row: sa.Row[Any], text: str, machine_config: str | None, join_url: str | None
    ) -> bool:
        # Compare decrypted secrets: Fernet output differs on every encryption.
        if row.document != text:
            return False
        if machine_config is None:
            return True  # the secrets are kept as stored
        try:
            return _unseal_row(self._codec, row) == (machine_config, join_url)
        except StoreKeyError:
            return False  # sealed with another key: the new secrets replace them

    def get_request_set(self, name: str) -> RequestSetRecord | None:
        """The stored set, or ``None``. Secrets this store's key cannot read (a
        different ``TALPROV_STORE_KEY``, or none) do not raise: the record comes
        back without them and with ``unreadable`` saying why (never the key), as
        requests do, so that the set can still be listed, scaled down and deleted."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(request_sets).where(request_sets.c.name == name)
            ).first()
        if row is None:
            return None
        unreadable = None
        try:
            machine_config, join_url = _unseal_row(self._codec, row)
        except StoreKeyError as exc:
            # The codec's message names the cause (the key differs), never the key.
            machine_config, join_url = "", None
            unreadable = f"stored secrets unreadable: {exc}"
        document: dict[str, Any] = json.loads(row.document)
        return RequestSetRecord(
            name=row.name,
            document=document,
            machine_config=SecretStr(machine_config),
            join_url=None if join_url is None else SecretStr(join_url),
            created_at=row.created_at,
            updated_at=row.updated_at,
            version=int(row.version),
            unreadable=unreadable,
        )

    def list_request_sets(self) -> list[str]:
        """Names of all stored sets, sorted."""
        with self._read() as conn:
            return list(
                conn.execute(
                    sa.select(request_sets.c.name).order_by(request_sets.c.name)
                ).scalars()
            )

    def request_set_page(
        self, *, limit: int, after: str | None = None,
        keep: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[str]:
        """At most ``limit`` set names sorting after ``after``, sorted; with ``keep``,
        only those whose document it accepts (the caller knows the document's shape).

        Reads names and documents, never the sealed secrets, ``limit`` rows at a
        time until the page is full or the sets run out, so a page of a filter
        that keeps few sets costs more reads, never more memory. Read-only.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        names: list[str] = []
        cursor = after
        while len(names) < limit:
            query = sa.select(request_sets.c.name, request_sets.c.document).order_by(
                request_sets.c.name).limit(limit)
            if cursor is not None:
                query = query.where(request_sets.c.name > cursor)
            with self._read() as conn:
                rows = conn.execute(query).all()
            for row in rows:
                if keep is None or keep(json.loads(row.document)):
                    names.append(str(row.name))
                    if len(names) == limit:
                        break
            if len(rows) < limit:
                break
            cursor = str(rows[-1].name)
        return names

    def delete_request_set(self, name: str, *, expected_version: int | None = None) -> None:
        """Remove the set ``name``. Idempotent: an unknown name is not an error.

        With ``expected_version`` the set is removed only while it is at that
        version; raises :class:`StaleRecord` (removing nothing) when it moved on.
        """
        with self._write() as conn:
            query = request_sets.delete().where(request_sets.c.name == name)
            if expected_version is not None:
                query = query.where(request_sets.c.version == expected_version)
            if conn.execute(query).rowcount == 1 or expected_version is None:
                return
            current = conn.execute(
                sa.select(request_sets.c.version).where(request_sets.c.name == name)
            ).scalar_one_or_none()
            if current is not None:
                raise StaleRecord(
                    f"request set {name} is at version {current}, not {expected_version}: "
                    "another writer got there first"
                )


def _unseal_row(codec: SecretCodec, row: sa.Row[Any]) -> tuple[str, str | None]:
    """The row's machine config and join URL; raises :class:`StoreKeyError`."""
    machine_config = codec.decode(row.machine_config)
    join_url = None if row.join_api_url is None else codec.decode(row.join_api_url)
    return machine_config, join_url
