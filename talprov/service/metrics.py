"""Prometheus metrics, written in the text exposition format (version 0.0.4).

Stage counts and queue depth are read from the store at scrape time, so every
replica reports the same, store-wide numbers. Step durations and provider API
errors are measured in this process by wrapping each provider instance
(:class:`InstrumentedProvider`): every replica reports the work it did itself.
Labels carry instance, step, stage and error class names only, never request
bodies, so no secret can reach a metric.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from talprov.providers.errors import ProviderError
from talprov.providers.protocol import (
    BatchStepFn,
    Leftover,
    Provider,
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
_T = TypeVar("_T")


@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += value
        self.count += 1


def escape_label(value: str) -> str:
    """A label value escaped as the exposition format requires."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Metrics:
    """This process's counters and histograms; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: dict[tuple[str, str], _Histogram] = {}
        self._errors: dict[tuple[str, str, str], int] = {}
        self._swept: dict[tuple[str, str], int] = {}
        self.passes = 0
        self.pass_failures = 0
        self.last_pass_seconds = 0.0

    def observe_step(self, provider: str, step: str, seconds: float) -> None:
        with self._lock:
            hist = self._steps.get((provider, step))
            if hist is None:
                hist = self._steps[(provider, step)] = _Histogram(STEP_BUCKETS)
            hist.observe(seconds)

    def count_error(self, provider: str, operation: str, error: str) -> None:
        with self._lock:
            key = (provider, operation, error)
            self._errors[key] = self._errors.get(key, 0) + 1

    def count_swept(self, provider: str, kind: str) -> None:
        """One leftover (of ``kind``) deleted by the sweep of ``provider``."""
        with self._lock:
            self._swept[(provider, kind)] = self._swept.get((provider, kind), 0) + 1

    def step_calls(self) -> int:
        """How many provider step calls this process timed (all instances)."""
        with self._lock:
            return sum(h.count for h in self._steps.values())

    def note_pass(self, seconds: float, *, failed: bool) -> None:
        with self._lock:
            self.passes += 1
            self.pass_failures += int(failed)
            self.last_pass_seconds = seconds

    def render(self, store: Store, providers: Sequence[str], now: datetime,
               failing: Collection[str] = ()) -> str:
        """The exposition text. Raises ``StoreError`` when the store cannot be read.

        Counts are aggregated by the database: a scrape decrypts no request.
        ``failing`` names the instances whose listing this replica's reconciler
        is backing off from (``talprov_provider_up`` 0).
        """
        stages: dict[tuple[str, str], int] = {
            (p, s.value): 0 for p in providers for s in Stage
        }
        for (provider, stage), count in store.count_requests().items():
            stages[(provider, stage.value)] = count
        depth: dict[str, int] = dict.fromkeys(providers, 0)
        depth.update(store.count_due(_DUE_STAGES, now=now))
        out: list[str] = []
        out += _family("talprov_requests", "gauge", "Machine requests in the store by stage.")
        out += [
            f"talprov_requests{_labels([('provider', p), ('stage', s)])} {n}"
            for (p, s), n in sorted(stages.items())
        ]
        out += _family(
            "talprov_queue_depth", "gauge",
            "Requests waiting for a worker now (pending, provisioning or deprovisioning, due).",
        )
        out += [f"talprov_queue_depth{_labels([('provider', p)])} {n}"
                for p, n in sorted(depth.items())]
        out += _family(
            "talprov_provider_up", "gauge",
            "1 when the instance's machine listing works for this replica's reconciler, "
            "0 while it is failing and backed off.",
        )
        out += [f"talprov_provider_up{_labels([('provider', p)])} {int(p not in failing)}"
                for p in sorted(providers)]
        with self._lock:
            out += self._render_local()
        return "\n".join(out) + "\n"

    def _render_local(self) -> list[str]:
        out = _family(
            "talprov_step_duration_seconds", "histogram",
            "Duration of provider step calls made by this replica.",
        )
        for (provider, step), hist in sorted(self._steps.items()):
            base = [("provider", provider), ("step", step)]
            running = 0
            for bound, count in zip(hist.buckets, hist.counts, strict=True):
                running += count
                out.append(f"talprov_step_duration_seconds_bucket"
                           f"{_labels([*base, ('le', _number(bound))])} {running}")
            out.append(f"talprov_step_duration_seconds_bucket"
                       f"{_labels([*base, ('le', '+Inf')])} {hist.count}")
            out.append(f"talprov_step_duration_seconds_sum{_labels(base)} {hist.total!r}")
            out.append(f"talprov_step_duration_seconds_count{_labels(base)} {hist.count}")
        out += _family(
            "talprov_provider_errors_total", "counter",
            "Errors raised by provider API calls in this replica, by error class.",
        )
        for (provider, operation, error), n in sorted(self._errors.items()):
            labels = [("provider", provider), ("operation", operation), ("error", error)]
            out.append(f"talprov_provider_errors_total{_labels(labels)} {n}")
        out += _family(
            "talprov_leftovers_swept_total", "counter",
            "Leftovers (detached ports, unassociated floating IPs, ...) this replica's "
            "sweep deleted.",
        )
        for (provider, kind), n in sorted(self._swept.items()):
            out.append(
                f"talprov_leftovers_swept_total{_labels([('provider', provider), ('kind', kind)])}"
                f" {n}")
        out += _family("talprov_reconcile_passes_total", "counter",
                       "Reconcile passes run by this replica.")
        out.append(f"talprov_reconcile_passes_total {self.passes}")
        out += _family("talprov_reconcile_pass_failures_total", "counter",
                       "Passes that ended with an error (store or provider listing).")
        out.append(f"talprov_reconcile_pass_failures_total {self.pass_failures}")
        out += _family("talprov_reconcile_last_pass_seconds", "gauge",
                       "Duration of this replica's last reconcile pass.")
        out.append(f"talprov_reconcile_last_pass_seconds {self.last_pass_seconds!r}")
        return out


def _family(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _error_name(exc: BaseException) -> str:
    # An SDK error the driver did not translate is counted apart: it is a bug to fix.
    return type(exc).__name__ if isinstance(exc, ProviderError) else "untranslated"


class InstrumentedProvider:
    """A provider that times its steps and counts its errors, otherwise unchanged.

    Everything not overridden here (``data_model``, ``state_model``, ``name``,
    ``type_name``, …) is the wrapped provider's own.
    """

    def __init__(self, inner: Provider, instance: str, metrics: Metrics) -> None:
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
            wrapped.append(Step(step.name, self._wrap_run(step), self._wrap_batch(step)))
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

    def __init__(self, inner: SweepsLeftovers, instance: str, metrics: Metrics) -> None:
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


def instrument(inner: Provider, instance: str, metrics: Metrics) -> Provider:
    """``inner`` wrapped to time its steps and count its errors, with the same
    optional protocols as ``inner``."""
    if isinstance(inner, SweepsLeftovers):
        return InstrumentedSweepingProvider(inner, instance, metrics).as_provider()
    return InstrumentedProvider(inner, instance, metrics).as_provider()
