"""The service's reconcile loop: two replicas never run one request at once (the
reconciler renews leases while a step outlasts the TTL, see
tests/unit/reconcile/test_reconciler_leases.py), and the wait between rounds."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from talprov.providers.protocol import Runtime, Step, StepContext
from talprov.providers.types import (
    Machine,
    MachineRequest,
    MachineState,
    Owner,
    Stage,
    StepResult,
)
from talprov.reconcile.reconciler import ProviderHandle
from talprov.service.metrics import Metrics
from talprov.service.workers import ReconcileLoop
from talprov.store.store import Store
from talprov.testing import ProviderDouble

TTL = 1.2  # renewal every 0.4 s, which may come 0.8 s late (0.4 s at 0.6): a loaded CI machine


def make_store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    return store


class SlowProvider(ProviderDouble):
    """A step that takes longer than the lease TTL and notes who runs it when."""

    type_name: ClassVar[str] = "slow"

    def __init__(self) -> None:
        self.name = "slow"
        self.lock = threading.Lock()
        self.running: dict[str, int] = {}
        self.overlaps: list[str] = []
        self.runs: dict[str, int] = {}
        self.machines: dict[str, str] = {}

    def steps(self) -> Sequence[Step]:
        return (Step("slow", self._slow),)

    def _slow(self, ctx: StepContext[Any, Any]) -> StepResult:
        rid = ctx.request.id
        with self.lock:
            self.running[rid] = self.running.get(rid, 0) + 1
            self.runs[rid] = self.runs.get(rid, 0) + 1
            if self.running[rid] > 1:
                self.overlaps.append(rid)
        time.sleep(TTL * 2)
        with self.lock:
            self.running[rid] -= 1
        ctx.state.infra_id = f"slow-{rid}"
        with self.lock:
            self.machines[rid] = f"slow-{rid}"
        return None

    def list_machines(self, owner: Owner) -> list[Machine]:
        with self.lock:
            return [Machine(infra_id=infra, state=MachineState.RUNNING, request_id=rid)
                    for rid, infra in self.machines.items()]


def test_two_loops_never_run_one_request_at_once(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    provider = SlowProvider()
    handles = {"slow": ProviderHandle(provider, concurrency=4)}
    ids = [f"s-{n}" for n in range(4)]
    for rid in ids:
        store.create_request(MachineRequest(id=rid, provider="slow", talos_version="v1.13.9"))
    loops = [
        ReconcileLoop(store, handles, Runtime(cache_dir=tmp_path), worker_id=name,
                      metrics=Metrics(), interval=0.05, lease_ttl=TTL)
        for name in ("alpha", "beta")
    ]
    for loop in loops:
        loop.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            records = [store.get_request(rid) for rid in ids]
            if all(r is not None and r.stage == Stage.PROVISIONED for r in records):
                break
            time.sleep(0.05)
    finally:
        for loop in loops:
            loop.stop()
    records = [store.get_request(rid) for rid in ids]
    summary = {r.request.id: (r.stage.value, r.error) for r in records if r is not None}
    assert all(stage == "provisioned" for stage, _ in summary.values()), summary
    assert provider.overlaps == []
    assert all(store.lease_holder(rid) is None for rid in ids)
    store.close()


def make_loop(store: Store, tmp_path: Path, *, interval: float,
              handles: dict[str, ProviderHandle] | None = None) -> ReconcileLoop:
    return ReconcileLoop(store, handles or {}, Runtime(cache_dir=tmp_path), worker_id="solo",
                         metrics=Metrics(), interval=interval, lease_ttl=TTL)


def test_the_wait_between_rounds_follows_the_soonest_due_request(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    loop = make_loop(store, tmp_path, interval=5.0)
    assert loop.runloop.pause(loop.interval) == 5.0  # nothing to do: the whole interval
    record = store.create_request(
        MachineRequest(id="w-1", provider="slow", talos_version="v1.13.9"))
    store.save_progress(
        "w-1", expected_version=record.version, stage=Stage.PROVISIONING, step_index=0,
        step_name="slow", state={}, error=None, attempts=0,
        next_attempt_at=datetime.now(UTC) + timedelta(seconds=2), step_started_at=None,
        infra_id=None, machine_uuid=None, addresses=(), events=(),
    )
    assert 1.0 < loop.runloop.pause(loop.interval) <= 2.0
    # Due now, but its provider is not configured here: the floor keeps the loop
    # from spinning on it.
    store.create_request(MachineRequest(id="u-1", provider="elsewhere", talos_version="v1.13.9"))
    assert loop.runloop.pause(loop.interval) == 0.25
    store.close()
    # A directory where the file should be: the store opens, each query fails.
    loop.runloop.reconciler.store = Store(f"sqlite:///{tmp_path}")
    assert loop.runloop.pause(loop.interval) == 5.0  # an unreadable store: wait the interval
