"""The factory OVA imported once into vCenter as a template, named by schematic and version.

Import: download ``vmware-<arch>.ova`` through the runtime's image cache, feed its
OVF descriptor to ``OvfManager.CreateImportSpec``, ``ResourcePool.ImportVApp``,
upload each disk to the NFC lease's device URL (progress reported to the lease
and to the runtime), complete the lease, snapshot (for linked clones) and mark the
VM a template.

Imports happen once:

* processes on one host serialise on a lock file per template in the cache
  directory and look for the template by name again once they hold it;
* across hosts, vCenter refuses a second VM of the same name in one folder
  (``DuplicateName``), so the loser of a race waits for the winner's template;
* the importing VM carries ``talprov-import-started`` in its extraConfig and
  ``talprov-imported`` once its disks are in. A VM without the latter that is
  older than ``task_timeout`` is a crashed import: it is destroyed and imported
  again. One with it is finished (snapshot, mark as template) by whoever finds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import re
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from talprov.processes import dead_local_worker, local_worker_id
from talprov.providers.errors import InvalidRequest, Transient
from talprov.providers.protocol import Runtime
from talprov.providers.types import MachineRequest
from talprov.talos.factory import images_for
from talprov.vmware import sdk
from talprov.vmware.client import ServiceInstance, VSphereClient
from talprov.vmware.config import VSphereConfig
from talprov.vmware.data import VSphereMachineData
from talprov.vmware.errors import is_fault
from talprov.vmware.inventory import Inventory

STARTED_KEY = "talprov-import-started"
#: host:pid of the importing process, so a crashed local import is known at once.
IMPORTER_KEY = "talprov-import-owner"
IMPORTED_KEY = "talprov-imported"
SCHEMATIC_KEY = "talprov-schematic"
BASE_SNAPSHOT = "talprov-base"


class ImportBusy(Transient):
    """Another process (or host) is importing this template right now."""


def template_name(schematic_id: str, version: str, arch: str) -> str:
    """The template's VM name: version, arch and the schematic id's first 16 digits.

    vCenter names are limited to 80 characters; the full schematic id is kept in
    the template's extraConfig (``talprov-schematic``).
    """
    return f"talos-{version}-{arch}-{schematic_id[:16]}"


def factory_ova_url(runtime: Runtime, request: MachineRequest) -> tuple[str, str]:
    """(schematic id, URL of the request's ``vmware-<arch>.ova``); registers the schematic.

    Raises ``InvalidRequest`` for an arch or secure boot the factory has no OVA for.
    """
    from talprov.talos.assets import Platform
    from talprov.talos.schematic import Schematic

    factory = images_for(runtime)
    schematic_id = factory.register(Schematic.from_request(request))
    url = factory.image_url(schematic_id, request.talos_version, Platform.VMWARE, request.arch,
                            secure_boot=request.secure_boot)
    return schematic_id, url


@contextlib.contextmanager
def template_lock(cache_dir: Path, key: str) -> Iterator[bool]:
    """A non-blocking per-template lock file: yields True when this caller holds it."""
    directory = cache_dir / "vmware-locks"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".lock")
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _extra(vm: Any) -> dict[str, str]:
    options = vm.config.extraConfig or ()
    return {o.key: str(o.value) for o in options if o.key.startswith("talprov")}


class TemplateImporter:
    """Finds or imports the Talos template of a request."""

    def __init__(self, client: VSphereClient, config: VSphereConfig, runtime: Runtime,
                 inventory: Inventory) -> None:
        self.client = client
        self.config = config
        self.runtime = runtime
        self.inventory = inventory

    def find(self, si: ServiceInstance, folder: Any, name: str) -> Any | None:
        return si.content.searchIndex.FindChild(folder, name)

    def ensure(self, request: MachineRequest, data: VSphereMachineData) -> tuple[str, str]:
        """(name, moid) of the request's template, imported if needed.

        Idempotent. Raises ``ImportBusy`` while another process imports it,
        ``InvalidRequest`` for bad placement, ``Transient``/``AuthError`` otherwise.
        """
        schematic_id, url = factory_ova_url(self.runtime, request)
        name = template_name(schematic_id, request.talos_version, str(request.arch))
        folder_path = self.config.template_folder or data.folder
        def look(si: ServiceInstance, finish: bool) -> str | None:
            return self._check(si, self.inventory.folder(si, folder_path), name, finish)

        found = self.client.call(f"look up template {name}", lambda si: look(si, False))
        if found is not None:
            return name, found
        lock_key = f"{self.client.host}:{self.client.port}/{folder_path or ''}/{name}"
        with template_lock(self.runtime.cache_dir, lock_key) as held:
            if not held:
                raise ImportBusy(f"template {name} is being imported by another process",
                                 retry_after=self.config.poll_interval)
            # Another process may have finished while we were not holding the lock.
            found = self.client.call(f"look up template {name}", lambda si: look(si, True))
            if found is not None:
                return name, found
            path = images_for(self.runtime).download(url, self.runtime.progress)
            return name, self.client.call(
                f"import template {name}",
                lambda si: self._import(si, data, folder_path, name, schematic_id, path))

    def _check(self, si: ServiceInstance, folder: Any, name: str, finish: bool) -> str | None:
        """The template's moid when it is ready; None when it must be imported (or finished).

        With ``finish`` (only under the template lock) an import whose disks are in is
        finished here. Raises ``ImportBusy`` for an import in flight and destroys one
        that crashed.
        """
        vm = self.find(si, folder, name)
        if vm is None:
            return None
        if vm.config.template:
            return str(vm._moId)
        marks = _extra(vm)
        if IMPORTED_KEY in marks:
            if not finish:
                return None
            self._finish(vm, name)
            return str(vm._moId)
        started = float(marks.get(STARTED_KEY, "0") or 0)
        # An importer on this host that no longer runs crashed: no need to wait
        # out task_timeout (that wait is for importers on other hosts).
        crashed_here = dead_local_worker(marks.get(IMPORTER_KEY, ""))
        if not crashed_here and time.time() - started < self.config.task_timeout:
            raise ImportBusy(f"template {name} is being imported",
                             retry_after=self.config.poll_interval)
        if not finish:
            return None  # removed by whoever takes the template lock
        self.client.wait_task(vm.Destroy_Task(), f"remove crashed import {name}")
        return None

    def _import(self, si: ServiceInstance, data: VSphereMachineData, folder_path: str | None,
                name: str, schematic_id: str, ova: Path) -> str:
        vim = sdk.vim()

        folder = self.inventory.folder(si, folder_path)
        place = self.inventory.placement(si, data, folder_path=folder_path or "")
        datastore = place.datastore or self.inventory.default_datastore(si, place.pool)
        with tarfile.open(ova) as archive:
            descriptor_member = next(
                (m for m in archive.getmembers() if m.name.endswith(".ovf")), None)
            if descriptor_member is None:
                raise InvalidRequest(f"{ova.name} holds no OVF descriptor")
            descriptor = archive.extractfile(descriptor_member).read().decode()  # type: ignore[union-attr]
            params = vim.OvfManager.CreateImportSpecParams(
                entityName=name, diskProvisioning="thin",
                networkMapping=[
                    vim.OvfManager.NetworkMapping(name=net, network=place.networks[0])
                    for net in _ovf_networks(descriptor)
                ] if place.networks else [],
            )
            result = si.content.ovfManager.CreateImportSpec(descriptor, place.pool, datastore,
                                                            params)
            if result.error:
                raise InvalidRequest(f"vCenter rejected the OVF of {ova.name}: "
                                     f"{type(result.error[0]).__name__}")
            spec = result.importSpec
            spec.configSpec.extraConfig = [
                vim.option.OptionValue(key=STARTED_KEY, value=str(int(time.time()))),
                vim.option.OptionValue(key=IMPORTER_KEY, value=local_worker_id()),
                vim.option.OptionValue(key=SCHEMATIC_KEY, value=schematic_id),
            ]
            try:
                lease = place.pool.ImportVApp(spec, folder)
            except Exception as exc:
                if is_fault(exc, "DuplicateName"):
                    # Another host started the same import a moment ago (vCenter keeps
                    # names unique per folder): wait for its template.
                    raise ImportBusy(f"template {name} is being imported elsewhere",
                                     retry_after=self.config.poll_interval) from None
                raise
            self._upload(lease, archive, result.fileItem or [], name)
        vm = self.find(si, folder, name)
        if vm is None:
            raise Transient(f"import {name}: the imported VM is not in its folder",
                            retry_after=5.0)
        self.client.wait_task(vm.ReconfigVM_Task(vim.vm.ConfigSpec(extraConfig=[
            vim.option.OptionValue(key=IMPORTED_KEY, value=str(int(time.time())))])),
            f"mark import of {name} done")
        self._finish(vm, name)
        return str(vm._moId)

    def _upload(self, lease: Any, archive: tarfile.TarFile, items: list[Any], name: str) -> None:
        deadline = time.monotonic() + self.config.task_timeout
        while str(lease.state) == "initializing":
            if time.monotonic() > deadline:
                raise Transient(f"import {name}: lease not ready", retry_after=5.0)
            time.sleep(0.05)
        if str(lease.state) != "ready":
            fault = getattr(lease.error, "fault", None)
            raise Transient(f"import {name}: lease {lease.state} "
                            f"({type(fault).__name__ if fault else 'no fault'})", retry_after=5.0)
        try:
            urls = {d.importKey: d.url for d in lease.info.deviceUrl or ()}
            total = sum(int(i.size or 0) for i in items) or None
            sent = 0
            for item in items:
                member = archive.getmember(item.path)
                stream = archive.extractfile(member)
                assert stream is not None
                base = sent

                def report(done: int, base: int = base) -> None:
                    self.runtime.progress(f"upload {name}", base + done, total)

                self.client.upload(urls[item.deviceId], stream, member.size, report)
                sent += member.size
                if total:
                    lease.HttpNfcLeaseProgress(min(99, sent * 100 // total))
            lease.HttpNfcLeaseComplete()
        except BaseException:
            with contextlib.suppress(Exception):
                lease.HttpNfcLeaseAbort()
            raise

    def _finish(self, vm: Any, name: str) -> None:
        finish_template(self.client, vm, name)


def finish_template(client: VSphereClient, vm: Any, name: str) -> None:
    """Snapshot (base of linked clones) and mark ``vm`` as a template. Idempotent.

    Another host finishing the same template at the same time may win the
    mark-as-template; that is success too. Raises the translated task fault.
    """
    if vm.snapshot is None:
        client.wait_task(
            vm.CreateSnapshot_Task(name=BASE_SNAPSHOT, description="talprov linked-clone base",
                                   memory=False, quiesce=False),
            f"snapshot template {name}")
    if not vm.config.template:
        try:
            vm.MarkAsTemplate()
        except Exception:
            if not vm.config.template:
                raise


def _ovf_networks(descriptor: str) -> list[str]:
    """The network names an OVF descriptor declares (NetworkSection)."""
    return sorted(set(re.findall(r'<Network\s+ovf:name="([^"]+)"', descriptor)))
