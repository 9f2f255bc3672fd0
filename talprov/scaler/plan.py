"""``plan()``: a pure function of (spec, observed machines, time) → actions.

Nothing here reads the store, calls a provider or looks at the clock: the apply
loop gathers the inputs, calls :func:`plan`, and carries out the actions. Given
equal inputs (and a deterministic name generator, the default), the plan is
equal, so ``talprov plan`` previews exactly what a pass would do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from talprov.providers.types import REQUEST_ID_PATTERN, Stage
from talprov.scaler.actions import Action, ActionKind, OrphanReport, Plan, SetStatus
from talprov.scaler.models import CONTROL_PLANE_SET, ClusterSpec
from talprov.scaler.observed import ObservedMachine, OrphanMachine, SetBackoff
from talprov.scaler.setplan import SetContext, delete_action, plan_set
from talprov.scaler.templates import NameGenerator, id_prefix, seeded_names, template_hashes

ORPHAN_GRACE = timedelta(minutes=30)
# At most this share of the cluster's machines is deleted as orphans per pass
# (at least one), so that a lost store or a listing bug cannot wipe a cluster.
ORPHAN_SHARE = 0.10
_ID = re.compile(REQUEST_ID_PATTERN)
_MAX_NAME_ATTEMPTS = 100


def plan(
    spec: ClusterSpec,
    observed: Sequence[ObservedMachine],
    now: datetime,
    backoff: Mapping[str, SetBackoff] | None = None,
    name_gen: NameGenerator | None = None,
    *,
    orphans: Sequence[OrphanMachine] = (),
    orphan_grace: timedelta = ORPHAN_GRACE,
    seed: str | None = None,
) -> Plan:
    """What to do next to bring the cluster's machines to ``spec``.

    ``observed`` holds the cluster's requests (any stage; ``gone`` ones are
    ignored); ``backoff`` the sets' current backoff; ``name_gen`` makes request
    ids (default: deterministic from ``seed`` and ``now``); ``seed`` also orders
    ``deleteOrder: random`` (default: the cluster name).

    Raises RuntimeError only when ``name_gen`` keeps returning taken or invalid
    ids. Pure: reads nothing and changes nothing.
    """
    seed = spec.name if seed is None else seed
    generator = name_gen or seeded_names(f"{seed}/{now.isoformat()}")
    by_set: dict[str, list[ObservedMachine]] = {}
    for machine in observed:
        members = by_set.get(machine.set_name)
        if members is None:
            by_set[machine.set_name] = [machine]
        else:
            members.append(machine)
    ctx = SetContext(spec=spec, now=now, seed=seed,
                     new_id=_IdAllocator(spec, observed, generator))
    hashes = template_hashes(spec)
    backoff = backoff or {}
    actions: list[Action] = []
    statuses: list[SetStatus] = []
    for set_name, machine_set in spec.sets.items():
        set_hashes = {domain: hashes[(set_name, domain)] for domain in spec.domains(set_name)}
        set_actions, status = plan_set(
            ctx, machine_set, set_hashes, by_set.get(set_name, ()), backoff.get(set_name)
        )
        actions.extend(set_actions)
        statuses.append(status)
    for set_name in sorted(set(by_set) - set(spec.sets)):
        set_actions, status = _removed_set(set_name, by_set[set_name])
        actions.extend(set_actions)
        statuses.append(status)
    orphan_actions, reports = _orphans(orphans, len(observed), now, orphan_grace)
    actions.extend(orphan_actions)
    return Plan(cluster=spec.name, actions=tuple(actions), sets=tuple(statuses),
                orphans=tuple(reports))


def plan_destroy(
    cluster: str, observed: Sequence[ObservedMachine], orphans: Sequence[OrphanMachine] = (),
    *, spec: ClusterSpec | None = None,
) -> Plan:
    """Delete every machine of the cluster, orphans included (``talprov destroy``). Pure.

    Its sets are what is left of the cluster, each wanting none: every set of
    ``spec`` (the recorded one), and any other set its machines name."""
    actions = [
        delete_action(m, "cluster destroyed")
        for m in sorted(observed, key=lambda m: (m.set_name, m.request_id))
        if m.stage not in (Stage.DEPROVISIONING, Stage.GONE)
    ]
    actions += [_orphan_delete(o, "cluster destroyed") for o in orphans]
    by_set: dict[str, list[ObservedMachine]] = {name: [] for name in
                                                 (spec.sets if spec is not None else ())}
    for machine in observed:
        by_set.setdefault(machine.set_name, []).append(machine)
    roles = {} if spec is None else {n: s.role.value for n, s in spec.sets.items()}
    sets = tuple(_leaving_status(name, roles.get(name, "unknown"), machines)
                 for name, machines in by_set.items())
    return Plan(cluster=cluster, actions=tuple(actions), sets=sets)


def _leaving_status(set_name: str, role: str, machines: Sequence[ObservedMachine], *,
                    outdated: bool = False, notes: tuple[str, ...] = ()) -> SetStatus:
    """The status of a set whose machines all go (desired 0): what is left of it.
    ``outdated``: its live machines count as outdated too (a set dropped from the
    spec; a destroyed cluster's are simply being deleted). Pure."""
    live = [m for m in machines if m.stage not in (Stage.DEPROVISIONING, Stage.GONE)]
    readable = [m for m in live if not m.unreadable]
    return SetStatus(
        name=set_name, role=role, desired=0,
        provisioned=sum(1 for m in readable if m.stage is Stage.PROVISIONED),
        provisioning=sum(1 for m in readable
                         if m.stage in (Stage.PENDING, Stage.PROVISIONING)),
        failed=sum(1 for m in readable if m.stage is Stage.FAILED),
        outdated=len(live) if outdated else 0,
        deleting=sum(1 for m in machines if m.stage is Stage.DEPROVISIONING),
        unhealthy=0, unreadable=len(live) - len(readable), notes=notes,
    )


class _IdAllocator:
    """Fresh request ids that no observed or already planned request uses."""

    def __init__(
        self, spec: ClusterSpec, observed: Sequence[ObservedMachine], generator: NameGenerator
    ) -> None:
        self._spec = spec
        self._observed = observed
        self._generator = generator
        self._taken: set[str] | None = None  # built on first use: most passes create nothing

    def __call__(self, set_name: str) -> str:
        if self._taken is None:
            self._taken = {m.request_id for m in self._observed}
        prefix = id_prefix(self._spec, set_name)
        for _ in range(_MAX_NAME_ATTEMPTS):
            candidate = self._generator(prefix)
            if candidate not in self._taken and len(candidate) <= 63 and _ID.fullmatch(candidate):
                self._taken.add(candidate)
                return candidate
        raise RuntimeError(f"name generator gave no free, valid request id for {prefix!r}")


def _removed_set(
    set_name: str, machines: list[ObservedMachine]
) -> tuple[list[Action], SetStatus]:
    live = [m for m in machines if m.stage not in (Stage.DEPROVISIONING, Stage.GONE)]
    notes: list[str] = []
    if set_name == CONTROL_PLANE_SET:
        # Dropping the ControlPlane document must not tear down etcd; destroy does that.
        actions: list[Action] = []
        if live:
            notes.append("the spec has no ControlPlane: its machines are kept (use destroy)")
    else:
        actions = [
            delete_action(m, "set is no longer in the spec")
            for m in sorted(live, key=lambda m: m.request_id)
        ]
    return actions, _leaving_status(set_name, "unknown", machines, outdated=True,
                                    notes=tuple(notes))


def _orphans(
    orphans: Sequence[OrphanMachine], known: int, now: datetime, grace: timedelta
) -> tuple[list[Action], list[OrphanReport]]:
    if not orphans:
        return [], []
    limit = max(1, int((known + len(orphans)) * ORPHAN_SHARE))
    actions: list[Action] = []
    reports: list[OrphanReport] = []
    for orphan in sorted(orphans, key=lambda o: (o.seen_since, o.provider, o.infra_id)):
        if now - orphan.seen_since < grace:
            decision = "wait: grace period"
        elif len(actions) >= limit:
            decision = f"hold: at most {limit} orphan deletions per pass"
        else:
            decision = "delete"
            actions.append(_orphan_delete(orphan, f"orphan: no request for {grace} or longer"))
        reports.append(OrphanReport(orphan.infra_id, orphan.provider, decision, orphan.request_id))
    return actions, reports


def _orphan_delete(orphan: OrphanMachine, reason: str) -> Action:
    return Action(
        ActionKind.DELETE, orphan.set_name or "", orphan.request_id or orphan.infra_id, reason,
        domain=orphan.domain, infra_id=orphan.infra_id, provider=orphan.provider,
    )
