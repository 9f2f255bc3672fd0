"""The request reconciler: level-triggered passes over the store.

One pass reads the requests that need attention, claims the due ones, observes
each provider instance's machines with ONE ``list_machines`` call (whatever the
number of requests), then advances every due request through its steps, at
most ``concurrency`` at a time per provider instance. Every provider's pass
goes in this one order; steps that promise not to need the listing
(``Step.needs_listing=False``) run while it is on its way. Provisioned requests
whose machine vanished are marked failed so that the scaler replaces them.

A pass claims a lease on each request before working on it and releases it
afterwards. A step can outlast any fixed TTL (an image import takes minutes), so
while a pass holds leases a thread of the reconciler renews them every third of
the TTL; whoever runs passes (the ``talprov`` CLI, the service) gets renewal
with them. A process that dies stops renewing: its leases expire after at most
one TTL and another process takes the requests over. Renewal and claim are the
store's single conditional UPDATE, so two workers never hold one request.

When an instance's listing fails, its requests are not worked on and the
instance is asked again only after a jittered, capped exponential backoff
(:mod:`talprov.reconcile.instance_health`); the error (kind, endpoint, since
when, next attempt) is recorded on every request it blocks, and reported once per
change of the instance's state rather than once per attempt.

A full pass also sweeps leftovers (parts that outlived the request they were
made for) of providers implementing ``SweepsLeftovers``, at most once every
``sweep_interval`` seconds per provider instance, in a pass with no work for it
(:mod:`talprov.reconcile.leftovers`), so that it never delays a request.

An interruption (Ctrl-C, SIGTERM, a ``--wait`` deadline) ends a pass at once:
it waits for no listing or step running in another thread, which a cloud that
never answers could hold for the HTTP client's read timeout. The requests still
in a step keep their leases and nothing more is stored for them
(:mod:`talprov.reconcile.stop_gate`); the others' leases are given back.

Steps get the listed machine a request's record names; the request's others
(second machines) are destroyed as upkeep too, for ``RemovesSecondMachines``
providers (:mod:`talprov.reconcile.second_machines`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime

from talprov.daemon_pool import DaemonPool
from talprov.logs import log_context
from talprov.processes import local_worker_id
from talprov.providers.protocol import Provider, Runtime
from talprov.providers.types import Machine, Owner, Stage
from talprov.reconcile.due import DueTimes
from talprov.reconcile.failures import StepPolicy
from talprov.reconcile.instance_health import InstanceBackoff, InstanceTrouble
from talprov.reconcile.leases import LeaseRenewal
from talprov.reconcile.leftovers import LeftoverSweeper
from talprov.reconcile.listings import Listing, MachineListings
from talprov.reconcile.observing import Observations, by_request, machines_by_request
from talprov.reconcile.runner import RequestRunner
from talprov.reconcile.second_machines import SecondMachineRemover
from talprov.reconcile.stop_gate import StopGate
from talprov.reconcile.unconfigured import UnconfiguredInstances, unconfigured_error
from talprov.reconcile.waiting import repeat_until
from talprov.reconcile.work import Work
from talprov.store.observations import RequestSummary
from talprov.store.records import RequestRecord
from talprov.store.store import Store

log = logging.getLogger(__name__)

ACTIVE_STAGES = (Stage.PENDING, Stage.PROVISIONING, Stage.PROVISIONED, Stage.DEPROVISIONING)


@dataclass
class ProviderHandle:
    """A configured provider instance and how much parallel work it may take."""

    provider: Provider
    concurrency: int = 8


@dataclass
class PassReport:
    """What one pass did, for progress output and tests."""

    list_calls: dict[str, int] = field(default_factory=dict)
    worked: int = 0
    #: New problems: an instance whose state changed to failing is reported here
    #: once, not on every pass it stays failing (see ``unhealthy``).
    errors: list[str] = field(default_factory=list)
    #: Every instance whose listing is failing now, with why and the next attempt.
    unhealthy: dict[str, str] = field(default_factory=dict)
    #: Leftovers deleted by this pass's sweep.
    swept: int = 0
    #: Second machines of requests destroyed by this pass.
    second_machines: int = 0
    #: Requests whose lease a gone process of this host held, taken over at once.
    taken_over: int = 0


class Reconciler(LeaseRenewal, DueTimes):
    """Drives requests in the store towards their desired stage.

    ``renew_interval`` (default a third of ``lease_ttl``) is how often, in wall
    time, held leases are renewed, from a daemon thread that runs only while a
    pass holds leases. ``sweep_interval`` is how often, on the runtime's clock,
    each instance's leftovers are swept (and how long second machines wait for
    an instance whose requests are always on their way). :meth:`close` (or leaving a ``with``
    block) stops renewal at once. Raises ``ValueError`` for a ``lease_ttl`` that
    is not positive or a ``renew_interval`` not within (0, ``lease_ttl``).
    ``instance_backoff`` spaces out the listings of an instance that fails
    (default: 1 s doubling up to 60 s, jittered).
    """

    def __init__(
        self,
        store: Store,
        providers: Mapping[str, ProviderHandle],
        runtime: Runtime,
        *,
        worker_id: str | None = None,
        lease_ttl: float = 300.0,
        policy: StepPolicy | None = None,
        on_change: Callable[[RequestRecord], None] | None = None,
        renew_interval: float | None = None,
        sweep_interval: float = 300.0,
        instance_backoff: InstanceBackoff | None = None,
    ) -> None:
        if lease_ttl <= 0:
            raise ValueError("lease_ttl must be positive")
        if renew_interval is not None and not 0 < renew_interval < lease_ttl:
            raise ValueError("renew_interval must be positive and shorter than lease_ttl")
        self.store = store
        self.providers = providers
        self.runtime = runtime
        self.worker_id = worker_id or local_worker_id()
        self.lease_ttl = lease_ttl
        self.policy = policy or StepPolicy()
        self.on_change = on_change
        self._runners: dict[str, RequestRunner] = {}
        #: What this worker said about instances it does not have.
        self._unconfigured = UnconfiguredInstances()
        self.instance_backoff = instance_backoff or InstanceBackoff()
        #: Every instance's listing, shared with the scaler inside a run-loop round.
        self.listings = MachineListings(runtime.installation, runtime.clock,
                                        self.instance_backoff)
        self.renew_interval = renew_interval if renew_interval is not None else lease_ttl / 3
        self.sweep_interval = sweep_interval
        self._sweeper = LeftoverSweeper(store, runtime.installation, runtime.clock,
                                        sweep_interval)
        #: What the pass writes about requests it looks at (drift, blocks).
        self._observations = Observations(store, self.now)
        #: Shut by an interruption: see _left_running.
        self._gate = StopGate()
        self._init_leases()
        self._seconds = SecondMachineRemover(store, self, runtime.installation, runtime.clock,
                                             sweep_interval)

    def __enter__(self) -> Reconciler:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def now(self) -> datetime:
        """The runtime clock's time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.runtime.clock(), UTC)

    def _runner(self, instance: str, handle: ProviderHandle) -> RequestRunner:
        runner = self._runners.get(instance)
        if runner is None:
            owner = Owner(self.runtime.installation, instance)
            runner = RequestRunner(
                handle.provider, owner, self.runtime, self.store, self.policy, self._gate,
                instance_failing=lambda: self.instance_backoff.trouble(instance) is not None)
            self._runners[instance] = runner
        return runner

    def run_pass(self, only: Collection[str] | None = None) -> PassReport:
        """One level-triggered pass over the active requests (of ``only`` when given).

        A full pass (``only`` None) also sweeps leftovers when the instance's
        sweep is due. Never raises for provider errors (they are reported);
        raises :class:`StoreError` when the store cannot be read. Idempotent in
        the level-triggered sense: a converged store makes it do nothing.
        Raises :class:`Abandoned` once a pass of this reconciler was interrupted:
        steps it left may still run, and it must not start them again.
        """
        self._gate.check()
        report = PassReport()
        # Summaries, not records: most requests need only a look (is the machine
        # still there, is it due yet); whole records are read for due ones only.
        summaries = self.store.summaries(ACTIVE_STAGES)
        if only is not None:
            wanted = set(only)
            summaries = [s for s in summaries if s.id in wanted]
        by_instance: dict[str, list[RequestSummary]] = {}
        for summary in summaries:
            by_instance.setdefault(summary.provider, []).append(summary)
        busy: set[str] = set()
        for instance, group in sorted(by_instance.items()):
            handle = self.providers.get(instance)
            if handle is None:
                self._note_unconfigured(instance, group, report)
                continue
            worked = report.worked
            with log_context(provider=instance):
                self._pass_instance(instance, handle, group, report)
            if report.worked > worked:
                busy.add(instance)
        report.second_machines = self._seconds.remove_due(report.errors, full=only is None)
        if only is None:
            # An instance that cannot list machines cannot list leftovers either.
            report.swept = self._sweeper.sweep_due(
                {name: handle.provider for name, handle in self.providers.items()
                 if self.instance_backoff.trouble(name) is None},
                report.errors, busy,
            )
        report.unhealthy = {name: trouble.describe()
                            for name, trouble in self.instance_backoff.troubles().items()}
        return report

    def instance_troubles(self) -> dict[str, InstanceTrouble]:
        """Every configured instance whose listing fails now, by name. Never raises."""
        return self.instance_backoff.troubles()

    def _note_unconfigured(self, instance: str, group: Sequence[RequestSummary],
                           report: PassReport) -> None:
        # See talprov.reconcile.unconfigured: said once; an error only on requests
        # without one (another worker's error stays).
        line = self._unconfigured.first_mention(instance)
        if line is not None:
            report.errors.append(line)
        message = unconfigured_error(instance)
        for summary in self._unconfigured.to_note(group):
            self._observations.note(summary, error=message, events=[message])

    def _pass_instance(
        self, instance: str, handle: ProviderHandle, group: Sequence[RequestSummary],
        report: PassReport,
    ) -> None:
        """One instance's share of a pass, in one order for every provider:

        1. claim the due requests (nothing to claim: straight to the listing);
        2. ask for the listing, and while it is on its way run the steps that
           need none (``Step.needs_listing=False``; with none, just wait for it);
        3. check drift, then run the steps that need the listing.

        The listing must show whatever an earlier holder of a claimed request
        made for it. When no due request is held by another worker (as the pass
        read them), every earlier holder let go before that read, so the listing
        is asked at once, beside the claim (the store's reads and the claim no
        longer delay the first step). Otherwise, or when the claim took over a
        lease after all (a dead worker of this host), it is asked after the
        claim, and a listing the round took before (shared with the scaler) is
        not used.
        """
        if not self.listings.answers(instance):
            return  # backing off: nothing can be decided for this instance now
        runner = self._runner(instance, handle)
        due = self._due(group)
        # The pool's exit waits for a listing asked early, unless interrupted.
        with DaemonPool(1, "talprov-list") as lister:
            asked = (lister.submit(self.listings.listing, instance, handle.provider)
                     if due and not self._held_elsewhere(group, due) else None)
            claimed: list[RequestRecord] = []
            holding: Collection[str] = ()
            claim_returned = False
            running: set[str] = set()
            try:
                claimed, took_over = self._claim(self._still_due(due)) if due else ([], 0)
                claim_returned = True
                holding = [r.request.id for r in claimed]
                report.taken_over += took_over
                if took_over or self._inherited(group, claimed):
                    if asked is not None:
                        asked.result()  # (one reader of the listings at a time)
                        asked = None
                    self.listings.forget(instance)
                self._work_claimed(instance, handle, runner, group, claimed, asked, report)
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    running = self._left_running()
                if not claim_returned:
                    # Interrupted inside the claim (the listing beside it may be
                    # what the pass waited on), or its answer lost after its
                    # commit: every due request is given back (only this worker's
                    # are).
                    holding = due
                raise
            finally:
                self._release([rid for rid in holding if rid not in running])
        report.worked += len(claimed)

    def _work_claimed(
        self, instance: str, handle: ProviderHandle, runner: RequestRunner,
        group: Sequence[RequestSummary], claimed: Sequence[RequestRecord],
        asked: Future[Listing] | None, report: PassReport,
    ) -> None:
        """Steps 2 and 3 of :meth:`_pass_instance` (``asked``: the listing, if asked)."""
        listing, works, early, parked = self._listing_beside(instance, handle, runner,
                                                             claimed, asked)
        if listing.machines is None:
            if not listing.skipped:  # (answers() said it would not be)
                report.list_calls[instance] = 1
                runner.store_parked(parked)
                # Steps that ran meanwhile moved versions on: note on fresh ones.
                stored = ({s.id: s for s in self.store.summaries(ACTIVE_STAGES)}
                          if early else {})
                self._blocked(listing, [stored.get(s.id, s) for s in group], report)
            self._changed(early)
            return
        report.list_calls[instance] = 1
        listed = machines_by_request(listing.machines)
        observed = by_request(listed, {s.id: s.infra_id for s in group})
        self._observations.check_drifts(group, observed)
        self._seconds.note(instance, handle.provider, group, listed)
        ran_early = {id(w) for w in early}
        rest = [*parked, *(w for w in works if id(w) not in ran_early)]
        for work in rest:
            work.observed = observed.get(work.record.request.id)
            work.listed = True
        if rest:
            self._run_works(runner, handle, rest)
        self._changed(works)

    def _listing_beside(
        self, instance: str, handle: ProviderHandle, runner: RequestRunner,
        claimed: Sequence[RequestRecord], asked: Future[Listing] | None = None,
    ) -> tuple[Listing, list[Work], list[Work], list[Work]]:
        """The instance's listing (``asked`` already, else asked first); while it is
        on its way the claimed requests are prepared and those at a step that
        needs no listing advanced.

        Returns the listing, the works, those advanced early, and those of them
        stopped before a step that needs the listing.
        """
        if not claimed:
            return (asked.result() if asked is not None
                    else self.listings.listing(instance, handle.provider)), [], [], []
        with DaemonPool(1, "talprov-list") as lister:
            if asked is None:
                asked = lister.submit(self.listings.listing, instance, handle.provider)
            works = self._prepare(runner, claimed, {})
            early = [w for w in works
                     if w.stage != Stage.DEPROVISIONING and not runner.waits_for_listing(w)]
            parked = self._run_works(runner, handle, early, listed=False) if early else []
            return asked.result(), works, early, parked

    def _left_running(self) -> set[str]:
        """An interruption unwinds the pass: no step starts or stores from now on
        (in threads it leaves, which are not waited for), for good. The requests
        still in a step keep their leases, no longer renewed, until this process
        ends (see talprov.reconcile.stop_gate); they are returned."""
        running = self._gate.stop()
        self._forget(running)
        for rid in sorted(running):
            log.info("request %s: left in its step, its lease kept", rid,
                     extra={"request_id": rid})
        return running

    def _due(self, group: Sequence[RequestSummary]) -> dict[str, int]:
        """The versions of the requests in ``group`` that have a step to run now."""
        now = self.now()
        return {s.id: s.version for s in group if s.stage != Stage.PROVISIONED
                and (s.next_attempt_at is None or s.next_attempt_at <= now)}

    def _still_due(self, due: Mapping[str, int]) -> list[RequestRecord]:
        # Only records still as summarised: one that moved on meanwhile (another
        # worker advanced or even provisioned it) was judged on stale facts; the
        # next pass reads it afresh.
        return [r for r in self.store.list_requests(ids=due) if due[r.id] == r.version]

    def _blocked(
        self, listing: Listing, group: Sequence[RequestSummary], report: PassReport
    ) -> None:
        """Record why the instance's listing fails on every request it blocks."""
        trouble = listing.trouble
        assert trouble is not None  # a failed listing carries its trouble
        headline = trouble.headline()
        if listing.changed:
            report.errors.append(headline)
        error = trouble.describe()
        for summary in group:
            if summary.stage == Stage.PROVISIONED:
                continue  # not blocked: its machine runs; drift is checked once listed
            # The event once per request and state; the error (with the next
            # attempt) at every attempt, so `machine get` says when it is tried next.
            newly = not (summary.error or "").startswith(headline)
            self._observations.note(summary, error=error, events=[headline] if newly else [])

    @staticmethod
    def _prepare(runner: RequestRunner, records: Sequence[RequestRecord],
                 observed: Mapping[str, Machine]) -> list[Work]:
        works = [runner.prepare(r, observed.get(r.request.id)) for r in records]
        return [w for w in works if w is not None]

    def _run_works(self, runner: RequestRunner, handle: ProviderHandle,
                   works: Sequence[Work], *, listed: bool = True) -> list[Work]:
        """Advance ``works``; without ``listed``, the ones stopped before a step that
        needs the listing are returned (see :meth:`RequestRunner.advance`)."""
        provisioning = [w for w in works if w.stage != Stage.DEPROVISIONING]
        deprovisioning = [w for w in works if w.stage == Stage.DEPROVISIONING]
        # Requests at a batchable step go to the provider together; the rest are
        # spread over the instance's concurrency.
        batches = self._batches(runner, provisioning)
        if len(batches) == 1 and not deprovisioning:
            # One batch (a set at one step, the usual first pass): no thread for it.
            return runner.advance(batches[0], listed=listed)
        parked: list[Work] = []
        with DaemonPool(handle.concurrency, "talprov-steps") as pool:
            futures = [pool.submit(runner.advance, batch, listed=listed) for batch in batches]
            deprovisions = [pool.submit(runner.deprovision, w) for w in deprovisioning]
            for future in futures:
                parked += future.result()
            for done in deprovisions:
                done.result()
        return parked

    def _changed(self, works: Sequence[Work]) -> None:
        if self.on_change is not None:
            for work in works:
                self.on_change(work.record)

    @staticmethod
    def _batches(runner: RequestRunner, works: Sequence[Work]) -> list[list[Work]]:
        batched: dict[int, list[Work]] = {}
        singles: list[list[Work]] = []
        for work in works:
            step = runner.step_of(work)
            if step is not None and step.run_batch is not None:
                batched.setdefault(work.step_index, []).append(work)
            else:
                singles.append([work])
        return [*batched.values(), *singles]

    def run_until(
        self,
        done: Callable[[], bool],
        *,
        timeout: float,
        interval: float = 1.0,
        only: Collection[str] | None = None,
        on_pass: Callable[[PassReport], None] | None = None,
    ) -> bool:
        """Run passes (over ``only``) until ``done()`` or ``timeout`` seconds passed;
        True when done.

        Reconcile passes only: :meth:`talprov.runloop.RunLoop.run_until` also runs
        request sets and cluster passes. Sleeps with the runtime's sleeper until
        the earliest due request (at most ``interval``), so tests with a fake
        clock run instantly.
        """

        def work() -> None:
            report = self.run_pass(only)
            if on_pass is not None:
                on_pass(report)

        return repeat_until(
            work, done, timeout=timeout,
            pause=lambda: self.seconds_until_due(interval, floor=0.05, only=only),
            clock=self.runtime.clock, sleep=self.runtime.sleep,
        )
