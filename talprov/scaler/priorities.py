"""Pure choice functions: which machines to delete, which domains to create in.

Every delete priority of talprov is in this file, for both kinds of set.

A cluster's machine set chooses victims as Cluster API's MachineSet does: by
priority class first (explicitly marked, then unhealthy, then never
provisioned, then the rest), and within a class from the failure domain that
currently has the most machines, then by the set's delete order.

A request set (``/v1/machine-request-sets``) keeps Omni's MachineRequestSet
order: unallocated members (anything not provisioned: pending, provisioning,
failed) first, then workers before control planes, then the oldest
(:func:`request_set_victims`); before all of them, as in a machine set, the
members marked for deletion (``talprov machine mark-delete``).

Ties are broken by request id so that the same inputs always give the same
victims.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from talprov.scaler.models import DeleteOrder


class Candidate(Protocol):
    @property
    def request_id(self) -> str: ...
    @property
    def domain(self) -> str | None: ...
    @property
    def priority(self) -> int: ...
    @property
    def created_ts(self) -> float: ...


C = TypeVar("C", bound="Candidate")
OrderKey = Callable[[Candidate], tuple[Hashable, str]]

# Priority classes, lowest deleted first.
MARKED = 0
UNHEALTHY = 1
NOT_PROVISIONED = 2
HEALTHY = 3


def order_key(order: DeleteOrder, seed: str) -> OrderKey:
    """The within-class sort key for a delete order; ``random`` hashes ``seed`` and id."""
    if order is DeleteOrder.OLDEST:
        return lambda c: (c.created_ts, c.request_id)
    if order is DeleteOrder.NEWEST:
        return lambda c: (-c.created_ts, c.request_id)
    prefix = seed.encode() + b"/"
    return lambda c: (
        hashlib.blake2b(prefix + c.request_id.encode(), digest_size=8).digest(),
        c.request_id,
    )


def pick_victims(
    candidates: Iterable[C],
    count: int,
    key: Callable[[C], tuple[Hashable, str]],
    domain_counts: dict[str | None, int],
    domain_rank: dict[str | None, int],
) -> list[C]:
    """Up to ``count`` candidates to delete, in deletion order.

    ``domain_counts`` (machines per domain that remain) is updated as victims
    are taken, so consecutive victims rebalance the domains. Pure otherwise.
    """
    if count <= 0:
        return []
    by_class: dict[int, list[C]] = {}
    for candidate in candidates:
        by_class.setdefault(candidate.priority, []).append(candidate)
    chosen: list[C] = []
    for priority in sorted(by_class):
        needed = count - len(chosen)
        if needed <= 0:
            break
        chosen.extend(_balanced(by_class[priority], needed, key, domain_counts, domain_rank))
    return chosen


def _balanced(
    group: list[C],
    needed: int,
    key: Callable[[C], tuple[Hashable, str]],
    domain_counts: dict[str | None, int],
    domain_rank: dict[str | None, int],
) -> list[C]:
    by_domain: dict[str | None, list[C]] = {}
    for candidate in group:
        by_domain.setdefault(candidate.domain, []).append(candidate)
    for members in by_domain.values():
        # Reverse order so that pop() takes the first in deletion order cheaply.
        members.sort(key=key, reverse=True)
    # Most machines first; among equals the domain listed last, mirroring create's
    # "fewest, listed first" (domains no longer in the spec go before all others).
    heap = [
        (
            -domain_counts.get(domain, 0),
            -domain_rank.get(domain, len(domain_rank)),
            "" if domain is None else f"d:{domain}",
            domain,
        )
        for domain in by_domain
    ]
    heapq.heapify(heap)
    chosen: list[C] = []
    while heap and len(chosen) < needed:
        _, rank, label, domain = heapq.heappop(heap)
        members = by_domain[domain]
        chosen.append(members.pop())
        remaining = domain_counts.get(domain, 0) - 1
        domain_counts[domain] = remaining
        if members:
            heapq.heappush(heap, (-remaining, rank, label, domain))
    return chosen


@dataclass(frozen=True, slots=True)
class RequestSetMember:
    """A request set's member as its scale-down sees it (a :class:`Candidate`)."""

    request_id: str
    provisioned: bool
    control_plane: bool
    created_ts: float
    #: Marked for deletion (``talprov machine mark-delete``): goes first.
    marked: bool = False

    @property
    def domain(self) -> str | None:
        return None  # request sets have no failure domains

    @property
    def priority(self) -> int:
        # The mark is the machine sets' first class too (Cluster API's delete
        # annotation); after it Omni puts every unallocated member first, failed
        # or still coming up.
        if self.marked:
            return MARKED
        return HEALTHY if self.provisioned else NOT_PROVISIONED


def _request_set_order(member: RequestSetMember) -> tuple[Hashable, str]:
    return (member.control_plane, member.created_ts), member.request_id


def request_set_victims(members: Iterable[RequestSetMember], count: int) -> list[RequestSetMember]:
    """Up to ``count`` members of a request set to delete, in deletion order.

    Marked for deletion first, then unallocated, then workers before control
    planes, then oldest first; ties by id (Omni's MachineRequestSet order, after
    the mark as a machine set honours it). Pure.
    """
    return pick_victims(members, count, _request_set_order, {}, {})


def pick_domains(
    domains: Sequence[str | None], domain_counts: dict[str | None, int], count: int
) -> list[str | None]:
    """Domains for ``count`` new machines: each to the domain with the fewest, ties by
    listed order. ``domain_counts`` is updated. Pure otherwise."""
    if count <= 0:
        return []
    heap = [(domain_counts.get(domain, 0), rank, domain) for rank, domain in enumerate(domains)]
    heapq.heapify(heap)
    chosen: list[str | None] = []
    for _ in range(count):
        current, rank, domain = heapq.heappop(heap)
        chosen.append(domain)
        domain_counts[domain] = current + 1
        heapq.heappush(heap, (current + 1, rank, domain))
    return chosen
