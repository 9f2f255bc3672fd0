"""What the planner is told about the world: observed requests, orphans, backoff.

These are the scaler's own plain inputs, independent of the store: the apply loop
builds them from request records and provider listings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from talprov.providers.types import Stage

BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class ObservedMachine:
    """One request of the cluster as last recorded, with what its provider reports.

    ``machine_present`` is whether the provider's listing shows the machine
    (None: unknown, e.g. the listing failed); ``domain`` the failure domain it was
    created in (None when its class has none); ``template_hash`` the hash of the
    template it was created from; ``unreadable`` whether its stored secrets cannot be
    read with this store key (sealed under another TALPROV_STORE_KEY, e.g. before
    ``apply --reseal``): no pass can provision it, so it is never a healthy member.
    """

    request_id: str
    set_name: str
    stage: Stage
    template_hash: str
    created_at: datetime
    marked_for_deletion: bool = False
    domain: str | None = None
    error: str | None = None
    provisioned_at: datetime | None = None
    machine_present: bool | None = None
    unreadable: bool = False


@dataclass(frozen=True, slots=True)
class OrphanMachine:
    """A machine tagged for this cluster for which no request exists.

    ``seen_since`` is when it was first seen without a request (or its creation
    time); it is deleted only ``orphan_grace`` after that.
    """

    infra_id: str
    provider: str
    seen_since: datetime
    request_id: str | None = None
    set_name: str | None = None
    #: Its ``talprov.domain`` label, when it has one.
    domain: str | None = None


#: The cause of a backoff started by a failed create that was not out of capacity
#: or quota (and of one stored by a version that did not record causes).
FAILED_CREATES = "failed creates"


@dataclass(frozen=True, slots=True)
class SetBackoff:
    """A set's creation backoff after failed creates: no creates before ``until``.

    ``cause`` names the latest failure's kind for people ("out of capacity",
    "quota exceeded", :data:`FAILED_CREATES`).
    """

    failures: int
    until: datetime
    cause: str = FAILED_CREATES


def next_backoff(
    previous: SetBackoff | None,
    now: datetime,
    *,
    cause: str = FAILED_CREATES,
    base: timedelta = BACKOFF_BASE,
    cap: timedelta = BACKOFF_CAP,
) -> SetBackoff:
    """The backoff after one more failure of ``cause``: base·2^(n-1), capped. Pure."""
    failures = 1 if previous is None else previous.failures + 1
    # Cap the exponent too, so that a long outage cannot overflow timedelta.
    delay = min(cap, base * (2 ** min(failures - 1, 30)))
    return SetBackoff(failures=failures, until=now + delay, cause=cause)
