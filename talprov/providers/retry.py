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
    stop_any,
)
from tenacity.stop import stop_base

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
        server asked for with Retry-After, and never above ``maximum`` (a longer
        Retry-After is not waited inside a call: see :func:`call_with_retry`).
        """
        ceiling = min(self.maximum, self.initial * (2 ** (attempt - 1)))
        wait = rng.uniform(0, ceiling)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.maximum)

    def asks_too_long(self, exc: BaseException | None) -> bool:
        """Whether ``exc`` asks for a wait above ``maximum`` (its Retry-After)."""
        return (isinstance(exc, Transient) and exc.retry_after is not None
                and exc.retry_after > self.maximum)


DEFAULT_POLICY = RetryPolicy()


class _AsksTooLong(stop_base):
    """Stops when the last error asks for a wait above the policy's maximum."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        return self.policy.asks_too_long(outcome.exception() if outcome else None)


def call_with_retry(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None],
    rng: random.Random | None = None,
) -> T:
    """Call ``fn``, retrying ``Transient`` errors under ``policy``.

    Re-raises the last ``Transient`` when attempts or the deadline run out, or at
    once when it asks (Retry-After) for more than ``policy.maximum``: sleeping that
    long here would hold a worker thread, the step's backoff waits it instead. Any
    other exception passes through at once. Idempotent only if ``fn`` is.
    """
    # Most calls succeed at once: they are made before any retry machinery is
    # built (a Retrying and a seeded Random cost ~27 us of CPU per call). A
    # first failure is handed to tenacity as its first attempt, so the policy
    # counts it as before.
    try:
        return fn()
    except Transient as exc:
        first: list[Transient] = [exc]

    def again() -> T:
        if first:
            raise first.pop()
        return fn()

    chooser = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = exc.retry_after if isinstance(exc, Transient) else None
        return policy.delay(state.attempt_number, after, chooser)

    retrying = Retrying(
        retry=retry_if_exception_type(Transient),
        stop=stop_any(stop_after_attempt(policy.attempts), stop_after_delay(policy.deadline),
                      _AsksTooLong(policy)),
        wait=wait,
        sleep=sleep,
        reraise=True,
    )
    return retrying(again)


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
