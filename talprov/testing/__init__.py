"""Helpers for people testing with talprov (its own suite uses them too)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from talprov.providers.protocol import ProviderState, StepContext
from talprov.providers.types import Health, MachineRequest, Stage, StepResult
from talprov.store.errors import StaleRecord
from talprov.store.records import ProgressUpdate, RequestRecord, save_one


class FakeClock:
    """A clock that moves only when someone sleeps on it.

    Pass it as ``Runtime(clock=clock, sleep=clock.sleep)`` and every backoff,
    retry and timeout runs instantly while keeping its order of events.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        """The current fake time (same as calling the clock)."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` (negative waits count as none)."""
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


class NoSettings(BaseModel):
    """An empty config or provider_data model that refuses every field."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ProviderDouble:
    """A base for in-memory provider doubles in tests.

    It brings what most doubles share: no config and no provider_data fields, the
    plain ``ProviderState``, a deprovision with nothing to remove (gone at once)
    and good health. A subclass adds ``name``, ``steps()`` and ``list_machines()``
    (the behaviour under test), and overrides the rest where it matters.
    """

    type_name: ClassVar[str] = "double"
    config_model: ClassVar[type[BaseModel]] = NoSettings
    data_model: ClassVar[type[BaseModel]] = NoSettings
    state_model: ClassVar[type[ProviderState]] = ProviderState

    def deprovision(self, ctx: StepContext[Any, Any]) -> StepResult:
        """Nothing to remove: already gone. Never raises; idempotent."""
        return None

    def health(self) -> Health:
        """Always healthy. Never raises."""
        return Health(ok=True)


class MemoryProgressStorage:
    """A :class:`talprov.reconcile.storage.ProgressStorage` kept in a dict.

    For driving a provider's steps with :class:`talprov.reconcile.runner.RequestRunner`
    in a test without a database. It keeps the store's rules that matter to the
    runner: a write at a stale version raises ``StaleRecord`` and writes nothing,
    and every write bumps the version. ``events`` keeps every event line written.
    Thread-safe.
    """

    def __init__(self) -> None:
        self.records: dict[str, RequestRecord] = {}
        self.events: dict[str, list[str]] = {}
        #: Write calls so far, single or many (a database makes each one transaction).
        self.transactions = 0
        #: ``request_versions`` calls so far.
        self.version_reads = 0
        self._lock = threading.Lock()

    def add(self, request: MachineRequest, *, now: datetime | None = None) -> RequestRecord:
        """Record a new pending request (or return the one stored under its id)."""
        moment = now or datetime.now(UTC)
        with self._lock:
            found = self.records.get(request.id)
            if found is None:
                found = RequestRecord(
                    request=request, fingerprint=request.fingerprint(), stage=Stage.PENDING,
                    step_index=0, step_name=None, state={}, error=None, attempts=0,
                    next_attempt_at=None, step_started_at=None, infra_id=None,
                    machine_uuid=None, addresses=(), marked_for_deletion=False,
                    created_at=moment, updated_at=moment, version=1,
                )
                self.records[request.id] = found
                self.events[request.id] = []
            return found

    def get_request(self, request_id: str) -> RequestRecord | None:
        """The request as last written, or None. Never raises."""
        with self._lock:
            return self.records.get(request_id)

    def request_versions(self, request_ids: Collection[str]) -> dict[str, int]:
        """The version of each of ``request_ids`` still kept. Never raises."""
        with self._lock:
            self.version_reads += 1
            return {rid: self.records[rid].version for rid in request_ids
                    if rid in self.records}

    def save_progress(
        self, request_id: str, *, expected_version: int, stage: Stage, step_index: int,
        step_name: str | None, state: dict[str, Any], error: str | None, attempts: int,
        next_attempt_at: datetime | None, step_started_at: datetime | None,
        infra_id: str | None, machine_uuid: str | None, addresses: Sequence[str],
        events: Sequence[str], now: datetime | None = None,
    ) -> RequestRecord:
        """Write one step's outcome; raises ``StaleRecord`` at a stale version."""
        return save_one(self.save_progress_many, ProgressUpdate(
            request_id, expected_version, stage, step_index, step_name, state, error, attempts,
            next_attempt_at, step_started_at, infra_id, machine_uuid, addresses, events,
        ), now)

    def save_progress_many(
        self, updates: Sequence[ProgressUpdate], *, now: datetime | None = None
    ) -> list[RequestRecord | StaleRecord]:
        """Write many outcomes under one lock; a stale one comes back as ``StaleRecord``."""
        outcomes: list[RequestRecord | StaleRecord] = []
        with self._lock:
            self.transactions += 1
            for update in updates:
                current = self.records.get(update.request_id)
                if current is None or current.version != update.expected_version:
                    outcomes.append(StaleRecord(f"request {update.request_id} changed or was "
                                                "removed"))
                    continue
                saved = dataclasses.replace(
                    current, stage=Stage(update.stage), step_index=update.step_index,
                    step_name=update.step_name, state=dict(update.state), error=update.error,
                    attempts=update.attempts, next_attempt_at=update.next_attempt_at,
                    step_started_at=update.step_started_at, infra_id=update.infra_id,
                    machine_uuid=update.machine_uuid, addresses=tuple(update.addresses),
                    updated_at=now or datetime.now(UTC), version=update.expected_version + 1,
                )
                self.records[update.request_id] = saved
                self.events[update.request_id].extend(update.events)
                outcomes.append(saved)
        return outcomes
