"""A batch step's outcomes are one store transaction, with the per-request version check."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from talprov.providers.protocol import ProviderState, Runtime, Step, StepContext
from talprov.providers.types import Machine, Owner, Stage, StepResult
from talprov.reconcile.runner import RequestRunner
from talprov.store import StaleRecord, Store
from talprov.store.records import ProgressUpdate, RequestRecord
from talprov.testing import FakeClock, MemoryProgressStorage, ProviderDouble
from tests.unit.store.factories import make_request
from tests.unit.store.test_group_creates import Turns, wait_until
from tests.unit.store.test_light_queries import T0


def _update(record: RequestRecord, *, version: int | None = None, **changes: Any
            ) -> ProgressUpdate:
    fields: dict[str, Any] = {
        "request_id": record.request.id,
        "expected_version": record.version if version is None else version,
        "stage": Stage.PROVISIONING, "step_index": 1, "step_name": "two",
        "state": {"infra_id": f"vm-{record.request.id}"}, "error": None, "attempts": 0,
        "next_attempt_at": None, "step_started_at": None,
        "infra_id": f"vm-{record.request.id}", "machine_uuid": None, "addresses": ["10.0.0.1"],
        "events": [f"step one done for {record.request.id}"],
    }
    fields.update(changes)
    return ProgressUpdate(**fields)


def test_many_outcomes_are_one_commit_and_a_stale_one_writes_nothing(store: Store) -> None:
    records = [store.create_request(make_request(f"web-{i}"), now=T0) for i in range(4)]
    commits: list[int] = []
    sa.event.listen(store._engine, "commit", lambda _conn: commits.append(1))

    outcomes = store.save_progress_many(
        [_update(records[0]), _update(records[1], version=records[1].version + 5),
         _update(records[2]), _update(records[3])], now=T0)

    assert len(commits) == 1
    assert isinstance(outcomes[1], StaleRecord)
    assert "web-1" in str(outcomes[1])
    for index in (0, 2, 3):
        saved = outcomes[index]
        assert isinstance(saved, RequestRecord)
        assert saved.version == records[index].version + 1
        assert saved.infra_id == f"vm-web-{index}"
        assert saved == store.get_request(f"web-{index}")
        assert [e.message for e in store.events(f"web-{index}")][-1] == (
            f"step one done for web-{index}")
    untouched = store.get_request("web-1")
    assert untouched == records[1]
    assert all("step one done" not in e.message for e in store.events("web-1"))


def test_a_known_request_comes_back_as_is_and_every_event_line_is_kept(store: Store) -> None:
    records = [store.create_request(make_request(f"db-{i}"), now=T0) for i in range(3)]

    outcomes = store.save_progress_many(
        [_update(r, request=r.request, events=[f"a {r.request.id}", f"b {r.request.id}"])
         for r in records], now=T0)

    for record, saved in zip(records, outcomes, strict=True):
        assert isinstance(saved, RequestRecord)
        # The writer's request object, not one decrypted and validated again...
        assert saved.request is record.request
        # ...and the record equals what a fresh read gives.
        assert saved == store.get_request(record.request.id)
        rid = record.request.id
        assert [e.message for e in store.events(rid)][-2:] == [f"a {rid}", f"b {rid}"]


def test_save_progress_is_a_batch_of_one(store: Store) -> None:
    record = store.create_request(make_request("web-9"), now=T0)
    saved = store.save_progress(
        "web-9", expected_version=record.version, stage=Stage.PROVISIONING, step_index=1,
        step_name="two", state={}, error=None, attempts=0, next_attempt_at=None,
        step_started_at=None, infra_id="vm-9", machine_uuid=None, addresses=(), events=(),
        now=T0)
    (again,) = store.save_progress_many([_update(record)], now=T0)  # at the old version
    assert saved.infra_id == "vm-9"
    assert isinstance(again, StaleRecord)


class _Batched(ProviderDouble):
    """Two steps, each with a run_batch that finishes every request at once."""

    name = "batched"

    def steps(self) -> Sequence[Step]:
        return (Step("one", self._one, self._many), Step("two", self._one, self._many))

    @staticmethod
    def _one(ctx: StepContext[Any, Any]) -> StepResult:
        ctx.state.infra_id = f"vm-{ctx.request.id}"
        return None

    def _many(self, ctxs: Sequence[StepContext[Any, Any]]) -> list[StepResult]:
        return [self._one(ctx) for ctx in ctxs]

    def list_machines(self, owner: Owner) -> list[Machine]:
        return []


def test_the_runner_stores_a_batch_steps_results_in_one_write() -> None:
    storage = MemoryProgressStorage()
    clock = FakeClock()
    runtime = Runtime(clock=clock, sleep=clock.sleep)
    provider = _Batched()
    runner = RequestRunner(provider, Owner("talprov", "batched"), runtime, storage)
    records = [storage.add(make_request(f"web-{i}", provider="batched", provider_data={}))
               for i in range(20)]
    works = [runner.prepare(r, None) for r in records]

    runner.advance([w for w in works if w is not None])

    # One write per step for all twenty: step one's outcome, then the final one.
    assert storage.transactions == 2
    for record in records:
        stored = storage.get_request(record.request.id)
        assert stored is not None
        assert stored.stage == Stage.PROVISIONED
        assert stored.infra_id == f"vm-{record.request.id}"
        assert "step two done" in storage.events[record.request.id]
        assert ProviderState.model_validate(stored.state).infra_id == stored.infra_id


def test_threads_saving_at_once_share_a_turn_each_with_its_own_time_and_outcome(
        store: Store) -> None:
    records = [store.create_request(make_request(f"web-{i}"), now=T0) for i in range(5)]
    turns = Turns(store, queued=5, progress=True)
    commits: list[int] = []
    sa.event.listen(store._engine, "commit", lambda _conn: commits.append(1))
    outcomes: list[Any] = [None] * 6
    stale = records[2]  # its second writer read the same version as its first

    def save(index: int, update: ProgressUpdate) -> None:
        try:
            outcomes[index] = store.save_progress_many(
                [update], now=T0 + timedelta(seconds=index))[0]
        except Exception as exc:  # collected for the assertions
            outcomes[index] = exc

    calls = [*[_update(r) for r in records], _update(stale, step_name="late")]
    threads = [threading.Thread(target=save, args=(i, u)) for i, u in enumerate(calls)]
    threads[0].start()
    wait_until(lambda: store._progress_writes.waiting == 0 and turns.sizes == [1])
    for queued, thread in enumerate(threads[1:], start=1):
        thread.start()
        wait_until(lambda: store._progress_writes.waiting == queued)  # noqa: B023
    for thread in threads:
        thread.join(30)

    assert turns.sizes == [1, 5]
    assert len(commits) == 2
    assert all(isinstance(o, RequestRecord) for o in outcomes[:5])
    assert [o.updated_at for o in outcomes[:5]] == [T0 + timedelta(seconds=i) for i in range(5)]
    assert isinstance(outcomes[5], StaleRecord)
    stored = store.get_request(stale.request.id)
    assert stored is not None
    assert stored.step_name == "two"
    assert stored.version == stale.version + 1
    assert [e.at for e in store.events("web-3")][-1] == T0 + timedelta(seconds=3)
