"""Requests of a provider instance this worker does not have: what it says about them.

Workers sharing a store may configure different instances, so a worker without
an instance leaves that instance's requests to a worker that has it, and never
overwrites what such a worker recorded on them (its endpoint's error, say). But
when no worker has the instance (it was removed from the config), a request of
it waits for ever: a deletion stays deprovisioning with its machine in place. So
the worker also puts :func:`unconfigured_error` on each such request that has no
error, with an event, once per request and stage (a deletion resets the error,
so a request deleted afterwards is told again). `machine list`, `machine get`
and the API show it; the worker that has the instance clears it with its next
progress. Pure bookkeeping: the reconciler writes.
"""

from __future__ import annotations

from collections.abc import Iterable

from talprov.providers.types import Stage
from talprov.store.observations import RequestSummary


def unconfigured_error(instance: str) -> str:
    """The error recorded on a request whose instance is not configured here."""
    return (f"provider instance {instance!r} is not configured in this worker (removed "
            "from the config?): nothing is done for this request, and no machine of it "
            "is deleted, until a worker configured with it runs")


class UnconfiguredInstances:
    """What one worker has said about instances it does not have. Not thread-safe:
    one pass at a time uses it."""

    def __init__(self) -> None:
        self._said: set[str] = set()
        self._noted: set[tuple[str, Stage]] = set()

    def first_mention(self, instance: str) -> str | None:
        """The pass report's line for ``instance`` the first time it is met, else None."""
        if instance in self._said:
            return None
        self._said.add(instance)
        return f"provider {instance!r} is not configured here"

    def to_note(self, group: Iterable[RequestSummary]) -> list[RequestSummary]:
        """The requests of ``group`` to put the error on now: waiting for a step
        (not provisioned), without an error of their own, not told yet in this
        stage. Marks them told."""
        due = [s for s in group if s.stage != Stage.PROVISIONED and not s.error
               and (s.id, s.stage) not in self._noted]
        self._noted.update((s.id, s.stage) for s in due)
        return due
