"""A small stand-in for the request runner: drives provider steps with a fake clock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from talprov.providers.protocol import Step, StepContext
from talprov.providers.types import MachineRequest, Owner, Retry
from talprov.proxmox.data import ProxmoxMachineData
from talprov.proxmox.provider import ProxmoxProvider
from talprov.proxmox.state import ProxmoxState
from talprov.testing import FakeClock

Ctx = StepContext[ProxmoxMachineData, ProxmoxState]
MAX_PASSES = 60


def context(provider: ProxmoxProvider, request: MachineRequest, owner: Owner,
            state: ProxmoxState | None = None) -> Ctx:
    data = ProxmoxMachineData.model_validate(request.provider_data)
    return StepContext(request=request, data=data, state=state or ProxmoxState(),
                       owner=owner, runtime=provider.runtime,
                       step_started_at=provider.runtime.clock())


def run_step(step: Step, ctx: Ctx, clock: FakeClock) -> None:
    """Call one step until it returns None (advancing the clock on Retry)."""
    for _ in range(MAX_PASSES):
        result = step.run(ctx)
        if result is None:
            return
        assert isinstance(result, Retry)
        clock.sleep(result.after)
    raise AssertionError(f"step {step.name} did not finish")


def provision(provider: ProxmoxProvider, ctxs: Sequence[Ctx], clock: FakeClock,
              *, batch: bool = True) -> None:
    """Run every step for every context, step by step, using run_batch when asked."""
    for step in provider.steps():
        for ctx in ctxs:
            ctx.step_started_at = clock()
        pending = list(ctxs)
        for _ in range(MAX_PASSES):
            if not pending:
                break
            if batch and step.run_batch is not None and len(pending) > 1:
                results: list[Any] = list(step.run_batch(pending))
            else:
                results = [step.run(ctx) for ctx in pending]
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            pending = [c for c, r in zip(pending, results, strict=True) if r is not None]
            if pending:
                clock.sleep(min(r.after for r in results if r is not None))
        assert not pending, f"step {step.name} did not finish"


def deprovision(provider: ProxmoxProvider, ctx: Ctx, clock: FakeClock) -> None:
    for _ in range(MAX_PASSES):
        result = provider.deprovision(ctx)
        if result is None:
            return
        clock.sleep(result.after)
    raise AssertionError("deprovision did not finish")
