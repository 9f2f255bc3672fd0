"""`talprov reconcile` and `talprov serve`'s worker do the same work.

Two installations are seeded identically (a request set, a cluster spec, a
single request); one is driven by the CLI (`talprov reconcile --once`, round
after round), the other by the reconcile loop the service runs (its thread,
without HTTP). Both must end with the same requests, stages, labels, sets and
clusters, first when creating and then when scaling down and destroying.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from talprov.cli.app import App
from talprov.providers.protocol import Runtime
from talprov.providers.types import MachineRequest, Stage
from talprov.scaler.apply import Scaler
from talprov.scaler.spec import load_spec_file
from talprov.service.metrics import Metrics
from talprov.service.workers import ReconcileLoop
from talprov.sets import RequestSet, SetRepository, set_fingerprint
from talprov.store.store import Store
from tests.helpers import WORKER_CONFIG, Home
from tests.unit.test_cluster_apply import write_spec

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def make_home(root: Path, plugin_dir: Path) -> Home:
    root.mkdir()
    home = Home(root=root, plugin_dir=plugin_dir)
    home.providers["fake"] = {"type": "file", "path": home.cloud_path(), "boot_listings": 1}
    home.write_config()
    return home


def seed(app: App, root: Path) -> None:
    (root / "worker.yaml").write_text(WORKER_CONFIG)
    template = MachineRequest.model_validate({
        "id": "unused", "provider": "fake", "talos_version": "v1.11.5",
        "labels": {"role": "worker"}, "machine_config": WORKER_CONFIG})
    SetRepository(app.store).put(RequestSet("pool", template, 3, False,
                                            set_fingerprint(template, 3), NOW, NOW))
    Scaler(app.store, {}, app.runtime).record(
        load_spec_file(write_spec(root, workers=2, control_planes=1)))
    app.store.create_request(template.model_copy(update={"id": "solo", "labels": {}}))


def change(app: App) -> None:
    """Scale the request set down and destroy the cluster."""
    repo = SetRepository(app.store)
    pool = repo.get("pool")
    assert pool is not None
    repo.put(replace(pool, machine_count=1, fingerprint=set_fingerprint(pool.template, 1)))
    scaler = Scaler(app.store, {}, app.runtime)
    # Under the cluster's lease, as `talprov destroy` does: a pass of the running
    # service loop would otherwise write its older copy (not destroying) over it.
    with scaler.editing("demo"):
        assert scaler.destroy("demo")


def snapshot(store: Store) -> dict[str, Any]:
    """The store's state without what differs by chance (random cluster request ids,
    timestamps): every request by id or, for a cluster's, by its set."""
    requests = []
    for record in store.list_requests(include_gone=True):
        labels = record.request.labels
        key = (f"{labels['talprov.cluster']}/{labels['talprov.set']}"
               if "talprov.cluster" in labels else record.request.id)
        requests.append((key, record.request.provider, record.stage.value, record.error,
                         sorted(labels.items())))
    sets = []
    repo = SetRepository(store)
    for request_set in repo.all():
        sets.append((request_set.name, request_set.machine_count, request_set.deleting,
                     [(m.request.id, m.stage.value) for m in repo.members(request_set)]))
    clusters = []
    for name in store.list_clusters():
        state = Scaler(store, {}, Runtime()).state(name)
        assert state is not None
        clusters.append((name, state.destroying, sorted(state.spec.sets)))
    return {"requests": sorted(requests), "sets": sets, "clusters": clusters}


def settled(store: Store) -> bool:
    """Nothing in flight: every request provisioned or gone, every set at its size."""
    if any(r.stage not in (Stage.PROVISIONED, Stage.GONE) for r in store.list_requests()):
        return False
    repo = SetRepository(store)
    for request_set in repo.all():
        if len(repo.members(request_set)) != request_set.machine_count:
            return False
    clusters = Scaler(store, {}, Runtime())
    return all(clusters.converged(name) for name in store.list_clusters())


def wait(condition: Callable[[], bool], step: Callable[[], None], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not settle"
        step()


def test_reconcile_and_the_service_worker_reach_the_same_state(
    tmp_path: Path, plugin_dir: Path
) -> None:
    cli_home = make_home(tmp_path / "cli", plugin_dir)
    service_home = make_home(tmp_path / "service", plugin_dir)
    cli_app = App(config_path=str(cli_home.config_path), store_url=None)
    service_app = App(config_path=str(service_home.config_path), store_url=None)
    loop = ReconcileLoop(service_app.store, service_app.all_handles(), service_app.runtime,
                         metrics=Metrics(), interval=0.2, lease_ttl=30.0, worker_id="service")

    def cli_round() -> None:
        result = cli_home.invoke("reconcile", "--once")
        assert result.exit_code == 0, result.output
        time.sleep(0.1)

    try:
        seed(cli_app, cli_home.root)
        seed(service_app, service_home.root)
        assert snapshot(cli_app.store) == snapshot(service_app.store)
        loop.start()
        wait(lambda: settled(cli_app.store), cli_round, "talprov reconcile")
        wait(lambda: settled(service_app.store), lambda: time.sleep(0.1), "the service loop")
        first = snapshot(cli_app.store)
        assert first == snapshot(service_app.store)
        assert [s[0] for s in first["sets"]] == ["pool"]
        assert len(first["sets"][0][3]) == 3  # the request set was reconciled by both
        assert len(first["requests"]) == 7  # 3 set members, 3 cluster machines, solo

        change(cli_app)
        change(service_app)
        wait(lambda: settled(cli_app.store) and not cli_app.store.list_clusters(),
             cli_round, "talprov reconcile")
        wait(lambda: settled(service_app.store) and not service_app.store.list_clusters(),
             lambda: time.sleep(0.1), "the service loop")
        second = snapshot(cli_app.store)
        assert second == snapshot(service_app.store)
        live = [r[0] for r in second["requests"] if r[2] != "gone"]
        assert live == ["pool-2", "solo"]  # the two oldest members went
        assert second["clusters"] == []
    finally:
        loop.stop()
        cli_app.close()
        service_app.close()
