"""A deletion's retry delay follows what the API answers, and is bounded (issue 15).

The Proxmox chaos long mode (seed 1) left a request deprovisioning past its 180 s
wait: its VM was deleted, but every failed deprovision call of the deletion (a
list, a task read, the seed ISO delete, at 20% faults) had added to one attempt
count that progress in between never reset. The step backoff grew (2 s doubling)
and from the eighth fault on the deletion took the "request failed" path: a
"failed (8 attempts)" event, then a flat 300 s (``backoff_cap``) before the next
try, while the API answered most calls. Its last events were the instance's
listing failures, noted on it while it waited; the instance's own backoff (at
most 60 s, reset by the first listing that works) was not the cause.

Before the fix: fail/progress alternating eight times took 462-498 s, and after
ten faults in a row the API answering again was tried 300 s later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from talprov.providers.errors import Transient
from talprov.providers.protocol import Runtime, StepContext
from talprov.providers.types import MachineRequest, Retry, Stage, StepResult
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.registry import build_provider
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.helpers import WORKER_CONFIG

#: What PVE's driver says a 5xx or a dropped connection is: retry in 5 s.
FAULT = Transient("list VMs: 500 injected", retry_after=5.0)


class ScriptedDeletion:
    """Wraps a provider: each deprovision call takes the next outcome of ``script``
    ("fail": a transient fault; "progress": a Retry as a stop or delete task
    moves on), then the real deprovision once the script is used up."""

    def __init__(self, inner: Any, clock: Callable[[], float], script: list[str]) -> None:
        self.inner = inner
        self.clock = clock
        self.script: Iterator[str] = iter(script)
        self.calls: list[tuple[float, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def deprovision(self, ctx: StepContext[Any, Any]) -> StepResult:
        what = next(self.script, "done")
        self.calls.append((self.clock(), what))
        if what == "fail":
            raise FAULT
        if what == "progress":
            return Retry(0.5, "VM shutting down")
        result: StepResult = self.inner.deprovision(ctx)
        return result


def deleted_after(tmp_path: Path, script: list[str]) -> tuple[ScriptedDeletion, float]:
    """Provision one request, delete it, drive passes until it is gone; the
    provider and the fake seconds the deletion took."""
    clock = FakeClock()
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache", clock=clock,
                      sleep=clock.sleep)
    raw = {"type": "file", "path": str(tmp_path / "cloud.sqlite")}
    scripted = ScriptedDeletion(build_provider("pve", raw, runtime, where="providers.pve"),
                                clock, script)
    handles = {"pve": ProviderHandle(scripted, 4)}  # type: ignore[arg-type]
    reconciler = Reconciler(store, handles, runtime)
    store.create_request(MachineRequest(id="web-0", provider="pve", talos_version="v1.11.5",
                                        machine_config=SecretStr(WORKER_CONFIG)))

    def stage_is(stage: Stage) -> Callable[[], bool]:
        def done() -> bool:
            record = store.get_request("web-0")
            return record is not None and record.stage == stage
        return done

    assert reconciler.run_until(stage_is(Stage.PROVISIONED), timeout=600, interval=5.0)
    store.request_deletion("web-0")
    started = clock()
    assert reconciler.run_until(stage_is(Stage.GONE), timeout=3600, interval=5.0)
    return scripted, clock() - started


def test_progress_between_faults_keeps_the_deletion_retry_short(
    tmp_path: Path, plugin_dir: Path
) -> None:
    scripted, took = deleted_after(tmp_path, ["fail", "progress"] * 8)
    # Each fault is the first in a row: retried after its 5 s, not after minutes.
    assert took < 8 * 5 + 8 * 0.5 + 20, took
    fails = [at for at, what in scripted.calls if what == "fail"]
    gaps = [b - a for a, b in pairwise(fails)]
    assert max(gaps) < 15, gaps


def test_after_faults_in_a_row_the_deletion_is_retried_within_the_cap(
    tmp_path: Path, plugin_dir: Path
) -> None:
    scripted, _took = deleted_after(tmp_path, ["fail"] * 10)
    last_fail = max(at for at, what in scripted.calls if what == "fail")
    answered = min(at for at, what in scripted.calls if what == "done")
    # The API answers again after the tenth fault: tried at most one cap later.
    assert answered - last_fail <= 60.0, answered - last_fail
    # Still backed off: ten faults did not turn into ten tries within a minute.
    fails = [at for at, what in scripted.calls if what == "fail"]
    assert fails[-1] - fails[0] > 60.0
