"""A step that promises not to need the listing (``Step.needs_listing=False``) runs
while the pass's ``list_machines`` call is on its way; the others wait for it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, SecretStr

from talprov.providers.errors import Transient
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
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.helpers import WORKER_CONFIG

#: How long the listing waits for the early step before it concludes there was no overlap.
PATIENCE = 10.0


class NoSettings(BaseModel):
    pass


class TwoSteps:
    """``prepare`` (the flag under test) then ``create``, which needs the listing."""

    type_name: ClassVar[str] = "two-steps"
    config_model: ClassVar[type[BaseModel]] = NoSettings
    data_model: ClassVar[type[BaseModel]] = NoSettings
    state_model: ClassVar[type[ProviderState]] = ProviderState

    def __init__(self, *, early: bool, listing_fails: bool = False) -> None:
        self.name = "two"
        self.early = early
        self.listing_fails = listing_fails
        self.prepared = threading.Event()
        self.listed = threading.Event()
        #: Whether ``prepare`` had run when the listing was asked, per listing.
        self.prepared_while_listing: list[bool] = []
        #: (request, whether the listing was in, observed machine) per ``create`` run.
        self.creates: list[tuple[str, bool, Machine | None]] = []
        self.machines: list[Machine] = []

    def steps(self) -> Sequence[Step]:
        return (Step("prepare", self._prepare, needs_listing=not self.early),
                Step("create", self._create))

    def _prepare(self, ctx: StepContext[Any, Any]) -> StepResult:
        assert ctx.observed is None or not self.early
        self.prepared.set()
        return None

    def _create(self, ctx: StepContext[Any, Any]) -> StepResult:
        self.creates.append((ctx.request.id, self.listed.is_set(), ctx.observed))
        if ctx.observed is None:
            self.machines.append(Machine(f"m-{ctx.request.id}", MachineState.RUNNING,
                                         request_id=ctx.request.id))
        ctx.state.infra_id = f"m-{ctx.request.id}"
        return None

    def deprovision(self, ctx: StepContext[Any, Any]) -> StepResult:
        return None

    def list_machines(self, owner: Owner) -> list[Machine]:
        # Waits for `prepare` when it may overlap, so that the test sees the overlap
        # whatever the threads' timing; without overlap it would wait in vain.
        overlapped = self.prepared.wait(PATIENCE if self.early else 0)
        self.prepared_while_listing.append(overlapped)
        if self.listing_fails:
            raise Transient("the cloud is away")
        self.listed.set()
        return list(self.machines)

    def health(self) -> Health:
        return Health(ok=True)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'state.db'}")
    s.migrate()
    return s


def reconcile(store: Store, provider: TwoSteps, tmp_path: Path) -> Reconciler:
    clock = FakeClock()
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache", clock=clock,
                      sleep=clock.sleep)
    store.create_request(MachineRequest(id="r-1", provider="two", talos_version="v1.13.9",
                                        machine_config=SecretStr(WORKER_CONFIG)))
    return Reconciler(store, {"two": ProviderHandle(provider, 4)}, runtime)


def test_a_step_that_needs_no_listing_runs_while_it_is_asked(store: Store,
                                                             tmp_path: Path) -> None:
    provider = TwoSteps(early=True)
    report = reconcile(store, provider, tmp_path).run_pass()
    assert provider.prepared_while_listing == [True]
    assert report.list_calls == {"two": 1}
    # The step that needs the listing ran after it, in the same pass.
    assert provider.creates == [("r-1", True, None)]
    record = store.get_request("r-1")
    assert record is not None
    assert record.stage == Stage.PROVISIONED


def test_steps_wait_for_the_listing_by_default(store: Store, tmp_path: Path) -> None:
    provider = TwoSteps(early=False)
    reconcile(store, provider, tmp_path).run_pass()
    assert provider.prepared_while_listing == [False]
    assert provider.creates == [("r-1", True, None)]


def test_a_failed_listing_still_blocks_the_steps_that_need_it(store: Store,
                                                              tmp_path: Path) -> None:
    provider = TwoSteps(early=True, listing_fails=True)
    report = reconcile(store, provider, tmp_path).run_pass()
    assert provider.prepared_while_listing == [True]
    assert provider.creates == []
    record = store.get_request("r-1")
    assert record is not None
    assert record.step_name == "create"
    assert record.stage == Stage.PROVISIONING
    # The blocking error is recorded although `prepare` moved the record on meanwhile.
    assert "the cloud is away" in (record.error or "")
    assert report.errors
    assert report.unhealthy
