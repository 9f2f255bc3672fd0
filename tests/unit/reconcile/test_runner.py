"""The step runner on its own: a ProviderDouble driven by RequestRunner over the
in-memory MemoryProgressStorage, step timeouts on a FakeClock, and batched steps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr

from talprov.providers.errors import InstanceAccessRefused, StepTimeout, Transient
from talprov.providers.protocol import Runtime, Step, StepContext
from talprov.providers.types import (
    Machine,
    MachineRequest,
    Owner,
    Retry,
    Stage,
    StepResult,
)
from talprov.reconcile.failures import StepPolicy
from talprov.reconcile.runner import RequestRunner, run_step
from talprov.store.errors import StaleRecord
from talprov.store.records import RequestRecord
from talprov.testing import FakeClock, MemoryProgressStorage, ProviderDouble
from tests.helpers import WORKER_CONFIG

OWNER = Owner("test", "double")
StepFunction = Callable[[StepContext[Any, Any]], StepResult]


class Scripted(ProviderDouble):
    """A provider double whose steps are the functions a test hands it."""

    type_name: ClassVar[str] = "scripted"

    def __init__(self, steps: Sequence[Step]) -> None:
        self.name = "scripted"
        self._steps = tuple(steps)

    def steps(self) -> Sequence[Step]:
        return self._steps

    def list_machines(self, owner: Owner) -> list[Machine]:
        return []


class Rig:
    """One provider double, one clock, one in-memory storage, and a way to run passes."""

    def __init__(self, steps: Sequence[Step], **policy: Any) -> None:
        self.clock = FakeClock()
        self.runtime = Runtime(installation="test", clock=self.clock, sleep=self.clock.sleep)
        self.storage = MemoryProgressStorage()
        self.provider = Scripted(steps)
        self.policy = StepPolicy(**policy)

    def add(self, rid: str) -> None:
        self.storage.add(MachineRequest(
            id=rid, provider="scripted", talos_version="v1.11.5",
            machine_config=SecretStr(WORKER_CONFIG)))

    def runner(self) -> RequestRunner:
        # A new runner each pass, as after a restart: nothing may live in it alone.
        return RequestRunner(self.provider, OWNER, self.runtime, self.storage, self.policy)

    def run_pass(self, *rids: str) -> None:
        runner = self.runner()
        works = []
        for rid in rids:
            work = runner.prepare(self.record(rid), None)
            assert work is not None
            works.append(work)
        runner.advance(works)

    def record(self, rid: str) -> RequestRecord:
        record = self.storage.get_request(rid)
        assert record is not None
        return record


def waits(reason: str, until: Callable[[], bool] = lambda: False) -> StepFunction:
    """A step that returns Retry(10s, reason) until ``until()`` holds."""

    def run(ctx: StepContext[Any, Any]) -> StepResult:
        return None if until() else Retry(after=10, reason=reason)

    return run


def creates(infra_id: str) -> StepFunction:
    def run(ctx: StepContext[Any, Any]) -> StepResult:
        ctx.state.infra_id = infra_id
        ctx.event(f"made {infra_id}")
        return None

    return run


# -- a double through RequestRunner and MemoryProgressStorage -------------------------


def test_a_double_is_provisioned_through_the_runner_and_its_state_stored() -> None:
    rig = Rig([Step("create", creates("m-1")), Step("boot", waits("booting", lambda: True))])
    rig.add("r-1")
    rig.run_pass("r-1")
    record = rig.record("r-1")
    assert record.stage == Stage.PROVISIONED
    assert record.infra_id == "m-1"
    assert record.state["infra_id"] == "m-1"
    # One write per step: the first step's outcome, then the last step and the stage.
    assert record.version == 3
    assert rig.storage.events["r-1"] == [
        "provisioning started", "made m-1", "step create done", "step boot done",
        "provisioned: m-1 ready",
    ]


def test_storage_refuses_a_write_at_a_stale_version_and_writes_nothing() -> None:
    rig = Rig([Step("create", creates("m-1"))])
    rig.add("r-1")
    rig.run_pass("r-1")
    record = rig.record("r-1")
    with pytest.raises(StaleRecord):
        rig.storage.save_progress(
            "r-1", expected_version=record.version - 1, stage=Stage.FAILED, step_index=0,
            step_name=None, state={}, error="late writer", attempts=1, next_attempt_at=None,
            step_started_at=None, infra_id=None, machine_uuid=None, addresses=(),
            events=["must not appear"])
    assert rig.record("r-1") == record
    assert "must not appear" not in rig.storage.events["r-1"]


def test_a_delete_during_a_step_keeps_the_created_machine_id_for_deprovision() -> None:
    rig = Rig([])

    def create_while_deleted(ctx: StepContext[Any, Any]) -> StepResult:
        # Another process marks the request for deletion while this step runs.
        current = rig.record("r-1")
        rig.storage.save_progress(
            "r-1", expected_version=current.version, stage=Stage.DEPROVISIONING,
            step_index=current.step_index, step_name=current.step_name, state=current.state,
            error=None, attempts=0, next_attempt_at=None, step_started_at=None,
            infra_id=None, machine_uuid=None, addresses=(), events=["delete asked"])
        ctx.state.infra_id = "m-9"
        return None

    rig.provider._steps = (Step("create", create_while_deleted), Step("boot", waits("x")))
    rig.add("r-1")
    runner = rig.runner()
    work = runner.prepare(rig.record("r-1"), None)
    assert work is not None
    runner.advance([work])
    record = rig.record("r-1")
    assert work.stopped
    assert record.stage == Stage.DEPROVISIONING
    assert record.infra_id == "m-9"
    assert record.step_name is None  # the stale step outcome itself was not written


# -- step timeouts ---------------------------------------------------------------------


def test_a_step_still_waiting_after_its_timeout_fails_with_one_step_timeout() -> None:
    rig = Rig([Step("boot", waits("VM 7 is stopped"), timeout=60)])
    rig.add("r-1")
    rig.run_pass("r-1")
    rig.clock.sleep(60)
    rig.run_pass("r-1")
    assert rig.record("r-1").stage == Stage.PROVISIONING  # exactly at the limit: not yet
    rig.clock.sleep(1)
    rig.run_pass("r-1")
    record = rig.record("r-1")
    assert record.stage == Stage.FAILED
    assert record.error == "boot: step boot not done after 60s: VM 7 is stopped"
    assert record.attempts == 1  # permanent: no retries


def test_the_timeout_counts_from_the_steps_first_run_not_the_request() -> None:
    first_done = [False]
    rig = Rig([Step("first", waits("slow", lambda: first_done[0])),
               Step("second", waits("booting"), timeout=60)])
    rig.add("r-1")
    rig.run_pass("r-1")
    rig.clock.sleep(500)
    first_done[0] = True
    rig.run_pass("r-1")
    rig.clock.sleep(50)
    rig.run_pass("r-1")
    assert rig.record("r-1").stage == Stage.PROVISIONING
    rig.clock.sleep(11)
    rig.run_pass("r-1")
    assert rig.record("r-1").stage == Stage.FAILED


def test_time_the_instance_was_unavailable_does_not_count_against_the_step() -> None:
    # CI: a request blocked 30 min by refused credentials failed at its first wait
    # after the fix: "step ensure-template not done after 1800s".
    refused = [True]

    def run(ctx: StepContext[Any, Any]) -> StepResult:
        if refused[0]:
            raise InstanceAccessRefused("lab: InvalidLogin")
        return Retry(10, "template being imported")

    rig = Rig([Step("template", run, timeout=60)])
    rig.add("r-1")
    for _ in range(10):
        rig.run_pass("r-1")
        rig.clock.sleep(60)
    refused[0] = False
    rig.run_pass("r-1")
    record = rig.record("r-1")
    assert record.stage == Stage.PROVISIONING, record.error
    rig.clock.sleep(61)
    rig.run_pass("r-1")  # the deadline counts from the first attempt that got through
    assert rig.record("r-1").error == (
        "template: step template not done after 60s: template being imported")


def test_a_step_done_late_is_done_and_errors_keep_their_class() -> None:
    answers: list[StepResult | Exception] = [
        Retry(10, "waiting"), Transient("API busy"), None]

    def run(ctx: StepContext[Any, Any]) -> StepResult:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    rig = Rig([Step("boot", run, timeout=5)])
    rig.add("r-1")
    rig.run_pass("r-1")
    rig.clock.sleep(6)
    rig.run_pass("r-1")
    record = rig.record("r-1")
    assert record.stage == Stage.PROVISIONING
    assert record.error == "boot: API busy"
    rig.run_pass("r-1")
    assert rig.record("r-1").stage == Stage.PROVISIONED


def test_run_step_applies_the_timeout_to_a_single_context() -> None:
    clock = FakeClock()
    runtime = Runtime(installation="test", clock=clock, sleep=clock.sleep)
    step = Step("boot", waits("still BUILD"), timeout=30)
    request = MachineRequest(id="r-1", provider="scripted", talos_version="v1.11.5",
                             machine_config=SecretStr(WORKER_CONFIG))
    ctx: StepContext[Any, Any] = StepContext(
        request=request, data=None, state=ProviderDouble.state_model(), owner=OWNER,
        runtime=runtime, step_started_at=clock())
    assert isinstance(run_step(step, ctx), Retry)
    clock.sleep(31)
    with pytest.raises(StepTimeout, match="step boot not done after 30s: still BUILD"):
        run_step(step, ctx)


# -- batched steps ----------------------------------------------------------------------


class Batches:
    """A run_batch that records each call's request ids and fails request ``bad``."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, ctxs: Sequence[StepContext[Any, Any]]) -> list[StepResult | BaseException]:
        self.calls.append([c.request.id for c in ctxs])
        outcomes: list[StepResult | BaseException] = []
        for ctx in ctxs:
            if ctx.request.id == "bad":
                outcomes.append(Transient("no room for bad"))
            else:
                ctx.state.infra_id = f"m-{ctx.request.id}"
                outcomes.append(None)
        return outcomes


