"""The run loop: the one place that decides what a worker does and when.

A *round* is, in this order:

1. every request set (``talprov.sets``): create or delete members until each
   has ``machine_count``;
2. every recorded cluster: one scaler pass under the cluster's lease
   (``talprov.scaler.apply.Scaler.run_pass``; a cluster another worker is
   planning is skipped this round);
3. one reconcile pass over every active request
   (``talprov.reconcile.reconciler.Reconciler.run_pass``).

Each provider instance's machines are listed once per round
(``talprov.reconcile.listings``): the cluster passes' orphan checks and the
reconcile pass read the same listing, and an instance whose listing fails is
backed off and warned about once for all of them.

A round never raises for provider or store errors: it reports them in its
:class:`RoundReport`, and a failure of one set or cluster does not keep the
others from their turn. Between rounds the loop waits until the earliest
request is due (``Reconciler.seconds_until_due``), at most ``interval``.

``talprov reconcile`` runs :meth:`RunLoop.run_forever` (``--once``:
:meth:`RunLoop.run_round`), ``talprov serve``'s worker thread runs
:meth:`RunLoop.run_forever` too, and ``apply --wait``, ``destroy --wait`` and
``talprov demo`` run :meth:`RunLoop.run_until`; so they all do the same work.
Waits use the runtime's sleeper (a ``talprov.testing.FakeClock`` makes them
instant); the real ``time.sleep`` is replaced by a wait that :meth:`RunLoop.wake`
and :meth:`RunLoop.stop` cut short.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from talprov.errors import ConfigError
from talprov.providers.errors import ProviderError
from talprov.providers.protocol import Runtime
from talprov.reconcile.failures import StepPolicy
from talprov.reconcile.instance_health import InstanceBackoff
from talprov.reconcile.reconciler import PassReport, ProviderHandle, Reconciler
from talprov.reconcile.waiting import repeat_until
from talprov.scaler.apply import Scaler
from talprov.scaler.clusterstate import UnreadableCluster
from talprov.scaler.templates import NameGenerator
from talprov.secrets import redact
from talprov.sets import SetRepository, reconcile_set
from talprov.store.errors import StoreError
from talprov.store.store import Store

log = logging.getLogger(__name__)

#: The shortest wait while some request is waiting, so that a request nobody
#: here can serve (another worker holds it, its provider instance is not
#: configured here) cannot make the loop spin.
SERVE_FLOOR = 0.25
#: The shortest wait of :meth:`RunLoop.run_until`: a CLI wait follows its
#: requests' short polls closely.
WAIT_FLOOR = 0.05


@dataclass
class RoundReport:
    """What one round did: its reconcile pass and every error, redacted."""

    reconcile: PassReport | None = None
    errors: list[str] = field(default_factory=list)
    #: Wall-clock seconds the round took (for metrics).
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        """Whether any part of the round reported an error."""
        return bool(self.errors)


def note_unreadable(known: dict[str, str], subject: str, reason: str | None,
                    consequence: str) -> None:
    """Warn once per record (not every round) that its secrets cannot be read, and
    say once more when they can again. ``known`` is what was warned about so far."""
    if reason is None:
        if known.pop(subject, None) is not None:
            log.info("%s: its secrets are readable again", subject)
    elif known.get(subject) != reason:
        known[subject] = reason
        log.warning("%s set aside (%s): %s", subject, consequence, reason)


class RunLoop:
    """Request sets, cluster passes and reconcile passes, in rounds, until told to stop.

    ``lease_ttl`` is the reconciler's request lease; cluster passes hold their
    cluster's lease for ``max(lease_ttl, 30)`` seconds. ``names`` makes the ids
    of the scaler's new requests (tests pass a seeded one); ``instance_backoff``
    the instances' backoff when it is shared with other readers of the same
    instances (a command's own first pass). Raises
    ``ValueError`` like :class:`Reconciler` for a bad ``lease_ttl``.
    """

    def __init__(
        self,
        store: Store,
        handles: Mapping[str, ProviderHandle],
        runtime: Runtime,
        *,
        worker_id: str | None = None,
        lease_ttl: float = 300.0,
        policy: StepPolicy | None = None,
        names: NameGenerator | None = None,
        instance_backoff: InstanceBackoff | None = None,
    ) -> None:
        self.reconciler = Reconciler(store, handles, runtime, worker_id=worker_id,
                                     lease_ttl=lease_ttl, policy=policy,
                                     instance_backoff=instance_backoff)
        self.scaler = Scaler(store, handles, runtime, names=names,
                             worker_id=self.reconciler.worker_id,
                             lease_ttl=max(lease_ttl, 30.0),
                             listings=self.reconciler.listings)
        self.sets = SetRepository(store)
        self.store = store
        self.runtime = runtime
        self._wake = threading.Event()
        #: Sets and clusters whose secrets this key cannot read ("request set x",
        #: "cluster y"), and why: each warned about once.
        self._unreadable: dict[str, str] = {}
        self._stop = threading.Event()

    @property
    def worker_id(self) -> str:
        """The lease identity of this loop's reconciler and scaler."""
        return self.reconciler.worker_id

    # -- one round ------------------------------------------------------------------

    def run_round(self) -> RoundReport:
        """Request sets, then cluster passes, then one reconcile pass.

        Never raises for provider, store or spec errors: each is in the report's
        ``errors`` (a crash of the reconcile pass is reported by its type only).
        Idempotent in the level-triggered sense: on a converged store it changes
        nothing.
        """
        started = time.monotonic()
        report = RoundReport()
        # One list_machines per provider instance and round: the cluster passes'
        # orphan checks and the reconcile pass share it (and its failures).
        with self.reconciler.listings.round():
            self._each(report.errors, "request set", self.store.list_request_sets,
                       self._reconcile_set)
            self._each(report.errors, "cluster", self.store.list_clusters,
                       self._run_cluster_pass)
            try:
                report.reconcile = self.reconciler.run_pass()
                report.errors.extend(f"reconcile: {e}" for e in report.reconcile.errors)
            except StoreError as exc:
                report.errors.append(f"reconcile pass failed: {redact(str(exc))}")
            except Exception as exc:  # the loop must outlive any one pass
                log.error("reconcile pass crashed: %s", type(exc).__name__)
                report.errors.append(f"reconcile pass crashed: {type(exc).__name__}")
        report.seconds = time.monotonic() - started
        return report

    def _reconcile_set(self, name: str) -> None:
        request_set = self.sets.get(name)
        if request_set is None:  # removed since it was listed
            self._unreadable.pop(f"request set {name}", None)
            return
        note_unreadable(self._unreadable, f"request set {name}", request_set.unreadable,
                        "no member is created or replaced until it is deleted or replaced")
        # An unreadable set still shrinks and is removed when deleted; it never grows.
        reconcile_set(self.sets, request_set, now=self.reconciler.now())

    def _run_cluster_pass(self, name: str) -> None:
        try:
            if self.scaler.run_pass(name) is None:
                return  # another worker plans it now, or it was forgotten
            reason = None
        except UnreadableCluster as exc:
            reason = exc.reason
        note_unreadable(self._unreadable, f"cluster {name}", reason,
                        "no machine is created or replaced until it is read with the key it "
                        "was recorded with, its spec is applied again with --reseal, or it is "
                        "destroyed")

    @staticmethod
    def _each(errors: list[str], what: str, names: Callable[[], list[str]],
              work: Callable[[str], None]) -> None:
        """``work`` on every name ``names()`` lists; a failure is noted in ``errors``
        and the next name gets its turn."""
        try:
            listed = names()
        except StoreError as exc:
            errors.append(f"{what}s: {redact(str(exc))}")
            return
        for name in listed:
            try:
                work(name)
            except (StoreError, ConfigError, ProviderError, KeyError) as exc:
                message = redact(str(exc))
                # Many store errors name the set or cluster themselves: say it once.
                subject = f"{what} {name}"
                errors.append(message if message.startswith(subject) else f"{subject}: {message}")

    # -- waiting --------------------------------------------------------------------

    def pause(self, interval: float, *, floor: float = SERVE_FLOOR) -> float:
        """Seconds until the next round has work: until the earliest due request,
        at most ``interval`` and at least ``min(floor, interval)`` while one is
        waiting. ``interval`` when the store cannot be read. Never raises."""
        try:
            return self.reconciler.seconds_until_due(interval, floor=min(floor, interval))
        except StoreError:
            return interval

    def _sleep(self, seconds: float) -> None:
        if self.runtime.sleep is time.sleep:
            # Real time: wait on the event so that wake() and stop() cut it short.
            self._wake.wait(seconds)
        else:
            self.runtime.sleep(seconds)
        self._wake.clear()

    def wake(self) -> None:
        """Start the next round now rather than when something is due. Idempotent."""
        self._wake.set()

    def stop(self) -> None:
        """Make :meth:`run_forever` return after the current round. Idempotent."""
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    # -- loops ----------------------------------------------------------------------

    def run_until(
        self,
        done: Callable[[], bool],
        *,
        timeout: float,
        interval: float = 2.0,
        on_round: Callable[[RoundReport], None] | None = None,
    ) -> bool:
        """Run rounds until ``done()`` (checked after each) or ``timeout`` seconds
        passed on the runtime's clock; True when done.

        ``on_round`` and ``done`` run inside the round's listings, so a check
        that reads machines through :attr:`scaler` (``preview``) reuses the
        round's listing instead of listing every instance again. Waits between
        rounds like :meth:`run_forever` (floor :data:`WAIT_FLOOR`). Raises only
        what ``done`` and ``on_round`` raise.
        """
        finished = False

        def work() -> None:
            nonlocal finished
            with self.reconciler.listings.round():
                report = self.run_round()
                if on_round is not None:
                    on_round(report)
                finished = done()

        return repeat_until(
            work, lambda: finished, timeout=timeout,
            pause=lambda: self.pause(interval, floor=WAIT_FLOOR),
            clock=self.runtime.clock, sleep=self._sleep,
        )

    def run_forever(
        self, *, interval: float, on_round: Callable[[RoundReport], None] | None = None
    ) -> None:
        """Run rounds until :meth:`stop`, waiting between them until a request is
        due (at most ``interval``) or :meth:`wake` is called.

        Returns after the round running when :meth:`stop` is called. Raises only
        what ``on_round`` raises.
        """
        while not self._stop.is_set():
            report = self.run_round()
            if on_round is not None:
                on_round(report)
            if self._stop.is_set():
                return
            self._sleep(self.pause(interval))

    def close(self) -> None:
        """Stop the reconciler's lease renewal now. Idempotent."""
        self.reconciler.close()

    def __enter__(self) -> RunLoop:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
