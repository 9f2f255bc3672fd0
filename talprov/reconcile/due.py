"""When a reconciler's next pass has work: the due times of working requests.

Split from :mod:`talprov.reconcile.reconciler` (a mixin, as
:class:`~talprov.reconcile.leases.LeaseRenewal`): ``run_until``, the run loop and
``--wait``'s status line ask it how long to sleep and what waits.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from talprov.providers.types import Stage
from talprov.reconcile.instance_health import InstanceBackoff
from talprov.store.store import Store

#: The stages in which steps run, so a request there can become due.
WORKING_STAGES = (Stage.PENDING, Stage.PROVISIONING, Stage.DEPROVISIONING)


class DueTimes:
    """The due-time half of :class:`talprov.reconcile.reconciler.Reconciler`.

    Needs ``store``, ``instance_backoff`` and ``now()`` from the class it is mixed
    into.
    """

    store: Store
    instance_backoff: InstanceBackoff

    def now(self) -> datetime:
        raise NotImplementedError

    def seconds_until_due(
        self, interval: float, *, floor: float, only: Collection[str] | None = None
    ) -> float:
        """How long to wait before the next pass has work: the time until the
        earliest request (of ``only`` when given) in a working stage is due.

        At most ``interval``; at least ``floor`` when some request is waiting, so
        a request nobody here can serve (another worker holds it, its provider is
        not configured here) cannot make the caller spin. A request due now gives
        ``floor``. Read-only (decrypts nothing); raises :class:`StoreError` when
        the store cannot be read.
        """
        now = self.now()
        wanted = None if only is None else set(only)
        soonest = interval
        for request_id, next_attempt_at in self._next_attempts():
            if wanted is not None and request_id not in wanted:
                continue
            if next_attempt_at is None:
                return floor
            soonest = min(soonest, max(floor, (next_attempt_at - now).total_seconds()))
        return soonest

    def not_yet_due(self) -> tuple[int, datetime | None]:
        """How many working requests wait for a next attempt that is not due yet
        (their step's retry, their instance's backoff), and the earliest of those
        attempts (None when none waits). Read-only; raises :class:`StoreError`
        when the store cannot be read."""
        now = self.now()
        later = [at for _, at in self._next_attempts() if at is not None and at > now]
        return len(later), min(later, default=None)

    def _next_attempts(self) -> list[tuple[str, datetime | None]]:
        """Each working request's next attempt, no sooner than its instance's backoff."""
        troubles = self.instance_backoff.troubles()
        if not troubles:
            return self.store.next_attempts(WORKING_STAGES)
        found: list[tuple[str, datetime | None]] = []
        for summary in self.store.summaries(WORKING_STAGES):
            trouble = troubles.get(summary.provider)
            at = summary.next_attempt_at
            if trouble is not None:
                blocked_until = datetime.fromtimestamp(trouble.next_attempt, UTC)
                at = blocked_until if at is None else max(at, blocked_until)
            found.append((summary.id, at))
        return found

