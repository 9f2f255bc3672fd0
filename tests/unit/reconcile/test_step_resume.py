"""A request resumes at its stored step by name when a driver upgrade moved it."""

from __future__ import annotations

from collections.abc import Sequence
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


class Counted(ProviderDouble):
    """A provider double whose step list a test can change between passes."""

    type_name: ClassVar[str] = "counted"

    def __init__(self, names: Sequence[str], *, stop_before: str | None = None) -> None:
        self.name = "counted"
        self.names = list(names)
        self.stop_before = stop_before
        self.ran: list[str] = []

    def steps(self) -> Sequence[Step]:
        return tuple(Step(name, self._step(name)) for name in self.names)

    def _step(self, name: str) -> Any:
        def run(ctx: StepContext[Any, Any]) -> StepResult:
            if name == self.stop_before:
                raise KeyboardInterrupt  # the worker dies before this step runs
            self.ran.append(name)
            ctx.state.infra_id = "m-1"
            return None

        return run

    def list_machines(self, owner: Owner) -> list[Machine]:
        return [Machine(infra_id="m-1", state=MachineState.RUNNING, request_id="r-1")]


def reconciler(store: Store, provider: Counted, tmp_path: Path) -> Reconciler:
    clock = FakeClock()
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache", clock=clock,
                      sleep=clock.sleep)
    return Reconciler(store, {"counted": ProviderHandle(provider, 1)}, runtime)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'state.db'}")
    s.migrate()
    return s


def stop_at(store: Store, tmp_path: Path, names: list[str], step: str) -> None:
    """Run the request with ``names`` until the worker dies before ``step``."""
    before = Counted(names, stop_before=step)
    with pytest.raises(KeyboardInterrupt), reconciler(store, before, tmp_path) as first:
        first.run_pass()
    record = store.get_request("r-1")
    assert record is not None
    assert record.step_name == step


def create(store: Store) -> None:
    store.create_request(MachineRequest(id="r-1", provider="counted", talos_version="v1.13.9",
                                        machine_config=SecretStr(WORKER_CONFIG)))


def test_a_step_added_before_the_stored_one_is_not_skipped_into(
        store: Store, tmp_path: Path) -> None:
    create(store)
    stop_at(store, tmp_path, ["image", "clone", "power-on", "wait"], "power-on")
    upgraded = Counted(["image", "clone", "tag", "power-on", "wait"])
    with reconciler(store, upgraded, tmp_path) as second:
        second.run_pass()
    # The index alone (2) would have run "tag" and then power-on again; by name the
    # request continues at power-on, and the new step before it is not run.
    assert upgraded.ran == ["power-on", "wait"]
    record = store.get_request("r-1")
    assert record is not None
    assert record.stage == Stage.PROVISIONED


def test_a_step_removed_before_the_stored_one_does_not_skip_it(
        store: Store, tmp_path: Path) -> None:
    create(store)
    stop_at(store, tmp_path, ["image", "clone", "tag", "power-on", "wait"], "power-on")
    upgraded = Counted(["image", "clone", "power-on", "wait"])
    with reconciler(store, upgraded, tmp_path) as second:
        second.run_pass()
    # By index (3) the request would have jumped to "wait" without powering on.
    assert upgraded.ran == ["power-on", "wait"]


def test_a_stored_step_the_driver_no_longer_has_starts_over(
        store: Store, tmp_path: Path) -> None:
    create(store)
    stop_at(store, tmp_path, ["image", "clone", "legacy", "wait"], "legacy")
    upgraded = Counted(["image", "clone", "wait"])
    with reconciler(store, upgraded, tmp_path) as second:
        second.run_pass()
    assert upgraded.ran == ["image", "clone", "wait"]
