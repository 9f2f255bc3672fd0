"""Attempts that fail because the provider instance as a whole is out (its listing
fails too, or the endpoint cannot be reached at all) are held back like
``InstanceUnavailable``: they never spend a request's attempts or its step
deadline. A step's own error from a healthy instance still counts."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, SecretStr

from talprov.providers.errors import EndpointUnreachable, Transient
from talprov.providers.protocol import ProviderState, Runtime, Step, StepContext
from talprov.providers.types import Health, Machine, MachineRequest, Owner, Stage, StepResult
from talprov.reconcile.failures import StepPolicy
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.helpers import WORKER_CONFIG

#: The pass's 15 minutes of outage, as QA saw it.
OUTAGE = 900.0


class NoSettings(BaseModel):
    pass


class Blackholed:
    """``resolve`` (needs no listing) and ``list_machines`` both fail, as against an
    endpoint that accepts connections and never answers; each call takes
    ``call_time`` seconds of the fake clock."""

    type_name: ClassVar[str] = "blackholed"
    config_model: ClassVar[type[BaseModel]] = NoSettings
    data_model: ClassVar[type[BaseModel]] = NoSettings
    state_model: ClassVar[type[ProviderState]] = ProviderState

    def __init__(self, clock: FakeClock, *, listing_fails: bool,
                 step_error: Exception) -> None:
        self.name = "aws-demo"
        self.clock = clock
        self.listing_fails = listing_fails
        self.step_error = step_error
        #: The listing's failure is in before the step's (both time out alike).
        self.listed = threading.Event()
        self.resolves = 0

    def steps(self) -> Sequence[Step]:
        return (Step("resolve-image", self._resolve, needs_listing=False, timeout=600.0),
                Step("create", lambda ctx: None))

    def _resolve(self, ctx: StepContext[Any, Any]) -> StepResult:
        self.resolves += 1
        self.listed.wait(5.0)
        raise self.step_error

    def deprovision(self, ctx: StepContext[Any, Any]) -> StepResult:
        return None

    def list_machines(self, owner: Owner) -> list[Machine]:
        try:
            if self.listing_fails:
                raise Transient("DescribeInstances: no answer within the read timeout")
            return []
        finally:
            self.listed.set()

    def health(self) -> Health:
        return Health(ok=True)


def run_for(store: Store, provider: Blackholed, clock: FakeClock, tmp_path: Path,
            seconds: float) -> None:
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache", clock=clock,
                      sleep=clock.sleep)
    store.create_request(MachineRequest(id="x1", provider="aws-demo", talos_version="v1.13.9",
                                        machine_config=SecretStr(WORKER_CONFIG)))
    reconciler = Reconciler(store, {"aws-demo": ProviderHandle(provider, 4)}, runtime,
                            policy=StepPolicy(max_attempts=8))
    end = clock() + seconds
    while clock() < end:
        provider.listed.clear()
        reconciler.run_pass()
        record = store.get_request("x1")
        assert record is not None
        if record.stage == Stage.FAILED:
            return
        clock.sleep(5.0)


def test_read_timeouts_while_the_listing_fails_never_fail_the_request(
        store: Store, clock: FakeClock, tmp_path: Path) -> None:
    provider = Blackholed(clock, listing_fails=True, step_error=Transient(
        "DescribeImages: no answer within the read timeout"))
    run_for(store, provider, clock, tmp_path, OUTAGE)
    record = store.get_request("x1")
    assert record is not None
    assert record.stage == Stage.PROVISIONING, record.error
    assert provider.resolves > 8  # tried on, more often than the attempts allow
    assert record.attempts <= 1  # the first may race the listing's failure
    assert any("held back" in e.message for e in store.events("x1"))


def test_an_unreachable_endpoint_never_fails_the_request(
        store: Store, clock: FakeClock, tmp_path: Path) -> None:
    provider = Blackholed(clock, listing_fails=False, step_error=EndpointUnreachable(
        "DescribeImages at https://127.0.0.1:9: endpoint unreachable (connection refused)"))
    run_for(store, provider, clock, tmp_path, OUTAGE)
    record = store.get_request("x1")
    assert record is not None
    assert record.stage == Stage.PROVISIONING, record.error
    assert record.attempts == 0
    assert provider.resolves > 8


def test_a_step_error_from_a_healthy_instance_still_counts(
        store: Store, clock: FakeClock, tmp_path: Path) -> None:
    provider = Blackholed(clock, listing_fails=False, step_error=Transient(
        "DescribeImages: no answer within the read timeout"))
    run_for(store, provider, clock, tmp_path, OUTAGE)
    record = store.get_request("x1")
    assert record is not None
    assert record.stage == Stage.FAILED
    assert record.attempts == 8
