"""The run loop: what a round does, how long it waits, and wake/stop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from talprov.providers.errors import Transient
from talprov.providers.protocol import Runtime, Step, StepContext
from talprov.providers.types import (
    Machine,
    MachineRequest,
    MachineState,
    Owner,
    Retry,
    Stage,
    StepResult,
)
from talprov.reconcile.reconciler import ProviderHandle
from talprov.runloop import RoundReport, RunLoop
from talprov.scaler.apply import Scaler
from talprov.scaler.spec import load_spec_file
from talprov.sets import RequestSet, SetRepository, set_fingerprint
from talprov.store.store import Store
from talprov.testing import FakeClock, ProviderDouble
from tests.unit.test_cluster_apply import write_spec

POLL = 7.0


class AnyData(BaseModel):
    """Takes the cluster spec's provider_data as it is."""

    model_config = ConfigDict(extra="allow")


class PollingProvider(ProviderDouble):
    """Machines that are ready on the second look, ``POLL`` seconds after the first."""

    type_name: ClassVar[str] = "polling"
    data_model: ClassVar[type[BaseModel]] = AnyData

    def __init__(self, *, listing_fails: bool = False) -> None:
        self.name = "fake"
        self.listing_fails = listing_fails
        self.looks: dict[str, int] = {}
        self.machines: dict[str, Machine] = {}
        self.listings = 0

    def steps(self) -> Sequence[Step]:
        return (Step("boot", self._boot),)

    def _boot(self, ctx: StepContext[Any, Any]) -> StepResult:
        rid = ctx.request.id
        self.looks[rid] = self.looks.get(rid, 0) + 1
        if self.looks[rid] < 2:
            return Retry(POLL, "booting")
        ctx.state.infra_id = f"vm-{rid}"
        self.machines[rid] = Machine(infra_id=f"vm-{rid}", state=MachineState.RUNNING,
                                     request_id=rid, labels=dict(ctx.request.labels))
        return None

    def list_machines(self, owner: Owner) -> list[Machine]:
        self.listings += 1
        if self.listing_fails:
            raise Transient("the API is down")
        return list(self.machines.values())


def world(tmp_path: Path, provider: PollingProvider) -> tuple[RunLoop, Store, FakeClock]:
    clock = FakeClock()
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache", clock=clock,
                      sleep=clock.sleep)
    store = Store("sqlite://")
    store.migrate()
    return RunLoop(store, {"fake": ProviderHandle(provider)}, runtime), store, clock


def seed(store: Store, tmp_path: Path) -> None:
    """A request set of two, a cluster of one control plane and one worker, one request."""
    template = MachineRequest(id="unused", provider="fake", talos_version="v1.11.5",
                              labels={"role": "worker"})
    now = datetime(2026, 3, 1, tzinfo=UTC)
    SetRepository(store).put(RequestSet("pool", template, 2, False,
                                        set_fingerprint(template, 2), now, now))
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache")
    Scaler(store, {}, runtime).record(load_spec_file(write_spec(tmp_path, workers=1,
                                                                control_planes=1)))
    store.create_request(MachineRequest(id="solo", provider="fake", talos_version="v1.11.5"))


def test_a_round_runs_request_sets_then_clusters_then_requests(tmp_path: Path) -> None:
    loop, store, _clock = world(tmp_path, PollingProvider())
    seed(store, tmp_path)
    report = loop.run_round()
    assert report.errors == []
    ids = {r.request.id for r in store.list_requests()}
    assert {"pool-0", "pool-1", "solo"} < ids
    assert len(ids) == 5  # and the cluster's two machines
    # The reconcile pass of the same round already worked on all of them.
    assert report.reconcile is not None
    assert report.reconcile.worked == 5
    assert {r.stage for r in store.list_requests()} == {Stage.PROVISIONING}


def test_a_round_reports_provider_and_store_errors_instead_of_raising(tmp_path: Path) -> None:
    loop, store, _clock = world(tmp_path, PollingProvider(listing_fails=True))
    seed(store, tmp_path)
    report = loop.run_round()
    assert report.failed
    assert report.errors == ["reconcile: provider 'fake' not answering: the API is down"]

    # A directory where the file should be: the store opens, each query fails.
    unreadable = Store(f"sqlite:///{tmp_path}")
    loop.store = loop.reconciler.store = unreadable
    report = loop.run_round()
    assert [e.split(":")[0] for e in report.errors] == [
        "request sets", "clusters", "reconcile pass failed"]
    assert loop.pause(30.0) == 30.0  # an unreadable store: wait the whole interval


