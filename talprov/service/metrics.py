"""Prometheus metrics with ``prometheus_client``: one registry per app.

Stage counts and queue depth are read from the store at scrape time by a
custom collector, so every replica reports the same, store-wide numbers. Step
durations and provider API errors are measured in this process by wrapping each
provider instance (:class:`InstrumentedProvider`): every replica reports the
work it did itself. The registry also carries prometheus_client's process,
platform and garbage-collector metrics. Labels carry instance, step, stage and
error class names only, never request bodies, so no secret can reach a metric.

:data:`FAMILIES` describes talprov's own metrics; they are built from it, and
docs/service.md's table is generated from it (a test compares the two).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from talprov.providers.errors import ProviderError
from talprov.providers.protocol import (
    BatchStepFn,
    Leftover,
    Provider,
    RemovesSecondMachines,
    Step,
    StepContext,
    StepFn,
    SweepsLeftovers,
)
from talprov.providers.types import Machine, Owner, Stage, StepResult
from talprov.store.store import Store

STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                120.0, 300.0)
_DUE_STAGES = (Stage.PENDING, Stage.PROVISIONING, Stage.DEPROVISIONING)
#: Labels that name a provider instance; a scoped exposition keeps only its own.
INSTANCE_LABELS = ("provider", "instance")
_T = TypeVar("_T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    """One of talprov's metric families: how it is exposed and what it means."""

    name: str
    type: str
    labels: tuple[str, ...]
    help: str
    source: str


FAMILIES = (
    Family("talprov_requests", "gauge", ("provider", "stage"),
           "Machine requests in the store by stage; gone counts finished deletions whose "
           "record the store keeps (the API answers 404 for them).",
           "the store, at scrape time"),
    Family("talprov_queue_depth", "gauge", ("provider",),
           "Requests due for a worker now: pending, provisioning or deprovisioning, "
           "their next attempt time reached.",
           "the store, at scrape time"),
    Family("talprov_provider_up", "gauge", ("provider",),
           "1 when the instance's machine listing works for this replica's reconciler, 0 "
           "while it fails and is backed off (endpoint refusing, credentials refused, "
           "throttled); the blocked requests carry the reason in their error.",
           "this replica's reconciler, at scrape time"),
    Family("talprov_step_duration_seconds", "histogram", ("provider", "step"),
           "Duration of provider step calls (deprovision included) made by this replica.",
           "this replica"),
    Family("talprov_provider_errors_total", "counter", ("provider", "operation", "error"),
           "Errors raised by provider API calls in this replica, by talprov error class "
           "(untranslated: an SDK error the driver did not translate).", "this replica"),
    Family("talprov_leftovers_swept_total", "counter", ("provider", "kind"),
           "Leftovers this replica's sweep deleted (e.g. detached ports, floating IPs "
           "bound to nothing).", "this replica"),
    Family("talprov_boot_alerts_total", "counter", ("provider", "reason"),
           "Bare-metal boot server alerts: a config token used again (config-refetch), "
           "from another address than its boot script's (config-wrong-address), or an "
           "install script asked for without a matching DHCP exchange "
           "(script-without-dhcp).",
           "the instance's inventory audit log, at scrape time"),
    Family("talprov_reconcile_passes_total", "counter", (),
           "Reconcile passes run by this replica.", "this replica"),
    Family("talprov_reconcile_pass_failures_total", "counter", (),
           "Passes that ended with an error (store or provider listing).", "this replica"),
    Family("talprov_reconcile_last_pass_seconds", "gauge", (),
           "Duration of this replica's last reconcile pass.", "this replica"),
)
_BY_NAME = {family.name: family for family in FAMILIES}


def _declared(name: str) -> tuple[str, str, tuple[str, ...]]:
    family = _BY_NAME[name]
    # prometheus_client adds a counter's _total itself.
    return family.name.removesuffix("_total"), family.help, family.labels


