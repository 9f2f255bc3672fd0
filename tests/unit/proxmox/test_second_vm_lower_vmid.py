"""start-vm and wait-running keep to the VM the request records, though another VM
carrying the request's marks has a lower VMID.

A second VM of a request (a create started again after a crash, or a clone of
the VM with its tags) may sit at a lower VMID than the recorded one, and the
request's VMs are listed lowest VMID first. Taking the first of them would move
the record onto the second VM and start it, leaving the recorded VM nobody's.
"""

from __future__ import annotations

from typing import Any

import pytest

from talprov.providers.errors import Transient
from talprov.providers.types import Owner, Retry
from talprov.proxmox.provider import ProxmoxProvider
from talprov.reconcile import runner
from talprov.testing import FakeClock
from tests.driving import Ctx, context, run_step
from tests.emulators.fakepve import FakePveServer
from tests.unit.proxmox.conftest import machine_request

#: Below every VMID the provider hands out: a placeholder holds it while the
#: request's VM is created, then the second VM takes it.
LOW_VMID = 100


def _vm(fakepve: FakePveServer, vmid: int | None) -> dict[str, Any]:
    (vm,) = [v for v in fakepve.vms() if v["vmid"] == vmid]
    return vm


def _created_above_a_second_vm(provider: ProxmoxProvider, fakepve: FakePveServer,
                               owner: Owner, clock: FakeClock) -> tuple[Ctx, int]:
    """A request whose VM is created (off), and a second VM with its tags at a lower
    VMID, made through the PVE API as a create started again would make it."""
    fakepve.control("add_vm", vmid=LOW_VMID, name="placeholder")
    ctx = context(provider, machine_request("p1"), owner)
    for step in provider.steps()[:4]:  # place … ensure-vm
        run_step(step, ctx, clock)
    own = ctx.state.vmid
    assert own is not None
    assert own > LOW_VMID
    node = ctx.state.node
    provider.client.wait_task(
        node, provider.client.delete("delete placeholder", f"nodes/{node}/qemu/{LOW_VMID}"),
        "delete placeholder", clock=clock, sleep=clock.sleep)
    tags = _vm(fakepve, own)["config"]["tags"]
    provider.client.wait_task(
        node, provider.client.post("create second VM", f"nodes/{node}/qemu",
                                   vmid=LOW_VMID, name="p1", tags=tags, memory=2048),
        "create second VM", clock=clock, sleep=clock.sleep)
    assert _vm(fakepve, LOW_VMID)["config"]["tags"] == tags
    return ctx, own


def test_start_vm_starts_the_recorded_vm_not_a_lower_second_one(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock,
) -> None:
    ctx, own = _created_above_a_second_vm(provider, fakepve, owner, clock)
    start = next(s for s in provider.steps() if s.name == "start-vm")

    run_step(start, ctx, clock)

    assert (ctx.state.vmid, ctx.state.infra_id) == (own, str(own))
    assert _vm(fakepve, own)["status"] == "running"
    assert _vm(fakepve, LOW_VMID)["status"] == "stopped"


def test_wait_running_reads_the_recorded_vm_not_a_lower_running_one(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock,
) -> None:
    ctx, own = _created_above_a_second_vm(provider, fakepve, owner, clock)
    fakepve.control("set_vm", vmid=LOW_VMID, attrs={"status": "running"})
    wait = next(s for s in provider.steps() if s.name == "wait-running")
    ctx.step_started_at = clock()

    assert isinstance(runner.run_step(wait, ctx), Retry)  # its own VM is off
    assert (ctx.state.vmid, ctx.state.infra_id) == (own, str(own))


def test_start_vm_follows_the_recorded_vm_to_its_new_node(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock,
) -> None:
    ctx, own = _created_above_a_second_vm(provider, fakepve, owner, clock)
    fakepve.control("add_node", name="pve2")
    fakepve.control("migrate", vmid=own, target="pve2")
    start = next(s for s in provider.steps() if s.name == "start-vm")

    run_step(start, ctx, clock)

    assert (ctx.state.vmid, ctx.state.node) == (own, "pve2")
    assert _vm(fakepve, own)["status"] == "running"
    assert _vm(fakepve, LOW_VMID)["status"] == "stopped"


def test_start_vm_does_not_adopt_another_vm_when_the_recorded_one_is_not_listed(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock,
) -> None:
    ctx, own = _created_above_a_second_vm(provider, fakepve, owner, clock)
    node = ctx.state.node
    provider.client.wait_task(
        node, provider.client.delete("delete VM", f"nodes/{node}/qemu/{own}"),
        "delete VM", clock=clock, sleep=clock.sleep)
    start = next(s for s in provider.steps() if s.name == "start-vm")
    ctx.step_started_at = clock()

    with pytest.raises(Transient, match=f"VM {own} is not listed"):
        runner.run_step(start, ctx)

    assert (ctx.state.vmid, ctx.state.infra_id) == (own, str(own))
    assert _vm(fakepve, LOW_VMID)["status"] == "stopped"
