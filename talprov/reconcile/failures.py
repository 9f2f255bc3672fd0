"""What a failed step attempt does to a request: the stored error text, whether the
request fails now (a permanent error, the attempts spent) or waits, and for how long.

The policy (:class:`StepPolicy`) and the error kinds that the scaler and the
autoscaler read back from a stored error (:func:`resource_error_kind`) live
here, apart from the runner that calls :func:`record_failure`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from talprov.providers.errors import (
    CapacityError,
    EndpointUnreachable,
    InstanceUnavailable,
    ProviderError,
    QuotaExceeded,
    Transient,
)
from talprov.providers.retry import step_backoff
from talprov.providers.types import Stage
from talprov.reconcile.work import Work
from talprov.secrets import redact
from talprov.words import counted

log = logging.getLogger("talprov.reconcile.runner")  # the name operators filter on


#: What a stored error says after its step name when the platform had no room
#: (:class:`CapacityError`) or an account limit was hit (:class:`QuotaExceeded`).
OUT_OF_CAPACITY = "out of capacity"
QUOTA_EXCEEDED = "quota exceeded"


def resource_error_kind(error: str | None) -> str | None:
    """:data:`OUT_OF_CAPACITY` or :data:`QUOTA_EXCEEDED` when a request's stored
    ``error`` is of that kind, else None. Pure."""
    if not error:
        return None
    _step, _sep, text = error.partition(": ")
    for kind in (OUT_OF_CAPACITY, QUOTA_EXCEEDED):
        if text.startswith(f"{kind}: "):
            return kind
    return None


@dataclass(frozen=True)
class StepPolicy:
    """When a failing step gives up."""

    #: Consecutive transient failures of one step before the request fails.
    max_attempts: int = 8
    #: Consecutive capacity/quota failures before the request fails (the scaler
    #: then backs off the whole set instead of hammering a full zone).
    capacity_attempts: int = 3
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    #: The longest wait between attempts of a deletion that failed transiently
    #: (a 5xx, a dropped connection): deletions never give up, and one whose
    #: cloud answers again must not sit out minutes of backoff first. A
    #: permanent refusal (credentials, privileges) waits up to ``backoff_cap``.
    deprovision_backoff_cap: float = 30.0
    #: The longest wait between attempts that failed with ``InstanceUnavailable``.
    unavailable_backoff_cap: float = 15.0


def outage_attempt(exc: BaseException, instance_failing: bool) -> bool:
    """Whether a failed attempt is the provider instance's outage's rather than the
    step's: an ``InstanceUnavailable`` or ``EndpointUnreachable`` always; any other
    ``Transient`` (a read timeout, a 5xx, throttling) while the instance is failing
    as a whole (its listing fails: ``instance_failing``). A read timeout from an
    instance that lists fine may be this call's alone and counts. Pure."""
    if isinstance(exc, InstanceUnavailable | EndpointUnreachable):
        return True
    return instance_failing and isinstance(exc, Transient)


def record_failure(work: Work, step_name: str, exc: BaseException, policy: StepPolicy, *,
                   deleting: bool = False, instance_failing: bool = False) -> None:
    """Record a failed attempt in ``work``: its error and when to try again, or
    (not ``deleting``) the request failed when it is permanent or the attempts
    ran out. A deletion is never failed: it retries, transient errors after
    at most ``deprovision_backoff_cap`` (or the error's ``retry_after``).

    An attempt of the instance's outage (:func:`outage_attempt`; give
    ``instance_failing`` when its listing fails) is held back: it neither counts
    towards ``max_attempts`` nor spends the step's deadline, and it is retried
    within ``unavailable_backoff_cap``."""
    if isinstance(exc, ProviderError):
        message = redact(str(exc))
        permanent = exc.permanent
        retry_after = exc.retry_after
    else:
        # An SDK error the driver did not translate, or a bug. Retried like a
        # transient error, but its type is kept visible so it gets translated.
        message = redact(f"{type(exc).__name__}: {exc}")
        permanent = False
        retry_after = None
        about = {"request_id": work.record.request.id, "provider": work.owner.instance,
                 "step": step_name}
        log.warning("step %s of %s raised %s", step_name, work.record.request.id, message,
                    extra=about)
        log.debug("traceback", exc_info=exc, extra=about)
    limit = policy.max_attempts
    if isinstance(exc, (CapacityError, QuotaExceeded)):
        limit = policy.capacity_attempts
        # Kept in the stored text: the autoscaler service reports these requests
        # in the out-of-resources class (see resource_error_kind).
        kind = OUT_OF_CAPACITY if isinstance(exc, CapacityError) else QUOTA_EXCEEDED
        message = f"{kind}: {message}"
    work.error = f"{step_name}: {message}"
    # An instance-wide error (no credentials, an endpoint that does not answer)
    # says nothing about the request: it waits for the instance however many
    # attempts that takes, and its attempts are not counted, so that the step's
    # own errors get all theirs once the instance is back.
    held = not permanent and outage_attempt(exc, instance_failing)
    if not held:
        work.attempts += 1
    spent = work.attempts >= limit and not held
    if not deleting and (permanent or spent):
        work.stage = Stage.FAILED
        why = "permanent error" if permanent else counted(work.attempts, "attempt")
        work.events.append(f"failed ({why}): {work.error}")
        work.next_attempt_at = None
        return
    cap = policy.backoff_cap
    if deleting and not permanent:
        cap = min(cap, policy.deprovision_backoff_cap)
    if held:
        # Looked at again soon once the instance is back (fixed by its operator,
        # its endpoint answering again), not after minutes of backoff; the
        # instance's own backoff spaces out the passes meanwhile.
        cap = min(cap, policy.unavailable_backoff_cap)
        # The step's deadline is for a machine that never comes up; time the
        # instance could not be reached is not the step's: it counts from the
        # first attempt that gets through.
        work.step_started_at = None
    delay = step_backoff(work.attempts + held, retry_after, base=policy.backoff_base, cap=cap)
    work.next_attempt_at = work.now() + timedelta(seconds=delay)
    what = "held back (the instance is out)" if held else f"attempt {work.attempts} failed"
    work.events.append(f"{what}, retry in {delay:.0f}s: {work.error}")
