"""Each provider instance's machines: listed at most once per round, shared by its readers.

A round of the run loop has two readers of an instance's machines: the scaler's
orphan check (once per cluster pass) and the reconcile pass. Both read through
one :class:`MachineListings`. Inside ``with listings.round():`` the first read
of an instance calls ``list_machines`` and every later read of the round gets
the same answer, or the same failure; outside a round every read lists afresh
(a reconcile pass on its own, ``talprov plan``).

The instance's backoff lives here as well, so that there is one record of
whether an instance's listing fails and one rule for telling about it: a
failing instance is not asked again before its next attempt
(:class:`~talprov.reconcile.instance_health.InstanceBackoff`), and a failure
says whether it *changed* the instance's state, which is when its readers warn
(once per change, not once per attempt or per reader of a round).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from talprov.providers.errors import ProviderError
from talprov.providers.protocol import NamesEndpoint, Provider
from talprov.providers.types import Machine, Owner
from talprov.reconcile.instance_health import InstanceBackoff, InstanceTrouble

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listing:
    """One instance's machines as one read got them, or why it got none.

    ``machines`` is None when the listing failed (``error`` and ``trouble``
    say why) or was not asked for because the instance is backing off
    (``skipped``). ``changed``: this failure changed the instance's state
    (it was healthy, or fails another way now): tell people about it.
    ``fresh``: this read made the call (False: an earlier read of the round did).
    ``taken_at`` is the runtime clock's reading when the call was made.
    """

    machines: tuple[Machine, ...] | None
    taken_at: float
    error: ProviderError | None = None
    trouble: InstanceTrouble | None = None
    changed: bool = False
    fresh: bool = True

    @property
    def skipped(self) -> bool:
        """Whether the instance was not asked (its backoff has not run out)."""
        return self.machines is None and self.error is None


class MachineListings:
    """``list_machines`` per instance, once per round, with each instance's backoff.

    The round's shared answers are not thread-safe: one round (or pass) at a
    time reads through it (a pass may ask from a helper thread while it does
    other work, then read the answer). The backoff it keeps is thread-safe and
    may be read and written from other threads meanwhile.
    """

    def __init__(self, installation: str, clock: Callable[[], float],
                 backoff: InstanceBackoff | None = None) -> None:
        self.installation = installation
        self.clock = clock
        self.backoff = backoff or InstanceBackoff()
        self._round: dict[str, Listing] | None = None

    @contextmanager
    def round(self) -> Iterator[None]:
        """Share every instance's listing between the reads inside the block.

        Nested blocks belong to the outermost one. The answers are forgotten
        when it ends.
        """
        if self._round is not None:
            yield
            return
        self._round = {}
        try:
            yield
        finally:
            self._round = None

    def forget(self, instance: str) -> None:
        """Make the next read of ``instance`` in this round list afresh. Idempotent."""
        if self._round is not None:
            self._round.pop(instance, None)

    def answers(self, instance: str) -> bool:
        """Whether :meth:`listing` would answer now (the round's answer, or a call)
        rather than skip ``instance`` for its backoff. Read-only."""
        shared = self._round is not None and instance in self._round
        return shared or self.backoff.due(instance, self.clock())

    def listing(self, instance: str, provider: Provider) -> Listing:
        """``instance``'s machines: the round's answer when there is one, else a
        ``list_machines`` call unless the instance is backing off.

        Never raises for provider errors: a failure is recorded in the backoff
        and returned in the listing. Idempotent within a round.
        """
        shared = None if self._round is None else self._round.get(instance)
        if shared is not None:
            return Listing(shared.machines, shared.taken_at, shared.error, shared.trouble,
                           shared.changed, fresh=False)
        now = self.clock()
        if not self.backoff.due(instance, now):
            return Listing(None, now)
        listing = self._list(instance, provider, now)
        if self._round is not None:
            self._round[instance] = listing
        return listing

    def _list(self, instance: str, provider: Provider, now: float) -> Listing:
        try:
            machines = provider.list_machines(Owner(self.installation, instance))
        except ProviderError as exc:
            endpoint = provider.endpoint() if isinstance(provider, NamesEndpoint) else None
            # Timed from the failure, not the call's start: a call that waited out
            # its read timeout (and the SDK's retries) ends minutes later, and the
            # next attempt counted from its start would already be past.
            trouble, changed = self.backoff.failed(instance, exc, endpoint, self.clock())
            return Listing(None, now, exc, trouble, changed)
        ended = self.backoff.succeeded(instance)
        if ended is not None:
            log.warning("provider %r answers again (was %s since %s)", instance, ended.kind,
                        datetime.fromtimestamp(ended.since, UTC).isoformat())
        return Listing(tuple(machines), now)
