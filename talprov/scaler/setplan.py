"""Plan one machine set: scale, roll, remediate, spread. Pure.

The phases run in this order, each seeing what the previous ones chose:

1. *scale or roll*: with no outdated machines, create or delete to reach the
   size (victims by priority); with outdated ones, a rolling update bounded by
   maxSurge / maxUnavailable, as a Kubernetes Deployment does with its old and
   new ReplicaSets;
2. *remediate*: replace up-to-date machines that failed, did not provision in
   time or vanished, at most maxInFlight at a time, not at all when more than
   maxUnhealthy of the set is unhealthy (the circuit breaker);
3. *spread*: new machines go to the failure domain with the fewest machines.

Control planes add two rules: one change at a time (nothing while a member is
being created or deleted, surge first), and a healthy member is deleted only
when the remaining healthy members keep etcd quorum of the current size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from talprov.providers.types import Stage
from talprov.scaler.actions import Action, ActionKind, SetStatus
from talprov.scaler.models import ClusterSpec, MachineSetSpec, Role, resolve_int_or_percent
from talprov.scaler.observed import ObservedMachine, SetBackoff
from talprov.scaler.priorities import (
    HEALTHY,
    MARKED,
    NOT_PROVISIONED,
    UNHEALTHY,
    order_key,
    pick_domains,
    pick_victims,
)
from talprov.scaler.templates import desired_request
from talprov.timestamps import rfc3339
from talprov.words import counted

_IN_PROGRESS = (Stage.PENDING, Stage.PROVISIONING)
#: Why a request sealed under another store key is unhealthy: no pass can provision
#: it with this key (the runner sets it aside), and its secrets are gone for us.
UNREADABLE = "stored secrets unreadable with this TALPROV_STORE_KEY"
#: Why a running member sealed under another store key is rolled out.
ROLL_SEALED = "rolling update: sealed under another TALPROV_STORE_KEY"
ROLL_OUTDATED = "rolling update: outdated"


def delete_action(victim: ObservedMachine, reason: str) -> Action:
    """The delete of ``victim``, in the failure domain it was created in (its
    ``talprov.domain`` label; None when its class has none). Pure."""
    return Action(ActionKind.DELETE, victim.set_name, victim.request_id, reason,
                  domain=victim.domain)


@dataclass(frozen=True, slots=True)
class _Candidate:
    machine: ObservedMachine
    request_id: str
    domain: str | None
    priority: int
    created_ts: float


@dataclass(slots=True)
class SetContext:
    """What every set's planning shares: the spec, the clock, the id allocator."""

    spec: ClusterSpec
    now: datetime
    seed: str
    new_id: Callable[[str], str]


@dataclass(slots=True)
class _Observed:
    live: list[ObservedMachine]
    old: list[ObservedMachine]
    unhealthy: dict[str, str]  # request id → why
    unhealthy_machines: list[ObservedMachine]  # the live machines in ``unhealthy``
    healthy: int = 0
    in_progress: int = 0
    provisioning: int = 0
    failed: int = 0
    deleting: int = 0
    unreadable: int = 0
    running_unreadable: int = 0  # of ``unreadable``, counted in ``healthy`` too
    # Of ``unhealthy``, those only sealed under another key: a reseal is the
    # operator's doing, not a health signal, so the circuit breaker leaves them out.
    unhealthy_unreadable: int = 0
    members: int = 0  # control planes that joined etcd (provisioned at some point)


def quorum(members: int) -> int:
    """etcd's quorum for ``members`` members: a strict majority."""
    return members // 2 + 1


def tolerated_failures(members: int) -> int:
    """How many of ``members`` etcd members may fail with quorum kept (the rest
    still a majority): 0 for 1 or 2 members, 1 for 3 or 4, 2 for 5. Pure."""
    return max(members - quorum(members), 0)


