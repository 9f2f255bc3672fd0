"""Removing a request's VM: guest shutdown, hard power-off after a timeout, Destroy_Task.

Each call advances the removal by one stage and returns ``Retry`` while a task
runs or the guest shuts down, so a worker is never blocked and a restart goes on
with the task it was waiting for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from talprov.providers.errors import NotFound, ProviderError
from talprov.providers.protocol import StepContext
from talprov.providers.types import Owner, Retry, StepResult
from talprov.vmware.client import VSphereClient
from talprov.vmware.config import VSphereConfig
from talprov.vmware.errors import TaskFailed
from talprov.vmware.sdk import vm_ref
from talprov.vmware.state import VSphereState

Ctx = StepContext[Any, VSphereState]
FindVm = Callable[[Owner, str], "str | None"]


class Deprovisioner:
    """Runs ``VSphereProvider.deprovision`` for one provider instance."""

    def __init__(self, client: VSphereClient, config: VSphereConfig, find_vm: FindVm) -> None:
        self.client = client
        self.config = config
        self.find_vm = find_vm

    def _pending(self, moid: str | None, what: str) -> bool:
        """Whether the task is still running (a failed or forgotten task is over)."""
        if moid is None:
            return False
        try:
            return self.client.task_done(moid, what) is None
        except (NotFound, TaskFailed):
            return False

    def run(self, ctx: Ctx) -> StepResult:
        state = ctx.state
        # A clone in flight would create the VM after we looked: let it finish first.
        for field in ("clone_task", "destroy_task", "power_task", "reconfig_task"):
            label = field.replace("_", " ")
            if self._pending(getattr(state, field), f"{label} of {ctx.request.id}"):
                return Retry(self.config.poll_interval, f"waiting for {label}")
            setattr(state, field, None)
        moid = self.find_vm(ctx.owner, ctx.request.id)
        if moid is None:
            state.vm_moid = None
            ctx.event("VM removed")
            return None
        try:
            power = self.client.read(f"read VM {moid}", lambda si: str(
                vm_ref(si, moid).runtime.powerState))
        except NotFound:
            return Retry(0, f"VM {moid} vanished while being read")
        if power == "poweredOff":
            state.destroy_task = self.client.call(
                f"destroy VM {moid}", lambda si: str(vm_ref(si, moid).Destroy_Task()._moId))
            ctx.event(f"destroying VM {moid}")
            return Retry(0, "destroy task started")
        return self._power_off(ctx, moid)

    def _power_off(self, ctx: Ctx, moid: str) -> StepResult:
        state = ctx.state
        now = ctx.runtime.clock()
        if not state.hard_off and state.shutdown_started_at is None:
            try:
                self.client.call(f"shut down guest of VM {moid}",
                                 lambda si: vm_ref(si, moid).ShutdownGuest())
            except ProviderError as exc:
                # No VMware Tools (or not running yet): nobody can shut it down softly.
                ctx.event(f"guest shutdown of VM {moid} refused ({type(exc).__name__}); "
                          "powering off")
                state.hard_off = True
            else:
                state.shutdown_started_at = now
                ctx.event(f"shutting down guest of VM {moid}")
                return Retry(self.config.poll_interval, "guest shutting down")
        if not state.hard_off:
            assert state.shutdown_started_at is not None
            if now - state.shutdown_started_at <= self.config.shutdown_timeout:
                return Retry(self.config.poll_interval, "guest shutting down")
            ctx.event(f"VM {moid} did not shut down in {self.config.shutdown_timeout:.0f}s; "
                      "powering off")
            state.hard_off = True
        state.power_task = self.client.call(
            f"power off VM {moid}", lambda si: str(vm_ref(si, moid).PowerOffVM_Task()._moId))
        return Retry(0, "power-off task started")
