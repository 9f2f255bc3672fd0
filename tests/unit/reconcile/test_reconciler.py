"""The request reconciler and step runner, driven against the file-backed provider double."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from talprov.providers.protocol import Runtime
from talprov.providers.types import MachineRequest, Stage
from talprov.reconcile.failures import OUT_OF_CAPACITY, StepPolicy, resource_error_kind
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.registry import build_provider
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.helpers import WORKER_CONFIG
from tests.providers.fileprov import Cloud


def make_reconciler(
    store: Store, clock: FakeClock, tmp_path: Path, plugin_dir: Path, **config: Any
) -> tuple[Reconciler, Cloud]:
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache", clock=clock,
                      sleep=clock.sleep)
    raw = {"type": "file", "path": str(tmp_path / "cloud.sqlite"), **config}
    provider = build_provider("fake", raw, runtime, where="providers.fake")
    reconciler = Reconciler(store, {"fake": ProviderHandle(provider, 4)}, runtime,
                            policy=StepPolicy(max_attempts=3, capacity_attempts=2))
    return reconciler, Cloud(raw["path"])


def request(rid: str, **fields: Any) -> MachineRequest:
    return MachineRequest(id=rid, provider="fake", talos_version="v1.13.9",
                          machine_config=SecretStr(WORKER_CONFIG), **fields)


def settle(reconciler: Reconciler, store: Store, predicate: Callable[[], bool]) -> None:
    assert reconciler.run_until(predicate, timeout=600, interval=1.0)


def all_in(store: Store, stage: Stage) -> Callable[[], bool]:
    return lambda: all(r.stage == stage for r in store.list_requests(include_gone=True))


def test_provisions_and_deprovisions(store: Store, clock: FakeClock, tmp_path: Path,
                                     plugin_dir: Path) -> None:
    reconciler, cloud = make_reconciler(store, clock, tmp_path, plugin_dir)
    for i in range(3):
        store.create_request(request(f"web-{i}", labels={"role": "worker"}))
    settle(reconciler, store, all_in(store, Stage.PROVISIONED))
    machines = cloud.machines()
    assert sorted(m["request_id"] for m in machines) == ["web-0", "web-1", "web-2"]
    assert all(m["user_data"] == WORKER_CONFIG for m in machines)
    record = store.get_request("web-1")
    assert record is not None
    assert record.infra_id in {m["infra_id"] for m in machines}
    assert record.machine_uuid
    assert record.addresses == ("192.0.2.10",)
    messages = [e.message for e in store.events("web-1")]
    assert "step ensure-machine done" in messages
    assert any(m.startswith("provisioned") for m in messages)

    for i in range(3):
        store.request_deletion(f"web-{i}")
    settle(reconciler, store, all_in(store, Stage.GONE))
    assert cloud.machines() == []


@pytest.mark.parametrize("count", [1, 500])
def test_converged_pass_lists_once_per_instance(
    count: int, store: Store, clock: FakeClock, tmp_path: Path, plugin_dir: Path
) -> None:
    reconciler, cloud = make_reconciler(store, clock, tmp_path, plugin_dir, batch=True)
    for i in range(count):
        store.create_request(request(f"n-{i:04d}"))
    settle(reconciler, store, all_in(store, Stage.PROVISIONED))
    before = cloud.calls("list_machines")
    ensure_before = cloud.calls("ensure")
    report = reconciler.run_pass()
    assert cloud.calls("list_machines") - before == 1
    assert report.list_calls == {"fake": 1}
    assert cloud.calls("ensure") == ensure_before  # converged: no step ran
    assert len(cloud.machines()) == count


def test_batch_step_creates_many_in_one_call(store: Store, clock: FakeClock, tmp_path: Path,
                                             plugin_dir: Path) -> None:
    reconciler, cloud = make_reconciler(store, clock, tmp_path, plugin_dir, batch=True)
    for i in range(20):
        store.create_request(request(f"b-{i:02d}"))
    reconciler.run_pass()
    assert cloud.calls("create") == 20
    assert cloud.calls("ensure") == 1


def test_capacity_errors_fail_after_bounded_attempts(
    store: Store, clock: FakeClock, tmp_path: Path, plugin_dir: Path
) -> None:
    reconciler, cloud = make_reconciler(store, clock, tmp_path, plugin_dir, fail_creates=True)
    store.create_request(request("cap-1"))
    settle(reconciler, store, all_in(store, Stage.FAILED))
    record = store.get_request("cap-1")
    assert record is not None
    assert record.error == "ensure-machine: out of capacity: no capacity in fake zone"
    assert resource_error_kind(record.error) == OUT_OF_CAPACITY
    assert cloud.calls("create_failed") == 2  # capacity_attempts, not a storm
    assert any("retry in" in e.message for e in store.events("cap-1"))


def test_invalid_provider_data_fails_naming_field(
    store: Store, clock: FakeClock, tmp_path: Path, plugin_dir: Path
) -> None:
    reconciler, cloud = make_reconciler(store, clock, tmp_path, plugin_dir)
    store.create_request(request("bad-1", provider_data={"size": "huge"}))
    reconciler.run_pass()
    record = store.get_request("bad-1")
    assert record is not None
    assert record.stage == Stage.FAILED
    assert record.error is not None
    assert record.error.startswith("provider_data.size:")
    assert cloud.calls("create") == 0


def test_machine_deleted_out_of_band_marks_request_failed(
    store: Store, clock: FakeClock, tmp_path: Path, plugin_dir: Path
) -> None:
    reconciler, cloud = make_reconciler(store, clock, tmp_path, plugin_dir)
    store.create_request(request("drift-1"))
    settle(reconciler, store, all_in(store, Stage.PROVISIONED))
    with cloud.connect() as db:
        db.execute("DELETE FROM machines")
    reconciler.run_pass()
    record = store.get_request("drift-1")
    assert record is not None
    assert record.stage == Stage.PROVISIONED
    reconciler.run_pass()
    record = store.get_request("drift-1")
    assert record is not None
    assert record.stage == Stage.FAILED
    assert record.error is not None
    assert "disappeared" in record.error


def test_resumes_at_stored_step_without_second_machine(
    store: Store, clock: FakeClock, tmp_path: Path, plugin_dir: Path
) -> None:
    reconciler, cloud = make_reconciler(store, clock, tmp_path, plugin_dir, boot_listings=5)
    store.create_request(request("resume-1"))
    reconciler.run_pass()
    record = store.get_request("resume-1")
    assert record is not None
    assert record.step_name == "wait-running"
    # A new process: fresh reconciler and provider, same store and cloud.
    again, _ = make_reconciler(store, clock, tmp_path, plugin_dir, boot_listings=5)
    settle(again, store, all_in(store, Stage.PROVISIONED))
    assert len(cloud.machines()) == 1
    assert cloud.calls("create") == 1


def test_unconfigured_provider_is_reported_once_and_its_requests_left_alone(
    store: Store, clock: FakeClock, tmp_path: Path, plugin_dir: Path
) -> None:
    """Workers sharing a store may configure different instances: one without
    ``gone`` must not overwrite what the worker that has it recorded."""
    reconciler, _ = make_reconciler(store, clock, tmp_path, plugin_dir)
    store.create_request(MachineRequest(id="lost-1", provider="gone", talos_version="v1.13.9"))
    record = store.get_request("lost-1")
    assert record is not None
    # What the worker that has `gone` recorded: its endpoint refuses connections.
    store.save_progress(
        "lost-1", expected_version=record.version, stage=Stage.PENDING, step_index=0,
        step_name=None, state=record.state, error="listing: connection refused", attempts=0,
        next_attempt_at=None, step_started_at=None, infra_id=None, machine_uuid=None,
        addresses=[], events=["listing: connection refused"])
    before = store.get_request("lost-1")
    assert report_errors(reconciler) == ["provider 'gone' is not configured here"]
    assert report_errors(reconciler) == []  # said once, not every pass
    after = store.get_request("lost-1")
    assert after is not None
    assert before is not None
    assert after.error == "listing: connection refused"
    assert after.version == before.version  # nothing written: no event, no note


def report_errors(reconciler: Reconciler) -> list[str]:
    return reconciler.run_pass().errors


def test_delete_during_provisioning_keeps_machine_ids_for_deprovision(
    store: Store, clock: FakeClock, tmp_path: Path, plugin_dir: Path
) -> None:
    reconciler, cloud = make_reconciler(store, clock, tmp_path, plugin_dir, boot_listings=50)
    store.create_request(request("race-1"))
    reconciler.run_pass()
    store.request_deletion("race-1")
    settle(reconciler, store, all_in(store, Stage.GONE))
    assert cloud.machines() == []


def test_seconds_until_due_follows_the_soonest_working_request(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    runtime = Runtime(installation="test", cache_dir=tmp_path, clock=clock, sleep=clock.sleep)
    reconciler = Reconciler(store, {}, runtime)
    assert reconciler.seconds_until_due(10.0, floor=0.5) == 10.0

    def put(rid: str, stage: Stage, after: float | None) -> None:
        record = store.create_request(request(rid))
        store.save_progress(
            rid, expected_version=record.version, stage=stage, step_index=0, step_name=None,
            state={}, error=None, attempts=0,
            next_attempt_at=None if after is None else reconciler.now() + timedelta(seconds=after),
            step_started_at=None, infra_id=None, machine_uuid=None, addresses=(), events=(),
        )

    put("wait-3", Stage.PROVISIONING, 3.0)
    put("done-1", Stage.PROVISIONED, None)  # nothing runs for it: never due
    put("wait-soon", Stage.DEPROVISIONING, 0.1)
    assert reconciler.seconds_until_due(10.0, floor=0.5) == 0.5  # at least the floor
    assert reconciler.seconds_until_due(10.0, floor=0.5, only={"wait-3"}) == 3.0
    assert reconciler.seconds_until_due(2.0, floor=0.5, only={"wait-3"}) == 2.0
    assert reconciler.seconds_until_due(10.0, floor=0.5, only={"done-1"}) == 10.0
    clock.sleep(1.0)  # the runtime's clock, not the wall clock, decides
    assert reconciler.seconds_until_due(10.0, floor=0.5, only={"wait-3"}) == 2.0
    put("now-1", Stage.PENDING, None)
    assert reconciler.seconds_until_due(10.0, floor=0.05) == 0.05
    assert reconciler.seconds_until_due(10.0, floor=0.05, only={"wait-3"}) == 2.0


def test_a_pass_reads_whole_records_only_of_requests_it_works_on(
    tmp_path: Path, clock: FakeClock, plugin_dir: Path
) -> None:
    # Provisioned requests sealed with a key are only looked at by a pass: a
    # reconciler whose store lacks that key still checks them for drift, because
    # it never unseals them.
    url = f"sqlite:///{tmp_path / 'sealed.db'}"
    sealed = Store(url, key="a-key-only-the-first-reconciler-has")
    sealed.migrate()
    first, cloud = make_reconciler(sealed, clock, tmp_path, plugin_dir)
    for i in range(3):
        sealed.create_request(request(f"s-{i}"))
    settle(first, sealed, all_in(sealed, Stage.PROVISIONED))
    sealed.close()

    keyless = Store(url)
    second, _ = make_reconciler(keyless, clock, tmp_path, plugin_dir)
    assert second.run_pass().errors == []
    with cloud.connect() as db:
        db.execute("DELETE FROM machines WHERE request_id = 's-1'")
    second.run_pass()
    second.run_pass()
    stages = {s.id: s.stage for s in keyless.summaries(list(Stage))}
    assert stages == {"s-0": Stage.PROVISIONED, "s-1": Stage.FAILED, "s-2": Stage.PROVISIONED}
