"""The request reconciler: level-triggered passes over the store.

One pass reads the requests that need attention, observes each provider
instance's machines with ONE ``list_machines`` call (whatever the number of
requests), then advances every due request through its steps, at most
``concurrency`` at a time per provider instance. Provisioned requests whose
machine vanished are marked failed so that the scaler replaces them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from talprov.providers.errors import ProviderError
from talprov.providers.processes import dead_local_worker, local_worker_id
from talprov.providers.protocol import Provider, Runtime
from talprov.providers.runner import RequestRunner, StepPolicy, Work
from talprov.providers.types import Machine, MachineState, Owner, Stage
from talprov.secrets import redact
from talprov.store.errors import StaleRecord
from talprov.store.records import RequestRecord
from talprov.store.store import Store

log = logging.getLogger(__name__)

ACTIVE_STAGES = (Stage.PENDING, Stage.PROVISIONING, Stage.PROVISIONED, Stage.DEPROVISIONING)
#: A provisioned machine must be missing from this many consecutive listings before
#: it is declared gone: listings of some clouds lag behind creates and deletes.
MISSING_PASSES_BEFORE_LOST = 2


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
    errors: list[str] = field(default_factory=list)


class Reconciler:
    """Drives requests in the store towards their desired stage."""

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
    ) -> None:
        self.store = store
        self.providers = providers
        self.runtime = runtime
        self.worker_id = worker_id or local_worker_id()
        self.lease_ttl = lease_ttl
        self.policy = policy or StepPolicy()
        self.on_change = on_change
        self._runners: dict[str, RequestRunner] = {}
        self._missing: dict[str, int] = {}
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.runtime.clock(), UTC)

    def _runner(self, instance: str, handle: ProviderHandle) -> RequestRunner:
        runner = self._runners.get(instance)
        if runner is None:
            owner = Owner(self.runtime.installation, instance)
            runner = RequestRunner(handle.provider, owner, self.runtime, self.store, self.policy)
            self._runners[instance] = runner
        return runner

    def run_pass(self, only: Collection[str] | None = None) -> PassReport:
        """One level-triggered pass. Never raises for provider errors (they are reported)."""
        report = PassReport()
        records = self.store.list_requests(stages=ACTIVE_STAGES)
        if only is not None:
            wanted = set(only)
            records = [r for r in records if r.request.id in wanted]
        by_instance: dict[str, list[RequestRecord]] = {}
        for record in records:
            by_instance.setdefault(record.request.provider, []).append(record)
        for instance, group in sorted(by_instance.items()):
            handle = self.providers.get(instance)
            if handle is None:
                self._note_unconfigured(instance, group, report)
                continue
            self._pass_instance(instance, handle, group, report)
        return report

    def _note_unconfigured(
        self, instance: str, group: Sequence[RequestRecord], report: PassReport
    ) -> None:
        message = f"provider {instance!r} is not configured here"
        report.errors.append(message)
        for record in group:
            if record.error != message and record.stage != Stage.PROVISIONED:
                self._save_fields(record, error=message, events=[message])

    def _pass_instance(
        self, instance: str, handle: ProviderHandle, group: Sequence[RequestRecord],
        report: PassReport,
    ) -> None:
        runner = self._runner(instance, handle)
        owner = runner.owner
        try:
            machines = handle.provider.list_machines(owner)
        except ProviderError as exc:
            # Without a listing nothing can be decided safely for this instance.
            report.errors.append(f"{instance}: list_machines: {redact(str(exc))}")
            report.list_calls[instance] = 1
            return
        report.list_calls[instance] = 1
        observed: dict[str, Machine] = {}
        for machine in machines:
            if machine.request_id is not None:
                observed[machine.request_id] = machine
        now = self.now()
        due: list[RequestRecord] = []
        for record in group:
            if record.stage == Stage.PROVISIONED:
                self._check_drift(record, observed.get(record.request.id))
            elif record.next_attempt_at is None or record.next_attempt_at <= now:
                due.append(record)
        if not due:
            return
        claimed = self._claim(due)
        try:
            self._work(runner, handle, claimed, observed)
        finally:
            self.store.release_many([r.request.id for r in claimed], owner=self.worker_id)
        report.worked += len(claimed)

    def _claim(self, due: Sequence[RequestRecord]) -> list[RequestRecord]:
        """The due requests this worker now holds the lease of, as they were read.

        A request another replica advanced between our read and the claim (its
        version moved) is let go: the next pass reads it afresh.
        """
        held = self.store.claim_many([r.request.id for r in due], owner=self.worker_id,
                                     ttl=self.lease_ttl, now=self.now())
        for record in due:
            rid = record.request.id
            if rid in held:
                continue
            # A process on this host that was killed leaves its leases behind; do
            # not make a restarted worker wait out the TTL for them.
            holder = self.store.lease_holder(rid)
            if holder is not None and dead_local_worker(holder[0]):
                self.store.release(rid, owner=holder[0])
                if self.store.claim(rid, owner=self.worker_id, ttl=self.lease_ttl,
                                    now=self.now()):
                    fresh = self.store.get_request(rid)
                    if fresh is not None:
                        held[rid] = fresh.version
        claimed = [r for r in due if held.get(r.request.id) == r.version]
        stale = [r.request.id for r in due
                 if r.request.id in held and held[r.request.id] != r.version]
        self.store.release_many(stale, owner=self.worker_id)
        return claimed

    def _work(
        self, runner: RequestRunner, handle: ProviderHandle, records: Sequence[RequestRecord],
        observed: Mapping[str, Machine],
    ) -> None:
        provisioning: list[Work] = []
        deprovisioning: list[Work] = []
        for record in records:
            work = runner.prepare(record, observed.get(record.request.id))
            if work is None:
                continue
            if work.stage == Stage.DEPROVISIONING:
                deprovisioning.append(work)
            else:
                provisioning.append(work)
        # Requests at a batchable step go to the provider together; the rest are
        # spread over the instance's concurrency.
        batches = self._batches(runner, provisioning)
        with ThreadPoolExecutor(max_workers=handle.concurrency) as pool:
            futures = [pool.submit(runner.advance, batch) for batch in batches]
            futures += [pool.submit(runner.deprovision, w) for w in deprovisioning]
            for future in futures:
                future.result()
        if self.on_change is not None:
            for work in [*provisioning, *deprovisioning]:
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

    def _check_drift(self, record: RequestRecord, machine: Machine | None) -> None:
        rid = record.request.id
        if machine is None or machine.state in (MachineState.TERMINATED, MachineState.ERROR):
            with self._lock:
                self._missing[rid] = self._missing.get(rid, 0) + 1
                count = self._missing[rid]
            if count >= MISSING_PASSES_BEFORE_LOST:
                what = "disappeared" if machine is None else f"is {machine.state.value}"
                message = f"machine {record.infra_id or ''} {what} (changed outside talprov?)"
                self._save_fields(record, stage=Stage.FAILED, error=message, events=[message])
            return
        with self._lock:
            self._missing.pop(rid, None)
        addresses = tuple(machine.addresses)
        uuid = record.machine_uuid or machine.machine_uuid
        if addresses != tuple(record.addresses) or uuid != record.machine_uuid:
            self._save_fields(record, addresses=addresses or record.addresses, machine_uuid=uuid)

    def _save_fields(
        self, record: RequestRecord, *, stage: Stage | None = None, error: str | None = None,
        events: Sequence[str] = (), addresses: Sequence[str] | None = None,
        machine_uuid: str | None = None,
    ) -> None:
        try:
            self.store.save_progress(
                record.request.id, expected_version=record.version,
                stage=stage or record.stage, step_index=record.step_index,
                step_name=record.step_name, state=record.state,
                error=error if error is not None else record.error,
                attempts=record.attempts, next_attempt_at=record.next_attempt_at,
                step_started_at=record.step_started_at, infra_id=record.infra_id,
                machine_uuid=machine_uuid or record.machine_uuid,
                addresses=addresses if addresses is not None else record.addresses,
                events=list(events), now=self.now(),
            )
        except StaleRecord:
            log.debug("request %s changed during the pass", record.request.id)

    def run_until(
        self,
        done: Callable[[], bool],
        *,
        timeout: float,
        interval: float = 1.0,
        only: Collection[str] | None = None,
        on_pass: Callable[[PassReport], None] | None = None,
    ) -> bool:
        """Run passes until ``done()`` or ``timeout`` seconds passed; True when done.

        Sleeps with the runtime's sleeper until the earliest due request (at most
        ``interval``), so tests with a fake clock run instantly.
        """
        deadline = self.runtime.clock() + timeout
        while True:
            report = self.run_pass(only)
            if on_pass is not None:
                on_pass(report)
            if done():
                return True
            if self.runtime.clock() >= deadline:
                return False
            self.runtime.sleep(self._pause(interval, only))

    def _pause(self, interval: float, only: Collection[str] | None) -> float:
        now = self.now()
        soonest = interval
        for record in self.store.list_requests(
            stages=(Stage.PENDING, Stage.PROVISIONING, Stage.DEPROVISIONING)
        ):
            if only is not None and record.request.id not in only:
                continue
            if record.next_attempt_at is None:
                return 0.05
            soonest = min(soonest, max(0.05, (record.next_attempt_at - now).total_seconds()))
        return soonest
