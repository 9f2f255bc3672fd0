"""The passes after this one: what a rolling update (or any change the planner
spreads over several passes) will do next, as ``talprov plan`` shows it. Pure.

A pass changes only as much as maxSurge/maxUnavailable (and, for a control
plane, one member at a time) allow; the rest waits until the new machines are
ready. To show the whole change, :func:`later_steps` imagines that every
machine a step creates comes up and every one it deletes goes, and asks the
planner again, until it has nothing left to do. The request ids of machines
created in later steps are the planner's guesses for that moment; the machines
they replace are real.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from talprov.providers.types import Stage
from talprov.scaler.actions import Action, ActionKind, Plan
from talprov.scaler.models import ClusterSpec
from talprov.scaler.observed import ObservedMachine
from talprov.scaler.plan import plan

#: Passes imagined at most: a change that has not settled by then (the circuit
#: breaker, a set the planner cannot converge) is shown as cut off.
MAX_STEPS = 200
#: How far apart imagined passes are, so that each one's ids and times differ.
_STEP = timedelta(minutes=1)


def later_steps(spec: ClusterSpec, observed: Sequence[ObservedMachine], first: Plan,
                now: datetime, *, max_steps: int = MAX_STEPS) -> tuple[list[Plan], bool]:
    """The plans of the passes after ``first`` (this pass's plan for ``observed``),
    each as if the previous step's machines were ready, and whether they stop
    because nothing is left to do (False: cut off after ``max_steps``).

    Machines already being made or deleted count as the first step's: a ``first``
    that waits for them (a control plane grows one member at a time) still has
    later steps (QA: a plan while the new member came up listed none).
    Orphans are left out: this pass deals with them. Pure.
    """
    machines = list(observed)
    step, steps = first, list[Plan]()
    for number in range(1, max_steps + 1):
        # Past the first step, every machine is imagined settled already.
        if not step.actions and (number > 1 or not any(map(_settling, machines))):
            return steps, True
        machines = _after(machines, step.actions, now + _STEP * number)
        step = plan(spec, machines, now + _STEP * number, seed=spec.name)
        if step.actions:
            steps.append(step)
    return steps, not step.actions


def _settling(machine: ObservedMachine) -> bool:
    """Whether ``machine`` is being made or deleted, and will be done with it. One
    sealed under another key never provisions with this one: it stays as it is."""
    if machine.stage is Stage.DEPROVISIONING:
        return True
    return machine.stage in (Stage.PENDING, Stage.PROVISIONING) and not machine.unreadable


def _after(machines: list[ObservedMachine], actions: Sequence[Action],
           at: datetime) -> list[ObservedMachine]:
    """``machines`` once ``actions`` are done and those being made or deleted are
    done too: created ones provisioned and present, deleted and replaced ones gone."""
    gone = {a.replaces if a.action is ActionKind.REPLACE else a.request
            for a in actions if a.action is not ActionKind.CREATE}
    result = [m if not _settling(m) else
              replace(m, stage=Stage.PROVISIONED, provisioned_at=at, machine_present=True)
              for m in machines
              if m.request_id not in gone and m.stage is not Stage.DEPROVISIONING]
    for action in actions:
        if action.action is ActionKind.DELETE or action.template_hash is None:
            continue
        result.append(ObservedMachine(
            request_id=action.request, set_name=action.set, stage=Stage.PROVISIONED,
            template_hash=action.template_hash, created_at=at, domain=action.domain,
            provisioned_at=at, machine_present=True))
    return result
