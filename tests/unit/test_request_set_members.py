"""Which requests a request set owns: its own members and nothing of a cluster's.

A request set and a cluster machine set may have the same name on the same
provider instance; each must count (and, scaling down, delete) only its own
requests. Members made by versions before the request-set owner label stay the
set's after an upgrade.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from talprov.providers.protocol import Runtime
from talprov.providers.types import MachineRequest, Stage
from talprov.scaler.apply import Scaler
from talprov.scaler.spec import load_spec_file
from talprov.sets import RequestSet, SetRepository, reconcile_set, set_fingerprint
from talprov.store.store import Store
from tests.unit.test_cluster_apply import write_spec

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def request_set(name: str, count: int) -> RequestSet:
    template = MachineRequest(id="unused", provider="fake", talos_version="v1.11.5",
                              labels={"role": "worker"})
    return RequestSet(name, template, count, False, set_fingerprint(template, count), T0, T0)


def stages(store: Store, ids: list[str]) -> dict[str, Stage]:
    found = {r.request.id: r.stage for r in store.list_requests(ids=ids, include_gone=True)}
    return {rid: found[rid] for rid in ids}


def test_a_request_set_named_like_a_clusters_machine_set_leaves_its_machines_alone(
    tmp_path: Path,
) -> None:
    # Failed before request-set members had their own label: the set "workers"
    # counted the cluster's two workers as its members and deleted them.
    with Store("sqlite://") as store:
        store.migrate()
        scaler = Scaler(store, {}, Runtime(installation="test", cache_dir=tmp_path))
        scaler.record(load_spec_file(write_spec(tmp_path, workers=2, control_planes=1)))
        scaler.run_pass("demo")
        cluster_ids = sorted(r.request.id for r in scaler.records("demo"))
        assert len(cluster_ids) == 3
        repo = SetRepository(store)

        stored = repo.put(request_set("workers", 1))
        changes = reconcile_set(repo, stored)
        assert set(stages(store, cluster_ids).values()) == {Stage.PENDING}
        assert changes.created == ("workers-0",)
        assert [m.request.id for m in repo.members(stored)] == ["workers-0"]

        emptied = repo.put(request_set("workers", 0))
        assert reconcile_set(repo, emptied).deleted == ("workers-0",)
        assert set(stages(store, cluster_ids).values()) == {Stage.PENDING}
        # And the cluster does not count the request set's member as its own.
        assert sorted(r.request.id for r in scaler.records("demo")) == cluster_ids


def legacy_member(store: Store, request_id: str, created: datetime, **labels: str) -> None:
    """A request as versions before the request-set label stored a member."""
    store.create_request(MachineRequest(
        id=request_id, provider="fake", talos_version="v1.11.5",
        labels={"role": "worker", "talprov.set": "pool", **labels}), now=created)


def test_members_made_before_the_owner_label_stay_the_sets_without_duplicates() -> None:
    with Store("sqlite://") as store:
        store.migrate()
        legacy_member(store, "pool-0", T0)
        legacy_member(store, "pool-1", T0 + timedelta(minutes=1))
        # Not members: a cluster's machine of a set "pool", an id outside the
        # set's scheme, and a request of another provider instance.
        legacy_member(store, "pool-7", T0, **{"talprov.cluster": "prod"})
        legacy_member(store, "pool-x", T0)
        store.create_request(MachineRequest(id="pool-9", provider="other",
                                            talos_version="v1.11.5",
                                            labels={"talprov.set": "pool"}))
        repo = SetRepository(store)

        stored = repo.put(request_set("pool", 2))
        assert reconcile_set(repo, stored).created == ()  # no duplicates after the upgrade
        assert [m.request.id for m in repo.members(stored)] == ["pool-0", "pool-1"]

        grown = repo.put(request_set("pool", 3))
        assert reconcile_set(repo, grown).created == ("pool-2",)
        new = store.get_request("pool-2")
        assert new is not None
        assert new.request.labels == {"role": "worker", "talprov.request-set": "pool"}

        shrunk = repo.put(request_set("pool", 1))
        # All pending workers: the oldest go first.
        assert reconcile_set(repo, shrunk).deleted == ("pool-0", "pool-1")
        assert stages(store, ["pool-2", "pool-7", "pool-x", "pool-9"]) == {
            "pool-2": Stage.PENDING, "pool-7": Stage.PENDING, "pool-x": Stage.PENDING,
            "pool-9": Stage.PENDING,
        }
