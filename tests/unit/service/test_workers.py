"""Leases: renewed while a step runs longer than the TTL, taken over when not renewed."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from talprov.providers.protocol import ProviderState, Runtime, Step, StepContext
from talprov.providers.types import (
    Health,
    Machine,
    MachineRequest,
    MachineState,
    Owner,
    Stage,
    StepResult,
)
from talprov.reconciler import ProviderHandle
from talprov.service.metrics import Metrics
from talprov.service.sets import SetRepository
from talprov.service.workers import LeaseKeeper, ReconcileLoop
from talprov.store.store import Store

TTL = 0.6


def make_store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    return store


def test_renewal_keeps_a_lease_past_its_ttl_and_stopping_lets_others_take_it(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path)
    store.create_request(MachineRequest(id="r-1", provider="p", talos_version="v1.11.5"))
    keeper = LeaseKeeper(store, ttl=TTL)
    assert keeper.claim("r-1", owner="alpha", ttl=TTL)
    keeper.start()
    try:
        time.sleep(TTL * 2.5)
        assert not store.claim("r-1", owner="beta", ttl=TTL)
        holder = store.lease_holder("r-1")
        assert holder is not None
        assert holder[0] == "alpha"
    finally:
        keeper.stop()
    # Like a killed replica: nobody renews, so the lease runs out and beta wins.
    time.sleep(TTL * 1.3)
    assert store.claim("r-1", owner="beta", ttl=TTL)
    assert keeper.renew_all() == 0
    assert keeper.lost == ["r-1"]
    keeper.release("r-1", owner="alpha")  # not alpha's any more: no effect
    holder = store.lease_holder("r-1")
    assert holder is not None
    assert holder[0] == "beta"
    store.close()


class SlowData(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlowProvider:
    """A step that takes longer than the lease TTL and notes who runs it when."""

    type_name: ClassVar[str] = "slow"
    config_model: ClassVar[type[BaseModel]] = SlowData
    data_model: ClassVar[type[BaseModel]] = SlowData
    state_model: ClassVar[type[ProviderState]] = ProviderState

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

    def deprovision(self, ctx: StepContext[Any, Any]) -> StepResult:
        return None

    def list_machines(self, owner: Owner) -> list[Machine]:
        with self.lock:
            return [Machine(infra_id=infra, state=MachineState.RUNNING, request_id=rid)
                    for rid, infra in self.machines.items()]

    def health(self) -> Health:
        return Health(ok=True)


def test_two_loops_never_run_one_request_at_once(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    provider = SlowProvider()
    handles = {"slow": ProviderHandle(provider, concurrency=4)}
    ids = [f"s-{n}" for n in range(4)]
    for rid in ids:
        store.create_request(MachineRequest(id=rid, provider="slow", talos_version="v1.11.5"))
    loops = [
        ReconcileLoop(store, handles, Runtime(cache_dir=tmp_path), worker_id=name,
                      sets=SetRepository(store), metrics=Metrics(),
                      interval=0.05, lease_ttl=TTL)
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
