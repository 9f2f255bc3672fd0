"""Pipelined steps (``Step.pipelined``): a request its batch step is done with goes
on through its next steps in the batch's worker while the batch's other requests
still run, and the whole batch's outcomes are still one store transaction."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from talprov.providers.batching import one_by_one, steps_side_by_side
from talprov.providers.errors import Transient
from talprov.providers.protocol import Step, StepContext
from talprov.providers.types import Retry, Stage, StepResult
from tests.unit.reconcile.test_runner import Rig

Ctx = StepContext[Any, Any]
#: Seconds a request's clone waits for another request's start before giving up
#: (only a runner that does not pipeline ever waits that long).
PATIENCE = 10.0


class Clones:
    """A batch step where ``slow``'s clone ends only after ``fast`` was started (or
    after ``PATIENCE``), as vCenter ends one template's clones one after another.
    ``waits`` is still cloning; ``broken`` fails. ``order`` records what happened."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.fast_started = threading.Event()
        self._lock = threading.Lock()

    def note(self, line: str) -> None:
        with self._lock:
            self.order.append(line)

    def clone(self, ctx: Ctx) -> StepResult:
        rid = ctx.request.id
        if rid == "waits":
            return Retry(5, "clone of waits still running")
        if rid == "broken":
            raise Transient("clone of broken failed")
        if rid == "slow":
            self.fast_started.wait(PATIENCE)
        ctx.state.infra_id = f"vm-{rid}"
        self.note(f"cloned {rid}")
        return None

    def batch(self, ctxs: Sequence[Ctx]) -> list[StepResult | BaseException]:
        return steps_side_by_side(self.clone, ctxs)

    def start(self, ctx: Ctx) -> StepResult:
        rid = ctx.request.id
        self.note(f"started {rid}")
        if rid == "fast":
            self.fast_started.set()
        return None


def rig_of(clones: Clones, *, pipelined: bool = True, listing_step: bool = False) -> Rig:
    steps = [Step.batched("clone", clones.batch, pipelined=pipelined),
             Step.batched("configure", one_by_one(lambda ctx: None), needs_listing=False),
             Step.batched("start", one_by_one(clones.start), needs_listing=not listing_step)]
    if listing_step:
        steps.insert(1, Step.batched("look", one_by_one(lambda ctx: None)))
    rig = Rig(steps)
    for rid in ("fast", "slow", "waits", "broken"):
        rig.add(rid)
    return rig


def test_a_request_done_with_a_pipelined_step_goes_on_while_its_batch_still_runs() -> None:
    clones = Clones()
    rig = rig_of(clones)
    rig.run_pass("fast", "slow", "waits", "broken")
    # fast was configured and started while slow's clone still ran (slow's clone
    # ends only once fast is started; without pipelining it gave up waiting).
    assert clones.order.index("started fast") < clones.order.index("cloned slow")
    assert rig.record("fast").stage == rig.record("slow").stage == Stage.PROVISIONED
    assert rig.storage.events["fast"] == [
        "provisioning started", "step clone done", "step configure done", "step start done",
        "provisioned: vm-fast ready"]
    # Requests not done with the step stay at it, as without pipelining.
    waits, broken = rig.record("waits"), rig.record("broken")
    assert (waits.stage, waits.step_name, waits.error) == (Stage.PROVISIONING, "clone", None)
    assert waits.next_attempt_at is not None
    assert (broken.step_name, broken.error, broken.attempts) == (
        "clone", "clone: clone of broken failed", 1)
    # The clone batch's outcomes, chains included, are one transaction: fast and
    # slow were each written once (pending, then provisioned).
    assert rig.record("fast").version == rig.record("slow").version == 2
    assert rig.storage.transactions == 1


def test_without_pipelined_the_batch_goes_on_together() -> None:
    clones = Clones()
    clones.fast_started.set()  # slow's clone need not wait: no chain would start fast
    rig = rig_of(clones, pipelined=False)
    rig.run_pass("fast", "slow", "waits", "broken")
    assert clones.order.index("cloned slow") < clones.order.index("started fast")
    assert rig.record("fast").stage == rig.record("slow").stage == Stage.PROVISIONED
    # One transaction per step for the group: clone, configure, start.
    assert rig.storage.transactions == 3


def test_a_chain_stops_before_a_step_that_needs_the_listing_when_it_is_not_in() -> None:
    clones = Clones()
    clones.fast_started.set()
    rig = rig_of(clones, listing_step=True)
    rig.provider._steps = (Step.batched("clone", clones.batch, pipelined=True,
                                        needs_listing=False),
                           *rig.provider._steps[1:])
    runner = rig.runner()
    works = [work for rid in ("fast", "slow")
             if (work := runner.prepare(rig.record(rid), None)) is not None]
    parked = runner.advance(works, listed=False)
    # Both cloned (one chained alone, one with the group), and both stopped before
    # "look", stored there, and returned to go on once the listing is in.
    assert sorted(w.record.request.id for w in parked) == ["fast", "slow"]
    assert [rig.record(rid).step_name for rid in ("fast", "slow")] == ["look", "look"]
    assert "started fast" not in clones.order
    runner.advance(parked)
    assert rig.record("fast").stage == rig.record("slow").stage == Stage.PROVISIONED