class StoreCollector(Collector):
    """Stage counts and queue depth, counted by the database at each scrape.

    A scrape decrypts no request. ``collect`` raises ``StoreError`` when the
    store cannot be read, which fails the scrape rather than reporting zeros.
    """

    def __init__(self, store: Store, providers: Sequence[str],
                 clock: Callable[[], datetime]) -> None:
        self._store = store
        self._providers = tuple(providers)
        self._clock = clock

    def describe(self) -> Iterable[Metric]:
        # Without describe() the registry would call collect() (and the store) on register.
        for name in ("talprov_requests", "talprov_queue_depth"):
            yield GaugeMetricFamily(name, _BY_NAME[name].help, labels=_BY_NAME[name].labels)

    def collect(self) -> Iterable[Metric]:
        stages = {(p, s.value): 0 for p in self._providers for s in Stage}
        stages.update({(provider, stage.value): n
                       for (provider, stage), n in self._store.count_requests().items()})
        depth = dict.fromkeys(self._providers, 0)
        depth.update(self._store.count_due(_DUE_STAGES, now=self._clock()))
        requests, queue = self.describe()
        assert isinstance(requests, GaugeMetricFamily)
        assert isinstance(queue, GaugeMetricFamily)
        for (provider, stage_name), count in sorted(stages.items()):
            requests.add_metric([provider, stage_name], count)
        for provider, count in sorted(depth.items()):
            queue.add_metric([provider], count)
        return (requests, queue)


class InstanceHealthCollector(Collector):
    """``talprov_provider_up`` of each instance, asked of the reconciler at each scrape."""

    def __init__(self, providers: Sequence[str],
                 failing: Callable[[], Collection[str]]) -> None:
        self._providers = tuple(providers)
        self._failing = failing

    def describe(self) -> Iterable[Metric]:
        family = _BY_NAME["talprov_provider_up"]
        yield GaugeMetricFamily(family.name, family.help, labels=family.labels)

    def collect(self) -> Iterable[Metric]:
        (up,) = self.describe()
        assert isinstance(up, GaugeMetricFamily)
        failing = set(self._failing())
        for provider in sorted(self._providers):
            up.add_metric([provider], 0 if provider in failing else 1)
        return (up,)


@runtime_checkable
class ReportsBootAlerts(Protocol):
    """A provider whose boot server raises alerts (the bare-metal one)."""

    def boot_alert_counts(self) -> Mapping[str, int]:
        """Alerts so far by reason; each count only grows. Read-only."""
        ...


class BootAlertCollector(Collector):
    """``talprov_boot_alerts_total`` of each bare-metal instance, read at each scrape
    from its inventory's audit log (shared with a boot server in another process)."""

    def __init__(self, sources: Mapping[str, ReportsBootAlerts]) -> None:
        self._sources = dict(sources)

    def describe(self) -> Iterable[Metric]:
        family = _BY_NAME["talprov_boot_alerts_total"]
        yield CounterMetricFamily(family.name.removesuffix("_total"), family.help,
                                  labels=family.labels)

    def collect(self) -> Iterable[Metric]:
        (alerts,) = self.describe()
        assert isinstance(alerts, CounterMetricFamily)
        for instance, source in sorted(self._sources.items()):
            try:
                counts = source.boot_alert_counts()
            except Exception as exc:  # one unreadable inventory must not fail the scrape
                log.warning("boot alerts of %s not counted: %s", instance, type(exc).__name__)
                continue
            for reason, count in sorted(counts.items()):
                alerts.add_metric([instance, reason], count)
        return (alerts,)


class _ScopedRegistry(CollectorRegistry):
    """A view of a registry without the series of provider instances not allowed."""

    def __init__(self, inner: CollectorRegistry, allowed: Collection[str]) -> None:
        super().__init__(auto_describe=False)
        self._inner = inner
        self._allowed = frozenset(allowed)

    def collect(self) -> Iterable[Metric]:
        for family in self._inner.collect():
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            kept.samples = [s for s in family.samples if self._visible(s.labels)]
            yield kept

    def _visible(self, labels: dict[str, str]) -> bool:
        named = [labels[key] for key in INSTANCE_LABELS if key in labels]
        return all(name in self._allowed for name in named)


class StepMetrics(Protocol):
    """What an instrumented provider reports: a :class:`Metrics`, or in the
    reconcile worker's child process a relay to the parent's."""

    def observe_step(self, provider: str, step: str, seconds: float) -> None: ...

    def count_error(self, provider: str, operation: str, error: str) -> None: ...

    def count_swept(self, provider: str, kind: str) -> None: ...


