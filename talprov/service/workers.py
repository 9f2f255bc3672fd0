"""The service's worker: the library's run loop (:mod:`talprov.runloop`) in a thread.

It does exactly what ``talprov reconcile`` does (request sets, cluster passes,
one reconcile pass per round, then a wait until a request is due) and adds what
the service needs: a thread to run in, metrics for each round, errors in the
log, and :meth:`ReconcileLoop.wake` when the API records something.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Protocol

from talprov.providers.protocol import Runtime
from talprov.reconcile.instance_health import InstanceTrouble
from talprov.reconcile.reconciler import ProviderHandle
from talprov.runloop import RoundReport, RunLoop
from talprov.service.metrics import Metrics
from talprov.store.store import Store

log = logging.getLogger(__name__)


class WorkerLoop(Protocol):
    """What the API needs of its reconcile workers, in a thread
    (:class:`ReconcileLoop`) or a child process
    (:class:`talprov.service.worker_process.WorkerProcess`)."""

    @property
    def worker_id(self) -> str: ...

    @property
    def running(self) -> bool: ...

    def wake(self) -> None: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 30.0) -> bool: ...

    def instance_troubles(self) -> dict[str, InstanceTrouble]: ...


class ReconcileLoop:
    """Runs :class:`talprov.runloop.RunLoop` rounds in one thread until stopped."""

    def __init__(
        self,
        store: Store,
        handles: Mapping[str, ProviderHandle],
        runtime: Runtime,
        *,
        metrics: Metrics,
        interval: float,
        lease_ttl: float,
        worker_id: str | None = None,
    ) -> None:
        self.runloop = RunLoop(store, handles, runtime, worker_id=worker_id,
                               lease_ttl=lease_ttl)
        self.metrics = metrics
        self.interval = interval
        self._thread: threading.Thread | None = None

    @property
    def worker_id(self) -> str:
        return self.runloop.worker_id

    def wake(self) -> None:
        """Run the next round now rather than when a request is due."""
        self.runloop.wake()

    def instance_troubles(self) -> dict[str, InstanceTrouble]:
        """Instances whose listing the loop's reconciler backs off from. Never raises."""
        return self.runloop.reconciler.instance_troubles()

    def _note(self, report: RoundReport) -> None:
        """Log a round's errors and count it in the metrics. Never raises."""
        for error in report.errors:
            log.warning("%s", error)
        self.metrics.note_pass(report.seconds, failed=report.failed)

    def start(self) -> None:
        """Start the loop's thread (idempotent); the reconciler starts lease renewal
        when a pass first holds a lease."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self.runloop.run_forever, kwargs={"interval": self.interval,
                                                     "on_round": self._note},
            name="talprov-reconcile", daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Finish the current round, then stop; leases it held are released by it.

        Waits at most ``timeout`` seconds for the round. Returns False when it is
        still running then (a provider call that does not return): its leases are
        no longer renewed and expire after ``lease_ttl``, so another replica takes
        the requests over once this process has exited. Lease renewal stops with
        it. Idempotent; never raises.
        """
        self.runloop.stop()
        finished = True
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            finished = not self._thread.is_alive()
            if finished:
                self._thread = None
        self.runloop.close()
        return finished

    @property
    def running(self) -> bool:
        """Whether the loop's thread is still alive (a round outlived ``stop``)."""
        return self._thread is not None and self._thread.is_alive()
