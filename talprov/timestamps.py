"""The one way talprov writes a point in time for people and scripts."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC as RFC 3339 with ``Z`` (``2026-01-02T03:04:05.123456Z``).

    The same text the HTTP API's models produce, so the CLI and the API agree;
    a naive datetime is taken to be UTC (the store keeps UTC). Pure.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