class Metrics:
    """This app's registry: talprov's families plus process metrics; thread-safe."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._steps = Histogram(*_declared("talprov_step_duration_seconds"),
                                buckets=STEP_BUCKETS, registry=self.registry)
        self._errors = Counter(*_declared("talprov_provider_errors_total"),
                               registry=self.registry)
        self._swept = Counter(*_declared("talprov_leftovers_swept_total"),
                              registry=self.registry)
        self._passes = Counter(*_declared("talprov_reconcile_passes_total"),
                               registry=self.registry)
        self._pass_failures = Counter(*_declared("talprov_reconcile_pass_failures_total"),
                                      registry=self.registry)
        self._last_pass = Gauge(*_declared("talprov_reconcile_last_pass_seconds"),
                                registry=self.registry)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def watch_store(self, store: Store, providers: Sequence[str],
                    clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """Report ``store``'s stage counts and queue depth for ``providers`` at each scrape.
        Call once per app."""
        self.registry.register(StoreCollector(store, providers, clock))

    def watch_instances(self, providers: Sequence[str],
                        failing: Callable[[], Collection[str]]) -> None:
        """Report ``talprov_provider_up`` for ``providers`` at each scrape; ``failing``
        names the instances the local reconciler backs off from. Call once per app."""
        self.registry.register(InstanceHealthCollector(providers, failing))

    def watch_boot_alerts(self, providers: Mapping[str, object]) -> None:
        """Report ``talprov_boot_alerts_total`` for those of ``providers`` (instance →
        provider, unwrapped) whose boot server raises alerts. Call once per app."""
        sources = {name: p for name, p in providers.items() if isinstance(p, ReportsBootAlerts)}
        self.registry.register(BootAlertCollector(sources))

    def observe_step(self, provider: str, step: str, seconds: float) -> None:
        self._steps.labels(provider, step).observe(seconds)

    def count_error(self, provider: str, operation: str, error: str) -> None:
        self._errors.labels(provider, operation, error).inc()

    def count_swept(self, provider: str, kind: str) -> None:
        """One leftover (of ``kind``) deleted by the sweep of ``provider``."""
        self._swept.labels(provider, kind).inc()

    def note_pass(self, seconds: float, *, failed: bool) -> None:
        self._passes.inc()
        if failed:
            self._pass_failures.inc()
        self._last_pass.set(seconds)

    def exposition(self, accept: str | None = None,
                   allowed: Collection[str] | None = None) -> tuple[bytes, str]:
        """The scrape body and its content type.

        OpenMetrics when ``accept`` (the request's Accept header) asks for it, the
        text format 0.0.4 otherwise. ``allowed``: when given, only series whose
        ``provider``/``instance`` label names one of these instances are kept
        (series without such a label stay: they are this replica's own).
        Raises ``StoreError`` when the store cannot be read.
        """
        encoder, content_type = choose_encoder(accept or "")
        source = self.registry if allowed is None else _ScopedRegistry(self.registry, allowed)
        return encoder(source), content_type


def markdown_table() -> str:
    """The metrics table of docs/service.md: talprov's families, then those of
    prometheus_client's process, platform and GC collectors as this process has them."""
    rows = [f"| `{f.name}` | {f.type} | {', '.join(f.labels) or '-'} | {f.help} | {f.source} |"
            for f in FAMILIES]
    scratch = CollectorRegistry()
    for collector in (ProcessCollector(registry=scratch), PlatformCollector(registry=scratch),
                      GCCollector(registry=scratch)):
        for family in collector.collect():
            name = family.name + ("_total" if family.type == "counter" else "")
            labels = sorted({key for s in family.samples for key in s.labels})
            rows.append(f"| `{name}` | {family.type} | {', '.join(labels) or '-'} | "
                        f"{family.documentation.rstrip('.')}. | prometheus_client, this process |")
    header = ["| metric | type | labels | meaning | source |", "|---|---|---|---|---|"]
    return "\n".join(header + rows) + "\n"


def _error_name(exc: BaseException) -> str:
    # An SDK error the driver did not translate is counted apart: it is a bug to fix.
    return type(exc).__name__ if isinstance(exc, ProviderError) else "untranslated"


class InstrumentedProvider:
    """A provider that times its steps and counts its errors, otherwise unchanged.

    Everything not overridden here (``data_model``, ``state_model``, ``name``,
    ``type_name``, …) is the wrapped provider's own.
    """

    def __init__(self, inner: Provider, instance: str, metrics: StepMetrics) -> None:
        self._inner = inner
        self._instance = instance
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"InstrumentedProvider({self._instance!r})"

    @property
    def inner(self) -> Provider:
        return self._inner

    def _measure(self, operation: str, call: Callable[[], _T], *, timed: bool) -> _T:
        started = time.perf_counter()
        try:
            return call()
        except Exception as exc:
            self._metrics.count_error(self._instance, operation, _error_name(exc))
            raise
        finally:
            if timed:
                self._metrics.observe_step(
                    self._instance, operation, time.perf_counter() - started
                )

    def steps(self) -> Sequence[Step]:
        wrapped = []
        for step in self._inner.steps():
            wrapped.append(replace(
                step, run=self._wrap_run(step), run_batch=self._wrap_batch(step)))
        return tuple(wrapped)

    def _wrap_run(self, step: Step) -> StepFn:
        def run(ctx: StepContext[Any, Any]) -> StepResult:
            return self._measure(step.name, lambda: step.run(ctx), timed=True)

        return run

    def _wrap_batch(self, step: Step) -> BatchStepFn | None:
        batch = step.run_batch
        if batch is None:
            return None

        def run_batch(ctxs: Sequence[StepContext[Any, Any]]) -> Sequence[Any]:
            results = self._measure(step.name, lambda: batch(ctxs), timed=True)
            # A batch reports a failed request by putting its exception in its place.
            for result in results:
                if isinstance(result, BaseException):
                    self._metrics.count_error(self._instance, step.name, _error_name(result))
            return results

        return run_batch

    def deprovision(self, ctx: StepContext[Any, Any]) -> StepResult:
        return self._measure("deprovision", lambda: self._inner.deprovision(ctx), timed=True)

    def list_machines(self, owner: Owner) -> list[Machine]:
        return self._measure(
            "list_machines", lambda: self._inner.list_machines(owner), timed=False
        )

    def as_provider(self) -> Provider:
        """This wrapper typed as the protocol it implements by delegation."""
        return cast(Provider, self)


class InstrumentedSweepingProvider(InstrumentedProvider):
    """:class:`InstrumentedProvider` for a provider that also sweeps leftovers.

    The optional protocol's methods are defined here rather than forwarded by
    ``__getattr__``: ``isinstance`` against a runtime-checkable protocol looks
    attributes up statically from Python 3.12 on, and would miss forwarded ones.
    """

    def __init__(self, inner: SweepsLeftovers, instance: str, metrics: StepMetrics) -> None:
        super().__init__(cast(Provider, inner), instance, metrics)
        self._sweeping = inner

    def list_leftovers(self, owner: Owner) -> list[Leftover]:
        return self._measure(
            "list_leftovers", lambda: self._sweeping.list_leftovers(owner), timed=False
        )

    def delete_leftover(self, owner: Owner, leftover: Leftover) -> None:
        self._measure(
            "delete_leftover", lambda: self._sweeping.delete_leftover(owner, leftover),
            timed=False,
        )
        self._metrics.count_swept(self._instance, leftover.kind)


class InstrumentedRemovingProvider(InstrumentedProvider):
    """:class:`InstrumentedProvider` for a provider that also removes second
    machines (``RemovesSecondMachines``; defined here for ``isinstance``, as above)."""

    def remove_second_machine(self, owner: Owner, machine: Machine, kept: str) -> str | None:
        removing = cast(RemovesSecondMachines, self._inner)
        return self._measure("remove_second_machine",
                             lambda: removing.remove_second_machine(owner, machine, kept),
                             timed=False)


class InstrumentedSweepingRemovingProvider(InstrumentedSweepingProvider,
                                           InstrumentedRemovingProvider):
    """Both optional protocols above."""


def instrument(inner: Provider, instance: str, metrics: StepMetrics) -> Provider:
    """``inner`` wrapped to time its steps and count its errors, with the same
    optional protocols as ``inner``."""
    removes = isinstance(inner, RemovesSecondMachines)
    if isinstance(inner, SweepsLeftovers):
        kind = InstrumentedSweepingRemovingProvider if removes else InstrumentedSweepingProvider
        return kind(inner, instance, metrics).as_provider()
    if removes:
        return InstrumentedRemovingProvider(inner, instance, metrics).as_provider()
    return InstrumentedProvider(inner, instance, metrics).as_provider()
