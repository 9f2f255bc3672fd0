"""The reconcile loop that runs beside the API.

Each round reconciles the request sets, runs the scaler's cluster passes and one
reconcile pass, then waits until a request is due (or :meth:`ReconcileLoop.wake`).
Lease renewal while a step runs long is the reconciler's own
(:class:`talprov.reconcile.reconciler.Reconciler`), as it is for the CLI.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from talprov.errors import ConfigError
from talprov.providers.protocol import Runtime
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.scaler.apply import Scaler
from talprov.secrets import redact
from talprov.service.metrics import Metrics
from talprov.sets import SetRepository, reconcile_set
from talprov.store.errors import StoreError
from talprov.store.store import Store

log = logging.getLogger(__name__)


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
        self.reconciler = Reconciler(store, handles, runtime, worker_id=worker_id,
                                     lease_ttl=lease_ttl)
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
        try:
            return self.reconciler.seconds_until_due(self.interval, floor=floor)
        except StoreError:
            return self.interval

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._wake.wait(self._pause())
            self._wake.clear()

    def start(self) -> None:
        """Start the loop's thread (idempotent); the reconciler starts lease renewal
        when a pass first holds a lease."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="talprov-reconcile", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Finish the current pass, then stop; leases it held are released by it.

        Waits at most ``timeout`` seconds for the pass. Returns False when it is
        still running then (a provider call that does not return): its leases are
        no longer renewed and expire after ``lease_ttl``, so another replica takes
        the requests over once this process has exited. Lease renewal stops with
        it. Idempotent; never raises.
        """
        self._stop.set()
        self._wake.set()
        finished = True
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            finished = not self._thread.is_alive()
            if finished:
                self._thread = None
        self.reconciler.close()
        return finished

    @property
    def running(self) -> bool:
        """Whether the loop's thread is still alive (a pass outlived ``stop``)."""
        return self._thread is not None and self._thread.is_alive()
