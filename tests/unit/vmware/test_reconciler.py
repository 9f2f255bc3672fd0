"""The vSphere provider under talprov's real reconciler and store (SQLite), against vcsim."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from talprov.providers.types import Stage
from talprov.reconcile.failures import StepPolicy
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.records import RequestRecord
from talprov.store.store import Store
from talprov.talos.join import user_data_for
from talprov.vmware.provider import VSphereProvider
from tests.driving import step_ran_while_listing
from tests.emulators.vcsim.fixture import VcsimServer
from tests.unit.vmware.conftest import machine_request
from tests.unit.vmware.observe import all_vms, destroy_out_of_band
from tests.unit.vmware.soap import intercept_soap

#: Seconds a clone waits for a power-on (only without pipelining: then in vain).
PATIENCE = 10.0


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'state.db'}")
    s.migrate()
    return s


def _reconciler(store: Store, provider: VSphereProvider) -> Reconciler:
    return Reconciler(store, {"lab": ProviderHandle(provider, 4)}, provider.runtime,
                      policy=StepPolicy(max_attempts=3, capacity_attempts=2))


def _record(store: Store, request_id: str) -> RequestRecord:
    record = store.get_request(request_id)
    assert record is not None
    return record


def _all_in(store: Store, stage: Stage) -> Callable[[], bool]:
    return lambda: all(r.stage == stage for r in store.list_requests(include_gone=True))


def test_reconciler_provisions_observes_and_removes(
    provider: VSphereProvider, vcsim: VcsimServer, store: Store,
) -> None:
    reconciler = _reconciler(store, provider)
    requests = [machine_request(f"r{i}") for i in range(1, 4)]
    for request in requests:
        store.create_request(request)
    assert reconciler.run_until(_all_in(store, Stage.PROVISIONED), timeout=600, interval=1.0)

    vms = all_vms(vcsim)
    for request in requests:
        record = _record(store, request.id)
        vm = vms[request.id][0]
        assert len(vms[request.id]) == 1
        assert record.infra_id == vm["moid"]
        assert record.machine_uuid == vm["config.uuid"]
        config = user_data_for(request)  # the request's config, named after it
        assert base64.b64decode(vm["extra"]["guestinfo.talos.config"]).decode() == config

    # A VM removed behind talprov's back is noticed on the following passes.
    destroy_out_of_band(vcsim, "r3")
    assert reconciler.run_until(
        lambda: _record(store, "r3").stage == Stage.FAILED, timeout=600, interval=1.0)
    assert "disappeared" in (_record(store, "r3").error or "")

    for request in requests:
        store.request_deletion(request.id)
    assert reconciler.run_until(_all_in(store, Stage.GONE), timeout=600, interval=1.0)
    assert not {"r1", "r2", "r3"} & set(all_vms(vcsim))


def test_ensure_template_runs_while_the_listing_is_on_its_way(
    provider: VSphereProvider, store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ensured_while_listing = step_ran_while_listing(provider, "_ensure_template", monkeypatch)
    store.create_request(machine_request("r1"))

    _reconciler(store, provider).run_pass()

    assert ensured_while_listing == [True]
    assert _record(store, "r1").stage == Stage.PROVISIONED


def test_a_vm_whose_clone_ended_is_powered_on_while_the_others_clone(
    provider: VSphereProvider, vcsim: VcsimServer, store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # vCenter ends one template's clones one after another. Here every clone but
    # the first waits until some VM is powered on: a batch that went on only
    # together (all clones, then all reconfigures, then the power-ons) would make
    # them wait PATIENCE seconds and power on after the last clone ended.
    powered_on = threading.Event()
    order: list[str] = []

    def answer(method: str, number: int, call: Callable[[], Any]) -> Any:
        if method == "CloneVM_Task" and number > 1:
            powered_on.wait(PATIENCE)
        result = call()
        if method in ("CloneVM_Task", "PowerOnVM_Task"):
            order.append(method)
        if method == "PowerOnVM_Task":
            powered_on.set()
        return result

    reconciler = _reconciler(store, provider)
    store.create_request(machine_request("r0"))  # imports the template
    assert reconciler.run_until(_all_in(store, Stage.PROVISIONED), timeout=600, interval=1.0)
    intercept_soap(monkeypatch, answer)
    for i in range(1, 4):
        store.create_request(machine_request(f"r{i}"))

    reconciler.run_pass()

    assert order.count("CloneVM_Task") == 3
    assert order.index("PowerOnVM_Task") < max(
        i for i, method in enumerate(order) if method == "CloneVM_Task")
    assert _all_in(store, Stage.PROVISIONED)()
    vms = all_vms(vcsim)
    assert [len(vms[f"r{i}"]) for i in range(1, 4)] == [1, 1, 1]


def test_clone_vm_takes_the_passs_listing_for_whether_a_vm_exists(
    provider: VSphereProvider, vcsim: VcsimServer, store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The listing, asked after the requests were claimed, shows every VM of theirs
    # (by the ownership marks the clone sets): clone-vm's first attempt looks none
    # up by instance UUID (before: one retrieval of every VM before the clones).
    reconciler = _reconciler(store, provider)
    store.create_request(machine_request("r0"))  # imports the template
    assert reconciler.run_until(_all_in(store, Stage.PROVISIONED), timeout=600, interval=1.0)
    lookups: list[str] = []
    find_vm, find_vms = provider.find_vm, provider.find_vms

    def one(owner: Any, rid: str) -> str | None:
        lookups.append(rid)
        return find_vm(owner, rid)

    def many(owner: Any, rids: list[str]) -> dict[str, str | None]:
        lookups.extend(rids)
        return find_vms(owner, rids)

    monkeypatch.setattr(provider, "find_vm", one)
    monkeypatch.setattr(provider, "find_vms", many)
    calls = intercept_soap(monkeypatch, lambda _method, _number, call: call())
    for i in range(1, 4):
        store.create_request(machine_request(f"r{i}"))

    reconciler.run_pass()

    assert lookups == []
    # The listing, then each clone's look at its task, which reads what
    # configure-vm compares of the VM too (before: 1 + 3, besides the task looks'
    # Fetches). Second VMs are found in the listing
    # (reconcile/second_machines.py): no read of their own.
    assert calls["RetrievePropertiesEx"] == 1 + 3
    # The Fetches: the reconfigures' and power-ons' task info, and ensure-template's
    # (each request finds the imported template by its name); before, 3 more.
    assert calls["Fetch"] == 3 + 3 + 3
    assert _all_in(store, Stage.PROVISIONED)()
    vms = all_vms(vcsim)
    assert [len(vms[f"r{i}"]) for i in range(1, 4)] == [1, 1, 1]
