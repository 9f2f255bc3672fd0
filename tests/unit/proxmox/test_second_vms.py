"""A second VM carrying a request's tags is deleted by the reconciler's upkeep.

A create started again after a crash, or a clone of the request's VM (PVE
copies its tags), leaves a VM that carries the request's tags but is not the VM
its record names. No step of the request sees one that appears after its
ensure-vm; it would run until the request is deleted. The reconciler finds it
in its listing and has it stopped and deleted (``RemovesSecondMachines``),
keeping the recorded VM and the seed ISO both share.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from talprov.providers.ownership import ownership_tags
from talprov.providers.protocol import RemovesSecondMachines
from talprov.providers.types import Machine, MachineState, Owner, Stage
from talprov.proxmox.provider import ProxmoxProvider
from talprov.proxmox.tags import encode_tags
from talprov.reconcile.reconciler import Reconciler
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.emulators.fakepve import FakePveServer
from tests.reconciling import events_saying, provisioned, reconciler_of, recorded, sqlite_store
from tests.unit.proxmox.conftest import machine_request

NODE = "pve1"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    yield from sqlite_store(tmp_path)


@pytest.fixture
def reconciler(store: Store, provider: ProxmoxProvider) -> Reconciler:
    return reconciler_of(store, "lab", provider)


def _tagged_vm(provider: ProxmoxProvider, clock: FakeClock, vmid: int, tags: str,
               **extra: Any) -> str:
    """A VM made through the PVE API with ``tags`` (PVE's ``a;b`` string)."""
    upid = provider.client.post(f"create VM {vmid}", f"nodes/{NODE}/qemu", vmid=vmid,
                                name=f"vm-{vmid}", tags=tags, memory=2048, **extra)
    provider.client.wait_task(NODE, upid, f"create VM {vmid}", clock=clock, sleep=clock.sleep)
    return str(vmid)


def _marks(owner: Owner, rid: str) -> str:
    return ";".join(encode_tags(ownership_tags(owner, machine_request(rid))))


def _vms(fakepve: FakePveServer) -> dict[str, dict[str, Any]]:
    return {str(v["vmid"]): v for v in fakepve.vms()}


def _second_events(store: Store, rid: str) -> list[str]:
    return events_saying(store, rid, "second VM")


def test_proxmox_removes_second_machines(provider: ProxmoxProvider) -> None:
    assert isinstance(provider, RemovesSecondMachines)


def test_a_second_vm_beside_a_provisioned_requests_vm_is_deleted(
    fakepve: FakePveServer, provider: ProxmoxProvider, store: Store, reconciler: Reconciler,
    clock: FakeClock,
) -> None:
    store.create_request(machine_request("late"))
    assert reconciler.run_until(provisioned(store, "late"), timeout=600)
    kept = recorded(store, "late")
    tags = _vms(fakepve)[kept]["config"]["tags"]  # as the provider wrote them
    second = _tagged_vm(provider, clock, int(kept) + 1, tags)
    fakepve.control("set_vm", vmid=int(second), attrs={"status": "running"})
    storages_before = fakepve.control("storages")

    assert reconciler.run_pass().second_machines == 1

    assert set(_vms(fakepve)) == {kept}
    assert _vms(fakepve)[kept]["status"] == "running"
    assert recorded(store, "late") == kept
    assert fakepve.control("storages")["local"] == storages_before["local"]  # seed ISO kept
    assert len(_second_events(store, "late")) == 1
    assert reconciler.run_pass().second_machines == 0
    assert store.get_request("late").stage == Stage.PROVISIONED  # type: ignore[union-attr]


@pytest.mark.parametrize("case", ["kept gone", "kept another request's",
                                  "kept another owner's", "second another owner's",
                                  "second gone", "second a template", "second locked"])
def test_a_second_vm_is_deleted_only_beside_the_requests_listed_vm(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock,
    case: str,
) -> None:
    # The listing that showed both may be minutes old: the request must keep one.
    elsewhere = Owner("another-installation", owner.instance)
    kept = _tagged_vm(provider, clock, 200, _marks(
        elsewhere if case == "kept another owner's" else owner,
        "r-2" if case == "kept another request's" else "r-1"))
    second = _tagged_vm(provider, clock, 150, _marks(
        elsewhere if case == "second another owner's" else owner, "r-1"))
    if case == "kept gone":
        provider.client.wait_task(NODE, provider.client.delete("delete", f"nodes/{NODE}/qemu/200"),
                                  "delete", clock=clock, sleep=clock.sleep)
    if case == "second gone":
        provider.client.wait_task(NODE, provider.client.delete("delete", f"nodes/{NODE}/qemu/150"),
                                  "delete", clock=clock, sleep=clock.sleep)
    if case == "second a template":
        fakepve.control("set_vm", vmid=150, attrs={"template": True})
    if case == "second locked":
        fakepve.control("set_vm", vmid=150, attrs={"lock": "backup"})
    asked = Machine(infra_id=second, state=MachineState.STOPPED, request_id="r-1")

    assert provider.remove_second_machine(owner, asked, kept) is None

    assert (second in _vms(fakepve)) == (case != "second gone")


def test_a_second_vm_that_moved_is_stopped_and_deleted_on_its_new_node(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock,
) -> None:
    kept = _tagged_vm(provider, clock, 200, _marks(owner, "r-1"))
    second = _tagged_vm(provider, clock, 150, _marks(owner, "r-1"))
    fakepve.control("add_node", name="pve2")
    fakepve.control("migrate", vmid=150, target="pve2")
    fakepve.control("set_vm", vmid=150, attrs={"status": "running"})
    asked = Machine(infra_id=second, state=MachineState.RUNNING, request_id="r-1")

    line = provider.remove_second_machine(owner, asked, kept)

    assert line is not None
    assert line.startswith("deleted VM 150 on node pve2")
    assert set(_vms(fakepve)) == {kept}
    assert provider.remove_second_machine(owner, asked, kept) is None  # gone: success
