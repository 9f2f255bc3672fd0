"""A request another worker moves on during a pass is left to the next pass."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr

from talprov.providers.protocol import Runtime, Step, StepContext
from talprov.providers.types import (
    Machine,
    MachineRequest,
    MachineState,
    Owner,
    Stage,
    StepResult,
)
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from talprov.testing import FakeClock, ProviderDouble
from tests.helpers import WORKER_CONFIG

#: Seconds the claim waits for the listing to be asked before it concludes it was not.
PATIENCE = 5.0


class OneStep(ProviderDouble):
    """One step that records its runs."""

    type_name: ClassVar[str] = "one-step"

    def __init__(self) -> None:
        self.name = "one-step"
        self.ran: list[str] = []

    def steps(self) -> Sequence[Step]:
        return (Step("make", self._make),)

    def _make(self, ctx: StepContext[Any, Any]) -> StepResult:
        self.ran.append(ctx.request.id)
        ctx.state.infra_id = f"m-{ctx.request.id}"
        return None

    def list_machines(self, owner: Owner) -> list[Machine]:
        return [Machine(infra_id=f"m-{rid}", state=MachineState.RUNNING, request_id=rid)
                for rid in self.ran]


def _store_and_runtime(tmp_path: Path) -> tuple[Store, Runtime]:
    """A migrated SQLite store and a runtime on a fake clock."""
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    clock = FakeClock()
    return store, Runtime(installation="t", cache_dir=tmp_path, clock=clock, sleep=clock.sleep)


def _store_with_r1(tmp_path: Path) -> tuple[Store, Runtime]:
    """``_store_and_runtime`` holding one request, r-1, of ``AdoptOrCreate``."""
    store, runtime = _store_and_runtime(tmp_path)
    store.create_request(MachineRequest(id="r-1", provider="adopt-or-create",
                                        talos_version="v1.13.9",
                                        machine_config=SecretStr(WORKER_CONFIG)))
    return store, runtime


def test_a_request_provisioned_by_another_worker_mid_pass_is_not_worked_again(
        tmp_path: Path) -> None:
    store, runtime = _store_and_runtime(tmp_path)
    ours, theirs = OneStep(), OneStep()
    mine = Reconciler(store, {"one-step": ProviderHandle(ours)}, runtime, worker_id="mine")
    other = Reconciler(store, {"one-step": ProviderHandle(theirs)}, runtime,
                       worker_id="other")
    store.create_request(MachineRequest(id="r-1", provider="one-step",
                                        talos_version="v1.13.9",
                                        machine_config=SecretStr(WORKER_CONFIG)))
    read_summaries = store.summaries

    def summaries_then_provision_elsewhere(*args: Any, **kwargs: Any) -> Any:
        store.summaries = read_summaries  # type: ignore[method-assign]
        summaries = read_summaries(*args, **kwargs)
        other.run_pass()
        return summaries

    # After this pass has read its summaries, the other worker provisions r-1.
    store.summaries = summaries_then_provision_elsewhere  # type: ignore[method-assign]

    report = mine.run_pass()

    record = store.get_request("r-1")
    assert record is not None
    assert record.stage == Stage.PROVISIONED
    assert theirs.ran == ["r-1"]
    assert ours.ran == []
    assert report.worked == 0
    provisioned = [e for e in store.events("r-1") if e.message.startswith("provisioned")]
    assert len(provisioned) == 1
    mine.close()
    other.close()


class AdoptOrCreate(ProviderDouble):
    """A step that adopts the listed machine, else creates one (as cloud drivers do).

    ``late`` machines appear in the cloud right after the first listing was
    taken, as a launch of a worker that died just then would.
    """

    type_name: ClassVar[str] = "adopt-or-create"

    def __init__(self, late: list[Machine], *, early_step: bool = False) -> None:
        self.name = "adopt-or-create"
        self.cloud: list[Machine] = []
        self.late = late
        self.early_step = early_step

    def steps(self) -> Sequence[Step]:
        ensure = Step("ensure", self._ensure)
        if not self.early_step:
            return (ensure,)
        # A first step that runs while the pass's listing is on its way (AWS's resolve-image).
        return (Step("prepare", lambda _ctx: None, needs_listing=False), ensure)

    def _ensure(self, ctx: StepContext[Any, Any]) -> StepResult:
        if ctx.observed is not None:
            ctx.state.infra_id = ctx.observed.infra_id
            return None
        made = Machine(infra_id=f"ours-{ctx.request.id}", state=MachineState.RUNNING,
                       request_id=ctx.request.id)
        self.cloud.append(made)
        ctx.state.infra_id = made.infra_id
        return None

    def list_machines(self, owner: Owner) -> list[Machine]:
        listed = list(self.cloud)
        self.cloud += self.late
        self.late = []
        return listed


@pytest.mark.parametrize("early_step", [False, True], ids=["listing-first", "overlapped"])
@pytest.mark.parametrize("holder", ["dead-local-worker", "lease-of-another-host-ran-out"])
def test_a_request_taken_over_is_looked_up_again(
        tmp_path: Path, early_step: bool, holder: str) -> None:
    # The round's listing, shared by its readers (the scaler's orphan check read it
    # first), was taken before the other worker's launch showed. Review: at first
    # only a dead worker of this host dropped it; a lease of another host that ran
    # out (that worker died, or stalled past its TTL) reused it, and a step that
    # finds its machine by listing (OpenStack's unstored ensure-server) made a
    # second machine.
    store, runtime = _store_with_r1(tmp_path)
    theirs = Machine(infra_id="theirs-r-1", state=MachineState.RUNNING, request_id="r-1")
    provider = AdoptOrCreate(late=[theirs], early_step=early_step)
    mine = Reconciler(store, {"adopt-or-create": ProviderHandle(provider)}, runtime,
                      worker_id="mine")
    if holder == "dead-local-worker":
        assert store.claim("r-1", owner=f"{socket.gethostname()}:{_gone_pid()}", ttl=300,
                           now=mine.now())
    else:
        assert store.claim("r-1", owner="other-host:4242", ttl=300,
                           now=mine.now() - timedelta(seconds=600))

    with mine.listings.round():
        mine.listings.listing("adopt-or-create", provider)
        mine.run_pass()

    record = store.get_request("r-1")
    assert record is not None
    assert record.stage == Stage.PROVISIONED
    assert [m.infra_id for m in provider.cloud] == ["theirs-r-1"]  # adopted, none made
    assert record.infra_id == "theirs-r-1"
    mine.close()


def _gone_pid() -> int:
    """The pid of a process of this host that ran and is gone (reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_the_listing_is_asked_beside_the_claim_when_no_one_else_holds_the_requests(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every earlier holder let go before the pass read the requests, so what any
    # made shows in a listing asked then: the claim no longer delays it (it waited
    # for the store's reads and the claim before).
    store, runtime = _store_with_r1(tmp_path)
    provider = AdoptOrCreate(late=[])
    listing_asked = threading.Event()
    list_machines = provider.list_machines

    def listing(owner: Owner) -> list[Machine]:
        listing_asked.set()
        return list_machines(owner)

    monkeypatch.setattr(provider, "list_machines", listing)
    claim_many = store.claim_many
    asked_during_claim: list[bool] = []

    def claim(*args: Any, **kwargs: Any) -> Any:
        asked_during_claim.append(listing_asked.wait(PATIENCE))
        return claim_many(*args, **kwargs)

    monkeypatch.setattr(store, "claim_many", claim)
    mine = Reconciler(store, {"adopt-or-create": ProviderHandle(provider)}, runtime,
                      worker_id="mine")

    mine.run_pass()

    assert asked_during_claim == [True]
    record = store.get_request("r-1")
    assert record is not None
    assert record.stage == Stage.PROVISIONED
    assert [m.infra_id for m in provider.cloud] == ["ours-r-1"]
    mine.close()


def test_a_lease_a_dead_worker_took_after_the_read_drops_the_early_listing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The pass read r-1 free and asked the listing at once; then a worker of this
    # host claimed r-1, launched and died, and the claim took its lease over: the
    # listing asked before that launch showed is not used, one is asked afresh.
    store, runtime = _store_with_r1(tmp_path)
    read_free = store.summaries([Stage.PENDING])
    assert [s.lease_owner for s in read_free] == [None]
    theirs = Machine(infra_id="theirs-r-1", state=MachineState.RUNNING, request_id="r-1")
    provider = AdoptOrCreate(late=[theirs])
    mine = Reconciler(store, {"adopt-or-create": ProviderHandle(provider)}, runtime,
                      worker_id="mine")
    assert store.claim("r-1", owner=f"{socket.gethostname()}:{_gone_pid()}", ttl=300,
                       now=mine.now())
    monkeypatch.setattr(store, "summaries", lambda *_args, **_kwargs: read_free)

    mine.run_pass()

    record = store.get_request("r-1")
    assert record is not None
    assert record.stage == Stage.PROVISIONED
    assert record.infra_id == "theirs-r-1"
    assert [m.infra_id for m in provider.cloud] == ["theirs-r-1"]  # adopted, none made
    mine.close()
