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
late its clone ended. No step of this driver records another VM while the one
it recorded exists, so the recorded one is always the request's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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

    def remove(self, owner: Owner, machine: Machine) -> str | None:
        """Power off hard and destroy the VM ``machine.infra_id``, a second VM of
        ``machine.request_id``; the event line when it did.

        Its marks are read again first (one read): a VM that is not ``owner``'s,
        not marked with that request, or a template is refused (None, nothing
        done). Then a power-off (when on) and a destroy, each waited for.
        Idempotent: a VM already gone is success (None). Raises ``AuthError``,
        ``Transient`` or ``StepTimeout`` (a task that did not end in
        ``task_timeout``).
        """
        moid = machine.infra_id
        what = f"read marks of VM {moid}"
        try:
            props = self.client.call(what, lambda si: self.client.get(
                what, vm_ref(si, moid),
                ["config.extraConfig", "config.template", "runtime.powerState"]))
        except NotFound:
            return None
        marks = machines.marks_of(props)
        if (not is_owned(marks, owner) or marks.get(REQUEST_KEY) != machine.request_id
                or props.get("config.template") or machine.request_id is None):
            log.warning("VM %s is not a second VM of request %s (marks changed); left alone",
                        moid, machine.request_id)
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
