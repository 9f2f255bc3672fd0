"""Where the step runner keeps a request's progress: a small storage protocol.

The runner needs three things of a store: read a request, tell whether requests
changed since it read them (their versions), and write one step's outcome if
nobody changed the request since it was read. Saying exactly that
here (kopf's ``ProgressStorage`` plays the same role) keeps the runner free of
the store's class: :class:`talprov.store.store.Store` implements it on SQL, and
:class:`talprov.testing.MemoryProgressStorage` in memory for tests.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Protocol

from talprov.providers.types import Stage
from talprov.store.errors import StaleRecord
from talprov.store.records import ProgressUpdate, RequestRecord


class ProgressStorage(Protocol):
    """Reads requests and stores step outcomes with an optimistic version check."""

    def get_request(self, request_id: str) -> RequestRecord | None:
        """The request as last stored, or None when it is not (or no longer) there.

        Read-only. Raises ``StoreError`` when the storage cannot be read.
        """
        ...

    def request_versions(self, request_ids: Collection[str]) -> dict[str, int]:
        """The stored version of each of ``request_ids`` still recorded (a removed
        one is absent), without reading their payloads.

        Read-only. Raises ``StoreError`` when the storage cannot be read.
        """
        ...

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
        """Store one step's outcome and its event lines together; the new record.

        Writes only while the stored version equals ``expected_version``, then
        bumps it. Raises ``StaleRecord`` when the version moved or the request was
        removed (nothing is written), ``StoreError`` for any other failure. Not
        idempotent on purpose: a replay at the old version is stale.
        """
        ...

    def save_progress_many(
        self, updates: Sequence[ProgressUpdate], *, now: datetime | None = None
    ) -> list[RequestRecord | StaleRecord]:
        """Store the outcomes of a batch step together (one transaction where it has them).

        Each update is written only at its ``expected_version``; a stale one writes
        nothing and comes back as its ``StaleRecord``, the others as their new
        records, in order. Raises ``StoreError`` for any other failure (then
        nothing is written). Not idempotent, like ``save_progress``.
        """
        ...