def plan_set(
    ctx: SetContext,
    machine_set: MachineSetSpec,
    hashes: dict[str | None, str],
    machines: Sequence[ObservedMachine],
    backoff: SetBackoff | None,
) -> tuple[list[Action], SetStatus]:
    """Actions for one set and its status. Pure; deterministic for equal inputs."""
    seen = _observe(machines, hashes, ctx.now - machine_set.provision_timeout)
    size = machine_set.size
    notes: list[str] = []
    if machine_set.autoscaling is not None:
        notes.append(f"autoscaled ({machine_set.autoscaling.min}..{machine_set.autoscaling.max})")
    backoff_until = None
    if backoff is not None and ctx.now < backoff.until:
        backoff_until = backoff.until
        notes.append(f"backoff after {backoff.cause} until {rfc3339(backoff_until)}")
    if seen.unreadable:
        notes.append(f"{counted(seen.unreadable, 'request')} sealed under another "
                     "TALPROV_STORE_KEY: running ones are rolled out, the others replaced "
                     "as unhealthy")
    status = SetStatus(
        name=machine_set.name, role=machine_set.role.value, desired=size,
        provisioned=seen.healthy - seen.running_unreadable,
        provisioning=seen.provisioning, failed=seen.failed,
        outdated=len(seen.old), deleting=seen.deleting, unhealthy=len(seen.unhealthy),
        unreadable=seen.unreadable, backoff_until=backoff_until, notes=tuple(notes),
    )
    if not seen.old and not seen.unhealthy and len(seen.live) == size:
        return [], status

    planner = _SetPlanner(ctx, machine_set, hashes, seen, notes)
    if seen.old:
        planner.roll()
    else:
        planner.scale()
    breaker = planner.remediate(blocked=backoff_until is not None)
    actions = planner.actions(creates_blocked=backoff_until is not None)
    return actions, replace(status, circuit_breaker_open=breaker, notes=tuple(notes))


def _observe(
    machines: Sequence[ObservedMachine], hashes: dict[str | None, str], deadline: datetime
) -> _Observed:
    # One tight loop: this runs over every machine of every set on each pass.
    seen = _Observed(live=[], old=[], unhealthy={}, unhealthy_machines=[])
    provisioned, failed, deprovisioning, gone = (
        Stage.PROVISIONED, Stage.FAILED, Stage.DEPROVISIONING, Stage.GONE
    )
    live_append, old_append, unhealthy = seen.live.append, seen.old.append, seen.unhealthy
    sick_append = seen.unhealthy_machines.append
    for machine in machines:
        stage = machine.stage
        if stage is gone:
            continue
        if stage is deprovisioning:
            seen.deleting += 1
            continue
        live_append(machine)
        outdated = hashes.get(machine.domain) != machine.template_hash
        if outdated:
            old_append(machine)
        if machine.unreadable:
            _count_unreadable(seen, machine, outdated=outdated)
        elif stage is provisioned:
            seen.members += 1
            if machine.machine_present is False:
                unhealthy[machine.request_id] = "machine deleted out of band"
                sick_append(machine)
            else:
                seen.healthy += 1
        elif stage is failed:
            seen.failed += 1
            seen.members += machine.provisioned_at is not None
            error = machine.error
            unhealthy[machine.request_id] = f"failed: {error}" if error else "failed"
            sick_append(machine)
        else:
            seen.provisioning += 1
            if machine.created_at < deadline:
                unhealthy[machine.request_id] = "not provisioned within provisionTimeout"
                sick_append(machine)
            else:
                seen.in_progress += 1
    return seen


def _count_unreadable(seen: _Observed, machine: ObservedMachine, *, outdated: bool) -> None:
    """Count a request this store key cannot read: shown apart, never as
    provisioned or provisioning, and replaced (deleting it needs no secrets).

    A running one is a working machine (an etcd member, for a control plane): it
    is rolled out as an outdated one is, a replacement first and within maxSurge,
    maxUnavailable and etcd quorum, so it counts as available for that arithmetic.
    Any other will never be provisioned with this key: it is unhealthy and replaced
    within maxInFlight, but not counted by the maxUnhealthy circuit breaker (after
    ``apply --reseal`` the breaker would otherwise stay open for good and hold back
    the remediation of machines that really failed)."""
    seen.unreadable += 1
    if machine.stage is Stage.PROVISIONED and machine.machine_present is not False:
        seen.members += 1
        seen.healthy += 1
        seen.running_unreadable += 1
        if not outdated:
            seen.old.append(machine)
        return
    seen.members += machine.stage is Stage.PROVISIONED or machine.provisioned_at is not None
    seen.unhealthy[machine.request_id] = UNREADABLE
    seen.unhealthy_unreadable += 1
    seen.unhealthy_machines.append(machine)


