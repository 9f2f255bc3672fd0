"""A small stand-in for the request runner: drives vSphere provider steps with a fake clock."""

from __future__ import annotations

from collections.abc import Sequence

from talprov.providers.protocol import Step, StepContext
from talprov.providers.types import MachineRequest, Owner, Retry
from talprov.testing import FakeClock
from talprov.vmware.data import VSphereMachineData
from talprov.vmware.provider import VSphereProvider
from talprov.vmware.state import VSphereState

Ctx = StepContext[VSphereMachineData, VSphereState]
MAX_PASSES = 60


def context(provider: VSphereProvider, request: MachineRequest, owner: Owner,
            state: VSphereState | None = None) -> Ctx:
    data = VSphereMachineData.model_validate(request.provider_data)
    return StepContext(request=request, data=data, state=state or VSphereState(),
                       owner=owner, runtime=provider.runtime,
                       step_started_at=provider.runtime.clock())


def run_step(step: Step, ctx: Ctx, clock: FakeClock) -> None:
    """Call one step until it returns None (advancing the clock on Retry)."""
    ctx.step_started_at = clock()
    for _ in range(MAX_PASSES):
        result = step.run(ctx)
        if result is None:
            return
        assert isinstance(result, Retry)
        clock.sleep(result.after)
    raise AssertionError(f"step {step.name} did not finish")


def provision(provider: VSphereProvider, ctxs: Sequence[Ctx], clock: FakeClock) -> None:
    """Run every step for every context, in order."""
    for step in provider.steps():
        for ctx in ctxs:
            run_step(step, ctx, clock)


def deprovision(provider: VSphereProvider, ctx: Ctx, clock: FakeClock) -> None:
    for _ in range(MAX_PASSES):
        result = provider.deprovision(ctx)
        if result is None:
            return
        clock.sleep(result.after)
    raise AssertionError("deprovision did not finish")
