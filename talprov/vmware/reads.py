"""What configure-vm compares, read by the clone step's worker once its clone ended.

That read rides on the look at the clone task (``clone_done``): one
``RetrievePropertiesEx`` reads the task's ``info`` and, through a traversal of
``info.result`` (the new VM, once the clone succeeded), the VM's
``CLONED_PATHS``: one round trip where a look and then a read were two. vcsim
follows such a nested traversal path. Where vCenter does not, the VM is read
apart, as before: when it refuses the path (an ``InvalidProperty`` or
``InvalidArgument`` fault; this provider instance then no longer asks for it,
so the refusal costs one round trip) or answers with the task alone.

The clones of a batch end one after another (vCenter copies each from the one
template), and configure-vm used to read all of the batch's VMs in one round
trip after the last of them, with nothing else going on. Reading each VM in the
worker whose clone just ended hides those reads behind the clones still running.

Such an early read follows a clone task of talprov's that succeeded: the clone
applied the spec's extraConfig and devices, so it reads only the BIOS UUID and
the sizes (``machines.SIZE_PATHS``), not the whole hardware and extraConfig
(whose decoding was a fifth of talprov's CPU while creating VMs). Every other
read (a VM adopted after a crash, an early read too old) reads everything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from talprov.providers.errors import ProviderError
from talprov.vmware import sdk
from talprov.vmware.client import ServiceInstance, VSphereClient, task_outcome
from talprov.vmware.errors import is_fault
from talprov.vmware.machines import SIZE_PATHS

log = logging.getLogger(__name__)

#: What configure-vm compares with the request.
CONFIGURE_PATHS = ("config.hardware", "config.extraConfig", "config.uuid")
#: What it compares of a VM whose clone (talprov's, with the whole spec) succeeded.
CLONED_PATHS = ("config.uuid", *SIZE_PATHS)
#: Seconds an early read stays usable: configure-vm normally follows in the same
#: pass; one that comes later (its pass was cut short) reads the VM afresh.
EARLY_READ_SECONDS = 30.0
#: Early reads kept at most (those nobody took are dropped beyond this).
EARLY_READS_KEPT = 1024

Props = dict[str, Any]


@dataclass(frozen=True)
class VmRead:
    """A VM's properties for configure-vm: ``CLONED_PATHS`` when ``cloned`` (read
    right after talprov's clone of it succeeded), else ``CONFIGURE_PATHS``."""

    props: Props
    cloned: bool = False


