"""A small stand-in for the request runner, to drive provider steps in tests and the bench.

It does what the runner does between steps and nothing more: one
``list_machines`` per pass, requests at the same batchable step go to
``run_batch`` together, ``None`` moves on to the next step at once, ``Retry``
waits (on a fake clock), a permanent error fails the request, and state is
"persisted" (deep-copied) after every step so a crash can be simulated by
throwing away what a step did not persist.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import BaseModel

from talprov.providers.errors import ProviderError
from talprov.providers.protocol import Provider, ProviderState, Runtime, Step, StepContext
from talprov.providers.types import Machine, MachineRequest, Owner, Retry, StepResult
from talprov.testing import FakeClock


@dataclass
class Tracked:
    """One request as the loop sees it (what the store would hold)."""

    request: MachineRequest
    data: BaseModel
    state: ProviderState
    step: int = 0
    failed: str | None = None
    deleting: bool = False
    gone: bool = False
    next_at: float = 0.0
    step_started: float | None = None
    attempts: int = 0
    events: list[str] = field(default_factory=list)


class LocalLoop:
    """Drives requests of one provider instance through its steps and deprovision."""

    def __init__(self, provider: Provider, runtime: Runtime, clock: FakeClock,
                 max_attempts: int = 8) -> None:
        self.provider = provider
        self.runtime = runtime
        self.clock = clock
        self.owner = Owner(runtime.installation, provider.name)
        self.steps: Sequence[Step] = provider.steps()
        self.requests: dict[str, Tracked] = {}
        self.max_attempts = max_attempts
        self.list_calls = 0
        self.list_failures = 0
        #: Called after every step's outcome is known and before it is persisted;
        #: raising here simulates a crash at that point.
        self.before_persist: Callable[[Tracked, str], None] | None = None
        #: Called after a step's outcome was applied (the store write, for a worker).
        self.after_persist: Callable[[Tracked], None] | None = None

    def add(self, request: MachineRequest) -> Tracked:
        data = self.provider.data_model.model_validate(request.provider_data)
        tracked = Tracked(request, data, self.provider.state_model())
        self.requests[request.id] = tracked
        return tracked

    def delete(self, request_id: str) -> None:
        tracked = self.requests[request_id]
        tracked.deleting = True
        tracked.next_at = 0.0
        tracked.attempts = 0

    # ------------------------------------------------------------------ passes

    def run_pass(self) -> None:
        self.list_calls += 1
        try:
            machines = self.provider.list_machines(self.owner)
        except ProviderError:
            # As the reconciler does: without a listing, nothing is decided this pass.
            self.list_failures += 1
            self.clock.sleep(1.0)
            return
        observed: dict[str, Machine] = {m.request_id: m for m in machines if m.request_id}
        now = self.clock()
        due = [t for t in self.requests.values()
               if not t.gone and t.failed is None and t.next_at <= now
               and (t.deleting or t.step < len(self.steps))]
        for tracked in [t for t in due if t.deleting]:
            self._deprovision(tracked, observed.get(tracked.request.id))
        active = [t for t in due if not t.deleting]
        while active:
            by_step: dict[int, list[Tracked]] = {}
            for tracked in active:
                by_step.setdefault(tracked.step, []).append(tracked)
            still: list[Tracked] = []
            for index in sorted(by_step):
                group = by_step[index]
                step = self.steps[index]
                contexts = [self._context(t, observed.get(t.request.id)) for t in group]
                outcomes = self._run(step, contexts)
                for tracked, ctx, outcome in zip(group, contexts, outcomes, strict=True):
                    if self._apply(tracked, ctx, step, outcome):
                        still.append(tracked)
            active = still

    def _context(self, tracked: Tracked, observed: Machine | None) -> StepContext[Any, Any]:
        if tracked.step_started is None:
            tracked.step_started = self.clock()
        return StepContext(
            request=tracked.request, data=tracked.data,
            state=tracked.state.model_copy(deep=True), owner=self.owner, runtime=self.runtime,
            observed=observed, step_started_at=tracked.step_started,
        )

    @staticmethod
    def _run(step: Step, contexts: list[StepContext[Any, Any]]) -> list[Any]:
        if step.run_batch is not None and len(contexts) > 1:
            try:
                return list(step.run_batch(contexts))
            except Exception as exc:  # applied to every member
                return [exc] * len(contexts)
        outcomes: list[Any] = []
        for ctx in contexts:
            try:
                outcomes.append(step.run(ctx))
            except Exception as exc:  # classified in _apply
                outcomes.append(exc)
        return outcomes

    def _apply(self, tracked: Tracked, ctx: StepContext[Any, Any], step: Step,
               outcome: StepResult | BaseException) -> bool:
        go_on = self._record(tracked, ctx, step, outcome)
        if self.after_persist is not None:
            self.after_persist(tracked)
        return go_on

    def _record(self, tracked: Tracked, ctx: StepContext[Any, Any], step: Step,
                outcome: StepResult | BaseException) -> bool:
        if self.before_persist is not None:
            self.before_persist(tracked, step.name)
        tracked.state = ctx.state  # persisted
        tracked.events += ctx.events
        if isinstance(outcome, BaseException):
            tracked.attempts += 1
            if not isinstance(outcome, ProviderError):
                raise outcome
            if outcome.permanent or tracked.attempts >= self.max_attempts:
                tracked.failed = f"{step.name}: {outcome}"
            else:
                tracked.next_at = self.clock() + (outcome.retry_after or 1.0)
            return False
        if isinstance(outcome, Retry):
            tracked.next_at = self.clock() + outcome.after
            tracked.attempts = 0
            return False
        tracked.step += 1
        tracked.step_started = None
        tracked.attempts = 0
        return tracked.step < len(self.steps)

    def _deprovision(self, tracked: Tracked, observed: Machine | None) -> None:
        ctx = StepContext(
            # As the runner does: deprovision must work even when data no longer validates.
            request=tracked.request, data=cast(Any, None),
            state=tracked.state.model_copy(deep=True),
            owner=self.owner, runtime=self.runtime, observed=observed,
            step_started_at=self.clock(),
        )
        try:
            outcome = self.provider.deprovision(ctx)
        except ProviderError as exc:
            tracked.next_at = self.clock() + (exc.retry_after or 1.0)
            tracked.events.append(f"deprovision: {exc}")
            return
        tracked.state = ctx.state
        tracked.events += ctx.events
        if isinstance(outcome, Retry):
            tracked.next_at = self.clock() + outcome.after
        else:
            tracked.gone = True

    # ------------------------------------------------------------------ driving

    def settled(self) -> bool:
        return all(
            t.gone or t.failed is not None or (not t.deleting and t.step >= len(self.steps))
            for t in self.requests.values()
        )

    def run_until_settled(self, max_passes: int = 100) -> int:
        """Run passes, jumping the fake clock to the next due request; the pass count."""
        for count in range(1, max_passes + 1):
            self.run_pass()
            if self.settled():
                return count
            waiting = [t.next_at for t in self.requests.values()
                       if not t.gone and t.failed is None]
            if waiting:
                self.clock.now = max(self.clock.now, min(waiting))
        raise AssertionError(f"not settled after {max_passes} passes: {self.summary()}")

    def summary(self) -> dict[str, str]:
        out = {}
        for rid, t in self.requests.items():
            if t.failed:
                out[rid] = f"failed: {t.failed}"
            elif t.gone:
                out[rid] = "gone"
            else:
                out[rid] = f"step {t.step} deleting={t.deleting}"
        return out
