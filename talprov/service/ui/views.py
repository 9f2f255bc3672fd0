"""What each status page shows, gathered from the store, the providers and the scaler.

Each function takes the service's context and the signed-in principal and
returns plain data for a template; nothing here renders HTML. Everything is
limited to the principal's providers: a request, a provider instance or a
cluster outside them is not shown at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from talprov.providers.labels import LABEL_CLUSTER, LABEL_SET
from talprov.providers.types import Stage
from talprov.scaler.actions import Plan
from talprov.scaler.apply import Scaler
from talprov.scaler.clusterstate import UnreadableCluster
from talprov.service.auth import Principal
from talprov.service.context import ServiceContext
from talprov.service.ui.timeline import StepLine, build_timeline
from talprov.store.browse import LeaseHolder, ProviderErrors
from talprov.store.records import Event, RequestRecord

log = logging.getLogger(__name__)

#: The stages an overview counts, in the order of a request's life.
STAGES = tuple(Stage)


@dataclass(frozen=True)
class ProviderBackoff:
    """An instance the reconciler is holding back after failures: since when, until when."""

    failures: int
    since: datetime
    until: datetime
    reason: str


def provider_backoff(ctx: ServiceContext, instance: str) -> ProviderBackoff | None:
    """The local reconciler's backoff for ``instance`` while its listing fails, or None.

    Only this process's reconcile loop is asked (a separate ``talprov reconcile``
    keeps its own); None when this service runs no workers or the instance
    answers. Never raises.
    """
    if ctx.loop is None:
        return None
    trouble = ctx.loop.instance_troubles().get(instance)
    if trouble is None:
        return None
    return ProviderBackoff(
        failures=trouble.attempts,
        since=datetime.fromtimestamp(trouble.since, UTC),
        until=datetime.fromtimestamp(trouble.next_attempt, UTC),
        reason=trouble.headline(),
    )


@dataclass
class ProviderCard:
    name: str
    type_name: str
    health_ok: bool
    health_message: str
    counts: dict[str, int]
    total: int
    errors: ProviderErrors | None
    backoff: ProviderBackoff | None


@dataclass
class Overview:
    providers: list[ProviderCard]
    worker_id: str | None
    worker_running: bool
    leases: list[LeaseHolder]
    cluster_leases: list[tuple[str, str, datetime]]
    watermark: datetime | None


def scope(principal: Principal) -> tuple[str, ...] | None:
    """The provider instances a query is limited to; None for every instance."""
    return None if principal.all_providers else principal.providers


def visible_providers(ctx: ServiceContext, principal: Principal) -> list[str]:
    return [name for name in sorted(ctx.handles) if principal.allows_provider(name)]


def overview(ctx: ServiceContext, principal: Principal) -> Overview:
    """Health, last error, backoff and stage counts of every visible instance, plus
    the workers and their leases. Store reads are aggregates: their cost does not
    grow with what is rendered."""
    watermark = ctx.store.newest_change(providers=scope(principal))
    counts = ctx.store.count_requests()
    errors = ctx.store.provider_errors()
    cards = []
    for name in visible_providers(ctx, principal):
        health = ctx.health(name)
        by_stage = {stage.value: counts.get((name, stage), 0) for stage in STAGES}
        cards.append(ProviderCard(
            name=name, type_name=ctx.handles[name].provider.type_name,
            health_ok=health.ok, health_message=health.message, counts=by_stage,
            total=sum(n for s, n in by_stage.items() if s != Stage.GONE.value),
            errors=errors.get(name), backoff=provider_backoff(ctx, name),
        ))
    loop = ctx.loop
    return Overview(
        providers=cards,
        worker_id=loop.worker_id if loop is not None else None,
        worker_running=loop is not None and loop.running,
        leases=ctx.store.lease_holders(providers=scope(principal)),
        cluster_leases=[c for c in ctx.store.cluster_lease_holders()
                        if cluster_visible(ctx, principal, c[0])],
        watermark=watermark,
    )


# -- clusters ------------------------------------------------------------------------


@dataclass
class ClusterView:
    name: str
    destroying: bool
    providers: list[str]
    plan: Plan | None
    problem: str | None
    events: list[tuple[str, datetime, str]] = field(default_factory=list)


class PlanCache:
    """The scaler's current plan per cluster, reused for ``ttl`` seconds.

    A plan lists the cluster's machines at its providers (to find orphans), so
    computing one costs provider API calls; every open cluster page asks again on
    each live refresh. Sharing one answer for a few seconds bounds those calls by
    the number of clusters, not of viewers. One per app (``app.state.ui_plans``).
    Thread-safe.
    """

    def __init__(self, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._plans: dict[str, tuple[float, Plan | None]] = {}
        self._lock = threading.Lock()

    def get(self, ctx: ServiceContext, name: str) -> Plan | None:
        """The plan of cluster ``name`` (None when it is not recorded); raises what
        ``Scaler.preview`` raises."""
        now = self._clock()
        with self._lock:
            cached = self._plans.get(name)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        scaler = Scaler(ctx.store, ctx.handles, ctx.runtime)
        state = scaler.state(name)
        result = None if state is None else scaler.preview(state)
        with self._lock:
            self._plans = {k: v for k, v in self._plans.items() if now - v[0] < self.ttl}
            self._plans[name] = (now, result)
        return result



def _cluster_providers(spec_body: dict[str, Any]) -> list[str]:
    classes = spec_body.get("spec", {}).get("machine_classes", {})
    return sorted({str(c.get("provider")) for c in classes.values() if isinstance(c, dict)})


def cluster_visible(ctx: ServiceContext, principal: Principal, name: str) -> bool:
    """Whether every provider instance the cluster uses is in the principal's scope."""
    body = ctx.store.get_cluster(name)
    if body is None:
        return False
    return all(principal.allows_provider(p) for p in _cluster_providers(body))


