"""Running a step for every request of a pass side by side, one ProviderError each
(the contract's :mod:`talprov.providers.batching`, under the names this driver uses),
or in turn where a request's share makes no call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from talprov.providers.batching import BATCH_WORKERS, one_by_one
from talprov.providers.batching import side_by_side as each
from talprov.providers.errors import ProviderError
from talprov.providers.protocol import BatchStepFn, StepContext
from talprov.providers.types import StepResult

__all__ = ["BATCH_WORKERS", "each", "each_as_needed", "one_by_one", "where_needed"]

Ctx = StepContext[Any, Any]
T = TypeVar("T")


def each_as_needed(run: Callable[[Ctx], T], ctxs: Sequence[Ctx],
                   calls: Callable[[Ctx], bool]) -> list[T | BaseException]:
    """``run`` for every context, outcomes in order, as :func:`each`: side by side
    for the contexts ``calls`` says may call the cloud, one after another in this
    thread for the rest.

    The rest is a little CPU each (a name already looked up, a server the pass
    listed, nothing to do): a pool of threads for it cost more than the work,
    about 3 ms for 8 threads on a busy host, and a pass has several such steps.
    A ``ProviderError`` stands in its request's place; anything else propagates.
    """
    far = [ctx for ctx in ctxs if calls(ctx)]
    outcomes: dict[int, T | BaseException] = dict(zip(map(id, far), each(run, far),
                                                      strict=True))
    for ctx in ctxs:
        if id(ctx) not in outcomes:
            try:
                outcomes[id(ctx)] = run(ctx)
            except ProviderError as exc:
                outcomes[id(ctx)] = exc
    return [outcomes[id(ctx)] for ctx in ctxs]


def where_needed(run: Callable[[Ctx], StepResult], calls: Callable[[Ctx], bool]) -> BatchStepFn:
    """A ``run_batch`` running ``run`` for each request as :func:`each_as_needed`."""
    return lambda ctxs: each_as_needed(run, ctxs, calls)
