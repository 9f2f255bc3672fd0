"""A request's working copy while a pass advances it, and how it is saved.

The runner (:mod:`talprov.reconcile.runner`) changes a :class:`Work` as steps
return; :func:`save_all` writes a batch step's copies in one store transaction
and logs what each learned: its events, and one line per stage change on the
``talprov.stages`` logger.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from talprov.providers.protocol import Provider, ProviderState, Runtime, StepContext
from talprov.providers.types import Machine, Owner, Stage
from talprov.reconcile.storage import ProgressStorage
from talprov.secrets import redact
from talprov.store.errors import StaleRecord
from talprov.store.records import ProgressUpdate, RequestRecord

log = logging.getLogger("talprov.reconcile.runner")  # the name operators filter on
#: One INFO line per stage change of a request: what ``talprov serve`` shows
#: without -v (its other INFO lines, one per event, need -v).
STAGE_LOGGER = "talprov.stages"
stage_log = logging.getLogger(STAGE_LOGGER)


def _to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass
class Work:
    """A working copy of one request while this pass advances it."""

    record: RequestRecord
    provider: Provider
    owner: Owner
    runtime: Runtime
    observed: Machine | None
    data: BaseModel | None = None
    #: ``observed`` is the pass's listing's answer (``StepContext.listed``).
    listed: bool = False
    state: ProviderState | None = None
    stage: Stage = Stage.PENDING
    step_index: int = 0
    attempts: int = 0
    error: str | None = None
    next_attempt_at: datetime | None = None
    step_started_at: datetime | None = None
    events: list[str] = field(default_factory=list)
    stopped: bool = False
    #: The step whose outcome the unsaved events are about (for their log lines).
    step_run: str | None = None
    #: A step's outcome is in this copy but not stored yet (``Step.found_again``).
    unsaved: bool = False
    #: The stored version was read again after the last write (see
    #: ``RequestRunner``): a step that needs the listing checks it once per write.
    version_checked: bool = False

    @classmethod
    def start(
        cls, record: RequestRecord, provider: Provider, owner: Owner, runtime: Runtime,
        observed: Machine | None,
    ) -> Work:
        return cls(
            record=record, provider=provider, owner=owner, runtime=runtime, observed=observed,
            stage=record.stage, step_index=record.step_index, attempts=record.attempts,
            error=record.error, step_started_at=record.step_started_at,
        )

    def now(self) -> datetime:
        return _to_datetime(self.runtime.clock())

    def context(self) -> StepContext[Any, Any]:
        assert self.state is not None
        if self.step_started_at is None:
            self.step_started_at = self.now()
        return StepContext(
            request=self.record.request, data=self.data, state=self.state, owner=self.owner,
            runtime=self.runtime, observed=self.observed, listed=self.listed,
            step_started_at=self.step_started_at.timestamp(),
        )

    def update(self, step_name: str | None) -> ProgressUpdate:
        """The progress write of this working copy, at the version it was read at."""
        assert self.state is not None
        state = self.state
        return ProgressUpdate(
            request_id=self.record.request.id,
            expected_version=self.record.version,
            stage=self.stage,
            step_index=self.step_index,
            step_name=step_name,
            state=state.model_dump(mode="json"),
            error=self.error,
            attempts=self.attempts,
            next_attempt_at=self.next_attempt_at,
            step_started_at=self.step_started_at,
            infra_id=state.infra_id,
            machine_uuid=state.machine_uuid,
            addresses=state.addresses,
            events=[redact(e) for e in self.events],
            request=self.record.request,
        )

    def save(self, store: ProgressStorage, step_name: str | None) -> bool:
        """Persist the working copy; False when someone else changed the record."""
        return save_all(store, [(self, step_name)])[0]

    def saved(self, store: ProgressStorage, outcome: RequestRecord | StaleRecord) -> bool:
        """Take in what the store answered to :meth:`update`; False when it was stale."""
        if isinstance(outcome, StaleRecord):
            return self._merge_after_stale(store)
        before = self.record.stage
        self.record = outcome
        # The events are what an operator follows a request by: log them as well.
        about = {"request_id": self.record.request.id, "provider": self.owner.instance}
        if self.step_run is not None:
            about["step"] = self.step_run
        for event in self.events:
            log.info("%s: %s", self.record.request.id, redact(event), extra=about)
        if before != self.stage:
            age = (self.record.updated_at - self.record.created_at).total_seconds()
            # A failure at WARNING, with its error: an operator alerts on it.
            failed = self.stage == Stage.FAILED
            stage_log.log(
                logging.WARNING if failed else logging.INFO,
                "request %s (%s): %s -> %s, step %s, %.1fs since recorded%s",
                self.record.request.id, self.owner.instance, before.value, self.stage.value,
                outcome.step_name or "-", age,
                f": {redact(outcome.error or '')}" if failed else "",
                extra={**about, "step": outcome.step_name},
            )
        self.events = []
        return True

    def _merge_after_stale(self, store: ProgressStorage) -> bool:
        # A delete raced with this step. What the step learned (above all the id
        # of a machine it just created) must reach the record, or deprovision
        # would not know what to remove.
        self.stopped = True
        fresh = store.get_request(self.record.request.id)
        if fresh is None or fresh.stage != Stage.DEPROVISIONING or self.state is None:
            return False
        merged = {**fresh.state, **self.state.model_dump(mode="json", exclude_defaults=True)}
        try:
            store.save_progress(
                fresh.request.id, expected_version=fresh.version, stage=fresh.stage,
                step_index=fresh.step_index, step_name=fresh.step_name, state=merged,
                error=fresh.error, attempts=fresh.attempts, next_attempt_at=fresh.next_attempt_at,
                step_started_at=fresh.step_started_at,
                infra_id=self.state.infra_id or fresh.infra_id,
                machine_uuid=self.state.machine_uuid or fresh.machine_uuid,
                addresses=self.state.addresses or fresh.addresses,
                events=["provisioning stopped by a delete; machine ids kept for deprovision"],
                now=self.now(),
            )
        except StaleRecord:
            log.info("request %s changed again while merging state", fresh.request.id)
        return False


def save_all(store: ProgressStorage, writes: Sequence[tuple[Work, str | None]]) -> list[bool]:
    """Persist several working copies in one store transaction (a batch step's results).

    One entry per write, in order: False for a request someone else changed.
    """
    if not writes:
        return []
    first = writes[0][0]
    for work, _ in writes:
        work.unsaved = work.version_checked = False
    outcomes = store.save_progress_many([w.update(name) for w, name in writes], now=first.now())
    return [work.saved(store, outcome) for (work, _), outcome in zip(writes, outcomes,
                                                                      strict=True)]
