"""later_steps imagines the machines already in flight ready, as it imagines the
first step's (QA: a plan while a new control-plane member came up listed no
later step, though two more members were still to come)."""

from __future__ import annotations

from talprov.providers.types import Stage
from talprov.scaler.actions import ActionKind
from talprov.scaler.models import CONTROL_PLANE_SET
from talprov.scaler.plan import plan
from talprov.scaler.rollout import later_steps
from talprov.scaler.templates import template_hash

from .test_plan_units import machine
from .world import START, make_spec


def _steps(stage: Stage, *, unreadable: bool = False) -> tuple[list[list[str]], bool, bool]:
    spec = make_spec(cp=4, workers=0)
    current = template_hash(spec, CONTROL_PLANE_SET, None)
    observed = [machine(current, "cp-up"),
                machine(current, "cp-new", stage=stage, created_at=START,
                        unreadable=unreadable)]
    first = plan(spec, observed, START)
    steps, complete = later_steps(spec, observed, first, START)
    return ([[a.action.value for a in step.actions] for step in steps], complete,
            bool(first.actions))


def test_a_step_waiting_for_a_member_in_flight_has_the_later_ones() -> None:
    for stage in (Stage.PENDING, Stage.PROVISIONING):
        steps, complete, acts_now = _steps(stage)
        assert not acts_now  # one member at a time: this pass waits
        assert steps == [[ActionKind.CREATE.value]] * 2, stage
        assert complete


def test_a_member_being_deleted_is_imagined_gone() -> None:
    steps, complete, acts_now = _steps(Stage.DEPROVISIONING)
    assert not acts_now
    assert steps == [[ActionKind.CREATE.value]] * 3
    assert complete