def test_batched_runs_requests_of_a_pass_together_and_single_ones_as_a_batch_of_one() -> None:
    batch = Batches()
    rig = Rig([Step.batched("create", batch)])
    for rid in ("a", "b", "bad"):
        rig.add(rid)
    rig.run_pass("a", "b", "bad")
    assert batch.calls == [["a", "b", "bad"]]
    assert rig.record("a").stage == rig.record("b").stage == Stage.PROVISIONED
    bad = rig.record("bad")
    assert bad.stage == Stage.PROVISIONING
    assert bad.error == "create: no room for bad"
    rig.clock.sleep(3600)
    rig.run_pass("bad")
    assert batch.calls[-1] == ["bad"]  # alone: through run, a batch of one
    assert rig.record("bad").attempts == 2


def test_batched_run_returns_the_one_outcome_or_raises_it() -> None:
    batch = Batches()
    step = Step.batched("create", batch, timeout=9)
    assert step.run_batch is batch
    assert step.timeout == 9
    runtime = Runtime(installation="test")

    def ctx(rid: str) -> StepContext[Any, Any]:
        request = MachineRequest(id=rid, provider="scripted", talos_version="v1.11.5",
                                 machine_config=SecretStr(WORKER_CONFIG))
        return StepContext(request=request, data=None, state=ProviderDouble.state_model(),
                           owner=OWNER, runtime=runtime)

    good = ctx("good")
    assert step.run(good) is None
    assert good.state.infra_id == "m-good"
    with pytest.raises(Transient, match="no room for bad"):
        step.run(ctx("bad"))
    assert batch.calls == [["good"], ["bad"]]


def test_the_services_instrumenting_wrapper_keeps_timeouts_and_batches() -> None:
    from talprov.service.metrics import Metrics, instrument

    batch = Batches()
    steps = [Step("boot", waits("booting"), timeout=60), Step.batched("create", batch)]
    wrapped = instrument(Scripted(steps), "scripted", Metrics()).steps()
    assert [(s.name, s.timeout) for s in wrapped] == [("boot", 60), ("create", None)]
    assert wrapped[1].run_batch is not None
