"""Running a step for every request of a pass side by side, one ProviderError each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from talprov.providers.errors import ProviderError
from talprov.providers.protocol import BatchStepFn, StepContext
from talprov.providers.types import StepResult

Ctx = StepContext[Any, Any]
T = TypeVar("T")


#: Requests of one batch step handled side by side (the SDK's session is thread-safe).
BATCH_WORKERS = 8


def each(run: Callable[[Ctx], T], ctxs: Sequence[Ctx]) -> list[T | BaseException]:
    """``run`` for every context, side by side; a ``ProviderError`` in its request's place."""
    def attempt(ctx: Ctx) -> T | BaseException:
        try:
            return run(ctx)
        except ProviderError as exc:
            return exc

    if len(ctxs) <= 1:
        return [attempt(ctx) for ctx in ctxs]
    with ThreadPoolExecutor(max_workers=min(BATCH_WORKERS, len(ctxs))) as pool:
        return list(pool.map(attempt, ctxs))


def one_by_one(run: Callable[[Ctx], StepResult]) -> BatchStepFn:
    """A ``run_batch`` that runs ``run`` for each request (side by side)."""
    return lambda ctxs: each(run, ctxs)
