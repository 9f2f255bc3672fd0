"""A request id starting with ``h-`` lists as itself, on new and old VMs alike.

``h-<digest>`` is how a tag carries a value that is not tag-safe, so a value
starting with ``h-`` was digested too. Request ids are always tag-safe, but a
legal one may start with ``h-``: its VM's request tag carried a digest, the
listing named the VM's request ``h-<digest>``, and the reconciler, matching
listed machines to requests by id, saw the request's VM missing: a provisioned
request failed as "machine lost" two passes later, its VM left running, and
a second VM of the request was nobody's: never removed.

VMs now carry the request id itself; VMs made before carry the digest, and are
still the request's: the digest of their name (talprov names a VM after its
request) is what they carry.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from talprov.providers.ownership import REQUEST_KEY, label_digest, ownership_tags
from talprov.providers.types import Owner, Stage
from talprov.proxmox.provider import ProxmoxProvider
from talprov.proxmox.tags import (
    SEPARATOR,
    decode_tags,
    encode_tags,
    listed_request_id,
    request_mark_values,
)
from talprov.reconcile.reconciler import Reconciler
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.emulators.fakepve import FakePveServer
from tests.reconciling import reconciler_of, sqlite_store
from tests.unit.proxmox.conftest import machine_request

RID = "h-web-1"
NODE = "pve1"


@pytest.mark.parametrize("rid", [RID, "h-" + "0" * 60 + "a", "h", "7", "0123456789",
                                 "a" * 63, label_digest("h-web-2")])
def test_every_legal_id_is_tagged_and_read_back_as_itself(owner: Owner, rid: str) -> None:
    marks = decode_tags(encode_tags(ownership_tags(owner, machine_request(rid))))

    assert marks[REQUEST_KEY] == rid
    assert rid in request_mark_values(rid)
    for name in (rid, "renamed", None):  # a VM made now needs no name
        assert listed_request_id(marks, name) == rid


def test_an_older_vms_digest_reads_back_through_its_name_only() -> None:
    older = {REQUEST_KEY: label_digest(RID)}

    assert label_digest(RID) in request_mark_values(RID)
    assert listed_request_id(older, RID) == RID
    assert listed_request_id(older, "h-web-2") == label_digest(RID)
    assert listed_request_id(older, None) == label_digest(RID)
    assert listed_request_id({}, RID) is None


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    yield from sqlite_store(tmp_path)


@pytest.fixture
def reconciler(store: Store, provider: ProxmoxProvider) -> Reconciler:
    return reconciler_of(store, "lab", provider)


def _provision(store: Store, reconciler: Reconciler) -> str:
    store.create_request(machine_request(RID))

    def done() -> bool:
        record = store.get_request(RID)
        return record is not None and record.stage in (Stage.PROVISIONED, Stage.FAILED)

    assert reconciler.run_until(done, timeout=600)
    record = store.get_request(RID)
    assert record is not None
    assert record.stage == Stage.PROVISIONED, record.error
    assert record.infra_id is not None
    return record.infra_id


def _stage_after_passes(store: Store, reconciler: Reconciler, passes: int = 3) -> Stage:
    # More passes than the drift check's missed listings before "machine lost".
    for _ in range(passes):
        reconciler.run_pass()
    record = store.get_request(RID)
    assert record is not None
    return record.stage


def _retag_as_before(fakepve: FakePveServer, vmid: str) -> None:
    """Give the VM the request tag versions before this one wrote: the digest."""
    (vm,) = [v for v in fakepve.vms() if str(v["vmid"]) == vmid]
    tags = [t for t in str(vm["config"]["tags"]).split(";")
            if not t.startswith(REQUEST_KEY + SEPARATOR)]
    tags.append(f"{REQUEST_KEY}{SEPARATOR}{label_digest(RID)}")
    fakepve.control("set_vm", vmid=int(vmid),
                    attrs={"config": {**vm["config"], "tags": ";".join(sorted(tags))}})


def test_an_h_prefixed_request_stays_provisioned_and_lists_as_itself(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, store: Store,
    reconciler: Reconciler,
) -> None:
    vmid = _provision(store, reconciler)

    assert [(m.infra_id, m.request_id) for m in provider.list_machines(owner)] == [(vmid, RID)]
    assert _stage_after_passes(store, reconciler) == Stage.PROVISIONED
    (vm,) = fakepve.vms()
    assert decode_tags(vm["config"]["tags"])[REQUEST_KEY] == RID  # the id itself


def test_a_vm_tagged_with_the_digest_before_is_still_the_requests(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, store: Store,
    reconciler: Reconciler,
) -> None:
    vmid = _provision(store, reconciler)
    _retag_as_before(fakepve, vmid)

    assert [(m.infra_id, m.request_id) for m in provider.list_machines(owner)] == [(vmid, RID)]
    assert _stage_after_passes(store, reconciler) == Stage.PROVISIONED

    store.request_deletion(RID)

    def gone() -> bool:
        record = store.get_request(RID)
        return record is not None and record.stage == Stage.GONE

    assert reconciler.run_until(gone, timeout=600)
    assert fakepve.vms() == []


@pytest.mark.parametrize("older", [False, True])
def test_a_second_vm_of_an_h_prefixed_request_is_removed(
    fakepve: FakePveServer, provider: ProxmoxProvider, store: Store, reconciler: Reconciler,
    clock: FakeClock, older: bool,
) -> None:
    # A create started again leaves a VM of the same name and tags beside the kept one.
    kept = _provision(store, reconciler)
    if older:
        _retag_as_before(fakepve, kept)
    (vm,) = fakepve.vms()
    second = int(kept) + 1
    upid = provider.client.post("create VM", f"nodes/{NODE}/qemu", vmid=second, name=RID,
                                tags=vm["config"]["tags"], memory=2048)
    provider.client.wait_task(NODE, upid, "create VM", clock=clock, sleep=clock.sleep)

    assert reconciler.run_pass().second_machines == 1

    assert [str(v["vmid"]) for v in fakepve.vms()] == [kept]
    assert _stage_after_passes(store, reconciler) == Stage.PROVISIONED


def test_a_renamed_vm_tagged_with_the_digest_lists_its_digest(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, store: Store,
    reconciler: Reconciler,
) -> None:
    # Nothing ties the digest to an id any more: the listing says what it read
    # (the steps, which know the id, still find the VM by its digest).
    vmid = _provision(store, reconciler)
    _retag_as_before(fakepve, vmid)
    fakepve.control("set_vm", vmid=int(vmid), attrs={"name": "renamed"})

    assert [m.request_id for m in provider.list_machines(owner)] == [label_digest(RID)]
