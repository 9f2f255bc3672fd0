"""``talprov status`` without a name: one row per cluster from a fixed number of
request queries, however many clusters there are (it read each cluster's
requests with a query of their own, unsealing every machine config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr

from talprov.cli.cluster import cluster_rows
from talprov.providers.labels import LABEL_CLUSTER
from talprov.providers.protocol import Runtime
from talprov.providers.types import MachineRequest, Stage
from talprov.scaler.apply import Scaler
from talprov.scaler.spec import load_spec_file
from talprov.store.store import Store
from tests.helpers import WORKER_CONFIG
from tests.unit.test_cluster_apply import write_spec


def recorded(tmp_path: Path, clusters: int) -> Scaler:
    """A store with clusters c0..c{n-1}; cluster ci has i + 1 requests, its first
    provisioned, plus one gone request that counts nowhere."""
    store = Store(f"sqlite:///{tmp_path / f'state-{clusters}.db'}")
    store.migrate()
    scaler = Scaler(store, {}, Runtime(installation="test", cache_dir=tmp_path / "cache"))
    spec = load_spec_file(write_spec(tmp_path, workers=1, control_planes=1))
    for index in range(clusters):
        name = f"c{index}"
        scaler.record(spec.model_copy(update={"name": name}))
        for member in range(index + 1):
            record = store.create_request(MachineRequest(
                id=f"{name}-{member}", provider="fake", talos_version="v1.13.9",
                machine_config=SecretStr(WORKER_CONFIG), labels={LABEL_CLUSTER: name}))
            if member == 0:
                store.save_progress(
                    record.request.id, expected_version=record.version,
                    stage=Stage.PROVISIONED, step_index=1, step_name=None, state={},
                    error=None, attempts=0, next_attempt_at=None, step_started_at=None,
                    infra_id="m", machine_uuid=None, addresses=(), events=())
        gone = store.create_request(MachineRequest(
            id=f"{name}-gone", provider="fake", talos_version="v1.13.9",
            machine_config=SecretStr(WORKER_CONFIG), labels={LABEL_CLUSTER: name}))
        store.save_progress(
            gone.request.id, expected_version=gone.version, stage=Stage.GONE, step_index=0,
            step_name=None, state={}, error=None, attempts=0, next_attempt_at=None,
            step_started_at=None, infra_id=None, machine_uuid=None, addresses=(), events=())
    return scaler


def request_queries(scaler: Scaler) -> tuple[list[dict[str, Any]], int]:
    """``cluster_rows`` and how many statements it sent that read requests."""
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = scaler.store._engine
    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        rows = cluster_rows(scaler)
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)
    return rows, sum(" requests" in s for s in statements)


def test_status_reads_the_requests_of_every_cluster_in_one_query(tmp_path: Path) -> None:
    few_rows, few = request_queries(recorded(tmp_path, 2))
    many_rows, many = request_queries(recorded(tmp_path, 6))
    assert few == many == 1
    assert [(r["cluster"], r["requests"], r["provisioned"]) for r in few_rows] == [
        ("c0", 1, 1), ("c1", 2, 1)]
    assert [(r["cluster"], r["requests"], r["provisioned"]) for r in many_rows] == [
        (f"c{i}", i + 1, 1) for i in range(6)]


OTHER_KEY = "the key of another installation, 32 bytes"
OUR_KEY = "this installation's own key, 32 bytes or more"


def sealed_under_two_keys(tmp_path: Path) -> str:
    """Cluster demo (recorded under our key) with four requests: demo-0 (provisioned)
    and demo-2 (pending) sealed under another key, demo-1 (provisioned) under ours,
    demo-3 (provisioned) stored without a key. The store's URL."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    ours = Store(url, key=OUR_KEY)
    ours.migrate()
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache")
    spec = load_spec_file(write_spec(tmp_path, workers=1, control_planes=1))
    Scaler(ours, {}, runtime).record(spec.model_copy(update={"name": "demo"}))
    stores = {0: Store(url, key=OTHER_KEY), 1: ours, 2: Store(url, key=OTHER_KEY),
              3: Store(url)}
    for member, store in stores.items():
        record = store.create_request(MachineRequest(
            id=f"demo-{member}", provider="fake", talos_version="v1.13.9",
            machine_config=SecretStr(WORKER_CONFIG), labels={LABEL_CLUSTER: "demo"}))
        if member != 2:
            store.save_progress(
                record.request.id, expected_version=record.version,
                stage=Stage.PROVISIONED, step_index=1, step_name=None, state={},
                error=None, attempts=0, next_attempt_at=None, step_started_at=None,
                infra_id="m", machine_uuid=None, addresses=(), events=())
    return url


def test_requests_sealed_under_another_key_are_unreadable_not_provisioned(
        tmp_path: Path) -> None:
    """QA: `status` without a name counted a provisioned request sealed under another
    key as provisioned, where `status demo` and `plan` count it as unreadable."""
    url = sealed_under_two_keys(tmp_path)
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache")
    scaler = Scaler(Store(url, key=OUR_KEY), {}, runtime)
    [row], queries = request_queries(scaler)
    assert (row["requests"], row["provisioned"], row["unreadable"]) == (4, 2, 2)
    assert queries == 1
    # Each request as `status demo` reads it: the same ones are unreadable.
    unreadable = {r.request.id for r in scaler.store.list_requests() if r.unreadable}
    assert unreadable == {"demo-0", "demo-2"}
    # Without a key, everything sealed is unreadable; the plain request reads.
    [keyless] = cluster_rows(Scaler(Store(url), {}, runtime))
    assert (keyless["requests"], keyless["provisioned"], keyless["unreadable"]) == (4, 1, 3)


def test_requests_sealed_before_key_ids_were_stored_are_told_apart_too(
        tmp_path: Path) -> None:
    # Rows written before revision 0008 have no key id: decrypted to tell, in a
    # second query made only for them; those our key opens then get its id (one
    # UPDATE), so the next status reads only the two sealed under another key.
    url = sealed_under_two_keys(tmp_path)
    store = Store(url, key=OUR_KEY)
    with store._engine.begin() as conn:
        conn.execute(sa.text("UPDATE requests SET sealed_with = NULL"))
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache")
    [row], queries = request_queries(Scaler(store, {}, runtime))
    assert (row["requests"], row["provisioned"], row["unreadable"]) == (4, 2, 2)
    assert queries == 3
    [again], queries = request_queries(Scaler(store, {}, runtime))
    assert again == row
    assert queries == 2
