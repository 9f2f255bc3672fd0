"""Second VMs of one request: destroyed when the reconciler finds them listed.

A request's VM is found again by the instance UUID its clone spec sets, and a
resumed ``clone-vm`` clones only when that look-up finds nothing. A clone still
running when the look-up is made (its starter was stopped before it stored the
task id) is not found that way: vCenter then refuses the second clone's name
(``DuplicateName``, see :mod:`talprov.vmware.clones`), but a vCenter that allows
duplicate names (vcsim) makes a second VM. Such a VM carries the request's
ownership marks and is not the VM the request's record names; the reconciler
sees both in its pass's listing and has the second one destroyed here
(``RemovesSecondMachines``, :mod:`talprov.reconcile.second_machines`), however
late its clone ended, once both VMs are read again and the recorded one still
exists with the request's marks. No step of this driver records another VM while the one
it recorded exists, so the recorded one is always the request's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from talprov.providers.errors import NotFound
from talprov.providers.ownership import REQUEST_KEY, is_owned
from talprov.providers.types import Machine, Owner
from talprov.vmware import machines
from talprov.vmware.client import ServiceInstance, VSphereClient
from talprov.vmware.sdk import vm_ref

log = logging.getLogger(__name__)


class SecondVms:
    """Destroys a request's second VM (see the module docstring)."""

    def __init__(self, client: VSphereClient, clock: Callable[[], float],
                 sleep: Callable[[float], None]) -> None:
        self.client = client
        self.clock = clock
        self.sleep = sleep

    def remove(self, owner: Owner, machine: Machine, kept: str) -> str | None:
        """Power off hard and destroy the VM ``machine.infra_id``, a second VM of
        ``machine.request_id`` whose record names the VM ``kept``; the event line
        when it did.

        Both VMs are read again first, in one property-collector read: the
        listing that showed them may be minutes old. Refused (None, nothing
        done) unless the second VM and the kept VM both exist, are ``owner``'s,
        are marked with that request and are no templates: the request must
        never lose its only VM. Then a power-off (when on) and a destroy, each
        waited for. Idempotent: a VM already gone is success (None). Raises
        ``AuthError``, ``Transient`` or ``StepTimeout`` (a task that did not end
        in ``task_timeout``).
        """
        moid = machine.infra_id
        rid = machine.request_id
        if rid is None or kept == moid:
            return None
        what = f"read marks of VMs {moid} and {kept}"
        try:
            read = self.client.call(what, lambda si: self.client.get_many(
                what, [vm_ref(si, moid), vm_ref(si, kept)],
                ["config.extraConfig", "config.template", "runtime.powerState"]))
        except NotFound:
            # vCenter fails the whole read when either is gone: the second VM gone is
            # success, the kept VM gone forbids removing the other; both are None.
            log.warning("VM %s or %s (the VM of request %s) is gone; %s left alone",
                        moid, kept, rid, moid)
            return None
        props, kept_props = read.get(moid), read.get(kept)
        if not props or not kept_props:
            log.warning("VM %s or %s (the VM of request %s) not found; %s left alone",
                        moid, kept, rid, moid)
            return None
        if not (_marked(props, owner, rid) and _marked(kept_props, owner, rid)):
            log.warning("VM %s is not a second VM of request %s beside VM %s (marks "
                        "changed); left alone", moid, rid, kept)
            return None
        try:
            if props.get("runtime.powerState") != "poweredOff":
                self._wait(f"power off second VM {moid}",
                           lambda si: vm_ref(si, moid).PowerOffVM_Task())
            self._wait(f"destroy second VM {moid}", lambda si: vm_ref(si, moid).Destroy_Task())
        except NotFound:
            return None  # gone already
        return (f"destroyed VM {moid}, a second VM of this request (a clone started again "
                "while the first still ran)")

    def _wait(self, what: str, start: Callable[[ServiceInstance], Any]) -> None:
        self.client.wait_task(self.client.call(what, start), what, self.clock, self.sleep)


def _marked(props: Mapping[str, Any], owner: Owner, request_id: str) -> bool:
    """Whether a VM's ``props`` show ``owner``'s marks for ``request_id``, and no
    template. Pure."""
    marks = machines.marks_of(props)
    return (is_owned(marks, owner) and marks.get(REQUEST_KEY) == request_id
            and not props.get("config.template"))