def test_a_round_lists_each_instance_once_for_the_scaler_and_the_reconciler(
    tmp_path: Path,
) -> None:
    provider = PollingProvider()
    loop, store, clock = world(tmp_path, provider)
    seed(store, tmp_path)  # a cluster whose orphan check lists "fake" too
    for _ in range(3):
        before = provider.listings
        report = loop.run_round()
        assert report.errors == []
        assert report.reconcile is not None
        assert report.reconcile.list_calls == {"fake": 1}
        assert provider.listings - before == 1
        clock.sleep(POLL)
    assert len(store.list_requests(stages=[Stage.PROVISIONED])) == 5
    # Outside a round (a reconcile pass of its own) every pass lists afresh.
    before = provider.listings
    loop.reconciler.run_pass()
    loop.reconciler.run_pass()
    assert provider.listings - before == 2


def test_a_failing_listing_is_warned_about_once_per_change_by_scaler_and_reconciler(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    provider = PollingProvider(listing_fails=True)
    loop, store, clock = world(tmp_path, provider)
    seed(store, tmp_path)
    reported: list[str] = []
    with caplog.at_level(logging.WARNING, logger="talprov.scaler.apply"):
        for _ in range(4):
            reported += loop.run_round().errors
            clock.sleep(120.0)  # past the backoff: every round asks again
        assert provider.listings == 4  # once a round, not once per reader
        provider.listing_fails = False
        loop.run_round()  # answers again: the trouble ends
        provider.listing_fails = True
        clock.sleep(120.0)
        reported += loop.run_round().errors
    warned = [r for r in caplog.records if "cannot list machines for orphans" in r.message]
    assert len(warned) == 2  # the first failure, and the first after the recovery
    assert reported == ["reconcile: provider 'fake' not answering: the API is down"] * 2


def test_run_until_waits_until_the_earliest_due_request_not_a_fixed_interval(
    tmp_path: Path,
) -> None:
    provider = PollingProvider()
    loop, store, clock = world(tmp_path, provider)
    seed(store, tmp_path)
    rounds: list[RoundReport] = []

    def provisioned() -> bool:
        return all(r.stage == Stage.PROVISIONED for r in store.list_requests())

    assert loop.run_until(provisioned, timeout=600, interval=30.0, on_round=rounds.append)
    # One round starts everything, one more POLL seconds later finishes it.
    assert len(rounds) == 2
    assert clock.sleeps == [POLL]
    assert len(store.list_requests(stages=[Stage.PROVISIONED])) == 5

    # Nothing due: the whole interval between rounds, until the timeout, and no
    # sleep past it (before: a fourth 30 s sleep and a round after the deadline).
    started = clock.now
    assert not loop.run_until(lambda: False, timeout=100, interval=30.0)
    assert clock.sleeps[1:] == [30.0, 30.0, 30.0, 10.0]
    assert clock.now - started == 100.0


def test_run_forever_waits_for_wake_and_returns_on_stop(tmp_path: Path) -> None:
    store = Store("sqlite://")
    store.migrate()
    loop = RunLoop(store, {}, Runtime(installation="test", cache_dir=tmp_path))
    rounds: list[float] = []
    ran = threading.Event()

    def note(_report: RoundReport) -> None:
        rounds.append(time.monotonic())
        ran.set()

    thread = threading.Thread(target=loop.run_forever,
                              kwargs={"interval": 600.0, "on_round": note})
    thread.start()
    try:
        assert ran.wait(10)
        ran.clear()
        loop.wake()  # without it the next round would be ten minutes away
        assert ran.wait(10)
        assert len(rounds) == 2
        loop.stop()
        thread.join(10)
        assert not thread.is_alive()
        assert loop.stopping
    finally:
        loop.stop()
        thread.join(10)
        loop.close()
        store.close()


def test_run_until_checks_done_against_the_rounds_own_listing(tmp_path: Path) -> None:
    # `apply --wait` asks the scaler after each round whether the cluster has
    # converged; that check listed every instance again (twice: preview, then
    # converged), three listings a round where one does.
    provider = PollingProvider()
    loop, store, _clock = world(tmp_path, provider)
    seed(store, tmp_path)
    rounds = 0

    def done() -> bool:
        nonlocal rounds
        rounds += 1
        state = loop.scaler.state("demo")
        assert state is not None
        return not loop.scaler.preview(state).actions and rounds >= 3

    assert loop.run_until(done, timeout=600, interval=POLL)
    assert provider.listings == rounds