def cluster(ctx: ServiceContext, principal: Principal, name: str, *, plans: PlanCache,
            with_events: bool) -> ClusterView | None:
    """A cluster's sets and the scaler's current plan (``talprov plan``); None when
    unknown or outside the principal's scope. The plan lists the cluster's machines
    at its providers (orphans), as ``talprov plan`` does; a provider that cannot
    be reached is left out of that, with a warning in the log."""
    body = ctx.store.get_cluster(name)
    if body is None:
        return None
    providers = _cluster_providers(body)
    if not all(principal.allows_provider(p) for p in providers):
        return None
    view = ClusterView(name=name, destroying=bool(body.get("destroying")),
                       providers=providers, plan=None, problem=None)
    try:
        view.plan = plans.get(ctx, name)
    except UnreadableCluster as exc:  # the run loop warns about it once
        view.problem = f"set aside: its secrets cannot be read ({exc.reason})"
    except Exception as exc:  # one broken cluster must not take the page down
        log.warning("status page: cannot plan cluster %s: %s", name, type(exc).__name__)
        view.problem = f"cannot compute the plan ({type(exc).__name__}); see the server log"
    if with_events:
        view.events = ctx.store.recent_events({LABEL_CLUSTER: name}, limit=20)
    return view


def clusters(ctx: ServiceContext, principal: Principal, plans: PlanCache
             ) -> list[ClusterView]:
    found = []
    for name in ctx.store.list_clusters():
        view = cluster(ctx, principal, name, plans=plans, with_events=False)
        if view is not None:
            found.append(view)
    return found


# -- one request ---------------------------------------------------------------------

#: Events a request's page shows at most (the API pages through the rest).
EVENTS_SHOWN = 1000


@dataclass
class RequestDetail:
    record: RequestRecord
    events: list[Event]
    steps: list[StepLine]
    cluster: str | None
    machine_set: str | None
    lease: tuple[str, datetime] | None
    now: datetime
    events_shown: int = 0


def step_names(ctx: ServiceContext, provider: str) -> Sequence[str]:
    handle = ctx.handles.get(provider)
    return [] if handle is None else [step.name for step in handle.provider.steps()]


def request_detail(ctx: ServiceContext, principal: Principal, request_id: str
                   ) -> RequestDetail | None:
    """A request's timeline, machine and events; None when unknown or out of scope
    (the two look the same, as in the API)."""
    record = ctx.store.get_request(request_id)
    if record is None or not principal.allows_provider(record.request.provider):
        return None
    # Bounded like every list: a request retrying for weeks has a long log.
    events = ctx.store.events(request_id, limit=EVENTS_SHOWN)
    steps = build_timeline(
        step_names(ctx, record.request.provider), [(e.at, e.message) for e in events],
        stage=record.stage, current_step=record.step_name,
        step_started_at=record.step_started_at,
    )
    labels = record.request.labels
    return RequestDetail(
        record=record, events=events, steps=steps, cluster=labels.get(LABEL_CLUSTER),
        machine_set=labels.get(LABEL_SET), lease=ctx.store.lease_holder(request_id),
        now=datetime.now(UTC), events_shown=EVENTS_SHOWN,
    )
