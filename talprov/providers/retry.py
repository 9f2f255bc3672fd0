"""Retrying calls inside a step: jittered exponential backoff, bounded, honouring Retry-After.

Only ``Transient`` errors are retried here. A create is wrapped only when it is
idempotent (a client token, or a deterministic name looked up first). SDKs that
retry on their own (botocore, keystoneauth) must have their own attempts lowered
when wrapped, so that attempts do not multiply.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
)

from talprov.providers.errors import Transient

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient failure."""

    attempts: int = 5
    initial: float = 0.5
    maximum: float = 30.0
    deadline: float = 120.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (attempt counts from 1).

        Full jitter over an exponential ceiling, but never less than what the
        server asked for with Retry-After.
        """
        ceiling = min(self.maximum, self.initial * (2 ** (attempt - 1)))
        wait = rng.uniform(0, ceiling)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.maximum if retry_after is None else max(self.maximum, retry_after))


DEFAULT_POLICY = RetryPolicy()


def call_with_retry(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None],
    rng: random.Random | None = None,
) -> T:
    """Call ``fn``, retrying ``Transient`` errors under ``policy``.

    Re-raises the last ``Transient`` when attempts or the deadline run out; any
    other exception passes through at once. Idempotent only if ``fn`` is.
    """
    chooser = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = exc.retry_after if isinstance(exc, Transient) else None
        return policy.delay(state.attempt_number, after, chooser)

    retrying = Retrying(
        retry=retry_if_exception_type(Transient),
        stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.deadline),
        wait=wait,
        sleep=sleep,
        reraise=True,
    )
    return retrying(fn)


def step_backoff(attempts: int, retry_after: float | None, *, base: float = 2.0,
                 cap: float = 300.0, rng: random.Random | None = None) -> float:
    """Delay before re-running a step that failed ``attempts`` times in a row.

    Used by the request runner between passes (not inside a step). Jittered in
    [50%, 100%] of the exponential value so that a set's requests spread out.
    """
    chooser = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    value = min(cap, base * (2 ** max(0, attempts - 1)))
    value = chooser.uniform(value / 2, value)
    if retry_after is not None:
        value = max(value, retry_after)
    return value
