"""The reconciler renews the leases of a pass in progress, and only those.

Real wall time on purpose: renewal is a thread that waits in wall time, and the
leases it renews expire in wall time for any other worker sharing the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from talprov.providers.protocol import Runtime, Step, StepContext
from talprov.providers.types import (
    Machine,
    MachineRequest,
    MachineState,
    Owner,
    Stage,
    StepResult,
)
from talprov.reconcile.reconciler import PassReport, ProviderHandle, Reconciler
from talprov.store.store import Store
from talprov.testing import ProviderDouble

TTL = 1.2  # renewal every 0.4 s: margin for a loaded CI machine
GATE_TIMEOUT = 10.0


class GatedProvider(ProviderDouble):
    """One step that blocks until the test opens the gate, so the test decides
    how long a step runs and what happens meanwhile."""

    type_name: ClassVar[str] = "gated"

    def __init__(self) -> None:
        self.name = "gated"
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.machines: dict[str, str] = {}

    def steps(self) -> Sequence[Step]:
        return (Step("wait-for-gate", self._wait_for_gate),)

    def _wait_for_gate(self, ctx: StepContext[Any, Any]) -> StepResult:
        self.entered.set()
        if not self.gate.wait(GATE_TIMEOUT):
            raise AssertionError("the test never opened the gate")
        ctx.state.infra_id = f"m-{ctx.request.id}"
        self.machines[ctx.request.id] = ctx.state.infra_id
        return None

    def list_machines(self, owner: Owner) -> list[Machine]:
        return [Machine(infra_id=infra, state=MachineState.RUNNING, request_id=rid)
                for rid, infra in self.machines.items()]


class GatedReleaseStore(Store):
    """A store whose next non-empty ``release_many`` stops halfway until told to go on."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.releasing = threading.Event()
        self.go_on = threading.Event()
        self.gated = False

    def release_many(self, request_ids: Collection[str], *, owner: str) -> None:
        if self.gated and request_ids:
            self.gated = False
            self.releasing.set()
            if not self.go_on.wait(GATE_TIMEOUT):
                raise AssertionError("the test never let the release go on")
        super().release_many(request_ids, owner=owner)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GatedReleaseStore]:
    opened = GatedReleaseStore(f"sqlite:///{tmp_path / 'state.db'}")
    opened.migrate()
    opened.create_request(MachineRequest(id="r-1", provider="gated", talos_version="v1.13.9"))
    yield opened
    opened.close()


def reconciler_for(store: Store, provider: GatedProvider, tmp_path: Path, worker: str,
                   **options: Any) -> Reconciler:
    handles = {"gated": ProviderHandle(provider, concurrency=2)}
    return Reconciler(store, handles, Runtime(cache_dir=tmp_path), worker_id=worker,
                      **options)


def in_thread(call: Callable[[], PassReport]) -> tuple[threading.Thread, list[PassReport]]:
    reports: list[PassReport] = []
    thread = threading.Thread(target=lambda: reports.append(call()), daemon=True)
    thread.start()
    return thread, reports


def holder_of(store: Store, request_id: str) -> str | None:
    holder = store.lease_holder(request_id)
    return None if holder is None else holder[0]


def test_a_step_outlasting_the_ttl_keeps_its_lease_and_no_one_else_gets_it(
    store: GatedReleaseStore, tmp_path: Path
) -> None:
    provider = GatedProvider()
    alpha = reconciler_for(store, provider, tmp_path, "alpha", lease_ttl=TTL)
    beta = reconciler_for(store, provider, tmp_path, "beta", lease_ttl=TTL)
    assert not alpha.renewal_running  # started only once a lease is held
    thread, reports = in_thread(alpha.run_pass)
    try:
        assert provider.entered.wait(GATE_TIMEOUT)
        assert alpha.renewal_running
        time.sleep(TTL * 2.5)  # unrenewed, the lease would have run out twice
        assert holder_of(store, "r-1") == "alpha"
        assert not store.claim("r-1", owner="beta", ttl=TTL)
        assert beta.run_pass().worked == 0  # a second worker cannot claim it
        assert alpha.held_leases() == {"r-1"}
    finally:
        provider.gate.set()
        thread.join(GATE_TIMEOUT)
    assert reports[0].worked == 1
    record = store.get_request("r-1")
    assert record is not None
    assert record.stage == Stage.PROVISIONED
    # Released with the pass, and not renewed afterwards.
    assert alpha.held_leases() == set()
    assert holder_of(store, "r-1") is None
    time.sleep(alpha.renew_interval * 2.5)
    assert holder_of(store, "r-1") is None
    # The idle thread ends by itself once it runs again (woken by the release):
    # waited for, as a loaded machine may not have run it yet.
    deadline = time.monotonic() + GATE_TIMEOUT
    while alpha.renewal_running:
        assert time.monotonic() < deadline, "the idle renewal thread never ended"
        time.sleep(0.02)
    assert alpha.lost_leases == []
    alpha.close()
    beta.close()


