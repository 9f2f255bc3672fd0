"""Changing a recorded cluster under its lease, so that no change is lost.

A scaler pass reads the cluster's record, lists machines (seconds, on a slow
cloud), and writes the record back with its backoff and orphan bookkeeping. A
spec recorded meanwhile by ``talprov apply``/``scale``/``destroy`` or by the
Cluster Autoscaler would be overwritten by that write. The pass holds the
cluster's lease while it runs; every other change of the record takes the same
lease first (:func:`holding_cluster`), waiting for a running pass to finish.

A lease left by a process of this host that was killed (``host:pid`` in its
owner, the pid gone) is taken over at once (:func:`claim_cluster_lease`), as a
request's lease is, instead of blocking every change for its TTL.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from talprov.processes import take_over_if_dead
from talprov.store.store import Store
from talprov.timestamps import rfc3339

#: Seconds a change may hold the lease; a change takes milliseconds, so this
#: only bounds how long a process that died mid-change blocks the next one.
EDIT_LEASE_TTL = 30.0
#: How often a waiting change looks at the lease again.
POLL_SECONDS = 0.05

_numbers = itertools.count(1)
log = logging.getLogger(__name__)


class ClusterBusy(Exception):
    """The cluster's lease stayed taken for the whole wait."""


@contextmanager
def holding_cluster(
    store: Store, name: str, *, worker_id: str, wait: float, now: Callable[[], datetime],
    clock: Callable[[], float], sleep: Callable[[float], None],
) -> Iterator[None]:
    """Hold cluster ``name``'s lease while the body runs, waiting up to ``wait``
    seconds (on ``clock``, with ``sleep``) for a scaler pass or another change to
    give it back. ``now`` is the time leases are written with.

    A cluster that is not recorded yet has no lease and nothing to race with:
    the body runs without one. Raises :class:`ClusterBusy` when the lease stays
    taken. Releases the lease however the body ends.
    """
    owner = f"{worker_id}/edit/{uuid.uuid4().hex[:8]}-{next(_numbers)}"
    deadline = clock() + wait
    while not claim_cluster_lease(store, name, owner=owner, ttl=EDIT_LEASE_TTL, now=now()):
        if store.get_cluster(name) is None:
            yield
            return
        if clock() >= deadline:
            holder = store.cluster_lease_holder(name)
            held = "its lease is taken" if holder is None else holder_words(holder)
            raise ClusterBusy(f"cluster {name} is busy: {held}; waited {wait:.0f} s, "
                              "try again")
        sleep(POLL_SECONDS)
    try:
        yield
    finally:
        store.release_cluster(name, owner=owner)


def claim_cluster_lease(store: Store, name: str, *, owner: str, ttl: float,
                        now: datetime) -> bool:
    """:meth:`Store.claim_cluster`, but a lease whose holder is a process of this
    host that no longer runs is taken over at once rather than after its TTL.

    False when a live process (or one on another host) holds it, or the cluster
    is not recorded. Idempotent for the holder.
    """
    if store.claim_cluster(name, owner=owner, ttl=ttl, now=now):
        return True
    holder = store.cluster_lease_holder(name)
    return take_over_if_dead(
        None if holder is None else holder[0],
        release=lambda dead: store.release_cluster(name, owner=dead),
        claim=lambda: store.claim_cluster(name, owner=owner, ttl=ttl, now=now))


def holder_words(holder: tuple[str, datetime]) -> str:
    """Who holds a cluster lease and until when, for people: "a change by process
    host:4242, whose lease runs out at 2026-01-01T00:05:00Z"."""
    owner, until = holder
    process, _, rest = owner.partition("/")
    what = "a change" if rest.startswith("edit/") else "a scaler pass"
    return f"{what} by process {process} holds its lease, until {rfc3339(until)}"


class SkippedClusters:
    """Says once per cluster and holder that a scaler pass skipped a cluster
    because another process holds its lease (every round would repeat it)."""

    def __init__(self) -> None:
        self._told: dict[str, str] = {}

    def note(self, store: Store, name: str) -> None:
        """Log (INFO) that cluster ``name`` was skipped, unless already said for
        the process holding it now. Read-only on the store."""
        holder = store.cluster_lease_holder(name)
        if holder is None:
            return  # given back meanwhile, or not recorded: the next round runs it
        process = holder[0].partition("/")[0]
        if self._told.get(name) != process:
            self._told[name] = process
            log.info("cluster %s skipped this round: %s", name, holder_words(holder))

    def ran(self, name: str) -> None:
        """The pass of cluster ``name`` ran: a later skip is worth saying again."""
        self._told.pop(name, None)
