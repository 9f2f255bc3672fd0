"""The Proxmox power steps, ``start-vm`` and ``wait-running``, on the request's own VM.

Both look the request's VM up in a ``/cluster/resources`` listing by its marks,
which finds it on whichever node it runs now (after a migration too). Several
VMs may carry one request's marks (a create started again after a crash, a
clone of the VM); the request's VM is the one its state records
(``ProxmoxState.vmid``), whatever VMIDs the others have. When that one is not
listed the steps wait for it (``Transient``) rather than take another: a
listing may lag behind a create on another node, and a VM adopted then would
be started (or waited for) in place of the request's own, which would run on
unowned. A recorded VM that is really gone fails the request once the step's
attempts are spent, as when no VM of the request is listed at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from talprov.providers.batching import side_by_side
from talprov.providers.errors import ProviderError, Transient
from talprov.providers.protocol import StepContext
from talprov.providers.types import MachineState, Owner, Retry, StepResult
from talprov.proxmox.client import PveClient
from talprov.proxmox.config import ProxmoxConfig
from talprov.proxmox.data import ProxmoxMachineData
from talprov.proxmox.state import ProxmoxState
from talprov.proxmox.vmids import OnceValue

Ctx = StepContext[ProxmoxMachineData, ProxmoxState]
Resources = Sequence[Mapping[str, Any]]
Listing = OnceValue[list[Mapping[str, Any]]]
RequestVms = Callable[[Owner, str, Resources], list[Mapping[str, Any]]]
#: Seconds before the first look at a create or start task; later looks wait half
#: the time the step has waited so far, up to ``poll_interval`` (PVE's creates and
#: starts take from a fraction of a second to minutes).
FIRST_TASK_POLL = 0.1


def task_poll(ctx: Ctx, poll_interval: float) -> float:
    """When to look at a running task again: soon at first, then less often. Pure."""
    return min(poll_interval, max(FIRST_TASK_POLL, ctx.elapsed() / 2))


def recorded_vm(found: Resources, vmid: int | None) -> Mapping[str, Any] | None:
    """Of the request's listed VMs ``found`` (lowest VMID first), the one the state
    records as ``vmid``; None when it is not listed. A state that records none
    gets the lowest, as ensure-vm adopts it. Pure."""
    if vmid is None:
        return found[0] if found else None
    return next((item for item in found if int(item["vmid"]) == vmid), None)


def adopt(ctx: Ctx, item: Mapping[str, Any]) -> None:
    """Record the listed VM ``item`` (its VMID and the node it runs on now)."""
    ctx.state.vmid = int(item["vmid"])
    ctx.state.infra_id = str(item["vmid"])
    ctx.state.node = str(item["node"])


class PowerSteps:
    """``start-vm`` and ``wait-running`` of one provider instance (see the module
    docstring). ``vm_resources`` reads ``/cluster/resources?type=vm``;
    ``request_vms`` picks a request's VMs out of such a listing."""

    def __init__(self, client: PveClient, config: ProxmoxConfig,
                 vm_resources: Callable[[], list[Mapping[str, Any]]],
                 request_vms: RequestVms) -> None:
        self.client = client
        self.config = config
        self.vm_resources = vm_resources
        self.request_vms = request_vms

    def start_vm_batch(self, ctxs: Sequence[Ctx]) -> list[StepResult | BaseException]:
        listing = OnceValue(self.vm_resources)
        if len(ctxs) == 1:
            return [self._start_vm(ctxs[0], listing)]
        just_started: set[str] = set()
        outcomes = side_by_side(lambda ctx: self._start_vm(ctx, listing, just_started), ctxs)
        if not just_started:
            return outcomes
        # One listing tells which of the VMs just started run already (an idle node
        # starts one in a moment): only the others' start tasks are read.
        try:
            running = {int(i["vmid"]) for i in self.vm_resources()
                       if i.get("status") == "running"}
        except ProviderError:
            running = set()  # then every start task is read
        looked = side_by_side(lambda ctx: None if ctx.state.vmid in running
                              else self._started(ctx, ctx.state.start_task or ""),
                              [c for c in ctxs if c.request.id in just_started])
        for index, ctx in enumerate(ctxs):
            if ctx.request.id in just_started:
                outcomes[index] = looked.pop(0)
                if outcomes[index] is None:
                    ctx.state.start_task = None
        return outcomes

    def wait_running_batch(self, ctxs: Sequence[Ctx]) -> list[StepResult | BaseException]:
        listing = OnceValue(self.vm_resources)
        return side_by_side(lambda ctx: self._wait_running(ctx, listing), ctxs)

    def _status(self, ctx: Ctx, resources: Resources) -> tuple[str, str]:
        """(node, status) of the request's VM in ``resources``, wherever it runs now;
        the node it is listed on is recorded. Raises ``Transient`` when the VM the
        state records is not listed, also when another of the request's VMs is."""
        found = self.request_vms(ctx.owner, ctx.request.id, resources)
        item = recorded_vm(found, ctx.state.vmid)
        if item is None:
            raise Transient(f"VM {ctx.state.vmid} is not listed (yet)", retry_after=5.0)
        adopt(ctx, item)
        return str(item["node"]), str(item.get("status"))

    def _start_vm(self, ctx: Ctx, listing: Listing,
                  just_started: set[str] | None = None) -> StepResult:
        """Start the VM (once) and wait for its start task. Idempotent.

        With ``just_started`` a start posted now is not looked at: the request's
        id is added and the batch looks (see ``start_vm_batch``)."""
        state = ctx.state
        if _own_running(ctx):
            state.start_task = None
            return None
        if state.start_task is not None:
            return self._started(ctx, state.start_task)
        node, status = self._status(ctx, listing())
        if status == "running":
            return None
        upid = self.client.post(f"start VM {state.vmid}",
                                f"nodes/{node}/qemu/{state.vmid}/status/start")
        state.start_task = str(upid)
        ctx.event(f"starting VM {state.vmid} on node {node}")
        if just_started is not None:
            just_started.add(ctx.request.id)
            return None  # (replaced by the batch's look)
        # Looked at at once, as the create task is.
        return self._started(ctx, state.start_task)

    def _started(self, ctx: Ctx, task: str) -> StepResult:
        """Done once the start task ended well; a Retry while it runs."""
        state = ctx.state
        assert state.node
        if not self.client.task_done(state.node, task, f"start VM {state.vmid}"):
            return Retry(task_poll(ctx, self.config.poll_interval), "VM start task running")
        state.start_task = None
        return None

    def _wait_running(self, ctx: Ctx, listing: Listing) -> StepResult:
        """Done when PVE reports the VM running; fails after ``running_timeout``."""
        if _own_running(ctx):
            return None
        _node, status = self._status(ctx, listing())
        if status == "running":
            return None
        return Retry(task_poll(ctx, self.config.poll_interval), f"VM {ctx.state.vmid} is {status}")


def _own_running(ctx: Ctx) -> bool:
    """Whether the listed machine the pass handed the step runs and is the VM the
    state records: a request that recorded none when the listing was taken gets
    the last listed VM of its marks, maybe another (a create started again). Pure."""
    observed = ctx.observed
    return (observed is not None and ctx.state.infra_id is not None
            and observed.infra_id == ctx.state.infra_id
            and observed.state == MachineState.RUNNING)
