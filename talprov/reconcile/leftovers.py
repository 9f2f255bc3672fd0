"""The leftover sweep: parts that outlived the request they were made for.

Providers implementing :class:`~talprov.providers.protocol.SweepsLeftovers` (a
detached OpenStack port, an unassociated floating IP) list them in one call per
kind of part. The sweep lists first and only then reads which requests the
store holds: a request is stored before its first step runs, so anything a
create in flight made belongs to a request read here and is kept. Leftovers
whose tags name no request are kept too: nothing says whose they are.

The sweep is upkeep, not a step of any request: an instance whose requests a
pass works on is swept in a later pass with nothing to do for it, so its round
trips never stand between a request and provisioned. An instance that is never
idle is still swept, once its sweep is a whole interval overdue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping

from talprov.providers.errors import ProviderError
from talprov.providers.protocol import Leftover, Provider, SweepsLeftovers
from talprov.providers.types import Owner
from talprov.secrets import redact
from talprov.store.errors import StoreError
from talprov.store.store import Store

log = logging.getLogger(__name__)


class LeftoverSweeper:
    """Sweeps each provider instance at most once every ``interval`` seconds, and
    at least once every two while it is never idle.

    ``clock`` is the runtime's clock (seconds); ``installation`` is this
    talprov's ownership mark.
    """

    def __init__(
        self, store: Store, installation: str, clock: Callable[[], float], interval: float
    ) -> None:
        self.store = store
        self.installation = installation
        self.clock = clock
        self.interval = interval
        self._last: dict[str, float] = {}
        # An instance never swept counts as swept an interval before this sweeper
        # began: due at once when idle, at the latest one interval in.
        self._never = clock() - interval

    def sweep_due(
        self, providers: Mapping[str, Provider], errors: list[str],
        busy: Collection[str] = (),
    ) -> int:
        """Sweep every instance whose sweep is due; how many leftovers were deleted.

        ``busy``: the instances whose requests this pass worked on; their sweep
        waits for a pass without work for them unless it is overdue by another
        interval (see the module docstring). Instances without the optional
        protocol are skipped. Failures are appended to ``errors`` (redacted) and
        never stop the other instances or leftovers; never raises. Idempotent:
        deleting a leftover already gone is success.
        """
        now = self.clock()
        swept = 0
        for instance, provider in sorted(providers.items()):
            if not isinstance(provider, SweepsLeftovers):
                continue
            waited = now - self._last.get(instance, self._never)
            if waited < self.interval or (instance in busy and waited < 2 * self.interval):
                continue
            # Noted whatever the outcome: a failing platform is retried after the
            # interval, not hammered every pass.
            self._last[instance] = now
            swept += self._sweep(instance, provider, errors)
        return swept

    def _sweep(self, instance: str, provider: SweepsLeftovers, errors: list[str]) -> int:
        owner = Owner(self.installation, instance)
        try:
            leftovers = provider.list_leftovers(owner)
        except Exception as exc:
            errors.append(f"{instance}: list_leftovers: {describe(exc)}")
            return 0
        if not leftovers:
            return 0
        # Read only after listing (see the module docstring).
        try:
            held = self.store.request_ids(instance)
        except StoreError as exc:
            errors.append(f"{instance}: sweep: {redact(str(exc))}")
            return 0
        swept = 0
        for leftover in leftovers:
            if leftover.request_id is None or leftover.request_id in held:
                continue
            if _delete(instance, provider, owner, leftover, errors):
                swept += 1
        return swept


def _delete(
    instance: str, provider: SweepsLeftovers, owner: Owner, leftover: Leftover,
    errors: list[str],
) -> bool:
    try:
        provider.delete_leftover(owner, leftover)
    except Exception as exc:
        errors.append(f"{instance}: delete_leftover {leftover.kind} {leftover.id}: "
                      f"{describe(exc)}")
        return False
    log.info("%s: swept leftover %s %s of request %s", instance, leftover.kind,
             leftover.id, leftover.request_id)
    return True


def describe(exc: Exception) -> str:
    """A provider failure for a report: the redacted text of a ``ProviderError``,
    only the class of anything else (a bug whose text nobody vetted)."""
    if isinstance(exc, ProviderError):
        return redact(str(exc))
    return f"unexpected {type(exc).__name__}"
