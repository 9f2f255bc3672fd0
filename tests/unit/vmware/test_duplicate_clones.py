"""A second VM of one request, left by a clone whose process was stopped.

QA: vcsim with ``-method-delay CloneVM_Task=6000``, ``machine create --wait``
stopped 3.5 s in, then ``reconcile --once``: the stopped process's clone
completed after the resumed worker had looked for the VM by its instance UUID,
so the worker cloned again, and vcsim (which allows duplicate names in a
folder) kept both VMs. Here the first clone's answer is lost and the resumed
worker's look-up misses it; the second clone succeeds, as on vcsim. The
request must end with one VM: the one its record names. The reconciler finds
the other in its listing and has it destroyed (``RemovesSecondMachines``), in
a pass without work for the instance, however late that clone ended.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from talprov.providers.ownership import ownership_tags
from talprov.providers.protocol import StepContext
from talprov.providers.types import Machine, MachineState, Owner, Retry, Stage
from talprov.reconcile.reconciler import Reconciler
from talprov.store.store import Store
from talprov.vmware.data import VSphereMachineData
from talprov.vmware.provider import VSphereProvider
from talprov.vmware.state import VSphereState
from tests.emulators.vcsim.fixture import VcsimServer
from tests.reconciling import events_saying, provisioned, reconciler_of, recorded, sqlite_store
from tests.unit.vmware.conftest import machine_request
from tests.unit.vmware.observe import (
    all_vms,
    clone_out_of_band,
    destroy_out_of_band,
    power_on_out_of_band,
)
from tests.unit.vmware.soap import intercept_soap


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    yield from sqlite_store(tmp_path)


@pytest.fixture
def reconciler(store: Store, provider: VSphereProvider) -> Reconciler:
    return reconciler_of(store, "lab", provider, max_attempts=5)


def _second_vm_events(store: Store, rid: str) -> list[str]:
    return events_saying(store, rid, "second VM")


def _vms_of(vcsim: VcsimServer, rid: str) -> list[str]:
    return [vm["moid"] for vm in all_vms(vcsim).get(rid, [])]


def test_a_second_vm_made_while_the_first_clone_ran_is_destroyed_by_a_later_pass(
    provider: VSphereProvider, vcsim: VcsimServer, store: Store, reconciler: Reconciler,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first clone makes its VM but its answer is lost; the next attempt's look-up
    # by instance UUID misses that VM, so it clones again (vcsim keeps both).
    def answer(method: str, number: int, call: Callable[[], Any]) -> Any:
        result = call()
        if method == "CloneVM_Task" and number == 1:
            raise ConnectionResetError("injected")
        return result

    calls = intercept_soap(monkeypatch, answer)
    find_vm = provider.find_vm
    hidden = {"w1"}
    monkeypatch.setattr(provider, "find_vm", lambda o, rid: None if hidden and hidden.pop()
                        else find_vm(o, rid))
    store.create_request(machine_request("w1"))

    assert reconciler.run_until(provisioned(store, "w1"), timeout=600, interval=1.0)
    assert calls["CloneVM_Task"] == 2  # the duplicate was made: the case QA met
    assert len(_vms_of(vcsim, "w1")) == 2
    assert not _second_vm_events(store, "w1")  # not while the instance had work

    report = reconciler.run_pass()

    kept = recorded(store, "w1")
    assert report.second_machines == 1
    assert _vms_of(vcsim, "w1") == [kept]
    listed = [m for m in provider.list_machines(reconciler_owner(reconciler))
              if m.request_id == "w1"]
    assert [(m.infra_id, m.state) for m in listed] == [(kept, MachineState.RUNNING)]
    assert len(_second_vm_events(store, "w1")) == 1
    assert store.get_request("w1").stage == Stage.PROVISIONED  # type: ignore[union-attr]


def test_a_second_vm_that_appears_after_the_request_is_provisioned_is_destroyed(
    provider: VSphereProvider, vcsim: VcsimServer, store: Store, reconciler: Reconciler,
) -> None:
    request = machine_request("late")
    store.create_request(request)
    assert reconciler.run_until(provisioned(store, "late"), timeout=600, interval=1.0)
    kept = recorded(store, "late")
    # The clone of a stopped worker that ends only now, with the request's marks.
    clone_out_of_band(vcsim, "late", "late",
                      ownership_tags(reconciler_owner(reconciler), request))
    assert len(_vms_of(vcsim, "late")) == 2

    assert reconciler.run_pass().second_machines == 1

    assert _vms_of(vcsim, "late") == [kept]
    assert _second_vm_events(store, "late")
    assert reconciler.run_pass().second_machines == 0
    assert _vms_of(vcsim, "late") == [kept]


def test_a_request_whose_vm_a_stopped_clone_made_adopts_it_and_loses_none(
    provider: VSphereProvider, vcsim: VcsimServer, store: Store, reconciler: Reconciler,
) -> None:
    # Mid-create: the VM exists (a stopped worker's clone), the record names none yet.
    request = machine_request("mid")
    clone_out_of_band(vcsim, "DC0_H0_VM0", "mid",
                      ownership_tags(reconciler_owner(reconciler), request))
    (made,) = _vms_of(vcsim, "mid")
    store.create_request(request)

    assert reconciler.run_until(provisioned(store, "mid"), timeout=600, interval=1.0)
    reconciler.run_pass()

    assert recorded(store, "mid") == made
    assert _vms_of(vcsim, "mid") == [made]
    assert not _second_vm_events(store, "mid")


def test_vms_of_another_owner_or_another_request_are_never_touched(
    provider: VSphereProvider, vcsim: VcsimServer, store: Store, reconciler: Reconciler,
) -> None:
    owner = reconciler_owner(reconciler)
    theirs = ownership_tags(Owner("another-installation", owner.instance),
                            machine_request("k3"))
    clone_out_of_band(vcsim, "DC0_H0_VM0", "k3", theirs)
    other_request = ownership_tags(owner, machine_request("k9"))
    clone_out_of_band(vcsim, "DC0_H0_VM0", "k3", other_request)
    foreign = _vms_of(vcsim, "k3")
    store.create_request(machine_request("k3"))

    assert reconciler.run_until(provisioned(store, "k3"), timeout=600, interval=1.0)
    assert reconciler.run_pass().second_machines == 0

    named = _vms_of(vcsim, "k3")
    assert len(named) == 3  # theirs, k9's, and this request's
    assert set(foreign) < set(named)
    assert not _second_vm_events(store, "k3")
    # Asked directly, the driver reads the marks again and refuses both.
    kept = recorded(store, "k3")
    for moid in foreign:
        asked = Machine(infra_id=moid, state=MachineState.STOPPED, request_id="k3")
        assert provider.remove_second_machine(owner, asked, kept) is None
    assert _vms_of(vcsim, "k3") == named


def test_a_second_vm_already_gone_is_success(
    provider: VSphereProvider, reconciler: Reconciler,
) -> None:
    gone = Machine(infra_id="vm-999999", state=MachineState.RUNNING, request_id="k3")

    assert provider.remove_second_machine(reconciler_owner(reconciler), gone,
                                          "vm-999998") is None


@pytest.mark.parametrize("kept_is", ["fine", "gone", "another request's", "another owner's",
                                     "a template"])
def test_a_second_vm_is_destroyed_only_while_the_kept_vm_is_the_requests(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, kept_is: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The listing that showed both may be minutes old: the kept VM may be gone
    # (an operator, a lost host) or changed since. The request must keep a VM.
    marks = ownership_tags(owner, machine_request("r1"))
    kept_marks = {
        "another request's": ownership_tags(owner, machine_request("r2")),
        "another owner's": ownership_tags(Owner("another-installation", owner.instance),
                                          machine_request("r1")),
    }.get(kept_is, marks)
    clone_out_of_band(vcsim, "DC0_H0_VM0", "r1-kept", kept_marks,
                      template=kept_is == "a template")
    clone_out_of_band(vcsim, "DC0_H0_VM0", "r1-second", marks)
    (kept,) = _vms_of(vcsim, "r1-kept")
    (second,) = _vms_of(vcsim, "r1-second")
    if kept_is == "gone":
        destroy_out_of_band(vcsim, "r1-kept")
    reads: list[int] = []
    get_many = provider.client.get_many

    def counted(what: str, objs: Any, paths: Any) -> dict[str, dict[str, Any]]:
        reads.append(len(objs))
        return get_many(what, objs, paths)

    monkeypatch.setattr(provider.client, "get_many", counted)
    asked = Machine(infra_id=second, state=MachineState.RUNNING, request_id="r1")

    line = provider.remove_second_machine(owner, asked, kept)

    assert reads == [2]  # both VMs in one property-collector read
    if kept_is == "fine":
        assert line is not None
        assert second in line
        assert _vms_of(vcsim, "r1-second") == []
    else:
        assert line is None
        assert _vms_of(vcsim, "r1-second") == [second]


def reconciler_owner(reconciler: Reconciler) -> Owner:
    return Owner(reconciler.runtime.installation, "lab")


def _ctx_beside(provider: VSphereProvider, owner: Owner, vcsim: VcsimServer,
                ) -> StepContext[VSphereMachineData, VSphereState]:
    """A request whose recorded VM is off, handed a listed running VM of its marks
    that is another (a pass whose listing was taken before its clone step
    recorded the VM: the last VM listed with the request's marks)."""
    request = machine_request("p1")
    marks = ownership_tags(owner, request)
    clone_out_of_band(vcsim, "DC0_H0_VM0", "p1-own", marks)
    clone_out_of_band(vcsim, "DC0_H0_VM0", "p1-other", marks)
    power_on_out_of_band(vcsim, "p1-other")
    (own,) = _vms_of(vcsim, "p1-own")
    (other,) = _vms_of(vcsim, "p1-other")
    listed = Machine(infra_id=other, state=MachineState.RUNNING, request_id="p1",
                     addresses=("10.0.0.9",))
    return StepContext(request=request,
                       data=VSphereMachineData.model_validate(request.provider_data),
                       state=VSphereState(vm_moid=own, infra_id=own), owner=owner,
                       runtime=provider.runtime, observed=listed, listed=True)


def test_power_on_does_not_take_another_listed_vm_for_the_requests(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner,
) -> None:
    ctx = _ctx_beside(provider, owner, vcsim)

    provider.power.power_on(ctx)

    assert ctx.events == [f"powering on VM {ctx.state.vm_moid}"]
    assert all_vms(vcsim)["p1-own"][0]["runtime.powerState"] == "poweredOn"


def test_wait_running_does_not_take_another_listed_vm_for_the_requests(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner,
) -> None:
    ctx = _ctx_beside(provider, owner, vcsim)

    assert isinstance(provider.power.wait_running(ctx), Retry)  # its own VM is off
    assert ctx.state.addresses == []
