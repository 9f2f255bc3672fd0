"""The reconcile loop that runs beside the API, and lease renewal for it.

The reconciler claims a lease on each request before working on it and releases
it afterwards. A step can outlast any fixed TTL (an image import takes minutes),
so :class:`LeaseKeeper` renews every lease this process holds every third of the
TTL from its own thread. A replica that dies stops renewing: its leases expire
after at most one TTL and another replica takes the requests over. Renewal and
claim are the store's single conditional UPDATE, so two replicas never hold one
request at the same time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any, cast

from talprov.providers.errors import ConfigError
from talprov.providers.protocol import Runtime
from talprov.providers.types import Stage
from talprov.reconciler import ProviderHandle, Reconciler
from talprov.scaler.apply import Scaler
from talprov.secrets import redact
from talprov.service.metrics import Metrics
from talprov.service.sets import SetRepository, reconcile_set
from talprov.store.errors import StoreError
from talprov.store.store import Store

log = logging.getLogger(__name__)

_ACTIVE = (Stage.PENDING, Stage.PROVISIONING, Stage.DEPROVISIONING)


class LeaseKeeper:
    """A store that remembers the leases it handed out and keeps them alive.

    Everything but claiming and releasing goes straight to the wrapped store.
    """

    def __init__(self, store: Store, *, ttl: float) -> None:
        self._store = store
        self.ttl = ttl
        self._held: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def __repr__(self) -> str:
        return f"LeaseKeeper({self._store!r}, ttl={self.ttl})"

    def as_store(self) -> Store:
        """This wrapper typed as the store it stands in for."""
        return cast(Store, self)

    def claim(
        self, request_id: str, *, owner: str, ttl: float, now: datetime | None = None
    ) -> bool:
        """The store's claim; a won lease is renewed from now on until released."""
        won = self._store.claim(request_id, owner=owner, ttl=ttl, now=now)
        if won:
            with self._lock:
                self._held[request_id] = owner
        return won

    def release(self, request_id: str, *, owner: str) -> None:
        """The store's release; renewal of this lease stops. Idempotent."""
        # Under the lock, so that a renewal cannot re-take a lease just released.
        with self._lock:
            self._held.pop(request_id, None)
            self._store.release(request_id, owner=owner)

    def claim_many(
        self, request_ids: Collection[str], *, owner: str, ttl: float,
        now: datetime | None = None,
    ) -> dict[str, int]:
        """The store's claim_many; every won lease is renewed until released."""
        won = self._store.claim_many(request_ids, owner=owner, ttl=ttl, now=now)
        with self._lock:
            for request_id in won:
                self._held[request_id] = owner
        return won

    def release_many(self, request_ids: Collection[str], *, owner: str) -> None:
        """The store's release_many; renewal of these leases stops. Idempotent."""
        with self._lock:
            for request_id in request_ids:
                self._held.pop(request_id, None)
            self._store.release_many(request_ids, owner=owner)

    def held(self) -> dict[str, str]:
        with self._lock:
            return dict(self._held)

    def renew_all(self) -> int:
        """Renew every held lease once; returns how many were renewed. Never raises."""
        renewed = 0
        for request_id, owner in self.held().items():
            with self._lock:
                if self._held.get(request_id) != owner:
                    continue  # released since the snapshot
                try:
                    ok = self._store.claim(request_id, owner=owner, ttl=self.ttl)
                except StoreError as exc:
                    log.warning("lease renewal of %s failed: %s", request_id, exc)
                    continue
                if not ok:
                    # Forgotten meanwhile, or (after a stall longer than the TTL)
                    # taken over: the optimistic version check stops our stale writes.
                    del self._held[request_id]
                    self.lost.append(request_id)
            if ok:
                renewed += 1
            else:
                log.warning("lease on %s lost", request_id)
        return renewed

    def start(self) -> None:
        """Start the renewal thread (idempotent)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="talprov-lease-renewal",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            self.renew_all()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class ReconcileLoop:
    """Runs set reconciliation and reconcile passes until stopped, in one thread."""

    def __init__(
        self,
        store: Store,
        handles: Mapping[str, ProviderHandle],
        runtime: Runtime,
        *,
        sets: SetRepository,
        metrics: Metrics,
        interval: float,
        lease_ttl: float,
        worker_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases = LeaseKeeper(store, ttl=lease_ttl)
        self.reconciler = Reconciler(
            self.leases.as_store(), handles, runtime, worker_id=worker_id, lease_ttl=lease_ttl
        )
        self.sets = sets
        self.scaler = Scaler(store, handles, runtime, worker_id=self.reconciler.worker_id,
                             lease_ttl=max(lease_ttl, 30.0))
        self.metrics = metrics
        self.interval = interval
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def worker_id(self) -> str:
        return self.reconciler.worker_id

    def wake(self) -> None:
        """Run the next pass now rather than after the interval."""
        self._wake.set()

    def run_once(self) -> None:
        """One round: every set, then one reconcile pass. Never raises."""
        started = self._clock()
        failed = False
        try:
            for request_set in self.sets.all():
                reconcile_set(self.sets, request_set)
        except StoreError as exc:
            failed = True
            log.warning("set reconciliation failed: %s", redact(str(exc)))
        try:
            # Clusters recorded with `talprov apply`: one replica at a time runs a
            # cluster's pass (the store's cluster lease).
            for name in self.scaler.store.list_clusters():
                self.scaler.run_pass(name)
        except (StoreError, ConfigError) as exc:
            failed = True
            log.warning("cluster pass failed: %s", redact(str(exc)))
        try:
            report = self.reconciler.run_pass()
            for error in report.errors:
                log.warning("reconcile: %s", redact(error))
            failed = failed or bool(report.errors)
        except StoreError as exc:
            failed = True
            log.warning("reconcile pass failed: %s", redact(str(exc)))
        except Exception as exc:
            failed = True
            log.error("reconcile pass crashed: %s", type(exc).__name__)
        self.metrics.note_pass(self._clock() - started, failed=failed)

    def _pause(self) -> float:
        # Requests that are due again soon (waiting steps poll every few hundred
        # milliseconds) should not wait a whole interval.
        # A floor keeps a request nobody here can serve (its provider is not
        # configured on this replica, or another replica holds it) from spinning.
        floor = min(self.interval, 0.25)
        soonest = self.interval
        try:
            now = datetime.now(UTC)
            for record in self.reconciler.store.list_requests(stages=_ACTIVE):
                if record.next_attempt_at is None:
                    return floor
                wait = (record.next_attempt_at - now).total_seconds()
                soonest = min(soonest, max(floor, wait))
        except StoreError:
            pass
        return soonest

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._wake.wait(self._pause())
            self._wake.clear()

    def start(self) -> None:
        """Start the loop and lease renewal threads (idempotent)."""
        if self._thread is not None:
            return
        self.leases.start()
        self._thread = threading.Thread(target=self._run, name="talprov-reconcile", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the current pass, then stop; leases it held are released by it."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None
        self.leases.stop()