def test_a_lease_taken_over_is_dropped_and_the_old_holders_write_loses(
    store: GatedReleaseStore, tmp_path: Path
) -> None:
    provider = GatedProvider()
    # Renewal only when the test asks, so the takeover below is not raced.
    alpha = reconciler_for(store, provider, tmp_path, "alpha", lease_ttl=30.0,
                           renew_interval=29.0)
    thread, _ = in_thread(alpha.run_pass)
    try:
        assert provider.entered.wait(GATE_TIMEOUT)
        # As after a stall longer than the TTL: beta takes the expired lease over
        # and writes progress.
        later = datetime.now(UTC) + timedelta(seconds=31)
        assert store.claim("r-1", owner="beta", ttl=300, now=later)
        record = store.get_request("r-1")
        assert record is not None
        store.save_progress(
            "r-1", expected_version=record.version, stage=Stage.PROVISIONING, step_index=0,
            step_name="wait-for-gate", state={}, error="beta was here", attempts=0,
            next_attempt_at=None, step_started_at=None, infra_id=None, machine_uuid=None,
            addresses=(), events=["beta advanced it"],
        )
        assert alpha.renew_leases() == 0
        assert alpha.lost_leases == ["r-1"]
        assert alpha.held_leases() == set()
        assert alpha.renew_leases() == 0  # nothing left to renew
        assert alpha.lost_leases == ["r-1"]
    finally:
        provider.gate.set()
        thread.join(GATE_TIMEOUT)
    record = store.get_request("r-1")
    assert record is not None
    assert (record.stage, record.error) == (Stage.PROVISIONING, "beta was here")
    assert holder_of(store, "r-1") == "beta"  # alpha's release did not touch it
    alpha.close()


def test_a_renewal_waits_for_a_release_in_progress_and_never_retakes_it(
    store: GatedReleaseStore, tmp_path: Path
) -> None:
    provider = GatedProvider()
    provider.gate.set()
    alpha = reconciler_for(store, provider, tmp_path, "alpha", lease_ttl=30.0,
                           renew_interval=29.0)
    store.gated = True
    pass_thread, reports = in_thread(alpha.run_pass)
    assert store.releasing.wait(GATE_TIMEOUT)
    # The pass is inside release_many now and the lease is still in the store.
    assert holder_of(store, "r-1") == "alpha"
    renewed: list[int] = []
    renewal = threading.Thread(target=lambda: renewed.append(alpha.renew_leases()),
                               daemon=True)
    renewal.start()
    renewal.join(0.3)
    assert renewal.is_alive()  # blocked until the release is done
    store.go_on.set()
    pass_thread.join(GATE_TIMEOUT)
    renewal.join(GATE_TIMEOUT)
    assert reports[0].worked == 1
    assert renewed == [0]
    assert holder_of(store, "r-1") is None
    assert alpha.lost_leases == []
    alpha.close()


def test_close_stops_renewal_and_a_later_pass_starts_it_again(
    store: GatedReleaseStore, tmp_path: Path
) -> None:
    provider = GatedProvider()
    with reconciler_for(store, provider, tmp_path, "alpha", lease_ttl=TTL) as alpha:
        thread, _ = in_thread(alpha.run_pass)
        assert provider.entered.wait(GATE_TIMEOUT)
        assert alpha.renewal_running
        alpha.close()
        alpha.close()  # idempotent
        assert not alpha.renewal_running
        # Nobody renews now: the lease runs out and another worker may take it.
        time.sleep(TTL * 1.5)
        assert store.claim("r-1", owner="beta", ttl=TTL)
        provider.gate.set()
        thread.join(GATE_TIMEOUT)
        assert alpha.lost_leases == []  # dropped at release, never renewed
        store.create_request(MachineRequest(id="r-2", provider="gated",
                                            talos_version="v1.13.9"))
        provider.entered.clear()
        provider.gate.clear()
        thread, _ = in_thread(alpha.run_pass)
        assert provider.entered.wait(GATE_TIMEOUT)
        assert alpha.renewal_running
        assert alpha.held_leases() == {"r-2"}
        provider.gate.set()
        thread.join(GATE_TIMEOUT)
    assert not alpha.renewal_running


def test_bad_renewal_settings_are_refused(store: GatedReleaseStore, tmp_path: Path) -> None:
    provider = GatedProvider()
    with pytest.raises(ValueError, match="renew_interval"):
        reconciler_for(store, provider, tmp_path, "a", lease_ttl=10.0, renew_interval=10.0)
    with pytest.raises(ValueError, match="lease_ttl"):
        reconciler_for(store, provider, tmp_path, "a", lease_ttl=0.0)
    assert reconciler_for(store, provider, tmp_path, "a", lease_ttl=9.0).renew_interval == 3.0
