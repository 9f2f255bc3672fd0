"""A cluster being destroyed: changes to it are refused, not a silent undo of the
destroy (QA: `scale` and `apply -f` cleared the mark and recorded new machines)."""

from __future__ import annotations

import json
import time

import pytest

from talprov.providers.protocol import Runtime
from talprov.scaler.apply import Scaler
from talprov.scaler.clusterstate import ClusterBeingDestroyed
from talprov.scaler.spec import load_spec_file
from talprov.store.store import Store
from tests.helpers import Home
from tests.unit.test_cluster_apply import write_spec


def _destroying(home: Home) -> None:
    """Cluster demo with its machines up, then destroyed without --wait: no
    reconcile runs here, so it stays being destroyed."""
    spec = write_spec(home.root, control_planes=1, workers=1)
    assert home.invoke("apply", "-f", str(spec), "--wait").exit_code == 0
    destroyed = home.invoke("destroy", "demo", "--yes")
    assert destroyed.exit_code == 0, destroyed.output


def _state_and_ids(home: Home) -> tuple[str, list[str]]:
    rows = json.loads(home.invoke("status", "-o", "json").output)
    ids = sorted(r["id"] for r in json.loads(home.invoke("machine", "list", "-o", "json").output))
    return next(r["state"] for r in rows if r["cluster"] == "demo"), ids


def _assert_refused(output: str) -> None:
    assert "cluster demo is being destroyed" in output, output
    assert "cannot be undone" in output, output
    assert "then apply its spec again" in output, output
    # A destroy that cannot finish must not lock the name for good (review).
    assert "talprov machine forget ID --reason" in output, output


@pytest.mark.parametrize("command", [("scale", "demo", "workers", "3"),
                                     ("apply", "-f", "cluster.yaml"),
                                     ("plan", "-f", "cluster.yaml")])
def test_a_change_to_a_cluster_being_destroyed_is_refused(home: Home,
                                                          command: tuple[str, ...]) -> None:
    _destroying(home)
    before = _state_and_ids(home)
    assert before[0] == "destroying"
    args = [str(home.root / a) if a == "cluster.yaml" else a for a in command]
    refused = home.invoke(*args)
    assert refused.exit_code == 1, refused.output  # as for a cluster whose lease is busy
    _assert_refused(refused.output)
    assert "Plan:" not in refused.output
    assert _state_and_ids(home) == before  # still destroying, no new request


def test_the_scaler_refuses_to_record_over_a_destroy(home: Home) -> None:
    # The one path every writer of a spec takes (apply, scale, the autoscaler, the
    # demo), checked under the cluster's lease where they hold it.
    _destroying(home)
    store = Store(home.store_url)
    scaler = Scaler(store, {}, Runtime(installation="test", cache_dir=home.root / "c"))
    state = scaler.state("demo")
    assert state is not None
    assert state.destroying
    with pytest.raises(ClusterBeingDestroyed) as raised:
        scaler.record(load_spec_file(home.root / "cluster.yaml"))
    _assert_refused(str(raised.value))
    with pytest.raises(ClusterBeingDestroyed):
        scaler.record(state.spec.scaled("workers", 3), keep_autoscaled_sizes=False)
    after = scaler.state("demo")
    assert after is not None
    assert after.destroying
    store.close()


# -- status while being destroyed ----------------------------------------------------
# QA: `status demo` printed "(none)" (exit 0) and -o json {"cluster": "demo", "sets":
# []} with no state, while `status` (the list) said "destroying".


def test_status_of_a_cluster_being_destroyed_shows_what_is_left(home: Home) -> None:
    _destroying(home)
    document = json.loads(home.invoke("status", "demo", "-o", "json").output)
    assert document["cluster"] == "demo"
    assert document["state"] == "destroying"
    sets = {s["name"]: s for s in document["sets"]}
    assert set(sets) == {"control-planes", "workers"}
    for machine_set in sets.values():
        # The destroy's pass asked for every machine's deletion; none is gone yet.
        assert (machine_set["desired"], machine_set["deleting"]) == (0, 1), machine_set
        assert machine_set["provisioned"] == 0
    assert sets["control-planes"]["role"] == "controlplane"
    table = home.invoke("status", "demo")
    assert table.exit_code == 0, table.output
    assert "(none)" not in table.output
    assert "demo: being destroyed" in table.output
    assert "workers" in table.output


def test_status_document_names_the_state_of_a_recorded_cluster(home: Home) -> None:
    spec = write_spec(home.root, control_planes=1, workers=1)
    assert home.invoke("apply", "-f", str(spec)).exit_code == 0
    document = json.loads(home.invoke("status", "demo", "-o", "json").output)
    assert list(document) == ["cluster", "state", "sets"]
    assert document["state"] == "recorded"
    assert "being destroyed" not in home.invoke("status", "demo").output


@pytest.mark.parametrize("fmt", ["json", "table"])
def test_status_watch_shows_the_sets_shrink_then_the_cluster_gone_and_stops(
        home: Home, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    _destroying(home)
    rounds: list[float] = []

    def sleep(seconds: float) -> None:
        # Each round of the watch, one reconcile round carries the destroy on.
        rounds.append(seconds)
        if len(rounds) > 30:
            raise KeyboardInterrupt  # the watch never saw the cluster go
        assert home.invoke("reconcile", "--once").exit_code == 0

    monkeypatch.setattr(time, "sleep", sleep)
    result = home.invoke("status", "demo", "--watch", "1", "-o", fmt)
    assert result.exit_code == 0, result.output  # it stopped by itself
    if fmt == "table":
        assert "demo: being destroyed" in result.stdout
        assert result.stdout.rstrip().endswith("demo: destroyed (no longer recorded)")
        assert "(none)" not in result.stdout
        return
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["state"] for d in documents[:-1]] == ["destroying"] * (len(documents) - 1)
    assert documents[-1] == {"cluster": "demo", "state": "destroyed", "sets": []}
    left = [sum(s["deleting"] + s["provisioned"] for s in d["sets"]) for d in documents]
    assert left[0] == 2
    assert left == sorted(left, reverse=True)  # what is left only shrinks
