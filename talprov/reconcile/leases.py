"""Leases of a reconciler: claimed for a pass's due requests, renewed by a thread
while it runs.

A pass claims the due requests in one conditional UPDATE (claim_many) and takes
over at once a lease a dead process of this host left behind (``_claim``).

A step can outlast any fixed TTL (an image import takes minutes), so while a
pass holds leases a daemon thread renews them every ``renew_interval`` (a third
of the TTL by default); it starts with the first lease held and ends soon after
the last is released. Renewal is the store's conditional UPDATE (claim_many).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from talprov.processes import take_over_if_dead
from talprov.secrets import redact
from talprov.store.errors import StoreError
from talprov.store.observations import RequestSummary
from talprov.store.records import RequestRecord
from talprov.store.store import Store

log = logging.getLogger(__name__)


class LeaseRenewal:
    """The lease half of :class:`talprov.reconcile.reconciler.Reconciler`: claiming, taking
    over from dead processes of this host, renewing, releasing.

    Needs ``store``, ``worker_id``, ``lease_ttl``, ``renew_interval`` and ``now()``
    from the class it is mixed into; call :meth:`_init_leases` in its ``__init__``.
    """

    store: Store
    worker_id: str
    lease_ttl: float
    renew_interval: float

    def now(self) -> datetime:
        raise NotImplementedError

    def _init_leases(self) -> None:
        # Leases this reconciler holds now. A release and a renewal both run under
        # _lease_lock, so a renewal can never take back a lease just released.
        self._held: set[str] = set()
        self._lease_lock = threading.Lock()
        # The renewal thread runs while leases are held and ends soon after the last
        # is released; setting its wake event makes it look at once.
        self._renewer_lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._renewer_wake = threading.Event()
        #: Leases found taken over (or gone) at renewal, oldest first.
        self.lost_leases: list[str] = []

    def held_leases(self) -> set[str]:
        """Ids of the requests whose lease this reconciler holds (and renews) now."""
        with self._lease_lock:
            return set(self._held)

    def _hold(self, request_ids: Collection[str]) -> None:
        if not request_ids:
            return
        with self._lease_lock:
            self._held.update(request_ids)
        self._start_renewal()

    def _forget(self, request_ids: Collection[str]) -> None:
        """Stop renewing ``request_ids`` without giving them back: they run out."""
        with self._lease_lock:
            self._held.difference_update(request_ids)

    def claim_held(self, request_ids: Collection[str]) -> dict[str, int]:
        """Claim ``request_ids`` for this worker, renewed while held: those it now
        holds, with their current version (one held elsewhere is absent). Work
        that is no step's (upkeep) holds a request this way, so that no step of
        it runs meanwhile; give it back with :meth:`release_held`. Raises
        :class:`StoreError` when the store cannot be written."""
        held = self.store.claim_many(request_ids, owner=self.worker_id, ttl=self.lease_ttl,
                                     now=self.now())
        self._hold(held)
        return held

    def release_held(self, request_ids: Collection[str]) -> None:
        """Give back leases taken with :meth:`claim_held`. Idempotent."""
        self._release(request_ids)

    def _release(self, request_ids: Collection[str]) -> None:
        idle = False
        try:
            with self._lease_lock:
                # Forgotten first: should the release fail, the lease just runs out.
                self._held.difference_update(request_ids)
                idle = not self._held
                self.store.release_many(request_ids, owner=self.worker_id)
        finally:
            if idle:
                with self._renewer_lock:
                    self._renewer_wake.set()

    def renew_leases(self) -> int:
        """Renew every held lease once, for ``lease_ttl`` from now; how many were renewed.

        A lease that cannot be renewed (taken over after a stall longer than the
        TTL, or its request removed) is logged, dropped and noted in
        :attr:`lost_leases`; the store's optimistic version check already stops
        this worker's stale writes. A store failure is logged and the leases are
        kept for the next try. Never raises; idempotent.
        """
        with self._lease_lock:
            wanted = sorted(self._held)
            if not wanted:
                return 0
            try:
                renewed = self.store.claim_many(wanted, owner=self.worker_id,
                                                ttl=self.lease_ttl, now=self.now())
            except StoreError as exc:
                log.warning("lease renewal failed: %s", redact(str(exc)))
                return 0
            lost = [rid for rid in wanted if rid not in renewed]
            self._held.difference_update(lost)
            self.lost_leases.extend(lost)
        for rid in lost:
            log.warning("lease on %s lost", rid, extra={"request_id": rid})
        return len(renewed)

    @property
    def renewal_running(self) -> bool:
        """Whether the lease renewal thread runs now (only while leases are held)."""
        with self._renewer_lock:
            return self._renewer is not None

    def _start_renewal(self) -> None:
        with self._renewer_lock:
            if self._renewer is not None:
                return
            self._renewer_wake = threading.Event()
            self._renewer = threading.Thread(
                target=self._renew_while_held, args=(self._renewer_wake,),
                name="talprov-lease-renewal", daemon=True,
            )
            self._renewer.start()

    def _renew_while_held(self, wake: threading.Event) -> None:
        # Waits in wall time on purpose: a fake runtime clock moves only when slept on.
        while True:
            if not wake.wait(self.renew_interval):
                try:
                    self.renew_leases()
                except Exception as exc:  # the thread must outlive any one failure
                    log.error("lease renewal crashed: %s", type(exc).__name__)
            with self._renewer_lock:
                if self._renewer_wake is not wake:
                    return  # closed
                wake.clear()
                # Decided under the lock _start_renewal takes, so a lease held from
                # now on finds either this thread still running or none at all.
                if not self.held_leases():
                    self._renewer = None
                    return

    def close(self) -> None:
        """Stop the lease renewal thread now. Idempotent.

        The thread also ends by itself soon after a pass released its leases; a
        later pass starts it again. Leases of a pass still running when this is
        called are no longer renewed.
        """
        with self._renewer_lock:
            thread, self._renewer = self._renewer, None
            self._renewer_wake.set()
            self._renewer_wake = threading.Event()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _held_elsewhere(self, group: Sequence[RequestSummary], due: Mapping[str, int]) -> bool:
        """Whether another worker held a due request of ``group`` when it was read."""
        return any(s.id in due and s.lease_owner not in (None, self.worker_id) for s in group)

    def _inherited(self, group: Sequence[RequestSummary],
                   claimed: Sequence[RequestRecord]) -> bool:
        """Whether a request now claimed was held by another worker whose lease ran
        out: a lease let go is cleared, so that worker died or stalled mid-work, and
        what it made may be missing from a listing taken before the claim."""
        ours = {r.request.id for r in claimed}
        return any(s.id in ours and s.lease_owner not in (None, self.worker_id)
                   for s in group)

    def _claim(self, due: Sequence[RequestRecord]) -> tuple[list[RequestRecord], int]:
        """The due requests this worker now holds the lease of, as they were read,
        and how many it took over (a lease a dead worker of this host left is
        taken over at once).

        A request another replica advanced between our read and the claim (its
        version moved) is let go: the next pass reads it afresh.
        """
        held = self.store.claim_many([r.request.id for r in due], owner=self.worker_id,
                                     ttl=self.lease_ttl, now=self.now())
        self._hold(held)
        took_over = 0
        for record in due:
            rid = record.request.id
            if rid in held:
                continue
            # A process on this host that was killed leaves its leases behind; do
            # not make a restarted worker wait out the TTL for them.
            if self._take_over(rid):
                self._hold([rid])
                took_over += 1
                fresh = self.store.get_request(rid)
                if fresh is not None:
                    held[rid] = fresh.version
        claimed = [r for r in due if held.get(r.request.id) == r.version]
        stale = [r.request.id for r in due
                 if r.request.id in held and held[r.request.id] != r.version]
        self._release(stale)
        return claimed, took_over

    def _take_over(self, rid: str) -> bool:
        """Claim ``rid`` when a dead process of this host holds its lease, or when
        nobody holds it any more (take_over_if_dead's one rule, as for clusters)."""
        holder = self.store.lease_holder(rid)
        taken = take_over_if_dead(
            None if holder is None else holder[0],
            release=lambda dead: self.store.release(rid, owner=dead),
            claim=lambda: self.store.claim(rid, owner=self.worker_id, ttl=self.lease_ttl,
                                           now=self.now()))
        if taken and holder is not None:
            log.info("request %s: took over the lease of %s, a talprov process of this "
                     "host that is gone", rid, holder[0])
        return taken
