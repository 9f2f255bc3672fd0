"""What every part of :class:`talprov.store.Store` uses of the whole.

The store is one class mixed from parts (requests' progress, leases, clusters,
request sets, sessions, reads for the status page); each part reads and writes
through these, which :class:`~talprov.store.store.Store` provides.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy.engine import Connection


class StorePart:
    """The base of every part of the store: its transactions and event log."""

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # pragma: no cover - Store provides it

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # pragma: no cover - Store provides it

    @staticmethod
    def _append_events(
        conn: Connection, request_id: str, messages: Sequence[str], at: datetime
    ) -> None:
        raise NotImplementedError  # pragma: no cover - Store provides it
