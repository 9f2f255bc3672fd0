"""The scaler end to end: spec → plan → requests → machines, against the provider double."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from talprov.providers.protocol import Runtime
from talprov.providers.types import Stage
from talprov.reconcile.failures import StepPolicy
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.registry import build_provider
from talprov.scaler.apply import Scaler
from talprov.scaler.spec import load_spec_file
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.helpers import WORKER_CONFIG, Home
from tests.providers.fileprov import Cloud


def write_spec(root: Path, *, workers: int = 2, control_planes: int = 3,
               version: str = "v1.13.9", max_surge: int = 1) -> Path:
    (root / "controlplane.yaml").write_text(WORKER_CONFIG.replace("type: worker",
                                                                  "type: controlplane"))
    (root / "worker.yaml").write_text(WORKER_CONFIG)
    docs = [
        {"kind": "Cluster", "name": "demo", "talos": {"version": version}},
        {"kind": "MachineClass", "name": "small", "provider": "fake",
         "provider_data": {"size": "small"}},
        {"kind": "ControlPlane", "machineClass": {"name": "small", "size": control_planes},
         "config": {"file": "controlplane.yaml"}},
        {"kind": "Workers", "name": "workers", "machineClass": {"name": "small", "size": workers},
         "config": {"file": "worker.yaml"},
         "update": {"maxSurge": max_surge, "maxUnavailable": 0}, "deleteOrder": "oldest"},
    ]
    path = root / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def test_apply_scale_plan_and_destroy_through_the_cli(home: Home) -> None:
    cloud = Cloud(home.cloud_path())
    spec = write_spec(home.root)
    result = home.invoke("apply", "-f", str(spec), "--wait", "-o", "json")
    assert result.exit_code == 0, result.output
    assert len(cloud.machines()) == 5
    status = json.loads(home.invoke("status", "demo", "-o", "json").output)
    assert status["cluster"] == "demo"
    sets = {s["name"]: s for s in status["sets"]}
    assert (sets["control-planes"]["desired"], sets["control-planes"]["provisioned"]) == (3, 3)
    assert (sets["workers"]["desired"], sets["workers"]["provisioned"]) == (2, 2)
    assert {s["failed"] for s in status["sets"]} == {0}

    spec = write_spec(home.root, workers=5)
    preview = json.loads(home.invoke("plan", "-f", str(spec), "-o", "json").output)
    assert preview["summary"] == {"create": 3, "delete": 0, "replace": 0}
    assert {a["set"] for a in preview["actions"]} == {"workers"}
    assert len(cloud.machines()) == 5  # plan changed nothing

    spec = write_spec(home.root, workers=1)
    home.invoke("machine", "mark-delete", sorted(
        r["id"] for r in json.loads(home.invoke("machine", "list", "-o", "json").output)
        if r["labels"]["talprov.set"] == "workers")[-1])
    preview = json.loads(home.invoke("plan", "-f", str(spec), "-o", "json").output)
    assert preview["summary"] == {"create": 0, "delete": 1, "replace": 0}
    marked = [r["id"] for r in json.loads(home.invoke("machine", "list", "-o", "json").output)
              if r["marked_for_deletion"]]
    assert [a["request"] for a in preview["actions"]] == marked  # the marked one goes first

    result = home.invoke("destroy", "demo", "--wait", "--yes")
    assert result.exit_code == 0, result.output
    assert cloud.machines() == []
    assert home.invoke("status", "demo").exit_code == 1


def test_scale_command_and_scale_down_deletes_by_priority(home: Home) -> None:
    cloud = Cloud(home.cloud_path())
    spec = write_spec(home.root, control_planes=1, workers=5)
    assert home.invoke("apply", "-f", str(spec), "--wait").exit_code == 0
    assert len(cloud.machines()) == 6
    spec = write_spec(home.root, control_planes=1, workers=1)
    preview = json.loads(home.invoke("plan", "-f", str(spec), "-o", "json").output)
    assert preview["summary"] == {"create": 0, "delete": 4, "replace": 0}
    records = json.loads(home.invoke("machine", "list", "-o", "json").output)
    workers = sorted((r["created_at"], r["id"]) for r in records
                     if r["labels"]["talprov.set"] == "workers")
    oldest_four = {rid for _, rid in workers[:4]}
    assert {a["request"] for a in preview["actions"]} == oldest_four  # deleteOrder: oldest

    result = home.invoke("scale", "demo", "workers", "2")
    assert result.exit_code == 0, result.output
    assert home.invoke("reconcile", "--once").exit_code == 0
    for _ in range(10):
        home.invoke("reconcile", "--once")
    assert len(cloud.machines()) == 3
    bad = home.invoke("scale", "demo", "nosuch", "2")
    assert bad.exit_code == 1  # an unknown name
    assert "has no set 'nosuch'" in bad.output


def scaler_world(tmp_path: Path, plugin_dir: Path, **config: object
                 ) -> tuple[Scaler, Reconciler, Cloud, FakeClock, Store]:
    clock = FakeClock()
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache", clock=clock,
                      sleep=clock.sleep)
    raw = {"type": "file", "path": str(tmp_path / "cloud.sqlite"), **config}
    provider = build_provider("fake", raw, runtime, where="providers.fake")
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    handles = {"fake": ProviderHandle(provider, 4)}
    reconciler = Reconciler(store, handles, runtime,
                            policy=StepPolicy(max_attempts=2, capacity_attempts=1))
    return Scaler(store, handles, runtime), reconciler, Cloud(str(raw["path"])), clock, store


def provisioned_by_set(store: Store) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in store.list_requests(stages=[Stage.PROVISIONED]):
        name = record.request.labels["talprov.set"]
        counts[name] = counts.get(name, 0) + 1
    return counts


def converge(scaler: Scaler, reconciler: Reconciler, clock: FakeClock, passes: int = 50) -> None:
    """Scaler and reconcile passes, a second apart, until cluster "demo" converged."""
    for _ in range(passes):
        scaler.run_pass("demo")
        reconciler.run_pass()
        clock.sleep(1)
        if scaler.converged("demo"):
            return


def test_rolling_version_change_never_drops_below_size(tmp_path: Path, plugin_dir: Path) -> None:
    scaler, reconciler, cloud, clock, store = scaler_world(tmp_path, plugin_dir)
    scaler.record(load_spec_file(write_spec(tmp_path)))
    converge(scaler, reconciler, clock)
    assert provisioned_by_set(store) == {"control-planes": 3, "workers": 2}
    old = {r.request.id for r in store.list_requests()}

    scaler.record(load_spec_file(write_spec(tmp_path, version="v1.11.6")))
    passes = 0
    while not scaler.converged("demo"):
        passes += 1
        assert passes < 200, "rolling update did not converge"
        scaler.run_pass("demo")
        reconciler.run_pass()
        clock.sleep(1)
        counts = provisioned_by_set(store)
        assert counts.get("control-planes", 0) >= 3, (passes, counts)
        assert counts.get("workers", 0) >= 2, (passes, counts)
    live = store.list_requests()
    assert not old & {r.request.id for r in live}  # every machine was replaced
    assert {r.request.talos_version for r in live} == {"v1.11.6"}
    assert len(cloud.machines()) == 5


def test_failing_creates_back_off_and_trip_the_circuit_breaker(tmp_path: Path,
                                                               plugin_dir: Path) -> None:
    scaler, reconciler, cloud, clock, store = scaler_world(tmp_path, plugin_dir,
                                                          fail_creates=True)
    scaler.record(load_spec_file(write_spec(tmp_path)))
    for _ in range(200):
        scaler.run_pass("demo")
        reconciler.run_pass()
        clock.sleep(5)
    attempts = cloud.calls("create_failed")
    requests = len(store.list_requests(include_gone=True))
    # 5 machines wanted; without backoff and a breaker 200 passes would try ~1,000 times.
    assert attempts <= 10, attempts
    assert requests <= 10, requests
    state = scaler.state("demo")
    assert state is not None
    status = {s.name: s for s in scaler.preview(state).sets}
    assert status["workers"].circuit_breaker_open or status["workers"].backoff_until is not None
    assert status["control-planes"].failed >= 1


def test_a_failing_orphan_listing_is_warned_about_once_per_change(
        tmp_path: Path, plugin_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    # An empty api_secret makes the file provider's listing raise AuthError.
    scaler, _reconciler, _cloud, _clock, store = scaler_world(tmp_path, plugin_dir,
                                                              api_secret="")
    scaler.record(load_spec_file(write_spec(tmp_path, workers=1, control_planes=1)))
    with caplog.at_level(logging.WARNING, logger="talprov.scaler.apply"):
        for _ in range(3):
            scaler.run_pass("demo")
    warned = [r for r in caplog.records if "cannot list machines for orphans" in r.message]
    assert len(warned) == 1
    store.close()


def test_a_failed_machine_is_said_once_with_its_error_while_waiting(
        home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    # QA: `apply --wait` with a subnet that does not exist waited out --timeout
    # (3600 s) saying only "not converged"; the create's error was never shown.
    from talprov.cli.cluster_loop import _tell_failures
    from talprov.providers.types import Stage as Stages

    assert home.invoke("apply", "-f", str(write_spec(home.root, workers=1,
                                                     control_planes=1))).exit_code == 0
    store = Store(home.store_url)
    summary = next(s for s in store.summaries([Stages.PENDING]) if "workers" in s.id)
    store.note_observed(summary.id, expected_version=summary.version, stage=Stages.FAILED,
                        error="ensure-machine: InvalidSubnetID.NotFound: subnet-nope")
    scaler = Scaler(store, {}, Runtime(installation="test", cache_dir=home.root / "c"))
    told: set[str] = set()
    _tell_failures(scaler, "demo", told)
    _tell_failures(scaler, "demo", told)
    err = capsys.readouterr().err
    assert err.count(f"warning: {summary.id} failed: ") == 1, err
    assert "InvalidSubnetID.NotFound: subnet-nope" in err


def test_apply_wait_says_a_failure_of_its_own_pass_once(home: Home) -> None:
    # QA: a machine this very process failed was said twice: by the reconciler's
    # stage line (talprov.stages, WARNING) and again by the wait's failure line.
    home.providers["fake"]["fail_creates"] = True
    home.write_config()
    spec = write_spec(home.root, workers=1, control_planes=1)
    result = home.invoke("apply", "-f", str(spec), "--wait", "--timeout", "10")
    assert result.exit_code == 1, result.output
    failed = [r.request.id for r in Store(home.store_url).list_requests(stages=[Stage.FAILED])]
    assert failed, result.output
    for request_id in failed:
        said = [line for line in result.stderr.splitlines()
                if request_id in line and "failed" in line and "no capacity" in line]
        assert len(said) == 1, result.stderr


def test_apply_wait_says_a_refused_orphan_listing_once(home: Home) -> None:
    # QA: `apply --wait` against refused credentials said "cannot list machines for
    # orphans" twice in 8 s: apply's own pass and the wait's loop each kept a
    # backoff of their own, so each found the failure new.
    home.providers["fake"]["api_secret"] = ""  # the file provider's listing refuses
    home.write_config()
    result = home.invoke("apply", "--wait", "--timeout", "2", "-f",
                         str(write_spec(home.root, control_planes=1, workers=0)))
    assert result.exit_code == 1, result.output
    assert result.stderr.count("cannot list machines for orphans") == 1, result.stderr
