"""Running a step for every request of a batch side by side.

The runner hands a batched step all requests that reached it together, and runs
the steps after it for that group in the same thread; a driver whose API has no
call that handles many requests at once still answers them side by side here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from talprov.daemon_pool import DaemonPool
from talprov.providers.errors import ProviderError
from talprov.providers.protocol import BatchStepFn, StepContext
from talprov.providers.types import StepResult

Ctx = StepContext[Any, Any]
T = TypeVar("T")

#: Requests of one batch step handled at the same time (a driver's client must be
#: safe to share between threads).
BATCH_WORKERS = 8


def side_by_side(
    run: Callable[[Ctx], T], ctxs: Sequence[Ctx], workers: int = BATCH_WORKERS
) -> list[T | BaseException]:
    """``run`` for every context, at most ``workers`` at a time, outcomes in order.

    A ``ProviderError`` stands in its request's place; anything else propagates
    (a bug fails the batch, as in a step run alone).
    """
    def attempt(ctx: Ctx) -> T | BaseException:
        try:
            return run(ctx)
        except ProviderError as exc:
            return exc

    if len(ctxs) <= 1:
        return [attempt(ctx) for ctx in ctxs]
    # Not waited for by an interruption (see DaemonPool): a call may never return.
    with DaemonPool(min(workers, len(ctxs)), "talprov-batch") as pool:
        return list(pool.map(attempt, ctxs))


def steps_side_by_side(
    run: Callable[[Ctx], StepResult], ctxs: Sequence[Ctx], workers: int = BATCH_WORKERS
) -> list[StepResult | BaseException]:
    """``side_by_side`` for a step's own outcomes: each is also told to the runner
    as soon as it is known (``StepContext.finished``), so that a request of a
    pipelined step goes on in its worker while the batch's others still run."""
    def told(ctx: Ctx) -> StepResult:
        try:
            outcome = run(ctx)
        except ProviderError as exc:
            ctx.finished(exc)
            raise
        ctx.finished(outcome)
        return outcome

    return side_by_side(told, ctxs, workers)


def one_by_one(run: Callable[[Ctx], StepResult]) -> BatchStepFn:
    """A ``run_batch`` that runs ``run`` for each request, side by side, telling each
    outcome as it comes (see :func:`steps_side_by_side`)."""
    return lambda ctxs: steps_side_by_side(run, ctxs)
