"""Second VMs of one request: destroyed when the reconciler finds them listed.

A VM carrying a request's tags besides the one its state records is nobody's
machine: a create started again after a crash whose first VM got its tags only
later, or a clone of the request's VM, which copies its tags. ``ensure-vm``
adopts a tagged VM instead of creating another, so talprov seldom makes one;
none of its steps sees one made after the request's ``ensure-vm``. The
reconciler sees it beside the recorded VM in its pass's listing and has it
destroyed here (``RemovesSecondMachines``,
:mod:`talprov.reconcile.second_machines`), once both VMs are read again and
the recorded one still exists with the request's tags. No step of this driver
records another VM while the one it recorded is listed (``ensure-vm``,
``start-vm`` and ``wait-running`` keep to the recorded VM:
:func:`talprov.proxmox.power.recorded_vm`), so the recorded one is always the
request's.

The second VM is stopped hard and deleted with its disks (``purge=1``,
``destroy-unreferenced-disks=1``), as deprovision deletes a request's VMs; the
seed ISO stays: it is the recorded VM's too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from talprov.providers.errors import NotFound
from talprov.providers.ownership import REQUEST_KEY
from talprov.providers.types import Machine, Owner
from talprov.proxmox.client import PveClient
from talprov.proxmox.tags import decode_tags, owned_by, request_mark_values

log = logging.getLogger(__name__)


class SecondVms:
    """Destroys a request's second VM (see the module docstring). ``vm_resources``
    reads ``/cluster/resources?type=vm``."""

    def __init__(self, client: PveClient, vm_resources: Callable[[], list[Mapping[str, Any]]],
                 clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self.client = client
        self.vm_resources = vm_resources
        self.clock = clock
        self.sleep = sleep

    def remove(self, owner: Owner, machine: Machine, kept: str) -> str | None:
        """Stop hard and delete the VM ``machine.infra_id`` (a VMID) with its disks, a
        second VM of ``machine.request_id`` whose record names the VM ``kept``; the
        event line when it did.

        Both VMs are read again first, in one ``/cluster/resources`` read: the
        listing that showed them may be minutes old, and a VM may have moved to
        another node since. Refused (None, nothing done) unless both are listed,
        carry ``owner``'s tags and that request's, and neither is a template;
        also while the second VM is locked (a clone or backup still running:
        the next pass tries again). Each task is waited for up to
        ``task_timeout``. Idempotent: a VM already gone is success (None).
        Raises ``AuthError``, ``Transient`` or ``TaskFailed``.
        """
        vmid, rid = machine.infra_id, machine.request_id
        if rid is None or kept == vmid:
            return None
        listed = {str(i.get("vmid")): i for i in self.vm_resources() if i.get("type") == "qemu"}
        second, keep = listed.get(vmid), listed.get(kept)
        if second is None:
            return None  # gone already
        why = _refusal(second, keep, owner, rid, kept)
        if why is not None:
            log.warning("VM %s, listed as a second VM of request %s, left alone: %s",
                        vmid, rid, why)
            return None
        node = str(second["node"])
        try:
            if second.get("status") != "stopped":
                self._wait(node, f"stop second VM {vmid}", self.client.post(
                    f"stop second VM {vmid}", f"nodes/{node}/qemu/{vmid}/status/stop"))
            self._wait(node, f"delete second VM {vmid}", self.client.delete(
                f"delete second VM {vmid} on {node}", f"nodes/{node}/qemu/{vmid}",
                purge=1, **{"destroy-unreferenced-disks": 1}))
        except NotFound:
            return None  # gone meanwhile
        return (f"deleted VM {vmid} on node {node}, a second VM carrying this request's "
                "tags (a create started again, or a copy of its VM)")

    def _wait(self, node: str, what: str, upid: Any) -> None:
        self.client.wait_task(node, str(upid), what, clock=self.clock, sleep=self.sleep)


def _refusal(second: Mapping[str, Any], keep: Mapping[str, Any] | None, owner: Owner,
             request_id: str, kept: str) -> str | None:
    """Why the listed VM ``second`` must not be removed beside ``keep`` (the listed VM
    ``kept``, None when not listed); None when it may. Pure."""
    if keep is None:
        return f"VM {kept}, the request's, is not listed"
    if not (_marked(second, owner, request_id) and _marked(keep, owner, request_id)):
        return f"it or VM {kept} no longer carries the request's tags, or is a template"
    if second.get("lock"):
        # A clone or backup still running: PVE would refuse; the next pass tries again.
        return f"it is locked ({second.get('lock')})"
    return None


def _marked(item: Mapping[str, Any], owner: Owner, request_id: str) -> bool:
    """Whether a ``/cluster/resources`` VM entry carries ``owner``'s tags and those
    of ``request_id`` (its id or an older VM's digest, as the steps find it), and is no
    template. Pure."""
    marks = decode_tags(item.get("tags"))
    return (owned_by(marks, owner) and marks.get(REQUEST_KEY) in request_mark_values(request_id)
            and not item.get("template"))
