"""A cluster being destroyed: changes to it are refused, not a silent undo of the
destroy (QA: `scale` and `apply -f` cleared the mark and recorded new machines)."""

from __future__ import annotations

import json

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
