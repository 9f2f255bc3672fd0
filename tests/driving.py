"""A small stand-in for the request runner: drives one provider's steps with a fake clock.

Driver tests use it to exercise steps directly, without a store; the reconciler
itself is tested in tests/unit/reconcile/test_reconciler.py and the contract suite.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest

from talprov.providers.protocol import ProviderState, Step, StepContext
from talprov.providers.types import MachineRequest, Owner, Retry
from talprov.reconcile import runner
from talprov.testing import FakeClock

Ctx = StepContext[Any, Any]
# Providers are typed Any here: drivers narrow their ClassVar models, which the
# Provider protocol (invariant ClassVars) does not accept.
MAX_PASSES = 60


def context(provider: Any, request: MachineRequest, owner: Owner,
            state: ProviderState | None = None) -> Ctx:
    """The context a step of ``provider`` sees for ``request`` (fresh state by default)."""
    data = provider.data_model.model_validate(request.provider_data)
    runtime = provider.runtime
    return StepContext(request=request, data=data, state=state or provider.state_model(),
                       owner=owner, runtime=runtime, step_started_at=runtime.clock())


def run_step(step: Step, ctx: Ctx, clock: FakeClock) -> None:
    """Call one step until it returns None (advancing the clock on Retry).

    The step's timeout applies as in the runner (``StepTimeout``).
    """
    ctx.step_started_at = clock()
    for _ in range(MAX_PASSES):
        result = runner.run_step(step, ctx)
        if result is None:
            return
        assert isinstance(result, Retry)
        clock.sleep(result.after)
    raise AssertionError(f"step {step.name} did not finish")


def provision(provider: Any, ctxs: Sequence[Ctx], clock: FakeClock,
              *, batch: bool = True) -> None:
    """Run every step for every context; batched steps get the contexts together."""
    for step in provider.steps():
        if not (batch and step.run_batch is not None and len(ctxs) > 1):
            for ctx in ctxs:
                run_step(step, ctx, clock)
            continue
        for ctx in ctxs:
            ctx.step_started_at = clock()
        pending = list(ctxs)
        for _ in range(MAX_PASSES):
            if not pending:
                break
            results: list[Any] = [
                runner.within_timeout(step, ctx.elapsed(), outcome)
                for ctx, outcome in zip(pending, step.run_batch(pending), strict=True)]
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            pending = [c for c, r in zip(pending, results, strict=True) if r is not None]
            if pending:
                clock.sleep(min(r.after for r in results if r is not None))
        assert not pending, f"step {step.name} did not finish"


def deprovision(provider: Any, ctx: Ctx, clock: FakeClock) -> None:
    """Call deprovision until it reports the machine gone."""
    for _ in range(MAX_PASSES):
        result = provider.deprovision(ctx)
        if result is None:
            return
        clock.sleep(result.after)
    raise AssertionError("deprovision did not finish")


def step_ran_while_listing(provider: Any, step_method: str,
                           monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Watch ``provider.<step_method>`` (patched before the provider's steps are
    built) against the pass's listing: each ``list_machines`` call appends whether
    that step had started by then, waiting up to 10 s for it, which it does in
    vain when the step runs only after the listing."""
    started = threading.Event()
    real_step = getattr(provider, step_method)
    real_list = provider.list_machines
    seen: list[bool] = []

    def step(arg: Any) -> Any:
        started.set()
        return real_step(arg)

    def listing(owner: Owner) -> Any:
        seen.append(started.wait(10))
        return real_list(owner)

    monkeypatch.setattr(provider, step_method, step)
    monkeypatch.setattr(provider, "list_machines", listing)
    return seen
