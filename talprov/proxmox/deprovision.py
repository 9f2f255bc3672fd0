"""Removing a request's VMs and seed ISO: stop, hard stop after a timeout, purge.

Each call advances the removal by one stage and returns ``Retry`` while a PVE task
runs, so a worker is never blocked by a slow guest and a restart continues with
the task it was waiting for. A create still running when the deletion starts is
waited for first: its VM carries no tags until the create ends, so looking for
the request's VMs earlier would find none and leave the VM to appear afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from talprov.providers.errors import NotFound, ProviderError
from talprov.providers.protocol import StepContext
from talprov.providers.types import Owner, Retry, StepResult
from talprov.proxmox import images, vm
from talprov.proxmox.client import PveClient
from talprov.proxmox.config import ProxmoxConfig
from talprov.proxmox.errors import TaskFailed, VmidTaken
from talprov.proxmox.state import ProxmoxState
from talprov.proxmox.vmids import VmidBook

Ctx = StepContext[Any, ProxmoxState]
FindVms = Callable[[Owner, str], Sequence[Mapping[str, Any]]]


class Deprovisioner:
    """Runs ``ProxmoxProvider.deprovision`` for one provider instance."""

    def __init__(self, client: PveClient, config: ProxmoxConfig, find_vms: FindVms,
                 vmids: VmidBook) -> None:
        self.client = client
        self.config = config
        self.find_vms = find_vms
        self.vmids = vmids

    def run(self, ctx: Ctx) -> StepResult:
        state = ctx.state
        waiting = self._wait_for_tasks(ctx)
        if waiting is not None:
            return waiting
        vms = self.find_vms(ctx.owner, ctx.request.id)
        if not vms:
            if not state.seed_removed:
                started = self._remove_seed(ctx)
                if started is not None:
                    return started
            self.vmids.release_request(ctx.request.id)
            ctx.event("VM and seed ISO removed")
            return None
        item = vms[0]
        node, vmid = str(item["node"]), int(item["vmid"])
        if item.get("lock") == "create":
            return Retry(self.config.poll_interval, f"VM {vmid} is still being created")
        if item.get("status") == "running":
            return self._stop(ctx, node, vmid)
        return self._delete(ctx, node, vmid)

    def _wait_for_tasks(self, ctx: Ctx) -> Retry | None:
        """A ``Retry`` while a task this request started runs (or just ended: that
        progress is kept before the next calls, so a fault there repeats only
        them); None when there is none to wait for."""
        state = ctx.state
        if state.create_task is not None and not self._create_ended(ctx):
            return Retry(self.config.poll_interval, "VM create task running")
        if state.delete_task is not None:
            assert state.delete_node
            if not self._ended(state, "delete", "delete VM"):
                return Retry(self.config.poll_interval, "VM delete task running")
            return Retry(0, "VM delete task ended")
        if state.seed_task is not None:
            assert state.seed_node
            if not self._ended(state, "seed", "delete seed ISO"):
                return Retry(self.config.poll_interval, "seed ISO delete task running")
        return None

    def _create_ended(self, ctx: Ctx) -> bool:
        """Whether the create task ensure-vm left behind has ended (well or not); its
        VMID is then free. Raises ``Transient`` when its status cannot be read."""
        state = ctx.state
        assert state.create_task is not None
        assert state.node is not None  # ensure-vm creates on the placed node
        try:
            if not self._task_done(state.node, state.create_task, f"create VM {state.vmid}"):
                if state.vmid is not None:
                    self.vmids.hold(state.vmid, ctx.request.id)
                return False
        except (TaskFailed, VmidTaken):
            pass  # nothing was made (or the VMID was another creator's): nothing to wait for
        self.vmids.release(state.vmid)
        state.create_task = None
        return True

    def _ended(self, state: ProxmoxState, task: str, what: str) -> bool:
        """Whether the task in ``state.<task>_task`` (on ``<task>_node``) ended well;
        the task field is cleared then. A task that failed is cleared with its node,
        so the next attempt starts the work again instead of reading the same
        failure for ever; its ``TaskFailed`` is raised. Raises ``Transient`` when
        the status cannot be read."""
        upid, node = getattr(state, f"{task}_task"), getattr(state, f"{task}_node")
        try:
            if not self._task_done(node, upid, what):
                return False
        except TaskFailed:
            setattr(state, f"{task}_task", None)
            setattr(state, f"{task}_node", None)
            raise
        setattr(state, f"{task}_task", None)
        return True

    def _task_done(self, node: str, upid: str, what: str) -> bool:
        try:
            return self.client.task_done(node, upid, what)
        except NotFound:
            # The task record is gone (node reinstalled, log rotated): look again.
            return True

    def _stop(self, ctx: Ctx, node: str, vmid: int) -> StepResult:
        state = ctx.state
        now = ctx.runtime.clock()
        if state.stop_task is not None and state.stop_node is not None:
            try:
                finished = self._task_done(state.stop_node, state.stop_task, f"stop VM {vmid}")
            except ProviderError as exc:
                # A failed or timed-out ACPI shutdown: stop it hard.
                ctx.event(f"shutdown of VM {vmid} failed ({exc}); stopping it hard")
                finished, state.hard_stop = True, True
            overdue = (state.stop_started_at is not None
                       and now - state.stop_started_at > self.config.shutdown_timeout)
            if not finished and not overdue:
                return Retry(self.config.poll_interval, f"VM {vmid} shutting down")
            if overdue and not finished:
                state.hard_stop = True
            state.stop_task = None
            if not state.hard_stop:
                return Retry(0, f"VM {vmid} shutdown task ended")
        if state.hard_stop:
            upid = self.client.post(f"stop VM {vmid}", f"nodes/{node}/qemu/{vmid}/status/stop")
            ctx.event(f"stopping VM {vmid} hard")
        else:
            upid = self.client.post(
                f"shut down VM {vmid}", f"nodes/{node}/qemu/{vmid}/status/shutdown",
                timeout=int(self.config.shutdown_timeout), forceStop=1,
            )
            state.stop_started_at = now
            ctx.event(f"shutting down VM {vmid} on node {node}")
        state.stop_task, state.stop_node = str(upid), node
        return Retry(0, f"VM {vmid} stopping")

    def _delete(self, ctx: Ctx, node: str, vmid: int) -> StepResult:
        state = ctx.state
        try:
            upid = self.client.delete(
                f"delete VM {vmid} on {node}", f"nodes/{node}/qemu/{vmid}",
                purge=1, **{"destroy-unreferenced-disks": 1},
            )
        except NotFound:
            return Retry(0, f"VM {vmid} already gone")
        state.delete_task, state.delete_node = str(upid), node
        state.stop_task = state.stop_node = None
        state.stop_started_at, state.hard_stop = None, False
        ctx.event(f"deleting VM {vmid} on node {node}")
        return Retry(0, f"VM {vmid} being deleted")

    def _remove_seed(self, ctx: Ctx) -> StepResult:
        """Delete the seed ISO (it holds the machine config); gone is success.

        A delete that runs as a task is left to the next attempt to look at
        (``Retry``), so that each attempt makes few calls and a fault costs
        one call's progress, not the whole removal's. None once removed.
        """
        state = ctx.state
        uuid_text = state.machine_uuid or vm.machine_uuid(
            ctx.owner.installation, ctx.owner.instance, ctx.request.id
        )
        storage = state.iso_storage or self.config.iso_storage
        volume = state.seed_volume or f"{storage}:iso/{images.seed_iso_name(uuid_text)}"
        storage = volume.split(":", 1)[0]
        if state.node is not None:
            nodes = [state.node]
        else:
            listed = self.client.get("list nodes", "nodes")
            nodes = sorted(str(n["node"]) for n in listed if n.get("status") == "online")
        # Nodes up to the last one whose delete task ended are done.
        for node in sorted(n for n in nodes if state.seed_node is None or n > state.seed_node):
            try:
                upid = self.client.delete(
                    f"delete seed ISO on {node}",
                    f"nodes/{node}/storage/{storage}/content/{volume}",
                )
            except NotFound:
                continue
            if upid:
                state.seed_task, state.seed_node = str(upid), node
                return Retry(0, f"seed ISO being deleted on {node}")
        state.seed_volume = None
        state.seed_removed = True
        return None
