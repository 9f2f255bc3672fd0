"""Per provider instance: is its listing failing, since when, and when to ask again.

Every pass needs one ``list_machines`` per instance; without it nothing can be
decided for that instance's requests. When the listing fails (endpoint refusing
connections, credentials refused, throttling), asking again on every pass floods
both the endpoint and the log. :class:`InstanceBackoff` spaces the attempts out
(exponential, jittered, capped, never sooner than a Retry-After) and tells the
caller when the instance's *state* changed, so that it warns once per change
instead of once per attempt. Pure bookkeeping: the clock's readings come in as
arguments and the jitter from an injected ``random.Random``.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from talprov.providers.errors import ProviderError, endpoint_origin, error_kind
from talprov.secrets import redact


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class InstanceTrouble:
    """Why an instance's listing fails, since when, and when it is tried next."""

    instance: str
    kind: str
    endpoint: str | None
    detail: str
    since: float
    next_attempt: float
    attempts: int

    def headline(self) -> str:
        """One line without the changing parts (for warnings and events)."""
        # Drivers' errors name their endpoint themselves now; once is enough.
        named = self.endpoint and endpoint_origin(self.endpoint) in self.detail
        where = f" at {self.endpoint}" if self.endpoint and not named else ""
        return f"provider {self.instance!r} {self.kind}{where}: {self.detail}"

    def describe(self) -> str:
        """The headline with since when and the next attempt (for a request's error)."""
        return (f"{self.headline()}{_SINCE_OPEN}{_iso(self.since)}, "
                f"next attempt {_iso(self.next_attempt)})")


#: Where :meth:`InstanceTrouble.describe` starts what changes at every attempt.
_SINCE_OPEN = " (failing since "


def lasting_part(error: str) -> str:
    """A request's ``error`` without what changes at every attempt: the "(failing
    since ..., next attempt ...)" :meth:`InstanceTrouble.describe` adds, or an
    "(attempt N, retry in ...)" ending, so a reason can be told once. Pure."""
    head, found, _ = error.rpartition(_SINCE_OPEN)
    lasting = head if found and error.endswith(")") else error
    return re.sub(r"\s*\(?(attempt \d+\b[^)]*|retry in [^)]*)\)?$", "", lasting).strip()


class InstanceBackoff:
    """Backoff state of every provider instance whose listing fails.

    The n-th failure in a row waits a random time in [50 %, 100 %] of
    ``min(cap, base * 2**(n-1))``, but at least the error's ``retry_after``.
    Thread-safe: the reconcile loop records failures while the autoscaler's
    gRPC threads and the service's views read it (and may list through it);
    each method is one step under one lock, so a failure is never counted
    twice or lost between reading the last trouble and writing the next.
    """

    def __init__(self, *, base: float = 1.0, cap: float = 60.0,
                 rng: random.Random | None = None) -> None:
        if base <= 0 or cap < base:
            raise ValueError("base must be positive and cap at least base")
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._troubles: dict[str, InstanceTrouble] = {}
        self._lock = threading.Lock()

    def due(self, instance: str, now: float) -> bool:
        """Whether ``instance`` may be asked now (always, when it is not failing)."""
        with self._lock:
            trouble = self._troubles.get(instance)
        # A microsecond of slack: callers round the wait through datetimes.
        return trouble is None or now + 1e-6 >= trouble.next_attempt

    def next_attempt(self, instance: str) -> float | None:
        """When a failing ``instance`` is asked next; None when it is healthy."""
        with self._lock:
            trouble = self._troubles.get(instance)
        return None if trouble is None else trouble.next_attempt

    def trouble(self, instance: str) -> InstanceTrouble | None:
        """The current trouble of ``instance``; None when it is healthy."""
        with self._lock:
            return self._troubles.get(instance)

    def troubles(self) -> dict[str, InstanceTrouble]:
        """Every failing instance's trouble, by instance name (a copy)."""
        with self._lock:
            return dict(self._troubles)

    def failed(self, instance: str, exc: ProviderError, endpoint: str | None,
               now: float) -> tuple[InstanceTrouble, bool]:
        """Record a failed listing; the new trouble and whether the state changed.

        The state changes when the instance was healthy, or the kind of failure
        or its endpoint differs from the last one.
        """
        kind = error_kind(exc) or "failing"
        detail = redact(str(exc))
        with self._lock:
            before = self._troubles.get(instance)
            attempts = 1 if before is None else before.attempts + 1
            delay = self.cap if attempts > 32 else min(self.cap, self.base * 2 ** (attempts - 1))
            delay = self._rng.uniform(delay / 2, delay)
            if exc.retry_after is not None:
                delay = max(delay, exc.retry_after)
            trouble = InstanceTrouble(
                instance=instance, kind=kind, endpoint=endpoint, detail=detail,
                since=now if before is None else before.since, next_attempt=now + delay,
                attempts=attempts,
            )
            self._troubles[instance] = trouble
        changed = before is None or (before.kind, before.endpoint) != (kind, endpoint)
        return trouble, changed

    def succeeded(self, instance: str) -> InstanceTrouble | None:
        """Record a listing that worked; the trouble it ended, if it was failing."""
        with self._lock:
            return self._troubles.pop(instance, None)
