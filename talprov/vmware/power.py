"""The vSphere steps that start a VM: ``power-on`` and ``wait-running``.

A power-on is asked for once and its task looked at right away (one that ended
within the call lets the request go on in the same pass); its id is stored
otherwise and looked at on later passes. A VM that is on already (a power-on
lost in a crash) fails the call or its task, and is then read once.
"""

from __future__ import annotations

from typing import Literal

from talprov.providers.errors import NotFound, ProviderError
from talprov.providers.protocol import StepContext
from talprov.providers.types import Machine, MachineState, Retry, StepResult
from talprov.vmware.client import FIRST_TASK_POLL, ServiceInstance, VSphereClient
from talprov.vmware.data import VSphereMachineData
from talprov.vmware.errors import TaskFailed
from talprov.vmware.sdk import vm_ref
from talprov.vmware.state import VSphereState

Ctx = StepContext[VSphereMachineData, VSphereState]


class PowerSteps:
    """power-on and wait-running of one provider instance. Thread-safe (no state
    of its own)."""

    def __init__(self, client: VSphereClient) -> None:
        self.client = client

    def power_state(self, moid: str) -> str:
        """The VM's ``runtime.powerState``. Raises ``NotFound`` when it is gone,
        ``AuthError`` or ``Transient``. Read-only."""
        def run(si: ServiceInstance) -> str:
            props = self.client.get(f"read VM {moid}", vm_ref(si, moid), ["runtime.powerState"])
            if not props:
                raise NotFound(f"VM {moid} disappeared")
            return str(props["runtime.powerState"])

        return self.client.read(f"read power state of VM {moid}", run)

    def power_on(self, ctx: Ctx) -> StepResult:
        """power-on: power the VM on (once) and look at the task. Idempotent."""
        state = ctx.state
        moid = state.vm_moid
        assert moid is not None
        observed = _own(ctx)
        if observed is not None and observed.state == MachineState.RUNNING:
            state.power_task = None
            state.powered_on = True
            return None
        if state.power_task is not None:
            ended = self._task_ended(ctx, state.power_task)
            if ended is not False:
                return ended
        # No state read first: a VM that is on already (a power-on that was lost
        # in a crash) fails the call or its task, and is then read once.
        try:
            state.power_task = self.client.call(
                f"power on VM {moid}", lambda si: str(vm_ref(si, moid).PowerOnVM_Task()._moId))
        except ProviderError:
            if self.power_state(moid) == "poweredOn":
                state.powered_on = True
                return None
            raise
        ctx.event(f"powering on VM {moid}")
        # Looked at at once: a power-on that ended within the call goes on to
        # wait-running in the same pass.
        ended = self._task_ended(ctx, state.power_task)
        return Retry(FIRST_TASK_POLL, "power-on did not take") if ended is False else ended

    def _task_ended(self, ctx: Ctx, task: str) -> StepResult | Literal[False]:
        """None when the power-on task made the VM powered on (recorded in the state),
        a Retry while it runs, False when the VM must be powered on (again).

        Raises the task's fault unless it is ``InvalidPowerState`` (then the VM's
        state is read once).
        """
        state = ctx.state
        moid = state.vm_moid
        assert moid is not None
        try:
            if self.client.task_done(task, f"power on VM {moid}") is None:
                return Retry(self.client.next_task_look(ctx.elapsed()), "power-on task running")
        except TaskFailed as exc:
            state.power_task = None
            if exc.fault != "InvalidPowerState":
                raise
            # Not in a state to power on: read which, and start again unless on.
            if self.power_state(moid) != "poweredOn":
                return False
        state.power_task = None
        state.powered_on = True
        return None

    def wait_running(self, ctx: Ctx) -> StepResult:
        """wait-running: done when vCenter reports the VM powered on (the runner
        fails it after ``running_timeout``). A power-on task that succeeded is such
        a report: no read then. Read-only; idempotent."""
        observed = _own(ctx)
        if observed is not None and observed.state == MachineState.RUNNING:
            ctx.state.addresses = list(observed.addresses)
            return None
        if ctx.state.powered_on:
            return None  # addresses come with the listings of later passes
        moid = ctx.state.vm_moid
        assert moid is not None
        if self.power_state(moid) == "poweredOn":
            return None
        return Retry(self.client.next_task_look(ctx.elapsed()),
                     f"VM {moid} not powered on yet")


def _own(ctx: Ctx) -> Machine | None:
    """The listed machine the pass handed the step, when it is the VM the state
    records: a request recorded no VM when the listing was taken gets the last
    listed VM carrying its marks, which may be another (a second VM of a clone
    started again) than the one its clone step recorded since. Pure."""
    observed = ctx.observed
    if observed is None or observed.infra_id != ctx.state.vm_moid:
        return None
    return observed