class _SetPlanner:
    def __init__(
        self,
        ctx: SetContext,
        machine_set: MachineSetSpec,
        hashes: dict[str | None, str],
        seen: _Observed,
        notes: list[str],
    ) -> None:
        self.ctx = ctx
        self.set = machine_set
        self.hashes = hashes
        self.seen = seen
        self.notes = notes
        self.is_cp = machine_set.role is Role.CONTROLPLANE
        self.domains = tuple(hashes)
        self.rank: dict[str | None, int] = {d: i for i, d in enumerate(self.domains)}
        self.counts: dict[str | None, int] = dict.fromkeys(self.domains, 0)
        for machine in seen.live:
            self.counts[machine.domain] = self.counts.get(machine.domain, 0) + 1
        # Where new machines go. During a rolling update only up-to-date machines
        # count: the old ones are all leaving, and counting them would let the
        # last old machine's domain end up short once the update is done.
        self.create_counts = self.counts
        self.victims: list[tuple[ObservedMachine, str]] = []
        self.victim_ids: set[str] = set()
        self.creates: list[str] = []  # reasons of new machines not replacing anything
        self.replacements: list[tuple[ObservedMachine, str]] = []  # (old, reason)
        self.key = order_key(machine_set.delete_order, f"{ctx.seed}/{machine_set.name}")
        # Control planes change one member at a time: wait while one is in flight.
        self.cp_busy = self.is_cp and (seen.in_progress > 0 or seen.deleting > 0)

    # -- phase 1 -------------------------------------------------------------------
    def scale(self) -> None:
        live, size = self.seen.live, self.set.size
        excess = len(live) - size
        if excess > 0:
            reason = f"scale down to {size}"
            if self.is_cp:
                if self._cp_wait("scale down"):
                    return
                excess = 1
            for victim in self._choose(live, excess):
                if self.is_cp and not self._cp_may_delete(victim):
                    return
                self._delete(victim, reason)
        elif excess < 0:
            count = -excess
            if self.is_cp and self.seen.members + self.seen.deleting > 0:
                # Joining an existing etcd cluster: one member at a time.
                if self._cp_wait("scale up"):
                    return
                count = 1
            self.creates.extend([f"scale up to {size}"] * count)

    def roll(self) -> None:
        seen, size = self.seen, self.set.size
        if self.is_cp and self._cp_wait("rolling update"):
            return
        surge, unavailable = self._rolling_bounds()
        old_ids = {m.request_id for m in seen.old}
        new = [m for m in seen.live if m.request_id not in old_ids]
        self.create_counts = dict.fromkeys(self.domains, 0)
        for machine in new:
            self.create_counts[machine.domain] = self.create_counts.get(machine.domain, 0) + 1
        new_unavailable = sum(
            1 for m in new if m.stage is not Stage.PROVISIONED or m.request_id in seen.unhealthy
        )
        # Kubernetes' Deployment: old machines may go while what remains (minus new
        # ones that are not up yet) stays at or above size - maxUnavailable.
        budget = len(seen.live) - (size - unavailable) - new_unavailable
        self._delete_old(budget, seen.healthy - (size - unavailable))
        if self.is_cp and self.victims:
            return  # one change at a time: the delete is this pass's change
        remaining = len(seen.live) - len(self.victims)
        count = max(0, min(size - len(new), size + surge - remaining))
        if self.is_cp:
            count = min(count, 1)
        # Pair creates with this pass's deletions so the output reads "replace".
        surge_reason = (ROLL_SEALED if all(m.unreadable for m in seen.old)
                        else ROLL_OUTDATED) + " (surge)"
        for index in range(count):
            if index < len(self.victims):
                self.replacements.append(self.victims[index])
            else:
                self.creates.append(surge_reason)
        paired = min(count, len(self.victims))
        self.victims = self.victims[paired:]

    def _delete_old(self, budget: int, healthy_spare: int) -> None:
        """Delete up to ``budget`` old machines, healthy ones only while ``healthy_spare``."""
        seen = self.seen
        # Walk every old machine in victim order: a healthy one that may not go yet
        # must not hide an unhealthy one behind it from the budget.
        for victim in self._choose(seen.old, len(seen.old) if budget > 0 else 0):
            if len(self.victims) >= budget:
                return
            if victim.request_id not in seen.unhealthy and victim.stage is Stage.PROVISIONED:
                if healthy_spare <= 0 or (self.is_cp and not self._cp_may_delete(victim)):
                    continue
                healthy_spare -= 1
            self._delete(victim, ROLL_SEALED if victim.unreadable else ROLL_OUTDATED)
            if self.is_cp:
                return

    def _rolling_bounds(self) -> tuple[int, int]:
        update, size = self.set.update, self.set.size
        surge = resolve_int_or_percent(update.max_surge, size, round_up=True)
        if self.is_cp:
            return surge, 1 - surge
        unavailable = resolve_int_or_percent(update.max_unavailable, size, round_up=False)
        if surge == 0 and unavailable == 0:
            surge = 1  # both rounded to 0: still make progress, as Kubernetes does
        return surge, unavailable

    # -- phase 2 -------------------------------------------------------------------
    def remediate(self, *, blocked: bool) -> bool:
        """Plan replacements of unhealthy machines; return whether the breaker is open."""
        seen = self.seen
        taken = self.victim_ids | {old.request_id for old, _ in self.replacements}
        old_ids = {m.request_id for m in seen.old} if seen.old else set()
        # The unhealthy ones directly, not a scan of the set: sorted below anyway.
        todo = [m for m in seen.unhealthy_machines
                if m.request_id not in taken and m.request_id not in old_ids]
        if not todo:
            return False
        limit = resolve_int_or_percent(self.set.remediation.max_unhealthy, len(seen.live),
                                       round_up=True)
        sick = len(seen.unhealthy) - seen.unhealthy_unreadable
        if sick > limit:
            self.notes.append(
                f"circuit breaker open: {sick} of {counted(len(seen.live), 'machine')} "
                f"unhealthy (maxUnhealthy {self.set.remediation.max_unhealthy}); "
                "not remediating"
            )
            return True
        if blocked:
            self.notes.append("remediation waits for the backoff to end")
            return False
        max_in_flight = self.set.remediation.max_in_flight
        if self.is_cp:
            if self.victims or self.creates or self.replacements:
                return False
            max_in_flight = min(max_in_flight, 1)
        # A replacement is in flight until it is provisioned and its old machine gone;
        # the observed state does not link the two, so count every machine being
        # created or deleted in the set. Conservative: never more than the limit.
        allowed = max_in_flight - seen.in_progress - seen.deleting
        if allowed <= 0:
            self.notes.append(f"remediation waits: maxInFlight {max_in_flight} reached")
            return False
        todo.sort(key=lambda m: (m.created_at, m.request_id))
        for machine in todo[:allowed]:
            why = seen.unhealthy[machine.request_id]
            self.replacements.append((machine, f"remediation: {why}"))
            self.counts[machine.domain] = self.counts.get(machine.domain, 0) - 1
            if self.create_counts is not self.counts:
                counts = self.create_counts
                counts[machine.domain] = counts.get(machine.domain, 0) - 1
        return False

    # -- phase 3 -------------------------------------------------------------------
    def actions(self, *, creates_blocked: bool) -> list[Action]:
        name = self.set.name
        out = [delete_action(m, reason) for m, reason in self.victims]
        if creates_blocked:
            if self.creates or self.replacements:
                self.notes.append(f"{len(self.creates) + len(self.replacements)} "
                                  "creation(s) held back by the backoff")
            # A replacement that cannot create still must not delete its machine.
            return out
        wanted = len(self.replacements) + len(self.creates)
        domains = pick_domains(self.domains, self.create_counts, wanted)
        reasons: list[tuple[ObservedMachine | None, str]] = list(self.replacements)
        reasons += [(None, reason) for reason in self.creates]
        for (old, reason), domain in zip(reasons, domains, strict=True):
            request_id = self.ctx.new_id(name)
            request = desired_request(self.ctx.spec, name, request_id, domain)
            out.append(Action(
                ActionKind.CREATE if old is None else ActionKind.REPLACE,
                name, request_id, reason, domain=domain, create=request,
                template_hash=self.hashes[domain],
                replaces=None if old is None else old.request_id,
            ))
        return out

    # -- helpers -------------------------------------------------------------------
    def _choose(self, machines: Sequence[ObservedMachine], count: int) -> list[ObservedMachine]:
        if count <= 0:
            return []
        unhealthy = self.seen.unhealthy
        candidates = [
            _Candidate(
                m, m.request_id, m.domain,
                MARKED if m.marked_for_deletion else
                UNHEALTHY if m.request_id in unhealthy else
                NOT_PROVISIONED if m.stage in _IN_PROGRESS else HEALTHY,
                m.created_at.timestamp(),
            )
            for m in machines
            if m.request_id not in self.victim_ids
        ]
        # Work on a copy: counts change only for victims actually deleted.
        counts = dict(self.counts)
        return [c.machine for c in pick_victims(candidates, count, self.key, counts, self.rank)]

    def _delete(self, machine: ObservedMachine, reason: str) -> None:
        self.victims.append((machine, reason))
        self.victim_ids.add(machine.request_id)
        self.counts[machine.domain] = self.counts.get(machine.domain, 0) - 1

    def _cp_wait(self, what: str) -> bool:
        if self.cp_busy:
            self.notes.append(f"{what} waits: a control-plane change is in progress")
        return self.cp_busy

    def _cp_may_delete(self, victim: ObservedMachine) -> bool:
        """Whether deleting ``victim`` keeps etcd quorum (unhealthy victims always may)."""
        seen = self.seen
        if victim.request_id in seen.unhealthy or victim.stage is not Stage.PROVISIONED:
            return True
        members = seen.members + seen.deleting
        remaining = seen.healthy - 1
        # Below 3 members there is no fault tolerance to keep, and insisting on
        # quorum would make a 1-node control plane impossible to replace.
        if self.set.size < 3 or remaining >= quorum(members):
            return True
        self.notes.append(
            f"etcd quorum guard: deleting {victim.request_id} would leave {remaining} healthy "
            f"of {members} members (quorum {quorum(members)})"
        )
        return False
