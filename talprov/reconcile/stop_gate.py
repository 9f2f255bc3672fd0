"""What an interrupted pass leaves running, and the fence that keeps it out of the store.

An interruption (Ctrl-C, SIGTERM, a ``--wait`` deadline) is raised in the main
thread only. The pass no longer waits for the steps and listings it runs in other
threads (:class:`talprov.daemon_pool.DaemonPool`): a cloud call there may not
return for the HTTP client's whole read timeout. Such a step may still write to
the cloud, so its request keeps its lease (held by this process, which is about
to end: a later process of this host takes it over at once, one elsewhere after
the TTL), and nothing it finds out is stored: the next holder runs the step
again, idempotent as every step is.

:class:`StopGate` knows which requests are in a step now, and after
:meth:`StopGate.stop` lets no step start and no outcome be stored.
:class:`GatedStorage` puts the gate in front of a runner's storage.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from talprov.reconcile.storage import ProgressStorage
from talprov.store.errors import StaleRecord
from talprov.store.records import ProgressUpdate, RequestRecord


class Abandoned(BaseException):
    """Raised in a thread an interrupted pass left behind, at its next step or
    store write. A BaseException, as the interruption itself: no ``except
    Exception`` of the runner records it as the step's failure."""


class StopGate:
    """Which requests are in a step now; after :meth:`stop`, no more steps or writes.

    Thread-safe. A stopped gate stays stopped: the reconciler that owns it has
    been interrupted and runs no further pass.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_step: Counter[str] = Counter()
        self._stopped = False

    @property
    def stopped(self) -> bool:
        with self._lock:
            return self._stopped

    def enter(self, request_ids: Sequence[str]) -> None:
        """Note that a step starts for ``request_ids`` (counted: a step may run
        within another's batch). Raises :class:`Abandoned` once stopped."""
        with self._lock:
            if self._stopped:
                raise Abandoned("the pass was interrupted")
            self._in_step.update(request_ids)

    def leave(self, request_ids: Sequence[str]) -> None:
        """Note that the step :meth:`enter` noted has ended. Never raises."""
        with self._lock:
            self._in_step.subtract(request_ids)
            for rid in request_ids:
                if self._in_step[rid] <= 0:
                    del self._in_step[rid]

    def check(self) -> None:
        """Raises :class:`Abandoned` once stopped; else nothing."""
        with self._lock:
            if self._stopped:
                raise Abandoned("the pass was interrupted")

    def stop(self) -> set[str]:
        """Stop: from now on no step starts and nothing is stored. Returns the
        requests still in a step (their threads were left running). Idempotent."""
        with self._lock:
            self._stopped = True
            return set(self._in_step)


class GatedStorage:
    """``storage`` behind ``gate``: reads pass, writes raise :class:`Abandoned` once
    the gate is stopped.

    A write that passed the gate just before the stop still commits: it is one
    step's whole outcome in one transaction, of a request whose lease stays with
    this process while its step ran, so it is as good as a write a moment
    earlier; nothing half-stored can come of it.
    """

    def __init__(self, storage: ProgressStorage, gate: StopGate) -> None:
        self.storage = storage
        self.gate = gate

    def get_request(self, request_id: str) -> RequestRecord | None:
        return self.storage.get_request(request_id)

    def request_versions(self, request_ids: Collection[str]) -> dict[str, int]:
        return self.storage.request_versions(request_ids)

    def save_progress(self, request_id: str, **fields: Any) -> RequestRecord:
        self.gate.check()
        return self.storage.save_progress(request_id, **fields)

    def save_progress_many(
        self, updates: Sequence[ProgressUpdate], *, now: datetime | None = None
    ) -> list[RequestRecord | StaleRecord]:
        self.gate.check()
        return self.storage.save_progress_many(updates, now=now)
