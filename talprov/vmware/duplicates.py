"""Second VMs of one request: destroyed once the request's own VM runs.

A request's VM is found again by the instance UUID its clone spec sets, and a
resumed ``clone-vm`` clones only when that look-up finds nothing. A clone still
running when the look-up is made (its starter was stopped before it stored the
task id) is not found that way: vCenter then refuses the second clone's name
(``DuplicateName``, see :mod:`talprov.vmware.clones`), but a vCenter that allows
duplicate names (vcsim) makes a second VM. Such a VM carries the request's
ownership marks and is not the VM the request's state records; once the
request's VM runs, ``wait-running`` destroys every such VM of the batch's
requests (powered off hard first: it is nobody's machine).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from talprov.providers.errors import NotFound, ProviderError
from talprov.providers.ownership import REQUEST_KEY, is_owned
from talprov.providers.protocol import StepContext
from talprov.providers.types import StepResult
from talprov.vmware import machines, sdk
from talprov.vmware.client import VSphereClient
from talprov.vmware.data import VSphereMachineData
from talprov.vmware.inventory import Inventory
from talprov.vmware.sdk import vm_ref
from talprov.vmware.state import VSphereState

Ctx = StepContext[VSphereMachineData, VSphereState]


class Duplicates:
    """Finds and destroys the second VMs of requests (see the module docstring)."""

    def __init__(self, client: VSphereClient, inventory: Inventory,
                 clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self.client = client
        self.inventory = inventory
        self.clock = clock
        self.sleep = sleep

    def remove(self, ctxs: Sequence[Ctx]) -> list[StepResult | BaseException]:
        """Destroy every VM that carries one of ``ctxs``' requests' marks but is not
        the VM its state records; one outcome per context (None: none is left).

        One read of every VM's name and instance UUID in the datacenter for the
        whole batch, one read of the candidates' marks, then per second VM a
        power-off and a destroy, each waited for. Idempotent: a VM already gone is
        success. An outcome is ``AuthError`` or ``Transient`` when a read or a
        destroy failed (the step's retry looks again).
        """
        if not ctxs:
            return []
        try:
            found = self._second_vms(ctxs)
        except ProviderError as exc:
            return [exc] * len(ctxs)
        outcomes: list[StepResult | BaseException] = []
        for ctx in ctxs:
            try:
                for moid in found.get(ctx.request.id, ()):
                    self._destroy(moid)
                    ctx.event(f"destroyed VM {moid}, a second VM of this request (a clone "
                              "started again while the first still ran)")
            except ProviderError as exc:
                outcomes.append(exc)
                continue
            outcomes.append(None)
        return outcomes

    def _second_vms(self, ctxs: Sequence[Ctx]) -> dict[str, list[str]]:
        vim = sdk.vim()

        owner = ctxs[0].owner
        keep = {c.state.vm_moid for c in ctxs}
        by_name = {c.request.id: c.request.id for c in ctxs}
        by_uuid = {machines.instance_uuid(owner, c.request.id): c.request.id for c in ctxs}
        dc = self.client.read("find the datacenter", self.inventory.datacenter)
        candidates = [
            vm for vm, props in self.client.retrieve(
                "look for second VMs of requests", vim.VirtualMachine,
                ["name", "config.instanceUuid"], root=dc)
            if str(vm._moId) not in keep
            and (str(props.get("name")) in by_name
                 or str(props.get("config.instanceUuid")) in by_uuid)]
        marks_read = self.client.get_many("read marks of second VMs", candidates,
                                          ["config.extraConfig", "config.template"])
        found: dict[str, list[str]] = {}
        for moid, props in sorted(marks_read.items()):
            marks = machines.marks_of(props)
            rid = marks.get(REQUEST_KEY)
            if rid in by_name and is_owned(marks, owner) and not props.get("config.template"):
                found.setdefault(rid, []).append(moid)
        return found

    def _destroy(self, moid: str) -> None:
        what = f"destroy second VM {moid}"

        def power_off(si: Any) -> Any:
            vm = vm_ref(si, moid)
            return vm.PowerOffVM_Task() if vm.runtime.powerState != "poweredOff" else None

        try:
            task = self.client.call(f"power off second VM {moid}", power_off)
            if task is not None:
                self.client.wait_task(task, f"power off second VM {moid}",
                                      self.clock, self.sleep)
            self.client.wait_task(self.client.call(what, lambda si: vm_ref(si, moid)
                                                   .Destroy_Task()), what, self.clock, self.sleep)
        except NotFound:
            return  # gone already
