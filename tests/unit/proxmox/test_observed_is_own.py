"""The power steps trust the listed machine only when it is the request's VM.

A request whose record named no VM when the pass's listing was taken (ensure-vm
recorded it later in the same pass) is handed the last listed VM carrying its
marks, which may be another: a second VM of a create started again. Its state
must not stand for the recorded VM's: start-vm would leave that one off, and
wait-running would call it running.
"""

from __future__ import annotations

from talprov.providers.types import Machine, MachineState, Owner, Retry
from talprov.proxmox.provider import ProxmoxProvider
from talprov.reconcile import runner
from talprov.testing import FakeClock
from tests.driving import Ctx, context, run_step
from tests.emulators.fakepve import FakePveServer
from tests.unit.proxmox.conftest import machine_request


def _created_beside_another(provider: ProxmoxProvider, owner: Owner, clock: FakeClock) -> Ctx:
    """A request whose VM is created (off), handed a running VM of its marks that
    is not the one its state records."""
    ctx = context(provider, machine_request("p1"), owner)
    for step in provider.steps()[:4]:  # place … ensure-vm
        run_step(step, ctx, clock)
    assert ctx.state.infra_id == str(ctx.state.vmid)
    ctx.observed = Machine(infra_id=str(ctx.state.vmid + 1000), state=MachineState.RUNNING,
                           request_id="p1", addresses=("10.0.0.9",))
    ctx.listed = True
    return ctx


def _status(fakepve: FakePveServer, vmid: int | None) -> str:
    (vm,) = [v for v in fakepve.vms() if v["vmid"] == vmid]
    return str(vm["status"])


def test_start_vm_starts_the_recorded_vm_though_another_listed_one_runs(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock,
) -> None:
    ctx = _created_beside_another(provider, owner, clock)
    assert _status(fakepve, ctx.state.vmid) == "stopped"
    start = next(s for s in provider.steps() if s.name == "start-vm")

    run_step(start, ctx, clock)

    assert _status(fakepve, ctx.state.vmid) == "running"
    assert any(e.startswith(f"starting VM {ctx.state.vmid}") for e in ctx.events)


def test_wait_running_does_not_take_another_listed_vm_for_the_requests(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock,
) -> None:
    ctx = _created_beside_another(provider, owner, clock)
    wait = next(s for s in provider.steps() if s.name == "wait-running")
    ctx.step_started_at = clock()

    assert isinstance(runner.run_step(wait, ctx), Retry)  # its own VM is off
    assert _status(fakepve, ctx.state.vmid) == "stopped"
