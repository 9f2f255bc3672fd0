"""An instance whose listing fails is backed off, reported once per change, and named
on every request it blocks (issue 14, item 2).

Before the fix one pending request against a refusing endpoint made ~16 listings a
second, a warning per listing, and the request showed no error at all.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from talprov.providers.errors import AuthError, ProviderError, Transient
from talprov.providers.protocol import Runtime, endpoint_without_secrets
from talprov.providers.types import Machine, MachineRequest, Owner, Stage
from talprov.reconcile.instance_health import InstanceBackoff
from talprov.reconcile.reconciler import PassReport, ProviderHandle, Reconciler
from talprov.registry import build_provider
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.helpers import WORKER_CONFIG

ENDPOINT = "https://pve.example.test:8006/api2/json"


class Flaky:
    """Wraps a provider: its listing raises ``failure()`` when that returns an error."""

    def __init__(self, inner: Any, clock: Callable[[], float],
                 failure: Callable[[], ProviderError | None]) -> None:
        self.inner = inner
        self.clock = clock
        self.failure = failure
        self.attempts: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def endpoint(self) -> str:
        return ENDPOINT

    def list_machines(self, owner: Owner) -> list[Machine]:
        self.attempts.append(self.clock())
        error = self.failure()
        if error is not None:
            raise error
        result: list[Machine] = self.inner.list_machines(owner)
        return result


def setup(tmp_path: Path, clock: Callable[[], float], sleep: Callable[[float], None],
          failure: Callable[[], ProviderError | None],
          backoff: InstanceBackoff) -> tuple[Store, Reconciler, Flaky]:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache", clock=clock,
                      sleep=sleep)
    raw = {"type": "file", "path": str(tmp_path / "cloud.sqlite")}
    flaky = Flaky(build_provider("pve", raw, runtime, where="providers.pve"), clock, failure)
    handles = {"pve": ProviderHandle(flaky, 4)}  # type: ignore[arg-type]
    reconciler = Reconciler(store, handles, runtime, instance_backoff=backoff)
    store.create_request(MachineRequest(id="web-0", provider="pve", talos_version="v1.11.5",
                                        machine_config=SecretStr(WORKER_CONFIG)))
    return store, reconciler, flaky


def provisioned(store: Store) -> Callable[[], bool]:
    def done() -> bool:
        record = store.get_request("web-0")
        return record is not None and record.stage == Stage.PROVISIONED
    return done


def test_refusing_endpoint_for_60s_is_backed_off_and_shown(
    tmp_path: Path, plugin_dir: Path
) -> None:
    clock = FakeClock()
    back = start = clock() + 60

    def failure() -> ProviderError | None:
        return Transient("connection refused") if clock() < back else None

    backoff = InstanceBackoff(rng=random.Random(7))
    store, reconciler, flaky = setup(tmp_path, clock, clock.sleep, failure, backoff)
    warnings: list[str] = []
    errors_seen: list[str] = []

    def on_pass(report: PassReport) -> None:
        warnings.extend(report.errors)
        record = store.get_request("web-0")
        if record is not None and record.error:
            errors_seen.append(record.error)

    # As `machine create --wait` drives it: passes until provisioned, 5 s interval.
    assert reconciler.run_until(provisioned(store), timeout=600, interval=5.0,
                                on_pass=on_pass)
    in_outage = [t for t in flaky.attempts if t < back]
    assert 1 < len(in_outage) <= 12, in_outage
    assert warnings == [f"provider 'pve' not answering at {ENDPOINT}: connection refused"]
    # What `machine get` shows: kind, endpoint, since when, next attempt.
    assert errors_seen
    assert f"not answering at {ENDPOINT}" in errors_seen[-1]
    assert "failing since" in errors_seen[-1]
    assert "next attempt" in errors_seen[-1]
    # One event per state change on the blocked request, not one per attempt.
    assert [e.message for e in store.events("web-0")].count(warnings[0]) == 1
    # The first listing after the endpoint came back is at most one backoff period
    # (the cap) later, and the request then converges.
    first_ok = min(t for t in flaky.attempts if t >= back)
    assert first_ok - start <= backoff.cap
    record = store.get_request("web-0")
    assert record is not None
    assert record.error is None
    assert reconciler.instance_troubles() == {}


def test_seconds_until_due_waits_for_the_instance_backoff(
    tmp_path: Path, plugin_dir: Path
) -> None:
    clock = FakeClock()
    backoff = InstanceBackoff(base=8.0, cap=8.0, rng=random.Random(1))
    _store, reconciler, _flaky = setup(
        tmp_path, clock, clock.sleep, lambda: Transient("connection refused"), backoff)
    reconciler.run_pass()
    trouble = reconciler.instance_troubles()["pve"]
    wait = reconciler.seconds_until_due(30.0, floor=0.05)
    assert wait == pytest.approx(trouble.next_attempt - clock(), abs=1e-5)
    assert 4.0 <= wait <= 8.0


def test_credentials_refused_is_a_new_state_and_retry_after_is_honoured(
    tmp_path: Path, plugin_dir: Path
) -> None:
    clock = FakeClock()
    errors: list[ProviderError] = [Transient("connection refused"),
                                   AuthError("401 Unauthorized"),
                                   Transient("503", retry_after=120.0)]
    backoff = InstanceBackoff(rng=random.Random(3))
    store, reconciler, _flaky = setup(
        tmp_path, clock, clock.sleep, lambda: errors[0], backoff)
    reports = []
    for _ in range(3):
        reports.append(reconciler.run_pass())
        passed_at = clock()
        errors.pop(0)
        clock.sleep(reconciler.seconds_until_due(300.0, floor=0.05))
    assert [len(r.errors) for r in reports] == [1, 1, 1]
    assert "credentials refused" in reports[1].errors[0]
    trouble = reconciler.instance_troubles()["pve"]
    assert trouble.attempts == 3
    assert trouble.next_attempt - passed_at >= 120.0
    assert "pve" in reports[2].unhealthy
    record = store.get_request("web-0")
    assert record is not None
    assert record.stage == Stage.PENDING


def test_real_clock_against_a_closed_port(tmp_path: Path, plugin_dir: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on `port` now: every connect is refused.

    def failure() -> ProviderError | None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return Transient(f"connection to 127.0.0.1:{port} refused")
        return None

    backoff = InstanceBackoff(base=0.05, cap=0.4)
    store, reconciler, flaky = setup(tmp_path, time.time, time.sleep, failure, backoff)
    warnings: list[str] = []
    reconciler.run_until(lambda: False, timeout=1.5, interval=5.0,
                         on_pass=lambda r: warnings.extend(r.errors))
    # Without backoff the loop's 0.05 s floor gives ~30 listings in 1.5 s; with it,
    # delays of 0.025-0.05, 0.05-0.1, 0.1-0.2, then 0.2-0.4 s give at most 10.
    assert 3 <= len(flaky.attempts) <= 10, len(flaky.attempts)
    assert len(warnings) == 1
    record = store.get_request("web-0")
    assert record is not None
    assert record.error is not None
    assert ENDPOINT in record.error
    assert f"127.0.0.1:{port} refused" in record.error


def test_endpoint_without_secrets() -> None:
    assert endpoint_without_secrets("https://root:hunter2@pve:8006/api?token=x#f") == (
        "https://pve:8006/api")
    assert endpoint_without_secrets("https://[::1]:8006/") == "https://[::1]:8006/"
    assert endpoint_without_secrets("eu-west-1") == "eu-west-1"


def test_an_endpoint_the_error_names_already_is_not_named_twice() -> None:
    from talprov.reconcile.instance_health import InstanceTrouble

    trouble = InstanceTrouble(
        instance="pve", kind="not answering", endpoint=ENDPOINT,
        detail="list VMs at https://pve.example.test:8006: PVE API unreachable "
               "(connection refused)", since=0.0, next_attempt=5.0, attempts=1)
    assert trouble.headline() == (
        "provider 'pve' not answering: list VMs at https://pve.example.test:8006: "
        "PVE API unreachable (connection refused)")


def test_failing_since_and_next_attempt_are_the_failures_time_not_the_calls_start(
    tmp_path: Path, plugin_dir: Path
) -> None:
    clock = FakeClock()
    start = clock()

    def failure() -> ProviderError | None:
        clock.sleep(180)  # a read timeout with the SDK's retries: the call took 3 min
        return Transient("no answer within the read timeout")

    backoff = InstanceBackoff(rng=random.Random(7))
    store, reconciler, _ = setup(tmp_path, clock, clock.sleep, failure, backoff)
    reconciler.run_pass()
    failed_at = start + 180
    trouble = reconciler.instance_troubles()["pve"]
    assert trouble.since == failed_at
    assert trouble.next_attempt > failed_at
    record = store.get_request("web-0")
    assert record is not None
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(failed_at))
    assert f"(failing since {stamp}, next attempt " in (record.error or "")
