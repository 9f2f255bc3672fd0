"""Changing a recorded cluster under its lease, so that no change is lost.

A scaler pass reads the cluster's record, lists machines (seconds, on a slow
cloud), and writes the record back with its backoff and orphan bookkeeping. A
spec recorded meanwhile by ``talprov apply``/``scale``/``destroy`` or by the
Cluster Autoscaler would be overwritten by that write. The pass holds the
cluster's lease while it runs; every other change of the record takes the same
lease first (:func:`holding_cluster`), waiting for a running pass to finish.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from talprov.store.store import Store

#: Seconds a change may hold the lease; a change takes milliseconds, so this
#: only bounds how long a process that died mid-change blocks the next one.
EDIT_LEASE_TTL = 30.0
#: How often a waiting change looks at the lease again.
POLL_SECONDS = 0.05

_numbers = itertools.count(1)


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
    while not store.claim_cluster(name, owner=owner, ttl=EDIT_LEASE_TTL,
                                  now=now()):
        if store.get_cluster(name) is None:
            yield
            return
        if clock() >= deadline:
            raise ClusterBusy(f"cluster {name} is busy: a scaler pass or another change "
                              f"has held its lease for {wait:.0f} s; try again")
        sleep(POLL_SECONDS)
    try:
        yield
    finally:
        store.release_cluster(name, owner=owner)