class ConfigureReads:
    """The configure-vm properties of VMs, read early or in one batch. Thread-safe."""

    def __init__(self, client: VSphereClient, clock: Callable[[], float]) -> None:
        self.client = client
        self.clock = clock
        self._early: dict[str, tuple[float, Props]] = {}  # CLONED_PATHS
        self._lock = threading.Lock()
        # False once vCenter refused to follow a task's result (see the module
        # docstring): a refused read is a round trip for nothing.
        self._follow_results = True

    def _read(self, what: str, moids: Sequence[str],
              paths: Sequence[str] = CONFIGURE_PATHS) -> dict[str, Props]:
        vim = sdk.vim()

        return self.client.call(what, lambda si: self.client.get_many(
            what, [vim.VirtualMachine(m, si._stub) for m in moids], paths))

    def clone_done(self, task: str, what: str) -> Any | None:
        """``VSphereClient.task_done`` for a clone task of talprov's: its result (the
        new VM) once it succeeded, None while it runs; the VM's ``CLONED_PATHS`` are
        kept for configure-vm (as ``read_early`` keeps them), read in the same round
        trip where vCenter allows it, else apart.

        Raises ``TaskFailed`` when the clone failed, ``NotFound`` when vCenter no
        longer knows the task, ``AuthError`` or ``Transient``. Read-only.
        """
        if not self._follow_results:
            result = self.client.task_done(task, what)
        else:
            answer = self.client.read(f"read task of {what}",
                                      lambda si: self._task_and_result(si, task))
            if answer is None:  # refused: vCenter follows no task's result
                log.info("vCenter does not read a clone task's VM with the task; "
                         "reading them apart from now on")
                self._follow_results = False
                return self.clone_done(task, what)
            info, found = answer
            result = task_outcome(info, what)
            moid = str(getattr(result, "_moId", ""))
            if moid and found.get(moid):
                self._keep(moid, found[moid])
                return result
        made = getattr(result, "_moId", None)
        if made is not None:
            self.read_early(str(made))
        return result

    def _task_and_result(self, si: ServiceInstance, task: str
                         ) -> tuple[Any, dict[str, Props]] | None:
        """The task's info and, by moid, its result's ``CLONED_PATHS`` when it is a VM
        (none while the task runs): one RetrievePropertiesEx. None when vCenter
        refuses to follow ``info.result``; raises its other faults."""
        vim, vmodl = sdk.vim(), sdk.vmodl()

        collector = vmodl.query.PropertyCollector
        spec = collector.FilterSpec(
            objectSet=[collector.ObjectSpec(
                obj=vim.Task(task, si._stub), skip=False,
                selectSet=[collector.TraversalSpec(type=vim.Task, path="info.result",
                                                   skip=False)])],
            propSet=[collector.PropertySpec(type=vim.Task, pathSet=["info"]),
                     collector.PropertySpec(type=vim.VirtualMachine,
                                            pathSet=list(CLONED_PATHS))])
        try:
            answer = si.content.propertyCollector.RetrievePropertiesEx(
                [spec], collector.RetrieveOptions())
        except Exception as exc:
            if is_fault(exc, "InvalidProperty", "InvalidArgument"):
                return None
            raise
        info = None
        found: dict[str, Props] = {}
        for item in answer.objects if answer is not None else ():
            props = {p.name: p.val for p in item.propSet or ()}
            if isinstance(item.obj, vim.Task):
                info = props.get("info")
            else:
                found[str(item.obj._moId)] = props
        if info is None:  # no task in the answer: vCenter does not know it
            raise vmodl.fault.ManagedObjectNotFound(obj=vim.Task(task, si._stub))
        return info, found

    def _keep(self, moid: str, props: Props) -> None:
        with self._lock:
            if len(self._early) >= EARLY_READS_KEPT:
                self._early.clear()
            self._early[moid] = (self.clock(), props)

    def read_early(self, moid: str) -> None:
        """Read a VM whose clone (talprov's clone task) just succeeded, for its
        configure step: ``CLONED_PATHS`` only. Never raises: a read that failed is
        made by the configure step instead (all of ``CONFIGURE_PATHS`` then)."""
        try:
            props = self._read(f"read VM {moid}", [moid], CLONED_PATHS).get(moid)
        except ProviderError as exc:
            log.debug("reading VM %s after its clone failed (%s); configure-vm reads it",
                      moid, exc)
            return
        if props:
            self._keep(moid, props)

    def for_batch(self, moids: Sequence[str]) -> dict[str, VmRead]:
        """The reads of ``moids``: those read early in the last
        ``EARLY_READ_SECONDS`` (taken: each is used once), the others in one round
        trip when there are several. Never raises: when that read fails (one VM
        removed meanwhile fails it for all) the VMs are left out, and each
        request's step reads its own VM, so only the removed one's sees the error.
        """
        now = self.clock()
        found: dict[str, VmRead] = {}
        with self._lock:
            for moid in moids:
                at, props = self._early.pop(moid, (0.0, {}))
                if props and now - at <= EARLY_READ_SECONDS:
                    found[moid] = VmRead(props, cloned=True)
        rest = [m for m in moids if m not in found]
        if len(rest) > 1:
            try:
                read = self._read("read VMs to configure", rest)
            except ProviderError as exc:
                log.debug("reading %d VMs at once failed (%s); one by one", len(rest), exc)
            else:
                found.update((moid, VmRead(props)) for moid, props in read.items())
        return found

    def one(self, moid: str) -> VmRead:
        """One VM's ``CONFIGURE_PATHS`` now (one round trip); empty ``props`` when
        vCenter returns none. Raises ``NotFound`` when it is gone, other
        ``ProviderError`` subclasses."""
        return VmRead(self._read(f"read VM {moid}", [moid]).get(moid, {}))
